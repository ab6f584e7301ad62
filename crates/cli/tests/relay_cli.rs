//! Black-box tests of the two command lines together over real loopback QUIC: a district and
//! a street `gridsync-relay run` as child processes (port 0, the address read from their first
//! line), two `gridsync` devices reporting offline and syncing, an operator decision on the
//! street while it runs, and the district ending up with everything. Nothing sleeps for a fixed
//! time: every wait polls a condition with a deadline.

// `libc::kill` (to send SIGTERM) needs `unsafe`; it is the only unsafe call in this file.
#![allow(unsafe_code)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_hex64, expect_one_line_failure, fixture, photos, str_of, Gs};
use serde_json::Value;

const GRID_A: &str = "110101/002/014/03";
const GRID_B: &str = "110101/002/015/01";
const STREET_SCOPE: &str = "110101/002";

/// How long anything may take to happen (generous: nothing is timed, only awaited).
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

fn relay_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gridsync-relay")
}

/// A `gridsync-relay --db DB` command with a clean environment.
fn relay_command(db: &Path) -> Command {
    let mut cmd = Command::new(relay_bin());
    cmd.env_remove("GRIDSYNC_RELAY_DB")
        .env_remove("GRIDSYNC_DB")
        .env_remove("GRIDSYNC_LOG")
        .arg("--db")
        .arg(db);
    cmd
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}\n  exit: {}\n  stdout: {}\n  stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `gridsync-relay --db DB ARGS...` and expects success; returns standard output.
fn relay_ok(db: &Path, args: &[&str]) -> String {
    let out = relay_command(db)
        .args(args)
        .output()
        .expect("run gridsync-relay");
    let what = format!("gridsync-relay --db {} {}", db.display(), args.join(" "));
    assert!(out.status.success(), "{}", describe(&what, &out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn relay_json(db: &Path, args: &[&str]) -> Value {
    let out = relay_ok(db, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{out}"))
}

/// Sends SIGTERM to `pid`.
fn sigterm(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: `kill` only sends a signal to a process id; it touches no memory of ours. The
    // id is that of our own child, which has not been waited for yet (so not reused).
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Waits for `child` to exit, for at most [`DEADLINE`].
fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} did not exit in time");
        std::thread::sleep(POLL);
    }
}

/// A running `gridsync-relay run`, killed if the test fails before it is stopped.
struct Relay {
    child: Option<Child>,
    name: &'static str,
    db: PathBuf,
    log: PathBuf,
    /// The address it printed.
    addr: String,
    /// The node id it printed.
    id: String,
}

impl Relay {
    /// Starts `gridsync-relay --db DB run --listen 127.0.0.1:0 [EXTRA...]` and reads its
    /// first line, `listening on ADDR as NODE_ID`.
    fn run(name: &'static str, db: &Path, extra: &[&str]) -> Self {
        let log = db.with_extension("log");
        let mut child = relay_command(db)
            .args(["run", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("relay log file"))
            .spawn()
            .expect("spawn gridsync-relay run");
        let stdout = child.stdout.take().expect("stdout");
        let mut relay = Self {
            child: Some(child),
            name,
            db: db.to_owned(),
            log,
            addr: String::new(),
            id: String::new(),
        };
        // Read the first line on a thread so that waiting for it has a deadline; the thread
        // then drains the rest (nothing is expected) until the relay exits.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let line = match rx.recv_timeout(DEADLINE) {
            Ok(Some(Ok(line))) => line,
            other => panic!(
                "{name} relay printed no first line ({other:?}); its log:\n{}",
                relay.log_text()
            ),
        };
        let rest = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of {name}: {line:?}"));
        let (addr, id) = rest
            .split_once(" as ")
            .unwrap_or_else(|| panic!("unexpected first line of {name}: {line:?}"));
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
        assert_ne!(addr, "127.0.0.1:0", "the real port is printed: {line}");
        assert_hex64(id, "node id printed by run");
        relay.addr = addr.to_owned();
        relay.id = id.to_owned();
        relay
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits; returns the exit status.
    fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        sigterm(child.id());
        let status = wait_exit(&mut child, self.name);
        if !status.success() {
            eprintln!("{} relay log:\n{}", self.name, self.log_text());
        }
        status
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "{} relay ({}) log:\n{}",
                    self.name,
                    self.db.display(),
                    self.log_text()
                );
            }
        }
    }
}

/// A device store made with `gridsync init` for `grid`; returns it and its node id.
fn device(name: &str, grid: &str) -> (Gs, String) {
    let gs = Gs::empty();
    let id = gs
        .ok(&["init", "--device-name", name, "--grid", grid])
        .trim()
        .to_owned();
    assert_hex64(&id, "device node id");
    (gs, id)
}

