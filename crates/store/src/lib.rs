//! gridsync-store: the durable home of a node's event log, incident state and blobs.
//!
//! One SQLite file (WAL, `synchronous=FULL`). Every write of events and blobs goes through one
//! private transaction, `Store::write` (module `write`), behind [`Store::append`] (own
//! events), [`Store::append_received`] (received ones) and the sync store's `commit` and
//! `commit_download`: it stores blobs, inserts events (idempotent on `(origin, seq)`), folds
//! them into the materialised incident state and records the node's clock: a crash at any
//! instant leaves the whole batch there or none of it.
//!
//! Modules, by concept (each `impl Store` block lives with what it owns):
//! - `open`: creating, opening (the schema check before anything is written), closing.
//! - `meta`: the `meta` table: identity, clock; the `cursors`; the next sequence number.
//! - `write`: the one write path and the fold of events into incident state.
//! - `read`: incidents, events, progress, counts, download pages.
//! - `peers`: enrollment at a relay and the heads of an enrolled peer.
//! - `staff`: the grid roster (folded by `write` from the roster events).
//! - `ops`: what an operator reads of a relay (children's contact and backlog, upstream
//!   acknowledgements, storage used) and the online backup.
//! - `prune`: safe blobs and pruning a handheld's photos (schema 10).
//! - `operators`: the console's operator accounts and API keys (schema 8).
//! - `blobs`: stored blobs, partial uploads, what a parent holds.
//! - `sync`: only the [`gridsync_proto::SyncStore`] adapter over the above.
//! - `error`: [`StoreError`] and what of it a peer may be told.
//! - `schema`: connection set-up and migrations.
//!
//! Tables (schema version 10; `schema.rs` has the migrations):
//! - `events`: the log, unique on `(origin, seq)`; `local_seq` (the rowid) is the arrival
//!   order download cursors count in; `via` is the peer an event was received from (NULL
//!   for own events), so a download never sends an event back where it came from.
//! - `origins`: per origin with any stored event, the highest contiguous sequence number.
//! - `origin_grids`: every (origin, grid) with a stored event, kept in the same transaction,
//!   so a relay's heads for a scope never scan the log.
//! - `incidents`, `thumbs`: state folded from the events, and photo → thumbnail links.
//! - `blobs`: content-addressed photos and thumbnails (`sent_upstream` mirrors `blobs_sent`
//!   for the node's current parent); `blob_parts`: chunks of unfinished uploads, so an
//!   interrupted upload resumes; `blobs_sent`: which blobs each parent holds.
//! - `peers`: children enrolled at a relay (role, scope, revocation); `node_records`,
//!   `records_sent`: the signed records of enrollments and what each parent holds of them.
//! - `staff`: the grid roster, per (grid, name) the winning roster event and what it says,
//!   folded in the same transaction as the events (roster events never make incident rows).
//! - `photo_refs`: every photo add held (its grid, photo, thumbnail, whether it is visible,
//!   whether the thumbnail is missing), kept by the write path: which blobs a child of a scope
//!   may fetch, and which thumbnails a child lacks; `blob_wants`: blobs this node's user asked
//!   to fetch, until held (PROTOCOL.md §8.11).
//! - `peer_contact`: per child, its last contact, sessions, events sent here and the download
//!   position it last reached; `upstream_acks`: when each parent last acknowledged a batch.
//! - `operators`, `api_keys`: the console's accounts (role, Argon2id PHC string) and the
//!   SHA-256 of each Open311 API key; local to this relay, never events, never synced.
//! - `blobs_safe`, `blobs_asking`, `blobs_pruned`: photos known held at the district, those
//!   still to ask a parent about, and a handheld's pruned photos (schema 10).
//! - `cursors`: sync progress per peer; `meta`: identity, clock and settings.
//!
//! [`Store`] implements [`gridsync_proto::SyncStore`], the storage sync sessions run on, with
//! every query costing what is new or asked, not the store's size.
//!
//! **Invariants:** nothing is reported committed before SQLite's commit returned; re-applying
//! any batch changes nothing; the materialised state of an incident always equals the fold of
//! its stored events; opening a file that is not a gridsync store, or one of a newer schema,
//! fails before anything is written to it.

mod blobs;
mod error;
mod meta;
mod open;
mod operators;
mod ops;
mod peers;
mod prune;
mod read;
mod records;
mod schema;
mod staff;
mod sync;
mod write;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use error::StoreError;
pub use gridsync_proto::BlobKind;
pub use meta::{Identity, ACKED_OWN_SEQ, DOWN, UPSTREAM};
pub use operators::{ApiKey, Operator, OperatorRole, ParseRoleError};
pub use ops::{PeerContact, StorageUse};
pub use peers::PeerRow;
pub use prune::{PruneReport, Pruned};
pub use read::{Counts, Pending, PAGE_EXAMINE};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use staff::StaffMember;
pub use write::{Appended, NewBlob};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A gridsync store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

// ---- SQL helpers shared by the modules ----------------------------------------------------

/// A `u64` as an SQLite integer, saturating at `i64::MAX` (sequence numbers and cursors never
/// get near it; a hostile peer's value must not wrap to a negative number).
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Runs one statement through the connection's statement cache (SQL is parsed once).
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Reads one row through the connection's statement cache.
fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// Begins a write transaction that takes the write lock at once (so a read inside it cannot
/// race another writer).
fn begin<'c>(conn: &'c mut Connection, path: &Path) -> Result<rusqlite::Transaction<'c>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(error::sql(path, "begin"))
}

#[cfg(test)]
mod tests;
