//! Pump mode end to end on the cases where an include server goes wrong:
//! each case is a small tree of files, compiled through `pump` with our
//! client and our distccd (protocol 3: the server preprocesses from the
//! files our include server chose), then locally; the object (with `-g`)
//! and the `.d` file must be the same bytes, and the client's log must say
//! the job went in pump mode. A header missing from the closure fails the
//! remote compile (fallback is off) or changes the object; a header the
//! server found elsewhere changes the object.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use crate::common::*;

const PUMP: &str = env!("CARGO_BIN_EXE_pump");
const CLIENT: &str = env!("CARGO_BIN_EXE_distcc");

struct Case {
    what: &'static str,
    /// Files under the project; a name ending in `@` is a symlink whose
    /// "content" is its target.
    files: &'static [(&'static str, &'static [u8])],
    /// Where the compile runs, under the project.
    cwd: &'static str,
    args: &'static [&'static str],
    /// `None`: must go in pump mode. `Some(why)`: must stay in plain mode
    /// and say `why`.
    plain: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        what: "computed includes: object-like, function-like with # and ##, from -D, in a header",
        files: &[
            ("cfg.h", b"#define STR(x) #x\n#define XSTR(x) STR(x)\n#define CAT(a, b) a##b\n#define XCAT(a, b) CAT(a, b)\n#define PLAT_HDR XSTR(XCAT(plat_, PLAT).h)\n"),
            ("src/m.c", b"#include \"../cfg.h\"\n#include PLAT_HDR\n#include USER_HDR\n#define SUB <sub/deep.h>\n#include SUB\nint m(void) { return PLAT + USER + DEEP; }\n"),
            ("src/plat_lnx.h", b"#define lnx 3\n"),
            ("inc/user.h", b"#define USER 5\n"),
            ("inc/sub/deep.h", b"#define DEEP 7\n"),
        ],
        cwd: "",
        args: &["-DPLAT=lnx", "-DUSER_HDR=\"user.h\"", "-Iinc", "-c", "src/m.c", "-o", "src/m.o"],
        plain: None,
    },
    Case {
        what: "computed include defined differently on two branches: both sent",
        files: &[
            ("m.c", b"#ifdef USE_B\n#define H \"b.h\"\n#else\n#define H \"a.h\"\n#endif\n#include H\nint m(void) { return V; }\n"),
            ("a.h", b"#define V 1\n"),
            ("b.h", b"#define V 2\n"),
        ],
        cwd: "",
        args: &["-DUSE_B", "-c", "m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "#include_next, plain and computed, through three directories",
        files: &[
            ("m.c", b"#include <wrap.h>\nint m(void) { return W1 + W2 + W3; }\n"),
            ("a/wrap.h", b"#define W1 1\n#include_next <wrap.h>\n"),
            ("b/wrap.h", b"#define W2 2\n#define NEXT <wrap.h>\n#include_next NEXT\n"),
            ("c/wrap.h", b"#define W3 3\n"),
        ],
        cwd: "",
        args: &["-Ia", "-Ib", "-Ic", "-c", "m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "__has_include: a present header sent, an absent one stays absent",
        files: &[
            ("m.c", b"#if __has_include(\"opt.h\")\n#include \"opt.h\"\n#else\n#define OPT 0\n#endif\n\
#if __has_include(<absent_everywhere.h>)\n#define ABS 1\n#else\n#define ABS 2\n#endif\n\
#if defined __has_include\n# if __has_include_next(<opt2.h>)\n#  define OPT2 9\n# endif\n#endif\n\
int m(void) { return OPT + ABS + OPT2; }\n"),
            ("inc/opt.h", b"#define OPT 4\n"),
            ("inc/opt2.h", b"\n"),
        ],
        cwd: "",
        args: &["-Iinc", "-c", "m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "include guards and #pragma once, one header reached by three names",
        files: &[
            ("m.c", b"#include \"inc/once.h\"\n#include \"inc/../inc/once.h\"\n#include \"alias.h\"\n#include \"inc/guard.h\"\n#include \"inc/guard.h\"\nint m(void) { return ONCE + GUARD; }\n"),
            ("inc/once.h", b"#pragma once\nstatic int counted;\n#define ONCE 1\n"),
            ("alias.h@", b"inc/once.h"),
            ("inc/guard.h", b"#ifndef GUARD\n#define GUARD 2\nstatic int guarded;\n#endif\n"),
        ],
        cwd: "",
        args: &["-c", "m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "a header in the includer's directory comes before -iquote and -I; the current directory is not searched",
        files: &[
            ("src/m.c", b"#include \"dup.h\"\n#include \"only_q.h\"\n#include \"top.h\"\nint m(void) { return DUP + Q + TOP; }\n"),
            ("src/dup.h", b"#define DUP 1\n"),
            ("q/dup.h", b"#define DUP 100\n"),
            ("q/only_q.h", b"#define Q 2\n"),
            ("i/only_q.h", b"#define Q 200\n"),
            ("top.h", b"#define TOP 300\n"),
            ("i/top.h", b"#define TOP 3\n"),
        ],
        cwd: "",
        args: &["-iquote", "q", "-Ii", "-c", "src/m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "relative .. paths from a build directory",
        files: &[
            ("build/.keep", b""),
            ("src/m.c", b"#include \"../include/a.h\"\n#include <b.h>\nint m(void) { return A + B; }\n"),
            ("include/a.h", b"#include \"../common/c.h\"\n#define A (1 + C)\n"),
            ("common/c.h", b"#define C 2\n"),
            ("other/b.h", b"#define B 3\n"),
        ],
        cwd: "build",
        args: &["-I../other/../other", "-c", "../src/m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "symlinked headers and directories, and .. after a symlink",
        files: &[
            ("m.c", b"#include \"inc/ln.h\"\n#include \"inc/sd/in.h\"\n#include \"inc/sd/../up.h\"\nint m(void) { return LN + IN + UP; }\n"),
            ("real/r.h", b"#define LN 1\n"),
            ("inc/ln.h@", b"../real/r.h"),
            ("far/dir/in.h", b"#define IN 2\n"),
            ("far/up.h", b"#define UP 3\n"),
            ("inc/up.h", b"#define UP 300\n"),
            ("inc/sd@", b"../far/dir"),
        ],
        cwd: "",
        args: &["-c", "m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "non-ASCII bytes in headers and in a header's name",
        files: &[
            ("m.c", b"#include \"caf\xc3\xa9.h\"\n#include \"latin1.h\"\nconst char *m(void) { return S L1; }\n"),
            ("café.h", b"/* caf\xc3\xa9 */\n#define S \"caf\xc3\xa9 \xe2\x82\xac\"\n"),
            ("latin1.h", b"/* \xe9t\xe9 */\n#define L1 \"\xe9\"\n"),
        ],
        cwd: "",
        args: &["-c", "m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "-include and -imacros, found from the compile's directory",
        files: &[
            ("m.c", b"int m(void) { return PRE + MAC; }\n"),
            ("pre.h", b"#include \"pre2.h\"\n#define PRE PRE2\n"),
            ("pre2.h", b"#define PRE2 1\n"),
            ("inc/mac.h", b"#define MAC 2\n"),
        ],
        cwd: "",
        args: &["-include", "pre.h", "-Iinc", "-imacros", "mac.h", "-c", "m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "C++ with standard-library headers (the server's own, through links)",
        files: &[(
            "m.cc",
            b"#include <vector>\n#include <string>\n#include <map>\n#include \"h.hh\"\nint m() { std::map<std::string, std::vector<int>> x; x[\"a\"].push_back(H); return x.size(); }\n",
        ), ("h.hh", b"constexpr int H = 1;\n")],
        cwd: "",
        args: &["-std=c++17", "-c", "m.cc", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "a directory given by its absolute path (files sent with a #line naming them), with -g",
        files: &[
            ("m.c", b"#include <abs.h>\nint m(void) { return ABS_X + __LINE__; }\n"),
            ("abs/abs.h", b"#define ABS_X 1\nstatic const char *where = __FILE__;\nstatic inline int abs_f(void) { return __LINE__; }\n"),
        ],
        cwd: "",
        args: &["-I@ROOT@/abs", "-c", "m.c", "-o", "m.o"],
        plain: None,
    },
    Case {
        what: "an absolute #include of a user header: the server would read its own, so plain mode",
        files: &[("m.c", b"#include ABS\nint m(void) { return X; }\n"), ("abs.h", b"#define X 1\n")],
        cwd: "",
        args: &["-DABS=\"@ROOT@/abs.h\"", "-c", "m.c", "-o", "m.o"],
        plain: Some("absolute path"),
    },
];

fn lay_out(root: &Path, files: &[(&str, &[u8])]) {
    use std::os::unix::ffi::OsStrExt;
    for (name, content) in files {
        let name = std::ffi::OsStr::from_bytes(name.as_bytes());
        let name = Path::new(name);
        let (path, link) = match name.to_str().and_then(|n| n.strip_suffix('@')) {
            Some(n) => (root.join(n), true),
            None => (root.join(name), false),
        };
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        if link {
            symlink(std::ffi::OsStr::from_bytes(content), &path).unwrap();
        } else {
            fs::write(&path, content).unwrap();
        }
    }
}

fn cc_for(args: &[&str]) -> &'static str {
    if args.iter().any(|a| a.ends_with(".cc")) {
        "g++"
    } else {
        "gcc"
    }
}

/// The object and `.d` of a compile run in `cwd`.
fn outputs(cwd: &Path, args: &[String]) -> (Vec<u8>, Vec<u8>) {
    let o = args
        .iter()
        .position(|a| a == "-o")
        .map(|i| cwd.join(&args[i + 1]))
        .unwrap();
    let d = o.with_extension("d");
    (fs::read(&o).unwrap(), fs::read(&d).unwrap_or_default())
}

#[test]
fn tricky_inclusions_compile_remotely_as_locally() {
    let dir = TestDir::new("pump-cases");
    let daemon = Daemon::serving(
        &dir,
        &["gcc", "g++", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-g++"],
        &[],
    );
    let hosts = format!("127.0.0.1:{}/2,cpp,lzo", daemon.addr().port());
    let mut failures = Vec::new();
    for (n, case) in CASES.iter().enumerate() {
        let root = fs::canonicalize(dir.path()).unwrap().join(format!("case{n}"));
        fs::create_dir_all(&root).unwrap();
        lay_out(&root, case.files);
        let cwd = root.join(case.cwd);
        let cc = cc_for(case.args);
        let mut args: Vec<String> = ["-O2", "-g", "-MD"].iter().map(|s| s.to_string()).collect();
        args.extend(
            case.args
                .iter()
                .map(|a| a.replace("@ROOT@", root.to_str().unwrap())),
        );
        let local = Command::new(cc).args(&args).current_dir(&cwd).output().unwrap();
        assert!(
            local.status.success(),
            "{}: local: {}",
            case.what,
            text(&local.stderr)
        );
        let want = outputs(&cwd, &args);

        let mut argv: Vec<&str> = vec![PUMP, CLIENT, cc];
        argv.extend(args.iter().map(String::as_str));
        let out = our_client(&cwd, &hosts, &argv, &[]);
        let log = text(&out.stderr);
        if !out.status.success() {
            failures.push(format!("{}: remote compile failed:\n{log}", case.what));
            continue;
        }
        let pumped = log.contains("in pump mode (protocol 3");
        match case.plain {
            None if !pumped => failures.push(format!("{}: not sent in pump mode:\n{log}", case.what)),
            Some(why) if pumped || !log.contains(why) => failures.push(format!(
                "{}: should stay in plain mode saying {why:?}:\n{log}",
                case.what
            )),
            _ => {}
        }
        let got = outputs(&cwd, &args);
        if got.0 != want.0 {
            failures.push(format!(
                "{}: the object differs from a local build's\n{log}",
                case.what
            ));
        }
        if got.1 != want.1 {
            failures.push(format!(
                "{}: the .d differs:\nlocal:  {}\nremote: {}",
                case.what,
                text(&want.1),
                text(&got.1)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(daemon.leftovers().is_empty(), "{:?}", daemon.leftovers());
}
