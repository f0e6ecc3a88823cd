//! `eport`: parse the command line, run the command, print one clear line on failure.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = eport::Cli::parse();
    match eport::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("eport: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
