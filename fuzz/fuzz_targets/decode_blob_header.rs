//! The blob stream header decoder never panics. The input is read the way a relay reads a
//! blob stream: a `FrameReader` limited to 1024 bytes yields the header frame, the rest is blob
//! bytes. Whatever decodes re-encodes to a frame that decodes to it.
#![no_main]

use gridsync_proto::frame::{self, decode_blob_header};
use gridsync_proto::FrameReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut reader = FrameReader::new(1024);
    reader.push(data);
    if let Ok(Some(body)) = reader.next_body() {
        check(&body);
        let _ = reader.take_rest();
    }
    let _ = reader.finish();
});

fn check(body: &[u8]) {
    let Ok(header) = decode_blob_header(body) else {
        return;
    };
    let again = frame::encode_value("blob header", &header).expect("a decoded header re-encodes");
    assert_eq!(decode_blob_header(&again[4..]), Ok(header));
}
