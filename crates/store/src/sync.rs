//! [`gridsync_proto::SyncStore`] for [`Store`]: only the adapter. Each method is the inherent
//! method of the same name (in `peers`, `read`, `blobs`, `write`, `meta`), its
//! [`StoreError`](crate::StoreError) turned into the [`StorageError`] a session may show its
//! peer ([`storage`]: no path, no SQL).

use gridsync_core::{BlobHash, Event, NodeId, Scope};
use gridsync_proto::{
    Admitted, AdmittedRecords, BlobFinish, BlobInfo, BlobKind, BlobState, Committed, Enrolled,
    Head, NodeRecord, Page, StorageError, SyncStore,
};

use crate::error::storage;
use crate::{Appended, Store};

fn committed(a: Appended) -> Committed {
    Committed {
        stored: u32::try_from(a.new_events).unwrap_or(u32::MAX),
        duplicates: u32::try_from(a.duplicate_events).unwrap_or(u32::MAX),
    }
}

impl SyncStore for Store {
    fn enrolled(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
        Store::enrolled(self, node).map_err(storage)
    }

    fn heads(&self, peer: &Enrolled) -> Result<Vec<Head>, StorageError> {
        Store::heads(self, peer).map_err(storage)
    }

    fn commit(&mut self, batch: &Admitted) -> Result<Committed, StorageError> {
        self.append_received(batch, &[])
            .map(committed)
            .map_err(storage)
    }

    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError> {
        Store::records_about(self, node).map_err(storage)
    }

    fn commit_records(&mut self, records: &AdmittedRecords) -> Result<Committed, StorageError> {
        Store::commit_records(self, records).map_err(storage)
    }

    fn blob_state(&self, hash: &BlobHash) -> Result<BlobState, StorageError> {
        Store::blob_state(self, hash).map_err(storage)
    }

    fn blob_write(
        &mut self,
        hash: &BlobHash,
        kind: BlobKind,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        Store::blob_write(self, hash, kind, size, offset, bytes).map_err(storage)
    }

    fn blob_finish(
        &mut self,
        hash: &BlobHash,
        check: &dyn Fn(&[u8]) -> std::result::Result<(), String>,
    ) -> Result<BlobFinish, StorageError> {
        Store::blob_finish(self, hash, check).map_err(storage)
    }

    fn page(
        &self,
        scope: &Scope,
        except: &NodeId,
        cursor: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        Store::page(self, scope, except, cursor, max_events, max_bytes).map_err(storage)
    }

    fn blob_discard(&mut self, hash: &BlobHash) -> Result<(), StorageError> {
        Store::blob_discard(self, hash).map_err(storage)
    }

    fn held_blob(&self, hash: &BlobHash) -> Result<Option<BlobInfo>, StorageError> {
        Store::held_blob(self, hash).map_err(storage)
    }

    fn blob_in_scope(&self, hash: &BlobHash, scope: &Scope) -> Result<bool, StorageError> {
        Store::blob_in_scope(self, hash, scope).map_err(storage)
    }

    fn safe_blobs(&self, hashes: &[BlobHash]) -> Result<Vec<BlobHash>, StorageError> {
        Store::safe_blobs(self, hashes).map_err(storage)
    }

    fn origins(&self) -> Result<Vec<NodeId>, StorageError> {
        Store::origins(self).map_err(storage)
    }

    fn events_after(
        &self,
        origin: &NodeId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StorageError> {
        Store::events_after(self, origin, after, limit).map_err(storage)
    }

    fn unsent_blobs(&self, parent: &NodeId, limit: usize) -> Result<Vec<BlobInfo>, StorageError> {
        Store::unsent_blobs(self, parent, limit).map_err(storage)
    }

    fn mark_blob_sent(&mut self, parent: &NodeId, hash: &BlobHash) -> Result<(), StorageError> {
        Store::mark_blob_sent(self, parent, hash).map_err(storage)
    }

    fn read_blob(
        &self,
        hash: &BlobHash,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Store::read_blob(self, hash, offset, len).map_err(storage)
    }

    fn down_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        Store::down_cursor(self, parent).map_err(storage)
    }

    fn commit_download(
        &mut self,
        batch: &Admitted,
        cursor: u64,
    ) -> Result<Committed, StorageError> {
        Store::commit_download(self, batch, cursor)
            .map(committed)
            .map_err(storage)
    }

    fn records_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        Store::records_cursor(self, parent).map_err(storage)
    }

    fn records_to_send(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NodeRecord)>, StorageError> {
        Store::records_to_send(self, after, limit).map_err(storage)
    }

    fn records_acked(&mut self, parent: &NodeId, upto: u64) -> Result<(), StorageError> {
        Store::records_acked(self, parent, upto).map_err(storage)
    }

    fn own_acked(&mut self, parent: &NodeId, seq: u64) -> Result<(), StorageError> {
        Store::own_acked(self, parent, seq).map_err(storage)
    }

    fn blobs_to_fetch(
        &self,
        scope: &Scope,
        limit: usize,
    ) -> Result<Vec<(BlobHash, BlobKind)>, StorageError> {
        Store::blobs_to_fetch(self, scope, limit).map_err(storage)
    }

    fn unsafe_sent(
        &self,
        parent: &NodeId,
        after: Option<&BlobHash>,
        limit: usize,
    ) -> Result<Vec<BlobHash>, StorageError> {
        Store::unsafe_sent(self, parent, after, limit).map_err(storage)
    }

    fn mark_safe(&mut self, hashes: &[BlobHash]) -> Result<(), StorageError> {
        Store::mark_safe(self, hashes).map_err(storage)
    }
}

#[cfg(test)]
mod tests;