/// `gridsync sync --relay ADDR --relay-id ID --json`.
fn sync_json(gs: &Gs, relay: &Relay) -> Value {
    gs.json(&[
        "sync",
        "--relay",
        &relay.addr,
        "--relay-id",
        &relay.id,
        "--json",
    ])
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// Incident JSON `show ID --json` on a relay's store.
fn relay_show(db: &Path, id: &str) -> Value {
    relay_json(db, &["show", id, "--json"])
}

/// `list --json` of a relay's store, keyed by incident id.
fn relay_list(db: &Path) -> std::collections::BTreeMap<String, Value> {
    match relay_json(db, &["list", "--json"]) {
        Value::Array(a) => a
            .into_iter()
            .map(|v| (str_of(&v, "id").to_owned(), v))
            .collect(),
        other => panic!("list --json is not an array: {other}"),
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(POLL);
    }
}

#[test]
fn district_and_street_relays_carry_reports_decisions_and_photos() {
    let dir = tempfile::tempdir().expect("temp dir");
    let district_db = dir.path().join("district.db");
    let street_db = dir.path().join("street.db");

    let d = relay_json(
        &district_db,
        &[
            "init",
            "--name",
            "district-110101",
            "--role",
            "district",
            "--json",
        ],
    );
    let district_id = str_of(&d, "node_id").to_owned();
    let street_id = relay_ok(
        &street_db,
        &["init", "--name", "street-002", "--role", "street"],
    )
    .trim()
    .to_owned();
    assert_hex64(&street_id, "street node id");
    relay_ok(
        &district_db,
        &["enroll", &street_id, "--relay", "--scope", STREET_SCOPE],
    );

    let (a, a_id) = device("wang-li", GRID_A);
    let (b, b_id) = device("zhao-min", GRID_B);
    let enrolled = relay_json(&street_db, &["enroll", &a_id, "--grid", GRID_A, "--json"]);
    assert_eq!(str_of(&enrolled, "role"), "device");
    assert_eq!(str_of(&enrolled, "scope"), GRID_A);
    relay_ok(&street_db, &["enroll", &b_id, "--grid", GRID_B]);

    let district = Relay::run("district", &district_db, &[]);
    assert_eq!(district.id, district_id);
    let street = Relay::run(
        "street",
        &street_db,
        &["--upstream", &district.addr, "--upstream-id", &district.id],
    );
    assert_eq!(street.id, street_id);

    // Offline reports with real photos.
    let a1 = a.report_photos(
        "Bags piled by the east gate",
        &[&fixture("street-640x427-gps.jpg")],
    );
    let a2 = a.report_photos(
        "Stray cat in the bicycle shed",
        &[&fixture("cat-2400x1600-rot8.jpg")],
    );
    let b1 = b.report_photos("Rubbish by block 3", &[&fixture("garbage-12mp-rot6.jpg")]);
    let pending = &a.status()["pending"];
    let (a_events, a_blobs, a_bytes) = (
        u64_of(pending, "events"),
        u64_of(pending, "blobs"),
        u64_of(pending, "blob_bytes"),
    );

    // A syncs with --json; B with the summary line.
    let s = sync_json(&a, &street);
    println!("A's first sync: {s}");
    assert_eq!(str_of(&s, "relay"), street.id);
    assert_eq!(u64_of(&s, "events_up"), a_events);
    assert_eq!(u64_of(&s, "events_already_there"), 0);
    assert_eq!(u64_of(&s, "events_down"), 0);
    assert_eq!(u64_of(&s, "blobs_up"), a_blobs);
    assert_eq!(u64_of(&s, "blob_bytes_up"), a_bytes);
    assert_eq!(u64_of(&s, "blobs_refused"), 0);
    let pending = &a.status()["pending"];
    assert_eq!(
        (u64_of(pending, "events"), u64_of(pending, "blobs")),
        (0, 0)
    );
    let line = b.ok(&["sync", "--relay", &street.addr, "--relay-id", &street.id]);
    println!("B's sync: {line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with(&format!("synced with {} in ", &street.id[..8])),
        "{line}"
    );
    assert!(
        line.contains(": 2 events up (0 already there), 0 down; 2 photos/thumbnails up ("),
        "{line}"
    );

    // An operator decision on the street while it runs, then A syncs again and gets it.
    relay_ok(&street_db, &["edit", &a1, "--status", "accepted"]);
    let decided = relay_json(
        &street_db,
        &[
            "edit",
            &a1,
            "--status",
            "dispatched",
            "--assignee",
            "sanitation",
            "--json",
        ],
    );
    assert_eq!(str_of(&decided, "status"), "dispatched");
    let s = sync_json(&a, &street);
    println!("A's second sync: {s}");
    assert_eq!(u64_of(&s, "events_up"), 0);
    assert_eq!(
        u64_of(&s, "events_down"),
        3,
        "accepted, dispatched, assigned"
    );
    assert_eq!(str_of(&a.show(&a1), "assignee"), "sanitation");

    // The street forwards everything to the district.
    let all = [&a1, &a2, &b1];
    wait_until("the district shows what the street shows", || {
        let at_district = relay_list(&district_db);
        all.iter().all(|id| at_district.contains_key(id.as_str()))
            && at_district == relay_list(&street_db)
    });

    // Identical incident JSON on the device, the street and the district.
    for id in [&a1, &a2] {
        let on_device = a.show(id);
        assert_eq!(on_device, relay_show(&street_db, id), "street, {id}");
        assert_eq!(on_device, relay_show(&district_db, id), "district, {id}");
    }
    assert_eq!(b.show(&b1), relay_show(&district_db, &b1));
    assert_eq!(
        str_of(&relay_show(&district_db, &a1), "status"),
        "dispatched"
    );

    // The district serves the devices' photos byte for byte.
    for (gs, id) in [(&a, &a1), (&a, &a2), (&b, &b1)] {
        let hash = str_of(&photos(&gs.show(id))[0], "hash").to_owned();
        let out = dir.path().join(format!("{hash}.jpg"));
        let printed = relay_ok(
            &district_db,
            &["blob", &hash, "-o", out.to_str().expect("UTF-8 path")],
        );
        assert!(printed.is_empty(), "{printed}");
        let at_district = std::fs::read(&out).expect("read the blob written by -o");
        assert_eq!(at_district, gs.blob(&hash, false), "photo {hash}");
        assert_eq!(common::sha256_hex(&at_district), hash);
    }

    // Scope: B holds only its own grid.
    let on_b = b.list();
    assert_eq!(on_b.len(), 1);
    assert_eq!(str_of(&on_b[0], "id"), b1);

    // SIGTERM: both relays shut down cleanly.
    assert!(street.terminate().success(), "street relay exit status");
    assert!(district.terminate().success(), "district relay exit status");
}

#[test]
fn sync_refusals_are_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let street_db = dir.path().join("street.db");
    relay_ok(
        &street_db,
        &["init", "--name", "street-002", "--role", "street"],
    );
    let (a, a_id) = device("wang-li", GRID_A);
    relay_ok(&street_db, &["enroll", &a_id, "--grid", GRID_A]);
    a.report_photos("Bags", &[&fixture("street-640x427-gps.jpg")]);
    let before = a.status();
    let street = Relay::run("street", &street_db, &[]);

    // A relay that is not the pinned one: the device's own id stands in for a wrong id.
    let args = ["sync", "--relay", &street.addr, "--relay-id", &a_id];
    let line = expect_one_line_failure(&args, &a.run(&args));
    println!("wrong id: {line}");
    assert!(line.starts_with("gridsync: error: "), "{line}");
    assert!(line.contains("mismatch"), "{line}");
    assert!(line.contains(&a_id), "{line}");
    assert_eq!(a.status(), before, "nothing changed on the device");

    // A relay that is not there: a port just freed.
    let free = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        socket.local_addr().expect("its address")
    };
    let free = free.to_string();
    let args = ["sync", "--relay", &free, "--relay-id", &street.id];
    let started = Instant::now();
    let mut child = common::command(a.dir.path())
        .arg("--db")
        .arg(&a.db)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gridsync sync");
    // It must give up by itself, within the connect timeout (plus slack for a busy machine).
    let limit = gridsync_net::client::CONNECT_TIMEOUT + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("gridsync sync against a dead address did not give up");
        }
        std::thread::sleep(POLL);
    }
    let out = child.wait_with_output().expect("output");
    let line = expect_one_line_failure(&args, &out);
    println!(
        "unreachable (gave up after {:.1} s): {line}",
        started.elapsed().as_secs_f64()
    );
    assert!(line.starts_with("gridsync: error: "), "{line}");
    assert!(line.contains(&free), "{line}");
    assert!(line.contains("cannot reach the relay"), "{line}");
    assert_eq!(a.status(), before, "nothing changed on the device");

    assert!(street.terminate().success(), "street relay exit status");
}

