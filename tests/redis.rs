//! Two server nodes sharing rooms through one Redis: delivery across nodes,
//! isolation, order, a Redis outage, and one node shutting down; a Redis
//! that wants a password, and one that speaks TLS.
//!
//! Every test starts its own `redis-server` (found on PATH) on a free
//! loopback port, and two servers in this process pointed at it, or the
//! binary. Without
//! `redis-server` each test fails, unless `SWITCHBOARD_SKIP` names `redis`
//! (`scripts/test.sh --skip redis`): then each says so loudly and passes. The test of what
//! a node logs needs no Redis: a node starts without one, and says so.

// The integration suite's helpers; this suite uses some of them.
#[allow(unused_imports)]
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use switchboard::{BackplaneConfig, Config, Error, Limits, RoomsHandler, Secret, Server};

use crate::support::{
    Client, PATIENCE, Process, TestServer, config, connect, ms, recv_text, run, send_text, wait_until,
};

/// The prefix these tests' channels use, as an operator would set one.
const PREFIX: &str = "switchboard-test:";

/// A `redis-server` child process of this test, on its own port.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
    options: Options,
}

/// How a test's Redis differs from a plain one.
#[derive(Clone, Default)]
struct Options {
    /// `requirepass`: clients must give this password.
    password: Option<&'static str>,
    /// TLS only (no plain port), with this self-signed certificate (PEM),
    /// for 127.0.0.1 and localhost.
    tls: Option<Tls>,
}

#[derive(Clone)]
struct Tls {
    certificate_pem: String,
    key_pem: String,
}

impl Tls {
    fn new() -> Tls {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names).expect("generate a certificate");
        Tls { certificate_pem: certified.cert.pem(), key_pem: certified.signing_key.serialize_pem() }
    }
}

impl Redis {
    /// Starts Redis on a free port. Without a `redis-server` the test
    /// fails, unless skipping Redis was asked for (`SWITCHBOARD_SKIP`
    /// naming `redis`, as `scripts/test.sh --skip redis` sets it): then it
    /// returns `None`, after saying so loudly.
    fn start(test: &str) -> Option<Redis> {
        Redis::start_with(test, Options::default())
    }

    /// As [`start`](Redis::start), as `options` say.
    fn start_with(test: &str, options: Options) -> Option<Redis> {
        let Some(binary) = redis_server() else {
            let skip = std::env::var("SWITCHBOARD_SKIP").unwrap_or_default();
            if !skip.split(',').any(|part| part.trim() == "redis") {
                panic!(
                    "redis-server is not on PATH: install it (Debian: apt-get install redis-server), \
                     or skip these tests with SWITCHBOARD_SKIP=redis"
                );
            }
            // Straight to stderr rather than through eprintln!, which the
            // test harness captures and shows only for failing tests: a
            // skip must be seen.
            let banner =
                format!("\n!!!!!!!!\n!! SKIPPED {test}, as asked: redis-server is not on PATH\n!!!!!!!!\n");
            let _ = std::io::stderr().write_all(banner.as_bytes());
            return None;
        };
        // A port that was free a moment ago may be taken by the time Redis
        // binds it; then Redis exits, and another is tried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if let Some(redis) = Redis::start_on(&binary, port, options.clone()) {
                return Some(redis);
            }
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// Starts Redis on `port`; `None` if it exits or does not answer in time.
    fn start_on(binary: &PathBuf, port: u16, options: Options) -> Option<Redis> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new(binary);
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "redis.log"]);
        if let Some(password) = options.password {
            command.args(["--requirepass", password]);
        }
        match &options.tls {
            None => {
                command.args(["--port", &port.to_string()]);
            }
            Some(tls) => {
                std::fs::write(dir.join("cert.pem"), &tls.certificate_pem).unwrap();
                std::fs::write(dir.join("key.pem"), &tls.key_pem).unwrap();
                command.args(["--port", "0", "--tls-port", &port.to_string(), "--tls-auth-clients", "no"]);
                command.args(["--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem"]);
                command.args(["--tls-ca-cert-file", "cert.pem"]);
            }
        }
        let child = command
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut redis = Redis { child, port, dir, options };
        let ready = wait_until(PATIENCE, || redis.ping() || redis.exited());
        (ready && !redis.exited()).then_some(redis)
    }

    /// The URL a node is given: no password in it.
    fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A connection of the test's own, with the password if there is one.
    fn connection(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let url = match self.options.password {
            Some(password) => {
                let password: String = form_urlencoded::byte_serialize(password.as_bytes()).collect();
                self.url().replace("://", &format!("://:{password}@"))
            }
            None => self.url(),
        };
        let client = match &self.options.tls {
            Some(tls) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(tls.certificate_pem.clone().into_bytes()),
                },
            )?,
            None => redis::Client::open(url)?,
        };
        client.get_connection_with_timeout(timeout)
    }

    fn ping(&self) -> bool {
        let query = || -> redis::RedisResult<()> { redis::cmd("PING").query(&mut self.connection(ms(500))?) };
        query().is_ok()
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// How many connections are subscribed to `room`'s channel.
    fn subscribers(&self, room: &str) -> usize {
        let mut connection = self.connection(PATIENCE).unwrap();
        let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(format!("{PREFIX}/{room}"))
            .query(&mut connection)
            .unwrap();
        counts[0].1
    }

    /// How many clients are connected, this question's aside.
    fn clients(&self) -> usize {
        let mut connection = self.connection(PATIENCE).unwrap();
        let info: String = redis::cmd("INFO").arg("clients").query(&mut connection).unwrap();
        let line = info.lines().find_map(|l| l.strip_prefix("connected_clients:")).unwrap();
        line.trim().parse::<usize>().unwrap() - 1
    }

    /// Kills this Redis (SIGKILL, by its pid), as a crash would.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts a new Redis on the same port, after [`kill`](Redis::kill).
    fn restart(&mut self) {
        let binary = redis_server().unwrap();
        let fresh = Redis::start_on(&binary, self.port, self.options.clone())
            .expect("redis-server restarts on its port");
        *self = fresh;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("redis-server")).find(|candidate| candidate.is_file())
}

