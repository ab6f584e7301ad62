//! The event model: an append-only log of immutable events about incidents.
//!
//! Every change to an incident is one [`Event`]. Events are never edited or deleted; the state
//! of an incident is a deterministic fold of its events ([`crate::merge`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::blob::BlobHash;
use crate::hlc::Hlc;
use crate::ids::{EventId, GridCode, IncidentId, NodeId};

/// Unix time in milliseconds (UTC).
pub type Millis = i64;

/// One immutable entry of the log.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Event {
    /// The node that wrote the event.
    pub origin: NodeId,
    /// The origin's sequence number: 1, 2, 3, ... with no gaps, at most [`MAX_SEQ`]
    /// (decoding refuses anything else).
    #[serde(deserialize_with = "deserialize_seq")]
    pub seq: u64,
    /// When, on the origin's hybrid logical clock.
    pub hlc: Hlc,
    /// The incident the event is about; for a roster event ([`Payload::is_roster`]) only a
    /// fresh UUIDv7 naming the event.
    pub incident: IncidentId,
    /// The incident's grid (used to scope sync); for a roster event, the member's grid.
    pub grid: GridCode,
    /// Who wrote it: the officer, device or sub-center name configured on the origin.
    pub author: String,
    /// What happened.
    pub payload: Payload,
    /// The origin's Ed25519 signature over the event. Optional for now; a later protocol
    /// version makes it mandatory.
    pub signature: Option<Signature>,
}

/// The largest sequence number an event may carry: 2^63 - 1, so that every store can keep
/// it as a signed 64-bit integer (SQLite's, PostgreSQL's `bigint`).
pub const MAX_SEQ: u64 = i64::MAX as u64;

fn deserialize_seq<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let seq = u64::deserialize(d)?;
    if seq == 0 || seq > MAX_SEQ {
        return Err(serde::de::Error::custom(format!(
            "sequence number {seq} is outside 1..={MAX_SEQ}"
        )));
    }
    Ok(seq)
}

impl Event {
    /// The event's identity.
    pub fn id(&self) -> EventId {
        EventId {
            origin: self.origin,
            seq: self.seq,
        }
    }

    /// The total order used for last-writer-wins: HLC, then origin (then seq, which can only
    /// matter for a misbehaving origin that reuses a timestamp).
    pub fn stamp(&self) -> Stamp {
        Stamp {
            hlc: self.hlc,
            origin: self.origin,
            seq: self.seq,
        }
    }
}

/// Position of an event in the last-writer-wins order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Stamp {
    pub hlc: Hlc,
    pub origin: NodeId,
    pub seq: u64,
}

impl Stamp {
    /// The identity of the event with this stamp.
    pub fn id(&self) -> EventId {
        EventId {
            origin: self.origin,
            seq: self.seq,
        }
    }
}

/// An Ed25519 signature (R, S).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Signature {
    pub r: [u8; 32],
    pub s: [u8; 32],
}

/// What an event says.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum Payload {
    /// The incident was reported. Sets category, description, location and severity, and
    /// status `reported` at level `grid`.
    Reported(Report),
    /// One field was edited. `pred` lists the writes of that field the author's state showed
    /// (the values this one replaces); see [`crate::merge`].
    Edited {
        value: FieldValue,
        pred: Vec<EventId>,
    },
    /// A photo was attached.
    PhotoAdded(PhotoMeta),
    /// A photo was removed: only the adds listed in `removes` (those the author saw) go.
    PhotoRemoved {
        hash: BlobHash,
        removes: Vec<EventId>,
    },
    /// The workflow status changed.
    StatusChanged { status: Status, pred: Vec<EventId> },
    /// The incident was escalated (or handed back down) to another level.
    Escalated {
        level: Level,
        reason: String,
        pred: Vec<EventId>,
    },
    /// The incident was assigned to a department or person.
    Assigned {
        assignee: String,
        due: Option<Millis>,
        pred: Vec<EventId>,
    },
    /// A comment: a reply, a note from handling, a feedback to the reporter.
    Commented { text: String },
    /// The supervisor's or the public's evaluation of how the incident was handled.
    Evaluated {
        score: u8,
        verdict: Verdict,
        pred: Vec<EventId>,
    },
    /// A member of the grid roster was added or changed: the grid is the event's
    /// [`Event::grid`], the member is known by [`StaffEntry::name`] within it. Not about an
    /// incident: [`Event::incident`] is only a fresh UUIDv7 naming the event (see
    /// [`crate::roster`]).
    StaffSet(StaffEntry),
    /// A member left the grid roster of the event's grid.
    StaffRemoved { name: String },
}

