//! The faults that live in the store the sessions run on: wrappers around a correct
//! [`SyncStore`] that change one thing each.

use std::cell::RefCell;
use std::collections::HashMap;

use gridsync_core::{codec, BlobHash, Event, NodeId, Scope};
use gridsync_proto::{
    Admitted, AdmittedRecords, BlobFinish, BlobInfo, BlobKind, BlobState, Committed, Enrolled,
    Head, NodeRecord, Page, StorageError, StorageErrorKind, SyncStore,
};

/// A batch acknowledged but not yet handed to the inner store.
struct Pending(Admitted);

struct Inner<S: SyncStore> {
    store: S,
    pending: Vec<Pending>,
}

impl<S: SyncStore> Inner<S> {
    /// Commits what is pending to the store. A failure drops it (it was acknowledged
    /// already: that is the fault) and is returned to the caller of the store method that
    /// flushed.
    fn flush(&mut self) -> Result<(), StorageError> {
        for p in std::mem::take(&mut self.pending) {
            if let Err(e) = self.store.commit(&p.0) {
                tracing::error!(error = %e, events = p.0.len(), "broken relay: an acknowledged batch could not be committed; it is lost");
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The `ack-before-commit` fault: [`SyncStore::commit`] returns at once, with the counts the
/// inner store would have returned (and its refusals), but only keeps the batch in memory; it
/// reaches the inner store at the start of the next call of any method of this store, reads
/// included (so every read sees it), or at [`AckBeforeCommit::flush`] (graceful shutdown). A
/// process killed right after an `Ack` loses the batch.
pub struct AckBeforeCommit<S: SyncStore> {
    // Reads take `&self` and must flush first. The store is only ever used behind the
    // relay's mutex, and no method calls another, so a borrow never meets another one.
    inner: RefCell<Inner<S>>,
}

impl<S: SyncStore> AckBeforeCommit<S> {
    pub fn new(store: S) -> Self {
        Self {
            inner: RefCell::new(Inner {
                store,
                pending: Vec::new(),
            }),
        }
    }

    /// Commits every pending batch now.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.borrow_mut().flush()
    }

    /// Events acknowledged but not committed to the inner store.
    #[cfg(test)]
    fn pending_events(&self) -> usize {
        self.inner.borrow().pending.iter().map(|p| p.0.len()).sum()
    }

    /// Flushes, then runs `f` on the inner store.
    fn read<R>(&self, f: impl FnOnce(&S) -> Result<R, StorageError>) -> Result<R, StorageError> {
        let mut inner = self.inner.borrow_mut();
        inner.flush()?;
        f(&inner.store)
    }

    /// Flushes, then runs `f` on the inner store.
    fn write<R>(
        &mut self,
        f: impl FnOnce(&mut S) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let inner = self.inner.get_mut();
        inner.flush()?;
        f(&mut inner.store)
    }
}

impl<S: SyncStore> Drop for AckBeforeCommit<S> {
    fn drop(&mut self) {
        // `main` flushes at shutdown and reports a failure; this catches any other way out.
        let _ = self.inner.get_mut().flush();
    }
}

/// What the inner store's commit would answer for `events`, without writing: event by
/// event, new, duplicate (the same encoding already held, or earlier in the batch) or
/// equivocation (another encoding), refusing the whole batch.
fn would_commit<S: SyncStore>(store: &S, events: &[Event]) -> Result<Committed, StorageError> {
    let encode = |e: &Event| {
        codec::encode_event(e).map_err(|error| {
            StorageError::internal(format!("event {}/{}: {error}", e.origin, e.seq))
        })
    };
    let mut in_batch: HashMap<(NodeId, u64), Vec<u8>> = HashMap::new();
    let mut out = Committed::default();
    for e in events {
        let body = encode(e)?;
        let held = match in_batch.get(&(e.origin, e.seq)) {
            Some(b) => Some(b.clone()),
            None => store
                .events_after(&e.origin, e.seq.saturating_sub(1), 1)?
                .into_iter()
                .find(|h| h.seq == e.seq)
                .map(|h| encode(&h))
                .transpose()?,
        };
        match held {
            Some(held) if held == body => out.duplicates += 1,
            Some(_) => {
                return Err(StorageError {
                    kind: StorageErrorKind::Equivocation,
                    message: format!(
                        "event {}/{} is already stored with different content; refusing the batch",
                        e.origin, e.seq
                    ),
                })
            }
            None => {
                out.stored += 1;
                in_batch.insert((e.origin, e.seq), body);
            }
        }
    }
    Ok(out)
}

impl<S: SyncStore> SyncStore for AckBeforeCommit<S> {
    fn enrolled(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
        self.read(|s| s.enrolled(node))
    }

    fn heads(&self, peer: &Enrolled) -> Result<Vec<Head>, StorageError> {
        self.read(|s| s.heads(peer))
    }

    /// The fault: answers as the inner store would, and keeps the batch for later.
    fn commit(&mut self, batch: &Admitted) -> Result<Committed, StorageError> {
        let inner = self.inner.get_mut();
        inner.flush()?;
        let committed = would_commit(&inner.store, batch.events())?;
        if !batch.is_empty() {
            inner.pending.push(Pending(batch.clone()));
        }
        Ok(committed)
    }

    fn blob_state(&self, hash: &BlobHash) -> Result<BlobState, StorageError> {
        self.read(|s| s.blob_state(hash))
    }

    fn blob_write(
        &mut self,
        hash: &BlobHash,
        kind: BlobKind,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        self.write(|s| s.blob_write(hash, kind, size, offset, bytes))
    }

    fn blob_finish(
        &mut self,
        hash: &BlobHash,
        check: &dyn Fn(&[u8]) -> Result<(), String>,
    ) -> Result<BlobFinish, StorageError> {
        self.write(|s| s.blob_finish(hash, check))
    }

    fn blob_discard(&mut self, hash: &BlobHash) -> Result<(), StorageError> {
        self.write(|s| s.blob_discard(hash))
    }

    fn held_blob(&self, hash: &BlobHash) -> Result<Option<BlobInfo>, StorageError> {
        self.read(|s| s.held_blob(hash))
    }

    fn safe_blobs(&self, hashes: &[BlobHash]) -> Result<Vec<BlobHash>, StorageError> {
        self.read(|s| s.safe_blobs(hashes))
    }

    fn blob_in_scope(&self, hash: &BlobHash, scope: &Scope) -> Result<bool, StorageError> {
        self.read(|s| s.blob_in_scope(hash, scope))
    }

    fn page(
        &self,
        scope: &Scope,
        except: &NodeId,
        cursor: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        self.read(|s| s.page(scope, except, cursor, max_events, max_bytes))
    }

    fn origins(&self) -> Result<Vec<NodeId>, StorageError> {
        self.read(|s| s.origins())
    }

    fn events_after(
        &self,
        origin: &NodeId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StorageError> {
        self.read(|s| s.events_after(origin, after, limit))
    }

    fn unsent_blobs(&self, parent: &NodeId, limit: usize) -> Result<Vec<BlobInfo>, StorageError> {
        self.read(|s| s.unsent_blobs(parent, limit))
    }

    fn mark_blob_sent(&mut self, parent: &NodeId, hash: &BlobHash) -> Result<(), StorageError> {
        self.write(|s| s.mark_blob_sent(parent, hash))
    }

    fn read_blob(
        &self,
        hash: &BlobHash,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.read(|s| s.read_blob(hash, offset, len))
    }

    fn down_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        self.read(|s| s.down_cursor(parent))
    }

    fn commit_download(
        &mut self,
        batch: &Admitted,
        cursor: u64,
    ) -> Result<Committed, StorageError> {
        self.write(|s| s.commit_download(batch, cursor))
    }

    fn own_acked(&mut self, parent: &NodeId, seq: u64) -> Result<(), StorageError> {
        self.write(|s| s.own_acked(parent, seq))
    }

    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError> {
        self.read(|s| s.records_about(node))
    }

    fn commit_records(&mut self, records: &AdmittedRecords) -> Result<Committed, StorageError> {
        self.write(|s| s.commit_records(records))
    }

    fn records_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        self.read(|s| s.records_cursor(parent))
    }

    fn records_to_send(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NodeRecord)>, StorageError> {
        self.read(|s| s.records_to_send(after, limit))
    }

    fn records_acked(&mut self, parent: &NodeId, upto: u64) -> Result<(), StorageError> {
        self.write(|s| s.records_acked(parent, upto))
    }
}

/// The district a scope lies in: its first segment (the scope itself if it has one only).
pub fn district_of(scope: &Scope) -> Scope {
    scope
        .as_str()
        .split('/')
        .next()
        .and_then(|first| first.parse().ok())
        .unwrap_or_else(|| scope.clone())
}

/// The `leak-scope` fault: a download page is read for the whole district of the child's
/// scope (its first segment) instead of the scope, and a fetch is checked against the
/// district too. Everything else is the inner store's.
pub struct LeakScope<S>(pub S);

impl<S: SyncStore> SyncStore for LeakScope<S> {
    fn enrolled(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
        self.0.enrolled(node)
    }

    fn heads(&self, peer: &Enrolled) -> Result<Vec<Head>, StorageError> {
        self.0.heads(peer)
    }

    fn commit(&mut self, batch: &Admitted) -> Result<Committed, StorageError> {
        self.0.commit(batch)
    }

    fn blob_state(&self, hash: &BlobHash) -> Result<BlobState, StorageError> {
        self.0.blob_state(hash)
    }

    fn blob_write(
        &mut self,
        hash: &BlobHash,
        kind: BlobKind,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        self.0.blob_write(hash, kind, size, offset, bytes)
    }

    fn blob_finish(
        &mut self,
        hash: &BlobHash,
        check: &dyn Fn(&[u8]) -> Result<(), String>,
    ) -> Result<BlobFinish, StorageError> {
        self.0.blob_finish(hash, check)
    }

    fn blob_discard(&mut self, hash: &BlobHash) -> Result<(), StorageError> {
        self.0.blob_discard(hash)
    }

    fn held_blob(&self, hash: &BlobHash) -> Result<Option<BlobInfo>, StorageError> {
        self.0.held_blob(hash)
    }

    fn safe_blobs(&self, hashes: &[BlobHash]) -> Result<Vec<BlobHash>, StorageError> {
        self.0.safe_blobs(hashes)
    }

    /// The fault again: a child may fetch the blobs of the whole district (PROTOCOL.md §8.11).
    fn blob_in_scope(&self, hash: &BlobHash, scope: &Scope) -> Result<bool, StorageError> {
        self.0.blob_in_scope(hash, &district_of(scope))
    }

    /// The fault: the district instead of `scope`.
    fn page(
        &self,
        scope: &Scope,
        except: &NodeId,
        cursor: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        self.0
            .page(&district_of(scope), except, cursor, max_events, max_bytes)
    }

    fn origins(&self) -> Result<Vec<NodeId>, StorageError> {
        self.0.origins()
    }

    fn events_after(
        &self,
        origin: &NodeId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StorageError> {
        self.0.events_after(origin, after, limit)
    }

    fn unsent_blobs(&self, parent: &NodeId, limit: usize) -> Result<Vec<BlobInfo>, StorageError> {
        self.0.unsent_blobs(parent, limit)
    }

    fn mark_blob_sent(&mut self, parent: &NodeId, hash: &BlobHash) -> Result<(), StorageError> {
        self.0.mark_blob_sent(parent, hash)
    }

    fn read_blob(
        &self,
        hash: &BlobHash,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.read_blob(hash, offset, len)
    }

    fn down_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        self.0.down_cursor(parent)
    }

    fn commit_download(
        &mut self,
        batch: &Admitted,
        cursor: u64,
    ) -> Result<Committed, StorageError> {
        self.0.commit_download(batch, cursor)
    }

    fn own_acked(&mut self, parent: &NodeId, seq: u64) -> Result<(), StorageError> {
        self.0.own_acked(parent, seq)
    }

    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError> {
        self.0.records_about(node)
    }

    fn commit_records(&mut self, records: &AdmittedRecords) -> Result<Committed, StorageError> {
        self.0.commit_records(records)
    }

    fn records_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        self.0.records_cursor(parent)
    }

    fn records_to_send(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NodeRecord)>, StorageError> {
        self.0.records_to_send(after, limit)
    }

    fn records_acked(&mut self, parent: &NodeId, upto: u64) -> Result<(), StorageError> {
        self.0.records_acked(parent, upto)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gridsync_core::{Category, Payload, Severity};
    use gridsync_device::{Device, NewReport, SystemEnv};
    use gridsync_store::Store;

    use super::*;

    const GRID_A: &str = "110101/002/014/03";
    const GRID_B: &str = "110101/002/015/01";

    fn now_ms() -> u64 {
        gridsync_net::now_ms()
    }

    /// A street relay's store at `dir/relay.db`.
    fn relay(dir: &Path) -> Store {
        let path = dir.join("relay.db");
        Device::init_node(&path, "street-002", "street", "", SystemEnv).expect("init relay");
        Store::open(&path).expect("open relay")
    }

    /// A device of `grid` that reported `n` incidents; returns its id and its events.
    fn device(dir: &Path, name: &str, grid: &str, n: usize) -> (NodeId, Vec<Event>) {
        let path = dir.join(format!("{name}.db"));
        let mut d = Device::init(&path, name, grid.parse().expect("grid")).expect("init");
        for i in 0..n {
            d.report(NewReport {
                category: Category::from_catalogue("garbage").expect("category"),
                description: format!("report {i}"),
                location: None,
                severity: Severity::Normal,
                observed_at: None,
                photos: Vec::new(),
            })
            .expect("report");
        }
        let id = d.node_id();
        drop(d);
        let store = Store::open(&path).expect("open device");
        let events = store.events_after(&id, 0, 100).expect("events");
        assert_eq!(events.len(), n);
        (id, events)
    }

    /// `events` as a batch from `from`, admitted at `now` as a street relay admits it.
    fn admit(from: NodeId, events: &[Event], now: u64) -> Admitted {
        let scope: Scope = "110101".parse().expect("scope");
        gridsync_proto::Admission {
            from,
            scope: &scope,
            origins: gridsync_proto::Origins::Any,
            max_events: usize::MAX,
            max_drift_ms: gridsync_core::hlc::DEFAULT_MAX_DRIFT_MS,
            accept_unsigned_before: None,
            authority: gridsync_proto::Authority::Unchecked,
        }
        .admit_events(events, now)
        .expect("admitted")
    }

    fn enrolled(node: NodeId, grid: &str) -> Enrolled {
        Enrolled {
            node,
            role: gridsync_proto::Role::Device,
            scope: grid.parse().expect("scope"),
        }
    }

    fn head(store: &dyn SyncStore, node: NodeId, grid: &str) -> u64 {
        store
            .heads(&enrolled(node, grid))
            .expect("heads")
            .iter()
            .find(|h| h.origin == node)
            .map_or(0, |h| h.seq)
    }

    #[test]
    fn a_batch_is_answered_at_once_and_committed_at_the_next_call() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("relay.db");
        let mut lazy = AckBeforeCommit::new(relay(dir.path()));
        let (dev, events) = device(dir.path(), "patrol-7", GRID_A, 3);
        let now = now_ms();

        let c = lazy.commit(&admit(dev, &events[..2], now)).expect("commit");
        assert_eq!((c.stored, c.duplicates), (2, 0));
        assert_eq!(lazy.pending_events(), 2);
        // Another connection to the same file does not see it yet: a crash now loses it.
        let other = Store::open(&path).expect("open");
        assert_eq!(head(&other, dev, GRID_A), 0);

        // The next call, a read, commits it first and sees it.
        assert_eq!(head(&lazy, dev, GRID_A), 2);
        assert_eq!(lazy.pending_events(), 0);
        assert_eq!(head(&other, dev, GRID_A), 2);

        // Counts as the real store gives them: held ones, and repeats inside the batch, are
        // duplicates.
        let batch = [events[1].clone(), events[2].clone(), events[2].clone()];
        let c = lazy.commit(&admit(dev, &batch, now)).expect("commit");
        assert_eq!((c.stored, c.duplicates), (1, 2));
        lazy.flush().expect("flush");
        assert_eq!(head(&other, dev, GRID_A), 3);
        let mut real = Store::open(&path).expect("open");
        let c = real.commit(&admit(dev, &batch, now)).expect("commit");
        assert_eq!((c.stored, c.duplicates), (0, 3));
    }

    #[test]
    fn refusals_are_the_real_stores_and_nothing_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut lazy = AckBeforeCommit::new(relay(dir.path()));
        let (dev, events) = device(dir.path(), "patrol-7", GRID_A, 2);
        let now = now_ms();
        lazy.commit(&admit(dev, &events[..1], now)).expect("commit");

        // Another content under a held id: equivocation, and the batch is dropped whole.
        let mut forged = events[0].clone();
        forged.payload = Payload::Commented {
            text: "not what was said".into(),
        };
        // The device itself equivocates: it signs both.
        let secret = Store::open(&dir.path().join("patrol-7.db"))
            .expect("open device")
            .identity()
            .expect("identity")
            .secret;
        forged.sign(&secret).expect("the device's key");
        let e = lazy
            .commit(&admit(dev, &[events[1].clone(), forged], now))
            .expect_err("equivocation");
        assert_eq!(e.kind, StorageErrorKind::Equivocation);
        assert_eq!(lazy.pending_events(), 0);
        assert_eq!(head(&lazy, dev, GRID_A), 1);
    }

