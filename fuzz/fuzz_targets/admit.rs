//! `Admission::admit`, the one gate every received event passes, never panics, and whatever it
//! admits holds what it was admitted for: every event decodes from its body, re-encodes to bytes
//! that decode to it, keeps the core rules, lies in the scope, is of the allowed origin and is
//! within the clock bound; the batch is whole and names its sender; admitting the decoded
//! events again (`admit_events`) gives the same batch. A refusal is one line.
//!
//! Only the public API (`Admission`, `Origins`, `admit`, `admit_events`, `Admitted`,
//! `AdmitError::code`) is used, so the target survives changes inside the admission function.
//!
//! Input: a 16-byte parameter header, then the batch as length-prefixed bodies
//! (`u16` little-endian length, then that many bytes; a short last body takes what is left).
//! The header picks the parameters, mostly *from the batch itself* (the first decodable event's
//! origin and a prefix of its grid, a `now` near its timestamp), so that fuzzing reaches the
//! admitted path and not only the refusals:
//!
//! | byte | meaning |
//! |------|---------|
//! | 0 | origins: `% 4` 0 Any, 1 Only(first origin), 2 Only(node `[byte 1; 32]`), 3 Only(`from`) |
//! | 1 | a node id byte (origins mode 2; `from` when byte 2 bit 7 is set) |
//! | 2 | scope: `% 8` 0..=3 the first grid's first 1..=4 segments, 4 `110101`, 5 `110101/002/014/03`, 6..=7 `999999/000`; bit 7 chooses `from` |
//! | 3 | `max_events` (255 means `usize::MAX`) |
//! | 4..8 | `max_drift_ms`, u32 LE |
//! | 8..16 | `now_ms`: i64 LE offset from the first event's wall time (or from 1.79e12 ms if none decodes) |
#![no_main]

use gridsync_core::{codec, hlc, NodeId, Scope};
use gridsync_proto::{Admission, Origins, MAX_EVENT_BYTES};
use libfuzzer_sys::fuzz_target;

const HEADER: usize = 16;

fuzz_target!(|data: &[u8]| {
    let mut header = [0u8; HEADER];
    let n = data.len().min(HEADER);
    header[..n].copy_from_slice(&data[..n]);
    let bodies = split(&data[n..]);

    let first = bodies.iter().find_map(|b| codec::decode_event(b).ok());
    let node = NodeId([header[1]; 32]);
    let from = match (&first, header[2] & 0x80) {
        (Some(e), 0) => e.origin,
        _ => node,
    };
    let origins = match (header[0] % 4, &first) {
        (0, _) => Origins::Any,
        (1, Some(e)) => Origins::Only(e.origin),
        (1, None) | (2, _) => Origins::Only(node),
        _ => Origins::Only(from),
    };
    let scope_text = match (header[2] % 8, &first) {
        (k @ 0..=3, Some(e)) => e
            .grid
            .as_str()
            .split('/')
            .take(usize::from(k) + 1)
            .collect::<Vec<_>>()
            .join("/"),
        (4, _) | (0..=3, None) => "110101".to_owned(),
        (5, _) => "110101/002/014/03".to_owned(),
        _ => "999999/000".to_owned(),
    };
    let scope: Scope = scope_text
        .parse()
        .expect("every scope the target builds parses");
    let max_events = match header[3] {
        255 => usize::MAX,
        m => usize::from(m),
    };
    let max_drift_ms = u64::from(u32::from_le_bytes(header[4..8].try_into().unwrap()));
    let offset = i64::from_le_bytes(header[8..16].try_into().unwrap());
    let base = first.as_ref().map_or(1_790_000_000_000, |e| e.hlc.wall_ms);
    let now_ms = base.saturating_add_signed(offset);

    let admission = Admission {
        from,
        scope: &scope,
        origins,
        max_events,
        max_drift_ms,
        // Unsigned events are admitted (as a migrating parent may), so random bodies reach
        // every check after the signature; a signature that is there is still verified.
        accept_unsigned_before: Some(u64::MAX),
        // A device's batch (no operator decision) whenever its origins are its own.
        authority: match origins {
            Origins::Only(_) => gridsync_proto::Authority::Device,
            Origins::Any => gridsync_proto::Authority::Unchecked,
        },
    };
    match admission.admit(&bodies, now_ms) {
        Ok(admitted) => {
            assert_eq!(admitted.from(), &from);
            assert_eq!(admitted.len(), bodies.len(), "admitted whole");
            assert_eq!(admitted.is_empty(), bodies.is_empty());
            assert!(admitted.len() <= max_events);
            for (e, body) in admitted.events().iter().zip(&bodies) {
                assert!(body.len() <= MAX_EVENT_BYTES);
                assert_eq!(
                    codec::decode_event(body).as_ref(),
                    Ok(e),
                    "the body's event"
                );
                let again = codec::encode_event(e).expect("an admitted event re-encodes");
                assert_eq!(codec::decode_event(&again).as_ref(), Ok(e));
                assert_eq!(gridsync_core::check_rules(e), Ok(()));
                assert!(scope.contains(&e.grid), "{} outside {scope}", e.grid);
                if let Origins::Only(own) = origins {
                    assert_eq!(e.origin, own, "not the sender's own");
                    assert!(!gridsync_core::is_decision(&e.payload), "a device's decision");
                }
                assert!(hlc::check_ahead(e.hlc, now_ms, max_drift_ms).is_ok());
            }
            let again = admission
                .admit_events(admitted.events(), now_ms)
                .expect("admitted events are admitted again");
            assert_eq!(again, admitted);
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                !text.is_empty() && !text.contains('\n'),
                "one line: {text:?}"
            );
            let _ = e.code();
        }
    }
});

/// The batch: `u16` LE length-prefixed bodies; a short last body takes the rest.
fn split(mut rest: &[u8]) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        let take = len.min(body.len());
        bodies.push(body[..take].to_vec());
        rest = &body[take..];
    }
    bodies
}
