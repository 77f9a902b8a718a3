/*!
The server's reading of a command line: is this a compile it may run, and
what exactly does it run? distcc 3.4 refuses only `-fplugin=` and `-specs=`;
here every word must be understood (see `table`), the input and output are
replaced by the job's own files, and the language is pinned to its
preprocessed form so that the compiler never preprocesses on the server.
*/

use super::filename;
use super::table::{self, Server};

/// Why a request is refused; sent to the client in SERR and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(msg.into()))
}

/// What the server will run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerJob {
    /// The full command, `argv[0]` as the client sent it.
    pub argv: Vec<String>,
    /// The client's name for the input, for log lines.
    pub input_name: String,
    /// Extension the job's input file must have (`i`, `ii`, `mi`, `mii`).
    pub input_ext: &'static str,
    /// Pump mode: the dependency file's target (the client's first `-MT`,
    /// else its `-o`), and where the compiler writes the dependency file.
    pub deps: Option<PumpDeps>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PumpDeps {
    /// The client's first `-MT`, else its `-o`.
    pub target: Option<String>,
    pub file: String,
}

/// What a pump-mode (protocol 3) job needs beyond plain mode's rewrite.
#[derive(Clone, Copy, Debug)]
pub struct PumpJob<'a> {
    /// The job's root, under which the client's absolute paths are.
    pub root: &'a str,
    /// Where the compiler writes the dependency file.
    pub deps_file: &'a str,
}

/// `root` + an absolute client path, as distcc 3.4 joins them.
fn under_root(root: &str, path: &str) -> String {
    format!("{}/{}", root.trim_end_matches('/'), path.trim_start_matches('/'))
}

fn preprocessed_language(lang: &str) -> Option<&'static str> {
    Some(match lang {
        "c" | "cpp-output" => "cpp-output",
        "c++" | "c++-cpp-output" => "c++-cpp-output",
        "objective-c" | "objective-c-cpp-output" => "objective-c-cpp-output",
        "objective-c++" | "objective-c++-cpp-output" => "objective-c++-cpp-output",
        "none" => "none",
        _ => return None,
    })
}

pub fn names_a_path(value: &str) -> bool {
    value.contains('/') || value.starts_with('@')
}

pub fn check_assembler_option(opt: &str, word: &str) -> Result<(), Refusal> {
    const BAD: &[&str] = &["-a", "--MD", "-MD", "-o", "-I", "@", "--listing"];
    if BAD.iter().any(|b| opt.starts_with(b)) || names_a_path(opt) {
        return refuse(format!(
            "{word}: assembler option '{opt}' reads or writes files on the server; compile it locally"
        ));
    }
    Ok(())
}

pub fn check_forwarded(value: &str, word: &str) -> Result<(), Refusal> {
    // cc1 and LLVM options that load code or read files, and driver ones
    // that would if passed on.
    const PLUGINS: &[&str] = &[
        "-load",
        "-plugin",
        "-add-plugin",
        "-fplugin",
        "-fpass-plugin",
        "-include",
        "-imacros",
        "-B",
        "-specs",
        "--specs",
        "-wrapper",
        "-isysroot",
        "--sysroot",
    ];
    // cc1 takes outputs, inputs and plugins through -Xclang; only flags of
    // the kinds that change code generation or diagnostics pass.
    const XCLANG_KINDS: &[&str] = &[
        "-f",
        "-W",
        "-disable-",
        "-target-feature",
        "-target-cpu",
        "+",
        "-mconstructor-aliases",
    ];
    let unknown_cc1 = word == "-Xclang" && !XCLANG_KINDS.iter().any(|k| value.starts_with(k));
    if unknown_cc1 || PLUGINS.iter().any(|p| value.starts_with(p)) || names_a_path(value) {
        return refuse(format!(
            "{word} {value}: {}",
            "it can load code or name files on the server"
        ));
    }
    Ok(())
}