/// `run --session-idle-secs N`: a child's session that says nothing for N seconds ends with
/// `Error { Timeout }` (a raw child over QUIC, with the device's identity, stays quiet after
/// the `Welcome`); 0 is refused in one line.
#[test]
fn session_idle_secs_sets_the_control_stream_timeout() {
    use gridsync_proto::{frame, ErrorCode, FrameReader, Message, Role};

    let dir = tempfile::tempdir().expect("temp dir");
    let street_db = dir.path().join("street.db");
    relay_ok(
        &street_db,
        &["init", "--name", "street-002", "--role", "street"],
    );
    let (a, a_id) = device("wang-li", GRID_A);
    relay_ok(&street_db, &["enroll", &a_id, "--grid", GRID_A]);

    let args = ["run", "--listen", "127.0.0.1:0", "--session-idle-secs", "0"];
    let out = relay_command(&street_db)
        .args(args)
        .output()
        .expect("run gridsync-relay");
    let line = expect_one_line_failure(&args, &out);
    assert!(line.contains("--session-idle-secs"), "{line}");

    let street = Relay::run("street", &street_db, &["--session-idle-secs", "1"]);
    let secret = gridsync_store::Store::open(&a.db)
        .expect("open the device store")
        .identity()
        .expect("identity")
        .secret;
    let node: gridsync_core::NodeId = a_id.parse().expect("device id");
    let parent: gridsync_core::NodeId = street.id.parse().expect("relay id");
    let addr: std::net::SocketAddr = street.addr.parse().expect("relay address");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let answers = runtime.block_on(async {
        let endpoint = gridsync_net::client::endpoint("127.0.0.1:0".parse().expect("addr"))
            .expect("client endpoint");
        let conn = gridsync_net::client::connect(&endpoint, &secret, addr, parent)
            .await
            .expect("connect");
        let (mut send, mut recv) = conn.open_bi().await.expect("control stream");
        let hello = Message::Hello {
            versions: vec![1],
            node,
            role: Role::Device,
            name: "quiet".into(),
        };
        send.write_all(&frame::encode(&hello).expect("encode"))
            .await
            .expect("send Hello");
        // Read until the relay finishes its half: Welcome, then (after a second of silence)
        // the Error.
        let mut reader = FrameReader::default();
        let mut answers = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(n) = tokio::time::timeout(DEADLINE, recv.read(&mut buf))
            .await
            .expect("an answer within the deadline")
            .expect("read")
        {
            reader.push(&buf[..n]);
            while let Some(m) = reader.next_message().expect("a good frame") {
                answers.push(m);
            }
        }
        conn.close(0u32.into(), b"done");
        answers
    });
    assert!(
        matches!(answers.first(), Some(Message::Welcome { .. })),
        "{answers:?}"
    );
    assert!(
        matches!(
            answers.get(1),
            Some(Message::Error {
                code: ErrorCode::Timeout,
                ..
            })
        ),
        "{answers:?}"
    );
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(street.terminate().success());
}

