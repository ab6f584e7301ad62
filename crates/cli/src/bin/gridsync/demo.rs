//! `gridsync demo`: the device side of the story, on embedded photos, with no set-up.
//!
//! Four handhelds in four grids of two streets record reports offline with real photos, one
//! incident is walked through the whole closed loop, the workflow refuses a skipped step, a
//! hostile photo is refused with the store unchanged, and the final state is printed. (Syncing
//! the devices to street and district relays arrives with the sync protocol.)

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gridsync_core::{Category, Change, PhotoKind, Severity, Status};
use gridsync_device::{Device, NewReport, PhotoInput};

use crate::shared::output;

const GARBAGE: &[u8] = include_bytes!("../../../../../fixtures/photos/garbage-12mp-rot6.jpg");
const CAT: &[u8] = include_bytes!("../../../../../fixtures/photos/cat-2400x1600-rot8.jpg");
const STREET: &[u8] = include_bytes!("../../../../../fixtures/photos/street-640x427-gps.jpg");
const PLAIN: &[u8] = include_bytes!("../../../../../fixtures/photos/plain-512.png");
const BOMB: &[u8] = include_bytes!("../../../../../fixtures/photos/bomb-40000x40000.png");

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
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        say!("  ✓ {name} ({ms:.0} ms)");
        self.rows.push((name.to_owned(), ms));
        Ok(out)
    }
}

pub fn run(keep: Option<PathBuf>) -> Result<()> {
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
        "gridsync demo: a district's handhelds, offline, in {}",
        dir.display()
    );

    let grids = [
        ("wang-li", "110101/002/014/03"),
        ("zhao-min", "110101/002/015/01"),
        ("chen-jie", "110101/003/021/02"),
        ("liu-yang", "110101/003/022/05"),
    ];
    let mut devices = steps.step("enrol four handhelds in four grids of two streets", || {
        grids
            .iter()
            .map(|(name, grid)| {
                Device::init(&dir.join(format!("{name}.db")), name, grid.parse()?)
                    .map_err(Into::into)
            })
            .collect::<Result<Vec<_>>>()
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
    let ids = steps.step("report four incidents offline, each with a photo", || {
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
    })?;

    let first = &mut devices[0];
    let id = ids[0];
    steps.step("walk the garbage report through the closed loop", || {
        first.edit(id, vec![Change::Status(Status::Accepted)], vec![])?;
        first.edit(
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
        first.edit(id, vec![Change::Status(Status::InProgress)], vec![])?;
        first.edit(
            id,
            vec![
                Change::Status(Status::Resolved),
                Change::Comment("Bags collected, gate area swept".into()),
            ],
            vec![(photo("after.jpg", STREET), Some(PhotoKind::After))],
        )?;
        first.edit(id, vec![Change::Status(Status::Verified)], vec![])?;
        first.edit(
            id,
            vec![
                Change::Status(Status::Closed),
                Change::Evaluate {
                    score: 5,
                    verdict: None,
                },
            ],
            vec![],
        )?;
        Ok(())
    })?;

    let second = &mut devices[1];
    steps.step(
        "the workflow refuses verifying an unresolved report",
        || match second.edit(ids[1], vec![Change::Status(Status::Verified)], vec![]) {
            Err(e) => {
                say!("    refused: {e}");
                Ok(())
            }
            Ok(_) => bail!("the workflow allowed reported -> verified"),
        },
    )?;

    steps.step(
        "a decompression-bomb PNG is refused, store unchanged",
        || {
            let before = second.counts()?;
            match second.attach_photo(
                ids[1],
                photo("bomb-40000x40000.png", BOMB),
                PhotoKind::Before,
            ) {
                Err(e) => say!("    refused: {e}"),
                Ok(()) => bail!("the bomb was accepted"),
            }
            if second.counts()? != before {
                bail!("the store changed after a refused photo");
            }
            Ok(())
        },
    )?;

    say!();
    for d in &devices {
        let pending = d.pending()?;
        say!(
            "{} ({}), node {}: {} events and {} photos waiting to sync",
            d.name(),
            d.grid().map(|g| g.to_string()).unwrap_or_default(),
            d.node_id().short(),
            pending.events,
            pending.blobs
        );
        let views: Vec<_> = d.list()?.iter().map(|s| s.view()).collect();
        say_raw!("{}", output::table(&views));
        say!();
    }
    let closed = devices[0]
        .get(id)?
        .context("the walked incident is missing")?
        .view();
    say!("{}", output::detail(&closed));
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
