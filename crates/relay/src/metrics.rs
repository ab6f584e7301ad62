//! The relay's counters, in Prometheus' text exposition format (version 0.0.4), written by
//! hand: [`Metrics`] is a set of atomics the driver and the relay's loops update, and
//! [`Metrics::render`] writes them (`# HELP` and `# TYPE` once per family, then its
//! samples, label values escaped). The console serves it at `/metrics` (`run --metrics`).
//!
//! Families (all prefixed `gridsync_`): `sessions_started_total{role}`, `sessions_active`,
//! `events_in_total`, `events_out_total`, `bytes_in_total{kind}` and `bytes_out_total{kind}`
//! (`kind` = `frames` or `blobs`), `refusals_total{reason}` (the `ErrorCode` names),
//! `blob_resumes_total`, `commit_seconds` (a histogram), `backlog_events` and
//! `backlog_blobs` (own events and blobs not yet acknowledged upstream), `upstream_connected`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use gridsync_net::observe::{Observer, SessionEnd};
use gridsync_proto::{Enrolled, ErrorCode, Role};

/// The upper bounds (seconds) of the commit latency histogram's buckets (`+Inf` follows).
pub const COMMIT_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Error codes are numbered 0 to 16 (`ErrorCode::from_u16`); one counter each.
const CODES: usize = 17;

/// Where the backlog gauges are read from when rendering (the relay's store).
type BacklogSource = Box<dyn Fn() -> Option<(u64, u64)> + Send + Sync>;

/// The relay's metrics. All counters only grow; gauges are set.
#[derive(Default)]
pub struct Metrics {
    sessions_started: [AtomicU64; 4],
    sessions_active: AtomicU64,
    events_in: AtomicU64,
    events_out: AtomicU64,
    frame_bytes_in: AtomicU64,
    frame_bytes_out: AtomicU64,
    blob_bytes_in: AtomicU64,
    blob_bytes_out: AtomicU64,
    refusals: [AtomicU64; CODES],
    blob_resumes: AtomicU64,
    /// Per bucket of [`COMMIT_BUCKETS`] (not cumulative), then the count above the last.
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    commit_count: AtomicU64,
    /// The sum of commit durations, in microseconds.
    commit_sum_us: AtomicU64,
    backlog_events: AtomicU64,
    backlog_blobs: AtomicU64,
    upstream_connected: AtomicU64,
    backlog_source: Mutex<Option<BacklogSource>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("sessions_active", &self.sessions_active)
            .field("events_in", &self.events_in)
            .field("events_out", &self.events_out)
            .finish_non_exhaustive()
    }
}

fn role_index(role: Role) -> usize {
    Role::ALL.iter().position(|r| *r == role).unwrap_or(0)
}

