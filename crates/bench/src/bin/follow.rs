//! Benchmark: live delivery (PROTOCOL.md §8.10). How long a dispatch made at the street takes
//! to reach the following handheld as a notice, on loopback and over an EDGE-like link, and
//! what an idle follower costs on a metered link.
//!
//! ```text
//! cargo run --release -p gridsync-bench --bin follow -- [--n 20] [--idle-secs 60]
//! ```
//!
//! A street relay and a handheld enrolled at it, in a scratch folder. The handheld follows
//! (`Device::follow`), either straight to the relay on loopback or through a UDP proxy this
//! benchmark runs: 200 kbit/s each way, 150 ms each way (300 ms round trip), 2% of datagrams
//! dropped at random (seeded). Each round the handheld reports (its follower uploads it by
//! itself), then the street dispatches that report from another connection to its store (as
//! `gridsync-relay edit` does from another process); the time from that commit to the
//! handheld's `dispatched to …` notice is the latency. The floor of each is printed beside
//! it: on loopback the relay's own check for other connections' commits (`LOCAL_CHECK`, half
//! of it on average); over the link that plus the one-way delay and the serialisation of the
//! bytes the push took.
//!
//! Idle cost: with nothing happening the follower holds a `Follow` that the relay answers
//! every 25 s; the proxy counts the bytes both ways over `--idle-secs` and the figure is
//! scaled to an hour. Nothing here fails on timing.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridsync_bench::{scratch_parent, Args, Summary};
use gridsync_core::{Category, Change, IncidentId, Severity, Status};
use gridsync_device::{Device, FollowUpdate, NewReport, NoticeKind, SyncTarget};
use gridsync_proto::Role;
use gridsync_store::Store;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

type Error = Box<dyn std::error::Error>;

const GRID: &str = "110101/002/014/03";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: follow [--n 20] [--idle-secs 60]");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("follow: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("follow: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A link's shape, one way.
#[derive(Debug, Clone, Copy)]
struct Shape {
    bits_per_sec: u64,
    delay: Duration,
    drop_pct: u32,
}

const EDGE: Shape = Shape {
    bits_per_sec: 200_000,
    delay: Duration::from_millis(150),
    drop_pct: 2,
};

/// A UDP proxy in front of `target`: each direction a FIFO at `shape`'s rate, then its
/// delay; `shape.drop_pct` of the datagrams lost. Counts the UDP payload bytes both ways.
struct Link {
    addr: SocketAddr,
    bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    async fn start(target: SocketAddr, shape: Option<Shape>, seed: u64) -> Result<Self, Error> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = bytes.clone();
        let task = tokio::spawn(async move {
            let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Default::default();
            let (up_tx, up_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
            let (down_tx, down_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
            let sender = |sock: Arc<UdpSocket>,
                          mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
                          to: Arc<std::sync::Mutex<Option<SocketAddr>>>,
                          fixed: Option<SocketAddr>| async move {
                while let Some((at, d)) = rx.recv().await {
                    tokio::time::sleep_until(at.into()).await;
                    let dest = fixed.or(*to.lock().unwrap_or_else(|p| p.into_inner()));
                    if let Some(dest) = dest {
                        let _ = sock.send_to(&d, dest).await;
                    }
                }
            };
            tokio::spawn(sender(back.clone(), up_rx, client.clone(), Some(target)));
            tokio::spawn(sender(front.clone(), down_rx, client.clone(), None));
            let mut rng = seed | 1;
            let mut roll = move || {
                rng ^= rng >> 12;
                rng ^= rng << 25;
                rng ^= rng >> 27;
                (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32 % 100
            };
            // When each direction's queue is free again (the rate limit).
            let (mut up_free, mut down_free) = (Instant::now(), Instant::now());
            let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            let schedule = |free: &mut Instant, n: usize| -> Instant {
                match shape {
                    None => Instant::now(),
                    Some(s) => {
                        let start = (*free).max(Instant::now());
                        let wire = Duration::from_nanos(
                            (n as u64 + 28) * 8 * 1_000_000_000 / s.bits_per_sec,
                        );
                        *free = start + wire;
                        *free + s.delay
                    }
                }
            };
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { return };
                        *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                        if shape.is_some_and(|s| roll() < s.drop_pct) { continue; }
                        let at = schedule(&mut up_free, n);
                        let _ = up_tx.send((at, a[..n].to_vec()));
                    }
                    r = back.recv_from(&mut b) => {
                        let Ok((n, _)) = r else { return };
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                        if shape.is_some_and(|s| roll() < s.drop_pct) { continue; }
                        let at = schedule(&mut down_free, n);
                        let _ = down_tx.send((at, b[..n].to_vec()));
                    }
                }
            }
        });
        Ok(Self { addr, bytes, task })
    }
}

