//! gridsync-relay: the daemon of a street sub-center or of the district (the same program).
//!
//! A relay serves its children (devices of its grids, or street relays under a district)
//! with the parent side of the sync protocol, and, when it has an upstream, runs the child
//! side towards it: continuously while connected, reconnecting with backoff after any outage.
//! Everything goes through one store; the protocol's sessions make every decision, and
//! [`check_blob`] decides which uploaded photo bytes are stored at all.
//!
//! **Invariants.** Nothing is acknowledged to a child before it is committed. An outage of the
//! upstream loses nothing: what was not acknowledged upstream is sent again at the next
//! session (idempotently). Shutdown ends sessions with `ShuttingDown` after what is in flight
//! is committed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridsync_core::NodeId;
use gridsync_net::client::{self, SyncOptions};
use gridsync_net::server::{self, stopped, Shared};
use gridsync_net::SharedStore;
use gridsync_proto::client::{ClientConfig, Progress};
use gridsync_proto::server::ServerConfig;
use gridsync_proto::{BlobKind, ErrorCode, Role};
use gridsync_store::{Identity, Store, StoreError};
use tokio::sync::{watch, Notify};

pub use gridsync_proto::limits::NodeLimits;

mod backoff;
pub mod deadlines;
pub mod export;
pub mod metrics;
pub mod open311;
pub mod stats;
pub mod verify;
use backoff::{stopped_during, Backoff, FailureLog, SessionFailure};
use gridsync_net::observe::{Observer, SessionEnd};
use metrics::Metrics;

/// How often the relay looks whether another process (an operator's `gridsync-relay edit`,
/// `staff add`) committed to its store: a local check of SQLite's `data_version`, no network.
/// What this process commits wakes its followers and its upstream link at once.
pub const LOCAL_CHECK: Duration = Duration::from_millis(100);
/// The first and the longest wait before reconnecting to an unreachable upstream.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Net(#[from] gridsync_net::NetError),
    #[error("{path}: this store's role is {role:?}; a relay runs on a store made by `gridsync-relay init`")]
    NotARelay { path: PathBuf, role: String },
}

/// The upstream relay to forward to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub id: NodeId,
}

