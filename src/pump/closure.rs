/*!
The files a compile may read: the source, the `-include`/`-imacros` files and
every header reachable from them, found the way the compiler finds them.

Over-approximate, never short. `#if` is not evaluated: every include in a
file counts. An include is looked up in every directory the compiler might
try for it, not only up to the first hit, and every file found is taken:
then for any lookup the compiler makes on the server, the file it finds here
is there too, and each directory before it lacks the name there as it does
here (the server's root holds only what is sent), so it finds the same file.
The directory order, `-I` dirs that duplicate system ones, `#include_next`'s
starting point and `-I-` then need no copy of gcc's rules. The one exception
is the compiler's own directories: their headers are not sent (the server has
its own, the same toolchain is assumed, as distcc does), but they are read
for includes that lead back into the user's directories.

A computed include (`#include MACRO`) is expanded with every definition of
its macros found in the files reached and on the command line (the
closure is grown again until no new definition appears). Where the answer
could be short, the include server gives up and the client preprocesses:
an absolute `#include "/x.h"` outside the compiler's directories (the server
would read its own `/x.h`), an expansion with too many results, a file that
cannot be read.

Caches live for the build: a file's directives by path and stat, a
directory's names by its mtime (a name created later changes it; a
directory changed in the last two seconds is read again each time, as its
mtime may not yet show every change).
*/

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::command::{self, NotCovered};
use super::directives::{self, Define, How, Spelling};
use super::macros;
use super::search::{Lists, Probes};

/// More files than this in one closure: something is wrong; give up.
const MAX_FILES: usize = 50_000;
/// Header names one computed include may expand to.
const MAX_NAMES: usize = 256;
/// Symbolic links followed resolving one path (the kernel's limit).
const MAX_LINKS: usize = 40;
/// A directory changed this recently is not trusted from the cache.
const RACY: Duration = Duration::from_secs(2);

/// The name of the empty file that makes a directory exist on the server
/// (distcc 3.4's: its `--scan-includes` knows it).
pub const FORCING: &str = "forcing_technique_271828";

/// What the server needs, in client paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closure {
    pub files: Vec<Sent>,
    /// Symbolic links on the way to a file, with their targets as read.
    pub links: Vec<(PathBuf, OsString)>,
    /// Directories that must exist (a `..` climbs out of them).
    pub dirs: Vec<PathBuf>,
    /// The compiler's own directories, outermost only.
    pub system: Vec<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Where the file really is (no links, no `..`).
    pub real: PathBuf,
    pub stamp: Stamp,
    /// The absolute name the compiler opens it by, when it names it
    /// absolutely (and by one name only): a `#line` with it keeps
    /// diagnostics and `__FILE__` the client's on a server that does not
    /// map its root away (distcc 3.4's include server does the same).
    pub absolute_name: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
        }
    }
}

struct Listing {
    mtime: Option<SystemTime>,
    names: Option<HashSet<OsString>>,
    epoch: u64,
}

/// Counters for `pump`'s report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub gave_up: u64,
    pub files_parsed: u64,
    pub dirs_read: u64,
}

/// The caches of one build.
#[derive(Default)]
pub struct Build {
    probes: Probes,
    parsed: HashMap<PathBuf, (Stamp, Arc<directives::Directives>)>,
    dirs: HashMap<PathBuf, Listing>,
    compilers: HashMap<(String, Option<PathBuf>), Option<PathBuf>>,
    epoch: u64,
    pub counts: Counts,
    /// PATH, for a compiler named without a directory.
    pub path: Option<OsString>,
}

/// One file the walk reached.
struct Node {
    /// As the compiler names it (relative to `cwd`, or absolute).
    named: PathBuf,
    system: bool,
    /// Its stat when reached (one stat per file and request).
    meta: fs::Metadata,
}

impl Build {
    pub fn closure(&mut self, cwd: &Path, argv: &[String]) -> Result<Closure, NotCovered> {
        self.epoch += 1;
        self.counts.requests += 1;
        let r = self.walk(cwd, argv);
        if r.is_err() {
            self.counts.gave_up += 1;
        }
        r
    }

