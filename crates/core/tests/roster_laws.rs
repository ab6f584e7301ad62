//! The roster laws, on random sets of roster events from three platforms about two grids:
//!
//! - (a) any permutation of the events, with any duplicates, folds to the same [`Roster`];
//! - (b) that roster is the model's: per `(grid, name)`, the event with the greatest stamp,
//!   a member active iff it is a `StaffSet`;
//! - (c) applying an event again returns `false` and changes nothing;
//! - (d) roster events never touch an incident: folded in among an incident's events (some
//!   even carrying the incident's id), they leave its state as it was.

use std::collections::BTreeMap;

use gridsync_core::{
    Category, Event, Force, GridCode, Hlc, IncidentId, IncidentState, NodeId, Payload, Report,
    Roster, Severity, StaffEntry,
};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};

const BASE_MS: u64 = 1_764_000_000_000;
const ORIGINS: [NodeId; 3] = [NodeId([0x11; 32]), NodeId([0x22; 32]), NodeId([0x33; 32])];
const GRIDS: [&str; 2] = ["110101/002/014/03", "110101/002/015/01"];
const NAMES: [&str; 3] = ["Wang Fang", "Li Wei", "Zhao Lei"];
const RNG_SEED: u64 = 0x726F_7374_6572_0001;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(RNG_SEED),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/roster_laws.txt"
        )))),
        ..ProptestConfig::default()
    }
}

fn grid(k: usize) -> GridCode {
    GRIDS[k].parse().expect("grid")
}

/// One roster write before it is given its origin's next sequence number.
#[derive(Debug, Clone)]
struct Write {
    origin: usize,
    /// Few distinct times, so that equal `wall_ms` with other origins or logicals happen.
    wall: u64,
    logical: u32,
    grid: usize,
    name: usize,
    /// `None`: a removal.
    set: Option<(usize, bool, Option<usize>)>,
}

fn write() -> impl Strategy<Value = Write> {
    (
        0..3usize,
        0..6u64,
        0..2u32,
        0..2usize,
        0..3usize,
        prop::option::weighted(0.7, (0..7usize, any::<bool>(), prop::option::of(0..3usize))),
    )
        .prop_map(|(origin, wall, logical, grid, name, set)| Write {
            origin,
            wall,
            logical,
            grid,
            name,
            set,
        })
}

/// The writes as events, each origin's numbered 1, 2, 3, ...
fn events(writes: &[Write]) -> Vec<Event> {
    let mut next = [1u64; 3];
    writes
        .iter()
        .map(|w| {
            let seq = next[w.origin];
            next[w.origin] += 1;
            let payload = match w.set {
                Some((force, phone, device)) => Payload::StaffSet(StaffEntry {
                    name: NAMES[w.name].into(),
                    force: Force::ALL[force],
                    phone: phone.then(|| format!("1380000{seq:04}")),
                    device: device.map(|d| ORIGINS[d]),
                }),
                None => Payload::StaffRemoved {
                    name: NAMES[w.name].into(),
                },
            };
            Event {
                origin: ORIGINS[w.origin],
                seq,
                hlc: Hlc::new(BASE_MS + w.wall, w.logical),
                incident: IncidentId::new_v7(BASE_MS, [seq as u8; 10]),
                grid: grid(w.grid),
                author: "platform".into(),
                payload,
                signature: None,
            }
        })
        .collect()
}

/// The model: per `(grid, name)`, the greatest-stamped event's entry (`None` if removed).
fn model(events: &[Event]) -> BTreeMap<(GridCode, String), Option<StaffEntry>> {
    let mut best: BTreeMap<(GridCode, String), &Event> = BTreeMap::new();
    for e in events {
        let name = match &e.payload {
            Payload::StaffSet(s) => s.name.clone(),
            Payload::StaffRemoved { name } => name.clone(),
            _ => continue,
        };
        let slot = best.entry((e.grid.clone(), name)).or_insert(e);
        if e.stamp() > slot.stamp() {
            *slot = e;
        }
    }
    best.into_iter()
        .map(|(k, e)| {
            let entry = match &e.payload {
                Payload::StaffSet(s) => Some(s.clone()),
                _ => None,
            };
            (k, entry)
        })
        .collect()
}

