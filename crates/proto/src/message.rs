//! The messages of protocol version 1, exactly as they go on the wire.
//!
//! Every message on a control stream is one [`Message`], encoded by
//! [`gridsync_core::codec::encode_wire`] (the version byte `0x01`, then bincode 2.0.1 serde
//! encoding with `config::standard()`) and sent as one frame ([`crate::frame`]). A blob stream
//! starts with one frame holding a [`BlobHeader`], followed by the blob's raw bytes from the
//! header's offset to the end of the stream. `proto/PROTOCOL.md` is the normative text; golden
//! vectors in `fixtures/wire/` pin the bytes of every message.

use gridsync_core::{BlobHash, NodeId};
use serde::{Deserialize, Serialize};

/// The QUIC ALPN protocol id.
pub const ALPN: &[u8] = b"gridsync/1";
/// The protocol versions this build speaks, newest first.
pub const VERSIONS: &[u16] = &[1];

/// What a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A grid assistant's handheld.
    Device,
    /// A street sub-center relay.
    Street,
    /// The district relay.
    District,
    /// A community workstation relay, between a community's handhelds and their street.
    Community,
}

impl Role {
    /// Every role, in wire order.
    pub const ALL: [Role; 4] = [Role::Device, Role::Street, Role::District, Role::Community];

    /// The role named `name` (as [`Role::as_str`] writes it: `device`, `street`, `district`,
    /// `community`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The role's name as the CLIs print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Street => "street",
            Role::District => "district",
            Role::Community => "community",
        }
    }

    /// Whether this is a relay (a platform): anything but a device.
    pub fn is_relay(self) -> bool {
        self != Role::Device
    }

    /// The relay role whose scope has `segments` segments: 1 the district, 2 a street, 3 a
    /// community; none for a grid (4: a device's).
    pub fn of_scope_depth(segments: usize) -> Option<Self> {
        match segments {
            1 => Some(Role::District),
            2 => Some(Role::Street),
            3 => Some(Role::Community),
            _ => None,
        }
    }
}

/// Numbers the session and QUIC connection close codes use (`proto/PROTOCOL.md`, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u16)]
pub enum ErrorCode {
    /// Normal end of a session.
    Done = 0,
    /// No protocol version in common.
    Version = 1,
    /// The peer's node id is not enrolled here (or was revoked).
    NotEnrolled = 2,
    /// The peer claims another role or node id than it is enrolled with.
    WrongRole = 3,
    /// An event lies outside the scope the peer is enrolled for, or has a foreign origin.
    OutOfScope = 4,
    /// An event's timestamp is too far ahead of this node's clock.
    ClockAhead = 5,
    /// An event id already stored with other content.
    Equivocation = 6,
    /// A frame or message that does not decode.
    Malformed = 7,
    /// A frame over the size limit.
    TooLarge = 8,
    /// A message that is not allowed in the session's current state.
    Unexpected = 9,
    /// A blob whose bytes do not hash to its id, or an unknown blob.
    BlobMismatch = 10,
    /// The node's storage failed; retry later.
    Storage = 11,
    /// The peer did not answer in time.
    Timeout = 12,
    /// The node is shutting down; retry later.
    ShuttingDown = 13,
    /// An event that is not signed by its origin's key, or whose signature does not verify
    /// (it was altered, or signed by another key).
    BadSignature = 14,
    /// The peer is at a limit for this node (its connections at once); retry later.
    Busy = 15,
    /// An event its origin may not write (an operator decision from a handheld, an origin no
    /// chain of node records vouches for, a revoked key's later event), or a node record its
    /// issuer may not make.
    NotAuthorised = 16,
}

impl ErrorCode {
    /// The code as a number (also the QUIC application close code).
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code of a number, if it is one.
    pub fn from_u16(n: u16) -> Option<Self> {
        use ErrorCode::*;
        [
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
        ]
        .into_iter()
        .find(|c| c.as_u16() == n)
    }

    /// Whether retrying the same session later can succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::Storage | ErrorCode::Timeout | ErrorCode::ShuttingDown | ErrorCode::Busy
        )
    }
}

/// A parent's sequence number for one origin: it holds every event `1..=seq` of `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub origin: NodeId,
    pub seq: u64,
}

/// The parent's limits for this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame the parent accepts, in bytes (length prefix excluded).
    pub max_frame: u32,
    /// Most events in one [`Message::Events`] batch.
    pub max_batch_events: u32,
    /// Most unacknowledged batches the child may have in flight.
    pub window: u32,
    /// Largest blob the parent accepts, in bytes.
    pub max_blob: u64,
}

/// Photo or thumbnail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobKind {
    Photo,
    Thumb,
}

/// A blob the child holds and may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    pub hash: BlobHash,
    pub kind: BlobKind,
    pub size: u64,
}

/// A blob the parent wants, from `offset` on (it already holds the bytes before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want {
    pub hash: BlobHash,
    pub offset: u64,
}

