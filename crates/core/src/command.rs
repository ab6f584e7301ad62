//! Local commands: checked against the current state and the workflow, then turned into
//! events stamped by the node's [`Writer`]. The grid roster's commands
//! ([`plan_staff_set`], [`plan_staff_remove`]) make payloads the same way; their events get a
//! fresh UUIDv7 as `incident` (see [`crate::roster`]).

use crate::blob::BlobHash;
use crate::event::{
    limits, Category, Event, FieldValue, Level, Location, Millis, Payload, PhotoMeta, Report,
    Severity, StaffEntry, Status, Verdict,
};
use crate::hlc::{Clock, Hlc};
use crate::ids::{EventId, GridCode, IncidentId, NodeId};
use crate::merge::{IncidentState, Register};
use crate::roster::{Assignee, AssigneeError};
use crate::rules::{self, RuleError};
use crate::workflow;

/// One change a local user asks for.
#[derive(Clone, PartialEq, Debug)]
pub enum Change {
    Description(String),
    Category(Category),
    Location(Location),
    Severity(Severity),
    Status(Status),
    Escalate {
        level: Level,
        reason: String,
    },
    Assign {
        assignee: String,
        due: Option<Millis>,
    },
    Comment(String),
    Evaluate {
        score: u8,
        verdict: Option<Verdict>,
    },
    AddPhoto(PhotoMeta),
    RemovePhoto(BlobHash),
}

