//! The grid roster: who serves each grid, kept as signed events in the same log as the
//! incidents, and how an assignment names a force or a member of it.
//!
//! Each grid has seven forces ([`Force`]). A platform (a relay) writes a
//! [`Payload::StaffSet`] to add a member to a grid's roster or change one, and a
//! [`Payload::StaffRemoved`] to take one off. The event's [`Event::grid`] is the member's grid,
//! so the roster syncs exactly as the grid's incidents do: down to the grid's handhelds, up to
//! every platform above. [`Event::incident`] is a fresh UUIDv7 that only names the event; a
//! roster event is about no incident, and [`IncidentState::apply`](crate::IncidentState::apply)
//! ignores it.
//!
//! [`Roster`] is the fold: per `(grid, name)`, the roster event with the greatest
//! [`Event::stamp`] wins, a `StaffSet` making the member active with its entry, a
//! `StaffRemoved` making them inactive. Like the incident merge it depends only on the *set*
//! of events: any order and any duplication give the same roster (checked by proptest in
//! `tests/roster_laws.rs`). Names are compared byte for byte (local commands trim them).
//!
//! [`Assignee`] is the convention for `Assigned.assignee`: a department (`sanitation`), one
//! of the grid's forces (`force:firefighter`) or a roster member (`staff:NAME`). The wire
//! keeps a plain string; receivers accept any, and the incident JSON classifies it with
//! [`Assignee::classify`].

use std::collections::BTreeMap;
use std::fmt;

use crate::event::{limits, Event, Force, Payload, StaffEntry, Stamp, VocabularyError};
use crate::ids::{GridCode, NodeId};

/// One `(grid, name)` of the roster: the winning event's stamp and what it says.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Slot {
    /// The stamp of the roster event that won for this name.
    pub stamp: Stamp,
    /// The member's entry; `None` once removed.
    pub entry: Option<StaffEntry>,
}

/// The fold of roster events: per `(grid, name)`, last writer wins by [`Event::stamp`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Roster {
    slots: BTreeMap<(GridCode, String), Slot>,
}

impl Roster {
    /// An empty roster.
    pub fn new() -> Self {
        Self::default()
    }

    /// The roster `events` fold to (events about incidents are skipped).
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut r = Self::new();
        for e in events {
            r.apply(e);
        }
        r
    }

    /// Folds one event in. Returns `true` when it changed the roster: a roster event whose
    /// stamp beats the one held for its `(grid, name)`. An event about an incident, one
    /// already applied and one that lost return `false` and change nothing.
    pub fn apply(&mut self, e: &Event) -> bool {
        let (name, entry) = match &e.payload {
            Payload::StaffSet(entry) => (&entry.name, Some(entry.clone())),
            Payload::StaffRemoved { name } => (name, None),
            _ => return false,
        };
        let stamp = e.stamp();
        let key = (e.grid.clone(), name.clone());
        match self.slots.get(&key) {
            Some(held) if held.stamp >= stamp => false,
            _ => {
                self.slots.insert(key, Slot { stamp, entry });
                true
            }
        }
    }

    /// The active members of `grid`, by force (in [`Force::ALL`] order) then name.
    pub fn members(&self, grid: &GridCode) -> Vec<&StaffEntry> {
        let mut out: Vec<&StaffEntry> = self
            .slots
            .iter()
            .filter(|((g, _), _)| g == grid)
            .filter_map(|(_, s)| s.entry.as_ref())
            .collect();
        out.sort_by(|a, b| (a.force, &a.name).cmp(&(b.force, &b.name)));
        out
    }

    /// The active member `name` of `grid`.
    pub fn member(&self, grid: &GridCode, name: &str) -> Option<&StaffEntry> {
        self.slots
            .get(&(grid.clone(), name.to_owned()))
            .and_then(|s| s.entry.as_ref())
    }

    /// Every active member, with their grid, by grid, then force, then name.
    pub fn all(&self) -> Vec<(&GridCode, &StaffEntry)> {
        let mut out: Vec<(&GridCode, &StaffEntry)> = self
            .slots
            .iter()
            .filter_map(|((g, _), s)| s.entry.as_ref().map(|e| (g, e)))
            .collect();
        out.sort_by(|(ga, a), (gb, b)| (*ga, a.force, &a.name).cmp(&(*gb, b.force, &b.name)));
        out
    }

    /// The active member whose handheld is `device`; should several name it, the one set
    /// last (the greatest stamp), so every node that holds the same events answers alike.
    pub fn of_device(&self, device: &NodeId) -> Option<(&GridCode, &StaffEntry)> {
        self.slots
            .iter()
            .filter_map(|((g, _), s)| s.entry.as_ref().map(|e| (g, s.stamp, e)))
            .filter(|(_, _, e)| e.device.as_ref() == Some(device))
            .max_by_key(|(_, stamp, _)| *stamp)
            .map(|(g, _, e)| (g, e))
    }

    /// Every `(grid, name)` ever written with the winning slot, removed ones included.
    pub fn slots(&self) -> impl Iterator<Item = (&GridCode, &str, &Slot)> {
        self.slots.iter().map(|((g, n), s)| (g, n.as_str(), s))
    }
}

