//! The store as the sync protocol sees it: the children enrolled at a relay, and
//! [`gridsync_proto::SyncStore`] for sessions on either side.
//!
//! Every query here costs what is new or what is asked, never the size of the store:
//! heads of a scope read `origin_grids` and `origins`, never the log; a download page is a
//! rowid range scan of `events` after the child's cursor, bounded by [`PAGE_EXAMINE`] rows;
//! `events_after` walks the `(origin, seq)` index; unsent blobs come from a partial index of
//! the blobs the parent does not hold.

use gridsync_core::{BlobHash, Event, GridCode, NodeId, Scope};
use gridsync_proto::{
    Admitted, BlobFinish, BlobInfo, BlobKind as WireKind, BlobState, Committed, Enrolled, Head,
    Page, Role, StorageError, StorageErrorKind, SyncStore,
};
use rusqlite::{params, Connection, OptionalExtension, MAIN_DB};

use crate::{
    exec, one, sql, sql_int, Appended, Result, Store, StoreError, ACKED_OWN_SEQ, UPSTREAM,
};

/// The most rows of the log one [`SyncStore::page`] call examines, so a page over a scope
/// with few events in a large log still answers in bounded time (with `more` set).
pub const PAGE_EXAMINE: usize = 10_000;

/// Cursor name: how far this node has downloaded from a parent (the cursor's peer is the
/// parent's node id in hex).
pub const DOWN: &str = "down";

/// Meta key: the parent whose holdings `blobs.sent_upstream` mirrors.
const UPSTREAM_PARENT: &str = "upstream_parent";

/// A peer enrolled at this node, as the relay CLI lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub node: NodeId,
    pub role: Role,
    /// A device's grid (four segments), or a relay's scope.
    pub scope: Scope,
    /// When it was (last) enrolled, Unix ms.
    pub enrolled_ms: u64,
    /// When it was revoked, Unix ms; `None` while enrolled.
    pub revoked_ms: Option<u64>,
}

// The scope test, in SQL: a grid lies in scope `s` iff it is `s` or lies in [`s/`, `s0`)
// (the three texts `scope_range` makes). Segments are ASCII letters and digits and '0' follows '/' in ASCII,
// so that range holds exactly the texts starting with `s/`: `110101/00` does not match
// `110101/002/014/03`. Unlike LIKE, it has no wildcards to escape and can use an index.

/// Origins with events in a scope, and how far each is contiguous here.
pub(crate) const SCOPE_HEADS_SQL: &str = "SELECT origin, contiguous FROM origins
     WHERE contiguous > 0 AND origin IN (
         SELECT origin FROM origin_grids WHERE grid = ?1 OR (grid >= ?2 AND grid < ?3))
     ORDER BY origin";

/// One download page: the rows after the cursor in arrival (rowid) order; the body only of
/// those in scope (?2..?4) and not received from the asking child (?5).
pub(crate) const PAGE_SQL: &str = "SELECT local_seq,
         CASE WHEN (grid = ?2 OR (grid >= ?3 AND grid < ?4)) AND via IS NOT ?5 THEN body END
     FROM events WHERE local_seq > ?1 ORDER BY local_seq LIMIT ?6";

/// An origin's events after a sequence number, through the `(origin, seq)` index.
pub(crate) const EVENTS_AFTER_SQL: &str =
    "SELECT body FROM events WHERE origin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";

/// Blobs of one kind (?2) the parent ?1 does not hold, oldest first, when `sent_upstream`
/// mirrors that parent: through the partial index `blobs_unsent`.
pub(crate) const UNSENT_SQL: &str = "SELECT hash, size FROM blobs AS b
     WHERE sent_upstream = 0 AND kind = ?2
       AND NOT EXISTS (SELECT 1 FROM blobs_sent AS s WHERE s.parent = ?1 AND s.hash = b.hash)
     ORDER BY rowid LIMIT ?3";

