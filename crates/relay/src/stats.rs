//! `gridsync-relay stats`: evaluation statistics over the incidents a relay holds (how many,
//! in which status, at which level the closed cases were closed, how long the steps of the
//! closed loop took, evaluations, and the work of each staff member).
//!
//! [`compute`] is a pure function of the incidents' states and events, the current time and
//! the choices of the command line: no I/O, no clock. The definitions (also in `docs/STATS.md`):
//!
//! - **Window.** An incident is counted when its report time (the wall time `hlc.wall_ms` of
//!   its `Reported` event) lies in `[since, until)`: `since` included, `until` excluded. An
//!   incident whose report has not arrived has no report time: it is counted only when
//!   neither bound is given (then in every figure that needs no report time).
//! - **`by_status`**: current status ([`IncidentState::status`]), every status present.
//! - **`closed_at_level`**: among the incidents whose current status is `closed`, how many
//!   are at each level ([`IncidentState::level`]); `share` is that count over all closed
//!   ones, rounded to 4 decimals, or `null` when none is closed.
//! - **`overdue`**: [`IncidentState::is_overdue`] at `now_ms`.
//! - **`by_category`**: current category; an incident with none known is left out.
//! - **`times`**: for `accept`, `dispatch`, `resolve` and `close`, the time from the report
//!   to the first `StatusChanged` event (lowest `(HLC, origin, seq)` stamp) to `accepted`,
//!   `dispatched`, `resolved` or `closed` among the incident's events, in milliseconds of
//!   wall time (`hlc.wall_ms` of that event minus the report's; 0 if it is earlier). A case
//!   sent back and accepted again counts its first acceptance; a closed case reopened keeps
//!   its first closing. `median_ms` and `p90_ms` are nearest-rank percentiles (see
//!   [`nearest_rank`]); `null` when `count` is 0.
//! - **`evaluation`**: incidents with an evaluation (its current value), their mean score
//!   (4 decimals, `null` if none) and the count of each verdict.
//! - **`staff`**: an assignee `staff:NAME` is staff member `NAME`; any other assignee is a
//!   department, not staff. Per staff member (every report author and every staff assignee
//!   of the counted incidents, by name): `reports`, the incidents whose `Reported` event's
//!   author is that name; `assigned`, those whose current assignee is that member;
//!   `handled`, those of them whose status is `resolved` or `closed`.
//! - **`groups`** (with a [`GroupBy`]): the same figures (`total`, `by_status`,
//!   `closed_at_level`, `overdue`, `times`) per key value, in key order: the grid code; the
//!   community (its first three segments); the street (its first two); the category; the
//!   staff member assigned (incidents assigned to none are in no group).

use std::collections::BTreeMap;

use gridsync_core::{Event, IncidentState, Level, Millis, Payload, Stamp, Status, Verdict};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// The prefix of an assignee naming a staff member (`staff:NAME`).
pub const STAFF_PREFIX: &str = "staff:";

/// The staff member an assignee names (`staff:NAME`, the name trimmed and not empty), or
/// `None` for a department.
pub fn staff_name(assignee: &str) -> Option<&str> {
    let name = assignee.strip_prefix(STAFF_PREFIX)?.trim();
    (!name.is_empty()).then_some(name)
}

/// A duration as `45s`, `12m`, `3h05m` or `2d04h` (`-` for none): how `gridsync-relay stats`
/// and the console's evaluation page print the times.
pub fn duration_text(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `count` as a share of `of`, one decimal (`12.5%`), or `-` when `of` is 0.
pub fn percent_text(count: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1}%", count as f64 * 100.0 / of as f64)
    }
}

/// Which reports count, by report time (Unix ms): `since` included, `until` excluded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Window {
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

impl Window {
    /// Whether an incident reported at `report_ms` (`None`: its report has not arrived) counts.
    pub fn contains(&self, report_ms: Option<u64>) -> bool {
        match report_ms {
            Some(t) => self.since_ms.is_none_or(|s| t >= s) && self.until_ms.is_none_or(|u| t < u),
            None => self.since_ms.is_none() && self.until_ms.is_none(),
        }
    }
}

