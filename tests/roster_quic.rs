//! The grid roster across tiers (issue 10, item 2), over real loopback QUIC: a street adds a
//! member to grid G's roster with the node id of G's handheld; that handheld syncs and knows
//! its grid's roster (and itself on it) offline, a handheld of another grid of the same
//! street gets none of it, the district receives it; a removal made at the district comes
//! back down to the handheld. A handheld that uploads a roster event of its own (a tampered
//! app writing straight to its store) is refused by its street with `NotAuthorised`, and
//! nothing of that batch is stored. Nothing sleeps for a fixed time.

use gridsync_core::{Force, GridCode, IncidentId, Payload, StaffEntry, Writer};
use gridsync_device::{Device, DeviceError};
use gridsync_net::client::SyncOptions;
use gridsync_net::NetError;
use gridsync_proto::client::SessionError;
use gridsync_proto::{ErrorCode, Role, SyncStore};
use gridsync_scenarios::net::{
    db, enroll, init_device, init_relay, now_ms, start_relay, sync, target, try_sync, wait_until,
};
use gridsync_store::Store;

const G: &str = "110101/002/014/03";
const H: &str = "110101/002/015/01";

fn grid(text: &str) -> GridCode {
    text.parse().expect("grid")
}

/// The names on `grid`'s roster in the store at `path`.
fn roster_at(path: &std::path::Path, grid_code: &str) -> Vec<String> {
    Store::open(path)
        .expect("open store")
        .staff(Some(&grid(grid_code)))
        .expect("staff")
        .into_iter()
        .map(|m| m.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roster_flows_down_to_its_grid_and_up_and_a_handheld_may_not_write_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (district_db, street_db) = (db(dir.path(), "district"), db(dir.path(), "street-002"));
    let district_id = init_relay(&district_db, "district", "district");
    let street_id = init_relay(&street_db, "street-002", "street");
    enroll(&district_db, street_id, Role::Street, "110101/002");
    let (pda_g_db, pda_h_db) = (db(dir.path(), "pda-g"), db(dir.path(), "pda-h"));
    let pda_g_id = init_device(&pda_g_db, "patrol-g", G);
    let pda_h_id = init_device(&pda_h_db, "patrol-h", H);
    enroll(&street_db, pda_g_id, Role::Device, G);
    enroll(&street_db, pda_h_id, Role::Device, H);

    let district = start_relay(&district_db, None).await;
    let street = start_relay(&street_db, Some(&district)).await;

    // The street's operator puts G's police officer, with G's handheld, on G's roster.
    let mut desk = Device::open(&street_db).expect("open the street's store");
    desk.staff_add(
        &grid(G),
        StaffEntry {
            name: "Wang Fang".into(),
            force: Force::Police,
            phone: Some("13800138000".into()),
            device: Some(pda_g_id),
        },
    )
    .expect("the street adds a member");
    drop(desk);

    // G's handheld syncs and knows its police officer, and itself, offline.
    let pda_g = Device::open(&pda_g_db).expect("open pda-g");
    let down = sync(&pda_g, &street).await;
    assert_eq!(down.summary.events_down, 1, "{:?}", down.summary);
    let roster = pda_g.staff(&grid(G)).expect("staff");
    assert_eq!(roster.len(), 1);
    assert_eq!(
        (roster[0].name.as_str(), roster[0].force, roster[0].device),
        ("Wang Fang", Force::Police, Some(pda_g_id))
    );
    assert_eq!(roster[0].phone.as_deref(), Some("13800138000"));
    let me = pda_g.me_as_staff().expect("read").expect("on the roster");
    assert_eq!(me, roster[0]);
    assert!(
        pda_g.list().expect("list").is_empty(),
        "no incident came of it"
    );

    // H's handheld, of the same street, gets nothing of G's roster.
    let pda_h = Device::open(&pda_h_db).expect("open pda-h");
    let down = sync(&pda_h, &street).await;
    assert_eq!(down.summary.events_down, 0, "{:?}", down.summary);
    assert!(pda_h.roster().expect("roster").is_empty());
    assert!(pda_h.me_as_staff().expect("read").is_none());

    // The district receives it.
    wait_until("the roster reaches the district", || {
        roster_at(&district_db, G) == ["Wang Fang"]
    })
    .await;
    // It is no incident there either: not listed, and `verify` of its id finds no event.
    let at_district = Store::open(&district_db).expect("open district");
    let set = <Store as SyncStore>::events_after(&at_district, &street_id, 0, 10).expect("events");
    assert_eq!(set.len(), 1);
    assert!(set[0].payload.is_roster());
    assert_eq!(set[0].verify(), Ok(()), "signed by the street");
    assert!(at_district.incidents().expect("incidents").is_empty());
    let checked =
        gridsync_relay::verify::verify_incident(&at_district, &district_id, &set[0].incident)
            .expect("verify");
    assert!(checked.events.is_empty());
    drop(at_district);

    // The district takes the member off; the removal comes down to G's handheld.
    let mut command = Device::open(&district_db).expect("open the district's store");
    command
        .staff_remove(&grid(G), "Wang Fang")
        .expect("the district removes the member");
    drop(command);
    wait_until("the removal reaches the street", || {
        roster_at(&street_db, G).is_empty()
    })
    .await;
    sync(&pda_g, &street).await;
    assert!(pda_g.staff(&grid(G)).expect("staff").is_empty());
    assert!(pda_g.me_as_staff().expect("read").is_none());
    let at_street = Store::open(&street_db).expect("open street");
    assert!(
        at_street
            .has_event(&gridsync_core::EventId {
                origin: district_id,
                seq: 1
            })
            .expect("read"),
        "the district's removal is held at the street"
    );
    drop(at_street);

    // A tampered handheld app writes a roster event straight into its store and uploads it:
    // its street refuses the batch with NotAuthorised and stores nothing of it.
    let key = Store::open(&pda_h_db)
        .expect("open")
        .identity()
        .expect("identity")
        .secret;
    let mut forged_store = Store::open(&pda_h_db).expect("open pda-h store");
    let mut writer = Writer::signing(
        &key,
        "patrol-h",
        forged_store.next_seq(&pda_h_id).expect("next seq"),
        forged_store.clock_last().expect("clock"),
    );
    let forged = writer.write(
        IncidentId::new_v7(now_ms(), [0x42; 10]),
        &grid(H),
        Payload::StaffSet(StaffEntry {
            name: "Myself".into(),
            force: Force::Manager,
            phone: None,
            device: Some(pda_h_id),
        }),
        now_ms(),
    );
    forged_store
        .append(
            std::slice::from_ref(&forged),
            &[],
            Some(writer.clock_last()),
        )
        .expect("the store itself takes what its node writes");
    drop(forged_store);
    let refused = try_sync(&pda_h, target(&street), &SyncOptions::default()).await;
    let message = match refused {
        Err(DeviceError::Sync(NetError::Session(SessionError::Refused { code, message }))) => {
            assert_eq!(code, ErrorCode::NotAuthorised, "{message}");
            message
        }
        Err(DeviceError::Sync(e)) if e.is_closed_with(ErrorCode::NotAuthorised) => e.to_string(),
        other => panic!("expected a NotAuthorised refusal, got {other:?}"),
    };
    assert!(message.contains("StaffSet"), "{message}");
    let at_street = Store::open(&street_db).expect("open street");
    assert!(!at_street.has_event(&forged.id()).expect("read"));
    assert!(at_street.staff(Some(&grid(H))).expect("staff").is_empty());
    drop(at_street);

    street.stop().await;
    district.stop().await;
}
