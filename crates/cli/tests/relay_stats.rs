//! `gridsync-relay stats` against the hand-computed figures of `fixtures/stats/`.
//!
//! Four handhelds (the device library with a fixed clock) report twelve incidents and hand
//! their events to a district relay's store through the admission a sync session applies; the
//! district's operator decisions are made through the same library, each at a chosen minute.
//! Every event is thus stamped on a whole minute after 2026-03-02T00:00:00Z (checked below),
//! and `fixtures/stats/README.md` derives every figure of the two expected JSON files from
//! the timeline written out here and there. The binary's output must match them exactly
//! (`now_ms` aside, the one figure that depends on when the test runs; every due time is long
//! past or far ahead, so `overdue` does not).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gridsync_core::{
    Category, Change, GridCode, IncidentId, Level, Millis, Scope, Severity, Status,
};
use gridsync_device::{Device, FixedEnv, NewReport};
use gridsync_proto::{Admission, Authority, Origins};
use gridsync_store::Store;
use serde_json::Value;

/// 2026-03-02T00:00:00Z.
const T0: u64 = 1_772_409_600_000;
const MIN: u64 = 60_000;

/// The four handhelds: name and grid.
const DEVICES: [(&str, &str); 4] = [
    ("wang-li", "110101/002/014/03"),
    ("zhao-min", "110101/002/014/05"),
    ("chen-jie", "110101/002/015/01"),
    ("liu-yang", "110101/003/021/02"),
];

fn at(minute: u64) -> Millis {
    (T0 + minute * MIN) as Millis
}

/// 2099-12-31T00:00:00Z: a due time that is never past while this test is maintained.
const FAR: Millis = 4_102_358_400_000;

fn accepted() -> Vec<Change> {
    vec![Change::Status(Status::Accepted)]
}
fn status(s: Status) -> Vec<Change> {
    vec![Change::Status(s)]
}
fn escalate(level: Level) -> Vec<Change> {
    vec![Change::Escalate {
        level,
        reason: "beyond the grid".into(),
    }]
}
/// Assigns and moves to `s` in one decision (two events, one minute).
fn assign(assignee: &str, due: Option<Millis>, s: Status) -> Vec<Change> {
    vec![
        Change::Assign {
            assignee: assignee.into(),
            due,
        },
        Change::Status(s),
    ]
}
fn evaluate(score: u8) -> Vec<Change> {
    vec![Change::Evaluate {
        score,
        verdict: None,
    }]
}

/// One incident: the reporting handheld (index into [`DEVICES`]), the report minute, the
/// category, and the district's decisions as (minutes after the report, changes).
struct Case {
    device: usize,
    reported: u64,
    category: &'static str,
    decisions: Vec<(u64, Vec<Change>)>,
}

