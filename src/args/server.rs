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

/// Refuses preprocessed text that would still make the compiler open or
/// look for a file. gcc ignores most directives in `.i` files, but clang
/// obeys `#include` even in `-x cpp-output` (and expands macros), both obey
/// `#pragma GCC dependency`, and the assembler obeys `.incbin` and
/// `.include` in inline asm, so a client could otherwise read server files
/// back through the object or diagnostics, or learn which exist. The
/// daemon's sandbox is the first defence; this scan is the second, and errs
/// towards refusing (the client then compiles locally, which is also right:
/// such files are the client's). It does not parse comments or strings,
/// which is what let raw strings hide directives before:
/// - a directive may start at every physical line start (`\n` or a lone
///   `\r`, as gcc and clang both end lines) and after every `*/`, after
///   blanks, NULs and non-ASCII bytes (a BOM): all things clang skips;
/// - a line splice (a backslash or `??/`, blanks, a newline) or a comment
///   over lines where a directive's name or a `#define`/`#pragma` line
///   could be is refused rather than followed;
/// - `#if`/`#elif` (which can test `__has_include`, however spelled) and
///   token pasting in a `#define` (which can build `_Pragma` or
///   `__has_include` out of pieces) are refused: real preprocessor output
///   has no conditionals, and pastes only with `-dD`/`-g3`;
/// - `incbin`, `.include` (in any case), `__has_include`, `__has_embed`
///   and a C++20 header-unit `import "file"` anywhere, and a `_Pragma` in a
///   file that has a pragma word that opens files anywhere, are refused.
///
/// Escapes, string concatenation and macros can still spell an assembler
/// directive inside an asm string, and line markers name files gcc quotes
/// in diagnostics: only the sandbox stops those.
pub fn check_preprocessed(src: &[u8]) -> Result<(), Refusal> {
    check_anywhere(src)?;
    check_directives(src)
}

/// Directive names that open a file.
const OPENS_FILES: &[&[u8]] = &[
    b"include",
    b"include_next",
    b"import",
    b"embed",
    b"__include_macros",
];

/// Words of pragmas that read or look for a file (`GCC dependency`, `clang
/// dependency`, `GCC pch_preprocess`, `include_alias`, `clang
/// include_instead`, `hdrstop`, `clang module load`), or that look up
/// module maps or crash the compiler on purpose (`clang __debug`).
const PRAGMA_WORDS: &[&[u8]] = &[
    b"dependency",
    b"include_alias",
    b"include_instead",
    b"pch_preprocess",
    b"hdrstop",
    b"module",
    b"__debug",
];

fn check_anywhere(src: &[u8]) -> Result<(), Refusal> {
    const ANYWHERE: &[(&[u8], &str)] = &[
        (
            b"incbin",
            "the assembler directive .incbin: it reads a file, and files are on the client; compile locally",
        ),
        (
            b".include",
            "the assembler directive .include: it reads a file, and files are on the client; compile locally",
        ),
        (
            b"__has_include",
            "__has_include: it looks for a file, and files are on the client only",
        ),
        (
            b"__has_embed",
            "__has_embed: it looks for a file, and files are on the client only",
        ),
    ];
    let joined = unspliced(src);
    let line = |pos| line_at(src, original_index(src, pos));
    if let Some((pos, what)) = find_first_ignore_case(&joined, ANYWHERE) {
        return refuse(format!("preprocessed input line {} has {what}", line(pos)));
    }
    // A `_Pragma`'s text is a string, maybe built by a macro from words
    // anywhere in the file, so any pragma word anywhere counts.
    let mut operator = None;
    let mut word = None;
    for w in joined.split(|&c| !is_ident(c)) {
        let pos = w.as_ptr() as usize - joined.as_ptr() as usize;
        if w == b"_Pragma" || w == b"__pragma" {
            operator = operator.or(Some((pos, w)));
        } else if PRAGMA_WORDS.contains(&w) {
            word = word.or(Some((pos, w)));
        } else if w == b"import" && header_unit_follows(&joined[pos + w.len()..]) {
            return refuse(format!(
                "preprocessed input line {} imports a header unit: it opens a file, and files are on the client only",
                line(pos)
            ));
        }
        if let (Some((op, o)), Some((at, w))) = (operator, word) {
            return refuse(format!(
                "preprocessed input line {} has {} and line {} the pragma word '{}': the pragma could open a file, \
                 and files are on the client only",
                line(op),
                String::from_utf8_lossy(o),
                line(at),
                String::from_utf8_lossy(w)
            ));
        }
    }
    Ok(())
}

