/*!
distccd's command line, spelled as distcc 3.4 spells it (popt style: `--x=v`,
`--x v`, `-a v`, `-av`), so existing conf.d files keep working. Pure: argv in,
`Options` out; the caller turns errors into exit code 101.

Everything distccd knows about an option is its row in [`OPTIONS`]: its
spellings, its value, its help line and section, and what it does. `--help`
is generated from the rows, and a test holds the man page to them.
*/

use std::fmt;
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

/// `--sandbox MODE`: how every compiler is confined (Landlock and rlimits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    /// Refuse to start where Landlock is not available.
    Required,
    /// Warn and go on without what the kernel lacks.
    BestEffort,
    /// No confinement.
    Off,
}

impl SandboxMode {
    pub fn parse(s: &str) -> Option<SandboxMode> {
        Some(match s {
            "required" => SandboxMode::Required,
            "best-effort" => SandboxMode::BestEffort,
            "off" => SandboxMode::Off,
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
    /// A compile running longer is killed; `None` (`--job-lifetime 0`): never.
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
    /// `--header-timeout`: time from connecting to the end of the request's
    /// header and argv.
    pub header_timeout: Duration,
    /// `--min-rate`, in KiB/s: the slowest average rate at which the rest of
    /// a request may arrive; 0: no minimum.
    pub min_rate_kib: u64,
    /// `--write-timeout`: time each write of the reply may take before the
    /// client is dropped.
    pub write_timeout: Duration,
    /// Connections sending a request at once; idle ones beyond it are
    /// closed, oldest first.
    pub max_connections: usize,
    /// `--max-per-client`: connections open at once from one client address.
    pub max_per_client: usize,
    /// Largest preprocessed source accepted, in MiB (after decompression).
    pub max_input_mb: usize,
    /// `--max-queued-mb`: request and reply bytes held in memory for all
    /// connections together, in MiB; beyond it requests are refused as busy.
    pub max_queued_mb: usize,
    /// `--max-output-mb`: largest file a compiler may write (RLIMIT_FSIZE)
    /// and largest object returned, in MiB.
    pub max_output_mb: usize,
    /// `--max-compiler-mb`: address-space limit (RLIMIT_AS) of each compiler
    /// process, in MiB; 0: no limit.
    pub max_compiler_mb: usize,
    /// `--sandbox`; `None`: required where the kernel supports Landlock,
    /// else best-effort with a warning at start-up.
    pub sandbox: Option<SandboxMode>,
    /// `--sysroot`/`-isysroot` values a client may name.
    pub sysroots: Vec<String>,
    /// `--zeroconf`: publish the server with DNS-SD (mDNS), as distcc 3.4.
    pub zeroconf: bool,
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
            job_lifetime: Some(Duration::from_secs(1800)),
            tcp_insecure: false,
            stats: false,
            stats_port: 3633,
            compiler_dir: PathBuf::from("/usr/lib/distcc"),
            chroot: None,
            conf: None,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            min_rate_kib: 16,
            write_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_per_client: 64,
            max_input_mb: 256,
            max_queued_mb: 1024,
            max_output_mb: 512,
            max_compiler_mb: 4096,
            sandbox: None,
            sysroots: Vec::new(),
            zeroconf: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

/// Why a command line was refused. Displayed as distccd says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptError {
    /// An option no row knows (the whole argument).
    Unknown(String),
    /// A word that is not an option.
    NotAnOption(String),
    /// An option that takes a value came last.
    MissingValue(&'static str),
    /// `--switch=value`, `-Wx`.
    UnwantedValue(&'static str),
    BadValue {
        option: &'static str,
        value: String,
        why: Invalid,
    },
}

/// What is wrong with an option's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not a whole number from `lo` to `hi`.
    Range {
        lo: String,
        hi: String,
    },
    NotAnAddress,
    UnknownLevel,
    UnknownSandbox,
    /// An `--allow` rule, with [`access::parse_rule`]'s reason (which quotes
    /// the value).
    Rule(String),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Range { lo, hi } => write!(f, "expected a number from {lo} to {hi}"),
            Invalid::NotAnAddress => f.write_str("not an IP address"),
            Invalid::UnknownLevel => f.write_str("unknown level"),
            Invalid::UnknownSandbox => f.write_str("expected required, best-effort or off"),
            Invalid::Rule(e) => f.write_str(e),
        }
    }
}

impl fmt::Display for OptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptError::Unknown(arg) => write!(f, "{arg}: unknown option"),
            OptError::NotAnOption(arg) => {
                write!(f, "{arg}: unexpected argument (distccd takes only options)")
            }
            OptError::MissingValue(name) => write!(f, "--{name}: missing argument"),
            OptError::UnwantedValue(name) => write!(f, "--{name} takes no value"),
            OptError::BadValue {
                option,
                why: why @ Invalid::Rule(_),
                ..
            } => write!(f, "--{option} {why}"),
            OptError::BadValue { option, value, why } => write!(f, "--{option} {value}: {why}"),
        }
    }
}

