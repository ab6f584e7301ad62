//! Live delivery (issue 10, item 3), over real loopback QUIC: a handheld follows its street
//! relay (PROTOCOL.md §8.10), the street follows the district, and a decision made at the
//! district reaches the handheld as a notice with no polling anywhere: well inside one
//! `FOLLOW_HOLD_MS`, which is how long a held `Follow` would otherwise wait. A follower that
//! was away, or whose relay restarted, gets what it missed; what is recorded on the handheld
//! while it follows goes up at once. Nothing sleeps for a fixed time.

use std::time::Duration;

use gridsync_core::{Category, Change, IncidentId, Level, Severity, Status};
use gridsync_device::{Device, FollowUpdate, NewReport, NoticeKind};
use gridsync_proto::{Role, FOLLOW_HOLD_MS};
use gridsync_scenarios::net::{
    db, enroll, event_ids, holds_blobs, init_device, init_relay, photo, retry_within, start_relay,
    start_relay_on, target, wait_until,
};
use tokio::sync::{mpsc, watch};

fn report(description: &str, severity: Severity) -> NewReport {
    NewReport {
        category: Category::from_catalogue("fire-hazard").expect("category"),
        description: description.into(),
        location: None,
        severity,
        observed_at: None,
        photos: vec![],
    }
}

/// Less than a `Follow`'s hold: what arrives within it was pushed, not picked up by the
/// hold's answer.
fn pushed_within() -> Duration {
    Duration::from_millis(FOLLOW_HOLD_MS / 2)
}

/// A handheld following `relay` in a task of its own: its updates, and a switch to stop it.
struct Follower {
    updates: mpsc::UnboundedReceiver<FollowUpdate>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), gridsync_device::DeviceError>>,
}