/// Whether what follows `import` could be a header name (`"x.h"`, `<x.h>`),
/// or a comment that could hide one.
fn header_unit_follows(rest: &[u8]) -> bool {
    let next = rest.iter().find(|c| !c.is_ascii_whitespace() && **c != b'\x0b');
    matches!(next, Some(b'"' | b'<' | b'/'))
}

fn check_directives(src: &[u8]) -> Result<(), Refusal> {
    let mut clean_to = 0;
    let mut candidate = Some(0);
    let mut i = 0;
    loop {
        if let Some(p) = candidate.take() {
            check_directive_at(src, p, &mut clean_to)?;
        }
        let Some(&c) = src.get(i) else {
            return Ok(());
        };
        i += 1;
        if c == b'\n' || c == b'\r' {
            candidate = Some(i);
        } else if c == b'*' {
            // After a comment a directive may start as at a line start:
            // `/* ... */ #include`, even when the comment spans lines.
            if let Some(j) = after_slash(src, i) {
                candidate = Some(j);
                i = j;
            }
        }
    }
}

/// If the compiler reads a `/` at `i` (maybe after line splices), where it ends.
fn after_slash(src: &[u8], mut i: usize) -> Option<usize> {
    while let Some(len) = splice_at(src, i) {
        i += len;
    }
    (src.get(i) == Some(&b'/')).then_some(i + 1)
}

/// Checks a possible directive at `p`, a line start or just after a `*/`.
/// `clean_to` is where the last `#define` line checked to its end ended:
/// later candidates on that line are in its body, not directives, and
/// checking each again would make the scan quadratic.
fn check_directive_at(src: &[u8], p: usize, clean_to: &mut usize) -> Result<(), Refusal> {
    let at = |what: &str| Refusal(format!("preprocessed input line {} {what}", line_at(src, p)));
    let spliced = "splices a possible directive over lines: the scan does not follow it";
    let mut i = p;
    while i < src.len() && is_blank(src[i]) {
        i += 1;
    }
    if splice_at(src, i).is_some() {
        return Err(at(spliced));
    }
    let Some(len) = hash_len(src, i) else {
        if src[i..].starts_with(b"%") && splice_at(src, i + 1).is_some() {
            return Err(at(spliced));
        }
        return Ok(());
    };
    let Some(i) = skip_blank_on_line(src, i + len) else {
        return Err(at(
            "splices or continues a possible directive over lines: the scan does not follow it",
        ));
    };
    let end = ident_end(src, i);
    if splice_at(src, end).is_some() {
        return Err(at(spliced));
    }
    if src.get(end) == Some(&b'\\') {
        return Err(at("spells a directive's name with an escape"));
    }
    let name = &src[i..end];
    let shown = String::from_utf8_lossy(name);
    if OPENS_FILES.contains(&name) {
        return Err(at(&format!(
            "contains #{shown}: files are opened on the client only"
        )));
    }
    if name == b"if" || name == b"elif" {
        return Err(at(&format!(
            "has #{shown}: preprocessed text has no conditionals, and one can look for a file (__has_include)"
        )));
    }
    if name == b"pragma" {
        check_pragma(src, end).map_err(|what| at(&what))?;
    }
    if name == b"define" && end >= *clean_to {
        *clean_to = check_define(src, end).map_err(|what| at(&what))?;
    }
    Ok(())
}