impl std::error::Error for OptError {}

/// Where an option is listed, in `--help` and in the man page (`.SS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Access,
    Configuration,
    Limits,
    Sandbox,
    Serving,
    Statistics,
    Logging,
    Other,
    /// distcc 3.4 spellings kept for old configuration: accepted, not
    /// listed by `--help` (the man page names them under COMPATIBILITY).
    Compatibility,
}

impl Section {
    /// `--help`'s sections, in order.
    pub const LISTED: [Section; 8] = [
        Section::Access,
        Section::Configuration,
        Section::Limits,
        Section::Sandbox,
        Section::Serving,
        Section::Statistics,
        Section::Logging,
        Section::Other,
    ];

    /// The man page's `.SS` name.
    pub fn name(self) -> &'static str {
        match self {
            Section::Access => "Access",
            Section::Configuration => "Configuration",
            Section::Limits => "Limits",
            Section::Sandbox => "Sandbox",
            Section::Serving => "Serving",
            Section::Statistics => "Statistics",
            Section::Logging => "Logging",
            Section::Other => "Other",
            Section::Compatibility => "Compatibility",
        }
    }

    /// `--help`'s heading.
    fn heading(self) -> &'static str {
        match self {
            Section::Limits => "Limits (every byte from the network is a stranger's)",
            s => s.name(),
        }
    }
}

/// The parse so far: what the rows' actions change.
#[derive(Debug)]
struct Builder {
    o: Options,
    /// `--allow-private`: its networks are added after all `--allow`s.
    private: bool,
    /// `--help`, `--version`: parsing stops here.
    done: Option<Parsed>,
}

type Apply = fn(&mut Builder, &str) -> Result<(), Invalid>;

/// One option: one row of [`OPTIONS`].
#[derive(Clone, Copy)]
pub struct Opt {
    /// `--long`.
    pub long: &'static str,
    /// `-c`.
    pub short: Option<char>,
    /// The value's placeholder in `--help`; `None`: a switch.
    pub value: Option<&'static str>,
    pub section: Section,
    /// `--help`'s text, one line (wrapped when printed).
    pub help: &'static str,
    apply: Apply,
}

impl fmt::Debug for Opt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{}", self.long)
    }
}

const fn opt(
    long: &'static str,
    short: Option<char>,
    value: Option<&'static str>,
    section: Section,
    help: &'static str,
    apply: Apply,
) -> Opt {
    Opt {
        long,
        short,
        value,
        section,
        help,
        apply,
    }
}

fn number<T>(v: &str, lo: T, hi: T) -> Result<T, Invalid>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    match v.trim().parse::<T>() {
        Ok(n) if n >= lo && n <= hi => Ok(n),
        _ => Err(Invalid::Range {
            lo: lo.to_string(),
            hi: hi.to_string(),
        }),
    }
}

fn seconds(v: &str, lo: u64, hi: u64) -> Result<Duration, Invalid> {
    number(v, lo, hi).map(Duration::from_secs)
}

/// Seconds, 0 meaning never.
fn seconds_or_never(v: &str) -> Result<Option<Duration>, Invalid> {
    let s: u64 = number(v, 0, u64::MAX / 4)?;
    Ok((s > 0).then(|| Duration::from_secs(s)))
}

use Section::*;

