//! Helpers shared by the cross-crate scenarios in `tests/`.

pub mod net;
pub mod sim;

use std::path::Path;

use gridsync_core::IncidentState;
use gridsync_store::{BlobKind, NewBlob, Store};

/// Hands every event and blob of the store at `from` to the store at `to`, incident by
/// incident, the way a sync would (but with no network), as received at time `now_ms`: the
/// receiver's `append_remote` checks the clocks and is idempotent, so handing the same things
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
        new += dst
            .append_remote(&events, &blobs, now_ms)
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