/// Checks a `#pragma`'s first two words, where the pragmas that open files
/// have theirs (clang and gcc do not expand macros there); the error says why not.
fn check_pragma(src: &[u8], mut i: usize) -> Result<(), String> {
    for _ in 0..2 {
        i = skip_blank_on_line(src, i)
            .ok_or("splices or continues a #pragma over lines: the scan does not follow it")?;
        let end = ident_end(src, i);
        let word = &src[i..end];
        if PRAGMA_WORDS.contains(&word) {
            return Err(format!(
                "has #pragma {}, which can open or look for a file: files are on the client only",
                String::from_utf8_lossy(word)
            ));
        }
        if word.is_empty() {
            break;
        }
        if splice_at(src, end).is_some() {
            return Err("splices a #pragma over lines: the scan does not follow it".into());
        }
        i = end;
    }
    Ok(())
}

/// Checks the rest of a `#define` line, which the scan must see whole, and
/// returns where it ends; the error says why not.
fn check_define(src: &[u8], mut i: usize) -> Result<usize, String> {
    while let Some(&c) = src.get(i) {
        if c == b'\n' || c == b'\r' {
            break;
        }
        if splice_at(src, i).is_some() {
            return Err("splices a #define over lines: the scan does not follow it".into());
        }
        if src[i..].starts_with(b"/*") {
            i = comment_end_on_line(src, i + 2)
                .ok_or("has a #define that goes on in a comment over lines: the scan does not follow it")?;
            continue;
        }
        match hash_len(src, i) {
            Some(len) if hash_len(src, i + len).is_some() => {
                return Err(
                    "has a #define that pastes tokens (##): a macro could build a name the scan cannot see \
                            (_Pragma, __has_include)"
                        .into(),
                );
            }
            Some(len) => i += len,
            None => i += 1,
        }
    }
    Ok(i)
}

/// Skips blanks and comments that end on this line; None at a line splice
/// or a comment that goes on to the next line.
fn skip_blank_on_line(src: &[u8], mut i: usize) -> Option<usize> {
    loop {
        if splice_at(src, i).is_some() || (src.get(i) == Some(&b'/') && splice_at(src, i + 1).is_some()) {
            return None;
        }
        if src.get(i).is_some_and(|&c| is_blank(c)) {
            i += 1;
        } else if src[i..].starts_with(b"/*") {
            i = comment_end_on_line(src, i + 2)?;
        } else {
            return Some(i);
        }
    }
}

/// Where a comment whose text starts at `i` ends, if it ends on this line.
fn comment_end_on_line(src: &[u8], mut i: usize) -> Option<usize> {
    while let Some(&c) = src.get(i) {
        match c {
            b'\n' | b'\r' => return None,
            b'*' if src.get(i + 1) == Some(&b'/') => return Some(i + 2),
            _ => i += 1,
        }
    }
    None
}

/// The length of a `#` at `i`, however spelled (`#`, `%:`, `??=`).
fn hash_len(src: &[u8], i: usize) -> Option<usize> {
    let rest = src.get(i..)?;
    if rest.starts_with(b"#") {
        Some(1)
    } else if rest.starts_with(b"%:") {
        Some(2)
    } else if rest.starts_with(b"??=") {
        Some(3)
    } else {
        None
    }
}

/// What clang skips before a directive's `#`; NUL and non-ASCII bytes (a
/// BOM, Unicode spaces) are counted too, to err on the side of refusing.
fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\x0b' | b'\x0c' | b'\0') || c >= 0x80
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn ident_end(src: &[u8], mut i: usize) -> usize {
    while src.get(i).is_some_and(|&c| is_ident(c)) {
        i += 1;
    }
    i
}

/// The line of byte `i`, counting lines as the compilers do (`\n`, `\r\n`
/// or a lone `\r`).
fn line_at(src: &[u8], i: usize) -> usize {
    let text = &src[..i.min(src.len())];
    let lone_crs = text
        .iter()
        .enumerate()
        .filter(|&(k, &c)| c == b'\r' && src.get(k + 1) != Some(&b'\n'))
        .count();
    1 + text.iter().filter(|&&c| c == b'\n').count() + lone_crs
}

