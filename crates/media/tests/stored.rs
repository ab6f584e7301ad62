//! `check_stored`, the parent's check of a photo or thumbnail blob, against the real sample
//! photos: everything the pipeline stores passes, every hostile file fails with one line.

use std::time::Instant;

use gridsync_media::{
    check_stored, process, Limits, MediaError, StoredFacts, StoredKind, MAX_SIDE, THUMB_SIDE,
};

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            &include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/photos/",
                $name
            ))[..],
        )
    };
}

/// The sample photos the pipeline accepts.
fn accepted() -> [(&'static str, &'static [u8]); 4] {
    [
        fixture!("garbage-12mp-rot6.jpg"),
        fixture!("cat-2400x1600-rot8.jpg"),
        fixture!("street-640x427-gps.jpg"),
        fixture!("plain-512.png"),
    ]
}

/// The marker codes of a JPEG's segments from SOI to EOI, skipping entropy-coded data.
fn markers(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 2;
    while pos + 1 < bytes.len() {
        assert_eq!(bytes[pos], 0xFF, "segment at {pos}");
        let marker = bytes[pos + 1];
        out.push(marker);
        if marker == 0xD9 {
            break;
        }
        pos += 2 + usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        if marker == 0xDA {
            while bytes[pos] != 0xFF || matches!(bytes[pos + 1], 0x00 | 0xD0..=0xD7) {
                pos += 1;
            }
        }
    }
    out
}

fn refusal(kind: StoredKind, bytes: &[u8]) -> MediaError {
    let e = check_stored(kind, bytes).expect_err("refused");
    let text = e.to_string();
    assert!(
        !text.contains('\n') && !text.is_empty(),
        "one line: {text:?}"
    );
    eprintln!("refused as a {kind:?}: {text}");
    e
}

#[test]
fn the_constants_are_the_default_limits() {
    let l = Limits::default();
    assert_eq!((l.max_side, l.thumb_side), (MAX_SIDE, THUMB_SIDE));
    assert_eq!(
        (StoredKind::Photo.max_side(), StoredKind::Thumb.max_side()),
        (1600, 320)
    );
}

#[test]
fn everything_the_pipeline_stores_passes() {
    for (name, input) in accepted() {
        for quality in [1, 80, 89, 90, 100] {
            let limits = Limits {
                quality,
                ..Limits::default()
            };
            let out = process(input, &limits).expect("processed");
            for (kind, blob) in [
                (StoredKind::Photo, &out.photo),
                (StoredKind::Thumb, &out.thumb),
            ] {
                assert_eq!(
                    check_stored(kind, &blob.bytes),
                    Ok(StoredFacts {
                        width: blob.width,
                        height: blob.height
                    }),
                    "{name} at quality {quality}, {kind:?}"
                );
                // Exactly what jpeg-encoder writes: SOI, JFIF APP0, the frame, the two
                // quantization tables, the four standard Huffman tables, one scan, EOI.
                assert_eq!(
                    markers(&blob.bytes),
                    [0xE0, 0xC0, 0xDB, 0xDB, 0xC4, 0xC4, 0xC4, 0xC4, 0xDA, 0xD9],
                    "{name} {kind:?}"
                );
            }
            // A thumbnail is also a valid (small) photo.
            assert!(check_stored(StoredKind::Photo, &out.thumb.bytes).is_ok());
        }
    }
}

#[test]
fn greyscale_output_passes_too() {
    let (_, input) = fixture!("plain-512.png");
    let grey = image::load_from_memory(input).expect("png").to_luma8();
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        grey.as_raw(),
        grey.width(),
        grey.height(),
        image::ExtendedColorType::L8,
    )
    .expect("png");
    let out = process(&png, &Limits::default()).expect("processed");
    assert_eq!(
        check_stored(StoredKind::Photo, &out.photo.bytes),
        Ok(StoredFacts {
            width: 512,
            height: 512
        })
    );
    assert!(check_stored(StoredKind::Thumb, &out.thumb.bytes).is_ok());
}

