/*!
One connection: read a request, decide, compile in a private directory, reply.

A job goes through four phases, each of which either hands the next what it
needs or ends the job with a [`Refusal`] (code and reason, sent to the client
and logged) or a [`Stop`] that cannot be answered:

1. `admit`: the client is allowed; its request arrives in time (the header
   within `--header-timeout` of connecting, the source at `--min-rate`, all
   within `--request-timeout`) and fits the memory budget (`--max-queued-mb`);
2. `prepare`: the command line is one the server may run, on a compiler it
   allows, and the source opens no file;
3. `compile`: in a compile slot, in a job directory of its own, the compiler
   runs sandboxed (`sandbox`), killed if the client goes away or
   `--job-lifetime` passes; its outputs are bounded by `--max-output-mb`;
4. `reply`: sent after the slot is given back, each write within
   `--write-timeout`.

Whatever happens, the job directory is emptied and the daemon goes on
serving. distcc 3.4 hangs up on a refused request, and users see "server
provided no answer"; here the reply's SERR says why.
*/

use std::ffi::OsString;
use std::fs;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use super::access;
use super::budget::{Budget, Held};
use super::compilers::Policy;
use super::live::{Ended, RunningJob};
use super::sandbox::Sandbox;
use crate::args::server::{self, ServerJob};
use crate::exitcode;
use crate::protocol::message::{Decoder, Need, RequestDecoder};
use crate::protocol::{HEADER_LEN, Limits, ProtocolError, Reply, Request, Version};

/// Who is on the other end.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    /// A pipe or Unix socket (SSH, tests): no address to check.
    Local,
}

impl Peer {
    fn ip(self) -> Option<IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip().to_canonical()),
            Peer::Local => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(
                f,
                "{}",
                std::net::SocketAddr::new(a.ip().to_canonical(), a.port())
            ),
            Peer::Local => f.write_str("NOTSOCKET"),
        }
    }
}

/// Everything a job needs to know, fixed at start-up.
#[derive(Debug)]
pub struct Config {
    pub allow: Vec<IpNet>,
    pub compilers: Policy,
    /// `--enable-tcp-insecure`, for non-TCP peers only.
    pub tcp_insecure: bool,
    pub limits: Limits,
    /// Time a client has to send its whole request.
    pub request_timeout: Duration,
    /// Time from connecting to the end of the header and command line.
    pub header_timeout: Duration,
    /// Slowest average rate for the source, bytes a second (0: none).
    pub min_rate: u64,
    /// Time to write the whole reply.
    pub io_timeout: Duration,
    /// Time each write of the reply may take.
    pub write_timeout: Duration,
    pub job_lifetime: Option<Duration>,
    /// Where job directories are made.
    pub tmpdir: PathBuf,
    /// PATH the compilers are found on and run with.
    pub path: OsString,
    /// Most bytes of compiler stdout or stderr kept for the reply.
    pub max_output: usize,
    /// Largest object returned, and largest file a compiler may write.
    pub max_object: u64,
    /// Connections reading a request at once (idle ones do not count).
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_per_client: usize,
    /// Bytes of requests and replies held in memory, all connections together.
    pub max_queued: usize,
    /// `--sysroot` values clients may name.
    pub sysroots: Vec<String>,
    pub sandbox: Sandbox,
}

pub struct Server {
    pub config: Config,
    pub slots: Semaphore,
    /// `--jobs`.
    pub jobs: usize,
    /// What the daemon is doing and has done: the one source of counts.
    pub live: super::live::Live,
    /// Job directories, kept empty between jobs.
    pub dirs: super::workdir::Pool,
    /// `--max-queued-mb`.
    pub budget: Budget,
    /// `--max-connections`: held while a request is being read.
    sending: Semaphore,
    /// Open connections per client address (`--max-per-client`).
    per_client: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    next_job: AtomicU64,
}

impl Server {
    /// `STATUS=` and the stats page's status line: one computation for both.
    pub fn status(&self) -> String {
        let t = self.live.totals();
        super::systemd::status_line(
            self.live.running(),
            t.ok + t.error,
            t.timeout + t.disconnected,
            t.refused + t.bad_request,
        )
    }

    pub fn new(config: Config, jobs: usize) -> Arc<Server> {
        let dirs = super::workdir::Pool::new(&config.tmpdir);
        Arc::new(Server {
            slots: Semaphore::new(jobs),
            jobs,
            live: Default::default(),
            dirs,
            budget: Budget::new(config.max_queued),
            sending: Semaphore::new(config.max_connections),
            per_client: Default::default(),
            next_job: AtomicU64::new(0),
            config,
        })
    }

