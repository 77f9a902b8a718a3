/*!
distccd's start-up, from parsed [`Options`] to a serving daemon: [`run`].

The order of the steps matters, and [`run`] is the one place it is written:
1. listeners: taken from systemd or bound (`--port` below 1024 needs root);
2. niceness, then logging (so that what follows is logged);
3. `--daemon`: detach (fork) while there is still a single thread;
4. the user is looked up (before any chroot hides /etc/passwd), then the
   process is confined (chroot, root dropped) before the runtime starts
   threads, because credentials and capabilities are per thread on Linux;
5. the pid file, written by the serving user so that it can remove it;
6. the [`Config`] ([`config`], from the options and an [`Env`] read once),
   stale job directories removed, the descriptor limit raised;
7. the runtime; then [`Detached::ready`](process::Detached::ready), so that
   the parent of `--daemon` exits only once the pid file is written and the
   daemon can serve; then serving until [`shutdown_signal`].

Every failure is a [`Fatal`] with the exit code distccd 3.4 uses for it;
the binary only prints it and exits with that code.
*/

use std::ffi::OsString;
use std::net::{IpAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};

use super::compilers::Policy;
use super::options::{self, LogLevel, Mode, Options};
use super::process::{self, LogTarget};
use super::{Config, Peer, Server, confd, systemd};
use crate::exitcode;
use crate::protocol::Limits;

/// A failure to start or to serve, with the exit code distccd 3.4 uses for it.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Fatal {
    pub fn new(code: u8, error: anyhow::Error) -> Fatal {
        Fatal { code, error }
    }
}

/// For `map_err`: the error becomes a [`Fatal`] with this code.
fn fatal<E: Into<anyhow::Error>>(code: u8) -> impl FnOnce(E) -> Fatal {
    move |e| Fatal::new(code, e.into())
}

/// DISTCC_ARGS from `--conf FILE` first, then the command line (whose
/// options therefore win).
pub fn with_conf_file(cli: Vec<String>) -> Result<Vec<String>, String> {
    let Some(path) = options::conf_file(&cli) else {
        return Ok(cli);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("--conf {path}: {e}"))?;
    let mut args = confd::distcc_args(&text).map_err(|e| format!("{path}: {e}"))?;
    if options::conf_file(&args).is_some() {
        return Err(format!("{path}: DISTCC_ARGS may not name another --conf"));
    }
    args.extend(cli);
    Ok(args)
}

/// The environment variables that shape the [`Config`], read once.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `DISTCC_CMDLIST`: a file of allowed compiler paths, instead of `--compiler-dir`.
    pub cmdlist: Option<OsString>,
    /// `DISTCC_CMDLIST_NUMWORDS`: how many trailing path components must match (1).
    pub cmdlist_numwords: Option<String>,
    /// `DISTCC_IO_TIMEOUT`: seconds to write a reply (300).
    pub io_timeout: Option<String>,
    /// `DISTCCD_PATH`: the PATH compilers are found on, over `PATH`.
    pub distccd_path: Option<OsString>,
    pub path: Option<OsString>,
    /// `TMPDIR`: where job directories are made (/tmp).
    pub tmpdir: Option<OsString>,
}

impl Env {
    /// This process's environment. Variables that are read as text count
    /// as unset when they are not UTF-8.
    pub fn from_process() -> Env {
        Env {
            cmdlist: std::env::var_os("DISTCC_CMDLIST"),
            cmdlist_numwords: std::env::var("DISTCC_CMDLIST_NUMWORDS").ok(),
            io_timeout: std::env::var("DISTCC_IO_TIMEOUT").ok(),
            distccd_path: std::env::var_os("DISTCCD_PATH"),
            path: std::env::var_os("PATH"),
            tmpdir: std::env::var_os("TMPDIR"),
        }
    }
}

