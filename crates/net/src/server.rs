//! The parent side over QUIC: accepts connections, runs one [`ServerSession`] per control
//! stream, receives blob streams, and carries out what the session says. It only moves frames
//! and bytes; every decision is the session's.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridsync_core::NodeId;
use gridsync_proto::server::{self, BlobSink, ServerConfig, ServerOutput, ServerSession};
use gridsync_proto::{frame, BlobHeader, ErrorCode, FrameReader, Message, SyncStore};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::{watch, Mutex as AsyncMutex, Notify, Semaphore};

use crate::observe::{NoObserver, Observer, SessionEnd};
use crate::transport::{BLOB_CHUNK, CLOSE_GRACE};
pub use crate::transport::{
    BLOB_FLUSH, BLOB_HEADER_LIMIT, CONTROL_IDLE, HANDSHAKE_TIMEOUT, MAX_CONNECTIONS,
};
use crate::{now_ms, tls, transport, NetError, SharedStore};
use gridsync_proto::limits::{Limiter, NodeLimits};

/// What a running relay shares between its connections.
pub struct Shared {
    pub store: SharedStore,
    pub config: ServerConfig,
    /// Woken whenever a session commits new events or blobs (the upstream link waits on it).
    pub changed: Arc<Notify>,
    /// Counts the commits of new events at this node, by anyone: the sessions here, the
    /// upstream link's downloads, and other processes on the same store (the relay watches
    /// for those). Every session holding a `Follow` wakes on each change ([`Shared::committed`]).
    pub commits: watch::Sender<u64>,
    /// Woken whenever a session commits events or blobs: the upstream link's blob sessions
    /// wait on it (its following session waits on [`Shared::changed`]).
    pub blobs_changed: Arc<Notify>,
    /// Set to `true` to shut down: sessions end with [`ErrorCode::ShuttingDown`].
    pub shutdown: watch::Receiver<bool>,
    /// A session with no message on its control stream for this long ends with
    /// [`ErrorCode::Timeout`] ([`CONTROL_IDLE`] by default).
    pub control_idle: Duration,
    /// Connections served at once, handshakes included ([`MAX_CONNECTIONS`] by default): one
    /// more is refused with QUIC `CONNECTION_REFUSED` before any handshake.
    pub max_connections: usize,
    /// How long a handshake may take, and how long a connection may stay open with no session
    /// on it ([`HANDSHAKE_TIMEOUT`] by default): a peer that holds a slot without syncing is
    /// closed with [`ErrorCode::Timeout`].
    pub handshake_timeout: Duration,
    /// Per-node limits (connections at once, events per second), and each node's use of them.
    pub limiter: Mutex<Limiter>,
    /// Told of sessions, bytes, refusals and commit times (the relay's metrics and contact
    /// record); [`NoObserver`] by default.
    pub observer: Arc<dyn Observer>,
}

