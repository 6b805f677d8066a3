//! Admission: the global and per-address connection limits, checked in the
//! accept loop before any thread is spent on a peer.
//!
//! The global count is an atomic. Per-address counts are a map from each
//! client with connections open to their number, under a lock held only to
//! add or take one (the accept loop, and a connection thread as its
//! [`Permit`] is dropped); a client's entry goes with its last connection,
//! so the map holds no more entries than there are connections. Counts are
//! exact: a table of hashed slots, shared by the addresses that land in
//! one, refused some clients that had no connection at all (15 of 1,500
//! new addresses with a limit of 1).

use std::collections::{HashMap, VecDeque};
use std::io::{IoSlice, Read};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use log::Level;

use crate::error::Refusal;
use crate::http::Response;
use crate::hub::REGISTRATIONS_WAKE;
use crate::refusal_log::RefusalLog;
use crate::stream::{Sink, Then};

/// The connection limits and the counts against them.
#[derive(Debug)]
pub(crate) struct Admission {
    open: AtomicUsize,
    /// Each client with connections open ([`client_key`]), and how many.
    /// `HashMap`'s keys are hashed with a key chosen at random, so that
    /// clients cannot pick addresses that collide.
    per_address: Mutex<HashMap<u128, usize>>,
    max: usize,
    max_per_address: usize,
}

/// A connection's place within the limits; dropping it gives the place back,
/// however the connection ends.
#[derive(Debug)]
pub(crate) struct Permit {
    admission: Arc<Admission>,
    /// The client it is counted against, once known.
    client: Option<u128>,
}

impl Admission {
    /// `max_per_address` 0 means no per-address limit.
    pub(crate) fn new(max: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Admission { open: AtomicUsize::new(0), per_address: Mutex::default(), max, max_per_address })
    }

    /// Admits one more connection from `address` (`None` when the address
    /// is not known yet: a trusted proxy's client is counted once its
    /// forwarded address is read, with [`Permit::attribute`]).
    pub(crate) fn admit(self: &Arc<Self>, address: Option<IpAddr>) -> Result<Permit, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::new(503, "server at its connection limit"));
        }
        let mut permit = Permit { admission: self.clone(), client: None };
        if let Some(address) = address {
            permit.attribute(address)?;
        }
        Ok(permit)
    }

    /// Admits a connection that has taken the place of one shed from its
    /// handshake: past the global limit, since both are counted until the
    /// shed one has gone, which takes the moment its 408 needs. At most
    /// [`SHED_ROOM`] past it: newcomers coming faster than the shed ones go
    /// are refused 503.
    pub(crate) fn admit_in_place(self: &Arc<Self>, address: Option<IpAddr>) -> Result<Permit, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max.saturating_add(SHED_ROOM) {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::new(503, "server at its connection limit"));
        }
        let mut permit = Permit { admission: self.clone(), client: None };
        if let Some(address) = address {
            permit.attribute(address)?;
        }
        Ok(permit)
    }

    /// The number of connections admitted and not yet ended.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn per_address(&self) -> MutexGuard<'_, HashMap<u128, usize>> {
        // Nothing under this lock can panic.
        self.per_address.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The client an address stands for, as the per-address limits count it.
/// A dual-stack listener sees every IPv4 client as ::ffff:a.b.c.d, and all
/// of those share one /64: each counts as its IPv4 address. An IPv6 client
/// usually owns a whole /64: it counts as one client.
pub(crate) fn client_key(address: IpAddr) -> u128 {
    match address.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits() >> 64 | 1 << 127,
    }
}

