//! `gridsync`: the device command line.

/// `println!` that returns the error (a closed pipe) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// `print!` that returns the error instead of panicking.
macro_rules! say_raw {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)?
    };
}

mod demo;
mod output;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use gridsync_core::{
    BlobHash, Category, Change, GridCode, Level, Location, LocationSource, Millis, PhotoKind,
    Severity, Status, Verdict,
};
use gridsync_device::{Device, NewReport, PhotoInput};

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
    },
    /// Show one incident (full id, or a unique prefix or suffix of at least 4 characters).
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a stored photo (or its thumbnail) to a file or standard output.
    Blob {
        /// The photo's hash (as in `show`), or a thumbnail's.
        hash: BlobHash,
        /// The thumbnail of that photo.
        #[arg(long)]
        thumb: bool,
        /// Where to write; default standard output (refused on a terminal).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// What the store holds and what is waiting to sync.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List the category catalogue.
    Categories,
    /// Run the whole story on loopback in a temporary folder, with no set-up.
    Demo {
        /// Keep the stores in DIR instead of a temporary folder.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
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

/// The flags of `edit`; the relay's `edit` takes the same.
#[derive(Args, Debug)]
struct EditArgs {
    /// Incident id (or a unique prefix or suffix of at least 4 characters).
    id: String,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    category: Option<String>,
    #[arg(long)]
    severity: Option<Severity>,
    /// New location latitude (with --lon).
    #[arg(long, requires = "lon", allow_negative_numbers = true)]
    lat: Option<f64>,
    #[arg(long, requires = "lat", allow_negative_numbers = true)]
    lon: Option<f64>,
    /// New workflow status: reported, accepted, rejected, dispatched, in_progress, resolved,
    /// verified, closed.
    #[arg(long)]
    status: Option<Status>,
    /// Escalate (or hand back) to a level: grid, community, street, district.
    #[arg(long)]
    level: Option<Level>,
    /// Why, with --level.
    #[arg(long, requires = "level", default_value = "")]
    reason: String,
    /// Department or person who handles it.
    #[arg(long)]
    assignee: Option<String>,
    /// Handling deadline (RFC 3339), with --assignee.
    #[arg(long, requires = "assignee", value_parser = parse_time)]
    due: Option<Millis>,
    #[arg(long)]
    comment: Option<String>,
    /// Evaluation score 1-5 (once resolved).
    #[arg(long)]
    score: Option<u8>,
    /// Evaluation verdict (default from the score): satisfied, acceptable, unsatisfied.
    #[arg(long, requires = "score")]
    verdict: Option<Verdict>,
    /// A photo to attach; repeat for several.
    #[arg(long = "photo")]
    photos: Vec<PathBuf>,
    /// Kind of the attached photos; default `after` when the incident is (or this edit makes
    /// it) in_progress, resolved, verified or closed, else `before`.
    #[arg(long)]
    kind: Option<PhotoKind>,
    /// Remove a photo (by hash).
    #[arg(long)]
    remove_photo: Option<BlobHash>,
    #[arg(long)]
    json: bool,
}

fn parse_time(s: &str) -> Result<Millis, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2026-11-26T09:30:00+08:00 ({e})"))
}

fn location(lat: Option<f64>, lon: Option<f64>) -> Result<Option<Location>> {
    match (lat, lon) {
        (Some(lat), Some(lon)) => Ok(Some(Location::new(lat, lon, LocationSource::Manual)?)),
        _ => Ok(None),
    }
}

fn read_photos(paths: &[PathBuf], device: &Device) -> Result<Vec<PhotoInput>> {
    paths
        .iter()
        .map(|p| PhotoInput::from_path(p, device.limits()).map_err(Into::into))
        .collect()
}

fn open(db: &Path) -> Result<Device> {
    Ok(Device::open(db)?)
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    say!("{text}");
    Ok(())
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
            let id = device.resolve(&a.id)?;
            let mut changes = Vec::new();
            if let Some(d) = a.description {
                changes.push(Change::Description(d));
            }
            if let Some(c) = a.category {
                changes.push(Change::Category(Category::from_catalogue(&c)?));
            }
            if let Some(s) = a.severity {
                changes.push(Change::Severity(s));
            }
            if let Some(l) = location(a.lat, a.lon)? {
                changes.push(Change::Location(l));
            }
            if let Some(s) = a.status {
                changes.push(Change::Status(s));
            }
            if let Some(level) = a.level {
                changes.push(Change::Escalate {
                    level,
                    reason: a.reason,
                });
            }
            if let Some(assignee) = a.assignee {
                changes.push(Change::Assign {
                    assignee,
                    due: a.due,
                });
            }
            if let Some(c) = a.comment {
                changes.push(Change::Comment(c));
            }
            if let Some(score) = a.score {
                changes.push(Change::Evaluate {
                    score,
                    verdict: a.verdict,
                });
            }
            if let Some(h) = a.remove_photo {
                changes.push(Change::RemovePhoto(h));
            }
            let photos = read_photos(&a.photos, &device)?
                .into_iter()
                .map(|p| (p, a.kind))
                .collect();
            device.edit(id, changes, photos)?;
            let view = device
                .get(id)?
                .with_context(|| format!("incident {id} vanished"))?
                .view();
            if a.json {
                print_json(&view)?;
            } else {
                say!("{} {} {}", view.id, view.status, view.level);
            }
        }
        Command::List { json } => {
            let device = open(db)?;
            let views: Vec<_> = device.list()?.iter().map(|s| s.view()).collect();
            if json {
                print_json(&views)?;
            } else {
                say_raw!("{}", output::table(&views));
            }
        }
        Command::Show { id, json } => {
            let device = open(db)?;
            let id = device.resolve(&id)?;
            let view = device
                .get(id)?
                .with_context(|| format!("no incident {id} in this store"))?
                .view();
            if json {
                print_json(&view)?;
            } else {
                say_raw!("{}", output::detail(&view));
            }
        }
        Command::Blob {
            hash,
            thumb,
            output,
        } => {
            let device = open(db)?;
            let bytes = device.blob(&hash, thumb)?;
            match output {
                Some(path) => std::fs::write(&path, &bytes)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => {
                    let mut out = std::io::stdout().lock();
                    if out.is_terminal() {
                        bail!("blob {hash} is binary image data; give -o FILE or redirect standard output");
                    }
                    out.write_all(&bytes)?;
                    out.flush()?;
                }
            }
        }
        Command::Status { json } => {
            let device = open(db)?;
            let counts = device.counts()?;
            let pending = device.pending()?;
            let value = serde_json::json!({
                "node_id": device.node_id().to_hex(),
                "name": device.name(),
                "grid": device.grid().to_string(),
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
                say!("grid     {}", device.grid());
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
        Command::Categories => {
            for (code, meaning) in gridsync_core::event::CATEGORY_CATALOGUE {
                say!("{code:<22}{meaning}");
            }
        }
        Command::Demo { keep } => demo::run(keep)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRIDSYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("gridsync: error: no command given (see gridsync --help)");
            return ExitCode::from(2);
        }
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's own rendering spans several lines; errors here are one line.
            let rendered = e.render().to_string();
            let message = rendered
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("gridsync: error: {message} (see gridsync --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`gridsync list | head`): not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("gridsync: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
