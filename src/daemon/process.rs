/*!
Process set-up for distccd before any thread exists: niceness, dropping root,
detaching, the pid file and logging. Order matters (see `daemon::start`):
privileges must be gone before the runtime starts threads, because
credentials and capabilities are per thread on Linux.
*/

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use nix::unistd::{self, Gid, Uid, User};

use super::options::LogLevel;

/// `--nice`: applies to the daemon and so to every compiler it starts.
#[allow(unsafe_code)]
pub fn set_nice(n: i32) -> Result<()> {
    nix::errno::Errno::clear();
    // SAFETY: nice(2) takes an int and touches no memory of ours.
    let r = unsafe { nix::libc::nice(n) };
    if r == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(std::io::Error::last_os_error()).context("setting the niceness");
    }
    Ok(())
}

/// Who to become, looked up while /etc/passwd is still reachable (before any chroot).
pub struct Target {
    pub uid: Uid,
    pub gid: Gid,
    pub name: String,
}

/// `None` when not root: there is nothing to drop.
pub fn lookup_user(user: Option<&str>) -> Result<Option<Target>> {
    if !Uid::effective().is_root() && !Uid::current().is_root() {
        if let Some(u) = user {
            tracing::warn!("--user {u} ignored: not started as root");
        }
        return Ok(None);
    }
    let t = match user {
        Some(name) => match User::from_name(name) {
            Ok(Some(u)) => Target {
                uid: u.uid,
                gid: u.gid,
                name: name.to_owned(),
            },
            _ => bail!("--user {name}: no such user"),
        },
        None => match User::from_name("nobody") {
            Ok(Some(u)) => Target {
                uid: u.uid,
                gid: u.gid,
                name: "nobody".into(),
            },
            _ => Target {
                uid: Uid::from_raw(65534),
                gid: Gid::from_raw(65534),
                name: "65534".into(),
            },
        },
    };
    if t.uid.is_root() {
        bail!("refusing to serve as root: --user must name an unprivileged user");
    }
    Ok(Some(t))
}

/// Enters `chroot` (if any) and, when root, becomes `target`: supplementary
/// groups cleared, gid, then uid; every capability set emptied (bounding and
/// ambient too), and no_new_privs. Must run before any thread exists:
/// credentials and capabilities are per thread.
pub fn confine(chroot: Option<&Path>, target: Option<&Target>) -> Result<()> {
    if let Some(dir) = chroot {
        unistd::chroot(dir).with_context(|| format!("chroot {}", dir.display()))?;
        unistd::chdir("/").context("chdir / in the chroot")?;
    }
    if let Some(t) = target {
        // The bounding set can only shrink while we still hold CAP_SETPCAP.
        caps::clear(None, caps::CapSet::Bounding).context("clearing the capability bounding set")?;
        caps::clear(None, caps::CapSet::Ambient).context("clearing ambient capabilities")?;
        caps::clear(None, caps::CapSet::Inheritable).context("clearing inheritable capabilities")?;
        unistd::setgroups(&[t.gid]).context("clearing supplementary groups")?;
        unistd::setgid(t.gid).context("setgid")?;
        unistd::setuid(t.uid).context("setuid")?;
        caps::clear(None, caps::CapSet::Effective).context("clearing effective capabilities")?;
        caps::clear(None, caps::CapSet::Permitted).context("clearing permitted capabilities")?;
        if Uid::effective().is_root() || unistd::setuid(Uid::from_raw(0)).is_ok() {
            bail!("still root after dropping privileges");
        }
    }
    nix::sys::prctl::set_no_new_privs().context("PR_SET_NO_NEW_PRIVS")?;
    Ok(())
}

/// Where log lines go.
pub enum LogTarget<'a> {
    File(&'a Path),
    Stderr,
    /// journald's native socket, if it is there; else stderr.
    JournalOrStderr,
}