/// What every job is served with, from the options and the environment.
/// `inetd`: one job on stdin/stdout. Reads `DISTCC_CMDLIST` and checks
/// `--compiler-dir` on disk, so it runs after any chroot.
pub fn config(opts: &Options, inetd: bool, env: &Env) -> Result<Config, Fatal> {
    let compilers = match &env.cmdlist {
        Some(list) => {
            let words = env
                .cmdlist_numwords
                .as_deref()
                .and_then(|w| w.parse().ok())
                .unwrap_or(1);
            Policy::load_cmdlist(std::path::Path::new(list), words)
                .with_context(|| format!("reading DISTCC_CMDLIST {}", list.to_string_lossy()))
                .map_err(fatal(exitcode::BAD_ARGUMENTS))?
        }
        None => {
            // Over SSH (`--inetd --enable-tcp-insecure`) the allow-list is not
            // consulted, so its absence is no reason to refuse.
            let ssh_only = inetd && opts.tcp_insecure;
            if !opts.compiler_dir.is_dir() && !ssh_only {
                return Err(Fatal::new(
                    exitcode::COMPILER_MISSING,
                    anyhow!(
                        "compiler allow-list directory {} does not exist: no compiler could be run. \
                         Create it with links named after the allowed compilers, or pass --compiler-dir",
                        opts.compiler_dir.display()
                    ),
                ));
            }
            Policy::Dir(opts.compiler_dir.clone())
        }
    };
    let io_timeout = match &env.io_timeout {
        Some(v) => match v.parse::<u64>() {
            Ok(s) if s > 0 => Duration::from_secs(s),
            _ => {
                return Err(Fatal::new(
                    exitcode::BAD_ARGUMENTS,
                    anyhow!("DISTCC_IO_TIMEOUT={v}: expected seconds > 0"),
                ));
            }
        },
        None => Duration::from_secs(300),
    };
    if opts.max_queued_mb < opts.max_input_mb {
        return Err(Fatal::new(
            exitcode::BAD_ARGUMENTS,
            anyhow!(
                "--max-queued-mb {} is less than --max-input-mb {}: the largest source allowed could never be \
                 queued",
                opts.max_queued_mb,
                opts.max_input_mb
            ),
        ));
    }
    let max_object = (opts.max_output_mb as u64) << 20;
    let limits = super::sandbox::Rlimits {
        file_size: Some(max_object),
        address_space: (opts.max_compiler_mb > 0).then_some((opts.max_compiler_mb as u64) << 20),
        // CPU time cannot pass wall-clock time: the lifetime bounds both.
        cpu: opts.job_lifetime.map(|d| d.as_secs().max(1)),
    };
    let sandbox = super::sandbox::Sandbox::start(opts.sandbox, limits)
        .map_err(|e| Fatal::new(exitcode::BAD_ARGUMENTS, anyhow!(e)))?;
    let path = env
        .distccd_path
        .clone()
        .or_else(|| env.path.clone())
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    Ok(Config {
        allow: opts.allow.clone(),
        compilers,
        tcp_insecure: opts.tcp_insecure,
        limits: Limits {
            max_plain: opts.max_input_mb << 20,
            max_body: u32::try_from(opts.max_input_mb << 20).unwrap_or(u32::MAX),
            ..Limits::default()
        },
        request_timeout: opts.request_timeout,
        header_timeout: opts.header_timeout,
        min_rate: opts.min_rate_kib << 10,
        io_timeout,
        write_timeout: opts.write_timeout,
        job_lifetime: opts.job_lifetime,
        tmpdir: env
            .tmpdir
            .clone()
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from),
        path,
        max_output: 16 << 20,
        max_object,
        max_connections: opts.max_connections,
        max_per_client: opts.max_per_client,
        max_queued: opts.max_queued_mb << 20,
        sysroots: opts.sysroots.clone(),
        sandbox,
    })
}

