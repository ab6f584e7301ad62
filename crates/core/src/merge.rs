//! The merge: a deterministic fold of events into incident state.
//!
//! The state of an incident depends only on the *set* of its events, never on the order,
//! duplication or delay in which they arrive, so every replica that has seen the same events
//! shows the same incident. The rules:
//!
//! - **Registers** (description, category, location, severity, status, level, assignee,
//!   evaluation) are multi-value registers resolved last-writer-wins. Each write names in
//!   `pred` the writes its author's state showed for that field. `pred` is a set: order and
//!   repeated entries carry no meaning, an entry naming the write itself is ignored, and an
//!   entry naming an event not (yet) held supersedes that event when it arrives. A write is
//!   *superseded* once any write names it. The writes not superseded are the register's *heads*; the head with the
//!   highest `(HLC, origin)` stamp is the value. Every other head was written concurrently and
//!   lost without its author's rival having seen it: if its value differs from the winner's,
//!   it is listed in `conflicts` (field, value kept, value lost, who lost) until a later write
//!   that saw it supersedes it. A head with the winner's value is agreement, not a conflict
//!   ([`Register::losers`] leaves it out); it stays a head, so the next write names it. Because a
//!   hybrid logical clock is always ahead of everything its node has seen, a write that saw
//!   another is always stamped after it.
//! - **Photos** are an add-wins set: a removal removes only the adds it names in `removes`
//!   (those its author saw; a set too), so a photo added concurrently with a removal stays.
//!   Only `removes` counts: the removal's `hash` is not compared with the adds', and an entry
//!   naming anything but a photo add removes nothing.
//! - **Comments** are ordered by `(HLC, origin)`.
//! - **Roster events** ([`Payload::StaffSet`], [`Payload::StaffRemoved`]) are about no
//!   incident: the fold ignores them (they are folded by [`crate::roster`]).
//! - Merge never refuses an event on workflow grounds: workflow rules are checked only when a
//!   local command is issued ([`crate::command`]). Convergence comes first.
//!
//! The fold assumes an event id names one content: two different events with the same
//! `(origin, seq)` (an equivocating or restored-from-backup origin) are refused by the store
//! before they reach the fold, since the fold keeps whichever arrived first.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::blob::BlobHash;
use crate::event::{
    Category, Event, FieldValue, Level, Location, Millis, Payload, PhotoMeta, Severity, Stamp,
    Status, Verdict,
};
use crate::ids::{EventId, GridCode, IncidentId};

/// One write to a register.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Write<T> {
    pub stamp: Stamp,
    pub author: String,
    pub value: T,
}

/// A multi-value register resolved last-writer-wins (see the module docs).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Register<T> {
    /// Writes no other write has superseded, in stamp order; the last one wins.
    heads: Vec<Write<T>>,
    /// Every write some write named in its `pred`.
    superseded: BTreeSet<EventId>,
}

impl<T> Default for Register<T> {
    fn default() -> Self {
        Self {
            heads: Vec::new(),
            superseded: BTreeSet::new(),
        }
    }
}

impl<T> Register<T> {
    /// `pred` is a set: its order and repeated entries mean nothing, and an entry naming the
    /// write itself is ignored (a write cannot replace itself).
    fn apply(&mut self, stamp: Stamp, author: &str, value: T, pred: &[EventId]) {
        let id = stamp.id();
        let named = || pred.iter().filter(|p| **p != id);
        self.superseded.extend(named().copied());
        self.heads.retain(|w| !named().any(|p| *p == w.stamp.id()));
        if self.superseded.contains(&id) || self.heads.iter().any(|w| w.stamp.id() == id) {
            return;
        }
        let at = self.heads.partition_point(|w| w.stamp < stamp);
        self.heads.insert(
            at,
            Write {
                stamp,
                author: author.to_owned(),
                value,
            },
        );
    }

    /// The winning write, if the field was ever written.
    pub fn winner(&self) -> Option<&Write<T>> {
        self.heads.last()
    }

    /// The winning value.
    pub fn value(&self) -> Option<&T> {
        self.winner().map(|w| &w.value)
    }

    /// The heads' ids, in stamp order: the writes a new local write of this field replaces
    /// (its `pred`, once sorted by id: see [`crate::command`]).
    pub fn heads(&self) -> Vec<EventId> {
        self.heads.iter().map(|w| w.stamp.id()).collect()
    }

    /// Heads that lost to the winner with another value, in stamp order: the conflicts.
    /// A head that wrote the winner's value agrees with it and is not one.
    pub fn losers(&self) -> Vec<&Write<T>>
    where
        T: PartialEq,
    {
        let Some((winner, rest)) = self.heads.split_last() else {
            return Vec::new();
        };
        rest.iter().filter(|w| w.value != winner.value).collect()
    }
}

