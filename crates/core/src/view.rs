//! The incident JSON: a stable contract shared by the device and relay CLIs.
//!
//! ```json
//! {
//!   "id": "0192f0c1-...", "grid": "110101/002/014/03", "reporter": "patrol-7",
//!   "category": "garbage", "description": "...", "status": "dispatched", "level": "street",
//!   "assignee": "sanitation", "score": null,
//!   "location": {"lat": 39.8927, "lon": 116.4284, "source": "exif"},
//!   "photos": [{"hash": "...", "kind": "before", "width": 1200, "height": 1600, "bytes": 245112,
//!               "thumb": "...", "captured_at": "2026-03-02T11:00:00.000Z"}],
//!   "comments": [{"author": "...", "text": "...", "at": "2026-11-26T11:12:08.123Z"}],
//!   "conflicts": [{"field": "description", "kept": "...", "lost": "...", "lost_by": "...",
//!                  "lost_origin": "<node id>", "lost_at": "..."}],
//!   "created_at": "...", "updated_at": "...", "event_count": 7,
//!   "severity": "normal", "verdict": null, "due_at": null, "observed_at": "...",
//!   "level_reason": null, "assignee_kind": "department", "assignee_name": "sanitation"
//! }
//! ```
//!
//! The first sixteen keys are the contract; keys after `event_count` are extensions. Times
//! are RFC 3339 UTC with milliseconds. A field never written is `null` (`reporter` and
//! `observed_at` stay `null` until the report event arrives, whatever else has).
//!
//! `proto/EVENTS.md` ("Incident JSON") is the normative description of every key, and holds a
//! complete example that `tests/incident_json.rs` checks against this code.

use serde::Serialize;
use serde_json::{json, Value};

