//! The evaluation page: the statistics of `gridsync-relay stats` as tables and charts.
//!
//! [`body`] renders the page body, [`download`] the same figures as a file. Both compute
//! [`gridsync_relay::stats::compute`] over every incident of the store, grouped by grid
//! (`docs/STATS.md` defines every figure), in the window of the [`EvalQuery`].
//!
//! The page: a window form (GET `since`/`until`), the level split of the closed cases against
//! the targets (an inline SVG bar chart with each target band drawn, and a table with pass or
//! fail marks), the time from report to acceptance, dispatch, resolution and closing (median
//! and p90, a table and an SVG chart), the status counts, overdue cases, evaluations, and the
//! per-grid and per-staff tables. Charts are SVG made here: no script at all.
//!
//! **Targets.** Of the closed cases, 80-85 % closed in the community (at grid or community
//! level together, as `gridsync-relay stats` counts them), 10-15 % at the street, under 5 % at
//! the district. A share passes when it lies in its band (both ends included; the district's
//! is `[0, 5)`); with no closed case there is nothing to judge.
//!
//! **Downloads** are linked from the page as [`DOWNLOAD_PATH`]`.csv` and `.json` with the
//! window's query string: the server routes them to [`download`]. `json` is exactly what
//! `gridsync-relay stats --by grid --json` prints; `csv` is one RFC 4180 table of the overall
//! figures (section `overall`), each grid (`grid`) and each staff member (`staff`).

use std::fmt::Write as _;

use gridsync_core::{Level, Millis, Status, Verdict};
use gridsync_relay::export::{csv_text, parse_time};
use gridsync_relay::stats::{
    self, duration_text as duration, percent_text as percent, Durations, Figures, GroupBy, Stats,
    Window,
};
use gridsync_store::{Store, StoreError};

use crate::html::escape;

/// The page's query string: `since` and `until` as RFC 3339 times (empty: no bound).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct EvalQuery {
    /// Only incidents reported at or after this time.
    #[serde(default)]
    pub since: Option<String>,
    /// Only incidents reported before this time.
    #[serde(default)]
    pub until: Option<String>,
}

impl EvalQuery {
    /// The window the query asks for: each bound in any form
    /// [`gridsync_relay::export::parse_time`] takes (an RFC 3339 time, a date, or what a
    /// `datetime-local` input sends, in UTC); empty means no bound. The error names the bad
    /// parameter.
    pub fn window(&self) -> Result<Window, String> {
        let bound = |name: &str, v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_time(s).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let window = Window {
            since_ms: bound("since", &self.since)?,
            until_ms: bound("until", &self.until)?,
        };
        if let (Some(s), Some(u)) = (window.since_ms, window.until_ms) {
            if s >= u {
                return Err("since must be before until".to_owned());
            }
        }
        Ok(window)
    }

