//! `decode_event` must never panic, and whatever it accepts must survive a re-encode, a fold
//! into a state (or, for a roster event, into a roster) and the incident JSON.
#![no_main]

use gridsync_core::{codec, IncidentState, Roster};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = codec::decode_event(data) else {
        return;
    };
    let again = codec::encode_event(&event).expect("a decoded event re-encodes");
    assert_eq!(codec::decode_event(&again).as_ref(), Ok(&event));
    let mut state = IncidentState::new(event.incident);
    let roster_event = event.payload.is_roster();
    assert_eq!(state.apply(&event), !roster_event);
    assert!(!state.apply(&event));
    let _ = state.view();
    let mut roster = Roster::new();
    assert_eq!(roster.apply(&event), roster_event);
    assert!(!roster.apply(&event));
    let _ = roster.members(&event.grid);
});
