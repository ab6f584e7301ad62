//! Photos and thumbnails: the content-addressed `blobs`, the `thumbs` links, partial uploads
//! (`blob_parts`: chunks contiguous from 0, so an interrupted upload resumes at its end, and
//! only ever grows there), and which blobs a parent holds (`blobs_sent`, mirrored for the
//! current parent in `blobs.sent_upstream`).
//!
//! A blob is held only once its bytes hash to its id (and, for an upload, passed the caller's
//! check). Unsent blobs come from a partial index of the blobs the parent does not hold; a
//! range of a blob is read through SQLite's incremental blob I/O.

use std::path::Path;

use gridsync_core::{BlobHash, NodeId, Scope};
use gridsync_proto::{BlobFinish, BlobInfo, BlobState};
use rusqlite::{params, Connection, OptionalExtension, MAIN_DB};

use crate::error::sql;
use crate::{begin, exec, one, sql_int, BlobKind, Result, Store, StoreError};

/// Meta key: the parent whose holdings `blobs.sent_upstream` mirrors.
const UPSTREAM_PARENT: &str = "upstream_parent";

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

/// A blob kind as the `kind` columns hold it (the only place that text is written).
pub(crate) fn kind_text(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Photo => "photo",
        BlobKind::Thumb => "thumb",
    }
}

/// The blob kind a `kind` column holds.
fn kind_of_text(text: &str) -> Option<BlobKind> {
    [BlobKind::Photo, BlobKind::Thumb]
        .into_iter()
        .find(|k| kind_text(*k) == text)
}

/// Stores a blob whose bytes were checked to hash to `hash`; returns 1 when it is new, 0 when
/// it was held already. A new blob is no longer wanted, nor missing as a thumbnail.
pub(crate) fn insert_blob(
    conn: &Connection,
    path: &Path,
    hash: &BlobHash,
    kind: BlobKind,
    bytes: &[u8],
) -> Result<usize> {
    let new = exec(
        conn,
        "INSERT OR IGNORE INTO blobs (hash, kind, size, data) VALUES (?1, ?2, ?3, ?4)",
        params![
            &hash.0[..],
            kind_text(kind),
            sql_int(bytes.len() as u64),
            bytes
        ],
    )
    .map_err(sql(path, "storing a blob"))?;
    if new > 0 {
        exec(
            conn,
            "UPDATE photo_refs SET thumb_missing = 0 WHERE thumb = ?1 AND thumb_missing = 1",
            [&hash.0[..]],
        )
        .map_err(sql(path, "indexing a thumbnail"))?;
        exec(
            conn,
            "DELETE FROM blob_wants WHERE hash = ?1",
            [&hash.0[..]],
        )
        .map_err(sql(path, "storing a blob"))?;
        // A pruned photo fetched back: held again, and never pruned again.
        exec(
            conn,
            "UPDATE blobs_pruned SET restored = 1 WHERE hash = ?1 AND restored = 0",
            [&hash.0[..]],
        )
        .map_err(sql(path, "storing a blob"))?;
    }
    Ok(new)
}

/// Whether a photo add of a grid in scope (?2..?4, `read::scope_range`) names blob ?1, as
/// its photo or its thumbnail: through `photo_refs_by_photo` and `photo_refs_by_thumb`.
pub(crate) const IN_SCOPE_SQL: &str = "SELECT
       EXISTS (SELECT 1 FROM photo_refs WHERE photo = ?1
               AND (grid = ?2 OR (grid >= ?3 AND grid < ?4)))
    OR EXISTS (SELECT 1 FROM photo_refs WHERE thumb = ?1
               AND (grid = ?2 OR (grid >= ?3 AND grid < ?4)))";