/// Every option distccd accepts, sorted by `long` (byte order; a test keeps
/// it so).
pub static OPTIONS: &[Opt] = &[
    opt(
        "allow",
        Some('a'),
        Some("ADDR[/BITS]"),
        Access,
        "allow clients from this address or network (IPv4 or IPv6; repeatable). \
         Without any --allow or --allow-private distccd refuses to start.",
        |b, v| {
            b.o.allow.push(access::parse_rule(v).map_err(Invalid::Rule)?);
            Ok(())
        },
    ),
    opt(
        "allow-private",
        None,
        None,
        Access,
        "allow loopback and private networks",
        |b, _| {
            b.private = true;
            Ok(())
        },
    ),
    opt(
        "allow-sysroot",
        None,
        Some("DIR"),
        Limits,
        "a --sysroot/-isysroot clients may name (repeatable)",
        |b, v| {
            b.o.sysroots.push(v.to_owned());
            Ok(())
        },
    ),
    opt(
        "chroot",
        None,
        Some("DIR"),
        Configuration,
        "serve from inside DIR: compilers, allow-list and TMPDIR are the chroot's (for a 32-bit chroot)",
        |b, v| {
            b.o.chroot = Some(PathBuf::from(v));
            Ok(())
        },
    ),
    opt(
        "compiler-dir",
        None,
        Some("DIR"),
        Access,
        "compilers allowed are the names in DIR (default /usr/lib/distcc)",
        |b, v| {
            b.o.compiler_dir = PathBuf::from(v);
            Ok(())
        },
    ),
    opt(
        "conf",
        None,
        Some("FILE"),
        Configuration,
        "read DISTCC_ARGS from FILE (e.g. /etc/conf.d/distccd), split with shell quoting; \
         command-line options come after them and win",
        |b, v| {
            b.o.conf = Some(PathBuf::from(v));
            Ok(())
        },
    ),
    opt(
        "daemon",
        None,
        None,
        Serving,
        "serve on a TCP socket (default unless stdin is one)",
        |b, _| {
            b.o.mode = Mode::Daemon;
            Ok(())
        },
    ),
    opt(
        "enable-tcp-insecure",
        None,
        None,
        Access,
        "accepted for SSH use; the compiler allow-list still applies to every TCP connection",
        |b, _| {
            b.o.tcp_insecure = true;
            Ok(())
        },
    ),
    opt(
        "header-timeout",
        None,
        Some("S"),
        Limits,
        "time from connecting to the end of the request's header and argv (default 10)",
        |b, v| {
            b.o.header_timeout = seconds(v, 1, 3600)?;
            Ok(())
        },
    ),
    opt("help", None, None, Other, "show the options and exit", |b, _| {
        b.done = Some(Parsed::Help);
        Ok(())
    }),
    opt(
        "inetd",
        None,
        None,
        Serving,
        "serve one connection on stdin/stdout",
        |b, _| {
            b.o.mode = Mode::Inetd;
            Ok(())
        },
    ),
    opt(
        "job-lifetime",
        None,
        Some("S"),
        Serving,
        "kill a compile running longer than S seconds (default 1800; 0: never)",
        |b, v| {
            b.o.job_lifetime = seconds_or_never(v)?;
            Ok(())
        },
    ),
    opt(
        "jobs",
        Some('j'),
        Some("N"),
        Serving,
        "concurrent compiles, 1..200 (default: CPUs + 2); further connections wait",
        |b, v| {
            b.o.jobs = number(v, 1, 200)?;
            Ok(())
        },
    ),
    opt(
        "lifetime",
        None,
        Some("S"),
        Serving,
        "exit after S seconds",
        |b, v| {
            b.o.lifetime = seconds_or_never(v)?;
            Ok(())
        },
    ),
    opt(
        "listen",
        None,
        Some("ADDR"),
        Serving,
        "address to bind (default: all, IPv6 and IPv4)",
        |b, v| {
            let addr = v.trim_start_matches('[').trim_end_matches(']');
            b.o.listen = Some(addr.parse().map_err(|_| Invalid::NotAnAddress)?);
            Ok(())
        },
    ),
    opt(
        "log-file",
        None,
        Some("FILE"),
        Logging,
        "log here instead of stderr",
        |b, v| {
            b.o.log_file = Some(PathBuf::from(v));
            Ok(())
        },
    ),
    opt(
        "log-level",
        None,
        Some("LEVEL"),
        Logging,
        "error, warning, notice (default), info, debug",
        |b, v| {
            b.o.log_level = LogLevel::parse(v).ok_or(Invalid::UnknownLevel)?;
            Ok(())
        },
    ),
    opt("log-stderr", None, None, Logging, "log to stderr", |b, _| {
        b.o.log_stderr = true;
        Ok(())
    }),
    opt(
        "make-me-a-botnet",
        None,
        None,
        Compatibility,
        "the old spelling of --enable-tcp-insecure",
        |b, _| {
            b.o.tcp_insecure = true;
            Ok(())
        },
    ),
    opt(
        "max-compiler-mb",
        None,
        Some("N"),
        Sandbox,
        "address-space limit (RLIMIT_AS) of each compiler process, in MiB (default 4096; 0: no limit)",
        |b, v| {
            b.o.max_compiler_mb = number(v, 0, 1048576)?;
            Ok(())
        },
    ),
    opt(
        "max-connections",
        None,
        Some("N"),
        Limits,
        "connections reading a source at once; those still on their header do not count \
         (default 256)",
        |b, v| {
            b.o.max_connections = number(v, 1, 65536)?;
            Ok(())
        },
    ),
    opt(
        "max-input-mb",
        None,
        Some("N"),
        Limits,
        "largest preprocessed source, in MiB (default 256)",
        |b, v| {
            b.o.max_input_mb = number(v, 1, 4096)?;
            Ok(())
        },
    ),
    opt(
        "max-output-mb",
        None,
        Some("N"),
        Sandbox,
        "largest file a compiler may write (RLIMIT_FSIZE) and largest object returned, in MiB \
         (default 512)",
        |b, v| {
            b.o.max_output_mb = number(v, 1, 65536)?;
            Ok(())
        },
    ),
    opt(
        "max-per-client",
        None,
        Some("N"),
        Limits,
        "connections open at once from one client address (default 64)",
        |b, v| {
            b.o.max_per_client = number(v, 1, 65536)?;
            Ok(())
        },
    ),
    opt(
        "max-queued-mb",
        None,
        Some("N"),
        Limits,
        "request and reply bytes held in memory for all connections, in MiB (default 1024); \
         beyond it requests are refused as busy",
        |b, v| {
            b.o.max_queued_mb = number(v, 1, 1048576)?;
            Ok(())
        },
    ),
    opt(
        "min-rate",
        None,
        Some("KIB"),
        Limits,
        "slowest average rate, in KiB/s, at which the rest of a request may arrive \
         (default 16; 0: no minimum)",
        |b, v| {
            b.o.min_rate_kib = number(v, 0, 1048576)?;
            Ok(())
        },
    ),
    opt(
        "nice",
        Some('N'),
        Some("N"),
        Serving,
        "niceness of compiles (default 5)",
        |b, v| {
            b.o.nice = number(v, -20, 19)?;
            Ok(())
        },
    ),
    opt(
        "no-detach",
        None,
        None,
        Serving,
        "stay in the foreground",
        |b, _| {
            b.o.no_detach = true;
            Ok(())
        },
    ),
    opt(
        "no-fifo",
        None,
        None,
        Compatibility,
        "distcc 3.4's, obsolete there too: accepted and ignored",
        |_, _| Ok(()),
    ),
    opt(
        "no-fork",
        None,
        None,
        Compatibility,
        "distcc 3.4's debugging switch: accepted and ignored (no process is forked per job)",
        |_, _| Ok(()),
    ),
    opt(
        "pid-file",
        Some('P'),
        Some("FILE"),
        Serving,
        "write the daemon's pid here",
        |b, v| {
            b.o.pid_file = Some(PathBuf::from(v));
            Ok(())
        },
    ),
    opt(
        "port",
        Some('p'),
        Some("N"),
        Serving,
        "TCP port (default 3632)",
        |b, v| {
            b.o.port = number(v, 1, 65535)?;
            Ok(())
        },
    ),
    opt(
        "request-timeout",
        None,
        Some("S"),
        Limits,
        "time a client has to send a request (default 60)",
        |b, v| {
            b.o.request_timeout = seconds(v, 1, 86400)?;
            Ok(())
        },
    ),
    opt(
        "sandbox",
        None,
        Some("MODE"),
        Sandbox,
        "confine every compiler with Landlock and rlimits: required (refuse to start without \
         Landlock), best-effort (warn and go on), off. Default: required where the kernel has Landlock",
        |b, v| {
            b.o.sandbox = Some(SandboxMode::parse(v).ok_or(Invalid::UnknownSandbox)?);
            Ok(())
        },
    ),
    opt(
        "stats",
        None,
        None,
        Statistics,
        "serve statistics over HTTP: distcc 3.4's text for scrapers, JSON at /stats.json, \
         a live page for browsers",
        |b, _| {
            b.o.stats = true;
            Ok(())
        },
    ),
    opt(
        "stats-port",
        None,
        Some("N"),
        Statistics,
        "their port (default 3633)",
        |b, v| {
            b.o.stats_port = number(v, 1, 65535)?;
            Ok(())
        },
    ),
    opt(
        "user",
        None,
        Some("USER"),
        Serving,
        "user to run as when started as root (default nobody)",
        |b, v| {
            b.o.user = Some(v.to_owned());
            Ok(())
        },
    ),
    opt(
        "verbose",
        None,
        None,
        Logging,
        "same as --log-level=debug",
        |b, _| {
            b.o.log_level = LogLevel::Debug;
            Ok(())
        },
    ),
    opt(
        "version",
        None,
        None,
        Other,
        "show the version and exit",
        |b, _| {
            b.done = Some(Parsed::Version);
            Ok(())
        },
    ),
    opt(
        "wizard",
        Some('W'),
        None,
        Logging,
        "--daemon --no-detach --log-stderr --verbose",
        |b, _| {
            b.o.mode = Mode::Daemon;
            b.o.no_detach = true;
            b.o.log_stderr = true;
            b.o.log_level = LogLevel::Debug;
            Ok(())
        },
    ),
    opt(
        "write-timeout",
        None,
        Some("S"),
        Limits,
        "time each write of the reply may take before the client is dropped (default 30)",
        |b, v| {
            b.o.write_timeout = seconds(v, 1, 3600)?;
            Ok(())
        },
    ),
    opt(
        "zeroconf",
        None,
        None,
        Serving,
        "publish this server on the local network (DNS-SD), for clients' +zeroconf: through avahi-daemon when \
         it runs, else a built-in mDNS responder",
        |b, _| {
            b.o.zeroconf = true;
            Ok(())
        },
    ),
];