impl Payload {
    /// The variant's name (`Reported`, `Edited`, ...), as refusals and `verify` name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Reported(_) => "Reported",
            Payload::Edited { .. } => "Edited",
            Payload::PhotoAdded(_) => "PhotoAdded",
            Payload::PhotoRemoved { .. } => "PhotoRemoved",
            Payload::StatusChanged { .. } => "StatusChanged",
            Payload::Escalated { .. } => "Escalated",
            Payload::Assigned { .. } => "Assigned",
            Payload::Commented { .. } => "Commented",
            Payload::Evaluated { .. } => "Evaluated",
            Payload::StaffSet(_) => "StaffSet",
            Payload::StaffRemoved { .. } => "StaffRemoved",
        }
    }

    /// Whether the payload is about the grid roster ([`crate::roster`]) rather than an
    /// incident: such an event never touches an incident's state.
    pub fn is_roster(&self) -> bool {
        matches!(self, Payload::StaffSet(_) | Payload::StaffRemoved { .. })
    }
}

/// A member of a grid's roster, as [`Payload::StaffSet`] writes it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StaffEntry {
    /// The member's name: their key within the grid's roster (1 to
    /// [`limits::MAX_STAFF_NAME_BYTES`] bytes, not only whitespace).
    pub name: String,
    /// Which of the grid's seven forces they belong to.
    pub force: Force,
    /// A phone number to reach them (at most [`limits::MAX_PHONE_BYTES`] bytes).
    pub phone: Option<String>,
    /// The node id of their handheld, if they carry one.
    pub device: Option<NodeId>,
}

/// The content of a report.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Report {
    pub category: Category,
    pub description: String,
    pub location: Option<Location>,
    /// When the reporter saw the problem (from the photo's EXIF, or the report time).
    pub observed_at: Option<Millis>,
    pub severity: Severity,
}

/// A new value for one editable field.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum FieldValue {
    Description(String),
    Category(Category),
    Location(Location),
    Severity(Severity),
}

/// A photo as attached to an incident.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PhotoMeta {
    /// SHA-256 of the stored photo bytes.
    pub hash: BlobHash,
    /// SHA-256 of the stored thumbnail bytes.
    pub thumb: BlobHash,
    pub kind: PhotoKind,
    pub width: u32,
    pub height: u32,
    /// Size of the stored photo in bytes.
    pub bytes: u64,
    /// Capture time from the photo's EXIF, if it had one.
    pub captured_at: Option<Millis>,
}

/// A position in WGS-84 decimal degrees, and where it came from.
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
#[serde(try_from = "RawLocation", into = "RawLocation")]
pub struct Location {
    lat: f64,
    lon: f64,
    source: LocationSource,
}

#[derive(Serialize, Deserialize)]
struct RawLocation {
    lat: f64,
    lon: f64,
    source: LocationSource,
}

/// A latitude or longitude out of range (or not a number).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("location {lat}, {lon} is not a position: latitude must be within -90..90 and longitude within -180..180")]
pub struct LocationError {
    pub lat: f64,
    pub lon: f64,
}

impl Location {
    /// A checked position.
    pub fn new(lat: f64, lon: f64, source: LocationSource) -> Result<Self, LocationError> {
        if !(lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0) {
            return Err(LocationError { lat, lon });
        }
        Ok(Self { lat, lon, source })
    }

    pub fn lat(&self) -> f64 {
        self.lat
    }

    pub fn lon(&self) -> f64 {
        self.lon
    }

    pub fn source(&self) -> LocationSource {
        self.source
    }
}

impl TryFrom<RawLocation> for Location {
    type Error = LocationError;

    fn try_from(r: RawLocation) -> Result<Self, LocationError> {
        Self::new(r.lat, r.lon, r.source)
    }
}