    fn query_string(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [("since", &self.since), ("until", &self.until)] {
            if let Some(v) = v.as_deref().filter(|s| !s.trim().is_empty()) {
                parts.push(format!("{k}={}", url_encode(v.trim())));
            }
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// Where the page links its downloads: `{DOWNLOAD_PATH}.csv` and `{DOWNLOAD_PATH}.json`, with
/// the page's `since`/`until`.
pub const DOWNLOAD_PATH: &str = "/evaluation";

/// The formats [`download`] makes.
pub const FORMATS: &[&str] = &["csv", "json"];

/// Checks a download request before [`download`]: the window and the format (the error, one
/// line, is for a 400 answer).
pub fn check(query: &EvalQuery, format: &str) -> Result<(), String> {
    query.window()?;
    if !FORMATS.contains(&format) {
        return Err(format!(
            "unknown download format {format:?}; expected csv or json"
        ));
    }
    Ok(())
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The statistics of the store in `window` at `now_ms`, by grid, and the staff.
fn compute(store: &Store, now_ms: u64, window: Window) -> Result<Stats, StoreError> {
    let incidents = store
        .incidents()?
        .into_iter()
        .map(|state| {
            let events = store.events_of(&state.id)?;
            Ok((state, events))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let now = Millis::try_from(now_ms).unwrap_or(Millis::MAX);
    Ok(stats::compute(&incidents, now, window, Some(GroupBy::Grid)))
}

/// The window of `query`, or all time with the reason it was not used.
fn window_or_all(query: &EvalQuery) -> (Window, Option<String>) {
    match query.window() {
        Ok(w) => (w, None),
        Err(e) => (Window::default(), Some(e)),
    }
}

fn time(ms: u64) -> String {
    gridsync_core::view::rfc3339(Millis::try_from(ms).unwrap_or(Millis::MAX))
}

/// One line of the level split: name, count, target band in percent `[lo, hi]`, and whether
/// `hi` itself is excluded (the district's "under 5 %").
struct LevelRow {
    name: &'static str,
    count: u64,
    lo: f64,
    hi: f64,
    hi_open: bool,
    target: &'static str,
}

fn level_rows(f: &Figures) -> (u64, [LevelRow; 3]) {
    let levels = &f.closed_at_level;
    let count = |l| levels.get(l).count;
    (
        levels.closed(),
        [
            LevelRow {
                name: "community (grid + community)",
                count: count(Level::Grid) + count(Level::Community),
                lo: 80.0,
                hi: 85.0,
                hi_open: false,
                target: "80-85%",
            },
            LevelRow {
                name: "street",
                count: count(Level::Street),
                lo: 10.0,
                hi: 15.0,
                hi_open: false,
                target: "10-15%",
            },
            LevelRow {
                name: "district",
                count: count(Level::District),
                lo: 0.0,
                hi: 5.0,
                hi_open: true,
                target: "under 5%",
            },
        ],
    )
}

impl LevelRow {
    /// The share in percent, `None` when nothing is closed.
    fn share(&self, closed: u64) -> Option<f64> {
        (closed > 0).then(|| self.count as f64 * 100.0 / closed as f64)
    }

    fn passes(&self, closed: u64) -> Option<bool> {
        let s = self.share(closed)?;
        Some(
            s >= self.lo
                && if self.hi_open {
                    s < self.hi
                } else {
                    s <= self.hi
                },
        )
    }
}

fn mark(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "<span class=\"eval-pass\">✓ pass</span>",
        Some(false) => "<span class=\"eval-fail\">✗ fail</span>",
        None => "<span class=\"eval-none\">- no closed case</span>",
    }
}

/// The level split chart: a bar per row over 0-100 %, its target band behind it.
fn level_chart(closed: u64, rows: &[LevelRow]) -> String {
    const LABEL: f64 = 210.0;
    const WIDTH: f64 = 400.0;
    const ROW: f64 = 36.0;
    let height = ROW * rows.len() as f64 + 30.0;
    let x = |pct: f64| LABEL + pct / 100.0 * WIDTH;
    let summary: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} (target {})",
                r.name,
                r.share(closed)
                    .map_or("-".to_owned(), |s| format!("{s:.1}%")),
                r.target
            )
        })
        .collect();
    let mut svg = format!(
        "<svg class=\"eval-chart\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" height=\"{height}\" \
role=\"img\" aria-label=\"{label}\" xmlns=\"http://www.w3.org/2000/svg\">\
<title>{label}</title>",
        w = LABEL + WIDTH + 70.0,
        label = escape(&format!(
            "Closed cases by level ({closed} closed): {}",
            summary.join("; ")
        )),
    );
    for (i, r) in rows.iter().enumerate() {
        let y = i as f64 * ROW;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"13\">{name}</text>\
<rect class=\"eval-band\" x=\"{bx}\" y=\"{y}\" width=\"{bw}\" height=\"{h}\" fill=\"#b2f2bb\" \
stroke=\"#2f9e44\" stroke-dasharray=\"4 2\"><title>target {target}</title></rect>",
            ty = y + 20.0,
            name = escape(r.name),
            bx = x(r.lo),
            bw = x(r.hi) - x(r.lo),
            h = ROW - 8.0,
            target = escape(r.target),
        );
        if let Some(s) = r.share(closed) {
            let fill = if r.passes(closed) == Some(true) {
                "#1c7ed6"
            } else {
                "#e03131"
            };
            let _ = write!(
                svg,
                "<rect x=\"{LABEL}\" y=\"{by}\" width=\"{bw:.1}\" height=\"{bh}\" fill=\"{fill}\"/>\
<text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"12\">{s:.1}%</text>",
                by = y + 8.0,
                bw = s / 100.0 * WIDTH,
                bh = ROW - 24.0,
                tx = x(s) + 4.0,
                ty = y + 19.0,
            );
        }
    }
    let axis_y = ROW * rows.len() as f64;
    let _ = write!(
        svg,
        "<line x1=\"{LABEL}\" y1=\"{axis_y}\" x2=\"{x2}\" y2=\"{axis_y}\" stroke=\"#495057\"/>",
        x2 = LABEL + WIDTH
    );
    for pct in [0, 25, 50, 75, 100] {
        let _ = write!(
            svg,
            "<text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"middle\">{pct}%</text>",
            tx = x(f64::from(pct)),
            ty = axis_y + 16.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The time chart: per step, a median bar and a p90 bar, on one scale.
fn times_chart(rows: &[(&str, &Durations)]) -> String {
    const LABEL: f64 = 130.0;
    const WIDTH: f64 = 400.0;
    const ROW: f64 = 40.0;
    let max = rows
        .iter()
        .filter_map(|(_, d)| d.p90_ms.or(d.median_ms))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let summary: Vec<String> = rows
        .iter()
        .map(|(n, d)| {
            format!(
                "{n}: median {}, p90 {}",
                duration(d.median_ms),
                duration(d.p90_ms)
            )
        })
        .collect();
    let height = ROW * rows.len() as f64;
    let mut svg = format!(
        "<svg class=\"eval-chart\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" height=\"{height}\" \
role=\"img\" aria-label=\"{label}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{label}</title>",
        w = LABEL + WIDTH + 70.0,
        label = escape(&format!(
            "Time from report (median and p90): {}",
            summary.join("; ")
        )),
    );
    for (i, (name, d)) in rows.iter().enumerate() {
        let y = i as f64 * ROW;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"13\">{name}</text>",
            ty = y + 22.0,
            name = escape(name)
        );
        for (j, (value, fill, what)) in [
            (d.median_ms, "#1c7ed6", "median"),
            (d.p90_ms, "#74c0fc", "p90"),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(v) = value else { continue };
            let by = y + 6.0 + j as f64 * 14.0;
            let bw = v as f64 / max * WIDTH;
            let _ = write!(
                svg,
                "<rect x=\"{LABEL}\" y=\"{by}\" width=\"{bw:.1}\" height=\"12\" fill=\"{fill}\">\
<title>{what} {d}</title></rect>\
<text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"11\">{what} {d}</text>",
                d = duration(Some(v)),
                tx = LABEL + bw + 4.0,
                ty = by + 10.0,
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn th_row(out: &mut String, heads: &[&str]) {
    out.push_str("<thead><tr>");
    for h in heads {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(h));
    }
    out.push_str("</tr></thead>");
}

/// The evaluation page's body at `now_ms`.
pub fn body(store: &Store, now_ms: u64, query: &EvalQuery) -> Result<String, StoreError> {
    let (window, problem) = window_or_all(query);
    let st = compute(store, now_ms, window)?;
    let f = &st.figures;
    let mut out = String::new();
    out.push_str("<link rel=\"stylesheet\" href=\"/assets/evaluation/evaluation.css\">\n");
    out.push_str("<section class=\"evaluation\" aria-labelledby=\"eval-title\">\n");
    out.push_str("<h1 id=\"eval-title\">Evaluation</h1>\n");

    // The window form.
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or("").trim());
    let _ = writeln!(
        out,
        "<form class=\"eval-window\" method=\"get\" aria-label=\"Window\">\
<label>Reported from <input type=\"text\" name=\"since\" value=\"{}\" \
placeholder=\"2026-03-01T00:00:00+08:00\"></label> \
<label>to before <input type=\"text\" name=\"until\" value=\"{}\" placeholder=\"2026-04-01\"></label> \
<button type=\"submit\">Show</button></form>",
        value(&query.since),
        value(&query.until)
    );
    if let Some(p) = &problem {
        let _ = writeln!(
            out,
            "<p class=\"eval-error\" role=\"alert\">{}; showing every incident.</p>",
            escape(p)
        );
    }
    let window_text = match (window.since_ms, window.until_ms) {
        (None, None) => "all incidents held here".to_owned(),
        (Some(s), None) => format!("reported from {}", time(s)),
        (None, Some(u)) => format!("reported before {}", time(u)),
        (Some(s), Some(u)) => format!("reported from {} to before {}", time(s), time(u)),
    };
    let qs = if problem.is_some() {
        String::new()
    } else {
        escape(&query.query_string())
    };
    let _ = writeln!(
        out,
        "<p class=\"eval-summary\"><strong>{}</strong> incidents ({}); \
<strong>{}</strong> overdue now (dispatched or in progress past their due time). \
Download: <a href=\"{DOWNLOAD_PATH}.csv{qs}\" download>CSV</a>, \
<a href=\"{DOWNLOAD_PATH}.json{qs}\" download>JSON</a>.</p>",
        f.total,
        escape(&window_text),
        f.overdue
    );

    // The level split.
    let (closed, rows) = level_rows(f);
    let _ = writeln!(
        out,
        "<h2>Where closed cases were closed</h2>\n<p>{closed} cases closed. Targets: 80-85% in \
the community (grid and community level together), 10-15% at the street, under 5% at the \
district.</p>"
    );
    out.push_str(&level_chart(closed, &rows));
    out.push_str("\n<table class=\"eval-levels\"><caption>Closed cases by level</caption>");
    th_row(&mut out, &["level", "closed", "share", "target", "result"]);
    out.push_str("<tbody>");
    for (i, r) in rows.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(r.name),
            r.count,
            percent(r.count, closed),
            escape(r.target),
            mark(r.passes(closed))
        );
        // The community's target counts the grid and community levels together: their split
        // right under it.
        if i == 0 {
            for (name, level) in [
                ("of which grid", Level::Grid),
                ("of which community", Level::Community),
            ] {
                let n = f.closed_at_level.get(level).count;
                let _ = write!(
                    out,
                    "<tr class=\"eval-sub\"><th scope=\"row\">{name}</th><td>{n}</td><td>{}</td><td></td><td></td></tr>",
                    percent(n, closed)
                );
            }
        }
    }
    out.push_str("</tbody></table>\n");

    // Times.
    let t = &f.times;
    let steps: [(&str, &Durations); 4] = [
        ("to accepted", &t.accept),
        ("to dispatched", &t.dispatch),
        ("to resolved", &t.resolve),
        ("to closed", &t.close),
    ];
    out.push_str("<h2>Time from report</h2>\n");
    out.push_str(&times_chart(&steps));
    out.push_str("\n<table class=\"eval-times\"><caption>Time from report to the first event of each status (nearest-rank median and p90)</caption>");
    th_row(&mut out, &["step", "cases", "median", "p90"]);
    out.push_str("<tbody>");
    for (name, d) in steps {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{name}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            d.count,
            duration(d.median_ms),
            duration(d.p90_ms)
        );
    }
    out.push_str("</tbody></table>\n");

    // Statuses, evaluations.
    out.push_str("<h2>Status</h2>\n<table class=\"eval-status\"><caption>Incidents by current status</caption>");
    th_row(&mut out, &["status", "incidents"]);
    out.push_str("<tbody>");
    for s in Status::ALL {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{s}</th><td>{}</td></tr>",
            f.by_status.get(*s)
        );
    }
    let _ = writeln!(
        out,
        "<tr><th scope=\"row\">overdue</th><td>{}</td></tr></tbody></table>",
        f.overdue
    );
    let e = &st.evaluation;
    let _ = write!(
        out,
        "<h2>Evaluations</h2>\n<p>{} evaluated, mean score {}.</p>\n\
<table class=\"eval-verdicts\"><caption>Evaluations by verdict</caption>",
        e.count,
        e.mean_score.map_or("-".to_owned(), |m| format!("{m:.2}"))
    );
    th_row(&mut out, &["verdict", "incidents"]);
    out.push_str("<tbody>");
    for v in Verdict::ALL {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{v}</th><td>{}</td></tr>",
            e.by_verdict.get(*v)
        );
    }
    out.push_str("</tbody></table>\n");

    // Per grid.
    out.push_str("<h2>Per grid</h2>\n<table class=\"eval-grids\"><caption>Figures per grid (level shares of the grid's closed cases; median times from report)</caption>");
    th_row(
        &mut out,
        &[
            "grid",
            "incidents",
            "overdue",
            "closed",
            "community",
            "street",
            "district",
            "to accepted",
            "to closed",
        ],
    );
    out.push_str("<tbody>");
    let groups = st.groups.as_deref().unwrap_or(&[]);
    for g in groups {
        let gf = &g.figures;
        let (closed, rows) = level_rows(gf);
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{closed}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&g.key),
            gf.total,
            gf.overdue,
            percent(rows[0].count, closed),
            percent(rows[1].count, closed),
            percent(rows[2].count, closed),
            duration(gf.times.accept.median_ms),
            duration(gf.times.close.median_ms),
        );
    }
    if groups.is_empty() {
        out.push_str("<tr><td colspan=\"9\">no incidents</td></tr>");
    }
    out.push_str("</tbody></table>\n");

    // Per staff member.
    out.push_str("<h2>Per staff member</h2>\n<table class=\"eval-staff\"><caption>Reports made, cases assigned (staff:NAME) and of those resolved or closed</caption>");
    th_row(&mut out, &["name", "reports", "assigned", "handled"]);
    out.push_str("<tbody>");
    for m in &st.staff {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&m.name),
            m.reports,
            m.assigned,
            m.handled
        );
    }
    if st.staff.is_empty() {
        out.push_str("<tr><td colspan=\"4\">no staff</td></tr>");
    }
    out.push_str("</tbody></table>\n</section>\n");
    Ok(out)
}

