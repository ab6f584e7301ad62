//! The wire format, written from PROTOCOL.md §4-§7 (not from `gridsync-proto`): every message
//! as a serde type in wire order, and length-prefixed frames. Bodies go through the core codec
//! (a version byte and bincode 2.0.1 `standard()`), the only encoder the project allows.

use gridsync_core::codec;
use serde::{Deserialize, Serialize};

/// ALPN of protocol version 1 (§2.1).
pub const ALPN: &[u8] = b"gridsync/1";
/// Largest frame body anyone may send (§4).
pub const MAX_FRAME: u32 = 4 * 1024 * 1024;
/// Largest event encoding a parent accepts (§8.3).
pub const MAX_EVENT_BYTES: usize = 65_536;
/// Largest blob header frame a parent reads (§8.5).
pub const MAX_BLOB_HEADER: u32 = 1024;
/// Largest `Hello.name` (§8.2).
pub const MAX_NAME: usize = 128;
/// Most blobs in one offer (§8.4).
pub const MAX_OFFER: usize = 1024;
/// Most hashes in one `HeldQuery` (§8.12).
pub const MAX_HELD_QUERY: usize = 1024;
/// Events per download page (§8.6).
pub const PAGE_EVENTS: usize = 512;
/// Clock drift a receiver allows (§8.3).
pub const MAX_DRIFT_MS: u64 = 600_000;

/// §6.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Device,
    Street,
    District,
    Community,
}

/// §6.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobKind {
    Photo,
    Thumb,
}

/// §6.4 and §10: the variant index is the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Code {
    Done,
    Version,
    NotEnrolled,
    WrongRole,
    OutOfScope,
    ClockAhead,
    Equivocation,
    Malformed,
    TooLarge,
    Unexpected,
    BlobMismatch,
    Storage,
    Timeout,
    ShuttingDown,
    BadSignature,
    Busy,
    NotAuthorised,
}

impl Code {
    /// Every code, in wire order.
    pub const ALL: [Code; 17] = [
        Code::Done,
        Code::Version,
        Code::NotEnrolled,
        Code::WrongRole,
        Code::OutOfScope,
        Code::ClockAhead,
        Code::Equivocation,
        Code::Malformed,
        Code::TooLarge,
        Code::Unexpected,
        Code::BlobMismatch,
        Code::Storage,
        Code::Timeout,
        Code::ShuttingDown,
        Code::BadSignature,
        Code::Busy,
        Code::NotAuthorised,
    ];

    /// The code's number (§10).
    pub fn number(self) -> u64 {
        Code::ALL.iter().position(|c| *c == self).unwrap_or(0) as u64
    }

    /// The code with this number.
    pub fn from_number(n: u64) -> Option<Code> {
        usize::try_from(n)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
    }
}

/// 32 raw bytes: a node id or a blob hash (§6.1).
pub type Key = [u8; 32];

/// §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub origin: Key,
    pub seq: u64,
}

/// §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_frame: u32,
    pub max_batch_events: u32,
    pub window: u32,
    pub max_blob: u64,
}

/// §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    pub hash: Key,
    pub kind: BlobKind,
    pub size: u64,
}

/// §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want {
    pub hash: Key,
    pub offset: u64,
}

/// §6.5: the first frame of a blob stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobHeader {
    pub hash: Key,
    pub kind: BlobKind,
    pub size: u64,
    pub offset: u64,
}

/// An Ed25519 signature (R, S) (§6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sig {
    pub r: [u8; 32],
    pub s: [u8; 32],
}

/// The domain tag of a node record's signed message (§8.9).
pub const RECORD_DOMAIN: &[u8] = b"gridsync-node-v1\0";

/// §6.5 and §8.9: a relay's signed statement about one of its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub issuer: Key,
    pub node: Key,
    pub role: Role,
    pub scope: String,
    pub serial: u64,
    pub revoked_after: Option<u64>,
    pub signature: Sig,
}

