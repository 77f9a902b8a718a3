//! Shared helpers: scratch directories, a running distccd, the real distcc 3.4 client.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use distcc::protocol::blocking::{ReadError, read_message};
use distcc::protocol::message::ReplyDecoder;
use distcc::protocol::{Limits, Reply, Request, Version};

pub const DISTCCD: &str = env!("CARGO_BIN_EXE_distccd");
/// Debian's distcc 3.4 client: the peer these tests are about.
pub const REAL_DISTCC: &str = "/usr/bin/distcc";

/// A scratch directory, removed on drop. World-readable because a daemon
/// started as root serves as `nobody`.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "distcc-rs-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }
    /// A directory anyone may write to, like /tmp.
    pub fn shared_dir(&self, name: &str) -> PathBuf {
        let p = self.join(name);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o1777)).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn require_real_distcc() {
    assert!(
        Path::new(REAL_DISTCC).exists(),
        "{REAL_DISTCC} is missing: these tests need Debian's distcc 3.4 (apt-get install distcc; .ci/run does it)"
    );
}

/// Compiler names the real distcc client sends (it rewrites gcc to the triple).
pub const ALLOWED: &[&str] = &[
    "cc",
    "c++",
    "gcc",
    "g++",
    "x86_64-linux-gnu-gcc",
    "x86_64-linux-gnu-g++",
    "clang",
    "clang++",
];

/// An allow-list directory with masquerade-style links, as the package makes.
pub fn compiler_dir(dir: &TestDir, names: &[&str]) -> PathBuf {
    let d = dir.join("allowed");
    fs::create_dir_all(&d).unwrap();
    for n in names {
        std::os::unix::fs::symlink("/usr/bin/distcc", d.join(n)).unwrap();
    }
    d
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub tmp: PathBuf,
}

