/*!
One connection: read a request, decide, compile in a private directory, reply.

Whatever happens, the job directory is removed, the compiler's process group
is killed if the client goes away or `--job-lifetime` passes, and the
daemon goes on serving. A request that is refused gets a reply whose SERR
says why (distcc 3.4 just hangs up, and users see "server provided no
answer"), and the refusal is logged.
*/

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::access;
use super::compilers::Policy;
use super::live::{Ended, RunningJob};
use crate::args::server::{self, Refusal};
use crate::exitcode;
use crate::protocol::blocking::ReadError;
use crate::protocol::message::{Decoder, RequestDecoder};
use crate::protocol::{Limits, ProtocolError, Reply, Version, nonblocking};

/// Who is on the other end.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    /// A pipe or Unix socket (SSH, tests): no address to check.
    Local,
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
    /// Time to write the reply.
    pub io_timeout: Duration,
    pub job_lifetime: Option<Duration>,
    /// Where job directories are made.
    pub tmpdir: PathBuf,
    /// PATH the compilers are found on and run with.
    pub path: OsString,
    /// Most bytes of compiler stdout or stderr kept for the reply.
    pub max_output: usize,
    pub max_connections: usize,
    /// `--sysroot` values clients may name.
    pub sysroots: Vec<String>,
}

/// Counters, shared by every job (also the source of STATUS= and stats later).
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub compile_ok: AtomicU64,
    pub compile_error: AtomicU64,
    pub refused: AtomicU64,
    pub bad_request: AtomicU64,
    pub timeout: AtomicU64,
    pub disconnected: AtomicU64,
    pub running: AtomicU64,
}

pub struct Server {
    pub config: Config,
    pub slots: Semaphore,
    /// `--jobs`.
    pub jobs: usize,
    pub stats: Stats,
    pub live: super::live::Live,
    /// Job directories, kept empty between jobs.
    pub dirs: super::workdir::Pool,
    next_job: AtomicU64,
}

impl Server {
    /// `STATUS=` and the stats page's status line: one computation for both.
    pub fn status(&self) -> String {
        let s = &self.stats;
        super::systemd::status_line(
            s.running.load(Ordering::Relaxed),
            s.compile_ok.load(Ordering::Relaxed) + s.compile_error.load(Ordering::Relaxed),
            s.timeout.load(Ordering::Relaxed) + s.disconnected.load(Ordering::Relaxed),
            s.refused.load(Ordering::Relaxed) + s.bad_request.load(Ordering::Relaxed),
        )
    }

    pub fn new(config: Config, jobs: usize) -> Arc<Server> {
        let dirs = super::workdir::Pool::new(&config.tmpdir);
        Arc::new(Server {
            config,
            slots: Semaphore::new(jobs),
            jobs,
            stats: Stats::default(),
            live: Default::default(),
            dirs,
            next_job: AtomicU64::new(0),
        })
    }
}

/// How a job ended; one of distcc's result names for the log line.
#[derive(Debug)]
enum Outcome {
    Compiled {
        status: u32,
        compiler: String,
        input: String,
    },
    Refused(String),
    BadRequest(String),
    Timeout(String),
    Disconnected(String),
    /// Connected and closed without a byte: a port probe, not a client.
    Probe,
}

/// Free bytes where jobs are written.
fn free_space(dir: &Path) -> Option<u64> {
    nix::sys::statvfs::statvfs(dir)
        .ok()
        .map(|v| v.blocks_available() * v.fragment_size())
}

