//! distccd: see `distcc::daemon`; start-up is `distcc::daemon::start`.
//! This reads the command line and maps the outcome to the exit code.

use std::process::ExitCode;

use distcc::daemon::options::{self, Parsed};
use distcc::daemon::start::{self, Fatal};
use distcc::exitcode;

fn main() -> ExitCode {
    let cli: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args = match start::with_conf_file(cli) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("distccd: {e}");
            return ExitCode::from(exitcode::BAD_ARGUMENTS);
        }
    };
    let ncpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = match options::parse(&args, ncpus) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{}", options::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            print!("{}", distcc::version_banner("distccd"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("distccd: {e}\nTry 'distccd --help'.");
            return ExitCode::from(exitcode::BAD_ARGUMENTS);
        }
    };
    match start::run(*opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal { code, error }) => {
            tracing::error!("{error:#}");
            eprintln!("distccd: {error:#}");
            ExitCode::from(code)
        }
    }
}
