//! The daemon's directive scan (`args::server::check_preprocessed`) against
//! the real compilers. Each row is preprocessed text that makes gcc or clang
//! open or look for a file. It is first compiled as the daemon would, with
//! nothing in the way, to show the compiler really does it (so a row that
//! stops working fails instead of passing for nothing); then the scan must
//! refuse the same bytes. The sandbox's own test is `sandbox.rs`; here the
//! scan stands alone, as it must for a probe: under the sandbox a compiler
//! still tells "Permission denied" from "No such file", so which files exist
//! on the server is the scan's to keep.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use distcc::args::server::check_preprocessed;

use crate::common::*;

/// Lower case and an identifier: gas quotes a bad line lower-cased, and
/// clang quotes it as a source line.
const CANARY: &str = "scan_canary_3f9c2a7e51d04b68";

/// How a row shows that the compiler went to the file.
#[derive(Clone, Copy)]
enum Proof {
    /// The canary's text comes back in the object or the diagnostics.
    Reads,
    /// The compile's outcome (status, diagnostics, object) differs with the
    /// file there and without it: one bit about the server per job.
    Probes,
}

struct Attack {
    name: &'static str,
    compiler: &'static str,
    /// Flags before `-x`.
    flags: &'static [&'static str],
    /// `i` or `ii`.
    ext: &'static str,
    /// The source, with `@` for the canary's absolute path.
    src: &'static str,
    proof: Proof,
}

const fn reads(name: &'static str, compiler: &'static str, src: &'static str) -> Attack {
    Attack {
        name,
        compiler,
        flags: &[],
        ext: "i",
        src,
        proof: Proof::Reads,
    }
}

const fn probes(name: &'static str, compiler: &'static str, src: &'static str) -> Attack {
    Attack {
        name,
        compiler,
        flags: &[],
        ext: "i",
        src,
        proof: Proof::Probes,
    }
}

