//! Hostile input, faults and load against one real distccd: it must refuse
//! with reasons, bound what it reads, keep serving, and leave nothing behind.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use distcc::protocol::Version;

use crate::common::*;

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn good_job(addr: SocketAddr) {
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
}

#[test]
fn hostile_suite_then_a_good_job() {
    let dir = TestDir::new("hostile");
    let mut d = Daemon::serving(
        &dir,
        ALLOWED,
        &[
            "--jobs",
            "2",
            "--request-timeout",
            "2",
            "--max-input-mb",
            "1",
            "--max-connections",
            "8",
        ],
    );
    let pid = d.child.id();
    good_job(d.addr());
    let fds_before = fd_count(pid);
    let canary = dir.join("must-not-exist");

    // 1. Commands that would read or run what the client chooses: each
    //    refused, with its reason in SERR.
    let canary_s = canary.to_str().unwrap().to_owned();
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (vec!["sh", "-c", "x.c"], "not allowed"),
        (vec!["/bin/sh", "-c", "x.c"], "not allowed"),
        (vec!["../gcc", "-c", "x.c"], "not a path"),
        (vec!["gcc", "@/etc/shadow", "-c", "x.c"], "response files"),
        (vec!["gcc", "-include", "/etc/shadow", "-c", "x.c"], "read a file"),
        (vec!["gcc", "-imacros", "/etc/passwd", "-c", "x.c"], "read a file"),
        (vec!["gcc", "-B", "/tmp", "-c", "x.c"], "load or run"),
        (
            vec!["gcc", "-wrapper", "/bin/sh,-c,id", "-c", "x.c"],
            "load or run",
        ),
        (vec!["gcc", "-fplugin=/tmp/evil.so", "-c", "x.c"], "load or run"),
        (vec!["gcc", "-specs=/tmp/evil.specs", "-c", "x.c"], "load or run"),
        (vec!["gcc", "--sysroot=/", "-c", "x.c"], "does not offer"),
        (vec!["gcc", "-isysroot", "/", "-c", "x.c"], "does not offer"),
        (vec!["gcc", "-MD", "-MF", &canary_s, "-c", "x.c"], "preprocessing"),
        (vec!["gcc", "-save-temps=/tmp", "-c", "x.c"], "write a file"),
        (
            vec!["gcc", "-fdump-tree-all=/tmp/dump", "-c", "x.c"],
            "write a file",
        ),
        (
            vec!["gcc", "-frandom-seed=@/etc/shadow", "-c", "x.c"],
            "names a path",
        ),
        (
            vec!["gcc", "-fopt-info-all=/tmp/opt", "-c", "x.c"],
            "names a path",
        ),
        (vec!["gcc", "-aux-info", &canary_s, "-c", "x.c"], "write a file"),
        (vec!["gcc", "-dumpdir", "/tmp/", "-c", "x.c"], "write a file"),
        (
            vec!["clang", "-Xclang", "-load", "-Xclang", "/tmp/p.so", "-c", "x.c"],
            "load code",
        ),
        (
            vec!["clang", "-fpass-plugin=/tmp/p.so", "-c", "x.c"],
            "load or run",
        ),
        (
            vec!["gcc", "-Wa,-adhln=/tmp/listing", "-c", "x.c"],
            "assembler option",
        ),
        (
            vec!["gcc", "-x", "assembler-with-cpp", "-c", "x.c"],
            "only preprocessed",
        ),
        (vec!["gcc", "-c", "x.c", "/etc/passwd"], "not a source file"),
        (vec!["gcc", "-E", "x.c"], "preprocessing"),
        (
            vec!["gcc", "-c", "x.c", "-print-file-name=libc.so"],
            "not known to be safe",
        ),
    ];
    for (argv, why) in &refused {
        let mut with_out = argv.clone();
        with_out.extend(["-o", "x.o"]);
        let reply = raw_request(d.addr(), None, &request(Version::Plain, &with_out, b"int x;\n"))
            .unwrap_or_else(|e| panic!("{argv:?}: no reply: {e}"));
        assert_eq!(reply.status, 113 << 8, "{argv:?}");
        assert!(
            text(&reply.stderr).contains(why),
            "{argv:?}: {}",
            text(&reply.stderr)
        );
    }
    // `-o` anywhere is replaced by the job's own file.
    let reply = raw_request(
        d.addr(),
        None,
        &request(
            Version::Plain,
            &["gcc", "-c", "x.i", "-o", &canary_s],
            b"int x;\n",
        ),
    )
    .unwrap();
    assert_eq!(reply.status, 0);
    // Preprocessed text that would make the compiler open a file.
    for src in [
        &b"#include \"/etc/passwd\"\n"[..],
        b"#embed \"/etc/passwd\"\n",
        b"%:include </etc/shadow>\n",
    ] {
        let reply = raw_request(
            d.addr(),
            None,
            &request(Version::Plain, &["clang", "-c", "x.i", "-o", "x.o"], src),
        )
        .unwrap();
        assert_eq!(reply.status, 113 << 8, "{}", text(src));
    }
    assert!(!canary.exists(), "nothing written outside the job directory");

    // 2. Sizes: an input over --max-input-mb, an LZO bomb, absurd counts.
    let big = vec![b' '; 2 << 20];
    let reply = raw_request(
        d.addr(),
        None,
        &request(Version::Plain, &["gcc", "-c", "x.i", "-o", "x.o"], &big),
    )
    .unwrap();
    assert!(
        text(&reply.stderr).contains("exceeds the limit"),
        "{}",
        text(&reply.stderr)
    );
    let bomb = vec![0u8; 64 << 20];
    let reply = raw_request(
        d.addr(),
        None,
        &request(Version::Lzo, &["gcc", "-c", "x.i", "-o", "x.o"], &bomb),
    )
    .unwrap();
    assert!(
        text(&reply.stderr).contains("decompressed body"),
        "{}",
        text(&reply.stderr)
    );
    for head in [
        &b"DIST00000001ARGC7fffffff"[..],
        b"DIST00000001ARGC00000001ARGV7fffffff",
        b"DIST00000002ARGC00000001ARGV00000003gccDOTIffffffff",
    ] {
        let mut s = connect_from(d.addr(), None);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(text(&out).contains("exceeds the limit"), "{}", text(&out));
    }
    assert!(
        rss_kib(pid) < 200 << 10,
        "memory stayed bounded: {} KiB",
        rss_kib(pid)
    );

    // 3. A client that trickles, and many that say nothing: each loses its
    //    connection at --request-timeout, and none holds a compile slot.
    let trickler = std::thread::spawn({
        let addr = d.addr();
        move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let t = Instant::now();
            let _ = s.write_all(b"DIST00000001ARGC00000003");
            for b in b"ARGV00000003gccARGV00000002-c".iter().cycle() {
                if s.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(20) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            t.elapsed()
        }
    });
    // While it trickles, compiles go on: it holds no compile slot.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    good_job(d.addr());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let held = trickler.join().unwrap();
    assert!(
        held < Duration::from_secs(5),
        "a trickling client was cut off only after {held:?}"
    );
    // More silent connections than --max-connections: a connection that has
    // sent nothing is not among those sending, so a good job goes first.
    let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(d.addr()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    good_job(d.addr());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(idle);

    // 4. Random token streams and mutations of a valid request.
    let valid = request(Version::Lzo, &["gcc", "-c", "r.i", "-o", "r.o"], b"int r;\n").encode();
    let mut rng = crate::fuzz::Rng::new(0x5eed);
    for i in 0..300 {
        let bytes = if i % 2 == 0 {
            crate::fuzz::mutate(&mut rng, &valid)
        } else {
            crate::fuzz::token_soup(&mut rng)
        };
        let mut s = connect_from(d.addr(), None);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }

    // After all of it: the same process serves a good job correctly, and
    // has nothing left over.
    assert!(d.still_running());
    assert_eq!(d.child.id(), pid);
    good_job(d.addr());
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.leftovers().is_empty(), "{:?}", d.leftovers());
    let fds_after = fd_count(pid);
    assert!(
        fds_after <= fds_before + 2,
        "descriptors leaked: {fds_before} before, {fds_after} after"
    );
    let log = d.log_text();
    assert!(
        log.matches("REFUSED").count() >= refused.len(),
        "every refusal is logged"
    );
}