/// What `groups` are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The grid code.
    Grid,
    /// The community: the grid code's first three segments.
    Community,
    /// The street: the grid code's first two segments.
    Street,
    /// The current category.
    Category,
    /// The staff member currently assigned (`staff:NAME`).
    Staff,
}

impl GroupBy {
    /// Every choice, in order.
    pub const ALL: &'static [GroupBy] = &[
        GroupBy::Grid,
        GroupBy::Community,
        GroupBy::Street,
        GroupBy::Category,
        GroupBy::Staff,
    ];

    /// The name on the command line and in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Grid => "grid",
            GroupBy::Community => "community",
            GroupBy::Street => "street",
            GroupBy::Category => "category",
            GroupBy::Staff => "staff",
        }
    }

    /// The key of `state` (`None`: it belongs to no group).
    fn key(self, state: &IncidentState) -> Option<String> {
        let prefix = |segments: usize| {
            state.grid().map(|g| {
                g.as_str()
                    .split('/')
                    .take(segments)
                    .collect::<Vec<_>>()
                    .join("/")
            })
        };
        match self {
            GroupBy::Grid => state.grid().map(|g| g.as_str().to_owned()),
            GroupBy::Community => prefix(3),
            GroupBy::Street => prefix(2),
            GroupBy::Category => state.category.value().map(|c| c.as_str().to_owned()),
            GroupBy::Staff => assigned_staff(state).map(str::to_owned),
        }
    }
}

/// The closed vocabularies counted per value, printed as JSON objects in their own order.
pub trait Vocabulary: Copy + Ord + 'static {
    fn all() -> &'static [Self];
    fn name(self) -> &'static str;
}

macro_rules! vocabulary {
    ($($t:ty),+) => {$(
        impl Vocabulary for $t {
            fn all() -> &'static [Self] {
                <$t>::ALL
            }
            fn name(self) -> &'static str {
                self.as_str()
            }
        }
    )+};
}
vocabulary!(Status, Level, Verdict);

/// A count per value of `K`, every value present (0 if none): a JSON object value -> count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally<K: Vocabulary>(BTreeMap<K, u64>);

impl<K: Vocabulary> Default for Tally<K> {
    fn default() -> Self {
        Self(K::all().iter().map(|k| (*k, 0)).collect())
    }
}

impl<K: Vocabulary> Tally<K> {
    fn add(&mut self, k: K) {
        *self.0.entry(k).or_default() += 1;
    }

    /// The count of `k`.
    pub fn get(&self, k: K) -> u64 {
        self.0.get(&k).copied().unwrap_or(0)
    }

    /// The sum of every count.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl<K: Vocabulary> Serialize for Tally<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, n) in &self.0 {
            map.serialize_entry(k.name(), n)?;
        }
        map.end()
    }
}

/// The closed cases at one level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LevelShare {
    pub count: u64,
    /// `count` over all closed cases, 4 decimals; `None` when no case is closed.
    pub share: Option<f64>,
}

/// Where the closed cases were closed: level -> [`LevelShare`], every level present.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedAtLevel(BTreeMap<Level, LevelShare>);

impl ClosedAtLevel {
    fn of(levels: &Tally<Level>) -> Self {
        let closed = levels.total();
        Self(
            Level::ALL
                .iter()
                .map(|l| {
                    let count = levels.get(*l);
                    let share = (closed > 0).then(|| round4(count as f64 / closed as f64));
                    (*l, LevelShare { count, share })
                })
                .collect(),
        )
    }

    /// The figures of `level`.
    pub fn get(&self, level: Level) -> LevelShare {
        self.0.get(&level).copied().unwrap_or(LevelShare {
            count: 0,
            share: None,
        })
    }

    /// How many cases are closed.
    pub fn closed(&self) -> u64 {
        self.0.values().map(|s| s.count).sum()
    }
}

