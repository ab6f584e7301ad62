//! What the unit tests of the sessions and of [`MemoryStore`] share: nodes, events, and a
//! driver that runs a [`ClientSession`] against a [`ServerSession`] over two stores, with no
//! network and no clock (deterministic).

use std::collections::VecDeque;

use gridsync_core::{codec, GridCode, NodeId, Scope};
use gridsync_core::{BlobHash, Event, Hlc, IncidentId, Payload, PhotoKind, PhotoMeta, Writer};

use crate::client::{ClientAction, ClientConfig, ClientSession, SessionError, Summary};
use crate::memory::MemoryStore;
use crate::message::{BlobHeader, BlobKind, ErrorCode, Message, Role};
use crate::server::{ServerConfig, ServerOutput, ServerSession};
use crate::storage::SyncStore;

pub const NOW: u64 = 1_790_000_000_000;
/// The relay's, the device's and another node's secret key seeds, and their node ids (the
/// public keys, written out so they can be constants; `the_ids_are_the_keys_public_keys`).
pub const RELAY_KEY: [u8; 32] = [1; 32];
pub const DEVICE_KEY: [u8; 32] = [2; 32];
pub const OTHER_KEY: [u8; 32] = [3; 32];
pub const RELAY: NodeId = NodeId([
    138, 136, 227, 221, 116, 9, 241, 149, 253, 82, 219, 45, 60, 186, 93, 114, 202, 103, 9, 191, 29,
    148, 18, 27, 243, 116, 136, 1, 180, 15, 111, 92,
]);
pub const DEVICE: NodeId = NodeId([
    129, 57, 119, 14, 168, 125, 23, 95, 86, 163, 84, 102, 195, 76, 126, 204, 203, 141, 138, 145,
    180, 238, 55, 162, 93, 246, 15, 91, 143, 201, 179, 148,
]);
pub const OTHER: NodeId = NodeId([
    237, 73, 40, 198, 40, 209, 194, 198, 234, 233, 3, 56, 144, 89, 149, 97, 41, 89, 39, 58, 92, 99,
    249, 54, 54, 193, 70, 20, 172, 135, 55, 209,
]);

/// The secret key of one of the nodes above (events of any other origin stay unsigned).
pub fn key_of(origin: &NodeId) -> Option<[u8; 32]> {
    [(RELAY, RELAY_KEY), (DEVICE, DEVICE_KEY), (OTHER, OTHER_KEY)]
        .into_iter()
        .find(|(id, _)| id == origin)
        .map(|(_, key)| key)
}

/// A writer for `origin`, signing when its key is one of the above.
fn writer(origin: NodeId, seq: u64) -> Writer {
    match key_of(&origin) {
        Some(key) => Writer::signing(&key, "patrol-7", seq, Hlc::new(NOW, 0)),
        None => Writer::new(origin, "patrol-7", seq, Hlc::new(NOW, 0)),
    }
}
/// The device's grid.
pub const GRID: &str = "110101/002/014/03";
/// Another grid of the same street.
pub const NEXT_GRID: &str = "110101/002/014/04";
/// The street the relay serves.
pub const STREET: &str = "110101/002";

pub fn grid(s: &str) -> GridCode {
    s.parse().expect("grid")
}

pub fn scope(s: &str) -> Scope {
    s.parse().expect("scope")
}

/// A comment by `origin`, sequence number `seq`, in grid `g`.
pub fn comment(origin: NodeId, seq: u64, g: &str, text: &str) -> Event {
    writer(origin, seq).write(
        IncidentId::new_v7(NOW, [7; 10]),
        &grid(g),
        Payload::Commented { text: text.into() },
        NOW,
    )
}

/// An operator decision by `origin`: closing an incident in grid `g`.
pub fn close(origin: NodeId, seq: u64, g: &str) -> Event {
    writer(origin, seq).write(
        IncidentId::new_v7(NOW, [7; 10]),
        &grid(g),
        Payload::StatusChanged {
            status: gridsync_core::Status::Closed,
            pred: vec![],
        },
        NOW,
    )
}

