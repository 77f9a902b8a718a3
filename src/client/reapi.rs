/*!
A plain-mode job for a REAPI cluster: the compile a distccd would run,
as a remote-execution Action. The input root holds the preprocessed text
under the client's name for it (the source's, with the preprocessed
extension); the Command is the server's command line for it, with the
client's output name; the environment is only `PATH`, so that two clients
with different shells make the same Action. The compiler's identity (its
resolved path, version line and target) is the Action's salt: part of the
action digest, so a cache entry is never reused for another compiler, but
not a platform property, which schedulers match against their workers and
refuse when none offers it. `DISTCC_REAPI_PLATFORM` adds the cluster's own
properties (`container-image=…`).

The identity is asked of the compiler once and kept in `$DISTCC_DIR/reapi/`
while the compiler's file is unchanged: a job pays a `stat`, not two runs.
*/

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::args::classify::Job;
use crate::args::{filename, server};
use crate::reapi;

/// The environment every Action has.
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A name usable inside an input root: relative, no `..`; else its last
/// component.
fn inside(name: &str) -> String {
    let p = Path::new(name);
    let clean = p.is_relative() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if clean {
        return name.to_owned();
    }
    p.file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("input")
        .to_owned()
}

/// `DISTCC_REAPI_PLATFORM`: `key=value` pairs, comma-separated.
pub fn platform(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => out.push((k.trim().to_owned(), v.trim().to_owned())),
            _ => return Err(format!("DISTCC_REAPI_PLATFORM: '{pair}' is not key=value")),
        }
    }
    out.sort();
    Ok(out)
}

/// The Action for `job`, whose preprocessed text is `source`. Pure.
pub fn action(
    job: &Job,
    source: Vec<u8>,
    identity: &str,
    platform: Vec<(String, String)>,
    timeout: Duration,
) -> Result<reapi::Job, server::Refusal> {
    let ext = filename::preprocessed_extension(&job.input)
        .filter(|e| *e != "s")
        .unwrap_or("i");
    let input = {
        let name = inside(&job.input);
        match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() && !stem.ends_with('/') => format!("{stem}.{ext}"),
            _ => format!("{name}.{ext}"),
        }
    };
    let mut output = inside(&job.output);
    if output == input {
        output.push_str(".out");
    }
    let rewritten = server::rewrite(&job.server_argv, |_| input.clone(), &output, &[])?;
    Ok(reapi::Job {
        argv: rewritten.argv,
        env: vec![("PATH".to_owned(), PATH.to_owned())],
        working_dir: String::new(),
        inputs: vec![reapi::Input {
            path: input,
            bytes: source,
            executable: false,
        }],
        outputs: vec![output],
        platform,
        salt: identity.as_bytes().to_vec(),
        timeout,
        do_not_cache: false,
    })
}

/// Pump mode's Action: the include server's files as the input root, laid
/// out as they are under the build's directory (which is the root: the
/// worker's directory stands for the client's), and the server's command,
/// which preprocesses there. Only where that is exactly a local compile:
/// every file and path under the directory and named relatively, no links
/// but the system directories' (the worker's own are used, as a pump
/// server's are), no debug info (which would name the worker's directory).
/// Else why not, and the job goes preprocessed.
pub fn pump_action(
    p: &crate::client::pump::Prepared,
    output: &str,
    identity: &str,
    platform: Vec<(String, String)>,
    timeout: Duration,
) -> Result<reapi::Job, String> {
    use crate::protocol::message::PumpEntry;
    let words = p.argv.get(1..).unwrap_or_default();
    if let Some(w) = words.iter().find(|w| w.starts_with("-g") && *w != "-g0") {
        return Err(format!("{w}: the debug info would name the cluster's directory"));
    }
    if let Some(w) = words.iter().find(|w| {
        w.starts_with('/')
            || w.contains("=/")
            || (w.starts_with('-') && w.get(2..).is_some_and(|r| r.starts_with('/')))
    }) {
        return Err(format!("{w} names an absolute path"));
    }
    let mut prefix = p.cwd.as_os_str().as_encoded_bytes().to_vec();
    prefix.push(b'/');
    let mut inputs = Vec::new();
    for (name, entry) in &p.entries {
        let shown = String::from_utf8_lossy(name);
        match entry {
            // The compiler's own directories: the worker's, as on a server.
            PumpEntry::Link(target)
                if target.starts_with(b"../")
                    && name.first() == Some(&b'/')
                    && !name.starts_with(&prefix) =>
            {
                continue;
            }
            PumpEntry::Link(_) => return Err(format!("{shown} is a symbolic link")),
            PumpEntry::File(lzo) => {
                let rel = name
                    .strip_prefix(prefix.as_slice())
                    .filter(|r| !r.split(|&b| b == b'/').any(|c| c == b".." || c.is_empty()))
                    .ok_or_else(|| format!("{shown} is outside the build's directory"))?;
                let path = String::from_utf8(rel.to_vec()).map_err(|_| format!("{shown} is not UTF-8"))?;
                let bytes = if lzo.is_empty() {
                    Vec::new()
                } else {
                    crate::protocol::lzo::decompress(lzo, 1 << 30).map_err(|e| format!("{shown}: {e:?}"))?
                };
                inputs.push(reapi::Input {
                    path,
                    bytes,
                    executable: false,
                });
            }
        }
    }
    let deps = p.deps_file.clone();
    let mut outputs = vec![output.to_owned()];
    outputs.extend(deps);
    if outputs.iter().any(|o| inside(o) != *o) {
        return Err("an output outside the build's directory".into());
    }
    Ok(reapi::Job {
        argv: p.argv.clone(),
        env: vec![("PATH".to_owned(), PATH.to_owned())],
        working_dir: String::new(),
        inputs,
        outputs,
        platform,
        salt: identity.as_bytes().to_vec(),
        timeout,
        do_not_cache: false,
    })
}

