//! The `switchboard` binary: the library's [`RoomsHandler`] behind a command
//! line, and `switchboard client` to talk to it.

mod args;
mod client;

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use crossbeam_channel::bounded;
use log::{error, info, warn};
use switchboard::{RoomsHandler, Server, error_chain};

use crate::args::{Cli, Command, ServerArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server reports what it does; the client prints what happens and
    // logs only what goes wrong.
    let level = if cli.command.is_some() { "warn" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let result = match cli.command {
        None => serve(cli.server).map(|()| ExitCode::SUCCESS),
        Some(Command::Client(args)) => talk(args),
    };
    result.unwrap_or_else(|e| {
        error!("{}", error_chain(&*e));
        ExitCode::FAILURE
    })
}

fn serve(args: ServerArgs) -> Result<(), Box<dyn Error>> {
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

fn talk(args: client::ClientArgs) -> Result<ExitCode, Box<dyn Error>> {
    // Ctrl-C closes every connection with 1000; a second one exits at once.
    let (interrupt, interrupted) = bounded(1);
    let asked = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if asked.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        let _ = interrupt.try_send(());
    })?;
    client::run(args, interrupted)
}
