//! Verifies that every byte a client receives leaves through its outbox, one
//! writer at a time: the 101 before any room frame, TLS records in the order
//! they were sealed (key updates included), stalled sockets finished or hung
//! up by the drain thread, a batch of the largest messages not taken for a
//! slow consumer, no deadlock when every queue is full, and no byte of a
//! dead connection reaching the one that reuses its descriptor.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::raw::{
    CLOSE, PING, TEXT, connect_from, frame, read_head, sleeper, sleeper_from, upgrade_request,
};
use crate::support::{
    Client, PATIENCE, RawClient, TestServer, config, ms, recv, recv_text, send_text, wait_until,
};
use switchboard::tungstenite::WebSocket;
use switchboard::tungstenite::protocol::Role;
use switchboard::{Config, Frame, Limits, Message, Timeouts};

/// The rate limit lifted: these tests flood on purpose.
fn unlimited() -> Config {
    Config { limits: Limits { max_messages_per_sec: 0, ..Limits::default() }, ..config() }
}

/// Message `i`, `len` bytes long: its number, then a filler that differs
/// from one message to the next, so that a lost or repeated piece shows.
fn numbered(i: usize, len: usize) -> String {
    let mut text = format!("{i:06}:");
    let filler = char::from(b'a' + (i % 26) as u8);
    text.extend(std::iter::repeat_n(filler, len.saturating_sub(text.len())));
    text
}

/// A `u64` counter in `/stats`.
fn stat(server: &TestServer, name: &str) -> u64 {
    server.stats()[name].as_u64().unwrap_or_else(|| panic!("/stats has no counter {name}"))
}

/// The next frame the server sent: checked to be whole and well formed
/// (final, no reserved bits, unmasked, as the server sends every frame),
/// and returned as its opcode and payload.
fn read_server_frame(stream: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    assert_eq!(head[0] & 0xf0, 0x80, "a final frame without reserved bits: {head:02x?}");
    assert_eq!(head[1] & 0x80, 0, "a server's frame is unmasked: {head:02x?}");
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            stream.read_exact(&mut n)?;
            usize::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            stream.read_exact(&mut n)?;
            usize::try_from(u64::from_be_bytes(n)).unwrap()
        }
        n => usize::from(n),
    };
    assert!(len <= 1 << 20, "a frame of {len} bytes: more than any message");
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok((head[0] & 0x0f, payload))
}

/// Reads frames until `want` text frames have arrived; each must be a
/// well-formed text frame holding UTF-8 (the server's pings aside).
fn read_texts(client: &mut RawClient, want: usize) -> Vec<String> {
    let mut texts = Vec::with_capacity(want);
    while texts.len() < want {
        let (opcode, payload) = read_server_frame(&mut client.stream).expect("a whole frame in time");
        match opcode {
            TEXT => texts.push(String::from_utf8(payload).expect("a text frame holds UTF-8")),
            PING => {}
            other => panic!("expected a text frame, got opcode {other:#x} ({} bytes)", payload.len()),
        }
    }
    texts
}

/// A raw client that floods `path` with small numbered text messages from a
/// thread of its own until told to stop, while another thread reads and
/// drops what the room sends back, so that the publisher is never a slow
/// consumer itself.
struct Flood {
    stop: Arc<AtomicBool>,
    writer: JoinHandle<Result<u64, io::Error>>,
    reader: JoinHandle<()>,
    stream: TcpStream,
}

impl Flood {
    const MAX_MESSAGES: u64 = 20_000_000;

