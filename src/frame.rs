//! A frame encoded once and shared by reference among all its recipients.

use std::fmt;

use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame as WireFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// One WebSocket frame, already encoded for the wire.
///
/// Server frames are never masked, so the bytes are the same for every
/// recipient: a message for a room of a thousand is encoded once, and each
/// member's outbox holds a reference to the same bytes. Cloning a `Frame` is
/// a reference-count increment. Encoding one allocates once.
///
/// ```
/// use switchboard::Frame;
///
/// let frame = Frame::text("hello");
/// assert_eq!(frame.as_bytes(), b"\x81\x05hello");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: tungstenite::Bytes,
}

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;

impl Frame {
    /// A text message.
    pub fn text(text: impl Into<tungstenite::Utf8Bytes>) -> Self {
        Frame::from(Message::Text(text.into()))
    }

    /// A binary message.
    pub fn binary(data: impl Into<tungstenite::Bytes>) -> Self {
        Frame::from(Message::Binary(data.into()))
    }

    /// A close frame carrying `close` (or no payload when `None`).
    pub fn close(close: Option<CloseFrame>) -> Self {
        Frame::from(Message::Close(close))
    }

    pub(crate) fn ping() -> Self {
        Frame::encode(WireFrame::ping(tungstenite::Bytes::new()))
    }

    pub(crate) fn pong(payload: tungstenite::Bytes) -> Self {
        Frame::encode(WireFrame::pong(payload))
    }

    fn encode(frame: WireFrame) -> Self {
        let mut bytes = Vec::with_capacity(frame.len());
        frame.format(&mut bytes).expect("Bug: formatting a frame into a Vec cannot fail");
        // Bytes takes the Vec's allocation as it is: no second copy.
        Frame { bytes: bytes.into() }
    }

    /// The encoded frame: header and payload, exactly as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The number of bytes on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Returns true if and only if the frame has no bytes, which never happens
    /// for a frame built by this type.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn opcode(&self) -> u8 {
        self.bytes[0] & 0x0f
    }

    /// Returns true if and only if this is a text or binary message.
    pub fn is_message(&self) -> bool {
        matches!(self.opcode(), OPCODE_TEXT | OPCODE_BINARY)
    }

    /// Returns true if and only if this is a close frame.
    pub fn is_close(&self) -> bool {
        self.opcode() == OPCODE_CLOSE
    }

    /// The payload: the frame without its header. Server frames are unmasked,
    /// so the header is 2, 4 or 10 bytes long depending on the length field.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[header_len(self.bytes[1])..]
    }

    /// The code and reason of a close frame; `None` for any other frame, or a
    /// close frame without a payload.
    pub fn close_frame(&self) -> Option<CloseFrame> {
        let payload = self.payload();
        if !self.is_close() || payload.len() < 2 {
            return None;
        }
        let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
        let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
        Some(CloseFrame { code, reason: reason.into() })
    }

    /// A frame that arrived already encoded, from another server node: one
    /// whole, final, unmasked text or binary frame, its length field
    /// matching its bytes and as short as it can be, a text payload valid
    /// UTF-8; `None` otherwise.
    ///
    /// The bytes go to clients as they are, so they are checked here rather
    /// than trusted: a peer node, or anything else that writes to the same
    /// Redis channel, must not be able to put a malformed frame, a control
    /// frame or half a frame on a client's wire.
    pub(crate) fn from_wire(bytes: &[u8]) -> Option<Frame> {
        let [first, second, ..] = *bytes else {
            return None;
        };
        // FIN set, RSV1-3 clear, and the mask bit clear: a server frame.
        let fin_and_opcode_only = first & 0xf0 == 0x80;
        if !fin_and_opcode_only || second & 0x80 != 0 {
            return None;
        }
        let header_len = header_len(second);
        let length_field = bytes.get(2..header_len)?;
        let payload_len = match second & 0x7f {
            126 => u64::from(u16::from_be_bytes(length_field.try_into().ok()?)),
            127 => u64::from_be_bytes(length_field.try_into().ok()?),
            len => u64::from(len),
        };
        // RFC 6455 section 5.2: the length in as few bytes as will hold it,
        // which browsers enforce by failing the connection.
        let shortest = match payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        if header_len != shortest {
            return None;
        }
        let payload = bytes.get(header_len..)?;
        if payload.len() as u64 != payload_len {
            return None;
        }
        match first & 0x0f {
            OPCODE_TEXT if std::str::from_utf8(payload).is_err() => None,
            OPCODE_TEXT | OPCODE_BINARY => Some(Frame { bytes: tungstenite::Bytes::copy_from_slice(bytes) }),
            _ => None,
        }
    }

    /// Returns true if and only if both are the very same frame (not merely
    /// equal bytes): a connection uses it to tell its own close reply from a
    /// close the server started.
    pub(crate) fn same_as(&self, other: &Frame) -> bool {
        std::ptr::eq(self.as_bytes(), other.as_bytes())
    }
}

