//! gridsync's photo pipeline: the bytes of a photograph in, the bytes to store out.
//!
//! A patrol handheld photographs an incident; before the photo is stored and synced it goes
//! through [`process`], which
//!
//! 1. decides the format from the bytes' magic (never from a file name) and accepts only JPEG
//!    and PNG;
//! 2. refuses, from the header alone and before any pixel is decoded, files over
//!    [`Limits::max_bytes`] and images declaring more than [`Limits::max_pixels`] pixels (so a
//!    small "decompression bomb" PNG cannot make it allocate gigabytes);
//! 3. refuses truncated files instead of storing a half-grey picture;
//! 4. applies the EXIF orientation (all eight values), so the stored pixels are upright;
//! 5. scales the photo so its longest side is at most [`Limits::max_side`] and makes a
//!    thumbnail at most [`Limits::thumb_side`] (Lanczos3; never enlarging);
//! 6. encodes both as baseline JPEG at [`Limits::quality`], **without any metadata**: no EXIF,
//!    no GPS, no camera make, no artist name, no ICC profile, no comments;
//! 7. returns the GPS position and capture time from the EXIF as [`ExifFacts`], for the report
//!    fields, and the SHA-256 [`BlobHash`] of each stored blob.
//!
//! The crate is pure: bytes in, bytes out, no file or network I/O, no printing. Hostile input
//! yields a [`MediaError`], never a panic.
//!
//! # Output format
//! Both the photo and the thumbnail are always JPEG, also for PNG input: the store, the sync
//! protocol and the viewers then handle exactly one format, and a photographic PNG is many
//! times larger than the same picture as JPEG. Transparent PNG pixels are composited onto
//! white. Greyscale input gives a greyscale JPEG. Colour profiles are dropped and the pixels
//! are taken to be sRGB.
//!
//! The encoder is the pure-Rust [`jpeg-encoder`](https://docs.rs/jpeg-encoder) crate (built
//! without its `simd` feature, so it is free of `unsafe` code). Each file is a baseline JFIF:
//! SOI, a JFIF APP0, the quantization and standard Huffman tables, the frame, **one
//! interleaved scan** and EOI. Colour is stored as YCbCr with **4:2:0 chroma subsampling**
//! (each chroma sample the mean of its 2x2 pixels) below quality 90 and 4:4:4 from 90 on, as
//! ImageMagick does; greyscale is one component. At the default quality 80 a 1200x1600 photo
//! comes out about as large as ImageMagick's `-quality 80` (214 KB against 211 KB for the
//! 12 MP fixture; 4:4:4 gave 276 KB). jpeg-encoder's optimized Huffman tables would save
//! another 2-4 % but make it write one scan per component, which zune-jpeg 0.5.15 (the
//! `image` crate's JPEG decoder) decodes to wrong colours, so they stay off. Without `simd`
//! jpeg-encoder is all-integer code that encodes the same pixels to the same bytes on every
//! CPU (its AVX2 path rounds differently, so the stored bytes and hash would then depend on
//! the machine); `simd` would save only about 5 ms a photo.
//!
//! # Speed and memory
//! For JPEG input the decoder scales in the DCT domain (jpeg-decoder's IDCT scaling by 1/2,
//! 1/4 or 1/8) to the smallest size still at least as large as the target, so a 4032x3024
//! photo is decoded straight to 2016x1512 and never exists at full size; the final resize,
//! orientation and thumbnail then work on that smaller image. Resampling keeps 8-bit
//! intermediates and frees each buffer as soon as the next one exists.
//!
//! Encoding (jpeg-encoder, 4:2:0, one MCU row of 16 pixel rows in memory at a time) takes
//! about 25 ms for a 1200x1600 photo, against about 70 ms with the `image` crate's encoder
//! that it replaced; the thumbnail is scaled and encoded on a second thread meanwhile.
//!
//! ```
//! # fn demo(bytes: &[u8]) -> Result<(), gridsync_media::MediaError> {
//! let out = gridsync_media::process(bytes, &gridsync_media::Limits::default())?;
//! assert!(out.photo.width.max(out.photo.height) <= 1600);
//! assert_eq!(out.photo.hash, gridsync_core::BlobHash::of(&out.photo.bytes));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod decode;
mod error;
mod facts;
mod header;
mod raster;
mod stored;

