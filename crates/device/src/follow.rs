//! Live delivery on a handheld: [`Device::follow`] holds a connection to the relay, keeps a
//! `Follow` open on it (PROTOCOL.md §8.10) so that the relay pushes each event of the grid as
//! it commits, and turns what arrives into [`Notice`]s: a dispatch to this handheld's staff
//! member or force, an urgent case of its grid, a decision on one of its own reports.
//!
//! It runs until told to stop, reconnecting by itself (with backoff) after any failure; a
//! reconnecting follower resumes from its stored cursor, so it misses nothing. What the app
//! records meanwhile (on another connection to the store, or in another process) is noticed
//! through SQLite's `data_version` and uploaded by a new session on the same connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridsync_core::{
    is_decision, Event, EventId, FieldValue, IncidentId, IncidentState, NodeId, Payload, Severity,
};
use gridsync_net::client::{self, SyncOptions, SyncProgress};
use gridsync_proto::client::{ClientConfig, Progress, Summary};
use gridsync_store::Store;
use tokio::sync::watch;

use crate::{Device, Env, Result, SyncTarget};

/// How often a follower looks whether the app committed something to upload: a local check
/// (SQLite's `data_version`), no network.
pub const LOCAL_CHECK: Duration = Duration::from_millis(100);
/// The first and the longest wait before reconnecting.
pub const RECONNECT_MIN: Duration = Duration::from_millis(250);
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Why a [`Notice`] is raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// The incident was dispatched to this handheld's staff member or to its force.
    Dispatch,
    /// An urgent case of this handheld's grid: reported, raised to urgent, or escalated.
    Urgent,
    /// A platform's decision (accepted, rejected, dispatched elsewhere, escalated, verified,
    /// closed, evaluated) on a report this handheld made.
    Decision,
}

impl NoticeKind {
    /// The kind as the CLI prints it: `dispatch`, `urgent`, `decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Dispatch => "dispatch",
            NoticeKind::Urgent => "urgent",
            NoticeKind::Decision => "decision",
        }
    }
}

/// Something that arrived which the handheld's user should see now.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub incident: IncidentId,
    /// The event that raised it.
    pub event: EventId,
    /// Who wrote that event (an operator's platform, another handheld).
    pub author: String,
    /// What the event did, in a few words (`dispatched to force:firefighter`).
    pub what: String,
    /// The incident as stored once the page arrived.
    pub state: IncidentState,
}

/// What [`Device::follow`] reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowUpdate {
    /// Connected to the relay (again).
    Connected { addr: SocketAddr },
    /// A session caught up: uploaded what was here, downloaded what was there, and now holds
    /// a `Follow`. `summary` is that session's so far.
    CaughtUp { summary: Summary },
    /// A notice for the user.
    Notice(Box<Notice>),
    /// The connection or a session failed; the next try is in `retry_in`.
    Disconnected { error: String, retry_in: Duration },
    /// A session's progress, as [`Device::sync`] reports it.
    Progress(SyncProgress),
}

/// Who this handheld is in its grid's roster, for telling a dispatch to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Whom {
    /// The staff member's name, if the roster names this handheld.
    pub staff: Option<String>,
    /// Their force's wire name (`firefighter`), if the roster names this handheld.
    pub force: Option<String>,
}

impl Whom {
    /// Whether an assignee string (`staff:NAME`, `force:FORCE`, or a department) names this
    /// handheld's staff member or force.
    pub fn is_assignee(&self, assignee: &str) -> bool {
        match gridsync_core::Assignee::parse(assignee) {
            Ok(gridsync_core::Assignee::Staff(name)) => self.staff.as_deref() == Some(&name),
            Ok(gridsync_core::Assignee::Force(force)) => {
                self.force.as_deref() == Some(force.as_str())
            }
            Ok(gridsync_core::Assignee::Department(_)) | Err(_) => false,
        }
    }
}

