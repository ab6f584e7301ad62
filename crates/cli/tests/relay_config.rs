//! `gridsync-relay run --config FILE` as an operator uses it: a relay started from a config
//! file alone (its store and address in the file, the store's path relative to the file) and
//! a handheld syncing to it; a flag (and the environment) winning over the file; an unknown
//! key, a value of the wrong type and a bad value each refused in one line that names the
//! file, the line and the key. Whether the example config names every flag of `run` is the
//! binary's own unit test (`config.rs`). Nothing sleeps for a fixed time.

mod ops_common;

use std::path::Path;

use ops_common::{device_ok, relay_fails, relay_json, relay_ok, street_and_handheld, Relay};

const GRID: &str = "110101/002/014/03";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
    std::fs::write(path, text).expect("write the config file");
}

#[test]
fn a_relay_runs_from_its_config_file_and_a_handheld_syncs_to_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir");
    let (street, pda, _) = street_and_handheld(&etc, "relay.db", GRID);
    // The store is named relative to the file, and the relay runs from another folder.
    write(
        &etc.join("relay.toml"),
        "# a street sub-center\ndb = \"relay.db\"\nlisten = \"127.0.0.1:0\"\nsession_idle_secs = 30\n",
    );
    let relay = Relay::spawn(dir.path(), &["run", "--config", "etc/relay.toml"]);
    device_ok(
        &pda,
        &[
            "report",
            "--category",
            "garbage",
            "--description",
            "Overflowing bin",
        ],
    );
    let synced = relay.sync(&pda);
    assert!(synced["events_up"].as_u64() >= Some(1), "{synced}");
    assert!(relay.terminate().success());
    let status = relay_json(&street, &["status", "--json"]);
    assert!(status["events"].as_u64() >= Some(1), "{status}");
}

#[test]
fn flags_and_the_environment_win_over_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (street, _pda, _) = street_and_handheld(dir.path(), "street.db", GRID);
    write(
        &dir.path().join("relay.toml"),
        "db = \"elsewhere.db\"\nlisten = \"127.0.0.1:0\"\n",
    );
    // The file alone names a store that is not there...
    let line = relay_fails(dir.path(), &["run", "--config", "relay.toml"]);
    assert!(line.contains("elsewhere.db"), "{line}");
    // ...and --db given on the command line wins, as does GRIDSYNC_RELAY_DB.
    let street_arg = street.to_str().expect("UTF-8 path");
    let relay = Relay::spawn(
        dir.path(),
        &["--db", street_arg, "run", "--config", "relay.toml"],
    );
    assert!(relay.terminate().success());
    let relay = Relay::spawn_with_env(
        dir.path(),
        &["run", "--config", "relay.toml"],
        ("GRIDSYNC_RELAY_DB", street_arg),
    );
    assert!(relay.terminate().success());
    // A flag wins over the same key of the file: the address.
    write(
        &dir.path().join("bad-listen.toml"),
        "db = \"street.db\"\nlisten = \"nowhere\"\n",
    );
    let line = relay_fails(dir.path(), &["run", "--config", "bad-listen.toml"]);
    assert!(line.contains("bad-listen.toml:2: `listen`"), "{line}");
    let relay = Relay::spawn(
        dir.path(),
        &[
            "run",
            "--config",
            "bad-listen.toml",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(relay.terminate().success());
}

#[test]
fn an_unknown_key_a_wrong_type_and_a_bad_value_are_one_line_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (street, _pda, _) = street_and_handheld(dir.path(), "street.db", GRID);
    let db = street.to_str().expect("UTF-8 path");
    let refused = |text: &str| {
        write(&dir.path().join("relay.toml"), text);
        relay_fails(dir.path(), &["--db", db, "run", "--config", "relay.toml"])
    };
    let line = refused("listen = \"127.0.0.1:0\"\nsession_idle = 30\n");
    assert!(
        line.contains("relay.toml:2: `session_idle`: unknown key"),
        "{line}"
    );
    let line = refused("listen = \"127.0.0.1:0\"\nescalate_overdue = \"yes\"\n");
    assert!(
        line.contains("relay.toml:2: `escalate_overdue`: must be true or false"),
        "{line}"
    );
    let line = refused("listen = \"127.0.0.1:0\"\n\nmax_connections = 0\n");
    assert!(
        line.contains("relay.toml:3: `max_connections` = \"0\""),
        "{line}"
    );
    let line = refused("listen = \"127.0.0.1:0\"\nupstream_id = \"not-a-node\"\n");
    assert!(line.contains("relay.toml:2: `upstream_id`"), "{line}");
    // What needs another setting says so, naming the file.
    let line = refused("listen = \"127.0.0.1:0\"\nmetrics = true\n");
    assert!(
        line.contains("relay.toml") && line.contains("--http"),
        "{line}"
    );
    let line = refused("session_idle_secs = 30\n");
    assert!(line.contains("--listen"), "{line}");
    let line = refused("listen = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n");
    assert!(line.contains("not built into this binary yet"), "{line}");
    // A flag that needs a setting the file gives is judged with the file applied.
    write(
        &dir.path().join("relay.toml"),
        "listen = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n",
    );
    let line = relay_fails(
        dir.path(),
        &["--db", db, "run", "--config", "relay.toml", "--metrics"],
    );
    assert!(line.contains("not built into this binary yet"), "{line}");
    let line = relay_fails(dir.path(), &["--db", db, "run", "--config", "missing.toml"]);
    assert!(line.contains("missing.toml"), "{line}");
    // A store left as it was: nothing above ran the relay.
    relay_ok(&street, &["status"]);
}