#[test]
fn stale_job_dirs_go_when_a_killed_daemon_restarts() {
    let dir = TestDir::new("stale-dirs");
    let allowed = compiler_dir(&dir, &["slowcc"]);
    // The daemon must be killed mid-job.
    let bin = slow_compiler(&dir, 30);
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let args = [
        "--allow",
        "127.0.0.1",
        "--compiler-dir",
        allowed.to_str().unwrap(),
    ];
    let mut d = Daemon::start_env(&dir, &args, &[("DISTCCD_PATH", &path)]);
    let mut s = connect_from(d.addr(), None);
    s.write_all(&request(Version::Plain, &["slowcc", "-c", "x.c", "-o", "x.o"], b"int x;\n").encode())
        .unwrap();
    let compiler = d.wait_compiler_pid();
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(compiler),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_eq!(d.leftovers().len(), 1, "the killed daemon left its job directory");
    drop(s);
    let d2 = Daemon::start_env(&dir, &args, &[("DISTCCD_PATH", &path)]);
    let log = d2.wait_log("removed 1 job", 1);
    assert!(log.contains("removed 1 job director"), "{log}");
    assert!(d2.leftovers().is_empty(), "{:?}", d2.leftovers());
}

#[test]
fn full_server_tmpdir_falls_back_and_says_why() {
    let dir = TestDir::new("full");
    let d = SmallTmp::start(&dir, "512k", ALLOWED, "");
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("io.c"),
        "#include <stdio.h>\nint main(void) { puts(\"full\"); return 0; }\n",
    )
    .unwrap();
    let out = our_client(
        &src,
        &format!("127.0.0.1:{}", d.port),
        &[DISTCC, "gcc", "-c", "io.c", "-o", "io.o"],
        &[("DISTCC_FALLBACK", "1")],
    );
    drop(d);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("is full") && err.contains("running locally instead"),
        "{err}"
    );
    assert!(
        local(&src, &["gcc", "-c", "io.c", "-o", "local.o"])
            .status
            .success()
    );
    assert!(fs::read(src.join("io.o")).unwrap() == fs::read(src.join("local.o")).unwrap());
}

