//! `gridsync-relay export`: the incidents as CSV, GeoJSON or JSON lines.
//!
//! [`write()`] is what the command line and the console call. The three formats:
//!
//! - **CSV** (RFC 4180): UTF-8, CRLF line ends, a header row of [`COLUMNS`], a field quoted
//!   when it holds a quote, a comma, a CR or an LF (quotes doubled). Against spreadsheet
//!   formula injection, a text cell starting with `=`, `+`, `-`, `@`, a tab or a CR is
//!   prefixed with `'` (numbers, such as a negative longitude, are left as they are).
//! - **GeoJSON** (RFC 7946): one `FeatureCollection`, one `Feature` per incident with a
//!   `Point` geometry `[lon, lat]`, or a `null` geometry when the location is unknown; its
//!   properties are the CSV columns with JSON types (numbers, booleans, `null`), no prefix.
//! - **JSON lines**: one incident JSON per line ([`gridsync_core::IncidentView`], exactly what
//!   `gridsync-relay list --json` prints per incident, on one line).
//!
//! The columns are for operators: they include the reporter's name (`reported_by`), never a
//! node id. Times are RFC 3339 UTC with milliseconds. `reported_at` is the report time of
//! `docs/STATS.md` (the wall time of the `Reported` event); an incident whose report has not
//! arrived has none, and is left out as soon as the filter has a `since`. Incidents come in the
//! store's order, oldest first.

use std::io::Write;

use gridsync_core::view::rfc3339;
use gridsync_core::{IncidentState, Millis};
use gridsync_store::{Store, StoreError};
use serde_json::{json, Value};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// An RFC 7946 GeoJSON FeatureCollection.
    GeoJson,
    /// One incident JSON per line.
    JsonLines,
}

impl Format {
    /// The format's name on the command line (`csv`, `geojson`, `jsonl`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::GeoJson => "geojson",
            Format::JsonLines => "jsonl",
        }
    }

    /// The HTTP content type of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::GeoJson => "application/geo+json",
            Format::JsonLines => "application/jsonl",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "csv" => Ok(Format::Csv),
            "geojson" => Ok(Format::GeoJson),
            "jsonl" => Ok(Format::JsonLines),
            other => Err(format!(
                "unknown export format {other:?}; expected one of: csv, geojson, jsonl"
            )),
        }
    }
}

/// Which incidents: reported at or after `since_ms`, and in one of `statuses` (empty: any).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only incidents reported at or after this time (Unix ms).
    pub since_ms: Option<u64>,
    /// Only incidents whose current status is one of these (empty: any).
    pub statuses: Vec<gridsync_core::Status>,
}

impl Filter {
    /// Whether `state` passes the filter.
    pub fn accepts(&self, state: &IncidentState) -> bool {
        let reported = state.report.as_ref().map(|r| r.stamp.hlc.wall_ms);
        let since_ok = match (self.since_ms, reported) {
            (None, _) => true,
            (Some(s), Some(r)) => r >= s,
            (Some(_), None) => false,
        };
        since_ok && (self.statuses.is_empty() || self.statuses.contains(&state.status()))
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

/// The CSV columns, in order (also the GeoJSON properties).
pub const COLUMNS: &[&str] = &[
    "id",
    "reported_at",
    "reported_by",
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
];

/// One incident's row: the values of [`COLUMNS`] as JSON values.
fn row(state: &IncidentState, now_ms: u64) -> Vec<Value> {
    let view = state.view();
    let time = |ms: u64| json!(rfc3339(Millis::try_from(ms).unwrap_or(Millis::MAX)));
    let location = view.location.as_ref();
    vec![
        json!(view.id),
        state
            .report
            .as_ref()
            .map_or(Value::Null, |r| time(r.stamp.hlc.wall_ms)),
        json!(view.reporter),
        json!(view.status),
        json!(view.level),
        json!(view.category),
        json!(view.severity),
        json!(view.grid),
        location.map_or(Value::Null, |l| json!(l.lat)),
        location.map_or(Value::Null, |l| json!(l.lon)),
        json!(view.assignee),
        json!(view.due_at),
        json!(state.is_overdue(Millis::try_from(now_ms).unwrap_or(Millis::MAX))),
        json!(view.description),
        json!(view.photos.len()),
        json!(view.updated_at),
    ]
}

/// A text cell made safe for spreadsheets: a leading `=`, `+`, `-`, `@`, tab or CR gets a `'`.
fn defuse(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A text cell of a CSV file: defused against formula injection (a leading `=`, `+`, `-`,
/// `@`, tab or CR gets a `'`), then quoted when
/// needed (RFC 4180). For other CSV files that hold operator-facing text (the console's
/// evaluation download).
pub fn csv_text(text: &str) -> String {
    csv_field(&defuse(text))
}

/// A time as an operator or a form gives it, in Unix ms: RFC 3339
/// (`2026-03-02T08:00:00+08:00`), or in UTC a date (`2026-03-02`, midnight) or a date and time
/// without offset (`2026-03-02T08:00` or `2026-03-02T08:00:00`, what an HTML `datetime-local`
/// input sends). The error says what was expected.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let ms = chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M"))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                        .map(|d| d.and_time(chrono::NaiveTime::MIN))
                })
                .map(|d| d.and_utc().timestamp_millis())
        })
        .map_err(|_| format!("{t:?} is not a time like 2026-03-02T08:00:00+08:00 or 2026-03-02"))?;
    u64::try_from(ms).map_err(|_| format!("{t:?} is before 1970"))
}

