//! The `switchboard` binary: the library's [`RoomsHandler`] behind a command
//! line, and `switchboard client` to talk to it.

mod arenas;
mod args;
mod client;
mod flags;
mod logging;
mod signals;

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use crossbeam_channel::bounded;
use log::{error, info, warn};
use switchboard::{RoomsHandler, Server, error_chain};

use crate::args::{Cli, Command, ServerArgs};

fn main() -> ExitCode {
    // Before any thread starts, the signal handlers' included.
    arenas::one_per_core();
    let cli = Cli::parse();
    // The server reports what it does; the client prints what happens and
    // logs only what goes wrong.
    let level = if cli.command.is_some() { "warn" } else { "info" };
    logging::init(level, cli.server.log_format);
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
    // One descriptor per connection: the soft limit (often 1,024) would
    // hold the server to a few hundred clients when the hard limit allows
    // far more. The server then reads the limit it got, and says so if it
    // holds fewer connections than asked.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        warn!("cannot raise the open-file limit: {e}");
    }
    // What SIGHUP reads again.
    let (auth_token_file, jwt_secret_file) = (args.auth_token_file.clone(), args.jwt_secret_file.clone());
    let (tls_cert, tls_key) = (args.tls_cert.clone(), args.tls_key.clone());
    let config = args.into_config()?;
    let files = signals::Reloadable {
        access: config.access.clone(),
        auth_token_file,
        jwt_secret_file,
        tls_cert,
        tls_key,
    };
    let (http, ws) = if config.tls.is_some() { ("https", "wss") } else { ("http", "ws") };
    let server = Server::bind(config, RoomsHandler).map_err(|e| -> Box<dyn Error> {
        match e {
            // The library names the field of Config; the user wrote a flag.
            switchboard::Error::Config { field, problem } => {
                let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
                Box::new(flags::explain(field, problem, &argv))
            }
            other => Box::new(other),
        }
    })?;
    signals::handle(server.shutdown_handle(), server.reload_handle(), files)?;
    // Logged once the signal handlers are in place: from this line on,
    // SIGINT and SIGTERM shut down gracefully and SIGHUP reloads.
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
