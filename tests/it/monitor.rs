//! distccmon-text (ours and distcc 3.4's) reading each other's clients'
//! state files, and distccd's statistics over HTTP and in a real browser.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distcc::monitor::state::{self, Phase, State};
use distcc::protocol::Version;

use crate::common::*;

const MON: &str = env!("CARGO_BIN_EXE_distccmon-text");
const REAL_MON: &str = "/usr/bin/distccmon-text";

/// A C file gcc -O2 needs some seconds for: long enough to watch.
fn big_source(dir: &Path) {
    let big = slow_source(6000);
    fs::write(dir.join("big.c"), big).unwrap();
}

fn start_compile(client: &str, dir: &Path, distcc_dir: &Path, hosts: &str) -> Child {
    Command::new(client)
        .args(["gcc", "-O2", "-c", "big.c", "-o", "big.o"])
        .current_dir(dir)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_DIR", distcc_dir)
        .env("DISTCC_FALLBACK", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn monitor(program: &str, distcc_dir: &Path) -> String {
    let out = Command::new(program)
        .env("DISTCC_DIR", distcc_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{program}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Polls `program` until a line for `pid` in `phase` appears.
fn wait_line(program: &str, distcc_dir: &Path, pid: u32, phase: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = monitor(program, distcc_dir);
        if let Some(l) = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{pid} ")) && l.contains(phase))
        {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{program} never showed {pid} in {phase}: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_monitor_shows_the_other_clients_jobs() {
    require_real_distcc();
    assert!(
        Path::new(REAL_MON).exists(),
        "distcc 3.4's distccmon-text is missing"
    );
    let dir = TestDir::new("monitor");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    big_source(&src);
    let hosts = format!("127.0.0.1:{}", d.port);

    // Our client, watched by distcc 3.4's monitor (and ours).
    let ours_dir = dir.join("ours");
    fs::create_dir_all(&ours_dir).unwrap();
    let child = start_compile(DISTCC, &src, &ours_dir, &hosts);
    let line = wait_line(REAL_MON, &ours_dir, child.id(), "Compile");
    assert!(
        line.contains("big.c") && line.ends_with("127.0.0.1[0]"),
        "{line:?}"
    );
    let line = wait_line(MON, &ours_dir, child.id(), "Compile");
    assert_eq!(
        line,
        format!(
            "{:6}  Compile     big.c                          {:>24}[0]",
            child.id(),
            "127.0.0.1"
        )
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        monitor(MON, &ours_dir),
        "\n",
        "the record goes when the client exits"
    );
    assert_eq!(fs::read_dir(ours_dir.join("state")).unwrap().count(), 0);

    // distcc 3.4's client, watched by our monitor.
    let real_dir = dir.join("real");
    fs::create_dir_all(&real_dir).unwrap();
    let _ = fs::remove_file(src.join("big.o"));
    let child = start_compile(REAL_DISTCC, &src, &real_dir, &hosts);
    let line = wait_line(MON, &real_dir, child.id(), "Compile");
    assert!(
        line.contains("big.c") && line.ends_with("127.0.0.1[0]"),
        "{line:?}"
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn write_record(dir: &Path, pid: u32, file: &str, phase: Phase) -> std::path::PathBuf {
    let state_dir = dir.join("state");
    fs::create_dir_all(&state_dir).unwrap();
    let p = state_dir.join(format!("binstate_{pid}"));
    let s = State {
        pid: pid.into(),
        file: file.into(),
        host: "build1".into(),
        slot: 2,
        phase,
    };
    fs::write(&p, state::encode(&s)).unwrap();
    p
}

#[test]
fn stale_records_go_and_long_compiles_stay() {
    let dir = TestDir::new("stale");
    // A process that has exited: its record is stale.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let stale = write_record(dir.path(), gone_pid, "dead.c", Phase::Compile);
    // A live process whose record is two minutes old: a long compile.
    let mut live = Command::new("sleep").arg("60").spawn().unwrap();
    let long = write_record(dir.path(), live.id(), "long.c", Phase::Compile);
    let st = Command::new("touch")
        .args(["-d", "2 minutes ago"])
        .arg(&long)
        .status()
        .unwrap();
    assert!(st.success());
    // Junk and Done records are skipped, not shown.
    fs::write(dir.join("state/binstate_999999"), b"short").unwrap();
    write_record(dir.path(), std::process::id(), "finished.c", Phase::Done);

    let out = monitor(MON, dir.path());
    assert!(
        !out.contains("dead.c") && !stale.exists(),
        "a dead client's record is removed: {out}"
    );
    assert!(
        out.contains("long.c"),
        "a live client's record stays however old: {out}"
    );
    assert!(!out.contains("finished.c"), "{out}");
    assert_eq!(out.lines().filter(|l| !l.is_empty()).count(), 1, "{out}");
    // distcc 3.4's monitor drops the long compile after 60 s (the bug fixed here).
    if Path::new(REAL_MON).exists() {
        let real = monitor(REAL_MON, dir.path());
        assert!(!real.contains("long.c"), "{real}");
    }
    let _ = live.kill();
    let _ = live.wait();
}

#[test]
fn usage_and_repeating_output() {
    let dir = TestDir::new("monitor-args");
    for bad in [&["soon"][..], &["1", "2"], &["-1"]] {
        let out = Command::new(MON)
            .args(bad)
            .env("DISTCC_DIR", dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(text(&out.stderr).contains("Usage: distccmon-text [DELAY]"));
    }
    assert!(text(&Command::new(MON).arg("--help").output().unwrap().stdout).contains("Usage:"));
    assert!(
        text(&Command::new(MON).arg("--version").output().unwrap().stdout).starts_with("distccmon-text ")
    );
    // With a delay it polls again and again (fractions allowed).
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    write_record(dir.path(), sleeper.id(), "again.c", Phase::Send);
    let mut child = Command::new(MON)
        .arg("0.1")
        .env("DISTCC_DIR", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stdout = child.stdout.take().unwrap();
    while text(&got).matches("again.c").count() < 3 && Instant::now() < deadline {
        let n = stdout.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(text(&got).matches("again.c").count() >= 3, "{}", text(&got));
    assert!(text(&got).contains(&format!("{:6}  Send        again.c", sleeper.id())));
}

fn http_get(port: u16, path: &str, accept: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn stats_over_http_and_in_chromium() {
    let dir = TestDir::new("stats");
    let allowed = compiler_dir(&dir, ALLOWED);
    let stats_port = free_port();
    let d = Daemon::start(
        &dir,
        &[
            "--allow",
            "127.0.0.1",
            "--stats",
            "--stats-port",
            &stats_port.to_string(),
            "--compiler-dir",
            allowed.to_str().unwrap(),
        ],
    );
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    big_source(&src);
    fs::write(src.join("small.c"), "int small(void) { return 1; }\n").unwrap();
    let hosts = format!("127.0.0.1:{}", d.port);
    let distcc_dir = dir.join("dd");
    fs::create_dir_all(&distcc_dir).unwrap();

    // One compile done, one refused (with its reason), one running.
    let out = Command::new(DISTCC)
        .args(["gcc", "-c", "small.c", "-o", "small.o"])
        .current_dir(&src)
        .env("DISTCC_HOSTS", &hosts)
        .env("DISTCC_DIR", &distcc_dir)
        .env("DISTCC_FALLBACK", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let refused = raw_request(
        d.addr(),
        None,
        &request(Version::Plain, &["sh", "-c", "x.c", "-o", "x.o"], b"int x;\n"),
    )
    .unwrap();
    assert_eq!(refused.status, 113 << 8);
    let mut running = start_compile(DISTCC, &src, &distcc_dir, &hosts);
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page = http_get(stats_port, "/", "*/*");
        if page.contains(" big.c ") {
            break page;
        }
        assert!(Instant::now() < deadline, "the running job never showed: {page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // distcc 3.4's text, for existing scrapers.
    assert!(page.starts_with("HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: close\n\nargv /distccd\n<distccstats>\ndcc_tcp_accept "), "{page}");
    for line in [
        "dcc_compile_ok 1\n",
        "dcc_other 1\n",
        "dcc_current_load 1\n",
        "dcc_longest_job small.c\n",
        "</distccstats>\n",
    ] {
        assert!(page.contains(line), "{line:?} in {page}");
    }
    // Read from /proc as 3.4 does: the largest process, never empty while
    // a compiler runs.
    let field = |key: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {page}"))
            .to_owned()
    };
    assert!(field("dcc_max_RSS ").parse::<u64>().unwrap() > 0, "{page}");
    assert_ne!(field("dcc_max_RSS_name "), "none", "{page}");
    // Ours after it: the running job, per-client counts, the reason.
    assert!(
        page.contains("status 1 running, 1 served, 0 failed, 1 refused"),
        "{page}"
    );
    assert!(page.contains("\npump_jobs 0\n"), "no protocol-3 job yet: {page}");
    assert!(
        page.contains("client 127.0.0.1 ok 1 error 0 refused 1 failed 0"),
        "{page}"
    );
    assert!(
        page.contains("reason 1 compiler 'sh' is not allowed on this server"),
        "{page}"
    );
    let json = http_get(stats_port, "/stats.json", "*/*");
    assert!(
        json.contains("application/json") && json.contains("\"input\":\"big.c\""),
        "{json}"
    );

    // The page, in real headless Chromium, shows the running job.
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let chromium = chromium.expect("chromium is missing (apt-get install chromium)");
    let profile = dir.join("chromium-profile");
    let browse = |args: &[&str]| {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ])
            .args([
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=3000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(format!("http://127.0.0.1:{stats_port}/"))
            .output()
            .unwrap()
    };
    let dom = browse(&["--dump-dom"]);
    let dom_text = text(&dom.stdout);
    assert!(
        dom_text.contains("<td>big.c</td>"),
        "DOM: {dom_text}\n{}",
        text(&dom.stderr)
    );
    assert!(dom_text.contains("1 running, 1 served"), "{dom_text}");
    assert!(
        dom_text.contains("<polyline"),
        "the script ran and drew the graph: {dom_text}"
    );
    let shot = dir.join("stats.png");
    let _ = browse(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1000,800",
    ]);
    assert!(
        fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false),
        "a screenshot was taken"
    );
    if let Ok(keep) = std::env::var("DISTCC_RS_KEEP_SCREENSHOT") {
        let _ = fs::copy(&shot, keep);
    }

    let out = running.wait().unwrap();
    assert!(out.success());
    let after = http_get(stats_port, "/", "*/*");
    assert!(after.contains("status 0 running, 2 served"), "{after}");
}
