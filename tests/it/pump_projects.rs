//! Pump mode on real projects: unmodified sources from crates.io (Lua,
//! zstd, libwebp, and meshoptimizer in C++), each built by a small Makefile
//! under `pump make -j4` three ways: our client with our distccd, our client
//! with distccd 3.4, distcc 3.4's client (with our `pump` and include
//! server) with our distccd. Every object and `.d` file must equal a local
//! build's in the same directory, and every job must have gone as
//! protocol 3 (a fallback to preprocessing here fails the test). Then the
//! closure check: for each compile, our include server's answer must hold
//! every file `gcc -M` names, system headers through the system-directory
//! links.
//!
//! meshoptimizer (crate `meshopt` 0.7.0, its `vendor/src`) is the C++
//! project: 21 `.cpp` files, 15k lines, no generated files, no
//! configuration step. Under g++ its `<math.h>`, `<string.h>` and
//! `<assert.h>` are libstdc++'s wrappers, so each compile reads some 40
//! libstdc++ headers (`<cmath>`, `bits/c++config.h`, ...) and the x86
//! intrinsics headers.
//!
//! Every file of each project is compiled (libwebp's 125 include the
//! mips/neon/msa ones, near empty on x86); zstd's one assembler file is
//! left out. Lua and meshoptimizer are built with `-g`: byte-identical
//! with our distccd; distccd 3.4 leaves its job root in DWARF 5's
//! `.debug_line_str` (its debug-info fix knows `.debug_info` and
//! `.debug_str` only), so there the objects are compared without their
//! debug sections.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::*;

const PUMP: &str = env!("CARGO_BIN_EXE_pump");
const MAKEFILE: &str = "distcc-test.mk";
/// One build, any way: a hung one fails instead of hanging the suite.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) const CRATES: &[(&str, &str)] = &[
    ("lua-src", "551.1.0"),
    ("zstd-sys", "2.1.3+zstd.1.5.7"),
    ("libwebp-sys", "0.14.4"),
    ("meshopt", "0.7.0"),
];

/// Lua's core and libraries (bench/bench.py's LUA_CORE).
pub(crate) const LUA_CORE: &str = "lapi lcode lctype ldebug ldo ldump lfunc lgc llex lmem lobject lopcodes \
                        lparser lstate lstring ltable ltm lundump lvm lzio lauxlib lbaselib lcorolib \
                        ldblib liolib lmathlib loadlib loslib lstrlib ltablib lutf8lib linit";

/// The unpacked crate `name`, fetched once per test process the way
/// bench/bench.py does: a throwaway project depending on every crate here,
/// `cargo fetch`, then the registry's source directory.
pub(crate) fn crate_dir(name: &str) -> PathBuf {
    static REGISTRY: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let found = REGISTRY.get_or_init(|| {
        let work = TestDir::new("pump-projects-fetch");
        let deps: String = CRATES.iter().map(|(c, v)| format!("{c} = \"={v}\"\n")).collect();
        work.write("src/lib.rs", "");
        work.write(
            "Cargo.toml",
            &format!(
                "[package]\nname = \"fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
                 [workspace]\n[dependencies]\n{deps}"
            ),
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["fetch", "--quiet"])
            .current_dir(work.path())
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("run cargo fetch");
        assert!(
            out.status.success(),
            "cargo fetch of the project crates failed: {}",
            text(&out.stderr)
        );
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
        let mut dirs = Vec::new();
        for (c, v) in CRATES {
            let hit = fs::read_dir(home.join("registry/src"))
                .unwrap()
                .flatten()
                .map(|e| e.path().join(format!("{c}-{v}")))
                .find(|p| p.is_dir())
                .unwrap_or_else(|| panic!("{c} {v} is not in {} after cargo fetch", home.display()));
            dirs.push(hit);
        }
        dirs
    });
    let i = CRATES.iter().position(|(c, _)| *c == name).unwrap();
    found[i].clone()
}