/// What a relay stores of the photos its children upload: only photos and thumbnails in the
/// form the device pipeline stores them (metadata-free JPEGs within 1600 / 320 px that decode;
/// [`gridsync_media::check_stored`]). The relay's [`ServerConfig::blob_check`].
pub fn check_blob(kind: BlobKind, bytes: &[u8]) -> Result<(), String> {
    let kind = match kind {
        BlobKind::Photo => gridsync_media::StoredKind::Photo,
        BlobKind::Thumb => gridsync_media::StoredKind::Thumb,
    };
    gridsync_media::check_stored(kind, bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The parent side of a relay: its identity, the default limits, and [`check_blob`].
pub fn server_config(node: NodeId, role: Role, name: impl Into<String>) -> ServerConfig {
    let mut config = ServerConfig::new(node, role, name);
    config.blob_check = Some(check_blob);
    config
}

/// The role of a relay store's identity.
pub fn role_of(identity: &Identity, path: &Path) -> Result<Role, RelayError> {
    match identity.role {
        role @ (Role::Street | Role::District | Role::Community) => Ok(role),
        Role::Device => Err(RelayError::NotARelay {
            path: path.to_owned(),
            role: identity.role.as_str().to_owned(),
        }),
    }
}

/// A running relay.
#[derive(Debug)]
pub struct RelayHandle {
    /// The address it listens on (the real port when asked for port 0).
    pub local_addr: SocketAddr,
    /// Its node id.
    pub node_id: NodeId,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl RelayHandle {
    /// The running relay's metrics ([`Metrics::render`] for `/metrics`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Asks the relay to stop (sessions end with `ShuttingDown`) and waits until it has.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// A sender that stops the relay when it sends `true` (for signal handlers).
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Waits until the relay has stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// How a relay runs, beyond where it listens and forwards to. `Default` is the reference's
/// behaviour (`proto/PROTOCOL.md` §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    /// A child's session with no message on its control stream for this long ends with
    /// `Timeout` ([`server::CONTROL_IDLE`], 600 s, by default).
    pub session_idle: Duration,
    /// Connections served at once ([`server::MAX_CONNECTIONS`], 1024, by default): one more
    /// is refused before its handshake (QUIC `CONNECTION_REFUSED`) and its child retries.
    pub max_connections: usize,
    /// How long a handshake may take, and a connection may stay open with no session
    /// ([`server::HANDSHAKE_TIMEOUT`], 10 s, by default).
    pub handshake_timeout: Duration,
    /// Per-node limits: connections one node may hold at once (one more is closed with
    /// `Busy`), and its sustained event rate and burst (over it, its batches wait).
    pub node_limits: NodeLimits,
    /// The migration opt-in for events stored before signatures, as a parent: unsigned events
    /// timestamped before this Unix time (ms) are admitted from children
    /// ([`ServerConfig::accept_unsigned_before`]). `None` (the default): none is.
    pub accept_unsigned_before: Option<u64>,
    /// The same opt-in as a child: offer the upstream the unsigned events held here
    /// ([`ClientConfig::upload_unsigned`]; the upstream must opt in too). Off by default.
    pub upload_unsigned: bool,
    /// The platform's deadline policy: escalate each overdue case one level, once
    /// ([`deadlines`]). Off by default: overdue cases are only listed.
    pub escalate_overdue: bool,
    /// How often the policy looks for overdue cases ([`deadlines::CHECK_INTERVAL`]).
    pub deadline_check: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            session_idle: server::CONTROL_IDLE,
            max_connections: server::MAX_CONNECTIONS,
            handshake_timeout: server::HANDSHAKE_TIMEOUT,
            node_limits: NodeLimits::default(),
            accept_unsigned_before: None,
            upload_unsigned: false,
            escalate_overdue: false,
            deadline_check: deadlines::CHECK_INTERVAL,
        }
    }
}

impl RelayOptions {
    /// The parent-side session configuration these options give a relay `node`.
    pub fn server_config(&self, node: NodeId, role: Role, name: impl Into<String>) -> ServerConfig {
        let mut config = server_config(node, role, name);
        config.accept_unsigned_before = self.accept_unsigned_before;
        config
    }

    /// The child-side session configuration for the upstream `parent`.
    pub fn client_config(
        &self,
        node: NodeId,
        role: Role,
        name: impl Into<String>,
        parent: NodeId,
    ) -> ClientConfig {
        let mut config = ClientConfig::new(node, role, name, parent);
        config.upload_unsigned = self.upload_unsigned;
        config
    }
}

/// Starts the relay on the store at `db`, listening on `listen`, forwarding to `upstream`,
/// with the default [`RelayOptions`].
pub async fn start(
    db: &Path,
    listen: SocketAddr,
    upstream: Option<Upstream>,
) -> Result<RelayHandle, RelayError> {
    start_with(db, listen, upstream, RelayOptions::default()).await
}

/// [`start`] with explicit options.
pub async fn start_with(
    db: &Path,
    listen: SocketAddr,
    upstream: Option<Upstream>,
    options: RelayOptions,
) -> Result<RelayHandle, RelayError> {
    let store = Store::open(db)?;
    let db_path = db.to_owned();
    let identity = store.identity()?;
    let role = role_of(&identity, db)?;
    let local: Arc<Mutex<Store>> = Arc::new(Mutex::new(store));
    let store: SharedStore = local.clone();
    let endpoint = server::endpoint(&identity.secret, listen)?;
    let local_addr = endpoint
        .local_addr()
        .map_err(|error| gridsync_net::NetError::Bind {
            addr: listen,
            error,
        })?;
    let (tx, rx) = watch::channel(false);
    let changed = Arc::new(Notify::new());
    let metrics = Arc::new(Metrics::default());
    {
        let (local, me) = (local.clone(), identity.node_id);
        metrics.set_backlog_source(move || {
            let p = local.lock().unwrap_or_else(|p| p.into_inner()).pending(&me);
            p.ok().map(|p| (p.events, p.blobs))
        });
    }
    let observer = Arc::new(RelayObserver {
        metrics: metrics.clone(),
        store: local.clone(),
    });
    let shared = Arc::new(Shared {
        observer,
        control_idle: options.session_idle,
        max_connections: options.max_connections,
        handshake_timeout: options.handshake_timeout,
        ..Shared::new(
            store.clone(),
            options.server_config(identity.node_id, role, identity.name.clone()),
            changed.clone(),
            rx.clone(),
        )
        .with_node_limits(options.node_limits)
    });
    tracing::info!(addr = %local_addr, node = %identity.node_id, role = role.as_str(), "relay listening");
    let node_id = identity.node_id;
    let relay_metrics = metrics.clone();
    let task = tokio::spawn(async move {
        let up = upstream.map(|target| {
            // Each acknowledgement from the upstream is noted here; one task records the
            // latest in the store (for `status`), a write per change, not per event.
            let (acked, acks) = watch::channel(0u64);
            let recorder = tokio::spawn(record_upstream_acks(
                local.clone(),
                target.id,
                acks,
                rx.clone(),
            ));
            let acked = Arc::new(acked);
            let config =
                options.client_config(identity.node_id, role, identity.name.clone(), target.id);
            // Only the following session downloads: what it stores wakes this relay's own
            // followers at once.
            let mut photos = config.clone();
            photos.download = false;
            let blobs = tokio::spawn(blob_loop(
                store.clone(),
                identity.secret,
                photos,
                target,
                shared.clone(),
                acked.clone(),
                rx.clone(),
            ));
            // The following session carries events both ways; photos go on their own
            // connection, so an urgent report is never queued behind them.
            let mut follow = config;
            follow.follow = true;
            follow.blobs = false;
            let events = tokio::spawn(upstream_loop(
                store,
                identity.secret,
                follow,
                target,
                Link {
                    shared: shared.clone(),
                    metrics: relay_metrics.clone(),
                    acked,
                },
                rx.clone(),
            ));
            (events, blobs, recorder)
        });
        let deadlines = options.escalate_overdue.then(|| {
            tokio::spawn(deadline_loop(
                db_path,
                role,
                options.deadline_check,
                rx.clone(),
            ))
        });
        let watch = tokio::spawn(watch_store(local, shared.clone(), rx));
        server::serve(endpoint, shared).await;
        if let Some((events, blobs, recorder)) = up {
            let _ = events.await;
            let _ = blobs.await;
            let _ = recorder.await;
        }
        let _ = watch.await;
        if let Some(d) = deadlines {
            let _ = d.await;
        }
        tracing::info!("relay stopped");
    });
    Ok(RelayHandle {
        local_addr,
        node_id,
        shutdown: tx,
        task,
        metrics,
    })
}

/// What the driver tells the relay: counted in its [`Metrics`], and each child's contact
/// (a session's start and end) recorded in the store, where `status` reads it.
#[derive(Debug)]
struct RelayObserver {
    metrics: Arc<Metrics>,
    store: Arc<Mutex<Store>>,
}

impl RelayObserver {
    fn record(&self, what: &str, f: impl FnOnce(&mut Store) -> Result<(), StoreError>) {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f(&mut store) {
            tracing::warn!(error = %e, "cannot record a child's {what}");
        }
    }
}

impl Observer for RelayObserver {
    fn session_started(&self, peer: &gridsync_proto::Enrolled) {
        self.metrics.session_started(peer);
        self.record("session start", |s| {
            s.contact_started(&peer.node, gridsync_net::now_ms())
        });
    }
    fn session_ended(&self, end: SessionEnd<'_>) {
        self.metrics.session_ended(end);
        self.record("session end", |s| {
            s.contact_ended(
                &end.peer.node,
                gridsync_net::now_ms(),
                end.stats.events_stored,
                end.down_cursor,
            )
        });
    }
    fn refused(&self, code: ErrorCode) {
        self.metrics.refused(code);
    }
    fn frame_bytes(&self, inbound: bool, bytes: u64) {
        self.metrics.frame_bytes(inbound, bytes);
    }
    fn blob_bytes(&self, inbound: bool, bytes: u64) {
        self.metrics.blob_bytes(inbound, bytes);
    }
    fn events(&self, inbound: bool, count: u64) {
        self.metrics.events(inbound, count);
    }
    fn blob_resumed(&self) {
        self.metrics.blob_resumed();
    }
    fn committed_in(&self, took: Duration) {
        self.metrics.committed_in(took);
    }
}

/// What the upstream loop reports to besides the store: the relay's sharing, its metrics
/// (connected or not), and the time of the upstream's last acknowledgement.
struct Link {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    acked: Arc<watch::Sender<u64>>,
}

/// Records in the store when the upstream `parent` last acknowledged something (the latest
/// time `acks` carries), until shutdown.
async fn record_upstream_acks(
    store: Arc<Mutex<Store>>,
    parent: NodeId,
    mut acks: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = acks.changed() => if r.is_err() { return },
            _ = stopped(&mut shutdown) => return,
        }
        let at = *acks.borrow_and_update();
        let store = store.clone();
        let done = tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .upstream_acked(&parent, at)
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "cannot record the upstream's acknowledgement");
        }
    }
}

