/*!
The compiler's sandbox. A client is trusted to compile, not to read the
server: the code it sends can name any file in `.incbin`, `.include`, a line
marker or a directive the scan missed, and the compiler will open it. So every
compiler (and everything it starts: cc1, cc1plus, as, ld for `-c`'s plugins)
runs confined from before its first instruction:

- Landlock: files may be read and executed only under the system's compiler
  and library directories (and the compiler's own installation); read and
  written only in the job's own directory; `/proc` (and so the daemon's and
  the job's own descriptors under `/proc/self/fd`) is out of reach; no TCP;
  no signals to, or abstract sockets of, processes outside the sandbox;
- rlimits: no file larger than `--max-output-mb`, no address space larger
  than `--max-compiler-mb`, CPU time no longer than `--job-lifetime`;
- every descriptor but stdin (/dev/null), stdout and stderr (the reply's
  pipes) is closed on exec.

The ruleset is built in the daemon before the fork (it opens the allowed
directories); the child only makes system calls between fork and exec.
*/

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope,
};

pub use super::options::SandboxMode as Mode;

/// Directories whose files the compiler may read and execute. Missing ones
/// are skipped. Not `/usr/share` (but its locales), `/etc` (but the loader's
/// cache), `/home`, `/root`, `/srv`, `/var`, `/tmp`, `/proc`, `/sys`, `/run`.
const SYSTEM_READ: &[&str] = &[
    "/bin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/bin",
    "/usr/include",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/libx32",
    "/usr/local/bin",
    "/usr/local/include",
    "/usr/local/lib",
    "/usr/local/libexec",
    "/usr/share/locale",
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
];

/// Devices the compiler may open: drivers write `/dev/null`. No endless
/// ones (`/dev/zero`, `/dev/urandom`): `.incbin` of them would only stop at
/// the file-size limit. Random seeds come from getrandom(2).
const DEVICES: &[&str] = &["/dev/null"];

/// Highest Landlock ABI whose rights we ask for (fs, TCP, scoping).
const ABI_WANTED: ABI = ABI::V6;

/// Resource limits of every compiler process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rlimits {
    /// RLIMIT_FSIZE, bytes.
    pub file_size: Option<u64>,
    /// RLIMIT_AS, bytes.
    pub address_space: Option<u64>,
    /// RLIMIT_CPU, seconds.
    pub cpu: Option<u64>,
}

/// Decided at start-up, shared by every job.
#[derive(Debug)]
pub struct Sandbox {
    /// Landlock ABI in force (0: none).
    abi: i32,
    said: Startup,
    pub limits: Rlimits,
    /// The compiler's own installation when it is outside [`SYSTEM_READ`],
    /// looked up once per compiler.
    installs: Mutex<HashMap<PathBuf, Vec<PathBuf>>>,
}

/// What start-up says about the sandbox (logged; `Err` refuses to start).
#[derive(Debug)]
pub enum Startup {
    Enforced {
        abi: i32,
    },
    /// Best effort on a kernel without Landlock.
    Unavailable(String),
    Off,
}

impl std::fmt::Display for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Startup::Enforced { abi } => write!(
                f,
                "compilers are sandboxed (Landlock ABI {abi}: reads limited to system compiler and library \
                 directories and the job's own directory)"
            ),
            Startup::Unavailable(why) => write!(
                f,
                "compilers are NOT sandboxed by Landlock ({why}): a client can make the compiler read any file \
                 this user can read; only rlimits apply. Use a kernel with Landlock (5.13+, lsm=landlock) or \
                 --sandbox=required to refuse to start without it"
            ),
            Startup::Off => f.write_str(
                "--sandbox=off: compilers are NOT sandboxed by Landlock; a client can make the compiler read \
                 any file this user can read; only rlimits apply",
            ),
        }
    }
}

/// The kernel's Landlock ABI version, or why there is none.
#[allow(unsafe_code)]
pub fn kernel_abi() -> Result<i32, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: nix::libc::c_uint = 1;
    // SAFETY: with this flag the call only returns the ABI version; it reads
    // no memory (the attribute pointer is NULL, size 0).
    let v = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v >= 1 {
        return Ok(v as i32);
    }
    Err(match nix::errno::Errno::last() {
        nix::errno::Errno::ENOSYS => "the kernel has no Landlock (older than 5.13)".into(),
        nix::errno::Errno::EOPNOTSUPP => "Landlock is built but not enabled at boot (lsm=)".into(),
        e => format!("Landlock is not available: {e}"),
    })
}

