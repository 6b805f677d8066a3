//! Verifies that a connection's threads, file descriptors and hub entry are
//! freed when it ends, whichever way it ends.

use crate::support::{PATIENCE, Process, RawClient, connect, recv_text, send_text, wait_until};
use switchboard::Message;

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