/// Checks `argv` and rewrites it to compile into `output`; the input becomes
/// `input(client's input name)`.
pub fn rewrite(
    argv: &[String],
    input: impl Fn(&str) -> String,
    output: &str,
    sysroots: &[String],
) -> Result<ServerJob, Refusal> {
    rewrite_for(argv, input, output, sysroots, None)
}

/// Pump mode's rewrite (protocol 3): the compiler preprocesses, so the
/// preprocessor's options are kept, with absolute paths taken under the
/// job's root; the source keeps its language; the dependency file is the
/// server's (`-MMD` unless `-MD`/`-MMD`, then `-MF`); and the debug info
/// and `__FILE__` name the client's paths, not the root's.
pub fn rewrite_pump(
    argv: &[String],
    output: &str,
    sysroots: &[String],
    pump: PumpJob<'_>,
) -> Result<ServerJob, Refusal> {
    let root = pump.root;
    let input = |name: &str| {
        if name.starts_with('/') {
            under_root(root, name)
        } else {
            name.to_owned()
        }
    };
    rewrite_for(argv, input, output, sysroots, Some(pump))
}

fn rewrite_for(
    argv: &[String],
    input: impl Fn(&str) -> String,
    output: &str,
    sysroots: &[String],
    pump: Option<PumpJob<'_>>,
) -> Result<ServerJob, Refusal> {
    let Some((compiler, words)) = argv.split_first() else {
        return refuse("empty command line");
    };
    let mut out = vec![compiler.clone()];
    let mut deps_wanted = false;
    let mut deps_target: Option<String> = None;
    let mut client_output: Option<String> = None;
    let mut compile = false;
    let mut input_name: Option<String> = None;
    let mut output_seen = false;
    // gcc expands `@file` in any word, a flag's separate value included
    // (`-D @/etc/shadow`), so no word may start with `@`.
    if let Some(w) = words.iter().find(|w| w.starts_with('@')) {
        return refuse(format!(
            "'{w}': response files would be read on the server; expand them on the client"
        ));
    }
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        i += 1;
        if !(word.starts_with('-') || word.starts_with('@')) || word == "-" {
            if !filename::is_source(word) {
                return refuse(format!(
                    "'{word}' is not a source file this server compiles (only one C, C++ or Objective-C input)"
                ));
            }
            if let Some(first) = &input_name {
                return refuse(format!(
                    "two inputs, '{first}' and '{word}': distcc compiles one file per job"
                ));
            }
            input_name = Some(word.to_owned());
            out.push(input(word));
            continue;
        }
        let t = match table::take(word, words.get(i).map(String::as_str)) {
            Ok(t) => t,
            Err(table::TakeError::Unknown) => {
                return refuse(format!(
                    "option '{word}' is not known to be safe to run on a server"
                ));
            }
            Err(table::TakeError::NoValue) => return refuse(format!("option '{word}' needs a value")),
        };
        if t.separate {
            i += 1;
        }
        let (flag, value) = (t.flag, t.value);
        let push_as_is = |out: &mut Vec<String>| t.push(word, out);
        if let Some(p) = pump {
            match flag.pump {
                table::Pump::AsServer => {}
                table::Pump::Keep => {
                    deps_wanted |= matches!(word, "-MD" | "-MMD");
                    push_as_is(&mut out);
                    continue;
                }
                table::Pump::Path => {
                    let v = value.unwrap_or_default();
                    if v.starts_with('=') || v.starts_with("$SYSROOT") {
                        return refuse(format!("option '{word}' names a sysroot-relative directory"));
                    }
                    let v = if v.starts_with('/') {
                        under_root(p.root, v)
                    } else {
                        v.to_owned()
                    };
                    out.push(flag.name.to_owned());
                    out.push(v);
                    continue;
                }
                table::Pump::DepsFile => continue,
                table::Pump::DepsTarget => {
                    // Kept, so the compiler writes the client's target and
                    // lays the file out as a local build does.
                    deps_target.get_or_insert_with(|| value.unwrap_or_default().to_owned());
                    push_as_is(&mut out);
                    continue;
                }
                table::Pump::SourceLanguage => {
                    let lang = value.unwrap_or_default();
                    if preprocessed_language(lang).is_none() || lang == "none" {
                        return refuse(format!("-x {lang}: not a language this server compiles"));
                    }
                    push_as_is(&mut out);
                    continue;
                }
            }
        }
        match flag.server {
            Server::Keep => push_as_is(&mut out),
            Server::KeepNoPaths => {
                if let Some((_, v)) = word.split_once('=')
                    && names_a_path(v)
                {
                    return refuse(format!("option '{word}' names a path on the server"));
                }
                push_as_is(&mut out);
            }
            Server::Refuse(why) => return refuse(format!("option '{word}' is refused: {why}")),
            Server::Compile => {
                compile = true;
                push_as_is(&mut out);
            }
            Server::Output => {
                if output_seen {
                    return refuse("more than one -o");
                }
                output_seen = true;
                client_output = value.map(str::to_owned);
                out.push("-o".to_owned());
                out.push(output.to_owned());
            }
            Server::Language => {
                let lang = value.unwrap_or_default();
                let Some(pre) = preprocessed_language(lang) else {
                    return refuse(format!(
                        "-x {lang}: only preprocessed C, C++ and Objective-C are compiled on a server"
                    ));
                };
                out.push("-x".to_owned());
                out.push(pre.to_owned());
            }
            Server::Assembler => {
                match value {
                    Some(v) => check_assembler_option(v, word)?,
                    None => {
                        for opt in word.trim_start_matches("-Wa,").split(',') {
                            check_assembler_option(opt, word)?;
                        }
                    }
                }
                push_as_is(&mut out);
            }
            Server::Forwarded => {
                check_forwarded(value.unwrap_or_default(), word)?;
                push_as_is(&mut out);
            }
            Server::Sysroot => {
                let dir = value.unwrap_or_default().trim_start_matches('=');
                if !sysroots.iter().any(|s| s == dir) {
                    return refuse(format!(
                        "option '{word}' names sysroot '{dir}', which this server does not offer (--allow-sysroot)"
                    ));
                }
                push_as_is(&mut out);
            }
        }
    }
    if !compile {
        return refuse("neither -c nor -S: linking and preprocessing are not done on a server");
    }
    let Some(input_name) = input_name else {
        return refuse("no source file in the command line");
    };
    let Some(input_ext) = filename::preprocessed_extension(&input_name).filter(|e| *e != "s") else {
        return refuse(format!("'{input_name}' has no preprocessed form"));
    };
    if !output_seen {
        out.push("-o".to_owned());
        out.push(output.to_owned());
    }
    let deps = pump.map(|p| {
        if !deps_wanted {
            out.push("-MMD".to_owned());
        }
        // The object's name is the server's: say the client's instead.
        let has_target = words.iter().any(|w| w.starts_with("-MT") || w.starts_with("-MQ"));
        let client_target = deps_target.clone().or_else(|| client_output.clone());
        if !has_target && let Some(t) = &client_target {
            out.push("-MT".to_owned());
            out.push(t.clone());
        }
        out.push("-MF".to_owned());
        out.push(p.deps_file.to_owned());
        // The client's paths in the debug info and in __FILE__, as in a
        // local build: distcc 3.4 patches .debug_info and .debug_str after
        // the fact and misses DWARF 5's .debug_line_str.
        out.push(format!("-ffile-prefix-map={}=", p.root.trim_end_matches('/')));
        PumpDeps {
            // Without -MT the target is the object's name, as gcc makes it
            // from -o (or the input's base name).
            target: client_target,
            file: p.deps_file.to_owned(),
        }
    });
    Ok(ServerJob {
        argv: out,
        input_name,
        input_ext,
        deps,
    })
}

