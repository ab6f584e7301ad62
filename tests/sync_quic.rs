//! Devices, a street relay and the district relay over real loopback QUIC (127.0.0.1, port 0),
//! with real photos: convergence with a conflict, a district outage, an interrupted photo
//! upload, pinning and enrollment refusals, an idempotent resync, and a lossy link (a seeded
//! UDP proxy that drops, duplicates and reorders datagrams). Nothing sleeps for a
//! fixed time: every wait polls a condition with a deadline, and no assertion looks at a clock.

use std::collections::BTreeSet;

use gridsync_core::{BlobHash, Category, Change, IncidentId, Level, NodeId, Severity, Writer};
use gridsync_device::{Device, FixedEnv, NewReport, PhotoInput, SyncTarget};
use gridsync_net::client::SyncOptions;
use gridsync_proto::client::Summary;
use gridsync_proto::{BlobState, Role, SyncStore};
use gridsync_relay::RelayHandle;
use gridsync_scenarios::net::{
    blob_bytes, db, enroll, event_ids, holds_blobs, init_device, init_relay, loopback, now_ms,
    photo, photo_blobs, retry_within, revoke, start_relay, start_relay_on, sync, target, try_sync,
    upstream_of, views_in, wait_until, Impairment, LossyLink,
};
use gridsync_scenarios::sim::FakePhoto;
use gridsync_store::Store;

const STREET: &str = "street-640x427-gps.jpg";
const CAT: &str = "cat-2400x1600-rot8.jpg";
const BIG: &str = "garbage-12mp-rot6.jpg";

const DISTRICT_SCOPE: &str = "110101";
const STREET_SCOPE: &str = "110101/002";
const GRID_A: &str = "110101/002/014/03";
const GRID_B: &str = "110101/002/015/01";

fn report(description: &str, photos: Vec<PhotoInput>) -> NewReport {
    NewReport {
        category: Category::from_catalogue("garbage").expect("category"),
        description: description.into(),
        location: None,
        severity: Severity::Normal,
        observed_at: None,
        photos,
    }
}

/// A district, a street relay enrolled there for [`STREET_SCOPE`], and two devices in two
/// grids of that street enrolled at the street; the stores only (nothing runs yet).
struct World {
    dir: tempfile::TempDir,
    district: std::path::PathBuf,
    street: std::path::PathBuf,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
    street_id: NodeId,
    a_id: NodeId,
    b_id: NodeId,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let district = db(dir.path(), "district");
        let street = db(dir.path(), "street");
        let a = db(dir.path(), "wang-li");
        let b = db(dir.path(), "zhao-min");
        init_relay(&district, "district-110101", "district");
        let street_id = init_relay(&street, "street-002", "street");
        // `gridsync-relay enroll STREET --relay --scope 110101/002` at the district.
        enroll(&district, street_id, Role::Street, STREET_SCOPE);
        let a_id = init_device(&a, "wang-li", GRID_A);
        let b_id = init_device(&b, "zhao-min", GRID_B);
        enroll(&street, a_id, Role::Device, GRID_A);
        enroll(&street, b_id, Role::Device, GRID_B);
        Self {
            dir,
            district,
            street,
            a,
            b,
            street_id,
            a_id,
            b_id,
        }
    }

    /// Starts the district, then the street forwarding to it.
    async fn start(&self) -> (RelayHandle, RelayHandle) {
        let district = start_relay(&self.district, None).await;
        let street = start_relay(&self.street, Some(&district)).await;
        (district, street)
    }
}