use std::fmt;

use gridsync_core::BlobHash;
use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder, SamplingFactor};

pub use error::MediaError;
pub use facts::{ExifFacts, GpsFix};
pub use stored::{check_stored, StoredFacts, StoredKind};

use raster::Raster;

/// The default [`Limits::max_side`]: a stored photo's longest side, in pixels. A parent refuses
/// a photo blob with a longer side ([`check_stored`]).
pub const MAX_SIDE: u32 = 1600;

/// The default [`Limits::thumb_side`]: a thumbnail's longest side, in pixels. A parent refuses a
/// thumbnail blob with a longer side ([`check_stored`]).
pub const THUMB_SIDE: u32 = 320;

/// Bounds and settings for [`process`] and [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest accepted declared image size, width * height. Default 64,000,000 (64 MP).
    pub max_pixels: u64,
    /// Largest accepted input, in bytes. Default 40,000,000.
    pub max_bytes: u64,
    /// The stored photo's longest side is at most this many pixels. Default 1600.
    pub max_side: u32,
    /// The thumbnail's longest side is at most this many pixels. Default 320.
    pub thumb_side: u32,
    /// JPEG quality for the photo and the thumbnail, 1..=100. Default 80.
    pub quality: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: 64_000_000,
            max_bytes: 40_000_000,
            max_side: MAX_SIDE,
            thumb_side: THUMB_SIDE,
            quality: 80,
        }
    }
}

impl Limits {
    /// Checks that the settings are usable: both side bounds at least 1 and quality in 1..=100.
    pub fn validate(&self) -> Result<(), MediaError> {
        if self.max_side == 0 || self.thumb_side == 0 {
            return Err(MediaError::InvalidLimits(
                "max_side and thumb_side must be at least 1".into(),
            ));
        }
        if !(1..=100).contains(&self.quality) {
            return Err(MediaError::InvalidLimits(format!(
                "quality must be 1..=100, not {}",
                self.quality
            )));
        }
        Ok(())
    }
}

/// The format of an accepted input, as told by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    /// JPEG (JFIF / EXIF), starting `FF D8 FF`.
    Jpeg,
    /// PNG, starting `89 50 4E 47 0D 0A 1A 0A`.
    Png,
}

impl SourceFormat {
    /// The media type, e.g. `image/jpeg`.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
        })
    }
}

/// One encoded blob ready to store: JPEG bytes with no metadata, their hash and pixel size.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The JPEG file, exactly as it is to be stored and sent.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes` (`BlobHash::of(&bytes)`), the blob's content address.
    pub hash: BlobHash,
    /// Width in pixels, upright.
    pub width: u32,
    /// Height in pixels, upright.
    pub height: u32,
}

impl Encoded {
    /// The media type of `bytes`; always `image/jpeg`.
    pub fn mime(&self) -> &'static str {
        "image/jpeg"
    }
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoded")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("hash", &self.hash)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// The result of [`process`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedPhoto {
    /// The photo to store: upright, longest side at most [`Limits::max_side`].
    pub photo: Encoded,
    /// The thumbnail: upright, longest side at most [`Limits::thumb_side`].
    pub thumb: Encoded,
    /// What the input was.
    pub source: SourceFormat,
    /// Input width as declared in the file, before orientation.
    pub source_width: u32,
    /// Input height as declared in the file, before orientation.
    pub source_height: u32,
    /// Facts read from the input's EXIF, which the stored bytes no longer carry.
    pub exif: ExifFacts,
}

fn check_size(bytes: &[u8], limits: &Limits) -> Result<(), MediaError> {
    let len = bytes.len() as u64;
    if len > limits.max_bytes {
        return Err(MediaError::TooLarge {
            bytes: len,
            limit: limits.max_bytes,
        });
    }
    Ok(())
}

fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<(), MediaError> {
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(MediaError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

/// Identifies the format and declared size from the header alone, enforcing
/// [`Limits::max_bytes`] and [`Limits::max_pixels`]. No pixel is decoded and nothing in
/// proportion to the image size is allocated, so this is cheap even for a decompression bomb.
///
/// Returns `(format, width, height)` as declared in the file (before EXIF orientation).
/// A file that passes `probe` can still fail [`process`] (e.g. corrupt or truncated data).
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<(SourceFormat, u32, u32), MediaError> {
    check_size(bytes, limits)?;
    let format = header::sniff(bytes)?;
    let (width, height) = match format {
        SourceFormat::Jpeg => {
            let h = header::jpeg_header(bytes, false)?;
            (u32::from(h.width), u32::from(h.height))
        }
        SourceFormat::Png => header::png_dimensions(bytes)?,
    };
    check_pixels(width, height, limits)?;
    Ok((format, width, height))
}

/// Runs the whole pipeline on one input file (see the [crate docs](crate)): checks, decodes,
/// orients, scales, strips and encodes the photo and its thumbnail, and extracts the EXIF facts.
///
/// # Errors
/// [`MediaError::TooLarge`] and [`MediaError::TooManyPixels`] before anything is decoded;
/// [`MediaError::UnknownFormat`] for anything but JPEG/PNG; [`MediaError::Truncated`] and
/// [`MediaError::Corrupt`] for damaged files; [`MediaError::Unsupported`] for valid but exotic
/// files (arithmetic-coded, 12-bit colour or hierarchical JPEG); [`MediaError::InvalidLimits`]
/// for unusable `limits`. A malformed EXIF block is not an error (its facts are just absent).
pub fn process(bytes: &[u8], limits: &Limits) -> Result<ProcessedPhoto, MediaError> {
    limits.validate()?;
    check_size(bytes, limits)?;
    let source = header::sniff(bytes)?;
    let (raster, source_width, source_height, exif) = match source {
        SourceFormat::Jpeg => {
            let header = header::jpeg_header(bytes, true)?;
            let (w, h) = (u32::from(header.width), u32::from(header.height));
            check_pixels(w, h, limits)?;
            // jpeg-decoder itself fails on a file cut off in the scan data, but checking for
            // the end-of-image marker first is cheap, explicit and also holds for any decoder
            // that conceals missing data (as libjpeg and zune-jpeg do).
            let scan_start = header
                .scan_start
                .ok_or_else(|| MediaError::Corrupt("no scan data".into()))?;
            if !header::jpeg_has_eoi(bytes, scan_start) {
                return Err(MediaError::Truncated);
            }
            let exif = header.exif.map(ExifFacts::from_tiff).unwrap_or_default();
            let want = stored_target(w, h, exif.orientation, limits.max_side);
            let raster = decode::jpeg(bytes, &header, want, limits)?;
            (raster, w, h, exif)
        }
        SourceFormat::Png => {
            let (w, h) = header::png_dimensions(bytes)?;
            check_pixels(w, h, limits)?;
            let (raster, exif) = decode::png(bytes, w, h, limits)?;
            let exif = exif.map(|t| ExifFacts::from_tiff(&t)).unwrap_or_default();
            (raster, w, h, exif)
        }
    };

    // Resize before rotating: the same result, but the rotation then moves fewer pixels.
    // From the declared size, not the decoded one, so that DCT-scaling's rounding never shows.
    let (tw, th) = stored_target(
        source_width,
        source_height,
        exif.orientation,
        limits.max_side,
    );
    let upright = raster::orient(raster::resize(raster, tw, th), exif.orientation);
    let (tw, th) = raster::fit(upright.width, upright.height, limits.thumb_side);
    // The thumbnail is scaled and encoded on a second thread while the photo is encoded.
    let (photo, thumb) = std::thread::scope(|s| {
        let thumb = s.spawn(|| encode(&raster::resized(&upright, tw, th), limits.quality));
        let photo = encode(&upright, limits.quality);
        let thumb = thumb
            .join()
            .unwrap_or_else(|_| Err(MediaError::Encode("the thumbnail encoder failed".into())));
        (photo, thumb)
    });
    let (photo, thumb) = (photo?, thumb?);
    Ok(ProcessedPhoto {
        photo,
        thumb,
        source,
        source_width,
        source_height,
        exif,
    })
}

/// The size, in stored (not yet oriented) pixels, that becomes at most `max_side` on its
/// longest side once oriented. (Orientations 5..=8 swap width and height.)
fn stored_target(width: u32, height: u32, orientation: u16, max_side: u32) -> (u32, u32) {
    let swap = (5..=8).contains(&orientation);
    let (w, h) = if swap {
        (height, width)
    } else {
        (width, height)
    };
    let (w, h) = raster::fit(w, h, max_side);
    if swap {
        (h, w)
    } else {
        (w, h)
    }
}

/// Below this quality colour is stored with 4:2:0 chroma subsampling, from it on with 4:4:4
/// (full-resolution chroma): ImageMagick's rule for non-JPEG input, and jpeg-encoder's default.
const FULL_CHROMA_FROM_QUALITY: u8 = 90;

fn encode(raster: &Raster, quality: u8) -> Result<Encoded, MediaError> {
    // A JPEG frame header holds 16-bit sizes; only a `Limits::max_side` over 65535 gets here.
    let (Ok(width), Ok(height)) = (u16::try_from(raster.width), u16::try_from(raster.height))
    else {
        return Err(MediaError::Encode(format!(
            "{}x{} pixels is beyond JPEG's 65535x65535",
            raster.width, raster.height
        )));
    };
    let colour = if raster.channels == 1 {
        ColorType::Luma
    } else {
        ColorType::Rgb
    };
    let quality = quality.clamp(1, 100);
    let mut bytes = Vec::with_capacity(raster.data.len() / 16);
    // jpeg-encoder writes SOI, a JFIF APP0, the tables, the frame, the scans and EOI; it adds
    // APPn (EXIF, ICC) segments only when explicitly given them, which we never do.
    let mut encoder = Encoder::new(&mut bytes, quality);
    // Greyscale is one component, to which the sampling factor does not apply.
    encoder.set_sampling_factor(if quality < FULL_CHROMA_FROM_QUALITY {
        SamplingFactor::F_2_2
    } else {
        SamplingFactor::F_1_1
    });
    // Each chroma sample is the mean of its 2x2 pixels (libjpeg's way), not the top-left one.
    encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
    // The standard Huffman tables, so that the image is one interleaved scan. jpeg-encoder's
    // optimized tables (about 2-4 % smaller files) make it write one scan per component, which
    // zune-jpeg 0.5.15 (the `image` crate's JPEG decoder) silently decodes to wrong colours.
    encoder.set_optimized_huffman_tables(false);
    encoder
        .encode(&raster.data, width, height, colour)
        .map_err(|e| MediaError::Encode(e.to_string()))?;
    Ok(Encoded {
        hash: BlobHash::of(&bytes),
        width: raster.width,
        height: raster.height,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::{ExtendedColorType, GenericImageView, ImageEncoder};

    fn jpeg_of(width: u32, height: u32, channels: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..width * height * channels as u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let colour = if channels == 1 {
            ExtendedColorType::L8
        } else {
            ExtendedColorType::Rgb8
        };
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode(&data, width, height, colour)
            .expect("encode");
        out
    }

    /// Inserts an APP1 Exif segment holding `tiff` right after SOI.
    fn with_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
        out.extend_from_slice(b"Exif\0\0");
        out.extend_from_slice(tiff);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn default_limits_are_the_documented_ones() {
        let l = Limits::default();
        assert_eq!(
            (
                l.max_pixels,
                l.max_bytes,
                l.max_side,
                l.thumb_side,
                l.quality
            ),
            (64_000_000, 40_000_000, 1600, 320, 80)
        );
        assert_eq!(l.validate(), Ok(()));
    }

    #[test]
    fn unusable_limits_are_refused() {
        let bytes = jpeg_of(8, 8, 3);
        for bad in [
            Limits {
                max_side: 0,
                ..Limits::default()
            },
            Limits {
                thumb_side: 0,
                ..Limits::default()
            },
            Limits {
                quality: 0,
                ..Limits::default()
            },
            Limits {
                quality: 101,
                ..Limits::default()
            },
        ] {
            assert!(matches!(
                process(&bytes, &bad),
                Err(MediaError::InvalidLimits(_))
            ));
        }
    }

    #[test]
    fn stored_target_accounts_for_rotation() {
        assert_eq!(stored_target(4032, 3024, 6, 1600), (1600, 1200));
        assert_eq!(stored_target(4032, 3024, 1, 1600), (1600, 1200));
        assert_eq!(stored_target(300, 200, 8, 100), (100, 67));
        assert_eq!(stored_target(640, 427, 6, 1600), (640, 427));
    }

    #[test]
    fn small_jpeg_is_reencoded_at_the_same_size_and_portrait_after_rotation() {
        let tiff = facts::tests::tiff(&[(0x0112, 3, 1, facts::tests::short(6))], &[], &[]);
        let bytes = with_exif(&jpeg_of(40, 24, 3), &tiff);
        let out = process(&bytes, &Limits::default()).expect("process");
        assert_eq!((out.source_width, out.source_height), (40, 24));
        assert_eq!((out.photo.width, out.photo.height), (24, 40));
        assert_eq!(out.exif.orientation, 6);
        let decoded = image::load_from_memory(&out.photo.bytes).expect("decodes");
        assert_eq!(decoded.dimensions(), (24, 40));
    }

    #[test]
    fn greyscale_stays_greyscale() {
        let out = process(&jpeg_of(50, 30, 1), &Limits::default()).expect("process");
        let decoded = image::load_from_memory(&out.photo.bytes).expect("decodes");
        assert_eq!(decoded.color(), image::ColorType::L8);
        assert_eq!((out.thumb.width, out.thumb.height), (50, 30));
    }

    /// The (component id, sampling byte `H << 4 | V`) pairs of a baseline JPEG's frame header.
    fn sof0_components(jpeg: &[u8]) -> Vec<(u8, u8)> {
        let mut pos = 2;
        loop {
            assert_eq!(jpeg[pos], 0xFF, "segment at {pos}");
            let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
            if jpeg[pos + 1] == 0xC0 {
                let n = usize::from(jpeg[pos + 9]);
                return (0..n)
                    .map(|i| (jpeg[pos + 10 + 3 * i], jpeg[pos + 11 + 3 * i]))
                    .collect();
            }
            assert_ne!(jpeg[pos + 1], 0xDA, "no SOF0 before the scan");
            pos += 2 + len;
        }
    }

    #[test]
    fn colour_is_stored_4_2_0_below_quality_90_and_4_4_4_from_it() {
        let input = jpeg_of(48, 40, 3);
        for (quality, luma) in [(1, 0x22), (80, 0x22), (89, 0x22), (90, 0x11), (100, 0x11)] {
            let limits = Limits {
                quality,
                thumb_side: 20,
                ..Limits::default()
            };
            let out = process(&input, &limits).expect("process");
            for blob in [&out.photo, &out.thumb] {
                let components: Vec<u8> = sof0_components(&blob.bytes)
                    .into_iter()
                    .map(|(_, sampling)| sampling)
                    .collect();
                assert_eq!(components, [luma, 0x11, 0x11], "quality {quality}");
                let decoded = image::load_from_memory(&blob.bytes).expect("decodes");
                assert_eq!(decoded.color(), image::ColorType::Rgb8);
                assert_eq!(decoded.dimensions(), (blob.width, blob.height));
            }
        }
        // Greyscale stays one component, whatever the quality.
        for quality in [80, 95] {
            let limits = Limits {
                quality,
                ..Limits::default()
            };
            let out = process(&jpeg_of(50, 30, 1), &limits).expect("process");
            assert_eq!(sof0_components(&out.photo.bytes).len(), 1);
        }
    }

    #[test]
    fn odd_sizes_survive_chroma_subsampling() {
        // Sizes that are not multiples of the 16x16 MCU, down to a single pixel.
        for (w, h) in [(1, 1), (1, 17), (17, 1), (15, 9), (33, 31)] {
            let out = process(&jpeg_of(w, h, 3), &Limits::default()).expect("process");
            let decoded = image::load_from_memory(&out.photo.bytes).expect("decodes");
            assert_eq!(decoded.dimensions(), (w, h));
            assert_eq!((out.photo.width, out.photo.height), (w, h));
        }
    }

    #[test]
    fn wider_than_jpeg_allows_is_an_encode_error_not_a_panic() {
        // 70000x1 is within max_pixels; with max_side raised it reaches the encoder unscaled.
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&vec![128u8; 70_000], 70_000, 1, ExtendedColorType::L8)
            .expect("png");
        let limits = Limits {
            max_side: 100_000,
            ..Limits::default()
        };
        assert!(matches!(process(&png, &limits), Err(MediaError::Encode(_))));
    }

    #[test]
    fn dct_scaling_then_resize_hits_the_exact_target() {
        let bytes = jpeg_of(1000, 500, 3);
        let limits = Limits {
            max_side: 300,
            thumb_side: 64,
            ..Limits::default()
        };
        let out = process(&bytes, &limits).expect("process");
        assert_eq!((out.photo.width, out.photo.height), (300, 150));
        assert_eq!((out.thumb.width, out.thumb.height), (64, 32));
    }

    #[test]
    fn transparent_png_is_flattened_onto_white() {
        let mut rgba = vec![0u8; 16 * 16 * 4];
        for (i, px) in rgba.chunks_exact_mut(4).enumerate() {
            // Left half: opaque black; right half: fully transparent black.
            px[3] = if i % 16 < 8 { 255 } else { 0 };
        }
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&rgba, 16, 16, ExtendedColorType::Rgba8)
            .expect("png");
        let out = process(&png, &Limits::default()).expect("process");
        assert_eq!(out.source, SourceFormat::Png);
        let decoded = image::load_from_memory(&out.photo.bytes)
            .expect("decodes")
            .to_rgb8();
        assert!(decoded.get_pixel(2, 8).0.iter().all(|&c| c < 30));
        assert!(decoded.get_pixel(13, 8).0.iter().all(|&c| c > 225));
    }

    #[test]
    fn every_truncation_of_a_jpeg_is_an_error() {
        let bytes = jpeg_of(24, 16, 3);
        for cut in 0..bytes.len() - 1 {
            let r = process(&bytes[..cut], &Limits::default());
            assert!(
                matches!(
                    r,
                    Err(MediaError::Truncated | MediaError::Corrupt(_) | MediaError::UnknownFormat)
                ),
                "cut at {cut}: {r:?}"
            );
        }
    }

    #[test]
    fn mangled_jpegs_never_panic() {
        let bytes = jpeg_of(32, 32, 3);
        let mut seed = 0x2545_f491_u32;
        for _ in 0..300 {
            let mut m = bytes.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = seed as usize % m.len();
                m[at] = (seed >> 24) as u8;
            }
            let _ = process(&m, &Limits::default());
            let _ = probe(&m, &Limits::default());
        }
    }

    #[test]
    fn probe_reads_only_the_header() {
        let bytes = jpeg_of(40, 24, 3);
        assert_eq!(
            probe(&bytes, &Limits::default()),
            Ok((SourceFormat::Jpeg, 40, 24))
        );
        // Even the frame header alone is enough.
        let sof = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("sof");
        let sof_end = sof + 2 + usize::from(u16::from_be_bytes([bytes[sof + 2], bytes[sof + 3]]));
        assert_eq!(
            probe(&bytes[..sof_end], &Limits::default()),
            Ok((SourceFormat::Jpeg, 40, 24))
        );
        let tight = Limits {
            max_pixels: 40 * 24 - 1,
            ..Limits::default()
        };
        assert_eq!(
            probe(&bytes, &tight),
            Err(MediaError::TooManyPixels {
                width: 40,
                height: 24,
                limit: 959
            })
        );
        let small = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            probe(&bytes, &small),
            Err(MediaError::TooLarge {
                bytes: bytes.len() as u64,
                limit: 10
            })
        );
    }

    #[test]
    fn error_messages_read_well_after_a_file_name() {
        assert_eq!(
            MediaError::UnknownFormat.to_string(),
            "not a JPEG or PNG image"
        );
        assert_eq!(
            MediaError::TooManyPixels {
                width: 40000,
                height: 40000,
                limit: 64_000_000
            }
            .to_string(),
            "image declares 40000x40000 pixels, over the limit of 64000000 pixels"
        );
        assert_eq!(
            MediaError::TooLarge {
                bytes: 50,
                limit: 40
            }
            .to_string(),
            "file is 50 bytes, over the limit of 40 bytes"
        );
    }
}