/// The prefix of an assignee that names one of the grid's forces.
pub const FORCE_PREFIX: &str = "force:";
/// The prefix of an assignee that names a member of the grid's roster.
pub const STAFF_PREFIX: &str = "staff:";

/// Whom an incident is assigned to, as `Assigned.assignee` writes it: a department
/// (`sanitation`), one of the grid's forces (`force:firefighter`) or a member of the grid's
/// roster (`staff:NAME`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Assignee {
    /// A department, by its name (which does not start with `force:` or `staff:`).
    Department(String),
    /// One of the grid's seven forces.
    Force(Force),
    /// A member of the grid's roster, by name.
    Staff(String),
}

/// An assignee a local command refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssigneeError {
    #[error("the assignee is empty")]
    Empty,
    #[error("department {0:?} starts with {prefix:?}, which names a force or a roster member: use --force or --staff", prefix = reserved_prefix(.0))]
    Reserved(String),
    #[error("assignee {text:?}: {error}")]
    Force {
        text: String,
        error: VocabularyError,
    },
    #[error("assignee {0:?} names no roster member: give a name after {STAFF_PREFIX:?}")]
    NoStaffName(String),
    #[error("assignee {text:?}: a roster member's name is at most {limit} bytes", limit = limits::MAX_STAFF_NAME_BYTES)]
    StaffNameTooLong { text: String },
    #[error("assignee is {len} bytes; the limit is {limit}", limit = limits::MAX_TEXT_BYTES)]
    TooLong { len: usize },
}

fn reserved_prefix(text: &str) -> &'static str {
    if text.starts_with(FORCE_PREFIX) {
        FORCE_PREFIX
    } else {
        STAFF_PREFIX
    }
}

impl Assignee {
    /// Parses an assignee as a local command writes it: `force:` and a force's name,
    /// `staff:` and a member's name (1 to 64 bytes once trimmed), or else a department (1 to
    /// 8192 bytes, not only whitespace, kept as written).
    pub fn parse(text: &str) -> Result<Self, AssigneeError> {
        if let Some(rest) = text.strip_prefix(FORCE_PREFIX) {
            return rest.parse::<Force>().map(Assignee::Force).map_err(|error| {
                AssigneeError::Force {
                    text: text.to_owned(),
                    error,
                }
            });
        }
        if let Some(rest) = text.strip_prefix(STAFF_PREFIX) {
            let name = rest.trim();
            if name.is_empty() {
                return Err(AssigneeError::NoStaffName(text.to_owned()));
            }
            if name.len() > limits::MAX_STAFF_NAME_BYTES {
                return Err(AssigneeError::StaffNameTooLong {
                    text: text.to_owned(),
                });
            }
            return Ok(Assignee::Staff(name.to_owned()));
        }
        Self::department(text)
    }

    /// A department: refused when empty, over the text limit, or starting with `force:` or
    /// `staff:`.
    pub fn department(name: &str) -> Result<Self, AssigneeError> {
        if name.trim().is_empty() {
            return Err(AssigneeError::Empty);
        }
        if name.starts_with(FORCE_PREFIX) || name.starts_with(STAFF_PREFIX) {
            return Err(AssigneeError::Reserved(name.to_owned()));
        }
        if name.len() > limits::MAX_TEXT_BYTES {
            return Err(AssigneeError::TooLong { len: name.len() });
        }
        Ok(Assignee::Department(name.to_owned()))
    }

    /// `department`, `force` or `staff`.
    pub fn kind(&self) -> &'static str {
        match self {
            Assignee::Department(_) => "department",
            Assignee::Force(_) => "force",
            Assignee::Staff(_) => "staff",
        }
    }

    /// The department's name, the force's name or the member's name.
    pub fn name(&self) -> &str {
        match self {
            Assignee::Department(n) | Assignee::Staff(n) => n,
            Assignee::Force(f) => f.as_str(),
        }
    }

    /// The kind and name of any assignee text, as received: `force:` + the rest, `staff:` +
    /// the rest, else a department named by the whole text. Never fails (a newer node may
    /// name a force this build does not know), and depends on the text alone, so every
    /// node classifies an assignment alike.
    pub fn classify(text: &str) -> (&'static str, &str) {
        if let Some(rest) = text.strip_prefix(FORCE_PREFIX) {
            ("force", rest)
        } else if let Some(rest) = text.strip_prefix(STAFF_PREFIX) {
            ("staff", rest)
        } else {
            ("department", text)
        }
    }
}

