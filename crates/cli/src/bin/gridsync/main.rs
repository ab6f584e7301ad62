//! `gridsync`: the device command line.

#[path = "../../shared/mod.rs"]
#[macro_use]
mod shared;

mod demo;
mod progress;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use gridsync_core::{Category, GridCode, Millis, NodeId, Severity};
use gridsync_device::{Device, NewReport};
use shared::{location, open, parse_time, print_json, read_photos, BlobArgs, EditArgs, ShowArgs};

/// gridsync: offline-first incident reporting for grid management (the handheld's side).
#[derive(Parser, Debug)]
#[command(name = "gridsync", version)]
struct Cli {
    /// The device store.
    #[arg(
        long,
        global = true,
        env = "GRIDSYNC_DB",
        default_value = "gridsync.db"
    )]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the store and this device's node identity (an Ed25519 key pair).
    Init {
        /// A name for this device or its officer; it is the author of every event.
        #[arg(long)]
        device_name: String,
        /// The grid this device patrols, e.g. 110101/002/014/03.
        #[arg(long)]
        grid: GridCode,
        #[arg(long)]
        json: bool,
    },
    /// Print this device's node id.
    Id {
        #[arg(long)]
        json: bool,
    },
    /// Report a new incident (works offline).
    Report(ReportArgs),
    /// Change an incident: fields, workflow status, level, assignment, comments, photos.
    Edit(EditArgs),
    /// List the incidents in the store.
    List {
        #[arg(long)]
        json: bool,
        /// Only the cases dispatched or in progress past their due time (`--due`).
        #[arg(long)]
        overdue: bool,
    },
    /// Show one incident.
    Show(ShowArgs),
    /// Write a stored photo (or its thumbnail) to a file or standard output; with --fetch,
    /// fetch it from the relay first if it is not held here.
    Blob(DeviceBlobArgs),
    /// What the store holds and what is waiting to sync.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List the category catalogue.
    Categories,
    /// This device's grid roster as last synced: who serves the grid (its seven forces),
    /// with their phones, known offline.
    Staff {
        #[arg(long)]
        json: bool,
    },
    /// Sync with the street relay: events up, then thumbnails, then photos, then the
    /// incidents of this device's grid down.
    Sync {
        /// The relay's address, HOST:PORT.
        #[arg(long)]
        relay: String,
        /// The relay's node id (as `gridsync-relay init` printed it): the relay must prove it.
        #[arg(long)]
        relay_id: NodeId,
        #[arg(long)]
        json: bool,
        /// Stay connected after the sync: the relay pushes each new event of this grid as it
        /// commits, and a line is printed for each notice (a dispatch to this handheld's
        /// staff member or force, an urgent case of the grid, a decision on one of its
        /// reports); what is recorded meanwhile goes up at once. Runs until interrupted, and
        /// reconnects by itself. With --json, one JSON object per line.
        #[arg(long)]
        follow: bool,
    },
    /// Show this handheld's settings, or change one (kept in the store).
    Config {
        #[command(subcommand)]
        set: Option<ConfigSet>,
        /// Print the settings as JSON (also after a change).
        #[arg(long, global = true)]
        json: bool,
    },
    /// Delete the bytes of this handheld's own full photos that the district holds (as the
    /// relay said in a sync), keeping their thumbnails; `gridsync blob HASH --fetch` brings
    /// one back. With `config prune-photos on`, every sync does this at its end.
    Prune {
        #[arg(long)]
        json: bool,
    },
    /// Run the whole story on loopback in a temporary folder, with no set-up.
    Demo {
        /// Keep the stores in DIR instead of a temporary folder.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

/// One setting of `config`.
#[derive(Subcommand, Debug)]
enum ConfigSet {
    /// Prune full photos once the district holds them, keeping their thumbnails (off: keep
    /// everything; the default).
    PrunePhotos {
        #[arg(value_enum)]
        value: OnOff,
    },
}

/// A setting's value.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum OnOff {
    On,
    Off,
}

