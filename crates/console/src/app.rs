//! The routes and their handlers, the shared state, the login and the session extractor,
//! the CSRF and role checks of every POST, the live event stream and the security headers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use gridsync_core::{
    Assignee, BlobHash, Category, Change, Force, IncidentId, Level, Location, LocationSource,
    NodeId, Severity, Status, Verdict,
};
use gridsync_device::{Device, DeviceError};
use gridsync_relay::export::{self, Format};
use gridsync_relay::open311;
use gridsync_store::{Store, StoreError};
use serde_json::json;
use tokio::sync::watch;

use crate::auth::{
    self, allows, check_csrf, sanitize_next, verify_password, Action, Clock, RateLimiter, Session,
    Sessions,
};
use crate::evaluation::{self, EvalQuery};
use crate::pages::{self, ListQuery};
use crate::{map, ConsoleError, ConsoleOptions, MetricsFn};

/// The client's address, put on every request by the connection's service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub SocketAddr);

/// How often the store is polled for commits (`PRAGMA data_version`).
const COMMIT_POLL: Duration = Duration::from_millis(100);
/// How often an idle event stream sends a comment line.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// The session cookie's name.
const SESSION_COOKIE: &str = "gridsync_session";
/// The login form's CSRF cookie (double submit: the form carries the same value).
const LOGIN_COOKIE: &str = "gridsync_login";

/// Everything the handlers share.
pub(crate) struct State {
    db: PathBuf,
    reads: Mutex<Store>,
    device: Mutex<Device>,
    relay_name: String,
    node_id: NodeId,
    sessions: Sessions,
    limiter: RateLimiter,
    clock: Clock,
    tls: bool,
    open311: bool,
    metrics: Option<MetricsFn>,
    map: map::MapConfig,
    commits: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    csp: HeaderValue,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves when `shutdown` says stop (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The origin (`scheme://host[:port]`) of a tile URL template, for the CSP's `img-src`.
fn tile_origin(template: &str) -> Option<String> {
    let (scheme, rest) = template.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let host = rest.split('/').next()?;
    if host.is_empty() || host.contains(['{', '}', ' ', ';', ',', '\'']) {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

impl State {
    /// Opens the console's own connections to the store and starts the commit watcher.
    pub(crate) async fn open(
        options: &ConsoleOptions,
        _local: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<State>, ConsoleError> {
        let db = options.db.clone();
        let (reads, device, watcher) = tokio::task::spawn_blocking(move || {
            let device = Device::open(&db)?;
            let reads = Store::open(&db)?;
            let watcher = Store::open(&db)?;
            Ok::<_, ConsoleError>((reads, device, watcher))
        })
        .await
        .map_err(|e| ConsoleError::Task(e.to_string()))??;
        let relay_name = device.name().to_owned();
        let node_id = device.node_id();
        let (tx, commits) = watch::channel(0u64);
        tokio::spawn(watch_commits(watcher, tx, shutdown.clone()));
        let img = match options.map.tiles.as_deref().and_then(tile_origin) {
            Some(o) => format!("'self' data: {o}"),
            None => "'self' data:".to_owned(),
        };
        let csp = format!(
            "default-src 'self'; img-src {img}; script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        );
        let clock = auth::system_clock();
        Ok(Arc::new(State {
            db: options.db.clone(),
            reads: Mutex::new(reads),
            device: Mutex::new(device),
            relay_name,
            node_id,
            sessions: Sessions::new(clock.clone()),
            limiter: RateLimiter::new(clock.clone(), auth::LOGIN_FAILURES, auth::LOGIN_WINDOW_MS),
            clock,
            tls: options.tls.is_some(),
            open311: options.open311,
            metrics: options.metrics.clone(),
            map: options.map.clone(),
            commits,
            shutdown,
            csp: HeaderValue::from_str(&csp)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'")),
        }))
    }

    /// Called once the accept loop ended.
    pub(crate) fn stop(&self) {
        tracing::debug!(relay = %self.relay_name, "console state released");
    }

    fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// Runs `f` on the read connection in a blocking thread.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, AppError> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&lock(&me.reads)))
            .await
            .map_err(|e| AppError::Internal(format!("a read task failed: {e}")))?
    }

    /// Writes `changes` to incident `id` as this relay's event authored by `operator`.
    async fn decide(
        self: &Arc<Self>,
        operator: &str,
        id: IncidentId,
        changes: Vec<Change>,
    ) -> Result<usize, AppError> {
        let me = self.clone();
        let author = format!("{}/{}", self.relay_name, operator);
        tokio::task::spawn_blocking(move || {
            lock(&me.device)
                .edit_as(&author, id, changes, Vec::new())
                .map_err(AppError::Device)
        })
        .await
        .map_err(|e| AppError::Internal(format!("a write task failed: {e}")))?
    }
}

/// Polls the store's `data_version` on its own connection and bumps the commit counter
/// whenever another connection (the relay, this console's writer, a CLI) committed.
async fn watch_commits(store: Store, tx: watch::Sender<u64>, mut shutdown: watch::Receiver<bool>) {
    let mut last = store.data_version().ok();
    let mut tick = tokio::time::interval(COMMIT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        match store.data_version() {
            Ok(v) if Some(v) != last => {
                last = Some(v);
                tx.send_modify(|n| *n += 1);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "console: cannot check the store for commits"),
        }
    }
}

/// A handler's failure, rendered as a page or JSON.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Device(DeviceError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            AppError::BadInput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Bad input"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            AppError::Device(e) => (device_status(e), "Refused"),
            AppError::Store(_) | AppError::Internal(_) => {
                tracing::error!(error = %self, "console: request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Error")
            }
        };
        (status, page(pages::message(title, &self.to_string(), None))).into_response()
    }
}

/// The HTTP status of a refused decision: the workflow's refusals are 409, bad values 422.
fn device_status(e: &DeviceError) -> StatusCode {
    match e {
        DeviceError::Refused { .. } | DeviceError::Decision { .. } => StatusCode::CONFLICT,
        DeviceError::NoSuchIncident(_) | DeviceError::AmbiguousId { .. } => StatusCode::NOT_FOUND,
        DeviceError::Store(_) | DeviceError::Lock { .. } | DeviceError::Random(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn page(html: String) -> ([(header::HeaderName, &'static str); 2], String) {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
}

/// The logged-in operator of a request. Without a live session a page answers 303 to the
/// login form (with `next=` the path asked for) and an API request 401.
pub(crate) struct Operator(pub Session);

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `text` percent-encoded for a query value.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn unauthenticated(uri: &Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || path.ends_with(".json") || path.ends_with(".csv") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "log in first: POST /login"})),
        )
            .into_response();
    }
    let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Redirect::to(&format!("/login?next={}", url_encode(next))).into_response()
}

impl FromRequestParts<Arc<State>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<State>) -> Result<Self, Response> {
        let Some(session) =
            cookie(&parts.headers, SESSION_COOKIE).and_then(|t| state.sessions.get(t))
        else {
            return Err(unauthenticated(&parts.uri));
        };
        // The account may have been removed or its role changed by the CLI meanwhile.
        let name = session.operator.clone();
        let account = state
            .read(move |s| Ok(s.operator(&name)?))
            .await
            .map_err(IntoResponse::into_response)?;
        match account {
            Some(a) => {
                let mut session = session;
                session.role = a.role;
                Ok(Operator(session))
            }
            None => {
                state.sessions.remove_operator(&session.operator);
                Err(unauthenticated(&parts.uri))
            }
        }
    }
}

