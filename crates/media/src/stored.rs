//! What a parent checks of a photo or thumbnail blob before it stores it: that the bytes are
//! in the form [`process`](crate::process) stores them in.
//!
//! A device uploads blobs that its own pipeline made; a parent cannot trust that, so
//! [`check_stored`] verifies the bytes it is about to store, **without trusting the uploader**:
//!
//! 1. a JPEG: `FF D8` (SOI) first and `FF D9` (EOI) as the very last two bytes, nothing after;
//! 2. every marker segment from SOI to EOI is one of DQT, DHT, DRI, exactly one SOF0
//!    (baseline) frame, exactly one SOS (scan), and at most one APP0 right after SOI that is a
//!    plain 14-byte JFIF header without an embedded thumbnail. Any APP1..APP15 segment (EXIF,
//!    XMP, ICC profile, Photoshop/IPTC, Adobe...), any COM segment, any other frame type
//!    (progressive, extended, lossless, arithmetic-coded), a second scan, any other marker and
//!    stray bytes between segments are refused;
//! 3. the frame is 8-bit, one (grey) or three (colour) components, at least 1x1, and its
//!    longest side is at most [`MAX_SIDE`] for a photo or [`THUMB_SIDE`] for a thumbnail; the
//!    one scan is interleaved over all of the frame's components;
//! 4. the scan's entropy-coded data is **exactly** the Huffman codes of the frame's blocks:
//!    every block of every MCU is walked through the scan's tables (no pixel is computed), and
//!    the data must end right after the last block (only 1-bit padding to the byte boundary).
//!    A scan cut short, however it is closed with EOI, and bytes hidden after the last block
//!    are refused; decoders would conceal the first (painting grey) and ignore the second;
//! 5. the image decodes completely (jpeg-decoder), to exactly the frame's size. The decode is
//!    only reached once the header has bounded the size, so it allocates at most about
//!    `width * height * 3` bytes of output (7.7 MB for 1600x1600) plus the decoder's own
//!    buffers of the same order.
//!
//! This is exactly the form the pipeline writes (jpeg-encoder, standard Huffman tables, one
//! interleaved scan); every output of `process` with [`Limits::default`](crate::Limits::default)
//! passes (the crate's fixture tests run it over every sample photo).
//!
//! What it does **not** prove is anything about the pixels: data can always be hidden in the
//! coefficients themselves. It refuses non-images, metadata, oversized images and bytes outside
//! the picture; it is not a steganography detector.

use crate::decode::{guarded, jpeg_error};
use crate::header::{self, be16};
use crate::{MediaError, SourceFormat, MAX_SIDE, THUMB_SIDE};

/// Which kind of stored blob bytes are meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredKind {
    /// A photo: longest side at most [`MAX_SIDE`].
    Photo,
    /// A thumbnail: longest side at most [`THUMB_SIDE`].
    Thumb,
}

impl StoredKind {
    /// The longest side a blob of this kind may have, in pixels.
    pub fn max_side(self) -> u32 {
        match self {
            Self::Photo => MAX_SIDE,
            Self::Thumb => THUMB_SIDE,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Photo => "photo",
            Self::Thumb => "thumbnail",
        }
    }
}

/// What [`check_stored`] found out about bytes it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoredFacts {
    /// Width in pixels (as stored, which is upright: stored blobs carry no orientation).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// One component of the frame: its id and sampling factors.
#[derive(Debug, Clone, Copy)]
struct Component {
    id: u8,
    h: u8,
    v: u8,
}

/// The frame header of a stored JPEG.
#[derive(Debug, Clone)]
struct Frame {
    width: u16,
    height: u16,
    components: Vec<Component>,
}

