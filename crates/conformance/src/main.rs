//! `gridsync-conformance`: checks a relay, black-box, against proto/PROTOCOL.md.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use gridsync_conformance::{identity, vectors, RunConfig, Status, Target};

/// gridsync-conformance: a black-box conformance suite for gridsync relays.
#[derive(Parser, Debug)]
#[command(name = "gridsync-conformance", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make test identities and print how to enroll them at the relay under test.
    Identities {
        /// Folder to write identities.json into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// How many (at least 6: devices of two grids, a street relay, a stranger, a revoked one).
        #[arg(long, default_value_t = identity::MIN_COUNT)]
        count: usize,
    },
    /// Run the suite against a relay.
    Run {
        /// The relay under test, HOST:PORT.
        #[arg(long, requires = "target_id", conflicts_with = "spawn_relay")]
        target: Option<String>,
        /// Its node id (64 hex digits), pinned in TLS.
        #[arg(long, requires = "target")]
        target_id: Option<String>,
        /// Start this relay binary (with gridsync-relay's command line) in a temporary folder
        /// instead, enroll the identities through it, and run every case, including those that
        /// kill and restart it.
        #[arg(long, value_name = "PATH_TO_BINARY")]
        spawn_relay: Option<PathBuf>,
        /// The identities (a folder from `identities`); optional with --spawn-relay, where
        /// fresh ones are made.
        #[arg(long)]
        identities: Option<PathBuf>,
        /// Run only the cases whose id contains this (comma-separated; `*` globs).
        #[arg(long)]
        filter: Option<String>,
        /// Also write the results as a JSON report to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The relay's control-stream idle timeout in seconds, to check it (with --target;
        /// spawn mode sets its own).
        #[arg(long, value_name = "SECS")]
        idle_timeout: Option<u64>,
        /// An environment variable for the spawned relay, KEY=VALUE (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        relay_env: Vec<String>,
        /// Keep the spawned relay's folder (store and logs) and print where it is.
        #[arg(long)]
        keep: bool,
    },
    /// List every case: id, spec section, where it runs, what it checks.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Check the golden wire vectors against this harness's own encoder and decoder, offline.
    Vectors {
        #[arg(long, default_value = "fixtures/wire")]
        dir: PathBuf,
    },
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn parse_id(text: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32);
    let Some(bytes) = bytes else {
        bail!("--target-id {text:?}: expected a node id of 64 hex digits");
    };
    let mut id = [0u8; 32];
    id.copy_from_slice(&bytes);
    Ok(id)
}

fn resolve(text: &str) -> Result<SocketAddr> {
    text.to_socket_addrs()
        .with_context(|| format!("--target {text:?}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--target {text:?} resolves to no address"))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Identities { out, count } => {
            let ids = identity::generate(count)?;
            let path = identity::write(&out, &ids)?;
            say(&format!(
                "# {} identities in {}",
                ids.identities.len(),
                path.display()
            ));
            say("# enroll them at the relay under test (commands of the reference relay):");
            for id in &ids.identities {
                let what = match id.part {
                    identity::Part::Stranger => "never enroll".to_owned(),
                    _ => id.enroll.join(" && "),
                };
                say(&format!("{}  {:<10} {}", id.node_id, id.name, what));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::List { json } => {
            let cases = gridsync_conformance::all_cases();
            if json {
                let v: Vec<_> = cases
                    .iter()
                    .map(|c| serde_json::json!({ "id": c.id, "section": c.section, "needs": c.needs, "title": c.title }))
                    .collect();
                say(&serde_json::to_string_pretty(&v)?);
            } else {
                for c in &cases {
                    let needs = match c.needs {
                        gridsync_conformance::Needs::Any => "",
                        gridsync_conformance::Needs::Spawn => " [spawn]",
                        gridsync_conformance::Needs::IdleTimeout => " [idle-timeout]",
                    };
                    say(&format!(
                        "{:<34} {:<10} {}{needs}",
                        c.id, c.section, c.title
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Vectors { dir } => {
            let out = vectors::check(&dir).map_err(anyhow::Error::msg)?;
            for o in &out {
                say(&o.line());
            }
            let failed = out.iter().filter(|o| o.status == Status::Fail).count();
            say(&format!("{} passed, {failed} failed", out.len() - failed));
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Run {
            target,
            target_id,
            spawn_relay,
            identities,
            filter,
            json,
            idle_timeout,
            relay_env,
            keep,
        } => {
            let mut env = Vec::new();
            for kv in relay_env {
                let Some((k, v)) = kv.split_once('=') else {
                    bail!("--relay-env {kv:?}: expected KEY=VALUE");
                };
                env.push((k.to_owned(), v.to_owned()));
            }
            let target = match (target, target_id, spawn_relay) {
                (Some(t), Some(id), None) => Target::Addr {
                    addr: resolve(&t)?,
                    id: parse_id(&id)?,
                },
                (None, None, Some(bin)) => Target::Spawn { bin, env, keep },
                _ => bail!("give either --target HOST:PORT --target-id NODE_ID, or --spawn-relay PATH_TO_BINARY"),
            };
            let ids = match (&identities, &target) {
                (Some(dir), _) => identity::read(dir)?,
                (None, Target::Spawn { .. }) => identity::generate(identity::MIN_COUNT)?,
                (None, Target::Addr { .. }) => bail!(
                    "--identities DIR is needed with --target (make them with `gridsync-conformance identities --out DIR` and enroll them)"
                ),
            };
            let config = RunConfig {
                target,
                identities: ids,
                filter,
                idle_timeout: idle_timeout.map(Duration::from_secs),
            };
            let report = gridsync_conformance::run(config, &mut |o| say(&o.line()))?;
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report)?;
                std::fs::write(&path, format!("{text}\n"))
                    .with_context(|| format!("{}: cannot write the report", path.display()))?;
            }
            if report.skipped > 0 {
                say(&format!("({} skipped: see the skip lines)", report.skipped));
            }
            say(&report.summary());
            Ok(if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRIDSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gridsync-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}
