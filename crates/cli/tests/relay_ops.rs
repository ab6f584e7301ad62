//! `gridsync-relay status` and `backup` against a running relay over real loopback QUIC
//! (`run --listen 127.0.0.1:0`, a `gridsync` handheld syncing): each enrolled node's contact,
//! the events it sent and its backlog, read by a second process and kept across a restart;
//! and an online backup that opens as a relay store and never overwrites. Nothing sleeps for
//! a fixed time: every wait polls a condition with a deadline.

mod ops_common;

use std::path::Path;

use ops_common::{
    device_json, relay_fails, relay_json, relay_ok, street_and_handheld, wait_until, Relay,
};
use serde_json::Value;

const GRID: &str = "110101/002/014/03";

/// The `status --json` entry of node `id`.
fn node_status(street: &Path, id: &str) -> Value {
    let status = relay_json(street, &["status", "--json"]);
    status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node_id"] == id).cloned())
        .unwrap_or_else(|| panic!("node {id} is not in status: {status}"))
}

fn report(pda: &Path, description: &str) -> String {
    let v = device_json(
        pda,
        &[
            "report",
            "--category",
            "garbage",
            "--description",
            description,
            "--json",
        ],
    );
    v["id"].as_str().expect("an incident id").to_owned()
}

#[test]
fn status_shows_each_nodes_contact_events_and_backlog() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (street, pda, pda_id) = street_and_handheld(dir.path(), "street.db", GRID);
    let before = node_status(&street, &pda_id);
    assert_eq!(before["last_contact_ms"], Value::Null, "{before}");
    assert_eq!(before["sessions"], 0);

    let relay = Relay::spawn(
        dir.path(),
        &[
            "--db",
            street.to_str().expect("UTF-8"),
            "run",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let id = report(&pda, "Overflowing bin");
    report(&pda, "Broken railing");
    let synced = relay.sync(&pda);
    let sent = synced["events_up"].as_u64().expect("events_up");
    assert!(sent >= 2, "{synced}");
    // The session's end (with what it downloaded) is recorded as the relay sees it go.
    wait_until("the session's end is recorded", || {
        node_status(&street, &pda_id)["events_in"] == sent
    });
    let n = node_status(&street, &pda_id);
    assert_eq!(n["role"], "device");
    assert_eq!(n["scope"], GRID);
    assert_eq!(n["sessions"], 1, "{n}");
    assert!(n["last_contact_ms"].as_u64().is_some(), "{n}");
    assert!(n["last_contact_age_ms"].as_u64().is_some(), "{n}");
    assert!(n["down_cursor"].as_u64().is_some(), "it downloaded: {n}");
    assert_eq!(n["backlog"], 0, "its own events are not its backlog: {n}");

    // A decision for the handheld's grid, made while the relay runs: its backlog is 1.
    relay_ok(&street, &["edit", &id, "--status", "accepted"]);
    assert_eq!(node_status(&street, &pda_id)["backlog"], 1);
    let status = relay_json(&street, &["status", "--json"]);
    assert!(status["storage"]["db_bytes"].as_u64() > Some(0), "{status}");
    assert_eq!(
        status["upstream"]["last_ack_ms"],
        Value::Null,
        "no upstream"
    );
    assert!(status["pending_upstream"]["own_events"].as_u64() >= Some(1));

    // The next sync brings it down; then the backlog is 0 again.
    let synced = relay.sync(&pda);
    assert!(synced["events_down"].as_u64() >= Some(1), "{synced}");
    wait_until("the second session is recorded", || {
        let n = node_status(&street, &pda_id);
        n["sessions"] == 2 && n["backlog"] == 0
    });
    assert!(relay.terminate().success());
    // Kept in the store: the same after the relay stopped.
    let after = node_status(&street, &pda_id);
    assert_eq!(
        (after["sessions"].clone(), after["events_in"].clone()),
        (2.into(), sent.into())
    );
    let text = relay_ok(&street, &["status"]);
    assert!(text.contains("backlog 0"), "{text}");
}

#[test]
fn a_backup_of_a_running_relay_opens_as_its_store_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (street, pda, _) = street_and_handheld(dir.path(), "street.db", GRID);
    let relay = Relay::spawn(
        dir.path(),
        &[
            "--db",
            street.to_str().expect("UTF-8"),
            "run",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    report(&pda, "Overflowing bin");
    relay.sync(&pda);
    let copy = dir.path().join("backup.db");
    let copy_arg = copy.to_str().expect("UTF-8");
    relay_ok(&street, &["backup", copy_arg]);
    let original = relay_json(&street, &["status", "--json"]);
    let backed_up = relay_json(&copy, &["status", "--json"]);
    for key in ["node_id", "events", "incidents", "blobs"] {
        assert_eq!(backed_up[key], original[key], "{key}");
    }
    assert_eq!(
        relay_json(&copy, &["list", "--json"]),
        relay_json(&street, &["list", "--json"])
    );
    let line = relay_fails(
        dir.path(),
        &["--db", street.to_str().expect("UTF-8"), "backup", copy_arg],
    );
    assert!(
        line.contains("backup.db") && line.contains("already exists"),
        "{line}"
    );
    assert!(!dir.path().join("backup.db.tmp").exists());
    assert!(relay.terminate().success());
}
