//! Every byte gridsync encodes goes through this module.
//!
//! Format: one version byte ([`FORMAT_V1`] = `0x01`) followed by the value in bincode 2.0.1's
//! serde encoding with `bincode::config::standard()` (little-endian, variable-length integers);
//! an encoding is at most [`MAX_ENCODED`] bytes, version byte included. Decoding refuses an
//! unknown version byte, trailing bytes and anything over the limit; whatever the encoder
//! accepts, the decoder reads back. Golden vectors in `fixtures/codec/` pin the
//! bytes; swapping the codec means changing this file and those vectors only.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::Event;
use crate::merge::IncidentState;

/// The version byte that starts every encoding.
pub const FORMAT_V1: u8 = 0x01;
/// The largest encoding accepted, in bytes.
pub const MAX_ENCODED: usize = 4 * 1024 * 1024;

/// Bytes that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty input")]
    Empty,
    #[error("unknown format version {0:#04x} (this build reads {FORMAT_V1:#04x})")]
    Version(u8),
    #[error("{0} bytes is over the {MAX_ENCODED}-byte limit")]
    TooLarge(usize),
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("{0} trailing bytes after the {1}")]
    Trailing(usize, &'static str),
    #[error("cannot encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
}

/// The limit handed to bincode. bincode does not count input bytes against it: it counts the
/// in-memory size of what it decodes (8 for a `u64` or a length that took one varint byte, 4
/// for an enum index, a string's length before allocating it). With [`MAX_ENCODED`] there, a
/// valid encoding of less than [`MAX_ENCODED`] bytes made of many small fields (a state
/// cache with many event ids or comments) was refused with `LimitExceeded`, although the
/// encoder had accepted it. No type encoded here counts more than 8 per encoded byte, so
/// `8 * MAX_ENCODED` lets every input of at most [`MAX_ENCODED`] bytes decode; it still bounds
/// what a lying length prefix can make the decoder allocate. The input itself is held to
/// [`MAX_ENCODED`] bytes before bincode sees it.
const BINCODE_LIMIT: usize = 8 * MAX_ENCODED;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<BINCODE_LIMIT>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<BINCODE_LIMIT>()
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_V1];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| {
        CodecError::Encode {
            what,
            detail: e.to_string(),
        }
    })?;
    if out.len() > MAX_ENCODED {
        return Err(CodecError::TooLarge(out.len()));
    }
    Ok(out)
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    decode_checked(what, bytes, true)
}

/// [`decode`], holding the input to [`MAX_ENCODED`] bytes only when `limited` (bincode's
/// allocation limit holds either way).
fn decode_checked<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limited: bool,
) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_V1 {
        return Err(CodecError::Version(version));
    }
    if limited && bytes.len() > MAX_ENCODED {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let (value, used) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| CodecError::Malformed {
            what,
            detail: e.to_string(),
        })?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used, what));
    }
    Ok(value)
}

/// Encodes an event.
pub fn encode_event(event: &Event) -> Result<Vec<u8>, CodecError> {
    encode("event", event)
}

/// Decodes an event, checking every field's invariants (grid code, category, location).
pub fn decode_event(bytes: &[u8]) -> Result<Event, CodecError> {
    decode("event", bytes)
}

/// Encodes a materialised incident state (a cache: it can always be rebuilt from events).
pub fn encode_state(state: &IncidentState) -> Result<Vec<u8>, CodecError> {
    encode("incident state", state)
}

/// Decodes a materialised incident state.
pub fn decode_state(bytes: &[u8]) -> Result<IncidentState, CodecError> {
    decode("incident state", bytes)
}

/// Encodes a sync protocol message (`gridsync-proto` defines the types), in the same format
/// as everything else: the version byte, then bincode `config::standard()`.
pub fn encode_wire<T: Serialize>(what: &'static str, message: &T) -> Result<Vec<u8>, CodecError> {
    encode(what, message)
}

/// Decodes a sync protocol message, with the same checks as every other decode.
pub fn decode_wire<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    decode(what, bytes)
}

/// [`decode_wire`] for an input over [`MAX_ENCODED`] bytes, which it decodes instead of
/// refusing; every other check stays, and so does the bound on what decoding may allocate
/// (`8 * MAX_ENCODED` bytes of decoded values), so far larger bodies still fail. The protocol
/// allows no such frame: this is for a frame reader configured with a limit over the
/// protocol's, which only the conformance harness's broken relay does. The caller bounds the
/// input.
pub fn decode_wire_oversized<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    decode_checked(what, bytes, false)
}
