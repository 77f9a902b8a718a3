//! Real systemd as PID 1 of throwaway namespaces, for tests of our units.
//!
//! `SystemdBox::boot` starts `/usr/lib/systemd/systemd` in fresh mount, PID,
//! network, UTS, IPC and cgroup namespaces, on an overlay whose lower layer is
//! the host's `/` and whose upper layer is a tmpfs: the box sees the host's
//! files (and binaries under /work) but everything it writes stays in memory
//! and vanishes with it. It follows the project notes in shared/reference/systemd-in-tests.md.
//!
//! Layout of one box (`ID` = `distcc-sysbox-<test pid>-<n>-<name>`):
//!
//! - `$TMPDIR/ID/` on the host: the launch scripts, `seed/` (files copied over
//!   the overlay before boot: hostname, machine-id, an empty fstab and the
//!   masks in `/run/systemd`), `log` (the scripts' stderr), `pid` (the host PID
//!   of the box's PID 1) and `root/`, on which the tmpfs is mounted *inside*
//!   the box's mount namespace only. Removed when the box stops.
//! - `<cgroup2>/ID/` on the host: the launcher and a watchdog; its child
//!   `payload/` is the root of the box's cgroup namespace, where systemd runs
//!   and where commands entered with `exec` are placed. `cgroup.kill` on `ID`
//!   ends everything.
//!
//! The namespaces are made by util-linux `unshare` and two small `sh` scripts
//! rather than in Rust: unsharing a mount namespace is refused in a
//! multi-threaded process (the test harness), so Rust would have to do it
//! between fork and exec, which needs `unsafe` (`pre_exec`), and the crate
//! denies `unsafe_code`. The scripts are written into the state directory, so
//! a failed boot can be replayed by hand.
//!
//! If the test process dies without unwinding (SIGKILL, abort), the watchdog
//! sees its stdin pipe close and writes `cgroup.kill`: no systemd outlives the
//! test. Stale state directories and cgroups of dead test processes are
//! removed by the next `boot`.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// `PATH` of every command run in the box (its environment is otherwise empty).
pub const BOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PREFIX: &str = "distcc-sysbox-";
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(15);
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Units that touch kernel-global state or hardware, or that make no sense in
/// a box. Masked (linked to /dev/null in the box's /run/systemd/system) on top
/// of every unit the host has enabled. A unit file a test writes to the box's
/// /etc/systemd/system takes precedence over these masks.
const MASKED: &[&str] = &[
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-hwdb-update.service",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-sysctl.service",
    "systemd-timesyncd.service",
    "systemd-time-wait-sync.service",
    "systemd-random-seed.service",
    "systemd-pstore.service",
    "fstrim.service",
    "fstrim.timer",
    "getty@.service",
    "serial-getty@.service",
    "console-getty.service",
    "container-getty@.service",
    "getty-static.service",
    "autovt@.service",
    "dev-hugepages.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "systemd-journald-audit.socket",
    "systemd-remount-fs.service",
    "systemd-fsck-root.service",
    "systemd-fsck@.service",
    "systemd-growfs-root.service",
    "systemd-growfs@.service",
    "systemd-makefs@.service",
    "systemd-repart.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-pcrphase-initrd.service",
    "systemd-rfkill.service",
    "systemd-rfkill.socket",
    "systemd-backlight@.service",
    "systemd-hibernate-resume@.service",
    "systemd-boot-system-token.service",
];

/// Generators allowed to run; every other one found on the host is masked in
/// the box's /run/systemd/system-generators. sysv-generator in particular
/// would start the host's init scripts (Debian's distccd among them), and
/// getty/cryptsetup/gpt-auto look at devices.
const KEPT_GENERATORS: &[&str] = &[
    "systemd-debug-generator",
    "systemd-fstab-generator",
    "systemd-run-generator",
    "systemd-system-update-generator",
];
const GENERATOR_DIRS: &[&str] = &[
    "/etc/systemd/system-generators",
    "/usr/local/lib/systemd/system-generators",
    "/usr/lib/systemd/system-generators",
    "/lib/systemd/system-generators",
];

