//! The sync sessions (`gridsync_proto::client` and `server`) over a simulated link, in memory
//! and deterministic: real framing, real SQLite stores, simulated time, injected faults
//! (lost connections, duplicated and replayed frames, broken and corrupted blob streams, a
//! silent parent). No sockets, no threads, no sleeps.

use gridsync_core::{codec, Change, Event, NodeId, Status};
use gridsync_proto::client::{
    ClientAction, ClientConfig, ClientSession, SessionError, RESPONSE_TIMEOUT_MS,
};
use gridsync_proto::{BlobKind, BlobState, ErrorCode, Message, Role, SyncStore, Want};
use gridsync_scenarios::admit_from;
use gridsync_scenarios::sim::{
    BlobMatch, Dir, End, FakePhoto, Fault, FrameMatch, Interleave, Node, Outcome, Sim, StepKind,
};
use gridsync_store::{Pending, ACKED_OWN_SEQ, UPSTREAM};

const T0: u64 = 1_764_000_000_000;
const GRID: &str = "110101/002/014/03";
const STREET_SCOPE: &str = "110101/002";

fn device(seed: u8, name: &str) -> Node {
    Node::new(seed, name, Role::Device)
}

fn street() -> Node {
    Node::new(20, "street-002", Role::Street)
}

/// A simulator, a device and the street it is enrolled at (for `GRID`).
fn an_enrolled_device() -> (Sim, Node, Node) {
    let sim = Sim::new(T0 + 10_000);
    let dev = device(7, "patrol-7");
    let mut street = street();
    street.enroll(&dev, GRID, T0);
    (sim, dev, street)
}

/// [`an_enrolled_device`] that reported one incident with a 300,000-byte photo.
fn a_device_with_a_photo() -> (Sim, Node, Node, FakePhoto) {
    let (sim, mut dev, street) = an_enrolled_device();
    let photo = FakePhoto::new(9, 300_000, 6_000);
    dev.report(
        GRID,
        "Broken railing",
        std::slice::from_ref(&photo),
        T0 + 1_000,
    );
    (sim, dev, street, photo)
}

fn nothing_pending() -> Pending {
    Pending {
        events: 0,
        blobs: 0,
        blob_bytes: 0,
    }
}

fn decode(body: &[u8]) -> Event {
    codec::decode_event(body).expect("event decodes")
}

/// The `Events` messages sent up in a session: (batch, events).
fn batches(out: &Outcome) -> Vec<(u64, Vec<Event>)> {
    out.sent(Dir::Up)
        .into_iter()
        .filter_map(|m| match m {
            Message::Events { batch, events } => {
                Some((*batch, events.iter().map(|b| decode(b)).collect()))
            }
            _ => None,
        })
        .collect()
}

/// The `Ack`s delivered to the child: (batch, stored, duplicates).
fn acks(out: &Outcome) -> Vec<(u64, u32, u32)> {
    out.delivered(Dir::Down)
        .into_iter()
        .filter_map(|m| match m {
            Message::Ack {
                batch,
                stored,
                duplicates,
            } => Some((*batch, *stored, *duplicates)),
            _ => None,
        })
        .collect()
}

