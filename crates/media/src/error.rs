//! The one error type of the photo pipeline.

use thiserror::Error;

/// Why a photo was refused or could not be processed.
///
/// Every message is a complete, lower-case phrase meant to be printed after the file name, e.g.
/// `IMG_0042.jpg: image is truncated (the file ends before the image data does)`.
/// None of them includes pixel data or metadata content from the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The file is bigger than [`Limits::max_bytes`](crate::Limits::max_bytes). Checked before
    /// anything else, so nothing was parsed.
    #[error("file is {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        bytes: u64,
        /// The configured limit in bytes.
        limit: u64,
    },

    /// The header declares more pixels than [`Limits::max_pixels`](crate::Limits::max_pixels).
    /// Checked from the header alone, before any pixel is decoded or any pixel buffer allocated.
    #[error("image declares {width}x{height} pixels, over the limit of {limit} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The configured limit (width * height).
        limit: u64,
    },

    /// The bytes are neither a JPEG nor a PNG (the format is decided by the file's magic bytes,
    /// never by its name).
    #[error("not a JPEG or PNG image")]
    UnknownFormat,

    /// The file ends before the image does (for example an upload cut off part-way). A truncated
    /// JPEG is always refused, never turned into a partly grey picture.
    #[error("image is truncated (the file ends before the image data does)")]
    Truncated,

    /// The file claims to be a JPEG or PNG but its structure or compressed data is invalid.
    #[error("corrupt image: {0}")]
    Corrupt(String),

    /// A valid file that uses a feature this pipeline does not decode (for example arithmetic
    /// coded or 12-bit JPEG).
    #[error("unsupported image: {0}")]
    Unsupported(String),

    /// The [`Limits`](crate::Limits) themselves make no sense (for example `max_side == 0`).
    #[error("invalid media limits: {0}")]
    InvalidLimits(String),

    /// Bytes that are not a photo or thumbnail in the form gridsync stores them
    /// ([`check_stored`](crate::check_stored)): not a JPEG, metadata segments, over the size
    /// for the kind, bytes after the end of the image...
    #[error("{0}")]
    NotStored(String),

    /// Encoding the output JPEG failed. Not caused by the input file; indicates a bug or resource
    /// exhaustion.
    #[error("could not encode the stored JPEG: {0}")]
    Encode(String),
}