fn refusal_reply(version: Version, code: u8, why: &str) -> Reply {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    Reply {
        version,
        status: u32::from(code) << 8,
        stderr: format!("distccd-rs on {host}: {why}\n").into_bytes(),
        stdout: Vec::new(),
        object: Vec::new(),
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
    // buffer, not with a system call each.
    let mut reader = tokio::io::BufReader::with_capacity(64 << 10, reader);
    let started = Instant::now();
    server.stats.accepted.fetch_add(1, Ordering::Relaxed);
    let outcome = run(&server, peer, &mut reader, &mut writer).await;
    let ms = started.elapsed().as_millis();
    let ip = match peer {
        Peer::Tcp(a) => Some(a.ip()),
        Peer::Local => None,
    };
    let st = &server.stats;
    let failure = match &outcome {
        Outcome::Compiled {
            status,
            compiler,
            input,
        } => {
            let (exit, sig, core) = (status >> 8 & 0xff, status & 0x7f, status >> 7 & 1);
            let (result, counter, ended) = if *status == 0 {
                ("COMPILE_OK", &st.compile_ok, Ended::Ok)
            } else {
                ("COMPILE_ERROR", &st.compile_error, Ended::Error)
            };
            tracing::info!(
                peer = %peer, result, compiler = %compiler, input = %input, exit, time_ms = ms as u64,
                "client: {peer} {result} exit:{exit} sig:{sig} core:{core} ret:{exit} time:{ms}ms {compiler} {input}"
            );
            counter.fetch_add(1, Ordering::Relaxed);
            server
                .live
                .ended(ip, ended, None, Some((compiler, input, ms as u64)));
            None
        }
        Outcome::Refused(why) => Some(("REFUSED", why, &st.refused, Ended::Refused)),
        Outcome::BadRequest(why) => Some(("REJ_BAD_REQ", why, &st.bad_request, Ended::BadRequest)),
        Outcome::Timeout(why) => Some(("COMPILE_TIMEOUT", why, &st.timeout, Ended::Timeout)),
        Outcome::Disconnected(why) => Some(("CLI_DISCONN", why, &st.disconnected, Ended::Disconnected)),
        Outcome::Probe => {
            tracing::debug!("client: {peer} closed the connection without sending a request");
            return;
        }
    };
    if let Some((result, why, counter, ended)) = failure {
        tracing::warn!(
            peer = %peer, result, reason = %why, time_ms = ms as u64,
            "client: {peer} {result} time:{ms}ms: {why}"
        );
        counter.fetch_add(1, Ordering::Relaxed);
        server.live.ended(ip, ended, Some(why), None);
    }
    // Let the client read everything before the socket closes: closing with
    // unread input makes the kernel send a reset, which can discard the reply.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = writer.shutdown().await;
        let _ = tokio::io::copy(&mut (&mut reader).take(1 << 20), &mut tokio::io::sink()).await;
    })
    .await;
}

async fn send<W: AsyncWrite + Unpin>(server: &Server, writer: &mut W, reply: &Reply) -> Result<(), String> {
    let bytes = reply.encode();
    match tokio::time::timeout(server.config.io_timeout, writer.write_all(&bytes)).await {
        Ok(Ok(())) => writer
            .flush()
            .await
            .map_err(|e| format!("writing the reply: {e}")),
        Ok(Err(e)) => Err(format!("writing the reply: {e}")),
        Err(_) => Err("timed out writing the reply".into()),
    }
}

/// Answers with a refusal if the client's version is known, and says how it ended.
async fn refuse<W: AsyncWrite + Unpin>(
    server: &Server,
    writer: &mut W,
    version: Option<Version>,
    code: u8,
    why: String,
) -> Outcome {
    if let Some(v) = version {
        let _ = send(server, writer, &refusal_reply(v, code, &why)).await;
    }
    if code == exitcode::PROTOCOL_ERROR {
        Outcome::BadRequest(why)
    } else {
        Outcome::Refused(why)
    }
}