fn wants(out: &Outcome) -> Vec<Want> {
    out.delivered(Dir::Down)
        .into_iter()
        .filter_map(|m| match m {
            Message::Wants { wants } => Some(wants.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn refused_code(out: &Outcome) -> Option<ErrorCode> {
    match &out.end {
        End::Failed(SessionError::Refused { code, .. }) => Some(*code),
        _ => None,
    }
}

/// A handheld with 600 events (two reports with three photos, then edits) enrolled at a
/// street relay, at `T0 + 10 s`.
struct Busy {
    sim: Sim,
    dev: Node,
    street: Node,
    photos: Vec<FakePhoto>,
}

fn busy_device() -> Busy {
    let mut dev = device(7, "patrol-7");
    let mut street = street();
    street.enroll(&dev, GRID, T0);
    let photos = vec![
        FakePhoto::new(1, 300_000, 6_000),
        FakePhoto::new(2, 150_000, 5_000),
        FakePhoto::new(3, 80_000, 4_000),
    ];
    let a = dev.report(
        GRID,
        "Bags piled by the east gate",
        &photos[..1],
        T0 + 1_000,
    );
    let b = dev.report(GRID, "Overflowing bins", &photos[1..], T0 + 2_000);
    dev.busy_edits(a, 300, T0 + 3_000);
    dev.busy_edits(b, 295, T0 + 4_000);
    assert_eq!(dev.store.counts().expect("counts").events, 600);
    Busy {
        sim: Sim::new(T0 + 10_000),
        dev,
        street,
        photos,
    }
}

fn assert_blobs_held(node: &Node, photos: &[FakePhoto]) {
    for p in photos {
        for bytes in [&p.photo, &p.thumb] {
            let hash = gridsync_core::BlobHash::of(bytes);
            assert_eq!(
                node.store.blob(&hash).expect("read blob").as_ref(),
                Some(bytes),
                "{} holds blob {hash}",
                node.name
            );
        }
    }
}

// ---- 1. happy path ----------------------------------------------------------------------

#[test]
fn a_busy_device_syncs_everything_exactly_once() {
    let Busy {
        mut sim,
        mut dev,
        mut street,
        photos,
    } = busy_device();
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert_eq!(out.end, End::Finished, "{:?}", out.server_end);
    assert_eq!(out.server_end.as_ref().map(|e| e.0), Some(ErrorCode::Done));

    // Three batches (256 + 256 + 88), pipelined: batch 2 left before batch 1's Ack arrived.
    let sent = batches(&out);
    assert_eq!(
        sent.iter().map(|(b, e)| (*b, e.len())).collect::<Vec<_>>(),
        [(1, 256), (2, 256), (3, 88)]
    );
    let batch2_sent = out
        .position(|s| s.kind == StepKind::Sent && matches!(s.msg, Message::Events { batch: 2, .. }))
        .expect("batch 2 sent");
    let ack1_delivered = out
        .position(|s| {
            s.kind == StepKind::Delivered && matches!(s.msg, Message::Ack { batch: 1, .. })
        })
        .expect("ack 1 delivered");
    assert!(batch2_sent < ack1_delivered, "the window was not used");
    assert_eq!(acks(&out), [(1, 256, 0), (2, 256, 0), (3, 88, 0)]);

    // Every event exactly once, and the same incidents on both sides.
    assert_eq!(street.store.counts().expect("counts").events, 600);
    assert_eq!(street.events(), dev.events());
    assert_eq!(out.committed, 600);
    assert_eq!(out.stats.events_duplicate, 0);
    assert_eq!(street.views(), dev.views());
    assert_eq!(street.views().as_object().map(|m| m.len()), Some(2));

    // Every blob, thumbnails first.
    assert_blobs_held(&street, &photos);
    let kinds: Vec<BlobKind> = out.blobs.iter().map(|b| b.header.kind).collect();
    assert_eq!(
        kinds,
        [
            BlobKind::Thumb,
            BlobKind::Thumb,
            BlobKind::Thumb,
            BlobKind::Photo,
            BlobKind::Photo,
            BlobKind::Photo
        ]
    );
    assert!(out.blobs.iter().all(|b| b.ended && b.header.offset == 0));
    let blob_bytes: u64 = photos
        .iter()
        .map(|p| (p.photo.len() + p.thumb.len()) as u64)
        .sum();

    let s = &out.summary;
    assert_eq!(
        (s.events_up, s.events_dup, s.events_down),
        (600, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        (s.blobs_up, s.blob_bytes_up, s.blobs_refused),
        (6, blob_bytes, 0)
    );
    // Three batches, one offer, one pull.
    assert_eq!(s.round_trips, 5);
    assert_eq!(out.stats.blobs_stored, 6);
    assert_eq!(out.stats.blob_bytes, blob_bytes);
    assert_eq!(
        dev.store.pending(&dev.id).expect("pending"),
        nothing_pending()
    );
}

// ---- 2. up to date -----------------------------------------------------------------------

#[test]
fn an_up_to_date_sync_is_one_round_trip_and_a_few_hundred_bytes() {
    let Busy {
        mut sim,
        mut dev,
        mut street,
        ..
    } = busy_device();
    assert!(sim.sync(&mut dev, &mut street, &[]).finished());
    sim.advance(60_000);
    let before = (dev.views(), street.views());

    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    assert_eq!(out.sent_names(Dir::Up), ["Hello", "Pull", "Bye"]);
    assert_eq!(out.sent_names(Dir::Down), ["Welcome", "Down"]);
    assert_eq!(out.summary.round_trips, 1);
    assert_eq!(
        (
            out.summary.events_up,
            out.summary.blobs_up,
            out.summary.events_down
        ),
        (0, 0, 0)
    );
    let (up, down) = (out.frame_bytes(Dir::Up), out.frame_bytes(Dir::Down));
    println!(
        "up-to-date sync: {up} bytes up, {down} bytes down, {} in all",
        up + down
    );
    assert!(up + down < 1024, "{up} + {down} bytes");
    assert_eq!((dev.views(), street.views()), before);
}

// ---- 3. connection lost mid-batch --------------------------------------------------------

#[test]
fn a_connection_lost_before_an_ack_resumes_without_resending_the_committed_batch() {
    let Busy {
        mut sim,
        mut dev,
        mut street,
        ..
    } = busy_device();
    // The link dies right after batch 2 reaches the parent: it commits it, its Ack is lost.
    let out = sim.sync(
        &mut dev,
        &mut street,
        &[Fault::DropAfter(FrameMatch::named(Dir::Up, "Events", 2))],
    );
    assert_eq!(out.end, End::Dropped);
    assert_eq!(acks(&out), [(1, 256, 0)], "only batch 1's Ack arrived");
    assert_eq!(out.committed, 512);
    assert_eq!(street.store.counts().expect("counts").events, 512);
    assert_eq!(street.store.contiguous(&dev.id).expect("contiguous"), 512);
    // The device only knows of batch 1.
    assert_eq!(
        dev.store.cursor(UPSTREAM, ACKED_OWN_SEQ).expect("cursor"),
        256
    );
    assert_eq!(dev.store.pending(&dev.id).expect("pending").events, 344);

    sim.advance(5_000);
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    // The parent's head covers batch 2, so only the rest goes, and nothing twice.
    let welcome_heads = out.delivered(Dir::Down).into_iter().find_map(|m| match m {
        Message::Welcome { heads, .. } => Some(heads.clone()),
        _ => None,
    });
    assert_eq!(
        welcome_heads
            .expect("welcome")
            .iter()
            .map(|h| h.seq)
            .collect::<Vec<_>>(),
        [512]
    );
    let sent = batches(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.len(), 88);
    assert_eq!(sent[0].1[0].seq, 513);
    assert_eq!((out.summary.events_up, out.summary.events_dup), (88, 0));
    assert_eq!(out.stats.events_duplicate, 0);
    assert_eq!(street.events(), dev.events());
    assert_eq!(street.views(), dev.views());
    assert_eq!(
        dev.store.pending(&dev.id).expect("pending"),
        nothing_pending()
    );
}

// ---- 4. a batch replayed -----------------------------------------------------------------

#[test]
fn a_replayed_batch_is_acknowledged_as_duplicates_and_changes_nothing() {
    let mut sim = Sim::new(T0 + 10_000);
    let mut dev = device(7, "patrol-7");
    let id = dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);
    dev.busy_edits(id, 299, T0 + 2_000);
    let mut first = street();
    first.enroll(&dev, GRID, T0);
    let out = sim.sync(&mut dev, &mut first, &[]);
    assert!(out.finished());
    let frame_of = |name: &str| {
        out.steps
            .iter()
            .find(|s| s.dir == Dir::Up && s.kind == StepKind::Sent && s.msg.name() == name)
            .map(|s| s.frame.clone())
            .expect("frame sent")
    };
    let (hello, batch1, bye) = (frame_of("Hello"), frame_of("Events"), frame_of("Bye"));

    // Another relay receives batch 1 twice in one session, as a retransmission would.
    let mut other = Node::new(21, "street-002-standby", Role::Street);
    other.enroll(&dev, GRID, T0);
    let got = sim.scripted(
        &mut other,
        dev.id,
        &[hello.clone(), batch1.clone(), batch1.clone(), bye.clone()],
    );
    assert_eq!(
        got.replies.iter().map(Message::name).collect::<Vec<_>>(),
        ["Welcome", "Ack", "Ack"]
    );
    assert_eq!(
        got.replies[1..],
        [
            Message::Ack {
                batch: 1,
                stored: 256,
                duplicates: 0
            },
            Message::Ack {
                batch: 1,
                stored: 0,
                duplicates: 256
            }
        ]
    );
    assert_eq!(got.committed, 256);
    assert_eq!(got.server_end.as_ref().map(|e| e.0), Some(ErrorCode::Done));
    let snapshot = (other.views(), other.events());
    assert_eq!(snapshot.1.len(), 256);

    // In a later session, once more: nothing changes.
    let got = sim.scripted(&mut other, dev.id, &[hello, batch1, bye]);
    assert_eq!(
        got.replies[1],
        Message::Ack {
            batch: 1,
            stored: 0,
            duplicates: 256
        }
    );
    assert_eq!((other.views(), other.events()), snapshot);

    // The device itself then sends only what the relay lacks.
    let out = sim.sync(&mut dev, &mut other, &[]);
    assert!(out.finished());
    assert_eq!((out.summary.events_up, out.summary.events_dup), (44, 0));
    assert_eq!(other.events(), dev.events());
    assert_eq!(other.views(), dev.views());
}

// ---- 5. a page delivered twice -----------------------------------------------------------

#[test]
fn a_download_page_delivered_twice_stores_nothing_twice() {
    let mut sim = Sim::new(T0 + 10_000);
    let mut street = street();
    let mut a = device(7, "patrol-7");
    let mut b = device(8, "patrol-8");
    street.enroll(&a, GRID, T0);
    street.enroll(&b, GRID, T0);
    let x = b.report(GRID, "Flyers on the lamp post", &[], T0 + 1_000);
    b.busy_edits(x, 699, T0 + 2_000);
    assert!(sim.sync(&mut b, &mut street, &[]).finished());
    let own = a.report(GRID, "Manhole cover cracked", &[], T0 + 3_000);
    a.edit(
        own,
        vec![Change::Comment("Taped off".into())],
        &[],
        T0 + 4_000,
    );

    // The first page (512 of b's 700 events, `more` set) arrives twice.
    let out = sim.sync(
        &mut a,
        &mut street,
        &[Fault::Duplicate(FrameMatch::named(Dir::Down, "Down", 1))],
    );
    assert!(out.finished(), "{:?}", out.end);
    let downs: Vec<(usize, u64, bool)> = out
        .delivered(Dir::Down)
        .into_iter()
        .filter_map(|m| match m {
            Message::Down {
                events,
                cursor,
                more,
            } => Some((events.len(), *cursor, *more)),
            _ => None,
        })
        .collect();
    assert_eq!(downs[0], downs[1], "the first page, twice");
    assert_eq!((downs[0].0, downs[0].2), (512, true));
    // Each copy of the page asked for the next one; the child took the first answer, ended,
    // and ignored the second.
    assert_eq!(
        out.sent_names(Dir::Up)
            .iter()
            .filter(|n| **n == "Pull")
            .count(),
        3
    );
    let last = *downs.iter().rfind(|d| !d.2).expect("a last page");
    assert_eq!(last.0, 188);

    assert_eq!(out.summary.events_down, 700);
    assert_eq!(a.store.counts().expect("counts").events, 702);
    assert_eq!(street.store.counts().expect("counts").events, 702);
    // The cursor is the parent's arrival position of its last event (a's own two came last).
    assert_eq!(a.store.down_cursor(&street.id).expect("cursor"), 702);
    assert_eq!(last.1, 702);
    assert_eq!(a.views(), street.views());
    assert_eq!(
        a.events()
            .into_iter()
            .filter(|e| e.origin == b.id)
            .collect::<Vec<_>>(),
        b.events()
    );

    // The next session starts from that cursor and finds nothing.
    sim.advance(1_000);
    let out = sim.sync(&mut a, &mut street, &[]);
    assert!(out.sent(Dir::Up).contains(&&Message::Pull { cursor: 702 }));
    assert_eq!(out.summary.events_down, 0);
}

// ---- 6. a blob stream broken half way ----------------------------------------------------

#[test]
fn an_interrupted_photo_resumes_from_the_bytes_the_parent_kept() {
    let (mut sim, mut dev, mut street, photo) = a_device_with_a_photo();

    let out = sim.sync(
        &mut dev,
        &mut street,
        &[Fault::CutBlob {
            blob: BlobMatch::Hash(photo.hash()),
            after: 100_000,
        }],
    );
    assert_eq!(out.end, End::Dropped);
    let stream = out
        .blobs
        .iter()
        .find(|b| b.header.hash == photo.hash())
        .expect("photo stream");
    assert_eq!((stream.fed, stream.ended), (100_000, false));
    assert_eq!(
        street.store.blob_state(&photo.hash()).expect("state"),
        BlobState::Partial { offset: 100_000 }
    );
    assert_eq!(street.store.blob(&photo.hash()).expect("read"), None);

    sim.advance(60_000);
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    assert_eq!(
        wants(&out),
        [Want {
            hash: photo.hash(),
            offset: 100_000
        }]
    );
    assert_eq!(out.blobs.len(), 1);
    assert_eq!(out.blobs[0].header.offset, 100_000);
    assert_eq!(out.blobs[0].fed, 200_000);
    assert_eq!(out.summary.blob_bytes_up, 300_000 - 100_000);
    assert_eq!(out.summary.blobs_up, 1);
    assert_blobs_held(&street, &[photo]);
    assert_eq!(
        dev.store.pending(&dev.id).expect("pending"),
        nothing_pending()
    );
}

// ---- 7. a corrupted blob -----------------------------------------------------------------

#[test]
fn a_blob_corrupted_in_flight_is_refused_discarded_and_sent_again_whole() {
    let (mut sim, mut dev, mut street, photo) = a_device_with_a_photo();

    let out = sim.sync(
        &mut dev,
        &mut street,
        &[Fault::CorruptBlob {
            blob: BlobMatch::Hash(photo.hash()),
            at: 123_456,
        }],
    );
    assert!(out.finished(), "{:?}", out.end);
    let refusal = out.delivered(Dir::Down).into_iter().find_map(|m| match m {
        Message::BlobRefused { hash, code, .. } => Some((*hash, *code)),
        _ => None,
    });
    assert_eq!(refusal, Some((photo.hash(), ErrorCode::BlobMismatch)));
    assert_eq!((out.summary.blobs_up, out.summary.blobs_refused), (1, 1));
    assert_eq!(street.store.blob(&photo.hash()).expect("read"), None);
    // The partial is gone: the photo is wanted again from its first byte.
    assert_eq!(
        street.store.blob_state(&photo.hash()).expect("state"),
        BlobState::Missing
    );
    let pending = dev.store.pending(&dev.id).expect("pending");
    assert_eq!((pending.events, pending.blobs), (0, 1));

    sim.advance(60_000);
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    assert_eq!(
        wants(&out),
        [Want {
            hash: photo.hash(),
            offset: 0
        }]
    );
    assert_eq!(out.summary.blob_bytes_up, 300_000);
    assert_eq!(out.summary.blobs_up, 1);
    assert_blobs_held(&street, &[photo]);
    assert_eq!(
        dev.store.pending(&dev.id).expect("pending"),
        nothing_pending()
    );
}

// ---- 7b. blobs the parent declines -------------------------------------------------------

/// The `BlobRefused` answers the child got: hash, code, message.
fn blob_refusal_messages(out: &Outcome) -> Vec<(gridsync_core::BlobHash, ErrorCode, String)> {
    out.delivered(Dir::Down)
        .into_iter()
        .filter_map(|m| match m {
            Message::BlobRefused {
                hash,
                code,
                message,
            } => Some((*hash, *code, message.clone())),
            _ => None,
        })
        .collect()
}

/// The `BlobRefused` messages delivered to the child: (hash, code).
fn blob_refusals(out: &Outcome) -> Vec<(gridsync_core::BlobHash, ErrorCode)> {
    blob_refusal_messages(out)
        .into_iter()
        .map(|(h, c, _)| (h, c))
        .collect()
}

/// The hashes of every `Offer` sent up, one list per offer.
fn offers(out: &Outcome) -> Vec<Vec<gridsync_core::BlobHash>> {
    out.sent(Dir::Up)
        .into_iter()
        .filter_map(|m| match m {
            Message::Offer { blobs } => Some(blobs.iter().map(|b| b.hash).collect()),
            _ => None,
        })
        .collect()
}

/// Stores `photo`'s blobs at `node` with no event naming them.
fn store_orphan(node: &mut Node, photo: &FakePhoto) {
    node.store
        .append(&[], &photo.blobs(), None)
        .expect("append blobs");
}

#[test]
fn declined_blobs_are_refused_before_wants_and_offered_again_until_wanted() {
    let (mut sim, mut dev, mut street, photo) = a_device_with_a_photo();
    // The photo (300,000 bytes) is over the street's limit; its thumbnail is not.
    street.limits.max_blob = 200_000;
    // A photo the device holds that no event names (yet).
    let orphan = FakePhoto::new(31, 50_000, 3_000);
    store_orphan(&mut dev, &orphan);

    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    let offered = [
        photo.thumb_hash(),
        orphan.thumb_hash(),
        photo.hash(),
        orphan.hash(),
    ];
    assert_eq!(offers(&out), [offered.to_vec()]);
    // One refusal per declined blob, in the offer's order, all before the `Wants`.
    assert_eq!(
        blob_refusals(&out),
        [
            (orphan.thumb_hash(), ErrorCode::OutOfScope),
            (photo.hash(), ErrorCode::TooLarge),
            (orphan.hash(), ErrorCode::OutOfScope),
        ]
    );
    let names: Vec<&str> = out.delivered(Dir::Down).iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        [
            "Welcome",
            "Ack",
            "BlobRefused",
            "BlobRefused",
            "BlobRefused",
            "Wants",
            "BlobStored",
            "Down"
        ]
    );
    let too_large = out.delivered(Dir::Down).into_iter().find_map(|m| match m {
        Message::BlobRefused {
            code: ErrorCode::TooLarge,
            message,
            ..
        } => Some(message.clone()),
        _ => None,
    });
    assert_eq!(
        too_large.as_deref(),
        Some("blob of 300000 bytes, over this relay's limit of 200000")
    );
    assert_eq!(
        wants(&out),
        [Want {
            hash: photo.thumb_hash(),
            offset: 0
        }]
    );
    assert_eq!((out.summary.blobs_up, out.summary.blobs_refused), (1, 3));
    // Not recorded as held: the three are still pending here.
    assert_eq!(dev.store.pending(&dev.id).expect("pending").blobs, 3);

    // The next session offers them again (once: a refusal does not loop within a session),
    // and they are refused again.
    sim.advance(60_000);
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    assert_eq!(offers(&out), [offered[1..].to_vec()]);
    assert_eq!(blob_refusals(&out).len(), 3);
    assert_eq!(wants(&out), []);
    assert_eq!((out.summary.blobs_up, out.summary.blobs_refused), (0, 3));

    // The operator raises the limit, and the device writes an event naming the orphan: both
    // are wanted now, and stored.
    street.limits.max_blob = 64 * 1024 * 1024;
    let id = dev.report(GRID, "Second look", &[], T0 + 2_000);
    dev.edit(id, vec![], std::slice::from_ref(&orphan), T0 + 3_000);
    sim.advance(60_000);
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    assert_eq!(blob_refusals(&out), []);
    assert_eq!(out.summary.blobs_up, 3);
    assert_blobs_held(&street, &[photo, orphan]);
    assert_eq!(
        dev.store.pending(&dev.id).expect("pending"),
        nothing_pending()
    );
}

#[test]
fn a_wall_of_refused_blobs_does_not_hold_back_the_blobs_behind_it() {
    let (mut sim, mut dev, mut street) = an_enrolled_device();
    // 200 orphan photos (400 blobs, more than an offer holds), then a real report. (Even
    // seeds: the generator makes seeds 2k and 2k + 1 alike.)
    let orphans: Vec<FakePhoto> = (0..200)
        .map(|i| FakePhoto::new(1_000 + 2 * i, 16, 8))
        .collect();
    for o in &orphans {
        store_orphan(&mut dev, o);
    }
    let photo = FakePhoto::new(9, 20_000, 2_000);
    dev.report(
        GRID,
        "Behind the wall",
        std::slice::from_ref(&photo),
        T0 + 1_000,
    );

    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    let offers = offers(&out);
    // A full offer (201 thumbnails, 55 photos), then the rest without the refused ones.
    assert_eq!(
        offers.iter().map(Vec::len).collect::<Vec<_>>(),
        [256, 146],
        "two offers"
    );
    assert!(offers[0].contains(&photo.thumb_hash()));
    assert!(offers[1].contains(&photo.hash()));
    assert!(
        offers[1].iter().all(|h| !offers[0].contains(h)),
        "nothing is offered twice in a session"
    );
    assert_eq!((out.summary.blobs_up, out.summary.blobs_refused), (2, 400));
    assert_blobs_held(&street, &[photo]);
    assert_eq!(dev.store.pending(&dev.id).expect("pending").blobs, 400);
}

// ---- 8. refusals -------------------------------------------------------------------------

#[test]
fn a_relay_refuses_photo_blobs_that_are_not_photos_gridsync_stores_and_stores_real_ones() {
    let (mut sim, mut dev, mut street) = an_enrolled_device();
    street.blob_check =
        gridsync_relay::server_config(street.id, street.role, "street-002").blob_check;
    assert!(street.blob_check.is_some(), "the relay checks blobs");
    // Each event names its blobs honestly (their real hashes and sizes); but one "photo" is
    // text, and one is a camera JPEG that skipped the pipeline (EXIF with GPS and an Artist).
    let camera = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/photos/street-640x427-gps.jpg"),
    )
    .expect("fixture");
    let text = FakePhoto {
        photo: b"GPS 39.8927N 116.4284E; not a photo at all\n".repeat(50),
        thumb: FakePhoto::fixture("plain-512.png").thumb,
        size: (512, 512),
    };
    let raw = FakePhoto {
        photo: camera,
        thumb: FakePhoto::fixture("cat-2400x1600-rot8.jpg").thumb,
        size: (640, 427),
    };
    let real = FakePhoto::fixture("street-640x427-gps.jpg");
    dev.report(
        GRID,
        "Bags piled by the east gate",
        &[text.clone(), raw.clone(), real.clone()],
        T0 + 1_000,
    );

    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(
        out.finished(),
        "a refused blob does not end the session: {:?}",
        out.end
    );
    let refusals = blob_refusal_messages(&out);
    assert_eq!(
        refusals,
        [
            (
                text.hash(),
                ErrorCode::BlobMismatch,
                "not a photo gridsync stores: not a JPEG image".to_owned()
            ),
            (
                raw.hash(),
                ErrorCode::BlobMismatch,
                "not a photo gridsync stores: an APP1 segment (EXIF or XMP metadata) at byte 20; stored photos carry no metadata".to_owned()
            ),
        ]
    );
    assert_eq!(ErrorCode::BlobMismatch.as_u16(), 10);
    // Four stored (three thumbnails and the real photo), two refused.
    assert_eq!((out.summary.blobs_up, out.summary.blobs_refused), (4, 2));
    // Nothing of the refused ones is stored, not even a partial: they are wanted from 0.
    for bad in [&text, &raw] {
        assert_eq!(street.store.blob(&bad.hash()).expect("read"), None);
        assert_eq!(
            street.store.blob_state(&bad.hash()).expect("state"),
            BlobState::Missing
        );
    }
    // The real photo and every (real) thumbnail went through.
    assert_blobs_held(&street, std::slice::from_ref(&real));
    for p in [&text, &raw] {
        assert_eq!(
            street.store.blob(&p.thumb_hash()).expect("read").as_ref(),
            Some(&p.thumb)
        );
    }
    let pending = dev.store.pending(&dev.id).expect("pending");
    assert_eq!(
        (pending.events, pending.blobs),
        (0, 2),
        "the device keeps both"
    );

    // They are offered again next time, and refused again; still nothing is stored.
    sim.advance(60_000);
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    let again: Vec<_> = blob_refusal_messages(&out)
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(again, [text.hash(), raw.hash()]);
    assert_eq!(street.store.blob(&text.hash()).expect("read"), None);
    assert_eq!(street.store.blob(&raw.hash()).expect("read"), None);
}

#[test]
fn a_device_not_enrolled_is_refused() {
    let mut sim = Sim::new(T0 + 10_000);
    let mut dev = device(7, "patrol-7");
    let mut street = street();
    dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert_eq!(
        refused_code(&out),
        Some(ErrorCode::NotEnrolled),
        "{:?}",
        out.end
    );
    assert_eq!(
        out.server_end.as_ref().map(|e| e.0),
        Some(ErrorCode::NotEnrolled)
    );
    assert_eq!(out.sent_names(Dir::Down), ["Error"]);
    assert_eq!(street.store.counts().expect("counts").events, 0);

    // Revoked is the same as never enrolled.
    street.enroll(&dev, GRID, T0);
    street.store.revoke(&dev.id, T0 + 5_000).expect("revoke");
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert_eq!(refused_code(&out), Some(ErrorCode::NotEnrolled));
}

#[test]
fn a_hello_naming_another_node_or_role_than_enrolled_is_refused() {
    let (mut sim, mut dev, mut street) = an_enrolled_device();
    dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);

    // The TLS certificate proved another node than the Hello names.
    let imposter = NodeId([99; 32]);
    let (client, server) = (dev.client_config(&street), street.server_config());
    let out = sim.run(
        &mut dev.store,
        client.clone(),
        &mut street.store,
        server.clone(),
        imposter,
        &[],
    );
    assert_eq!(
        refused_code(&out),
        Some(ErrorCode::WrongRole),
        "{:?}",
        out.end
    );

    // The right node, claiming to be a street relay.
    let out = sim.run(
        &mut dev.store,
        ClientConfig {
            role: Role::Street,
            ..client
        },
        &mut street.store,
        server,
        dev.id,
        &[],
    );
    assert_eq!(
        refused_code(&out),
        Some(ErrorCode::WrongRole),
        "{:?}",
        out.end
    );
    assert_eq!(street.store.counts().expect("counts").events, 0);
}

/// The Hello `dev` sends, as a frame.
fn hello_frame(dev: &Node) -> Vec<u8> {
    gridsync_proto::frame::encode(&Message::Hello {
        versions: gridsync_proto::VERSIONS.to_vec(),
        node: dev.id,
        role: dev.role,
        name: dev.name.clone(),
    })
    .expect("encode")
}

fn events_frame(batch: u64, events: &[Event]) -> Vec<u8> {
    gridsync_proto::frame::encode(&Message::Events {
        batch,
        events: events
            .iter()
            .map(|e| codec::encode_event(e).expect("encode"))
            .collect(),
    })
    .expect("encode")
}

#[test]
fn a_device_sending_another_origins_event_or_one_outside_its_grid_is_refused_whole() {
    let mut sim = Sim::new(T0 + 10_000);
    let mut dev = device(7, "patrol-7");
    let mut other = device(8, "patrol-8");
    let mut street = street();
    street.enroll(&dev, GRID, T0);
    dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);
    other.report(GRID, "Flyers on the lamp post", &[], T0 + 1_000);
    let own = dev.events();

    // Its own report, then another device's.
    let batch = [own.clone(), other.events()].concat();
    let got = sim.scripted(
        &mut street,
        dev.id,
        &[hello_frame(&dev), events_frame(1, &batch)],
    );
    assert_eq!(
        got.replies.iter().map(Message::name).collect::<Vec<_>>(),
        ["Welcome", "Error"]
    );
    assert!(matches!(
        got.replies[1],
        Message::Error {
            code: ErrorCode::OutOfScope,
            ..
        }
    ));
    assert_eq!(
        got.server_end.as_ref().map(|e| e.0),
        Some(ErrorCode::OutOfScope)
    );
    assert_eq!(street.store.counts().expect("counts").events, 0);

    // Its own events, the second in another grid.
    dev.report("110101/002/015/01", "Not my grid", &[], T0 + 2_000);
    let batch = dev.events();
    assert_eq!(batch.len(), 2);
    let got = sim.scripted(
        &mut street,
        dev.id,
        &[hello_frame(&dev), events_frame(1, &batch)],
    );
    assert!(
        matches!(
            got.replies.last(),
            Some(Message::Error {
                code: ErrorCode::OutOfScope,
                ..
            })
        ),
        "{:?}",
        got.replies
    );
    assert_eq!(street.store.counts().expect("counts").events, 0);
}

