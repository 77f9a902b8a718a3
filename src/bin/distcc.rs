//! distcc: see `distcc::client`.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(distcc::client::main(std::env::args_os().collect()))
}
