/*!
The one table of compiler flags distcc-rs knows, sorted by name (a test keeps
it so). Each row says how the flag is written and what the server does with
it. A flag the table does not know is refused by the server: a daemon that
runs commands for the network allows what it understands, nothing else.
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    pub name: &'static str,
    pub form: Form,
    pub server: Server,
}

const fn f(name: &'static str, form: Form, server: Server) -> Flag {
    Flag { name, form, server }
}

use Form::*;
use Server::*;

const RUNS_CODE: &str = "it makes the compiler load or run a program chosen by the client";
const READS_FILE: &str = "it makes the compiler read a file on the server chosen by the client";
const WRITES_FILE: &str = "it makes the compiler write a file at a path chosen by the client";
const PREPROCESS: &str = "preprocessing and dependency output happen on the client, not the server";
const PROFILE: &str =
    "profiling reads and writes data files at the client's paths; it must run locally";
const NATIVE: &str = "'native' would mean the server's CPU, not the client's";

/// Sorted by `name` (byte order).
pub static FLAGS: &[Flag] = &[
    f("--coverage", Exact, Refuse(PROFILE)),
    f("--param", Separate, Keep),
    f("--param=", Prefix, Keep),
    f("--specs", Prefix, Refuse(RUNS_CODE)),
    f("--sysroot", Prefix, Refuse(READS_FILE)),
    f("--target=", Prefix, Keep),
    f("-B", JoinedOrSeparate, Refuse(RUNS_CODE)),
    f("-D", JoinedOrSeparate, Keep),
    f("-E", Exact, Refuse(PREPROCESS)),
    f("-I", JoinedOrSeparate, Keep),
    f("-M", Prefix, Refuse(PREPROCESS)),
    f("-O", Prefix, Keep),
    f("-S", Exact, Compile),
    f("-U", JoinedOrSeparate, Keep),
    f("-W", Prefix, Keep),
    f("-Wa,", Prefix, Assembler),
    f("-Wl,", Prefix, Keep),
    f("-Wp,", Prefix, Refuse(PREPROCESS)),
    f("-Xassembler", Separate, Assembler),
    f("-Xclang", Separate, Forwarded),
    f("-Xlinker", Separate, Keep),
    f("-Xpreprocessor", Separate, Refuse(PREPROCESS)),
    f("-ansi", Exact, Keep),
    f("-arch", Separate, Keep),
    f("-aux-info", Separate, Refuse(WRITES_FILE)),
    f("-c", Exact, Compile),
    f("-dumpbase", Separate, Refuse(WRITES_FILE)),
    f("-dumpbase-ext", Separate, Refuse(WRITES_FILE)),
    f("-dumpdir", Separate, Refuse(WRITES_FILE)),
    f("-f", Prefix, KeepNoPaths),
    f("-fauto-profile", Prefix, Refuse(PROFILE)),
    f("-fcrash-diagnostics-dir", Prefix, Refuse(WRITES_FILE)),
    f("-fdebug-prefix-map=", Prefix, Keep),
    f("-fdirectives-only", Exact, Refuse(PREPROCESS)),
    f("-ffile-prefix-map=", Prefix, Keep),
    f("-fmacro-prefix-map=", Prefix, Keep),
    f("-fpass-plugin", Prefix, Refuse(RUNS_CODE)),
    f("-fplugin", Prefix, Refuse(RUNS_CODE)),
    f("-fprofile-", Prefix, Refuse(PROFILE)),
    f("-ftest-coverage", Exact, Refuse(PROFILE)),
    f("-g", Prefix, Keep),
    f(
        "-gsplit-dwarf",
        Prefix,
        Refuse("split DWARF writes a second output file that distcc cannot return"),
    ),
    f("-idirafter", JoinedOrSeparate, Keep),
    f("-imacros", JoinedOrSeparate, Refuse(READS_FILE)),
    f("-imultilib", Separate, Keep),
    f("-include", JoinedOrSeparate, Refuse(READS_FILE)),
    f("-iprefix", JoinedOrSeparate, Keep),
    f("-iquote", JoinedOrSeparate, Keep),
    f("-isysroot", JoinedOrSeparate, Refuse(READS_FILE)),
    f("-isystem", JoinedOrSeparate, Keep),
    f("-iwithprefix", JoinedOrSeparate, Keep),
    f("-iwithprefixbefore", JoinedOrSeparate, Keep),
    f("-m", Prefix, KeepNoPaths),
    f("-march=native", Exact, Refuse(NATIVE)),
    f("-mcpu=native", Exact, Refuse(NATIVE)),
    f("-mllvm", Separate, Forwarded),
    f("-mtune=native", Exact, Refuse(NATIVE)),
    f("-nostdinc", Exact, Keep),
    f("-nostdinc++", Exact, Keep),
    f("-o", JoinedOrSeparate, Output),
    f("-p", Exact, Keep),
    f("-pedantic", Prefix, Keep),
    f("-pg", Exact, Keep),
    f("-pipe", Exact, Keep),
    f("-pthread", Exact, Keep),
    f("-save-temps", Prefix, Refuse(WRITES_FILE)),
    f("-specs", Prefix, Refuse(RUNS_CODE)),
    f("-std=", Prefix, Keep),
    f("-target", Separate, Keep),
    f("-undef", Exact, Keep),
    f("-v", Exact, Keep),
    f("-w", Exact, Keep),
    f("-wrapper", Separate, Refuse(RUNS_CODE)),
    f("-x", JoinedOrSeparate, Language),
    f(
        "@",
        Prefix,
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
            ("-MD", "alone -M"),
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
