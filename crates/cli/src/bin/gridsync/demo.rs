//! `gridsync demo`: the whole story on loopback, on embedded photos, with no set-up.
//!
//! A district relay, two street relays under it and four handhelds in four grids run in this
//! process over real QUIC on 127.0.0.1. The handhelds report offline with real photos; an
//! officer and the sub-center edit the same field concurrently (a conflict, kept visible);
//! everything syncs up; a sub-center dispatch reaches the reporting handheld; an escalation
//! reaches the district and its decision comes back down; the demo checks that device, street
//! and district show identical incidents and photos, and prints the final table and how long
//! each step took.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gridsync_core::{
    Category, Change, IncidentId, Level, NodeId, PhotoKind, Scope, Severity, Status,
};
use gridsync_device::{Device, NewReport, PhotoInput, SyncTarget, SystemEnv};
use gridsync_net::client::SyncOptions;
use gridsync_proto::Role;
use gridsync_relay::{RelayHandle, Upstream};
use gridsync_store::Store;

use crate::shared::output;

const GARBAGE: &[u8] = include_bytes!("../../../../../fixtures/photos/garbage-12mp-rot6.jpg");
const CAT: &[u8] = include_bytes!("../../../../../fixtures/photos/cat-2400x1600-rot8.jpg");
const STREET: &[u8] = include_bytes!("../../../../../fixtures/photos/street-640x427-gps.jpg");
const PLAIN: &[u8] = include_bytes!("../../../../../fixtures/photos/plain-512.png");
const BOMB: &[u8] = include_bytes!("../../../../../fixtures/photos/bomb-40000x40000.png");

/// How long the demo waits for a relay to forward something before it calls it a failure.
const FORWARD_DEADLINE: Duration = Duration::from_secs(60);

fn photo(name: &str, bytes: &[u8]) -> PhotoInput {
    PhotoInput {
        name: name.to_owned(),
        bytes: bytes.to_vec(),
    }
}

struct Steps {
    started: Instant,
    rows: Vec<(String, f64)>,
}

impl Steps {
    fn step<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let out = f().with_context(|| format!("demo step {name:?}"))?;
        self.done(name, t)?;
        Ok(out)
    }

    fn done(&mut self, name: &str, since: Instant) -> Result<()> {
        let ms = since.elapsed().as_secs_f64() * 1000.0;
        say!("  ✓ {name} ({ms:.0} ms)");
        self.rows.push((name.to_owned(), ms));
        Ok(())
    }
}

