//! Odd command lines, odd files and odd settings against our client, each
//! beside plain gcc: the client's exit status is zero exactly where gcc's
//! is, it leaves the same files, and it never panics. Then special outputs
//! (`-o /dev/null`, a FIFO) inside a private mount namespace with its own
//! `/dev`, and a quiet stderr under `DISTCC_LOG`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::*;

const X_C: &str = "int x(void) { return 1; }\n";
const Y_C: &str = "int y(void) { return 2; }\n";

struct Case {
    name: &'static str,
    setup: fn(&Path),
    /// After the compiler's name.
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    stdin: Option<&'static str>,
}

fn case(name: &'static str, setup: fn(&Path), args: &[&str]) -> Case {
    Case {
        name,
        setup,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        stdin: None,
    }
}

fn sources(d: &Path) {
    fs::write(d.join("x.c"), X_C).unwrap();
    fs::write(d.join("y.c"), Y_C).unwrap();
}

/// What a run left: every path (but the client's DISTCC_DIR) with its kind
/// and content, a link with its target.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if rel == ".distcc-rs" {
                continue;
            }
            let t = fs::symlink_metadata(&p).unwrap().file_type();
            let what = if t.is_symlink() {
                format!("link -> {}", fs::read_link(&p).unwrap().display())
            } else if t.is_dir() {
                stack.push(p.clone());
                "dir".into()
            } else if t.is_file() {
                let bytes = fs::read(&p).unwrap_or_default();
                format!("file {} bytes, {:016x}", bytes.len(), fnv(&bytes))
            } else {
                format!("{t:?}")
            };
            out.insert(rel, what);
        }
    }
    out
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

