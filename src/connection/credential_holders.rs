//! The connections open on credentials, so that a credential taken away (a
//! reload whose token file no longer lists a bearer token, or that replaces
//! the JWT key) ends the sessions it opened as well as refusing new ones: a
//! leaked token or key, once revoked, must not keep its holders connected.
//!
//! A connection admitted with credentials is added once, at its upgrade,
//! under what they stand on (the token, or the key that verified its JWT),
//! and does not take itself out at its end, which then costs nothing here:
//! entries of connections gone are swept when the list has doubled since
//! the last sweep, and by each reload.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::outbox::{Closing, Outbox};
use crate::auth::{TokenDigest, credential_digests};
use crate::close::CloseReason;
use crate::config::Access;
use crate::frame::Frame;

/// Below this many entries the list is not swept.
const SWEEP_FLOOR: usize = 64;

/// The connections open on credentials, and the credentials taken now.
#[derive(Debug)]
pub(crate) struct CredentialHolders {
    holders: Mutex<Holders>,
}

#[derive(Debug)]
struct Holders {
    /// The digests of the credentials taken, sorted.
    taken: Vec<TokenDigest>,
    /// Each connection added, with its credential's digest.
    open: Vec<(TokenDigest, Weak<Outbox>)>,
    /// How many entries the last sweep left.
    swept_to: usize,
}

impl CredentialHolders {
    /// Holders of the credentials of `access`, as the server starts.
    pub(crate) fn new(access: &Access) -> Self {
        let holders = Holders { taken: credential_digests(access), open: Vec::new(), swept_to: 0 };
        CredentialHolders { holders: Mutex::new(holders) }
    }

    /// Adds the connection of `outbox`, admitted with the credential of
    /// `digest`. If it was taken away since it was checked, the connection is
    /// closed at once, and false returned: a reload in between finds it
    /// either here or not yet added, and then it is refused here.
    pub(crate) fn add(&self, digest: TokenDigest, outbox: &Arc<Outbox>) -> bool {
        let mut holders = self.lock();
        if holders.taken.binary_search(&digest).is_err() {
            drop(holders);
            revoke(outbox);
            return false;
        }
        if holders.open.len() >= 2 * holders.swept_to.max(SWEEP_FLOOR) {
            holders.open.retain(|(_, outbox)| outbox.strong_count() > 0);
            holders.swept_to = holders.open.len();
        }
        holders.open.push((digest, Arc::downgrade(outbox)));
        true
    }

    /// From now on only the credentials of `access` are taken (`None`:
    /// those taken stay as they are): the connections opened with any other
    /// token, or with a JWT another key verified, are closed, 1008, ahead
    /// of what is queued for them. Returns how many. `install` gives the
    /// gate the new credentials under this list's lock, after it has taken
    /// them: an upgrade the gate lets in with a new token finds it taken
    /// here, and two reloads at once cannot leave the gate with one's
    /// credentials and this list with the other's.
    pub(crate) fn take_only(&self, access: Option<&Access>, install: impl FnOnce()) -> usize {
        let mut revoked = Vec::new();
        {
            let mut holders = self.lock();
            if let Some(access) = access {
                let Holders { taken, open, swept_to } = &mut *holders;
                *taken = credential_digests(access);
                open.retain(|(digest, outbox)| {
                    if taken.binary_search(digest).is_ok() {
                        return outbox.strong_count() > 0;
                    }
                    revoked.extend(outbox.upgrade());
                    false
                });
                *swept_to = open.len();
            }
            install();
        }
        // Outside the lock: an upgrade waiting to be added need not wait for
        // the closes.
        for outbox in &revoked {
            revoke(outbox);
        }
        revoked.len()
    }

