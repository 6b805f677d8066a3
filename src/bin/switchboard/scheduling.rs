//! How the server's threads are scheduled: under the policy it was started
//! with, or, for a core the server has to itself, as batch work.
//!
//! Under Linux's default policy a thread that wakes, say a connection
//! thread whose client has just sent a frame, takes the core from the
//! thread running there, which is itself most often a connection thread
//! about to finish its own frame and sleep. Every such preemption is two
//! switches where one would do. `SCHED_BATCH` does without the preemption
//! on wake-up: the woken thread runs when the running one sleeps, which in
//! this server is soon. On a core of its own that is worth having: on
//! churn, 10% more handshakes per second of server CPU, and preemptions of
//! the accept loop down from 0.7 per handshake to none.
//!
//! It is not the default, because a core is seldom the server's alone.
//! Beside one other busy process, even one at nice 19, a batch thread
//! woken by its client waits out that process's turn instead of taking the
//! core: churn on one core fell from 13,600 handshakes a second to 1,900,
//! and a whole connect-to-close cycle went from 0.55 to 4.0 ms (p50),
//! where under the default policy it held 10,700 (`scripts/contended.sh`).
//! A server must not be knocked over by a backup job, so batch is for an
//! operator who knows the core is free.
//!
//! Threads inherit their creator's policy, so this is set once, before the
//! server starts any. A policy the operator chose (`chrt`) is kept.

use clap::ValueEnum;
use log::{debug, warn};

/// How the server's threads are scheduled (`--scheduling`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Scheduling {
    /// The policy the server was started with.
    #[default]
    Inherit,
    /// `SCHED_BATCH`, unless the server was started under a policy other
    /// than the default.
    Batch,
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
    fn by_default_the_policy_is_left_alone() {
        assert_eq!(started_after(libc::SCHED_OTHER, Scheduling::default()), libc::SCHED_OTHER);
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
