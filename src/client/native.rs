/*!
`-march=native` (and `-mtune=`/`-mcpu=native`) mean "this CPU", which a
server cannot know. gcc's driver turns them into explicit flags before cc1
runs; asking it to show that (`-v`) gives the same flags to send instead.
*/

use std::path::Path;
use std::process::{Command, Stdio};

use crate::args::classify::Job;

fn is_native(w: &str) -> bool {
    matches!(w, "-march=native" | "-mtune=native" | "-mcpu=native")
}

/// The flags cc1 received, as the driver's `-v` output shows them. Pure.
pub fn flags_from_verbose(stderr: &str) -> Option<Vec<String>> {
    let line = stderr.lines().find(|l| {
        l.trim_start()
            .split(' ')
            .next()
            .is_some_and(|p| p.ends_with("/cc1"))
    })?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w.starts_with("-m") {
            out.push(w.to_owned());
        } else if w == "--param" && i + 1 < words.len() {
            out.push(format!("--param={}", words[i + 1]));
            i += 1;
        }
        i += 1;
    }
    (!out.is_empty()).then_some(out)
}

/// Why a native job must stay here.
#[derive(Debug)]
pub enum Unresolved {
    Clang,
    /// With `-g`, gcc records its flags in an order only a local compile
    /// reproduces.
    DebugRecord,
    CannotAsk(std::io::Error),
    NoAnswer,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresolved::Clang => write!(
                f,
                "-march=native: only gcc's answer for this CPU is resolved; clang compiles it here"
            ),
            Unresolved::DebugRecord => write!(
                f,
                "-march=native with -g: the debug info records gcc's flags in an order only a local compile reproduces"
            ),
            Unresolved::CannotAsk(e) => {
                write!(
                    f,
                    "-march=native: could not ask the compiler for this CPU's flags: {e}"
                )
            }
            Unresolved::NoAnswer => write!(f, "-march=native: the compiler did not show this CPU's flags"),
        }
    }
}

/// `Ok` with `job.server_argv` resolved, or why the job must stay here.
pub fn resolve(compiler: &Path, job: &mut Job, env: &[(String, String)]) -> Result<(), Unresolved> {
    let name = compiler
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.contains("clang") {
        return Err(Unresolved::Clang);
    }
    // gcc records its flags in the debug info in the order cc1 got them;
    // flags given to the driver are reordered, so only a local compile
    // reproduces the record.
    let debug = job.server_argv.iter().any(|w| w.starts_with("-g") && w != "-g0");
    let unrecorded = job.server_argv.iter().any(|w| w == "-gno-record-gcc-switches");
    if debug && !unrecorded {
        return Err(Unresolved::DebugRecord);
    }
    let natives: Vec<String> = job.server_argv.iter().filter(|w| is_native(w)).cloned().collect();
    let out = Command::new(compiler)
        .args(&natives)
        .args(["-E", "-v", "-x", "c", "/dev/null", "-o", "/dev/null"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(Unresolved::CannotAsk)?;
    let flags = flags_from_verbose(&String::from_utf8_lossy(&out.stderr)).ok_or(Unresolved::NoAnswer)?;
    // `job.native` means a native word is there; without one, nothing to do.
    let Some(at) = job.server_argv.iter().position(|w| is_native(w)) else {
        job.native = false;
        return Ok(());
    };
    job.server_argv.retain(|w| !is_native(w));
    job.server_argv.splice(at..at, flags);
    job.native = false;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cc1_line() {
        let err = "Using built-in specs.\nCOLLECT_GCC=gcc\n /usr/lib/gcc/x86_64-linux-gnu/12/cc1 -E -quiet -v -imultiarch x86_64-linux-gnu /dev/null -o /dev/null -march=znver3 -mmmx -mno-avx512f --param l1-cache-size=32 --param l2-cache-size=512 -mtune=znver3 -fasynchronous-unwind-tables -dumpbase null\nignoring nonexistent directory\n";
        assert_eq!(
            flags_from_verbose(err).unwrap(),
            [
                "-march=znver3",
                "-mmmx",
                "-mno-avx512f",
                "--param=l1-cache-size=32",
                "--param=l2-cache-size=512",
                "-mtune=znver3"
            ]
        );
        assert_eq!(flags_from_verbose("no compiler line here"), None);
    }
}