    /// Counts a connection from `ip`; `None` if it has too many open already.
    fn connect(&self, ip: Option<IpAddr>) -> Option<ClientSlot<'_>> {
        if let Some(ip) = ip {
            let mut m = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let n = m.entry(ip).or_default();
            if *n >= self.config.max_per_client {
                return None;
            }
            *n += 1;
        }
        Some(ClientSlot(self, ip))
    }
}

/// One open connection of a client address.
struct ClientSlot<'a>(&'a Server, Option<IpAddr>);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        if let Some(ip) = self.1 {
            let mut m = self.0.per_client.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = m.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&ip);
                }
            }
        }
    }
}

/// A job that ends without a compile: the client is told `why` with distcc's
/// exit `code` for it (100 and up, so it compiles elsewhere or locally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u8,
    pub why: String,
}

impl Refusal {
    pub fn new(code: u8, why: impl Into<String>) -> Refusal {
        Refusal {
            code,
            why: why.into(),
        }
    }

    /// distcc's result name for the log line, and the counter it goes to.
    fn result(&self) -> (&'static str, Ended) {
        match self.code {
            exitcode::PROTOCOL_ERROR => ("REJ_BAD_REQ", Ended::BadRequest),
            exitcode::TIMEOUT => ("COMPILE_TIMEOUT", Ended::Timeout),
            _ => ("REFUSED", Ended::Refused),
        }
    }
}

/// How a phase ends a job early.
#[derive(Debug)]
enum Stop {
    /// Answered, when the client's version is known.
    Refused(Refusal),
    /// The client went away or broke the connection: nobody to answer.
    Disconnected(String),
    /// Connected and closed (or stayed silent) without a byte: a port probe
    /// or an idle connection, not a client.
    Probe,
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Stop {
        Stop::Refused(r)
    }
}

impl From<server::Refusal> for Refusal {
    fn from(r: server::Refusal) -> Refusal {
        Refusal::new(exitcode::ACCESS_DENIED, r.0)
    }
}

impl From<server::Refusal> for Stop {
    fn from(r: server::Refusal) -> Stop {
        Stop::Refused(r.into())
    }
}

/// A compile that ran, for the log line.
struct Compiled {
    status: u32,
    compiler: String,
    input: String,
    version: Version,
}

/// Free bytes where jobs are written.
fn free_space(dir: &Path) -> Option<u64> {
    nix::sys::statvfs::statvfs(dir)
        .ok()
        .map(|v| v.blocks_available() * v.fragment_size())
}

fn refusal_reply(version: Version, r: &Refusal) -> Reply {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    Reply {
        version,
        status: u32::from(r.code) << 8,
        stderr: format!("distccd-rs on {host}: {}\n", r.why).into_bytes(),
        stdout: Vec::new(),
        object: Vec::new(),
        dotd: None,
    }
}

