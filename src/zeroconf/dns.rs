//! The DNS messages of a one-shot mDNS query (RFC 6762 §5.1, §6.7), pure:
//! a PTR question out, and the records of the answers back, parsed as the
//! hostile bytes they may be (bounds checked, compression loops cut, every
//! count capped), then put together into the services they describe.
//!
//! A one-shot query goes from a port other than 5353, so responders answer
//! it by unicast, at once, even for records they multicast less than a
//! second ago, which they would not multicast again (§6): a short-lived
//! client that asked like a full querier could miss those.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Found, FoundAddr};

pub const PTR: u16 = 12;
pub const TXT: u16 = 16;
pub const SRV: u16 = 33;
pub const A: u16 = 1;
pub const AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// A parsed record's data, for the types a service needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Ptr(String),
    Srv { port: u16, target: String },
    Txt(Vec<Vec<u8>>),
    Addr(IpAddr),
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Lower-cased, dotted, without the final dot.
    pub name: String,
    pub data: Data,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsError {
    Short,
    BadName,
    NotAResponse,
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DnsError::Short => "the message ends inside a field",
            DnsError::BadName => "a name is malformed (too long, or a compression loop)",
            DnsError::NotAResponse => "it is not a response",
        })
    }
}

/// A query for the PTR records of `name` (e.g. `_distcc._tcp.local`), with
/// `id` (a one-shot query's answer echoes it).
pub fn ptr_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let l = &label.as_bytes()[..label.len().min(63)];
        q.push(l.len() as u8);
        q.extend_from_slice(l);
    }
    q.push(0);
    q.extend_from_slice(&PTR.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// A response's id and its records (answers, authority and additional).
pub fn parse(msg: &[u8]) -> Result<(u16, Vec<Record>), DnsError> {
    let u16_at = |i: usize| -> Result<u16, DnsError> {
        msg.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(DnsError::Short)
    };
    let id = u16_at(0)?;
    if u16_at(2)? & 0x8000 == 0 {
        return Err(DnsError::NotAResponse);
    }
    let (qd, an, ns, ar) = (u16_at(4)?, u16_at(6)?, u16_at(8)?, u16_at(10)?);
    let mut at = 12;
    for _ in 0..qd {
        let (_, next) = name(msg, at)?;
        at = next + 4;
    }
    let mut out = Vec::new();
    // Each record takes at least 11 bytes: counts beyond the message are lies.
    let total = (usize::from(an) + usize::from(ns) + usize::from(ar)).min(msg.len() / 11);
    for _ in 0..total {
        let (rname, next) = name(msg, at)?;
        let rtype = u16_at(next)?;
        let len = usize::from(u16_at(next + 8)?);
        let start = next + 10;
        let body = msg.get(start..start + len).ok_or(DnsError::Short)?;
        let data = match rtype {
            PTR => Data::Ptr(name(msg, start)?.0),
            SRV if len >= 6 => Data::Srv {
                port: u16::from_be_bytes([body[4], body[5]]),
                target: name(msg, start + 6)?.0,
            },
            TXT => {
                let mut strings = Vec::new();
                let mut i = 0;
                while i < body.len() {
                    let n = usize::from(body[i]);
                    let s = body.get(i + 1..i + 1 + n).ok_or(DnsError::Short)?;
                    if !s.is_empty() {
                        strings.push(s.to_vec());
                    }
                    i += 1 + n;
                }
                Data::Txt(strings)
            }
            A if len == 4 => Data::Addr(IpAddr::V4(Ipv4Addr::new(body[0], body[1], body[2], body[3]))),
            AAAA if len == 16 => {
                let b: [u8; 16] = body.try_into().expect("16 bytes");
                Data::Addr(IpAddr::V6(Ipv6Addr::from(b)))
            }
            _ => Data::Other,
        };
        out.push(Record { name: rname, data });
        at = start + len;
    }
    Ok((id, out))
}

/// The name at `at`, lower-cased and dotted, and where the field ends.
fn name(msg: &[u8], mut at: usize) -> Result<(String, usize), DnsError> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    let mut length = 0;
    for _ in 0..128 {
        let n = *msg.get(at).ok_or(DnsError::Short)?;
        match n {
            0 => {
                let name = labels.join(".");
                return Ok((name, end.unwrap_or(at + 1)));
            }
            n if n & 0xc0 == 0xc0 => {
                let lo = *msg.get(at + 1).ok_or(DnsError::Short)?;
                end.get_or_insert(at + 2);
                at = usize::from(n & 0x3f) << 8 | usize::from(lo);
            }
            n if n < 64 => {
                let l = msg.get(at + 1..at + 1 + usize::from(n)).ok_or(DnsError::Short)?;
                length += l.len() + 1;
                if length > 255 {
                    return Err(DnsError::BadName);
                }
                labels.push(String::from_utf8_lossy(l).to_lowercase());
                at += 1 + usize::from(n);
            }
            _ => return Err(DnsError::BadName),
        }
    }
    Err(DnsError::BadName)
}