pub fn parse(args: &[String], ncpus: usize) -> Result<Parsed, OptError> {
    let mut b = Builder {
        o: Options::defaults(ncpus),
        private: false,
        done: None,
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let (row, inline) = if let Some(long) = arg.strip_prefix("--") {
            let (n, v) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let row = OPTIONS.iter().find(|r| r.long == n);
            (row.ok_or_else(|| OptError::Unknown(arg.clone()))?, v)
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let c = short.chars().next().expect("non-empty");
            let row = OPTIONS.iter().find(|r| r.short == Some(c));
            let rest = &short[c.len_utf8()..];
            (
                row.ok_or_else(|| OptError::Unknown(arg.clone()))?,
                (!rest.is_empty()).then_some(rest),
            )
        } else {
            return Err(OptError::NotAnOption(arg.clone()));
        };
        let value = match (row.value, inline) {
            (Some(_), Some(v)) => v,
            (Some(_), None) => {
                let v = args.get(i).ok_or(OptError::MissingValue(row.long))?;
                i += 1;
                v.as_str()
            }
            (None, Some(_)) => return Err(OptError::UnwantedValue(row.long)),
            (None, None) => "",
        };
        (row.apply)(&mut b, value).map_err(|why| OptError::BadValue {
            option: row.long,
            value: value.to_owned(),
            why,
        })?;
        if let Some(done) = b.done.take() {
            return Ok(done);
        }
    }
    let mut o = b.o;
    if b.private {
        o.allow.extend(
            access::PRIVATE
                .iter()
                .map(|r| access::parse_rule(r).expect("valid")),
        );
    }
    Ok(Parsed::Run(Box::new(o)))
}

