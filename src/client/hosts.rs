/*!
The `DISTCC_HOSTS` grammar (distcc 3.4 src/hosts.c), pure.

```text
HOSTS      = { TOKEN | '#' comment-to-end-of-line }, separated by whitespace
TOKEN      = GLOBAL | LOCAL | REAPI | SSH | TCP | +zeroconf
GLOBAL     = --randomize | --localslots(/|=)N | --localslots_cpp(/|=)N
REAPI      = reapi://HOST:PORT[(/|=)N]{ ',instance=' NAME | ',tls' | ',cpp' }    (ours)
LOCAL      = localhost[(/|=)N]            anything after N is ignored
SSH        = [USER]@HOST[(/|=)N][:COMMAND][OPTIONS]
TCP        = HOST[:PORT][(/|=)N][OPTIONS] | HOST[(/|=)N][:PORT][OPTIONS]
HOST       = name | '[' IPv6 ']'
OPTIONS    = { ',lzo' | ',cpp' | ',down' }
```

Where distcc is silently lenient we are strict, because a typo in a host
list otherwise turns into a mysteriously slow or local-only build:
junk after an option (`,lzoX`), after a limit (`angry/4x`) or in a port is
an error; ports must be 1..65535; a limit may be given once; unknown `--`
and `+` keywords are errors (distcc makes them TCP hosts); host names may
not start with `-` (they end up on ssh's command line). `=N` works
wherever `/N` does (distcc only honours it in some positions).

Only [`load_source`] touches the file system.
*/

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use crate::protocol::{Compression, Version};

pub const DEFAULT_PORT: u16 = 3632;

/// `${sysconfdir}/distcc/hosts` for standard and Debian builds.
pub const SYSTEM_HOSTS_FILE: &str = "/etc/distcc/hosts";

const DEFAULT_LOCAL_LIMIT: u32 = 2;
const DEFAULT_REMOTE_LIMIT: u32 = 4;
const DEFAULT_LOCALSLOTS: u32 = 4;
const DEFAULT_LOCALSLOTS_CPP: u32 = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Local,
    /// `host` is bracket-less for IPv6 literals.
    Tcp {
        host: String,
        port: u16,
    },
    /// `command` is the remote distccd path; `None` means plain `distccd`.
    Ssh {
        user: Option<String>,
        host: String,
        command: Option<String>,
    },
    /// A Remote Execution API cluster (Bazel's protocol), not a distccd.
    Reapi {
        host: String,
        port: u16,
        /// The cluster's instance name; `""` by default, as REAPI's.
        instance: String,
        tls: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// The token as written (minus any trailing comment).
    pub spec: String,
    pub transport: Transport,
    pub limit: u32,
    /// `,lzo`.
    pub compression: Compression,
    /// `,cpp`: pump mode (only with `,lzo`).
    pub cpp: bool,
    /// Undocumented distcc option: the host is treated as always busy.
    pub down: bool,
}

impl HostSpec {
    /// The DIST protocol version the options select (§1.2). `parse` has
    /// already rejected `,cpp` without `,lzo`.
    pub fn protocol(&self) -> Version {
        Version::for_host(self.compression, self.cpp)
    }

    /// The lock file name for `slot`, identical to distcc's so that both
    /// clients share one set of slots when run side by side.
    pub fn lock_name(&self, slot: u32) -> String {
        self.file_name("cpu", slot)
    }

    /// The backoff timestamp file name. distcc never backs off a local
    /// entry, but its naming scheme gives `backoff_localhost_0`, so we do too.
    pub fn backoff_name(&self) -> String {
        self.file_name("backoff", 0)
    }

    pub fn is_local(&self) -> bool {
        self.transport == Transport::Local
    }

