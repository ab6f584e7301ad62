//! Handheld storage (PROTOCOL.md §8.12): which blobs are **safe** (the district holds them,
//! as this node's upstream said in a `Held` answer: `blobs_safe`), which photos sent to a
//! parent are still to be asked about (`blobs_asking`), and the pruning of a device's own
//! full photos once they are safe (`blobs_pruned` remembers them, so a read can say why the
//! bytes are gone; the thumbnail always stays).
//!
//! SQLite frees a deleted photo's pages inside the file, not on disk: the store runs with
//! `auto_vacuum = NONE` (SQLite's default; it can only be changed by rewriting the whole
//! file), so `PRAGMA incremental_vacuum` would do nothing, and a `VACUUM` would need as much
//! free space again as the file takes, which is what a handheld short of space lacks. The
//! freed pages are reused by the next photos and events, so the file stops growing until they
//! are used up.

use gridsync_core::{BlobHash, NodeId};
use rusqlite::{params, OptionalExtension};

use crate::error::sql;
use crate::{begin, exec, one, sql_int, BlobKind, Result, Store};

/// Adds blob ?2, marked held by parent ?1, to what is asked about: only a photo (nothing
/// prunes thumbnails) not known safe already.
pub(crate) const ASK_SQL: &str = "INSERT OR IGNORE INTO blobs_asking (parent, hash)
     SELECT ?1, ?2
     WHERE EXISTS (SELECT 1 FROM blobs WHERE hash = ?2 AND kind = 'photo')
       AND NOT EXISTS (SELECT 1 FROM blobs_safe WHERE hash = ?2)";

/// The photos of parent ?1 still to ask about, hash above ?2, in hash order: a range of the
/// primary key of `blobs_asking`.
pub(crate) const UNSAFE_SENT_SQL: &str = "SELECT hash FROM blobs_asking
     WHERE parent = ?1 AND hash > ?2 ORDER BY hash LIMIT ?3";

/// The full photos this device may prune (owner ?1): safe, held, attached by this device
/// (a photo add of its own origin names it), with its thumbnail held, not wanted by the user,
/// and never pruned before (a photo fetched back after pruning stays).
const PRUNABLE_SQL: &str = "SELECT b.hash, b.size FROM blobs_safe AS s
     JOIN blobs AS b ON b.hash = s.hash
     WHERE b.kind = 'photo'
       AND NOT EXISTS (SELECT 1 FROM blob_wants AS w WHERE w.hash = b.hash)
       AND NOT EXISTS (SELECT 1 FROM blobs_pruned AS p WHERE p.hash = b.hash)
       AND EXISTS (SELECT 1 FROM photo_refs AS r
                   WHERE r.photo = b.hash AND r.origin = ?1
                     AND EXISTS (SELECT 1 FROM blobs AS t WHERE t.hash = r.thumb))";

/// What [`Store::prune_photos`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Full photos whose bytes were deleted.
    pub pruned: u64,
    /// Their bytes (freed inside the store file, for the next photos: see the module docs).
    pub bytes_freed: u64,
}

/// A photo pruned here: its bytes are gone (fetch it again from the parent), its thumbnail
/// and its events stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub kind: BlobKind,
    pub size: u64,
    /// When it was pruned, Unix ms.
    pub pruned_ms: u64,
}

impl Store {
    /// Which of `hashes` this node's upstream said the district holds, in the order given.
    pub fn safe_blobs(&self, hashes: &[BlobHash]) -> Result<Vec<BlobHash>> {
        let mut out = Vec::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM blobs_safe WHERE hash = ?1")
            .map_err(self.err("reading safe blobs"))?;
        for hash in hashes {
            if stmt
                .exists([&hash.0[..]])
                .map_err(self.err("reading safe blobs"))?
            {
                out.push(*hash);
            }
        }
        Ok(out)
    }

    /// Whether the district holds blob `hash`, as this node knows.
    pub fn is_safe(&self, hash: &BlobHash) -> Result<bool> {
        Ok(!self.safe_blobs(&[*hash])?.is_empty())
    }

