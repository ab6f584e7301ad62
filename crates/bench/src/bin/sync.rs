//! Benchmark: the sync protocol's efficiency, against raw quinn in the same run.
//!
//! ```text
//! cargo run --release -p gridsync-bench --bin sync -- [--sizes 10000,100000,1000000] [--n 15]
//! ```
//!
//! 1. **Up-to-date sync.** A device that holds everything its relay holds syncs: the session's
//!    round trips after the handshake (the goal: one) and the bytes on the wire (UDP payload
//!    both ways, from quinn's connection statistics; the goal: under 1 KB), the handshake
//!    shown apart.
//! 2. **One new event at scale.** For each size, a device store and its relay's store hold
//!    that many events (already synced); the device records one new report and syncs; `n`
//!    times. The session time (after the handshake) must stay flat as the stores grow: cost
//!    follows what is new, not what is stored.
//!
//! Baseline, measured in the same run with the same TLS identities: a raw quinn connection
//! on which the client sends 100 bytes on a bidirectional stream and the server echoes them
//! (one round trip). Ratios are gridsync / baseline. Nothing here fails on timing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use gridsync_bench::{scratch_parent, Args, Summary};
use gridsync_core::{
    command, Category, GridCode, Hlc, IncidentId, NodeId, Report, Scope, Severity, Writer,
};
use gridsync_net::client::{self, SyncOptions};
use gridsync_net::{tls, SharedStore};
use gridsync_proto::client::ClientConfig;
use gridsync_proto::Role;
use gridsync_store::{Identity, Store};

type Error = Box<dyn std::error::Error>;

const GRID: &str = "110101/002/014/03";
/// Untimed syncs of one new event before the timed ones (caches, first checkpoints).
const WARMUP: usize = 5;
/// Events per setup transaction.
const SETUP_BATCH: usize = 5_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: sync [--sizes 10000,100000,1000000] [--n 15]");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sync: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sync: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn identity(seed: u8, name: &str, role: Role, scope: Option<Scope>) -> Identity {
    let secret = [seed; 32];
    Identity {
        secret,
        node_id: NodeId(SigningKey::from_bytes(&secret).verifying_key().to_bytes()),
        name: name.into(),
        role,
        scope,
    }
}

/// A device writing reports.
struct Reporter {
    writer: Writer,
    grid: GridCode,
    n: u64,
}

impl Reporter {
    fn next(&mut self, now: u64) -> Result<Vec<gridsync_core::Event>, Error> {
        self.n += 1;
        let id = IncidentId::new_v7(now, (self.n as u128).to_be_bytes()[6..].try_into()?);
        let payloads = command::plan_report(
            Report {
                category: Category::from_catalogue("garbage")?,
                description: format!("Bags by gate {}", self.n),
                location: None,
                observed_at: None,
                severity: Severity::Normal,
            },
            vec![],
        )?;
        Ok(payloads
            .into_iter()
            .map(|p| self.writer.write(id, &self.grid, p, now))
            .collect())
    }
}

/// A device store and its relay's store, both holding `size` events of the device.
fn build(dir: &Path, size: usize) -> Result<(Identity, Identity, Reporter), Error> {
    let grid: GridCode = GRID.parse()?;
    let device = identity(7, "patrol-7", Role::Device, Some(Scope::from(&grid)));
    let relay = identity(9, "street-002", Role::Street, None);
    let mut d = Store::create(&dir.join("device.db"))?;
    d.set_identity(&device)?;
    let mut r = Store::create(&dir.join("relay.db"))?;
    r.set_identity(&relay)?;
    r.enroll(&device.node_id, Role::Device, &Scope::from(&grid), now_ms())?;
    let mut reporter = Reporter {
        writer: Writer::signing(&device.secret, device.name.clone(), 1, Hlc::default()),
        grid,
        n: 0,
    };
    // Both stores start checkpointed, as a long-running node's would be.
    // Old events: a day ago, one millisecond apart.
    let start = now_ms() - 86_400_000;
    let mut written = 0;
    while written < size {
        let mut batch = Vec::with_capacity(SETUP_BATCH);
        while batch.len() < SETUP_BATCH && written < size {
            batch.extend(reporter.next(start + written as u64)?);
            written += 1;
        }
        d.append(&batch, &[], Some(reporter.writer.clock_last()))?;
        let scope = Scope::from(&reporter.grid);
        let admitted = gridsync_proto::Admission {
            from: device.node_id,
            scope: &scope,
            origins: gridsync_proto::Origins::Only(device.node_id),
            max_events: usize::MAX,
            max_drift_ms: gridsync_core::hlc::DEFAULT_MAX_DRIFT_MS,
            accept_unsigned_before: None,
            authority: gridsync_proto::Authority::Unchecked,
        }
        .admit_events(&batch, now_ms())?;
        r.append_received(&admitted, &[])?;
    }
    // The relay acknowledged all of them.
    d.advance_cursor(
        gridsync_store::UPSTREAM,
        gridsync_store::ACKED_OWN_SEQ,
        written as u64,
    )?;
    Ok((device, relay, reporter))
}

