//! Our client on a real REAPI cluster (BuildGrid, its PostgreSQL, and the
//! test worker of tests/reapi: BuildGrid ships none), through
//! `DISTCC_HOSTS=reapi://…`: Lua built by make, every compile executed on
//! the worker and byte-identical to a local build; a clean rebuild served
//! entirely from the action cache; a changed flag or compiler a miss; a
//! compile error the compiler's, not retried; a cluster down or silent
//! backed off, the build finished here with the same objects.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use crate::pump_projects::{LUA_CORE, copy_tree, crate_dir};

const CLIENT: &str = env!("CARGO_BIN_EXE_distcc");
/// Without -g: plain mode compiles the preprocessed text, whose expanded
/// macros move DWARF's column numbers (distcc 3.4's plain mode alike); pump
/// mode, which preprocesses on the server, is the one byte-identical with -g.
const FLAGS: &str = "-O2 -Wall -DLUA_COMPAT_5_3 -DLUA_USE_LINUX";

/// An unmodified Lua 5.4 tree and a Makefile for its core.
fn lua(dir: &TestDir) -> PathBuf {
    let proj = fs::canonicalize(dir.path()).unwrap().join("lua");
    copy_tree(&crate_dir("lua-src").join("lua-5.4.9"), &proj);
    let objs: Vec<String> = LUA_CORE.split_whitespace().map(|m| format!("{m}.o")).collect();
    fs::write(
        proj.join("reapi.mk"),
        format!(
            "OBJS = {}\nCFLAGS = {FLAGS}\nall: $(OBJS)\n%.o: %.c\n\t$(CC) $(CFLAGS) $(EXTRA) -c $< -o $@\nclean:\n\trm -f $(OBJS)\n",
            objs.join(" ")
        ),
    )
    .unwrap();
    proj
}

fn make(proj: &Path, cc: &str, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let distcc_dir = proj.join(".distcc-dir");
    fs::create_dir_all(&distcc_dir).unwrap();
    let mut cmd = Command::new("make");
    cmd.args(["-f", "reapi.mk", "-j8", &format!("CC={cc}")])
        .args(extra)
        .current_dir(proj)
        .env("DISTCC_DIR", &distcc_dir)
        .env("DISTCC_LOG", proj.join("client.log"))
        .env("DISTCC_VERBOSE", "1")
        .env_remove("DISTCC_HOSTS")
        .env_remove("INCLUDE_SERVER_PORT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let _ = fs::remove_file(proj.join("client.log"));
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "make CC={cc} {extra:?}: {}\n{}\nclient log:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        fs::read_to_string(proj.join("client.log")).unwrap_or_default()
    );
    out
}

fn clean(proj: &Path) {
    for m in LUA_CORE.split_whitespace() {
        let _ = fs::remove_file(proj.join(format!("{m}.o")));
    }
}

fn objects(proj: &Path) -> BTreeMap<String, Vec<u8>> {
    LUA_CORE
        .split_whitespace()
        .map(|m| (m.to_owned(), fs::read(proj.join(format!("{m}.o"))).unwrap()))
        .collect()
}

