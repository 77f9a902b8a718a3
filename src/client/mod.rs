/*!
distcc, the client: one short-lived, blocking process per compile.

The steps: find out how we were called (`mode`), read the environment
(`settings`), expand response files and classify the command (`args`); a
compile that can go remote takes a host slot (`lock`), preprocesses here while
connecting (`remote`), sends, and writes what comes back. A host that fails is
backed off and the job moves on to the next host, then to this machine: a
failure of distribution never fails a build that a local compile would pass.
Every exit code is decided in `Client::compile` and `main`.
*/

pub mod hosts;
pub mod lock;
pub mod log;
pub mod mode;
pub mod native;
pub mod progress;
pub mod remote;
pub mod settings;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use crate::args::classify::{self, Job, Verdict};
use crate::args::response;
use crate::exitcode;
use crate::monitor::state::Phase;
use crate::protocol::{Reply, Version};
use hosts::{HostList, HostSpec};
use lock::{LockDir, Slot};
use mode::Invocation;
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

Host specifications:
   localhost[/LIMIT]                   compile here
   HOST[:PORT][/LIMIT][,lzo]           TCP, optionally LZO-compressed (protocol 2)
   [IPV6]:PORT                         an IPv6 address
   [USER]@HOST[/LIMIT][:COMMAND][,lzo] over ssh, running distccd --inetd
   --randomize  --localslots=N  --localslots_cpp=N
";

/// Runs distcc with the process's argv; returns the exit code.
pub fn main(os_args: Vec<OsString>) -> u8 {
    let settings = match settings::from_env(|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("distcc[{}] ERROR: {e}", std::process::id());
            return exitcode::BAD_ARGUMENTS;
        }
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
            0
        }
        Invocation::Version => {
            print!("{}", crate::version_banner("distcc"));
            0
        }
        Invocation::ShowHosts => with_hosts(&settings, |list| {
            list.hosts.iter().map(|h| h.spec.clone()).collect()
        }),
        Invocation::Jobs => with_hosts(&settings, |list| vec![hosts::total_slots(list).to_string()]),
        Invocation::HostsForPort(port) => match port.parse::<u16>() {
            Ok(port) => with_hosts(&settings, |list| vec![hosts::with_port(list, port)]),
            Err(_) => {
                eprintln!("distcc: --hosts-for-port needs a port number, not '{port}'");
                exitcode::BAD_ARGUMENTS
            }
        },
        Invocation::Usage(msg) => {
            eprintln!("distcc: {msg}\nTry 'distcc --help' for more information.");
            exitcode::BAD_ARGUMENTS
        }
        Invocation::Compile { argv, masquerade } => {
            let original: Vec<OsString> = if masquerade {
                let mut v = vec![OsString::from(&argv[0])];
                v.extend(os_args.iter().skip(1).cloned());
                v
            } else if argv.len() == args.len() + 1 {
                // implicit: `cc` was put in front
                let mut v = vec![OsString::from("cc")];
                v.extend(os_args.iter().skip(1).cloned());
                v
            } else {
                os_args.iter().skip(1).cloned().collect()
            };
            Client::new(settings, masquerade, &argv0).compile(original)
        }
    }
}

/// Prints what `show` makes of the host list, a line per item; exit code.
fn with_hosts(settings: &Settings, show: impl Fn(&HostList) -> Vec<String>) -> u8 {
    match load_hosts(settings) {
        Ok((list, _)) => {
            for line in show(&list) {
                println!("{line}");
            }
            0
        }
        Err(e) => {
            eprintln!("distcc[{}] ERROR: {e}", std::process::id());
            exitcode::BAD_HOSTSPEC
        }
    }
}

/// The host list and where it came from; `Err` is a message pointing at the bad token.
fn load_hosts(s: &Settings) -> Result<(HostList, String), String> {
    let user_file = s.distcc_dir.as_ref().map(|d| d.join("hosts"));
    let source = hosts::load_source(
        s.hosts.as_deref(),
        user_file.as_deref(),
        Path::new(hosts::SYSTEM_HOSTS_FILE),
    );
    let name = source.name();
    match source.text() {
        None => Ok((HostList::default(), name)),
        Some(text) => {
            let mut list = hosts::parse(text).map_err(|e| format!("{name}: {e}"))?;
            if list.randomize {
                list.shuffle(u64::from(std::process::id()) ^ now_nanos());
            }
            Ok((list, name))
        }
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into())
}

