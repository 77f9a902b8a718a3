//! distccmon-text: the distcc jobs running on this machine, as distcc 3.4's
//! monitor shows them (and from the same state files, so it shows the jobs
//! of distcc 3.4 clients too).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use distcc::monitor::{scan, text};

const USAGE: &str = "Usage: distccmon-text [DELAY]

Displays current compilation jobs in text form.

If delay is specified, repeatedly updates after that many (fractional)
seconds. Otherwise, runs just once.
";

fn state_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("DISTCC_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".distcc"),
    };
    Some(dir.join("state"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let delay = match args.as_slice() {
        [] => None,
        [a] if a == "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [a] if a == "--version" => {
            print!("{}", distcc::version_banner("distccmon-text"));
            return ExitCode::SUCCESS;
        }
        [a] => match a.trim().parse::<f64>() {
            Ok(d) if d.is_finite() && d >= 0.0 => Some(Duration::from_secs_f64(d)),
            _ => {
                eprint!("{USAGE}");
                return ExitCode::from(1);
            }
        },
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(1);
        }
    };
    let Some(dir) = state_dir() else {
        eprintln!("distccmon-text: neither DISTCC_DIR nor HOME is set");
        return ExitCode::from(1);
    };
    let mut out = std::io::stdout().lock();
    loop {
        if out
            .write_all(text::render(&scan::poll(&dir)).as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            // A closed pipe (`distccmon-text 1 | head`) ends the program quietly.
            return ExitCode::SUCCESS;
        }
        match delay {
            Some(d) => std::thread::sleep(d),
            None => return ExitCode::SUCCESS,
        }
    }
}