/// Serves one connection to the end. Never returns an error: every failure
/// is answered (when the client can still understand an answer) and logged.
pub async fn handle<R, W>(server: Arc<Server>, peer: Peer, reader: R, mut writer: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // A request is a run of small headers and words: read them from a
    // buffer, not with a system call each. Small, as most connections
    // waiting at once are idle ones.
    let mut reader = BufReader::with_capacity(16 << 10, reader);
    let started = Instant::now();
    server.live.accepted();
    let mut version = None;
    let result = match server.connect(peer.ip()) {
        Some(_slot) => run(&server, peer, &mut reader, &mut writer, &mut version).await,
        None => {
            let cfg = &server.config;
            let why = format!(
                "too many connections from {peer}: at most {} at once (--max-per-client)",
                cfg.max_per_client
            );
            version = stranger_version(&mut reader, cfg.header_timeout.min(Duration::from_secs(2))).await;
            Err(Stop::Refused(Refusal::new(exitcode::BUSY, why)))
        }
    };
    let ms = started.elapsed().as_millis() as u64;
    let ip = peer.ip();
    if version == Some(Version::Pump) {
        server.live.pump_job();
    }
    match result {
        Ok(Compiled {
            status,
            compiler,
            input,
            version,
        }) => {
            let (exit, sig, core) = (status >> 8 & 0xff, status & 0x7f, status >> 7 & 1);
            let protocol = version.number();
            let (result, ended) = if status == 0 {
                ("COMPILE_OK", Ended::Ok)
            } else {
                ("COMPILE_ERROR", Ended::Error)
            };
            tracing::info!(
                peer = %peer, result, compiler = %compiler, input = %input, exit, time_ms = ms, protocol,
                "client: {peer} {result} exit:{exit} sig:{sig} core:{core} ret:{exit} time:{ms}ms protocol:{protocol} {compiler} {input}"
            );
            server.live.ended(ip, ended, None, Some((&compiler, &input, ms)));
        }
        Err(Stop::Probe) => {
            tracing::debug!(
                "client: {peer} closed the connection or stayed silent without sending a request"
            );
            return;
        }
        Err(Stop::Disconnected(why)) => {
            let result = "CLI_DISCONN";
            tracing::warn!(peer = %peer, result, reason = %why, time_ms = ms, "client: {peer} {result} time:{ms}ms: {why}");
            server.live.ended(ip, Ended::Disconnected, Some(&why), None);
        }
        Err(Stop::Refused(r)) => {
            if let Some(v) = version {
                let _ = send(&server, &mut writer, &refusal_reply(v, &r)).await;
            }
            let (result, ended) = r.result();
            let why = &r.why;
            tracing::warn!(peer = %peer, result, reason = %why, time_ms = ms, "client: {peer} {result} time:{ms}ms: {why}");
            server.live.ended(ip, ended, Some(why), None);
        }
    }
    // Let the client read everything before the socket closes: closing with
    // unread input makes the kernel send a reset, which can discard the reply.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = writer.shutdown().await;
        let _ = tokio::io::copy(&mut (&mut reader).take(1 << 20), &mut tokio::io::sink()).await;
    })
    .await;
}

/// Writes the reply in pieces, each within `--write-timeout` and all within
/// DISTCC_IO_TIMEOUT: a client that stops reading is dropped, not waited for.
async fn send<W: AsyncWrite + Unpin>(server: &Server, writer: &mut W, reply: &Reply) -> Result<(), String> {
    let cfg = &server.config;
    let bytes = reply.encode();
    let all = Instant::now() + cfg.io_timeout;
    for piece in bytes.chunks(256 << 10) {
        let by = all.min(Instant::now() + cfg.write_timeout);
        match timeout_at(by, writer.write_all(piece)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("writing the reply: {e}")),
            Err(_) if by == all => {
                return Err(format!("reply not sent within {}s", cfg.io_timeout.as_secs()));
            }
            Err(_) => {
                return Err(format!(
                    "client stopped reading the reply: no progress in {}s (--write-timeout)",
                    cfg.write_timeout.as_secs()
                ));
            }
        }
    }
    match timeout_at(all.min(Instant::now() + cfg.write_timeout), writer.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing the reply: {e}")),
        Err(_) => Err("timed out flushing the reply".into()),
    }
}

/// The DIST header of a client we will not serve, so the refusal can be in
/// its version; nothing else from it is read.
async fn stranger_version<R: AsyncRead + Unpin>(reader: &mut R, within: Duration) -> Option<Version> {
    let mut dec = RequestDecoder::new(Limits::default());
    let mut h = [0u8; HEADER_LEN];
    match tokio::time::timeout(within, reader.read_exact(&mut h)).await {
        Ok(Ok(_)) => dec.header(&h).ok().and(dec.version()),
        _ => None,
    }
}

async fn run<R, W>(
    server: &Server,
    peer: Peer,
    reader: &mut BufReader<R>,
    writer: &mut W,
    version: &mut Option<Version>,
) -> Result<Compiled, Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (request, held) = admit(server, peer, reader, version).await?;
    let job = prepare(server, peer, &request)?;
    let request = scanned(request).await?;
    let (reply, compiled, _held) = compile(server, peer, job, request, held, reader).await?;
    send(server, writer, &reply).await.map_err(Stop::Disconnected)?;
    Ok(compiled)
}