/// Checks that `bytes` are a photo or thumbnail as gridsync stores them (PROTOCOL.md §8.5,
/// "What a parent stores"): a metadata-free baseline JPEG within the size for `kind`, one scan
/// holding exactly the picture, that decodes completely. Returns its dimensions.
///
/// # Errors
/// [`MediaError::NotStored`] for anything that is not in the stored form (not a JPEG, a PNG,
/// metadata, too large, bytes outside the picture); [`MediaError::Truncated`],
/// [`MediaError::Corrupt`] and [`MediaError::Unsupported`] for a JPEG that does not decode.
/// Each message is one line and quotes nothing of the file's content.
pub fn check_stored(kind: StoredKind, bytes: &[u8]) -> Result<StoredFacts, MediaError> {
    let frame = check_structure(kind, bytes)?;
    let (width, height) = (u32::from(frame.width), u32::from(frame.height));
    guarded(|| {
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        // The frame was checked above; the decoder sees the same bytes, so this only holds it
        // to the output size the header promised.
        let pixels = usize::from(frame.width) * usize::from(frame.height);
        decoder.set_max_decoding_buffer_size(pixels * frame.components.len());
        let data = decoder.decode().map_err(jpeg_error)?;
        let info = decoder
            .info()
            .ok_or_else(|| MediaError::Corrupt("no frame header".into()))?;
        if (info.width, info.height) != (frame.width, frame.height)
            || data.len() != pixels * info.pixel_format.pixel_bytes()
        {
            return Err(MediaError::Corrupt(format!(
                "decodes to {}x{} pixels, not the {width}x{height} of its frame header",
                info.width, info.height
            )));
        }
        Ok(())
    })?;
    Ok(StoredFacts { width, height })
}

fn not_stored(why: String) -> MediaError {
    MediaError::NotStored(why)
}

fn corrupt(why: String) -> MediaError {
    MediaError::Corrupt(why)
}

