//! `operator add|remove|passwd|list` and `apikey add|remove|list`: the web console's accounts
//! and Open311 API keys, rows of this relay's store (never events, never synced).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use gridsync_store::{OperatorRole, Store};

use crate::shared::print_json;

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Add an operator account; the password is read from standard input.
    Add {
        /// The login name (1 to 64 bytes, no spaces or `/`).
        name: String,
        /// viewer (reads), dispatcher (accepts, rejects, dispatches, escalates, comments),
        /// supervisor (also resolves, verifies, closes, evaluates, settles conflicts) or admin.
        #[arg(long)]
        role: OperatorRole,
    },
    /// Remove an operator account (their sessions end at their next request).
    Remove { name: String },
    /// Change an operator's password; the new one is read from standard input.
    Passwd { name: String },
    /// List the operator accounts.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Make a new Open311 API key: printed once, only its hash is kept.
    Add { name: String },
    /// Withdraw an API key.
    Remove { name: String },
    /// List the API keys' names.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// A name for an operator or key: 1 to 64 bytes of letters, digits and `.-_@`.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if !ok {
        bail!("{what} name {name:?} must be 1 to 64 letters, digits or . - _ @");
    }
    Ok(())
}

/// The password: prompted twice without echo on a terminal, else the first line of standard
/// input (without its line ending).
fn read_password(name: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))
            .context("reading the password from the terminal")?;
        let second = rpassword::prompt_password("Again: ")
            .context("reading the password from the terminal")?;
        if first != second {
            bail!("the two passwords differ; nothing was changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input (give it as the first line)");
    }
    Ok(password)
}

fn hash(name: &str) -> Result<String> {
    let password = read_password(name)?;
    gridsync_console::hash_password(&password).context("the password")
}

fn open_relay_store(db: &Path) -> Result<Store> {
    let store = Store::open(db)?;
    if store.identity()?.role == gridsync_proto::Role::Device {
        bail!(
            "{}: this is a device's store; operator accounts live in a relay's",
            db.display()
        );
    }
    Ok(store)
}

/// `operator ...`.
pub fn operator(db: &Path, command: OperatorCommand, now_ms: u64) -> Result<()> {
    let mut store = open_relay_store(db)?;
    match command {
        OperatorCommand::Add { name, role } => {
            check_name("operator", &name)?;
            if store.operator(&name)?.is_some() {
                bail!("operator {name:?} exists already (change the password with `operator passwd {name}`)");
            }
            let phc = hash(&name)?;
            if !store.operator_add(&name, role, &phc, now_ms)? {
                bail!("operator {name:?} exists already");
            }
            say!("added operator {name} ({role})");
        }
        OperatorCommand::Remove { name } => {
            if !store.operator_remove(&name)? {
                bail!("no operator {name:?} here (see `operator list`)");
            }
            say!("removed operator {name}");
        }
        OperatorCommand::Passwd { name } => {
            if store.operator(&name)?.is_none() {
                bail!("no operator {name:?} here (see `operator list`)");
            }
            let phc = hash(&name)?;
            if !store.operator_set_password(&name, &phc, now_ms)? {
                bail!("no operator {name:?} here (see `operator list`)");
            }
            say!("changed the password of {name}");
        }
        OperatorCommand::List { json } => {
            let operators = store.operators()?;
            if json {
                let list: Vec<_> = operators
                    .iter()
                    .map(|o| {
                        serde_json::json!({
                            "name": o.name,
                            "role": o.role.as_str(),
                            "created_ms": o.created_ms,
                        })
                    })
                    .collect();
                print_json(&list)?;
            } else {
                for o in operators {
                    say!("{:<24} {}", o.name, o.role);
                }
            }
        }
    }
    Ok(())
}

/// `apikey ...`.
pub fn api_key(db: &Path, command: ApiKeyCommand, now_ms: u64) -> Result<()> {
    let mut store = open_relay_store(db)?;
    match command {
        ApiKeyCommand::Add { name } => {
            check_name("API key", &name)?;
            let key = gridsync_console::new_api_key()?;
            if !store.api_key_add(&name, &key, now_ms)? {
                bail!("an API key named {name:?} exists already (remove it first)");
            }
            say!("{key}");
        }
        ApiKeyCommand::Remove { name } => {
            if !store.api_key_remove(&name)? {
                bail!("no API key {name:?} here (see `apikey list`)");
            }
            say!("removed API key {name}");
        }
        ApiKeyCommand::List { json } => {
            let keys = store.api_keys()?;
            if json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| serde_json::json!({"name": k.name, "created_ms": k.created_ms}))
                    .collect();
                print_json(&list)?;
            } else {
                for k in keys {
                    say!("{}", k.name);
                }
            }
        }
    }
    Ok(())
}