/// Forwards a client's first `limit` bytes to `to`, then cuts both sides:
/// a network that fails mid-transfer.
fn cutting_proxy(to: SocketAddr, limit: usize) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut client, _) = l.accept().unwrap();
        let mut server = TcpStream::connect(to).unwrap();
        let mut buf = vec![0u8; limit];
        let mut n = 0;
        while n < limit {
            match client.read(&mut buf[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        let _ = server.write_all(&buf[..n]);
        // Then the network goes away.
        drop(server);
        drop(client);
    });
    (port, h)
}

#[test]
fn a_network_cut_mid_transfer_loses_nothing() {
    let dir = TestDir::new("cut");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("cut.c"),
        "#include <stdlib.h>\nint pick(int n) { return abs(n) % 7; }\n",
    )
    .unwrap();
    let (port, h) = cutting_proxy(d.addr(), 200);
    let out = our_client(
        &src,
        &format!("127.0.0.1:{port},lzo"),
        &[DISTCC, "gcc", "-O2", "-c", "cut.c", "-o", "cut.o"],
        &[("DISTCC_FALLBACK", "1")],
    );
    h.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("running locally instead"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        src.join(".distcc-rs/lock")
            .join(format!("backoff_tcp_127.0.0.1_{port}_0"))
            .exists()
    );
    assert!(
        local(&src, &["gcc", "-O2", "-c", "cut.c", "-o", "local.o"])
            .status
            .success()
    );
    assert!(fs::read(src.join("cut.o")).unwrap() == fs::read(src.join("local.o")).unwrap());
    // The daemon saw a client vanish, and is fine.
    assert!(d.wait_log("CLI_DISCONN", 1).contains("CLI_DISCONN") || d.log_text().contains("REJ_BAD_REQ"));
    good_job(d.addr());
}

