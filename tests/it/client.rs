//! Our distcc client against Debian's real distccd 3.4 and against our
//! distccd, with real gcc, g++ and clang; and against servers that fail.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const HELLO_C: &str =
    "#include <stdio.h>\n#include \"greet.h\"\nint main(void) { printf(\"%s\\n\", GREETING); return 0; }\n";
const GREET_H: &str = "#define GREETING \"hello from distcc-rs\"\n";
const SHAPES_CPP: &str = "#include <vector>\n#include <memory>\n\
struct Shape { virtual ~Shape() = default; virtual double area() const = 0; };\n\
struct Sq : Shape { double s; explicit Sq(double s) : s(s) {} double area() const override { return s * s; } };\n\
double total(const std::vector<std::unique_ptr<Shape>>& v) { double t = 0; for (auto& s : v) t += s->area(); return t; }\n";
/// Debug info: no macros on code lines (plain mode sends macro-expanded
/// text, which moves the columns gcc records for macro uses).
const CALC_C: &str = "static int square(int x)\n{\n    return x * x;\n}\n\nint sum_squares(int n)\n{\n    int t = 0;\n    for (int i = 0; i < n; i++)\n        t += square(i);\n    return t;\n}\n";
const COUNTER_CC: &str = "template <typename T> struct Counter {\n    T n{};\n    void bump() { ++n; }\n};\n\nint use_counter()\n{\n    Counter<int> c;\n    c.bump();\n    return c.n;\n}\n";
const WARN_C: &str = "int f(void)\n{\n    int unused_variable;\n    return 0;\n}\n";
const SYNTAX_C: &str = "int f(void)\n{\n    return 1 +;\n}\n";
const MISSING_HEADER_C: &str = "#include \"no-such-header.h\"\nint x;\n";

fn project(dir: &TestDir) -> std::path::PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("obj")).unwrap();
    for (name, text) in [
        ("hello.c", HELLO_C),
        ("greet.h", GREET_H),
        ("shapes.cpp", SHAPES_CPP),
        ("calc.c", CALC_C),
        ("counter.cc", COUNTER_CC),
        ("warn.c", WARN_C),
        ("syntax.c", SYNTAX_C),
        ("missing.c", MISSING_HEADER_C),
    ] {
        fs::write(src.join(name), text).unwrap();
    }
    src
}

/// Builds through our client, then locally in the same directory, and
/// compares every output byte for byte. Returns the client's output.
fn same_as_local(
    src: &Path,
    hosts: &str,
    argv: &[&str],
    outputs: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut client = vec![DISTCC];
    client.extend_from_slice(argv);
    let out = our_client(src, hosts, &client, env);
    assert!(
        out.status.success(),
        "distcc {argv:?} on {hosts}: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(&format!(" on {hosts}")) && !text(&out.stderr).contains("locally"),
        "{argv:?} must compile on {hosts}: {}",
        text(&out.stderr)
    );
    let remote: Vec<Vec<u8>> = outputs.iter().map(|o| fs::read(src.join(o)).unwrap()).collect();
    for o in outputs {
        fs::remove_file(src.join(o)).unwrap();
    }
    let here = local(src, argv);
    assert!(here.status.success(), "local {argv:?}: {}", text(&here.stderr));
    for (o, r) in outputs.iter().zip(remote) {
        assert!(
            r == fs::read(src.join(o)).unwrap(),
            "{argv:?} on {hosts}: {o} differs from a local build"
        );
    }
    out
}