/// The timeline of `fixtures/stats/README.md`, I1 to I12.
fn cases() -> Vec<Case> {
    use Status::*;
    let case = |device, reported, category, decisions| Case {
        device,
        reported,
        category,
        decisions,
    };
    vec![
        // I1: closed at grid by its grid assistant, evaluated 5.
        case(
            0,
            0,
            "garbage",
            vec![
                (10, accepted()),
                (30, assign("staff:wang-li", None, InProgress)),
                (70, status(Resolved)),
                (100, status(Verified)),
                (120, status(Closed)),
                (130, evaluate(5)),
            ],
        ),
        // I2: escalated to the community, dispatched, closed there, evaluated 4.
        case(
            0,
            60,
            "illegal-ad",
            vec![
                (15, accepted()),
                (30, escalate(Level::Community)),
                (45, assign("city-management", None, Dispatched)),
                (90, status(InProgress)),
                (175, status(Resolved)),
                (235, status(Verified)),
                (270, status(Closed)),
                (280, evaluate(4)),
            ],
        ),
        // I3: dispatched, due at minute 300: overdue.
        case(
            1,
            120,
            "garbage",
            vec![
                (5, accepted()),
                (20, assign("sanitation", Some(at(300)), Dispatched)),
            ],
        ),
        // I4: escalated to the street, closed there (its past due time no longer matters),
        // evaluated 2.
        case(
            1,
            180,
            "sewage",
            vec![
                (20, accepted()),
                (30, escalate(Level::Street)),
                (60, assign("sanitation", Some(at(300)), Dispatched)),
                (80, status(InProgress)),
                (240, status(Resolved)),
                (300, status(Verified)),
                (320, status(Closed)),
                (330, evaluate(2)),
            ],
        ),
        // I5: escalated to the district, closed there, evaluated 3.
        case(
            2,
            240,
            "fire-hazard",
            vec![
                (5, accepted()),
                (10, escalate(Level::District)),
                (30, assign("fire-brigade", None, Dispatched)),
                (360, status(Resolved)),
                (420, status(Verified)),
                (480, status(Closed)),
                (490, evaluate(3)),
            ],
        ),
        // I6: rejected, then closed (never accepted), at grid.
        case(
            2,
            300,
            "garbage",
            vec![(10, status(Rejected)), (20, status(Closed))],
        ),
        // I7: handled by its grid assistant, resolved, evaluated 4.
        case(
            3,
            360,
            "illegal-parking",
            vec![
                (30, accepted()),
                (40, assign("staff:liu-yang", None, InProgress)),
                (60, status(Resolved)),
                (70, evaluate(4)),
            ],
        ),
        // I8: only reported.
        case(3, 420, "noise", vec![]),
        // I9: in progress with a street officer, due at minute 600: overdue.
        case(
            0,
            480,
            "garbage",
            vec![
                (10, accepted()),
                (20, assign("staff:sun-hao", Some(at(600)), InProgress)),
            ],
        ),
        // I10: dispatched, sent back, dispatched again; due in 2099.
        case(
            1,
            540,
            "garbage",
            vec![
                (10, accepted()),
                (20, assign("sanitation", Some(FAR), Dispatched)),
                (60, accepted()),
                (80, status(Dispatched)),
            ],
        ),
        // I11: resolved at once by a grid assistant, closed, then reopened.
        case(
            2,
            600,
            "dispute",
            vec![
                (15, accepted()),
                (40, assign("staff:wang-li", None, Resolved)),
                (65, status(Verified)),
                (100, status(Closed)),
                (110, accepted()),
            ],
        ),
        // I12: escalated to the community, dispatched to a street officer, closed,
        // evaluated 1.
        case(
            0,
            660,
            "safety",
            vec![
                (10, accepted()),
                (15, escalate(Level::Community)),
                (45, assign("staff:sun-hao", None, Dispatched)),
                (80, status(Resolved)),
                (100, status(Verified)),
                (120, status(Closed)),
                (130, evaluate(1)),
            ],
        ),
    ]
}