/// Where an incident sits in the hierarchy, and why it was moved there.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Escalation {
    pub level: Level,
    pub reason: String,
}

/// Who handles an incident, and by when.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Assignment {
    pub assignee: String,
    pub due: Option<Millis>,
}

/// An evaluation of the handling.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    pub score: u8,
    pub verdict: Verdict,
}

/// A photo in the add-wins set.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PhotoEntry {
    pub stamp: Stamp,
    pub author: String,
    pub meta: PhotoMeta,
}

/// A comment.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CommentEntry {
    pub author: String,
    pub text: String,
}

/// Facts from the report event itself.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReportFacts {
    pub stamp: Stamp,
    pub author: String,
    pub grid: GridCode,
    pub observed_at: Option<Millis>,
}

/// The merged state of one incident.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct IncidentState {
    pub id: IncidentId,
    /// The report event, once it has arrived (events can arrive before it).
    pub report: Option<ReportFacts>,
    /// The lowest-stamped event seen and its grid (the grid shown before the report arrives).
    pub first: Option<(Stamp, GridCode)>,
    /// The highest stamp seen.
    pub last: Option<Stamp>,
    pub description: Register<String>,
    pub category: Register<Category>,
    pub location: Register<Location>,
    pub severity: Register<Severity>,
    pub status: Register<Status>,
    pub level: Register<Escalation>,
    pub assignee: Register<Assignment>,
    pub evaluation: Register<Evaluation>,
    pub photos: BTreeMap<EventId, PhotoEntry>,
    pub removed_photos: BTreeSet<EventId>,
    pub comments: BTreeMap<Stamp, CommentEntry>,
    pub events: BTreeSet<EventId>,
}

impl IncidentState {
    /// The state of an incident no event of which has been seen.
    pub fn new(id: IncidentId) -> Self {
        Self {
            id,
            report: None,
            first: None,
            last: None,
            description: Register::default(),
            category: Register::default(),
            location: Register::default(),
            severity: Register::default(),
            status: Register::default(),
            level: Register::default(),
            assignee: Register::default(),
            evaluation: Register::default(),
            photos: BTreeMap::new(),
            removed_photos: BTreeSet::new(),
            comments: BTreeMap::new(),
            events: BTreeSet::new(),
        }
    }

