//! Why a connection ended, and the close code that says so.
//!
//! | code | sent when |
//! | --- | --- |
//! | 1000 | echoed when the client closes normally |
//! | 1001 | the server shuts down; the client was idle past the idle timeout; the connection reached its maximum lifetime |
//! | 1002 | the client broke RFC 6455 (unmasked frame, bad opcode, ...) |
//! | 1007 | a text message or close reason is not valid UTF-8 |
//! | 1008 | the client's outbox was full: it is not reading fast enough; or it sent messages faster than its rate limit; or the JWT it was admitted with has expired |
//! | 1009 | a message or frame is larger than the configured limit |
//! | 1011 | the server failed in a way that is not the client's fault |

use std::fmt;
use std::io;

use tungstenite::error::{CapacityError, Error as WsError};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::log_text::Untrusted;

/// The reasons the server itself closes a connection, each with its close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server is shutting down: 1001.
    Shutdown,
    /// Nothing, not even a pong, arrived within the idle timeout: 1001.
    IdleTimeout,
    /// The connection has been open for its maximum lifetime: 1001. The
    /// client may reconnect at once.
    Lifetime,
    /// The client broke the protocol: 1002.
    Protocol,
    /// Invalid UTF-8 in a text message or close reason: 1007.
    InvalidUtf8,
    /// The client's outbox was full: 1008.
    SlowConsumer,
    /// The client sent messages faster than its rate limit: 1008.
    RateLimited,
    /// The JWT the connection was admitted with has expired: 1008. The
    /// client should reconnect with a fresh token.
    CredentialsExpired,
    /// The bearer token the connection was admitted with is no longer
    /// taken (a reload left it out): 1008. The client needs another.
    CredentialsRevoked,
    /// A message or frame over the size limit: 1009.
    TooBig,
    /// A failure on the server's side: 1011.
    Internal,
}

impl CloseReason {
    /// The close code sent to the client.
    pub fn code(self) -> CloseCode {
        match self {
            CloseReason::Shutdown | CloseReason::IdleTimeout | CloseReason::Lifetime => CloseCode::Away,
            CloseReason::Protocol => CloseCode::Protocol,
            CloseReason::InvalidUtf8 => CloseCode::Invalid,
            CloseReason::SlowConsumer
            | CloseReason::RateLimited
            | CloseReason::CredentialsExpired
            | CloseReason::CredentialsRevoked => CloseCode::Policy,
            CloseReason::TooBig => CloseCode::Size,
            CloseReason::Internal => CloseCode::Error,
        }
    }

    /// The reason text sent to the client.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Shutdown => "server shutting down",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::Lifetime => "connection lifetime reached",
            CloseReason::Protocol => "protocol error",
            CloseReason::InvalidUtf8 => "invalid utf-8",
            CloseReason::SlowConsumer => "slow consumer: outbox full",
            CloseReason::RateLimited => "message rate limit exceeded",
            CloseReason::CredentialsExpired => "credentials expired",
            CloseReason::CredentialsRevoked => "credentials revoked",
            CloseReason::TooBig => "message too big",
            CloseReason::Internal => "internal error",
        }
    }

    /// The close frame: code and reason.
    pub fn frame(self) -> CloseFrame {
        CloseFrame { code: self.code(), reason: self.text().into() }
    }

    /// What the server sends after a read failed with `error`, or `None` when
    /// the peer is gone and there is no one left to tell.
    pub(crate) fn for_read_error(error: &WsError) -> Option<CloseReason> {
        use tungstenite::error::ProtocolError::ResetWithoutClosingHandshake;
        match error {
            WsError::ConnectionClosed | WsError::AlreadyClosed => None,
            WsError::Protocol(ResetWithoutClosingHandshake) => None,
            WsError::Io(e) if is_timeout(e) => Some(CloseReason::IdleTimeout),
            WsError::Io(_) => None,
            WsError::Capacity(CapacityError::MessageTooLong { .. }) => Some(CloseReason::TooBig),
            WsError::Capacity(_) => Some(CloseReason::TooBig),
            WsError::Utf8(_) => Some(CloseReason::InvalidUtf8),
            WsError::Protocol(_) | WsError::AttackAttempt => Some(CloseReason::Protocol),
            _ => Some(CloseReason::Internal),
        }
    }
}

/// Returns true if and only if `error` is a socket timeout. A read timeout is
/// `WouldBlock` on Unix and `TimedOut` on Windows.
pub(crate) fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// How a WebSocket connection ended, as [`Handler::on_close`](crate::Handler::on_close) sees it.
///
/// Its `Display` is one phrase for a log line, such as `closed by client:
/// 1000 bye`; the close reason in it is escaped and cut short, as the
/// client chose it.
///
/// More ways to end may be told apart in later versions: a `match` on it
/// needs an arm for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The client started the close handshake, with this frame (the server
    /// echoed it).
    ByClient(Option<CloseFrame>),
    /// The client started the close handshake with a code that may not be
    /// sent (RFC 6455 §7.4): 999, 1004, 1005, 1006, 1015 or 5000, say. The
    /// server answered 1002, a protocol error. Which code it was is not
    /// known: tungstenite replaces it before the server reads the frame.
    ByClientInvalidCode,
    /// The server closed the connection with this frame: a timeout, a limit,
    /// a protocol error, a slow consumer, a shutdown, or the application.
    ByServer(CloseFrame),
    /// The TCP connection ended without a close handshake.
    Dropped,
}

