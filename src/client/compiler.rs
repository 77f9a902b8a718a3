//! Which compiler a command names: found on PATH past distcc's own links,
//! recognised through a generic `cc`'s links, and named for the server so it
//! builds for this machine's target (distcc 3.4 §2.9).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::args::classify::{self, Verdict};

/// A file's device and inode: what a masquerade link leads back to.
pub type FileId = (u64, u64);

/// This program's identity, read once.
pub fn own_id() -> Option<FileId> {
    let m = fs::metadata(std::env::current_exe().ok()?).ok()?;
    Some((m.dev(), m.ino()))
}

/// Whether `p` is this very program (a masquerade link to us): one stat,
/// no symlink walk.
pub fn is_us(p: &Path, own: Option<FileId>) -> bool {
    own.is_some() && fs::metadata(p).ok().map(|m| (m.dev(), m.ino())) == own
}

/// `name` on `path`, skipping distcc itself (a masquerade link, or `distcc
/// gcc` with the link directory first on PATH). A name with a `/` is taken
/// as it is.
pub fn find(path: &str, name: &str, own: Option<FileId>) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    if name.is_empty() {
        return None;
    }
    // One stat a candidate: executable, and not this program.
    let usable = |m: fs::Metadata| {
        m.is_file() && m.permissions().mode() & 0o111 != 0 && Some((m.dev(), m.ino())) != own
    };
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|cand| fs::metadata(cand).is_ok_and(usable))
}

/// Classifies the command as the compiler it really is, so a `cc` that is
/// clang gets clang's checks (§2.9). The server is sent that compiler's
/// name too, unless `keep_name` (DISTCC_NO_REWRITE_CROSS) keeps `cc`.
pub fn classify_as_found(name: &str, found: &Path, mut words: Vec<String>, keep_name: bool) -> Verdict {
    let Some(family) = generic_family(name, found) else {
        return classify::classify(&words);
    };
    words[0] = family;
    let mut verdict = classify::classify(&words);
    if let Verdict::Remote(job) = &mut verdict {
        if keep_name {
            job.server_argv[0] = name.to_owned();
        } else {
            super::log::info(&format!("rewriting '{name}' to '{}'", job.server_argv[0]));
        }
    }
    verdict
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

/// distcc 3.4's cross-compilation rewrite (§2.9): `gcc` becomes
/// `<triple>-gcc` when that exists here, so a server of another default
/// target still builds for ours; clang gets an explicit `-target`.
pub fn rewrite_cross(server_argv: &mut Vec<String>, path: &str) {
    let Some(first) = server_argv.first() else { return };
    let name = first.rsplit('/').next().unwrap_or_default().to_owned();
    let arch = std::env::consts::ARCH;
    let gnu = name == "gcc" || name == "g++" || name.starts_with("gcc-") || name.starts_with("g++-");
    if gnu {
        for triple in [format!("{arch}-linux-gnu"), format!("{arch}-pc-linux-gnu")] {
            let candidate = format!("{triple}-{name}");
            // 3.4 searches all of PATH here, its own links included.
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

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `dir` made absolute against the current directory, for PATH matching.
pub fn absolute(dir: &str) -> String {
    if dir.starts_with('/') {
        return dir.to_owned();
    }
    std::env::current_dir()
        .map(|c| c.join(dir).to_string_lossy().into_owned())
        .unwrap_or_else(|_| dir.to_owned())
}
