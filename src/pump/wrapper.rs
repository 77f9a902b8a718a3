/*!
`pump`, as distcc 3.4's: `pump COMMAND [ARG...]` starts the include server,
exports `INCLUDE_SERVER_PORT` (and `INCLUDE_SERVER_PID`,
`INCLUDE_SERVER_DIR`), puts distcc's directory first on PATH, runs the
command, reports discrepancies (compiles that failed on a server and passed
here), stops the server and waits for it. `pump --startup` prints the
`export` lines for a shell instead and leaves the server running; `pump
--shutdown` stops the one those variables name.

The include server is this program again (`pump --include-server SOCKET`),
so that it outlives `--startup` and its caches die with the build.
*/

use std::ffi::OsString;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::closure::Build;
use super::root::Root;
use super::server::Server;
use crate::client::{plan::Plan, settings};

pub const USAGE: &str = "\
Usage:
    pump COMMAND [ARG...]
or
    pump --startup
    pump --shutdown

Description:
  Pump, also known as distcc-pump, accelerates remote compilation with
  distcc by also distributing preprocessing to the servers.

  \"pump COMMAND [ARG...]\" starts an include server for distcc-pump, sets
  some environment variables, puts distcc's directory first on PATH, runs
  COMMAND (typically a parallel build, such as \"make -j80\") and then shuts
  the include server down.

  \"eval `pump --startup`\" starts the include server and prints the
  variables to set; \"pump --shutdown\" stops it.

Environment variables (all optional):
  DISTCC_LOCATION        the directory of the distcc client to use
  DISTCC_HOSTS           the hosts; pump mode needs at least one with ,cpp
                         (written HOST[:PORT][/LIMIT],cpp,lzo)
  DISTCC_MAX_DISCREPANCY compiles that may fail on a server and pass here
                         before pump mode is turned off (default 1)
  DISTCC_CLIENT_TMP      where the include server keeps its files (one or
                         two directories deep; default /tmp)
  INCLUDE_SERVER_ARGS    -s or --statistics: report the include server's
                         work when it stops
";

/// The socket directory's discrepancy counter (distcc 3.4's name): one
/// byte per compile that failed remotely and passed locally.
pub const DISCREPANCY_FILE: &str = "discrepancy_counter";

pub fn main(args: Vec<OsString>) -> u8 {
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let result = match words.first().map(String::as_str) {
        None | Some("-h" | "--help") => {
            print!("{USAGE}");
            return if words.is_empty() { 1 } else { 0 };
        }
        Some("--include-server") => match words.get(1) {
            Some(socket) => include_server(Path::new(socket), &words[2..]).map(|()| 0),
            None => Err(anyhow!("--include-server needs a socket path")),
        },
        Some("--startup") => startup(),
        Some("--shutdown") => shutdown(),
        Some(_) => run(&args[1..]),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pump: {e:#}");
            1
        }
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The directory of the distcc to put on PATH: `DISTCC_LOCATION`, else ours.
fn distcc_location() -> Result<PathBuf> {
    if let Some(d) = env("DISTCC_LOCATION") {
        return Ok(PathBuf::from(d));
    }
    let me = std::env::current_exe().context("finding pump's own directory")?;
    Ok(me.parent().map(Path::to_owned).unwrap_or_default())
}

fn check_hosts(verbose: bool) -> Result<()> {
    let s = settings::from_env(env).map_err(|e| anyhow!("{e}"))?;
    let plan = Plan::load(&s).map_err(|e| anyhow!("{e}"))?;
    let all = plan.list.hosts.iter().filter(|h| !h.is_local()).count();
    let pump = plan
        .list
        .hosts
        .iter()
        // `,cpp`: pump mode, on a distccd (where it needs `,lzo`) or a cluster.
        .filter(|h| h.cpp)
        .count();
    if plan.list.hosts.is_empty() {
        bail!("error: distcc hosts list is empty!");
    }
    if pump == 0 {
        bail!(
            "error: pump mode requested, but distcc hosts list does not contain any hosts with ',cpp' option"
        );
    }
    if verbose {
        let word = if all == 1 { "server" } else { "servers" };
        if all == pump {
            println!("__________Using {all} distcc {word} in pump mode");
        } else {
            println!("__________Using {all} distcc {word}, of which only {pump} support(s) pump mode");
        }
    }
    Ok(())
}

struct Started {
    dir: PathBuf,
    socket: PathBuf,
    pid: u32,
}

/// Starts `pump --include-server` in a fresh directory and waits until it
/// answers on its socket.
fn start_server(detach: bool) -> Result<(Started, std::process::Child)> {
    let tmp = env("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let dir =
        make_temp_dir(&tmp).with_context(|| format!("could not make a directory in {}", tmp.display()))?;
    let socket = dir.join("socket");
    let me = std::env::current_exe().context("finding pump itself")?;
    let mut cmd = Command::new(me);
    cmd.arg("--include-server").arg(&socket);
    if let Some(extra) = env("INCLUDE_SERVER_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    if detach {
        // Out of the shell's process group: ^C in it does not stop a
        // server that `--shutdown` is meant to stop. Its output goes to a
        // log that `--shutdown` shows: a server holding the caller's
        // stderr would keep `$(pump --startup 2>&1)` waiting for ever.
        let log = std::fs::File::create(dir.join(SERVER_LOG)).context("the include server's log")?;
        cmd.process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
    }
    let mut child = cmd.spawn().context("could not start the include server")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if UnixStream::connect(&socket).is_ok() {
            break;
        }
        if let Some(st) = child.try_wait()? {
            let _ = std::fs::remove_dir_all(&dir);
            bail!("__________Could not start distcc-pump include server ({st})");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = std::fs::remove_dir_all(&dir);
            bail!("__________Expected a socket at '{}'", socket.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = child.id();
    Ok((Started { dir, socket, pid }, child))
}

/// What a server started by `--startup` printed.
const SERVER_LOG: &str = "server.log";

fn make_temp_dir(base: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for n in 0..1000u32 {
        let d = base.join(format!(
            "distcc-pump.{:06x}",
            (seed ^ std::process::id() ^ n.wrapping_mul(0x9e37)) & 0xff_ffff
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name"))
}

fn report_discrepancies(dir: &Path) {
    let n = std::fs::metadata(dir.join(DISCREPANCY_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    if n == 0 {
        return;
    }
    eprintln!("__________Warning: {n} pump-mode compilation(s) failed on server, but succeeded locally.");
    if n >= crate::client::settings::max_discrepancy(env("DISTCC_MAX_DISCREPANCY").as_deref()) {
        eprintln!("__________Distcc-pump was demoted to plain mode.");
    }
    eprintln!("See the DISCREPANCIES section in the pump(1) man page.");
}

fn stop(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while kill(pid, None).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops our own server child: waited for, not polled with `kill(pid, 0)`,
/// which an unreaped child (a zombie) answers until it is reaped.
fn stop_child(child: &mut std::process::Child) {
    use nix::sys::signal::{Signal, kill};
    let _ = kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn run(command: &[OsString]) -> Result<u8> {
    let verbose = env("DISTCC_TESTING_INCLUDE_SERVER").is_none();
    let location = distcc_location()?;
    if verbose {
        println!("__________Using distcc-pump from {}", location.display());
    }
    check_hosts(verbose)?;
    let (s, mut child) = start_server(false)?;
    if verbose {
        println!("__________Started distcc-pump include server");
    }
    let path = match std::env::var_os("PATH") {
        Some(p) => std::env::join_paths(std::iter::once(location.clone()).chain(std::env::split_paths(&p)))?,
        None => location.clone().into_os_string(),
    };
    let status: Result<ExitStatus> = Command::new(&command[0])
        .args(&command[1..])
        .env("INCLUDE_SERVER_PORT", &s.socket)
        .env("INCLUDE_SERVER_PID", s.pid.to_string())
        .env("INCLUDE_SERVER_DIR", &s.dir)
        .env("PATH", path)
        .status()
        .with_context(|| format!("cannot run {}", command[0].to_string_lossy()));
    report_discrepancies(&s.dir);
    if verbose {
        println!("__________Shutting down distcc-pump include server");
    }
    stop_child(&mut child);
    let _ = std::fs::remove_dir_all(&s.dir);
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128 + sig as u8,
        _ => 1,
    })
}

/// Single quotes for a shell.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn startup() -> Result<u8> {
    let location = distcc_location()?;
    check_hosts(false)?;
    let (s, _child) = start_server(true)?;
    println!("export INCLUDE_SERVER_PID={}", quoted(&s.pid.to_string()));
    println!("export INCLUDE_SERVER_DIR={}", quoted(&s.dir.to_string_lossy()));
    println!(
        "export INCLUDE_SERVER_PORT={}",
        quoted(&s.socket.to_string_lossy())
    );
    if let Some(h) = env("DISTCC_HOSTS") {
        println!("export DISTCC_HOSTS={}", quoted(&h));
    }
    let path = env("PATH").unwrap_or_default();
    println!(
        "export PATH={}",
        quoted(&format!("{}:{path}", location.display()))
    );
    Ok(0)
}

fn shutdown() -> Result<u8> {
    let pid: u32 = env("INCLUDE_SERVER_PID")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("INCLUDE_SERVER_PID is not set: was 'pump --startup' evaluated?"))?;
    let dir = env("INCLUDE_SERVER_DIR").map(PathBuf::from);
    if let Some(d) = &dir {
        report_discrepancies(d);
    }
    // Looked at before the server goes: it removes its socket as it stops.
    let ours = dir.as_ref().filter(|d| d.join("socket").exists());
    stop(pid);
    if let Some(d) = ours {
        if let Ok(log) = std::fs::read(d.join(SERVER_LOG)) {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), &log);
        }
        let _ = std::fs::remove_dir_all(d);
    }
    Ok(0)
}

/// The server process: answers on `socket` until SIGTERM, SIGINT or SIGHUP.
fn include_server(socket: &Path, args: &[String]) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let stats = args.iter().any(|a| a == "-s" || a == "--statistics");
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    // Blocked before any thread starts, so that only the waiter takes them.
    signals.thread_block().context("blocking signals")?;
    let root =
        Root::create(env("DISTCC_CLIENT_TMP").as_deref().map(Path::new)).context("making the client root")?;
    let listener = UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (stop, socket) = (stop.clone(), socket.to_owned());
        std::thread::spawn(move || {
            let _ = signals.wait();
            stop.store(true, Ordering::SeqCst);
            let _ = UnixStream::connect(&socket);
        });
    }
    let mut build = Build::default();
    build.path = std::env::var_os("PATH");
    let mut server = Server { build, root };
    let started = Instant::now();
    let c = server.serve(&listener, &stop);
    if stats {
        println!(
            "pump: include server: {} requests ({} given up), {} files parsed, {} directories read, in {:.1}s",
            c.requests,
            c.gave_up,
            c.files_parsed,
            c.dirs_read,
            started.elapsed().as_secs_f64()
        );
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}