#[test]
fn events_an_hour_ahead_of_the_parents_clock_are_refused_and_nothing_is_stored() {
    let (mut sim, mut dev, mut street) = an_enrolled_device();
    let id = dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);
    // The handheld's clock jumps an hour ahead.
    dev.edit(
        id,
        vec![Change::Comment("More bags".into())],
        &[],
        T0 + 3_600_000,
    );
    let out = sim.sync(&mut dev, &mut street, &[]);
    assert_eq!(
        refused_code(&out),
        Some(ErrorCode::ClockAhead),
        "{:?}",
        out.end
    );
    assert_eq!(batches(&out).len(), 1, "both events in one batch");
    assert_eq!(street.store.counts().expect("counts").events, 0);
    assert_eq!(dev.store.pending(&dev.id).expect("pending").events, 2);
}

/// `ok` with its last event replaced by `bad(last)`, for each way an event can break an
/// admission rule (`gridsync_core::rules`), with the message each must give.
#[allow(clippy::type_complexity)]
fn rule_breakers() -> Vec<(&'static str, Box<dyn Fn(&mut Event)>)> {
    use gridsync_core::{BlobHash, EventId, Payload, PhotoKind, PhotoMeta, Verdict};
    let evaluated = |score| {
        move |e: &mut Event| {
            e.payload = Payload::Evaluated {
                score,
                verdict: Verdict::Satisfied,
                pred: vec![],
            }
        }
    };
    vec![
        ("score 0 is outside 1..=5", Box::new(evaluated(0))),
        ("score 200 is outside 1..=5", Box::new(evaluated(200))),
        (
            "incident id 00000000-0000-0000-0000-000000000000 is not a UUIDv7",
            Box::new(|e: &mut Event| {
                e.incident = "00000000-0000-0000-0000-000000000000".parse().expect("nil")
            }),
        ),
        (
            "is not a UUIDv7",
            Box::new(|e: &mut Event| {
                e.incident = "0192f0c1-7a2b-4c3d-8e4f-5a6b7c8d9e0f".parse().expect("v4")
            }),
        ),
        (
            "author is empty",
            Box::new(|e: &mut Event| e.author = String::new()),
        ),
        (
            "author is 5000 bytes, over the limit of 128",
            Box::new(|e: &mut Event| e.author = "x".repeat(5_000)),
        ),
        (
            "comment is 8193 bytes, over the limit of 8192",
            Box::new(|e: &mut Event| {
                e.payload = Payload::Commented {
                    text: "x".repeat(8_193),
                }
            }),
        ),
        (
            "photo width is 0",
            Box::new(|e: &mut Event| {
                e.payload = Payload::PhotoAdded(PhotoMeta {
                    hash: BlobHash::of(b"p"),
                    thumb: BlobHash::of(b"t"),
                    kind: PhotoKind::Before,
                    width: 0,
                    height: 10,
                    bytes: 10,
                    captured_at: None,
                })
            }),
        ),
        (
            "pred names 1025 events, over the limit of 1024",
            Box::new(|e: &mut Event| {
                let origin = e.origin;
                e.payload = Payload::StatusChanged {
                    status: Status::Accepted,
                    pred: (1..=1025).map(|seq| EventId { origin, seq }).collect(),
                }
            }),
        ),
    ]
}

