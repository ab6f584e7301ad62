//! The conformance suite (gridsync-conformance, run in-process) against the real
//! `gridsync-relay` binary: spawned by the harness (every case, including those that kill and
//! restart the relay), and already running with the identities enrolled by an operator through
//! the CLI (every case that does not need to restart it).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gridsync_conformance::{identity, Needs, RunConfig, Status, Target};

fn relay_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gridsync-relay")
}

fn relay(db: &Path, args: &[&str]) -> String {
    let out = Command::new(relay_bin())
        .env_remove("GRIDSYNC_RELAY_DB")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run gridsync-relay");
    assert!(
        out.status.success(),
        "gridsync-relay {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn failures(report: &gridsync_conformance::Report) -> Vec<String> {
    report
        .cases
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.line())
        .collect()
}

#[test]
fn the_relay_passes_every_case_when_the_harness_spawns_it() {
    let config = RunConfig {
        target: Target::Spawn {
            bin: relay_bin().into(),
            env: Vec::new(),
            keep: false,
        },
        identities: identity::generate(identity::MIN_COUNT).expect("identities"),
        filter: None,
        idle_timeout: None,
    };
    let report = gridsync_conformance::run(config, &mut |_| {}).expect("the run starts");
    assert_eq!(failures(&report), Vec::<String>::new());
    assert_eq!(report.skipped, 0, "spawn mode runs every case");
    assert_eq!(report.passed, gridsync_conformance::all_cases().len());
    assert!(report.passed >= 40);
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_relay_with_the_identities_enrolled_by_its_operator_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("relay.db");
    let id = relay(
        &db,
        &["init", "--name", "district-990000", "--role", "district"],
    );
    let ids = identity::generate(8).expect("identities");
    identity::write(&dir.path().join("ids"), &ids).expect("write identities");
    // Exactly the commands `gridsync-conformance identities` prints for an operator.
    for i in &ids.identities {
        for line in &i.enroll {
            let args: Vec<&str> = line
                .strip_prefix("gridsync-relay ")
                .expect("a gridsync-relay command")
                .split_whitespace()
                .collect();
            relay(&db, &args);
        }
    }
    let mut child = Command::new(relay_bin())
        .arg("--db")
        .arg(&db)
        .args(["run", "--listen", "127.0.0.1:0", "--session-idle-secs", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the relay");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .expect("listening on ADDR")
        .parse()
        .expect("an address");
    let mut key = [0u8; 32];
    hex::decode_to_slice(id.trim(), &mut key).expect("a node id");
    let config = RunConfig {
        target: Target::Addr { addr, id: key },
        identities: identity::read(&dir.path().join("ids")).expect("read identities"),
        filter: None,
        idle_timeout: Some(Duration::from_secs(5)),
    };
    let report = gridsync_conformance::run(config, &mut |_| {}).expect("the run starts");
    drop(running);
    assert_eq!(failures(&report), Vec::<String>::new());
    let spawn_only = gridsync_conformance::all_cases()
        .iter()
        .filter(|c| c.needs == Needs::Spawn)
        .count();
    assert_eq!(
        report.skipped, spawn_only,
        "only the restarting cases are skipped"
    );
    assert!(report.passed >= 40);
}
