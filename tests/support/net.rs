//! Helpers for scenarios over real loopback QUIC: relay and device stores made and enrolled
//! the way the command lines make them, relays started in-process on `127.0.0.1` port 0,
//! syncing, reading what a store holds, and waiting for a condition with a deadline (never a
//! fixed sleep).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gridsync_core::{BlobHash, EventId, NodeId, Scope};
use gridsync_device::{Device, DeviceError, PhotoInput, SyncTarget, SystemEnv};
use gridsync_net::client::{SyncOptions, SyncReport};
use gridsync_proto::Role;
use gridsync_relay::{RelayHandle, Upstream};
use gridsync_store::Store;

/// How long a scenario waits for anything: generous, since nothing here is timed, only
/// awaited (a relay backing off after an outage, a busy machine).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Time between two checks of a condition.
const POLL: Duration = Duration::from_millis(20);

/// `127.0.0.1`, any free port.
pub fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    gridsync_net::now_ms()
}

/// Checks `condition` every few milliseconds until it holds; panics naming `what` if it still
/// does not after [`DEADLINE`].
pub async fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_until_within(DEADLINE, what, condition).await;
}

/// [`wait_until`] with another deadline.
pub async fn wait_until_within(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {} s waiting until {what}",
            timeout.as_secs()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `attempt` every few milliseconds until it returns `Some`, for at most `timeout`;
/// returns the last answer (`None` when it never succeeded).
pub async fn retry_within<T, F, Fut>(timeout: Duration, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = attempt().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A sample photo from `fixtures/photos/`.
pub fn photo(name: &str) -> PhotoInput {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/photos")
        .join(name);
    PhotoInput::from_path(&path, &Default::default())
        .unwrap_or_else(|e| panic!("fixture photo {}: {e}", path.display()))
}

/// Creates a relay store (`role` is `street` or `district`), as `gridsync-relay init` does;
/// returns its node id.
pub fn init_relay(path: &Path, name: &str, role: &str) -> NodeId {
    Device::init_node(path, name, role, "", SystemEnv)
        .unwrap_or_else(|e| panic!("init {role} relay {}: {e}", path.display()))
        .node_id()
}

/// Creates a device store for `grid`, as `gridsync init` does; returns its node id.
pub fn init_device(path: &Path, name: &str, grid: &str) -> NodeId {
    let grid = grid.parse().expect("grid code");
    Device::init(path, name, grid)
        .unwrap_or_else(|e| panic!("init device {}: {e}", path.display()))
        .node_id()
}

/// Enrolls `node` at the relay whose store is `relay_db` (a separate connection: fine while
/// the relay runs), as `gridsync-relay enroll` does.
pub fn enroll(relay_db: &Path, node: NodeId, role: Role, scope: &str) {
    let scope: Scope = scope.parse().expect("scope");
    Store::open(relay_db)
        .expect("open relay store")
        .enroll(&node, role, &scope, now_ms())
        .expect("enroll");
}

/// Revokes `node` at the relay whose store is `relay_db`.
pub fn revoke(relay_db: &Path, node: NodeId) {
    let revoked = Store::open(relay_db)
        .expect("open relay store")
        .revoke(&node, now_ms())
        .expect("revoke");
    assert!(revoked, "{node} was not enrolled");
}

/// Starts the relay on `db`, on 127.0.0.1 port 0, forwarding to `upstream` if given.
pub async fn start_relay(db: &Path, upstream: Option<&RelayHandle>) -> RelayHandle {
    start_relay_on(db, loopback(), upstream.map(upstream_of))
        .await
        .unwrap_or_else(|e| panic!("start relay {}: {e}", db.display()))
}

/// Starts the relay on `db` listening on `listen`.
pub async fn start_relay_on(
    db: &Path,
    listen: SocketAddr,
    upstream: Option<Upstream>,
) -> Result<RelayHandle, gridsync_relay::RelayError> {
    gridsync_relay::start(db, listen, upstream).await
}

/// The relay as an upstream to forward to.
pub fn upstream_of(relay: &RelayHandle) -> Upstream {
    Upstream {
        addr: relay.local_addr,
        id: relay.node_id,
    }
}

/// The relay as a sync target, pinned to its real node id.
pub fn target(relay: &RelayHandle) -> SyncTarget {
    SyncTarget {
        addr: relay.local_addr,
        relay_id: relay.node_id,
    }
}

/// One sync session of `device` with `target`.
pub async fn try_sync<E: gridsync_device::Env>(
    device: &Device<E>,
    target: SyncTarget,
    options: &SyncOptions,
) -> Result<SyncReport, DeviceError> {
    device.sync(target, options, &mut |_| {}).await
}

/// One sync session of `device` with `relay`, which must succeed.
pub async fn sync<E: gridsync_device::Env>(device: &Device<E>, relay: &RelayHandle) -> SyncReport {
    try_sync(device, target(relay), &SyncOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{} syncing with {}: {e}", device.name(), relay.local_addr))
}

/// Whether `grid` lies in `scope` (both as text).
fn in_scope(scope: &Scope, grid: Option<&gridsync_core::GridCode>) -> bool {
    grid.is_some_and(|g| scope.contains(g))
}

/// The incident JSON of every incident of the store at `path` whose grid lies in `scope`,
/// serialized, keyed by incident id: two stores show the same incidents iff these are equal.
pub fn views_in(path: &Path, scope: &str) -> BTreeMap<String, String> {
    let scope: Scope = scope.parse().expect("scope");
    let store = Store::open(path).expect("open store");
    store
        .incidents()
        .expect("list incidents")
        .iter()
        .filter(|s| in_scope(&scope, s.grid()))
        .map(|s| {
            (
                s.id.to_string(),
                serde_json::to_string(&s.view()).expect("incident JSON"),
            )
        })
        .collect()
}

/// The ids of every event the store at `path` holds (through its incidents).
pub fn event_ids(path: &Path) -> BTreeSet<EventId> {
    let store = Store::open(path).expect("open store");
    store
        .incidents()
        .expect("list incidents")
        .into_iter()
        .flat_map(|s| s.events)
        .collect()
}

/// Every blob (photo and thumbnail) the photos of the store at `path` name, added ones and
/// removed ones alike.
pub fn photo_blobs(path: &Path) -> BTreeSet<BlobHash> {
    let store = Store::open(path).expect("open store");
    store
        .incidents()
        .expect("list incidents")
        .iter()
        .flat_map(|s| s.photos.values().flat_map(|p| [p.meta.hash, p.meta.thumb]))
        .collect()
}

/// The bytes of blob `hash` in the store at `path`, if held.
pub fn blob_bytes(path: &Path, hash: &BlobHash) -> Option<Vec<u8>> {
    Store::open(path)
        .expect("open store")
        .blob(hash)
        .expect("read blob")
}

/// Whether the store at `path` holds every blob in `hashes`.
pub fn holds_blobs<'a>(path: &Path, hashes: impl IntoIterator<Item = &'a BlobHash>) -> bool {
    let store = Store::open(path).expect("open store");
    hashes
        .into_iter()
        .all(|h| store.blob(h).expect("read blob").is_some())
}

/// A store path in `dir`.
pub fn db(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.db"))
}

/// A UDP proxy on loopback that makes a poor mobile link out of a good one: it drops,
/// duplicates and reorders datagrams both ways, decided by a seeded generator (the same
/// decisions for the same traffic). Dropping it stops the proxy.
#[derive(Debug)]
pub struct LossyLink {
    /// Where clients send to reach the target through the link.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a [`LossyLink`] mistreats datagrams, in percent.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub drop_pct: u32,
    pub duplicate_pct: u32,
    /// Held back and sent after the next datagram.
    pub reorder_pct: u32,
}

impl LossyLink {
    /// A link to `target` (one client at a time is enough for the tests).
    pub async fn start(target: SocketAddr, how: Impairment, seed: u64) -> Self {
        let front = tokio::net::UdpSocket::bind(loopback())
            .await
            .expect("bind the link's front");
        let back = tokio::net::UdpSocket::bind(loopback())
            .await
            .expect("bind the link's back");
        let addr = front.local_addr().expect("front address");
        let task = tokio::spawn(async move {
            let mut rng = seed | 1;
            let mut roll = move || {
                // xorshift64*: small, seeded, good enough to pick datagrams.
                rng ^= rng >> 12;
                rng ^= rng << 25;
                rng ^= rng >> 27;
                (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32 % 100
            };
            let mut client: Option<SocketAddr> = None;
            let mut held_up: Option<Vec<u8>> = None;
            let mut held_down: Option<Vec<u8>> = None;
            let mut a = vec![0u8; 65_536];
            let mut b = vec![0u8; 65_536];
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { return };
                        client = Some(from);
                        let d = a[..n].to_vec();
                        for out in impair(d, &mut held_up, how, &mut roll) {
                            let _ = back.send_to(&out, target).await;
                        }
                    }
                    r = back.recv_from(&mut b) => {
                        let Ok((n, _)) = r else { return };
                        let Some(to) = client else { continue };
                        let d = b[..n].to_vec();
                        for out in impair(d, &mut held_down, how, &mut roll) {
                            let _ = front.send_to(&out, to).await;
                        }
                    }
                }
            }
        });
        Self { addr, task }
    }
}

/// What to send for one datagram: nothing, it, it twice, or it and one held back before.
fn impair(
    d: Vec<u8>,
    held: &mut Option<Vec<u8>>,
    how: Impairment,
    roll: &mut impl FnMut() -> u32,
) -> Vec<Vec<u8>> {
    if roll() < how.drop_pct {
        return Vec::new();
    }
    if held.is_none() && roll() < how.reorder_pct {
        *held = Some(d);
        return Vec::new();
    }
    let mut out = vec![d.clone()];
    if roll() < how.duplicate_pct {
        out.push(d);
    }
    out.extend(held.take());
    out
}