impl NodeRecord {
    /// A record about `node` signed by the issuer whose Ed25519 seed is `secret`: the
    /// signature is over [`RECORD_DOMAIN`] and the body encoding (version byte, then bincode)
    /// of the fields before `signature`, as a tuple.
    pub fn signed(
        secret: &[u8; 32],
        node: Key,
        role: Role,
        scope: &str,
        serial: u64,
        revoked_after: Option<u64>,
    ) -> Result<Self, WireError> {
        use ed25519_dalek::Signer;
        let key = ed25519_dalek::SigningKey::from_bytes(secret);
        let issuer = key.verifying_key().to_bytes();
        let fields = (issuer, node, role, scope, serial, revoked_after);
        let mut message = RECORD_DOMAIN.to_vec();
        message.extend_from_slice(&body("node record", &fields)?);
        let sig = key.sign(&message).to_bytes();
        let (mut r, mut s) = ([0u8; 32], [0u8; 32]);
        r.copy_from_slice(&sig[..32]);
        s.copy_from_slice(&sig[32..]);
        Ok(Self {
            issuer,
            node,
            role,
            scope: scope.to_owned(),
            serial,
            revoked_after,
            signature: Sig { r, s },
        })
    }
}

/// §7: every control-stream message, in variant-index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    Hello {
        versions: Vec<u16>,
        node: Key,
        role: Role,
        name: String,
    },
    Welcome {
        version: u16,
        node: Key,
        role: Role,
        name: String,
        scope: String,
        now_ms: u64,
        heads: Vec<Head>,
        limits: Limits,
    },
    Error {
        code: Code,
        message: String,
    },
    Events {
        batch: u64,
        events: Vec<Vec<u8>>,
    },
    Ack {
        batch: u64,
        stored: u32,
        duplicates: u32,
    },
    Offer {
        blobs: Vec<BlobInfo>,
    },
    Wants {
        wants: Vec<Want>,
    },
    BlobStored {
        hash: Key,
    },
    BlobPartial {
        hash: Key,
        held: u64,
    },
    BlobRefused {
        hash: Key,
        code: Code,
        message: String,
    },
    Pull {
        cursor: u64,
    },
    Down {
        events: Vec<Vec<u8>>,
        cursor: u64,
        more: bool,
    },
    Bye,
    Nodes {
        batch: u64,
        records: Vec<NodeRecord>,
    },
    Follow {
        cursor: u64,
    },
    Fetch {
        hash: Key,
        kind: BlobKind,
        offset: u64,
    },
    /// §8.12: which of these blobs (sent to this parent) does the district hold?
    HeldQuery {
        blobs: Vec<Key>,
    },
    /// §8.12: the asked blobs safe at the parent.
    Held {
        blobs: Vec<Key>,
    },
}