/// A local command the rules refuse. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("cannot move from {from} to {to}; from {from} the allowed statuses are: {allowed}")]
    Transition {
        from: Status,
        to: Status,
        allowed: String,
    },
    #[error("the incident is already {0}")]
    SameStatus(Status),
    #[error("the incident is already at level {0}")]
    SameLevel(Level),
    #[error("an evaluation needs the incident resolved, verified or closed; it is {0}")]
    EvaluateTooEarly(Status),
    #[error("score {0} is out of range: use {min} to {max}", min = limits::MIN_SCORE, max = limits::MAX_SCORE)]
    Score(u8),
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} bytes; the limit is {limit}")]
    TooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("the incident has no photo {0}")]
    NoSuchPhoto(BlobHash),
    #[error("{0} is changed twice in one command; make one change per field (or two commands)")]
    FieldTwice(&'static str),
    #[error("nothing to change: give at least one change")]
    NothingToDo,
    #[error("incident {0} has no report yet on this node; edits need the report first")]
    NotReported(IncidentId),
    /// A planned event would break an admission rule its peers check ([`crate::rules`]).
    #[error("{0}")]
    Rule(#[from] RuleError),
    /// An assignee that is not a department, `force:FORCE` or `staff:NAME`
    /// ([`crate::roster::Assignee`]).
    #[error("{0}")]
    Assignee(#[from] AssigneeError),
    /// A roster member's name or phone with a control character (a line break, a tab...).
    #[error("{field} {text:?} holds a control character")]
    Control { field: &'static str, text: String },
}

/// The event ids a local write names in `pred` or `removes`: sorted ascending by
/// `(origin bytes, seq)`, without duplicates, at most [`limits::MAX_REFS`] (the lowest). A
/// register with more heads than that (only a flood of concurrent writes makes one) keeps the
/// heads left out as conflicts, and the next write names them.
fn refs(mut ids: Vec<EventId>) -> Vec<EventId> {
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(limits::MAX_REFS);
    ids
}

/// The `pred` of a new local write of the field `reg` holds: its heads, as [`refs`].
fn pred<T>(reg: &Register<T>) -> Vec<EventId> {
    refs(reg.heads())
}

/// Every planned payload must pass the admission rules, or peers would refuse the event.
fn checked(payloads: Vec<Payload>) -> Result<Vec<Payload>, CommandError> {
    for p in &payloads {
        rules::check_payload(p)?;
    }
    Ok(payloads)
}

fn check_text(field: &'static str, text: &str, may_be_empty: bool) -> Result<(), CommandError> {
    if !may_be_empty && text.trim().is_empty() {
        return Err(CommandError::Empty { field });
    }
    if text.len() > limits::MAX_TEXT_BYTES {
        return Err(CommandError::TooLong {
            field,
            len: text.len(),
            limit: limits::MAX_TEXT_BYTES,
        });
    }
    Ok(())
}

/// Checks a new report and returns its payloads: the report, then one per photo.
pub fn plan_report(report: Report, photos: Vec<PhotoMeta>) -> Result<Vec<Payload>, CommandError> {
    check_text("description", &report.description, false)?;
    let mut out = vec![Payload::Reported(report)];
    out.extend(photos.into_iter().map(Payload::PhotoAdded));
    checked(out)
}

/// The register a change writes, if any: each may be written once per command, because every
/// write of a command names the same heads as its `pred`, so two writes of one field would
/// stand as concurrent and show the node in conflict with itself.
fn register_of(change: &Change) -> Option<&'static str> {
    Some(match change {
        Change::Description(_) => "description",
        Change::Category(_) => "category",
        Change::Location(_) => "location",
        Change::Severity(_) => "severity",
        Change::Status(_) => "status",
        Change::Escalate { .. } => "level",
        Change::Assign { .. } => "assignee",
        Change::Evaluate { .. } => "evaluation",
        Change::Comment(_) | Change::AddPhoto(_) | Change::RemovePhoto(_) => return None,
    })
}

/// Checks `changes` against `state` and the workflow, in order (a status change is seen by the
/// changes after it), and returns the payloads to write. Each field may change at most once
/// per command; comments and photos may repeat.
pub fn plan_edit(
    state: &IncidentState,
    changes: Vec<Change>,
) -> Result<Vec<Payload>, CommandError> {
    if changes.is_empty() {
        return Err(CommandError::NothingToDo);
    }
    let mut written = Vec::new();
    for field in changes.iter().filter_map(register_of) {
        if written.contains(&field) {
            return Err(CommandError::FieldTwice(field));
        }
        written.push(field);
    }
    if state.report.is_none() {
        return Err(CommandError::NotReported(state.id));
    }
    let mut status = state.status();
    let mut level = state.level();
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        out.push(match change {
            Change::Description(d) => {
                check_text("description", &d, false)?;
                Payload::Edited {
                    value: FieldValue::Description(d),
                    pred: pred(&state.description),
                }
            }
            Change::Category(c) => Payload::Edited {
                value: FieldValue::Category(c),
                pred: pred(&state.category),
            },
            Change::Location(l) => Payload::Edited {
                value: FieldValue::Location(l),
                pred: pred(&state.location),
            },
            Change::Severity(s) => Payload::Edited {
                value: FieldValue::Severity(s),
                pred: pred(&state.severity),
            },
            Change::Status(to) => {
                if to == status {
                    return Err(CommandError::SameStatus(to));
                }
                let allowed = workflow::allowed(status);
                if !allowed.contains(&to) {
                    return Err(CommandError::Transition {
                        from: status,
                        to,
                        allowed: allowed
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                status = to;
                Payload::StatusChanged {
                    status: to,
                    pred: pred(&state.status),
                }
            }
            Change::Escalate { level: to, reason } => {
                if to == level {
                    return Err(CommandError::SameLevel(to));
                }
                check_text("reason", &reason, true)?;
                level = to;
                Payload::Escalated {
                    level: to,
                    reason,
                    pred: pred(&state.level),
                }
            }
            Change::Assign { assignee, due } => {
                check_text("assignee", &assignee, false)?;
                // Written in its canonical form (`force:police`, `staff:NAME` trimmed); a
                // department as given.
                let assignee = Assignee::parse(&assignee)?.to_string();
                Payload::Assigned {
                    assignee,
                    due,
                    pred: pred(&state.assignee),
                }
            }
            Change::Comment(text) => {
                check_text("comment", &text, false)?;
                Payload::Commented { text }
            }
            Change::Evaluate { score, verdict } => {
                if !(limits::MIN_SCORE..=limits::MAX_SCORE).contains(&score) {
                    return Err(CommandError::Score(score));
                }
                if !workflow::can_evaluate(status) {
                    return Err(CommandError::EvaluateTooEarly(status));
                }
                Payload::Evaluated {
                    score,
                    verdict: verdict.unwrap_or(Verdict::from_score(score)),
                    pred: pred(&state.evaluation),
                }
            }
            Change::AddPhoto(meta) => Payload::PhotoAdded(meta),
            Change::RemovePhoto(hash) => {
                let removes = refs(state.photo_adds(&hash));
                if removes.is_empty() {
                    return Err(CommandError::NoSuchPhoto(hash));
                }
                Payload::PhotoRemoved { hash, removes }
            }
        });
    }
    checked(out)
}

/// A roster member's name as local commands write it: trimmed, 1 to
/// [`limits::MAX_STAFF_NAME_BYTES`] bytes, no control characters.
fn staff_name(name: &str) -> Result<String, CommandError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CommandError::Empty { field: "name" });
    }
    if name.len() > limits::MAX_STAFF_NAME_BYTES {
        return Err(CommandError::TooLong {
            field: "name",
            len: name.len(),
            limit: limits::MAX_STAFF_NAME_BYTES,
        });
    }
    if name.chars().any(char::is_control) {
        return Err(CommandError::Control {
            field: "name",
            text: name.to_owned(),
        });
    }
    Ok(name.to_owned())
}

/// Checks a new or changed member of a grid's roster and returns the payload to write
/// (a [`Payload::StaffSet`]; the grid is the event's). The name is trimmed; a blank phone
/// is none. A platform's command: [`crate::is_decision`] holds for it.
pub fn plan_staff_set(entry: StaffEntry) -> Result<Payload, CommandError> {
    let name = staff_name(&entry.name)?;
    let phone = match entry.phone.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) if p.len() > limits::MAX_PHONE_BYTES => {
            return Err(CommandError::TooLong {
                field: "phone",
                len: p.len(),
                limit: limits::MAX_PHONE_BYTES,
            })
        }
        Some(p) if p.chars().any(char::is_control) => {
            return Err(CommandError::Control {
                field: "phone",
                text: p.to_owned(),
            })
        }
        Some(p) => Some(p.to_owned()),
    };
    let payload = Payload::StaffSet(StaffEntry {
        name,
        phone,
        ..entry
    });
    rules::check_payload(&payload)?;
    Ok(payload)
}