/// The same for another parent than the one `sent_upstream` mirrors (only until the first
/// blob is marked sent to it): every blob is looked at.
const UNSENT_ANY_PARENT_SQL: &str = "SELECT hash, size FROM blobs AS b
     WHERE kind = ?2
       AND NOT EXISTS (SELECT 1 FROM blobs_sent AS s WHERE s.parent = ?1 AND s.hash = b.hash)
     ORDER BY rowid LIMIT ?3";

/// The partial upload of a blob: its chunks are contiguous from 0, so its length is the end
/// of its last chunk.
pub(crate) const PARTIAL_SQL: &str =
    "SELECT offset + length(data), kind, size FROM blob_parts WHERE hash = ?1
     ORDER BY offset DESC LIMIT 1";

/// Whether a stored photo event names the blob, as the photo or as its thumbnail.
pub(crate) const REFERENCED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM thumbs WHERE photo = ?1)
         OR EXISTS (SELECT 1 FROM thumbs WHERE thumb = ?1)";

/// `(s, s/, s0)` for the scope test above.
fn scope_range(scope: &Scope) -> (String, String, String) {
    let s = scope.as_str();
    (s.to_owned(), format!("{s}/"), format!("{s}0"))
}

fn kind_text(kind: WireKind) -> &'static str {
    match kind {
        WireKind::Photo => "photo",
        WireKind::Thumb => "thumb",
    }
}

/// A store error as a session sees it: refusals keep their kind, anything else is internal.
///
/// The message may be sent to the peer (a relay's refusal of a batch, a blob refused): it
/// names the event or blob and the figures, and never this node's database path or SQL. The
/// full error, path included, goes to the local log.
fn storage(e: StoreError) -> StorageError {
    let kind = match e {
        StoreError::Equivocation { .. } => StorageErrorKind::Equivocation,
        _ => StorageErrorKind::Internal,
    };
    if kind == StorageErrorKind::Internal {
        tracing::error!(error = %e, "store failed during a sync session");
    } else {
        tracing::warn!(error = %e, "store refused a batch");
    }
    StorageError {
        kind,
        message: without_path(&e),
    }
}

/// What a store error says without the path it names (or the SQLite error, which can quote
/// SQL): what a peer may be told.
fn without_path(e: &StoreError) -> String {
    match e {
        StoreError::Equivocation { origin, seq, .. } => {
            format!(
                "event {}/{seq} is already stored with different content; refusing the batch",
                origin.short()
            )
        }
        StoreError::BlobMismatch { hash, .. } => {
            format!("blob {hash} does not match its bytes; refusing the batch")
        }
        StoreError::BlobUpload { hash, why, .. } => format!("blob {hash}: {why}"),
        StoreError::Corrupt { what, error, .. } => format!("stored {what} is corrupt: {error}"),
        StoreError::StateTooLarge {
            incident, bytes, ..
        } => format!(
            "incident {incident}: its state would be {bytes} bytes, over the {} limit",
            gridsync_core::codec::MAX_ENCODED
        ),
        StoreError::CorruptRow { what, .. } => format!("corrupt row: {what}"),
        StoreError::Enrollment { node, why, .. } => format!("cannot enroll {node}: {why}"),
        StoreError::Sqlite { context, .. } => format!("storage failed ({context})"),
        StoreError::Missing { .. }
        | StoreError::Exists { .. }
        | StoreError::NotAStore { .. }
        | StoreError::NewerSchema { .. }
        | StoreError::NoIdentity { .. } => "the store is not usable".to_owned(),
    }
}

fn committed(a: Appended) -> Committed {
    Committed {
        stored: u32::try_from(a.new_events).unwrap_or(u32::MAX),
        duplicates: u32::try_from(a.duplicate_events).unwrap_or(u32::MAX),
    }
}

/// What is held of an unfinished upload.
struct Partial {
    len: u64,
    kind: String,
    size: u64,
}

