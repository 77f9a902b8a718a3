//! distcc: see `distcc::client`.
//!
//! The client runs once per compile, so its start-up is paid on every job.
//! It skips std's runtime start-up (`no_main`), which reads /proc/self/maps
//! to place a stack guard and maps an alternate signal stack: work the
//! client never uses. The two parts it needs are done here instead.

// Under `cargo test` the harness brings its own main.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use nix::libc;

#[cfg(not(test))]
#[allow(unsafe_code)] // the C entry point and SIG_IGN; see below
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    use nix::sys::signal::{SigHandler, Signal, signal};
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::os::fd::{AsRawFd, IntoRawFd};

    // A closed stdin, stdout or stderr would otherwise be reused by the
    // first file or socket opened, and a diagnostic could land in an object
    // file or on the wire: fill any gap with /dev/null, as std does.
    while let Ok(f) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        if f.as_raw_fd() > 2 {
            break;
        }
        let _ = f.into_raw_fd();
    }
    // A server or ssh that goes away must be an EPIPE the client can fall
    // back from, not a death by SIGPIPE. Sound: SIG_IGN installs no handler.
    // Children get the default back from std's spawn.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    // std captures the arguments itself on glibc (an .init_array hook).
    let code = distcc::client::main(std::env::args_os().collect());
    let _ = std::io::stdout().flush();
    libc::c_int::from(code)
}
