//! Signed events are provable across relays (issue 9, item 2), over real loopback QUIC: a
//! tampered street relay that rewrites a forwarded event's description, or invents an event
//! under one of its devices' origins, is refused by the district with `BadSignature`, which
//! stores nothing of that batch and keeps serving: another street still syncs with it, the
//! tampered street's devices still sync with their street, and an honest forward from the
//! same street afterwards goes through. Nothing sleeps for a fixed time.

use std::sync::{Arc, Mutex};

use gridsync_core::{
    BlobHash, Category, Event, FieldValue, NodeId, Payload, Scope, Severity, Writer,
};
use gridsync_device::{Device, NewReport};
use gridsync_net::client::{self, SyncOptions};
use gridsync_net::{NetError, SharedStore};
use gridsync_proto::client::{ClientConfig, SessionError};
use gridsync_proto::{
    Admitted, AdmittedRecords, BlobFinish, BlobInfo, BlobKind, BlobState, Committed, Enrolled,
    ErrorCode, Head, NodeRecord, Page, Role, StorageError, SyncStore,
};
use gridsync_scenarios::net::{
    db, enroll, event_ids, init_device, init_relay, loopback, start_relay, sync, wait_until,
};
use gridsync_store::Store;

fn report(description: &str) -> NewReport {
    NewReport {
        category: Category::from_catalogue("garbage").expect("category"),
        description: description.into(),
        location: None,
        severity: Severity::Normal,
        observed_at: None,
        photos: vec![],
    }
}

/// How the tampered street alters what it forwards.
#[derive(Debug, Clone)]
enum Tamper {
    /// Every forwarded report gets another description (the signature is kept).
    RewriteDescription,
    /// After a device's events, one more under the device's origin with this payload, signed
    /// with `key`: the street's own (it cannot sign for the device), or the device's (a
    /// stolen handheld's key in a compromised street's hands).
    Invent {
        device: NodeId,
        key: [u8; 32],
        payload: Payload,
    },
    /// Nothing: an honest street.
    None,
}

/// A street's store whose `events_after` (what its upload reads) is altered; everything
/// else goes to the real store.
struct Tampered {
    inner: Store,
    how: Tamper,
}

impl SyncStore for Tampered {
    fn enrolled(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
        self.inner.enrolled(node)
    }
    fn heads(&self, peer: &Enrolled) -> Result<Vec<Head>, StorageError> {
        self.inner.heads(peer)
    }
    fn commit(&mut self, batch: &Admitted) -> Result<Committed, StorageError> {
        self.inner.commit(batch)
    }
    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError> {
        self.inner.records_about(node)
    }
    fn commit_records(&mut self, records: &AdmittedRecords) -> Result<Committed, StorageError> {
        self.inner.commit_records(records)
    }
    fn records_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        self.inner.records_cursor(parent)
    }
    fn records_to_send(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NodeRecord)>, StorageError> {
        self.inner.records_to_send(after, limit)
    }
    fn records_acked(&mut self, parent: &NodeId, upto: u64) -> Result<(), StorageError> {
        self.inner.records_acked(parent, upto)
    }
    fn blob_state(&self, hash: &BlobHash) -> Result<BlobState, StorageError> {
        self.inner.blob_state(hash)
    }
    fn blob_write(
        &mut self,
        hash: &BlobHash,
        kind: BlobKind,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        self.inner.blob_write(hash, kind, size, offset, bytes)
    }
    fn blob_finish(
        &mut self,
        hash: &BlobHash,
        check: &dyn Fn(&[u8]) -> Result<(), String>,
    ) -> Result<BlobFinish, StorageError> {
        self.inner.blob_finish(hash, check)
    }
    fn page(
        &self,
        scope: &Scope,
        except: &NodeId,
        cursor: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        self.inner
            .page(scope, except, cursor, max_events, max_bytes)
    }
    fn blob_discard(&mut self, hash: &BlobHash) -> Result<(), StorageError> {
        self.inner.blob_discard(hash)
    }
    fn origins(&self) -> Result<Vec<NodeId>, StorageError> {
        self.inner.origins()
    }
    fn events_after(
        &self,
        origin: &NodeId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StorageError> {
        let mut events = self.inner.events_after(origin, after, limit)?;
        match &self.how {
            Tamper::RewriteDescription => {
                for e in &mut events {
                    if let Payload::Reported(r) = &mut e.payload {
                        r.description = "Nothing to see here".into();
                    }
                }
            }
            Tamper::Invent {
                device,
                key,
                payload,
            } if origin == device => {
                // After the device's last event (read from the start: the district may hold
                // them all already).
                let all = self.inner.events_after(origin, 0, usize::MAX)?;
                if let Some(last) = all.last() {
                    let mut forged = last.clone();
                    forged.seq = last.seq + 1;
                    forged.payload = payload.clone();
                    forged.signature = None;
                    let signer = Writer::signing(key, "x", 1, forged.hlc).write(
                        forged.incident,
                        &forged.grid,
                        forged.payload.clone(),
                        forged.hlc.wall_ms,
                    );
                    if NodeId::from_secret(key) == *device {
                        forged.sign(key).expect("the device's own key");
                    } else {
                        forged.signature = signer.signature;
                    }
                    events.push(forged);
                }
            }
            Tamper::Invent { .. } | Tamper::None => {}
        }
        Ok(events)
    }
    fn unsent_blobs(&self, parent: &NodeId, limit: usize) -> Result<Vec<BlobInfo>, StorageError> {
        self.inner.unsent_blobs(parent, limit)
    }
    fn mark_blob_sent(&mut self, parent: &NodeId, hash: &BlobHash) -> Result<(), StorageError> {
        self.inner.mark_blob_sent(parent, hash)
    }
    fn read_blob(
        &self,
        hash: &BlobHash,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.read_blob(hash, offset, len)
    }
    fn down_cursor(&self, parent: &NodeId) -> Result<u64, StorageError> {
        self.inner.down_cursor(parent)
    }
    fn commit_download(
        &mut self,
        batch: &Admitted,
        cursor: u64,
    ) -> Result<Committed, StorageError> {
        self.inner.commit_download(batch, cursor)
    }
    fn own_acked(&mut self, parent: &NodeId, seq: u64) -> Result<(), StorageError> {
        self.inner.own_acked(parent, seq)
    }
}

