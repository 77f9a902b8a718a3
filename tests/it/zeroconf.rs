//! Zeroconf between two machines: `tests/zeroconf/lan` makes hosts a
//! (10.99.0.1) and b (10.99.0.2), network namespaces on a veth pair, each
//! with its own system D-Bus and avahi-daemon. Servers run in a, clients in
//! b, and every compile is checked to have landed on the server it should
//! have (its log) and to give the bytes a local compile gives.
//!
//! Root only (namespaces): skipped with the reason otherwise.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ALLOWED, DISTCC, DISTCCD, REAL_DISTCC, TestDir, compiler_dir, text};

const PUMP: &str = env!("CARGO_BIN_EXE_pump");
const LAN_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zeroconf/lan");
/// How long our client may list a server that has stopped: the shared list
/// is fresh for 10 s, then one browse (at most 2.5 s).
const GONE_WITHIN: Duration = Duration::from_millis(10_000 + 2_500 + 2_000);
const SOURCE: &str = "static int sq(int x) { return x * x; }\nint f(int n) { int s = 0; for (int i = 0; i < n; i++) s += sq(i); return s; }\n";

struct Lan {
    dir: TestDir,
    env: HashMap<String, String>,
}

impl Lan {
    /// The LAN, or `None` (said why) where it cannot be made.
    fn up(tag: &str, args: &[&str]) -> Option<Lan> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: zeroconf tests make network namespaces, which needs root");
            return None;
        }
        for tool in [
            "/usr/sbin/avahi-daemon",
            "/usr/bin/dbus-daemon",
            "/usr/bin/avahi-browse",
        ] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing (scripts/setup installs it)"
            );
        }
        let dir = TestDir::new(tag);
        let lan = dir.join("lan");
        fs::create_dir(&lan).unwrap();
        let out = Command::new(LAN_SCRIPT)
            .arg("up")
            .arg(&lan)
            .args(args)
            .args(["--owner", &std::process::id().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "lan up: {}", text(&out.stderr));
        let env = fs::read_to_string(lan.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Lan { dir, env })
    }

    fn var(&self, k: &str) -> &str {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("{k} not in the LAN's env"))
    }

    /// `argv` in host `h`, with the test's working directory `cwd`.
    fn cmd(&self, h: &str, cwd: &Path, argv: &[&str]) -> Command {
        let mut c = Command::new(LAN_SCRIPT);
        c.arg("exec")
            .arg(self.dir.join("lan"))
            .arg(h)
            .arg("--")
            .args(argv)
            .current_dir(cwd);
        c
    }

    fn browse_b(&self) -> String {
        let out = self
            .cmd("b", self.dir.path(), &["avahi-browse", "-rtp", "_distcc._tcp"])
            .output()
            .unwrap();
        text(&out.stdout)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new(LAN_SCRIPT)
            .arg("down")
            .arg(self.dir.join("lan"))
            .output();
    }
}