use crate::event::{Location, Millis};
use crate::hlc::Hlc;
use crate::merge::{IncidentState, Register};
use crate::roster::Assignee;

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-26T11:12:08.123Z`.
pub fn rfc3339(ms: Millis) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => format!("@{ms}ms"),
    }
}

fn hlc_time(h: Hlc) -> String {
    rfc3339(i64::try_from(h.wall_ms).unwrap_or(i64::MAX))
}

/// A location in the incident JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocationView {
    pub lat: f64,
    pub lon: f64,
    pub source: &'static str,
}

impl From<&Location> for LocationView {
    fn from(l: &Location) -> Self {
        Self {
            lat: l.lat(),
            lon: l.lon(),
            source: l.source().as_str(),
        }
    }
}

/// A photo in the incident JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhotoView {
    pub hash: String,
    pub kind: &'static str,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub thumb: String,
    pub captured_at: Option<String>,
}

/// A comment in the incident JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommentView {
    pub author: String,
    pub text: String,
    pub at: String,
}

/// A concurrent write that lost, in the incident JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictView {
    pub field: &'static str,
    pub kept: Value,
    pub lost: Value,
    pub lost_by: String,
    pub lost_origin: String,
    pub lost_at: String,
}

/// The incident JSON (see the module docs for the contract).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentView {
    pub id: String,
    pub grid: Option<String>,
    pub reporter: Option<String>,
    pub category: Option<String>,
    pub description: Option<String>,
    pub status: &'static str,
    pub level: &'static str,
    pub assignee: Option<String>,
    pub score: Option<u8>,
    pub location: Option<LocationView>,
    pub photos: Vec<PhotoView>,
    pub comments: Vec<CommentView>,
    pub conflicts: Vec<ConflictView>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub event_count: usize,
    pub severity: Option<&'static str>,
    pub verdict: Option<&'static str>,
    pub due_at: Option<String>,
    pub observed_at: Option<String>,
    pub level_reason: Option<String>,
    /// The assignee's kind: `department`, `force` or `staff` ([`Assignee::classify`]);
    /// null if never assigned.
    pub assignee_kind: Option<&'static str>,
    /// The department's, force's or roster member's name (the assignee without its
    /// `force:`/`staff:` prefix); null if never assigned.
    pub assignee_name: Option<String>,
}

fn push_conflicts<T: PartialEq>(
    out: &mut Vec<ConflictView>,
    field: &'static str,
    reg: &Register<T>,
    show: impl Fn(&T) -> Value,
) {
    let Some(winner) = reg.winner() else { return };
    for lost in reg.losers() {
        out.push(ConflictView {
            field,
            kept: show(&winner.value),
            lost: show(&lost.value),
            lost_by: lost.author.clone(),
            lost_origin: lost.stamp.origin.to_hex(),
            lost_at: hlc_time(lost.stamp.hlc),
        });
    }
}

impl IncidentState {
    /// The incident JSON view of this state.
    pub fn view(&self) -> IncidentView {
        let mut conflicts = Vec::new();
        push_conflicts(&mut conflicts, "description", &self.description, |v| {
            json!(v)
        });
        push_conflicts(&mut conflicts, "category", &self.category, |v| {
            json!(v.as_str())
        });
        push_conflicts(&mut conflicts, "location", &self.location, |v| {
            json!(LocationView::from(v))
        });
        push_conflicts(&mut conflicts, "severity", &self.severity, |v| {
            json!(v.as_str())
        });
        push_conflicts(
            &mut conflicts,
            "status",
            &self.status,
            |v| json!(v.as_str()),
        );
        push_conflicts(&mut conflicts, "level", &self.level, |v| {
            json!(v.level.as_str())
        });
        push_conflicts(&mut conflicts, "assignee", &self.assignee, |v| {
            json!(v.assignee)
        });
        push_conflicts(&mut conflicts, "score", &self.evaluation, |v| {
            json!(v.score)
        });

        let assignment = self.assignee.value();
        let evaluation = self.evaluation.value();
        let assignee_parts = assignment.map(|a| Assignee::classify(&a.assignee));
        IncidentView {
            id: self.id.to_string(),
            grid: self.grid().map(|g| g.to_string()),
            reporter: self.report.as_ref().map(|r| r.author.clone()),
            category: self.category.value().map(|c| c.to_string()),
            description: self.description.value().cloned(),
            status: self.status().as_str(),
            level: self.level().as_str(),
            assignee: assignment.map(|a| a.assignee.clone()),
            score: evaluation.map(|e| e.score),
            location: self.location.value().map(LocationView::from),
            photos: self
                .visible_photos()
                .into_iter()
                .map(|p| PhotoView {
                    hash: p.meta.hash.to_hex(),
                    kind: p.meta.kind.as_str(),
                    width: p.meta.width,
                    height: p.meta.height,
                    bytes: p.meta.bytes,
                    thumb: p.meta.thumb.to_hex(),
                    captured_at: p.meta.captured_at.map(rfc3339),
                })
                .collect(),
            comments: self
                .comments
                .iter()
                .map(|(stamp, c)| CommentView {
                    author: c.author.clone(),
                    text: c.text.clone(),
                    at: hlc_time(stamp.hlc),
                })
                .collect(),
            conflicts,
            created_at: self
                .report
                .as_ref()
                .map(|r| r.stamp)
                .or(self.first.as_ref().map(|(s, _)| *s))
                .map(|s| hlc_time(s.hlc)),
            updated_at: self.last.map(|s| hlc_time(s.hlc)),
            event_count: self.events.len(),
            severity: self.severity.value().map(|s| s.as_str()),
            verdict: evaluation.map(|e| e.verdict.as_str()),
            due_at: assignment.and_then(|a| a.due).map(rfc3339),
            observed_at: self
                .report
                .as_ref()
                .and_then(|r| r.observed_at)
                .map(rfc3339),
            level_reason: self
                .level
                .value()
                .map(|e| e.reason.clone())
                .filter(|r| !r.is_empty()),
            assignee_kind: assignee_parts.map(|(kind, _)| kind),
            assignee_name: assignee_parts.map(|(_, name)| name.to_owned()),
        }
    }
}