impl Metrics {
    /// Sets where [`Metrics::render`] reads the backlog from (own events and blobs not yet
    /// acknowledged upstream); without one, the gauges keep what [`Metrics::set_backlog`] set.
    pub fn set_backlog_source(
        &self,
        source: impl Fn() -> Option<(u64, u64)> + Send + Sync + 'static,
    ) {
        *self
            .backlog_source
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(source));
    }

    /// Sets the backlog gauges: own events and blobs not yet acknowledged upstream.
    pub fn set_backlog(&self, events: u64, blobs: u64) {
        self.backlog_events.store(events, Relaxed);
        self.backlog_blobs.store(blobs, Relaxed);
    }

    /// Sets whether the upstream link is connected.
    pub fn set_upstream_connected(&self, connected: bool) {
        self.upstream_connected.store(u64::from(connected), Relaxed);
    }

    /// Sessions started by children of `role`.
    pub fn sessions_started(&self, role: Role) -> u64 {
        self.sessions_started[role_index(role)].load(Relaxed)
    }

    /// Sessions running now.
    pub fn sessions_active(&self) -> u64 {
        self.sessions_active.load(Relaxed)
    }

    /// Events received from children and stored.
    pub fn events_in(&self) -> u64 {
        self.events_in.load(Relaxed)
    }

    /// Events sent down to children.
    pub fn events_out(&self) -> u64 {
        self.events_out.load(Relaxed)
    }

    /// Bytes received from children: frames and blob bytes.
    pub fn bytes_in(&self) -> u64 {
        self.frame_bytes_in.load(Relaxed) + self.blob_bytes_in.load(Relaxed)
    }

    /// Bytes sent to children: frames and blob bytes.
    pub fn bytes_out(&self) -> u64 {
        self.frame_bytes_out.load(Relaxed) + self.blob_bytes_out.load(Relaxed)
    }

    /// Sessions or connections ended with `code`.
    pub fn refusals(&self, code: ErrorCode) -> u64 {
        self.refusals
            .get(usize::from(code.as_u16()))
            .map_or(0, |c| c.load(Relaxed))
    }

    /// Blob uploads resumed at an offset above 0.
    pub fn blob_resumes(&self) -> u64 {
        self.blob_resumes.load(Relaxed)
    }

    /// Commits observed by the latency histogram.
    pub fn commits(&self) -> u64 {
        self.commit_count.load(Relaxed)
    }

    /// The metrics in the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`). Reads
    /// the backlog from its source first (a short store query, when the relay set one).
    pub fn render(&self) -> String {
        let source = self
            .backlog_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((events, blobs)) = source.as_ref().and_then(|f| f()) {
            self.set_backlog(events, blobs);
        }
        drop(source);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (suffix_labels, value) in samples {
                let _ = writeln!(out, "{name}{suffix_labels} {value}");
            }
        };
        let plain = |v: &AtomicU64| vec![(String::new(), v.load(Relaxed).to_string())];
        let by_role: Vec<_> = Role::ALL
            .iter()
            .map(|r| {
                (
                    labels(&[("role", r.as_str())]),
                    self.sessions_started(*r).to_string(),
                )
            })
            .collect();
        family(
            "gridsync_sessions_started_total",
            "counter",
            "Sessions children started here (their Hello accepted), by the child's role.",
            &by_role,
        );
        family(
            "gridsync_sessions_active",
            "gauge",
            "Sessions with children running now.",
            &plain(&self.sessions_active),
        );
        family(
            "gridsync_events_in_total",
            "counter",
            "Events received from children and stored (duplicates not counted).",
            &plain(&self.events_in),
        );
        family(
            "gridsync_events_out_total",
            "counter",
            "Events sent down to children in Down pages.",
            &plain(&self.events_out),
        );
        let kinds = |frames: &AtomicU64, blobs: &AtomicU64| {
            vec![
                (
                    labels(&[("kind", "frames")]),
                    frames.load(Relaxed).to_string(),
                ),
                (
                    labels(&[("kind", "blobs")]),
                    blobs.load(Relaxed).to_string(),
                ),
            ]
        };
        family(
            "gridsync_bytes_in_total",
            "counter",
            "Bytes received from children: control-stream frames and blob bytes.",
            &kinds(&self.frame_bytes_in, &self.blob_bytes_in),
        );
        family(
            "gridsync_bytes_out_total",
            "counter",
            "Bytes sent to children: control-stream frames and blob bytes.",
            &kinds(&self.frame_bytes_out, &self.blob_bytes_out),
        );
        let refusals: Vec<_> = (0..CODES as u16)
            .filter_map(ErrorCode::from_u16)
            .filter(|c| *c != ErrorCode::Done)
            .map(|c| {
                (
                    labels(&[("reason", &format!("{c:?}"))]),
                    self.refusals(c).to_string(),
                )
            })
            .collect();
        family(
            "gridsync_refusals_total",
            "counter",
            "Sessions and connections ended with an error code, by the code's name.",
            &refusals,
        );
        family(
            "gridsync_blob_resumes_total",
            "counter",
            "Blob uploads resumed at an offset above 0.",
            &plain(&self.blob_resumes),
        );
        let mut histogram = Vec::new();
        let mut cumulative = 0u64;
        for (i, bound) in COMMIT_BUCKETS.iter().enumerate() {
            cumulative += self.commit_buckets[i].load(Relaxed);
            histogram.push((
                format!("_bucket{}", labels(&[("le", &bound.to_string())])),
                cumulative.to_string(),
            ));
        }
        let count = self.commit_count.load(Relaxed);
        histogram.push((
            format!("_bucket{}", labels(&[("le", "+Inf")])),
            count.to_string(),
        ));
        let sum = self.commit_sum_us.load(Relaxed) as f64 / 1e6;
        histogram.push(("_sum".to_owned(), sum.to_string()));
        histogram.push(("_count".to_owned(), count.to_string()));
        family(
            "gridsync_commit_seconds",
            "histogram",
            "Time of each session step that committed to the store (admission and the transaction).",
            &histogram,
        );
        family(
            "gridsync_backlog_events",
            "gauge",
            "This relay's own events not yet acknowledged upstream.",
            &plain(&self.backlog_events),
        );
        family(
            "gridsync_backlog_blobs",
            "gauge",
            "Blobs held here not yet acknowledged upstream.",
            &plain(&self.backlog_blobs),
        );
        family(
            "gridsync_upstream_connected",
            "gauge",
            "1 while the upstream link is connected, else 0.",
            &plain(&self.upstream_connected),
        );
        out
    }
}

/// `{k="v",...}` with each value escaped (backslash, double quote, newline).
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

impl Observer for Metrics {
    fn session_started(&self, peer: &Enrolled) {
        self.sessions_started[role_index(peer.role)].fetch_add(1, Relaxed);
        self.sessions_active.fetch_add(1, Relaxed);
    }

