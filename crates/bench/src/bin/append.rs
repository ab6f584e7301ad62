//! Benchmark: local latency of one user action through gridsync-store, against a bare SQLite
//! commit with the same durability settings.
//!
//! ```text
//! cargo run --release -p gridsync-bench --bin append -- [--n 2000]
//! ```
//!
//! Two scenarios, each `n` timed iterations of gridsync interleaved with `n` of the baseline
//! (the order alternates every iteration, so both share the same noise):
//!
//! 1. **report**: `command::plan_report` + `Writer::write` + `Store::append(events, [],
//!    Some(writer.clock_last()))` of a new incident, no photos.
//! 2. **edit**: a status change (`accepted -> in_progress`) on an incident that already holds
//!    20 events: `Store::incident` + `command::plan_edit` + `Writer::write` + `Store::append`,
//!    so the materialised state's read/modify/write is included. Every iteration edits a
//!    different incident, so each one sees exactly 20 prior events.
//!
//! Baseline: a separate SQLite file with `journal_mode=WAL`, `synchronous=FULL` and a table
//! `(id INTEGER PRIMARY KEY, body BLOB)`; each iteration is one transaction inserting one
//! 200-byte row and committing.
//!
//! Both files live in a temporary directory next to the build output (a real disk, not tmpfs).
//! Prints p50/p99/mean and the ratios gridsync/baseline against the goal (within 2x). Nothing
//! here fails on timing.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gridsync_bench::{filesystem_of, scratch_parent, verdict, Args, Summary};
use gridsync_core::{
    codec, command, Category, Change, Event, GridCode, IncidentId, IncidentState, NodeId, Payload,
    Report, Severity, Status, Writer,
};
use gridsync_store::Store;
use rusqlite::Connection;

type Error = Box<dyn std::error::Error>;

const GOAL_RATIO: f64 = 2.0;
const WARMUP: usize = 20;
const BODY_BYTES: usize = 200;
/// Events an incident holds before the timed edit of scenario 2.
const PRIOR_EVENTS: usize = 20;
/// Incidents per setup transaction in scenario 2.
const SETUP_BATCH: usize = 100;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: append [--n N]   (timed iterations per side and scenario; default 2000)");
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("append: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The bare-SQLite baseline: one 200-byte row per transaction.
struct Bare {
    conn: Connection,
    body: Vec<u8>,
    i: u64,
}

impl Bare {
    fn open(path: &Path) -> Result<Self, Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")?;
        Ok(Self {
            conn,
            body: (0..BODY_BYTES).map(|i| (i * 7 % 251) as u8).collect(),
            i: 0,
        })
    }

    /// One transaction of one row.
    fn step(&mut self) -> Result<(), Error> {
        self.i += 1;
        self.body[..8].copy_from_slice(&self.i.to_le_bytes());
        let tx = self.conn.transaction()?;
        tx.prepare_cached("INSERT INTO t (body) VALUES (?1)")?
            .execute([&self.body])?;
        tx.commit()?;
        Ok(())
    }
}

/// A gridsync store and this node's writer.
struct Node {
    store: Store,
    writer: Writer,
    grid: GridCode,
    salt: u64,
    made: u64,
}