struct Project {
    name: &'static str,
    /// Copied whole, unmodified.
    tree: PathBuf,
    /// Translation units, relative to the tree.
    sources: Vec<String>,
    cxx: bool,
    flags: &'static str,
}

impl Project {
    fn compiler(&self) -> &'static str {
        if self.cxx { "g++" } else { "gcc" }
    }
    fn object(src: &str) -> String {
        let stem = src.rsplit_once('.').unwrap().0;
        format!("{stem}.o")
    }
    fn makefile(&self) -> String {
        let objs: Vec<String> = self.sources.iter().map(|s| Self::object(s)).collect();
        let (var, flags, ext) = if self.cxx {
            ("CXX", "CXXFLAGS", "cpp")
        } else {
            ("CC", "CFLAGS", "c")
        };
        format!(
            "OBJS = {}\n{flags} = {}\nall: $(OBJS)\n%.o: %.{ext}\n\t$({var}) $({flags}) -MD -c $< -o $@\n",
            objs.join(" "),
            self.flags
        )
    }
    /// The command make runs for `src`, with `compiler` for $(CC).
    fn command(&self, compiler: &str, src: &str) -> Vec<String> {
        let mut argv = vec![compiler.to_owned()];
        argv.extend(self.flags.split_whitespace().map(String::from));
        argv.extend(["-MD", "-c", src, "-o", &Self::object(src)].map(String::from));
        argv
    }
}

/// The `.c`/`.cpp` files under `dir` (relative to `tree`), sorted.
fn sources_in(tree: &Path, dir: &str, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(tree.join(dir))
        .unwrap_or_else(|e| panic!("{}: {e}", tree.join(dir).display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .map(|n| if dir.is_empty() { n } else { format!("{dir}/{n}") })
        .collect();
    v.sort();
    v
}

fn lua() -> Project {
    let tree = crate_dir("lua-src").join("lua-5.4.9");
    Project {
        name: "lua",
        sources: LUA_CORE.split_whitespace().map(|m| format!("{m}.c")).collect(),
        tree,
        cxx: false,
        // With -g: the server must take its job root out of the debug info.
        flags: "-O2 -g -Wall -DLUA_COMPAT_5_3 -DLUA_USE_LINUX",
    }
}

fn zstd() -> Project {
    // lib/ whole; the one assembler file (decompress/huf_decompress_amd64.S)
    // is not a pump-mode compile and is left out.
    let tree = crate_dir("zstd-sys").join("zstd/lib");
    let sources = ["common", "compress", "decompress"]
        .iter()
        .flat_map(|d| sources_in(&tree, d, ".c"))
        .collect();
    Project {
        name: "zstd",
        tree,
        sources,
        cxx: false,
        flags: "-O1 -Wall -DXXH_NAMESPACE=ZSTD_ -DZSTD_MULTITHREAD -I. -Icommon",
    }
}

fn libwebp() -> Project {
    // libwebp-sys's build: every C file of vendor/src and vendor/sharpyuv,
    // with -I for vendor (the sources include "src/dsp/dsp.h" and the like).
    let tree = crate_dir("libwebp-sys").join("vendor");
    let sources = [
        "src/dec",
        "src/demux",
        "src/dsp",
        "src/enc",
        "src/mux",
        "src/utils",
        "sharpyuv",
    ]
    .iter()
    .flat_map(|d| sources_in(&tree, d, ".c"))
    .collect();
    Project {
        name: "libwebp",
        tree,
        sources,
        cxx: false,
        flags: "-O1 -Wall -fvisibility=hidden -DNDEBUG=1 -D_THREAD_SAFE=1 -DWEBP_USE_THREAD=1 \
                -DWEBP_HAVE_SSE2=1 -I.",
    }
}

fn meshopt() -> Project {
    let tree = crate_dir("meshopt").join("vendor");
    let sources = sources_in(&tree, "src", ".cpp");
    Project {
        name: "meshoptimizer",
        tree,
        sources,
        cxx: true,
        // With -g too: C++ debug info names more paths.
        flags: "-O1 -g -Wall -std=c++17",
    }
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), t).unwrap();
        } else if ft.is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            fs::copy(e.path(), t).unwrap();
        }
    }
}

