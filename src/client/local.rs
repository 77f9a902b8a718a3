//! Compiling here: the user's own command as they typed it, in one of the
//! `cpu_localhost_N` slots that local compiles, `localhost` host entries
//! and local preprocessing share with distcc 3.4 clients.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use super::lock::{self, Slot};
use super::outcome::{Failure, Outcome};
use super::{Client, log};
use crate::monitor::state::Phase;

impl Client {
    /// Waits for a free `cpu_localhost_N` slot, N < `n`.
    pub(super) fn local_slot(&self, n: u32) -> Option<Slot> {
        let locks = self.locks.as_ref()?;
        let names: Vec<String> = (0..n.max(1)).map(|i| format!("cpu_localhost_{i}")).collect();
        let busy = || {
            log::info(&format!(
                "all {} local slots are busy; waiting for one",
                names.len()
            ))
        };
        lock::take_first_free(&locks.0, &names, self.s.pause, busy)
            .map(|(_, s)| s)
            .map_err(|e| log::warn(&format!("cannot lock in {}: {e}", locks.0.display())))
            .ok()
    }

    /// Runs `original` here, for `why`, in one of `slots` local slots, or
    /// with no slot of its own (`None`: one is held already, or none applies).
    pub(super) fn run_local(
        &self,
        compiler: &Path,
        original: &[OsString],
        why: String,
        slots: Option<u32>,
    ) -> Outcome {
        let slot = slots.and_then(|n| self.local_slot(n));
        let input = original
            .iter()
            .rev()
            .map(|a| a.to_string_lossy())
            .find(|a| crate::args::filename::is_source(a));
        let slot_no = slot.as_ref().map_or(0, |s| s.index);
        self.progress.set(
            Phase::Compile,
            input.as_deref().unwrap_or(""),
            "localhost",
            slot_no,
        );
        let mut cmd = Command::new(compiler);
        if let Some((arg0, args)) = original.split_first() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
            cmd.args(args);
        }
        match cmd.envs(self.child_env.iter().map(|(k, v)| (k, v))).status() {
            Ok(status) => Outcome::Local { why, status },
            Err(error) => Outcome::Failed(Failure::CannotRun {
                program: compiler.to_path_buf(),
                error,
            }),
        }
    }
}
