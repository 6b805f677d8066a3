//! Verifies that connection threads outlive their clients: a parked thread
//! serves the next client, clean; the pool keeps no more than its bound,
//! for no longer than its timeout; and /metrics counts starts and reuses.

use std::collections::HashMap;
use std::thread;

use crate::support::{
    PATIENCE, Process, TestServer, close_code, config, connect, recv_text, send_text, wait_until,
};
use switchboard::{Accept, Config, Connection, Ending, Handler, Limits, Message, Refusal, Request};

/// Tells each client, as it opens, which thread serves it; echoes text, and
/// panics on "boom", as a connection to `/boom-open` opens (once it has
/// said which thread) and as one to `/boom-close` closes.
struct Witness;

impl Handler for Witness {
    type State = usize;

    fn on_upgrade(&self, _: &Request) -> Result<Accept<usize>, Refusal> {
        Ok(Accept::new(0))
    }

    fn on_open(&self, connection: &Connection, _: &mut usize) {
        let _ = connection.send(format!("{:?}", thread::current().id()));
        assert_ne!(connection.path(), "/boom-open", "the handler was asked to panic");
    }

    fn on_close(&self, connection: &Connection, _: &mut usize, _: &Ending) {
        assert_ne!(connection.path(), "/boom-close", "the handler was asked to panic");
    }

    fn on_message(&self, connection: &Connection, messages: &mut usize, message: Message) {
        *messages += 1;
        let text = message.to_text().unwrap_or_default().to_owned();
        assert_ne!(text, "boom", "the handler was asked to panic");
        let _ = connection.send(format!("{text} #{messages}"));
    }
}

/// One thread parked at most: after a client has gone, the next one is
/// served by its thread as soon as that thread has parked.
fn witnessed() -> TestServer {
    TestServer::start_with(
        Config { limits: Limits { spare_threads: 1, ..Limits::default() }, ..config() },
        Witness,
    )
}

/// Connects, and returns the client with the name of the thread serving it.
fn open(server: &TestServer) -> (crate::support::Client, String) {
    let mut client = server.connect("/");
    let thread = recv_text(&mut client);
    (client, thread)
}

/// Closes from the client side and reads until the server has closed.
fn close(mut client: crate::support::Client) {
    client.close(None).unwrap();
    while client.read().is_ok() {}
}

/// Connects clients one after another until one is served by `thread`;
/// returns it, and the clients served by other threads meanwhile, which
/// the caller keeps open until the test ends. (A new thread serves a client
/// that comes before `thread` has parked. Closed, such a client's thread
/// would park too, and with one parked thread at most, `thread` could find
/// no room and end.)
fn served_by(server: &TestServer, thread: &str) -> (crate::support::Client, Vec<crate::support::Client>) {
    let mut others = Vec::new();
    let mut found = None;
    assert!(
        wait_until(PATIENCE, || {
            let (client, serving) = open(server);
            if serving == thread {
                found = Some(client);
                return true;
            }
            others.push(client);
            false
        }),
        "no client was served by {thread}"
    );
    (found.unwrap(), others)
}

#[test]
fn a_parked_thread_serves_the_next_client() {
    let server = witnessed();
    let (mut first, thread) = open(&server);
    send_text(&mut first, "hello");
    assert_eq!(recv_text(&mut first), "hello #1");
    close(first);
    let (mut second, _others) = served_by(&server, &thread);
    // Its own state, from the start.
    send_text(&mut second, "again");
    assert_eq!(recv_text(&mut second), "again #1");
    close(second);
    let metrics = counters(&server.get("/metrics").body);
    assert!(metrics["switchboard_threads_reused_total"] >= 1, "{metrics:?}");
}

