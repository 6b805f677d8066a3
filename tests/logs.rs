//! Verifies the binary's log formats: `--log-format json` writes one JSON
//! object a line, and RUST_LOG=debug is this server's lines, not
//! tungstenite's frames.

use crate::support::raw::sleeper;
use crate::support::{PATIENCE, Process, connect, recv_text, send_text, wait_until};

#[test]
fn json_logs_are_one_object_a_line_and_debug_leaves_out_frames() {
    let process = Process::start_logging(&["--log-format", "json"], "debug");
    let mut client = connect(process.addr, "/echo").unwrap();
    send_text(&mut client, "logged?");
    assert_eq!(recv_text(&mut client), "logged?");
    drop(client);
    let log = process.stop();
    let mut targets = Vec::new();
    for line in &log {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["time", "level", "target", "message"] {
            assert!(object[key].is_string(), "no {key}: {line}");
        }
        targets.push(object["target"].as_str().unwrap().to_owned());
    }
    assert!(targets.iter().any(|target| target.starts_with("switchboard")), "{log:?}");
    assert!(!targets.iter().any(|target| target.starts_with("tungstenite")), "frame lines: {log:?}");
}

#[test]
fn a_client_hung_up_on_for_taking_nothing_is_logged() {
    let mut process = Process::start(&["--write-timeout", "300ms", "--max-messages-per-sec", "0"]);
    // Joins, then reads nothing: its 4 KiB receive buffer fills at once.
    let _sleeper = sleeper(process.addr, "/ws/stuck");
    let mut publisher = connect(process.addr, "/ws/stuck").unwrap();
    let message = "x".repeat(1024);
    let mut sent = 0;
    let hung_up = wait_until(PATIENCE, || {
        if sent < 2000 {
            send_text(&mut publisher, &message);
            assert_eq!(recv_text(&mut publisher), message);
            sent += 1;
        }
        process.stats()["write_timeouts"] == 1
    });
    assert!(hung_up, "never hung up: {}", process.stats());
    let line = process.wait_for_line("hung up: its socket took no bytes for the write timeout");
    assert!(line.contains(" INFO "), "{line}");
}