/// A node's configuration: Redis at `redis`, its name, no rate limit (the
/// tests send a thousand messages at once).
fn node(redis: &Redis, name: &str) -> Config {
    Config {
        limits: Limits { max_messages_per_sec: 0, ..Limits::default() },
        backplane: Some(BackplaneConfig {
            node_id: name.into(),
            channel_prefix: PREFIX.into(),
            ..BackplaneConfig::new(redis.url())
        }),
        ..config()
    }
}

fn read_timeout(client: &Client, timeout: Duration) {
    client.get_ref().tcp().set_read_timeout(Some(timeout)).unwrap();
}

/// Sends probes from `from` until one reaches `to`, on another node: then
/// `to`'s node has subscribed to the room, and everything sent from now on
/// reaches it. Both are left with nothing unread.
fn link(from: &mut Client, to: &mut Client) {
    let deadline = Instant::now() + PATIENCE;
    read_timeout(to, ms(100));
    let mut probe = 0;
    'probing: loop {
        assert!(Instant::now() < deadline, "no probe crossed between the nodes in {PATIENCE:?}");
        probe += 1;
        let text = format!("probe {probe}");
        send_text(from, &text);
        // Earlier probes may arrive first: they were published in order.
        loop {
            match to.read() {
                Ok(message) if message.to_text().is_ok_and(|t| t == text) => break 'probing,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    read_timeout(to, PATIENCE);
    // The sender has every probe back from its own node, in order.
    while recv_text(from) != format!("probe {probe}") {}
}

fn backplane_stats(server: &TestServer) -> serde_json::Value {
    server.stats()["backplane"].clone()
}

#[test]
fn clients_on_two_nodes_receive_each_others_messages_once() {
    let Some(redis) = Redis::start("clients_on_two_nodes_receive_each_others_messages_once") else { return };
    let (one, two) = (TestServer::start(node(&redis, "one")), TestServer::start(node(&redis, "two")));
    let mut alice = one.connect("/ws/lobby");
    let mut bob = two.connect("/ws/lobby");
    link(&mut alice, &mut bob);
    link(&mut bob, &mut alice);

    send_text(&mut alice, "hello from one");
    assert_eq!(recv_text(&mut bob), "hello from one");
    assert_eq!(recv_text(&mut alice), "hello from one");
    send_text(&mut bob, "hello from two");
    assert_eq!(recv_text(&mut alice), "hello from two");
    assert_eq!(recv_text(&mut bob), "hello from two");
    // Had a node delivered its own message again when Redis echoed it back,
    // the duplicate would come before this.
    send_text(&mut alice, "last");
    assert_eq!(recv_text(&mut alice), "last");
    assert_eq!(recv_text(&mut bob), "last");

    let stats = backplane_stats(&one);
    assert_eq!(stats["node_id"], "one");
    assert_eq!(stats["up"], true);
    assert_eq!(stats["not_relayed"], 0);
    assert!(stats["received"].as_u64().unwrap() >= 2, "{stats}");
    let metrics = one.get("/metrics").body;
    assert!(metrics.contains("switchboard_backplane_up 1\n"), "{metrics}");
}

#[test]
fn rooms_stay_isolated_and_a_node_listens_only_to_rooms_it_serves() {
    let Some(redis) = Redis::start("rooms_stay_isolated_and_a_node_listens_only_to_rooms_it_serves") else {
        return;
    };
    let (one, two) = (TestServer::start(node(&redis, "one")), TestServer::start(node(&redis, "two")));
    let mut red_one = one.connect("/ws/red");
    let mut red_two = two.connect("/ws/red");
    let mut blue_two = two.connect("/ws/blue");
    link(&mut red_one, &mut red_two);

    send_text(&mut red_one, "for red only");
    assert_eq!(recv_text(&mut red_two), "for red only");
    send_text(&mut blue_two, "blue's own");
    assert_eq!(recv_text(&mut blue_two), "blue's own", "red's message reached blue");

    // Node one serves no one in blue, so only node two listens to it; when
    // red's member on node two leaves, only node one listens to red.
    assert!(wait_until(PATIENCE, || redis.subscribers("blue") == 1 && redis.subscribers("red") == 2));
    red_two.close(None).unwrap();
    while red_two.read().is_ok() {}
    assert!(wait_until(PATIENCE, || redis.subscribers("red") == 1), "node two still listens to red");
    assert!(wait_until(PATIENCE, || backplane_stats(&two)["subscriptions"] == 1));
}

#[test]
fn a_thousand_messages_cross_in_order_exactly_once() {
    const COUNT: usize = 1000;
    let Some(redis) = Redis::start("a_thousand_messages_cross_in_order_exactly_once") else { return };
    let (one, two) = (TestServer::start(node(&redis, "one")), TestServer::start(node(&redis, "two")));
    let mut sender = one.connect("/ws/order");
    let mut listener = two.connect("/ws/order");
    link(&mut sender, &mut listener);

    let sending = thread::spawn(move || {
        for i in 0..COUNT {
            send_text(&mut sender, &i.to_string());
        }
        send_text(&mut sender, "end");
        // Keep the sender open until its own messages are back.
        while recv_text(&mut sender) != "end" {}
    });
    for i in 0..COUNT {
        assert_eq!(recv_text(&mut listener), i.to_string(), "message {i} out of order or lost");
    }
    assert_eq!(recv_text(&mut listener), "end", "more than {COUNT} messages: duplicates");
    sending.join().unwrap();
    assert_eq!(backplane_stats(&one)["not_relayed"], 0);
    assert!(backplane_stats(&two)["received"].as_u64().unwrap() > COUNT as u64);
}

#[test]
fn redis_down_keeps_local_delivery_and_coming_back_resumes_without_duplicates() {
    let Some(mut redis) =
        Redis::start("redis_down_keeps_local_delivery_and_coming_back_resumes_without_duplicates")
    else {
        return;
    };
    let (one, two) = (TestServer::start(node(&redis, "one")), TestServer::start(node(&redis, "two")));
    let mut sender = one.connect("/ws/stream");
    let mut local = one.connect("/ws/stream");
    let mut remote = two.connect("/ws/stream");
    link(&mut sender, &mut remote);
    // `local` holds the probes too; only numbers count below.

    // A steady stream, numbered, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sending = {
        let (stop, sent) = (stop.clone(), sent.clone());
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                send_text(&mut sender, &i.to_string());
                i += 1;
                sent.store(i, Ordering::Relaxed);
                // Pacing, not synchronisation: a stream rather than a burst.
                thread::sleep(ms(2));
            }
            sender
        })
    };
    let number = |text: String| text.parse::<u64>().ok();
    let mut from_remote = Vec::new();
    while from_remote.len() < 20 {
        from_remote.extend(number(recv_text(&mut remote)));
    }

    redis.kill();
    let killed_at = sent.load(Ordering::Relaxed);
    assert!(wait_until(PATIENCE, || backplane_stats(&one)["up"] == false), "node one never said it was down");
    assert!(wait_until(PATIENCE, || backplane_stats(&two)["up"] == false), "node two never said it was down");
    // Local delivery goes on meanwhile: a hundred messages sent after the kill.
    let mut from_local = Vec::new();
    while from_local.last().is_none_or(|&n| n < killed_at + 100) {
        from_local.extend(number(recv_text(&mut local)));
    }
    assert!(wait_until(PATIENCE, || backplane_stats(&one)["not_relayed"].as_u64() > Some(0)));
    let metrics = one.get("/metrics").body;
    assert!(metrics.contains("switchboard_backplane_up 0\n"), "{metrics}");

    redis.restart();
    let restarted_at = sent.load(Ordering::Relaxed);
    let restarted = Instant::now();
    read_timeout(&remote, ms(5000));
    while from_remote.last().is_none_or(|&n| n < restarted_at) {
        match remote.read() {
            Ok(message) => from_remote.extend(message.to_text().ok().and_then(|t| t.parse::<u64>().ok())),
            Err(e) => panic!("cross-node delivery did not resume within 5 s of Redis restarting: {e}"),
        }
    }
    let resumed_in = restarted.elapsed();
    assert!(resumed_in < Duration::from_secs(5), "resumed after {resumed_in:?}");

    stop.store(true, Ordering::Relaxed);
    let mut sender = sending.join().unwrap();
    let last = sent.load(Ordering::Relaxed) - 1;
    send_text(&mut sender, "end");
    read_timeout(&remote, PATIENCE);
    loop {
        let text = recv_text(&mut remote);
        if text == "end" {
            break;
        }
        from_remote.extend(number(text));
    }
    loop {
        let text = recv_text(&mut local);
        if text == "end" {
            break;
        }
        from_local.extend(number(text));
    }
    // On the sender's node: everything, in order, once.
    assert_eq!(from_local, (0..=last).collect::<Vec<_>>());
    // Across: in order and never twice; what was sent while Redis was down
    // is missing, and what was sent after it came back is there.
    assert!(from_remote.windows(2).all(|w| w[0] < w[1]), "out of order or duplicated: {from_remote:?}");
    let across: BTreeSet<u64> = from_remote.iter().copied().collect();
    assert!(across.contains(&last));
    assert!(!across.contains(&(killed_at + 50)), "a message sent while Redis was down crossed");
    // Node one's subscriber may still be waiting out its backoff.
    assert!(wait_until(PATIENCE, || backplane_stats(&one)["up"] == true), "node one never came back up");
    assert_eq!(backplane_stats(&one)["reconnects"], 1);
}

