/*!
One client's state record: distcc 3.4's `struct dcc_task_state` as it lies in
memory on x86_64 Linux (LP64, little-endian, 296 bytes). Pure.

| offset | size | field |
|---|---|---|
| 0 | 8 | struct size (296) |
| 8 | 8 | magic 0x44494800 |
| 16 | 8 | client pid |
| 24 | 128 | input base name, NUL-padded |
| 152 | 128 | host name, NUL-padded |
| 280 | 4 | slot |
| 284 | 4 | phase |
| 288 | 8 | a pointer, meaningless on disk (0) |
*/

pub const SIZE: usize = 296;
pub const MAGIC: u64 = 0x4449_4800;
const NAME_LEN: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Startup = 0,
    Blocked = 1,
    Connect = 2,
    Preprocess = 3,
    Send = 4,
    Compile = 5,
    Receive = 6,
    Done = 7,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Startup => "Startup",
            Phase::Blocked => "Blocked",
            Phase::Connect => "Connect",
            Phase::Preprocess => "Preprocess",
            Phase::Send => "Send",
            Phase::Compile => "Compile",
            Phase::Receive => "Receive",
            Phase::Done => "Done",
        }
    }

    /// distcc's reader treats anything past Done as Compile.
    fn from_raw(v: i32) -> Phase {
        match v {
            0 => Phase::Startup,
            1 => Phase::Blocked,
            2 => Phase::Connect,
            3 => Phase::Preprocess,
            4 => Phase::Send,
            6 => Phase::Receive,
            7 => Phase::Done,
            _ => Phase::Compile,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub pid: u64,
    pub file: String,
    pub host: String,
    pub slot: i32,
    pub phase: Phase,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadRecord {
    Size(usize),
    Magic(u64),
}

fn put_name(out: &mut [u8], s: &str) {
    // strlcpy: at most 127 bytes and a NUL.
    let b = s.as_bytes();
    let n = b.len().min(NAME_LEN - 1);
    out[..n].copy_from_slice(&b[..n]);
}

fn get_name(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

pub fn encode(s: &State) -> [u8; SIZE] {
    let mut out = [0u8; SIZE];
    out[0..8].copy_from_slice(&(SIZE as u64).to_le_bytes());
    out[8..16].copy_from_slice(&MAGIC.to_le_bytes());
    out[16..24].copy_from_slice(&s.pid.to_le_bytes());
    put_name(&mut out[24..152], &s.file);
    put_name(&mut out[152..280], &s.host);
    out[280..284].copy_from_slice(&s.slot.to_le_bytes());
    out[284..288].copy_from_slice(&(s.phase as i32).to_le_bytes());
    out
}

pub fn decode(b: &[u8]) -> Result<State, BadRecord> {
    if b.len() != SIZE {
        return Err(BadRecord::Size(b.len()));
    }
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let i32_at = |o: usize| i32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    if u64_at(0) != SIZE as u64 {
        return Err(BadRecord::Size(u64_at(0) as usize));
    }
    if u64_at(8) != MAGIC {
        return Err(BadRecord::Magic(u64_at(8)));
    }
    Ok(State {
        pid: u64_at(16),
        file: get_name(&b[24..152]),
        host: get_name(&b[152..280]),
        slot: i32_at(280),
        phase: Phase::from_raw(i32_at(284)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let s = State {
            pid: 29493,
            file: "t.c".into(),
            host: "127.0.0.1".into(),
            slot: 1,
            phase: Phase::Compile,
        };
        let b = encode(&s);
        assert_eq!(&b[0..8], &[0x28, 1, 0, 0, 0, 0, 0, 0], "296 = 0x128");
        assert_eq!(
            &b[8..16],
            &[0x00, 0x48, 0x49, 0x44, 0, 0, 0, 0],
            "magic as distcc-3.4.md gives it"
        );
        assert_eq!(&b[16..24], &29493u64.to_le_bytes());
        assert_eq!(&b[24..28], b"t.c\0");
        assert!(b[28..152].iter().all(|&c| c == 0));
        assert_eq!(&b[152..162], b"127.0.0.1\0");
        assert_eq!(&b[280..284], &[1, 0, 0, 0]);
        assert_eq!(&b[284..288], &[5, 0, 0, 0]);
        assert_eq!(&b[288..296], &[0; 8]);
        assert_eq!(decode(&b), Ok(s));
    }

    #[test]
    fn long_names_are_cut_like_strlcpy() {
        let long = "x".repeat(300);
        let b = encode(&State {
            pid: 1,
            file: long.clone(),
            host: long,
            slot: 0,
            phase: Phase::Send,
        });
        let back = decode(&b).unwrap();
        assert_eq!((back.file.len(), back.host.len()), (127, 127));
    }

    #[test]
    fn bad_records() {
        assert_eq!(decode(&[0u8; 10]), Err(BadRecord::Size(10)));
        let good = encode(&State {
            pid: 1,
            file: "a".into(),
            host: "h".into(),
            slot: 0,
            phase: Phase::Send,
        });
        let mut b = good;
        b[8] = 1;
        assert!(matches!(decode(&b), Err(BadRecord::Magic(_))));
        let mut b = good;
        b[284] = 42;
        assert_eq!(
            decode(&b).unwrap().phase,
            Phase::Compile,
            "unknown phases read as Compile, as in distcc"
        );
    }
}
