//! The accept loop, and the shutdown that ends it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use log::{debug, info, warn};

use crate::admission::{self, Admission, MachineLimit, Permit, Turnaway};
use crate::backplane::Backplane;
use crate::config::Config;
use crate::connection::{self, CredentialHolders, Drain, Shared};
use crate::error::{Error, Refusal, Result};
use crate::handler::Handler;
use crate::handshakes::{Handshake, Handshakes};
use crate::hub::{ConnectionId, Hub, HubHandle};
use crate::listener;
use crate::metrics::Metrics;
use crate::reload::ReloadHandle;
use crate::thread_pool::ThreadPool;
use crate::tls::TlsAcceptor;
use crate::upgrade::Gate;

/// A WebSocket server: a listening socket, a hub thread, a drain thread,
/// and a thread per connection once [`run`](Server::run) is called.
#[derive(Debug)]
pub struct Server<H> {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared<H>>,
    hub_thread: JoinHandle<()>,
    drain_thread: JoinHandle<()>,
    backplane: Option<Backplane>,
    stopping: Arc<AtomicBool>,
    admission: Arc<Admission>,
    /// Connections still in their handshake, and who gives way.
    handshakes: Arc<Handshakes>,
    /// The connection threads, those serving a client and those parked.
    threads: ThreadPool,
    /// The most refused sockets held open at once while their answer
    /// reaches the client.
    held_refusals: usize,
    /// Held through each reload, by every reload handle: see
    /// [`ReloadHandle::reload`].
    reloading: Arc<Mutex<()>>,
}

/// Stops a running [`Server`] from any thread, such as a Ctrl-C handler.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    stopping: Arc<AtomicBool>,
    wake: SocketAddr,
}

impl<H: Handler> Server<H> {
    /// Checks the configuration, listens on `config.listen` and starts the
    /// hub and drain threads, and the backplane's threads when it has one. A backplane tries
    /// Redis once, to learn whether it takes the node's credentials (for up
    /// to a few seconds, when Redis does not answer), but does not wait for
    /// it: a Redis that cannot be reached is retried in the background, and
    /// meanwhile the server serves its own clients.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration, [`Error::RedisAuth`]
    /// when Redis refuses the backplane's password, [`Error::Bind`] when
    /// the address cannot be listened on, [`Error::Io`] when epoll cannot be
    /// set up for the drain thread, [`Error::Spawn`] when the hub or drain
    /// thread cannot start.
    pub fn bind(config: Config, handler: H) -> Result<Self> {
        config.validate()?;
        // Before the port is taken, so that a bad certificate fails fast.
        let tls = config.tls.as_ref().map(TlsAcceptor::new).transpose()?.map(Arc::new);
        let listener = listener::listen(&config)?;
        let local_addr = listener.local_addr()?;
        let metrics = Arc::new(match &config.backplane {
            Some(backplane) => Metrics::with_backplane(&backplane.node_id),
            None => Metrics::default(),
        });
        // The drain thread first: it holds nothing of the others', so that
        // if anything after it fails, it ends with its last handle.
        let (drain, drain_handle) = Drain::new(&config.timeouts)?;
        let drain_thread = thread::Builder::new()
            .name("switchboard-drain".into())
            .spawn(move || drain.run())
            .map_err(|source| Error::Spawn { name: "switchboard-drain".into(), source })?;
        let (mut hub, hub_handle) = Hub::new(config.limits.hub_capacity);
        let backplane = match &config.backplane {
            Some(backplane) => {
                // The largest message this node takes from its own clients.
                let largest = config.websocket.max_message_size.unwrap_or(usize::MAX);
                let (backplane, relay) =
                    Backplane::start(backplane, largest, hub_handle.clone(), metrics.clone())?;
                hub.relay_to(relay);
                Some(backplane)
            }
            None => None,
        };
        let hub_thread = thread::Builder::new()
            .name("switchboard-hub".into())
            .spawn(move || hub.run())
            .map_err(|source| Error::Spawn { name: "switchboard-hub".into(), source })?;
        let gate = Arc::new(Gate::new(&config.access, &config.subprotocols));
        let credential_holders = Arc::new(CredentialHolders::new(&config.access));
        let machine = admission::machine(config.limits.spare_threads);
        let admission =
            Admission::new(max_connections(&config, machine.limit), config.limits.max_connections_per_ip);
        let handshakes = Handshakes::new(
            config.limits.max_handshakes,
            config.limits.max_handshakes_per_ip,
            metrics.clone(),
        );
        let threads = ThreadPool::new(
            "switchboard-conn",
            config.thread_stack_size,
            config.limits.spare_threads,
            config.timeouts.spare_thread,
            metrics.clone(),
        );
        let shared = Arc::new(Shared {
            config,
            handler,
            hub: hub_handle,
            metrics,
            gate,
            tls,
            drain: drain_handle,
            credential_holders,
            refused_upgrades: connection::refused_upgrades(),
            faults: connection::faults(),
            refused_by_forwarded_address: connection::refused_by_forwarded_address(),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        Ok(Server {
            listener,
            local_addr,
            shared,
            hub_thread,
            drain_thread,
            backplane,
            stopping,
            admission,
            handshakes,
            threads,
            held_refusals: machine.held_refusals,
            reloading: Arc::default(),
        })
    }

    /// A handle that replaces the server's credentials and certificate while
    /// it runs; see [`ReloadHandle`].
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            gate: self.shared.gate.clone(),
            credential_holders: self.shared.credential_holders.clone(),
            tls: self.shared.tls.clone(),
            trusted_proxies: self.shared.config.access.trusted_proxies.as_slice().into(),
            reloading: self.reloading.clone(),
        }
    }

