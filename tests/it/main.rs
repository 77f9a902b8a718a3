//! The one integration-test binary: real binaries, real compilers, real distcc 3.4.

mod bounded;
mod client;
mod common;
mod daemon;
mod fuzz;
mod hostile;
mod monitor;
mod odd_inputs;
mod package;
mod pump;
mod pump_cases;
mod pump_projects;
mod reapi_client;
mod reapi_cluster;
mod sandbox;
mod scan_vs_compiler;
mod serve;
mod sysbox;
mod systemd;
mod upstream;
mod zeroconf;
