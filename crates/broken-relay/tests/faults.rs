//! Each fault of `gridsync-broken-relay` is really there, and nothing else changes: the same
//! steps against `GRIDSYNC_BROKEN=none` (the real relay's behaviour) and against the fault,
//! through a real device sync where a well-behaved client shows it, and through raw frames
//! where only a hostile one can (a forged origin, a frame over the limit).

mod common;

use common::*;
use gridsync_core::{codec, Category, Event, Hlc, IncidentId, Payload, Report, Severity};
use gridsync_proto::{frame, ErrorCode, Message, MAX_FRAME};

fn error_code(msg: &Message) -> Option<ErrorCode> {
    match msg {
        Message::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// A device reports and syncs; the relay holds its event after a clean shutdown; a session
/// open at shutdown ends with `ShuttingDown`.
async fn a_device_syncs_and_the_relay_keeps_it(mode: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, id) = init_street(dir.path());
    let mut dev = device(dir.path(), &db, "patrol-7", GRID_A);
    report(&mut dev, "Bags piled by the east gate");
    let relay = Relay::start(&db, mode);
    assert_eq!(relay.id, id, "run prints the node id init printed");
    let r = sync(&dev, &relay).await;
    assert_eq!((r.summary.events_up, r.summary.events_down), (1, 0));

    let mut raw = Raw::connect(dev.store().path(), &relay).await;
    let (heads, limits) = raw.hello().await;
    assert_eq!(head_of(&heads, dev.node_id()), 1);
    let expected_frame = if mode == "no-frame-limit" {
        u32::MAX
    } else {
        MAX_FRAME
    };
    assert_eq!(limits.max_frame, expected_frame);
    let status = relay.terminate();
    assert_eq!(
        raw.ended_with().await,
        Some(ErrorCode::ShuttingDown),
        "{mode}"
    );
    assert!(status.success(), "{mode}: exit {status}");
    assert_eq!(held(&db), [(dev.node_id(), 1)], "{mode}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fault_a_device_syncs_and_the_relay_keeps_it() {
    a_device_syncs_and_the_relay_keeps_it("none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_still_serves_a_plain_sync() {
    for mode in [
        "ack-before-commit",
        "forged-origin",
        "no-frame-limit",
        "leak-scope",
    ] {
        a_device_syncs_and_the_relay_keeps_it(mode).await;
    }
}

#[test]
fn the_command_line_is_the_real_relays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, _) = init_street(dir.path());
    let street = gridsync_device::Device::init_node(
        &dir.path().join("other.db"),
        "street-003",
        "street",
        "",
        gridsync_device::SystemEnv,
    )
    .expect("another relay")
    .node_id()
    .to_hex();
    let out = ok(
        &db,
        &["enroll", &street, "--relay", "--scope", "110101/003"],
    );
    assert_eq!(
        out.trim(),
        format!("enrolled street {street} for 110101/003")
    );
    let out = ok(&db, &["revoke", &street]);
    assert_eq!(
        out.trim(),
        format!("revoked {street}; its next session is refused")
    );
    let e = fails(&db, "none", &["revoke", &street]);
    assert!(e.contains("already revoked"), "{e}");
    let e = fails(&db, "none", &["enroll", &street, "--grid", "nonsense"]);
    assert!(e.starts_with("gridsync-broken-relay: error:"), "{e}");
    let e = fails(
        &db,
        "ack_before_commit",
        &["run", "--listen", "127.0.0.1:0"],
    );
    assert!(e.contains("GRIDSYNC_BROKEN"), "{e}");
    let e = fails(
        &dir.path().join("none.db"),
        "none",
        &["run", "--listen", "127.0.0.1:0"],
    );
    assert!(e.starts_with("gridsync-broken-relay: error:"), "{e}");
}

/// A batch acknowledged, then SIGKILL at once; returns the device's head after a restart.
async fn head_after_kill_right_after_ack(mode: &str) -> u64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, _) = init_street(dir.path());
    let mut dev = device(dir.path(), &db, "patrol-7", GRID_A);
    report(&mut dev, "Bags piled by the east gate");
    report(&mut dev, "Stray cat in the bicycle shed");
    let events = own_events(&dev);

    let relay = Relay::start(&db, mode);
    let mut raw = Raw::connect(dev.store().path(), &relay).await;
    let (heads, _) = raw.hello().await;
    assert_eq!(head_of(&heads, dev.node_id()), 0);
    let ack = raw.upload(1, &events).await;
    assert_eq!(
        ack,
        Message::Ack {
            batch: 1,
            stored: 2,
            duplicates: 0
        },
        "{mode}"
    );
    relay.kill();

    let relay = Relay::start(&db, mode);
    let mut raw = Raw::connect(dev.store().path(), &relay).await;
    let (heads, _) = raw.hello().await;
    let head = head_of(&heads, dev.node_id());
    raw.bye().await;
    // Whatever was lost, a plain sync brings it (again) and it stays.
    let r = sync(&dev, &relay).await;
    assert_eq!(r.summary.events_up + r.summary.events_dup, 2 - head);
    assert!(relay.terminate().success());
    assert_eq!(held(&db).len(), 2, "{mode}");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_before_commit_loses_an_acknowledged_batch_in_a_crash() {
    assert_eq!(head_after_kill_right_after_ack("none").await, 2);
    assert_eq!(
        head_after_kill_right_after_ack("ack-before-commit").await,
        0
    );
}

