//! Syncing a handheld with its street relay over QUIC.
//!
//! One call runs one session: events up first, then thumbnails, then photos, then the
//! download of the device's grid, then the blobs the device fetches (the thumbnails of its
//! grid it lacks, and the photos wanted, [`Device::fetch_blob`]). It opens a connection of its own to the store file, so the
//! app can go on reading (and recording) while it runs; whatever was committed stays
//! committed if the network drops, and the next sync resumes from there.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use gridsync_core::{BlobHash, NodeId};
use gridsync_net::client::{self, SyncOptions, SyncProgress, SyncReport};
use gridsync_proto::client::{ClientConfig, Progress};
use gridsync_proto::ErrorCode;
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
        let mut config = ClientConfig::new(
            self.identity.node_id,
            role,
            self.identity.name.clone(),
            target.relay_id,
        );
        // A handheld asks which of its photos are safe (PROTOCOL.md §8.12) only when it
        // prunes: otherwise the answer changes nothing here.
        if role == gridsync_proto::Role::Device {
            config.held_query = self.prunes_photos()?;
        }
        let report = sync_store(
            self.store.path(),
            &self.identity.secret,
            config,
            target.addr,
            options,
            progress,
        )
        .await?;
        self.prune_after_sync()?;
        Ok(report)
    }

    /// With the setting on (a handheld's [`Device::set_prune_photos`]), prunes what the
    /// session just learned safe (PROTOCOL.md §8.12), on a connection of its own (a sync
    /// takes `&self`).
    pub(crate) fn prune_after_sync(&self) -> Result<()> {
        if self.identity.role != gridsync_proto::Role::Device || !self.prunes_photos()? {
            return Ok(());
        }
        let mut store = Store::open(self.store.path())?;
        store.prune_photos(&self.identity.node_id, self.env.now_ms())?;
        Ok(())
    }
}

impl<E: Env> Device<E> {
    /// The bytes of blob `hash` (with `thumb`: the thumbnail of photo `hash`), fetched from
    /// the relay when they are not held here: the blob is wanted ([`Device::want_blob`]) and
    /// one sync session runs, which fetches it after its download (PROTOCOL.md §8.11). A held
    /// blob is returned at once, with no sync. The relay's refusal (a blob it does not hold
    /// yet, or one of another grid: that want is dropped), a stream that broke off (its bytes
    /// are kept, and the next fetch resumes from them) or bytes that do not hash right come
    /// back as errors that say so.
    pub async fn fetch_blob(
        &mut self,
        target: SyncTarget,
        hash: &BlobHash,
        thumb: bool,
        options: &SyncOptions,
        progress: &mut (dyn FnMut(SyncProgress) + Send),
    ) -> Result<Vec<u8>> {
        let wanted = self.blob_hash(hash, thumb)?;
        if let Some(bytes) = self.store.blob(&wanted)? {
            return Ok(bytes);
        }
        self.want_blob(&wanted, false)?;
        // What became of this blob's fetch, as the session reported it.
        let mut outcome: Option<Progress> = None;
        let mut watch = |p: SyncProgress| {
            if let SyncProgress::Session(
                p @ (Progress::FetchRefused { hash, .. }
                | Progress::FetchPartial { hash, .. }
                | Progress::FetchDiscarded { hash, .. }
                | Progress::Fetched { hash, .. }),
            ) = &p
            {
                if *hash == wanted {
                    outcome = Some(p.clone());
                }
            }
            progress(p);
        };
        self.sync(target, options, &mut watch).await?;
        if let Some(bytes) = self.store.blob(&wanted)? {
            return Ok(bytes);
        }
        Err(match outcome {
            Some(Progress::FetchRefused { code, message, .. }) => {
                if code == ErrorCode::OutOfScope {
                    // Never this device's to fetch: do not ask again in every sync.
                    self.unwant_blob(&wanted)?;
                }
                DeviceError::FetchRefused {
                    hash: wanted,
                    code,
                    message,
                }
            }
            Some(Progress::FetchPartial { held, size, .. }) => DeviceError::FetchIncomplete {
                hash: wanted,
                held,
                size,
            },
            Some(Progress::FetchDiscarded { reason, .. }) => DeviceError::FetchDiscarded {
                hash: wanted,
                reason,
            },
            _ => DeviceError::NotFetched(wanted),
        })
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
