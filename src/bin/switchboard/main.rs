//! The `switchboard` binary: the library's [`RoomsHandler`] behind a command line.

mod args;

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use log::{error, info, warn};
use switchboard::{RoomsHandler, Server};

use crate::args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let config = args.into_config()?;
    let (http, ws) = if config.tls.is_some() { ("https", "wss") } else { ("http", "ws") };
    let server = Server::bind(config, RoomsHandler)?;
    // The first Ctrl-C (or SIGTERM) shuts down gracefully; a second one
    // means the operator does not want to wait.
    let shutdown = server.shutdown_handle();
    let asked = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if asked.swap(true, Ordering::SeqCst) {
            warn!("second interrupt: exiting now");
            std::process::exit(130);
        }
        info!("interrupt: shutting down (interrupt again to exit at once)");
        shutdown.shutdown();
    })?;
    // Logged once the signal handler is in place: from this line on, an
    // interrupt is a graceful shutdown.
    let addr = server.local_addr();
    info!("listening on {http}://{addr}/ (rooms at {ws}://{addr}/ws/<room>, echo at {ws}://{addr}/echo)");
    server.run()?;
    Ok(())
}

/// `outer: cause: root cause`, so that one log line tells the whole story.
fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