    fn start(addr: SocketAddr, path: &str) -> Self {
        let client = RawClient::upgrade(addr, path, b"");
        let stream = client.stream;
        let mut writing = stream.try_clone().unwrap();
        let mut reading = stream.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let writer = thread::spawn(move || {
            let started = Instant::now();
            let mut sent = 0u64;
            let mut batch = Vec::new();
            while !stopped.load(Ordering::Relaxed)
                && sent < Self::MAX_MESSAGES
                && started.elapsed() < PATIENCE
            {
                batch.clear();
                for _ in 0..32 {
                    batch.extend(frame(true, TEXT, format!("flood {sent}").as_bytes(), true));
                    sent += 1;
                }
                writing.write_all(&batch)?;
            }
            Ok(sent)
        });
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(1..) = reading.read(&mut buf) {}
        });
        Flood { stop, writer, reader, stream }
    }

    /// Stops the flood and returns how many messages were sent.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.writer.join().unwrap().expect("the publisher was never cut off");
        let _ = self.stream.shutdown(Shutdown::Both);
        self.reader.join().unwrap();
        sent
    }
}

#[test]
fn room_frames_relayed_before_the_101_wait_behind_it() {
    let server = TestServer::start(unlimited());
    let flood = Flood::start(server.addr(), "/ws/busy");
    for joiner in 0..50 {
        // RawClient::upgrade reads the head byte by byte: it must be the
        // 101, whole, before any frame.
        let mut client = RawClient::upgrade(server.addr(), "/ws/busy", b"");
        let texts = read_texts(&mut client, 5);
        let numbers: Vec<u64> = texts
            .iter()
            .map(|text| {
                let number =
                    text.strip_prefix("flood ").unwrap_or_else(|| panic!("joiner {joiner}: {text:?}"));
                number.parse().unwrap_or_else(|_| panic!("joiner {joiner}: {text:?}"))
            })
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "joiner {joiner}: out of order: {numbers:?}");
    }
    let sent = flood.stop();
    assert!(sent > 0);
}