enum Step {
    Report(&'static str),
    Decide(Vec<Change>),
}

/// Builds the district's store in `dir`: plays every report and decision of [`cases`] in
/// time order (so that no node's clock is ever ahead of the minute it acts at).
fn build(dir: &Path) -> PathBuf {
    let district = dir.join("district.db");
    let mut relay = Device::init_node(
        &district,
        "district-110101",
        "district",
        "",
        FixedEnv::new(T0, 1),
    )
    .expect("init the district");
    let mut devices: Vec<Device<FixedEnv>> = DEVICES
        .iter()
        .enumerate()
        .map(|(i, (name, grid))| {
            let grid: GridCode = grid.parse().expect("grid");
            Device::init_with(
                &dir.join(format!("{name}.db")),
                name,
                grid,
                FixedEnv::new(T0, 10 + i as u64),
            )
            .expect("init a handheld")
        })
        .collect();

    let cases = cases();
    // Dispatching to `staff:NAME` needs NAME on the roster of the incident's grid (and a
    // roster change needs the grid served here): each handheld is enrolled at the district,
    // and every staff member assigned is put on the roster at T0 (roster events are no
    // incident's, so no figure counts them).
    for d in &devices {
        Store::open(&district)
            .expect("open the district's store")
            .enroll(
                &d.node_id(),
                gridsync_proto::Role::Device,
                &Scope::from(d.grid().expect("a handheld's grid")),
                T0,
            )
            .expect("enroll");
    }
    for c in &cases {
        let grid: GridCode = DEVICES[c.device].1.parse().expect("grid");
        for (_, changes) in &c.decisions {
            for change in changes {
                if let Change::Assign { assignee, .. } = change {
                    if let Some(name) = assignee.strip_prefix("staff:") {
                        relay
                            .staff_add(
                                &grid,
                                gridsync_core::StaffEntry {
                                    name: name.into(),
                                    force: gridsync_core::Force::Assistant,
                                    phone: None,
                                    device: None,
                                },
                            )
                            .expect("on the roster");
                    }
                }
            }
        }
    }
    let mut steps: Vec<(u64, usize, Step)> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        steps.push((c.reported, i, Step::Report(c.category)));
        for (after, changes) in &c.decisions {
            steps.push((c.reported + after, i, Step::Decide(changes.clone())));
        }
    }
    // Stable: an incident's own steps are at distinct minutes, so their order is kept.
    steps.sort_by_key(|(minute, _, _)| *minute);

    let mut ids: Vec<Option<IncidentId>> = vec![None; cases.len()];
    for (minute, i, step) in steps {
        let now = T0 + minute * MIN;
        match step {
            Step::Report(category) => {
                let device = &mut devices[cases[i].device];
                device.env_mut().now_ms = now;
                let id = device
                    .report(NewReport {
                        category: Category::from_catalogue(category).expect("category"),
                        description: format!("I{}", i + 1),
                        location: None,
                        severity: Severity::Normal,
                        observed_at: None,
                        photos: vec![],
                    })
                    .expect("report");
                ids[i] = Some(id);
                // The handheld's sync: its events, admitted as a relay admits a device's.
                let events = device.store().events_of(&id).expect("events");
                let scope = Scope::from(device.grid().expect("a handheld's grid"));
                let batch = Admission {
                    from: device.node_id(),
                    scope: &scope,
                    origins: Origins::Only(device.node_id()),
                    max_events: usize::MAX,
                    max_drift_ms: gridsync_core::hlc::DEFAULT_MAX_DRIFT_MS,
                    accept_unsigned_before: None,
                    authority: Authority::Device,
                }
                .admit_events(&events, now)
                .expect("admitted");
                Store::open(&district)
                    .expect("open the district's store")
                    .append_received(&batch, &[])
                    .expect("stored");
            }
            Step::Decide(changes) => {
                let id = ids[i].expect("reported before any decision");
                relay.env_mut().now_ms = now;
                relay
                    .edit(id, changes, vec![])
                    .unwrap_or_else(|e| panic!("I{} at minute {minute}: {e}", i + 1));
            }
        }
    }

    // The premise of the hand computation: every event sits on its chosen whole minute.
    let store = Store::open(&district).expect("open");
    let incidents = store.incidents().expect("incidents");
    assert_eq!(incidents.len(), 12);
    let mut events = 0;
    for s in &incidents {
        for e in store.events_of(&s.id).expect("events") {
            assert_eq!(
                (e.hlc.wall_ms - T0) % MIN,
                0,
                "an event off its minute: {e:?}"
            );
            events += 1;
        }
    }
    // 12 reports and every decision (an assignment with its status change is two events).
    let decisions: usize = cases
        .iter()
        .flat_map(|c| &c.decisions)
        .map(|(_, changes)| changes.len())
        .sum();
    assert_eq!(events, 12 + decisions);
    district
}

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