    fn walk(&mut self, cwd: &Path, argv: &[String]) -> Result<Closure, NotCovered> {
        let c = command::parse(argv)?;
        // Looked up once per build: PATH is the build's, and every
        // request names the same compiler or two.
        let key = (
            c.compiler.clone(),
            c.compiler.contains('/').then(|| cwd.to_owned()),
        );
        let path = self.path.clone();
        let compiler = self
            .compilers
            .entry(key)
            .or_insert_with(|| find_compiler(&c.compiler, cwd, path.as_deref()))
            .clone()
            .ok_or_else(|| NotCovered(format!("{} is not found on PATH", c.compiler)))?;
        let lists = self
            .probes
            .lists(&compiler, cwd, c.lang, &c.search)
            .map_err(NotCovered)?;
        let own = self
            .probes
            .lists(&compiler, cwd, c.lang, &c.system)
            .map_err(NotCovered)?;
        let mut system: Vec<PathBuf> = own
            .quote
            .iter()
            .chain(&own.angle)
            .filter_map(|d| fs::canonicalize(cwd.join(d)).ok())
            .collect();
        system.sort();
        system.dedup();
        let mut w = Walk {
            cwd,
            lists: &lists,
            system: &system,
            seen: HashSet::new(),
            queue: Vec::new(),
            reached: Vec::new(),
            computed: Vec::new(),
            canon: HashMap::new(),
            parsed: Vec::new(),
            predefined: lists.predefined.clone(),
            undefined: c.undefined.iter().map(|u| u.as_bytes().to_vec()).collect(),
            defines: c
                .defines
                .iter()
                .filter_map(|d| Define::from_command_line(d))
                .collect(),
        };
        let source = PathBuf::from(&c.source);
        w.reach(source.clone())?;
        if !w.seen.contains(&source) {
            return Err(NotCovered(format!("{} is not a readable file", c.source)));
        }
        for f in &c.forced {
            let mut dirs = vec![PathBuf::new()];
            dirs.extend(lists.quote.iter().chain(&lists.angle).cloned());
            w.lookup(&dirs, f.as_bytes(), false, self)?;
        }
        w.run(self)?;
        w.finish()
    }

    /// The file's directives, from the cache while its stat is the same.
    fn directives(
        &mut self,
        abs: &Path,
        m: &fs::Metadata,
    ) -> Result<Arc<directives::Directives>, NotCovered> {
        let stamp = Stamp::of(m);
        if let Some((s, d)) = self.parsed.get(abs)
            && *s == stamp
        {
            return Ok(d.clone());
        }
        let text = fs::read(abs).map_err(|e| NotCovered(format!("cannot read {}: {e}", abs.display())))?;
        self.counts.files_parsed += 1;
        let d = Arc::new(directives::scan(&text));
        self.parsed.insert(abs.to_owned(), (stamp, d.clone()));
        Ok(d)
    }

    /// Whether `dir` (absolute) has an entry `name`; `false` for no such
    /// directory.
    fn has(&mut self, dir: &Path, name: &OsStr) -> bool {
        let epoch = self.epoch;
        let l = self.dirs.entry(dir.to_owned()).or_insert(Listing {
            mtime: None,
            names: None,
            epoch: 0,
        });
        if l.epoch != epoch {
            l.epoch = epoch;
            let mtime = fs::metadata(dir).and_then(|m| m.modified()).ok();
            let racy = mtime.is_none_or(|t| {
                SystemTime::now().duration_since(t).is_ok_and(|age| age < RACY) || SystemTime::now() < t
            });
            if racy {
                // Changing now (a build's own directories, as objects land):
                // a listing would be stale at once, and rereading it for
                // every request costs more than asking for the one name.
                l.mtime = None;
                l.names = None;
            } else if mtime != l.mtime || l.names.is_none() {
                l.mtime = mtime;
                l.names = Some(match fs::read_dir(dir) {
                    Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
                    Err(_) => HashSet::new(),
                });
                self.counts.dirs_read += 1;
            }
        }
        match &l.names {
            Some(n) => n.contains(name),
            None => fs::symlink_metadata(dir.join(name)).is_ok(),
        }
    }
}