/// Walks every marker segment from SOI to EOI, and the scan's entropy-coded data block by
/// block, and returns the frame header; see the module docs for what is accepted.
fn check_structure(kind: StoredKind, bytes: &[u8]) -> Result<Frame, MediaError> {
    if bytes.is_empty() {
        return Err(not_stored("empty (0 bytes)".into()));
    }
    match header::sniff(bytes) {
        Ok(SourceFormat::Jpeg) => {}
        Ok(SourceFormat::Png) => {
            return Err(not_stored(
                "a PNG image; photos and thumbnails are stored as JPEG".into(),
            ))
        }
        Err(MediaError::Truncated) => return Err(MediaError::Truncated),
        Err(_) => return Err(not_stored("not a JPEG image".into())),
    }
    let mut frame: Option<Frame> = None;
    let mut tables = Tables::default();
    let mut restart_interval = 0u16;
    let mut scanned = false;
    let mut pos = 2usize;
    loop {
        let at = pos;
        match bytes.get(pos) {
            None => return Err(MediaError::Truncated),
            Some(0xFF) => {}
            Some(_) => {
                return Err(not_stored(format!(
                    "stray bytes at byte {at} where a marker segment should start"
                )))
            }
        }
        // Fill bytes (0xFF) before a marker are allowed and carry nothing.
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return Err(MediaError::Truncated);
        };
        pos += 1;
        match marker {
            0xD9 => {
                let Some(frame) = frame.filter(|_| scanned) else {
                    return Err(corrupt("end-of-image marker before any image data".into()));
                };
                let after = bytes.len() - pos;
                if after > 0 {
                    return Err(not_stored(format!(
                        "{after} bytes after the end-of-image marker"
                    )));
                }
                return Ok(frame);
            }
            0xD8 => {
                return Err(corrupt(format!(
                    "second start-of-image marker at byte {at}"
                )))
            }
            0x00 | 0x01 | 0xD0..=0xD7 => {
                return Err(corrupt(format!(
                    "marker FF{marker:02X} outside the image data at byte {at}"
                )))
            }
            _ => {}
        }
        if scanned && !matches!(marker, 0xE1..=0xEF | 0xFE) {
            // The one scan is followed by EOI, and nothing else (metadata is named below).
            return Err(not_stored(format!(
                "a segment FF{marker:02X} at byte {at} after the scan; stored photos have one scan, then the end of the image"
            )));
        }
        let len = usize::from(be16(bytes, pos).ok_or(MediaError::Truncated)?);
        if len < 2 {
            return Err(corrupt(format!(
                "marker segment with an invalid length at byte {at}"
            )));
        }
        let end = pos + len;
        let segment = bytes.get(pos + 2..end).ok_or(MediaError::Truncated)?;
        match marker {
            // Quantization tables: pixels only (the decoder checks them).
            0xDB => {}
            0xC4 => tables.define(segment)?,
            0xDD => {
                restart_interval =
                    be16(segment, 0).ok_or_else(|| corrupt("short restart interval".into()))?;
            }
            0xE0 => {
                // Only a plain JFIF header, right after SOI: "JFIF\0", version (2), units (1),
                // densities (2 + 2), and a 0x0 embedded thumbnail (what jpeg-encoder writes).
                let plain_jfif = segment.len() == 14
                    && segment.starts_with(b"JFIF\0")
                    && segment[12..] == [0, 0];
                if at != 2 || !plain_jfif {
                    return Err(not_stored(format!(
                        "an APP0 segment at byte {at} that is not a plain JFIF header"
                    )));
                }
            }
            0xE1..=0xEF => {
                let n = marker - 0xE0;
                let what = match n {
                    1 => "EXIF or XMP metadata",
                    2 => "an ICC profile or other metadata",
                    13 => "Photoshop/IPTC metadata",
                    14 => "Adobe colour information",
                    _ => "application metadata",
                };
                return Err(not_stored(format!(
                    "an APP{n} segment ({what}) at byte {at}; stored photos carry no metadata"
                )));
            }
            0xFE => {
                return Err(not_stored(format!(
                    "a comment (COM) segment at byte {at}; stored photos carry no metadata"
                )))
            }
            0xC0 => {
                if frame.is_some() {
                    return Err(not_stored(format!("a second frame header at byte {at}")));
                }
                frame = Some(check_frame(kind, segment)?);
            }
            0xDA => {
                let Some(frame) = &frame else {
                    return Err(corrupt("scan data before the frame header".into()));
                };
                let scan = Scan::parse(segment, frame, &tables)?;
                let data_end = scan_end(bytes, end)?;
                walk_scan(bytes, end, data_end, frame, &scan, restart_interval)?;
                scanned = true;
                pos = data_end;
                continue;
            }
            0xC1..=0xCF => {
                return Err(not_stored(format!(
                    "a SOF{} frame (progressive, extended, lossless, hierarchical or arithmetic-coded) at byte {at}; stored photos are baseline JPEG",
                    marker - 0xC0
                )))
            }
            other => {
                return Err(not_stored(format!(
                    "a segment FF{other:02X} at byte {at}, which stored photos do not have"
                )))
            }
        }
        pos = end;
    }
}

/// Checks a SOF0 segment's body.
fn check_frame(kind: StoredKind, segment: &[u8]) -> Result<Frame, MediaError> {
    let short = || corrupt("short frame header".into());
    let precision = *segment.first().ok_or_else(short)?;
    let height = be16(segment, 1).ok_or_else(short)?;
    let width = be16(segment, 3).ok_or_else(short)?;
    let count = *segment.get(5).ok_or_else(short)?;
    if segment.len() != 6 + 3 * usize::from(count) {
        return Err(corrupt(format!(
            "frame header of {} bytes for {count} components",
            segment.len()
        )));
    }
    if precision != 8 {
        return Err(not_stored(format!(
            "{precision}-bit samples; stored photos are 8-bit"
        )));
    }
    if !matches!(count, 1 | 3) {
        return Err(not_stored(format!(
            "{count} colour components; stored photos have 1 (grey) or 3 (colour)"
        )));
    }
    if width == 0 || height == 0 {
        return Err(not_stored(format!(
            "a frame header declaring {width}x{height} pixels"
        )));
    }
    let max = kind.max_side();
    if u32::from(width.max(height)) > max {
        return Err(not_stored(format!(
            "{width}x{height} pixels, over the {max} px longest side of a stored {}",
            kind.noun()
        )));
    }
    let mut components: Vec<Component> = Vec::with_capacity(usize::from(count));
    for c in segment[6..].chunks_exact(3) {
        let (h, v) = (c[1] >> 4, c[1] & 0x0F);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return Err(corrupt(format!("sampling factors {h}x{v}")));
        }
        if components.iter().any(|k| k.id == c[0]) {
            return Err(corrupt(format!("component {} defined twice", c[0])));
        }
        components.push(Component { id: c[0], h, v });
    }
    Ok(Frame {
        width,
        height,
        components,
    })
}

