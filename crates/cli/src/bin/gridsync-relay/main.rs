//! `gridsync-relay`: the relay daemon of a street sub-center or of the district, and its
//! operator commands.

#[path = "../../shared/mod.rs"]
#[macro_use]
mod shared;
mod accounts;
mod config;
mod stats;

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use gridsync_core::{Force, GridCode, NodeId, Scope, StaffEntry};
use gridsync_device::{Device, SystemEnv};
use gridsync_proto::Role;
use gridsync_store::Store;
use shared::{open, print_json, BlobArgs, EditArgs, ShowArgs, StaffView};

/// gridsync-relay: the sync relay of a street sub-center or of the district.
#[derive(Parser, Debug)]
#[command(name = "gridsync-relay", version)]
struct Cli {
    /// The relay's store.
    #[arg(
        long,
        global = true,
        env = "GRIDSYNC_RELAY_DB",
        default_value = "gridsync-relay.db"
    )]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RelayRole {
    /// A community workstation (serves its community's handhelds; its upstream is a street).
    Community,
    /// A street sub-center (serves handhelds or community workstations).
    Street,
    /// The district command center.
    District,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the relay's store and node identity; prints the node id devices pin.
    Init {
        /// The sub-center's name; the author of its decisions.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RelayRole,
        #[arg(long)]
        json: bool,
    },
    /// Print the relay's node id.
    Id {
        #[arg(long)]
        json: bool,
    },
    /// Allow a device (for one grid) or a street relay (for a scope) to sync here.
    Enroll {
        /// The node id `gridsync init` (or `gridsync-relay init`) printed.
        node_id: NodeId,
        /// A device's grid, e.g. 110101/002/014/03.
        #[arg(long, conflicts_with_all = ["relay", "scope"])]
        grid: Option<GridCode>,
        /// Enroll a relay (with --scope): a street sub-center for a street's scope
        /// (110101/002), a community workstation for a community's (110101/002/014).
        #[arg(long, requires = "scope")]
        relay: bool,
        /// The relay's scope, e.g. 110101/002 (a street) or 110101/002/014 (a community).
        #[arg(long, requires = "relay")]
        scope: Option<Scope>,
        /// The relay's role when its scope's depth does not say it (default: a street for
        /// two segments, a community for three).
        #[arg(long, requires = "relay", value_enum)]
        role: Option<RelayRole>,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw an enrollment: the node's next session is refused.
    Revoke { node_id: NodeId },
    /// List the enrolled devices and relays.
    Peers {
        #[arg(long)]
        json: bool,
    },
    /// Serve devices (and child relays); with an upstream, forward everything there.
    Run {
        /// A TOML file of these settings: its keys are the long flags with _ for - (and
        /// db); flags given here win over it (docs/gridsync-relay.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 0.0.0.0:4433 (port 0: any free port, printed).
        /// Required, here or in the config file.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The upstream (district) relay, HOST:PORT.
        #[arg(long, requires = "upstream_id")]
        upstream: Option<String>,
        /// The upstream relay's node id.
        #[arg(long, requires = "upstream")]
        upstream_id: Option<NodeId>,
        /// End a child's session after this many seconds without a message on its control
        /// stream (at least 1).
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
        session_idle_secs: u64,
        /// Serve at most this many connections at once (at least 1); one more is refused
        /// before its handshake, and its child retries later.
        #[arg(long, default_value_t = gridsync_net::server::MAX_CONNECTIONS as u64, value_parser = clap::value_parser!(u64).range(1..))]
        max_connections: u64,
        /// Connections one node (a handheld, a child relay) may hold at once; one more is
        /// closed with `Busy` (at least 1).
        #[arg(long, default_value_t = gridsync_relay::NodeLimits::default().connections as u64, value_parser = clap::value_parser!(u64).range(1..))]
        max_connections_per_node: u64,
        /// Events per second one node may send, sustained; over it (after its burst) its
        /// batches wait and it is slowed, never refused (0: no limit).
        #[arg(long, default_value_t = gridsync_relay::NodeLimits::default().events_per_sec)]
        max_events_per_sec: u32,
        /// Events one node may send at once above its sustained rate.
        #[arg(long, default_value_t = gridsync_relay::NodeLimits::default().burst)]
        event_burst: u32,
        /// Seconds a handshake may take, and a connection may stay open with no session
        /// (at least 1).
        #[arg(long, default_value_t = gridsync_net::server::HANDSHAKE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
        handshake_secs: u64,
        /// Migration from stores written before signed events: admit unsigned events from
        /// children if their timestamp is before this time (RFC 3339, e.g.
        /// 2026-12-01T00:00:00Z). Off by default: every event must be signed.
        #[arg(long, value_parser = parse_cutoff)]
        accept_unsigned_before: Option<u64>,
        /// Migration: offer the upstream the unsigned events held here (it must run with
        /// --accept-unsigned-before too). Off by default.
        #[arg(long)]
        upload_unsigned: bool,
        /// Deadline policy: escalate each overdue case (dispatched or in progress past its
        /// --due) one level up, once per dispatch, as this platform's signed decision;
        /// checked at start and every 30 s. Off by default (overdue cases are only listed).
        #[arg(long)]
        escalate_overdue: bool,
        /// Serve the web console (and its API) on this address, e.g. 0.0.0.0:8080. Off by
        /// default.
        #[arg(long)]
        http: Option<SocketAddr>,
        /// The console's TLS certificate chain (PEM); with --http-key.
        #[arg(long, requires_all = ["http", "http_key"])]
        http_cert: Option<PathBuf>,
        /// The console's TLS private key (PEM); with --http-cert.
        #[arg(long, requires_all = ["http", "http_cert"])]
        http_key: Option<PathBuf>,
        /// Serve Prometheus metrics at /metrics on the --http address.
        #[arg(long, requires = "http")]
        metrics: bool,
        /// Serve the read-only Open311 GeoReport v2 API under /open311/v2/ on the --http
        /// address (requests need an API key).
        #[arg(long, requires = "http")]
        open311: bool,
        /// The tile URL template of the console's map, e.g.
        /// `https://tiles.example/{z}/{x}/{y}.png` (none: the map draws without tiles).
        #[arg(long, requires = "http")]
        map_tiles: Option<String>,
        /// The district's grid boundaries for the console's map (GeoJSON).
        #[arg(long, requires = "http")]
        map_grids: Option<PathBuf>,
    },
    /// Copy the store, consistent as of one instant, to a new FILE (works while `run` runs);
    /// refuses to overwrite an existing file. The copy is a store `run --db FILE` opens.
    Backup {
        /// Where the copy goes (must not exist).
        file: PathBuf,
    },
    /// List the incidents held here.
    List {
        #[arg(long)]
        json: bool,
        /// Only the cases dispatched or in progress past their due time (`--due`).
        #[arg(long)]
        overdue: bool,
    },
    /// Show one incident.
    Show(ShowArgs),
    /// Write a received photo (or its thumbnail) to a file or standard output.
    Blob(BlobArgs),
    /// An operator decision (dispatch, escalate, assign, comment...), written as this relay's
    /// own; devices and the upstream get it at their next sync. Works while `run` runs.
    Edit(EditArgs),
    /// Check every event of an incident: is its origin's signature valid, and whose key is
    /// it (this relay, a peer enrolled here, or a key a node record from below vouches for).
    /// Exit 0 only if every signature verifies.
    Verify {
        /// The incident id (or a unique part of it of at least 4 characters).
        incident: String,
        #[arg(long)]
        json: bool,
    },
    /// What the store holds and what waits to go upstream.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Evaluation statistics of the incidents held here: statuses, the level closed cases
    /// were closed at (against the 80-85 / 10-15 / under 5 % target), overdue cases, the time
    /// from report to acceptance, dispatch, resolution and closing, evaluations, staff
    /// (docs/STATS.md defines every figure).
    Stats {
        /// Only incidents reported at or after this time (RFC 3339, e.g.
        /// 2026-11-01T00:00:00+08:00).
        #[arg(long, value_parser = parse_cutoff)]
        since: Option<u64>,
        /// Only incidents reported before this time (RFC 3339).
        #[arg(long, value_parser = parse_cutoff)]
        until: Option<u64>,
        /// Also the figures per grid, community, street, category or staff member assigned.
        #[arg(long, value_enum)]
        by: Option<StatsBy>,
        #[arg(long)]
        json: bool,
    },
    /// Export the incidents held here as CSV (RFC 4180, for spreadsheets), GeoJSON (RFC 7946,
    /// for GIS tools) or JSON lines (the incident JSON of `list --json`, one per line).
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only incidents reported at or after this time (RFC 3339, e.g.
        /// 2026-11-01T00:00:00+08:00).
        #[arg(long, value_parser = parse_cutoff)]
        since: Option<u64>,
        /// Only incidents in this status (repeatable, or comma-separated: closed,rejected).
        #[arg(long, value_delimiter = ',')]
        status: Vec<gridsync_core::Status>,
        /// Write to FILE (written to FILE.tmp, then renamed) instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The grid roster: who serves each grid (its seven forces), kept as this relay's signed
    /// events, which go down to the grid's handhelds and up at the next syncs. Works while
    /// `run` runs.
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
    /// The web console's operator accounts (local to this relay, never synced): the password
    /// is read from standard input (its first line), or prompted twice on a terminal.
    Operator {
        #[command(subcommand)]
        command: accounts::OperatorCommand,
    },
    /// The API keys of the console's Open311 API (`requests.json` needs one).
    Apikey {
        #[command(subcommand)]
        command: accounts::ApiKeyCommand,
    },
}

/// The keys of `stats --by`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum StatsBy {
    /// The grid code.
    Grid,
    /// The community: the grid code's first three segments.
    Community,
    /// The street: the grid code's first two segments.
    Street,
    /// The category.
    Category,
    /// The staff member currently assigned (assignee `staff:NAME`).
    Staff,
}

impl From<StatsBy> for gridsync_relay::stats::GroupBy {
    fn from(by: StatsBy) -> Self {
        use gridsync_relay::stats::GroupBy;
        match by {
            StatsBy::Grid => GroupBy::Grid,
            StatsBy::Community => GroupBy::Community,
            StatsBy::Street => GroupBy::Street,
            StatsBy::Category => GroupBy::Category,
            StatsBy::Staff => GroupBy::Staff,
        }
    }
}

#[derive(Subcommand, Debug)]
enum StaffCommand {
    /// Add a member to a grid's roster, or change the member of that name.
    Add {
        /// The member's grid, e.g. 110101/002/014/03 (a handheld or relay enrolled here must
        /// serve it).
        #[arg(long)]
        grid: GridCode,
        /// manager, assistant, supervisor, party-secretary, police, judicial or firefighter.
        #[arg(long)]
        force: Force,
        /// The member's name (1 to 64 bytes): their key within the grid's roster.
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: Option<String>,
        /// The node id of the member's handheld.
        #[arg(long)]
        device: Option<NodeId>,
        #[arg(long)]
        json: bool,
    },
    /// Take a member off a grid's roster.
    Remove {
        name: String,
        #[arg(long)]
        grid: GridCode,
    },
    /// The active members of every grid's roster held here, or of one grid.
    List {
        #[arg(long)]
        grid: Option<GridCode>,
        #[arg(long)]
        json: bool,
    },
}

fn now_ms() -> u64 {
    gridsync_net::now_ms()
}

fn run(cli: Cli) -> Result<()> {
    let db = cli.db.as_path();
    match cli.command {
        Command::Init { name, role, json } => {
            let role = match role {
                RelayRole::Community => "community",
                RelayRole::Street => "street",
                RelayRole::District => "district",
            };
            let node = Device::init_node(db, &name, role, "", SystemEnv)?;
            if json {
                print_json(&serde_json::json!({
                    "node_id": node.node_id().to_hex(),
                    "name": node.name(),
                    "role": role,
                }))?;
            } else {
                say!("{}", node.node_id());
            }
        }
        Command::Id { json } => {
            let node = open_relay(db)?;
            if json {
                print_json(&serde_json::json!({ "node_id": node.node_id().to_hex() }))?;
            } else {
                say!("{}", node.node_id());
            }
        }
        Command::Enroll {
            node_id,
            grid,
            relay,
            scope,
            role,
            json,
        } => {
            let node = open_relay(db)?;
            drop(node);
            let (role, scope) = match (grid, relay, scope) {
                (Some(grid), false, None) => (Role::Device, Scope::from(&grid)),
                (None, true, Some(scope)) => {
                    let segments = scope.as_str().split('/').count();
                    let role = match role {
                        Some(RelayRole::Community) => Role::Community,
                        Some(RelayRole::Street) => Role::Street,
                        Some(RelayRole::District) => Role::District,
                        None => match Role::of_scope_depth(segments) {
                            Some(r @ (Role::Street | Role::Community)) => r,
                            _ => bail!(
                                "--scope {scope} has {segments} segments: a street's has 2 (110101/002), a community's 3 (110101/002/014); give --role for another"
                            ),
                        },
                    };
                    (role, scope)
                }
                _ => bail!(
                    "give either --grid GRID (a device) or --relay --scope PREFIX (a street or community relay)"
                ),
            };
            let mut store = Store::open(db)?;
            store.enroll(&node_id, role, &scope, now_ms())?;
            if json {
                print_json(&serde_json::json!({
                    "node_id": node_id.to_hex(),
                    "role": role.as_str(),
                    "scope": scope.to_string(),
                }))?;
            } else {
                say!("enrolled {} {} for {}", role.as_str(), node_id, scope);
            }
        }
        Command::Revoke { node_id } => {
            open_relay(db)?;
            let mut store = Store::open(db)?;
            if !store.revoke(&node_id, now_ms())? {
                let known = store.peers()?.into_iter().any(|p| p.node == node_id);
                if known {
                    bail!("{node_id} was already revoked here");
                }
                bail!("{node_id} is not enrolled here");
            }
            say!("revoked {node_id}; its next session is refused");
        }
        Command::Peers { json } => {
            open_relay(db)?;
            let store = Store::open(db)?;
            let peers = store.peers()?;
            if json {
                let v: Vec<_> = peers
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "node_id": p.node.to_hex(),
                            "role": p.role.as_str(),
                            "scope": p.scope.to_string(),
                            "enrolled_ms": p.enrolled_ms,
                            "revoked_ms": p.revoked_ms,
                        })
                    })
                    .collect();
                print_json(&v)?;
            } else {
                for p in peers {
                    say!(
                        "{}  {:<8}  {:<20}  {}",
                        p.node,
                        p.role.as_str(),
                        p.scope,
                        if p.revoked_ms.is_some() {
                            "revoked"
                        } else {
                            "enrolled"
                        }
                    );
                }
            }
        }
        Command::Run {
            config: _,
            listen,
            upstream,
            upstream_id,
            session_idle_secs,
            max_connections,
            max_connections_per_node,
            max_events_per_sec,
            event_burst,
            handshake_secs,
            accept_unsigned_before,
            upload_unsigned,
            escalate_overdue,
            http,
            http_cert,
            http_key,
            metrics,
            open311,
            map_tiles,
            map_grids,
        } => {
            let listen = listen.context(
                "give the address to listen on: --listen ADDR, or `listen` in the --config file",
            )?;
            let console = config::ConsoleSettings {
                http,
                cert: http_cert,
                key: http_key,
                metrics,
                open311,
                map_tiles,
                map_grids,
            };
            open_relay(db)?;
            let upstream = match (upstream, upstream_id) {
                (Some(addr), Some(id)) => Some(gridsync_relay::Upstream {
                    addr: resolve_addr(&addr)?,
                    id,
                }),
                _ => None,
            };
            let options = gridsync_relay::RelayOptions {
                session_idle: std::time::Duration::from_secs(session_idle_secs),
                max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
                handshake_timeout: std::time::Duration::from_secs(handshake_secs),
                node_limits: gridsync_relay::NodeLimits {
                    connections: usize::try_from(max_connections_per_node).unwrap_or(usize::MAX),
                    events_per_sec: max_events_per_sec,
                    burst: event_burst,
                },
                accept_unsigned_before,
                upload_unsigned,
                escalate_overdue,
                ..gridsync_relay::RelayOptions::default()
            };
            serve(db, listen, upstream, options, console)?;
        }
        Command::List { json, overdue } => shared::list(&open_relay(db)?, json, overdue)?,
        Command::Show(a) => shared::show(&open_relay(db)?, a)?,
        Command::Blob(a) => shared::blob(&open_relay(db)?, a)?,
        Command::Edit(a) => {
            let mut node = open_relay(db)?;
            shared::edit(&mut node, a)?;
        }
        Command::Verify { incident, json } => verify(db, &incident, json)?,
        Command::Stats {
            since,
            until,
            by,
            json,
        } => {
            if let (Some(s), Some(u)) = (since, until) {
                if s >= u {
                    bail!("--since must be before --until (the window takes reports from --since up to, not including, --until)");
                }
            }
            let window = gridsync_relay::stats::Window {
                since_ms: since,
                until_ms: until,
            };
            stats::run(&open_relay(db)?, window, by.map(Into::into), json)?
        }
        Command::Export {
            format,
            since,
            status,
            output,
        } => {
            let filter = gridsync_relay::export::Filter {
                since_ms: since,
                statuses: status,
            };
            export(db, format.into(), &filter, output.as_deref())?
        }
        Command::Staff { command } => staff(db, command)?,
        Command::Backup { file } => {
            let node = open_relay(db)?;
            node.store().backup(&file)?;
            // The copy must open as a relay's store before it counts as a backup.
            Store::open(&file)
                .with_context(|| format!("{}: the backup does not open", file.display()))?;
            say!("backed up {} to {}", db.display(), file.display());
        }
        Command::Operator { command } => accounts::operator(db, command, now_ms())?,
        Command::Apikey { command } => accounts::api_key(db, command, now_ms())?,
        Command::Status { json } => {
            let node = open_relay(db)?;
            let counts = node.counts()?;
            let pending = node.store().pending(&node.node_id())?;
            let now = now_ms();
            let nodes = status_nodes(node.store(), now)?;
            let last_ack = node.store().last_upstream_ack()?;
            let used = node.store().storage_use()?;
            let value = serde_json::json!({
                "node_id": node.node_id().to_hex(),
                "name": node.name(),
                "role": node.role(),
                "events": counts.events,
                "incidents": counts.incidents,
                "blobs": counts.blobs,
                "pending_upstream": {
                    "own_events": pending.events,
                    "blobs": pending.blobs,
                    "blob_bytes": pending.blob_bytes,
                },
                "upstream": {
                    "last_ack_ms": last_ack.map(|(_, at)| at),
                    "last_ack_age_ms": last_ack.map(|(_, at)| now.saturating_sub(at)),
                    "parent": last_ack.map(|(p, _)| p.to_hex()),
                },
                "storage": {
                    "db_bytes": used.db_bytes,
                    "wal_bytes": used.wal_bytes,
                    "shm_bytes": used.shm_bytes,
                    "blob_bytes": used.blob_bytes,
                    "partial_blob_bytes": used.partial_bytes,
                    "total_bytes": used.db_bytes + used.wal_bytes + used.shm_bytes,
                },
                "nodes": nodes,
            });
            if json {
                print_json(&value)?;
            } else {
                say!("node     {}", node.node_id());
                say!("name     {} ({})", node.name(), node.role());
                say!(
                    "holds    {} incidents, {} events, {} blobs",
                    counts.incidents,
                    counts.events,
                    counts.blobs
                );
                say!(
                    "upstream {} own events and {} blobs ({} bytes) not yet acknowledged",
                    pending.events,
                    pending.blobs,
                    pending.blob_bytes
                );
                match last_ack {
                    Some((_, at)) => say!(
                        "         last acknowledged {} ({} ago)",
                        fmt_ms(at),
                        age(now.saturating_sub(at))
                    ),
                    None => say!("         nothing acknowledged upstream yet"),
                }
                say!(
                    "storage  {} bytes (database {}, wal {}, shm {}); blobs {} bytes, partial {}",
                    used.db_bytes + used.wal_bytes + used.shm_bytes,
                    used.db_bytes,
                    used.wal_bytes,
                    used.shm_bytes,
                    used.blob_bytes,
                    used.partial_bytes
                );
                for n in &nodes {
                    let contact = match (n.last_contact_ms, n.last_contact_age_ms) {
                        (Some(_), Some(a)) => format!("seen {} ago", age(a)),
                        _ => "never seen".to_owned(),
                    };
                    say!(
                        "node     {} {:<9} {:<20} {}, {} sessions, {} events sent, backlog {}{}",
                        n.node_id.get(..16).unwrap_or(&n.node_id),
                        n.role,
                        n.scope,
                        contact,
                        n.sessions,
                        n.events_in,
                        n.backlog,
                        if n.revoked { " (revoked)" } else { "" }
                    );
                }
            }
        }
    }
    Ok(())
}