/// The names of the macros that expanding `computed` can look up: its
/// identifiers and, again and again, those in the bodies of their
/// definitions. `None` (every macro counts) if one of those bodies pastes
/// (`##`), as a pasted name can be any name.
fn reachable_macros<'a>(
    computed: &'a [(Vec<directives::Token>, How, PathBuf, bool)],
    defs: impl Iterator<Item = &'a Define>,
) -> Option<HashSet<&'a [u8]>> {
    use directives::Kind;
    let mut by_name: HashMap<&[u8], Vec<&Define>> = HashMap::new();
    for d in defs {
        by_name.entry(d.name.as_slice()).or_default().push(d);
    }
    let mut wanted: HashSet<&[u8]> = HashSet::new();
    let mut todo: Vec<&[u8]> = Vec::new();
    for (tokens, ..) in computed {
        for t in tokens {
            if t.kind == Kind::Ident && wanted.insert(t.text.as_slice()) {
                todo.push(t.text.as_slice());
            }
        }
    }
    while let Some(name) = todo.pop() {
        for d in by_name.get(name).into_iter().flatten() {
            for t in &d.body {
                match t.kind {
                    Kind::Punct if t.text == b"##" || t.text == b"%:%:" => return None,
                    Kind::Ident if wanted.insert(t.text.as_slice()) => todo.push(t.text.as_slice()),
                    _ => {}
                }
            }
        }
    }
    Some(wanted)
}

/// The compiler a command names: a path, or the first on PATH that is not
/// distcc (a masquerade directory may come first).
pub fn find_compiler(name: &str, cwd: &Path, path: Option<&OsStr>) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(cwd.join(name));
    }
    let path = path?;
    std::env::split_paths(path).map(|d| d.join(name)).find(|p| {
        let Ok(real) = fs::canonicalize(p) else {
            return false;
        };
        let ours = real
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("distcc"));
        !ours && fs::metadata(&real).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    })
}

struct Walk<'a> {
    cwd: &'a Path,
    lists: &'a Lists,
    system: &'a [PathBuf],
    /// Every name reached, as the compiler names it.
    seen: HashSet<PathBuf>,
    queue: Vec<Node>,
    reached: Vec<(Node, fs::Metadata)>,
    /// Computed includes met so far: the tokens, how, and the includer.
    computed: Vec<(Vec<directives::Token>, How, PathBuf, bool)>,
    /// Directories' real paths (for "is it the compiler's?").
    canon: HashMap<PathBuf, Option<PathBuf>>,
    /// `-D` definitions.
    defines: Vec<Define>,
    /// The compiler's own macros (`-dM`), for computed includes, but for
    /// those `-U` undid.
    predefined: Arc<Vec<Define>>,
    undefined: Vec<Vec<u8>>,
    /// Reached files with definitions.
    parsed: Vec<Arc<directives::Directives>>,
}