/// `gridsync-relay verify INCIDENT`: at the district, a device's report (enrolled at the
/// street, not here) and the street's operator decision (a peer enrolled here) both verify;
/// at the street, the same events are a device enrolled there and the relay itself. Exit 0
/// while every signature verifies; after the district's copy of the report is altered on
/// disk, verify names it and exits 1 with one line; an unknown incident is one clear line.
#[test]
fn verify_proves_each_event_chains_back_to_an_enrolled_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let district_db = dir.path().join("district.db");
    let street_db = dir.path().join("street.db");
    relay_ok(
        &district_db,
        &["init", "--name", "district-110101", "--role", "district"],
    );
    let street_id = relay_ok(
        &street_db,
        &["init", "--name", "street-002", "--role", "street"],
    )
    .trim()
    .to_owned();
    relay_ok(
        &district_db,
        &["enroll", &street_id, "--relay", "--scope", STREET_SCOPE],
    );
    let (a, a_id) = device("wang-li", GRID_A);
    relay_ok(&street_db, &["enroll", &a_id, "--grid", GRID_A]);

    let district = Relay::run("district", &district_db, &[]);
    let street = Relay::run(
        "street",
        &street_db,
        &["--upstream", &district.addr, "--upstream-id", &district.id],
    );
    let id = a.report(&[
        "--category",
        "garbage",
        "--description",
        "Bags piled by the east gate",
    ]);
    sync_json(&a, &street);
    relay_ok(
        &street_db,
        &["edit", &id, "--comment", "Sanitation is on its way"],
    );
    wait_until("the report and the decision reach the district", || {
        relay_list(&district_db)
            .get(&id)
            .is_some_and(|v| common::event_count(v) == 2)
    });
    assert_eq!(district.terminate().code(), Some(0));
    assert_eq!(street.terminate().code(), Some(0));

    let signers = |v: &Value| -> Vec<(String, String, String)> {
        v["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    str_of(e, "origin").to_owned(),
                    str_of(e, "signature").to_owned(),
                    str_of(&e["signer"], "kind").to_owned(),
                )
            })
            .collect()
    };
    let at_district = relay_json(&district_db, &["verify", &id, "--json"]);
    assert_eq!(at_district["all_valid"], true, "{at_district}");
    assert_eq!(
        signers(&at_district),
        vec![
            (a_id.clone(), "valid".into(), "vouched".into()),
            (street_id.clone(), "valid".into(), "peer".into()),
        ]
    );
    // The district knows the handheld from the street's signed node record.
    assert_eq!(at_district["events"][0]["signer"]["by"], street_id.as_str());
    assert_eq!(at_district["events"][0]["signer"]["role"], "device");
    assert_eq!(at_district["events"][0]["signer"]["scope"], GRID_A);
    assert_eq!(at_district["events"][1]["signer"]["role"], "street");
    assert_eq!(at_district["events"][1]["signer"]["scope"], STREET_SCOPE);
    let at_street = relay_json(&street_db, &["verify", &id, "--json"]);
    assert_eq!(
        signers(&at_street),
        vec![
            (a_id.clone(), "valid".into(), "peer".into()),
            (street_id.clone(), "valid".into(), "this-relay".into()),
        ]
    );
    let text = relay_ok(&street_db, &["verify", &id]);
    assert!(text.contains("every signature verifies"), "{text}");

    // Alter the district's copy of the report on disk (as a tampered disk would).
    {
        let c = rusqlite::Connection::open(&district_db).expect("open district db");
        let origin = hex::decode(&a_id).expect("hex");
        let body: Vec<u8> = c
            .query_row(
                "SELECT body FROM events WHERE origin = ?1 AND seq = 1",
                [&origin],
                |r| r.get(0),
            )
            .expect("the report");
        let mut e = gridsync_core::codec::decode_event(&body).expect("decodes");
        e.author = "someone else".into();
        let body = gridsync_core::codec::encode_event(&e).expect("encodes");
        c.execute(
            "UPDATE events SET body = ?1 WHERE origin = ?2 AND seq = 1",
            rusqlite::params![body, origin],
        )
        .expect("tamper");
    }
    let out = relay_command(&district_db)
        .args(["verify", &id])
        .output()
        .expect("run verify");
    let line = expect_one_line_failure(&["verify", &id], &out);
    assert!(
        line.contains("1 of the 2 events") && line.contains(&id),
        "{line}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("invalid"), "{stdout}");

    let out = relay_command(&district_db)
        .args(["verify", "0192f0c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f"])
        .output()
        .expect("run verify");
    let line = expect_one_line_failure(&["verify"], &out);
    assert!(line.contains("no incident"), "{line}");
}

/// A running street relay (store in a temp dir, kept alive by the returned guard) with one
/// handheld of grid A enrolled, both made through the command lines.
fn street_with_handheld() -> (tempfile::TempDir, PathBuf, Gs, Relay) {
    let dir = tempfile::tempdir().expect("temp dir");
    let street_db = dir.path().join("street.db");
    relay_ok(
        &street_db,
        &["init", "--name", "street-002", "--role", "street"],
    );
    let (pda, pda_id) = device("patrol-7", GRID_A);
    relay_ok(&street_db, &["enroll", &pda_id, "--grid", GRID_A]);
    let street = Relay::run("street", &street_db, &[]);
    (dir, street_db, pda, street)
}

