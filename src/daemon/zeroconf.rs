//! `--zeroconf`: the server on the local network, as distcc 3.4 publishes
//! it (records in [`crate::zeroconf`]). Through avahi-daemon when it is on
//! the system bus (one mDNS stack per machine, as RFC 6762 wants), else a
//! built-in responder; the log says which. Withdrawn when distccd stops, so
//! that peers drop it at once rather than when its TTL runs out.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Server;
use crate::zeroconf::avahi::{self, Place, Unavailable};
use crate::zeroconf::mdns::Responder;
use crate::zeroconf::{self, Advert, CompilerId, Scope, ServerFacts};

/// How long the compiler may take to say what it is.
const PROBE: Duration = Duration::from_secs(10);
/// After avahi-daemon went away: the wait before publishing again.
const RETRY: Duration = Duration::from_secs(2);

/// The publishing task; [`Publisher::stop`] withdraws the record.
pub struct Publisher {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Withdraws the record, waiting a bounded time for the goodbye.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            tracing::warn!("zeroconf: the record was not withdrawn in 10s");
        }
    }
}

/// What `cc` is on this server: the compiler a client's `cc` job would run
/// (through the allow-list and DISTCCD_PATH), asked as distcc 3.4 asks it.
pub async fn compiler_id(server: &Server) -> Result<CompilerId, String> {
    let config = &server.config;
    // distcc 3.4 runs `cc` from PATH whatever the allow-list says; so do
    // we when the allow-list has no `cc`, since the subtype names the
    // machine's compiler, and say so.
    let cc = match config.compilers.resolve("cc", &config.path) {
        Ok(cc) => cc,
        Err(refusal) => {
            let cc =
                super::compilers::find_on_path("cc", &config.path, None).ok_or_else(|| refusal.0.clone())?;
            tracing::info!(
                "zeroconf: the subtype is {}'s, which is not allowed as cc ({})",
                cc.display(),
                refusal.0
            );
            cc
        }
    };
    let ask = |arg: &'static str| {
        let cc = cc.clone();
        let path = config.path.clone();
        async move {
            let run = tokio::process::Command::new(&cc)
                .arg(arg)
                .env("PATH", path)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            match tokio::time::timeout(PROBE, run).await {
                Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
                Ok(Ok(out)) => Err(format!("{} {arg}: {}", cc.display(), out.status)),
                Ok(Err(e)) => Err(format!("{} {arg}: {e}", cc.display())),
                Err(_) => Err(format!(
                    "{} {arg}: no answer in {}s",
                    cc.display(),
                    PROBE.as_secs()
                )),
            }
        }
    };
    let machine = ask("-dumpmachine").await?;
    let version = ask("-dumpversion").await?;
    CompilerId::from_outputs(&machine, &version).ok_or_else(|| {
        format!(
            "{} printed nothing for -dumpmachine or -dumpversion",
            cc.display()
        )
    })
}

/// Where avahi-daemon adds the service: every interface, or those that
/// hold the addresses listened on.
fn places(scope: &Scope) -> Vec<Place> {
    match scope {
        Scope::Everywhere { v4, v6 } => {
            let proto = match (v4, v6) {
                (true, false) => avahi::PROTO_INET,
                (false, true) => avahi::PROTO_INET6,
                _ => avahi::PROTO_UNSPEC,
            };
            vec![(avahi::IF_UNSPEC, proto)]
        }
        Scope::Addresses(addrs) => {
            let mut out: Vec<Place> = Vec::new();
            let Ok(ifaces) = nix::ifaddrs::getifaddrs() else {
                return out;
            };
            for ifa in ifaces {
                let Some(ip) = ifa.address.as_ref().and_then(sockaddr_ip) else {
                    continue;
                };
                if !addrs.contains(&ip) {
                    continue;
                }
                let Ok(index) = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()) else {
                    continue;
                };
                let proto = if ip.is_ipv4() {
                    avahi::PROTO_INET
                } else {
                    avahi::PROTO_INET6
                };
                let place = (index as i32, proto);
                if !out.contains(&place) {
                    out.push(place);
                }
            }
            out
        }
    }
}

fn sockaddr_ip(s: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

fn where_(advert: &Advert) -> String {
    match &advert.scope {
        Scope::Everywhere { v4: true, v6: true } => "on every interface".into(),
        Scope::Everywhere { v4: true, .. } => "on every interface, IPv4".into(),
        Scope::Everywhere { .. } => "on every interface, IPv6".into(),
        Scope::Addresses(a) => {
            let a: Vec<String> = a.iter().map(ToString::to_string).collect();
            format!("on {}", a.join(", "))
        }
    }
}

/// Starts publishing the server listening at `listening` (address, and
/// whether an IPv6 socket is v6-only), in a task of its own so that serving
/// does not wait for the compiler or avahi-daemon.
pub fn spawn(server: Arc<Server>, listening: Vec<(SocketAddr, bool)>) -> Publisher {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let advert = tokio::select! {
            a = advert(&server, &listening) => a,
            _ = &mut stopped => return,
        };
        if let Some((advert, hostname)) = advert {
            run(advert, hostname, stopped).await;
        }
    });
    Publisher { stop, task }
}