impl Serialize for ClosedAtLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (level, share) in &self.0 {
            map.serialize_entry(level.as_str(), share)?;
        }
        map.end()
    }
}

/// How long one step took, over the incidents that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Durations {
    pub count: u64,
    pub median_ms: Option<u64>,
    pub p90_ms: Option<u64>,
}

impl Durations {
    fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        Self {
            count: values.len() as u64,
            median_ms: nearest_rank(&values, 50),
            p90_ms: nearest_rank(&values, 90),
        }
    }
}

/// The time from the report to the first acceptance, dispatch, resolution and closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Times {
    pub accept: Durations,
    pub dispatch: Durations,
    pub resolve: Durations,
    pub close: Durations,
}

/// The statuses whose first reaching `times` measures, in its field order.
const TIMED: [Status; 4] = [
    Status::Accepted,
    Status::Dispatched,
    Status::Resolved,
    Status::Closed,
];

/// The figures computed for all counted incidents and for each group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub total: u64,
    pub by_status: Tally<Status>,
    pub closed_at_level: ClosedAtLevel,
    pub overdue: u64,
    pub times: Times,
}

/// Evaluations of the counted incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluations {
    pub count: u64,
    /// Mean score, 4 decimals; `None` when nothing is evaluated.
    pub mean_score: Option<f64>,
    pub by_verdict: Tally<Verdict>,
}

/// One staff member's work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaffFigures {
    pub name: String,
    /// Incidents this member reported (the author of their `Reported` event).
    pub reports: u64,
    /// Incidents currently assigned to this member (`staff:NAME`).
    pub assigned: u64,
    /// Of those, the ones resolved or closed.
    pub handled: u64,
}

/// One group of `--by`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Everything `gridsync-relay stats` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// The time `overdue` was evaluated at.
    pub now_ms: Millis,
    #[serde(flatten)]
    pub window: Window,
    #[serde(flatten)]
    pub figures: Figures,
    /// Current category -> count.
    pub by_category: BTreeMap<String, u64>,
    pub evaluation: Evaluations,
    /// By name.
    pub staff: Vec<StaffFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<GroupBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
}

/// The nearest-rank percentile `p` (1..=100) of `sorted` (ascending): the value at rank
/// `ceil(p / 100 * n)` (counting from 1; rank 1 at least), so always one of the values, never
/// an interpolation. The median is `p = 50`: of 4 values the 2nd, of 5 the 3rd; `p = 90` of 10
/// values is the 9th. `None` for no values.
pub fn nearest_rank(sorted: &[u64], p: u64) -> Option<u64> {
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The staff member `state` is currently assigned to, if any.
fn assigned_staff(state: &IncidentState) -> Option<&str> {
    state.assignee.value().and_then(|a| staff_name(&a.assignee))
}

fn report_ms(state: &IncidentState) -> Option<u64> {
    state.report.as_ref().map(|r| r.stamp.hlc.wall_ms)
}

/// Per timed status ([`TIMED`]), the time from the report to the first event reaching it.
fn step_times(state: &IncidentState, events: &[Event]) -> [Option<u64>; 4] {
    let Some(report) = report_ms(state) else {
        return [None; 4];
    };
    let mut first: [Option<(Stamp, u64)>; 4] = [None; 4];
    for e in events.iter().filter(|e| e.incident == state.id) {
        let Payload::StatusChanged { status, .. } = &e.payload else {
            continue;
        };
        let Some(i) = TIMED.iter().position(|s| s == status) else {
            continue;
        };
        let stamp = e.stamp();
        if first[i].is_none_or(|(s, _)| stamp < s) {
            first[i] = Some((stamp, e.hlc.wall_ms));
        }
    }
    first.map(|f| f.map(|(_, wall)| wall.saturating_sub(report)))
}

/// One counted incident, with what every figure needs.
struct Counted<'a> {
    state: &'a IncidentState,
    steps: [Option<u64>; 4],
}