/// The CSV columns of the `csv` download.
pub const CSV_COLUMNS: &[&str] = &[
    "section",
    "key",
    "total",
    "overdue",
    "closed",
    "closed_community",
    "closed_street",
    "closed_district",
    "community_share",
    "street_share",
    "district_share",
    "accept_median_ms",
    "accept_p90_ms",
    "dispatch_median_ms",
    "dispatch_p90_ms",
    "resolve_median_ms",
    "resolve_p90_ms",
    "close_median_ms",
    "close_p90_ms",
    "evaluated",
    "mean_score",
    "reports",
    "assigned",
    "handled",
];

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The figure cells of one `overall` or `grid` row (from `total` to `close_p90_ms`).
fn figure_cells(f: &Figures) -> Vec<String> {
    let (closed, rows) = level_rows(f);
    let share = |n: u64| opt((closed > 0).then(|| format!("{:.4}", n as f64 / closed as f64)));
    let mut cells = vec![
        f.total.to_string(),
        f.overdue.to_string(),
        closed.to_string(),
    ];
    cells.extend(rows.iter().map(|r| r.count.to_string()));
    cells.extend(rows.iter().map(|r| share(r.count)));
    let t = &f.times;
    for d in [&t.accept, &t.dispatch, &t.resolve, &t.close] {
        cells.push(opt(d.median_ms));
        cells.push(opt(d.p90_ms));
    }
    cells
}

