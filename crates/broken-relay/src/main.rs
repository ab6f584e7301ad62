//! `gridsync-broken-relay`: a test fixture, never to be deployed. It is `gridsync-relay`
//! (same store, same commands, same output, same shutdown) with exactly one deliberate
//! protocol fault, chosen by the environment variable `GRIDSYNC_BROKEN`, so that the
//! conformance harness (`gridsync-conformance`) can prove it fails when a relay breaks
//! `proto/PROTOCOL.md`, and fails on exactly the right cases. See README.md for the faults.
//!
//! Commands (as the real relay's): `init --name NAME --role street|district`,
//! `enroll NODE_ID --grid GRID`, `enroll NODE_ID --relay --scope PREFIX`, `revoke NODE_ID`,
//! `run --listen ADDR [--session-idle-secs N]` (no upstream). A store made by one binary
//! opens in the other.

mod fault;
mod stores;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use gridsync_core::{GridCode, NodeId, Scope};
use gridsync_device::{Device, SystemEnv};
use gridsync_net::server::{self, Shared};
use gridsync_net::SharedStore;
use gridsync_proto::server::ServerConfig;
use gridsync_proto::Role;
use gridsync_store::Store;
use tokio::sync::{watch, Notify};

use fault::Fault;
use stores::{AckBeforeCommit, LeakScope};

/// `println!` that returns the error (a closed pipe) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// gridsync-broken-relay: gridsync-relay with one deliberate fault (GRIDSYNC_BROKEN), for
/// the conformance harness's tests only. Never deploy it.
#[derive(Parser, Debug)]
#[command(name = "gridsync-broken-relay", version)]
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
    Street,
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
    },
    /// Allow a device (for one grid) or a street relay (for a scope) to sync here.
    Enroll {
        /// The node id `gridsync init` (or `gridsync-relay init`) printed.
        node_id: NodeId,
        /// A device's grid, e.g. 110101/002/014/03.
        #[arg(long, conflicts_with_all = ["relay", "scope"])]
        grid: Option<GridCode>,
        /// Enroll a street relay or a community workstation (with --scope).
        #[arg(long, requires = "scope")]
        relay: bool,
        /// The street relay's scope, e.g. 110101/002.
        #[arg(long, requires = "relay")]
        scope: Option<Scope>,
    },
    /// Withdraw an enrollment: the node's next session is refused.
    Revoke { node_id: NodeId },
    /// Serve devices and child relays, with the fault GRIDSYNC_BROKEN names.
    Run {
        /// Address to listen on, e.g. 127.0.0.1:0 (port 0: any free port, printed).
        #[arg(long)]
        listen: SocketAddr,
        /// End a session after this many seconds without a message on its control stream.
        #[arg(long)]
        session_idle_secs: Option<u64>,
    },
}

fn now_ms() -> u64 {
    gridsync_net::now_ms()
}