fn figures(counted: &[&Counted<'_>], now_ms: Millis) -> Figures {
    let mut by_status = Tally::default();
    let mut levels = Tally::default();
    let mut overdue = 0;
    let mut steps: [Vec<u64>; 4] = Default::default();
    for c in counted {
        let status = c.state.status();
        by_status.add(status);
        if status == Status::Closed {
            levels.add(c.state.level());
        }
        if c.state.is_overdue(now_ms) {
            overdue += 1;
        }
        for (values, t) in steps.iter_mut().zip(c.steps) {
            values.extend(t);
        }
    }
    let [accept, dispatch, resolve, close] = steps.map(Durations::of);
    Figures {
        total: counted.len() as u64,
        by_status,
        closed_at_level: ClosedAtLevel::of(&levels),
        overdue,
        times: Times {
            accept,
            dispatch,
            resolve,
            close,
        },
    }
}

/// The statistics of the `incidents` (each state with its events) reported in `window`,
/// with `overdue` evaluated at `now_ms` and, with `by`, the figures per group. See the
/// module documentation for every definition.
pub fn compute(
    incidents: &[(IncidentState, Vec<Event>)],
    now_ms: Millis,
    window: Window,
    by: Option<GroupBy>,
) -> Stats {
    let counted: Vec<Counted<'_>> = incidents
        .iter()
        .filter(|(state, _)| window.contains(report_ms(state)))
        .map(|(state, events)| Counted {
            state,
            steps: step_times(state, events),
        })
        .collect();
    let all: Vec<&Counted<'_>> = counted.iter().collect();

    let mut by_category = BTreeMap::new();
    let mut evaluation = Evaluations {
        count: 0,
        mean_score: None,
        by_verdict: Tally::default(),
    };
    let mut score_sum = 0u64;
    let mut staff: BTreeMap<String, StaffFigures> = BTreeMap::new();
    fn member<'s>(
        staff: &'s mut BTreeMap<String, StaffFigures>,
        name: &str,
    ) -> &'s mut StaffFigures {
        staff
            .entry(name.to_owned())
            .or_insert_with(|| StaffFigures {
                name: name.to_owned(),
                reports: 0,
                assigned: 0,
                handled: 0,
            })
    }
    for c in &counted {
        let s = c.state;
        if let Some(category) = s.category.value() {
            *by_category.entry(category.as_str().to_owned()).or_insert(0) += 1;
        }
        if let Some(e) = s.evaluation.value() {
            evaluation.count += 1;
            score_sum += u64::from(e.score);
            evaluation.by_verdict.add(e.verdict);
        }
        if let Some(report) = &s.report {
            member(&mut staff, &report.author).reports += 1;
        }
        if let Some(name) = assigned_staff(s) {
            let m = member(&mut staff, name);
            m.assigned += 1;
            if matches!(s.status(), Status::Resolved | Status::Closed) {
                m.handled += 1;
            }
        }
    }
    if evaluation.count > 0 {
        evaluation.mean_score = Some(round4(score_sum as f64 / evaluation.count as f64));
    }

    let groups = by.map(|by| {
        let mut keyed: BTreeMap<String, Vec<&Counted<'_>>> = BTreeMap::new();
        for c in &counted {
            if let Some(key) = by.key(c.state) {
                keyed.entry(key).or_default().push(c);
            }
        }
        keyed
            .into_iter()
            .map(|(key, members)| Group {
                key,
                figures: figures(&members, now_ms),
            })
            .collect()
    });

    Stats {
        now_ms,
        window,
        figures: figures(&all, now_ms),
        by_category,
        evaluation,
        staff: staff.into_values().collect(),
        by,
        groups,
    }
}

#[cfg(test)]
mod tests {
    use gridsync_core::{Category, Hlc, IncidentId, NodeId, Report, Severity};

    use super::*;

    const DEVICE: NodeId = NodeId([0xd1; 32]);
    const RELAY: NodeId = NodeId([0xe2; 32]);
    const MIN: u64 = 60_000;
    const T0: u64 = 1_772_409_600_000;

