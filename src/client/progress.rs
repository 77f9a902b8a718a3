//! The client's state record for monitors (`$DISTCC_DIR/state/binstate_PID`),
//! updated at each phase and removed when the client exits.

use std::cell::RefCell;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::monitor::state::{self, Phase, State};

pub struct Progress {
    /// `None` when there is no usable DISTCC_DIR: monitoring is then off.
    path: Option<PathBuf>,
    /// The record's file once it exists.
    file: RefCell<Option<File>>,
}

impl Progress {
    pub fn new(distcc_dir: Option<&Path>) -> Progress {
        let path = distcc_dir.and_then(|d| {
            let dir = d.join("state");
            fs::create_dir_all(&dir).ok()?;
            Some(dir.join(format!("binstate_{}", std::process::id())))
        });
        Progress {
            path,
            file: RefCell::new(None),
        }
    }

    /// The first record appears through a rename from a name monitors do
    /// not read, so no monitor sees a short one. Later phases overwrite the
    /// same 296 bytes in place: every record has the same size and header,
    /// so a reader always finds a whole, valid record, and the renames
    /// (tens of microseconds each on a journalling file system) are saved.
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
        let mut open = self.file.borrow_mut();
        if let Some(f) = open.as_ref() {
            let _ = f.write_all_at(&record, 0);
            return;
        }
        let tmp = path.with_file_name(format!(".binstate_{}.tmp", std::process::id()));
        // A new file, never one found at the name (a stale one, or a link).
        let _ = fs::remove_file(&tmp);
        let new = fs::OpenOptions::new().write(true).create_new(true).open(&tmp);
        // The descriptor stays valid through the rename: no second open.
        let made = new.and_then(|f| {
            f.write_all_at(&record, 0)?;
            fs::rename(&tmp, path)?;
            Ok(f)
        });
        match made {
            Ok(f) => *open = Some(f),
            Err(_) => {
                let _ = fs::remove_file(&tmp);
            }
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