impl Follower {
    fn start(path: &std::path::Path, relay: gridsync_device::SyncTarget) -> Self {
        let device = Device::open(path).expect("open the handheld");
        let (tx, updates) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            device
                .follow(relay, stopped, &mut |u| {
                    let _ = tx.send(u);
                })
                .await
        });
        Self {
            updates,
            stop,
            task,
        }
    }

    /// Waits (at most `within`) for an update `pick` takes, skipping the others.
    async fn next<T>(
        &mut self,
        within: Duration,
        what: &str,
        mut pick: impl FnMut(&FollowUpdate) -> Option<T>,
    ) -> T {
        let found = tokio::time::timeout(within, async {
            while let Some(u) = self.updates.recv().await {
                if let Some(t) = pick(&u) {
                    return Some(t);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(t)) => t,
            Ok(None) => panic!("the follower ended before {what}"),
            Err(_) => panic!("no {what} within {within:?}"),
        }
    }

    async fn caught_up(&mut self) {
        self.next(Duration::from_secs(30), "catching up", |u| {
            matches!(u, FollowUpdate::CaughtUp { .. })
                .then_some(())
                .or(matches!(
                    u,
                    FollowUpdate::Progress(gridsync_net::client::SyncProgress::Session(
                        gridsync_proto::client::Progress::Following
                    ))
                )
                .then_some(()))
        })
        .await
    }

    /// The next notice about `incident` of kind `kind`, within `within`.
    async fn notice(&mut self, within: Duration, kind: NoticeKind, incident: IncidentId) -> String {
        self.next(within, &format!("{} notice", kind.as_str()), |u| match u {
            FollowUpdate::Notice(n) if n.kind == kind && n.incident == incident => {
                Some(n.what.clone())
            }
            _ => None,
        })
        .await
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task
            .await
            .expect("the follower task")
            .expect("the follower stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_district_decision_is_pushed_down_two_tiers_to_the_following_handheld() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (district_db, street_db, pda_db) = (
        db(dir.path(), "district"),
        db(dir.path(), "street-002"),
        db(dir.path(), "pda"),
    );
    init_relay(&district_db, "district", "district");
    let street_id = init_relay(&street_db, "street-002", "street");
    enroll(&district_db, street_id, Role::Street, "110101/002");
    let pda_id = init_device(&pda_db, "patrol-7", "110101/002/014/03");
    enroll(&street_db, pda_id, Role::Device, "110101/002/014/03");
    let district = start_relay(&district_db, None).await;
    let street = start_relay(&street_db, Some(&district)).await;

    let mut follower = Follower::start(&pda_db, target(&street));
    follower.caught_up().await;
    // Recorded while following: it goes up at once (the street forwards it on commit).
    let id = Device::open(&pda_db)
        .expect("open the handheld")
        .report(report(
            "Cardboard stacked against the meter box",
            Severity::High,
        ))
        .expect("report");
    wait_until("the report reaches the district", || {
        event_ids(&district_db).iter().any(|e| e.origin == pda_id)
    })
    .await;

    // The district accepts; the street's Follow and then the handheld's are answered at once.
    let mut desk = Device::open(&district_db).expect("open the district's store");
    desk.edit(id, vec![Change::Status(Status::Accepted)], vec![])
        .expect("the district accepts");
    drop(desk);
    let what = follower
        .notice(pushed_within(), NoticeKind::Decision, id)
        .await;
    assert_eq!(what, "status accepted");
    let seen = Device::open(&pda_db)
        .expect("open")
        .get(id)
        .expect("get")
        .expect("incident");
    assert_eq!(seen.view().status, "accepted");

    follower.stop().await;
    street.stop().await;
    district.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_away_or_cut_off_by_a_relay_restart_misses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (street_db, pda_db, other_db) = (
        db(dir.path(), "street-002"),
        db(dir.path(), "pda"),
        db(dir.path(), "pda-other"),
    );
    init_relay(&street_db, "street-002", "street");
    let pda_id = init_device(&pda_db, "patrol-7", "110101/002/014/03");
    let other_id = init_device(&other_db, "patrol-8", "110101/002/014/03");
    enroll(&street_db, pda_id, Role::Device, "110101/002/014/03");
    enroll(&street_db, other_id, Role::Device, "110101/002/014/03");
    let street = start_relay(&street_db, None).await;
    let at = target(&street);

    let mut pda = Device::open(&pda_db).expect("open");
    let mine = pda
        .report(report("Oil drums in the stairwell", Severity::Normal))
        .expect("report");
    let mut follower = Follower::start(&pda_db, at);
    follower.caught_up().await;
    follower.stop().await;

    // Away: the street dispatches the handheld's report, and another handheld of the grid
    // reports an urgent case.
    let mut desk = Device::open(&street_db).expect("open the street's store");
    desk.edit(mine, vec![Change::Status(Status::Accepted)], vec![])
        .expect("accept");
    drop(desk);
    let mut other = Device::open(&other_db).expect("open");
    let urgent = other
        .report(report("Smoke from a basement window", Severity::Urgent))
        .expect("report");
    gridsync_scenarios::net::sync(&other, &street).await;

    // Back: the catch-up raises both notices.
    let mut follower = Follower::start(&pda_db, at);
    follower
        .notice(Duration::from_secs(30), NoticeKind::Decision, mine)
        .await;
    follower
        .notice(Duration::from_secs(30), NoticeKind::Urgent, urgent)
        .await;
    follower.caught_up().await;

    // The relay restarts on the same address: the follower reconnects by itself and a
    // decision made meanwhile still reaches it.
    let addr = street.local_addr;
    street.stop().await;
    let mut desk = Device::open(&street_db).expect("open the street's store");
    desk.edit(
        mine,
        vec![Change::Escalate {
            level: Level::District,
            reason: "needs the district's fire brigade".into(),
        }],
        vec![],
    )
    .expect("escalate");
    drop(desk);
    // The old endpoint lets go of its port once its connections are gone.
    let street = retry_within(Duration::from_secs(30), || async {
        start_relay_on(&street_db, addr, None).await.ok()
    })
    .await
    .expect("restart the street on its address");
    let what = follower
        .notice(Duration::from_secs(60), NoticeKind::Decision, mine)
        .await;
    assert_eq!(what, "escalated to district");

    follower.stop().await;
    street.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_to_the_handhelds_staff_member_or_force_is_a_dispatch_notice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (street_db, reporter_db, firefighter_db) = (
        db(dir.path(), "street-002"),
        db(dir.path(), "pda-reporter"),
        db(dir.path(), "pda-firefighter"),
    );
    init_relay(&street_db, "street-002", "street");
    let grid = "110101/002/014/03";
    let reporter_id = init_device(&reporter_db, "patrol-7", grid);
    let firefighter_id = init_device(&firefighter_db, "sun-hao", grid);
    enroll(&street_db, reporter_id, Role::Device, grid);
    enroll(&street_db, firefighter_id, Role::Device, grid);
    let mut desk = Device::open(&street_db).expect("open the street's store");
    desk.staff_add(
        &grid.parse().expect("grid"),
        gridsync_core::StaffEntry {
            name: "Sun Hao".into(),
            force: gridsync_core::Force::Firefighter,
            phone: None,
            device: Some(firefighter_id),
        },
    )
    .expect("on the roster");
    drop(desk);
    let street = start_relay(&street_db, None).await;

    let mut reporter = Device::open(&reporter_db).expect("open");
    let mut with_photo = report("Gas cylinders in the stairwell", Severity::High);
    with_photo.photos = vec![photo("street-640x427-gps.jpg")];
    let fire = reporter.report(with_photo).expect("report");
    let meta = reporter
        .get(fire)
        .expect("get")
        .expect("incident")
        .visible_photos()[0]
        .meta
        .clone();
    let other = reporter
        .report(report("Blocked fire exit", Severity::High))
        .expect("report");
    gridsync_scenarios::net::sync(&reporter, &street).await;

    let mut follower = Follower::start(&firefighter_db, target(&street));
    follower.caught_up().await;
    let me = Device::open(&firefighter_db)
        .expect("open")
        .me_as_staff()
        .expect("roster")
        .expect("the roster names this handheld");
    assert_eq!(me.name, "Sun Hao");

    let mut desk = Device::open(&street_db).expect("open the street's store");
    for (id, assignee) in [(fire, "force:firefighter"), (other, "staff:Sun Hao")] {
        desk.edit(id, vec![Change::Status(Status::Accepted)], vec![])
            .expect("accept");
        desk.edit(
            id,
            vec![
                Change::Status(Status::Dispatched),
                Change::Assign {
                    assignee: assignee.into(),
                    due: None,
                },
            ],
            vec![],
        )
        .expect("dispatch");
        let what = follower
            .notice(pushed_within(), NoticeKind::Dispatch, id)
            .await;
        assert_eq!(what, format!("dispatched to {assignee}"));
    }
    drop(desk);
    // Photos down (item 4): the grid's thumbnail came with the report, and the full photo of
    // the case dispatched to this handheld's force follows the dispatch.
    wait_until(
        "the dispatched case's photo and thumbnail on the firefighter's handheld",
        || holds_blobs(&firefighter_db, [&meta.thumb, &meta.hash]),
    )
    .await;
    follower.stop().await;
    street.stop().await;
}
