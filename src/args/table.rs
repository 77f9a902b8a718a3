/*!
The one table of compiler flags distcc-rs knows, sorted by name (a test keeps
it so). Each row says how the flag is written, what the client does with it
and what the server does with it. A flag the table does not know keeps a
compile local on the client and is refused by the server: a daemon that runs
commands for the network allows what it understands, nothing else.
*/

/// How a flag and its value are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The whole word, nothing more (`-c`).
    Exact,
    /// Any word starting with the name (`-Wall` under `-W`, `-fplugin=x.so`).
    Prefix,
    /// The whole word; the next word is its value (`-Xclang -foo`).
    Separate,
    /// `-oX` or `-o X`.
    JoinedOrSeparate,
}

/// What the server does with a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// Passed to the compiler as it is.
    Keep,
    /// Passed on unless a `=value` names a path or an `@file`: the compiler
    /// would read or write that path on the server.
    KeepNoPaths,
    /// The job is refused, for this reason.
    Refuse(&'static str),
    /// `-c` / `-S`: what makes this a compile distcc can do.
    Compile,
    /// `-o`: replaced by the job's own output file.
    Output,
    /// `-x`: rewritten to the preprocessed form of the language.
    Language,
    /// `-Wa,…` / `-Xassembler`: assembler options, checked one by one.
    Assembler,
    /// `-Xclang` / `-mllvm`: options for a sub-tool, checked for plugins and paths.
    Forwarded,
    /// `--sysroot`/`-isysroot`: accepted only for a directory the
    /// administrator listed (`--allow-sysroot`).
    Sysroot,
}

/// What the client does with a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// Given to the local preprocessor and sent to the server.
    Both,
    /// Given to the local preprocessor only: it is about finding or defining
    /// what gets preprocessed, so the server has no use for it.
    CppOnly,
    /// The compile stays on this machine, for this reason.
    Local(&'static str),
    /// `-c` / `-S`.
    CompileMode,
    /// `-o`.
    OutputFile,
    /// `-x`.
    Lang,
    /// `-MD`, `-MMD`: a dependency file is written by the local preprocessor.
    DepsWanted,
    /// `-MF`: where the dependency file goes.
    DepsFile,
    /// `-MT`, `-MQ`: its target.
    DepsTarget,
    /// Other dependency options for the preprocessor (`-MP`, `-MG`).
    DepsOther,
    /// `-march=native` and friends: resolved into explicit flags.
    Native,
    /// Sent to the server after the same check the server makes.
    Checked,
    /// `-Wp,…`: given verbatim to the preprocessor (which then names a
    /// dependency file's target just as in a local compile), unless it asks
    /// for preprocessing only.
    PassToCpp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    pub name: &'static str,
    pub form: Form,
    pub client: Client,
    pub server: Server,
    /// What the server does with it in pump mode, where it preprocesses.
    pub pump: Pump,
}

/// What the server does with a flag in pump mode (protocol 3), where the
/// compiler preprocesses the files the client sent under the job's root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pump {
    /// As in plain mode (the `server` column).
    AsServer,
    /// Passed as it is: preprocessor options plain mode has no use for.
    Keep,
    /// A path option (`-I`, `-include` …): an absolute path is taken under
    /// the job's root, where the client's files are; a relative one is left
    /// to resolve from the client's directory there.
    Path,
    /// `-MF`: dropped with its value; the server writes the dependency file
    /// where it chooses and returns it.
    DepsFile,
    /// `-MT`: the first is dropped and becomes the dependency file's target
    /// (distcc 3.4's rule: gcc appends targets, distcc replaces).
    DepsTarget,
    /// `-x`: the source language as given (the server preprocesses).
    SourceLanguage,
}

const fn f(name: &'static str, form: Form, client: Client, server: Server) -> Flag {
    Flag {
        name,
        form,
        client,
        server,
        pump: Pump::AsServer,
    }
}

impl Flag {
    const fn pump(self, pump: Pump) -> Flag {
        Flag { pump, ..self }
    }
}

use Client::*;
use Form::*;
use Server::*;