fn csv(st: &Stats) -> Vec<u8> {
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(CSV_COLUMNS.iter().map(|c| (*c).to_owned()).collect());
    let empty = |n: usize| std::iter::repeat_n(String::new(), n);
    let mut overall = vec!["overall".to_owned(), "all".to_owned()];
    overall.extend(figure_cells(&st.figures));
    overall.push(st.evaluation.count.to_string());
    overall.push(opt(st.evaluation.mean_score));
    overall.extend(empty(3));
    line(overall);
    for g in st.groups.as_deref().unwrap_or(&[]) {
        let mut row = vec!["grid".to_owned(), csv_text(&g.key)];
        row.extend(figure_cells(&g.figures));
        row.extend(empty(5));
        line(row);
    }
    for m in &st.staff {
        let mut row = vec!["staff".to_owned(), csv_text(&m.name)];
        row.extend(empty(CSV_COLUMNS.len() - 5));
        row.extend([
            m.reports.to_string(),
            m.assigned.to_string(),
            m.handled.to_string(),
        ]);
        line(row);
    }
    out.into_bytes()
}

/// A download of the figures: `(content type, file name, bytes)`; `format` is `csv` or `json`.
/// The window is the query's ([`check`] it first to answer a bad one with an error: here a
/// bad bound counts as none, and any format but `json` is `csv`).
pub fn download(
    store: &Store,
    now_ms: u64,
    query: &EvalQuery,
    format: &str,
) -> Result<(&'static str, String, Vec<u8>), StoreError> {
    let (window, _) = window_or_all(query);
    let st = compute(store, now_ms, window)?;
    if format == "json" {
        let mut bytes = serde_json::to_vec_pretty(&st).unwrap_or_default();
        bytes.push(b'\n');
        return Ok(("application/json", "evaluation.json".to_owned(), bytes));
    }
    Ok((
        "text/csv; charset=utf-8",
        "evaluation.csv".to_owned(),
        csv(&st),
    ))
}

