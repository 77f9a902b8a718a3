/*!
The include server's socket: distcc 3.4's protocol, an AF_UNIX stream per
compile. The client sends `CDIR` (its directory) and `ARGC`/`ARGV` (the
compile command); the answer is `ARGC`/`ARGV` with the paths of the client
root to send, or `ARGC 0`: "preprocess locally". After `ARGC 0` comes one
`ARGV` more with the reason, which distcc 3.4's client never reads (it
closes after the count) and ours logs.

One connection at a time: an answer costs a few milliseconds once the
build's caches are warm, and one thread owns the caches.
*/

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::closure::{Build, Counts};
use super::root::Root;
use crate::protocol::token::{self, HEADER_LEN, Tag};

/// A request's words: longer ones are not a compile command.
const MAX_WORD: u32 = 1 << 20;
const MAX_WORDS: u32 = 1 << 16;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn read_header(r: &mut impl Read, tag: Tag) -> io::Result<u32> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h)?;
    token::expect(&h, tag).map_err(|e| bad(e.to_string()))
}

fn read_word(r: &mut impl Read, tag: Tag) -> io::Result<Vec<u8>> {
    let len = read_header(r, tag)?;
    if len > MAX_WORD {
        return Err(bad(format!("a word of {len} bytes")));
    }
    let mut v = vec![0; len as usize];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn read_argv(r: &mut impl Read) -> io::Result<Vec<Vec<u8>>> {
    let n = read_header(r, Tag::Argc)?;
    if n > MAX_WORDS {
        return Err(bad(format!("{n} words")));
    }
    (0..n).map(|_| read_word(r, Tag::Argv)).collect()
}

/// A request, as a client sends it.
pub fn encode_request(cwd: &Path, argv: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    token::encode_body(Tag::Cdir, cwd.as_os_str().as_bytes(), &mut out);
    token::encode(Tag::Argc, argv.len() as u32, &mut out);
    for a in argv {
        token::encode_body(Tag::Argv, a.as_bytes(), &mut out);
    }
    out
}

/// What the include server said: the paths to send, or why not.
pub fn ask(socket: &Path, cwd: &Path, argv: &[String], timeout: Duration) -> Result<Vec<PathBuf>, String> {
    use std::os::unix::ffi::OsStringExt;
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the include server at {}: {e}", socket.display()))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    s.write_all(&encode_request(cwd, argv))
        .map_err(|e| format!("talking to the include server: {e}"))?;
    let mut r = BufReader::new(s);
    let words = read_argv(&mut r).map_err(|e| format!("reading the include server's answer: {e}"))?;
    if words.is_empty() {
        let why = read_word(&mut r, Tag::Argv)
            .map(|w| String::from_utf8_lossy(&w).into_owned())
            .unwrap_or_else(|_| "no reason given".into());
        return Err(format!("the include server gave up: {why}"));
    }
    Ok(words
        .into_iter()
        .map(|w| PathBuf::from(std::ffi::OsString::from_vec(w)))
        .collect())
}

pub struct Server {
    pub build: Build,
    pub root: Root,
}

impl Server {
    /// Answers one connection.
    fn answer(&mut self, stream: UnixStream) -> io::Result<()> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut r = BufReader::new(&stream);
        let cwd = read_word(&mut r, Tag::Cdir)?;
        let argv = read_argv(&mut r)?;
        let cwd = PathBuf::from(std::ffi::OsStr::from_bytes(&cwd));
        let argv: Vec<String> = argv
            .into_iter()
            .map(|w| String::from_utf8(w).map_err(|_| bad("a word is not UTF-8")))
            .collect::<io::Result<_>>()?;
        let result = if cwd.is_absolute() {
            self.build.closure(&cwd, &argv).and_then(|c| self.root.answer(&c))
        } else {
            Err(super::command::NotCovered("CDIR is not absolute".into()))
        };
        let mut out = Vec::new();
        match result {
            Ok(paths) => {
                token::encode(Tag::Argc, paths.len() as u32, &mut out);
                for p in &paths {
                    token::encode_body(Tag::Argv, p.as_os_str().as_bytes(), &mut out);
                }
            }
            Err(why) => {
                let source = argv.iter().rev().find(|a| crate::args::filename::is_source(a));
                eprintln!(
                    "pump: include server: {}: preprocessing locally: {why}",
                    source.map_or("a compile", String::as_str)
                );
                token::encode(Tag::Argc, 0, &mut out);
                token::encode_body(Tag::Argv, why.to_string().as_bytes(), &mut out);
            }
        }
        let mut w = BufWriter::new(&stream);
        w.write_all(&out)?;
        w.flush()
    }

    /// Serves until `stop` is set (then a connection wakes it).
    pub fn serve(&mut self, listener: &UnixListener, stop: &Arc<AtomicBool>) -> Counts {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(s) = conn {
                // A client that hangs up or sends garbage costs only itself.
                let _ = self.answer(s);
            }
        }
        self.build.counts
    }
}
