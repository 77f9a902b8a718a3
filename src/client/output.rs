/*!
Writing what a server compiled to the name the user gave, as the local
toolchain would have. `as` (binutils' `bfd_openw`) unlinks an existing
regular file or symbolic link and creates a new file; anything else there (a
device such as `/dev/null`, a FIFO) it opens and writes, truncating. cc1
writes `-S` output through a symbolic link. A directory or a missing parent
is an error here as there: the caller then compiles locally, and the compiler
reports it in its own words.

A new file is written under a temporary name beside the output and renamed
into place, so an interrupted job never leaves half an object.
*/

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How the output is reached: decided from what is at its name now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// A new file under a temporary name, renamed over the name.
    Replace,
    /// The existing file (a device, a FIFO, a link's target), opened and
    /// truncated in place.
    InPlace,
}

/// What `as` (or cc1 for assembly) does with what it finds at the name. Pure.
pub fn way(found: Option<fs::FileType>, assembly: bool) -> Way {
    match found {
        None => Way::Replace,
        Some(t) if t.is_file() => Way::Replace,
        Some(t) if t.is_symlink() && !assembly => Way::Replace,
        Some(_) => Way::InPlace,
    }
}

pub fn write(path: &Path, bytes: &[u8], assembly: bool) -> io::Result<()> {
    let found = match fs::symlink_metadata(path) {
        Ok(m) => Some(m.file_type()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    match way(found, assembly) {
        Way::InPlace => {
            let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
            f.write_all(bytes)
        }
        Way::Replace => replace(path, bytes, found.is_some()),
    }
}

fn replace(path: &Path, bytes: &[u8], exists: bool) -> io::Result<()> {
    let (tmp, mut f) = temporary_beside(path)?;
    let result = (|| {
        f.write_all(bytes)?;
        drop(f);
        // Replacing an existing file by rename makes ext4 (auto_da_alloc)
        // write the new one out at once, about 0.1 ms per object; with the
        // old name gone first, the rename is only a rename.
        if exists {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A new file, `.NAME.distcc-PID[-N].tmp`, in the output's directory.
/// Never an existing one: a stale file of an earlier process with this
/// PID, or a link planted there, is passed over.
fn temporary_beside(path: &Path) -> io::Result<(PathBuf, File)> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    let base = String::from_utf8_lossy(base);
    let pid = std::process::id();
    for n in 0..8 {
        let name = match n {
            0 => format!(".{base}.distcc-{pid}.tmp"),
            _ => format!(".{base}.distcc-{pid}-{n}.tmp"),
        };
        let tmp = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary name beside the output",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("distcc-rs-output-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_way_follows_what_is_there() {
        let d = Dir::new("way");
        let file = d.0.join("f");
        fs::write(&file, b"x").unwrap();
        let link = d.0.join("l");
        symlink(&file, &link).unwrap();
        let kind = |p: &Path| Some(fs::symlink_metadata(p).unwrap().file_type());
        let dev = kind(Path::new("/dev/null"));
        let cases = [
            (None, false, Way::Replace),
            (kind(&file), false, Way::Replace),
            (kind(&file), true, Way::Replace),
            (kind(&link), false, Way::Replace),
            (kind(&link), true, Way::InPlace),
            (dev, false, Way::InPlace),
            (dev, true, Way::InPlace),
            (kind(&d.0), false, Way::InPlace),
        ];
        for (found, assembly, want) in cases {
            assert_eq!(way(found, assembly), want, "{found:?} assembly={assembly}");
        }
    }

    #[test]
    fn writes_leave_no_temporary_and_links_behave_as_the_toolchain() {
        let d = Dir::new("write");
        let out = d.0.join("x.o");
        write(&out, b"first", false).unwrap();
        write(&out, b"second", false).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"second");
        assert_eq!(fs::read_dir(&d.0).unwrap().count(), 1);

        // An object replaces a link; assembly is written through it.
        let target = d.0.join("target");
        fs::write(&target, b"keep").unwrap();
        let link = d.0.join("y.o");
        symlink(&target, &link).unwrap();
        write(&link, b"obj", false).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        let s_link = d.0.join("y.s");
        symlink(&target, &s_link).unwrap();
        write(&s_link, b"asm", true).unwrap();
        assert!(fs::symlink_metadata(&s_link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"asm");

        // A stale temporary of this PID is passed over, not reused.
        let stale = d.0.join(format!(".z.o.distcc-{}.tmp", std::process::id()));
        fs::write(&stale, b"stale").unwrap();
        write(&d.0.join("z.o"), b"z", false).unwrap();
        assert_eq!(fs::read(&stale).unwrap(), b"stale");
        assert_eq!(fs::read(d.0.join("z.o")).unwrap(), b"z");

        assert!(write(&d.0.join("missing/x.o"), b"x", false).is_err());
        assert!(write(&d.0, b"x", false).is_err(), "a directory");
        let count = fs::read_dir(&d.0).unwrap().count();
        assert_eq!(count, 6, "x.o target y.o y.s stale z.o, no temporaries");
    }
}
