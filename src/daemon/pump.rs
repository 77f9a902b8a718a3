/*!
Protocol 3 (pump mode) on the server: where the files a client sends go.
Pure: the request's names in, a checked layout under the job root out.

distcc 3.4 mirrors every client path under a fresh root (`root + NAME`, with
a FIXME where it should refuse `..`) and writes symlinks as sent; the include
server's links to system directories are `../` repeated past the root
(20 + the link's depth) and then, say, `usr/include`, so that on the server
they land on the server's own headers. Here every name and target is
checked before anything is written:

- a name (and `CDIR`) is absolute, every component a plain one (no `.`,
  `..`, empty or NUL), and not the root itself;
- no entry lies under a link sent earlier or later (writing through a
  symlink would leave the root), and no name comes twice;
- a link's target is either absolute (then it is taken inside the root),
  relative and staying inside the root, or the system-directory form: at
  least 20 `..` more than the link is deep, then a directory the server's
  compiler may read anyway.

The sandbox is what finally keeps the compiler inside the job and the
system directories; this refuses the request before that is needed.
*/

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::protocol::message::{PumpEntry, PumpInput};

/// How far past the link's own depth a system-directory link must climb:
/// the include server's `MAX_COMPONENTS_IN_SERVER_ROOT`.
pub const ROOT_DEPTH_ALLOWANCE: usize = 20;

/// Directories a link may lead to outside the root (the server's own).
const SYSTEM_TARGETS: &[&str] = &[
    "usr/include",
    "usr/lib",
    "usr/lib32",
    "usr/lib64",
    "usr/libx32",
    "usr/local/include",
    "usr/local/lib",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    File(Vec<u8>),
    /// A symlink with this target, already made relative to the job root
    /// for absolute targets (`/x` becomes `ROOT/x`, given by the caller).
    Link(LinkTarget),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkTarget {
    /// Inside the root: this path, relative to the root.
    InRoot(PathBuf),
    /// As sent: relative, and staying inside the root or reaching a system
    /// directory.
    Relative(PathBuf),
}

/// The checked layout: every path relative to the job root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub cwd: PathBuf,
    pub entries: Vec<(PathBuf, Placed)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// A name (or `CDIR`) that is not a plain absolute path.
    BadName {
        name: String,
        why: &'static str,
    },
    BadLink {
        name: String,
        target: String,
        why: &'static str,
    },
    Duplicate(String),
    /// A file or link under a path sent as a link.
    UnderLink {
        name: String,
        link: String,
    },
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::BadName { name, why } => write!(f, "pump mode: file name '{name}' {why}"),
            LayoutError::BadLink { name, target, why } => {
                write!(f, "pump mode: link '{name}' -> '{target}' {why}")
            }
            LayoutError::Duplicate(n) => write!(f, "pump mode: '{n}' is sent twice"),
            LayoutError::UnderLink { name, link } => {
                write!(
                    f,
                    "pump mode: '{name}' would be written through the link '{link}'"
                )
            }
        }
    }
}

fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `name` as a path relative to the root: absolute, plain components only.
fn in_root(name: &[u8]) -> Result<PathBuf, &'static str> {
    if name.contains(&0) {
        return Err("contains a NUL byte");
    }
    let p = Path::new(OsStr::from_bytes(name));
    if !p.is_absolute() {
        return Err("is not absolute");
    }
    if name == b"/" {
        return Ok(PathBuf::new());
    }
    // `Path::components` drops `.` and repeated slashes silently: look at
    // the bytes for them too, so what is checked is what is written.
    if name
        .split(|&b| b == b'/')
        .skip(1)
        .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return Err("has an empty, '.' or '..' component");
    }
    Ok(p.components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect())
}