#[test]
fn a_batch_with_one_event_breaking_a_rule_is_refused_as_malformed_and_nothing_is_stored() {
    let (mut sim, mut dev, mut street) = an_enrolled_device();
    let id = dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);
    dev.edit(
        id,
        vec![Change::Comment("More bags".into())],
        &[],
        T0 + 2_000,
    );
    let ok = dev.events();
    assert_eq!(ok.len(), 2);
    for (want, breaks) in rule_breakers() {
        let mut batch = ok.clone();
        breaks(&mut batch[1]);
        let got = sim.scripted(
            &mut street,
            dev.id,
            &[hello_frame(&dev), events_frame(1, &batch)],
        );
        let Some(Message::Error { code, message }) = got.replies.last() else {
            panic!("{want}: no Error in {:?}", got.replies);
        };
        assert_eq!(*code, ErrorCode::Malformed, "{want}: {message}");
        let prefix = format!("batch 1, event 1 ({}/2): ", dev.id.short());
        assert!(
            message.starts_with(&prefix) && message.contains(want),
            "{want}: {message}"
        );
        assert_eq!(
            got.server_end.as_ref().map(|e| e.0),
            Some(ErrorCode::Malformed)
        );
        assert_eq!(got.committed, 0);
        assert_eq!(street.store.counts().expect("counts").events, 0, "{want}");
    }
    // The same batch unbroken is taken.
    assert!(sim.sync(&mut dev, &mut street, &[]).finished());
    assert_eq!(street.store.counts().expect("counts").events, 2);
}

