/*!
The include server's answer as distcc 3.4's client reads it: a directory
(the client root, exactly three components deep: the client drops three)
that mirrors the closure. A file is `ROOT/<real path>.lzo`, already
LZO-compressed, so a client sends it as it is and compresses nothing
itself; `.lzo.abs` when a `#line` naming it was put in front. A link is a
symbolic link with the client's target; a system directory a link of
`../` past the server's root to the same directory there; a directory that
must exist holds an empty `forcing_technique_271828`.

Each file is compressed once per build, again only when its stat changes.
Nothing is written through a link in the root: a name whose directory is
one is refused (it would write into the link's target).
*/

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use super::closure::{Closure, FORCING, Stamp};
use super::command::NotCovered;
use crate::daemon::pump::ROOT_DEPTH_ALLOWANCE;
use crate::protocol::lzo;

pub struct Root {
    dir: PathBuf,
    made: HashSet<PathBuf>,
    written: HashMap<PathBuf, Stamp>,
    links: HashMap<PathBuf, OsString>,
    serial: u64,
    /// The directory made above `dir` (under a one-component base).
    above: Option<PathBuf>,
}

/// Removes the roots of include servers that were killed before they
/// could (ours only: our user's, named for a process that is gone).
fn sweep(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(base) else { return };
    let me = nix::unistd::geteuid().as_raw();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("distcc-pump-"))
            .and_then(|r| r.split_once('-'))
            .and_then(|(pid, n)| n.parse::<u32>().ok().and(pid.parse::<i32>().ok()))
        else {
            continue;
        };
        let gone = pid > 0
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH);
        let ours = fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if gone && ours {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

impl Root {
    /// A fresh root under `base` (which must be one or two components
    /// deep, as distcc 3.4's `DISTCC_CLIENT_TMP`), else under /tmp.
    pub fn create(base: Option<&Path>) -> io::Result<Root> {
        let depth = |p: &Path| {
            p.components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count()
        };
        let base = match base {
            Some(b) if b.is_absolute() && (1..=2).contains(&depth(b)) => b.to_owned(),
            _ => PathBuf::from("/tmp"),
        };
        sweep(&base);
        let mut n = 0u32;
        let dir = loop {
            let top = base.join(format!("distcc-pump-{}-{n}", std::process::id()));
            // Made here, private, or not used: in a shared /tmp another
            // user's directory of that name would hold what we send.
            let made = fs::DirBuilder::new().mode(0o700).create(&top);
            let dir = if depth(&top) == 2 {
                top.join("root")
            } else {
                top.clone()
            };
            match made.and_then(|()| if dir != top { fs::create_dir(&dir) } else { Ok(()) }) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        };
        let above = (depth(&base) == 1).then(|| dir.parent().expect("under base").to_owned());
        Ok(Root {
            dir,
            made: HashSet::new(),
            written: HashMap::new(),
            links: HashMap::new(),
            serial: 0,
            above,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The paths a client sends, in distcc 3.4's order: files, system
    /// directories, links, directories.
    pub fn answer(&mut self, c: &Closure) -> Result<Vec<PathBuf>, NotCovered> {
        let mut out = Vec::with_capacity(c.files.len() + c.system.len() + c.links.len() + c.dirs.len());
        let fail = |what: &Path, e: io::Error| NotCovered(format!("client root: {}: {e}", what.display()));
        for f in &c.files {
            out.push(
                self.file(&f.real, f.stamp, f.absolute_name.as_deref())
                    .map_err(|e| fail(&f.real, e))?,
            );
        }
        for s in &c.system {
            let depth = s
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count();
            let mut target = "../".repeat(ROOT_DEPTH_ALLOWANCE + depth).into_bytes();
            target.extend_from_slice(s.strip_prefix("/").unwrap_or(s).as_os_str().as_bytes());
            out.push(self.link(s, OsString::from_vec(target)).map_err(|e| fail(s, e))?);
        }
        for (name, target) in &c.links {
            out.push(self.link(name, target.clone()).map_err(|e| fail(name, e))?);
        }
        for d in &c.dirs {
            let p = self.place(&d.join(FORCING), "").map_err(|e| fail(d, e))?;
            if !self.written.contains_key(&p) {
                self.write_new(&p, &[]).map_err(|e| fail(d, e))?;
                self.written.insert(p.clone(), Stamp::default());
            }
            out.push(p);
        }
        Ok(out)
    }

    /// `ROOT/<client path><suffix>`, its directories made (never through a link).
    fn place(&mut self, client: &Path, suffix: &str) -> io::Result<PathBuf> {
        let rel = client.strip_prefix("/").unwrap_or(client);
        let mut at = self.dir.clone();
        let parts: Vec<_> = rel.components().collect();
        for c in &parts[..parts.len().saturating_sub(1)] {
            let Component::Normal(n) = c else {
                return Err(io::Error::other("not a plain path"));
            };
            at.push(n);
            if self.made.contains(&at) {
                continue;
            }
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(io::Error::other("a directory of it is a link or a file here")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&at).or_else(|e| {
                    // Another answer made it meanwhile.
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?,
                Err(e) => return Err(e),
            }
            self.made.insert(at.clone());
        }
        let mut name = parts
            .last()
            .map(|c| c.as_os_str().to_owned())
            .ok_or_else(|| io::Error::other("an empty path"))?;
        name.push(suffix);
        Ok(at.join(name))
    }

    fn file(&mut self, real: &Path, stamp: Stamp, line: Option<&Path>) -> io::Result<PathBuf> {
        let p = self.place(real, if line.is_some() { ".lzo.abs" } else { ".lzo" })?;
        if self.written.get(&p) == Some(&stamp) {
            return Ok(p);
        }
        let mut text = Vec::new();
        if let Some(name) = line {
            text.extend_from_slice(b"#line 1 \"");
            text.extend_from_slice(name.as_os_str().as_bytes());
            text.extend_from_slice(b"\"\n");
        }
        text.extend_from_slice(&fs::read(real)?);
        // distcc sends an empty file as no bytes, not as an LZO stream.
        let body = if text.is_empty() {
            Vec::new()
        } else {
            lzo::compress(&text)
        };
        self.write_new(&p, &body)?;
        self.written.insert(p.clone(), stamp);
        Ok(p)
    }

    /// Written beside and renamed: a client reading it meanwhile sees the
    /// old or the new, never half.
    fn write_new(&mut self, p: &Path, body: &[u8]) -> io::Result<()> {
        self.serial += 1;
        let tmp = p.with_file_name(format!(".new-{}", self.serial));
        fs::write(&tmp, body)?;
        fs::rename(&tmp, p)
    }

    fn link(&mut self, name: &Path, target: OsString) -> io::Result<PathBuf> {
        let p = self.place(name, "")?;
        if self.links.get(&p) == Some(&target) {
            return Ok(p);
        }
        self.serial += 1;
        let tmp = p.with_file_name(format!(".new-{}", self.serial));
        std::os::unix::fs::symlink(&target, &tmp)?;
        fs::rename(&tmp, &p)?;
        self.links.insert(p.clone(), target);
        Ok(p)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(above) = &self.above {
            let _ = fs::remove_dir(above);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_root_is_private_and_killed_servers_roots_are_swept() {
        let base = PathBuf::from(format!("/tmp/root-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir(&base).unwrap();
        // A server that was killed: its pid is gone (a reaped child's).
        let dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        let mut dead = dead;
        dead.wait().unwrap();
        let stale = base.join(format!("distcc-pump-{dead_pid}-0"));
        fs::create_dir_all(stale.join("x")).unwrap();
        // Someone else's directory with the name we would take.
        let taken = base.join(format!("distcc-pump-{}-0", std::process::id()));
        fs::create_dir(&taken).unwrap();
        let not_ours = nix::unistd::geteuid().is_root();
        if not_ours {
            std::os::unix::fs::chown(&taken, Some(65534), Some(65534)).unwrap();
        }
        let r = Root::create(Some(&base)).unwrap();
        assert!(!stale.exists(), "a dead server's root is removed");
        assert!(taken.exists(), "a live process's directory is left");
        assert_eq!(
            r.dir(),
            base.join(format!("distcc-pump-{}-1", std::process::id()))
        );
        let m = fs::metadata(r.dir()).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
        fs::remove_dir_all(&base).unwrap();
    }
}