fn run(cli: Cli, fault: Fault) -> Result<()> {
    let db = cli.db.as_path();
    match cli.command {
        Command::Init { name, role } => {
            let role = match role {
                RelayRole::Street => "street",
                RelayRole::District => "district",
            };
            let node = Device::init_node(db, &name, role, "", SystemEnv)?;
            say!("{}", node.node_id());
        }
        Command::Enroll {
            node_id,
            grid,
            relay,
            scope,
        } => {
            open_relay(db)?;
            let (role, scope) = match (grid, relay, scope) {
                (Some(grid), false, None) => (Role::Device, Scope::from(&grid)),
                // As the real relay: the scope's depth says street (2) or community (3).
                (None, true, Some(scope)) => {
                    let segments = scope.as_str().split('/').count();
                    match Role::of_scope_depth(segments) {
                        Some(r @ (Role::Street | Role::Community)) => (r, scope),
                        _ => bail!("--scope {scope}: a street's has 2 segments, a community's 3"),
                    }
                }
                _ => bail!(
                    "give either --grid GRID (a device) or --relay --scope PREFIX (a street relay)"
                ),
            };
            let mut store = Store::open(db)?;
            store.enroll(&node_id, role, &scope, now_ms())?;
            say!("enrolled {} {} for {}", role.as_str(), node_id, scope);
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
        Command::Run {
            listen,
            session_idle_secs,
        } => {
            open_relay(db)?;
            let idle = session_idle_secs.map(Duration::from_secs);
            serve(db, listen, fault, idle)?;
        }
    }
    Ok(())
}

/// Opens the store as a relay's (refusing a device's store), as `gridsync-relay` does.
fn open_relay(db: &Path) -> Result<Device> {
    let node = Device::open(db)?;
    if node.role() == "device" {
        bail!(
            "{}: this is a device's store; a relay's is made by `gridsync-relay init`",
            db.display()
        );
    }
    Ok(node)
}

/// The store the sessions run on, with the fault's wrapper if it has one; the
/// `ack-before-commit` wrapper is also returned, to be flushed at shutdown.
type Flushable = Arc<Mutex<AckBeforeCommit<Store>>>;

fn session_store(store: Store, fault: Fault) -> (SharedStore, Option<Flushable>) {
    match fault {
        Fault::AckBeforeCommit => {
            let lazy = Arc::new(Mutex::new(AckBeforeCommit::new(store)));
            (lazy.clone(), Some(lazy))
        }
        Fault::LeakScope => (Arc::new(Mutex::new(LeakScope(store))), None),
        Fault::None
        | Fault::ForgedOrigin
        | Fault::NoFrameLimit
        | Fault::NoAuthorisation
        | Fault::NoPush => (Arc::new(Mutex::new(store)), None),
    }
}

/// The relay's session configuration, with the fault's setting if it has one.
fn server_config(node: NodeId, role: Role, name: &str, fault: Fault) -> ServerConfig {
    // The real relay's configuration (limits and the photo check), then the fault.
    let mut config = gridsync_relay::server_config(node, role, name);
    match fault {
        Fault::ForgedOrigin => config.faults.accept_forged_origin = true,
        Fault::NoFrameLimit => config.limits.max_frame = u32::MAX,
        Fault::NoAuthorisation => config.faults.skip_authorisation = true,
        Fault::NoPush => config.faults.no_push = true,
        Fault::None | Fault::AckBeforeCommit | Fault::LeakScope => {}
    }
    config
}

/// Runs the relay (as `gridsync_relay::start` does, without an upstream) until SIGINT or
/// SIGTERM, then shuts down cleanly (sessions end with `ShuttingDown`; exit 0).
fn serve(db: &Path, listen: SocketAddr, fault: Fault, idle: Option<Duration>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = Store::open(db)?;
        let identity = store.identity()?;
        let role = match identity.role {
            role @ (Role::Street | Role::District | Role::Community) => role,
            Role::Device => bail!(
                "{}: this store's role is {:?}; a relay runs on a store made by `gridsync-relay init`",
                db.display(),
                identity.role.as_str()
            ),
        };
        let (store, flushable) = session_store(store, fault);
        let endpoint = server::endpoint(&identity.secret, listen)?;
        let local_addr = endpoint
            .local_addr()
            .with_context(|| format!("cannot listen on {listen}"))?;
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            control_idle: idle.unwrap_or(server::CONTROL_IDLE),
            ..Shared::new(
                store,
                server_config(identity.node_id, role, &identity.name, fault),
                Arc::new(Notify::new()),
                shutdown,
            )
        });
        if fault != Fault::None {
            tracing::warn!(
                fault = fault.name(),
                "BROKEN RELAY: this relay breaks the protocol on purpose (a conformance test fixture); never deploy it"
            );
        }
        tracing::info!(addr = %local_addr, node = %identity.node_id, role = role.as_str(), "relay listening");
        say!("listening on {} as {}", local_addr, identity.node_id);
        std::io::stdout().flush()?;
        let task = tokio::spawn(server::serve(endpoint, shared));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        let _ = stop.send(true);
        task.await.context("the relay task failed")?;
        if let Some(lazy) = flushable {
            let lazy = lazy.lock().unwrap_or_else(|p| p.into_inner());
            lazy.flush()
                .context("committing the acknowledged batches at shutdown")?;
        }
        tracing::info!("relay stopped");
        anyhow::Ok(())
    })
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRIDSYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

const PROGRAM: &str = "gridsync-broken-relay";

/// Parses the command line, printing clap's errors as one line (as `gridsync-relay` does).
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("{PROGRAM}: error: no command given (see {PROGRAM} --help)");
            Err(ExitCode::from(2))
        }
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let message = rendered
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("{PROGRAM}: error: {message} (see {PROGRAM} --help)");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = Fault::from_env().and_then(|fault| run(cli, fault));
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
            eprintln!("{PROGRAM}: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
