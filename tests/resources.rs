//! Verifies that a connection's threads, file descriptors and hub entry are
//! freed when it ends, whichever way it ends.

use crate::support::raw::{TEXT, sleeper};
use crate::support::{
    PATIENCE, Process, RawClient, TestServer, config, connect, ms, recv_text, send_text, wait_until,
};
use switchboard::{Config, Message, Timeouts};

/// The process's threads: those that are not connection threads, and the
/// connection threads serving a client (the one serving this question
/// included), parked ones left out.
fn thread_counts(process: &Process) -> (u64, u64) {
    let count = |stats: &serde_json::Value, name: &str| stats[name].as_u64().unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        assert!(std::time::Instant::now() < deadline, "the thread count never held still");
        let before = process.stats();
        let threads = process.threads() as u64;
        // A connection thread that started or ended meanwhile: ask again.
        if count(&process.stats(), "threads") == count(&before, "threads") {
            let connection_threads = count(&before, "threads");
            return (threads - connection_threads, connection_threads - count(&before, "threads_parked"));
        }
    }
}

#[test]
fn threads_and_fds_return_to_baseline_after_200_connections() {
    let process = Process::start(&[]);
    let fds = process.fds();
    let (others, _) = thread_counts(&process);
    let mut clients = Vec::new();
    for i in 0..200 {
        let path = if i % 2 == 0 { "/ws/crowd" } else { "/echo" };
        clients.push(connect(process.addr, path).unwrap());
    }
    // Every connection is open when the last one has its echo.
    let last = clients.last_mut().unwrap();
    send_text(last, "last");
    assert_eq!(recv_text(last), "last");
    assert!(
        wait_until(PATIENCE, || thread_counts(&process) == (others, 200 + 1)),
        "one thread per connection, and one for /stats: {:?}",
        thread_counts(&process)
    );
    // The socket of the last /stats question may still be closing.
    assert!(
        wait_until(PATIENCE, || process.fds() == fds + 200),
        "one descriptor per connection: {} (baseline {fds})",
        process.fds()
    );

    // A third close cleanly, a third vanish, a third are hung up mid-frame.
    for (i, mut client) in clients.into_iter().enumerate() {
        match i % 3 {
            0 => {
                client.close(None).unwrap();
                while client.read().is_ok() {}
            }
            1 => drop(client),
            _ => {
                let stream = client.get_mut();
                let _ = std::io::Write::write_all(stream, &[0x81, 0xfe]);
            }
        }
    }
    assert!(
        wait_until(PATIENCE, || process.fds() == fds && thread_counts(&process) == (others, 1)),
        "threads {:?} (baseline {others}, and /stats's), fds {} (baseline {fds})",
        thread_counts(&process),
        process.fds()
    );
    assert_eq!(process.stats()["connections_open"], 0);
    // Of the threads the connections had, no more than the bound are kept.
    let parked = process.stats()["threads_parked"].as_u64().unwrap();
    assert!(parked <= 64, "{parked} threads parked");
}

#[test]
fn hub_forgets_a_member_that_vanished() {
    let process = Process::start(&[]);
    let mut stayer = connect(process.addr, "/ws/vanish").unwrap();
    {
        let leaver = RawClient::upgrade(process.addr, "/ws/vanish", b"");
        let _ = leaver.stream.shutdown(std::net::Shutdown::Both);
    }
    send_text(&mut stayer, "anyone?");
    assert_eq!(recv_text(&mut stayer), "anyone?");
    assert!(wait_until(PATIENCE, || process.stats()["connections_open"] == 1));
    stayer.send(Message::text("still fine")).unwrap();
    assert_eq!(recv_text(&mut stayer), "still fine");
}

#[test]
fn an_idle_accept_loop_answers_at_once_and_logs_nothing() {
    // The listener's read timeout, which accepted sockets inherit, also
    // bounds each accept: here 100 ms, so the idle loop wakes ten times a
    // second while nothing arrives.
    let process = Process::start(&["--handshake-timeout", "100ms"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let began = std::time::Instant::now();
    assert_eq!(crate::support::http(process.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    let took = began.elapsed();
    let log = process.stop();
    let failures: Vec<&String> = log.iter().filter(|line| line.contains("accept failed")).collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(took < std::time::Duration::from_millis(500), "answered after {took:?}");
}

/// The state of the server's side of the TCP connection between ports
/// `server` and `client` on 127.0.0.1, as `/proc/net/tcp` gives it
/// (`"04"` is FIN-WAIT-1), with the bytes the kernel still holds to send;
/// `None` once the kernel has let go of it.
fn server_side(server: u16, client: u16) -> Option<(String, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (local, remote) = (format!("0100007F:{server:04X}"), format!("0100007F:{client:04X}"));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let unsent = u64::from_str_radix(fields[4].split(':').next()?, 16).ok()?;
        (fields[1] == local && fields[2] == remote).then(|| (fields[3].to_owned(), unsent))
    })
}

#[test]
fn what_the_kernel_holds_for_a_client_that_stopped_reading_is_dropped_after_the_timeouts() {
    let timeouts = Timeouts { write: ms(300), close: ms(100), ..Timeouts::default() };
    let server = TestServer::start(Config { timeouts, ..config() });
    let mut sleeper = sleeper(server.addr(), "/ws/backlog");
    let client_port = sleeper.stream.local_addr().unwrap().port();
    // Room traffic it does not read: its window fills, and the rest waits
    // in the server's kernel, which has room for it.
    let mut talker = server.connect("/ws/backlog");
    for i in 0..16 {
        send_text(&mut talker, &format!("{i:04} {}", "x".repeat(1000)));
    }
    for i in 0..16 {
        assert!(recv_text(&mut talker).starts_with(&format!("{i:04} ")));
    }
    assert!(
        wait_until(PATIENCE, || server_side(server.addr().port(), client_port)
            .is_some_and(|(_, unsent)| unsent > 0)),
        "nothing waits in the kernel: {:?}",
        server_side(server.addr().port(), client_port)
    );
    // A protocol error: the server closes, the close frame joining the
    // backlog, and the client never answers.
    sleeper.send_unmasked(TEXT, b"unmasked");
    assert!(
        wait_until(PATIENCE, || server_side(server.addr().port(), client_port).is_none()),
        "the kernel still holds the connection: {:?}",
        server_side(server.addr().port(), client_port)
    );
}

/// The server's resident memory, KiB.
fn rss_kib(process: &Process) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.pid())).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_large_message_does_not_stay_in_its_connections_memory() {
    let process = Process::start(&[]);
    let big = "x".repeat(1_000_000);
    let mut clients = Vec::new();
    let send_one = |clients: &mut Vec<_>| {
        let mut client = connect(process.addr, "/echo").unwrap();
        send_text(&mut client, &big);
        assert_eq!(recv_text(&mut client).len(), big.len());
        send_text(&mut client, "and then a small one");
        assert_eq!(recv_text(&mut client), "and then a small one");
        clients.push(client);
    };
    // The first sets the allocator up for messages of that size.
    send_one(&mut clients);
    let before = rss_kib(&process);
    for _ in 0..20 {
        send_one(&mut clients);
    }
    // Each would keep a megabyte of read buffer: 20 MiB.
    let grown = rss_kib(&process).saturating_sub(before);
    assert!(grown < 8 * 1024, "20 idle connections that each sent a megabyte hold {grown} KiB more");
}
