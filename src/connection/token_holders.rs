//! The connections open on bearer tokens, so that a token taken away (a
//! reload whose token file no longer lists it) ends the sessions it opened
//! as well as refusing new ones: a leaked token, once revoked, must not
//! keep its holder connected.
//!
//! A connection admitted with a token is added once, at its upgrade, and
//! does not take itself out at its end, which then costs nothing here:
//! entries of connections gone are swept when the list has doubled since
//! the last sweep, and by each reload. A connection admitted with a JWT is not added: it
//! ends when its token expires.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::outbox::{Closing, Outbox};
use crate::auth::{Token, TokenDigest, sorted_digests};
use crate::close::CloseReason;
use crate::frame::Frame;

/// Below this many entries the list is not swept.
const SWEEP_FLOOR: usize = 64;

/// The connections open on bearer tokens, and the tokens taken now.
#[derive(Debug)]
pub(crate) struct TokenHolders {
    holders: Mutex<Holders>,
}

#[derive(Debug)]
struct Holders {
    /// The digests of the tokens taken, sorted.
    taken: Vec<TokenDigest>,
    /// Each connection added, with its token's digest.
    open: Vec<(TokenDigest, Weak<Outbox>)>,
    /// How many entries the last sweep left.
    swept_to: usize,
}

impl TokenHolders {
    /// Holders of `tokens`, the tokens the server starts with.
    pub(crate) fn new(tokens: &[Token]) -> Self {
        let holders = Holders { taken: sorted_digests(tokens), open: Vec::new(), swept_to: 0 };
        TokenHolders { holders: Mutex::new(holders) }
    }

    /// Adds the connection of `outbox`, admitted with the token of `digest`.
    /// If the token was taken away since it was checked, the connection is
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

    /// From now on only `tokens` are taken (`None`: the tokens taken stay
    /// as they are): the connections opened with any other are closed,
    /// 1008, ahead of what is queued for them. Returns how many. `install`
    /// gives the gate the new credentials under this list's lock, after it
    /// has taken the tokens: an upgrade the gate lets in with a new token
    /// finds it taken here, and two reloads at once cannot leave the gate
    /// with one's tokens and this list with the other's.
    pub(crate) fn take_only(&self, tokens: Option<&[Token]>, install: impl FnOnce()) -> usize {
        let mut revoked = Vec::new();
        {
            let mut holders = self.lock();
            if let Some(tokens) = tokens {
                let Holders { taken, open, swept_to } = &mut *holders;
                *taken = sorted_digests(tokens);
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
    use crate::connection::{Recorded, recorded};
    use crate::metrics::Metrics;

    fn open(id: u64) -> Recorded {
        recorded(id, b"HTTP/1.1 101\r\n\r\n", 1 << 20, Arc::new(Metrics::default()))
    }

    fn digest_of(secret: &str) -> TokenDigest {
        sorted_digests(&[Token::new(secret)])[0]
    }

    fn revoked(r: &Recorded) -> bool {
        r.outbox.closed_with() == Some(Frame::close(Some(CloseReason::CredentialsRevoked.frame())))
    }

    #[test]
    fn a_reload_closes_the_connections_of_a_token_taken_away_and_only_those() {
        let holders = TokenHolders::new(&[Token::new("kept"), Token::named("old", "dropped")]);
        let (kept, dropped) = (open(1), open(2));
        holders.add(digest_of("kept"), &kept.outbox);
        holders.add(digest_of("dropped"), &dropped.outbox);
        assert!(!revoked(&kept) && !revoked(&dropped));

        let renamed = [Token::named("renamed", "kept"), Token::new("new")];
        assert_eq!(holders.take_only(Some(&renamed), || {}), 1);
        assert!(revoked(&dropped) && !revoked(&kept), "a renamed token is the same token");
        assert_eq!(holders.take_only(Some(&renamed), || {}), 0, "closed once");
    }

    #[test]
    fn an_upgrade_checked_before_a_reload_that_took_its_token_is_closed_when_added() {
        let holders = TokenHolders::new(&[Token::new("old")]);
        holders.take_only(Some(&[Token::new("new")]), || {});
        let late = open(1);
        assert!(!holders.add(digest_of("old"), &late.outbox));
        assert!(revoked(&late));
        let new = open(2);
        assert!(holders.add(digest_of("new"), &new.outbox));
        assert!(!revoked(&new));
    }

    #[test]
    fn entries_of_connections_gone_are_swept() {
        let holders = TokenHolders::new(&[Token::new("t")]);
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
