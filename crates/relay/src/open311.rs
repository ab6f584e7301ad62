//! Open311 GeoReport v2, read-only: the incidents in the standard shape other city systems
//! read (<https://wiki.open311.org/GeoReport_v2>).
//!
//! Pure functions of the store's incidents; the console serves them under `/open311/v2/`.
//!
//! - [`services`]: `services.json`, one service per category of the catalogue
//!   ([`gridsync_core::event::CATEGORY_CATALOGUE`]): `service_code` is the category's code.
//! - [`requests`]: `requests.json` with the standard's filters: `service_request_id` (a comma
//!   list; when given, every other filter is ignored, as the standard says), `service_code`
//!   (a comma list), `start_date`/`end_date` (W3C datetimes, `2026-03-02T08:00:00+08:00`, or
//!   a plain date `2026-03-02`, midnight UTC; on `requested_datetime`, both bounds included)
//!   and `status` (`open`, `closed` or both, comma separated). With no date the last 90 days
//!   up to `now` are searched; with one date, the 90 days after `start_date` or before
//!   `end_date`; a range may not span more than 90 days. At most 1000 requests, newest first.
//! - [`request`]: `requests/{id}.json`, an array of the one request.
//!
//! **Status.** `closed` is an incident whose status is `closed` or `rejected` (a rejected
//! report is no case: nothing more will be done about it); every other status is `open`
//! (`resolved` and `verified` too: the loop is not closed until the case is). The gridsync
//! status is in `status_notes` in words.
//!
//! **Privacy.** Nothing names a person or a node: no reporter or author names, no node ids, no
//! comments, no roster names or phone numbers. `agency_responsible` is the department or the
//! force the case is assigned to; a case assigned to a roster member (`staff:NAME`) says only
//! `grid staff`. `requested_datetime` is the report time of `docs/STATS.md`; an incident
//! whose report has not arrived here is listed only when asked for by id.

use gridsync_core::event::CATEGORY_CATALOGUE;
use gridsync_core::view::rfc3339;
use gridsync_core::{Assignee, Category, IncidentId, IncidentState, Millis, Status};
use gridsync_store::{Store, StoreError};
use serde_json::{json, Map, Value};

/// The query parameters of `requests.json` (the standard's names).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RequestsQuery {
    /// Comma-separated incident ids; overrides every other parameter.
    pub service_request_id: Option<String>,
    /// Comma-separated service (category) codes.
    pub service_code: Option<String>,
    /// Earliest `requested_datetime` (W3C datetime).
    pub start_date: Option<String>,
    /// Latest `requested_datetime` (W3C datetime).
    pub end_date: Option<String>,
    /// `open`, `closed` or `open,closed`.
    pub status: Option<String>,
}

/// Why a request cannot be answered: the standard's error body is `[{"code", "description"}]`.
#[derive(Debug, thiserror::Error)]
pub enum Open311Error {
    /// A parameter is malformed (HTTP 400); the message names it and its value.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Open311Error {
    /// The standard's error body for this error, with its HTTP status code as `code`.
    pub fn body(&self) -> Value {
        let code = match self {
            Open311Error::BadRequest(_) => 400,
            Open311Error::Store(_) => 500,
        };
        json!([{ "code": code, "description": self.to_string() }])
    }
}

/// The longest span of a search, and the default one: 90 days.
pub const MAX_SPAN_MS: u64 = 90 * 86_400_000;
/// The most requests one answer lists.
pub const MAX_REQUESTS: usize = 1000;

/// `(code, name, group, keywords)` of the catalogue's categories.
const SERVICES: &[(&str, &str, &str, &str)] = &[
    (
        "garbage",
        "Garbage",
        "Environment and sanitation",
        "garbage,litter,bins,waste",
    ),
    (
        "sewage",
        "Sewage and drains",
        "Environment and sanitation",
        "sewage,drain,waste water,overflow",
    ),
    (
        "illegal-ad",
        "Illegal advertising",
        "City order",
        "flyers,posters,painted ads,signs",
    ),
    (
        "illegal-stall",
        "Illegal street stall",
        "City order",
        "vending,stall,pavement",
    ),
    (
        "fire-hazard",
        "Fire hazard",
        "Public safety",
        "fire,corridor,fire exit,wiring",
    ),
    (
        "facility-damage",
        "Damaged public facility",
        "Public facilities",
        "manhole,street light,railing,facility",
    ),
    (
        "illegal-parking",
        "Illegal parking",
        "City order",
        "parking,vehicle,fire access,lane",
    ),
    (
        "illegal-construction",
        "Illegal construction",
        "City order",
        "building,construction,alteration",
    ),
    (
        "greenery",
        "Trees and green space",
        "Environment and sanitation",
        "trees,green space,park",
    ),
    ("noise", "Noise", "Neighbourhood", "noise,nuisance"),
    (
        "dispute",
        "Neighbourhood dispute",
        "Neighbourhood",
        "dispute,mediation,neighbours",
    ),
    (
        "safety",
        "Public safety",
        "Public safety",
        "safety,danger,security",
    ),
    ("other", "Other", "Other", "other"),
];