/// Refuses preprocessed text that would still make the compiler open files.
/// gcc ignores directives in `.i` files, but clang obeys `#include` even in
/// `-x cpp-output`, and the assembler obeys `.incbin` and `.include` in
/// inline asm, so a client could otherwise read server files back through
/// the object or diagnostics. The daemon's sandbox is the first defence;
/// this scan is the second, and errs towards refusing (the client then
/// compiles locally, which is also right: such files are the client's):
/// - every physical line start is a possible directive, even inside a
///   comment, string or raw string (which the scan does not try to parse);
/// - a backslash (or the trigraph `??/`) then blanks then a newline is a
///   line splice, as gcc and clang take it;
/// - `incbin` and `.include` anywhere, in any case, and `__has_include`
///   and `__has_embed` anywhere, are refused. (Escapes in an asm string can
///   still spell them: the sandbox covers that.)
pub fn check_preprocessed(src: &[u8]) -> Result<(), Refusal> {
    const OPENS_FILES: &[&[u8]] = &[
        b"include",
        b"include_next",
        b"import",
        b"embed",
        b"__include_macros",
    ];
    // Pragmas that read or probe a file.
    const PRAGMAS: &[&[u8]] = &[
        b"dependency",
        b"include_alias",
        b"include_instead",
        b"pch_preprocess",
    ];
    const ANYWHERE: &[(&[u8], &str)] = &[
        (b"incbin", "the assembler directive .incbin (it reads a file)"),
        (b".include", "the assembler directive .include (it reads a file)"),
        (b"__has_include", "__has_include (it looks for a file)"),
        (b"__has_embed", "__has_embed (it looks for a file)"),
    ];
    let joined = unspliced(src);
    for (word, what) in ANYWHERE {
        if let Some(pos) = find_ignore_case(&joined, word) {
            let line = 1 + src[..original_index(src, pos)]
                .iter()
                .filter(|&&c| c == b'\n')
                .count();
            return refuse(format!(
                "preprocessed input line {line} has {what}: files are opened on the client only"
            ));
        }
    }
    let n = src.len();
    let mut i = 0;
    let mut line = 1usize;
    while i < n {
        // Comments may hide the hash (`/* */ #include`), so they are skipped
        // here; but a comment may really be the inside of a string, so the
        // next line looked at is the next physical one, not the comment's end.
        let mut l = line;
        let start = skip_blank(src, i, &mut l);
        let after_hash = if src[start..].starts_with(b"#") {
            Some(start + 1)
        } else if src[start..].starts_with(b"%:") {
            Some(start + 2)
        } else if src[start..].starts_with(b"??=") {
            Some(start + 3)
        } else {
            None
        };
        if let Some(k) = after_hash {
            let (ident, end) = word_at(src, skip_blank(src, k, &mut l));
            if OPENS_FILES.contains(&ident.as_slice()) {
                return refuse(format!(
                    "preprocessed input line {line} contains #{}: files are opened on the client only",
                    String::from_utf8_lossy(&ident)
                ));
            }
            if ident == b"pragma" {
                let mut j = end;
                while j < n && src[j] != b'\n' {
                    let (w, e) = word_at(src, j);
                    if PRAGMAS.contains(&w.as_slice()) {
                        return refuse(format!(
                            "preprocessed input line {line} has #pragma {}: it opens a file, and files are on \
                             the client only",
                            String::from_utf8_lossy(&w)
                        ));
                    }
                    j = if e > j { e } else { j + 1 };
                }
            }
        }
        let mut j = i;
        while j < n && src[j] != b'\n' {
            j += 1;
        }
        line += 1;
        i = j + 1;
    }
    Ok(())
}

