//! The accept loop, and the shutdown that ends it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use log::{info, warn};

use crate::config::Config;
use crate::connection::{self, Shared};
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::http::Response;
use crate::hub::{ConnectionId, Hub, HubHandle};
use crate::metrics::Metrics;
use crate::stream::Socket;

/// A WebSocket server: a listening socket, a hub thread, and a thread per
/// connection once [`run`](Server::run) is called.
#[derive(Debug)]
pub struct Server<H> {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared<H>>,
    hub_thread: JoinHandle<()>,
    stopping: Arc<AtomicBool>,
}

/// Stops a running [`Server`] from any thread, such as a Ctrl-C handler.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    stopping: Arc<AtomicBool>,
    wake: SocketAddr,
}

impl<H: Handler> Server<H> {
    /// Checks the configuration, listens on `config.listen` and starts the hub.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration, [`Error::Bind`] when
    /// the address cannot be listened on, [`Error::Spawn`] when the hub
    /// thread cannot start.
    pub fn bind(config: Config, handler: H) -> Result<Self> {
        config.validate()?;
        let addr = config.listen;
        let listener = TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::default());
        let (hub, hub_handle) = Hub::new(config.limits.hub_capacity, metrics.clone());
        let hub_thread = thread::Builder::new()
            .name("switchboard-hub".into())
            .spawn(move || hub.run())
            .map_err(|source| Error::Spawn { name: "switchboard-hub".into(), source })?;
        let shared = Arc::new(Shared { config, handler, hub: hub_handle, metrics });
        Ok(Server { listener, local_addr, shared, hub_thread, stopping: Arc::new(AtomicBool::new(false)) })
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
    /// stops accepting, queues 1001 for every client behind what it already
    /// holds, and waits for the connections to end, at most
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
        for stream in self.listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match stream {
                Ok(stream) => {
                    backoff = Duration::ZERO;
                    self.spawn_connection(stream, ConnectionId(next_id), alive.clone());
                    next_id += 1;
                }
                Err(e) => {
                    // Out of file descriptors, most often: retrying at once
                    // would spin. Back off as net/http does, 5 ms up to 1 s.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    warn!("accept failed: {e}; retrying in {backoff:?}");
                    thread::sleep(backoff);
                }
            }
        }
        let Server { listener, shared, hub_thread, .. } = self;
        drop(listener);
        drop(alive);
        close_all(&shared, &all_gone);
        shared.hub.stop();
        let _ = hub_thread.join();
        info!("shut down");
        Ok(())
    }

    /// Starts the thread for one accepted socket.
    fn spawn_connection(&self, stream: TcpStream, id: ConnectionId, alive: Sender<()>) {
        let _ = stream.set_nodelay(true);
        // The socket reaches its thread through a one-slot channel, so that if
        // the thread cannot be started the loop still holds it and can say 503.
        let (handoff, received) = bounded::<TcpStream>(1);
        let spare = received.clone();
        handoff.send(stream).expect("Bug: a fresh one-slot channel has room");
        let shared = self.shared.clone();
        let started =
            connection::spawn(format!("conn-{}-read", id.0), shared.config.thread_stack_size, move || {
                let _alive = alive;
                if let Ok(stream) = received.recv() {
                    connection::serve(Socket::new(stream), id, &shared);
                }
            });
        if let Err(e) = started {
            warn!("connection {id}: {e}; answering 503");
            self.shared.metrics.thread_refused();
            if let Ok(stream) = spare.try_recv() {
                let mut socket = Socket::new(stream);
                let _ = socket.set_write_timeout(self.shared.config.timeouts.write);
                let busy = Response::from(crate::error::Refusal::new(503, "server busy"));
                let _ = busy.write_to(&mut socket, false);
            }
        }
    }
}

/// The graceful part of shutdown, once the listener is closed: 1001 for
/// everyone, then wait for the connection threads to end.
fn close_all<H>(shared: &Shared<H>, all_gone: &Receiver<()>) {
    let timeout = shared.config.timeouts.shutdown;
    let open = shared.metrics.open_connections();
    info!("shutting down: closing {open} connections (at most {timeout:?})");
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

/// Where to connect to wake the accept loop: a wildcard address is reached
/// through loopback.
fn wake_address(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, local.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, local.port())),
        _ => local,
    }
}