    #[test]
    fn dropping_the_wrapper_commits_what_is_pending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("relay.db");
        let mut lazy = AckBeforeCommit::new(relay(dir.path()));
        let (dev, events) = device(dir.path(), "patrol-7", GRID_A, 1);
        lazy.commit(&admit(dev, &events, now_ms())).expect("commit");
        drop(lazy);
        assert_eq!(head(&Store::open(&path).expect("open"), dev, GRID_A), 1);
    }

    #[test]
    fn a_leaky_page_holds_the_whole_district() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut leaky = LeakScope(relay(dir.path()));
        let (a, events_a) = device(dir.path(), "patrol-a", GRID_A, 1);
        let (b, events_b) = device(dir.path(), "patrol-b", GRID_B, 1);
        let now = now_ms();
        leaky.commit(&admit(a, &events_a, now)).expect("commit a");
        leaky.commit(&admit(b, &events_b, now)).expect("commit b");

        let scope_b: Scope = GRID_B.parse().expect("scope");
        let page = leaky.page(&scope_b, &b, 0, 512, 1 << 20).expect("page");
        let grids: Vec<String> = page
            .events
            .iter()
            .map(|e| codec::decode_event(e).expect("decodes").grid.to_string())
            .collect();
        assert_eq!(grids, [GRID_A], "B's own event is left out, A's leaks");
        let page = leaky.0.page(&scope_b, &b, 0, 512, 1 << 20).expect("page");
        assert!(page.events.is_empty(), "the real page: nothing");
        // Heads stay the real ones.
        assert_eq!(head(&leaky, b, GRID_B), 1);
        assert_eq!(head(&leaky, a, GRID_A), 1);
    }

    #[test]
    fn the_district_of_a_scope_is_its_first_segment() {
        for (scope, district) in [
            ("110101/002/014/03", "110101"),
            ("110101/002", "110101"),
            ("110101", "110101"),
        ] {
            let scope: Scope = scope.parse().expect("scope");
            assert_eq!(district_of(&scope).as_str(), district);
        }
    }
}
