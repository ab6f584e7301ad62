//! gridsync-proto: the sync protocol, sans-IO.
//!
//! - [`message`]: the wire messages of protocol version 1;
//! - [`frame`]: length-prefixed framing;
//! - [`admit`]: the one admission point every received event batch passes on both sides,
//!   returning an [`Admitted`] batch, the only thing a [`SyncStore`] commits;
//! - [`storage`]: the [`SyncStore`] trait sessions run on (SQLite in `gridsync-store`);
//! - [`client`] and [`server`]: the session state machines. They take messages and the
//!   current time, call the store, and return messages and actions for a driver to carry
//!   out; they never touch a socket, a clock or a file. `gridsync-net` drives them over QUIC.
//!
//! `proto/PROTOCOL.md` at the repository root is the normative specification.
//!
//! The cargo feature `faults` (off by default) adds `server::ServerConfig::faults`, which
//! makes a parent session break the protocol on purpose: for the conformance harness's
//! broken-relay tests only (`crates/broken-relay`); never set in a real relay.

pub mod admit;
pub mod client;
mod faults;
pub mod frame;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod message;
pub mod server;
pub mod storage;
#[cfg(test)]
mod testkit;

#[cfg(feature = "faults")]
pub use faults::Faults;
pub use frame::{FrameError, FrameReader, MAX_FRAME};

/// The largest encoded event a parent accepts, in bytes. Events are small (texts are at most
/// 8 KiB); the bound keeps every stored event far inside a frame, so any page of them can be
/// sent.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
pub use admit::{Admission, AdmitError, Admitted, Origins};
pub use message::{
    BlobHeader, BlobInfo, BlobKind, ErrorCode, Head, Limits, Message, Role, Want, ALPN, VERSIONS,
};
pub use storage::{
    BlobFinish, BlobState, Committed, Enrolled, Page, StorageError, StorageErrorKind, SyncStore,
};
