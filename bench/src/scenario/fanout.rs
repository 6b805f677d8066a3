//! `fanout`: N subscribers and one publisher in one room; deliveries/s and publish-to-delivery latency.
//!
//! The publisher is a connection of its own in the room (it receives its own
//! messages too, and ignores them). Nothing is published until every
//! subscriber is known to be in the room: the publisher sends markers, and a
//! subscriber that has seen one is joined, because a room delivers each
//! sender's messages in order.
//!
//! With `--publish-to`, the publisher connects to another server than the
//! subscribers: two nodes sharing rooms through a backplane, so that the
//! latency measured is that of a message crossing from one node to the
//! other. The markers cross the same way, so publishing still waits until
//! the subscribers' node receives the publisher's messages.
//!
//! Publishing is bounded by a window: a message may go out only while fewer
//! than `window` messages are published but not yet received by every
//! subscriber still connected. Without it, "as fast as possible" measures
//! how fast the server's queues fill up and how it sheds load, not how fast
//! it delivers; with it, every server's per-client queue stays far below its
//! limit (switchboard closes a client past 4 MiB queued, the two references
//! at 4096 messages), so the figure is delivery throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Client, Ending};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::event_loop::{Clients, Context, Driver, Finished};
use crate::latency::Latency;
use crate::payload::{Kind, Payload};
use crate::progress::Progress;
use crate::report::{Connections, Report, Throughput};
use crate::run::{Phase, Run, Shared};
use crate::scenario::{CLOSE_TIMEOUT, LoadSettings, Merged, deal, start_loops};
use crate::sequence::{Arrival, SequenceCounts, SequenceTracker};
use crate::target::Target;

/// How often the publisher sends a marker while subscribers join.
const MARKER_EVERY: Duration = Duration::from_millis(50);
/// How soon a publisher held back by the window looks again, when the
/// subscribers' progress is made on other threads and cannot wake it.
const WINDOW_RECHECK: Duration = Duration::from_millis(1);
/// The publisher's stream number (there is one publisher).
const PUBLISHER: u32 = 0;

/// How fast the publisher publishes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the window allows.
    Flat,
    /// This many messages per second, on a fixed schedule.
    Rate(f64),
}

/// What `fanout` is told.
#[derive(Debug, Clone)]
pub struct FanoutSettings {
    /// Subscribers (the publisher is one more connection).
    pub subscribers: usize,
    /// Bytes per message.
    pub size: usize,
    /// The room's path.
    pub path: String,
    /// How fast to publish.
    pub pace: Pace,
    /// Messages published but not yet delivered to every subscriber, at most.
    pub window: u64,
    /// The most messages published in all.
    pub max_messages: u64,
    /// The server the publisher connects to, if not the subscribers' one.
    pub publish_to: Option<Target>,
}

/// What the publisher and the subscribers, on any thread, share.
#[derive(Debug)]
struct Room {
    /// Per subscriber: one more than the highest number it has received, or
    /// `u64::MAX` once it is gone (so the window does not wait for it).
    progress: Vec<AtomicU64>,
    /// Subscribers that have seen a marker.
    joined: AtomicU64,
    /// Messages published.
    published: AtomicU64,
    /// Set if the publisher's connection ended.
    publisher_gone: AtomicBool,
}

impl Room {
    /// How far the slowest subscriber still connected has got.
    fn floor(&self) -> u64 {
        self.progress.iter().map(|p| p.load(Ordering::Relaxed)).min().unwrap_or(u64::MAX)
    }

    /// Returns true if and only if every subscriber still connected has
    /// received the last message published.
    fn drained(&self) -> bool {
        self.floor() >= self.published.load(Ordering::Relaxed)
    }
}