/// Whether to serve one job on stdin/stdout: `--inetd`, or (unless `--daemon`)
/// no sockets from systemd and a socket on stdin. `stdin_is_socket` is asked
/// only when that decides.
pub fn is_inetd(mode: Mode, activated: bool, stdin_is_socket: impl FnOnce() -> bool) -> bool {
    match mode {
        Mode::Inetd => true,
        Mode::Daemon => false,
        Mode::Auto => !activated && stdin_is_socket(),
    }
}

/// Where the log goes and what it keeps. `under_systemd`: a notify socket
/// or an `INVOCATION_ID`.
pub fn logging(opts: &Options, inetd: bool, under_systemd: bool) -> (LogLevel, LogTarget<'_>) {
    let target = match (&opts.log_file, opts.log_stderr) {
        (_, true) => LogTarget::Stderr,
        (Some(f), false) => LogTarget::File(f),
        (None, false) if under_systemd => LogTarget::JournalOrStderr,
        (None, false) => LogTarget::Stderr,
    };
    // One job over SSH: stderr is the user's terminal, so only problems go there.
    let level = if inetd && !under_systemd && opts.log_file.is_none() && !opts.log_stderr {
        opts.log_level.min(LogLevel::Warning)
    } else {
        opts.log_level
    };
    (level, target)
}

pub fn stdin_is_socket() -> bool {
    nix::sys::stat::fstat(std::io::stdin().as_fd())
        .is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFSOCK)
}

/// The sockets a daemon (not inetd) serves on.
pub struct Listeners {
    pub compile: Vec<TcpListener>,
    /// For the statistics page (`--stats`, or a stats socket from systemd).
    pub stats: Vec<TcpListener>,
    /// Whether they were handed over by systemd rather than bound here.
    pub from_systemd: bool,
}

/// The sockets from systemd, or bound from `--listen`/`--port`/`--stats-port`.
/// A stats socket from systemd turns the page on; `--stats` alone binds one.
pub fn listeners(opts: &Options, activated: Option<systemd::Activated>) -> anyhow::Result<Listeners> {
    let from_systemd = activated.is_some();
    let (compile, activated_stats) = match activated {
        Some(a) => (a.compile, a.stats),
        None => (vec![bind(opts.listen, opts.port)?], Vec::new()),
    };
    let stats = if !activated_stats.is_empty() {
        activated_stats
    } else if opts.stats {
        vec![bind(opts.listen, opts.stats_port)?]
    } else {
        Vec::new()
    };
    Ok(Listeners {
        compile,
        stats,
        from_systemd,
    })
}

/// A listener on `port` at `listen`, or by default on `[::]` (which also
/// takes IPv4, as v4-mapped, unless the host disabled that), else `0.0.0.0`.
pub fn bind(listen: Option<IpAddr>, port: u16) -> anyhow::Result<TcpListener> {
    let addrs: Vec<IpAddr> = match listen {
        Some(a) => vec![a],
        None => vec!["::".parse().expect("valid"), "0.0.0.0".parse().expect("valid")],
    };
    let mut last = None;
    for ip in addrs {
        match TcpListener::bind((ip, port)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(anyhow!(e).context(format!("binding {ip} port {port}"))),
        }
    }
    Err(last.expect("at least one address"))
}

