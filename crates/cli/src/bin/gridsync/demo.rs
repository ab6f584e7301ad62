//! `gridsync demo`: the whole story on loopback, on embedded photos, with no set-up.
//!
//! The three platforms over the four levels run in this process over real QUIC on 127.0.0.1:
//! the district's command center, two street sub-centers under it, and a community
//! workstation under street 002; five handhelds in four grids, two of them in the
//! community's grid (its grid assistant and its firefighter, both on the grid's roster). The
//! handhelds report offline with real photos; an officer and the workstation edit the same
//! field concurrently (a conflict, kept visible); everything syncs up; an urgent fire hazard
//! reaches the grid's firefighter's following handheld live, and so does its dispatch to the
//! firefighter; one case is closed in the community, one escalated to the street, one to the
//! district, whose decision comes back down; the demo checks that device, community, street
//! and district show identical incidents and photos, and prints the final table, the
//! district's evaluation statistics and how long each step took.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gridsync_core::{
    Category, Change, IncidentId, Level, NodeId, PhotoKind, Scope, Severity, Status,
};
use gridsync_core::{Force, StaffEntry};
use gridsync_device::{
    Device, FollowUpdate, NewReport, NoticeKind, PhotoInput, SyncTarget, SystemEnv,
};
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
        "gridsync demo: the district, two streets, a community workstation and five handhelds on loopback QUIC, in {}",
        dir.display()
    );

    // ---- the network ------------------------------------------------------------------
    let t = Instant::now();
    let streets = [("street-002", "110101/002"), ("street-003", "110101/003")];
    let community = ("community-014", "110101/002/014");
    let district_db = dir.join("district.db");
    relay_store(&district_db, "district-110101", "district")?;
    for (name, scope) in streets {
        let id = relay_store(&dir.join(format!("{name}.db")), name, "street")?;
        Store::open(&district_db)?.enroll(
            &id,
            Role::Street,
            &scope.parse()?,
            gridsync_net::now_ms(),
        )?;
    }
    let community_db = dir.join(format!("{}.db", community.0));
    let community_id = relay_store(&community_db, community.0, "community")?;
    Store::open(&dir.join("street-002.db"))?.enroll(
        &community_id,
        Role::Community,
        &community.1.parse()?,
        gridsync_net::now_ms(),
    )?;
    let district = gridsync_relay::start(&district_db, loopback(), None).await?;
    let upstream = |r: &RelayHandle| Upstream {
        addr: r.local_addr,
        id: r.node_id,
    };
    let mut street_relays = Vec::new();
    for (name, _) in streets {
        street_relays.push(
            gridsync_relay::start(
                &dir.join(format!("{name}.db")),
                loopback(),
                Some(upstream(&district)),
            )
            .await?,
        );
    }
    let workstation =
        gridsync_relay::start(&community_db, loopback(), Some(upstream(&street_relays[0]))).await?;
    // Each handheld's platform: 0 the community workstation, 1 street 002, 2 street 003.
    let platform_dbs = [
        community_db.clone(),
        dir.join("street-002.db"),
        dir.join("street-003.db"),
    ];
    let grids = [
        ("wang-li", "110101/002/014/03", 0),
        ("zhao-min", "110101/002/015/01", 1),
        ("chen-jie", "110101/003/021/02", 2),
        ("liu-yang", "110101/003/022/05", 2),
        ("sun-hao", "110101/002/014/03", 0),
    ];
    let mut devices = Vec::new();
    for (name, grid, at) in grids {
        let device = Device::init(&dir.join(format!("{name}.db")), name, grid.parse()?)?;
        Store::open(&platform_dbs[at])?.enroll(
            &device.node_id(),
            Role::Device,
            &grid.parse()?,
            gridsync_net::now_ms(),
        )?;
        devices.push(device);
    }
    let platforms = [&workstation, &street_relays[0], &street_relays[1]];
    say!(
        "  district       {}  node {}",
        district.local_addr,
        district.node_id.short()
    );
    for ((name, scope), r) in streets.iter().zip(&street_relays) {
        say!(
            "  {name}     {}  node {}  scope {scope}",
            r.local_addr,
            r.node_id.short()
        );
    }
    say!(
        "  {}  {}  node {}  scope {} (under street-002)",
        community.0,
        workstation.local_addr,
        workstation.node_id.short(),
        community.1
    );
    steps.done(
        "start the district, two street sub-centers and a community workstation; enrol five handhelds",
        t,
    )?;

    // The roster of grid 110101/002/014/03, kept by street 002 as signed events.
    let grid_014: gridsync_core::GridCode = "110101/002/014/03".parse()?;
    steps.step("street 002 puts grid 014/03's staff on its roster", || {
        let mut desk = Device::open(&platform_dbs[1])?;
        for (name, force, device) in [
            ("Wang Li", Force::Assistant, Some(devices[0].node_id())),
            ("Sun Hao", Force::Firefighter, Some(devices[4].node_id())),
            ("Li Qiang", Force::Police, None),
        ] {
            desk.staff_add(
                &grid_014,
                StaffEntry {
                    name: name.into(),
                    force,
                    phone: Some("+86 10 5555 0142".into()),
                    device,
                },
            )?;
        }
        Ok(())
    })?;

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
    let platform_names = [community.0, streets[0].0, streets[1].0];
    for (d, (_, _, at)) in devices.iter().zip(grids) {
        let r = sync(d, platforms[at]).await?;
        let s = &r.summary;
        say!(
            "    {:<9} -> {}: {} events, {} blobs ({} KiB) up, {} down in {} ms",
            d.name(),
            platform_names[at],
            s.events_up,
            s.blobs_up,
            s.blob_bytes_up / 1024,
            s.events_down,
            r.elapsed.as_millis()
        );
    }
    let me = devices[4]
        .me_as_staff()?
        .context("sun-hao's handheld is not on its roster")?;
    say!(
        "    sun-hao's handheld knows its grid's roster offline: it is {} ({}), {} members",
        me.name,
        me.force,
        devices[4].staff(&grid_014)?.len()
    );
    steps.done(
        "every handheld syncs with its platform: events, then thumbnails, then photos; the roster comes down",
        t,
    )?;

    // A concurrent edit: the officer and the workstation both rewrite the description of
    // the garbage report, neither having seen the other's change.
    let garbage = ids[0];
    let t = Instant::now();
    devices[0].edit(
        garbage,
        vec![Change::Description(
            "Rubbish bags and a broken sofa at the east gate".into(),
        )],
        vec![],
    )?;
    Device::open(&community_db)?.edit(
        garbage,
        vec![Change::Description(
            "Bags at the east gate; sanitation informed".into(),
        )],
        vec![],
    )?;
    sync(&devices[0], &workstation).await?;
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
        "an officer and the community workstation edit the same field concurrently",
        t,
    )?;

    // ---- live: the firefighter follows -------------------------------------------------
    let t = Instant::now();
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let (stop_follow, stopped) = tokio::sync::watch::channel(false);
    let follower = {
        let firefighter = Device::open(&dir.join("sun-hao.db"))?;
        let target = SyncTarget {
            addr: workstation.local_addr,
            relay_id: workstation.node_id,
        };
        tokio::spawn(async move {
            firefighter
                .follow(target, stopped, &mut |u| {
                    let _ = tx.send(u);
                })
                .await
        })
    };
    next_update(&mut notices, "sun-hao's handheld to catch up", |u| {
        matches!(
            u,
            FollowUpdate::CaughtUp { .. }
                | FollowUpdate::Progress(gridsync_net::client::SyncProgress::Session(
                    gridsync_proto::client::Progress::Following
                ))
        )
        .then_some(())
    })
    .await?;
    steps.done(
        "sun-hao's handheld follows the workstation (`gridsync sync --follow`)",
        t,
    )?;

    let t = Instant::now();
    let fire = devices[0].report(NewReport {
        category: Category::from_catalogue("fire-hazard")?,
        description: "Cardboard and gas cylinders stacked in the stairwell of block 5".into(),
        location: None,
        severity: Severity::Urgent,
        observed_at: None,
        photos: vec![photo("street-640x427-gps.jpg", STREET)],
    })?;
    let reporting = Instant::now();
    sync(&devices[0], &workstation).await?;
    let what = next_notice(&mut notices, NoticeKind::Urgent, fire).await?;
    say!(
        "    sun-hao's handheld: urgent notice \"{what}\" {:.0} ms after wang-li's handheld began to sync it",
        reporting.elapsed().as_secs_f64() * 1000.0
    );
    let mut desk = Device::open(&community_db)?;
    desk.edit(fire, vec![Change::Status(Status::Accepted)], vec![])?;
    let due = gridsync_net::now_ms() as gridsync_core::Millis + 30 * 60_000;
    desk.edit(
        fire,
        vec![
            Change::Status(Status::Dispatched),
            Change::Assign {
                assignee: "force:firefighter".into(),
                due: Some(due),
            },
        ],
        vec![],
    )?;
    drop(desk);
    let dispatched = Instant::now();
    let what = next_notice(&mut notices, NoticeKind::Dispatch, fire).await?;
    say!(
        "    sun-hao's handheld: \"{what}\" {:.0} ms after the workstation's dispatch",
        dispatched.elapsed().as_secs_f64() * 1000.0
    );
    steps.done(
        "an urgent fire hazard reaches the grid's firefighter live, then its dispatch to him",
        t,
    )?;

    // The firefighter clears it (his follower uploads at once); the workstation closes it.
    let t = Instant::now();
    let mut firefighter = Device::open(&dir.join("sun-hao.db"))?;
    firefighter.edit(
        fire,
        vec![
            Change::Status(Status::InProgress),
            Change::Comment("On site; cylinders moved out".into()),
        ],
        vec![],
    )?;
    firefighter.edit(fire, vec![Change::Status(Status::Resolved)], vec![])?;
    let at_community = Device::open(&community_db)?;
    wait_for(
        "the firefighter's resolution to reach the workstation",
        || {
            Ok(at_community
                .get(fire)?
                .is_some_and(|s| s.view().status == "resolved"))
        },
    )
    .await?;
    let mut desk = Device::open(&community_db)?;
    desk.edit(fire, vec![Change::Status(Status::Verified)], vec![])?;
    desk.edit(fire, vec![Change::Status(Status::Closed)], vec![])?;
    desk.edit(
        fire,
        vec![Change::Evaluate {
            score: 5,
            verdict: None,
        }],
        vec![],
    )?;
    drop(desk);
    steps.done(
        "closed in the community: resolved by the firefighter, verified, closed, evaluated",
        t,
    )?;
    let _ = stop_follow.send(true);
    follower.await.context("the follower task")??;

    // The workstation escalates the garbage to its street, which dispatches it.
    let t = Instant::now();
    let mut desk = Device::open(&community_db)?;
    desk.edit(garbage, vec![Change::Status(Status::Accepted)], vec![])?;
    desk.edit(
        garbage,
        vec![Change::Escalate {
            level: Level::Street,
            reason: "A sofa: needs the street's bulky-waste contractor".into(),
        }],
        vec![],
    )?;
    drop(desk);
    let street_002_node = Device::open(&platform_dbs[1])?;
    wait_for("the escalation to reach street 002", || {
        Ok(street_002_node
            .get(garbage)?
            .is_some_and(|s| s.view().level == "street"))
    })
    .await?;
    Device::open(&platform_dbs[1])?.edit(
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
    wait_for("street 002's dispatch to reach the workstation", || {
        Ok(at_community
            .get(garbage)?
            .is_some_and(|s| s.view().status == "dispatched"))
    })
    .await?;
    sync(&devices[0], &workstation).await?;
    let status = devices[0].get(garbage)?.context("missing")?.view().status;
    if status != "dispatched" {
        bail!("the street's dispatch did not reach the handheld (status {status})");
    }
    say!("    wang-li's handheld now shows: escalated to the street, dispatched to sanitation");
    steps.done(
        "escalated to the street: the workstation hands it up, the sub-center dispatches it",
        t,
    )?;

    // Street 003 escalates the stall to the district; the district assigns it; it comes down.
    let stall = ids[2];
    let street_003 = platform_dbs[2].clone();
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
    steps.done("escalated to the district: its decision comes back down", t)?;

    // Everything converges: devices sync once more, the tiers above catch up.
    let t = Instant::now();
    for (d, (_, _, at)) in devices.iter().zip(grids) {
        sync(d, platforms[at]).await?;
    }
    for (d, (_, grid, at)) in devices.iter().zip(grids) {
        let scope: Scope = grid.parse()?;
        let parent_node = Device::open(&platform_dbs[at])?;
        let mine = scope_json(d, &scope)?;
        wait_for(
            "the district to hold every incident as the devices do",
            || {
                Ok(scope_json(&district_node, &scope)? == mine
                    && scope_json(&parent_node, &scope)? == mine)
            },
        )
        .await?;
        for state in d.list()? {
            if state
                .report
                .as_ref()
                .is_none_or(|r| r.stamp.origin != d.node_id())
            {
                continue;
            }
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
    say!("    identical incident JSON on every handheld, its platform and the district; same photo hashes");
    steps.done("device, community, street and district converge", t)?;

    // ---- the result ---------------------------------------------------------------------
    say!();
    say!("the district's incidents:");
    let views: Vec<_> = district_node.list()?.iter().map(|s| s.view()).collect();
    say_raw!("{}", output::table(&views));
    say!();
    let view = district_node.get(garbage)?.context("missing")?.view();
    say!("{}", output::detail(&view));
    say!();
    say!("the district's evaluation (`gridsync-relay stats`):");
    let store = district_node.store();
    let incidents = store
        .incidents()?
        .into_iter()
        .map(|state| {
            let events = store.events_of(&state.id)?;
            Ok((state, events))
        })
        .collect::<Result<Vec<_>>>()?;
    let figures = gridsync_relay::stats::compute(
        &incidents,
        gridsync_net::now_ms() as gridsync_core::Millis,
        gridsync_relay::stats::Window::default(),
        None,
    );
    say_raw!("{}", crate::shared::stats::table(&figures));
    say!();

    let t = Instant::now();
    workstation.stop().await;
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

/// Waits (at most [`FORWARD_DEADLINE`]) for a follower's update `pick` takes.
async fn next_update<T>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<FollowUpdate>,
    what: &str,
    mut pick: impl FnMut(&FollowUpdate) -> Option<T>,
) -> Result<T> {
    let found = tokio::time::timeout(FORWARD_DEADLINE, async {
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
        Ok(None) => bail!("the follower stopped before {what}"),
        Err(_) => bail!(
            "gave up waiting for {what} after {} s",
            FORWARD_DEADLINE.as_secs()
        ),
    }
}

/// The next notice of `kind` about `incident` on the follower: what it says.
async fn next_notice(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<FollowUpdate>,
    kind: NoticeKind,
    incident: IncidentId,
) -> Result<String> {
    next_update(rx, &format!("a {} notice", kind.as_str()), |u| match u {
        FollowUpdate::Notice(n) if n.kind == kind && n.incident == incident => Some(n.what.clone()),
        _ => None,
    })
    .await
}
