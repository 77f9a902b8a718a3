//! Publishing through avahi-daemon over the system D-Bus, as distcc 3.4's
//! libavahi-client does: `EntryGroupNew`, `AddService`, `AddServiceSubtype`,
//! `Commit`, then the group's `StateChanged` until it is established, with
//! `GetAlternativeServiceName` ("distcc@host #2") on a collision.
//!
//! Browsing (the client's `+zeroconf`, when avahi-daemon runs there too)
//! asks avahi-daemon's cache, which has heard every answer on the network,
//! instead of the network itself: a responder stays silent about a record it
//! multicast in the last second (RFC 6762 §6), so a browser of its own can
//! miss what avahi-daemon already knows.
//!
//! Every call has a deadline: an avahi-daemon that hangs must not hang
//! distccd's start or stop.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio_stream::StreamExt;
use zbus::proxy::{Builder, CacheProperties};
use zbus::zvariant::OwnedObjectPath;
use zbus::{Connection, Proxy};

use super::{Advert, Found, FoundAddr, SERVICE_TYPE, Wait};

const AVAHI: &str = "org.freedesktop.Avahi";
/// `AVAHI_SERVER_RUNNING`.
const SERVER_RUNNING: i32 = 2;
/// `AvahiEntryGroupState`.
const GROUP_ESTABLISHED: i32 = 2;
const GROUP_COLLISION: i32 = 3;
const GROUP_FAILURE: i32 = 4;
/// `AVAHI_IF_UNSPEC`, `AVAHI_PROTO_UNSPEC`, `AVAHI_PROTO_INET`, `AVAHI_PROTO_INET6`.
pub const IF_UNSPEC: i32 = -1;
pub const PROTO_UNSPEC: i32 = -1;
pub const PROTO_INET: i32 = 0;
pub const PROTO_INET6: i32 = 1;

/// How long one D-Bus call, or the group's establishing, may take.
const CALL: Duration = Duration::from_secs(5);
/// How many alternative names are tried before giving up.
const RENAMES: usize = 10;

/// Where a service is added: an interface index (or [`IF_UNSPEC`]) and a protocol.
pub type Place = (i32, i32);

/// Why avahi-daemon could not be used.
#[derive(Debug)]
pub enum Unavailable {
    /// No system bus, or avahi-daemon is not on it: use the built-in responder.
    Absent(String),
    /// avahi-daemon is there but refused or failed.
    Failed(anyhow::Error),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Absent(why) => f.write_str(why),
            Unavailable::Failed(e) => write!(f, "avahi-daemon failed: {e:#}"),
        }
    }
}

/// A service registered with avahi-daemon. It stays published while the
/// connection is open; [`Published::withdraw`] removes it at once.
pub struct Published {
    conn: Connection,
    group: OwnedObjectPath,
    /// The name it is published under (after any collision rename).
    pub name: String,
    /// avahi-daemon's version string, for the log.
    pub version: String,
}

async fn within<T>(what: &str, f: impl Future<Output = zbus::Result<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL, f).await {
        Ok(r) => r.with_context(|| what.to_owned()),
        Err(_) => Err(anyhow!(
            "{what}: no answer from avahi-daemon in {}s",
            CALL.as_secs()
        )),
    }
}

async fn proxy<'a>(
    conn: &Connection,
    path: OwnedObjectPath,
    iface: &'static str,
) -> anyhow::Result<Proxy<'a>> {
    let b = Builder::new(conn)
        .destination(AVAHI)?
        .path(path)?
        .interface(iface)?
        .cache_properties(CacheProperties::No);
    Ok(b.build().await?)
}

/// The system bus, when avahi-daemon is on it.
async fn connect(wait: Duration) -> Result<Connection, Unavailable> {
    let conn = match tokio::time::timeout(wait, Connection::system()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(Unavailable::Absent(format!("no system D-Bus ({e})"))),
        Err(_) => return Err(Unavailable::Absent("the system D-Bus did not answer".into())),
    };
    let dbus = zbus::fdo::DBusProxy::new(&conn)
        .await
        .map_err(|e| Unavailable::Absent(format!("the system D-Bus: {e}")))?;
    let name = zbus::names::BusName::try_from(AVAHI).expect("valid bus name");
    let owned = within("NameHasOwner", async {
        dbus.name_has_owner(name).await.map_err(Into::into)
    })
    .await
    .map_err(Unavailable::Failed)?;
    if !owned {
        return Err(Unavailable::Absent(
            "avahi-daemon is not on the system D-Bus".into(),
        ));
    }
    Ok(conn)
}

/// Publishes `advert` at each of `places` (one group, so one name).
pub async fn publish(advert: &Advert, places: &[Place]) -> Result<Published, Unavailable> {
    let conn = connect(CALL).await?;
    register(conn, advert, places).await.map_err(Unavailable::Failed)
}