const RUNS_CODE: &str = "it makes the compiler load or run a program chosen by the client";
const READS_FILE: &str = "it makes the compiler read a file on the server chosen by the client";
const WRITES_FILE: &str = "it makes the compiler write a file at a path chosen by the client";
const PREPROCESS: &str = "preprocessing and dependency output happen on the client, not the server";
const PROFILE: &str = "profiling reads and writes data files at the client's paths; it must run locally";
const NATIVE: &str = "'native' would mean the server's CPU, not the client's";
const DUMPS: &str = "dump files are written where the compiler runs";
const SPLIT_DWARF: &str = "split DWARF writes a second output file that distcc cannot return";

/// Sorted by `name` (byte order).
pub static FLAGS: &[Flag] = &[
    f("--coverage", Exact, Local(PROFILE), Refuse(PROFILE)),
    f("--param", Separate, Both, Keep),
    f("--param=", Prefix, Both, Keep),
    f("--specs", Prefix, Local(RUNS_CODE), Refuse(RUNS_CODE)),
    f("--sysroot", JoinedOrSeparate, CppOnly, Sysroot),
    f("--target=", Prefix, Both, Keep),
    f("-B", JoinedOrSeparate, Local(RUNS_CODE), Refuse(RUNS_CODE)),
    f("-D", JoinedOrSeparate, CppOnly, Keep).pump(Pump::Keep),
    f("-E", Exact, Local("-E only preprocesses"), Refuse(PREPROCESS)),
    f("-I", JoinedOrSeparate, CppOnly, Keep).pump(Pump::Path),
    f("-L", JoinedOrSeparate, CppOnly, Keep),
    f(
        "-M",
        Prefix,
        Local("-M and -MM only preprocess"),
        Refuse(PREPROCESS),
    ),
    f("-MD", Exact, DepsWanted, Refuse(PREPROCESS)).pump(Pump::Keep),
    f("-MF", JoinedOrSeparate, DepsFile, Refuse(PREPROCESS)).pump(Pump::DepsFile),
    f("-MG", Exact, DepsOther, Refuse(PREPROCESS)).pump(Pump::Keep),
    f("-MMD", Exact, DepsWanted, Refuse(PREPROCESS)).pump(Pump::Keep),
    f("-MP", Exact, DepsOther, Refuse(PREPROCESS)).pump(Pump::Keep),
    f("-MQ", JoinedOrSeparate, DepsTarget, Refuse(PREPROCESS)).pump(Pump::Keep),
    f("-MT", JoinedOrSeparate, DepsTarget, Refuse(PREPROCESS)).pump(Pump::DepsTarget),
    f("-O", Prefix, Both, Keep),
    f("-S", Exact, CompileMode, Compile),
    f("-U", JoinedOrSeparate, CppOnly, Keep).pump(Pump::Keep),
    f("-W", Prefix, Both, Keep),
    f("-Wa,", Prefix, Checked, Assembler),
    f("-Wl,", Prefix, CppOnly, Keep),
    f("-Wp,", Prefix, PassToCpp, Refuse(PREPROCESS)),
    f("-Xassembler", Separate, Checked, Assembler),
    f("-Xclang", Separate, Checked, Forwarded),
    f("-Xlinker", Separate, CppOnly, Keep),
    f("-Xpreprocessor", Separate, CppOnly, Refuse(PREPROCESS)),
    f("-ansi", Exact, Both, Keep),
    f("-arch", Separate, Both, Keep),
    f("-aux-info", Separate, Local(WRITES_FILE), Refuse(WRITES_FILE)),
    f("-c", Exact, CompileMode, Compile),
    f("-dumpbase", Separate, Local(WRITES_FILE), Refuse(WRITES_FILE)),
    f("-dumpbase-ext", Separate, Local(WRITES_FILE), Refuse(WRITES_FILE)),
    f("-dumpdir", Separate, Local(WRITES_FILE), Refuse(WRITES_FILE)),
    f("-f", Prefix, Checked, KeepNoPaths),
    f("-fauto-profile", Prefix, Local(PROFILE), Refuse(PROFILE)),
    f(
        "-fcrash-diagnostics-dir",
        Prefix,
        Local(WRITES_FILE),
        Refuse(WRITES_FILE),
    ),
    f("-fdebug-compilation-dir=", Prefix, Both, Keep),
    f("-fdebug-prefix-map=", Prefix, Both, Keep),
    f("-fdirectives-only", Exact, CppOnly, Refuse(PREPROCESS)),
    f("-fdump-", Prefix, Local(DUMPS), Refuse(WRITES_FILE)),
    f("-ffile-prefix-map=", Prefix, Both, Keep),
    f("-fmacro-prefix-map=", Prefix, CppOnly, Keep),
    f("-fpass-plugin", Prefix, Local(RUNS_CODE), Refuse(RUNS_CODE)),
    f("-fplugin", Prefix, Local(RUNS_CODE), Refuse(RUNS_CODE)),
    f("-fprofile-", Prefix, Local(PROFILE), Refuse(PROFILE)),
    f(
        "-frepo",
        Exact,
        Local("-frepo needs the template repository beside the sources"),
        Refuse(WRITES_FILE),
    ),
    f("-ftest-coverage", Exact, Local(PROFILE), Refuse(PROFILE)),
    f("-g", Prefix, Both, Keep),
    f("-gsplit-dwarf", Prefix, Local(SPLIT_DWARF), Refuse(SPLIT_DWARF)),
    f("-idirafter", JoinedOrSeparate, CppOnly, Keep).pump(Pump::Path),
    f("-imacros", JoinedOrSeparate, CppOnly, Refuse(READS_FILE)).pump(Pump::Path),
    f("-imultilib", Separate, CppOnly, Keep),
    f("-include", JoinedOrSeparate, CppOnly, Refuse(READS_FILE)).pump(Pump::Path),
    f("-iprefix", JoinedOrSeparate, CppOnly, Keep).pump(Pump::Path),
    f("-iquote", JoinedOrSeparate, CppOnly, Keep).pump(Pump::Path),
    f("-isysroot", JoinedOrSeparate, CppOnly, Sysroot),
    f("-isystem", JoinedOrSeparate, CppOnly, Keep).pump(Pump::Path),
    f("-iwithprefix", JoinedOrSeparate, CppOnly, Keep).pump(Pump::Keep),
    f("-iwithprefixbefore", JoinedOrSeparate, CppOnly, Keep).pump(Pump::Keep),
    f("-l", JoinedOrSeparate, CppOnly, Keep),
    f("-m", Prefix, Checked, KeepNoPaths),
    f("-march=native", Exact, Native, Refuse(NATIVE)),
    f("-mcpu=native", Exact, Native, Refuse(NATIVE)),
    f("-mllvm", Separate, Checked, Forwarded),
    f("-mtune=native", Exact, Native, Refuse(NATIVE)),
    f("-no-pie", Exact, Both, Keep),
    f("-nostdinc", Exact, CppOnly, Keep),
    f("-nostdinc++", Exact, CppOnly, Keep),
    f("-nostdlib", Exact, Both, Keep),
    f("-o", JoinedOrSeparate, OutputFile, Output),
    f("-p", Exact, Both, Keep),
    f("-pedantic", Prefix, Both, Keep),
    f("-pg", Exact, Both, Keep),
    f("-pie", Exact, Both, Keep),
    f("-pipe", Exact, Both, Keep),
    f("-pthread", Exact, Both, Keep),
    f("-rdynamic", Exact, Both, Keep),
    f("-save-temps", Prefix, Local(WRITES_FILE), Refuse(WRITES_FILE)),
    f("-shared", Exact, Both, Keep),
    f("-specs", Prefix, Local(RUNS_CODE), Refuse(RUNS_CODE)),
    f("-static", Exact, Both, Keep),
    f("-std=", Prefix, Both, Keep),
    f("-stdlib=", Prefix, CppOnly, Keep),
    f("-target", Separate, Both, Keep),
    f("-trigraphs", Exact, CppOnly, Refuse(PREPROCESS)).pump(Pump::Keep),
    f("-undef", Exact, CppOnly, Keep),
    f("-v", Exact, Both, Keep),
    f("-w", Exact, Both, Keep),
    f("-wrapper", Separate, Local(RUNS_CODE), Refuse(RUNS_CODE)),
    f("-x", JoinedOrSeparate, Lang, Language).pump(Pump::SourceLanguage),
    f(
        "@",
        Prefix,
        Local("a response file that could not be read is left to the compiler"),
        Refuse("response files would be read on the server; expand them on the client"),
    ),
];