impl fmt::Display for Assignee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Assignee::Department(n) => f.write_str(n),
            Assignee::Force(force) => write!(f, "{FORCE_PREFIX}{force}"),
            Assignee::Staff(n) => write!(f, "{STAFF_PREFIX}{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::ids::IncidentId;

    const A: NodeId = NodeId([0xa1; 32]);
    const B: NodeId = NodeId([0xb2; 32]);

    fn grid(text: &str) -> GridCode {
        text.parse().expect("grid")
    }

    fn event(origin: NodeId, seq: u64, ms: u64, grid_code: &str, payload: Payload) -> Event {
        Event {
            origin,
            seq,
            hlc: Hlc::new(ms, 0),
            incident: IncidentId::new_v7(ms, [seq as u8; 10]),
            grid: grid(grid_code),
            author: "street-center".into(),
            payload,
            signature: None,
        }
    }

    fn set(name: &str, force: Force, device: Option<NodeId>) -> Payload {
        Payload::StaffSet(StaffEntry {
            name: name.into(),
            force,
            phone: Some("13800000000".into()),
            device,
        })
    }

    const G: &str = "110101/002/014/03";
    const H: &str = "110101/002/015/01";

    #[test]
    fn the_last_write_per_grid_and_name_wins_whatever_the_order() {
        let events = [
            event(A, 1, 100, G, set("Wang Fang", Force::Police, Some(B))),
            event(
                B,
                1,
                200,
                G,
                Payload::StaffRemoved {
                    name: "Wang Fang".into(),
                },
            ),
            event(A, 2, 300, G, set("Wang Fang", Force::Police, None)),
            event(A, 3, 150, G, set("Li Wei", Force::Firefighter, None)),
            event(A, 4, 160, H, set("Li Wei", Force::Manager, None)),
            event(
                B,
                2,
                400,
                H,
                Payload::StaffRemoved {
                    name: "Li Wei".into(),
                },
            ),
        ];
        let forward = Roster::replay(&events);
        let mut backward = Roster::new();
        for e in events.iter().rev() {
            backward.apply(e);
        }
        assert_eq!(forward, backward);
        let members: Vec<(&str, Force)> = forward
            .members(&grid(G))
            .iter()
            .map(|e| (e.name.as_str(), e.force))
            .collect();
        assert_eq!(
            members,
            [("Wang Fang", Force::Police), ("Li Wei", Force::Firefighter)],
            "by force, then name"
        );
        assert!(forward.members(&grid(H)).is_empty(), "removed last");
        assert_eq!(
            forward.member(&grid(G), "Wang Fang").map(|e| e.device),
            Some(None)
        );
        assert!(
            forward.of_device(&B).is_none(),
            "the device was unset later"
        );
        // Applying again changes nothing; a loser changes nothing.
        let mut again = forward.clone();
        assert!(events.iter().all(|e| !again.apply(e)));
        assert_eq!(again, forward);
    }

    #[test]
    fn incident_events_are_not_roster_events() {
        let mut r = Roster::new();
        let comment = event(A, 1, 1, G, Payload::Commented { text: "x".into() });
        assert!(!r.apply(&comment));
        assert_eq!(r, Roster::new());
    }

    #[test]
    fn of_device_is_the_member_set_last() {
        let r = Roster::replay(&[
            event(A, 1, 100, G, set("Wang Fang", Force::Police, Some(B))),
            event(A, 2, 200, H, set("Zhao Lei", Force::Assistant, Some(B))),
        ]);
        let (g, e) = r.of_device(&B).expect("a member");
        assert_eq!((g.as_str(), e.name.as_str()), (H, "Zhao Lei"));
        assert_eq!(r.all().len(), 2);
    }

    #[test]
    fn assignees_parse_print_and_classify() {
        for (text, want) in [
            ("sanitation", Assignee::Department("sanitation".into())),
            ("force:firefighter", Assignee::Force(Force::Firefighter)),
            (
                "force:party-secretary",
                Assignee::Force(Force::PartySecretary),
            ),
            ("staff:Wang Fang", Assignee::Staff("Wang Fang".into())),
        ] {
            let got = Assignee::parse(text).expect(text);
            assert_eq!(got, want);
            assert_eq!(got.to_string(), text);
            assert_eq!(Assignee::classify(text), (got.kind(), got.name()));
        }
        assert!(matches!(
            Assignee::parse("force:traffic"),
            Err(AssigneeError::Force { .. })
        ));
        assert_eq!(Assignee::classify("force:traffic"), ("force", "traffic"));
        assert!(matches!(
            Assignee::parse("staff: "),
            Err(AssigneeError::NoStaffName(_))
        ));
        assert!(matches!(
            Assignee::parse(&format!("staff:{}", "x".repeat(65))),
            Err(AssigneeError::StaffNameTooLong { .. })
        ));
        assert_eq!(Assignee::parse("  "), Err(AssigneeError::Empty));
        let reserved = Assignee::department("force:police").expect_err("reserved");
        assert!(reserved.to_string().contains("--force"), "{reserved}");
        assert!(!reserved.to_string().contains('\n'));
        assert!(Assignee::department("staff:x").is_err());
        assert_eq!(Assignee::classify("Force:x"), ("department", "Force:x"));
    }
}
