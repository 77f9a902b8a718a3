//! Compiling on a server: choose a host slot (slot-major, as distcc 3.4),
//! preprocess here while connecting, send, and take the answer. A host that
//! fails is backed off and the job goes to the next, then here; each host is
//! tried at most once per job.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::SystemTime;

use super::hosts::{self, HostList, HostSpec};
use super::lock::{self, Slot};
use super::outcome::{Failure, FaultKind, HostFault, Outcome, status_code};
use super::plan::{Plan, PlanError};
use super::pump::Prepared;
use super::{Client, compiler, log, native, output, remote};
use crate::args::classify::Job;
use crate::exitcode;
use crate::monitor::state::Phase;
use crate::protocol::{Reply, Version};

/// How a try on one host ended.
enum Attempt {
    /// The server compiled it (successfully or not).
    Compiled(Reply),
    /// The host failed us.
    Fault(HostFault),
    /// The job ends here: the preprocessor failed on the user's code, or
    /// could not be run.
    Over(Outcome),
}

/// What every try of one job shares, whichever host it goes to.
struct Tries<'a> {
    compiler: &'a Path,
    job: &'a Job,
    /// The source, when the job's input was already preprocessed.
    preprocessed: Option<&'a [u8]>,
    list: &'a HostList,
    /// Asked of the include server once, at the first pump-mode host.
    pump: OnceCell<Result<Prepared, String>>,
}

impl Client {
    pub(super) fn distribute(
        &self,
        compiler: &Path,
        original: &[OsString],
        mut job: Job,
        plan: &Result<Plan, PlanError>,
    ) -> Outcome {
        let input = job.input.clone();
        let local = |why: String, slots: Option<u32>| {
            log::info(&format!("compiling {input} locally: {why}"));
            self.run_local(compiler, original, why, slots)
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                if !self.s.fallback {
                    return Outcome::Failed(Failure::Hosts(e.clone()));
                }
                log::error(&e.to_string());
                log::warn("failed to distribute: bad host list, running locally instead");
                let slots = HostList::default().localslots;
                return self.run_local(compiler, original, "the host list is bad".into(), Some(slots));
            }
        };
        let list = &plan.list;
        if list.hosts.is_empty() {
            log::warn(&plan.why_empty());
            if !self.s.fallback {
                return Outcome::Failed(Failure::Undistributed(None));
            }
            return self.run_local(compiler, original, plan.why_empty(), Some(list.localslots));
        }
        if job.native
            && let Err(why) = native::resolve(compiler, &mut job, &self.child_env)
        {
            return local(why.to_string(), Some(list.localslots));
        }
        if job.needs_debug_dir {
            match std::env::current_dir() {
                Ok(cwd) => job
                    .server_argv
                    .push(format!("-fdebug-compilation-dir={}", cwd.display())),
                Err(e) => {
                    return local(
                        format!("no current directory for the debug info: {e}"),
                        Some(list.localslots),
                    );
                }
            }
        }
        // Preprocessed input is read once, before any host is chosen: a
        // file that cannot be read is the compiler's to report, not a
        // host's fault.
        let preprocessed = if job.preprocessed {
            match fs::read(&job.input) {
                Ok(text) => Some(text),
                Err(e) => {
                    return local(
                        format!("cannot read {}: {e}; the compiler reports it", job.input),
                        Some(list.localslots),
                    );
                }
            }
        } else {
            None
        };
        if self.s.rewrite_cross {
            compiler::rewrite_cross(&mut job.server_argv, &self.path);
        }

