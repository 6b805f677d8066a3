//! How the connections of a run ended, counted by kind; the server's close codes among them.
//!
//! A server that closes clients under load says why in its close code
//! (switchboard: 1008 for a slow consumer), so those are kept per code.

use std::collections::BTreeMap;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use crate::client::{Ending, Side};

/// Counts of connection endings. Everything but `closed_by_client` is trouble.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endings {
    /// The tool closed and the server answered: the normal end.
    pub closed_by_client: u64,
    /// The server sent a close frame on its own, counted by close code.
    pub closed_by_server: BTreeMap<u16, u64>,
    /// TCP connect failed.
    pub connect_failed: u64,
    /// The server refused or broke off the upgrade.
    pub upgrade_failed: u64,
    /// Connect and upgrade did not finish within the setup timeout.
    pub timed_out: u64,
    /// Ended without a close handshake (reset, end of stream, protocol error).
    pub dropped: u64,
    /// Still closing when the run ended.
    pub abandoned: u64,
}

impl Endings {
    /// Counts one ending.
    pub fn record(&mut self, ending: &Ending) {
        match ending {
            Ending::Closed { by: Side::Client, .. } => self.closed_by_client += 1,
            Ending::Closed { by: Side::Server, code } => {
                *self.closed_by_server.entry(code.unwrap_or(1005)).or_default() += 1;
            }
            Ending::ConnectFailed(_) => self.connect_failed += 1,
            Ending::UpgradeFailed(_) => self.upgrade_failed += 1,
            Ending::TimedOut => self.timed_out += 1,
            Ending::Dropped(_) => self.dropped += 1,
            Ending::Abandoned => self.abandoned += 1,
        }
    }

    /// Every ending the tool did not ask for.
    pub fn troubles(&self) -> u64 {
        self.closed_by_server.values().sum::<u64>()
            + self.connect_failed
            + self.upgrade_failed
            + self.timed_out
            + self.dropped
            + self.abandoned
    }

    /// One line, naming only what happened: `closed by server 1008×3, dropped 1`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.closed_by_server.is_empty() {
            let codes: Vec<String> =
                self.closed_by_server.iter().map(|(code, n)| format!("{code}×{n}")).collect();
            parts.push(format!("closed by server {}", codes.join(" ")));
        }
        for (name, n) in [
            ("connect failed", self.connect_failed),
            ("upgrade failed", self.upgrade_failed),
            ("timed out", self.timed_out),
            ("dropped", self.dropped),
            ("abandoned while closing", self.abandoned),
        ] {
            if n > 0 {
                parts.push(format!("{name} {n}"));
            }
        }
        if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
    }
}

impl AddAssign<&Endings> for Endings {
    fn add_assign(&mut self, other: &Endings) {
        self.closed_by_client += other.closed_by_client;
        for (code, n) in &other.closed_by_server {
            *self.closed_by_server.entry(*code).or_default() += n;
        }
        self.connect_failed += other.connect_failed;
        self.upgrade_failed += other.upgrade_failed;
        self.timed_out += other.timed_out;
        self.dropped += other.dropped;
        self.abandoned += other.abandoned;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_closes_are_counted_by_code() {
        let mut endings = Endings::default();
        endings.record(&Ending::Closed { by: Side::Server, code: Some(1008) });
        endings.record(&Ending::Closed { by: Side::Server, code: Some(1008) });
        endings.record(&Ending::Closed { by: Side::Server, code: None });
        endings.record(&Ending::Closed { by: Side::Client, code: None });
        assert_eq!(endings.closed_by_server, BTreeMap::from([(1005, 1), (1008, 2)]));
        assert_eq!(endings.troubles(), 3);
        assert_eq!(endings.describe(), "closed by server 1005×1 1008×2");
    }

    #[test]
    fn a_clean_run_has_no_troubles() {
        let mut endings = Endings::default();
        endings.record(&Ending::Closed { by: Side::Client, code: None });
        assert_eq!((endings.troubles(), endings.describe().as_str()), (0, "none"));
    }

    #[test]
    fn totals_add_up() {
        let mut a = Endings::default();
        a.record(&Ending::TimedOut);
        let mut b = Endings::default();
        b.record(&Ending::TimedOut);
        b.record(&Ending::Closed { by: Side::Server, code: Some(1001) });
        a += &b;
        assert_eq!((a.timed_out, a.troubles()), (2, 3));
    }
}