    fn lock(&self) -> MutexGuard<'_, Holders> {
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn revoke(outbox: &Arc<Outbox>) {
    let close = Frame::close(Some(CloseReason::CredentialsRevoked.frame()));
    // Refused only when the connection is closing already.
    let _ = outbox.close(close, Closing::Now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Secret, Token};
    use crate::connection::{Recorded, recorded};
    use crate::metrics::Metrics;

    fn open(id: u64) -> Recorded {
        recorded(id, b"HTTP/1.1 101\r\n\r\n", 1 << 20, Arc::new(Metrics::default()))
    }

    /// What the credentials of `tokens` (and a JWT `key`) allow.
    fn access(tokens: &[Token], key: Option<&str>) -> Access {
        Access { tokens: tokens.to_vec(), jwt_secret: key.map(Secret::new), ..Access::default() }
    }

    fn digest_of(secret: &str) -> TokenDigest {
        credential_digests(&access(&[Token::new(secret)], None))[0]
    }

    fn key_digest_of(key: &str) -> TokenDigest {
        credential_digests(&access(&[], Some(key)))[0]
    }

    fn revoked(r: &Recorded) -> bool {
        r.outbox.closed_with() == Some(Frame::close(Some(CloseReason::CredentialsRevoked.frame())))
    }

    #[test]
    fn a_reload_closes_the_connections_of_a_token_taken_away_and_only_those() {
        let holders =
            CredentialHolders::new(&access(&[Token::new("kept"), Token::named("old", "dropped")], None));
        let (kept, dropped) = (open(1), open(2));
        holders.add(digest_of("kept"), &kept.outbox);
        holders.add(digest_of("dropped"), &dropped.outbox);
        assert!(!revoked(&kept) && !revoked(&dropped));

        let renamed = access(&[Token::named("renamed", "kept"), Token::new("new")], None);
        assert_eq!(holders.take_only(Some(&renamed), || {}), 1);
        assert!(revoked(&dropped) && !revoked(&kept), "a renamed token is the same token");
        assert_eq!(holders.take_only(Some(&renamed), || {}), 0, "closed once");
    }

    #[test]
    fn a_reload_that_replaces_the_jwt_key_closes_the_connections_it_verified() {
        let holders = CredentialHolders::new(&access(&[Token::new("t")], Some("old key")));
        let (by_jwt, by_token) = (open(1), open(2));
        assert!(holders.add(key_digest_of("old key"), &by_jwt.outbox));
        assert!(holders.add(digest_of("t"), &by_token.outbox));
        assert_eq!(holders.take_only(Some(&access(&[Token::new("t")], Some("old key"))), || {}), 0);
        assert_eq!(holders.take_only(Some(&access(&[Token::new("t")], Some("new key"))), || {}), 1);
        assert!(revoked(&by_jwt) && !revoked(&by_token));
        // Kept as a previous key: what it let in stays, until a reload
        // lists it no more.
        let (by_old, by_new) = (open(3), open(4));
        let rotating = CredentialHolders::new(&access(&[], Some("old key")));
        assert!(rotating.add(key_digest_of("old key"), &by_old.outbox));
        let mut both = access(&[], Some("new key"));
        both.jwt_previous_secrets = vec![Secret::new("old key")];
        assert_eq!(rotating.take_only(Some(&both), || {}), 0);
        assert!(rotating.add(key_digest_of("new key"), &by_new.outbox));
        assert_eq!(rotating.take_only(Some(&access(&[], Some("new key"))), || {}), 1);
        assert!(revoked(&by_old) && !revoked(&by_new));
        // A token that spells out the key is not the key.
        assert_ne!(digest_of("old key"), key_digest_of("old key"));
    }

    #[test]
    fn an_upgrade_checked_before_a_reload_that_took_its_token_is_closed_when_added() {
        let holders = CredentialHolders::new(&access(&[Token::new("old")], None));
        holders.take_only(Some(&access(&[Token::new("new")], None)), || {});
        let late = open(1);
        assert!(!holders.add(digest_of("old"), &late.outbox));
        assert!(revoked(&late));
        let new = open(2);
        assert!(holders.add(digest_of("new"), &new.outbox));
        assert!(!revoked(&new));
    }

    #[test]
    fn entries_of_connections_gone_are_swept() {
        let holders = CredentialHolders::new(&access(&[Token::new("t")], None));
        let kept = open(0);
        holders.add(digest_of("t"), &kept.outbox);
        for id in 1..=10 * SWEEP_FLOOR as u64 {
            holders.add(digest_of("t"), &open(id).outbox);
        }
        let left = holders.lock().open.len();
        assert!(left <= 2 * SWEEP_FLOOR, "{left} entries for one connection open");
        assert!(holders.lock().open.iter().any(|(_, outbox)| outbox.ptr_eq(&Arc::downgrade(&kept.outbox))));
    }
}