#[test]
fn a_handler_panic_on_a_reused_thread_ends_only_its_connection() {
    let server = witnessed();
    let (mut bystander, _) = open(&server);
    let (first, thread) = open(&server);
    close(first);
    let (mut victim, _others) = served_by(&server, &thread);
    send_text(&mut victim, "boom");
    assert_eq!(close_code(&mut victim), 1011);
    // Hanging up lets the server finish with it at once, and park its thread.
    drop(victim);
    // The thread survives the panic, and serves its next client as new.
    let (mut next, _more) = served_by(&server, &thread);
    send_text(&mut next, "fine");
    assert_eq!(recv_text(&mut next), "fine #1");
    close(next);
    send_text(&mut bystander, "still here");
    assert_eq!(recv_text(&mut bystander), "still here #1");
}

#[test]
fn a_handler_panic_as_a_connection_opens_or_closes_ends_only_it() {
    // Two may park: the thread that served one round's `next` may park only
    // once the next round's victim has been served by another, and with
    // room for one, the victim's thread would then find none, and end.
    let limits = Limits { spare_threads: 2, ..Limits::default() };
    let server = TestServer::start_with(Config { limits, ..config() }, Witness);
    let (mut bystander, _) = open(&server);
    // Kept open to the end: closed, they would park and could take the one
    // place `thread` needs.
    let mut others = Vec::new();
    for path in ["/boom-open", "/boom-close"] {
        let mut victim = server.connect(path);
        let thread = recv_text(&mut victim);
        if path == "/boom-open" {
            assert_eq!(close_code(&mut victim), 1011, "{path}");
            drop(victim);
        } else {
            send_text(&mut victim, "hello");
            assert_eq!(recv_text(&mut victim), "hello #1");
            close(victim);
        }
        // The thread survives the panic, and serves its next client as new.
        let (mut next, more) = served_by(&server, &thread);
        others.extend(more);
        send_text(&mut next, "fine");
        assert_eq!(recv_text(&mut next), "fine #1", "{path}");
        close(next);
    }
    send_text(&mut bystander, "still here");
    assert_eq!(recv_text(&mut bystander), "still here #1");
}

#[test]
fn metrics_count_threads_started_and_reused() {
    let server = witnessed();
    for _ in 0..5 {
        close(open(&server).0);
    }
    // Every connection, this request's included, started a thread or reused one.
    let metrics = counters(&server.get("/metrics").body);
    let (started, reused) =
        (metrics["switchboard_threads_started_total"], metrics["switchboard_threads_reused_total"]);
    assert!(started >= 1 && reused >= 1, "{metrics:?}");
    assert!(started + reused >= 6, "{metrics:?}");
    assert!(metrics["switchboard_threads"] >= 1);
    assert!(metrics["switchboard_threads_parked"] <= 1, "the bound: {metrics:?}");
}

#[test]
fn a_pool_over_its_bound_lets_threads_end() {
    let process = Process::start(&["--spare-threads", "2"]);
    let threads = process.threads();
    let clients: Vec<_> = (0..6).map(|_| connect(process.addr, "/echo").unwrap()).collect();
    assert!(wait_until(PATIENCE, || process.threads() == threads + 6), "one thread per client");
    clients.into_iter().for_each(close);
    // Two stay parked for the next clients; the other four end.
    assert!(
        wait_until(PATIENCE, || process.threads() == threads + 2),
        "{} threads, {threads} at the start",
        process.threads()
    );
}

#[test]
fn parked_threads_end_after_their_timeout() {
    let process = Process::start(&["--spare-thread-timeout", "200ms"]);
    let threads = process.threads();
    let clients: Vec<_> = (0..3).map(|_| connect(process.addr, "/echo").unwrap()).collect();
    assert!(wait_until(PATIENCE, || process.threads() == threads + 3), "one thread per client");
    clients.into_iter().for_each(close);
    assert!(
        wait_until(PATIENCE, || process.threads() == threads),
        "{} threads, {threads} at the start",
        process.threads()
    );
}

/// The unlabelled figures of a Prometheus text.
fn counters(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(' '))
        .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
        .collect()
}