    /// The address the server listens on, with the real port when the
    /// configuration asked for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to the hub, to send to connections from outside any handler.
    pub fn hub(&self) -> HubHandle {
        self.shared.hub.clone()
    }

    /// A handle that stops [`run`](Server::run) from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { stopping: self.stopping.clone(), wake: wake_address(self.local_addr) }
    }

    /// Accepts connections, each on its own thread, until a
    /// [`ShutdownHandle`] asks it to stop; then shuts down gracefully: it
    /// stops accepting (clients waiting in the backlog are answered 503, as
    /// those refused at the door are), queues 1001 for every client behind what
    /// it already holds, and waits for the connections to end, at most
    /// `config.timeouts.shutdown`.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for failures that must stop the
    /// server.
    pub fn run(self) -> Result<()> {
        // Each connection thread holds a clone of `alive`; when the last one
        // is dropped, `all_gone` reports the channel disconnected.
        let (alive, all_gone) = bounded::<()>(0);
        let mut next_id = 1;
        let mut backoff = Duration::ZERO;
        let mut turnaway =
            Turnaway::new(self.shared.config.timeouts.close, self.held_refusals, self.shared.tls.is_some());
        loop {
            let accepted = self.listener.accept();
            if self.stopping.load(Ordering::SeqCst) {
                self.refuse_waiting(accepted, &mut turnaway);
                break;
            }
            turnaway.sweep();
            // Refused upgrades are counted by the connection threads; their
            // summary is due on time even when no more are refused.
            self.shared.refused_upgrades.sweep();
            self.shared.faults.sweep();
            self.shared.refused_by_forwarded_address.sweep();
            self.handshakes.sweep();
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::ZERO;
                    // On a dual-stack listener an IPv4 client arrives as
                    // ::ffff:a.b.c.d: from here on, limits, trust and logs
                    // see its IPv4 address, as on an IPv4 listener.
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    let id = ConnectionId(next_id);
                    next_id += 1;
                    match self.admit(peer, id) {
                        Ok((permit, handshake)) => {
                            if let Some(stream) =
                                self.spawn_connection(stream, peer, id, permit, handshake, alive.clone())
                            {
                                turnaway.refuse(stream, Refusal::new(503, "server busy"));
                            }
                        }
                        Err(refusal) => {
                            debug!("connection {id}: refused at the door: {refusal}");
                            self.shared.metrics.connection_refused(refusal.status);
                            turnaway.refuse(stream, refusal);
                        }
                    }
                }
                // The listener carries the read timeout its sockets inherit,
                // and Linux applies it to accept too: an idle loop wakes
                // once a timeout, which also keeps the log's summaries of
                // refusals on time.
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) => {
                    // Out of file descriptors, most often: retrying at once
                    // would spin. Back off as net/http does, 5 ms up to 1 s.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    warn!("accept failed: {e}; retrying in {backoff:?}");
                    thread::sleep(backoff);
                }
            }
        }
        let Server { listener, shared, hub_thread, drain_thread, backplane, threads, handshakes, .. } = self;
        drop(listener);
        drop(alive);
        let deadline = Instant::now() + shared.config.timeouts.shutdown;
        close_all(&shared, &all_gone);
        // Refused sockets are held through the drain, and their requests
        // read out as they are closed: a reset can overtake the answer.
        turnaway.finish();
        threads.stop();
        shared.refused_upgrades.finish();
        shared.faults.finish();
        shared.refused_by_forwarded_address.finish();
        handshakes.finish();
        shared.hub.stop();
        let _ = hub_thread.join();
        // Whatever the drain thread still holds belongs to clients that did
        // not take their last bytes within the shutdown timeout.
        shared.drain.stop();
        let _ = drain_thread.join();
        // The hub has dropped its end of the backplane: the publisher sends
        // what is still queued, and both threads end.
        if let Some(backplane) = backplane {
            backplane.join(deadline);
        }
        info!("shut down");
        Ok(())
    }

    /// Answers 503 the client just accepted and those still waiting in the
    /// backlog as the server stops, as the door answers those it refuses,
    /// rather than leave them to the reset that closing the listener sends.
    /// The shutdown's own wake-up is neither answered nor counted. At most
    /// a backlog's worth: clients that keep coming meanwhile do not hold
    /// the shutdown up.
    fn refuse_waiting(&self, accepted: io::Result<(TcpStream, SocketAddr)>, turnaway: &mut Turnaway) {
        let mut refuse = |stream: TcpStream| {
            if !gone_without_a_word(&stream) {
                self.shared.metrics.connection_refused(503);
                turnaway.refuse(stream, Refusal::new(503, "server shutting down"));
            }
        };
        if let Ok((stream, _)) = accepted {
            refuse(stream);
        }
        if self.listener.set_nonblocking(true).is_err() {
            return;
        }
        for _ in 0..listener::BACKLOG {
            let Ok((stream, _)) = self.listener.accept() else { break };
            refuse(stream);
        }
    }

    /// Counts a new connection from `peer` against the connection limits
    /// and the handshake limits. A trusted proxy's connection is counted
    /// against its client's address later, once the request names it. When
    /// the server is full, the oldest connection still in its handshake
    /// gives way to this one.
    fn admit(&self, peer: SocketAddr, id: ConnectionId) -> Result<(Permit, Handshake), Refusal> {
        let peer = peer.ip().to_canonical();
        let address = (!self.shared.config.access.trusts(peer)).then_some(peer);
        let handshake = self.handshakes.begin(id, address)?;
        // Only a newcomer that is admitted takes another's place: one
        // refused 429 must cost nobody their handshake.
        let permit = match self.admission.admit(address) {
            Err(full) if full.status == 503 => {
                let permit = self.admission.admit_in_place(address)?;
                if !self.handshakes.shed_oldest(id) {
                    return Err(full);
                }
                permit
            }
            admitted => {
                let permit = admitted?;
                if !self.handshakes.make_room(id) {
                    return Err(Refusal::new(503, "too many connections in their handshake"));
                }
                permit
            }
        };
        Ok((permit, handshake))
    }

    /// Serves one accepted socket on a parked thread or a new one, or hands
    /// the socket back when no thread can be started, to be answered 503.
    fn spawn_connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        id: ConnectionId,
        permit: Permit,
        handshake: Handshake,
        alive: Sender<()>,
    ) -> Option<TcpStream> {
        // The socket waits in a slot the job shares, so that if no thread
        // can run the job the loop still holds it and can say 503.
        let slot = Arc::new(Mutex::new(Some(stream)));
        let taken = slot.clone();
        let shared = self.shared.clone();
        let job = Box::new(move || {
            let _alive = alive;
            let stream = taken.lock().unwrap_or_else(PoisonError::into_inner).take();
            drop(taken);
            if let Some(stream) = stream {
                connection::serve(stream, peer, id, permit, handshake, &shared);
            }
        });
        let error = self.threads.run(job).err()?;
        warn!("connection {id}: {error}; answering 503");
        self.shared.metrics.thread_refused();
        slot.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The configured connection limit, or less when the machine cannot hold
/// that many: past the machine's limits a thread that cannot start aborts
/// the whole process, so admission answers 503 before that.
fn max_connections(config: &Config, machine: Option<MachineLimit>) -> usize {
    let wanted = config.limits.max_connections;
    match machine {
        Some(limit) if limit.connections < wanted => {
            warn!(
                "at most {} connections, not {wanted}: {}; raise that limit to hold more",
                limit.connections.max(1),
                limit.because
            );
            limit.connections.max(1)
        }
        _ => wanted,
    }
}

/// The graceful part of shutdown, once the listener is closed: 1001 for
/// everyone, then wait for the connection threads to end.
fn close_all<H>(shared: &Shared<H>, all_gone: &Receiver<()>) {
    let timeout = shared.config.timeouts.shutdown;
    let open = shared.metrics.open_connections();
    let s = if open == 1 { "" } else { "s" };
    info!("shutting down: closing {open} connection{s} (at most {timeout:?})");
    let _ = shared.hub.shutdown();
    match all_gone.recv_deadline(Instant::now() + timeout) {
        Err(RecvTimeoutError::Timeout) => {
            let open = shared.metrics.open_connections();
            warn!("shutdown timeout: {open} connections still open; leaving them");
        }
        Err(RecvTimeoutError::Disconnected) | Ok(()) => {}
    }
}

impl ShutdownHandle {
    /// Asks the server to shut down gracefully and returns at once; calling
    /// it again does nothing.
    pub fn shutdown(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            // The accept loop is blocked in accept(): one connection to
            // ourselves wakes it, and it sees the flag.
            let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
        }
    }
}

