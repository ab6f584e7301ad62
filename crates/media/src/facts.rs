//! The few EXIF facts a report keeps: where, when, and which way up.

use chrono::NaiveDate;
use exif::{Exif, In, Tag, Value};

/// A GPS position in signed decimal degrees (WGS 84 as written by the camera): north and east
/// positive, south and west negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpsFix {
    /// Latitude in degrees, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, -180..=180.
    pub lon: f64,
}

/// Facts read from the photo's EXIF block before it is discarded.
///
/// Reading EXIF is best effort: a missing, truncated or malformed EXIF block never makes
/// [`process`](crate::process) fail; the affected facts are simply absent (and the orientation
/// is 1). The image bytes that get stored never contain any of this.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExifFacts {
    /// GPS position, if the file has a complete and plausible one (latitude, longitude and
    /// both hemisphere references present, within range). Altitude is not kept.
    pub gps: Option<GpsFix>,
    /// Capture time as Unix milliseconds (UTC), from `DateTimeOriginal` (plus
    /// `SubSecTimeOriginal` when present).
    ///
    /// EXIF stores wall-clock time without a zone. When `OffsetTimeOriginal` (EXIF 2.31) is
    /// present it is applied; otherwise the wall-clock time is **taken to be UTC**. The patrol
    /// handhelds are configured to keep their clocks in UTC, so this is right for them; photos
    /// from other cameras without an offset may be off by their local zone offset.
    pub captured_at_ms: Option<i64>,
    /// EXIF orientation, 1..=8 (1 when absent or out of range). Already applied to the stored
    /// pixels; reported for information only.
    pub orientation: u16,
}

impl Default for ExifFacts {
    fn default() -> Self {
        Self {
            gps: None,
            captured_at_ms: None,
            orientation: 1,
        }
    }
}

impl ExifFacts {
    /// Reads the facts from a raw EXIF (TIFF structure) block, as found after `Exif\0\0` in a
    /// JPEG APP1 segment or in a PNG `eXIf` chunk. Never fails: what cannot be read is absent.
    pub fn from_tiff(tiff: &[u8]) -> Self {
        let mut reader = exif::Reader::new();
        reader.continue_on_error(true);
        let parsed = reader
            .read_raw(tiff.to_vec())
            .or_else(|e| e.distill_partial_result(|_ignored| {}));
        match parsed {
            Ok(exif) => Self {
                gps: gps(&exif),
                captured_at_ms: captured_at_ms(&exif),
                orientation: orientation(&exif),
            },
            Err(_) => Self::default(),
        }
    }
}

fn orientation(exif: &Exif) -> u16 {
    exif.get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .and_then(|v| u16::try_from(v).ok())
        .filter(|v| (1..=8).contains(v))
        .unwrap_or(1)
}

fn ascii(exif: &Exif, tag: Tag) -> Option<&[u8]> {
    match &exif.get_field(tag, In::PRIMARY)?.value {
        Value::Ascii(parts) => parts.first().map(Vec::as_slice),
        _ => None,
    }
}

/// Degrees from an EXIF degrees/minutes/seconds triple of rationals.
fn dms(exif: &Exif, tag: Tag) -> Option<f64> {
    let Value::Rational(parts) = &exif.get_field(tag, In::PRIMARY)?.value else {
        return None;
    };
    let mut degrees = 0.0;
    for (part, unit) in parts.iter().zip([1.0, 60.0, 3600.0]) {
        if part.denom == 0 {
            return None;
        }
        degrees += part.to_f64() / unit;
    }
    (!parts.is_empty() && degrees.is_finite()).then_some(degrees)
}

fn gps(exif: &Exif) -> Option<GpsFix> {
    let lat = dms(exif, Tag::GPSLatitude)?;
    let lon = dms(exif, Tag::GPSLongitude)?;
    let lat = match ascii(exif, Tag::GPSLatitudeRef)?.first()? {
        b'N' | b'n' => lat,
        b'S' | b's' => -lat,
        _ => return None,
    };
    let lon = match ascii(exif, Tag::GPSLongitudeRef)?.first()? {
        b'E' | b'e' => lon,
        b'W' | b'w' => -lon,
        _ => return None,
    };
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
        .then_some(GpsFix { lat, lon })
}