/// The services of type `ty` (`_distcc._tcp.local`) that `records`
/// describe completely (PTR, SRV, TXT and an address); `scope` is the
/// interface the records came on, for IPv6 link-local addresses. Also the
/// instances that were named but not described, to say why they are missing.
pub fn services(records: &[Record], ty: &str, scope: Option<&str>) -> (Vec<Found>, Vec<String>) {
    let ty = ty.trim_end_matches('.').to_lowercase();
    let suffix = format!(".{ty}");
    let mut instances: Vec<&str> = Vec::new();
    for r in records {
        if let (true, Data::Ptr(target)) = (r.name == ty, &r.data)
            && target.ends_with(&suffix)
            && !instances.contains(&target.as_str())
        {
            instances.push(target);
        }
    }
    let mut addrs: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
    for r in records {
        if let Data::Addr(ip) = r.data {
            let v = addrs.entry(r.name.as_str()).or_default();
            if !v.contains(&ip) {
                v.push(ip);
            }
        }
    }
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for inst in instances {
        let srv = records.iter().find_map(|r| match &r.data {
            Data::Srv { port, target } if r.name == inst => Some((*port, target.as_str())),
            _ => None,
        });
        let txt = records.iter().find_map(|r| match &r.data {
            Data::Txt(t) if r.name == inst => Some(t),
            _ => None,
        });
        let instance = inst.strip_suffix(&suffix).unwrap_or(inst).to_owned();
        let (Some((port, target)), Some(txt)) = (srv, txt) else {
            missing.push(instance);
            continue;
        };
        let Some(ips) = addrs.get(target) else {
            missing.push(instance);
            continue;
        };
        found.push(Found {
            instance,
            port,
            addrs: ips
                .iter()
                .map(|ip| FoundAddr {
                    ip: *ip,
                    scope: scope.map(str::to_owned),
                })
                .collect(),
            txt: super::txt_pairs(txt),
        });
    }
    (found, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response as a responder writes it: `records` of (name, type, rdata).
    fn response(id: u16, records: &[(&str, u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0x84, 0, 0, 0]);
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        for (name, ty, data) in records {
            m.extend(encode(name));
            m.extend_from_slice(&ty.to_be_bytes());
            m.extend_from_slice(&[0x80, 1, 0, 0, 0x11, 0x94]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    fn encode(name: &str) -> Vec<u8> {
        let mut q = ptr_query(0, name);
        q.drain(..12);
        q.truncate(q.len() - 4);
        q
    }

    fn srv(port: u16, target: &str) -> Vec<u8> {
        let mut d = vec![0, 0, 0, 0];
        d.extend_from_slice(&port.to_be_bytes());
        d.extend(encode(target));
        d
    }

    fn txt(kvs: &[&str]) -> Vec<u8> {
        kvs.iter()
            .flat_map(|s| std::iter::once(s.len() as u8).chain(s.bytes()))
            .collect()
    }

    #[test]
    fn a_response_becomes_its_services() {
        let ty = "_distcc._tcp.local";
        let msg = response(
            7,
            &[
                (ty, PTR, encode("distcc@zc-a._distcc._tcp.local")),
                (ty, PTR, encode("distcc@zc-a #2._distcc._tcp.local")),
                ("distcc@zc-a._distcc._tcp.local", SRV, srv(3632, "zc-a.local")),
                (
                    "distcc@zc-a._distcc._tcp.local",
                    TXT,
                    txt(&["txtvers=1", "jobs=3", "flag"]),
                ),
                ("zc-a.local", A, vec![10, 99, 0, 1]),
                (
                    "zc-a.local",
                    AAAA,
                    "fe80::1".parse::<Ipv6Addr>().unwrap().octets().to_vec(),
                ),
                // The second service has no SRV: named, not described.
                ("distcc@zc-a #2._distcc._tcp.local", TXT, txt(&["jobs=1"])),
            ],
        );
        let (id, records) = parse(&msg).unwrap();
        assert_eq!(id, 7);
        let (found, missing) = services(&records, "_distcc._tcp.local.", Some("eth0"));
        assert_eq!(missing, ["distcc@zc-a #2"]);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!((f.instance.as_str(), f.port), ("distcc@zc-a", 3632));
        assert_eq!(
            f.txt,
            [
                ("txtvers".to_owned(), Some("1".to_owned())),
                ("jobs".to_owned(), Some("3".to_owned())),
                ("flag".to_owned(), None)
            ]
        );
        let ips: Vec<String> = f.addrs.iter().map(|a| a.ip.to_string()).collect();
        assert_eq!(ips, ["10.99.0.1", "fe80::1"]);
        assert_eq!(super::super::entry(f, None).unwrap().spec, "10.99.0.1:3632/3");
    }

    #[test]
    fn compressed_names_are_followed_and_loops_cut() {
        let header = [0, 1, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        let rest = [0, 12, 0, 1, 0, 0, 0, 0];
        // The PTR's target is "x" and a pointer to the record's own name at 12.
        let mut m = header.to_vec();
        m.extend(encode("_distcc._tcp.LOCAL"));
        m.extend_from_slice(&rest);
        m.extend_from_slice(&[0, 4, 1, b'x', 0xc0, 12]);
        let (_, r) = parse(&m).unwrap();
        assert_eq!(r[0].name, "_distcc._tcp.local", "lower-cased");
        assert_eq!(r[0].data, Data::Ptr("x._distcc._tcp.local".into()));
        // A name that points at itself.
        let mut looped = header.to_vec();
        looped.extend_from_slice(&[0xc0, 12]);
        looped.extend_from_slice(&rest);
        looped.extend_from_slice(&[0, 2, 0xc0, 12]);
        assert_eq!(parse(&looped), Err(DnsError::BadName));
    }

    #[test]
    fn hostile_messages_are_errors_not_panics() {
        let good = response(1, &[("_distcc._tcp.local", PTR, encode("a._distcc._tcp.local"))]);
        // Every truncation, and every byte set to each of a few values.
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        for i in 0..good.len() {
            for b in [0u8, 0x3f, 0x40, 0xc0, 0xff] {
                let mut m = good.clone();
                m[i] = b;
                if let Ok((_, r)) = parse(&m) {
                    let _ = services(&r, "_distcc._tcp.local", None);
                }
            }
        }
        assert_eq!(
            parse(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DnsError::NotAResponse)
        );
        // A count of 65535 records in a short message.
        let mut lying = good.clone();
        lying[6] = 0xff;
        lying[7] = 0xff;
        assert!(parse(&lying).is_err());
        let q = ptr_query(0x1234, "_distcc._tcp.local");
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(q.len(), 12 + encode("_distcc._tcp.local").len() + 4);
    }
}
