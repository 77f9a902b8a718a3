//! Reading `$DISTCC_DIR/state`: the records of running clients.

use std::fs;
use std::path::Path;

use super::state::{self, State};

/// Whether `pid` is a live process (permission errors count as alive).
fn alive(pid: u64) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e != nix::errno::Errno::ESRCH,
    }
}

/// The records of live clients, sorted as distcc sorts them. A record whose
/// process is gone is removed (a client that was killed leaves one behind);
/// unlike distcc 3.4, a record is never judged by its age, so a long compile
/// stays listed.
pub fn poll(state_dir: &Path) -> Vec<State> {
    let Ok(entries) = fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        if !e.file_name().as_encoded_bytes().starts_with(b"binstate_") {
            continue;
        }
        let Ok(bytes) = fs::read(e.path()) else { continue };
        let Ok(s) = state::decode(&bytes) else { continue };
        if !alive(s.pid) {
            let _ = fs::remove_file(e.path());
            continue;
        }
        out.push(s);
    }
    super::text::sort(&mut out);
    out
}
