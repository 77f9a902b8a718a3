//! The host list, read once per run (`$DISTCC_HOSTS`, then
//! `$DISTCC_DIR/hosts`, then `/etc/distcc/hosts`) and shuffled if it says
//! `--randomize`. Local compiles take their slot count from it too, so it is
//! read before anything runs and then passed along.

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use super::hosts::{self, HostList, HostsError};
use super::settings::Settings;

#[derive(Debug, Default)]
pub struct Plan {
    pub list: HostList,
    /// Where the list came from, for messages; `None` when no host list
    /// was set anywhere.
    pub source: Option<String>,
    /// What `+zeroconf` found, when the list has it.
    pub zeroconf: Option<super::zeroconf::Discovery>,
}

/// A host list that does not parse, and where it came from.
#[derive(Clone, Debug)]
pub struct PlanError {
    pub source: String,
    pub error: HostsError,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.error)
    }
}

impl std::error::Error for PlanError {}

impl Plan {
    pub fn load(s: &Settings) -> Result<Plan, PlanError> {
        let user_file = s.distcc_dir.as_ref().map(|d| d.join("hosts"));
        let source = hosts::load_source(
            s.hosts.as_deref(),
            user_file.as_deref(),
            Path::new(hosts::SYSTEM_HOSTS_FILE),
        );
        let Some(text) = source.text() else {
            return Ok(Plan::default());
        };
        let name = source.name();
        let mut list = hosts::parse(text).map_err(|error| PlanError {
            source: name.clone(),
            error,
        })?;
        let zeroconf = list.zeroconf.map(|at| {
            let path = std::env::var("PATH").unwrap_or_default();
            let found = super::zeroconf::discover(s.distcc_dir.as_deref(), &path);
            let at = at.min(list.hosts.len());
            list.hosts
                .splice(at..at, found.hosts.iter().map(|(h, _)| h.clone()));
            found
        });
        if list.randomize {
            list.shuffle(u64::from(std::process::id()) ^ now_nanos());
        }
        Ok(Plan {
            list,
            source: Some(name),
            zeroconf,
        })
    }

    /// distcc's warning for a plan with no hosts.
    pub fn why_empty(&self) -> String {
        match &self.source {
            None => "no hostlist is set; can't distribute work".into(),
            Some(name) => match &self.zeroconf {
                Some(z) => format!(
                    "{name} contained no hosts and +zeroconf found none ({}); can't distribute work",
                    z.how
                ),
                None => format!("{name} contained no hosts; can't distribute work"),
            },
        }
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into())
}
