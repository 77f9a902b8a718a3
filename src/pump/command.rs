/*!
What the include server needs from a compile command: the source, its
language, the files `-include` and `-imacros` read first, the `-D` seeds for
computed includes, and the words that decide where headers are searched (given
to the compiler itself, which says its search list: no copy of gcc's rules
here). Pure.

The flag table (`args::table`) says how many words a flag takes and what it
is for; a flag it does not know, or one that hands options to the
preprocessor behind our back (`-Wp,`, `-Xpreprocessor`), makes the include
server give up, and the client preprocesses locally.
*/

use crate::args::classify::Lang;
use crate::args::table::{self, Client};

/// A compile, as the include server reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compile {
    /// `argv[0]`, as given.
    pub compiler: String,
    /// The source, as named on the command line.
    pub source: String,
    pub lang: Lang,
    /// `-include` and `-imacros` files, as named, in order.
    pub forced: Vec<String>,
    /// `-D` values (`X`, `X=v`, `F(a)=v`) that no later `-U` undid.
    pub defines: Vec<String>,
    /// `-U` names no later `-D` defined again: the compiler's own
    /// definitions of them do not hold.
    pub undefined: Vec<String>,
    /// The words that decide the include search list (every option but the
    /// input, output, mode, dependency, warning, optimisation, debug and
    /// macro ones), in order: the compiler is asked with them.
    pub search: Vec<String>,
    /// The same without the user's directories (`-I`, `-iquote`, …): what
    /// makes a directory the compiler's own.
    pub system: Vec<String>,
}

/// Why the include server does not answer for a compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotCovered(pub String);

impl std::fmt::Display for NotCovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn give_up<T>(why: impl Into<String>) -> Result<T, NotCovered> {
    Err(NotCovered(why.into()))
}

/// Directory options: the user's, not the compiler's.
const USER_DIRS: &[&str] = &[
    "-I",
    "-idirafter",
    "-iprefix",
    "-iquote",
    "-isystem",
    "-iwithprefix",
    "-iwithprefixbefore",
];

/// Options that cannot change where a header is found (or what a computed
/// include names: `-D` and `-U` are read separately).
fn irrelevant(name: &str) -> bool {
    matches!(name, "-O" | "-W" | "-g" | "-D" | "-U" | "-w" | "-pipe")
}

pub fn parse(argv: &[String]) -> Result<Compile, NotCovered> {
    let Some((compiler, words)) = argv.split_first() else {
        return give_up("an empty command");
    };
    let mut source: Option<(String, Option<Lang>)> = None;
    let mut x_lang: Option<Lang> = None;
    let (mut forced, mut defines, mut search, mut system) = (vec![], vec![], vec![], vec![]);
    let mut undefined: Vec<String> = vec![];
    let name_of = |d: &str| d.split(['=', '(']).next().unwrap_or_default().to_owned();
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        i += 1;
        if !word.starts_with('-') || word == "-" {
            let lang = match x_lang {
                Some(l) => Some((l, false)),
                None => Lang::from_ext(word),
            };
            match lang {
                Some((_, true)) => return give_up(format!("{word} is already preprocessed")),
                Some((l, false)) => {
                    if source.is_some() {
                        return give_up("more than one source");
                    }
                    source = Some((word.to_owned(), Some(l)));
                }
                None if word == "-" => return give_up("the source is standard input"),
                // Objects and libraries: a link step, not ours.
                None => return give_up(format!("{word} is not a source distcc compiles")),
            }
            continue;
        }
        let t = match table::take(word, words.get(i).map(String::as_str)) {
            Ok(t) => t,
            Err(table::TakeError::Unknown) => return give_up(format!("{word} is not understood")),
            Err(table::TakeError::NoValue) => return give_up(format!("{word} has no value")),
        };
        if t.separate {
            i += 1;
        }
        let value = t.value.unwrap_or_default();
        match t.flag.client {
            Client::Local(why) => return give_up(format!("{word}: {why}")),
            Client::PassToCpp => return give_up(format!("{word}: options passed to the preprocessor")),
            Client::CompileMode | Client::OutputFile => {}
            Client::DepsWanted | Client::DepsFile | Client::DepsTarget | Client::DepsOther => {}
            Client::Lang => {
                x_lang = match Lang::from_x(value) {
                    Ok(Some((l, false))) => Some(l),
                    Ok(None) => None,
                    _ => return give_up(format!("-x {value}: not a source language")),
                };
            }
            _ => match t.flag.name {
                "-include" | "-imacros" => forced.push(value.to_owned()),
                "-D" => {
                    undefined.retain(|u| *u != name_of(value));
                    defines.push(value.to_owned());
                }
                "-U" => {
                    defines.retain(|d| name_of(d) != value);
                    undefined.push(value.to_owned());
                }
                "-Xpreprocessor" => return give_up(format!("{word}: options passed to the preprocessor")),
                name if irrelevant(name) => {}
                name => {
                    t.push(word, &mut search);
                    if !USER_DIRS.contains(&name) {
                        t.push(word, &mut system);
                    }
                }
            },
        }
    }
    let Some((source, lang)) = source else {
        return give_up("no source file");
    };
    let Some(lang) = lang else {
        return give_up("the source's language is unknown");
    };
    Ok(Compile {
        compiler: compiler.clone(),
        source,
        lang,
        forced,
        defines,
        undefined,
        search,
        system,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn reads_what_the_search_depends_on() {
        let c = parse(&w(
            "gcc -O2 -g -Wall -Iinc -I /abs -iquote q -isystem s -DX=1 -DY -UZ -DW -UW -UV -DV=2 -DF(a)=a -UF \
             -include pre.h -imacros m.h -std=c99 -m32 -MD -MF x.d -MT x.o -c src/a.c -o a.o",
        ))
        .unwrap();
        assert_eq!(c.compiler, "gcc");
        assert_eq!(c.source, "src/a.c");
        assert_eq!(c.lang, Lang::C);
        assert_eq!(c.forced, w("pre.h m.h"));
        assert_eq!(c.defines, w("X=1 Y V=2"));
        assert_eq!(c.undefined, w("Z W F"));
        assert_eq!(c.search, w("-Iinc -I /abs -iquote q -isystem s -std=c99 -m32"));
        assert_eq!(c.system, w("-std=c99 -m32"));
    }

    #[test]
    fn languages() {
        let cases = [
            ("g++ -c a.cc", Some(Lang::Cxx)),
            ("gcc -x c++ -c a.c", Some(Lang::Cxx)),
            ("gcc -x c -c a.cc", Some(Lang::C)),
            ("clang -c a.m", Some(Lang::ObjC)),
            ("gcc -c a.i", None),
            ("gcc -x cpp-output -c a.c", None),
        ];
        for (cmd, want) in cases {
            assert_eq!(parse(&w(cmd)).ok().map(|c| c.lang), want, "{cmd}");
        }
    }

    #[test]
    fn gives_up_where_it_cannot_be_sure() {
        let cases = [
            "gcc -Wp,-DX -c a.c",
            "gcc -Xpreprocessor -DX -c a.c",
            "gcc -c a.c b.c",
            "gcc -c",
            "gcc -c -",
            "gcc --no-such-flag -c a.c",
            "gcc -c a.c x.o",
            "gcc -I",
        ];
        for cmd in cases {
            assert!(parse(&w(cmd)).is_err(), "{cmd}");
        }
    }
}