const CASES: &[(&[&str], &[&str])] = &[
    (
        &["gcc", "-O2", "-c", "hello.c", "-o", "obj/hello.o"],
        &["obj/hello.o"],
    ),
    (&["gcc", "-c", "hello.c"], &["hello.o"]),
    (
        &["gcc", "-g", "-O1", "-c", "calc.c", "-o", "obj/calc.o"],
        &["obj/calc.o"],
    ),
    (
        &[
            "g++",
            "-std=c++17",
            "-O2",
            "-c",
            "shapes.cpp",
            "-o",
            "obj/shapes.o",
        ],
        &["obj/shapes.o"],
    ),
    (&["g++", "-g", "-c", "counter.cc"], &["counter.o"]),
    (
        &["clang", "-O2", "-c", "hello.c", "-o", "obj/hello-clang.o"],
        &["obj/hello-clang.o"],
    ),
    (
        &[
            "clang++",
            "-std=c++17",
            "-c",
            "shapes.cpp",
            "-o",
            "obj/shapes-clang.o",
        ],
        &["obj/shapes-clang.o"],
    ),
    // clang's default DWARF 5 stays local (see `clang_debug_info`); DWARF 4 goes.
    (
        &[
            "clang",
            "-g",
            "-gdwarf-4",
            "-c",
            "calc.c",
            "-o",
            "obj/calc-clang.o",
        ],
        &["obj/calc-clang.o"],
    ),
    // The -M family: the .d must equal a local build's, target included
    // (distcc 3.4 gets the target wrong when -o names another file).
    (
        &["gcc", "-MD", "-c", "hello.c", "-o", "obj/md.o"],
        &["obj/md.o", "obj/md.d"],
    ),
    (
        &[
            "gcc",
            "-MMD",
            "-MP",
            "-MF",
            "obj/deps.d",
            "-c",
            "hello.c",
            "-o",
            "obj/mmd.o",
        ],
        &["obj/mmd.o", "obj/deps.d"],
    ),
    (
        &[
            "gcc",
            "-MD",
            "-MT",
            "custom-target",
            "-c",
            "hello.c",
            "-o",
            "obj/mt.o",
        ],
        &["obj/mt.o", "obj/mt.d"],
    ),
    (
        &[
            "gcc",
            "-MD",
            "-MQ",
            "$(quoted)",
            "-c",
            "hello.c",
            "-o",
            "obj/mq.o",
        ],
        &["obj/mq.o", "obj/mq.d"],
    ),
    (
        &["gcc", "-Wp,-MD,obj/wp.d", "-c", "hello.c", "-o", "obj/wp.o"],
        &["obj/wp.o", "obj/wp.d"],
    ),
    (
        &["gcc", "-S", "-O2", "calc.c", "-o", "obj/calc.s"],
        &["obj/calc.s"],
    ),
    (
        &["gcc", "-x", "c++", "-c", "calc.c", "-o", "obj/calc-as-cxx.o"],
        &["obj/calc-as-cxx.o"],
    ),
    (
        &[
            "gcc",
            "-march=native",
            "-O2",
            "-c",
            "calc.c",
            "-o",
            "obj/native.o",
        ],
        &["obj/native.o"],
    ),
];

fn run_matrix(hosts: &[String]) {
    let dir = TestDir::new("client-matrix");
    let src = project(&dir);
    for h in hosts {
        for (argv, outputs) in CASES {
            same_as_local(&src, h, argv, outputs, &[]);
        }
        // Warnings come back; compile errors give the compiler's status and
        // message, and no object.
        let out = same_as_local(
            &src,
            h,
            &["gcc", "-Wall", "-c", "warn.c", "-o", "obj/warn.o"],
            &["obj/warn.o"],
            &[],
        );
        assert!(
            text(&out.stderr).contains("warn.c:3:9: warning: unused variable"),
            "{}",
            text(&out.stderr)
        );
        let bad = our_client(
            &src,
            h,
            &[DISTCC, "gcc", "-c", "syntax.c", "-o", "obj/syntax.o"],
            &[],
        );
        assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stderr));
        assert!(
            text(&bad.stderr).contains("syntax.c:3:15: error: expected expression"),
            "{}",
            text(&bad.stderr)
        );
        assert!(!src.join("obj/syntax.o").exists());
    }
}

#[test]
fn our_client_with_real_distccd_3_4() {
    require_real_distcc();
    let dir = TestDir::new("real-server");
    let d = RealDaemon::start(&dir);
    run_matrix(&[
        format!("127.0.0.1:{}", d.port),
        format!("127.0.0.1:{},lzo", d.port),
    ]);
    assert!(d.log_text().contains("COMPILE_OK"), "{}", d.log_text());
}

#[test]
fn our_client_with_our_distccd() {
    let dir = TestDir::new("our-server");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    run_matrix(&[
        format!("127.0.0.1:{}", d.port),
        format!("127.0.0.1:{},lzo", d.port),
    ]);
    assert!(d.leftovers().is_empty());
}

