//! `switchboard-bench`: load for any WebSocket server with an echo path and room paths, and a report comparing servers.
//!
//! ```text
//! main thread        parses the command line, conducts the run's phases,
//!    │               prints progress once a second, prints the table
//!    ├──► event-loop threads (echo, fanout, idle): one mio Poll each, owning
//!    │               thousands of non-blocking tungstenite clients
//!    └──► worker threads (churn): one blocking connection at a time each
//! ```
//!
//! The load threads count into a shared meter and return their histograms
//! and sequence trackers when the run stops; the main thread merges them
//! into one [`Report`](report::Report).

mod args;
mod client;
mod clock;
mod compare;
mod error;
mod event_loop;
mod latency;
mod meter;
mod numbers;
mod outcome;
mod payload;
mod progress;
mod report;
mod run;
mod scenario;
mod sequence;
mod source;
mod system;
mod target;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Args, Command, LoadArgs, fits_open_files};
use crate::error::Result;
use crate::scenario::LoadSettings;
use switchboard::error_chain;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-bench: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    // Recorded in every report, so a figure can be reproduced.
    let command = std::env::args().map(|arg| shell_word(&arg)).collect::<Vec<_>>().join(" ");
    let (report, json) = match args.command {
        Command::Echo(a) => {
            let echo = a.settings()?;
            fits_open_files(echo.connections)?;
            (scenario::echo::run(&load(&a.load, command)?, &echo)?, a.load.json)
        }
        Command::Fanout(a) => {
            let fanout = a.settings()?;
            fits_open_files(fanout.subscribers + 1)?;
            (scenario::fanout::run(&load(&a.load, command)?, &fanout)?, a.load.json)
        }
        Command::Idle(a) => {
            let idle = a.settings()?;
            fits_open_files(idle.connections)?;
            (scenario::idle::run(&load(&a.load, command)?, &idle)?, a.load.json)
        }
        Command::Churn(a) => (scenario::churn::run(&load(&a.load, command)?, &a.settings()?)?, a.load.json),
        Command::Report(a) => return compare::run(&a),
    };
    println!("{report}");
    if let Some(path) = json {
        report.write_json(&path)?;
    }
    Ok(())
}

/// The load options, checked, and their source addresses tried on this
/// machine (as the open-file limit is, when a run starts).
fn load(args: &LoadArgs, command: String) -> Result<LoadSettings> {
    let load = args.settings(command)?;
    load.sources.check_bindable()?;
    Ok(load)
}

/// `arg`, quoted for a POSIX shell if it needs to be.
fn shell_word(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_recorded_so_a_shell_can_run_them() {
        assert_eq!(shell_word("--server"), "--server");
        assert_eq!(shell_word("127.0.0.1:9001"), "127.0.0.1:9001");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