/// `--help`: the listed rows by section, each as `  -s, --long VALUE  help`.
pub fn usage() -> String {
    const WIDTH: usize = 80;
    let spec = |r: &Opt| {
        let short = r.short.map_or("    ".to_owned(), |c| format!("-{c}, "));
        let value = r.value.map_or(String::new(), |v| format!(" {v}"));
        format!("  {short}--{}{value}", r.long)
    };
    let listed = || OPTIONS.iter().filter(|r| r.section != Section::Compatibility);
    let column = listed().map(|r| spec(r).len() + 2).max().unwrap_or(0);
    let mut out = String::from(
        "Usage: distccd [OPTIONS]\n\n\
         distccd, the distcc-rs compile server. Compatible with distcc 3.4's distccd.\n\n",
    );
    for section in Section::LISTED {
        out.push_str(section.heading());
        out.push_str(":\n");
        for r in listed().filter(|r| r.section == section) {
            for (k, text) in wrap(r.help, WIDTH - column).iter().enumerate() {
                let lead = if k == 0 { spec(r) } else { String::new() };
                out.push_str(&format!("{lead:column$}{text}\n"));
            }
        }
    }
    out
}

/// `text` in lines of at most `width` (a longer word gets a line of its
/// own). No line but the first starts with '-', so a continuation is never
/// read as an option.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<Vec<&str>> = vec![Vec::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line");
        let len: usize = line.iter().map(|w| w.len() + 1).sum::<usize>() + word.len();
        if line.is_empty() || len <= width {
            line.push(word);
            continue;
        }
        let mut next = vec![word];
        while next[0].starts_with('-') && line.len() > 1 {
            next.insert(0, line.pop().expect("two words"));
        }
        lines.push(next);
    }
    lines.into_iter().map(|l| l.join(" ")).collect()
}

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
    use std::collections::BTreeMap;

    fn p(args: &str) -> Result<Options, String> {
        let v: Vec<String> = args.split_whitespace().map(String::from).collect();
        match parse(&v, 2).map_err(|e| e.to_string())? {
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
    fn old_spellings_and_the_rest() {
        assert!(p("--make-me-a-botnet").unwrap().tcp_insecure);
        assert_eq!(p("--no-fifo --no-fork").unwrap(), p("").unwrap());
        assert!(p("--zeroconf").unwrap().zeroconf);
        // --allow-private's networks come after every --allow.
        let o = p("--allow-private --allow 1.2.3.4").unwrap();
        assert_eq!(o.allow[0].to_string(), "1.2.3.4/32");
        assert_eq!(o.allow.len(), 1 + access::PRIVATE.len());
        let o = p(
            "-P/run/x.pid -p4000 -N-3 --listen=[::1] --conf /etc/c --chroot /srv/c \
                   --compiler-dir /opt/d --allow-sysroot /a --allow-sysroot /b --stats --stats-port 9 \
                   --log-stderr --request-timeout 5 --max-connections 3 --max-input-mb 7 --lifetime 0",
        )
        .unwrap();
        assert_eq!(o.pid_file, Some(PathBuf::from("/run/x.pid")));
        assert_eq!(
            (o.port, o.nice, o.listen),
            (4000, -3, Some("::1".parse().unwrap()))
        );
        assert_eq!((o.conf, o.chroot), (Some("/etc/c".into()), Some("/srv/c".into())));
        assert_eq!(o.compiler_dir, PathBuf::from("/opt/d"));
        assert_eq!(o.sysroots, ["/a", "/b"]);
        assert_eq!((o.stats, o.stats_port, o.log_stderr), (true, 9, true));
        assert_eq!(o.request_timeout, Duration::from_secs(5));
        assert_eq!((o.max_connections, o.max_input_mb, o.lifetime), (3, 7, None));
    }

    #[test]
    fn new_options() {
        let d = p("").unwrap();
        assert_eq!(d.sandbox, None);
        assert_eq!(
            (
                d.max_output_mb,
                d.max_compiler_mb,
                d.max_queued_mb,
                d.max_per_client
            ),
            (512, 4096, 1024, 64)
        );
        assert_eq!(
            (d.header_timeout, d.write_timeout, d.min_rate_kib),
            (Duration::from_secs(10), Duration::from_secs(30), 16)
        );
        assert_eq!(d.job_lifetime, Some(Duration::from_secs(1800)));
        assert_eq!(d.max_connections, 256);
        assert_eq!(p("--job-lifetime 0").unwrap().job_lifetime, None);

        for (v, mode) in [
            ("required", SandboxMode::Required),
            ("best-effort", SandboxMode::BestEffort),
            ("off", SandboxMode::Off),
        ] {
            assert_eq!(p(&format!("--sandbox={v}")).unwrap().sandbox, Some(mode));
        }
        let o = p(
            "--max-output-mb 1 --max-compiler-mb 0 --max-queued-mb 1048576 --header-timeout 3600 \
                   --min-rate 0 --max-per-client 2 --write-timeout=1",
        )
        .unwrap();
        assert_eq!(
            (
                o.max_output_mb,
                o.max_compiler_mb,
                o.max_queued_mb,
                o.max_per_client
            ),
            (1, 0, 1048576, 2)
        );
        assert_eq!(
            (o.header_timeout, o.write_timeout, o.min_rate_kib),
            (Duration::from_secs(3600), Duration::from_secs(1), 0)
        );

        let cases = [
            (
                "--sandbox on",
                "--sandbox on: expected required, best-effort or off",
            ),
            ("--sandbox", "--sandbox: missing argument"),
            (
                "--max-output-mb 0",
                "--max-output-mb 0: expected a number from 1 to 65536",
            ),
            ("--max-output-mb 65537", "from 1 to 65536"),
            ("--max-compiler-mb 1048577", "from 0 to 1048576"),
            ("--max-compiler-mb -1", "from 0 to 1048576"),
            ("--max-queued-mb 0", "from 1 to 1048576"),
            (
                "--header-timeout 0",
                "--header-timeout 0: expected a number from 1 to 3600",
            ),
            ("--header-timeout 3601", "from 1 to 3600"),
            ("--min-rate x", "--min-rate x: expected a number"),
            ("--max-per-client 0", "from 1 to 65536"),
            ("--max-per-client 65537", "from 1 to 65536"),
            (
                "--write-timeout 0",
                "--write-timeout 0: expected a number from 1 to 3600",
            ),
        ];
        for (args, want) in cases {
            let err = p(args).unwrap_err();
            assert!(err.contains(want), "{args}: {err}");
        }
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

    #[test]
    fn error_messages() {
        let e = |s: &str| p(s).unwrap_err();
        assert_eq!(e("--x=1"), "--x=1: unknown option");
        assert_eq!(e("-"), "-: unexpected argument (distccd takes only options)");
        assert_eq!(e("-Wx"), "--wizard takes no value");
        assert_eq!(e("-j"), "--jobs: missing argument");
        assert_eq!(e("-jx"), "--jobs x: expected a number from 1 to 200");
        assert_eq!(e("--nice 20"), "--nice 20: expected a number from -20 to 19");
        assert_eq!(e("--listen x"), "--listen x: not an IP address");
        assert_eq!(e("--log-level loud"), "--log-level loud: unknown level");
        assert_eq!(
            e("-a 1.2.3.4/40"),
            "--allow '1.2.3.4/40': prefix length 40 is too long"
        );
        // --help wins over what follows it, as before.
        let v: Vec<String> = ["--help", "--bogus"].map(String::from).to_vec();
        assert_eq!(parse(&v, 1), Ok(Parsed::Help));
    }

    #[test]
    fn table_is_sorted_and_unique() {
        for w in OPTIONS.windows(2) {
            assert!(w[0].long < w[1].long, "{:?} must sort before {:?}", w[0], w[1]);
        }
        let shorts: Vec<char> = OPTIONS.iter().filter_map(|r| r.short).collect();
        let mut unique = shorts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(shorts.len(), unique.len(), "{shorts:?}");
        for r in OPTIONS {
            assert!(!r.help.is_empty() && !r.help.contains("  "), "{r:?}");
        }
    }

    #[test]
    fn usage_lists_every_row_by_section() {
        let u = usage();
        let listed: Vec<&Opt> = OPTIONS
            .iter()
            .filter(|r| r.section != Section::Compatibility)
            .collect();
        // Lines that start with '-' are the rows, and nothing else.
        let rows: Vec<&str> = u.lines().filter(|l| l.trim_start().starts_with('-')).collect();
        assert_eq!(rows.len(), listed.len(), "{u}");
        let mut order = Vec::new();
        let mut section = None;
        for line in u.lines() {
            if let Some(s) = Section::LISTED
                .iter()
                .find(|s| line == format!("{}:", s.heading()))
            {
                section = Some(*s);
                order.push(*s);
            } else if line.trim_start().starts_with('-') {
                let spec = line.trim_start().split("  ").next().unwrap();
                let long = spec
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("--"))
                    .unwrap();
                let row = OPTIONS.iter().find(|r| r.long == long).unwrap();
                assert_eq!(Some(row.section), section, "{line}");
                let want = match (row.short, row.value) {
                    (Some(c), Some(v)) => format!("-{c}, --{long} {v}"),
                    (Some(c), None) => format!("-{c}, --{long}"),
                    (None, Some(v)) => format!("--{long} {v}"),
                    (None, None) => format!("--{long}"),
                };
                assert_eq!(spec, want);
            }
            assert!(line.len() <= 80, "too long: {line}");
        }
        assert_eq!(order, Section::LISTED);
        for r in OPTIONS.iter().filter(|r| r.section == Section::Compatibility) {
            assert!(!u.contains(&format!("--{} ", r.long)), "{r:?} is listed");
        }
        // Each row's help, whole (wrapped at spaces only).
        let words = u.split_whitespace().collect::<Vec<_>>().join(" ");
        for r in &listed {
            assert!(words.contains(r.help), "{r:?}: {}", r.help);
        }
    }

    /// `\-\-name` in troff, as `name`: every long option written in `line`.
    fn troff_long_options(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = line;
        while let Some(i) = rest.find("\\-\\-") {
            rest = &rest[i + 4..];
            let mut name = String::new();
            loop {
                if let Some(r) = rest.strip_prefix("\\-") {
                    name.push('-');
                    rest = r;
                } else if let Some(c) = rest.chars().next().filter(|c| c.is_ascii_alphanumeric()) {
                    name.push(c);
                    rest = &rest[1..];
                } else {
                    break;
                }
            }
            out.push(name);
        }
        out
    }

    fn troff(s: &str) -> String {
        s.replace('-', "\\-")
    }

    #[test]
    fn man_page_documents_every_row() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/man/distccd.1");
        let page = std::fs::read_to_string(path).unwrap();
        let section = |name: &str| {
            let start = page
                .find(&format!("\n.SH {name}\n"))
                .unwrap_or_else(|| panic!("no .SH {name}"));
            let body = &page[start + 1..];
            let end = body[1..].find("\n.SH ").map_or(body.len(), |e| e + 1);
            body[..end].to_owned()
        };
        // The OPTIONS section's entries: the header after each .TP, under its .SS.
        let options = section("OPTIONS");
        let lines: Vec<&str> = options.lines().collect();
        let mut documented: BTreeMap<String, (String, &str)> = BTreeMap::new();
        let mut subsection = String::new();
        for (k, line) in lines.iter().enumerate() {
            if let Some(s) = line.strip_prefix(".SS ") {
                subsection = s.to_owned();
            }
            if *line == ".TP" {
                let header = lines[k + 1];
                for name in troff_long_options(header) {
                    let old = documented.insert(name.clone(), (subsection.clone(), header));
                    assert!(old.is_none(), "--{name} has two entries");
                }
            }
        }
        let compat = section("COMPATIBILITY");
        for r in OPTIONS {
            if r.section == Section::Compatibility {
                assert!(
                    troff_long_options(&compat).contains(&r.long.to_owned()),
                    "distccd.1's COMPATIBILITY does not name {}",
                    troff(&format!("--{}", r.long))
                );
                assert!(!documented.contains_key(r.long), "{r:?} is in OPTIONS");
                continue;
            }
            let Some((sub, header)) = documented.get(r.long) else {
                panic!(
                    "distccd.1's OPTIONS has no entry for {}",
                    troff(&format!("--{}", r.long))
                );
            };
            assert_eq!(sub, r.section.name(), "{r:?}: the man page's subsection");
            let long = troff(&format!("--{}", r.long));
            let want = match (r.short, r.value) {
                (None, None) => format!(".B {long}"),
                (None, Some(v)) => format!(".BI {long} \" {}\"", troff(v)),
                (Some(c), None) => format!(".BR \\-{c} \", \" {long}"),
                (Some(c), Some(v)) => format!(".BR \\-{c} \", \" {long} \" {}\"", troff(v)),
            };
            assert_eq!(header.replace("\\fI", "").replace("\\fR", ""), want, "{r:?}");
        }
        for name in documented.keys() {
            assert!(
                OPTIONS
                    .iter()
                    .any(|r| r.long == name && r.section != Section::Compatibility),
                "distccd.1 documents --{name}, which is no option of the table"
            );
        }
    }
}