/// A device uploads an event of another device of its grid; returns the answer.
async fn answer_to_a_forged_origin(mode: &str) -> (Message, Message) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, _) = init_street(dir.path());
    let dev = device(dir.path(), &db, "patrol-7", GRID_A);
    let mut other = device(dir.path(), &db, "patrol-8", GRID_A);
    report(&mut other, "Bags piled by the east gate");
    let forged = own_events(&other);
    assert_ne!(forged[0].origin, dev.node_id());

    let relay = Relay::start(&db, mode);
    let mut raw = Raw::connect(dev.store().path(), &relay).await;
    raw.hello().await;
    let answer = raw.upload(1, &forged).await;
    // Outside the grid: refused by every mode (the scope check is untouched).
    let mut raw = Raw::connect(dev.store().path(), &relay).await;
    raw.hello().await;
    let mut outside = forged[0].clone();
    outside.grid = GRID_B.parse().expect("grid");
    outside.seq = 2;
    outside
        .sign(&secret_of(other.store().path()))
        .expect("the other device's key");
    let outside_answer = raw.upload(1, &[outside]).await;
    assert!(relay.terminate().success());
    (answer, outside_answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_origin_acknowledges_another_devices_event() {
    let (answer, outside) = answer_to_a_forged_origin("none").await;
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::OutOfScope),
        "{answer:?}"
    );
    assert_eq!(error_code(&outside), Some(ErrorCode::OutOfScope));
    let (answer, outside) = answer_to_a_forged_origin("forged-origin").await;
    assert_eq!(
        answer,
        Message::Ack {
            batch: 1,
            stored: 1,
            duplicates: 0
        }
    );
    assert_eq!(error_code(&outside), Some(ErrorCode::OutOfScope));
}

/// `n` reports of `origin` (seq 1..=n), each with a description of `bytes` bytes.
/// `n` reports of about `bytes` bytes each, signed with `secret` (the origin's key).
fn big_events(secret: &[u8; 32], n: u64, bytes: usize) -> Vec<Event> {
    let origin = gridsync_core::NodeId::from_secret(secret);
    let now = gridsync_net::now_ms();
    (1..=n)
        .map(|seq| {
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&seq.to_le_bytes());
            let mut e = Event {
                origin,
                seq,
                hlc: Hlc::new(now, u32::try_from(seq).expect("small")),
                incident: IncidentId::new_v7(now, random),
                grid: GRID_A.parse().expect("grid"),
                author: "patrol-7".into(),
                payload: Payload::Reported(Report {
                    category: Category::from_catalogue("garbage").expect("category"),
                    description: "x".repeat(bytes),
                    location: None,
                    observed_at: None,
                    severity: Severity::Normal,
                }),
                signature: None,
            };
            e.sign(secret).expect("the origin's key");
            e
        })
        .collect()
}

