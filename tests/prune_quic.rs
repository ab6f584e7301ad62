//! Handheld storage (PROTOCOL.md §8.12) over real loopback QUIC: a handheld that prunes keeps
//! its full photo while the district does not hold it, however often it syncs with its
//! street; once the district is back and the street forwarded the photo (and asked), the
//! handheld's next sync learns it safe and prunes the full photo, keeping the thumbnail, and
//! the photo comes back byte for byte when fetched. Nothing sleeps for a fixed time.

use gridsync_core::{BlobHash, Category, IncidentId, Severity};
use gridsync_device::{Device, DeviceError, NewReport};
use gridsync_net::client::SyncOptions;
use gridsync_proto::Role;
use gridsync_scenarios::net::{
    blob_bytes, db, enroll, init_device, init_relay, loopback, photo, start_relay, start_relay_on,
    sync, target, upstream_of, wait_until,
};
use gridsync_store::Store;

const GRID: &str = "110101/002/014/03";

/// The photo and thumbnail hashes of incident `id`'s first photo.
fn photo_of(device: &Device, id: IncidentId) -> (BlobHash, BlobHash) {
    let view = device.get(id).expect("get").expect("incident").view();
    let p = &view.photos[0];
    (
        p.hash.parse().expect("photo hash"),
        p.thumb.parse().expect("thumb hash"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_is_pruned_only_after_the_district_holds_it_and_comes_back_when_fetched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (district_db, street_db, pda_db) = (
        db(dir.path(), "district"),
        db(dir.path(), "street"),
        db(dir.path(), "wang-li"),
    );
    init_relay(&district_db, "district", "district");
    let street_id = init_relay(&street_db, "street-002", "street");
    enroll(&district_db, street_id, Role::Street, "110101/002");
    let pda_id = init_device(&pda_db, "wang-li", GRID);
    enroll(&street_db, pda_id, Role::Device, GRID);

    // The district's address, then the district down: the street forwards to nothing.
    let district = start_relay(&district_db, None).await;
    let upstream = upstream_of(&district);
    district.stop().await;
    let district_addr = upstream.addr;
    let street = start_relay_on(&street_db, loopback(), Some(upstream))
        .await
        .expect("start the street");

    let mut pda = Device::open(&pda_db).expect("open the handheld");
    assert!(!pda.prunes_photos().expect("setting"), "off by default");
    pda.set_prune_photos(true).expect("prune on");
    let id = pda
        .report(NewReport {
            category: Category::from_catalogue("garbage").expect("category"),
            description: "Bags piled by the east gate".into(),
            location: None,
            severity: Severity::Normal,
            observed_at: None,
            photos: vec![photo("street-640x427-gps.jpg")],
        })
        .expect("report");
    let (photo_hash, thumb_hash) = photo_of(&pda, id);
    let original = pda.blob(&photo_hash, false).expect("the photo");

    // With the district down, nothing is pruned, however often the handheld syncs.
    for round in 0..3 {
        let r = sync(&pda, &street).await;
        assert_eq!(r.summary.blobs_safe, 0, "round {round}");
        assert_eq!(
            pda.blob(&photo_hash, false).expect("still held"),
            original,
            "round {round}"
        );
    }
    assert_eq!(pda.prune_photos().expect("prune by hand").pruned, 0);
    assert!(
        blob_bytes(&street_db, &photo_hash).is_some(),
        "the street holds it"
    );

    // The district comes back; the street forwards the photo and learns it safe.
    let district = start_relay_on(&district_db, district_addr, None)
        .await
        .expect("restart the district on its address");
    wait_until("the district holds the photo", || {
        blob_bytes(&district_db, &photo_hash).is_some()
    })
    .await;
    wait_until("the street knows the district holds it", || {
        Store::open(&street_db)
            .expect("open street")
            .is_safe(&photo_hash)
            .expect("read")
    })
    .await;

    // The handheld's next sync learns it, and prunes the full photo; the thumbnail stays.
    let r = sync(&pda, &street).await;
    assert_eq!(r.summary.blobs_safe, 1);
    let err = pda.blob(&photo_hash, false).expect_err("pruned");
    assert!(
        matches!(err, DeviceError::Pruned(h) if h == photo_hash),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("pruned after the district confirmed it; fetch it again with --fetch"),
        "{err}"
    );
    assert!(pda.blob(&thumb_hash, false).is_ok(), "the thumbnail stays");
    assert!(
        pda.blob(&photo_hash, true).is_ok(),
        "its thumbnail, through the photo"
    );
    assert_eq!(pda.prune_photos().expect("idempotent").pruned, 0);

    // Fetched back from the street, byte for byte; a later sync does not prune it again.
    let bytes = pda
        .fetch_blob(
            target(&street),
            &photo_hash,
            false,
            &SyncOptions::default(),
            &mut |_| {},
        )
        .await
        .expect("fetch the photo back");
    assert_eq!(bytes, original);
    sync(&pda, &street).await;
    assert_eq!(pda.blob(&photo_hash, false).expect("kept"), original);

    street.stop().await;
    district.stop().await;
}