async fn register(conn: Connection, advert: &Advert, places: &[Place]) -> anyhow::Result<Published> {
    let root = OwnedObjectPath::try_from("/").expect("valid path");
    let server = proxy(&conn, root, "org.freedesktop.Avahi.Server").await?;
    let state: i32 = within("GetState", server.call("GetState", &())).await?;
    if state != SERVER_RUNNING {
        bail!("avahi-daemon is not running yet (state {state}; it may still be choosing its host name)");
    }
    let version: String = within("GetVersionString", server.call("GetVersionString", &()))
        .await
        .unwrap_or_default();
    // As distcc 3.4 sends it: "key=value" strings in the record's order.
    let txt: Vec<Vec<u8>> = advert
        .txt
        .iter()
        .map(|(k, v)| format!("{k}={v}").into_bytes())
        .collect();
    let subtype = advert.subtype_name();
    let mut name = advert.instance.clone();
    for _ in 0..RENAMES {
        let path: OwnedObjectPath = within("EntryGroupNew", server.call("EntryGroupNew", &())).await?;
        let group = proxy(&conn, path.clone(), "org.freedesktop.Avahi.EntryGroup").await?;
        // Subscribed before Commit, so no state change is missed.
        let mut changes = within("StateChanged", group.receive_signal("StateChanged")).await?;
        let added = add(&group, &name, advert.port, &txt, subtype.as_deref(), places).await;
        let collided = match added {
            Ok(()) => {
                within("Commit", group.call::<_, _, ()>("Commit", &())).await?;
                let mut state: i32 = within("GetState", group.call("GetState", &())).await?;
                let deadline = tokio::time::Instant::now() + CALL;
                while state != GROUP_ESTABLISHED && state != GROUP_COLLISION && state != GROUP_FAILURE {
                    let msg = tokio::time::timeout_at(deadline, changes.next())
                        .await
                        .map_err(|_| {
                            anyhow!(
                                "avahi-daemon did not establish the service in {}s",
                                CALL.as_secs()
                            )
                        })?
                        .ok_or_else(|| anyhow!("avahi-daemon went away"))?;
                    (state, _) = msg.body().deserialize::<(i32, String)>()?;
                }
                match state {
                    GROUP_ESTABLISHED => {
                        return Ok(Published {
                            conn,
                            group: path,
                            name,
                            version,
                        });
                    }
                    GROUP_COLLISION => true,
                    _ => bail!("avahi-daemon could not publish {name}"),
                }
            }
            Err(e) if is_collision(&e) => true,
            Err(e) => return Err(e),
        };
        debug_assert!(collided);
        let _ = within("Free", group.call::<_, _, ()>("Free", &())).await;
        let alt: String = within(
            "GetAlternativeServiceName",
            server.call("GetAlternativeServiceName", &(name.as_str(),)),
        )
        .await?;
        tracing::info!("zeroconf: the name {name} is taken on the network; trying {alt}");
        name = alt;
    }
    bail!("every name tried was taken ({RENAMES} renames)")
}

async fn add(
    group: &Proxy<'_>,
    name: &str,
    port: u16,
    txt: &[Vec<u8>],
    subtype: Option<&str>,
    places: &[Place],
) -> anyhow::Result<()> {
    for &(iface, proto) in places {
        let args = (iface, proto, 0u32, name, SERVICE_TYPE, "", "", port, txt.to_vec());
        within("AddService", group.call::<_, _, ()>("AddService", &args)).await?;
        if let Some(sub) = subtype {
            let args = (iface, proto, 0u32, name, SERVICE_TYPE, "", sub);
            within(
                "AddServiceSubtype",
                group.call::<_, _, ()>("AddServiceSubtype", &args),
            )
            .await?;
        }
    }
    Ok(())
}

fn is_collision(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<zbus::Error>())
        .any(|z| matches!(z, zbus::Error::MethodError(n, _, _) if n.as_str() == "org.freedesktop.Avahi.CollisionError"))
}

impl Published {
    /// Frees the entry group, so avahi-daemon sends the goodbye records now.
    pub async fn withdraw(self) -> anyhow::Result<()> {
        let group = proxy(&self.conn, self.group.clone(), "org.freedesktop.Avahi.EntryGroup").await?;
        within("Free", group.call::<_, _, ()>("Free", &())).await
    }

