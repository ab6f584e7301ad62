//! The text forms of gridsync's identifiers (as read from configuration, the command line and
//! enrolment: `GridCode`, `Scope`, `NodeId`, `IncidentId`, `BlobHash`) never panic on any
//! string, and whatever parses prints back to text that parses to the same value. A grid code
//! is always a scope that contains it.
#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use gridsync_core::{BlobHash, GridCode, IncidentId, NodeId, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<Scope>(text);
    round_trip::<NodeId>(text);
    round_trip::<IncidentId>(text);
    round_trip::<BlobHash>(text);
    if let Some(grid) = round_trip::<GridCode>(text) {
        let scope: Scope = grid.to_string().parse().expect("a grid code is a scope");
        assert!(scope.contains(&grid));
        assert!(grid.is_in(&scope));
    }
});

fn round_trip<T>(text: &str) -> Option<T>
where
    T: FromStr + Display + PartialEq + std::fmt::Debug,
{
    let value: T = text.parse().ok()?;
    let printed = value.to_string();
    match printed.parse::<T>() {
        Ok(again) => assert_eq!(again, value, "{printed:?}"),
        Err(_) => panic!("{text:?} parses but its printed form {printed:?} does not"),
    }
    Some(value)
}
