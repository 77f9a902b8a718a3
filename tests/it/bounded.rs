//! An allowed client tries to fill the server's disk, exhaust its memory,
//! hold its slots and its connections; the real daemon (started as root,
//! serving as nobody) holds, says why, and serves a good job meanwhile.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distcc::protocol::Version;

use crate::common::*;

fn good_job(addr: SocketAddr) -> Duration {
    let t = Instant::now();
    let reply = raw_request(
        addr,
        None,
        &request(
            Version::Lzo,
            &["gcc", "-O2", "-c", "ok.i", "-o", "ok.o"],
            b"int ok(int x) { return x * 7; }\n",
        ),
    )
    .expect("a good job gets a reply");
    assert_eq!(reply.status, 0, "{}", text(&reply.stderr));
    assert!(reply.object.starts_with(b"\x7fELF"));
    t.elapsed()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

#[test]
fn a_job_that_would_fill_the_disk_is_stopped_at_the_output_limit() {
    let dir = TestDir::new("fill-bomb");
    let d = SmallTmp::start(&dir, "64m", &["gcc", "clang"], "--max-output-mb 8");
    // 90 bytes that assemble to a gigabyte (gcc), or 256 MiB for clang,
    // whose integrated assembler fills it byte by byte (17 s for 1 GiB).
    for (compiler, size) in [("gcc", "0x40000000"), ("clang", "0x10000000")] {
        let bomb = format!("asm(\".pushsection .rodata\\n.fill {size},1,1\\n.popsection\");\nint x;\n");
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let d_used = {
            let (peak, stop) = (peak.clone(), stop.clone());
            let p = format!("/proc/{}/root{}", d.child.id(), d.tmp.display());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(v) = nix::sys::statvfs::statvfs(p.as_str()) {
                        peak.fetch_max(
                            (v.blocks() - v.blocks_free()) * v.fragment_size(),
                            Ordering::Relaxed,
                        );
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let req = request(
            Version::Lzo,
            &[compiler, "-c", "x.i", "-o", "x.o"],
            bomb.as_bytes(),
        );
        let mut s = connect_from(d.addr(), None);
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.write_all(&req.encode()).unwrap();
        let reply = distcc::protocol::blocking::read_message(
            &mut s,
            distcc::protocol::message::ReplyDecoder::new(req.version, Default::default()),
        )
        .expect("a reply");
        stop.store(true, Ordering::Relaxed);
        d_used.join().unwrap();
        let peak = peak.load(Ordering::Relaxed);
        eprintln!(
            "{compiler}: TMPDIR peaked at {} KiB with --max-output-mb 8",
            peak >> 10
        );
        assert_eq!(
            reply.status >> 8,
            u32::from(distcc::exitcode::IO_ERROR),
            "{compiler}: refused, so the client compiles elsewhere: {}",
            text(&reply.stderr)
        );
        assert!(
            text(&reply.stderr).contains("--max-output-mb"),
            "{}",
            text(&reply.stderr)
        );
        assert!(reply.object.is_empty());
        assert!(peak <= 10 << 20, "{compiler}: TMPDIR reached {} KiB", peak >> 10);
        assert!(
            d.used() < 1 << 20,
            "the job's files are gone: {} KiB left",
            d.used() >> 10
        );
    }
    assert!(good_job(d.addr()) < Duration::from_secs(5));
}

#[test]
fn queued_decompression_bombs_do_not_exhaust_memory() {
    let dir = TestDir::new("queued-bomb");
    let allowed = compiler_dir(&dir, &["gcc", "slowcc"]);
    let bin = slow_compiler(&dir, 120);
    let d = Daemon::start_env(
        &dir,
        &[
            "--allow",
            "127.0.0.1",
            "--compiler-dir",
            allowed.to_str().unwrap(),
            "--jobs",
            "1",
            "--max-queued-mb",
            "200",
            "--max-input-mb",
            "180",
        ],
        &[("DISTCCD_PATH", &format!("{}:/usr/bin:/bin", bin.display()))],
    );
    let pid = d.child.id();
    let before = status_kib(pid, "VmRSS:");
    // The one slot, held.
    let mut holder = connect_from(d.addr(), None);
    holder
        .write_all(&request(Version::Plain, &["slowcc", "-c", "s.c", "-o", "s.o"], b"int s;\n").encode())
        .unwrap();
    d.wait_compiler_pid();
    // 160 MiB of source in about 0.6 MiB of LZO, twelve times over.
    let bomb = request(
        Version::Lzo,
        &["gcc", "-c", "b.i", "-o", "b.o"],
        &vec![b' '; 160 << 20],
    )
    .encode();
    eprintln!(
        "each bomb: {} KiB on the wire, 160 MiB decompressed",
        bomb.len() >> 10
    );
    let mut conns = Vec::new();
    for _ in 0..12 {
        let mut s = connect_from(d.addr(), None);
        s.write_all(&bomb).unwrap();
        conns.push(s);
    }
    // All have been read: all but the one queued are refused as busy.
    let mut busy = 0;
    let mut other = Vec::new();
    for s in conns.iter_mut().skip(1) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        if text(&out).contains("--max-queued-mb") {
            busy += 1;
        } else {
            other.push(text(&out));
        }
    }
    let peak = status_kib(pid, "VmHWM:");
    eprintln!(
        "daemon RSS: {} KiB before, peak {} KiB with 12 bombs of 160 MiB queued (--max-queued-mb 200)",
        before, peak
    );
    assert!(
        busy >= 10,
        "refused as busy: {busy} of 11; the others: {other:?}\n{}",
        d.log_text()
    );
    assert!(peak < 320 << 10, "the daemon's peak RSS was {peak} KiB");
    drop(holder);
}

/// Connects from `src` without blocking on anything.
fn open_from(addr: SocketAddr, src: IpAddr) -> TcpStream {
    let s = connect_from(addr, Some(src));
    s.set_nonblocking(true).unwrap();
    s
}

#[test]
fn idle_and_trickling_connections_do_not_keep_a_good_job_waiting() {
    raise_fd_limit();
    let dir = TestDir::new("slowloris");
    let d = Daemon::serving(&dir, &["gcc"], &["--allow", "127.0.0.0/8"]);
    // 300 that say nothing and 300 that send a byte every few seconds, each
    // address within --max-per-client (64).
    let idle: Vec<TcpStream> = (0..300u32)
        .map(|i| open_from(d.addr(), IpAddr::from([127, 0, 2, 2 + (i / 60) as u8])))
        .collect();
    let mut trickling: Vec<TcpStream> = (0..300u32)
        .map(|i| open_from(d.addr(), IpAddr::from([127, 0, 3, 2 + (i / 60) as u8])))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let header = b"DIST00000002ARGC00000001";
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && sent < header.len() {
                for s in &mut trickling {
                    let _ = s.write_all(&header[sent..sent + 1]);
                }
                sent += 1;
                for _ in 0..20 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            trickling
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let took = good_job(d.addr());
        assert!(took < Duration::from_secs(5), "a good job took {took:?}");
    }
    // One more from an address that has 60 open: within the limit. Five
    // more past 64 are refused at once, saying why.
    let extra: Vec<TcpStream> = (0..5)
        .map(|_| connect_from(d.addr(), Some(IpAddr::from([127, 0, 2, 2]))))
        .collect();
    let mut over = connect_from(d.addr(), Some(IpAddr::from([127, 0, 2, 2])));
    over.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    over.write_all(b"DIST00000002ARGC00000001").unwrap();
    let mut out = Vec::new();
    let _ = over.read_to_end(&mut out);
    assert!(text(&out).contains("--max-per-client"), "{}", text(&out));
    stop.store(true, Ordering::Relaxed);
    drop((idle, extra, trickler.join().unwrap()));
    assert!(d.log_text().contains("--max-per-client"));
}

#[test]
fn clients_that_never_read_their_replies_hold_no_slot() {
    let dir = TestDir::new("no-readers");
    let d = Daemon::serving(&dir, &["gcc"], &["--jobs", "2", "--write-timeout", "3"]);
    // Each reply carries a 24 MiB object that its client never reads.
    let big = b"asm(\".pushsection .rodata\\n.fill 0x1800000,1,7\\n.popsection\");\nint big;\n";
    let readers: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect_from(d.addr(), None);
            s.write_all(&request(Version::Plain, &["gcc", "-c", "big.i", "-o", "big.o"], big).encode())
                .unwrap();
            s
        })
        .collect();
    // Both compiled and stuck in their sends.
    std::thread::sleep(Duration::from_secs(1));
    let took = good_job(d.addr());
    assert!(
        took < Duration::from_secs(5),
        "a good job took {took:?} with both slots' replies unread"
    );
    let log = d.wait_log("stopped reading the reply", 2);
    assert_eq!(log.matches("stopped reading the reply").count(), 2, "{log}");
    drop(readers);
}