/// The payload that takes member `name` (trimmed) off a grid's roster. Whether they are on
/// it is the caller's to check against its roster.
pub fn plan_staff_remove(name: &str) -> Result<Payload, CommandError> {
    let payload = Payload::StaffRemoved {
        name: staff_name(name)?,
    };
    rules::check_payload(&payload)?;
    Ok(payload)
}

/// Stamps a node's own events: origin, contiguous sequence numbers and HLC timestamps.
///
/// Persist [`Writer::next_seq`] and [`Writer::clock_last`] in the same transaction as the
/// events it made. A writer made by [`Writer::signing`] signs every event it makes with the
/// origin's key ([`crate::sign`]); one made by [`Writer::new`] leaves them unsigned (for
/// tests of the merge, which no peer admits).
#[derive(Clone)]
pub struct Writer {
    origin: NodeId,
    author: String,
    next_seq: u64,
    clock: Clock,
    secret: Option<[u8; 32]>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("origin", &self.origin)
            .field("author", &self.author)
            .field("next_seq", &self.next_seq)
            .field("clock", &self.clock)
            .field("signs", &self.secret.is_some())
            .finish()
    }
}

impl Writer {
    /// A writer whose next event gets `next_seq` and a timestamp after `clock_last`.
    pub fn new(origin: NodeId, author: impl Into<String>, next_seq: u64, clock_last: Hlc) -> Self {
        Self {
            origin,
            author: author.into(),
            next_seq: next_seq.max(1),
            clock: Clock::new(clock_last),
            secret: None,
        }
    }