/// The closed loop of grid management, through both command lines as a handheld and its
/// sub-center use them: the handheld reports with a photo and syncs; the platform accepts and
/// dispatches; the handheld, synced, reports handling and resolves with an "after" photo; the
/// platform verifies, closes, evaluates and reopens. The workflow's refusals (a transition not
/// allowed, a score before resolution or out of range) and a handheld's attempt at a decision
/// are each one line that changes nothing.
#[test]
fn the_closed_loop_runs_between_the_handheld_and_its_platform() {
    let (_dir, street_db, pda, street) = street_with_handheld();

    let id = pda.report_photos("Overflowing bin", &[&fixture("street-640x427-gps.jpg")]);
    sync_json(&pda, &street);
    let platform = |args: &[&str]| {
        let mut all = vec!["edit", id.as_str()];
        all.extend_from_slice(args);
        all.push("--json");
        relay_json(&street_db, &all)
    };
    let refused = |db: &Path, args: &[&str]| {
        let mut all = vec!["edit", id.as_str()];
        all.extend_from_slice(args);
        let out = relay_command(db)
            .args(&all)
            .output()
            .expect("run gridsync-relay");
        expect_one_line_failure(&all, &out)
    };

    // Scores wait for resolution; reported -> verified is no move.
    let before = relay_show(&street_db, &id);
    let line = refused(&street_db, &["--score", "4"]);
    assert!(line.contains("resolved"), "{line}");
    let line = refused(&street_db, &["--status", "verified"]);
    assert!(
        line.contains("accepted") && line.contains("rejected"),
        "{line}"
    );
    assert_eq!(
        relay_show(&street_db, &id),
        before,
        "refusals changed nothing"
    );

    let v = platform(&["--status", "accepted"]);
    assert_eq!(str_of(&v, "status"), "accepted");
    let v = platform(&["--status", "dispatched", "--assignee", "sanitation"]);
    assert_eq!(str_of(&v, "status"), "dispatched");
    assert_eq!(v["assignee"], "sanitation");

    // The handheld learns of the dispatch, may not decide, and reports handling.
    let s = sync_json(&pda, &street);
    assert!(u64_of(&s, "events_down") >= 3, "{s}");
    assert_eq!(str_of(&pda.show(&id), "status"), "dispatched");
    let line = pda.fail(&["edit", &id, "--status", "accepted"]);
    assert!(line.contains("operator decision"), "{line}");
    let v = pda.edit(&id, &["--status", "in_progress"]);
    assert_eq!(str_of(&v, "status"), "in_progress");
    let cat = fixture("cat-2400x1600-rot8.jpg").display().to_string();
    let v = pda.edit(&id, &["--status", "resolved", "--photo", &cat]);
    assert_eq!(str_of(&v, "status"), "resolved");
    let kind_of_cat = photos(&v)
        .iter()
        .find(|p| p["width"] == 1067)
        .map(|p| p["kind"].clone());
    assert_eq!(
        kind_of_cat,
        Some(Value::from("after")),
        "the photo of the resolving edit shows the result: {v}"
    );
    let s = sync_json(&pda, &street);
    assert_eq!(u64_of(&s, "events_up"), 3, "{s}");

    // The platform verifies the result, closes and evaluates; bad scores are refused.
    assert_eq!(str_of(&relay_show(&street_db, &id), "status"), "resolved");
    for bad in ["9", "0"] {
        let line = refused(&street_db, &["--score", bad]);
        assert!(line.contains(bad) && line.contains('5'), "{line}");
    }
    platform(&["--status", "verified"]);
    let v = platform(&["--status", "closed"]);
    assert_eq!(str_of(&v, "status"), "closed");
    let line = refused(&street_db, &["--status", "resolved"]);
    assert!(line.contains("accepted"), "closed -> resolved: {line}");
    let v = platform(&["--score", "5", "--comment", "Clean now, thanks"]);
    assert_eq!(v["score"], 5);
    assert_eq!(str_of(&v, "status"), "closed");
    let kinds: Vec<&str> = photos(&v).iter().map(|p| str_of(p, "kind")).collect();
    assert_eq!(kinds.len(), 2, "{v}");
    assert!(kinds.contains(&"before") && kinds.contains(&"after"), "{v}");
    // 2 reported + accept + dispatch (status, assignee) + in_progress + resolve (status,
    // photo) + verify + close + score + comment.
    assert_eq!(common::event_count(&v), 12, "{v}");

    // Reopening is a decision too.
    let v = platform(&["--status", "accepted"]);
    assert_eq!(str_of(&v, "status"), "accepted");
    sync_json(&pda, &street);
    let seen = pda.show(&id);
    assert_eq!(str_of(&seen, "status"), "accepted");
    assert_eq!(seen["score"], 5);
    assert!(street.terminate().success());
}

/// A community workstation: `init --role community`, enrolled at its street with a
/// community's scope (three segments: the role follows from the depth), or with `--role`;
/// a scope of another depth without `--role` is one clear line, and nothing is enrolled.
#[test]
fn a_community_workstation_is_enrolled_by_its_scope() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (street_db, community_db) = (dir.path().join("street.db"), dir.path().join("c.db"));
    relay_ok(
        &street_db,
        &["init", "--name", "street-002", "--role", "street"],
    );
    let c = relay_json(
        &community_db,
        &[
            "init",
            "--name",
            "community-014",
            "--role",
            "community",
            "--json",
        ],
    );
    let community_id = str_of(&c, "node_id").to_owned();
    let status = relay_json(&community_db, &["status", "--json"]);
    assert_eq!(status["role"], "community", "{status}");
    let enrolled = relay_json(
        &street_db,
        &[
            "enroll",
            &community_id,
            "--relay",
            "--scope",
            "110101/002/014",
            "--json",
        ],
    );
    assert_eq!(str_of(&enrolled, "role"), "community");
    assert_eq!(str_of(&enrolled, "scope"), "110101/002/014");
    let args = [
        "enroll",
        &community_id,
        "--relay",
        "--scope",
        "110101/002/014/03",
    ];
    let out = relay_command(&street_db).args(args).output().expect("run");
    let line = expect_one_line_failure(&args, &out);
    assert!(
        line.contains("4 segments") && line.contains("--role"),
        "{line}"
    );
    let peers = relay_json(&street_db, &["peers", "--json"]);
    assert_eq!(peers.as_array().map(Vec::len), Some(1), "{peers}");
    let explicit = relay_json(
        &street_db,
        &[
            "enroll",
            &community_id,
            "--relay",
            "--scope",
            "110101/002/014/03",
            "--role",
            "community",
            "--json",
        ],
    );
    assert_eq!(str_of(&explicit, "role"), "community");
}