/// How a try on one host ended.
enum Attempt {
    /// The server compiled it (successfully or not); the reply is final or
    /// becomes a local rerun, per the settings.
    Compiled(Reply),
    /// The host failed us: it is backed off and the job goes elsewhere.
    HostFault(String),
    /// The local preprocessor failed: the user's error, already on stderr.
    CppFailed(u8),
}

struct Client {
    s: Settings,
    masquerade: bool,
    argv0: String,
    /// Environment for every process we start (trimmed PATH, safeguard).
    child_env: Vec<(String, String)>,
    path: String,
    /// This program's device and inode: what a masquerade link leads to.
    own: Option<(u64, u64)>,
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
            own: own_id(),
            locks: None,
            progress: Progress::new(None),
        }
    }

    fn compile(mut self, original: Vec<OsString>) -> u8 {
        let name = original[0].to_string_lossy().into_owned();
        // distcc's recursion guard: every process we start sees one level more.
        let allowed = u32::from(self.masquerade);
        if self.s.safeguard > allowed {
            log::error("distcc seems to have invoked itself recursively!");
            return exitcode::RECURSION;
        }
        if self.masquerade {
            let dir = self.argv0.rsplit_once('/').map(|(d, _)| d.to_owned());
            let has_us = |entry: &str| is_us(&Path::new(entry).join(&name), self.own);
            if let Some(trimmed) =
                mode::trim_path(&self.path, dir.as_deref().map(absolute).as_deref(), has_us)
            {
                self.path = trimmed;
            }
        }
        self.child_env = vec![
            ("PATH".into(), self.path.clone()),
            ("_DISTCC_SAFEGUARD".into(), (self.s.safeguard + 1).to_string()),
        ];
        let Some(compiler) = self.find_compiler(&name) else {
            log::error(&format!(
                "failed to exec {name}: not found on PATH (distcc's own links are skipped)"
            ));
            return exitcode::COMPILER_MISSING;
        };
        self.locks = self.lock_dir();
        if self.locks.is_some() {
            self.progress = Progress::new(self.s.distcc_dir.as_deref());
        }
        if self.s.safeguard >= 1 {
            log::info("called from a compile distcc started: compiling locally");
            return self.run_local(&compiler, &original, None);
        }
        let verdict = match response::expand_from_disk(&original) {
            Err(e) => Verdict::Local(format!("{e}")),
            Ok(words) => match words
                .iter()
                .map(|w| w.to_str().map(String::from))
                .collect::<Option<Vec<_>>>()
            {
                None => Verdict::Local("an argument is not valid UTF-8".into()),
                Some(words) => self.classify_as_found(&name, &compiler, words),
            },
        };
        match verdict {
            Verdict::Local(why) => {
                log::info(&format!("compiling locally: {why}"));
                self.run_local(&compiler, &original, Some(self.local_slots()))
            }
            Verdict::Remote(_) if self.s.deps_env => {
                log::info("compiling locally: DEPENDENCIES_OUTPUT or SUNPRO_DEPENDENCIES is set");
                self.run_local(&compiler, &original, Some(self.local_slots()))
            }
            Verdict::Remote(job) => self.distribute(&compiler, &original, job),
        }
    }

    /// Classifies the command as the compiler it really is, so a `cc` that
    /// is clang gets clang's checks (§2.9). The server is sent that
    /// compiler's name too, unless DISTCC_NO_REWRITE_CROSS keeps `cc`.
    fn classify_as_found(&self, name: &str, compiler: &Path, mut words: Vec<String>) -> Verdict {
        let Some(family) = generic_family(name, compiler) else {
            return classify::classify(&words);
        };
        words[0] = family;
        let mut verdict = classify::classify(&words);
        if let Verdict::Remote(job) = &mut verdict {
            if self.s.rewrite_cross {
                log::info(&format!("rewriting '{name}' to '{}'", job.server_argv[0]));
            } else {
                job.server_argv[0] = name.to_owned();
            }
        }
        verdict
    }

    /// `name` on our PATH, skipping distcc itself (a masquerade link, or
    /// `distcc gcc` with the link directory first on PATH).
    fn find_compiler(&self, name: &str) -> Option<PathBuf> {
        if name.contains('/') {
            return Some(PathBuf::from(name));
        }
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // One stat a candidate: executable, and not this program.
        let usable = |m: fs::Metadata| {
            m.is_file() && m.permissions().mode() & 0o111 != 0 && Some((m.dev(), m.ino())) != self.own
        };
        self.path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .find(|cand| fs::metadata(cand).is_ok_and(usable))
    }

    fn lock_dir(&self) -> Option<LockDir> {
        let dir = self.s.distcc_dir.as_ref()?;
        if !dir.is_dir() {
            if !self.s.distcc_dir_is_default {
                log::warn(&format!(
                    "DISTCC_DIR {} does not exist; running without slot locks",
                    dir.display()
                ));
                return None;
            }
            fs::create_dir_all(dir).ok()?;
        }
        let locks = dir.join("lock");
        fs::create_dir_all(&locks).ok()?;
        Some(LockDir(locks))
    }

    /// Waits for a free `cpu_localhost_N` slot, N < `n`.
    fn local_slot(&self, n: u32) -> Option<Slot> {
        let locks = self.locks.as_ref()?;
        let names: Vec<String> = (0..n.max(1)).map(|i| format!("cpu_localhost_{i}")).collect();
        let busy = || {
            log::info(&format!(
                "all {} local slots are busy; waiting for one",
                names.len()
            ))
        };
        lock::take_first_free(&locks.0, &names, self.s.pause, busy)
            .map(|(_, s)| s)
            .map_err(|e| log::warn(&format!("cannot lock in {}: {e}", locks.0.display())))
            .ok()
    }

    /// Runs the user's own command here, as they typed it.
    /// The host list's `--localslots` (distcc's default when it has none).
    fn local_slots(&self) -> u32 {
        load_hosts(&self.s).map_or(HostList::default().localslots, |(l, _)| l.localslots)
    }

    /// Runs the user's own command here, in one of `slots` local slots, or
    /// with no slot of its own (`None`: one is held already, or none applies).
    fn run_local(&self, compiler: &Path, original: &[OsString], slots: Option<u32>) -> u8 {
        let slot = slots.and_then(|n| self.local_slot(n));
        let input = original
            .iter()
            .rev()
            .map(|a| a.to_string_lossy())
            .find(|a| crate::args::filename::is_source(a));
        let slot_no = slot.as_ref().map_or(0, |s| s.index);
        self.progress.set(
            Phase::Compile,
            input.as_deref().unwrap_or(""),
            "localhost",
            slot_no,
        );
        self.spawn_local(compiler, original)
    }

    fn spawn_local(&self, compiler: &Path, original: &[OsString]) -> u8 {
        let status = Command::new(compiler)
            .arg0_compat(&original[0])
            .args(&original[1..])
            .envs(self.child_env.iter().map(|(k, v)| (k, v)))
            .status();
        match status {
            Ok(st) => exit_code(st),
            Err(e) => {
                log::error(&format!("failed to exec {}: {e}", compiler.display()));
                exitcode::COMPILER_MISSING
            }
        }
    }

    fn distribute(&self, compiler: &Path, original: &[OsString], mut job: Job) -> u8 {
        let (list, source) = match load_hosts(&self.s) {
            Ok(l) => l,
            Err(e) => {
                log::error(&e);
                if !self.s.fallback {
                    return exitcode::BAD_HOSTSPEC;
                }
                log::warn("failed to distribute: bad host list, running locally instead");
                return self.run_local(compiler, original, Some(HostList::default().localslots));
            }
        };
        if list.hosts.is_empty() {
            if source == "no hostlist" {
                log::warn("no hostlist is set; can't distribute work");
            } else {
                log::warn(&format!("{source} contained no hosts; can't distribute work"));
            }
            if !self.s.fallback {
                log::error("failed to distribute and fallbacks are disabled");
                return exitcode::NO_HOSTS;
            }
            return self.run_local(compiler, original, Some(list.localslots));
        }
        if job.native
            && let Err(why) = native::resolve(compiler, &mut job, &self.child_env)
        {
            log::info(&format!("compiling {} locally: {why}", job.input));
            return self.run_local(compiler, original, Some(list.localslots));
        }
        if job.needs_debug_dir {
            match std::env::current_dir() {
                Ok(cwd) => job
                    .server_argv
                    .push(format!("-fdebug-compilation-dir={}", cwd.display())),
                Err(e) => {
                    log::info(&format!(
                        "compiling {} locally: no current directory for the debug info: {e}",
                        job.input
                    ));
                    return self.run_local(compiler, original, Some(list.localslots));
                }
            }
        }
        if self.s.rewrite_cross {
            rewrite_cross(&mut job.server_argv, &self.path);
        }

        let mut failed: HashSet<usize> = HashSet::new();
        let mut last_failure: Option<String> = None;
        loop {
            let now = SystemTime::now();
            let usable: Vec<usize> = (0..list.hosts.len())
                .filter(|i| !failed.contains(i) && !list.hosts[*i].down)
                .filter(|i| {
                    let h = &list.hosts[*i];
                    let off = !h.is_local()
                        && self
                            .locks
                            .as_ref()
                            .is_some_and(|l| lock::backed_off(l.backoff_mark(h), now, self.s.backoff));
                    if off {
                        log::info(&format!(
                            "skipping {}: it failed less than {}s ago",
                            h.spec,
                            self.s.backoff.as_secs()
                        ));
                    }
                    !off
                })
                .collect();
            if usable.is_empty() {
                return self.give_up(compiler, original, &job, last_failure, list.localslots);
            }
            let (idx, slot) = self.pick(&list, &usable);
            let slot_no = slot.as_ref().map_or(0, |s| s.index);
            let host = &list.hosts[idx];
            if host.is_local() {
                log::info(&format!(
                    "compiling {} locally: {} came first in the host list",
                    job.input, host.spec
                ));
                return self.run_local(compiler, original, None);
            }
            log::info(&format!("compiling {} on {}", job.input, host.spec));
            self.progress
                .set(Phase::Connect, &job.input, host_name(host), slot_no);
            match self.attempt(compiler, &job, host, &list, slot_no) {
                Attempt::CppFailed(code) => return code,
                Attempt::HostFault(why) => {
                    log::warn(&format!("{}: {why}", host.spec));
                    if let Some(l) = &self.locks
                        && !self.s.backoff.is_zero()
                    {
                        l.mark_failed(host);
                        log::info(&format!(
                            "backing off {} for {}s",
                            host.spec,
                            self.s.backoff.as_secs()
                        ));
                    }
                    failed.insert(idx);
                    last_failure = Some(host.spec.clone());
                }
                Attempt::Compiled(reply) => {
                    if let Some(l) = &self.locks {
                        l.clear_failed(host);
                    }
                    return self.finish(compiler, original, &job, host, reply, list.localslots);
                }
            }
        }
    }

    /// Slot-major order over the usable hosts; waits while all are busy.
    fn pick(&self, list: &HostList, usable: &[usize]) -> (usize, Option<Slot>) {
        let Some(locks) = &self.locks else {
            return (usable[0], None);
        };
        let limits: Vec<u32> = usable.iter().map(|i| list.hosts[*i].limit).collect();
        let order = lock::slot_order(&limits);
        let names: Vec<String> = order
            .iter()
            .map(|&(u, slot)| list.hosts[usable[u]].lock_name(slot))
            .collect();
        let busy = || log::info(&format!("all {} slots are busy; waiting for one", names.len()));
        match lock::take_first_free(&locks.0, &names, self.s.pause, busy) {
            Ok((i, s)) => (usable[order[i].0], Some(s)),
            Err(e) => {
                log::warn(&format!("cannot lock in {}: {e}", locks.0.display()));
                (usable[0], None)
            }
        }
    }

    fn attempt(&self, compiler: &Path, job: &Job, host: &HostSpec, list: &HostList, slot_no: u32) -> Attempt {
        let version = if host.protocol() >= 2 {
            Version::V2
        } else {
            Version::V1
        };
        if host.protocol() == 3 {
            log::info(&format!(
                "{}: pump mode (,cpp) is not supported; using protocol 2",
                host.spec
            ));
        }
        // Preprocess while connecting (distcc's overlap): start cpp first.
        let _cpp_slot;
        let mut cpp = if job.preprocessed {
            None
        } else {
            _cpp_slot = self.local_slot(list.localslots_cpp);
            let cpp_no = _cpp_slot.as_ref().map_or(0, |s| s.index);
            self.progress
                .set(Phase::Preprocess, &job.input, "localhost", cpp_no);
            match Command::new(compiler)
                .args(&job.cpp_argv[1..])
                .envs(self.child_env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
            {
                Ok(c) => Some(c),
                Err(e) => {
                    log::error(&format!("failed to exec {}: {e}", compiler.display()));
                    return Attempt::CppFailed(exitcode::COMPILER_MISSING);
                }
            }
        };
        let conn = remote::connect(
            host,
            version,
            self.s.connect_timeout,
            self.s.io_timeout,
            &self.s.ssh,
        )
        .and_then(|mut c| c.send_head(&job.server_argv).map(|()| c));
        let source = match cpp.as_mut() {
            Some(child) => {
                let mut text = Vec::new();
                let read = child.stdout.take().expect("piped").read_to_end(&mut text);
                let status = child.wait();
                match (read, status) {
                    (Ok(_), Ok(st)) if st.success() => text,
                    (_, Ok(st)) => return Attempt::CppFailed(exit_code(st)),
                    (_, Err(e)) => {
                        log::error(&format!("waiting for the preprocessor: {e}"));
                        return Attempt::CppFailed(exitcode::DISTCC_FAILED);
                    }
                }
            }
            None => match fs::read(&job.input) {
                Ok(t) => t,
                Err(e) => {
                    // The compiler will report it in the user's terms.
                    log::info(&format!("cannot read {}: {e}", job.input));
                    return Attempt::CppFailed(self.spawn_local(compiler, &[]).max(1));
                }
            },
        };
        self.progress
            .set(Phase::Send, &job.input, host_name(host), slot_no);
        let sent = conn.and_then(|mut c| c.send_source(&source).map(|()| c));
        self.progress
            .set(Phase::Compile, &job.input, host_name(host), slot_no);
        let reply = match sent.and_then(|c| c.reply()) {
            Ok(r) => r,
            Err(why) => return Attempt::HostFault(why),
        };
        if host_fault_status(reply.status) {
            let said = String::from_utf8_lossy(&reply.stderr);
            let first = said
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no reason given");
            return Attempt::HostFault(format!(
                "the server could not compile {} (status {}): {first}",
                job.input,
                describe(reply.status)
            ));
        }
        self.progress
            .set(Phase::Receive, &job.input, host_name(host), slot_no);
        Attempt::Compiled(reply)
    }

    /// A reply from a server: write what it produced, or rerun here.
    fn finish(
        &self,
        compiler: &Path,
        original: &[OsString],
        job: &Job,
        host: &HostSpec,
        reply: Reply,
        localslots: u32,
    ) -> u8 {
        let code = exit_code(std::process::ExitStatus::from_raw(reply.status as i32));
        if reply.status == 0 {
            if let Err(e) = write_atomically(Path::new(&job.output), &reply.object) {
                log::error(&format!("cannot write {}: {e}", job.output));
                return exitcode::IO_ERROR;
            }
            let _ = std::io::stdout().write_all(&reply.stdout);
            let _ = std::io::stderr().write_all(&reply.stderr);
            log::info(&format!("compiled {} on {}", job.input, host.spec));
            return 0;
        }
        if self.s.skip_local_retry || !self.s.fallback {
            let _ = std::io::stdout().write_all(&reply.stdout);
            let _ = std::io::stderr().write_all(&reply.stderr);
            log::info(&format!(
                "compile of {} on {} failed with exit code {code}",
                job.input, host.spec
            ));
            return code;
        }
        // distcc 3.4 reruns a failed compile here, so that a broken server can
        // never be the cause of a failed build; the local result is final.
        log::info(&format!(
            "compile of {} on {} failed with exit code {code}; running it locally to be sure",
            job.input, host.spec
        ));
        self.run_local(compiler, original, Some(localslots))
    }

    fn give_up(
        &self,
        compiler: &Path,
        original: &[OsString],
        job: &Job,
        failed_host: Option<String>,
        localslots: u32,
    ) -> u8 {
        if !self.s.fallback {
            log::error("failed to distribute and fallbacks are disabled");
            return exitcode::NO_HOSTS;
        }
        match failed_host {
            Some(h) => log::warn(&format!(
                "failed to distribute {} to {h}, running locally instead",
                job.input
            )),
            None => log::warn(&format!(
                "no usable host for {}; running locally instead",
                job.input
            )),
        }
        self.run_local(compiler, original, Some(localslots))
    }
}