/// Whether the peer of an accepted socket has already closed it without
/// sending anything, as the shutdown's own wake-up connection does: nobody
/// is there to read an answer, and answering would log a refusal for every
/// shutdown. Accepts are deferred until a client's first bytes or its FIN
/// arrive (`TCP_DEFER_ACCEPT`, set on the listener), so the wake-up's close
/// is always there to see by the time it is accepted.
fn gone_without_a_word(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).is_ok() && matches!(stream.peek(&mut [0; 1]), Ok(0))
}

/// Where to connect to wake the accept loop: a wildcard address is reached
/// through loopback.
fn wake_address(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, local.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, local.port())),
        _ => local,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::RoomsHandler;

    fn server() -> Server<RoomsHandler> {
        let config = Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
        Server::bind(config, RoomsHandler).unwrap()
    }

    /// Everything `stream` reads until the server ends it, by EOF or a reset.
    fn read_answer(stream: &mut TcpStream) -> String {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0; 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("reading the answer: {e}, after {answer:?}"),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[test]
    fn clients_waiting_as_the_server_stops_are_answered_503() {
        let server = server();
        let metrics = server.shared.metrics.clone();
        // The flag is set, as a shutdown sets it, but nothing has woken the
        // loop yet: the next socket it accepts is a client's, as when a
        // client comes between the flag and the shutdown's wake-up, and two
        // more wait in the backlog behind it.
        server.stopping.store(true, Ordering::SeqCst);
        let mut clients: Vec<TcpStream> = (0..3)
            .map(|_| {
                let mut client = TcpStream::connect(server.local_addr()).unwrap();
                client.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
                client
            })
            .collect();
        server.run().unwrap();
        // Read once the server has gone: the answers outlive the sockets,
        // which were closed without a reset (the reset arrives within the
        // close, on loopback), one that could overtake the answer.
        for client in &mut clients {
            assert!(client.take_error().unwrap().is_none(), "the connection was reset");
            let answer = read_answer(client);
            assert!(answer.starts_with("HTTP/1.1 503 "), "answered {answer:?}, not 503");
            assert!(answer.contains("\r\nRetry-After: 1\r\n"), "{answer:?}");
            assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");
            assert!(answer.ends_with("\r\n\r\nserver shutting down\n"), "{answer:?}");
        }
        let json: serde_json::Value = serde_json::from_str(&metrics.to_json()).unwrap();
        assert_eq!(json["connections_refused"], serde_json::json!({ "503": 3 }));
    }

    #[test]
    fn the_shutdowns_own_wake_up_is_neither_answered_nor_counted() {
        let server = server();
        let metrics = server.shared.metrics.clone();
        server.shutdown_handle().shutdown();
        server.run().unwrap();
        let json: serde_json::Value = serde_json::from_str(&metrics.to_json()).unwrap();
        assert_eq!(json["connections_refused"], serde_json::json!({}));
    }
}