fn link_target(name: &Path, target: &[u8]) -> Result<LinkTarget, &'static str> {
    if target.is_empty() {
        return Err("has an empty target");
    }
    if target.contains(&0) {
        return Err("has a NUL byte in its target");
    }
    if target.starts_with(b"/") {
        return in_root(target)
            .map(LinkTarget::InRoot)
            .map_err(|_| "has an absolute target that is not a plain path");
    }
    let parts: Vec<&[u8]> = target
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let ups = parts.iter().take_while(|c| **c == b"..").count();
    let rest = &parts[ups..];
    if rest.iter().any(|c| *c == b"..") {
        return Err("has a '..' after a name in its target");
    }
    // The link's directory, as components below the root.
    let depth = name.components().count() - 1;
    if ups <= depth {
        return Ok(LinkTarget::Relative(PathBuf::from(OsStr::from_bytes(target))));
    }
    let rest = rest.join(&b'/');
    let system = SYSTEM_TARGETS
        .iter()
        .any(|s| rest == s.as_bytes() || rest.starts_with(&[s.as_bytes(), b"/"].concat()));
    if !system {
        return Err("leaves the job's root for something other than a system directory");
    }
    if ups < depth + ROOT_DEPTH_ALLOWANCE {
        return Err("leaves the job's root without climbing to the server's /");
    }
    Ok(LinkTarget::Relative(PathBuf::from(OsStr::from_bytes(target))))
}

/// Checks a protocol-3 request's `CDIR` and files. Pure.
pub fn layout(input: &PumpInput) -> Result<Layout, LayoutError> {
    let cwd = in_root(&input.cwd).map_err(|why| LayoutError::BadName {
        name: shown(&input.cwd),
        why,
    })?;
    let mut entries = Vec::with_capacity(input.entries.len());
    for (name, entry) in &input.entries {
        let path = in_root(name)
            .and_then(|p| {
                if p.as_os_str().is_empty() {
                    Err("is the root itself")
                } else {
                    Ok(p)
                }
            })
            .map_err(|why| LayoutError::BadName {
                name: shown(name),
                why,
            })?;
        let placed = match entry {
            PumpEntry::File(bytes) => Placed::File(bytes.clone()),
            PumpEntry::Link(target) => {
                Placed::Link(link_target(&path, target).map_err(|why| LayoutError::BadLink {
                    name: shown(name),
                    target: shown(target),
                    why,
                })?)
            }
        };
        entries.push((path, placed));
    }
    // Names unique, and nothing under a link (in either order of sending).
    let mut sorted: Vec<&PathBuf> = entries.iter().map(|(p, _)| p).collect();
    sorted.sort();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(LayoutError::Duplicate(w[0].display().to_string()));
    }
    for (link, placed) in &entries {
        if matches!(placed, Placed::Link(_))
            && let Some((p, _)) = entries.iter().find(|(p, _)| p != link && p.starts_with(link))
        {
            return Err(LayoutError::UnderLink {
                name: format!("/{}", p.display()),
                link: format!("/{}", link.display()),
            });
        }
    }
    Ok(Layout { cwd, entries })
}

/// The dependency file the compiler wrote under the job's root, as the
/// client's: `root` taken out of every path, and each rule laid out again
/// as gcc lays it out (lines broken before 72 columns, `libcpp/mkdeps.cc`),
/// so it equals the local build's, whose paths are shorter. distcc 3.4
/// deletes the root and keeps the server's line breaks. Pure.
pub fn client_dotd(dotd: &[u8], root: &str) -> Vec<u8> {
    const COLMAX: usize = 72;
    let text = String::from_utf8_lossy(dotd).replace(root, "");
    // Logical lines: a backslash before the newline continues one.
    let joined = text.replace("\\\n", " ");
    let mut out = String::with_capacity(joined.len());
    for line in joined.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let words = split_words(body);
        let Some(colon) = words.iter().position(|w| w.ends_with(':')) else {
            out.push_str(line);
            continue;
        };
        let mut col = 0;
        let put = |out: &mut String, w: &str, col: &mut usize| {
            if *col > 0 {
                if *col + w.len() > COLMAX {
                    out.push_str(" \\\n");
                    *col = 0;
                }
                *col += 1;
                out.push(' ');
            }
            *col += w.len();
            out.push_str(w);
        };
        for (i, w) in words.iter().enumerate() {
            if i == colon {
                // The last target carries the colon: written as gcc does,
                // the colon right after it and counted.
                put(&mut out, w.trim_end_matches(':'), &mut col);
                out.push(':');
                col += 1;
            } else {
                put(&mut out, w, &mut col);
            }
        }
        out.push_str(nl);
    }
    out.into_bytes()
}