#[test]
fn response_files_masquerade_and_implicit_mode() {
    let dir = TestDir::new("modes");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = project(&dir);
    let hosts = format!("127.0.0.1:{},lzo", d.port);
    fs::create_dir_all(src.join("inc dir")).unwrap();
    fs::write(src.join("inc dir/extra.h"), "#define EXTRA 7\n").unwrap();
    fs::write(
        src.join("rsp.c"),
        "#include \"extra.h\"\nint v = EXTRA + VALUE;\nconst char *s = STR;\n",
    )
    .unwrap();
    // Written the way CMake writes one for Ninja: flags on one line, quotes
    // and escaped spaces.
    fs::write(
        src.join("flags.rsp"),
        "-O2 -DVALUE=\"(1 + 2)\" -DSTR=\\\"a\\ b\\\" \"-Iinc dir\" @nested.rsp\n",
    )
    .unwrap();
    fs::write(src.join("nested.rsp"), "-Wall\n-c\n").unwrap();
    same_as_local(
        &src,
        &hosts,
        &["gcc", "@flags.rsp", "rsp.c", "-o", "obj/rsp.o"],
        &["obj/rsp.o"],
        &[],
    );

    // Implicit: `distcc -c x.c` means cc.
    let out = our_client(
        &src,
        &hosts,
        &[DISTCC, "-c", "calc.c", "-o", "obj/implicit.o"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        local(&src, &["cc", "-c", "calc.c", "-o", "obj/implicit-local.o"])
            .status
            .success()
    );
    assert!(
        fs::read(src.join("obj/implicit.o")).unwrap() == fs::read(src.join("obj/implicit-local.o")).unwrap()
    );

    // Masquerade: a link directory first on PATH, as makepkg does with
    // /usr/lib/distcc/bin; the real compiler is found after it.
    let links = dir.join("masq-bin");
    fs::create_dir_all(&links).unwrap();
    for name in ["gcc", "cc", "g++", "clang"] {
        std::os::unix::fs::symlink(DISTCC, links.join(name)).unwrap();
    }
    let path = format!("{}:{}", links.display(), std::env::var("PATH").unwrap());
    for (compiler, file) in [("gcc", "calc.c"), ("g++", "counter.cc"), ("cc", "hello.c")] {
        let out = our_client(
            &src,
            &hosts,
            &[compiler, "-O2", "-c", file, "-o", "obj/masq.o"],
            &[("PATH", &path)],
        );
        assert!(out.status.success(), "{compiler}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&format!("compiled {file} on {hosts}")),
            "{}",
            text(&out.stderr)
        );
        assert!(
            local(&src, &[compiler, "-O2", "-c", file, "-o", "obj/masq-local.o"])
                .status
                .success()
        );
        assert!(
            fs::read(src.join("obj/masq.o")).unwrap() == fs::read(src.join("obj/masq-local.o")).unwrap(),
            "{compiler}"
        );
    }
    // A link that reaches itself again is stopped, not looped.
    let out = our_client(
        &src,
        &hosts,
        &["gcc", "-c", "calc.c"],
        &[("PATH", &format!("{}:{}", links.display(), links.display()))],
    );
    assert!(!out.status.success());
    // Linking through the masquerade link runs locally and says why.
    let out = our_client(
        &src,
        &hosts,
        &["gcc", "calc.c", "hello.c", "-o", "obj/prog"],
        &[("PATH", &path)],
    );
    assert!(
        text(&out.stderr).contains("compiling locally"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn fifty_parallel_compiles_respect_the_host_limit() {
    let dir = TestDir::new("parallel");
    let d = Daemon::serving(&dir, ALLOWED, &["--jobs", "8", "--log-level", "debug"]);
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..50 {
        fs::write(
            src.join(format!("p{i}.c")),
            format!("#include <string.h>\nint p{i}(const char *s) {{ return (int)strlen(s) + {i}; }}\n"),
        )
        .unwrap();
    }
    let distcc_dir = src.join(".distcc-rs");
    fs::create_dir_all(&distcc_dir).unwrap();
    let hosts = format!("127.0.0.1:{}/2,lzo", d.port);
    let children: Vec<_> = (0..50)
        .map(|i| {
            Command::new(DISTCC)
                .args(["gcc", "-O2", "-c", &format!("p{i}.c"), "-o", &format!("r{i}.o")])
                .current_dir(&src)
                .env("DISTCC_HOSTS", &hosts)
                .env("DISTCC_DIR", &distcc_dir)
                .env("DISTCC_FALLBACK", "0")
                .env("DISTCC_PAUSE_TIME_MSEC", "20")
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "p{i}: {}", text(&out.stderr));
    }
    for i in 0..50 {
        assert!(
            local(
                &src,
                &["gcc", "-O2", "-c", &format!("p{i}.c"), "-o", &format!("l{i}.o")]
            )
            .status
            .success()
        );
        assert!(
            fs::read(src.join(format!("r{i}.o"))).unwrap() == fs::read(src.join(format!("l{i}.o"))).unwrap(),
            "p{i}.o"
        );
    }
    let log = d.wait_log("COMPILE_OK", 50);
    assert_eq!(log.matches("COMPILE_OK").count(), 50);
    let most = log
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .last()?
                .strip_suffix(" running")?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap();
    assert!(most <= 2, "the host allows 2 jobs at once, the daemon saw {most}");
}

/// A client that finds every slot busy takes one the moment it is released,
/// not after DISTCC_PAUSE_TIME_MSEC (here a minute; distcc 3.4 sleeps it).
#[test]
fn a_waiting_client_takes_a_freed_slot_at_once() {
    let dir = TestDir::new("slot-wait");
    let d = Daemon::serving(&dir, ALLOWED, &["--log-level", "debug"]);
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("slow.c"), slow_source(3000)).unwrap();
    fs::write(src.join("quick.c"), "int quick(void) { return 1; }\n").unwrap();
    let distcc_dir = src.join(".distcc-rs");
    fs::create_dir_all(&distcc_dir).unwrap();
    let client = |input: &str, out: &str| {
        Command::new(DISTCC)
            .args(["gcc", "-O2", "-c", input, "-o", out])
            .current_dir(&src)
            .env("DISTCC_HOSTS", format!("127.0.0.1:{}/1", d.port))
            .env("DISTCC_DIR", &distcc_dir)
            .env("DISTCC_FALLBACK", "0")
            .env("DISTCC_VERBOSE", "1")
            .env("DISTCC_PAUSE_TIME_MSEC", "600000")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut slow = client("slow.c", "slow.o");
    // The slow job holds the host's one slot once the daemon runs its compiler.
    d.wait_log("running", 1);
    let mut quick = client("quick.c", "quick.o");
    // A client that slept between scans would wait out the 10-minute pause;
    // one waiting on the lock ends soon after the slow job, however long
    // that takes on a loaded machine.
    let started = Instant::now();
    let mut slow_done = None;
    let quick_at = loop {
        if slow_done.is_none() && slow.try_wait().unwrap().is_some() {
            slow_done = Some(Instant::now());
        }
        if quick.try_wait().unwrap().is_some() {
            break Instant::now();
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = quick.kill();
            let _ = quick.wait();
            panic!("the waiting client still sleeps after the slot was freed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Both are reaped already; `wait` returns the status kept.
    let quick_status = quick.wait().unwrap();
    let slow_status = slow.wait().unwrap();
    let slow_at = slow_done.unwrap_or(quick_at);
    let mut slow_err = String::new();
    slow.stderr.take().unwrap().read_to_string(&mut slow_err).unwrap();
    assert!(slow_status.success(), "{slow_err}");
    let mut err = String::new();
    quick.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(quick_status.success(), "{err}");
    assert!(err.contains("slots are busy; waiting"), "it did wait: {err}");
    let after = quick_at.saturating_duration_since(slow_at);
    assert!(
        after < Duration::from_secs(60),
        "took {after:?} after the slot was freed"
    );
    let log = d.wait_log("COMPILE_OK", 2);
    let order: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("COMPILE_OK"))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        order,
        ["slow.c", "quick.c"],
        "one slot: the quick job waited for the slow one"
    );
}

/// A server that fails in one of the ways a network server can. These are
/// stand-ins by necessity: a real distccd cannot be made to misbehave on cue.
fn faulty_server(kind: &'static str) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        match kind {
            "dies" => drop(s),
            "silent" => std::thread::sleep(Duration::from_secs(8)),
            "garbage" => {
                let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nnot distcc at all");
            }
            _ => unreachable!(),
        }
    });
    (port, h)
}

fn backoff_marks(src: &Path) -> Vec<String> {
    fs::read_dir(src.join(".distcc-rs/lock"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("backoff"))
                .collect()
        })
        .unwrap_or_default()
}

fn clear_marks(src: &Path) {
    for m in backoff_marks(src) {
        fs::remove_file(src.join(".distcc-rs/lock").join(m)).unwrap();
    }
}

#[test]
fn failing_servers_lose_nothing() {
    let dir = TestDir::new("faults");
    let src = project(&dir);
    assert!(
        local(&src, &["gcc", "-O2", "-c", "calc.c", "-o", "obj/want.o"])
            .status
            .success()
    );
    let want = fs::read(src.join("obj/want.o")).unwrap();
    let with_fallback = [("DISTCC_FALLBACK", "1"), ("DISTCC_IO_TIMEOUT", "2")];
    let mut cases = vec![("closed", free_port(), None)];
    for kind in ["dies", "silent", "garbage"] {
        let (port, h) = faulty_server(kind);
        cases.push((kind, port, Some(h)));
    }
    for (kind, port, _h) in cases {
        clear_marks(&src);
        let _ = fs::remove_file(src.join("obj/got.o"));
        let hosts = format!("127.0.0.1:{port}");
        let t = Instant::now();
        let out = our_client(
            &src,
            &hosts,
            &[DISTCC, "gcc", "-O2", "-c", "calc.c", "-o", "obj/got.o"],
            &with_fallback,
        );
        assert!(out.status.success(), "{kind}: {}", text(&out.stderr));
        assert!(t.elapsed() < Duration::from_secs(15), "{kind}: {:?}", t.elapsed());
        assert!(
            fs::read(src.join("obj/got.o")).unwrap() == want,
            "{kind}: object differs"
        );
        let err = text(&out.stderr);
        assert!(err.contains("running locally instead"), "{kind}: {err}");
        assert_eq!(
            backoff_marks(&src),
            [format!("backoff_tcp_127.0.0.1_{port}_0")],
            "{kind}: host backed off"
        );
        // While backed off, the host is skipped without a connection.
        if kind == "closed" {
            let again = our_client(
                &src,
                &hosts,
                &[DISTCC, "gcc", "-O2", "-c", "calc.c", "-o", "obj/got.o"],
                &with_fallback,
            );
            assert!(
                text(&again.stderr).contains("failed less than 60s ago"),
                "{}",
                text(&again.stderr)
            );
            // Without fallback: distcc's "no hosts" exit code.
            let strict = our_client(
                &src,
                &hosts,
                &[DISTCC, "gcc", "-c", "calc.c", "-o", "obj/strict.o"],
                &[],
            );
            assert_eq!(strict.status.code(), Some(116));
            assert!(!src.join("obj/strict.o").exists());
        }
    }
    // The next host in the list takes the job when the first fails.
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    clear_marks(&src);
    let hosts = format!("127.0.0.1:{} 127.0.0.1:{}", free_port(), d.port);
    let out = our_client(
        &src,
        &hosts,
        &[DISTCC, "gcc", "-O2", "-c", "calc.c", "-o", "obj/next.o"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("compiled calc.c on 127.0.0.1:{}", d.port)),
        "{}",
        text(&out.stderr)
    );
    assert!(fs::read(src.join("obj/next.o")).unwrap() == want);
}

#[test]
fn user_errors_do_not_back_off_the_host() {
    let dir = TestDir::new("user-errors");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = project(&dir);
    let hosts = format!("127.0.0.1:{}", d.port);
    // A preprocessing error (missing header) happens here: exit 1, the
    // preprocessor's message, no connection wasted on a retry.
    let out = our_client(
        &src,
        &hosts,
        &[DISTCC, "gcc", "-c", "missing.c", "-o", "obj/missing.o"],
        &[("DISTCC_FALLBACK", "1")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no-such-header.h: No such file or directory"),
        "{}",
        text(&out.stderr)
    );
    // A compile error on the server, with local retry (distcc's default).
    let out = our_client(
        &src,
        &hosts,
        &[DISTCC, "gcc", "-c", "syntax.c", "-o", "obj/syntax.o"],
        &[("DISTCC_FALLBACK", "1")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: expected expression"),
        "{}",
        text(&out.stderr)
    );
    assert!(backoff_marks(&src).is_empty(), "{:?}", backoff_marks(&src));
    // And the host is used straight away for the next compile.
    same_as_local(
        &src,
        &hosts,
        &["gcc", "-c", "calc.c", "-o", "obj/after.o"],
        &["obj/after.o"],
        &[],
    );
}

#[test]
fn refusals_are_explained_and_fall_back() {
    let dir = TestDir::new("refusal");
    let d = Daemon::serving(&dir, &["cc"], &[]);
    let src = project(&dir);
    let hosts = format!("127.0.0.1:{}", d.port);
    let out = our_client(
        &src,
        &hosts,
        &[DISTCC, "gcc", "-c", "calc.c", "-o", "obj/r.o"],
        &[("DISTCC_FALLBACK", "1"), ("DISTCC_NO_REWRITE_CROSS", "1")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("compiler 'gcc' is not allowed on this server"),
        "{err}"
    );
    assert!(err.contains("running locally instead"), "{err}");
    assert!(src.join("obj/r.o").exists());
}

#[test]
fn show_hosts_jobs_help_version() {
    let dir = TestDir::new("info");
    let run = |args: &[&str], hosts: &str| {
        Command::new(DISTCC)
            .args(args)
            .env("DISTCC_HOSTS", hosts)
            .env("DISTCC_DIR", dir.path())
            .output()
            .unwrap()
    };
    let hosts = "localhost red/7 @blue green:4000,lzo # a comment\n[::1]:3632/3";
    let out = run(&["--show-hosts"], hosts);
    assert_eq!(
        text(&out.stdout),
        "localhost\nred/7\n@blue\ngreen:4000,lzo\n[::1]:3632/3\n"
    );
    assert_eq!(text(&run(&["-j"], hosts).stdout), "20\n");
    let bad = run(&["--show-hosts"], "good angry:: other");
    assert_eq!(bad.status.code(), Some(106));
    assert!(
        text(&bad.stderr).contains("'angry::'") && text(&bad.stderr).contains('^'),
        "{}",
        text(&bad.stderr)
    );
    let v = run(&["--version"], "");
    assert!(text(&v.stdout).starts_with("distcc "), "{}", text(&v.stdout));
    assert!(text(&run(&["--help"], "").stdout).contains("DISTCC_HOSTS"));
    assert_eq!(run(&[], "").status.code(), Some(101));
}

#[test]
fn clang_dwarf5_debug_info_stays_local_and_says_why() {
    let dir = TestDir::new("clang-g");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = project(&dir);
    let out = our_client(
        &src,
        &format!("127.0.0.1:{}", d.port),
        &[DISTCC, "clang", "-g", "-c", "calc.c", "-o", "obj/c.o"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("compiling locally: clang -g: DWARF 5"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        local(&src, &["clang", "-g", "-c", "calc.c", "-o", "obj/l.o"])
            .status
            .success()
    );
    assert!(fs::read(src.join("obj/c.o")).unwrap() == fs::read(src.join("obj/l.o")).unwrap());
}

/// `cc` is named as the compiler it links to (distcc 3.4 §2.9): the server
/// then runs that compiler, not its own `cc`, and a `cc` that is clang gets
/// clang's checks (its `-g` stays local).
#[test]
fn generic_cc_is_sent_as_the_compiler_it_links_to() {
    let dir = TestDir::new("generic-cc");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = project(&dir);
    let hosts = format!("127.0.0.1:{}", d.port);
    // Debian's chain, through /etc/alternatives, made here: cc -> alt -> gcc.
    let gnu = dir.join("gnu-bin");
    let alt = dir.join("alternatives");
    fs::create_dir_all(&gnu).unwrap();
    fs::create_dir_all(&alt).unwrap();
    std::os::unix::fs::symlink("/usr/bin/gcc", alt.join("cc")).unwrap();
    std::os::unix::fs::symlink(alt.join("cc"), gnu.join("cc")).unwrap();
    let clang = dir.join("clang-bin");
    fs::create_dir_all(&clang).unwrap();
    std::os::unix::fs::symlink("/usr/bin/clang", clang.join("cc")).unwrap();
    let path_with = |d: &Path| format!("{}:{}", d.display(), std::env::var("PATH").unwrap());
    let gnu_path = path_with(&gnu);
    let clang_path = path_with(&clang);
    // PATH, flags, what the server's log names ("" = stays local), extra env.
    type Case<'a> = (&'a str, &'a [&'a str], &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        (&gnu_path, &["-O2"], "x86_64-linux-gnu-gcc calc.c", &[]),
        (&clang_path, &["-O2"], "clang calc.c", &[]),
        (
            &gnu_path,
            &["-O1"],
            " cc calc.c",
            &[("DISTCC_NO_REWRITE_CROSS", "1")],
        ),
        (&clang_path, &["-g"], "", &[]),
    ];
    for (i, (path, flags, logged, extra)) in cases.into_iter().enumerate() {
        let obj = format!("obj/g{i}.o");
        let mut argv = vec![DISTCC, "cc"];
        argv.extend(flags);
        argv.extend(["-c", "calc.c", "-o", &obj]);
        let mut env = vec![("PATH", path)];
        env.extend(extra);
        let out = our_client(&src, &hosts, &argv, &env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let local_obj = format!("obj/l{i}.o");
        let mut local_argv = vec!["cc"];
        local_argv.extend(flags);
        local_argv.extend(["-c", "calc.c", "-o", &local_obj]);
        let st = Command::new("cc")
            .args(&local_argv[1..])
            .current_dir(&src)
            .env("PATH", path)
            .status()
            .unwrap();
        assert!(st.success());
        assert!(
            fs::read(src.join(&obj)).unwrap() == fs::read(src.join(&local_obj)).unwrap(),
            "case {i}: object differs from a local build"
        );
        if logged.is_empty() {
            assert!(
                text(&out.stderr).contains("compiling locally: clang -g: DWARF 5"),
                "a cc that is clang gets clang's checks: {}",
                text(&out.stderr)
            );
        } else {
            let log = d.wait_log(logged, 1);
            assert!(log.contains(logged), "case {i}: no '{logged}' in {log}");
        }
    }
}

/// A real sshd on a loopback port with throwaway keys, for `@host` entries.
struct Sshd {
    child: std::process::Child,
    port: u16,
    key: std::path::PathBuf,
}

impl Sshd {
    fn start(dir: &TestDir) -> Sshd {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "sshd is missing (apt-get install openssh-server)"
        );
        let d = dir.join("ssh");
        fs::create_dir_all(&d).unwrap();
        let keygen = |name: &str| {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(name))
                .status()
                .unwrap();
            assert!(st.success());
        };
        keygen("host_key");
        keygen("client_key");
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        // sshd's privilege-separation directory.
        fs::create_dir_all("/run/sshd").unwrap();
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nPidFile {d}/sshd.pid\n",
                d = d.display()
            );
            fs::write(d.join("sshd_config"), config).unwrap();
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stderr(fs::File::create(d.join("sshd.log")).unwrap())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        child,
                        port,
                        key: d.join("client_key"),
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "sshd did not start: {}",
            fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
        );
    }

    fn distcc_ssh(&self) -> String {
        format!(
            "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
            self.port,
            self.key.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ssh_transport_runs_distccd_inetd_over_real_sshd() {
    let dir = TestDir::new("ssh");
    let sshd = Sshd::start(&dir);
    let src = project(&dir);
    let ssh = sshd.distcc_ssh();
    for hosts in [
        format!("@127.0.0.1:{DISTCCD}"),
        format!("root@127.0.0.1/2:{DISTCCD},lzo"),
    ] {
        let out = same_as_local(
            &src,
            &hosts,
            &["gcc", "-O2", "-c", "calc.c", "-o", "obj/ssh.o"],
            &["obj/ssh.o"],
            &[("DISTCC_SSH", &ssh)],
        );
        assert!(
            text(&out.stderr).contains(&format!("compiled calc.c on {hosts}")),
            "{}",
            text(&out.stderr)
        );
        same_as_local(
            &src,
            &hosts,
            &["g++", "-c", "shapes.cpp", "-o", "obj/ssh-cxx.o"],
            &["obj/ssh-cxx.o"],
            &[("DISTCC_SSH", &ssh)],
        );
    }
    // A broken ssh command is a host fault: backed off, compiled here.
    let out = our_client(
        &src,
        "@127.0.0.1",
        &[DISTCC, "gcc", "-c", "calc.c", "-o", "obj/ssh-fail.o"],
        &[("DISTCC_SSH", "/bin/false"), ("DISTCC_FALLBACK", "1")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("running locally instead"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_daemon_killed_mid_job_loses_nothing() {
    let dir = TestDir::new("killed");
    let mut d = Daemon::serving(&dir, ALLOWED, &["--log-level", "debug"]);
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    // Big enough that gcc -O2 takes a while on the server.
    let big = slow_source(4000);
    fs::write(src.join("big.c"), big).unwrap();
    let distcc_dir = src.join(".distcc-rs");
    fs::create_dir_all(&distcc_dir).unwrap();
    let client = Command::new(DISTCC)
        .args(["gcc", "-O2", "-c", "big.c", "-o", "remote.o"])
        .current_dir(&src)
        .env("DISTCC_HOSTS", format!("127.0.0.1:{}", d.port))
        .env("DISTCC_DIR", &distcc_dir)
        .env("DISTCC_VERBOSE", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.log_text().contains("compiling big.c") {
        assert!(Instant::now() < deadline, "the job never started on the daemon");
        std::thread::sleep(Duration::from_millis(10));
    }
    d.child.kill().unwrap();
    let out = client.wait_with_output().unwrap();
    assert!(!d.still_running());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("running locally instead"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        local(&src, &["gcc", "-O2", "-c", "big.c", "-o", "local.o"])
            .status
            .success()
    );
    assert!(fs::read(src.join("remote.o")).unwrap() == fs::read(src.join("local.o")).unwrap());
}

#[test]
fn ccache_prefix_backoff_zero_log_file_and_hosts_file() {
    let dir = TestDir::new("misc");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = project(&dir);
    let hosts = format!("127.0.0.1:{}", d.port);

    // ccache with CCACHE_PREFIX: ccache runs `/abs/distcc /usr/bin/gcc …` on a miss.
    assert!(
        Path::new("/usr/bin/ccache").exists(),
        "ccache is missing (apt-get install ccache)"
    );
    let ccache_dir = dir.join("ccache");
    let out = our_client(
        &src,
        &hosts,
        &["ccache", "gcc", "-O2", "-c", "calc.c", "-o", "obj/ccache.o"],
        &[
            ("CCACHE_PREFIX", DISTCC),
            ("CCACHE_DIR", ccache_dir.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        d.wait_log("calc.c", 1).contains("COMPILE_OK"),
        "ccache's miss went to the daemon"
    );
    assert!(
        local(&src, &["gcc", "-O2", "-c", "calc.c", "-o", "obj/ccache-local.o"])
            .status
            .success()
    );
    assert!(fs::read(src.join("obj/ccache.o")).unwrap() == fs::read(src.join("obj/ccache-local.o")).unwrap());

    // DISTCC_BACKOFF_PERIOD=0: a dead host is tried once per job, never in a loop.
    let dead = format!("127.0.0.1:{}", free_port());
    let t = Instant::now();
    let out = our_client(
        &src,
        &dead,
        &[DISTCC, "gcc", "-c", "calc.c", "-o", "obj/b0.o"],
        &[("DISTCC_BACKOFF_PERIOD", "0"), ("DISTCC_FALLBACK", "1")],
    );
    assert!(out.status.success() && t.elapsed() < Duration::from_secs(10));
    assert_eq!(
        text(&out.stderr).matches("cannot connect").count(),
        1,
        "{}",
        text(&out.stderr)
    );
    assert!(backoff_marks(&src).is_empty(), "no backoff marks with period 0");

    // DISTCC_LOG gets the decisions; stderr keeps only warnings.
    let log = dir.join("client.log");
    let out = our_client(
        &src,
        &hosts,
        &[DISTCC, "gcc", "-c", "calc.c", "-o", "obj/logged.o"],
        &[("DISTCC_LOG", log.to_str().unwrap()), ("DISTCC_VERBOSE", "0")],
    );
    assert!(out.status.success());
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    assert!(
        fs::read_to_string(&log)
            .unwrap()
            .contains(&format!("compiled calc.c on {hosts}"))
    );

    // No DISTCC_HOSTS: $DISTCC_DIR/hosts is read.
    let distcc_dir = src.join(".distcc-rs");
    fs::write(
        distcc_dir.join("hosts"),
        format!("# from the hosts file\n{hosts}\n"),
    )
    .unwrap();
    let out = Command::new(DISTCC)
        .args(["gcc", "-c", "calc.c", "-o", "obj/hostsfile.o"])
        .current_dir(&src)
        .env_remove("DISTCC_HOSTS")
        .env("DISTCC_DIR", &distcc_dir)
        .env("DISTCC_VERBOSE", "1")
        .env("DISTCC_FALLBACK", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success() && text(&out.stderr).contains(&format!("compiled calc.c on {hosts}")),
        "{}",
        text(&out.stderr)
    );
    // A set but empty DISTCC_HOSTS wins over the file, and says so.
    let out = our_client(
        &src,
        "",
        &[DISTCC, "gcc", "-c", "calc.c", "-o", "obj/empty.o"],
        &[("DISTCC_FALLBACK", "1")],
    );
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("$DISTCC_HOSTS contained no hosts"),
        "{}",
        text(&out.stderr)
    );
}
