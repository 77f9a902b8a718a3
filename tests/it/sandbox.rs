//! The compiler's sandbox (`daemon::sandbox`) against code that makes the
//! compiler read files: each attack is first run unconfined, to show it
//! really reads the canary (so a row that stops working fails rather than
//! passes for nothing), then confined as the daemon runs it, where the
//! canary must appear nowhere: not in the object, stdout or diagnostics.
//! Then the same attacks against the real daemon, started as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use distcc::daemon::sandbox::{Mode, Rlimits, Sandbox};
use distcc::protocol::Version;

use crate::common::*;

/// Lower case: gas quotes a bad line lower-cased.
const CANARY: &str = "canary-5d41402abc4b2a76b9719d911017c592";

struct Attack {
    name: &'static str,
    compiler: &'static str,
    /// Extra flags before `-c`.
    flags: &'static [&'static str],
    ext: &'static str,
    /// The source, with `@` for the canary file's path.
    src: &'static str,
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: ".incbin with gcc",
        compiler: "gcc",
        flags: &[],
        ext: "i",
        src: "asm(\".pushsection .rodata\\n.incbin \\\"@\\\"\\n.popsection\");\nint x;\n",
    },
    Attack {
        name: ".incbin with clang's integrated assembler",
        compiler: "clang",
        flags: &[],
        ext: "i",
        src: "asm(\".pushsection .rodata\\n.incbin \\\"@\\\"\\n.popsection\");\nint x;\n",
    },
    Attack {
        name: ".include with gcc (lines come back as assembler errors)",
        compiler: "gcc",
        flags: &[],
        ext: "i",
        src: "asm(\".include \\\"@\\\"\");\nint x;\n",
    },
    Attack {
        name: "a line marker naming the file, then an error (gcc quotes the line)",
        compiler: "gcc",
        flags: &[],
        ext: "i",
        src: "# 1 \"@\"\nint x = ;\n",
    },
    Attack {
        name: "#include hidden by a splice after spaces (clang obeys it)",
        compiler: "clang",
        flags: &["-ferror-limit=0"],
        ext: "i",
        src: "#inc\\   \nlude \"@\"\nint x;\n",
    },
    Attack {
        name: "#include spliced by the trigraph ??/ under -std=c89 (clang)",
        compiler: "clang",
        flags: &["-std=c89", "-ferror-limit=0"],
        ext: "i",
        src: "#inc??/\nlude \"@\"\nint x;\n",
    },
    Attack {
        name: "#include after a raw string whose line starts with /* (clang++)",
        compiler: "clang++",
        flags: &["-ferror-limit=0"],
        ext: "ii",
        src: "const char *s = R\"x(\n/*\n)x\";\n#include \"@\"\n// */\nint x;\n",
    },
];

/// Rows the directive scan cannot see: every preprocessed file has line
/// markers, so only the sandbox stops them.
const UNSCANNABLE: &[&str] = &["a line marker naming the file, then an error (gcc quotes the line)"];

