//! The client's state record for monitors (`$DISTCC_DIR/state/binstate_PID`),
//! rewritten at each phase and removed when the client exits.

use std::fs;
use std::path::{Path, PathBuf};

use crate::monitor::state::{self, Phase, State};

pub struct Progress {
    /// `None` when there is no usable DISTCC_DIR: monitoring is then off.
    path: Option<PathBuf>,
}

impl Progress {
    pub fn new(distcc_dir: Option<&Path>) -> Progress {
        let path = distcc_dir.and_then(|d| {
            let dir = d.join("state");
            fs::create_dir_all(&dir).ok()?;
            Some(dir.join(format!("binstate_{}", std::process::id())))
        });
        Progress { path }
    }

    /// Writes the record through a temporary name that monitors do not read
    /// (they read `binstate_*`), so they never see half a record.
    pub fn set(&self, phase: Phase, input: &str, host: &str, slot: u32) {
        let Some(path) = &self.path else { return };
        let file = input.rsplit('/').next().unwrap_or(input);
        let record = state::encode(&State {
            pid: u64::from(std::process::id()),
            file: file.to_owned(),
            host: host.to_owned(),
            slot: slot as i32,
            phase,
        });
        let tmp = path.with_file_name(format!(".binstate_{}.tmp", std::process::id()));
        if fs::write(&tmp, record)
            .and_then(|()| fs::rename(&tmp, path))
            .is_err()
        {
            let _ = fs::remove_file(&tmp);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_file(p);
        }
    }
}