fn report(i: usize) -> NewReport {
    NewReport {
        category: Category::from_catalogue("fire-hazard").expect("a catalogue code"),
        description: format!("Cardboard stacked against meter box {i}"),
        location: None,
        severity: Severity::High,
        observed_at: None,
        photos: vec![],
    }
}

/// Waits for the next update `pick` takes.
async fn next<T>(
    rx: &mut mpsc::UnboundedReceiver<FollowUpdate>,
    within: Duration,
    mut pick: impl FnMut(&FollowUpdate) -> Option<T>,
) -> Result<T, Error> {
    let found = tokio::time::timeout(within, async {
        while let Some(u) = rx.recv().await {
            if let Some(t) = pick(&u) {
                return Some(t);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err("the follower stopped".into()),
        Err(_) => Err(format!("nothing within {within:?}").into()),
    }
}

/// A street relay in `dir`, a handheld enrolled at it following it through a [`Link`] of
/// `shape`, caught up.
struct Rig {
    street_db: std::path::PathBuf,
    street_id: gridsync_core::NodeId,
    relay: gridsync_relay::RelayHandle,
    link: Link,
    rx: mpsc::UnboundedReceiver<FollowUpdate>,
    stop: watch::Sender<bool>,
    follower: tokio::task::JoinHandle<Result<(), gridsync_device::DeviceError>>,
    /// The following handheld's store, for recording on it.
    pda: Device,
}

impl Rig {
    async fn start(dir: &std::path::Path, shape: Option<Shape>, seed: u64) -> Result<Self, Error> {
        let (street_db, pda_db) = (dir.join("street.db"), dir.join("pda.db"));
        let street = Device::init_node(
            &street_db,
            "street-002",
            "street",
            "",
            gridsync_device::SystemEnv,
        )?;
        let street_id = street.node_id();
        drop(street);
        let pda = Device::init(&pda_db, "sun-hao", GRID.parse()?)?;
        Store::open(&street_db)?.enroll(
            &pda.node_id(),
            Role::Device,
            &GRID.parse()?,
            gridsync_net::now_ms(),
        )?;
        let relay = gridsync_relay::start(&street_db, "127.0.0.1:0".parse()?, None).await?;
        let link = Link::start(relay.local_addr, shape, seed).await?;
        let target = SyncTarget {
            addr: link.addr,
            relay_id: street_id,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let device = Device::open(&pda_db)?;
        let follower = tokio::spawn(async move {
            device
                .follow(target, stopped, &mut |u| {
                    let _ = tx.send(u);
                })
                .await
        });
        next(&mut rx, Duration::from_secs(60), following).await?;
        Ok(Self {
            street_db,
            street_id,
            relay,
            link,
            rx,
            stop,
            follower,
            pda,
        })
    }
}

/// The follower holds a `Follow` again.
fn following(u: &FollowUpdate) -> Option<()> {
    matches!(
        u,
        FollowUpdate::CaughtUp { .. }
            | FollowUpdate::Progress(gridsync_net::client::SyncProgress::Session(
                gridsync_proto::client::Progress::Following
            ))
    )
    .then_some(())
}

struct Measured {
    latency_ms: Vec<f64>,
    push_bytes: Vec<f64>,
    idle_bytes: Option<(u64, Duration)>,
}

async fn measure(
    dir: &std::path::Path,
    shape: Option<Shape>,
    n: usize,
    idle: Duration,
) -> Result<Measured, Error> {
    let Rig {
        street_db,
        relay,
        link,
        mut rx,
        stop,
        follower,
        mut pda,
        ..
    } = Rig::start(dir, shape, 7).await?;
    let mut latency_ms = Vec::new();
    let mut push_bytes = Vec::new();
    for i in 0..n {
        let id: IncidentId = pda.report(report(i))?;
        // The follower notices the report and uploads it; wait until the street holds it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if Store::open(&street_db)?.incident(&id)?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                return Err("the report never reached the street".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Accepted first (its notice awaited, so the follower holds a Follow again), then the
        // timed dispatch.
        let mut desk = Device::open(&street_db)?;
        desk.edit(id, vec![Change::Status(Status::Accepted)], vec![])?;
        next(&mut rx, Duration::from_secs(60), |u| match u {
            FollowUpdate::Notice(n) if n.incident == id && n.what == "status accepted" => Some(()),
            _ => None,
        })
        .await?;
        // The page after the notice's comes back empty before the Follow is held again.
        tokio::time::sleep(Duration::from_millis(if shape.is_some() {
            1_000
        } else {
            50
        }))
        .await;
        let before = link.bytes.load(Ordering::Relaxed);
        desk.edit(
            id,
            vec![
                Change::Status(Status::Dispatched),
                Change::Assign {
                    assignee: "sanitation".into(),
                    due: None,
                },
            ],
            vec![],
        )?;
        // Timed from the dispatch's commit.
        let t1 = Instant::now();
        drop(desk);
        next(&mut rx, Duration::from_secs(60), |u| match u {
            FollowUpdate::Notice(notice)
                if notice.kind == NoticeKind::Decision
                    && notice.incident == id
                    && notice.what.starts_with("dispatched to") =>
            {
                Some(())
            }
            _ => None,
        })
        .await?;
        latency_ms.push(t1.elapsed().as_secs_f64() * 1e3);
        push_bytes.push((link.bytes.load(Ordering::Relaxed) - before) as f64);
    }
    let idle_bytes = if idle.is_zero() {
        None
    } else {
        // Let the last exchanges settle, then count.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = link.bytes.load(Ordering::Relaxed);
        tokio::time::sleep(idle).await;
        Some((link.bytes.load(Ordering::Relaxed) - before, idle))
    };
    let _ = stop.send(true);
    let _ = follower.await;
    relay.stop().await;
    Ok(Measured {
        latency_ms,
        push_bytes,
        idle_bytes,
    })
}

/// Over the EDGE link: the follower uploads a 12 MP report's photo (its photo session, on a
/// connection of its own) while another handheld of the grid reports an urgent case at the
/// street; returns (ms to the urgent notice, ms until the photo was held at the street).
async fn urgent_during_photo(dir: &std::path::Path) -> Result<(f64, f64), Error> {
    let Rig {
        street_db,
        street_id,
        relay,
        link: _link,
        mut rx,
        stop,
        follower,
        mut pda,
    } = Rig::start(dir, Some(EDGE), 11).await?;
    let mut other = Device::init(&dir.join("other.db"), "wang-li", GRID.parse()?)?;
    Store::open(&street_db)?.enroll(
        &other.node_id(),
        Role::Device,
        &GRID.parse()?,
        gridsync_net::now_ms(),
    )?;
    let photo_path = gridsync_bench::workspace_root().join("fixtures/photos/garbage-12mp-rot6.jpg");
    let mut big = report(0);
    big.photos = vec![gridsync_device::PhotoInput::from_path(
        &photo_path,
        &Default::default(),
    )?];
    let id = pda.report(big)?;
    let hash = pda.get(id)?.ok_or("no incident")?.visible_photos()[0]
        .meta
        .hash;
    let started = Instant::now();
    // Let the photo get going on the link, then the urgent report at the street.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut urgent = report(1);
    urgent.severity = Severity::Urgent;
    let urgent_id = other.report(urgent)?;
    let t0 = Instant::now();
    let direct = SyncTarget {
        addr: relay.local_addr,
        relay_id: street_id,
    };
    other.sync(direct, &Default::default(), &mut |_| {}).await?;
    next(&mut rx, Duration::from_secs(120), |u| match u {
        FollowUpdate::Notice(n) if n.kind == NoticeKind::Urgent && n.incident == urgent_id => {
            Some(())
        }
        _ => None,
    })
    .await?;
    let urgent_ms = t0.elapsed().as_secs_f64() * 1e3;
    let photo_ms = loop {
        if Device::open(&street_db)?.blob(&hash, false).is_ok() {
            break started.elapsed().as_secs_f64() * 1e3;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the photo never reached the street".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = stop.send(true);
    let _ = follower.await;
    relay.stop().await;
    Ok((urgent_ms, photo_ms))
}

fn line(name: &str, m: &Measured, floor_ms: f64) {
    let Some(s) = Summary::of(&m.latency_ms) else {
        return;
    };
    let bytes = Summary::of(&m.push_bytes).map(|b| b.p50).unwrap_or(0.0);
    println!(
        "{name:<10} dispatch -> notice: p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  (n={})  floor {:>6.1} ms  p50/floor {:>5.2}  bytes per push p50 {:.0}",
        s.p50,
        s.p99,
        s.max,
        s.n,
        floor_ms,
        s.p50 / floor_ms,
        bytes
    );
}

async fn run(args: Vec<String>) -> Result<(), Error> {
    let args = Args::parse(args, &["--n", "--idle-secs"])?;
    let n: usize = args.get("--n", 20)?;
    let idle = Duration::from_secs(args.get("--idle-secs", 60)?);
    let check_ms = gridsync_relay::LOCAL_CHECK.as_secs_f64() * 1e3;
    println!("live delivery: a street dispatch reaching the following handheld ({n} rounds each)");
    let scratch = tempfile::tempdir_in(scratch_parent())?;
    let lo_dir = scratch.path().join("loopback");
    std::fs::create_dir_all(&lo_dir)?;
    let lo = measure(&lo_dir, None, n, Duration::ZERO).await?;
    // The relay notices another connection's commit within LOCAL_CHECK: half of it on average.
    line("loopback", &lo, check_ms / 2.0);
    let edge_dir = scratch.path().join("edge");
    std::fs::create_dir_all(&edge_dir)?;
    let edge = measure(&edge_dir, Some(EDGE), n, idle).await?;
    let bytes = Summary::of(&edge.push_bytes).map(|b| b.p50).unwrap_or(0.0);
    let floor = check_ms / 2.0
        + EDGE.delay.as_secs_f64() * 1e3
        + bytes * 8.0 / EDGE.bits_per_sec as f64 * 1e3;
    line("EDGE", &edge, floor);
    println!("           (EDGE: 200 kbit/s, 150 ms each way, 2% loss; goal: within 1 s on loopback, 3 s over EDGE)");
    let busy_dir = scratch.path().join("busy");
    std::fs::create_dir_all(&busy_dir)?;
    let (urgent_ms, photo_ms) = urgent_during_photo(&busy_dir).await?;
    println!(
        "urgent while uploading a photo (EDGE): the notice {urgent_ms:.0} ms after the other handheld's report; the follower's 12 MP report photo held at the street after {:.1} s",
        photo_ms / 1e3
    );
    if let Some((b, over)) = edge.idle_bytes {
        let per_hour = b as f64 * 3600.0 / over.as_secs_f64();
        println!(
            "idle follower: {b} bytes both ways in {} s (UDP payload) = {:.1} KB per hour",
            over.as_secs(),
            per_hour / 1000.0
        );
    }
    Ok(())
}
