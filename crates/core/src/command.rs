//! Local commands: checked against the current state and the workflow, then turned into
//! events stamped by the node's [`Writer`].

use crate::blob::BlobHash;
use crate::event::{
    limits, Category, Event, FieldValue, Level, Location, Millis, Payload, PhotoMeta, Report,
    Severity, Status, Verdict,
};
use crate::hlc::{Clock, Hlc};
use crate::ids::{GridCode, IncidentId, NodeId};
use crate::merge::IncidentState;
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
    #[error("score {0} is out of range: use 1 to 5")]
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
    Ok(out)
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
                    pred: state.description.heads(),
                }
            }
            Change::Category(c) => Payload::Edited {
                value: FieldValue::Category(c),
                pred: state.category.heads(),
            },
            Change::Location(l) => Payload::Edited {
                value: FieldValue::Location(l),
                pred: state.location.heads(),
            },
            Change::Severity(s) => Payload::Edited {
                value: FieldValue::Severity(s),
                pred: state.severity.heads(),
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
                    pred: state.status.heads(),
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
                    pred: state.level.heads(),
                }
            }
            Change::Assign { assignee, due } => {
                check_text("assignee", &assignee, false)?;
                Payload::Assigned {
                    assignee,
                    due,
                    pred: state.assignee.heads(),
                }
            }
            Change::Comment(text) => {
                check_text("comment", &text, false)?;
                Payload::Commented { text }
            }
            Change::Evaluate { score, verdict } => {
                if !(1..=5).contains(&score) {
                    return Err(CommandError::Score(score));
                }
                if !workflow::can_evaluate(status) {
                    return Err(CommandError::EvaluateTooEarly(status));
                }
                Payload::Evaluated {
                    score,
                    verdict: verdict.unwrap_or(Verdict::from_score(score)),
                    pred: state.evaluation.heads(),
                }
            }
            Change::AddPhoto(meta) => Payload::PhotoAdded(meta),
            Change::RemovePhoto(hash) => {
                let removes = state.photo_adds(&hash);
                if removes.is_empty() {
                    return Err(CommandError::NoSuchPhoto(hash));
                }
                Payload::PhotoRemoved { hash, removes }
            }
        });
    }
    Ok(out)
}

/// Stamps a node's own events: origin, contiguous sequence numbers and HLC timestamps.
///
/// Persist [`Writer::next_seq`] and [`Writer::clock_last`] in the same transaction as the
/// events it made.
#[derive(Debug, Clone)]
pub struct Writer {
    origin: NodeId,
    author: String,
    next_seq: u64,
    clock: Clock,
}

impl Writer {
    /// A writer whose next event gets `next_seq` and a timestamp after `clock_last`.
    pub fn new(origin: NodeId, author: impl Into<String>, next_seq: u64, clock_last: Hlc) -> Self {
        Self {
            origin,
            author: author.into(),
            next_seq: next_seq.max(1),
            clock: Clock::new(clock_last),
        }
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
        Event {
            origin: self.origin,
            seq,
            hlc: self.clock.tick(now_ms),
            incident,
            grid: grid.clone(),
            author: self.author.clone(),
            payload,
            signature: None,
        }
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
