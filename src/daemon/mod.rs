/*!
distccd: the compile server.

`serve` takes listeners that the caller made (bound here by `--listen/--port`
or, later, handed over by systemd) and a shutdown future; it never binds
anything itself (mini-redis `server::run`). Each connection is one job
(`job::handle`); `--jobs` limits how many compile at once, and connections
beyond what the server reads at once wait in the kernel's queue.
*/

pub mod access;
pub mod budget;
pub mod compilers;
pub mod confd;
pub mod job;
pub mod journal;
pub mod live;
pub mod options;
pub mod process;
pub mod pump;
pub mod sandbox;
pub mod start;
pub mod stats;
pub mod systemd;
pub mod workdir;
pub mod zeroconf;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use job::{Config, Peer, Refusal, Server};

/// How long a stopping server lets running jobs finish.
pub const DRAIN: Duration = Duration::from_secs(60);

/// Serves on every listener until `shutdown` resolves, then lets running
/// jobs finish (up to `DRAIN`).
pub async fn serve(listeners: Vec<TcpListener>, server: Arc<Server>, shutdown: impl Future<Output = ()>) {
    // Every connection task holds a clone; when all are dropped, `recv` ends.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut acceptors = tokio::task::JoinSet::new();
    for listener in listeners {
        let (server, done_tx) = (server.clone(), done_tx.clone());
        acceptors.spawn(accept_loop(listener, server, done_tx));
    }
    drop(done_tx);
    shutdown.await;
    acceptors.shutdown().await;
    let running = server.live.running();
    if running > 0 {
        tracing::info!("shutting down: waiting for {running} running job(s)");
    }
    if tokio::time::timeout(DRAIN, done_rx.recv()).await.is_err() {
        tracing::warn!("shutting down with jobs still running after {}s", DRAIN.as_secs());
    }
    server.dirs.clear();
}

/// Accepts without a limit of its own: a connection costs a task and a
/// descriptor until its first byte (`--header-timeout`), the connections
/// reading a request are limited by `--max-connections`, those of one
/// address by `--max-per-client`, and the bytes they hold by
/// `--max-queued-mb` (see `job`).
async fn accept_loop(listener: TcpListener, server: Arc<Server>, done: tokio::sync::mpsc::Sender<()>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                backoff = Duration::from_millis(10);
                let _ = stream.set_nodelay(true);
                let (server, done) = (server.clone(), done.clone());
                tokio::spawn(async move {
                    let (r, w) = stream.into_split();
                    job::handle(server, Peer::Tcp(addr), r, w).await;
                    drop(done);
                });
            }
            Err(e) => {
                // EMFILE and friends: wait and retry rather than spin or exit.
                tracing::error!("accept failed: {e}; retrying in {}ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