/// Polls `check` until it is true, failing after [`FORWARD_DEADLINE`].
async fn wait_for(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + FORWARD_DEADLINE;
    while !check()? {
        if Instant::now() > deadline {
            bail!(
                "gave up waiting for {what} after {} s",
                FORWARD_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The incident JSON of every incident in `scope`, as one string, for comparing stores.
fn scope_json(node: &Device, scope: &Scope) -> Result<String> {
    let views: Vec<_> = node
        .list()?
        .iter()
        .filter(|s| s.grid().is_some_and(|g| scope.contains(g)))
        .map(|s| s.view())
        .collect();
    Ok(serde_json::to_string(&views)?)
}

async fn sync(device: &Device, street: &RelayHandle) -> Result<gridsync_net::client::SyncReport> {
    let target = SyncTarget {
        addr: street.local_addr,
        relay_id: street.node_id,
    };
    Ok(device
        .sync(target, &SyncOptions::default(), &mut |_| {})
        .await?)
}

fn loopback() -> SocketAddr {
    (std::net::Ipv4Addr::LOCALHOST, 0).into()
}

fn relay_store(path: &Path, name: &str, role: &str) -> Result<NodeId> {
    Ok(Device::init_node(path, name, role, "", SystemEnv)?.node_id())
}

pub fn run(keep: Option<PathBuf>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(story(keep))
}

async fn story(keep: Option<PathBuf>) -> Result<()> {
    let temp;
    let dir = match keep {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            if std::fs::read_dir(&dir)?.next().is_some() {
                bail!(
                    "{} is not empty; give an empty or new folder to --keep",
                    dir.display()
                );
            }
            dir
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path().to_owned()
        }
    };
    let mut steps = Steps {
        started: Instant::now(),
        rows: Vec::new(),
    };
    say!(
        "gridsync demo: a district, two streets and four handhelds on loopback QUIC, in {}",
        dir.display()
    );

    // ---- the network ------------------------------------------------------------------
    let t = Instant::now();
    let streets = [("street-002", "110101/002"), ("street-003", "110101/003")];
    let district_db = dir.join("district.db");
    relay_store(&district_db, "district-110101", "district")?;
    let mut street_ids = Vec::new();
    for (name, scope) in streets {
        let id = relay_store(&dir.join(format!("{name}.db")), name, "street")?;
        Store::open(&district_db)?.enroll(
            &id,
            Role::Street,
            &scope.parse()?,
            gridsync_net::now_ms(),
        )?;
        street_ids.push(id);
    }
    let district = gridsync_relay::start(&district_db, loopback(), None).await?;
    let mut street_relays = Vec::new();
    for (name, _) in streets {
        let upstream = Upstream {
            addr: district.local_addr,
            id: district.node_id,
        };
        street_relays.push(
            gridsync_relay::start(&dir.join(format!("{name}.db")), loopback(), Some(upstream))
                .await?,
        );
    }
    let grids = [
        ("wang-li", "110101/002/014/03", 0),
        ("zhao-min", "110101/002/015/01", 0),
        ("chen-jie", "110101/003/021/02", 1),
        ("liu-yang", "110101/003/022/05", 1),
    ];
    let mut devices = Vec::new();
    for (name, grid, street) in grids {
        let device = Device::init(&dir.join(format!("{name}.db")), name, grid.parse()?)?;
        Store::open(&dir.join(format!("{}.db", streets[street].0)))?.enroll(
            &device.node_id(),
            Role::Device,
            &grid.parse()?,
            gridsync_net::now_ms(),
        )?;
        devices.push(device);
    }
    say!(
        "  district  {}  node {}",
        district.local_addr,
        district.node_id.short()
    );
    for ((name, scope), r) in streets.iter().zip(&street_relays) {
        say!(
            "  {name}  {}  node {}  scope {scope}",
            r.local_addr,
            r.node_id.short()
        );
    }
    steps.done(
        "start a district relay and two street relays; enrol four handhelds",
        t,
    )?;

    let reports = [
        (
            "garbage",
            "Rubbish bags piled against the east gate of block 3",
            "garbage-12mp-rot6.jpg",
            GARBAGE,
        ),
        (
            "other",
            "Stray cat trapped in the bicycle shed",
            "cat-2400x1600-rot8.jpg",
            CAT,
        ),
        (
            "illegal-stall",
            "Fruit stall occupying the pavement at the crossing",
            "street-640x427-gps.jpg",
            STREET,
        ),
        (
            "illegal-ad",
            "Flyers pasted over the notice board",
            "plain-512.png",
            PLAIN,
        ),
    ];
    let ids: Vec<IncidentId> = steps.step(
        "report four incidents offline, each with a real photo",
        || {
            devices
                .iter_mut()
                .zip(reports)
                .map(|(d, (cat, text, name, bytes))| {
                    d.report(NewReport {
                        category: Category::from_catalogue(cat)?,
                        description: text.to_owned(),
                        location: None,
                        severity: Severity::Normal,
                        observed_at: None,
                        photos: vec![photo(name, bytes)],
                    })
                    .map_err(Into::into)
                })
                .collect::<Result<Vec<_>>>()
        },
    )?;

    steps.step(
        "the workflow refuses verifying an unresolved report",
        || match devices[1].edit(ids[1], vec![Change::Status(Status::Verified)], vec![]) {
            Err(e) => {
                say!("    refused: {e}");
                Ok(())
            }
            Ok(_) => bail!("the workflow allowed reported -> verified"),
        },
    )?;
    steps.step(
        "a handheld may not accept its own report: decisions are a platform's",
        || match devices[1].edit(ids[1], vec![Change::Status(Status::Accepted)], vec![]) {
            Err(e @ gridsync_device::DeviceError::Decision { .. }) => {
                say!("    refused: {e}");
                Ok(())
            }
            Err(e) => bail!("refused for another reason: {e}"),
            Ok(_) => bail!("a handheld made an operator decision"),
        },
    )?;
    steps.step(
        "a decompression-bomb PNG is refused, store unchanged",
        || {
            let before = devices[1].counts()?;
            match devices[1].attach_photo(
                ids[1],
                photo("bomb-40000x40000.png", BOMB),
                PhotoKind::Before,
            ) {
                Err(e) => say!("    refused: {e}"),
                Ok(()) => bail!("the bomb was accepted"),
            }
            if devices[1].counts()? != before {
                bail!("the store changed after a refused photo");
            }
            Ok(())
        },
    )?;

    // ---- sync ---------------------------------------------------------------------------
    let t = Instant::now();
    for (d, (_, _, street)) in devices.iter().zip(grids) {
        let r = sync(d, &street_relays[street]).await?;
        let s = &r.summary;
        say!(
            "    {:<9} -> {}: {} events, {} blobs ({} KiB) up in {} ms",
            d.name(),
            streets[street].0,
            s.events_up,
            s.blobs_up,
            s.blob_bytes_up / 1024,
            r.elapsed.as_millis()
        );
    }
    steps.done(
        "every handheld syncs with its street: events, then thumbnails, then photos",
        t,
    )?;

    // A concurrent edit: the officer and the sub-center both rewrite the description of
    // the garbage report, neither having seen the other's change.
    let garbage = ids[0];
    let street_002 = dir.join("street-002.db");
    let t = Instant::now();
    devices[0].edit(
        garbage,
        vec![Change::Description(
            "Rubbish bags and a broken sofa at the east gate".into(),
        )],
        vec![],
    )?;
    Device::open(&street_002)?.edit(
        garbage,
        vec![Change::Description(
            "Bags at the east gate; sanitation informed".into(),
        )],
        vec![],
    )?;
    sync(&devices[0], &street_relays[0]).await?;
    let conflicts = devices[0]
        .get(garbage)?
        .context("the garbage report is missing")?
        .view()
        .conflicts
        .len();
    if conflicts == 0 {
        bail!("the concurrent edits did not show as a conflict");
    }
    say!("    both descriptions kept; {conflicts} conflict listed (latest write shown)");
    steps.done(
        "an officer and the sub-center edit the same field concurrently",
        t,
    )?;

    // The sub-center dispatches the garbage report; it reaches the reporting handheld.
    let t = Instant::now();
    Device::open(&street_002)?.edit(garbage, vec![Change::Status(Status::Accepted)], vec![])?;
    Device::open(&street_002)?.edit(
        garbage,
        vec![
            Change::Status(Status::Dispatched),
            Change::Assign {
                assignee: "sanitation".into(),
                due: None,
            },
        ],
        vec![],
    )?;
    sync(&devices[0], &street_relays[0]).await?;
    let status = devices[0].get(garbage)?.context("missing")?.view().status;
    if status != "dispatched" {
        bail!("the dispatch did not reach the handheld (status {status})");
    }
    say!("    wang-li's handheld now shows: dispatched to sanitation");
    steps.done("a sub-center dispatch reaches the reporting handheld", t)?;

    // Street 003 escalates the stall to the district; the district assigns it; it comes down.
    let stall = ids[2];
    let street_003 = dir.join("street-003.db");
    let t = Instant::now();
    Device::open(&street_003)?.edit(stall, vec![Change::Status(Status::Accepted)], vec![])?;
    Device::open(&street_003)?.edit(
        stall,
        vec![Change::Escalate {
            level: Level::District,
            reason: "Recurring stall; needs the district's urban management team".into(),
        }],
        vec![],
    )?;
    let district_node = Device::open(&district_db)?;
    wait_for("the escalation to reach the district", || {
        Ok(district_node
            .get(stall)?
            .is_some_and(|s| s.view().level == "district"))
    })
    .await?;
    Device::open(&district_db)?.edit(
        stall,
        vec![
            Change::Status(Status::Dispatched),
            Change::Assign {
                assignee: "district urban management".into(),
                due: None,
            },
        ],
        vec![],
    )?;
    let street_003_node = Device::open(&street_003)?;
    wait_for("the district's decision to reach street 003", || {
        Ok(street_003_node
            .get(stall)?
            .is_some_and(|s| s.view().status == "dispatched"))
    })
    .await?;
    sync(&devices[2], &street_relays[1]).await?;
    let status = devices[2].get(stall)?.context("missing")?.view().status;
    if status != "dispatched" {
        bail!("the district's decision did not reach the handheld (status {status})");
    }
    say!("    chen-jie's handheld now shows: dispatched to district urban management");
    steps.done(
        "an escalation reaches the district; its decision comes back down",
        t,
    )?;

    // Everything converges: devices sync once more, the district catches up.
    let t = Instant::now();
    for (d, (_, _, street)) in devices.iter().zip(grids) {
        sync(d, &street_relays[street]).await?;
    }
    for (d, (_, grid, street)) in devices.iter().zip(grids) {
        let scope: Scope = grid.parse()?;
        let street_node = Device::open(&dir.join(format!("{}.db", streets[street].0)))?;
        let mine = scope_json(d, &scope)?;
        wait_for(
            "the district to hold every incident as the devices do",
            || {
                Ok(scope_json(&district_node, &scope)? == mine
                    && scope_json(&street_node, &scope)? == mine)
            },
        )
        .await?;
        for state in d.list()? {
            for p in state.view().photos {
                let hash = p.hash.parse()?;
                wait_for("the district to hold every photo", || {
                    Ok(district_node.blob(&hash, false).is_ok())
                })
                .await?;
                if district_node.blob(&hash, false)? != d.blob(&hash, false)? {
                    bail!("photo {hash} differs at the district");
                }
            }
        }
    }
    say!("    identical incident JSON on every handheld, its street and the district; same photo hashes");
    steps.done("device, street and district converge", t)?;

    // ---- the result ---------------------------------------------------------------------
    say!();
    say!("the district's incidents:");
    let views: Vec<_> = district_node.list()?.iter().map(|s| s.view()).collect();
    say_raw!("{}", output::table(&views));
    say!();
    let view = district_node.get(garbage)?.context("missing")?.view();
    say!("{}", output::detail(&view));

    let t = Instant::now();
    for r in street_relays {
        r.stop().await;
    }
    district.stop().await;
    steps.done("stop the relays (sessions closed, everything committed)", t)?;

    say!("step timings:");
    for (name, ms) in &steps.rows {
        say!("  {ms:>8.1} ms  {name}");
    }
    say!(
        "  {:>8.1} ms  total",
        steps.started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
