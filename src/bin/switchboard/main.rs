//! The `switchboard` binary: the library's [`RoomsHandler`] behind a command
//! line, and `switchboard client` to talk to it.

mod allocator;
mod args;
mod client;
mod flags;
mod logging;
mod print_config;
mod scheduling;
mod signals;
mod sources;

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::bounded;
use log::{error, info, warn};
use switchboard::{RoomsHandler, Server, error_chain};

use crate::args::{Command, ServerArgs};
use crate::flags::FlagError;
use crate::sources::{ParseError, Parsed, REDIS_PASSWORD_VAR, Sources};

fn main() -> ExitCode {
    // First of all: it may start the program again.
    allocator::tune();
    let Parsed { cli, sources } = match sources::parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::File(e)) => {
            // As clap reports a usage error: before logging is set up.
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.command.is_none() && cli.server.print_config {
        // A file the server would refuse is no file to start from: the
        // settings are checked, and their files read, as for a start.
        if let Err(e) = cli.server.into_config(&sources) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        if let Some(e) = print_config::unwritable(&sources) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        print!("{}", print_config::render(&sources));
        return ExitCode::SUCCESS;
    }
    // The server reports what it does; the client prints what happens and
    // logs only what goes wrong.
    let level = if cli.command.is_some() { "warn" } else { "info" };
    logging::init(level, cli.server.log_format);
    if cli.command.is_none() {
        for name in sources::unknown_variables(std::env::vars_os().map(|(name, _)| name)) {
            warn!(
                "{name} is set, but sets nothing: each variable is SWITCHBOARD_ and a flag's name (see --help)"
            );
        }
    }
    let result = match cli.command {
        None => serve(cli.server, &sources).map(|()| ExitCode::SUCCESS),
        Some(Command::Client(args)) => talk(args),
    };
    result.unwrap_or_else(|e| {
        error!("{}", error_chain(&*e));
        ExitCode::FAILURE
    })
}

fn serve(args: ServerArgs, sources: &Sources) -> Result<(), Box<dyn Error>> {
    // Before any of the server's threads starts: they inherit it.
    scheduling::apply(args.scheduling);
    // One descriptor per connection: the soft limit (often 1,024) would
    // hold the server to a few hundred clients when the hard limit allows
    // far more. The server then reads the limit it got, and says so if it
    // holds fewer connections than asked.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        warn!("cannot raise the open-file limit: {e}");
    }
    // What SIGHUP reads again.
    let files = args.credential_files(sources);
    let named = files.clone();
    let config = args.into_config(sources)?;
    let files = signals::Reloadable { access: config.access.clone(), files };
    let (http, ws) = if config.tls.is_some() { ("https", "wss") } else { ("http", "ws") };
    let reloads = signals::hold_reloads()?;
    let server = Server::bind(config, RoomsHandler).map_err(|e| -> Box<dyn Error> {
        match e {
            switchboard::Error::RedisAuth { reason, .. } => Box::new(refused(sources, &reason)),
            // Named by its settings, as a reload's is.
            tls @ switchboard::Error::Tls { .. } => Box::new(named.explain(&tls)),
            other => Box::new(other),
        }
    })?;
    let addr = server.local_addr();
    // Logged once the signal handlers are in place: from this line on,
    // SIGINT and SIGTERM shut down gracefully and SIGHUP reloads.
    let listening = || {
        info!("listening on {http}://{addr}/ (rooms at {ws}://{addr}/ws/<room>, echo at {ws}://{addr}/echo)");
    };
    signals::handle(reloads, server.shutdown_handle(), server.reload_handle(), files, listening)?;
    server.run()?;
    Ok(())
}

/// Redis's refusal of the node's credentials, named by where the password
/// came from, or the URL when none was given.
fn refused(sources: &Sources, reason: &str) -> FlagError {
    let (password, given) = match sources.describe_redis_password() {
        Some(given) => (given, true),
        None => (sources.describe("redis"), sources.redis_url_has_password()),
    };
    let what = if given {
        "Redis refused this password".to_owned()
    } else {
        format!(
            "Redis asks for a password, and none was given (--redis-password-file, or the variable \
             {REDIS_PASSWORD_VAR})"
        )
    };
    FlagError::from(format!("{password}: {what}: {reason}"))
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
