/*!
DNS-SD (zeroconf) records for distcc, as distcc 3.4 registers and browses
them (its `zeroconf-reg.c` and `zeroconf.c`), pure: what a server publishes
([`advert`]), what a client makes of a service it found ([`entry`]), and
the lines of `$DISTCC_DIR/zeroconf/hosts`, which both clients share.

distcc 3.4 matches compilers only by the subtype's name:
`_<machine>--<version>._sub._distcc._tcp`, from `cc -dumpmachine` and
`cc -dumpversion` on each side. Its clients read `cpus` and `jobs` from the
TXT record and nothing else, so the keys of our own ([`OUR_KEYS`]) come
after its seven and it never sees them.

The network is in [`avahi`] (avahi-daemon over D-Bus: publishing, and
asking its cache), [`mdns`] (the built-in responder) and [`query`] (the
client's own one-shot queries, whose messages are [`dns`]).
*/

pub mod avahi;
pub mod dns;
pub mod mdns;
pub mod query;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The service type (`DCC_DNS_SERVICE_TYPE`), in the `local` domain.
pub const SERVICE_TYPE: &str = "_distcc._tcp";

/// What distcc 3.4 puts in `distcc=`: the version whose protocols we speak.
pub const DISTCC_VERSION: &str = "3.4";

/// A client that finds no `jobs` or `cpus` gives the host this limit (3.4's default).
const DEFAULT_JOBS: u32 = 4;

/// A TXT record is the server's word: a limit beyond this is taken as this.
pub const MAX_JOBS: u32 = 256;

/// At most this many services are listed, however many the network offers
/// (a hostile LAN could advertise thousands).
pub const MAX_SERVICES: usize = 128;

/// The keys distcc-rs adds after distcc 3.4's: its version, and the
/// protocols it serves (1 plain, 2 lzo, 3 pump), from which clients add
/// `,lzo` and `,cpp`.
pub const OUR_KEYS: [&str; 2] = ["distcc-rs", "protocols"];

/// How long a browse waits: for the first answer, after the latest one,
/// and in all.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    pub first: Duration,
    pub settle: Duration,
    pub most: Duration,
}

/// A compiler as the subtype names it (`-dumpmachine`, `-dumpversion`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompilerId {
    pub machine: String,
    pub version: String,
}

impl CompilerId {
    /// From the two probes' outputs: the first word of each, as distcc
    /// 3.4's `dcc_get_dumpversion`/`dcc_get_dumpmachine`. `None` if either is empty.
    pub fn from_outputs(machine: &str, version: &str) -> Option<CompilerId> {
        let first = |s: &str| s.split_whitespace().next().map(str::to_owned);
        Some(CompilerId {
            machine: first(machine)?,
            version: first(version)?,
        })
    }
}

/// distcc 3.4's `strip_bad_chars`: lower case, and `-` for anything but
/// `[a-z0-9]`, so that `x86_64` is `x86-64`.
pub fn strip_bad_chars(s: &str) -> String {
    s.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The subtype name for a compiler, e.g. `_x86-64-linux-gnu--12`.
pub fn subtype_label(cc: &CompilerId) -> String {
    format!(
        "_{}--{}",
        strip_bad_chars(&cc.machine),
        strip_bad_chars(&cc.version)
    )
}

/// What a client browses for, and a server adds as its subtype:
/// `_x86-64-linux-gnu--12._sub._distcc._tcp`, or the plain type when the
/// compiler could not be asked (as distcc 3.4 does).
pub fn browse_type(cc: Option<&CompilerId>) -> String {
    match cc {
        Some(cc) => format!("{}._sub.{SERVICE_TYPE}", subtype_label(cc)),
        None => SERVICE_TYPE.to_owned(),
    }
}

/// distcc's own build triple (`gnuhost=`), as configure would name it.
pub fn gnuhost() -> String {
    let vendor = match std::env::consts::ARCH {
        "x86_64" | "x86" => "pc",
        _ => "unknown",
    };
    let arch = match std::env::consts::ARCH {
        "x86" => "i686",
        a => a,
    };
    format!("{arch}-{vendor}-{}-gnu", std::env::consts::OS)
}

/// What a server knows of itself when it publishes.
#[derive(Clone, Debug)]
pub struct ServerFacts {
    /// `gethostname()`.
    pub hostname: String,
    /// Online CPUs.
    pub cpus: u32,
    /// `--jobs` (or its default).
    pub jobs: u32,
    /// The compiler the server runs for `cc`, if it could be asked.
    pub cc: Option<CompilerId>,
    /// The DIST protocol versions served.
    pub protocols: Vec<u32>,
}

/// Where a service is published: on every interface (of the families the
/// server listens on), or only where the server's addresses are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Everywhere { v4: bool, v6: bool },
    Addresses(Vec<IpAddr>),
}