/// The offset of the first marker after the entropy-coded data starting at `from`: inside it a
/// 0xFF byte is followed by 0x00 (stuffing) or a restart marker D0..D7; anything else is a
/// marker. Data running to the end of the input without one is a truncated file.
fn scan_end(bytes: &[u8], from: usize) -> Result<usize, MediaError> {
    let mut pos = from;
    loop {
        let rest = bytes.get(pos..).ok_or(MediaError::Truncated)?;
        let Some(ff) = rest.iter().position(|&b| b == 0xFF) else {
            return Err(MediaError::Truncated);
        };
        pos += ff;
        match bytes.get(pos + 1) {
            None => return Err(MediaError::Truncated),
            Some(0x00 | 0xD0..=0xD7) => pos += 2,
            Some(_) => return Ok(pos),
        }
    }
}

// ---- the entropy-coded data ----------------------------------------------------------------

/// A Huffman table in the canonical form of JPEG's Annex C: per code length, the first code,
/// the number of codes and where their symbols start.
#[derive(Debug, Clone)]
struct Huffman {
    first: [u32; 17],
    count: [u32; 17],
    start: [usize; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8], symbols: &[u8]) -> Result<Self, MediaError> {
        let (mut first, mut count, mut start) = ([0u32; 17], [0u32; 17], [0usize; 17]);
        let (mut code, mut k) = (0u32, 0usize);
        for len in 1..=16 {
            let n = u32::from(counts[len - 1]);
            first[len] = code;
            count[len] = n;
            start[len] = k;
            code += n;
            k += n as usize;
            if code > 1 << len {
                return Err(corrupt("a Huffman table with more codes than fit".into()));
            }
            code <<= 1;
        }
        Ok(Self {
            first,
            count,
            start,
            symbols: symbols.to_vec(),
        })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u8, MediaError> {
        let mut code = 0u32;
        for len in 1..=16 {
            code = (code << 1) | bits.bit()?;
            let offset = code.wrapping_sub(self.first[len]);
            if code >= self.first[len] && offset < self.count[len] {
                return Ok(self.symbols[self.start[len] + offset as usize]);
            }
        }
        Err(corrupt("an invalid Huffman code in the scan".into()))
    }
}

/// The Huffman tables defined so far: DC (class 0) and AC (class 1), ids 0..=3.
#[derive(Debug, Default)]
struct Tables {
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
}

impl Tables {
    /// Reads a DHT segment (one or more tables).
    fn define(&mut self, mut segment: &[u8]) -> Result<(), MediaError> {
        let short = || corrupt("short Huffman table segment".into());
        while let Some((&class_id, rest)) = segment.split_first() {
            let counts = rest.get(..16).ok_or_else(short)?;
            let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let symbols = rest.get(16..16 + n).ok_or_else(short)?;
            let (class, id) = (class_id >> 4, usize::from(class_id & 0x0F));
            let table = Huffman::new(counts, symbols)?;
            match (class, id) {
                (0, 0..=3) => self.dc[id] = Some(table),
                (1, 0..=3) => self.ac[id] = Some(table),
                _ => return Err(corrupt(format!("Huffman table class {class} id {id}"))),
            }
            segment = &rest[16 + n..];
        }
        Ok(())
    }
}

/// The scan header: for each of the frame's components, in scan order, its index in the frame
/// and its DC and AC tables.
#[derive(Debug)]
struct Scan<'t> {
    parts: Vec<(usize, &'t Huffman, &'t Huffman)>,
}

