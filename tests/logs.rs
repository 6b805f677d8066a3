//! Verifies the binary's log formats: `--log-format json` writes one JSON
//! object a line, and RUST_LOG=debug is this server's lines, not
//! tungstenite's frames.

use crate::support::{Process, connect, recv_text, send_text};

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