/// Notes an acknowledgement from the upstream now, if `p` is one.
fn note_ack(acked: &watch::Sender<u64>, p: &client::SyncProgress) {
    let ack = matches!(
        p,
        client::SyncProgress::Session(
            Progress::Events { acked: 1.., .. } | Progress::BlobStored { .. }
        )
    );
    if ack {
        acked.send_replace(gridsync_net::now_ms());
    }
}

/// The deadline policy: every `every` (and at start), escalates the overdue cases
/// [`deadlines::escalations`] names, as this relay's own signed events (in a connection of
/// its own to the store: the store watcher then pushes them like an operator's edit).
async fn deadline_loop(
    db: PathBuf,
    role: Role,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(mine) = deadlines::level_of(role) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        let db = db.clone();
        let done = tokio::task::spawn_blocking(move || escalate_overdue(&db, mine)).await;
        if std::mem::take(&mut first) {
            let cases = done.as_ref().ok().and_then(|r| r.as_ref().ok()).copied();
            tracing::info!(
                ?cases,
                secs = every.as_secs(),
                "deadline policy on: first check done, next every interval"
            );
        }
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(cases = n, "escalated overdue cases"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot check deadlines"),
            Err(e) => tracing::warn!(error = %e, "the deadline check failed"),
        }
    }
}

