//! An in-memory [`SyncStore`], for tests and examples: sessions run on it without SQLite or
//! a disk. Nothing is durable (a write is "durable" once it returned, until the store is
//! dropped), and every query walks what is held; a node keeps its data in `gridsync-store`.
//!
//! It keeps the [`SyncStore`] contract as the SQLite store does: every write is idempotent;
//! a batch holding an event id already stored with other content is refused whole
//! ([`StorageErrorKind::Equivocation`]); a page leaves out events received from the peer it
//! is for and those outside its scope; unsent blobs come thumbnails first; a finished upload
//! is checked against its hash before the caller's check sees its bytes.
//!
//! Behind the cargo feature `memory` (and in this crate's own tests).

use std::collections::{BTreeMap, BTreeSet};

use gridsync_core::{codec, BlobHash, Event, GridCode, NodeId, Payload, Scope};

use crate::admit::Admitted;
use crate::directory::{AdmittedRecords, NodeRecord};
use crate::message::{BlobInfo, BlobKind, Head, Role};
use crate::storage::{
    BlobFinish, BlobState, Committed, Enrolled, Page, StorageError, StorageErrorKind, SyncStore,
};

/// The most events one [`SyncStore::page`] call examines (as the SQLite store): a page over a
/// scope with few events in a long log stops there, with `more` set.
pub const PAGE_EXAMINE: usize = 10_000;

/// An event as held: its encoding, and the peer it came from (`None`: written here).
#[derive(Debug, Clone)]
struct Held {
    event: Event,
    body: Vec<u8>,
    via: Option<NodeId>,
}

/// A blob held whole.
#[derive(Debug, Clone)]
struct Blob {
    kind: BlobKind,
    data: Vec<u8>,
}

/// The bytes so far of an unfinished upload (always contiguous from 0).
#[derive(Debug, Clone)]
struct Partial {
    kind: BlobKind,
    size: u64,
    data: Vec<u8>,
}

/// A node's sync data in memory: enrollments, events in arrival order, blobs and partial
/// uploads, and the per-parent records of the child side (blobs sent, download cursors,
/// own events acknowledged).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    enrolled: BTreeMap<NodeId, Enrolled>,
    /// Every event, in arrival order (an event's arrival position is its index + 1).
    log: Vec<Held>,
    /// Per origin: sequence number → index in `log`.
    by_origin: BTreeMap<NodeId, BTreeMap<u64, usize>>,
    /// Per origin: the grids it has events in.
    origin_grids: BTreeMap<NodeId, BTreeSet<GridCode>>,
    /// Blobs a held photo event names (the photo or its thumbnail).
    referenced: BTreeSet<BlobHash>,
    /// Blobs held whole, and the order they came in.
    blobs: BTreeMap<BlobHash, Blob>,
    blob_order: Vec<BlobHash>,
    partials: BTreeMap<BlobHash, Partial>,
    /// (parent, blob) pairs: the parent holds the blob.
    sent: BTreeSet<(NodeId, BlobHash)>,
    down: BTreeMap<NodeId, u64>,
    acked: BTreeMap<NodeId, u64>,
    /// Node records in the order stored (a record's position is its index + 1); a record
    /// replaced by a higher serial stays in the list, but only the one in force is sent.
    records: Vec<NodeRecord>,
    /// Per parent: the position up to which it acknowledged node records.
    records_acked: BTreeMap<NodeId, u64>,
    /// Every photo add held, by its event id: its grid, photo and thumbnail, in arrival
    /// order (the `log` index of its event).
    photo_adds: BTreeMap<(NodeId, u64), PhotoAdd>,
    /// The photo adds some held `PhotoRemoved` names (add-wins: only those go).
    removed_adds: BTreeSet<(NodeId, u64)>,
    /// Blobs wanted explicitly (to fetch from the parent), oldest first.
    wants: Vec<(BlobHash, BlobKind)>,
    /// Blobs the upstream said the district holds (PROTOCOL.md §8.12).
    safe: BTreeSet<BlobHash>,
}

