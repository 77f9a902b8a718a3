//! The built-in mDNS responder (for `distccd --zeroconf` where no
//! avahi-daemon runs) and the client's browser, on `mdns-sd`, which runs
//! its own thread and shares port 5353 with avahi-daemon (both set
//! `SO_REUSEPORT`; shared/reference/zeroconf.md §4).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use mdns_sd::{IfKind, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo, UnregisterStatus};

use super::{Advert, Found, FoundAddr, SERVICE_TYPE, Scope};

/// A published service; [`Responder::withdraw`] says goodbye to peers.
pub struct Responder {
    daemon: ServiceDaemon,
    fullname: String,
    events: mdns_sd::Receiver<mdns_sd::DaemonEvent>,
}

impl Responder {
    /// Publishes `advert` as `hostname.local.`, on the interfaces its scope names.
    pub fn publish(advert: &Advert, hostname: &str) -> anyhow::Result<Responder> {
        let daemon = ServiceDaemon::new().map_err(|e| anyhow!("{e}"))?;
        let events = daemon.monitor().map_err(|e| anyhow!("{e}"))?;
        let ty = match advert.subtype_name() {
            Some(sub) => format!("{sub}.local."),
            None => format!("{SERVICE_TYPE}.local."),
        };
        let host = format!("{hostname}.local.");
        let txt: Vec<(&str, &str)> = advert.txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ips: Vec<std::net::IpAddr> = match &advert.scope {
            Scope::Addresses(a) => a.clone(),
            Scope::Everywhere { .. } => Vec::new(),
        };
        let mut info = ServiceInfo::new(&ty, &advert.instance, &host, &ips[..], advert.port, &txt[..])
            .map_err(|e| anyhow!("{e}"))?;
        // Loopback is no use to another machine.
        let _ = daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6]);
        match &advert.scope {
            Scope::Everywhere { v4, v6 } => {
                info = info.enable_addr_auto();
                if !v4 {
                    let _ = daemon.disable_interface(IfKind::IPv4);
                }
                if !v6 {
                    let _ = daemon.disable_interface(IfKind::IPv6);
                }
            }
            Scope::Addresses(addrs) => {
                let _ = daemon.disable_interface(IfKind::All);
                let kinds: Vec<IfKind> = addrs.iter().map(|a| IfKind::Addr(*a)).collect();
                let _ = daemon.enable_interface(kinds);
            }
        }
        let fullname = info.get_fullname().to_owned();
        daemon.register(info).map_err(|e| anyhow!("{e}"))?;
        Ok(Responder {
            daemon,
            fullname,
            events,
        })
    }

    /// A name the responder took instead of ours after a conflict, if any
    /// was reported since the last call.
    pub fn renamed(&self) -> Option<String> {
        let mut last = None;
        while let Ok(ev) = self.events.try_recv() {
            if let mdns_sd::DaemonEvent::NameChange(c) = ev {
                last = Some(c.new_name);
            }
        }
        last
    }

    /// Sends the goodbye (TTL 0) records and stops the responder, waiting
    /// up to `wait`: a peer keeps a record it heard no goodbye for in its
    /// cache until the TTL runs out.
    pub fn withdraw(self, wait: Duration) -> anyhow::Result<()> {
        let status = self
            .daemon
            .unregister(&self.fullname)
            .map_err(|e| anyhow!("{e}"))?;
        let result = match status.recv_timeout(wait) {
            Ok(UnregisterStatus::OK) => Ok(()),
            Ok(UnregisterStatus::NotFound) => Err(anyhow!("{} was not registered", self.fullname)),
            Err(_) => Err(anyhow!("no answer from the responder in {}s", wait.as_secs())),
        };
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(wait);
        }
        result
    }
}

/// How long a browse waits: for the first answer, after the latest one,
/// and in all.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    pub first: Duration,
    pub settle: Duration,
    pub most: Duration,
}

/// The services of type `ty` (a subtype or `_distcc._tcp`) that answer
/// within `wait`.
pub fn browse(ty: &str, wait: Wait) -> anyhow::Result<Vec<Found>> {
    let daemon = ServiceDaemon::new()
        .map_err(|e| anyhow!("{e}"))
        .context("starting the mDNS browser")?;
    let _ = daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6]);
    let full_ty = format!("{ty}.local.");
    let events = daemon.browse(&full_ty).map_err(|e| anyhow!("{e}"))?;
    let start = Instant::now();
    // Services seen (PTR) but not resolved yet are waited for, up to `most`.
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut last: Option<Instant> = None;
    loop {
        let deadline = match (pending.is_empty(), last) {
            (false, _) => start + wait.most,
            (true, Some(t)) => (t + wait.settle).min(start + wait.most),
            (true, None) => start + wait.first,
        };
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match events.recv_timeout(deadline - now) {
            Ok(ServiceEvent::ServiceFound(_, fullname)) => {
                if !found.contains_key(&fullname) {
                    pending.insert(fullname);
                }
                last = Some(Instant::now());
            }
            Ok(ServiceEvent::ServiceResolved(r)) => {
                let suffix = format!(".{SERVICE_TYPE}.local.");
                let instance = r.fullname.strip_suffix(&suffix).unwrap_or(&r.fullname).to_owned();
                let addrs = r.addresses.iter().map(found_addr).collect();
                let txt = r
                    .txt_properties
                    .iter()
                    .map(|p| {
                        (
                            p.key().to_owned(),
                            p.val().map(|v| String::from_utf8_lossy(v).into_owned()),
                        )
                    })
                    .collect();
                pending.remove(&r.fullname);
                found.insert(
                    r.fullname.clone(),
                    Found {
                        instance,
                        port: r.port,
                        addrs,
                        txt,
                    },
                );
                last = Some(Instant::now());
            }
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                pending.remove(&fullname);
                found.remove(&fullname);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(&full_ty);
    let _ = daemon.shutdown();
    Ok(found.into_values().collect())
}

fn found_addr(ip: &ScopedIp) -> FoundAddr {
    match ip {
        ScopedIp::V6(v6) => FoundAddr {
            ip: (*v6.addr()).into(),
            scope: Some(v6.scope_id().name.clone()).filter(|n| !n.is_empty()),
        },
        other => FoundAddr {
            ip: other.to_ip_addr(),
            scope: None,
        },
    }
}