/// Words of a make rule: split at blanks not escaped with a backslash.
fn split_words(line: &str) -> Vec<&str> {
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut start = None;
    for (i, &c) in b.iter().enumerate() {
        let escaped = i > 0 && b[i - 1] == b'\\';
        if (c == b' ' || c == b'\t') && !escaped {
            if let Some(s) = start.take() {
                words.push(&line[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(&line[s..]);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(cwd: &str, entries: &[(&str, Option<&str>)]) -> PumpInput {
        PumpInput {
            cwd: cwd.as_bytes().to_vec(),
            entries: entries
                .iter()
                .map(|(n, link)| {
                    let e = match link {
                        Some(t) => PumpEntry::Link(t.as_bytes().to_vec()),
                        None => PumpEntry::File(b"int x;\n".to_vec()),
                    };
                    (n.as_bytes().to_vec(), e)
                })
                .collect(),
        }
    }

    fn climb(n: usize, rest: &str) -> String {
        "../".repeat(n) + rest
    }

    #[test]
    fn what_distcc_34_sends_is_laid_out() {
        // As in the recorded request: files, system links 22 and 23 deep.
        let usr_include = climb(22, "usr/include");
        let gcc = climb(26, "usr/lib/gcc/x86_64-linux-gnu/12/include");
        let l = layout(&input(
            "/tmp/pumptest",
            &[
                ("/tmp/pumptest/src/main.c", None),
                ("/tmp/pumptest/include/foo.h", None),
                ("/usr/include", Some(&usr_include)),
                ("/usr/lib/gcc/x86_64-linux-gnu/12/include", Some(&gcc)),
                ("/tmp/pumptest/src/forcing_technique_271828", None),
                ("/tmp/pumptest/inc", Some("include")),
                ("/tmp/pumptest/abs", Some("/tmp/pumptest/include")),
            ],
        ))
        .unwrap();
        assert_eq!(l.cwd, Path::new("tmp/pumptest"));
        assert_eq!(
            layout(&input("/", &[])).unwrap().cwd,
            Path::new(""),
            "a client working in /"
        );
        assert_eq!(l.entries[0].0, Path::new("tmp/pumptest/src/main.c"));
        assert_eq!(
            l.entries[2].1,
            Placed::Link(LinkTarget::Relative(usr_include.into()))
        );
        assert_eq!(
            l.entries[6].1,
            Placed::Link(LinkTarget::InRoot("tmp/pumptest/include".into()))
        );
    }

    #[test]
    fn names_and_links_that_leave_the_root_are_refused() {
        let etc = climb(30, "etc");
        let shallow = climb(3, "usr/include");
        let dotdot = climb(22, "usr/include/../../etc");
        // (cwd, entries, a piece of the error)
        type Case<'a> = (&'a str, &'a [(&'a str, Option<&'a str>)], &'a str);
        let cases: &[Case] = &[
            ("tmp/x", &[], "not absolute"),
            ("/tmp/x", &[("/", None)], "the root itself"),
            ("/tmp/x", &[("relative.h", None)], "not absolute"),
            ("/tmp/x", &[("/tmp/x/../../etc/passwd", None)], "'..' component"),
            ("/tmp/x", &[("/tmp/./x.h", None)], "'..' component"),
            ("/tmp/x", &[("/tmp//x.h", None)], "'..' component"),
            ("/tmp/x", &[("/tmp/x\0.h", None)], "NUL"),
            (
                "/tmp/x",
                &[("/tmp/x/a.h", None), ("/tmp/x/a.h", None)],
                "sent twice",
            ),
            (
                "/tmp/x",
                &[("/tmp/x/l", Some(&etc))],
                "other than a system directory",
            ),
            (
                "/tmp/x",
                &[("/tmp/x/l", Some("../../../etc"))],
                "other than a system directory",
            ),
            ("/tmp/x", &[("/tmp/x/l", Some(&shallow))], "without climbing"),
            ("/tmp/x", &[("/tmp/x/l", Some(&dotdot))], "'..' after a name"),
            ("/tmp/x", &[("/tmp/x/l", Some("/etc/../root"))], "absolute target"),
            ("/tmp/x", &[("/tmp/x/l", Some(""))], "empty target"),
            (
                "/tmp/x",
                &[("/tmp/x/dir", Some("sub")), ("/tmp/x/dir/evil.h", None)],
                "through the link",
            ),
            (
                "/tmp/x",
                &[("/tmp/x/dir/evil.h", None), ("/tmp/x/dir", Some("sub"))],
                "through the link",
            ),
        ];
        for (cwd, entries, want) in cases {
            let e = layout(&input(cwd, entries)).unwrap_err();
            assert!(e.to_string().contains(want), "{cwd} {entries:?}: {e}");
        }
    }

    #[test]
    fn every_recorded_distcc_34_request_is_accepted() {
        use crate::protocol::message::{Decoder, Need, RequestDecoder};
        for name in ["ok-md", "ok-nodeps", "fail"] {
            let p = format!(
                "{}/tests/data/pump-capture/{name}.c2s.bin",
                env!("CARGO_MANIFEST_DIR")
            );
            let bytes = std::fs::read(&p).unwrap();
            let mut dec = RequestDecoder::with_pump(Default::default());
            let mut at = 0;
            while dec.need() != Need::Done {
                match dec.need() {
                    Need::Header | Need::HeaderOrEnd => {
                        dec.header(bytes[at..at + 12].try_into().unwrap()).unwrap();
                        at += 12;
                    }
                    Need::Body { len, .. } => {
                        dec.body(bytes[at..at + len as usize].to_vec()).unwrap();
                        at += len as usize;
                    }
                    Need::Done => {}
                }
            }
            let req = dec.finish();
            let l = layout(req.pump.as_ref().unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(l.entries.len(), req.pump.unwrap().entries.len());
        }
    }

    #[test]
    fn dependency_files_are_the_clients_as_gcc_lays_them_out() {
        let root = "/var/tmp/distccd-rs.1.2.3/root";
        let server = format!(
            "src/main.o: src/main.c /usr/include/stdc-predef.h /usr/include/stdio.h \\\n \
             {root}/home/me/proj/abs_inc/absolute.h \\\n include/foo.h\n"
        );
        let local = "src/main.o: src/main.c /usr/include/stdc-predef.h /usr/include/stdio.h \\\n \
                     /home/me/proj/abs_inc/absolute.h include/foo.h\n";
        assert_eq!(
            String::from_utf8(client_dotd(server.as_bytes(), root)).unwrap(),
            local
        );
        // -MP's phony rules, and an escaped space in a name, as they were.
        let mp = "x.o: x.c a\\ b.h\n\na\\ b.h:\n";
        assert_eq!(String::from_utf8(client_dotd(mp.as_bytes(), root)).unwrap(), mp);
    }

    #[test]
    fn relative_links_inside_the_root_are_kept() {
        for target in ["sibling.h", "../include/x.h", "./a/b", "../../tmp/x/y"] {
            let l = layout(&input("/tmp/x", &[("/tmp/x/src/l", Some(target))])).unwrap();
            assert_eq!(
                l.entries[0].1,
                Placed::Link(LinkTarget::Relative(target.into())),
                "{target}"
            );
        }
    }
}