/// The platform accepts both cases and dispatches them to sanitation, `late` with a due time
/// long past, `on_time` with one far ahead.
fn dispatch_late_and_on_time(street_db: &Path, late: &str, on_time: &str) {
    for (id, due) in [
        (late, "2026-01-01T08:00:00+08:00"),
        (on_time, "2099-01-01T08:00:00+08:00"),
    ] {
        relay_ok(street_db, &["edit", id, "--status", "accepted"]);
        relay_ok(
            street_db,
            &[
                "edit",
                id,
                "--status",
                "dispatched",
                "--assignee",
                "sanitation",
                "--due",
                due,
            ],
        );
    }
}

/// `list --overdue`: a case dispatched with a due time already past is listed at the
/// platform and, once synced, on the handheld; one due later, or never dispatched, is not;
/// resolving it takes it off the list.
#[test]
fn list_overdue_shows_cases_handled_past_their_due_time() {
    let (_dir, street_db, pda, street) = street_with_handheld();
    let late = pda.report(&["--category", "garbage", "--description", "late"]);
    let on_time = pda.report(&["--category", "garbage", "--description", "on time"]);
    let waiting = pda.report(&["--category", "garbage", "--description", "waiting"]);
    sync_json(&pda, &street);
    dispatch_late_and_on_time(&street_db, &late, &on_time);
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|i| str_of(i, "id").to_owned())
            .collect()
    };
    assert_eq!(
        ids(relay_json(&street_db, &["list", "--overdue", "--json"])),
        std::slice::from_ref(&late)
    );
    assert_eq!(
        ids(relay_json(&street_db, &["list", "--json"])).len(),
        3,
        "without --overdue: every case ({waiting} included)"
    );
    sync_json(&pda, &street);
    assert_eq!(
        ids(pda.json(&["list", "--overdue", "--json"])),
        std::slice::from_ref(&late)
    );
    pda.edit(&late, &["--status", "resolved"]);
    assert!(ids(pda.json(&["list", "--overdue", "--json"])).is_empty());
    assert!(street.terminate().success());
}

/// `run --escalate-overdue`: the platform escalates a case overdue at the grid one level (to
/// the community), once, as its own decision that the handheld then receives; a case due
/// later is left alone; without the flag nothing is escalated.
#[test]
fn escalate_overdue_moves_an_overdue_case_up_one_level_once() {
    let (_dir, street_db, pda, street) = street_with_handheld();
    let late = pda.report(&["--category", "garbage", "--description", "late"]);
    let on_time = pda.report(&["--category", "garbage", "--description", "on time"]);
    sync_json(&pda, &street);
    assert!(street.terminate().success());
    dispatch_late_and_on_time(&street_db, &late, &on_time);
    // Without the policy: listed overdue, not escalated.
    let plain = Relay::run("street", &street_db, &[]);
    sync_json(&pda, &plain);
    assert!(plain.terminate().success());
    assert_eq!(str_of(&relay_show(&street_db, &late), "level"), "grid");
    let events_before = u64_of(&relay_show(&street_db, &late), "event_count");

    let street = Relay::run("street", &street_db, &["--escalate-overdue"]);
    wait_until("the overdue case is escalated", || {
        str_of(&relay_show(&street_db, &late), "level") == "community"
    });
    let v = relay_show(&street_db, &late);
    assert_eq!(
        u64_of(&v, "event_count"),
        events_before + 1,
        "one escalation"
    );
    assert!(
        str_of(&v, "level_reason").contains("overdue: sanitation was due"),
        "{v}"
    );
    assert_eq!(str_of(&relay_show(&street_db, &on_time), "level"), "grid");
    // It reaches the handheld like any decision.
    sync_json(&pda, &street);
    assert_eq!(str_of(&pda.show(&late), "level"), "community");
    assert!(street.terminate().success());
    // Once: a restart with the policy checks again and adds nothing.
    let again = Relay::run("street", &street_db, &["--escalate-overdue"]);
    wait_until("the restarted relay's first deadline check", || {
        again.log_text().contains("first check done")
    });
    assert!(
        again.log_text().contains("cases=Some(0)"),
        "{}",
        again.log_text()
    );
    assert!(again.terminate().success());
    assert_eq!(
        u64_of(&relay_show(&street_db, &late), "event_count"),
        events_before + 1
    );
}

/// Runs `gridsync-relay --db DB ARGS...` and expects a one-line failure; returns the line.
fn relay_fail(db: &Path, args: &[&str]) -> String {
    let out = relay_command(db)
        .args(args)
        .output()
        .expect("run gridsync-relay");
    expect_one_line_failure(args, &out)
}