impl Walk<'_> {
    fn abs(&self, named: &Path) -> PathBuf {
        self.cwd.join(named)
    }

    fn is_system(&mut self, abs: &Path) -> bool {
        let Some(dir) = abs.parent() else {
            return false;
        };
        let real = self
            .canon
            .entry(dir.to_owned())
            .or_insert_with(|| fs::canonicalize(dir).ok());
        real.as_ref()
            .is_some_and(|r| self.system.iter().any(|s| r.starts_with(s)))
    }

    /// Takes `named` if it is a file here.
    fn reach(&mut self, named: PathBuf) -> Result<(), NotCovered> {
        if self.seen.contains(&named) {
            return Ok(());
        }
        let abs = self.abs(&named);
        let Ok(m) = fs::metadata(&abs) else {
            return Ok(());
        };
        if !m.is_file() {
            return Ok(());
        }
        let system = self.is_system(&abs);
        self.seen.insert(named.clone());
        if self.seen.len() > MAX_FILES {
            return Err(NotCovered(format!("more than {MAX_FILES} files")));
        }
        self.queue.push(Node {
            named,
            system,
            meta: m,
        });
        Ok(())
    }

    /// Looks `name` up in each of `dirs` (as the compiler names them).
    fn lookup(
        &mut self,
        dirs: &[PathBuf],
        name: &[u8],
        from_system: bool,
        b: &mut Build,
    ) -> Result<(), NotCovered> {
        let rel = Path::new(OsStr::from_bytes(name));
        if name.is_empty() {
            return Ok(());
        }
        if rel.is_absolute() {
            let is_file = fs::metadata(rel).is_ok_and(|m| m.is_file());
            if !is_file || from_system || self.is_system(rel) {
                return Ok(());
            }
            return Err(NotCovered(format!(
                "#include of the absolute path {}: the server would read its own",
                rel.display()
            )));
        }
        for d in dirs {
            let named = d.join(rel);
            let abs = self.abs(&named);
            let (Some(parent), Some(file)) = (abs.parent(), abs.file_name()) else {
                continue;
            };
            if matches!(
                abs.components().next_back(),
                Some(Component::ParentDir | Component::CurDir)
            ) {
                continue;
            }
            if b.has(parent, file) {
                self.reach(named)?;
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
        how: How,
        spelling: &Spelling,
        includer: &Path,
        from_system: bool,
        b: &mut Build,
    ) -> Result<(), NotCovered> {
        let quote_first = |w: &Walk| -> Vec<PathBuf> {
            let mut v = vec![includer.to_owned()];
            v.extend(w.lists.quote.iter().chain(&w.lists.angle).cloned());
            v
        };
        match spelling {
            Spelling::Quote(name) => {
                let dirs = quote_first(self);
                self.lookup(&dirs, name, from_system, b)
            }
            Spelling::Angle(name) => {
                let dirs = match how {
                    // Searched from the directory after the includer's:
                    // every directory is a superset.
                    How::IncludeNext | How::HasIncludeNext => quote_first(self),
                    _ => self.lists.angle.clone(),
                };
                self.lookup(&dirs, name, from_system, b)
            }
            Spelling::Computed(tokens) => {
                self.computed
                    .push((tokens.clone(), how, includer.to_owned(), from_system));
                Ok(())
            }
        }
    }

    /// Walks until nothing new is reached, computed includes last and
    /// again while new definitions appear (a later file may define them).
    fn run(&mut self, b: &mut Build) -> Result<(), NotCovered> {
        let (mut done_defs, mut done_computed) = (usize::MAX, 0);
        loop {
            while let Some(node) = self.queue.pop() {
                let abs = self.abs(&node.named);
                let m = node.meta.clone();
                let d = b.directives(&abs, &m)?;
                let includer = node.named.parent().map(Path::to_owned).unwrap_or_default();
                for inc in &d.includes {
                    self.include(inc.how, &inc.spelling, &includer, node.system, b)?;
                }
                if !d.defines.is_empty() {
                    self.parsed.push(d);
                }
                self.reached.push((node, m));
            }
            if self.computed.is_empty()
                || (self.parsed.len() == done_defs && self.computed.len() == done_computed)
            {
                return Ok(());
            }
            (done_defs, done_computed) = (self.parsed.len(), self.computed.len());
            let mut table = macros::Table::default();
            let all = || {
                self.predefined
                    .iter()
                    .filter(|d| !self.undefined.contains(&d.name))
                    .chain(&self.defines)
                    .chain(self.parsed.iter().flat_map(|d| d.defines.iter()))
            };
            // Only the macros the computed includes can reach: the whole
            // table (the compiler's few hundred and every header's) cost
            // most of a warm request to build, for one or two lookups.
            let wanted = reachable_macros(&self.computed, all());
            for def in all() {
                if wanted.as_ref().is_none_or(|w| w.contains(def.name.as_slice())) {
                    table.add(def);
                }
            }
            let computed = self.computed.clone();
            for (tokens, how, includer, from_system) in &computed {
                match macros::header_names(tokens, &table, MAX_NAMES) {
                    Ok(names) => {
                        for s in names {
                            self.include(*how, &s, includer, *from_system, b)?;
                        }
                    }
                    // The compiler's own headers: what they compute is
                    // theirs (their macros are many, their targets theirs).
                    Err(_) if *from_system => {}
                    Err(e) => {
                        let shown: Vec<u8> = tokens
                            .iter()
                            .flat_map(|t| t.text.iter().copied().chain([b' ']))
                            .collect();
                        return Err(NotCovered(format!(
                            "#include {}: {e:?}",
                            String::from_utf8_lossy(&shown).trim()
                        )));
                    }
                }
            }
        }
    }

    fn finish(mut self) -> Result<Closure, NotCovered> {
        let mut out = Closure::default();
        let mut files: HashMap<PathBuf, usize> = HashMap::new();
        let mut links: HashSet<PathBuf> = HashSet::new();
        let mut dirs: HashSet<PathBuf> = HashSet::new();
        let reached = std::mem::take(&mut self.reached);
        for (node, m) in &reached {
            if node.system {
                continue;
            }
            let abs = self.abs(&node.named);
            let real = self.mirror(&abs, &mut out, &mut links, &mut dirs)?;
            let name = node.named.is_absolute().then(|| abs.clone());
            match files.get(&real) {
                Some(&i) => {
                    // Two names for one file: no `#line` can suit both.
                    if out.files[i].absolute_name != name {
                        out.files[i].absolute_name = None;
                    }
                }
                None => {
                    files.insert(real.clone(), out.files.len());
                    out.files.push(Sent {
                        real,
                        stamp: Stamp::of(m),
                        absolute_name: name,
                    });
                }
            }
        }
        for s in self.system {
            if !self.system.iter().any(|o| o != s && s.starts_with(o)) {
                out.system.push(s.clone());
            }
        }
        Ok(out)
    }

    /// Resolves `abs` as the kernel does, recording each link on the way
    /// and each directory a `..` leaves; returns the real path.
    fn mirror(
        &mut self,
        abs: &Path,
        out: &mut Closure,
        links: &mut HashSet<PathBuf>,
        dirs: &mut HashSet<PathBuf>,
    ) -> Result<PathBuf, NotCovered> {
        let mut rest: Vec<OsString> = abs
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .rev()
            .collect();
        let mut cur = PathBuf::from("/");
        let mut hops = 0;
        while let Some(c) = rest.pop() {
            if c == ".." {
                if cur.parent().is_some() && !self.under_system(&cur) && dirs.insert(cur.clone()) {
                    out.dirs.push(cur.clone());
                }
                cur.pop();
                continue;
            }
            let next = cur.join(&c);
            let link = fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink());
            if !link || self.under_system(&next) {
                cur = next;
                continue;
            }
            hops += 1;
            if hops > MAX_LINKS {
                return Err(NotCovered(format!("too many links resolving {}", abs.display())));
            }
            let target = fs::read_link(&next)
                .map_err(|e| NotCovered(format!("cannot read the link {}: {e}", next.display())))?;
            if links.insert(next.clone()) {
                out.links.push((next.clone(), target.clone().into_os_string()));
            }
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            for t in target.components().rev() {
                match t {
                    Component::Normal(n) => rest.push(n.to_owned()),
                    Component::ParentDir => rest.push("..".into()),
                    _ => {}
                }
            }
        }
        Ok(cur)
    }

    fn under_system(&self, p: &Path) -> bool {
        self.system.iter().any(|s| p.starts_with(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_compiler_past_distcc() {
        let d = std::env::temp_dir().join(format!("pump-find-{}", std::process::id()));
        let (masq, real) = (d.join("masq"), d.join("real"));
        fs::create_dir_all(&masq).unwrap();
        fs::create_dir_all(&real).unwrap();
        let distcc = d.join("distcc");
        fs::write(&distcc, "#!/bin/sh\n").unwrap();
        fs::write(real.join("cc"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        for p in [&distcc, &real.join("cc")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink(&distcc, masq.join("cc")).unwrap();
        let path = std::env::join_paths([&masq, &real]).unwrap();
        assert_eq!(find_compiler("cc", &d, Some(&path)), Some(real.join("cc")));
        assert_eq!(find_compiler("./x/cc", &d, Some(&path)), Some(d.join("./x/cc")));
        assert_eq!(find_compiler("nope", &d, Some(&path)), None);
        fs::remove_dir_all(&d).unwrap();
    }
}
