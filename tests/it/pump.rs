//! Protocol 3 (pump mode) against our distccd: the client's files laid out
//! under the job's root, preprocessed and compiled there in the sandbox,
//! objects and dependency files equal to a local build's; and hostile
//! protocol-3 requests refused or contained.
//!
//! The file list is made here as a client would (the files `gcc -M` lists,
//! system directories sent as links to the server's own, as distcc 3.4's
//! include server does). The last test runs the `pump` wrapper itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use distcc::protocol::message::{PumpEntry, PumpInput};
use distcc::protocol::{Request, Version};

use crate::common::*;

const PROJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pump-capture/project");

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), t).unwrap();
        }
    }
}

/// The compiler's system include directories (`gcc -v`'s search list).
fn system_dirs(compiler: &str) -> Vec<PathBuf> {
    let out = Command::new(compiler)
        .args(["-xc", "-E", "-v", "/dev/null", "-o", "/dev/null"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let list = err
        .split("#include <...> search starts here:")
        .nth(1)
        .and_then(|r| r.split("End of search list.").next())
        .unwrap_or_default()
        .to_owned();
    let dirs: Vec<PathBuf> = list
        .lines()
        .map(str::trim)
        .filter_map(|l| fs::canonicalize(l).ok())
        .collect();
    // One link covers the directories below it (/usr/include/x86_64-linux-gnu
    // under /usr/include), as distcc 3.4's include server sends them.
    dirs.iter()
        .filter(|d| !dirs.iter().any(|o| o != *d && d.starts_with(o)))
        .cloned()
        .collect()
}

/// A pump request for `argv` run in `cwd`: the files `gcc -M` lists that are
/// not under a system directory, and a link for each system directory.
fn pump_request(cwd: &Path, argv: &[&str]) -> Request {
    let compiler = argv[0];
    // -M with -o would name the output; the rest of the flags as they are.
    let mut args: Vec<&str> = Vec::new();
    let mut skip = false;
    for a in &argv[1..] {
        if skip {
            skip = false;
            continue;
        }
        match *a {
            "-c" | "-MD" => {}
            "-o" | "-MT" => skip = true,
            _ => args.push(a),
        }
    }
    let out = Command::new(compiler)
        .args(&args)
        .arg("-M")
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deps = String::from_utf8(out.stdout).unwrap().replace("\\\n", " ");
    let systems = system_dirs(compiler);
    let mut entries = Vec::new();
    for word in deps.split_whitespace().skip(1) {
        let p = cwd.join(word);
        let real = fs::canonicalize(&p).unwrap();
        if systems.iter().any(|s| real.starts_with(s)) {
            continue;
        }
        entries.push((
            p.to_str().unwrap().as_bytes().to_vec(),
            PumpEntry::File(fs::read(&p).unwrap()),
        ));
    }
    for s in &systems {
        let depth = s.components().count();
        let target = "../".repeat(20 + depth) + s.to_str().unwrap().trim_start_matches('/');
        entries.push((
            s.to_str().unwrap().as_bytes().to_vec(),
            PumpEntry::Link(target.into_bytes()),
        ));
    }
    Request {
        version: Version::Pump,
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        doti: Vec::new(),
        pump: Some(PumpInput {
            cwd: cwd.to_str().unwrap().as_bytes().to_vec(),
            entries,
        }),
    }
}

#[test]
fn a_pump_request_compiles_as_a_local_build_does() {
    let dir = TestDir::new("pump-build");
    let proj = fs::canonicalize(dir.path()).unwrap().join("proj");
    copy_dir(Path::new(PROJECT), &proj);
    let d = Daemon::serving(&dir, &["gcc", "x86_64-linux-gnu-gcc"], &[]);
    let abs_inc = format!("-I{}/abs_inc", proj.display());
    for (src, obj, md) in [
        ("src/main.c", "src/main.o", true),
        ("src/foo.c", "src/foo.o", false),
    ] {
        let mut argv = vec![
            "gcc",
            "-O2",
            "-g",
            "-Iinclude",
            &abs_inc,
            "-iquote",
            "quote_inc",
            "-Igen",
        ];
        if md {
            argv.push("-MD");
        }
        argv.extend_from_slice(&["-c", src, "-o", obj]);
        if md {
            // As distcc 3.4's client adds it.
            argv.extend_from_slice(&["-MT", obj]);
        }
        let req = pump_request(&proj, &argv);
        let reply = raw_request(d.addr(), None, &req).expect("a protocol-3 reply");
        assert_eq!(reply.status, 0, "{src}: {}", text(&reply.stderr));
        assert_eq!(reply.version, Version::Pump);
        // The same compile here.
        let local = Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(&proj)
            .output()
            .unwrap();
        assert!(local.status.success(), "{}", text(&local.stderr));
        assert!(
            reply.object == fs::read(proj.join(obj)).unwrap(),
            "{src}: the object differs from a local build's (with -g)"
        );
        let dotd = String::from_utf8(reply.dotd.clone().expect("DOTD after a successful compile")).unwrap();
        assert!(
            !dotd.contains("distccd-rs."),
            "the job's root is gone from the .d: {dotd}"
        );
        if md {
            let local_d = fs::read_to_string(proj.join(obj).with_extension("d")).unwrap();
            assert_eq!(dotd, local_d, "{src}: the .d differs from a local build's");
        } else {
            assert!(dotd.starts_with(&format!("{obj}: {src}")), "{dotd}");
        }
    }
    let log = d.log_text();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("COMPILE_OK") && l.contains(" protocol:3 "))
            .count(),
        2,
        "both compiles logged as protocol 3: {log}"
    );
    assert!(d.leftovers().is_empty(), "{:?}", d.leftovers());
}

