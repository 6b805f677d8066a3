//! The server's signals: SIGINT and SIGTERM stop it gracefully, a second one
//! at once; SIGHUP reloads the token file, the JWT key, and the TLS
//! certificate and key, dropping only the clients of a token taken away.

use std::thread;

use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use switchboard::{Access, ReloadHandle, ShutdownHandle};

use crate::args::Files;

/// What a reload reads again: the files the settings named, and the rest
/// of the access rules, which stay as they are.
#[derive(Debug, Clone)]
pub struct Reloadable {
    pub access: Access,
    pub files: Files,
}

/// Holds SIGHUP from now on, until [`handle`] takes it: a reload asked for
/// while the server starts (a certificate renewed as it connects to a slow
/// Redis) would otherwise end the process, SIGHUP's default. SIGINT and
/// SIGTERM keep their default meanwhile: a server that has not started yet
/// has nothing to shut down gracefully, and stops at once.
///
/// # Errors
///
/// When the handler cannot be installed.
pub fn hold_reloads() -> std::io::Result<Signals> {
    Signals::new([SIGHUP])
}

/// Handles the server's signals on a thread of their own, for as long as
/// the process runs; a reload asked for while it started is done first.
/// `ready` is called once SIGINT and SIGTERM are caught and the thread is
/// running, and before that reload: what it logs comes ahead of the
/// reload's line, and after it the process has all its threads.
///
/// # Errors
///
/// When the signal handlers cannot be installed.
pub fn handle(
    mut signals: Signals,
    shutdown: ShutdownHandle,
    reload: ReloadHandle,
    files: Reloadable,
    ready: impl FnOnce(),
) -> std::io::Result<()> {
    signals.add_signal(SIGINT)?;
    signals.add_signal(SIGTERM)?;
    // The thread waits for `ready` to have been called (the sender dropped).
    let (readied, until_ready) = crossbeam_channel::bounded::<()>(0);
    thread::Builder::new().name("switchboard-signals".into()).spawn(move || {
        let _ = until_ready.recv();
        let mut stopping = false;
        for signal in signals.forever() {
            let name = match signal {
                SIGINT => "SIGINT (interrupt)",
                SIGTERM => "SIGTERM (terminate)",
                _ => "SIGHUP (reload)",
            };
            if signal == SIGHUP {
                match files.reload(&reload) {
                    Ok(what) => info!("{name}: reloaded {what}; open connections go on"),
                    Err(e) => error!("{name}: nothing reloaded, the server keeps what it had: {e}"),
                }
            } else if stopping {
                warn!("{name} again: exiting now");
                // Ended by the signal, as its default would, which a service
                // manager counts as a clean stop (systemd does); the status
                // a shell gives that only if the signal cannot be raised.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            } else {
                stopping = true;
                info!("{name}: shutting down (send it again to exit at once)");
                shutdown.shutdown();
            }
        }
    })?;
    ready();
    drop(readied);
    Ok(())
}

impl Reloadable {
    /// Reads the files again and hands them to the server; says what was
    /// reloaded. Nothing changes unless all of it is good.
    fn reload(&self, server: &ReloadHandle) -> Result<String, Box<dyn std::error::Error>> {
        let read = self.files.read()?;
        let what = self.files.describe(&read);
        let access = Access {
            tokens: read.tokens,
            jwt_secret: read.jwt_secret,
            jwt_previous_secrets: read.jwt_previous_secrets,
            ..self.access.clone()
        };
        server.reload(&access, read.tls.as_ref()).map_err(|e| self.files.explain(&e))?;
        Ok(what)
    }
}