async fn run<R, W>(server: &Server, peer: Peer, reader: &mut R, writer: &mut W) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let cfg = &server.config;
    let mut dec = RequestDecoder::new(cfg.limits.clone());

    if let Peer::Tcp(addr) = peer
        && !access::allowed(&cfg.allow, addr.ip())
    {
        // Read only the DIST header, so the refusal can be in the client's
        // version; nothing else from a stranger is read.
        let why = format!(
            "access denied: client {} is not in this server's --allow list",
            addr.ip().to_canonical()
        );
        let mut h = [0u8; crate::protocol::HEADER_LEN];
        let version = match tokio::time::timeout(Duration::from_secs(5), reader.read_exact(&mut h)).await {
            Ok(Ok(_)) => dec.header(&h).ok().and(dec.version()),
            _ => None,
        };
        return refuse(server, writer, version, exitcode::ACCESS_DENIED, why).await;
    }

    match tokio::time::timeout(cfg.request_timeout, nonblocking::read_message(reader, &mut dec)).await {
        Err(_) => {
            let why = format!("request not received within {}s", cfg.request_timeout.as_secs());
            return refuse(server, writer, dec.version(), exitcode::PROTOCOL_ERROR, why).await;
        }
        Ok(Err(ReadError::Io(e))) => {
            return Outcome::Disconnected(format!("reading the request: {e}"));
        }
        Ok(Err(ReadError::Protocol(ProtocolError::Truncated("a header")))) if dec.version().is_none() => {
            return Outcome::Probe;
        }
        Ok(Err(ReadError::Protocol(e @ ProtocolError::Truncated(_)))) => {
            return Outcome::Disconnected(e.to_string());
        }
        Ok(Err(ReadError::Protocol(ProtocolError::UnsupportedVersion(3)))) => {
            let why =
                "pump mode (protocol 3, ',cpp') is not supported by this server; use ',lzo' without ',cpp'";
            return refuse(
                server,
                writer,
                dec.version(),
                exitcode::PROTOCOL_ERROR,
                why.into(),
            )
            .await;
        }
        Ok(Err(ReadError::Protocol(e))) => {
            return refuse(
                server,
                writer,
                dec.version(),
                exitcode::PROTOCOL_ERROR,
                e.to_string(),
            )
            .await;
        }
        Ok(Ok(())) => {}
    }
    let request = dec.finish();
    let version = Some(request.version);

    let argv: Vec<String> = match request
        .argv
        .iter()
        .map(|a| String::from_utf8(a.clone()))
        .collect()
    {
        Ok(v) => v,
        Err(_) => {
            let why = "the command line is not valid UTF-8".to_owned();
            return refuse(server, writer, version, exitcode::PROTOCOL_ERROR, why).await;
        }
    };
    let compiler_name = argv[0].clone();

    let exe = if cfg.tcp_insecure && matches!(peer, Peer::Local) {
        match super::compilers::find_on_path(&compiler_name, &cfg.path, None) {
            Some(p) => p,
            None => {
                let why = format!("compiler '{compiler_name}' not found on this server");
                return refuse(server, writer, version, exitcode::COMPILER_MISSING, why).await;
            }
        }
    } else {
        match cfg.compilers.resolve(&compiler_name, &cfg.path) {
            Ok(p) => p,
            Err(Refusal(why)) => {
                return refuse(server, writer, version, exitcode::ACCESS_DENIED, why).await;
            }
        }
    };

    // Compile in the job directory with relative names, so diagnostics and
    // objects name `x.i` exactly as a local compile of `x.i` would.
    let job_no = server.next_job.fetch_add(1, Ordering::Relaxed);
    let job = match server::rewrite(&argv, job_input_name, "distccd-output.o", &cfg.sysroots) {
        Ok(j) => j,
        Err(Refusal(why)) => {
            return refuse(server, writer, version, exitcode::ACCESS_DENIED, why).await;
        }
    };
    if let Err(Refusal(why)) = server::check_preprocessed(&request.doti) {
        return refuse(server, writer, version, exitcode::ACCESS_DENIED, why).await;
    }

    let Ok(_slot) = server.slots.acquire().await else {
        return Outcome::Disconnected("server shutting down".into());
    };
    let running = server.stats.running.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::debug!("client: {peer} compiling {}: {running} running", job.input_name);
    let _running = RunningGuard(&server.stats.running, &server.live, job_no);
    server.live.start(RunningJob {
        id: job_no,
        peer: peer.to_string(),
        compiler: compiler_name.clone(),
        input: job.input_name.clone(),
        started: Instant::now(),
    });

    // A full disk would otherwise look like a compile error in the user's
    // code; said up front, the client knows to go elsewhere.
    let need = request.doti.len() as u64 * 3 + (4 << 20);
    if let Some(free) = free_space(&cfg.tmpdir)
        && free < need
    {
        let why = format!(
            "server TMPDIR {} is full: {} KiB free, a job this size needs {} KiB",
            cfg.tmpdir.display(),
            free >> 10,
            need >> 10
        );
        return refuse(server, writer, version, exitcode::IO_ERROR, why).await;
    }
    let dir = match server.dirs.take() {
        Ok(d) => d,
        Err(e) => {
            let why = format!("cannot create a job directory in {}: {e}", cfg.tmpdir.display());
            return refuse(server, writer, version, exitcode::IO_ERROR, why).await;
        }
    };
    if let Err(e) = fs::write(dir.path().join(job_input_name(&job.input_name)), &request.doti) {
        let why = format!("cannot write the input in {}: {e}", cfg.tmpdir.display());
        return refuse(server, writer, version, exitcode::IO_ERROR, why).await;
    }

    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg0(&compiler_name)
        .args(&job.argv[1..])
        .current_dir(dir.path())
        .env("PATH", &cfg.path)
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    tracing::debug!("client: {peer} running {} as {:?}", exe.display(), job.argv);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = format!("failed to exec {}: {e}", exe.display());
            return refuse(server, writer, version, exitcode::COMPILER_MISSING, why).await;
        }
    };
    let pgid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let max = cfg.max_output;
    let compile = async {
        let (o, e, st) = tokio::join!(read_capped(out, max), read_capped(err, max), child.wait());
        (o, e, st)
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
        r = compile => Ok(r),
        gone = watch => Err(Outcome::Disconnected(format!("client went away during the compile ({gone}); compiler killed"))),
        () = lifetime => Err(Outcome::Timeout(format!(
            "compile of {} ran longer than --job-lifetime {}s; compiler killed",
            job.input_name, cfg.job_lifetime.unwrap_or_default().as_secs()))),
    };
    if let Some(pg) = pgid {
        // The driver's helpers (cc1, as) share its process group.
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
    }
    let (stdout, mut stderr, status) = match result {
        Ok((o, e, Ok(st))) => (o, e, st),
        Ok((_, _, Err(e))) => {
            let why = format!("waiting for the compiler: {e}");
            return refuse(server, writer, version, exitcode::DISTCC_FAILED, why).await;
        }
        Err(timeout @ Outcome::Timeout(_)) => {
            drop(dir);
            if let Outcome::Timeout(why) = &timeout {
                let _ = send(
                    server,
                    writer,
                    &refusal_reply(request.version, exitcode::TIMEOUT, why),
                )
                .await;
            }
            return timeout;
        }
        Err(other) => return other,
    };
    let status = status.into_raw() as u32;
    if status != 0 && free_space(&cfg.tmpdir).is_some_and(|f| f < (1 << 20)) {
        drop(dir);
        let why = format!(
            "server TMPDIR {} ran out of space during the compile",
            cfg.tmpdir.display()
        );
        return refuse(server, writer, version, exitcode::IO_ERROR, why).await;
    }
    let mut object = Vec::new();
    if status == 0 {
        match fs::read(dir.path().join("distccd-output.o")) {
            Ok(o) => object = o,
            Err(e) => stderr.extend_from_slice(
                format!("distccd-rs: cannot read the compiler's output: {e}\n").as_bytes(),
            ),
        }
    }
    // Gone before the client hears back, so a finished job leaves nothing.
    drop(dir);
    let reply = Reply {
        version: request.version,
        status,
        stderr,
        stdout,
        object,
    };
    if let Err(why) = send(server, writer, &reply).await {
        return Outcome::Disconnected(why);
    }
    Outcome::Compiled {
        status,
        compiler: compiler_name,
        input: job.input_name,
    }
}

struct RunningGuard<'a>(&'a AtomicU64, &'a super::live::Live, u64);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.stop(self.2);
    }
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

/// Reads a child's pipe to the end, keeping at most `max` bytes (the rest is
/// drained so the compiler never blocks on a full pipe).
async fn read_capped<P: AsyncRead + Unpin>(pipe: Option<P>, max: usize) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    if kept.len() >= max {
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