/// `(path under /assets/, content type, bytes)`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[(
    "evaluation/evaluation.css",
    "text/css; charset=utf-8",
    include_bytes!("../assets/evaluation/evaluation.css"),
)];

#[cfg(test)]
mod tests {
    use gridsync_core::{Category, Event, Hlc, IncidentId, NodeId, Payload, Report, Severity};

    use super::*;

    /// 2026-03-02T00:00:00Z.
    const T0: u64 = 1_772_409_600_000;
    const MIN: u64 = 60_000;

    /// One incident's events; sequence numbers start at `100 * n`, so no two incidents'
    /// events share an `(origin, seq)`.
    struct Case {
        id: IncidentId,
        grid: &'static str,
        events: Vec<Event>,
        seq: u64,
    }

    const RELAY: NodeId = NodeId([0xe2; 32]);

    impl Case {
        fn new(n: u8, grid: &'static str, reporter: &str, minute: u64) -> Self {
            let mut c = Self {
                id: IncidentId::new_v7(T0, [n; 10]),
                grid,
                events: Vec::new(),
                seq: u64::from(n) * 100,
            };
            c.push(
                NodeId([n; 32]),
                reporter,
                minute,
                Payload::Reported(Report {
                    category: Category::from_catalogue("garbage").expect("category"),
                    description: "d".into(),
                    location: None,
                    observed_at: None,
                    severity: Severity::Normal,
                }),
            );
            c
        }

