/*!
distcc-rs: distcc's client, daemon and monitor, wire-compatible with distcc 3.4.

Layout:
- `protocol`: the wire format (tokens, requests, replies, LZO), pure.
- `args`: what compiler command lines mean; one sorted flag table, pure.
- `daemon`: `distccd`: options, access rules, the compiler allow-list
  (pure), and the tokio server that runs jobs.
- `exitcode`: distcc's exit codes, shared by every binary.
- `reapi`: a Remote Execution API v2 client for one compile: the action
  (pure) and the gRPC calls (a runtime made only inside `reapi::run`).
*/

pub mod args;
pub mod client;
pub mod daemon;
pub mod exitcode;
pub mod monitor;
pub mod protocol;
pub mod pump;
pub mod reapi;
pub mod zeroconf;

/// The version string both binaries print, in distcc's format.
pub fn version_banner(program: &str) -> String {
    format!(
        "{program} {} {}-pc-linux-gnu\n  (protocols 1 and 2) (default port 3632)\n\
         \x20 distcc-rs, wire-compatible with distcc 3.4\n\
         \nCopyright (C) the distcc-rs authors; based on the design of distcc by Martin Pool.\n\
         distcc-rs comes with ABSOLUTELY NO WARRANTY. It is free software, and you may use,\n\
         modify and redistribute it under the terms of the GNU General Public License,\n\
         version 2 or later.\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
    )
}
