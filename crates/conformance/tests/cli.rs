//! The `gridsync-conformance` command line, black-box: list, identities, vectors, and the
//! errors a new user meets first.

use std::process::{Command, Output};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridsync-conformance"))
        .args(args)
        .env_remove("GRIDSYNC_LOG")
        .output()
        .expect("run gridsync-conformance")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn list_prints_every_case_with_its_section() {
    let out = harness(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), gridsync_conformance::all_cases().len());
    assert!(lines.len() >= 40);
    for l in &lines {
        let mut words = l.split_whitespace();
        let id = words.next().expect("an id");
        assert!(id.contains('.'), "{l}");
        let section = words.next().expect("a section");
        assert!(section.starts_with('§') || section == "EVENTS.md", "{l}");
    }
    assert!(text.contains("durable.ack-then-kill") && text.contains("[spawn]"));
    let json: serde_json::Value =
        serde_json::from_slice(&harness(&["list", "--json"]).stdout).expect("JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(lines.len()));
}

#[test]
fn identities_are_written_once_with_their_enrollment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("ids");
    let path = out_dir.to_str().expect("UTF-8 path");
    let out = harness(&["identities", "--out", path, "--count", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let ids: Vec<_> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(ids.len(), 7, "{text}");
    for l in &ids {
        let id = l.split_whitespace().next().expect("node id");
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert!(text.contains("--relay --scope 990000/001"), "{text}");
    assert!(text.contains("--relay --scope 990000/001/001"), "{text}");
    assert!(text.contains("revoke"), "{text}");
    let file = std::fs::read_to_string(out_dir.join("identities.json")).expect("file");
    assert!(file.contains("\"part\": \"stranger\""));
    // Never overwritten.
    let again = harness(&["identities", "--out", path]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already holds an identity file"),
        "{}",
        stderr(&again)
    );
    assert_eq!(stderr(&again).lines().count(), 1);
    // Too few.
    let few = harness(&[
        "identities",
        "--out",
        dir.path().join("few").to_str().expect("path"),
        "--count",
        "3",
    ]);
    assert_eq!(few.status.code(), Some(2));
    assert!(stderr(&few).contains("at least 7"), "{}", stderr(&few));
}

#[test]
fn vectors_pass_on_the_repository_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/wire");
    let out = harness(&["vectors", "--dir", dir]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().last(), Some("20 passed, 0 failed"), "{text}");
}

#[test]
fn a_bad_command_line_is_one_line_and_exit_2() {
    for args in [
        &["run"][..],
        &[
            "run",
            "--target",
            "127.0.0.1:1",
            "--target-id",
            "zz",
            "--identities",
            ".",
        ],
        &["run", "--spawn-relay", "/nonexistent/relay"],
        &[
            "run",
            "--target",
            "127.0.0.1:1",
            "--target-id",
            &"ab".repeat(32),
        ],
    ] {
        let out = harness(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("gridsync-conformance: "), "{args:?}: {err}");
    }
}