/// Phase 1: an allowed client's whole request, in time and within budget.
async fn admit<'s, R: AsyncRead + Unpin>(
    server: &'s Server,
    peer: Peer,
    reader: &mut BufReader<R>,
    version: &mut Option<Version>,
) -> Result<(Request, Held<'s>), Stop> {
    let cfg = &server.config;
    let connected = Instant::now();
    if let Peer::Tcp(addr) = peer
        && !access::allowed(&cfg.allow, addr.ip())
    {
        *version = stranger_version(reader, cfg.header_timeout.min(Duration::from_secs(5))).await;
        return Err(Refusal::new(
            exitcode::ACCESS_DENIED,
            format!(
                "access denied: client {} is not in this server's --allow list",
                addr.ip().to_canonical()
            ),
        )
        .into());
    }
    let header_by = connected + cfg.header_timeout.min(cfg.request_timeout);
    let late = |what: &str| {
        Refusal::new(
            exitcode::PROTOCOL_ERROR,
            format!(
                "{what} not received within {}s of connecting",
                cfg.header_timeout.min(cfg.request_timeout).as_secs()
            ),
        )
    };
    // Until its header is in, a connection holds almost nothing (a few
    // words, for at most the header timeout), so it takes no place among
    // those sending a source (--max-connections): idle and trickling
    // connections cannot lock out a client.
    match timeout_at(header_by, reader.fill_buf()).await {
        Err(_) => return Err(Stop::Probe),
        Ok(Ok([])) => return Err(Stop::Probe),
        Ok(Err(e)) => return Err(Stop::Disconnected(format!("reading the request: {e}"))),
        Ok(Ok(_)) => {}
    }
    let mut dec = RequestDecoder::with_pump(cfg.limits.clone());
    let mut held = server.budget.none();
    // Taken when the source starts (DOTI, or protocol 3's first FILE).
    let mut sending = None;
    let all_by = connected + cfg.request_timeout;
    let busy = |budget: &Budget| {
        Refusal::new(
            exitcode::BUSY,
            format!(
                "server busy: requests and replies waiting here hold {} of the {} MiB allowed in memory \
                 (--max-queued-mb)",
                budget.used() >> 20,
                budget.total() >> 20
            ),
        )
    };
    loop {
        match dec.need() {
            Need::Header | Need::HeaderOrEnd => {
                let mut h = [0u8; HEADER_LEN];
                let by = if sending.is_some() { all_by } else { header_by };
                match timeout_at(by, reader.read_exact(&mut h)).await {
                    Err(_) => return Err(late("request header").into()),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Err(if dec.version().is_none() {
                            Stop::Probe
                        } else {
                            Stop::Disconnected(ProtocolError::Truncated("a header").to_string())
                        });
                    }
                    Ok(Err(e)) => return Err(Stop::Disconnected(format!("reading the request: {e}"))),
                    Ok(Ok(_)) => {}
                }
                let r = dec.header(&h);
                *version = dec.version();
                r.map_err(protocol_refusal)?;
            }
            Need::Body {
                len,
                what: what @ ("DOTI" | "FILE"),
            } => {
                let len = len as usize;
                if sending.is_none() {
                    let Ok(permit) = timeout_at(all_by, server.sending.acquire()).await else {
                        return Err(Refusal::new(
                            exitcode::BUSY,
                            format!(
                                "server busy: {} clients are sending sources already (--max-connections)",
                                cfg.max_connections
                            ),
                        )
                        .into());
                    };
                    sending = Some(permit.map_err(|_| Stop::Disconnected("server shutting down".into()))?);
                }
                // The rate rule: after the header, the source may take as
                // long as it needs at --min-rate, and never past the
                // request timeout.
                let slack = cfg.header_timeout;
                let by = match (len as u64).checked_div(cfg.min_rate) {
                    Some(secs) => all_by.min(Instant::now() + slack + Duration::from_secs(secs)),
                    None => all_by,
                };
                let mut body = Vec::with_capacity(len.min(1 << 20));
                while body.len() < len {
                    let want = (len - body.len()).min(256 << 10);
                    // Counted as it arrives, not as declared: a slow client
                    // that promises a large source holds only what it sent.
                    if !held.grow(want) {
                        return Err(busy(&server.budget).into());
                    }
                    let before = body.len();
                    match timeout_at(by, (&mut *reader).take(want as u64).read_to_end(&mut body)).await {
                        Err(_) => {
                            return Err(Refusal::new(
                                exitcode::PROTOCOL_ERROR,
                                format!(
                                    "request too slow: {} of {len} bytes of source in {}s (--min-rate {} KiB/s, \
                                     --request-timeout {}s)",
                                    body.len(),
                                    connected.elapsed().as_secs(),
                                    cfg.min_rate >> 10,
                                    cfg.request_timeout.as_secs()
                                ),
                            )
                            .into());
                        }
                        Ok(Err(e)) => return Err(Stop::Disconnected(format!("reading the request: {e}"))),
                        Ok(Ok(_)) if body.len() == before => {
                            return Err(Stop::Disconnected(ProtocolError::Truncated(what).to_string()));
                        }
                        Ok(Ok(_)) => {}
                    }
                }
                let room = held.bytes() + server.budget.available();
                let capped = room < cfg.limits.max_plain;
                if capped {
                    dec.cap_plain(room);
                }
                match dec.body(body) {
                    Err(ProtocolError::TooLarge { .. }) if capped => return Err(busy(&server.budget).into()),
                    r => r.map_err(protocol_refusal)?,
                }
                // What is held now: the decompressed files so far.
                if !held.resize(dec.plain_bytes()) {
                    return Err(busy(&server.budget).into());
                }
            }
            Need::Body { len, what } => {
                let mut body = Vec::new();
                // Protocol 3's names and links come between its files: past
                // the header, they have the request's time.
                let by = if sending.is_some() { all_by } else { header_by };
                match timeout_at(by, (&mut *reader).take(len.into()).read_to_end(&mut body)).await {
                    Err(_) => return Err(late("request command line").into()),
                    Ok(Err(e)) => return Err(Stop::Disconnected(format!("reading the request: {e}"))),
                    Ok(Ok(_)) => {}
                }
                if body.len() != len as usize {
                    return Err(Stop::Disconnected(ProtocolError::Truncated(what).to_string()));
                }
                dec.body(body).map_err(protocol_refusal)?;
            }
            Need::Done => break,
        }
    }
    let plain = dec.plain_bytes();
    let request = dec.finish();
    if !held.resize(plain) {
        return Err(busy(&server.budget).into());
    }
    Ok((request, held))
}

