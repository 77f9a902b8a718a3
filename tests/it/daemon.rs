//! Our distccd served to the real distcc 3.4 client (Debian's /usr/bin/distcc)
//! with real gcc and g++, and to hostile raw requests.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use distcc::protocol::blocking::read_message;
use distcc::protocol::message::ReplyDecoder;
use distcc::protocol::{Limits, Version};

use crate::common::*;

const HELLO_C: &str =
    "#include <stdio.h>\n#include \"greet.h\"\nint main(void) { printf(\"%s\\n\", GREETING); return 0; }\n";
const GREET_H: &str = "#define GREETING \"hello from distcc-rs\"\n";
const SHAPES_CPP: &str = "#include <vector>\n#include <string>\n#include <memory>\n\
struct Shape { virtual ~Shape() = default; virtual double area() const = 0; };\n\
struct Sq : Shape { double s; explicit Sq(double s) : s(s) {} double area() const override { return s * s; } };\n\
namespace { std::string tag() { return \"anon\"; } }\n\
double total(const std::vector<std::unique_ptr<Shape>>& v) { double t = 0; for (auto& s : v) t += s->area(); return t + tag().size(); }\n";
/// C++ with -g: no headers, so no macros (see CALC_C).
const COUNTER_CC: &str = "template <typename T> struct Counter {\n    T n{};\n    void bump() { ++n; }\n};\n\nint use_counter()\n{\n    Counter<int> c;\n    c.bump();\n    return c.n;\n}\n";
/// No macro on any line with code: distcc 3.4's client sends macro-expanded
/// text, so with -g the column numbers of lines that use macros differ from a
/// local build's (a limitation of its plain mode, not of the server).
const CALC_C: &str = "static int square(int x)\n{\n    return x * x;\n}\n\nint sum_squares(int n)\n{\n    int t = 0;\n    for (int i = 0; i < n; i++)\n        t += square(i);\n    return t;\n}\n";
const WARN_C: &str = "int f(void)\n{\n    int unused_variable;\n    return 0;\n}\n";
const BAD_C: &str = "int main(void)\n{\n    return undeclared_thing;\n}\n";

fn project(dir: &TestDir) -> std::path::PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("hello.c"), HELLO_C).unwrap();
    fs::write(src.join("greet.h"), GREET_H).unwrap();
    fs::write(src.join("shapes.cpp"), SHAPES_CPP).unwrap();
    fs::write(src.join("warn.c"), WARN_C).unwrap();
    fs::write(src.join("calc.c"), CALC_C).unwrap();
    fs::write(src.join("counter.cc"), COUNTER_CC).unwrap();
    fs::write(src.join("bad.c"), BAD_C).unwrap();
    src
}

/// Builds `argv` through distcc, then locally in the same directory (so -g's
/// recorded directory matches), and checks the outputs are byte-identical.
/// Returns the distcc run's output.
fn distributed_equals_local(
    src: &Path,
    hosts: &str,
    argv: &[&str],
    outputs: &[&str],
) -> std::process::Output {
    let mut remote_argv = vec![REAL_DISTCC];
    remote_argv.extend_from_slice(argv);
    let remote = run_client(src, hosts, &remote_argv);
    assert!(
        remote.status.success(),
        "distcc {argv:?} failed: {}",
        text(&remote.stderr)
    );
    let saved: Vec<Vec<u8>> = outputs.iter().map(|o| fs::read(src.join(o)).unwrap()).collect();
    for o in outputs {
        fs::remove_file(src.join(o)).unwrap();
    }
    let here = local(src, argv);
    assert!(
        here.status.success(),
        "local {argv:?} failed: {}",
        text(&here.stderr)
    );
    for (o, remote_bytes) in outputs.iter().zip(saved) {
        let local_bytes = fs::read(src.join(o)).unwrap();
        assert!(!local_bytes.is_empty(), "{o} is empty");
        assert!(
            remote_bytes == local_bytes,
            "{argv:?}: {o} differs from a local build"
        );
    }
    remote
}