impl Permit {
    /// Counts this connection against `address`'s limit.
    pub(crate) fn attribute(&mut self, address: IpAddr) -> Result<(), Refusal> {
        let admission = &self.admission;
        if admission.max_per_address == 0 || self.client.is_some() {
            return Ok(());
        }
        let client = client_key(address);
        let mut per_address = admission.per_address();
        let count = per_address.entry(client).or_default();
        if *count >= admission.max_per_address {
            return Err(Refusal::new(429, "too many connections from your address"));
        }
        *count += 1;
        self.client = Some(client);
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            let mut per_address = self.admission.per_address();
            if let Some(count) = per_address.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    per_address.remove(&client);
                }
            }
        }
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sockets refused at the door, answered from the accept loop itself and held
/// open for a moment before they are closed.
///
/// Closing a socket whose request the server has not read makes the kernel
/// send RST, and a client that receives RST may lose the answer it had not
/// read yet. So each refused socket gets its answer and a FIN at once, and is
/// closed only after `linger`, by which time the client has read the answer,
/// and with what the client sent read out first, so that a client that sent
/// its request and waits for the answer is not reset when the accept loop
/// lets it go early (at capacity, or as the server stops).
/// Holding is bounded by count as well as time; the accept loop sweeps the
/// expired ones as it goes, without a thread of its own.
///
/// On a TLS listener the client speaks TLS and cannot read an HTTP answer
/// before a handshake, which the accept loop does not spend on a client it
/// refuses: it is sent a TLS alert instead (`internal_error`: TLS has none
/// for "busy"), which its library reports as such, where plain text would
/// read as a garbled record.
///
/// A flood would fill the log with one line per refusal; instead the first
/// refusal is logged at once and the rest are summed up by status (503 at
/// the connection limit, 429 at the per-address limit), at most once every
/// ten seconds ([`RefusalLog`]).
#[derive(Debug)]
pub(crate) struct Turnaway {
    held: VecDeque<(Instant, TcpStream)>,
    linger: Duration,
    capacity: usize,
    /// The listener serves TLS.
    tls: bool,
    log: RefusalLog,
}

/// A fatal `internal_error` alert, as a plaintext record (RFC 8446 §6, in
/// the record version TLS 1.3 writes).
const TLS_REFUSAL: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 80];

impl Turnaway {
    pub(crate) fn new(linger: Duration, capacity: usize, tls: bool) -> Self {
        Turnaway {
            held: VecDeque::new(),
            linger,
            capacity,
            tls,
            log: RefusalLog::new(Level::Warn, module_path!(), "connection", " at the door"),
        }
    }

    /// Answers `refusal` on `stream` without blocking, and holds it.
    pub(crate) fn refuse(&mut self, stream: TcpStream, refusal: Refusal) {
        self.log.note(refusal.status);
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        // A fresh socket's send buffer always has room for one small answer,
        // which leaves with the FIN in one segment.
        let answer = if self.tls { TLS_REFUSAL.to_vec() } else { Response::from(refusal).to_bytes(false) };
        let _ = Sink::send(&stream, &[IoSlice::new(&answer)], Then::Fin);
        Sink::shutdown(&stream, Shutdown::Write);
        if self.held.len() >= self.capacity {
            if let Some(oldest) = self.held.pop_front() {
                let_go(oldest);
            }
        }
        self.held.push_back((Instant::now() + self.linger, stream));
    }

    /// Closes the sockets whose time is up, and reports refusals when due.
    pub(crate) fn sweep(&mut self) {
        let now = Instant::now();
        while self.held.front().is_some_and(|(until, _)| *until <= now) {
            let Some(expired) = self.held.pop_front() else { break };
            let_go(expired);
        }
        self.log.sweep();
    }

    /// Closes every socket still held, and reports what is left to report,
    /// as the accept loop ends.
    pub(crate) fn finish(self) {
        self.held.into_iter().for_each(let_go);
        self.log.finish();
    }
}

/// Closes a held socket, reading out first, without waiting, what its
/// client has sent: a request left unread would have the kernel reset the
/// connection. A few pages at most: a client still sending after its answer
/// and FIN has had its turn.
fn let_go((_, stream): (Instant, TcpStream)) {
    let mut scratch = [0u8; 4096];
    for _ in 0..16 {
        if !matches!((&stream).read(&mut scratch), Ok(1..)) {
            break;
        }
    }
}

/// The most connections let in past the limit while those they took the
/// place of finish their 408. Without a bound, a flood of newcomers that
/// the accept loop admits faster than the shed threads answer and end
/// would take the server past the limit by as many as it outran them, and
/// past the machine's limits, which keep room for this many (see
/// [`MAPPINGS_KEPT`]). Measured: of 100 half-open sockets sent at once at a
/// limit of 2, 29 came while 64 were past it, and were refused.
pub(crate) const SHED_ROOM: usize = 64;

