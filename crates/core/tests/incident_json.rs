//! The incident JSON as `proto/EVENTS.md` ("Incident JSON") specifies it.
//!
//! The complete example in EVENTS.md is the output of this test's history (two nodes, a
//! photo, comments, an assignment, an escalation, an evaluation and two concurrent edits), as
//! `gridsync show --json` prints it (`serde_json::to_string_pretty`). The test fails when the
//! document and the code disagree; after an intended change, regenerate the example with
//!
//! ```text
//! GRIDSYNC_BLESS=1 cargo test -p gridsync-core --test incident_json
//! ```

use std::path::PathBuf;

use gridsync_core::command::{self, Change};
use gridsync_core::view::rfc3339;
use gridsync_core::{
    BlobHash, Category, Event, GridCode, Hlc, IncidentId, IncidentState, Level, Location,
    LocationSource, NodeId, Payload, PhotoKind, PhotoMeta, Report, Severity, Status, Writer,
};
use serde_json::Value;

const T0: u64 = 1_764_000_000_000; // 2025-11-24T16:00:00Z
const BEGIN: &str = "<!-- BEGIN INCIDENT JSON EXAMPLE -->\n";
const END: &str = "<!-- END INCIDENT JSON EXAMPLE -->";

fn events_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/EVENTS.md")
}

/// A node: its writer and its state of the one incident.
struct Node {
    writer: Writer,
    state: IncidentState,
}

impl Node {
    fn new(seed: u8, name: &str, id: IncidentId) -> Self {
        Self {
            writer: Writer::new(NodeId([seed; 32]), name, 1, Default::default()),
            state: IncidentState::new(id),
        }
    }

    fn grid() -> GridCode {
        "110101/002/014/03".parse().expect("grid")
    }

    fn commit(&mut self, payloads: Vec<Payload>, now_ms: u64, log: &mut Vec<Event>) {
        for p in payloads {
            let e = self.writer.write(self.state.id, &Self::grid(), p, now_ms);
            assert!(self.state.apply(&e));
            log.push(e);
        }
    }

    fn edit(&mut self, changes: Vec<Change>, now_ms: u64, log: &mut Vec<Event>) {
        let planned = command::plan_edit(&self.state, changes).expect("a valid command");
        self.commit(planned, now_ms, log);
    }

    fn receive(&mut self, log: &[Event]) {
        for e in log {
            if self.state.apply(e) {
                self.writer.observe(e.hlc);
            }
        }
    }
}

/// The example incident: every event, in the order written.
fn example() -> (IncidentState, Vec<Event>) {
    let id = IncidentId::new_v7(T0, [0x5a; 10]);
    let mut device = Node::new(0xa1, "patrol-7", id);
    let mut street = Node::new(0xb2, "street-002", id);
    let mut log = Vec::new();

    let photo = PhotoMeta {
        hash: BlobHash::of(b"photo-1"),
        thumb: BlobHash::of(b"thumb-1"),
        kind: PhotoKind::Before,
        width: 1200,
        height: 1600,
        bytes: 245_112,
        captured_at: Some(T0 as i64 - 600_000),
    };
    let report = Report {
        category: Category::from_catalogue("garbage").expect("category"),
        description: "Bags piled by the east gate".into(),
        location: Some(Location::new(39.8927, 116.4284, LocationSource::Exif).expect("location")),
        observed_at: Some(T0 as i64 - 600_000),
        severity: Severity::Normal,
    };
    let payloads = command::plan_report(report, vec![photo]).expect("report");
    device.commit(payloads, T0, &mut log);
    street.receive(&log);

    // The street takes the case on and sends it to sanitation; meanwhile, without having
    // seen that, the device corrects the position and raises the severity.
    street.edit(
        vec![
            Change::Status(Status::Accepted),
            Change::Comment("Sent to sanitation".into()),
        ],
        T0 + 60_000,
        &mut log,
    );
    street.edit(
        vec![
            Change::Status(Status::Dispatched),
            Change::Assign {
                assignee: "sanitation".into(),
                due: Some(T0 as i64 + 86_400_000),
            },
            Change::Location(Location::new(39.8931, 116.4279, LocationSource::Manual).expect("l")),
            Change::Severity(Severity::High),
        ],
        T0 + 120_000,
        &mut log,
    );
    device.edit(
        vec![
            Change::Location(Location::new(39.893, 116.428, LocationSource::Gps).expect("l")),
            Change::Severity(Severity::Urgent),
            Change::Comment("More bags since this morning".into()),
        ],
        T0 + 90_000,
        &mut log,
    );
    street.receive(&log);
    device.receive(&log);
    street.edit(
        vec![Change::Escalate {
            level: Level::Street,
            reason: "needs the street's sanitation team".into(),
        }],
        T0 + 3_600_000,
        &mut log,
    );
    street.edit(
        vec![Change::Status(Status::Resolved)],
        T0 + 7_200_000,
        &mut log,
    );
    street.edit(
        vec![Change::Evaluate {
            score: 4,
            verdict: None,
        }],
        T0 + 7_300_000,
        &mut log,
    );
    device.receive(&log);
    assert_eq!(
        device.state, street.state,
        "both nodes show the same incident"
    );
    (device.state, log)
}