/// A photo event by `origin` naming the photo and thumbnail bytes given.
pub fn photo(origin: NodeId, seq: u64, g: &str, photo: &[u8], thumb: &[u8]) -> Event {
    writer(origin, seq).write(
        IncidentId::new_v7(NOW, [7; 10]),
        &grid(g),
        Payload::PhotoAdded(PhotoMeta {
            hash: BlobHash::of(photo),
            thumb: BlobHash::of(thumb),
            kind: PhotoKind::Before,
            width: 4,
            height: 3,
            bytes: photo.len() as u64,
            captured_at: None,
        }),
        NOW,
    )
}

pub fn body(e: &Event) -> Vec<u8> {
    codec::encode_event(e).expect("encode")
}

pub fn hello(node: NodeId, role: Role) -> Message {
    Message::Hello {
        versions: crate::VERSIONS.to_vec(),
        node,
        role,
        name: "patrol-7".into(),
    }
}

/// The street relay's config.
pub fn relay_config() -> ServerConfig {
    ServerConfig::new(RELAY, Role::Street, "street-002")
}

/// The device's config, syncing with the relay.
pub fn device_config() -> ClientConfig {
    ClientConfig::new(DEVICE, Role::Device, "patrol-7", RELAY)
}

/// A relay store with the device enrolled for [`GRID`].
pub fn relay_store() -> MemoryStore {
    let mut s = MemoryStore::new();
    s.enroll(DEVICE, Role::Device, scope(GRID));
    s
}

/// The code a parent's outputs end the session with, checking the `Error` sent agrees.
pub fn ended_with(out: &[ServerOutput]) -> Option<ErrorCode> {
    let sent = out.iter().find_map(|o| match o {
        ServerOutput::Send(Message::Error { code, .. }) => Some(*code),
        _ => None,
    });
    let ended = out.iter().find_map(|o| match o {
        ServerOutput::End { code, .. } => Some(*code),
        _ => None,
    });
    assert_eq!(
        sent, ended,
        "the Error sent and the End must agree: {out:?}"
    );
    ended
}