impl Store {
    fn corrupt(&self, what: String) -> StoreError {
        StoreError::CorruptRow {
            path: self.path.clone(),
            what,
        }
    }

    fn bytes32(&self, v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
        v.try_into()
            .map_err(|v: Vec<u8>| self.corrupt(format!("{what} is {} bytes, not 32", v.len())))
    }

    fn unsigned(&self, v: i64, what: &str) -> Result<u64> {
        u64::try_from(v).map_err(|_| self.corrupt(format!("{what} is negative ({v})")))
    }

    // ---- enrollment (relay side) --------------------------------------------------------

    /// Enrolls `node` as a `role` for `scope` (a device: its grid, four segments). Enrolling a
    /// node again replaces its role, scope and enrollment time and lifts a revocation.
    pub fn enroll(&mut self, node: &NodeId, role: Role, scope: &Scope, now_ms: u64) -> Result<()> {
        if role == Role::Device && scope.as_str().parse::<GridCode>().is_err() {
            return Err(StoreError::Enrollment {
                path: self.path.clone(),
                node: *node,
                why: format!(
                    "a device is enrolled for one grid (four segments, e.g. 110101/002/014/03), not the scope {scope}"
                ),
            });
        }
        exec(
            &self.conn,
            "INSERT INTO peers (node, role, scope, enrolled_ms, revoked_ms)
             VALUES (?1, ?2, ?3, ?4, NULL)
             ON CONFLICT (node) DO UPDATE SET role = excluded.role, scope = excluded.scope,
                 enrolled_ms = excluded.enrolled_ms, revoked_ms = NULL",
            params![&node.0[..], role.as_str(), scope.as_str(), sql_int(now_ms)],
        )
        .map(|_| ())
        .map_err(self.err("enrolling a peer"))
    }

    /// Revokes `node`'s enrollment; returns whether it was enrolled (and not yet revoked).
    /// Revoking again keeps the first revocation time.
    pub fn revoke(&mut self, node: &NodeId, now_ms: u64) -> Result<bool> {
        exec(
            &self.conn,
            "UPDATE peers SET revoked_ms = ?2 WHERE node = ?1 AND revoked_ms IS NULL",
            params![&node.0[..], sql_int(now_ms)],
        )
        .map(|n| n > 0)
        .map_err(self.err("revoking a peer"))
    }