fn run(dir: &Path, argv: &[String], env: &[(&'static str, String)], stdin: Option<&str>) -> Output {
    let _ = fs::create_dir(dir.join(".distcc-rs"));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(dir)
        .env("DISTCC_DIR", dir.join(".distcc-rs"))
        .env_remove("DISTCC_LOG")
        .env_remove("DISTCC_VERBOSE")
        .env_remove("DISTCC_FALLBACK")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

#[test]
fn odd_command_lines_end_as_gcc_ends_them() {
    let dir = TestDir::new("odd");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    let many: Vec<String> = ["-c", "x.c", "-o", "x.o"]
        .iter()
        .map(|s| s.to_string())
        .chain((0..20_000).map(|i| format!("-DMANY_{i}=1")))
        .collect();

    let mut cases = vec![
        case("plain", sources, &["-c", "x.c", "-o", "x.o"]),
        case("missing source", sources, &["-c", "missing.c", "-o", "m.o"]),
        case(
            "missing preprocessed source",
            sources,
            &["-c", "missing.i", "-o", "m.o"],
        ),
        case(
            "unreadable source",
            |d| {
                sources(d);
                fs::set_permissions(d.join("x.c"), fs::Permissions::from_mode(0o000)).unwrap();
            },
            &["-c", "x.c", "-o", "x.o"],
        ),
        case(
            "a directory as the source",
            |d| fs::create_dir(d.join("dir.c")).unwrap(),
            &["-c", "dir.c", "-o", "dir.o"],
        ),
        case(
            "a directory as the preprocessed source",
            |d| fs::create_dir(d.join("dir.i")).unwrap(),
            &["-c", "dir.i", "-o", "dir.o"],
        ),
        case(
            "missing output directory",
            sources,
            &["-c", "x.c", "-o", "nodir/x.o"],
        ),
        case(
            "a directory as the output",
            |d| {
                sources(d);
                fs::create_dir(d.join("out.o")).unwrap();
            },
            &["-c", "x.c", "-o", "out.o"],
        ),
        case(
            "an object over a symbolic link",
            |d| {
                sources(d);
                fs::write(d.join("target"), "keep").unwrap();
                symlink("target", d.join("x.o")).unwrap();
            },
            &["-c", "x.c", "-o", "x.o"],
        ),
        case(
            "assembly through a symbolic link",
            |d| {
                sources(d);
                fs::write(d.join("target"), "keep").unwrap();
                symlink("target", d.join("x.s")).unwrap();
            },
            &["-S", "x.c", "-o", "x.s"],
        ),
        case("-o without a value", sources, &["-c", "x.c", "-o"]),
        case("two sources with -c", sources, &["-c", "x.c", "y.c"]),
        case("-c without a source", sources, &["-c"]),
        case("no arguments", sources, &[]),
        case(
            "spaces and UTF-8 in names",
            |d| {
                fs::write(d.join("my file ü.c"), X_C).unwrap();
                fs::create_dir(d.join("out dir é")).unwrap();
            },
            &["-c", "my file ü.c", "-o", "out dir é/ö x.o"],
        ),
        case(
            "missing response file",
            sources,
            &["@missing.rsp", "-c", "x.c", "-o", "x.o"],
        ),
        case(
            "self-referencing response file",
            |d| {
                sources(d);
                fs::write(d.join("self.rsp"), "-c x.c @self.rsp").unwrap();
            },
            &["@self.rsp", "-o", "x.o"],
        ),
        case(
            "a response file",
            |d| {
                sources(d);
                fs::write(d.join("args.rsp"), "-c \"x.c\" -o x.o").unwrap();
            },
            &["@args.rsp"],
        ),
        Case {
            args: many,
            ..case("20,000 arguments", sources, &[])
        },
        Case {
            env: vec![("DISTCC_DIR", "/proc".into())],
            ..case("an unwritable DISTCC_DIR", sources, &["-c", "x.c", "-o", "x.o"])
        },
        Case {
            env: vec![("DISTCC_DIR", "/nonexistent/distcc".into())],
            ..case("a missing DISTCC_DIR", sources, &["-c", "x.c", "-o", "x.o"])
        },
        Case {
            env: vec![("DISTCC_HOSTS", String::new())],
            ..case("empty DISTCC_HOSTS", sources, &["-c", "x.c", "-o", "x.o"])
        },
        Case {
            env: vec![("DISTCC_HOSTS", "angry:: @@ [::1 ,lzo/x".into())],
            ..case("garbage DISTCC_HOSTS", sources, &["-c", "x.c", "-o", "x.o"])
        },
        Case {
            stdin: Some(X_C),
            ..case(
                "source from standard input",
                sources,
                &["-x", "c", "-c", "-", "-o", "stdin.o"],
            )
        },
    ];
    for c in &mut cases {
        if !c.env.iter().any(|(k, _)| *k == "DISTCC_HOSTS") {
            c.env.push(("DISTCC_HOSTS", hosts.clone()));
        }
    }

    let mut wrong = Vec::new();
    for c in &cases {
        let here = TestDir::new("odd-gcc");
        let there = TestDir::new("odd-distcc");
        (c.setup)(here.path());
        (c.setup)(there.path());
        let mut gcc = vec!["gcc".to_owned()];
        gcc.extend(c.args.iter().cloned());
        let mut ours = vec![DISTCC.to_owned()];
        ours.extend(gcc.iter().cloned());
        let want = run(here.path(), &gcc, &[], c.stdin);
        let got = run(there.path(), &ours, &c.env, c.stdin);
        let err = text(&got.stderr);
        if err.contains("panicked") || got.status.code() == Some(134) {
            wrong.push(format!("{}: panicked: {err}", c.name));
            continue;
        }
        if want.status.success() != got.status.success() {
            wrong.push(format!(
                "{}: gcc {:?}, distcc {:?}\n  gcc said: {}\n  distcc said: {err}",
                c.name,
                want.status.code(),
                got.status.code(),
                text(&want.stderr)
            ));
            continue;
        }
        if !got.status.success() && err.trim().is_empty() {
            wrong.push(format!("{}: failed without a word", c.name));
        }
        let (a, b) = (tree(here.path()), tree(there.path()));
        if a != b {
            wrong.push(format!("{}: files differ\n  gcc: {a:?}\n  distcc: {b:?}", c.name));
        }
    }
    // The ordinary ones really went remote.
    let log = d.log_text();
    for (input, n) in [("x.c", 1), ("my file ü.c", 1)] {
        assert!(
            log.matches(input).count() >= n,
            "{input} never reached the daemon: {log}"
        );
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Runs `script` with sh as root in a new mount namespace whose `/dev` is a
/// private tmpfs holding only the nodes made here, so nothing the client
/// does can touch the machine's own `/dev`.
fn in_private_dev(cwd: &Path, env: &[(&str, &str)], script: &str) -> Output {
    let prelude = "set -e; mount -t tmpfs -o mode=755 distcc-rs-dev /dev; \
                   mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; \
                   mknod -m 666 /dev/urandom c 1 9; ";
    // A client that replaced a FIFO would leave its reader waiting: bounded.
    let mut cmd = Command::new("timeout");
    cmd.args([
        "120",
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
    ])
    .arg(format!("{prelude}{script}"))
    .current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn special_outputs_are_written_not_replaced() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test needs root, for a private /dev"
    );
    let dir = TestDir::new("special-out");
    let d = Daemon::serving(&dir, ALLOWED, &[]);
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("x.c"), X_C).unwrap();
    assert!(
        local(&src, &["gcc", "-c", "x.c", "-o", "want.o"])
            .status
            .success()
    );
    let hosts = format!("127.0.0.1:{}", d.port);
    let distcc_dir = src.join(".distcc-rs");
    fs::create_dir_all(&distcc_dir).unwrap();
    let env = [
        ("DISTCC_HOSTS", hosts.as_str()),
        ("DISTCC_DIR", distcc_dir.to_str().unwrap()),
        ("DISTCC_VERBOSE", "1"),
        ("DISTCC_FALLBACK", "0"),
    ];
    let out = in_private_dev(
        &src,
        &env,
        &format!(
            "{DISTCC} gcc -c x.c -o /dev/null; stat -c '%F %t,%T' /dev/null; \
             echo written-after >/dev/null; stat -c '%s' /dev/null; \
             mkfifo out.fifo; timeout 30 cat out.fifo > got.o & {DISTCC} gcc -c x.c -o out.fifo; wait; \
             stat -c '%F' out.fifo"
        ),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["character special file 1,3", "0", "fifo"],
        "{stderr}"
    );
    assert_eq!(
        stderr.matches(&format!("compiled x.c on {hosts}")).count(),
        2,
        "{stderr}"
    );
    assert!(fs::read(src.join("got.o")).unwrap() == fs::read(src.join("want.o")).unwrap());
    let host_null = fs::metadata("/dev/null").unwrap().file_type();
    assert!(host_null.is_char_device(), "the machine's /dev/null");
}

#[test]
fn with_distcc_log_a_failing_host_leaves_stderr_empty() {
    let dir = TestDir::new("quiet-log");
    let refusing = Daemon::serving(&dir, &["cc"], &[]);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("x.c"), X_C).unwrap();
    let log = dir.join("client.log");
    let log_env = ("DISTCC_LOG", log.to_str().unwrap());
    let falls_back = [
        ("DISTCC_VERBOSE", "0"),
        ("DISTCC_FALLBACK", "1"),
        ("DISTCC_BACKOFF_PERIOD", "0"),
    ];
    let compile = |hosts: &str, compiler: &str, env: &[(&str, &str)]| {
        our_client(&src, hosts, &[DISTCC, compiler, "-c", "x.c", "-o", "x.o"], env)
    };
    let cases = [
        (
            format!("127.0.0.1:{}", refusing.port),
            "compiler 'gcc' is not allowed on this server",
        ),
        (format!("127.0.0.1:{}", free_port()), "cannot connect"),
        (format!("127.0.0.1:{silent_port}"), "timed out"),
    ];
    for (hosts, why) in &cases {
        let _ = fs::remove_file(&log);
        let mut env = vec![
            log_env,
            ("DISTCC_IO_TIMEOUT", "1"),
            ("DISTCC_NO_REWRITE_CROSS", "1"),
        ];
        env.extend(falls_back);
        let out = compile(hosts, "gcc", &env);
        assert!(out.status.success(), "{hosts}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "{hosts}: stderr must stay empty");
        let said = fs::read_to_string(&log).unwrap();
        assert!(said.contains(why), "{hosts}: the log must say {why:?}: {said}");
        assert!(said.contains("running locally instead"), "{said}");
        assert!(src.join("x.o").exists());
    }
    let closed = &cases[1].0;
    // A failure that ends the run is said on stderr too: nothing else would.
    let out = compile(closed, "nosuchcc", &[log_env, ("DISTCC_VERBOSE", "0")]);
    assert_eq!(out.status.code(), Some(110));
    assert!(
        text(&out.stderr).contains("failed to exec nosuchcc"),
        "{}",
        text(&out.stderr)
    );
    // Without DISTCC_LOG the same warning is on stderr.
    let out = compile(closed, "gcc", &falls_back);
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
    // A log that cannot be opened: everything goes back to stderr.
    let mut env = vec![("DISTCC_LOG", "/proc/no-such-dir/log")];
    env.extend(falls_back);
    let err = text(&compile(closed, "gcc", &env).stderr);
    assert!(
        err.contains("failed to open logfile") && err.contains("cannot connect"),
        "{err}"
    );
    drop(silent);
}
