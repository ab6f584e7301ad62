//! The server-rendered pages: the layout, the login form, the incident list (and its rows,
//! re-fetched live), the detail page with its history and action forms, the big screen.
//! Every value from the store or the request is escaped ([`escape`]); no inline script.

use std::fmt::Write as _;

use gridsync_core::{IncidentState, Level, Status, Verdict};
use gridsync_relay::verify::{Signer, Verification};

use crate::auth::{allows, Action, Session};
use crate::html::escape;

/// The page around a body: head, nav (with the operator and logout), main.
pub(crate) fn layout(
    title: &str,
    session: Option<&Session>,
    body_class: &str,
    body: &str,
) -> String {
    let nav = match session {
        Some(s) => format!(
            r#"<header class="top"><a class="brand" href="/">gridsync console</a>
<nav><a href="/">Incidents</a><a href="/screen">Big screen</a><a href="/map">Map</a><a href="/evaluation">Evaluation</a><a href="/export">Export</a></nav>
<div class="who"><span class="operator" data-operator="{name}">{name}</span> <span class="role">{role}</span>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" class="link">Log out</button></form></div></header>"#,
            name = escape(&s.operator),
            role = s.role,
            csrf = escape(&s.csrf),
        ),
        None => String::new(),
    };
    let csrf_meta = session
        .map(|s| format!(r#"<meta name="csrf-token" content="{}">"#, escape(&s.csrf)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · gridsync</title>{csrf_meta}
<link rel="stylesheet" href="/assets/console.css"><script src="/assets/console.js" defer></script></head>
<body class="{body_class}">{nav}<main>{body}</main></body></html>"#,
        title = escape(title),
    )
}

/// A page that only says something (errors, refusals).
pub(crate) fn message(title: &str, text: &str, session: Option<&Session>) -> String {
    layout(
        title,
        session,
        "message",
        &format!(
            r#"<section class="card"><h1>{}</h1><p class="error-text">{}</p><p><a href="/">Back to the incidents</a></p></section>"#,
            escape(title),
            escape(text)
        ),
    )
}

/// The login form.
pub(crate) fn login(next: &str, csrf: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="flash error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    layout(
        "Log in",
        None,
        "login",
        &format!(
            r#"<section class="card login-card"><h1>gridsync console</h1>{error}
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">
<label>Name <input name="name" id="name" autocomplete="username" required autofocus></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="login">Log in</button></form></section>"#,
            csrf = escape(csrf),
            next = escape(next),
        ),
    )
}

/// Milliseconds as a short age: `45 s`, `12 min`, `3 h`, `2 d`.
pub(crate) fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