#[test]
fn tls_records_stay_in_order_while_pongs_and_room_frames_are_sealed_together() {
    const COUNT: usize = 2000;
    let server = TestServer::start_tls(unlimited());
    let mut listener = server.connect("/ws/sealed");
    let mut publisher = server.connect("/ws/sealed");
    let publishing = thread::spawn(move || {
        for i in 0..COUNT {
            send_text(&mut publisher, &i.to_string());
        }
        // Open until its own messages are back: all of them were relayed.
        for i in 0..COUNT {
            assert_eq!(recv_text(&mut publisher), i.to_string());
        }
    });
    // The listener pings as the room's frames arrive: its own thread seals
    // the pongs while the hub seals the room's frames for the same session.
    let (mut next, mut pings, mut pongs) = (0usize, 0usize, 0usize);
    let mut reads = 0;
    while next < COUNT || pongs < pings {
        reads += 1;
        assert!(reads < 10 * COUNT, "too many reads: {next} messages, {pongs} of {pings} pongs");
        match listener.read() {
            Ok(Message::Text(text)) => {
                assert_eq!(text.as_str(), next.to_string(), "messages out of order");
                next += 1;
                if next % 5 == 0 {
                    listener.send(Message::Ping(pings.to_string().into_bytes().into())).unwrap();
                    pings += 1;
                }
            }
            Ok(Message::Pong(payload)) => {
                assert_eq!(&payload[..], pongs.to_string().as_bytes(), "pongs out of order");
                pongs += 1;
            }
            Ok(Message::Ping(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("after {next} messages and {pongs} of {pings} pongs: {e}"),
        }
    }
    assert_eq!((next, pongs), (COUNT, COUNT / 5));
    publishing.join().unwrap();
}

/// Reads from `tcp` until `buf` holds at least one whole TLS record, and
/// returns the records' content types.
fn read_records(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        let mut types = Vec::new();
        let mut at = 0;
        while buf.len() >= at + 5 {
            let len = usize::from(u16::from_be_bytes([buf[at + 3], buf[at + 4]]));
            if buf.len() < at + 5 + len {
                break;
            }
            types.push(buf[at]);
            at += 5 + len;
        }
        if at == buf.len() && !types.is_empty() {
            return Ok(types);
        }
        match tcp.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn a_tls_key_update_is_answered_at_once() {
    let server = TestServer::start_tls(config());
    let mut tls = server.tls_stream();
    assert_eq!(tls.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    tls.write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
    tls.flush().unwrap();
    let head = read_head(&mut tls);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head:?}");

    // A key update that asks for the server's in return, and nothing else:
    // no WebSocket frame would make the server write before its next ping.
    tls.conn.refresh_traffic_keys().unwrap();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock).unwrap();
    }
    let waited = Instant::now();
    tls.sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut raw = Vec::new();
    let types = read_records(&mut tls.sock, &mut raw).unwrap_or_else(|e| {
        panic!("no key update from the server within {:?} ({} bytes read): {e}", waited.elapsed(), raw.len())
    });
    // TLS 1.3 hides a key update in an application-data record.
    assert_eq!(types, [0x17], "one encrypted record");
    tls.conn.read_tls(&mut &raw[..]).unwrap();
    let state = tls.conn.process_new_packets().expect("the server's record decrypts");
    assert_eq!(state.plaintext_bytes_to_read(), 0, "a key update carries no data");

    // Both sides now use new keys, and the connection goes on.
    tls.sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut ws = WebSocket::from_raw_socket(tls, Role::Client, None);
    ws.send(Message::text("after the key update")).unwrap();
    let echoed = loop {
        match ws.read().unwrap() {
            Message::Ping(_) | Message::Pong(_) => continue,
            message => break message,
        }
    };
    assert_eq!(echoed, Message::text("after the key update"));
}

/// Publishes `count` numbered messages of `len` bytes from `publisher`, a
/// member of the room, reading each back before the next so that its own
/// outbox never holds more than one.
fn publish_in_step(publisher: &mut Client, from: usize, count: usize, len: usize) {
    for i in from..from + count {
        let text = numbered(i, len);
        send_text(publisher, &text);
        assert_eq!(recv_text(publisher), text);
    }
}

/// Publishes through `keeper`, a member of the room, 50 messages of `len`
/// bytes at a time until the server has found another member's socket
/// full, then `more`; returns how many in all.
fn publish_until_stalled(server: &TestServer, keeper: &mut Client, len: usize, more: usize) -> usize {
    let mut sent = 0;
    while stat(server, "writes_stalled") == 0 {
        assert!(sent < 4000, "4 MiB never filled a 4 KiB receive buffer");
        publish_in_step(keeper, sent, 50, len);
        sent += 50;
    }
    publish_in_step(keeper, sent, more, len);
    sent + more
}

#[test]
fn a_stalled_client_is_finished_by_the_drain_thread_once_it_reads_again() {
    const COUNT: usize = 300;
    const LEN: usize = 1024;
    let server = TestServer::start(unlimited());
    let mut stalled = sleeper(server.addr(), "/ws/stall");
    let mut publisher = server.connect("/ws/stall");
    publish_in_step(&mut publisher, 0, COUNT, LEN);
    assert!(
        wait_until(PATIENCE, || stat(&server, "writes_stalled") >= 1),
        "300 KiB never filled a 4 KiB receive buffer"
    );
    // The stalled client reads at last: everything, in order, intact.
    for (i, text) in read_texts(&mut stalled, COUNT).into_iter().enumerate() {
        assert!(text == numbered(i, LEN), "message {i} is not what was sent: {:?}...", &text[..16]);
    }
    // The outbox was let go: the next message goes out directly.
    publish_in_step(&mut publisher, COUNT, 1, LEN);
    assert_eq!(read_texts(&mut stalled, 1), [numbered(COUNT, LEN)]);
    let stats = server.stats();
    assert_eq!(stats["write_timeouts"], 0);
    assert_eq!(stats["slow_consumer_closes"], 0);
    assert_eq!(stats["connections_open"], 2);
}

#[test]
fn a_socket_that_takes_nothing_is_hung_up_after_the_write_timeout() {
    const LEN: usize = 1024;
    let write_timeout = ms(300);
    let server = TestServer::start(Config {
        timeouts: Timeouts { write: write_timeout, ..Timeouts::default() },
        ..unlimited()
    });
    let mut stalled = sleeper(server.addr(), "/ws/hang");
    let mut keeper = server.connect("/ws/hang");
    let mut sent = publish_until_stalled(&server, &mut keeper, LEN, 0);
    let stalled_at = Instant::now();
    // The keeper goes on receiving while the drain thread waits out the
    // stalled socket; each poll is one more message through the room.
    let hung_up = wait_until(PATIENCE, || {
        publish_in_step(&mut keeper, sent, 1, LEN);
        sent += 1;
        let stats = server.stats();
        stats["write_timeouts"] == 1 && stats["connections_open"] == 1
    });
    let took = stalled_at.elapsed();
    assert!(hung_up, "the stalled client was never hung up: {}", server.stats());
    assert!(took < write_timeout + Duration::from_secs(2), "hung up only after {took:?}");
    // The client finds the connection over: what the buffers held, then the end.
    let mut read = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stalled.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("expected the end of the stream after {read} bytes, got {e}"),
        }
        assert!(read <= sent * (LEN + 4), "more bytes than were ever sent");
    }
    assert!(read < sent * (LEN + 4), "the hung-up client was sent everything");
    publish_in_step(&mut keeper, sent, 1, LEN);
}