/// A command in its own process group, killed whole if it outlasts `limit`.
fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let pg = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
            true
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        !watch.join().unwrap(),
        "{what}: still running after {limit:?}, killed"
    );
    out
}

/// What a build left: each source's object and `.d` file.
type Outputs = BTreeMap<String, (Vec<u8>, String)>;

fn take_outputs(p: &Project, proj: &Path, how: &str) -> Outputs {
    let mut out = Outputs::new();
    for src in &p.sources {
        let obj = proj.join(Project::object(src));
        let dotd = obj.with_extension("d");
        let o = fs::read(&obj).unwrap_or_else(|e| panic!("{}, {how}: {}: {e}", p.name, obj.display()));
        let d = fs::read_to_string(&dotd)
            .unwrap_or_else(|e| panic!("{}, {how}: {}: {e}", p.name, dotd.display()));
        fs::remove_file(&obj).unwrap();
        fs::remove_file(&dotd).unwrap();
        out.insert(src.clone(), (o, d));
    }
    out
}

/// The printable runs of 8 bytes or more in `b` (what `strings` shows).
fn strings(b: &[u8]) -> BTreeSet<String> {
    b.split(|c| !(0x20..0x7f).contains(c))
        .filter(|r| r.len() >= 8)
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect()
}

/// An object without its debug sections (`objcopy --strip-debug`).
fn strip_debug(dir: &TestDir, obj: &[u8]) -> Vec<u8> {
    let (i, o) = (dir.join("strip-in.o"), dir.join("strip-out.o"));
    fs::write(&i, obj).unwrap();
    let st = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&i)
        .arg(&o)
        .status()
        .unwrap();
    assert!(st.success(), "objcopy --strip-debug failed");
    fs::read(&o).unwrap()
}

