/*!
The client's reading of a command line (distcc's `dcc_scan_args` and
`dcc_strip_local_args`, plus what they miss): can this compile be sent to a
server, and if so, what runs here (the preprocessor) and what is sent.

Pure: words in, a `Verdict` out. Response files are expanded by the caller, the
environment is not read, nothing is run.
*/

use super::filename;
use super::server::{check_assembler_option, check_forwarded, names_a_path};
use super::table::{self, Client, Server};

/// The languages distcc can compile remotely, after preprocessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    C,
    Cxx,
    ObjC,
    ObjCxx,
}

impl Lang {
    /// The name `-x` gives it before preprocessing.
    pub fn source_name(self) -> &'static str {
        match self {
            Lang::C => "c",
            Lang::Cxx => "c++",
            Lang::ObjC => "objective-c",
            Lang::ObjCxx => "objective-c++",
        }
    }

    /// Extension of the preprocessed form (what the server's input is called).
    pub fn preprocessed_ext(self) -> &'static str {
        match self {
            Lang::C => "i",
            Lang::Cxx => "ii",
            Lang::ObjC => "mi",
            Lang::ObjCxx => "mii",
        }
    }

    pub(crate) fn from_ext(name: &str) -> Option<(Lang, bool)> {
        Some(match filename::extension(name)? {
            "c" => (Lang::C, false),
            "i" => (Lang::C, true),
            "cc" | "cpp" | "cxx" | "cp" | "c++" | "C" => (Lang::Cxx, false),
            "ii" => (Lang::Cxx, true),
            "m" => (Lang::ObjC, false),
            "mi" => (Lang::ObjC, true),
            "mm" | "M" => (Lang::ObjCxx, false),
            "mii" => (Lang::ObjCxx, true),
            _ => return None,
        })
    }

    /// A `-x` language: `Ok(None)` for `none`, `Err` for one not compiled remotely.
    pub(crate) fn from_x(name: &str) -> Result<Option<(Lang, bool)>, ()> {
        Ok(Some(match name {
            "none" => return Ok(None),
            "c" => (Lang::C, false),
            "cpp-output" => (Lang::C, true),
            "c++" => (Lang::Cxx, false),
            "c++-cpp-output" => (Lang::Cxx, true),
            "objective-c" => (Lang::ObjC, false),
            "objective-c-cpp-output" | "objc-cpp-output" => (Lang::ObjC, true),
            "objective-c++" => (Lang::ObjCxx, false),
            "objective-c++-cpp-output" => (Lang::ObjCxx, true),
            _ => return Err(()),
        }))
    }
}

/// A compile that can go to a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The source, as named on the command line.
    pub input: String,
    /// The output, as named (or as the compiler would name it).
    pub output: String,
    /// `-S`: the output is assembly, which cc1 writes through a symbolic
    /// link; an object is written by `as`, which replaces the link.
    pub assembly: bool,
    pub lang: Lang,
    /// The input is already preprocessed: it is sent as it is.
    pub preprocessed: bool,
    /// The local preprocessor's command; its stdout is the preprocessed text.
    pub cpp_argv: Vec<String>,
    /// The command sent to the server.
    pub server_argv: Vec<String>,
    /// `server_argv` holds `-march=native`-style words to resolve first.
    pub native: bool,
    /// clang with debug info: it records its own working directory, so the
    /// client's must be sent (`-fdebug-compilation-dir=`).
    pub needs_debug_dir: bool,
    /// Pump mode's command (protocol 3: the server preprocesses), or why
    /// this compile cannot have one.
    pub pump: Result<PumpArgs, String>,
}

/// What a protocol-3 server is sent: the whole command (its `-I`, `-D`,
/// `-M` options too), as distcc 3.4 sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PumpArgs {
    pub argv: Vec<String>,
    /// Where the dependency file the server returns goes, if one is wanted.
    pub deps_file: Option<String>,
}