/// A server that listens on no address another machine can reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable(pub Vec<SocketAddr>);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(
            f,
            "listening only on {}, which no other machine can reach",
            if addrs.is_empty() {
                "nothing".into()
            } else {
                addrs.join(", ")
            }
        )
    }
}

/// The record a server publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// `distcc@HOST`.
    pub instance: String,
    pub port: u16,
    /// The subtype label (`_x86-64-linux-gnu--12`), when the compiler answered.
    pub subtype: Option<String>,
    /// In distcc 3.4's order, then ours.
    pub txt: Vec<(String, String)>,
    pub scope: Scope,
}

impl Advert {
    /// The full subtype name, as [`browse_type`] gives it.
    pub fn subtype_name(&self) -> Option<String> {
        self.subtype.as_ref().map(|s| format!("{s}._sub.{SERVICE_TYPE}"))
    }

    /// For logs: the TXT record as `key=value` words.
    pub fn txt_words(&self) -> String {
        let words: Vec<String> = self.txt.iter().map(|(k, v)| format!("{k}={v}")).collect();
        words.join(" ")
    }
}

/// Where a listener set is reachable from. A wildcard listener makes it
/// everywhere (`[::]` takes IPv4 too unless `v6only`); loopback and
/// unspecified-port sockets are left out.
pub fn scope(listening: &[(SocketAddr, bool)]) -> Result<(Scope, u16), Unreachable> {
    let reachable: Vec<&(SocketAddr, bool)> = listening
        .iter()
        .filter(|(a, _)| !a.ip().is_loopback() && a.port() != 0 && !is_mapped_loopback(a.ip()))
        .collect();
    let Some(first) = reachable.first() else {
        return Err(Unreachable(listening.iter().map(|(a, _)| *a).collect()));
    };
    let port = first.0.port();
    let (mut v4, mut v6) = (false, false);
    for (a, v6only) in &reachable {
        match a.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => v4 = true,
            IpAddr::V6(ip) if ip.is_unspecified() => {
                v6 = true;
                v4 |= !v6only;
            }
            _ => {}
        }
    }
    if v4 || v6 {
        return Ok((Scope::Everywhere { v4, v6 }, port));
    }
    let mut addrs: Vec<IpAddr> = reachable.iter().map(|(a, _)| unmapped(a.ip())).collect();
    addrs.dedup();
    Ok((Scope::Addresses(addrs), port))
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    unmapped(ip).is_loopback()
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a server publishes: distcc 3.4's record (`zeroconf-reg.c`), with
/// our keys after its seven.
pub fn advert(facts: &ServerFacts, scope: Scope, port: u16) -> Advert {
    let mut txt: Vec<(String, String)> = vec![
        ("txtvers".into(), "1".into()),
        ("cpus".into(), facts.cpus.to_string()),
        ("jobs".into(), facts.jobs.to_string()),
        ("distcc".into(), DISTCC_VERSION.into()),
        ("gnuhost".into(), gnuhost()),
    ];
    // Unstripped, and left out when the compiler did not answer (as 3.4).
    if let Some(cc) = &facts.cc {
        txt.push(("cc_version".into(), cc.version.clone()));
        txt.push(("cc_machine".into(), cc.machine.clone()));
    }
    let protocols: Vec<String> = facts.protocols.iter().map(u32::to_string).collect();
    txt.push((OUR_KEYS[0].into(), env!("CARGO_PKG_VERSION").into()));
    txt.push((OUR_KEYS[1].into(), protocols.join(",")));
    Advert {
        instance: format!("distcc@{}", facts.hostname),
        port,
        subtype: facts.cc.as_ref().map(subtype_label),
        txt,
        scope,
    }
}