/// The compiler's identity: its resolved path, first `--version` line and
/// `-dumpmachine`, kept in `cache` (a directory) while its file's stat is
/// the same.
pub fn identity(compiler: &Path, cache: Option<&Path>) -> Result<String, String> {
    let real = fs::canonicalize(compiler).map_err(|e| format!("{}: {e}", compiler.display()))?;
    let m = fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    let stamp = format!("{} {} {} {}", real.display(), m.size(), m.mtime(), m.mtime_nsec());
    let file = cache.map(|d| {
        d.join(format!(
            "compiler-{:016x}",
            fnv(real.as_os_str().as_encoded_bytes())
        ))
    });
    if let Some(f) = &file
        && let Ok(text) = fs::read_to_string(f)
        && let Some((s, id)) = text.split_once('\n')
        && s == stamp
    {
        return Ok(id.to_owned());
    }
    let ask = |arg: &str| -> Result<String, String> {
        let out = Command::new(&real)
            .arg(arg)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", real.display()))?;
        if !out.status.success() {
            return Err(format!("{} {arg} failed", real.display()));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned())
    };
    let id = format!(
        "{}; {}; {}",
        real.display(),
        ask("--version")?,
        ask("-dumpmachine")?
    );
    if let (Some(f), Some(d)) = (&file, cache) {
        // Written whole and renamed: a concurrent job reads the old or the new.
        let _ = fs::create_dir_all(d);
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        if fs::write(&tmp, format!("{stamp}\n{id}")).is_ok() {
            let _ = fs::rename(&tmp, f);
        }
    }
    Ok(id)
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::classify::{Verdict, classify};

    fn job(cmd: &str) -> Job {
        let argv: Vec<String> = cmd.split_whitespace().map(String::from).collect();
        match classify(&argv) {
            Verdict::Remote(j) => j,
            v => panic!("{cmd}: {v:?}"),
        }
    }

    #[test]
    fn actions_name_files_as_the_client_does() {
        // (command, input in the root, output, argv after the compiler)
        let cases = [
            (
                "gcc -O2 -c src/a.c -o obj/a.o",
                "src/a.i",
                "obj/a.o",
                "-O2 -c src/a.i -o obj/a.o",
            ),
            ("g++ -g -c x.cc", "x.ii", "x.o", "-g -c x.ii -o x.o"),
            (
                "gcc -c /abs/dir/a.c -o /abs/out/a.o",
                "a.i",
                "a.o",
                "-c a.i -o a.o",
            ),
            ("gcc -c ../up/a.c -o ../a.o", "a.i", "a.o", "-c a.i -o a.o"),
            ("gcc -S a.c -o a.i", "a.i", "a.i.out", "-S a.i -o a.i.out"),
        ];
        for (cmd, input, output, args) in cases {
            let a = action(
                &job(cmd),
                b"int x;".to_vec(),
                "id",
                vec![],
                Duration::from_secs(9),
            )
            .unwrap();
            assert_eq!(a.inputs.len(), 1);
            assert_eq!(a.inputs[0].path, input, "{cmd}");
            assert_eq!(a.outputs, [output], "{cmd}");
            let words: Vec<&str> = a.argv[1..]
                .iter()
                .map(String::as_str)
                .filter(|w| !w.starts_with("-x") && *w != "cpp-output" && *w != "c++-cpp-output")
                .collect();
            assert_eq!(words.join(" "), args, "{cmd}: {:?}", a.argv);
            assert_eq!(a.env, [("PATH".to_owned(), PATH.to_owned())]);
            assert_eq!(a.salt, b"id");
        }
    }

    #[test]
    fn pump_actions_only_where_they_equal_a_local_compile() {
        use crate::client::pump::Prepared;
        use crate::protocol::message::PumpEntry;
        let file = |n: &str, text: &str| {
            (
                n.as_bytes().to_vec(),
                PumpEntry::File(crate::protocol::lzo::compress(text.as_bytes())),
            )
        };
        let link = |n: &str, t: &str| (n.as_bytes().to_vec(), PumpEntry::Link(t.as_bytes().to_vec()));
        let prepared = |argv: &str, entries: Vec<(Vec<u8>, PumpEntry)>| Prepared {
            deps_file: Some("a.d".into()),
            cwd: "/p".into(),
            argv: argv.split_whitespace().map(String::from).collect(),
            entries,
        };
        let ok = prepared(
            "gcc -O2 -Iinc -MD -MF a.d -c src/a.c -o a.o",
            vec![
                file("/p/src/a.c", "int a;"),
                file("/p/inc/h.h", ""),
                link(
                    "/usr/include",
                    "../../../../../../../../../../../../../../../../../../../../../usr/include",
                ),
            ],
        );
        let a = pump_action(&ok, "a.o", "id", vec![], Duration::from_secs(1)).unwrap();
        let got: Vec<(&str, &[u8])> = a
            .inputs
            .iter()
            .map(|i| (i.path.as_str(), i.bytes.as_slice()))
            .collect();
        assert_eq!(got, [("src/a.c", &b"int a;"[..]), ("inc/h.h", &b""[..])]);
        assert_eq!(a.outputs, ["a.o", "a.d"]);
        assert_eq!(a.argv, ok.argv);
        for (argv, entries, why) in [
            (
                "gcc -g -c src/a.c -o a.o",
                vec![file("/p/src/a.c", "")],
                "debug info",
            ),
            (
                "gcc -I/p/inc -c src/a.c -o a.o",
                vec![file("/p/src/a.c", "")],
                "absolute path",
            ),
            (
                "gcc -c /p/src/a.c -o a.o",
                vec![file("/p/src/a.c", "")],
                "absolute path",
            ),
            (
                "gcc -c src/a.c -o a.o",
                vec![file("/elsewhere/h.h", "")],
                "outside the build's directory",
            ),
            (
                "gcc -c src/a.c -o a.o",
                vec![file("/p/../q/h.h", "")],
                "outside the build's directory",
            ),
            (
                "gcc -c src/a.c -o a.o",
                vec![link("/p/inc", "../real")],
                "symbolic link",
            ),
        ] {
            let e = pump_action(
                &prepared(argv, entries),
                "a.o",
                "id",
                vec![],
                Duration::from_secs(1),
            )
            .unwrap_err();
            assert!(e.contains(why), "{argv}: {e}");
        }
    }

    #[test]
    fn platform_properties() {
        assert_eq!(
            platform(" container-image=docker://gcc:12 , OSFamily=linux,"),
            Ok(vec![
                ("OSFamily".to_owned(), "linux".to_owned()),
                ("container-image".to_owned(), "docker://gcc:12".to_owned())
            ])
        );
        assert_eq!(platform(""), Ok(vec![]));
        assert!(platform("novalue").is_err());
        assert!(platform("=v").is_err());
    }

    #[test]
    fn identity_is_kept_while_the_compiler_is_unchanged() {
        let dir = std::env::temp_dir().join(format!("reapi-id-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cc = dir.join("cc");
        fs::write(
            &cc,
            "#!/bin/sh\ncase $1 in --version) echo 'cc 1.0';; -dumpmachine) echo t-1;; esac\n",
        )
        .unwrap();
        fs::set_permissions(&cc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let cache = dir.join("cache");
        let first = identity(&cc, Some(&cache)).unwrap();
        assert_eq!(
            first,
            format!("{}; cc 1.0; t-1", fs::canonicalize(&cc).unwrap().display())
        );
        // Kept: a changed answer is not asked for while the file is the same...
        let kept = fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();
        let text = fs::read_to_string(&kept).unwrap().replace("cc 1.0", "cc 0.9");
        fs::write(&kept, text).unwrap();
        assert!(identity(&cc, Some(&cache)).unwrap().contains("cc 0.9"));
        // ...and asked again when the compiler changes.
        fs::write(
            &cc,
            "#!/bin/sh\ncase $1 in --version) echo 'cc 2.0 new';; -dumpmachine) echo t-1;; esac\n",
        )
        .unwrap();
        assert!(identity(&cc, Some(&cache)).unwrap().contains("cc 2.0 new"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
