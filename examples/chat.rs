//! A chat server: rooms by path, joins and leaves announced to the room, and
//! announcements typed into the server's own terminal sent to everyone.
//!
//! Run: `cargo run --example chat` (or `cargo run --example chat -- 127.0.0.1:0`
//! for any free port). Then, in two more terminals, join one room:
//!
//! ```text
//! cargo run -- client ws://127.0.0.1:9001/chat/lobby
//! ```
//!
//! Type in either and both see it; type in the server's terminal and every
//! room sees it.
//!
//! # The server
//!
//! `main` binds the listening socket, which also starts the hub thread, and
//! calls [`Server::run`], the accept loop. Each connection gets a thread of
//! its own, which reads the HTTP request head and asks the handler,
//! `Chat::on_upgrade`, whether to take it. A path `/chat/<room>` is taken
//! with [`Accept::join`]: the connection is put in the room before the
//! client receives its `101 Switching Protocols`, so it cannot miss a
//! message sent to the room after that. Any other path is refused with 404.
//!
//! # The hub
//!
//! The hub is one thread that owns room membership and nothing else; it
//! never touches a socket. Every other thread reaches it through a
//! [`HubHandle`]: a handler through [`Connection::hub`], code outside any
//! handler through [`Server::hub`]. `send_to_room` hands the hub a message
//! that is encoded into a frame once; the hub gives that same frame to the
//! outbox of every member, the sender included, without waiting for any of
//! them. A member whose outbox is full is not reading what it is sent: the
//! hub closes it with 1008 rather than hold up the rest of its room.
//!
//! # The client
//!
//! After the upgrade each client has two threads. The thread that read its
//! request becomes its reader: it reads frames (queuing a pong for each
//! ping) and calls the handler. `Chat::on_open` greets the newcomer and
//! tells the room; `Chat::on_message` sends each message to the room,
//! prefixed with the sender's number; `Chat::on_close` tells the room who
//! left. The other thread is the writer, the only thread that writes to
//! the socket: it drains the client's outbox, where the hub and the reader
//! put frames, and pings the client now and then.
//!
//! # Announcements
//!
//! A line typed into the server's terminal goes to every connection in
//! every room, through a [`HubHandle`] taken from [`Server::hub`] before the
//! server starts, on a thread that is not a handler at all: anything in the
//! program can talk to clients this way.

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;

use switchboard::{
    Accept, Config, Connection, Ending, Handler, HubHandle, Message, Refusal, Request, Server,
};

/// Rooms at `/chat/<room>`; see the module docs.
struct Chat;

impl Handler for Chat {
    // Each connection remembers the room it is in.
    type State = Arc<str>;

    fn on_upgrade(&self, request: &Request) -> Result<Accept<Arc<str>>, Refusal> {
        // Only decide here: this is also asked about plain GETs (to answer
        // them 426), so joining and announcing wait for on_open.
        match request.path().strip_prefix("/chat/") {
            Some(room) if is_room_name(room) => {
                let room: Arc<str> = room.into();
                Ok(Accept::new(room.clone()).join(room))
            }
            _ => Err(Refusal::not_found()),
        }
    }

    fn on_open(&self, connection: &Connection, room: &mut Arc<str>) {
        let (id, hub) = (connection.id(), connection.hub());
        // room_size waits for the hub's answer, so it counts this connection,
        // which joined before the 101.
        let here = hub.room_size(room.clone()).unwrap_or(1);
        let _ = connection.send(format!("you are {id} in {room} ({here} here)"));
        // A room message reaches every member, the newcomer included.
        let _ = hub.send_to_room(room.clone(), format!("{id} joined {room}"));
    }

    fn on_message(&self, connection: &Connection, room: &mut Arc<str>, message: Message) {
        let hub = connection.hub();
        // Text goes to the room with the sender's number in front; anything
        // else goes as it came. An error means the server is shutting down.
        let _ = match message {
            Message::Text(text) => hub.send_to_room(room.clone(), format!("{}: {text}", connection.id())),
            other => hub.send_to_room(room.clone(), other),
        };
    }

    fn on_close(&self, connection: &Connection, room: &mut Arc<str>, _: &Ending) {
        // The connection has already left the hub, so this reaches the others only.
        let _ = connection.hub().send_to_room(room.clone(), format!("{} left {room}", connection.id()));
    }
}

/// A room is one path segment of 1 to 64 bytes.
fn is_room_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.contains('/')
}

/// Sends every line typed on stdin to every connection, until stdin ends or
/// the server shuts down.
fn announce(hub: HubHandle) {
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if hub.broadcast(format!("[server] {line}")).is_err() {
            break;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init(); // RUST_LOG=info shows what the server does.

    // Like all examples, this one listens on loopback only.
    let listen: SocketAddr = std::env::args().nth(1).as_deref().unwrap_or("127.0.0.1:9001").parse()?;
    if !listen.ip().is_loopback() {
        return Err(format!("{listen} is not a loopback address").into());
    }
    let server = Server::bind(Config { listen, ..Config::default() }, Chat)?;

    // A hub handle works from any thread, for as long as the server runs.
    let hub = server.hub();
    std::thread::Builder::new().name("announcer".into()).spawn(move || announce(hub))?;

    // Ctrl-C or SIGTERM: stop accepting, send every client 1001, and return from run().
    let shutdown = server.shutdown_handle();
    ctrlc::set_handler(move || shutdown.shutdown())?;

    let addr = server.local_addr();
    println!("listening on ws://{addr}");
    println!("join a room: cargo run -- client ws://{addr}/chat/lobby");
    println!("lines typed here go to every room");
    server.run()?;
    Ok(())
}
