//! The client's messages, in distcc's format: `distcc[PID] message`.
//! Warnings go to stderr (distcc's default level); with `DISTCC_VERBOSE=1`
//! every decision is said there too. `DISTCC_LOG` appends all of them to a
//! file instead, and then stderr carries only the compiler's own output, as
//! with distcc 3.4: configure probes that expect a silent compiler depend on
//! it. Only a log file that cannot be opened sends them back to stderr.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

struct Sink {
    verbose: bool,
    file: Option<Mutex<File>>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

pub fn init(verbose: bool, file: Option<&Path>) {
    let file = file.and_then(|p| match OpenOptions::new().create(true).append(true).open(p) {
        Ok(f) => Some(Mutex::new(f)),
        Err(e) => {
            eprintln!(
                "distcc[{}] failed to open logfile {}: {e}",
                std::process::id(),
                p.display()
            );
            None
        }
    });
    let _ = SINK.set(Sink { verbose, file });
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Said only when asked for (DISTCC_VERBOSE, DISTCC_LOG).
    Info,
    /// distcc's default level: stderr, or the log file instead.
    Warn,
    /// Stderr even with a log file, and the log file too.
    Fatal,
}

fn emit(line: &str, level: Level) {
    let line = format!("distcc[{}] {line}\n", std::process::id());
    let sink = SINK.get();
    let to_stderr = if let Some(Some(f)) = sink.map(|s| s.file.as_ref()) {
        if let Ok(mut f) = f.lock() {
            let _ = f.write_all(line.as_bytes());
        }
        level == Level::Fatal
    } else {
        level != Level::Info || sink.is_some_and(|s| s.verbose)
    };
    if to_stderr {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// A decision worth telling a user who asked (DISTCC_VERBOSE / DISTCC_LOG).
pub fn info(msg: &str) {
    emit(msg, Level::Info);
}

/// Something the user should see in any case.
pub fn warn(msg: &str) {
    emit(&format!("Warning: {msg}"), Level::Warn);
}

pub fn error(msg: &str) {
    emit(&format!("ERROR: {msg}"), Level::Warn);
}

/// The error that ends a run without a compile: on stderr even with a log
/// file, since nothing else would tell the user why the build stopped
/// (distcc 3.4 shows the server's "failed to exec" there too).
pub fn fatal(msg: &str) {
    emit(&format!("ERROR: {msg}"), Level::Fatal);
}