/// Capabilities removed from the bounding set of the box's PID 1.
const DROPPED_CAPS: &str = "-sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend,\
    -mac_override,-mac_admin,-audit_write,-audit_control,-audit_read,-bpf,-perfmon";

/// Runs on the host as the launcher's first process (stdin: the watchdog pipe,
/// stdout/stderr: `log`). Environment: STATE, CG, BOXNAME, PATH.
const OUTER_SH: &str = r#"set -eu
echo 0 > "$CG/cgroup.procs"
# Watchdog: stdin is a pipe whose other end only the test process holds.
exec 3<&0 </dev/null
( cat <&3 >/dev/null; echo 1 > "$CG/cgroup.kill" ) &
exec 3<&-
exec unshare --mount --propagation private --pid --fork --kill-child \
    --net --uts --ipc sh "$STATE/inner.sh"
"#;

/// PID 1 of the new PID namespace, still seeing the host's /proc: learns its
/// host PID, moves into `payload` and makes the cgroup namespace there.
const INNER_SH: &str = r#"set -eu
read -r HOSTPID _ < /proc/self/stat
export HOSTPID
mkdir "$CG/payload"
echo 0 > "$CG/payload/cgroup.procs"
exec unshare --cgroup sh "$STATE/boot.sh"
"#;

/// Builds the root and execs systemd. The PID file is written only after
/// pivot_root, so nothing can nsenter into a half-built box (and reach the
/// host's /run).
const BOOT_SH: &str = r#"set -eu
exec 4>"$STATE/pid"
R="$STATE/root"
M="$R/merged"
mount -t tmpfs -o mode=0755 sysbox "$R"
mkdir "$R/upper" "$R/work" "$M"
mount -t overlay -o lowerdir=/,upperdir="$R/upper",workdir="$R/work" sysbox "$M"
mount -t proc -o nosuid,nodev,noexec proc "$M/proc"
for p in sys sysrq-trigger; do
    [ -e "$M/proc/$p" ] || continue
    mount --bind "$M/proc/$p" "$M/proc/$p"
    mount -o remount,bind,ro "$M/proc/$p"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$M/sys/fs/cgroup"
# Never the host's /dev: systemd would change its nodes' modes and owners.
mount -t tmpfs -o mode=0755,nosuid,size=4m dev "$M/dev"
mknod -m 666 "$M/dev/null" c 1 3
mknod -m 666 "$M/dev/zero" c 1 5
mknod -m 666 "$M/dev/full" c 1 7
mknod -m 666 "$M/dev/random" c 1 8
mknod -m 666 "$M/dev/urandom" c 1 9
mknod -m 666 "$M/dev/tty" c 5 0
mkdir -m 0755 "$M/dev/pts"
mkdir -m 1777 "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$M/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$M/dev/shm"
ln -s pts/ptmx "$M/dev/ptmx"
ln -s /proc/self/fd "$M/dev/fd"
ln -s /proc/self/fd/0 "$M/dev/stdin"
ln -s /proc/self/fd/1 "$M/dev/stdout"
ln -s /proc/self/fd/2 "$M/dev/stderr"
ln -s null "$M/dev/console"
mount -t tmpfs -o mode=0755,nosuid,nodev run "$M/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$M/tmp"
cp -a "$STATE/seed/." "$M/"
hostname "$BOXNAME"
ip link set lo up
cd "$M"
pivot_root . .
umount -l .
cd /
echo "$HOSTPID" >&4
exec 4>&-
exec setpriv --bounding-set "$DROPPED_CAPS" \
    env -i container=other /usr/lib/systemd/systemd --system --unit=multi-user.target </dev/null
"#;

/// One booted systemd. Dropping it powers it off and removes every trace.
pub struct SystemdBox {
    name: String,
    /// Host scratch directory (scripts, seed, log, pid, overlay mount point).
    state: PathBuf,
    /// Host path of the box's own cgroup; `payload` below it is the box's root.
    cgroup: PathBuf,
    /// The `unshare` process (outside the box's PID namespace).
    launcher: Child,
    /// Write end of the watchdog pipe; closing it kills the cgroup.
    watchdog: Option<ChildStdin>,
    /// Host PID of the box's PID 1 and its start time (to recognise it later).
    pid: i32,
    start_time: u64,
    finished: bool,
}