fn client_log(proj: &Path) -> String {
    fs::read_to_string(proj.join("client.log")).unwrap_or_default()
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn lua_builds_on_the_cluster_then_from_its_cache() {
    let dir = TestDir::new("reapi-lua");
    let proj = lua(&dir);
    let n = LUA_CORE.split_whitespace().count();
    make(&proj, "gcc", &[], &[]);
    let local = objects(&proj);
    clean(&proj);

    let cluster = Cluster::start(&dir);
    let hosts = format!("reapi://{}/8", cluster.addr());
    let cc = format!("{CLIENT} gcc");
    let env = [("DISTCC_HOSTS", hosts.as_str()), ("DISTCC_FALLBACK", "0")];
    make(&proj, &cc, &env, &[]);
    let log = client_log(&proj);
    assert_eq!(cluster.executed(), n, "every compile ran on the worker:\n{log}");
    assert_eq!(count(&log, "executed on the cluster"), n, "{log}");
    let differ = |got: BTreeMap<String, Vec<u8>>| -> Vec<String> {
        got.into_iter()
            .filter(|(k, v)| local[k] != *v)
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(
        differ(objects(&proj)),
        Vec::<String>::new(),
        "objects differ from a local build's"
    );

    // A clean rebuild: the action cache answers every job.
    clean(&proj);
    make(&proj, &cc, &env, &[]);
    let log = client_log(&proj);
    assert_eq!(cluster.executed(), n, "nothing new executed:\n{log}");
    assert_eq!(count(&log, "from the action cache"), n, "{log}");
    assert!(
        objects(&proj) == local,
        "cached objects differ from a local build's"
    );

    // Another flag the compiler sees: another action. (A `-D` the source
    // does not use changes nothing the server is sent: a hit, rightly.)
    let _ = fs::remove_file(proj.join("lapi.o"));
    make(&proj, &cc, &env, &["EXTRA=-DREAPI_TEST_FLAG=1", "lapi.o"]);
    assert_eq!(cluster.executed(), n, "{}", client_log(&proj));
    let _ = fs::remove_file(proj.join("lapi.o"));
    make(&proj, &cc, &env, &["EXTRA=-O1", "lapi.o"]);
    assert_eq!(cluster.executed(), n + 1, "{}", client_log(&proj));
    assert_ne!(
        fs::read(proj.join("lapi.o")).unwrap(),
        local["lapi"],
        "-O1 made another object"
    );

    // Another compiler (here one at another path that runs gcc): another
    // action, although the command line is the same.
    let wrap = dir.join("wrapped");
    fs::create_dir_all(&wrap).unwrap();
    let gcc = wrap.join("gcc");
    fs::write(&gcc, "#!/bin/sh\nexec /usr/bin/gcc \"$@\"\n").unwrap();
    fs::set_permissions(&gcc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", wrap.display(), std::env::var("PATH").unwrap());
    let _ = fs::remove_file(proj.join("lapi.o"));
    let env2 = [
        ("DISTCC_HOSTS", hosts.as_str()),
        ("DISTCC_FALLBACK", "0"),
        ("PATH", path.as_str()),
    ];
    make(&proj, &cc, &env2, &["lapi.o"]);
    assert_eq!(cluster.executed(), n + 2, "{}", client_log(&proj));
    assert_eq!(fs::read(proj.join("lapi.o")).unwrap(), local["lapi"]);
}

#[test]
fn compile_errors_are_the_compilers_and_faults_fall_back() {
    let dir = TestDir::new("reapi-faults");
    let cluster = Cluster::start(&dir);
    let work = fs::canonicalize(dir.path()).unwrap();
    fs::write(work.join("bad.c"), "int f(void) { return nope; }\n").unwrap();
    fs::write(work.join("good.c"), "int g(int x) { return x * 3; }\n").unwrap();
    let hosts = format!("reapi://{}/4", cluster.addr());
    let run = |hosts: &str, file: &str, env: &[(&str, &str)]| {
        let distcc_dir = work.join(format!(".distcc-{}", hosts.len() + env.len()));
        fs::create_dir_all(&distcc_dir).unwrap();
        let mut cmd = Command::new(CLIENT);
        cmd.args(["gcc", "-O2", "-c", file, "-o", &file.replace(".c", ".o")])
            .current_dir(&work)
            .env("DISTCC_HOSTS", hosts)
            .env("DISTCC_DIR", &distcc_dir)
            .env("DISTCC_VERBOSE", "1")
            .env_remove("DISTCC_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };

    // The compiler's diagnostics and status, from the worker, once.
    let before = cluster.executed();
    let out = run(&hosts, "bad.c", &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("'nope' undeclared") || err.contains("‘nope’ undeclared"),
        "{err}"
    );
    assert!(err.contains("executed on the cluster"), "{err}");
    assert!(
        !err.contains("locally"),
        "a compile error is not retried here: {err}"
    );
    assert_eq!(cluster.executed(), before + 1);

    let local = {
        let o = Command::new("gcc")
            .args(["-O2", "-c", "good.c", "-o", "local.o"])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(o.status.success());
        fs::read(work.join("local.o")).unwrap()
    };

    // A cluster that is down: backed off, compiled here.
    let down = format!("reapi://127.0.0.1:{}/4", free_port());
    let out = run(&down, "good.c", &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("backing off"), "{err}");
    assert!(err.contains("locally"), "{err}");
    assert_eq!(fs::read(work.join("good.o")).unwrap(), local);
    let again = run(&down, "good.c", &[]);
    assert!(
        text(&again.stderr).contains("failed less than"),
        "{}",
        text(&again.stderr)
    );

    // A cluster that accepts and never answers: the I/O timeout, then here.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_hosts = format!("reapi://{}/4", silent.local_addr().unwrap());
    silent.set_nonblocking(true).unwrap();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < end {
            if let Ok((c, _)) = silent.accept() {
                conns.push(c);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        conns.len()
    });
    let _ = fs::remove_file(work.join("good.o"));
    let out = run(&silent_hosts, "good.c", &[("DISTCC_IO_TIMEOUT", "2")]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("locally"), "{err}");
    assert_eq!(fs::read(work.join("good.o")).unwrap(), local);
    assert!(held.join().unwrap() > 0, "the client did connect");
}

#[test]
fn under_pump_the_cluster_preprocesses() {
    let dir = TestDir::new("reapi-pump");
    let proj = lua(&dir);
    let n = LUA_CORE.split_whitespace().count();
    let deps = |proj: &Path| -> BTreeMap<String, Vec<u8>> {
        LUA_CORE
            .split_whitespace()
            .map(|m| {
                (
                    m.to_owned(),
                    fs::read(proj.join(format!("{m}.d"))).unwrap_or_default(),
                )
            })
            .collect()
    };
    make(&proj, "gcc", &[], &["EXTRA=-MD"]);
    let (local, local_d) = (objects(&proj), deps(&proj));
    clean(&proj);
    for m in LUA_CORE.split_whitespace() {
        let _ = fs::remove_file(proj.join(format!("{m}.d")));
    }

    let cluster = Cluster::start(&dir);
    let hosts = format!("reapi://{}/8,cpp", cluster.addr());
    let cc = format!("{CLIENT} gcc");
    let pump = env!("CARGO_BIN_EXE_pump");
    let distcc_dir = proj.join(".distcc-dir");
    fs::create_dir_all(&distcc_dir).unwrap();
    let pump_make = |args: &[&str]| {
        Command::new(pump)
            .args(["make", "-f", "reapi.mk"])
            .args(args)
            .current_dir(&proj)
            .env("DISTCC_DIR", &distcc_dir)
            .env("DISTCC_LOG", proj.join("client.log"))
            .env("DISTCC_VERBOSE", "1")
            .env("DISTCC_HOSTS", &hosts)
            .env("DISTCC_FALLBACK", "0")
            .output()
            .unwrap()
    };
    let out = pump_make(&["-j8", &format!("CC={cc}"), "EXTRA=-MD"]);
    let log = client_log(&proj);
    assert!(
        out.status.success(),
        "{}\n{}\n{log}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        count(&log, "in pump mode ("),
        n,
        "every compile sent its closure:\n{log}"
    );
    assert_eq!(count(&log, "executed on the cluster"), n, "{log}");
    let differ = |got: BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>| -> Vec<String> {
        got.into_iter()
            .filter(|(k, v)| want[k] != *v)
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(
        differ(objects(&proj), &local),
        Vec::<String>::new(),
        "objects differ"
    );
    assert_eq!(
        differ(deps(&proj), &local_d),
        Vec::<String>::new(),
        ".d files differ"
    );

    // With -g the worker's directory would be in the debug info: said, and
    // preprocessed here instead.
    let _ = fs::remove_file(proj.join("lapi.o"));
    let out = pump_make(&[&format!("CC={cc}"), "EXTRA=-g", "lapi.o"]);
    let log = client_log(&proj);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("not in pump mode: -g: the debug info would name the cluster's directory"),
        "{log}"
    );
}
