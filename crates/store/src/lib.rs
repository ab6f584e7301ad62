//! gridsync-store: the durable home of a node's event log, incident state and blobs.
//!
//! One SQLite file (WAL, `synchronous=FULL`). Every write of events and blobs goes through one
//! private transaction behind [`Store::append`] (own events), [`Store::append_remote`] and
//! [`Store::append_from`] (received ones), and the sync store's `commit` and
//! `commit_download`: it stores blobs, inserts events (idempotent on `(origin, seq)`), folds
//! them into the materialised incident state and records the node's clock: a crash at any
//! instant leaves the whole batch there or none of it.
//!
//! Tables (schema version 2; `schema.rs` has the migrations):
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
//! - `peers`: children enrolled at a relay (role, scope, revocation).
//! - `cursors`: sync progress per peer; `meta`: identity and clock.
//!
//! [`Store`] implements [`gridsync_proto::SyncStore`] (module `sync`), the storage sync
//! sessions run on, with every query costing what is new or asked, not the store's size.
//!
//! **Invariants:** nothing is reported committed before SQLite's commit returned; re-applying
//! any batch changes nothing; the materialised state of an incident always equals the fold of
//! its stored events; opening a file that is not a gridsync store, or one of a newer schema,
//! fails before anything is written to it.

mod schema;
mod sync;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gridsync_core::codec::{self, CodecError};
use gridsync_core::{BlobHash, Event, EventId, Hlc, IncidentId, IncidentState, NodeId};
use gridsync_proto::Admitted;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use sync::{PeerRow, DOWN, PAGE_EXAMINE};

/// What went wrong with a store. Every variant names the file. Causes are part of the
/// message (one line), and deliberately not chained again as `source()`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: no gridsync store here (create one with `init`)")]
    Missing { path: PathBuf },
    #[error("{path}: a file already exists here; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("{path}: not a gridsync store ({why}); the file was not changed")]
    NotAStore { path: PathBuf, why: String },
    #[error("{path}: store schema version {found} is newer than this build supports ({supported}); upgrade gridsync. The file was not changed")]
    NewerSchema {
        path: PathBuf,
        found: i32,
        supported: i32,
    },
    #[error("{path}: the store has no node identity yet (run `init`)")]
    NoIdentity { path: PathBuf },
    #[error(
        "{path}: event {origin}/{seq} is already stored with different content; refusing the batch"
    )]
    Equivocation {
        path: PathBuf,
        origin: NodeId,
        seq: u64,
    },
    #[error("{path}: blob {hash} does not match its bytes; refusing the batch")]
    BlobMismatch { path: PathBuf, hash: BlobHash },
    #[error("{path}: stored {what} is corrupt: {error}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        error: CodecError,
    },
    #[error("{path}: incident {incident}: its state would be {bytes} bytes, over the {limit} limit", limit = codec::MAX_ENCODED)]
    StateTooLarge {
        path: PathBuf,
        incident: IncidentId,
        bytes: usize,
    },
    #[error("{path}: corrupt row: {what}")]
    CorruptRow { path: PathBuf, what: String },
    #[error("{path}: blob {hash}: {why}")]
    BlobUpload {
        path: PathBuf,
        hash: BlobHash,
        why: String,
    },
    #[error("{path}: cannot enroll {node}: {why}")]
    Enrollment {
        path: PathBuf,
        node: NodeId,
        why: String,
    },
    #[error("{path}: {context}: {error}")]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        error: rusqlite::Error,
    },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The node's own identity as kept in its store.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The Ed25519 secret key seed.
    pub secret: [u8; 32],
    /// The node id (its public key).
    pub node_id: NodeId,
    /// Device, officer or sub-center name: the `author` of the node's events.
    pub name: String,
    /// `device`, `street` or `district`.
    pub role: String,
    /// A device's grid, or a relay's scope.
    pub scope: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Photo or thumbnail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Photo,
    Thumb,
}

impl BlobKind {
    fn as_str(self) -> &'static str {
        match self {
            BlobKind::Photo => "photo",
            BlobKind::Thumb => "thumb",
        }
    }
}

