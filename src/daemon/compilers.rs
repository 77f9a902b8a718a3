/*!
Which programs a client may make the server run (CVE-2004-2687).

A compiler is allowed when its name is an entry of the allow-list directory
(`/usr/lib/distcc`, filled with masquerade links by the packaging), or, with
`DISTCC_CMDLIST`, a line of that file. `/usr/bin/NAME` and `/bin/NAME` mean
NAME; every other path is refused. The program run is then found on the
server's PATH, never in the allow-list directory itself (its entries are
links back to distcc).
*/

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::args::server::Refusal;

#[derive(Clone, Debug)]
pub enum Policy {
    /// Names that are executable entries of this directory.
    Dir(PathBuf),
    /// distcc's `DISTCC_CMDLIST`: full paths, matched on their last `words`
    /// components; the matching line is what runs.
    CmdList { lines: Vec<String>, words: usize },
}

/// The bare compiler name `argv0` stands for, or why it is refused. Pure.
pub fn plain_name(argv0: &str) -> Result<&str, Refusal> {
    let name = argv0
        .strip_prefix("/usr/bin/")
        .or_else(|| argv0.strip_prefix("/bin/"))
        .unwrap_or(argv0);
    if name.is_empty() || name.contains('/') || name.starts_with('.') || name.starts_with('-') {
        return Err(Refusal(format!(
            "compiler '{argv0}' refused: only a compiler name (or /usr/bin/NAME) may be run, not a path"
        )));
    }
    Ok(name)
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The last `n` `/`-separated components of `s`.
fn tail(s: &str, n: usize) -> &str {
    let mut idx = s.len();
    for _ in 0..n {
        match s[..idx].rfind('/') {
            Some(i) => idx = i,
            None => return s,
        }
    }
    &s[idx + 1..]
}

impl Policy {
    pub fn load_cmdlist(path: &Path, words: usize) -> std::io::Result<Policy> {
        let text = fs::read_to_string(path)?;
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from);
        Ok(Policy::CmdList {
            lines: lines.collect(),
            words: words.max(1),
        })
    }

    /// The program to execute for `argv0`, found on `search_path`.
    pub fn resolve(&self, argv0: &str, search_path: &OsStr) -> Result<PathBuf, Refusal> {
        match self {
            Policy::CmdList { lines, words } => {
                let want = tail(argv0, *words);
                match lines.iter().find(|l| tail(l, *words) == want) {
                    Some(line) => Ok(PathBuf::from(line)),
                    None => Err(Refusal(format!("compiler '{argv0}' is not in DISTCC_CMDLIST"))),
                }
            }
            Policy::Dir(dir) => {
                let name = plain_name(argv0)?;
                if !is_executable(&dir.join(name)) {
                    return Err(Refusal(format!(
                        "compiler '{name}' is not allowed on this server: no '{name}' in {} \
                         (the administrator adds it there, e.g. with the package's compiler links)",
                        dir.display()
                    )));
                }
                find_on_path(name, search_path, Some(dir)).ok_or_else(|| {
                    Refusal(format!(
                        "compiler '{name}' is allowed but not installed on this server's PATH"
                    ))
                })
            }
        }
    }
}

/// `name` on `search_path`, skipping the allow-list directory and anything
/// that resolves to a distcc binary (a masquerade link would recurse).
pub fn find_on_path(name: &str, search_path: &OsStr, allow_dir: Option<&Path>) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if name.contains('/') || name.is_empty() {
        return None;
    }
    // Compared by device and inode: one stat per entry, no symlink walks
    // (this runs for every job).
    let id = |p: &Path| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let allow_id = allow_dir.and_then(id);
    std::env::split_paths(search_path)
        .filter(|d| d.is_absolute())
        .find_map(|d| {
            let cand = d.join(name);
            if !is_executable(&cand) || (allow_id.is_some() && id(&d) == allow_id) {
                return None;
            }
            let real = fs::canonicalize(&cand).ok()?;
            (!real.file_name()?.to_string_lossy().contains("distcc")).then_some(cand)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_name_table() {
        let cases = [
            ("gcc", Ok("gcc")),
            ("x86_64-linux-gnu-g++-12", Ok("x86_64-linux-gnu-g++-12")),
            ("/usr/bin/gcc", Ok("gcc")),
            ("/bin/cc", Ok("cc")),
            ("/bin/sh", Ok("sh")),
            ("/usr/local/bin/gcc", Err(())),
            ("../gcc", Err(())),
            ("./gcc", Err(())),
            ("bin/gcc", Err(())),
            ("/usr/bin/../../tmp/x", Err(())),
            ("", Err(())),
            ("-c", Err(())),
            (".hidden", Err(())),
        ];
        for (argv0, want) in cases {
            assert_eq!(plain_name(argv0).map_err(|_| ()), want, "{argv0}");
        }
    }

    #[test]
    fn cmdlist_matches_last_components() {
        let p = Policy::CmdList {
            lines: vec!["/usr/bin/gcc".into(), "/opt/cross/bin/arm-gcc".into()],
            words: 1,
        };
        assert_eq!(
            p.resolve("gcc", OsStr::new("")).unwrap(),
            PathBuf::from("/usr/bin/gcc")
        );
        assert_eq!(
            p.resolve("/somewhere/arm-gcc", OsStr::new("")).unwrap(),
            PathBuf::from("/opt/cross/bin/arm-gcc")
        );
        assert!(p.resolve("sh", OsStr::new("")).is_err());
        let two = Policy::CmdList {
            lines: vec!["/opt/cross/bin/gcc".into()],
            words: 2,
        };
        assert!(two.resolve("gcc", OsStr::new("")).is_err());
        assert!(two.resolve("bin/gcc", OsStr::new("")).is_ok());
    }
}