struct Run {
    session: Duration,
    round_trips: u64,
    handshake_bytes: u64,
    session_bytes: u64,
    events_up: u64,
}

/// One sync on a new connection. With `warm`, a first session runs on the connection before
/// the measured one, so the measured bytes are the protocol's own, without the handshake's
/// tail (the client's certificate flight, acknowledgements) and quinn's path-MTU probes.
async fn sync_once(
    endpoint: &quinn::Endpoint,
    store: &SharedStore,
    device: &Identity,
    relay: (SocketAddr, NodeId),
    warm: bool,
) -> Result<Run, Error> {
    let conn = client::connect(endpoint, &device.secret, relay.0, relay.1).await?;
    let config = ClientConfig::new(device.node_id, Role::Device, device.name.clone(), relay.1);
    if warm {
        client::run_session(
            &conn,
            store.clone(),
            config.clone(),
            &SyncOptions::default(),
            &mut |_| {},
        )
        .await?;
        // Let the last acknowledgements and probes go out before counting.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hs = conn.stats();
    let handshake_bytes = hs.udp_tx.bytes + hs.udp_rx.bytes;
    let t = Instant::now();
    let report = client::run_session(
        &conn,
        store.clone(),
        config,
        &SyncOptions::default(),
        &mut |_| {},
    )
    .await?;
    let session = t.elapsed();
    if warm {
        // Count the acknowledgement of the last message too.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let st = conn.stats();
    conn.close(0u32.into(), b"done");
    Ok(Run {
        session,
        round_trips: report.summary.round_trips,
        handshake_bytes,
        session_bytes: st.udp_tx.bytes + st.udp_rx.bytes - handshake_bytes,
        events_up: report.summary.events_up,
    })
}

/// The raw-quinn baseline: connect, echo 100 bytes once. Returns (echo time, echo bytes).
async fn baseline(secret: &[u8; 32], n: usize) -> Result<(Summary, u64), Error> {
    let server_secret = [3u8; 32];
    let server_id = NodeId(
        SigningKey::from_bytes(&server_secret)
            .verifying_key()
            .to_bytes(),
    );
    let config = tls::server_config(&server_secret, Arc::new(gridsync_net::transport::config()))?;
    let server = quinn::Endpoint::server(config, (std::net::Ipv4Addr::LOCALHOST, 0).into())?;
    let addr = server.local_addr()?;
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    if let Ok(bytes) = recv.read_to_end(1024).await {
                        let _ = send.write_all(&bytes).await;
                        let _ = send.finish();
                    }
                }
            });
        }
    });
    let endpoint = client::endpoint((std::net::Ipv4Addr::UNSPECIFIED, 0).into())?;
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..n {
        let conn = client::connect(&endpoint, secret, addr, server_id).await?;
        let hs = conn.stats();
        let t = Instant::now();
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&[0u8; 100]).await?;
        send.finish()?;
        let echoed = recv.read_to_end(1024).await?;
        times.push(ms(t.elapsed()));
        if echoed.len() != 100 {
            return Err("the echo server answered short".into());
        }
        let st = conn.stats();
        bytes = st.udp_tx.bytes + st.udp_rx.bytes - hs.udp_tx.bytes - hs.udp_rx.bytes;
        conn.close(0u32.into(), b"done");
    }
    Ok((Summary::of(&times).ok_or("no samples")?, bytes))
}

