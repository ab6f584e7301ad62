//! The relay's metrics over real loopback QUIC (127.0.0.1, port 0): a handheld (the device
//! library) syncs two reports, one with a photo, to a street relay, then a handheld that is
//! not enrolled is refused; the counters of `RelayHandle::metrics` and the text `render`
//! writes follow. Nothing sleeps for a fixed time: every wait polls a condition with a
//! deadline.

use std::time::{Duration, Instant};

use gridsync_core::{Category, GridCode, Scope, Severity};
use gridsync_device::{Device, NewReport, PhotoInput, SyncTarget, SystemEnv};
use gridsync_net::client::SyncOptions;
use gridsync_proto::{ErrorCode, Role};
use gridsync_relay::metrics::Metrics;
use gridsync_store::Store;

const GRID: &str = "110101/002/014/03";
const DEADLINE: Duration = Duration::from_secs(30);

fn report(description: &str, photo: Option<&[u8]>) -> NewReport {
    NewReport {
        category: Category::from_catalogue("garbage").expect("a category"),
        description: description.into(),
        location: None,
        severity: Severity::Normal,
        observed_at: None,
        photos: photo
            .map(|bytes| PhotoInput {
                name: "street.jpg".into(),
                bytes: bytes.to_vec(),
            })
            .into_iter()
            .collect(),
    }
}

async fn wait_until(what: &str, metrics: &Metrics, condition: impl Fn(&Metrics) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition(metrics) {
        assert!(
            Instant::now() < deadline,
            "gave up waiting until {what}:\n{}",
            metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the sample line `name{labels}` in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_follow_a_handhelds_sync_and_count_a_refusal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let street = dir.path().join("street.db");
    Device::init_node(&street, "street-002", "street", "", SystemEnv).expect("a street store");
    let grid: GridCode = GRID.parse().expect("a grid");
    let mut pda =
        Device::init(&dir.path().join("pda.db"), "patrol-7", grid.clone()).expect("a handheld");
    Store::open(&street)
        .expect("the street store")
        .enroll(&pda.node_id(), Role::Device, &Scope::from(&grid), 1_000)
        .expect("enrolled");
    let photo = include_bytes!("../../../fixtures/photos/street-640x427-gps.jpg");
    pda.report(report("Overflowing bin", Some(photo)))
        .expect("a report with a photo");
    pda.report(report("Broken railing", None))
        .expect("a report");

    let relay = gridsync_relay::start(&street, "127.0.0.1:0".parse().expect("addr"), None)
        .await
        .expect("the street relay starts");
    let metrics = relay.metrics();
    let target = SyncTarget {
        addr: relay.local_addr,
        relay_id: relay.node_id,
    };
    let synced = pda
        .sync(target, &SyncOptions::default(), &mut |_| {})
        .await
        .expect("the handheld syncs");
    let n = synced.summary.events_up;
    assert!(n >= 2, "{:?}", synced.summary);
    assert_eq!(synced.summary.blobs_up, 2, "the photo and its thumbnail");

    // The session's end is noted once the relay has seen the handheld go.
    wait_until("the session is over", &metrics, |m| {
        m.sessions_active() == 0
    })
    .await;
    assert_eq!(metrics.sessions_started(Role::Device), 1);
    assert_eq!(metrics.events_in(), n);
    assert!(
        metrics.bytes_in() > synced.summary.blob_bytes_up,
        "frames and blobs"
    );
    assert!(metrics.bytes_out() > 0);
    assert!(metrics.commits() >= 1, "the batch's commit is timed");
    assert_eq!(metrics.refusals(ErrorCode::NotEnrolled), 0);

    // A handheld nobody enrolled is refused, and counted under its reason.
    let stranger =
        Device::init(&dir.path().join("stranger.db"), "nobody", grid).expect("another handheld");
    let refused = stranger
        .sync(target, &SyncOptions::default(), &mut |_| {})
        .await;
    assert!(refused.is_err(), "an unenrolled handheld is refused");
    wait_until("the refusal is counted", &metrics, |m| {
        m.refusals(ErrorCode::NotEnrolled) == 1
    })
    .await;
    assert_eq!(
        metrics.sessions_started(Role::Device),
        1,
        "no session granted"
    );

    let text = metrics.render();
    assert_eq!(
        sample(&text, r#"gridsync_refusals_total{reason="NotEnrolled"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"gridsync_sessions_started_total{role="device"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&text, "gridsync_events_in_total"), Some(n as f64));
    assert!(sample(&text, r#"gridsync_bytes_in_total{kind="blobs"}"#).is_some_and(|b| b > 0.0));
    // A street with no upstream: not connected, and everything it holds is backlog.
    assert_eq!(sample(&text, "gridsync_upstream_connected"), Some(0.0));
    assert_eq!(sample(&text, "gridsync_backlog_blobs"), Some(2.0));
    relay.stop().await;
}