/// An address a service was found at; `scope` is the interface an IPv6
/// link-local address belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundAddr {
    pub ip: IpAddr,
    pub scope: Option<String>,
}

/// A service a browse resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The instance name (`distcc@HOST`).
    pub instance: String,
    pub port: u16,
    pub addrs: Vec<FoundAddr>,
    /// In the record's order; a key without `=` has no value.
    pub txt: Vec<(String, Option<String>)>,
}

impl Found {
    fn txt(&self, key: &str) -> Option<&str> {
        self.txt
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// A TXT record's strings as keys and values; a key without `=` has none
/// (RFC 6763 §6.4).
pub fn txt_pairs(strings: &[Vec<u8>]) -> Vec<(String, Option<String>)> {
    strings
        .iter()
        .map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (kv.into_owned(), None),
            }
        })
        .collect()
}

/// Why a service that was found is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// Only loopback addresses, which would name this machine.
    Loopback,
    /// Only IPv6 link-local addresses, and no interface to reach them by.
    LinkLocalWithoutScope,
    NoAddress,
    PortZero,
    /// It publishes another compiler (the subtype label it implies).
    OtherCompiler(String),
    /// It publishes no compiler (no `cc_machine`/`cc_version`, so no subtype).
    NoCompiler,
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unusable::Loopback => "it gave only loopback addresses, which name this machine",
            Unusable::LinkLocalWithoutScope => {
                "it gave only IPv6 link-local addresses, without the interface they are on"
            }
            Unusable::NoAddress => "it gave no address",
            Unusable::PortZero => "it gave port 0",
            Unusable::OtherCompiler(label) => {
                return write!(f, "its compiler is {label}, not this machine's cc");
            }
            Unusable::NoCompiler => {
                "it names no compiler (no cc_machine and cc_version), so it has no subtype"
            }
        })
    }
}

/// One line of the hosts file: a host spec and a note of where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub spec: String,
    /// The instance name, kept as a comment after the spec.
    pub instance: String,
}