/// What one WebSocket connection costs the machine: one thread, with a
/// stack, its guard page, a signal stack and its guard page (four memory
/// mappings), and one file descriptor.
const MAPPINGS_PER_CONNECTION: usize = 4;
const THREADS_PER_CONNECTION: usize = 1;
/// Kept back from each limit for everything else the process does: the
/// heap, the hub and drain threads, the listener, and the [`SHED_ROOM`]
/// connections past the limit (refused sockets held open are counted
/// apart).
const MAPPINGS_KEPT: usize = 1024;
const _: () = assert!(MAPPINGS_KEPT >= 2 * SHED_ROOM * MAPPINGS_PER_CONNECTION, "room for the shed room");
const FDS_KEPT: usize = 64 + SHED_ROOM;
const THREADS_KEPT: usize = 2048;
/// The most refused sockets held open at once while their answer reaches
/// the client; never more than an eighth of the open-file limit, as each
/// holds a descriptor.
const MAX_HELD_REFUSALS: usize = 1024;

/// The most connections this machine can hold, and the limit that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MachineLimit {
    pub(crate) connections: usize,
    pub(crate) because: String,
}

/// What the machine lets the server hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    /// The tightest limit on connections; `None` where /proc does not say.
    pub(crate) limit: Option<MachineLimit>,
    /// How many refused sockets may be held open at once.
    pub(crate) held_refusals: usize,
}

/// Reads the limits that decide how many threads and sockets the process
/// can have, on Linux, from /proc, keeping back what `spare_threads` parked
/// threads take (each thread's four mappings, and the thread itself).
///
/// Going past them is not a refused connection but a dead server: when a new
/// thread cannot map its signal stack, the Rust runtime aborts the process.
/// So admission stops short of them.
pub(crate) fn machine(spare_threads: usize) -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let number = |path: &str| read(path)?.trim().parse::<usize>().ok();
    let mut limits = Vec::new();
    let mut held_refusals = MAX_HELD_REFUSALS;
    if let Some(max_maps) = number("/proc/sys/vm/max_map_count") {
        let used = read("/proc/self/maps").map_or(0, |maps| maps.lines().count());
        let kept = used + MAPPINGS_KEPT + spare_threads * MAPPINGS_PER_CONNECTION;
        let connections = max_maps.saturating_sub(kept) / MAPPINGS_PER_CONNECTION;
        limits.push(MachineLimit {
            connections,
            because: format!(
                "vm.max_map_count is {max_maps} ({MAPPINGS_PER_CONNECTION} memory mappings per connection)"
            ),
        });
    }
    if let Some(open_files) =
        read("/proc/self/limits").and_then(|limits| soft_limit(&limits, "Max open files"))
    {
        held_refusals = held_refusals.min(open_files / 8);
        // An ended connection's descriptor is closed once the hub takes its
        // unregistration, which waits for at most this many others.
        let ending = REGISTRATIONS_WAKE;
        limits.push(MachineLimit {
            connections: open_files.saturating_sub(held_refusals + ending + FDS_KEPT),
            because: format!("the open-file limit (ulimit -n) is {open_files}"),
        });
    }
    if let Some(pid_max) = number("/proc/sys/kernel/pid_max") {
        limits.push(MachineLimit {
            connections: pid_max.saturating_sub(THREADS_KEPT + spare_threads) / THREADS_PER_CONNECTION,
            because: format!("kernel.pid_max is {pid_max} ({THREADS_PER_CONNECTION} threads per connection)"),
        });
    }
    Machine { limit: limits.into_iter().min_by_key(|limit| limit.connections), held_refusals }
}