#[test]
fn shutting_down_one_node_does_not_disturb_the_others_clients() {
    let Some(redis) = Redis::start("shutting_down_one_node_does_not_disturb_the_others_clients") else {
        return;
    };
    let (one, two) = (TestServer::start(node(&redis, "one")), TestServer::start(node(&redis, "two")));
    let mut leaving = one.connect("/ws/room");
    let mut staying = two.connect("/ws/room");
    let mut neighbour = two.connect("/ws/room");
    link(&mut leaving, &mut staying);
    while !recv_text(&mut neighbour).starts_with("probe") {}

    let took = one.stop();
    assert!(took < Config::default().timeouts.shutdown + Duration::from_secs(1), "node one took {took:?}");
    assert_eq!(support::close_code(&mut leaving), 1001);

    // Node two's clients carry on, and its backplane is still up.
    send_text(&mut staying, "still here");
    let skip_probes = |client: &mut Client| loop {
        let text = recv_text(client);
        if !text.starts_with("probe") {
            return text;
        }
    };
    assert_eq!(skip_probes(&mut staying), "still here");
    assert_eq!(skip_probes(&mut neighbour), "still here");
    assert_eq!(backplane_stats(&two)["up"], true);
    assert!(wait_until(PATIENCE, || redis.subscribers("room") == 1), "node one still subscribed");
}