/// Frames encoded back to back, once, for every member of a room: what the
/// hub appends to each member's outbox when several messages for one room
/// arrive in one batch. Each member's outbox then sends them with one
/// buffer, copied once for the room, where one buffer per frame would have
/// the kernel walk them one by one for every member.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Run {
    bytes: tungstenite::Bytes,
    frames: usize,
}

impl Run {
    /// The frames, in order, as one buffer. Every one of them is a message:
    /// runs are made of room messages only.
    pub(crate) fn new(frames: &[Frame]) -> Run {
        debug_assert!(frames.iter().all(Frame::is_message));
        let mut bytes = Vec::with_capacity(frames.iter().map(Frame::len).sum());
        for frame in frames {
            bytes.extend_from_slice(frame.as_bytes());
        }
        Run { bytes: bytes.into(), frames: frames.len() }
    }

    /// One message as a run of one, sharing its bytes rather than copying
    /// them.
    pub(crate) fn single(frame: Frame) -> Run {
        debug_assert!(frame.is_message());
        Run { bytes: frame.bytes, frames: 1 }
    }

    /// The frames, back to back, exactly as they go on the wire.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The number of frames (all messages) in the run.
    pub(crate) fn frames(&self) -> usize {
        self.frames
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run").field("frames", &self.frames).field("len", &self.bytes.len()).finish()
    }
}

/// The most a control frame (ping, pong, close) carries (RFC 6455 §5.5).
const CONTROL_PAYLOAD: usize = 125;

/// A message as RFC 6455 lets it go on the wire: a ping's or pong's payload
/// cut to 125 bytes, a close reason to 123 (at a character's boundary), and
/// a close code that may not be sent (1005, 1006, 1015, reserved codes)
/// dropped, leaving a close without one. A client would otherwise fail the
/// connection with 1002 on what the application meant as a goodbye.
impl From<Message> for Frame {
    fn from(message: Message) -> Self {
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        let control = |data: tungstenite::Bytes| data.slice(..data.len().min(CONTROL_PAYLOAD));
        let frame = match message {
            Message::Text(text) => WireFrame::message(text, OpCode::Data(Data::Text), true),
            Message::Binary(data) => WireFrame::message(data, OpCode::Data(Data::Binary), true),
            Message::Ping(data) => WireFrame::ping(control(data)),
            Message::Pong(data) => WireFrame::pong(control(data)),
            Message::Close(close) => WireFrame::close(close.filter(|c| c.code.is_allowed()).map(sendable)),
            Message::Frame(frame) => frame,
        };
        Frame::encode(frame)
    }
}

/// `close` with its reason cut to what fits beside the code.
fn sendable(close: CloseFrame) -> CloseFrame {
    let most = CONTROL_PAYLOAD - 2;
    if close.reason.len() <= most {
        return close;
    }
    let end = (0..=most).rev().find(|&end| close.reason.is_char_boundary(end)).unwrap_or(0);
    CloseFrame { code: close.code, reason: close.reason.as_str()[..end].to_owned().into() }
}

impl From<&str> for Frame {
    fn from(text: &str) -> Self {
        Frame::text(text)
    }
}

impl From<String> for Frame {
    fn from(text: String) -> Self {
        Frame::text(text)
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame").field("opcode", &self.opcode()).field("len", &self.len()).finish()
    }
}

