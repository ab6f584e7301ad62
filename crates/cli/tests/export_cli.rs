//! `gridsync-relay export`: CSV that Python's `csv` module reads back cell for cell (hostile
//! text included), GeoJSON, JSON lines equal to `list --json`, the filters, `-o` through a
//! temporary file, and one-line errors.
//!
//! The relay's store is made by `gridsync-relay init`; its incidents are written into it with
//! the store library (as a sync would leave them), so the test controls every field.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::expect_one_line_failure;
use gridsync_core::{
    Category, Event, Hlc, IncidentId, Location, LocationSource, NodeId, Payload, Report, Severity,
    Status,
};
use gridsync_store::Store;
use serde_json::Value;

/// 2026-03-02T00:00:00Z.
const T0: u64 = 1_772_409_600_000;
const MIN: u64 = 60_000;
const HOSTILE: &str = "=cmd|' /C calc'!A0, \"quoted\"\nsecond line";

fn relay(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridsync-relay"))
        .env_remove("GRIDSYNC_RELAY_DB")
        .env_remove("GRIDSYNC_LOG")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run gridsync-relay")
}

fn ok(db: &Path, args: &[&str]) -> Output {
    let out = relay(db, args);
    assert!(
        out.status.success(),
        "gridsync-relay {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn event(id: IncidentId, seq: u64, minute: u64, author: &str, payload: Payload) -> Event {
    Event {
        origin: NodeId([0xd1; 32]),
        seq,
        hlc: Hlc::new(T0 + minute * MIN, 0),
        incident: id,
        grid: "110101/002/014/03".parse().expect("grid"),
        author: author.into(),
        payload,
        signature: None,
    }
}

fn report(
    id: IncidentId,
    seq: u64,
    minute: u64,
    description: &str,
    at: Option<(f64, f64)>,
) -> Event {
    event(
        id,
        seq,
        minute,
        "wang-li",
        Payload::Reported(Report {
            category: Category::from_catalogue("garbage").expect("category"),
            description: description.into(),
            location: at
                .map(|(lat, lon)| Location::new(lat, lon, LocationSource::Exif).expect("location")),
            observed_at: None,
            severity: Severity::Normal,
        }),
    )
}

fn status(id: IncidentId, seq: u64, minute: u64, status: Status) -> Event {
    event(
        id,
        seq,
        minute,
        "street-ops",
        Payload::StatusChanged {
            status,
            pred: vec![],
        },
    )
}

/// A district relay holding three incidents: a hostile description with a location at
/// minute 0; a plain one at minute 60, rejected; one at minute 120, closed.
fn setup(dir: &Path) -> (std::path::PathBuf, [IncidentId; 3]) {
    let db = dir.join("relay.db");
    ok(
        &db,
        &["init", "--name", "district-110101", "--role", "district"],
    );
    let ids = [1u8, 2, 3].map(|n| IncidentId::new_v7(T0, [n; 10]));
    let events = vec![
        report(ids[0], 1, 0, HOSTILE, Some((39.8927, 116.4284))),
        report(ids[1], 2, 60, "bins, full", None),
        status(ids[1], 3, 61, Status::Rejected),
        report(ids[2], 4, 120, "@home +1 -1", Some((39.89, -116.43))),
        status(ids[2], 5, 121, Status::Closed),
    ];
    let mut store = Store::open(&db).expect("open");
    store.append(&events, &[], None).expect("append");
    store.close().expect("close");
    (db, ids)
}

/// `text` read by Python's csv module: the rows as a JSON array of arrays of strings.
fn python_csv(text: &str) -> Vec<Vec<String>> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import csv, io, json, sys\n\
             data = sys.stdin.buffer.read().decode('utf-8')\n\
             print(json.dumps(list(csv.reader(io.StringIO(data, newline='')))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (Debian's python3 package) runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "python3 failed");
    serde_json::from_slice(&out.stdout).expect("rows")
}

#[test]
fn csv_reads_back_in_python_cell_for_cell() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, ids) = setup(dir.path());
    let out = ok(&db, &["export", "--format", "csv"]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(out.stderr.is_empty(), "nothing but the export");
    assert!(text.contains("\r\n"));
    let rows = python_csv(&text);
    assert_eq!(rows.len(), 4, "{rows:?}");
    let header = &rows[0];
    let col = |row: &Vec<String>, name: &str| {
        let i = header.iter().position(|c| c == name).expect(name);
        row[i].clone()
    };
    for name in [
        "id",
        "reported_at",
        "status",
        "level",
        "category",
        "severity",
        "grid",
        "lat",
        "lon",
        "assignee",
        "due",
        "overdue",
        "description",
        "photos",
        "updated_at",
    ] {
        assert!(header.iter().any(|c| c == name), "{name}");
    }
    assert_eq!(col(&rows[1], "id"), ids[0].to_string());
    assert_eq!(col(&rows[1], "description"), format!("'{HOSTILE}"));
    assert_eq!(col(&rows[1], "lat"), "39.8927");
    assert_eq!(col(&rows[1], "reported_at"), "2026-03-02T00:00:00.000Z");
    assert_eq!(col(&rows[2], "description"), "bins, full");
    assert_eq!(col(&rows[2], "status"), "rejected");
    assert_eq!(col(&rows[3], "description"), "'@home +1 -1");
    assert_eq!(col(&rows[3], "lon"), "-116.43");
    assert_eq!(col(&rows[3], "photos"), "0");
}

#[test]
fn output_file_geojson_jsonl_and_filters() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, ids) = setup(dir.path());
    let file = dir.path().join("incidents.geojson");
    let out = ok(
        &db,
        &[
            "export",
            "--format",
            "geojson",
            "--status",
            "closed,rejected",
            "-o",
            file.to_str().expect("path"),
        ],
    );
    assert!(out.stdout.is_empty(), "nothing on stdout with -o");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("exported 2 incidents to {}", file.display())
    );
    assert!(!dir.path().join("incidents.geojson.tmp").exists());
    let v: Value = serde_json::from_slice(&std::fs::read(&file).expect("file")).expect("GeoJSON");
    assert_eq!(v["type"], "FeatureCollection");
    let features = v["features"].as_array().expect("features");
    assert_eq!(features.len(), 2);
    assert!(features[0]["geometry"].is_null());
    assert_eq!(features[1]["geometry"]["type"], "Point");
    assert_eq!(features[1]["geometry"]["coordinates"][0], -116.43);
    assert_eq!(features[1]["properties"]["id"], ids[2].to_string());

    // --status repeated is the same as comma-separated.
    let repeated = ok(
        &db,
        &[
            "export", "--format", "jsonl", "--status", "closed", "--status", "rejected",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&repeated.stdout).lines().count(), 2);

    // JSON lines are `list --json`'s incidents, one per line, here those from minute 60.
    let list: Vec<Value> =
        serde_json::from_slice(&ok(&db, &["list", "--json"]).stdout).expect("list");
    let out = ok(
        &db,
        &[
            "export",
            "--format",
            "jsonl",
            "--since",
            "2026-03-02T09:00:00+08:00",
        ],
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines, list[1..].to_vec());
}

#[test]
fn bad_arguments_fail_in_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, _) = setup(dir.path());
    for args in [
        &["export", "--format", "xlsx"][..],
        &["export", "--format", "csv", "--status", "open"],
        &["export", "--format", "csv", "--since", "yesterday"],
        &["export", "--format", "csv", "-o", "/nonexistent-dir/x.csv"],
    ] {
        let out = relay(&db, args);
        let line = expect_one_line_failure(args, &out);
        assert!(out.stdout.is_empty(), "{line}");
    }
    let line = expect_one_line_failure(
        &["export"],
        &relay(
            &db,
            &["export", "--format", "csv", "-o", "/nonexistent-dir/x.csv"],
        ),
    );
    assert!(line.contains("/nonexistent-dir/x.csv.tmp"), "{line}");
}