    /// Writes the events of one incident: a report at `T0 + report_min` minutes by
    /// `reporter` in `grid`, then relay events `(minute, payload)`.
    struct Case {
        id: IncidentId,
        grid: &'static str,
        events: Vec<Event>,
    }

    impl Case {
        fn new(n: u8, grid: &'static str) -> Self {
            Self {
                id: IncidentId::new_v7(T0, [n; 10]),
                grid,
                events: Vec::new(),
            }
        }

        fn push(&mut self, origin: NodeId, author: &str, minute: u64, payload: Payload) {
            let seq = self.events.len() as u64 + 1;
            self.events.push(Event {
                origin,
                seq,
                hlc: Hlc::new(T0 + minute * MIN, 0),
                incident: self.id,
                grid: self.grid.parse().expect("grid"),
                author: author.into(),
                payload,
                signature: None,
            });
        }

        fn report(mut self, reporter: &str, minute: u64, category: &str) -> Self {
            self.push(
                DEVICE,
                reporter,
                minute,
                Payload::Reported(Report {
                    category: Category::try_from(category.to_owned()).expect("category"),
                    description: "d".into(),
                    location: None,
                    observed_at: None,
                    severity: Severity::Normal,
                }),
            );
            self
        }

        fn status(mut self, minute: u64, status: Status) -> Self {
            self.push(
                RELAY,
                "street",
                minute,
                Payload::StatusChanged {
                    status,
                    pred: vec![],
                },
            );
            self
        }

        fn assign(mut self, minute: u64, assignee: &str, due: Option<Millis>) -> Self {
            self.push(
                RELAY,
                "street",
                minute,
                Payload::Assigned {
                    assignee: assignee.into(),
                    due,
                    pred: vec![],
                },
            );
            self
        }

        fn escalate(mut self, minute: u64, level: Level) -> Self {
            self.push(
                RELAY,
                "street",
                minute,
                Payload::Escalated {
                    level,
                    reason: String::new(),
                    pred: vec![],
                },
            );
            self
        }

        fn evaluate(mut self, minute: u64, score: u8) -> Self {
            self.push(
                RELAY,
                "street",
                minute,
                Payload::Evaluated {
                    score,
                    verdict: Verdict::from_score(score),
                    pred: vec![],
                },
            );
            self
        }

        /// The state and the events, in the order given (which need not be stamp order).
        fn done(self) -> (IncidentState, Vec<Event>) {
            (IncidentState::replay(self.id, &self.events), self.events)
        }
    }

    const A: &str = "110101/002/014/03";
    const B: &str = "110101/002/015/01";
    const C: &str = "110101/003/021/02";