/// The CSRF and origin check of a POST: `given` is the form's `csrf` field, else the
/// `X-CSRF-Token` header. `Some` is the refusal to send (403).
fn check_post(
    state: &State,
    headers: &HeaderMap,
    expected: &str,
    given: Option<&str>,
) -> Option<Response> {
    let header_token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let allowed: Vec<String> = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|host| vec![format!("{}://{host}", state.scheme())])
        .unwrap_or_default();
    let e = check_csrf(expected, given.or(header_token), origin, &allowed).err()?;
    tracing::info!(error = %e, "console: POST refused by the CSRF check");
    Some(
        (
            StatusCode::FORBIDDEN,
            page(pages::message("Request refused", &e.to_string(), None)),
        )
            .into_response(),
    )
}

/// The router of every page and API.
pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/assets/{*path}", get(asset))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/", get(list))
        .route("/api/incidents", get(api_incidents))
        .route("/api/incident-rows", get(api_rows))
        .route("/api/events", get(events))
        .route("/api/screen", get(api_screen))
        .route("/incident/{id}", get(detail))
        .route("/incident/{id}/{action}", post(act))
        .route("/blob/{hash}", get(blob))
        .route("/screen", get(screen))
        .route("/map", get(map_page))
        .route("/api/map.geojson", get(map_data))
        .route("/evaluation", get(evaluation_page))
        .route("/evaluation.csv", get(evaluation_csv))
        .route("/evaluation.json", get(evaluation_json))
        .route("/export", get(export_file))
        .route("/open311/v2/services.json", get(o311_services))
        .route("/open311/v2/requests.json", get(o311_requests))
        .route("/open311/v2/requests/{id}", get(o311_request))
        .route("/open311/v2/media/{file}", get(o311_media))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                page(pages::message("Not found", "There is no such page.", None)),
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), headers))
        .with_state(state)
}