/// A photo add as held.
#[derive(Debug, Clone)]
struct PhotoAdd {
    grid: GridCode,
    photo: BlobHash,
    thumb: BlobHash,
    at: usize,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enrolls `node` (a parent's child) as a `role` for `scope`; enrolling again replaces
    /// it.
    pub fn enroll(&mut self, node: NodeId, role: Role, scope: Scope) {
        self.enrolled.insert(node, Enrolled { node, role, scope });
    }

    /// Revokes `node`'s enrollment; whether it was enrolled.
    pub fn revoke(&mut self, node: &NodeId) -> bool {
        self.enrolled.remove(node).is_some()
    }

    /// Stores a node record as if issued or received here (no check: tests build the
    /// directory they need with it); whether it replaced the one in force.
    pub fn add_record(&mut self, record: NodeRecord) -> bool {
        let newer = self
            .in_force(&record.issuer, &record.node)
            .is_none_or(|r| r.serial < record.serial);
        if newer {
            self.records.push(record);
        }
        newer
    }

    fn in_force(&self, issuer: &NodeId, node: &NodeId) -> Option<&NodeRecord> {
        self.records
            .iter()
            .filter(|r| r.issuer == *issuer && r.node == *node)
            .max_by_key(|r| r.serial)
    }

    /// Stores this node's own events (written here, from no peer), with the same
    /// idempotence and equivocation refusal as a commit.
    pub fn append(&mut self, events: &[Event]) -> Result<Committed, StorageError> {
        self.write(events, None)
    }

    /// Stores a blob of this node's own whole (no check: it is its own); its hash.
    pub fn add_blob(&mut self, kind: BlobKind, data: Vec<u8>) -> BlobHash {
        let hash = BlobHash::of(&data);
        self.store_blob(hash, kind, data);
        hash
    }

    /// Wants blob `hash` of `kind` from the parent (listed by [`SyncStore::blobs_to_fetch`]
    /// until it is held); wanting it again, or a blob held, changes nothing.
    pub fn want(&mut self, hash: BlobHash, kind: BlobKind) {
        if !self.blobs.contains_key(&hash) && !self.wants.iter().any(|(h, _)| *h == hash) {
            self.wants.push((hash, kind));
        }
    }

    /// Whether blob `hash` is wanted from the parent.
    pub fn is_wanted(&self, hash: &BlobHash) -> bool {
        self.wants.iter().any(|(h, _)| h == hash)
    }

    /// The bytes held of the unfinished upload (or fetch) of `hash`, if any.
    pub fn partial(&self, hash: &BlobHash) -> Option<&[u8]> {
        self.partials.get(hash).map(|p| p.data.as_slice())
    }

    /// Every event held, in arrival order.
    pub fn events(&self) -> impl Iterator<Item = &Event> + '_ {
        self.log.iter().map(|h| &h.event)
    }

    /// Event `origin`/`seq`, if held.
    pub fn event(&self, origin: &NodeId, seq: u64) -> Option<&Event> {
        self.index(origin, seq).map(|i| &self.log[i].event)
    }

    /// The peer event `origin`/`seq` came from (`None`: not held, or written here).
    pub fn via(&self, origin: &NodeId, seq: u64) -> Option<NodeId> {
        self.index(origin, seq).and_then(|i| self.log[i].via)
    }

    /// The highest sequence number up to which every event of `origin` is held.
    pub fn contiguous(&self, origin: &NodeId) -> u64 {
        let Some(seqs) = self.by_origin.get(origin) else {
            return 0;
        };
        let mut at = 0;
        while seqs.contains_key(&(at + 1)) {
            at += 1;
        }
        at
    }

    /// A blob's bytes, if held whole.
    pub fn blob(&self, hash: &BlobHash) -> Option<&[u8]> {
        self.blobs.get(hash).map(|b| b.data.as_slice())
    }

    /// Whether `parent` is recorded as holding blob `hash`.
    pub fn is_sent(&self, parent: &NodeId, hash: &BlobHash) -> bool {
        self.sent.contains(&(*parent, *hash))
    }

    /// Up to which sequence number `parent` acknowledged this node's own events.
    pub fn acked(&self, parent: &NodeId) -> u64 {
        self.acked.get(parent).copied().unwrap_or(0)
    }

    fn index(&self, origin: &NodeId, seq: u64) -> Option<usize> {
        self.by_origin.get(origin)?.get(&seq).copied()
    }

    fn store_blob(&mut self, hash: BlobHash, kind: BlobKind, data: Vec<u8>) {
        if let std::collections::btree_map::Entry::Vacant(v) = self.blobs.entry(hash) {
            v.insert(Blob { kind, data });
            self.blob_order.push(hash);
        }
        // Held now, however it came: no longer wanted.
        self.wants.retain(|(h, _)| *h != hash);
    }

