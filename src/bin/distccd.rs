//! distccd: see `distcc::daemon`. Exit codes are decided here and only here.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use distcc::daemon::compilers::Policy;
use distcc::daemon::options::{self, Mode, Options, Parsed};
use distcc::daemon::process::LogTarget;
use distcc::daemon::{self, Config, Peer, Server, confd, process, systemd};
use distcc::exitcode;
use distcc::protocol::Limits;

/// A failure with the exit code distccd 3.4 uses for it.
struct Fatal(u8, anyhow::Error);

fn fatal(code: u8) -> impl FnOnce(anyhow::Error) -> Fatal {
    move |e| Fatal(code, e)
}

fn main() -> ExitCode {
    let cli: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args = match with_conf_file(cli) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("distccd: {e}");
            return ExitCode::from(exitcode::BAD_ARGUMENTS);
        }
    };
    let ncpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = match options::parse(&args, ncpus) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{}", options::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            print!("{}", distcc::version_banner("distccd"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("distccd: {e}\nTry 'distccd --help'.");
            return ExitCode::from(exitcode::BAD_ARGUMENTS);
        }
    };
    match run(*opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal(code, e)) => {
            tracing::error!("{e:#}");
            eprintln!("distccd: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// DISTCC_ARGS from `--conf FILE` first, then the command line (whose
/// options therefore win).
fn with_conf_file(cli: Vec<String>) -> Result<Vec<String>, String> {
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

fn stdin_is_socket() -> bool {
    nix::sys::stat::fstat(std::io::stdin().as_fd())
        .is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFSOCK)
}

fn run(opts: Options) -> Result<(), Fatal> {
    // Everything that needs root, or a single thread, happens before the runtime.
    let activated = systemd::take_listeners().map_err(|e| Fatal(exitcode::BIND_FAILED, anyhow!(e)))?;
    let inetd = match opts.mode {
        Mode::Inetd => true,
        Mode::Daemon => false,
        Mode::Auto => activated.is_none() && stdin_is_socket(),
    };
    if !inetd && opts.allow.is_empty() {
        return Err(Fatal(
            exitcode::BAD_ARGUMENTS,
            anyhow!(
                "refusing to start: no --allow or --allow-private given, so every client would be refused.\n\
                 Name the clients that may use this server, e.g. --allow 127.0.0.1 or --allow 192.168.0.0/24 \
                 (in /etc/conf.d/distccd: DISTCC_ARGS=\"--allow ...\")."
            ),
        ));
    }
    let from_systemd = activated.is_some();
    let (listeners, activated_stats) = match (inetd, activated) {
        (true, _) => (Vec::new(), Vec::new()),
        (false, Some(a)) => (a.compile, a.stats),
        (false, None) => (bind(&opts).map_err(fatal(exitcode::BIND_FAILED))?, Vec::new()),
    };
    // A stats socket from systemd turns the page on; --stats alone binds one.
    let stats_listeners = if inetd {
        Vec::new()
    } else if !activated_stats.is_empty() {
        activated_stats
    } else if opts.stats {
        let mut o = opts.clone();
        o.port = opts.stats_port;
        vec![bind(&o).map_err(fatal(exitcode::BIND_FAILED))?.remove(0)]
    } else {
        Vec::new()
    };
    process::set_nice(opts.nice).map_err(fatal(exitcode::DISTCC_FAILED))?;
    let notifier = Arc::new(systemd::Notifier::connect());
    let under_systemd = notifier.active() || std::env::var_os("INVOCATION_ID").is_some();
    let target = match (&opts.log_file, opts.log_stderr) {
        (_, true) => LogTarget::Stderr,
        (Some(f), false) => LogTarget::File(f),
        (None, false) if under_systemd => LogTarget::JournalOrStderr,
        (None, false) => LogTarget::Stderr,
    };
    // One job over SSH: stderr is the user's terminal, so only problems go there.
    let level = if inetd && !under_systemd && opts.log_file.is_none() && !opts.log_stderr {
        opts.log_level.min(options::LogLevel::Warning)
    } else {
        opts.log_level
    };
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
    let config = config(&opts, inetd)?;
    if !inetd {
        let removed = daemon::workdir::remove_stale(&config.tmpdir);
        if removed > 0 {
            tracing::info!("removed {removed} job director(ies) left by a distccd that was killed");
        }
    }
    raise_fd_limit();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal(exitcode::DISTCC_FAILED, e.into()))?;
    // Bound, confined, pid file written: `distccd --daemon` may return.
    detached.ready().map_err(fatal(exitcode::DISTCC_FAILED))?;
    let server = Server::new(config, opts.jobs);
    let result = rt.block_on(async {
        if inetd {
            return serve_stdio(server).await;
        }
        let listeners = listeners
            .into_iter()
            .map(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            })
            .collect::<std::io::Result<Vec<_>>>()
            .context("registering listeners")?;
        for l in &listeners {
            tracing::info!(
                "listening on {} ({}), {} job slots, serving as {}, logging to {logging_to}",
                l.local_addr()?,
                if from_systemd {
                    "socket from systemd"
                } else {
                    "bound"
                },
                opts.jobs,
                user.as_ref()
                    .map_or_else(|| nix::unistd::Uid::effective().to_string(), |u| u.name.clone()),
            );
        }
        let status = tokio::spawn(report_status(server.clone(), notifier.clone()));
        let mut stats = Vec::new();
        for l in stats_listeners {
            l.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(l)?;
            tracing::info!("statistics on http://{}/", l.local_addr()?);
            stats.push(tokio::spawn(daemon::stats::serve_stats(l, server.clone())));
        }
        let stop_notifier = notifier.clone();
        let stop_server = server.clone();
        let shutdown = async move {
            shutdown_signal(opts.lifetime).await;
            let running = stop_server
                .stats
                .running
                .load(std::sync::atomic::Ordering::Relaxed);
            let _ = stop_notifier.send(&format!(
                "STOPPING=1\nSTATUS=stopping: letting {running} running job(s) finish"
            ));
        };
        daemon::serve(listeners, server, shutdown).await;
        status.abort();
        for s in stats {
            s.abort();
        }
        tracing::info!("distccd exiting");
        Ok(())
    });
    if let Some(p) = &opts.pid_file {
        let _ = std::fs::remove_file(p);
    }
    result.map_err(fatal(exitcode::IO_ERROR))
}