/// Adds the security headers to every response.
async fn headers(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    req: Request,
    next: Next,
) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, state.csp.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if state.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}

type St = axum::extract::State<Arc<State>>;

async fn metrics(axum::extract::State(state): St) -> Response {
    match &state.metrics {
        Some(f) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            f(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The console's own embedded files.
const OWN_ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
    (
        "placeholder.svg",
        "image/svg+xml",
        include_bytes!("../assets/placeholder.svg"),
    ),
];

async fn asset(Path(path): Path<String>) -> Response {
    let found = OWN_ASSETS
        .iter()
        .chain(map::ASSETS)
        .chain(evaluation::ASSETS)
        .find(|(p, _, _)| *p == path);
    match found {
        Some((_, ty, bytes)) => (
            [
                (header::CONTENT_TYPE, *ty),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            Bytes::from_static(bytes),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn cookie_attrs(state: &State, path: &str) -> String {
    format!(
        "HttpOnly; SameSite=Strict; Path={path}{}",
        if state.tls { "; Secure" } else { "" }
    )
}

#[derive(Debug, serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_form(
    axum::extract::State(state): St,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Result<Response, AppError> {
    let next = sanitize_next(q.next.as_deref());
    let (token, set) = match cookie(&headers, LOGIN_COOKIE) {
        Some(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (t.to_owned(), false)
        }
        _ => (
            auth::new_token().map_err(|e| AppError::Internal(e.to_string()))?,
            true,
        ),
    };
    let mut res = page(pages::login(&next, &token, None)).into_response();
    if set {
        set_cookie(
            &mut res,
            &format!("{LOGIN_COOKIE}={token}; {}", cookie_attrs(&state, "/login")),
        );
    }
    Ok(res)
}

fn set_cookie(res: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[derive(Debug, serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf: Option<String>,
}

async fn login(
    axum::extract::State(state): St,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("").to_owned();
    if expected.is_empty() {
        return Ok((
            StatusCode::FORBIDDEN,
            page(pages::message(
                "Request refused",
                "the login form's CSRF cookie is missing; open /login again and log in from there",
                None,
            )),
        )
            .into_response());
    }
    if let Some(res) = check_post(&state, &headers, &expected, form.csrf.as_deref()) {
        return Ok(res);
    }
    let next = sanitize_next(form.next.as_deref());
    let name = form.name.trim().to_owned();
    let ip = client.map(|c| c.0 .0.ip().to_string()).unwrap_or_default();
    let keys = vec![format!("name:{name}"), format!("ip:{ip}")];
    if let Err(wait) = state.limiter.check(&keys) {
        tracing::info!(operator = %name, %ip, "console: login refused by the rate limit");
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            page(pages::login(
                &next,
                &expected,
                Some(&format!("Too many failed logins: try again in {wait} s.")),
            )),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(res);
    }
    let lookup = name.clone();
    let password = form.password;
    let account = state
        .read(move |s| {
            let account = s.operator(&lookup)?;
            let ok = verify_password(account.as_ref().map(|a| a.password.as_str()), &password);
            Ok(account.filter(|_| ok))
        })
        .await?;
    let Some(account) = account else {
        state.limiter.fail(&keys);
        tracing::info!(operator = %name, %ip, "console: failed login");
        return Ok((
            StatusCode::UNAUTHORIZED,
            page(pages::login(
                &next,
                &expected,
                Some("Wrong name or password."),
            )),
        )
            .into_response());
    };
    state.limiter.clear(&keys[0]);
    let token = state
        .sessions
        .create(&account.name, account.role)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    tracing::info!(operator = %account.name, role = %account.role, %ip, "console: login");
    let mut res = Redirect::to(&next).into_response();
    set_cookie(
        &mut res,
        &format!("{SESSION_COOKIE}={token}; {}", cookie_attrs(&state, "/")),
    );
    Ok(res)
}

#[derive(Debug, serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

async fn logout(
    axum::extract::State(state): St,
    Operator(session): Operator,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(res) = check_post(&state, &headers, &session.csrf, form.csrf.as_deref()) {
        return res;
    }
    if let Some(t) = cookie(&headers, SESSION_COOKIE) {
        state.sessions.remove(t);
    }
    tracing::info!(operator = %session.operator, "console: logout");
    let mut res = Redirect::to("/login").into_response();
    set_cookie(
        &mut res,
        &format!(
            "{SESSION_COOKIE}=; Max-Age=0; {}",
            cookie_attrs(&state, "/")
        ),
    );
    res
}

async fn selected(
    state: &Arc<State>,
    query: ListQuery,
) -> Result<Vec<gridsync_core::IncidentState>, AppError> {
    let now = state.now_ms();
    state
        .read(move |s| Ok(pages::select(s.incidents()?, &query, now)))
        .await
}

async fn list(
    axum::extract::State(state): St,
    Operator(session): Operator,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let incidents = selected(&state, query.clone()).await?;
    let rows = pages::rows(&incidents, state.now_ms());
    Ok(page(pages::list(&session, &query, &rows, incidents.len())).into_response())
}

async fn api_rows(
    axum::extract::State(state): St,
    Operator(_): Operator,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let incidents = selected(&state, query).await?;
    let mut res = page(pages::rows(&incidents, state.now_ms())).into_response();
    if let Ok(v) = HeaderValue::from_str(&incidents.len().to_string()) {
        res.headers_mut().insert("x-incident-count", v);
    }
    Ok(res)
}

async fn api_incidents(
    axum::extract::State(state): St,
    Operator(_): Operator,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let now = state.now_ms() as i64;
    let incidents = selected(&state, query).await?;
    let views: Vec<serde_json::Value> = incidents
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s.view()).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("overdue".into(), json!(s.is_overdue(now)));
            }
            v
        })
        .collect();
    Ok(Json(views).into_response())
}

/// `text/event-stream`: `event: commit` with `data: {"version": N}` whenever the store
/// committed; a comment line every 15 s; ends at shutdown.
async fn events(axum::extract::State(state): St, Operator(_): Operator) -> Response {
    let commits = state.commits.clone();
    let shutdown = state.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (commits, shutdown),
        |(mut commits, mut shutdown)| async move {
            tokio::select! {
                changed = commits.changed() => {
                    changed.ok()?;
                    let n = *commits.borrow_and_update();
                    let event = SseEvent::default().event("commit").data(json!({"version": n}).to_string());
                    Some((Ok::<_, Infallible>(event), (commits, shutdown)))
                }
                _ = stopped(&mut shutdown) => None,
            }
        },
    );
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn api_screen(
    axum::extract::State(state): St,
    Operator(_): Operator,
) -> Result<Response, AppError> {
    let now = state.now_ms();
    let value = state
        .read(move |s| {
            let mut all = s.incidents()?;
            all.sort_by_key(|i| std::cmp::Reverse(pages::created_ms(i)));
            let today_start = now - now % 86_400_000;
            let today = all.iter().filter(|i| pages::created_ms(i) >= today_start).count();
            let open = all
                .iter()
                .filter(|i| !matches!(i.status(), Status::Closed | Status::Rejected))
                .count();
            let overdue = all.iter().filter(|i| i.is_overdue(now as i64)).count();
            let newest = all.iter().find(|i| !i.visible_photos().is_empty()).or(all.first());
            let newest = newest.map(|i| {
                let v = i.view();
                json!({
                    "id": v.id,
                    "photo": i.visible_photos().first().map(|p| format!("/blob/{}", p.meta.hash.to_hex())),
                    "category": v.category,
                    "description": v.description,
                    "grid": v.grid,
                    "status": v.status,
                    "age": pages::age(now.saturating_sub(pages::created_ms(i))),
                })
            });
            // The ticker: the latest events of the most recently updated incidents.
            let mut recent: Vec<&gridsync_core::IncidentState> = all.iter().collect();
            recent.sort_by_key(|i| std::cmp::Reverse(i.last));
            let mut ticker = Vec::new();
            for i in recent.into_iter().take(10) {
                for e in s.events_of(&i.id)? {
                    ticker.push((e.hlc.wall_ms, e.author.clone(), e.payload.kind(), i.id.to_string()));
                }
            }
            ticker.sort_by_key(|t| std::cmp::Reverse(t.0));
            ticker.truncate(15);
            let ticker: Vec<_> = ticker
                .into_iter()
                .map(|(at, author, kind, id)| {
                    json!({"at": gridsync_core::view::rfc3339(at as i64), "age": pages::age(now.saturating_sub(at)),
                           "author": author, "kind": kind, "incident": pages::short_id(&id)})
                })
                .collect();
            Ok(json!({
                "counters": {"today": today, "open": open, "overdue": overdue},
                "newest": newest,
                "ticker": ticker,
            }))
        })
        .await?;
    Ok(Json(value).into_response())
}

fn parse_id(id: &str) -> Result<IncidentId, AppError> {
    id.parse()
        .map_err(|_| AppError::NotFound(format!("{id:?} is not an incident id")))
}

#[derive(Debug, serde::Deserialize)]
struct DetailQuery {
    done: Option<String>,
}

/// The detail page of `id`, with a flash message; `status` its HTTP status.
async fn render_detail(
    state: &Arc<State>,
    session: &Session,
    id: IncidentId,
    flash: Option<(bool, String)>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let me = state.node_id;
    let loaded = state
        .read(move |s| {
            let Some(incident) = s.incident(&id)? else {
                return Ok(None);
            };
            let events = s.events_of(&id)?;
            let verification = gridsync_relay::verify::verify_incident(s, &me, &id)?;
            let staff = match incident.grid() {
                Some(g) => s.staff(Some(g))?.into_iter().map(|m| m.name).collect(),
                None => Vec::new(),
            };
            Ok(Some((
                incident,
                pages::history(&events, &verification),
                staff,
            )))
        })
        .await?;
    let Some((incident, history, staff)) = loaded else {
        return Err(AppError::NotFound(format!("no incident {id} here")));
    };
    let html = pages::detail(
        session,
        &pages::Detail {
            state: &incident,
            history,
            staff,
            flash,
        },
    );
    Ok((status, page(html)).into_response())
}

async fn detail(
    axum::extract::State(state): St,
    Operator(session): Operator,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, AppError> {
    let id = parse_id(&id)?;
    let flash = q
        .done
        .as_deref()
        .and_then(Action::from_name)
        .map(|a| (true, format!("Done: {}.", a.as_str())));
    render_detail(&state, &session, id, flash, StatusCode::OK).await
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn bad(what: impl std::fmt::Display) -> AppError {
    AppError::BadInput(what.to_string())
}

/// `YYYY-MM-DDTHH:MM[:SS]` (a `datetime-local` field, read as UTC) or RFC 3339, as Unix ms.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc().timestamp_millis())
}

/// The changes of `action` from its form, checked against the incident's current status.
fn changes_of(
    action: Action,
    form: &HashMap<String, String>,
    status: Status,
) -> Result<Vec<Change>, AppError> {
    Ok(match action {
        Action::Accept => vec![Change::Status(Status::Accepted)],
        Action::Reject => vec![Change::Status(Status::Rejected)],
        Action::Resolve => vec![Change::Status(Status::Resolved)],
        Action::Verify => vec![Change::Status(Status::Verified)],
        Action::Close => vec![Change::Status(Status::Closed)],
        Action::Comment => vec![Change::Comment(
            field(form, "text")
                .ok_or_else(|| bad("the comment is empty"))?
                .to_owned(),
        )],
        Action::Escalate => {
            let level: Level = field(form, "level")
                .ok_or_else(|| bad("choose a level to escalate to"))?
                .parse()
                .map_err(bad)?;
            vec![Change::Escalate {
                level,
                reason: field(form, "reason").unwrap_or("").to_owned(),
            }]
        }
        Action::Dispatch => {
            let assignee = match (
                field(form, "department"),
                field(form, "force"),
                field(form, "staff"),
            ) {
                (Some(d), None, None) => Assignee::department(d).map_err(bad)?,
                (None, Some(f), None) => Assignee::Force(f.parse::<Force>().map_err(bad)?),
                (None, None, Some(s)) => Assignee::parse(&format!("staff:{s}")).map_err(bad)?,
                (None, None, None) => {
                    return Err(bad("choose a department, a force or a staff member"))
                }
                _ => return Err(bad("choose only one of department, force and staff member")),
            };
            let due = match field(form, "due") {
                Some(t) => Some(parse_time(t).ok_or_else(|| {
                    bad(format!(
                        "due time {t:?} is not a date and time (YYYY-MM-DDTHH:MM)"
                    ))
                })?),
                None => None,
            };
            let mut changes = vec![Change::Assign {
                assignee: assignee.to_string(),
                due,
            }];
            if status != Status::Dispatched {
                changes.push(Change::Status(Status::Dispatched));
            }
            changes
        }
        Action::Evaluate => {
            let score: u8 = field(form, "score")
                .ok_or_else(|| bad("choose a score"))?
                .parse()
                .map_err(|_| bad("the score is not a number from 1 to 5"))?;
            let verdict = match field(form, "verdict") {
                Some(v) => Some(v.parse::<Verdict>().map_err(bad)?),
                None => None,
            };
            vec![Change::Evaluate { score, verdict }]
        }
        Action::Settle => {
            let name = field(form, "field").ok_or_else(|| bad("which field to settle?"))?;
            let raw = form
                .get("value")
                .ok_or_else(|| bad("which value to keep?"))?;
            let value: serde_json::Value = serde_json::from_str(raw)
                .map_err(|e| bad(format!("the value to keep is not JSON: {e}")))?;
            let text = || {
                value
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("the {name} to keep is not text")))
            };
            vec![match name {
                "description" => Change::Description(text()?),
                "category" => Change::Category(Category::from_catalogue(&text()?).map_err(bad)?),
                "severity" => Change::Severity(text()?.parse::<Severity>().map_err(bad)?),
                "assignee" => Change::Assign {
                    assignee: text()?,
                    due: None,
                },
                "location" => {
                    let lat = value.get("lat").and_then(|v| v.as_f64());
                    let lon = value.get("lon").and_then(|v| v.as_f64());
                    let source = value
                        .get("source")
                        .and_then(|v| v.as_str())
                        .and_then(|s| s.parse::<LocationSource>().ok())
                        .unwrap_or(LocationSource::Manual);
                    match (lat, lon) {
                        (Some(lat), Some(lon)) => {
                            Change::Location(Location::new(lat, lon, source).map_err(bad)?)
                        }
                        _ => return Err(bad("the location to keep has no lat and lon")),
                    }
                }
                other => return Err(bad(format!("field {other:?} cannot be settled here"))),
            }]
        }
    })
}

async fn act(
    axum::extract::State(state): St,
    Operator(session): Operator,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    if let Some(res) = check_post(
        &state,
        &headers,
        &session.csrf,
        form.get("csrf").map(String::as_str),
    ) {
        return Ok(res);
    }
    let action = Action::from_name(&action)
        .ok_or_else(|| AppError::NotFound(format!("there is no action {action:?}")))?;
    if !allows(session.role, action) {
        tracing::info!(operator = %session.operator, role = %session.role, action = action.as_str(), "console: action refused by role");
        return Err(AppError::Forbidden(format!(
            "operator {} is a {}, who may not {} incidents",
            session.operator,
            session.role,
            action.as_str()
        )));
    }
    let id = parse_id(&id)?;
    let current = state.read(move |s| Ok(s.incident(&id)?)).await?;
    let Some(current) = current else {
        return Err(AppError::NotFound(format!("no incident {id} here")));
    };
    let changes = match changes_of(action, &form, current.status()) {
        Ok(c) => c,
        Err(AppError::BadInput(msg)) => {
            return render_detail(
                &state,
                &session,
                id,
                Some((false, msg)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => return Err(e),
    };
    match state.decide(&session.operator, id, changes).await {
        Ok(n) => {
            tracing::info!(operator = %session.operator, incident = %id, action = action.as_str(), events = n, "console: decision recorded");
            Ok(Redirect::to(&format!("/incident/{id}?done={}", action.as_str())).into_response())
        }
        Err(AppError::Device(e)) => {
            let status = device_status(&e);
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                return Err(AppError::Device(e));
            }
            render_detail(&state, &session, id, Some((false, e.to_string())), status).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct BlobQuery {
    thumb: Option<String>,
}

async fn blob(
    axum::extract::State(state): St,
    Operator(_): Operator,
    Path(hash): Path<String>,
    Query(q): Query<BlobQuery>,
) -> Result<Response, AppError> {
    let hash: BlobHash = hash
        .parse()
        .map_err(|_| AppError::NotFound(format!("{hash:?} is not a blob hash")))?;
    let thumb = q.thumb.as_deref() == Some("1");
    let bytes = state
        .read(move |s| {
            let want = if thumb {
                s.thumb_of(&hash)?.unwrap_or(hash)
            } else {
                hash
            };
            Ok(s.blob(&want)?)
        })
        .await?;
    match bytes {
        Some(b) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=86400, immutable"),
            ],
            b,
        )
            .into_response()),
        None if thumb => Ok((
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Bytes::from_static(include_bytes!("../assets/placeholder.svg")),
        )
            .into_response()),
        None => Err(AppError::NotFound(format!(
            "photo {hash} is not held here (yet)"
        ))),
    }
}

async fn screen(Operator(session): Operator) -> Response {
    page(pages::screen(&session)).into_response()
}

async fn map_page(
    axum::extract::State(state): St,
    Operator(session): Operator,
) -> Result<Response, AppError> {
    let config = state.map.clone();
    let body = state.read(move |s| Ok(map::body(s, &config)?)).await?;
    Ok(page(pages::layout("Map", Some(&session), "map", &body)).into_response())
}

async fn map_data(
    axum::extract::State(state): St,
    Operator(_): Operator,
) -> Result<Response, AppError> {
    let data = state.read(|s| Ok(map::data(s)?)).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/geo+json")],
        data.to_string(),
    )
        .into_response())
}

async fn evaluation_page(
    axum::extract::State(state): St,
    Operator(session): Operator,
    Query(q): Query<EvalQuery>,
) -> Result<Response, AppError> {
    let now = state.now_ms();
    let body = state
        .read(move |s| Ok(evaluation::body(s, now, &q)?))
        .await?;
    Ok(page(pages::layout(
        "Evaluation",
        Some(&session),
        "evaluation",
        &body,
    ))
    .into_response())
}

async fn evaluation_download(
    state: Arc<State>,
    q: EvalQuery,
    format: &'static str,
) -> Result<Response, AppError> {
    evaluation::check(&q, format).map_err(AppError::BadInput)?;
    let now = state.now_ms();
    let (ty, name, bytes) = state
        .read(move |s| Ok(evaluation::download(s, now, &q, format)?))
        .await?;
    Ok(attachment(ty, &name, Body::from(bytes)))
}

fn attachment(content_type: &str, name: &str, body: Body) -> Response {
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let mut res = Response::new(body);
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

async fn evaluation_csv(
    axum::extract::State(state): St,
    Operator(_): Operator,
    Query(q): Query<EvalQuery>,
) -> Result<Response, AppError> {
    evaluation_download(state, q, "csv").await
}

async fn evaluation_json(
    axum::extract::State(state): St,
    Operator(_): Operator,
    Query(q): Query<EvalQuery>,
) -> Result<Response, AppError> {
    evaluation_download(state, q, "json").await
}

#[derive(Debug, serde::Deserialize)]
struct ExportQuery {
    format: Option<String>,
    since: Option<String>,
    status: Option<String>,
}

/// A `Write` that sends its bytes to the response body in chunks.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 64 * 1024;
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

async fn export_file(
    axum::extract::State(state): St,
    Operator(session): Operator,
    Query(q): Query<ExportQuery>,
) -> Result<Response, AppError> {
    let Some(format_name) = q.format.as_deref().filter(|f| !f.is_empty()) else {
        let body = r#"<h1>Export</h1><section class="card"><p>The incidents held here, as a file.</p>
<form method="get" action="/export" class="filters"><label>Format <select name="format"><option>csv</option><option>geojson</option><option>jsonl</option></select></label>
<label>Reported since <input name="since" placeholder="2026-11-01T00:00:00Z"></label>
<label>Status <input name="status" placeholder="dispatched,in_progress"></label><button type="submit">Download</button></form></section>"#;
        return Ok(page(pages::layout("Export", Some(&session), "export", body)).into_response());
    };
    let (format, ty, ext) = match format_name {
        "csv" => (Format::Csv, "text/csv; charset=utf-8", "csv"),
        "geojson" => (Format::GeoJson, "application/geo+json", "geojson"),
        "jsonl" => (Format::JsonLines, "application/x-ndjson", "jsonl"),
        other => {
            return Err(bad(format!(
                "export format {other:?} is none of csv, geojson, jsonl"
            )))
        }
    };
    let since_ms = match q.since.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(t) => Some(
            t.parse::<u64>()
                .ok()
                .or_else(|| parse_time(t).map(|ms| ms.max(0) as u64))
                .ok_or_else(|| bad(format!("since {t:?} is not an RFC 3339 time")))?,
        ),
        None => None,
    };
    let statuses = q
        .status
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Status>().map_err(bad))
        .collect::<Result<Vec<_>, _>>()?;
    let filter = export::Filter { since_ms, statuses };
    let db = state.db.clone();
    let now = state.now_ms();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    // A connection of its own: a long export does not hold the pages' read connection.
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let result = Store::open(&db)
            .map_err(export::ExportError::from)
            .and_then(|store| export::write(&store, format, &filter, now, &mut out))
            .and_then(|n| {
                std::io::Write::flush(&mut out)?;
                Ok(n)
            });
        match result {
            Ok(n) => tracing::info!(incidents = n, "console: export written"),
            Err(e) => {
                tracing::warn!(error = %e, "console: export failed");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Ok(attachment(
        ty,
        &format!("incidents.{ext}"),
        Body::from_stream(stream),
    ))
}

fn o311_error(status: StatusCode, text: &str) -> Response {
    (
        status,
        Json(json!([{"code": status.as_u16(), "description": text}])),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct KeyQuery {
    api_key: Option<String>,
}

/// The Open311 API key check: `Err` is the response to send (404 when Open311 is off).
async fn o311_key(state: &Arc<State>, uri: &Uri) -> Result<(), Response> {
    if !state.open311 {
        return Err(StatusCode::NOT_FOUND.into_response());
    }
    let key = Query::<KeyQuery>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.api_key)
        .unwrap_or_default();
    if key.is_empty() {
        return Err(o311_error(
            StatusCode::UNAUTHORIZED,
            "an api_key is required",
        ));
    }
    match state.read(move |s| Ok(s.api_key_check(&key)?)).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(o311_error(
            StatusCode::UNAUTHORIZED,
            "the api_key is not valid",
        )),
        Err(e) => Err(e.into_response()),
    }
}

fn media_base(state: &State, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}/open311/v2/media/", state.scheme())
}

async fn o311_services(axum::extract::State(state): St) -> Response {
    if !state.open311 {
        return StatusCode::NOT_FOUND.into_response();
    }
    Json(open311::services()).into_response()
}

fn o311_result(r: Result<Result<serde_json::Value, open311::Open311Error>, AppError>) -> Response {
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(open311::Open311Error::BadRequest(m))) => o311_error(StatusCode::BAD_REQUEST, &m),
        Ok(Err(open311::Open311Error::Store(e))) => {
            tracing::error!(error = %e, "console: Open311 request failed");
            o311_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store could not be read",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "console: Open311 request failed");
            o311_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store could not be read",
            )
        }
    }
}