    /// The one write path: all of `events` or, on an equivocation, none.
    fn write(&mut self, events: &[Event], via: Option<NodeId>) -> Result<Committed, StorageError> {
        let mut fresh: BTreeMap<(NodeId, u64), (&Event, Vec<u8>)> = BTreeMap::new();
        let mut order = Vec::new();
        let mut out = Committed::default();
        for e in events {
            let body = codec::encode_event(e).map_err(|err| {
                StorageError::internal(format!(
                    "encoding event {}/{}: {err}",
                    e.origin.short(),
                    e.seq
                ))
            })?;
            let key = (e.origin, e.seq);
            let existing = match self.index(&e.origin, e.seq) {
                Some(i) => Some(&self.log[i].body),
                None => fresh.get(&key).map(|(_, b)| b),
            };
            match existing {
                // The same content, signed or not, is the same event (the first copy stays).
                Some(b) if *b == body || same_content(b, e) => out.duplicates += 1,
                Some(_) => {
                    return Err(StorageError {
                        kind: StorageErrorKind::Equivocation,
                        message: format!(
                        "event {}/{} is already stored with different content; refusing the batch",
                        e.origin.short(),
                        e.seq
                    ),
                    })
                }
                None => {
                    fresh.insert(key, (e, body));
                    order.push(key);
                }
            }
        }
        for key in order {
            let Some((e, body)) = fresh.remove(&key) else {
                continue;
            };
            match &e.payload {
                Payload::PhotoAdded(meta) => {
                    self.referenced.insert(meta.hash);
                    self.referenced.insert(meta.thumb);
                    self.photo_adds.insert(
                        (e.origin, e.seq),
                        PhotoAdd {
                            grid: e.grid.clone(),
                            photo: meta.hash,
                            thumb: meta.thumb,
                            at: self.log.len(),
                        },
                    );
                }
                Payload::PhotoRemoved { removes, .. } => self
                    .removed_adds
                    .extend(removes.iter().map(|id| (id.origin, id.seq))),
                _ => {}
            }
            self.by_origin
                .entry(e.origin)
                .or_default()
                .insert(e.seq, self.log.len());
            self.origin_grids
                .entry(e.origin)
                .or_default()
                .insert(e.grid.clone());
            self.log.push(Held {
                event: e.clone(),
                body,
                via,
            });
            out.stored += 1;
        }
        Ok(out)
    }
}

impl SyncStore for MemoryStore {
    fn enrolled(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
        Ok(self.enrolled.get(node).cloned())
    }

    /// A device's head is its own origin's; a relay's, those of every origin with an event in
    /// its scope. Heads at 0 are left out.
    fn heads(&self, peer: &Enrolled) -> Result<Vec<Head>, StorageError> {
        let origins: Vec<NodeId> = match peer.role {
            Role::Device => vec![peer.node],
            Role::Street | Role::District | Role::Community => self
                .origin_grids
                .iter()
                .filter(|(_, grids)| grids.iter().any(|g| peer.scope.contains(g)))
                .map(|(o, _)| *o)
                .collect(),
        };
        Ok(origins
            .into_iter()
            .map(|origin| Head {
                origin,
                seq: self.contiguous(&origin),
            })
            .filter(|h| h.seq > 0)
            .collect())
    }

    fn commit(&mut self, batch: &Admitted) -> Result<Committed, StorageError> {
        self.write(batch.events(), Some(*batch.from()))
    }

    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError> {
        let issuers: BTreeSet<NodeId> = self
            .records
            .iter()
            .filter(|r| r.node == *node)
            .map(|r| r.issuer)
            .collect();
        Ok(issuers
            .iter()
            .filter_map(|i| self.in_force(i, node).cloned())
            .collect())
    }

    fn commit_records(&mut self, records: &AdmittedRecords) -> Result<Committed, StorageError> {
        let mut c = Committed::default();
        for r in records.records() {
            if self.add_record(r.clone()) {
                c.stored += 1;
            } else {
                c.duplicates += 1;
            }
        }
        Ok(c)
    }

    fn blob_state(&self, hash: &BlobHash) -> Result<BlobState, StorageError> {
        Ok(if self.blobs.contains_key(hash) {
            BlobState::Held
        } else if let Some(p) = self.partials.get(hash) {
            BlobState::Partial {
                offset: p.data.len() as u64,
            }
        } else if self.referenced.contains(hash) {
            BlobState::Missing
        } else {
            BlobState::Unreferenced
        })
    }