/// What `event` means to the handheld `me` (who is `whom` in the roster), given the state of
/// its incident: at most one notice, the most specific (dispatch, then urgent, then
/// decision). Its own events raise none.
pub fn classify(
    me: &NodeId,
    whom: &Whom,
    event: &Event,
    state: &IncidentState,
) -> Option<(NoticeKind, String)> {
    if event.origin == *me {
        return None;
    }
    if let Payload::Assigned { assignee, .. } = &event.payload {
        if whom.is_assignee(assignee) {
            return Some((NoticeKind::Dispatch, format!("dispatched to {assignee}")));
        }
    }
    let urgent_now = state.severity.value() == Some(&Severity::Urgent);
    match &event.payload {
        Payload::Reported(r) if r.severity == Severity::Urgent => {
            return Some((
                NoticeKind::Urgent,
                format!("urgent {} reported", r.category),
            ));
        }
        Payload::Edited {
            value: FieldValue::Severity(Severity::Urgent),
            ..
        } => return Some((NoticeKind::Urgent, "raised to urgent".into())),
        Payload::Escalated { level, .. } if urgent_now => {
            return Some((
                NoticeKind::Urgent,
                format!("urgent case escalated to {level}"),
            ));
        }
        _ => {}
    }
    let mine = state.report.as_ref().is_some_and(|r| r.stamp.origin == *me);
    if mine && is_decision(&event.payload) {
        return Some((NoticeKind::Decision, decision_words(&event.payload)));
    }
    None
}

fn decision_words(p: &Payload) -> String {
    match p {
        Payload::StatusChanged { status, .. } => format!("status {status}"),
        Payload::Assigned { assignee, .. } => format!("dispatched to {assignee}"),
        Payload::Escalated { level, .. } => format!("escalated to {level}"),
        Payload::Evaluated { score, verdict, .. } => format!("evaluated {score} ({verdict})"),
        other => other.kind().to_owned(),
    }
}

impl<E: Env> Device<E> {
    /// Follows the relay until `stop` says `true` (or its sender is dropped): one session
    /// after another on one connection, each uploading what is here, downloading what is
    /// there, then holding a `Follow` that the relay answers as events of this grid commit;
    /// `on` hears each [`FollowUpdate`], notices included. Reconnects by itself after any
    /// failure, waiting [`RECONNECT_MIN`] doubling to [`RECONNECT_MAX`]; returns `Ok` when
    /// stopped. A refusal that retrying cannot cure (not enrolled, revoked) is returned.
    ///
    /// The future holds nothing of `self` (it is `Send` though a `Device` is not `Sync`), so
    /// an app can spawn it and go on using the device meanwhile.
    pub fn follow<'a>(
        &self,
        target: SyncTarget,
        stop: watch::Receiver<bool>,
        on: &'a mut (dyn FnMut(FollowUpdate) + Send),
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'a {
        let path = self.store.path().to_owned();
        let identity = self.identity.clone();
        follow_store(path, identity, target, stop, on)
    }
}