impl Ending {
    /// Returns true if and only if the ending points at a fault (a limit, a
    /// protocol error, a slow consumer) rather than the ordinary life of a
    /// connection. Faults are logged at `warn`, the rest at `debug`.
    pub fn is_fault(&self) -> bool {
        self.fault_code().is_some()
    }

    /// The close code of a fault (see [`is_fault`](Ending::is_fault)): the
    /// server's, or the 1002 it answered a client's invalid code with.
    pub(crate) fn fault_code(&self) -> Option<CloseCode> {
        match self {
            Ending::ByServer(close) if !matches!(close.code, CloseCode::Away | CloseCode::Normal) => {
                Some(close.code)
            }
            Ending::ByClientInvalidCode => Some(CloseCode::Protocol),
            Ending::ByServer(_) | Ending::ByClient(_) | Ending::Dropped => None,
        }
    }

    /// How a close handshake the client started ended, from the close frame
    /// tungstenite read.
    pub(crate) fn by_client(close: Option<CloseFrame>) -> Ending {
        match close {
            Some(close) if close.code == CloseCode::Protocol && close.reason == INVALID_CODE_ANSWER => {
                Ending::ByClientInvalidCode
            }
            close => Ending::ByClient(close),
        }
    }
}

/// The reason of the close frame tungstenite reads, with code 1002, in
/// place of a client's close whose code may not be sent; the client's own
/// code and reason are gone by then. A client that itself closes with 1002
/// and these words is taken for one that sent an invalid code.
const INVALID_CODE_ANSWER: &str = "Protocol violation";

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The reason is the client's own text, or the application's:
            // it is written escaped and cut short, as it goes to the log.
            Ending::ByClient(Some(close)) => {
                write!(f, "closed by client: {} {}", close.code, Untrusted(&close.reason))
            }
            Ending::ByClient(None) => write!(f, "closed by client"),
            Ending::ByClientInvalidCode => {
                write!(f, "closed by client with an invalid close code, answered 1002")
            }
            Ending::ByServer(close) => {
                write!(f, "closed by server: {} {}", close.code, Untrusted(&close.reason))
            }
            Ending::Dropped => write!(f, "dropped without a close handshake"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::error::ProtocolError;

    #[test]
    fn a_client_close_reason_cannot_forge_a_log_line() {
        let close = CloseFrame { code: CloseCode::Normal, reason: "bye\n[INFO] forged\u{202e}".into() };
        let text = Ending::ByClient(Some(close)).to_string();
        assert_eq!(text, "closed by client: 1000 bye\\n[INFO] forged\\u{202e}");
    }

    #[test]
    fn read_errors_map_to_rfc_codes() {
        let too_long = WsError::Capacity(CapacityError::MessageTooLong { size: 2, max_size: 1 });
        let code = |e: &WsError| CloseReason::for_read_error(e).map(|r| u16::from(r.code()));
        assert_eq!(code(&too_long), Some(1009));
        assert_eq!(code(&WsError::Utf8("bad".into())), Some(1007));
        assert_eq!(code(&WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)), Some(1002));
        assert_eq!(code(&WsError::Io(io::ErrorKind::WouldBlock.into())), Some(1001));
        assert_eq!(code(&WsError::Io(io::ErrorKind::ConnectionReset.into())), None);
        assert_eq!(code(&WsError::ConnectionClosed), None);
        assert_eq!(code(&WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)), None);
    }

    /// The close frame tungstenite reads from a client's close with `code`.
    fn read_by_tungstenite(code: u16) -> Option<CloseFrame> {
        // Masked with a zero mask, with a reason; tungstenite's answer is
        // written after it, and left there.
        let mut frame = vec![0x88, 0x80 | 5, 0, 0, 0, 0];
        frame.extend_from_slice(&code.to_be_bytes());
        frame.extend_from_slice(b"bye");
        let wire = io::Cursor::new(frame);
        let mut ws = tungstenite::WebSocket::from_raw_socket(wire, tungstenite::protocol::Role::Server, None);
        match ws.read().unwrap() {
            tungstenite::Message::Close(close) => close,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_close_code_that_may_not_be_sent_is_told_from_a_valid_one() {
        // Should tungstenite change how it reads an invalid code, this
        // fails before a client is told wrongly what it sent.
        for code in [999, 1004, 1005, 1006, 1015, 5000] {
            let ending = Ending::by_client(read_by_tungstenite(code));
            assert_eq!(ending, Ending::ByClientInvalidCode, "{code}");
            assert!(ending.is_fault());
        }
        for code in [1000, 1001, 1002, 1011, 3000, 4999] {
            let ending = Ending::by_client(read_by_tungstenite(code));
            let close = CloseFrame { code: code.into(), reason: "bye".into() };
            assert_eq!(ending, Ending::ByClient(Some(close)), "{code}");
        }
    }

    #[test]
    fn only_unusual_server_closes_are_faults() {
        assert!(!Ending::ByServer(CloseReason::Shutdown.frame()).is_fault());
        assert!(!Ending::ByServer(CloseReason::IdleTimeout.frame()).is_fault());
        assert!(Ending::ByServer(CloseReason::TooBig.frame()).is_fault());
        assert!(!Ending::Dropped.is_fault());
    }
}
