/*!
GCC response files (`@file`), expanded exactly as the GCC driver does.

CMake and Ninja hand long command lines to the compiler through `@file`
words, so the client must see through them before it can decide what a
command means. GCC expands them with libiberty's `expandargv`, splitting
each file with `buildargv`; the rules below are libiberty's (checked against
GCC 12's copy of `argv.c` and against `/usr/bin/gcc` itself in the tests):

- Words are separated by runs of ASCII whitespace in the C-locale `isspace`
  sense: space, `\t`, `\n`, `\v`, `\f`, `\r`. Other bytes, including every
  byte >= 0x80, are word bytes.
- A backslash takes the next byte literally everywhere, *including inside
  single quotes* (unlike a POSIX shell): `'a\'b'` is `a'b`. A backslash
  before a newline keeps the newline in the word; there are no line
  continuations. A backslash at the very end of the file is dropped.
- Single and double quotes group and are removed; they behave the same.
  `""` is an empty word. An unterminated quote runs to the end of the file.
- The text ends at its first NUL byte, as `buildargv` sees a C string.
- A file that is empty or holds only whitespace contributes no words.
- Words read from a file are scanned again, so nested `@file`s expand, in
  place and in order. Relative names are relative to the current directory,
  never to the file that names them.
- `@name` stays a literal word when `name` cannot be `stat`ed, opened or
  read (so `@` alone stays `@`); GCC then treats it as an input file.
- `@name` naming a directory is a hard error in GCC ("@-file refers to a
  directory"), not a literal.
- Every word that starts with `@` counts against a budget of 2000, whether
  or not it names a readable file; the 2000th is a hard error ("too many
  @-files encountered"). That is what stops a file that names itself.
- `argv[0]` is the program and is never expanded.
*/

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// libiberty's `iteration_limit`. It is decremented before each `@` word is
/// looked at and fails on reaching zero, so at most 1999 `@` words pass.
pub const AT_WORD_LIMIT: usize = 2000;

/// What looking up the file behind one `@name` word found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The file's bytes.
    Contents(Vec<u8>),
    /// The name cannot be `stat`ed, opened or read: the word stays literal.
    Unreadable,
    /// The name is a directory: GCC stops with an error.
    Directory,
}

/// Why GCC itself would refuse the command line; both are fatal in GCC
/// (`xexit (1)` in `expandargv`), so a client must not compile it either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// The `@` word budget ran out; `file` is the name in the word that did it.
    TooMany { file: PathBuf },
    /// `@file` names a directory.
    Directory { file: PathBuf },
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::TooMany { file } => write!(
                f,
                "too many @-files encountered (the last was @{})",
                file.display()
            ),
            ExpandError::Directory { file } => {
                write!(f, "@-file refers to a directory: {}", file.display())
            }
        }
    }
}

impl std::error::Error for ExpandError {}

/// libiberty's `ISSPACE` is locale-independent C `isspace`; note that
/// `u8::is_ascii_whitespace` would miss `\v`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits the text of one response file into words, as `expandargv` does
/// with `buildargv` (an empty or all-whitespace text gives no words).
pub fn split(text: &[u8]) -> Vec<Vec<u8>> {
    let text = match text.iter().position(|&b| b == 0) {
        Some(nul) => &text[..nul],
        None => text,
    };
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < text.len() && is_space(text[i]) {
            i += 1;
        }
        if i == text.len() {
            return words;
        }
        let mut word = Vec::new();
        let (mut squote, mut dquote, mut escaped) = (false, false, false);
        while let Some(&b) = text.get(i) {
            if is_space(b) && !squote && !dquote && !escaped {
                break;
            }
            i += 1;
            // The escape test comes before the quote tests: that order is
            // what lets a backslash work inside quotes.
            if escaped {
                escaped = false;
                word.push(b);
            } else if b == b'\\' {
                escaped = true;
            } else if squote {
                if b == b'\'' {
                    squote = false;
                } else {
                    word.push(b);
                }
            } else if dquote {
                if b == b'"' {
                    dquote = false;
                } else {
                    word.push(b);
                }
            } else if b == b'\'' {
                squote = true;
            } else if b == b'"' {
                dquote = true;
            } else {
                word.push(b);
            }
        }
        words.push(word);
    }
}

