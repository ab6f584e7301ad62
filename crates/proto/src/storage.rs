//! What a session needs from a node's storage. Sessions are sans-IO: the driver hands them a
//! [`SyncStore`] with every call, and they only call it synchronously. SQLite
//! (`gridsync-store`) is the embedded implementation; a city-scale district can implement the
//! same trait over PostgreSQL and an object store.
//!
//! **Contract.** Every write is idempotent, and returns only once it is durable: a session
//! acknowledges to its peer only what a write here has returned `Ok` for. A store carries no
//! policy: the events it commits come as an [`Admitted`] batch, which only
//! [`crate::Admission::admit`] builds (size, decoding, rules, origin, scope, clock), so the
//! only refusals left to a store are about what it holds (an id already stored with other
//! content).

use gridsync_core::{BlobHash, Event, NodeId, Scope};

use crate::admit::Admitted;
use crate::directory::{AdmittedRecords, NodeRecord};
use crate::message::{BlobInfo, BlobKind, Head, Role};

/// Why storage refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub kind: StorageErrorKind,
    pub message: String,
}

/// The kinds of [`StorageError`] a session tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// An event id already stored with other content; nothing of the batch was stored.
    Equivocation,
    /// Anything else (I/O, corruption): transient as far as the peer knows.
    Internal,
}

impl StorageError {
    /// An internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: StorageErrorKind::Internal,
            message: message.into(),
        }
    }
}

/// A peer enrolled at this node: a device for one grid, or a relay for a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub node: NodeId,
    pub role: Role,
    /// A device's grid (as a four-segment scope) or a relay's scope prefix.
    pub scope: Scope,
}

/// What a committed batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Events stored for the first time.
    pub stored: u32,
    /// Events already held (identical), ignored.
    pub duplicates: u32,
}

/// What this node holds of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// The whole blob, verified.
    Held,
    /// The first `offset` bytes of an unfinished upload.
    Partial { offset: u64 },
    /// None of it, and an event held here names it: wanted.
    Missing,
    /// None of it, and no event held here names it: not wanted.
    Unreferenced,
}

/// How [`SyncStore::blob_finish`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFinish {
    /// The blob is stored (now, or it was held already).
    Stored,
    /// The bytes held do not hash to the blob's id, or are not all there (or none were
    /// uploaded): discarded.
    HashMismatch,
    /// The bytes hash right, but the check refused them, for this reason: discarded.
    Rejected(String),
}

/// One page of a scope's events, for a download.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Events, encoded by the core codec, in this node's arrival order.
    pub events: Vec<Vec<u8>>,
    /// The arrival position after the last event examined (the next page starts after it).
    pub cursor: u64,
    /// Whether more events of the scope may follow `cursor` now.
    pub more: bool,
}

/// The storage a sync session runs on (parent side and child side).
pub trait SyncStore {
    // ---- parent side ----