/// `--sandbox` against what the kernel has: the ABI to use (0: none) and
/// what to say, or why not to start. Pure.
fn decide(mode: Option<Mode>, kernel: Result<i32, String>) -> Result<(i32, Startup), String> {
    match (mode, kernel) {
        (Some(Mode::Off), _) => Ok((0, Startup::Off)),
        (_, Ok(v)) => Ok((v, Startup::Enforced { abi: v })),
        (Some(Mode::Required), Err(why)) => Err(format!(
            "--sandbox=required, but {why}. Without Landlock a client can make the compiler read any file \
             this user can read; run on a kernel with Landlock, or pass --sandbox=best-effort to serve anyway"
        )),
        (None | Some(Mode::BestEffort), Err(why)) => Ok((0, Startup::Unavailable(why))),
    }
}

impl Sandbox {
    /// `mode` None: required where the kernel has Landlock, else best effort.
    pub fn start(mode: Option<Mode>, limits: Rlimits) -> Result<Sandbox, String> {
        let (abi, said) = decide(mode, kernel_abi())?;
        Ok(Sandbox {
            abi,
            said,
            limits,
            installs: Mutex::new(HashMap::new()),
        })
    }

    /// What to say about it at start-up.
    pub fn startup(&self) -> &Startup {
        &self.said
    }

    pub fn landlock(&self) -> bool {
        self.abi > 0
    }

    /// The confinement of one compile of `exe` in `job_dir`.
    pub fn prepare(&self, job_dir: &Path, exe: &Path) -> anyhow::Result<Prepared> {
        let ruleset = if self.landlock() {
            Some(self.ruleset(job_dir, exe).context("building the sandbox")?)
        } else {
            None
        };
        Ok(Prepared {
            ruleset,
            limits: self.limits,
        })
    }

    fn ruleset(&self, job_dir: &Path, exe: &Path) -> anyhow::Result<OwnedFd> {
        let read = AccessFs::Execute | AccessFs::ReadFile | AccessFs::ReadDir;
        let job =
            AccessFs::from_all(ABI_WANTED) & !(AccessFs::Execute | AccessFs::MakeBlock | AccessFs::MakeChar);
        let device = AccessFs::ReadFile | AccessFs::WriteFile;
        let installs = self.install_dirs(exe);
        let mut r = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(ABI_WANTED))?
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
            .scope(Scope::AbstractUnixSocket | Scope::Signal)?
            .create()?;
        for p in SYSTEM_READ
            .iter()
            .map(Path::new)
            .chain(installs.iter().map(PathBuf::as_path))
        {
            // A rule for a file may hold only a file's rights.
            let rights = if p.is_dir() {
                read
            } else {
                read & AccessFs::from_file(ABI_WANTED)
            };
            if let Ok(fd) = PathFd::new(p) {
                r = r.add_rule(PathBeneath::new(fd, rights))?;
            }
        }
        for p in DEVICES {
            if let Ok(fd) = PathFd::new(p) {
                r = r.add_rule(PathBeneath::new(fd, device))?;
            }
        }
        r = r.add_rule(PathBeneath::new(PathFd::new(job_dir)?, job))?;
        Ok(Option::<OwnedFd>::from(r).expect("a ruleset on a kernel with Landlock has a descriptor"))
    }

    /// The compiler's own installation when the system directories do not
    /// cover it: for `/opt/gcc-14/bin/gcc`, `/opt/gcc-14/{bin,lib,lib64,
    /// libexec,include,…}`, but not the rest of `/opt/gcc-14` (a compiler in
    /// someone's `~/bin` must not open their home).
    fn install_dirs(&self, exe: &Path) -> Vec<PathBuf> {
        const PARTS: &[&str] = &["bin", "include", "lib", "lib32", "lib64", "libexec", "libx32"];
        let mut cache = self.installs.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(exe.to_path_buf())
            .or_insert_with(|| {
                let real = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
                let covered = |p: &Path| SYSTEM_READ.iter().any(|s| p.starts_with(s));
                let Some(bin) = real.parent().filter(|b| !covered(b)) else {
                    return Vec::new();
                };
                let mut dirs = vec![bin.to_path_buf()];
                if let Some(prefix) = bin.parent().filter(|p| *p != Path::new("/")) {
                    dirs.extend(
                        PARTS
                            .iter()
                            .map(|d| prefix.join(d))
                            .filter(|d| d.is_dir() && !covered(d)),
                    );
                }
                dirs.dedup();
                dirs
            })
            .clone()
    }
}