/// Connections, compiler pipes and job files all take descriptors; the soft
/// limit (often 1024) is raised to the hard one so that --max-connections
/// can be met.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Starts distccd and serves until it is told to stop (or, with `--inetd`,
/// until the one job is done).
pub fn run(opts: Options) -> Result<(), Fatal> {
    // Everything that needs root, or a single thread, happens before the runtime.
    let activated = systemd::take_listeners().map_err(|e| Fatal::new(exitcode::BIND_FAILED, anyhow!(e)))?;
    let inetd = is_inetd(opts.mode, activated.is_some(), stdin_is_socket);
    if !inetd && opts.allow.is_empty() {
        return Err(Fatal::new(
            exitcode::BAD_ARGUMENTS,
            anyhow!(
                "refusing to start: no --allow or --allow-private given, so every client would be refused.\n\
                 Name the clients that may use this server, e.g. --allow 127.0.0.1 or --allow 192.168.0.0/24 \
                 (in /etc/conf.d/distccd: DISTCC_ARGS=\"--allow ...\")."
            ),
        ));
    }
    let listeners = if inetd {
        drop(activated);
        if opts.zeroconf {
            // Published while serving one connection, it would be gone by the time anyone looked.
            tracing::warn!("--zeroconf is ignored with --inetd: only a daemon is published");
        }
        None
    } else {
        Some(listeners(&opts, activated).map_err(fatal(exitcode::BIND_FAILED))?)
    };
    process::set_nice(opts.nice).map_err(fatal(exitcode::DISTCC_FAILED))?;
    let notifier = Arc::new(systemd::Notifier::connect());
    let under_systemd = notifier.active() || std::env::var_os("INVOCATION_ID").is_some();
    let (level, target) = logging(&opts, inetd, under_systemd);
    let logging_to = process::init_logging(level, target).map_err(fatal(exitcode::BAD_ARGUMENTS))?;
    let mut detached = if !inetd && !opts.no_detach && !under_systemd {
        process::detach().map_err(fatal(exitcode::DISTCC_FAILED))?
    } else {
        process::Detached::none()
    };
    let user = process::lookup_user(opts.user.as_deref()).map_err(fatal(exitcode::SETUID_FAILED))?;
    process::confine(opts.chroot.as_deref(), user.as_ref()).map_err(fatal(exitcode::SETUID_FAILED))?;
    // As distcc does: written by the serving user, so that it can remove it.
    if let Some(p) = &opts.pid_file {
        process::write_pid_file(p).map_err(fatal(exitcode::IO_ERROR))?;
    }
    let config = config(&opts, inetd, &Env::from_process())?;
    let said = config.sandbox.startup();
    if matches!(said, super::sandbox::Startup::Enforced { .. }) {
        tracing::info!("{said}");
    } else {
        tracing::warn!("{said}");
    }
    if !inetd {
        let removed = super::workdir::remove_stale(&config.tmpdir);
        if removed > 0 {
            tracing::info!("removed {removed} job director(ies) left by a distccd that was killed");
        }
    }
    raise_fd_limit();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(fatal(exitcode::DISTCC_FAILED))?;
    // Bound, confined, pid file written: `distccd --daemon` may return.
    detached.ready().map_err(fatal(exitcode::DISTCC_FAILED))?;
    let server = Server::new(config, opts.jobs);
    let result = rt.block_on(async {
        let Some(listeners) = listeners else {
            return serve_stdio(server).await;
        };
        let serving_as = user
            .as_ref()
            .map_or_else(|| nix::unistd::Uid::effective().to_string(), |u| u.name.clone());
        let about = format!("serving as {serving_as}, logging to {logging_to}");
        serve_listeners(listeners, server, notifier, opts.lifetime, opts.zeroconf, &about).await
    });
    if let Some(p) = &opts.pid_file {
        let _ = std::fs::remove_file(p);
    }
    result.map_err(fatal(exitcode::IO_ERROR))
}

