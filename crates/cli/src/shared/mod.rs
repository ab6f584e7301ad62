//! What the two command lines share: output helpers, and the operator commands a relay
//! offers exactly as a device does (`edit`, `list`, `show`, `blob`).

/// `println!` that returns the error (a closed pipe) instead of panicking.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// `print!` that returns the error instead of panicking.
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)?
    };
}

pub mod output;
pub mod stats;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use gridsync_core::roster::STAFF_PREFIX;
use gridsync_core::{
    Assignee, BlobHash, Category, Change, Force, Level, Location, LocationSource, Millis,
    PhotoKind, Severity, Status, Verdict,
};
use gridsync_device::{Device, PhotoInput, StaffMember};

/// The flags of `edit`; the relay's `edit` takes the same.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("assign").args(["assignee", "force", "staff"]).multiple(false)))]
pub struct EditArgs {
    /// Incident id (or a unique prefix or suffix of at least 4 characters).
    pub id: String,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
    #[arg(long)]
    pub severity: Option<Severity>,
    /// New location latitude (with --lon).
    #[arg(long, requires = "lon", allow_negative_numbers = true)]
    pub lat: Option<f64>,
    #[arg(long, requires = "lat", allow_negative_numbers = true)]
    pub lon: Option<f64>,
    /// New workflow status: reported, accepted, rejected, dispatched, in_progress, resolved,
    /// verified, closed.
    #[arg(long)]
    pub status: Option<Status>,
    /// Escalate (or hand back) to a level: grid, community, street, district.
    #[arg(long)]
    pub level: Option<Level>,
    /// Why, with --level.
    #[arg(long, requires = "level", default_value = "")]
    pub reason: String,
    /// Assign (dispatch) to a department, e.g. sanitation (its name may not start with
    /// `force:` or `staff:`).
    #[arg(long)]
    pub assignee: Option<String>,
    /// Assign to one of the grid's forces: manager, assistant, supervisor, party-secretary,
    /// police, judicial, firefighter (written `force:FORCE`).
    #[arg(long)]
    pub force: Option<Force>,
    /// Assign to a member of the incident's grid's roster, by name (written `staff:NAME`;
    /// they must be on the roster held here).
    #[arg(long)]
    pub staff: Option<String>,
    /// Handling deadline (RFC 3339), with --assignee, --force or --staff.
    #[arg(long, requires = "assign", value_parser = parse_time)]
    pub due: Option<Millis>,
    #[arg(long)]
    pub comment: Option<String>,
    /// Evaluation score 1-5 (once resolved).
    #[arg(long)]
    pub score: Option<u8>,
    /// Evaluation verdict (default from the score): satisfied, acceptable, unsatisfied.
    #[arg(long, requires = "score")]
    pub verdict: Option<Verdict>,
    /// A photo to attach; repeat for several.
    #[arg(long = "photo")]
    pub photos: Vec<PathBuf>,
    /// Kind of the attached photos; default `after` when the incident is (or this edit makes
    /// it) in_progress, resolved, verified or closed, else `before`.
    #[arg(long)]
    pub kind: Option<PhotoKind>,
    /// Remove a photo (by hash).
    #[arg(long)]
    pub remove_photo: Option<BlobHash>,
    #[arg(long)]
    pub json: bool,
}

pub fn parse_time(s: &str) -> Result<Millis, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2026-11-26T09:30:00+08:00 ({e})"))
}

pub fn location(lat: Option<f64>, lon: Option<f64>) -> Result<Option<Location>> {
    match (lat, lon) {
        (Some(lat), Some(lon)) => Ok(Some(Location::new(lat, lon, LocationSource::Manual)?)),
        _ => Ok(None),
    }
}

pub fn read_photos(paths: &[PathBuf], device: &Device) -> Result<Vec<PhotoInput>> {
    paths
        .iter()
        .map(|p| PhotoInput::from_path(p, device.limits()).map_err(Into::into))
        .collect()
}

pub fn open(db: &Path) -> Result<Device> {
    Ok(Device::open(db)?)
}

pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    say!("{text}");
    Ok(())
}

