//! The benchmark message: what it is, which stream it belongs to, its sequence number and send time.
//!
//! Every message is a binary WebSocket message with a fixed 24-byte header
//! followed by filler up to the requested size, so that the size on the wire
//! is what the user asked for and the header is cheap to read back:
//!
//! ```text
//! 0       8          16       20    21      24
//! | seq   | sent (ns) | stream | kind | 0 0 0 | filler ...
//! ```
//!
//! All integers are little-endian. The filler is printable ASCII so that a
//! server logging a message shows something readable.

use crate::clock::Nanos;

/// Bytes taken by the header; the smallest message the tool sends.
pub const HEADER_LEN: usize = 24;

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A measured message: counted, timed and checked for order.
    Data,
    /// A fanout roll call: a subscriber that sees one is in the room, so it
    /// will see every message published after it.
    Marker,
}

impl Kind {
    fn to_byte(self) -> u8 {
        match self {
            Kind::Data => 0,
            Kind::Marker => 1,
        }
    }

    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            0 => Some(Kind::Data),
            1 => Some(Kind::Marker),
            _ => None,
        }
    }
}

/// The header of one benchmark message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// What the message is for.
    pub kind: Kind,
    /// Who numbered it: an echo connection, a churn worker, the publisher.
    pub stream: u32,
    /// Its number within the stream, from 0.
    pub seq: u64,
    /// When it was sent, on the run's [`Clock`](crate::clock::Clock).
    pub sent: Nanos,
}

impl Payload {
    /// A data message.
    pub fn data(stream: u32, seq: u64, sent: Nanos) -> Self {
        Payload { kind: Kind::Data, stream, seq, sent }
    }

    /// The message as `size` bytes (at least [`HEADER_LEN`]; shorter sizes are
    /// rounded up, which argument checking prevents).
    pub fn encode(&self, size: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(size.max(HEADER_LEN));
        bytes.extend_from_slice(&self.seq.to_le_bytes());
        bytes.extend_from_slice(&self.sent.to_le_bytes());
        bytes.extend_from_slice(&self.stream.to_le_bytes());
        bytes.extend_from_slice(&[self.kind.to_byte(), 0, 0, 0]);
        bytes.resize(size.max(HEADER_LEN), b'.');
        bytes
    }

    /// Reads the header back, or `None` if `bytes` is not one of our messages.
    pub fn decode(bytes: &[u8]) -> Option<Payload> {
        let header = bytes.get(..HEADER_LEN)?;
        let u64_at = |at: usize| header[at..at + 8].try_into().ok().map(u64::from_le_bytes);
        Some(Payload {
            seq: u64_at(0)?,
            sent: u64_at(8)?,
            stream: header[16..20].try_into().ok().map(u32::from_le_bytes)?,
            kind: Kind::from_byte(header[20])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_the_requested_size() {
        let payload = Payload { kind: Kind::Marker, stream: 7, seq: 1 << 40, sent: 123_456_789 };
        let bytes = payload.encode(100);
        assert_eq!(bytes.len(), 100);
        assert_eq!(Payload::decode(&bytes), Some(payload));
    }

    #[test]
    fn never_shorter_than_the_header() {
        assert_eq!(Payload::data(1, 2, 3).encode(3).len(), HEADER_LEN);
    }

    #[test]
    fn foreign_messages_are_not_ours() {
        assert_eq!(Payload::decode(b"hello"), None);
        let mut bytes = Payload::data(1, 2, 3).encode(64);
        bytes[20] = 9;
        assert_eq!(Payload::decode(&bytes), None);
    }
}
