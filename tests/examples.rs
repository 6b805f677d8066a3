//! Verifies that the programs in `examples/` do what their docs say, run as
//! child processes over real loopback sockets: echo echoes, chat keeps its
//! rooms apart and announces who comes and goes, custom_handler keeps its
//! door, and multi_client completes its exchange with the `switchboard`
//! binary. Each server example listens on the port 0 it is given and exits
//! 0 on an interrupt.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use switchboard::Message;

use crate::support::raw::upgrade_request;
use crate::support::{
    Client, PATIENCE, Process, Program, close_code, connect, http, recv, recv_close, recv_text, send_text,
};

/// The example program `name`, built for this test run.
///
/// Plain `cargo test` builds the example programs, but `cargo test
/// --all-targets` (what scripts/test.sh runs) builds them only as test
/// harnesses, whose `main` never runs, and `cargo test --test integration`
/// not at all. So the tests build the programs themselves, once per run,
/// with the cargo, profile, target directory and features of this test
/// binary, where `cargo build` puts them (`target/<profile>/examples/`,
/// beside the `switchboard` binary). When nothing has changed, that takes a
/// fraction of a second.
fn example_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_switchboard")).parent().expect("a directory");
    if let Err(e) = BUILT.get_or_init(|| build_examples(profile_dir)) {
        panic!("cannot build the examples: {e}");
    }
    profile_dir.join("examples").join(name)
}

fn build_examples(profile_dir: &Path) -> Result<(), String> {
    let target_dir = profile_dir.parent().ok_or("the profile directory has no parent")?;
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--examples", "--quiet", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.ends_with("release") {
        cargo.arg("--release");
    }
    // The same features as this test binary, so that the library built for
    // it is used again rather than built once more.
    if cfg!(feature = "fuzzing") {
        cargo.arg("--features").arg("fuzzing");
    }
    // `cargo test` gives this process variables that describe the test
    // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). Some build scripts watch
    // them, so passing them on would make this build and the next
    // `cargo test` rebuild each other's dependencies every time.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let describes_the_test = ["CARGO_PKG_", "CARGO_BIN_", "CARGO_MANIFEST_", "CARGO_CRATE_"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
            || key == "CARGO_PRIMARY_PACKAGE"
            || key == "CARGO_TARGET_TMPDIR";
        if describes_the_test {
            cargo.env_remove(&*key);
        }
    }
    let output = cargo.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
    }
}

/// The example program `name` as a child process.
fn example(name: &str, args: &[&str]) -> Program {
    let mut command = Command::new(example_path(name));
    command.args(args);
    Program::start(command)
}

/// Starts a server example on a free loopback port and returns it with the
/// address it prints.
fn serve(name: &str) -> (Program, SocketAddr) {
    let mut example = example(name, &["127.0.0.1:0"]);
    let line = example.expect("with its address", |line| line.starts_with("listening on ws://"));
    let addr = line["listening on ws://".len()..].parse().expect("an address after ws://");
    (example, addr)
}

#[test]
fn echo_echoes_and_exits_0_on_ctrl_c() {
    let (echo, addr) = serve("echo");
    let mut client = connect(addr, "/echo").expect("connect to /echo");
    send_text(&mut client, "hello");
    assert_eq!(recv_text(&mut client), "hello");
    client.send(Message::binary(vec![0, 1, 2])).unwrap();
    assert_eq!(recv(&mut client), Message::binary(vec![0, 1, 2]));
    assert_eq!(http(addr, &upgrade_request("/elsewhere", "")).status, 404);

    echo.signal("INT");
    assert_eq!(close_code(&mut client), 1001);
    let (status, _, stderr) = echo.wait(PATIENCE);
    assert!(status.success(), "{status}: {stderr}");
}

