//! `gridsync_media::process`, the photo pipeline, never panics on any bytes, with the default
//! limits and with small ones; and whatever it produces is what a parent stores: the photo passes
//! `check_stored(Photo)` and the thumbnail `check_stored(Thumb)` at the sizes `process` reports,
//! within the limits' sides, hashed as `BlobHash::of` the bytes, and `probe` agrees with the
//! source format and size `process` read.
#![no_main]

use gridsync_core::BlobHash;
use gridsync_media::{check_stored, probe, process, Encoded, Limits, StoredKind};
use libfuzzer_sys::fuzz_target;

/// Small limits: a cheap decode, scaling and a 4:4:4 encode on every accepted input.
const SMALL: Limits = Limits {
    max_pixels: 1 << 20,
    max_bytes: 1 << 20,
    max_side: 48,
    thumb_side: 16,
    quality: 90,
};

fuzz_target!(|data: &[u8]| {
    run(data, &SMALL);
    run(data, &Limits::default());
});

fn run(data: &[u8], limits: &Limits) {
    let Ok(out) = process(data, limits) else {
        return;
    };
    assert_eq!(
        probe(data, limits),
        Ok((out.source, out.source_width, out.source_height)),
        "probe agrees with process"
    );
    check(StoredKind::Photo, &out.photo, limits.max_side);
    check(StoredKind::Thumb, &out.thumb, limits.thumb_side);
    assert!(out.thumb.width <= out.photo.width && out.thumb.height <= out.photo.height);
    assert!((1..=8).contains(&out.exif.orientation));
}

fn check(kind: StoredKind, blob: &Encoded, side: u32) {
    assert!(blob.width >= 1 && blob.height >= 1);
    assert!(blob.width.max(blob.height) <= side, "{kind:?} over {side}");
    assert_eq!(blob.hash, BlobHash::of(&blob.bytes));
    let facts = check_stored(kind, &blob.bytes)
        .unwrap_or_else(|e| panic!("the pipeline's {kind:?} fails check_stored: {e}"));
    assert_eq!((facts.width, facts.height), (blob.width, blob.height));
}