    fn file_name(&self, kind: &str, slot: u32) -> String {
        match &self.transport {
            Transport::Local => format!("{kind}_localhost_{slot}"),
            Transport::Tcp { host, port } => format!("{kind}_tcp_{host}_{port}_{slot}"),
            Transport::Ssh { host, .. } => format!("{kind}_ssh_{host}_{slot}"),
            Transport::Reapi { host, port, .. } => format!("{kind}_reapi_{host}_{port}_{slot}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostList {
    pub hosts: Vec<HostSpec>,
    /// `--randomize` was given; the caller applies it with [`HostList::shuffle`].
    pub randomize: bool,
    pub localslots: u32,
    pub localslots_cpp: u32,
    /// `+zeroconf`: where in `hosts` the servers found on the network go
    /// (the caller browses; see `client::zeroconf`).
    pub zeroconf: Option<usize>,
}

impl Default for HostList {
    fn default() -> Self {
        HostList {
            hosts: Vec::new(),
            zeroconf: None,
            randomize: false,
            localslots: DEFAULT_LOCALSLOTS,
            localslots_cpp: DEFAULT_LOCALSLOTS_CPP,
        }
    }
}

impl HostList {
    /// Reorders the hosts pseudo-randomly. distcc seeds with its pid; the
    /// seed is a parameter so that this stays pure and testable.
    pub fn shuffle(&mut self, seed: u64) {
        let mut state = seed;
        for i in (1..self.hosts.len()).rev() {
            let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
            self.hosts.swap(i, j);
        }
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A rejected token. `line`, `line_no` and `column` are carried so that the
/// message can show where the token is without the caller keeping the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsError {
    pub token: String,
    /// Byte offset of the token in the parsed text.
    pub offset: usize,
    pub message: String,
    /// The input line holding the token.
    pub line: String,
    /// 1-based, so callers can say "/etc/distcc/hosts:3".
    pub line_no: usize,
    /// Byte offset of the token within `line`.
    pub column: usize,
}

impl HostsError {
    fn new(text: &str, offset: usize, token: &str, message: String) -> Self {
        let is_break = |c: char| c == '\n' || c == '\r';
        let start = text[..offset].rfind(is_break).map_or(0, |i| i + 1);
        let end = text[offset..].find(is_break).map_or(text.len(), |i| offset + i);
        HostsError {
            token: token.to_string(),
            offset,
            message,
            line: text[start..end].to_string(),
            line_no: 1 + text[..offset].matches('\n').count(),
            column: offset - start,
        }
    }
}

/// How much of a long line to show around the token.
const CONTEXT_BEFORE: usize = 40;
const CONTEXT_AFTER: usize = 30;

impl fmt::Display for HostsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad host spec '{}': {}", self.token, self.message)?;
        // The fields are public; a hand-made error must not panic here.
        if self.line.is_empty() || !self.line.is_char_boundary(self.column) {
            return Ok(());
        }
        let token_end = (self.column + self.token.len()).min(self.line.len());
        let start = floor_char_boundary(&self.line, self.column.saturating_sub(CONTEXT_BEFORE));
        let end = ceil_char_boundary(&self.line, token_end + CONTEXT_AFTER);
        let before = &self.line[start..self.column];
        let lead = if start > 0 { "..." } else { "" };
        let trail = if end < self.line.len() { "..." } else { "" };
        let shown = format!("{lead}{}{trail}", &self.line[start..end]);
        // Tabs stay tabs so the caret lines up whatever the tab width;
        // other control characters (\f) would upset the terminal.
        let shown: String = shown
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        let pad: String = lead
            .chars()
            .chain(before.chars())
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let carets = "^".repeat(self.token.chars().count().max(1));
        write!(f, "\n    {shown}\n    {pad}{carets}")
    }
}

impl std::error::Error for HostsError {}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Parses a host list. An empty list is not an error: distcc only warns
/// "contained no hosts" and falls back to compiling locally, and the caller
/// knows the source's name for that warning.
pub fn parse(text: &str) -> Result<HostList, HostsError> {
    let mut list = HostList::default();
    for (offset, token) in tokens(text) {
        let item = parse_token(token).map_err(|message| HostsError::new(text, offset, token, message))?;
        match item {
            Item::Randomize => list.randomize = true,
            Item::LocalSlots(n) => list.localslots = n,
            Item::LocalSlotsCpp(n) => list.localslots_cpp = n,
            Item::Host(host) => list.hosts.push(host),
            // Given twice, the servers are still listed once.
            Item::Zeroconf => {
                list.zeroconf.get_or_insert(list.hosts.len());
            }
        }
    }
    Ok(list)
}

/// What `distcc -j` prints.
pub fn total_slots(list: &HostList) -> u32 {
    list.hosts.iter().fold(0u32, |sum, h| sum.saturating_add(h.limit))
}

/// Tokens with their byte offsets. `#` ends a token too, so
/// `@angry,lzo#note` is `@angry,lzo`.
fn tokens(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        loop {
            match bytes.get(i)? {
                b'#' => {
                    while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                        i += 1;
                    }
                }
                b if b.is_ascii_whitespace() => i += 1,
                _ => break,
            }
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'#' {
            i += 1;
        }
        Some((start, &text[start..i]))
    })
}

enum Item {
    Zeroconf,
    Randomize,
    LocalSlots(u32),
    LocalSlotsCpp(u32),
    Host(HostSpec),
}

/// Messages are about the token's parts; `parse` adds the token itself.
type Msg = String;

fn parse_token(token: &str) -> Result<Item, Msg> {
    if token.starts_with("--") {
        return parse_global(token);
    }
    if token == "+zeroconf" {
        return Ok(Item::Zeroconf);
    }
    if token.starts_with('+') {
        return Err(format!("unknown keyword '{token}' (known: +zeroconf)"));
    }
    let (transport, limit, opts) = if let Some(rest) = token.strip_prefix("reapi://") {
        parse_reapi(rest)?
    } else if token.contains("://") {
        return Err("unknown scheme (known: reapi://HOST:PORT)".into());
    } else if let Some(rest) = local_rest(token) {
        let (limit, _ignored) = take_limit(rest, None)?;
        let limit = limit.unwrap_or(DEFAULT_LOCAL_LIMIT);
        (Transport::Local, limit, Options::default())
    } else if let Some((user, rest)) = token.split_once('@') {
        parse_ssh(user, rest)?
    } else {
        parse_tcp(token)?
    };
    Ok(Item::Host(HostSpec {
        spec: token.to_string(),
        transport,
        limit,
        compression: if opts.lzo {
            Compression::Lzo
        } else {
            Compression::None
        },
        cpp: opts.cpp,
        down: opts.down,
    }))
}

/// `localhost` itself or with a limit; `localhost:3632`, `localhost,lzo`
/// and `localhostfoo` are ordinary TCP hosts, as in distcc.
fn local_rest(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("localhost")?;
    (rest.is_empty() || rest.starts_with(['/', '='])).then_some(rest)
}

