//! Format sniffing and header parsing, without decoding (or allocating for) any pixel.

use crate::{MediaError, SourceFormat};

const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];
const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Decides the format from the leading magic bytes.
pub(crate) fn sniff(bytes: &[u8]) -> Result<SourceFormat, MediaError> {
    if bytes.starts_with(&JPEG_MAGIC) {
        Ok(SourceFormat::Jpeg)
    } else if bytes.starts_with(&PNG_MAGIC) {
        Ok(SourceFormat::Png)
    } else if bytes.len() < PNG_MAGIC.len()
        && !bytes.is_empty()
        && (JPEG_MAGIC.starts_with(bytes) || PNG_MAGIC.starts_with(bytes))
    {
        // A few bytes that could only be the start of a JPEG or PNG.
        Err(MediaError::Truncated)
    } else {
        Err(MediaError::UnknownFormat)
    }
}

/// What the pipeline needs from a JPEG's marker segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JpegHeader<'a> {
    /// Declared width (from the SOFn segment).
    pub width: u16,
    /// Declared height (from the SOFn segment).
    pub height: u16,
    /// Sample precision in bits.
    pub precision: u8,
    /// Number of colour components.
    pub components: u8,
    /// The SOF marker's low nibble: 0, 1, 2 are the DCT processes that support scaled decoding.
    pub process: u8,
    /// The TIFF structure of the first `Exif\0\0` APP1 segment, if any (only when walked up to
    /// the first scan).
    pub exif: Option<&'a [u8]>,
    /// Offset of the first byte of entropy-coded data (only when walked up to the first scan).
    pub scan_start: Option<usize>,
}

impl JpegHeader<'_> {
    /// Whether the frame is DCT-based (baseline, extended or progressive, Huffman coded), i.e.
    /// whether jpeg-decoder's IDCT scaling applies.
    pub fn is_dct(&self) -> bool {
        self.process <= 2
    }
}

pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Walks a JPEG's marker segments. With `to_scan == false` it stops at the frame header (enough
/// for dimensions); otherwise it continues to the first SOS so that it also finds the Exif APP1
/// segment wherever it sits and where the entropy-coded data begins.
pub(crate) fn jpeg_header(bytes: &[u8], to_scan: bool) -> Result<JpegHeader<'_>, MediaError> {
    if !bytes.starts_with(&JPEG_MAGIC[..2]) {
        return Err(MediaError::UnknownFormat);
    }
    let mut frame: Option<JpegHeader<'_>> = None;
    let mut exif: Option<&[u8]> = None;
    let mut pos = 2usize;
    loop {
        // Like libjpeg and jpeg-decoder, tolerate stray bytes between segments.
        while bytes.get(pos).is_some_and(|&b| b != 0xFF) {
            pos += 1;
        }
        // Skip the 0xFF and any fill bytes.
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return Err(MediaError::Truncated);
        };
        pos += 1;
        match marker {
            // Standalone markers without a length.
            0x01 | 0xD0..=0xD7 => continue,
            0x00 => return Err(corrupt("stuffed zero byte where a marker was expected")),
            0xD8 => return Err(corrupt("second start-of-image marker")),
            0xD9 => return Err(corrupt("end-of-image marker before any image data")),
            _ => {}
        }
        let len = usize::from(be16(bytes, pos).ok_or(MediaError::Truncated)?);
        if len < 2 {
            return Err(corrupt("marker segment with an invalid length"));
        }
        let end = pos + len;
        let segment = bytes.get(pos + 2..end).ok_or(MediaError::Truncated)?;
        match marker {
            // SOFn (0xC4 DHT, 0xC8 JPG and 0xCC DAC are not frame headers).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if frame.is_some() {
                    return Err(MediaError::Unsupported(
                        "more than one frame (hierarchical JPEG)".into(),
                    ));
                }
                let precision = *segment
                    .first()
                    .ok_or_else(|| corrupt("short frame header"))?;
                let height = be16(segment, 1).ok_or_else(|| corrupt("short frame header"))?;
                let width = be16(segment, 3).ok_or_else(|| corrupt("short frame header"))?;
                let components = *segment
                    .get(5)
                    .ok_or_else(|| corrupt("short frame header"))?;
                if width == 0 {
                    return Err(corrupt("frame header declares a width of 0"));
                }
                if height == 0 {
                    return Err(MediaError::Unsupported(
                        "height defined by a DNL marker".into(),
                    ));
                }
                let header = JpegHeader {
                    width,
                    height,
                    precision,
                    components,
                    process: marker & 0x0F,
                    exif: None,
                    scan_start: None,
                };
                if !to_scan {
                    return Ok(header);
                }
                frame = Some(header);
            }
            0xE1 if exif.is_none() => {
                if let Some(tiff) = segment.strip_prefix(b"Exif\0\0") {
                    exif = Some(tiff);
                }
            }
            0xDA => {
                let Some(mut header) = frame else {
                    return Err(corrupt("scan data before the frame header"));
                };
                header.exif = exif;
                header.scan_start = Some(end);
                return Ok(header);
            }
            _ => {}
        }
        pos = end;
    }
}