fn protocol_refusal(e: ProtocolError) -> Refusal {
    match e {
        ProtocolError::UnsupportedVersion(3) => Refusal::new(
            exitcode::PROTOCOL_ERROR,
            "pump mode (protocol 3, ',cpp') is not supported by this server; use ',lzo' without ',cpp'",
        ),
        e => Refusal::new(exitcode::PROTOCOL_ERROR, e.to_string()),
    }
}

/// Phase 2's last check, the directive scan of a plain-mode source, on a
/// blocking thread: it reads every byte of up to `--max-input-mb`, and the
/// event loop must go on meanwhile (other connections' deadlines run on it).
async fn scanned(request: Request) -> Result<Request, Stop> {
    if request.pump.is_some() {
        return Ok(request);
    }
    tokio::task::spawn_blocking(move || server::check_preprocessed(&request.doti).map(|()| request))
        .await
        .map_err(|e| Refusal::new(exitcode::DISTCC_FAILED, format!("scanning the source: {e}")))?
        .map_err(Stop::from)
}

/// What phase 2 decided to run.
struct Prepared {
    exe: PathBuf,
    compiler: String,
    job: ServerJob,
    /// Protocol 3: where the client's files go under the job's root.
    pump: Option<super::pump::Layout>,
    argv: Vec<String>,
}

/// The job's root for protocol 3, inside its directory.
const PUMP_ROOT: &str = "root";

/// Writes a checked protocol-3 layout under `root`. The layout has no entry
/// under a link, so no directory made here goes through one; files are
/// created new, never opened through a name that exists.
fn lay_out(root: &Path, layout: &super::pump::Layout) -> std::io::Result<()> {
    use super::pump::{LinkTarget, Placed};
    use std::io::Write;
    fs::create_dir_all(root.join(&layout.cwd))?;
    for (path, placed) in &layout.entries {
        let at = root.join(path);
        if let Some(parent) = at.parent() {
            fs::create_dir_all(parent)?;
        }
        match placed {
            Placed::File(bytes) => fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&at)?
                .write_all(bytes)?,
            Placed::Link(LinkTarget::InRoot(t)) => std::os::unix::fs::symlink(root.join(t), &at)?,
            Placed::Link(LinkTarget::Relative(t)) => std::os::unix::fs::symlink(t, &at)?,
        }
    }
    Ok(())
}

