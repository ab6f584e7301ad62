//! Photos down (PROTOCOL.md §8.11) over real loopback QUIC, with real photos: a handheld of
//! a grid receives the thumbnails of the photos its grid-mates report, fetches a full photo
//! on demand byte for byte, resumes a fetch cut short from its offset, and a handheld of
//! another grid is refused. Nothing sleeps for a fixed time.

use gridsync_core::{BlobHash, Category, IncidentId, NodeId, Severity};
use gridsync_device::{Device, DeviceError, NewReport, PhotoInput};
use gridsync_net::client::{SyncOptions, SyncProgress};
use gridsync_proto::client::Progress;
use gridsync_proto::{BlobKind, ErrorCode, Role};
use gridsync_scenarios::net::{
    blob_bytes, db, enroll, init_device, init_relay, now_ms, photo, start_relay, sync, target,
    try_sync,
};
use gridsync_store::Store;

const STREET_PHOTO: &str = "street-640x427-gps.jpg";
const CAT: &str = "cat-2400x1600-rot8.jpg";

const GRID_A: &str = "110101/002/014/03";
const GRID_C: &str = "110101/002/015/01";

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

fn open(path: &std::path::Path) -> Device {
    Device::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The photo and thumbnail hashes of incident `id`'s first photo, as `device` shows them.
fn photo_of(device: &Device, id: IncidentId) -> (BlobHash, BlobHash) {
    let view = device.get(id).expect("get").expect("incident").view();
    let p = &view.photos[0];
    (
        p.hash.parse().expect("photo hash"),
        p.thumb.parse().expect("thumb hash"),
    )
}

/// A street relay, and three handhelds enrolled there: A and B of one grid, C of another.
struct World {
    _dir: tempfile::TempDir,
    street: std::path::PathBuf,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
    c: std::path::PathBuf,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let street = db(dir.path(), "street");
        let (a, b, c) = (
            db(dir.path(), "wang-li"),
            db(dir.path(), "zhao-min"),
            db(dir.path(), "li-na"),
        );
        init_relay(&street, "street-002", "street");
        for (path, name, grid) in [
            (&a, "wang-li", GRID_A),
            (&b, "zhao-min", GRID_A),
            (&c, "li-na", GRID_C),
        ] {
            let id: NodeId = init_device(path, name, grid);
            enroll(&street, id, Role::Device, grid);
        }
        Self {
            _dir: dir,
            street,
            a,
            b,
            c,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_mate_gets_the_thumbnail_and_fetches_the_photo_another_grid_cannot() {
    let w = World::new();
    let street = start_relay(&w.street, None).await;

    // A reports with a real photo and syncs: the street holds the photo and its thumbnail.
    let mut a = open(&w.a);
    let id = a
        .report(report(
            "Bags piled by the east gate",
            vec![photo(STREET_PHOTO)],
        ))
        .expect("a reports");
    let (photo_hash, thumb_hash) = photo_of(&a, id);
    let up = sync(&a, &street).await;
    assert_eq!(up.summary.blobs_up, 2);
    assert_eq!(up.summary.blobs_down, 0, "a reporter holds its own photos");

    // B, of the same grid, syncs: the incident and A's thumbnail come down, not the photo.
    let mut b = open(&w.b);
    let down = sync(&b, &street).await;
    println!("B's sync: {:?}", down.summary);
    assert_eq!(down.summary.events_down, 2);
    assert_eq!(
        (down.summary.blobs_down, down.summary.fetches_refused),
        (1, 0)
    );
    assert_eq!(
        blob_bytes(&w.b, &thumb_hash),
        blob_bytes(&w.a, &thumb_hash),
        "the thumbnail, byte for byte"
    );
    assert!(blob_bytes(&w.b, &thumb_hash).is_some());
    assert_eq!(blob_bytes(&w.b, &photo_hash), None, "not the full photo");
    // Not sent back up: B records the street as holding it.
    assert_eq!(b.pending().expect("pending").blobs, 0);
    let again = sync(&b, &street).await;
    assert_eq!(
        (again.summary.blobs_down, again.summary.round_trips),
        (0, 1),
        "nothing more to fetch: one round trip"
    );

    // B fetches the full photo on demand: byte for byte what A took.
    let mut seen = Vec::new();
    let bytes = b
        .fetch_blob(
            target(&street),
            &photo_hash,
            false,
            &SyncOptions::default(),
            &mut |p| seen.push(p),
        )
        .await
        .expect("B fetches the photo");
    assert_eq!(Some(bytes.clone()), blob_bytes(&w.a, &photo_hash));
    assert_eq!(blob_bytes(&w.b, &photo_hash), Some(bytes));
    assert!(seen.iter().any(|p| matches!(
        p,
        SyncProgress::Session(Progress::Fetched { hash, kind: BlobKind::Photo, .. }) if *hash == photo_hash
    )));
    assert!(
        !Store::open(&w.b)
            .expect("open")
            .is_wanted(&photo_hash)
            .expect("wanted"),
        "held: no longer wanted"
    );

    // C, of another grid, knows nothing of the incident: its device refuses at once...
    let mut c = open(&w.c);
    let e = c
        .fetch_blob(
            target(&street),
            &photo_hash,
            false,
            &SyncOptions::default(),
            &mut |_| {},
        )
        .await
        .expect_err("C cannot name the photo");
    assert!(
        matches!(e, DeviceError::NotNamed(h) if h == photo_hash),
        "{e}"
    );
    // ... and a want put in its store by hand is refused by the street: nothing stored.
    Store::open(&w.c)
        .expect("open C's store")
        .want_blob(&photo_hash, BlobKind::Photo, now_ms())
        .expect("want");
    let mut refusals = Vec::new();
    let r = c
        .sync(target(&street), &SyncOptions::default(), &mut |p| {
            if let SyncProgress::Session(Progress::FetchRefused { hash, code, .. }) = p {
                refusals.push((hash, code));
            }
        })
        .await
        .expect("C's sync succeeds");
    assert_eq!(
        (
            r.summary.events_down,
            r.summary.blobs_down,
            r.summary.fetches_refused
        ),
        (0, 0, 1)
    );
    assert_eq!(refusals, vec![(photo_hash, ErrorCode::OutOfScope)]);
    assert_eq!(blob_bytes(&w.c, &photo_hash), None);
    let c_store = Store::open(&w.c).expect("open C's store");
    assert_eq!(
        c_store.partial_blob_len(&photo_hash).expect("partial"),
        None
    );
    street.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_fetch_resumes_from_its_offset() {
    let w = World::new();
    let street = start_relay(&w.street, None).await;
    let mut a = open(&w.a);
    let id = a
        .report(report("Stray cat in the bicycle shed", vec![photo(CAT)]))
        .expect("a reports");
    let (photo_hash, _) = photo_of(&a, id);
    sync(&a, &street).await;
    let size = Store::open(&w.a)
        .expect("open")
        .held_blob(&photo_hash)
        .expect("read")
        .expect("held")
        .size;
    assert!(
        size > 2 * 64 * 1024,
        "a photo of several pieces: {size} bytes"
    );

    let mut b = open(&w.b);
    sync(&b, &street).await;
    assert!(b.want_photo(&photo_hash).expect("want"));

    // The first fetch is cut after a third of the photo: its bytes stay, in pieces.
    let cut = size / 3;
    let options = SyncOptions {
        interrupt_fetch_after: Some(cut),
        ..SyncOptions::default()
    };
    let e = try_sync(&b, target(&street), &options)
        .await
        .expect_err("the hook ends the session");
    println!("cut: {e}");
    let held = Store::open(&w.b)
        .expect("open")
        .partial_blob_len(&photo_hash)
        .expect("partial")
        .expect("the bytes received are kept");
    assert!(
        held >= cut && held < size,
        "held {held} of {size} (cut at {cut})"
    );
    assert_eq!(blob_bytes(&w.b, &photo_hash), None);

    // The next session asks from there, and only the rest comes.
    let mut fetched_from = None;
    let r = b
        .sync(target(&street), &SyncOptions::default(), &mut |p| {
            if let SyncProgress::Session(Progress::FetchStarted { hash, offset, .. }) = p {
                if hash == photo_hash {
                    fetched_from = Some(offset);
                }
            }
        })
        .await
        .expect("the fetch resumes");
    assert_eq!(fetched_from, Some(held));
    assert_eq!(r.summary.blobs_down, 1);
    assert_eq!(r.summary.blob_bytes_down, size - held);
    assert!(r.summary.blob_bytes_down < size);
    assert_eq!(blob_bytes(&w.b, &photo_hash), blob_bytes(&w.a, &photo_hash));
    assert_eq!(
        Store::open(&w.b)
            .expect("open")
            .partial_blob_len(&photo_hash)
            .expect("partial"),
        None
    );
    street.stop().await;
}
