//! Chains of any depth (issue 10, item 1), over real loopback QUIC: a handheld reports to
//! its community workstation, which forwards to its street, which forwards to the district;
//! the district's decision comes back down all three tiers to the handheld. Each tier is
//! enrolled at the one above as today (the community for its community's scope), the
//! district knows the handheld only from the node records of the two tiers below, and a
//! street still serves handhelds directly beside its community. Nothing sleeps for a fixed
//! time.

use gridsync_core::{Category, Change, Severity, Status};
use gridsync_device::{Device, NewReport};
use gridsync_proto::Role;
use gridsync_scenarios::net::{
    db, enroll, event_ids, init_device, init_relay, start_relay, sync, wait_until,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_climbs_community_street_district_and_the_decision_comes_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (district_db, street_db, community_db) = (
        db(dir.path(), "district"),
        db(dir.path(), "street-002"),
        db(dir.path(), "community-014"),
    );
    init_relay(&district_db, "district", "district");
    let street_id = init_relay(&street_db, "street-002", "street");
    let community_id = init_relay(&community_db, "community-014", "community");
    enroll(&district_db, street_id, Role::Street, "110101/002");
    enroll(&street_db, community_id, Role::Community, "110101/002/014");
    let (pda_db, direct_db) = (db(dir.path(), "pda-1"), db(dir.path(), "pda-2"));
    let pda_id = init_device(&pda_db, "patrol-1", "110101/002/014/03");
    let direct_id = init_device(&direct_db, "patrol-2", "110101/002/015/01");
    enroll(&community_db, pda_id, Role::Device, "110101/002/014/03");
    // A street may still serve handhelds directly, beside its community workstations.
    enroll(&street_db, direct_id, Role::Device, "110101/002/015/01");

    let district = start_relay(&district_db, None).await;
    let street = start_relay(&street_db, Some(&district)).await;
    let community = start_relay(&community_db, Some(&street)).await;

    let mut pda = Device::open(&pda_db).expect("open pda-1");
    let id = pda
        .report(report("A cracked manhole cover by block 4"))
        .expect("report");
    sync(&pda, &community).await;
    let mut direct = Device::open(&direct_db).expect("open pda-2");
    direct
        .report(report("Flyers on the notice board"))
        .expect("report");
    sync(&direct, &street).await;
    wait_until("both reports reach the district", || {
        let held = event_ids(&district_db);
        held.iter().any(|e| e.origin == pda_id) && held.iter().any(|e| e.origin == direct_id)
    })
    .await;

    // The district knows the handheld two tiers down from the records of both tiers.
    let at_district = Store::open(&district_db).expect("open district");
    let about_pda = at_district.records().expect("records");
    assert!(
        about_pda
            .iter()
            .any(|r| r.node == pda_id && r.issuer == community_id && r.role == Role::Device),
        "the community's record of the handheld reached the district"
    );
    assert!(about_pda
        .iter()
        .any(|r| r.node == community_id && r.issuer == street_id && r.role == Role::Community));
    drop(at_district);

    // The district decides; the decision comes down through street and community.
    let mut desk = Device::open(&district_db).expect("open the district's store");
    desk.edit(id, vec![Change::Status(Status::Accepted)], vec![])
        .expect("the district accepts");
    let district_id = desk.node_id();
    drop(desk);
    wait_until("the decision reaches the community", || {
        event_ids(&community_db)
            .iter()
            .any(|e| e.origin == district_id)
    })
    .await;
    let down = sync(&pda, &community).await;
    assert!(down.summary.events_down >= 1, "{:?}", down.summary);
    let seen = pda.get(id).expect("get").expect("incident");
    assert_eq!(seen.view().status, "accepted");

    community.stop().await;
    street.stop().await;
    district.stop().await;
}
