//! The merge: a deterministic fold of events into incident state.
//!
//! The state of an incident depends only on the *set* of its events, never on the order,
//! duplication or delay in which they arrive, so every replica that has seen the same events
//! shows the same incident. The rules:
//!
//! - **Registers** (description, category, location, severity, status, level, assignee,
//!   evaluation) are multi-value registers resolved last-writer-wins. Each write names in
//!   `pred` the writes its author's state showed for that field. A write is *superseded* once
//!   any write names it. The writes not superseded are the register's *heads*; the head with the
//!   highest `(HLC, origin)` stamp is the value. Every other head was written concurrently and
//!   lost without its author's rival having seen it: it is listed in `conflicts` (field, value
//!   kept, value lost, who lost) until a later write that saw it supersedes it. Because a
//!   hybrid logical clock is always ahead of everything its node has seen, a write that saw
//!   another is always stamped after it.
//! - **Photos** are an add-wins set: a removal removes only the adds it names (those its
//!   author saw), so a photo added concurrently with a removal stays.
//! - **Comments** are ordered by `(HLC, origin)`.
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
    fn apply(&mut self, stamp: Stamp, author: &str, value: T, pred: &[EventId]) {
        self.superseded.extend(pred.iter().copied());
        self.heads.retain(|w| !pred.contains(&w.stamp.id()));
        let id = stamp.id();
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

    /// The writes a new local write of this field replaces (its `pred`).
    pub fn heads(&self) -> Vec<EventId> {
        self.heads.iter().map(|w| w.stamp.id()).collect()
    }

    /// Heads that lost to the winner.
    pub fn losers(&self) -> &[Write<T>] {
        let n = self.heads.len().saturating_sub(1);
        &self.heads[..n]
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

    /// Folds one event in. Returns `false` (and changes nothing) for an event already applied
    /// or one about another incident.
    pub fn apply(&mut self, e: &Event) -> bool {
        if e.incident != self.id || !self.events.insert(e.id()) {
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
