//! The built-in mDNS responder (for `distccd --zeroconf` where no
//! avahi-daemon runs), on `mdns-sd`, which runs
//! its own thread and shares port 5353 with avahi-daemon (both set
//! `SO_REUSEPORT`; shared/reference/zeroconf.md §4).

use std::time::Duration;

use anyhow::anyhow;
use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo, UnregisterStatus};

use super::{Advert, SERVICE_TYPE, Scope};

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
