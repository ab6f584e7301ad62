//! The conformance harness can fail: run in spawn mode against this relay with each fault,
//! exactly the cases that check what the fault breaks fail, and every other case passes.
//! Without a fault (`none`) nothing fails.

use gridsync_conformance::{identity, RunConfig, Target};

/// Runs every case against the relay with `fault`; returns the ids of the failed cases (the
/// lines of the failures go to standard error, which the test harness shows on failure).
fn failed_with(fault: &str) -> Vec<String> {
    let config = RunConfig {
        target: Target::Spawn {
            bin: env!("CARGO_BIN_EXE_gridsync-broken-relay").into(),
            env: vec![("GRIDSYNC_BROKEN".into(), fault.into())],
            keep: false,
        },
        identities: identity::generate(identity::MIN_COUNT).expect("identities"),
        filter: None,
        idle_timeout: None,
    };
    let report = gridsync_conformance::run(config, &mut |o| {
        if o.status == gridsync_conformance::Status::Fail {
            eprintln!("[{fault}] {}", o.line());
        }
    })
    .expect("the run starts");
    assert_eq!(report.skipped, 0, "spawn mode runs every case");
    report.failed_ids().into_iter().map(str::to_owned).collect()
}

#[test]
fn without_a_fault_every_case_passes() {
    assert_eq!(failed_with("none"), Vec::<String>::new());
}

#[test]
fn an_ack_before_the_commit_is_caught_by_the_kill_after_ack_case() {
    assert_eq!(failed_with("ack-before-commit"), ["durable.ack-then-kill"]);
}

#[test]
fn a_relay_that_does_not_push_is_caught_by_the_push_case() {
    assert_eq!(failed_with("no-push"), ["follow.pushed"]);
}

#[test]
fn a_forged_origin_accepted_is_caught() {
    assert_eq!(failed_with("forged-origin"), ["upload.forged-origin"]);
}

#[test]
fn an_ignored_frame_limit_is_caught_by_the_frame_limit_cases() {
    assert_eq!(
        failed_with("no-frame-limit"),
        ["hello.welcome", "frame.over-limit", "frame.http-garbage"]
    );
}

#[test]
fn skipped_authorisation_is_caught_by_the_authorisation_cases() {
    assert_eq!(
        failed_with("no-authorisation"),
        [
            "auth.device-decision",
            "auth.unvouched-origin",
            "auth.record-then-events",
            "auth.revoked-later-events"
        ]
    );
}

#[test]
fn a_leaked_grid_is_caught_by_the_scope_cases() {
    assert_eq!(
        failed_with("leak-scope"),
        [
            "blob.fetch-out-of-scope-refused",
            "held.outside-scope",
            "down.scope",
            "follow.other-scope",
            "community.relay"
        ]
    );
}
