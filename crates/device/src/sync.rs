//! Syncing a handheld with its street relay over QUIC.
//!
//! One call runs one session: events up first, then thumbnails, then photos, then the
//! download of the device's grid. It opens a connection of its own to the store file, so the
//! app can go on reading (and recording) while it runs; whatever was committed stays
//! committed if the network drops, and the next sync resumes from there.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use gridsync_core::NodeId;
use gridsync_net::client::{self, SyncOptions, SyncProgress, SyncReport};
use gridsync_proto::client::ClientConfig;
use gridsync_store::Store;

use crate::{Device, DeviceError, Env, Result};

/// Where to sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTarget {
    /// The relay's address.
    pub addr: SocketAddr,
    /// The relay's node id: the connection is refused unless the relay proves it.
    pub relay_id: NodeId,
}

impl<E: Env> Device<E> {
    /// Runs one sync session with the relay, reporting progress as it goes.
    pub async fn sync(
        &self,
        target: SyncTarget,
        options: &SyncOptions,
        progress: &mut (dyn FnMut(SyncProgress) + Send),
    ) -> Result<SyncReport> {
        let role = self.identity.role;
        sync_store(
            self.store.path(),
            &self.identity.secret,
            ClientConfig::new(
                self.identity.node_id,
                role,
                self.identity.name.clone(),
                target.relay_id,
            ),
            target.addr,
            options,
            progress,
        )
        .await
    }
}

/// Runs one sync session of the store at `path` as the node `config` describes.
pub async fn sync_store(
    path: &std::path::Path,
    secret: &[u8; 32],
    config: ClientConfig,
    addr: SocketAddr,
    options: &SyncOptions,
    progress: &mut (dyn FnMut(SyncProgress) + Send),
) -> Result<SyncReport> {
    let store: gridsync_net::SharedStore = Arc::new(Mutex::new(Store::open(path)?));
    let bind: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = client::endpoint(bind)?;
    let conn = client::connect(&endpoint, secret, addr, config.parent).await?;
    progress(SyncProgress::Connected { addr });
    let result = client::run_session(&conn, store, config, options, progress).await;
    if result.is_ok() {
        conn.close(gridsync_proto::ErrorCode::Done.as_u16().into(), b"done");
    }
    // Let the close reach the relay (bounded: an unreachable relay must not hold us).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(result?)
}

impl From<gridsync_net::NetError> for DeviceError {
    fn from(e: gridsync_net::NetError) -> Self {
        DeviceError::Sync(e)
    }
}