/// [`Device::follow`] on the store at `path`, as the node `identity`.
async fn follow_store(
    path: std::path::PathBuf,
    identity: gridsync_store::Identity,
    target: SyncTarget,
    mut stop: watch::Receiver<bool>,
    on: &mut (dyn FnMut(FollowUpdate) + Send),
) -> Result<()> {
    let store: Arc<Mutex<Store>> = Arc::new(Mutex::new(Store::open(&path)?));
    let shared: gridsync_net::SharedStore = store.clone();
    let mut config = ClientConfig::new(
        identity.node_id,
        identity.role,
        identity.name.clone(),
        target.relay_id,
    );
    // Photos go on a connection of their own (`photo_loop`), so that what this handheld
    // reports and what is pushed to it never waits behind a photo on a slow link.
    let mut photos = config.clone();
    photos.download = false;
    // Asking which photos are safe (PROTOCOL.md §8.12) matters only to a handheld that
    // prunes (as the setting stood when following began).
    if identity.role == gridsync_proto::Role::Device {
        photos.held_query = store_setting(&store, crate::PRUNE_PHOTOS);
    }
    config.follow = true;
    config.blobs = false;
    let me = identity.node_id;
    let bind: SocketAddr = if target.addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = client::endpoint(bind)?;
    let options = SyncOptions::default();
    let kick = Arc::new(tokio::sync::Notify::new());
    kick.notify_one();
    // Aborted when this returns, however it returns (a refusal ends following at once).
    let mut photo_task = AbortOnDrop(tokio::spawn(photo_loop(
        store.clone(),
        endpoint.clone(),
        identity.secret,
        photos,
        target,
        kick.clone(),
        stop.clone(),
    )));
    let mut wait = RECONNECT_MIN;
    let stopped = |rx: &watch::Receiver<bool>| *rx.borrow() || rx.has_changed().is_err();
    'connect: while !stopped(&stop) {
        let conn = tokio::select! {
            c = client::connect_follower(&endpoint, &identity.secret, target.addr, target.relay_id) => c,
            _ = stop.wait_for(|s| *s) => break,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                on(FollowUpdate::Disconnected {
                    error: e.to_string(),
                    retry_in: wait,
                });
                if sleep_or_stop(wait, &mut stop).await {
                    break;
                }
                wait = (wait * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        on(FollowUpdate::Connected { addr: target.addr });
        loop {
            let version = lock(&store).data_version()?;
            let mut progress = |p: SyncProgress| {
                if let SyncProgress::Session(Progress::Received { events }) = &p {
                    let found = notices(&store, &me, events);
                    // The full photos of a case dispatched to this handheld's staff member
                    // or force come down, and the thumbnails of the page's photos (the photo
                    // session fetches both).
                    want_dispatched_photos(&store, &found);
                    kick.notify_one();
                    for n in found {
                        on(FollowUpdate::Notice(Box::new(n)));
                    }
                }
                on(FollowUpdate::Progress(p));
            };
            let local_change = async {
                let mut tick = tokio::time::interval(LOCAL_CHECK);
                loop {
                    tick.tick().await;
                    match lock(&store).data_version() {
                        Ok(v) if v != version => break,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot check the store for changes");
                        }
                    }
                }
            };
            let mut stop_session = stop.clone();
            let until = async {
                tokio::select! {
                    () = local_change => {}
                    _ = stop_session.wait_for(|s| *s) => {}
                }
            };
            let result = client::run_session_until(
                &conn,
                shared.clone(),
                config.clone(),
                &options,
                &mut progress,
                until,
            )
            .await;
            match result {
                Ok(report) => {
                    wait = RECONNECT_MIN;
                    on(FollowUpdate::CaughtUp {
                        summary: report.summary,
                    });
                    if stopped(&stop) {
                        conn.close(gridsync_proto::ErrorCode::Done.as_u16().into(), b"done");
                        break 'connect;
                    }
                    // Something was recorded here: the next session uploads its events,
                    // the photo session its photos.
                    kick.notify_one();
                }
                Err(e) => {
                    // The relay refused for a reason retrying cannot cure (not
                    // enrolled, revoked, out of scope): following cannot go on.
                    if let gridsync_net::NetError::Session(
                        gridsync_proto::client::SessionError::Refused { code, .. },
                    ) = &e
                    {
                        if !code.is_transient() {
                            return Err(e.into());
                        }
                    }
                    on(FollowUpdate::Disconnected {
                        error: e.to_string(),
                        retry_in: wait,
                    });
                    conn.close(
                        gridsync_proto::ErrorCode::Unexpected.as_u16().into(),
                        b"session failed; reconnecting",
                    );
                    if sleep_or_stop(wait, &mut stop).await {
                        break 'connect;
                    }
                    wait = (wait * 2).min(RECONNECT_MAX);
                    continue 'connect;
                }
            }
        }
    }
    // Stopped: the photo session ends its session and returns by itself.
    let _ = (&mut photo_task.0).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(())
}

