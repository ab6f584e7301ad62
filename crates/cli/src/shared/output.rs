//! Human-readable renderings of the incident JSON.

use std::fmt::Write;

use gridsync_core::IncidentView;

fn clip(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.pop();
        out.push('…');
    }
    out
}

/// One line per incident.
pub fn table(views: &[IncidentView]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36}  {:<17}  {:<11}  {:<9}  {:<15}  {:>6}  {:<9}  DESCRIPTION",
        "ID", "GRID", "STATUS", "LEVEL", "CATEGORY", "PHOTOS", "CONFLICTS"
    );
    for v in views {
        let _ = writeln!(
            out,
            "{:<36}  {:<17}  {:<11}  {:<9}  {:<15}  {:>6}  {:<9}  {}",
            v.id,
            v.grid.as_deref().unwrap_or("-"),
            v.status,
            v.level,
            v.category.as_deref().unwrap_or("-"),
            v.photos.len(),
            v.conflicts.len(),
            clip(v.description.as_deref().unwrap_or("-"), 40),
        );
    }
    if views.is_empty() {
        out.push_str("(no incidents)\n");
    }
    out
}

/// A whole incident.
pub fn detail(v: &IncidentView) -> String {
    let mut out = String::new();
    let none = "-";
    let _ = writeln!(out, "incident    {}", v.id);
    let _ = writeln!(out, "grid        {}", v.grid.as_deref().unwrap_or(none));
    let _ = writeln!(out, "reporter    {}", v.reporter.as_deref().unwrap_or(none));
    let _ = writeln!(out, "category    {}", v.category.as_deref().unwrap_or(none));
    let _ = writeln!(
        out,
        "description {}",
        v.description.as_deref().unwrap_or(none)
    );
    let _ = writeln!(out, "severity    {}", v.severity.unwrap_or(none));
    let _ = writeln!(out, "status      {}", v.status);
    let _ = writeln!(
        out,
        "level       {}{}",
        v.level,
        v.level_reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "assignee    {}{}",
        v.assignee.as_deref().unwrap_or(none),
        v.due_at
            .as_ref()
            .map(|d| format!(", due {d}"))
            .unwrap_or_default()
    );
    if let Some(score) = v.score {
        let _ = writeln!(out, "evaluation  {score}/5 {}", v.verdict.unwrap_or(""));
    }
    match &v.location {
        Some(l) => {
            let _ = writeln!(out, "location    {:.6}, {:.6} ({})", l.lat, l.lon, l.source);
        }
        None => {
            let _ = writeln!(out, "location    {none}");
        }
    }
    if let Some(t) = &v.observed_at {
        let _ = writeln!(out, "observed    {t}");
    }
    let _ = writeln!(
        out,
        "created     {}",
        v.created_at.as_deref().unwrap_or(none)
    );
    let _ = writeln!(
        out,
        "updated     {} ({} events)",
        v.updated_at.as_deref().unwrap_or(none),
        v.event_count
    );
    for p in &v.photos {
        let _ = writeln!(
            out,
            "photo       {} {} {}x{} {} bytes",
            p.hash, p.kind, p.width, p.height, p.bytes
        );
    }
    for c in &v.comments {
        let _ = writeln!(out, "comment     {} {}: {}", c.at, c.author, c.text);
    }
    for c in &v.conflicts {
        let _ = writeln!(
            out,
            "CONFLICT    {}: kept {} over {} by {}",
            c.field, c.kept, c.lost, c.lost_by
        );
    }
    out
}
