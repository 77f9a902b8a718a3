/*!
Job directories under the server's TMPDIR: one private directory per running
job, named `distccd-rs.PID.N.NANOS` so a later daemon can tell whose it was.

A finished job's directory is emptied and kept for the next job instead of
being removed: making and removing a directory costs more than the job's own
two files on a journalling file system (about 0.15 ms per job on ext4), and
no more than `--jobs` are ever in use. The pool is removed when the server
ends; directories of a daemon that was killed are removed by the next one
(`remove_stale`).
*/

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Empty job directories waiting for a job.
pub struct Pool {
    tmpdir: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    made: AtomicU64,
}

/// A job's directory; emptied and given back to the pool when dropped.
pub struct JobDir<'a> {
    path: PathBuf,
    pool: &'a Pool,
}

impl JobDir<'_> {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Pool {
    pub fn new(tmpdir: &Path) -> Pool {
        Pool {
            tmpdir: tmpdir.to_owned(),
            free: Mutex::new(Vec::new()),
            made: AtomicU64::new(0),
        }
    }

    pub fn take(&self) -> io::Result<JobDir<'_>> {
        loop {
            let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(path) = reused else { break };
            // A cleaner of old files in /tmp may have removed it, and then
            // anyone could have put something else under its name.
            if still_ours(&path) {
                return Ok(JobDir { path, pool: self });
            }
        }
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let path = self
            .tmpdir
            .join(format!("distccd-rs.{}.{n}.{nanos:08x}", std::process::id()));
        // mkdir fails on an existing name, so the directory is a new one of ours.
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(JobDir { path, pool: self })
    }

    /// Removes the kept directories (the server is ending).
    pub fn clear(&self) {
        let dirs = std::mem::take(&mut *self.free.lock().unwrap_or_else(|e| e.into_inner()));
        for d in dirs {
            remove(&d);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().unwrap().len()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.clear();
    }
}

impl Drop for JobDir<'_> {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        match empty(&path) {
            Ok(()) => self
                .pool
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(path),
            Err(_) => remove(&path),
        }
    }
}

fn still_ours(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o777 == 0o700)
}

/// Removes everything in `dir` (symbolic links themselves, never their targets).
fn empty(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(e.path())?;
        } else {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

fn remove(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::error!(dir = %dir.display(), "could not remove job directory: {e}");
    }
}

/// The pid that made a job directory, from its name. Pure.
pub fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("distccd-rs.")?;
    let mut parts = rest.split('.');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    Some(pid)
}

/// Removes job directories left by a distccd that was killed (SIGKILL, a
/// crash, power loss): those whose daemon is no longer running. Only our own
/// names, and only directories, are touched.
pub fn remove_stale(tmpdir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(tmpdir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = owner(&name.to_string_lossy()) else {
            continue;
        };
        let alive = pid == std::process::id()
            || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None)
                .map_or_else(|e| e != nix::errno::Errno::ESRCH, |()| true);
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if !alive && is_dir && fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("distcc-rs-workdir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn owners_from_names() {
        for (name, want) in [
            ("distccd-rs.123.0.0000abcd", Some(123)),
            ("distccd-rs.123.7", Some(123)),
            ("distccd-rs.x.0.0", None),
            ("distccd-rs.123", None),
            ("distccd_123", None),
            ("other.123.0.0", None),
            ("distccd-rs...", None),
        ] {
            assert_eq!(owner(name), want, "{name}");
        }
    }

    #[test]
    fn a_finished_jobs_directory_comes_back_empty() {
        let tmp = scratch("reuse");
        let pool = Pool::new(&tmp);
        let first = {
            let d = pool.take().unwrap();
            fs::write(d.path().join("x.i"), "int x;").unwrap();
            fs::create_dir(d.path().join("sub")).unwrap();
            fs::write(d.path().join("sub/y"), "y").unwrap();
            std::os::unix::fs::symlink(&tmp, d.path().join("link")).unwrap();
            d.path().to_owned()
        };
        assert_eq!(pool.kept(), 1);
        assert!(tmp.exists(), "a link's target is not followed");
        let d = pool.take().unwrap();
        assert_eq!(d.path(), first);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        // Two at once: a second directory.
        let e = pool.take().unwrap();
        assert_ne!(e.path(), d.path());
        drop((d, e));
        assert_eq!(pool.kept(), 2);
        drop(pool);
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "the pool is removed with the server"
        );
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_kept_directory_that_changed_is_not_used() {
        let tmp = scratch("swap");
        let pool = Pool::new(&tmp);
        let kept = pool.take().unwrap().path().to_owned();
        // As if a /tmp cleaner removed it and someone else made the name.
        fs::remove_dir(&kept).unwrap();
        fs::DirBuilder::new().mode(0o755).create(&kept).unwrap();
        let second = pool.take().unwrap().path().to_owned();
        assert_ne!(second, kept, "not a directory mode 0700");
        // Now a plain file where the kept directory was.
        fs::remove_dir(&second).unwrap();
        fs::write(&second, "").unwrap();
        let third = pool.take().unwrap().path().to_owned();
        assert_ne!(third, second, "not a directory");
        assert_eq!(pool.take().unwrap().path(), third, "an unchanged one is reused");
        drop(pool);
        fs::remove_dir_all(&tmp).unwrap();
    }
}