/// Runs the scenario.
///
/// # Errors
///
/// [`Error::Setup`] if the subscribers do not all join in time; thread and
/// poller failures.
pub fn run(load: &LoadSettings, fanout: &FanoutSettings) -> Result<Report> {
    let clock = Clock::start();
    let shared = Shared::new();
    let default_case = match fanout.pace {
        Pace::Flat => "fanout-max".to_owned(),
        Pace::Rate(rate) => format!("fanout-{rate}/s"),
    };
    let title = load.title(load.case.as_deref().unwrap_or(&default_case));
    let mut run = Run::new(shared.clone(), Progress::new(title, "published", "delivered"));
    let room = Arc::new(Room {
        progress: (0..fanout.subscribers).map(|_| AtomicU64::new(0)).collect(),
        joined: AtomicU64::new(0),
        published: AtomicU64::new(0),
        publisher_gone: AtomicBool::new(false),
    });
    let plans = deal(fanout.subscribers, load.threads)
        .into_iter()
        .enumerate()
        .map(|(i, subscribers)| {
            // The publisher is the first connection of the first loop.
            let publisher = i == 0;
            let mut dials = load.dials(&fanout.path, &subscribers);
            if publisher {
                // Numbered after the subscribers, whose numbers are their ids.
                let target = fanout.publish_to.unwrap_or(load.target);
                dials.insert(0, load.dial(target, &fanout.path, fanout.subscribers));
            }
            (dials, FanoutDriver::new(publisher, &subscribers, fanout, Arc::clone(&room)))
        })
        .collect();
    start_loops(&mut run, "fanout", load, plans, &shared, clock)?;

    let wanted = fanout.subscribers as u64;
    run.enter(Phase::Setup);
    let joined = || room.joined.load(Ordering::Relaxed);
    run.wait_until(load.setup_timeout, |r| joined() >= wanted || r.failed > 0);
    if joined() < wanted {
        return Err(Error::Setup {
            what: "subscribers joined",
            done: joined(),
            wanted,
            waited: load.setup_timeout,
        });
    }
    let opened = run.reading().opened;
    let measured = run.measure(load.duration, load.server_pid, |r| {
        r.sent >= fanout.max_messages || room.publisher_gone.load(Ordering::Relaxed)
    });
    run.wait_until(load.drain, |_| room.drained());
    run.enter(Phase::Close);
    run.wait_until(CLOSE_TIMEOUT, |r| r.open() == 0);
    let finished = run.finish()?;

    let published = room.published.load(Ordering::Relaxed);
    let merged = Merged::from(&finished);
    let mut latency = Latency::new();
    let mut messages = SequenceCounts::default();
    let mut in_measure = 0;
    let mut held_back = 0;
    for Finished { driver, .. } in &finished {
        latency.merge(&driver.latency);
        in_measure += driver.received_in_measure;
        held_back += driver.publisher.as_ref().map_or(0, |p| p.held_back);
        for role in &driver.roles {
            if let Role::Subscriber { tracker, .. } = role {
                messages += tracker.counts(published);
            }
        }
    }

    let pace = match fanout.pace {
        Pace::Flat => "as fast as possible".to_owned(),
        Pace::Rate(rate) => format!("{rate} messages/s"),
    };
    let publisher_on = match fanout.publish_to {
        Some(target) => format!(" (the publisher on {target}, the subscribers on {})", load.target),
        None => String::new(),
    };
    let description = format!(
        "{} subscribers and 1 publisher on {}{publisher_on}, {}-byte messages, published {pace}, window {}",
        fanout.subscribers, fanout.path, fanout.size, fanout.window
    );
    let mut report = load.report("fanout", default_case, &fanout.path, description);
    let seconds = measured.seconds;
    report.measured_s = seconds;
    report.cpu = measured.cpu;
    report.connections = Connections { wanted: wanted + 1, opened, upgrade: merged.upgrades.summary() };
    report.throughput = Throughput::over(in_measure, &measured, "deliveries");
    report.paced = matches!(fanout.pace, Pace::Rate(_));
    report.latency_of = match fanout.pace {
        Pace::Flat => "publish to delivery".to_owned(),
        Pace::Rate(_) => "scheduled publish to delivery".to_owned(),
    };
    report.latency = latency.summary();
    report.messages = messages;
    report.endings = merged.endings;
    report.details.insert("published".to_owned(), published as f64);
    report.details.insert("published_per_s".to_owned(), published as f64 / seconds);
    report.details.insert("window_full".to_owned(), held_back as f64);
    Ok(report)
}

/// A connection's part in the room.
#[derive(Debug)]
enum Role {
    Publisher,
    Subscriber { id: usize, joined: bool, tracker: SequenceTracker },
}

/// The publisher's state.
#[derive(Debug)]
struct Publisher {
    slot: usize,
    next_seq: u64,
    /// The slowest subscriber's progress when last looked at.
    floor: u64,
    markers: u64,
    next_marker: Option<Instant>,
    /// When the next message is due (rate pace).
    due: Option<Instant>,
    /// Rounds in which the window held a message back.
    held_back: u64,
}

/// The fanout scenario's side of one event loop.
#[derive(Debug)]
struct FanoutDriver {
    roles: Vec<Role>,
    publisher: Option<Publisher>,
    room: Arc<Room>,
    size: usize,
    pace: Pace,
    window: u64,
    max_messages: u64,
    latency: Latency,
    received_in_measure: u64,
}

impl FanoutDriver {
    fn new(publisher: bool, subscribers: &[usize], settings: &FanoutSettings, room: Arc<Room>) -> Self {
        let mut roles = Vec::with_capacity(subscribers.len() + 1);
        if publisher {
            roles.push(Role::Publisher);
        }
        roles.extend(subscribers.iter().map(|&id| Role::Subscriber {
            id,
            joined: false,
            tracker: SequenceTracker::new(),
        }));
        let publisher = publisher.then_some(Publisher {
            slot: 0,
            next_seq: 0,
            floor: 0,
            markers: 0,
            next_marker: None,
            due: None,
            held_back: 0,
        });
        FanoutDriver {
            roles,
            publisher,
            room,
            size: settings.size,
            pace: settings.pace,
            window: settings.window,
            max_messages: settings.max_messages,
            latency: Latency::new(),
            received_in_measure: 0,
        }
    }