/// One CSV field, quoted when needed (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => defuse(s),
        other => other.to_string(),
    };
    csv_field(&text)
}

fn csv_line(out: &mut dyn Write, cells: impl Iterator<Item = String>) -> std::io::Result<()> {
    let line: Vec<String> = cells.collect();
    out.write_all(line.join(",").as_bytes())?;
    out.write_all(b"\r\n")
}

/// One incident as a GeoJSON Feature (the properties are [`COLUMNS`]).
pub fn feature(state: &IncidentState, now_ms: u64) -> Value {
    let values = row(state, now_ms);
    let properties: serde_json::Map<String, Value> = COLUMNS
        .iter()
        .map(|c| (*c).to_owned())
        .zip(values)
        .collect();
    let geometry = state.location.value().map_or(
        Value::Null,
        |l| json!({ "type": "Point", "coordinates": [l.lon(), l.lat()] }),
    );
    json!({
        "type": "Feature",
        "id": state.id.to_string(),
        "geometry": geometry,
        "properties": properties,
    })
}

/// Writes the incidents `filter` selects in `format` to `out`; returns how many.
pub fn write(
    store: &Store,
    format: Format,
    filter: &Filter,
    now_ms: u64,
    out: &mut dyn Write,
) -> Result<usize, ExportError> {
    let incidents: Vec<IncidentState> = store
        .incidents()?
        .into_iter()
        .filter(|s| filter.accepts(s))
        .collect();
    match format {
        Format::Csv => {
            csv_line(out, COLUMNS.iter().map(|c| csv_field(c)))?;
            for state in &incidents {
                csv_line(out, row(state, now_ms).iter().map(csv_cell))?;
            }
        }
        Format::GeoJson => {
            let features: Vec<Value> = incidents.iter().map(|s| feature(s, now_ms)).collect();
            let collection = json!({ "type": "FeatureCollection", "features": features });
            serde_json::to_writer_pretty(&mut *out, &collection).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        Format::JsonLines => {
            for state in &incidents {
                serde_json::to_writer(&mut *out, &state.view()).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    tracing::debug!(
        format = format.as_str(),
        count = incidents.len(),
        "exported"
    );
    Ok(incidents.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use gridsync_core::{
        Category, Event, Hlc, IncidentId, Location, LocationSource, NodeId, Payload, Report,
        Severity, Status,
    };

    use super::*;

    pub const DEVICE: NodeId = NodeId([0xd1; 32]);
    pub const RELAY: NodeId = NodeId([0xe2; 32]);
    /// 2026-03-02T00:00:00Z.
    pub const T0: u64 = 1_772_409_600_000;
    pub const MIN: u64 = 60_000;

    /// Builds the events of one incident (unsigned: `Store::append` takes them as the node's
    /// own, which is all these tests need).
    pub struct Case {
        pub id: IncidentId,
        grid: &'static str,
        pub events: Vec<Event>,
        seq: u64,
    }

    impl Case {
        pub fn new(n: u8, grid: &'static str) -> Self {
            Self {
                id: IncidentId::new_v7(T0, [n; 10]),
                grid,
                events: Vec::new(),
                seq: u64::from(n) * 100,
            }
        }

        pub fn push(&mut self, origin: NodeId, author: &str, minute: u64, payload: Payload) {
            self.seq += 1;
            self.events.push(Event {
                origin,
                seq: self.seq,
                hlc: Hlc::new(T0 + minute * MIN, 0),
                incident: self.id,
                grid: self.grid.parse().expect("grid"),
                author: author.into(),
                payload,
                signature: None,
            });
        }

        pub fn report(
            mut self,
            reporter: &str,
            minute: u64,
            category: &str,
            description: &str,
            at: Option<(f64, f64)>,
        ) -> Self {
            self.push(
                DEVICE,
                reporter,
                minute,
                Payload::Reported(Report {
                    category: Category::try_from(category.to_owned()).expect("category"),
                    description: description.into(),
                    location: at.map(|(lat, lon)| {
                        Location::new(lat, lon, LocationSource::Manual).expect("location")
                    }),
                    observed_at: None,
                    severity: Severity::High,
                }),
            );
            self
        }

        pub fn status(mut self, minute: u64, status: Status) -> Self {
            self.push(
                RELAY,
                "street-ops",
                minute,
                Payload::StatusChanged {
                    status,
                    pred: vec![],
                },
            );
            self
        }

        pub fn assign(mut self, minute: u64, assignee: &str, due_minute: Option<u64>) -> Self {
            self.push(
                RELAY,
                "street-ops",
                minute,
                Payload::Assigned {
                    assignee: assignee.into(),
                    due: due_minute.map(|m| (T0 + m * MIN) as Millis),
                    pred: vec![],
                },
            );
            self
        }
    }

    /// An in-memory store holding `cases`.
    pub fn store_of(cases: &[Case]) -> Store {
        let mut store = Store::in_memory().expect("store");
        let events: Vec<Event> = cases.iter().flat_map(|c| c.events.clone()).collect();
        store.append(&events, &[], None).expect("append");
        store
    }

    pub const HOSTILE: &str = "=HYPERLINK(\"http://x\",\"a, b\")\r\nline two";

    fn sample() -> (Store, [IncidentId; 3]) {
        let a = Case::new(1, "110101/002/014/03").report(
            "wang-li",
            0,
            "garbage",
            HOSTILE,
            Some((39.9, 116.4)),
        );
        let b = Case::new(2, "110101/002/014/05")
            .report("zhao-min", 60, "sewage", "drain, blocked", None)
            .status(70, Status::Accepted)
            .assign(80, "sanitation", Some(90))
            .status(81, Status::Dispatched);
        let c = Case::new(3, "110101/002/015/01")
            .report("-chen", 120, "noise", "@night", Some((-33.5, -70.6)))
            .status(130, Status::Rejected);
        let ids = [a.id, b.id, c.id];
        (store_of(&[a, b, c]), ids)
    }

    fn export(store: &Store, format: Format, filter: &Filter) -> (usize, String) {
        let mut out = Vec::new();
        let n = write(store, format, filter, T0 + 1000 * MIN, &mut out).expect("export");
        (n, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn csv_reads_back_with_a_real_parser_hostile_text_included() {
        let (store, ids) = sample();
        let (n, text) = export(&store, Format::Csv, &Filter::default());
        assert_eq!(n, 3);
        assert!(text.ends_with("\r\n"));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .expect("header")
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(header, COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 3);
        let col = |row: &csv::StringRecord, name: &str| {
            let i = COLUMNS.iter().position(|c| *c == name).expect("column");
            row.get(i).expect("cell").to_owned()
        };
        assert_eq!(col(&rows[0], "id"), ids[0].to_string());
        assert_eq!(col(&rows[0], "description"), format!("'{HOSTILE}"));
        assert_eq!(col(&rows[0], "reported_at"), "2026-03-02T00:00:00.000Z");
        assert_eq!(col(&rows[0], "reported_by"), "wang-li");
        assert_eq!(col(&rows[0], "lat"), "39.9");
        assert_eq!(col(&rows[0], "photos"), "0");
        assert_eq!(col(&rows[1], "status"), "dispatched");
        assert_eq!(col(&rows[1], "assignee"), "sanitation");
        assert_eq!(col(&rows[1], "due"), "2026-03-02T01:30:00.000Z");
        assert_eq!(col(&rows[1], "overdue"), "true");
        assert_eq!(col(&rows[1], "description"), "drain, blocked");
        assert_eq!(col(&rows[1], "lat"), "");
        assert_eq!(col(&rows[2], "reported_by"), "'-chen");
        assert_eq!(col(&rows[2], "description"), "'@night");
        // A negative number is a number, not a formula.
        assert_eq!(col(&rows[2], "lon"), "-70.6");
        assert_eq!(col(&rows[2], "overdue"), "false");
    }

    #[test]
    fn geojson_is_a_feature_collection_of_points_lon_first() {
        let (store, ids) = sample();
        let (n, text) = export(&store, Format::GeoJson, &Filter::default());
        assert_eq!(n, 3);
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["type"], "FeatureCollection");
        let features = v["features"].as_array().expect("features");
        assert_eq!(features.len(), 3);
        let f = &features[0];
        assert_eq!(f["type"], "Feature");
        assert_eq!(f["geometry"]["type"], "Point");
        assert_eq!(f["geometry"]["coordinates"], json!([116.4, 39.9]));
        assert_eq!(f["properties"]["id"], ids[0].to_string());
        assert_eq!(f["properties"]["description"], HOSTILE);
        assert_eq!(f["properties"]["photos"], 0);
        let keys: Vec<&String> = f["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .collect();
        assert_eq!(keys.len(), COLUMNS.len());
        assert!(features[1]["geometry"].is_null());
        assert_eq!(features[1]["properties"]["overdue"], true);
    }

    #[test]
    fn json_lines_are_the_incident_json() {
        let (store, _) = sample();
        let (n, text) = export(&store, Format::JsonLines, &Filter::default());
        assert_eq!(n, 3);
        let expected: Vec<Value> = store
            .incidents()
            .expect("incidents")
            .iter()
            .map(|s| serde_json::to_value(s.view()).expect("view"))
            .collect();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("line"))
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn filters_by_report_time_and_status() {
        let (store, ids) = sample();
        let since = Filter {
            since_ms: Some(T0 + 60 * MIN),
            statuses: vec![],
        };
        let (n, text) = export(&store, Format::JsonLines, &since);
        assert_eq!(n, 2);
        assert!(!text.contains(&ids[0].to_string()));
        let statuses = Filter {
            since_ms: None,
            statuses: vec![Status::Rejected, Status::Reported],
        };
        let (n, text) = export(&store, Format::JsonLines, &statuses);
        assert_eq!(n, 2);
        assert!(!text.contains(&ids[1].to_string()));
        let both = Filter {
            since_ms: Some(T0 + 60 * MIN),
            statuses: vec![Status::Rejected],
        };
        let (n, text) = export(&store, Format::Csv, &both);
        assert_eq!(n, 1);
        assert!(text.contains(&ids[2].to_string()));
        let none = Filter {
            since_ms: Some(T0 + 10_000 * MIN),
            statuses: vec![],
        };
        let (n, text) = export(&store, Format::GeoJson, &none);
        assert_eq!(n, 0);
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["features"], json!([]));
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("2026-03-02T00:00:00Z"), Ok(T0));
        assert_eq!(parse_time("2026-03-02T08:00:00+08:00"), Ok(T0));
        assert_eq!(parse_time(" 2026-03-02 "), Ok(T0));
        assert_eq!(parse_time("2026-03-02T00:01"), Ok(T0 + MIN));
        assert_eq!(parse_time("2026-03-02T00:01:00"), Ok(T0 + MIN));
        assert!(parse_time("yesterday").is_err_and(|e| e.contains("\"yesterday\"")));
        assert!(parse_time("1969-12-31").is_err());
        assert_eq!(csv_text("=1+1"), "'=1+1");
        assert_eq!(csv_text("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn format_names_parse() {
        for f in [Format::Csv, Format::GeoJson, Format::JsonLines] {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert!("xlsx".parse::<Format>().is_err());
    }
}