/// The service name of a category code (the code itself for one outside the catalogue).
fn service_name(code: &str) -> &str {
    SERVICES
        .iter()
        .find(|(c, ..)| *c == code)
        .map_or(code, |(_, name, ..)| name)
}

/// `services.json`.
pub fn services() -> Value {
    Value::Array(
        CATEGORY_CATALOGUE
            .iter()
            .map(|(code, description)| {
                let (name, group, keywords) = SERVICES
                    .iter()
                    .find(|(c, ..)| c == code)
                    .map_or((*code, "Other", *code), |(_, n, g, k)| (*n, *g, *k));
                json!({
                    "service_code": code,
                    "service_name": name,
                    "description": description,
                    "metadata": false,
                    "type": "realtime",
                    "keywords": keywords,
                    "group": group,
                })
            })
            .collect(),
    )
}

/// Whether `status` counts as the standard's `closed`.
pub fn is_closed(status: Status) -> bool {
    matches!(status, Status::Closed | Status::Rejected)
}

fn status_note(status: Status) -> &'static str {
    match status {
        Status::Reported => "Reported, not yet reviewed.",
        Status::Accepted => "Accepted by the sub-center.",
        Status::Rejected => "Rejected: not a case (a duplicate, out of scope or not found).",
        Status::Dispatched => "Dispatched to the agency responsible.",
        Status::InProgress => "The agency responsible is handling it.",
        Status::Resolved => "Reported handled; awaiting a check on site.",
        Status::Verified => "Checked on site as handled.",
        Status::Closed => "Closed.",
    }
}

fn level_notice(level: gridsync_core::Level) -> &'static str {
    match level {
        gridsync_core::Level::Grid => "Handled within the grid.",
        gridsync_core::Level::Community => "Handled by the community workstation.",
        gridsync_core::Level::Street => "Escalated to the street sub-center.",
        gridsync_core::Level::District => "Escalated to the district command center.",
    }
}

/// The agency an assignee names, with no person's name: a department or a force as written,
/// a roster member as `grid staff`.
fn agency(assignee: &str) -> String {
    match Assignee::classify(assignee) {
        ("staff", _) => "grid staff".to_owned(),
        ("force", force) => format!("{force} (grid force)"),
        (_, name) => name.to_owned(),
    }
}

fn report_ms(state: &IncidentState) -> Option<u64> {
    state.report.as_ref().map(|r| r.stamp.hlc.wall_ms)
}

fn time(ms: u64) -> String {
    rfc3339(Millis::try_from(ms).unwrap_or(Millis::MAX))
}

/// One incident as a GeoReport v2 service request (absent fields omitted).
fn service_request(state: &IncidentState, media_base: &str) -> Value {
    let status = state.status();
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("service_request_id", json!(state.id.to_string()));
    put(
        "status",
        json!(if is_closed(status) { "closed" } else { "open" }),
    );
    put("status_notes", json!(status_note(status)));
    if let Some(c) = state.category.value() {
        put("service_name", json!(service_name(c.as_str())));
        put("service_code", json!(c.as_str()));
    }
    if let Some(d) = state.description.value() {
        put("description", json!(d));
    }
    if let Some(a) = state.assignee.value() {
        put("agency_responsible", json!(agency(&a.assignee)));
        if let Some(due) = a.due {
            put("expected_datetime", json!(rfc3339(due)));
        }
    }
    put("service_notice", json!(level_notice(state.level())));
    if let Some(r) = report_ms(state) {
        put("requested_datetime", json!(time(r)));
    }
    if let Some(last) = state.last {
        put("updated_datetime", json!(time(last.hlc.wall_ms)));
    }
    if let Some(g) = state.grid() {
        put("address", json!(g.as_str()));
    }
    if let Some(l) = state.location.value() {
        put("lat", json!(l.lat()));
        put("long", json!(l.lon()));
    }
    if let Some(p) = state.visible_photos().first() {
        put(
            "media_url",
            json!(format!(
                "{}/{}.jpg",
                media_base.trim_end_matches('/'),
                p.meta.hash.to_hex()
            )),
        );
    }
    Value::Object(m)
}