        fn push(&mut self, origin: NodeId, author: &str, minute: u64, payload: Payload) {
            self.seq += 1;
            self.events.push(Event {
                origin,
                seq: self.seq,
                hlc: Hlc::new(T0 + minute * MIN, 0),
                incident: self.id,
                grid: self.grid.parse().expect("grid"),
                author: author.into(),
                payload,
                signature: None,
            });
        }

        fn relay(mut self, minute: u64, payload: Payload) -> Self {
            self.push(RELAY, "street-ops", minute, payload);
            self
        }

        fn status(self, minute: u64, status: Status) -> Self {
            self.relay(
                minute,
                Payload::StatusChanged {
                    status,
                    pred: vec![],
                },
            )
        }

        fn escalate(self, minute: u64, level: Level) -> Self {
            self.relay(
                minute,
                Payload::Escalated {
                    level,
                    reason: "r".into(),
                    pred: vec![],
                },
            )
        }
    }

    /// Four closed cases: two in the community (grid 03), one at the street, one at the
    /// district (grid 05); a fifth, assigned to the staff member `=sun-hao`, in progress.
    fn store() -> Store {
        let cases = vec![
            Case::new(1, "110101/002/014/03", "wang-li", 0)
                .status(10, Status::Accepted)
                .status(60, Status::Closed),
            Case::new(2, "110101/002/014/03", "wang-li", 0)
                .status(20, Status::Accepted)
                .escalate(21, Level::Community)
                .status(120, Status::Closed)
                .relay(
                    130,
                    Payload::Evaluated {
                        score: 4,
                        verdict: Verdict::Satisfied,
                        pred: vec![],
                    },
                ),
            Case::new(3, "110101/002/014/05", "zhao-min", 0)
                .status(30, Status::Accepted)
                .escalate(31, Level::Street)
                .status(180, Status::Closed),
            Case::new(4, "110101/002/014/05", "zhao-min", 600)
                .status(640, Status::Accepted)
                .escalate(641, Level::District)
                .status(840, Status::Closed),
            Case::new(5, "110101/002/014/05", "zhao-min", 700)
                .relay(
                    701,
                    Payload::Assigned {
                        assignee: "staff:=sun-hao".into(),
                        due: None,
                        pred: vec![],
                    },
                )
                .status(702, Status::InProgress),
        ];
        let mut store = Store::in_memory().expect("store");
        let events: Vec<Event> = cases.into_iter().flat_map(|c| c.events).collect();
        store.append(&events, &[], None).expect("append");
        store
    }

