//! The control-stream decoder never panics: bytes go into a `FrameReader` in arbitrary
//! pieces (sizes drawn from the input itself, so a crash replays), and every complete frame is
//! decoded as a `Message`. Whatever decodes must re-encode to a frame that decodes to it, and
//! the events an `Events` or `Down` carries go through the core event decoder.
#![no_main]

use gridsync_core::codec;
use gridsync_proto::frame::{self, decode_body};
use gridsync_proto::{FrameReader, Message, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the reader's limit and seed the split sizes.
    let (seed, bytes) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    let limit = if seed & 1 == 0 { MAX_FRAME } else { 1024 };
    let mut reader = FrameReader::new(limit);
    let mut state = u32::from(seed) | 1;
    let mut rest = bytes;
    'feed: while !rest.is_empty() {
        // xorshift32: a deterministic split of this input.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = 1 + (state as usize % rest.len());
        reader.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match reader.next_body() {
                Ok(Some(body)) => check(&body),
                Ok(None) => break,
                // A frame over the limit ends the session (TooLarge): stop reading.
                Err(_) => break 'feed,
            }
        }
    }
    let _ = reader.finish();
    let _ = reader.take_rest();
    // The input as one bare frame body, too.
    check(bytes);
});

fn check(body: &[u8]) {
    let Ok(message) = decode_body(body) else {
        return;
    };
    let again = frame::encode(&message).expect("a decoded message re-encodes");
    assert_eq!(decode_body(&again[4..]).as_ref(), Ok(&message));
    if let Message::Events { events, .. } | Message::Down { events, .. } = &message {
        for e in events {
            let _ = codec::decode_event(e);
        }
    }
}