fn relay_ok(db: &Path, args: &[&str]) -> String {
    let out = relay(db, args);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "gridsync-relay {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/stats")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every difference between `got` and `want`, by JSON path (numbers compared by value, so
/// `1` and `1.0` agree).
fn differences(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => differences(&format!("{path}.{k}"), gv, wv, out),
                    None => out.push(format!("{path}.{k}: missing (want {wv})")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{path}.{k}: not in the fixture (got {})", g[k]));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if g.len() != w.len() {
                out.push(format!("{path}: {} entries, want {}", g.len(), w.len()));
            }
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                differences(&format!("{path}[{i}]"), gv, wv, out);
            }
        }
        (Value::Number(g), Value::Number(w)) if g.as_f64() == w.as_f64() => {}
        _ if got == want => {}
        _ => out.push(format!("{path}: got {got}, want {want}")),
    }
}

fn check(got: &mut Value, want_file: &str) {
    let now = got
        .as_object_mut()
        .and_then(|o| o.remove("now_ms"))
        .and_then(|v| v.as_i64())
        .expect("now_ms");
    assert!(
        now > at(100_000),
        "now_ms {now} is the time the command ran"
    );
    let mut diffs = Vec::new();
    differences("", got, &fixture(want_file), &mut diffs);
    assert!(
        diffs.is_empty(),
        "stats differ from fixtures/stats/{want_file}:\n  {}\nfull output:\n{}",
        diffs.join("\n  "),
        serde_json::to_string_pretty(got).unwrap_or_default()
    );
}

#[test]
fn stats_match_the_hand_computed_fixture() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = build(dir.path());

    let mut all: Value = serde_json::from_str(&relay_ok(&db, &["stats", "--json"])).expect("JSON");
    check(&mut all, "all.json");

    let mut window: Value = serde_json::from_str(&relay_ok(
        &db,
        &[
            "stats",
            "--since",
            "2026-03-02T02:00:00Z",
            "--until",
            "2026-03-02T18:00:00+08:00",
            "--by",
            "community",
            "--json",
        ],
    ))
    .expect("JSON");
    check(&mut window, "window-by-community.json");

    // The table says the same, with the level split against the target.
    let text = relay_ok(&db, &["stats"]);
    for line in [
        "incidents   12 (all held here)",
        "status      reported 1, accepted 1, rejected 0, dispatched 2, in_progress 1, resolved 1, verified 0, closed 6",
        "overdue     2 ",
        "closed at level (6 closed)",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    let row = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} row in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row("the community"),
        "the community (grid + community) 4 66.7% 80-85%"
    );
    assert_eq!(row("street"), "street 1 16.7% 10-15%");
    assert_eq!(row("district"), "district 1 16.7% under 5%");
    assert_eq!(row("to closed"), "to closed 7 2h00m 8h00m");
    assert_eq!(row("wang-li"), "wang-li 4 2 1");
    let by_grid = relay_ok(&db, &["stats", "--by", "grid"]);
    assert_eq!(
        by_grid
            .lines()
            .find(|l| l.trim_start().starts_with("110101/002/014/03"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")),
        // I1, I2, I9, I12: three closed (grid, community, community), I9 overdue; accepted
        // after 10, 15, 10, 10 minutes; closed after 120, 270, 120.
        Some("110101/002/014/03 4 1 3 100.0% 0.0% 0.0% 10m 2h00m".to_owned()),
        "{by_grid}"
    );
}

#[test]
fn a_window_the_wrong_way_round_is_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("r.db");
    relay_ok(&db, &["init", "--name", "district", "--role", "district"]);
    for args in [
        &[
            "stats",
            "--since",
            "2026-03-02T10:00:00Z",
            "--until",
            "2026-03-02T10:00:00Z",
        ][..],
        &["stats", "--since", "yesterday"],
        &["stats", "--by", "department"],
    ] {
        let out = relay(&db, args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
    let empty: Value = serde_json::from_str(&relay_ok(&db, &["stats", "--json"])).expect("JSON");
    assert_eq!(empty["total"], 0);
    assert!(empty["closed_at_level"]["grid"]["share"].is_null());
}
