//! Verifies the binary's signals: SIGHUP reloads the token file, the JWT
//! key and the certificate, dropping only the clients of a token taken
//! away, and keeps the old ones when a new file is bad; SIGINT and SIGTERM are logged as what they
//! are.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use rustls::HandshakeKind;

use crate::support::jwt;
use crate::support::raw::{self, read_head};
use crate::support::tls::{self, handshake};
use crate::support::{
    PATIENCE, Process, TestServer, connect, recv_close, recv_text, send_text, signal, wait_until,
};

/// A file of this test's own, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn write(&self, contents: &[u8]) {
        std::fs::write(&self.0, contents).unwrap();
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The status of an upgrade on /echo with `token`, over plain TCP.
fn upgrade_status(process: &Process, token: &str) -> String {
    raw::upgrade_status(process.addr, token)
}

#[test]
fn sighup_reloads_the_token_file_and_closes_only_what_a_revoked_token_opened() {
    let tokens = TempFile::new("reload-tokens", b"alice kept\nfirst\n");
    let mut process = Process::start_logging(&["--auth-token-file", tokens.arg()], "debug");
    let mut kept = connect(process.addr, "/echo?access_token=kept").unwrap();
    let mut revoked = connect(process.addr, "/echo?access_token=first").unwrap();
    // A named token's connections go by its name, an unnamed one's by its line.
    process.wait_for_line("open on /echo as alice");
    process.wait_for_line("open on /echo as token 2");
    tokens.write(b"# rotated\nalice kept\nsecond\n");
    process.signal("HUP");
    process.wait_for_line("SIGHUP (reload): reloaded 2 tokens");
    assert_eq!(upgrade_status(&process, "second"), "101");
    assert_eq!(upgrade_status(&process, "first"), "403");
    // Admitted with a token still taken, and still served.
    send_text(&mut kept, "still here");
    assert_eq!(recv_text(&mut kept), "still here");
    // Admitted with the one taken away: closed, told why.
    let close = recv_close(&mut revoked).expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1008, "credentials revoked"));
    process.wait_for_line("closing 1 connection(s) whose bearer token or JWT key was taken away");
}

