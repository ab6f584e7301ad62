//! Crash atomicity: a `report` killed (SIGKILL) at any instant leaves its incident wholly in
//! the store or wholly absent, and the store opens fine afterwards.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{command, event_count, fixture, photos, sha256_hex, str_of, Gs};
use serde_json::{json, Value};

/// Photos per report: the 12 MP one and the cat.
const PHOTOS: [&str; 2] = ["garbage-12mp-rot6.jpg", "cat-2400x1600-rot8.jpg"];
/// Rounds with a kill (one more runs to completion first).
const ROUNDS: u32 = 12;

fn spawn_report(gs: &Gs, round: u32) -> Child {
    let mut cmd = command(gs.dir.path());
    cmd.arg("--db")
        .arg(&gs.db)
        .args(["report", "--category", "garbage", "--description"])
        .arg(format!("crash round {round}"));
    for p in PHOTOS {
        cmd.arg("--photo").arg(fixture(p));
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gridsync report")
}

/// Lets `child` run for up to `delay` (spinning on `try_wait`), then kills it with SIGKILL
/// unless it already exited; returns its output.
fn kill_after(mut child: Child, delay: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if start.elapsed() >= delay {
            // Killing a child that exited a moment ago (not yet reaped) is harmless.
            child.kill().expect("kill gridsync report");
            break;
        }
        std::thread::yield_now();
    }
    child.wait_with_output().expect("wait for gridsync report")
}

/// The id printed by a report that exited successfully.
fn printed_id(out: &Output) -> String {
    String::from_utf8(out.stdout.clone())
        .expect("utf-8 stdout")
        .trim()
        .to_owned()
}

/// The counts in `status --json` agree with whole incidents only.
fn assert_counts_consistent(gs: &Gs, when: &str) -> u64 {
    let status = gs.status();
    let incidents = status["incidents"].as_u64().expect("incidents");
    let events = status["events"].as_u64().expect("events");
    let per_report = 1 + PHOTOS.len() as u64;
    assert_eq!(
        events,
        incidents * per_report,
        "{when}: {events} events for {incidents} incidents: a partial report is stored ({status})"
    );
    incidents
}

#[test]
fn a_killed_report_is_wholly_there_or_wholly_absent() {
    let (gs, _) = Gs::init();

    // Round 0 runs to completion; its duration places the kill instants of the others.
    let start = Instant::now();
    let out = spawn_report(&gs, 0)
        .wait_with_output()
        .expect("wait for gridsync report");
    let full = start.elapsed();
    assert!(out.status.success(), "uninterrupted report failed: {out:?}");
    let mut completed = vec![printed_id(&out)];
    let mut killed = 0;

    // The kill instant grows from 0 by a quarter of the uninterrupted duration per round until
    // a report completes before its kill; from then on it bisects between the latest instant
    // that was killed and the latest that completed, closing in on the commit. Whatever the
    // instant, the store must hold whole incidents only.
    let (mut last_killed, mut last_done) = (Duration::ZERO, None);
    for round in 1..=ROUNDS {
        let delay = match last_done {
            None => full * (round - 1) / 4,
            Some(done) => (last_killed + done) / 2,
        };
        let out = kill_after(spawn_report(&gs, round), delay);
        if out.status.success() {
            completed.push(printed_id(&out));
            last_done = Some(delay);
        } else {
            killed += 1;
            last_killed = delay;
        }
        let n = assert_counts_consistent(&gs, &format!("after round {round}"));
        assert!(
            n >= completed.len() as u64 && n <= u64::from(round) + 1,
            "after round {round}: {n} incidents, {} reports completed",
            completed.len()
        );
    }
    assert!(killed > 0, "no round was killed: the test proved nothing");

    // Every incident present is whole, and its photos and thumbnails can be read back.
    let incidents = assert_counts_consistent(&gs, "at the end");
    let list = gs.list();
    assert_eq!(list.len() as u64, incidents, "list --json vs status --json");
    let ids: BTreeSet<&str> = list.iter().map(|v| str_of(v, "id")).collect();
    for id in &completed {
        assert!(
            ids.contains(id.as_str()),
            "completed report {id} is missing"
        );
    }
    let mut hashes = BTreeSet::new();
    for v in &list {
        assert_eq!(v["category"], json!("garbage"), "category of {v}");
        assert!(
            str_of(v, "description").starts_with("crash round "),
            "description of {v}"
        );
        assert_eq!(event_count(v), 1 + PHOTOS.len() as u64, "events of {v}");
        let ps = photos(v);
        assert_eq!(ps.len(), PHOTOS.len(), "photos of {v}");
        for p in ps {
            for (hash, thumb) in [(str_of(p, "hash"), false), (str_of(p, "thumb"), false)] {
                let bytes = gs.blob(hash, thumb);
                assert_eq!(sha256_hex(&bytes), hash, "stored blob {hash}");
                hashes.insert(hash.to_owned());
            }
            let thumb = gs.blob(str_of(p, "hash"), true);
            assert_eq!(sha256_hex(&thumb), str_of(p, "thumb"), "blob --thumb");
        }
        assert_eq!(gs.show(str_of(v, "id")), *v, "show vs list");
    }
    // No blob outlives a killed report: the store holds exactly the referenced ones.
    assert_eq!(
        gs.status()["blobs"],
        Value::from(hashes.len()),
        "stored blobs vs blobs referenced by incidents"
    );
}