/// The soft limit on the line of /proc/self/limits that starts with `name`.
fn soft_limit(limits: &str, name: &str) -> Option<usize> {
    let line = limits.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A client that has sent its request, and the server's side of it.
    fn client_with_request(listener: &std::net::TcpListener) -> (TcpStream, TcpStream) {
        use std::io::Write;
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let (server_side, _) = listener.accept().unwrap();
        (client, server_side)
    }

    /// The client was answered and its connection closed without a reset
    /// (on loopback the reset would arrive within the server's close).
    fn assert_answered_without_reset(mut client: TcpStream) {
        assert!(client.take_error().unwrap().is_none(), "the connection was reset");
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "answered {answer:?}");
    }

    #[test]
    fn a_refused_socket_let_go_at_capacity_is_not_reset() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut turnaway = Turnaway::new(Duration::from_secs(60), 1, false);
        let (first, server_side) = client_with_request(&listener);
        turnaway.refuse(server_side, Refusal::new(503, "busy"));
        let (_second, server_side) = client_with_request(&listener);
        turnaway.refuse(server_side, Refusal::new(503, "busy"));
        assert_eq!(turnaway.held.len(), 1);
        assert_answered_without_reset(first);
    }

    #[test]
    fn a_refused_socket_swept_when_its_time_is_up_is_not_reset() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut turnaway = Turnaway::new(Duration::ZERO, 8, false);
        let (client, server_side) = client_with_request(&listener);
        turnaway.refuse(server_side, Refusal::new(503, "busy"));
        turnaway.sweep();
        assert!(turnaway.held.is_empty());
        assert_answered_without_reset(client);
    }

    #[test]
    fn global_limit_refuses_with_503_and_frees_on_drop() {
        let admission = Admission::new(2, 0);
        let a = admission.admit(Some(ip("10.0.0.1"))).unwrap();
        let _b = admission.admit(Some(ip("10.0.0.2"))).unwrap();
        assert_eq!(admission.admit(Some(ip("10.0.0.3"))).unwrap_err().status, 503);
        drop(a);
        assert!(admission.admit(Some(ip("10.0.0.3"))).is_ok());
    }

    #[test]
    fn newcomers_in_the_place_of_shed_handshakes_go_past_the_limit_boundedly() {
        let admission = Admission::new(2, 0);
        let _full: Vec<Permit> = (0..2).map(|_| admission.admit(None).unwrap()).collect();
        let in_place: Vec<Permit> = (0..SHED_ROOM).map(|_| admission.admit_in_place(None).unwrap()).collect();
        assert_eq!(admission.admit_in_place(None).unwrap_err().status, 503);
        drop(in_place);
        assert!(admission.admit_in_place(None).is_ok());
    }

    #[test]
    fn per_address_limit_refuses_with_429_and_spares_others() {
        let admission = Admission::new(100, 2);
        let first = admission.admit(Some(ip("10.0.0.1"))).unwrap();
        let _second = admission.admit(Some(ip("10.0.0.1"))).unwrap();
        assert_eq!(admission.admit(Some(ip("10.0.0.1"))).unwrap_err().status, 429);
        assert_eq!(admission.open(), 2, "a refused connection holds no place");
        assert!(admission.admit(Some(ip("10.0.0.2"))).is_ok());
        drop(first);
        assert!(admission.admit(Some(ip("10.0.0.1"))).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let admission = Admission::new(100, 1);
        let _one = admission.admit(Some(ip("2001:db8:1:2::1"))).unwrap();
        assert_eq!(admission.admit(Some(ip("2001:db8:1:2::ffff"))).unwrap_err().status, 429);
        assert!(admission.admit(Some(ip("2001:db8:1:3::1"))).is_ok());
    }

    #[test]
    fn an_ipv4_mapped_address_and_its_ipv4_form_are_one_client() {
        let admission = Admission::new(100, 1);
        let _mapped = admission.admit(Some(ip("::ffff:192.0.2.7"))).unwrap();
        assert_eq!(admission.admit(Some(ip("192.0.2.7"))).unwrap_err().status, 429);
    }

    #[test]
    fn every_new_client_is_admitted_however_many_others_are_connected() {
        // The table of 65,536 hashed slots this replaced refused nearly half
        // of these, each sharing a slot with an earlier one.
        let admission = Admission::new(200_000, 1);
        let permits: Vec<Permit> = (0..100_000u32)
            .map(|n| {
                let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
                admission.admit(Some(address)).unwrap_or_else(|e| panic!("{address}: {e}"))
            })
            .collect();
        drop(permits);
        assert!(admission.per_address().is_empty(), "a client's entry goes with its last connection");
    }

    #[test]
    fn soft_limits_are_read_from_proc_self_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             96365                96365                processes\n\
                      Max open files            20000                524288               files\n";
        assert_eq!(soft_limit(limits, "Max open files"), Some(20000));
        assert_eq!(soft_limit(limits, "Max locked memory"), None);
    }

    #[test]
    fn this_machine_has_a_limit() {
        let machine = machine(64);
        let limit = machine.limit.as_ref().expect("Linux has /proc");
        assert!(limit.connections > 0, "{limit:?}");
        assert!(machine.held_refusals > 0, "{machine:?}");
    }

    #[test]
    fn proxied_connection_is_attributed_later_once() {
        let admission = Admission::new(100, 1);
        let mut permit = admission.admit(None).unwrap();
        permit.attribute(ip("10.0.0.9")).unwrap();
        permit.attribute(ip("10.0.0.9")).unwrap();
        assert_eq!(admission.admit(Some(ip("10.0.0.9"))).unwrap_err().status, 429);
    }
}