    /// As the SQLite store: bytes before the partial's end are skipped, a write past it or
    /// past `size` is refused, a blob held makes it a no-op, and a partial of another size or
    /// kind is discarded first.
    fn blob_write(
        &mut self,
        hash: &BlobHash,
        kind: BlobKind,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        if self.blobs.contains_key(hash) {
            return Ok(());
        }
        let refuse = |why: String| StorageError::internal(format!("blob {hash}: {why}"));
        let end = offset
            .checked_add(bytes.len() as u64)
            .filter(|end| *end <= size)
            .ok_or_else(|| {
                refuse(format!(
                    "{} bytes at offset {offset} do not fit in its size of {size} bytes",
                    bytes.len()
                ))
            })?;
        if self
            .partials
            .get(hash)
            .is_some_and(|p| p.kind != kind || p.size != size)
        {
            // One of the two sizes or kinds is wrong, and the partial could never finish.
            self.partials.remove(hash);
        }
        let held = self.partials.get(hash).map_or(0, |p| p.data.len() as u64);
        if offset > held {
            return Err(refuse(format!(
                "bytes at offset {offset}, but only {held} bytes are held: the upload must resume at offset {held}"
            )));
        }
        if end > held {
            // `held - offset` < `bytes.len()` here.
            let new = &bytes[(held - offset) as usize..];
            self.partials
                .entry(*hash)
                .or_insert_with(|| Partial {
                    kind,
                    size,
                    data: Vec::new(),
                })
                .data
                .extend_from_slice(new);
        }
        Ok(())
    }

    /// `Stored` also when the blob is held already (without calling `check`);
    /// `HashMismatch` when nothing was uploaded.
    fn blob_finish(
        &mut self,
        hash: &BlobHash,
        check: &dyn Fn(&[u8]) -> Result<(), String>,
    ) -> Result<BlobFinish, StorageError> {
        if self.blobs.contains_key(hash) {
            self.partials.remove(hash);
            return Ok(BlobFinish::Stored);
        }
        let Some(p) = self.partials.remove(hash) else {
            return Ok(BlobFinish::HashMismatch);
        };
        // The check (the caller's policy) only ever sees bytes that hash right.
        if p.data.len() as u64 != p.size || BlobHash::of(&p.data) != *hash {
            return Ok(BlobFinish::HashMismatch);
        }
        if let Err(reason) = check(&p.data) {
            return Ok(BlobFinish::Rejected(reason));
        }
        self.store_blob(*hash, p.kind, p.data);
        Ok(BlobFinish::Stored)
    }

    /// Examines at most [`PAGE_EXAMINE`] events; at least one event when any is found, and
    /// never more than `max_bytes` of them unless one alone is larger.
    fn page(
        &self,
        scope: &Scope,
        except: &NodeId,
        cursor: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        let max_events = max_events.max(1);
        let start = usize::try_from(cursor)
            .unwrap_or(usize::MAX)
            .min(self.log.len());
        let mut page = Page {
            events: Vec::new(),
            cursor,
            more: false,
        };
        let (mut examined, mut bytes) = (0, 0usize);
        for (i, held) in self.log.iter().enumerate().skip(start) {
            if examined == PAGE_EXAMINE || page.events.len() >= max_events {
                page.more = true;
                break;
            }
            if scope.contains(&held.event.grid) && held.via != Some(*except) {
                if !page.events.is_empty() && bytes.saturating_add(held.body.len()) > max_bytes {
                    page.more = true;
                    break;
                }
                bytes += held.body.len();
                page.events.push(held.body.clone());
            }
            examined += 1;
            page.cursor = i as u64 + 1;
        }
        Ok(page)
    }

    fn blob_discard(&mut self, hash: &BlobHash) -> Result<(), StorageError> {
        self.partials.remove(hash);
        Ok(())
    }

    fn held_blob(&self, hash: &BlobHash) -> Result<Option<BlobInfo>, StorageError> {
        Ok(self.blobs.get(hash).map(|b| BlobInfo {
            hash: *hash,
            kind: b.kind,
            size: b.data.len() as u64,
        }))
    }

    fn blob_in_scope(&self, hash: &BlobHash, scope: &Scope) -> Result<bool, StorageError> {
        Ok(self
            .photo_adds
            .values()
            .any(|a| (a.photo == *hash || a.thumb == *hash) && scope.contains(&a.grid)))
    }

