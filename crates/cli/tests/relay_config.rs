//! `gridsync-relay run --config FILE` as an operator uses it: a relay started from a config
//! file alone (its store and address in the file, the store's path relative to the file) and
//! a handheld syncing to it; a flag (and the environment) winning over the file; an unknown
//! key, a value of the wrong type and a bad value each refused in one line that names the
//! file, the line and the key. Whether the example config names every flag of `run` is the
//! binary's own unit test (`config.rs`). Nothing sleeps for a fixed time.

mod ops_common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;

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
    // The console's files are checked before anything starts, and named.
    let line = refused(
        "listen = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nmap_grids = \"no-such.geojson\"\n",
    );
    assert!(line.contains("no-such.geojson"), "{line}");
    // A flag that needs a setting the file gives is judged with the file applied.
    write(
        &dir.path().join("relay.toml"),
        "listen = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nhttp_cert = \"no-cert.pem\"\nhttp_key = \"no-key.pem\"\n",
    );
    let line = relay_fails(
        dir.path(),
        &["--db", db, "run", "--config", "relay.toml", "--metrics"],
    );
    assert!(line.contains("no-cert.pem"), "{line}");
    let line = relay_fails(dir.path(), &["--db", db, "run", "--config", "missing.toml"]);
    assert!(line.contains("missing.toml"), "{line}");
    // A store left as it was: nothing above ran the relay.
    relay_ok(&street, &["status"]);
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`); returns the status, the
/// headers (names lower-cased) and the body.
fn http(addr: &str, request: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the console");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole answer");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn get(addr: &str, path: &str, cookie: &str) -> (u16, Vec<(String, String)>, String) {
    http(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn cookie_value(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {headers:?}"))
        .to_owned()
}

#[test]
fn the_config_file_serves_the_console_metrics_and_open311_on_its_http_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir");
    let (street, pda, _) = street_and_handheld(&etc, "relay.db", GRID);
    let grids = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/geo/grids.geojson"
    );
    std::fs::copy(grids, etc.join("grids.geojson")).expect("copy the grid boundaries");
    write(
        &etc.join("relay.toml"),
        "db = \"relay.db\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nmetrics = true\nopen311 = true\nmap_grids = \"grids.geojson\"\n",
    );
    // An operator account, the password on standard input.
    let mut add = ops_common::relay_in(dir.path())
        .args([
            "--db",
            street.to_str().expect("UTF-8"),
            "operator",
            "add",
            "ana",
        ])
        .args(["--role", "dispatcher"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("operator add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse battery\n")
        .expect("password");
    let out = add.wait_with_output().expect("operator add ran");
    assert!(
        out.status.success(),
        "{}",
        ops_common::describe("operator add", &out)
    );

    device_ok(
        &pda,
        &[
            "report",
            "--category",
            "garbage",
            "--description",
            "Bags by the east gate",
        ],
    );
    let relay = Relay::spawn(dir.path(), &["run", "--config", "etc/relay.toml"]);
    let line = relay.next_line();
    let web = line
        .strip_prefix("console on http://")
        .unwrap_or_else(|| panic!("unexpected second line: {line:?}"))
        .to_owned();
    assert!(
        web.starts_with("127.0.0.1:") && !web.ends_with(":0"),
        "{line}"
    );
    relay.sync(&pda);

    let (status, _, body) = get(&web, "/healthz", "");
    assert_eq!((status, body.trim()), (200, "ok"));
    // Prometheus, unauthenticated (metrics = true): the handheld's session counted.
    let (status, _, body) = get(&web, "/metrics", "");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.lines().any(
            |l| l.starts_with("gridsync_sessions_started_total{role=\"device\"} ")
                && !l.ends_with(" 0")
        ),
        "{body}"
    );
    // Open311: services public, requests behind a key.
    let (status, _, body) = get(&web, "/open311/v2/services.json", "");
    assert_eq!(status, 200, "{body}");
    let services: serde_json::Value = serde_json::from_str(&body).expect("services.json is JSON");
    assert!(
        services
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["service_code"] == "garbage")),
        "{body}"
    );
    let (status, _, _) = get(&web, "/open311/v2/requests.json", "");
    assert_eq!(status, 401);
    // The console: a page asks for a login; the login form's CSRF token comes with a cookie.
    let (status, headers, _) = get(&web, "/", "");
    assert_eq!(status, 303);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "location" && v.starts_with("/login")));
    let (status, headers, _) = get(&web, "/login", "");
    assert_eq!(status, 200);
    let csrf = cookie_value(&headers, "gridsync_login");
    let form = format!("name=ana&password=correct+horse+battery&next=%2F&csrf={csrf}");
    let (status, headers, body) = http(
        &web,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {web}\r\nCookie: gridsync_login={csrf}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 303, "{body}");
    let session = format!(
        "gridsync_session={}",
        cookie_value(&headers, "gridsync_session")
    );
    let (status, _, body) = get(&web, "/", &session);
    assert_eq!(status, 200);
    assert!(body.contains("Bags by the east gate"), "{body}");
    // The map carries the district's boundaries from the file the config names.
    let (status, _, body) = get(&web, "/map", &session);
    assert_eq!(status, 200);
    assert!(body.contains("/assets/vendor/leaflet/leaflet.js"), "{body}");
    let first_grid = std::fs::read_to_string(grids).expect("grids");
    let name = first_grid
        .split("\"grid\":")
        .nth(1)
        .and_then(|r| r.split('"').nth(1))
        .expect("a grid property in the fixture");
    assert!(
        body.contains(name),
        "the map page names grid {name}: {body}"
    );
    assert!(relay.terminate().success());
}