    /// Every peer ever enrolled here (revoked ones too), in enrollment order.
    pub fn peers(&self) -> Result<Vec<PeerRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT node, role, scope, enrolled_ms, revoked_ms FROM peers
                 ORDER BY enrolled_ms, node",
            )
            .map_err(self.err("listing peers"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .map_err(self.err("listing peers"))?;
        let mut out = Vec::new();
        for row in rows {
            let (node, role, scope, enrolled_ms, revoked_ms) =
                row.map_err(self.err("listing peers"))?;
            let node = NodeId(self.bytes32(node, "a peer's node id")?);
            let (role, scope) = self.peer_role_scope(&role, &scope)?;
            out.push(PeerRow {
                node,
                role,
                scope,
                enrolled_ms: self.unsigned(enrolled_ms, "a peer's enrollment time")?,
                revoked_ms: revoked_ms
                    .map(|v| self.unsigned(v, "a peer's revocation time"))
                    .transpose()?,
            });
        }
        Ok(out)
    }

    fn peer_role_scope(&self, role: &str, scope: &str) -> Result<(Role, Scope)> {
        let role =
            Role::from_name(role).ok_or_else(|| self.corrupt(format!("peer role {role:?}")))?;
        let parsed: Scope = scope
            .parse()
            .map_err(|e| self.corrupt(format!("peer scope: {e}")))?;
        if role == Role::Device && scope.parse::<GridCode>().is_err() {
            return Err(self.corrupt(format!("a device's grid {scope:?} has not four segments")));
        }
        Ok((role, parsed))
    }

    fn enrolled_peer(&self, node: &NodeId) -> Result<Option<Enrolled>> {
        let row: Option<(String, String)> = one(
            &self.conn,
            "SELECT role, scope FROM peers WHERE node = ?1 AND revoked_ms IS NULL",
            [&node.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err("reading a peer"))?;
        let Some((role, scope)) = row else {
            return Ok(None);
        };
        let (role, scope) = self.peer_role_scope(&role, &scope)?;
        Ok(Some(Enrolled {
            node: *node,
            role,
            scope,
        }))
    }

    // ---- parent side --------------------------------------------------------------------

    fn scope_heads(&self, scope: &Scope) -> Result<Vec<Head>> {
        let (exact, lo, hi) = scope_range(scope);
        let mut stmt = self
            .conn
            .prepare_cached(SCOPE_HEADS_SQL)
            .map_err(self.err("reading heads"))?;
        let rows = stmt
            .query_map(params![exact, lo, hi], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(self.err("reading heads"))?;
        let mut out = Vec::new();
        for row in rows {
            let (origin, seq) = row.map_err(self.err("reading heads"))?;
            out.push(Head {
                origin: NodeId(self.bytes32(origin, "an origin")?),
                seq: self.unsigned(seq, "an origin's progress")?,
            });
        }
        Ok(out)
    }

    fn is_held(conn: &Connection, path: &std::path::Path, hash: &BlobHash) -> Result<bool> {
        conn.prepare_cached("SELECT 1 FROM blobs WHERE hash = ?1")
            .and_then(|mut s| s.exists([&hash.0[..]]))
            .map_err(sql(path, "reading a blob"))
    }

    fn partial(
        conn: &Connection,
        path: &std::path::Path,
        hash: &BlobHash,
    ) -> Result<Option<Partial>> {
        let row: Option<(i64, String, i64)> = one(conn, PARTIAL_SQL, [&hash.0[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .map_err(sql(path, "reading a partial blob"))?;
        let Some((len, kind, size)) = row else {
            return Ok(None);
        };
        let unsigned = |v: i64| {
            u64::try_from(v).map_err(|_| StoreError::CorruptRow {
                path: path.to_owned(),
                what: format!("partial blob {hash}: negative length or size ({v})"),
            })
        };
        Ok(Some(Partial {
            len: unsigned(len)?,
            kind,
            size: unsigned(size)?,
        }))
    }

    fn blob_state_of(&self, hash: &BlobHash) -> Result<BlobState> {
        if Self::is_held(&self.conn, &self.path, hash)? {
            return Ok(BlobState::Held);
        }
        if let Some(p) = Self::partial(&self.conn, &self.path, hash)? {
            return Ok(BlobState::Partial { offset: p.len });
        }
        let referenced: bool = one(&self.conn, REFERENCED_SQL, [&hash.0[..]], |r| r.get(0))
            .map_err(self.err("reading blob references"))?;
        Ok(if referenced {
            BlobState::Missing
        } else {
            BlobState::Unreferenced
        })
    }

    fn write_blob_part(
        &mut self,
        hash: &BlobHash,
        kind: WireKind,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<()> {
        let path = self.path.clone();
        let refuse = |why: String| StoreError::BlobUpload {
            path: path.clone(),
            hash: *hash,
            why,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&path, "begin"))?;
        if Self::is_held(&tx, &path, hash)? {
            return Ok(());
        }
        let end = offset
            .checked_add(bytes.len() as u64)
            .filter(|end| *end <= size)
            .ok_or_else(|| {
                refuse(format!(
                    "{} bytes at offset {offset} do not fit in its size of {size} bytes",
                    bytes.len()
                ))
            })?;
        let kind = kind_text(kind);
        let mut held = 0;
        if let Some(p) = Self::partial(&tx, &path, hash)? {
            if p.kind == kind && p.size == size {
                held = p.len;
            } else {
                // Another size or kind than the partial's: one of them is wrong, and the
                // partial could never finish. Start again.
                tracing::warn!(%hash, held = p.len, size = p.size, kind = %p.kind, new_size = size, new_kind = kind,
                    "discarding a partial upload of another size or kind");
                exec(&tx, "DELETE FROM blob_parts WHERE hash = ?1", [&hash.0[..]])
                    .map_err(sql(&path, "discarding a partial blob"))?;
            }
        }
        if offset > held {
            // Keep a discard above: the next attempt starts from 0.
            tx.commit().map_err(sql(&path, "commit"))?;
            return Err(refuse(format!(
                "bytes at offset {offset}, but only {held} bytes are held: the upload must resume at offset {held}"
            )));
        }
        if end > held {
            // `held - offset` < `bytes.len()` here, so the cast cannot truncate.
            let new = &bytes[(held - offset) as usize..];
            exec(
                &tx,
                "INSERT INTO blob_parts (hash, offset, kind, size, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&hash.0[..], sql_int(held), kind, sql_int(size), new],
            )
            .map_err(sql(&path, "storing part of a blob"))?;
        }
        tx.commit().map_err(sql(&path, "commit"))
    }

    fn finish_blob(
        &mut self,
        hash: &BlobHash,
        check: &dyn Fn(&[u8]) -> std::result::Result<(), String>,
    ) -> Result<BlobFinish> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&path, "begin"))?;
        let discard = |tx: &Connection| {
            exec(tx, "DELETE FROM blob_parts WHERE hash = ?1", [&hash.0[..]])
                .map_err(sql(&path, "discarding a partial blob"))
        };
        if Self::is_held(&tx, &path, hash)? {
            // Stored meanwhile (say, with a batch of its own): any partial is stale.
            discard(&tx)?;
            tx.commit().map_err(sql(&path, "commit"))?;
            return Ok(BlobFinish::Stored);
        }
        let chunks = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT offset, kind, size, data FROM blob_parts WHERE hash = ?1 ORDER BY offset",
                )
                .map_err(sql(&path, "reading a partial blob"))?;
            let rows = stmt
                .query_map([&hash.0[..]], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .map_err(sql(&path, "reading a partial blob"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql(&path, "reading a partial blob"))?
        };
        let Some((_, kind, size, _)) = chunks.first() else {
            // Nothing was uploaded: nothing to store.
            return Ok(BlobFinish::HashMismatch);
        };
        let (kind, size) = (kind.clone(), *size);
        let mut whole = Vec::with_capacity(chunks.iter().map(|c| c.3.len()).sum());
        let mut contiguous = true;
        for (offset, k, s, data) in &chunks {
            if i64::try_from(whole.len()) != Ok(*offset) || *k != kind || *s != size {
                contiguous = false;
                break;
            }
            whole.extend_from_slice(data);
        }
        let matches =
            contiguous && i64::try_from(whole.len()) == Ok(size) && BlobHash::of(&whole) == *hash;
        // The check (the caller's policy) only ever sees bytes that hash right.
        let outcome = if !matches {
            tracing::warn!(%hash, bytes = whole.len(), size, "uploaded blob does not match its hash or size; discarding it");
            BlobFinish::HashMismatch
        } else if let Err(reason) = check(&whole) {
            tracing::warn!(%hash, bytes = whole.len(), %reason, "uploaded blob refused by the blob check; discarding it");
            BlobFinish::Rejected(reason)
        } else {
            exec(
                &tx,
                "INSERT OR IGNORE INTO blobs (hash, kind, size, data) VALUES (?1, ?2, ?3, ?4)",
                params![&hash.0[..], kind, size, whole],
            )
            .map_err(sql(&path, "storing a blob"))?;
            BlobFinish::Stored
        };
        discard(&tx)?;
        tx.commit().map_err(sql(&path, "commit"))?;
        Ok(outcome)
    }

    fn page_of(
        &self,
        scope: &Scope,
        except: &NodeId,
        cursor: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Page> {
        let (exact, lo, hi) = scope_range(scope);
        let max_events = max_events.max(1);
        let mut stmt = self
            .conn
            .prepare_cached(PAGE_SQL)
            .map_err(self.err("reading a page"))?;
        let mut rows = stmt
            .query(params![
                sql_int(cursor),
                exact,
                lo,
                hi,
                &except.0[..],
                (PAGE_EXAMINE + 1) as i64
            ])
            .map_err(self.err("reading a page"))?;
        let mut page = Page {
            events: Vec::new(),
            cursor,
            more: false,
        };
        let (mut examined, mut bytes) = (0, 0usize);
        while let Some(row) = rows.next().map_err(self.err("reading a page"))? {
            // A row is there: if this page is full, it is for the next one.
            if examined == PAGE_EXAMINE || page.events.len() >= max_events {
                page.more = true;
                break;
            }
            let at: i64 = row.get(0).map_err(self.err("reading a page"))?;
            let body: Option<Vec<u8>> = row.get(1).map_err(self.err("reading a page"))?;
            if let Some(body) = body {
                // Never over `max_bytes`, except one event alone that is larger.
                if !page.events.is_empty() && bytes.saturating_add(body.len()) > max_bytes {
                    page.more = true;
                    break;
                }
                bytes += body.len();
                page.events.push(body);
            }
            examined += 1;
            page.cursor = self.unsigned(at, "an event's arrival sequence")?;
        }
        Ok(page)
    }

    // ---- child side ---------------------------------------------------------------------

    fn origin_ids(&self) -> Result<Vec<NodeId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT origin FROM origins ORDER BY origin")
            .map_err(self.err("listing origins"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(self.err("listing origins"))?;
        let mut out = Vec::new();
        for row in rows {
            let origin = row.map_err(self.err("listing origins"))?;
            out.push(NodeId(self.bytes32(origin, "an origin")?));
        }
        Ok(out)
    }

    fn events_after_seq(&self, origin: &NodeId, after: u64, limit: usize) -> Result<Vec<Event>> {
        let mut stmt = self
            .conn
            .prepare_cached(EVENTS_AFTER_SQL)
            .map_err(self.err("reading events"))?;
        let rows = stmt
            .query_map(
                params![&origin.0[..], sql_int(after), sql_int(limit as u64)],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .map_err(self.err("reading events"))?;
        let mut out = Vec::new();
        for row in rows {
            let body = row.map_err(self.err("reading events"))?;
            out.push(gridsync_core::codec::decode_event(&body).map_err(|error| {
                StoreError::Corrupt {
                    path: self.path.clone(),
                    what: "event",
                    error,
                }
            })?);
        }
        Ok(out)
    }

    /// The parent whose holdings `blobs.sent_upstream` mirrors (none before the first blob
    /// is marked sent).
    fn upstream_parent(&self) -> Result<Option<NodeId>> {
        match self.meta(UPSTREAM_PARENT)? {
            None => Ok(None),
            Some(v) => Ok(Some(NodeId(self.bytes32(v, "the upstream parent")?))),
        }
    }

    fn unsent(&self, parent: &NodeId, limit: usize) -> Result<Vec<BlobInfo>> {
        // `sent_upstream` mirrors one parent (a node has one); for any other, look at all.
        let sql = match self.upstream_parent()? {
            Some(p) if p != *parent => UNSENT_ANY_PARENT_SQL,
            _ => UNSENT_SQL,
        };
        let mut out = Vec::new();
        for kind in [WireKind::Thumb, WireKind::Photo] {
            let left = limit - out.len();
            if left == 0 {
                break;
            }
            let mut stmt = self
                .conn
                .prepare_cached(sql)
                .map_err(self.err("listing unsent blobs"))?;
            let rows = stmt
                .query_map(
                    params![&parent.0[..], kind_text(kind), sql_int(left as u64)],
                    |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)),
                )
                .map_err(self.err("listing unsent blobs"))?;
            for row in rows {
                let (hash, size) = row.map_err(self.err("listing unsent blobs"))?;
                out.push(BlobInfo {
                    hash: BlobHash(self.bytes32(hash, "a blob hash")?),
                    kind,
                    size: self.unsigned(size, "a blob's size")?,
                });
            }
        }
        Ok(out)
    }

    fn mark_sent(&mut self, parent: &NodeId, hash: &BlobHash) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&path, "begin"))?;
        // Read inside the transaction, so the switch below cannot race another writer.
        let recorded: Option<Vec<u8>> = one(
            &tx,
            "SELECT value FROM meta WHERE key = ?1",
            [UPSTREAM_PARENT],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(&path, "reading meta"))?;
        if recorded.as_deref() != Some(&parent.0[..]) {
            if recorded.is_some() {
                // A new parent: `sent_upstream` now mirrors what this one holds. (Once per
                // change of parent; without a previous one, nothing was marked sent.)
                exec(
                    &tx,
                    "UPDATE blobs SET sent_upstream =
                         (hash IN (SELECT hash FROM blobs_sent WHERE parent = ?1))",
                    [&parent.0[..]],
                )
                .map_err(sql(&path, "switching the upstream parent"))?;
            }
            exec(
                &tx,
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![UPSTREAM_PARENT, &parent.0[..]],
            )
            .map_err(sql(&path, "switching the upstream parent"))?;
        }
        exec(
            &tx,
            "INSERT OR IGNORE INTO blobs_sent (parent, hash) VALUES (?1, ?2)",
            params![&parent.0[..], &hash.0[..]],
        )
        .map_err(sql(&path, "marking a blob sent"))?;
        exec(
            &tx,
            "UPDATE blobs SET sent_upstream = 1 WHERE hash = ?1",
            [&hash.0[..]],
        )
        .map_err(sql(&path, "marking a blob sent"))?;
        tx.commit().map_err(sql(&path, "commit"))
    }

    /// Reads the range through SQLite's incremental blob I/O, which reads only the pages
    /// that hold it: a 2 MB photo is not loaded whole for each chunk sent.
    fn read_blob_range(&self, hash: &BlobHash, offset: u64, len: usize) -> Result<Option<Vec<u8>>> {
        let row: Option<(i64, i64)> = one(
            &self.conn,
            "SELECT rowid, length(data) FROM blobs WHERE hash = ?1",
            [&hash.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err("reading a blob"))?;
        let Some((rowid, size)) = row else {
            return Ok(None);
        };
        let size = usize::try_from(size)
            .map_err(|_| self.corrupt(format!("blob {hash} has a negative size")))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(size);
        let mut buf = vec![0; len.min(size - start)];
        if !buf.is_empty() {
            let blob = self
                .conn
                .blob_open(MAIN_DB, "blobs", "data", rowid, true)
                .map_err(self.err("opening a blob"))?;
            blob.read_at_exact(&mut buf, start)
                .map_err(self.err("reading a blob"))?;
        }
        Ok(Some(buf))
    }
}

impl SyncStore for Store {
    fn enrolled(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
        self.enrolled_peer(node).map_err(storage)
    }

    /// A device's head is its own origin's contiguous sequence; a relay's, those of every
    /// origin with an event in its scope. Heads at 0 are left out (the same as listed at 0).
    fn heads(&self, peer: &Enrolled) -> Result<Vec<Head>, StorageError> {
        match peer.role {
            Role::Device => {
                let seq = self.contiguous(&peer.node).map_err(storage)?;
                Ok((seq > 0)
                    .then_some(Head {
                        origin: peer.node,
                        seq,
                    })
                    .into_iter()
                    .collect())
            }
            Role::Street | Role::District => self.scope_heads(&peer.scope).map_err(storage),
        }
    }

    fn commit(&mut self, batch: &Admitted) -> Result<Committed, StorageError> {
        self.append_received(batch, &[])
            .map(committed)
            .map_err(storage)
    }

    fn blob_state(&self, hash: &BlobHash) -> Result<BlobState, StorageError> {
        self.blob_state_of(hash).map_err(storage)
    }

    /// Bytes before the partial's end are skipped (a re-send); a write past it, or past
    /// `size`, is refused. A write for a blob already held is a no-op. A partial of another
    /// `size` or `kind` is discarded first (it could never finish).
    fn blob_write(
        &mut self,
        hash: &BlobHash,
        kind: WireKind,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        self.write_blob_part(hash, kind, size, offset, bytes)
            .map_err(storage)
    }

    /// `Stored` also when the blob is held already (without calling `check`: what is held
    /// was checked, or is this node's own); `HashMismatch` when nothing was uploaded. `check`
    /// runs inside the write transaction, between reading the parts and storing the blob.
    fn blob_finish(
        &mut self,
        hash: &BlobHash,
        check: &dyn Fn(&[u8]) -> std::result::Result<(), String>,
    ) -> Result<BlobFinish, StorageError> {
        self.finish_blob(hash, check).map_err(storage)
    }

    /// Examines at most [`PAGE_EXAMINE`] rows. The page holds at least one event when any is
    /// found, and never more than `max_bytes` of bodies unless its one event alone is larger.
    /// `cursor` is the arrival sequence of the last row examined (as given when none was);
    /// `more` is set when the page stopped before the end of the log.
    fn page(
        &self,
        scope: &Scope,
        except: &NodeId,
        cursor: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        self.page_of(scope, except, cursor, max_events, max_bytes)
            .map_err(storage)
    }

    fn blob_discard(&mut self, hash: &BlobHash) -> Result<(), StorageError> {
        exec(
            &self.conn,
            "DELETE FROM blob_parts WHERE hash = ?1",
            [&hash.0[..]],
        )
        .map(|_| ())
        .map_err(self.err("discarding a partial blob"))
        .map_err(storage)
    }

    fn origins(&self) -> Result<Vec<NodeId>, StorageError> {
        self.origin_ids().map_err(storage)
    }

    fn events_after(
        &self,
        origin: &NodeId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StorageError> {
        self.events_after_seq(origin, after, limit).map_err(storage)
    }

    /// Thumbnails first, then photos, each oldest first.
    fn unsent_blobs(&self, parent: &NodeId, limit: usize) -> Result<Vec<BlobInfo>, StorageError> {
        self.unsent(parent, limit).map_err(storage)
    }

    fn mark_blob_sent(&mut self, parent: &NodeId, hash: &BlobHash) -> Result<(), StorageError> {
        self.mark_sent(parent, hash).map_err(storage)
    }

    fn read_blob(
        &self,
        hash: &BlobHash,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_blob_range(hash, offset, len).map_err(storage)
    }

    fn down_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        self.cursor(&parent.to_hex(), DOWN).map_err(storage)
    }

    /// The events are stored with `via` = `parent`, so they are never offered back to it.
    fn commit_download(
        &mut self,
        batch: &Admitted,
        cursor: u64,
    ) -> Result<Committed, StorageError> {
        let parent = batch.from();
        let peer = parent.to_hex();
        self.write(
            batch.events(),
            &[],
            None,
            Some(parent),
            Some((&peer, DOWN, cursor)),
        )
        .map(committed)
        .map_err(storage)
    }

    /// One upstream: the acknowledgement is kept under [`UPSTREAM`], whichever the parent.
    fn own_acked(&mut self, _parent: &NodeId, seq: u64) -> Result<(), StorageError> {
        // Most sessions acknowledge nothing new: read first, so they write (and flush) nothing.
        if self.cursor(UPSTREAM, ACKED_OWN_SEQ).map_err(storage)? >= seq {
            return Ok(());
        }
        self.advance_cursor(UPSTREAM, ACKED_OWN_SEQ, seq)
            .map_err(storage)
    }
}

#[cfg(test)]
mod tests;
