//! The server's threads, scheduled as batch work.
//!
//! Under Linux's default policy a thread that wakes, say a connection
//! thread whose client has just sent a frame, takes the core from the
//! thread running there, which is itself most often a connection thread
//! about to finish its own frame and sleep. Every such preemption is two
//! switches where one would do, and on a machine whose cores are busy,
//! an interrupt to the core to make it. `SCHED_BATCH` is the same fair
//! share of the machine, without the preemption on wake-up: the woken
//! thread runs when the running one sleeps, which in this server is soon.
//! Measured on churn with the server on one core (`scripts/bench.sh`
//! shape, three runs each): 13% more handshakes per second of server CPU,
//! and preemptions of the accept loop down from 0.7 per handshake to none.
//!
//! The price is latency when the server shares its cores with other busy
//! processes: a woken thread waits for the running one's turn to end
//! rather than taking the core, so `--scheduling inherit` leaves the
//! threads under the policy the server was started with.
//!
//! Threads inherit their creator's policy, so this is set once, before the
//! server starts any. A policy the operator chose (`chrt`) is kept.

use clap::ValueEnum;
use log::{debug, warn};

/// How the server's threads are scheduled (`--scheduling`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Scheduling {
    /// `SCHED_BATCH`, unless the server was started under a policy other
    /// than the default.
    #[default]
    Batch,
    /// The policy the server was started with.
    Inherit,
}

/// Applies `scheduling` to the calling thread, and so to every thread it
/// starts from now on.
pub fn apply(scheduling: Scheduling) {
    if scheduling == Scheduling::Batch {
        batch();
    }
}

/// Puts the calling thread under `SCHED_BATCH`, unless it runs under a
/// policy other than the default.
#[allow(unsafe_code)]
fn batch() {
    // SAFETY: both calls take the calling thread (0) and, for the second, a
    // parameter that outlives the call; neither touches memory of ours
    // otherwise.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy != libc::SCHED_OTHER {
        debug!("scheduling policy {policy} kept, as set at start");
        return;
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: as above.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const param) } != 0 {
        warn!("cannot schedule the server's threads as batch work: {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn policy() -> libc::c_int {
        // SAFETY: as in `batch`.
        unsafe { libc::sched_getscheduler(0) }
    }

    /// Puts the calling thread under `policy`, which must need no
    /// privilege, whatever the tests run under.
    #[allow(unsafe_code)]
    fn set(policy: libc::c_int) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: as in `batch`.
        assert_eq!(unsafe { libc::sched_setscheduler(0, policy, &raw const param) }, 0);
    }

    /// The policy of a thread started by one that began under `start` and
    /// applied `scheduling`.
    fn started_after(start: libc::c_int, scheduling: Scheduling) -> libc::c_int {
        std::thread::spawn(move || {
            set(start);
            apply(scheduling);
            std::thread::spawn(policy).join().unwrap()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_thread_started_after_inherits_batch() {
        assert_eq!(started_after(libc::SCHED_OTHER, Scheduling::Batch), libc::SCHED_BATCH);
    }

    #[test]
    fn inherit_leaves_the_policy_alone() {
        assert_eq!(started_after(libc::SCHED_OTHER, Scheduling::Inherit), libc::SCHED_OTHER);
    }

    #[test]
    fn a_chosen_policy_is_kept() {
        assert_eq!(started_after(libc::SCHED_IDLE, Scheduling::Batch), libc::SCHED_IDLE);
    }
}