#[test]
fn a_node_bound_but_never_run_lets_go_of_redis() {
    let Some(redis) = Redis::start("a_node_bound_but_never_run_lets_go_of_redis") else { return };
    let server = Server::bind(node(&redis, "idle"), RoomsHandler).unwrap();
    assert!(wait_until(PATIENCE, || redis.clients() == 2), "the publisher and subscriber connect");
    drop(server);
    assert!(wait_until(PATIENCE, || redis.clients() == 0), "the backplane's threads outlived their server");
}

#[test]
fn redis_passwords_never_reach_the_log() {
    // Nothing listens on this port, and there is no such socket: every node
    // finds its Redis down at once, and logs that.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let socket =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("no-redis-{}.sock", std::process::id()));
    let socket = socket.to_str().unwrap();
    // Each URL form the redis crate reads a password from, and the query
    // parameters others write instead, with passwords of their own; each
    // password as written, and decoded where that differs.
    let forms: [(String, &[&str]); 7] = [
        (format!("redis://app:userinfo-1@127.0.0.1:{port}/0"), &["userinfo-1"]),
        (format!("redis://:user%69nfo-2@127.0.0.1:{port}"), &["user%69nfo-2", "userinfo-2"]),
        (format!("redis+unix://{socket}?db=0&user=app&pass=query-3"), &["query-3"]),
        (format!("unix://{socket}?pass=query-4&db=0"), &["query-4"]),
        (format!("redis+unix://{socket}?p%61ss=quer%79-5"), &["quer%79-5", "query-5"]),
        (format!("redis+unix://{socket}?user=app&PASS=query-6"), &["query-6"]),
        (format!("redis+unix://{socket}?password=query-7&user=app"), &["query-7"]),
    ];
    // A TCP URL's query password, which the redis crate does not read, is
    // refused at the start, and the refusal shows the URL with it hidden.
    let refused: [(String, &[&str]); 2] = [
        (format!("redis://127.0.0.1:{port}/?Password=query-8"), &["query-8"]),
        (format!("redis://app:userinfo-9@127.0.0.1:{port}/?pass=query-9"), &["userinfo-9", "query-9"]),
    ];
    for (url, passwords) in &refused {
        let (status, out, stderr) = run(&["--redis", url, "--node-id", "n"], &[]);
        assert!(!status.success(), "{url} was taken");
        assert!(stderr.contains("holds its password in the query") && stderr.contains("***"), "{stderr}");
        for password in *passwords {
            assert!(!stderr.contains(password) && !out.concat().contains(password), "{password}: {stderr}");
        }
    }
    for (url, passwords) in &forms {
        let mut node = Process::start_logging(&["--redis", url, "--node-id", "n"], "trace");
        let shared = node.wait_for_line("shares rooms through");
        assert!(shared.contains("***"), "{shared}");
        let down = node.wait_for_line("backplane down");
        assert!(down.contains("***"), "{down}");
        let log = node.stop();
        for password in *passwords {
            let leaks: Vec<&String> = log.iter().filter(|line| line.contains(password)).collect();
            assert!(leaks.is_empty(), "{password} of {url} reached the log: {leaks:#?}");
        }
    }
}

