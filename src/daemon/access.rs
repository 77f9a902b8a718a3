//! `--allow` rules (distcc src/access.c), pure.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks `--allow-private` stands for. distcc 3.4 forgets `::1`.
pub const PRIVATE: &[&str] = &[
    "192.168.0.0/16",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "127.0.0.0/8",
    "fe80::/10",
    "fc00::/7",
    "::1/128",
];

/// Parses `ADDR` or `ADDR/BITS`. A bare address is that one host. An IPv6
/// rule for v4-mapped addresses (`::ffff:10.0.0.0/104`) becomes the IPv4 rule
/// it means, so it matches the clients it names.
pub fn parse_rule(s: &str) -> Result<IpNet, String> {
    let net = match s.split_once('/') {
        Some((addr, bits)) => {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("'{s}': '{addr}' is not an IP address"))?;
            let bits: u8 = bits
                .parse()
                .map_err(|_| format!("'{s}': '{bits}' is not a prefix length"))?;
            IpNet::new(addr, bits).map_err(|_| format!("'{s}': prefix length {bits} is too long"))?
        }
        None => IpNet::from(
            s.parse::<IpAddr>()
                .map_err(|_| format!("'{s}' is not an IP address"))?,
        ),
    };
    Ok(canonical(net))
}

fn canonical(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
    {
        return IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).expect("prefix fits");
    }
    net
}

/// Whether `peer` is allowed. First match wins; an empty list allows nobody
/// (distcc 3.4 lets everybody in here).
pub fn allowed(rules: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    rules.iter().any(|r| r.contains(&peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distcc_parse_mask_vectors() {
        // test/testdistcc.py ParseMask_Case.
        let cases = [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.0", false),
            ("127.0.0.1/8", "127.0.0.2", true),
            ("10.113.0.0/16", "10.113.45.67", true),
            ("10.113.0.0/16", "10.11.45.67", false),
            ("1.2.3.4/0", "4.3.2.1", true),
            ("1.2.3.4/8", "4.3.2.1", false),
            ("192.168.1.64/28", "192.168.1.70", true),
            ("192.168.1.64/28", "192.168.1.7", false),
        ];
        for (rule, client, want) in cases {
            let r = parse_rule(rule).unwrap();
            assert_eq!(allowed(&[r], client.parse().unwrap()), want, "{rule} vs {client}");
        }
        for bad in [
            "1.2.3.4/40",
            "1.2.3.4.5.6.7/8",
            "",
            "host.example",
            "1.2.3.4/",
            "::1/129",
            "1.2.3.4/-1",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let rules: Vec<IpNet> = ["::1", "fd00::/8", "10.0.0.0/8"]
            .iter()
            .map(|r| parse_rule(r).unwrap())
            .collect();
        let cases = [
            ("::1", true),
            ("::2", false),
            ("fd12::1", true),
            ("::ffff:10.1.2.3", true),
            ("::ffff:11.1.2.3", false),
            ("10.9.9.9", true),
            ("127.0.0.1", false),
        ];
        for (client, want) in cases {
            assert_eq!(allowed(&rules, client.parse().unwrap()), want, "{client}");
        }
        // A v4-mapped rule matches plain IPv4 clients.
        let mapped = parse_rule("::ffff:192.168.0.0/112").unwrap();
        assert_eq!(mapped.to_string(), "192.168.0.0/16");
        assert!(allowed(&[mapped], "192.168.3.4".parse().unwrap()));
        assert!(
            !allowed(&[], "127.0.0.1".parse().unwrap()),
            "an empty list allows nobody"
        );
    }

    #[test]
    fn private_includes_loopback_v6() {
        let rules: Vec<IpNet> = PRIVATE.iter().map(|r| parse_rule(r).unwrap()).collect();
        for ok in [
            "::1",
            "127.0.0.1",
            "10.0.0.1",
            "172.31.0.1",
            "192.168.9.9",
            "fe80::1",
            "fd00::1",
        ] {
            assert!(allowed(&rules, ok.parse().unwrap()), "{ok}");
        }
        for no in ["8.8.8.8", "172.32.0.1", "2001:db8::1"] {
            assert!(!allowed(&rules, no.parse().unwrap()), "{no}");
        }
    }
}