/// One deadline check: escalates what [`deadlines::escalations`] says; returns how many.
fn escalate_overdue(
    db: &Path,
    mine: gridsync_core::Level,
) -> Result<usize, gridsync_device::DeviceError> {
    let mut node = gridsync_device::Device::open(db)?;
    let now = gridsync_net::now_ms() as gridsync_core::Millis;
    let me = node.node_id();
    let mut held = Vec::new();
    for state in node.list()? {
        if state.is_overdue(now) {
            let events = node.store().events_of(&state.id)?;
            held.push((state, events));
        }
    }
    let todo = deadlines::escalations(&held, &me, mine, now);
    let mut done = 0;
    for e in todo {
        let change = gridsync_core::Change::Escalate {
            level: e.to,
            reason: e.reason.clone(),
        };
        match node.edit(e.incident, vec![change], vec![]) {
            Ok(_) => {
                tracing::info!(incident = %e.incident, to = %e.to, reason = %e.reason, "overdue case escalated");
                done += 1;
            }
            Err(err) => {
                tracing::warn!(incident = %e.incident, error = %err, "cannot escalate an overdue case")
            }
        }
    }
    Ok(done)
}

/// Notices commits to the store by other processes (every [`LOCAL_CHECK`]) and passes them on
/// as this process's own: the upstream link forwards them, held `Follow`s are answered.
async fn watch_store(
    store: Arc<Mutex<Store>>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let version = |s: &Mutex<Store>| s.lock().unwrap_or_else(|p| p.into_inner()).data_version();
    let mut last = version(&store).ok();
    let mut tick = tokio::time::interval(LOCAL_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        match version(&store) {
            Ok(v) if Some(v) != last => {
                last = Some(v);
                tracing::debug!("the store changed under another process");
                shared.changed.notify_one();
                shared.blobs_changed.notify_one();
                shared.committed();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot check the store for changes"),
        }
    }
}

/// Forwards photos to the upstream: after each commit here, sessions of events then blobs
/// (no download) on a connection of their own until nothing is left to offer,
/// so the following session of [`upstream_loop`] never waits behind a photo. Reconnects
/// with backoff after a failure.
async fn blob_loop(
    store: SharedStore,
    secret: [u8; 32],
    config: ClientConfig,
    target: Upstream,
    shared: Arc<Shared>,
    acked: Arc<watch::Sender<u64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let bind: SocketAddr = if target.addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let Ok(endpoint) = client::endpoint(bind) else {
        tracing::error!("cannot open the upstream blob endpoint; photos are not forwarded");
        return;
    };
    let options = SyncOptions::default();
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut conn: Option<quinn::Connection> = None;
    // Whether a session is owed: at start (photos held from before), then after each commit.
    let mut owed = true;
    while !*shutdown.borrow() {
        if !owed {
            tokio::select! {
                _ = shared.blobs_changed.notified() => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        owed = false;
        let live = match conn.take().filter(|c| c.close_reason().is_none()) {
            Some(c) => c,
            None => {
                let c = tokio::select! {
                    c = client::connect(&endpoint, &secret, target.addr, target.id) => c,
                    _ = stopped(&mut shutdown) => break,
                };
                match c {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "upstream unreachable for photos; retrying");
                        owed = true;
                        if stopped_during(backoff.failed(), &mut shutdown).await {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        let mut progress = |p: client::SyncProgress| {
            note_ack(&acked, &p);
            tracing::trace!(?p, "upstream blob progress");
        };
        let result = tokio::select! {
            r = client::run_session(&live, store.clone(), config.clone(), &options, &mut progress) => r,
            _ = stopped(&mut shutdown) => {
                live.close(ErrorCode::ShuttingDown.as_u16().into(), b"shutting down");
                break;
            }
        };
        match result {
            Ok(report) => {
                backoff.succeeded();
                let s = &report.summary;
                if s.blobs_up > 0 {
                    tracing::info!(
                        blobs_up = s.blobs_up,
                        blob_bytes = s.blob_bytes_up,
                        ms = report.elapsed.as_millis() as u64,
                        "photos forwarded upstream"
                    );
                    // An offer takes at most 256 blobs: more may be waiting.
                    owed = true;
                }
                conn = Some(live);
            }
            Err(e) => {
                tracing::debug!(error = %e, "upstream photo session failed; retrying");
                live.close(ErrorCode::Unexpected.as_u16().into(), b"session failed");
                owed = true;
                if stopped_during(backoff.failed(), &mut shutdown).await {
                    break;
                }
            }
        }
    }
    if let Some(c) = conn {
        c.close(ErrorCode::ShuttingDown.as_u16().into(), b"shutting down");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

/// Forwards to the upstream for as long as the relay runs: one session after another on one
/// connection, each following (PROTOCOL.md §8.10) until something commits here, so that what
/// a child sends goes up at once and what the upstream commits in this relay's scope comes
/// down at once, with no polling; reconnecting with exponential backoff after any failure.
async fn upstream_loop(
    store: SharedStore,
    secret: [u8; 32],
    config: ClientConfig,
    target: Upstream,
    link: Link,
    mut shutdown: watch::Receiver<bool>,
) {
    let Link {
        shared,
        metrics,
        acked,
    } = link;
    let changed = shared.changed.clone();
    let bind: SocketAddr = if target.addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = match client::endpoint(bind) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the upstream endpoint; not forwarding");
            return;
        }
    };
    let options = SyncOptions::default();
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut log = FailureLog::default();
    'connect: while !*shutdown.borrow() {
        let conn = tokio::select! {
            c = client::connect_follower(&endpoint, &secret, target.addr, target.id) => c,
            _ = stopped(&mut shutdown) => break,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                if log.unreachable() {
                    tracing::warn!(upstream = %target.addr, error = %e, "upstream unreachable; holding everything and retrying");
                } else {
                    tracing::debug!(upstream = %target.addr, error = %e, "upstream still unreachable");
                }
                if stopped_during(backoff.failed(), &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        tracing::info!(upstream = %target.addr, "connected upstream");
        log.connected();
        metrics.set_upstream_connected(true);
        loop {
            let mut progress = |p: client::SyncProgress| {
                note_ack(&acked, &p);
                if let client::SyncProgress::Session(Progress::Received { .. }) = p {
                    // Decisions from above: pushed on to the followers here at once.
                    shared.committed();
                }
                tracing::trace!(?p, "upstream progress");
            };
            let result = tokio::select! {
                r = client::run_session_until(&conn, store.clone(), config.clone(), &options, &mut progress, changed.notified()) => r,
                _ = stopped(&mut shutdown) => {
                    conn.close(ErrorCode::ShuttingDown.as_u16().into(), b"shutting down");
                    break 'connect;
                }
            };
            match result {
                Ok(report) => {
                    // Only a session that went through proves the upstream works: a refusal
                    // comes after a successful connect and must not reset the backoff.
                    backoff.succeeded();
                    log.session_succeeded();
                    let s = &report.summary;
                    if s.events_up + s.events_down + s.blobs_up > 0 {
                        tracing::info!(
                            events_up = s.events_up,
                            events_down = s.events_down,
                            blobs_up = s.blobs_up,
                            blob_bytes = s.blob_bytes_up,
                            ms = report.elapsed.as_millis() as u64,
                            "synced with upstream"
                        );
                    }
                }
                Err(e) => {
                    // A refusal that retrying cannot cure (not enrolled, out of scope, a clock
                    // too far ahead...) waits the longest backoff; the same failure (same kind
                    // and code) is warned about once, until a session goes through.
                    let failure = SessionFailure::of(&e);
                    if log.session_failed(failure) {
                        tracing::warn!(upstream = %target.addr, error = %e, "upstream session failed; retrying");
                    } else {
                        tracing::debug!(upstream = %target.addr, error = %e, "upstream session failed again");
                    }
                    let wait = if failure.permanent() {
                        backoff.refused_permanently()
                    } else {
                        backoff.failed()
                    };
                    conn.close(
                        ErrorCode::Unexpected.as_u16().into(),
                        b"session failed; reconnecting",
                    );
                    metrics.set_upstream_connected(false);
                    if stopped_during(wait, &mut shutdown).await {
                        break 'connect;
                    }
                    continue 'connect;
                }
            }
            // The follow was given up because something committed here: the next session
            // sends it.
            if conn.close_reason().is_some() {
                metrics.set_upstream_connected(false);
                continue 'connect;
            }
        }
    }
    metrics.set_upstream_connected(false);
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unsigned_opt_ins_reach_the_session_configs_and_are_off_by_default() {
        let (node, parent) = (NodeId([1; 32]), NodeId([2; 32]));
        let default = RelayOptions::default();
        let s = default.server_config(node, Role::Street, "s");
        let c = default.client_config(node, Role::Street, "s", parent);
        assert_eq!((s.accept_unsigned_before, c.upload_unsigned), (None, false));
        assert!(s.blob_check.is_some(), "still the relay's blob check");
        let opted = RelayOptions {
            accept_unsigned_before: Some(1_764_000_000_000),
            upload_unsigned: true,
            ..RelayOptions::default()
        };
        let s = opted.server_config(node, Role::Street, "s");
        let c = opted.client_config(node, Role::Street, "s", parent);
        assert_eq!(
            (s.accept_unsigned_before, c.upload_unsigned),
            (Some(1_764_000_000_000), true)
        );
    }

    #[test]
    fn the_relay_serves_with_the_media_blob_check() {
        let config = server_config(NodeId([1; 32]), Role::Street, "street-002");
        let check = config.blob_check.expect("a relay checks blobs");
        assert_eq!(
            check(BlobKind::Photo, b"GPS 39.8927N 116.4284E"),
            Err("not a JPEG image".to_owned())
        );
        assert_eq!(
            check(BlobKind::Thumb, b""),
            Err("empty (0 bytes)".to_owned())
        );
        let photo = gridsync_media::process(
            include_bytes!("../../../fixtures/photos/street-640x427-gps.jpg"),
            &gridsync_media::Limits::default(),
        )
        .expect("processed");
        assert_eq!(check(BlobKind::Photo, &photo.photo.bytes), Ok(()));
        assert_eq!(check(BlobKind::Thumb, &photo.thumb.bytes), Ok(()));
        assert_eq!(
            check(BlobKind::Thumb, &photo.photo.bytes),
            Err("640x427 pixels, over the 320 px longest side of a stored thumbnail".to_owned())
        );
        // Everything else is the default configuration.
        let plain = ServerConfig::new(NodeId([1; 32]), Role::Street, "street-002");
        assert_eq!(config.limits, plain.limits);
        assert!(plain.blob_check.is_none());
    }

    /// Runs the real upstream loop of a street relay (with an empty store) towards `target`.
    fn spawn_upstream_loop(target: Upstream) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let store: SharedStore = Arc::new(Mutex::new(Store::in_memory().expect("a store")));
        let mut config = ClientConfig::new(NodeId([1; 32]), Role::Street, "street-002", target.id);
        config.follow = true;
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(
            store.clone(),
            ServerConfig::new(NodeId([1; 32]), Role::Street, "street-002"),
            Arc::new(Notify::new()),
            rx.clone(),
        ));
        let link = Link {
            shared,
            metrics: Arc::new(Metrics::default()),
            acked: Arc::new(watch::channel(0).0),
        };
        let task = tokio::spawn(upstream_loop(store, [7; 32], config, target, link, rx));
        (tx, task)
    }

    /// The time between consecutive instants.
    fn gaps(at: &[tokio::time::Instant]) -> Vec<Duration> {
        at.windows(2).map(|w| w[1].duration_since(w[0])).collect()
    }

    fn ms(waits: &[u64]) -> Vec<Duration> {
        waits.iter().copied().map(Duration::from_millis).collect()
    }

    /// Stops the loop and checks it ends without waiting out a backoff or a connect: at most
    /// the 2 s it gives its endpoint to close what is still open (a connect attempt left
    /// unanswered takes all of them).
    async fn stop_promptly(tx: watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
        let before = tokio::time::Instant::now();
        let _ = tx.send(true);
        task.await.expect("the loop ends");
        assert!(
            before.elapsed() <= Duration::from_secs(2),
            "{:?}",
            before.elapsed()
        );
    }

    /// Listens as an upstream (a district's identity) on 127.0.0.1, port 0.
    macro_rules! upstream_endpoint {
        () => {{
            let secret = [3; 32];
            let cert = gridsync_net::tls::certificate(&secret).expect("a certificate");
            let id = gridsync_net::tls::node_id_of(&cert.0).expect("its node id");
            let endpoint = server::endpoint(&secret, (std::net::Ipv4Addr::LOCALHOST, 0).into())
                .expect("an upstream endpoint");
            let addr = endpoint.local_addr().expect("its address");
            (endpoint, Upstream { addr, id })
        }};
    }

    /// The destination connection id of a QUIC client Initial packet (RFC 9000 §17.2), which
    /// stays the same for every packet of one connect attempt until the server answers.
    fn initial_dcid(packet: &[u8]) -> Option<&[u8]> {
        let first = *packet.first()?;
        // Long header, Initial (type 0 in the two bits after the fixed bit).
        if first & 0x80 == 0 || (first >> 4) & 0x03 != 0 {
            return None;
        }
        let len = usize::from(*packet.get(5)?);
        packet.get(6..6 + len)
    }

    // The loop's tests run on the paused clock: waits and timeouts pass at once, and every
    // instant below is exact (loopback delivers a datagram before its send returns, so the
    // clock never moves while a packet is on its way).

    /// An upstream that never answers: each connect gives up after `CONNECT_TIMEOUT`, then the
    /// loop waits 250 ms, 500 ms, 1 s, 2 s... before the next attempt, which the silent
    /// upstream sees as a new connection id.
    #[tokio::test(start_paused = true)]
    async fn an_unreachable_upstream_is_retried_with_doubling_waits() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a silent upstream");
        let target = Upstream {
            addr: silent.local_addr().expect("its address"),
            id: NodeId([9; 32]),
        };
        let (tx, task) = spawn_upstream_loop(target);
        let mut seen: Vec<Vec<u8>> = Vec::new();
        let mut attempts = Vec::new();
        let mut buf = [0u8; 2048];
        while attempts.len() < 5 {
            let (n, _) = silent.recv_from(&mut buf).await.expect("a packet");
            if let Some(dcid) = initial_dcid(&buf[..n]) {
                if !seen.iter().any(|s| s.as_slice() == dcid) {
                    seen.push(dcid.to_vec());
                    attempts.push(tokio::time::Instant::now());
                }
            }
        }
        let connect = gridsync_net::client::CONNECT_TIMEOUT;
        let expected: Vec<Duration> = ms(&[250, 500, 1_000, 2_000])
            .into_iter()
            .map(|wait| connect + wait)
            .collect();
        assert_eq!(gaps(&attempts), expected);
        stop_promptly(tx, task).await;
    }

    /// An upstream that accepts every connection and drops it as soon as a session starts: a
    /// connect that goes through does not reset the backoff, only a session that does would.
    #[tokio::test(start_paused = true)]
    async fn a_session_failing_after_a_connect_keeps_doubling_the_wait() {
        let (endpoint, target) = upstream_endpoint!();
        let (tx, task) = spawn_upstream_loop(target);
        let mut accepted = Vec::new();
        while accepted.len() < 6 {
            let incoming = endpoint.accept().await.expect("a connection");
            accepted.push(tokio::time::Instant::now());
            let conn = incoming.await.expect("a handshake");
            // The child has its connection and has begun its session.
            let _ = conn.accept_bi().await.expect("a control stream");
            conn.close(ErrorCode::Storage.as_u16().into(), b"storage failed");
        }
        assert_eq!(gaps(&accepted), ms(&[250, 500, 1_000, 2_000, 4_000]));
        stop_promptly(tx, task).await;
        endpoint.close(0u32.into(), b"");
    }

    /// A real upstream the relay is not enrolled at: the refusal (`NotEnrolled`, which
    /// retrying cannot cure) waits the longest backoff every time, from the first.
    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_waits_the_longest_backoff() {
        let (endpoint, target) = upstream_endpoint!();
        let (stop_upstream, upstream_shutdown) = watch::channel(false);
        let shared = Arc::new(Shared::new(
            Arc::new(Mutex::new(Store::in_memory().expect("a store"))),
            server_config(target.id, Role::District, "district"),
            Arc::new(Notify::new()),
            upstream_shutdown,
        ));
        let (tx, task) = spawn_upstream_loop(target);
        let mut accepted = Vec::new();
        let mut served = tokio::task::JoinSet::new();
        while accepted.len() < 4 {
            let incoming = endpoint.accept().await.expect("a connection");
            accepted.push(tokio::time::Instant::now());
            let conn = incoming.await.expect("a handshake");
            served.spawn(server::serve_connection(conn, shared.clone()));
        }
        assert_eq!(gaps(&accepted), ms(&[30_000, 30_000, 30_000]));
        let _ = stop_upstream.send(true);
        stop_promptly(tx, task).await;
        while served.join_next().await.is_some() {}
        endpoint.close(0u32.into(), b"");
    }
}