/// The host name a monitor shows: no port, no options.
fn host_name(h: &HostSpec) -> &str {
    match &h.transport {
        hosts::Transport::Tcp { host, .. } | hosts::Transport::Ssh { host, .. } => host,
        hosts::Transport::Local => "localhost",
    }
}

/// Statuses that say the server, not the user's code, failed: distcc's own
/// exit codes (100+: refused, compiler missing, timeout) and signals.
fn host_fault_status(status: u32) -> bool {
    let st = std::process::ExitStatus::from_raw(status as i32);
    match st.code() {
        Some(code) => code >= 100,
        None => true,
    }
}

fn describe(status: u32) -> String {
    let st = std::process::ExitStatus::from_raw(status as i32);
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => format!("{status:#x}"),
    }
}

/// The shell's convention: the exit code, or 128 + the signal.
fn exit_code(st: std::process::ExitStatus) -> u8 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c as u8,
        (_, Some(s)) => (128 + s) as u8,
        _ => exitcode::DISTCC_FAILED,
    }
}

/// distcc 3.4's cross-compilation rewrite (§2.9): `gcc` becomes
/// `<triple>-gcc` when that exists here, so a server of another default
/// target still builds for ours; clang gets an explicit `-target`.
fn rewrite_cross(server_argv: &mut Vec<String>, path: &str) {
    let name = server_argv[0].rsplit('/').next().unwrap_or_default().to_owned();
    let arch = std::env::consts::ARCH;
    let gnu = name == "gcc" || name == "g++" || name.starts_with("gcc-") || name.starts_with("g++-");
    if gnu {
        for triple in [format!("{arch}-linux-gnu"), format!("{arch}-pc-linux-gnu")] {
            let candidate = format!("{triple}-{name}");
            if path
                .split(':')
                .any(|d| !d.is_empty() && is_executable(&Path::new(d).join(&candidate)))
            {
                server_argv[0] = candidate;
                return;
            }
        }
    }
    let clang =
        name == "clang" || name == "clang++" || name.starts_with("clang-") || name.starts_with("clang++-");
    let has_target = server_argv
        .iter()
        .any(|w| w == "-target" || w.starts_with("--target="));
    if clang && !has_target {
        server_argv.push("-target".into());
        server_argv.push(format!("{arch}-pc-linux-gnu"));
    }
}