#[test]
fn every_hostile_file_fails_with_one_line() {
    let (_, text) = fixture!("not-an-image.jpg");
    let (_, truncated) = fixture!("truncated.jpg");
    let (_, png) = fixture!("plain-512.png");
    let (_, bomb) = fixture!("bomb-40000x40000.png");
    let (_, cat) = fixture!("cat-2400x1600-rot8.jpg");
    let (_, street) = fixture!("street-640x427-gps.jpg");
    for kind in [StoredKind::Photo, StoredKind::Thumb] {
        assert_eq!(
            refusal(kind, text),
            MediaError::NotStored("not a JPEG image".into())
        );
        assert_eq!(
            refusal(kind, &[]),
            MediaError::NotStored("empty (0 bytes)".into())
        );
        for png in [png, bomb] {
            assert_eq!(
                refusal(kind, png),
                MediaError::NotStored(
                    "a PNG image; photos and thumbnails are stored as JPEG".into()
                )
            );
        }
        // Camera JPEGs (and the cut-off one) carry EXIF right after their JFIF header.
        for jpeg in [truncated, cat, street] {
            assert_eq!(
                refusal(kind, jpeg),
                MediaError::NotStored(
                    "an APP1 segment (EXIF or XMP metadata) at byte 20; stored photos carry no metadata"
                        .into()
                )
            );
        }
    }
}

#[test]
fn a_clean_jpeg_over_the_size_is_refused() {
    // The pipeline's own output, but with the longest side at 2400 px.
    let (_, cat) = fixture!("cat-2400x1600-rot8.jpg");
    let limits = Limits {
        max_side: 2400,
        ..Limits::default()
    };
    let out = process(cat, &limits).expect("processed");
    assert_eq!((out.photo.width, out.photo.height), (1600, 2400));
    assert_eq!(
        refusal(StoredKind::Photo, &out.photo.bytes),
        MediaError::NotStored(
            "1600x2400 pixels, over the 1600 px longest side of a stored photo".into()
        )
    );
    // And a photo is not a thumbnail.
    let out = process(cat, &Limits::default()).expect("processed");
    assert_eq!(
        refusal(StoredKind::Thumb, &out.photo.bytes),
        MediaError::NotStored(
            "1067x1600 pixels, over the 320 px longest side of a stored thumbnail".into()
        )
    );
}

#[test]
fn a_cut_off_stored_photo_is_refused() {
    let (_, input) = fixture!("street-640x427-gps.jpg");
    let out = process(input, &Limits::default()).expect("processed");
    let bytes = &out.photo.bytes;
    for cut in [1, 2, 3, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            check_stored(StoredKind::Photo, &bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    assert_eq!(
        refusal(StoredKind::Photo, &bytes[..bytes.len() / 2]),
        MediaError::Truncated
    );
}

/// Not a benchmark, a measurement for the record (run with `--nocapture`): the whole check
/// (structure walk and full decode) of the largest photo the pipeline stores.
#[test]
fn checking_a_full_size_photo_is_cheap() {
    let (_, input) = fixture!("garbage-12mp-rot6.jpg");
    let out = process(input, &Limits::default()).expect("processed");
    assert_eq!((out.photo.width, out.photo.height), (1200, 1600));
    let runs = 5;
    let start = Instant::now();
    for _ in 0..runs {
        check_stored(StoredKind::Photo, &out.photo.bytes).expect("passes");
    }
    let photo = start.elapsed() / runs;
    let start = Instant::now();
    for _ in 0..runs {
        check_stored(StoredKind::Thumb, &out.thumb.bytes).expect("passes");
    }
    let thumb = start.elapsed() / runs;
    eprintln!(
        "check_stored: {} x {} photo of {} bytes in {photo:?}; {} x {} thumbnail of {} bytes in {thumb:?}",
        out.photo.width,
        out.photo.height,
        out.photo.bytes.len(),
        out.thumb.width,
        out.thumb.height,
        out.thumb.bytes.len()
    );
}