/// An incident id's short form: its last 8 characters (a UUIDv7 begins with its time, so
/// incidents reported close together share their first characters, never their last).
pub(crate) fn short_id(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

/// When an incident was reported (its report's, or its first event's, wall clock).
pub(crate) fn created_ms(s: &IncidentState) -> u64 {
    s.report
        .as_ref()
        .map(|r| r.stamp.hlc.wall_ms)
        .or(s.first.as_ref().map(|(st, _)| st.hlc.wall_ms))
        .unwrap_or(0)
}

/// The list's filters (the URL's query).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub grid: Option<String>,
    #[serde(default)]
    pub overdue: Option<String>,
    #[serde(default)]
    pub q: Option<String>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ListQuery {
    /// Whether `s` passes the filters at `now_ms`.
    pub(crate) fn matches(&self, s: &IncidentState, now_ms: u64) -> bool {
        if set(&self.status).is_some_and(|st| s.status().as_str() != st) {
            return false;
        }
        if set(&self.level).is_some_and(|l| s.level().as_str() != l) {
            return false;
        }
        if let Some(c) = set(&self.category) {
            if s.category.value().map(|v| v.as_str()) != Some(c) {
                return false;
            }
        }
        if let Some(g) = set(&self.grid) {
            if !s.grid().is_some_and(|grid| grid.as_str().starts_with(g)) {
                return false;
            }
        }
        if set(&self.overdue).is_some_and(|o| o == "1") && !s.is_overdue(now_ms as i64) {
            return false;
        }
        if let Some(q) = set(&self.q) {
            let q = q.to_lowercase();
            if !s
                .description
                .value()
                .is_some_and(|d| d.to_lowercase().contains(&q))
            {
                return false;
            }
        }
        true
    }
}

/// The incidents `query` selects, newest first.
pub(crate) fn select(
    mut all: Vec<IncidentState>,
    query: &ListQuery,
    now_ms: u64,
) -> Vec<IncidentState> {
    all.retain(|s| query.matches(s, now_ms));
    all.sort_by(|a, b| created_ms(b).cmp(&created_ms(a)).then(b.id.cmp(&a.id)));
    all
}

/// The rows of the incident list (the fragment the page's script re-fetches).
pub(crate) fn rows(incidents: &[IncidentState], now_ms: u64) -> String {
    let mut out = String::new();
    if incidents.is_empty() {
        out.push_str(r#"<tr class="empty"><td colspan="10">No incidents match.</td></tr>"#);
    }
    for s in incidents {
        let v = s.view();
        let id = s.id.to_string();
        let thumb = s
            .visible_photos()
            .first()
            .map(|p| format!("/blob/{}?thumb=1", p.meta.hash.to_hex()))
            .unwrap_or_else(|| "/assets/placeholder.svg".to_owned());
        let overdue = s.is_overdue(now_ms as i64);
        let _ = write!(
            out,
            r#"<tr data-incident="{id}" class="status-{status}{od}"><td class="thumb"><a href="/incident/{id}"><img src="{thumb}" alt="" width="64" height="64" loading="lazy"></a></td>
<td><a href="/incident/{id}" class="mono">{short}</a></td><td>{category}<div class="excerpt">{excerpt}</div></td><td><span class="badge status-{status}">{status}</span></td><td>{level}</td><td>{assignee}</td><td>{severity}</td><td>{grid}</td><td>{age}</td><td>{mark}</td></tr>
"#,
            short = escape(short_id(&id)),
            category = escape(v.category.as_deref().unwrap_or("–")),
            excerpt = escape(
                &v.description
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(60)
                    .collect::<String>()
            ),
            status = v.status,
            level = v.level,
            assignee = escape(v.assignee.as_deref().unwrap_or("–")),
            severity = v.severity.unwrap_or("–"),
            grid = escape(v.grid.as_deref().unwrap_or("–")),
            age = age(now_ms.saturating_sub(created_ms(s))),
            od = if overdue { " overdue" } else { "" },
            mark = if overdue {
                r#"<span class="badge overdue-mark" title="past its due time">overdue</span>"#
            } else {
                ""
            },
        );
    }
    out
}

fn options(values: &[&str], selected: Option<&str>, any: &str) -> String {
    let mut out = format!(r#"<option value="">{any}</option>"#);
    for v in values {
        let sel = if selected == Some(*v) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<option value="{v}"{sel}>{v}</option>"#,
            v = escape(v)
        );
    }
    out
}

/// The incident list page.
pub(crate) fn list(session: &Session, query: &ListQuery, rows_html: &str, count: usize) -> String {
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let levels: Vec<&str> = Level::ALL.iter().map(|s| s.as_str()).collect();
    let categories: Vec<&str> = gridsync_core::event::CATEGORY_CATALOGUE
        .iter()
        .map(|(c, _)| *c)
        .collect();
    let body = format!(
        r#"<h1>Incidents <span class="count" id="incident-count">{count}</span></h1>
<form class="filters" method="get" action="/">
<label>Status <select name="status">{status}</select></label>
<label>Level <select name="level">{level}</select></label>
<label>Category <select name="category">{category}</select></label>
<label>Grid <input name="grid" value="{grid}" placeholder="110101/002"></label>
<label>Text <input name="q" value="{q}" placeholder="in description"></label>
<label class="check"><input type="checkbox" name="overdue" value="1"{overdue}> Overdue only</label>
<button type="submit">Filter</button> <a href="/">Clear</a></form>
<table class="incidents"><thead><tr><th></th><th>Id</th><th>Category</th><th>Status</th><th>Level</th><th>Assignee</th><th>Severity</th><th>Grid</th><th>Age</th><th></th></tr></thead>
<tbody id="incident-rows" data-live="list">{rows_html}</tbody></table>
<p class="live-note" id="live-state">Live: the list updates as events commit.</p>"#,
        status = options(&statuses, set(&query.status), "any"),
        level = options(&levels, set(&query.level), "any"),
        category = options(&categories, set(&query.category), "any"),
        grid = escape(set(&query.grid).unwrap_or("")),
        q = escape(set(&query.q).unwrap_or("")),
        overdue = if set(&query.overdue) == Some("1") {
            " checked"
        } else {
            ""
        },
    );
    layout("Incidents", Some(session), "list", &body)
}

/// One event of the history, as the detail page shows it.
pub(crate) struct HistoryRow {
    pub at_ms: u64,
    pub kind: &'static str,
    pub author: String,
    pub origin: String,
    pub node_short: String,
    pub signature: &'static str,
    pub summary: String,
}

/// The history rows of `verification` with the events' times and summaries.
pub(crate) fn history(
    events: &[gridsync_core::Event],
    verification: &Verification,
) -> Vec<HistoryRow> {
    use gridsync_core::Payload;
    let mut out = Vec::new();
    for check in &verification.events {
        let Some(e) = events
            .iter()
            .find(|e| e.origin == check.origin && e.seq == check.seq)
        else {
            continue;
        };
        let origin = match &check.signer {
            Signer::ThisRelay => "this relay".to_owned(),
            Signer::Peer { role, revoked, .. } => {
                format!(
                    "enrolled {}{}",
                    role.as_str(),
                    if *revoked { " (revoked)" } else { "" }
                )
            }
            Signer::Vouched { role, .. } => format!("{} enrolled below", role.as_str()),
            Signer::NotEnrolledHere => "not enrolled here".to_owned(),
        };
        let summary = match &e.payload {
            Payload::Reported(r) => format!(
                "{} · {}",
                r.category.as_str(),
                r.description.chars().take(80).collect::<String>()
            ),
            Payload::Edited { value, .. } => format!("{value:?}").chars().take(100).collect(),
            Payload::PhotoAdded(m) => format!("{} photo", m.kind.as_str()),
            Payload::PhotoRemoved { .. } => "photo removed".to_owned(),
            Payload::StatusChanged { status, .. } => format!("status → {status}"),
            Payload::Escalated { level, reason, .. } => format!("level → {level}: {reason}"),
            Payload::Assigned { assignee, due, .. } => match due {
                Some(d) => format!("→ {assignee}, due {}", gridsync_core::view::rfc3339(*d)),
                None => format!("→ {assignee}"),
            },
            Payload::Commented { text } => text.chars().take(100).collect(),
            Payload::Evaluated { score, verdict, .. } => format!("score {score}, {verdict}"),
            Payload::StaffSet(_) | Payload::StaffRemoved { .. } => String::new(),
        };
        out.push(HistoryRow {
            at_ms: e.hlc.wall_ms,
            kind: check.kind,
            author: check.author.clone(),
            origin,
            node_short: check.origin.short(),
            signature: check.status.as_str(),
            summary,
        });
    }
    out.sort_by_key(|r| r.at_ms);
    out
}

/// What the detail page needs besides the incident.
pub(crate) struct Detail<'a> {
    pub state: &'a IncidentState,
    pub history: Vec<HistoryRow>,
    pub staff: Vec<String>,
    pub flash: Option<(bool, String)>,
}

fn action_form(
    id: &str,
    action: Action,
    csrf: &str,
    label: &str,
    fields: &str,
    class: &str,
) -> String {
    format!(
        r#"<form method="post" action="/incident/{id}/{name}" class="action {class}" data-action="{name}"><input type="hidden" name="csrf" value="{csrf}">{fields}<button type="submit" id="do-{name}">{label}</button></form>"#,
        name = action.as_str(),
        csrf = escape(csrf),
    )
}

/// The incident detail page.
pub(crate) fn detail(session: &Session, d: &Detail<'_>) -> String {
    let s = d.state;
    let v = s.view();
    let id = s.id.to_string();
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<p><a href="/">← Incidents</a></p><h1>{category} <span class="mono small">{id}</span></h1>"#,
        category = escape(v.category.as_deref().unwrap_or("incident")),
        id = escape(&id),
    );
    if let Some((ok, text)) = &d.flash {
        let _ = write!(
            body,
            r#"<p class="flash {}" role="alert" id="flash">{}</p>"#,
            if *ok { "ok" } else { "error" },
            escape(text)
        );
    }
    // Photos, before and after.
    body.push_str(r#"<section class="photos">"#);
    for p in s.visible_photos() {
        let _ = write!(
            body,
            r#"<figure class="photo {kind}"><a href="/blob/{h}"><img src="/blob/{h}" alt="{kind} photo" loading="lazy"></a><figcaption>{kind} · {w}×{hgt}</figcaption></figure>"#,
            kind = p.meta.kind.as_str(),
            h = p.meta.hash.to_hex(),
            w = p.meta.width,
            hgt = p.meta.height,
        );
    }
    if s.visible_photos().is_empty() {
        body.push_str(r#"<p class="muted">No photos.</p>"#);
    }
    body.push_str("</section>");
    // Fields.
    let location = v
        .location
        .as_ref()
        .map(|l| format!("{:.6}, {:.6} ({})", l.lat, l.lon, l.source))
        .unwrap_or_else(|| "–".into());
    let fields: Vec<(&str, String)> = vec![
        ("Status", v.status.to_owned()),
        ("Level", v.level.to_owned()),
        ("Level reason", v.level_reason.clone().unwrap_or_default()),
        ("Assignee", v.assignee.clone().unwrap_or_default()),
        ("Due", v.due_at.clone().unwrap_or_default()),
        ("Severity", v.severity.unwrap_or("").to_owned()),
        ("Grid", v.grid.clone().unwrap_or_default()),
        ("Description", v.description.clone().unwrap_or_default()),
        ("Location", location),
        ("Reporter", v.reporter.clone().unwrap_or_default()),
        ("Observed", v.observed_at.clone().unwrap_or_default()),
        ("Reported", v.created_at.clone().unwrap_or_default()),
        ("Updated", v.updated_at.clone().unwrap_or_default()),
        (
            "Evaluation",
            v.score
                .map(|sc| format!("{sc} ({})", v.verdict.unwrap_or("")))
                .unwrap_or_default(),
        ),
    ];
    body.push_str(r#"<section class="card"><h2>Fields</h2><dl class="fields">"#);
    for (k, val) in fields {
        let _ = write!(
            body,
            r#"<dt>{k}</dt><dd data-field="{key}">{}</dd>"#,
            escape(if val.is_empty() { "–" } else { &val }),
            key = k.to_lowercase().replace(' ', "-"),
        );
    }
    body.push_str("</dl></section>");
    // Conflicts.
    if !v.conflicts.is_empty() {
        body.push_str(r#"<section class="card conflicts"><h2>Conflicts</h2><p class="muted">Concurrent writes: the kept value wins by time; settle by writing one of them as a new edit.</p><table><thead><tr><th>Field</th><th>Kept</th><th>Other</th><th>Other by</th><th></th></tr></thead><tbody>"#);
        let settle = allows(session.role, Action::Settle);
        for c in &v.conflicts {
            let settleable = matches!(
                c.field,
                "description" | "category" | "severity" | "location" | "assignee"
            );
            let forms = if settle && settleable {
                [("kept", &c.kept), ("other", &c.lost)]
                    .iter()
                    .map(|(which, value)| {
                        action_form(
                            &id,
                            Action::Settle,
                            &session.csrf,
                            &format!("Keep {which}"),
                            &format!(
                                r#"<input type="hidden" name="field" value="{}"><input type="hidden" name="value" value="{}">"#,
                                c.field,
                                escape(&value.to_string())
                            ),
                            "inline",
                        )
                    })
                    .collect::<String>()
            } else {
                String::new()
            };
            let _ = write!(
                body,
                r#"<tr data-conflict="{f}"><td>{f}</td><td>{kept}</td><td>{lost}</td><td>{by}</td><td>{forms}</td></tr>"#,
                f = c.field,
                kept = escape(&c.kept.to_string()),
                lost = escape(&c.lost.to_string()),
                by = escape(&c.lost_by),
            );
        }
        body.push_str("</tbody></table></section>");
    }
    // Actions.
    let mut actions = String::new();
    let csrf = &session.csrf;
    let may = |a| allows(session.role, a);
    if may(Action::Accept) {
        actions.push_str(&action_form(
            &id,
            Action::Accept,
            csrf,
            "Accept",
            "",
            "inline",
        ));
    }
    if may(Action::Reject) {
        actions.push_str(&action_form(
            &id,
            Action::Reject,
            csrf,
            "Reject",
            "",
            "inline",
        ));
    }
    for (a, label) in [
        (Action::Resolve, "Resolve"),
        (Action::Verify, "Verify"),
        (Action::Close, "Close"),
    ] {
        if may(a) {
            actions.push_str(&action_form(&id, a, csrf, label, "", "inline"));
        }
    }
    if may(Action::Dispatch) {
        let forces: Vec<&str> = gridsync_core::Force::ALL
            .iter()
            .map(|f| f.as_str())
            .collect();
        let staff: Vec<&str> = d.staff.iter().map(String::as_str).collect();
        actions.push_str(&action_form(
            &id,
            Action::Dispatch,
            csrf,
            "Dispatch",
            &format!(
                r#"<fieldset><legend>Dispatch to one of</legend>
<label>Department <input name="department" id="dispatch-department" placeholder="sanitation"></label>
<label>Force of the grid <select name="force">{}</select></label>
<label>Staff member <select name="staff">{}</select></label>
<label>Due (UTC) <input type="datetime-local" name="due" id="dispatch-due"></label></fieldset>"#,
                options(&forces, None, "–"),
                options(&staff, None, "–"),
            ),
            "block",
        ));
    }
    if may(Action::Escalate) {
        let levels: Vec<&str> = Level::ALL.iter().map(|s| s.as_str()).collect();
        actions.push_str(&action_form(
            &id,
            Action::Escalate,
            csrf,
            "Escalate",
            &format!(
                r#"<label>Level <select name="level" required>{}</select></label><label>Reason <input name="reason"></label>"#,
                options(&levels, None, "–")
            ),
            "block",
        ));
    }
    if may(Action::Evaluate) {
        let verdicts: Vec<&str> = Verdict::ALL.iter().map(|s| s.as_str()).collect();
        actions.push_str(&action_form(
            &id,
            Action::Evaluate,
            csrf,
            "Evaluate",
            &format!(
                r#"<label>Score <select name="score" required>{}</select></label><label>Verdict <select name="verdict">{}</select></label>"#,
                options(&["1", "2", "3", "4", "5"], None, "–"),
                options(&verdicts, None, "from the score"),
            ),
            "block",
        ));
    }
    if may(Action::Comment) {
        actions.push_str(&action_form(
            &id,
            Action::Comment,
            csrf,
            "Comment",
            r#"<label>Comment <textarea name="text" rows="2" required></textarea></label>"#,
            "block",
        ));
    }
    if actions.is_empty() {
        actions.push_str(r#"<p class="muted">Your role only reads.</p>"#);
    }
    let _ = write!(
        body,
        r#"<section class="card actions"><h2>Actions</h2>{actions}</section>"#
    );
    // Comments.
    if !v.comments.is_empty() {
        body.push_str(r#"<section class="card"><h2>Comments</h2><ul class="comments">"#);
        for c in &v.comments {
            let _ = write!(
                body,
                "<li><b>{}</b> <span class=\"muted\">{}</span><br>{}</li>",
                escape(&c.author),
                escape(&c.at),
                escape(&c.text)
            );
        }
        body.push_str("</ul></section>");
    }
    // History.
    body.push_str(r#"<section class="card"><h2>History</h2><table class="history"><thead><tr><th>Time (UTC)</th><th>Kind</th><th>Author</th><th>Origin</th><th>Signature</th><th>What</th></tr></thead><tbody>"#);
    for h in &d.history {
        let _ = write!(
            body,
            r#"<tr data-kind="{kind}" data-author="{author}" data-signature="{sig}"><td>{at}</td><td>{kind}</td><td>{author}</td><td>{origin} <span class="mono">{node}</span></td><td class="sig-{sig}">{sig}</td><td>{what}</td></tr>"#,
            at = escape(&gridsync_core::view::rfc3339(h.at_ms as i64)),
            kind = h.kind,
            author = escape(&h.author),
            origin = escape(&h.origin),
            node = escape(&h.node_short),
            sig = h.signature,
            what = escape(&h.summary),
        );
    }
    body.push_str("</tbody></table></section>");
    layout(
        &format!("Incident {}", short_id(&id)),
        Some(session),
        "detail",
        &body,
    )
}

/// The big screen's page (filled and kept live by the script from `/api/screen`).
pub(crate) fn screen(session: &Session) -> String {
    layout(
        "Big screen",
        Some(session),
        "screen",
        r#"<div class="screen-grid" data-live="screen">
<section class="newest"><img id="newest-photo" alt="" src="/assets/placeholder.svg"><div class="caption"><h2 id="newest-category">–</h2><p id="newest-description"></p><p class="muted"><span id="newest-grid"></span> · <span id="newest-age"></span></p></div></section>
<aside class="side"><div class="counters">
<div class="counter"><span class="n" data-counter="today" id="count-today">–</span><span class="l">reported today</span></div>
<div class="counter"><span class="n" data-counter="open" id="count-open">–</span><span class="l">open</span></div>
<div class="counter overdue"><span class="n" data-counter="overdue" id="count-overdue">–</span><span class="l">overdue</span></div></div>
<h3>Recent events</h3><ul class="ticker" id="ticker"></ul></aside></div>"#,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(age(5_000), "5 s");
        assert_eq!(age(120_000), "2 min");
        assert_eq!(age(3 * 3600 * 1000), "3 h");
        assert_eq!(age(49 * 3600 * 1000), "2 d");
        assert_eq!(short_id("01a233ba-1d0f-7217-b4db-60492d5f73fe"), "2d5f73fe");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn the_layout_escapes_and_has_no_inline_script() {
        let page = message("<x>", "a \"b\"", None);
        assert!(page.contains("&lt;x&gt;"));
        assert!(!page.contains("<script>"));
        assert!(page.contains(r#"<script src="/assets/console.js" defer></script>"#));
    }
}
