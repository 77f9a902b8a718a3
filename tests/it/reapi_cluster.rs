//! The REAPI test cluster itself (tests/reapi): PostgreSQL, BuildGrid and the
//! test worker really execute an action, the action cache serves it again
//! without the worker, and everything stops with the cluster. A Python
//! client (tests/reapi/smoke.py) drives it until our own REAPI client exists.

use std::process::Command;
use std::time::Instant;

use crate::common::{Cluster, TestDir, reapi_python, reapi_script};

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn cluster_executes_and_caches() {
    let dir = TestDir::new("reapi-cluster");
    let t = Instant::now();
    let mut cluster = Cluster::start(&dir);
    let cold = t.elapsed();
    assert_eq!(cluster.pids.len(), 3, "postgres, server, worker");
    assert_eq!(cluster.executed(), 0);

    let out = Command::new(reapi_python())
        .arg(reapi_script("smoke.py"))
        .arg("--port")
        .arg(cluster.port.to_string())
        .arg("--executed")
        .arg(&cluster.executed_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("SMOKE OK"),
        "smoke.py failed: {}\n{stdout}\n{stderr}\n--- cluster:\n{}",
        out.status,
        cluster.log_text()
    );
    for want in [
        "exit_code=0 cached_result=False",
        "identical_to_local=True",
        "worker_executed_delta=1 logged_digest=True",
        "cache_hit_same_object=True",
        "cached_result=True",
        "worker_executed_after_cache=1",
        "env_exactly_command=True",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    // The compile and the env check ran on the worker; the cache hit did not.
    assert_eq!(cluster.executed(), 2, "{:?}", cluster.executed_digests());
    eprintln!(
        "reapi cluster: cold start {:.2}s (script's own clock {:.2}s)\n{stdout}",
        cold.as_secs_f64(),
        cluster.start_secs
    );

    let (pids, root) = (cluster.pids.clone(), cluster.dir.clone());
    assert!(pids.iter().all(|&p| alive(p)));
    cluster.stop();
    assert!(pids.iter().all(|&p| !alive(p)), "left running: {pids:?}");
    assert!(!root.exists(), "{} was not removed", root.display());
}