/// `blob` on a handheld: the shared flags, and fetching from the relay.
#[derive(Args, Debug)]
struct DeviceBlobArgs {
    #[command(flatten)]
    blob: BlobArgs,
    /// If the blob is not held here, fetch it from the relay: one sync session (as `sync`
    /// runs it, with --relay and --relay-id), then write it. An interrupted fetch keeps its
    /// bytes; the next one resumes from there.
    #[arg(long, requires_all = ["relay", "relay_id"])]
    fetch: bool,
    /// The relay's address, HOST:PORT (with --fetch).
    #[arg(long, requires = "fetch")]
    relay: Option<String>,
    /// The relay's node id (with --fetch): the relay must prove it.
    #[arg(long, requires = "fetch")]
    relay_id: Option<NodeId>,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Category code (see `gridsync categories`).
    #[arg(long)]
    category: String,
    #[arg(long)]
    description: String,
    /// Latitude in decimal degrees (with --lon); default: the first photo's EXIF GPS.
    #[arg(long, requires = "lon", allow_negative_numbers = true)]
    lat: Option<f64>,
    /// Longitude in decimal degrees (with --lat).
    #[arg(long, requires = "lat", allow_negative_numbers = true)]
    lon: Option<f64>,
    /// A photo file (JPEG or PNG); repeat for several.
    #[arg(long = "photo")]
    photos: Vec<PathBuf>,
    #[arg(long, default_value = "normal")]
    severity: Severity,
    /// When the problem was seen (RFC 3339); default: the first photo's EXIF capture time.
    #[arg(long, value_parser = parse_time)]
    observed_at: Option<Millis>,
    #[arg(long)]
    json: bool,
}

