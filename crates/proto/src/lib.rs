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
//! - `memory` (cargo feature `memory`; also in this crate's tests): `MemoryStore`, an
//!   in-memory [`SyncStore`] for tests and examples, keeping the SQLite store's contract.
//!
//! `proto/PROTOCOL.md` at the repository root is the normative specification.
//!
//! # Example: a device syncs with its street relay
//!
//! Both nodes keep their data in a `MemoryStore` here (a real node has SQLite, and
//! `gridsync-net` carries the messages over QUIC). The device holds one event; the relay has
//! the device enrolled for its grid. The messages are pumped by hand between the device's
//! [`client::ClientSession`] and the relay's [`server::ServerSession`] until the device's
//! session is `Finished`.
//!
//! ```rust
//! use std::collections::VecDeque;
//!
//! use gridsync_core::{Hlc, IncidentId, NodeId, Payload, Writer};
//! use gridsync_proto::client::{ClientAction, ClientConfig, ClientSession};
//! use gridsync_proto::memory::MemoryStore;
//! use gridsync_proto::server::{ServerConfig, ServerOutput, ServerSession};
//! use gridsync_proto::{ErrorCode, Message, Role};
//!
//! let now = 1_790_000_000_000;
//! // A node id is its Ed25519 public key; the device signs its events with the secret key.
//! let device_key = [2; 32];
//! let (device, relay) = (NodeId::from_secret(&device_key), NodeId::from_secret(&[1; 32]));
//! let grid = "110101/002/014/03".parse()?;
//!
//! // The device writes one event; the relay enrolled the device for its grid.
//! let mut device_store = MemoryStore::new();
//! let report = Writer::signing(&device_key, "patrol-7", 1, Hlc::new(now, 0)).write(
//!     IncidentId::new_v7(now, [7; 10]),
//!     &grid,
//!     Payload::Commented { text: "bags by the gate".into() },
//!     now,
//! );
//! device_store.append(std::slice::from_ref(&report))?;
//! let mut relay_store = MemoryStore::new();
//! relay_store.enroll(device, Role::Device, (&grid).into());
//!
//! // One session each; the relay knows the device by its TLS certificate.
//! let mut child = ClientSession::new(ClientConfig::new(device, Role::Device, "patrol-7", relay));
//! let mut parent =
//!     ServerSession::new(ServerConfig::new(relay, Role::Street, "street-002"), device);
//!
//! // Pump: what the child sends goes to the parent, and back, until the child is done.
//! let mut to_parent: VecDeque<Message> = VecDeque::new();
//! let mut actions = child.start(now);
//! let summary = 'session: loop {
//!     for action in actions.drain(..) {
//!         match action {
//!             ClientAction::Send(msg) => to_parent.push_back(msg),
//!             ClientAction::Finished(summary) => break 'session summary,
//!             ClientAction::Failed(e) => panic!("sync failed: {e}"),
//!             // No photos here, so no blob streams; progress is for a UI.
//!             ClientAction::SendBlob(_) | ClientAction::Progress(_) => {}
//!         }
//!     }
//!     let msg = to_parent.pop_front().expect("the child awaits an answer");
//!     for out in parent.handle(msg, &mut relay_store, now) {
//!         match out {
//!             ServerOutput::Send(reply) => {
//!                 actions.extend(child.handle(reply, &mut device_store, now))
//!             }
//!             ServerOutput::End { code, reason } => assert_eq!(code, ErrorCode::Done, "{reason}"),
//!             ServerOutput::Committed { .. }
//!             | ServerOutput::BlobCommitted { .. }
//!             | ServerOutput::SendBlob(_) => {}
//!         }
//!     }
//! };
//! // The `Bye` that came with `Finished` ends the relay's side too.
//! for msg in to_parent.drain(..) {
//!     parent.handle(msg, &mut relay_store, now);
//! }
//!
//! assert_eq!(summary.events_up, 1);
//! assert_eq!(relay_store.event(&device, 1), Some(&report));
//! assert_eq!(device_store.acked(&relay), 1);
//! assert!(child.is_ended() && parent.is_ended());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The cargo feature `faults` (off by default) adds `server::ServerConfig::faults`, which
//! makes a parent session break the protocol on purpose: for the conformance harness's
//! broken-relay tests only (`crates/broken-relay`); never set in a real relay.

pub mod admit;
pub mod client;
pub mod directory;
mod faults;
pub mod frame;
pub mod limits;
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
pub use admit::{Admission, AdmitError, Admitted, Authority, Origins};
pub use directory::{AdmittedRecords, AuthError, NodeRecord, RecordError, Standing, Vouch};
pub use message::{
    BlobHeader, BlobInfo, BlobKind, ErrorCode, Head, Limits, Message, Role, Want, ALPN,
    FOLLOW_HOLD_MS, VERSIONS,
};
pub use storage::{
    BlobFinish, BlobState, Committed, Enrolled, Page, StorageError, StorageErrorKind, SyncStore,
};