/// The record to publish, and the host name; `None`, logged, when there is
/// no address to publish.
async fn advert(server: &Server, listening: &[(SocketAddr, bool)]) -> Option<(Advert, String)> {
    let (scope, port) = match zeroconf::scope(listening) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("zeroconf: not published: {e}");
            return None;
        }
    };
    let cc = match compiler_id(server).await {
        Ok(cc) => Some(cc),
        Err(why) => {
            tracing::warn!(
                "zeroconf: published without the compiler's subtype, which distcc 3.4 clients browse for, \
                 so only clients that browse {} find this server: {why}",
                zeroconf::SERVICE_TYPE
            );
            None
        }
    };
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into());
    let facts = ServerFacts {
        hostname: hostname.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        jobs: server.jobs as u32,
        cc,
        protocols: crate::protocol::Version::all().map(|v| v.number()).collect(),
    };
    Some((zeroconf::advert(&facts, scope, port), hostname))
}

enum Live {
    Avahi(avahi::Published),
    Builtin(Responder),
}

async fn publish(advert: &Advert, hostname: &str) -> Option<Live> {
    let what = format!(
        "{} ({}) port {} {}",
        advert.instance,
        advert
            .subtype_name()
            .unwrap_or_else(|| zeroconf::SERVICE_TYPE.into()),
        advert.port,
        where_(advert)
    );
    let why_builtin = match avahi::publish(advert, &places(&advert.scope)).await {
        Ok(p) => {
            let named = if p.name != advert.instance {
                format!(" as {}", p.name)
            } else {
                String::new()
            };
            tracing::info!(
                "zeroconf: published {what}{named} via avahi-daemon {}; TXT {}",
                p.version,
                advert.txt_words()
            );
            return Some(Live::Avahi(p));
        }
        Err(Unavailable::Absent(why)) => why,
        Err(e @ Unavailable::Failed(_)) => {
            tracing::warn!("zeroconf: {e}");
            e.to_string()
        }
    };
    // The responder lists the interfaces itself and says nothing when it
    // cannot (e.g. a RestrictAddressFamilies= without AF_NETLINK): it would
    // "publish" to no one.
    let links = match nix::ifaddrs::getifaddrs() {
        Ok(ifaces) => ifaces
            .filter(|i| {
                !i.flags.contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
                    && i.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
                    && i.address.as_ref().and_then(sockaddr_ip).is_some()
            })
            .count(),
        Err(e) => {
            tracing::error!(
                "zeroconf: not published: the built-in mDNS responder cannot list the network interfaces \
                 (getifaddrs: {e}; under systemd, RestrictAddressFamilies= must allow AF_NETLINK) ({why_builtin})"
            );
            return None;
        }
    };
    let (advert, hostname) = (advert.clone(), hostname.to_owned());
    let made = tokio::task::spawn_blocking(move || Responder::publish(&advert, &hostname)).await;
    match made {
        Ok(Ok(r)) => {
            let unseen = if links == 0 {
                "; no interface but loopback is up, so no other machine sees it until one is"
            } else {
                ""
            };
            tracing::info!(
                "zeroconf: published {what} via the built-in mDNS responder ({why_builtin}){unseen}"
            );
            Some(Live::Builtin(r))
        }
        Ok(Err(e)) => {
            tracing::error!(
                "zeroconf: not published: the built-in mDNS responder failed: {e:#} ({why_builtin})"
            );
            None
        }
        Err(e) => {
            tracing::error!("zeroconf: not published: {e}");
            None
        }
    }
}

async fn run(advert: Advert, hostname: String, mut stopped: oneshot::Receiver<()>) {
    loop {
        let live = tokio::select! {
            l = publish(&advert, &hostname) => l,
            _ = &mut stopped => return,
        };
        match live {
            Some(Live::Avahi(p)) => {
                tokio::select! {
                    () = p.lost() => {
                        tracing::warn!("zeroconf: avahi-daemon left the system bus, taking the record with it; publishing again");
                        tokio::select! {
                            () = tokio::time::sleep(RETRY) => continue,
                            _ = &mut stopped => return,
                        }
                    }
                    _ = &mut stopped => {
                        match p.withdraw().await {
                            Ok(()) => tracing::info!("zeroconf: withdrawn from avahi-daemon"),
                            Err(e) => tracing::warn!("zeroconf: withdrawing: {e:#}"),
                        }
                        return;
                    }
                }
            }
            Some(Live::Builtin(r)) => {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Some(name) = r.renamed() {
                                tracing::info!("zeroconf: the name was taken on the network; the responder now uses {name}");
                            }
                        }
                        _ = &mut stopped => break,
                    }
                }
                let gone = tokio::task::spawn_blocking(move || r.withdraw(Duration::from_secs(5))).await;
                match gone {
                    Ok(Ok(())) => {
                        tracing::info!("zeroconf: withdrawn (goodbye sent by the built-in responder)")
                    }
                    Ok(Err(e)) => tracing::warn!("zeroconf: withdrawing: {e:#}"),
                    Err(e) => tracing::warn!("zeroconf: withdrawing: {e}"),
                }
                return;
            }
            None => {
                // Nothing to withdraw; stay quiet until told to stop.
                let _ = stopped.await;
                return;
            }
        }
    }
}
