/*!
Slot locks and backoff marks in `$DISTCC_DIR/lock`, with distcc's file names
and `fcntl` locks (distcc src/lock.c, backoff.c), so our client and distcc
3.4's share one set of slots when both run in the same build.
*/

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::hosts::HostSpec;

/// A held slot; the lock goes when this is dropped (the file stays, as in distcc).
#[derive(Debug)]
pub struct Slot {
    _file: File,
    pub name: String,
    /// The slot number: the name's last `_N`.
    pub index: u32,
}

/// Non-blocking whole-file write lock, as distcc's `F_SETLK`.
pub fn try_lock(dir: &Path, name: &str) -> std::io::Result<Option<Slot>> {
    let file = open_lock_file(dir, name)?;
    match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETLK(&write_lock())) {
        Ok(_) => Ok(Some(Slot::new(file, name))),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Takes the first free slot of `names` (in that order); while all are busy,
/// waits in the kernel on one of them, so a slot is taken the moment its
/// compile releases it. distcc 3.4 sleeps `DISTCC_PAUSE_TIME_MSEC` (1 s by
/// default) between scans instead, leaving a freed server idle for up to
/// that long in every `make -j` wider than the slots. Each wait lasts at most
/// `rescan` (below 50 ms it is a plain sleep), then all slots are tried
/// again and the next one is waited on;
/// clients waiting together start on different slots. The locks are the
/// same `fcntl` locks 3.4 takes. `busy` is called once, when the first scan
/// finds nothing free. Returns the slot and its place in `names`.
pub fn take_first_free(
    dir: &Path,
    names: &[String],
    rescan: Duration,
    busy: impl Fn(),
) -> std::io::Result<(usize, Slot)> {
    if names.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no slots to take",
        ));
    }
    let start = std::process::id() as usize;
    let mut round = 0;
    loop {
        for (i, name) in names.iter().enumerate() {
            if let Some(s) = try_lock(dir, name)? {
                return Ok((i, s));
            }
        }
        if round == 0 {
            busy();
        }
        round += 1;
        // A rescan every few milliseconds finds a freed slot as soon as a
        // wake-up would; the timer and signal of a wait would only add work.
        if rescan < Duration::from_millis(50) {
            std::thread::sleep(rescan);
            continue;
        }
        let i = (start + round) % names.len();
        if let Some(s) = lock_within(dir, &names[i], rescan)? {
            return Ok((i, s));
        }
    }
}

/// Waits up to `limit` for the lock: `F_SETLKW`, cut short by a one-shot
/// timer's signal.
fn lock_within(dir: &Path, name: &str, limit: Duration) -> std::io::Result<Option<Slot>> {
    use nix::sys::signal::{SigEvent, SigevNotify, Signal};
    use nix::sys::timer::{Expiration, Timer, TimerSetTimeFlags};
    let file = open_lock_file(dir, name)?;
    wake_on_alarm();
    let mut timer = Timer::new(
        nix::time::ClockId::CLOCK_MONOTONIC,
        SigEvent::new(SigevNotify::SigevSignal {
            signal: Signal::SIGALRM,
            si_value: 0,
        }),
    )?;
    timer.set(
        Expiration::OneShot(limit.max(Duration::from_millis(1)).into()),
        TimerSetTimeFlags::empty(),
    )?;
    match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETLKW(&write_lock())) {
        Ok(_) => Ok(Some(Slot::new(file, name))),
        Err(nix::errno::Errno::EINTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// SIGALRM interrupts a blocked `F_SETLKW` (no `SA_RESTART`) and does
/// nothing else.
fn wake_on_alarm() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    extern "C" fn wake(_: nix::libc::c_int) {}
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let action = SigAction::new(SigHandler::Handler(wake), SaFlags::empty(), SigSet::empty());
        // Sound: the handler touches nothing, so it is async-signal-safe.
        #[allow(unsafe_code)]
        let _ = unsafe { sigaction(Signal::SIGALRM, &action) };
    });
}

/// A slot's file, made on first use; it stays, as in distcc. Whatever
/// else is found at the name (a link, a FIFO that would block the open) is
/// an error, not something to follow.
fn open_lock_file(dir: &Path, name: &str) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(dir.join(name))?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!("{name} is not a regular file")));
    }
    Ok(file)
}

fn write_lock() -> nix::libc::flock {
    nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

impl Slot {
    fn new(file: File, name: &str) -> Slot {
        let index = name.rsplit('_').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        Slot {
            _file: file,
            name: name.to_owned(),
            index,
        }
    }
}

/// The order distcc tries slots in: slot 0 of every host in list order, then
/// slot 1 of the hosts with a limit above 1, and so on. Pure.
pub fn slot_order(limits: &[u32]) -> Vec<(usize, u32)> {
    let max = limits.iter().copied().max().unwrap_or(0);
    (0..max)
        .flat_map(|slot| {
            limits
                .iter()
                .enumerate()
                .filter(move |(_, l)| slot < **l)
                .map(move |(i, _)| (i, slot))
        })
        .collect()
}

/// Whether a host failed recently enough to be skipped. Pure.
pub fn backed_off(marked: Option<SystemTime>, now: SystemTime, period: Duration) -> bool {
    match marked {
        Some(t) if !period.is_zero() => now.duration_since(t).map_or(true, |age| age < period),
        _ => false,
    }
}

pub struct LockDir(pub PathBuf);

impl LockDir {
    pub fn backoff_mark(&self, host: &HostSpec) -> Option<SystemTime> {
        fs::metadata(self.0.join(host.backoff_name()))
            .and_then(|m| m.modified())
            .ok()
    }

    /// A new mark each time (the old one removed), so its time is now and
    /// nothing planted at the name is written through.
    pub fn mark_failed(&self, host: &HostSpec) {
        let path = self.0.join(host.backoff_name());
        let _ = fs::remove_file(&path);
        let made = OpenOptions::new().write(true).create_new(true).open(&path);
        if let Ok(mut f) = made {
            let _ = std::io::Write::write_all(&mut f, b"x");
        }
    }

    pub fn clear_failed(&self, host: &HostSpec) {
        let _ = fs::remove_file(self.0.join(host.backoff_name()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_free_slot_and_needs_one() {
        let dir = std::env::temp_dir().join(format!("distcc-rs-lock-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let names: Vec<String> = ["cpu_a_0", "cpu_b_0", "cpu_a_1"].map(String::from).to_vec();
        let busy = std::cell::Cell::new(0);
        let (i, s) =
            take_first_free(&dir, &names, Duration::from_secs(1), || busy.set(busy.get() + 1)).unwrap();
        assert_eq!((i, s.name.as_str(), s.index, busy.get()), (0, "cpu_a_0", 0, 0));
        assert!(take_first_free(&dir, &[], Duration::from_secs(1), || ()).is_err());
        drop(s);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn slot_order_is_slot_major() {
        assert_eq!(
            slot_order(&[2, 1, 3]),
            vec![(0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (2, 2)]
        );
        assert!(slot_order(&[]).is_empty());
    }

    #[test]
    fn backoff_window() {
        let now = SystemTime::now();
        let p = Duration::from_secs(60);
        assert!(backed_off(Some(now - Duration::from_secs(10)), now, p));
        assert!(!backed_off(Some(now - Duration::from_secs(61)), now, p));
        assert!(!backed_off(None, now, p));
        assert!(
            !backed_off(Some(now), now, Duration::ZERO),
            "period 0 disables backoff"
        );
        // A mark from the future (clock change) still counts as recent.
        assert!(backed_off(Some(now + Duration::from_secs(5)), now, p));
    }
}
