//! Pixel decoding. Only called after the header has passed the size and pixel limits.

use std::io::{Cursor, ErrorKind};
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::codecs::png::PngDecoder;
use image::{DynamicImage, ImageDecoder, ImageError};
use jpeg_decoder::PixelFormat;

use crate::header::JpegHeader;
use crate::raster::{self, Raster};
use crate::{Limits, MediaError};

/// Runs a decoder, turning a panic inside a third-party decoder on hostile input into an error
/// instead of taking the caller down with it. (Under `panic = "abort"` this cannot help, and the
/// default panic hook still prints; neither decoder is known to panic on any input.)
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, MediaError>) -> Result<T, MediaError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(MediaError::Corrupt("the decoder rejected the data".into())))
}

pub(crate) fn jpeg_error(e: jpeg_decoder::Error) -> MediaError {
    match e {
        jpeg_decoder::Error::Io(io) if io.kind() == ErrorKind::UnexpectedEof => {
            MediaError::Truncated
        }
        jpeg_decoder::Error::Unsupported(feature) => {
            MediaError::Unsupported(format!("JPEG feature {feature:?}"))
        }
        jpeg_decoder::Error::Format(what) => MediaError::Corrupt(what),
        other => MediaError::Corrupt(other.to_string()),
    }
}

/// Decodes a JPEG, letting jpeg-decoder scale in the DCT domain (by 1/2, 1/4 or 1/8) to the
/// smallest size that is still at least `want` in one axis. `want` is in stored (not yet
/// oriented) pixels. The result is at least as large as `want` up to rounding, never smaller
/// than needed by more than a pixel.
pub(crate) fn jpeg(
    bytes: &[u8],
    header: &JpegHeader<'_>,
    want: (u32, u32),
    limits: &Limits,
) -> Result<Raster, MediaError> {
    if header.components != 1 && header.precision != 8 {
        return Err(MediaError::Unsupported(format!(
            "{}-bit colour JPEG",
            header.precision
        )));
    }
    guarded(|| {
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        // The header was checked against max_pixels already; this bounds the output buffer
        // again inside the decoder (4 bytes per pixel covers CMYK).
        let budget = limits.max_pixels.saturating_mul(4);
        decoder.set_max_decoding_buffer_size(usize::try_from(budget).unwrap_or(usize::MAX));
        if header.is_dct() {
            let w = u16::try_from(want.0).unwrap_or(u16::MAX).max(1);
            let h = u16::try_from(want.1).unwrap_or(u16::MAX).max(1);
            decoder.scale(w, h).map_err(jpeg_error)?;
        } else {
            decoder.read_info().map_err(jpeg_error)?;
        }
        let info = decoder
            .info()
            .ok_or_else(|| MediaError::Corrupt("no frame header".into()))?;
        let mut data = decoder.decode().map_err(jpeg_error)?;
        let (width, height) = (u32::from(info.width), u32::from(info.height));
        let pixels = width as usize * height as usize;
        if data.len() != pixels * info.pixel_format.pixel_bytes() {
            return Err(MediaError::Unsupported(format!(
                "JPEG decoded to an unexpected layout ({:?}, {}-bit)",
                info.pixel_format, header.precision
            )));
        }
        let channels = match info.pixel_format {
            PixelFormat::L8 => 1,
            PixelFormat::RGB24 => 3,
            PixelFormat::CMYK32 => {
                raster::cmyk_to_rgb_in_place(&mut data);
                3
            }
            PixelFormat::L16 => {
                raster::l16_to_l8_in_place(&mut data, header.precision);
                1
            }
        };
        Raster::new(width, height, channels, data)
            .ok_or_else(|| MediaError::Corrupt("decoded size does not match the header".into()))
    })
}

fn image_error(e: ImageError, width: u32, height: u32, limits: &Limits) -> MediaError {
    match e {
        ImageError::IoError(io) if io.kind() == ErrorKind::UnexpectedEof => MediaError::Truncated,
        ImageError::Limits(_) => MediaError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        },
        ImageError::Unsupported(what) => MediaError::Unsupported(what.to_string()),
        ImageError::Decoding(what) => {
            let text = what.to_string();
            if text.contains("EOF") || text.contains("end of file") || text.contains("truncated") {
                MediaError::Truncated
            } else {
                MediaError::Corrupt(text)
            }
        }
        other => MediaError::Corrupt(other.to_string()),
    }
}

/// Decodes a PNG (any bit depth and colour type) to 8-bit grey or RGB, compositing any alpha
/// onto white, and returns its raw EXIF (`eXIf` chunk) if it has one before the image data.
/// `width` x `height` is the size declared in IHDR, already checked against the limits.
pub(crate) fn png(
    bytes: &[u8],
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<(Raster, Option<Vec<u8>>), MediaError> {
    let err = |e| image_error(e, width, height, limits);
    guarded(|| {
        let mut png_limits = image::Limits::default();
        png_limits.max_image_width = Some(width);
        png_limits.max_image_height = Some(height);
        // Defence in depth: the decoder refuses to allocate more than 8 bytes (RGBA, 16-bit)
        // per allowed pixel, whatever the header said.
        png_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(1 << 20));
        let mut decoder = PngDecoder::with_limits(Cursor::new(bytes), png_limits).map_err(err)?;
        let exif = decoder.exif_metadata().ok().flatten();
        let image = DynamicImage::from_decoder(decoder).map_err(err)?;
        let (w, h) = (image.width(), image.height());
        let (channels, data) = match image {
            DynamicImage::ImageLuma8(buf) => (1, buf.into_raw()),
            DynamicImage::ImageRgb8(buf) => (3, buf.into_raw()),
            DynamicImage::ImageLumaA8(buf) => {
                let mut data = buf.into_raw();
                raster::flatten_alpha_in_place(&mut data, 1);
                (1, data)
            }
            DynamicImage::ImageRgba8(buf) => {
                let mut data = buf.into_raw();
                raster::flatten_alpha_in_place(&mut data, 3);
                (3, data)
            }
            // 16-bit and other layouts: reduce to 8 bits first.
            other => {
                let colour = other.color();
                match (colour.has_color(), colour.has_alpha()) {
                    (true, true) => {
                        let mut data = other.into_rgba8().into_raw();
                        raster::flatten_alpha_in_place(&mut data, 3);
                        (3, data)
                    }
                    (true, false) => (3, other.into_rgb8().into_raw()),
                    (false, true) => {
                        let mut data = other.into_luma_alpha8().into_raw();
                        raster::flatten_alpha_in_place(&mut data, 1);
                        (1, data)
                    }
                    (false, false) => (1, other.into_luma8().into_raw()),
                }
            }
        };
        let raster = Raster::new(w, h, channels, data)
            .ok_or_else(|| MediaError::Corrupt("decoded size does not match the header".into()))?;
        Ok((raster, exif))
    })
}
