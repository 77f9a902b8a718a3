/*!
A REAPI (Bazel Remote Execution API v2) client for one compile.

`run` takes an `Endpoint` (where the cluster is) and a `Job` (the compile,
as files and a command line) and returns what the compile did, or a
`Fault` saying why the cluster could not tell us. The work is split:

- `action`: PURE. The Command, the input root Directory tree and the Action,
  every blob with its SHA-256 digest. Deterministic: the same job always
  makes the same action digest, which is what makes the action cache work.
- `client`: the I/O. A tokio current-thread runtime made inside `run`
  (a client that never talks to a REAPI host pays nothing for gRPC), the
  cache lookup, uploads, `Execute` and downloads.

A compile that ran and failed is not a fault: it is an `Outcome` with a
non-zero `exit_code` and its stderr, as from a distccd.
*/

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub mod action;
mod client;

/// Where the cluster is: from a `reapi://HOST:PORT[,instance=NAME][,tls]`
/// host, plus the file holding a bearer token, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The REAPI instance name, sent on every request ("" is the default).
    pub instance: String,
    /// https with the system's roots, rather than plain http/2.
    pub tls: bool,
    /// Read at each `run` and sent as `authorization: Bearer …`.
    pub token_file: Option<PathBuf>,
}

/// One compile, as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The command line, with the client's relative file names.
    pub argv: Vec<String>,
    /// The whole environment of the command (sorted into the Command).
    pub env: Vec<(String, String)>,
    /// Relative to the input root; "" for the root itself.
    pub working_dir: String,
    /// The files of the input root.
    pub inputs: Vec<Input>,
    /// Output files, relative to `working_dir`.
    pub outputs: Vec<String>,
    /// Action.platform properties (sorted into the Action).
    pub platform: Vec<(String, String)>,
    /// Action.salt: the compiler's identity, so that no cache entry is
    /// shared across compilers.
    pub salt: Vec<u8>,
    /// The Action's execution timeout, and the bound on the whole `run`.
    pub timeout: Duration,
    pub do_not_cache: bool,
}

/// A file of the input root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Relative to the input root, `/`-separated, no `.` or `..`.
    pub path: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// What the compile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The outputs the compile made, in the job's order, named as in the
    /// job; an output it did not make is absent.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// From the action cache: nothing ran for this `run`.
    pub cached: bool,
    /// `hash/size`, for logs and for finding the action on the server.
    pub action_digest: String,
}

/// Why the cluster could not give an `Outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No connection, or the server said UNAVAILABLE: try elsewhere.
    Unavailable(String),
    /// Our deadline (the job's timeout) or the server's passed.
    Deadline(String),
    /// PERMISSION_DENIED or UNAUTHENTICATED, or no readable token.
    Permission(String),
    /// The server refused the request (precondition, invalid argument,
    /// not found, resource exhausted, unimplemented, ...).
    Refused(String),
    /// The reply made no sense.
    Protocol(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Unavailable(m) => write!(f, "REAPI server unavailable: {m}"),
            Fault::Deadline(m) => write!(f, "REAPI deadline exceeded: {m}"),
            Fault::Permission(m) => write!(f, "REAPI permission denied: {m}"),
            Fault::Refused(m) => write!(f, "REAPI request refused: {m}"),
            Fault::Protocol(m) => write!(f, "REAPI protocol error: {m}"),
        }
    }
}

impl std::error::Error for Fault {}

/// Runs `job` on the cluster at `endpoint`: a cache hit if the action
/// cache has it, else uploads what the server lacks and executes it.
/// Blocking; makes (and drops) its own runtime.
pub fn run(endpoint: &Endpoint, job: &Job) -> Result<Outcome, Fault> {
    client::run(endpoint, job)
}