/// The grid roster through both command lines: the platform adds, lists and removes members
/// (`staff add|remove|list`), the handheld sees its grid's roster once synced (`gridsync
/// staff`), and a case is dispatched to a department, a force or a member on the roster;
/// every refusal is one line that writes nothing.
#[test]
fn the_roster_is_kept_at_the_platform_and_dispatch_can_name_a_force_or_a_member() {
    let (_dir, street_db, pda, street) = street_with_handheld();
    let pda_id = pda.ok(&["id"]).trim().to_owned();

    let added = relay_ok(
        &street_db,
        &[
            "staff",
            "add",
            "--grid",
            GRID_A,
            "--force",
            "police",
            "--name",
            "Wang Fang",
            "--phone",
            "13800138000",
            "--device",
            &pda_id,
            "--json",
        ],
    );
    // The keys in the documented order.
    let at = |k: &str| {
        added
            .find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} in {added}"))
    };
    assert!(
        at("grid") < at("name") && at("name") < at("force"),
        "{added}"
    );
    assert!(
        at("force") < at("phone") && at("phone") < at("device"),
        "{added}"
    );
    let added: Value = serde_json::from_str(&added).expect("JSON");
    assert_eq!(
        added,
        serde_json::json!({
            "grid": GRID_A, "name": "Wang Fang", "force": "police",
            "phone": "13800138000", "device": pda_id,
        })
    );
    let line = relay_ok(
        &street_db,
        &[
            "staff",
            "add",
            "--grid",
            GRID_A,
            "--force",
            "firefighter",
            "--name",
            "Li Wei",
        ],
    );
    assert!(
        line.contains("Li Wei") && line.contains("firefighter"),
        "{line}"
    );

    let all = relay_json(&street_db, &["staff", "list", "--json"]);
    let names: Vec<&str> = all
        .as_array()
        .expect("an array")
        .iter()
        .map(|m| str_of(m, "name"))
        .collect();
    assert_eq!(
        names,
        ["Wang Fang", "Li Wei"],
        "by force: police, firefighter"
    );
    assert_eq!(all[1]["phone"], Value::Null);
    assert_eq!(all[1]["device"], Value::Null);
    let other = relay_json(&street_db, &["staff", "list", "--grid", GRID_B, "--json"]);
    assert_eq!(other, serde_json::json!([]));

    // Refusals: a grid nobody here serves, an unknown force, no such member to remove.
    let line = relay_fail(
        &street_db,
        &[
            "staff", "add", "--grid", GRID_B, "--force", "police", "--name", "Sun Li",
        ],
    );
    assert!(line.contains(GRID_B) && line.contains("enroll"), "{line}");
    let line = relay_fail(
        &street_db,
        &[
            "staff",
            "add",
            "--grid",
            GRID_A,
            "--force",
            "astronaut",
            "--name",
            "X",
        ],
    );
    assert!(line.contains("firefighter"), "the forces are named: {line}");
    relay_ok(&street_db, &["staff", "remove", "Li Wei", "--grid", GRID_A]);
    let line = relay_fail(&street_db, &["staff", "remove", "Li Wei", "--grid", GRID_A]);
    assert!(
        line.contains("Li Wei") && line.contains("not an active member"),
        "{line}"
    );
    let after = relay_json(&street_db, &["staff", "list", "--json"]);
    assert_eq!(after.as_array().map(Vec::len), Some(1), "{after}");

    // The handheld: nothing before it syncs, its grid's roster after; it may not write it.
    assert_eq!(pda.json(&["staff", "--json"]), serde_json::json!([]));
    let id = pda.report(&[
        "--category",
        "fire-hazard",
        "--description",
        "Boxes in the exit",
    ]);
    sync_json(&pda, &street);
    let seen = pda.json(&["staff", "--json"]);
    assert_eq!(seen, serde_json::json!([added]), "{seen}");
    let text = pda.ok(&["staff"]);
    assert!(
        text.contains("Wang Fang") && text.contains("police"),
        "{text}"
    );
    assert_eq!(pda.list().len(), 1, "roster events are no incidents");

    // Dispatch: to a member on the roster, to a force, to a department.
    relay_ok(&street_db, &["edit", &id, "--status", "accepted"]);
    let line = relay_fail(
        &street_db,
        &["edit", &id, "--status", "dispatched", "--staff", "Li Wei"],
    );
    assert!(line.contains("Li Wei") && line.contains(GRID_A), "{line}");
    let line = relay_fail(
        &street_db,
        &[
            "edit",
            &id,
            "--status",
            "dispatched",
            "--assignee",
            "force:police",
        ],
    );
    assert!(line.contains("--force"), "{line}");
    let line = relay_fail(
        &street_db,
        &["edit", &id, "--assignee", "sanitation", "--force", "police"],
    );
    assert!(
        line.contains("--force") || line.contains("--assignee"),
        "{line}"
    );
    assert_eq!(str_of(&relay_show(&street_db, &id), "status"), "accepted");
    let v = relay_json(
        &street_db,
        &[
            "edit",
            &id,
            "--status",
            "dispatched",
            "--staff",
            "Wang Fang",
            "--due",
            "2099-01-01T08:00:00+08:00",
            "--json",
        ],
    );
    assert_eq!(
        (&v["assignee"], &v["assignee_kind"], &v["assignee_name"]),
        (
            &Value::from("staff:Wang Fang"),
            &Value::from("staff"),
            &Value::from("Wang Fang")
        ),
        "{v}"
    );
    let v = relay_json(
        &street_db,
        &["edit", &id, "--force", "firefighter", "--json"],
    );
    assert_eq!(
        (str_of(&v, "assignee"), str_of(&v, "assignee_kind")),
        ("force:firefighter", "force")
    );
    let v = relay_json(
        &street_db,
        &["edit", &id, "--assignee", "fire-brigade", "--json"],
    );
    assert_eq!(
        (str_of(&v, "assignee_kind"), str_of(&v, "assignee_name")),
        ("department", "fire-brigade")
    );
    sync_json(&pda, &street);
    assert_eq!(str_of(&pda.show(&id), "assignee_kind"), "department");
    let line = pda.fail(&["edit", &id, "--staff", "Wang Fang"]);
    assert!(line.contains("operator decision"), "{line}");
    assert!(street.terminate().success());
}