/// Sets up `tracing`. Returns where it ended up, for a start-up line.
pub fn init_logging(level: LogLevel, target: LogTarget<'_>) -> Result<&'static str> {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = LevelFilter::from_level(match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warning => tracing::Level::WARN,
        LogLevel::Notice | LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
    });
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = |time: bool| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(TextFormat { time })
    };
    match target {
        LogTarget::File(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            registry.with(fmt(true).with_writer(Mutex::new(f))).init();
            Ok("log file")
        }
        LogTarget::JournalOrStderr if Path::new(super::journal::SOCKET).exists() => {
            match super::journal::Journal::connect("distccd") {
                Ok(j) => {
                    registry.with(j).init();
                    Ok("journal")
                }
                Err(_) => {
                    registry.with(fmt(true).with_writer(std::io::stderr)).init();
                    Ok("stderr")
                }
            }
        }
        LogTarget::Stderr | LogTarget::JournalOrStderr => {
            // Under systemd stderr is the journal already; its own time
            // stamps make ours noise.
            let time = std::env::var_os("JOURNAL_STREAM").is_none();
            registry.with(fmt(time).with_writer(std::io::stderr)).init();
            Ok("stderr")
        }
    }
}

/// Text logs: time, level and distcc's one-line message. The structured
/// fields of an event are for the journal only.
struct TextFormat {
    time: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for TextFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::time::FormatTime;
        if self.time {
            tracing_subscriber::fmt::time::SystemTime.format_time(&mut w)?;
            w.write_char(' ')?;
        }
        struct Message<'w, 'a>(
            &'w mut tracing_subscriber::fmt::format::Writer<'a>,
            std::fmt::Result,
        );
        impl tracing::field::Visit for Message<'_, '_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.1 = write!(self.0, "{value:?}");
                }
            }
        }
        write!(w, "{:>5} ", event.metadata().level())?;
        let mut m = Message(&mut w, Ok(()));
        event.record(&mut m);
        m.1?;
        writeln!(w)
    }
}

pub fn write_pid_file(path: &Path) -> Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("writing pid file {}", path.display()))?;
    writeln!(f, "{}", std::process::id())?;
    Ok(())
}

/// The child's side of `detach`: the parent is still waiting, and exits
/// only when told the daemon is ready or when the child has exited.
pub struct Detached {
    to_parent: Option<std::os::fd::OwnedFd>,
}

impl Detached {
    /// Not detached (`--no-detach`, systemd, inetd): nobody is waiting.
    pub fn none() -> Self {
        Detached { to_parent: None }
    }

    /// Lets the parent exit 0, and sends stderr to /dev/null: until now the
    /// child's start-up errors (a user that does not exist, a pid file that
    /// cannot be written) reached the terminal and the parent's exit status.
    pub fn ready(&mut self) -> Result<()> {
        let Some(fd) = self.to_parent.take() else {
            return Ok(());
        };
        let null = OpenOptions::new().write(true).open("/dev/null")?;
        unistd::dup2_stderr(&null).context("redirecting stderr")?;
        unistd::write(&fd, b"1").context("telling the parent the daemon is ready")?;
        Ok(())
    }
}

/// Goes into the background. The parent does not exit until the child calls
/// [`Detached::ready`] (exit 0) or exits first (the parent exits with the
/// child's status): whoever ran `distccd --daemon` can use the port and read
/// the pid file as soon as it returns, and a daemon that failed to start is
/// not reported as started. The child leads a new session with stdin and
/// stdout on /dev/null.
#[allow(unsafe_code)]
pub fn detach() -> Result<Detached> {
    use nix::sys::wait::{WaitStatus, waitpid};
    let (from_child, to_parent) = unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    // SAFETY: called from `main` before any thread is started, so the child
    // is a complete copy of a single-threaded process.
    match unsafe { unistd::fork() }.context("fork")? {
        unistd::ForkResult::Parent { child } => {
            drop(to_parent);
            let mut byte = [0u8; 1];
            let told = loop {
                match unistd::read(&from_child, &mut byte) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => break r.is_ok_and(|n| n == 1),
                }
            };
            if told {
                std::process::exit(0);
            }
            // The child exited (or crashed) before it was ready; it has
            // said why on stderr.
            let code = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break code,
                    Ok(WaitStatus::Signaled(..)) | Err(_) => break i32::from(crate::exitcode::DISTCC_FAILED),
                    Ok(_) => continue,
                }
            };
            std::process::exit(if code == 0 {
                i32::from(crate::exitcode::DISTCC_FAILED)
            } else {
                code
            });
        }
        unistd::ForkResult::Child => {}
    }
    drop(from_child);
    unistd::setsid().context("setsid")?;
    let null = fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    unistd::dup2_stdin(&null).context("redirecting stdin")?;
    unistd::dup2_stdout(&null).context("redirecting stdout")?;
    Ok(Detached {
        to_parent: Some(to_parent),
    })
}