fn summary(r: &Roster) -> BTreeMap<(GridCode, String), Option<StaffEntry>> {
    r.slots()
        .map(|(g, n, s)| ((g.clone(), n.to_owned()), s.entry.clone()))
        .collect()
}

/// `events` in the order `keys` sorts them, with the events `dups` names repeated.
fn shuffled(events: &[Event], keys: &[u64], dups: &[usize]) -> Vec<Event> {
    let mut order: Vec<(u64, usize)> = (0..events.len())
        .map(|i| (keys.get(i).copied().unwrap_or(0), i))
        .collect();
    order.sort();
    let mut out: Vec<Event> = order.iter().map(|(_, i)| events[*i].clone()).collect();
    for d in dups {
        if !events.is_empty() {
            let e = events[d % events.len()].clone();
            let at = d % (out.len() + 1);
            out.insert(at, e);
        }
    }
    out
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_order_and_duplication_of_roster_events_gives_the_same_roster(
        writes in prop::collection::vec(write(), 0..40),
        keys in prop::collection::vec(any::<u64>(), 40),
        dups in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let events = events(&writes);
        let roster = Roster::replay(&events);
        // (b) the model.
        prop_assert_eq!(summary(&roster), model(&events));
        // (a) another order, with duplicates.
        let other = Roster::replay(&shuffled(&events, &keys, &dups));
        prop_assert_eq!(&other, &roster);
        for g in 0..GRIDS.len() {
            prop_assert_eq!(other.members(&grid(g)), roster.members(&grid(g)));
        }
        // (c) idempotence.
        let mut again = roster.clone();
        for e in &events {
            prop_assert!(!again.apply(e));
        }
        prop_assert_eq!(&again, &roster);
        // Members are what the model says is active.
        let active = model(&events).into_values().flatten().count();
        prop_assert_eq!(roster.all().len(), active);
    }

    #[test]
    fn roster_events_never_touch_an_incident(
        writes in prop::collection::vec(write(), 0..20),
        keys in prop::collection::vec(any::<u64>(), 40),
        same_id in prop::collection::vec(any::<bool>(), 20),
    ) {
        let id = IncidentId::new_v7(BASE_MS, [0x5a; 10]);
        let report = Event {
            origin: NodeId([0x44; 32]),
            seq: 1,
            hlc: Hlc::new(BASE_MS + 3, 0),
            incident: id,
            grid: grid(0),
            author: "patrol-7".into(),
            payload: Payload::Reported(Report {
                category: Category::from_catalogue("garbage").expect("category"),
                description: "Bags piled by the east gate".into(),
                location: None,
                observed_at: None,
                severity: Severity::Normal,
            }),
            signature: None,
        };
        let mut comment = report.clone();
        comment.seq = 2;
        comment.hlc = Hlc::new(BASE_MS + 4, 0);
        comment.payload = Payload::Commented { text: "More bags".into() };
        let incident_events = vec![report, comment];
        let alone = IncidentState::replay(id, &incident_events);

        let mut roster_events = events(&writes);
        // Some carry the incident's own id (a careless or hostile writer).
        for (e, same) in roster_events.iter_mut().zip(&same_id) {
            if *same {
                e.incident = id;
            }
        }
        let mut mixed = incident_events.clone();
        mixed.extend(roster_events.iter().cloned());
        let mixed = shuffled(&mixed, &keys, &[]);
        let state = IncidentState::replay(id, &mixed);
        prop_assert_eq!(&state, &alone);
        let mut fresh = IncidentState::new(id);
        for e in &roster_events {
            prop_assert!(!fresh.apply(e));
        }
        prop_assert_eq!(fresh, IncidentState::new(id));
        // And the incident's events leave the roster empty.
        prop_assert_eq!(Roster::replay(&incident_events), Roster::new());
    }
}