/// The arguments of `show` (both command lines).
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Incident id: the full id, or a unique prefix or suffix of at least 4 characters.
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `blob` (both command lines).
#[derive(Args, Debug)]
pub struct BlobArgs {
    /// The photo's hash (as in `show`), or a thumbnail's.
    pub hash: BlobHash,
    /// The thumbnail of that photo.
    #[arg(long)]
    pub thumb: bool,
    /// Where to write; default standard output (refused on a terminal).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// `edit`: one operator or officer decision, checked against the workflow.
pub fn edit(device: &mut Device, a: EditArgs) -> Result<()> {
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
    let assignee = match (a.assignee, a.force, a.staff) {
        (Some(department), _, _) => Some(Assignee::department(&department)?),
        (None, Some(force), _) => Some(Assignee::Force(force)),
        (None, None, Some(name)) => Some(Assignee::parse(&format!("{STAFF_PREFIX}{name}"))?),
        (None, None, None) => None,
    };
    if let Some(assignee) = assignee {
        changes.push(Change::Assign {
            assignee: assignee.to_string(),
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
    let photos = read_photos(&a.photos, device)?
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
    Ok(())
}

/// `list`.
pub fn list(device: &Device, json: bool, overdue: bool) -> Result<()> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let views: Vec<_> = device
        .list()?
        .iter()
        .filter(|s| !overdue || s.is_overdue(now_ms))
        .map(|s| s.view())
        .collect();
    if json {
        print_json(&views)?;
    } else {
        say_raw!("{}", output::table(&views));
    }
    Ok(())
}

/// `show`.
pub fn show(device: &Device, args: ShowArgs) -> Result<()> {
    let ShowArgs { id, json } = args;
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
    Ok(())
}

/// A roster member as `staff list --json` (and the handheld's `staff --json`) prints it.
#[derive(serde::Serialize, Debug)]
pub struct StaffView<'a> {
    pub grid: String,
    pub name: &'a str,
    pub force: &'static str,
    pub phone: Option<&'a str>,
    /// The handheld's node id, 64 hex digits.
    pub device: Option<String>,
}

impl<'a> From<&'a StaffMember> for StaffView<'a> {
    fn from(m: &'a StaffMember) -> Self {
        Self {
            grid: m.grid.to_string(),
            name: &m.name,
            force: m.force.as_str(),
            phone: m.phone.as_deref(),
            device: m.device.map(|d| d.to_hex()),
        }
    }
}

/// Prints roster members: a JSON array of [`StaffView`], or one line each.
pub fn print_staff(members: &[StaffMember], json: bool) -> Result<()> {
    if json {
        let views: Vec<StaffView<'_>> = members.iter().map(StaffView::from).collect();
        return print_json(&views);
    }
    for m in members {
        say!(
            "{}  {:<15}  {:<24}  {:<17}  {}",
            m.grid,
            m.force.as_str(),
            m.name,
            m.phone.as_deref().unwrap_or("-"),
            m.device.map_or_else(|| "-".to_owned(), |d| d.to_hex())
        );
    }
    Ok(())
}

/// `blob`: a blob not held here (say, a photo not yet received) is an error.
pub fn blob(device: &Device, args: BlobArgs) -> Result<()> {
    refuse_terminal(&args)?;
    let bytes = device.blob(&args.hash, args.thumb)?;
    write_blob(&args, &bytes)
}

/// Refuses to write a blob to a terminal (checked before any work).
pub fn refuse_terminal(args: &BlobArgs) -> Result<()> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!(
            "blob {} is binary image data; give -o FILE or redirect standard output",
            args.hash
        );
    }
    Ok(())
}

/// Writes a blob's bytes where `args` says: the file of `-o`, or standard output.
pub fn write_blob(args: &BlobArgs, bytes: &[u8]) -> Result<()> {
    match &args.output {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Sets up logging (to standard error, filtered by `GRIDSYNC_LOG`, default `default_filter`).
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRIDSYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Parses the command line as `P`, printing clap's errors as one line; `None` means exit
/// with the returned code.
pub fn parse<P: clap::Parser>(program: &str) -> Result<P, ExitCode> {
    match P::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("{program}: error: no command given (see {program} --help)");
            Err(ExitCode::from(2))
        }
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            Err(ExitCode::SUCCESS)
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
            eprintln!("{program}: error: {message} (see {program} --help)");
            Err(ExitCode::from(2))
        }
    }
}

/// The exit code of a command's result, printing an error as one line.
pub fn finish(program: &str, result: Result<()>) -> ExitCode {
    match result {
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
            eprintln!("{program}: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
