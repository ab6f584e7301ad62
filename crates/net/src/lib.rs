//! gridsync-net: the sync protocol over QUIC (quinn, tokio).
//!
//! Thin by design: [`tls`] makes and pins the Ed25519 identities, [`server`] and [`client`]
//! move frames, blob bytes and timers between quinn and the sans-IO sessions of
//! `gridsync-proto`, which make every decision.
//!
//! **Invariants.** No protocol logic here: the driver never acknowledges, refuses or orders
//! anything itself. Session calls that touch the store are made with the store locked and
//! complete (durably) before the resulting messages are sent.

pub mod client;
pub mod server;
pub mod tls;

use std::sync::{Arc, Mutex};

use gridsync_proto::client::SessionError;
use gridsync_proto::SyncStore;

/// The store a node's sessions share.
pub type SharedStore = Arc<Mutex<dyn SyncStore + Send>>;

/// What went wrong moving bytes.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: std::net::SocketAddr,
        error: String,
    },
    #[error("cannot reach the relay at {addr}: {error}")]
    Connect {
        addr: std::net::SocketAddr,
        error: String,
    },
    #[error("the relay at {addr} is not the one pinned (node id mismatch): it proved node id {got}, expected {expected} (check --relay-id)")]
    WrongRelay {
        addr: std::net::SocketAddr,
        expected: gridsync_core::NodeId,
        got: String,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("connection lost: {0}")]
    Connection(String),
    #[error("{0}")]
    Session(SessionError),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("stream: {0}")]
    Io(String),
    #[error("local store: {0}")]
    Store(String),
}

impl From<quinn::ConnectionError> for NetError {
    fn from(e: quinn::ConnectionError) -> Self {
        NetError::Connection(describe_close(&e))
    }
}

impl From<quinn::ReadError> for NetError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => c.into(),
            other => NetError::Io(other.to_string()),
        }
    }
}

/// A connection error in words, naming gridsync's close codes.
pub fn describe_close(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let code = u16::try_from(c.error_code.into_inner())
                .ok()
                .and_then(gridsync_proto::ErrorCode::from_u16);
            let reason = String::from_utf8_lossy(&c.reason);
            match code {
                Some(code) if reason.ends_with(&format!("({code:?})")) => {
                    format!("closed by the peer: {reason}")
                }
                Some(code) => format!("closed by the peer: {reason} ({code:?})"),
                None => format!("closed by the peer with code {}: {reason}", c.error_code),
            }
        }
        other => other.to_string(),
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