/// A blob to store with a batch.
#[derive(Debug, Clone, Copy)]
pub struct NewBlob<'a> {
    pub hash: BlobHash,
    pub kind: BlobKind,
    pub bytes: &'a [u8],
}

/// What one [`Store::append`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    /// Events stored for the first time.
    pub new_events: usize,
    /// Events that were already stored (identical), and so ignored.
    pub duplicate_events: usize,
    /// Blobs stored for the first time.
    pub new_blobs: usize,
    /// Incidents whose state changed.
    pub incidents: Vec<IncidentId>,
}

/// Sizes of what a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: u64,
    pub incidents: u64,
    pub blobs: u64,
}

/// What is waiting to go upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// This node's own events the upstream has not acknowledged.
    pub events: u64,
    /// Blobs not yet sent upstream.
    pub blobs: u64,
    /// Their total size in bytes.
    pub blob_bytes: u64,
}

/// The cursor peer name for "whoever is upstream of this node".
pub const UPSTREAM: &str = "upstream";
/// Cursor name: the highest own sequence number the upstream acknowledged.
pub const ACKED_OWN_SEQ: &str = "acked_own_seq";

/// A gridsync store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Creates a new store at `path`; fails if anything exists there.
    pub fn create(path: &Path) -> Result<Self> {
        if path.exists() {
            return Err(StoreError::Exists {
                path: path.to_owned(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql(path, "creating"))?;
        Self::finish_open(conn, path, 0)
    }

    /// Opens an existing store. Checks that it is a gridsync store of a schema this build
    /// knows *before* writing anything, then migrates an older schema.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            });
        }
        // Probe through a read-only connection first: it reads the header as SQLite sees it
        // (through a pending `-wal` too), and closing it never checkpoints or rolls anything
        // back, so a foreign file, or a store of a newer schema, is left exactly as it was.
        // (At most SQLite creates or rebuilds the `-shm` index beside a WAL database; the
        // database and its `-wal` are not written.) Only then is the file opened read-write.
        let version = Self::probe(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql(path, "opening"))?;
        Self::finish_open(conn, path, version)
    }

    /// Reads `application_id` and `user_version` through a read-only connection, which is
    /// dropped before returning; returns the schema version of a gridsync store this build
    /// can open, and refuses anything else.
    fn probe(path: &Path) -> Result<i32> {
        let not_a_store = |why: String| StoreError::NotAStore {
            path: path.to_owned(),
            why,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let probe = Connection::open_with_flags(path, flags).map_err(sql(path, "opening"))?;
        let header = probe.query_row(
            "SELECT application_id, user_version FROM pragma_application_id, pragma_user_version",
            [],
            |r| Ok((r.get::<_, i32>(0)?, r.get::<_, i32>(1)?)),
        );
        drop(probe);
        let (app_id, version) = header.map_err(|e| not_a_store(e.to_string()))?;
        if app_id != APPLICATION_ID {
            return Err(not_a_store(format!(
                "SQLite application id is {app_id:#x}, not gridsync's {APPLICATION_ID:#x}"
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(version)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(sql(&path, "opening"))?;
        Self::finish_open(conn, &path, 0)
    }

    fn finish_open(mut conn: Connection, path: &Path, version: i32) -> Result<Self> {
        schema::configure(&conn).map_err(sql(path, "configuring"))?;
        schema::migrate(&mut conn, version).map_err(sql(path, "migrating the schema"))?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Closes the store, checkpointing the WAL into the main file; reports a failure to do so
    /// (dropping a `Store` closes it too, but silently).
    pub fn close(self) -> Result<()> {
        let path = self.path;
        self.conn.close().map_err(|(_, error)| StoreError::Sqlite {
            path,
            context: "closing",
            error,
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        sql(&self.path, context)
    }

    // ---- identity and clock -------------------------------------------------------------

    /// Records the node's identity. Fails if one is already there.
    pub fn set_identity(&mut self, id: &Identity) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&self.path, "begin"))?;
        let rows: [(&str, Vec<u8>); 5] = [
            ("node_secret", id.secret.to_vec()),
            ("node_id", id.node_id.0.to_vec()),
            ("node_name", id.name.as_bytes().to_vec()),
            ("node_role", id.role.as_bytes().to_vec()),
            ("node_scope", id.scope.as_bytes().to_vec()),
        ];
        for (k, v) in rows {
            exec(
                &tx,
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(sql(&self.path, "storing the identity"))?;
        }
        tx.commit().map_err(sql(&self.path, "commit"))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        one(
            &self.conn,
            "SELECT value FROM meta WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("reading meta"))
    }

    /// The node's identity.
    pub fn identity(&self) -> Result<Identity> {
        let missing = || StoreError::NoIdentity {
            path: self.path.clone(),
        };
        let text = |key: &str| -> Result<String> {
            let v = self.meta(key)?.ok_or_else(missing)?;
            String::from_utf8(v).map_err(|_| missing())
        };
        let bytes32 = |key: &str| -> Result<[u8; 32]> {
            let v = self.meta(key)?.ok_or_else(missing)?;
            v.try_into().map_err(|_| missing())
        };
        Ok(Identity {
            secret: bytes32("node_secret")?,
            node_id: NodeId(bytes32("node_id")?),
            name: text("node_name")?,
            role: text("node_role")?,
            scope: text("node_scope")?,
        })
    }

    /// The latest HLC timestamp this node issued or stored (never goes backwards). Kept in
    /// `meta` and raised by every [`Store::append`], so reading it costs the same whatever the
    /// log holds.
    ///
    /// A stored value that does not decode is not trusted as zero (the clock would go back):
    /// the newest stored event's timestamp is used instead.
    pub fn clock_last(&self) -> Result<Hlc> {
        let Some(v) = self.meta("clock_last")? else {
            return Ok(Hlc::default());
        };
        if let Some(hlc) = decode_hlc(&v) {
            return Ok(hlc);
        }
        tracing::warn!(
            bytes = v.len(),
            "stored clock is unreadable; using the newest stored event's"
        );
        let newest: Option<(i64, i64)> = one(
            &self.conn,
            "SELECT hlc_wall, hlc_logical FROM events ORDER BY hlc_wall DESC, hlc_logical DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err("reading the clock"))?;
        Ok(newest.map_or_else(Hlc::default, |(wall, logical)| {
            Hlc::new(wall as u64, logical as u32)
        }))
    }

    /// The sequence number `origin`'s next event gets.
    pub fn next_seq(&self, origin: &NodeId) -> Result<u64> {
        let max: Option<i64> = one(
            &self.conn,
            "SELECT MAX(seq) FROM events WHERE origin = ?1",
            [&origin.0[..]],
            |r| r.get(0),
        )
        .map_err(self.err("reading the sequence"))?;
        Ok(max.unwrap_or(0) as u64 + 1)
    }

    // ---- the one write path -------------------------------------------------------------

    /// Stores `blobs` and `events` and folds the events into incident state, all in one
    /// transaction, and raises the recorded clock to `clock` and to the newest stored event. Idempotent: events already
    /// stored (same bytes) and blobs already present are skipped. An event stored before with
    /// *different* bytes, or a blob whose bytes do not hash to its id, refuses the whole batch.
    ///
    /// `append` is for the node's own events; anything received from a peer goes through
    /// [`Store::append_received`] or the [`SyncStore`](gridsync_proto::SyncStore) commits,
    /// which take only an admitted batch.
    pub fn append(
        &mut self,
        events: &[Event],
        blobs: &[NewBlob<'_>],
        clock: Option<Hlc>,
    ) -> Result<Appended> {
        self.write(events, blobs, clock, None, None)
    }

    /// The one write path behind [`Store::append`], [`Store::append_received`] and the sync
    /// store: `via` is recorded on newly inserted events,
    /// and `cursor` (peer, name, value) is advanced in the same transaction.
    fn write(
        &mut self,
        events: &[Event],
        blobs: &[NewBlob<'_>],
        clock: Option<Hlc>,
        via: Option<&NodeId>,
        cursor: Option<(&str, &str, u64)>,
    ) -> Result<Appended> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&path, "begin"))?;
        let mut out = Appended::default();
        let via = via.map(|v| &v.0[..]);
        for b in blobs {
            if BlobHash::of(b.bytes) != b.hash {
                return Err(StoreError::BlobMismatch { path, hash: b.hash });
            }
            out.new_blobs += exec(
                &tx,
                "INSERT OR IGNORE INTO blobs (hash, kind, size, data) VALUES (?1, ?2, ?3, ?4)",
                params![
                    &b.hash.0[..],
                    b.kind.as_str(),
                    b.bytes.len() as i64,
                    b.bytes
                ],
            )
            .map_err(sql(&path, "storing a blob"))?;
        }
        let mut touched = BTreeSet::new();
        let mut fresh: Vec<&Event> = Vec::new();
        let mut origins = BTreeSet::new();
        let mut origin_grids = BTreeSet::new();
        for e in events {
            let body = codec::encode_event(e).map_err(|error| StoreError::Corrupt {
                path: path.clone(),
                what: "event",
                error,
            })?;
            let inserted = exec(&tx,
                    "INSERT OR IGNORE INTO events (origin, seq, incident, grid, hlc_wall, hlc_logical, body, via)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        &e.origin.0[..],
                        e.seq as i64,
                        &e.incident.0.as_bytes()[..],
                        e.grid.as_str(),
                        e.hlc.wall_ms as i64,
                        e.hlc.logical as i64,
                        body,
                        via
                    ],
                )
                .map_err(sql(&path, "storing an event"))?;
            if inserted == 0 {
                let existing: Vec<u8> = one(
                    &tx,
                    "SELECT body FROM events WHERE origin = ?1 AND seq = ?2",
                    params![&e.origin.0[..], e.seq as i64],
                    |r| r.get(0),
                )
                .map_err(sql(&path, "reading an event"))?;
                if existing != body {
                    return Err(StoreError::Equivocation {
                        path,
                        origin: e.origin,
                        seq: e.seq,
                    });
                }
                out.duplicate_events += 1;
                continue;
            }
            if let gridsync_core::Payload::PhotoAdded(meta) = &e.payload {
                exec(
                    &tx,
                    "INSERT OR IGNORE INTO thumbs (photo, thumb) VALUES (?1, ?2)",
                    params![&meta.hash.0[..], &meta.thumb.0[..]],
                )
                .map_err(sql(&path, "storing a thumbnail link"))?;
            }
            out.new_events += 1;
            touched.insert(e.incident);
            origins.insert(e.origin);
            origin_grids.insert((e.origin, e.grid.as_str()));
            fresh.push(e);
        }
        for origin in &origins {
            advance_contiguous(&tx, &path, origin)?;
        }
        for (origin, grid) in &origin_grids {
            exec(
                &tx,
                "INSERT OR IGNORE INTO origin_grids (origin, grid) VALUES (?1, ?2)",
                params![&origin.0[..], grid],
            )
            .map_err(sql(&path, "storing an origin's grid"))?;
        }
        // Group the new events by incident once (a batch may hold thousands).
        let mut by_incident: std::collections::BTreeMap<IncidentId, Vec<&Event>> =
            std::collections::BTreeMap::new();
        for e in &fresh {
            by_incident.entry(e.incident).or_default().push(e);
        }
        for (id, events) in &by_incident {
            let mut state = load_state(&tx, &path, id)?;
            for e in events {
                state.apply(e);
            }
            save_state(&tx, &path, &state)?;
        }
        let newest = fresh.iter().map(|e| e.hlc).max();
        if let Some(hlc) = clock.max(newest) {
            // Big-endian bytes compare like the timestamps, so SQLite's MAX keeps the later.
            exec(
                &tx,
                "INSERT INTO meta (key, value) VALUES ('clock_last', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
                [encode_hlc(hlc)],
            )
            .map_err(sql(&path, "storing the clock"))?;
        }
        if let Some((peer, name, value)) = cursor {
            advance_cursor(&tx, peer, name, value).map_err(sql(&path, "storing a cursor"))?;
        }
        tx.commit().map_err(sql(&path, "commit"))?;
        out.incidents = touched.into_iter().collect();
        Ok(out)
    }

    /// Stores an admitted batch received from the peer [`Admitted::from`] (and `blobs` with
    /// it) like [`Store::append`] with no clock of its own, recording on every newly stored
    /// event that it came from that peer, so downloads to it skip it (it has it already).
    /// Every check of what a peer may send was made by [`gridsync_proto::Admission::admit`],
    /// the only way to build an [`Admitted`]; this store only stores.
    pub fn append_received(&mut self, batch: &Admitted, blobs: &[NewBlob<'_>]) -> Result<Appended> {
        self.write(batch.events(), blobs, None, Some(batch.from()), None)
    }

    // ---- reads --------------------------------------------------------------------------

    /// One incident's state.
    pub fn incident(&self, id: &IncidentId) -> Result<Option<IncidentState>> {
        let bytes: Option<Vec<u8>> = one(
            &self.conn,
            "SELECT state FROM incidents WHERE id = ?1",
            [&id.0.as_bytes()[..]],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("reading an incident"))?;
        bytes.map(|b| self.decode_state(id, &b)).transpose()
    }

    /// Every incident, oldest report first.
    pub fn incidents(&self) -> Result<Vec<IncidentState>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, state FROM incidents ORDER BY created_ms, id")
            .map_err(self.err("listing incidents"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(self.err("listing incidents"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, state) = row.map_err(self.err("listing incidents"))?;
            let id = uuid::Uuid::from_slice(&id).map(IncidentId).map_err(|_| {
                StoreError::CorruptRow {
                    path: self.path.clone(),
                    what: "an incident id is not 16 bytes".into(),
                }
            })?;
            out.push(self.decode_state(&id, &state)?);
        }
        Ok(out)
    }

    /// A stored state that fails to decode (say, written by another build) is rebuilt from
    /// the events, which are the truth.
    /// So is one that decodes to another incident's state.
    fn decode_state(&self, id: &IncidentId, bytes: &[u8]) -> Result<IncidentState> {
        match codec::decode_state(bytes) {
            Ok(s) if s.id == *id => Ok(s),
            Ok(s) => {
                tracing::warn!(incident = %id, found = %s.id, "stored state is another incident's; rebuilding it from events");
                Ok(IncidentState::replay(*id, &self.events_of(id)?))
            }
            Err(e) => {
                tracing::warn!(incident = %id, error = %e, "rebuilding incident state from events");
                Ok(IncidentState::replay(*id, &self.events_of(id)?))
            }
        }
    }

    /// Every stored event of one incident, in arrival order.
    pub fn events_of(&self, id: &IncidentId) -> Result<Vec<Event>> {
        let mut stmt = self
            .conn
            .prepare("SELECT body FROM events WHERE incident = ?1 ORDER BY local_seq")
            .map_err(self.err("reading events"))?;
        let rows = stmt
            .query_map([&id.0.as_bytes()[..]], |r| r.get::<_, Vec<u8>>(0))
            .map_err(self.err("reading events"))?;
        let mut out = Vec::new();
        for row in rows {
            let body = row.map_err(self.err("reading events"))?;
            out.push(
                codec::decode_event(&body).map_err(|error| StoreError::Corrupt {
                    path: self.path.clone(),
                    what: "event",
                    error,
                })?,
            );
        }
        Ok(out)
    }

    /// Whether event `id` is stored.
    pub fn has_event(&self, id: &EventId) -> Result<bool> {
        one(
            &self.conn,
            "SELECT 1 FROM events WHERE origin = ?1 AND seq = ?2",
            params![&id.origin.0[..], id.seq as i64],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(self.err("reading an event"))
    }

    /// Per origin, the highest sequence number up to which every event is held.
    pub fn contiguous(&self, origin: &NodeId) -> Result<u64> {
        one(
            &self.conn,
            "SELECT contiguous FROM origins WHERE origin = ?1",
            [&origin.0[..]],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|v| v.unwrap_or(0) as u64)
        .map_err(self.err("reading progress"))
    }

    /// A stored blob's bytes.
    pub fn blob(&self, hash: &BlobHash) -> Result<Option<Vec<u8>>> {
        one(
            &self.conn,
            "SELECT data FROM blobs WHERE hash = ?1",
            [&hash.0[..]],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("reading a blob"))
    }

    /// The thumbnail hash of photo `photo`, as its photo event names it.
    pub fn thumb_of(&self, photo: &BlobHash) -> Result<Option<BlobHash>> {
        let v: Option<Vec<u8>> = one(
            &self.conn,
            "SELECT thumb FROM thumbs WHERE photo = ?1",
            [&photo.0[..]],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("reading a thumbnail link"))?;
        Ok(v.and_then(|v| <[u8; 32]>::try_from(v).ok()).map(BlobHash))
    }

    /// How much the store holds.
    pub fn counts(&self) -> Result<Counts> {
        one(&self.conn,
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM incidents), (SELECT COUNT(*) FROM blobs)",
                [],
                |r| {
                    Ok(Counts {
                        events: r.get::<_, i64>(0)? as u64,
                        incidents: r.get::<_, i64>(1)? as u64,
                        blobs: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .map_err(self.err("counting"))
    }

    /// What is waiting to go upstream: own events past the upstream's acknowledgement, and
    /// blobs not yet sent.
    pub fn pending(&self, own: &NodeId) -> Result<Pending> {
        let acked = self.cursor(UPSTREAM, ACKED_OWN_SEQ)?;
        one(
            &self.conn,
            "SELECT (SELECT COUNT(*) FROM events WHERE origin = ?1 AND seq > ?2),
                        (SELECT COUNT(*) FROM blobs WHERE sent_upstream = 0),
                        (SELECT COALESCE(SUM(size), 0) FROM blobs WHERE sent_upstream = 0)",
            params![&own.0[..], acked as i64],
            |r| {
                Ok(Pending {
                    events: r.get::<_, i64>(0)? as u64,
                    blobs: r.get::<_, i64>(1)? as u64,
                    blob_bytes: r.get::<_, i64>(2)? as u64,
                })
            },
        )
        .map_err(self.err("counting pending"))
    }

    /// A sync cursor (0 when never set).
    pub fn cursor(&self, peer: &str, name: &str) -> Result<u64> {
        one(
            &self.conn,
            "SELECT value FROM cursors WHERE peer = ?1 AND name = ?2",
            [peer, name],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|v| v.unwrap_or(0) as u64)
        .map_err(self.err("reading a cursor"))
    }

    /// Moves a sync cursor forward (never back: re-applying an old value is a no-op).
    pub fn advance_cursor(&mut self, peer: &str, name: &str, value: u64) -> Result<()> {
        advance_cursor(&self.conn, peer, name, value).map_err(self.err("storing a cursor"))
    }
}

/// Moves a sync cursor forward, never back.
fn advance_cursor(conn: &Connection, peer: &str, name: &str, value: u64) -> rusqlite::Result<()> {
    exec(
        conn,
        "INSERT INTO cursors (peer, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer, name) DO UPDATE SET value = MAX(value, excluded.value)",
        params![peer, name, sql_int(value)],
    )
    .map(|_| ())
}

/// A `u64` as an SQLite integer, saturating at `i64::MAX` (sequence numbers and cursors never
/// get near it; a hostile peer's value must not wrap to a negative number).
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn sql<'a>(
    path: &'a Path,
    context: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |error| StoreError::Sqlite {
        path: path.to_owned(),
        context,
        error,
    }
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

fn encode_hlc(hlc: Hlc) -> Vec<u8> {
    let mut v = hlc.wall_ms.to_be_bytes().to_vec();
    v.extend_from_slice(&hlc.logical.to_be_bytes());
    v
}

fn decode_hlc(v: &[u8]) -> Option<Hlc> {
    let wall: [u8; 8] = v.get(..8)?.try_into().ok()?;
    let logical: [u8; 4] = v.get(8..12)?.try_into().ok()?;
    Some(Hlc::new(
        u64::from_be_bytes(wall),
        u32::from_be_bytes(logical),
    ))
}

fn advance_contiguous(tx: &Transaction<'_>, path: &Path, origin: &NodeId) -> Result<()> {
    let mut at: i64 = one(
        tx,
        "SELECT contiguous FROM origins WHERE origin = ?1",
        [&origin.0[..]],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql(path, "reading progress"))?
    .unwrap_or(0);
    let mut next = tx
        .prepare_cached("SELECT 1 FROM events WHERE origin = ?1 AND seq = ?2")
        .map_err(sql(path, "reading progress"))?;
    while next
        .exists(params![&origin.0[..], at + 1])
        .map_err(sql(path, "reading progress"))?
    {
        at += 1;
    }
    exec(
        tx,
        "INSERT INTO origins (origin, contiguous) VALUES (?1, ?2)
         ON CONFLICT (origin) DO UPDATE SET contiguous = excluded.contiguous",
        params![&origin.0[..], at],
    )
    .map_err(sql(path, "storing progress"))?;
    Ok(())
}

fn load_state(tx: &Transaction<'_>, path: &Path, id: &IncidentId) -> Result<IncidentState> {
    let bytes: Option<Vec<u8>> = one(
        tx,
        "SELECT state FROM incidents WHERE id = ?1",
        [&id.0.as_bytes()[..]],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql(path, "reading an incident"))?;
    let Some(bytes) = bytes else {
        return Ok(IncidentState::new(*id));
    };
    match codec::decode_state(&bytes) {
        Ok(s) if s.id == *id => return Ok(s),
        Ok(s) => {
            tracing::warn!(incident = %id, found = %s.id, "stored state is another incident's; rebuilding it from events");
        }
        Err(e) => {
            tracing::warn!(incident = %id, error = %e, "rebuilding incident state from events");
        }
    }
    // The cache is unreadable: rebuild it from the events already stored (the new ones are
    // applied by the caller; applying one twice is a no-op anyway).
    let mut stmt = tx
        .prepare_cached("SELECT body FROM events WHERE incident = ?1")
        .map_err(sql(path, "reading events"))?;
    let bodies = stmt
        .query_map([&id.0.as_bytes()[..]], |r| r.get::<_, Vec<u8>>(0))
        .map_err(sql(path, "reading events"))?;
    let mut state = IncidentState::new(*id);
    for body in bodies {
        let body = body.map_err(sql(path, "reading events"))?;
        let e = codec::decode_event(&body).map_err(|error| StoreError::Corrupt {
            path: path.to_owned(),
            what: "event",
            error,
        })?;
        state.apply(&e);
    }
    Ok(state)
}

fn save_state(tx: &Transaction<'_>, path: &Path, state: &IncidentState) -> Result<()> {
    let bytes = codec::encode_state(state).map_err(|error| match error {
        CodecError::TooLarge(bytes) => StoreError::StateTooLarge {
            path: path.to_owned(),
            incident: state.id,
            bytes,
        },
        error => StoreError::Corrupt {
            path: path.to_owned(),
            what: "incident state",
            error,
        },
    })?;
    let created = state
        .report
        .as_ref()
        .map(|r| r.stamp)
        .or(state.first.as_ref().map(|(s, _)| *s))
        .map_or(0, |s| s.hlc.wall_ms as i64);
    let updated = state.last.map_or(0, |s| s.hlc.wall_ms as i64);
    exec(tx,
        "INSERT INTO incidents (id, grid, created_ms, updated_ms, state) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET grid = excluded.grid, created_ms = excluded.created_ms,
             updated_ms = excluded.updated_ms, state = excluded.state",
        params![
            &state.id.0.as_bytes()[..],
            state.grid().map(|g| g.as_str().to_owned()),
            created,
            updated,
            bytes
        ],
    )
    .map_err(sql(path, "storing an incident"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
