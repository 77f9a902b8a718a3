//! How a run of the client ended. Every path through the client returns an
//! [`Outcome`]; `client::main` alone turns it into the exit code and says
//! the last word on a failure.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use super::plan::PlanError;
use super::settings::SettingsError;

#[derive(Debug)]
pub enum Outcome {
    /// Nothing to compile: help, version or the host list was printed.
    Done,
    /// A server ran the compiler and its result is final: 0, or the
    /// user's own error when no local rerun was wanted.
    Remote { host: String, status: ExitStatus },
    /// The command ran here, for `why`; the compiler's status.
    Local { why: String, status: ExitStatus },
    /// The local preprocessor failed on the user's code; its message is on
    /// stderr already.
    Preprocessor(ExitStatus),
    /// distcc could not do what was asked.
    Failed(Failure),
}

/// What stopped distcc itself, as opposed to the compiler.
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Settings(SettingsError),
    /// `--show-hosts`, `-j` or `DISTCC_FALLBACK=0` with a bad host list.
    Hosts(PlanError),
    Recursion,
    CompilerNotFound(String),
    CannotRun {
        program: PathBuf,
        error: io::Error,
    },
    /// Waiting for the preprocessor failed (not the preprocessor itself).
    Preprocessor(io::Error),
    /// `DISTCC_FALLBACK=0` and no host compiled the job; the last host's
    /// fault, if one was tried.
    Undistributed(Option<(String, HostFault)>),
    /// `DISTCC_FALLBACK=0` and the compiled object could not be written.
    Output {
        path: String,
        error: io::Error,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(msg) => write!(f, "{msg}"),
            Failure::Settings(e) => write!(f, "{e}"),
            Failure::Hosts(e) => write!(f, "{e}"),
            Failure::Recursion => write!(f, "distcc seems to have invoked itself recursively!"),
            Failure::CompilerNotFound(name) => write!(
                f,
                "failed to exec {name}: not found on PATH (distcc's own links are skipped)"
            ),
            Failure::CannotRun { program, error } => {
                write!(f, "failed to exec {}: {error}", program.display())
            }
            Failure::Preprocessor(e) => write!(f, "waiting for the preprocessor: {e}"),
            Failure::Undistributed(None) => {
                write!(
                    f,
                    "no usable host, and fallbacks are disabled (DISTCC_FALLBACK=0)"
                )
            }
            Failure::Undistributed(Some((host, fault))) => write!(
                f,
                "failed to distribute and fallbacks are disabled (DISTCC_FALLBACK=0); \
                 the last host, {host}: {fault}"
            ),
            Failure::Output { path, error } => write!(f, "cannot write {path}: {error}"),
        }
    }
}

/// A host that failed us: it is backed off and the job goes elsewhere.
#[derive(Debug)]
pub struct HostFault {
    pub kind: FaultKind,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The name does not resolve, or nothing listens (or ssh cannot start).
    Connect,
    /// `DISTCC_CONNECT_TIMEOUT` or `DISTCC_IO_TIMEOUT` passed.
    Timeout,
    /// The connection broke while sending or reading.
    Io,
    /// The server hung up before its answer was complete.
    Truncated,
    /// The server's bytes are not distcc's protocol.
    Protocol,
    /// The server answered that it would not, or could not, compile, with
    /// one of distcc's own statuses (113 access denied, 110 compiler
    /// missing, ...), or 104 for a compiler killed by a signal there.
    Refused(u8),
}

impl FaultKind {
    /// distcc's exit code for this kind of failure (src/exitcode.h).
    pub fn exit_code(self) -> u8 {
        use crate::exitcode::*;
        match self {
            FaultKind::Connect => CONNECT_FAILED,
            FaultKind::Timeout => TIMEOUT,
            FaultKind::Io => IO_ERROR,
            FaultKind::Truncated => TRUNCATED,
            FaultKind::Protocol => PROTOCOL_ERROR,
            FaultKind::Refused(code) => code,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FaultKind::Connect => "cannot connect",
            FaultKind::Timeout => "timed out",
            FaultKind::Io => "connection failed",
            FaultKind::Truncated => "no complete answer",
            FaultKind::Protocol => "protocol error",
            FaultKind::Refused(_) => "refused",
        }
    }
}

