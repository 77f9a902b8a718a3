/*!
All of distccd's systemd glue: the listening sockets systemd passes
(`LISTEN_FDS`), `sd_notify` messages, and the watchdog interval.

The notification socket is connected once at start-up, before any chroot
(`--chroot`), so that READY/STATUS/STOPPING still reach systemd from inside
one; a path-based `sendto` per message would not.
*/

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// First fd systemd passes (SD_LISTEN_FDS_START).
const FIRST_FD: RawFd = 3;

/// What `LISTEN_PID`/`LISTEN_FDS` say, if they are meant for this process. Pure.
pub fn listen_fd_range(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    my_pid: u32,
) -> Result<Option<std::ops::Range<RawFd>>, String> {
    let (Some(pid), Some(n)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(my_pid) {
        // Inherited from a parent that was activated: not ours.
        return Ok(None);
    }
    let n: RawFd = n
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS={n}: not a number"))?;
    if !(1..=64).contains(&n) {
        return Err(format!("LISTEN_FDS={n}: expected 1 to 64 sockets"));
    }
    Ok(Some(FIRST_FD..FIRST_FD + n))
}

/// Whether each passed socket is for the statistics page: those a socket
/// unit names `FileDescriptorName=stats` (`distccd-stats.socket`); every
/// other one takes compile requests. Pure.
pub fn stats_sockets(fd_names: Option<&str>, count: usize) -> Vec<bool> {
    let names: Vec<&str> = fd_names.map(|n| n.split(':').collect()).unwrap_or_default();
    (0..count).map(|i| names.get(i) == Some(&"stats")).collect()
}

/// The sockets systemd passed, by what they are for.
pub struct Activated {
    pub compile: Vec<std::net::TcpListener>,
    pub stats: Vec<std::net::TcpListener>,
}

/// The listening TCP sockets systemd passed, checked and made non-blocking
/// (tokio must never see a blocking socket, and `NonBlocking=` is optional).
/// `None` when not socket-activated. Call before any thread exists: it
/// unsets the variables so that compilers do not inherit them.
#[allow(unsafe_code)]
pub fn take_listeners() -> Result<Option<Activated>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let Some(range) = listen_fd_range(pid.as_deref(), fds.as_deref(), std::process::id())? else {
        return Ok(None);
    };
    let for_stats = stats_sockets(names.as_deref(), range.len());
    // SAFETY: no other thread exists yet (called from `main` before the
    // runtime is built), so nothing reads the environment concurrently.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let mut out = Activated {
        compile: Vec::new(),
        stats: Vec::new(),
    };
    for (fd, stats) in range.zip(for_stats) {
        // SAFETY: systemd hands these descriptors to this process (LISTEN_PID
        // matched) and nothing else in it owns them; each is wrapped once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = nix::sys::stat::fstat(owned.as_fd()).map_err(|e| format!("fd {fd}: {e}"))?;
        if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFSOCK {
            return Err(format!("fd {fd} passed by systemd is not a socket"));
        }
        use nix::sys::socket::{getsockopt, sockopt};
        let ty = getsockopt(&owned, sockopt::SockType).map_err(|e| format!("fd {fd}: {e}"))?;
        let listening = getsockopt(&owned, sockopt::AcceptConn).map_err(|e| format!("fd {fd}: {e}"))?;
        if ty != nix::sys::socket::SockType::Stream || !listening {
            return Err(format!(
                "fd {fd} passed by systemd is not a listening stream socket (Accept=yes belongs with --inetd)"
            ));
        }
        let l = std::net::TcpListener::from(owned);
        l.set_nonblocking(true).map_err(|e| format!("fd {fd}: {e}"))?;
        if stats { &mut out.stats } else { &mut out.compile }.push(l);
    }
    if out.compile.is_empty() {
        return Err("systemd passed only statistics sockets; distccd.socket is the one for compiles".into());
    }
    Ok(Some(out))
}

/// A connection to `$NOTIFY_SOCKET`, or nothing when not run by systemd.
pub struct Notifier(Option<UnixDatagram>);

impl Notifier {
    pub fn connect() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier(None);
        };
        let bytes = path.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(std::path::Path::new(&path)),
        };
        let sock = addr.and_then(|a| {
            let s = UnixDatagram::unbound()?;
            s.connect_addr(&a)?;
            Ok(s)
        });
        match sock {
            Ok(s) => Notifier(Some(s)),
            Err(e) => {
                eprintln!("distccd: cannot reach NOTIFY_SOCKET: {e}");
                Notifier(None)
            }
        }
    }

    pub fn active(&self) -> bool {
        self.0.is_some()
    }

    /// Sends `KEY=VALUE` lines; a no-op outside systemd.
    pub fn send(&self, state: &str) -> io::Result<()> {
        match &self.0 {
            Some(s) => s.send(state.as_bytes()).map(drop),
            None => Ok(()),
        }
    }
}

/// How often to ping the watchdog (half of `WatchdogSec=`), if it is on for us.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The `STATUS=` text, also what the stats page reports. Pure.
pub fn status_line(running: u64, served: u64, failed: u64, refused: u64) -> String {
    format!("{running} running, {served} served, {failed} failed, {refused} refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_fds_table() {
        assert_eq!(listen_fd_range(None, None, 7), Ok(None));
        assert_eq!(listen_fd_range(Some("7"), Some("2"), 7), Ok(Some(3..5)));
        assert_eq!(
            listen_fd_range(Some("8"), Some("2"), 7),
            Ok(None),
            "another process's sockets"
        );
        assert!(listen_fd_range(Some("7"), Some("x"), 7).is_err());
        assert!(listen_fd_range(Some("7"), Some("0"), 7).is_err());
        assert!(listen_fd_range(Some("7"), Some("1000"), 7).is_err());
    }

    #[test]
    fn named_sockets() {
        assert_eq!(stats_sockets(None, 2), [false, false]);
        assert_eq!(stats_sockets(Some("distccd.socket:stats"), 2), [false, true]);
        assert_eq!(
            stats_sockets(Some("stats:distccd.socket:x"), 3),
            [true, false, false]
        );
        assert_eq!(
            stats_sockets(Some("stats"), 2),
            [true, false],
            "fewer names than sockets"
        );
        assert_eq!(stats_sockets(Some("statsx:"), 2), [false, false]);
    }

    #[test]
    fn status_text() {
        assert_eq!(
            status_line(2, 40, 1, 3),
            "2 running, 40 served, 1 failed, 3 refused"
        );
    }
}