#[test]
fn a_client_whose_window_stays_shut_is_given_up_on_as_a_write_timeout() {
    // A trickle of room messages: the client's window shuts long before the
    // server's socket buffer is full, so the outbox never stalls and the
    // drain thread never looks; the kernel's TCP user timeout (the write
    // and close timeouts together) is what gives up on the client.
    let server = TestServer::start(Config {
        timeouts: Timeouts { write: ms(300), close: ms(100), ..Timeouts::default() },
        ..unlimited()
    });
    let _stalled = sleeper(server.addr(), "/ws/trickle");
    let (mut sent, mut last) = (0, Instant::now());
    let ended = wait_until(PATIENCE, || {
        // 5 KB/s: the server's socket buffer (16 KiB at least) holds
        // seconds of it, the client's window (4 KiB) one.
        if last.elapsed() >= ms(100) {
            server.hub().send_to_room("trickle", numbered(sent, 512).as_str()).unwrap();
            (sent, last) = (sent + 1, Instant::now());
        }
        stat(&server, "connections_open") == 0
    });
    let stats = server.stats();
    assert!(ended, "the client was never given up on: {stats}");
    assert_eq!(stats["writes_stalled"], 0, "the outbox stalled: not the case this tests; {stats}");
    assert_eq!(stats["write_timeouts"], 1, "{stats}");
    assert_eq!(stats["connections_dropped"], 1, "{stats}");
}

