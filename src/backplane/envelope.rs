//! The envelope a room message travels in between nodes: who sent it, and the frame as encoded.
//!
//! ```text
//! 'S' 'B' version=1 | id length (1 byte) | node id | the frame, header and payload
//! ```
//!
//! Binary rather than JSON so that the frame's bytes go through untouched:
//! the receiving node hands them to its clients as they are, with no
//! re-encoding, and writing an envelope costs one copy of the frame, into
//! the command buffer that goes to Redis. The two magic bytes and the
//! version let a node refuse what another program, or a later switchboard,
//! wrote to the same channel.

use std::io::Write;

use redis::{RedisWrite, ToRedisArgs, ToSingleRedisArg};

use crate::frame::Frame;

const MAGIC: [u8; 2] = *b"SB";
const VERSION: u8 = 1;
/// Magic, version and the id's length.
const HEADER_LEN: usize = 4;

/// A message on its way out: the sending node and the frame.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    pub(crate) origin: &'a [u8],
    pub(crate) frame: &'a Frame,
}

/// A message that arrived, taken apart but not yet checked as a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Opened<'a> {
    pub(crate) origin: &'a [u8],
    pub(crate) frame: &'a [u8],
}

/// Why an arriving message is not an envelope this node can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    /// Not switchboard's magic bytes, or cut short.
    #[error("not a switchboard envelope")]
    Foreign,
    /// Written by a version of switchboard this one does not read.
    #[error("envelope version {0}, expected {VERSION}")]
    Version(u8),
}

impl Envelope<'_> {
    /// Writes the envelope into `out`.
    pub(crate) fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let id_len = u8::try_from(self.origin.len()).expect("Bug: node ids are validated to 64 bytes");
        let header: [u8; HEADER_LEN] = [MAGIC[0], MAGIC[1], VERSION, id_len];
        out.write_all(&header)?;
        out.write_all(self.origin)?;
        out.write_all(self.frame.as_bytes())
    }
}

/// Written straight into the command buffer, as one argument of PUBLISH.
impl ToRedisArgs for Envelope<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        self.write_to(&mut out.writer_for_next_arg()).expect("Bug: writing to a command buffer cannot fail");
    }
}

impl ToSingleRedisArg for Envelope<'_> {}

/// Takes an arriving message apart.
pub(crate) fn open(bytes: &[u8]) -> Result<Opened<'_>, Malformed> {
    let [m0, m1, version, id_len, rest @ ..] = bytes else {
        return Err(Malformed::Foreign);
    };
    if [*m0, *m1] != MAGIC {
        return Err(Malformed::Foreign);
    }
    if *version != VERSION {
        return Err(Malformed::Version(*version));
    }
    let id_len = usize::from(*id_len);
    if id_len == 0 || rest.len() < id_len {
        return Err(Malformed::Foreign);
    }
    let (origin, frame) = rest.split_at(id_len);
    Ok(Opened { origin, frame })
}

/// A room's channel name, written straight into the command buffer: the
/// prefix, a slash and the room.
///
/// A prefix holds no slash, so a channel's first slash ends its prefix, and
/// two prefixes never share a channel, whatever their rooms are called:
/// with the prefix and the room side by side, `switchboard:` and a room
/// `staging:lobby` made the channel of `switchboard:staging:` and `lobby`,
/// and one deployment heard another's room. The greetings' channel, the
/// prefix alone, has no slash, and is no room's either.
#[derive(Debug)]
pub(crate) struct Channel<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) room: &'a str,
}

/// What stands between a channel's prefix and its room.
pub(crate) const SEPARATOR: &str = "/";

impl Channel<'_> {
    pub(crate) fn name(&self) -> String {
        format!("{}{SEPARATOR}{}", self.prefix, self.room)
    }

    /// The room whose channel is `name`, under `prefix`.
    pub(crate) fn room_of<'n>(name: &'n str, prefix: &str) -> Option<&'n str> {
        name.strip_prefix(prefix)?.strip_prefix(SEPARATOR)
    }
}

impl ToRedisArgs for Channel<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        let written = arg
            .write_all(self.prefix.as_bytes())
            .and_then(|()| arg.write_all(SEPARATOR.as_bytes()))
            .and_then(|()| arg.write_all(self.room.as_bytes()));
        written.expect("Bug: writing to a command buffer cannot fail");
    }
}

impl ToSingleRedisArg for Channel<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(origin: &[u8], frame: &Frame) -> Vec<u8> {
        let mut bytes = Vec::new();
        Envelope { origin, frame }.write_to(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn round_trip_keeps_the_frame_bytes() {
        let frame = Frame::text("hello");
        let bytes = sealed(b"node-a", &frame);
        assert_eq!(bytes.len(), HEADER_LEN + 6 + frame.len());
        let opened = open(&bytes).unwrap();
        assert_eq!(opened, Opened { origin: b"node-a", frame: frame.as_bytes() });
    }

    #[test]
    fn foreign_and_future_messages_are_refused() {
        assert_eq!(open(b""), Err(Malformed::Foreign));
        assert_eq!(open(b"hello world"), Err(Malformed::Foreign));
        assert_eq!(open(b"SB\x01\x00\x81\x00"), Err(Malformed::Foreign), "an empty id");
        assert_eq!(open(b"SB\x01\x09abc"), Err(Malformed::Foreign), "an id cut short");
        assert_eq!(open(b"SB\x02\x01a\x81\x00"), Err(Malformed::Version(2)));
    }

    #[test]
    fn arguments_are_written_whole() {
        let frame = Frame::text("hi");
        let envelope = Envelope { origin: b"n1", frame: &frame };
        assert_eq!(envelope.to_redis_args(), vec![sealed(b"n1", &frame)]);
        let channel = Channel { prefix: "switchboard:", room: "lobby" };
        assert_eq!(channel.to_redis_args(), vec![b"switchboard:/lobby".to_vec()]);
        assert_eq!(channel.name(), "switchboard:/lobby");
    }

    #[test]
    fn two_prefixes_never_share_a_channel() {
        let a = Channel { prefix: "switchboard:", room: "staging:lobby" }.name();
        let b = Channel { prefix: "switchboard:staging:", room: "lobby" }.name();
        assert_ne!(a, b);
        assert_eq!(Channel::room_of(&a, "switchboard:"), Some("staging:lobby"));
        assert_eq!(Channel::room_of(&a, "switchboard:staging:"), None);
        assert_eq!(Channel::room_of(&b, "switchboard:staging:"), Some("lobby"));
        assert_eq!(Channel::room_of(&b, "switchboard:"), None, "its prefix is not a room's");
        let nested = Channel { prefix: "p", room: "a/b" }.name();
        assert_eq!(Channel::room_of(&nested, "p"), Some("a/b"), "a room may hold a slash");
        assert_eq!(Channel::room_of("p", "p"), None, "the greetings' channel is no room's");
    }
}