#[test]
fn the_example_in_events_md_is_what_the_code_prints() {
    let (state, log) = example();
    let json = serde_json::to_string_pretty(&state.view()).expect("serialises");
    // Folding the same events in any other order prints the same bytes.
    let reversed = IncidentState::replay(state.id, log.iter().rev());
    assert_eq!(
        serde_json::to_string_pretty(&reversed.view()).expect("serialises"),
        json
    );

    let doc = std::fs::read_to_string(events_md()).expect("read EVENTS.md");
    let start = doc.find(BEGIN).expect("EVENTS.md has the begin marker") + BEGIN.len();
    let end = start
        + doc[start..]
            .find(END)
            .expect("EVENTS.md has the end marker");
    let block = format!("```json\n{json}\n```\n");
    if std::env::var_os("GRIDSYNC_BLESS").is_some_and(|v| v == "1") {
        if doc[start..end] != block {
            let updated = format!("{}{block}{}", &doc[..start], &doc[end..]);
            std::fs::write(events_md(), updated).expect("write EVENTS.md");
        }
        return;
    }
    assert_eq!(
        &doc[start..end],
        block,
        "the incident JSON example in proto/EVENTS.md is stale (GRIDSYNC_BLESS=1 regenerates it)"
    );
}

/// The keys, their order and their JSON types, as the "Incident JSON" table lists them.
#[test]
fn keys_come_in_the_documented_order_with_the_documented_types() {
    let (state, _) = example();
    let value = serde_json::to_value(state.view()).expect("serialises");
    let keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "id",
        "grid",
        "reporter",
        "category",
        "description",
        "status",
        "level",
        "assignee",
        "score",
        "location",
        "photos",
        "comments",
        "conflicts",
        "created_at",
        "updated_at",
        "event_count",
        "severity",
        "verdict",
        "due_at",
        "observed_at",
        "level_reason",
        "assignee_kind",
        "assignee_name",
    ];
    // serde_json without `preserve_order` sorts the keys of a `Value`: compare as sets here,
    // and the order on the printed text below.
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    let printed = serde_json::to_string(&state.view()).expect("serialises");
    let mut at = 0;
    for k in want {
        let found = printed[at..]
            .find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} after position {at}"));
        at += found;
    }
    want.sort_unstable();
    assert_eq!(sorted, want);

    // Conflicts: a location rendered as an object, a severity as its text.
    let conflicts = value["conflicts"].as_array().expect("conflicts");
    let fields: Vec<&str> = conflicts
        .iter()
        .map(|c| c["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["location", "severity"]);
    assert!(conflicts[0]["kept"].is_object() && conflicts[0]["lost"].is_object());
    assert!(conflicts[1]["kept"].is_string());
}

/// Before the report arrives: every field the report sets is null, status and level have
/// their defaults, the grid is that of the least-stamped event held.
#[test]
fn an_incident_without_its_report_prints_nulls_and_defaults() {
    let (_, log) = example();
    let later: Vec<&Event> = log
        .iter()
        .filter(|e| matches!(e.payload, Payload::Commented { .. }))
        .collect();
    let state = IncidentState::replay(log[0].incident, later);
    let v = serde_json::to_value(state.view()).expect("serialises");
    for key in [
        "reporter",
        "category",
        "description",
        "assignee",
        "score",
        "location",
        "severity",
        "verdict",
        "due_at",
        "observed_at",
        "level_reason",
        "assignee_kind",
        "assignee_name",
    ] {
        assert_eq!(v[key], Value::Null, "{key}");
    }
    assert_eq!(v["status"], "reported");
    assert_eq!(v["level"], "grid");
    assert_eq!(v["grid"], "110101/002/014/03");
    assert_eq!(v["event_count"], 2);
    assert_eq!(v["photos"], serde_json::json!([]));
    assert_eq!(v["comments"].as_array().map(Vec::len), Some(2));
    // created_at is the least stamp's time until the report arrives.
    assert_eq!(v["created_at"], "2025-11-24T16:01:00.000Z");

    let empty = IncidentState::new(log[0].incident).view();
    let v = serde_json::to_value(empty).expect("serialises");
    for key in ["grid", "created_at", "updated_at"] {
        assert_eq!(v[key], Value::Null, "{key}");
    }
    assert_eq!(v["event_count"], 0);
}

/// `assignee_kind` and `assignee_name` split the assignee by its prefix, whatever wrote it
/// (a force this build does not know is still a force).
#[test]
fn the_assignee_is_a_department_a_force_or_a_roster_member() {
    let (state, _) = example();
    let report = state.report.as_ref().expect("reported").stamp.id();
    for (assignee, kind, name) in [
        ("sanitation", "department", "sanitation"),
        ("force:firefighter", "force", "firefighter"),
        ("staff:Wang Fang", "staff", "Wang Fang"),
        ("force:traffic", "force", "traffic"),
        ("Staff:x", "department", "Staff:x"),
    ] {
        let mut s = state.clone();
        let mut w = Writer::new(
            NodeId([0xc3; 32]),
            "district",
            1,
            Hlc::new(T0 + 9_000_000, 0),
        );
        let mut pred = s.assignee.heads();
        pred.push(report);
        let e = w.write(
            s.id,
            &Node::grid(),
            Payload::Assigned {
                assignee: assignee.into(),
                due: None,
                pred,
            },
            T0 + 9_000_000,
        );
        assert!(s.apply(&e));
        let v = serde_json::to_value(s.view()).expect("serialises");
        assert_eq!(v["assignee"], assignee);
        assert_eq!(
            (v["assignee_kind"].as_str(), v["assignee_name"].as_str()),
            (Some(kind), Some(name))
        );
    }
}

/// The timestamp format, at its edges.
#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(T0 as i64 + 7), "2025-11-24T16:00:00.007Z");
    assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    assert_eq!(rfc3339(253_402_300_800_000), "+10000-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(-62_167_219_200_001), "-0001-12-31T23:59:59.999Z");
    assert_eq!(rfc3339(i64::MAX), "@9223372036854775807ms");
    assert_eq!(rfc3339(i64::MIN), "@-9223372036854775808ms");
}

/// Latitudes and longitudes print as the shortest decimal that reads back as the same f64.
#[test]
fn location_numbers_print_in_their_shortest_form() {
    use gridsync_core::view::LocationView;
    let show = |lat, lon| {
        let l = Location::new(lat, lon, LocationSource::Gps).expect("location");
        serde_json::to_string(&LocationView::from(&l)).expect("serialises")
    };
    assert_eq!(
        show(39.8927, 116.4284),
        r#"{"lat":39.8927,"lon":116.4284,"source":"gps"}"#
    );
    assert_eq!(
        show(40.0, -0.0),
        r#"{"lat":40.0,"lon":-0.0,"source":"gps"}"#
    );
    assert_eq!(
        show(1e-7, -180.0),
        r#"{"lat":1e-7,"lon":-180.0,"source":"gps"}"#
    );
}
