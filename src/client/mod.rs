/*!
distcc, the client: one short-lived, blocking process per compile.

The steps: find out how we were called (`mode`), read the environment
(`settings`), expand response files and classify the command (`args`); a
compile that can go remote takes a host slot (`lock`), preprocesses here while
connecting (`remote`), sends, and writes what comes back. A host that fails is
backed off and the job moves on to the next host, then to this machine: a
failure of distribution never fails a build that a local compile would pass.
Every path ends in an [`Outcome`]; [`main`] alone turns it into the exit code.

The rooms: `compiler` (which compiler, and its name for the server),
`local` (compiling here), `distribute` (choosing hosts and talking to
them, over `remote`), `output` (writing what a server sent), `plan` (the
host list, read once).
*/

mod compiler;
mod distribute;
pub mod hosts;
mod local;
pub mod lock;
pub mod log;
pub mod mode;
pub mod native;
pub mod outcome;
pub mod output;
pub mod plan;
pub mod progress;
pub mod pump;
pub mod reapi;
pub mod remote;
pub mod settings;
pub mod zeroconf;

use std::ffi::OsString;
use std::path::Path;

use crate::args::classify::Verdict;
use crate::args::response;
use compiler::FileId;
use lock::LockDir;
use mode::Invocation;
use outcome::{Failure, Outcome};
use plan::{Plan, PlanError};
use progress::Progress;
use settings::Settings;

pub const USAGE: &str = "\
Usage:
   distcc [--scan-includes] [COMPILER] [compile options] -o OBJECT -c SOURCE
   distcc [--help|--version|--show-hosts|-j]

   Or link or symlink a compiler name (gcc, cc, g++, clang, ...) to distcc
   in a directory early on PATH, such as /usr/lib/distcc/bin.

Options:
   COMPILER                   defaults to \"cc\"
   --help                     explain usage and exit
   --version                  show version and exit
   --show-hosts               show host list and exit
   -j                         calculate the concurrency level from the host list
   --scan-includes            show the files distcc would send to the remote
                              machine in pump mode, and exit (under pump only)
   --hosts-for-port PORT      the host list with every TCP host on PORT (for a
                              chroot instance such as distccd@3692; see distcc-chroot)

Environment variables:
   DISTCC_HOSTS=HOSTSPEC ...  hosts to use (else $DISTCC_DIR/hosts, /etc/distcc/hosts)
   DISTCC_VERBOSE=1           say every decision, and why a compile stays local
   DISTCC_LOG=LOGFILE         send those messages to a file instead
   DISTCC_FALLBACK=0          never compile locally after a distribution failure
   DISTCC_SKIP_LOCAL_RETRY=1  a failed remote compile is final (no local rerun)
   DISTCC_IO_TIMEOUT=SECONDS  network timeout (default 300)
   DISTCC_CONNECT_TIMEOUT=SECONDS  connect timeout (default 4)
   DISTCC_BACKOFF_PERIOD=SECONDS   how long a failed host is skipped (default 60; 0 = never)
   DISTCC_PAUSE_TIME_MSEC=MS  rescan interval while every slot is busy (default 1000)
   DISTCC_DIR=DIR             locks, state and hosts file (default ~/.distcc)
   DISTCC_SSH=COMMAND         ssh program and options for @host entries
   DISTCC_NO_REWRITE_CROSS=1  don't rewrite gcc to <triple>-gcc or add -target for clang
   DISTCC_MAX_DISCREPANCY=N   pump mode: remote failures that passed here before
                              pump mode is off for the build (default 1)
   DISTCC_REAPI_PLATFORM=K=V,...  platform properties for reapi:// hosts
   DISTCC_REAPI_TOKEN_FILE=FILE   a bearer token for reapi:// hosts

Host specifications:
   localhost[/LIMIT]                   compile here
   HOST[:PORT][/LIMIT][,lzo]           TCP, optionally LZO-compressed (protocol 2)
   HOSTSPEC,cpp,lzo                    pump mode: the server preprocesses (protocol 3,
                                       for builds run under pump; see pump(1))
   [IPV6]:PORT                         an IPv6 address
   [USER]@HOST[/LIMIT][:COMMAND][,lzo] over ssh, running distccd --inetd
   reapi://HOST:PORT[/LIMIT][,instance=NAME][,tls][,cpp]
                                       a Remote Execution API cluster (its action
                                       cache first; see distcc(1))
   +zeroconf                           the servers on the local network publishing
                                       this machine's cc (distccd --zeroconf)
   --randomize  --localslots=N  --localslots_cpp=N
";

