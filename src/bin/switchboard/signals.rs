//! The server's signals: SIGINT and SIGTERM stop it gracefully, a second one
//! at once; SIGHUP reloads the token file, the JWT key, and the TLS
//! certificate and key, without dropping a client.

use std::path::PathBuf;
use std::thread;

use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use switchboard::{Access, ReloadHandle, ShutdownHandle, TlsConfig, error_chain};

use crate::args::read_secrets;
use crate::flags::FlagError;

/// What a reload reads again: the files the settings named (each with the
/// setting that named it, for errors), and the rest of the access rules,
/// which stay as they are.
#[derive(Debug, Clone)]
pub struct Reloadable {
    pub access: Access,
    pub auth_token_file: Option<(PathBuf, String)>,
    pub jwt_secret_file: Option<(PathBuf, String)>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Handles the server's signals on a thread of their own, for as long as
/// the process runs.
///
/// # Errors
///
/// When the signal handlers cannot be installed.
pub fn handle(shutdown: ShutdownHandle, reload: ReloadHandle, files: Reloadable) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    thread::Builder::new().name("switchboard-signals".into()).spawn(move || {
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
                std::process::exit(130);
            } else {
                stopping = true;
                info!("{name}: shutting down (send it again to exit at once)");
                shutdown.shutdown();
            }
        }
    })?;
    Ok(())
}

impl Reloadable {
    /// Reads the files again and hands them to the server; says what was
    /// reloaded. Nothing changes unless all of it is good.
    fn reload(&self, server: &ReloadHandle) -> Result<String, Box<dyn std::error::Error>> {
        let mut access = self.access.clone();
        let mut what = Vec::new();
        if let Some((path, setting)) = &self.auth_token_file {
            access.tokens = read_secrets(path, setting)?;
            let n = access.tokens.len();
            what.push(format!("{n} token{}", if n == 1 { "" } else { "s" }));
        }
        if let Some((path, setting)) = &self.jwt_secret_file {
            access.jwt_secret = read_secrets(path, setting)?.into_iter().next();
            what.push("the JWT key".to_owned());
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                what.push("the certificate and key".to_owned());
                Some(
                    TlsConfig::from_pem_files(cert, key)
                        .map_err(|e| FlagError::with_value("--tls-cert", cert.display(), &error_chain(&e)))?,
                )
            }
            _ => None,
        };
        server.reload(&access, tls.as_ref())?;
        Ok(if what.is_empty() { "nothing (no file to read)".to_owned() } else { what.join(", ") })
    }
}