#[test]
fn hostile_pump_requests_are_refused_or_contained() {
    let dir = TestDir::new("pump-hostile");
    let d = Daemon::serving(&dir, &["gcc"], &[]);
    let secret = dir.join("secret.txt");
    fs::write(&secret, "canary-2c26b46b68ffc68ff99b453c1d30413413422d70\n").unwrap();
    let with = |cwd: &str, entries: Vec<(&str, PumpEntry)>| Request {
        version: Version::Pump,
        argv: ["gcc", "-c", "/w/x.c", "-o", "x.o"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect(),
        doti: Vec::new(),
        pump: Some(PumpInput {
            cwd: cwd.as_bytes().to_vec(),
            entries: entries
                .into_iter()
                .map(|(n, e)| (n.as_bytes().to_vec(), e))
                .collect(),
        }),
    };
    let file = |s: &str| PumpEntry::File(s.as_bytes().to_vec());
    let link = |s: &str| PumpEntry::Link(s.as_bytes().to_vec());
    let refused = [
        (
            with("/w", vec![("/w/../../etc/x.h", file("int x;"))]),
            "'..' component",
        ),
        (
            with("/w", vec![("/w/l", link(&"../".repeat(30)))]),
            "other than a system directory",
        ),
        (
            with("/w", vec![("/w/l", link("../../../../../../../etc"))]),
            "other than a system directory",
        ),
        (with("relative", vec![]), "not absolute"),
        (
            with("/w", vec![("/w/d", link("s")), ("/w/d/x.c", file("int x;"))]),
            "through the link",
        ),
    ];
    for (req, why) in refused {
        let reply = raw_request(d.addr(), None, &req).expect("a refusal");
        assert_eq!(
            reply.status >> 8,
            u32::from(distcc::exitcode::ACCESS_DENIED),
            "{}",
            text(&reply.stderr)
        );
        assert!(
            text(&reply.stderr).contains(why),
            "{why}: {}",
            text(&reply.stderr)
        );
    }
    // Contained: a sent file that includes a server file by its absolute
    // path, or climbs out of the root by a relative include.
    let include = format!("#include \"{}\"\nint x;\n", secret.display());
    let climb = format!(
        "#include \"{}{}\"\nint x;\n",
        "../".repeat(30),
        secret.display().to_string().trim_start_matches('/')
    );
    // Another job's file: a job directory beside this one, readable by
    // the user the compilers run as; only the sandbox keeps it out.
    let other = d.tmp.join("distccd-rs.1.0.0000abcd");
    fs::create_dir_all(other.join("w")).unwrap();
    fs::write(
        other.join("w/theirs.h"),
        "canary-2c26b46b68ffc68ff99b453c1d30413413422d70\n",
    )
    .unwrap();
    Command::new("chown")
        .args(["-R", "nobody:"])
        .arg(&other)
        .status()
        .unwrap();
    // Readable to the compiler's user, so only the sandbox stands between.
    for f in [secret.clone(), other.join("w/theirs.h")] {
        let cat = Command::new("runuser")
            .args(["-u", "nobody", "--", "cat"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            text(&cat.stdout).contains("canary-2c26b46b"),
            "{}: {}",
            f.display(),
            text(&cat.stderr)
        );
    }
    let theirs = format!("#include \"{}/w/theirs.h\"\nint x;\n", other.display());
    let passwd = "#include \"/etc/passwd\"\nint x;\n".to_string();
    for src in [include, climb, theirs, passwd] {
        let reply = raw_request(d.addr(), None, &with("/w", vec![("/w/x.c", file(&src))])).expect("a reply");
        assert_ne!(reply.status, 0, "the compile cannot read it");
        for canary in ["canary-2c26b46b", "root:x:0:"] {
            assert!(
                !text(&reply.stderr).contains(canary) && !text(&reply.object).contains(canary),
                "{src}: {}",
                text(&reply.stderr)
            );
        }
    }
    fs::remove_dir_all(&other).unwrap();
    // Too many entries: refused before they are read.
    let mut s = connect_from(d.addr(), None);
    use std::io::{Read, Write};
    s.write_all(b"DIST00000003CDIR00000002/wARGC00000001ARGV00000003gccNFILffffffff")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(text(&out).contains("NFIL"), "{}", text(&out));
    assert!(d.leftovers().is_empty(), "{:?}", d.leftovers());
}

#[test]
fn distcc_34_pump_requests_are_served() {
    // Recorded from distcc 3.4's pump client (tests/data/pump-capture): its
    // include server's files, links and "forcing" files, its command line.
    let dir = TestDir::new("pump-recorded");
    let d = Daemon::serving(&dir, &["x86_64-linux-gnu-gcc"], &[]);
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pump-capture");
    for (name, ok, target) in [
        ("ok-md", true, "src/main.o: src/main.c /usr/include/stdc-predef.h"),
        // No -MD: the server's own -MMD, so no system headers.
        ("ok-nodeps", true, "src/foo_nodeps.o: src/foo.c include/foo.h"),
        ("fail", false, ""),
    ] {
        use std::io::{Read, Write};
        let mut s = connect_from(d.addr(), None);
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        s.write_all(&fs::read(format!("{data}/{name}.c2s.bin")).unwrap())
            .unwrap();
        let reply = distcc::protocol::blocking::read_message(
            &mut s,
            distcc::protocol::message::ReplyDecoder::new(Version::Pump, Default::default()),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let _ = s.read_to_end(&mut Vec::new());
        assert_eq!(reply.status == 0, ok, "{name}: {}", text(&reply.stderr));
        if ok {
            assert!(reply.object.starts_with(b"\x7fELF"), "{name}");
            let dotd = String::from_utf8(reply.dotd.unwrap()).unwrap();
            assert!(
                dotd.starts_with(target) && !dotd.contains("distccd-rs."),
                "{name}: {dotd}"
            );
        } else {
            assert!(text(&reply.stderr).contains("error"), "{}", text(&reply.stderr));
            assert!(reply.dotd.is_none());
        }
    }
    assert!(d.leftovers().is_empty(), "{:?}", d.leftovers());
}

/// `pump COMMAND` and `--startup`/`--shutdown` stop the include server as
/// soon as they are done with it, and leave no directory behind.
#[test]
fn pump_stops_its_include_server_at_once_and_leaves_nothing() {
    const PUMP: &str = env!("CARGO_BIN_EXE_pump");
    let dir = TestDir::new("pump-wrapper");
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let pump = |args: &[&str], env: &[(&str, &str)]| {
        // The server --startup leaves running keeps stderr: not a pipe
        // read to its end here.
        let log = fs::File::create(dir.join(&format!("pump{}.err", args.len()))).unwrap();
        let out = Command::new(PUMP)
            .args(args)
            .stderr(log)
            .env("DISTCC_HOSTS", "127.0.0.1:1/2,cpp,lzo")
            .env("TMPDIR", &tmp)
            .env("DISTCC_CLIENT_TMP", &tmp)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "pump {args:?}: {}", text(&out.stdout));
        text(&out.stdout)
    };
    let started = std::time::Instant::now();
    let said = pump(
        &["sh", "-c", "test -S \"$INCLUDE_SERVER_PORT\" && echo socket ok"],
        &[],
    );
    assert!(said.contains("socket ok"), "{said}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "pump waited {:?} for its server",
        started.elapsed()
    );
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "left in TMPDIR");

    let exports = pump(&["--startup"], &[]);
    let var = |k: &str| {
        exports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {k}='")))
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or_else(|| panic!("no {k} in {exports}"))
            .to_owned()
    };
    let (pid, sdir) = (var("INCLUDE_SERVER_PID"), var("INCLUDE_SERVER_DIR"));
    assert!(Path::new(&sdir).join("socket").exists());
    pump(
        &["--shutdown"],
        &[("INCLUDE_SERVER_PID", &pid), ("INCLUDE_SERVER_DIR", &sdir)],
    );
    assert!(!Path::new(&sdir).exists(), "{sdir} left by --shutdown");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")),
        "the include server still runs"
    );
}
