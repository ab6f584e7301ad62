//! The photo pipeline's header parsers, which run before any pixel is decoded, never panic:
//! `gridsync_media::probe` (format sniffing, the JPEG marker walk to the frame header, the PNG
//! IHDR) with the default and small limits, and `ExifFacts::from_tiff` (the EXIF/TIFF reader
//! for GPS, capture time and orientation) on the same bytes. `probe`'s pixel limit is exact,
//! and the EXIF facts are in range.
#![no_main]

use gridsync_media::{probe, ExifFacts, Limits, MediaError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        max_pixels: 4096,
        max_bytes: 4096,
        ..Limits::default()
    };
    let _ = probe(data, &small);
    if let Ok((_, w, h)) = probe(data, &Limits::default()) {
        let pixels = u64::from(w) * u64::from(h);
        assert!(w >= 1 && h >= 1 && pixels <= Limits::default().max_pixels);
        let tight = Limits {
            max_pixels: pixels - 1,
            ..Limits::default()
        };
        assert_eq!(
            probe(data, &tight),
            Err(MediaError::TooManyPixels {
                width: w,
                height: h,
                limit: pixels - 1
            })
        );
    }

    let facts = ExifFacts::from_tiff(data);
    assert!((1..=8).contains(&facts.orientation));
    if let Some(gps) = facts.gps {
        assert!((-90.0..=90.0).contains(&gps.lat), "{gps:?}");
        assert!((-180.0..=180.0).contains(&gps.lon), "{gps:?}");
    }
});
