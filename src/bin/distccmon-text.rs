//! distccmon-text: lists running distcc jobs. The state-file reader comes
//! with the monitoring issue; until then this reports that honestly.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") => {
            print!("{}", distcc::version_banner("distccmon-text"));
            ExitCode::SUCCESS
        }
        Some("--help") | None => {
            println!(
                "Usage: distccmon-text [DELAY]\n\nNot implemented yet in distcc-rs: job state is not read."
            );
            ExitCode::from(if args.is_empty() { 1 } else { 0 })
        }
        Some(_) => {
            eprintln!("distccmon-text: not implemented yet in distcc-rs");
            ExitCode::from(1)
        }
    }
}
