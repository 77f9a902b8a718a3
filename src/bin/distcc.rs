//! distcc: the client. Distribution comes with the client issue; until then
//! this binary only answers --version/--help and runs compiles locally, and
//! says so.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            eprintln!("distcc: missing compiler command\nTry 'distcc --help'.");
            ExitCode::from(distcc::exitcode::BAD_ARGUMENTS)
        }
        Some("--version") => {
            print!("{}", distcc::version_banner("distcc"));
            ExitCode::SUCCESS
        }
        Some("--help") => {
            println!(
                "Usage: distcc [COMPILER] [compile options]\n\nThis build of distcc-rs compiles locally only."
            );
            ExitCode::SUCCESS
        }
        Some(first) => {
            let (compiler, rest) = if first.starts_with('-') {
                ("cc", &args[..])
            } else {
                (first, &args[1..])
            };
            if std::env::var("DISTCC_VERBOSE").as_deref() == Ok("1") {
                eprintln!(
                    "distcc[{}] compiling locally: this build does not distribute yet",
                    std::process::id()
                );
            }
            let err = Command::new(compiler).args(rest).exec();
            eprintln!("distcc: failed to exec {compiler}: {err}");
            ExitCode::from(distcc::exitcode::COMPILER_MISSING)
        }
    }
}