/// `staff add|remove|list`.
fn staff(db: &std::path::Path, command: StaffCommand) -> Result<()> {
    let mut node = open_relay(db)?;
    match command {
        StaffCommand::Add {
            grid,
            force,
            name,
            phone,
            device,
            json,
        } => {
            let member = node.staff_add(
                &grid,
                StaffEntry {
                    name,
                    force,
                    phone,
                    device,
                },
            )?;
            if json {
                print_json(&StaffView::from(&member))?;
            } else {
                say!(
                    "{} is on the roster of {} as {}",
                    member.name,
                    member.grid,
                    member.force
                );
            }
        }
        StaffCommand::Remove { name, grid } => {
            node.staff_remove(&grid, &name)?;
            say!("{} is off the roster of {grid}", name.trim());
        }
        StaffCommand::List { grid, json } => {
            let members = match &grid {
                Some(g) => node.staff(g)?,
                None => node.roster()?,
            };
            shared::print_staff(&members, json)?;
        }
    }
    Ok(())
}

/// One enrolled node in `status`.
#[derive(Debug, serde::Serialize)]
struct NodeStatus {
    node_id: String,
    role: &'static str,
    scope: String,
    revoked: bool,
    /// When a session of it last started or ended here (Unix ms), and how long ago.
    last_contact_ms: Option<u64>,
    last_contact_age_ms: Option<u64>,
    sessions: u64,
    /// Events it sent here that were stored.
    events_in: u64,
    /// The download position it last reached (`null`: it never downloaded).
    down_cursor: Option<u64>,
    /// The events of its scope committed here after `down_cursor` (from the start if it
    /// never downloaded) that did not come from it: what its next download brings.
    backlog: u64,
}