/// Serves on the listeners until [`shutdown_signal`], reporting to systemd;
/// `about` ends the "listening on" log line.
async fn serve_listeners(
    listeners: Listeners,
    server: Arc<Server>,
    notifier: Arc<systemd::Notifier>,
    lifetime: Option<Duration>,
    zeroconf: bool,
    about: &str,
) -> anyhow::Result<()> {
    let compile = listeners
        .compile
        .into_iter()
        .map(|l| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .context("registering listeners")?;
    for l in &compile {
        tracing::info!(
            "listening on {} ({}), {} job slots, {about}",
            l.local_addr()?,
            if listeners.from_systemd {
                "socket from systemd"
            } else {
                "bound"
            },
            server.jobs,
        );
    }
    let status = tokio::spawn(report_status(server.clone(), notifier.clone()));
    let mut stats = Vec::new();
    for l in listeners.stats {
        l.set_nonblocking(true)?;
        let l = tokio::net::TcpListener::from_std(l)?;
        tracing::info!("statistics on http://{}/", l.local_addr()?);
        stats.push(tokio::spawn(super::stats::serve_stats(l, server.clone())));
    }
    let publisher = zeroconf.then(|| super::zeroconf::spawn(server.clone(), listening(&compile)));
    let stop_notifier = notifier.clone();
    let stop_server = server.clone();
    let shutdown = async move {
        shutdown_signal(lifetime).await;
        // Withdrawn first, so that clients stop choosing a server that is going.
        if let Some(p) = publisher {
            p.stop().await;
        }
        let running = stop_server.live.running();
        let _ = stop_notifier.send(&format!(
            "STOPPING=1\nSTATUS=stopping: letting {running} running job(s) finish"
        ));
    };
    super::serve(compile, server, shutdown).await;
    status.abort();
    for s in stats {
        s.abort();
    }
    tracing::info!("distccd exiting");
    Ok(())
}

/// The addresses served, each with whether an IPv6 socket is v6-only.
fn listening(listeners: &[tokio::net::TcpListener]) -> Vec<(std::net::SocketAddr, bool)> {
    listeners
        .iter()
        .filter_map(|l| {
            let addr = l.local_addr().ok()?;
            let v6only = addr.is_ipv6()
                && nix::sys::socket::getsockopt(l, nix::sys::socket::sockopt::Ipv6V6Only).unwrap_or(false);
            Some((addr, v6only))
        })
        .collect()
}

/// READY=1 once serving, then STATUS= whenever the counts change, and
/// watchdog pings when `WatchdogSec=` asks for them.
pub async fn report_status(server: Arc<Server>, notifier: Arc<systemd::Notifier>) {
    let mut last = server.status();
    let _ = notifier.send(&format!("READY=1\nSTATUS={last}"));
    let watchdog = systemd::watchdog_interval();
    let tick = watchdog.map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1)));
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        server.live.sample();
        let now = server.status();
        let mut msg = String::new();
        if now != last {
            msg.push_str(&format!("STATUS={now}\n"));
            last = now;
        }
        if watchdog.is_some() {
            msg.push_str("WATCHDOG=1\n");
        }
        if !msg.is_empty() {
            let _ = notifier.send(&msg);
        }
    }
}