impl Node {
    fn create(path: &Path) -> Result<Self, Error> {
        let store = Store::create(path)?;
        let secret = [7; 32];
        let origin = NodeId::from_secret(&secret);
        let writer = Writer::signing(
            &secret,
            "patrol-7",
            store.next_seq(&origin)?,
            store.clock_last()?,
        );
        Ok(Self {
            store,
            writer,
            grid: "110101/002/014/03".parse()?,
            salt: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos().into()),
            made: 0,
        })
    }

    fn new_incident_id(&mut self, now: u64) -> IncidentId {
        self.made += 1;
        // UUIDv7 overwrites the top bits of random[0] and random[2] with its version and
        // variant: keep the counter in the low bytes so ids made in one millisecond differ.
        let mut random = [0u8; 10];
        random[..2].copy_from_slice(&(self.salt as u16).to_be_bytes());
        random[2..].copy_from_slice(&self.made.to_be_bytes());
        IncidentId::new_v7(now, random)
    }

    fn report(&self) -> Report {
        Report {
            category: Category::from_catalogue("garbage").expect("in the catalogue"),
            description: format!(
                "Bags piled by the east gate of block {}, spilling onto the pavement",
                self.made
            ),
            location: None,
            observed_at: None,
            severity: Severity::Normal,
        }
    }

    fn stamp(&mut self, id: IncidentId, payloads: Vec<Payload>, now: u64) -> Vec<Event> {
        payloads
            .into_iter()
            .map(|p| self.writer.write(id, &self.grid, p, now))
            .collect()
    }

    fn append(&mut self, events: &[Event]) -> Result<(), Error> {
        self.store
            .append(events, &[], Some(self.writer.clock_last()))?;
        Ok(())
    }

    /// Scenario 1: one `report` command.
    fn report_step(&mut self) -> Result<(), Error> {
        let now = now_ms();
        let id = self.new_incident_id(now);
        let payloads = command::plan_report(self.report(), vec![])?;
        let events = self.stamp(id, payloads, now);
        self.append(&events)
    }

    /// Scenario 2, setup: `count` incidents of [`PRIOR_EVENTS`] events each (a report, then
    /// accepted, assigned and a mix of edits and comments), ending in status `accepted`.
    /// Written [`SETUP_BATCH`] incidents per append. Returns their ids and one state.
    fn seed(&mut self, count: usize) -> Result<(Vec<IncidentId>, IncidentState), Error> {
        let changes = prior_changes();
        let mut ids = Vec::with_capacity(count);
        let mut batch = Vec::new();
        let mut last = None;
        for i in 0..count {
            let now = now_ms();
            let id = self.new_incident_id(now);
            let mut state = IncidentState::new(id);
            // One change at a time against the state so far, as a sequence of user actions.
            let payloads = command::plan_report(self.report(), vec![])?;
            for e in self.stamp(id, payloads, now) {
                state.apply(&e);
                batch.push(e);
            }
            for change in changes.iter().cloned() {
                let payloads = command::plan_edit(&state, vec![change])?;
                for e in self.stamp(id, payloads, now) {
                    state.apply(&e);
                    batch.push(e);
                }
            }
            if state.events.len() != PRIOR_EVENTS || state.status() != Status::Accepted {
                return Err(format!(
                    "seeded incident has {} events in status {}",
                    state.events.len(),
                    state.status()
                )
                .into());
            }
            ids.push(id);
            last = Some(state);
            if (i + 1) % SETUP_BATCH == 0 || i + 1 == count {
                self.append(&batch)?;
                batch.clear();
            }
        }
        let stored = self.store.counts()?;
        if stored.incidents != count as u64 || stored.events != (count * PRIOR_EVENTS) as u64 {
            return Err(format!(
                "seeding stored {} incidents and {} events, not {count} and {}",
                stored.incidents,
                stored.events,
                count * PRIOR_EVENTS
            )
            .into());
        }
        Ok((ids, last.ok_or("no incidents seeded")?))
    }

    /// Scenario 2: one status change on incident `id`.
    fn edit_step(&mut self, id: &IncidentId) -> Result<(), Error> {
        let state = self
            .store
            .incident(id)?
            .ok_or_else(|| format!("incident {id} is missing"))?;
        let payloads = command::plan_edit(&state, vec![Change::Status(Status::InProgress)])?;
        let events = self.stamp(*id, payloads, now_ms());
        self.append(&events)
    }
}

/// The 19 changes that follow the report of a seeded incident: accepted, assigned, then
/// severity edits, comments and description edits in turn. Ends in status `accepted`.
fn prior_changes() -> Vec<Change> {
    let mut changes = vec![
        Change::Status(Status::Accepted),
        Change::Assign {
            assignee: "district sanitation team 3".into(),
            due: None,
        },
    ];
    for k in 0..PRIOR_EVENTS - 3 {
        changes.push(match k % 3 {
            0 => Change::Severity(if k % 2 == 0 {
                Severity::High
            } else {
                Severity::Normal
            }),
            1 => Change::Comment(format!(
                "Checked on site at round {k}: still there, about {} bags",
                k + 3
            )),
            _ => Change::Description(format!(
                "Bags piled by the east gate, now also by the bike racks (update {k})"
            )),
        });
    }
    changes
}