#[test]
fn redis_passwords_never_reach_the_log_when_redis_answers() {
    let options = Options { password: Some("pass-word-1"), ..Options::default() };
    let Some(redis) = Redis::start_with("redis_passwords_never_reach_the_log_when_redis_answers", options)
    else {
        return;
    };
    let url = format!("redis://:pass-word-1@127.0.0.1:{}", redis.port);
    let mut node = Process::start_logging(&["--redis", &url, "--node-id", "n"], "trace");
    let up = node.wait_for_line("backplane up");
    assert!(up.contains("redis://:***@127.0.0.1"), "{up}");
    // Redis changes its password, and drops the node's connections: the
    // node, started, retries rather than stops, and says why.
    let mut connection = redis.connection(PATIENCE).unwrap();
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("pass-word-2").exec(&mut connection).unwrap();
    redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").exec(&mut connection).unwrap();
    redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").exec(&mut connection).unwrap();
    node.wait_for_line("backplane down");
    // The outage began with the connections dropped; that it goes on
    // because Redis refuses the password is said too, as an error.
    let refused = node.wait_for_line("refuses this node's credentials");
    assert!(refused.contains("ERROR"), "{refused}");
    assert!(refused.contains("redis://:***@127.0.0.1"), "{refused}");
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("pass-word-1").exec(&mut connection).unwrap();
    node.wait_for_line("backplane up again");
    let log = node.stop();
    let leaks: Vec<&String> = log.iter().filter(|line| line.contains("pass-word-1")).collect();
    assert!(leaks.is_empty(), "the password reached the log: {leaks:#?}");
}