/// The first frame of a blob stream; the blob's bytes `offset..size` follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobHeader {
    pub hash: BlobHash,
    pub kind: BlobKind,
    pub size: u64,
    pub offset: u64,
}

/// One control-stream message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Child → parent, first message: who it is and which versions it speaks.
    Hello {
        versions: Vec<u16>,
        node: NodeId,
        role: Role,
        name: String,
    },
    /// Parent → child, the answer to `Hello`: the version chosen, who the parent is, the scope
    /// the child is enrolled for, the parent's clock, and per origin the child may send the
    /// highest contiguous sequence number the parent holds (origins not listed: none).
    Welcome {
        version: u16,
        node: NodeId,
        role: Role,
        name: String,
        scope: String,
        now_ms: u64,
        heads: Vec<Head>,
        limits: Limits,
    },
    /// Either side: the session ends with this code (the sender then closes the stream).
    Error { code: ErrorCode, message: String },
    /// Child → parent: a batch of events, each encoded by the core codec.
    Events { batch: u64, events: Vec<Vec<u8>> },
    /// Parent → child: batch `batch` is committed (`stored` new, `duplicates` already held).
    Ack {
        batch: u64,
        stored: u32,
        duplicates: u32,
    },
    /// Child → parent: blobs the child holds that the parent may lack, thumbnails first.
    Offer { blobs: Vec<BlobInfo> },
    /// Parent → child: the offered blobs it wants, in the offer's order, with resume offsets.
    /// Offered blobs not listed are held already, or not referenced by any event it holds.
    Wants { wants: Vec<Want> },
    /// Parent → child: blob `hash` is verified and committed.
    BlobStored { hash: BlobHash },
    /// Parent → child: the stream of blob `hash` ended before the blob's end; the parent
    /// keeps the first `held` bytes and wants the rest from there in a later session.
    BlobPartial { hash: BlobHash, held: u64 },
    /// Parent → child: blob `hash` was refused: its stream was not acceptable, or its bytes
    /// did not hash to `hash` (then the partial bytes are discarded).
    BlobRefused {
        hash: BlobHash,
        code: ErrorCode,
        message: String,
    },
    /// Child → parent: send the events of my scope after `cursor`.
    Pull { cursor: u64 },
    /// Parent → child: events of the child's scope, in the parent's arrival order; `cursor`
    /// is where the next `Pull` continues; `more` says whether there is more now.
    Down {
        events: Vec<Vec<u8>>,
        cursor: u64,
        more: bool,
    },
    /// Child → parent: the session is over.
    Bye,
    /// Child (a relay) → parent: node records of its scope, sent before the events they vouch
    /// for; answered by `Ack` with the same batch numbering as `Events`.
    Nodes {
        batch: u64,
        records: Vec<crate::directory::NodeRecord>,
    },
    /// Child → parent: like `Pull`, but when nothing follows `cursor` the parent holds the
    /// answer until an event of the child's scope commits there (or at most
    /// [`FOLLOW_HOLD_MS`], then an empty `Down`): live delivery without polling (§8.10).
    Follow { cursor: u64 },
    /// Child → parent: send me blob `hash` (a photo or thumbnail of an event of my scope)
    /// from byte `offset` on; the parent answers with a blob stream of its own, or with
    /// `BlobRefused` (§8.11).
    Fetch {
        hash: BlobHash,
        kind: BlobKind,
        offset: u64,
    },
    /// Child → parent: which of these blobs (ones the child sent this parent) are safe at
    /// the parent, that is held by the district (§8.12)? At most
    /// [`crate::limits::MAX_HELD_QUERY`] hashes; answered by `Held`.
    HeldQuery { blobs: Vec<BlobHash> },
    /// Parent → child, the answer to `HeldQuery`: the asked blobs that are safe at the
    /// parent (the district holds them) and that a photo event of the child's scope names,
    /// in the query's order, each once.
    Held { blobs: Vec<BlobHash> },
}

/// The longest a parent holds a `Follow` with nothing to send before it answers an empty
/// `Down`: under the 30 s QUIC idle timeout, so the answer also keeps a quiet connection (and
/// the NAT bindings on its path) alive.
pub const FOLLOW_HOLD_MS: u64 = 25_000;

impl Message {
    /// The message's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Welcome { .. } => "Welcome",
            Message::Error { .. } => "Error",
            Message::Events { .. } => "Events",
            Message::Ack { .. } => "Ack",
            Message::Offer { .. } => "Offer",
            Message::Wants { .. } => "Wants",
            Message::BlobStored { .. } => "BlobStored",
            Message::BlobPartial { .. } => "BlobPartial",
            Message::BlobRefused { .. } => "BlobRefused",
            Message::Pull { .. } => "Pull",
            Message::Down { .. } => "Down",
            Message::Bye => "Bye",
            Message::Nodes { .. } => "Nodes",
            Message::Follow { .. } => "Follow",
            Message::Fetch { .. } => "Fetch",
            Message::HeldQuery { .. } => "HeldQuery",
            Message::Held { .. } => "Held",
        }
    }
}
