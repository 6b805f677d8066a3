//! Another node with this node's id, noticed by its greeting.
//!
//! A node drops the messages that come back from Redis with its own id: its
//! clients had them from the hub already. Two nodes given the same
//! `--node-id` therefore drop each other's, and their clients never see
//! them. So nodes greet each other on the channel that is the prefix alone
//! (no room's: a room's name is never empty), with their id and a number
//! drawn at their start; a greeting or an answer with this node's id and
//! another number is another node using the id, logged as an error.
//!
//! Each time its subscriber has subscribed to that channel (at the start,
//! and after every reconnect), a node greets the others, through its
//! publisher: once it listens, so that it hears what comes back. A node
//! that hears a greeting with its own id and another number answers it,
//! once: both the node already running and the newcomer learn of each
//! other within a round trip or two. Only those greetings are answered,
//! and an answer never is: a greeting costs at most one answer from each
//! node that has its id, and nodes with ids of their own exchange nothing
//! but their greetings. The publisher sends what is owed as soon as it
//! can; several greetings heard meanwhile take one answer, and a greeting
//! owed makes an answer needless.
//!
//! A greeting is written as it always was, `SBn`, the number and the id;
//! an answer is the same with `SBa`, which a node that predates answers
//! ignores, as it ignores everything on the channel but greetings. Such a
//! node neither answers nor hears answers: when one of two nodes with one
//! id is such a node, whichever started first learns of the other at once,
//! as before, and the other only when the first greets again, after it
//! reconnects to Redis.
//!
//! Both are best-effort: a Redis user allowed the rooms' channels but not
//! that one still relays rooms, without this check.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded};
use log::error;

/// What a greeting starts with: `SB` as an envelope, then its kind.
const GREETING: &[u8; 3] = b"SBn";
/// What an answer to a greeting starts with.
const ANSWER: &[u8; 3] = b"SBa";

/// What this node owes the others, for its publisher to send. A greeting
/// counts for more: it tells a namesake all that an answer would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Owed {
    Answer = 1,
    Greeting = 2,
}

/// Nothing owed.
const NOTHING: u8 = 0;

impl Owed {
    fn from_u8(owed: u8) -> Option<Owed> {
        match owed {
            1 => Some(Owed::Answer),
            2 => Some(Owed::Greeting),
            _ => None,
        }
    }
}

/// This node's id and its number; see the module docs.
#[derive(Debug)]
pub(crate) struct Namesake {
    node_id: Arc<[u8]>,
    instance: u64,
    /// The log has said so.
    told: AtomicBool,
    /// The log has said that Redis refused this node's greeting.
    told_refused: AtomicBool,
    /// An [`Owed`], or [`NOTHING`].
    owed: AtomicU8,
    /// Rung once something is owed; the publisher waits on `rung` with its
    /// queue. One ring waits at most: more would say nothing new.
    bell: Sender<()>,
    rung: Receiver<()>,
}

impl Namesake {
    pub(crate) fn new(node_id: Arc<[u8]>) -> Self {
        // Keyed afresh by std for each RandomState: two processes started
        // together draw different numbers.
        let instance = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let (bell, rung) = bounded(1);
        Namesake {
            node_id,
            instance,
            told: AtomicBool::new(false),
            told_refused: AtomicBool::new(false),
            owed: AtomicU8::new(NOTHING),
            bell,
            rung,
        }
    }

    /// What this node publishes to pay `owed`.
    pub(crate) fn message(&self, owed: Owed) -> Vec<u8> {
        let kind = match owed {
            Owed::Greeting => GREETING,
            Owed::Answer => ANSWER,
        };
        [&kind[..], &self.instance.to_be_bytes(), &self.node_id].concat()
    }

    /// Whether a refused greeting is news for the log: true the first time
    /// only.
    pub(crate) fn first_refusal(&self) -> bool {
        !self.told_refused.swap(true, Ordering::AcqRel)
    }

    /// The subscriber listens for greetings (or was refused that channel,
    /// and others may hear this node all the same): greet the others.
    pub(crate) fn listening(&self) {
        self.owe(Owed::Greeting);
    }

    /// Owes `owed`, unless something that counts as much is owed already,
    /// and rings for the publisher. Also how a publisher that could not
    /// send what it took gives it back.
    pub(crate) fn owe(&self, owed: Owed) {
        self.owed.fetch_max(owed as u8, Ordering::AcqRel);
        let _ = self.bell.try_send(());
    }