#[test]
fn a_clients_close_is_answered_ahead_of_what_waits_for_it() {
    const LEN: usize = 1024;
    let server = TestServer::start(unlimited());
    let mut stalled = sleeper(server.addr(), "/ws/closing");
    let mut keeper = server.connect("/ws/closing");
    let sent = publish_until_stalled(&server, &mut keeper, LEN, 1000);
    stalled.stream.write_all(&frame(true, CLOSE, &[0x03, 0xe8], true)).unwrap();
    // Read only once the server has read the close and queued its reply:
    // each read makes room that the drain thread fills from the outbox,
    // and what is in the kernel's buffers cannot be taken back. Reading at
    // once, the client could empty the outbox before the server's thread
    // even got to the close.
    assert!(
        wait_until(PATIENCE, || stat(&server, "close_frames_received") == 1),
        "the server never read the close: {}",
        server.stats()
    );
    // What the kernel already held, then the reply; the rest is dropped.
    let mut texts = 0;
    loop {
        let (opcode, payload) = read_server_frame(&mut stalled.stream).expect("frames, then the reply");
        match opcode {
            TEXT => texts += 1,
            CLOSE => {
                assert_eq!(payload, [0x03, 0xe8], "the client's code, echoed");
                break;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    assert!(texts < sent / 2, "{texts} of {sent} messages went out before the reply");
    let mut rest = Vec::new();
    assert_eq!(stalled.stream.read_to_end(&mut rest).unwrap(), 0, "the FIN after the reply");
}

#[test]
fn a_client_that_hangs_up_on_its_stalled_output_cannot_keep_it_by_reading_a_little() {
    const LEN: usize = 1024;
    let (write, close) = (ms(2000), ms(200));
    let server = TestServer::start(Config {
        timeouts: Timeouts { write, close, ..Timeouts::default() },
        limits: Limits { max_connections_per_ip: 3, ..unlimited().limits },
        ..unlimited()
    });
    // The stalled client comes from 127.0.0.2, with two idle ones that
    // leave its address no place but the stalled one's: whether a new
    // connection from there is let in shows whether it is still counted.
    let stalled = sleeper_from(2, server.addr(), "/ws/trickle");
    let _idle = [sleeper_from(2, server.addr(), "/ws/idle"), sleeper_from(2, server.addr(), "/ws/idle")];
    let mut keeper = server.connect("/ws/trickle");
    // Far more than the kernel's buffer for the socket grows to meanwhile:
    // the outbox keeps most of it.
    let sent = publish_until_stalled(&server, &mut keeper, LEN, 1000);
    // The client hangs up its side without a close (which would be answered
    // ahead of the queue, dropping it), then takes 4 KiB every 100 ms:
    // enough that its socket keeps taking bytes and the write timeout alone
    // would let it hold its megabyte for half a minute.
    stalled.stream.shutdown(Shutdown::Write).unwrap();
    let said_goodbye = Instant::now();
    let mut reading = stalled.stream.try_clone().unwrap();
    let trickler = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while said_goodbye.elapsed() < PATIENCE {
            thread::sleep(ms(100));
            match reading.read(&mut buf) {
                Ok(1..) => {}
                Ok(0) => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("{e}"),
            }
        }
        said_goodbye.elapsed()
    });
    let status_from_its_address = || {
        let mut stream = connect_from(2, server.addr()).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        read_head(&mut stream).split(' ').nth(1).unwrap_or("none").to_owned()
    };
    // The keeper and the two idle ones are left.
    assert!(wait_until(PATIENCE, || stat(&server, "connections_open") == 3), "its thread never ended");
    // Its socket and queue still held, it keeps its place.
    assert_eq!(status_from_its_address(), "429", "the place of a socket still held was given back");
    // Until the rest of its output has had the write and close timeouts.
    assert!(wait_until(PATIENCE, || status_from_its_address() == "200"), "its place was never given back");
    let took = said_goodbye.elapsed();
    assert!(took < write + close + Duration::from_secs(1), "given up on only after {took:?}");
    assert_eq!(stat(&server, "write_timeouts"), 0, "it kept taking bytes: given up on for the rest");
    // Given up on, it is reset: the kernel drops what it still held for it.
    let took = trickler.join().unwrap();
    assert!(took < write + close + Duration::from_secs(3), "reset only after {took:?}");
    publish_in_step(&mut keeper, sent, 1, LEN);
}

#[test]
fn a_hub_batch_of_the_largest_messages_does_not_close_readers_as_slow_consumers() {
    // A quarter of the default sizes: the budget holds four of the largest
    // messages, but not four with the bookkeeping of each.
    const LARGEST: usize = 256 * 1024;
    const COUNT: usize = 5;
    let base = config();
    let server = TestServer::start(Config {
        limits: Limits { outbox_bytes: 4 * LARGEST, ..base.limits },
        websocket: base.websocket.max_message_size(Some(LARGEST)).max_frame_size(Some(LARGEST)),
        ..base
    });
    // Two members that read what they are sent, as it comes.
    let readers: Vec<JoinHandle<(Client, Vec<Message>)>> = (0..2)
        .map(|_| {
            let mut member = server.connect("/ws/large");
            thread::spawn(move || {
                // Up to COUNT messages, or up to a close.
                let mut messages = Vec::new();
                while messages.len() < COUNT && !matches!(messages.last(), Some(Message::Close(_))) {
                    messages.push(recv(&mut member));
                }
                (member, messages)
            })
        })
        .collect();
    // Encoded first, then handed to the hub back to back, so that they
    // reach it together and are applied in one batch.
    let frames: Vec<Frame> = (0..COUNT).map(|i| Frame::binary(vec![i as u8; LARGEST])).collect();
    for frame in frames {
        server.hub().send_to_room("large", frame).unwrap();
    }
    let mut members = Vec::new();
    for (member, reader) in readers.into_iter().enumerate() {
        let (client, messages) = reader.join().unwrap();
        members.push(client);
        assert_eq!(messages.len(), COUNT, "member {member}: {:?}; {}", messages.last(), server.stats());
        for (i, message) in messages.iter().enumerate() {
            let Message::Binary(data) = message else {
                panic!("member {member}, message {i}: {message:?}; {}", server.stats())
            };
            assert_eq!(data.len(), LARGEST, "member {member}, message {i}");
            assert!(
                data.iter().all(|&b| usize::from(b) == i),
                "member {member}, message {i} is not what was sent"
            );
        }
    }
    let stats = server.stats();
    assert_eq!(stats["slow_consumer_closes"], 0, "{stats}");
    assert_eq!(stats["connections_open"], 2, "{stats}");
}

#[test]
fn no_deadlock_under_slow_consumers_and_a_full_hub() {
    const MEMBERS: usize = 20;
    const MESSAGES: usize = 100_000;
    const LEN: usize = 512;
    let base = unlimited();
    let shutdown_timeout = Duration::from_secs(2);
    let server = TestServer::start(Config {
        limits: Limits { hub_capacity: 2, outbox_bytes: 16 * 1024, ..base.limits },
        websocket: base.websocket.max_message_size(Some(8 * 1024)).max_frame_size(Some(8 * 1024)),
        timeouts: Timeouts { write: ms(1000), shutdown: shutdown_timeout, ..Timeouts::default() },
        ..base
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut held = Vec::new();
    let mut threads = Vec::new();
    for member in 0..MEMBERS {
        // Half of the room reads what it is sent, half never does.
        let reads = member % 2 == 0;
        let client = if reads {
            RawClient::upgrade(server.addr(), "/ws/crowd", b"")
        } else {
            sleeper(server.addr(), "/ws/crowd")
        };
        let mut writing = client.stream.try_clone().unwrap();
        // A publisher whose server has stopped reading it gives up soon.
        writing.set_write_timeout(Some(ms(500))).unwrap();
        let stopped = stop.clone();
        threads.push(thread::spawn(move || {
            // Until told to stop, or cut off; at most MESSAGES.
            for i in 0..MESSAGES {
                let message = frame(true, TEXT, numbered(i, LEN).as_bytes(), true);
                if stopped.load(Ordering::Relaxed) || writing.write_all(&message).is_err() {
                    break;
                }
            }
        }));
        if reads {
            let mut reading = client.stream.try_clone().unwrap();
            threads.push(thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(1..) = reading.read(&mut buf) {}
            }));
        }
        held.push(client);
    }
    // Meanwhile: an echo, a room of its own through the crowded hub, and
    // plain HTTP, each answered in time.
    let mut echo = server.connect("/echo");
    let mut probe = server.connect("/ws/probe");
    for i in 0..20 {
        let asked = Instant::now();
        send_text(&mut echo, &format!("echo {i}"));
        assert_eq!(recv_text(&mut echo), format!("echo {i}"));
        send_text(&mut probe, &format!("probe {i}"));
        assert_eq!(recv_text(&mut probe), format!("probe {i}"));
        assert!(asked.elapsed() < PATIENCE, "round {i} took {:?}", asked.elapsed());
    }
    assert_eq!(server.get("/healthz").status, 200);
    assert!(
        wait_until(PATIENCE, || stat(&server, "slow_consumer_closes") > 0),
        "no member was closed as a slow consumer: {}",
        server.stats()
    );
    stop.store(true, Ordering::Relaxed);
    let took = server.stop();
    assert!(took < shutdown_timeout + ms(500), "shutdown took {took:?}");
    for client in &held {
        let _ = client.stream.shutdown(Shutdown::Both);
    }
    for thread in threads {
        thread.join().unwrap();
    }
}

/// A tungstenite member of `path` that publishes numbered messages, each
/// read back before the next, until told to stop.
fn feed(server: &TestServer, path: &str, len: usize) -> (Arc<AtomicBool>, JoinHandle<usize>) {
    let mut feeder = server.connect(path);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0;
        while !stopped.load(Ordering::Relaxed) && sent < 1_000_000 && started.elapsed() < 3 * PATIENCE {
            publish_in_step(&mut feeder, sent, 1, len);
            sent += 1;
        }
        sent
    });
    (stop, thread)
}