    /// Resolves when avahi-daemon leaves the bus (it was stopped or
    /// restarted, taking the service with it).
    pub async fn lost(&self) {
        let Ok(dbus) = zbus::fdo::DBusProxy::new(&self.conn).await else {
            return std::future::pending().await;
        };
        let Ok(mut owners) = dbus.receive_name_owner_changed().await else {
            return std::future::pending().await;
        };
        while let Some(sig) = owners.next().await {
            if let Ok(args) = sig.args()
                && args.name().as_str() == AVAHI
                && args.new_owner().is_none()
            {
                return;
            }
        }
        std::future::pending().await
    }
}

/// The services of type `ty` that avahi-daemon knows or hears of within
/// `wait`: its cached items first; when the cache has none, what the
/// network answers (to `AllForNow`, or `wait`). Each is resolved, and every
/// address of every interface it was seen on is kept.
pub async fn browse(ty: &str, wait: Wait) -> Result<Vec<Found>, Unavailable> {
    let start = tokio::time::Instant::now();
    // A client must not wait long for a bus that is not answering.
    let conn = connect(Duration::from_secs(1)).await?;
    browse_with(&conn, ty, wait, start)
        .await
        .map_err(Unavailable::Failed)
}

/// An item of a browse: where it was seen, and its name.
type Item = (i32, i32, String);

async fn browse_with(
    conn: &Connection,
    ty: &str,
    wait: Wait,
    start: tokio::time::Instant,
) -> anyhow::Result<Vec<Found>> {
    let root = || OwnedObjectPath::try_from("/").expect("valid path");
    let server2 = proxy(conn, root(), "org.freedesktop.Avahi.Server2").await?;
    // Prepare, subscribe, Start: no item can come before the subscription.
    let path: OwnedObjectPath = within(
        "ServiceBrowserPrepare",
        server2.call(
            "ServiceBrowserPrepare",
            &(IF_UNSPEC, PROTO_UNSPEC, ty, "local", 0u32),
        ),
    )
    .await?;
    let browser = proxy(conn, path, "org.freedesktop.Avahi.ServiceBrowser").await?;
    let mut signals = within("signals", browser.receive_all_signals()).await?;
    within("Start", browser.call::<_, _, ()>("Start", &())).await?;
    let mut items: Vec<Item> = Vec::new();
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        let deadline = match last {
            Some(t) => (t + wait.settle).min(start + wait.most),
            None => start + wait.first,
        };
        let Ok(Some(msg)) = tokio::time::timeout_at(deadline, signals.next()).await else {
            break;
        };
        let header = msg.header();
        let member = header.member().map(|m| m.as_str().to_owned()).unwrap_or_default();
        match member.as_str() {
            "ItemNew" | "ItemRemove" => {
                let (iface, proto, name, _ty, _domain, _flags): (i32, i32, String, String, String, u32) =
                    msg.body().deserialize()?;
                let item = (iface, proto, name);
                if member == "ItemNew" {
                    items.push(item);
                } else {
                    items.retain(|i| *i != item);
                }
                last = Some(tokio::time::Instant::now());
            }
            // The cache had these: the network would only repeat them.
            "CacheExhausted" if !items.is_empty() => break,
            "AllForNow" => break,
            "Failure" => {
                let (why,): (String,) = msg.body().deserialize()?;
                bail!("avahi-daemon's browser failed: {why}");
            }
            _ => {}
        }
    }
    let _ = within("Free", browser.call::<_, _, ()>("Free", &())).await;
    let server = proxy(conn, root(), "org.freedesktop.Avahi.Server").await?;
    let mut found: Vec<Found> = Vec::new();
    let resolve_by = start + wait.most + Duration::from_secs(1);
    for (iface, proto, name) in items {
        let args = (iface, proto, name.as_str(), ty, "local", proto, 0u32);
        let call = server.call::<_, _, Resolved>("ResolveService", &args);
        let Ok(Ok(r)) = tokio::time::timeout_at(resolve_by, call).await else {
            continue;
        };
        let (_, _, name, _, _, _host, _aproto, address, port, txt, _flags) = r;
        let Ok(ip) = address.parse::<std::net::IpAddr>() else {
            continue;
        };
        let scope = u32::try_from(iface)
            .ok()
            .and_then(|i| nix::net::if_::if_indextoname(i).ok())
            .map(|c| c.to_string_lossy().into_owned());
        let addr = FoundAddr { ip, scope };
        if let Some(f) = found.iter_mut().find(|f| f.instance == name && f.port == port) {
            if !f.addrs.contains(&addr) {
                f.addrs.push(addr);
            }
            continue;
        }
        let txt = super::txt_pairs(&txt);
        found.push(Found {
            instance: name,
            port,
            addrs: vec![addr],
            txt,
        });
    }
    Ok(found)
}

/// `ResolveService`'s answer.
type Resolved = (
    i32,
    i32,
    String,
    String,
    String,
    String,
    i32,
    String,
    u16,
    Vec<Vec<u8>>,
    u32,
);