#[test]
fn a_bad_file_on_sighup_is_refused_and_the_old_one_kept() {
    let tokens = TempFile::new("reload-bad-tokens", b"first\n");
    let mut process = Process::start(&["--auth-token-file", tokens.arg()]);
    tokens.write(b"# nothing left\n");
    process.signal("HUP");
    let line = process.wait_for_line("SIGHUP (reload): nothing reloaded");
    assert!(line.contains("--auth-token-file") && line.contains("holds no secret"), "{line}");
    assert_eq!(upgrade_status(&process, "first"), "101");
    // What the server refuses is told as at the start: by its setting,
    // with its reasons.
    tokens.write(b"a same\nb same\n");
    process.signal("HUP");
    let line = process.wait_for_line("one token twice");
    assert!(line.contains("nothing reloaded") && line.contains("--auth-token-file"), "{line}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_on_sighup_with_why() {
    let (tls, _) = tls::certificate();
    let (other, _) = tls::certificate();
    let cert = TempFile::new("reload-mismatch-cert", &tls.certificate_chain_pem);
    let key = TempFile::new("reload-mismatch-key", tls.private_key_pem.expose());
    let mut process = Process::start(&["--tls-cert", cert.arg(), "--tls-key", key.arg()]);
    key.write(other.private_key_pem.expose());
    process.signal("HUP");
    let line = process.wait_for_line("SIGHUP (reload): nothing reloaded");
    assert!(line.contains("--tls-key") && line.contains("KeyMismatch"), "{line}");
}

#[test]
fn sighup_reloads_the_certificate_and_open_tls_connections_go_on() {
    let (old, trusts_old) = tls::certificate();
    let (new, trusts_new) = tls::certificate();
    let cert = TempFile::new("reload-cert", &old.certificate_chain_pem);
    let key = TempFile::new("reload-key", old.private_key_pem.expose());
    let mut process = Process::start(&["--tls-cert", cert.arg(), "--tls-key", key.arg()]);
    let mut open =
        handshake(&trusts_old, TcpStream::connect(process.addr).unwrap()).expect("the old certificate");
    cert.write(&new.certificate_chain_pem);
    key.write(new.private_key_pem.expose());
    process.signal("HUP");
    process.wait_for_line("SIGHUP (reload): reloaded the certificate and key");
    assert!(
        handshake(&trusts_new, TcpStream::connect(process.addr).unwrap()).is_ok(),
        "the new one is served"
    );
    assert!(handshake(&trusts_old, TcpStream::connect(process.addr).unwrap()).is_err(), "the old one is not");
    // The connection made before goes on with its session.
    use std::io::Write;
    open.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(read_head(&mut open).starts_with("HTTP/1.1 200 "));
}

#[test]
fn a_tls_client_resumes_with_its_ticket_until_the_certificate_is_reloaded() {
    let (tls, trusts) = tls::certificate();
    let cert = TempFile::new("resume-cert", &tls.certificate_chain_pem);
    let key = TempFile::new("resume-key", tls.private_key_pem.expose());
    let mut process = Process::start(&["--tls-cert", cert.arg(), "--tls-key", key.arg()]);
    let addr = process.addr;
    // Reading the answer takes in the tickets sent before it.
    let handshake_kind = || {
        use std::io::Write;
        let mut stream = handshake(&trusts, TcpStream::connect(addr).unwrap()).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 200 "));
        stream.conn.handshake_kind()
    };
    assert_eq!(handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(handshake_kind(), Some(HandshakeKind::Resumed), "with a ticket from the first");
    // The same files again (a reload for the tokens, say): tickets hold.
    process.signal("HUP");
    let reloaded = "SIGHUP (reload): reloaded the certificate and key";
    process.wait_for_line(reloaded);
    assert_eq!(handshake_kind(), Some(HandshakeKind::Resumed), "the same certificate keeps its ticket key");
    // Files that differ (here by a line outside the PEM block, as a renewal
    // would write another certificate) start a new ticket key: the next
    // handshake, once the reload is done, is full.
    cert.write(&[b"# renewed\n".as_slice(), &tls.certificate_chain_pem].concat());
    process.signal("HUP");
    assert!(wait_until(PATIENCE, || handshake_kind() == Some(HandshakeKind::Full)), "no new ticket key");
}

#[test]
fn sigterm_and_sigint_are_logged_as_what_they_are() {
    for (signal, said) in
        [("TERM", "SIGTERM (terminate): shutting down"), ("INT", "SIGINT (interrupt): shutting down")]
    {
        let mut process = Process::start(&[]);
        process.signal(signal);
        // Before stop() sends SIGINT: two signals pending at once are taken
        // in signal-number order, SIGINT first.
        process.wait_for_line(said);
        let log = process.stop();
        assert!(log.iter().any(|line| line.contains(said)), "{signal}: {log:?}");
    }
}

#[test]
fn a_second_sigterm_ends_the_process_as_sigterm_does() {
    use std::os::unix::process::ExitStatusExt;
    // A client that never answers the close holds the graceful shutdown,
    // for far longer than the test takes.
    let mut process = Process::start(&["--close-timeout", "60s", "--shutdown-timeout", "120s"]);
    let _client = connect(process.addr, "/ws/lobby").unwrap();
    process.signal("TERM");
    process.wait_for_line("SIGTERM (terminate): shutting down");
    process.signal("TERM");
    let status = process.wait_exit(PATIENCE).expect("the server exits");
    assert_eq!(status.signal(), Some(15), "{status}");
}

#[test]
fn sighup_while_the_server_starts_is_held_until_it_has() {
    // A Redis that takes the connection and never answers holds the start.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let redis = format!("redis://{}", silent.local_addr().unwrap());
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", "127.0.0.1:0", "--redis", &redis])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    let (lines, log) = crossbeam_channel::unbounded();
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|line| drop(lines.send(line))));
    // The server is starting once it has connected to Redis.
    silent.set_nonblocking(true).unwrap();
    let mut held = None;
    assert!(wait_until(PATIENCE, || silent.accept().map(|(redis, _)| held = Some(redis)).is_ok()));
    signal(child.0.id(), "HUP");
    // SIGHUP's default would end the process; held, it is done once the
    // server has started.
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !seen.iter().any(|line: &String| line.contains("SIGHUP (reload): reloaded")) {
        match log.recv_deadline(deadline) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no reload logged ({:?}): {seen:#?}", child.0.try_wait()),
        }
    }
    assert!(seen.iter().any(|line| line.contains("listening on")), "{seen:#?}");
    signal(child.0.id(), "TERM");
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn a_key_kept_as_a_previous_one_keeps_its_connections_until_a_reload_drops_it() {
    use switchboard::{Access, Config, Secret};
    let keys = |current: &str, previous: &[&str]| Access {
        jwt_secret: Some(Secret::new(current)),
        jwt_previous_secrets: previous.iter().map(|key| Secret::new(*key)).collect(),
        ..Access::default()
    };
    let server = TestServer::start(Config { access: keys(jwt::KEY, &[]), ..crate::support::config() });
    let mut old =
        server.connect(&format!("/echo?access_token={}", jwt::jwt(serde_json::json!({ "sub": "a" }))));
    // The rotation: a new key signs, the old one is still taken.
    server.reload_handle().reload(&keys("new key", &[jwt::KEY]), None).unwrap();
    let signed_new = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": "b", "exp": jwt::now() + 3600 }),
        &jsonwebtoken::EncodingKey::from_secret(b"new key"),
    )
    .unwrap();
    let mut new = server.connect(&format!("/echo?access_token={signed_new}"));
    let late = server.connect(&format!("/echo?access_token={}", jwt::jwt(serde_json::json!({ "sub": "c" }))));
    for client in [&mut old, &mut new] {
        send_text(client, "still here");
        assert_eq!(recv_text(client), "still here");
    }
    // The old key retired: what it let in goes, what the new one did stays.
    server.reload_handle().reload(&keys("new key", &[]), None).unwrap();
    for mut client in [old, late] {
        let close = recv_close(&mut client).expect("a close frame");
        assert_eq!((u16::from(close.code), close.reason.as_str()), (1008, "credentials revoked"));
    }
    send_text(&mut new, "still here");
    assert_eq!(recv_text(&mut new), "still here");
}