/// A distccd in host a, logging to a file.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(lan: &Lan, name: &str, argv: &[&str], env: &[(&str, String)]) -> Server {
        let log = lan.dir.join(&format!("{name}.log"));
        let child = lan
            .cmd("a", lan.dir.path(), argv)
            .env("TMPDIR", lan.dir.shared_dir(&format!("{name}-tmp")))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Server { child, log }
    }

    /// distccd's options in distcc 3.4's spelling, for both daemons.
    fn common_args(jobs: &'static str) -> Vec<&'static str> {
        let mut a = vec!["--daemon", "--no-detach", "--zeroconf", "--allow", "10.99.0.0/24"];
        a.extend(["--log-stderr", "--log-level", "info", "--jobs", jobs]);
        a
    }

    fn ours(lan: &Lan, port: u16, extra: &[&str]) -> Server {
        Server::ours_as(lan, "ours", port, extra, &[])
    }

    /// Ours, logging to `name`.log, with `env` added.
    fn ours_as(lan: &Lan, name: &str, port: u16, extra: &[&str], env: &[(&str, String)]) -> Server {
        let allowed = lan.dir.join("allowed");
        if !allowed.exists() {
            compiler_dir(&lan.dir, ALLOWED);
        }
        let port = port.to_string();
        let mut argv = vec![DISTCCD];
        argv.extend(Server::common_args("3"));
        argv.extend(["--port", &port, "--compiler-dir", allowed.to_str().unwrap()]);
        argv.extend_from_slice(extra);
        Server::start(lan, name, &argv, env)
    }

    fn theirs(lan: &Lan) -> Server {
        let mut argv = vec!["/usr/bin/distccd"];
        argv.extend(Server::common_args("5"));
        Server::start(lan, "theirs", &argv, &[])
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Compiles served for host b.
    fn served_b(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains("client: 10.99.0.2:") && l.contains("COMPILE_OK"))
            .count()
    }

    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.log_text();
            if t.contains(needle) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no '{needle}' in the server's log:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (briefly: the log line may follow the reply) until `n`
    /// compiles for host b are logged.
    fn wait_served(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.served_b() < n {
            assert!(
                Instant::now() < deadline,
                "{} compiles logged, not {n}:\n{}",
                self.served_b(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, as systemd stops it, and waits for it to exit.
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "distccd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `cond` holds, up to `secs`.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The compile directory (the source and a local object to compare with).
fn work(lan: &Lan) -> PathBuf {
    let w = lan.dir.join("work");
    fs::create_dir_all(&w).unwrap();
    fs::write(w.join("zc.c"), SOURCE).unwrap();
    let out = Command::new("gcc")
        .args(["-O2", "-c", "zc.c", "-o", "local.o"])
        .current_dir(&w)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    w
}

/// A `+zeroconf` compile in host b with `client`, to `obj`.
fn compile(lan: &Lan, work: &Path, client: &str, distcc_dir: &str, obj: &str, fallback: bool) -> Output {
    let dd = work.join(distcc_dir);
    // distcc 3.4 does not make its DISTCC_DIR.
    fs::create_dir_all(&dd).unwrap();
    lan.cmd("b", work, &[client, "gcc", "-O2", "-c", "zc.c", "-o", obj])
        .env("DISTCC_HOSTS", "+zeroconf")
        .env("DISTCC_DIR", &dd)
        .env("DISTCC_FALLBACK", if fallback { "1" } else { "0" })
        .env("DISTCC_VERBOSE", "1")
        .env_remove("DISTCC_LOG")
        .output()
        .unwrap()
}

fn assert_compiled(out: &Output, work: &Path, obj: &str) {
    assert!(out.status.success(), "compile failed:\n{}", text(&out.stderr));
    assert_eq!(
        fs::read(work.join(obj)).unwrap(),
        fs::read(work.join("local.o")).unwrap(),
        "{obj} differs from the local object"
    );
    let _ = fs::remove_file(work.join(obj));
}

fn show_hosts(lan: &Lan, work: &Path, distcc_dir: &str) -> String {
    let out = lan
        .cmd("b", work, &[DISTCC, "--show-hosts"])
        .env("DISTCC_HOSTS", "+zeroconf")
        .env("DISTCC_DIR", work.join(distcc_dir))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// The TXT keys of the `avahi-browse -p` line for IPv4 `port`, as listed.
fn txt_keys(browse: &str, port: u16) -> Vec<String> {
    let line = browse
        .lines()
        .find(|l| l.starts_with("=;") && l.contains(";IPv4;") && l.contains(&format!(";10.99.0.1;{port};")))
        .unwrap_or_else(|| panic!("no record for port {port} in:\n{browse}"));
    let txt = line.rsplit(';').next().unwrap();
    txt.split("\" \"")
        .map(|kv| kv.trim_matches('"').split('=').next().unwrap().to_owned())
        .collect()
}

#[test]
fn with_avahi_both_ways_and_a_server_that_stops() {
    let Some(lan) = Lan::up("zc-avahi", &[]) else {
        return;
    };
    crate::common::require_real_distcc();
    let work = work(&lan);
    // distcc 3.4 first: a second registration of its name through the same
    // avahi-daemon makes 3.4 abort (an assertion in its error path), ours renames.
    let mut theirs = Server::theirs(&lan);
    wait_for(20, "distccd 3.4's record", || {
        lan.browse_b().contains(";10.99.0.1;3632;")
    });
    let port = 3700;
    let mut ours = Server::ours(&lan, port, &["--listen", "10.99.0.1"]);
    let log = ours.wait_log("zeroconf: published");
    let host = lan.var("LAN_A_HOST");
    assert!(log.contains("via avahi-daemon"), "{log}");
    assert!(
        log.contains(&format!("as distcc@{host} #2")),
        "the collision is renamed: {log}"
    );

    // What b's avahi sees: 3.4's keys in 3.4's order, then ours; IPv4 only,
    // because ours listens on 10.99.0.1 alone.
    wait_for(20, "our record", || {
        lan.browse_b().contains(&format!(";10.99.0.1;{port};"))
    });
    let browse = lan.browse_b();
    let mine = txt_keys(&browse, port);
    let ref34 = txt_keys(&browse, 3632);
    let mine34: Vec<&String> = mine
        .iter()
        .filter(|k| *k != "distcc-rs" && *k != "protocols")
        .collect();
    assert_eq!(
        mine34,
        ref34.iter().collect::<Vec<_>>(),
        "TXT keys as 3.4's:\n{browse}"
    );
    assert_eq!(mine.len(), ref34.len() + 2, "{mine:?}");
    assert!(
        !browse
            .lines()
            .any(|l| l.contains(";IPv6;") && l.contains(&format!(";{port};"))),
        "published over IPv6 though listening on 10.99.0.1 only:\n{browse}"
    );

    // Our client finds both, says where from, and compiles on a found server.
    let hosts = show_hosts(&lan, &work, "dd-ours");
    let mine_spec = format!("10.99.0.1:{port}/3,lzo,cpp  # +zeroconf: distcc@{host} #2");
    assert!(hosts.contains(&mine_spec), "{hosts}");
    assert!(
        hosts.contains("10.99.0.1:3632/5  # +zeroconf: distcc@"),
        "3.4's, plain: {hosts}"
    );
    let out = compile(&lan, &work, DISTCC, "dd-ours", "ours.o", false);
    assert_compiled(&out, &work, "ours.o");
    wait_for(5, "the compile in a server's log", || {
        ours.served_b() + theirs.served_b() == 1
    });

    // distcc 3.4's client finds ours (its hosts file) and compiles on a found server.
    let out = compile(&lan, &work, REAL_DISTCC, "dd-34", "theirs.o", false);
    assert_compiled(&out, &work, "theirs.o");
    let found34 = fs::read_to_string(work.join("dd-34/zeroconf/hosts")).unwrap();
    assert!(found34.contains(&format!("10.99.0.1:{port}/3")), "{found34}");
    wait_for(5, "the compile in a server's log", || {
        ours.served_b() + theirs.served_b() == 2
    });

    // Ours stops. A client whose list still has it goes to the other server.
    let before = theirs.served_b();
    // A second list, not expired by the failure below, to time the bound.
    let watched = show_hosts(&lan, &work, "dd-watch");
    assert!(watched.contains(&mine_spec), "{watched}");
    ours.stop();
    assert!(
        ours.log_text().contains("zeroconf: withdrawn"),
        "{}",
        ours.log_text()
    );
    let stopped = Instant::now();
    for i in 0..3 {
        let obj = format!("after{i}.o");
        let out = compile(&lan, &work, DISTCC, "dd-ours", &obj, false);
        assert_compiled(&out, &work, &obj);
    }
    theirs.wait_served(before + 3);
    wait_for(
        GONE_WITHIN.as_secs() + 1,
        "our stopped server to leave the list",
        || !show_hosts(&lan, &work, "dd-watch").contains(&format!(":{port}/")),
    );
    let gone = stopped.elapsed();
    assert!(gone <= GONE_WITHIN, "listed {gone:?} after it stopped");
    eprintln!("a stopped server left our client's list after {gone:?}");

    // The last server stops: with fallback (the default) the build goes on here.
    theirs.stop();
    wait_for(20, "3.4's record to go", || {
        !lan.browse_b().contains(";10.99.0.1;3632;")
    });
    let out = compile(&lan, &work, DISTCC, "dd-last", "last.o", true);
    assert_compiled(&out, &work, "last.o");
    let said = text(&out.stderr);
    assert!(
        said.contains("+zeroconf found none"),
        "says why it is local: {said}"
    );
}

#[test]
fn without_avahi_the_built_in_responder_is_found_by_both_clients() {
    let Some(lan) = Lan::up("zc-builtin", &["--no-avahi", "a"]) else {
        return;
    };
    crate::common::require_real_distcc();
    let work = work(&lan);
    let port = 3710;
    let mut ours = Server::ours(&lan, port, &[]);
    let log = ours.wait_log("zeroconf: published");
    assert!(
        log.contains("via the built-in mDNS responder (avahi-daemon is not on the system D-Bus)"),
        "{log}"
    );
    wait_for(20, "b's avahi to see the built-in responder", || {
        lan.browse_b().contains(&format!(";10.99.0.1;{port};"))
    });

    let out = compile(&lan, &work, REAL_DISTCC, "dd-34", "theirs.o", false);
    assert_compiled(&out, &work, "theirs.o");
    ours.wait_served(1);

    let out = compile(&lan, &work, DISTCC, "dd-ours", "ours.o", false);
    assert_compiled(&out, &work, "ours.o");
    ours.wait_served(2);
    let hosts = show_hosts(&lan, &work, "dd-ours");
    assert!(
        hosts.contains(&format!("10.99.0.1:{port}/3,lzo,cpp  # +zeroconf: distcc@")),
        "{hosts}"
    );

    // Stopping sends the goodbye: b's avahi drops the record at once, not
    // when its TTL (75 min for a service) runs out.
    ours.stop();
    assert!(
        ours.log_text().contains("zeroconf: withdrawn (goodbye sent"),
        "{}",
        ours.log_text()
    );
    wait_for(5, "the goodbye to reach b", || {
        !lan.browse_b().contains(&format!(";{port};"))
    });
}

#[test]
fn a_client_without_avahi_browses_itself_and_pump_uses_what_it_found() {
    let Some(lan) = Lan::up("zc-client-mdns", &["--no-avahi", "b"]) else {
        return;
    };
    let work = work(&lan);
    let port = 3720;
    let ours = Server::ours(&lan, port, &[]);
    assert!(ours.wait_log("zeroconf: published").contains("via avahi-daemon"));
    // b has no avahi-daemon: our client browses with its own mDNS.
    let mut tries = 0;
    wait_for(20, "our client to find the server", || {
        tries += 1;
        let hosts = show_hosts(&lan, &work, &format!("dd-try{tries}"));
        hosts.contains(&format!("10.99.0.1:{port}/3,lzo,cpp  # +zeroconf: distcc@"))
    });
    // A server whose cc is another version: found, not used, and
    // DISTCC_VERBOSE says why.
    let fake = lan.dir.join("fake-cc");
    fs::create_dir_all(&fake).unwrap();
    let script =
        "#!/bin/sh\ncase \"$1\" in -dumpversion) echo 99;; -dumpmachine) echo x86_64-linux-gnu;; esac\n";
    fs::write(fake.join("cc"), script).unwrap();
    fs::set_permissions(
        fake.join("cc"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:/usr/bin:/bin", fake.display());
    let other = Server::ours_as(&lan, "other", port + 1, &[], &[("DISTCCD_PATH", path)]);
    other.wait_log("zeroconf: published");
    // A list of its own, browsed now that both are published.
    let out = compile(&lan, &work, DISTCC, "dd-mixed", "ours.o", false);
    assert_compiled(&out, &work, "ours.o");
    let said = text(&out.stderr);
    assert!(said.contains("via mDNS"), "{said}");
    assert!(
        said.contains(&format!(
            "not using distcc@{} #2 at port {}: its compiler is _x86-64-linux-gnu--99",
            lan.var("LAN_A_HOST"),
            port + 1
        )),
        "{said}"
    );
    ours.wait_served(1);
    assert!(!show_hosts(&lan, &work, "dd-mixed").contains(&format!(":{}/", port + 1)));

    // Under pump, the ,cpp our server's TXT gave makes it a pump-mode job.
    let out = lan
        .cmd(
            "b",
            &work,
            &[PUMP, DISTCC, "gcc", "-O2", "-c", "zc.c", "-o", "pump.o"],
        )
        .env("DISTCC_HOSTS", "+zeroconf")
        .env("DISTCC_DIR", work.join("dd-ours"))
        .env("DISTCC_FALLBACK", "0")
        .env("DISTCC_VERBOSE", "1")
        .env_remove("DISTCC_LOG")
        .output()
        .unwrap();
    assert_compiled(&out, &work, "pump.o");
    ours.wait_served(2);
    assert!(ours.log_text().contains("protocol:3"), "{}", ours.log_text());
}