/// How a word matched the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match<'a> {
    /// A flag with no value, or a `Prefix` flag whose value (if any) is glued on.
    Alone(&'static Flag),
    /// A flag whose value is glued on (`-ofoo` gives `foo`).
    Joined(&'static Flag, &'a str),
    /// A flag whose value is the next word.
    NeedsNext(&'static Flag),
}

/// Looks `word` up: an exact name first, else the longest name it starts with.
pub fn lookup(word: &str) -> Option<Match<'_>> {
    if let Ok(i) = FLAGS.binary_search_by(|f| f.name.cmp(word)) {
        let flag = &FLAGS[i];
        return Some(match flag.form {
            Separate | JoinedOrSeparate => Match::NeedsNext(flag),
            Exact | Prefix => Match::Alone(flag),
        });
    }
    let flag = FLAGS
        .iter()
        .filter(|f| matches!(f.form, Prefix | JoinedOrSeparate) && word.starts_with(f.name))
        .max_by_key(|f| f.name.len())?;
    Some(match flag.form {
        JoinedOrSeparate => Match::Joined(flag, &word[flag.name.len()..]),
        _ => Match::Alone(flag),
    })
}

/// A flag word read against the table: its row and its value, glued on or
/// the next word (`separate`, which the caller then skips).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken<'a> {
    pub flag: &'static Flag,
    pub value: Option<&'a str>,
    pub separate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeError {
    /// Not in the table.
    Unknown,
    /// Takes a separate value, and there is no next word.
    NoValue,
}

