//! Reloading a running server's credentials and certificate, dropping no
//! client but those whose bearer token or JWT key is taken away.

use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;
use log::info;

use crate::config::{Access, TlsConfig};
use crate::connection::CredentialHolders;
use crate::error::{Error, Result};
use crate::tls::TlsAcceptor;
use crate::upgrade::Gate;

/// Replaces, on a running [`Server`](crate::Server), the credentials an
/// upgrade must present and the TLS certificate and key. Connections open
/// keep going, but those opened with a bearer token no longer taken, or
/// with a JWT a key no longer taken verified, which are closed (1008,
/// `credentials revoked`); upgrades and TLS handshakes under way finish
/// with what they began with. Cloning gives another handle to the same
/// server.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    pub(crate) gate: Arc<Gate>,
    pub(crate) credential_holders: Arc<CredentialHolders>,
    pub(crate) tls: Option<Arc<TlsAcceptor>>,
    /// The proxies trusted, as the server started: a reload keeps them (and
    /// the gate keeps the origins allowed).
    pub(crate) trusted_proxies: Arc<[IpNet]>,
    /// One reload at a time, so that one reload's credentials never stand
    /// beside another's certificate.
    pub(crate) reloading: Arc<Mutex<()>>,
}

impl ReloadHandle {
    /// From now on, upgrades (and private plain requests) are checked
    /// against `access`'s tokens, JWT key, name claim and audience,
    /// `/metrics` and `/stats` are private as its `private_metrics` says,
    /// and TLS handshakes use `tls`. The connections opened with a bearer
    /// token that `access` no longer holds, or with a JWT verified by a key
    /// that is neither its `jwt_secret` nor one of its
    /// `jwt_previous_secrets`, are closed, 1008, unless `access` asks
    /// for no credentials at all (a JWT's connection otherwise ends when
    /// the token expires).
    /// Everything is checked before anything is replaced: on an error the
    /// server keeps what it had. Reloads from several threads at once take
    /// turns: each applies whole, the last one's credentials and
    /// certificate standing together.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `access` is inconsistent (a JWT name claim
    /// without a JWT key, private metrics without credentials), when it
    /// changes `allowed_origins` or `trusted_proxies` (a running server
    /// keeps those: restart it), or when `tls` is given to a plain server
    /// or taken from a TLS one (a server cannot change its scheme);
    /// [`Error::Tls`] when the certificate or key is not usable.
    pub fn reload(&self, access: &Access, tls: Option<&TlsConfig>) -> Result<()> {
        let _turn = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((field, problem)) = access.problem() {
            return Err(Error::Config { field, problem });
        }
        let kept = "cannot change on a running server: restart it";
        if access.allowed_origins != self.gate.allowed_origins() {
            return Err(Error::Config { field: "access.allowed_origins", problem: kept });
        }
        if *access.trusted_proxies != *self.trusted_proxies {
            return Err(Error::Config { field: "access.trusted_proxies", problem: kept });
        }
        let acceptor = match (&self.tls, tls) {
            // The same files: the same acceptor, whose ticket key the
            // clients' tickets are sealed with, so that reloading tokens
            // costs no client a full handshake.
            (Some(current), Some(tls)) if current.serves(tls) => None,
            (Some(_), Some(tls)) => Some(TlsAcceptor::new(tls)?),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::Config { field: "tls", problem: "must stay set: this server speaks TLS" });
            }
            (None, Some(_)) => {
                return Err(Error::Config {
                    field: "tls",
                    problem: "must stay unset: this server speaks plain HTTP",
                });
            }
        };
        // A server that asks for no credentials any more would admit every
        // client: none is closed.
        let taken = access.requires_credentials().then_some(access);
        let revoked = self.credential_holders.take_only(taken, || self.gate.set_credentials(access));
        if revoked > 0 {
            info!("reload: closing {revoked} connection(s) whose bearer token or JWT key was taken away");
        }
        if let (Some(current), Some(acceptor)) = (&self.tls, acceptor) {
            current.replace(acceptor);
        }
        Ok(())
    }
}