fn run(cli: Cli) -> Result<()> {
    let db = cli.db.as_path();
    match cli.command {
        Command::Init {
            device_name,
            grid,
            json,
        } => {
            let device = Device::init(db, &device_name, grid)?;
            if json {
                print_json(&serde_json::json!({ "node_id": device.node_id().to_hex() }))?;
            } else {
                say!("{}", device.node_id());
            }
        }
        Command::Id { json } => {
            let device = open(db)?;
            if json {
                print_json(&serde_json::json!({ "node_id": device.node_id().to_hex() }))?;
            } else {
                say!("{}", device.node_id());
            }
        }
        Command::Report(a) => {
            let mut device = open(db)?;
            let photos = read_photos(&a.photos, &device)?;
            let id = device.report(NewReport {
                category: Category::from_catalogue(&a.category)?,
                description: a.description,
                location: location(a.lat, a.lon)?,
                severity: a.severity,
                observed_at: a.observed_at,
                photos,
            })?;
            if a.json {
                print_json(&serde_json::json!({ "id": id.to_string() }))?;
            } else {
                say!("{id}");
            }
        }
        Command::Edit(a) => {
            let mut device = open(db)?;
            shared::edit(&mut device, a)?;
        }
        Command::List { json, overdue } => shared::list(&open(db)?, json, overdue)?,
        Command::Show(a) => shared::show(&open(db)?, a)?,
        Command::Blob(a) => blob(db, a)?,
        Command::Sync {
            relay,
            relay_id,
            json,
            follow: false,
        } => sync(db, &relay, relay_id, json)?,
        Command::Sync {
            relay,
            relay_id,
            json,
            follow: true,
        } => follow(db, &relay, relay_id, json)?,
        Command::Status { json } => {
            let device = open(db)?;
            let counts = device.counts()?;
            let pending = device.pending()?;
            let value = serde_json::json!({
                "node_id": device.node_id().to_hex(),
                "name": device.name(),
                "grid": device.grid().map(|g| g.to_string()),
                "events": counts.events,
                "incidents": counts.incidents,
                "blobs": counts.blobs,
                "pending": {
                    "events": pending.events,
                    "blobs": pending.blobs,
                    "blob_bytes": pending.blob_bytes,
                },
            });
            if json {
                print_json(&value)?;
            } else {
                say!("node     {}", device.node_id());
                say!("name     {}", device.name());
                if let Some(grid) = device.grid() {
                    say!("grid     {grid}");
                }
                say!(
                    "holds    {} incidents, {} events, {} blobs",
                    counts.incidents,
                    counts.events,
                    counts.blobs
                );
                say!(
                    "to sync  {} events, {} blobs ({} bytes)",
                    pending.events,
                    pending.blobs,
                    pending.blob_bytes
                );
            }
        }
        Command::Staff { json } => {
            let device = open(db)?;
            let members = match device.grid() {
                Some(grid) => device.staff(grid)?,
                None => device.roster()?,
            };
            shared::print_staff(&members, json)?;
        }
        Command::Categories => {
            for (code, meaning) in gridsync_core::event::CATEGORY_CATALOGUE {
                say!("{code:<22}{meaning}");
            }
        }
        Command::Config { set, json } => {
            let mut device = open(db)?;
            if let Some(ConfigSet::PrunePhotos { value }) = set {
                device.set_prune_photos(matches!(value, OnOff::On))?;
            }
            let prune = device.prunes_photos()?;
            if json {
                print_json(&serde_json::json!({ "prune_photos": prune }))?;
            } else {
                say!("prune-photos  {}", if prune { "on" } else { "off" });
            }
        }
        Command::Prune { json } => {
            let mut device = open(db)?;
            let report = device.prune_photos()?;
            if json {
                print_json(&serde_json::json!({
                    "pruned": report.pruned,
                    "bytes_freed": report.bytes_freed,
                }))?;
            } else {
                say!(
                    "pruned {} full photos the district holds ({} bytes); their thumbnails stay",
                    report.pruned,
                    report.bytes_freed
                );
            }
        }
        Command::Demo { keep } => demo::run(keep)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    shared::init_logging("warn");
    match shared::parse::<Cli>("gridsync") {
        Ok(cli) => shared::finish("gridsync", run(cli)),
        Err(code) => code,
    }
}

/// Resolves HOST:PORT (a name or an address).
fn resolve_addr(text: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .with_context(|| format!("relay address {text:?} (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("relay address {text:?} resolves to nothing"))
}

/// The runtime a sync runs on.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `blob`, fetching from the relay with `--fetch` when the blob is not held here.
fn blob(db: &std::path::Path, a: DeviceBlobArgs) -> Result<()> {
    let DeviceBlobArgs {
        blob: args,
        fetch,
        relay,
        relay_id,
    } = a;
    let (true, Some(relay), Some(relay_id)) = (fetch, relay, relay_id) else {
        return shared::blob(&open(db)?, args);
    };
    shared::refuse_terminal(&args)?;
    let mut device = open(db)?;
    let target = gridsync_device::SyncTarget {
        addr: resolve_addr(&relay)?,
        relay_id,
    };
    let options = gridsync_net::client::SyncOptions::default();
    let mut bar = progress::Bar::new(true);
    let bytes = runtime()?.block_on(device.fetch_blob(
        target,
        &args.hash,
        args.thumb,
        &options,
        &mut |p| bar.update(&p),
    ));
    bar.clear();
    shared::write_blob(&args, &bytes?)
}

fn sync(db: &std::path::Path, relay: &str, relay_id: NodeId, json: bool) -> Result<()> {
    let device = open(db)?;
    let addr = resolve_addr(relay)?;
    let runtime = runtime()?;
    let mut bar = progress::Bar::new(!json);
    let target = gridsync_device::SyncTarget { addr, relay_id };
    let options = gridsync_net::client::SyncOptions::default();
    let report = runtime.block_on(device.sync(target, &options, &mut |p| bar.update(&p)));
    bar.clear();
    let report = report?;
    let s = &report.summary;
    if json {
        print_json(&serde_json::json!({
            "relay": relay_id.to_hex(),
            "events_up": s.events_up,
            "events_already_there": s.events_dup,
            "events_down": s.events_down,
            "blobs_up": s.blobs_up,
            "blob_bytes_up": s.blob_bytes_up,
            "blobs_refused": s.blobs_refused,
            "blobs_down": s.blobs_down,
            "blob_bytes_down": s.blob_bytes_down,
            "fetches_refused": s.fetches_refused,
            "blobs_safe": s.blobs_safe,
            "round_trips": s.round_trips,
            "ms": report.elapsed.as_millis() as u64,
        }))?;
    } else {
        say!(
            "synced with {} in {:.2} s: {} events up ({} already there), {} down; {} photos/thumbnails up ({} bytes)",
            relay_id.short(),
            report.elapsed.as_secs_f64(),
            s.events_up,
            s.events_dup,
            s.events_down,
            s.blobs_up,
            s.blob_bytes_up
        );
        if s.blobs_refused > 0 {
            say!(
                "{} blobs were refused by the relay; they stay here and go again next sync",
                s.blobs_refused
            );
        }
        if s.blobs_down + s.fetches_refused > 0 {
            say!(
                "{} photos/thumbnails down ({} bytes); {} not fetched (asked again next sync)",
                s.blobs_down,
                s.blob_bytes_down,
                s.fetches_refused
            );
        }
    }
    Ok(())
}

/// `sync --follow`: follows the relay until SIGINT or SIGTERM, one line per notice on
/// standard output (the connection's ups and downs go to standard error).
fn follow(db: &std::path::Path, relay: &str, relay_id: NodeId, json: bool) -> Result<()> {
    use gridsync_device::FollowUpdate;
    let device = open(db)?;
    let addr = resolve_addr(relay)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let target = gridsync_device::SyncTarget { addr, relay_id };
    runtime.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        // Standard output closed (`| head -1`): nobody reads the notices any more.
        let closed = stop.clone();
        let print = move |line: String| {
            use std::io::Write;
            if writeln!(std::io::stdout().lock(), "{line}").is_err() {
                let _ = closed.send(true);
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = stop.send(true);
        });
        let mut caught_up_once = false;
        let mut on = |u: FollowUpdate| match u {
            FollowUpdate::Notice(n) => {
                let v = n.state.view();
                if json {
                    let line = serde_json::json!({
                        "kind": n.kind.as_str(),
                        "incident": n.incident.to_string(),
                        "event": format!("{}/{}", n.event.origin.to_hex(), n.event.seq),
                        "what": n.what,
                        "author": n.author,
                        "category": v.category,
                        "severity": v.severity,
                        "status": v.status,
                        "level": v.level,
                        "assignee": v.assignee,
                        "description": v.description,
                    });
                    print(line.to_string());
                } else {
                    print(format!(
                        "{:<8}  {}  {} {}: {}  ({}, by {})",
                        n.kind.as_str(),
                        n.incident,
                        v.severity.unwrap_or("-"),
                        v.category.as_deref().unwrap_or("-"),
                        v.description.as_deref().unwrap_or(""),
                        n.what,
                        n.author
                    ));
                }
            }
            FollowUpdate::Connected { addr } => eprintln!("connected to {addr}"),
            FollowUpdate::Progress(gridsync_net::client::SyncProgress::Session(
                gridsync_proto::client::Progress::Following,
            )) => {
                if !caught_up_once {
                    eprintln!(
                        "following {}: up to date, waiting for news",
                        relay_id.short()
                    );
                    caught_up_once = true;
                }
            }
            FollowUpdate::Progress(_) | FollowUpdate::CaughtUp { .. } => {}
            FollowUpdate::Disconnected { error, retry_in } => eprintln!(
                "lost the relay ({error}); retrying in {:.1} s",
                retry_in.as_secs_f64()
            ),
        };
        device.follow(target, stopped, &mut on).await?;
        anyhow::Ok(())
    })?;
    Ok(())
}