/// A file in this test's own directory, holding `contents`.
fn file(test: &str, name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn a_redis_that_refuses_the_password_stops_the_start() {
    const TEST: &str = "a_redis_that_refuses_the_password_stops_the_start";
    let options = Options { password: Some("right-pass-1"), ..Options::default() };
    let Some(redis) = Redis::start_with(TEST, options) else { return };
    let url = redis.url();
    let password_file = file(TEST, "password", "wrong-pass-2\n");
    let password_file = password_file.to_str().unwrap();
    let url_with_password = format!("redis://:wrong-pass-3@127.0.0.1:{}", redis.port);
    // Each way of giving a password, and none: the error names it.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 4] = [
        (&["--redis", &url], &[("SWITCHBOARD_REDIS_PASSWORD", "wrong-pass-1")], "SWITCHBOARD_REDIS_PASSWORD"),
        (
            &["--redis", &url, "--redis-password-file", password_file],
            &[],
            &format!("--redis-password-file {password_file}: Redis refused this password"),
        ),
        (&["--redis", &url_with_password], &[], "--redis redis://:***@127.0.0.1"),
        (&["--redis", &url], &[], "Redis asks for a password, and none was given"),
    ];
    for (args, env, named) in cases {
        let (status, _, stderr) = run(&[&["--listen", "127.0.0.1:0"], args].concat(), env);
        assert_eq!(status.code(), Some(1), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?} {env:?} does not name {named:?}: {stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
        for password in ["wrong-pass", "right-pass"] {
            assert!(!stderr.contains(password), "a password reached the log: {stderr}");
        }
    }
    // The library says so from Server::bind.
    for password in [Some("wrong-pass-4"), None] {
        let config = Config {
            backplane: Some(BackplaneConfig {
                password: password.map(Secret::new),
                ..BackplaneConfig::new(url.clone())
            }),
            ..config()
        };
        match Server::bind(config, RoomsHandler) {
            Err(Error::RedisAuth { redis, reason }) => {
                assert!(redis.starts_with("redis://127.0.0.1:"), "{redis}");
                assert!(!reason.contains("wrong-pass"), "{reason}");
            }
            Err(other) => panic!("not an authentication error: {other}"),
            Ok(_) => panic!("the password {password:?} was taken"),
        }
    }
}

#[test]
fn a_password_from_a_file_or_the_environment_reaches_redis() {
    const TEST: &str = "a_password_from_a_file_or_the_environment_reaches_redis";
    let options = Options { password: Some("right#pass-1"), ..Options::default() };
    let Some(redis) = Redis::start_with(TEST, options) else { return };
    let url = redis.url();
    let password_file = file(TEST, "password", "right#pass-1\n");
    let common = ["--redis", &url, "--redis-prefix", PREFIX];
    let mut one =
        Process::start(&[&common[..], &["--redis-password-file", password_file.to_str().unwrap()]].concat());
    let mut two = Process::start_with_env(&common, &[("SWITCHBOARD_REDIS_PASSWORD", "right#pass-1")], "info");
    one.wait_for_line("backplane up");
    two.wait_for_line("backplane up");
    let mut alice = connect(one.addr, "/ws/lobby").unwrap();
    let mut bob = connect(two.addr, "/ws/lobby").unwrap();
    link(&mut alice, &mut bob);
    send_text(&mut bob, "hello from two");
    assert_eq!(recv_text(&mut alice), "hello from two");
    for log in [one.stop(), two.stop()] {
        let leaks: Vec<&String> = log.iter().filter(|line| line.contains("pass-1")).collect();
        assert!(leaks.is_empty(), "the password reached the log: {leaks:#?}");
    }
}

#[test]
fn rediss_checks_the_certificate_against_the_ca_named() {
    const TEST: &str = "rediss_checks_the_certificate_against_the_ca_named";
    let tls = Tls::new();
    let options = Options { password: Some("tls-pass-1"), tls: Some(tls.clone()) };
    let Some(redis) = Redis::start_with(TEST, options) else { return };
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let ca = file(TEST, "ca.pem", &tls.certificate_pem);
    let password = [("SWITCHBOARD_REDIS_PASSWORD", "tls-pass-1")];

    // Two nodes over TLS: one the binary, one in this process.
    let mut one = Process::start_with_env(
        &["--redis", &url, "--redis-ca-cert", ca.to_str().unwrap(), "--redis-prefix", PREFIX],
        &password,
        "info",
    );
    one.wait_for_line("backplane up");
    let two = TestServer::start(Config {
        backplane: Some(BackplaneConfig {
            password: Some(Secret::new("tls-pass-1")),
            ca_certificate_pem: Some(tls.certificate_pem.clone().into_bytes()),
            ..node(&redis, "two").backplane.unwrap()
        }),
        ..node(&redis, "two")
    });
    let mut alice = connect(one.addr, "/ws/secure").unwrap();
    let mut bob = two.connect("/ws/secure");
    link(&mut alice, &mut bob);
    send_text(&mut bob, "over TLS");
    assert_eq!(recv_text(&mut alice), "over TLS");
    assert_eq!(backplane_stats(&two)["up"], true);
    one.stop();

    // Without the CA the certificate is not trusted: the node starts, and
    // retries, as with a Redis that is down; the log says why.
    let mut untrusting = Process::start_with_env(&["--redis", &url], &password, "info");
    let down = untrusting.wait_for_line("backplane down");
    assert!(down.contains("certificate"), "{down}");
    untrusting.stop();
}

/// Connections Redis has accepted since it started.
fn connections_received(connection: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(connection).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("INFO stats names total_connections_received")
}

#[test]
fn a_redis_that_refuses_every_publish_is_tried_again_at_the_backoffs_pace() {
    let Some(redis) = Redis::start("a_redis_that_refuses_every_publish_is_tried_again_at_the_backoffs_pace")
    else {
        return;
    };
    let server = TestServer::start(node(&redis, "a"));
    let mut client = server.connect("/ws/refused");
    send_text(&mut client, "before");
    assert_eq!(recv_text(&mut client), "before");
    // The node's user may no longer publish: every PUBLISH is answered
    // NOPERM, on connections Redis still accepts.
    let mut admin = redis.connection(PATIENCE).unwrap();
    redis::cmd("ACL").arg("SETUSER").arg("default").arg("-publish").exec(&mut admin).unwrap();
    let before = connections_received(&mut admin);
    // Three seconds of messages, each one a publish for the node to try.
    let began = Instant::now();
    let mut sent = 0;
    while began.elapsed() < Duration::from_secs(3) && sent < 1_000_000 {
        send_text(&mut client, "refused");
        assert_eq!(recv_text(&mut client), "refused", "local delivery goes on");
        sent += 1;
    }
    // From 0.1 s, doubling up to 1 s: about six tries in three seconds.
    // Starting over at 0.1 s after every connect, it was about thirty.
    let tries = connections_received(&mut admin) - before;
    assert!(tries <= 12, "{tries} connections in 3 s to a Redis that refuses every publish");
    assert!(backplane_stats(&server)["not_relayed"].as_u64().unwrap() > 0);
}

/// Lets the nodes' user use the rooms whose name starts with r only, and
/// the greetings' channel, so that only room messages are refused. Returns
/// the connection that said so, for more.
fn allow_only_rooms_starting_with_r(redis: &Redis) -> redis::Connection {
    allow_only_channels(redis, &[format!("&{PREFIX}/r*"), format!("&{PREFIX}")])
}

/// Lets the nodes' user use the channels `patterns` (ACL `&` rules) only.
fn allow_only_channels(redis: &Redis, patterns: &[String]) -> redis::Connection {
    let mut admin = redis.connection(PATIENCE).unwrap();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("resetchannels")
        .arg(patterns)
        .exec(&mut admin)
        .unwrap();
    admin
}

#[test]
fn a_room_the_redis_user_may_not_publish_to_leaves_the_other_rooms_relayed() {
    let Some(redis) = Redis::start("a_room_the_redis_user_may_not_publish_to_leaves_the_other_rooms_relayed")
    else {
        return;
    };
    allow_only_rooms_starting_with_r(&redis);
    let (one, two) = (TestServer::start(node(&redis, "one")), TestServer::start(node(&redis, "two")));
    let mut alice = one.connect("/ws/relayed");
    let mut bob = two.connect("/ws/relayed");
    link(&mut alice, &mut bob);
    // Anyone may name a room: each message to the denied one is refused by
    // Redis, between the relayed room's messages.
    let mut mallory = one.connect("/ws/denied");
    for i in 0..50 {
        send_text(&mut mallory, "not relayed");
        send_text(&mut alice, &format!("relayed {i}"));
    }
    for i in 0..50 {
        assert_eq!(recv_text(&mut bob), format!("relayed {i}"), "{}", backplane_stats(&one));
        assert_eq!(recv_text(&mut mallory), "not relayed", "delivered on its own node");
    }
    // Bob may have the last relayed message before node one has Redis's
    // answer to the batch that held it, and counted its refusals.
    let all_counted = wait_until(PATIENCE, || backplane_stats(&one)["not_relayed"] == 50);
    let stats = backplane_stats(&one);
    assert!(all_counted, "{stats}");
    assert_eq!(stats["reconnects"], 0, "{stats}");
}

#[test]
fn a_room_the_redis_user_may_not_subscribe_to_leaves_the_others_subscribed() {
    let Some(redis) = Redis::start("a_room_the_redis_user_may_not_subscribe_to_leaves_the_others_subscribed")
    else {
        return;
    };
    let mut admin = allow_only_rooms_starting_with_r(&redis);
    let (one, two) = (TestServer::start(node(&redis, "one")), TestServer::start(node(&redis, "two")));
    let _mallory = one.connect("/ws/denied");
    let mut alice = two.connect("/ws/relayed");
    let mut bob = one.connect("/ws/relayed");
    link(&mut alice, &mut bob);
    // Redis drops the subscribers: node one subscribes to both its rooms
    // again at once, and the denied one must not take the other with it.
    redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").exec(&mut admin).unwrap();
    link(&mut alice, &mut bob);
    assert!(backplane_stats(&one)["reconnects"].as_u64().unwrap() >= 1, "{}", backplane_stats(&one));
}

#[test]
fn a_node_whose_greeting_redis_refuses_warns_that_a_namesake_would_go_unnoticed() {
    let Some(redis) =
        Redis::start("a_node_whose_greeting_redis_refuses_warns_that_a_namesake_would_go_unnoticed")
    else {
        return;
    };
    // The channels of the rooms whose name starts with r, but not the
    // greetings' (the prefix alone).
    allow_only_channels(&redis, &[format!("&{PREFIX}/r*")]);
    let url = redis.url();
    let mut node = Process::start(&["--redis", &url, "--node-id", "n", "--redis-prefix", PREFIX]);
    let said = node.wait_for_line("Redis refused this node's greeting");
    assert!(said.contains("WARN") && said.contains("NoPerm"), "{said}");
    // A room refused is named in the warning.
    let mut client = connect(node.addr, "/ws/denied").unwrap();
    send_text(&mut client, "not relayed");
    let said = node.wait_for_line("Redis refused to publish 1 room message(s)");
    assert!(said.contains("WARN") && said.contains("the first to room \"denied\""), "{said}");
}

#[test]
fn a_message_over_a_nodes_own_limit_is_not_taken_from_another_node() {
    let Some(redis) = Redis::start("a_message_over_a_nodes_own_limit_is_not_taken_from_another_node") else {
        return;
    };
    let strict = node(&redis, "strict");
    let strict = Config { websocket: strict.websocket.max_message_size(Some(1024)), ..strict };
    let (one, two) = (TestServer::start(node(&redis, "one")), TestServer::start(strict));
    let mut alice = one.connect("/ws/limits");
    let mut bob = two.connect("/ws/limits");
    link(&mut alice, &mut bob);
    send_text(&mut alice, &"x".repeat(1025));
    send_text(&mut alice, &"y".repeat(1024));
    // Published in order: the first bob sees is the one within his node's
    // limit, the other refused.
    assert_eq!(recv_text(&mut bob), "y".repeat(1024), "{}", backplane_stats(&two));
    assert_eq!(backplane_stats(&two)["rejected"], 1);
}

#[test]
fn a_node_that_hears_another_with_its_id_says_so() {
    let Some(redis) = Redis::start("a_node_that_hears_another_with_its_id_says_so") else { return };
    let url = redis.url();
    let node = |id: &str| {
        let args = ["--redis", &url, "--node-id", id, "--redis-prefix", PREFIX];
        let mut node = Process::start_logging(&args, "info");
        // Up: it listens for other nodes' greetings.
        node.wait_for_line("backplane up");
        node
    };
    let (mut one, other) = (node("twin"), node("other"));
    let _twin = node("twin");
    let said = one.wait_for_line("another node uses this node's id");
    assert!(said.contains("ERROR") && said.contains("\"twin\""), "{said}");
    // A node with an id of its own said nothing of the greetings it heard
    // by then (which greetings it had heard is not seen from outside; the
    // namesake module's unit tests hold the rule for each).
    let log = other.stop();
    assert!(!log.iter().any(|line| line.contains("another node")), "{log:#?}");
}

#[test]
fn a_full_publish_queue_is_told_in_the_log() {
    let Some(redis) = Redis::start("a_full_publish_queue_is_told_in_the_log") else { return };
    let url = redis.url();
    let args = ["--redis", &url, "--redis-queue", "1", "--max-messages-per-sec", "0"];
    let mut node = Process::start_logging(&args, "info");
    node.wait_for_line("backplane up");
    let mut alice = connect(node.addr, "/ws/lobby").unwrap();
    // Redis stalls without a disconnect: the publisher waits on its answer,
    // and the queue of one fills.
    crate::support::signal(redis.child.id(), "STOP");
    for n in 0..50 {
        send_text(&mut alice, &format!("message {n}"));
    }
    for n in 0..50 {
        assert_eq!(recv_text(&mut alice), format!("message {n}"), "delivered on this node all the same");
    }
    let said = node.wait_for_line("the publish queue is full");
    crate::support::signal(redis.child.id(), "CONT");
    assert!(said.contains("WARN") && said.contains(": 1 room message delivered on this node only"), "{said}");
    // The rest of the burst, with no overflow after it to bring it up: told
    // once the ten seconds between two such lines are over.
    let said = node.wait_for_line_within("room messages delivered on this node only", PATIENCE * 2);
    assert!(said.contains("WARN"), "{said}");
}

#[test]
fn a_node_started_with_a_running_nodes_id_hears_of_it_too() {
    let Some(redis) = Redis::start("a_node_started_with_a_running_nodes_id_hears_of_it_too") else { return };
    let url = redis.url();
    // Everything said on the greetings' channel, from before either node starts.
    let mut listener = redis.connection(PATIENCE).unwrap();
    listener.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut greetings = listener.as_pubsub();
    greetings.subscribe(PREFIX).unwrap();

    let args = ["--redis", &url, "--node-id", "twin", "--redis-prefix", PREFIX];
    let mut running = Process::start_logging(&args, "info");
    running.wait_for_line("backplane up");
    // The node misconfigured just now is the one whose log must say so; it
    // cannot wait for the node running to reconnect to Redis, which may be
    // never.
    let mut newcomer = Process::start_logging(&args, "info");
    let said = newcomer.wait_for_line("another node uses this node's id");
    assert!(said.contains("ERROR") && said.contains("\"twin\""), "{said}");
    let said = running.wait_for_line("another node uses this node's id");
    assert!(said.contains("ERROR") && said.contains("\"twin\""), "{said}");
    running.stop();
    newcomer.stop();

    // Each greeting was answered by the other node at most once, and no
    // answer was answered: no echo between the two.
    let mut admin = redis.connection(PATIENCE).unwrap();
    redis::cmd("PUBLISH").arg(PREFIX).arg("end").exec(&mut admin).unwrap();
    let (mut greeted, mut answered) = (0, 0);
    loop {
        let message = greetings.get_message().expect("the end of the greetings");
        match message.get_payload_bytes() {
            b"end" => break,
            payload if payload.starts_with(b"SBn") => greeted += 1,
            payload if payload.starts_with(b"SBa") => answered += 1,
            payload => panic!("not a greeting: {payload:?}"),
        }
    }
    assert!(greeted >= 2, "{greeted} greetings from two nodes");
    assert!((1..=greeted).contains(&answered), "{answered} answers to {greeted} greetings");
}
