//! Deadlines: a platform whose policy says so escalates an overdue case one level, once
//! (issue 10, item 6). An overdue case is dispatched or in progress past its due time
//! ([`IncidentState::is_overdue`]); every platform lists it (`list --overdue`).
//!
//! The rule, in [`escalations`] (a pure function, no clock, no I/O): a platform at level
//! `P` (a community workstation `community`, a street `street`, the district `district`)
//! escalates an overdue case at level `L <= P` to the level above `L`, with a signed event of
//! its own, unless it already escalated that case since the case's current assignment (so
//! once per dispatch, across restarts, whatever the other platforms do). A case at the
//! district has no level above it. The daemon checks every [`CHECK_INTERVAL`] and at start.

use std::time::Duration;

use gridsync_core::{Event, IncidentId, IncidentState, Level, Millis, NodeId, Payload};
use gridsync_proto::Role;

/// How often a relay with the policy looks for overdue cases: deadlines are set in hours, so
/// a minute late is on time.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The level a platform of `role` works at (none for a handheld).
pub fn level_of(role: Role) -> Option<Level> {
    match role {
        Role::Community => Some(Level::Community),
        Role::Street => Some(Level::Street),
        Role::District => Some(Level::District),
        Role::Device => None,
    }
}

/// The level above `level`, if any.
pub fn above(level: Level) -> Option<Level> {
    match level {
        Level::Grid => Some(Level::Community),
        Level::Community => Some(Level::Street),
        Level::Street => Some(Level::District),
        Level::District => None,
    }
}

/// One escalation to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub incident: IncidentId,
    pub to: Level,
    /// The reason the event gives.
    pub reason: String,
}

/// The overdue cases the platform `me` at level `mine` escalates now, given each incident's
/// state and events.
pub fn escalations(
    incidents: &[(IncidentState, Vec<Event>)],
    me: &NodeId,
    mine: Level,
    now_ms: Millis,
) -> Vec<Escalation> {
    let mut out = Vec::new();
    for (state, events) in incidents {
        if !state.is_overdue(now_ms) {
            continue;
        }
        let level = state.level();
        if level > mine {
            continue;
        }
        let Some(to) = above(level) else { continue };
        let Some(assigned) = state.assignee.winner() else {
            continue;
        };
        let already = events.iter().any(|e| {
            e.origin == *me
                && matches!(e.payload, Payload::Escalated { .. })
                && e.stamp() > assigned.stamp
        });
        if already {
            continue;
        }
        let due = assigned.value.due.unwrap_or_default();
        let reason = format!(
            "overdue: {} was due {}",
            assigned.value.assignee,
            gridsync_core::view::rfc3339(due)
        );
        out.push(Escalation {
            incident: state.id,
            to,
            reason,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use gridsync_core::{Category, Hlc, Report, Severity, Status};

    use super::*;

    const T0: Millis = 1_790_000_000_000;
    const HOUR: Millis = 3_600_000;
    const STREET: NodeId = NodeId([2; 32]);
    const COMMUNITY: NodeId = NodeId([3; 32]);

    fn event(
        origin: NodeId,
        seq: u64,
        at: Millis,
        incident: IncidentId,
        payload: Payload,
    ) -> Event {
        Event {
            origin,
            seq,
            hlc: Hlc::new(at as u64, 0),
            incident,
            grid: "110101/002/014/03".parse().expect("grid"),
            author: "someone".into(),
            payload,
            signature: None,
        }
    }

    /// A case reported at T0 and dispatched by `by` with a due time of T0 + 2 h.
    fn dispatched(n: u8, by: NodeId) -> Vec<Event> {
        let id = IncidentId::new_v7(T0 as u64, [n; 10]);
        let pda = NodeId([1; 32]);
        vec![
            event(
                pda,
                1,
                T0,
                id,
                Payload::Reported(Report {
                    category: Category::from_catalogue("garbage").expect("code"),
                    description: "bags".into(),
                    location: None,
                    observed_at: None,
                    severity: Severity::Normal,
                }),
            ),
            event(
                by,
                1,
                T0 + 60_000,
                id,
                Payload::StatusChanged {
                    status: Status::Dispatched,
                    pred: vec![],
                },
            ),
            event(
                by,
                2,
                T0 + 60_000,
                id,
                Payload::Assigned {
                    assignee: "sanitation".into(),
                    due: Some(T0 + 2 * HOUR),
                    pred: vec![],
                },
            ),
        ]
    }

    fn held(cases: &[Vec<Event>]) -> Vec<(IncidentState, Vec<Event>)> {
        cases
            .iter()
            .map(|events| {
                (
                    IncidentState::replay(events[0].incident, events),
                    events.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn an_overdue_case_goes_one_level_up_once_per_dispatch() {
        let case = dispatched(1, STREET);
        let id = case[0].incident;
        // Not yet due: nothing.
        assert!(escalations(
            &held(std::slice::from_ref(&case)),
            &STREET,
            Level::Street,
            T0 + HOUR
        )
        .is_empty());
        // Overdue at the grid level: to the community, naming the assignee and the due time.
        let now = T0 + 3 * HOUR;
        let todo = escalations(
            &held(std::slice::from_ref(&case)),
            &STREET,
            Level::Street,
            now,
        );
        assert_eq!(todo.len(), 1);
        assert_eq!((todo[0].incident, todo[0].to), (id, Level::Community));
        assert!(
            todo[0].reason.contains("sanitation was due"),
            "{}",
            todo[0].reason
        );
        // Once escalated by this platform, not again, though still overdue.
        let mut after = case.clone();
        after.push(event(
            STREET,
            3,
            now,
            id,
            Payload::Escalated {
                level: Level::Community,
                reason: todo[0].reason.clone(),
                pred: vec![],
            },
        ));
        assert!(escalations(
            &held(std::slice::from_ref(&after)),
            &STREET,
            Level::Street,
            now + HOUR
        )
        .is_empty());
        // Another platform's escalation does not count as this one's.
        let todo = escalations(
            &held(std::slice::from_ref(&after)),
            &COMMUNITY,
            Level::Community,
            now,
        );
        assert_eq!(todo.len(), 1);
        assert_eq!(todo[0].to, Level::Street);
        // A new dispatch (a later assignment) is a new deadline: escalated again when overdue.
        after.push(event(
            STREET,
            4,
            now + HOUR,
            id,
            Payload::Assigned {
                assignee: "force:firefighter".into(),
                due: Some(now + 2 * HOUR),
                pred: vec![],
            },
        ));
        let todo = escalations(&held(&[after]), &STREET, Level::Street, now + 4 * HOUR);
        assert_eq!(todo.len(), 1);
        assert_eq!(todo[0].to, Level::Street);
    }

    #[test]
    fn a_platform_leaves_cases_above_it_and_the_district_has_nowhere_to_send() {
        let mut case = dispatched(2, STREET);
        let id = case[0].incident;
        case.push(event(
            STREET,
            3,
            T0 + 90_000,
            id,
            Payload::Escalated {
                level: Level::District,
                reason: "big".into(),
                pred: vec![],
            },
        ));
        let now = T0 + 3 * HOUR;
        // At the district: a community or a street does not touch it...
        assert!(escalations(
            &held(std::slice::from_ref(&case)),
            &COMMUNITY,
            Level::Community,
            now
        )
        .is_empty());
        // ...and the district has no level above.
        assert!(escalations(&held(&[case]), &NodeId([4; 32]), Level::District, now).is_empty());
        assert_eq!(level_of(Role::Device), None);
        assert_eq!(level_of(Role::Community), Some(Level::Community));
    }
}