    /// Returns true if and only if the window lets message `seq` go out,
    /// looking at the subscribers' progress again if the last look said no.
    fn window_open(&self, publisher: &mut Publisher) -> bool {
        if publisher.next_seq < publisher.floor.saturating_add(self.window) {
            return true;
        }
        publisher.floor = self.room.floor();
        publisher.next_seq < publisher.floor.saturating_add(self.window)
    }

    /// Publishes what the pace and the window allow; returns when to look again.
    fn publish(&self, publisher: &mut Publisher, client: &mut Client, cx: &mut Context) -> Option<Instant> {
        let mut burst = 0;
        let mut wake = None;
        while publisher.next_seq < self.max_messages {
            let due = match self.pace {
                Pace::Flat => {
                    // One window per round at most, so the loop gets back to reading.
                    if burst == self.window {
                        wake = Some(cx.now);
                        break;
                    }
                    None
                }
                Pace::Rate(_) => {
                    let due = *publisher.due.get_or_insert(cx.now);
                    if due > Instant::now() {
                        wake = Some(due);
                        break;
                    }
                    Some(due)
                }
            };
            if !self.window_open(publisher) {
                publisher.held_back += 1;
                wake = Some(cx.now + WINDOW_RECHECK);
                break;
            }
            let sent = match (due, self.pace) {
                (Some(due), Pace::Rate(rate)) => {
                    publisher.due = Some(due + Duration::from_secs_f64(1.0 / rate));
                    // Timed from when it was due, not when it went out, so a
                    // server that holds the publisher back is not excused by it.
                    cx.clock.at(due)
                }
                _ => cx.clock.now(),
            };
            // Counted before it can leave: a subscriber on another thread
            // takes a number at or above `published` for a damaged one.
            self.room.published.store(publisher.next_seq + 1, Ordering::Release);
            client.queue(Payload::data(PUBLISHER, publisher.next_seq, sent).encode(self.size));
            publisher.next_seq += 1;
            burst += 1;
        }
        if burst > 0 {
            client.flush();
            cx.tally.sent += burst;
        }
        wake
    }
}

impl Driver for FanoutDriver {
    fn on_open(&mut self, _slot: usize, _client: &mut Client, _cx: &mut Context) {}

    fn on_message(&mut self, slot: usize, _client: &mut Client, message: &[u8], cx: &mut Context) {
        let Role::Subscriber { id, joined, tracker } = &mut self.roles[slot] else {
            // The publisher's copies of its own messages.
            return;
        };
        let Some(payload) = Payload::decode(message).filter(|p| p.stream == PUBLISHER) else {
            tracker.record_corrupt();
            return;
        };
        match payload.kind {
            Kind::Marker => {
                if !*joined {
                    *joined = true;
                    self.room.joined.fetch_add(1, Ordering::Relaxed);
                }
            }
            Kind::Data => match tracker.record(payload.seq, self.room.published.load(Ordering::Acquire)) {
                Arrival::InOrder | Arrival::Late => {
                    if cx.delivered(payload.sent, &mut self.latency) {
                        self.received_in_measure += 1;
                    }
                    self.room.progress[*id].store(tracker.next(), Ordering::Relaxed);
                }
                Arrival::Duplicate | Arrival::Implausible => {}
            },
        }
    }

    fn on_end(&mut self, slot: usize, _ending: &Ending, _cx: &mut Context) {
        match &self.roles[slot] {
            Role::Publisher => self.room.publisher_gone.store(true, Ordering::Relaxed),
            Role::Subscriber { id, .. } => self.room.progress[*id].store(u64::MAX, Ordering::Relaxed),
        }
    }

    fn on_tick(&mut self, clients: &mut Clients<'_>, cx: &mut Context) -> Option<Instant> {
        let mut publisher = self.publisher.take()?;
        let wake = match clients.open(publisher.slot) {
            None => None,
            Some(client) => match cx.phase {
                Phase::Setup => {
                    let due = *publisher.next_marker.get_or_insert(cx.now);
                    if cx.now >= due {
                        let marker = Payload {
                            kind: Kind::Marker,
                            stream: PUBLISHER,
                            seq: publisher.markers,
                            sent: 0,
                        };
                        client.send(marker.encode(self.size));
                        publisher.markers += 1;
                        publisher.next_marker = Some(cx.now + MARKER_EVERY);
                    }
                    publisher.next_marker
                }
                Phase::Measure => self.publish(&mut publisher, client, cx),
                Phase::Drain | Phase::Close | Phase::Stop => None,
            },
        };
        self.publisher = Some(publisher);
        wake
    }
}