/// The text with line splices removed (translation phase 2); borrowed when
/// there are none, as in almost every preprocessed file.
fn unspliced(src: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !(0..src.len()).any(|i| splice_at(src, i).is_some()) {
        return std::borrow::Cow::Borrowed(src);
    }
    let mut bytes = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        match splice_at(src, i) {
            Some(len) => i += len,
            None => {
                bytes.push(src[i]);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(bytes)
}

/// Where byte `pos` of the unspliced text is in `src`.
fn original_index(src: &[u8], pos: usize) -> usize {
    let (mut i, mut kept) = (0, 0);
    while i < src.len() {
        match splice_at(src, i) {
            Some(len) => i += len,
            None if kept == pos => return i,
            None => {
                kept += 1;
                i += 1;
            }
        }
    }
    src.len()
}

fn find_ignore_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// The identifier at `i` (splices inside it removed) and where it ends.
fn word_at(src: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut ident = Vec::new();
    while i < src.len() {
        if let Some(len) = splice_at(src, i) {
            i += len;
            continue;
        }
        let c = src[i];
        if !(c.is_ascii_alphanumeric() || c == b'_') {
            break;
        }
        ident.push(c);
        i += 1;
    }
    (ident, i)
}

/// A line splice at `i`: a backslash or the trigraph `??/`, any blanks (gcc
/// and clang accept them, with a warning), then a newline.
fn splice_at(src: &[u8], i: usize) -> Option<usize> {
    let mut j = if src[i] == b'\\' {
        i + 1
    } else if src[i..].starts_with(b"??/") {
        i + 3
    } else {
        return None;
    };
    while j < src.len() && matches!(src[j], b' ' | b'\t' | b'\x0b' | b'\x0c') {
        j += 1;
    }
    match src.get(j..) {
        Some([b'\n', ..]) => Some(j + 1 - i),
        Some([b'\r', b'\n', ..]) => Some(j + 2 - i),
        _ => None,
    }
}

fn skip_blank(src: &[u8], mut i: usize, line: &mut usize) -> usize {
    while i < src.len() {
        if let Some(len) = splice_at(src, i) {
            i += len;
            *line += 1;
        } else if matches!(src[i], b' ' | b'\t' | b'\x0b' | b'\x0c' | b'\r') {
            i += 1;
        } else if src[i..].starts_with(b"/*") {
            match src[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(p) => {
                    *line += src[i..i + 2 + p].iter().filter(|&&c| c == b'\n').count();
                    i += p + 4;
                }
                None => return src.len(),
            }
        } else {
            break;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(cmd: &str) -> Result<String, String> {
        rewrite(&words(cmd), |_| "IN.i".into(), "OUT.o", &["/opt/sdk".to_owned()])
            .map(|j| j.argv.join(" "))
            .map_err(|r| r.0)
    }

    #[test]
    fn accepted_and_rewritten() {
        let cases = [
            // What a real distcc 3.4 client sends (distcc-3.4.md §2.6).
            (
                "x86_64-linux-gnu-gcc -c t.c -o t.o",
                "x86_64-linux-gnu-gcc -c IN.i -o OUT.o",
            ),
            ("gcc -c x.i -o x.o", "gcc -c IN.i -o OUT.o"),
            ("gcc -o /tmp/hello.o -c ../src/hello.c", "gcc -o OUT.o -c IN.i"),
            ("gcc -ohello.o -c hello.c", "gcc -o OUT.o -c IN.i"),
            ("gcc -c hello.c", "gcc -c IN.i -o OUT.o"),
            ("gcc -S hello.c -o hello.s", "gcc -S IN.i -o OUT.o"),
            (
                "g++ -O2 -g -Wall -std=c++17 -fPIC -pthread -c a.cc -o a.o",
                "g++ -O2 -g -Wall -std=c++17 -fPIC -pthread -c IN.i -o OUT.o",
            ),
            ("gcc -x c -c a.c -o a.o", "gcc -x cpp-output -c IN.i -o OUT.o"),
            (
                "gcc -xc++ -c a.cc -o a.o",
                "gcc -x c++-cpp-output -c IN.i -o OUT.o",
            ),
            (
                "clang -c a.c -o a.o -target x86_64-pc-linux-gnu",
                "clang -c IN.i -o OUT.o -target x86_64-pc-linux-gnu",
            ),
            (
                "gcc -ffile-prefix-map=/home/u/src=. -c a.c -o a.o",
                "gcc -ffile-prefix-map=/home/u/src=. -c IN.i -o OUT.o",
            ),
            (
                "gcc -Wa,--noexecstack -c a.c -o a.o",
                "gcc -Wa,--noexecstack -c IN.i -o OUT.o",
            ),
            (
                "gcc -march=x86-64-v2 -c a.c -o a.o",
                "gcc -march=x86-64-v2 -c IN.i -o OUT.o",
            ),
            (
                "gcc --param max-inline-insns-single=100 -c a.c",
                "gcc --param max-inline-insns-single=100 -c IN.i -o OUT.o",
            ),
            (
                "clang -Xclang -fno-pch-timestamp -c a.c -o a.o",
                "clang -Xclang -fno-pch-timestamp -c IN.i -o OUT.o",
            ),
        ];
        for (cmd, want) in cases {
            assert_eq!(run(cmd), Ok(want.to_owned()), "{cmd}");
        }
        let job = rewrite(
            &words("g++ -c dir/a.cpp -o a.o"),
            |w| format!("<{w}>"),
            "OUT",
            &[],
        )
        .unwrap();
        assert_eq!((job.input_name.as_str(), job.input_ext), ("dir/a.cpp", "ii"));
        assert_eq!(job.argv[2], "<dir/a.cpp>");
    }

    #[test]
    fn refused_with_reasons() {
        let cases = [
            ("gcc -c a.c -fplugin=/tmp/evil.so", "load or run"),
            ("gcc -c a.c -fplugin-arg-x-y=1", "load or run"),
            ("gcc -specs=/tmp/x -c a.c", "load or run"),
            ("gcc --specs=/tmp/x -c a.c", "load or run"),
            ("gcc -B/tmp/evil -c a.c", "load or run"),
            ("gcc -B /tmp/evil -c a.c", "load or run"),
            ("gcc -wrapper /bin/sh,-c -c a.c", "load or run"),
            ("gcc @/etc/shadow -c a.c", "response files"),
            ("gcc -D @/etc/shadow -c a.c", "response files"),
            ("gcc -c a.c -target @/etc/shadow", "response files"),
            ("gcc -c a.c --param @/etc/shadow", "response files"),
            ("gcc -include /etc/shadow -c a.c", "read a file"),
            ("gcc -imacros/etc/shadow -c a.c", "read a file"),
            ("gcc --sysroot=/ -c a.c", "does not offer"),
            ("gcc --sysroot / -c a.c", "does not offer"),
            ("gcc -isysroot / -c a.c", "does not offer"),
            ("gcc -isysroot/etc -c a.c", "does not offer"),
            ("gcc -c a.c -MD -MF /etc/x.d", "preprocessing"),
            ("gcc -E a.c", "preprocessing"),
            ("gcc -c a.c -save-temps=/tmp", "write a file"),
            ("gcc -c a.c -fdump-tree-all=/tmp/x", "write a file"),
            ("gcc -c a.c -fopt-info=/etc/passwd", "names a path"),
            ("gcc -c a.c -frandom-seed=@/etc/shadow", "names a path"),
            ("gcc -c a.c -dumpdir /tmp/", "write a file"),
            ("gcc -c a.c -aux-info /tmp/x", "write a file"),
            ("gcc -c a.c -fprofile-use=/tmp/x", "profiling"),
            ("gcc -c a.c -Wa,-alh=/tmp/listing", "assembler option"),
            ("gcc -c a.c -Xassembler --MD", "assembler option"),
            ("clang -c a.c -Xclang -load -Xclang /tmp/p.so", "load code"),
            ("clang -c a.c -Xclang -o -Xclang x", "load code or name files"),
            (
                "clang -c a.c -Xclang -dependency-file -Xclang x.d",
                "load code or name files",
            ),
            ("clang -c a.c -mllvm -info-output-file=/tmp/x", "load code"),
            ("clang -c a.c -fpass-plugin=/tmp/p.so", "load or run"),
            ("gcc -c a.c -march=native", "server's CPU"),
            ("gcc -c a.c -gsplit-dwarf", "split DWARF"),
            ("gcc -x assembler-with-cpp -c a.c", "only preprocessed"),
            ("gcc -c a.c b.c", "two inputs"),
            ("gcc -c a.c /etc/passwd", "not a source file"),
            ("gcc -c a.c x.o", "not a source file"),
            ("gcc a.c -o a", "neither -c nor -S"),
            ("gcc -c -o a.o", "no source file"),
            ("gcc -c a.c -o a.o -o b.o", "more than one -o"),
            ("gcc -c a.c -print-prog-name=cc1", "not known to be safe"),
            ("gcc -c a.c -o", "needs a value"),
            ("gcc -c a.s", "not a source file"),
            ("gcc -c a.h", "not a source file"),
        ];
        for (cmd, want) in cases {
            let got = run(cmd);
            assert!(matches!(&got, Err(e) if e.contains(want)), "{cmd}: {got:?}");
        }
    }

    #[test]
    fn pump_mode_keeps_the_preprocessor_options_under_the_root() {
        let pump = PumpJob {
            root: "/srv/job/root",
            deps_file: "/srv/job/deps.d",
        };
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        // What distcc 3.4's pump client sent (tests/data/pump-capture/ok-md).
        let job = rewrite_pump(
            &words(
                "x86_64-linux-gnu-gcc -O2 -g -Iinclude -I/tmp/pumptest/abs_inc -iquote quote_inc -Igen -MD -c \
                 src/main.c -o src/main.o -MT src/main.o",
            ),
            "/srv/job/out.o",
            &[],
            pump,
        )
        .unwrap();
        assert_eq!(
            job.argv.join(" "),
            "x86_64-linux-gnu-gcc -O2 -g -I include -I /srv/job/root/tmp/pumptest/abs_inc -iquote quote_inc -I gen \
             -MD -c src/main.c -o /srv/job/out.o -MT src/main.o -MF /srv/job/deps.d -ffile-prefix-map=/srv/job/root="
        );
        assert_eq!(
            job.deps,
            Some(PumpDeps {
                target: Some("src/main.o".into()),
                file: "/srv/job/deps.d".into()
            })
        );
        // (command line, what the server runs, or the refusal's piece)
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                "gcc -c /abs/x.c -o x.o",
                Ok(
                    "gcc -c /srv/job/root/abs/x.c -o /srv/job/out.o -MMD -MT x.o -MF /srv/job/deps.d -ffile-prefix-map=/srv/job/root=",
                ),
            ),
            (
                "gcc -include /abs/cfg.h -imacros m.h -isystem /sys -idirafter after -DX=1 -UY -c x.c",
                Ok(
                    "gcc -include /srv/job/root/abs/cfg.h -imacros m.h -isystem /srv/job/root/sys -idirafter after -DX=1 \
                    -UY -c x.c -o /srv/job/out.o -MMD -MF /srv/job/deps.d -ffile-prefix-map=/srv/job/root=",
                ),
            ),
            (
                "gcc -MMD -MF x.d -MT a -MT b -MP -x c -c x.c",
                Ok(
                    "gcc -MMD -MT a -MT b -MP -x c -c x.c -o /srv/job/out.o -MF /srv/job/deps.d -ffile-prefix-map=/srv/job/root=",
                ),
            ),
            ("gcc -I=/usr/include -c x.c", Err("sysroot-relative")),
            ("gcc -M -c x.c", Err("-M")),
            ("gcc -Xpreprocessor -foo -c x.c", Err("-Xpreprocessor")),
            ("gcc -fplugin=x.so -c x.c", Err("-fplugin")),
            ("gcc --sysroot=/opt/sr -c x.c", Err("sysroot")),
            ("gcc -x assembler -c x.s", Err("-x assembler")),
            ("gcc -E x.c", Err("-E")),
        ];
        for (cmd, want) in cases {
            let got = rewrite_pump(&words(cmd), "/srv/job/out.o", &[], pump);
            match (got, want) {
                (Ok(job), Ok(w)) => assert_eq!(job.argv.join(" "), words(w).join(" "), "{cmd}"),
                (Err(e), Err(w)) => assert!(e.0.contains(w), "{cmd}: {e}"),
                (got, want) => panic!("{cmd}: got {got:?}, want {want:?}"),
            }
        }
        // Plain mode is as it was: the preprocessor's options are refused.
        assert!(rewrite(&words("gcc -include cfg.h -c x.c"), |i| i.into(), "o", &[]).is_err());
        assert_eq!(
            rewrite(&words("gcc -c x.c"), |i| i.into(), "o", &[])
                .unwrap()
                .deps,
            None
        );
    }

    #[test]
    fn directives_that_open_files_are_refused() {
        let refused: &[&[u8]] = &[
            b"#include \"/etc/passwd\"\n",
            b"int x;\n  #  include <shadow>\n",
            b"#include_next <x>\n",
            b"#import \"x\"\n",
            b"#embed \"/etc/passwd\"\n",
            b"%:include \"x\"\n",
            b"??=include \"x\"\n",
            b"#inc\\\nlude \"x\"\n",
            b"/* c */ # /* c */ include \"x\"\n",
            b"#\\\r\ninclude \"x\"\n",
            // A splice after trailing blanks.
            b"#inc\\   \nlude \"x\"\n",
            b"#\\ \t\ninclude \"x\"\n",
            // Trigraphs: ??/ is a backslash, ??= a hash.
            b"#inc??/\nlude \"x\"\n",
            b"??=inc??/  \nlude \"x\"\n",
            // A raw string whose line starts like a comment hides nothing.
            b"const char *s = R\"x(\n/*\n)x\";\n#include \"/etc/passwd\"\n// */\n",
            // A comment spanning lines hides no directive inside it either.
            b"/* start\n#include \"x\"\n*/\n",
            // Assembler directives that read files, however written.
            b"asm(\".pushsection .rodata\\n.incbin \\\"/etc/passwd\\\"\\n.popsection\");\n",
            b"asm(\".INCBIN \\\"/etc/passwd\\\"\");\n",
            b"asm(\".inc\\\nbin \\\"/etc/passwd\\\"\");\n",
            b"asm(\".include \\\"/etc/passwd\\\"\");\n",
            b"__asm__(\" .Include \\\"x\\\"\");\n",
            // Probes and pragmas that open files.
            b"#if __has_include(\"/etc/shadow\")\n#endif\n",
            b"int x = __has_embed(\"/etc/shadow\");\n",
            b"#pragma GCC dependency \"/etc/passwd\"\n",
            b"#pragma GCC pch_preprocess \"x.gch\"\n",
            b"#pragma include_alias(\"a.h\", \"/etc/passwd\")\n",
            b"#pragma clang include_instead(<x.h>)\n",
        ];
        for src in refused {
            assert!(
                check_preprocessed(src).is_err(),
                "{:?}",
                String::from_utf8_lossy(src)
            );
        }
        let err = check_preprocessed(b"int a;\nint b;\n#include \"x\"\n").unwrap_err();
        assert!(err.0.contains("line 3"), "{err}");
        let err = check_preprocessed(b"int a;\\\n\nasm(\".inc\\\nbin \\\"x\\\"\");\n").unwrap_err();
        assert!(err.0.contains("line 3") && err.0.contains(".incbin"), "{err}");
        let fine: &[&[u8]] = &[
            b"# 1 \"x.c\"\n# 1 \"<built-in>\"\nint x;\n",
            b"#pragma once\n#pragma GCC diagnostic push\n",
            b"#define A 1\n#line 4 \"x.c\"\n#ident \"v\"\n",
            b"char *s = \"#include <x>\";\n",
            b"int includes;\n",
            b"asm(\"nop\");\nasm volatile(\".p2align 4\");\n",
            b"# 1 \"/usr/include/stdio.h\" 1 3 4\n#pragma pack(1)\n",
            b"int a = 1; /* #include \"x\" in a comment mid-line */\n",
            b"char *t = \"??/\";\n",
            b"",
            b"\\",
        ];
        for src in fine {
            assert_eq!(
                check_preprocessed(src),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(src)
            );
        }
    }
}