impl From<Location> for RawLocation {
    fn from(l: Location) -> Self {
        Self {
            lat: l.lat,
            lon: l.lon,
            source: l.source,
        }
    }
}

/// A value outside a closed vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {expected}")]
pub struct VocabularyError {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

/// Closed vocabularies with a stable text form (used in the CLI and the incident JSON).
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable text form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = VocabularyError;

            fn from_str(s: &str) -> Result<Self, VocabularyError> {
                match s.trim() {
                    $($text => Ok($name::$variant),)+
                    other => Err(VocabularyError {
                        what: $what,
                        value: other.to_owned(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}

vocabulary!(
    /// Workflow status of an incident. Allowed local transitions: [`crate::workflow`].
    Status, "status" {
        /// Sent in by a grid assistant, not yet looked at.
        Reported = "reported",
        /// Taken on by the community or street sub-center.
        Accepted = "accepted",
        /// Not a case (duplicate, out of scope, not real).
        Rejected = "rejected",
        /// Sent to a department for handling.
        Dispatched = "dispatched",
        /// The department is handling it.
        InProgress = "in_progress",
        /// The department reports it handled.
        Resolved = "resolved",
        /// A supervisor checked on site that it is handled.
        Verified = "verified",
        /// Finished.
        Closed = "closed",
    }
);

vocabulary!(
    /// The administrative level that holds an incident.
    Level, "level" {
        Grid = "grid",
        Community = "community",
        Street = "street",
        District = "district",
    }
);

vocabulary!(
    /// How urgent an incident is.
    Severity, "severity" {
        Low = "low",
        Normal = "normal",
        High = "high",
        Urgent = "urgent",
    }
);

vocabulary!(
    /// Whether a photo shows the problem (before handling) or the result (after).
    PhotoKind, "photo kind" {
        Before = "before",
        After = "after",
    }
);

vocabulary!(
    /// Where a report's location came from.
    LocationSource, "location source" {
        /// The device's GPS at report time.
        Gps = "gps",
        /// The EXIF GPS tags of the first photo.
        Exif = "exif",
        /// Typed in by the user.
        Manual = "manual",
    }
);

vocabulary!(
    /// The seven forces of a grid: who is on its roster ([`StaffEntry`]) and to whom a case
    /// can be dispatched ([`crate::roster::Assignee::Force`]).
    Force, "force" {
        /// The grid manager (网格长).
        Manager = "manager",
        /// The grid assistant (网格员): the patrol who files reports.
        Assistant = "assistant",
        /// The supervisor (监督员).
        Supervisor = "supervisor",
        /// The party branch secretary (党支部书记).
        PartySecretary = "party-secretary",
        /// The police officer (民警).
        Police = "police",
        /// The judicial worker (司法员).
        Judicial = "judicial",
        /// The firefighter (消防员).
        Firefighter = "firefighter",
    }
);

vocabulary!(
    /// The verdict of an evaluation.
    Verdict, "verdict" {
        Satisfied = "satisfied",
        Acceptable = "acceptable",
        Unsatisfied = "unsatisfied",
    }
);

impl Verdict {
    /// The verdict a score implies when none is given: 4-5 satisfied, 3 acceptable, 1-2
    /// unsatisfied.
    pub fn from_score(score: u8) -> Self {
        match score {
            4.. => Verdict::Satisfied,
            3 => Verdict::Acceptable,
            _ => Verdict::Unsatisfied,
        }
    }
}

/// The category catalogue: code and meaning. Local commands accept only these codes; merge
/// accepts any well-formed code, so that a newer catalogue on another node never blocks sync.
pub const CATEGORY_CATALOGUE: &[(&str, &str)] = &[
    ("garbage", "Garbage piles, overflowing bins, littering"),
    (
        "sewage",
        "Sewage overflow, blocked drains, standing waste water",
    ),
    (
        "illegal-ad",
        "Illegal advertising: flyers, painted ads, unauthorised signs",
    ),
    (
        "illegal-stall",
        "Unlicensed street vending and occupied pavements",
    ),
    (
        "fire-hazard",
        "Flammable material in corridors, blocked fire exits, illegal wiring",
    ),
    (
        "facility-damage",
        "Broken manhole covers, street lights, railings, public facilities",
    ),
    (
        "illegal-parking",
        "Vehicles blocking lanes, fire access or pavements",
    ),
    (
        "illegal-construction",
        "Unauthorised building or alteration work",
    ),
    ("greenery", "Damaged trees and green space"),
    ("noise", "Noise nuisance"),
    ("dispute", "Neighbourhood disputes needing mediation"),
    ("safety", "Public safety concerns"),
    ("other", "Anything not covered above"),
];

/// An incident category code, e.g. `garbage`: lowercase ASCII letters, digits and `-`, 1-32
/// characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Category(String);

/// A category code that is malformed or not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CategoryError {
    #[error("category {0:?} is malformed: use 1-32 lowercase letters, digits and '-'")]
    Malformed(String),
    #[error("unknown category {value:?}; expected one of: {expected}")]
    Unknown { value: String, expected: String },
}

impl Category {
    /// A catalogue category (what local commands accept).
    pub fn from_catalogue(code: &str) -> Result<Self, CategoryError> {
        let c = Self::try_from(code.trim().to_owned())?;
        if !CATEGORY_CATALOGUE.iter().any(|(k, _)| *k == c.0) {
            return Err(CategoryError::Unknown {
                value: c.0,
                expected: CATEGORY_CATALOGUE
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(c)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Category {
    type Error = CategoryError;

    fn try_from(s: String) -> Result<Self, CategoryError> {
        let ok = (1..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(CategoryError::Malformed(s));
        }
        Ok(Self(s))
    }
}

impl From<Category> for String {
    fn from(c: Category) -> String {
        c.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bounds on an event's fields. Local commands keep them ([`crate::command`]) and every
/// receiver refuses an event that breaks one ([`crate::rules`]); merge accepts what decodes.
pub mod limits {
    /// Longest description, comment, reason or assignee, in bytes.
    pub const MAX_TEXT_BYTES: usize = 8 * 1024;
    /// Longest author name, in bytes.
    pub const MAX_AUTHOR_BYTES: usize = 128;
    /// Lowest evaluation score.
    pub const MIN_SCORE: u8 = 1;
    /// Highest evaluation score.
    pub const MAX_SCORE: u8 = 5;
    /// Most event ids one `pred` or `removes` list may name.
    pub const MAX_REFS: usize = 1024;
    /// Longest name of a roster member, in bytes.
    pub const MAX_STAFF_NAME_BYTES: usize = 64;
    /// Longest phone number of a roster member, in bytes.
    pub const MAX_PHONE_BYTES: usize = 32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_round_trip_and_name_the_choices() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(*s));
        }
        let err = "done".parse::<Status>().unwrap_err();
        assert!(err.to_string().contains("in_progress"), "{err}");
        let names: Vec<&str> = Force::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "manager",
                "assistant",
                "supervisor",
                "party-secretary",
                "police",
                "judicial",
                "firefighter"
            ]
        );
        for f in Force::ALL {
            assert_eq!(f.as_str().parse::<Force>(), Ok(*f));
        }
    }

    #[test]
    fn catalogue_has_the_required_codes() {
        for code in [
            "garbage",
            "sewage",
            "illegal-ad",
            "illegal-stall",
            "fire-hazard",
            "facility-damage",
            "dispute",
            "other",
        ] {
            assert!(Category::from_catalogue(code).is_ok(), "{code}");
        }
        assert!(matches!(
            Category::from_catalogue("litter"),
            Err(CategoryError::Unknown { .. })
        ));
        assert!(matches!(
            Category::from_catalogue("Garbage!"),
            Err(CategoryError::Malformed(_))
        ));
        // Merge-side parsing accepts unknown but well-formed codes.
        assert!(Category::try_from("litter".to_owned()).is_ok());
    }

    #[test]
    fn locations_are_checked() {
        assert!(Location::new(39.9, 116.4, LocationSource::Manual).is_ok());
        assert!(Location::new(91.0, 0.0, LocationSource::Manual).is_err());
        assert!(Location::new(f64::NAN, 0.0, LocationSource::Gps).is_err());
    }
}
