//! `gridsync-relay operator ...` and `apikey ...` as a user runs them: accounts kept in the
//! relay's store with an Argon2id hash of the password read from standard input, API keys
//! printed once and kept only as a hash.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use gridsync_store::{OperatorRole, Store};
use serde_json::Value;

fn relay(db: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-relay"))
        .env_remove("GRIDSYNC_RELAY_DB")
        .env_remove("GRIDSYNC_LOG")
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gridsync-relay");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn ok(db: &Path, args: &[&str], stdin: &str) -> String {
    let out = relay(db, args, stdin);
    assert!(
        out.status.success(),
        "gridsync-relay {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn fails(db: &Path, args: &[&str], stdin: &str) -> String {
    let out = relay(db, args, stdin);
    assert!(!out.status.success(), "gridsync-relay {args:?} should fail");
    let err = String::from_utf8(out.stderr).expect("UTF-8");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn operators_and_api_keys_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("relay.db");
    ok(&db, &["init", "--name", "street-2", "--role", "street"], "");

    ok(
        &db,
        &["operator", "add", "dora", "--role", "dispatcher"],
        "s3cret-pass\n",
    );
    ok(
        &db,
        &["operator", "add", "vic", "--role", "viewer"],
        "another-pass\r\n",
    );
    let err = fails(
        &db,
        &["operator", "add", "dora", "--role", "admin"],
        "s3cret-pass\n",
    );
    assert!(err.contains("exists"), "{err}");
    let err = fails(
        &db,
        &["operator", "add", "eve", "--role", "root"],
        "s3cret-pass\n",
    );
    assert!(err.contains("root"), "{err}");
    let err = fails(
        &db,
        &["operator", "add", "eve", "--role", "viewer"],
        "short\n",
    );
    assert!(err.contains("shorter than 8"), "{err}");
    let err = fails(&db, &["operator", "add", "eve", "--role", "viewer"], "");
    assert!(err.contains("standard input"), "{err}");

    let list: Value =
        serde_json::from_str(&ok(&db, &["operator", "list", "--json"], "")).expect("JSON");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|o| o["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["dora", "vic"]);
    assert_eq!(list[0]["role"], "dispatcher");
    assert!(list[0]["created_ms"].as_u64().is_some());
    assert!(list[0].get("password").is_none(), "no hash in the listing");

    let store = Store::open(&db).expect("open");
    let dora = store.operator("dora").expect("read").expect("dora");
    assert_eq!(dora.role, OperatorRole::Dispatcher);
    assert!(dora.password.starts_with("$argon2id$"), "{}", dora.password);
    assert!(gridsync_console::verify_password(
        Some(&dora.password),
        "s3cret-pass"
    ));
    let vic = store.operator("vic").expect("read").expect("vic");
    assert!(
        gridsync_console::verify_password(Some(&vic.password), "another-pass"),
        "line ending stripped"
    );
    drop(store);

    ok(&db, &["operator", "passwd", "dora"], "new-password-1\n");
    let dora = Store::open(&db)
        .expect("open")
        .operator("dora")
        .expect("read")
        .expect("dora");
    assert!(gridsync_console::verify_password(
        Some(&dora.password),
        "new-password-1"
    ));
    assert!(!gridsync_console::verify_password(
        Some(&dora.password),
        "s3cret-pass"
    ));
    fails(&db, &["operator", "passwd", "nobody"], "new-password-1\n");
    ok(&db, &["operator", "remove", "vic"], "");
    fails(&db, &["operator", "remove", "vic"], "");

    let key = ok(&db, &["apikey", "add", "city"], "").trim().to_owned();
    assert_eq!(key.len(), 64, "{key}");
    let store = Store::open(&db).expect("open");
    assert_eq!(
        store.api_key_check(&key).expect("check").as_deref(),
        Some("city")
    );
    drop(store);
    fails(&db, &["apikey", "add", "city"], "");
    let keys: Value =
        serde_json::from_str(&ok(&db, &["apikey", "list", "--json"], "")).expect("JSON");
    assert_eq!(keys[0]["name"], "city");
    assert!(
        !ok(&db, &["apikey", "list"], "").contains(&key),
        "the key is shown only once"
    );
    ok(&db, &["apikey", "remove", "city"], "");
    assert_eq!(
        Store::open(&db)
            .expect("open")
            .api_key_check(&key)
            .expect("check"),
        None
    );
}