/// The host spec for a found service: the first usable address (IPv4, then
/// global IPv6, then link-local IPv6 with its interface), the limit from
/// `jobs` (else `cpus` + 2, else 4, as distcc 3.4), and `,lzo`/`,cpp` when
/// our `protocols` key says the server speaks them. distcc 3.4 writes no
/// options at all; our lines are still its grammar.
///
/// `cc` is this machine's compiler: a service must publish the same subtype
/// label. It is read from the TXT record's `cc_machine` and `cc_version`,
/// from which distcc 3.4 and we both make the subtype, because browsing the
/// subtype itself misses `mdns-sd` responders (they answer a subtype query
/// with the base type's PTR and put the subtype's among the additionals).
/// Without a `cc` (it could not be asked) every server will do, as distcc
/// 3.4 then browses the plain type.
pub fn entry(found: &Found, cc: Option<&CompilerId>) -> Result<Entry, Unusable> {
    if let Some(cc) = cc {
        let theirs = match (found.txt("cc_machine"), found.txt("cc_version")) {
            (Some(m), Some(v)) => CompilerId::from_outputs(m, v).ok_or(Unusable::NoCompiler)?,
            _ => return Err(Unusable::NoCompiler),
        };
        let (want, got) = (subtype_label(cc), subtype_label(&theirs));
        if want != got {
            return Err(Unusable::OtherCompiler(got));
        }
    }
    if found.port == 0 {
        return Err(Unusable::PortZero);
    }
    let rank = |a: &FoundAddr| -> Option<u8> {
        match unmapped(a.ip) {
            IpAddr::V4(ip) if ip.is_loopback() || ip.is_unspecified() => None,
            IpAddr::V4(_) => Some(0),
            IpAddr::V6(ip) if ip.is_loopback() || ip.is_unspecified() => None,
            IpAddr::V6(ip) if is_link_local(&ip) => a.scope.as_ref().map(|_| 2),
            IpAddr::V6(_) => Some(1),
        }
    };
    let best = found
        .addrs
        .iter()
        .filter_map(|a| rank(a).map(|r| (r, a)))
        .min_by(|(r1, a1), (r2, a2)| r1.cmp(r2).then_with(|| a1.ip.cmp(&a2.ip)));
    let Some((_, addr)) = best else {
        let loopback = found.addrs.iter().all(|a| unmapped(a.ip).is_loopback());
        return Err(if found.addrs.is_empty() {
            Unusable::NoAddress
        } else if loopback {
            Unusable::Loopback
        } else {
            Unusable::LinkLocalWithoutScope
        });
    };
    let host = match (unmapped(addr.ip), &addr.scope) {
        (IpAddr::V4(ip), _) => ip.to_string(),
        (IpAddr::V6(ip), Some(scope)) if is_link_local(&ip) => format!("[{ip}%{scope}]"),
        (IpAddr::V6(ip), _) => format!("[{ip}]"),
    };
    let number = |k: &str| found.txt(k).and_then(|v| v.trim().parse::<i64>().ok());
    let limit = match (number("jobs"), number("cpus")) {
        (Some(j), _) if j > 0 => j,
        (_, Some(c)) if c > 0 => c + 2,
        _ => i64::from(DEFAULT_JOBS),
    };
    let limit = limit.clamp(1, i64::from(MAX_JOBS));
    let protocols: Vec<&str> = found
        .txt(OUR_KEYS[1])
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let options = if protocols.contains(&"3") && protocols.contains(&"2") {
        ",lzo,cpp"
    } else if protocols.contains(&"2") {
        ",lzo"
    } else {
        ""
    };
    Ok(Entry {
        spec: format!("{host}:{}/{limit}{options}", found.port),
        instance: found.instance.clone(),
    })
}