/// distcc 3.4's pump command: `-Wp,-MD,f` as `-MD -MF f`, the output named,
/// and `-MT <output>` when a dependency file has no target (the server
/// makes the rule's target that, as a local compile would). `words` are
/// the command's after the compiler.
fn pump_args(
    compiler: &str,
    words: &[String],
    output: &str,
    named_output: bool,
    input: &str,
) -> Result<PumpArgs, String> {
    let mut argv = vec![compiler.to_owned()];
    let (mut wanted, mut target) = (false, false);
    let mut file: Option<String> = None;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        i += 1;
        if let Some(rest) = w.strip_prefix("-Wp,") {
            match rest.split_once(',') {
                Some((opt @ ("-MD" | "-MMD"), f)) if !f.contains(',') => {
                    argv.extend([opt.to_owned(), "-MF".into(), f.to_owned()]);
                    wanted = true;
                    file = Some(f.to_owned());
                    continue;
                }
                _ => return Err(format!("{w}: options for the preprocessor alone")),
            }
        }
        match w {
            "-MD" | "-MMD" => wanted = true,
            "-MT" | "-MQ" => target = true,
            "-MF" => file = words.get(i).cloned(),
            _ if w.starts_with("-MT") || w.starts_with("-MQ") => target = true,
            _ if w.starts_with("-MF") => file = Some(w[3..].to_owned()),
            _ => {}
        }
        argv.push(w.to_owned());
    }
    if !named_output {
        argv.extend(["-o".into(), output.to_owned()]);
    }
    if wanted && !target {
        argv.extend(["-MT".into(), output.to_owned()]);
    }
    let deps_file =
        wanted.then(|| file.unwrap_or_else(|| default_dep_file(named_output.then_some(output), input)));
    Ok(PumpArgs { argv, deps_file })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Remote(Job),
    /// The compile runs here, for this reason (said to the user with DISTCC_VERBOSE).
    Local(String),
}

fn local<T>(why: impl Into<String>) -> Result<T, String> {
    Err(why.into())
}

/// The name gcc gives an output it is not told: the input's base name with
/// `.o` (or `.s` for `-S`).
fn default_output(input: &str, assemble_only: bool) -> String {
    let base = input.rsplit('/').next().unwrap_or(input);
    let stem = match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    };
    format!("{stem}.{}", if assemble_only { "s" } else { "o" })
}

/// Where `-MD` writes without `-MF`: beside `-o`'s file with `.d`, else the
/// input's base name with `.d` in the current directory (gcc's rule).
fn default_dep_file(output: Option<&str>, input: &str) -> String {
    let named = output.unwrap_or_else(|| input.rsplit('/').next().unwrap_or(input));
    let (dir, base) = match named.rfind('/') {
        Some(i) => (&named[..=i], &named[i + 1..]),
        None => ("", named),
    };
    let stem = match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    };
    format!("{dir}{stem}.d")
}

pub fn classify(argv: &[String]) -> Verdict {
    match scan(argv) {
        Ok(job) => Verdict::Remote(job),
        Err(why) => Verdict::Local(why),
    }
}

