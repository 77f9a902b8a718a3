//! The Arch Linux package (`packaging/PKGBUILD`) with real makepkg and real
//! pacman (Debian's `makepkg` and `pacman-package-manager`): built from this
//! checkout, installed into a scratch root, its alpm hook run by pacman on
//! compiler installs, upgrades and removals, and makepkg's distcc
//! integration end to end (a C package built with `BUILDENV=(distcc …)`
//! through the installed client and our distccd). Also the hook's script on
//! a scratch root, and the man pages against `--help`.
//!
//! Nothing here changes the host: every file is in the test's directory, and
//! what must appear at fixed paths (makepkg looks for `/usr/lib/distcc/bin`;
//! pacman's hooks run chrooted in the scratch root) is bind-mounted in a
//! private mount namespace that ends with the command.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Compiler names the PKGBUILD links, besides `$CHOST-gcc` and `$CHOST-g++`.
const PACKAGED: &[&str] = &["cc", "c++", "c89", "c99", "cpp", "gcc", "g++", "clang", "clang++"];

const FAKE_COMPILER: &str = "#!/bin/sh\nexit 0\n";

fn require_tools() {
    for tool in [
        "makepkg", "pacman", "bsdtar", "fakeroot", "unshare", "mount", "git",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap()
            .status
            .success();
        assert!(
            found,
            "{tool} is missing: the package tests need makepkg, pacman-package-manager, \
             libarchive-tools, fakeroot and util-linux (scripts/setup installs them)"
        );
    }
}