/// Whether an end-of-image marker (`FF D9`) follows the start of the scan data.
///
/// Inside entropy-coded data a 0xFF byte is always followed by 0x00 (stuffing) or a restart
/// marker, so `FF D9` after the first SOS can only be a real EOI. A file cut off part-way through
/// its scans has none. Trailing bytes after the EOI (some cameras append data) are allowed.
pub(crate) fn jpeg_has_eoi(bytes: &[u8], scan_start: usize) -> bool {
    bytes
        .get(scan_start..)
        .is_some_and(|scan| scan.windows(2).rev().any(|w| w == [0xFF, 0xD9]))
}

/// Reads a PNG's declared size from its IHDR chunk, which the format requires to come first.
pub(crate) fn png_dimensions(bytes: &[u8]) -> Result<(u32, u32), MediaError> {
    if !bytes.starts_with(&PNG_MAGIC) {
        return Err(MediaError::UnknownFormat);
    }
    let length = be32(bytes, 8).ok_or(MediaError::Truncated)?;
    let kind = bytes.get(12..16).ok_or(MediaError::Truncated)?;
    if kind != b"IHDR" || length != 13 {
        return Err(corrupt("PNG does not start with an IHDR chunk"));
    }
    let width = be32(bytes, 16).ok_or(MediaError::Truncated)?;
    let height = be32(bytes, 20).ok_or(MediaError::Truncated)?;
    if width == 0 || height == 0 || width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(corrupt("PNG header declares an invalid size"));
    }
    Ok((width, height))
}

fn corrupt(what: &str) -> MediaError {
    MediaError::Corrupt(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, APP1 Exif, SOF0 3x2, SOS, 2 bytes of "scan data", EOI.
    fn tiny_jpeg_skeleton() -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x0C]);
        v.extend_from_slice(b"Exif\0\0MM\0*");
        v.extend_from_slice(&[
            0xFF, 0xC0, 0x00, 0x0B, 8, 0x00, 0x02, 0x00, 0x03, 1, 1, 0x11, 0,
        ]);
        v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0]);
        v.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD9]);
        v
    }

    #[test]
    fn sniffs_by_magic_only() {
        assert_eq!(sniff(&tiny_jpeg_skeleton()), Ok(SourceFormat::Jpeg));
        assert_eq!(sniff(&PNG_MAGIC), Ok(SourceFormat::Png));
        assert_eq!(sniff(b"GIF89a......"), Err(MediaError::UnknownFormat));
        assert_eq!(sniff(b""), Err(MediaError::UnknownFormat));
        assert_eq!(sniff(b"\xFF\xD8"), Err(MediaError::Truncated));
        assert_eq!(sniff(b"\x89PN"), Err(MediaError::Truncated));
    }

    #[test]
    fn walks_jpeg_markers() {
        let v = tiny_jpeg_skeleton();
        let h = jpeg_header(&v, true).expect("header");
        assert_eq!((h.width, h.height, h.components, h.precision), (3, 2, 1, 8));
        assert!(h.is_dct());
        assert_eq!(h.exif, Some(&b"MM\0*"[..]));
        let start = h.scan_start.expect("scan start");
        assert!(jpeg_has_eoi(&v, start));
        assert!(!jpeg_has_eoi(&v[..v.len() - 1], start));
        assert_eq!(jpeg_header(&v, false).expect("header").scan_start, None);
    }

    #[test]
    fn every_prefix_of_a_jpeg_header_is_an_error_not_a_panic() {
        let v = tiny_jpeg_skeleton();
        let sos_end = jpeg_header(&v, true)
            .expect("header")
            .scan_start
            .expect("scan");
        for cut in 0..sos_end {
            assert!(jpeg_header(&v[..cut], true).is_err(), "prefix {cut}");
        }
    }

    #[test]
    fn rejects_broken_segments() {
        let mut v = tiny_jpeg_skeleton();
        v[5] = 1; // APP1 length < 2
        assert!(matches!(jpeg_header(&v, true), Err(MediaError::Corrupt(_))));
        let no_frame = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9];
        assert!(matches!(
            jpeg_header(&no_frame, true),
            Err(MediaError::Corrupt(_))
        ));
    }

    #[test]
    fn reads_png_ihdr() {
        let mut v = PNG_MAGIC.to_vec();
        v.extend_from_slice(&13u32.to_be_bytes());
        v.extend_from_slice(b"IHDR");
        v.extend_from_slice(&40_000u32.to_be_bytes());
        v.extend_from_slice(&30_000u32.to_be_bytes());
        assert_eq!(png_dimensions(&v), Ok((40_000, 30_000)));
        for cut in 8..v.len() {
            assert_eq!(
                png_dimensions(&v[..cut]),
                Err(MediaError::Truncated),
                "{cut}"
            );
        }
        v[16..20].copy_from_slice(&0u32.to_be_bytes());
        assert!(matches!(png_dimensions(&v), Err(MediaError::Corrupt(_))));
    }
}