/// Runs distcc with the process's argv; returns the exit code.
pub fn main(os_args: Vec<OsString>) -> u8 {
    let outcome = run(os_args);
    match &outcome {
        Outcome::Failed(Failure::Usage(msg)) => {
            eprintln!("distcc: {msg}\nTry 'distcc --help' for more information.");
        }
        Outcome::Failed(f) => log::fatal(&f.to_string()),
        _ => {}
    }
    outcome::exit_code(&outcome)
}

fn run(os_args: Vec<OsString>) -> Outcome {
    let settings = match settings::from_env(|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(Failure::Settings(e)),
    };
    log::init(settings.verbose, settings.log_file.as_deref());
    let argv0 = os_args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "distcc".into());
    let args: Vec<String> = os_args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match mode::detect(&argv0, &args) {
        Invocation::Help => {
            print!("{}", crate::version_banner("distcc"));
            print!("\n{USAGE}");
            Outcome::Done
        }
        Invocation::Version => {
            print!("{}", crate::version_banner("distcc"));
            Outcome::Done
        }
        Invocation::ShowHosts => show_hosts(&settings, |plan| {
            let note = |spec: &str| plan.zeroconf.as_ref().and_then(|z| z.note(spec));
            plan.list
                .hosts
                .iter()
                .map(|h| match note(&h.spec) {
                    Some(n) => format!("{}  # {n}", h.spec),
                    None => h.spec.clone(),
                })
                .collect()
        }),
        Invocation::Jobs => show_hosts(&settings, |plan| vec![hosts::total_slots(&plan.list).to_string()]),
        Invocation::HostsForPort(port) => match port.parse::<u16>() {
            Ok(port) => show_hosts(&settings, |plan| vec![hosts::with_port(&plan.list, port)]),
            Err(_) => Outcome::Failed(Failure::Usage(format!(
                "--hosts-for-port needs a port number, not '{port}'"
            ))),
        },
        Invocation::Usage(msg) => Outcome::Failed(Failure::Usage(msg)),
        Invocation::ScanIncludes(argv) => scan_includes(&settings, &argv),
        Invocation::Compile { argv, masquerade } => {
            // The user's words as given (not lossily converted), with the
            // compiler's name in front.
            let rest = os_args.iter().skip(1).cloned();
            let original: Vec<OsString> = if masquerade || argv.len() == args.len() + 1 {
                // masquerade: argv[0]'s base name; implicit: `cc` put in front
                std::iter::once(OsString::from(&argv[0])).chain(rest).collect()
            } else {
                rest.collect()
            };
            Client::new(settings, masquerade, &argv0).compile(original)
        }
    }
}