#[test]
fn a_download_page_with_one_event_breaking_a_rule_is_refused_as_malformed_and_nothing_is_stored() {
    for (want, breaks) in rule_breakers() {
        let mut sim = Sim::new(T0 + 10_000);
        let mut street = street();
        let mut a = device(7, "patrol-7");
        let mut b = device(8, "patrol-8");
        street.enroll(&a, GRID, T0);
        street.enroll(&b, GRID, T0);
        let x = b.report(GRID, "Flyers on the lamp post", &[], T0 + 1_000);
        b.edit(
            x,
            vec![Change::Comment("Still there".into())],
            &[],
            T0 + 2_000,
        );
        assert!(sim.sync(&mut b, &mut street, &[]).finished());
        // An event the street holds without having checked it (stored before admission
        // checked the rules, or by a broken relay), after two good ones: written as the
        // store writes its own events, the one path admission does not guard.
        let mut bad = b.events()[1].clone();
        bad.seq = 3;
        breaks(&mut bad);
        street
            .store
            .append(&[bad], &[], None)
            .expect("stored unchecked");
        assert_eq!(street.store.counts().expect("counts").events, 3);

        let out = sim.sync(&mut a, &mut street, &[]);
        match &out.end {
            End::Failed(e @ SessionError::Malformed(why)) => {
                assert_eq!(e.code(), ErrorCode::Malformed);
                let prefix = format!("downloaded event 2 ({}/3): ", b.id.short());
                assert!(
                    why.starts_with(&prefix) && why.contains(want),
                    "{want}: {why}"
                );
            }
            other => panic!("{want}: expected a malformed page, got {other:?}"),
        }
        assert!(
            out.sent(Dir::Up).iter().any(|m| matches!(
                m,
                Message::Error {
                    code: ErrorCode::Malformed,
                    ..
                }
            )),
            "the child tells the parent why"
        );
        assert_eq!(a.store.counts().expect("counts").events, 0, "{want}");
        assert_eq!(a.store.down_cursor(&street.id).expect("cursor"), 0);
    }
}