/// One compile's confinement, applied in the child between fork and exec.
#[derive(Debug)]
pub struct Prepared {
    ruleset: Option<OwnedFd>,
    limits: Rlimits,
}

impl Prepared {
    /// Makes `cmd` apply this confinement in its child, before exec.
    #[allow(unsafe_code)]
    pub fn confine(self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: `apply` only makes system calls (setrlimit, prctl,
        // landlock_restrict_self, close_range), which are async-signal-safe:
        // nothing that could deadlock in a child forked from threads.
        unsafe {
            cmd.pre_exec(move || self.apply());
        }
    }

    /// Runs in the forked child: system calls only, no allocation, no locks.
    #[allow(unsafe_code)]
    pub fn apply(&self) -> std::io::Result<()> {
        use nix::libc;
        fn check(r: libc::c_long) -> std::io::Result<()> {
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
        let set = |res, v: Option<u64>, hard_extra: u64| -> std::io::Result<()> {
            if let Some(v) = v {
                let lim = libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v.saturating_add(hard_extra),
                };
                // SAFETY: a plain system call on a value on our stack.
                check(unsafe { libc::setrlimit(res, &lim) }.into())?;
            }
            Ok(())
        };
        set(libc::RLIMIT_FSIZE, self.limits.file_size, 0)?;
        set(libc::RLIMIT_AS, self.limits.address_space, 0)?;
        // SIGXCPU at the soft limit, SIGKILL a little later.
        set(libc::RLIMIT_CPU, self.limits.cpu, 5)?;
        if let Some(fd) = &self.ruleset {
            // SAFETY: prctl and landlock_restrict_self take integers.
            check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())?;
            check(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0u32) })?;
        }
        // Everything but stdio closes at exec, whatever was inherited
        // without close-on-exec (a socket from systemd, say). Not closed
        // now: std reports a failed exec through one of them.
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        // SAFETY: integers only.
        check(unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_directories_are_sorted_and_leave_out_private_places() {
        let dirs: Vec<&str> = SYSTEM_READ
            .iter()
            .copied()
            .filter(|d| !d.starts_with("/etc"))
            .collect();
        let mut sorted = dirs.clone();
        sorted.sort_unstable();
        assert_eq!(dirs, sorted);
        for private in [
            "/",
            "/etc",
            "/home",
            "/root",
            "/tmp",
            "/var",
            "/proc",
            "/usr",
            "/usr/share",
            "/srv",
            "/run",
        ] {
            assert!(!SYSTEM_READ.contains(&private), "{private} must not be readable");
        }
    }

    #[test]
    fn the_mode_against_the_kernel() {
        let none = || Err("the kernel has no Landlock (older than 5.13)".to_owned());
        // (mode, kernel ABI, Landlock used, starts, what is said)
        type Case = (Option<Mode>, Result<i32, String>, i32, bool, &'static str);
        let cases: [Case; 7] = [
            (None, Ok(7), 7, true, "sandboxed (Landlock ABI 7"),
            (
                None,
                none(),
                0,
                true,
                "NOT sandboxed by Landlock (the kernel has no Landlock",
            ),
            (Some(Mode::Required), Ok(4), 4, true, "ABI 4"),
            (
                Some(Mode::Required),
                none(),
                0,
                false,
                "--sandbox=best-effort to serve anyway",
            ),
            (Some(Mode::BestEffort), Ok(7), 7, true, "ABI 7"),
            (Some(Mode::BestEffort), none(), 0, true, "only rlimits apply"),
            (Some(Mode::Off), Ok(7), 0, true, "--sandbox=off"),
        ];
        for (mode, kernel, abi, starts, said) in cases {
            match decide(mode, kernel) {
                Ok((a, s)) => {
                    assert!(starts, "{mode:?} should refuse to start");
                    assert_eq!(a, abi, "{mode:?}");
                    assert!(s.to_string().contains(said), "{mode:?}: {s}");
                }
                Err(e) => {
                    assert!(!starts, "{mode:?} should start: {e}");
                    assert!(e.contains(said), "{e}");
                }
            }
        }
    }

    #[test]
    fn off_is_reported_and_needs_no_kernel_support() {
        let s = Sandbox::start(Some(Mode::Off), Rlimits::default()).unwrap();
        assert!(!s.landlock());
        assert!(matches!(s.startup(), Startup::Off));
        assert!(s.startup().to_string().contains("NOT sandboxed"));
    }
}