/// One upload session of the street whose store is `street_db`, altered by `how`, to the
/// district at `district`.
async fn forward(
    street_db: &std::path::Path,
    how: Tamper,
    district: &gridsync_relay::RelayHandle,
) -> Result<(), NetError> {
    let inner = Store::open(street_db).expect("open street store");
    let identity = inner.identity().expect("identity");
    let store: SharedStore = Arc::new(Mutex::new(Tampered { inner, how }));
    let endpoint = client::endpoint(loopback()).expect("endpoint");
    let conn = client::connect(
        &endpoint,
        &identity.secret,
        district.local_addr,
        district.node_id,
    )
    .await?;
    let config = ClientConfig::new(
        identity.node_id,
        Role::Street,
        identity.name.clone(),
        district.node_id,
    );
    let result = client::run_session(&conn, store, config, &SyncOptions::default(), &mut |_| {})
        .await
        .map(|_| ());
    conn.close(0u32.into(), b"done");
    result
}

fn refused_with_bad_signature(r: Result<(), NetError>) -> String {
    refused_with(ErrorCode::BadSignature, r)
}

fn refused_with(expected: ErrorCode, r: Result<(), NetError>) -> String {
    match r {
        Err(NetError::Session(SessionError::Refused { code, message })) => {
            assert_eq!(code, expected, "{message}");
            message
        }
        Err(e) if e.is_closed_with(expected) => e.to_string(),
        other => panic!("expected a {expected:?} refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_street_is_refused_by_the_district_which_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (district_db, tampered_db, honest_db) = (
        db(dir.path(), "district"),
        db(dir.path(), "street-002"),
        db(dir.path(), "street-003"),
    );
    init_relay(&district_db, "district", "district");
    let tampered_id = init_relay(&tampered_db, "street-002", "street");
    let honest_id = init_relay(&honest_db, "street-003", "street");
    enroll(&district_db, tampered_id, Role::Street, "110101/002");
    enroll(&district_db, honest_id, Role::Street, "110101/003");
    let (pda1_db, pda2_db) = (db(dir.path(), "pda-1"), db(dir.path(), "pda-2"));
    let pda1_id = init_device(&pda1_db, "patrol-1", "110101/002/014/03");
    let pda2_id = init_device(&pda2_db, "patrol-2", "110101/003/001/01");
    enroll(&tampered_db, pda1_id, Role::Device, "110101/002/014/03");
    enroll(&honest_db, pda2_id, Role::Device, "110101/003/001/01");
    let street_key = Store::open(&tampered_db)
        .expect("open")
        .identity()
        .expect("identity")
        .secret;

    let district = start_relay(&district_db, None).await;
    // The tampered street serves its devices itself; its uplink is driven below.
    let tampered = start_relay(&tampered_db, None).await;
    let honest = start_relay(&honest_db, Some(&district)).await;

    let mut pda1 = Device::open(&pda1_db).expect("open pda-1");
    pda1.report(report("Bags piled by the east gate"))
        .expect("report");
    sync(&pda1, &tampered).await;

    // (a) A rewritten description: refused, nothing of the batch stored.
    let message = refused_with_bad_signature(
        forward(&tampered_db, Tamper::RewriteDescription, &district).await,
    );
    assert!(message.contains("signature does not verify"), "{message}");
    assert!(event_ids(&district_db).is_empty(), "nothing stored");

    // (b) An event invented under the device's origin: refused the same way.
    let message = refused_with_bad_signature(
        forward(
            &tampered_db,
            Tamper::Invent {
                device: pda1_id,
                key: street_key,
                payload: Payload::Edited {
                    value: FieldValue::Description("Handled, no action needed".into()),
                    pred: vec![],
                },
            },
            &district,
        )
        .await,
    );
    assert!(message.contains(&pda1_id.short()), "{message}");
    assert!(event_ids(&district_db).is_empty(), "nothing stored");

    // The district keeps serving: another street's devices' reports reach it.
    let mut pda2 = Device::open(&pda2_db).expect("open pda-2");
    pda2.report(report("A broken street light"))
        .expect("report");
    sync(&pda2, &honest).await;
    wait_until("the honest street's report reaches the district", || {
        event_ids(&district_db)
            .iter()
            .any(|id| id.origin == pda2_id)
    })
    .await;
    assert!(event_ids(&district_db)
        .iter()
        .all(|id| id.origin != pda1_id));

    // The tampered street's devices still sync with it.
    pda1.report(report("Standing water by the school"))
        .expect("report");
    let up = sync(&pda1, &tampered).await;
    assert_eq!(up.summary.events_up, 1);

    // And the same street forwarding honestly goes through, every event verified.
    forward(&tampered_db, Tamper::None, &district)
        .await
        .expect("an honest forward");
    let held = Store::open(&district_db).expect("open district");
    let ids = event_ids(&district_db);
    let pda1_events: Vec<_> = ids.iter().filter(|id| id.origin == pda1_id).collect();
    assert_eq!(pda1_events.len(), 2);
    for state in held.incidents().expect("incidents") {
        for e in held.events_of(&state.id).expect("events") {
            assert_eq!(e.verify(), Ok(()), "{}/{}", e.origin.short(), e.seq);
        }
    }

    honest.stop().await;
    tampered.stop().await;
    district.stop().await;
}

/// Authorisation and revocation hold at the district whatever a street forwards (issue 9,
/// items 3 and 4): a compromised street holding a stolen handheld's key can neither pass off
/// an operator decision under the handheld's origin, nor, once its street revoked the
/// handheld, a later event of that key. The district learns both from the street's signed
/// node records, refuses each batch with `NotAuthorised`, stores nothing of it, and keeps the
/// handheld's earlier events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handhelds_decision_or_a_revoked_keys_later_event_is_refused_upstream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (district_db, street_db, pda_db) = (
        db(dir.path(), "district"),
        db(dir.path(), "street-002"),
        db(dir.path(), "pda-1"),
    );
    init_relay(&district_db, "district", "district");
    let street_id = init_relay(&street_db, "street-002", "street");
    enroll(&district_db, street_id, Role::Street, "110101/002");
    let pda_id = init_device(&pda_db, "patrol-1", "110101/002/014/03");
    enroll(&street_db, pda_id, Role::Device, "110101/002/014/03");
    let pda_key = Store::open(&pda_db)
        .expect("open")
        .identity()
        .expect("identity")
        .secret;
    let district = start_relay(&district_db, None).await;
    let street = start_relay(&street_db, None).await;

    let mut pda = Device::open(&pda_db).expect("open pda-1");
    pda.report(report("Bags piled by the east gate"))
        .expect("report");
    sync(&pda, &street).await;
    forward(&street_db, Tamper::None, &district)
        .await
        .expect("an honest forward");
    let held = |origin: NodeId| {
        event_ids(&district_db)
            .iter()
            .filter(|id| id.origin == origin)
            .count()
    };
    assert_eq!(held(pda_id), 1);

    // (a) A decision under the handheld's origin, signed with its (stolen) key.
    let close = Payload::StatusChanged {
        status: gridsync_core::Status::Closed,
        pred: vec![],
    };
    let message = refused_with(
        ErrorCode::NotAuthorised,
        forward(
            &street_db,
            Tamper::Invent {
                device: pda_id,
                key: pda_key,
                payload: close,
            },
            &district,
        )
        .await,
    );
    assert!(message.contains("operator decision"), "{message}");
    assert_eq!(held(pda_id), 1, "nothing of the batch stored");

    // (b) The street revokes the handheld; the revocation goes up with the next forward.
    gridsync_scenarios::net::revoke(&street_db, pda_id);
    forward(&street_db, Tamper::None, &district)
        .await
        .expect("the revocation goes up");
    let comment = Payload::Commented {
        text: "all fine here".into(),
    };
    let message = refused_with(
        ErrorCode::NotAuthorised,
        forward(
            &street_db,
            Tamper::Invent {
                device: pda_id,
                key: pda_key,
                payload: comment,
            },
            &district,
        )
        .await,
    );
    assert!(
        message.contains("was revoked after its event 1"),
        "{message}"
    );
    assert_eq!(
        held(pda_id),
        1,
        "the earlier event is kept, the later refused"
    );

    // The street itself still forwards: its own decisions go through.
    let mut desk = Device::open(&street_db).expect("open the street's store");
    let incident = desk.list().expect("list")[0].id;
    desk.edit(
        incident,
        vec![gridsync_core::Change::Status(
            gridsync_core::Status::Accepted,
        )],
        vec![],
    )
    .expect("the sub-center accepts the case");
    forward(&street_db, Tamper::None, &district)
        .await
        .expect("the street's decision goes through");
    assert_eq!(held(street_id), 1);

    street.stop().await;
    district.stop().await;
}
