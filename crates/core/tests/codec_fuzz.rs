//! The decoders never panic, whatever the bytes: a deterministic stand-in for the cargo-fuzz
//! targets in `fuzz/`, so that the property is checked on every `cargo test`.
//!
//! Thousands of pseudo-random inputs (xorshift, fixed seed) and mutations of the golden
//! vectors go through `decode_event` and `decode_state`. Whatever decodes must also survive
//! what the rest of the system does with it: re-encode and decode to an equal value, fold into
//! a state (a roster event: into a roster), render the incident JSON.

use gridsync_core::codec;
use gridsync_core::{Event, IncidentState, Roster};

mod bytes;
mod golden;

use bytes::XorShift;

/// The golden vectors (events first: `SEEDS[0]` is an event).
static SEEDS: std::sync::LazyLock<Vec<&'static [u8]>> = std::sync::LazyLock::new(|| {
    golden::GOLDEN
        .iter()
        .filter(|(name, _)| name.ends_with(".bin"))
        .map(|(_, bytes)| *bytes)
        .collect()
});

/// Bytes a varint-based format is touchy about.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x02, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];

/// One random edit of `bytes` (see [`bytes::mutate`]); this format's own edit duplicates a
/// slice in place.
fn mutate(bytes: &mut Vec<u8>, rng: &mut XorShift) {
    bytes::mutate(bytes, rng, &SEEDS, |bytes, rng| {
        let len = bytes.len();
        if len <= 1 {
            return false;
        }
        let i = rng.below(len);
        let n = 1 + rng.below((len - i).min(40));
        let slice = bytes[i..i + n].to_vec();
        let at = rng.below(len + 1);
        bytes.splice(at..at, slice);
        true
    });
}

/// Runs `bytes` through both decoders and everything downstream of a successful decode.
/// Returns how many of the two decoded.
fn exercise(bytes: &[u8], scratch: &mut IncidentState) -> usize {
    let mut ok = 0;
    if let Ok(event) = codec::decode_event(bytes) {
        ok += 1;
        let again = codec::encode_event(&event).expect("a decoded event re-encodes");
        assert_eq!(codec::decode_event(&again).as_ref(), Ok(&event));
        let mut state = IncidentState::new(event.incident);
        // A roster event is folded into a roster, never into an incident.
        assert_eq!(state.apply(&event), !event.payload.is_roster());
        let mut roster = Roster::new();
        assert_eq!(roster.apply(&event), event.payload.is_roster());
        let _ = roster.members(&event.grid);
        let _ = serde_json::to_string(&state.view()).expect("view serialises");
        scratch.apply(&Event {
            incident: scratch.id,
            ..event
        });
    }
    if let Ok(state) = codec::decode_state(bytes) {
        ok += 1;
        let again = codec::encode_state(&state).expect("a decoded state re-encodes");
        assert_eq!(codec::decode_state(&again).as_ref(), Ok(&state));
        // A decoded state is a cache nothing vouches for: rendering it and folding more
        // events into it must not panic either.
        let _ = serde_json::to_string(&state.view()).expect("view serialises");
        let mut state = state;
        if let Ok(e) = codec::decode_event(SEEDS[0]) {
            state.apply(&Event {
                incident: state.id,
                ..e
            });
            let _ = state.view();
            let _ = state.photo_adds(
                &state
                    .photos
                    .values()
                    .next()
                    .map_or(gridsync_core::BlobHash([0; 32]), |p| p.meta.hash),
            );
        }
    }
    ok
}

#[test]
fn random_bytes_never_panic_the_decoders() {
    let mut rng = XorShift::new(0x6772_6964_7379_6e63, INTERESTING); // "gridsync"
    let mut scratch = IncidentState::new(
        codec::decode_event(SEEDS[0])
            .expect("golden event decodes")
            .incident,
    );
    for i in 0..4_000 {
        let len = rng.below(if i % 10 == 0 { 2_000 } else { 200 });
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        if !bytes.is_empty() && rng.below(4) != 0 {
            bytes[0] = codec::FORMAT_V1;
        }
        exercise(&bytes, &mut scratch);
    }
}

#[test]
fn mutated_golden_vectors_never_panic_the_decoders() {
    let mut rng = XorShift::new(0x5eed_c0de_0bad_f00d, INTERESTING);
    let mut scratch = IncidentState::new(
        codec::decode_event(SEEDS[0])
            .expect("golden event decodes")
            .incident,
    );
    let mut decoded = 0;
    let mut total = 0;
    for i in 0..12_000 {
        let mut bytes = SEEDS[i % SEEDS.len()].to_vec();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut bytes, &mut rng);
        }
        decoded += exercise(&bytes, &mut scratch);
        total += 1;
    }
    // The mutations are not all fatal: some still decode and go downstream.
    assert!(decoded > 100, "only {decoded} of {total} mutants decoded");
    assert!(scratch.events.len() > 10);
}

#[test]
fn every_golden_vector_decodes_with_exactly_one_decoder() {
    let mut scratch = IncidentState::new(
        codec::decode_event(SEEDS[0])
            .expect("golden event decodes")
            .incident,
    );
    for seed in SEEDS.iter() {
        assert_eq!(exercise(seed, &mut scratch), 1);
    }
}