impl<'t> Scan<'t> {
    fn parse(segment: &[u8], frame: &Frame, tables: &'t Tables) -> Result<Self, MediaError> {
        let short = || corrupt("short scan header".into());
        let n = usize::from(*segment.first().ok_or_else(short)?);
        if segment.len() != 1 + 2 * n + 3 {
            return Err(corrupt(format!(
                "scan header of {} bytes for {n} components",
                segment.len()
            )));
        }
        if n != frame.components.len() {
            return Err(not_stored(format!(
                "a scan of {n} of the frame's {} components; stored photos have one scan of all of them",
                frame.components.len()
            )));
        }
        let mut parts: Vec<(usize, &Huffman, &Huffman)> = Vec::with_capacity(n);
        for c in segment[1..1 + 2 * n].chunks_exact(2) {
            let index = frame
                .components
                .iter()
                .position(|k| k.id == c[0])
                .ok_or_else(|| corrupt(format!("scan of component {}, not in the frame", c[0])))?;
            if parts.iter().any(|p| p.0 == index) {
                return Err(corrupt(format!("component {} twice in the scan", c[0])));
            }
            let (dc, ac) = (usize::from(c[1] >> 4), usize::from(c[1] & 0x0F));
            let missing = || corrupt(format!("scan uses Huffman tables {dc}/{ac}, not defined"));
            let dc = tables
                .dc
                .get(dc)
                .and_then(Option::as_ref)
                .ok_or_else(missing)?;
            let ac = tables
                .ac
                .get(ac)
                .and_then(Option::as_ref)
                .ok_or_else(missing)?;
            parts.push((index, dc, ac));
        }
        if segment[1 + 2 * n..] != [0, 63, 0] {
            return Err(corrupt(
                "scan is not a baseline scan (spectral selection 0..63, no approximation)".into(),
            ));
        }
        Ok(Self { parts })
    }
}

/// Reads the bits of entropy-coded data `bytes[pos..end]`, un-stuffing `FF 00`.
#[derive(Debug)]
struct Bits<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    byte: u8,
    left: u8,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32, MediaError> {
        if self.left == 0 {
            if self.pos >= self.end
                || self.bytes[self.pos] == 0xFF && self.bytes.get(self.pos + 1) != Some(&0)
            {
                // The data (or the restart interval) ends before its last block does.
                return Err(MediaError::Truncated);
            }
            self.byte = self.bytes[self.pos];
            self.pos += if self.byte == 0xFF { 2 } else { 1 };
            self.left = 8;
        }
        self.left -= 1;
        Ok(u32::from(self.byte >> self.left) & 1)
    }

    fn skip(&mut self, n: u8) -> Result<(), MediaError> {
        for _ in 0..n {
            self.bit()?;
        }
        Ok(())
    }

    /// Ends a run of data at a byte boundary: what is left of the current byte must be the
    /// 1-bit padding.
    fn align(&mut self) -> Result<(), MediaError> {
        let pad = (1u8 << self.left) - 1;
        if self.byte & pad != pad {
            return Err(not_stored("data in the padding bits of the scan".into()));
        }
        self.left = 0;
        Ok(())
    }
}