const ATTACKS: &[Attack] = &[
    reads(
        "#include split by a splice after spaces",
        "clang",
        "#inc\\   \nlude \"@\"\nint x;\n",
    ),
    reads(
        "#include split by a splice after a space and a tab",
        "clang",
        "#\\ \t\ninclude \"@\"\nint x;\n",
    ),
    reads(
        "#include split by a splice that ends in a lone CR",
        "clang",
        "#inc\\\rlude \"@\"\nint x;\n",
    ),
    Attack {
        flags: &["-std=c89"],
        ..reads(
            "#include split by the trigraph ??/ under -std=c89",
            "clang",
            "#inc??/\nlude \"@\"\nint x;\n",
        )
    },
    Attack {
        flags: &["-std=c89"],
        ..reads("??=include under -std=c89", "clang", "??=include \"@\"\nint x;\n")
    },
    Attack {
        ext: "ii",
        ..reads(
            "#include after a raw string whose line starts with /*",
            "clang++",
            "const char *s = R\"x(\n/*\n)x\";\n#include \"@\"\n// */\nint x;\n",
        )
    },
    reads(
        "#include after a comment over lines at the file's start",
        "clang",
        "/*\n*/ #include \"@\"\nint x;\n",
    ),
    reads(
        "#include after a lone CR, which ends a line",
        "clang",
        "int x;\r#include \"@\"\n",
    ),
    reads(
        "#include after a UTF-8 BOM",
        "clang",
        "\u{feff}#include \"@\"\nint x;\n",
    ),
    reads("#include after a NUL", "clang", "\0#include \"@\"\nint x;\n"),
    reads(
        ".incbin in asm (gcc)",
        "gcc",
        "asm(\".pushsection .rodata\\n.incbin \\\"@\\\"\\n.popsection\");\nint x;\n",
    ),
    reads(
        ".incbin in asm (clang's integrated assembler)",
        "clang",
        "asm(\".pushsection .rodata\\n.incbin \\\"@\\\"\\n.popsection\");\nint x;\n",
    ),
    reads(
        ".INCBIN in upper case",
        "clang",
        "asm(\".pushsection .rodata\\n.INCBIN \\\"@\\\"\\n.popsection\");\nint x;\n",
    ),
    reads(
        ".incbin split by a splice in the asm string",
        "clang",
        "asm(\".pushsection .rodata\\n.inc\\\nbin \\\"@\\\"\\n.popsection\");\nint x;\n",
    ),
    reads(
        ".include in asm (gcc; lines come back as errors)",
        "gcc",
        "asm(\".include \\\"@\\\"\");\nint x;\n",
    ),
    reads(
        ".include in asm (clang)",
        "clang",
        "asm(\".include \\\"@\\\"\");\nint x;\n",
    ),
    probes(
        "#pragma GCC dependency (gcc)",
        "gcc",
        "#pragma GCC dependency \"@\"\nint x;\n",
    ),
    probes(
        "#pragma GCC dependency (clang)",
        "clang",
        "#pragma GCC dependency \"@\"\nint x;\n",
    ),
    probes(
        "#pragma clang dependency",
        "clang",
        "#pragma clang dependency \"@\"\nint x;\n",
    ),
    probes(
        "#pragma GCC dependency after a lone CR (gcc)",
        "gcc",
        "int x;\r#pragma GCC dependency \"@\"\n",
    ),
    probes(
        "#pragma GCC dependency on a line after a splice (gcc does not splice a .i)",
        "gcc",
        "int x; \\\n#pragma GCC dependency \"@\"\n",
    ),
    probes(
        "#pragma GCC dependency after a comment over lines (gcc)",
        "gcc",
        "#pragma GCC /*\n*/ dependency \"@\"\nint x;\n",
    ),
    probes(
        "#pragma GCC dependency after a comment over lines (clang)",
        "clang",
        "#pragma GCC /*\n*/ dependency \"@\"\nint x;\n",
    ),
    probes(
        "#pragma GCC pch_preprocess (gcc reads a PCH)",
        "gcc",
        "#pragma GCC pch_preprocess \"@\"\nint x;\n",
    ),
    probes(
        "#if __has_include",
        "clang",
        "#if __has_include(\"@\")\nint yes;\n#endif\nint x;\n",
    ),
    probes(
        "#if __has_include_next",
        "clang",
        "#if __has_include_next(\"@\")\nint yes;\n#endif\nint x;\n",
    ),
    probes(
        "#if __has_include pasted from pieces",
        "clang",
        "#define C(a, b) a##b\n#if C(__has_, include)(\"@\")\nint yes;\n#endif\nint x;\n",
    ),
    probes(
        "_Pragma(\"GCC dependency\")",
        "clang",
        "_Pragma(\"GCC dependency \\\"@\\\"\")\nint x;\n",
    ),
    probes(
        "_Pragma pasted from pieces",
        "clang",
        "#define C(a, b) a##b\nC(_Pra, gma)(\"GCC dependency \\\"@\\\"\")\nint x;\n",
    ),
    probes(
        "_Pragma with a stringified operand",
        "clang",
        "#define P(x) _Pragma(#x)\nP(GCC dependency \"@\")\nint x;\n",
    ),
    Attack {
        flags: &["-std=c++20"],
        ext: "ii",
        ..probes("a C++20 header-unit import", "clang++", "import \"@\";\nint x;\n")
    },
];