    #[test]
    fn nearest_rank_takes_the_value_at_rank_ceil_p_n() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4, 5], 50), Some(3));
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5));
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        assert_eq!(nearest_rank(&ten, 100), Some(10));
        let eleven: Vec<u64> = (1..=11).collect();
        assert_eq!(nearest_rank(&eleven, 90), Some(10));
    }

    #[test]
    fn staff_are_the_assignees_named_staff_colon() {
        assert_eq!(staff_name("staff:wang-li"), Some("wang-li"));
        assert_eq!(staff_name("staff: wang-li "), Some("wang-li"));
        assert_eq!(staff_name("staff:"), None);
        assert_eq!(staff_name("staff:  "), None);
        assert_eq!(staff_name("sanitation"), None);
        assert_eq!(staff_name("Staff:wang-li"), None);
    }

    #[test]
    fn the_window_takes_since_and_leaves_until() {
        let w = Window {
            since_ms: Some(10),
            until_ms: Some(20),
        };
        assert!(!w.contains(Some(9)));
        assert!(w.contains(Some(10)));
        assert!(w.contains(Some(19)));
        assert!(!w.contains(Some(20)));
        assert!(!w.contains(None), "no report time: outside any window");
        assert!(Window::default().contains(None));
        assert!(Window::default().contains(Some(0)));
    }

    /// The first event to each status counts, by stamp whatever the order the events are
    /// given in; a second acceptance (sent back) or a reopening after closing does not.
    #[test]
    fn times_run_from_the_report_to_the_first_event_to_each_status() {
        let (state, mut events) = Case::new(1, A)
            .report("wang-li", 0, "garbage")
            .status(10, Status::Accepted)
            .status(20, Status::Dispatched)
            .status(30, Status::Accepted)
            .status(40, Status::Dispatched)
            .status(50, Status::Resolved)
            .status(55, Status::Verified)
            .status(60, Status::Closed)
            .status(70, Status::Accepted)
            .done();
        events.reverse();
        let steps = step_times(&state, &events);
        assert_eq!(
            steps,
            [
                Some(10 * MIN),
                Some(20 * MIN),
                Some(50 * MIN),
                Some(60 * MIN)
            ]
        );
        // Without the report there is nothing to measure from.
        let orphan = Case::new(2, A).status(10, Status::Accepted).done();
        assert_eq!(step_times(&orphan.0, &orphan.1), [None; 4]);
    }

    fn sample() -> Vec<(IncidentState, Vec<Event>)> {
        let far = Some((T0 + 100_000 * MIN) as Millis);
        let past = Some((T0 + 30 * MIN) as Millis);
        vec![
            // Closed at grid by a grid assistant; evaluated 5.
            Case::new(1, A)
                .report("wang-li", 0, "garbage")
                .status(10, Status::Accepted)
                .assign(20, "staff:wang-li", None)
                .status(21, Status::InProgress)
                .status(40, Status::Resolved)
                .status(50, Status::Verified)
                .status(60, Status::Closed)
                .evaluate(70, 5)
                .done(),
            // Escalated to the street, dispatched to a department, overdue.
            Case::new(2, B)
                .report("zhao-min", 5, "sewage")
                .status(10, Status::Accepted)
                .escalate(12, Level::Street)
                .assign(15, "sanitation", past)
                .status(16, Status::Dispatched)
                .done(),
            // Closed at the district; evaluated 2.
            Case::new(3, C)
                .report("zhao-min", 100, "garbage")
                .status(130, Status::Accepted)
                .escalate(131, Level::District)
                .assign(140, "staff:sun-hao", far)
                .status(141, Status::Dispatched)
                .status(200, Status::Resolved)
                .status(210, Status::Verified)
                .status(220, Status::Closed)
                .evaluate(230, 2)
                .done(),
            // Resolved by a staff member, not yet due.
            Case::new(4, A)
                .report("wang-li", 200, "noise")
                .status(201, Status::Accepted)
                .assign(202, "staff:sun-hao", far)
                .status(203, Status::InProgress)
                .status(210, Status::Resolved)
                .done(),
            // Events before their report: counted only without a window.
            Case::new(5, B).status(300, Status::Accepted).done(),
        ]
    }

    #[test]
    fn every_figure_of_a_small_sample() {
        let now = (T0 + 1_000 * MIN) as Millis;
        let s = compute(&sample(), now, Window::default(), None);
        let f = &s.figures;
        assert_eq!(f.total, 5);
        assert_eq!(f.by_status.get(Status::Accepted), 1);
        assert_eq!(f.by_status.get(Status::Dispatched), 1);
        assert_eq!(f.by_status.get(Status::Resolved), 1);
        assert_eq!(f.by_status.get(Status::Closed), 2);
        assert_eq!(f.by_status.get(Status::Rejected), 0);
        assert_eq!(f.by_status.total(), 5);
        assert_eq!(f.closed_at_level.closed(), 2);
        assert_eq!(
            f.closed_at_level.get(Level::Grid),
            LevelShare {
                count: 1,
                share: Some(0.5)
            }
        );
        assert_eq!(f.closed_at_level.get(Level::Street).share, Some(0.0));
        assert_eq!(f.closed_at_level.get(Level::District).count, 1);
        assert_eq!(f.overdue, 1);
        // accept: 10, 5, 30, 1 (the orphan has no report) -> sorted 1, 5, 10, 30.
        assert_eq!(
            f.times.accept,
            Durations {
                count: 4,
                median_ms: Some(5 * MIN),
                p90_ms: Some(30 * MIN)
            }
        );
        // dispatch: 11, 41.
        assert_eq!(f.times.dispatch.median_ms, Some(11 * MIN));
        assert_eq!(f.times.dispatch.p90_ms, Some(41 * MIN));
        // resolve: 40, 100, 10 -> 10, 40, 100.
        assert_eq!(f.times.resolve.median_ms, Some(40 * MIN));
        assert_eq!(f.times.close.count, 2);
        assert_eq!(
            s.by_category,
            BTreeMap::from([
                ("garbage".to_owned(), 2),
                ("noise".to_owned(), 1),
                ("sewage".to_owned(), 1)
            ])
        );
        assert_eq!(s.evaluation.count, 2);
        assert_eq!(s.evaluation.mean_score, Some(3.5));
        assert_eq!(s.evaluation.by_verdict.get(Verdict::Satisfied), 1);
        assert_eq!(s.evaluation.by_verdict.get(Verdict::Unsatisfied), 1);
        let staff: Vec<_> = s
            .staff
            .iter()
            .map(|m| (m.name.as_str(), m.reports, m.assigned, m.handled))
            .collect();
        assert_eq!(
            staff,
            [
                ("sun-hao", 0, 2, 2),
                ("wang-li", 2, 1, 1),
                ("zhao-min", 2, 0, 0)
            ]
        );
        assert!(s.groups.is_none());
    }

    #[test]
    fn a_window_and_groups() {
        let now = (T0 + 1_000 * MIN) as Millis;
        let window = Window {
            since_ms: Some(T0 + 5 * MIN),
            until_ms: Some(T0 + 200 * MIN),
        };
        let s = compute(&sample(), now, window, Some(GroupBy::Street));
        assert_eq!(s.figures.total, 2, "the reports at 5 and 100 minutes");
        let groups = s.groups.as_ref().expect("groups");
        let keys: Vec<_> = groups
            .iter()
            .map(|g| (g.key.as_str(), g.figures.total))
            .collect();
        assert_eq!(keys, [("110101/002", 1), ("110101/003", 1)]);
        let all = compute(&sample(), now, Window::default(), Some(GroupBy::Community));
        let keys: Vec<_> = all
            .groups
            .iter()
            .flatten()
            .map(|g| (g.key.as_str(), g.figures.total))
            .collect();
        assert_eq!(
            keys,
            [
                ("110101/002/014", 2),
                ("110101/002/015", 2),
                ("110101/003/021", 1)
            ]
        );
        let staff = compute(&sample(), now, Window::default(), Some(GroupBy::Staff));
        let keys: Vec<_> = staff
            .groups
            .iter()
            .flatten()
            .map(|g| (g.key.as_str(), g.figures.total))
            .collect();
        assert_eq!(keys, [("sun-hao", 2), ("wang-li", 1)]);
        let category = compute(&sample(), now, Window::default(), Some(GroupBy::Category));
        assert_eq!(category.groups.map(|g| g.len()), Some(3));
    }

    #[test]
    fn the_json_has_every_status_and_level_and_null_shares_when_nothing_is_closed() {
        let s = compute(&[], 0, Window::default(), Some(GroupBy::Grid));
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["total"], 0);
        for status in Status::ALL {
            assert_eq!(v["by_status"][status.as_str()], 0, "{status}");
        }
        for level in Level::ALL {
            let l = &v["closed_at_level"][level.as_str()];
            assert_eq!(l["count"], 0);
            assert!(l["share"].is_null(), "{l}");
        }
        assert!(v["times"]["accept"]["median_ms"].is_null());
        assert!(v["evaluation"]["mean_score"].is_null());
        assert_eq!(v["by"], "grid");
        assert_eq!(v["groups"], serde_json::json!([]));
        assert!(v["since_ms"].is_null());
        let none = serde_json::to_value(compute(&[], 0, Window::default(), None)).expect("json");
        assert!(none.get("groups").is_none() && none.get("by").is_none());
    }
}