/// Walks every block of every MCU of the one interleaved scan through its Huffman tables, and
/// checks that the data `bytes[from..end]` holds exactly those blocks (and, with a restart
/// interval, the restart markers in order).
fn walk_scan(
    bytes: &[u8],
    from: usize,
    end: usize,
    frame: &Frame,
    scan: &Scan<'_>,
    restart_interval: u16,
) -> Result<(), MediaError> {
    let hmax = frame.components.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = frame.components.iter().map(|c| c.v).max().unwrap_or(1);
    let (units_x, units_y) = if scan.parts.len() == 1 {
        // One component is not interleaved: an MCU is one block of it, over its own size.
        let c = frame.components[scan.parts[0].0];
        let w = (u32::from(frame.width) * u32::from(c.h)).div_ceil(u32::from(hmax));
        let h = (u32::from(frame.height) * u32::from(c.v)).div_ceil(u32::from(vmax));
        (w.div_ceil(8), h.div_ceil(8))
    } else {
        (
            u32::from(frame.width).div_ceil(8 * u32::from(hmax)),
            u32::from(frame.height).div_ceil(8 * u32::from(vmax)),
        )
    };
    let mcus = units_x * units_y;
    let blocks: Vec<(u32, &Huffman, &Huffman)> = scan
        .parts
        .iter()
        .map(|&(index, dc, ac)| {
            let c = frame.components[index];
            let n = if scan.parts.len() == 1 {
                1
            } else {
                u32::from(c.h) * u32::from(c.v)
            };
            (n, dc, ac)
        })
        .collect();
    let mut bits = Bits {
        bytes,
        pos: from,
        end,
        byte: 0,
        left: 0,
    };
    let mut restarts = 0u32;
    for mcu in 0..mcus {
        if restart_interval > 0 && mcu > 0 && mcu % u32::from(restart_interval) == 0 {
            bits.align()?;
            let want = 0xD0 + (restarts % 8) as u8;
            if bits.bytes.get(bits.pos..bits.pos + 2) != Some(&[0xFF, want][..]) {
                return Err(corrupt(format!(
                    "restart marker RST{} missing at byte {}",
                    restarts % 8,
                    bits.pos
                )));
            }
            bits.pos += 2;
            restarts += 1;
        }
        for &(n, dc, ac) in &blocks {
            for _ in 0..n {
                walk_block(&mut bits, dc, ac)?;
            }
        }
    }
    bits.align()?;
    if bits.pos != end {
        return Err(not_stored(format!(
            "{} bytes of scan data after the last block of the picture",
            end - bits.pos
        )));
    }
    Ok(())
}

