//! Verifies that rooms relay to their members only, in order, and that echo
//! and the hub handle deliver, over ws:// and wss:// alike.

use std::thread;

use crate::support::{Scheme, TestServer, config, recv, recv_text, send_text};
use switchboard::Message;

fn room_members_receive_each_message_sender_included(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let mut a = server.connect("/ws/room");
    let mut b = server.connect("/ws/room");
    send_text(&mut a, "from a");
    assert_eq!(recv_text(&mut a), "from a");
    assert_eq!(recv_text(&mut b), "from a");
    send_text(&mut b, "from b");
    assert_eq!(recv_text(&mut a), "from b");
    assert_eq!(recv_text(&mut b), "from b");
}

fn rooms_are_isolated(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let mut red = server.connect("/ws/red");
    let mut blue = server.connect("/ws/blue");
    send_text(&mut red, "for red only");
    send_text(&mut blue, "for blue only");
    assert_eq!(recv_text(&mut red), "for red only");
    assert_eq!(recv_text(&mut blue), "for blue only");
    // Blue's next message is its own second one: red's never reached it.
    send_text(&mut blue, "second");
    assert_eq!(recv_text(&mut blue), "second");
}

fn thousand_messages_per_sender_arrive_in_order(scheme: Scheme) {
    const COUNT: usize = 1000;
    let server = TestServer::start_scheme(scheme, config());
    let mut listener = server.connect("/ws/order");
    let senders: Vec<_> = (0..2)
        .map(|s| {
            let mut client = server.connect("/ws/order");
            thread::spawn(move || {
                for i in 0..COUNT {
                    send_text(&mut client, &format!("{s}:{i}"));
                }
                // Keep the sender open until its own messages are back, so
                // closing it cannot race the relay.
                let mut seen = 0;
                while seen < COUNT {
                    if recv_text(&mut client).starts_with(&format!("{s}:")) {
                        seen += 1;
                    }
                }
            })
        })
        .collect();
    let mut next = [0usize; 2];
    while next.iter().sum::<usize>() < 2 * COUNT {
        let text = recv_text(&mut listener);
        let (sender, seq) = text.split_once(':').unwrap();
        let (sender, seq): (usize, usize) = (sender.parse().unwrap(), seq.parse().unwrap());
        assert_eq!(seq, next[sender], "sender {sender} out of order");
        next[sender] += 1;
    }
    for sender in senders {
        sender.join().unwrap();
    }
}

fn echo_returns_every_message_to_its_sender_only(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let mut one = server.connect("/echo");
    let mut two = server.connect("/echo");
    send_text(&mut one, "ping one");
    send_text(&mut two, "ping two");
    assert_eq!(recv_text(&mut one), "ping one");
    assert_eq!(recv_text(&mut two), "ping two");
}

fn binary_stays_binary(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let mut client = server.connect("/ws/bytes");
    client.send(Message::binary(vec![0u8, 159, 146, 150])).unwrap();
    assert_eq!(recv(&mut client), Message::binary(vec![0u8, 159, 146, 150]));
}

fn hub_handle_sends_to_a_room_one_client_and_everyone(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let mut lobby = server.connect("/ws/lobby");
    let mut echo = server.connect("/echo");
    server.hub().send_to_room("lobby", "to the lobby").unwrap();
    assert_eq!(recv_text(&mut lobby), "to the lobby");
    server.hub().broadcast("to everyone").unwrap();
    assert_eq!(recv_text(&mut lobby), "to everyone");
    assert_eq!(recv_text(&mut echo), "to everyone");
    // Connections are numbered in accept order from 1: lobby is #1, echo #2.
    server.hub().send_to(switchboard::ConnectionId(2), "to #2").unwrap();
    assert_eq!(recv_text(&mut echo), "to #2");
}

fn large_message_is_relayed_whole(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let mut client = server.connect("/ws/large");
    let big = "x".repeat(900 * 1024);
    send_text(&mut client, &big);
    assert_eq!(recv_text(&mut client).len(), big.len());
}

fn fragmented_message_is_reassembled(scheme: Scheme) {
    use switchboard::tungstenite::protocol::frame::Frame;
    use switchboard::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::start_scheme(
        scheme,
        switchboard::Config {
            websocket: switchboard::WebSocketConfig::default()
                .max_message_size(Some(8 << 20))
                .max_frame_size(Some(8 << 20)),
            limits: switchboard::Limits { outbox_bytes: 16 << 20, ..switchboard::Limits::default() },
            ..config()
        },
    );
    let mut client = server.connect("/echo");
    // 4 MiB in 4 KiB fragments: over TLS, records end and begin inside
    // the server's socket reads.
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    for (i, chunk) in payload.chunks(4096).enumerate() {
        let opcode = if i == 0 { OpCode::Data(Data::Binary) } else { OpCode::Data(Data::Continue) };
        let last = (i + 1) * 4096 >= payload.len();
        client.write(Message::Frame(Frame::message(chunk.to_vec(), opcode, last))).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(recv(&mut client), Message::binary(payload));
}

crate::both_schemes!(
    fragmented_message_is_reassembled,
    room_members_receive_each_message_sender_included,
    rooms_are_isolated,
    thousand_messages_per_sender_arrive_in_order,
    echo_returns_every_message_to_its_sender_only,
    binary_stays_binary,
    hub_handle_sends_to_a_room_one_client_and_everyone,
    large_message_is_relayed_whole,
);
