/*!
distccd's command line, spelled as distcc 3.4 spells it (popt style: `--x=v`,
`--x v`, `-a v`, `-av`), so existing conf.d files keep working. Pure: argv in,
`Options` out; the caller turns errors into exit code 101.
*/

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::access;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `--inetd` if stdin is a socket, else a daemon (distcc's rule).
    Auto,
    Daemon,
    Inetd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

impl LogLevel {
    /// distcc's names (src/trace.c), including the syslog spellings.
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "emerg" | "emergency" | "alert" | "crit" | "critical" | "err" | "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warning,
            "notice" | "note" => LogLevel::Notice,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub allow: Vec<IpNet>,
    pub listen: Option<IpAddr>,
    pub port: u16,
    pub jobs: usize,
    pub nice: i32,
    pub user: Option<String>,
    pub mode: Mode,
    pub no_detach: bool,
    pub pid_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub log_level: LogLevel,
    pub log_stderr: bool,
    pub lifetime: Option<Duration>,
    pub job_lifetime: Option<Duration>,
    /// `--enable-tcp-insecure`: honoured only for connections that are not
    /// TCP (SSH), where the client can run any program anyway.
    pub tcp_insecure: bool,
    pub stats: bool,
    pub stats_port: u16,
    /// Names allowed as compilers: the entries of this directory.
    pub compiler_dir: PathBuf,
    /// `--chroot DIR`: serve from inside DIR (a 32-bit build chroot, say):
    /// entered after start-up, so the daemon itself needs nothing from it.
    pub chroot: Option<PathBuf>,
    /// `--conf FILE`: where DISTCC_ARGS came from (for messages).
    pub conf: Option<PathBuf>,
    /// Time a client has to send its whole request (a trickling client
    /// holds a connection, never a compile slot, and not for longer).
    pub request_timeout: Duration,
    /// Connections read at once; more wait in the kernel's queue.
    pub max_connections: usize,
    /// Largest preprocessed source accepted, in MiB (after decompression).
    pub max_input_mb: usize,
    /// `--sysroot`/`-isysroot` values a client may name.
    pub sysroots: Vec<String>,
}

impl Options {
    pub fn defaults(ncpus: usize) -> Options {
        Options {
            allow: Vec::new(),
            listen: None,
            port: 3632,
            jobs: (ncpus + 2).min(200),
            nice: 5,
            user: None,
            mode: Mode::Auto,
            no_detach: false,
            pid_file: None,
            log_file: None,
            log_level: LogLevel::Notice,
            log_stderr: false,
            lifetime: None,
            job_lifetime: None,
            tcp_insecure: false,
            stats: false,
            stats_port: 3633,
            compiler_dir: PathBuf::from("/usr/lib/distcc"),
            chroot: None,
            conf: None,
            request_timeout: Duration::from_secs(60),
            max_connections: 256,
            max_input_mb: 256,
            sysroots: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

/// (long name, short letter, takes a value)
const OPTIONS: &[(&str, Option<char>, bool)] = &[
    ("allow", Some('a'), true),
    ("allow-private", None, false),
    ("allow-sysroot", None, true),
    ("chroot", None, true),
    ("compiler-dir", None, true),
    ("conf", None, true),
    ("daemon", None, false),
    ("enable-tcp-insecure", None, false),
    ("help", None, false),
    ("inetd", None, false),
    ("job-lifetime", None, true),
    ("jobs", Some('j'), true),
    ("lifetime", None, true),
    ("listen", None, true),
    ("log-file", None, true),
    ("log-level", None, true),
    ("log-stderr", None, false),
    ("make-me-a-botnet", None, false),
    ("max-connections", None, true),
    ("max-input-mb", None, true),
    ("nice", Some('N'), true),
    ("no-detach", None, false),
    ("no-fifo", None, false),
    ("no-fork", None, false),
    ("pid-file", Some('P'), true),
    ("port", Some('p'), true),
    ("request-timeout", None, true),
    ("stats", None, false),
    ("stats-port", None, true),
    ("user", None, true),
    ("verbose", None, false),
    ("version", None, false),
    ("wizard", Some('W'), false),
    ("zeroconf", None, false),
];

fn number<T>(name: &str, v: &str, lo: T, hi: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match v.trim().parse::<T>() {
        Ok(n) if n >= lo && n <= hi => Ok(n),
        _ => Err(format!("--{name} {v}: expected a number from {lo} to {hi}")),
    }
}

pub fn parse(args: &[String], ncpus: usize) -> Result<Parsed, String> {
    let mut o = Options::defaults(ncpus);
    let mut private = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let (name, inline) = if let Some(long) = arg.strip_prefix("--") {
            let (n, v) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let Some(&(name, _, _)) = OPTIONS.iter().find(|(l, _, _)| *l == n) else {
                return Err(format!("{arg}: unknown option"));
            };
            (name, v)
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let c = short.chars().next().expect("non-empty");
            let Some(&(name, _, _)) = OPTIONS.iter().find(|(_, s, _)| *s == Some(c)) else {
                return Err(format!("{arg}: unknown option"));
            };
            let rest = &short[c.len_utf8()..];
            (name, (!rest.is_empty()).then(|| rest.to_owned()))
        } else {
            return Err(format!("{arg}: unexpected argument (distccd takes only options)"));
        };
        let takes_value = OPTIONS.iter().any(|(l, _, v)| *l == name && *v);
        let value = if takes_value {
            match inline {
                Some(v) => v,
                None => {
                    let Some(v) = args.get(i) else {
                        return Err(format!("--{name}: missing argument"));
                    };
                    i += 1;
                    v.clone()
                }
            }
        } else {
            if inline.is_some() {
                return Err(format!("--{name} takes no value"));
            }
            String::new()
        };
        let v = value.as_str();
        match name {
            "allow" => o
                .allow
                .push(access::parse_rule(v).map_err(|e| format!("--allow {e}"))?),
            "allow-private" => private = true,
            "compiler-dir" => o.compiler_dir = PathBuf::from(v),
            "chroot" => o.chroot = Some(PathBuf::from(v)),
            "allow-sysroot" => o.sysroots.push(v.to_owned()),
            "max-connections" => o.max_connections = number(name, v, 1, 65536)?,
            "max-input-mb" => o.max_input_mb = number(name, v, 1, 4096)?,
            "request-timeout" => o.request_timeout = Duration::from_secs(number(name, v, 1, 86400)?),
            "conf" => o.conf = Some(PathBuf::from(v)),
            "daemon" => o.mode = Mode::Daemon,
            "enable-tcp-insecure" | "make-me-a-botnet" => o.tcp_insecure = true,
            "help" => return Ok(Parsed::Help),
            "inetd" => o.mode = Mode::Inetd,
            "job-lifetime" => {
                let s: u64 = number(name, v, 0, u64::MAX / 4)?;
                o.job_lifetime = (s > 0).then(|| Duration::from_secs(s));
            }
            "jobs" => o.jobs = number(name, v, 1, 200)?,
            "lifetime" => {
                let s: u64 = number(name, v, 0, u64::MAX / 4)?;
                o.lifetime = (s > 0).then(|| Duration::from_secs(s));
            }
            "listen" => {
                let addr = v.trim_start_matches('[').trim_end_matches(']');
                o.listen = Some(
                    addr.parse()
                        .map_err(|_| format!("--listen {v}: not an IP address"))?,
                );
            }
            "log-file" => o.log_file = Some(PathBuf::from(v)),
            "log-level" => {
                o.log_level = LogLevel::parse(v).ok_or_else(|| format!("--log-level {v}: unknown level"))?
            }
            "log-stderr" => o.log_stderr = true,
            "nice" => o.nice = number(name, v, -20, 19)?,
            "no-detach" => o.no_detach = true,
            "no-fifo" | "no-fork" | "zeroconf" => {}
            "pid-file" => o.pid_file = Some(PathBuf::from(v)),
            "port" => o.port = number(name, v, 1, 65535)?,
            "stats" => o.stats = true,
            "stats-port" => o.stats_port = number(name, v, 1, 65535)?,
            "user" => o.user = Some(v.to_owned()),
            "verbose" => o.log_level = LogLevel::Debug,
            "version" => return Ok(Parsed::Version),
            "wizard" => {
                o.mode = Mode::Daemon;
                o.no_detach = true;
                o.log_stderr = true;
                o.log_level = LogLevel::Debug;
            }
            _ => unreachable!("every table entry is handled: {name}"),
        }
    }
    if private {
        o.allow.extend(
            access::PRIVATE
                .iter()
                .map(|r| access::parse_rule(r).expect("valid")),
        );
    }
    Ok(Parsed::Run(Box::new(o)))
}

pub const USAGE: &str = "\
Usage: distccd [OPTIONS]

distccd, the distcc-rs compile server. Compatible with distcc 3.4's distccd.

Access:
  -a, --allow ADDR[/BITS]    allow clients from this address or network
                             (IPv4 or IPv6; repeatable). Without any --allow
                             or --allow-private distccd refuses to start.
      --allow-private        allow loopback and private networks
      --enable-tcp-insecure  accepted for SSH use; the compiler allow-list
                             still applies to every TCP connection
      --compiler-dir DIR     compilers allowed are the names in DIR
                             (default /usr/lib/distcc)
Configuration:
      --conf FILE            read DISTCC_ARGS from FILE (e.g. /etc/conf.d/distccd),
                             split with shell quoting; command-line options
                             come after them and win
      --chroot DIR           serve from inside DIR: compilers, allow-list and
                             TMPDIR are the chroot's (for a 32-bit chroot)
Limits (every byte from the network is a stranger's):
      --request-timeout S    time a client has to send a request (default 60)
      --max-connections N    connections read at once (default 256); more wait
      --max-input-mb N       largest preprocessed source, in MiB (default 256)
      --allow-sysroot DIR    a --sysroot/-isysroot clients may name (repeatable)
Serving:
      --daemon               serve on a TCP socket (default unless stdin is one)
      --inetd                serve one connection on stdin/stdout
      --no-detach            stay in the foreground
      --listen ADDR          address to bind (default: all, IPv6 and IPv4)
  -p, --port N               TCP port (default 3632)
  -j, --jobs N               concurrent compiles, 1..200 (default: CPUs + 2);
                             further connections wait
  -N, --nice N               niceness of compiles (default 5)
      --job-lifetime S       kill a compile running longer than S seconds
      --lifetime S           exit after S seconds
      --user USER            user to run as when started as root (default nobody)
  -P, --pid-file FILE        write the daemon's pid here
Statistics:
      --stats                serve statistics over HTTP: distcc 3.4's text for
                             scrapers, JSON at /stats.json, a live page for browsers
      --stats-port N         their port (default 3633)
Logging:
      --log-file FILE        log here instead of stderr
      --log-level LEVEL      error, warning, notice (default), info, debug
      --log-stderr           log to stderr
      --verbose              same as --log-level=debug
  -W, --wizard               --daemon --no-detach --log-stderr --verbose
Other:
      --help, --version
";

/// The `--conf FILE` named on the command line, if any (read before parsing,
/// because the file's options go first).
pub fn conf_file(args: &[String]) -> Option<&str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--conf=") {
            return Some(v);
        }
        if a == "--conf" {
            return it.next().map(String::as_str);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<Options, String> {
        let v: Vec<String> = args.split_whitespace().map(String::from).collect();
        match parse(&v, 2)? {
            Parsed::Run(o) => Ok(*o),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults_match_distccd() {
        let o = p("").unwrap();
        assert_eq!(
            (o.port, o.jobs, o.nice, o.mode, o.log_level),
            (3632, 4, 5, Mode::Auto, LogLevel::Notice)
        );
        assert!(o.allow.is_empty());
    }

    #[test]
    fn spellings() {
        let o = p("--allow=10.0.0.0/8 -a 127.0.0.1 -a::1 --port 4000 -j3 --jobs=7 -N 10 --daemon --no-detach \
                   --pid-file /run/d.pid --log-file /tmp/x.log --log-level=error --lifetime 30 --job-lifetime 9 \
                   --listen ::1 --user distcc")
        .unwrap();
        assert_eq!(
            o.allow.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
        );
        assert_eq!((o.port, o.jobs, o.nice), (4000, 7, 10));
        assert_eq!((o.mode, o.no_detach), (Mode::Daemon, true));
        assert_eq!(o.pid_file.as_deref(), Some(std::path::Path::new("/run/d.pid")));
        assert_eq!(o.log_level, LogLevel::Error);
        assert_eq!(o.lifetime, Some(Duration::from_secs(30)));
        assert_eq!(o.job_lifetime, Some(Duration::from_secs(9)));
        assert_eq!(o.listen, Some("::1".parse().unwrap()));
        assert_eq!(o.user.as_deref(), Some("distcc"));
        let w = p("-W").unwrap();
        assert_eq!(
            (w.mode, w.no_detach, w.log_stderr, w.log_level),
            (Mode::Daemon, true, true, LogLevel::Debug)
        );
        assert_eq!(p("--allow-private").unwrap().allow.len(), access::PRIVATE.len());
        assert_eq!(p("--verbose").unwrap().log_level, LogLevel::Debug);
        assert!(p("--inetd --enable-tcp-insecure").unwrap().tcp_insecure);
    }

    #[test]
    fn errors_name_the_option() {
        let cases = [
            ("--bogus-option", "--bogus-option: unknown option"),
            ("gcc", "unexpected argument"),
            ("--port 0", "--port 0"),
            ("--port 70000", "--port 70000"),
            ("--jobs 0", "--jobs 0"),
            ("--jobs 201", "--jobs 201"),
            ("--allow 1.2.3.4/40", "--allow '1.2.3.4/40'"),
            ("--allow", "--allow: missing argument"),
            ("--log-level loud", "--log-level loud"),
            ("--daemon=yes", "takes no value"),
            ("-z", "-z: unknown option"),
        ];
        for (args, want) in cases {
            let err = p(args).unwrap_err();
            assert!(err.contains(want), "{args}: {err}");
        }
        let v = |s: &str| vec![s.to_string()];
        assert_eq!(parse(&v("--help"), 1), Ok(Parsed::Help));
        assert_eq!(parse(&v("--version"), 1), Ok(Parsed::Version));
    }
}