#[test]
fn real_client_builds_c_and_cxx_identical_to_local() {
    require_real_distcc();
    let dir = TestDir::new("identical");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = project(&dir);
    let plain = format!("127.0.0.1:{}", d.port);
    let lzo = format!("127.0.0.1:{},lzo", d.port);
    let cases: &[(&[&str], &[&str])] = &[
        (&["gcc", "-c", "hello.c", "-o", "hello.o"], &["hello.o"]),
        (
            &["gcc", "-g", "-O2", "-c", "calc.c", "-o", "calc-g.o"],
            &["calc-g.o"],
        ),
        (&["gcc", "-g", "-c", "calc.c"], &["calc.o"]),
        (&["gcc", "-c", "hello.c"], &["hello.o"]),
        (
            &["g++", "-std=c++17", "-O2", "-c", "shapes.cpp", "-o", "shapes.o"],
            &["shapes.o"],
        ),
        (
            &["g++", "-g", "-O1", "-c", "counter.cc", "-o", "counter.o"],
            &["counter.o"],
        ),
        // distcc 3.4 runs cpp without -o, so the .d target is only right when
        // the object has the default name (its known bug; our client fixes it).
        (
            &["gcc", "-MD", "-MF", "hello.d", "-c", "hello.c", "-o", "hello.o"],
            &["hello.o", "hello.d"],
        ),
        (&["gcc", "-MMD", "-c", "calc.c"], &["calc.o", "calc.d"]),
        (&["gcc", "-S", "-O1", "hello.c", "-o", "hello.s"], &["hello.s"]),
        (
            &["gcc", "-x", "c", "-c", "hello.c", "-o", "hello-x.o"],
            &["hello-x.o"],
        ),
    ];
    let mut jobs = 0;
    for hosts in [&plain, &lzo] {
        for (argv, outputs) in cases {
            distributed_equals_local(&src, hosts, argv, outputs);
            jobs += 1;
        }
    }
    let log = d.wait_log("COMPILE_OK", jobs);
    assert_eq!(
        log.matches("COMPILE_OK").count(),
        jobs,
        "every job is logged:\n{log}"
    );
    for input in ["hello.c", "shapes.cpp"] {
        assert!(
            log.contains("x86_64-linux-gnu-g") && log.contains(input),
            "{input} in log:\n{log}"
        );
    }
    assert!(log.contains("client: 127.0.0.1:"), "peer named:\n{log}");
    assert!(
        d.leftovers().is_empty(),
        "job directories left behind: {:?}",
        d.leftovers()
    );
}

#[test]
fn warnings_and_errors_are_relayed() {
    require_real_distcc();
    let dir = TestDir::new("diagnostics");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = project(&dir);
    for hosts in [
        format!("127.0.0.1:{}", d.port),
        format!("127.0.0.1:{},lzo", d.port),
    ] {
        let out = distributed_equals_local(
            &src,
            &hosts,
            &["gcc", "-Wall", "-c", "warn.c", "-o", "warn.o"],
            &["warn.o"],
        );
        let err = text(&out.stderr);
        assert!(
            err.contains("warn.c:3:9: warning: unused variable"),
            "warning relayed: {err}"
        );

        let _ = fs::remove_file(src.join("bad.o"));
        let bad = run_client(&src, &hosts, &[REAL_DISTCC, "gcc", "-c", "bad.c", "-o", "bad.o"]);
        let local_bad = local(&src, &["gcc", "-c", "bad.c", "-o", "bad.o"]);
        assert_eq!(
            bad.status.code(),
            Some(1),
            "compile error exit status: {}",
            text(&bad.stderr)
        );
        assert_eq!(local_bad.status.code(), Some(1));
        let err = text(&bad.stderr);
        assert!(
            err.contains("bad.c:3:12: error: 'undeclared_thing' undeclared")
                || err.contains("bad.c:3:12: error: ‘undeclared_thing’ undeclared"),
            "{err}"
        );
        assert!(!src.join("bad.o").exists(), "no object after a failed compile");
    }
    let log = d.wait_log("COMPILE_ERROR", 2);
    assert_eq!(log.matches("COMPILE_ERROR").count(), 2, "{log}");
    assert!(
        log.contains("COMPILE_ERROR exit:1") && log.contains("bad.c"),
        "{log}"
    );
    // One plain host, one ,lzo host: the line says which protocol each came as.
    for protocol in ["protocol:1 ", "protocol:2 "] {
        assert!(
            log.lines()
                .any(|l| l.contains("COMPILE_ERROR") && l.contains(protocol)),
            "{protocol} in {log}"
        );
    }
}