    /// A writer for the node whose Ed25519 secret key seed is `secret` (the origin is its
    /// public key) that signs every event it makes.
    pub fn signing(
        secret: &[u8; 32],
        author: impl Into<String>,
        next_seq: u64,
        clock_last: Hlc,
    ) -> Self {
        let mut w = Self::new(NodeId::from_secret(secret), author, next_seq, clock_last);
        w.secret = Some(*secret);
        w
    }

    /// The origin of the events this writer makes.
    pub fn origin(&self) -> NodeId {
        self.origin
    }

    /// Makes the next event at physical time `now_ms`.
    pub fn write(
        &mut self,
        incident: IncidentId,
        grid: &GridCode,
        payload: Payload,
        now_ms: u64,
    ) -> Event {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut event = Event {
            origin: self.origin,
            seq,
            hlc: self.clock.tick(now_ms),
            incident,
            grid: grid.clone(),
            author: self.author.clone(),
            payload,
            signature: None,
        };
        if let Some(secret) = &self.secret {
            // The key is the origin's (`signing` derived one from the other), so signing can
            // fail only when the event does not encode (over the codec's size limit); then it
            // stays unsigned, and storing it fails on the same encoding.
            let _ = event.sign(secret);
        }
        event
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The latest timestamp issued or observed.
    pub fn clock_last(&self) -> Hlc {
        self.clock.last()
    }

    /// Moves the clock past a timestamp seen in a stored or received event.
    pub fn observe(&mut self, hlc: Hlc) {
        self.clock = Clock::new(self.clock.last().max(hlc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LocationSource, PhotoKind};
    use crate::rules::check_rules;

    const NOW: u64 = 1_764_000_000_000;

    fn grid() -> GridCode {
        "110101/002/014/03".parse().expect("grid")
    }

    fn photo(n: u8) -> PhotoMeta {
        PhotoMeta {
            hash: BlobHash::of(&[n]),
            thumb: BlobHash::of(&[n, n]),
            kind: PhotoKind::Before,
            width: 1,
            height: 1,
            bytes: 1,
            captured_at: None,
        }
    }

    /// A writer whose author is as long as an author may be, and an incident it reported.
    fn reported(writer: &mut Writer, description: &str) -> (IncidentState, Vec<Event>) {
        let id = IncidentId::new_v7(NOW, [5; 10]);
        let report = Report {
            category: Category::from_catalogue("garbage").expect("category"),
            description: description.into(),
            location: None,
            observed_at: Some(NOW as i64),
            severity: Severity::Normal,
        };
        let mut state = IncidentState::new(id);
        let mut events = Vec::new();
        for p in plan_report(report, vec![photo(1)]).expect("report") {
            let e = writer.write(id, &grid(), p, NOW);
            state.apply(&e);
            events.push(e);
        }
        (state, events)
    }

    fn apply(
        writer: &mut Writer,
        state: &mut IncidentState,
        changes: Vec<Change>,
        events: &mut Vec<Event>,
    ) {
        for p in plan_edit(state, changes).expect("a valid command") {
            let e = writer.write(state.id, &grid(), p, NOW);
            state.apply(&e);
            events.push(e);
        }
    }

    /// Every kind of command, with texts at their limits, writes events every peer admits.
    #[test]
    fn every_command_kind_writes_events_that_pass_the_admission_rules() {
        let long = "x".repeat(limits::MAX_TEXT_BYTES);
        let author = "a".repeat(limits::MAX_AUTHOR_BYTES);
        let mut w = Writer::new(NodeId([1; 32]), author, 1, Hlc::default());
        let (mut state, mut events) = reported(&mut w, &long);
        let location = Location::new(-90.0, 180.0, LocationSource::Gps).expect("location");
        let plans = vec![
            vec![
                Change::Description(long.clone()),
                Change::Category(Category::from_catalogue("sewage").expect("category")),
                Change::Location(location),
                Change::Severity(Severity::Urgent),
                Change::Comment(long.clone()),
                Change::AddPhoto(photo(2)),
            ],
            vec![Change::Status(Status::Accepted)],
            vec![
                Change::Escalate {
                    level: Level::Street,
                    reason: String::new(),
                },
                Change::Assign {
                    assignee: long.clone(),
                    due: Some(NOW as i64),
                },
            ],
            vec![
                Change::Escalate {
                    level: Level::District,
                    reason: long.clone(),
                },
                Change::RemovePhoto(photo(1).hash),
            ],
            vec![Change::Status(Status::Resolved)],
            vec![Change::Evaluate {
                score: limits::MIN_SCORE,
                verdict: None,
            }],
            vec![Change::Evaluate {
                score: limits::MAX_SCORE,
                verdict: Some(Verdict::Acceptable),
            }],
        ];
        for changes in plans {
            apply(&mut w, &mut state, changes, &mut events);
        }
        assert_eq!(events.len(), 16);
        for e in &events {
            assert_eq!(check_rules(e), Ok(()), "{:?}", e.payload);
        }
    }

    #[test]
    fn roster_commands_trim_and_keep_the_bounds() {
        use crate::event::Force;
        let entry = |name: &str, phone: Option<&str>| StaffEntry {
            name: name.into(),
            force: Force::Police,
            phone: phone.map(Into::into),
            device: None,
        };
        assert_eq!(
            plan_staff_set(entry("  Wang Fang ", Some(" 138 0000 0000 "))),
            Ok(Payload::StaffSet(StaffEntry {
                name: "Wang Fang".into(),
                force: Force::Police,
                phone: Some("138 0000 0000".into()),
                device: None,
            }))
        );
        assert_eq!(
            plan_staff_set(entry("Li", Some("  "))),
            Ok(Payload::StaffSet(entry("Li", None)))
        );
        assert_eq!(
            plan_staff_set(entry(" ", None)),
            Err(CommandError::Empty { field: "name" })
        );
        assert!(matches!(
            plan_staff_set(entry(&"x".repeat(65), None)),
            Err(CommandError::TooLong {
                field: "name",
                len: 65,
                limit: 64
            })
        ));
        assert!(matches!(
            plan_staff_set(entry("Li", Some(&"1".repeat(33)))),
            Err(CommandError::TooLong { field: "phone", .. })
        ));
        assert!(matches!(
            plan_staff_set(entry("Li\nWei", None)),
            Err(CommandError::Control { field: "name", .. })
        ));
        assert_eq!(
            plan_staff_remove(" Li "),
            Ok(Payload::StaffRemoved { name: "Li".into() })
        );
        assert!(plan_staff_remove("").is_err());
        let p = plan_staff_set(entry("Li", None)).expect("plan");
        assert!(crate::is_decision(&p));
        assert!(p.is_roster());
    }

    #[test]
    fn an_assignment_names_a_department_a_force_or_a_member() {
        let mut w = Writer::new(NodeId([1; 32]), "w", 1, Hlc::default());
        let (state, _) = reported(&mut w, "d");
        let assign = |assignee: &str| {
            plan_edit(
                &state,
                vec![Change::Assign {
                    assignee: assignee.into(),
                    due: None,
                }],
            )
        };
        for (given, written) in [
            ("sanitation", "sanitation"),
            ("force:firefighter", "force:firefighter"),
            ("force: police", "force:police"),
            ("staff: Wang Fang ", "staff:Wang Fang"),
        ] {
            match assign(given).expect(given).as_slice() {
                [Payload::Assigned { assignee, .. }] => assert_eq!(assignee, written),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(matches!(
            assign("force:traffic"),
            Err(CommandError::Assignee(AssigneeError::Force { .. }))
        ));
        assert!(matches!(
            assign("staff:"),
            Err(CommandError::Assignee(AssigneeError::NoStaffName(_)))
        ));
        assert_eq!(assign(" "), Err(CommandError::Empty { field: "assignee" }));
    }

    #[test]
    fn a_photo_peers_would_refuse_is_refused_locally() {
        let mut bad = photo(3);
        bad.width = 0;
        let report = Report {
            category: Category::from_catalogue("garbage").expect("category"),
            description: "d".into(),
            location: None,
            observed_at: None,
            severity: Severity::Normal,
        };
        assert_eq!(
            plan_report(report, vec![bad.clone()]),
            Err(CommandError::Rule(RuleError::Photo { field: "width" }))
        );
        let mut w = Writer::new(NodeId([1; 32]), "w", 1, Hlc::default());
        let (state, _) = reported(&mut w, "d");
        assert_eq!(
            plan_edit(&state, vec![Change::AddPhoto(bad)])
                .unwrap_err()
                .to_string(),
            "photo width is 0; it must be at least 1"
        );
    }

    /// `pred` and `removes` come sorted by (origin, seq), without duplicates, at most
    /// `MAX_REFS` of them, whatever the order the state holds its heads in.
    #[test]
    fn preds_are_sorted_unique_and_bounded() {
        let mut w = Writer::new(NodeId([0x80; 32]), "w", 1, Hlc::default());
        let (mut state, _) = reported(&mut w, "d");
        let report_id = state.report.as_ref().expect("reported").stamp.id();
        // Concurrent severity writes (naming only the report) from many origins, stamped in
        // the reverse order of their ids; the same photo added by each of them.
        let n = limits::MAX_REFS + 10;
        for k in 0..n {
            let mut origin = NodeId([0; 32]);
            origin.0[..2].copy_from_slice(&(k as u16).to_le_bytes());
            let mut other = Writer::new(origin, "o", 1, Hlc::new(NOW + (n - k) as u64, 0));
            for payload in [
                Payload::Edited {
                    value: FieldValue::Severity(Severity::High),
                    pred: vec![report_id],
                },
                Payload::PhotoAdded(photo(1)),
            ] {
                state.apply(&other.write(state.id, &grid(), payload, NOW));
            }
        }
        assert_eq!(state.severity.heads().len(), n);
        let planned = plan_edit(
            &state,
            vec![
                Change::Severity(Severity::Low),
                Change::RemovePhoto(photo(1).hash),
            ],
        )
        .expect("plan");
        for (p, all) in planned
            .iter()
            .zip([state.severity.heads(), state.photo_adds(&photo(1).hash)])
        {
            let ids = match p {
                Payload::Edited { pred, .. } => pred,
                Payload::PhotoRemoved { removes, .. } => removes,
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(ids.len(), limits::MAX_REFS);
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "ascending, no duplicates"
            );
            let mut want = all;
            want.sort();
            want.truncate(limits::MAX_REFS);
            assert_eq!(*ids, want, "the lowest ids");
            assert_eq!(rules::check_payload(p), Ok(()));
        }
        // The heads left out stay as conflicts; the next edit names them.
        let mut w = Writer::new(NodeId([0xff; 32]), "w", 1, Hlc::new(NOW + 10_000, 0));
        for p in planned {
            state.apply(&w.write(state.id, &grid(), p, NOW));
        }
        assert_eq!(state.severity.heads().len(), n - limits::MAX_REFS + 1);
        assert_eq!(state.severity.value(), Some(&Severity::Low));
        let p = plan_edit(&state, vec![Change::Severity(Severity::Normal)]).expect("plan");
        state.apply(&w.write(state.id, &grid(), p[0].clone(), NOW));
        assert_eq!(state.severity.heads().len(), 1);
    }
}