fn scan(argv: &[String]) -> Result<Job, String> {
    let Some((compiler, words)) = argv.split_first() else {
        return local("empty command line");
    };
    let mut cpp = vec![compiler.clone()];
    let mut server = vec![compiler.clone()];
    let mut mode: Option<&str> = None;
    let mut input: Option<(String, Lang, bool, usize)> = None;
    let mut output: Option<String> = None;
    let mut x_lang: Option<(Lang, bool)> = None;
    let (mut deps_wanted, mut deps_file, mut deps_target) = (false, false, false);
    let mut native = false;
    let mut objects: Vec<String> = Vec::new();

    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        i += 1;
        if !word.starts_with('-') || word == "-" {
            if word == "-" {
                return local("the source is read from standard input");
            }
            let lang = match x_lang {
                Some(l) => Some(l),
                None => Lang::from_ext(word),
            };
            match lang {
                Some((lang, pre)) => {
                    if let Some((first, ..)) = &input {
                        return local(format!(
                            "two inputs, {first} and {word}: distcc sends one file per compile"
                        ));
                    }
                    input = Some((word.to_owned(), lang, pre, server.len()));
                    cpp.push(word.to_owned());
                    server.push(word.to_owned());
                }
                // distcc takes a lone `x.o` operand as the output; decided
                // below, once it is known whether this is a compile at all.
                None if word.ends_with(".o") => objects.push(word.to_owned()),
                None if word.starts_with('@') => {
                    return local(format!(
                        "{word}: the response file could not be read; the compiler will say why"
                    ));
                }
                // distcc passes other words along (`ccache gcc -c x.c`).
                None => {
                    cpp.push(word.to_owned());
                    server.push(word.to_owned());
                }
            }
            continue;
        }
        let t = match table::take(word, words.get(i).map(String::as_str)) {
            Ok(t) => t,
            Err(table::TakeError::Unknown) => {
                return local(format!(
                    "{word}: not in distcc-rs's flag table, so a server would refuse it"
                ));
            }
            Err(table::TakeError::NoValue) => {
                return local(format!("{word} has no value; the compiler will say so"));
            }
        };
        if t.separate {
            i += 1;
        }
        let (flag, value, separate) = (t.flag, t.value, t.separate);
        let push = |v: &mut Vec<String>| t.push(word, v);
        match flag.client {
            Client::Both => {
                push(&mut cpp);
                push(&mut server);
            }
            Client::CppOnly | Client::DepsOther => push(&mut cpp),
            Client::PassToCpp => {
                if word.split(',').skip(1).any(|o| matches!(o, "-M" | "-MM" | "-E")) {
                    return local(format!("{word}: the preprocessor is asked for its output only"));
                }
                push(&mut cpp);
            }
            Client::Local(why) => return local(format!("{word}: {why}")),
            Client::CompileMode => {
                // -S wins over -c, as in gcc.
                if mode != Some("-S") {
                    mode = Some(if word == "-S" { "-S" } else { "-c" });
                }
                push(&mut server);
            }
            Client::OutputFile => {
                if output.is_some() {
                    return local("more than one output (-o)");
                }
                let v = value.unwrap_or_default().to_owned();
                if v.is_empty() {
                    return local("-o has no value");
                }
                server.push("-o".into());
                server.push(v.clone());
                output = Some(v);
            }
            Client::Lang => {
                let name = value.unwrap_or_default();
                x_lang = match Lang::from_x(name) {
                    Ok(l) => l,
                    Err(()) => {
                        return local(format!(
                            "-x {name}: only C, C++ and Objective-C are compiled remotely"
                        ));
                    }
                };
                push(&mut cpp);
            }
            Client::DepsWanted => {
                deps_wanted = true;
                push(&mut cpp);
            }
            Client::DepsFile => {
                deps_file = true;
                push(&mut cpp);
            }
            Client::DepsTarget => {
                deps_target = true;
                push(&mut cpp);
            }
            Client::Native => {
                native = true;
                push(&mut cpp);
                push(&mut server);
            }
            Client::Checked => {
                let v = value.unwrap_or_default();
                match flag.server {
                    Server::KeepNoPaths => {
                        if let Some((_, val)) = word.split_once('=')
                            && names_a_path(val)
                        {
                            return local(format!(
                                "{word}: names a path, which would mean a file on the server"
                            ));
                        }
                    }
                    Server::Assembler if separate => check_assembler_option(v, word).map_err(|r| r.0)?,
                    Server::Assembler => {
                        for opt in word.trim_start_matches("-Wa,").split(',') {
                            check_assembler_option(opt, word).map_err(|r| r.0)?;
                        }
                    }
                    Server::Forwarded => check_forwarded(v, word).map_err(|r| r.0)?,
                    _ => {}
                }
                push(&mut cpp);
                push(&mut server);
            }
        }
    }

    let Some(mode) = mode else {
        return local("neither -c nor -S: this command links or only preprocesses");
    };
    match (objects.as_slice(), &output) {
        ([], _) => {}
        ([o], None) => {
            server.push("-o".into());
            server.push(o.clone());
            output = Some(o.clone());
        }
        ([o, ..], _) => return local(format!("{o}: an object file among the inputs of a compile")),
    }
    let Some((input, lang, preprocessed, input_at)) = input else {
        return local("no C, C++ or Objective-C source file to compile");
    };
    let base = input.rsplit('/').next().unwrap_or(&input);
    if base.starts_with("conftest.") || base.starts_with("tmp.conftest.") {
        return local(format!("{input}: an autoconf test, cheaper to compile here"));
    }
    let given_output = output.clone();
    let output = match output {
        Some(o) if o == "-" => return local("the output goes to standard output"),
        Some(o) => o,
        None => {
            let o = default_output(&input, mode == "-S");
            server.push("-o".into());
            server.push(o.clone());
            o
        }
    };
    // The server names its input after the word it is sent; when `-x` made a
    // file with another extension the input, send the preprocessed name.
    if x_lang.is_some() && Lang::from_ext(&input).map(|(l, _)| l) != Some(lang) {
        let stem = default_output(&input, false);
        server[input_at] = format!("{}{}", &stem[..stem.len() - 1], lang.preprocessed_ext());
    }

    // The preprocessor writes to stdout; distcc 3.4 lets it name the .d file
    // and its target after itself, which is wrong whenever -o is given.
    cpp.insert(1, "-E".into());
    if deps_wanted {
        if !deps_file {
            cpp.push("-MF".into());
            cpp.push(default_dep_file(given_output.as_deref(), &input));
        }
        if !deps_target {
            cpp.push("-MQ".into());
            cpp.push(output.clone());
        }
    }
    let needs_debug_dir = is_clang(compiler) && debug_info(words).is_some();
    if let Some(dwarf) = debug_info(words)
        && is_clang(compiler)
        && dwarf >= 5
    {
        return local(
            "clang -g: DWARF 5 records the source file's MD5, which only a local compile can compute \
             (add -gdwarf-4 to distribute)",
        );
    }
    let pump = if objects.is_empty() {
        pump_args(compiler, words, &output, given_output.is_some(), &input)
    } else {
        Err("the output is named as an operand".into())
    };
    Ok(Job {
        pump,
        input,
        output,
        assembly: mode == "-S",
        lang,
        preprocessed,
        cpp_argv: cpp,
        server_argv: server,
        native,
        needs_debug_dir,
    })
}