/// CPU time (user + system) the calling thread has used so far.
///
/// Wall latency here is dominated by the fsync of the commit, which hides what the work costs;
/// the thread's CPU time shows that part. `clock_gettime` needs unsafe code, kept to this
/// function: the pointer is to a live, writable local `timespec`.
#[allow(unsafe_code)]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes for the duration of the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Wall and thread-CPU latencies of one side, in milliseconds.
#[derive(Debug, Default)]
struct Samples {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Samples {
    fn time(&mut self, f: impl FnOnce() -> Result<(), Error>) -> Result<(), Error> {
        let (wall, cpu) = (Instant::now(), thread_cpu());
        f()?;
        let (cpu, wall) = (thread_cpu().saturating_sub(cpu), wall.elapsed());
        self.wall.push(wall.as_secs_f64() * 1e3);
        self.cpu.push(cpu.as_secs_f64() * 1e3);
        Ok(())
    }
}

/// Interleaves `n` timed gridsync steps with `n` baseline steps (after [`WARMUP`] untimed
/// ones each), alternating which goes first. Step `i` of gridsync gets `i` (warm-up steps
/// `0..WARMUP`, then timed ones). Returns both sides' samples and the elapsed seconds.
fn interleave(
    n: usize,
    mut gridsync: impl FnMut(usize) -> Result<(), Error>,
    bare: &mut Bare,
) -> Result<(Samples, Samples, f64), Error> {
    for i in 0..WARMUP {
        gridsync(i)?;
        bare.step()?;
    }
    let start = Instant::now();
    let mut g = Samples::default();
    let mut b = Samples::default();
    for i in WARMUP..WARMUP + n {
        if i % 2 == 0 {
            g.time(|| gridsync(i))?;
            b.time(|| bare.step())?;
        } else {
            b.time(|| bare.step())?;
            g.time(|| gridsync(i))?;
        }
    }
    Ok((g, b, start.elapsed().as_secs_f64()))
}

fn report(title: &str, what: &str, g: &Samples, b: &Samples, secs: f64) -> Result<(), Error> {
    let (gw, bw) = (Summary::of(&g.wall), Summary::of(&b.wall));
    let (gc, bc) = (Summary::of(&g.cpu), Summary::of(&b.cpu));
    let (Some(gw), Some(bw), Some(gc), Some(bc)) = (gw, bw, gc, bc) else {
        return Err("no samples".into());
    };
    println!("{title}");
    println!("  gridsync: {what}");
    println!(
        "  {} timed iterations per side, interleaved, after {WARMUP} warm-up each; {secs:.1} s",
        gw.n
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "wall ms", "p50", "p99", "mean", "min", "max"
    );
    for (name, s) in [("gridsync-store", &gw), ("bare rusqlite", &bw)] {
        println!(
            "  {:<22} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            name, s.p50, s.p99, s.mean, s.min, s.max
        );
    }
    let (r50, r99, rmean) = (gw.p50 / bw.p50, gw.p99 / bw.p99, gw.mean / bw.mean);
    println!(
        "  ratio gridsync/bare: p50 {r50:.2}x (goal <= {GOAL_RATIO}x: {}), p99 {r99:.2}x (goal <= {GOAL_RATIO}x: {}), mean {rmean:.2}x",
        verdict(r50, GOAL_RATIO),
        verdict(r99, GOAL_RATIO)
    );
    println!(
        "  thread CPU ms (informative: the work under the fsync wait): gridsync p50 {:.3} mean {:.3}, bare p50 {:.3} mean {:.3}, ratio of means {:.2}x",
        gc.p50,
        gc.mean,
        bc.p50,
        bc.mean,
        gc.mean / bc.mean
    );
    println!();
    Ok(())
}

fn run(args: Vec<String>) -> Result<(), Error> {
    let args = Args::parse(args, &["--n"])?;
    let n: usize = args.get("--n", 2000)?;
    if n == 0 {
        return Err("--n must be at least 1".into());
    }
    let parent = scratch_parent();
    std::fs::create_dir_all(&parent)?;
    let dir = tempfile::Builder::new()
        .prefix("gridsync-bench-append-")
        .tempdir_in(&parent)?;
    let fs = filesystem_of(dir.path());
    println!("append latency of one user action: gridsync-store vs bare rusqlite");
    match &fs {
        Some((point, fstype, source)) => {
            println!(
                "scratch: {} (filesystem {fstype} on {source}, mounted at {point}){}",
                dir.path().display(),
                if fstype == "tmpfs" || fstype == "ramfs" {
                    "  WARNING: memory-backed, fsync costs nothing here"
                } else {
                    ""
                }
            );
        }
        None => println!("scratch: {} (filesystem unknown)", dir.path().display()),
    }
    println!(
        "both: journal_mode=WAL, synchronous=FULL, one transaction per action; baseline: one {BODY_BYTES}-byte row into (id INTEGER PRIMARY KEY, body BLOB)"
    );
    println!();

    // Scenario 1: a new report.
    let mut node = Node::create(&dir.path().join("report-gridsync.db"))?;
    let mut bare = Bare::open(&dir.path().join("report-bare.db"))?;
    let (g, b, secs) = interleave(n, |_| node.report_step(), &mut bare)?;
    report(
        "scenario 1: report (new incident, 1 event, no photos)",
        "plan_report + Writer::write + Store::append(events, [], Some(clock_last))",
        &g,
        &b,
        secs,
    )?;
    drop((node, bare));

    // Scenario 2: a status change on an incident with 20 events.
    let mut node = Node::create(&dir.path().join("edit-gridsync.db"))?;
    let mut bare = Bare::open(&dir.path().join("edit-bare.db"))?;
    let setup = Instant::now();
    let (ids, sample) = node.seed(WARMUP + n)?;
    let state_bytes = codec::encode_state(&sample)?.len();
    println!(
        "scenario 2 setup: {} incidents x {PRIOR_EVENTS} events in {:.1} s; stored state of one is {state_bytes} bytes",
        ids.len(),
        setup.elapsed().as_secs_f64()
    );
    let (g, b, secs) = interleave(n, |i| node.edit_step(&ids[i]), &mut bare)?;
    report(
        "scenario 2: edit (status accepted -> in_progress on an incident holding 20 events)",
        "Store::incident + plan_edit + Writer::write + Store::append (state read/modify/write)",
        &g,
        &b,
        secs,
    )?;
    Ok(())
}