impl HostFault {
    pub fn new(kind: FaultKind, detail: impl Into<String>) -> HostFault {
        HostFault {
            kind,
            detail: detail.into(),
        }
    }

    /// The kind an I/O error on the connection is: a timeout or a break.
    pub fn io(e: &io::Error, doing: &str) -> HostFault {
        let kind = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => FaultKind::Timeout,
            _ => FaultKind::Io,
        };
        HostFault::new(kind, format!("{doing}: {e}"))
    }
}

impl fmt::Display for HostFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

/// The shell's convention for a compiler's status: its exit code, or 128 +
/// the signal that ended it.
pub fn status_code(st: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c as u8,
        (_, Some(s)) => (128 + s) as u8,
        _ => crate::exitcode::DISTCC_FAILED,
    }
}

/// The exit code of a run: the one place the client decides it.
pub fn exit_code(outcome: &Outcome) -> u8 {
    use crate::exitcode::*;
    match outcome {
        Outcome::Done => 0,
        Outcome::Remote { status, .. } | Outcome::Local { status, .. } | Outcome::Preprocessor(status) => {
            status_code(*status)
        }
        Outcome::Failed(f) => match f {
            Failure::Usage(_) | Failure::Settings(_) => BAD_ARGUMENTS,
            Failure::Hosts(_) => BAD_HOSTSPEC,
            Failure::Recursion => RECURSION,
            Failure::CompilerNotFound(_) | Failure::CannotRun { .. } => COMPILER_MISSING,
            Failure::Preprocessor(_) => DISTCC_FAILED,
            // distcc 3.4 says "no hosts" (116) here too, having backed the
            // failed host off; the fault's own code says more.
            Failure::Undistributed(Some((_, fault))) => fault.kind.exit_code(),
            Failure::Undistributed(None) => NO_HOSTS,
            Failure::Output { .. } => IO_ERROR,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_codes() {
        let st = ExitStatus::from_raw;
        let io = || io::Error::from(io::ErrorKind::NotFound);
        let fault = || Some(("h".to_owned(), HostFault::new(FaultKind::Connect, "x")));
        let cases: Vec<(Outcome, u8)> = vec![
            (Outcome::Done, 0),
            (
                Outcome::Remote {
                    host: "h".into(),
                    status: st(0),
                },
                0,
            ),
            (
                Outcome::Remote {
                    host: "h".into(),
                    status: st(1 << 8),
                },
                1,
            ),
            (
                Outcome::Local {
                    why: "w".into(),
                    status: st(3 << 8),
                },
                3,
            ),
            (
                Outcome::Local {
                    why: "w".into(),
                    status: st(11),
                },
                139,
            ),
            (Outcome::Preprocessor(st(1 << 8)), 1),
            (Outcome::Failed(Failure::Usage("u".into())), 101),
            (Outcome::Failed(Failure::Recursion), 111),
            (Outcome::Failed(Failure::CompilerNotFound("cc".into())), 110),
            (
                Outcome::Failed(Failure::CannotRun {
                    program: "cc".into(),
                    error: io(),
                }),
                110,
            ),
            (Outcome::Failed(Failure::Preprocessor(io())), 100),
            (Outcome::Failed(Failure::Undistributed(None)), 116),
            (Outcome::Failed(Failure::Undistributed(fault())), 103),
            (
                Outcome::Failed(Failure::Output {
                    path: "x.o".into(),
                    error: io(),
                }),
                107,
            ),
        ];
        for (outcome, want) in cases {
            assert_eq!(exit_code(&outcome), want, "{outcome:?}");
        }
    }

    #[test]
    fn io_errors_are_timeouts_or_breaks() {
        let t = HostFault::io(&io::Error::from(io::ErrorKind::WouldBlock), "reading");
        assert_eq!(t.kind, FaultKind::Timeout);
        let b = HostFault::io(&io::Error::from(io::ErrorKind::ConnectionReset), "reading");
        assert_eq!(b.kind, FaultKind::Io);
        assert_eq!(FaultKind::Timeout.exit_code(), crate::exitcode::TIMEOUT);
        assert_eq!(
            FaultKind::Refused(113).exit_code(),
            crate::exitcode::ACCESS_DENIED
        );
    }
}
