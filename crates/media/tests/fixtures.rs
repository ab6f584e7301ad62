//! The photo pipeline against the real sample photos in `fixtures/photos/` (see its README.md)
//! and against small synthetic images whose expected output is known exactly.

use gridsync_core::BlobHash;
use gridsync_media::{probe, process, Limits, MediaError, ProcessedPhoto, SourceFormat};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, GenericImageView, RgbImage};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/photos/",
            $name
        ))
    };
}

fn run(bytes: &[u8]) -> ProcessedPhoto {
    process(bytes, &Limits::default()).expect("the pipeline accepts this file")
}

/// The marker codes of a JPEG's segments, in order, up to the first SOS.
fn jpeg_markers(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..2], [0xFF, 0xD8], "starts with SOI");
    let mut markers = Vec::new();
    let mut pos = 2;
    while pos + 4 <= bytes.len() {
        assert_eq!(bytes[pos], 0xFF, "segment at {pos}");
        let marker = bytes[pos + 1];
        markers.push(marker);
        if marker == 0xDA {
            break;
        }
        pos += 2 + usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
    }
    markers
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything every stored blob must satisfy: a decodable JPEG of the stated size whose hash is
/// its content address, with no metadata segments at all (only APP0/JFIF, tables, frame, scan).
fn assert_clean_blob(blob: &gridsync_media::Encoded, forbidden: &[&[u8]]) {
    assert_eq!(blob.hash, BlobHash::of(&blob.bytes));
    assert_eq!(blob.bytes[..3], [0xFF, 0xD8, 0xFF]);
    assert_eq!(blob.bytes[blob.bytes.len() - 2..], [0xFF, 0xD9]);
    let decoded = image::load_from_memory(&blob.bytes).expect("output decodes");
    assert_eq!(decoded.dimensions(), (blob.width, blob.height));
    for marker in jpeg_markers(&blob.bytes) {
        assert!(
            matches!(marker, 0xE0 | 0xDB | 0xC4 | 0xC0 | 0xDA | 0xDD),
            "unexpected segment FF{marker:02X} in stored bytes"
        );
    }
    let scans = blob.bytes.windows(2).filter(|w| *w == [0xFF, 0xDA]).count();
    assert_eq!(
        scans, 1,
        "one interleaved scan (0xFF 0xDA only occurs as SOS)"
    );
    assert!(!contains(&blob.bytes, b"Exif"), "Exif in stored bytes");
    assert!(!contains(&blob.bytes, b"ICC_PROFILE"));
    for needle in forbidden {
        assert!(
            !contains(&blob.bytes, needle),
            "{:?} in stored bytes",
            String::from_utf8_lossy(needle)
        );
    }
}

/// Strings from the fixtures' EXIF that must not survive.
const EXIF_STRINGS: &[&[u8]] = &[b"PatrolPDA", b"PDA-1", b"grid assistant", b"2026:0"];

fn utc_ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("valid time")
        .timestamp_millis()
}

#[test]
fn twelve_megapixel_rot6_becomes_an_upright_1200x1600_portrait() {
    let input = fixture!("garbage-12mp-rot6.jpg");
    assert!(
        contains(input, b"Exif") && contains(input, b"PatrolPDA"),
        "fixture has EXIF"
    );
    let out = run(input);
    assert_eq!(out.source, SourceFormat::Jpeg);
    assert_eq!((out.source_width, out.source_height), (4032, 3024));
    assert_eq!(out.exif.orientation, 6);
    assert_eq!((out.photo.width, out.photo.height), (1200, 1600));
    assert_eq!((out.thumb.width, out.thumb.height), (240, 320));
    let gps = out.exif.gps.expect("GPS fact");
    assert!((gps.lat - 39.8927).abs() < 1e-4, "{gps:?}");
    assert!((gps.lon - 116.4284).abs() < 1e-4, "{gps:?}");
    assert_eq!(
        out.exif.captured_at_ms,
        Some(utc_ms("2026-03-02T11:00:00Z"))
    );
    assert_clean_blob(&out.photo, EXIF_STRINGS);
    assert_clean_blob(&out.thumb, EXIF_STRINGS);
    assert_ne!(out.photo.hash, out.thumb.hash);
}