    /// The wants not held, then the missing thumbnails of the visible photo adds of `scope`
    /// in arrival order; each blob once.
    fn blobs_to_fetch(
        &self,
        scope: &Scope,
        limit: usize,
    ) -> Result<Vec<(BlobHash, BlobKind)>, StorageError> {
        let mut adds: Vec<(&(NodeId, u64), &PhotoAdd)> = self.photo_adds.iter().collect();
        adds.sort_by_key(|(_, a)| a.at);
        let thumbs = adds
            .into_iter()
            .filter(|(id, a)| !self.removed_adds.contains(id) && scope.contains(&a.grid))
            .map(|(_, a)| (a.thumb, BlobKind::Thumb));
        let mut out: Vec<(BlobHash, BlobKind)> = Vec::new();
        for (hash, kind) in self.wants.iter().copied().chain(thumbs) {
            if out.len() >= limit {
                break;
            }
            if !self.blobs.contains_key(&hash) && !out.iter().any(|(h, _)| *h == hash) {
                out.push((hash, kind));
            }
        }
        Ok(out)
    }

    fn origins(&self) -> Result<Vec<NodeId>, StorageError> {
        Ok(self.by_origin.keys().copied().collect())
    }

    fn events_after(
        &self,
        origin: &NodeId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StorageError> {
        let Some(seqs) = self.by_origin.get(origin) else {
            return Ok(Vec::new());
        };
        Ok(seqs
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, &i)| self.log[i].event.clone())
            .collect())
    }

    /// Thumbnails first, then photos, each in the order they came.
    fn unsent_blobs(&self, parent: &NodeId, limit: usize) -> Result<Vec<BlobInfo>, StorageError> {
        let mut out = Vec::new();
        for kind in [BlobKind::Thumb, BlobKind::Photo] {
            for hash in &self.blob_order {
                if out.len() >= limit {
                    return Ok(out);
                }
                let Some(b) = self.blobs.get(hash) else {
                    continue;
                };
                if b.kind == kind && !self.is_sent(parent, hash) {
                    out.push(BlobInfo {
                        hash: *hash,
                        kind,
                        size: b.data.len() as u64,
                    });
                }
            }
        }
        Ok(out)
    }

    fn mark_blob_sent(&mut self, parent: &NodeId, hash: &BlobHash) -> Result<(), StorageError> {
        self.sent.insert((*parent, *hash));
        Ok(())
    }

    fn safe_blobs(&self, hashes: &[BlobHash]) -> Result<Vec<BlobHash>, StorageError> {
        Ok(hashes
            .iter()
            .filter(|h| self.safe.contains(*h))
            .copied()
            .collect())
    }

    fn unsafe_sent(
        &self,
        parent: &NodeId,
        after: Option<&BlobHash>,
        limit: usize,
    ) -> Result<Vec<BlobHash>, StorageError> {
        // `sent` is ordered by (parent, hash): this parent's hashes come in ascending order.
        Ok(self
            .sent
            .iter()
            .filter(|(p, h)| p == parent && after.is_none_or(|a| h > a))
            .map(|(_, h)| *h)
            .filter(|h| {
                !self.safe.contains(h)
                    && self.blobs.get(h).is_some_and(|b| b.kind == BlobKind::Photo)
            })
            .take(limit)
            .collect())
    }

    fn mark_safe(&mut self, hashes: &[BlobHash]) -> Result<(), StorageError> {
        self.safe.extend(hashes.iter().copied());
        Ok(())
    }

    fn read_blob(
        &self,
        hash: &BlobHash,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.blobs.get(hash).map(|b| {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(b.data.len());
            let end = start.saturating_add(len).min(b.data.len());
            b.data[start..end].to_vec()
        }))
    }

    fn down_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        Ok(self.down.get(parent).copied().unwrap_or(0))
    }

    /// The events are stored with `via` = the parent; the cursor never moves back.
    fn commit_download(
        &mut self,
        batch: &Admitted,
        cursor: u64,
    ) -> Result<Committed, StorageError> {
        let c = self.write(batch.events(), Some(*batch.from()))?;
        let at = self.down.entry(*batch.from()).or_default();
        *at = (*at).max(cursor);
        Ok(c)
    }

    /// Kept per parent; never moves back.
    fn records_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        Ok(self.records_acked.get(parent).copied().unwrap_or(0))
    }

    fn records_to_send(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NodeRecord)>, StorageError> {
        Ok(self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64 + 1, r))
            .filter(|(pos, r)| {
                *pos > after
                    && self
                        .in_force(&r.issuer, &r.node)
                        .is_some_and(|f| f.serial == r.serial)
            })
            .take(limit)
            .map(|(pos, r)| (pos, r.clone()))
            .collect())
    }

    fn records_acked(&mut self, parent: &NodeId, upto: u64) -> Result<(), StorageError> {
        let at = self.records_acked.entry(*parent).or_default();
        *at = (*at).max(upto);
        Ok(())
    }

    fn own_acked(&mut self, parent: &NodeId, seq: u64) -> Result<(), StorageError> {
        let at = self.acked.entry(*parent).or_default();
        *at = (*at).max(seq);
        Ok(())
    }
}

