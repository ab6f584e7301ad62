//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes of one encoded
//! message. A length over [`MAX_FRAME`] (or over a smaller limit the receiver set) ends the
//! session with [`crate::ErrorCode::TooLarge`] before anything is allocated for it.

use crate::message::Message;
use gridsync_core::codec::{self, CodecError};

/// The largest frame body anyone may send, in bytes (4 MiB, the core codec's own limit).
pub const MAX_FRAME: u32 = codec::MAX_ENCODED as u32;

/// Why bytes could not be read or written as frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the {limit}-byte limit")]
    TooLarge { len: u64, limit: u32 },
    #[error("frame does not decode: {0}")]
    Malformed(CodecError),
    #[error("cannot encode {what}: {error}")]
    Encode {
        what: &'static str,
        error: CodecError,
    },
    #[error("stream ended inside a frame ({have} of {want} bytes)")]
    Truncated { have: usize, want: usize },
}

/// Encodes `message` as one frame.
pub fn encode(message: &Message) -> Result<Vec<u8>, FrameError> {
    encode_value(message.name(), message)
}

/// Encodes any wire value (a [`Message`] or a [`crate::BlobHeader`]) as one frame.
pub fn encode_value<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, FrameError> {
    let body =
        codec::encode_wire(what, value).map_err(|error| FrameError::Encode { what, error })?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or(FrameError::TooLarge {
            len: body.len() as u64,
            limit: MAX_FRAME,
        })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes one frame body (without its length prefix) as a message.
pub fn decode_body(body: &[u8]) -> Result<Message, FrameError> {
    codec::decode_wire("message", body).map_err(FrameError::Malformed)
}

/// Decodes one frame body as a blob stream header.
pub fn decode_blob_header(body: &[u8]) -> Result<crate::BlobHeader, FrameError> {
    codec::decode_wire("blob header", body).map_err(FrameError::Malformed)
}

/// Reassembles frames from a byte stream delivered in arbitrary pieces.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    limit: u32,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new(MAX_FRAME)
    }
}

impl FrameReader {
    /// A reader refusing frames over `limit` bytes (at most [`MAX_FRAME`]).
    pub fn new(limit: u32) -> Self {
        Self::with_limit(limit.min(MAX_FRAME))
    }

    /// A reader refusing frames over `limit` bytes, which, unlike [`FrameReader::new`], it
    /// keeps even over [`MAX_FRAME`] (it then decodes such frames too). A parent's control
    /// stream is read with its `Limits::max_frame`; the protocol allows no limit over
    /// [`MAX_FRAME`], which only the conformance harness's broken relay sets.
    pub fn with_limit(limit: u32) -> Self {
        Self {
            buf: Vec::new(),
            limit,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame body, if one is buffered.
    pub fn next_body(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(prefix) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len: u64::from(len),
                limit: self.limit,
            });
        }
        let end = 4 + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let body = self.buf[4..end].to_vec();
        self.buf.drain(..end);
        Ok(Some(body))
    }

    /// The next complete message, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        let Some(body) = self.next_body()? else {
            return Ok(None);
        };
        if body.len() > MAX_FRAME as usize {
            // Only a reader made by `with_limit` over MAX_FRAME gets here.
            return codec::decode_wire_oversized("message", &body)
                .map(Some)
                .map_err(FrameError::Malformed);
        }
        decode_body(&body).map(Some)
    }

    /// Bytes received past the last complete frame (on a blob stream: the first blob bytes).
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Checks the stream did not end inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let want = self.buf.get(..4).map_or(4, |p| {
            4 + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize
        });
        Err(FrameError::Truncated {
            have: self.buf.len(),
            want,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let a = encode(&Message::Pull { cursor: 7 }).unwrap();
        let b = encode(&Message::Bye).unwrap();
        let all = [a.clone(), b].concat();
        for cut in 0..=all.len() {
            let mut r = FrameReader::default();
            r.push(&all[..cut]);
            let mut got = Vec::new();
            while let Some(m) = r.next_message().unwrap() {
                got.push(m);
            }
            r.push(&all[cut..]);
            while let Some(m) = r.next_message().unwrap() {
                got.push(m);
            }
            assert_eq!(
                got,
                vec![Message::Pull { cursor: 7 }, Message::Bye],
                "cut {cut}"
            );
            r.finish().unwrap();
        }
    }

    #[test]
    fn oversized_length_is_refused_before_reading_the_body() {
        let mut r = FrameReader::new(1024);
        r.push(&2000u32.to_be_bytes());
        assert_eq!(
            r.next_body(),
            Err(FrameError::TooLarge {
                len: 2000,
                limit: 1024
            })
        );
    }

    #[test]
    fn a_limit_over_max_frame_is_kept_only_when_asked_for() {
        let over = MAX_FRAME + 1;
        let mut r = FrameReader::new(u32::MAX);
        r.push(&over.to_be_bytes());
        assert!(matches!(r.next_body(), Err(FrameError::TooLarge { .. })));
        let mut r = FrameReader::with_limit(u32::MAX);
        r.push(&over.to_be_bytes());
        assert_eq!(r.next_body(), Ok(None), "waits for the body");
        // A valid message over MAX_FRAME (the encoder refuses to make one: built by hand:
        // `Events` is variant 3; 0xfb starts a varint of two bytes) decodes.
        let event = vec![0xaa; 1000];
        let mut body = vec![codec::FORMAT_V1, 3, 7];
        let count = MAX_FRAME as usize / 1000 + 1;
        body.push(0xfb);
        body.extend_from_slice(&u16::try_from(count).expect("fits").to_le_bytes());
        for _ in 0..count {
            body.extend_from_slice(&[0xfb]);
            body.extend_from_slice(&1000u16.to_le_bytes());
            body.extend_from_slice(&event);
        }
        assert!(body.len() > MAX_FRAME as usize);
        let mut r = FrameReader::with_limit(u32::MAX);
        r.push(&(body.len() as u32).to_be_bytes());
        r.push(&body);
        match r.next_message() {
            Ok(Some(Message::Events { batch: 7, events })) => {
                assert_eq!(events.len(), count);
                assert!(events.iter().all(|e| *e == event));
            }
            other => panic!("{other:?}"),
        }
        // The same bytes through a reader with the protocol's limit: refused at the prefix.
        let mut r = FrameReader::default();
        r.push(&(body.len() as u32).to_be_bytes());
        assert!(matches!(r.next_body(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn a_stream_ending_inside_a_frame_is_an_error() {
        let mut r = FrameReader::default();
        r.push(&encode(&Message::Bye).unwrap()[..3]);
        assert!(matches!(r.finish(), Err(FrameError::Truncated { .. })));
    }
}