/// Parses a W3C datetime (or a plain date, midnight UTC) into Unix ms.
fn parse_date(name: &str, text: &str) -> Result<u64, Open311Error> {
    crate::export::parse_time(text).map_err(|e| Open311Error::BadRequest(format!("{name} {e}")))
}

/// The `[from, to]` window (both included) of `query` at `now_ms`.
fn window(query: &RequestsQuery, now_ms: u64) -> Result<(u64, u64), Open311Error> {
    let start = query
        .start_date
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_date("start_date", s))
        .transpose()?;
    let end = query
        .end_date
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_date("end_date", s))
        .transpose()?;
    let (from, to) = match (start, end) {
        (None, None) => (now_ms.saturating_sub(MAX_SPAN_MS), now_ms),
        (Some(s), None) => (s, s.saturating_add(MAX_SPAN_MS)),
        (None, Some(e)) => (e.saturating_sub(MAX_SPAN_MS), e),
        (Some(s), Some(e)) => (s, e),
    };
    if from > to {
        return Err(Open311Error::BadRequest(
            "start_date is after end_date".to_owned(),
        ));
    }
    if to - from > MAX_SPAN_MS {
        return Err(Open311Error::BadRequest(
            "start_date to end_date spans more than 90 days".to_owned(),
        ));
    }
    Ok((from, to))
}

/// The items of a comma list, trimmed, empty ones left out.
fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_id(text: &str) -> Result<IncidentId, Open311Error> {
    text.trim().parse::<IncidentId>().map_err(|_| {
        Open311Error::BadRequest(format!("service_request_id {text:?} is not a request id"))
    })
}

