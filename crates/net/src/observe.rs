//! What the parent-side driver tells whoever watches it: the relay's metrics and its record
//! of each child's contact. The driver calls an [`Observer`] (held in
//! [`crate::server::Shared::observer`]) at the points only it sees: a session granted and
//! ended, the bytes it moved, a refusal. The observer decides nothing; `net` keeps depending
//! on nothing above it (the relay implements the trait).
//!
//! Every method has an empty default, and each is called outside the store lock; the session
//! calls ([`Observer::session_started`], [`Observer::session_ended`]) run where blocking is
//! allowed (a relay writes one row to its store in them).

use std::time::Duration;

use gridsync_proto::server::ServerStats;
use gridsync_proto::{Enrolled, ErrorCode};

/// A session that was granted (its `Hello` accepted) and is over.
#[derive(Debug, Clone, Copy)]
pub struct SessionEnd<'a> {
    /// The child, as enrolled here.
    pub peer: &'a Enrolled,
    /// What the session did.
    pub stats: &'a ServerStats,
    /// The arrival cursor of the last `Down` page sent in it (`None`: it sent none).
    pub down_cursor: Option<u64>,
}

/// Watches the parent-side driver. See the module documentation.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A child's session was granted (its `Hello` accepted).
    fn session_started(&self, peer: &Enrolled) {
        let _ = peer;
    }
    /// A granted session is over (whichever way it ended).
    fn session_ended(&self, end: SessionEnd<'_>) {
        let _ = end;
    }
    /// A session or connection ended with an error code other than `Done`: a refusal (not
    /// enrolled, out of scope, busy...), a timeout, a shutdown.
    fn refused(&self, code: ErrorCode) {
        let _ = code;
    }
    /// Frame bytes read from (`inbound`) or written to a child's control stream.
    fn frame_bytes(&self, inbound: bool, bytes: u64) {
        let _ = (inbound, bytes);
    }
    /// Bytes of blob streams received from (`inbound`, uploads: each stream's header frame
    /// and its bytes) or sent to (fetches: the blob's bytes) a child.
    fn blob_bytes(&self, inbound: bool, bytes: u64) {
        let _ = (inbound, bytes);
    }
    /// Events a child sent that were stored (`inbound`), or sent down to it in `Down` pages.
    fn events(&self, inbound: bool, count: u64) {
        let _ = (inbound, count);
    }
    /// An offered blob's upload resumed at an offset above 0.
    fn blob_resumed(&self) {}
    /// A session step that committed to the store (a batch of events, node records, or a
    /// finished blob) took this long, admission and the store's transaction included.
    fn committed_in(&self, took: Duration) {
        let _ = took;
    }
}

/// The observer that watches nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {}