    /// Folds all `events` of incident `id` into a fresh state.
    pub fn replay<'a>(id: IncidentId, events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut s = Self::new(id);
        for e in events {
            s.apply(e);
        }
        s
    }

    /// Folds one event in. Returns `false` (and changes nothing) for an event already applied,
    /// one about another incident, and a roster event ([`Payload::is_roster`]), which is about
    /// no incident even should its `incident` id be this one's ([`crate::roster`]).
    pub fn apply(&mut self, e: &Event) -> bool {
        if e.incident != self.id || e.payload.is_roster() || !self.events.insert(e.id()) {
            return false;
        }
        let stamp = e.stamp();
        if self.first.as_ref().is_none_or(|(s, _)| stamp < *s) {
            self.first = Some((stamp, e.grid.clone()));
        }
        if self.last.is_none_or(|s| stamp > s) {
            self.last = Some(stamp);
        }
        let author = e.author.as_str();
        match &e.payload {
            Payload::Reported(r) => {
                // Two report events for one incident can only come from a broken origin; the
                // lowest stamp wins so that the choice does not depend on arrival order.
                if self.report.as_ref().is_none_or(|f| stamp < f.stamp) {
                    self.report = Some(ReportFacts {
                        stamp,
                        author: e.author.clone(),
                        grid: e.grid.clone(),
                        observed_at: r.observed_at,
                    });
                }
                self.description
                    .apply(stamp, author, r.description.clone(), &[]);
                self.category.apply(stamp, author, r.category.clone(), &[]);
                if let Some(l) = r.location {
                    self.location.apply(stamp, author, l, &[]);
                }
                self.severity.apply(stamp, author, r.severity, &[]);
                self.status.apply(stamp, author, Status::Reported, &[]);
            }
            Payload::Edited { value, pred } => match value {
                FieldValue::Description(v) => {
                    self.description.apply(stamp, author, v.clone(), pred)
                }
                FieldValue::Category(v) => self.category.apply(stamp, author, v.clone(), pred),
                FieldValue::Location(v) => self.location.apply(stamp, author, *v, pred),
                FieldValue::Severity(v) => self.severity.apply(stamp, author, *v, pred),
            },
            Payload::PhotoAdded(meta) => {
                self.photos.insert(
                    e.id(),
                    PhotoEntry {
                        stamp,
                        author: e.author.clone(),
                        meta: meta.clone(),
                    },
                );
            }
            Payload::PhotoRemoved { removes, .. } => {
                self.removed_photos.extend(removes.iter().copied());
            }
            Payload::StatusChanged { status, pred } => {
                self.status.apply(stamp, author, *status, pred)
            }
            Payload::Escalated {
                level,
                reason,
                pred,
            } => self.level.apply(
                stamp,
                author,
                Escalation {
                    level: *level,
                    reason: reason.clone(),
                },
                pred,
            ),
            Payload::Assigned {
                assignee,
                due,
                pred,
            } => self.assignee.apply(
                stamp,
                author,
                Assignment {
                    assignee: assignee.clone(),
                    due: *due,
                },
                pred,
            ),
            Payload::Commented { text } => {
                self.comments.insert(
                    stamp,
                    CommentEntry {
                        author: e.author.clone(),
                        text: text.clone(),
                    },
                );
            }
            Payload::Evaluated {
                score,
                verdict,
                pred,
            } => self.evaluation.apply(
                stamp,
                author,
                Evaluation {
                    score: *score,
                    verdict: *verdict,
                },
                pred,
            ),
            // Refused above: the roster is folded by `crate::roster`.
            Payload::StaffSet(_) | Payload::StaffRemoved { .. } => {}
        }
        true
    }

    /// The incident's grid: the report's, or before it arrives the lowest-stamped event's.
    pub fn grid(&self) -> Option<&GridCode> {
        self.report
            .as_ref()
            .map(|r| &r.grid)
            .or(self.first.as_ref().map(|(_, g)| g))
    }

    /// The current status (`reported` until any status is known).
    pub fn status(&self) -> Status {
        self.status.value().copied().unwrap_or(Status::Reported)
    }

    /// Whether the incident is overdue at `now_ms`: dispatched or in progress, with a due time
    /// before `now_ms` (a case resolved, sent back or never given a due time is not).
    pub fn is_overdue(&self, now_ms: Millis) -> bool {
        let handling = matches!(self.status(), Status::Dispatched | Status::InProgress);
        let due = self.assignee.value().and_then(|a| a.due);
        handling && due.is_some_and(|d| d < now_ms)
    }

    /// The current level (`grid` until the incident is escalated).
    pub fn level(&self) -> Level {
        self.level.value().map_or(Level::Grid, |e| e.level)
    }

    /// Visible photos: adds not removed, in stamp order, one entry per hash.
    pub fn visible_photos(&self) -> Vec<&PhotoEntry> {
        let mut live: Vec<&PhotoEntry> = self
            .photos
            .iter()
            .filter(|(id, _)| !self.removed_photos.contains(id))
            .map(|(_, p)| p)
            .collect();
        live.sort_by_key(|p| p.stamp);
        let mut seen = BTreeSet::new();
        live.retain(|p| seen.insert(p.meta.hash));
        live
    }

    /// The visible adds of photo `hash` (what a local removal must name).
    pub fn photo_adds(&self, hash: &BlobHash) -> Vec<EventId> {
        self.photos
            .iter()
            .filter(|(id, p)| p.meta.hash == *hash && !self.removed_photos.contains(id))
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Report;
    use crate::hlc::Hlc;
    use crate::ids::NodeId;

    const A: NodeId = NodeId([0xa1; 32]);
    const B: NodeId = NodeId([0xb2; 32]);

    fn incident() -> IncidentId {
        IncidentId::new_v7(1_764_000_000_000, [3; 10])
    }

    fn event(origin: NodeId, seq: u64, ms: u64, payload: Payload) -> Event {
        Event {
            origin,
            seq,
            hlc: Hlc::new(ms, 0),
            incident: incident(),
            grid: "110101/002/014/03".parse().expect("grid"),
            author: "w".into(),
            payload,
            signature: None,
        }
    }

    fn id(origin: NodeId, seq: u64) -> EventId {
        EventId { origin, seq }
    }

    fn severity(origin: NodeId, seq: u64, ms: u64, s: Severity, pred: Vec<EventId>) -> Event {
        event(
            origin,
            seq,
            ms,
            Payload::Edited {
                value: FieldValue::Severity(s),
                pred,
            },
        )
    }

    fn report() -> Event {
        event(
            A,
            1,
            1_000,
            Payload::Reported(Report {
                category: Category::try_from("garbage".to_owned()).expect("category"),
                description: "d".into(),
                location: None,
                observed_at: None,
                severity: Severity::Low,
            }),
        )
    }

    /// Overdue: dispatched or in progress past the due time; not before it, not without
    /// one, not once resolved.
    #[test]
    fn a_case_is_overdue_while_handled_past_its_due_time() {
        let status = |seq, s: Status, pred| {
            event(
                B,
                seq,
                3_000 + seq,
                Payload::StatusChanged { status: s, pred },
            )
        };
        let assign = |due| {
            event(
                B,
                1,
                2_000,
                Payload::Assigned {
                    assignee: "sanitation".into(),
                    due,
                    pred: vec![],
                },
            )
        };
        let due = 10_000;
        let dispatched = [
            report(),
            assign(Some(due)),
            status(2, Status::Dispatched, vec![]),
        ];
        let s = IncidentState::replay(incident(), &dispatched);
        assert!(!s.is_overdue(due), "at the due time it is not late yet");
        assert!(s.is_overdue(due + 1));
        let mut handled = dispatched.to_vec();
        handled.push(status(3, Status::InProgress, vec![id(B, 2)]));
        assert!(IncidentState::replay(incident(), &handled).is_overdue(due + 1));
        handled.push(status(4, Status::Resolved, vec![id(B, 3)]));
        assert!(!IncidentState::replay(incident(), &handled).is_overdue(due + 1));
        let no_due = [
            report(),
            assign(None),
            status(2, Status::Dispatched, vec![]),
        ];
        assert!(!IncidentState::replay(incident(), &no_due).is_overdue(i64::MAX));
        let undispatched = [report(), assign(Some(due))];
        assert!(!IncidentState::replay(incident(), &undispatched).is_overdue(due + 1));
    }

    /// Two concurrent severity writes (A:2, B:1), then a third naming both in `pred`.
    fn with_pred(pred: Vec<EventId>) -> IncidentState {
        IncidentState::replay(
            incident(),
            &[
                report(),
                severity(A, 2, 2_000, Severity::High, vec![id(A, 1)]),
                severity(B, 1, 2_001, Severity::Normal, vec![id(A, 1)]),
                severity(A, 3, 3_000, Severity::Urgent, pred),
            ],
        )
    }

    #[test]
    fn pred_order_and_duplicates_mean_nothing() {
        let sorted = with_pred(vec![id(A, 2), id(B, 1)]);
        assert_eq!(sorted.severity.value(), Some(&Severity::Urgent));
        assert!(sorted.severity.losers().is_empty());
        for pred in [
            vec![id(B, 1), id(A, 2)],
            vec![id(B, 1), id(A, 2), id(B, 1), id(A, 2), id(A, 2)],
            vec![id(A, 2), id(A, 2), id(B, 1)],
        ] {
            assert_eq!(with_pred(pred.clone()), sorted, "{pred:?}");
        }
    }

    #[test]
    fn a_write_naming_itself_is_read_as_not_naming_itself() {
        // A:3 names itself too: that entry is ignored, so it cannot clear the register.
        let s = with_pred(vec![id(A, 3), id(A, 2), id(B, 1), id(A, 3)]);
        assert_eq!(s, with_pred(vec![id(A, 2), id(B, 1)]));
        assert_eq!(s.severity.value(), Some(&Severity::Urgent));
        let alone = IncidentState::replay(
            incident(),
            &[severity(A, 3, 3_000, Severity::Urgent, vec![id(A, 3)])],
        );
        assert_eq!(alone.severity.value(), Some(&Severity::Urgent));
        assert_eq!(alone.severity.heads(), vec![id(A, 3)]);
    }

    #[test]
    fn naming_an_unknown_event_supersedes_it_when_it_arrives() {
        let later = severity(B, 9, 2_500, Severity::Normal, vec![]);
        let naming = severity(A, 2, 2_000, Severity::High, vec![id(B, 9), id(A, 1)]);
        for order in [
            vec![report(), naming.clone()],
            vec![report(), naming.clone(), later.clone()],
            vec![later.clone(), report(), naming.clone()],
        ] {
            let s = IncidentState::replay(incident(), &order);
            // B:9 is stamped after A:2 but was named by it: it never shows, not even as a
            // conflict.
            assert_eq!(s.severity.value(), Some(&Severity::High));
            assert!(s.severity.losers().is_empty());
        }
        // A pred naming an event of another field, or a removal naming something that is not
        // a photo add, changes nothing.
        let s = IncidentState::replay(
            incident(),
            &[
                report(),
                event(
                    B,
                    1,
                    2_000,
                    Payload::StatusChanged {
                        status: Status::Accepted,
                        pred: vec![id(A, 7), id(A, 1)],
                    },
                ),
                event(
                    B,
                    2,
                    2_100,
                    Payload::PhotoRemoved {
                        hash: BlobHash::of(b"p"),
                        removes: vec![id(A, 1), id(B, 2)],
                    },
                ),
            ],
        );
        assert_eq!(s.severity.value(), Some(&Severity::Low));
        assert_eq!(s.status(), Status::Accepted);
        assert!(s.status.losers().is_empty());
    }
}