/// A file only a sandbox stands between the compiler and: world-readable,
/// in a world-readable directory outside the system's.
fn canary(dir: &TestDir) -> PathBuf {
    let p = dir.join("secret/canary.txt");
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::set_permissions(p.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(&p, format!("{CANARY}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p
}

fn leaked(out: &Output, job: &Path) -> bool {
    let obj = fs::read(job.join("out.o")).unwrap_or_default();
    [&out.stdout[..], &out.stderr[..], &obj[..]]
        .iter()
        .any(|b| b.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()))
}

/// Runs the attack's compile in a fresh job directory, as the daemon would
/// (relative names, TMPDIR the job's), confined by `sandbox` if given.
fn compile(a: &Attack, canary: &Path, root: &Path, sandbox: Option<&Sandbox>) -> (Output, PathBuf) {
    let job = root.join(format!("job-{}", next()));
    fs::create_dir_all(&job).unwrap();
    let input = format!("x.{}", a.ext);
    fs::write(job.join(&input), a.src.replace('@', canary.to_str().unwrap())).unwrap();
    let exe = which(a.compiler);
    let mut cmd = Command::new(&exe);
    cmd.args(a.flags)
        .args(["-c", &input, "-o", "out.o"])
        .current_dir(&job)
        .env("TMPDIR", &job)
        .stdin(Stdio::null());
    if let Some(s) = sandbox {
        s.prepare(&job, &exe).unwrap().confine(&mut cmd);
    }
    (cmd.output().unwrap(), job)
}

fn next() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

#[test]
fn the_sandbox_stops_every_way_the_code_makes_the_compiler_read_a_file() {
    let dir = TestDir::new("sandbox-attacks");
    let secret = canary(&dir);
    let jobs = dir.shared_dir("jobs");
    let sandbox = Sandbox::start(Some(Mode::Required), Rlimits::default())
        .expect("this machine's kernel has Landlock (the tests need it)");
    for a in ATTACKS {
        if !have(a.compiler) {
            eprintln!("skipped '{}': {} is not installed", a.name, a.compiler);
            continue;
        }
        let (out, job) = compile(a, &secret, &jobs, None);
        assert!(
            leaked(&out, &job),
            "'{}' no longer reads the file unconfined, so it proves nothing:\n{}",
            a.name,
            text(&out.stderr)
        );
        let (out, job) = compile(a, &secret, &jobs, Some(&sandbox));
        assert!(
            !leaked(&out, &job),
            "'{}' read the canary through the sandbox:\n{}",
            a.name,
            text(&out.stderr)
        );
    }
}

#[test]
fn the_directive_scan_refuses_every_attack_it_can_see() {
    for a in ATTACKS {
        let src = a.src.replace('@', "/etc/passwd");
        let r = distcc::args::server::check_preprocessed(src.as_bytes());
        if UNSCANNABLE.contains(&a.name) {
            assert!(r.is_ok(), "'{}' is no longer unscannable; move it", a.name);
        } else {
            assert!(r.is_err(), "the scan lets '{}' through", a.name);
        }
    }
}

#[test]
fn confined_compiles_give_the_same_objects_as_unconfined_ones() {
    let dir = TestDir::new("sandbox-same");
    let jobs = dir.shared_dir("jobs");
    let sandbox = Sandbox::start(Some(Mode::Required), Rlimits::default()).unwrap();
    let src =
        "#include <stdio.h>\n#include <math.h>\nint main(void) { printf(\"%f\\n\", sqrt(2.0)); return 0; }\n";
    for compiler in ["gcc", "clang", "g++", "clang++"] {
        if !have(compiler) {
            eprintln!("skipped {compiler}: not installed");
            continue;
        }
        let cpp = compiler.ends_with("++");
        // Preprocess on the "client", as distcc does, then compile both ways.
        let input = dir.write(if cpp { "p.cc" } else { "p.c" }, src);
        let out = Command::new(compiler)
            .args(["-E", input.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        let ext = if cpp { "ii" } else { "i" };
        let mut objects = Vec::new();
        for confined in [false, true] {
            // The same directory both times: -g records it.
            let job = jobs.join(compiler);
            let _ = fs::remove_dir_all(&job);
            fs::create_dir_all(&job).unwrap();
            fs::write(job.join(format!("p.{ext}")), &out.stdout).unwrap();
            let exe = which(compiler);
            let mut cmd = Command::new(&exe);
            cmd.args(["-O2", "-g", "-c", &format!("p.{ext}"), "-o", "p.o"])
                .current_dir(&job)
                .env("TMPDIR", &job);
            if confined {
                sandbox.prepare(&job, &exe).unwrap().confine(&mut cmd);
            }
            let o = cmd.output().unwrap();
            assert!(
                o.status.success(),
                "{compiler} confined={confined}: {}",
                text(&o.stderr)
            );
            objects.push(fs::read(job.join("p.o")).unwrap());
        }
        assert!(
            objects[0] == objects[1],
            "{compiler}: the sandbox changed the object"
        );
    }
}

#[test]
fn the_daemon_returns_no_canary_whatever_the_code_asks() {
    let dir = TestDir::new("sandbox-daemon");
    let world = canary(&dir);
    // And one only root may read: the daemon starts as root.
    let root_only = dir.join("secret/root-only.txt");
    fs::write(&root_only, format!("{CANARY}\n")).unwrap();
    fs::set_permissions(&root_only, fs::Permissions::from_mode(0o600)).unwrap();
    let d = Daemon::serving(&dir, &["gcc", "clang", "clang++"], &[]);
    // And another job's input, where a job of this daemon would keep it.
    let other_job = d.tmp.join("distccd-rs.1.0.00000000");
    fs::create_dir_all(&other_job).unwrap();
    let other = other_job.join("their.i");
    fs::write(&other, format!("{CANARY}\n")).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).unwrap();
    for a in ATTACKS {
        if !have(a.compiler) {
            continue;
        }
        for secret in [&world, &root_only, &other] {
            let src = a.src.replace('@', secret.to_str().unwrap());
            let input = format!("x.{}", a.ext);
            let mut argv = vec![a.compiler];
            argv.extend_from_slice(a.flags);
            argv.extend_from_slice(&["-c", &input, "-o", "x.o"]);
            let reply = raw_request(d.addr(), None, &request(Version::Lzo, &argv, src.as_bytes()))
                .unwrap_or_else(|e| panic!("'{}': no reply: {e:?}", a.name));
            for (what, bytes) in [
                ("stderr", &reply.stderr),
                ("stdout", &reply.stdout),
                ("object", &reply.object),
            ] {
                assert!(
                    !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
                    "'{}' on {}: the canary is in the reply's {what}:\n{}",
                    a.name,
                    secret.display(),
                    text(&reply.stderr)
                );
            }
        }
    }
    fs::remove_dir_all(&other_job).unwrap();
    assert!(d.leftovers().is_empty(), "{:?}", d.leftovers());
}

#[test]
fn an_assembler_reading_its_own_stdout_finishes_at_once_and_holds_no_slot() {
    let dir = TestDir::new("sandbox-proc-fd");
    let d = Daemon::serving(&dir, &["gcc"], &["--jobs", "1"]);
    // With a pipe for stdout, `as` would block reading it for as long as the
    // client stays; the compiler's stdout is a file in the job directory,
    // so it reads what is there and goes on.
    let t = Instant::now();
    let reply = raw_request(
        d.addr(),
        None,
        &request(
            Version::Lzo,
            &["gcc", "-c", "p.i", "-o", "p.o"],
            b"asm(\".include \\\"/proc/self/fd/1\\\"\");\nint p;\n",
        ),
    )
    .expect("a reply");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        reply.status == 0 || !reply.stderr.is_empty(),
        "answered: {reply:?}"
    );
    // The one slot is free again: a good job is served.
    let good = raw_request(
        d.addr(),
        None,
        &request(Version::Lzo, &["gcc", "-c", "g.i", "-o", "g.o"], b"int g;\n"),
    )
    .unwrap();
    assert_eq!(good.status, 0, "{}", text(&good.stderr));
}