impl Shared {
    /// A relay's sharing with the default timeouts and limits.
    pub fn new(
        store: SharedStore,
        config: ServerConfig,
        changed: Arc<Notify>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            config,
            changed,
            commits: watch::Sender::new(0),
            blobs_changed: Arc::new(Notify::new()),
            shutdown,
            control_idle: CONTROL_IDLE,
            max_connections: MAX_CONNECTIONS,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            limiter: Mutex::new(Limiter::new(NodeLimits::default())),
            observer: Arc::new(NoObserver),
        }
    }

    /// New events were committed here: wakes every held `Follow` (and nothing else).
    pub fn committed(&self) {
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Sets the per-node limits.
    pub fn with_node_limits(mut self, limits: NodeLimits) -> Self {
        self.limiter = Mutex::new(Limiter::new(limits));
        self
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("control_idle", &self.control_idle)
            .field("max_connections", &self.max_connections)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Resolves once `rx` says shutdown (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Binds a QUIC server endpoint on `addr` with this node's identity.
pub fn endpoint(secret: &[u8; 32], addr: SocketAddr) -> Result<Endpoint, NetError> {
    let config = tls::server_config(secret, Arc::new(transport::server_config()))?;
    Endpoint::server(config, addr).map_err(|error| NetError::Bind { addr, error })
}

/// Accepts connections until shutdown, serving each on its own task; then waits for them.
///
/// At most [`Shared::max_connections`] are served at once: one more is refused before its
/// handshake (QUIC `CONNECTION_REFUSED`, which costs one packet); a burst of refusals is
/// logged once, when it begins, and counted when connections are accepted again.
pub async fn serve(endpoint: Endpoint, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let slots = Arc::new(Semaphore::new(
        shared.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    // Connections refused since the last one accepted.
    let mut refused: u64 = 0;
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let remote = incoming.remote_address();
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    if refused == 0 {
                        tracing::info!(%remote, max = shared.max_connections, "at the connection limit; refusing new connections");
                    }
                    refused += 1;
                    incoming.refuse();
                    continue;
                };
                if refused > 0 {
                    tracing::info!(refused, "accepting connections again");
                    refused = 0;
                }
                let shared = shared.clone();
                tasks.spawn(async move {
                    // The slot is free again when this connection is done with.
                    let _slot = slot;
                    let handshake = shared.handshake_timeout;
                    match tokio::time::timeout(handshake, incoming).await {
                        Err(_) => tracing::info!(%remote, secs = handshake.as_secs(), "handshake did not complete in time; dropped"),
                        Ok(Ok(conn)) => match serve_connection(conn, shared).await {
                            Err(e) if e.is_closed_with(ErrorCode::Done) => {
                                tracing::debug!(%remote, "connection closed")
                            }
                            Err(e) => tracing::info!(%remote, error = %e, "connection ended"),
                            Ok(()) => {}
                        },
                        Ok(Err(e)) => tracing::info!(%remote, error = %e, "handshake failed"),
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
    // Let every connection finish what it has in flight (each ends its session itself).
    while tasks.join_next().await.is_some() {}
    endpoint.close(ErrorCode::ShuttingDown.as_u16().into(), b"shutting down");
}

struct ConnState {
    conn: Connection,
    peer: NodeId,
    shared: Arc<Shared>,
    session: Mutex<Option<ServerSession>>,
    control: AsyncMutex<Option<SendStream>>,
    /// The cursor of the last `Down` page the current session sent.
    down_cursor: Mutex<Option<u64>>,
}

/// Serves one connection: its control streams one after the other, and its blob streams.
pub async fn serve_connection(conn: Connection, shared: Arc<Shared>) -> Result<(), NetError> {
    // Defensive only: the TLS verifier lets no handshake complete without an Ed25519 client
    // certificate (a client without one gets the alert certificate_required, PROTOCOL.md §2.2).
    let Some(peer) = tls::peer_node_id(&conn) else {
        conn.close(
            ErrorCode::NotEnrolled.as_u16().into(),
            b"no Ed25519 client certificate",
        );
        return Err(NetError::NoCertificate);
    };
    tracing::debug!(peer = %peer.short(), remote = %conn.remote_address(), "connection");
    let held = lock(&shared.limiter).connected(peer);
    if let Err(e) = held {
        tracing::info!(peer = %peer.short(), error = %e, "refused a connection over the node's limit");
        shared.observer.refused(ErrorCode::Busy);
        refuse_busy(&conn, e.to_string()).await;
        return Ok(());
    }
    let _held = Held {
        shared: &shared,
        peer,
    };
    let state = Arc::new(ConnState {
        conn: conn.clone(),
        peer,
        shared: shared.clone(),
        session: Mutex::new(None),
        control: AsyncMutex::new(None),
        down_cursor: Mutex::new(None),
    });
    let mut shutdown = shared.shutdown.clone();
    let mut blobs = tokio::task::JoinSet::new();
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    // Since when no session runs (a connection is for syncing; one that holds a slot without
    // a session is closed after the handshake timeout).
    let mut no_session_since = Some(tokio::time::Instant::now());
    let handshake = shared.handshake_timeout;
    let result = loop {
        let idle_until = no_session_since.map(|t| t + handshake);
        tokio::select! {
            _ = async {
                match current.as_mut() {
                    Some(c) => {
                        let _ = c.await;
                    }
                    None => std::future::pending().await,
                }
            }, if current.is_some() => {
                current = None;
                no_session_since = Some(tokio::time::Instant::now());
            }
            _ = async {
                match idle_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            }, if current.is_none() && idle_until.is_some() => {
                tracing::info!(peer = %peer.short(), ms = handshake.as_millis() as u64, "no session on the connection; closed");
                let reason = format!("no session started within {} ms", handshake.as_millis());
                conn.close(ErrorCode::Timeout.as_u16().into(), reason.as_bytes());
                break Ok(());
            }
            bi = conn.accept_bi() => {
                let (send, recv) = match bi {
                    Ok(s) => s,
                    Err(e) => break Err(NetError::from(e)),
                };
                // One session at a time: a new control stream starts once the previous
                // session has ended (a child opens the next one right after its `Bye`). A
                // previous session still open after CLOSE_GRACE is abandoned.
                no_session_since = None;
                let previous = current.take();
                let state = state.clone();
                current = Some(tokio::spawn(async move {
                    if let Some(mut previous) = previous {
                        if tokio::time::timeout(CLOSE_GRACE, &mut previous).await.is_err() {
                            tracing::info!(peer = %state.peer.short(), "a new session replaces one that did not end");
                            previous.abort();
                        }
                    }
                    if let Err(e) = run_control(&state, send, recv).await {
                        tracing::info!(peer = %state.peer.short(), error = %e, "session ended with an error");
                    }
                }));
            }
            uni = conn.accept_uni() => {
                let recv = match uni {
                    Ok(r) => r,
                    Err(e) => break Err(NetError::from(e)),
                };
                let state = state.clone();
                blobs.spawn(async move { receive_blob(&state, recv).await });
            }
            Some(_) = blobs.join_next(), if !blobs.is_empty() => {}
            _ = stopped(&mut shutdown) => {
                let out = with_session(&state, |s, _| s.abort(ErrorCode::ShuttingDown, "the relay is shutting down"));
                // Bounded: a control stream stuck in a write must not hold the shutdown.
                let _ = tokio::time::timeout(CLOSE_GRACE, execute(&state, out)).await;
                conn.close(ErrorCode::ShuttingDown.as_u16().into(), b"shutting down");
                break Ok(());
            }
        }
    };
    // Blob streams in flight keep what they received (each flushes before it ends).
    while blobs.join_next().await.is_some() {}
    if let Some(current) = current {
        let _ = current.await;
    }
    result
}

/// Refuses a connection with `Busy` the way a session refusal goes (§8.7): the child's
/// first control stream is answered with `Error { Busy }`, then the parent waits for the
/// child to close (at most [`CLOSE_GRACE`]) and closes with `Busy` itself. Closing at once
/// would race the child's first packets, which could then meet a connection already gone.
async fn refuse_busy(conn: &Connection, reason: String) {
    if let Ok(Ok((mut send, _recv))) = tokio::time::timeout(CLOSE_GRACE, conn.accept_bi()).await {
        let msg = Message::Error {
            code: ErrorCode::Busy,
            message: reason.clone(),
        };
        if let Ok(bytes) = frame::encode(&msg) {
            let _ = send.write_all(&bytes).await;
        }
        let _ = send.finish();
        let _ = tokio::time::timeout(CLOSE_GRACE, conn.closed()).await;
    }
    conn.close(ErrorCode::Busy.as_u16().into(), reason.as_bytes());
}

/// A connection counted against its node's limit, until dropped.
struct Held<'a> {
    shared: &'a Shared,
    peer: NodeId,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        lock(&self.shared.limiter).disconnected(&self.peer);
    }
}

/// Runs `f` on the current session with the store locked; no session, no outputs.
fn with_session(
    state: &ConnState,
    f: impl FnOnce(&mut ServerSession, &mut dyn SyncStore) -> Vec<ServerOutput>,
) -> Vec<ServerOutput> {
    crate::blocking(|| {
        let mut session = lock(&state.session);
        let Some(session) = session.as_mut() else {
            return Vec::new();
        };
        let mut store = lock(&state.shared.store);
        f(session, &mut *store)
    })
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the store half-written (SQLite rolls the
    // transaction back), so the data behind a poisoned lock is still good.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one session on a control stream, and tells the observer when it is granted and when
/// it ends.
async fn run_control(
    state: &Arc<ConnState>,
    send: SendStream,
    recv: RecvStream,
) -> Result<(), NetError> {
    let mut granted = false;
    let result = drive_control(state, send, recv, &mut granted).await;
    if granted {
        let ended = {
            let session = lock(&state.session);
            session
                .as_ref()
                .and_then(|s| Some((s.peer()?.clone(), s.stats().clone())))
        };
        if let Some((peer, stats)) = ended {
            let down_cursor = *lock(&state.down_cursor);
            crate::blocking(|| {
                state.shared.observer.session_ended(SessionEnd {
                    peer: &peer,
                    stats: &stats,
                    down_cursor,
                })
            });
        }
    }
    result
}

/// Tells the observer once, when the session's `Hello` has been accepted.
fn note_granted(state: &ConnState, granted: &mut bool) {
    if *granted {
        return;
    }
    let peer = lock(&state.session)
        .as_ref()
        .and_then(|s| s.peer().cloned());
    if let Some(peer) = peer {
        *granted = true;
        crate::blocking(|| state.shared.observer.session_started(&peer));
    }
}

async fn drive_control(
    state: &Arc<ConnState>,
    send: SendStream,
    mut recv: RecvStream,
    granted: &mut bool,
) -> Result<(), NetError> {
    *lock(&state.session) = Some(ServerSession::new(state.shared.config.clone(), state.peer));
    *lock(&state.down_cursor) = None;
    *state.control.lock().await = Some(send);
    let mut reader = FrameReader::with_limit(state.shared.config.limits.max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    let idle = state.shared.control_idle;
    // The session rechecks its peer's enrollment on this tick: a revocation ends it at once.
    let mut recheck = tokio::time::interval(Duration::from_millis(server::ENROLLMENT_CHECK_MS));
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.reset();
    let mut idle_until = tokio::time::Instant::now() + idle;
    // Commits here wake a held `Follow` (§8.10); so does the end of its hold.
    let mut commits = state.shared.commits.subscribe();
    loop {
        let hold_ends = lock(&state.session)
            .as_ref()
            .and_then(ServerSession::follow_deadline);
        let read = tokio::select! {
            // `RecvStream::read` is cancel-safe: nothing read is lost to the other branches.
            r = recv.read(&mut buf) => Ok(r),
            changed = commits.changed(), if hold_ends.is_some() => {
                if changed.is_err() {
                    // The relay is going away; shutdown ends the session.
                    std::future::pending::<()>().await;
                }
                let now = now_ms();
                let out = with_session(state, |s, store| s.wake(store, now));
                if execute(state, out).await {
                    break;
                }
                idle_until = tokio::time::Instant::now() + idle;
                continue;
            }
            _ = async {
                let wait = hold_ends.unwrap_or(0).saturating_sub(now_ms());
                tokio::time::sleep(Duration::from_millis(wait)).await
            }, if hold_ends.is_some() => {
                let now = now_ms();
                let out = with_session(state, |s, store| s.wake(store, now));
                if execute(state, out).await {
                    break;
                }
                idle_until = tokio::time::Instant::now() + idle;
                continue;
            }
            _ = recheck.tick() => {
                let out = with_session(state, |s, store| s.recheck_enrollment(&*store));
                if execute(state, out).await {
                    break;
                }
                continue;
            }
            // The child is silent while its Follow is held: the parent owes the answer.
            _ = tokio::time::sleep_until(idle_until), if hold_ends.is_none() => Err(()),
        };
        idle_until = tokio::time::Instant::now() + idle;
        let n = match read {
            Ok(Ok(Some(n))) => {
                state.shared.observer.frame_bytes(true, n as u64);
                n
            }
            Ok(Ok(None)) => {
                let rest = reader.finish();
                let out = with_session(state, |s, _| s.stream_finished(rest));
                execute(state, out).await;
                break;
            }
            Ok(Err(e)) => return Err(NetError::from(e)),
            Err(_) => {
                let out = with_session(state, |s, _| s.idle(idle.as_secs()));
                execute(state, out).await;
                break;
            }
        };
        reader.push(&buf[..n]);
        loop {
            let msg = match reader.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    let out = with_session(state, |s, _| s.frame_error(&e));
                    execute(state, out).await;
                    return Ok(());
                }
            };
            if let Message::Events { events, .. } = &msg {
                // Over its rate, a node waits here: nothing more is read from it (QUIC flow
                // control holds it back) and its `Ack` comes later; other nodes are not held.
                let wait =
                    lock(&state.shared.limiter).admit_events(state.peer, events.len(), now_ms());
                if wait > 0 {
                    tracing::debug!(peer = %state.peer.short(), events = events.len(), wait_ms = wait, "over its event rate; throttled");
                    let mut shutdown = state.shared.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                        // Shutdown ends the session (its connection says so) without waiting.
                        _ = stopped(&mut shutdown) => return Ok(()),
                    }
                }
            }
            let now = now_ms();
            let began = std::time::Instant::now();
            let out = with_session(state, |s, store| s.handle(msg, store, now));
            if out.iter().any(|o| {
                matches!(
                    o,
                    ServerOutput::Committed { .. } | ServerOutput::BlobCommitted { .. }
                )
            }) {
                state.shared.observer.committed_in(began.elapsed());
            }
            note_granted(state, granted);
            if execute(state, out).await {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Carries out a session's outputs; returns whether the session ended.
async fn execute(state: &ConnState, outputs: Vec<ServerOutput>) -> bool {
    let mut ended = false;
    for out in outputs {
        match out {
            ServerOutput::Send(msg) => {
                if let Message::Down { events, cursor, .. } = &msg {
                    state.shared.observer.events(false, events.len() as u64);
                    *lock(&state.down_cursor) = Some(*cursor);
                }
                send_message(state, &msg).await
            }
            ServerOutput::Committed { stored } => {
                state.shared.observer.events(true, u64::from(stored));
                state.shared.changed.notify_one();
                state.shared.blobs_changed.notify_one();
                state.shared.committed();
            }
            ServerOutput::BlobCommitted { .. } => {
                state.shared.changed.notify_one();
                state.shared.blobs_changed.notify_one();
            }
            ServerOutput::SendBlob(header) => send_fetched(state, header),
            ServerOutput::End { code, reason } => {
                ended = true;
                if code != ErrorCode::Done {
                    state.shared.observer.refused(code);
                }
                if let Some(mut send) = state.control.lock().await.take() {
                    let _ = send.finish();
                }
                if code != ErrorCode::Done {
                    // Give the child time to read the error, then close for it if it does not.
                    let conn = state.conn.clone();
                    tokio::spawn(async move {
                        if tokio::time::timeout(CLOSE_GRACE, conn.closed())
                            .await
                            .is_err()
                        {
                            conn.close(code.as_u16().into(), reason.as_bytes());
                        }
                    });
                }
            }
        }
    }
    ended
}

async fn send_message(state: &ConnState, msg: &Message) {
    let bytes = match frame::encode(msg) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a message");
            return;
        }
    };
    let mut control = state.control.lock().await;
    if let Some(send) = control.as_mut() {
        match send.write_all(&bytes).await {
            Ok(()) => state.shared.observer.frame_bytes(false, bytes.len() as u64),
            Err(e) => {
                tracing::info!(peer = %state.peer.short(), error = %e, "cannot send on the control stream")
            }
        }
    }
}

/// Receives one blob stream: its header frame, then bytes, made durable every
/// [`BLOB_FLUSH`] bytes and when the stream ends or breaks.
async fn receive_blob(state: &ConnState, mut recv: RecvStream) {
    let mut reader = FrameReader::new(BLOB_HEADER_LIMIT);
    let mut buf = vec![0u8; 64 * 1024];
    let header = loop {
        let body = reader
            .next_body()
            .and_then(|b| b.map(|b| frame::decode_blob_header(&b)).transpose());
        match body {
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(e) => {
                // Too long (8) or not decodable (7): no message, the blob cannot be named.
                let code = server::frame_error_code(&e);
                tracing::info!(peer = %state.peer.short(), error = %e, ?code, "bad blob header");
                let _ = recv.stop(code.as_u16().into());
                return;
            }
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => {
                state.shared.observer.blob_bytes(true, n as u64);
                reader.push(&buf[..n]);
            }
            Ok(None) | Err(_) => return,
        }
    };
    let mut pending = reader.take_rest();
    let begun: Option<Result<BlobSink, _>> = crate::blocking(|| {
        let mut session = lock(&state.session);
        let s = session.as_mut()?;
        let mut store = lock(&state.shared.store);
        Some(s.blob_begin(header, &mut *store))
    });
    let Some(begun) = begun else {
        // No session was ever started on this connection.
        let code = server::BLOB_WITHOUT_SESSION;
        tracing::info!(peer = %state.peer.short(), hash = %header.hash, "blob stream before any session");
        let _ = recv.stop(code.as_u16().into());
        return;
    };
    let mut sink = match begun {
        Ok(s) => {
            if s.at() > 0 {
                state.shared.observer.blob_resumed();
            }
            s
        }
        Err(e) => {
            let out = with_session(state, |s, _| s.blob_refused(&e));
            execute(state, out).await;
            let _ = recv.stop(e.code.as_u16().into());
            return;
        }
    };
    let flush = |sink: &mut BlobSink,
                 bytes: &mut Vec<u8>|
     -> Result<(), gridsync_proto::server::BlobStreamError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let r = crate::blocking(|| {
            let mut session = lock(&state.session);
            let Some(s) = session.as_mut() else {
                return Ok(());
            };
            let mut store = lock(&state.shared.store);
            s.blob_data(sink, bytes, &mut *store)
        });
        bytes.clear();
        r
    };
    loop {
        // Checked after every read: a byte past the blob's size is refused with the read
        // that brought it, not at the next flush.
        if pending.len() >= BLOB_FLUSH || !sink.fits(pending.len()) {
            if let Err(e) = flush(&mut sink, &mut pending) {
                let out = with_session(state, |s, _| s.blob_refused(&e));
                execute(state, out).await;
                let _ = recv.stop(e.code.as_u16().into());
                return;
            }
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => {
                state.shared.observer.blob_bytes(true, n as u64);
                pending.extend_from_slice(&buf[..n]);
            }
            Ok(None) => break,
            Err(e) => {
                // The stream broke: keep what arrived, the child resumes from there.
                if let Err(fe) = flush(&mut sink, &mut pending) {
                    tracing::warn!(error = %fe, "could not keep the partial blob");
                }
                tracing::info!(peer = %state.peer.short(), hash = %sink.header().hash, held = sink.at(), error = %e, "blob stream broke; keeping the bytes received");
                return;
            }
        }
    }
    if let Err(e) = flush(&mut sink, &mut pending) {
        let out = with_session(state, |s, _| s.blob_refused(&e));
        execute(state, out).await;
        return;
    }
    let began = std::time::Instant::now();
    let out = crate::blocking(|| {
        let mut session = lock(&state.session);
        match session.as_mut() {
            Some(s) => {
                let mut store = lock(&state.shared.store);
                s.blob_end(sink, &mut *store)
            }
            None => Vec::new(),
        }
    });
    if out
        .iter()
        .any(|o| matches!(o, ServerOutput::BlobCommitted { .. }))
    {
        state.shared.observer.committed_in(began.elapsed());
    }
    execute(state, out).await;
}

/// Answers a child's `Fetch` (PROTOCOL.md §8.11) with a unidirectional stream of our own: the
/// blob's header frame, then its bytes from the header's offset, read from the store
/// [`BLOB_CHUNK`] at a time (the store lock is held only for each read), then FIN. A store
/// that cannot give the bytes resets the stream with `Storage` (the child keeps what arrived
/// and resumes later). The stream runs on a task of its own, so the control stream goes on
/// meanwhile; it ends with the connection at the latest.
fn send_fetched(state: &ConnState, header: BlobHeader) {
    let conn = state.conn.clone();
    let store = state.shared.store.clone();
    let peer = state.peer;
    let observer = state.shared.observer.clone();
    tokio::spawn(async move {
        match send_fetched_blob(&conn, &store, header, &*observer).await {
            Ok(()) => {
                tracing::debug!(peer = %peer.short(), hash = %header.hash, bytes = header.size - header.offset, "fetched blob sent")
            }
            Err(e) => {
                tracing::info!(peer = %peer.short(), hash = %header.hash, error = %e, "a fetched blob's stream was not sent whole")
            }
        }
    });
}

async fn send_fetched_blob(
    conn: &Connection,
    store: &SharedStore,
    h: BlobHeader,
    observer: &dyn Observer,
) -> Result<(), NetError> {
    let mut stream = conn.open_uni().await?;
    let header = frame::encode_value("blob header", &h).map_err(NetError::Encode)?;
    stream.write_all(&header).await?;
    let mut at = h.offset;
    while at < h.size {
        let len = BLOB_CHUNK.min(usize::try_from(h.size - at).unwrap_or(BLOB_CHUNK));
        let chunk = match crate::blocking(|| lock(store).read_blob(&h.hash, at, len)) {
            Ok(Some(chunk)) if !chunk.is_empty() => chunk,
            other => {
                // The session saw the blob whole a moment ago; the store says otherwise now.
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => format!("the store holds fewer than {} bytes of it", h.size),
                };
                tracing::warn!(hash = %h.hash, at, error = %why, "cannot read a fetched blob; resetting its stream");
                let _ = stream.reset(ErrorCode::Storage.as_u16().into());
                return Ok(());
            }
        };
        stream.write_all(&chunk).await?;
        observer.blob_bytes(false, chunk.len() as u64);
        at += chunk.len() as u64;
    }
    stream.finish().map_err(NetError::Finish)?;
    Ok(())
}
