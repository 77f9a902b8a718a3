//! pump: runs a build with distcc's include server (pump mode).
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(distcc::pump::wrapper::main(std::env::args_os().collect()))
}