    /// The peer `node` as enrolled here, or `None` (never enrolled, or revoked).
    fn enrolled(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError>;

    /// For the child `peer`: per origin it may send, the highest sequence number up to which
    /// every event of that origin is held here. A device may send only its own origin; a relay
    /// any origin with events in its scope. Origins not listed count as 0.
    fn heads(&self, peer: &Enrolled) -> Result<Vec<Head>, StorageError>;

    /// Stores an admitted batch received from the child [`Admitted::from`] in one durable
    /// transaction: all or nothing, recording that the events came from it (so they are never
    /// paged back to it). Refuses, storing nothing, any id already held with other content.
    fn commit(&mut self, batch: &Admitted) -> Result<Committed, StorageError>;

    /// The node record in force from each issuer about `node` (the one with the highest
    /// serial), as received or issued here; none if there is none.
    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError>;

    /// Stores admitted node records in one durable transaction, each replacing the one in
    /// force from its issuer about its node only if its serial is higher (a record held
    /// already, or older, counts as a duplicate). A record stored here is sent on to this
    /// node's own parent.
    fn commit_records(&mut self, records: &AdmittedRecords) -> Result<Committed, StorageError>;

    /// What this node holds of blob `hash`.
    fn blob_state(&self, hash: &BlobHash) -> Result<BlobState, StorageError>;

    /// Durably appends `bytes` at `offset` to the partial upload of `hash` (`size` bytes in
    /// all). `offset` must be the partial's current length; writing bytes already held is a
    /// no-op.
    fn blob_write(
        &mut self,
        hash: &BlobHash,
        kind: BlobKind,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StorageError>;

    /// Checks the finished partial upload of `hash` against its hash and then with `check`
    /// (the parent's policy on what it stores; it carries none itself), and only if both pass
    /// durably stores it as a blob ([`BlobFinish::Stored`]). On a mismatch
    /// ([`BlobFinish::HashMismatch`]) or a refusal by `check` ([`BlobFinish::Rejected`]) the
    /// partial is discarded and nothing is stored. `check` sees the assembled bytes only after
    /// their SHA-256 matched.
    fn blob_finish(
        &mut self,
        hash: &BlobHash,
        check: &dyn Fn(&[u8]) -> Result<(), String>,
    ) -> Result<BlobFinish, StorageError>;

    /// The events of `scope` that arrived here after `cursor`, except those received from
    /// `except` (the child already has them): at most `max_events` events or about
    /// `max_bytes` bytes.
    fn page(
        &self,
        scope: &Scope,
        except: &NodeId,
        cursor: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError>;

    /// Durably discards the partial upload of `hash`, if any (a blob held whole stays).
    fn blob_discard(&mut self, hash: &BlobHash) -> Result<(), StorageError>;

    /// Blob `hash` as held here whole: its kind and size (`None`: not held, or only in part).
    /// What a parent answers a child's `Fetch` from. The default holds nothing (a store that
    /// does not implement it refuses every fetch).
    fn held_blob(&self, hash: &BlobHash) -> Result<Option<BlobInfo>, StorageError> {
        let _ = hash;
        Ok(None)
    }

    /// Whether a photo event held here whose grid lies in `scope` names blob `hash`, as its
    /// photo or as its thumbnail (removed since or not): the only blobs a child of `scope`
    /// may fetch. Indexed: it costs the events naming `hash`, not what is held. The default
    /// says no (every fetch is refused).
    fn blob_in_scope(&self, hash: &BlobHash, scope: &Scope) -> Result<bool, StorageError> {
        let _ = (hash, scope);
        Ok(false)
    }

    /// Which of `hashes` this node recorded as safe, that is held by the district, as its
    /// own upstream said in answer to a `HeldQuery` (PROTOCOL.md §8.12), in the order given.
    /// What a parent that is not the district answers a child's `HeldQuery` from (the
    /// district answers from [`SyncStore::held_blob`]). The default knows of none.
    fn safe_blobs(&self, hashes: &[BlobHash]) -> Result<Vec<BlobHash>, StorageError> {
        let _ = hashes;
        Ok(Vec::new())
    }

    // ---- child side ----

    /// Every origin this node holds events of.
    fn origins(&self) -> Result<Vec<NodeId>, StorageError>;

    /// Events of `origin` with a sequence number above `after`, in sequence order, at most
    /// `limit`.
    fn events_after(
        &self,
        origin: &NodeId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StorageError>;

    /// Blobs not yet sent to the parent `parent`: thumbnails first, at most `limit`.
    fn unsent_blobs(&self, parent: &NodeId, limit: usize) -> Result<Vec<BlobInfo>, StorageError>;

    /// Records that the parent `parent` holds blob `hash` (it will not be offered again).
    fn mark_blob_sent(&mut self, parent: &NodeId, hash: &BlobHash) -> Result<(), StorageError>;

    /// Bytes `offset..offset+len` of blob `hash` (fewer at its end; `None` if not held).
    fn read_blob(
        &self,
        hash: &BlobHash,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StorageError>;

    /// The download cursor for parent `parent` (0 when never synced).
    fn down_cursor(&self, parent: &NodeId) -> Result<u64, StorageError>;

    /// Stores an admitted batch downloaded from the parent [`Admitted::from`] and moves that
    /// parent's download cursor to `cursor`, in one durable transaction (same refusal as
    /// [`SyncStore::commit`]).
    fn commit_download(&mut self, batch: &Admitted, cursor: u64)
        -> Result<Committed, StorageError>;

    /// The position up to which the parent `parent` acknowledged node records (0: none).
    fn records_cursor(&self, parent: &NodeId) -> Result<u64, StorageError>;

    /// The node records in force stored after position `after`, in the order this node stored
    /// them, at most `limit`, each with its position.
    fn records_to_send(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NodeRecord)>, StorageError>;

    /// Records that `parent` acknowledged every node record up to position `upto`.
    fn records_acked(&mut self, parent: &NodeId, upto: u64) -> Result<(), StorageError>;

    /// Records that `parent` acknowledged this node's own events up to `seq` (for "pending").
    fn own_acked(&mut self, parent: &NodeId, seq: u64) -> Result<(), StorageError>;

    /// The blobs this node lacks and fetches from its parent (a child whose
    /// `ClientConfig::fetch` is `FetchPolicy::Wanted`), at most `limit`, each once: first the
    /// blobs wanted explicitly (a user asked for a photo, `Store::want_blob`), oldest want
    /// first, then the thumbnails of the visible photos of `scope`'s incidents, oldest first.
    /// A blob stored here, however it came, is no longer listed. The default lists none.
    fn blobs_to_fetch(
        &self,
        scope: &Scope,
        limit: usize,
    ) -> Result<Vec<(BlobHash, BlobKind)>, StorageError> {
        let _ = (scope, limit);
        Ok(Vec::new())
    }

    /// The photos recorded as held by the parent `parent` ([`SyncStore::mark_blob_sent`])
    /// and not yet recorded safe here, with a hash above `after` (all with `None`), in
    /// ascending hash order, at most `limit`: what a child asks about in its `HeldQuery`s
    /// (PROTOCOL.md §8.12). Thumbnails are never asked about (nothing prunes them). The
    /// default lists none (no query is sent).
    fn unsafe_sent(
        &self,
        parent: &NodeId,
        after: Option<&BlobHash>,
        limit: usize,
    ) -> Result<Vec<BlobHash>, StorageError> {
        let _ = (parent, after, limit);
        Ok(Vec::new())
    }

    /// Durably records that the district holds each of `hashes` (the parent's `Held`
    /// answer); idempotent.
    fn mark_safe(&mut self, hashes: &[BlobHash]) -> Result<(), StorageError> {
        let _ = hashes;
        Ok(())
    }
}