/// distcc 3.4's `--scan-includes`: the include server's answer for a
/// command, a line per entry (`FILE`, `SYMLINK`, `DIRECTORY`, `SYSTEMDIR`).
fn scan_includes(settings: &Settings, argv: &[String]) -> Outcome {
    let Some(socket) = &settings.include_server else {
        return Outcome::Failed(Failure::Usage(
            "--scan-includes: INCLUDE_SERVER_PORT is not set (run it under pump)".into(),
        ));
    };
    let mut argv = argv.to_vec();
    let path = std::env::var("PATH").unwrap_or_default();
    if let Some(c) = compiler::find(&path, &argv[0], compiler::own_id()) {
        argv[0] = c.display().to_string();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let paths = match crate::pump::server::ask(socket, &cwd, &argv, settings.io_timeout) {
        Ok(p) => p,
        Err(why) => {
            log::error(&format!("failed to get includes from include server: {why}"));
            return Outcome::Failed(Failure::Undistributed(None));
        }
    };
    for p in paths {
        use std::os::unix::ffi::OsStrExt;
        let raw = p.as_os_str().as_bytes();
        let Some(name) = pump::original_name(raw) else {
            continue;
        };
        let name = String::from_utf8_lossy(name);
        let line = if let Some(dir) = name.strip_suffix(&format!("/{}", crate::pump::closure::FORCING)) {
            format!("{:<9} {dir}", "DIRECTORY")
        } else if let Ok(target) = std::fs::read_link(&p) {
            let t = target.to_string_lossy();
            let ups = t.matches("../").count();
            let system = ups > name.matches('/').count()
                && t.trim_start_matches("../") == name.trim_start_matches('/');
            format!("{:<9} {name}", if system { "SYSTEMDIR" } else { "SYMLINK" })
        } else {
            format!("{:<9} {name}", "FILE")
        };
        println!("{line}");
    }
    Outcome::Done
}

/// Prints what `show` makes of the host list, a line per item.
fn show_hosts(settings: &Settings, show: impl Fn(&Plan) -> Vec<String>) -> Outcome {
    match Plan::load(settings) {
        Ok(plan) => {
            for line in show(&plan) {
                println!("{line}");
            }
            Outcome::Done
        }
        Err(e) => Outcome::Failed(Failure::Hosts(e)),
    }
}

struct Client {
    s: Settings,
    masquerade: bool,
    argv0: String,
    /// Environment for every process we start (trimmed PATH, safeguard).
    child_env: Vec<(String, String)>,
    path: String,
    /// This program's device and inode: what a masquerade link leads to.
    own: Option<FileId>,
    locks: Option<LockDir>,
    progress: Progress,
}

impl Client {
    fn new(s: Settings, masquerade: bool, argv0: &str) -> Client {
        Client {
            s,
            masquerade,
            argv0: argv0.to_owned(),
            child_env: Vec::new(),
            path: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            own: compiler::own_id(),
            locks: None,
            progress: Progress::new(None),
        }
    }

    fn compile(mut self, original: Vec<OsString>) -> Outcome {
        let Some(first) = original.first() else {
            return Outcome::Failed(Failure::Usage("missing compiler command".into()));
        };
        let name = first.to_string_lossy().into_owned();
        // distcc's recursion guard: every process we start sees one level more.
        let allowed = u32::from(self.masquerade);
        if self.s.safeguard > allowed {
            return Outcome::Failed(Failure::Recursion);
        }
        if self.masquerade {
            let dir = self.argv0.rsplit_once('/').map(|(d, _)| d.to_owned());
            let has_us = |entry: &str| compiler::is_us(&Path::new(entry).join(&name), self.own);
            if let Some(trimmed) = mode::trim_path(
                &self.path,
                dir.as_deref().map(compiler::absolute).as_deref(),
                has_us,
            ) {
                self.path = trimmed;
            }
        }
        self.child_env = vec![
            ("PATH".into(), self.path.clone()),
            ("_DISTCC_SAFEGUARD".into(), (self.s.safeguard + 1).to_string()),
        ];
        let Some(compiler) = compiler::find(&self.path, &name, self.own) else {
            return Outcome::Failed(Failure::CompilerNotFound(name));
        };
        self.locks = self.lock_dir();
        if self.locks.is_some() {
            self.progress = Progress::new(self.s.distcc_dir.as_deref());
        }
        if self.s.safeguard >= 1 {
            let why = "called from a compile distcc started".to_owned();
            log::info(&format!("compiling locally: {why}"));
            return self.run_local(&compiler, &original, why, None);
        }
        // Read once: local compiles take their slot count from it too. A
        // bad list matters only to a job that could be distributed.
        let plan = Plan::load(&self.s);
        let verdict = match response::expand_from_disk(&original) {
            Err(e) => Verdict::Local(format!("{e}")),
            Ok(words) => match words
                .iter()
                .map(|w| w.to_str().map(String::from))
                .collect::<Option<Vec<_>>>()
            {
                None => Verdict::Local("an argument is not valid UTF-8".into()),
                Some(words) if words.is_empty() => Verdict::Local("empty command line".into()),
                Some(words) => compiler::classify_as_found(&name, &compiler, words, !self.s.rewrite_cross),
            },
        };
        let why = match verdict {
            Verdict::Remote(_) if self.s.deps_env => {
                "DEPENDENCIES_OUTPUT or SUNPRO_DEPENDENCIES is set".to_owned()
            }
            Verdict::Remote(job) => return self.distribute(&compiler, &original, job, &plan),
            Verdict::Local(why) => why,
        };
        log::info(&format!("compiling locally: {why}"));
        self.run_local(&compiler, &original, why, Some(localslots(&plan)))
    }

    /// `$DISTCC_DIR/lock`, made if need be; `None` runs without slots.
    fn lock_dir(&self) -> Option<LockDir> {
        let dir = self.s.distcc_dir.as_ref()?;
        if !dir.is_dir() {
            if !self.s.distcc_dir_is_default {
                log::warn(&format!(
                    "DISTCC_DIR {} is not a directory; running without slot locks",
                    dir.display()
                ));
                return None;
            }
            if let Err(e) = std::fs::create_dir_all(dir) {
                log::warn(&format!(
                    "cannot make {}: {e}; running without slot locks",
                    dir.display()
                ));
                return None;
            }
        }
        let locks = dir.join("lock");
        if let Err(e) = std::fs::create_dir_all(&locks) {
            log::warn(&format!(
                "cannot make {}: {e}; running without slot locks",
                locks.display()
            ));
            return None;
        }
        Some(LockDir(locks))
    }
}

/// The host list's `--localslots` (distcc's default when it has none).
fn localslots(plan: &Result<Plan, PlanError>) -> u32 {
    match plan {
        Ok(p) => p.list.localslots,
        Err(_) => hosts::HostList::default().localslots,
    }
}