    const NOW: u64 = T0 + 10_000 * MIN;

    #[test]
    fn the_page_shows_the_figures_against_the_targets() {
        let store = store();
        let html = body(&store, NOW, &EvalQuery::default()).expect("body");
        assert!(html.contains("<strong>5</strong> incidents (all incidents held here)"));
        assert!(html.contains("4 cases closed"));
        // Community 2 of 4 = 50 %: fails 80-85; street 25 %: fails 10-15; district 25 %: fails.
        assert!(html.contains(
            "<tr><th scope=\"row\">community (grid + community)</th><td>2</td><td>50.0%</td><td>80-85%</td><td><span class=\"eval-fail\">"
        ));
        assert!(html.contains("<tr><th scope=\"row\">street</th><td>1</td><td>25.0%</td>"));
        assert!(html.contains("aria-label=\"Closed cases by level (4 closed): community (grid + community) 50.0% (target 80-85%)"));
        // To accepted: 10, 20, 30, 40 minutes: median (nearest rank) 20m, p90 40m.
        assert!(html.contains(
            "<tr><th scope=\"row\">to accepted</th><td>4</td><td>20m</td><td>40m</td></tr>"
        ));
        // To closed: 60, 120, 180, 240 minutes.
        assert!(html.contains(
            "<tr><th scope=\"row\">to closed</th><td>4</td><td>2h00m</td><td>4h00m</td></tr>"
        ));
        assert!(html.contains("<tr><th scope=\"row\">closed</th><td>4</td></tr>"));
        assert!(html.contains("<tr><th scope=\"row\">in_progress</th><td>1</td></tr>"));
        assert!(html.contains("1 evaluated, mean score 4.00"));
        assert!(html.contains(
            "<tr><th scope=\"row\">110101/002/014/03</th><td>2</td><td>0</td><td>2</td><td>100.0%</td>"
        ));
        assert!(
            html.contains("<tr><th scope=\"row\">=sun-hao</th><td>0</td><td>1</td><td>0</td></tr>")
        );
        assert!(
            html.contains("<tr><th scope=\"row\">wang-li</th><td>2</td><td>0</td><td>0</td></tr>")
        );
        assert!(!html.contains("<script"), "no script at all");
        assert!(html.contains("href=\"/evaluation.csv\""));
    }

