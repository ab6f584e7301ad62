//! `gridsync-relay run --config FILE`: a TOML file whose keys are the long flags of `run`
//! with `_` for `-` (`listen`, `upstream_id`, `session_idle_secs`, ...), plus `db` (the
//! global `--db`); `docs/gridsync-relay.example.toml` documents every one.
//!
//! Precedence: a flag given on the command line (and `GRIDSYNC_RELAY_DB` for `db`) wins over
//! the file, the file over the defaults. The file is turned into the flags it stands for,
//! each value checked by the flag's own parser first, so a value means the same in the file
//! as on the command line. Relative paths in the file (`db`, `http_cert`, `http_key`,
//! `map_grids`) are relative to the file's directory.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, Parser};
use toml::de::{DeTable, DeValue};

use crate::Cli;

/// The keys whose values are paths, resolved against the config file's directory.
const PATH_KEYS: [&str; 4] = ["db", "http_cert", "http_key", "map_grids"];

/// The web console's settings (`run --http ...`), carried to [`crate::serve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// Only `http` is read until the console is wired in at merge; it reads the rest.
#[allow(dead_code)]
pub(crate) struct ConsoleSettings {
    /// Where the console (and `/metrics`, `/open311/v2/`) is served; `None`: off.
    pub http: Option<SocketAddr>,
    /// The console's TLS certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// Serve `/metrics` on the `http` address.
    pub metrics: bool,
    /// Serve the read-only Open311 GeoReport v2 API there.
    pub open311: bool,
    /// The tile URL template of the console's map.
    pub map_tiles: Option<String>,
    /// The district's grid boundaries (GeoJSON).
    pub map_grids: Option<PathBuf>,
}

/// The command line with the config file applied, if `run` was given `--config FILE`: the
/// arguments as given followed by the flags the file adds, parsed. `None` when there is no
/// config file (the caller parses the command line as usual). The command line is looked at
/// leniently first, so that a flag that needs another one the file gives (`--metrics` with
/// `http` in the file) is judged only once both are there.
pub(crate) fn parse_with_file() -> Result<Option<Cli>> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let lenient = Cli::command()
        .ignore_errors(true)
        .mut_subcommand("run", |run| run.ignore_errors(true));
    let Ok(matches) = lenient.try_get_matches_from(&argv) else {
        return Ok(None);
    };
    let Some(file) = matches
        .subcommand_matches("run")
        .and_then(|run| run.try_get_one::<PathBuf>("config").ok().flatten())
        .cloned()
    else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("{}: cannot read the config file", file.display()))?;
    let added = file_args(&file, &text, &matches)?;
    let mut all = argv;
    all.extend(added);
    Cli::try_parse_from(all)
        .map(Some)
        .map_err(|e| anyhow!("{}: {}", file.display(), one_line(&e)))
}

/// A clap error on one line, without its `error: ` prefix and usage.
fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let line = rendered
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_owned()
}

/// The flags the config `file` (its `text`) stands for, leaving out those the command line
/// (`matches`) gave: `--key value`, or `--key` for a flag set to `true`.
pub(crate) fn file_args(file: &Path, text: &str, matches: &ArgMatches) -> Result<Vec<OsString>> {
    let shown = file.display();
    let table = DeTable::parse(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(":{}", line_of(text, s.start)))
            .unwrap_or_default();
        anyhow!("{shown}{at}: not valid TOML: {}", e.message().trim())
    })?;
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut cli = Cli::command();
    cli.build();
    let run = cli
        .find_subcommand("run")
        .context("the run command is missing")?
        .clone();
    let given = matches.subcommand_matches("run");
    let mut out = Vec::new();
    for (key, value) in table.get_ref() {
        let key_name: &str = key.get_ref();
        let line = line_of(text, key.span().start);
        let at = format!("{shown}:{line}: `{key_name}`");
        let long = key_name.replace('_', "-");
        let arg = if key_name == "db" {
            cli.get_arguments().find(|a| a.get_long() == Some("db"))
        } else if key_name.contains('-') || key_name == "config" || key_name == "help" {
            None
        } else {
            run.get_arguments()
                .find(|a| a.get_long() == Some(long.as_str()))
        };
        let Some(arg) = arg else {
            bail!(
                "{at}: unknown key (the keys are `run`'s long flags with _ for -, and db; see docs/gridsync-relay.example.toml)"
            );
        };
        let id = arg.get_id().as_str();
        let from_command_line = |m: &ArgMatches| {
            matches!(
                m.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        // `db` is global (its value is in both matches); the others are `run`'s only.
        let on_command_line = given.is_some_and(from_command_line)
            || (key_name == "db" && from_command_line(matches));
        if on_command_line {
            continue;
        }
        let value = value.get_ref();
        if !arg.get_action().takes_values() {
            match value {
                DeValue::Boolean(true) => out.push(format!("--{long}").into()),
                DeValue::Boolean(false) => {}
                other => bail!("{at}: must be true or false, not {}", a(other.type_str())),
            }
            continue;
        }
        let mut text_value = match value {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n.to_string(),
                Err(_) => bail!("{at}: {} is out of range", i),
            },
            DeValue::Float(f) => f.as_str().to_owned(),
            DeValue::Datetime(d) => d.to_string(),
            other => bail!(
                "{at}: must be a string or a number, not {}",
                a(other.type_str())
            ),
        };
        if PATH_KEYS.contains(&key_name) {
            let p = Path::new(&text_value);
            if p.is_relative() {
                text_value = dir.join(p).to_string_lossy().into_owned();
            }
        }
        // The flag's own parser, alone (its `requires` are checked once all is parsed).
        let alone = clap::Command::new("gridsync-relay")
            .no_binary_name(true)
            .arg(
                clap::Arg::new(arg.get_id().clone())
                    .index(1)
                    .value_parser(arg.get_value_parser().clone())
                    .action(clap::ArgAction::Set),
            );
        if let Err(e) = alone.try_get_matches_from([text_value.as_str()]) {
            bail!("{at} = {text_value:?}: {}", one_line(&e));
        }
        out.push(format!("--{long}").into());
        out.push(text_value.into());
    }
    Ok(out)
}