#[test]
fn fifty_concurrent_compiles_with_two_job_slots() {
    require_real_distcc();
    let dir = TestDir::new("fifty");
    let d = Daemon::serving(&dir, ALLOWED, &["--jobs", "2"]);
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..50 {
        fs::write(
            src.join(format!("f{i}.c")),
            format!("#include <string.h>\nint f{i}(const char *s) {{ return (int)strlen(s) * {i}; }}\n"),
        )
        .unwrap();
    }
    // A limit of 50 makes the client open all 50 connections at once; the
    // daemon must queue them behind its 2 slots, not drop them.
    let hosts = format!("127.0.0.1:{}/50,lzo", d.port);
    let children: Vec<_> = (0..50)
        .map(|i| {
            let distcc_dir = src.join(".distcc");
            fs::create_dir_all(&distcc_dir).unwrap();
            Command::new(REAL_DISTCC)
                .args(["gcc", "-O2", "-c", &format!("f{i}.c"), "-o", &format!("r{i}.o")])
                .current_dir(&src)
                .env("DISTCC_HOSTS", &hosts)
                .env("DISTCC_DIR", &distcc_dir)
                .env("DISTCC_FALLBACK", "0")
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "job {i}: {}", text(&out.stderr));
    }
    for i in 0..50 {
        let l = local(
            &src,
            &["gcc", "-O2", "-c", &format!("f{i}.c"), "-o", &format!("l{i}.o")],
        );
        assert!(l.status.success());
        assert!(
            fs::read(src.join(format!("r{i}.o"))).unwrap() == fs::read(src.join(format!("l{i}.o"))).unwrap(),
            "f{i}.o differs"
        );
    }
    let log = d.wait_log("COMPILE_OK", 50);
    for i in 0..50 {
        assert!(log.contains(&format!(" f{i}.c\n")), "f{i}.c missing from log");
    }
    assert!(d.leftovers().is_empty());
}

fn good_job(d: &Daemon, source: Option<IpAddr>) {
    let addr = match source {
        Some(IpAddr::V6(_)) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, d.port)),
        _ => d.addr(),
    };
    let reply = raw_request(
        addr,
        source,
        &request(
            Version::Lzo,
            &["gcc", "-c", "ok.i", "-o", "ok.o"],
            b"int ok = 42;\n",
        ),
    )
    .expect("reply");
    assert_eq!(
        reply.status,
        0,
        "good job after refusals: {}",
        text(&reply.stderr)
    );
    assert!(reply.object.starts_with(b"\x7fELF"), "an object comes back");
}

