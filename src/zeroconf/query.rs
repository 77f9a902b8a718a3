//! The client's browse where no avahi-daemon runs: one-shot mDNS queries
//! ([`super::dns`]) from an ephemeral port, on every IPv4 interface that
//! can multicast, answered by unicast straight away (RFC 6762 §6.7). A
//! full mDNS querier on 5353 would wait for the responders' next multicast
//! of a record they sent less than a second ago, and a short-lived client
//! cannot wait for that.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::net::if_::InterfaceFlags;
use socket2::{Domain, Protocol, Socket, Type};

use super::dns;
use super::{Found, Wait};

const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);
/// Asked again after this long without an answer (a datagram can be lost).
const RESEND: Duration = Duration::from_millis(250);
/// mDNS messages may be up to 9000 bytes (RFC 6762 §17).
const MAX_MESSAGE: usize = 9000;

/// An interface to ask on: its name, address and netmask.
struct Link {
    name: String,
    addr: Ipv4Addr,
    mask: Ipv4Addr,
}

fn links() -> anyhow::Result<Vec<Link>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().context("listing the network interfaces")? {
        let wanted = InterfaceFlags::IFF_UP | InterfaceFlags::IFF_MULTICAST;
        if !ifa.flags.contains(wanted) || ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        let v4 = |s: &Option<nix::sys::socket::SockaddrStorage>| {
            s.as_ref().and_then(|s| s.as_sockaddr_in()).map(|a| a.ip())
        };
        if let (Some(addr), Some(mask)) = (v4(&ifa.address), v4(&ifa.netmask)) {
            out.push(Link {
                name: ifa.interface_name.clone(),
                addr,
                mask,
            });
        }
    }
    Ok(out)
}

/// The services of type `ty` (`_distcc._tcp`) that answer within `wait`.
pub fn browse(ty: &str, wait: Wait) -> anyhow::Result<Vec<Found>> {
    let links = links()?;
    if links.is_empty() {
        bail!("no interface but loopback is up to ask on");
    }
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
    // RFC 6762 §11: mDNS is sent with TTL 255 and stays on the link.
    sock.set_multicast_ttl_v4(255)?;
    let sock: UdpSocket = sock.into();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A one-shot query's answer echoes its id: answers to others are not ours.
    let id = ((std::process::id() ^ nanos) as u16) | 1;
    let full = format!("{ty}.local");
    let query = dns::ptr_query(id, &full);
    let ask = |sock: &UdpSocket| {
        for l in &links {
            let s = socket2::SockRef::from(sock);
            if s.set_multicast_if_v4(&l.addr).is_ok() {
                let _ = sock.send_to(&query, GROUP);
            }
        }
    };
    ask(&sock);
    let start = Instant::now();
    let mut resent = false;
    // Records by the interface they came on.
    let mut records: BTreeMap<String, Vec<dns::Record>> = BTreeMap::new();
    let mut found: Vec<Found> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut last: Option<Instant> = None;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let deadline = match (missing.is_empty(), last) {
            (false, _) => start + wait.most,
            (true, Some(t)) => (t + wait.settle).min(start + wait.most),
            (true, None) if !resent => start + RESEND,
            (true, None) => start + wait.first,
        };
        let now = Instant::now();
        if now >= deadline {
            if last.is_none() && !resent {
                resent = true;
                ask(&sock);
                continue;
            }
            break;
        }
        sock.set_read_timeout(Some(deadline - now))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e).context("reading mDNS answers"),
        };
        let Ok((answer_id, recs)) = dns::parse(&buf[..n]) else {
            continue;
        };
        if answer_id != id {
            continue;
        }
        let link = match from {
            SocketAddr::V4(a) => links
                .iter()
                .find(|l| u32::from(*a.ip()) & u32::from(l.mask) == u32::from(l.addr) & u32::from(l.mask)),
            SocketAddr::V6(_) => None,
        };
        let Some(link) = link else {
            continue;
        };
        records.entry(link.name.clone()).or_default().extend(recs);
        (found, missing) = (Vec::new(), Vec::new());
        for (scope, recs) in &records {
            let (f, m) = dns::services(recs, &full, Some(scope));
            for s in f {
                if !found.iter().any(|x| x.instance == s.instance && x.port == s.port) {
                    found.push(s);
                }
            }
            missing.extend(m);
        }
        missing.retain(|m| !found.iter().any(|f| &f.instance == m));
        last = Some(Instant::now());
    }
    Ok(found)
}