/// Whether a link from the generic `cc` (`c++`) may be named instead of it:
/// gcc or clang (g++ or clang++), optionally versioned (`gcc-12`). distcc
/// 3.4 sends the family's name so the server runs the same compiler, not
/// whatever its own `cc` is (§2.9); the clang checks here need it too.
pub fn names_family(generic: &str, target: &str) -> bool {
    let families: &[&str] = match generic {
        "cc" => &["gcc", "clang"],
        "c++" => &["g++", "clang++"],
        _ => return false,
    };
    families.iter().any(|f| {
        target == *f
            || target
                .strip_prefix(f)
                .and_then(|v| v.strip_prefix('-'))
                .is_some_and(|v| {
                    v.starts_with(|c: char| c.is_ascii_digit())
                        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                })
    })
}

fn is_clang(compiler: &str) -> bool {
    compiler.rsplit('/').next().unwrap_or(compiler).contains("clang")
}

/// The DWARF version debug info is asked for in, if it is (clang's default is 5).
fn debug_info(words: &[String]) -> Option<u32> {
    let mut on = false;
    let mut version = 5;
    for w in words {
        match w.as_str() {
            "-g0" => on = false,
            w if w.starts_with("-gdwarf-") => {
                on = true;
                version = w["-gdwarf-".len()..].parse().unwrap_or(5);
            }
            w if w.starts_with("-gno-") || w.starts_with("-gz") || w.starts_with("-gsplit") => {}
            w if w.starts_with("-g") => on = true,
            _ => {}
        }
    }
    on.then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn generic_names_and_their_families() {
        for (generic, target, want) in [
            ("cc", "gcc", true),
            ("cc", "clang", true),
            ("cc", "gcc-12", true),
            ("cc", "clang-16", true),
            ("cc", "clang-16.0", true),
            ("c++", "g++", true),
            ("c++", "clang++", true),
            ("c++", "g++-13", true),
            ("cc", "g++", false),
            ("c++", "gcc", false),
            ("cc", "cc", false),
            ("cc", "clang-cpp", false),
            ("cc", "clang-format", false),
            ("cc", "gcc-", false),
            ("cc", "gcc-ar", false),
            ("cc", "tcc", false),
            ("cc", "x86_64-linux-gnu-gcc", false),
            ("gcc", "gcc", false),
        ] {
            assert_eq!(names_family(generic, target), want, "{generic} -> {target}");
        }
    }

    /// distcc's `ScanArgs_Case` vectors (test/testdistcc.py): "dist in out" or local.
    #[test]
    fn distcc_scan_args_vectors() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("gcc -c hello.c", Some(("hello.c", "hello.o"))),
            ("gcc hello.c", None),
            (
                "gcc -o /tmp/hello.o -c ../src/hello.c",
                Some(("../src/hello.c", "/tmp/hello.o")),
            ),
            (
                "gcc -DMYNAME=quasibar.c bar.c -c -o bar.o",
                Some(("bar.c", "bar.o")),
            ),
            ("gcc -ohello.o -c hello.c", Some(("hello.c", "hello.o"))),
            ("ccache gcc -c hello.c", Some(("hello.c", "hello.o"))),
            ("gcc hello.o", None),
            ("gcc -o hello.o hello.c", None),
            ("gcc -o hello.o -c hello.s", None),
            ("gcc -o hello.o -c hello.S", None),
            ("gcc -fprofile-arcs -ftest-coverage -c hello.c", None),
            ("gcc -S hello.c", Some(("hello.c", "hello.s"))),
            ("gcc -c -S hello.c", Some(("hello.c", "hello.s"))),
            ("gcc -S -c hello.c", Some(("hello.c", "hello.s"))),
            ("gcc -M hello.c", None),
            ("gcc -ME hello.c", None),
            ("gcc -MD -c hello.c", Some(("hello.c", "hello.o"))),
            ("gcc -MMD -c hello.c", Some(("hello.c", "hello.o"))),
            ("gcc -S foo.c -o -", None),
            ("gcc -S -o - foo.c", None),
            ("gcc -c -S -o - foo.c", None),
            ("gcc -S -c -o - foo.c", None),
            ("gcc -ofoo.o foo.c -c", Some(("foo.c", "foo.o"))),
            ("gcc -ofoo foo.o", None),
            // distcc scans argv[0] too; here it is always the compiler, and
            // implicit mode (`distcc foo.c -o foo.o -c`) puts `cc` in front.
            ("cc foo.c -o foo.o", None),
            ("cc foo.c -o foo.o -c", Some(("foo.c", "foo.o"))),
            ("gcc -Wa,-alh,-a=foo.lst -c foo.c", None),
            ("gcc -Wa,--MD -c foo.c", None),
            ("gcc -Wa,-xarch=v8 -c foo.c", Some(("foo.c", "foo.o"))),
            ("g++ -frepo foo.C", None),
            ("gcc -xassembler-with-cpp -c foo.c", None),
            ("gcc -x assembler-with-cpp -c foo.c", None),
            ("gcc -specs=foo.specs -c foo.c", None),
            ("gcc -dr -c foo.c", None),
        ];
        for (cmd, want) in cases {
            let got = match classify(&words(cmd)) {
                Verdict::Remote(j) => Some((j.input, j.output)),
                Verdict::Local(_) => None,
            };
            assert_eq!(got, want.map(|(i, o)| (i.to_owned(), o.to_owned())), "{cmd}");
        }
    }

    fn remote(cmd: &str) -> Job {
        match classify(&words(cmd)) {
            Verdict::Remote(j) => j,
            Verdict::Local(why) => panic!("{cmd}: local: {why}"),
        }
    }

    #[test]
    fn what_runs_here_and_what_is_sent() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "gcc -O2 -DX=1 -Iinc -include cfg.h -c a.c -o out/a.o",
                "gcc -E -O2 -DX=1 -Iinc -include cfg.h a.c",
                "gcc -O2 -c a.c -o out/a.o",
            ),
            // distcc's StripArgs mozilla line.
            (
                "cc -o nsinstall.o -c -DOSTYPE=\"Linux2.4\" -DOSARCH=\"Linux\" -DOJI -D_BSD_SOURCE -I../dist/include -I../dist/include -I/home/mbp/work/mozilla/mozilla-1.1/dist/include/nspr -I/usr/X11R6/include -fPIC -I/usr/X11R6/include -Wall -W -Wno-unused -Wpointer-arith -Wcast-align -pedantic -Wno-long-long -pthread -pipe -DDEBUG -D_DEBUG -DDEBUG_mbp -DTRACING -g -I/usr/X11R6/include -include ../config-defs.h -DMOZILLA_CLIENT -Wp,-MD,.deps/nsinstall.pp nsinstall.c",
                "cc -E -DOSTYPE=\"Linux2.4\" -DOSARCH=\"Linux\" -DOJI -D_BSD_SOURCE -I../dist/include -I../dist/include -I/home/mbp/work/mozilla/mozilla-1.1/dist/include/nspr -I/usr/X11R6/include -fPIC -I/usr/X11R6/include -Wall -W -Wno-unused -Wpointer-arith -Wcast-align -pedantic -Wno-long-long -pthread -pipe -DDEBUG -D_DEBUG -DDEBUG_mbp -DTRACING -g -I/usr/X11R6/include -include ../config-defs.h -DMOZILLA_CLIENT -Wp,-MD,.deps/nsinstall.pp nsinstall.c",
                "cc -o nsinstall.o -c -fPIC -Wall -W -Wno-unused -Wpointer-arith -Wcast-align -pedantic -Wno-long-long -pthread -pipe -g nsinstall.c",
            ),
            (
                "gcc -MD -c src/x.c -o obj/x.o",
                "gcc -E -MD src/x.c -MF obj/x.d -MQ obj/x.o",
                "gcc -c src/x.c -o obj/x.o",
            ),
            (
                "gcc -MMD -MF x.dep -c x.c",
                "gcc -E -MMD -MF x.dep x.c -MQ x.o",
                "gcc -c x.c -o x.o",
            ),
            (
                "gcc -MD -MT tgt -c x.c",
                "gcc -E -MD -MT tgt x.c -MF x.d",
                "gcc -c x.c -o x.o",
            ),
            (
                "gcc -MD -MP -MQ $(o) -c x.c -o y.o",
                "gcc -E -MD -MP -MQ $(o) x.c -MF y.d",
                "gcc -c x.c -o y.o",
            ),
            ("gcc -S x.c", "gcc -E x.c", "gcc -S x.c -o x.s"),
            (
                "g++ -x c++ -c t.c -o t.o",
                "g++ -E -x c++ t.c",
                "g++ -c t.ii -o t.o",
            ),
            ("gcc -x c -c x.c", "gcc -E -x c x.c", "gcc -c x.c -o x.o"),
            (
                "gcc -xc -c code.inc",
                "gcc -E -xc code.inc",
                "gcc -c code.i -o code.o",
            ),
            (
                "clang --target=aarch64-linux-gnu -fcolor-diagnostics -stdlib=libc++ -c a.cc",
                "clang -E --target=aarch64-linux-gnu -fcolor-diagnostics -stdlib=libc++ a.cc",
                "clang --target=aarch64-linux-gnu -fcolor-diagnostics -c a.cc -o a.o",
            ),
            (
                "clang -Xclang -fno-pch-timestamp -c a.c",
                "clang -E -Xclang -fno-pch-timestamp a.c",
                "clang -Xclang -fno-pch-timestamp -c a.c -o a.o",
            ),
            (
                "gcc -isysroot /sdk --sysroot=/sdk -isystem /x -c a.c",
                "gcc -E -isysroot /sdk --sysroot=/sdk -isystem /x a.c",
                "gcc -c a.c -o a.o",
            ),
        ];
        for (cmd, cpp, sent) in cases {
            let j = match classify(&words(cmd)) {
                Verdict::Remote(j) => j,
                Verdict::Local(why) => panic!("{cmd}: local: {why}"),
            };
            assert_eq!(j.cpp_argv.join(" "), *cpp, "cpp of {cmd}");
            assert_eq!(j.server_argv.join(" "), *sent, "sent for {cmd}");
        }
        let pre = remote("gcc -c x.i");
        assert!(pre.preprocessed && pre.lang == Lang::C);
        let mm = remote("g++ -c a.mm -o a.o");
        assert_eq!((mm.lang, mm.preprocessed), (Lang::ObjCxx, false));
        assert!(remote("gcc -march=native -c a.c").native);
        assert!(remote("gcc -S a.c").assembly && remote("gcc -c -S a.c").assembly);
        assert!(
            !remote("gcc -c a.c -o a.s").assembly,
            "an object, whatever its name"
        );
        assert!(remote("clang -g -gdwarf-4 -c a.c").needs_debug_dir);
        assert!(!remote("clang -c a.c").needs_debug_dir);
        assert!(
            !remote("gcc -g -c a.c").needs_debug_dir,
            "gcc takes it from the preprocessor's output"
        );
    }

    #[test]
    fn local_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("gcc -c a.c b.c", "two inputs"),
            ("gcc a.c -o a", "neither -c nor -S"),
            ("gcc -c conftest.c", "autoconf"),
            ("gcc -E a.c", "-E only preprocesses"),
            ("gcc -M a.c", "only preprocess"),
            ("gcc -MM a.c", "only preprocess"),
            ("gcc -c a.c -fprofile-generate", "profiling"),
            ("gcc -c a.c --coverage", "profiling"),
            ("gcc -c a.c -fplugin=x.so", "load or run"),
            ("gcc -c a.c -save-temps", "write a file"),
            ("gcc -c a.c -gsplit-dwarf", "split DWARF"),
            ("gcc -c a.c -fdump-tree-all", "dump files"),
            ("gcc -c a.c -fopt-info=/tmp/x", "names a path"),
            ("gcc -x c-header -c a.h", "-x c-header"),
            ("gcc -c a.h", "no C, C++ or Objective-C source"),
            ("gcc -c - ", "standard input"),
            ("gcc -c a.c -o a.o -o b.o", "more than one output"),
            ("gcc -c a.c -o a.o b.o", "object file among the inputs"),
            ("gcc -o prog main.o util.o", "links"),
            ("gcc -c a.c -qrobnicate", "not in distcc-rs's flag table"),
            ("gcc -c a.c -print-prog-name=cc1", "not in distcc-rs's flag table"),
            ("gcc -c a.c @missing.rsp", "response file"),
            ("clang -c a.c -Xclang -load -Xclang x.so", "load code"),
            ("clang -g -c a.c", "DWARF 5"),
            ("gcc -Wp,-M -c a.c", "output only"),
            ("clang++ -gdwarf-5 -c a.cc", "DWARF 5"),
        ];
        for (cmd, why) in cases {
            match classify(&words(cmd)) {
                Verdict::Local(got) => assert!(got.contains(why), "{cmd}: {got}"),
                Verdict::Remote(j) => panic!("{cmd}: sent as {:?}", j.server_argv),
            }
        }
    }

    #[test]
    fn default_names() {
        assert_eq!(default_output("src/a.b.c", false), "a.b.o");
        assert_eq!(default_output("noext", true), "noext.s");
        assert_eq!(default_dep_file(Some("obj/x.o"), "x.c"), "obj/x.d");
        assert_eq!(default_dep_file(Some("x"), "x.c"), "x.d");
        assert_eq!(default_dep_file(None, "src/y.cc"), "y.d");
    }
}
