//! The statistics table both command lines print: `gridsync-relay stats` and the demo's
//! closing figures.

use std::fmt::Write as _;

use gridsync_core::{Level, Status, Verdict};
use gridsync_relay::stats::{
    duration_text as duration, percent_text as percent, ClosedAtLevel, Durations, Stats,
};

fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms"),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

fn level_lines(out: &mut String, levels: &ClosedAtLevel) {
    let closed = levels.closed();
    let count = |l| levels.get(l).count;
    let community = count(Level::Grid) + count(Level::Community);
    let _ = writeln!(
        out,
        "{:<36} {:>5}  {:>6}   target",
        format!("closed at level ({closed} closed)"),
        "count",
        "share"
    );
    let mut line = |name: &str, n: u64, target: &str| {
        let row = format!("  {name:<34} {n:>5}  {:>6}   {target}", percent(n, closed));
        let _ = writeln!(out, "{}", row.trim_end());
    };
    line("the community (grid + community)", community, "80-85%");
    line("  grid", count(Level::Grid), "");
    line("  community", count(Level::Community), "");
    line("street", count(Level::Street), "10-15%");
    line("district", count(Level::District), "under 5%");
    let _ = writeln!(
        out,
        "  (the target counts cases closed at grid and at community level together as \"the community\")"
    );
}

fn times_lines(out: &mut String, stats: &Stats) {
    let t = &stats.figures.times;
    let _ = writeln!(out, "time from report           count   median      p90");
    let rows: [(&str, &Durations); 4] = [
        ("to accepted", &t.accept),
        ("to dispatched", &t.dispatch),
        ("to resolved", &t.resolve),
        ("to closed", &t.close),
    ];
    for (name, d) in rows {
        let _ = writeln!(
            out,
            "  {name:<22} {:>7} {:>8} {:>8}",
            d.count,
            duration(d.median_ms),
            duration(d.p90_ms)
        );
    }
    let _ = writeln!(
        out,
        "  (to the first event to that status; median and p90 are nearest-rank)"
    );
}

/// The readable rendering.
pub fn table(stats: &Stats) -> String {
    let mut out = String::new();
    let f = &stats.figures;
    let window = match (stats.window.since_ms, stats.window.until_ms) {
        (None, None) => "all held here".to_owned(),
        (Some(s), None) => format!("reported from {}", time(s)),
        (None, Some(u)) => format!("reported before {}", time(u)),
        (Some(s), Some(u)) => format!("reported from {} to before {}", time(s), time(u)),
    };
    let _ = writeln!(out, "incidents   {} ({window})", f.total);
    let statuses: Vec<String> = Status::ALL
        .iter()
        .map(|s| format!("{s} {}", f.by_status.get(*s)))
        .collect();
    let _ = writeln!(out, "status      {}", statuses.join(", "));
    let _ = writeln!(
        out,
        "overdue     {} (dispatched or in progress past their due time, now)",
        f.overdue
    );
    let categories: Vec<String> = stats
        .by_category
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "categories  {}",
        if categories.is_empty() {
            "-".to_owned()
        } else {
            categories.join(", ")
        }
    );
    let e = &stats.evaluation;
    let verdicts: Vec<String> = Verdict::ALL
        .iter()
        .map(|v| format!("{v} {}", e.by_verdict.get(*v)))
        .collect();
    let _ = writeln!(
        out,
        "evaluated   {}, mean score {}: {}",
        e.count,
        e.mean_score.map_or("-".to_owned(), |m| format!("{m:.2}")),
        verdicts.join(", ")
    );
    out.push('\n');
    level_lines(&mut out, &f.closed_at_level);
    out.push('\n');
    times_lines(&mut out, stats);
    out.push('\n');
    let _ = writeln!(out, "staff                      reports  assigned  handled");
    for m in &stats.staff {
        let _ = writeln!(
            out,
            "  {:<24} {:>7} {:>9} {:>8}",
            m.name, m.reports, m.assigned, m.handled
        );
    }
    if stats.staff.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(
        out,
        "  (assigned: assignee staff:NAME; handled: of those, resolved or closed)"
    );
    if let (Some(by), Some(groups)) = (stats.by, &stats.groups) {
        out.push('\n');
        let _ = writeln!(
            out,
            "by {:<20} {:>5} {:>7} {:>8} {:>7} {:>7} {:>9} {:>8} {:>8}",
            by.as_str(),
            "total",
            "overdue",
            "closed",
            "grid+c",
            "street",
            "district",
            "accept",
            "close"
        );
        for g in groups {
            let g_f = &g.figures;
            let levels = &g_f.closed_at_level;
            let closed = levels.closed();
            let count = |l| levels.get(l).count;
            let _ = writeln!(
                out,
                "  {:<21} {:>5} {:>7} {:>8} {:>7} {:>7} {:>9} {:>8} {:>8}",
                g.key,
                g_f.total,
                g_f.overdue,
                closed,
                percent(count(Level::Grid) + count(Level::Community), closed),
                percent(count(Level::Street), closed),
                percent(count(Level::District), closed),
                duration(g_f.times.accept.median_ms),
                duration(g_f.times.close.median_ms),
            );
        }
        if groups.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        let _ = writeln!(
            out,
            "  (level shares of the group's closed cases; accept, close: median time from report)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(45_000)), "45s");
        assert_eq!(duration(Some(12 * 60_000)), "12m");
        assert_eq!(duration(Some(3 * 3_600_000 + 5 * 60_000)), "3h05m");
        assert_eq!(duration(Some(2 * 86_400_000 + 4 * 3_600_000)), "2d04h");
    }
}