#[test]
fn a_hello_with_no_common_version_is_refused() {
    let mut sim = Sim::new(T0 + 10_000);
    let dev = device(7, "patrol-7");
    let mut street = street();
    street.enroll(&dev, GRID, T0);
    let hello = gridsync_proto::frame::encode(&Message::Hello {
        versions: vec![99],
        node: dev.id,
        role: Role::Device,
        name: dev.name.clone(),
    })
    .expect("encode");
    let got = sim.scripted(&mut street, dev.id, &[hello]);
    assert!(
        matches!(
            got.replies[..],
            [Message::Error {
                code: ErrorCode::Version,
                ..
            }]
        ),
        "{:?}",
        got.replies
    );
    assert_eq!(
        got.server_end.as_ref().map(|e| e.0),
        Some(ErrorCode::Version)
    );
}

// ---- 9. timeouts -------------------------------------------------------------------------

#[test]
fn a_parent_that_never_answers_times_the_session_out() {
    // The state machine alone: nothing before the deadline, then an Error and the failure.
    let dev = device(7, "patrol-7");
    let street = street();
    let mut s = ClientSession::new(dev.client_config(&street));
    s.start(T0);
    assert_eq!(s.poll_timeout(), Some(T0 + RESPONSE_TIMEOUT_MS));
    assert!(s.handle_timeout(T0 + RESPONSE_TIMEOUT_MS - 1).is_empty());
    let actions = s.handle_timeout(T0 + RESPONSE_TIMEOUT_MS);
    assert!(matches!(
        actions[..],
        [
            ClientAction::Send(Message::Error {
                code: ErrorCode::Timeout,
                ..
            }),
            ClientAction::Failed(SessionError::Timeout(RESPONSE_TIMEOUT_MS))
        ]
    ));
    assert!(s.is_ended() && s.poll_timeout().is_none());

    // Over the link: the parent hears the Hello, but nothing it says arrives.
    let mut sim = Sim::new(T0);
    let mut dev = device(7, "patrol-7");
    let mut street = street;
    street.enroll(&dev, GRID, T0);
    dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);
    sim.advance(10_000);
    let out = sim.sync(
        &mut dev,
        &mut street,
        &[Fault::Stall {
            dir: Dir::Down,
            after: 0,
        }],
    );
    assert_eq!(
        out.end,
        End::Failed(SessionError::Timeout(RESPONSE_TIMEOUT_MS))
    );
    let hello_at = out.steps[0].at_ms;
    assert_eq!(out.timed_out_at, Some(hello_at + RESPONSE_TIMEOUT_MS));
    assert_eq!(out.sent_names(Dir::Up), ["Hello", "Error"]);
    assert!(matches!(
        out.sent(Dir::Up)[1],
        Message::Error {
            code: ErrorCode::Timeout,
            ..
        }
    ));
    // The parent got the Error and ended its side too.
    assert_eq!(
        out.server_end.as_ref().map(|e| e.0),
        Some(ErrorCode::Timeout)
    );
}

#[test]
fn acks_that_never_arrive_time_out_and_the_next_session_sends_nothing_twice() {
    let Busy {
        mut sim,
        mut dev,
        mut street,
        ..
    } = busy_device();
    // The Welcome arrives; after it, nothing from the parent does.
    let out = sim.sync(
        &mut dev,
        &mut street,
        &[Fault::Stall {
            dir: Dir::Down,
            after: 1,
        }],
    );
    assert_eq!(
        out.end,
        End::Failed(SessionError::Timeout(RESPONSE_TIMEOUT_MS))
    );
    let welcomed_at = out
        .steps
        .iter()
        .find(|s| s.kind == StepKind::Delivered && s.msg.name() == "Welcome")
        .expect("welcome")
        .at_ms;
    assert_eq!(out.timed_out_at, Some(welcomed_at + RESPONSE_TIMEOUT_MS));
    // All three batches reached the parent and were committed; the child knows of none.
    assert_eq!(out.committed, 600);
    assert_eq!(out.summary.events_up, 0);
    assert_eq!(dev.store.pending(&dev.id).expect("pending").events, 600);

    let out = sim.sync(&mut dev, &mut street, &[]);
    assert!(out.finished(), "{:?}", out.end);
    assert!(batches(&out).is_empty(), "the heads cover everything");
    assert_eq!(out.summary.blobs_up, 6);
    assert_eq!(street.views(), dev.views());
    // The Welcome's head told the device what the lost Acks would have.
    assert_eq!(
        dev.store.pending(&dev.id).expect("pending"),
        nothing_pending()
    );
}

// ---- 10. device → street → district and back --------------------------------------------