/// Expands every `@file` word of `args` (a whole command line: `args[0]` is
/// the program and is left alone), asking `read` for each file's bytes.
pub fn expand<F>(args: &[OsString], mut read: F) -> Result<Vec<OsString>, ExpandError>
where
    F: FnMut(&Path) -> Lookup,
{
    let Some((program, rest)) = args.split_first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(args.len());
    out.push(program.clone());
    // A stack of words still to scan, next on top: pushing a file's words
    // here reproduces libiberty's splice-and-rescan without its quadratic
    // copying.
    let mut pending: Vec<OsString> = rest.iter().rev().cloned().collect();
    let mut budget = AT_WORD_LIMIT;
    while let Some(word) = pending.pop() {
        let Some(name) = word.as_bytes().strip_prefix(b"@") else {
            out.push(word);
            continue;
        };
        let file = Path::new(OsStr::from_bytes(name));
        budget -= 1;
        if budget == 0 {
            return Err(ExpandError::TooMany {
                file: file.to_path_buf(),
            });
        }
        match read(file) {
            Lookup::Contents(text) => {
                pending.extend(split(&text).into_iter().rev().map(OsString::from_vec));
            }
            Lookup::Unreadable => out.push(word),
            Lookup::Directory => {
                return Err(ExpandError::Directory {
                    file: file.to_path_buf(),
                });
            }
        }
    }
    Ok(out)
}

/// Looks a response file up the way `expandargv` does: `stat` (following
/// symlinks), then open, then read as many bytes as seeking to the end
/// reported. So a pipe (which cannot seek) stays literal, and a file whose
/// size reads as 0, such as one in /proc, contributes nothing.
pub fn read_from_disk(path: &Path) -> Lookup {
    let Ok(meta) = std::fs::metadata(path) else {
        return Lookup::Unreadable;
    };
    if meta.is_dir() {
        return Lookup::Directory;
    }
    let contents = (|| {
        let mut file = std::fs::File::open(path)?;
        let len = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(0))?;
        let mut bytes = Vec::new();
        file.take(len).read_to_end(&mut bytes)?;
        std::io::Result::Ok(bytes)
    })();
    match contents {
        Ok(bytes) => Lookup::Contents(bytes),
        Err(_) => Lookup::Unreadable,
    }
}

