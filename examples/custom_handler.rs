//! A handler with rules of its own: it lets a client in only with a proper
//! name, remembers who each connection is, and answers commands.
//!
//! Run: `cargo run --example custom_handler` (or with `-- 127.0.0.1:0` for
//! any free port), then in another terminal
//! `cargo run -- client 'ws://127.0.0.1:9001/ws?name=alice'` and type
//! `/whoami`, `/time` or `/shout hello`.
//!
//! Without a name the upgrade is refused with 400, with a malformed one 400,
//! and with a reserved one 403; the client is told why in the body of the
//! answer (`switchboard client` prints it).

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use switchboard::{
    Accept, CloseCode, CloseFrame, Config, Connection, Ending, Handler, Message, Refusal, Request, Server,
};

/// Names nobody may take, so that no one can pass for the server.
const RESERVED: [&str; 3] = ["admin", "root", "server"];

/// What the server remembers about one connection, from its upgrade to its
/// close. It lives on the connection's reader thread, so it needs no lock.
struct Session {
    name: String,
    since: Instant,
    messages: u64,
}

/// Lets clients in at `/ws?name=<name>` and answers their commands.
struct Commands;

impl Handler for Commands {
    type State = Session;

    /// The door: accept with a `Session`, or refuse with a status and a reason.
    fn on_upgrade(&self, request: &Request) -> Result<Accept<Session>, Refusal> {
        if request.path() != "/ws" {
            return Err(Refusal::not_found());
        }
        // The query string is percent-decoded as browsers encode it, by a
        // crate made for it (form_urlencoded, a dependency of switchboard).
        let query = request.query().unwrap_or("");
        let name = form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "name").map(|(_, v)| v);
        let Some(name) = name else {
            return Err(Refusal::bad_request("a name is required: connect to /ws?name=<your name>"));
        };
        if !is_well_formed(&name) {
            return Err(Refusal::bad_request("a name is 1 to 24 letters, digits, '-' or '_'"));
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Refusal::forbidden(format!("the name {name:?} is reserved")));
        }
        // Nothing is done here but deciding: this is also asked about plain
        // GETs. The session starts counting in on_open.
        Ok(Accept::new(Session { name: name.into_owned(), since: Instant::now(), messages: 0 }))
    }

    fn on_open(&self, connection: &Connection, session: &mut Session) {
        session.since = Instant::now();
        println!("{} is {} from {}", connection.id(), session.name, connection.peer());
        let _ = connection.send(format!("hello {}; try /whoami, /time, /shout <text>", session.name));
    }

    /// One answer per message, from the connection's own thread: a slow
    /// command here holds up only this client.
    fn on_message(&self, connection: &Connection, session: &mut Session, message: Message) {
        session.messages += 1;
        let Message::Text(text) = message else {
            // Anything but text is not understood: say so with 1003 and close.
            let close = CloseFrame { code: CloseCode::Unsupported, reason: "text commands only".into() };
            let _ = connection.hub().close(connection.id(), close);
            return;
        };
        let (command, argument) = text.split_once(' ').unwrap_or((&text, ""));
        let answer = match command {
            "/whoami" => format!(
                "you are {}, connection {} from {}, here for {} s, messages so far: {}",
                session.name,
                connection.id(),
                connection.peer(),
                session.since.elapsed().as_secs(),
                session.messages
            ),
            "/time" => humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            "/shout" if !argument.is_empty() => {
                // To everyone connected, not just the sender: through the hub.
                // The sender gets it when the hub comes to it, so a direct
                // answer to its next command may arrive first.
                let shout = format!("{} shouts: {}", session.name, argument.to_uppercase());
                let _ = connection.hub().broadcast(shout);
                return;
            }
            _ => format!("unknown command {command:?}; try /whoami, /time, /shout <text>"),
        };
        let _ = connection.send(answer);
    }

    fn on_close(&self, connection: &Connection, session: &mut Session, ending: &Ending) {
        println!("{} ({}) left after {} messages: {ending}", connection.id(), session.name, session.messages);
    }
}

/// Returns true if and only if `name` is 1 to 24 ASCII letters, digits, `-` or `_`.
fn is_well_formed(name: &str) -> bool {
    (1..=24).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init(); // RUST_LOG=info shows what the server does, refusals included.

    // Like all examples, this one listens on loopback only.
    let listen: SocketAddr = std::env::args().nth(1).as_deref().unwrap_or("127.0.0.1:9001").parse()?;
    if !listen.ip().is_loopback() {
        return Err(format!("{listen} is not a loopback address").into());
    }
    let server = Server::bind(Config { listen, ..Config::default() }, Commands)?;

    // Ctrl-C or SIGTERM: stop accepting, send every client 1001, and return from run().
    let shutdown = server.shutdown_handle();
    ctrlc::set_handler(move || shutdown.shutdown())?;

    let addr = server.local_addr();
    println!("listening on ws://{addr}");
    println!("try: cargo run -- client 'ws://{addr}/ws?name=alice'");
    server.run()?;
    Ok(())
}
