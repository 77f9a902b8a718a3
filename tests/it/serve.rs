//! `daemon::serve` in-process, on a paused clock: the deadlines of a
//! connection (first bytes, the whole request at the minimum rate) and of a
//! job (`--job-lifetime`) are checked in virtual time, so a 30-minute job
//! lifetime takes no real time and no test sleeps.

use std::sync::Arc;
use std::time::Duration;

use distcc::daemon::options::Options;
use distcc::daemon::start::{Env, config};
use distcc::daemon::{Server, serve};
use distcc::protocol::message::ReplyDecoder;
use distcc::protocol::{Limits, Reply, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::common::*;

/// A server on a loopback port, with `tune` applied to its config; the
/// returned sender stops it.
async fn server(
    dir: &TestDir,
    tune: impl FnOnce(&mut distcc::daemon::Config),
) -> (std::net::SocketAddr, Arc<Server>) {
    let allowed = compiler_dir(dir, &["gcc", "slowcc"]);
    let bin = slow_compiler(dir, 3600);
    let mut opts = Options::defaults(2);
    opts.allow = vec!["127.0.0.1/32".parse().unwrap()];
    opts.compiler_dir = allowed;
    let env = Env {
        distccd_path: Some(format!("{}:/usr/bin:/bin", bin.display()).into()),
        tmpdir: Some(dir.shared_dir("daemon-tmp").into()),
        ..Env::default()
    };
    let mut cfg = config(&opts, false, &env).unwrap();
    tune(&mut cfg);
    let server = Server::new(cfg, 2);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(vec![listener], server.clone(), std::future::pending()));
    (addr, server)
}

/// Reads a whole reply (or what there is before the server closes).
async fn read_reply(s: &mut TcpStream, version: Version) -> Option<Reply> {
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).await.ok()?;
    let mut r = &bytes[..];
    distcc::protocol::blocking::read_message(&mut r, ReplyDecoder::new(version, Limits::default())).ok()
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_at_the_header_timeout() {
    let dir = TestDir::new("serve-idle");
    let (addr, server) = server(&dir, |c| c.header_timeout = Duration::from_secs(10)).await;
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut b = Vec::new();
    s.read_to_end(&mut b).await.unwrap();
    let held = t.elapsed();
    assert!(b.is_empty(), "an idle connection gets no reply: {b:?}");
    assert!(
        held >= Duration::from_secs(10) && held < Duration::from_secs(11),
        "closed after {held:?} of virtual time"
    );
    // Silence is not a client: nothing counted against anyone.
    assert_eq!(server.live.totals().bad_request, 0);
}

#[tokio::test(start_paused = true)]
async fn a_header_that_stops_halfway_is_refused_at_the_header_timeout() {
    let dir = TestDir::new("serve-half");
    let (addr, server) = server(&dir, |c| c.header_timeout = Duration::from_secs(10)).await;
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"DIST00000002ARGC00000005ARGV00000003gcc")
        .await
        .unwrap();
    let reply = read_reply(&mut s, Version::Lzo)
        .await
        .expect("a refusal in protocol 2");
    let held = t.elapsed();
    assert!(
        held >= Duration::from_secs(10) && held < Duration::from_secs(11),
        "{held:?}"
    );
    assert_eq!(reply.status >> 8, u32::from(distcc::exitcode::PROTOCOL_ERROR));
    assert!(
        text(&reply.stderr).contains("within 10s of connecting"),
        "{}",
        text(&reply.stderr)
    );
    assert_eq!(server.live.totals().bad_request, 1);
}

#[tokio::test(start_paused = true)]
async fn a_source_slower_than_the_minimum_rate_is_refused() {
    let dir = TestDir::new("serve-slow");
    let (addr, _server) = server(&dir, |c| {
        c.header_timeout = Duration::from_secs(10);
        c.min_rate = 16 << 10;
        c.request_timeout = Duration::from_secs(600);
    })
    .await;
    // 160 KiB at 16 KiB/s: 10 s for the source, plus the header's 10 s.
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"DIST00000002ARGC00000003ARGV00000003gccARGV00000002-cARGV00000003x.iDOTI00028000")
        .await
        .unwrap();
    s.write_all(&[b' '; 1000]).await.unwrap();
    let reply = read_reply(&mut s, Version::Lzo).await.expect("a refusal");
    let held = t.elapsed();
    assert!(
        held >= Duration::from_secs(20) && held < Duration::from_secs(21),
        "{held:?}"
    );
    assert!(
        text(&reply.stderr).contains("request too slow"),
        "{}",
        text(&reply.stderr)
    );
    assert!(
        text(&reply.stderr).contains("1000 of 163840 bytes"),
        "{}",
        text(&reply.stderr)
    );
}

#[tokio::test(start_paused = true)]
async fn a_compile_that_never_ends_is_killed_at_the_job_lifetime_and_answered() {
    let dir = TestDir::new("serve-lifetime");
    let (addr, server) = server(&dir, |c| c.job_lifetime = Some(Duration::from_secs(1800))).await;
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = request(Version::Lzo, &["slowcc", "-c", "x.c", "-o", "x.o"], b"int x;\n");
    s.write_all(&req.encode()).await.unwrap();
    let reply = read_reply(&mut s, Version::Lzo).await.expect("an answer");
    let held = t.elapsed();
    assert!(
        held >= Duration::from_secs(1800) && held < Duration::from_secs(1801),
        "{held:?}"
    );
    assert_eq!(reply.status >> 8, u32::from(distcc::exitcode::TIMEOUT));
    assert!(
        text(&reply.stderr).contains("--job-lifetime 1800s"),
        "{}",
        text(&reply.stderr)
    );
    assert_eq!(server.live.totals().timeout, 1);
    assert_eq!(server.live.running(), 0, "the slot is free again");
}