/// Phase 2: a command line the server may run, on a compiler it allows, on
/// a source that opens no file.
fn prepare(server: &Server, peer: Peer, request: &Request) -> Result<Prepared, Stop> {
    let cfg = &server.config;
    let argv: Vec<String> = request
        .argv
        .iter()
        .map(|a| String::from_utf8(a.clone()))
        .collect::<Result<_, _>>()
        .map_err(|_| Refusal::new(exitcode::PROTOCOL_ERROR, "the command line is not valid UTF-8"))?;
    let compiler = argv[0].clone();
    let exe = if cfg.tcp_insecure && matches!(peer, Peer::Local) {
        super::compilers::find_on_path(&compiler, &cfg.path, None).ok_or_else(|| {
            Refusal::new(
                exitcode::COMPILER_MISSING,
                format!("compiler '{compiler}' not found on this server"),
            )
        })?
    } else {
        cfg.compilers.resolve(&compiler, &cfg.path)?
    };
    // Compile in the job directory with relative names, so diagnostics and
    // objects name `x.i` exactly as a local compile of `x.i` would.
    let Some(input) = &request.pump else {
        let job = server::rewrite(&argv, job_input_name, "distccd-output.o", &cfg.sysroots)?;
        // The source's scan is `scanned`'s, off the event loop.
        return Ok(Prepared {
            exe,
            compiler,
            job,
            pump: None,
            argv,
        });
    };
    // Protocol 3: the compiler preprocesses, by design reading the files
    // sent (laid out under the job's root) and the system headers; the
    // sandbox keeps it to those. Checked here with a stand-in root, and
    // rewritten again with the real one in the compile phase.
    let layout =
        super::pump::layout(input).map_err(|e| Refusal::new(exitcode::ACCESS_DENIED, e.to_string()))?;
    let stand_in = server::PumpJob {
        root: "/root",
        deps_file: "/deps",
    };
    let job = server::rewrite_pump(&argv, "/out.o", &cfg.sysroots, stand_in)?;
    Ok(Prepared {
        exe,
        compiler,
        job,
        pump: Some(layout),
        argv,
    })
}