/// Equal objects and `.d` files; with `debug_differs`, objects equal once
/// their debug sections are dropped (distccd 3.4 leaves its job root in
/// DWARF 5's `.debug_line_str`, which its debug-info fix does not know).
fn same_outputs(dir: &TestDir, p: &Project, how: &str, local: &Outputs, got: &Outputs, debug_differs: bool) {
    let mut bad = Vec::new();
    for (src, (o, d)) in local {
        let (go, gd) = &got[src];
        let differs = if debug_differs {
            go != o && strip_debug(dir, go) != strip_debug(dir, o)
        } else {
            go != o
        };
        if differs {
            let (here, there) = (strings(go), strings(o));
            let only: Vec<&String> = here.difference(&there).take(5).collect();
            bad.push(format!(
                "{src}: the object differs ({} bytes here, {} local; strings only here: {only:?})",
                go.len(),
                o.len()
            ));
        }
        if gd != d {
            bad.push(format!("{src}: the .d differs:\n--- local\n{d}--- {how}\n{gd}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{}, {how}: {} of {} outputs differ from the local build's:\n{}",
        p.name,
        bad.len(),
        local.len() * 2,
        bad.join("\n")
    );
}

/// `make` in `proj`, under `pump` when `hosts` is given, with its client's
/// log (DISTCC_LOG, verbose) returned.
fn make(dir: &TestDir, proj: &Path, label: &str, cc: &str, hosts: Option<&str>) -> String {
    let p_tmp = dir.join(&format!("tmp-{label}"));
    fs::create_dir_all(&p_tmp).unwrap();
    let log = dir.join(&format!("client-{label}.log"));
    let distcc_dir = dir.join(&format!("distcc-dir-{label}"));
    fs::create_dir_all(&distcc_dir).unwrap();
    let var = if cc.contains("g++") { "CXX" } else { "CC" };
    let mut cmd = match hosts {
        Some(_) => {
            let mut c = Command::new(PUMP);
            c.arg("make");
            c
        }
        None => Command::new("make"),
    };
    cmd.args(["-f", MAKEFILE, "-j4", &format!("{var}={cc}")])
        .current_dir(proj)
        .env("TMPDIR", &p_tmp)
        .env("DISTCC_DIR", &distcc_dir)
        .env("DISTCC_LOG", &log)
        .env("DISTCC_VERBOSE", "1")
        .env("DISTCC_FALLBACK", "0")
        .env_remove("INCLUDE_SERVER_PORT")
        .env_remove("DISTCC_LOCATION")
        .env_remove("CPATH")
        .env_remove("C_INCLUDE_PATH")
        .env_remove("CPLUS_INCLUDE_PATH");
    match hosts {
        Some(h) => cmd.env("DISTCC_HOSTS", h),
        None => cmd.env_remove("DISTCC_HOSTS"),
    };
    let started = Instant::now();
    let out = run_bounded(cmd, BUILD_TIMEOUT, label);
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "{label}: the build failed ({}):\n{}\n{}\nclient log (last lines):\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr),
        tail(&log_text, 40)
    );
    eprintln!("{label}: built in {:.1}s", started.elapsed().as_secs_f64());
    log_text
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Our client's log: every source went as protocol 3, none fell back.
fn our_client_went_pump(p: &Project, how: &str, log: &str) {
    let fell_back: Vec<&str> = log.lines().filter(|l| l.contains("not in pump mode")).collect();
    assert!(
        fell_back.is_empty(),
        "{}, {how}: compiles fell back to plain mode:\n{}",
        p.name,
        fell_back.join("\n")
    );
    for src in &p.sources {
        let n = log
            .lines()
            .filter(|l| l.contains(&format!("compiling {src} on ")) && l.contains("in pump mode (protocol 3"))
            .count();
        assert_eq!(
            n,
            1,
            "{}, {how}: {src} sent as protocol 3 {n} times:\n{}",
            p.name,
            tail(log, 60)
        );
    }
}

/// distcc 3.4's client's log, a process per compile: each source's got
/// its files from the include server over the socket (a non-empty answer),
/// sent them, and read a protocol-3 reply; none preprocessed here.
fn real_client_went_pump(p: &Project, how: &str, log: &str) {
    let mut by_pid: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for l in log.lines() {
        if let Some(pid) = l.strip_prefix("distcc[").and_then(|r| r.split(']').next()) {
            by_pid.entry(pid).or_default().push(l);
        }
    }
    for src in &p.sources {
        let start = format!("(dcc_scan_args) found input file \"{src}\"");
        let jobs: Vec<&Vec<&str>> = by_pid
            .values()
            .filter(|ls| ls.iter().any(|l| l.ends_with(&start)))
            .collect();
        assert_eq!(
            jobs.len(),
            1,
            "{}, {how}: {src} compiled by {} processes",
            p.name,
            jobs.len()
        );
        let ls = jobs[0];
        let has = |s: &str| ls.iter().any(|l| l.contains(s));
        let done = format!("compile {src} on 127.0.0.1:");
        let ok = has("started connecting to UNIX-DOMAIN")
            && !has("got ARGC00000000")
            && !has("preprocessing locally")
            && !has("failed to get includes")
            && has("send NFIL")
            && has("got DONE00000003")
            && ls
                .iter()
                .any(|l| l.contains(&done) && l.ends_with(",cpp,lzo completed ok"));
        assert!(
            ok,
            "{}, {how}: {src} did not go as protocol 3 with the include server's files:\n{}",
            p.name,
            ls.iter()
                .filter(|l| !l.contains("ARGV") && !l.contains("dcc_x_file") && !l.contains("string"))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Our distccd's log since `from`: one COMPILE_OK per source, each for the
/// source itself (protocol 2 would name the preprocessed `.i`).
fn our_daemon_served_pump(p: &Project, how: &str, d: &Daemon, from: usize) -> usize {
    let mut text = d.log_text()[from..].to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while text.matches("COMPILE_OK").count() < p.sources.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        text = d.log_text()[from..].to_owned();
    }
    let ok: Vec<&str> = text.lines().filter(|l| l.contains("COMPILE_OK")).collect();
    assert_eq!(
        ok.len(),
        p.sources.len(),
        "{}, {how}: {} jobs done on our distccd for {} sources:\n{}",
        p.name,
        ok.len(),
        p.sources.len(),
        tail(&text, 40)
    );
    // The job's protocol, where the line says it.
    if ok.iter().any(|l| l.contains("protocol:")) {
        let other: Vec<&&str> = ok.iter().filter(|l| !l.contains("protocol:3")).collect();
        assert!(
            other.is_empty(),
            "{}, {how}: jobs not protocol 3: {other:#?}",
            p.name
        );
    }
    for src in &p.sources {
        assert!(
            ok.iter().any(|l| l.contains(&format!(" {src}"))),
            "{}, {how}: no protocol-3 COMPILE_OK for {src}:\n{}",
            p.name,
            ok.join("\n")
        );
    }
    from + text.len()
}

/// Our distccd's stats page, `<distcc-rs>` section: `jobs` compiles from
/// this client, all fine, and as many protocol-3 jobs (`pump_jobs`) where
/// the page says so.
fn our_stats_count_pump(p: &Project, port: u16, jobs: usize) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    let ours = page
        .split("<distcc-rs>")
        .nth(1)
        .and_then(|r| r.split("</distcc-rs>").next())
        .unwrap_or_else(|| panic!("{}: no <distcc-rs> section on the stats page:\n{page}", p.name));
    let want = format!("client 127.0.0.1 ok {jobs} error 0 refused 0 failed 0");
    assert!(
        ours.lines().any(|l| l == want),
        "{}: want '{want}' in:\n{ours}",
        p.name
    );
    if let Some(l) = ours.lines().find(|l| l.starts_with("pump_jobs ")) {
        assert_eq!(l, format!("pump_jobs {jobs}"), "{}: {ours}", p.name);
    }
}

/// distccd 3.4's debug log, a job per connection: one COMPILE_OK per
/// source, each job with `DIST 3`, the files (`NFIL`) and a `DONE 3` reply.
fn real_daemon_served_pump(p: &Project, how: &str, d: &RealDaemon) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = d.log_text();
    while log.matches("COMPILE_OK").count() < p.sources.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        log = d.log_text();
    }
    let mut jobs: BTreeMap<(&str, usize), Vec<&str>> = BTreeMap::new();
    let mut counter: BTreeMap<&str, usize> = BTreeMap::new();
    for l in log.lines() {
        let Some(pid) = l.strip_prefix("distccd[").and_then(|r| r.split(']').next()) else {
            continue;
        };
        let n = counter.entry(pid).or_default();
        if l.contains("(dcc_check_client) connection from") {
            *n += 1;
        }
        jobs.entry((pid, *n)).or_default().push(l);
    }
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for ls in jobs.values() {
        let Some(ok) = ls.iter().find(|l| l.contains("COMPILE_OK")) else {
            continue;
        };
        let src = ok.rsplit(' ').next().unwrap().to_owned();
        let has = |s: &str| ls.iter().any(|l| l.contains(s));
        assert!(
            has("got DIST00000003") && has("got NFIL") && has("send DONE00000003"),
            "{}, {how}: distccd 3.4 compiled {src} but not as protocol 3:\n{}",
            p.name,
            ls.iter()
                .filter(|l| !l.contains("got ARGV") && !l.contains("dcc_r_"))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        *served.entry(src).or_default() += 1;
    }
    for src in &p.sources {
        assert_eq!(
            served.get(src.as_str()).copied().unwrap_or(0),
            1,
            "{}, {how}: distccd 3.4's protocol-3 jobs for {src}:\n{}",
            p.name,
            tail(&log, 40)
        );
    }
    assert_eq!(served.len(), p.sources.len(), "{}, {how}: {served:?}", p.name);
}

/// `name` with `.` and `..` taken out, as the compiler would open it.
fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn on_path(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// The files of `deps` (`gcc -M`'s, relative to `proj`) that the answer
/// lacks: neither among its `files` nor under one of its `systems` links.
fn uncovered<'a>(
    proj: &Path,
    files: &BTreeSet<PathBuf>,
    systems: &[PathBuf],
    deps: &[&'a str],
) -> Vec<&'a str> {
    deps.iter()
        .copied()
        .filter(|dep| {
            let abs = normal(&proj.join(dep));
            let real = fs::canonicalize(&abs).unwrap_or_else(|_| abs.clone());
            !files.contains(&abs) && !systems.iter().any(|s| abs.starts_with(s) || real.starts_with(s))
        })
        .collect()
}

/// The closure check: for each compile, the include server's answer holds
/// every file `gcc -M` lists, a system header inside a system-directory link.
fn closure_covers_every_dependency(dir: &TestDir, p: &Project, proj: &Path) {
    let sock_dir = dir.join("include-server");
    fs::create_dir_all(&sock_dir).unwrap();
    let socket = sock_dir.join("socket");
    let mut server = Command::new(PUMP);
    server
        .arg("--include-server")
        .arg(&socket)
        .env("TMPDIR", &sock_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    /// SIGTERM, so that the server removes its client root; SIGKILL if it lingers.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Kill(server.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline && server.0.try_wait().unwrap().is_none(),
            "the include server did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let compiler = on_path(p.compiler());
    let mut missing = Vec::new();
    for src in &p.sources {
        let argv = p.command(compiler.to_str().unwrap(), src);
        let shown = argv.join(" ");
        let paths = distcc::pump::server::ask(&socket, proj, &argv, Duration::from_secs(60))
            .unwrap_or_else(|why| panic!("{}: the include server gave up on `{shown}`: {why}", p.name));
        let (mut files, mut systems) = (BTreeSet::new(), Vec::new());
        for path in &paths {
            use std::os::unix::ffi::OsStrExt;
            let name = distcc::client::pump::original_name(path.as_os_str().as_bytes())
                .unwrap_or_else(|| panic!("the include server sent {}", path.display()));
            let name = PathBuf::from(String::from_utf8_lossy(name).into_owned());
            match fs::read_link(path) {
                Ok(target) => {
                    let t = target.to_string_lossy().into_owned();
                    let rel = name.to_string_lossy().trim_start_matches('/').to_owned();
                    if t.starts_with("../") && t.trim_start_matches("../") == rel {
                        systems.push(name);
                    }
                }
                Err(_) => {
                    files.insert(name);
                }
            }
        }
        assert!(
            files.contains(&proj.join(src)) && !systems.is_empty(),
            "{}: `{shown}`: the answer lacks the source or the system directories: {paths:?}",
            p.name
        );
        let mut m_argv: Vec<String> = p.flags.split_whitespace().map(String::from).collect();
        m_argv.extend(["-M".to_owned(), src.clone()]);
        let out = Command::new(&compiler)
            .args(&m_argv)
            .current_dir(proj)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: gcc -M for {src}: {}",
            p.name,
            text(&out.stderr)
        );
        let deps = text(&out.stdout).replace("\\\n", " ");
        let deps: Vec<&str> = deps.split_whitespace().skip(1).collect();
        let lacks = uncovered(proj, &files, &systems, &deps);
        // The check bites: without one of the project's headers the
        // answer is short, and said so.
        if let Some(header) = deps
            .iter()
            .map(|d| normal(&proj.join(d)))
            .find(|d| d.starts_with(proj) && files.contains(d) && !d.ends_with(src))
        {
            let mut fewer = files.clone();
            fewer.remove(&header);
            // (gcc -M may spell it twice: `compress/../common/x.h`, `common/x.h`.)
            let short = uncovered(proj, &fewer, &systems, &deps);
            assert!(
                !short.is_empty() && short.iter().all(|d| normal(&proj.join(d)) == header),
                "{}: {src}: without {} the check says {short:?}",
                p.name,
                header.display()
            );
        }
        for dep in lacks {
            missing.push(format!(
                "{}: `{shown}` (in {}): the closure lacks {dep}",
                p.name,
                proj.display()
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "{} dependencies gcc -M lists are not in the include server's answer:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// The whole check for one project.
fn build_three_ways(p: Project) {
    require_real_distcc();
    let started = Instant::now();
    let dir = TestDir::new(&format!("pump-{}", p.name));
    let proj = fs::canonicalize(dir.path()).unwrap().join("proj");
    copy_tree(&p.tree, &proj);
    fs::write(proj.join(MAKEFILE), p.makefile()).unwrap();
    let cc = p.compiler();
    eprintln!("{}: {} sources", p.name, p.sources.len());

    make(&dir, &proj, "local", cc, None);
    let local = take_outputs(&p, &proj, "local");

    closure_covers_every_dependency(&dir, &p, &proj);

    let stats_port = free_port().to_string();
    let ours = Daemon::serving(
        &dir,
        ALLOWED,
        &[
            "--listen",
            "127.0.0.1",
            "--jobs",
            "4",
            "--stats",
            "--stats-port",
            &stats_port,
        ],
    );
    let ours_hosts = format!("127.0.0.1:{}/4,cpp,lzo", ours.port);
    let our_client = format!("{DISTCC} {cc}");
    let real_client = format!("{REAL_DISTCC} {cc}");

    // a. Our client, our distccd.
    let how = "our client x our distccd";
    let log = make(&dir, &proj, "ours-ours", &our_client, Some(&ours_hosts));
    same_outputs(&dir, &p, how, &local, &take_outputs(&p, &proj, how), false);
    our_client_went_pump(&p, how, &log);
    let from = our_daemon_served_pump(&p, how, &ours, 0);

    // c. distcc 3.4's client under our pump, our distccd.
    let how = "distcc 3.4's client x our pump x our distccd";
    let log = make(&dir, &proj, "real-ours", &real_client, Some(&ours_hosts));
    same_outputs(&dir, &p, how, &local, &take_outputs(&p, &proj, how), false);
    real_client_went_pump(&p, how, &log);
    our_daemon_served_pump(&p, how, &ours, from);
    our_stats_count_pump(&p, stats_port.parse().unwrap(), 2 * p.sources.len());

    // b. Our client, distccd 3.4.
    let how = "our client x distccd 3.4";
    let real = RealDaemon::start_with(&dir, &["--listen", "127.0.0.1", "--log-level", "debug"]);
    let real_hosts = format!("127.0.0.1:{}/4,cpp,lzo", real.port);
    let log = make(&dir, &proj, "ours-real", &our_client, Some(&real_hosts));
    let with_g = p.flags.split_whitespace().any(|f| f == "-g");
    same_outputs(&dir, &p, how, &local, &take_outputs(&p, &proj, how), with_g);
    our_client_went_pump(&p, how, &log);
    real_daemon_served_pump(&p, how, &real);

    eprintln!("{}: all ways in {:.1}s", p.name, started.elapsed().as_secs_f64());
}

#[test]
fn lua_builds_in_pump_mode_as_locally() {
    build_three_ways(lua());
}

#[test]
fn zstd_builds_in_pump_mode_as_locally() {
    build_three_ways(zstd());
}

#[test]
fn libwebp_builds_in_pump_mode_as_locally() {
    build_three_ways(libwebp());
}

#[test]
fn meshoptimizer_builds_in_pump_mode_as_locally() {
    build_three_ways(meshopt());
}
