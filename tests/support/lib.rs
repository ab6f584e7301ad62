//! Helpers shared by the cross-crate scenarios in `tests/`.

pub mod net;
pub mod sim;

use std::path::Path;

use gridsync_core::{Event, IncidentState, NodeId, Scope};
use gridsync_proto::{Admission, AdmitError, Admitted, Origins};
use gridsync_store::{BlobKind, NewBlob, Store};

/// `events` as a batch received from `from` at `now_ms`, admitted as a district admits its
/// streets' traffic (any origin, the district of the first event's grid).
pub fn admit_from(from: NodeId, events: &[Event], now_ms: u64) -> Result<Admitted, AdmitError> {
    let district = events
        .first()
        .and_then(|e| e.grid.as_str().split('/').next())
        .unwrap_or("110101");
    let scope: Scope = district.parse().expect("a district scope");
    Admission {
        from,
        scope: &scope,
        origins: Origins::Any,
        max_events: usize::MAX,
        max_drift_ms: gridsync_core::hlc::DEFAULT_MAX_DRIFT_MS,
        accept_unsigned_before: None,
        authority: gridsync_proto::Authority::Unchecked,
    }
    .admit_events(events, now_ms)
}

/// Hands every event and blob of the store at `from` to the store at `to`, incident by
/// incident, the way a sync would (but with no network), as received at time `now_ms`: the
/// receiver admits the batch (so clocks are checked) and stores it idempotently, so handing the same things
/// over twice changes nothing. Returns how many events were new to the receiver.
pub fn hand_over_at(from: &Path, to: &Path, now_ms: u64) -> usize {
    let src = Store::open(from).expect("open source store");
    let mut dst = Store::open(to).expect("open destination store");
    let mut new = 0;
    for state in src.incidents().expect("list incidents") {
        let events = src.events_of(&state.id).expect("read events");
        let mut blobs = Vec::new();
        for p in state.photos.values() {
            for (hash, kind) in [
                (p.meta.hash, BlobKind::Photo),
                (p.meta.thumb, BlobKind::Thumb),
            ] {
                if let Some(bytes) = src.blob(&hash).expect("read blob") {
                    blobs.push((hash, kind, bytes));
                }
            }
        }
        let blobs: Vec<NewBlob<'_>> = blobs
            .iter()
            .map(|(hash, kind, bytes)| NewBlob {
                hash: *hash,
                kind: *kind,
                bytes,
            })
            .collect();
        let from = src.identity().expect("source identity").node_id;
        let batch = admit_from(from, &events, now_ms).expect("admitted");
        new += dst
            .append_received(&batch, &blobs)
            .expect("append")
            .new_events;
    }
    new
}

/// Every incident of the store at `path`, as incident JSON, keyed by id.
pub fn incident_json(path: &Path) -> serde_json::Value {
    views_of(&Store::open(path).expect("open store"))
}

/// Every incident of `store`, as incident JSON, keyed by id.
pub fn views_of(store: &Store) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = store
        .incidents()
        .expect("list incidents")
        .iter()
        .map(|s: &IncidentState| {
            (
                s.id.to_string(),
                serde_json::to_value(s.view()).expect("incident JSON"),
            )
        })
        .collect();
    serde_json::Value::Object(map)
}