    /// What is owed, now the publisher's to send; nothing is owed after.
    pub(crate) fn take_owed(&self) -> Option<Owed> {
        Owed::from_u8(self.owed.swap(NOTHING, Ordering::AcqRel))
    }

    /// Rung when something may be owed.
    pub(crate) fn rung(&self) -> &Receiver<()> {
        &self.rung
    }

    /// A greeting or an answer heard: logs, once, if another node has this
    /// node's id, and owes that node an answer if it greeted. What is
    /// neither is ignored.
    pub(crate) fn heard(&self, payload: &[u8]) {
        let (greeted, rest) = match (payload.strip_prefix(GREETING), payload.strip_prefix(ANSWER)) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return,
        };
        let Some((instance, node_id)) = rest.split_first_chunk::<8>() else { return };
        if node_id != &*self.node_id || u64::from_be_bytes(*instance) == self.instance {
            return;
        }
        if greeted {
            self.owe(Owed::Answer);
        }
        if !self.told.swap(true, Ordering::Relaxed) {
            error!(
                "backplane: another node uses this node's id {:?}: each drops the other's room \
                 messages as its own, so their clients do not see them; give every node an id of \
                 its own (--node-id)",
                String::from_utf8_lossy(node_id)
            );
        }
    }

    /// Whether another node with this id has been heard.
    #[cfg(test)]
    fn noticed(&self) -> bool {
        self.told.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> Namesake {
        Namesake::new(id.as_bytes().into())
    }

    #[test]
    fn only_another_node_with_this_id_is_a_namesake() {
        let node = node("a");
        node.heard(&node.message(Owed::Greeting));
        node.heard(&node.message(Owed::Answer));
        assert!(!node.noticed(), "its own greeting and answer");
        node.heard(&self::node("b").message(Owed::Greeting));
        node.heard(&self::node("b").message(Owed::Answer));
        node.heard(b"SBn");
        node.heard(b"SBa");
        node.heard(b"not a greeting at all, with an a");
        assert!(!node.noticed());
        assert_eq!(node.take_owed(), None, "nothing to answer");
        node.heard(&self::node("a").message(Owed::Greeting));
        assert!(node.noticed(), "another instance with its id");
    }

    #[test]
    fn an_answer_tells_of_a_namesake_too() {
        let node = node("a");
        node.heard(&self::node("a").message(Owed::Answer));
        assert!(node.noticed());
    }

    #[test]
    fn a_namesakes_greeting_is_answered_and_an_answer_never_is() {
        let (running, newcomer) = (node("twin"), node("twin"));
        newcomer.listening();
        let greeting = newcomer.message(newcomer.take_owed().unwrap());
        assert!(greeting.starts_with(GREETING));
        running.heard(&greeting);
        assert_eq!(running.take_owed(), Some(Owed::Answer));
        assert!(running.rung().try_recv().is_ok(), "the publisher is woken");
        let answer = running.message(Owed::Answer);
        newcomer.heard(&answer);
        assert!(newcomer.noticed(), "the newcomer hears of the node running");
        assert_eq!(newcomer.take_owed(), None, "an answer is not answered");
        // However often it comes, and from however many namesakes.
        newcomer.heard(&answer);
        newcomer.heard(&node("twin").message(Owed::Answer));
        assert_eq!(newcomer.take_owed(), None);
        // Nor is a greeting from a node with an id of its own.
        running.heard(&node("other").message(Owed::Greeting));
        assert_eq!(running.take_owed(), None);
    }

    #[test]
    fn what_is_owed_is_sent_once_and_a_greeting_stands_for_an_answer() {
        let (node, twin) = (node("twin"), node("twin"));
        for _ in 0..3 {
            node.heard(&twin.message(Owed::Greeting));
        }
        assert_eq!(node.take_owed(), Some(Owed::Answer), "three greetings, one answer");
        assert_eq!(node.take_owed(), None);
        node.listening();
        node.heard(&twin.message(Owed::Greeting));
        assert_eq!(node.take_owed(), Some(Owed::Greeting));
        assert_eq!(node.take_owed(), None);
        // Given back when it could not be sent.
        node.owe(Owed::Answer);
        assert_eq!(node.take_owed(), Some(Owed::Answer));
    }

    #[test]
    fn an_answer_is_nothing_an_older_node_reads_as_a_greeting() {
        // Such a node takes only what starts with the greeting's kind.
        let node = node("a");
        let (greeting, answer) = (node.message(Owed::Greeting), node.message(Owed::Answer));
        assert!(!answer.starts_with(GREETING));
        assert_eq!(greeting[GREETING.len()..], answer[ANSWER.len()..], "the same number and id");
    }
}