/// Ways to read a file the scan cannot see, kept to say so: each must still
/// read the canary and still pass the scan (a row the scan learns to refuse
/// moves to `ATTACKS`). Only the sandbox stops these.
const BEYOND_THE_SCAN: &[Attack] = &[
    reads(
        ".incbin spelled by string concatenation",
        "gcc",
        "asm(\".pushsection .rodata\\n.inc\" \"bin \\\"@\\\"\\n.popsection\");\nint x;\n",
    ),
    reads(
        ".incbin spelled with a hex escape",
        "clang",
        "asm(\".pushsection .rodata\\n.\\x69ncbin \\\"@\\\"\\n.popsection\");\nint x;\n",
    ),
    reads(
        ".incbin spelled by macros",
        "clang",
        "#define A \".pushsection .rodata\\n.inc\"\n#define B \"bin \\\"@\\\"\\n.popsection\"\nasm(A B);\nint x;\n",
    ),
    reads(
        "a line marker naming the file, then an error (gcc quotes the line)",
        "gcc",
        "# 1 \"@\"\nint x = ;\n",
    ),
];

/// Compiles `x.<ext>` in `job` as the daemon runs a job: the language pinned
/// to its preprocessed form, relative names.
fn compile(a: &Attack, job: &Path) -> (Output, Vec<u8>) {
    let obj = job.join("x.o");
    let _ = fs::remove_file(&obj);
    let lang = if a.ext == "ii" {
        "c++-cpp-output"
    } else {
        "cpp-output"
    };
    let input = format!("x.{}", a.ext);
    let out = Command::new(a.compiler)
        .args(a.flags)
        .args(["-x", lang, "-c", &input, "-o", "x.o"])
        .current_dir(job)
        .env("TMPDIR", job)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, fs::read(&obj).unwrap_or_default())
}

/// Runs the row and says whether the compiler went to the file.
fn goes_to_the_file(a: &Attack, dir: &TestDir, n: usize) -> Result<bool, String> {
    if !have(a.compiler) {
        return Err(format!("{} is not installed", a.compiler));
    }
    let job = dir.join(&format!("job-{n}"));
    fs::create_dir_all(&job).unwrap();
    let canary = job.join("canary.txt");
    fs::write(&canary, format!("{CANARY}\n")).unwrap();
    let src = a.src.replace('@', canary.to_str().unwrap());
    fs::write(job.join(format!("x.{}", a.ext)), &src).unwrap();
    let (with, obj) = compile(a, &job);
    Ok(match a.proof {
        Proof::Reads => [&with.stdout[..], &with.stderr[..], &obj[..]]
            .iter()
            .any(|b| b.windows(CANARY.len()).any(|w| w == CANARY.as_bytes())),
        Proof::Probes => {
            fs::remove_file(&canary).unwrap();
            let (without, obj_without) = compile(a, &job);
            (with.status.code(), &with.stderr, obj) != (without.status.code(), &without.stderr, obj_without)
        }
    })
}

#[test]
fn the_scan_refuses_every_way_the_compilers_go_to_a_file() {
    let dir = TestDir::new("scan-vs-compiler");
    let mut wrong = Vec::new();
    for (n, a) in ATTACKS.iter().enumerate() {
        match goes_to_the_file(a, &dir, n) {
            Err(why) => eprintln!("skipped '{}': {why}", a.name),
            Ok(false) => wrong.push(format!(
                "'{}' no longer makes {} go to the file, so it proves nothing",
                a.name, a.compiler
            )),
            Ok(true) => {
                let src = a.src.replace('@', "/etc/passwd");
                if check_preprocessed(src.as_bytes()).is_ok() {
                    wrong.push(format!("the scan lets '{}' through", a.name));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn what_the_scan_cannot_see_still_reads_the_file_and_is_left_to_the_sandbox() {
    let dir = TestDir::new("scan-limits");
    let mut wrong = Vec::new();
    for (n, a) in BEYOND_THE_SCAN.iter().enumerate() {
        match goes_to_the_file(a, &dir, n) {
            Err(why) => eprintln!("skipped '{}': {why}", a.name),
            Ok(false) => wrong.push(format!("'{}' no longer reads the file: drop the row", a.name)),
            Ok(true) => {
                let src = a.src.replace('@', "/etc/passwd");
                if check_preprocessed(src.as_bytes()).is_err() {
                    wrong.push(format!("the scan now refuses '{}': move it to ATTACKS", a.name));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