impl Msg {
    /// The message's name, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "Hello",
            Msg::Welcome { .. } => "Welcome",
            Msg::Error { .. } => "Error",
            Msg::Events { .. } => "Events",
            Msg::Ack { .. } => "Ack",
            Msg::Offer { .. } => "Offer",
            Msg::Wants { .. } => "Wants",
            Msg::BlobStored { .. } => "BlobStored",
            Msg::BlobPartial { .. } => "BlobPartial",
            Msg::BlobRefused { .. } => "BlobRefused",
            Msg::Pull { .. } => "Pull",
            Msg::Down { .. } => "Down",
            Msg::Bye => "Bye",
            Msg::Nodes { .. } => "Nodes",
            Msg::Follow { .. } => "Follow",
            Msg::Fetch { .. } => "Fetch",
            Msg::HeldQuery { .. } => "HeldQuery",
            Msg::Held { .. } => "Held",
        }
    }

    /// A short description for reports: the name, and the code of an `Error`.
    pub fn describe(&self) -> String {
        match self {
            Msg::Error { code, message } => format!("Error {{ {code:?}: {message:?} }}"),
            Msg::BlobRefused { code, message, .. } => {
                format!("BlobRefused {{ {code:?}: {message:?} }}")
            }
            Msg::Ack {
                batch,
                stored,
                duplicates,
            } => format!("Ack {{ batch {batch}, stored {stored}, duplicates {duplicates} }}"),
            Msg::BlobPartial { held, .. } => format!("BlobPartial {{ held {held} }}"),
            Msg::Down {
                events,
                cursor,
                more,
            } => format!(
                "Down {{ {} events, cursor {cursor}, more {more} }}",
                events.len()
            ),
            Msg::Held { blobs } => format!("Held {{ {} blobs }}", blobs.len()),
            other => other.name().to_owned(),
        }
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes is over the {limit}-byte limit")]
    TooLarge { len: u64, limit: u32 },
    #[error("frame body does not decode: {0}")]
    Malformed(String),
    #[error("cannot encode {0}: {1}")]
    Encode(&'static str, String),
}

/// A frame body: the version byte and the value (§4, §5).
pub fn body<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, WireError> {
    codec::encode_wire(what, value).map_err(|e| WireError::Encode(what, e.to_string()))
}

/// A whole frame: the 4-byte big-endian length, then the body.
pub fn frame<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, WireError> {
    Ok(frame_of(&body(what, value)?))
}

/// Frames raw body bytes (any bytes, for hostile frames).
pub fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Decodes a message body.
pub fn decode_msg(body: &[u8]) -> Result<Msg, WireError> {
    codec::decode_wire("message", body).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decodes a blob header body.
pub fn decode_blob_header(body: &[u8]) -> Result<BlobHeader, WireError> {
    codec::decode_wire("blob header", body).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Reassembles frames from stream reads of any size (§4), refusing a length over `limit`
/// as soon as the 4 length bytes are in.
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
    limit: u32,
}

impl FrameBuf {
    pub fn new(limit: u32) -> Self {
        Self {
            buf: Vec::new(),
            limit,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame body, if one is buffered.
    pub fn next_body(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let Some(len) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        if len > self.limit {
            return Err(WireError::TooLarge {
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

    /// Bytes buffered past the last whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Takes the bytes buffered past the last whole frame (a blob stream's first bytes).
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reassemble_from_single_bytes_and_refuse_long_prefixes() {
        let f = frame("Bye", &Msg::Bye).expect("encode");
        assert_eq!(f, [0, 0, 0, 2, 1, 12]);
        let mut r = FrameBuf::new(16);
        for b in &f {
            assert_eq!(r.next_body().expect("no error"), None);
            r.push(&[*b]);
        }
        let body = r.next_body().expect("no error").expect("a frame");
        assert_eq!(decode_msg(&body).expect("decodes"), Msg::Bye);
        r.push(&[0, 0, 0, 17]);
        assert!(matches!(
            r.next_body(),
            Err(WireError::TooLarge { len: 17, .. })
        ));
    }

    #[test]
    fn code_numbers_are_the_variant_indices() {
        for (i, c) in Code::ALL.iter().enumerate() {
            assert_eq!(c.number(), i as u64);
            assert_eq!(Code::from_number(i as u64), Some(*c));
            let body = body("code", c).expect("encode");
            assert_eq!(body, vec![1, i as u8]);
        }
        assert_eq!(Code::from_number(17), None);
    }

    /// What the `conformance_wire` fuzz target checks, on mutated golden vectors with a fixed
    /// seed: no panic, and whatever decodes round-trips.
    #[test]
    fn mutated_golden_frames_never_panic_the_decoders() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/wire");
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut decoded = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures/wire") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
            for _ in 0..500 {
                let mut b = bytes.clone();
                for _ in 0..(1 + next() % 4) {
                    let i = (next() as usize) % b.len();
                    match next() % 3 {
                        0 => b[i] = next() as u8,
                        1 => b.truncate(i.max(1)),
                        _ => b.insert(i, next() as u8),
                    }
                }
                let mut r = FrameBuf::new(MAX_FRAME);
                let mut rest = &b[..];
                while !rest.is_empty() {
                    let n = 1 + (next() as usize) % rest.len();
                    r.push(&rest[..n]);
                    rest = &rest[n..];
                    while let Ok(Some(body)) = r.next_body() {
                        if let Ok(m) = decode_msg(&body) {
                            decoded += 1;
                            let again = super::body(m.name(), &m).expect("re-encodes");
                            assert_eq!(decode_msg(&again), Ok(m));
                        }
                        if let Ok(h) = decode_blob_header(&body) {
                            let again = super::body("BlobHeader", &h).expect("re-encodes");
                            assert_eq!(decode_blob_header(&again), Ok(h));
                        }
                    }
                }
            }
        }
        assert!(decoded > 0, "some mutations still decode");
    }
}
