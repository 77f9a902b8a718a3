/*!
How distcc was invoked (distcc src/distcc.c, climasq.c): as `distcc` with a
compiler (explicit), as `distcc` with only options (implicit, `cc`), or
through a link named after the compiler (masquerade). Pure.
*/

use crate::args::filename;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    Help,
    Version,
    ShowHosts,
    /// `-j`: the number of jobs the host list allows.
    Jobs,
    /// `--hosts-for-port N`: the host list with every TCP port set to N
    /// (distcc-rs; used by `distcc-chroot`).
    HostsForPort(String),
    Compile {
        argv: Vec<String>,
        masquerade: bool,
    },
    /// `--scan-includes COMPILER ARGS`: print what the include server
    /// would have sent, and compile nothing.
    ScanIncludes(Vec<String>),
    Usage(String),
}

pub fn detect(argv0: &str, args: &[String]) -> Invocation {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    if !base.contains("distcc") {
        let mut argv = vec![base.to_owned()];
        argv.extend_from_slice(args);
        return Invocation::Compile {
            argv,
            masquerade: true,
        };
    }
    let Some(first) = args.first() else {
        return Invocation::Usage("missing compiler command".into());
    };
    match first.as_str() {
        "--help" => return Invocation::Help,
        "--version" => return Invocation::Version,
        "--show-hosts" => return Invocation::ShowHosts,
        "-j" => return Invocation::Jobs,
        "--hosts-for-port" => {
            return Invocation::HostsForPort(args.get(1).cloned().unwrap_or_default());
        }
        "--scan-includes" if args.len() > 1 => return Invocation::ScanIncludes(args[1..].to_vec()),
        "--scan-includes" => return Invocation::Usage("--scan-includes needs a compile command".into()),
        "--show-principal" => {
            return Invocation::Usage(format!("{first}: GSS-API is not supported by distcc-rs"));
        }
        _ => {}
    }
    let implicit = first.starts_with('-') || filename::is_source(first) || first.ends_with(".o");
    let argv = if implicit {
        let mut v = vec!["cc".to_owned()];
        v.extend_from_slice(args);
        v
    } else {
        args.to_vec()
    };
    Invocation::Compile {
        argv,
        masquerade: false,
    }
}

/// The PATH a masqueraded compiler must search: everything after our own
/// directory, so that the real compiler is found and we are not found again.
/// `dir` is argv[0]'s directory if it had one; otherwise the first entry
/// where `has_us(entry)` is true is ours. `None` leaves PATH as it is.
pub fn trim_path(path: &str, dir: Option<&str>, has_us: impl Fn(&str) -> bool) -> Option<String> {
    let entries: Vec<&str> = path.split(':').collect();
    let pos = match dir {
        Some(d) => {
            let d = d.trim_end_matches('/');
            entries.iter().position(|e| e.trim_end_matches('/') == d)?
        }
        None => entries.iter().position(|e| has_us(e))?,
    };
    Some(entries[pos + 1..].join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn modes() {
        let compile = |argv: &str, m: bool| Invocation::Compile {
            argv: a(argv),
            masquerade: m,
        };
        let cases = [
            ("distcc", "gcc -c x.c", compile("gcc -c x.c", false)),
            (
                "/usr/bin/distcc",
                "/usr/bin/gcc -c x.c",
                compile("/usr/bin/gcc -c x.c", false),
            ),
            ("distcc", "-c x.c", compile("cc -c x.c", false)),
            ("distcc", "x.c -c", compile("cc x.c -c", false)),
            ("distcc", "x.o -o x", compile("cc x.o -o x", false)),
            ("i686-distcc", "gcc -c x.c", compile("gcc -c x.c", false)),
            ("/usr/lib/distcc/bin/gcc", "-c x.c", compile("gcc -c x.c", true)),
            (
                "x86_64-pc-linux-gnu-g++",
                "-c x.cc",
                compile("x86_64-pc-linux-gnu-g++ -c x.cc", true),
            ),
            ("cc", "", compile("cc", true)),
            ("distcc", "--help", Invocation::Help),
            ("distcc", "--version", Invocation::Version),
            ("distcc", "--show-hosts", Invocation::ShowHosts),
            ("distcc", "-j", Invocation::Jobs),
        ];
        for (argv0, args, want) in cases {
            assert_eq!(detect(argv0, &a(args)), want, "{argv0} {args}");
        }
        assert!(matches!(detect("distcc", &[]), Invocation::Usage(_)));
    }

    #[test]
    fn path_trimming() {
        let p = "/home/u/bin:/usr/lib/distcc/bin:/usr/local/bin:/usr/bin";
        assert_eq!(
            trim_path(p, Some("/usr/lib/distcc/bin"), |_| false).as_deref(),
            Some("/usr/local/bin:/usr/bin")
        );
        assert_eq!(
            trim_path(p, Some("/usr/lib/distcc/bin/"), |_| false).as_deref(),
            Some("/usr/local/bin:/usr/bin")
        );
        assert_eq!(
            trim_path(p, None, |e| e == "/usr/lib/distcc/bin").as_deref(),
            Some("/usr/local/bin:/usr/bin")
        );
        assert_eq!(trim_path(p, Some("/elsewhere"), |_| false), None);
        assert_eq!(trim_path(p, None, |_| false), None);
    }
}
