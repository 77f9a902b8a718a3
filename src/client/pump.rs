/*!
Pump mode on the client (protocol 3, hosts written `,cpp,lzo`): the include
server names the files the compile may read, and they go to the server with
the whole command; the server preprocesses. The include server has them
compressed already, in its client root: a job here reads and copies.

Where pump mode cannot be used the job goes as protocol 2, preprocessed
here, exactly where distcc 3.4 does it, and the verbose log says why: no
include server (`INCLUDE_SERVER_PORT`), a preprocessed source, `CPATH` and
friends, the include server giving up, or too many discrepancies (compiles
that failed on a server and then passed here, `DISTCC_MAX_DISCREPANCY`).
*/

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Client, native};
use crate::args::classify::Job;
use crate::protocol::Version;
use crate::protocol::message::{self, PumpEntry};
use crate::pump::wrapper::DISCREPANCY_FILE;

/// A protocol-3 request: the directory, the server's command, and each
/// client name with its file (as the include server keeps it: LZO) or
/// link. A distccd is sent it encoded ([`Prepared::wire`]); a REAPI
/// cluster, as an Action.
pub struct Prepared {
    pub deps_file: Option<String>,
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    pub entries: Vec<(Vec<u8>, PumpEntry)>,
}

impl Prepared {
    /// The request's bytes, as distcc 3.4's client sends them.
    pub fn wire(&self) -> Vec<u8> {
        let words: Vec<Vec<u8>> = self.argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        message::encode_pump(
            Version::Pump,
            self.cwd.as_os_str().as_bytes(),
            &words,
            &self.entries,
        )
    }
}

/// The client path a client-root path stands for: three components
/// dropped, then `.abs`, then `.lzo` (distcc 3.4's rule).
pub fn original_name(p: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    for _ in 0..3 {
        at += 1 + p.get(at + 1..)?.iter().position(|&b| b == b'/')?;
    }
    let mut name = &p[at..];
    for ext in [&b".abs"[..], b".lzo"] {
        let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
        if base.len() > ext.len() && base.ends_with(ext) {
            name = &name[..name.len() - ext.len()];
        }
    }
    Some(name)
}

/// Where the discrepancy counter of the include server at `socket` is.
pub fn discrepancy_file(socket: &Path) -> PathBuf {
    socket.with_file_name(DISCREPANCY_FILE)
}

impl Client {
    /// The request for `job` in pump mode, or why it goes as protocol 2.
    pub(super) fn pump_request(&self, compiler: &Path, job: &Job) -> Result<Prepared, String> {
        let socket = self
            .s
            .include_server
            .as_ref()
            .ok_or("INCLUDE_SERVER_PORT is not set (run the build under pump)")?;
        if job.preprocessed {
            return Err("the source is already preprocessed".into());
        }
        if let Some(v) = self.s.include_env {
            return Err(format!("{v} is set, and a server would not search it"));
        }
        let failed = fs::metadata(discrepancy_file(socket))
            .map(|m| m.len())
            .unwrap_or(0);
        if failed >= self.s.max_discrepancy {
            return Err(format!(
                "{failed} pump-mode compile(s) failed on a server and passed here \
                 (DISTCC_MAX_DISCREPANCY={}): pump mode is off for this build",
                self.s.max_discrepancy
            ));
        }
        let args = job.pump.clone()?;
        let mut argv = args.argv;
        // The include server runs this compiler; the server its own name
        // for it (rewritten for cross-compiling like plain mode's).
        let mut scan_argv = argv.clone();
        scan_argv[0] = compiler.display().to_string();
        argv[0] = job.server_argv[0].clone();
        if job.native {
            let mut j = job.clone();
            j.server_argv = argv;
            native::resolve(compiler, &mut j, &self.child_env).map_err(|e| e.to_string())?;
            argv = j.server_argv;
        }
        let cwd = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
        if job.needs_debug_dir {
            argv.push(format!("-fdebug-compilation-dir={}", cwd.display()));
        }
        let paths = crate::pump::server::ask(socket, &cwd, &scan_argv, self.s.io_timeout)?;
        let mut wire = Vec::with_capacity(paths.len());
        for p in &paths {
            let raw = p.as_os_str().as_bytes();
            let name =
                original_name(raw).ok_or_else(|| format!("the include server sent {}", p.display()))?;
            let m = fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let entry = if m.file_type().is_symlink() {
                PumpEntry::Link(
                    fs::read_link(p)
                        .map_err(|e| format!("{}: {e}", p.display()))?
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else {
                PumpEntry::File(fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?)
            };
            wire.push((name.to_vec(), entry));
        }
        Ok(Prepared {
            deps_file: args.deps_file,
            cwd,
            argv,
            entries: wire,
        })
    }

    /// Counts a compile that failed on a server and passed here.
    pub(super) fn add_discrepancy(&self) {
        if let Some(socket) = &self.s.include_server {
            use std::io::Write;
            let f = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(discrepancy_file(socket));
            if let Ok(mut f) = f {
                let _ = f.write_all(b"@");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_root_names() {
        let cases: [(&str, Option<&str>); 6] = [
            (
                "/dev/shm/tmpx.include_server-1-1/tmp/p/src/main.c.lzo",
                Some("/tmp/p/src/main.c"),
            ),
            (
                "/tmp/distcc-pump-1-0/root/p/abs_inc/absolute.h.lzo.abs",
                Some("/p/abs_inc/absolute.h"),
            ),
            ("/tmp/a/b/usr/include", Some("/usr/include")),
            (
                "/tmp/a/b/p/forcing_technique_271828",
                Some("/p/forcing_technique_271828"),
            ),
            ("/tmp/a/b/p/.lzo", Some("/p/.lzo")),
            ("/tmp/a/b", None),
        ];
        for (p, want) in cases {
            assert_eq!(original_name(p.as_bytes()), want.map(str::as_bytes), "{p}");
        }
    }
}