impl Daemon {
    /// Starts our distccd on a free loopback port with `args` added, logging
    /// to a file; waits until it accepts connections.
    /// A daemon for loopback clients with an allow-list of `compilers`, plus `extra` options.
    pub fn serving(dir: &TestDir, compilers: &[&str], extra: &[&str]) -> Daemon {
        let allowed = compiler_dir(dir, compilers);
        let mut args = vec![
            "--allow",
            "127.0.0.1",
            "--compiler-dir",
            allowed.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Self::start(dir, &args)
    }

    pub fn start(dir: &TestDir, args: &[&str]) -> Daemon {
        Self::start_env(dir, args, &[])
    }

    pub fn start_env(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let tmp = dir.shared_dir("daemon-tmp");
        let log = dir.join("distccd.log");
        fs::File::create(&log).unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(DISTCCD);
            cmd.args([
                "--daemon",
                "--no-detach",
                "--port",
                &port.to_string(),
                "--log-level",
                "info",
            ])
            .arg("--log-file")
            .arg(&log)
            .args(args)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("start distccd");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(st) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                    if err.contains("Address already in use") {
                        break; // lost a race for the port: try another
                    }
                    panic!("distccd exited at start with {st}: {err}");
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Daemon {
                        child,
                        port,
                        log,
                        tmp,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start distccd");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap()
    }

    /// Waits until the log contains `n` lines with `needle` (jobs are logged
    /// after the reply is sent, so a client can finish first).
    pub fn wait_log(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.log_text();
            if text.matches(needle).count() >= n || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What finished jobs left in the daemon's TMPDIR: anything but the
    /// empty job directories a running daemon keeps for its next jobs.
    pub fn leftovers(&self) -> Vec<String> {
        fs::read_dir(&self.tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.is_dir() || fs::read_dir(p).map_or(true, |mut d| d.next().is_some()))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// The pid a [`slow_compiler`] wrote in its job directory, once it has.
    pub fn wait_compiler_pid(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for job in fs::read_dir(&self.tmp).unwrap().flatten() {
                if let Ok(s) = fs::read_to_string(job.path().join("slowcc.pid"))
                    && let Ok(pid) = s.trim().parse()
                {
                    return pid;
                }
            }
            assert!(Instant::now() < deadline, "the compiler never started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in compiler `slowcc` in `dir/bin` that writes its pid in its job
/// directory (the only place the sandbox lets it write) and sleeps: no real
/// compiler can be made to run for a chosen time on demand.
pub fn slow_compiler(dir: &TestDir, secs: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let script = format!("#!/bin/sh\necho $$ > slowcc.pid\nexec sleep {secs}\n");
    fs::write(bin.join("slowcc"), script).unwrap();
    fs::set_permissions(bin.join("slowcc"), fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// distccd in a private mount namespace whose TMPDIR is a tmpfs of `size`
/// (`512k`, `64m`), so a job can fill only that; the tmpfs vanishes with it.
pub struct SmallTmp {
    pub child: Child,
    pub port: u16,
    pub tmp: PathBuf,
}

impl SmallTmp {
    pub fn start(dir: &TestDir, size: &str, compilers: &[&str], extra: &str) -> SmallTmp {
        let allowed = compiler_dir(dir, compilers);
        let tmp = dir.shared_dir("small-tmp");
        let log = dir.join("distccd.log");
        let port = free_port();
        let script = format!(
            "mount -t tmpfs -o size={size},mode=1777 small {tmp} && exec {DISTCCD} --daemon --no-detach \
             --allow 127.0.0.1 --port {port} --log-file {log} --log-level info --compiler-dir {allowed} {extra}",
            tmp = tmp.display(),
            log = log.display(),
            allowed = allowed.display()
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "distccd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        SmallTmp { child, port, tmp }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Bytes used on the daemon's tmpfs, seen through its own root.
    pub fn used(&self) -> u64 {
        let p = format!("/proc/{}/root{}", self.child.id(), self.tmp.display());
        nix::sys::statvfs::statvfs(p.as_str())
            .map(|v| (v.blocks() - v.blocks_free()) * v.fragment_size())
            .unwrap_or(0)
    }
}

impl Drop for SmallTmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `compiler` runs here (`--version` succeeds).
pub fn have(compiler: &str) -> bool {
    Command::new(compiler)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a compiler client command (`/usr/bin/distcc …`) in `cwd` with a
/// private DISTCC_DIR and fallback off, so a silent local compile cannot hide
/// a failure.
pub fn run_client(cwd: &Path, hosts: &str, argv: &[&str]) -> Output {
    let distcc_dir = cwd.join(".distcc");
    fs::create_dir_all(&distcc_dir).unwrap();
    // distcc 3.4 backs a host off after any failed remote compile, even a
    // syntax error; each run here starts without that memory.
    if let Ok(entries) = fs::read_dir(distcc_dir.join("lock")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("backoff") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(cwd)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_DIR", &distcc_dir)
        .env("DISTCC_FALLBACK", "0")
        .env(
            "DISTCC_VERBOSE",
            std::env::var("DISTCC_TEST_VERBOSE").unwrap_or_default(),
        )
        .env_remove("DISTCC_LOG")
        .output()
        .unwrap()
}

pub fn local(cwd: &Path, argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(cwd)
        .output()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends one request with our codec, from `source` if given (to test
/// --allow), and reads the reply.
pub fn raw_request(
    daemon: SocketAddr,
    source: Option<std::net::IpAddr>,
    req: &Request,
) -> Result<Reply, ReadError> {
    let mut s = connect_from(daemon, source);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&req.encode()).unwrap();
    read_message(&mut s, ReplyDecoder::new(req.version, Limits::default()))
}

pub fn connect_from(daemon: SocketAddr, source: Option<std::net::IpAddr>) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, socket};
    use std::os::fd::AsRawFd;
    let Some(src) = source else {
        return TcpStream::connect(daemon).unwrap();
    };
    let family = if src.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(fd.as_raw_fd(), &SockaddrStorage::from(SocketAddr::new(src, 0))).unwrap();
    connect(fd.as_raw_fd(), &SockaddrStorage::from(daemon)).unwrap();
    TcpStream::from(fd)
}

pub fn request(version: Version, argv: &[&str], doti: &[u8]) -> Request {
    Request {
        version,
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        doti: doti.to_vec(),
        pump: None,
    }
}

pub const DISTCC: &str = env!("CARGO_BIN_EXE_distcc");

/// Debian's real distccd 3.4 on a free loopback port, logging to a file.
pub struct RealDaemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl RealDaemon {
    pub fn start(dir: &TestDir) -> RealDaemon {
        Self::start_with(dir, &[])
    }

    /// As [`RealDaemon::start`], with `extra` options after the usual ones.
    pub fn start_with(dir: &TestDir, extra: &[&str]) -> RealDaemon {
        assert!(
            Path::new("/usr/bin/distccd").exists(),
            "Debian's distccd 3.4 is missing (apt-get install distcc)"
        );
        let log = dir.join("real-distccd.log");
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("/usr/bin/distccd")
                .args([
                    "--daemon",
                    "--no-detach",
                    "--allow",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                ])
                .args(["--log-stderr", "--log-level", "info", "--jobs", "4"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return RealDaemon { child, port, log };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start Debian's distccd");
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RealDaemon {
    fn drop(&mut self) {
        // distccd 3.4 preforks children in its own process group; they would
        // outlive a kill of the parent alone.
        let pg = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs our client with a private DISTCC_DIR, fallback off and verbose
/// messages, plus `env`.
pub fn our_client(cwd: &Path, hosts: &str, argv: &[&str], env: &[(&str, &str)]) -> Output {
    let distcc_dir = cwd.join(".distcc-rs");
    fs::create_dir_all(&distcc_dir).unwrap();
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_DIR", &distcc_dir)
        .env("DISTCC_FALLBACK", "0")
        .env("DISTCC_VERBOSE", "1")
        .env_remove("DISTCC_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// C source that `gcc -O2` needs some seconds for: `functions` small functions
/// with loops. Long enough to watch, kill or drain a compile.
pub fn slow_source(functions: usize) -> String {
    (0..functions)
        .map(|i| format!("int f{i}(int x) {{ int s = 0; for (int k = 0; k < x; k++) s += k * {i} ^ (s >> 3); return s; }}\n"))
        .collect()
}

/// The venv with BuildGrid that scripts/setup makes (or `$DISTCC_RS_BUILDGRID_VENV`).
pub fn buildgrid_venv() -> PathBuf {
    if let Some(v) = std::env::var_os("DISTCC_RS_BUILDGRID_VENV") {
        return PathBuf::from(v);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("neither XDG_CACHE_HOME nor HOME is set");
    cache.join("distcc-rs").join("buildgrid-venv")
}

/// The venv's Python, which has grpcio and BuildGrid's protos (for tests/reapi/*.py).
pub fn reapi_python() -> PathBuf {
    let py = buildgrid_venv().join("bin").join("python");
    assert!(
        py.exists(),
        "{} is missing: the REAPI tests need BuildGrid in a venv (scripts/setup makes it; .ci/run does it)",
        py.display()
    );
    py
}

/// A script of tests/reapi.
pub fn reapi_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("reapi")
        .join(name)
}

/// A real REAPI v2 cluster on loopback, run by tests/reapi/cluster.py:
/// PostgreSQL (as `postgres` when we are root), BuildGrid's server and one
/// test worker (tests/reapi/worker.py), all in a temp dir inside the
/// TestDir. Stopped on drop (SIGTERM, and its stdin closes), by its PID; the
/// script stops its own children by theirs.
pub struct Cluster {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    /// The server's port on 127.0.0.1 (instance name "", no TLS, no auth).
    pub port: u16,
    /// PostgreSQL, BuildGrid and the worker.
    pub pids: Vec<i32>,
    /// The worker's log of executed actions: one `HASH/SIZE` line each.
    pub executed_file: PathBuf,
    /// The cluster's own temp dir (logs: postgres.log, server.log, worker.log).
    pub dir: PathBuf,
    /// How long the cluster took to start, by its own clock.
    pub start_secs: f64,
    log: PathBuf,
}

impl Cluster {
    pub fn start(dir: &TestDir) -> Cluster {
        Self::start_with(dir, &[])
    }

    /// With more options for cluster.py (`--property K=V`, `--wildcard-key K`, `--verbose`).
    pub fn start_with(dir: &TestDir, extra: &[&str]) -> Cluster {
        let log = dir.join("reapi-cluster.log");
        let mut child = Command::new(reapi_python())
            .arg(reapi_script("cluster.py"))
            .arg("--stop-on-stdin-eof")
            .arg("--parent")
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tests/reapi/cluster.py");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("READY ") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the REAPI cluster did not start:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let field = |k: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k).and_then(|w| w.strip_prefix('=')))
                .unwrap_or_else(|| panic!("no {k}= in {line:?}"))
                .to_string()
        };
        Cluster {
            port: field("port").parse().unwrap(),
            pids: field("pids").split(',').map(|p| p.parse().unwrap()).collect(),
            executed_file: PathBuf::from(field("executed")),
            dir: PathBuf::from(field("dir")),
            start_secs: field("start_secs").parse().unwrap(),
            child,
            stdin,
            log,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The digests (`HASH/SIZE`) of the actions the worker executed, in order.
    pub fn executed_digests(&self) -> Vec<String> {
        fs::read_to_string(&self.executed_file)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// How many actions the worker executed (cache hits are not).
    pub fn executed(&self) -> usize {
        self.executed_digests().len()
    }

    /// What the script said on stderr, and the tails of the logs on a failure.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the cluster and waits for it (what drop does).
    pub fn stop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            self.stdin = None;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            while self.child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    // The script did not get to reap its processes, so
                    // their pids are still theirs: stopped here, so that
                    // nothing a test started outlives it.
                    for &pid in &self.pids {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