fn open(path: &std::path::Path) -> Device {
    Device::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The highest sequence number `node` wrote in its own store.
fn latest_seq(path: &std::path::Path, node: NodeId) -> u64 {
    Store::open(path)
        .expect("open store")
        .next_seq(&node)
        .expect("next seq")
        - 1
}

/// Whether `to` shows every incident of `scope` exactly as `from` does, and holds every blob
/// those incidents name.
fn caught_up(to: &std::path::Path, from: &std::path::Path, scope: &str) -> bool {
    views_in(to, scope) == views_in(from, scope) && holds_blobs(to, &photo_blobs(from))
}

fn hash_of(device: &Device, id: IncidentId, index: usize) -> BlobHash {
    device
        .get(id)
        .expect("get")
        .expect("incident")
        .view()
        .photos[index]
        .hash
        .parse()
        .expect("photo hash")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_street_district_with_a_conflict() {
    let w = World::new();
    let (district, street) = w.start().await;

    // Offline: both devices report with real photos.
    let mut a = open(&w.a);
    let a1 = a
        .report(report("Bags piled by the east gate", vec![photo(STREET)]))
        .expect("a reports");
    let a2 = a
        .report(report("Stray cat in the bicycle shed", vec![photo(CAT)]))
        .expect("a reports again");
    let mut b = open(&w.b);
    let b1 = b
        .report(report("Rubbish by block 3", vec![photo(BIG)]))
        .expect("b reports");

    // A's first sync: the street learns A's incidents (2 reports + 2 photo events; 2 photos
    // and their 2 thumbnails).
    let first = sync(&a, &street).await;
    println!("A's first sync: {:?}", first.summary);
    assert_eq!(first.summary.events_up, 4);
    assert_eq!(first.summary.blobs_up, 4);
    assert_eq!(first.summary.events_down, 0);

    // Concurrently (neither has seen the other's edit): A and the street rewrite the same
    // field. The street's clock runs a minute ahead of A's (inside the 10 minutes a receiver
    // tolerates), so which write wins is decided, not raced: the street's.
    let a_text = "Six bags by the east gate";
    let street_text = "Bags and a broken chair by the east gate";
    a.edit(a1, vec![Change::Description(a_text.into())], vec![])
        .expect("a edits");
    Device::open_with(&w.street, FixedEnv::new(now_ms() + 60_000, 7))
        .expect("open the street's store while it runs")
        .edit(a1, vec![Change::Description(street_text.into())], vec![])
        .expect("the street edits");

    let second = sync(&a, &street).await;
    println!("A's second sync: {:?}", second.summary);
    assert_eq!(second.summary.events_up, 1, "A's edit");
    assert_eq!(second.summary.events_down, 1, "the street's edit");
    let b_first = sync(&b, &street).await;
    println!("B's first sync: {:?}", b_first.summary);
    assert_eq!(b_first.summary.events_up, 2);
    assert_eq!(b_first.summary.blobs_up, 2);
    assert_eq!(
        b_first.summary.events_down, 0,
        "B is sent nothing of A's grid"
    );

    // The street's upstream loop forwards everything to the district.
    wait_until("the district holds everything the street holds", || {
        caught_up(&w.district, &w.street, DISTRICT_SCOPE)
    })
    .await;

    // A district decision on A's incident comes back down through the street.
    open(&w.district)
        .edit(
            a1,
            vec![
                Change::Escalate {
                    level: Level::District,
                    reason: "third report this week".into(),
                },
                Change::Assign {
                    assignee: "sanitation".into(),
                    due: None,
                },
            ],
            vec![],
        )
        .expect("the district decides");
    wait_until("the district's decision reaches the street", || {
        caught_up(&w.street, &w.district, DISTRICT_SCOPE)
    })
    .await;
    let third = sync(&a, &street).await;
    println!("A's third sync: {:?}", third.summary);
    assert_eq!(third.summary.events_up, 0);
    assert_eq!(
        third.summary.events_down, 2,
        "the district's escalation and assignment"
    );

    // A, the street and the district show A's grid identically, conflict included.
    let on_a = views_in(&w.a, GRID_A);
    assert_eq!(
        on_a.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([a1.to_string(), a2.to_string()])
    );
    assert_eq!(on_a, views_in(&w.street, GRID_A), "device A vs the street");
    assert_eq!(
        on_a,
        views_in(&w.district, GRID_A),
        "device A vs the district"
    );
    let view = a.get(a1).expect("get").expect("a1").view();
    assert_eq!(view.description.as_deref(), Some(street_text));
    assert_eq!(view.level, "district");
    assert_eq!(view.assignee.as_deref(), Some("sanitation"));
    assert_eq!(view.conflicts.len(), 1, "{:?}", view.conflicts);
    let conflict = &view.conflicts[0];
    assert_eq!(conflict.field, "description");
    assert_eq!(conflict.kept, serde_json::json!(street_text));
    assert_eq!(conflict.lost, serde_json::json!(a_text));
    assert_eq!(conflict.lost_by, "wang-li");
    assert_eq!(conflict.lost_origin, w.a_id.to_hex());
    // B's grid is the same on B, the street and the district too.
    let on_b = views_in(&w.b, GRID_B);
    assert_eq!(
        on_b.keys().cloned().collect::<Vec<_>>(),
        vec![b1.to_string()]
    );
    assert_eq!(on_b, views_in(&w.district, GRID_B));

    // The district holds every photo and thumbnail of both devices, byte for byte.
    let mut checked = 0;
    for (device, path) in [(&a, &w.a), (&b, &w.b)] {
        for hash in photo_blobs(path) {
            let mine = device.blob(&hash, false).expect("the device's blob");
            let there = blob_bytes(&w.district, &hash).expect("the district holds the blob");
            assert_eq!(BlobHash::of(&there), hash, "SHA-256 at the district");
            assert_eq!(there, mine, "blob {hash}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "3 photos and 3 thumbnails");
    let held = Store::open(&w.district)
        .expect("open")
        .counts()
        .expect("counts");
    println!("district holds: {held:?}");
    assert_eq!(held.blobs, 6);
    assert_eq!(held.incidents, 3);

    // Scope: B never received A's grid, nor A B's.
    assert_eq!(
        b.list()
            .expect("list")
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        vec![b1]
    );
    assert!(views_in(&w.b, GRID_A).is_empty());
    assert!(views_in(&w.a, GRID_B).is_empty());
    let b_events = event_ids(&w.b);
    assert!(b_events.iter().all(|e| e.origin == w.b_id), "{b_events:?}");

    street.stop().await;
    district.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn district_outage_loses_nothing_and_duplicates_nothing() {
    let w = World::new();
    let (district, street) = w.start().await;
    let mut a = open(&w.a);
    let mut b = open(&w.b);
    let a1 = a
        .report(report("Bags piled by the east gate", vec![photo(STREET)]))
        .expect("a reports");
    sync(&a, &street).await;
    wait_until("the district has A's first report", || {
        caught_up(&w.district, &w.street, DISTRICT_SCOPE)
    })
    .await;

    // The district goes down.
    let district_addr = district.local_addr;
    district.stop().await;

    // The devices and the street go on working; syncing with the street still succeeds.
    let a2 = a
        .report(report("Stray cat in the bicycle shed", vec![photo(CAT)]))
        .expect("a reports offline from the district");
    a.edit(
        a1,
        vec![Change::Comment("Still there at noon".into())],
        vec![],
    )
    .expect("a comments");
    let up = sync(&a, &street).await;
    assert_eq!(up.summary.events_up, 3);
    assert_eq!(up.summary.blobs_up, 2);
    let b1 = b
        .report(report("Rubbish by block 3", vec![photo(BIG)]))
        .expect("b reports");
    let up = sync(&b, &street).await;
    assert_eq!(up.summary.events_up, 2);
    open(&w.street)
        .edit(
            a2,
            vec![Change::Status(gridsync_core::Status::Accepted)],
            vec![],
        )
        .expect("the street accepts A's second report");
    let pending = Store::open(&w.street)
        .expect("open")
        .pending(&w.street_id)
        .expect("pending");
    println!("street, waiting for the district: {pending:?}");
    assert_eq!(pending.events, 1, "the street's own acceptance");

    // The district comes back on the same store. On the same port if the operating system
    // lets us have it again (the old socket closes once quinn's endpoint driver has let go of
    // it, hence the retries): the street then reconnects by itself, having kept retrying
    // that address with backoff. If the port stays taken (another process may have grabbed
    // it), the district gets a new port and the street is restarted pointed at it, as an
    // operator would do; either way nothing may be lost or duplicated.
    let same_port = retry_within(std::time::Duration::from_secs(10), || async {
        start_relay_on(&w.district, district_addr, None).await.ok()
    })
    .await;
    let (district, street) = match same_port {
        Some(district) => {
            println!("district restarted on the same address {district_addr}");
            (district, street)
        }
        None => {
            println!("port {district_addr} not reusable; restarting district and street");
            let district = start_relay(&w.district, None).await;
            street.stop().await;
            let street = start_relay_on(&w.street, loopback(), Some(upstream_of(&district)))
                .await
                .expect("restart the street");
            (district, street)
        }
    };
    // Caught up, and the street has taken in the district's last acknowledgement (the
    // district commits a blob a moment before the street hears it was stored).
    let street_pending = || {
        Store::open(&w.street)
            .expect("open")
            .pending(&w.street_id)
            .expect("pending")
    };
    wait_until("the district catches up with the street", || {
        let p = street_pending();
        caught_up(&w.district, &w.street, DISTRICT_SCOPE) && (p.events, p.blobs) == (0, 0)
    })
    .await;

    // Exactly once: the district's events are the union of every node's, each once.
    let expected: BTreeSet<_> = [&w.a, &w.b, &w.street]
        .iter()
        .flat_map(|p| event_ids(p))
        .collect();
    let at_district = event_ids(&w.district);
    assert_eq!(at_district, expected);
    let store = Store::open(&w.district).expect("open");
    let counts = store.counts().expect("counts");
    println!(
        "district after the outage: {counts:?}, {} distinct events overall",
        expected.len()
    );
    assert_eq!(counts.events, expected.len() as u64);
    assert_eq!(counts.incidents, 3);
    assert_eq!(counts.blobs, 6);
    for (path, node) in [(&w.a, w.a_id), (&w.b, w.b_id), (&w.street, w.street_id)] {
        let latest = latest_seq(path, node);
        assert_eq!(
            store.contiguous(&node).expect("contiguous"),
            latest,
            "{}",
            path.display()
        );
    }
    // Every event is stored once per (origin, seq): no two rows of one origin share a seq.
    let per_origin_rows: u64 = [w.a_id, w.b_id, w.street_id]
        .iter()
        .map(|n| store.contiguous(n).expect("contiguous"))
        .sum();
    assert_eq!(per_origin_rows, counts.events);
    assert_eq!(
        views_in(&w.district, DISTRICT_SCOPE),
        views_in(&w.street, DISTRICT_SCOPE)
    );

    // The devices get the street's decision and show what the district shows.
    sync(&a, &street).await;
    sync(&b, &street).await;
    assert_eq!(views_in(&w.a, GRID_A), views_in(&w.district, GRID_A));
    assert_eq!(views_in(&w.b, GRID_B), views_in(&w.district, GRID_B));
    assert!(views_in(&w.district, GRID_B).contains_key(&b1.to_string()));

    street.stop().await;
    district.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_photo_upload_resumes_from_its_offset() {
    const N: u64 = 100_000;
    let w = World::new();
    let street = start_relay(&w.street, None).await;
    let mut a = open(&w.a);
    let id = a
        .report(report("Rubbish by block 3", vec![photo(BIG)]))
        .expect("report");
    let hash = hash_of(&a, id, 0);
    let processed = a.blob(&hash, false).expect("the processed photo");
    let thumb = a.blob(&hash, true).expect("its thumbnail");
    let size = processed.len() as u64;
    println!(
        "processed photo: {size} bytes; thumbnail: {} bytes; cut after {N}",
        thumb.len()
    );
    assert!(N < size, "the photo must be larger than the cut");
    assert!(
        (thumb.len() as u64) < N,
        "the thumbnail (sent first) fits whole"
    );

    let cut = SyncOptions {
        interrupt_blobs_after: Some(N),
        ..SyncOptions::default()
    };
    let err = try_sync(&a, target(&street), &cut)
        .await
        .expect_err("the interrupted sync fails");
    println!("interrupted sync: {err}");
    {
        let relay = Store::open(&w.street).expect("open");
        assert_eq!(
            relay.blob_state(&hash).expect("blob state"),
            BlobState::Partial { offset: N },
            "the relay keeps the first {N} bytes"
        );
        assert!(relay.blob(&hash).expect("read").is_none());
    }

    let resumed = sync(&a, &street).await;
    let s = &resumed.summary;
    println!(
        "resumed sync: {} blob bytes up of the photo's {size} (skipped {N}): {s:?}",
        s.blob_bytes_up
    );
    assert!(s.blob_bytes_up < size);
    assert_eq!(s.blob_bytes_up, size - N);
    assert_eq!(s.blobs_up, 1);
    assert_eq!(s.events_up, 0, "the events went up before the photo");
    assert_eq!(
        blob_bytes(&w.street, &hash).expect("held now"),
        processed,
        "byte-identical at the relay"
    );
    assert_eq!(a.pending().expect("pending").blobs, 0);
    street.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pinned_id_is_refused_both_ways() {
    let w = World::new();
    let street = start_relay(&w.street, None).await;
    let mut a = open(&w.a);
    a.report(report("Bags piled by the east gate", vec![photo(STREET)]))
        .expect("report");
    let relay_counts = || {
        Store::open(&w.street)
            .expect("open")
            .counts()
            .expect("counts")
    };
    let relay_before = relay_counts();
    let a_before = (a.pending().expect("pending"), a.counts().expect("counts"));

    // The device pins another node (the district's) than the relay that answers.
    let district_id = Store::open(&w.district)
        .expect("open")
        .identity()
        .expect("identity")
        .node_id;
    let wrong = SyncTarget {
        addr: street.local_addr,
        relay_id: district_id,
    };
    let err = try_sync(&a, wrong, &SyncOptions::default())
        .await
        .expect_err("a relay that is not the pinned one is refused")
        .to_string();
    println!("wrong pin: {err}");
    assert!(err.contains("mismatch"), "{err}");
    assert!(err.contains(&district_id.to_hex()), "{err}");
    assert!(err.contains(&street.node_id.to_hex()), "{err}");
    assert_eq!(
        (a.pending().expect("pending"), a.counts().expect("counts")),
        a_before
    );
    assert_eq!(relay_counts(), relay_before);

    // The other way: the relay refuses a device it never enrolled...
    let stranger_db = db(w.dir.path(), "stranger");
    init_device(&stranger_db, "stranger", GRID_A);
    let mut stranger = open(&stranger_db);
    stranger
        .report(report("Not enrolled anywhere", vec![]))
        .expect("report");
    let stranger_before = stranger.pending().expect("pending");
    let err = try_sync(&stranger, target(&street), &SyncOptions::default())
        .await
        .expect_err("an unknown device is refused")
        .to_string();
    println!("not enrolled: {err}");
    assert!(err.contains("not enrolled"), "{err}");
    assert_eq!(stranger.pending().expect("pending"), stranger_before);
    assert_eq!(relay_counts(), relay_before);

    // ...and one whose enrollment was revoked (while the relay runs).
    revoke(&w.street, w.a_id);
    let err = try_sync(&a, target(&street), &SyncOptions::default())
        .await
        .expect_err("a revoked device is refused")
        .to_string();
    println!("revoked: {err}");
    assert!(err.contains("not enrolled"), "{err}");
    assert_eq!(
        (a.pending().expect("pending"), a.counts().expect("counts")),
        a_before
    );
    assert_eq!(relay_counts(), relay_before);

    // Enrolled again, it syncs.
    enroll(&w.street, w.a_id, Role::Device, GRID_A);
    let ok = sync(&a, &street).await;
    assert_eq!(ok.summary.events_up, a_before.0.events);
    street.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_is_one_round_trip_and_idempotent() {
    let w = World::new();
    let (district, street) = w.start().await;
    let mut a = open(&w.a);
    a.report(report("Bags piled by the east gate", vec![photo(STREET)]))
        .expect("report");
    a.report(report("Stray cat in the bicycle shed", vec![photo(CAT)]))
        .expect("report");
    let first = sync(&a, &street).await;
    println!("first sync: {:?}", first.summary);
    assert_eq!(first.summary.events_up, 4);
    assert_eq!(first.summary.blobs_up, 4);

    let held = Store::open(&w.street)
        .expect("open")
        .counts()
        .expect("counts");
    for round in 0..2 {
        let again = sync(&a, &street).await;
        println!("resync {round}: {:?}", again.summary);
        assert_eq!(
            again.summary,
            Summary {
                round_trips: 1,
                ..Summary::default()
            }
        );
        assert_eq!(
            Store::open(&w.street)
                .expect("open")
                .counts()
                .expect("counts"),
            held
        );
    }
    let pending = a.pending().expect("pending");
    assert_eq!((pending.events, pending.blobs), (0, 0));
    street.stop().await;
    district.stop().await;
}

/// A poor mobile link: 10% of datagrams lost, 5% duplicated, 10% reordered, both ways. The
/// sync still completes, every event and photo arrives exactly once and intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_link_delivers_everything_exactly_once() {
    let w = World::new();
    let (district, street) = w.start().await;
    let link = LossyLink::start(
        street.local_addr,
        Impairment {
            drop_pct: 10,
            duplicate_pct: 5,
            reorder_pct: 10,
        },
        7,
    )
    .await;
    let mut a = open(&w.a);
    let big = a
        .report(report("Bags piled by the east gate", vec![photo(BIG)]))
        .expect("report");
    a.report(report("Stray cat in the bicycle shed", vec![photo(CAT)]))
        .expect("report");
    let through = SyncTarget {
        addr: link.addr,
        relay_id: street.node_id,
    };
    // A session may time out on a bad enough stretch; what it committed stays, and the next
    // one resumes. Each attempt is a real sync through the link.
    let report = retry_within(std::time::Duration::from_secs(120), || async {
        try_sync(&a, through, &SyncOptions::default()).await.ok()
    })
    .await
    .expect("a sync through the lossy link");
    println!("through the lossy link: {:?}", report.summary);
    let pending = a.pending().expect("pending");
    assert_eq!((pending.events, pending.blobs), (0, 0));
    assert_eq!(event_ids(&w.street), event_ids(&w.a));
    for hash in photo_blobs(&w.a) {
        assert_eq!(
            blob_bytes(&w.street, &hash),
            blob_bytes(&w.a, &hash),
            "{hash}"
        );
    }
    assert_eq!(views_in(&w.street, GRID_A), views_in(&w.a, GRID_A));
    let photo_hash = hash_of(&a, big, 0);
    assert!(holds_blobs(&w.street, [&photo_hash]));
    drop(link);
    street.stop().await;
    district.stop().await;
}

/// A device app that skipped the photo pipeline: adds to incident `id`, in the device's own
/// store and log, a photo whose blobs are `photo` (the event names their hashes and sizes
/// honestly).
fn add_unprocessed_photo(path: &std::path::Path, id: IncidentId, photo: &FakePhoto) {
    let mut store = Store::open(path).expect("open device store");
    let identity = store.identity().expect("identity");
    let state = store
        .incident(&id)
        .expect("read incident")
        .expect("incident");
    let grid = state.report.as_ref().expect("reported").grid.clone();
    let payloads = gridsync_core::command::plan_edit(&state, vec![Change::AddPhoto(photo.meta())])
        .expect("plan");
    let mut writer = Writer::signing(
        &identity.secret,
        identity.name.clone(),
        store.next_seq(&identity.node_id).expect("next seq"),
        store.clock_last().expect("clock"),
    );
    let events: Vec<_> = payloads
        .into_iter()
        .map(|p| writer.write(id, &grid, p, now_ms()))
        .collect();
    store
        .append(&events, &photo.blobs(), Some(writer.clock_last()))
        .expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_refuses_a_photo_blob_that_is_not_a_photo_and_keeps_syncing() {
    let w = World::new();
    let street = start_relay(&w.street, None).await;
    let mut a = open(&w.a);
    let id = a
        .report(report("Rubbish by block 3", vec![photo(STREET)]))
        .expect("report");
    let real = hash_of(&a, id, 0);
    let text = FakePhoto {
        photo: b"GPS 39.8927N 116.4284E; not a photo\n".repeat(40),
        thumb: FakePhoto::fixture("plain-512.png").thumb,
        size: (512, 512),
    };
    add_unprocessed_photo(&w.a, id, &text);

    let report = sync(&a, &street).await;
    let s = &report.summary;
    println!("sync with an unprocessed photo: {s:?}");
    assert_eq!(s.blobs_refused, 1, "the text 'photo' is refused");
    assert_eq!(
        s.blobs_up, 3,
        "both thumbnails and the real photo are stored"
    );
    {
        let relay = Store::open(&w.street).expect("open");
        assert_eq!(relay.blob(&text.hash()).expect("read"), None);
        assert_eq!(
            relay.blob_state(&text.hash()).expect("state"),
            BlobState::Missing,
            "not even a partial is kept"
        );
        assert_eq!(
            relay.blob(&text.thumb_hash()).expect("read").as_ref(),
            Some(&text.thumb)
        );
    }
    assert_eq!(
        blob_bytes(&w.street, &real),
        Some(a.blob(&real, false).expect("the processed photo")),
        "the real photo went through"
    );
    // The events all went up (the refusal is per blob), and the device keeps the refused blob.
    assert_eq!(
        views_in(&w.street, GRID_A),
        views_in(&w.a, GRID_A),
        "the relay shows the incident as the device does"
    );
    assert_eq!(a.pending().expect("pending").blobs, 1);
    street.stop().await;
}