async fn o311_requests(
    axum::extract::State(state): St,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<open311::RequestsQuery>,
) -> Response {
    if let Err(res) = o311_key(&state, &uri).await {
        return res;
    }
    let base = media_base(&state, &headers);
    let now = state.now_ms();
    o311_result(
        state
            .read(move |s| Ok(open311::requests(s, &q, now, &base)))
            .await,
    )
}

async fn o311_request(
    axum::extract::State(state): St,
    uri: Uri,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    if let Err(res) = o311_key(&state, &uri).await {
        return res;
    }
    let Some(id) = file.strip_suffix(".json").map(str::to_owned) else {
        return o311_error(StatusCode::NOT_FOUND, "use requests/{id}.json");
    };
    let base = media_base(&state, &headers);
    let found = state
        .read(move |s| Ok(open311::request(s, &id, &base)))
        .await;
    match found {
        Ok(Ok(None)) => o311_error(StatusCode::NOT_FOUND, "no such service request"),
        Ok(Ok(Some(v))) => o311_result(Ok(Ok(v))),
        Ok(Err(e)) => o311_result(Ok(Err(e))),
        Err(e) => o311_result(Err(e)),
    }
}

async fn o311_media(
    axum::extract::State(state): St,
    uri: Uri,
    Path(file): Path<String>,
) -> Response {
    if let Err(res) = o311_key(&state, &uri).await {
        return res;
    }
    let Some(hash) = file
        .strip_suffix(".jpg")
        .and_then(|h| h.parse::<BlobHash>().ok())
    else {
        return o311_error(StatusCode::NOT_FOUND, "no such media");
    };
    match state.read(move |s| Ok(s.blob(&hash)?)).await {
        Ok(Some(b)) => ([(header::CONTENT_TYPE, "image/jpeg")], b).into_response(),
        Ok(None) => o311_error(StatusCode::NOT_FOUND, "no such media"),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_origins_are_scheme_and_host() {
        assert_eq!(
            tile_origin("https://tiles.example:8443/{z}/{x}/{y}.png").as_deref(),
            Some("https://tiles.example:8443")
        );
        assert_eq!(tile_origin("file:///tiles/{z}"), None);
        assert_eq!(tile_origin("https://{s}.tiles.example/{z}"), None);
    }

    #[test]
    fn cookies_and_urls() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; gridsync_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, "gridsync_session"), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(url_encode("/incident/x?y=1&z"), "/incident/x%3Fy%3D1%26z");
    }

    #[test]
    fn dispatch_forms_become_an_assignment_and_a_status() {
        let mut form = HashMap::new();
        form.insert("force".to_owned(), "police".to_owned());
        form.insert("due".to_owned(), "2026-12-02T10:30".to_owned());
        let changes = changes_of(Action::Dispatch, &form, Status::Accepted).expect("changes");
        assert_eq!(changes.len(), 2);
        match &changes[0] {
            Change::Assign { assignee, due } => {
                assert_eq!(assignee, "force:police");
                assert_eq!(*due, parse_time("2026-12-02T10:30:00Z"));
            }
            other => panic!("{other:?}"),
        }
        form.insert("department".to_owned(), "sanitation".to_owned());
        assert!(matches!(
            changes_of(Action::Dispatch, &form, Status::Accepted),
            Err(AppError::BadInput(_))
        ));
        assert!(changes_of(Action::Comment, &HashMap::new(), Status::Accepted).is_err());
    }
}