fn parse_global(token: &str) -> Result<Item, Msg> {
    if token == "--randomize" {
        return Ok(Item::Randomize);
    }
    // `_cpp` first: `--localslots` is its prefix.
    let (name, make): (&str, fn(u32) -> Item) = if token.starts_with("--localslots_cpp") {
        ("--localslots_cpp", Item::LocalSlotsCpp)
    } else if token.starts_with("--localslots") {
        ("--localslots", Item::LocalSlots)
    } else {
        return Err("unknown option (known: --randomize, --localslots=N, --localslots_cpp=N)".into());
    };
    let value = &token[name.len()..];
    if value.is_empty() {
        return Err(format!("needs a number, as in '{name}=N'"));
    }
    match take_limit(value, Some(""))? {
        (Some(n), _) => Ok(make(n)),
        (None, _) => Err(format!(
            "unexpected '{value}', expected '=N' or '/N' after the option name"
        )),
    }
}

/// Reads an optional `/N` or `=N`. `next` lists the characters allowed
/// right after the number (end of token always is); `None` allows
/// anything, for `localhost`'s distcc-compatible leniency.
fn take_limit<'a>(s: &'a str, next: Option<&str>) -> Result<(Option<u32>, &'a str), Msg> {
    let Some(sep) = s.chars().next().filter(|c| *c == '/' || *c == '=') else {
        return Ok((None, s));
    };
    let body = &s[1..];
    let digits = body.len() - body.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (num, rest) = body.split_at(digits);
    if num.is_empty() {
        let shown = split_at_any(body, b",:/=").0;
        return Err(if shown.is_empty() {
            format!("missing limit after '{sep}'")
        } else {
            format!("limit '{shown}' is not a number")
        });
    }
    let n: u32 = num.parse().map_err(|_| format!("limit '{num}' is too large"))?;
    if n == 0 {
        return Err("limit must be at least 1".into());
    }
    if let (Some(next), Some(c)) = (next, rest.chars().next())
        && !next.contains(c)
    {
        return Err(format!("unexpected '{rest}' after the limit"));
    }
    Ok((Some(n), rest))
}

/// `(head, rest)` where `rest` starts at the first byte of `stops`.
fn split_at_any<'a>(s: &'a str, stops: &[u8]) -> (&'a str, &'a str) {
    let at = s.bytes().position(|b| stops.contains(&b)).unwrap_or(s.len());
    s.split_at(at)
}

/// A host name or bracketed IPv6 literal at the start of `s`; the name
/// ends at any of `stops`.
fn take_host<'a>(s: &'a str, stops: &[u8], what: &str) -> Result<(String, &'a str), Msg> {
    if let Some(inner) = s.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return Err("IPv6 address needs a closing ']'".into());
        };
        let addr = &inner[..close];
        if !is_ipv6(addr) {
            return Err(format!("'[{addr}]' is not an IPv6 address"));
        }
        let rest = &inner[close + 1..];
        if let Some(b) = rest.bytes().next()
            && !stops.contains(&b)
        {
            return Err(format!("unexpected '{rest}' after ']'"));
        }
        return Ok((addr.to_string(), rest));
    }
    let (host, rest) = split_at_any(s, stops);
    if host.is_empty() {
        return Err(format!("{what} is required"));
    }
    if host.starts_with('-') {
        return Err(format!("{what} may not start with '-'"));
    }
    Ok((host.to_string(), rest))
}

/// A zone (`%eth0`) is fine for the resolver but not for `Ipv6Addr`.
fn is_ipv6(s: &str) -> bool {
    let bare = s.split_once('%').map_or(s, |(a, _)| a);
    bare.parse::<Ipv6Addr>().is_ok()
}

/// Unbracketed, `fe80::1` would be host `fe80` with a garbled port (or an
/// ssh command `:1`), and `2001:db8::1:3632` can be read more than one way.
fn reject_bare_ipv6(s: &str) -> Result<(), Msg> {
    let head = split_at_any(s, b"/=,").0;
    if is_ipv6(head) {
        return Err(format!("write IPv6 addresses in brackets, as in '[{head}]'"));
    }
    Ok(())
}

fn parse_ssh(user: &str, rest: &str) -> Result<(Transport, u32, Options), Msg> {
    reject_bare_ipv6(rest)?;
    let (host, rest) = take_host(rest, b"/=:,", "hostname after '@'")?;
    if host.contains('@') {
        return Err("more than one '@'".into());
    }
    let (limit, mut rest) = take_limit(rest, Some(":,"))?;
    let mut command = None;
    if let Some(r) = rest.strip_prefix(':') {
        let (cmd, r) = split_at_any(r, b",");
        if cmd.is_empty() {
            return Err("missing command after ':'".into());
        }
        command = Some(cmd.to_string());
        rest = r;
    }
    let opts = parse_options(rest)?;
    let transport = Transport::Ssh {
        user: (!user.is_empty()).then(|| user.to_string()),
        host,
        command,
    };
    Ok((transport, limit.unwrap_or(DEFAULT_REMOTE_LIMIT), opts))
}

fn parse_tcp(token: &str) -> Result<(Transport, u32, Options), Msg> {
    reject_bare_ipv6(token)?;
    let (host, rest) = take_host(token, b"/=:,", "hostname")?;
    let (mut limit, mut rest) = take_limit(rest, Some(":,"))?;
    let mut port = DEFAULT_PORT;
    if let Some(r) = rest.strip_prefix(':') {
        (port, rest) = parse_port(r)?;
    }
    let (late_limit, rest) = take_limit(rest, Some(","))?;
    if late_limit.is_some() {
        if limit.is_some() {
            return Err("the limit is given twice".into());
        }
        limit = late_limit;
    }
    let opts = parse_options(rest)?;
    Ok((
        Transport::Tcp { host, port },
        limit.unwrap_or(DEFAULT_REMOTE_LIMIT),
        opts,
    ))
}