/// Connects to a chat room and returns the client with the number the
/// server gave it (`#7`), after its greeting and its own join announcement.
fn join(addr: SocketAddr, room: &str) -> (Client, String) {
    let mut client = connect(addr, &format!("/chat/{room}")).expect("join a room");
    let greeting = recv_text(&mut client);
    let id = greeting
        .strip_prefix("you are ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("a greeting, not {greeting:?}"))
        .to_owned();
    assert_eq!(recv_text(&mut client), format!("{id} joined {room}"));
    (client, id)
}

#[test]
fn chat_relays_within_a_room_only_and_announces_joins_and_leaves() {
    let (mut chat, addr) = serve("chat");
    let (mut alice, alice_id) = join(addr, "red");
    let (mut bob, bob_id) = join(addr, "red");
    assert_eq!(recv_text(&mut alice), format!("{bob_id} joined red"), "the room hears of a newcomer");
    let (mut carol, carol_id) = join(addr, "blue");

    send_text(&mut alice, "hello red");
    assert_eq!(recv_text(&mut bob), format!("{alice_id}: hello red"));
    assert_eq!(recv_text(&mut alice), format!("{alice_id}: hello red"), "the sender is in its room");
    // The hub handles commands in order: carol's own message is published
    // after alice's, so if alice's had reached blue it would come first.
    send_text(&mut carol, "anyone?");
    assert_eq!(recv_text(&mut carol), format!("{carol_id}: anyone?"));

    // A line typed into the server's terminal goes to every room.
    chat.type_line("closing soon");
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(recv_text(client), "[server] closing soon");
    }

    bob.close(None).unwrap();
    recv_close(&mut bob);
    assert_eq!(recv_text(&mut alice), format!("{bob_id} left red"));

    chat.signal("TERM");
    assert_eq!(close_code(&mut alice), 1001);
    assert_eq!(close_code(&mut carol), 1001);
    let (status, _, stderr) = chat.wait(PATIENCE);
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn custom_handler_refuses_bad_names_with_a_reason_and_answers_commands() {
    let (server, addr) = serve("custom_handler");
    for (target, status, reason) in [
        ("/ws", 400, "a name is required"),
        ("/ws?name=no%20spaces", 400, "a name is 1 to 24 letters"),
        ("/ws?name=Admin", 403, "is reserved"),
        ("/elsewhere?name=alice", 404, "no such endpoint"),
    ] {
        let reply = http(addr, &upgrade_request(target, ""));
        assert_eq!(reply.status, status, "{target}: {reply:?}");
        assert!(reply.body.contains(reason), "{target}: {:?}", reply.body);
    }

    let mut alice = connect(addr, "/ws?name=alice").expect("alice is let in");
    assert!(recv_text(&mut alice).starts_with("hello alice;"));
    send_text(&mut alice, "/whoami");
    let whoami = recv_text(&mut alice);
    assert!(whoami.starts_with("you are alice, connection #"), "{whoami}");
    assert!(whoami.ends_with(", messages so far: 1"), "the state counts per connection: {whoami}");
    send_text(&mut alice, "/time");
    let time = recv_text(&mut alice);
    assert!(humantime::parse_rfc3339(&time).is_ok(), "{time}");

    let mut bob = connect(addr, "/ws?name=bob").expect("bob is let in");
    assert!(recv_text(&mut bob).starts_with("hello bob;"));
    send_text(&mut bob, "/shout hi all");
    assert_eq!(recv_text(&mut alice), "bob shouts: HI ALL");
    assert_eq!(recv_text(&mut bob), "bob shouts: HI ALL");
    send_text(&mut bob, "/dance");
    assert!(recv_text(&mut bob).starts_with("unknown command \"/dance\""));
    bob.send(Message::binary(vec![1])).unwrap();
    assert_eq!(close_code(&mut bob), 1003);

    server.signal("INT");
    assert_eq!(close_code(&mut alice), 1001);
    let (status, printed, stderr) = server.wait(PATIENCE);
    assert!(status.success(), "{status}: {stderr}");
    assert!(printed.iter().any(|line| line.contains("(bob) left after 3 messages")), "{printed:?}");
}

#[test]
fn multi_client_completes_its_exchange_with_the_binary_and_exits_0() {
    let server = Process::start(&["--subprotocol", "chat.v1", "--subprotocol", "echo.v1"]);
    let client = example("multi_client", &[&server.addr.to_string()]);
    // Each of its steps is bounded by ten seconds; the whole takes about one.
    let (status, printed, stderr) = client.wait(PATIENCE * 3);
    assert!(status.success(), "{status}: {stderr}\n{}", printed.join("\n"));
    for line in [
        "[lobby] connected (subprotocol chat.v1)",
        "[news] connected (subprotocol chat.v1)",
        "[echo] connected (subprotocol echo.v1)",
        "[lobby] hello from lobby",
        "[news] hello from news",
        "[echo] hello from echo",
        "[echo] hello again",
        "[lobby] closed: 1000 bye",
        "[news] closed: 1000 bye",
        "[echo] closed: 1000 bye",
        "done",
    ] {
        assert!(printed.iter().any(|l| l == line), "no {line:?} in:\n{}", printed.join("\n"));
    }
    let dropped = printed.iter().position(|l| l.starts_with("[echo] closed: 1009 message too big ("));
    let back = printed.iter().rposition(|l| l == "[echo] connected (subprotocol echo.v1)");
    assert!(dropped.is_some() && back > dropped, "a drop, then a reconnect:\n{}", printed.join("\n"));
    assert!(!printed.iter().any(|l| l == "[news] hello from lobby"), "rooms are apart");
    server.stop();
}

#[test]
fn multi_client_says_what_is_missing_when_the_server_lacks_its_subprotocols() {
    let server = Process::start(&[]);
    let client = example("multi_client", &[&server.addr.to_string()]);
    let (status, printed, stderr) = client.wait(PATIENCE * 3);
    assert_eq!(status.code(), Some(1), "{}", printed.join("\n"));
    assert!(stderr.contains("start it with --subprotocol chat.v1 --subprotocol echo.v1"), "{stderr}");
    server.stop();
}
