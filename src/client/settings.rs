//! The client's environment (distcc-3.4.md §4), read once into values. Pure:
//! the caller passes a lookup function.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `$DISTCC_HOSTS`, if set (even empty).
    pub hosts: Option<String>,
    pub distcc_dir: Option<PathBuf>,
    /// `$HOME/.distcc` is created on demand; a `$DISTCC_DIR` must exist.
    pub distcc_dir_is_default: bool,
    pub fallback: bool,
    pub io_timeout: Duration,
    pub connect_timeout: Duration,
    /// Zero disables backoff.
    pub backoff: Duration,
    pub pause: Duration,
    pub skip_local_retry: bool,
    pub verbose: bool,
    pub log_file: Option<PathBuf>,
    pub rewrite_cross: bool,
    /// `$DISTCC_SSH`, split at spaces as distcc does.
    pub ssh: Vec<String>,
    /// `_DISTCC_SAFEGUARD`: how deep in distcc-started processes we are.
    pub safeguard: u32,
    pub tmpdir: PathBuf,
    /// `DEPENDENCIES_OUTPUT` / `SUNPRO_DEPENDENCIES`: the preprocessor writes
    /// dependencies under rules of its own; such compiles stay local.
    pub deps_env: bool,
    /// `INCLUDE_SERVER_PORT`: the include server's socket (set by `pump`).
    pub include_server: Option<PathBuf>,
    /// The first of `CPATH`, `C_INCLUDE_PATH`, … that is set: the
    /// preprocessor reads it, a server would not (pump mode stays off).
    pub include_env: Option<&'static str>,
    /// `DISTCC_MAX_DISCREPANCY` (default 1).
    pub max_discrepancy: u64,
    /// `DISTCC_REAPI_PLATFORM`: the cluster's own platform properties.
    pub reapi_platform: Vec<(String, String)>,
    /// `DISTCC_REAPI_TOKEN_FILE`: a bearer token for the cluster.
    pub reapi_token_file: Option<PathBuf>,
}

/// Variables that add to the compiler's search path.
const INCLUDE_ENV: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
];

/// distcc's booleans: only "0" and "1" mean anything; other values keep the default.
fn boolean(v: Option<String>, default: bool) -> bool {
    match v.as_deref() {
        Some("0") => false,
        Some("1") => true,
        _ => default,
    }
}

/// A variable whose value is not what it must be (distcc exits 101).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}: expected {}", self.name, self.value, self.expected)
    }
}

impl std::error::Error for SettingsError {}

fn seconds(name: &'static str, v: Option<String>, default: u64) -> Result<Duration, SettingsError> {
    match v {
        None => Ok(Duration::from_secs(default)),
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
            _ => Err(SettingsError {
                name,
                value: s,
                expected: "a whole number of seconds greater than 0",
            }),
        },
    }
}

/// A whole number of `unit`s, 0 allowed.
fn count(
    name: &'static str,
    v: Option<String>,
    default: u64,
    unit: &'static str,
) -> Result<u64, SettingsError> {
    match v {
        None => Ok(default),
        Some(s) => s.trim().parse().map_err(|_| SettingsError {
            name,
            value: s,
            expected: unit,
        }),
    }
}

pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
    let home_dir = get("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".distcc"));
    let (distcc_dir, distcc_dir_is_default) = match get("DISTCC_DIR").filter(|d| !d.is_empty()) {
        Some(d) => (Some(PathBuf::from(d)), false),
        None => (home_dir, true),
    };
    let backoff = Duration::from_secs(count(
        "DISTCC_BACKOFF_PERIOD",
        get("DISTCC_BACKOFF_PERIOD"),
        60,
        "seconds",
    )?);
    let pause = Duration::from_millis(count(
        "DISTCC_PAUSE_TIME_MSEC",
        get("DISTCC_PAUSE_TIME_MSEC"),
        1000,
        "milliseconds",
    )?);
    Ok(Settings {
        hosts: get("DISTCC_HOSTS"),
        distcc_dir,
        distcc_dir_is_default,
        fallback: boolean(get("DISTCC_FALLBACK"), true),
        io_timeout: seconds("DISTCC_IO_TIMEOUT", get("DISTCC_IO_TIMEOUT"), 300)?,
        connect_timeout: seconds("DISTCC_CONNECT_TIMEOUT", get("DISTCC_CONNECT_TIMEOUT"), 4)?,
        backoff,
        pause,
        skip_local_retry: get("DISTCC_SKIP_LOCAL_RETRY").is_some(),
        verbose: boolean(get("DISTCC_VERBOSE"), false),
        log_file: get("DISTCC_LOG").filter(|l| !l.is_empty()).map(PathBuf::from),
        rewrite_cross: get("DISTCC_NO_REWRITE_CROSS").is_none(),
        ssh: get("DISTCC_SSH")
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.split(' ').filter(|w| !w.is_empty()).map(String::from).collect())
            .unwrap_or_else(|| vec!["ssh".into()]),
        safeguard: get("_DISTCC_SAFEGUARD").and_then(|s| s.parse().ok()).unwrap_or(0),
        tmpdir: get("TMPDIR")
            .filter(|t| !t.is_empty())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from),
        deps_env: get("DEPENDENCIES_OUTPUT").is_some() || get("SUNPRO_DEPENDENCIES").is_some(),
        include_server: get("INCLUDE_SERVER_PORT")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        include_env: INCLUDE_ENV.iter().copied().find(|k| get(k).is_some()),
        max_discrepancy: max_discrepancy(get("DISTCC_MAX_DISCREPANCY").as_deref()),
        reapi_platform: match get("DISTCC_REAPI_PLATFORM") {
            None => Vec::new(),
            Some(v) => super::reapi::platform(&v).map_err(|_| SettingsError {
                name: "DISTCC_REAPI_PLATFORM",
                value: v,
                expected: "key=value pairs separated by commas",
            })?,
        },
        reapi_token_file: get("DISTCC_REAPI_TOKEN_FILE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    })
}

/// `DISTCC_MAX_DISCREPANCY`'s value: a positive count, else 1 (as 3.4).
/// The client and `pump` read it alike.
pub fn max_discrepancy(value: Option<&str>) -> u64 {
    value.and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let s = env(&[("HOME", "/home/u")]).unwrap();
        assert_eq!(
            s.distcc_dir.as_deref(),
            Some(std::path::Path::new("/home/u/.distcc"))
        );
        assert!(s.distcc_dir_is_default && s.fallback && s.rewrite_cross && !s.verbose);
        assert_eq!(
            (
                s.io_timeout.as_secs(),
                s.connect_timeout.as_secs(),
                s.backoff.as_secs()
            ),
            (300, 4, 60)
        );
        assert_eq!(s.ssh, ["ssh"]);
        assert_eq!(s.hosts, None);
    }

    #[test]
    fn values() {
        let s = env(&[
            ("DISTCC_DIR", "/d"),
            ("DISTCC_HOSTS", ""),
            ("DISTCC_FALLBACK", "0"),
            ("DISTCC_VERBOSE", "1"),
            ("DISTCC_IO_TIMEOUT", "7"),
            ("DISTCC_BACKOFF_PERIOD", "0"),
            ("DISTCC_SSH", "ssh -p 2222 -o BatchMode=yes"),
            ("DISTCC_SKIP_LOCAL_RETRY", ""),
            ("DISTCC_NO_REWRITE_CROSS", "1"),
            ("_DISTCC_SAFEGUARD", "1"),
        ])
        .unwrap();
        assert_eq!(s.distcc_dir.as_deref(), Some(std::path::Path::new("/d")));
        assert!(
            !s.distcc_dir_is_default && !s.fallback && s.verbose && s.skip_local_retry && !s.rewrite_cross
        );
        assert_eq!(s.hosts.as_deref(), Some(""));
        assert_eq!(
            (s.io_timeout.as_secs(), s.backoff.as_secs(), s.safeguard),
            (7, 0, 1)
        );
        assert_eq!(s.ssh, ["ssh", "-p", "2222", "-o", "BatchMode=yes"]);
        // Only "0"/"1" count, as in distcc.
        assert!(env(&[("DISTCC_FALLBACK", "no")]).unwrap().fallback);
    }

    #[test]
    fn bad_timeouts_are_errors() {
        for bad in ["0", "-1", "soon"] {
            assert!(env(&[("DISTCC_IO_TIMEOUT", bad)]).is_err(), "{bad}");
        }
        let e = env(&[("DISTCC_BACKOFF_PERIOD", "x")]).unwrap_err();
        assert_eq!(e.to_string(), "DISTCC_BACKOFF_PERIOD=x: expected seconds");
    }
}