    fn session_ended(&self, _end: SessionEnd<'_>) {
        let _ = self
            .sessions_active
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    fn refused(&self, code: ErrorCode) {
        if let Some(c) = self.refusals.get(usize::from(code.as_u16())) {
            c.fetch_add(1, Relaxed);
        }
    }

    fn frame_bytes(&self, inbound: bool, bytes: u64) {
        let c = if inbound {
            &self.frame_bytes_in
        } else {
            &self.frame_bytes_out
        };
        c.fetch_add(bytes, Relaxed);
    }

    fn blob_bytes(&self, inbound: bool, bytes: u64) {
        let c = if inbound {
            &self.blob_bytes_in
        } else {
            &self.blob_bytes_out
        };
        c.fetch_add(bytes, Relaxed);
    }

    fn events(&self, inbound: bool, count: u64) {
        let c = if inbound {
            &self.events_in
        } else {
            &self.events_out
        };
        c.fetch_add(count, Relaxed);
    }

    fn blob_resumed(&self) {
        self.blob_resumes.fetch_add(1, Relaxed);
    }

    fn committed_in(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.commit_buckets[i].fetch_add(1, Relaxed);
        self.commit_count.fetch_add(1, Relaxed);
        self.commit_sum_us
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridsync_core::{NodeId, Scope};

    /// A sample line: `name{labels} value` (labels optional), the value a number.
    fn parse_sample(line: &str) -> Option<(String, String, f64)> {
        let (head, value) = line.rsplit_once(' ')?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().ok()?,
        };
        let (name, labels) = match head.find('{') {
            Some(i) => {
                let rest = head.get(i..)?;
                if !rest.ends_with('}') {
                    return None;
                }
                (head.get(..i)?, rest.to_owned())
            }
            None => (head, String::new()),
        };
        let ok = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && name.starts_with("gridsync_");
        ok.then(|| (name.to_owned(), labels, value))
    }

    #[test]
    fn every_line_is_a_comment_or_a_sample_and_each_family_is_declared_once() {
        let m = Metrics::default();
        let peer = Enrolled {
            node: NodeId([1; 32]),
            role: Role::Device,
            scope: "110101/002/014/03".parse::<Scope>().expect("a scope"),
        };
        m.session_started(&peer);
        m.events(true, 3);
        m.frame_bytes(true, 100);
        m.blob_bytes(true, 50);
        m.refused(ErrorCode::NotEnrolled);
        m.committed_in(Duration::from_millis(3));
        m.committed_in(Duration::from_secs(5));
        m.set_backlog_source(|| Some((4, 2)));
        let text = m.render();
        let mut help = std::collections::HashMap::<String, u32>::new();
        let mut types = std::collections::HashMap::<String, String>::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().expect("a name").to_owned();
                *help.entry(name).or_default() += 1;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("a name and a type");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "TYPE twice: {line}"
                );
            } else {
                let s = parse_sample(line).unwrap_or_else(|| panic!("not a sample: {line:?}"));
                samples.push(s);
            }
        }
        assert!(help.values().all(|n| *n == 1), "{help:?}");
        assert_eq!(
            help.keys().collect::<std::collections::BTreeSet<_>>(),
            types.keys().collect()
        );
        // Every sample belongs to a declared family (a histogram's with its suffixes).
        for (name, _, _) in &samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "{name} undeclared");
        }
        let value = |name: &str, labels: &str| {
            samples
                .iter()
                .find(|(n, l, _)| n == name && l == labels)
                .map(|s| s.2)
        };
        assert_eq!(
            value("gridsync_sessions_started_total", r#"{role="device"}"#),
            Some(1.0)
        );
        assert_eq!(value("gridsync_sessions_active", ""), Some(1.0));
        assert_eq!(value("gridsync_events_in_total", ""), Some(3.0));
        assert_eq!(
            value("gridsync_bytes_in_total", r#"{kind="blobs"}"#),
            Some(50.0)
        );
        assert_eq!(
            value("gridsync_refusals_total", r#"{reason="NotEnrolled"}"#),
            Some(1.0)
        );
        assert_eq!(
            value("gridsync_commit_seconds_bucket", r#"{le="0.005"}"#),
            Some(1.0)
        );
        assert_eq!(
            value("gridsync_commit_seconds_bucket", r#"{le="1"}"#),
            Some(1.0)
        );
        assert_eq!(
            value("gridsync_commit_seconds_bucket", r#"{le="+Inf"}"#),
            Some(2.0)
        );
        assert_eq!(value("gridsync_commit_seconds_count", ""), Some(2.0));
        assert_eq!(value("gridsync_backlog_events", ""), Some(4.0));
        assert_eq!(value("gridsync_backlog_blobs", ""), Some(2.0));
        assert_eq!(value("gridsync_upstream_connected", ""), Some(0.0));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("reason", "a\"b\\c\nd")]),
            r#"{reason="a\"b\\c\nd"}"#
        );
    }
}