/// The frame `frame::encode` would make of `Events { batch, events }`, but with no size
/// limit: written out by PROTOCOL.md §5 (variant 3, varint batch and lengths) rather than by
/// bincode, which only the core codec uses.
fn events_frame_of_any_size(batch: u8, events: &[Vec<u8>]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, n: usize) {
        match n {
            0..=250 => out.push(n as u8),
            251..=0xffff => {
                out.push(0xfb);
                out.extend((n as u16).to_le_bytes());
            }
            _ => {
                out.push(0xfc);
                out.extend((n as u32).to_le_bytes());
            }
        }
    }
    assert!(batch < 251);
    let mut body = vec![codec::FORMAT_V1, 3, batch];
    varint(&mut body, events.len());
    for e in events {
        varint(&mut body, e.len());
        body.extend_from_slice(e);
    }
    let mut out = u32::try_from(body.len())
        .expect("fits")
        .to_be_bytes()
        .to_vec();
    out.extend(body);
    out
}

/// A device sends one `Events` frame of over 4 MiB of valid events (510 events of 8 KiB,
/// each within every admission rule, under the 512-event batch limit); returns the answer.
async fn answer_to_a_frame_over_4_mib(mode: &str) -> Message {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, _) = init_street(dir.path());
    let dev = device(dir.path(), &db, "patrol-7", GRID_A);
    let events = big_events(&secret_of(dev.store().path()), 510, 8192);
    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(|e| codec::encode_event(e).expect("encodes"))
        .collect();
    let msg = Message::Events {
        batch: 1,
        events: encoded.clone(),
    };
    let bytes = events_frame_of_any_size(1, &encoded);
    assert!(bytes.len() > frame::MAX_FRAME as usize + 4);
    assert!(frame::encode(&msg).is_err(), "too large for the encoder");
    // The hand-made frame is the encoder's, for a message the encoder accepts.
    let small = Message::Events {
        batch: 1,
        events: encoded[..1].to_vec(),
    };
    assert_eq!(
        events_frame_of_any_size(1, &encoded[..1]),
        frame::encode(&small).expect("encodes")
    );

    let relay = Relay::start(&db, mode);
    let mut raw = Raw::connect(dev.store().path(), &relay).await;
    raw.hello().await;
    let (_written, answer) = raw.send_raw_and_next(&bytes).await;
    assert!(relay.terminate().success());
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_frame_limit_accepts_a_frame_over_the_limit() {
    let answer = answer_to_a_frame_over_4_mib("none").await;
    assert_eq!(error_code(&answer), Some(ErrorCode::TooLarge), "{answer:?}");
    let answer = answer_to_a_frame_over_4_mib("no-frame-limit").await;
    assert_eq!(
        answer,
        Message::Ack {
            batch: 1,
            stored: 510,
            duplicates: 0
        }
    );
}

/// Devices of grids A and B report and sync (A first); returns B's sync result and the grids
/// of what a raw `Pull` of B's gets.
async fn what_grid_b_downloads(mode: &str) -> (Result<u64, String>, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, _) = init_street(dir.path());
    let mut a = device(dir.path(), &db, "patrol-a", GRID_A);
    let mut b = device(dir.path(), &db, "patrol-b", GRID_B);
    report(&mut a, "Bags piled by the east gate");
    report(&mut b, "Stray cat in the bicycle shed");
    let relay = Relay::start(&db, mode);
    let r = sync(&a, &relay).await;
    assert_eq!((r.summary.events_up, r.summary.events_down), (1, 0));
    let b_sync = try_sync(&b, &relay).await.map(|r| r.summary.events_down);

    let mut raw = Raw::connect(b.store().path(), &relay).await;
    let (heads, _) = raw.hello().await;
    assert_eq!(head_of(&heads, b.node_id()), 1, "B's upload went through");
    raw.send(&Message::Pull { cursor: 0 }).await;
    let grids = match raw.next().await {
        Message::Down { events, .. } => events
            .iter()
            .map(|e| codec::decode_event(e).expect("decodes").grid.to_string())
            .collect(),
        other => panic!("expected Down, got {other:?}"),
    };
    raw.bye().await;
    assert!(relay.terminate().success());
    assert_eq!(held(&db).len(), 2, "{mode}: both uploads are held");
    (b_sync, grids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_scope_sends_a_device_another_grids_event() {
    let (b_sync, grids) = what_grid_b_downloads("none").await;
    assert_eq!(b_sync, Ok(0));
    assert!(grids.is_empty(), "{grids:?}");
    let (b_sync, grids) = what_grid_b_downloads("leak-scope").await;
    let e = b_sync.expect_err("the device refuses the leaked event");
    assert!(e.contains("outside this node's scope"), "{e}");
    assert_eq!(grids, [GRID_A]);
}
