//! The merge laws, checked on random but realistic histories.
//!
//! Three replicas (three node ids, each with its own [`Writer`] and its own [`IncidentState`]
//! per incident) report and edit one to three incidents. Every write takes its `pred` from the
//! writing replica's *own* state, and replicas only learn of each other's writes through
//! occasional, partial, sometimes out-of-order syncs, so concurrent writes, conflicts, removals
//! that miss concurrent adds and preds naming writes the receiver has not seen yet all happen.
//! Replica clocks are skewed and jitter backwards and forwards.
//!
//! Laws checked on every generated history (per incident):
//! - (a) any permutation of the events, with random duplicates, folds to the same state and
//!   the same incident JSON; so does every replica once it has been sent everything;
//! - (b) folding a prefix and then the rest equals folding everything, also through
//!   `codec::encode_state` / `decode_state` in the middle;
//! - (c) applying an event a second time returns `false` and changes nothing;
//! - (d) add-wins: a photo is visible iff some add of its hash was named by no removal;
//! - (e) conflicts: the register heads, winner and `conflicts` entries equal an independent
//!   model computed straight from the event set.
//!
//! Dedicated properties pin (d) and (e) on hand-shaped histories.

use std::collections::{BTreeMap, BTreeSet};

use gridsync_core::codec;
use gridsync_core::command::{self, Change};
use gridsync_core::merge::{Assignment, Escalation, Evaluation, Register};
use gridsync_core::rules;
use gridsync_core::workflow;
use gridsync_core::{
    BlobHash, Category, Event, EventId, FieldValue, GridCode, Hlc, IncidentId, IncidentState,
    Level, Location, LocationSource, NodeId, Payload, PhotoKind, PhotoMeta, Report, Severity,
    Stamp, Status, Verdict, Writer,
};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};
use serde::Serialize;
use serde_json::Value;

const BASE_MS: u64 = 1_764_000_000_000;
const NODES: [NodeId; 3] = [NodeId([0x11; 32]), NodeId([0x22; 32]), NodeId([0x33; 32])];
const AUTHORS: [&str; 3] = ["patrol-7", "street-center", "district-supervisor"];
const GRIDS: [&str; 3] = [
    "110101/002/014/03",
    "110101/002/015/01",
    "110102/001/001/07",
];
const DESCRIPTIONS: [&str; 5] = [
    "Bags piled by the east gate",
    "Overflowing bin next to the bus stop",
    "Flyers glued on the lamp post",
    "Manhole cover cracked",
    "Blocked drain, water standing",
];
const CATEGORIES: [&str; 5] = [
    "garbage",
    "sewage",
    "illegal-ad",
    "facility-damage",
    "other",
];
const ASSIGNEES: [&str; 3] = ["sanitation", "roads-dept", "water-bureau"];

/// The fixed seed every property here starts from, so a run is reproducible: the same build
/// generates the same cases every time. Persisted failures in `proptest-regressions/` are
/// still replayed first. To explore other histories, set `PROPTEST_RNG_SEED=<u64>` (the
/// `proptest!` macro lets it override this) — and `PROPTEST_CASES` to run more of them.
const RNG_SEED: u64 = 0x6772_6964_7379_6E63; // "gridsync"

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(RNG_SEED),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/merge_laws.txt"
        )))),
        ..ProptestConfig::default()
    }
}

/// xorshift64*: the simulator's own deterministic randomness, seeded by proptest.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn index(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

fn incident_id(k: usize) -> IncidentId {
    IncidentId::new_v7(BASE_MS + k as u64 * 1_000, [k as u8 + 1; 10])
}

fn grid(k: usize) -> GridCode {
    GRIDS[k].parse().expect("grid code")
}

fn category(code: &str) -> Category {
    Category::from_catalogue(code).expect("catalogue category")
}

fn photo(k: u64, rng: &mut Rng) -> PhotoMeta {
    PhotoMeta {
        hash: BlobHash::of(&[k as u8]),
        thumb: BlobHash::of(&[k as u8, 0xff]),
        kind: rng.pick(PhotoKind::ALL),
        width: 1200,
        height: 1600,
        bytes: 200_000 + k * 1_000,
        captured_at: rng
            .chance(1, 2)
            .then(|| BASE_MS as i64 - rng.below(86_400_000) as i64),
    }
}

fn location(rng: &mut Rng) -> Location {
    let lat = rng.below(180_000_001) as f64 / 1e6 - 90.0;
    let lon = rng.below(360_000_001) as f64 / 1e6 - 180.0;
    Location::new(lat, lon, rng.pick(LocationSource::ALL)).expect("in range")
}

/// Event ids as local writers list them: ascending by `(origin, seq)`, without duplicates.
fn sorted(mut ids: Vec<EventId>) -> Vec<EventId> {
    ids.sort();
    ids.dedup();
    ids
}

/// What `plan_edit` would produce for `change`, without any workflow or text check: what a
/// node whose rules differ (or a newer version) may write, and merge must accept.
fn direct(st: &IncidentState, change: Change) -> Payload {
    match change {
        Change::Description(d) => Payload::Edited {
            value: FieldValue::Description(d),
            pred: sorted(st.description.heads()),
        },
        Change::Category(c) => Payload::Edited {
            value: FieldValue::Category(c),
            pred: sorted(st.category.heads()),
        },
        Change::Location(l) => Payload::Edited {
            value: FieldValue::Location(l),
            pred: sorted(st.location.heads()),
        },
        Change::Severity(s) => Payload::Edited {
            value: FieldValue::Severity(s),
            pred: sorted(st.severity.heads()),
        },
        Change::Status(status) => Payload::StatusChanged {
            status,
            pred: sorted(st.status.heads()),
        },
        Change::Escalate { level, reason } => Payload::Escalated {
            level,
            reason,
            pred: sorted(st.level.heads()),
        },
        Change::Assign { assignee, due } => Payload::Assigned {
            assignee,
            due,
            pred: sorted(st.assignee.heads()),
        },
        Change::Comment(text) => Payload::Commented { text },
        Change::Evaluate { score, verdict } => Payload::Evaluated {
            score,
            verdict: verdict.unwrap_or(Verdict::from_score(score)),
            pred: sorted(st.evaluation.heads()),
        },
        Change::AddPhoto(meta) => Payload::PhotoAdded(meta),
        Change::RemovePhoto(hash) => Payload::PhotoRemoved {
            hash,
            removes: sorted(st.photo_adds(&hash)),
        },
    }
}