/// The thumbnails missing here of the visible photo adds of a scope, oldest add first (a
/// thumbnail two adds name comes twice): through the partial index
/// `photo_refs_missing_thumbs`, so it costs what is missing, not what is held. The scope test
/// is one range, [`s`, `s0`) (?1, ?2 of `read::scope_range`'s first and last): a grid code
/// holds only letters, digits and '/', and no character between '/' and '0', so that range is
/// `s` and the grids under `s/`. (Without `INDEXED BY` the planner may walk the whole table in
/// rowid order to save the sort.)
pub(crate) const MISSING_THUMBS_SQL: &str = "SELECT thumb FROM photo_refs
     INDEXED BY photo_refs_missing_thumbs
     WHERE visible = 1 AND thumb_missing = 1 AND grid >= ?1 AND grid < ?2
     ORDER BY rowid";

/// What is held of an unfinished upload.
struct Partial {
    len: u64,
    kind: String,
    size: u64,
}

fn is_held(conn: &Connection, path: &Path, hash: &BlobHash) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM blobs WHERE hash = ?1")
        .and_then(|mut s| s.exists([&hash.0[..]]))
        .map_err(sql(path, "reading a blob"))
}

fn partial(conn: &Connection, path: &Path, hash: &BlobHash) -> Result<Option<Partial>> {
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

fn discard(conn: &Connection, path: &Path, hash: &BlobHash) -> Result<()> {
    exec(
        conn,
        "DELETE FROM blob_parts WHERE hash = ?1",
        [&hash.0[..]],
    )
    .map(|_| ())
    .map_err(sql(path, "discarding a partial blob"))
}

impl Store {
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

    /// Held, partly uploaded (to where), missing (a stored event names it) or unreferenced.
    pub(crate) fn blob_state(&self, hash: &BlobHash) -> Result<BlobState> {
        if is_held(&self.conn, &self.path, hash)? {
            return Ok(BlobState::Held);
        }
        if let Some(p) = partial(&self.conn, &self.path, hash)? {
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

    /// Writes `bytes` at `offset` of the upload of blob `hash` (`size` bytes of `kind`).
    ///
    /// Bytes before the partial's end are skipped (a re-send); a write past it, or past
    /// `size`, is refused. A write for a blob already held is a no-op. A partial of another
    /// `size` or `kind` is discarded first (it could never finish).
    pub(crate) fn blob_write(
        &mut self,
        hash: &BlobHash,
        kind: BlobKind,
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
        let tx = begin(&mut self.conn, &path)?;
        if is_held(&tx, &path, hash)? {
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
        if let Some(p) = partial(&tx, &path, hash)? {
            if p.kind == kind && p.size == size {
                held = p.len;
            } else {
                // Another size or kind than the partial's: one of them is wrong, and the
                // partial could never finish. Start again.
                tracing::warn!(%hash, held = p.len, size = p.size, kind = %p.kind, new_size = size, new_kind = kind,
                    "discarding a partial upload of another size or kind");
                discard(&tx, &path, hash)?;
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

    /// Stores the uploaded blob `hash` if its bytes hash to it and `check` accepts them, and
    /// discards the partial either way.
    ///
    /// `Stored` also when the blob is held already (without calling `check`: what is held
    /// was checked, or is this node's own); `HashMismatch` when nothing was uploaded. `check`
    /// runs inside the write transaction, between reading the parts and storing the blob.
    pub(crate) fn blob_finish(
        &mut self,
        hash: &BlobHash,
        check: &dyn Fn(&[u8]) -> std::result::Result<(), String>,
    ) -> Result<BlobFinish> {
        let path = self.path.clone();
        let tx = begin(&mut self.conn, &path)?;
        if is_held(&tx, &path, hash)? {
            // Stored meanwhile (say, with a batch of its own): any partial is stale.
            discard(&tx, &path, hash)?;
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
            let kind = kind_of_text(&kind).ok_or_else(|| StoreError::CorruptRow {
                path: path.clone(),
                what: format!("partial blob {hash}: kind {kind:?} is not photo or thumb"),
            })?;
            insert_blob(&tx, &path, hash, kind, &whole)?;
            BlobFinish::Stored
        };
        discard(&tx, &path, hash)?;
        tx.commit().map_err(sql(&path, "commit"))?;
        Ok(outcome)
    }

    /// Drops what was uploaded of blob `hash`.
    pub(crate) fn blob_discard(&mut self, hash: &BlobHash) -> Result<()> {
        discard(&self.conn, &self.path, hash)
    }

    /// Blob `hash`'s kind and size, if it is held whole.
    pub fn held_blob(&self, hash: &BlobHash) -> Result<Option<BlobInfo>> {
        let row: Option<(String, i64)> = one(
            &self.conn,
            "SELECT kind, size FROM blobs WHERE hash = ?1",
            [&hash.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err("reading a blob"))?;
        let Some((kind, size)) = row else {
            return Ok(None);
        };
        let kind = kind_of_text(&kind).ok_or_else(|| {
            self.corrupt(format!("blob {hash}: kind {kind:?} is not photo or thumb"))
        })?;
        Ok(Some(BlobInfo {
            hash: *hash,
            kind,
            size: self.unsigned(size, "a blob's size")?,
        }))
    }

    /// Whether a photo event held here whose grid lies in `scope` names blob `hash` (as its
    /// photo or its thumbnail, removed since or not): what a child of `scope` may fetch.
    pub fn blob_in_scope(&self, hash: &BlobHash, scope: &Scope) -> Result<bool> {
        let (exact, lo, hi) = crate::read::scope_range(scope);
        one(
            &self.conn,
            IN_SCOPE_SQL,
            params![&hash.0[..], exact, lo, hi],
            |r| r.get(0),
        )
        .map_err(self.err("reading photo references"))
    }

    /// What this node fetches from its parent (`SyncStore::blobs_to_fetch`): the blobs
    /// wanted, oldest want first, then the thumbnails missing of the visible photos of
    /// `scope`, oldest photo first; each once, at most `limit`.
    pub fn blobs_to_fetch(&self, scope: &Scope, limit: usize) -> Result<Vec<(BlobHash, BlobKind)>> {
        let mut out: Vec<(BlobHash, BlobKind)> = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT hash, kind FROM blob_wants AS w
                     WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE hash = w.hash)
                     ORDER BY wanted_ms, rowid LIMIT ?1",
                )
                .map_err(self.err("listing wanted blobs"))?;
            let rows = stmt
                .query_map([sql_int(limit as u64)], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(self.err("listing wanted blobs"))?;
            for row in rows {
                let (hash, kind) = row.map_err(self.err("listing wanted blobs"))?;
                let kind = kind_of_text(&kind)
                    .ok_or_else(|| self.corrupt(format!("a wanted blob of kind {kind:?}")))?;
                out.push((BlobHash(self.bytes32(hash, "a wanted blob's hash")?), kind));
            }
        }
        if out.len() >= limit {
            return Ok(out);
        }
        let (exact, _, hi) = crate::read::scope_range(scope);
        let mut stmt = self
            .conn
            .prepare_cached(MISSING_THUMBS_SQL)
            .map_err(self.err("listing missing thumbnails"))?;
        // Read lazily: only as many rows as the list takes (a wanted thumbnail, or one two
        // adds name, is listed once).
        let rows = stmt
            .query_map(params![exact, hi], |r| r.get::<_, Vec<u8>>(0))
            .map_err(self.err("listing missing thumbnails"))?;
        for row in rows {
            if out.len() >= limit {
                break;
            }
            let hash = BlobHash(self.bytes32(
                row.map_err(self.err("listing missing thumbnails"))?,
                "a thumbnail hash",
            )?);
            if !out.iter().any(|(h, _)| *h == hash) {
                out.push((hash, BlobKind::Thumb));
            }
        }
        Ok(out)
    }

    /// Wants blob `hash` of `kind` from the parent (fetched by the next sessions until it is
    /// held); whether it is newly wanted (not if held, or wanted already).
    pub fn want_blob(&mut self, hash: &BlobHash, kind: BlobKind, now_ms: u64) -> Result<bool> {
        if is_held(&self.conn, &self.path, hash)? {
            return Ok(false);
        }
        exec(
            &self.conn,
            "INSERT OR IGNORE INTO blob_wants (hash, kind, wanted_ms) VALUES (?1, ?2, ?3)",
            params![&hash.0[..], kind_text(kind), sql_int(now_ms)],
        )
        .map(|n| n > 0)
        .map_err(self.err("wanting a blob"))
    }

    /// Drops the want of blob `hash`, if any; whether there was one.
    pub fn unwant_blob(&mut self, hash: &BlobHash) -> Result<bool> {
        exec(
            &self.conn,
            "DELETE FROM blob_wants WHERE hash = ?1",
            [&hash.0[..]],
        )
        .map(|n| n > 0)
        .map_err(self.err("dropping a wanted blob"))
    }

    /// Whether blob `hash` is wanted from the parent.
    pub fn is_wanted(&self, hash: &BlobHash) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM blob_wants WHERE hash = ?1")
            .and_then(|mut s| s.exists([&hash.0[..]]))
            .map_err(self.err("reading wanted blobs"))
    }

    /// What a photo event held here names blob `hash` as: a photo, or a thumbnail (`None`:
    /// no held event names it).
    pub fn named_blob_kind(&self, hash: &BlobHash) -> Result<Option<BlobKind>> {
        let kind: Option<String> = one(
            &self.conn,
            "SELECT 'photo' FROM thumbs WHERE photo = ?1
             UNION ALL SELECT 'thumb' FROM thumbs WHERE thumb = ?1 LIMIT 1",
            [&hash.0[..]],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("reading blob references"))?;
        Ok(kind.as_deref().and_then(kind_of_text))
    }

    /// The bytes held of the unfinished upload (or fetch) of blob `hash`, if any.
    pub fn partial_blob_len(&self, hash: &BlobHash) -> Result<Option<u64>> {
        Ok(partial(&self.conn, &self.path, hash)?.map(|p| p.len))
    }

    /// The parent whose holdings `blobs.sent_upstream` mirrors (none before the first blob
    /// is marked sent).
    fn upstream_parent(&self) -> Result<Option<NodeId>> {
        match self.meta(UPSTREAM_PARENT)? {
            None => Ok(None),
            Some(v) => Ok(Some(NodeId(self.bytes32(v, "the upstream parent")?))),
        }
    }

    /// Up to `limit` blobs `parent` does not hold: thumbnails first, then photos, each oldest
    /// first.
    pub(crate) fn unsent_blobs(&self, parent: &NodeId, limit: usize) -> Result<Vec<BlobInfo>> {
        // `sent_upstream` mirrors one parent (a node has one); for any other, look at all.
        let sql = match self.upstream_parent()? {
            Some(p) if p != *parent => UNSENT_ANY_PARENT_SQL,
            _ => UNSENT_SQL,
        };
        let mut out = Vec::new();
        for kind in [BlobKind::Thumb, BlobKind::Photo] {
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

    /// Records that `parent` holds blob `hash`.
    pub(crate) fn mark_blob_sent(&mut self, parent: &NodeId, hash: &BlobHash) -> Result<()> {
        let path = self.path.clone();
        let tx = begin(&mut self.conn, &path)?;
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
            crate::prune::ASK_SQL,
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

    /// Up to `len` bytes of blob `hash` from `offset` (none past its end; `None` when it is
    /// not held).
    ///
    /// Reads the range through SQLite's incremental blob I/O, which reads only the pages
    /// that hold it: a 2 MB photo is not loaded whole for each chunk sent.
    pub(crate) fn read_blob(
        &self,
        hash: &BlobHash,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>> {
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