#[test]
fn descriptors_reused_after_stalled_connections_carry_only_their_own_bytes() {
    const STALLERS: usize = 20;
    let server = TestServer::start(Config {
        // Large enough that the stalled are hung up by the write timeout
        // before the feed makes them slow consumers.
        limits: Limits { outbox_bytes: 64 << 20, max_messages_per_sec: 0, ..Limits::default() },
        timeouts: Timeouts { write: ms(300), ..Timeouts::default() },
        ..config()
    });
    let (stop, feeder) = feed(&server, "/ws/a", 512);
    for round in 0..3 {
        let stallers: Vec<RawClient> = (0..STALLERS).map(|_| sleeper(server.addr(), "/ws/a")).collect();
        let hung_up = STALLERS as u64 * (round + 1);
        let started = Instant::now();
        let mut opened = 0;
        // New connections, one at a time, while the stalled are hung up
        // and their descriptors freed for reuse.
        while opened < 5 || stat(&server, "write_timeouts") < hung_up {
            assert!(
                opened < 5000 && started.elapsed() < PATIENCE,
                "round {round}: {opened} opened, stalled never hung up: {}",
                server.stats()
            );
            let mut client = RawClient::upgrade(server.addr(), "/ws/b", b"");
            let expected: Vec<String> = (0..4).map(|j| format!("b {round} {opened} {j}")).collect();
            for text in &expected {
                server.hub().send_to_room("b", text.as_str()).unwrap();
            }
            assert_eq!(read_texts(&mut client, expected.len()), expected, "round {round}, client {opened}");
            // Then its close, answered, and the end: nothing else came.
            client.send(true, CLOSE, &1000u16.to_be_bytes());
            let (opcode, payload) = read_server_frame(&mut client.stream).unwrap();
            assert_eq!((opcode, &payload[..]), (CLOSE, &1000u16.to_be_bytes()[..]));
            let mut rest = Vec::new();
            client.stream.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "round {round}, client {opened}: {} bytes after the close", rest.len());
            opened += 1;
        }
        drop(stallers);
        assert!(wait_until(PATIENCE, || stat(&server, "connections_open") == 1), "{}", server.stats());
    }
    stop.store(true, Ordering::Relaxed);
    assert!(feeder.join().unwrap() > 0);
    let stats = server.stats();
    assert_eq!(stats["slow_consumer_closes"], 0, "{stats}");
    assert_eq!(stats["write_timeouts"], 3 * STALLERS as u64);
}

#[test]
fn a_wss_close_says_close_notify_before_the_fin() {
    let server = TestServer::start_tls(config());
    let mut client = server.connect("/echo");
    client.close(None).unwrap();
    loop {
        match client.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("the close handshake: {e}"),
        }
    }
    // rustls reads 0 only after close_notify; a bare FIN is UnexpectedEof.
    let mut rest = [0u8; 16];
    match client.get_mut().read(&mut rest) {
        Ok(0) => {}
        other => panic!("after the close: {other:?}"),
    }
}