/// [`expand`] with the files read from disk, relative to the current directory.
pub fn expand_from_disk(args: &[OsString]) -> Result<Vec<OsString>, ExpandError> {
    expand(args, read_from_disk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn os(words: &[&[u8]]) -> Vec<OsString> {
        words.iter().map(|w| OsString::from_vec(w.to_vec())).collect()
    }

    #[test]
    fn split_table() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"", &[]),
            (b"   \n\t\r\x0b\x0c  ", &[]),
            (b"a b  c", &[b"a", b"b", b"c"]),
            (b"  lead and trail \n", &[b"lead", b"and", b"trail"]),
            (b"a\tb\nc\rd\x0be\x0cf", &[b"a", b"b", b"c", b"d", b"e", b"f"]),
            (b"-DA\r\n-DB\r\n", &[b"-DA", b"-DB"]),
            (b"'a b' \"c d\"", &[b"a b", b"c d"]),
            (b"-DFOO=\"a b\"", &[b"-DFOO=a b"]),
            (b"x'y'\"z\"w", &[b"xyzw"]),
            (b"'say \"hi\"' \"it's\"", &[b"say \"hi\"", b"it's"]),
            (b"\"\" ''", &[b"", b""]),
            (b"a \"\" b", &[b"a", b"", b"b"]),
            (b"a\\ b", &[b"a b"]),
            (b"\\\"q\\\"", &[b"\"q\""]),
            (b"\\\\", &[b"\\"]),
            (b"'a\\'b'", &[b"a'b"]),
            (b"\"a\\\"b\"", &[b"a\"b"]),
            (b"\"a\\\\b\"", &[b"a\\b"]),
            (b"'c:\\dir'", &[b"c:dir"]),
            (b"tail\\", &[b"tail"]),
            (b"\\", &[b""]),
            (b"a\\\nb c", &[b"a\nb", b"c"]),
            (b"'open quote\n  x", &[b"open quote\n  x"]),
            (b"\"open", &[b"open"]),
            (b"a\0b c", &[b"a"]),
            (b"\0a", &[]),
            (b"\xff\xfe \xc3\xa9", &[b"\xff\xfe", b"\xc3\xa9"]),
            (b"\xa0x", &[b"\xa0x"]),
            (b"@nested", &[b"@nested"]),
        ];
        for (text, want) in cases {
            let got = split(text);
            let want: Vec<Vec<u8>> = want.iter().map(|w| w.to_vec()).collect();
            assert_eq!(got, want, "split({:?})", String::from_utf8_lossy(text));
        }
    }

    fn expand_mem(files: &[(&str, &[u8])], args: &[&[u8]]) -> Result<Vec<OsString>, ExpandError> {
        let map: HashMap<PathBuf, Lookup> = files
            .iter()
            .map(|(name, text)| {
                let lookup = if *text == b"<dir>" {
                    Lookup::Directory
                } else {
                    Lookup::Contents(text.to_vec())
                };
                (PathBuf::from(name), lookup)
            })
            .collect();
        expand(&os(args), |p| map.get(p).cloned().unwrap_or(Lookup::Unreadable))
    }

    #[test]
    fn expand_table() {
        type Case<'a> = (&'a [(&'a str, &'a [u8])], &'a [&'a [u8]], &'a [&'a [u8]]);
        let cases: &[Case] = &[
            (&[], &[], &[]),
            (&[], &[b"gcc", b"-c", b"x.c"], &[b"gcc", b"-c", b"x.c"]),
            (
                &[("r", b"-DA '-DB=x y'\n")],
                &[b"gcc", b"@r", b"-c"],
                &[b"gcc", b"-DA", b"-DB=x y", b"-c"],
            ),
            (&[("r", b" \n")], &[b"gcc", b"@r", b"-c"], &[b"gcc", b"-c"]),
            (&[("r", b"")], &[b"gcc", b"@r"], &[b"gcc"]),
            (
                &[("a", b"1 @b 4"), ("b", b"2 @c"), ("c", b"3")],
                &[b"gcc", b"@a", b"5"],
                &[b"gcc", b"1", b"2", b"3", b"4", b"5"],
            ),
            (
                &[("r", b"x")],
                &[b"gcc", b"@missing", b"@", b"@r"],
                &[b"gcc", b"@missing", b"@", b"x"],
            ),
            (&[("r", b"@missing")], &[b"gcc", b"@r"], &[b"gcc", b"@missing"]),
            (&[("@r", b"x")], &[b"@r", b"@@r"], &[b"@r", b"x"]),
            (&[("a b", b"spaced")], &[b"gcc", b"@r"], &[b"gcc", b"@r"]),
            (
                &[("r", b"@'a b'"), ("a b", b"spaced")],
                &[b"gcc", b"@r"],
                &[b"gcc", b"spaced"],
            ),
            (&[("r", b"x")], &[b"gcc", b"-o", b"@r"], &[b"gcc", b"-o", b"x"]),
            (&[("r", b"x")], &[b"gcc", b"-@r"], &[b"gcc", b"-@r"]),
        ];
        for (files, args, want) in cases {
            assert_eq!(expand_mem(files, args), Ok(os(want)), "{files:?} {args:?}");
        }
    }

    #[test]
    fn directory_is_an_error() {
        assert_eq!(
            expand_mem(&[("d", b"<dir>")], &[b"gcc", b"@d"]),
            Err(ExpandError::Directory { file: "d".into() })
        );
        assert_eq!(
            expand_mem(&[("d", b"<dir>"), ("r", b"@d")], &[b"gcc", b"@missing", b"@r"]),
            Err(ExpandError::Directory { file: "d".into() })
        );
    }

    #[test]
    fn self_inclusion_stops_at_the_limit() {
        for text in [&b"@self"[..], b"-DX @self", b"@self @self"] {
            let mut reads = 0;
            let got = expand(&os(&[b"gcc", b"@self"]), |_| {
                reads += 1;
                Lookup::Contents(text.to_vec())
            });
            assert_eq!(got, Err(ExpandError::TooMany { file: "self".into() }));
            assert_eq!(reads, AT_WORD_LIMIT - 1);
        }
        let two = [("a", &b"@b"[..]), ("b", b"@a")];
        assert_eq!(
            expand_mem(&two, &[b"gcc", b"@a"]),
            Err(ExpandError::TooMany { file: "b".into() })
        );
    }

    /// A chain of files each naming the next, plus `literal` unreadable
    /// `@` words, which count too.
    fn chain(files: usize, literal: usize) -> Result<Vec<OsString>, ExpandError> {
        let mut args = os(&[b"gcc", b"@f0"]);
        args.extend((0..literal).map(|_| OsString::from("@missing")));
        expand(&args, |p| {
            let Some(n) = p.to_str().unwrap().strip_prefix('f') else {
                return Lookup::Unreadable;
            };
            let n: usize = n.parse().unwrap();
            Lookup::Contents(if n + 1 < files {
                format!("@f{}", n + 1).into_bytes()
            } else {
                b"-DEND".to_vec()
            })
        })
    }

    #[test]
    fn limit_boundary() {
        let ok = chain(AT_WORD_LIMIT - 1, 0).unwrap();
        assert_eq!(ok, os(&[b"gcc", b"-DEND"]));
        assert_eq!(
            chain(AT_WORD_LIMIT, 0),
            Err(ExpandError::TooMany {
                file: format!("f{}", AT_WORD_LIMIT - 1).into()
            })
        );
        assert!(chain(AT_WORD_LIMIT - 2, 1).is_ok());
        assert_eq!(
            chain(AT_WORD_LIMIT - 2, 2),
            Err(ExpandError::TooMany {
                file: "missing".into()
            })
        );
    }

    #[test]
    fn error_messages() {
        let e = ExpandError::TooMany { file: "x".into() };
        assert_eq!(e.to_string(), "too many @-files encountered (the last was @x)");
        let e = ExpandError::Directory { file: "d".into() };
        assert_eq!(e.to_string(), "@-file refers to a directory: d");
    }

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "distcc-rsp-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, name: &str, text: &[u8]) {
            let path = self.0.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    /// Reads as if the scratch dir were the working directory: relative
    /// names resolve in it, absolute ones as they are, and the empty name
    /// (from a lone `@`) fails as `stat("")` does.
    fn in_dir(dir: &Path) -> impl FnMut(&Path) -> Lookup + '_ {
        move |p| {
            if p.as_os_str().is_empty() {
                Lookup::Unreadable
            } else {
                read_from_disk(&dir.join(p))
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_from_disk() {
        let s = Scratch::new("disk");
        s.write("r", b"-DA @sub/r2");
        s.write("sub/r2", b"@r3");
        s.write("r3", b"top");
        s.write("sub/r3", b"beside");
        std::fs::write(s.0.join("empty"), b"").unwrap();
        assert_eq!(read_from_disk(&s.0.join("sub")), Lookup::Directory);
        assert_eq!(read_from_disk(&s.0.join("nope")), Lookup::Unreadable);
        assert_eq!(read_from_disk(Path::new("")), Lookup::Unreadable);
        assert_eq!(read_from_disk(&s.0.join("empty")), Lookup::Contents(Vec::new()));
        assert_eq!(
            read_from_disk(Path::new("/proc/self/cmdline")),
            Lookup::Contents(Vec::new())
        );
        // Relative names resolve against the working directory, so run the
        // expansion through a closure that plays cwd = the scratch dir
        // rather than changing the whole test process's directory.
        let got = expand(&os(&[b"gcc", b"@r"]), in_dir(&s.0));
        assert_eq!(got, Ok(os(&[b"gcc", b"-DA", b"top"])));
    }

    // ---- Oracle: the real GCC driver. ----

    const GCC: &str = "/usr/bin/gcc";

    /// Options that take the next word as their value, in the cases below.
    const SEPARATE: &[&[u8]] = &[
        b"-D",
        b"-I",
        b"-U",
        b"-isystem",
        b"-MT",
        b"-MF",
        b"-include",
        b"-o",
    ];

    /// What `gcc -###` shows of its expanded command line: the switches in
    /// `COLLECT_GCC_OPTIONS` (the driver splits `-DX` into `-D` `X`, and
    /// adds `-mtune=`/`-march=`), and the unknown-extension operands it
    /// warns are unused linker inputs.
    #[derive(Debug, PartialEq, Eq)]
    struct DriverView {
        switches: Vec<Vec<u8>>,
        inputs: Vec<Vec<u8>>,
    }

    /// Predicts `DriverView` from our expansion.
    fn predict(expanded: &[OsString]) -> DriverView {
        let mut view = DriverView {
            switches: Vec::new(),
            inputs: Vec::new(),
        };
        let mut words = expanded[1..].iter().map(|w| w.as_bytes());
        while let Some(w) = words.next() {
            if w == b"-###" || w.ends_with(b".c") {
                continue;
            }
            if SEPARATE.contains(&w) {
                view.switches.push(w.to_vec());
                view.switches.push(words.next().unwrap().to_vec());
            } else if w.len() > 2 && matches!(&w[..2], b"-D" | b"-I" | b"-U") {
                view.switches.push(w[..2].to_vec());
                view.switches.push(w[2..].to_vec());
            } else if w.starts_with(b"-") {
                view.switches.push(w.to_vec());
            } else {
                view.inputs.push(w.to_vec());
            }
        }
        view
    }

    /// Parses the first `COLLECT_GCC_OPTIONS='a' 'b'\''c'` line, which may
    /// span lines when a quoted word holds a newline.
    fn parse_collect_options(stderr: &[u8]) -> Vec<Vec<u8>> {
        let key = b"COLLECT_GCC_OPTIONS=";
        let start = stderr
            .windows(key.len())
            .position(|w| w == key)
            .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(key)))
            + key.len();
        let mut rest = stderr[start..].iter().copied().peekable();
        let mut words = Vec::new();
        loop {
            while rest.peek() == Some(&b' ') {
                rest.next();
            }
            match rest.peek() {
                None | Some(b'\n') => break,
                _ => {}
            }
            let mut word = Vec::new();
            while let Some(b) = rest.next_if(|b| *b != b' ' && *b != b'\n') {
                match b {
                    b'\'' => word.extend(rest.by_ref().take_while(|c| *c != b'\'')),
                    b'\\' => word.push(rest.next().unwrap()),
                    _ => word.push(b),
                }
            }
            words.push(word);
        }
        words.retain(|w| !w.starts_with(b"-mtune=") && !w.starts_with(b"-march="));
        words
    }

    /// Runs `gcc -### <args>` in `dir`; returns its view and whole stderr.
    fn run_gcc(dir: &Path, args: &[OsString]) -> (DriverView, Vec<u8>) {
        let out = std::process::Command::new(GCC)
            .arg("-###")
            .args(args)
            .current_dir(dir)
            .env("LC_ALL", "C")
            .env_remove("GCC_EXEC_PREFIX")
            .env_remove("COMPILER_PATH")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {GCC} (the oracle tests need it): {e}"));
        let stderr = out.stderr;
        let (prefix, suffix) = (
            &b"gcc: warning: "[..],
            &b": linker input file unused because linking not done"[..],
        );
        let inputs = stderr
            .split(|&b| b == b'\n')
            .filter_map(|line| line.strip_prefix(prefix)?.strip_suffix(suffix))
            .map(<[u8]>::to_vec)
            .collect();
        let view = DriverView {
            switches: if stderr.windows(8).any(|w| w == b"@-file r" || w == b"too many") {
                Vec::new()
            } else {
                parse_collect_options(&stderr)
            },
            inputs,
        };
        (view, stderr)
    }

    /// Writes `files` into a scratch dir, then checks that our expansion of
    /// `gcc <args> -c x.c` (run in that dir) is what GCC saw.
    fn agree(files: &[(&str, &[u8])], args: &[&[u8]]) -> Vec<OsString> {
        let s = Scratch::new("oracle");
        for (name, text) in files {
            s.write(name, text);
        }
        let mut argv = os(&[b"gcc"]);
        argv.extend(os(args));
        argv.extend(os(&[b"-c", b"x.c"]));
        let ours = expand(&argv, in_dir(&s.0)).unwrap_or_else(|e| panic!("{files:?}: {e}"));
        let (theirs, stderr) = run_gcc(&s.0, &argv[1..]);
        assert_eq!(
            predict(&ours),
            theirs,
            "files {files:?}\nours {ours:?}\ngcc said:\n{}",
            String::from_utf8_lossy(&stderr)
        );
        ours
    }

    #[test]
    fn oracle_quotes() {
        let ours = agree(
            &[(
                "r",
                b"-DA=\"a b\" -DB='c d' -D\"E F\"=1 \"-DG=h i\" -DEMPTY=\"\" -DJ=''\n\
                  -DK='say \"hi\"' -DL=\"it's\" -DM=x'y'\"z\"w -DN='open\n  quote",
            )],
            &[b"@r"],
        );
        // An open quote swallows the rest of its file, newline included,
        // but not the words after the @file.
        assert!(ours.contains(&OsString::from("-DN=open\n  quote")));
    }

    #[test]
    fn oracle_backslashes() {
        agree(
            &[(
                "r",
                b"-DA=a\\ b -DB=\"x\\\"y\" -DC='p\\'q' -DD=\\\\ -DE=\"\\\\\" -DF='c:\\dir'\n\
                  -DG=a\\\nb -DH=\\\"s\\\" -DI=tail\\",
            )],
            &[b"@r"],
        );
    }

    #[test]
    fn oracle_whitespace_and_empty_words() {
        agree(
            &[
                ("r", b"-DA\x0bin1\x0cin2\rin3\tin4\r\n-DB\r\n\"\" '' mid\"\"dle"),
                ("blank", b" \n\t\r\x0b\x0c "),
                ("empty", b""),
            ],
            &[b"@blank", b"@r", b"@empty", b"-DLAST"],
        );
    }

    #[test]
    fn oracle_nul_and_non_utf8() {
        agree(
            &[("r", b"-D\xff\xfe=\xc3\xa9 in\xa0put -DX\0 -DHIDDEN")],
            &[b"@r"],
        );
    }

    #[test]
    fn oracle_nested_missing_and_relative() {
        let ours = agree(
            &[
                ("r1", b"-DOUTER @r2 -DAFTER @missing @"),
                ("r2", b"-DINNER @sub/r3"),
                ("sub/r3", b"@r4 @'spaced name'"),
                ("r4", b"-DCWD_RELATIVE"),
                ("sub/r4", b"-DWRONG_FILE_RELATIVE"),
                ("spaced name", b"-DSPACED"),
            ],
            &[b"-DFIRST", b"@r1", b"@nope", b"-o", b"out.o"],
        );
        let want = [
            "gcc",
            "-DFIRST",
            "-DOUTER",
            "-DINNER",
            "-DCWD_RELATIVE",
            "-DSPACED",
            "-DAFTER",
            "@missing",
            "@",
            "@nope",
            "-o",
            "out.o",
            "-c",
            "x.c",
        ];
        assert_eq!(ours, want.map(OsString::from));
    }

    #[test]
    fn oracle_cmake_style() {
        // As CMake writes flags for Ninja's rspfile: shell-escaped, one
        // flag (or flag and value) per line.
        let rsp = b"-DFOO=\"a b\"\n\
            -DSTR=\\\"hello\\ world\\\"\n\
            -DQUOTED=\"\\\"x y\\\"\"\n\
            -I/path/with\\ space\n\
            -I\"/other path/include\"\n\
            -isystem /opt/x\\ y/include\n\
            -std=gnu11\n\
            -O2 -g -Wall -fPIC\n\
            -MD -MT obj.o -MF obj.o.d\n\
            -include \"cfg h.h\"\n";
        let ours = agree(&[("CMakeFiles/x.rsp", rsp)], &[b"@CMakeFiles/x.rsp"]);
        for word in [
            "-DFOO=a b",
            "-DSTR=\"hello world\"",
            "-DQUOTED=\"x y\"",
            "-I/path/with space",
            "-I/other path/include",
            "/opt/x y/include",
            "cfg h.h",
        ] {
            assert!(ours.contains(&OsString::from(word)), "{word:?} in {ours:?}");
        }
    }

    /// Runs GCC on a command line we reject and checks it fails the same way.
    fn gcc_refuses(dir: &Path, args: &[OsString], message: &str) {
        let (_, stderr) = run_gcc(dir, args);
        let stderr = String::from_utf8_lossy(&stderr);
        assert!(
            stderr.contains(&format!("gcc: error: {message}")),
            "gcc said: {stderr}"
        );
    }

    #[test]
    fn oracle_directory() {
        let s = Scratch::new("dir");
        s.write("d/f", b"");
        s.write("r", b"-DA @d");
        for args in [&[&b"@d"[..]][..], &[b"@r"]] {
            let mut argv = os(&[b"gcc"]);
            argv.extend(os(args));
            assert_eq!(
                expand(&argv, in_dir(&s.0)),
                Err(ExpandError::Directory { file: "d".into() })
            );
            gcc_refuses(&s.0, &argv[1..], "@-file refers to a directory");
        }
    }

    #[test]
    fn oracle_self_inclusion() {
        let s = Scratch::new("self");
        s.write("self", b"-DX @self");
        let argv = os(&[b"gcc", b"@self", b"-c", b"x.c"]);
        assert_eq!(
            expand(&argv, in_dir(&s.0)),
            Err(ExpandError::TooMany { file: "self".into() })
        );
        gcc_refuses(&s.0, &argv[1..], "too many @-files encountered");
    }

    #[test]
    fn oracle_limit_boundary() {
        // `files` files in a chain plus `literal` unreadable @ words: GCC
        // must accept exactly the cases we accept.
        for (files, literal) in [
            (AT_WORD_LIMIT - 1, 0),
            (AT_WORD_LIMIT, 0),
            (AT_WORD_LIMIT - 2, 1),
            (AT_WORD_LIMIT - 2, 2),
        ] {
            let s = Scratch::new("limit");
            for n in 0..files {
                let text = if n + 1 < files {
                    format!("@f{}", n + 1)
                } else {
                    "-DEND".to_string()
                };
                s.write(&format!("f{n}"), text.as_bytes());
            }
            let mut argv = os(&[b"gcc", b"@f0"]);
            argv.extend((0..literal).map(|_| OsString::from("@missing")));
            argv.extend(os(&[b"-c", b"x.c"]));
            let ours = expand(&argv, in_dir(&s.0));
            let (theirs, stderr) = run_gcc(&s.0, &argv[1..]);
            let gcc_refused =
                String::from_utf8_lossy(&stderr).contains("gcc: error: too many @-files encountered");
            match ours {
                Ok(ours) => {
                    assert!(!gcc_refused, "{files} files, {literal} literal");
                    assert_eq!(predict(&ours), theirs);
                }
                Err(e) => {
                    assert!(gcc_refused, "{files} files, {literal} literal: we said {e}");
                }
            }
        }
    }
}