/// `gridsync blob HASH --fetch` (PROTOCOL.md §8.11): a second handheld of the grid, synced,
/// holds the reporter's thumbnail but not the photo; `--fetch` brings the photo from the
/// street byte for byte (and a held blob needs no relay); a photo the street does not hold,
/// and one no incident here names, are one clear line each, writing nothing.
#[test]
fn blob_fetch_brings_a_photo_down_from_the_relay() {
    let (_dir, street_db, pda, street) = street_with_handheld();
    let (mate, mate_id) = device("patrol-8", GRID_A);
    relay_ok(&street_db, &["enroll", &mate_id, "--grid", GRID_A]);
    let id = pda.report_photos("Overflowing bin", &[&fixture("street-640x427-gps.jpg")]);
    let lost = pda.report_photos("Broken lamp", &[&fixture("cat-2400x1600-rot8.jpg")]);
    sync_json(&pda, &street);
    let photo_of = |id: &str| -> (String, String) {
        let v = pda.show(id);
        let p = &v["photos"][0];
        (str_of(p, "hash").to_owned(), str_of(p, "thumb").to_owned())
    };
    let (hash, thumb) = photo_of(&id);
    let (lost_hash, _) = photo_of(&lost);
    // `blob HASH --fetch --relay ADDR --relay-id ID -o OUT`.
    let fetch = |hash: &str, out: &Path| -> Vec<String> {
        let out = out.display().to_string();
        let args = [
            "blob",
            hash,
            "--fetch",
            "--relay",
            &street.addr,
            "--relay-id",
            &street.id,
            "-o",
            &out,
        ];
        args.iter().map(|s| s.to_string()).collect()
    };
    let out = mate.dir.path().join("photo.jpg");

    // Not synced yet: nothing here names the photo.
    let a = fetch(&hash, &out);
    let line = mate.fail(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        line.contains("no incident here names blob") && line.contains("sync first"),
        "{line}"
    );
    assert!(!out.exists());

    // Synced: the thumbnail came down with the incidents, the photo did not.
    let s = sync_json(&mate, &street);
    assert_eq!(u64_of(&s, "events_down"), 4, "{s}");
    assert_eq!(u64_of(&s, "blobs_down"), 2, "both thumbnails: {s}");
    let thumb_out = mate.dir.path().join("thumb.jpg");
    mate.ok(&[
        "blob",
        &hash,
        "--thumb",
        "-o",
        &thumb_out.display().to_string(),
    ]);
    let pda_thumb = pda.dir.path().join("thumb.jpg");
    pda.ok(&["blob", &thumb, "-o", &pda_thumb.display().to_string()]);
    assert_eq!(
        std::fs::read(&thumb_out).unwrap(),
        std::fs::read(&pda_thumb).unwrap()
    );
    let line = mate.fail(&["blob", &hash, "-o", &out.display().to_string()]);
    assert!(line.contains("is not stored here"), "{line}");

    // --fetch: the photo, byte for byte as the reporter holds it.
    let a = fetch(&hash, &out);
    mate.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let pda_photo = pda.dir.path().join("photo.jpg");
    pda.ok(&["blob", &hash, "-o", &pda_photo.display().to_string()]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&pda_photo).unwrap()
    );
    // Held now: the same command needs no relay (a wrong address would fail otherwise).
    let again = mate.dir.path().join("again.jpg");
    mate.ok(&[
        "blob",
        &hash,
        "--fetch",
        "--relay",
        "127.0.0.1:9",
        "--relay-id",
        &street.id,
        "-o",
        &again.display().to_string(),
    ]);
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&pda_photo).unwrap()
    );

    // The street lost the other photo's bytes: the relay's refusal, in one line.
    let conn = rusqlite::Connection::open(&street_db).expect("open the street's store");
    let raw = hex::decode(&lost_hash).expect("hex hash");
    let deleted = conn
        .execute("DELETE FROM blobs WHERE hash = ?1", [&raw])
        .expect("delete a blob");
    assert_eq!(deleted, 1);
    let lost_out = mate.dir.path().join("lost.jpg");
    let a = fetch(&lost_hash, &lost_out);
    let line = mate.fail(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        line.contains("the relay refused blob") && line.contains("(BlobMismatch)"),
        "{line}"
    );
    assert!(!lost_out.exists());
    // --fetch needs the relay.
    let line = mate.fail(&["blob", &hash, "--fetch"]);
    assert!(line.contains("--relay"), "{line}");
}

/// `gridsync sync --follow --json`: the handheld stays connected and prints one JSON object
/// per notice, pushed by the relay as the platform decides (its `kind` and `incident`), with
/// nothing else on standard output; SIGTERM ends it with exit 0.
#[test]
fn sync_follow_prints_a_json_line_per_notice_and_ends_on_sigterm() {
    let (_dir, street_db, pda, street) = street_with_handheld();
    let id = pda.report(&["--category", "garbage", "--description", "bags"]);
    let mut follower = common::command(pda.dir.path())
        .args([
            "--db",
            pda.db.to_str().expect("path"),
            "sync",
            "--relay",
            &street.addr,
            "--relay-id",
            &street.id,
            "--follow",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gridsync sync --follow");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The follower uploads the report; then the platform decides while it follows.
    wait_until("the report reaches the street", || {
        relay_list(&street_db).contains_key(&id)
    });
    relay_ok(&street_db, &["edit", &id, "--status", "accepted"]);
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a notice line within 20 s");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    assert_eq!(str_of(&v, "kind"), "decision", "{v}");
    assert_eq!(str_of(&v, "incident"), id, "{v}");
    assert_eq!(str_of(&v, "status"), "accepted", "{v}");
    assert_eq!(str_of(&v, "what"), "status accepted", "{v}");
    sigterm(follower.id());
    let status = wait_exit(&mut follower, "gridsync sync --follow");
    assert!(status.success(), "{status}");
    reader.join().expect("the reader");
    assert!(rx.try_recv().is_err(), "nothing else on standard output");
    assert!(street.terminate().success());
}