/// Reads `word` (with `next`, the word after it) as the client and the
/// server both must: the one place a flag's value is found.
pub fn take<'a>(word: &'a str, next: Option<&'a str>) -> Result<Taken<'a>, TakeError> {
    Ok(match lookup(word).ok_or(TakeError::Unknown)? {
        Match::Alone(flag) => Taken {
            flag,
            value: None,
            separate: false,
        },
        Match::Joined(flag, v) => Taken {
            flag,
            value: Some(v),
            separate: false,
        },
        Match::NeedsNext(flag) => Taken {
            flag,
            value: Some(next.ok_or(TakeError::NoValue)?),
            separate: true,
        },
    })
}

impl Taken<'_> {
    /// Passes the flag on as it was written: one word, or two.
    pub fn push(&self, word: &str, out: &mut Vec<String>) {
        out.push(word.to_owned());
        if self.separate {
            out.push(self.value.unwrap_or_default().to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in FLAGS.windows(2) {
            assert!(
                w[0].name < w[1].name,
                "{} must sort before {}",
                w[0].name,
                w[1].name
            );
        }
    }

    #[test]
    fn lookup_table() {
        let name = |m: Option<Match>| match m {
            Some(Match::Alone(f)) => format!("alone {}", f.name),
            Some(Match::Joined(f, v)) => format!("joined {} {v}", f.name),
            Some(Match::NeedsNext(f)) => format!("next {}", f.name),
            None => "none".into(),
        };
        let cases = [
            ("-c", "alone -c"),
            ("-o", "next -o"),
            ("-ofoo.o", "joined -o foo.o"),
            ("-Wall", "alone -W"),
            ("-Wa,-al", "alone -Wa,"),
            ("-fplugin=evil.so", "alone -fplugin"),
            ("-fPIC", "alone -f"),
            ("-fprofile-use=x", "alone -fprofile-"),
            ("-march=native", "alone -march=native"),
            ("-march=x86-64-v3", "alone -m"),
            ("-mllvm", "next -mllvm"),
            ("-MD", "alone -MD"),
            ("-MFdeps.d", "joined -MF deps.d"),
            ("-MM", "alone -M"),
            ("-include", "next -include"),
            ("-includefoo.h", "joined -include foo.h"),
            ("-isystem/usr/x", "joined -isystem /usr/x"),
            ("-xc++", "joined -x c++"),
            ("@args.rsp", "alone @"),
            ("-print-prog-name=cc1", "none"),
            ("-gsplit-dwarf", "alone -gsplit-dwarf"),
            ("-g3", "alone -g"),
            ("foo.c", "none"),
        ];
        for (word, want) in cases {
            assert_eq!(name(lookup(word)), want, "{word}");
        }
    }
}
