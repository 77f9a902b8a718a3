/*!
`+zeroconf` in the host list: the servers on the local network that
publish the subtype of this machine's `cc` (as distcc 3.4 browses it).

distcc 3.4 forks a browser that lives while its hosts file's atime is
recent (relatime defeats that), and every client after a respawn sleeps a
fixed second. Here the client that needs a list asks the local
avahi-daemon (whose cache has heard the network) or, where none runs,
browses in-process for as long as answers keep coming ([`WAIT`]), and
writes what it found to
`$DISTCC_DIR/zeroconf/hosts` in distcc 3.4's format; that file is the
build's list while its mtime is younger than [`FRESH`]. When it is older,
one client (holding `rs-browse`) browses again while the others go on with
the old list. A discovered server that fails a connection marks the file
stale, so the next client looks again.
*/

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::hosts::{self, HostSpec};
use super::{compiler, lock, log};
use crate::zeroconf::{self, CompilerId, avahi, query};

/// How long a browse's result is the build's host list.
pub const FRESH: Duration = Duration::from_secs(10);

/// The browse: up to 1 s for a first answer (nobody answering costs that
/// once per [`FRESH`]), 150 ms after the latest (responders answer within
/// 20–120 ms), 2.5 s in all, and as long as a service that was named is
/// not yet described.
pub const WAIT: zeroconf::Wait = zeroconf::Wait {
    first: Duration::from_secs(1),
    settle: Duration::from_millis(150),
    most: Duration::from_millis(2500),
};

const LOCK: &str = "rs-browse";

/// The servers `+zeroconf` stands for, and where they came from.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Each host with its note (the service's instance name).
    pub hosts: Vec<(HostSpec, Option<String>)>,
    /// What was done: "browsed … (3 found in 140 ms)" or "from FILE, 4 s old".
    pub how: String,
    /// The shared list, when there is a `$DISTCC_DIR`.
    pub file: Option<PathBuf>,
}

impl Discovery {
    /// A discovered host failed us: make the next client browse again.
    pub fn expire(&self, host: &HostSpec) {
        if let Some(f) = &self.file
            && self.hosts.iter().any(|(h, _)| h.spec == host.spec)
            && let Ok(file) = fs::File::options().write(true).open(f)
        {
            let _ = file.set_modified(SystemTime::UNIX_EPOCH);
            log::info(&format!(
                "{}: found by +zeroconf and failed: the next client browses again",
                host.spec
            ));
        }
    }

    /// The note `--show-hosts` prints after a host found here.
    pub fn note(&self, spec: &str) -> Option<String> {
        let (_, instance) = self.hosts.iter().find(|(h, _)| h.spec == spec)?;
        Some(match instance {
            Some(i) => format!("+zeroconf: {i}, {}", self.how),
            None => format!("+zeroconf: {}", self.how),
        })
    }
}