/// The length of an unmasked frame's header, from its second byte: the
/// 7-bit length 126 means 2 more length bytes, 127 means 8.
fn header_len(second: u8) -> usize {
    match second & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_frame_is_unmasked_and_final() {
        assert_eq!(Frame::text("hi").as_bytes(), b"\x81\x02hi");
    }

    #[test]
    fn payload_skips_extended_length_header() {
        let small = Frame::binary(vec![7u8; 125]);
        assert_eq!(small.payload().len(), 125);
        let medium = Frame::binary(vec![7u8; 126]);
        assert_eq!(medium.len(), 4 + 126);
        assert_eq!(medium.payload().len(), 126);
        let large = Frame::binary(vec![7u8; 70_000]);
        assert_eq!(large.len(), 10 + 70_000);
        assert_eq!(large.payload().len(), 70_000);
    }

    #[test]
    fn control_frames_are_kept_within_what_rfc_6455_allows() {
        let ping = Frame::from(Message::Ping(vec![1u8; 200].into()));
        assert_eq!(ping.as_bytes()[1] as usize, 125, "a ping's payload is cut to 125 bytes");
        // 'é' is two bytes: the cut falls before the one it would split.
        let reason = format!("{}é", "x".repeat(122));
        let close = Frame::close(Some(CloseFrame { code: CloseCode::Normal, reason: reason.into() }));
        let sent = close.close_frame().unwrap();
        assert_eq!((sent.code, sent.reason.len()), (CloseCode::Normal, 122));
        assert!(close.payload().len() <= 125);
        for code in [CloseCode::Status, CloseCode::Abnormal, CloseCode::Tls, CloseCode::from(999)] {
            let frame = Frame::close(Some(CloseFrame { code, reason: "bye".into() }));
            assert_eq!(frame.as_bytes(), b"\x88\x00", "{code}: a close without a code");
        }
    }

    #[test]
    fn close_frame_round_trips() {
        let frame = Frame::close(Some(CloseFrame { code: CloseCode::Away, reason: "bye".into() }));
        assert!(frame.is_close());
        assert!(!frame.is_message());
        let close = frame.close_frame().unwrap();
        assert_eq!(close.code, CloseCode::Away);
        assert_eq!(close.reason.as_str(), "bye");
        assert_eq!(Frame::close(None).close_frame(), None);
    }

    #[test]
    fn wire_bytes_of_our_own_frames_are_accepted() {
        for frame in [Frame::text("héllo"), Frame::binary(vec![0u8; 300]), Frame::binary(vec![1u8; 70_000])]
        {
            assert_eq!(Frame::from_wire(frame.as_bytes()), Some(frame));
        }
    }

    #[test]
    fn malformed_or_foreign_wire_bytes_are_refused() {
        let text = Frame::text("hello");
        let bytes = text.as_bytes();
        let refused: [&[u8]; 10] = [
            b"",
            b"\x81",
            &bytes[..bytes.len() - 1],                     // half a frame
            &[bytes, b"x"].concat(),                       // a frame and a stray byte
            b"\x01\x02hi",                                 // not final
            b"\x81\x82abcdhi",                             // masked
            b"\x89\x00",                                   // a ping
            b"\x81\x02\xff\xfe",                           // text that is not UTF-8
            b"\x81\x7e\x00\x05hello",                      // 5 written in two bytes
            b"\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x02hi", // 2 written in eight bytes
        ];
        for bytes in refused {
            assert_eq!(Frame::from_wire(bytes), None, "{bytes:?}");
        }
        assert_eq!(Frame::from_wire(b"\x88\x00"), None, "a close frame");
    }

    #[test]
    fn a_run_is_its_frames_back_to_back() {
        let frames = [Frame::text("one"), Frame::binary(vec![2u8; 300])];
        let run = Run::new(&frames);
        assert_eq!(run.frames(), 2);
        assert_eq!(run.as_bytes(), [frames[0].as_bytes(), frames[1].as_bytes()].concat());
        let single = Run::single(frames[0].clone());
        assert_eq!(single.frames(), 1);
        assert!(std::ptr::eq(single.as_bytes(), frames[0].as_bytes()), "shared, not copied");
    }

    #[test]
    fn clones_share_bytes() {
        let frame = Frame::text("x");
        let copy = frame.clone();
        assert!(frame.same_as(&copy));
        assert!(!frame.same_as(&Frame::text("x")));
    }
}