/// Decodes `jpeg` with both the `image` crate (zune-jpeg) and jpeg-decoder (libjpeg-like) and
/// checks that they agree: the stored bytes must not rely on one decoder's leniency, nor trip
/// over one decoder's bug (zune-jpeg 0.5.15 mis-decodes one-scan-per-component 4:2:0 files).
fn assert_decoders_agree(jpeg: &[u8]) {
    let zune = image::load_from_memory(jpeg)
        .expect("image decodes")
        .to_rgb8();
    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
    let pixels = decoder.decode().expect("jpeg-decoder decodes");
    let info = decoder.info().expect("info");
    assert_eq!(
        (u32::from(info.width), u32::from(info.height)),
        zune.dimensions()
    );
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
    let far = zune
        .as_raw()
        .iter()
        .zip(&pixels)
        .filter(|(a, b)| a.abs_diff(**b) > 16)
        .count();
    // Upsampling chroma differently may move a sample on a sharp colour edge, no more.
    assert!(
        far * 1000 < pixels.len(),
        "{far} of {} samples disagree",
        pixels.len()
    );
}

#[test]
fn stored_jpegs_decode_alike_in_both_decoders() {
    for input in [
        &fixture!("garbage-12mp-rot6.jpg")[..],
        &fixture!("cat-2400x1600-rot8.jpg")[..],
        &fixture!("plain-512.png")[..],
    ] {
        let out = run(input);
        assert_decoders_agree(&out.photo.bytes);
        assert_decoders_agree(&out.thumb.bytes);
    }
}

#[test]
fn a_stored_photo_can_be_processed_again() {
    // The stored bytes (4:2:0, one scan per component) go through the whole pipeline again,
    // also through the decoder's DCT scaling.
    let first = run(fixture!("garbage-12mp-rot6.jpg"));
    let again = run(&first.photo.bytes);
    assert_eq!((again.photo.width, again.photo.height), (1200, 1600));
    assert_eq!(again.exif, gridsync_media::ExifFacts::default());
    let limits = Limits {
        max_side: 400,
        ..Limits::default()
    };
    let small = process(&first.photo.bytes, &limits).expect("process");
    assert_eq!((small.photo.width, small.photo.height), (300, 400));
    assert_clean_blob(&small.photo, &[]);
}

#[test]
fn processing_is_deterministic() {
    let a = run(fixture!("street-640x427-gps.jpg"));
    let b = run(fixture!("street-640x427-gps.jpg"));
    assert_eq!(a.photo.hash, b.photo.hash);
    assert_eq!(a.thumb.hash, b.thumb.hash);
}

#[test]
fn cat_rot8_becomes_portrait() {
    let out = run(fixture!("cat-2400x1600-rot8.jpg"));
    assert_eq!((out.source_width, out.source_height), (2400, 1600));
    assert_eq!(out.exif.orientation, 8);
    assert_eq!((out.photo.width, out.photo.height), (1067, 1600));
    assert_eq!((out.thumb.width, out.thumb.height), (213, 320));
    let gps = out.exif.gps.expect("GPS fact");
    assert!(
        (gps.lat - 39.94).abs() < 1e-6 && (gps.lon - 116.41).abs() < 1e-6,
        "{gps:?}"
    );
    assert_eq!(out.exif.captured_at_ms, None);
    assert_clean_blob(&out.photo, EXIF_STRINGS);
    assert_clean_blob(&out.thumb, EXIF_STRINGS);
}

#[test]
fn small_street_photo_is_not_upscaled_and_loses_artist_and_gps() {
    let input = fixture!("street-640x427-gps.jpg");
    assert!(
        contains(input, b"grid assistant 0427"),
        "fixture has the Artist tag"
    );
    let out = run(input);
    assert_eq!(out.exif.orientation, 1);
    assert_eq!((out.photo.width, out.photo.height), (640, 427));
    assert_eq!((out.thumb.width, out.thumb.height), (320, 214));
    let gps = out.exif.gps.expect("GPS fact");
    assert!(
        (gps.lat - 39.9087).abs() < 1e-4 && (gps.lon - 116.4357).abs() < 1e-4,
        "{gps:?}"
    );
    assert_eq!(
        out.exif.captured_at_ms,
        Some(utc_ms("2026-02-15T09:30:00Z"))
    );
    assert_clean_blob(&out.photo, EXIF_STRINGS);
    assert_clean_blob(&out.thumb, EXIF_STRINGS);
}

