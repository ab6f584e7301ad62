//! The decoders never panic, whatever the bytes: a deterministic stand-in for the cargo-fuzz
//! targets in `fuzz/`, so that the property is checked on every `cargo test`.
//!
//! Thousands of pseudo-random inputs (xorshift, fixed seed) and mutations of the golden
//! vectors go through `decode_event` and `decode_state`. Whatever decodes must also survive
//! what the rest of the system does with it: re-encode and decode to an equal value, fold into
//! a state, render the incident JSON.

use gridsync_core::codec;
use gridsync_core::{Event, IncidentState};

mod golden;

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

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        if self.below(3) == 0 {
            INTERESTING[self.below(INTERESTING.len())]
        } else {
            self.next() as u8
        }
    }
}

/// One random edit of `bytes`.
fn mutate(bytes: &mut Vec<u8>, rng: &mut XorShift) {
    let len = bytes.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            bytes[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            bytes[i] = rng.byte();
        }
        2 => {
            let i = rng.below(len + 1);
            let b = rng.byte();
            bytes.insert(i, b);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(16));
            bytes.drain(i..i + n);
        }
        4 => {
            let keep = rng.below(len + 1);
            bytes.truncate(keep);
        }
        5 if len > 0 => {
            // A run of one byte: e.g. a length prefix turned into 0xfd 0xff 0xff ...
            let i = rng.below(len);
            let b = rng.byte();
            for x in bytes.iter_mut().skip(i).take(1 + rng.below(9)) {
                *x = b;
            }
        }
        6 if len > 1 => {
            // Duplicate a slice in place.
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(40));
            let slice = bytes[i..i + n].to_vec();
            let at = rng.below(len + 1);
            bytes.splice(at..at, slice);
        }
        _ => {
            // Splice the tail of another vector on.
            let other = SEEDS[rng.below(SEEDS.len())];
            let from = rng.below(other.len());
            let at = rng.below(len + 1);
            bytes.truncate(at);
            bytes.extend_from_slice(&other[from..]);
        }
    }
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
        assert!(state.apply(&event));
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
    let mut rng = XorShift(0x6772_6964_7379_6e63); // "gridsync"
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
    let mut rng = XorShift(0x5eed_c0de_0bad_f00d);
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