/// READY=1 once serving, then STATUS= whenever the counts change, and
/// watchdog pings when `WatchdogSec=` asks for them.
async fn report_status(server: Arc<Server>, notifier: Arc<systemd::Notifier>) {
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

/// Connections, compiler pipes and job files all take descriptors; the soft
/// limit (often 1024) is raised to the hard one so that --max-connections
/// can be met.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn config(opts: &Options, inetd: bool) -> Result<Config, Fatal> {
    let compilers = match std::env::var_os("DISTCC_CMDLIST") {
        Some(list) => {
            let words = std::env::var("DISTCC_CMDLIST_NUMWORDS")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(1);
            Policy::load_cmdlist(std::path::Path::new(&list), words)
                .with_context(|| format!("reading DISTCC_CMDLIST {}", list.to_string_lossy()))
                .map_err(fatal(exitcode::BAD_ARGUMENTS))?
        }
        None => {
            // Over SSH (`--inetd --enable-tcp-insecure`) the allow-list is not
            // consulted, so its absence is no reason to refuse.
            let ssh_only = inetd && opts.tcp_insecure;
            if !opts.compiler_dir.is_dir() && !ssh_only {
                return Err(Fatal(
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
    let io_timeout = match std::env::var("DISTCC_IO_TIMEOUT") {
        Ok(v) => match v.parse::<u64>() {
            Ok(s) if s > 0 => Duration::from_secs(s),
            _ => {
                return Err(Fatal(
                    exitcode::BAD_ARGUMENTS,
                    anyhow!("DISTCC_IO_TIMEOUT={v}: expected seconds > 0"),
                ));
            }
        },
        Err(_) => Duration::from_secs(300),
    };
    let path = std::env::var_os("DISTCCD_PATH")
        .or_else(|| std::env::var_os("PATH"))
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
        io_timeout,
        job_lifetime: opts.job_lifetime,
        tmpdir: std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from),
        path,
        max_output: 16 << 20,
        max_connections: opts.max_connections,
        sysroots: opts.sysroots.clone(),
    })
}

fn bind(opts: &Options) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let addrs: Vec<std::net::IpAddr> = match opts.listen {
        Some(a) => vec![a],
        // [::] also takes IPv4 (as v4-mapped) unless the host disabled that.
        None => vec!["::".parse().expect("valid"), "0.0.0.0".parse().expect("valid")],
    };
    let mut last = None;
    for ip in addrs {
        match std::net::TcpListener::bind((ip, opts.port)) {
            Ok(l) => return Ok(vec![l]),
            Err(e) => last = Some(anyhow!(e).context(format!("binding {ip} port {}", opts.port))),
        }
    }
    Err(last.expect("at least one address"))
}

async fn shutdown_signal(lifetime: Option<Duration>) {
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
async fn serve_stdio(server: std::sync::Arc<Server>) -> anyhow::Result<()> {
    let input: OwnedFd = std::io::stdin().as_fd().try_clone_to_owned()?;
    if stdin_is_socket() {
        let std_stream = std::net::TcpStream::from(input);
        if let Ok(peer) = std_stream.peer_addr() {
            std_stream.set_nonblocking(true)?;
            let (r, w) = tokio::net::TcpStream::from_std(std_stream)?.into_split();
            daemon::job::handle(server, Peer::Tcp(peer), r, w).await;
            return Ok(());
        }
        let unix = std::os::unix::net::UnixStream::from(OwnedFd::from(std_stream));
        unix.set_nonblocking(true)?;
        let (r, w) = tokio::net::UnixStream::from_std(unix)?.into_split();
        daemon::job::handle(server, Peer::Local, r, w).await;
        return Ok(());
    }
    let output: OwnedFd = std::io::stdout().as_fd().try_clone_to_owned()?;
    let r =
        tokio::net::unix::pipe::Receiver::from_owned_fd(input).context("stdin must be a socket or a pipe")?;
    let w =
        tokio::net::unix::pipe::Sender::from_owned_fd(output).context("stdout must be a socket or a pipe")?;
    daemon::job::handle(server, Peer::Local, r, w).await;
    Ok(())
}