/// A TOML type's name with its article ("a string", "an array").
fn a(kind: &str) -> String {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {kind}")
    } else {
        format!("a {kind}")
    }
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |t| t.matches('\n').count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../../docs/gridsync-relay.example.toml");

    /// The example with its commented-out settings (`#key = value`, no space after `#`)
    /// switched on.
    fn uncommented() -> String {
        EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn keys_of(text: &str) -> std::collections::BTreeSet<String> {
        let table = DeTable::parse(text).expect("the example is TOML");
        table
            .get_ref()
            .keys()
            .map(|k| k.get_ref().to_string())
            .collect()
    }

    fn matches_of(args: &[&str]) -> ArgMatches {
        Cli::command()
            .try_get_matches_from(args)
            .expect("a command line")
    }

    #[test]
    fn the_example_names_every_long_flag_of_run_and_db() {
        let mut cli = Cli::command();
        cli.build();
        let run = cli.find_subcommand("run").expect("run");
        let mut flags: std::collections::BTreeSet<String> = run
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !["config", "help", "version"].contains(l))
            .map(|l| l.replace('-', "_"))
            .collect();
        flags.insert("db".to_owned());
        assert_eq!(
            keys_of(&uncommented()),
            flags,
            "docs/gridsync-relay.example.toml"
        );
    }

    #[test]
    fn the_example_loads_as_shipped_and_with_every_setting_on() {
        let file = Path::new("/etc/gridsync/relay.toml");
        let m = matches_of(&["gridsync-relay", "run", "--config", "x"]);
        for text in [EXAMPLE.to_owned(), uncommented()] {
            let mut argv: Vec<OsString> = vec!["gridsync-relay".into(), "run".into()];
            argv.extend(file_args(file, &text, &m).expect("the example loads"));
            Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
    }

    #[test]
    fn command_line_flags_and_the_environment_win_over_the_file() {
        let file = Path::new("/etc/gridsync/relay.toml");
        let text = "listen = \"127.0.0.1:1\"\nsession_idle_secs = 5\ndb = \"relay.db\"\n";
        let m = matches_of(&["gridsync-relay", "run", "--listen", "127.0.0.1:2"]);
        let args = file_args(file, text, &m).expect("loads");
        assert_eq!(
            args,
            ["--db", "/etc/gridsync/relay.db", "--session-idle-secs", "5"]
                .map(OsString::from)
                .to_vec()
        );
        let m = matches_of(&["gridsync-relay", "--db", "here.db", "run"]);
        let args = file_args(file, text, &m).expect("loads");
        assert!(!args.contains(&OsString::from("--db")), "{args:?}");
    }

    #[test]
    fn bad_keys_types_and_values_name_the_file_line_and_key() {
        let file = Path::new("relay.toml");
        let m = matches_of(&["gridsync-relay", "run", "--config", "relay.toml"]);
        let err = |text: &str| file_args(file, text, &m).expect_err("refused").to_string();
        assert_eq!(
            err("listen = \"127.0.0.1:1\"\nlisten_port = 3\n"),
            "relay.toml:2: `listen_port`: unknown key (the keys are `run`'s long flags with _ for -, and db; see docs/gridsync-relay.example.toml)"
        );
        assert_eq!(
            err("metrics = \"yes\"\n"),
            "relay.toml:1: `metrics`: must be true or false, not a string"
        );
        assert_eq!(
            err("\n\nupstream = [1]\n"),
            "relay.toml:3: `upstream`: must be a string or a number, not an array"
        );
        let e = err("session_idle_secs = 0\n");
        assert!(
            e.starts_with("relay.toml:1: `session_idle_secs` = \"0\": "),
            "{e}"
        );
        let e = err("listen = \"nowhere\"\n");
        assert!(
            e.starts_with("relay.toml:1: `listen` = \"nowhere\": "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = err("listen = \n");
        assert!(e.starts_with("relay.toml:1: not valid TOML"), "{e}");
    }
}
