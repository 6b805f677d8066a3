//! The smallest complete server: every message a client sends on `/echo`
//! comes back to it.
//!
//! Run: `cargo run --example echo` (or `cargo run --example echo -- 127.0.0.1:0`
//! for any free port), then in another terminal
//! `cargo run -- client ws://127.0.0.1:9001/echo` and type.

use switchboard::{Accept, Config, Connection, Handler, Message, Refusal, Request, Server};

/// The whole application: which upgrades to take, and what to do with a message.
struct Echo;

impl Handler for Echo {
    // Nothing to remember about a connection between its messages.
    type State = ();

    fn on_upgrade(&self, request: &Request) -> Result<Accept<()>, Refusal> {
        // Take WebSocket upgrades on /echo; every other path is 404.
        match request.path() {
            "/echo" => Ok(Accept::new(())),
            _ => Err(Refusal::not_found()),
        }
    }

    fn on_message(&self, connection: &Connection, _: &mut (), message: Message) {
        // Queue the message on this client's outbox; its writer thread sends
        // it. An error means the client is already gone: nothing to do.
        let _ = connection.send(message);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init(); // RUST_LOG=info shows what the server does.

    // Like all examples, this one listens on loopback only.
    let listen: std::net::SocketAddr =
        std::env::args().nth(1).as_deref().unwrap_or("127.0.0.1:9001").parse()?;
    if !listen.ip().is_loopback() {
        return Err(format!("{listen} is not a loopback address").into());
    }
    let server = Server::bind(Config { listen, ..Config::default() }, Echo)?;

    // Ctrl-C or SIGTERM: stop accepting, send every client 1001, and return from run().
    let shutdown = server.shutdown_handle();
    ctrlc::set_handler(move || shutdown.shutdown())?;

    let addr = server.local_addr();
    println!("listening on ws://{addr}");
    println!("try: cargo run -- client ws://{addr}/echo");
    server.run()?;
    Ok(())
}