#[test]
fn a_conflict_between_a_device_and_the_district_converges_on_all_three_nodes() {
    let mut sim = Sim::new(T0 + 10_000);
    let mut dev = device(7, "patrol-7");
    let mut street = street();
    let mut district = Node::new(30, "district-110101", Role::District);
    street.enroll(&dev, GRID, T0);
    district.enroll(&street, STREET_SCOPE, T0);
    let photo = FakePhoto::new(4, 50_000, 3_000);
    let id = dev.report(
        GRID,
        "Bags by the gate",
        std::slice::from_ref(&photo),
        T0 + 1_000,
    );

    assert!(sim.sync(&mut dev, &mut street, &[]).finished());
    let up = sim.sync(&mut street, &mut district, &[]);
    assert!(up.finished(), "{:?}", up.end);
    assert_eq!((up.summary.events_up, up.summary.blobs_up), (2, 2));
    assert_blobs_held(&district, std::slice::from_ref(&photo));

    // Offline and concurrent: the device and the district both rewrite the description.
    dev.edit(
        id,
        vec![Change::Description("Six bags by the east gate".into())],
        &[],
        T0 + 30_000,
    );
    district.edit(
        id,
        vec![
            Change::Description("Bags and a broken chair by the gate".into()),
            Change::Status(Status::Accepted),
        ],
        &[],
        T0 + 35_000,
    );
    sim.advance(60_000);

    let d1 = sim.sync(&mut dev, &mut street, &[]);
    assert_eq!((d1.summary.events_up, d1.summary.events_down), (1, 0));
    let s1 = sim.sync(&mut street, &mut district, &[]);
    assert!(s1.finished(), "{:?}", s1.end);
    assert_eq!((s1.summary.events_up, s1.summary.events_down), (1, 2));
    let d2 = sim.sync(&mut dev, &mut street, &[]);
    assert_eq!((d2.summary.events_up, d2.summary.events_down), (0, 2));

    let views = [dev.views(), street.views(), district.views()];
    assert_eq!(views[0], views[1], "device and street differ");
    assert_eq!(views[1], views[2], "street and district differ");
    let incident = &views[0][id.to_string()];
    assert_eq!(incident["event_count"], 5);
    assert_eq!(incident["status"], "accepted");
    let conflicts = incident["conflicts"].as_array().expect("conflicts");
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["field"], "description");
    // The district's write is stamped later: it wins, the device's stays visible.
    assert_eq!(conflicts[0]["kept"], "Bags and a broken chair by the gate");
    assert_eq!(conflicts[0]["lost"], "Six bags by the east gate");
    assert_eq!(conflicts[0]["lost_by"], "patrol-7");
    assert_eq!(
        dev.store.pending(&dev.id).expect("pending"),
        nothing_pending()
    );

    // Everyone is up to date now.
    for (child, parent) in [(0, 1), (1, 2)] {
        let mut nodes = [&mut dev, &mut street, &mut district];
        let (lo, hi) = nodes.split_at_mut(parent);
        let out = sim.sync(&mut *lo[child], &mut *hi[0], &[]);
        assert!(out.finished());
        assert_eq!(
            (
                out.summary.events_up,
                out.summary.events_down,
                out.summary.blobs_up
            ),
            (0, 0, 0)
        );
    }
}