/// `HOST:PORT[/N][,instance=NAME][,tls]`, after `reapi://`.
fn parse_reapi(s: &str) -> Result<(Transport, u32, Options), Msg> {
    reject_bare_ipv6(s)?;
    let (host, rest) = take_host(s, b"/=:,", "hostname after 'reapi://'")?;
    let Some(rest) = rest.strip_prefix(':') else {
        return Err("a REAPI host needs its port, as in 'reapi://HOST:8980'".into());
    };
    let (port, rest) = parse_port(rest)?;
    let (limit, rest) = take_limit(rest, Some(","))?;
    let (mut instance, mut tls, mut cpp) = (String::new(), false, false);
    if !rest.is_empty() {
        let list = rest
            .strip_prefix(',')
            .ok_or_else(|| format!("unexpected '{rest}'"))?;
        for opt in list.split(',') {
            match opt {
                "tls" => tls = true,
                // Pump mode: the cluster preprocesses (under `pump`).
                "cpp" => cpp = true,
                _ if opt.starts_with("instance=") => instance = opt["instance=".len()..].to_string(),
                "" => return Err("empty option (stray ',')".into()),
                "lzo" | "down" => {
                    return Err(format!("',{opt}' is for distccd hosts, not REAPI ones"));
                }
                _ => {
                    return Err(format!(
                        "unknown option ',{opt}' (known: ,instance=NAME ,tls ,cpp)"
                    ));
                }
            }
        }
    }
    Ok((
        Transport::Reapi {
            host,
            port,
            instance,
            tls,
        },
        limit.unwrap_or(DEFAULT_REMOTE_LIMIT),
        Options {
            cpp,
            ..Options::default()
        },
    ))
}

fn parse_port(s: &str) -> Result<(u16, &str), Msg> {
    let (text, rest) = split_at_any(s, b"/=,");
    if text.is_empty() {
        return Err("missing port after ':'".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port '{text}'"));
    }
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok((port, rest)),
        _ => Err(format!("port '{text}' is not in 1..65535")),
    }
}

#[derive(Default)]
struct Options {
    lzo: bool,
    cpp: bool,
    down: bool,
}

/// `s` is empty or starts with ','. Each option must be a whole word:
/// distcc's prefix match lets `,lzoX` pass as `,lzo`.
fn parse_options(s: &str) -> Result<Options, Msg> {
    let mut opts = Options::default();
    if s.is_empty() {
        return Ok(opts);
    }
    let Some(list) = s.strip_prefix(',') else {
        return Err(format!("unexpected '{s}'"));
    };
    for opt in list.split(',') {
        match opt {
            "lzo" => opts.lzo = true,
            "cpp" => opts.cpp = true,
            "down" => opts.down = true,
            "" => return Err("empty option (stray ',')".into()),
            _ if opt == "auth" || opt.starts_with("auth=") => {
                return Err(format!("',{opt}' (GSS-API authentication) is not supported"));
            }
            _ => {
                return Err(format!("unknown option ',{opt}' (known: ,lzo ,cpp ,down)"));
            }
        }
    }
    if opts.cpp && !opts.lzo {
        return Err("pump mode (',cpp') requires compression (',lzo')".into());
    }
    Ok(opts)
}

/// The host list with every TCP host's port set to `port`: what a build
/// inside a chroot served by `distccd@PORT` uses (the Arch wiki's
/// `host/5:3692`). Local and SSH entries are unchanged. Pure.
pub fn with_port(list: &HostList, port: u16) -> String {
    let mut words = Vec::new();
    if list.randomize {
        words.push("--randomize".to_owned());
    }
    if list.localslots != DEFAULT_LOCALSLOTS {
        words.push(format!("--localslots={}", list.localslots));
    }
    if list.localslots_cpp != DEFAULT_LOCALSLOTS_CPP {
        words.push(format!("--localslots_cpp={}", list.localslots_cpp));
    }
    for h in &list.hosts {
        words.push(match &h.transport {
            Transport::Tcp { host, .. } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let mut w = format!("{host}:{port}/{}", h.limit);
                let lzo = h.compression == Compression::Lzo;
                for (on, opt) in [(lzo, ",lzo"), (h.cpp, ",cpp"), (h.down, ",down")] {
                    if on {
                        w.push_str(opt);
                    }
                }
                w
            }
            _ => h.spec.clone(),
        });
    }
    words.join(" ")
}

/// Where the host list came from, in distcc's order (§3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostsSource {
    Env(String),
    UserFile(PathBuf, String),
    SystemFile(PathBuf, String),
    None,
}

impl HostsSource {
    pub fn text(&self) -> Option<&str> {
        match self {
            HostsSource::Env(t) | HostsSource::UserFile(_, t) | HostsSource::SystemFile(_, t) => Some(t),
            HostsSource::None => None,
        }
    }

    /// The name distcc uses in "X contained no hosts; can't distribute work".
    pub fn name(&self) -> String {
        match self {
            HostsSource::Env(_) => "$DISTCC_HOSTS".into(),
            HostsSource::UserFile(p, _) | HostsSource::SystemFile(p, _) => p.display().to_string(),
            HostsSource::None => "no hostlist".into(),
        }
    }
}

/// A set `$DISTCC_HOSTS` wins even when empty: distcc then warns that it
/// "contained no hosts" rather than falling back to the files.
pub fn choose_source(
    env_hosts: Option<&str>,
    user_file: Option<(PathBuf, String)>,
    system_file: Option<(PathBuf, String)>,
) -> HostsSource {
    if let Some(env) = env_hosts {
        HostsSource::Env(env.to_string())
    } else if let Some((path, text)) = user_file {
        HostsSource::UserFile(path, text)
    } else if let Some((path, text)) = system_file {
        HostsSource::SystemFile(path, text)
    } else {
        HostsSource::None
    }
}