/// What `cc` on `path` is, asked as distcc 3.4 asks it (skipping ourselves
/// when a masquerade directory comes first).
fn local_cc(path: &str) -> Option<CompilerId> {
    let cc = compiler::find(path, "cc", compiler::own_id())?;
    let ask = |arg: &str| {
        let out = std::process::Command::new(&cc)
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    CompilerId::from_outputs(&ask("-dumpmachine")?, &ask("-dumpversion")?)
}

/// The hosts `+zeroconf` stands for now. `distcc_dir` is where the shared
/// list lives (none: every client browses).
pub fn discover(distcc_dir: Option<&Path>, path: &str) -> Discovery {
    let Some(dir) = distcc_dir.map(|d| d.join("zeroconf")) else {
        return browse(path, None);
    };
    if let Err(e) = fs::create_dir_all(&dir) {
        log::warn(&format!("+zeroconf: cannot make {}: {e}", dir.display()));
        return browse(path, None);
    }
    let file = dir.join("hosts");
    let age = |f: &Path| {
        fs::metadata(f)
            .and_then(|m| m.modified())
            .ok()
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default())
    };
    if let Some(a) = age(&file)
        && a < FRESH
        && let Some(d) = read(&file, a)
    {
        return d;
    }
    let deadline = Instant::now() + WAIT.most + Duration::from_secs(1);
    loop {
        match lock::try_lock(&dir, LOCK) {
            Ok(Some(held)) => {
                // Another client may have browsed while we waited.
                if let Some(a) = age(&file)
                    && a < FRESH
                    && let Some(d) = read(&file, a)
                {
                    return d;
                }
                let found = browse(path, Some(&file));
                drop(held);
                return found;
            }
            Ok(None) => {
                // Someone is browsing: an old list now beats a new one later.
                if let Some(a) = age(&file)
                    && let Some(mut d) = read(&file, a)
                {
                    d.how.push_str(", while another client browses again");
                    return d;
                }
                if Instant::now() >= deadline {
                    return browse(path, None);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::warn(&format!("+zeroconf: {}: {e}", dir.join(LOCK).display()));
                return browse(path, Some(&file));
            }
        }
    }
}

/// Reads the shared list (ours or distcc 3.4's). `None` for an empty list
/// that is not ours: distcc 3.4's browser empties the file when it starts
/// and fills it as services resolve, so its emptiness says nothing yet.
fn read(file: &Path, age: Duration) -> Option<Discovery> {
    let text = fs::read(file)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if !zeroconf::written_by_us(&text) && zeroconf::parse_hosts(&text).is_empty() {
        return None;
    }
    let mut hosts = Vec::new();
    for (spec, note) in zeroconf::parse_hosts(&text) {
        match one_host(&spec) {
            Some(h) => hosts.push((h, note)),
            None => log::info(&format!("+zeroconf: {}: ignoring '{spec}'", file.display())),
        }
    }
    Some(Discovery {
        hosts,
        how: format!("from {}, {} s old", file.display(), age.as_secs()),
        file: Some(file.to_owned()),
    })
}

/// A line's spec as a TCP host, or `None`.
fn one_host(spec: &str) -> Option<HostSpec> {
    let list = hosts::parse(spec).ok()?;
    match &list.hosts[..] {
        [h] if matches!(h.transport, hosts::Transport::Tcp { .. }) => Some(h.clone()),
        _ => None,
    }
}

/// The services of type `ty`: from avahi-daemon when it runs here (its
/// cache has heard the network for longer than this process can), else
/// from the network with the built-in browser. With where they came from.
fn ask(ty: &str) -> anyhow::Result<(Vec<zeroconf::Found>, &'static str)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(avahi::browse(ty, WAIT)) {
        Ok(found) => return Ok((found, "avahi-daemon")),
        Err(avahi::Unavailable::Absent(why)) => {
            log::info(&format!("+zeroconf: {why}: browsing with mDNS here"))
        }
        Err(e) => log::warn(&format!("+zeroconf: {e}; browsing with mDNS here")),
    }
    Ok((query::browse(ty, WAIT)?, "mDNS"))
}

/// Browses now and, with a `file`, writes what was found there.
fn browse(path: &str, file: Option<&Path>) -> Discovery {
    let cc = local_cc(path);
    // The subtype is matched in `entry`, from the TXT record.
    if cc.is_none() {
        log::info("+zeroconf: cc -dumpmachine/-dumpversion gave nothing: taking every distcc server");
    }
    let start = Instant::now();
    let (found, via) = match ask(zeroconf::SERVICE_TYPE) {
        Ok(f) => f,
        Err(e) => {
            log::warn(&format!("+zeroconf: cannot browse the network: {e:#}"));
            return Discovery {
                how: format!("browsing failed: {e}"),
                ..Discovery::default()
            };
        }
    };
    let took = start.elapsed().as_millis();
    let mut entries = Vec::new();
    for f in &found {
        match zeroconf::entry(f, cc.as_ref()) {
            Ok(e) => entries.push(e),
            Err(why) => log::info(&format!(
                "+zeroconf: not using {} at port {}: {why}",
                f.instance, f.port
            )),
        }
    }
    let wanted = match &cc {
        Some(cc) => zeroconf::subtype_label(cc),
        None => "any compiler".into(),
    };
    let browsed = format!("browsed {} for {wanted}", zeroconf::SERVICE_TYPE);
    let text = zeroconf::render_hosts(&browsed, via, &entries);
    if let Some(file) = file {
        // Whole and renamed: a client reading it meanwhile sees old or new.
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        if fs::write(&tmp, &text)
            .and_then(|()| fs::rename(&tmp, file))
            .is_err()
        {
            let _ = fs::remove_file(&tmp);
            log::warn(&format!("+zeroconf: cannot write {}", file.display()));
        }
    }
    let hosts: Vec<(HostSpec, Option<String>)> = zeroconf::parse_hosts(&text)
        .into_iter()
        .filter_map(|(spec, note)| one_host(&spec).map(|h| (h, note)))
        .collect();
    log::info(&format!(
        "+zeroconf: {browsed} via {via}: {} server(s) in {took} ms",
        hosts.len()
    ));
    Discovery {
        how: format!("{browsed} via {via} ({} found in {took} ms)", hosts.len()),
        hosts,
        file: file.map(Path::to_owned),
    }
}