#[test]
fn png_is_stored_as_jpeg() {
    let out = run(fixture!("plain-512.png"));
    assert_eq!(out.source, SourceFormat::Png);
    assert_eq!((out.source_width, out.source_height), (512, 512));
    assert_eq!((out.photo.width, out.photo.height), (512, 512));
    assert_eq!((out.thumb.width, out.thumb.height), (320, 320));
    assert_eq!(out.exif, gridsync_media::ExifFacts::default());
    assert_clean_blob(&out.photo, &[]);
    assert_clean_blob(&out.thumb, &[]);
    assert!(!contains(&out.photo.bytes, b"IHDR"));
}

#[test]
fn truncated_jpeg_is_refused() {
    let input = fixture!("truncated.jpg");
    assert_eq!(input.len(), 60_000);
    // The header is intact, so probe (header only) accepts it...
    assert_eq!(
        probe(input, &Limits::default()),
        Ok((SourceFormat::Jpeg, 4032, 3024))
    );
    // ...but the pipeline must not turn it into a half-grey photo.
    assert_eq!(
        process(input, &Limits::default()),
        Err(MediaError::Truncated)
    );
}

#[test]
fn truncated_jpeg_scan_is_also_refused_by_the_decoder_itself() {
    // Second line of defence behind the EOI check in `process`: jpeg-decoder reports the early
    // end of the entropy-coded data instead of concealing it. (The image crate's own JPEG
    // decoder, zune-jpeg, does conceal it: it returns a 4032x3024 image, grey below the cut.)
    let input = fixture!("truncated.jpg");
    let mut decoder = jpeg_decoder::Decoder::new(&input[..]);
    assert!(matches!(
        decoder.decode(),
        Err(jpeg_decoder::Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof
    ));
}

#[test]
fn truncated_png_is_refused() {
    let input = fixture!("plain-512.png");
    let r = process(&input[..input.len() / 2], &Limits::default());
    assert_eq!(r, Err(MediaError::Truncated));
}

#[test]
fn text_file_named_jpg_is_refused() {
    let input = fixture!("not-an-image.jpg");
    assert_eq!(
        process(input, &Limits::default()),
        Err(MediaError::UnknownFormat)
    );
    assert_eq!(
        probe(input, &Limits::default()),
        Err(MediaError::UnknownFormat)
    );
    assert_eq!(
        MediaError::UnknownFormat.to_string(),
        "not a JPEG or PNG image"
    );
}

#[test]
fn png_bomb_is_refused_from_the_header() {
    let input = fixture!("bomb-40000x40000.png");
    assert!(input.len() < 200_000);
    let expected = MediaError::TooManyPixels {
        width: 40_000,
        height: 40_000,
        limit: 64_000_000,
    };
    assert_eq!(probe(input, &Limits::default()), Err(expected.clone()));
    assert_eq!(process(input, &Limits::default()), Err(expected));
}

#[test]
fn oversized_file_is_refused_before_parsing() {
    let input = fixture!("garbage-12mp-rot6.jpg");
    let limits = Limits {
        max_bytes: 1_000_000,
        ..Limits::default()
    };
    let expected = MediaError::TooLarge {
        bytes: input.len() as u64,
        limit: 1_000_000,
    };
    assert_eq!(process(input, &limits), Err(expected.clone()));
    assert_eq!(probe(input, &limits), Err(expected));
    // Same for junk: size is checked first.
    assert!(matches!(
        process(&vec![0u8; 1_000_001], &limits),
        Err(MediaError::TooLarge { .. })
    ));
}

#[test]
fn too_many_pixels_for_a_real_jpeg() {
    let limits = Limits {
        max_pixels: 12_000_000,
        ..Limits::default()
    };
    let r = process(fixture!("garbage-12mp-rot6.jpg"), &limits);
    assert_eq!(
        r,
        Err(MediaError::TooManyPixels {
            width: 4032,
            height: 3024,
            limit: 12_000_000
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Orientation, checked on a synthetic picture whose marked corners must end up in known places.

const W: u32 = 64;
const H: u32 = 32;
const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];

/// A 64x32 grey JPEG with a red 16x16 block in the top-left corner and a green one in the
/// top-right corner.
fn marked_jpeg() -> Vec<u8> {
    let img = RgbImage::from_fn(W, H, |x, y| {
        image::Rgb(match (x, y) {
            (0..16, 0..16) => RED,
            (48.., 0..16) => GREEN,
            _ => [60, 60, 60],
        })
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 95)
        .encode(img.as_raw(), W, H, ExtendedColorType::Rgb8)
        .expect("encode");
    out
}

/// Inserts, right after SOI, an APP1 segment with a minimal big-endian EXIF block whose IFD0
/// holds only Orientation = `orientation` (and an Artist tag, to check it is stripped).
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let artist = b"Officer Test Person\0";
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2A\0\0\0\x08"); // big-endian TIFF, IFD0 at offset 8
    tiff.extend_from_slice(&2u16.to_be_bytes()); // two entries
                                                 // 0x0112 Orientation, SHORT, count 1, value in the first two bytes of the value field.
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    // 0x013B Artist, ASCII, count, offset of the string (right after this IFD).
    let string_at = 8 + 2 + 2 * 12 + 4;
    tiff.extend_from_slice(&[0x01, 0x3B, 0x00, 0x02]);
    tiff.extend_from_slice(&(artist.len() as u32).to_be_bytes());
    tiff.extend_from_slice(&(string_at as u32).to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff.extend_from_slice(artist);

    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(&tiff);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corner {
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
}

/// Which corner of `img` shows `colour` (sampled in the middle of each corner's 16x16 block).
fn corner_of(img: &RgbImage, colour: [u8; 3]) -> Corner {
    let (w, h) = img.dimensions();
    let corners = [
        (Corner::TopLeft, 8, 8),
        (Corner::TopRight, w - 9, 8),
        (Corner::BottomLeft, 8, h - 9),
        (Corner::BottomRight, w - 9, h - 9),
    ];
    let close = |p: [u8; 3]| p.iter().zip(colour).all(|(&a, b)| a.abs_diff(b) < 60);
    let found: Vec<Corner> = corners
        .iter()
        .filter(|(_, x, y)| close(img.get_pixel(*x, *y).0))
        .map(|(c, _, _)| *c)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{colour:?} in exactly one corner: {found:?}"
    );
    found[0]
}

#[test]
fn every_exif_orientation_puts_the_corners_where_it_should() {
    use Corner::*;
    // (orientation, upright size, where the red top-left block goes, where the green top-right
    // block goes). 6 = rotate 90 clockwise: the stored top row becomes the right column.
    let cases = [
        (1, (W, H), TopLeft, TopRight),
        (2, (W, H), TopRight, TopLeft),
        (3, (W, H), BottomRight, BottomLeft),
        (4, (W, H), BottomLeft, BottomRight),
        (5, (H, W), TopLeft, BottomLeft),
        (6, (H, W), TopRight, BottomRight),
        (7, (H, W), BottomRight, TopRight),
        (8, (H, W), BottomLeft, TopLeft),
    ];
    let plain = marked_jpeg();
    let img = image::load_from_memory(&plain).expect("decodes").to_rgb8();
    assert_eq!(
        (corner_of(&img, RED), corner_of(&img, GREEN)),
        (TopLeft, TopRight)
    );
    for (orientation, size, red, green) in cases {
        let input = with_orientation(&plain, orientation);
        let out = run(&input);
        assert_eq!(out.exif.orientation, orientation);
        assert_eq!(
            (out.photo.width, out.photo.height),
            size,
            "orientation {orientation}"
        );
        let img = image::load_from_memory(&out.photo.bytes)
            .expect("decodes")
            .to_rgb8();
        assert_eq!(
            (corner_of(&img, RED), corner_of(&img, GREEN)),
            (red, green),
            "orientation {orientation}"
        );
        assert_clean_blob(&out.photo, &[b"Officer Test Person"]);
        assert_clean_blob(&out.thumb, &[b"Officer Test Person"]);
    }
}

#[test]
fn orientation_survives_dct_scaling_and_resizing() {
    // Scale the marked picture up to 1024x512 so the pipeline has to DCT-scale and resize it
    // (max_side 200): the corners must still land where orientation 6 puts them.
    let img = image::load_from_memory(&marked_jpeg())
        .expect("decodes")
        .to_rgb8();
    let big = image::imageops::resize(&img, 1024, 512, image::imageops::FilterType::Nearest);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode(big.as_raw(), 1024, 512, ExtendedColorType::Rgb8)
        .expect("encode");
    let limits = Limits {
        max_side: 200,
        thumb_side: 64,
        ..Limits::default()
    };
    let out = process(&with_orientation(&jpeg, 6), &limits).expect("process");
    assert_eq!((out.photo.width, out.photo.height), (100, 200));
    assert_eq!((out.thumb.width, out.thumb.height), (32, 64));
    let photo = image::load_from_memory(&out.photo.bytes)
        .expect("decodes")
        .to_rgb8();
    assert_eq!(corner_of(&photo, RED), Corner::TopRight);
    assert_eq!(corner_of(&photo, GREEN), Corner::BottomRight);
}
