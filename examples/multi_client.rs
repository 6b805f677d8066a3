//! One program holding three WebSocket connections at once, to different
//! endpoints with different subprotocols, watching each one's state: it
//! tells them apart by name, notices when one drops, and sees it reconnect.
//!
//! Run it against the `switchboard` binary, started speaking the two
//! subprotocols it asks for:
//!
//! ```text
//! cargo run -- --subprotocol chat.v1 --subprotocol echo.v1
//! cargo run --example multi_client            # or: -- 127.0.0.1:PORT
//! ```
//!
//! It connects, sends a message on each connection and waits for it to come
//! back, makes one connection drop and waits for it to reconnect, then
//! closes all three with 1000 and exits: 0 if all of that happened within
//! ten seconds a step, 1 with the reason otherwise. Every event is printed
//! as it arrives, tagged with its connection's name.

use std::error::Error;
use std::time::{Duration, Instant};

use switchboard::Message;
use switchboard::client::{Client, ClientConfig, Endpoint, Event};

/// One connection to hold.
struct Line {
    /// How events name it.
    name: &'static str,
    /// Where on the server.
    path: &'static str,
    /// The subprotocols offered, in order of preference.
    offers: &'static [&'static str],
    /// The one the server should choose: the first offered that it speaks.
    expects: &'static str,
}

const LINES: [Line; 3] = [
    Line { name: "lobby", path: "/ws/lobby", offers: &["chat.v1"], expects: "chat.v1" },
    // The server does not speak chat.v2, so negotiation falls back to chat.v1.
    Line { name: "news", path: "/ws/news", offers: &["chat.v2", "chat.v1"], expects: "chat.v1" },
    Line { name: "echo", path: "/echo", offers: &["echo.v1"], expects: "echo.v1" },
];

/// How long any one step may take.
const PATIENCE: Duration = Duration::from_secs(10);

/// The largest message this client accepts; the drop in step 4 exceeds it.
const MAX_MESSAGE: usize = 64 * 1024;

fn main() -> Result<(), Box<dyn Error>> {
    let server = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());

    // Step 1: name the connections and start them. Each gets a thread of its
    // own that connects, reads, and reconnects after a backoff if it drops.
    let endpoints = LINES
        .iter()
        .map(|line| {
            let endpoint = Endpoint::new(line.name, format!("ws://{server}{}", line.path));
            line.offers.iter().fold(endpoint, |endpoint, offer| endpoint.subprotocol(*offer))
        })
        .collect();
    let defaults = ClientConfig::default();
    let config = ClientConfig {
        websocket: defaults.websocket.max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE)),
        ..defaults
    };
    let mut client = Client::start(endpoints, config)?;

    // Whatever happens in the exchange, close every connection with 1000
    // before exiting, and wait for them to end (a few seconds at most).
    let exchanged = exchange(&mut client);
    client.join();
    exchanged?;
    println!("done");
    Ok(())
}

fn exchange(client: &mut Client) -> Result<(), Box<dyn Error>> {
    // Step 2: wait until all three are connected, each speaking the
    // subprotocol it should. Events from all of them arrive on one channel.
    let mut waiting: Vec<&str> = LINES.iter().map(|line| line.name).collect();
    watch(client, "every connection to open", |event| {
        if let Event::Connected { line, subprotocol } = event {
            let expects =
                LINES.iter().find(|l| l.name == &**line).expect("Bug: a line we did not start").expects;
            if subprotocol.as_deref() != Some(expects) {
                let chosen = subprotocol.as_deref().unwrap_or("none");
                return Err(format!(
                    "[{line}] wanted subprotocol {expects}, the server chose {chosen}: \
                     start it with --subprotocol chat.v1 --subprotocol echo.v1"
                )
                .into());
            }
            waiting.retain(|name| *name != &**line);
        }
        Ok(waiting.is_empty())
    })?;

    // Step 3: one message on each connection. A room sends every message to
    // all its members, the sender included, and /echo sends it back, so
    // each should come back on its own connection.
    let mut waiting: Vec<(&str, String)> = Vec::new();
    for line in &LINES {
        let text = format!("hello from {}", line.name);
        client.send(line.name, text.as_str())?;
        waiting.push((line.name, text));
    }
    watch(client, "every message to come back", |event| {
        if let Event::Message { line, message: Message::Text(text) } = event {
            waiting.retain(|(name, sent)| !(*name == &**line && sent == text.as_str()));
        }
        Ok(waiting.is_empty())
    })?;

    // Step 4: a drop. Ask /echo for a message larger than this client
    // accepts: the client refuses it and closes the connection with 1009
    // (message too big), and the line reconnects by itself after a short
    // backoff.
    client.send("echo", "x".repeat(MAX_MESSAGE + 1))?;
    let mut dropped = false;
    watch(client, "echo to drop and reconnect", |event| match event {
        Event::Closed { line, .. } if &**line == "echo" => {
            dropped = true;
            Ok(false)
        }
        Event::Connected { line, .. } if &**line == "echo" => Ok(dropped),
        _ => Ok(false),
    })?;
    // While it was reconnecting, a send would have failed with NotConnected;
    // now it works again.
    client.send("echo", "hello again")?;
    watch(client, "echo to answer again", |event| {
        Ok(matches!(event, Event::Message { line, message: Message::Text(text) }
            if &**line == "echo" && text.as_str() == "hello again"))
    })?;

    // Step 5: close every connection with 1000, and watch each one end.
    client.close();
    let deadline = Instant::now() + PATIENCE;
    let mut open = LINES.len();
    while open > 0 {
        if let Event::Ended { .. } = next_event(client, deadline, "every connection to end")? {
            open -= 1;
        }
    }
    Ok(())
}

/// Prints every event as it arrives until `done` says what we wait for has
/// happened. Fails after [`PATIENCE`], when `done` fails, or when a line
/// ends on its own (it never connected, or was given up).
fn watch(
    client: &Client,
    what: &str,
    mut done: impl FnMut(&Event) -> Result<bool, Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let event = next_event(client, deadline, what)?;
        if done(&event)? {
            return Ok(());
        }
        if let Event::Ended { line } = &event {
            return Err(format!("[{line}] ended while waiting for {what}").into());
        }
    }
}

/// The next event from any line, printed; fails once `deadline` has passed.
fn next_event(client: &Client, deadline: Instant, what: &str) -> Result<Event, Box<dyn Error>> {
    let event =
        client.events().recv_deadline(deadline).map_err(|_| format!("waited {PATIENCE:?} for {what}"))?;
    println!("{event}");
    Ok(event)
}
