//! The conformance harness's own decoders (written from the spec, apart from gridsync-proto)
//! never panic: bytes go into its `FrameBuf` in arbitrary pieces, and every complete frame is
//! decoded as a message and as a blob header. Whatever decodes re-encodes to a body that
//! decodes to the same value.
#![no_main]

use gridsync_conformance::wire::{self, FrameBuf, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (seed, bytes) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    let mut buf = FrameBuf::new(if seed & 1 == 0 { MAX_FRAME } else { 1024 });
    let mut state = u32::from(seed) | 1;
    let mut rest = bytes;
    'feed: while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = 1 + (state as usize % rest.len());
        buf.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match buf.next_body() {
                Ok(Some(body)) => check(&body),
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    check(bytes);
});

fn check(body: &[u8]) {
    if let Ok(m) = wire::decode_msg(body) {
        let again = wire::body(m.name(), &m).expect("a decoded message re-encodes");
        assert_eq!(wire::decode_msg(&again).as_ref(), Ok(&m));
    }
    if let Ok(h) = wire::decode_blob_header(body) {
        let again = wire::body("BlobHeader", &h).expect("a decoded header re-encodes");
        assert_eq!(wire::decode_blob_header(&again).as_ref(), Ok(&h));
    }
}