fn is_link_local(ip: &Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

/// The hosts file: a header saying who wrote it and what was browsed, then
/// a line per service, `SPEC # INSTANCE`. Services that resolve to the same
/// spec are written once (distcc 3.4 collapses by instance name instead),
/// and no more than [`MAX_SERVICES`].
pub fn render_hosts(browsed: &str, via: &str, entries: &[Entry]) -> String {
    let mut out = format!("{HEADER}{}: {browsed} via {via}\n", env!("CARGO_PKG_VERSION"));
    let mut seen = Vec::new();
    for e in entries {
        if seen.contains(&&e.spec) {
            continue;
        }
        if seen.len() == MAX_SERVICES {
            break;
        }
        seen.push(&e.spec);
        // The instance is the server's word: no line break may end the comment.
        let note: String = e
            .instance
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        out.push_str(&format!("{} # {note}\n", e.spec));
    }
    out
}

/// How our hosts files begin.
const HEADER: &str = "# distcc-rs ";

/// Whether a hosts file was written by us (distcc 3.4's have no comments).
pub fn written_by_us(text: &str) -> bool {
    text.starts_with(HEADER)
}

/// A hosts file's lines as specs and their notes (comments). Lines of
/// distcc 3.4's file have no note. The specs are checked by the caller with
/// the host grammar.
pub fn parse_hosts(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .filter_map(|line| {
            let (spec, note) = match line.split_once('#') {
                Some((s, n)) => (s.trim(), Some(n.trim().to_owned())),
                None => (line.trim(), None),
            };
            (!spec.is_empty()).then(|| (spec.to_owned(), note.filter(|n| !n.is_empty())))
        })
        .take(MAX_SERVICES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtypes_are_named_as_distcc_3_4_names_them() {
        // (-dumpmachine, -dumpversion, browse type)
        let cases = [
            (
                "x86_64-linux-gnu\n",
                "12\n",
                "_x86-64-linux-gnu--12._sub._distcc._tcp",
            ),
            (
                "x86_64-pc-linux-gnu",
                "14.2.1 extra",
                "_x86-64-pc-linux-gnu--14-2-1._sub._distcc._tcp",
            ),
            (
                "Aarch64-Linux-GNU",
                "13",
                "_aarch64-linux-gnu--13._sub._distcc._tcp",
            ),
            (
                "i686-linux-gnu",
                "clang+19",
                "_i686-linux-gnu--clang-19._sub._distcc._tcp",
            ),
        ];
        for (machine, version, want) in cases {
            let cc = CompilerId::from_outputs(machine, version).unwrap();
            assert_eq!(browse_type(Some(&cc)), want, "{machine} {version}");
        }
        assert_eq!(CompilerId::from_outputs("", "12"), None);
        assert_eq!(CompilerId::from_outputs("x86_64", " \n"), None);
        assert_eq!(browse_type(None), "_distcc._tcp");
    }

    fn facts(cc: bool) -> ServerFacts {
        ServerFacts {
            hostname: "zc-a".into(),
            cpus: 2,
            jobs: 3,
            cc: cc.then(|| CompilerId {
                machine: "x86_64-linux-gnu".into(),
                version: "12".into(),
            }),
            protocols: vec![1, 2, 3],
        }
    }

    #[test]
    fn the_record_has_3_4s_keys_in_its_order_then_ours() {
        let all = Scope::Everywhere { v4: true, v6: true };
        let a = advert(&facts(true), all.clone(), 3632);
        assert_eq!(a.instance, "distcc@zc-a");
        assert_eq!(
            a.subtype_name().unwrap(),
            "_x86-64-linux-gnu--12._sub._distcc._tcp"
        );
        let keys: Vec<&str> = a.txt.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "txtvers",
                "cpus",
                "jobs",
                "distcc",
                "gnuhost",
                "cc_version",
                "cc_machine",
                "distcc-rs",
                "protocols"
            ]
        );
        let words = a.txt_words();
        assert!(
            words.starts_with("txtvers=1 cpus=2 jobs=3 distcc=3.4 gnuhost="),
            "{words}"
        );
        assert!(
            words.contains(" cc_version=12 cc_machine=x86_64-linux-gnu distcc-rs="),
            "unstripped: {words}"
        );
        assert!(words.ends_with(" protocols=1,2,3"), "{words}");
        // Without a compiler: no subtype and no cc_ keys, as 3.4.
        let bare = advert(&facts(false), all, 3632);
        assert_eq!(bare.subtype, None);
        assert!(!bare.txt_words().contains("cc_"), "{}", bare.txt_words());
    }

    #[test]
    fn a_server_is_published_where_it_listens() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let every = |v4, v6| Ok((Scope::Everywhere { v4, v6 }, 3632));
        type Case = (Vec<(SocketAddr, bool)>, Result<(Scope, u16), Unreachable>);
        let cases: Vec<Case> = vec![
            (vec![(sa("[::]:3632"), false)], every(true, true)),
            (vec![(sa("[::]:3632"), true)], every(false, true)),
            (vec![(sa("0.0.0.0:3632"), false)], every(true, false)),
            (
                vec![(sa("10.99.0.1:3700"), false)],
                Ok((Scope::Addresses(vec!["10.99.0.1".parse().unwrap()]), 3700)),
            ),
            // A v4-mapped listener is published as the IPv4 address.
            (
                vec![(sa("[::ffff:10.0.0.2]:3632"), false)],
                Ok((Scope::Addresses(vec!["10.0.0.2".parse().unwrap()]), 3632)),
            ),
            (
                vec![(sa("127.0.0.1:3632"), false), (sa("[::1]:3632"), false)],
                Err(Unreachable(vec![sa("127.0.0.1:3632"), sa("[::1]:3632")])),
            ),
            (
                vec![(sa("[::ffff:127.0.0.1]:3632"), false)],
                Err(Unreachable(vec![sa("[::ffff:127.0.0.1]:3632")])),
            ),
            // Loopback beside a real address: only the real one.
            (
                vec![(sa("127.0.0.1:3632"), false), (sa("192.168.1.5:3632"), false)],
                Ok((Scope::Addresses(vec!["192.168.1.5".parse().unwrap()]), 3632)),
            ),
        ];
        for (listening, want) in cases {
            assert_eq!(scope(&listening), want, "{listening:?}");
        }
        let msg = Unreachable(vec![sa("127.0.0.1:3632")]).to_string();
        assert!(msg.contains("127.0.0.1:3632"), "{msg}");
    }

    fn found(addrs: &[(&str, Option<&str>)], txt: &[(&str, &str)]) -> Found {
        Found {
            instance: "distcc@zc-a".into(),
            port: 3632,
            addrs: addrs
                .iter()
                .map(|(ip, scope)| FoundAddr {
                    ip: ip.parse().unwrap(),
                    scope: scope.map(str::to_owned),
                })
                .collect(),
            txt: txt
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
        }
    }

    #[test]
    fn found_services_become_host_specs() {
        let v4 = [("10.99.0.1", None)];
        let cases: Vec<(Found, Result<&str, Unusable>)> = vec![
            // distcc 3.4's record: jobs, no options.
            (
                found(&v4, &[("txtvers", "1"), ("cpus", "2"), ("jobs", "3")]),
                Ok("10.99.0.1:3632/3"),
            ),
            // jobs 0 or missing: cpus + 2; neither: 4.
            (
                found(&v4, &[("cpus", "6"), ("jobs", "0")]),
                Ok("10.99.0.1:3632/8"),
            ),
            (found(&v4, &[("cpus", "1")]), Ok("10.99.0.1:3632/3")),
            (found(&v4, &[("jobs", "lots")]), Ok("10.99.0.1:3632/4")),
            (found(&v4, &[]), Ok("10.99.0.1:3632/4")),
            // A hostile limit is capped.
            (found(&v4, &[("jobs", "99999999999")]), Ok("10.99.0.1:3632/256")),
            // Our keys: lzo from protocol 2, pump from 3 (only with 2).
            (
                found(&v4, &[("jobs", "3"), ("protocols", "1,2,3")]),
                Ok("10.99.0.1:3632/3,lzo,cpp"),
            ),
            (
                found(&v4, &[("jobs", "3"), ("protocols", "1,2")]),
                Ok("10.99.0.1:3632/3,lzo"),
            ),
            (
                found(&v4, &[("jobs", "3"), ("protocols", "1,3")]),
                Ok("10.99.0.1:3632/3"),
            ),
            // IPv4 first, then global IPv6, then link-local with its interface.
            (
                found(
                    &[
                        ("fe80::1", Some("eth0")),
                        ("2001:db8::5", None),
                        ("10.99.0.1", None),
                    ],
                    &[],
                ),
                Ok("10.99.0.1:3632/4"),
            ),
            (
                found(&[("fe80::1", Some("eth0")), ("2001:db8::5", None)], &[]),
                Ok("[2001:db8::5]:3632/4"),
            ),
            (
                found(&[("fe80::1", Some("eth0"))], &[]),
                Ok("[fe80::1%eth0]:3632/4"),
            ),
            (
                found(&[("fe80::1", None)], &[]),
                Err(Unusable::LinkLocalWithoutScope),
            ),
            (
                found(&[("127.0.0.1", None), ("::1", None)], &[]),
                Err(Unusable::Loopback),
            ),
            (found(&[], &[]), Err(Unusable::NoAddress)),
        ];
        for (f, want) in cases {
            let got = entry(&f, None).map(|e| e.spec);
            assert_eq!(got.as_deref().map_err(Clone::clone), want, "{f:?}");
        }
        let mut zero = found(&v4, &[]);
        zero.port = 0;
        assert_eq!(entry(&zero, None), Err(Unusable::PortZero));
    }

    #[test]
    fn only_servers_of_this_compiler_are_used() {
        let cc = CompilerId::from_outputs("x86_64-linux-gnu", "12").unwrap();
        let v4 = [("10.99.0.1", None)];
        type Case<'a> = (Vec<(&'a str, &'a str)>, Result<&'a str, Unusable>);
        let cases: Vec<Case> = vec![
            (
                vec![("cc_version", "12"), ("cc_machine", "x86_64-linux-gnu")],
                Ok("10.99.0.1:3632/4"),
            ),
            // Compared as the subtype compares them: stripped.
            (
                vec![("cc_version", "12"), ("cc_machine", "X86-64-Linux-GNU")],
                Ok("10.99.0.1:3632/4"),
            ),
            (
                vec![("cc_version", "13"), ("cc_machine", "x86_64-linux-gnu")],
                Err(Unusable::OtherCompiler("_x86-64-linux-gnu--13".into())),
            ),
            (vec![("cc_version", "12")], Err(Unusable::NoCompiler)),
            (vec![], Err(Unusable::NoCompiler)),
        ];
        for (txt, want) in cases {
            let f = found(&v4, &txt);
            assert_eq!(
                entry(&f, Some(&cc))
                    .map(|e| e.spec)
                    .as_deref()
                    .map_err(Clone::clone),
                want,
                "{txt:?}"
            );
        }
        let msg = Unusable::OtherCompiler("_x86-64-linux-gnu--13".into()).to_string();
        assert!(msg.contains("_x86-64-linux-gnu--13"), "{msg}");
    }

    #[test]
    fn the_hosts_file_is_3_4s_grammar_with_notes() {
        let e = |spec: &str, instance: &str| Entry {
            spec: spec.into(),
            instance: instance.into(),
        };
        let text = render_hosts(
            "browsed _x86-64-linux-gnu--12._sub._distcc._tcp",
            "mDNS",
            &[
                e("10.99.0.1:3632/3", "distcc@zc-a"),
                e("10.99.0.3:3632/5,lzo,cpp", "distcc@evil\n10.6.6.6"),
                e("10.99.0.1:3632/3", "distcc@zc-a #2"),
            ],
        );
        assert!(written_by_us(&text), "{text}");
        assert!(
            written_by_us(&render_hosts("b", "mDNS", &[])),
            "an empty list is still ours"
        );
        assert!(!written_by_us("10.99.0.1:3632/3\n") && !written_by_us(""));
        assert_eq!(text.lines().count(), 3, "a header and two hosts: {text}");
        let lines = parse_hosts(&text);
        assert_eq!(
            lines,
            [
                ("10.99.0.1:3632/3".to_owned(), Some("distcc@zc-a".to_owned())),
                (
                    "10.99.0.3:3632/5,lzo,cpp".to_owned(),
                    Some("distcc@evil 10.6.6.6".to_owned())
                ),
            ]
        );
        // A flood is cut at MAX_SERVICES, written and read.
        let many: Vec<Entry> = (0..300)
            .map(|i| e(&format!("10.0.{}.{}:3632/4", i / 250, i % 250 + 1), "x"))
            .collect();
        let text = render_hosts("b", "mDNS", &many);
        assert_eq!(text.lines().count(), 1 + MAX_SERVICES);
        let flood: String = (0..300).map(|i| format!("10.1.0.{}:3632/4\n", i % 250)).collect();
        assert_eq!(parse_hosts(&flood).len(), MAX_SERVICES);
        // distcc 3.4's own file.
        assert_eq!(
            parse_hosts("10.99.0.1:3632/3\n[fd00::1]:3632/4\n\n"),
            [
                ("10.99.0.1:3632/3".to_owned(), None),
                ("[fd00::1]:3632/4".to_owned(), None)
            ]
        );
    }
}