/// `requests.json`; `media_base` is the URL prefix photos are served under.
pub fn requests(
    store: &Store,
    query: &RequestsQuery,
    now_ms: u64,
    media_base: &str,
) -> Result<Value, Open311Error> {
    if let Some(ids) = query
        .service_request_id
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        let ids = items(ids).map(parse_id).collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(state) = store.incident(&id)? {
                out.push(service_request(&state, media_base));
            }
        }
        return Ok(Value::Array(out));
    }
    let codes = query
        .service_code
        .as_deref()
        .map(|s| {
            items(s)
                .map(|c| {
                    Category::try_from(c.to_owned()).map_err(|_| {
                        Open311Error::BadRequest(format!(
                            "service_code {c:?} is not a service code (see services.json)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let statuses = query
        .status
        .as_deref()
        .map(|s| {
            items(s)
                .map(|v| match v {
                    "open" => Ok(false),
                    "closed" => Ok(true),
                    other => Err(Open311Error::BadRequest(format!(
                        "status {other:?} is neither open nor closed"
                    ))),
                })
                .collect::<Result<Vec<bool>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let (from, to) = window(query, now_ms)?;
    let mut selected: Vec<(u64, IncidentState)> = store
        .incidents()?
        .into_iter()
        .filter_map(|s| report_ms(&s).map(|r| (r, s)))
        .filter(|(r, _)| (from..=to).contains(r))
        .filter(|(_, s)| codes.is_empty() || s.category.value().is_some_and(|c| codes.contains(c)))
        .filter(|(_, s)| statuses.is_empty() || statuses.contains(&is_closed(s.status())))
        .collect();
    selected.sort_by(|(a, sa), (b, sb)| b.cmp(a).then(sb.id.0.cmp(&sa.id.0)));
    selected.truncate(MAX_REQUESTS);
    Ok(Value::Array(
        selected
            .iter()
            .map(|(_, s)| service_request(s, media_base))
            .collect(),
    ))
}

/// `requests/{id}.json`: an array of the one request, as the standard shapes it (`None`: no
/// such request).
pub fn request(store: &Store, id: &str, media_base: &str) -> Result<Option<Value>, Open311Error> {
    let id = parse_id(id)?;
    Ok(store
        .incident(&id)?
        .map(|s| Value::Array(vec![service_request(&s, media_base)])))
}

#[cfg(test)]
mod tests {
    use gridsync_core::{BlobHash, Payload, PhotoKind, PhotoMeta};

    use super::*;
    use crate::export::tests::{store_of, Case, DEVICE, MIN, RELAY, T0};

    const NOW: u64 = T0 + 1000 * MIN;
    const DAY: u64 = 86_400_000;

    fn photo(n: u8) -> PhotoMeta {
        PhotoMeta {
            hash: BlobHash([n; 32]),
            thumb: BlobHash([n + 1; 32]),
            kind: PhotoKind::Before,
            width: 640,
            height: 480,
            bytes: 1000,
            captured_at: None,
        }
    }

    /// Three incidents: a garbage report with a photo assigned to a staff member, a sewage
    /// case closed, a noise report rejected; and one reported 100 days before `NOW`.
    fn sample() -> (Store, [IncidentId; 4]) {
        let mut a = Case::new(1, "110101/002/014/03").report(
            "wang-li",
            0,
            "garbage",
            "bags by the gate",
            Some((39.9, 116.4)),
        );
        a.push(DEVICE, "wang-li", 1, Payload::PhotoAdded(photo(7)));
        a.push(
            RELAY,
            "street-ops",
            2,
            Payload::Commented {
                text: "call wang-li at 13800000000".into(),
            },
        );
        let a = a
            .status(5, Status::Accepted)
            .assign(6, "staff:sun-hao", Some(600));
        let b = Case::new(2, "110101/002/014/05")
            .report("zhao-min", 60, "sewage", "drain blocked", None)
            .assign(70, "force:police", None)
            .status(71, Status::Closed);
        let c = Case::new(3, "110101/002/015/01")
            .report("chen-jie", 120, "noise", "loud at night", None)
            .status(130, Status::Rejected);
        // Reported 100 days before NOW, out of the default window.
        let mut d = Case::new(4, "110101/002/015/01");
        d.push(
            DEVICE,
            "chen-jie",
            0,
            Payload::Reported(gridsync_core::Report {
                category: Category::try_from("garbage".to_owned()).expect("category"),
                description: "old".into(),
                location: None,
                observed_at: None,
                severity: gridsync_core::Severity::Low,
            }),
        );
        d.events[0].hlc = gridsync_core::Hlc::new(NOW - 100 * DAY, 0);
        let ids = [a.id, b.id, c.id, d.id];
        (store_of(&[a, b, c, d]), ids)
    }

    fn ids_of(v: &Value) -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|r| r["service_request_id"].as_str().expect("id").to_owned())
            .collect()
    }

    fn query() -> RequestsQuery {
        RequestsQuery::default()
    }

    #[test]
    fn services_cover_the_catalogue() {
        let s = services();
        let list = s.as_array().expect("array");
        assert_eq!(list.len(), CATEGORY_CATALOGUE.len());
        for (service, (code, _)) in list.iter().zip(CATEGORY_CATALOGUE) {
            assert_eq!(service["service_code"], *code);
            assert_eq!(service["metadata"], false);
            assert_eq!(service["type"], "realtime");
            assert!(SERVICES.iter().any(|(c, ..)| c == code), "{code}");
        }
    }

    #[test]
    fn requests_default_to_the_last_90_days_newest_first() {
        let (store, ids) = sample();
        let v = requests(&store, &query(), NOW, "https://relay.example/media/").expect("ok");
        let expected: Vec<String> = [ids[2], ids[1], ids[0]]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ids_of(&v), expected);
        let a = &v[2];
        assert_eq!(a["status"], "open");
        assert_eq!(a["service_code"], "garbage");
        assert_eq!(a["service_name"], "Garbage");
        assert_eq!(a["agency_responsible"], "grid staff");
        assert_eq!(a["requested_datetime"], "2026-03-02T00:00:00.000Z");
        assert_eq!(a["expected_datetime"], "2026-03-02T10:00:00.000Z");
        assert_eq!(a["address"], "110101/002/014/03");
        assert_eq!(a["lat"], 39.9);
        assert_eq!(a["long"], 116.4);
        assert_eq!(
            a["media_url"],
            format!(
                "https://relay.example/media/{}.jpg",
                BlobHash([7; 32]).to_hex()
            )
        );
        assert_eq!(v[1]["status"], "closed");
        assert_eq!(v[1]["agency_responsible"], "police (grid force)");
        assert!(v[1].get("media_url").is_none());
        assert!(v[1].get("lat").is_none());
        assert_eq!(v[0]["status"], "closed", "rejected counts as closed");
    }

    #[test]
    fn each_filter_selects() {
        let (store, ids) = sample();
        let run = |q: RequestsQuery| ids_of(&requests(&store, &q, NOW, "/m").expect("ok"));
        let id = |i: usize| ids[i].to_string();
        assert_eq!(
            run(RequestsQuery {
                service_request_id: Some(format!("{}, {}", id(3), id(0))),
                status: Some("closed".into()),
                ..query()
            }),
            vec![id(3), id(0)],
            "ids override every other filter, the old one included"
        );
        assert_eq!(
            run(RequestsQuery {
                service_code: Some("sewage,noise".into()),
                ..query()
            }),
            vec![id(2), id(1)]
        );
        assert_eq!(
            run(RequestsQuery {
                status: Some("open".into()),
                ..query()
            }),
            vec![id(0)]
        );
        assert_eq!(
            run(RequestsQuery {
                start_date: Some("2026-03-02T01:00:00Z".into()),
                end_date: Some("2026-03-02T10:00:00+08:00".into()),
                ..query()
            }),
            vec![id(2), id(1)],
            "both bounds included, offsets honoured"
        );
        assert_eq!(
            run(RequestsQuery {
                end_date: Some("2026-03-02".into()),
                ..query()
            }),
            vec![id(0)]
        );
        assert_eq!(
            run(RequestsQuery {
                start_date: Some(rfc3339((NOW - 101 * DAY) as Millis)),
                end_date: Some(rfc3339((NOW - 99 * DAY) as Millis)),
                ..query()
            }),
            vec![id(3)]
        );
        let one = request(&store, &id(1), "/m").expect("ok").expect("found");
        assert_eq!(ids_of(&one), vec![id(1)]);
        let absent = IncidentId::new_v7(T0, [9; 10]).to_string();
        assert!(request(&store, &absent, "/m").expect("ok").is_none());
    }

    #[test]
    fn bad_parameters_are_bad_requests_naming_them() {
        let (store, _) = sample();
        let bad = |q: RequestsQuery, what: &str| match requests(&store, &q, NOW, "/m") {
            Err(e @ Open311Error::BadRequest(_)) => {
                let text = e.to_string();
                assert!(text.contains(what), "{text}");
                assert_eq!(e.body()[0]["code"], 400);
            }
            other => panic!("{what}: {other:?}"),
        };
        bad(
            RequestsQuery {
                start_date: Some("yesterday".into()),
                ..query()
            },
            "start_date \"yesterday\"",
        );
        bad(
            RequestsQuery {
                end_date: Some("2026-13-01".into()),
                ..query()
            },
            "end_date",
        );
        bad(
            RequestsQuery {
                start_date: Some("2026-03-02".into()),
                end_date: Some("2026-03-01".into()),
                ..query()
            },
            "after end_date",
        );
        bad(
            RequestsQuery {
                start_date: Some("2026-01-01".into()),
                end_date: Some("2026-06-01".into()),
                ..query()
            },
            "90 days",
        );
        bad(
            RequestsQuery {
                status: Some("open,pending".into()),
                ..query()
            },
            "\"pending\"",
        );
        bad(
            RequestsQuery {
                service_code: Some("Garbage!".into()),
                ..query()
            },
            "service_code",
        );
        bad(
            RequestsQuery {
                service_request_id: Some("42".into()),
                ..query()
            },
            "service_request_id \"42\"",
        );
        assert!(matches!(
            request(&store, "../etc", "/m"),
            Err(Open311Error::BadRequest(_))
        ));
    }

    #[test]
    fn no_reporter_identity_anywhere() {
        let (store, ids) = sample();
        let mut all = requests(&store, &query(), NOW, "/m")
            .expect("ok")
            .to_string();
        let listed: Vec<String> = ids.iter().map(ToString::to_string).collect();
        all.push_str(
            &requests(
                &store,
                &RequestsQuery {
                    service_request_id: Some(listed.join(",")),
                    ..query()
                },
                NOW,
                "/m",
            )
            .expect("ok")
            .to_string(),
        );
        for id in &listed {
            all.push_str(
                &request(&store, id, "/m")
                    .expect("ok")
                    .expect("found")
                    .to_string(),
            );
        }
        for secret in [
            "wang-li",
            "zhao-min",
            "chen-jie",
            "street-ops",
            "sun-hao",
            "13800000000",
            &DEVICE.to_hex(),
            &RELAY.to_hex(),
        ] {
            assert!(!all.contains(secret), "{secret} leaked");
        }
        assert!(all.contains("grid staff"));
    }
}