async fn run(args: Vec<String>) -> Result<(), Error> {
    let args = Args::parse(args, &["--sizes", "--n"])?;
    let n: usize = args.get("--n", 15)?;
    let sizes: String = args.get("--sizes", "10000,100000,1000000".to_string())?;
    let sizes: Vec<usize> = sizes
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let scratch = tempfile::tempdir_in(scratch_parent())?;
    println!(
        "sync benchmark: {n} timed syncs per size; stores in {}",
        scratch.path().display()
    );

    let (base, base_bytes) = baseline(&[5u8; 32], n).await?;
    println!(
        "baseline (raw quinn, 100-byte echo after the handshake): p50 {:.2} ms, {} bytes on the wire",
        base.p50, base_bytes
    );
    println!();
    println!(
        "{:>9}  {:>10}  {:>10}  {:>8}  {:>11}  {:>13}  {:>10}",
        "events", "setup s", "p50 ms", "p99 ms", "x baseline", "round trips", "bytes"
    );
    let mut flat = Vec::new();
    let mut up_to_date: Option<Run> = None;
    for &size in &sizes {
        let dir = tempfile::tempdir_in(scratch.path())?;
        let t = Instant::now();
        let (device, relay, mut reporter) = build(dir.path(), size)?;
        let setup = t.elapsed();
        let handle = gridsync_relay::start(
            &dir.path().join("relay.db"),
            (std::net::Ipv4Addr::LOCALHOST, 0).into(),
            None,
        )
        .await?;
        let target = (handle.local_addr, relay.node_id);
        let store: SharedStore = Arc::new(Mutex::new(Store::open(&dir.path().join("device.db"))?));
        let endpoint = client::endpoint((std::net::Ipv4Addr::UNSPECIFIED, 0).into())?;
        // Warm-up: the first pull walks past everything the relay holds from this device.
        sync_once(&endpoint, &store, &device, target, false).await?;
        let up = sync_once(&endpoint, &store, &device, target, true).await?;
        if up.events_up != 0 {
            return Err("the up-to-date sync uploaded events".into());
        }
        let mut times = Vec::new();
        let mut trips = Vec::new();
        let mut bytes = Vec::new();
        for i in 0..n + WARMUP {
            let events = reporter.next(now_ms())?;
            let mut direct = Store::open(&dir.path().join("device.db"))?;
            direct.append(&events, &[], Some(reporter.writer.clock_last()))?;
            drop(direct);
            let r = sync_once(&endpoint, &store, &device, target, false).await?;
            if r.events_up != 1 {
                return Err(format!("expected 1 event up, got {}", r.events_up).into());
            }
            if i < WARMUP {
                continue;
            }
            times.push(ms(r.session));
            trips.push(r.round_trips);
            bytes.push(r.session_bytes);
        }
        let s = Summary::of(&times).ok_or("no samples")?;
        println!(
            "{:>9}  {:>10.1}  {:>10.2}  {:>8.2}  {:>11.2}  {:>13}  {:>10}",
            size,
            setup.as_secs_f64(),
            s.p50,
            s.p99,
            s.p50 / base.p50,
            trips.iter().max().copied().unwrap_or(0),
            bytes.iter().max().copied().unwrap_or(0)
        );
        flat.push((size, s.p50));
        if up_to_date.is_none() {
            up_to_date = Some(up);
        }
        handle.stop().await;
    }
    if let Some(up) = up_to_date {
        println!();
        println!(
            "up-to-date sync: {} round trip(s) after the handshake (goal 1); {} bytes on the wire for the session, measured on a warm connection (goal < 1024); handshake and first session {} bytes; session {:.2} ms = {:.2}x the raw echo",
            up.round_trips,
            up.session_bytes,
            up.handshake_bytes,
            ms(up.session),
            ms(up.session) / base.p50
        );
    }
    if let (Some(first), Some(last)) = (flat.first(), flat.last()) {
        println!(
            "one new event: p50 at {} events / p50 at {} events = {:.2} (flat = about 1)",
            last.0,
            first.0,
            last.1 / first.1
        );
    }
    Ok(())
}
