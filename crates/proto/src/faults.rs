//! Deliberate protocol faults a parent session can be told to commit, behind the `faults`
//! cargo feature (off by default): for the conformance harness's broken-relay tests only
//! (`crates/broken-relay`); never set in a real relay.
//!
//! Each fault is checked at exactly one place in the sessions. Without the feature the
//! checks below are constant `false`, and [`crate::server::ServerConfig`] has no `faults`
//! field at all.

use crate::server::ServerConfig;

/// The faults a [`crate::server::ServerSession`] commits on purpose; [`Faults::default`] is
/// none. For the conformance harness's broken-relay tests only; never set in a real relay.
#[cfg(feature = "faults")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Accept, from a device, events whose origin is not the device's own node id (a
    /// correct parent ends the session with `OutOfScope`).
    pub accept_forged_origin: bool,
}

/// Whether a device's events of another origin are accepted (never, without the feature).
#[cfg(feature = "faults")]
pub(crate) fn accept_forged_origin(config: &ServerConfig) -> bool {
    config.faults.accept_forged_origin
}

/// Whether a device's events of another origin are accepted (never, without the feature).
#[cfg(not(feature = "faults"))]
pub(crate) fn accept_forged_origin(_config: &ServerConfig) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use gridsync_core::{codec, BlobHash, Event, Hlc, IncidentId, NodeId, Payload, Scope};

    use super::*;
    use crate::server::{ServerOutput, ServerSession};
    use crate::storage::{BlobState, Committed, Enrolled, Page, StorageError, SyncStore};
    use crate::{BlobInfo, BlobKind, ErrorCode, Head, Message, Role};

    const DEVICE: NodeId = NodeId([2; 32]);
    const OTHER: NodeId = NodeId([3; 32]);
    const GRID: &str = "110101/002/014/03";

    /// Just enough of a store for a device's upload: it is enrolled, and commits count.
    #[derive(Default)]
    struct UploadStore {
        committed: Vec<Event>,
    }

    impl SyncStore for UploadStore {
        fn enrolled(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
            Ok((*node == DEVICE).then(|| Enrolled {
                node: DEVICE,
                role: Role::Device,
                scope: GRID.parse::<Scope>().expect("scope"),
            }))
        }
        fn heads(&self, _: &Enrolled) -> Result<Vec<Head>, StorageError> {
            Ok(Vec::new())
        }
        fn commit(&mut self, batch: &crate::Admitted) -> Result<Committed, StorageError> {
            self.committed.extend_from_slice(batch.events());
            Ok(Committed {
                stored: batch.len() as u32,
                duplicates: 0,
            })
        }
        fn blob_state(&self, _: &BlobHash) -> Result<BlobState, StorageError> {
            Ok(BlobState::Unreferenced)
        }
        fn blob_write(
            &mut self,
            _: &BlobHash,
            _: BlobKind,
            _: u64,
            _: u64,
            _: &[u8],
        ) -> Result<(), StorageError> {
            Err(StorageError::internal("not in this test"))
        }
        fn blob_finish(
            &mut self,
            _: &BlobHash,
            _: &dyn Fn(&[u8]) -> Result<(), String>,
        ) -> Result<crate::BlobFinish, StorageError> {
            Err(StorageError::internal("not in this test"))
        }
        fn blob_discard(&mut self, _: &BlobHash) -> Result<(), StorageError> {
            Err(StorageError::internal("not in this test"))
        }
        fn page(
            &self,
            _: &Scope,
            _: &NodeId,
            cursor: u64,
            _: usize,
            _: usize,
        ) -> Result<Page, StorageError> {
            Ok(Page {
                events: Vec::new(),
                cursor,
                more: false,
            })
        }
        fn origins(&self) -> Result<Vec<NodeId>, StorageError> {
            Ok(Vec::new())
        }
        fn events_after(&self, _: &NodeId, _: u64, _: usize) -> Result<Vec<Event>, StorageError> {
            Ok(Vec::new())
        }
        fn unsent_blobs(&self, _: &NodeId, _: usize) -> Result<Vec<BlobInfo>, StorageError> {
            Ok(Vec::new())
        }
        fn mark_blob_sent(&mut self, _: &NodeId, _: &BlobHash) -> Result<(), StorageError> {
            Ok(())
        }
        fn read_blob(
            &self,
            _: &BlobHash,
            _: u64,
            _: usize,
        ) -> Result<Option<Vec<u8>>, StorageError> {
            Ok(None)
        }
        fn down_cursor(&self, _: &NodeId) -> Result<u64, StorageError> {
            Ok(0)
        }
        fn commit_download(
            &mut self,
            _: &crate::Admitted,
            _: u64,
        ) -> Result<Committed, StorageError> {
            Err(StorageError::internal("not in this test"))
        }
        fn own_acked(&mut self, _: &NodeId, _: u64) -> Result<(), StorageError> {
            Ok(())
        }
    }

    const NOW: u64 = 1_790_000_000_000;

    fn event_of(origin: NodeId) -> Vec<u8> {
        let event = Event {
            origin,
            seq: 1,
            hlc: Hlc::new(NOW, 0),
            incident: IncidentId::new_v7(NOW, [7; 10]),
            grid: GRID.parse().expect("grid"),
            author: "patrol-7".into(),
            payload: Payload::Commented {
                text: "a comment".into(),
            },
            signature: None,
        };
        codec::encode_event(&event).expect("encodes")
    }

    /// Sends a `Hello` and one batch of `body` as the device; returns what the batch got.
    fn upload(config: ServerConfig, body: Vec<u8>, store: &mut UploadStore) -> Vec<ServerOutput> {
        let mut s = ServerSession::new(config, DEVICE);
        let hello = Message::Hello {
            versions: crate::VERSIONS.to_vec(),
            node: DEVICE,
            role: Role::Device,
            name: "patrol-7".into(),
        };
        let out = s.handle(hello, store, NOW);
        assert!(
            matches!(
                out.as_slice(),
                [ServerOutput::Send(Message::Welcome { .. })]
            ),
            "{out:?}"
        );
        let batch = Message::Events {
            batch: 1,
            events: vec![body],
        };
        s.handle(batch, store, NOW)
    }

    fn config() -> ServerConfig {
        ServerConfig::new(NodeId([1; 32]), Role::Street, "street-002")
    }

    fn is_ack(out: &[ServerOutput]) -> bool {
        out.iter()
            .any(|o| matches!(o, ServerOutput::Send(Message::Ack { stored: 1, .. })))
    }

    fn refused_out_of_scope(out: &[ServerOutput]) -> bool {
        out.iter().any(|o| {
            matches!(
                o,
                ServerOutput::Send(Message::Error {
                    code: ErrorCode::OutOfScope,
                    ..
                })
            )
        })
    }

    #[test]
    fn a_foreign_origin_from_a_device_is_refused_by_default() {
        let mut store = UploadStore::default();
        let out = upload(config(), event_of(OTHER), &mut store);
        assert!(refused_out_of_scope(&out), "{out:?}");
        assert!(store.committed.is_empty());
        // The device's own event goes through.
        let out = upload(config(), event_of(DEVICE), &mut store);
        assert!(is_ack(&out), "{out:?}");
    }

    #[cfg(feature = "faults")]
    #[test]
    fn no_fault_is_set_by_default() {
        assert_eq!(config().faults, Faults::default());
        assert!(!Faults::default().accept_forged_origin);
    }

    #[cfg(feature = "faults")]
    #[test]
    fn the_forged_origin_fault_acknowledges_a_foreign_origin() {
        let mut store = UploadStore::default();
        let mut faulty = config();
        faulty.faults.accept_forged_origin = true;
        let out = upload(faulty, event_of(OTHER), &mut store);
        assert!(is_ack(&out), "{out:?}");
        assert_eq!(store.committed.len(), 1);
        assert_eq!(store.committed[0].origin, OTHER);
        // The other checks still hold: an event outside the device's grid is refused.
        let mut faulty = config();
        faulty.faults.accept_forged_origin = true;
        let mut outside = codec::decode_event(&event_of(OTHER)).expect("decodes");
        outside.grid = "110101/002/015/01".parse().expect("grid");
        let body = codec::encode_event(&outside).expect("encodes");
        let out = upload(faulty, body, &mut store);
        assert!(refused_out_of_scope(&out), "{out:?}");
        assert_eq!(store.committed.len(), 1);
    }
}