/// The compiler a generic `cc` or `c++` on PATH leads to through symbolic
/// links (`cc` -> `/etc/alternatives/cc` -> `/usr/bin/gcc` on Debian,
/// `cc` -> `gcc` on Arch), if it is gcc or clang.
fn generic_family(name: &str, found: &Path) -> Option<String> {
    if name != "cc" && name != "c++" {
        return None;
    }
    let mut p = found.to_path_buf();
    for _ in 0..8 {
        let target = fs::read_link(&p).ok()?;
        p = p.parent()?.join(target);
        let base = p.file_name()?.to_str()?;
        if classify::names_family(name, base) {
            return Some(base.to_owned());
        }
    }
    None
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// This program's device and inode: what a masquerade link leads back to.
fn own_id() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(std::env::current_exe().ok()?).ok()?;
    Some((m.dev(), m.ino()))
}

/// Whether `p` is this very program (a masquerade link to us): one stat,
/// no symlink walk.
fn is_us(p: &Path, own: Option<(u64, u64)>) -> bool {
    use std::os::unix::fs::MetadataExt;
    own.is_some() && fs::metadata(p).ok().map(|m| (m.dev(), m.ino())) == own
}

fn absolute(dir: &str) -> String {
    if dir.starts_with('/') {
        return dir.to_owned();
    }
    std::env::current_dir()
        .map(|c| c.join(dir).to_string_lossy().into_owned())
        .unwrap_or_else(|_| dir.to_owned())
}

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// so an interrupted or failed job never leaves a half-written object.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = path
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{}.distcc-{}.tmp",
        String::from_utf8_lossy(&base),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        // Replacing an existing file by rename makes ext4 (auto_da_alloc)
        // write the new one out at once, about 0.1 ms per object; with the
        // old name gone first, the rename is only a rename.
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `Command::arg0` on Unix, named so the intent reads at the call site.
trait Arg0 {
    fn arg0_compat(&mut self, a: &OsString) -> &mut Self;
}

impl Arg0 for Command {
    fn arg0_compat(&mut self, a: &OsString) -> &mut Self {
        std::os::unix::process::CommandExt::arg0(self, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_faults_are_distcc_codes_and_signals() {
        assert!(!host_fault_status(0));
        assert!(!host_fault_status(1 << 8), "a compile error is the user's");
        assert!(!host_fault_status(99 << 8));
        for code in [100u32, 110, 113, 116, 118] {
            assert!(host_fault_status(code << 8), "{code}");
        }
        assert!(host_fault_status(9), "killed by a signal");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(11)), 139);
    }

    #[test]
    fn atomic_write_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("distcc-rs-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("x.o");
        write_atomically(&out, b"first").unwrap();
        write_atomically(&out, b"second").unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"second");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        assert!(write_atomically(&dir.join("missing/x.o"), b"x").is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