/// Resolves on SIGTERM, SIGINT or when `lifetime` (`--lifetime`) has passed.
pub async fn shutdown_signal(lifetime: Option<Duration>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    let life = async {
        match lifetime {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        () = life => tracing::info!("--lifetime reached: stopping"),
    }
}

/// `--inetd`: one job on stdin/stdout (inetd, systemd `Accept=yes`, SSH).
pub async fn serve_stdio(server: Arc<Server>) -> anyhow::Result<()> {
    let input: OwnedFd = std::io::stdin().as_fd().try_clone_to_owned()?;
    if stdin_is_socket() {
        let std_stream = std::net::TcpStream::from(input);
        if let Ok(peer) = std_stream.peer_addr() {
            std_stream.set_nonblocking(true)?;
            let (r, w) = tokio::net::TcpStream::from_std(std_stream)?.into_split();
            super::job::handle(server, Peer::Tcp(peer), r, w).await;
            return Ok(());
        }
        let unix = std::os::unix::net::UnixStream::from(OwnedFd::from(std_stream));
        unix.set_nonblocking(true)?;
        let (r, w) = tokio::net::UnixStream::from_std(unix)?.into_split();
        super::job::handle(server, Peer::Local, r, w).await;
        return Ok(());
    }
    let output: OwnedFd = std::io::stdout().as_fd().try_clone_to_owned()?;
    let r =
        tokio::net::unix::pipe::Receiver::from_owned_fd(input).context("stdin must be a socket or a pipe")?;
    let w =
        tokio::net::unix::pipe::Sender::from_owned_fd(output).context("stdout must be a socket or a pipe")?;
    super::job::handle(server, Peer::Local, r, w).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Options for a server whose allow-list directory is `dir`.
    fn opts(dir: &str) -> Options {
        let mut o = Options::defaults(2);
        o.compiler_dir = PathBuf::from(dir);
        o
    }

    const MISSING: &str = "/nonexistent/distcc-rs-start-test";

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("distcc-rs-start-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn io_timeout_from_the_environment() {
        for (value, want) in [
            (None, Ok(300)),
            (Some("10"), Ok(10)),
            (Some("1"), Ok(1)),
            (Some("0"), Err(())),
            (Some("-5"), Err(())),
            (Some("ten"), Err(())),
            (Some(" 10"), Err(())),
            (Some(""), Err(())),
        ] {
            let env = Env {
                io_timeout: value.map(String::from),
                ..Env::default()
            };
            match (config(&opts("/"), false, &env), want) {
                (Ok(c), Ok(secs)) => assert_eq!(c.io_timeout, Duration::from_secs(secs), "{value:?}"),
                (Err(f), Err(())) => {
                    assert_eq!(f.code, exitcode::BAD_ARGUMENTS, "{value:?}");
                    assert_eq!(
                        f.error.to_string(),
                        format!("DISTCC_IO_TIMEOUT={}: expected seconds > 0", value.unwrap())
                    );
                }
                (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn compilers_run_on_distccd_path_over_path() {
        for (distccd_path, path, want) in [
            (Some("/opt/cc/bin"), Some("/usr/bin"), "/opt/cc/bin"),
            (Some("/opt/cc/bin"), None, "/opt/cc/bin"),
            (None, Some("/usr/bin:/bin"), "/usr/bin:/bin"),
            (None, None, "/usr/local/bin:/usr/bin:/bin"),
        ] {
            let env = Env {
                distccd_path: distccd_path.map(OsString::from),
                path: path.map(OsString::from),
                ..Env::default()
            };
            let c = config(&opts("/"), false, &env).unwrap();
            assert_eq!(c.path, OsString::from(want), "{distccd_path:?} {path:?}");
        }
    }

    #[test]
    fn job_directories_go_in_tmpdir_or_tmp() {
        for (tmpdir, want) in [(None, "/tmp"), (Some("/var/tmp"), "/var/tmp")] {
            let env = Env {
                tmpdir: tmpdir.map(OsString::from),
                ..Env::default()
            };
            assert_eq!(
                config(&opts("/"), false, &env).unwrap().tmpdir,
                PathBuf::from(want)
            );
        }
    }

    #[test]
    fn a_missing_compiler_dir_refuses_to_start_except_over_ssh() {
        // (inetd, --enable-tcp-insecure, starts)
        for (inetd, tcp_insecure, starts) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (true, true, true),
        ] {
            let mut o = opts(MISSING);
            o.tcp_insecure = tcp_insecure;
            match config(&o, inetd, &Env::default()) {
                Ok(c) => {
                    assert!(starts, "inetd {inetd}, tcp_insecure {tcp_insecure}: started");
                    assert!(matches!(c.compilers, Policy::Dir(d) if d == Path::new(MISSING)));
                    assert!(c.tcp_insecure);
                }
                Err(f) => {
                    assert!(
                        !starts,
                        "inetd {inetd}, tcp_insecure {tcp_insecure}: {:#}",
                        f.error
                    );
                    assert_eq!(f.code, exitcode::COMPILER_MISSING);
                    assert!(f.error.to_string().contains(MISSING), "{:#}", f.error);
                }
            }
        }
    }

    #[test]
    fn an_existing_compiler_dir_is_the_allow_list() {
        let c = config(&opts("/"), false, &Env::default()).unwrap();
        assert!(matches!(c.compilers, Policy::Dir(d) if d == Path::new("/")));
    }

    #[test]
    fn distcc_cmdlist_replaces_the_compiler_dir() {
        let dir = scratch("cmdlist");
        let list = dir.join("cmdlist");
        std::fs::write(&list, "# allowed\n/usr/bin/gcc\n\n  /opt/x/bin/cc  \n").unwrap();
        for (numwords, want_words) in [(None, 1), (Some("2"), 2), (Some("0"), 1), (Some("two"), 1)] {
            let env = Env {
                cmdlist: Some(list.clone().into_os_string()),
                cmdlist_numwords: numwords.map(String::from),
                ..Env::default()
            };
            // The directory is not needed when the list names the compilers.
            match config(&opts(MISSING), false, &env).unwrap().compilers {
                Policy::CmdList { lines, words } => {
                    assert_eq!(lines, ["/usr/bin/gcc", "/opt/x/bin/cc"]);
                    assert_eq!(words, want_words, "{numwords:?}");
                }
                p => panic!("{p:?}"),
            }
        }
        let env = Env {
            cmdlist: Some(dir.join("absent").into_os_string()),
            ..Env::default()
        };
        let f = config(&opts("/"), false, &env).unwrap_err();
        assert_eq!(f.code, exitcode::BAD_ARGUMENTS);
        assert!(
            f.error.to_string().starts_with("reading DISTCC_CMDLIST "),
            "{:#}",
            f.error
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn options_pass_through_to_the_config() {
        let mut o = opts("/");
        o.allow = vec!["10.0.0.0/8".parse().unwrap()];
        o.max_input_mb = 3;
        o.request_timeout = Duration::from_secs(7);
        o.job_lifetime = Some(Duration::from_secs(9));
        o.max_connections = 11;
        o.sysroots = vec!["/sr".into()];
        let c = config(&o, false, &Env::default()).unwrap();
        assert_eq!(c.allow, o.allow);
        assert!(!c.tcp_insecure);
        assert_eq!((c.limits.max_plain, c.limits.max_body), (3 << 20, 3 << 20));
        assert_eq!(c.request_timeout, Duration::from_secs(7));
        assert_eq!(c.job_lifetime, Some(Duration::from_secs(9)));
        assert_eq!(c.max_connections, 11);
        assert_eq!(c.sysroots, ["/sr"]);
        assert_eq!(c.max_output, 16 << 20);
        o.max_output_mb = 5;
        o.max_compiler_mb = 0;
        o.max_queued_mb = 9;
        o.max_per_client = 4;
        o.min_rate_kib = 2;
        o.header_timeout = Duration::from_secs(3);
        o.write_timeout = Duration::from_secs(4);
        let c = config(&o, false, &Env::default()).unwrap();
        assert_eq!(
            (c.max_object, c.max_queued, c.max_per_client),
            (5 << 20, 9 << 20, 4)
        );
        assert_eq!(
            (c.min_rate, c.header_timeout, c.write_timeout),
            (2048, Duration::from_secs(3), Duration::from_secs(4))
        );
        assert_eq!(c.sandbox.limits.file_size, Some(5 << 20));
        assert_eq!(
            c.sandbox.limits.address_space, None,
            "--max-compiler-mb 0: no limit"
        );
        assert_eq!(
            c.sandbox.limits.cpu,
            Some(9),
            "CPU time bounded by the job lifetime"
        );
        // A source the queue could never hold is a configuration error.
        o.max_queued_mb = 2;
        assert_eq!(
            config(&o, false, &Env::default()).unwrap_err().code,
            exitcode::BAD_ARGUMENTS
        );
        // More than 4 GiB does not fit a request body's length.
        o.max_input_mb = 8192;
        o.max_queued_mb = 8192;
        let c = config(&o, false, &Env::default()).unwrap();
        assert_eq!((c.limits.max_plain, c.limits.max_body), (8192 << 20, u32::MAX));
    }

    #[test]
    fn inetd_when_asked_or_when_stdin_is_a_socket() {
        // (mode, socket-activated, stdin is a socket, inetd, stdin looked at)
        for (mode, activated, socket, want, asked) in [
            (Mode::Inetd, false, false, true, false),
            (Mode::Inetd, true, false, true, false),
            (Mode::Daemon, false, true, false, false),
            (Mode::Auto, false, true, true, true),
            (Mode::Auto, false, false, false, true),
            (Mode::Auto, true, true, false, false),
        ] {
            let looked = std::cell::Cell::new(false);
            let got = is_inetd(mode, activated, || {
                looked.set(true);
                socket
            });
            assert_eq!(
                (got, looked.get()),
                (want, asked),
                "{mode:?} {activated} {socket}"
            );
        }
    }

    #[test]
    fn where_the_log_goes() {
        fn name(t: &LogTarget<'_>) -> String {
            match t {
                LogTarget::File(p) => p.display().to_string(),
                LogTarget::Stderr => "stderr".into(),
                LogTarget::JournalOrStderr => "journal".into(),
            }
        }
        use LogLevel::{Debug, Notice, Warning};
        // (--log-file, --log-stderr, --log-level, inetd, under systemd, level, target)
        for (file, stderr, level, inetd, systemd, want_level, want_target) in [
            (None, false, Notice, false, false, Notice, "stderr"),
            (None, false, Notice, false, true, Notice, "journal"),
            (Some("/l"), false, Notice, false, true, Notice, "/l"),
            (Some("/l"), true, Notice, false, false, Notice, "stderr"),
            (None, true, Debug, false, true, Debug, "stderr"),
            // One job over SSH: only problems reach the user's terminal.
            (None, false, Debug, true, false, Warning, "stderr"),
            (None, false, Debug, true, true, Debug, "journal"),
            (None, true, Debug, true, false, Debug, "stderr"),
            (Some("/l"), false, Debug, true, false, Debug, "/l"),
        ] {
            let mut o = opts("/");
            o.log_file = file.map(PathBuf::from);
            o.log_stderr = stderr;
            o.log_level = level;
            let (l, t) = logging(&o, inetd, systemd);
            assert_eq!(
                (l, name(&t).as_str()),
                (want_level, want_target),
                "{file:?} {stderr} {level:?} inetd {inetd} systemd {systemd}"
            );
        }
    }

    #[test]
    fn conf_file_args_go_before_the_command_line() {
        let dir = scratch("conf");
        let conf = dir.join("distccd");
        std::fs::write(
            &conf,
            "DISTCC_ARGS=\"--allow 10.0.0.0/8 --log-file '/var/log/a b.log'\"\n",
        )
        .unwrap();
        let nested = dir.join("nested");
        std::fs::write(&nested, "DISTCC_ARGS=\"--conf /etc/other\"\n").unwrap();
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let c = conf.display().to_string();
        assert_eq!(with_conf_file(s(&["-j", "2"])).unwrap(), s(&["-j", "2"]));
        assert_eq!(
            with_conf_file(s(&["--conf", &c, "-j", "2"])).unwrap(),
            s(&[
                "--allow",
                "10.0.0.0/8",
                "--log-file",
                "/var/log/a b.log",
                "--conf",
                &c,
                "-j",
                "2"
            ])
        );
        let n = nested.display().to_string();
        let e = with_conf_file(s(&[&format!("--conf={n}")])).unwrap_err();
        assert_eq!(e, format!("{n}: DISTCC_ARGS may not name another --conf"));
        let absent = dir.join("absent").display().to_string();
        let e = with_conf_file(s(&["--conf", &absent])).unwrap_err();
        assert!(e.starts_with(&format!("--conf {absent}: ")), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_taken_port_names_the_address() {
        let first = bind(Some("127.0.0.1".parse().unwrap()), 0).unwrap();
        let port = first.local_addr().unwrap().port();
        let e = bind(Some("127.0.0.1".parse().unwrap()), port).unwrap_err();
        assert_eq!(e.to_string(), format!("binding 127.0.0.1 port {port}"));
    }
}