/// Phase 3: the compile, in a slot and a directory of its own, sandboxed.
/// Returns the reply with the slot and directory already given back.
async fn compile<'s, R: AsyncRead + Unpin>(
    server: &'s Server,
    peer: Peer,
    p: Prepared,
    request: Request,
    mut held: Held<'s>,
    reader: &mut R,
) -> Result<(Reply, Compiled, Held<'s>), Stop> {
    let cfg = &server.config;
    let Ok(slot) = server.slots.acquire().await else {
        return Err(Stop::Disconnected("server shutting down".into()));
    };
    let job_no = server.next_job.fetch_add(1, Ordering::Relaxed);
    let running = server.live.start(RunningJob {
        id: job_no,
        peer: peer.to_string(),
        compiler: p.compiler.clone(),
        input: p.job.input_name.clone(),
        started: std::time::Instant::now(),
    });
    tracing::debug!(
        "client: {peer} compiling {}: {} running",
        p.job.input_name,
        server.live.running()
    );

    // A full disk would otherwise look like a compile error in the user's
    // code; said up front, the client knows to go elsewhere.
    let source_bytes = request.doti.len() as u64
        + request.pump.as_ref().map_or(0, |p| {
            p.entries
                .iter()
                .map(|(_, e)| match e {
                    crate::protocol::message::PumpEntry::File(b) => b.len() as u64,
                    crate::protocol::message::PumpEntry::Link(_) => 0,
                })
                .sum()
        });
    let need = source_bytes * 3 + (4 << 20);
    if let Some(free) = free_space(&cfg.tmpdir)
        && free < need
    {
        return Err(Refusal::new(
            exitcode::IO_ERROR,
            format!(
                "server TMPDIR {} is full: {} KiB free, a job this size needs {} KiB",
                cfg.tmpdir.display(),
                free >> 10,
                need >> 10
            ),
        )
        .into());
    }
    let io = |what: &str, e: std::io::Error| {
        Refusal::new(
            exitcode::IO_ERROR,
            format!("{what} in {}: {e}", cfg.tmpdir.display()),
        )
    };
    let dir = server
        .dirs
        .take()
        .map_err(|e| io("cannot create a job directory", e))?;
    // Where the compiler runs, what it runs, and (protocol 3) the root its
    // client's files are under.
    let mut p = p;
    let (cwd, root) = match &p.pump {
        None => {
            fs::write(dir.path().join(job_input_name(&p.job.input_name)), &request.doti)
                .map_err(|e| io("cannot write the input", e))?;
            (dir.path().to_path_buf(), None)
        }
        Some(layout) => {
            let root = dir.path().join(PUMP_ROOT);
            lay_out(&root, layout).map_err(|e| io("cannot lay out the files sent", e))?;
            let root_s = root
                .to_str()
                .expect("job directories have UTF-8 names")
                .to_owned();
            let out = dir.path().join("distccd-output.o");
            let deps = dir.path().join("distccd-deps.d");
            let pump = server::PumpJob {
                root: &root_s,
                deps_file: deps.to_str().expect("UTF-8"),
            };
            p.job = server::rewrite_pump(&p.argv, out.to_str().expect("UTF-8"), &cfg.sysroots, pump)?;
            (root.join(&layout.cwd), Some(root_s))
        }
    };
    // On disk now: the source no longer counts against memory.
    let version = request.version;
    drop(request);
    held.resize(0);

    let confined = cfg
        .sandbox
        .prepare(dir.path(), &p.exe)
        .map_err(|e| Refusal::new(exitcode::DISTCC_FAILED, format!("{e:#}")))?;
    // Files, not pipes: a compiler told to read its own stdout through
    // /proc/self/fd/1 reads what it wrote and reaches the end, where a pipe
    // would block it for good (Landlock does not cover pipes). The
    // sandbox's file-size limit bounds them like any other output.
    let capture = |name: &str| {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join(name))
            .map_err(|e| io("cannot create the compiler's output files", e))
    };
    let (out_file, err_file) = (capture("distccd-stdout")?, capture("distccd-stderr")?);
    let mut cmd = tokio::process::Command::new(&p.exe);
    cmd.arg0(&p.compiler)
        .args(&p.job.argv[1..])
        .current_dir(&cwd)
        .env("PATH", &cfg.path)
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(
            out_file
                .try_clone()
                .map_err(|e| io("cannot create the compiler's output files", e))?,
        )
        .stderr(
            err_file
                .try_clone()
                .map_err(|e| io("cannot create the compiler's output files", e))?,
        )
        .process_group(0)
        .kill_on_drop(true);
    confined.confine(cmd.as_std_mut());
    tracing::debug!("client: {peer} running {} as {:?}", p.exe.display(), p.job.argv);
    let spawned = cmd.spawn();
    drop(cmd);
    let mut child = spawned.map_err(|e| {
        Refusal::new(
            exitcode::COMPILER_MISSING,
            format!("failed to exec {}: {e}", p.exe.display()),
        )
    })?;
    let pgid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let max = cfg.max_output;
    let run = async {
        let st = child.wait().await;
        (read_capped(&out_file, max), read_capped(&err_file, max), st)
    };
    let lifetime = async {
        match cfg.job_lifetime {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    // Over TCP, end of input during the compile means the client has gone
    // (distcc clients never half-close). A pipe (inetd, SSH) ends its input
    // normally after the request, so there it says nothing.
    let watch = async {
        match peer {
            Peer::Tcp(_) => client_gone(reader).await,
            Peer::Local => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = run => Ok(r),
        gone = watch => Err(Stop::Disconnected(format!("client went away during the compile ({gone}); compiler killed"))),
        () = lifetime => Err(Stop::Refused(Refusal::new(exitcode::TIMEOUT, format!(
            "compile of {} ran longer than --job-lifetime {}s; compiler killed",
            p.job.input_name, cfg.job_lifetime.unwrap_or_default().as_secs())))),
    };
    if let Some(pg) = pgid {
        // The driver's helpers (cc1, as) share its process group.
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
    }
    let (stdout, mut stderr, status) = match result? {
        (o, e, Ok(st)) => (o, e, st.into_raw() as u32),
        (_, _, Err(e)) => {
            return Err(
                Refusal::new(exitcode::DISTCC_FAILED, format!("waiting for the compiler: {e}")).into(),
            );
        }
    };
    if status != 0 {
        if let Some(what) = hit_file_limit(status, &stderr, dir.path(), cfg.max_object) {
            return Err(Refusal::new(
                exitcode::IO_ERROR,
                format!(
                    "the compile {what}: the server's limit is {} MiB a file (--max-output-mb); compile it locally",
                    cfg.max_object >> 20
                ),
            )
            .into());
        }
        if free_space(&cfg.tmpdir).is_some_and(|f| f < (1 << 20)) {
            return Err(Refusal::new(
                exitcode::IO_ERROR,
                format!(
                    "server TMPDIR {} ran out of space during the compile",
                    cfg.tmpdir.display()
                ),
            )
            .into());
        }
    }
    let mut object = Vec::new();
    if status == 0 {
        let path = dir.path().join("distccd-output.o");
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size >= cfg.max_object {
            return Err(Refusal::new(
                exitcode::IO_ERROR,
                format!(
                    "the object is {} MiB, larger than the server returns (--max-output-mb {}); compile it locally",
                    size >> 20,
                    cfg.max_object >> 20
                ),
            )
            .into());
        }
        if !held.resize(size as usize + stdout.len() + stderr.len()) {
            return Err(Refusal::new(
                exitcode::BUSY,
                format!(
                    "server busy: no room in memory for a {} KiB reply (--max-queued-mb {})",
                    size >> 10,
                    server.budget.total() >> 20
                ),
            )
            .into());
        }
        match fs::read(&path) {
            Ok(o) => object = o,
            Err(e) => stderr.extend_from_slice(
                format!("distccd-rs: cannot read the compiler's output: {e}\n").as_bytes(),
            ),
        }
    }
    let dotd = match (&root, &p.job.deps) {
        (Some(root), Some(deps)) if status == 0 => fs::read(&deps.file)
            .ok()
            .map(|d| super::pump::client_dotd(&d, root)),
        _ => None,
    };
    // Gone before the client hears back, so a finished job leaves nothing,
    // and a client slow to read its reply holds no slot.
    drop(dir);
    drop(running);
    drop(slot);
    let compiled = Compiled {
        status,
        compiler: p.compiler,
        input: p.job.input_name,
        version,
    };
    let reply = Reply {
        version,
        status,
        stderr,
        stdout,
        object,
        dotd,
    };
    Ok((reply, compiled, held))
}

/// How a failed compile shows it was stopped at RLIMIT_FSIZE: a file of
/// the job at the limit, the compiler itself killed by SIGXFSZ (clang's
/// integrated assembler), or the driver saying a helper was (gcc, which
/// also removes the output). None of these happens to a compile that only
/// has errors in its code.
fn hit_file_limit(status: u32, stderr: &[u8], dir: &Path, limit: u64) -> Option<String> {
    let by_signal = std::process::ExitStatus::from_raw(status as i32).signal() == Some(nix::libc::SIGXFSZ);
    if by_signal {
        return Some("was stopped writing a file too large".into());
    }
    let big = fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.metadata().is_ok_and(|m| m.len() >= limit));
    if let Some(e) = big {
        return Some(format!(
            "wrote {} up to the limit",
            e.file_name().to_string_lossy()
        ));
    }
    // strsignal(SIGXFSZ), as the driver reports a helper it lost.
    let said = stderr.windows(24).any(|w| w == b"File size limit exceeded");
    said.then(|| "had a helper (the assembler, say) stopped writing a file too large".into())
}

/// The job's own name for the input: the client's base name when it is a
/// plain one (so `-g` objects and diagnostics match a local build), with the
/// extension of the preprocessed language.
fn job_input_name(client_input: &str) -> String {
    let base = client_input.rsplit('/').next().unwrap_or_default();
    let ext = crate::args::filename::preprocessed_extension(base).unwrap_or("i");
    let stem = base.rsplit_once('.').map(|(s, _)| s).unwrap_or(base);
    let safe = !stem.is_empty()
        && !stem.starts_with(['.', '-'])
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
        && stem != "distccd-output";
    if safe {
        format!("{stem}.{ext}")
    } else {
        format!("input.{ext}")
    }
}

/// The start of a compiler's output file, at most `max` bytes, noting
/// when there was more.
fn read_capped(f: &fs::File, max: usize) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut kept = Vec::new();
    let mut f = f;
    if f.rewind().is_err() {
        return kept;
    }
    let _ = f.take(max as u64 + 1).read_to_end(&mut kept);
    if kept.len() > max {
        kept.truncate(max);
        kept.extend_from_slice(b"\n[distccd-rs: output truncated]\n");
    }
    kept
}

/// Resolves when the client closes its end or sends anything more: a distcc
/// client sends nothing after its request.
async fn client_gone<R: AsyncRead + Unpin>(reader: &mut R) -> String {
    let mut b = [0u8; 1];
    match reader.read(&mut b).await {
        Ok(0) => "connection closed".into(),
        Ok(_) => "unexpected bytes after the request".into(),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_input_names() {
        let cases = [
            ("t.c", "t.i"),
            ("src/dir/x.cpp", "x.ii"),
            ("hello.2.4.i", "hello.2.4.i"),
            ("a.mm", "a.mii"),
            ("../../evil name.c", "input.i"),
            ("-rf.c", "input.i"),
            (".c", "input.i"),
            ("distccd-output.c", "input.i"),
            ("", "input.i"),
        ];
        for (input, want) in cases {
            assert_eq!(job_input_name(input), want, "{input}");
        }
    }
}