    #[test]
    fn the_window_selects_and_a_bad_one_is_reported() {
        let store = store();
        let q = EvalQuery {
            since: Some("2026-03-02T10:00:00Z".into()),
            until: None,
        };
        let html = body(&store, NOW, &q).expect("body");
        assert!(
            html.contains("<strong>2</strong> incidents (reported from 2026-03-02T10:00:00.000Z)")
        );
        assert!(html.contains("1 cases closed"));
        assert!(html.contains("value=\"2026-03-02T10:00:00Z\""));
        assert!(html.contains("href=\"/evaluation.csv?since=2026-03-02T10:00:00Z\""));
        // The district's one closed case: 100 % at the district, a fail.
        assert!(html.contains("<tr><th scope=\"row\">district</th><td>1</td><td>100.0%</td><td>under 5%</td><td><span class=\"eval-fail\">"));
        let bad = EvalQuery {
            since: Some("\"><b>soon".into()),
            until: None,
        };
        let html = body(&store, NOW, &bad).expect("body");
        assert!(html
            .contains("role=\"alert\">since: &quot;\\&quot;&gt;&lt;b&gt;soon&quot; is not a time"));
        assert!(!html.contains("<b>"));
        assert!(html.contains("<strong>5</strong> incidents"));
        let reversed = EvalQuery {
            since: Some("2026-03-03".into()),
            until: Some("2026-03-02".into()),
        };
        assert_eq!(reversed.window(), Err("since must be before until".into()));
        assert!(check(&EvalQuery::default(), "xlsx").is_err());
        assert!(check(&bad, "csv").is_err());
        assert!(check(&q, "json").is_ok());
    }

    #[test]
    fn targets_pass_within_their_bands() {
        let row = |count, lo, hi, hi_open| LevelRow {
            name: "x",
            count,
            lo,
            hi,
            hi_open,
            target: "",
        };
        assert_eq!(row(80, 80.0, 85.0, false).passes(100), Some(true));
        assert_eq!(row(85, 80.0, 85.0, false).passes(100), Some(true));
        assert_eq!(row(86, 80.0, 85.0, false).passes(100), Some(false));
        assert_eq!(row(4, 0.0, 5.0, true).passes(100), Some(true));
        assert_eq!(row(5, 0.0, 5.0, true).passes(100), Some(false));
        assert_eq!(row(0, 0.0, 5.0, true).passes(0), None);
    }

    #[test]
    fn the_json_download_is_the_stats_json() {
        let store = store();
        let (ty, name, bytes) = download(&store, NOW, &EvalQuery::default(), "json").expect("json");
        assert_eq!((ty, name.as_str()), ("application/json", "evaluation.json"));
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let expected =
            serde_json::to_value(compute(&store, NOW, Window::default()).expect("stats"))
                .expect("value");
        assert_eq!(v, expected);
        assert_eq!(v["by"], "grid");
        assert_eq!(v["total"], 5);
        assert_eq!(v["closed_at_level"]["district"]["count"], 1);
    }

    #[test]
    fn the_csv_download_has_the_overall_grid_and_staff_rows() {
        let store = store();
        let (ty, name, bytes) = download(&store, NOW, &EvalQuery::default(), "csv").expect("csv");
        assert_eq!(ty, "text/csv; charset=utf-8");
        assert_eq!(name, "evaluation.csv");
        let text = String::from_utf8(bytes).expect("utf-8");
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.last(), Some(&""), "CRLF after every row");
        let rows: Vec<Vec<&str>> = lines[..lines.len() - 1]
            .iter()
            .map(|l| l.split(',').collect())
            .collect();
        for r in &rows {
            assert_eq!(r.len(), CSV_COLUMNS.len(), "{r:?}");
        }
        assert_eq!(rows[0], CSV_COLUMNS);
        let col = |r: &Vec<&str>, name: &str| {
            r[CSV_COLUMNS.iter().position(|c| *c == name).expect("column")].to_owned()
        };
        let overall = &rows[1];
        assert_eq!(col(overall, "section"), "overall");
        assert_eq!(col(overall, "total"), "5");
        assert_eq!(col(overall, "closed"), "4");
        assert_eq!(col(overall, "community_share"), "0.5000");
        assert_eq!(col(overall, "accept_median_ms"), (20 * MIN).to_string());
        assert_eq!(col(overall, "mean_score"), "4");
        let grid = rows
            .iter()
            .find(|r| r[1] == "110101/002/014/05")
            .expect("grid row");
        assert_eq!(col(grid, "section"), "grid");
        assert_eq!(col(grid, "total"), "3");
        assert_eq!(col(grid, "district_share"), "0.5000");
        let staff = rows.iter().find(|r| r[0] == "staff" && r[1] == "'=sun-hao");
        let staff = staff.expect("staff row, defused");
        assert_eq!(col(staff, "assigned"), "1");
        assert_eq!(col(staff, "total"), "");
    }
}