    /// The photos `parent` holds that are not known safe, hash above `after`, in hash order,
    /// at most `limit`.
    pub fn unsafe_sent(
        &self,
        parent: &NodeId,
        after: Option<&BlobHash>,
        limit: usize,
    ) -> Result<Vec<BlobHash>> {
        let after: &[u8] = after.map_or(&[], |h| &h.0[..]);
        let mut stmt = self
            .conn
            .prepare_cached(UNSAFE_SENT_SQL)
            .map_err(self.err("listing photos to ask about"))?;
        let rows = stmt
            .query_map(params![&parent.0[..], after, sql_int(limit as u64)], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(self.err("listing photos to ask about"))?;
        let mut out = Vec::new();
        for row in rows {
            let v = row.map_err(self.err("listing photos to ask about"))?;
            out.push(BlobHash(self.bytes32(v, "a blob hash")?));
        }
        Ok(out)
    }

    /// Durably records that the district holds each of `hashes`; idempotent.
    pub fn mark_safe(&mut self, hashes: &[BlobHash]) -> Result<()> {
        let path = self.path.clone();
        let tx = begin(&mut self.conn, &path)?;
        for hash in hashes {
            exec(
                &tx,
                "INSERT OR IGNORE INTO blobs_safe (hash) VALUES (?1)",
                [&hash.0[..]],
            )
            .map_err(sql(&path, "recording a safe blob"))?;
            exec(
                &tx,
                "DELETE FROM blobs_asking WHERE hash = ?1",
                [&hash.0[..]],
            )
            .map_err(sql(&path, "recording a safe blob"))?;
        }
        tx.commit().map_err(sql(&path, "commit"))
    }

    /// Deletes the bytes of every full photo of `own` (this device's node id) that is safe,
    /// whose thumbnail is held and that the user does not want, in one transaction, keeping
    /// a `blobs_pruned` row for each (its thumbnail and events stay). Never a thumbnail, never
    /// another node's photo, never a photo fetched back after it was pruned. Idempotent: a
    /// second call prunes nothing.
    pub fn prune_photos(&mut self, own: &NodeId, now_ms: u64) -> Result<PruneReport> {
        let path = self.path.clone();
        let tx = begin(&mut self.conn, &path)?;
        let found: Vec<(Vec<u8>, i64)> = {
            let mut stmt = tx
                .prepare_cached(PRUNABLE_SQL)
                .map_err(sql(&path, "listing photos to prune"))?;
            let rows = stmt
                .query_map([&own.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql(&path, "listing photos to prune"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(sql(&path, "listing photos to prune"))?
        };
        let mut report = PruneReport::default();
        for (hash, size) in found {
            exec(
                &tx,
                "INSERT INTO blobs_pruned (hash, kind, size, pruned_ms) VALUES (?1, 'photo', ?2, ?3)",
                params![&hash[..], size, sql_int(now_ms)],
            )
            .map_err(sql(&path, "pruning a photo"))?;
            exec(&tx, "DELETE FROM blobs WHERE hash = ?1", [&hash[..]])
                .map_err(sql(&path, "pruning a photo"))?;
            report.pruned += 1;
            report.bytes_freed += u64::try_from(size).unwrap_or(0);
        }
        tx.commit().map_err(sql(&path, "commit"))?;
        if report.pruned > 0 {
            tracing::info!(
                pruned = report.pruned,
                bytes = report.bytes_freed,
                "pruned full photos the district holds"
            );
        }
        Ok(report)
    }

    /// Blob `hash` if it was pruned here and not fetched back since.
    pub fn pruned(&self, hash: &BlobHash) -> Result<Option<Pruned>> {
        let row: Option<(i64, i64)> = one(
            &self.conn,
            "SELECT size, pruned_ms FROM blobs_pruned
             WHERE hash = ?1 AND restored = 0
               AND NOT EXISTS (SELECT 1 FROM blobs WHERE hash = ?1)",
            [&hash.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err("reading a pruned photo"))?;
        row.map(|(size, at)| {
            Ok(Pruned {
                kind: BlobKind::Photo,
                size: self.unsigned(size, "a pruned photo's size")?,
                pruned_ms: self.unsigned(at, "a pruned photo's time")?,
            })
        })
        .transpose()
    }

    /// The persistent setting `name` of meta (`None`: never set).
    pub fn setting(&self, name: &str) -> Result<Option<bool>> {
        Ok(self
            .meta(&format!("setting.{name}"))?
            .map(|v| v.first() == Some(&1)))
    }

    /// Durably sets the persistent setting `name` of meta.
    pub fn set_setting(&mut self, name: &str, on: bool) -> Result<()> {
        exec(
            &self.conn,
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![format!("setting.{name}"), &[u8::from(on)][..]],
        )
        .map(|_| ())
        .map_err(self.err("storing a setting"))
    }
}