fn captured_at_ms(exif: &Exif) -> Option<i64> {
    let mut dt = exif::DateTime::from_ascii(ascii(exif, Tag::DateTimeOriginal)?).ok()?;
    if let Some(sub) = ascii(exif, Tag::SubSecTimeOriginal) {
        // A malformed sub-second field is ignored, not fatal.
        if dt.parse_subsec(sub).is_err() {
            dt.nanosecond = None;
        }
    }
    if let Some(offset) = ascii(exif, Tag::OffsetTimeOriginal) {
        if dt.parse_offset(offset).is_err() {
            dt.offset = None;
        }
    }
    let wall = NaiveDate::from_ymd_opt(i32::from(dt.year), dt.month.into(), dt.day.into())?
        .and_hms_opt(dt.hour.into(), dt.minute.into(), dt.second.into())?
        .and_utc()
        .timestamp_millis();
    let sub_ms = i64::from(dt.nanosecond.unwrap_or(0) / 1_000_000);
    let offset_ms = i64::from(dt.offset.unwrap_or(0)) * 60_000;
    Some(wall + sub_ms - offset_ms)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One IFD entry: (tag, type, count, value bytes).
    pub(crate) type Entry = (u16, u16, u32, Vec<u8>);

    /// A big-endian TIFF block with the given IFD0, Exif sub-IFD and GPS sub-IFD entries (the
    /// sub-IFD pointers are added when those are non-empty). Values longer than 4 bytes are
    /// placed after the IFDs. Used here and by the pipeline tests to hand-build EXIF.
    pub(crate) fn tiff(ifd0: &[Entry], exif_ifd: &[Entry], gps: &[Entry]) -> Vec<u8> {
        let ifd_size = |n: usize| 2 + 12 * n + 4;
        let subs: Vec<(u16, &[Entry])> = [(0x8769, exif_ifd), (0x8825, gps)]
            .into_iter()
            .filter(|(_, e)| !e.is_empty())
            .collect();
        let mut entries0: Vec<Entry> = ifd0.to_vec();
        let mut at = 8 + ifd_size(entries0.len() + subs.len());
        for (pointer_tag, entries) in &subs {
            entries0.push((*pointer_tag, 4, 1, (at as u32).to_be_bytes().to_vec()));
            at += ifd_size(entries.len());
        }
        let mut data_at = at;
        let mut out = b"MM\0*\0\0\0\x08".to_vec();
        let mut extra = Vec::new();
        let mut ifds: Vec<&[Entry]> = vec![entries0.as_slice()];
        ifds.extend(subs.iter().map(|(_, e)| *e));
        for entries in ifds {
            let mut sorted = entries.to_vec();
            sorted.sort_by_key(|e| e.0);
            out.extend_from_slice(&(sorted.len() as u16).to_be_bytes());
            for (tag, ty, count, value) in sorted {
                out.extend_from_slice(&tag.to_be_bytes());
                out.extend_from_slice(&ty.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
                if value.len() <= 4 {
                    let mut v = value.clone();
                    v.resize(4, 0);
                    out.extend_from_slice(&v);
                } else {
                    out.extend_from_slice(&(data_at as u32).to_be_bytes());
                    data_at += value.len();
                    extra.extend_from_slice(&value);
                }
            }
            out.extend_from_slice(&0u32.to_be_bytes());
        }
        out.extend_from_slice(&extra);
        out
    }

    pub(crate) fn short(v: u16) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    fn rationals(v: &[(u32, u32)]) -> Vec<u8> {
        v.iter()
            .flat_map(|(n, d)| n.to_be_bytes().into_iter().chain(d.to_be_bytes()))
            .collect()
    }

    fn ascii_value(s: &str) -> (u32, Vec<u8>) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        (v.len() as u32, v)
    }

    #[test]
    fn reads_orientation_gps_and_time_with_offset() {
        let (n_dt, dt) = ascii_value("2026:03:02 11:00:00");
        let (n_off, off) = ascii_value("+08:00");
        let (n_sub, sub) = ascii_value("25");
        let (n_s, s) = ascii_value("S");
        let (n_w, w) = ascii_value("W");
        let block = tiff(
            &[(0x0112, 3, 1, short(6))],
            &[
                (0x9003, 2, n_dt, dt),
                (0x9011, 2, n_off, off),
                (0x9291, 2, n_sub, sub),
            ],
            &[
                (1, 2, n_s, s),
                (2, 5, 3, rationals(&[(33, 1), (30, 1), (0, 1)])),
                (3, 2, n_w, w),
                (4, 5, 3, rationals(&[(70, 1), (3, 2), (36, 1)])),
            ],
        );
        let facts = ExifFacts::from_tiff(&block);
        assert_eq!(facts.orientation, 6);
        let gps = facts.gps.expect("gps");
        assert!((gps.lat - -33.5).abs() < 1e-9, "{gps:?}");
        assert!((gps.lon - -70.035).abs() < 1e-9, "{gps:?}");
        // 11:00 at +08:00 is 03:00 UTC.
        let utc = chrono::DateTime::parse_from_rfc3339("2026-03-02T03:00:00.250Z")
            .expect("time")
            .timestamp_millis();
        assert_eq!(facts.captured_at_ms, Some(utc));
    }

    #[test]
    fn time_without_offset_is_taken_as_utc() {
        let (n_dt, dt) = ascii_value("2026:03:02 11:00:00");
        let facts = ExifFacts::from_tiff(&tiff(&[], &[(0x9003, 2, n_dt, dt)], &[]));
        let utc = chrono::DateTime::parse_from_rfc3339("2026-03-02T11:00:00Z")
            .expect("time")
            .timestamp_millis();
        assert_eq!(facts.captured_at_ms, Some(utc));
        assert_eq!(facts.orientation, 1);
        assert_eq!(facts.gps, None);
    }

    #[test]
    fn nonsense_is_absent_not_an_error() {
        let (n_dt, dt) = ascii_value("2026:13:45 99:00:00");
        let (n_n, n) = ascii_value("N");
        let facts = ExifFacts::from_tiff(&tiff(
            &[(0x0112, 3, 1, short(9))],
            &[(0x9003, 2, n_dt, dt)],
            // Latitude with a zero denominator, longitude without a reference.
            &[
                (1, 2, n_n, n),
                (2, 5, 3, rationals(&[(1, 0), (0, 1), (0, 1)])),
            ],
        ));
        assert_eq!(facts, ExifFacts::default());
        assert_eq!(ExifFacts::from_tiff(b"garbage"), ExifFacts::default());
        assert_eq!(ExifFacts::from_tiff(b""), ExifFacts::default());
    }
}
