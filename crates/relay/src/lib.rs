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
use gridsync_proto::client::ClientConfig;
use gridsync_proto::server::ServerConfig;
use gridsync_proto::{BlobKind, ErrorCode, Role};
use gridsync_store::{Identity, Store, StoreError};
use tokio::sync::{watch, Notify};

/// How often a connected relay asks its upstream for news when nothing happened here.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
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
        role @ (Role::Street | Role::District) => Ok(role),
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
}

impl RelayHandle {
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
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            session_idle: server::CONTROL_IDLE,
        }
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
    let identity = store.identity()?;
    let role = role_of(&identity, db)?;
    let store: SharedStore = Arc::new(Mutex::new(store));
    let endpoint = server::endpoint(&identity.secret, listen)?;
    let local_addr = endpoint
        .local_addr()
        .map_err(|e| gridsync_net::NetError::Bind {
            addr: listen,
            error: e.to_string(),
        })?;
    let (tx, rx) = watch::channel(false);
    let changed = Arc::new(Notify::new());
    let shared = Arc::new(Shared {
        store: store.clone(),
        config: server_config(identity.node_id, role, identity.name.clone()),
        changed: changed.clone(),
        shutdown: rx.clone(),
        control_idle: options.session_idle,
    });
    tracing::info!(addr = %local_addr, node = %identity.node_id, role = role.as_str(), "relay listening");
    let node_id = identity.node_id;
    let task = tokio::spawn(async move {
        let up = upstream.map(|target| {
            let config =
                ClientConfig::new(identity.node_id, role, identity.name.clone(), target.id);
            tokio::spawn(upstream_loop(
                store,
                identity.secret,
                config,
                target,
                changed,
                rx,
            ))
        });
        server::serve(endpoint, shared).await;
        if let Some(up) = up {
            let _ = up.await;
        }
        tracing::info!("relay stopped");
    });
    Ok(RelayHandle {
        local_addr,
        node_id,
        shutdown: tx,
        task,
    })
}

/// Forwards to the upstream for as long as the relay runs: one session after another on one
/// connection (after every local change, and every [`POLL_INTERVAL`] for news from above),
/// reconnecting with exponential backoff after any failure.
async fn upstream_loop(
    store: SharedStore,
    secret: [u8; 32],
    config: ClientConfig,
    target: Upstream,
    changed: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
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
    let mut backoff = BACKOFF_MIN;
    let mut reported_down = false;
    let mut last_refusal: Option<String> = None;
    'connect: while !*shutdown.borrow() {
        let conn = tokio::select! {
            c = client::connect(&endpoint, &secret, target.addr, target.id) => c,
            _ = stopped(&mut shutdown) => break,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                if !reported_down {
                    tracing::warn!(upstream = %target.addr, error = %e, "upstream unreachable; holding everything and retrying");
                    reported_down = true;
                } else {
                    tracing::debug!(upstream = %target.addr, error = %e, "upstream still unreachable");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut shutdown) => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        tracing::info!(upstream = %target.addr, "connected upstream");
        reported_down = false;
        loop {
            let mut progress = |p| tracing::trace!(?p, "upstream progress");
            let result = tokio::select! {
                r = client::run_session(&conn, store.clone(), config.clone(), &options, &mut progress) => r,
                _ = stopped(&mut shutdown) => {
                    conn.close(ErrorCode::ShuttingDown.as_u16().into(), b"shutting down");
                    break 'connect;
                }
            };
            match result {
                Ok(report) => {
                    // Only a session that went through proves the upstream works: a refusal
                    // comes after a successful connect and must not reset the backoff.
                    backoff = BACKOFF_MIN;
                    last_refusal = None;
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
                    // too far ahead...) waits the longest backoff, and is logged once.
                    let permanent = match &e {
                        gridsync_net::NetError::Session(s) => !s.code().is_transient(),
                        _ => false,
                    };
                    let text = e.to_string();
                    if last_refusal.as_deref() != Some(text.as_str()) {
                        tracing::warn!(upstream = %target.addr, error = %text, "upstream session failed; retrying");
                        last_refusal = Some(text);
                    } else {
                        tracing::debug!(upstream = %target.addr, error = %text, "upstream session failed again");
                    }
                    if permanent {
                        backoff = BACKOFF_MAX;
                    }
                    conn.close(
                        ErrorCode::Unexpected.as_u16().into(),
                        b"session failed; reconnecting",
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut shutdown) => break 'connect,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue 'connect;
                }
            }
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = conn.closed() => continue 'connect,
                _ = stopped(&mut shutdown) => {
                    conn.close(ErrorCode::ShuttingDown.as_u16().into(), b"shutting down");
                    break 'connect;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