fn stdout_of(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// The toolchain's own `bin` (cargo, rustc): on PATH first, so neither
/// rustup's proxies nor its home are needed inside makepkg.
fn toolchain_bin() -> PathBuf {
    PathBuf::from(stdout_of("rustc", &["--print", "sysroot"])).join("bin")
}

/// Runs `cmd` in a process group of its own with stdout and stderr to `log`;
/// kills the group after `timeout`. Returns the status and the log's text.
fn run_logged(mut cmd: Command, log: &Path, timeout: Duration) -> (std::process::ExitStatus, String) {
    let file = fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let pgid = nix::unistd::Pid::from_raw(-(child.id() as i32));
            let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!(
                "{cmd:?} timed out after {timeout:?}:\n{}",
                tail(&fs::read_to_string(log).unwrap_or_default(), 60)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, fs::read_to_string(log).unwrap_or_default())
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// `unshare --mount` with read-only bind mounts (source, mount point), then
/// `argv`. The mounts exist only in that namespace, for that command.
fn with_binds(binds: &[(PathBuf, PathBuf)], argv: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "set -e\n\
             while [ \"$1\" != -- ]; do mount -o bind,ro \"$1\" \"$2\"; shift 2; done\n\
             shift\n\
             exec \"$@\"",
        )
        .arg("sh");
    for (src, dst) in binds {
        cmd.arg(src).arg(dst);
    }
    cmd.arg("--").args(argv);
    cmd
}

/// Runs makepkg in `startdir` as an unprivileged user.
///
/// makepkg refuses to run as root. A throwaway account would have to read the
/// Rust toolchain under root's home (mode 0700), which would mean loosening
/// permissions on the host. Instead makepkg runs in a user namespace that maps
/// uid and gid 1000 to root (`unshare --user --map-user=1000`): makepkg sees
/// EUID 1000 and is content, while the kernel still checks file access as the
/// owner (root) and no capability is left, so the toolchain, the checkout and
/// the test directory are readable and writable as they are, nothing on the
/// host changes, and there is no account to clean up. `binds` are mounted
/// (read-only) before entering the user namespace.
fn makepkg(
    startdir: &Path,
    conf: &Path,
    path: &str,
    env: &[(&str, &Path)],
    binds: &[(PathBuf, PathBuf)],
    timeout: Duration,
) -> String {
    let home = startdir.join("home");
    fs::create_dir_all(&home).unwrap();
    let mut cmd = with_binds(
        binds,
        &[
            "unshare",
            "--user",
            "--map-user=1000",
            "--map-group=1000",
            "--",
            "makepkg",
            "--nodeps",
            "--noconfirm",
            "--noprogressbar",
        ],
    );
    cmd.current_dir(startdir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("LANG", "C")
        .env("MAKEPKG_CONF", conf);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, log) = run_logged(cmd, &startdir.join("makepkg.log"), timeout);
    assert!(
        status.success(),
        "makepkg in {} failed ({status}):\n{}",
        startdir.display(),
        tail(&log, 80)
    );
    log
}

/// A private makepkg.conf: makepkg reads no other (MAKEPKG_CONF, and HOME is
/// the test's).
fn makepkg_conf(dir: &Path, carch: &str, chost: &str, extra: &str) -> PathBuf {
    let p = dir.join("makepkg.conf");
    fs::write(
        &p,
        format!(
            r#"CARCH="{carch}"
CHOST="{chost}"
CFLAGS="-O2 -pipe"
CXXFLAGS="-O2 -pipe"
LDFLAGS=""
OPTIONS=(strip docs !libtool !staticlibs emptydirs zipman purge !debug !lto)
INTEGRITY_CHECK=(sha256)
STRIP_BINARIES="--strip-all"
STRIP_SHARED="--strip-unneeded"
STRIP_STATIC="--strip-debug"
MAN_DIRS=({{usr{{,/local}}{{,/share}},opt/*}}/{{man,info}})
DOC_DIRS=(usr/{{,local/}}{{,share/}}{{doc,gtk-doc}} opt/*/{{doc,gtk-doc}})
PURGE_TARGETS=(usr/{{,share}}/info/dir .packlist *.pod)
DBGSRCDIR="/usr/src/debug"
COMPRESSGZ=(gzip -c -f -n)
PKGEXT='.pkg.tar.gz'
SRCEXT='.src.tar.gz'
{extra}
"#
        ),
    )
    .unwrap();
    p
}

/// The checkout as the PKGBUILD's source tarball: what `git archive` makes
/// of a commit (tracked files under `distcc-rs-VERSION/`), but from the
/// working tree, so uncommitted edits and new files not yet ignored are
/// tested too (the README's step uses `git archive` on a commit).
fn source_tarball(dest: &Path) {
    let out = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(REPO)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git ls-files in {REPO}: {} (the package test needs a git checkout)",
        text(&out.stderr)
    );
    let mut list = Vec::new();
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        // A tracked file deleted in the working tree is not in the tarball.
        if Path::new(REPO).join(name).symlink_metadata().is_ok() {
            list.extend_from_slice(name.as_bytes());
            list.push(0);
        }
    }
    let list_file = dest.with_extension("files");
    fs::write(&list_file, &list).unwrap();
    let st = Command::new("tar")
        .arg("--create")
        .arg("--gzip")
        .arg("--file")
        .arg(dest)
        .arg(format!("--transform=s,^,distcc-rs-{VERSION}/,"))
        .arg("--null")
        .arg("--files-from")
        .arg(&list_file)
        .current_dir(REPO)
        .status()
        .unwrap();
    assert!(st.success(), "tar of the checkout failed");
    fs::remove_file(list_file).unwrap();
}

/// A scratch pacman root with its own database, cache, log, keyring and
/// configuration. pacman runs hooks chrooted into the root, so `/bin`,
/// `/lib` and `/lib64` of the host are bind-mounted there read-only for each
/// pacman command (a shell and coreutils for the hook's script); `usr/` is
/// the package's alone.
struct Scratch {
    root: PathBuf,
    conf: PathBuf,
    gpg: PathBuf,
    binds: Vec<(PathBuf, PathBuf)>,
}

impl Scratch {
    fn new(t: &TestDir) -> Scratch {
        let root = t.join("root");
        for d in [
            "var/lib/pacman",
            "var/cache/pacman/pkg",
            "var/log",
            "etc/pacman.d/hooks",
            "usr/bin",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let mut binds = Vec::new();
        for d in ["bin", "lib", "lib64"] {
            let host = Path::new("/").join(d);
            if host.is_dir() {
                fs::create_dir_all(root.join(d)).unwrap();
                binds.push((host, root.join(d)));
            }
        }
        let gpg = t.join("gnupg");
        fs::create_dir_all(&gpg).unwrap();
        let conf = t.join("pacman.conf");
        fs::write(
            &conf,
            format!(
                "[options]\nArchitecture = auto\nSigLevel = Never\nLocalFileSigLevel = Never\n\
                 HookDir = {}/etc/pacman.d/hooks/\n",
                root.display()
            ),
        )
        .unwrap();
        Scratch {
            root,
            conf,
            gpg,
            binds,
        }
    }

    fn pacman(&self, args: &[&str]) -> Output {
        let r = self.root.to_str().unwrap();
        let dbpath = format!("{r}/var/lib/pacman");
        let cache = format!("{r}/var/cache/pacman/pkg");
        let logfile = format!("{r}/var/log/pacman.log");
        let mut argv = vec![
            "pacman",
            "--root",
            r,
            "--dbpath",
            &dbpath,
            "--config",
            self.conf.to_str().unwrap(),
            "--cachedir",
            &cache,
            "--logfile",
            &logfile,
            "--gpgdir",
            self.gpg.to_str().unwrap(),
            "--noconfirm",
        ];
        if matches!(args.first(), Some(&"-U") | Some(&"-R")) {
            argv.push("--noprogressbar");
        }
        argv.extend_from_slice(args);
        with_binds(&self.binds, &argv)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LANG", "C")
            .output()
            .unwrap()
    }

    fn pacman_ok(&self, args: &[&str]) -> String {
        let out = self.pacman(args);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "pacman {args:?} failed:\n{all}");
        assert!(
            !all.contains("error:") && !all.contains("failed"),
            "pacman {args:?} reported an error:\n{all}"
        );
        all
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn fake_compiler(&self, name: &str) {
        let p = self.path("usr/bin").join(name);
        fs::write(&p, FAKE_COMPILER).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `pacman -Qi` fields: "Name            : value" lines, continuation
    /// lines (indented) appended.
    fn info(&self, pkg: &str) -> Vec<(String, String)> {
        let out = self.pacman_ok(&["-Qi", pkg]);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in out.lines() {
            if line.starts_with(' ') {
                if let Some(last) = fields.last_mut() {
                    last.1.push('\n');
                    last.1.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(" : ") {
                fields.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        fields
    }
}

/// Where the link `dir/name` points, if it is a link.
fn link_target(p: &Path) -> Option<String> {
    fs::read_link(p).ok().map(|t| t.to_string_lossy().into_owned())
}

/// Both link directories have `name` pointing at the client, resolving to
/// the installed `usr/bin/distcc`.
fn assert_linked(s: &Scratch, name: &str) {
    let client = fs::canonicalize(s.path("usr/bin/distcc")).unwrap();
    for (dir, target) in [
        ("usr/lib/distcc", "../../bin/distcc"),
        ("usr/lib/distcc/bin", "../../../bin/distcc"),
    ] {
        let p = s.path(dir).join(name);
        assert_eq!(link_target(&p).as_deref(), Some(target), "{}", p.display());
        assert_eq!(
            fs::canonicalize(&p).ok().as_ref(),
            Some(&client),
            "{}",
            p.display()
        );
    }
}

fn assert_not_linked(s: &Scratch, name: &str) {
    for dir in ["usr/lib/distcc", "usr/lib/distcc/bin"] {
        let p = s.path(dir).join(name);
        assert!(p.symlink_metadata().is_err(), "{} should not exist", p.display());
    }
}

#[test]
fn arch_package_builds_installs_and_distributes() {
    require_tools();
    // makepkg's fixed paths are bind-mounted over the host's own
    // /usr/lib/distcc and /usr/bin/distcc (Debian's distcc), in a namespace.
    require_real_distcc();
    assert!(
        Path::new("/usr/lib/distcc").is_dir(),
        "/usr/lib/distcc is missing (Debian's distcc package makes it)"
    );
    let t = TestDir::new("pkg");
    let carch = stdout_of("uname", &["-m"]);
    let chost = stdout_of("gcc", &["-dumpmachine"]);
    let started = Instant::now();

    let pkg = build_package(&t, &carch, &chost);
    let built = started.elapsed();

    let s = Scratch::new(&t);
    install_and_inspect(&s, &pkg, &chost);
    makepkg_with_distcc(&t, &s, &carch, &chost);
    makepkg_with_reapi(&t, &s, &carch, &chost);
    hook_follows_compiler_packages(&t, &s, &carch, &chost);
    remove_package(&s);
    eprintln!(
        "package test: makepkg of distcc-rs {built:?}, everything {:?}",
        started.elapsed()
    );
}

/// a. makepkg builds the package from the checkout: cargo fetch --locked in
/// prepare(), a frozen release build, the unit tests in check().
fn build_package(t: &TestDir, carch: &str, chost: &str) -> PathBuf {
    let build = t.join("build");
    fs::create_dir_all(&build).unwrap();
    let pkgbuild = fs::read_to_string(Path::new(REPO).join("packaging/PKGBUILD")).unwrap();
    assert!(
        pkgbuild.lines().any(|l| l == format!("pkgver={VERSION}")),
        "packaging/PKGBUILD's pkgver must be Cargo.toml's version {VERSION}"
    );
    fs::write(build.join("PKGBUILD"), &pkgbuild).unwrap();
    source_tarball(&build.join(format!("distcc-rs-{VERSION}.tar.gz")));
    let conf = makepkg_conf(
        &build,
        carch,
        chost,
        "BUILDENV=(!distcc color !ccache check !sign)",
    );
    // A private CARGO_HOME (crates fetched from the registry by prepare())
    // and the PKGBUILD's own target dir under src/: nothing is shared with
    // the cargo running this test, so neither waits for the other's locks.
    let cargo_home = t.join("cargo-home");
    fs::create_dir_all(&cargo_home).unwrap();
    let path = format!("{}:/usr/bin:/bin", toolchain_bin().display());
    let log = makepkg(
        &build,
        &conf,
        &path,
        &[("CARGO_HOME", &cargo_home)],
        &[],
        Duration::from_secs(900),
    );
    for step in [
        "Starting prepare()",
        "Starting build()",
        "Starting check()",
        "Starting package()",
    ] {
        assert!(
            log.contains(step),
            "makepkg did not run {step}:\n{}",
            tail(&log, 40)
        );
    }
    assert!(
        log.contains("test result: ok."),
        "check() ran no unit tests:\n{}",
        tail(&log, 40)
    );
    let pkg = build.join(format!("distcc-rs-{VERSION}-1-{carch}.pkg.tar.gz"));
    assert!(pkg.is_file(), "no {}:\n{}", pkg.display(), tail(&log, 20));
    pkg
}

/// b. pacman installs it into the scratch root; its files, links, backup
/// entries and metadata are what the PKGBUILD promises, and the hook ran.
fn install_and_inspect(s: &Scratch, pkg: &Path, chost: &str) {
    // Compilers already on the "system" before distcc-rs arrives, and a
    // gcc tool that is not a compiler.
    let versioned = [
        "gcc-13".to_owned(),
        format!("{chost}-gcc-13.2.1"),
        "clang-17".to_owned(),
    ];
    for c in &versioned {
        s.fake_compiler(c);
    }
    s.fake_compiler("gcc-ar");
    s.fake_compiler("clang-format-17");

    let out = s.pacman_ok(&["-U", "-dd", pkg.to_str().unwrap()]);
    assert!(out.contains("installing distcc-rs"), "{out}");
    assert!(
        out.contains("Updating distcc compiler links"),
        "the hook did not run:\n{out}"
    );

    // pacman -Qi, in real pacman's format.
    let info = s.info("distcc-rs");
    let field = |k: &str| {
        info.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in pacman -Qi: {info:?}"))
    };
    assert_eq!(field("Name"), "distcc-rs");
    assert_eq!(field("Version"), format!("{VERSION}-1"));
    assert_eq!(field("Provides"), "distcc");
    assert_eq!(field("Conflicts With"), "distcc");
    assert_eq!(field("Licenses"), "GPL-2.0-or-later");

    // pacman -Ql: exactly these files (directories aside).
    let prefix = format!("distcc-rs {}/", s.root.display());
    let listed: BTreeSet<String> = s
        .pacman_ok(&["-Ql", "distcc-rs"])
        .lines()
        .map(|l| {
            l.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("pacman -Ql line {l:?}"))
                .to_owned()
        })
        .filter(|p| !p.ends_with('/'))
        .collect();
    let mut names: Vec<String> = PACKAGED.iter().map(|s| s.to_string()).collect();
    names.push(format!("{chost}-gcc"));
    names.push(format!("{chost}-g++"));
    let mut want: BTreeSet<String> = [
        "usr/bin/distcc",
        "usr/bin/distccd",
        "usr/bin/distccmon-text",
        "usr/bin/pump",
        "usr/bin/distcc-chroot",
        "usr/lib/systemd/system/distccd.service",
        "usr/lib/systemd/system/distccd.socket",
        "usr/lib/systemd/system/distccd-stats.socket",
        "usr/lib/systemd/system/distccd@.service",
        "usr/lib/systemd/system/distccd@.socket",
        "etc/conf.d/distccd",
        "etc/conf.d/distccd@3692",
        "etc/distcc/hosts",
        "usr/lib/tmpfiles.d/distccd.conf",
        "usr/share/user-tmpfiles.d/distcc.conf",
        "usr/share/man/man1/distcc.1.gz",
        "usr/share/man/man1/distccd.1.gz",
        "usr/share/man/man1/distccmon-text.1.gz",
        "usr/share/man/man1/pump.1.gz",
        "usr/share/licenses/distcc-rs/LICENSE",
        "usr/share/libalpm/hooks/distcc-links.hook",
        "usr/share/libalpm/hooks/distcc-links-remove.hook",
        "usr/share/libalpm/scripts/distcc-update-links",
        "usr/share/distcc-rs/packaged-links",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in &names {
        want.insert(format!("usr/lib/distcc/{n}"));
        want.insert(format!("usr/lib/distcc/bin/{n}"));
    }
    assert_eq!(
        listed.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "files the package should not have"
    );
    assert_eq!(
        want.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "files the package lacks"
    );

    // The packaged links, and the hook's links for the versioned compilers.
    for n in names.iter().chain(versioned.iter()) {
        assert_linked(s, n);
    }
    assert_not_linked(s, "gcc-ar");
    assert_not_linked(s, "clang-format-17");

    // Configuration files are backup entries, untouched so far.
    let qii = s.pacman_ok(&["-Qii", "distcc-rs"]);
    for f in [
        "etc/conf.d/distccd",
        "etc/distcc/hosts",
        "etc/conf.d/distccd@3692",
    ] {
        let line = format!("UNMODIFIED\t{}", s.path(f).display());
        assert!(
            qii.lines().any(|l| l == line),
            "no backup line {line:?} in:\n{qii}"
        );
    }

    // The installed programs run.
    for (bin, want) in [
        ("distccd", format!("distccd {VERSION}")),
        ("distcc", format!("distcc {VERSION}")),
        ("distccmon-text", format!("distccmon-text {VERSION}")),
    ] {
        let v = stdout_of(s.path("usr/bin").join(bin).to_str().unwrap(), &["--version"]);
        assert!(v.starts_with(&want), "{bin} --version: {v}");
    }
    let hosts = fs::read_to_string(s.path("etc/distcc/hosts")).unwrap();
    assert!(
        hosts.lines().all(|l| l.trim().is_empty() || l.starts_with('#')),
        "/etc/distcc/hosts must name no host by default:\n{hosts}"
    );
}

const TEST_H: &str = "int pkgtest_alpha(void);\nint pkgtest_beta(void);\nint pkgtest_gamma(void);\n";
const TEST_MAKEFILE: &str = "\
OBJS = pkgtest_alpha.o pkgtest_beta.o pkgtest_gamma.o pkgtest_main.o

pkgtest: $(OBJS)
\t$(CC) $(LDFLAGS) -o $@ $(OBJS)

%.o: %.c pkgtest.h
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

check: pkgtest
\ttest \"$$(./pkgtest)\" = \"alpha beta gamma 42\"
";

/// c. makepkg builds a C package with BUILDENV=(distcc …), DISTCC_HOSTS and
/// MAKEFLAGS from makepkg.conf, as the Arch wiki describes; every compile
/// goes through the installed client to our distccd.
///
/// makepkg's only contract with distcc is fixed paths: it puts
/// `/usr/lib/distcc/bin` first on PATH if that directory exists, and wants a
/// `distcc` on PATH. Debian's distcc has no `bin/`, and its /usr/bin/distcc is
/// the 3.4 client other tests rely on, so for this one makepkg the scratch
/// root's `usr/lib/distcc` (the package's links) and `usr/bin/distcc` (the
/// package's client) are bind-mounted over those paths in a private mount
/// namespace: makepkg finds the package's real layout through its own code,
/// while the host, and every other process, sees nothing. (Only putting a
/// private link directory first on PATH would pass even with a package that
/// lacks /usr/lib/distcc/bin, where every compile silently stays local.)
fn makepkg_with_distcc(t: &TestDir, s: &Scratch, carch: &str, chost: &str) {
    let daemon = Daemon::start(
        t,
        &[
            "--allow",
            "127.0.0.1",
            "--compiler-dir",
            s.path("usr/lib/distcc").to_str().unwrap(),
        ],
    );
    let hosts = format!("127.0.0.1:{}/4", daemon.port);
    let (sources, log) = makepkg_c_package(&t.join("cpkg"), s, carch, chost, &hosts);
    let dlog = daemon.wait_log("COMPILE_OK", sources.len());
    for n in sources {
        // Our client's verbose line (distcc 3.4's says nothing like it) ...
        let sent = format!("compiling {n}.c on 127.0.0.1:{}", daemon.port);
        assert!(log.contains(&sent), "no '{sent}' in makepkg's output:\n{log}");
        // ... and the daemon compiled it.
        assert!(
            dlog.lines()
                .any(|l| l.contains("COMPILE_OK") && l.ends_with(&format!(" {n}.c"))),
            "distccd did not compile {n}.c:\n{dlog}\nmakepkg:\n{}",
            tail(&log, 40)
        );
    }
    assert!(
        !dlog.contains("REFUSED") && !log.contains("running locally"),
        "daemon:\n{dlog}\nmakepkg:\n{log}"
    );
}

/// d. The same package with a REAPI cluster in DISTCC_HOSTS (BuildGrid,
/// with the test worker of tests/reapi): makepkg and the masquerade links
/// unchanged, every compile executed on the cluster.
fn makepkg_with_reapi(t: &TestDir, s: &Scratch, carch: &str, chost: &str) {
    let cluster = Cluster::start(t);
    let hosts = format!("reapi://{}/4", cluster.addr());
    let (sources, log) = makepkg_c_package(&t.join("cpkg-reapi"), s, carch, chost, &hosts);
    for n in sources {
        let sent = format!("compiling {n}.c on reapi://{}/4", cluster.addr());
        assert!(log.contains(&sent), "no '{sent}' in makepkg's output:\n{log}");
    }
    assert_eq!(
        cluster.executed(),
        sources.len(),
        "every compile ran on the cluster's worker:\n{log}"
    );
    assert!(!log.contains("running locally"), "{log}");
}

/// makepkg builds the small C package in `dir` with BUILDENV=(distcc),
/// `hosts` and MAKEFLAGS from makepkg.conf, the scratch root's client and
/// links bound over makepkg's fixed paths; with no fallback (a compile
/// that cannot be distributed fails the build instead of quietly running
/// here) and verbose (the client says where each compile went). The
/// package is made and checked; its sources' names and makepkg's output.
fn makepkg_c_package(
    dir: &Path,
    s: &Scratch,
    carch: &str,
    chost: &str,
    hosts: &str,
) -> ([&'static str; 4], String) {
    let sources = c_package(dir, carch);
    let conf = makepkg_conf(
        dir,
        carch,
        chost,
        &format!("BUILDENV=(distcc color !ccache check !sign)\nDISTCC_HOSTS=\"{hosts}\"\nMAKEFLAGS=\"-j4\""),
    );
    let binds = [
        (s.path("usr/lib/distcc"), PathBuf::from("/usr/lib/distcc")),
        (s.path("usr/bin/distcc"), PathBuf::from("/usr/bin/distcc")),
    ];
    let fallback = PathBuf::from("0");
    let verbose = PathBuf::from("1");
    let log = makepkg(
        dir,
        &conf,
        "/usr/bin:/bin",
        &[("DISTCC_FALLBACK", &fallback), ("DISTCC_VERBOSE", &verbose)],
        &binds,
        Duration::from_secs(300),
    );
    assert!(
        dir.join(format!("distcc-rs-pkgtest-1.0-1-{carch}.pkg.tar.gz"))
            .is_file(),
        "{}",
        tail(&log, 40)
    );
    assert!(log.contains("Starting check()"), "{}", tail(&log, 40));
    (sources, log)
}

/// The small C package makepkg builds with distcc: its sources' names.
fn c_package(dir: &Path, carch: &str) -> [&'static str; 4] {
    fs::create_dir_all(dir).unwrap();
    let sources = ["pkgtest_alpha", "pkgtest_beta", "pkgtest_gamma", "pkgtest_main"];
    fs::write(dir.join("pkgtest.h"), TEST_H).unwrap();
    fs::write(dir.join("Makefile"), TEST_MAKEFILE).unwrap();
    for (name, body) in [
        ("pkgtest_alpha", "int pkgtest_alpha(void) { return 10; }\n"),
        ("pkgtest_beta", "int pkgtest_beta(void) { return 14; }\n"),
        ("pkgtest_gamma", "int pkgtest_gamma(void) { return 18; }\n"),
        (
            "pkgtest_main",
            "#include <stdio.h>\n#include \"pkgtest.h\"\nint main(void) {\n    \
             printf(\"alpha beta gamma %d\\n\", pkgtest_alpha() + pkgtest_beta() + pkgtest_gamma());\n    \
             return 0;\n}\n",
        ),
    ] {
        fs::write(dir.join(format!("{name}.c")), body).unwrap();
    }
    let files: Vec<String> = ["Makefile".to_owned(), "pkgtest.h".to_owned()]
        .into_iter()
        .chain(sources.iter().map(|n| format!("{n}.c")))
        .collect();
    fs::write(
        dir.join("PKGBUILD"),
        format!(
            "pkgname=distcc-rs-pkgtest\npkgver=1.0\npkgrel=1\npkgdesc='makepkg with distcc'\n\
             arch=({carch})\nlicense=(GPL-2.0-or-later)\nsource=({})\nsha256sums=({})\n\
             build() {{\n  make\n}}\n\
             check() {{\n  make check\n}}\n\
             package() {{\n  install -Dm755 pkgtest \"$pkgdir/usr/bin/pkgtest\"\n}}\n",
            files.join(" "),
            vec!["SKIP"; files.len()].join(" ")
        ),
    )
    .unwrap();
    sources
}

/// The hook in action: a compiler package installed, upgraded to a new
/// versioned name (the FS#69044 case) and removed; the links follow.
fn hook_follows_compiler_packages(t: &TestDir, s: &Scratch, carch: &str, chost: &str) {
    let dir = t.join("fake-gcc");
    fs::create_dir_all(&dir).unwrap();
    let conf = makepkg_conf(
        &dir,
        carch,
        chost,
        "BUILDENV=(!distcc color !ccache !check !sign)",
    );
    let build = |ver: &str| -> PathBuf {
        fs::write(
            dir.join("PKGBUILD"),
            format!(
                "pkgname=distcc-rs-fake-gcc\npkgver={ver}\npkgrel=1\narch=(any)\nlicense=(GPL-2.0-or-later)\n\
                 package() {{\n  install -d \"$pkgdir/usr/bin\"\n  \
                 printf '#!/bin/sh\\nexit 0\\n' >\"$pkgdir/usr/bin/$CHOST-gcc-$pkgver\"\n  \
                 chmod 755 \"$pkgdir/usr/bin/$CHOST-gcc-$pkgver\"\n}}\n"
            ),
        )
        .unwrap();
        makepkg(&dir, &conf, "/usr/bin:/bin", &[], &[], Duration::from_secs(120));
        dir.join(format!("distcc-rs-fake-gcc-{ver}-1-any.pkg.tar.gz"))
    };
    let old = format!("{chost}-gcc-98.1.0");
    let new = format!("{chost}-gcc-98.2.0");

    let v1 = build("98.1.0");
    let out = s.pacman_ok(&["-U", v1.to_str().unwrap()]);
    assert!(out.contains(&format!("added /usr/lib/distcc/{old}")), "{out}");
    assert_linked(s, &old);

    let v2 = build("98.2.0");
    let out = s.pacman_ok(&["-U", v2.to_str().unwrap()]);
    assert!(out.contains("upgrading distcc-rs-fake-gcc"), "{out}");
    assert_linked(s, &new);
    assert_not_linked(s, &old);

    let out = s.pacman_ok(&["-R", "distcc-rs-fake-gcc"]);
    assert!(out.contains(&format!("removed /usr/lib/distcc/{new}")), "{out}");
    assert_not_linked(s, &new);
    // The packaged links stay, compiler or not.
    assert_linked(s, "clang++");
}

/// Removal: the pre-transaction hook takes the links it made, pacman the
/// package's; an edited backup file is kept as .pacsave.
fn remove_package(s: &Scratch) {
    let hosts = s.path("etc/distcc/hosts");
    fs::write(&hosts, "build1/8,lzo\n").unwrap();
    let qii = s.pacman_ok(&["-Qii", "distcc-rs"]);
    let line = format!("MODIFIED\t{}", hosts.display());
    assert!(qii.lines().any(|l| l == line), "no {line:?} in:\n{qii}");

    let out = s.pacman_ok(&["-R", "distcc-rs"]);
    assert!(out.contains("Removing distcc compiler links"), "{out}");
    assert!(
        !s.path("usr/lib/distcc").exists(),
        "/usr/lib/distcc left behind: {:?}",
        fs::read_dir(s.path("usr/lib/distcc"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    assert!(!s.path("usr/bin/distcc").exists());
    assert_eq!(
        fs::read_to_string(s.path("etc/distcc/hosts.pacsave")).unwrap(),
        "build1/8,lzo\n"
    );
    // The compilers themselves are not distcc's business.
    assert!(s.path("usr/bin/gcc-13").is_file());
}

/// d. The hook's script on a scratch root, run directly with `--root`.
#[test]
fn update_links_script_on_a_scratch_root() {
    let t = TestDir::new("links");
    let root = t.join("root");
    let bin = root.join("usr/bin");
    let allow = root.join("usr/lib/distcc");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&allow).unwrap();
    let fake = |name: &str| {
        let p = bin.join(name);
        fs::write(&p, FAKE_COMPILER).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    };
    let compilers = [
        "gcc",
        "gcc-12",
        "g++-12",
        "x86_64-pc-linux-gnu-gcc",
        "x86_64-pc-linux-gnu-gcc-12.2.0",
        "x86_64-pc-linux-gnu-g++-12.2.0",
        "clang",
        "clang-17",
        "clang++-17",
        "cc",
        "c++",
        "avr-gcc",
    ];
    for c in compilers {
        fake(c);
    }
    let not_compilers = [
        "gcc-ar",
        "gcc-ar-12",
        "x86_64-pc-linux-gnu-gcc-ar",
        "clang-format-17",
        // A suffix that is not a version: not gcc-9.
        "gcc-9a",
        "x86_64-w64-mingw32-gcc-10-posix",
        "ls",
        "distcc",
    ];
    for c in not_compilers {
        fake(c);
    }
    // Not executable: not a compiler.
    fs::write(bin.join("gcc-11"), FAKE_COMPILER).unwrap();
    // What the script must leave alone: a file, a link elsewhere, a link to
    // distcc with a name that is no compiler.
    fs::write(allow.join("README"), "not ours\n").unwrap();
    std::os::unix::fs::symlink("/opt/cross/bin/arm-gcc", allow.join("gcc-10")).unwrap();
    std::os::unix::fs::symlink("../../bin/distcc", allow.join("my-wrapper")).unwrap();

    let script = Path::new(REPO).join("packaging/distcc-update-links");
    let run = |extra: &[&str]| -> String {
        let out = Command::new("sh")
            .arg(&script)
            .arg("--root")
            .arg(&root)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "distcc-update-links: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let entries = |dir: &Path| -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let links_to = |dir: &Path, target: &str| -> BTreeSet<String> {
        entries(dir)
            .into_iter()
            .filter(|n| link_target(&dir.join(n)).as_deref() == Some(target))
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };

    let out = run(&[]);
    assert!(out.contains("added /usr/lib/distcc/gcc-12"), "{out}");
    let mut want = set(&compilers);
    assert_eq!(links_to(&allow, "../../bin/distcc"), {
        let mut w = want.clone();
        w.insert("my-wrapper".into());
        w
    });
    assert_eq!(links_to(&allow.join("bin"), "../../../bin/distcc"), want);
    let untouched = |allow: &Path| {
        assert_eq!(fs::read_to_string(allow.join("README")).unwrap(), "not ours\n");
        assert_eq!(
            link_target(&allow.join("gcc-10")).as_deref(),
            Some("/opt/cross/bin/arm-gcc")
        );
        assert_eq!(
            link_target(&allow.join("my-wrapper")).as_deref(),
            Some("../../bin/distcc")
        );
    };
    untouched(&allow);

    // Idempotent.
    assert_eq!(run(&[]), "");

    // A compiler goes (a gcc upgrade renames the versioned one): its links go,
    // the new one's come.
    fs::remove_file(bin.join("x86_64-pc-linux-gnu-gcc-12.2.0")).unwrap();
    fake("x86_64-pc-linux-gnu-gcc-13.1.0");
    fs::remove_file(bin.join("clang-17")).unwrap();
    let out = run(&[]);
    assert!(out.contains("removed /usr/lib/distcc/bin/clang-17"), "{out}");
    want.remove("x86_64-pc-linux-gnu-gcc-12.2.0");
    want.remove("clang-17");
    want.insert("x86_64-pc-linux-gnu-gcc-13.1.0".into());
    assert_eq!(links_to(&allow.join("bin"), "../../../bin/distcc"), want);
    assert_eq!(links_to(&allow, "../../bin/distcc"), {
        let mut w = want.clone();
        w.insert("my-wrapper".into());
        w
    });
    untouched(&allow);

    // The names the package installs are pacman's: kept without a compiler.
    fs::create_dir_all(root.join("usr/share/distcc-rs")).unwrap();
    fs::write(root.join("usr/share/distcc-rs/packaged-links"), "cc\nclang\n").unwrap();
    fs::remove_file(bin.join("clang")).unwrap();
    fs::remove_file(bin.join("cc")).unwrap();
    fs::remove_file(bin.join("avr-gcc")).unwrap();
    run(&[]);
    assert_eq!(
        link_target(&allow.join("clang")).as_deref(),
        Some("../../bin/distcc")
    );
    assert_eq!(
        link_target(&allow.join("bin/cc")).as_deref(),
        Some("../../../bin/distcc")
    );
    assert!(allow.join("avr-gcc").symlink_metadata().is_err());

    // --remove (before the package goes): every link the script made, and
    // only those.
    run(&["--remove"]);
    assert_eq!(
        links_to(&allow.join("bin"), "../../../bin/distcc"),
        set(&["cc", "clang"])
    );
    assert_eq!(
        links_to(&allow, "../../bin/distcc"),
        set(&["cc", "clang", "my-wrapper"])
    );
    untouched(&allow);
    // The compilers are never touched.
    for c in ["gcc", "gcc-12", "x86_64-pc-linux-gnu-gcc-13.1.0", "gcc-ar"] {
        assert_eq!(fs::read_to_string(bin.join(c)).unwrap(), FAKE_COMPILER);
    }
}

/// Long options (`--name`) in the option column of a `--help` text: lines
/// that start with '-', up to the first gap of two spaces.
fn help_options(help: &str) -> BTreeSet<String> {
    let mut opts = BTreeSet::new();
    for line in help.lines().map(str::trim_start) {
        if !line.starts_with('-') {
            continue;
        }
        let spec = line.split("  ").next().unwrap();
        opts.extend(long_options(spec));
    }
    opts
}

fn long_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("--") {
        let name: String = rest[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(format!("--{name}"));
        }
        rest = &rest[i + 2 + name.len()..];
    }
    out
}

/// A man page's section `name` (from `.SH name` to the next `.SH`), with
/// roff's `\-` as `-`.
fn man_section(page: &str, name: &str) -> String {
    let page = page.replace("\\-", "-");
    let start = page
        .find(&format!("\n.SH {name}\n"))
        .unwrap_or_else(|| panic!("no .SH {name}"));
    let body = &page[start + 5 + name.len()..];
    body[..body.find("\n.SH ").unwrap_or(body.len())].to_owned()
}

/// Long options named in the option headers (the line after `.TP`) of `section`.
fn man_options(section: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = section.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP" || w[0] == ".TQ")
        .flat_map(|w| long_options(w[1]))
        .collect()
}

fn man_page(name: &str) -> String {
    fs::read_to_string(Path::new(REPO).join("packaging/man").join(name)).unwrap()
}

#[test]
fn man_pages_match_the_help() {
    // distccd: every option --help lists has an entry in OPTIONS, and every
    // entry is an option --help lists.
    let help = stdout_of(DISTCCD, &["--help"]);
    let from_help = help_options(&help);
    assert!(
        from_help.len() > 20 && from_help.contains("--allow"),
        "{from_help:?}"
    );
    let page = man_page("distccd.1");
    let from_man = man_options(&man_section(&page, "OPTIONS"));
    assert_eq!(
        from_help.difference(&from_man).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in distccd --help, not in distccd.1"
    );
    assert_eq!(
        from_man.difference(&from_help).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in distccd.1, not in distccd --help"
    );

    // distcc: its options, and every environment variable --help names.
    let help = stdout_of(DISTCC, &["--help"]);
    let page = man_page("distcc.1");
    let options = man_options(&man_section(&page, "OPTIONS"));
    for opt in ["--help", "--version", "--show-hosts", "--hosts-for-port"] {
        assert!(help.contains(opt), "distcc --help lost {opt}");
        assert!(options.contains(opt), "distcc.1 OPTIONS lacks {opt}");
    }
    // Each kind of host --help lists, in HOST SPECIFICATIONS.
    let specs = man_section(&page, "HOST SPECIFICATIONS");
    let host_help = &help[help
        .find("Host specifications:")
        .expect("distcc --help lists host specifications")..];
    for (in_help, in_man) in [
        ("localhost[/LIMIT]", ".BR localhost ["),
        ("HOSTSPEC,cpp,lzo", ".IR HOSTSPEC ,cpp,lzo"),
        ("[USER]@HOST", ".RI [ USER ] @HOST"),
        ("reapi://HOST:PORT", ".BR reapi:// "),
        ("+zeroconf", ".B +zeroconf"),
    ] {
        assert!(host_help.contains(in_help), "distcc --help lost {in_help}");
        assert!(
            specs.lines().any(|l| l.starts_with(in_man)),
            "distcc.1 HOST SPECIFICATIONS lacks {in_help}"
        );
    }
    let env = man_section(&page, "ENVIRONMENT");
    let vars: BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("DISTCC_"))
        .collect();
    assert!(vars.len() >= 10, "{vars:?}");
    for v in vars {
        assert!(
            env.lines().any(|l| l == format!(".B {v}")),
            "distcc.1 ENVIRONMENT does not describe {v}"
        );
    }

    // distccmon-text: [DELAY], --help, --version.
    let page = man_page("distccmon-text.1");
    assert!(man_section(&page, "SYNOPSIS").contains("DELAY"));
    assert_eq!(
        man_options(&man_section(&page, "OPTIONS")),
        ["--help", "--version"].iter().map(|s| s.to_string()).collect()
    );
    // pump: --help, --startup, --shutdown, and every variable --help names.
    let help = stdout_of(env!("CARGO_BIN_EXE_pump"), &["--help"]);
    let page = man_page("pump.1");
    assert_eq!(
        man_options(&man_section(&page, "OPTIONS")),
        ["--help", "--startup", "--shutdown"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let env = man_section(&page, "ENVIRONMENT");
    let vars: BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("DISTCC_") || w.starts_with("INCLUDE_SERVER_"))
        .collect();
    assert!(vars.len() >= 5, "{vars:?}");
    for v in vars {
        assert!(
            env.lines().any(|l| l == format!(".B {v}")),
            "pump.1 ENVIRONMENT does not describe {v}"
        );
    }
    for name in ["distcc.1", "distccd.1", "distccmon-text.1", "pump.1"] {
        let page = man_page(name);
        assert!(
            page.contains(&format!("\"distcc-rs {VERSION}\"")),
            "{name}: version"
        );
    }
}
