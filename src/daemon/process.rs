/*!
Process set-up for distccd before any thread exists: niceness, dropping root,
detaching, the pid file and logging. Order matters (see `bin/distccd.rs`):
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

/// When running as root, becomes `user` (or `nobody`): groups cleared,
/// gid, then uid, then no_new_privs. Refuses to go on as root.
pub fn drop_root(user: Option<&str>) -> Result<()> {
    if !Uid::effective().is_root() && !Uid::current().is_root() {
        if let Some(u) = user {
            tracing::warn!("--user {u} ignored: not started as root");
        }
        return Ok(());
    }
    let (uid, gid) = match user.map(User::from_name) {
        Some(Ok(Some(u))) => (u.uid, u.gid),
        Some(_) => bail!("--user {}: no such user", user.unwrap_or_default()),
        None => match User::from_name("nobody") {
            Ok(Some(u)) => (u.uid, u.gid),
            _ => (Uid::from_raw(65534), Gid::from_raw(65534)),
        },
    };
    if uid.is_root() {
        bail!("refusing to serve as root: --user must name an unprivileged user");
    }
    unistd::setgroups(&[gid]).context("clearing supplementary groups")?;
    unistd::setgid(gid).context("setgid")?;
    unistd::setuid(uid).context("setuid")?;
    if Uid::effective().is_root() || unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!("still root after dropping privileges");
    }
    nix::sys::prctl::set_no_new_privs().context("PR_SET_NO_NEW_PRIVS")?;
    Ok(())
}

/// Sets up `tracing` to `--log-file` (appending) or stderr.
pub fn init_logging(level: LogLevel, file: Option<&Path>) -> Result<()> {
    let filter = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warning => tracing::Level::WARN,
        LogLevel::Notice | LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_target(false);
    match file {
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            builder.with_ansi(false).with_writer(Mutex::new(f)).init();
        }
        None => builder.with_ansi(false).with_writer(std::io::stderr).init(),
    }
    Ok(())
}

pub fn write_pid_file(path: &Path) -> Result<()> {
    let mut f =
        fs::File::create(path).with_context(|| format!("writing pid file {}", path.display()))?;
    writeln!(f, "{}", std::process::id())?;
    Ok(())
}

/// Goes into the background: the parent exits 0, the child leads a new
/// session with stdio on /dev/null.
#[allow(unsafe_code)]
pub fn detach() -> Result<()> {
    // SAFETY: called from `main` before any thread is started, so the child
    // is a complete copy of a single-threaded process.
    match unsafe { unistd::fork() }.context("fork")? {
        unistd::ForkResult::Parent { .. } => std::process::exit(0),
        unistd::ForkResult::Child => {}
    }
    unistd::setsid().context("setsid")?;
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    unistd::dup2_stdin(&null).context("redirecting stdin")?;
    unistd::dup2_stdout(&null).context("redirecting stdout")?;
    unistd::dup2_stderr(&null).context("redirecting stderr")?;
    Ok(())
}
