//! gridsync-net: the sync protocol over QUIC (quinn, tokio).
//!
//! Thin by design: [`tls`] makes and pins the Ed25519 identities, [`transport`] holds the
//! QUIC tuning and the drivers' timeouts and limits, [`server`] and [`client`] move frames,
//! blob bytes and timers between quinn and the sans-IO sessions of `gridsync-proto`, which
//! make every decision.
//!
//! **Invariants.** No protocol logic here: the driver never acknowledges, refuses or orders
//! anything itself, and fails a session only as the session says. Session calls that touch
//! the store are made with the store locked and complete (durably) before the resulting
//! messages are sent. Errors are typed ([`NetError`]): nothing decides on an error's text.

pub mod client;
pub mod observe;
pub mod server;
pub mod tls;
pub mod transport;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridsync_core::NodeId;
use gridsync_proto::client::SessionError;
use gridsync_proto::{ErrorCode, FrameError, SyncStore};

/// The store a node's sessions share.
pub type SharedStore = Arc<Mutex<dyn SyncStore + Send>>;

/// What went wrong moving bytes.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot reach the relay at {addr}: {error}")]
    Connect {
        addr: SocketAddr,
        error: ConnectError,
    },
    /// The relay refused the connection before the handshake: it serves as many connections
    /// as it may. Transient.
    #[error("the relay at {addr} is at its connection limit; try again later")]
    Busy { addr: SocketAddr },
    #[error("the relay at {addr} is not the one pinned (node id mismatch): it proved node id {got}, expected {expected} (check --relay-id)")]
    WrongRelay {
        addr: SocketAddr,
        expected: NodeId,
        got: NodeId,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The peer closed the connection with an application close: its code and reason.
    #[error("connection lost: closed by the peer{}", PeerClose { code: *code, reason })]
    Closed { code: CloseCode, reason: String },
    /// The connection ended otherwise (timed out, reset, a transport error, closed here).
    #[error("connection lost: {0}")]
    Connection(quinn::ConnectionError),
    #[error("{0}")]
    Session(SessionError),
    #[error("protocol: {0}")]
    Encode(FrameError),
    /// A peer's handshake completed without an Ed25519 client certificate (the verifier lets
    /// none through; defensive).
    #[error("protocol: peer presented no Ed25519 certificate")]
    NoCertificate,
    #[error("stream: {0}")]
    Read(quinn::ReadError),
    #[error("stream: {0}")]
    Write(quinn::WriteError),
    #[error("stream: {0}")]
    Finish(quinn::ClosedStream),
    #[error("stream: {0}")]
    Stopped(quinn::StoppedError),
    /// The task sending a blob stream panicked or was cancelled.
    #[error("stream: blob sender: {0}")]
    BlobSender(tokio::task::JoinError),
}

/// Why a connect failed (beyond [`NetError::Busy`] and [`NetError::WrongRelay`]).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// quinn would not start the connection (e.g. an address it cannot send to).
    #[error("{0}")]
    Start(quinn::ConnectError),
    /// The handshake failed.
    #[error("{0}")]
    Handshake(quinn::ConnectionError),
    /// No answer within the connect timeout.
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// The code of a peer's application close: one of gridsync's, or a number it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    Known(ErrorCode),
    Unknown(u64),
}

impl From<quinn::VarInt> for CloseCode {
    fn from(code: quinn::VarInt) -> Self {
        let n = code.into_inner();
        match u16::try_from(n).ok().and_then(ErrorCode::from_u16) {
            Some(code) => CloseCode::Known(code),
            None => CloseCode::Unknown(n),
        }
    }
}

/// How a peer's close reads: its reason, then its code (once: the closing side sends the
/// reason without it, see [`SessionError::close_reason`]).
struct PeerClose<'a> {
    code: CloseCode,
    reason: &'a str,
}

impl std::fmt::Display for PeerClose<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            CloseCode::Known(code) => write!(f, ": {} ({code:?})", self.reason),
            CloseCode::Unknown(n) => write!(f, " with code {n}: {}", self.reason),
        }
    }
}

impl NetError {
    /// Whether this is the peer closing the connection with `code`.
    pub fn is_closed_with(&self, code: ErrorCode) -> bool {
        matches!(self, NetError::Closed { code: CloseCode::Known(c), .. } if *c == code)
    }
}

impl From<quinn::ConnectionError> for NetError {
    fn from(e: quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => NetError::Closed {
                code: c.error_code.into(),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            other => NetError::Connection(other),
        }
    }
}

impl From<quinn::ReadError> for NetError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => c.into(),
            other => NetError::Read(other),
        }
    }
}

impl From<quinn::WriteError> for NetError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => c.into(),
            other => NetError::Write(other),
        }
    }
}

impl From<quinn::StoppedError> for NetError {
    fn from(e: quinn::StoppedError) -> Self {
        match e {
            quinn::StoppedError::ConnectionLost(c) => c.into(),
            other => NetError::Stopped(other),
        }
    }
}

/// Runs `f`, which may block on the store (SQLite commits flush to disk), telling a
/// multi-threaded tokio runtime first so it moves other tasks (quinn's endpoint, timers) off
/// this worker; on a current-thread runtime it just runs `f`.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Milliseconds since the Unix epoch (the driver is where time is read).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(code: u32, reason: &str) -> NetError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: code.into(),
            reason: reason.as_bytes().to_vec().into(),
        })
        .into()
    }

    #[test]
    fn a_peer_close_names_its_code_once() {
        let e = closed(12, "the relay did not answer within 30000 ms");
        assert!(matches!(
            e,
            NetError::Closed {
                code: CloseCode::Known(ErrorCode::Timeout),
                ..
            }
        ));
        assert!(e.is_closed_with(ErrorCode::Timeout));
        assert!(!e.is_closed_with(ErrorCode::Done));
        assert_eq!(
            e.to_string(),
            "connection lost: closed by the peer: the relay did not answer within 30000 ms (Timeout)"
        );
        let refused = SessionError::Refused {
            code: ErrorCode::NotEnrolled,
            message: "not enrolled".into(),
        };
        let e = closed(2, &refused.close_reason());
        assert_eq!(
            e.to_string(),
            format!("connection lost: closed by the peer: {refused}")
        );
        assert!(closed(0, "done").is_closed_with(ErrorCode::Done));
    }

    #[test]
    fn an_unknown_close_code_is_a_number() {
        let e = closed(4242, "bye");
        assert!(matches!(
            e,
            NetError::Closed {
                code: CloseCode::Unknown(4242),
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "connection lost: closed by the peer with code 4242: bye"
        );
    }

    #[test]
    fn other_connection_ends_stay_typed() {
        let e = NetError::from(quinn::ConnectionError::TimedOut);
        assert!(matches!(
            e,
            NetError::Connection(quinn::ConnectionError::TimedOut)
        ));
        assert_eq!(e.to_string(), "connection lost: timed out");
    }
}