/// A server started by hand, killed if the test fails before it has ended.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn a_reload_cannot_change_what_a_running_server_keeps() {
    let server = switchboard::Server::bind(crate::support::config(), switchboard::RoomsHandler).unwrap();
    let reload = server.reload_handle();
    let tokens = switchboard::Access { tokens: vec![switchboard::Token::new("new")], ..Default::default() };
    reload.reload(&tokens, None).unwrap();
    // Before, each of these was taken, Ok(()), and changed nothing.
    for (changed, field) in [
        (
            switchboard::Access { allowed_origins: vec!["https://a.example".into()], ..tokens.clone() },
            "allowed_origins",
        ),
        (
            switchboard::Access { trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()], ..tokens.clone() },
            "trusted_proxies",
        ),
    ] {
        match reload.reload(&changed, None) {
            Err(switchboard::Error::Config { field: refused, problem }) => {
                assert!(refused.ends_with(field) && problem.contains("restart"), "{refused}: {problem}");
            }
            other => panic!("a change of {field} was not refused: {other:?}"),
        }
    }
}

#[test]
fn credentials_turned_off_close_no_one_and_a_token_taken_away_closes_its_own() {
    use switchboard::{Access, Config, Token};
    let with = |tokens: Vec<Token>| Access { tokens, ..Access::default() };
    let server =
        TestServer::start(Config { access: with(vec![Token::new("t")]), ..crate::support::config() });
    let mut client = server.connect("/echo?access_token=t");
    // A server that now takes anyone would admit this client too.
    server.reload_handle().reload(&Access::default(), None).unwrap();
    send_text(&mut client, "still here");
    assert_eq!(recv_text(&mut client), "still here");
    server.reload_handle().reload(&with(vec![Token::new("another")]), None).unwrap();
    let close = recv_close(&mut client).expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1008, "credentials revoked"));
}

#[test]
fn a_reload_that_replaces_the_jwt_key_closes_what_the_old_key_let_in() {
    use switchboard::{Access, Config, Secret, Token};
    let with = |key: &str| Access {
        tokens: vec![Token::new("t")],
        jwt_secret: Some(Secret::new(key)),
        ..Access::default()
    };
    let server = TestServer::start(Config { access: with(jwt::KEY), ..crate::support::config() });
    let token = jwt::jwt(serde_json::json!({ "sub": "alice" }));
    let mut by_jwt = server.connect(&format!("/echo?access_token={token}"));
    let mut by_token = server.connect("/echo?access_token=t");
    // The same key again, as a reload of an unchanged file gives: no one goes.
    server.reload_handle().reload(&with(jwt::KEY), None).unwrap();
    for client in [&mut by_jwt, &mut by_token] {
        send_text(client, "still here");
        assert_eq!(recv_text(client), "still here");
    }
    server.reload_handle().reload(&with("a new key"), None).unwrap();
    let close = recv_close(&mut by_jwt).expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1008, "credentials revoked"));
    send_text(&mut by_token, "still here");
    assert_eq!(recv_text(&mut by_token), "still here");
}