impl SystemdBox {
    /// Boots a box and waits until `systemctl is-system-running` says
    /// `running` or `degraded`.
    pub fn boot(name: &str) -> SystemdBox {
        static N: AtomicU32 = AtomicU32::new(0);
        let cg_root = cgroup2_mount();
        check_single_filesystem_root();
        sweep_stale(&cg_root);

        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let id = format!(
            "{PREFIX}{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let state = std::env::temp_dir().join(&id);
        let cgroup = cg_root.join(&id);
        fs::create_dir_all(state.join("root")).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        write_seed(&state.join("seed"), &name);
        for (file, text) in [
            ("outer.sh", OUTER_SH),
            ("inner.sh", INNER_SH),
            ("boot.sh", BOOT_SH),
        ] {
            fs::write(state.join(file), text).unwrap();
        }
        fs::create_dir(&cgroup)
            .unwrap_or_else(|e| panic!("sysbox: cannot create cgroup {}: {e}", cgroup.display()));

        let log = fs::File::create(state.join("log")).unwrap();
        let spawned = Command::new("/bin/sh")
            .arg(state.join("outer.sh"))
            .env_clear()
            .env("PATH", BOX_PATH)
            .env("STATE", &state)
            .env("CG", &cgroup)
            .env("BOXNAME", &name)
            .env("DROPPED_CAPS", DROPPED_CAPS)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn();
        let mut launcher = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir(&cgroup);
                let _ = fs::remove_dir_all(&state);
                panic!("sysbox: cannot start the launcher: {e}");
            }
        };
        let watchdog = launcher.stdin.take();
        let mut b = SystemdBox {
            name,
            state,
            cgroup,
            launcher,
            watchdog,
            pid: 0,
            start_time: 0,
            finished: false,
        };
        // From here on a panic unwinds through `b`'s Drop, which cleans up.
        b.wait_running();
        b
    }

    fn wait_running(&mut self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut last = String::new();
        loop {
            if let Some(st) = self.launcher.try_wait().unwrap() {
                panic!(
                    "sysbox {}: the box exited during boot ({st}); launcher log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if self.pid == 0 {
                self.read_pid();
            } else {
                let out = self.exec(&["systemctl", "is-system-running"]);
                last = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if last == "running" || last == "degraded" {
                    return;
                }
            }
            if Instant::now() > deadline {
                let failed = if self.pid == 0 {
                    "(systemd never started)".to_owned()
                } else {
                    self.report(&[
                        "systemctl --failed --no-pager",
                        "systemctl list-jobs --no-pager",
                        "journalctl -b --no-pager -n 40 -p warning",
                    ])
                };
                panic!(
                    "sysbox {}: not running after {BOOT_TIMEOUT:?} (is-system-running: {last:?})\n\
                     {failed}\nlauncher log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn read_pid(&mut self) {
        let text = fs::read_to_string(self.state.join("pid")).unwrap_or_default();
        let Some(line) = text.strip_suffix('\n') else {
            return;
        };
        let pid: i32 = line.parse().expect("sysbox: malformed pid file");
        let (start_time, nspid) = proc_identity(pid).expect("sysbox: PID 1 vanished during boot");
        assert_eq!(nspid, 1, "sysbox: host pid {pid} is not the box's PID 1");
        let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(
            cg.contains(&format!("/{}/payload", self.id())),
            "sysbox: host pid {pid} is not in the box's cgroup: {cg}"
        );
        self.pid = pid;
        self.start_time = start_time;
    }

    fn id(&self) -> String {
        self.state.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// The box's hostname (the sanitised name given to `boot`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Host PID of the box's PID 1 (systemd).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A command that runs `argv` inside the box: all its namespaces, its root
    /// and cgroup, an environment of only `PATH`. Stdio is the caller's to set.
    pub fn command(&self, argv: &[&str]) -> Command {
        assert!(
            self.pid != 0 && !self.finished,
            "sysbox {}: not running",
            self.name
        );
        let mut c = Command::new("/bin/sh");
        c.env_clear()
            .env("PATH", BOX_PATH)
            .current_dir("/")
            .args([
                "-c",
                r#"echo 0 > "$1/cgroup.procs" && shift && exec "$@""#,
                "sysbox-enter",
            ])
            .arg(self.cgroup.join("payload"))
            .args(["nsenter", "--target", &self.pid.to_string()])
            .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"])
            .args(["--root", "--wd", "--"])
            .args(argv);
        c
    }

    /// Runs `argv` inside the box with stdin from /dev/null.
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("sysbox {}: cannot run nsenter: {e}", self.name))
    }

    /// Runs `sh -c script` inside the box, asserts success, returns stdout.
    pub fn sh(&self, script: &str) -> String {
        checked(&self.name, script, self.exec(&["sh", "-c", script]))
    }

    /// Runs `argv` inside the box with `input` on its stdin.
    pub fn exec_with_input(&self, argv: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                // A command that exits without reading gives EPIPE: not ours to report.
                let _ = stdin.write_all(input);
            });
            child.wait_with_output().unwrap()
        })
    }

    /// Writes `contents` to `dest` inside the box (parents created), then
    /// sets `mode`.
    pub fn write(&self, dest: &str, contents: &[u8], mode: u32) {
        let script = r#"mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1""#;
        let mode = format!("{mode:o}");
        let out = self.exec_with_input(&["sh", "-c", script, "sysbox-write", dest, &mode], contents);
        checked(&self.name, &format!("write {dest}"), out);
    }

    /// Copies a host file or directory into the box so that it becomes `dest`
    /// (parents created), keeping modes. A directory travels as a tar stream
    /// unpacked inside the box, so symbolic links in it stay links and resolve
    /// against the box's root, never the host's.
    pub fn copy_in(&self, host_path: &Path, dest: &str) {
        let meta = fs::metadata(host_path)
            .unwrap_or_else(|e| panic!("sysbox: copy_in {}: {e}", host_path.display()));
        if !meta.is_dir() {
            let bytes = fs::read(host_path).unwrap();
            return self.write(dest, &bytes, meta.permissions().mode() & 0o7777);
        }
        let mut tar = Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(host_path)
            .args(["-cf", "-", "."])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let script = r#"mkdir -p "$1" && exec tar --numeric-owner -xpf - -C "$1""#;
        let out = self
            .command(&["sh", "-c", script, "sysbox-copy", dest])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        let packed = tar.wait().unwrap();
        assert!(
            packed.success(),
            "sysbox: tar of {} failed: {packed}",
            host_path.display()
        );
        checked(&self.name, &format!("copy_in {dest}"), out);
    }

    /// A command that runs a *host* program in the box's network namespace
    /// only (host files, host environment): e.g. a client talking to a daemon
    /// the box listens with on 127.0.0.1.
    pub fn netns_command(&self, program: &str) -> Command {
        assert!(
            self.pid != 0 && !self.finished,
            "sysbox {}: not running",
            self.name
        );
        let mut c = Command::new("nsenter");
        c.args(["--target", &self.pid.to_string(), "--net", "--", program]);
        c
    }

    /// Powers the box off cleanly and checks that it left nothing behind;
    /// panics (after cleaning up anyway) if it did not.
    pub fn stop(mut self) {
        let problems = self.shutdown();
        let state = self.state.clone();
        let leaked: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&self.id()))
            .map(str::to_owned)
            .collect();
        assert!(
            problems.is_empty(),
            "sysbox {}: {}",
            self.name,
            problems.join("; ")
        );
        assert!(
            leaked.is_empty(),
            "sysbox {}: host mounts left: {leaked:?}",
            self.name
        );
        assert!(!state.exists(), "sysbox {}: {} left", self.name, state.display());
    }

    /// SIGRTMIN+4 (poweroff) to PID 1, SIGKILL after a timeout, then
    /// `cgroup.kill` on the whole tree and removal of the cgroups and state.
    /// Returns what went wrong; never panics.
    fn shutdown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.finished {
            return problems;
        }
        self.finished = true;
        if self.pid != 0 && self.is_alive() {
            let sent = Command::new("kill")
                .args(["-s", "RTMIN+4", &self.pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !sent || !wait_until(POWEROFF_TIMEOUT, || self.launcher_exited()) {
                problems.push(format!("no clean poweroff within {POWEROFF_TIMEOUT:?}"));
                if self.is_alive() {
                    let pid = nix::unistd::Pid::from_raw(self.pid);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        // Everything else: the launcher, the watchdog, stray commands.
        let _ = fs::write(self.cgroup.join("cgroup.kill"), "1");
        self.watchdog = None;
        if !wait_until(KILL_TIMEOUT, || self.launcher_exited()) {
            let _ = self.launcher.kill();
            problems.push("launcher survived cgroup.kill".to_owned());
        }
        let _ = self.launcher.wait();
        let empty = || {
            fs::read_to_string(self.cgroup.join("cgroup.events")).map_or(true, |e| e.contains("populated 0"))
        };
        if !wait_until(KILL_TIMEOUT, empty) {
            problems.push(format!("cgroup {} still populated", self.cgroup.display()));
        }
        if let Err(e) = remove_cgroup_tree(&self.cgroup) {
            problems.push(format!("cannot remove cgroup {}: {e}", self.cgroup.display()));
        }
        // The overlay lived in the box's private mount namespace, which died
        // with its last process; if the host sees a mount here, leave it be.
        let mounted = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .contains(&self.id());
        if mounted {
            problems.push(format!("{} is mounted on the host", self.state.display()));
        } else if let Err(e) = fs::remove_dir_all(&self.state) {
            problems.push(format!("cannot remove {}: {e}", self.state.display()));
        }
        problems
    }

    fn launcher_exited(&mut self) -> bool {
        !matches!(self.launcher.try_wait(), Ok(None))
    }

    /// Whether the box's PID 1 still runs (and the PID was not reused).
    fn is_alive(&self) -> bool {
        proc_identity(self.pid).is_some_and(|(start, nspid)| start == self.start_time && nspid == 1)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.state.join("log")).unwrap_or_default()
    }

    /// Output of diagnostic commands, for panic messages.
    fn report(&self, scripts: &[&str]) -> String {
        let mut text = String::new();
        for s in scripts {
            let out = self.exec(&["sh", "-c", s]);
            text += &format!(
                "$ {s}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        text
    }
}

impl Drop for SystemdBox {
    fn drop(&mut self) {
        let problems = self.shutdown();
        if !problems.is_empty() {
            eprintln!("sysbox {}: {}", self.name, problems.join("; "));
        }
    }
}

fn checked(name: &str, what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "sysbox {name}: `{what}` failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start time (clock ticks after boot) and innermost namespace PID of `pid`.
fn proc_identity(pid: i32) -> Option<(u64, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let start = rest.split(' ').nth(19)?.parse().ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()?;
    Some((start, nspid))
}

/// Where the host mounts the cgroup v2 hierarchy.
fn cgroup2_mount() -> PathBuf {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split(' ').nth(4)?;
            (post.split(' ').next()? == "cgroup2").then(|| PathBuf::from(point))
        })
        .expect(
            "sysbox: no cgroup2 hierarchy is mounted on the host; mount one first, \
             e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`",
        )
}

/// The overlay's lower layer is the filesystem of `/` alone: a separate /usr
/// or /etc would appear empty in the box.
fn check_single_filesystem_root() {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in info.lines() {
        let point = l.split(' ').nth(4).unwrap_or_default();
        assert!(
            point != "/usr" && point != "/etc",
            "sysbox: {point} is a separate mount; the box's overlay of / would miss it"
        );
    }
}

/// The files copied over the overlay before systemd starts.
fn write_seed(seed: &Path, name: &str) {
    let etc = seed.join("etc");
    let units = seed.join("run/systemd/system");
    let generators = seed.join("run/systemd/system-generators");
    for d in [&etc, &units, &generators] {
        fs::create_dir_all(d).unwrap();
    }
    for d in [
        seed,
        &etc,
        &seed.join("run"),
        &seed.join("run/systemd"),
        &units,
        &generators,
    ] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    fs::write(
        etc.join("machine-id"),
        format!("{}\n", uuid.trim().replace('-', "")),
    )
    .unwrap();
    fs::write(etc.join("hostname"), format!("{name}\n")).unwrap();
    fs::write(etc.join("fstab"), "# distcc sysbox: nothing to mount\n").unwrap();
    for f in ["machine-id", "hostname", "fstab"] {
        fs::set_permissions(etc.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut masked: BTreeSet<String> = MASKED.iter().map(|s| s.to_string()).collect();
    masked.extend(host_enabled_units());
    for unit in masked {
        symlink("/dev/null", units.join(unit)).unwrap();
    }
    let mut gens = BTreeSet::new();
    for dir in GENERATOR_DIRS {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !KEPT_GENERATORS.contains(&n.as_str()) {
                gens.insert(n);
            }
        }
    }
    for g in gens {
        symlink("/dev/null", generators.join(g)).unwrap();
    }
}

/// Every unit the host's /etc enables (`*.wants/`, `*.requires/`,
/// `*.upholds/`) or aliases, except targets.
fn host_enabled_units() -> BTreeSet<String> {
    let mut units = BTreeSet::new();
    let is_unit = |n: &str| {
        [
            ".service",
            ".socket",
            ".timer",
            ".path",
            ".mount",
            ".automount",
            ".swap",
        ]
        .iter()
        .any(|s| n.ends_with(s))
    };
    for e in fs::read_dir("/etc/systemd/system")
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if [".wants", ".requires", ".upholds"].iter().any(|s| n.ends_with(s)) {
            for w in fs::read_dir(e.path()).into_iter().flatten().flatten() {
                let w = w.file_name().to_string_lossy().into_owned();
                if is_unit(&w) {
                    units.insert(w);
                }
            }
        } else if is_unit(&n) {
            units.insert(n);
        }
    }
    units
}

/// Removes the state directories and cgroups of boxes whose test process is
/// gone (killed without unwinding; the watchdog already killed the box).
fn sweep_stale(cg_root: &Path) {
    let owner_dead = |name: &str| {
        name.strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists())
    };
    for e in fs::read_dir(cg_root).into_iter().flatten().flatten() {
        if owner_dead(&e.file_name().to_string_lossy()) {
            let _ = fs::write(e.path().join("cgroup.kill"), "1");
            wait_until(Duration::from_secs(2), || {
                fs::read_to_string(e.path().join("cgroup.events")).map_or(true, |t| t.contains("populated 0"))
            });
            let _ = remove_cgroup_tree(&e.path());
        }
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for e in fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if owner_dead(&n) && !mounts.contains(&n) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// rmdir of a cgroup and its descendants, deepest first (cgroup directories
/// hold only control files, which rmdir ignores).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path())?;
        }
    }
    fs::remove_dir(dir)
}

// ---------------------------------------------------------------------------
// Tests of the harness itself.

/// systemctl's idea of the boot, accepting `degraded` (some unit failed).
fn system_state(b: &SystemdBox) -> String {
    let out = b.exec(&["systemctl", "is-system-running"]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_for(b: &SystemdBox, script: &str, want: &str) -> String {
    let mut got = String::new();
    let ok = wait_until(Duration::from_secs(5), || {
        got = String::from_utf8_lossy(&b.exec(&["sh", "-c", script]).stdout).into_owned();
        got.contains(want)
    });
    assert!(
        ok,
        "sysbox {}: `{script}` never showed {want:?}; last output:\n{got}",
        b.name()
    );
    got
}

#[test]
fn sysbox_boots_with_a_working_journal() {
    let b = SystemdBox::boot("journal");
    let state = system_state(&b);
    assert!(state == "running" || state == "degraded", "{state}");
    assert_eq!(b.sh("hostname").trim(), "journal");
    assert_eq!(b.sh("cat /proc/1/comm").trim(), "systemd");
    b.sh("systemd-cat -t sysbox-test echo hello");
    wait_for(&b, "journalctl --no-pager -o cat -t sysbox-test", "hello");
    // The box's capability bounding set lacks what it must not use.
    let caps = b.sh("grep CapBnd /proc/1/status");
    let bnd = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap(), 16).unwrap();
    const CAP_SYS_MODULE: u32 = 16;
    const CAP_SYS_TIME: u32 = 25;
    assert_eq!(bnd & (1 << CAP_SYS_MODULE | 1 << CAP_SYS_TIME), 0, "{caps}");
    b.stop();
}

#[test]
fn sysbox_runs_a_service_written_into_it() {
    let b = SystemdBox::boot("service");
    b.write(
        "/etc/systemd/system/sysbox-hello.service",
        b"[Service]\nType=oneshot\nRemainAfterExit=yes\n\
          ExecStart=/bin/sh -c 'echo started > /run/sysbox-hello'\n",
        0o644,
    );
    b.sh("systemctl daemon-reload && systemctl start sysbox-hello.service");
    assert_eq!(
        b.sh("systemctl show -p ActiveState sysbox-hello.service").trim(),
        "ActiveState=active"
    );
    assert_eq!(b.sh("cat /run/sysbox-hello").trim(), "started");
    // copy_in keeps modes and symlinks, and the symlink resolves in the box.
    let dir = crate::common::TestDir::new("sysbox-copy");
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::write(tree.join("bin/tool"), "#!/bin/sh\necho tool ran\n").unwrap();
    fs::set_permissions(tree.join("bin/tool"), fs::Permissions::from_mode(0o750)).unwrap();
    symlink("/run/sysbox-hello", tree.join("link")).unwrap();
    b.copy_in(&tree, "/opt/sysbox");
    assert_eq!(b.sh("/opt/sysbox/bin/tool").trim(), "tool ran");
    assert_eq!(b.sh("stat -c %a /opt/sysbox/bin/tool").trim(), "750");
    assert_eq!(b.sh("cat /opt/sysbox/link").trim(), "started");
    b.stop();
}

#[test]
fn sysbox_socket_activation_on_loopback() {
    let b = SystemdBox::boot("socket");
    b.write(
        "/etc/systemd/system/sysbox-echo.socket",
        b"[Socket]\nListenStream=127.0.0.1:997\nAccept=yes\n",
        0o644,
    );
    b.write(
        "/etc/systemd/system/sysbox-echo@.service",
        b"[Service]\nExecStart=/bin/cat\nStandardInput=socket\n",
        0o644,
    );
    b.sh("systemctl daemon-reload && systemctl start sysbox-echo.socket");
    let talk = "exec 3<>/dev/tcp/127.0.0.1/997; echo ping >&3; read -r line <&3; echo \"$line\"";
    let out = b.exec(&["bash", "-c", talk]);
    assert_eq!(checked(b.name(), talk, out).trim(), "ping");
    assert_eq!(
        b.sh("systemctl show -p NAccepted sysbox-echo.socket").trim(),
        "NAccepted=1"
    );
    // The host side reaches the box's loopback only through its namespace.
    let out = b.netns_command("bash").args(["-c", talk]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ping", "{out:?}");
    assert!(std::net::TcpStream::connect("127.0.0.1:997").is_err());
    b.stop();
}

#[test]
fn sysbox_stop_and_drop_leave_the_host_as_it_was() {
    let mounts = || -> BTreeSet<String> {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let before = mounts();

    let b = SystemdBox::boot("stop");
    b.sh("echo box > /etc/sysbox-marker && chmod 600 /dev/null && chown 0:5 /dev/null");
    assert!(
        !Path::new("/etc/sysbox-marker").exists(),
        "a box write reached the host"
    );
    let (pid, start, state, cgroup) = (b.pid(), b.start_time, b.state.clone(), b.cgroup.clone());
    b.stop();
    assert!(
        proc_identity(pid).is_none_or(|(s, _)| s != start),
        "box PID 1 survived stop"
    );
    assert!(!state.exists() && !cgroup.exists());

    // Dropping without stop() cleans up the same way.
    let b = SystemdBox::boot("drop");
    let (pid, start, state, cgroup) = (b.pid(), b.start_time, b.state.clone(), b.cgroup.clone());
    drop(b);
    assert!(
        proc_identity(pid).is_none_or(|(s, _)| s != start),
        "box PID 1 survived drop"
    );
    assert!(!state.exists() && !cgroup.exists());

    assert_eq!(before, mounts(), "host mounts changed");
    let null = fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(
        null.permissions().mode() & 0o7777,
        0o666,
        "/dev/null mode changed"
    );
    assert_eq!((null.uid(), null.gid()), (0, 0), "/dev/null owner changed");
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
}