/// Agreement is not a conflict (EVENTS.md, "Merge"): a street and the district that both
/// accept a case during a network cut end with the case accepted on all three nodes and no
/// `status` conflict listed, while a real disagreement (the description) still shows.
#[test]
fn a_street_and_the_district_accepting_during_a_cut_is_no_conflict() {
    let mut sim = Sim::new(T0 + 10_000);
    let mut dev = device(7, "patrol-7");
    let mut street = street();
    let mut district = Node::new(30, "district-110101", Role::District);
    street.enroll(&dev, GRID, T0);
    district.enroll(&street, STREET_SCOPE, T0);
    let id = dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);
    assert!(sim.sync(&mut dev, &mut street, &[]).finished());
    assert!(sim.sync(&mut street, &mut district, &[]).finished());

    // The cut: both platforms accept; they also word the description differently.
    street.edit(
        id,
        vec![
            Change::Status(Status::Accepted),
            Change::Description("Bags by the east gate".into()),
        ],
        &[],
        T0 + 30_000,
    );
    district.edit(
        id,
        vec![
            Change::Status(Status::Accepted),
            Change::Description("Bags and a sofa by the gate".into()),
        ],
        &[],
        T0 + 35_000,
    );
    sim.advance(60_000);
    assert!(sim.sync(&mut street, &mut district, &[]).finished());
    assert!(sim.sync(&mut dev, &mut street, &[]).finished());

    let views = [dev.views(), street.views(), district.views()];
    assert_eq!(views[0], views[1], "device and street differ");
    assert_eq!(views[1], views[2], "street and district differ");
    let incident = &views[0][id.to_string()];
    assert_eq!(incident["status"], "accepted");
    let fields: Vec<&str> = incident["conflicts"]
        .as_array()
        .expect("conflicts")
        .iter()
        .map(|c| c["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["description"], "{}", incident["conflicts"]);
}

// ---- 11. random fault schedules ----------------------------------------------------------

mod faults {
    use super::*;
    use gridsync_core::BlobHash;
    use gridsync_proto::client::Summary;
    use proptest::prelude::*;
    use proptest::test_runner::{FileFailurePersistence, RngSeed};

    /// The fixed seed the property starts from (as `crates/core/tests/merge_laws.rs` pins
    /// its own); `PROPTEST_RNG_SEED` and `PROPTEST_CASES` explore further.
    const RNG_SEED: u64 = 0x7365_7373_696F_6E73; // "sessions"

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            rng_seed: RngSeed::Fixed(RNG_SEED),
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/proptest-regressions/session_sim.txt"
            )))),
            ..ProptestConfig::default()
        }
    }

    /// One session of the schedule: what goes wrong, how the lanes interleave, and what the
    /// device and another device (straight at the relay) write before it.
    #[derive(Debug, Clone)]
    struct Round {
        faults: Vec<Fault>,
        interleave: u64,
        dev_writes: usize,
        /// A photo the device adds before the session (seed, size).
        dev_photo: Option<(u64, usize)>,
        other_writes: usize,
    }

    fn dir() -> impl Strategy<Value = Dir> {
        prop_oneof![Just(Dir::Up), Just(Dir::Down)]
    }

    /// A byte position inside a thumbnail (at most 1,500 bytes) or a photo.
    fn blob_offset() -> impl Strategy<Value = u64> {
        prop_oneof![0..1_500u64, 0..20_000u64]
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            3 => (dir(), 1..20usize).prop_map(|(d, n)| Fault::DropAfter(FrameMatch::any(d, n))),
            2 => (dir(), 1..20usize).prop_map(|(d, n)| Fault::DropBefore(FrameMatch::any(d, n))),
            3 => (dir(), 1..20usize).prop_map(|(d, n)| Fault::Duplicate(FrameMatch::any(d, n))),
            1 => (dir(), 0..15usize).prop_map(|(dir, after)| Fault::Stall { dir, after }),
            3 => (1..4usize, blob_offset())
                .prop_map(|(n, after)| Fault::CutBlob { blob: BlobMatch::Nth(n), after }),
            3 => (1..4usize, blob_offset())
                .prop_map(|(n, at)| Fault::CorruptBlob { blob: BlobMatch::Nth(n), at }),
        ]
    }

    fn round() -> impl Strategy<Value = Round> {
        (
            proptest::collection::vec(fault(), 0..3),
            any::<u64>(),
            prop_oneof![1 => Just(0usize), 1 => 1..6usize],
            proptest::option::weighted(0.3, (any::<u64>(), 1_000..20_000usize)),
            prop_oneof![1 => Just(0usize), 1 => 1..6usize],
        )
            .prop_map(
                |(faults, interleave, dev_writes, dev_photo, other_writes)| Round {
                    faults,
                    interleave,
                    dev_writes,
                    dev_photo,
                    other_writes,
                },
            )
    }

    /// What the relay must hold of the device's blobs whatever happened: every blob the
    /// device believes sent, byte for byte; and never more of the device's events acknowledged
    /// than the relay holds.
    fn check_safety(dev: &Node, street: &Node, photos: &[FakePhoto]) {
        let acked = dev.store.cursor(UPSTREAM, ACKED_OWN_SEQ).expect("cursor");
        let held = street.store.contiguous(&dev.id).expect("contiguous");
        assert!(
            acked <= held,
            "device thinks {acked} acked, relay holds {held}"
        );
        let unsent: Vec<BlobHash> = dev
            .store
            .unsent_blobs(&street.id, 100)
            .expect("unsent")
            .iter()
            .map(|b| b.hash)
            .collect();
        for p in photos {
            for bytes in [&p.photo, &p.thumb] {
                let hash = BlobHash::of(bytes);
                let there = street.store.blob(&hash).expect("read blob");
                if let Some(there) = &there {
                    assert_eq!(there, bytes);
                }
                if !unsent.contains(&hash) {
                    assert!(there.is_some(), "blob {hash} marked sent but not held");
                }
            }
        }
    }

    fn add(total: &mut Summary, s: &Summary) {
        total.events_up += s.events_up;
        total.events_dup += s.events_dup;
        total.events_down += s.events_down;
        total.blobs_up += s.blobs_up;
    }

    fn converge(
        own_events: usize,
        max_batch: u32,
        window: u32,
        rounds: Vec<Round>,
    ) -> Result<(), TestCaseError> {
        let mut sim = Sim::new(T0 + 10_000);
        sim.chunk = 4096;
        let mut dev = device(7, "patrol-7");
        let mut other = device(8, "patrol-8");
        let mut street = street();
        street.limits.max_batch_events = max_batch;
        street.limits.window = window;
        street.enroll(&dev, GRID, T0);
        street.enroll(&other, GRID, T0);
        let mut photos = vec![
            FakePhoto::new(11, 18_000, 1_500),
            FakePhoto::new(12, 9_000, 1_200),
        ];
        let a = dev.report(GRID, "Bags by the gate", &photos[..1], T0 + 1_000);
        dev.busy_edits(a, own_events, T0 + 2_000);
        let b = dev.report(GRID, "Bins overflowing", &photos[1..], T0 + 3_000);
        let x = other.report(GRID, "Flyers on the lamp post", &[], T0 + 1_500);
        other.busy_edits(x, 10, T0 + 2_500);
        street
            .store
            .commit(&admit_from(other.id, &other.events(), sim.now_ms).expect("admitted"))
            .expect("commit");

        let mut committed = 0;
        let mut total = Summary::default();
        let mut at = T0 + 5_000;
        for round in &rounds {
            if round.dev_writes > 0 {
                at += 1_000;
                dev.busy_edits(b, round.dev_writes, at);
            }
            if let Some((seed, size)) = round.dev_photo {
                at += 1_000;
                let photo = FakePhoto::new(seed, size, 700);
                dev.edit(b, vec![], std::slice::from_ref(&photo), at);
                photos.push(photo);
            }
            if round.other_writes > 0 {
                at += 1_000;
                let before = other.events().len();
                other.busy_edits(x, round.other_writes, at);
                let new = other.events().split_off(before);
                street
                    .store
                    .commit(&admit_from(other.id, &new, sim.now_ms).expect("admitted"))
                    .expect("commit");
            }
            sim.interleave = Interleave::Seeded(round.interleave);
            let out = sim.sync(&mut dev, &mut street, &round.faults);
            committed += out.committed;
            add(&mut total, &out.summary);
            // The relay sees an event twice only when the link delivered it twice.
            prop_assert!(
                out.stats.events_duplicate <= out.duplicated_events,
                "{} duplicates, {} injected",
                out.stats.events_duplicate,
                out.duplicated_events
            );
            prop_assert!(out.end != End::Stalled, "stalled: {:?}", out.steps.last());
            check_safety(&dev, &street, &photos);
            sim.advance(1_000);
        }

        // A clean session finishes and leaves both sides converged, unless a partial blob
        // holds bytes corrupted before its stream broke: resumed, it fails its hash, is
        // discarded, and the next clean session sends it whole.
        sim.interleave = Interleave::RoundRobin;
        for clean in 1.. {
            prop_assert!(clean <= 2, "not converged after two clean sessions");
            let partial: Vec<BlobHash> = photos
                .iter()
                .flat_map(|p| [p.hash(), p.thumb_hash()])
                .filter(|h| {
                    matches!(
                        street.store.blob_state(h).expect("state"),
                        BlobState::Partial { .. }
                    )
                })
                .collect();
            let out = sim.sync(&mut dev, &mut street, &[]);
            prop_assert_eq!(&out.end, &End::Finished);
            // The heads keep what the relay holds from being sent again.
            prop_assert_eq!(out.stats.events_duplicate, 0);
            committed += out.committed;
            add(&mut total, &out.summary);
            check_safety(&dev, &street, &photos);
            let refused: Vec<BlobHash> = out
                .delivered(Dir::Down)
                .into_iter()
                .filter_map(|m| match m {
                    Message::BlobRefused { hash, .. } => Some(*hash),
                    _ => None,
                })
                .collect();
            prop_assert!(
                refused.iter().all(|h| partial.contains(h)),
                "a whole clean stream was refused: {:?}",
                refused
            );
            if refused.is_empty() {
                break;
            }
        }

        let dev_events: Vec<Event> = dev
            .events()
            .into_iter()
            .filter(|e| e.origin == dev.id)
            .collect();
        let other_events = other.events();
        // Each of the device's events stored at the relay exactly once; each of the other's
        // downloaded exactly once.
        prop_assert_eq!(committed, dev_events.len() as u64);
        prop_assert_eq!(total.events_down, other_events.len() as u64);
        prop_assert!(total.events_up <= committed);
        let mut both = [dev_events.clone(), other_events.clone()].concat();
        both.sort_by_key(|e| (e.origin, e.seq));
        prop_assert_eq!(street.events(), both.clone());
        prop_assert_eq!(dev.events(), both);
        prop_assert_eq!(street.views(), dev.views());
        assert_blobs_held(&street, &photos);
        prop_assert_eq!(
            dev.store.pending(&dev.id).expect("pending"),
            nothing_pending()
        );

        // And the next one has nothing to do.
        let out = sim.sync(&mut dev, &mut street, &[]);
        prop_assert!(out.finished());
        prop_assert_eq!(out.sent_names(Dir::Up), ["Hello", "Pull", "Bye"]);
        Ok(())
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn any_fault_schedule_converges_with_each_event_stored_once(
            own_events in 5..60usize,
            max_batch in 1..9u32,
            window in 1..5u32,
            rounds in proptest::collection::vec(round(), 1..5),
        ) {
            converge(own_events, max_batch, window, rounds)?;
        }
    }
}

// ---- the child's own checks ----------------------------------------------------------

#[test]
fn a_device_whose_own_event_lies_outside_its_enrolled_grid_fails_clearly() {
    let mut sim = Sim::new(T0 + 10_000);
    let mut dev = device(7, "patrol-7");
    let mut street = street();
    // Enrolled for another grid than the one it reports in.
    street.enroll(&dev, "110101/002/015/01", T0);
    dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);
    let out = sim.sync(&mut dev, &mut street, &[]);
    match &out.end {
        End::Failed(SessionError::OutOfScope(why)) => {
            assert!(
                why.contains(GRID) && why.contains("110101/002/015/01"),
                "{why}"
            );
        }
        other => panic!("expected an out-of-scope failure, got {other:?}"),
    }
    assert_eq!(street.store.counts().expect("counts").events, 0);
}

#[test]
fn an_event_over_the_size_limit_is_refused_and_nothing_is_stored() {
    let (mut sim, mut dev, mut street) = an_enrolled_device();
    dev.report(GRID, "Bags by the gate", &[], T0 + 1_000);
    let mut big = dev.events();
    // Pad the author far past any real event: the parent refuses the body by its size alone.
    big[0].author = "x".repeat(gridsync_proto::MAX_EVENT_BYTES);
    let got = sim.scripted(
        &mut street,
        dev.id,
        &[hello_frame(&dev), events_frame(1, &big)],
    );
    assert!(
        matches!(
            got.replies.last(),
            Some(Message::Error {
                code: ErrorCode::TooLarge,
                ..
            })
        ),
        "{:?}",
        got.replies
    );
    assert_eq!(street.store.counts().expect("counts").events, 0);
}