        let cx = Tries {
            compiler,
            job: &job,
            preprocessed: preprocessed.as_deref(),
            list,
            pump: OnceCell::new(),
        };
        let mut failed: HashSet<usize> = HashSet::new();
        let mut last: Option<(String, HostFault)> = None;
        loop {
            let usable = self.usable_hosts(list, &failed);
            if usable.is_empty() {
                return self.give_up(compiler, original, &job, last, list.localslots);
            }
            let (idx, slot) = self.pick(list, &usable);
            let slot_no = slot.as_ref().map_or(0, |s| s.index);
            let host = &list.hosts[idx];
            if host.is_local() {
                // Its slot, taken by `pick`, is the local compile's.
                return local(format!("{} came first in the host list", host.spec), None);
            }
            log::info(&format!("compiling {} on {}", job.input, host.spec));
            self.progress
                .set(Phase::Connect, &job.input, host_name(host), slot_no);
            match self.attempt(&cx, host, slot_no) {
                Attempt::Over(outcome) => return outcome,
                Attempt::Fault(fault) => {
                    log::warn(&format!("{}: {fault}", host.spec));
                    if let Some(z) = &plan.zeroconf {
                        z.expire(host);
                    }
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
                    last = Some((host.spec.clone(), fault));
                }
                Attempt::Compiled(reply) => {
                    if let Some(l) = &self.locks {
                        l.clear_failed(host);
                    }
                    drop(slot);
                    let deps = cx
                        .pump
                        .get()
                        .and_then(|p| p.as_ref().ok())
                        .and_then(|p| p.deps_file.clone());
                    return self.finish(compiler, original, &job, host, reply, deps, list.localslots);
                }
            }
        }
    }

    /// The hosts not yet tried for this job, not `,down`, not backed off.
    fn usable_hosts(&self, list: &HostList, failed: &HashSet<usize>) -> Vec<usize> {
        let now = SystemTime::now();
        (0..list.hosts.len())
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
            .collect()
    }

    /// Slot-major order over the usable hosts; waits while all are busy.
    /// `usable` is not empty.
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

    fn attempt(&self, cx: &Tries, host: &HostSpec, slot_no: u32) -> Attempt {
        let (compiler, job, preprocessed, list, pump) =
            (cx.compiler, cx.job, cx.preprocessed, cx.list, &cx.pump);
        let version = match host.protocol() {
            Version::Pump => Version::Lzo,
            v => v,
        };
        if host.protocol() == Version::Pump {
            match pump.get_or_init(|| self.scan_for_pump(compiler, job, list)) {
                Ok(p) => return self.attempt_pump(job, p, host, slot_no),
                Err(why) => log::info(&format!(
                    "{}: not in pump mode: {why}; preprocessing here (protocol 2)",
                    host.spec
                )),
            }
        }
        if matches!(host.transport, hosts::Transport::Reapi { .. }) {
            return self.attempt_reapi(cx, host, slot_no);
        }
        // Preprocess while connecting (distcc's overlap): start cpp first.
        let _cpp_slot;
        let mut cpp = match preprocessed {
            Some(_) => None,
            None => {
                _cpp_slot = self.local_slot(list.localslots_cpp);
                match self.spawn_cpp(compiler, job, &_cpp_slot) {
                    Ok(c) => Some(c),
                    Err(over) => return over,
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
        let made;
        let source: &[u8] = match (cpp.as_mut(), preprocessed) {
            (Some(child), _) => match read_cpp(child) {
                Ok(text) => {
                    made = text;
                    &made
                }
                Err(over) => return over,
            },
            (None, Some(text)) => text,
            (None, None) => &[],
        };
        self.progress
            .set(Phase::Send, &job.input, host_name(host), slot_no);
        let sent = conn.and_then(|mut c| c.send_source(source).map(|()| c));
        self.progress
            .set(Phase::Compile, &job.input, host_name(host), slot_no);
        let reply = match sent.and_then(|c| c.reply()) {
            Ok(r) => r,
            Err(fault) => return Attempt::Fault(fault),
        };
        self.judge(job, host, slot_no, reply)
    }

    /// The local preprocessor for `job`, shown in its local slot.
    fn spawn_cpp(
        &self,
        compiler: &Path,
        job: &Job,
        slot: &Option<Slot>,
    ) -> Result<std::process::Child, Attempt> {
        let cpp_no = slot.as_ref().map_or(0, |s| s.index);
        self.progress
            .set(Phase::Preprocess, &job.input, "localhost", cpp_no);
        Command::new(compiler)
            .args(job.cpp_argv.iter().skip(1))
            .envs(self.child_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| {
                Attempt::Over(Outcome::Failed(Failure::CannotRun {
                    program: compiler.to_path_buf(),
                    error,
                }))
            })
    }

    /// A REAPI cluster: the job as an Action, from the cache if it has
    /// run before, else executed there; with `,cpp` under `pump`, the
    /// include server's files and the command that preprocesses there.
    fn attempt_reapi(&self, cx: &Tries, host: &HostSpec, slot_no: u32) -> Attempt {
        let (compiler, job, preprocessed, list, pump) =
            (cx.compiler, cx.job, cx.preprocessed, cx.list, &cx.pump);
        let hosts::Transport::Reapi {
            host: name,
            port,
            instance,
            tls,
        } = &host.transport
        else {
            return Attempt::Fault(HostFault::new(FaultKind::Connect, "not a REAPI host"));
        };
        let cache = self.s.distcc_dir.as_ref().map(|d| d.join("reapi"));
        let identity = match super::reapi::identity(compiler, cache.as_deref()) {
            Ok(id) => id,
            Err(why) => {
                return Attempt::Fault(HostFault::new(
                    FaultKind::Refused(exitcode::COMPILER_MISSING),
                    format!("the compiler's identity is unknown: {why}"),
                ));
            }
        };
        let platform = self.s.reapi_platform.clone();
        // With `,cpp`, the include server's files, where that is exactly a
        // local compile; else (or without) preprocessed here.
        let pumped = host.cpp.then(|| {
            let p = pump
                .get_or_init(|| self.scan_for_pump(compiler, job, list))
                .as_ref()
                .map_err(String::clone)?;
            super::reapi::pump_action(p, &job.output, &identity, platform.clone(), self.s.io_timeout)
        });
        match &pumped {
            Some(Ok(a)) => log::info(&format!(
                "compiling {} on {} in pump mode ({} files)",
                job.input,
                host.spec,
                a.inputs.len()
            )),
            Some(Err(why)) => log::info(&format!(
                "{}: not in pump mode: {why}; preprocessing here",
                host.spec
            )),
            None => {}
        }
        let pumped = pumped.and_then(Result::ok);
        let is_pump = pumped.is_some();
        let action = match pumped {
            Some(a) => a,
            None => {
                let source = match preprocessed {
                    Some(text) => text.to_vec(),
                    None => {
                        let slot = self.local_slot(list.localslots_cpp);
                        let mut child = match self.spawn_cpp(compiler, job, &slot) {
                            Ok(c) => c,
                            Err(over) => return over,
                        };
                        match read_cpp(&mut child) {
                            Ok(text) => text,
                            Err(over) => return over,
                        }
                    }
                };
                match super::reapi::action(job, source, &identity, platform, self.s.io_timeout) {
                    Ok(a) => a,
                    Err(why) => {
                        return Attempt::Fault(HostFault::new(
                            FaultKind::Refused(exitcode::ACCESS_DENIED),
                            format!("not a compile a server runs: {why}"),
                        ));
                    }
                }
            }
        };
        let endpoint = crate::reapi::Endpoint {
            host: name.clone(),
            port: *port,
            instance: instance.clone(),
            tls: *tls,
            token_file: self.s.reapi_token_file.clone(),
        };
        self.progress
            .set(Phase::Compile, &job.input, host_name(host), slot_no);
        let done = match crate::reapi::run(&endpoint, &action) {
            Ok(done) => done,
            Err(fault) => {
                let kind = match &fault {
                    crate::reapi::Fault::Unavailable(_) => FaultKind::Connect,
                    crate::reapi::Fault::Deadline(_) => FaultKind::Timeout,
                    crate::reapi::Fault::Permission(_) => FaultKind::Refused(exitcode::ACCESS_DENIED),
                    crate::reapi::Fault::Refused(_) => FaultKind::Refused(exitcode::PROTOCOL_ERROR),
                    crate::reapi::Fault::Protocol(_) => FaultKind::Protocol,
                };
                return Attempt::Fault(HostFault::new(kind, format!("the cluster: {fault}")));
            }
        };
        log::info(&format!(
            "{}: action {} {}, exit code {}",
            host.spec,
            done.action_digest,
            if done.cached {
                "from the action cache"
            } else {
                "executed on the cluster"
            },
            done.exit_code
        ));
        let object = done
            .outputs
            .iter()
            .find(|(p, _)| *p == action.outputs[0])
            .map(|(_, b)| b.clone());
        let object = match (object, done.exit_code) {
            (Some(o), _) => o,
            (None, 0) => {
                return Attempt::Fault(HostFault::new(
                    FaultKind::Protocol,
                    format!("the cluster's result has no {}", action.outputs[0]),
                ));
            }
            (None, _) => Vec::new(),
        };
        let dotd = action
            .outputs
            .get(1)
            .and_then(|d| done.outputs.iter().find(|(p, _)| p == d))
            .map(|(_, b)| b.clone());
        let reply = Reply {
            // Pump mode's reply: `finish` writes its dependency file.
            version: if is_pump { Version::Pump } else { Version::Plain },
            status: ((done.exit_code as u32) & 0xff) << 8,
            stderr: done.stderr,
            stdout: done.stdout,
            object,
            dotd,
        };
        self.judge(job, host, slot_no, reply)
    }

    /// The include server's scan is a pump job's preprocessing, done here:
    /// as in distcc 3.4 it holds a local preprocessing slot (given back when
    /// the scan is over) and monitors show it as Preprocess on localhost.
    fn scan_for_pump(&self, compiler: &Path, job: &Job, list: &HostList) -> Result<Prepared, String> {
        let slot = self.local_slot(list.localslots_cpp);
        let slot_no = slot.as_ref().map_or(0, |s| s.index);
        self.progress
            .set(Phase::Preprocess, &job.input, "localhost", slot_no);
        self.pump_request(compiler, job)
    }

    /// Protocol 3: the command and the include server's files, at once.
    fn attempt_pump(&self, job: &Job, p: &Prepared, host: &HostSpec, slot_no: u32) -> Attempt {
        log::info(&format!(
            "compiling {} on {} in pump mode (protocol 3, {} files)",
            job.input,
            host.spec,
            p.entries.len()
        ));
        self.progress
            .set(Phase::Send, &job.input, host_name(host), slot_no);
        let sent = remote::connect(
            host,
            Version::Pump,
            self.s.connect_timeout,
            self.s.io_timeout,
            &self.s.ssh,
        )
        .and_then(|mut c| c.send_raw(&p.wire()).map(|()| c));
        self.progress
            .set(Phase::Compile, &job.input, host_name(host), slot_no);
        match sent.and_then(|c| c.reply()) {
            Ok(reply) => self.judge(job, host, slot_no, reply),
            Err(fault) => Attempt::Fault(fault),
        }
    }

    /// A server's answer: the user's result, or the server's fault.
    fn judge(&self, job: &Job, host: &HostSpec, slot_no: u32, reply: Reply) -> Attempt {
        if let Some(code) = host_fault_code(reply.status) {
            let said = String::from_utf8_lossy(&reply.stderr);
            let first = said
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no reason given");
            return Attempt::Fault(HostFault::new(
                FaultKind::Refused(code),
                format!(
                    "the server could not compile {} (status {}): {first}",
                    job.input,
                    describe(reply.status)
                ),
            ));
        }
        self.progress
            .set(Phase::Receive, &job.input, host_name(host), slot_no);
        Attempt::Compiled(reply)
    }

    /// A reply from a server: write what it produced, or rerun here.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        compiler: &Path,
        original: &[OsString],
        job: &Job,
        host: &HostSpec,
        reply: Reply,
        deps_file: Option<String>,
        localslots: u32,
    ) -> Outcome {
        let pumped = reply.version == Version::Pump;
        let status = ExitStatus::from_raw(reply.status as i32);
        let code = status_code(status);
        let said = if status.success() {
            if let Err(error) = output::write(Path::new(&job.output), &reply.object, job.assembly) {
                if !self.s.fallback {
                    return Outcome::Failed(Failure::Output {
                        path: job.output.clone(),
                        error,
                    });
                }
                // The compiler meets the same obstacle and says so in its
                // own words, with its own exit status.
                let why = format!("cannot write {}: {error}", job.output);
                log::info(&format!(
                    "compiled {} on {}, but {why}; compiling locally",
                    job.input, host.spec
                ));
                return self.run_local(compiler, original, why, Some(localslots));
            }
            if pumped && let Some(deps) = &deps_file {
                let written = match &reply.dotd {
                    // Laid out as gcc does: distcc 3.4's server keeps its own
                    // line breaks, made for its longer paths.
                    Some(d) => fs::write(deps, crate::daemon::pump::client_dotd(d, ""))
                        .map_err(|e| format!("cannot write {deps}: {e}")),
                    None => Err(format!("the server sent no dependency file for {deps}")),
                };
                if let Err(why) = written {
                    log::info(&format!(
                        "compiled {} on {}, but {why}; compiling locally",
                        job.input, host.spec
                    ));
                    return self.run_local(compiler, original, why, Some(localslots));
                }
            }
            format!("compiled {} on {}", job.input, host.spec)
        } else if self.s.skip_local_retry
            || !self.s.fallback
            // A cluster's result is the compiler's own, run by the
            // cluster's rules: rerunning it here would only hide them.
            || matches!(host.transport, hosts::Transport::Reapi { .. })
        {
            format!(
                "compile of {} on {} failed with exit code {code}",
                job.input, host.spec
            )
        } else {
            // distcc 3.4 reruns a failed compile here, so that a broken
            // server can never be the cause of a failed build; the local
            // result is final.
            let why = format!("the compile on {} failed with exit code {code}", host.spec);
            log::info(&format!("{why}; running it locally to be sure"));
            let local = self.run_local(compiler, original, why, Some(localslots));
            if pumped && matches!(&local, Outcome::Local { status, .. } if status.success()) {
                log::warn(&format!(
                    "{} failed in pump mode on {} but compiled here: a discrepancy",
                    job.input, host.spec
                ));
                self.add_discrepancy();
            }
            return local;
        };
        // The server's result is final: its output is the user's.
        let _ = std::io::stdout().write_all(&reply.stdout);
        let _ = std::io::stderr().write_all(&reply.stderr);
        log::info(&said);
        Outcome::Remote {
            host: host.spec.clone(),
            status,
        }
    }

    fn give_up(
        &self,
        compiler: &Path,
        original: &[OsString],
        job: &Job,
        last: Option<(String, HostFault)>,
        localslots: u32,
    ) -> Outcome {
        if !self.s.fallback {
            return Outcome::Failed(Failure::Undistributed(last));
        }
        let why = match &last {
            Some((h, _)) => {
                log::warn(&format!(
                    "failed to distribute {} to {h}, running locally instead",
                    job.input
                ));
                format!("distribution to {h} failed")
            }
            None => {
                log::warn(&format!(
                    "no usable host for {}; running locally instead",
                    job.input
                ));
                "no usable host".into()
            }
        };
        self.run_local(compiler, original, why, Some(localslots))
    }
}

/// The preprocessed text a local preprocessor printed.
fn read_cpp(child: &mut std::process::Child) -> Result<Vec<u8>, Attempt> {
    let mut text = Vec::new();
    let read = match child.stdout.take() {
        Some(mut out) => out.read_to_end(&mut text),
        None => Ok(0),
    };
    match (read, child.wait()) {
        (Ok(_), Ok(st)) if st.success() => Ok(text),
        (_, Ok(st)) => Err(Attempt::Over(Outcome::Preprocessor(st))),
        (_, Err(e)) => Err(Attempt::Over(Outcome::Failed(Failure::Preprocessor(e)))),
    }
}

/// The host name a monitor shows: no port, no options.
fn host_name(h: &HostSpec) -> &str {
    match &h.transport {
        hosts::Transport::Tcp { host, .. } | hosts::Transport::Ssh { host, .. } => host,
        // A cluster, not a machine: `reapi://HOST:PORT`, as written.
        hosts::Transport::Reapi { .. } => {
            let after = "reapi://".len();
            let end = h.spec[after..]
                .find(['/', '=', ','])
                .map_or(h.spec.len(), |i| after + i);
            &h.spec[..end]
        }
        hosts::Transport::Local => "localhost",
    }
}

/// Statuses that say the server, not the user's code, failed: distcc's own
/// exit codes (100+: refused, compiler missing, timeout) and signals; the
/// code is distcc's for it.
fn host_fault_code(status: u32) -> Option<u8> {
    let st = ExitStatus::from_raw(status as i32);
    match st.code() {
        Some(code) if code >= 100 => Some(code as u8),
        Some(_) => None,
        None => Some(exitcode::COMPILER_CRASHED),
    }
}

fn describe(status: u32) -> String {
    let st = ExitStatus::from_raw(status as i32);
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => format!("{status:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::classify::{self, Verdict};
    use crate::monitor::{state, text};
    use std::path::PathBuf;

    fn pump_job(dir: &Path) -> (Client, Job) {
        let mut s = super::super::settings::from_env(|_| None).unwrap();
        s.distcc_dir = Some(dir.to_path_buf());
        s.include_server = Some(dir.join("no-include-server/socket"));
        let mut c = Client::new(s, false, "distcc");
        c.locks = c.lock_dir();
        c.progress = super::super::progress::Progress::new(Some(dir));
        let words = ["gcc", "-c", "src/main.c", "-o", "main.o"].map(String::from);
        let Verdict::Remote(job) = classify::classify(&words) else {
            panic!("a distributable compile")
        };
        (c, job)
    }

    fn record(dir: &Path) -> state::State {
        let p: PathBuf = dir.join(format!("state/binstate_{}", std::process::id()));
        state::decode(&fs::read(&p).unwrap()).unwrap()
    }

    #[test]
    fn a_pump_jobs_include_scan_is_shown_as_preprocess_in_a_cpp_slot() {
        let dir = std::env::temp_dir().join(format!("distcc-rs-pump-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (c, job) = pump_job(&dir);
        let list = HostList {
            localslots_cpp: 2,
            ..hosts::parse("10.0.0.2/8,cpp,lzo").unwrap()
        };
        let lock = dir.join("lock/cpu_localhost_0");
        assert!(!lock.exists());
        let why = c.scan_for_pump(Path::new("/usr/bin/gcc"), &job, &list).err();
        assert!(why.is_some(), "no include server here");
        assert!(lock.exists(), "the scan took a local preprocessing slot");
        let r = record(&dir);
        assert_eq!(
            (r.phase, r.file.as_str(), r.host.as_str(), r.slot),
            (Phase::Preprocess, "main.c", "localhost", 0)
        );
        assert_eq!(
            text::render(&[r]),
            format!(
                "{:6}  Preprocess  main.c                                        localhost[0]\n\n",
                std::process::id()
            )
        );
        drop(c);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn monitors_name_a_pump_host_without_its_options() {
        let cases = [
            ("10.0.0.2/8,cpp,lzo", "10.0.0.2"),
            ("build1:4000/16,cpp,lzo", "build1"),
            ("user@build2/4,cpp,lzo", "build2"),
            ("@build3,cpp,lzo", "build3"),
            ("[::1]:3633,cpp,lzo", "::1"),
            ("build4,lzo", "build4"),
            ("build5", "build5"),
            ("reapi://rbe:8980/64,instance=main,tls", "reapi://rbe:8980"),
            ("reapi://[::1]:8980=2", "reapi://[::1]:8980"),
            ("reapi://rbe:8980", "reapi://rbe:8980"),
        ];
        for (spec, want) in cases {
            let list = hosts::parse(spec).unwrap();
            assert_eq!(host_name(&list.hosts[0]), want, "{spec}");
        }
    }

    #[test]
    fn host_faults_are_distcc_codes_and_signals() {
        let cases = [
            (0, None),
            (1 << 8, None),
            (99 << 8, None),
            (100 << 8, Some(100)),
            (110 << 8, Some(110)),
            (113 << 8, Some(113)),
            (118 << 8, Some(118)),
            (9, Some(exitcode::COMPILER_CRASHED)),
        ];
        for (status, want) in cases {
            assert_eq!(host_fault_code(status), want, "{status:#x}");
        }
    }
}