/// One 8x8 block: a DC difference, then AC run/size codes up to end-of-block or 63.
fn walk_block(bits: &mut Bits<'_>, dc: &Huffman, ac: &Huffman) -> Result<(), MediaError> {
    let size = dc.decode(bits)?;
    if size > 11 {
        return Err(corrupt(format!("a DC difference of {size} bits")));
    }
    bits.skip(size)?;
    let mut k = 1u32;
    while k < 64 {
        let rs = ac.decode(bits)?;
        let (run, size) = (u32::from(rs >> 4), rs & 0x0F);
        if size == 0 {
            if run == 15 {
                k += 16;
                continue;
            }
            if run == 0 {
                break;
            }
            return Err(corrupt(format!("an invalid AC code {rs:#04x}")));
        }
        if size > 10 {
            return Err(corrupt(format!("an AC coefficient of {size} bits")));
        }
        k += run;
        bits.skip(size)?;
        k += 1;
    }
    if k > 64 {
        return Err(corrupt("a block with more than 64 coefficients".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{process, Limits};

    /// A JPEG made by the pipeline itself from a synthetic picture.
    fn stored(width: u32, height: u32, grey: bool) -> Vec<u8> {
        let channels = if grey { 1 } else { 3 };
        let data: Vec<u8> = (0..width * height * channels)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut png = Vec::new();
        let colour = if grey {
            image::ExtendedColorType::L8
        } else {
            image::ExtendedColorType::Rgb8
        };
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut png),
            &data,
            width,
            height,
            colour,
        )
        .expect("png");
        let limits = Limits {
            max_side: 4000,
            thumb_side: 4000,
            ..Limits::default()
        };
        process(&png, &limits).expect("process").photo.bytes
    }

    /// `jpeg` with a segment `FF marker` holding `body` inserted at byte `at`.
    fn insert(jpeg: &[u8], at: usize, marker: u8, body: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..at].to_vec();
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&jpeg[at..]);
        out
    }

    fn refusal(kind: StoredKind, bytes: &[u8]) -> String {
        let e = check_stored(kind, bytes).expect_err("refused");
        let text = e.to_string();
        assert!(!text.contains('\n'), "one line: {text:?}");
        text
    }

    #[test]
    fn the_pipelines_own_output_passes() {
        for (w, h, grey) in [(1, 1, false), (17, 9, true), (320, 200, false)] {
            let bytes = stored(w, h, grey);
            for kind in [StoredKind::Photo, StoredKind::Thumb] {
                assert_eq!(
                    check_stored(kind, &bytes),
                    Ok(StoredFacts {
                        width: w,
                        height: h
                    })
                );
            }
        }
    }

    #[test]
    fn sides_are_bounded_per_kind() {
        let bytes = stored(321, 10, false);
        assert!(check_stored(StoredKind::Photo, &bytes).is_ok());
        assert_eq!(
            refusal(StoredKind::Thumb, &bytes),
            "321x10 pixels, over the 320 px longest side of a stored thumbnail"
        );
        let bytes = stored(10, 1601, true);
        assert_eq!(
            refusal(StoredKind::Photo, &bytes),
            "10x1601 pixels, over the 1600 px longest side of a stored photo"
        );
        assert!(check_stored(StoredKind::Photo, &stored(1600, 1600, true)).is_ok());
    }

    #[test]
    fn metadata_segments_are_refused_wherever_they_are() {
        let bytes = stored(16, 16, false);
        let sof = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("sof");
        let eoi = bytes.len() - 2;
        for at in [2, 20, sof, eoi] {
            for marker in 0xE1..=0xEF {
                let text = refusal(StoredKind::Photo, &insert(&bytes, at, marker, b"GPS 39.9N"));
                assert!(
                    text.contains(&format!("APP{} segment", marker - 0xE0)),
                    "{text}"
                );
            }
            let text = refusal(StoredKind::Photo, &insert(&bytes, at, 0xFE, b"GPS 39.9N"));
            assert!(text.starts_with("a comment (COM) segment"), "{text}");
        }
        // A second APP0, another APP0 than JFIF, and JFIF with an embedded thumbnail.
        let text = refusal(StoredKind::Photo, &insert(&bytes, 20, 0xE0, &bytes[6..20]));
        assert!(text.contains("not a plain JFIF header"), "{text}");
        let mut jfxx = bytes.clone();
        jfxx[6..10].copy_from_slice(b"JFXX");
        assert!(refusal(StoredKind::Photo, &jfxx).contains("not a plain JFIF header"));
        let mut thumb = bytes.clone();
        thumb[18] = 1;
        assert!(refusal(StoredKind::Photo, &thumb).contains("not a plain JFIF header"));
    }

    #[test]
    fn anything_after_the_end_or_between_segments_is_refused() {
        let bytes = stored(16, 16, false);
        let mut after = bytes.clone();
        after.extend_from_slice(b"GPS 39.9N 116.4E");
        assert_eq!(
            refusal(StoredKind::Photo, &after),
            "16 bytes after the end-of-image marker"
        );
        let mut stray = bytes[..20].to_vec();
        stray.extend_from_slice(b"GPS");
        stray.extend_from_slice(&bytes[20..]);
        assert!(refusal(StoredKind::Photo, &stray).starts_with("stray bytes at byte 20"));
        // An unknown segment, and a frame type the pipeline never writes.
        assert!(refusal(StoredKind::Photo, &insert(&bytes, 20, 0xF0, b"x")).contains("FFF0"));
        let mut sof1 = bytes.clone();
        let sof = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("sof");
        sof1[sof + 1] = 0xC1;
        assert!(refusal(StoredKind::Photo, &sof1).contains("SOF1 frame"));
    }

    #[test]
    fn every_truncation_and_empty_input_is_refused() {
        let bytes = stored(24, 16, false);
        assert_eq!(refusal(StoredKind::Thumb, &[]), "empty (0 bytes)");
        for cut in 1..bytes.len() {
            assert!(
                check_stored(StoredKind::Thumb, &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn mangled_stored_jpegs_never_panic() {
        let bytes = stored(32, 32, false);
        let mut seed = 0x9E37_79B9_u32;
        for _ in 0..500 {
            let mut m = bytes.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = seed as usize % m.len();
                m[at] = (seed >> 24) as u8;
            }
            let _ = check_stored(StoredKind::Photo, &m);
        }
    }

    #[test]
    fn a_frame_that_does_not_decode_is_refused() {
        // Valid structure, but the Huffman-coded data is noise.
        let bytes = stored(64, 64, false);
        let sos = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xDA])
            .expect("sos");
        let len = usize::from(u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]));
        let mut noisy = bytes[..sos + 2 + len].to_vec();
        noisy.extend(std::iter::repeat_n(0xFE, 40));
        noisy.extend_from_slice(&[0xFF, 0xD9]);
        let r = check_stored(StoredKind::Photo, &noisy);
        assert!(
            matches!(r, Err(MediaError::Corrupt(_) | MediaError::Truncated)),
            "{r:?}"
        );
    }
    /// A JPEG from jpeg-encoder with the given options (restart interval, progressive).
    fn encoded(restart: u16, progressive: bool) -> Vec<u8> {
        let (w, h) = (70u16, 45u16);
        let data: Vec<u8> = (0..u32::from(w) * u32::from(h) * 3)
            .map(|i| (i * 13 % 253) as u8)
            .collect();
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 80);
        encoder.set_restart_interval(restart);
        encoder.set_progressive(progressive);
        encoder
            .encode(&data, w, h, jpeg_encoder::ColorType::Rgb)
            .expect("encode");
        out
    }

    #[test]
    fn restart_intervals_are_walked_and_other_encoders_baseline_passes() {
        let bytes = encoded(2, false);
        assert!(bytes.windows(2).any(|w| w == [0xFF, 0xDD]), "has a DRI");
        assert_eq!(
            check_stored(StoredKind::Thumb, &bytes),
            Ok(StoredFacts {
                width: 70,
                height: 45
            })
        );
        // A restart marker out of order is refused.
        let rst = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xD1])
            .expect("RST1");
        let mut swapped = bytes.clone();
        swapped[rst + 1] = 0xD5;
        assert!(refusal(StoredKind::Thumb, &swapped).contains("restart marker RST1"));
        // The image crate's own baseline encoder, 4:2:0 colour.
        let mut other = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut other, 75)
            .encode(&[90u8; 33 * 17 * 3], 33, 17, image::ExtendedColorType::Rgb8)
            .expect("encode");
        assert!(check_stored(StoredKind::Thumb, &other).is_ok());
    }

    #[test]
    fn progressive_is_not_what_gridsync_stores() {
        let text = refusal(StoredKind::Photo, &encoded(0, true));
        assert!(text.starts_with("a SOF2 frame (progressive"), "{text}");
    }

    #[test]
    fn bytes_hidden_in_the_scan_or_a_scan_cut_short_are_refused() {
        let bytes = stored(64, 48, false);
        let eoi = bytes.len() - 2;
        // Text slipped in between the last block and EOI: decoders ignore it.
        let mut hidden = bytes[..eoi].to_vec();
        hidden.extend_from_slice(b"GPS 39.8927N 116.4284E");
        hidden.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg_decoder::Decoder::new(&hidden[..]).decode().is_ok());
        assert_eq!(
            refusal(StoredKind::Photo, &hidden),
            "22 bytes of scan data after the last block of the picture"
        );
        // A scan cut off and closed with EOI: decoders conceal it.
        let mut cut = bytes[..eoi - 200].to_vec();
        cut.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg_decoder::Decoder::new(&cut[..]).decode().is_ok());
        assert_eq!(
            check_stored(StoredKind::Photo, &cut),
            Err(MediaError::Truncated)
        );
        // Anything between the scan and EOI.
        let text = refusal(StoredKind::Photo, &insert(&bytes, eoi, 0xDB, &[0; 65]));
        assert!(text.contains("after the scan"), "{text}");
    }
}