/// A random change of the kind `action` selects, sensible for the replica's own state.
fn random_change(action: u8, st: &IncidentState, now: u64, rng: &mut Rng) -> Change {
    match action {
        0 | 1 => Change::Description(format!("{} #{}", rng.pick(&DESCRIPTIONS), rng.below(1000))),
        2 => Change::Category(category(rng.pick(&CATEGORIES))),
        3 => Change::Location(location(rng)),
        4 => Change::Severity(rng.pick(Severity::ALL)),
        5 => Change::AddPhoto(photo(rng.below(4), rng)),
        6 => match st.visible_photos().as_slice() {
            [] => Change::AddPhoto(photo(rng.below(4), rng)),
            live => Change::RemovePhoto(live[rng.index(live.len())].meta.hash),
        },
        7 => {
            // Mostly moves the workflow allows; sometimes any status (another node's rules).
            let allowed = workflow::allowed(st.status());
            if rng.chance(7, 8) {
                Change::Status(rng.pick(allowed))
            } else {
                Change::Status(rng.pick(Status::ALL))
            }
        }
        8 => {
            let others: Vec<Level> = Level::ALL
                .iter()
                .copied()
                .filter(|l| *l != st.level())
                .collect();
            Change::Escalate {
                level: rng.pick(&others),
                reason: if rng.chance(1, 3) {
                    String::new()
                } else {
                    format!("needs more hands #{}", rng.below(100))
                },
            }
        }
        9 => Change::Assign {
            assignee: rng.pick(&ASSIGNEES).to_owned(),
            due: rng
                .chance(1, 2)
                .then(|| now as i64 + rng.below(7 * 86_400_000) as i64),
        },
        10 => Change::Comment(format!("note {}", rng.below(10_000))),
        _ => {
            let score = 1 + rng.below(5) as u8;
            Change::Evaluate {
                score,
                verdict: rng.chance(1, 2).then(|| rng.pick(Verdict::ALL)),
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Step {
    replica: usize,
    incident: usize,
    /// 0..=11 a local command (see [`random_change`]), 12.. a sync.
    action: u8,
    dt_ms: u64,
    seed: u64,
}

#[derive(Clone, Debug)]
struct Script {
    incidents: usize,
    skew_ms: [i64; 3],
    steps: Vec<Step>,
    seed: u64,
}

fn script(max_steps: usize) -> impl Strategy<Value = Script> {
    let step = (0..3usize, 0..3usize, 0..15u8, 0..4_000u64, any::<u64>()).prop_map(
        |(replica, incident, action, dt_ms, seed)| Step {
            replica,
            incident,
            action,
            dt_ms,
            seed,
        },
    );
    (
        1..=3usize,
        prop::array::uniform3(-300_000i64..=300_000),
        prop::collection::vec(step, 1..max_steps),
        any::<u64>(),
    )
        .prop_map(|(incidents, skew_ms, steps, seed)| Script {
            incidents,
            skew_ms,
            steps,
            seed,
        })
}

struct Replica {
    writer: Writer,
    skew_ms: i64,
    states: Vec<IncidentState>,
    /// Every event this replica holds, in arrival order (what it can pass on).
    known: Vec<Event>,
}

impl Replica {
    fn receive(&mut self, e: &Event) -> bool {
        let Some(st) = self.states.iter_mut().find(|s| s.id == e.incident) else {
            return false;
        };
        if !st.apply(e) {
            return false;
        }
        self.writer.observe(e.hlc);
        self.known.push(e.clone());
        true
    }
}

struct Sim {
    replicas: Vec<Replica>,
    incidents: Vec<IncidentId>,
    reported: Vec<bool>,
    /// Every event written, in the order written.
    log: Vec<Event>,
    t_ms: u64,
}

impl Sim {
    fn new(incidents: usize, skew_ms: [i64; 3]) -> Self {
        let incidents: Vec<IncidentId> = (0..incidents).map(incident_id).collect();
        let replicas = (0..3)
            .map(|r| Replica {
                writer: Writer::new(NODES[r], AUTHORS[r], 1, Default::default()),
                skew_ms: skew_ms[r],
                states: incidents.iter().map(|id| IncidentState::new(*id)).collect(),
                known: Vec::new(),
            })
            .collect();
        Self {
            replicas,
            reported: vec![false; incidents.len()],
            incidents,
            log: Vec::new(),
            t_ms: 0,
        }
    }

    /// Replica `r`'s wall clock: skewed, and jittering (it can step back).
    fn now(&self, r: usize, rng: &mut Rng) -> u64 {
        let jitter = rng.below(3_001) as i64 - 1_500;
        (BASE_MS as i64 + self.t_ms as i64 + self.replicas[r].skew_ms + jitter) as u64
    }

    fn write(&mut self, r: usize, i: usize, payload: Payload, now: u64) -> Event {
        let rep = &mut self.replicas[r];
        let g = rep.states[i].grid().cloned().unwrap_or_else(|| grid(i));
        let e = rep.writer.write(self.incidents[i], &g, payload, now);
        assert!(rep.states[i].apply(&e), "a fresh local event must apply");
        rep.known.push(e.clone());
        self.log.push(e.clone());
        e
    }

    /// Replica `to` receives some of what replica `from` holds (about incident `scope`, or all).
    fn sync(&mut self, from: usize, to: usize, scope: Option<usize>, rng: &mut Rng) {
        let scope = scope.map(|i| self.incidents[i]);
        let mut events: Vec<Event> = self.replicas[from]
            .known
            .iter()
            .filter(|e| scope.is_none_or(|id| e.incident == id))
            .cloned()
            .collect();
        if rng.chance(1, 4) {
            events.reverse();
        }
        let everything = rng.chance(1, 3);
        for e in &events {
            if everything || rng.chance(2, 3) {
                self.replicas[to].receive(e);
            }
        }
    }

    fn report(&mut self, r: usize, i: usize, now: u64, rng: &mut Rng) {
        let report = Report {
            category: category(rng.pick(&CATEGORIES)),
            description: rng.pick(&DESCRIPTIONS).to_owned(),
            location: rng.chance(2, 3).then(|| location(rng)),
            observed_at: rng
                .chance(1, 2)
                .then(|| now as i64 - rng.below(3_600_000) as i64),
            severity: rng.pick(Severity::ALL),
        };
        let photos = (0..rng.below(3))
            .map(|_| photo(rng.below(4), rng))
            .collect();
        for payload in command::plan_report(report, photos).expect("valid report") {
            let e = self.write(r, i, payload, now);
            assert_eq!(rules::check_rules(&e), Ok(()), "{e:?}");
        }
        self.reported[i] = true;
    }

    fn step(&mut self, s: &Step) {
        let mut rng = Rng::new(s.seed);
        self.t_ms += s.dt_ms;
        let r = s.replica;
        let i = s.incident % self.incidents.len();
        let other = (r + 1 + rng.index(2)) % 3;
        if s.action >= 12 {
            let scope = rng.chance(1, 2).then_some(i);
            self.sync(other, r, scope, &mut rng);
            return;
        }
        let now = self.now(r, &mut rng);
        let st = &self.replicas[r].states[i];
        if st.events.is_empty() {
            // A replica can only act on an incident it knows of.
            if self.reported[i] {
                self.sync(other, r, Some(i), &mut rng);
            } else {
                self.report(r, i, now, &mut rng);
            }
            return;
        }
        let change = random_change(s.action, st, now, &mut rng);
        let unchecked = direct(st, change.clone());
        let payload = if st.report.is_some() {
            match command::plan_edit(st, vec![change]) {
                Ok(mut planned) => {
                    assert_eq!(planned.len(), 1);
                    let p = planned.remove(0);
                    assert_eq!(
                        p, unchecked,
                        "plan_edit must name the state's heads, sorted"
                    );
                    let e = self.write(r, i, p, now);
                    // What a local command writes, every peer admits.
                    assert_eq!(rules::check_rules(&e), Ok(()), "{e:?}");
                    return;
                }
                // The workflow refuses it here; another node's rules may not.
                Err(_) => unchecked,
            }
        } else {
            // The report has not reached this replica yet: edit what it does know.
            unchecked
        };
        self.write(r, i, payload, now);
    }

    fn run(script: &Script) -> Self {
        let mut sim = Self::new(script.incidents, script.skew_ms);
        for s in &script.steps {
            sim.step(s);
        }
        sim
    }

    fn incident_events(&self, i: usize) -> Vec<Event> {
        self.log
            .iter()
            .filter(|e| e.incident == self.incidents[i])
            .cloned()
            .collect()
    }
}

fn json(state: &IncidentState) -> Value {
    serde_json::to_value(state.view()).expect("view serialises")
}

fn assert_same(got: &IncidentState, want: &IncidentState, what: &str) {
    assert_eq!(got, want, "{what}: state differs");
    assert_eq!(json(got), json(want), "{what}: incident JSON differs");
}

/// The registers, for the independent model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Description,
    Category,
    Location,
    Severity,
    Status,
    Level,
    Assignee,
    Evaluation,
}

const FIELDS: [Field; 8] = [
    Field::Description,
    Field::Category,
    Field::Location,
    Field::Severity,
    Field::Status,
    Field::Level,
    Field::Assignee,
    Field::Evaluation,
];

impl Field {
    /// The name the incident JSON uses in `conflicts`.
    fn conflict_name(self) -> &'static str {
        match self {
            Field::Description => "description",
            Field::Category => "category",
            Field::Location => "location",
            Field::Severity => "severity",
            Field::Status => "status",
            Field::Level => "level",
            Field::Assignee => "assignee",
            Field::Evaluation => "score",
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serialises")
}

/// If `e` writes `field`: the value (as the register stores it, in JSON) and the `pred`.
fn writes(e: &Event, field: Field) -> Option<(Value, Vec<EventId>)> {
    let none = Vec::new();
    match (&e.payload, field) {
        (Payload::Reported(r), Field::Description) => Some((to_json(&r.description), none)),
        (Payload::Reported(r), Field::Category) => Some((to_json(&r.category), none)),
        (Payload::Reported(r), Field::Location) => r.location.map(|l| (to_json(&l), none)),
        (Payload::Reported(r), Field::Severity) => Some((to_json(&r.severity), none)),
        (Payload::Reported(_), Field::Status) => Some((to_json(&Status::Reported), none)),
        (Payload::Edited { value, pred }, f) => {
            let v = match (value, f) {
                (FieldValue::Description(v), Field::Description) => to_json(v),
                (FieldValue::Category(v), Field::Category) => to_json(v),
                (FieldValue::Location(v), Field::Location) => to_json(v),
                (FieldValue::Severity(v), Field::Severity) => to_json(v),
                _ => return None,
            };
            Some((v, pred.clone()))
        }
        (Payload::StatusChanged { status, pred }, Field::Status) => {
            Some((to_json(status), pred.clone()))
        }
        (
            Payload::Escalated {
                level,
                reason,
                pred,
            },
            Field::Level,
        ) => Some((
            to_json(&Escalation {
                level: *level,
                reason: reason.clone(),
            }),
            pred.clone(),
        )),
        (
            Payload::Assigned {
                assignee,
                due,
                pred,
            },
            Field::Assignee,
        ) => Some((
            to_json(&Assignment {
                assignee: assignee.clone(),
                due: *due,
            }),
            pred.clone(),
        )),
        (
            Payload::Evaluated {
                score,
                verdict,
                pred,
            },
            Field::Evaluation,
        ) => Some((
            to_json(&Evaluation {
                score: *score,
                verdict: *verdict,
            }),
            pred.clone(),
        )),
        _ => None,
    }
}

/// The model's register: heads (writes no write of the field names), in stamp order.
fn model_heads(events: &[Event], field: Field) -> Vec<(Stamp, String, Value)> {
    let mut superseded = BTreeSet::new();
    let mut all = BTreeMap::new();
    for e in events {
        if let Some((value, pred)) = writes(e, field) {
            // A write's entry naming itself means nothing.
            superseded.extend(pred.into_iter().filter(|p| *p != e.id()));
            all.insert(e.stamp(), (e.author.clone(), value));
        }
    }
    all.into_iter()
        .filter(|(s, _)| !superseded.contains(&s.id()))
        .map(|(s, (a, v))| (s, a, v))
        .collect()
}

fn check_register<T: Serialize>(reg: &Register<T>, model: &[(Stamp, String, Value)]) {
    let ids: Vec<EventId> = model.iter().map(|(s, _, _)| s.id()).collect();
    assert_eq!(reg.heads(), ids, "register heads");
    assert_eq!(
        reg.winner()
            .map(|w| (w.stamp, w.author.clone(), to_json(&w.value))),
        model.last().cloned(),
        "register winner"
    );
}

/// Checks `state` (the fold of exactly `events`, each once) against a model computed straight
/// from the event set, without the merge code.
/// `honest`: the events come from well-behaved writers (one report, preds name only earlier
/// writes of this incident).
fn check_model(state: &IncidentState, events: &[Event], honest: bool) {
    let ids: BTreeSet<EventId> = events.iter().map(Event::id).collect();
    assert_eq!(ids.len(), events.len(), "the log has no duplicate ids");
    assert_eq!(state.events, ids);
    let view = state.view();
    assert_eq!(view.event_count, events.len());
    let stamps: Vec<Stamp> = events.iter().map(Event::stamp).collect();
    assert_eq!(
        state.first.as_ref().map(|(s, _)| *s),
        stamps.iter().min().copied()
    );
    assert_eq!(state.last, stamps.iter().max().copied());
    // Two reports can only come from a broken origin: the lowest stamp counts.
    let report = events
        .iter()
        .filter(|e| matches!(e.payload, Payload::Reported(_)))
        .min_by_key(|e| e.stamp());
    assert_eq!(
        state.report.as_ref().map(|r| r.stamp),
        report.map(Event::stamp)
    );
    assert_eq!(view.reporter.as_deref(), report.map(|e| e.author.as_str()));
    let grid = report.or(events.iter().min_by_key(|e| e.stamp()));
    assert_eq!(view.grid.as_deref(), grid.map(|e| e.grid.as_str()));

    // Causality as honest writers stamp it: a write is after everything it names.
    let by_id: BTreeMap<EventId, &Event> = events.iter().map(|e| (e.id(), e)).collect();
    for e in events.iter().filter(|_| honest) {
        let named: &[EventId] = match &e.payload {
            Payload::Edited { pred, .. }
            | Payload::StatusChanged { pred, .. }
            | Payload::Escalated { pred, .. }
            | Payload::Assigned { pred, .. }
            | Payload::Evaluated { pred, .. } => pred,
            Payload::PhotoRemoved { removes, .. } => removes,
            _ => &[],
        };
        for id in named {
            let p = by_id.get(id).expect("pred names an event of this incident");
            assert!(p.stamp() < e.stamp(), "a write is stamped after its preds");
        }
    }

    // (e) registers and conflicts.
    let mut want_conflicts = 0;
    for field in FIELDS {
        let model = model_heads(events, field);
        match field {
            Field::Description => check_register(&state.description, &model),
            Field::Category => check_register(&state.category, &model),
            Field::Location => check_register(&state.location, &model),
            Field::Severity => check_register(&state.severity, &model),
            Field::Status => check_register(&state.status, &model),
            Field::Level => check_register(&state.level, &model),
            Field::Assignee => check_register(&state.assignee, &model),
            Field::Evaluation => check_register(&state.evaluation, &model),
        }
        let conflicts: Vec<_> = view
            .conflicts
            .iter()
            .filter(|c| c.field == field.conflict_name())
            .collect();
        if honest {
            // A node always holds its own earlier writes, so its later write of a field names
            // them (or what superseded them): a node never conflicts with itself.
            let origins: BTreeSet<NodeId> = model.iter().map(|(s, _, _)| s.origin).collect();
            assert_eq!(
                origins.len(),
                model.len(),
                "{field:?}: a node conflicts with itself"
            );
        }
        // Every head but the winner that wrote another value (agreement is no conflict).
        let losers: Vec<_> = match model.split_last() {
            Some(((_, _, won), rest)) => rest.iter().filter(|(_, _, v)| v != won).collect(),
            None => Vec::new(),
        };
        assert_eq!(conflicts.len(), losers.len(), "{field:?} conflicts");
        want_conflicts += losers.len();
        for (c, (stamp, author, _)) in conflicts.iter().zip(losers) {
            assert_eq!(c.lost_by, *author);
            assert_eq!(c.lost_origin, stamp.origin.to_hex());
        }
    }
    assert_eq!(view.conflicts.len(), want_conflicts);

    // (d) add-wins photos: per hash, the lowest-stamped add that no removal names.
    let removed: BTreeSet<EventId> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::PhotoRemoved { removes, .. } => Some(removes.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut live: BTreeMap<BlobHash, Stamp> = BTreeMap::new();
    for e in events {
        if let Payload::PhotoAdded(meta) = &e.payload {
            if !removed.contains(&e.id()) {
                let s = live.entry(meta.hash).or_insert(e.stamp());
                *s = (*s).min(e.stamp());
            }
        }
    }
    let mut want: Vec<(Stamp, BlobHash)> = live.into_iter().map(|(h, s)| (s, h)).collect();
    want.sort();
    let got: Vec<(Stamp, BlobHash)> = state
        .visible_photos()
        .iter()
        .map(|p| (p.stamp, p.meta.hash))
        .collect();
    assert_eq!(got, want, "visible photos");
    assert_eq!(view.photos.len(), want.len());

    // Comments: every one, in stamp order.
    let mut comments: Vec<(Stamp, &str)> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Commented { text } => Some((e.stamp(), text.as_str())),
            _ => None,
        })
        .collect();
    comments.sort();
    let got: Vec<&str> = view.comments.iter().map(|c| c.text.as_str()).collect();
    let want: Vec<&str> = comments.iter().map(|(_, t)| *t).collect();
    assert_eq!(got, want, "comments");
}

/// `events` in a random order, with some of them repeated.
fn shuffled_with_duplicates(events: &[Event], rng: &mut Rng) -> Vec<Event> {
    let mut out = events.to_vec();
    for e in events {
        if rng.chance(1, 4) {
            out.push(e.clone());
        }
    }
    rng.shuffle(&mut out);
    out
}

/// Every law, for every incident of a simulated history.
fn check_laws(sim: &mut Sim, seed: u64) {
    let mut rng = Rng::new(seed);
    for i in 0..sim.incidents.len() {
        let events = sim.incident_events(i);
        check_set_laws(sim.incidents[i], &events, &sim.log, true, &mut rng);
    }
    check_convergence(sim, &mut rng);
}

/// Laws (a)-(e) for the events of one incident; `log` holds events of other incidents too.
fn check_set_laws(id: IncidentId, events: &[Event], log: &[Event], honest: bool, rng: &mut Rng) {
    let full = IncidentState::replay(id, events);
    check_model(&full, events, honest);

    // (a) order and duplicates do not matter.
    for round in 0..2 {
        let order = shuffled_with_duplicates(events, rng);
        let s = IncidentState::replay(id, &order);
        assert_same(&s, &full, &format!("permutation {round}"));
    }

    // (b) a prefix, then the rest; also through the state codec.
    let order = shuffled_with_duplicates(events, rng);
    let k = rng.index(order.len() + 1);
    let mut incremental = IncidentState::replay(id, &order[..k]);
    let bytes = codec::encode_state(&incremental).expect("state encodes");
    let mut decoded = codec::decode_state(&bytes).expect("state decodes");
    assert_same(&decoded, &incremental, "decoded prefix state");
    // (c) on the prefix: a second application is refused and changes nothing.
    if let Some(e) = order[..k].first() {
        let before = incremental.clone();
        assert!(!incremental.apply(e));
        assert_same(&incremental, &before, "re-applied prefix event");
    }
    for e in &order[k..] {
        incremental.apply(e);
        decoded.apply(e);
    }
    assert_same(&incremental, &full, "prefix then rest");
    assert_same(&decoded, &full, "decoded prefix then rest");

    // (c) every event applied again is refused and changes nothing.
    let mut again = full.clone();
    for e in events {
        assert!(!again.apply(e), "second application must return false");
    }
    assert_same(&again, &full, "re-applied events");
    // An event about another incident is refused too.
    if let Some(e) = log.iter().find(|e| e.incident != id) {
        assert!(!again.apply(e));
        assert_same(&again, &full, "other incident's event");
    }
}

/// (a) every replica converges once it has been sent everything, in its own order.
fn check_convergence(sim: &mut Sim, rng: &mut Rng) {
    let all = sim.log.clone();
    for (r, rep) in sim.replicas.iter_mut().enumerate() {
        let mut order = shuffled_with_duplicates(&all, rng);
        if rng.chance(1, 2) {
            order.sort_by_key(|e| std::cmp::Reverse(e.stamp()));
        }
        for e in &order {
            rep.receive(e);
        }
        for (i, id) in sim.incidents.iter().enumerate() {
            let events: Vec<Event> = all.iter().filter(|e| e.incident == *id).cloned().collect();
            let full = IncidentState::replay(*id, &events);
            assert_same(
                &rep.states[i],
                &full,
                &format!("replica {r} after full sync"),
            );
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn random_histories_obey_the_merge_laws(script in script(80)) {
        let mut sim = Sim::run(&script);
        check_laws(&mut sim, script.seed);
    }
}

/// `e` with its `pred` or `removes` entries shuffled and some of them repeated (what a
/// receiver must accept from another implementation).
fn scramble_refs(e: &Event, rng: &mut Rng) -> Event {
    let mut e = e.clone();
    let ids = match &mut e.payload {
        Payload::Edited { pred, .. }
        | Payload::StatusChanged { pred, .. }
        | Payload::Escalated { pred, .. }
        | Payload::Assigned { pred, .. }
        | Payload::Evaluated { pred, .. } => pred,
        Payload::PhotoRemoved { removes, .. } => removes,
        Payload::Reported(_)
        | Payload::PhotoAdded(_)
        | Payload::Commented { .. }
        | Payload::StaffSet(_)
        | Payload::StaffRemoved { .. } => return e,
    };
    let repeated: Vec<EventId> = ids.iter().filter(|_| rng.chance(1, 2)).copied().collect();
    ids.extend(repeated);
    rng.shuffle(ids);
    if rng.chance(1, 2) {
        ids.reverse();
    }
    e
}

proptest! {
    #![proptest_config(config(64))]

    /// `pred` and `removes` are sets: permuting or repeating their entries changes no state
    /// (and so no incident JSON), whatever the order the events are folded in.
    #[test]
    fn pred_and_removes_are_sets(script in script(80)) {
        let sim = Sim::run(&script);
        let mut rng = Rng::new(script.seed ^ 0x7072_6564);
        for (i, id) in sim.incidents.iter().enumerate() {
            let events = sim.incident_events(i);
            let full = IncidentState::replay(*id, &events);
            let scrambled: Vec<Event> = events.iter().map(|e| scramble_refs(e, &mut rng)).collect();
            assert_same(&IncidentState::replay(*id, &scrambled), &full, "scrambled refs");
            let order = shuffled_with_duplicates(&scrambled, &mut rng);
            assert_same(&IncidentState::replay(*id, &order), &full, "scrambled refs, shuffled");
        }
    }
}

/// Fixed seeds, checked to cover every payload variant and every field kind, so a change to
/// the simulator cannot silently stop exercising one.
#[test]
fn fixed_histories_cover_every_payload_and_obey_the_laws() {
    let mut kinds = BTreeSet::new();
    let mut concurrent = 0;
    let mut removal_missed_add = 0;
    for seed in 0..12u64 {
        let mut rng = Rng::new(seed);
        let steps = (0..80)
            .map(|_| Step {
                replica: rng.index(3),
                incident: rng.index(3),
                action: rng.below(15) as u8,
                dt_ms: rng.below(4_000),
                seed: rng.next(),
            })
            .collect();
        let script = Script {
            incidents: 1 + (seed % 3) as usize,
            skew_ms: [0, 120_000, -90_000],
            steps,
            seed,
        };
        let mut sim = Sim::run(&script);
        for e in &sim.log {
            kinds.insert(match &e.payload {
                Payload::Reported(_) => "reported",
                Payload::Edited { value, .. } => match value {
                    FieldValue::Description(_) => "edited-description",
                    FieldValue::Category(_) => "edited-category",
                    FieldValue::Location(_) => "edited-location",
                    FieldValue::Severity(_) => "edited-severity",
                },
                Payload::PhotoAdded(_) => "photo-added",
                Payload::PhotoRemoved { .. } => "photo-removed",
                Payload::StatusChanged { .. } => "status-changed",
                Payload::Escalated { .. } => "escalated",
                Payload::Assigned { .. } => "assigned",
                Payload::Commented { .. } => "commented",
                Payload::Evaluated { .. } => "evaluated",
                Payload::StaffSet(_) | Payload::StaffRemoved { .. } => "roster",
            });
        }
        for i in 0..sim.incidents.len() {
            let events = sim.incident_events(i);
            let full = IncidentState::replay(sim.incidents[i], &events);
            concurrent += full.view().conflicts.len();
            let hashes_removed: BTreeSet<BlobHash> = events
                .iter()
                .filter_map(|e| match &e.payload {
                    Payload::PhotoRemoved { hash, .. } => Some(*hash),
                    _ => None,
                })
                .collect();
            removal_missed_add += full
                .visible_photos()
                .iter()
                .filter(|p| hashes_removed.contains(&p.meta.hash))
                .count();
        }
        check_laws(&mut sim, seed);
    }
    let want = [
        "reported",
        "edited-description",
        "edited-category",
        "edited-location",
        "edited-severity",
        "photo-added",
        "photo-removed",
        "status-changed",
        "escalated",
        "assigned",
        "commented",
        "evaluated",
    ];
    assert_eq!(kinds, want.into_iter().collect::<BTreeSet<_>>());
    assert!(concurrent > 0, "the histories contain concurrent writes");
    assert!(
        removal_missed_add > 0,
        "the histories contain removals concurrent with adds"
    );
}

/// Two replicas, A and B, that both hold the report and `base_edits` later description edits
/// (all written by A); returns their writers, the shared state and the events.
fn shared_base(base_edits: usize) -> (Writer, Writer, IncidentState, Vec<Event>) {
    let id = incident_id(0);
    let g = grid(0);
    let mut a = Writer::new(NODES[0], AUTHORS[0], 1, Default::default());
    let mut b = Writer::new(NODES[1], AUTHORS[1], 1, Default::default());
    let mut state = IncidentState::new(id);
    let mut log = Vec::new();
    let report = Report {
        category: category("garbage"),
        description: DESCRIPTIONS[0].to_owned(),
        location: None,
        observed_at: None,
        severity: Severity::Normal,
    };
    let mut payloads = command::plan_report(report, vec![]).expect("valid report");
    for k in 0..=base_edits {
        for p in payloads {
            let e = a.write(id, &g, p, BASE_MS + k as u64 * 10_000);
            state.apply(&e);
            log.push(e);
        }
        payloads = command::plan_edit(&state, vec![Change::Description(format!("base {k}"))])
            .expect("valid edit");
    }
    for e in &log {
        b.observe(e.hlc);
    }
    (a, b, state, log)
}

proptest! {
    #![proptest_config(config(96))]

    /// Agreement is not a conflict: two replicas that, without syncing, write the same value
    /// of a field (a street and the district both accepting a case during a network cut)
    /// merge to that value with no conflict entry, in any order; both writes stay heads, so
    /// a third write names both. Writing different values from the same base does conflict.
    #[test]
    fn concurrent_writes_of_the_same_value_are_no_conflict(
        base_edits in 0..3usize,
        field in 0..3usize,
        now_a in 0..600_000u64,
        now_b in 0..600_000u64,
        differ in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (mut a, mut b, base, log) = shared_base(base_edits);
        let id = base.id;
        let g = grid(0);
        let t0 = BASE_MS + 100_000;
        let (change_a, change_b, name) = match field {
            0 => (
                Change::Status(Status::Accepted),
                if differ { Change::Status(Status::Rejected) } else { Change::Status(Status::Accepted) },
                "status",
            ),
            1 => (
                Change::Severity(Severity::Urgent),
                if differ { Change::Severity(Severity::Low) } else { Change::Severity(Severity::Urgent) },
                "severity",
            ),
            _ => (
                Change::Description("Six bags by the east gate".into()),
                Change::Description(if differ { "Two bags".into() } else { "Six bags by the east gate".into() }),
                "description",
            ),
        };
        let pa = command::plan_edit(&base, vec![change_a]).expect("valid edit");
        let pb = command::plan_edit(&base, vec![change_b]).expect("valid edit");
        let ea = a.write(id, &g, pa[0].clone(), t0 + now_a);
        let eb = b.write(id, &g, pb[0].clone(), t0 + now_b);
        let mut events = log.clone();
        events.push(ea.clone());
        events.push(eb.clone());
        let merged = IncidentState::replay(id, &events);
        let mut rng = Rng::new(seed);
        let order = shuffled_with_duplicates(&events, &mut rng);
        assert_same(&IncidentState::replay(id, &order), &merged, "merge order");
        let view = merged.view();
        let of_field = view.conflicts.iter().filter(|c| c.field == name).count();
        prop_assert_eq!(of_field, usize::from(differ), "{:?}", view.conflicts);
        prop_assert_eq!(view.conflicts.len(), usize::from(differ));
        // Both stay heads: the next write of the field names both, whoever makes it.
        let next = command::plan_edit(&merged, vec![Change::Comment("seen".into())]);
        prop_assert!(next.is_ok());
        let heads = match name {
            "status" => merged.status.heads(),
            "severity" => merged.severity.heads(),
            _ => merged.description.heads(),
        };
        prop_assert_eq!(heads.len(), 2);
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// (e) Two replicas edit the description from the same base without syncing: after the
    /// merge there is exactly one conflict, kept = the higher (HLC, origin), lost_by = the other
    /// author; a third write that saw both clears it, whatever order the events arrive in.
    #[test]
    fn concurrent_description_edits_conflict_until_a_write_sees_both(
        base_edits in 0..3usize,
        now_a in 0..600_000u64,
        now_b in 0..600_000u64,
        same_ms in any::<bool>(),
        third_by in 0..3usize,
        now_c in 0..600_000u64,
        seed in any::<u64>(),
    ) {
        let (mut a, mut b, base, log) = shared_base(base_edits);
        let id = base.id;
        let g = grid(0);
        let t0 = BASE_MS + 100_000;
        let now_b = if same_ms { now_a } else { now_b };
        let pa = command::plan_edit(&base, vec![Change::Description("seen from A".into())])
            .expect("valid edit");
        let pb = command::plan_edit(&base, vec![Change::Description("seen from B".into())])
            .expect("valid edit");
        let ea = a.write(id, &g, pa[0].clone(), t0 + now_a);
        let eb = b.write(id, &g, pb[0].clone(), t0 + now_b);
        let (kept, lost) = if (ea.hlc, ea.origin) > (eb.hlc, eb.origin) {
            (&ea, &eb)
        } else {
            (&eb, &ea)
        };

        let mut rng = Rng::new(seed);
        let mut events = log.clone();
        events.push(ea.clone());
        events.push(eb.clone());
        let merged = IncidentState::replay(id, &events);
        let order = shuffled_with_duplicates(&events, &mut rng);
        assert_same(&IncidentState::replay(id, &order), &merged, "merge order");
        let view = merged.view();
        let desc: Vec<_> = view.conflicts.iter().filter(|c| c.field == "description").collect();
        prop_assert_eq!(desc.len(), 1);
        prop_assert_eq!(view.conflicts.len(), 1);
        let text = |e: &Event| match &e.payload {
            Payload::Edited { value: FieldValue::Description(d), .. } => d.clone(),
            other => panic!("not a description edit: {other:?}"),
        };
        prop_assert_eq!(&desc[0].kept, &Value::String(text(kept)));
        prop_assert_eq!(&desc[0].lost, &Value::String(text(lost)));
        prop_assert_eq!(&desc[0].lost_by, &lost.author);
        prop_assert_eq!(&desc[0].lost_origin, &lost.origin.to_hex());
        prop_assert_eq!(view.description, Some(text(kept)));

        // A third replica (or one of the two) sees both, then writes.
        let mut c = match third_by {
            0 => a,
            1 => b,
            _ => Writer::new(NODES[2], AUTHORS[2], 1, Default::default()),
        };
        let mut seen = IncidentState::new(id);
        for e in &order {
            if seen.apply(e) {
                c.observe(e.hlc);
            }
        }
        let pc = command::plan_edit(&seen, vec![Change::Description("settled".into())])
            .expect("valid edit");
        let Payload::Edited { pred, .. } = &pc[0] else {
            panic!("not an edit: {:?}", pc[0]);
        };
        let pred: BTreeSet<EventId> = pred.iter().copied().collect();
        prop_assert_eq!(pred, [ea.id(), eb.id()].into_iter().collect::<BTreeSet<_>>());
        let ec = c.write(id, &g, pc[0].clone(), t0 + now_c);
        prop_assert!(ec.stamp() > ea.stamp() && ec.stamp() > eb.stamp());
        events.push(ec.clone());
        let settled = IncidentState::replay(id, &events);
        // The settling write first, the writes it settles last: same result.
        let mut reversed = events.clone();
        reversed.reverse();
        assert_same(&IncidentState::replay(id, &reversed), &settled, "settle order");
        let view = settled.view();
        prop_assert!(view.conflicts.is_empty(), "conflicts left: {:?}", view.conflicts);
        prop_assert_eq!(view.description.as_deref(), Some("settled"));
        prop_assert_eq!(settled.description.heads(), vec![ec.id()]);
    }

    /// (d) A photo add concurrent with a removal that did not name it stays visible; once a
    /// removal names every add, the photo goes.
    #[test]
    fn photo_adds_concurrent_with_a_removal_win(
        same_hash in any::<bool>(),
        now_add in 0..600_000u64,
        now_rm in 0..600_000u64,
        seed in any::<u64>(),
    ) {
        let id = incident_id(0);
        let g = grid(0);
        let mut rng = Rng::new(seed);
        let mut a = Writer::new(NODES[0], AUTHORS[0], 1, Default::default());
        let mut b = Writer::new(NODES[1], AUTHORS[1], 1, Default::default());
        let first = photo(0, &mut rng);
        let report = Report {
            category: category("garbage"),
            description: DESCRIPTIONS[0].to_owned(),
            location: None,
            observed_at: None,
            severity: Severity::Normal,
        };
        let mut log = Vec::new();
        let mut sa = IncidentState::new(id);
        for p in command::plan_report(report, vec![first.clone()]).expect("valid report") {
            let e = a.write(id, &g, p, BASE_MS);
            sa.apply(&e);
            log.push(e);
        }
        // B receives the report and its photo.
        let mut sb = IncidentState::new(id);
        for e in &log {
            sb.apply(e);
            b.observe(e.hlc);
        }
        // Concurrently: A adds a photo (the same bytes again, or another), B removes the first.
        let second = photo(if same_hash { 0 } else { 1 }, &mut rng);
        let add = command::plan_edit(&sa, vec![Change::AddPhoto(second.clone())]).expect("add");
        let add = a.write(id, &g, add[0].clone(), BASE_MS + 1_000 + now_add);
        let rm = command::plan_edit(&sb, vec![Change::RemovePhoto(first.hash)]).expect("remove");
        let Payload::PhotoRemoved { removes, .. } = &rm[0] else {
            panic!("not a removal: {:?}", rm[0]);
        };
        prop_assert_eq!(removes, &vec![log[1].id()]);
        let rm = b.write(id, &g, rm[0].clone(), BASE_MS + 1_000 + now_rm);

        let mut events = log.clone();
        events.push(add.clone());
        events.push(rm.clone());
        let merged = IncidentState::replay(id, &events);
        let order = shuffled_with_duplicates(&events, &mut rng);
        assert_same(&IncidentState::replay(id, &order), &merged, "merge order");
        let visible: Vec<(EventId, BlobHash)> = merged
            .visible_photos()
            .iter()
            .map(|p| (p.stamp.id(), p.meta.hash))
            .collect();
        prop_assert_eq!(visible, vec![(add.id(), second.hash)]);
        prop_assert_eq!(merged.view().photos.len(), 1);

        // A removal made after seeing everything names the concurrent add too.
        let mut sc = merged.clone();
        let rm2 = command::plan_edit(&sc, vec![Change::RemovePhoto(second.hash)]).expect("remove");
        let Payload::PhotoRemoved { removes, .. } = &rm2[0] else {
            panic!("not a removal: {:?}", rm2[0]);
        };
        // Only the adds still visible: the first add is already gone.
        prop_assert_eq!(removes, &vec![add.id()]);
        let rm2 = a.write(id, &g, rm2[0].clone(), BASE_MS + 700_000);
        sc.apply(&rm2);
        events.push(rm2);
        let all = IncidentState::replay(id, &events);
        assert_same(&sc, &all, "after second removal");
        prop_assert!(all.visible_photos().is_empty());
    }
}

/// A hostile or broken writer: any payload, preds naming any id (unknown, later, its own, a
/// write of another field), two reports, clashing timestamps, any grid.
fn hostile_payload(action: u8, pred: Vec<EventId>, rng: &mut Rng) -> Payload {
    match action {
        0 => Payload::Reported(Report {
            category: category(rng.pick(&CATEGORIES)),
            description: rng.pick(&DESCRIPTIONS).to_owned(),
            location: rng.chance(1, 2).then(|| location(rng)),
            observed_at: rng.chance(1, 2).then(|| rng.below(1 << 40) as i64),
            severity: rng.pick(Severity::ALL),
        }),
        1 => Payload::Edited {
            value: FieldValue::Description(rng.pick(&DESCRIPTIONS).to_owned()),
            pred,
        },
        2 => Payload::Edited {
            // Merge accepts codes outside this node's catalogue.
            value: FieldValue::Category(
                Category::try_from(format!("newer-code-{}", rng.below(3))).expect("well formed"),
            ),
            pred,
        },
        3 => Payload::Edited {
            value: FieldValue::Location(location(rng)),
            pred,
        },
        4 => Payload::Edited {
            value: FieldValue::Severity(rng.pick(Severity::ALL)),
            pred,
        },
        5 => Payload::PhotoAdded(photo(rng.below(4), rng)),
        6 => Payload::PhotoRemoved {
            hash: BlobHash::of(&[rng.below(4) as u8]),
            removes: pred,
        },
        7 => Payload::StatusChanged {
            status: rng.pick(Status::ALL),
            pred,
        },
        8 => Payload::Escalated {
            level: rng.pick(Level::ALL),
            reason: format!("r{}", rng.below(3)),
            pred,
        },
        9 => Payload::Assigned {
            assignee: rng.pick(&ASSIGNEES).to_owned(),
            due: rng.chance(1, 2).then(|| rng.next() as i64),
            pred,
        },
        10 => Payload::Commented {
            text: format!("c{}", rng.below(3)),
        },
        _ => Payload::Evaluated {
            score: rng.next() as u8,
            verdict: rng.pick(Verdict::ALL),
            pred,
        },
    }
}

fn any_event_id() -> impl Strategy<Value = EventId> {
    (0..3usize, 1..8u64).prop_map(|(n, seq)| EventId {
        origin: NODES[n],
        seq,
    })
}

/// A set of events (distinct ids) of incident 0 from writers that break every rule but the
/// codec's: merge must still depend on the set only.
fn hostile_events() -> impl Strategy<Value = Vec<Event>> {
    let event = (
        any_event_id(),
        (0..4u64, 0..3u32),
        0..3usize,
        0..12u8,
        prop::collection::vec(any_event_id(), 0..4),
        any::<u64>(),
    )
        .prop_map(|(id, (wall, logical), g, action, pred, seed)| {
            let mut rng = Rng::new(seed);
            Event {
                origin: id.origin,
                seq: id.seq,
                hlc: Hlc::new(BASE_MS + wall, logical),
                incident: incident_id(0),
                grid: grid(g),
                author: AUTHORS[rng.index(3)].to_owned(),
                payload: hostile_payload(action, pred, &mut rng),
                signature: None,
            }
        });
    prop::collection::vec(event, 1..40).prop_map(|events| {
        let mut by_id = BTreeMap::new();
        for e in events {
            by_id.entry(e.id()).or_insert(e);
        }
        by_id.into_values().collect()
    })
}

proptest! {
    #![proptest_config(config(128))]

    /// Laws (a)-(c) and the model hold for any set of events, not only honest histories.
    #[test]
    fn any_event_set_folds_independently_of_order(events in hostile_events(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let other = Event { incident: incident_id(1), ..events[0].clone() };
        let mut log = events.clone();
        log.push(other);
        check_set_laws(incident_id(0), &events, &log, false, &mut rng);
    }
}

/// A write whose `pred` names a write that arrives later: the later arrival is superseded on
/// arrival, exactly as if it had come first.
#[test]
fn a_pred_naming_a_write_not_yet_seen_supersedes_it_on_arrival() {
    let id = incident_id(0);
    let g = grid(0);
    let mut a = Writer::new(NODES[0], AUTHORS[0], 1, Default::default());
    let mut b = Writer::new(NODES[1], AUTHORS[1], 1, Default::default());
    let report = Report {
        category: category("sewage"),
        description: "drain".into(),
        location: None,
        observed_at: None,
        severity: Severity::High,
    };
    let mut sa = IncidentState::new(id);
    let r = a.write(
        id,
        &g,
        command::plan_report(report, vec![]).expect("report")[0].clone(),
        BASE_MS,
    );
    sa.apply(&r);
    let e1 = a.write(
        id,
        &g,
        command::plan_edit(&sa, vec![Change::Severity(Severity::Urgent)]).expect("edit")[0].clone(),
        BASE_MS + 10,
    );
    sa.apply(&e1);
    b.observe(e1.hlc);
    let e2 = b.write(
        id,
        &g,
        command::plan_edit(&sa, vec![Change::Severity(Severity::Low)]).expect("edit")[0].clone(),
        BASE_MS + 5,
    );
    let forward = IncidentState::replay(id, [&r, &e1, &e2]);
    for order in [
        [&e2, &e1, &r],
        [&e2, &r, &e1],
        [&r, &e2, &e1],
        [&e1, &e2, &r],
    ] {
        let s = IncidentState::replay(id, order);
        assert_same(&s, &forward, "arrival order");
        assert_eq!(s.severity.heads(), vec![e2.id()]);
        assert_eq!(s.severity.value(), Some(&Severity::Low));
        assert!(s.view().conflicts.is_empty());
    }
}

/// One command may not change the same field twice: every write of a command names the same
/// heads, so two writes of one field would stand as concurrent and show the node in conflict
/// with itself. `plan_edit` refuses it; repeated comments and photos are fine.
#[test]
fn one_command_cannot_change_a_field_twice() {
    let id = incident_id(0);
    let g = grid(0);
    let mut w = Writer::new(NODES[0], AUTHORS[0], 1, Default::default());
    let report = Report {
        category: category("garbage"),
        description: DESCRIPTIONS[0].to_owned(),
        location: None,
        observed_at: None,
        severity: Severity::Normal,
    };
    let mut state = IncidentState::new(id);
    for p in command::plan_report(report, vec![]).expect("valid report") {
        state.apply(&w.write(id, &g, p, BASE_MS));
    }
    let changes = vec![
        Change::Status(Status::Accepted),
        Change::Status(Status::Dispatched),
        Change::Description("first wording".into()),
        Change::Description("second wording".into()),
    ];
    assert_eq!(
        command::plan_edit(&state, changes),
        Err(command::CommandError::FieldTwice("status"))
    );
    // Comments and photos may repeat; one change per field is fine.
    let changes = vec![
        Change::Status(Status::Accepted),
        Change::Description("first wording".into()),
        Change::Comment("one".into()),
        Change::Comment("two".into()),
    ];
    for p in command::plan_edit(&state, changes).expect("allowed by the workflow") {
        state.apply(&w.write(id, &g, p, BASE_MS + 1_000));
    }
    let view = state.view();
    assert_eq!(view.status, "accepted");
    assert_eq!(view.comments.len(), 2);
    assert!(view.conflicts.is_empty(), "conflicts: {:?}", view.conflicts);
}