/// Whether the stored encoding `existing` is `event` but for its signature.
fn same_content(existing: &[u8], event: &gridsync_core::Event) -> bool {
    use gridsync_core::sign::content_bytes;
    codec::decode_event(existing)
        .ok()
        .and_then(|stored| content_bytes(&stored).ok())
        .is_some_and(|a| content_bytes(event).is_ok_and(|b| a == b))
}

#[cfg(test)]
mod tests {
    use gridsync_core::hlc;

    use super::*;
    use crate::admit::{Admission, Origins};
    use crate::testkit::*;

    /// `events` as admitted from `from` (any origin, the whole district).
    fn admitted(from: NodeId, events: &[Event]) -> Admitted {
        let district = scope("110101");
        Admission {
            from,
            scope: &district,
            origins: Origins::Any,
            max_events: usize::MAX,
            max_drift_ms: hlc::DEFAULT_MAX_DRIFT_MS,
            accept_unsigned_before: None,
            authority: crate::admit::Authority::Unchecked,
        }
        .admit_events(events, NOW)
        .expect("admitted")
    }

    #[test]
    fn commits_are_idempotent_and_an_equivocation_refuses_the_whole_batch() {
        let mut s = MemoryStore::new();
        let (a, b) = (comment(DEVICE, 1, GRID, "a"), comment(DEVICE, 2, GRID, "b"));
        let c = s
            .commit(&admitted(DEVICE, &[a.clone(), b.clone()]))
            .unwrap();
        assert_eq!((c.stored, c.duplicates), (2, 0));
        let c = s.commit(&admitted(DEVICE, &[a.clone(), b])).unwrap();
        assert_eq!((c.stored, c.duplicates), (0, 2));
        // A new event with a forged twin of a held one: nothing of the batch is stored.
        let fresh = comment(DEVICE, 3, GRID, "c");
        let twin = comment(DEVICE, 1, GRID, "not a");
        let e = s.commit(&admitted(DEVICE, &[fresh, twin])).unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Equivocation);
        assert_eq!(
            e.message,
            "event 8139770e/1 is already stored with different content; refusing the batch"
        );
        assert_eq!(s.events().count(), 2);
        assert!(s.event(&DEVICE, 3).is_none());
        // Twins inside one batch, too.
        let e = s
            .append(&[comment(OTHER, 1, GRID, "x"), comment(OTHER, 1, GRID, "y")])
            .unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Equivocation);
        assert!(s.event(&OTHER, 1).is_none());
        assert_eq!(s.via(&DEVICE, 1), Some(DEVICE));
        assert_eq!(s.event(&DEVICE, 1), Some(&a));
    }

    #[test]
    fn heads_are_contiguous_and_a_relay_sees_the_origins_of_its_scope() {
        let mut s = relay_store();
        s.append(&[comment(DEVICE, 1, GRID, "1"), comment(DEVICE, 3, GRID, "3")])
            .unwrap();
        s.append(&[comment(OTHER, 1, "110101/003/001/01", "elsewhere")])
            .unwrap();
        let device = s.enrolled(&DEVICE).unwrap().expect("enrolled");
        assert_eq!(
            s.heads(&device).unwrap(),
            vec![Head {
                origin: DEVICE,
                seq: 1
            }]
        );
        s.append(&[comment(DEVICE, 2, GRID, "2")]).unwrap();
        assert_eq!(s.contiguous(&DEVICE), 3);
        let street = Enrolled {
            node: RELAY,
            role: Role::Street,
            scope: scope(STREET),
        };
        assert_eq!(
            s.heads(&street).unwrap(),
            vec![Head {
                origin: DEVICE,
                seq: 3
            }]
        );
        assert_eq!(s.origins().unwrap(), vec![DEVICE, OTHER]);
        let after: Vec<u64> = s
            .events_after(&DEVICE, 1, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(after, vec![2, 3]);
        assert!(s.revoke(&DEVICE));
        assert_eq!(s.enrolled(&DEVICE).unwrap(), None);
    }

    #[test]
    fn a_page_leaves_out_the_askers_events_and_other_scopes_and_keeps_its_bounds() {
        let mut s = MemoryStore::new();
        s.commit(&admitted(
            DEVICE,
            &[comment(DEVICE, 1, GRID, "from the asker")],
        ))
        .unwrap();
        s.append(&[
            comment(OTHER, 1, NEXT_GRID, "one"),
            comment(OTHER, 2, "110101/003/001/01", "another street"),
            comment(OTHER, 3, GRID, "three"),
        ])
        .unwrap();
        let street = scope(STREET);
        let page = s.page(&street, &DEVICE, 0, 10, 1 << 20).unwrap();
        assert_eq!(
            page.events,
            vec![
                body(&comment(OTHER, 1, NEXT_GRID, "one")),
                body(&comment(OTHER, 3, GRID, "three"))
            ]
        );
        assert_eq!((page.cursor, page.more), (4, false));
        // One event a page: the cursor moves past what was examined.
        let first = s.page(&street, &DEVICE, 0, 1, 1 << 20).unwrap();
        assert_eq!((first.events.len(), first.cursor, first.more), (1, 2, true));
        let next = s.page(&street, &DEVICE, first.cursor, 1, 1 << 20).unwrap();
        assert_eq!((next.events.len(), next.cursor, next.more), (1, 4, false));
        // A byte bound below one event still gives that event, alone (and the page ends
        // before the next event in scope, past the one out of it).
        let tiny = s.page(&street, &DEVICE, 0, 10, 1).unwrap();
        assert_eq!((tiny.events.len(), tiny.cursor, tiny.more), (1, 3, true));
        // Past the end: nothing, the cursor as given.
        let end = s.page(&street, &DEVICE, 9, 10, 1 << 20).unwrap();
        assert_eq!((end.events.len(), end.cursor, end.more), (0, 9, false));
    }

    #[test]
    fn blob_uploads_resume_refuse_gaps_and_are_checked_after_their_hash() {
        let bytes = b"a photo of bags by the gate".to_vec();
        let hash = BlobHash::of(&bytes);
        let size = bytes.len() as u64;
        let mut s = MemoryStore::new();
        assert_eq!(s.blob_state(&hash).unwrap(), BlobState::Unreferenced);
        s.append(&[photo(DEVICE, 1, GRID, &bytes, b"thumb")])
            .unwrap();
        assert_eq!(s.blob_state(&hash).unwrap(), BlobState::Missing);
        assert_eq!(
            s.blob_state(&BlobHash::of(b"thumb")).unwrap(),
            BlobState::Missing
        );
        s.blob_write(&hash, BlobKind::Photo, size, 0, &bytes[..5])
            .unwrap();
        assert_eq!(
            s.blob_state(&hash).unwrap(),
            BlobState::Partial { offset: 5 }
        );
        // A gap, and a write past the size, are refused; a re-send of held bytes is skipped.
        let gap = s
            .blob_write(&hash, BlobKind::Photo, size, 7, &bytes[7..9])
            .unwrap_err();
        assert!(gap.message.contains("must resume at offset 5"), "{gap}");
        assert!(s
            .blob_write(&hash, BlobKind::Photo, size, 5, &[0; 100])
            .is_err());
        s.blob_write(&hash, BlobKind::Photo, size, 2, &bytes[2..])
            .unwrap();
        // The check sees only bytes that hash right, and may still refuse them.
        let seen = std::cell::Cell::new(0);
        let refuse = |b: &[u8]| {
            seen.set(b.len());
            Err("not a JPEG".to_string())
        };
        assert_eq!(
            s.blob_finish(&hash, &refuse).unwrap(),
            BlobFinish::Rejected("not a JPEG".into())
        );
        assert_eq!(seen.get(), bytes.len());
        assert_eq!(s.blob_state(&hash).unwrap(), BlobState::Missing);
        // Wrong bytes of the right size: a mismatch, and the check is never called.
        s.blob_write(&hash, BlobKind::Photo, size, 0, &vec![b'x'; bytes.len()])
            .unwrap();
        let never = |_: &[u8]| -> Result<(), String> { panic!("checked a mismatch") };
        assert_eq!(
            s.blob_finish(&hash, &never).unwrap(),
            BlobFinish::HashMismatch
        );
        assert_eq!(
            s.blob_finish(&hash, &never).unwrap(),
            BlobFinish::HashMismatch,
            "nothing uploaded"
        );
        s.blob_write(&hash, BlobKind::Photo, size, 0, &bytes)
            .unwrap();
        assert_eq!(
            s.blob_finish(&hash, &|_| Ok(())).unwrap(),
            BlobFinish::Stored
        );
        assert_eq!(s.blob_state(&hash).unwrap(), BlobState::Held);
        assert_eq!(s.blob(&hash), Some(&bytes[..]));
        // Held: writes are no-ops, finishing again is `Stored`, a discard keeps it.
        s.blob_write(&hash, BlobKind::Photo, size, 0, b"zz")
            .unwrap();
        s.blob_discard(&hash).unwrap();
        assert_eq!(s.blob_finish(&hash, &never).unwrap(), BlobFinish::Stored);
        assert_eq!(
            s.read_blob(&hash, 2, 3).unwrap(),
            Some(bytes[2..5].to_vec())
        );
        assert_eq!(s.read_blob(&hash, 1000, 3).unwrap(), Some(Vec::new()));
        assert_eq!(s.read_blob(&BlobHash::of(b"none"), 0, 3).unwrap(), None);
    }

    #[test]
    fn a_partial_of_another_size_is_started_again() {
        let hash = BlobHash::of(b"whatever");
        let mut s = MemoryStore::new();
        s.blob_write(&hash, BlobKind::Photo, 8, 0, b"what").unwrap();
        s.blob_write(&hash, BlobKind::Photo, 9, 0, b"wh").unwrap();
        assert_eq!(
            s.blob_state(&hash).unwrap(),
            BlobState::Partial { offset: 2 }
        );
    }

    #[test]
    fn unsent_blobs_come_thumbnails_first_and_per_parent() {
        let mut s = MemoryStore::new();
        let p1 = s.add_blob(BlobKind::Photo, b"photo 1".to_vec());
        let t1 = s.add_blob(BlobKind::Thumb, b"thumb 1".to_vec());
        let p2 = s.add_blob(BlobKind::Photo, b"photo 2".to_vec());
        let t2 = s.add_blob(BlobKind::Thumb, b"thumb 2".to_vec());
        let order = |s: &MemoryStore, parent, limit| -> Vec<BlobHash> {
            s.unsent_blobs(parent, limit)
                .unwrap()
                .iter()
                .map(|b| b.hash)
                .collect()
        };
        assert_eq!(order(&s, &RELAY, 10), vec![t1, t2, p1, p2]);
        assert_eq!(order(&s, &RELAY, 3), vec![t1, t2, p1]);
        s.mark_blob_sent(&RELAY, &t2).unwrap();
        s.mark_blob_sent(&RELAY, &t2).unwrap();
        assert_eq!(order(&s, &RELAY, 10), vec![t1, p1, p2]);
        assert_eq!(order(&s, &OTHER, 10), vec![t1, t2, p1, p2]);
        assert!(s.is_sent(&RELAY, &t2) && !s.is_sent(&OTHER, &t2));
    }

    #[test]
    fn cursors_and_acknowledgements_never_move_back() {
        let mut s = MemoryStore::new();
        let page = admitted(RELAY, &[comment(OTHER, 1, GRID, "down")]);
        assert_eq!(s.commit_download(&page, 7).unwrap().stored, 1);
        assert_eq!(s.via(&OTHER, 1), Some(RELAY));
        s.commit_download(&admitted(RELAY, &[]), 3).unwrap();
        assert_eq!(s.down_cursor(&RELAY).unwrap(), 7);
        assert_eq!(s.down_cursor(&OTHER).unwrap(), 0);
        s.own_acked(&RELAY, 5).unwrap();
        s.own_acked(&RELAY, 2).unwrap();
        assert_eq!(s.acked(&RELAY), 5);
        // A refused page moves no cursor.
        let twin = admitted(RELAY, &[comment(OTHER, 1, GRID, "forged")]);
        assert!(s.commit_download(&twin, 9).is_err());
        assert_eq!(s.down_cursor(&RELAY).unwrap(), 7);
    }
}