/// The messages a parent's outputs send.
pub fn sent(out: &[ServerOutput]) -> Vec<&Message> {
    out.iter()
        .filter_map(|o| match o {
            ServerOutput::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// The messages a child's actions send.
pub fn child_sent(actions: &[ClientAction]) -> Vec<&Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            ClientAction::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// The failure among a child's actions, if any.
pub fn failure(actions: &[ClientAction]) -> Option<&SessionError> {
    actions.iter().find_map(|a| match a {
        ClientAction::Failed(e) => Some(e),
        _ => None,
    })
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct Run {
    pub finished: Option<Summary>,
    pub failed: Option<SessionError>,
    /// The parent's `End`.
    pub server_end: Option<(ErrorCode, String)>,
    /// Every message, in the order delivered: `true` for child → parent.
    pub messages: Vec<(bool, Message)>,
}

/// Runs a whole session: the child's messages to the parent and back, each blob stream (in
/// one piece) once the messages before it were delivered, until neither side has anything
/// left to say. Time stands at `now_ms`.
pub fn run(
    child: &mut ClientSession,
    parent: &mut ServerSession,
    child_store: &mut MemoryStore,
    parent_store: &mut MemoryStore,
    now_ms: u64,
) -> Run {
    run_cut(child, parent, child_store, parent_store, now_ms, None)
}

/// [`run`], with every fetch stream the parent opens (§8.11) cut after `cut_fetches` bytes
/// when given (the stream then ends early, cleanly); each fetch stream is delivered in one
/// piece once the messages before it were.
pub fn run_cut(
    child: &mut ClientSession,
    parent: &mut ServerSession,
    child_store: &mut MemoryStore,
    parent_store: &mut MemoryStore,
    now_ms: u64,
    cut_fetches: Option<u64>,
) -> Run {
    let mut run = Run::default();
    let mut fetches: VecDeque<BlobHeader> = VecDeque::new();
    let mut up: VecDeque<Message> = VecDeque::new();
    let mut down: VecDeque<Message> = VecDeque::new();
    let mut blobs: VecDeque<BlobHeader> = VecDeque::new();
    let on_child = |actions: Vec<ClientAction>,
                    up: &mut VecDeque<Message>,
                    blobs: &mut VecDeque<BlobHeader>,
                    run: &mut Run| {
        for a in actions {
            match a {
                ClientAction::Send(m) => up.push_back(m),
                ClientAction::SendBlob(h) => blobs.push_back(h),
                ClientAction::Progress(_) => {}
                ClientAction::Finished(s) => run.finished = Some(s),
                ClientAction::Failed(e) => run.failed = Some(e),
            }
        }
    };
    let on_parent = |outs: Vec<ServerOutput>,
                     down: &mut VecDeque<Message>,
                     fetches: &mut VecDeque<BlobHeader>,
                     run: &mut Run| {
        for o in outs {
            match o {
                ServerOutput::Send(m) => down.push_back(m),
                ServerOutput::SendBlob(h) => fetches.push_back(h),
                ServerOutput::End { code, reason } => run.server_end = Some((code, reason)),
                ServerOutput::Committed { .. } | ServerOutput::BlobCommitted { .. } => {}
            }
        }
    };
    let actions = child.start(now_ms);
    on_child(actions, &mut up, &mut blobs, &mut run);
    for _ in 0..10_000 {
        if let Some(m) = up.pop_front() {
            run.messages.push((true, m.clone()));
            let outs = parent.handle(m, parent_store, now_ms);
            on_parent(outs, &mut down, &mut fetches, &mut run);
        } else if let Some(m) = down.pop_front() {
            run.messages.push((false, m.clone()));
            let actions = child.handle(m, child_store, now_ms);
            on_child(actions, &mut up, &mut blobs, &mut run);
        } else if let Some(h) = blobs.pop_front() {
            stream_blob(parent, parent_store, child_store, h, &mut |outs| {
                on_parent(outs, &mut down, &mut fetches, &mut run)
            });
            child.blob_sent(&h.hash, now_ms);
        } else if let Some(h) = fetches.pop_front() {
            let actions = stream_fetch(child, child_store, parent_store, h, now_ms, cut_fetches);
            on_child(actions, &mut up, &mut blobs, &mut run);
        } else {
            return run;
        }
    }
    panic!("the session did not end: {run:?}");
}

/// Streams blob `h` from the child's store to the parent in one piece.
fn stream_blob(
    parent: &mut ServerSession,
    parent_store: &mut MemoryStore,
    child_store: &MemoryStore,
    h: BlobHeader,
    on_parent: &mut dyn FnMut(Vec<ServerOutput>),
) {
    let mut sink = match parent.blob_begin(h, parent_store) {
        Ok(sink) => sink,
        Err(e) => return on_parent(parent.blob_refused(&e)),
    };
    let len = usize::try_from(h.size - h.offset).expect("size");
    let bytes = child_store
        .read_blob(&h.hash, h.offset, len)
        .expect("read")
        .expect("held");
    if let Err(e) = parent.blob_data(&mut sink, &bytes, parent_store) {
        return on_parent(parent.blob_refused(&e));
    }
    on_parent(parent.blob_end(sink, parent_store));
}

/// Streams the fetched blob `h` from the parent's store to the child in one piece (cut after
/// `cut` bytes when given), as a driver would.
pub fn stream_fetch(
    child: &mut ClientSession,
    child_store: &mut MemoryStore,
    parent_store: &MemoryStore,
    h: BlobHeader,
    now_ms: u64,
    cut: Option<u64>,
) -> Vec<ClientAction> {
    let mut sink = match child.fetch_begin(h, now_ms) {
        Ok(sink) => sink,
        Err(actions) => return actions,
    };
    let end = cut.map_or(h.size, |n| h.offset.saturating_add(n).min(h.size));
    let len = usize::try_from(end - h.offset).expect("size");
    let bytes = parent_store
        .read_blob(&h.hash, h.offset, len)
        .expect("read")
        .expect("held");
    if let Some((_, actions)) = child.fetch_data(&mut sink, &bytes, child_store, now_ms) {
        return actions;
    }
    child.fetch_end(sink, child_store, now_ms)
}

/// A device store holding `events` (its own) and blobs of these kinds and bytes.
pub fn device_store(events: &[Event], blobs: &[(BlobKind, &[u8])]) -> MemoryStore {
    let mut s = MemoryStore::new();
    s.append(events).expect("append");
    for (kind, bytes) in blobs {
        s.add_blob(*kind, bytes.to_vec());
    }
    s
}

#[test]
fn the_ids_are_the_keys_public_keys() {
    for (id, key) in [(RELAY, RELAY_KEY), (DEVICE, DEVICE_KEY), (OTHER, OTHER_KEY)] {
        assert_eq!(id, NodeId::from_secret(&key));
    }
}