/// Sends the photos and thumbnails waiting here, in full sessions on a connection of its
/// own, each time `kick` is notified, until none is left or the relay takes no more (what
/// it refused goes again at the next kick). After a failure it waits, then tries again.
async fn photo_loop(
    store: Arc<Mutex<Store>>,
    endpoint: quinn::Endpoint,
    secret: [u8; 32],
    config: ClientConfig,
    target: SyncTarget,
    kick: Arc<tokio::sync::Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let options = SyncOptions::default();
    let mut wait = RECONNECT_MIN;
    loop {
        tokio::select! {
            _ = kick.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if *stop.borrow() {
            return;
        }
        let conn = tokio::select! {
            c = client::connect(&endpoint, &secret, target.addr, target.relay_id) => c,
            _ = stop.wait_for(|s| *s) => return,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "relay unreachable for photos; retrying");
                if sleep_or_stop(wait, &mut stop).await {
                    return;
                }
                wait = (wait * 2).min(RECONNECT_MAX);
                kick.notify_one();
                continue;
            }
        };
        loop {
            let mut progress = |p| tracing::trace!(?p, "photo session progress");
            let result = tokio::select! {
                r = client::run_session(&conn, store.clone() as gridsync_net::SharedStore, config.clone(), &options, &mut progress) => r,
                _ = stop.wait_for(|s| *s) => {
                    conn.close(gridsync_proto::ErrorCode::Done.as_u16().into(), b"stopping");
                    return;
                }
            };
            if let Ok(r) = &result {
                if r.summary.blobs_safe > 0 {
                    prune_learned(&store, &config.node);
                }
            }
            match result {
                // More may wait (an offer takes at most 256): another session at once.
                Ok(r) if r.summary.blobs_up > 0 => {
                    wait = RECONNECT_MIN;
                }
                Ok(_) => {
                    wait = RECONNECT_MIN;
                    conn.close(gridsync_proto::ErrorCode::Done.as_u16().into(), b"done");
                    break;
                }
                Err(e) => {
                    tracing::info!(error = %e, "photo session failed; retrying");
                    if sleep_or_stop(wait, &mut stop).await {
                        return;
                    }
                    wait = (wait * 2).min(RECONNECT_MAX);
                    kick.notify_one();
                    break;
                }
            }
        }
    }
}

/// A store setting, off when unset or unreadable (logged).
fn store_setting(store: &Mutex<Store>, name: &str) -> bool {
    match lock(store).setting(name) {
        Ok(on) => on.unwrap_or(false),
        Err(e) => {
            tracing::warn!(error = %e, name, "cannot read a setting; taking it as off");
            false
        }
    }
}

/// After a photo session learned photos safe (PROTOCOL.md §8.12): with the setting on, prunes
/// them, as a sync does at its end; a failure is logged (the photos stay, and the next
/// session's prune tries again).
fn prune_learned(store: &Mutex<Store>, me: &NodeId) {
    if !store_setting(store, crate::PRUNE_PHOTOS) {
        return;
    }
    let mut store = lock(store);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if let Err(e) = store.prune_photos(me, now_ms) {
        tracing::warn!(error = %e, "pruning the photos the district holds failed");
    }
}

/// The notices the events `ids` (just stored) raise for the handheld `me`.
fn notices(store: &Mutex<Store>, me: &NodeId, ids: &[EventId]) -> Vec<Notice> {
    let store = lock(store);
    let whom = whom(&store, me);
    let mut out = Vec::new();
    for id in ids {
        let event = match store.event(id) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a received event");
                continue;
            }
        };
        let state = match store.incident(&event.incident) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a received incident");
                continue;
            }
        };
        if let Some((kind, what)) = classify(me, &whom, &event, &state) {
            out.push(Notice {
                kind,
                incident: event.incident,
                event: *id,
                author: event.author.clone(),
                what,
                state,
            });
        }
    }
    out
}

/// Records as wanted the full photos of the cases `notices` dispatch to this handheld.
fn want_dispatched_photos(store: &Mutex<Store>, notices: &[Notice]) {
    let now = gridsync_net::now_ms();
    let mut store = lock(store);
    for n in notices.iter().filter(|n| n.kind == NoticeKind::Dispatch) {
        for p in n.state.visible_photos() {
            if let Err(e) = store.want_blob(&p.meta.hash, gridsync_store::BlobKind::Photo, now) {
                tracing::warn!(error = %e, "cannot record a photo to fetch");
            }
        }
    }
}

/// Who `me` is in the roster held here (nobody, if the roster does not name its handheld).
fn whom(store: &Store, me: &NodeId) -> Whom {
    match store.staff_of_device(me) {
        Ok(Some(m)) => Whom {
            staff: Some(m.name),
            force: Some(m.force.as_str().to_owned()),
        },
        Ok(None) => Whom::default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the roster");
            Whom::default()
        }
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleeps `wait`; returns whether `stop` said stop meanwhile.
async fn sleep_or_stop(wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let woken = tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    woken || *stop.borrow()
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