/// The text with line splices removed (translation phase 2); borrowed when
/// there are none, as in almost every preprocessed file.
fn unspliced(src: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let starts_splice = |(i, &c): (usize, &u8)| (c == b'\\' || c == b'?') && splice_at(src, i).is_some();
    if !src.iter().enumerate().any(starts_splice) {
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

/// The first place any of `words` is, in any case, and what it stands for.
/// One pass, a table look-up a byte: the input may be hundreds of MiB.
fn find_first_ignore_case<'a>(hay: &[u8], words: &[(&[u8], &'a str)]) -> Option<(usize, &'a str)> {
    let mut starts = [false; 256];
    for (w, _) in words {
        starts[usize::from(w[0].to_ascii_lowercase())] = true;
        starts[usize::from(w[0].to_ascii_uppercase())] = true;
    }
    (0..hay.len())
        .filter(|&i| starts[usize::from(hay[i])])
        .find_map(|i| {
            let (_, what) = words
                .iter()
                .find(|(w, _)| hay[i..].get(..w.len()).is_some_and(|h| h.eq_ignore_ascii_case(w)))?;
            Some((i, *what))
        })
}

/// A line splice at `i`: a backslash or the trigraph `??/`, any blanks (gcc
/// and clang accept them, with a warning), then a newline, which for clang
/// may be `\n`, `\r`, `\r\n` or `\n\r`.
fn splice_at(src: &[u8], i: usize) -> Option<usize> {
    let rest = src.get(i..)?;
    let mut j = if rest.starts_with(b"\\") {
        i + 1
    } else if rest.starts_with(b"??/") {
        i + 3
    } else {
        return None;
    };
    while j < src.len() && matches!(src[j], b' ' | b'\t' | b'\x0b' | b'\x0c' | b'\0') {
        j += 1;
    }
    match src.get(j..) {
        Some([b'\r', b'\n', ..] | [b'\n', b'\r', ..]) => Some(j + 2 - i),
        Some([b'\n' | b'\r', ..]) => Some(j + 1 - i),
        _ => None,
    }
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

    /// One row per input: `Some(fragment)` if it must be refused with a
    /// message holding `fragment`, `None` if it must be accepted.
    const SCAN: &[(&[u8], Option<&str>)] = &[
        // Directives that open files, however the hash is spelled.
        (b"#include \"/etc/passwd\"\n", Some("line 1 contains #include")),
        (
            b"int x;\n  #  include <shadow>\n",
            Some("line 2 contains #include"),
        ),
        (
            b"int a;\nint b;\n#include \"x\"\n",
            Some("line 3 contains #include"),
        ),
        (b"#include_next <x>\n", Some("#include_next")),
        (b"#import \"x\"\n", Some("import")),
        (b"#embed \"/etc/passwd\"\n", Some("#embed")),
        (b"#__include_macros \"x\"\n", Some("#__include_macros")),
        (b"%:include \"x\"\n", Some("#include")),
        (b"??=include \"x\"\n", Some("#include")),
        (b"/* c */ # /* c */ include \"x\"\n", Some("#include")),
        (b"#\\u0069nclude \"x\"\n", Some("with an escape")),
        // Line splices, also after blanks, through ??/, and with a lone CR.
        (b"#inc\\\nlude \"x\"\n", Some("line 1 splices")),
        (b"#\\\r\ninclude \"x\"\n", Some("splices")),
        (b"#inc\\   \nlude \"x\"\n", Some("splices")),
        (b"#\\ \t\ninclude \"x\"\n", Some("splices")),
        (b"#inc\\\rlude \"x\"\n", Some("splices")),
        (b"#inc??/\nlude \"x\"\n", Some("splices")),
        (b"??=inc??/  \nlude \"x\"\n", Some("splices")),
        (b"  \\\n#include \"x\"\n", Some("line 1 splices")),
        (b"%\\\n:include \"x\"\n", Some("splices")),
        (b"#/\\\n* c */include \"x\"\n", Some("splices")),
        // A raw string or comment hides nothing: every line start counts,
        // and so does the end of every comment.
        (
            b"const char *s = R\"x(\n/*\n)x\";\n#include \"/etc/passwd\"\n// */\n",
            Some("line 4 contains #include"),
        ),
        (
            b"/* start\n#include \"x\"\n*/\n",
            Some("line 2 contains #include"),
        ),
        (b"/*\n*/ #include \"x\"\n", Some("line 2 contains #include")),
        (b"# /*\n*/ include \"x\"\n", Some("line 1 splices or continues")),
        // Not a directive to the compiler, but the scan can't tell: refused.
        (b"char *s = \"*/#include <x>\";\n", Some("#include")),
        // Line ends and what clang skips before the hash.
        (b"int x;\r#include \"x\"\n", Some("line 2 contains #include")),
        (b"\xef\xbb\xbf#include \"x\"\n", Some("#include")),
        (b"\0#include \"x\"\n", Some("#include")),
        (b"\xc2\xa0#include \"x\"\n", Some("#include")),
        // Assembler directives that read files, however written.
        (
            b"asm(\".pushsection .rodata\\n.incbin \\\"/etc/passwd\\\"\\n.popsection\");\n",
            Some(".incbin: it reads a file, and files are on the client; compile locally"),
        ),
        (b"asm(\".INCBIN \\\"/etc/passwd\\\"\");\n", Some(".incbin")),
        (b"asm(\".inc\\\nbin \\\"/etc/passwd\\\"\");\n", Some(".incbin")),
        (b"asm(\".include \\\"/etc/passwd\\\"\");\n", Some(".include")),
        (b"__asm__(\" .Include \\\"x\\\"\");\n", Some(".include")),
        (
            b"int a;\\\n\nasm(\".inc\\\nbin \\\"x\\\"\");\n",
            Some("line 3 has the assembler directive .incbin"),
        ),
        // Looking for files: __has_include and kin, and the conditionals
        // and token pastes that could spell them.
        (
            b"#if __has_include(\"/etc/shadow\")\n#endif\n",
            Some("__has_include"),
        ),
        (b"int x = __has_include_next(\"x\");\n", Some("__has_include")),
        (b"int x = __has_embed(\"/etc/shadow\");\n", Some("__has_embed")),
        (b"int x;\n#if 1\nint y;\n#endif\n", Some("line 2 has #if")),
        (b"#elif 1\n", Some("#elif")),
        (
            b"#define C(a,b) a##b\n#if C(__has_,include)(\"/etc/passwd\")\n#endif\n",
            Some("line 1 has a #define that pastes tokens"),
        ),
        (b"#define C(a, b) a %:%: b\n", Some("pastes tokens")),
        (b"#define C(a, b) a ??=## b\n", Some("pastes tokens")),
        (b"#define C(a, b) a /*\n*/ ## b\n", Some("a comment over lines")),
        (b"#define C(a, b) a \\\n ## b\n", Some("splices a #define")),
        // gcc -g3 (-dD) output has pastes: refused, compiled locally.
        (b"#define __CONCAT(x,y) x ## y\n", Some("pastes tokens")),
        // Pragmas that open or look for files.
        (
            b"#pragma GCC dependency \"/etc/passwd\"\n",
            Some("#pragma dependency"),
        ),
        (
            b"#pragma clang dependency \"/etc/passwd\"\n",
            Some("#pragma dependency"),
        ),
        (
            b"#pragma GCC pch_preprocess \"x.gch\"\n",
            Some("#pragma pch_preprocess"),
        ),
        (
            b"#pragma include_alias(\"a.h\", \"/etc/passwd\")\n",
            Some("#pragma include_alias"),
        ),
        (
            b"#pragma clang include_instead(<x.h>)\n",
            Some("#pragma include_instead"),
        ),
        (b"#pragma hdrstop(\"x.pch\")\n", Some("#pragma hdrstop")),
        (b"#pragma clang module load \"x.pcm\"\n", Some("#pragma module")),
        (b"#pragma clang __debug crash\n", Some("#pragma __debug")),
        (
            b"%:pragma /* c */ GCC /* c */ dependency \"x\"\n",
            Some("#pragma dependency"),
        ),
        (b"#pragma GCC /*\n*/ dependency \"x\"\n", Some("over lines")),
        (b"#pragma GCC dep\\\nendency \"x\"\n", Some("over lines")),
        // gcc does not splice a .i: the second line is a pragma to it.
        (
            b"int x; \\\n#pragma GCC dependency \"x\"\n",
            Some("line 2 has #pragma dependency"),
        ),
        (
            b"_Pragma(\"GCC dependency \\\"/etc/passwd\\\"\")\n",
            Some("line 1 has _Pragma and line 1 the pragma word 'dependency'"),
        ),
        (
            b"#define P(x) _Pragma(#x)\nP(GCC dependency \"/etc/passwd\")\n",
            Some("_Pragma and line 2 the pragma word 'dependency'"),
        ),
        (b"__pragma(clang module load \"x\")\n", Some("__pragma")),
        // C++20 header units are files.
        (b"import \"/etc/passwd\";\n", Some("imports a header unit")),
        (b"export import </etc/passwd>;\n", Some("imports a header unit")),
        (b"import /* c */ \"x.h\";\n", Some("imports a header unit")),
        // What real preprocessed output has must pass.
        (b"# 1 \"x.c\"\n# 1 \"<built-in>\"\nint x;\n", None),
        (
            b"# 1 \"/usr/include/stdio.h\" 1 3 4\nint printf(const char *, ...);\n",
            None,
        ),
        (b"#pragma once\n#pragma GCC diagnostic push\n", None),
        (
            b"#pragma clang diagnostic ignored \"-Wnon-modular-include-in-module\"\n",
            None,
        ),
        (b"#pragma pack(1)\n#pragma GCC visibility push(default)\n", None),
        (
            b"#pragma omp parallel for\n#pragma message(\"dependency\")\n",
            None,
        ),
        (
            b"#define A 1\n#define S(x) #x\n#line 4 \"x.c\"\n#ident \"v\"\n#undef A\n",
            None,
        ),
        (b"#ifdef X\n#endif\n", None),
        (b"char *s = \"#include <x>\";\n", None),
        (b"int a = 1; /* #include \"x\" in a comment mid-line */\n", None),
        (b"int includes, module, dependency;\n", None),
        (b"asm(\"nop\");\nasm volatile(\".p2align 4\");\n", None),
        (b"extern int f(void) __asm__ (\"\" \"__isoc99_fscanf\");\n", None),
        (b"char *t = \"??/\";\n", None),
        (b"int x; \\\n int y;\n", None),
        (b"import std;\nexport module m;\n", None),
        (b"int \xc3\xa9t\xc3\xa9;\r\nint y;\r\n", None),
        (b"", None),
        (b"\\", None),
        (b"\n\r\n\r", None),
    ];

    #[test]
    fn the_directive_scan_refuses_what_can_open_a_file_and_passes_real_output() {
        let wrong: Vec<String> = SCAN
            .iter()
            .filter_map(|(src, want)| {
                let got = check_preprocessed(src);
                let right = match want {
                    Some(fragment) => matches!(&got, Err(Refusal(m)) if m.contains(fragment)),
                    None => got.is_ok(),
                };
                (!right).then(|| format!("{:?}: want {want:?}, got {got:?}", String::from_utf8_lossy(src)))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Inputs the daemon gets are up to hundreds of MiB: the scan must stay
    /// linear however the text is made to make it look back or ahead.
    #[test]
    fn the_directive_scan_is_linear_on_hostile_shapes() {
        let shapes: &[&[u8]] = &[
            b"/*\n",
            b"  \\\n",
            b"*/#define x /**/",
            b"import      ",
            b"*/ /* */ /* */",
        ];
        for shape in shapes {
            let src = shape.repeat((1 << 20) / shape.len());
            let started = std::time::Instant::now();
            let _ = check_preprocessed(&src);
            let took = started.elapsed();
            assert!(
                took < std::time::Duration::from_secs(20),
                "{:?} x {}: {took:?}",
                String::from_utf8_lossy(shape),
                src.len() / shape.len()
            );
        }
    }
}