/// Many client processes, many compiles, --jobs 4: nothing fails, every
/// object is a local build's, and the daemon's memory, descriptors and temp
/// files stay flat. `DISTCC_RS_SOAK=N` runs N compiles (default 2000).
#[test]
fn soak() {
    let total: usize = std::env::var("DISTCC_RS_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = TestDir::new("soak");
    let d = Daemon::serving(&dir, ALLOWED, &["--jobs", "4", "--log-level", "warning"]);
    let pid = d.child.id();
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    const SOURCES: usize = 16;
    let mut want = Vec::new();
    for i in 0..SOURCES {
        let name = format!("s{i}.c");
        fs::write(src.join(&name), format!("#include <string.h>\nstatic int t{i}[{}];\nint s{i}(const char *x) {{ return (int)strlen(x) + t{i}[{i}] * {i}; }}\n", i + 4)).unwrap();
        assert!(
            local(&src, &["gcc", "-O2", "-c", &name, "-o", &format!("want{i}.o")])
                .status
                .success()
        );
        want.push(fs::read(src.join(format!("want{i}.o"))).unwrap());
    }
    let distcc_dir = src.join(".distcc-rs");
    fs::create_dir_all(&distcc_dir).unwrap();
    let hosts = format!("127.0.0.1:{}/4,lzo", d.port);
    let workers = 4;
    let mut rss = Vec::new();
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, bool, String)>();
    let per = total / workers;
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (src, distcc_dir, hosts, tx) = (src.clone(), distcc_dir.clone(), hosts.clone(), tx.clone());
            std::thread::spawn(move || {
                for k in 0..per {
                    let i = (w * per + k) % SOURCES;
                    let out_name = format!("w{w}-{k}.o");
                    let out = Command::new(DISTCC)
                        .args(["gcc", "-O2", "-c", &format!("s{i}.c"), "-o", &out_name])
                        .current_dir(&src)
                        .env("DISTCC_HOSTS", &hosts)
                        .env("DISTCC_DIR", &distcc_dir)
                        .env("DISTCC_FALLBACK", "0")
                        .env("DISTCC_PAUSE_TIME_MSEC", "10")
                        .output()
                        .unwrap();
                    let _ = tx.send((
                        i,
                        out.status.success(),
                        format!("{out_name}|{}", text(&out.stderr)),
                    ));
                }
            })
        })
        .collect();
    drop(tx);
    let mut done = 0;
    let mut fds = Vec::new();
    for (i, ok, info) in rx {
        done += 1;
        assert!(ok, "compile {done} failed: {info}");
        let (name, _) = info.split_once('|').unwrap();
        assert!(
            fs::read(src.join(name)).unwrap() == want[i],
            "{name} differs from a local build"
        );
        let _ = fs::remove_file(src.join(name));
        if done % 50 == 0 {
            rss.push(rss_kib(pid));
            fds.push(fd_count(pid));
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(done, per * workers);
    // Memory after warm-up stays flat (allocator noise allowed).
    let warm = rss[rss.len() / 3];
    let last = *rss.last().unwrap();
    assert!(
        last <= warm + 4096,
        "RSS grew from {warm} KiB to {last} KiB over {done} compiles: {rss:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        fd_count(pid) <= fds[0],
        "descriptors: {fds:?} then {}",
        fd_count(pid)
    );
    assert!(d.leftovers().is_empty(), "{:?}", d.leftovers());
    eprintln!(
        "soak: {done} compiles in {:.1}s, RSS {:?} KiB",
        start.elapsed().as_secs_f64(),
        rss
    );
}