/// The one function here that does I/O. `user_file` is
/// `$DISTCC_DIR/hosts` (`None` when no distcc dir can be found),
/// `system_file` normally [`SYSTEM_HOSTS_FILE`]. Files are read only when
/// needed, and an unreadable file is skipped like a missing one, as
/// distcc's `access(R_OK)` check does.
pub fn load_source(env_hosts: Option<&str>, user_file: Option<&Path>, system_file: &Path) -> HostsSource {
    let read = |p: &Path| {
        std::fs::read(p)
            .ok()
            .map(|b| (p.to_path_buf(), String::from_utf8_lossy(&b).into_owned()))
    };
    if env_hosts.is_some() {
        return choose_source(env_hosts, None, None);
    }
    let user = user_file.and_then(read);
    let system = if user.is_none() { read(system_file) } else { None };
    choose_source(None, user, system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroconf_marks_where_the_found_servers_go() {
        // (list, hosts before the found ones)
        let cases = [
            ("+zeroconf", Some(0), 0),
            ("localhost/2 +zeroconf red", Some(1), 2),
            ("red blue +zeroconf # more later\n+zeroconf", Some(2), 2),
            ("red", None, 1),
        ];
        for (text, at, n) in cases {
            let list = parse(text).unwrap();
            assert_eq!((list.zeroconf, list.hosts.len()), (at, n), "{text}");
        }
    }

    #[test]
    fn ports_mapped_for_a_chroot_instance() {
        let list = parse("localhost/2 red/5 blue:3632,lzo [fd00::1]/3 @ssh-host --randomize").unwrap();
        assert_eq!(
            with_port(&list, 3692),
            "--randomize localhost/2 red:3692/5 blue:3692/4,lzo [fd00::1]:3692/3 @ssh-host"
        );
        let again = parse(&with_port(&list, 3692)).unwrap();
        assert_eq!(
            with_port(&again, 3692),
            with_port(&list, 3692),
            "the output parses to the same list"
        );
    }

    fn local(limit: u32) -> (Transport, u32) {
        (Transport::Local, limit)
    }

    fn tcp(host: &str, port: u16, limit: u32) -> (Transport, u32) {
        let host = host.to_string();
        (Transport::Tcp { host, port }, limit)
    }

    fn ssh(user: Option<&str>, host: &str, command: Option<&str>, limit: u32) -> (Transport, u32) {
        let t = Transport::Ssh {
            user: user.map(str::to_string),
            host: host.to_string(),
            command: command.map(str::to_string),
        };
        (t, limit)
    }

    fn reapi(host: &str, port: u16, instance: &str, tls: bool, limit: u32) -> (Transport, u32) {
        let t = Transport::Reapi {
            host: host.to_string(),
            port,
            instance: instance.to_string(),
            tls,
        };
        (t, limit)
    }

    fn one(token: &str) -> HostSpec {
        let list = parse(token).unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(list.hosts.len(), 1, "{token}");
        list.hosts.into_iter().next().unwrap()
    }

    #[test]
    fn distcc_verified_example() {
        // test/testdistcc.py ParseHostSpec_Case.
        let text = "localhost 127.0.0.1 @angry   ted@angry\n\t@angry:/home/mbp/bin/distccd  angry:4204\n\
            ipv4-localhost\nangry/44\nangry:300/44\nangry/44:300\nangry,lzo\nangry:3000,lzo    \
            angry/44,lzo\n@angry,lzo\n@angry:/usr/sbin/distccd,lzo\nlocalhostbutnotreally\n";
        let (n, l) = (false, true);
        let want = [
            (local(2), n, "localhost"),
            (tcp("127.0.0.1", 3632, 4), n, "127.0.0.1"),
            (ssh(None, "angry", None, 4), n, "@angry"),
            (ssh(Some("ted"), "angry", None, 4), n, "ted@angry"),
            (
                ssh(None, "angry", Some("/home/mbp/bin/distccd"), 4),
                n,
                "@angry:/home/mbp/bin/distccd",
            ),
            (tcp("angry", 4204, 4), n, "angry:4204"),
            (tcp("ipv4-localhost", 3632, 4), n, "ipv4-localhost"),
            (tcp("angry", 3632, 44), n, "angry/44"),
            (tcp("angry", 300, 44), n, "angry:300/44"),
            (tcp("angry", 300, 44), n, "angry/44:300"),
            (tcp("angry", 3632, 4), l, "angry,lzo"),
            (tcp("angry", 3000, 4), l, "angry:3000,lzo"),
            (tcp("angry", 3632, 44), l, "angry/44,lzo"),
            (ssh(None, "angry", None, 4), l, "@angry,lzo"),
            (
                ssh(None, "angry", Some("/usr/sbin/distccd"), 4),
                l,
                "@angry:/usr/sbin/distccd,lzo",
            ),
            (tcp("localhostbutnotreally", 3632, 4), n, "localhostbutnotreally"),
        ];
        let list = parse(text).unwrap();
        assert_eq!(list.hosts.len(), 16);
        for (got, ((transport, limit), lzo, spec)) in list.hosts.iter().zip(want) {
            assert_eq!(got.spec, spec);
            assert_eq!(got.transport, transport, "{spec}");
            assert_eq!(got.limit, limit, "{spec}");
            assert_eq!(got.compression == Compression::Lzo, lzo, "{spec}");
            assert!(!got.cpp && !got.down, "{spec}");
        }
        assert!(!list.randomize);
        assert_eq!((list.localslots, list.localslots_cpp), (4, 8));
    }

    #[test]
    fn token_forms() {
        let cases = [
            ("localhost/8", local(8)),
            ("localhost=3", local(3)),
            // distcc ignores whatever follows a localhost limit.
            ("localhost/4,lzo,cpp", local(4)),
            ("localhost/4junk", local(4)),
            ("localhost:3632", tcp("localhost", 3632, 4)),
            ("localhost,lzo", tcp("localhost", 3632, 4)),
            ("localhostfoo", tcp("localhostfoo", 3632, 4)),
            ("LOCALHOST", tcp("LOCALHOST", 3632, 4)),
            ("red=7", tcp("red", 3632, 7)),
            ("red:300=7", tcp("red", 300, 7)),
            ("red=7:300", tcp("red", 300, 7)),
            ("red:65535", tcp("red", 65535, 4)),
            ("10.0.0.1:1/1", tcp("10.0.0.1", 1, 1)),
            ("[::1]", tcp("::1", 3632, 4)),
            ("[::1]:4000", tcp("::1", 4000, 4)),
            ("[fe80::1%eth0]:4000/8", tcp("fe80::1%eth0", 4000, 8)),
            ("[2001:db8::2]/6:4000", tcp("2001:db8::2", 4000, 6)),
            ("me@red/3", ssh(Some("me"), "red", None, 3)),
            (
                "me@red=3:/opt/distccd",
                ssh(Some("me"), "red", Some("/opt/distccd"), 3),
            ),
            ("@[::1]/2", ssh(None, "::1", None, 2)),
            // Only what follows ':' is a command, even if it looks like a limit.
            ("@red:/bin/d/9", ssh(None, "red", Some("/bin/d/9"), 4)),
            ("reapi://rbe:8980", reapi("rbe", 8980, "", false, 4)),
            ("reapi://rbe:8980/64", reapi("rbe", 8980, "", false, 64)),
            ("reapi://rbe:443=16,tls", reapi("rbe", 443, "", true, 16)),
            (
                "reapi://10.1.2.3:8980/8,instance=main/linux,tls",
                reapi("10.1.2.3", 8980, "main/linux", true, 8),
            ),
            ("reapi://[::1]:8980,instance=", reapi("::1", 8980, "", false, 4)),
        ];
        for (token, (transport, limit)) in cases {
            let h = one(token);
            assert_eq!((h.transport, h.limit), (transport, limit), "{token}");
            assert_eq!(h.spec, token);
        }
    }

    #[test]
    fn options_and_protocols() {
        let cases = [
            ("red", false, false, false, 1),
            ("red,lzo", true, false, false, 2),
            ("red,lzo,cpp", true, true, false, 3),
            ("red,cpp,lzo", true, true, false, 3),
            ("red:400/2,cpp,lzo", true, true, false, 3),
            ("@red:/bin/distccd,lzo,cpp", true, true, false, 3),
            ("red,down", false, false, true, 1),
            ("red,lzo,lzo,down", true, false, true, 2),
            ("localhost", false, false, false, 1),
        ];
        for (token, lzo, cpp, down, protocol) in cases {
            let h = one(token);
            assert_eq!(
                (h.compression == Compression::Lzo, h.cpp, h.down),
                (lzo, cpp, down),
                "{token}"
            );
            assert_eq!(h.protocol().number(), protocol, "{token}");
        }
    }

    #[test]
    fn separators_and_comments() {
        let list = parse(
            "# build farm\r\n\
             red\tgreen\x0cblue\rwhite # slow, keep last\n\
             @angry,lzo#asdasd\n\
             #localhost\n\
             yellow#nospace more-comment\n  pink",
        )
        .unwrap();
        let specs: Vec<_> = list.hosts.iter().map(|h| h.spec.as_str()).collect();
        assert_eq!(
            specs,
            ["red", "green", "blue", "white", "@angry,lzo", "yellow", "pink"]
        );
        assert_eq!(list.hosts[4].compression, Compression::Lzo);
    }

    #[test]
    fn global_options() {
        let list = parse("--randomize a --localslots=6 b --localslots_cpp/12").unwrap();
        assert!(list.randomize);
        assert_eq!((list.localslots, list.localslots_cpp), (6, 12));
        assert_eq!(list.hosts.len(), 2);
        let list = parse("--localslots/3 --localslots_cpp=5").unwrap();
        assert_eq!((list.localslots, list.localslots_cpp), (3, 5));
        assert!(list.hosts.is_empty());
    }

    #[test]
    fn empty_lists_are_not_errors() {
        for text in ["", "   \n\t", "# nothing here\n", "--randomize"] {
            let list = parse(text).unwrap();
            assert!(list.hosts.is_empty(), "{text:?}");
            assert_eq!(total_slots(&list), 0);
        }
    }

    #[test]
    fn errors_name_the_token() {
        // (input, bad token, what the message must contain)
        let cases = [
            (":4200", ":4200", "hostname is required"),
            ("@", "@", "hostname after '@' is required"),
            ("mbp@", "mbp@", "hostname after '@' is required"),
            ("mbp@:/bin/distccd", "mbp@:/bin/distccd", "hostname after '@'"),
            ("/4", "/4", "hostname is required"),
            ("angry::", "angry::", "invalid port ':'"),
            ("angry:", "angry:", "missing port"),
            ("reapi://rbe", "reapi://rbe", "needs its port"),
            ("reapi://rbe/4", "reapi://rbe/4", "needs its port"),
            (
                "reapi://:8980",
                "reapi://:8980",
                "hostname after 'reapi://' is required",
            ),
            ("reapi://rbe:0", "reapi://rbe:0", "not in 1..65535"),
            (
                "reapi://rbe:8980,lzo",
                "reapi://rbe:8980,lzo",
                "for distccd hosts",
            ),
            (
                "reapi://rbe:8980,cpp,lzo",
                "reapi://rbe:8980,cpp,lzo",
                "for distccd hosts",
            ),
            (
                "reapi://rbe:8980,tlss",
                "reapi://rbe:8980,tlss",
                "unknown option ',tlss'",
            ),
            ("reapi://rbe:8980,", "reapi://rbe:8980,", "stray ','"),
            ("reapi://rbe:8980x", "reapi://rbe:8980x", "invalid port"),
            ("reapi://fe80::1:8980", "reapi://fe80::1:8980", "in brackets"),
            ("grpc://rbe:8980", "grpc://rbe:8980", "unknown scheme"),
            ("angry:0", "angry:0", "not in 1..65535"),
            ("angry:65536", "angry:65536", "not in 1..65535"),
            ("angry:-1", "angry:-1", "invalid port '-1'"),
            ("angry:12x", "angry:12x", "invalid port '12x'"),
            ("fe80::1", "fe80::1", "in brackets, as in '[fe80::1]'"),
            ("fe80::1%eth0:4000", "fe80::1%eth0:4000", "in brackets"),
            ("@fe80::1", "@fe80::1", "'[fe80::1]'"),
            ("::1/2", "::1/2", "in brackets"),
            ("2001:db8::1:3632,lzo", "2001:db8::1:3632,lzo", "in brackets"),
            ("angry/0", "angry/0", "at least 1"),
            ("angry/", "angry/", "missing limit after '/'"),
            ("angry/x", "angry/x", "limit 'x' is not a number"),
            ("angry/-3", "angry/-3", "limit '-3' is not a number"),
            ("angry/4x", "angry/4x", "unexpected 'x' after the limit"),
            ("angry/99999999999", "angry/99999999999", "too large"),
            ("angry/4:300/5", "angry/4:300/5", "given twice"),
            ("@angry/0", "@angry/0", "at least 1"),
            ("@angry/2x", "@angry/2x", "unexpected 'x'"),
            ("@angry:", "@angry:", "missing command"),
            ("@angry:,lzo", "@angry:,lzo", "missing command"),
            ("a@b@c", "a@b@c", "more than one '@'"),
            ("localhost/0", "localhost/0", "at least 1"),
            ("localhost/", "localhost/", "missing limit"),
            ("angry,lzoX", "angry,lzoX", "unknown option ',lzoX'"),
            ("angry,lzo,", "angry,lzo,", "empty option"),
            ("angry,", "angry,", "empty option"),
            ("angry,gzip", "angry,gzip", "unknown option ',gzip'"),
            (
                "angry,auth",
                "angry,auth",
                "',auth' (GSS-API authentication) is not supported",
            ),
            ("angry,auth=svc", "angry,auth=svc", "not supported"),
            (
                "angry,cpp",
                "angry,cpp",
                "pump mode (',cpp') requires compression (',lzo')",
            ),
            ("@angry,cpp,down", "@angry,cpp,down", "requires compression"),
            ("[::1", "[::1", "closing ']'"),
            ("[]", "[]", "is not an IPv6 address"),
            ("[1.2.3.4]:80", "[1.2.3.4]:80", "is not an IPv6 address"),
            ("[::1]x", "[::1]x", "unexpected 'x' after ']'"),
            ("-oProxyCommand=x", "-oProxyCommand=x", "may not start with '-'"),
            ("@-oProxyCommand=x", "@-oProxyCommand=x", "may not start with '-'"),
            ("--randomise", "--randomise", "unknown option"),
            ("--randomizeX", "--randomizeX", "unknown option"),
            (
                "--localslots",
                "--localslots",
                "needs a number, as in '--localslots=N'",
            ),
            (
                "--localslots_cpp",
                "--localslots_cpp",
                "as in '--localslots_cpp=N'",
            ),
            ("--localslots=0", "--localslots=0", "at least 1"),
            ("--localslots=4x", "--localslots=4x", "unexpected 'x'"),
            ("--localslotsX", "--localslotsX", "unexpected 'X'"),
            ("--localslots_cpp=", "--localslots_cpp=", "missing limit"),
            ("+zeroconf,lzo", "+zeroconf,lzo", "unknown keyword"),
            ("+foo", "+foo", "unknown keyword"),
        ];
        for (input, token, needle) in cases {
            // Put the bad token after good ones, on a later line, so the
            // offset and line bookkeeping are exercised too.
            let text = format!("red green/2\n  # c\n blue {input} white");
            let e = parse(&text).expect_err(input);
            assert_eq!(e.token, token, "{input}");
            assert_eq!(&text[e.offset..e.offset + token.len()], token, "{input}");
            assert_eq!(e.offset, text.find(input).unwrap(), "{input}");
            assert_eq!((e.line_no, e.column), (3, 6), "{input}");
            assert_eq!(e.line, format!(" blue {input} white"), "{input}");
            assert!(e.message.contains(needle), "{input}: {}", e.message);
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("bad host spec '{token}': ")),
                "{shown}"
            );
        }
    }

    #[test]
    fn error_display_points_at_the_token() {
        let e = parse("red angry:: blue").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad host spec 'angry::': invalid port ':'\n    red angry:: blue\n        ^^^^^^^"
        );
        // Tabs are kept so the caret lines up at any tab width.
        let e = parse("red\tangry/0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad host spec 'angry/0': limit must be at least 1\n    red\tangry/0\n       \t^^^^^^^"
        );
        // Long lines are cut around the token.
        let text = format!("{} bad/0 {}", "h ".repeat(100), "t ".repeat(100));
        let e = parse(&text).unwrap_err();
        let shown = e.to_string();
        let lines: Vec<_> = shown.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("    ...") && lines[1].ends_with("..."),
            "{shown}"
        );
        assert!(lines[1].len() < 100, "{shown}");
        let caret = lines[2].find('^').unwrap();
        assert_eq!(&lines[1][caret..caret + 5], "bad/0");
        assert!(lines[2].ends_with("^^^^^"));
    }

    #[test]
    fn lock_and_backoff_names() {
        let cases = [
            ("localhost/3", "cpu_localhost_2", "backoff_localhost_0"),
            ("red", "cpu_tcp_red_3632_2", "backoff_tcp_red_3632_0"),
            ("red:4000/9,lzo", "cpu_tcp_red_4000_2", "backoff_tcp_red_4000_0"),
            ("[::1]:4000", "cpu_tcp_::1_4000_2", "backoff_tcp_::1_4000_0"),
            ("me@red:/bin/distccd", "cpu_ssh_red_2", "backoff_ssh_red_0"),
            (
                "reapi://rbe:8980/64",
                "cpu_reapi_rbe_8980_2",
                "backoff_reapi_rbe_8980_0",
            ),
        ];
        for (token, lock, backoff) in cases {
            let h = one(token);
            assert_eq!(h.lock_name(2), lock);
            assert_eq!(h.backoff_name(), backoff);
            assert_eq!(h.is_local(), token.starts_with("localhost"));
        }
    }

    #[test]
    fn total_slots_is_the_sum_of_limits() {
        // man distcc: `distcc -j` for this list prints 17.
        assert_eq!(total_slots(&parse("localhost red/7 @blue green").unwrap()), 17);
        // --localslots does not count towards -j.
        assert_eq!(total_slots(&parse("--localslots=9 a/1 b/2").unwrap()), 3);
    }

    #[test]
    fn reapi_hosts_mix_with_others() {
        let list = parse("localhost/2 reapi://rbe:8980/64 red/3,lzo\n# farm\nreapi://[::1]:9000,instance=x")
            .unwrap();
        let kinds: Vec<&str> = list
            .hosts
            .iter()
            .map(|h| match h.transport {
                Transport::Local => "local",
                Transport::Tcp { .. } => "tcp",
                Transport::Ssh { .. } => "ssh",
                Transport::Reapi { .. } => "reapi",
            })
            .collect();
        assert_eq!(kinds, ["local", "reapi", "tcp", "reapi"]);
        assert_eq!(total_slots(&list), 2 + 64 + 3 + 4);
        // The chroot port mapping leaves a cluster as it is.
        assert_eq!(
            with_port(&list, 3692),
            "localhost/2 reapi://rbe:8980/64 red:3692/3,lzo reapi://[::1]:9000,instance=x"
        );
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut list = parse("a b c d e f g h").unwrap();
        let original = list.clone();
        list.shuffle(42);
        let mut again = original.clone();
        again.shuffle(42);
        assert_eq!(list, again);
        assert_ne!(list, original);
        let mut specs: Vec<_> = list.hosts.iter().map(|h| h.spec.clone()).collect();
        specs.sort();
        assert_eq!(specs, ["a", "b", "c", "d", "e", "f", "g", "h"]);
    }

    #[test]
    fn source_precedence() {
        let user = || Some((PathBuf::from("/home/u/.distcc/hosts"), "u".to_string()));
        let system = || Some((PathBuf::from("/etc/distcc/hosts"), "s".to_string()));
        let cases = [
            (Some("e"), user(), system(), HostsSource::Env("e".into())),
            // Set but empty still wins; the caller warns "no hosts".
            (Some(""), user(), system(), HostsSource::Env(String::new())),
            (
                None,
                user(),
                system(),
                HostsSource::UserFile(user().unwrap().0, "u".into()),
            ),
            (
                None,
                None,
                system(),
                HostsSource::SystemFile(system().unwrap().0, "s".into()),
            ),
            (None, None, None, HostsSource::None),
        ];
        for (env, u, s, want) in cases {
            assert_eq!(choose_source(env, u, s), want);
        }
        assert_eq!(HostsSource::Env(String::new()).name(), "$DISTCC_HOSTS");
        assert_eq!(HostsSource::Env("x".into()).text(), Some("x"));
        assert_eq!(HostsSource::None.text(), None);
    }

    #[test]
    fn load_source_reads_only_what_it_needs() {
        let dir = std::env::temp_dir().join(format!("distcc-hosts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let user = dir.join("user");
        let system = dir.join("system");
        let missing = dir.join("missing");
        std::fs::write(&user, "u1 u2").unwrap();
        std::fs::write(&system, "s1").unwrap();
        assert_eq!(
            load_source(Some(""), Some(&user), &system),
            HostsSource::Env(String::new())
        );
        assert_eq!(
            load_source(None, Some(&user), &system),
            HostsSource::UserFile(user.clone(), "u1 u2".into())
        );
        assert_eq!(
            load_source(None, Some(&missing), &system),
            HostsSource::SystemFile(system.clone(), "s1".into())
        );
        assert_eq!(load_source(None, None, &missing), HostsSource::None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