#[test]
fn compilers_outside_the_allow_list_are_refused() {
    require_real_distcc();
    let dir = TestDir::new("whitelist");
    let mut d = Daemon::serving(&dir, &["gcc", "x86_64-linux-gnu-gcc"], &[]);
    let cases = [
        ("sh", "no 'sh' in"),
        ("/bin/sh", "no 'sh' in"),
        ("../gcc", "not a path"),
        ("bin/gcc", "not a path"),
        ("/usr/local/bin/gcc", "not a path"),
        ("/tmp/gcc", "not a path"),
        ("clang", "no 'clang' in"),
        ("", "not a path"),
    ];
    for (compiler, why) in cases {
        for v in [Version::Plain, Version::Lzo] {
            let reply = raw_request(
                d.addr(),
                None,
                &request(v, &[compiler, "-c", "x.c", "-o", "x.o"], b"int x;\n"),
            )
            .unwrap_or_else(|e| panic!("{compiler}: no reply: {e}"));
            assert_eq!(reply.status, 113 << 8, "{compiler}");
            let err = text(&reply.stderr);
            assert!(
                err.contains(why) && err.contains("distccd-rs on "),
                "{compiler}: {err}"
            );
            assert!(reply.object.is_empty());
        }
    }
    // /usr/bin/NAME is NAME.
    let reply = raw_request(
        d.addr(),
        None,
        &request(
            Version::Plain,
            &["/usr/bin/gcc", "-c", "x.c", "-o", "x.o"],
            b"int x;\n",
        ),
    )
    .unwrap();
    assert_eq!(reply.status, 0, "{}", text(&reply.stderr));

    // Dangerous arguments with an allowed compiler.
    let args: &[&[&str]] = &[
        &["gcc", "-c", "x.c", "-o", "x.o", "-fplugin=/tmp/evil.so"],
        &["gcc", "-specs=/tmp/evil", "-c", "x.c", "-o", "x.o"],
        &["gcc", "@/etc/shadow", "-c", "x.c", "-o", "x.o"],
        &["gcc", "-c", "x.c", "y.c", "-o", "x.o"],
        &["gcc", "-B/tmp", "-c", "x.c", "-o", "x.o"],
    ];
    for argv in args {
        let reply = raw_request(d.addr(), None, &request(Version::Plain, argv, b"int x;\n")).unwrap();
        assert_eq!(reply.status, 113 << 8, "{argv:?}");
        assert!(
            ["refused", "two inputs", "response files"]
                .iter()
                .any(|w| text(&reply.stderr).contains(w)),
            "{argv:?}: {}",
            text(&reply.stderr)
        );
    }
    // A preprocessed file that would make clang open a server file.
    let reply = raw_request(
        d.addr(),
        None,
        &request(
            Version::Plain,
            &["gcc", "-c", "x.i", "-o", "x.o"],
            b"#include \"/etc/passwd\"\n",
        ),
    )
    .unwrap();
    assert!(
        text(&reply.stderr).contains("#include"),
        "{}",
        text(&reply.stderr)
    );

    // The real client, asked to use a compiler the server does not allow:
    // it fails (fallback is off) and the user sees why.
    let src = project(&dir);
    let out = run_client(
        &src,
        &format!("127.0.0.1:{}", d.port),
        &[REAL_DISTCC, "g++", "-c", "shapes.cpp", "-o", "shapes.o"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not allowed on this server"),
        "{}",
        text(&out.stderr)
    );

    good_job(&d, None);
    assert!(d.still_running());
    let log = d.wait_log("REFUSED", cases.len() * 2 + args.len() + 2);
    assert!(
        log.contains("REFUSED") && log.contains("compiler 'sh' is not allowed"),
        "{log}"
    );
    assert!(d.leftovers().is_empty());
}

#[test]
fn clients_outside_allow_are_refused() {
    require_real_distcc();
    let dir = TestDir::new("access");
    let allowed = compiler_dir(&dir, ALLOWED);
    let mut d = Daemon::start(
        &dir,
        &[
            "--allow",
            "127.0.0.2",
            "--allow",
            "::1/128",
            "--compiler-dir",
            allowed.to_str().unwrap(),
        ],
    );
    let stranger: IpAddr = "127.0.0.1".parse().unwrap();
    for v in [Version::Plain, Version::Lzo] {
        let reply = raw_request(
            d.addr(),
            Some(stranger),
            &request(v, &["gcc", "-c", "x.c", "-o", "x.o"], b"int x;\n"),
        )
        .unwrap();
        assert_eq!(reply.status, 113 << 8);
        assert!(
            text(&reply.stderr)
                .contains("access denied: client 127.0.0.1 is not in this server's --allow list")
        );
    }
    let src = project(&dir);
    let out = run_client(
        &src,
        &format!("127.0.0.1:{}", d.port),
        &[REAL_DISTCC, "gcc", "-c", "hello.c", "-o", "hello.o"],
    );
    assert!(!out.status.success(), "a refused client must not get a compile");
    assert!(
        text(&out.stderr).contains("access denied"),
        "{}",
        text(&out.stderr)
    );
    // Allowed: a v4 source inside the rule, and IPv6 loopback.
    good_job(&d, Some("127.0.0.2".parse().unwrap()));
    good_job(&d, Some("::1".parse().unwrap()));
    assert!(d.still_running());
    let log = d.wait_log("access denied", 3);
    assert!(log.matches("access denied").count() >= 3, "{log}");
}

#[test]
fn start_without_allow_is_refused() {
    let dir = TestDir::new("noallow");
    let allowed = compiler_dir(&dir, ALLOWED);
    let port = free_port();
    let out = Command::new(DISTCCD)
        .args([
            "--daemon",
            "--no-detach",
            "--port",
            &port.to_string(),
            "--compiler-dir",
            allowed.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101));
    assert!(
        text(&out.stderr).contains("no --allow or --allow-private given"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens"
    );
}

#[test]
fn options_help_version_and_errors() {
    let run = |args: &[&str]| {
        Command::new(DISTCCD)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Usage:") && text(&help.stdout).contains("--allow"));
    let v = run(&["--version"]);
    assert_eq!(v.status.code(), Some(0));
    let first = text(&v.stdout).lines().next().unwrap().to_owned();
    assert!(
        first.starts_with("distccd ") && first.split(' ').count() == 3,
        "{first}"
    );
    assert!(
        text(&v.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .contains("(default port 3632)")
    );
    for bad in [
        &["--bogus-option"][..],
        &["gcc", "--allow", "127.0.0.1"],
        &["--allow", "1.2.3.4/40"],
        &["--port", "0"],
        &["--jobs", "500"],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(101), "{bad:?}: {}", text(&out.stderr));
    }
    let dir = TestDir::new("nodir");
    // The port is bound before the allow-list is checked: another test can
    // take a free port first (102), so try a few.
    let out = (0..5)
        .map(|_| {
            run(&[
                "--daemon",
                "--no-detach",
                "--allow",
                "127.0.0.1",
                "--port",
                &free_port().to_string(),
                "--compiler-dir",
                dir.join("missing").to_str().unwrap(),
            ])
        })
        .find(|o| o.status.code() != Some(102))
        .expect("a free port in five tries");
    assert_eq!(out.status.code(), Some(110), "{}", text(&out.stderr));
}

#[test]
fn inetd_mode_serves_one_job_on_stdin() {
    let dir = TestDir::new("inetd");
    let allowed = compiler_dir(&dir, ALLOWED);
    let tmp = dir.shared_dir("tmp");
    let mut child = Command::new(DISTCCD)
        .args([
            "--inetd",
            "--log-stderr",
            "--log-level",
            "info",
            "--compiler-dir",
            allowed.to_str().unwrap(),
        ])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let src = b"static int v = 3;\nint get(void) { return v; }\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&request(Version::Lzo, &["gcc", "-O2", "-c", "m.i", "-o", "m.o"], src).encode())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reply = distcc::protocol::blocking::read_message(
        &mut &out.stdout[..],
        distcc::protocol::message::ReplyDecoder::new(Version::Lzo, Default::default()),
    )
    .unwrap();
    assert_eq!(reply.status, 0, "{}", text(&reply.stderr));
    fs::write(dir.join("m.i"), src).unwrap();
    assert!(
        local(dir.path(), &["gcc", "-O2", "-c", "m.i", "-o", "m.o"])
            .status
            .success()
    );
    assert!(
        reply.object == fs::read(dir.join("m.o")).unwrap(),
        "inetd object identical to local"
    );
    assert!(
        text(&out.stderr).contains("client: NOTSOCKET COMPILE_OK"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
}

fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn compiler_is_killed_when_the_client_goes_away() {
    let dir = TestDir::new("disconnect");
    let allowed = compiler_dir(&dir, &["slowcc", "gcc"]);
    let bin = slow_compiler(&dir, 60);
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let mut d = Daemon::start_env(
        &dir,
        &[
            "--allow",
            "127.0.0.1",
            "--compiler-dir",
            allowed.to_str().unwrap(),
        ],
        &[("DISTCCD_PATH", &path)],
    );
    let mut s = connect_from(d.addr(), None);
    s.write_all(&request(Version::Plain, &["slowcc", "-c", "x.c", "-o", "x.o"], b"int x;\n").encode())
        .unwrap();
    let pid = d.wait_compiler_pid();
    assert!(alive(pid));
    drop(s);
    let t = Instant::now();
    while alive(pid) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(pid),
        "compiler still running {:?} after the client left",
        t.elapsed()
    );
    let log = d.wait_log("CLI_DISCONN", 1);
    assert!(log.contains("client went away during the compile"), "{log}");
    good_job(&d, None);
    assert!(d.still_running());
    let t = Instant::now();
    while !d.leftovers().is_empty() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.leftovers().is_empty(), "{:?}", d.leftovers());
}

#[test]
fn job_lifetime_kills_a_long_compile() {
    let dir = TestDir::new("lifetime");
    let allowed = compiler_dir(&dir, &["slowcc"]);
    let bin = slow_compiler(&dir, 60);
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let d = Daemon::start_env(
        &dir,
        &[
            "--allow",
            "127.0.0.1",
            "--job-lifetime",
            "1",
            "--compiler-dir",
            allowed.to_str().unwrap(),
        ],
        &[("DISTCCD_PATH", &path)],
    );
    let t = Instant::now();
    let mut s = connect_from(d.addr(), None);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = request(Version::Lzo, &["slowcc", "-c", "x.c", "-o", "x.o"], b"int x;\n");
    s.write_all(&req.encode()).unwrap();
    let pid = d.wait_compiler_pid();
    let reply = read_message(&mut s, ReplyDecoder::new(req.version, Limits::default())).unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(reply.status, 118 << 8);
    assert!(
        text(&reply.stderr).contains("--job-lifetime 1s"),
        "{}",
        text(&reply.stderr)
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(!alive(pid), "compiler killed");
    assert!(d.wait_log("COMPILE_TIMEOUT", 1).contains("COMPILE_TIMEOUT"));
    assert!(d.leftovers().is_empty());
}

#[test]
fn garbage_and_truncated_requests_do_not_stop_the_daemon() {
    let dir = TestDir::new("garbage");
    let mut d = Daemon::serving(&dir, ALLOWED, &[]);
    let inputs: &[&[u8]] = &[
        b"GET / HTTP/1.0\r\n\r\n",
        b"DIST00000009",
        b"DIST00000001ARGCffffffff",
        b"DIST00000001ARGC00000002ARGV00000003gcc",
        b"DIST00000002ARGC00000001ARGV00000003gccDOTI00000004\xff\xff\xff\xff",
        b"",
    ];
    for bytes in inputs {
        let mut s = connect_from(d.addr(), None);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
    }
    // A broken protocol-3 request gets a reply, in protocol 3, saying why.
    let mut s = connect_from(d.addr(), None);
    s.write_all(b"DIST00000003CDIR00000001/ARGC00000000").unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert!(text(&reply).contains("DONE00000003"), "{}", text(&reply));
    good_job(&d, None);
    assert!(d.still_running());
    let log = d.wait_log("REJ_BAD_REQ", 3);
    assert!(log.contains("unsupported protocol version 9"), "{log}");
}

#[test]
fn listen_pid_file_and_lifetime() {
    let dir = TestDir::new("lifecycle");
    let allowed = compiler_dir(&dir, ALLOWED);
    let pid_file = dir.shared_dir("run").join("distccd.pid");
    let port = free_port();
    let mut child = Command::new(DISTCCD)
        .args([
            "--daemon",
            "--no-detach",
            "--listen",
            "::1",
            "--allow",
            "::1",
            "--lifetime",
            "3",
            "--nice",
            "7",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--compiler-dir",
            allowed.to_str().unwrap(),
        ])
        .arg("--pid-file")
        .arg(&pid_file)
        .env("TMPDIR", dir.shared_dir("tmp"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("::1", port)).is_err() {
        assert!(Instant::now() < deadline, "distccd did not listen on [::1]");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The socket listens from the bind on; the pid file follows shortly.
    while fs::read_to_string(&pid_file).map_or(true, |p| p.trim() != child.id().to_string()) {
        assert!(Instant::now() < deadline, "pid file never named {}", child.id());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "--listen ::1 binds only ::1"
    );
    // The 19th field of /proc/PID/stat, counted after the command name.
    let niceness = |stat: String| -> i32 {
        stat.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(16)
            .unwrap()
            .parse()
            .unwrap()
    };
    let nice = niceness(fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap());
    let mine = niceness(fs::read_to_string("/proc/self/stat").unwrap());
    assert_eq!(nice, (mine + 7).min(19), "--nice 7");
    if nix::unistd::Uid::effective().is_root() {
        // Started as root, it serves as nobody.
        let status = fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(uid.split_whitespace().skip(1).all(|u| u == "65534"), "{uid}");
    }
    let t = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "--lifetime ends the daemon cleanly: {status}");
    assert!(t.elapsed() < Duration::from_secs(6));
    assert!(!pid_file.exists(), "pid file removed at exit");
}

#[test]
fn a_detached_daemon_that_fails_to_start_says_why_and_the_parent_exits_with_its_status() {
    let dir = TestDir::new("detach-fail");
    let allowed = compiler_dir(&dir, ALLOWED);
    // The pid file is written after detaching: its failure is the child's.
    let pid_file = dir.path().join("no-such-dir").join("distccd.pid");
    let out = Command::new(DISTCCD)
        .args(["--daemon", "--allow", "127.0.0.1", "--lifetime", "30"])
        .args(["--port", &free_port().to_string()])
        .args(["--compiler-dir", allowed.to_str().unwrap()])
        .arg("--pid-file")
        .arg(&pid_file)
        .env("TMPDIR", dir.shared_dir("tmp"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(i32::from(distcc::exitcode::IO_ERROR)),
        "not reported as started: {err}"
    );
    assert!(err.contains("pid file") && err.contains("no-such-dir"), "{err}");
}

#[test]
fn daemon_detaches_into_the_background() {
    let dir = TestDir::new("detach");
    let allowed = compiler_dir(&dir, ALLOWED);
    let pid_file = dir.shared_dir("run").join("distccd.pid");
    let port = free_port();
    let out = Command::new(DISTCCD)
        .args([
            "--daemon",
            "--allow",
            "127.0.0.1",
            "--lifetime",
            "30",
            "--port",
            &port.to_string(),
        ])
        .args(["--compiler-dir", allowed.to_str().unwrap()])
        .arg("--pid-file")
        .arg(&pid_file)
        .env("TMPDIR", dir.shared_dir("tmp"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "the parent exits 0: {}", text(&out.stderr));
    // No waiting: the parent returns only once the pid file is written
    // (distcc 3.4's suite reads it at once, and an empty one is a traceback).
    let written = fs::read_to_string(&pid_file).expect("the pid file exists when distccd --daemon returns");
    let pid: i32 = written
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file holds {written:?}: {e}"));
    assert!(alive(pid), "the pid file names the running daemon ({pid})");
    let reply = raw_request(
        SocketAddr::from(([127, 0, 0, 1], port)),
        None,
        &request(Version::Plain, &["gcc", "-c", "d.i", "-o", "d.o"], b"int d;\n"),
    )
    .unwrap();
    assert_eq!(reply.status, 0, "{}", text(&reply.stderr));
    let tmp = dir.shared_dir("tmp");
    let kept: Vec<_> = fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(
        kept.len() == 1 && fs::read_dir(&kept[0]).unwrap().next().is_none(),
        "one empty job directory kept for the next job: {kept:?}"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && alive(pid) {
        assert!(Instant::now() < deadline, "SIGTERM stops the detached daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "the kept directory is removed at exit"
    );
}