/// Each node enrolled here (revoked ones too), with its contact and backlog.
fn status_nodes(store: &Store, now: u64) -> Result<Vec<NodeStatus>> {
    let contacts = store.contacts()?;
    let mut out = Vec::new();
    for p in store.peers()? {
        let c = contacts.iter().find(|c| c.node == p.node);
        let cursor = c.and_then(|c| c.down_cursor);
        out.push(NodeStatus {
            node_id: p.node.to_hex(),
            role: p.role.as_str(),
            scope: p.scope.to_string(),
            revoked: p.revoked_ms.is_some(),
            last_contact_ms: c.map(|c| c.last_ms),
            last_contact_age_ms: c.map(|c| now.saturating_sub(c.last_ms)),
            sessions: c.map_or(0, |c| c.sessions),
            events_in: c.map_or(0, |c| c.events_in),
            down_cursor: cursor,
            backlog: store.backlog(&p.node, &p.scope, cursor.unwrap_or(0))?,
        });
    }
    Ok(out)
}

/// A Unix time in ms as RFC 3339 (UTC, seconds).
fn fmt_ms(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms"),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

/// A duration in ms for people: `42s`, `7m`, `3h`, `2d`.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Opens the store as a relay's (refusing a device's store).
fn open_relay(db: &std::path::Path) -> Result<Device> {
    let node = open(db)?;
    if node.role() == "device" {
        bail!(
            "{}: this is a device's store; a relay's is made by `gridsync-relay init`",
            db.display()
        );
    }
    Ok(node)
}

/// `verify`: prints each event's signature check; fails (exit 1) if any does not verify.
fn verify(db: &std::path::Path, incident: &str, json: bool) -> Result<()> {
    use gridsync_relay::verify::{verify_incident, Signer};
    let node = open_relay(db)?;
    let id = node.resolve(incident)?;
    let report = verify_incident(node.store(), &node.node_id(), &id)?;
    if report.events.is_empty() {
        bail!("no incident {id} in this store");
    }
    let signer_text = |s: &Signer| match s {
        Signer::ThisRelay => "this relay".to_owned(),
        Signer::Peer {
            role,
            scope,
            revoked,
        } => format!(
            "{} {}enrolled here for {scope}",
            role.as_str(),
            if *revoked { "once " } else { "" }
        ),
        Signer::Vouched {
            role,
            scope,
            by,
            revoked_after,
        } => format!(
            "{} enrolled for {scope} by relay {}{}",
            role.as_str(),
            by.short(),
            revoked_after.map_or(String::new(), |n| format!(", revoked after its event {n}"))
        ),
        Signer::NotEnrolledHere => "not enrolled here, nor vouched for below".to_owned(),
    };
    if json {
        let events: Vec<_> = report
            .events
            .iter()
            .map(|e| {
                let signer = match &e.signer {
                    Signer::ThisRelay => serde_json::json!({ "kind": "this-relay" }),
                    Signer::Peer {
                        role,
                        scope,
                        revoked,
                    } => serde_json::json!({
                        "kind": "peer",
                        "role": role.as_str(),
                        "scope": scope.to_string(),
                        "revoked": revoked,
                    }),
                    Signer::Vouched {
                        role,
                        scope,
                        by,
                        revoked_after,
                    } => serde_json::json!({
                        "kind": "vouched",
                        "role": role.as_str(),
                        "scope": scope.to_string(),
                        "by": by.to_hex(),
                        "revoked_after": revoked_after,
                    }),
                    Signer::NotEnrolledHere => serde_json::json!({ "kind": "not-enrolled-here" }),
                };
                serde_json::json!({
                    "origin": e.origin.to_hex(),
                    "seq": e.seq,
                    "author": e.author,
                    "kind": e.kind,
                    "signature": e.status.as_str(),
                    "signer": signer,
                })
            })
            .collect();
        print_json(&serde_json::json!({
            "incident": id.to_string(),
            "all_valid": report.all_valid(),
            "events": events,
        }))?;
    } else {
        say!("incident {id}: {} events", report.events.len());
        for e in &report.events {
            say!(
                "{}/{:<4} {:<13} {:<8}  by {} ({}): {}",
                e.origin.short(),
                e.seq,
                e.kind,
                e.status.as_str(),
                e.author,
                e.origin.short(),
                signer_text(&e.signer)
            );
        }
    }
    if !report.all_valid() {
        bail!(
            "{} of the {} events of incident {id} do not carry a valid signature of their origin",
            report.failures(),
            report.events.len()
        );
    }
    if !json {
        say!("every signature verifies");
    }
    Ok(())
}

fn resolve_addr(text: &str) -> Result<SocketAddr> {
    text.to_socket_addrs()
        .with_context(|| format!("address {text:?} (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("address {text:?} resolves to nothing"))
}

/// Runs the relay until SIGINT or SIGTERM, then shuts down cleanly (exit 0).
fn serve(
    db: &std::path::Path,
    listen: SocketAddr,
    upstream: Option<gridsync_relay::Upstream>,
    options: gridsync_relay::RelayOptions,
    console: config::ConsoleSettings,
) -> Result<()> {
    // The console's settings are checked before anything starts: a bad boundary file is one
    // line, and no relay half-starts.
    let map = gridsync_console::map::MapConfig {
        tiles: console.map_tiles.clone(),
        grids: match &console.map_grids {
            Some(path) => Some(gridsync_console::map::load_grids(path)?),
            None => None,
        },
    };
    let tls = match (&console.cert, &console.key) {
        (Some(cert), Some(key)) => Some(gridsync_console::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    if let Some(files) = &tls {
        files.check()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // Installed before the first line is printed: whoever reads it may stop us at once.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let relay = gridsync_relay::start_with(db, listen, upstream, options).await?;
        let stop = relay.shutdown_sender();
        let web = match console.http {
            Some(addr) => {
                let metrics: Option<gridsync_console::MetricsFn> = console.metrics.then(|| {
                    let m = relay.metrics();
                    Arc::new(move || m.render()) as gridsync_console::MetricsFn
                });
                let scheme = if tls.is_some() { "https" } else { "http" };
                let options = gridsync_console::ConsoleOptions {
                    db: db.to_owned(),
                    addr,
                    tls,
                    open311: console.open311,
                    metrics,
                    map,
                };
                match gridsync_console::start(options, stop.subscribe()).await {
                    Ok(web) => Some((web, scheme)),
                    Err(e) => {
                        relay.stop().await;
                        return Err(anyhow::Error::new(e).context("starting the web console"));
                    }
                }
            }
            None => None,
        };
        say!("listening on {} as {}", relay.local_addr, relay.node_id);
        if let Some((web, scheme)) = &web {
            say!("console on {scheme}://{}", web.local_addr);
        }
        std::io::stdout().flush()?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        let _ = stop.send(true);
        relay.wait().await;
        if let Some((web, _)) = web {
            web.wait().await;
        }
        anyhow::Ok(())
    })
}

fn main() -> ExitCode {
    shared::init_logging("info");
    match config::parse_with_file() {
        Ok(Some(cli)) => return shared::finish("gridsync-relay", run(cli)),
        Ok(None) => {}
        Err(e) => return shared::finish("gridsync-relay", Err(e)),
    }
    match shared::parse::<Cli>("gridsync-relay") {
        Ok(cli) => shared::finish("gridsync-relay", run(cli)),
        Err(code) => code,
    }
}

/// An RFC 3339 time as Unix milliseconds, for `--accept-unsigned-before` (not before 1970).
/// The formats of `export --format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExportFormat {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// An RFC 7946 GeoJSON FeatureCollection.
    Geojson,
    /// One incident JSON per line.
    Jsonl,
}

impl From<ExportFormat> for gridsync_relay::export::Format {
    fn from(f: ExportFormat) -> Self {
        use gridsync_relay::export::Format;
        match f {
            ExportFormat::Csv => Format::Csv,
            ExportFormat::Geojson => Format::GeoJson,
            ExportFormat::Jsonl => Format::JsonLines,
        }
    }
}

/// `export`: to standard output (nothing else printed there), or to `output` through
/// `output.tmp`, made durable and renamed into place, then `exported N incidents to FILE` on
/// standard error.
fn export(
    db: &std::path::Path,
    format: gridsync_relay::export::Format,
    filter: &gridsync_relay::export::Filter,
    output: Option<&std::path::Path>,
) -> Result<()> {
    let node = open_relay(db)?;
    let Some(path) = output else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        gridsync_relay::export::write(node.store(), format, filter, now_ms(), &mut out)?;
        return Ok(());
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| -> Result<usize> {
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("{}: cannot create the file", tmp.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let n = gridsync_relay::export::write(node.store(), format, filter, now_ms(), &mut out)
            .with_context(|| format!("{}", tmp.display()))?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("{}: cannot write the file", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        // The rename itself made durable (best effort: not every file system syncs a folder).
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Ok(d) = std::fs::File::open(folder.unwrap_or(std::path::Path::new("."))) {
            let _ = d.sync_all();
        }
        Ok(n)
    })();
    match written {
        Ok(n) => {
            writeln!(
                std::io::stderr().lock(),
                "exported {n} incidents to {}",
                path.display()
            )?;
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn parse_cutoff(s: &str) -> std::result::Result<u64, String> {
    let ms = shared::parse_time(s)?;
    u64::try_from(ms).map_err(|_| format!("{s:?} is before 1970"))
}
