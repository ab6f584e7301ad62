//! The child side of a session (a device syncing with its street relay, or a street relay
//! with its district), sans-IO.
//!
//! The order is fixed: `Hello`/`Welcome`; the child's events, in acknowledged batches; the
//! blobs the parent lacks, thumbnails before photos; then the download of the child's scope.
//! The driver sends what [`ClientAction::Send`] says on the control stream, sends each
//! [`ClientAction::SendBlob`] on a stream of its own (reading the bytes from the store) and
//! calls [`ClientSession::blob_sent`] when that stream is finished.
//!
//! Blobs down (PROTOCOL.md §8.11): after the download, a child whose
//! [`ClientConfig::fetch`] asks for it sends one `Fetch` at a time for the blobs
//! [`SyncStore::blobs_to_fetch`] lists, before `Bye`. The driver hands a stream the parent
//! opens to [`ClientSession::fetch_begin`], its bytes to [`ClientSession::fetch_data`] and its
//! end to [`ClientSession::fetch_end`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use gridsync_core::{codec, BlobHash, Event, EventId, NodeId, Scope};

use crate::admit::{Admission, AdmitError, Origins};
use crate::directory::{covers, NodeRecord, MAX_RECORDS};

use crate::message::{
    BlobHeader, BlobInfo, BlobKind, ErrorCode, Head, Limits, Message, Role, Want, FOLLOW_HOLD_MS,
};
use crate::storage::{BlobFinish, BlobState, StorageError, SyncStore};

/// How far this node's clock may be from its parent's before the session warns
/// ([`Progress::ClockSkew`]).
pub const CLOCK_WARNING_MS: u64 = 60_000;

/// How long the child waits for an answer on the control stream before giving up.
pub const RESPONSE_TIMEOUT_MS: u64 = 30_000;
/// Events per upload batch (at most the parent's limit).
pub const BATCH_EVENTS: usize = 256;
/// About this many bytes of events per upload batch.
pub const BATCH_BYTES: usize = 512 * 1024;
/// Most blobs one session fetches (PROTOCOL.md §8.11); the rest wait for the next session.
pub const FETCH_BLOBS: usize = 256;
/// The largest blob a child fetches: a parent's header announcing more is refused (the
/// reference parent takes no larger blob either, `Limits::max_blob`).
pub const MAX_FETCH_BLOB: u64 = 64 * 1024 * 1024;
/// The `STOP_SENDING` code for a stream the parent opened that this session did not ask for,
/// or whose header does not match the `Fetch` (the session fails with `Unexpected` too).
pub const FETCH_STREAM_REFUSED: ErrorCode = ErrorCode::Unexpected;

/// Which blobs a child fetches from its parent after its download (PROTOCOL.md §8.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPolicy {
    /// None: a relay's default (its children's photos come up to it, not down).
    Nothing,
    /// What the store lists ([`SyncStore::blobs_to_fetch`]): the blobs wanted explicitly
    /// (say, a full photo the user asked for), then the missing thumbnails of the visible
    /// photos of the granted scope. A device's default.
    Wanted,
}

/// Who the child is and whom it expects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub node: NodeId,
    pub role: Role,
    pub name: String,
    /// The parent's node id (already pinned by TLS).
    pub parent: NodeId,
    /// How far ahead of this node's clock a downloaded event's timestamp may be.
    pub max_drift_ms: u64,
    /// Whether to upload events that carry no signature (held from before signatures). Off by
    /// default: they stay readable here but are left out of the upload, which a parent would
    /// refuse whole unless it accepts unsigned events (`ServerConfig::accept_unsigned_before`).
    pub upload_unsigned: bool,
    /// Live delivery (§8.10): once the download is complete, hold a `Follow` instead of
    /// saying `Bye`, and store each page the parent pushes, until
    /// [`ClientSession::stop_following`]. Off by default: a session ends when it caught up.
    pub follow: bool,
    /// Whether the session downloads after its uploads. On by default; off for a follower's
    /// photo session, so that only the following session moves the download cursor (and
    /// what arrives is seen by the caller that follows).
    pub download: bool,
    /// Whether the session offers blobs after its events. On by default; a follower's
    /// session leaves them to a session of its own on another connection, so that its events
    /// and the pages pushed to it are never queued behind photos on a slow link (§8.10).
    pub blobs: bool,
    /// Which blobs to fetch from the parent after the download: [`FetchPolicy::Wanted`] for
    /// a device, [`FetchPolicy::Nothing`] for a relay, by default.
    pub fetch: FetchPolicy,
    /// Whether the blob phase ends with `HeldQuery`s about the photos this parent holds and
    /// this node does not know safe yet (PROTOCOL.md §8.12), recording the `Held` answers
    /// ([`SyncStore::mark_safe`]). Only in a session that offers blobs
    /// ([`ClientConfig::blobs`]). On by default for a relay (its children may ask it in
    /// turn); off for a device, which asks only when it prunes its photos.
    pub held_query: bool,
}

impl ClientConfig {
    /// A child `node` of this `role` named `name`, syncing with `parent`, with the default
    /// drift bound.
    pub fn new(node: NodeId, role: Role, name: impl Into<String>, parent: NodeId) -> Self {
        Self {
            node,
            role,
            name: name.into(),
            parent,
            max_drift_ms: gridsync_core::hlc::DEFAULT_MAX_DRIFT_MS,
            upload_unsigned: false,
            follow: false,
            blobs: true,
            download: true,
            fetch: match role {
                Role::Device => FetchPolicy::Wanted,
                Role::Street | Role::District | Role::Community => FetchPolicy::Nothing,
            },
            held_query: role.is_relay(),
        }
    }
}

/// What a session did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events the parent stored for the first time.
    pub events_up: u64,
    /// Events sent that the parent already held.
    pub events_dup: u64,
    /// Events received from the parent (stored here for the first time).
    pub events_down: u64,
    /// Blobs the parent stored.
    pub blobs_up: u64,
    /// Blob bytes sent (from their resume offsets).
    pub blob_bytes_up: u64,
    /// Blobs the parent refused (kept here, offered again next time).
    pub blobs_refused: u64,
    /// Messages sent on the control stream after the handshake that waited for an answer.
    pub round_trips: u64,
    /// Blobs fetched from the parent and stored here (PROTOCOL.md §8.11).
    pub blobs_down: u64,
    /// Bytes received on fetch streams (from their offsets, kept whether the blob completed
    /// or not).
    pub blob_bytes_down: u64,
    /// Blobs the parent said the district holds, in answer to this session's `HeldQuery`s
    /// (PROTOCOL.md §8.12).
    pub blobs_safe: u64,
    /// Fetches the parent refused, or whose bytes were discarded here (fetched again in a
    /// later session while still wanted).
    pub fetches_refused: u64,
}

/// Progress for a UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The parent accepted the session.
    Welcomed { parent: String, scope: String },
    /// The parent's clock (its `Welcome.now_ms`) and this node's differ by more than
    /// [`CLOCK_WARNING_MS`]: this node's clock is probably wrong. Its events are still bounded
    /// at every tier (more than 10 minutes ahead is refused), so the user should fix it.
    ClockSkew { parent_ms: u64, local_ms: u64 },
    /// Events acknowledged so far of those to upload.
    Events { acked: u64, total: u64 },
    /// A blob is being sent from `offset`.
    BlobStarted {
        hash: BlobHash,
        kind: BlobKind,
        size: u64,
        offset: u64,
    },
    /// A blob is stored at the parent.
    BlobStored {
        hash: BlobHash,
        kind: BlobKind,
        size: u64,
    },
    /// Events downloaded so far.
    Downloaded { events: u64 },
    /// A downloaded page was stored: the ids of its events (some may have been held
    /// already), for a caller that reacts to what arrives (notifications).
    Received { events: Vec<EventId> },
    /// Following (§8.10): the download is complete and a `Follow` is held; from here on each
    /// `Received` is a page the parent pushed.
    Following,
    /// A fetch was sent: blob `hash` from byte `offset` (what is held of it already).
    FetchStarted {
        hash: BlobHash,
        kind: BlobKind,
        offset: u64,
    },
    /// A fetched blob arrived whole, hashes to its id, and is stored here.
    Fetched {
        hash: BlobHash,
        kind: BlobKind,
        size: u64,
    },
    /// The parent refused a fetch (the blob stays wanted; a later session asks again).
    FetchRefused {
        hash: BlobHash,
        code: ErrorCode,
        message: String,
    },
    /// A fetch stream ended before the blob's end: the first `held` of its `size` bytes are
    /// kept here, and the next fetch of it resumes from there.
    FetchPartial {
        hash: BlobHash,
        held: u64,
        size: u64,
    },
    /// A fetch stream's bytes were discarded (they did not hash to the blob's id, or ran
    /// past its size): the next fetch of it starts from 0.
    FetchDiscarded { hash: BlobHash, reason: String },
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The parent ended the session with an error.
    #[error("the relay refused: {message} ({code:?})")]
    Refused { code: ErrorCode, message: String },
    /// This side gave up (a bad frame from the relay, the user, shutdown).
    #[error("gave up: {message} ({code:?})")]
    Aborted { code: ErrorCode, message: String },
    /// The parent broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The parent sent bytes that do not decode.
    #[error("malformed message from the relay: {0}")]
    Malformed(String),
    /// One of this node's own events lies outside the scope the parent granted.
    #[error("{0}")]
    OutOfScope(String),
    /// Local storage failed.
    #[error("local store: {0}")]
    Storage(#[from] StorageError),
    /// The parent did not answer in time.
    #[error("the relay did not answer within {0} ms")]
    Timeout(u64),
    /// A downloaded event's timestamp is too far ahead of this node's clock; nothing of the
    /// page was stored.
    #[error("the relay sent an event from too far ahead: {0}")]
    ClockAhead(String),
    /// A downloaded event is unsigned or its signature does not verify; nothing of the page
    /// was stored.
    #[error("the relay sent an event its origin did not sign: {0}")]
    BadSignature(String),
}

impl SessionError {
    /// The code to close the connection with.
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::Refused { code, .. } | SessionError::Aborted { code, .. } => *code,
            SessionError::Protocol(_) => ErrorCode::Unexpected,
            SessionError::Malformed(_) => ErrorCode::Malformed,
            SessionError::OutOfScope(_) => ErrorCode::OutOfScope,
            SessionError::Storage(_) => ErrorCode::Storage,
            SessionError::Timeout(_) => ErrorCode::Timeout,
            SessionError::ClockAhead(_) => ErrorCode::ClockAhead,
            SessionError::BadSignature(_) => ErrorCode::BadSignature,
        }
    }

    /// The error in words without its code, for a QUIC close, whose code travels beside the
    /// reason: the receiver says both (`"{reason} ({code:?})"`, which is this error's
    /// `Display`), so a code is never said twice.
    pub fn close_reason(&self) -> String {
        match self {
            SessionError::Refused { message, .. } => format!("the relay refused: {message}"),
            SessionError::Aborted { message, .. } => format!("gave up: {message}"),
            other => other.to_string(),
        }
    }
}

/// Why the driver could not send a blob stream ([`ClientSession::blob_failed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFailure {
    /// Reading the blob's bytes from the local store failed.
    LocalStore(StorageError),
    /// The blob is no longer in the local store.
    Missing,
    /// The local store holds fewer bytes of the blob than its `size`.
    Short { size: u64 },
    /// The stream (or the connection) broke while the blob was being sent.
    Transport,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Send this message on the control stream.
    Send(Message),
    /// Open a stream, send this header as one frame, then the blob's bytes from
    /// `header.offset` to its end, finish the stream, and call [`ClientSession::blob_sent`].
    SendBlob(BlobHeader),
    /// Report progress.
    Progress(Progress),
    /// The session is over and succeeded (the `Bye` was the last `Send`).
    Finished(Summary),
    /// The session failed (any `Error` to send came just before).
    Failed(SessionError),
}

/// Where a session is, carrying what is valid there.
#[derive(Debug)]
enum Phase {
    /// Made; [`ClientSession::start`] not called yet.
    New,
    /// `Hello` sent; the parent's `Welcome` is awaited.
    AwaitWelcome,
    /// Welcomed: what the parent granted, and how far the session got.
    Granted(Granted, Step),
    /// Over (finished or failed); what was granted, if the session got that far.
    Ended(Option<Granted>),
}

impl Phase {
    /// The phase's name, as errors say where a message was unexpected.
    fn name(&self) -> &'static str {
        match self {
            Phase::New => "New",
            Phase::AwaitWelcome => "AwaitWelcome",
            Phase::Granted(_, Step::Uploading(_)) => "Uploading",
            Phase::Granted(_, Step::Offering(_)) => "Offering",
            Phase::Granted(_, Step::Blobs(_)) => "Blobs",
            Phase::Granted(_, Step::Pulling(_)) => "Pulling",
            Phase::Granted(_, Step::Following(_)) => "Following",
            Phase::Granted(_, Step::Done) => "Done",
            Phase::Granted(_, Step::Fetching(_)) => "Fetching",
            Phase::Granted(_, Step::Asking(_)) => "Asking",
            Phase::Ended(_) => "Ended",
        }
    }
}

/// What the parent's `Welcome` granted.
#[derive(Debug, Clone)]
struct Granted {
    /// The scope this node may send events of and downloads.
    scope: Scope,
    /// The parent's limits for batches and blobs.
    limits: Limits,
}

/// The steps of a welcomed session, in their fixed order (an offer and its blobs may repeat).
#[derive(Debug)]
enum Step {
    /// Sending events in acknowledged batches.
    Uploading(Upload),
    /// An offer sent; its `Wants` (and any `BlobRefused` before it) awaited.
    Offering(Offer),
    /// Wanted blobs sent; the parent's answer for each awaited.
    Blobs(Blobs),
    /// Downloading the scope's events.
    Pulling(Pull),
    /// Caught up, a `Follow` held: each `Down` is a page pushed by the parent (§8.10).
    Following(Pull),
    /// Over without a download (`ClientConfig::download` off): `Bye` and `Finished` are out.
    Done,
    /// After the download: one `Fetch` out, its blob stream or `BlobRefused` awaited.
    Fetching(Fetching),
    /// After the blobs: a `HeldQuery` out, its `Held` awaited (§8.12).
    Asking(Asking),
}

/// A `HeldQuery` awaiting its answer.
#[derive(Debug)]
struct Asking {
    /// The hashes asked about, in ascending order (the next query starts after the last).
    asked: Vec<BlobHash>,
}

/// The fetches of a session (PROTOCOL.md §8.11), one at a time.
#[derive(Debug)]
struct Fetching {
    /// The blob asked for, and from which byte.
    hash: BlobHash,
    kind: BlobKind,
    offset: u64,
    /// Whether the parent's stream for it has begun: then only the stream's end answers it.
    streaming: bool,
    /// The blobs to fetch after this one.
    queue: VecDeque<(BlobHash, BlobKind)>,
}

/// A blob stream the parent opened in answer to a `Fetch`, being received: the driver feeds
/// its bytes to [`ClientSession::fetch_data`] and its end to [`ClientSession::fetch_end`].
#[derive(Debug)]
pub struct FetchSink {
    header: BlobHeader,
    at: u64,
}

impl FetchSink {
    /// The stream's header.
    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    /// Bytes held so far (the offset of the next byte).
    pub fn at(&self) -> u64 {
        self.at
    }

    /// Whether `pending` more bytes (received, not yet given to
    /// [`ClientSession::fetch_data`]) stay within the blob's size; a driver asks after every
    /// read, so a byte past the size is refused with the read that brings it.
    pub fn fits(&self, pending: usize) -> bool {
        self.at
            .checked_add(pending as u64)
            .is_some_and(|end| end <= self.header.size)
    }
}

/// The upload of events.
#[derive(Debug)]
struct Upload {
    /// Origins still to upload, with the last sequence number sent (or held by the parent).
    queue: VecDeque<(NodeId, u64)>,
    next_batch: u64,
    /// Unacknowledged batches, by number.
    in_flight: BTreeMap<u64, InFlight>,
    /// For a relay: the position after which node records are still to send (`None`: all
    /// sent, or a device, which sends none). Records go before events, so that the parent
    /// holds the records vouching for an origin before its events arrive.
    records_after: Option<u64>,
    to_upload: u64,
    acked: u64,
}

/// A batch sent and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
enum InFlight {
    /// `Events`, with the highest own sequence number in it (0: none of this node's own).
    Events { own_max: u64 },
    /// `Nodes`, with the position of its last record.
    Records { upto: u64 },
}

/// What the offers of one session share.
#[derive(Debug, Default)]
struct Offers {
    /// Whether the last offer took as many blobs as an offer may (more may be left).
    was_full: bool,
    /// Blobs of this session the parent refused (answering the offer, or their stream) or
    /// stored only in part: never offered again in this session, so the next offer moves on
    /// to other blobs and the offers end. The next session offers them again.
    declined: BTreeSet<BlobHash>,
}

/// An offer awaiting its answer.
#[derive(Debug)]
struct Offer {
    /// The blobs offered, in order.
    blobs: Vec<BlobInfo>,
    offers: Offers,
}

/// The wanted blobs of an offer, being sent.
#[derive(Debug)]
struct Blobs {
    /// Blobs sent and awaiting `BlobStored`/`BlobRefused`/`BlobPartial`.
    awaiting: BTreeMap<BlobHash, BlobInfo>,
    offers: Offers,
}

/// The download.
#[derive(Debug)]
struct Pull {
    /// The cursor of the last `Pull`.
    cursor: u64,
    /// `Down` pages in a row that said "more" without moving the cursor.
    stalled: u32,
}

/// One session with the parent.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    phase: Phase,
    /// Blob streams the driver is sending, with the bytes each carries. Not part of a step:
    /// the driver may report a stream finished after the parent answered for it, or after
    /// the session ended.
    sending: BTreeMap<BlobHash, u64>,
    /// When the awaited answer is overdue (from [`ClientSession::start`] on, until the end).
    deadline: u64,
    summary: Summary,
    /// The scope the parent granted, once welcomed.
    scope: Option<Scope>,
}

/// Where a message leaves the session.
enum Next {
    /// In the same phase (its data updated in place).
    Stay,
    /// On to this step.
    Step(Step),
    /// Welcomed: granted this, now at this step.
    Welcomed(Granted, Step),
    /// The download is complete (`Bye` and `Finished` are out).
    Finished,
    /// The parent ended the session with an error.
    Refused(SessionError),
    /// A message this phase does not take.
    Unexpected(String),
}

/// What a `Welcome` says.
struct Welcomed<'a> {
    version: u16,
    node: NodeId,
    name: String,
    scope: &'a str,
    heads: &'a [Head],
    limits: Limits,
    /// The parent's clock when it answered.
    parent_ms: u64,
}

/// What a `Down` says.
struct DownPage<'a> {
    events: &'a [Vec<u8>],
    cursor: u64,
    more: bool,
}

/// What a message handler works with besides its phase's data.
struct Cx<'a> {
    config: &'a ClientConfig,
    /// The scope the parent granted, once welcomed (the fetches of a session without a
    /// download need it where no `Granted` is at hand).
    scope: &'a mut Option<Scope>,
    summary: &'a mut Summary,
    sending: &'a mut BTreeMap<BlobHash, u64>,
    store: &'a mut dyn SyncStore,
    /// What the driver must do, so far.
    out: Vec<ClientAction>,
}

/// How a downloaded page refused at admission fails the session, in the words of a download.
fn download_refusal(e: AdmitError) -> SessionError {
    match e {
        AdmitError::TooLarge {
            index,
            bytes,
            limit,
        } => SessionError::Malformed(format!(
            "downloaded event {index} is {bytes} bytes, over the {limit}-byte limit"
        )),
        AdmitError::Malformed { index, error } => {
            SessionError::Malformed(format!("downloaded event {index} does not decode: {error}"))
        }
        AdmitError::Rules {
            index,
            origin,
            seq,
            error,
        } => SessionError::Malformed(format!(
            "downloaded event {index} ({}/{seq}): {error}",
            origin.short()
        )),
        AdmitError::OutOfScope {
            origin, seq, grid, ..
        } => SessionError::Protocol(format!(
            "the relay sent event {}/{seq} of grid {grid}, outside this node's scope",
            origin.short()
        )),
        AdmitError::ClockAhead { .. } => SessionError::ClockAhead(e.to_string()),
        AdmitError::Unsigned { .. } | AdmitError::BadSignature { .. } => {
            SessionError::BadSignature(format!("downloaded {e}"))
        }
        // A download has no batch limit, takes any origin and is not checked against a
        // directory (a child holds none of the tiers above).
        AdmitError::TooMany { .. }
        | AdmitError::NotOwn { .. }
        | AdmitError::NotAuthorised { .. }
        | AdmitError::Directory(_) => {
            SessionError::Protocol(format!("downloaded page refused: {e}"))
        }
    }
}

/// `Down` pages in a row that may say "more" without moving the cursor.
const MAX_STALLED_PAGES: u32 = 4;
/// Most blobs offered at once.
pub const OFFER_BLOBS: usize = 256;
/// Most blobs one `HeldQuery` asks about (the parent takes up to
/// [`crate::limits::MAX_HELD_QUERY`]); a full query is followed by another one.
pub const HELD_BLOBS: usize = 256;

impl ClientSession {
    /// A new session; [`ClientSession::start`] gives the first message.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            phase: Phase::New,
            sending: BTreeMap::new(),
            deadline: 0,
            summary: Summary::default(),
            scope: None,
        }
    }

    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Whether the session is over.
    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended(_))
    }

    /// The scope the parent granted, once welcomed (also after the session ended).
    pub fn scope(&self) -> Option<&Scope> {
        match &self.phase {
            Phase::Granted(g, _) | Phase::Ended(Some(g)) => Some(&g.scope),
            Phase::New | Phase::AwaitWelcome | Phase::Ended(None) => None,
        }
    }

    /// The first message.
    pub fn start(&mut self, now_ms: u64) -> Vec<ClientAction> {
        self.deadline = now_ms + RESPONSE_TIMEOUT_MS;
        if let Phase::New = self.phase {
            self.phase = Phase::AwaitWelcome;
        }
        vec![ClientAction::Send(Message::Hello {
            versions: crate::VERSIONS.to_vec(),
            node: self.config.node,
            role: self.config.role,
            name: self.config.name.clone(),
        })]
    }

    /// When [`ClientSession::handle_timeout`] must be called, if a reply is awaited.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::AwaitWelcome | Phase::Granted(..) if self.sending.is_empty() => {
                Some(self.deadline)
            }
            _ => None,
        }
    }

    /// Ends the session if the awaited reply is overdue.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<ClientAction> {
        match self.poll_timeout() {
            Some(d) if now_ms >= d => {
                self.fail_with_error(SessionError::Timeout(RESPONSE_TIMEOUT_MS))
            }
            _ => Vec::new(),
        }
    }

    /// Ends the session from this side (the user stopped it, shutdown).
    pub fn abort(&mut self, code: ErrorCode, reason: impl Into<String>) -> Vec<ClientAction> {
        let reason = reason.into();
        self.fail_with_error(SessionError::Aborted {
            code,
            message: reason,
        })
    }

    /// The control stream's bytes from the parent did not make a frame.
    pub fn frame_error(&mut self, e: &crate::FrameError) -> Vec<ClientAction> {
        self.fail_with_error(SessionError::Malformed(format!("from the relay: {e}")))
    }

    /// A message to the parent could not be written within [`RESPONSE_TIMEOUT_MS`]: the parent
    /// stopped reading. Fails with `Timeout` (nothing more is sent: the stream is stuck), even
    /// a session that had just ended, whose last message (`Bye`, `Error`) is the stuck one.
    pub fn write_stalled(&mut self, _now_ms: u64) -> Vec<ClientAction> {
        self.fail_silently(SessionError::Timeout(RESPONSE_TIMEOUT_MS))
    }

    /// The parent finished its side of the control stream before the session ended. Fails
    /// with a protocol error (nothing more is sent: the parent reads no more of this session).
    pub fn stream_ended(&mut self) -> Vec<ClientAction> {
        self.fail_silently(SessionError::Protocol(
            "the relay ended the session early".into(),
        ))
    }

    /// The driver could not send blob `hash`'s stream. A local store that cannot give the
    /// bytes fails with `Storage` (transient: the next session offers the blob again); a broken
    /// stream with `Unexpected`. Nothing more is sent: the driver closes the connection.
    pub fn blob_failed(&mut self, hash: &BlobHash, failure: BlobFailure) -> Vec<ClientAction> {
        let e = match failure {
            BlobFailure::LocalStore(e) => SessionError::Storage(e),
            BlobFailure::Missing => SessionError::Storage(StorageError::internal(format!(
                "blob {hash} is no longer in the local store"
            ))),
            BlobFailure::Short { size } => SessionError::Storage(StorageError::internal(format!(
                "blob {hash} is shorter than its {size} bytes"
            ))),
            BlobFailure::Transport => SessionError::Aborted {
                code: ErrorCode::Unexpected,
                message: format!("the stream of blob {hash} broke"),
            },
        };
        self.fail_silently(e)
    }

    /// Ends the session with `e` and no `Error` message: the driver cannot send one. Always
    /// `Failed`, whatever the state: the driver cannot go on.
    fn fail_silently(&mut self, e: SessionError) -> Vec<ClientAction> {
        self.end();
        vec![ClientAction::Failed(e)]
    }

    /// Moves to `Ended`, keeping what was granted.
    fn end(&mut self) {
        let granted = match std::mem::replace(&mut self.phase, Phase::Ended(None)) {
            Phase::Granted(g, _) | Phase::Ended(Some(g)) => Some(g),
            Phase::New | Phase::AwaitWelcome | Phase::Ended(None) => None,
        };
        self.phase = Phase::Ended(granted);
    }

    fn fail_with_error(&mut self, e: SessionError) -> Vec<ClientAction> {
        if self.is_ended() {
            return Vec::new();
        }
        self.end();
        vec![
            ClientAction::Send(Message::Error {
                code: e.code(),
                message: e.to_string(),
            }),
            ClientAction::Failed(e),
        ]
    }

    fn protocol(&mut self, what: String) -> Vec<ClientAction> {
        self.fail_with_error(SessionError::Protocol(what))
    }

    /// Handles one message from the parent.
    pub fn handle(
        &mut self,
        msg: Message,
        store: &mut dyn SyncStore,
        now_ms: u64,
    ) -> Vec<ClientAction> {
        let out = match self.dispatch(msg, store, now_ms) {
            Ok(out) => out,
            Err(e) => self.fail_with_error(e),
        };
        if !self.is_ended() {
            self.deadline = now_ms + self.answer_within();
        }
        out
    }

    /// How long the awaited answer may take: a held `Follow` is answered within the
    /// parent's hold ([`FOLLOW_HOLD_MS`]), any other message within [`RESPONSE_TIMEOUT_MS`].
    fn answer_within(&self) -> u64 {
        match self.phase {
            Phase::Granted(_, Step::Following(_)) => FOLLOW_HOLD_MS + RESPONSE_TIMEOUT_MS,
            _ => RESPONSE_TIMEOUT_MS,
        }
    }

    /// Whether a `Follow` is held (the session caught up and waits for pushed pages).
    pub fn is_following(&self) -> bool {
        matches!(self.phase, Phase::Granted(_, Step::Following(_)))
    }

    /// Stops live delivery: a held `Follow` is given up with `Bye` and the session finishes;
    /// a session not yet caught up finishes at the end of its download instead.
    pub fn stop_following(&mut self) -> Vec<ClientAction> {
        self.config.follow = false;
        if !self.is_following() {
            return Vec::new();
        }
        self.end();
        vec![
            ClientAction::Send(Message::Bye),
            ClientAction::Finished(self.summary.clone()),
        ]
    }

    /// One message, to the handler of the phase that takes it.
    fn dispatch(
        &mut self,
        msg: Message,
        store: &mut dyn SyncStore,
        now_ms: u64,
    ) -> Result<Vec<ClientAction>, SessionError> {
        let mut cx = Cx {
            config: &self.config,
            scope: &mut self.scope,
            summary: &mut self.summary,
            sending: &mut self.sending,
            store,
            out: Vec::new(),
        };
        let next = match (&mut self.phase, msg) {
            (Phase::Ended(_), _) => return Ok(Vec::new()),
            (_, Message::Error { code, message }) => {
                Next::Refused(SessionError::Refused { code, message })
            }
            (
                Phase::AwaitWelcome,
                Message::Welcome {
                    version,
                    node,
                    name,
                    scope,
                    heads,
                    limits,
                    now_ms: parent_ms,
                    ..
                },
            ) => cx.welcome(
                Welcomed {
                    version,
                    node,
                    name,
                    scope: &scope,
                    heads: &heads,
                    limits,
                    parent_ms,
                },
                now_ms,
            )?,
            (
                Phase::Granted(g, Step::Uploading(up)),
                Message::Ack {
                    batch,
                    stored,
                    duplicates,
                },
            ) => cx.ack(g, up, batch, stored, duplicates)?,
            (
                Phase::Granted(_, Step::Offering(offer)),
                Message::BlobRefused {
                    hash,
                    code,
                    message,
                },
            ) => cx.refused_at_offer(offer, hash, code, &message)?,
            (Phase::Granted(_, Step::Offering(offer)), Message::Wants { wants }) => {
                cx.wants(offer, &wants)?
            }
            (Phase::Granted(_, Step::Blobs(blobs)), Message::BlobStored { hash }) => {
                cx.blob_stored(blobs, hash)?
            }
            (
                Phase::Granted(_, Step::Blobs(blobs)),
                Message::BlobRefused {
                    hash,
                    code,
                    message,
                },
            ) => cx.blob_refused(blobs, hash, code, &message)?,
            (Phase::Granted(_, Step::Blobs(blobs)), Message::BlobPartial { hash, held }) => {
                cx.blob_partial(blobs, hash, held)?
            }
            (
                Phase::Granted(g, Step::Pulling(pull)),
                Message::Down {
                    events,
                    cursor,
                    more,
                },
            ) => cx.down(
                g,
                pull,
                DownPage {
                    events: &events,
                    cursor,
                    more,
                },
                now_ms,
                false,
            )?,
            (
                Phase::Granted(g, Step::Following(pull)),
                Message::Down {
                    events,
                    cursor,
                    more,
                },
            ) => cx.down(
                g,
                pull,
                DownPage {
                    events: &events,
                    cursor,
                    more,
                },
                now_ms,
                true,
            )?,
            (
                Phase::Granted(_, Step::Fetching(fetching)),
                Message::BlobRefused {
                    hash,
                    code,
                    message,
                },
            ) => cx.fetch_refused(fetching, hash, code, message)?,
            (Phase::Granted(_, Step::Asking(asking)), Message::Held { blobs }) => {
                cx.held(asking, &blobs)?
            }
            (phase, other) => Next::Unexpected(format!(
                "unexpected {} while {}",
                other.name(),
                phase.name()
            )),
        };
        let mut out = cx.out;
        match next {
            Next::Stay => {}
            Next::Step(Step::Done) => self.end(),
            Next::Step(step) => {
                // Only the handlers of a granted phase move on to a step.
                if let Phase::Granted(_, now) = &mut self.phase {
                    *now = step;
                }
            }
            Next::Welcomed(granted, Step::Done) => {
                self.phase = Phase::Granted(granted, Step::Done);
                self.end();
            }
            Next::Welcomed(granted, step) => self.phase = Phase::Granted(granted, step),
            Next::Finished => self.end(),
            Next::Refused(e) => {
                self.end();
                out.push(ClientAction::Failed(e));
            }
            Next::Unexpected(what) => out.extend(self.protocol(what)),
        }
        Ok(out)
    }

    /// The driver finished sending blob `hash`'s stream (or gave up on it).
    pub fn blob_sent(&mut self, hash: &BlobHash, now_ms: u64) {
        if let Some(bytes) = self.sending.remove(hash) {
            self.summary.blob_bytes_up += bytes;
        }
        if !self.is_ended() {
            self.deadline = now_ms + RESPONSE_TIMEOUT_MS;
        }
    }

    /// A blob stream the parent opened (§8.11) delivered its header. It must answer the
    /// `Fetch` outstanding: same hash, kind and offset, the offset within the size, the size
    /// within [`MAX_FETCH_BLOB`]. Then the driver feeds it to the returned sink; otherwise it
    /// stops the stream with [`FETCH_STREAM_REFUSED`] and carries out the actions (the
    /// session fails with `Unexpected`; none once it has ended).
    pub fn fetch_begin(
        &mut self,
        header: BlobHeader,
        now_ms: u64,
    ) -> Result<FetchSink, Vec<ClientAction>> {
        let h = header;
        let wrong = match &mut self.phase {
            Phase::Ended(_) => return Err(Vec::new()),
            Phase::Granted(_, Step::Fetching(f)) if f.hash == h.hash && !f.streaming => {
                if h.kind != f.kind || h.offset != f.offset {
                    format!(
                        "the relay's stream of blob {} is a {:?} from byte {}, but a {:?} from byte {} was fetched",
                        h.hash, h.kind, h.offset, f.kind, f.offset
                    )
                } else if h.offset > h.size || h.size > MAX_FETCH_BLOB {
                    format!(
                        "the relay's stream of blob {} says {} bytes from byte {} (at most {MAX_FETCH_BLOB} are fetched)",
                        h.hash, h.size, h.offset
                    )
                } else {
                    f.streaming = true;
                    self.deadline = now_ms + RESPONSE_TIMEOUT_MS;
                    return Ok(FetchSink {
                        header: h,
                        at: h.offset,
                    });
                }
            }
            _ => format!(
                "the relay opened a stream of blob {}, which was not fetched",
                h.hash
            ),
        };
        Err(self.protocol(wrong))
    }

    /// Bytes of a fetch stream: written durably to the blob's partial (as a parent keeps an
    /// upload's) before returning `None`. `Some((code, actions))`: stop the stream with
    /// `code` and carry out the actions, which move on to the next fetch (the bytes ran past
    /// the blob's size: everything held of it is discarded, `BlobMismatch`) or fail the
    /// session (the local store failed, `Storage`; what was held of the blob is discarded
    /// too, so the next fetch starts cleanly from 0).
    pub fn fetch_data(
        &mut self,
        sink: &mut FetchSink,
        bytes: &[u8],
        store: &mut dyn SyncStore,
        now_ms: u64,
    ) -> Option<(ErrorCode, Vec<ClientAction>)> {
        let h = sink.header;
        if !self.is_fetching(&h.hash) {
            return Some((FETCH_STREAM_REFUSED, Vec::new()));
        }
        self.deadline = now_ms + RESPONSE_TIMEOUT_MS;
        if !sink.fits(bytes.len()) {
            tracing::warn!(hash = %h.hash, size = h.size, "the relay's fetch stream ran past the blob's size; discarding it");
            let reason = format!(
                "the relay's stream ran past the blob's {} bytes; discarded",
                h.size
            );
            let actions = self.on_fetch(store, |cx, f| {
                cx.store.blob_discard(&h.hash)?;
                cx.discarded(f, reason)
            });
            return Some((ErrorCode::BlobMismatch, actions));
        }
        match store.blob_write(&h.hash, h.kind, h.size, sink.at, bytes) {
            Ok(()) => {
                sink.at += bytes.len() as u64;
                self.summary.blob_bytes_down += bytes.len() as u64;
                None
            }
            Err(e) => {
                let _ = store.blob_discard(&h.hash);
                Some((
                    ErrorCode::Storage,
                    self.fail_with_error(SessionError::Storage(e)),
                ))
            }
        }
    }

    /// A fetch stream ended, cleanly or not, with every byte received given to
    /// [`ClientSession::fetch_data`]. A whole blob is checked against its hash and stored
    /// (no longer wanted; and recorded as held by the parent, so it is never offered back);
    /// bytes that do not hash right are discarded; a short stream leaves its bytes for the
    /// next fetch to resume from. Then the next fetch, or `Bye`.
    pub fn fetch_end(
        &mut self,
        sink: FetchSink,
        store: &mut dyn SyncStore,
        now_ms: u64,
    ) -> Vec<ClientAction> {
        let h = sink.header;
        if !self.is_fetching(&h.hash) {
            return Vec::new();
        }
        self.deadline = now_ms + RESPONSE_TIMEOUT_MS;
        self.on_fetch(store, |cx, f| {
            if sink.at < h.size {
                tracing::info!(hash = %h.hash, held = sink.at, size = h.size, "fetch stream ended early; the next fetch resumes");
                cx.out.push(ClientAction::Progress(Progress::FetchPartial {
                    hash: h.hash,
                    held: sink.at,
                    size: h.size,
                }));
                return cx.after_fetch(f);
            }
            // Only the hash is checked: what a parent holds passed its own check.
            match cx.store.blob_finish(&h.hash, &|_| Ok(()))? {
                BlobFinish::Stored => {
                    cx.store.mark_blob_sent(&cx.config.parent, &h.hash)?;
                    cx.summary.blobs_down += 1;
                    cx.out.push(ClientAction::Progress(Progress::Fetched {
                        hash: h.hash,
                        kind: h.kind,
                        size: h.size,
                    }));
                    cx.after_fetch(f)
                }
                BlobFinish::HashMismatch | BlobFinish::Rejected(_) => {
                    tracing::warn!(hash = %h.hash, size = h.size, "a fetched blob does not hash to its id; discarded");
                    cx.discarded(
                        f,
                        format!("the {} bytes received do not hash to the blob's id; discarded", h.size),
                    )
                }
            }
        })
    }

    /// Bytes of the fetch stream of `hash` arrived (the driver holds them until its next
    /// [`ClientSession::fetch_data`]): the parent is answering, so the response timer
    /// restarts, however slow the link.
    pub fn fetch_progress(&mut self, hash: &BlobHash, now_ms: u64) {
        if self.is_fetching(hash) {
            self.deadline = now_ms + RESPONSE_TIMEOUT_MS;
        }
    }

    /// Whether the fetch of `hash` is outstanding with its stream begun.
    fn is_fetching(&self, hash: &BlobHash) -> bool {
        matches!(&self.phase, Phase::Granted(_, Step::Fetching(f)) if f.hash == *hash && f.streaming)
    }

    /// Runs `f` on the fetch outstanding and goes where it says (as a message's handler
    /// does); the actions to carry out.
    fn on_fetch(
        &mut self,
        store: &mut dyn SyncStore,
        f: impl FnOnce(&mut Cx<'_>, &mut Fetching) -> Result<Next, SessionError>,
    ) -> Vec<ClientAction> {
        let Phase::Granted(_, Step::Fetching(fetching)) = &mut self.phase else {
            return Vec::new();
        };
        let mut cx = Cx {
            config: &self.config,
            scope: &mut self.scope,
            summary: &mut self.summary,
            sending: &mut self.sending,
            store,
            out: Vec::new(),
        };
        let next = f(&mut cx, fetching);
        let mut out = cx.out;
        match next {
            Ok(Next::Stay) => {}
            Ok(Next::Step(step)) => {
                if let Phase::Granted(_, now) = &mut self.phase {
                    *now = step;
                }
            }
            Ok(Next::Finished) => self.end(),
            Ok(Next::Welcomed(..)) | Ok(Next::Refused(_)) | Ok(Next::Unexpected(_)) => {
                // A fetch's end never leads there; fail rather than go on wrongly.
                out.extend(self.protocol("the fetch went astray".into()));
            }
            Err(e) => out.extend(self.fail_with_error(e)),
        }
        out
    }
}

impl Cx<'_> {
    /// `Welcome`: checks what the parent says it is and granted, then plans the upload and
    /// starts it.
    fn welcome(&mut self, w: Welcomed<'_>, local_ms: u64) -> Result<Next, SessionError> {
        let Welcomed {
            version,
            node,
            name,
            scope,
            heads,
            limits,
            parent_ms,
        } = w;
        if !crate::VERSIONS.contains(&version) {
            return Err(SessionError::Protocol(format!(
                "the relay chose version {version}, which this build does not speak"
            )));
        }
        if node != self.config.parent {
            return Err(SessionError::Protocol(format!(
                "the relay says it is {}, not the pinned {}",
                node.short(),
                self.config.parent.short()
            )));
        }
        let Ok(scope) = scope.parse::<Scope>() else {
            return Err(SessionError::Protocol(format!(
                "the relay granted a malformed scope {scope:?}"
            )));
        };
        self.out.push(ClientAction::Progress(Progress::Welcomed {
            parent: name,
            scope: scope.to_string(),
        }));
        if parent_ms.abs_diff(local_ms) > CLOCK_WARNING_MS {
            tracing::warn!(
                parent_ms,
                local_ms,
                "this node's clock is far from its parent's"
            );
            self.out.push(ClientAction::Progress(Progress::ClockSkew {
                parent_ms,
                local_ms,
            }));
        }
        *self.scope = Some(scope.clone());
        let granted = Granted { scope, limits };
        let mut up = self.plan_upload(heads)?;
        let step = match self.pump_upload(&granted, &mut up)? {
            Next::Step(step) => step,
            _ => Step::Uploading(up),
        };
        Ok(Next::Welcomed(granted, step))
    }

    /// `Ack` of a batch in flight: records what the parent now holds of this node's own
    /// events, and sends more.
    fn ack(
        &mut self,
        g: &Granted,
        up: &mut Upload,
        batch: u64,
        stored: u32,
        duplicates: u32,
    ) -> Result<Next, SessionError> {
        let own_max = match up.in_flight.remove(&batch) {
            Some(InFlight::Events { own_max }) => own_max,
            Some(InFlight::Records { upto }) => {
                self.store.records_acked(&self.config.parent, upto)?;
                return self.pump_upload(g, up);
            }
            None => {
                return Err(SessionError::Protocol(format!(
                    "Ack for batch {batch}, which is not in flight"
                )))
            }
        };
        self.summary.events_up += u64::from(stored);
        self.summary.events_dup += u64::from(duplicates);
        up.acked += u64::from(stored) + u64::from(duplicates);
        if own_max > 0 {
            self.store.own_acked(&self.config.parent, own_max)?;
        }
        self.out.push(ClientAction::Progress(Progress::Events {
            acked: up.acked,
            total: up.to_upload.max(up.acked),
        }));
        self.pump_upload(g, up)
    }

    /// `BlobRefused` before the `Wants`: the parent declines an offered blob (too large, or
    /// named by no event it holds). It stays here and is offered again next session.
    fn refused_at_offer(
        &mut self,
        offer: &mut Offer,
        hash: BlobHash,
        code: ErrorCode,
        message: &str,
    ) -> Result<Next, SessionError> {
        if !offer.blobs.iter().any(|i| i.hash == hash) {
            return Err(SessionError::Protocol(format!(
                "BlobRefused for blob {hash}, which was not offered"
            )));
        }
        if !offer.offers.declined.insert(hash) {
            return Err(SessionError::Protocol(format!(
                "the relay refused blob {hash} twice"
            )));
        }
        tracing::warn!(%hash, ?code, %message, "the relay declined an offered blob; it stays here and is offered again next time");
        self.summary.blobs_refused += 1;
        Ok(Next::Stay)
    }

    /// `Wants`: sends the wanted blobs from their offsets, and marks sent those offered and
    /// neither wanted nor refused (the parent holds them).
    fn wants(&mut self, offer: &mut Offer, wants: &[Want]) -> Result<Next, SessionError> {
        let offered = std::mem::take(&mut offer.blobs);
        let offers = std::mem::take(&mut offer.offers);
        let mut sends: Vec<(BlobInfo, u64)> = Vec::new();
        for w in wants {
            let Some(info) = offered.iter().find(|i| i.hash == w.hash).copied() else {
                return Err(SessionError::Protocol(format!(
                    "the relay wants blob {}, which was not offered",
                    w.hash
                )));
            };
            if offers.declined.contains(&w.hash) {
                return Err(SessionError::Protocol(format!(
                    "the relay wants blob {}, which it refused",
                    w.hash
                )));
            }
            if w.offset > info.size {
                return Err(SessionError::Protocol(format!(
                    "the relay wants blob {} from byte {}, past its end",
                    w.hash, w.offset
                )));
            }
            if sends.iter().any(|(i, _)| i.hash == w.hash) {
                return Err(SessionError::Protocol(format!(
                    "the relay wants blob {} twice",
                    w.hash
                )));
            }
            sends.push((info, w.offset));
        }
        for info in &offered {
            if !offers.declined.contains(&info.hash)
                && !sends.iter().any(|(i, _)| i.hash == info.hash)
            {
                self.store.mark_blob_sent(&self.config.parent, &info.hash)?;
            }
        }
        // In the offer's order: thumbnails first.
        sends.sort_by_key(|(i, _)| offered.iter().position(|o| o.hash == i.hash));
        let mut awaiting = BTreeMap::new();
        for (info, offset) in sends {
            awaiting.insert(info.hash, info);
            self.sending.insert(info.hash, info.size - offset);
            self.out.push(ClientAction::Progress(Progress::BlobStarted {
                hash: info.hash,
                kind: info.kind,
                size: info.size,
                offset,
            }));
            self.out.push(ClientAction::SendBlob(BlobHeader {
                hash: info.hash,
                kind: info.kind,
                size: info.size,
                offset,
            }));
        }
        self.after_blobs(Blobs { awaiting, offers }).map(Next::Step)
    }

    /// `BlobStored`: the parent holds a blob sent (it is not offered to it again).
    fn blob_stored(&mut self, blobs: &mut Blobs, hash: BlobHash) -> Result<Next, SessionError> {
        let Some(info) = self.take_awaited(blobs, &hash) else {
            return Err(SessionError::Protocol(format!(
                "BlobStored for blob {hash}, which was not sent"
            )));
        };
        self.store.mark_blob_sent(&self.config.parent, &hash)?;
        self.summary.blobs_up += 1;
        self.out.push(ClientAction::Progress(Progress::BlobStored {
            hash,
            kind: info.kind,
            size: info.size,
        }));
        self.blob_answered(blobs)
    }

    /// `BlobRefused` of a blob sent: kept here, offered again next session.
    fn blob_refused(
        &mut self,
        blobs: &mut Blobs,
        hash: BlobHash,
        code: ErrorCode,
        message: &str,
    ) -> Result<Next, SessionError> {
        if self.take_awaited(blobs, &hash).is_none() {
            return Err(SessionError::Protocol(format!(
                "BlobRefused for blob {hash}, which was not sent"
            )));
        }
        tracing::warn!(%hash, ?code, %message, "the relay refused a blob; it stays here and is offered again next time");
        self.summary.blobs_refused += 1;
        blobs.offers.declined.insert(hash);
        self.blob_answered(blobs)
    }

    /// `BlobPartial`: the parent holds the first `held` bytes of a blob sent; the rest goes
    /// next session.
    fn blob_partial(
        &mut self,
        blobs: &mut Blobs,
        hash: BlobHash,
        held: u64,
    ) -> Result<Next, SessionError> {
        // The stream carried only the bytes from its start up to `held`.
        let remaining = self.sending.remove(&hash);
        if let (Some(remaining), Some(info)) = (remaining, blobs.awaiting.get(&hash)) {
            let start = info.size - remaining;
            self.summary.blob_bytes_up += held.saturating_sub(start);
        }
        if self.take_awaited(blobs, &hash).is_none() {
            return Err(SessionError::Protocol(format!(
                "BlobPartial for blob {hash}, which was not sent"
            )));
        }
        tracing::info!(%hash, held, "the relay holds part of a blob; the rest goes next time");
        blobs.offers.declined.insert(hash);
        self.blob_answered(blobs)
    }

    /// `Down`: admits the page as a parent admits an upload, stores it with the new cursor,
    /// and pulls again or, at the end, says `Bye`.
    fn down(
        &mut self,
        g: &Granted,
        pull: &mut Pull,
        page: DownPage<'_>,
        now_ms: u64,
        following: bool,
    ) -> Result<Next, SessionError> {
        let DownPage {
            events,
            cursor,
            more,
        } = page;
        // The same admission a parent applies to an upload, before anything is stored.
        let admission = Admission {
            from: self.config.parent,
            scope: &g.scope,
            origins: Origins::Any,
            max_events: usize::MAX,
            max_drift_ms: self.config.max_drift_ms,
            // A parent never sends unsigned events down (`ServerSession`'s pull).
            accept_unsigned_before: None,
            // What comes down is the tiers above's business (module `directory`).
            authority: crate::admit::Authority::Unchecked,
        };
        let decoded = admission.admit(events, now_ms).map_err(download_refusal)?;
        // A page that says "more" without moving the cursor would loop forever; one or two
        // (a duplicated page) are harmless.
        if more && cursor <= pull.cursor {
            pull.stalled += 1;
            if pull.stalled > MAX_STALLED_PAGES {
                return Err(SessionError::Protocol(format!(
                    "Down says more after cursor {cursor}, but the cursor does not advance"
                )));
            }
        } else {
            pull.stalled = 0;
        }
        // Nothing new and the cursor where it was: no write (and no disk flush) at all.
        if !decoded.is_empty() || cursor > pull.cursor {
            let c = self.store.commit_download(&decoded, cursor)?;
            self.summary.events_down += u64::from(c.stored);
        }
        pull.cursor = cursor;
        self.out.push(ClientAction::Progress(Progress::Downloaded {
            events: self.summary.events_down,
        }));
        if !decoded.is_empty() {
            self.out.push(ClientAction::Progress(Progress::Received {
                events: decoded.events().iter().map(Event::id).collect(),
            }));
        }
        if following {
            // Pushed or not, the next answer is to a `Follow`: at once if there is more.
            self.out
                .push(ClientAction::Send(Message::Follow { cursor }));
            Ok(Next::Stay)
        } else if more {
            self.summary.round_trips += 1;
            self.out.push(ClientAction::Send(Message::Pull { cursor }));
            Ok(Next::Stay)
        } else if self.config.follow {
            self.summary.round_trips += 1;
            self.out
                .push(ClientAction::Send(Message::Follow { cursor }));
            self.out.push(ClientAction::Progress(Progress::Following));
            Ok(Next::Step(Step::Following(Pull { cursor, stalled: 0 })))
        } else {
            // Blobs down (§8.11), after the download and before `Bye`.
            if let Some(step) = self.start_fetches(g)? {
                return Ok(Next::Step(step));
            }
            self.out.push(ClientAction::Send(Message::Bye));
            self.out.push(ClientAction::Finished(self.summary.clone()));
            Ok(Next::Finished)
        }
    }

    /// Works out, from the parent's heads, which origins to upload from where.
    fn plan_upload(&mut self, heads: &[Head]) -> Result<Upload, SessionError> {
        let head_of = |origin: &NodeId| {
            heads
                .iter()
                .find(|h| h.origin == *origin)
                .map_or(0, |h| h.seq)
        };
        // The parent holds every own event up to its head: as good as an `Ack` for them, and
        // the only one there will be if the `Ack`s were lost with an earlier connection
        // (nothing below the head is sent again, so nothing else would acknowledge it).
        let own_head = head_of(&self.config.node);
        if own_head > 0 {
            self.store.own_acked(&self.config.parent, own_head)?;
        }
        let (origins, records_after) = match self.config.role {
            Role::Device => (vec![self.config.node], None),
            Role::Street | Role::District | Role::Community => (
                self.store.origins()?,
                Some(self.store.records_cursor(&self.config.parent)?),
            ),
        };
        Ok(Upload {
            queue: origins.into_iter().map(|o| (o, head_of(&o))).collect(),
            next_batch: 1,
            in_flight: BTreeMap::new(),
            records_after,
            to_upload: 0,
            acked: 0,
        })
    }

    /// Sends batches while the window has room; moves on to blobs when all are acknowledged.
    fn pump_upload(&mut self, g: &Granted, up: &mut Upload) -> Result<Next, SessionError> {
        let max_events = BATCH_EVENTS.min(g.limits.max_batch_events.max(1) as usize);
        let max_bytes = BATCH_BYTES.min(g.limits.max_frame as usize / 2);
        let window = g.limits.window.clamp(1, 64) as usize;
        while up.in_flight.len() < window {
            if let Some(after) = up.records_after {
                let found = self.store.records_to_send(after, MAX_RECORDS)?;
                let Some(&(upto, _)) = found.last() else {
                    up.records_after = None;
                    continue;
                };
                up.records_after = Some(upto);
                // Records outside the granted scope are the parent's refusal to make, and
                // not its business: leave them out (a message left empty is still sent, so
                // that its `Ack` moves the cursor in order with the batches before it).
                let records: Vec<NodeRecord> = found
                    .into_iter()
                    .map(|(_, r)| r)
                    .filter(|r| covers(&g.scope, &r.scope))
                    .collect();
                let batch = up.next_batch;
                up.next_batch += 1;
                up.in_flight.insert(batch, InFlight::Records { upto });
                self.summary.round_trips += 1;
                self.out
                    .push(ClientAction::Send(Message::Nodes { batch, records }));
                continue;
            }
            let (bodies, own_max) = self.next_batch(g, up, max_events, max_bytes)?;
            if bodies.is_empty() {
                break;
            }
            let batch = up.next_batch;
            up.next_batch += 1;
            up.to_upload += bodies.len() as u64;
            up.in_flight.insert(batch, InFlight::Events { own_max });
            self.summary.round_trips += 1;
            self.out.push(ClientAction::Send(Message::Events {
                batch,
                events: bodies,
            }));
        }
        if up.in_flight.is_empty() && up.queue.is_empty() && up.records_after.is_none() {
            return self.start_offer(Offers::default()).map(Next::Step);
        }
        Ok(Next::Stay)
    }

    /// The next batch: events of the queued origins past what the parent holds, inside the
    /// granted scope (events outside it are the parent's business, not this one's).
    fn next_batch(
        &mut self,
        g: &Granted,
        up: &mut Upload,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Vec<u8>>, u64), SessionError> {
        let mut bodies = Vec::new();
        let mut bytes = 0;
        let mut own_max = 0;
        while let Some((origin, after)) = up.queue.front().copied() {
            if bodies.len() >= max_events || bytes >= max_bytes {
                break;
            }
            let want = max_events - bodies.len();
            let events: Vec<Event> = self.store.events_after(&origin, after, want)?;
            let exhausted = events.len() < want;
            let mut last = after;
            let mut stopped_early = false;
            for e in events {
                if !g.scope.contains(&e.grid) {
                    if self.config.role == Role::Device && origin == self.config.node {
                        return Err(SessionError::OutOfScope(format!(
                            "this device's event {} is in grid {}, but the relay enrolled it for {}; \
                             re-enroll the device for its grid",
                            e.seq, e.grid, g.scope
                        )));
                    }
                    // Another origin's event outside the parent's scope: not its business.
                    last = e.seq;
                    continue;
                }
                if e.signature.is_none() && !self.config.upload_unsigned {
                    // Held from before signatures: the parent would refuse the whole batch
                    // for it, so one such event would block the uplink for good.
                    tracing::debug!(origin = %e.origin.short(), seq = e.seq, "not uploading an unsigned event");
                    last = e.seq;
                    continue;
                }
                let body = codec::encode_event(&e).map_err(|err| {
                    StorageError::internal(format!(
                        "encoding event {}/{}: {err}",
                        e.origin.short(),
                        e.seq
                    ))
                })?;
                if !bodies.is_empty() && bytes + body.len() > max_bytes {
                    stopped_early = true;
                    break;
                }
                last = e.seq;
                bytes += body.len();
                bodies.push(body);
                if origin == self.config.node {
                    own_max = own_max.max(e.seq);
                }
            }
            if exhausted && !stopped_early {
                up.queue.pop_front();
            } else if let Some(front) = up.queue.front_mut() {
                front.1 = last;
            }
        }
        Ok((bodies, own_max))
    }

    /// Offers the next unsent blobs, leaving out those declined in this session (each offer
    /// thus holds blobs not offered before in it, and the offers end); pulls if none is left.
    fn start_offer(&mut self, mut offers: Offers) -> Result<Step, SessionError> {
        if !self.config.blobs {
            return self.start_pull();
        }
        let limit = OFFER_BLOBS + offers.declined.len();
        let unsent = self.store.unsent_blobs(&self.config.parent, limit)?;
        offers.was_full = unsent.len() >= limit;
        let blobs: Vec<BlobInfo> = unsent
            .into_iter()
            .filter(|b| !offers.declined.contains(&b.hash))
            .take(OFFER_BLOBS)
            .collect();
        if blobs.is_empty() {
            return self.start_held(None);
        }
        self.summary.round_trips += 1;
        self.out.push(ClientAction::Send(Message::Offer {
            blobs: blobs.clone(),
        }));
        Ok(Step::Offering(Offer { blobs, offers }))
    }

    /// A blob's answer arrived: once every blob sent is answered, on to the next offer or
    /// the download.
    fn blob_answered(&mut self, blobs: &mut Blobs) -> Result<Next, SessionError> {
        if !blobs.awaiting.is_empty() {
            return Ok(Next::Stay);
        }
        let offers = std::mem::take(&mut blobs.offers);
        self.after_blobs(Blobs {
            awaiting: BTreeMap::new(),
            offers,
        })
        .map(Next::Step)
    }

    /// The step after sending an offer's blobs: awaiting their answers, the next offer, or
    /// the download.
    fn after_blobs(&mut self, blobs: Blobs) -> Result<Step, SessionError> {
        if !blobs.awaiting.is_empty() {
            return Ok(Step::Blobs(blobs));
        }
        // More may be left: offer the next ones. Blobs refused or partly stored in this
        // session are left out of it, so this cannot loop; they go first next session.
        if blobs.offers.was_full {
            return self.start_offer(blobs.offers);
        }
        self.start_held(None)
    }

    /// After the blobs (§8.12): asks the parent which of the photos it holds, with a hash
    /// above `after`, the district holds, if this node does not know it of any of them yet;
    /// otherwise on to the download.
    fn start_held(&mut self, after: Option<BlobHash>) -> Result<Step, SessionError> {
        if self.config.held_query {
            let asked = self
                .store
                .unsafe_sent(&self.config.parent, after.as_ref(), HELD_BLOBS)?;
            if !asked.is_empty() {
                self.summary.round_trips += 1;
                self.out.push(ClientAction::Send(Message::HeldQuery {
                    blobs: asked.clone(),
                }));
                return Ok(Step::Asking(Asking { asked }));
            }
        }
        self.start_pull()
    }

    /// `Held`: records the blobs the parent says the district holds (each must have been
    /// asked about, once), then the next query if the last was full, or the download.
    fn held(&mut self, asking: &mut Asking, blobs: &[BlobHash]) -> Result<Next, SessionError> {
        let asked: BTreeSet<&BlobHash> = asking.asked.iter().collect();
        let mut seen = BTreeSet::new();
        for hash in blobs {
            if !asked.contains(hash) || !seen.insert(hash) {
                return Err(SessionError::Protocol(format!(
                    "Held lists blob {hash}, which was not asked about, or lists it twice"
                )));
            }
        }
        if !blobs.is_empty() {
            self.store.mark_safe(blobs)?;
            self.summary.blobs_safe += blobs.len() as u64;
        }
        if asking.asked.len() >= HELD_BLOBS {
            let last = asking.asked.last().copied();
            return self.start_held(last).map(Next::Step);
        }
        self.start_pull().map(Next::Step)
    }

    fn start_pull(&mut self) -> Result<Step, SessionError> {
        if !self.config.download {
            // Blobs down (§8.11) still: a follower's photo session fetches what the
            // following session's pages named.
            if let Some(scope) = self.scope.clone() {
                if let Some(step) = self.start_fetches_in(&scope)? {
                    return Ok(step);
                }
            }
            self.out.push(ClientAction::Send(Message::Bye));
            self.out.push(ClientAction::Finished(self.summary.clone()));
            return Ok(Step::Done);
        }
        let cursor = self.store.down_cursor(&self.config.parent)?;
        self.summary.round_trips += 1;
        self.out.push(ClientAction::Send(Message::Pull { cursor }));
        Ok(Step::Pulling(Pull { cursor, stalled: 0 }))
    }

    /// The fetches of the session, if the policy asks for any and the store lists some.
    fn start_fetches(&mut self, g: &Granted) -> Result<Option<Step>, SessionError> {
        self.start_fetches_in(&g.scope)
    }

    fn start_fetches_in(&mut self, scope: &Scope) -> Result<Option<Step>, SessionError> {
        match self.config.fetch {
            FetchPolicy::Nothing => Ok(None),
            FetchPolicy::Wanted => {
                let list = self.store.blobs_to_fetch(scope, FETCH_BLOBS)?;
                self.next_fetch(list.into())
            }
        }
    }

    /// Sends the `Fetch` of the first blob of `queue` not held here whole, from what is held
    /// of it; `None` when there is none left.
    fn next_fetch(
        &mut self,
        mut queue: VecDeque<(BlobHash, BlobKind)>,
    ) -> Result<Option<Step>, SessionError> {
        while let Some((hash, kind)) = queue.pop_front() {
            let offset = match self.store.blob_state(&hash)? {
                BlobState::Held => continue,
                BlobState::Partial { offset } => offset,
                BlobState::Missing | BlobState::Unreferenced => 0,
            };
            self.summary.round_trips += 1;
            self.out
                .push(ClientAction::Progress(Progress::FetchStarted {
                    hash,
                    kind,
                    offset,
                }));
            self.out
                .push(ClientAction::Send(Message::Fetch { hash, kind, offset }));
            return Ok(Some(Step::Fetching(Fetching {
                hash,
                kind,
                offset,
                streaming: false,
                queue,
            })));
        }
        Ok(None)
    }

    /// A fetch is answered: the next one, or the end of the session (`Bye`).
    fn after_fetch(&mut self, f: &mut Fetching) -> Result<Next, SessionError> {
        if let Some(step) = self.next_fetch(std::mem::take(&mut f.queue))? {
            return Ok(Next::Step(step));
        }
        self.out.push(ClientAction::Send(Message::Bye));
        self.out.push(ClientAction::Finished(self.summary.clone()));
        Ok(Next::Finished)
    }

    /// `BlobRefused` for the blob fetched (before its stream began): it stays wanted, and a
    /// later session asks again.
    fn fetch_refused(
        &mut self,
        f: &mut Fetching,
        hash: BlobHash,
        code: ErrorCode,
        message: String,
    ) -> Result<Next, SessionError> {
        if hash != f.hash {
            return Err(SessionError::Protocol(format!(
                "BlobRefused for blob {hash}, which was not fetched"
            )));
        }
        if f.streaming {
            return Err(SessionError::Protocol(format!(
                "BlobRefused for blob {hash}, whose stream the relay opened"
            )));
        }
        tracing::info!(%hash, ?code, %message, "the relay refused a fetch");
        self.summary.fetches_refused += 1;
        self.out
            .push(ClientAction::Progress(Progress::FetchRefused {
                hash,
                code,
                message,
            }));
        self.after_fetch(f)
    }

    /// The bytes of the blob fetched were discarded (the store discarded them already).
    fn discarded(&mut self, f: &mut Fetching, reason: String) -> Result<Next, SessionError> {
        self.summary.fetches_refused += 1;
        self.out
            .push(ClientAction::Progress(Progress::FetchDiscarded {
                hash: f.hash,
                reason,
            }));
        self.after_fetch(f)
    }

    /// The parent answered for blob `hash` (possibly before the driver reported its stream
    /// finished: the parent had all its bytes, so they count as sent).
    fn take_awaited(&mut self, blobs: &mut Blobs, hash: &BlobHash) -> Option<BlobInfo> {
        if let Some(bytes) = self.sending.remove(hash) {
            self.summary.blob_bytes_up += bytes;
        }
        blobs.awaiting.remove(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::server::{ServerConfig, ServerSession};
    use crate::testkit::*;

    /// The `Welcome` the relay would send: version 1, the device's grid, no heads.
    fn welcome(limits: Limits) -> Message {
        welcome_as(1, RELAY, GRID, limits)
    }

    fn welcome_as(version: u16, node: NodeId, scope: &str, limits: Limits) -> Message {
        Message::Welcome {
            version,
            node,
            role: Role::Street,
            name: "street-002".into(),
            scope: scope.into(),
            now_ms: NOW,
            heads: Vec::new(),
            limits,
        }
    }

    fn limits() -> Limits {
        relay_config().limits
    }

    /// A device session started and welcomed over `store`; the actions of the `Welcome`.
    fn welcomed(store: &mut MemoryStore, limits: Limits) -> (ClientSession, Vec<ClientAction>) {
        let mut s = ClientSession::new(device_config());
        s.start(NOW);
        let actions = s.handle(welcome(limits), store, NOW);
        (s, actions)
    }

    /// The protocol error a session failed with.
    fn protocol_error(actions: &[ClientAction]) -> &str {
        match failure(actions) {
            Some(SessionError::Protocol(what)) => what,
            other => panic!("not a protocol error: {other:?} in {actions:?}"),
        }
    }

    #[test]
    fn a_session_without_blobs_sends_its_events_and_downloads_but_offers_nothing() {
        let (photo_bytes, thumb) = (&b"the photo's bytes"[..], &b"thumb"[..]);
        let events = [photo(DEVICE, 1, GRID, photo_bytes, thumb)];
        let mut device = device_store(
            &events,
            &[(BlobKind::Photo, photo_bytes), (BlobKind::Thumb, thumb)],
        );
        let mut relay = relay_store();
        let mut config = device_config();
        config.blobs = false;
        let mut child = ClientSession::new(config);
        let mut parent = ServerSession::new(relay_config(), DEVICE);
        let run = run(&mut child, &mut parent, &mut device, &mut relay, NOW);
        let summary = run.finished.expect("finished");
        assert_eq!((summary.events_up, summary.blobs_up), (1, 0));
        assert!(!run
            .messages
            .iter()
            .any(|(up, m)| *up && matches!(m, Message::Offer { .. })));
        assert_eq!(relay.event(&DEVICE, 1), Some(&events[0]));
        assert_eq!(relay.blob(&BlobHash::of(photo_bytes)), None);
    }

    #[test]
    fn a_session_without_download_ends_with_bye_after_its_blobs() {
        let (photo_bytes, thumb) = (&b"the photo's bytes"[..], &b"thumb"[..]);
        let events = [photo(DEVICE, 1, GRID, photo_bytes, thumb)];
        let mut device = device_store(
            &events,
            &[(BlobKind::Photo, photo_bytes), (BlobKind::Thumb, thumb)],
        );
        let mut relay = relay_store();
        let theirs = comment(OTHER, 1, GRID, "not fetched by this session");
        relay.append(std::slice::from_ref(&theirs)).unwrap();
        let mut config = device_config();
        config.download = false;
        let mut child = ClientSession::new(config);
        let mut parent = ServerSession::new(relay_config(), DEVICE);
        let run = run(&mut child, &mut parent, &mut device, &mut relay, NOW);
        let summary = run.finished.expect("finished");
        assert_eq!(
            (summary.events_up, summary.blobs_up, summary.events_down),
            (1, 2, 0)
        );
        assert!(child.is_ended());
        assert!(!run
            .messages
            .iter()
            .any(|(up, m)| *up && matches!(m, Message::Pull { .. })));
        assert_eq!(device.event(&OTHER, 1), None);
        assert_eq!(device.down_cursor(&RELAY).unwrap(), 0);
    }

    #[test]
    fn a_device_uploads_its_events_and_photos_then_downloads_its_grid() {
        let (photo_bytes, thumb) = (&b"the photo's bytes"[..], &b"thumb"[..]);
        let events = [
            comment(DEVICE, 1, GRID, "bags by the gate"),
            photo(DEVICE, 2, GRID, photo_bytes, thumb),
        ];
        let mut device = device_store(
            &events,
            &[(BlobKind::Photo, photo_bytes), (BlobKind::Thumb, thumb)],
        );
        let mut relay = relay_store();
        let theirs = comment(OTHER, 1, GRID, "seen it too");
        relay.append(std::slice::from_ref(&theirs)).unwrap();
        let mut child = ClientSession::new(device_config());
        let mut parent = ServerSession::new(relay_config(), DEVICE);
        let run = run(&mut child, &mut parent, &mut device, &mut relay, NOW);
        assert!(run.failed.is_none(), "{run:?}");
        let summary = run.finished.expect("finished");
        assert_eq!(
            summary,
            Summary {
                events_up: 2,
                events_dup: 0,
                events_down: 1,
                blobs_up: 2,
                blob_bytes_up: (photo_bytes.len() + thumb.len()) as u64,
                blobs_refused: 0,
                round_trips: 3,
                ..Summary::default()
            }
        );
        assert_eq!(run.server_end.map(|e| e.0), Some(ErrorCode::Done));
        // The thumbnail went first.
        let offer = run.messages.iter().find_map(|(up, m)| match m {
            Message::Offer { blobs } if *up => Some(blobs.clone()),
            _ => None,
        });
        assert_eq!(
            offer
                .expect("an offer")
                .iter()
                .map(|b| b.kind)
                .collect::<Vec<_>>(),
            vec![BlobKind::Thumb, BlobKind::Photo]
        );
        assert_eq!(relay.event(&DEVICE, 2), Some(&events[1]));
        assert_eq!(relay.blob(&BlobHash::of(photo_bytes)), Some(photo_bytes));
        assert_eq!(device.event(&OTHER, 1), Some(&theirs));
        assert_eq!(device.via(&OTHER, 1), Some(RELAY));
        assert_eq!(device.acked(&RELAY), 2);
        assert!(device.is_sent(&RELAY, &BlobHash::of(thumb)));
        assert!(child.is_ended() && child.poll_timeout().is_none());
        assert_eq!(child.scope(), Some(&scope(GRID)));

        // Again: nothing to upload, offer or download; only the pull.
        let mut child = ClientSession::new(device_config());
        let mut parent = ServerSession::new(relay_config(), DEVICE);
        let again = crate::testkit::run(&mut child, &mut parent, &mut device, &mut relay, NOW);
        let summary = again.finished.expect("finished");
        assert_eq!(
            summary,
            Summary {
                round_trips: 1,
                ..Summary::default()
            }
        );
    }

    #[test]
    fn batches_stay_within_the_parents_window_and_acks_record_own_progress() {
        let events: Vec<_> = (1..=3)
            .map(|seq| comment(DEVICE, seq, GRID, "one of three"))
            .collect();
        let mut store = device_store(&events, &[]);
        let one_by_two = Limits {
            max_batch_events: 1,
            window: 2,
            ..limits()
        };
        let (mut s, actions) = welcomed(&mut store, one_by_two);
        let batches: Vec<u64> = child_sent(&actions)
            .iter()
            .map(|m| match m {
                Message::Events { batch, events } if events.len() == 1 => *batch,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(batches, vec![1, 2]);
        let ack = |batch| Message::Ack {
            batch,
            stored: 1,
            duplicates: 0,
        };
        let actions = s.handle(ack(1), &mut store, NOW);
        assert_eq!(
            actions,
            vec![
                ClientAction::Progress(Progress::Events { acked: 1, total: 2 }),
                ClientAction::Send(Message::Events {
                    batch: 3,
                    events: vec![body(&events[2])]
                })
            ]
        );
        assert_eq!(store.acked(&RELAY), 1);
        let actions = s.handle(ack(1), &mut store, NOW);
        assert_eq!(
            protocol_error(&actions),
            "Ack for batch 1, which is not in flight"
        );
        assert_eq!(store.acked(&RELAY), 1);
    }

    #[test]
    fn a_clock_more_than_a_minute_off_the_parents_is_reported_and_the_session_goes_on() {
        let skews = |local: u64| {
            let mut store = device_store(&[], &[]);
            let mut s = ClientSession::new(device_config());
            s.start(local);
            let actions = s.handle(welcome(limits()), &mut store, local);
            assert!(failure(&actions).is_none(), "{actions:?}");
            actions
                .iter()
                .filter_map(|a| match a {
                    ClientAction::Progress(p @ Progress::ClockSkew { .. }) => Some(p.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // The parent says NOW; a minute either way is fine.
        assert!(skews(NOW - CLOCK_WARNING_MS).is_empty());
        assert!(skews(NOW + CLOCK_WARNING_MS).is_empty());
        assert_eq!(
            skews(NOW - CLOCK_WARNING_MS - 1),
            [Progress::ClockSkew {
                parent_ms: NOW,
                local_ms: NOW - CLOCK_WARNING_MS - 1
            }]
        );
        assert_eq!(skews(NOW + 3_600_000).len(), 1, "an hour ahead");
    }

    #[test]
    fn a_welcome_that_does_not_add_up_fails_the_session() {
        let cases: Vec<(Message, &str)> = vec![
            (
                welcome_as(9, RELAY, GRID, limits()),
                "the relay chose version 9, which this build does not speak",
            ),
            (
                welcome_as(1, OTHER, GRID, limits()),
                "the relay says it is ed4928c6, not the pinned 8a88e3dd",
            ),
            (
                welcome_as(1, RELAY, "110101//014", limits()),
                "the relay granted a malformed scope \"110101//014\"",
            ),
            (
                Message::Ack {
                    batch: 1,
                    stored: 0,
                    duplicates: 0,
                },
                "unexpected Ack while AwaitWelcome",
            ),
        ];
        for (msg, what) in cases {
            let mut store = MemoryStore::new();
            let mut s = ClientSession::new(device_config());
            s.start(NOW);
            let actions = s.handle(msg, &mut store, NOW);
            assert_eq!(protocol_error(&actions), what);
            assert!(matches!(
                child_sent(&actions)[..],
                [Message::Error {
                    code: ErrorCode::Unexpected,
                    ..
                }]
            ));
            assert!(s.is_ended() && s.scope().is_none());
        }
    }

    #[test]
    fn an_own_event_outside_the_granted_grid_fails_before_anything_is_sent() {
        let mut store = device_store(&[comment(DEVICE, 1, NEXT_GRID, "moved")], &[]);
        let (s, actions) = welcomed(&mut store, limits());
        assert!(
            matches!(
                failure(&actions),
                Some(SessionError::OutOfScope(m)) if m.starts_with("this device's event 1 is in grid 110101/002/014/04, but the relay enrolled it for 110101/002/014/03")
            ),
            "{actions:?}"
        );
        assert!(s.is_ended());
    }

    #[test]
    fn the_parents_error_fails_the_session_without_an_answer() {
        let mut store = MemoryStore::new();
        let mut s = ClientSession::new(device_config());
        s.start(NOW);
        let refused = Message::Error {
            code: ErrorCode::NotEnrolled,
            message: "who are you".into(),
        };
        let actions = s.handle(refused, &mut store, NOW);
        assert_eq!(
            actions,
            vec![ClientAction::Failed(SessionError::Refused {
                code: ErrorCode::NotEnrolled,
                message: "who are you".into()
            })]
        );
        assert!(s.is_ended());
        assert!(s.handle(welcome(limits()), &mut store, NOW).is_empty());
    }

    /// A device holding blobs `a` (thumbnail) and `b` (photo), welcomed: its offer is out.
    fn offering() -> (ClientSession, MemoryStore, BlobInfo, BlobInfo) {
        let mut store = device_store(
            &[],
            &[(BlobKind::Photo, b"photo b"), (BlobKind::Thumb, b"a")],
        );
        let (s, actions) = welcomed(&mut store, limits());
        let [Message::Offer { blobs }] = &child_sent(&actions)[..] else {
            panic!("{actions:?}")
        };
        let [a, b] = blobs[..] else {
            panic!("{blobs:?}")
        };
        assert_eq!((a.kind, b.kind), (BlobKind::Thumb, BlobKind::Photo));
        (s, store, a, b)
    }

    fn want(i: BlobInfo, offset: u64) -> Want {
        Want {
            hash: i.hash,
            offset,
        }
    }

    #[test]
    fn wants_send_what_is_wanted_and_mark_the_rest_held() {
        let (mut s, mut store, a, b) = offering();
        let actions = s.handle(
            Message::Wants {
                wants: vec![want(b, 2)],
            },
            &mut store,
            NOW,
        );
        assert_eq!(
            actions,
            vec![
                ClientAction::Progress(Progress::BlobStarted {
                    hash: b.hash,
                    kind: b.kind,
                    size: 7,
                    offset: 2
                }),
                ClientAction::SendBlob(BlobHeader {
                    hash: b.hash,
                    kind: b.kind,
                    size: 7,
                    offset: 2
                })
            ]
        );
        assert!(store.is_sent(&RELAY, &a.hash) && !store.is_sent(&RELAY, &b.hash));
        // No timeout while a stream is out; the clock runs again once it is sent.
        assert_eq!(s.poll_timeout(), None);
        s.blob_sent(&b.hash, NOW + 10);
        assert_eq!(s.poll_timeout(), Some(NOW + 10 + RESPONSE_TIMEOUT_MS));
        let actions = s.handle(Message::BlobStored { hash: b.hash }, &mut store, NOW + 20);
        assert_eq!(
            actions,
            vec![
                ClientAction::Progress(Progress::BlobStored {
                    hash: b.hash,
                    kind: b.kind,
                    size: 7
                }),
                ClientAction::Send(Message::Pull { cursor: 0 })
            ]
        );
        assert!(store.is_sent(&RELAY, &b.hash));
        assert_eq!((s.summary().blobs_up, s.summary().blob_bytes_up), (1, 5));
    }

    #[test]
    fn a_blob_refused_or_partly_stored_is_kept_for_next_time() {
        let (mut s, mut store, a, b) = offering();
        let refused = |i: BlobInfo| Message::BlobRefused {
            hash: i.hash,
            code: ErrorCode::TooLarge,
            message: "too big".into(),
        };
        assert!(s.handle(refused(a), &mut store, NOW).is_empty());
        s.handle(
            Message::Wants {
                wants: vec![want(b, 0)],
            },
            &mut store,
            NOW,
        );
        let actions = s.handle(
            Message::BlobPartial {
                hash: b.hash,
                held: 3,
            },
            &mut store,
            NOW,
        );
        assert_eq!(
            actions,
            vec![ClientAction::Send(Message::Pull { cursor: 0 })]
        );
        assert!(!store.is_sent(&RELAY, &a.hash) && !store.is_sent(&RELAY, &b.hash));
        let summary = s.summary();
        assert_eq!((summary.blobs_refused, summary.blob_bytes_up), (1, 3));
    }

    #[test]
    fn answers_to_an_offer_that_do_not_add_up_fail_the_session() {
        let stranger = BlobHash::of(b"not offered");
        type Case = fn(BlobInfo, BlobInfo, BlobHash) -> (Vec<Message>, String);
        let cases: Vec<Case> = vec![
            |_, _, x| {
                (
                    vec![Message::BlobRefused {
                        hash: x,
                        code: ErrorCode::OutOfScope,
                        message: "no".into(),
                    }],
                    format!("BlobRefused for blob {x}, which was not offered"),
                )
            },
            |a, _, _| {
                let r = Message::BlobRefused {
                    hash: a.hash,
                    code: ErrorCode::OutOfScope,
                    message: "no".into(),
                };
                (
                    vec![r.clone(), r],
                    format!("the relay refused blob {} twice", a.hash),
                )
            },
            |_, _, x| {
                (
                    vec![Message::Wants {
                        wants: vec![Want { hash: x, offset: 0 }],
                    }],
                    format!("the relay wants blob {x}, which was not offered"),
                )
            },
            |a, _, _| {
                (
                    vec![
                        Message::BlobRefused {
                            hash: a.hash,
                            code: ErrorCode::OutOfScope,
                            message: "no".into(),
                        },
                        Message::Wants {
                            wants: vec![want(a, 0)],
                        },
                    ],
                    format!("the relay wants blob {}, which it refused", a.hash),
                )
            },
            |_, b, _| {
                (
                    vec![Message::Wants {
                        wants: vec![want(b, 8)],
                    }],
                    format!("the relay wants blob {} from byte 8, past its end", b.hash),
                )
            },
            |_, b, _| {
                (
                    vec![Message::Wants {
                        wants: vec![want(b, 0), want(b, 1)],
                    }],
                    format!("the relay wants blob {} twice", b.hash),
                )
            },
            |_, b, _| {
                (
                    vec![
                        Message::Wants { wants: vec![] },
                        Message::BlobStored { hash: b.hash },
                    ],
                    "unexpected BlobStored while Pulling".to_string(),
                )
            },
            |a, b, _| {
                (
                    vec![
                        Message::Wants {
                            wants: vec![want(b, 0)],
                        },
                        Message::BlobStored { hash: a.hash },
                    ],
                    format!("BlobStored for blob {}, which was not sent", a.hash),
                )
            },
        ];
        for case in cases {
            let (mut s, mut store, a, b) = offering();
            let (msgs, what) = case(a, b, stranger);
            let mut last = Vec::new();
            for m in msgs {
                last = s.handle(m, &mut store, NOW);
            }
            assert_eq!(protocol_error(&last), what);
        }
    }

    /// A device with nothing to upload or offer, welcomed: its first `Pull` is out.
    fn pulling() -> (ClientSession, MemoryStore) {
        let mut store = MemoryStore::new();
        let (s, actions) = welcomed(&mut store, limits());
        assert_eq!(child_sent(&actions), vec![&Message::Pull { cursor: 0 }]);
        (s, store)
    }

    #[test]
    fn a_download_is_stored_page_by_page_and_ends_with_bye() {
        let (mut s, mut store) = pulling();
        let first = comment(OTHER, 1, GRID, "first");
        let down = |events: Vec<Vec<u8>>, cursor, more| Message::Down {
            events,
            cursor,
            more,
        };
        let actions = s.handle(down(vec![body(&first)], 5, true), &mut store, NOW);
        assert_eq!(
            actions,
            vec![
                ClientAction::Progress(Progress::Downloaded { events: 1 }),
                ClientAction::Progress(Progress::Received {
                    events: vec![first.id()]
                }),
                ClientAction::Send(Message::Pull { cursor: 5 })
            ]
        );
        assert_eq!(store.down_cursor(&RELAY).unwrap(), 5);
        let actions = s.handle(down(vec![body(&first)], 6, false), &mut store, NOW);
        assert!(
            matches!(
                &actions[..],
                [
                    ClientAction::Progress(Progress::Downloaded { events: 1 }),
                    ClientAction::Progress(Progress::Received { .. }),
                    ClientAction::Send(Message::Bye),
                    ClientAction::Finished(Summary {
                        events_down: 1,
                        round_trips: 2,
                        ..
                    })
                ]
            ),
            "{actions:?}"
        );
        assert_eq!(store.down_cursor(&RELAY).unwrap(), 6);
        assert!(s.is_ended());
    }

    #[test]
    fn a_follower_holds_a_follow_stores_each_pushed_page_and_stops_with_bye() {
        let mut store = MemoryStore::new();
        let mut config = ClientConfig::new(DEVICE, Role::Device, "patrol-7", RELAY);
        config.follow = true;
        let mut s = ClientSession::new(config);
        s.start(NOW);
        let actions = s.handle(welcome(limits()), &mut store, NOW);
        assert_eq!(child_sent(&actions), vec![&Message::Pull { cursor: 0 }]);
        let down = |events: Vec<Vec<u8>>, cursor, more| Message::Down {
            events,
            cursor,
            more,
        };
        // Caught up: a Follow instead of Bye, and the answer may take the parent's hold.
        let actions = s.handle(down(Vec::new(), 4, false), &mut store, NOW);
        assert_eq!(child_sent(&actions), vec![&Message::Follow { cursor: 4 }]);
        assert!(actions.contains(&ClientAction::Progress(Progress::Following)));
        assert!(s.is_following() && !s.is_ended());
        assert_eq!(
            s.poll_timeout(),
            Some(NOW + FOLLOW_HOLD_MS + RESPONSE_TIMEOUT_MS)
        );
        // A pushed page is stored and followed again from its cursor.
        let pushed = comment(OTHER, 1, GRID, "dispatched to you");
        let actions = s.handle(down(vec![body(&pushed)], 9, false), &mut store, NOW + 5);
        assert_eq!(child_sent(&actions), vec![&Message::Follow { cursor: 9 }]);
        assert!(
            actions.contains(&ClientAction::Progress(Progress::Received {
                events: vec![pushed.id()]
            }))
        );
        assert_eq!(store.down_cursor(&RELAY).unwrap(), 9);
        assert_eq!(store.event(&OTHER, 1), Some(&pushed));
        // The hold's empty answer changes nothing but the deadline.
        let actions = s.handle(down(Vec::new(), 9, false), &mut store, NOW + 25_000);
        assert_eq!(child_sent(&actions), vec![&Message::Follow { cursor: 9 }]);
        // Silence past the hold and the response timeout: the session times out.
        let late = NOW + 25_000 + FOLLOW_HOLD_MS + RESPONSE_TIMEOUT_MS;
        assert!(s.handle_timeout(late - 1).is_empty());
        // Stopping: Bye, and the session finishes with what it received.
        let actions = s.stop_following();
        assert!(
            matches!(
                &actions[..],
                [
                    ClientAction::Send(Message::Bye),
                    ClientAction::Finished(Summary { events_down: 1, .. })
                ]
            ),
            "{actions:?}"
        );
        assert!(s.is_ended() && !s.is_following());
        assert!(s.stop_following().is_empty());
    }

    #[test]
    fn stopping_before_the_download_ends_finishes_at_its_end_without_following() {
        let mut store = MemoryStore::new();
        let mut config = ClientConfig::new(DEVICE, Role::Device, "patrol-7", RELAY);
        config.follow = true;
        let mut s = ClientSession::new(config);
        s.start(NOW);
        s.handle(welcome(limits()), &mut store, NOW);
        assert!(s.stop_following().is_empty(), "nothing to stop yet");
        let actions = s.handle(
            Message::Down {
                events: Vec::new(),
                cursor: 0,
                more: false,
            },
            &mut store,
            NOW,
        );
        assert_eq!(child_sent(&actions), vec![&Message::Bye]);
        assert!(s.is_ended());
    }

    #[test]
    fn a_download_page_that_never_advances_fails_the_session() {
        let (mut s, mut store) = pulling();
        let stalled = Message::Down {
            events: Vec::new(),
            cursor: 0,
            more: true,
        };
        for _ in 0..MAX_STALLED_PAGES {
            let actions = s.handle(stalled.clone(), &mut store, NOW);
            assert_eq!(child_sent(&actions), vec![&Message::Pull { cursor: 0 }]);
        }
        let actions = s.handle(stalled, &mut store, NOW);
        assert_eq!(
            protocol_error(&actions),
            "Down says more after cursor 0, but the cursor does not advance"
        );
    }

    #[test]
    fn a_download_page_outside_the_scope_is_refused_whole() {
        let (mut s, mut store) = pulling();
        let page = Message::Down {
            events: vec![
                body(&comment(OTHER, 1, GRID, "fine")),
                body(&comment(OTHER, 2, NEXT_GRID, "not for this device")),
            ],
            cursor: 2,
            more: false,
        };
        let actions = s.handle(page, &mut store, NOW);
        assert_eq!(
            protocol_error(&actions),
            "the relay sent event ed4928c6/2 of grid 110101/002/014/04, outside this node's scope"
        );
        assert_eq!(store.events().count(), 0);
        assert_eq!(store.down_cursor(&RELAY).unwrap(), 0);
    }

    #[test]
    fn a_silent_parent_times_the_session_out_and_each_answer_resets_the_clock() {
        let mut store = MemoryStore::new();
        let mut s = ClientSession::new(device_config());
        assert_eq!(s.poll_timeout(), None, "nothing awaited before the start");
        s.start(NOW);
        assert_eq!(s.poll_timeout(), Some(NOW + RESPONSE_TIMEOUT_MS));
        s.handle(welcome(limits()), &mut store, NOW + 5);
        assert!(s.handle_timeout(NOW + RESPONSE_TIMEOUT_MS).is_empty());
        let actions = s.handle_timeout(NOW + 5 + RESPONSE_TIMEOUT_MS);
        assert_eq!(
            actions,
            vec![
                ClientAction::Send(Message::Error {
                    code: ErrorCode::Timeout,
                    message: format!("the relay did not answer within {RESPONSE_TIMEOUT_MS} ms")
                }),
                ClientAction::Failed(SessionError::Timeout(RESPONSE_TIMEOUT_MS))
            ]
        );
        assert!(s.is_ended() && s.poll_timeout().is_none());
        assert_eq!(s.scope(), Some(&scope(GRID)), "kept after the end");
        assert!(s.abort(ErrorCode::ShuttingDown, "late").is_empty());
    }

    #[test]
    fn a_relay_session_uploads_only_what_its_parent_lacks_in_scope() {
        // A street relay syncing with its district: it forwards its street's events, not
        // those of other streets, and not what the district holds already.
        let street = NodeId::from_secret(&[4; 32]);
        let mut relay = MemoryStore::new();
        relay
            .append(&[
                comment(DEVICE, 1, GRID, "held up there"),
                comment(DEVICE, 2, GRID, "new"),
                comment(OTHER, 1, "110101/003/001/01", "another street"),
            ])
            .unwrap();
        relay.add_record(vouch(&[4; 32], DEVICE, GRID));
        let mut district = MemoryStore::new();
        district.enroll(street, Role::Street, scope(STREET));
        district
            .append(&[comment(DEVICE, 1, GRID, "held up there")])
            .unwrap();
        let mut child =
            ClientSession::new(ClientConfig::new(street, Role::Street, "street-002", RELAY));
        let mut parent =
            ServerSession::new(ServerConfig::new(RELAY, Role::District, "district"), street);
        let first = run(&mut child, &mut parent, &mut relay, &mut district, NOW);
        let summary = first.finished.expect("finished");
        assert_eq!((summary.events_up, summary.events_down), (1, 0));
        assert!(district.event(&DEVICE, 2).is_some() && district.event(&OTHER, 1).is_none());
        assert_eq!(district.via(&DEVICE, 2), Some(street));
        // The record vouching for the device went up first, and is not sent again.
        assert_eq!(district.records_about(&DEVICE).unwrap().len(), 1);
        assert!(relay.records_cursor(&RELAY).unwrap() > 0);
        let mut child =
            ClientSession::new(ClientConfig::new(street, Role::Street, "street-002", RELAY));
        let mut parent =
            ServerSession::new(ServerConfig::new(RELAY, Role::District, "district"), street);
        let again = run(&mut child, &mut parent, &mut relay, &mut district, NOW);
        assert!(again.finished.is_some());
        assert!(!again
            .messages
            .iter()
            .any(|(up, m)| *up && matches!(m, Message::Nodes { .. })));
    }

    /// A record by `issuer` (its secret key) enrolling device `node` for grid `g`.
    fn vouch(issuer: &[u8; 32], node: NodeId, g: &str) -> NodeRecord {
        NodeRecord::issue(issuer, node, Role::Device, scope(g), 1, None).expect("issue")
    }

    /// What a relay child forwards is checked against the records it sent: an origin no
    /// record vouches for, and a device's decision, are refused with `NotAuthorised` and
    /// nothing of the batch is stored; the records themselves stay (they were acknowledged).
    #[test]
    fn a_relay_forwards_only_what_its_records_vouch_for() {
        let street_key = [4; 32];
        let street = NodeId::from_secret(&street_key);
        let mut district = MemoryStore::new();
        district.enroll(street, Role::Street, scope(STREET));
        let cases: [(&str, Vec<Event>, bool); 3] = [
            (
                "an origin no record vouches for",
                vec![comment(OTHER, 1, GRID, "who?")],
                false,
            ),
            ("a device's decision", vec![close(DEVICE, 1, GRID)], true),
            (
                "an honest report after the refused one",
                vec![comment(DEVICE, 1, GRID, "bags")],
                true,
            ),
        ];
        for (what, events, vouched) in cases {
            let mut relay = MemoryStore::new();
            relay.append(&events).unwrap();
            if vouched {
                relay.add_record(vouch(&street_key, DEVICE, GRID));
            }
            let mut child =
                ClientSession::new(ClientConfig::new(street, Role::Street, "street-002", RELAY));
            let mut parent =
                ServerSession::new(ServerConfig::new(RELAY, Role::District, "district"), street);
            let r = run(&mut child, &mut parent, &mut relay, &mut district, NOW);
            let held = events
                .iter()
                .all(|e| district.event(&e.origin, e.seq).is_some());
            if what.starts_with("an honest") {
                assert!(r.finished.is_some() && held, "{what}");
                continue;
            }
            let code = r.failed.as_ref().map(SessionError::code);
            assert_eq!(code, Some(ErrorCode::NotAuthorised), "{what}: {r:?}");
            assert!(
                events
                    .iter()
                    .all(|e| district.event(&e.origin, e.seq).is_none()),
                "{what}: nothing stored"
            );
        }
    }

    /// The migration policy for events held unsigned from before signatures: a relay child
    /// leaves them out of its upload (its signed events still go up: one legacy event does
    /// not block the uplink), uploads them only when configured to and its parent opts in,
    /// and a parent never pages them down.
    #[test]
    fn unsigned_events_are_neither_uploaded_nor_paged_down_unless_both_sides_opt_in() {
        let street = NodeId::from_secret(&[4; 32]);
        let mut legacy = comment(OTHER, 1, GRID, "written before signatures");
        legacy.signature = None;
        let signed = comment(OTHER, 2, GRID, "signed");
        let mut relay = MemoryStore::new();
        relay.append(&[legacy.clone(), signed.clone()]).unwrap();
        relay.add_record(vouch(&[4; 32], OTHER, GRID));
        let mut district = MemoryStore::new();
        district.enroll(street, Role::Street, scope(STREET));
        let config = ClientConfig::new(street, Role::Street, "street-002", RELAY);
        let server = ServerConfig::new(RELAY, Role::District, "district");
        let mut child = ClientSession::new(config.clone());
        let mut parent = ServerSession::new(server.clone(), street);
        let run1 = run(&mut child, &mut parent, &mut relay, &mut district, NOW);
        assert_eq!(run1.finished.expect("finished").events_up, 1);
        assert!(district.event(&OTHER, 1).is_none() && district.event(&OTHER, 2).is_some());

        // Both opt in: the legacy event goes up too.
        let mut config = config;
        config.upload_unsigned = true;
        let mut server = server;
        server.accept_unsigned_before = Some(NOW + 1);
        let mut child = ClientSession::new(config);
        let mut parent = ServerSession::new(server, street);
        let run2 = run(&mut child, &mut parent, &mut relay, &mut district, NOW);
        assert_eq!(run2.finished.expect("finished").events_up, 1);
        assert!(district.event(&OTHER, 1).is_some());

        // A device of that grid downloads the signed event only.
        district.enroll(DEVICE, Role::Device, scope(GRID));
        let mut device = MemoryStore::new();
        let mut child = ClientSession::new(device_config());
        let mut parent =
            ServerSession::new(ServerConfig::new(RELAY, Role::District, "district"), DEVICE);
        let run3 = run(&mut child, &mut parent, &mut device, &mut district, NOW);
        assert_eq!(run3.finished.expect("finished").events_down, 1);
        assert!(device.event(&OTHER, 1).is_none() && device.event(&OTHER, 2).is_some());
    }
}

#[cfg(test)]
/// The driver's failures, as the session decides them.
mod driver_failures {
    use super::*;

    fn session() -> ClientSession {
        let mut s = ClientSession::new(ClientConfig::new(
            NodeId([1; 32]),
            Role::Device,
            "wang-li",
            NodeId([2; 32]),
        ));
        let _ = s.start(1_000);
        s
    }

    fn failure(out: &[ClientAction]) -> &SessionError {
        match out {
            [ClientAction::Failed(e)] => e,
            other => panic!("expected one Failed and nothing sent, got {other:?}"),
        }
    }

    #[test]
    fn a_stalled_write_times_out_even_after_the_end() {
        let mut s = session();
        let out = s.write_stalled(2_000);
        let e = failure(&out);
        assert_eq!(e, &SessionError::Timeout(RESPONSE_TIMEOUT_MS));
        assert_eq!(e.code(), ErrorCode::Timeout);
        assert_eq!(e.to_string(), "the relay did not answer within 30000 ms");
        assert!(s.is_ended());
        assert_eq!(s.poll_timeout(), None);
        // The stuck message may be the last one (`Bye`, `Error`): still a timeout.
        assert_eq!(
            failure(&s.write_stalled(3_000)),
            &SessionError::Timeout(RESPONSE_TIMEOUT_MS)
        );
    }

    #[test]
    fn a_control_stream_ended_by_the_relay_is_a_protocol_error() {
        let mut s = session();
        let out = s.stream_ended();
        let e = failure(&out);
        assert_eq!(e.code(), ErrorCode::Unexpected);
        assert_eq!(
            e.to_string(),
            "protocol error: the relay ended the session early"
        );
        assert!(s.is_ended());
    }

    #[test]
    fn blob_failures_pick_storage_or_unexpected() {
        let hash = BlobHash::of(b"photo");
        let cases = [
            (
                BlobFailure::LocalStore(StorageError::internal("disk I/O error")),
                ErrorCode::Storage,
                "local store: disk I/O error".to_owned(),
            ),
            (
                BlobFailure::Missing,
                ErrorCode::Storage,
                format!("local store: blob {hash} is no longer in the local store"),
            ),
            (
                BlobFailure::Short { size: 4096 },
                ErrorCode::Storage,
                format!("local store: blob {hash} is shorter than its 4096 bytes"),
            ),
            (
                BlobFailure::Transport,
                ErrorCode::Unexpected,
                format!("gave up: the stream of blob {hash} broke (Unexpected)"),
            ),
        ];
        for (why, code, text) in cases {
            let mut s = session();
            let out = s.blob_failed(&hash, why.clone());
            let e = failure(&out);
            assert_eq!(e.code(), code, "{why:?}");
            assert_eq!(e.to_string(), text, "{why:?}");
            assert!(s.is_ended());
        }
    }

    #[test]
    fn a_close_reason_leaves_the_code_to_the_close() {
        let refused = SessionError::Refused {
            code: ErrorCode::NotEnrolled,
            message: "node 0101 is not enrolled".into(),
        };
        assert_eq!(
            refused.close_reason(),
            "the relay refused: node 0101 is not enrolled"
        );
        let aborted = SessionError::Aborted {
            code: ErrorCode::ShuttingDown,
            message: "stopped".into(),
        };
        assert_eq!(aborted.close_reason(), "gave up: stopped");
        // Said with its code, a close reason reads as the error itself.
        for e in [refused, aborted] {
            assert_eq!(
                format!("{} ({:?})", e.close_reason(), e.code()),
                e.to_string()
            );
        }
        // The others name no code: their reason is their text.
        for e in [
            SessionError::Protocol("x".into()),
            SessionError::Malformed("y".into()),
            SessionError::OutOfScope("z".into()),
            SessionError::Storage(StorageError::internal("w")),
            SessionError::Timeout(RESPONSE_TIMEOUT_MS),
        ] {
            assert_eq!(e.close_reason(), e.to_string());
        }
    }
}

#[cfg(test)]
/// Blobs down (PROTOCOL.md §8.11): what a child fetches, how a fetch stream is checked and
/// kept, and what is refused.
mod fetch_tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::server::ServerSession;
    use crate::testkit::*;

    const PHOTO: &[u8] = b"the full photo, as the relay holds it";
    const THUMB: &[u8] = b"its thumbnail";

    /// A relay holding OTHER's photo event in grid `g`, with the photo and its thumbnail.
    fn relay_with_photo(g: &str) -> (MemoryStore, Event) {
        let mut relay = relay_store();
        let added = photo(OTHER, 1, g, PHOTO, THUMB);
        relay.append(std::slice::from_ref(&added)).unwrap();
        relay.add_blob(BlobKind::Photo, PHOTO.to_vec());
        relay.add_blob(BlobKind::Thumb, THUMB.to_vec());
        (relay, added)
    }

    fn session(child: &mut MemoryStore, relay: &mut MemoryStore, cut: Option<u64>) -> Run {
        let mut c = ClientSession::new(device_config());
        let mut p = ServerSession::new(relay_config(), DEVICE);
        let r = run_cut(&mut c, &mut p, child, relay, NOW, cut);
        assert!(c.is_ended(), "{r:?}");
        r
    }

    fn fetches(r: &Run) -> Vec<&Message> {
        r.messages
            .iter()
            .filter(|(up, m)| *up && matches!(m, Message::Fetch { .. }))
            .map(|(_, m)| m)
            .collect()
    }

    #[test]
    fn a_device_fetches_its_grids_thumbnails_then_the_photos_it_wants() {
        let (mut relay, _) = relay_with_photo(GRID);
        let mut device = MemoryStore::new();
        let first = session(&mut device, &mut relay, None);
        let summary = first.finished.clone().expect("finished");
        assert_eq!((summary.events_down, summary.blobs_down), (1, 1));
        assert_eq!(summary.blob_bytes_down, THUMB.len() as u64);
        assert_eq!(
            fetches(&first),
            vec![&Message::Fetch {
                hash: BlobHash::of(THUMB),
                kind: BlobKind::Thumb,
                offset: 0
            }]
        );
        assert_eq!(device.blob(&BlobHash::of(THUMB)), Some(THUMB));
        assert_eq!(
            device.blob(&BlobHash::of(PHOTO)),
            None,
            "not the full photo"
        );
        // Held by the parent: never offered back to it.
        assert!(device.is_sent(&RELAY, &BlobHash::of(THUMB)));
        assert_eq!(first.messages.last().map(|(_, m)| m), Some(&Message::Bye));

        // Nothing missing: no fetch at all.
        let again = session(&mut device, &mut relay, None);
        assert!(fetches(&again).is_empty());
        assert_eq!(again.finished.expect("finished").round_trips, 1);

        // The user wants the full photo: it comes in the next session, byte for byte.
        device.want(BlobHash::of(PHOTO), BlobKind::Photo);
        let wanted = session(&mut device, &mut relay, None);
        let summary = wanted.finished.expect("finished");
        assert_eq!((summary.blobs_down, summary.fetches_refused), (1, 0));
        assert_eq!(device.blob(&BlobHash::of(PHOTO)), Some(PHOTO));
        assert!(
            !device.is_wanted(&BlobHash::of(PHOTO)),
            "a stored blob is no longer wanted"
        );
    }

    #[test]
    fn a_relay_child_fetches_nothing_by_default() {
        let config = ClientConfig::new(RELAY, Role::Street, "street-002", OTHER);
        assert_eq!(config.fetch, FetchPolicy::Nothing);
        assert_eq!(device_config().fetch, FetchPolicy::Wanted);
        // A device told not to fetch does not either.
        let (mut relay, _) = relay_with_photo(GRID);
        let mut device = MemoryStore::new();
        let mut config = device_config();
        config.fetch = FetchPolicy::Nothing;
        let mut c = ClientSession::new(config);
        let mut p = ServerSession::new(relay_config(), DEVICE);
        let r = run(&mut c, &mut p, &mut device, &mut relay, NOW);
        assert!(fetches(&r).is_empty() && r.finished.is_some());
        assert_eq!(device.blob(&BlobHash::of(THUMB)), None);
    }

    #[test]
    fn fetches_out_of_scope_or_not_held_are_refused_and_nothing_is_stored() {
        // A photo of the next grid (the device somehow knows its hash), and one of its own
        // grid whose bytes never reached the relay.
        let (mut relay, _) = relay_with_photo(NEXT_GRID);
        let missing = photo(OTHER, 2, GRID, b"not uploaded yet", b"nor its thumb");
        relay.append(std::slice::from_ref(&missing)).unwrap();
        let mut device = MemoryStore::new();
        device.want(BlobHash::of(PHOTO), BlobKind::Photo);
        let r = session(&mut device, &mut relay, None);
        let summary = r.finished.expect("finished");
        // The wanted photo, then the missing thumbnail of the device's grid.
        assert_eq!(summary.fetches_refused, 2);
        assert_eq!(summary.blobs_down, 0);
        let refusals: Vec<ErrorCode> = r
            .messages
            .iter()
            .filter_map(|(up, m)| match m {
                Message::BlobRefused { code, .. } if !*up => Some(*code),
                _ => None,
            })
            .collect();
        assert_eq!(
            refusals,
            vec![ErrorCode::OutOfScope, ErrorCode::BlobMismatch]
        );
        assert_eq!(device.blob(&BlobHash::of(PHOTO)), None);
        assert_eq!(device.partial(&BlobHash::of(PHOTO)), None);
        assert!(
            device.is_wanted(&BlobHash::of(PHOTO)),
            "still wanted: asked again later"
        );
    }

    #[test]
    fn an_interrupted_fetch_keeps_its_bytes_and_resumes_from_its_offset() {
        let (mut relay, _) = relay_with_photo(GRID);
        let mut device = MemoryStore::new();
        device.want(BlobHash::of(PHOTO), BlobKind::Photo);
        let cut = 10;
        let first = session(&mut device, &mut relay, Some(cut));
        assert_eq!(
            device.partial(&BlobHash::of(PHOTO)),
            Some(&PHOTO[..cut as usize])
        );
        assert_eq!(device.blob(&BlobHash::of(PHOTO)), None);
        assert_eq!(first.finished.expect("finished").blobs_down, 0);
        let second = session(&mut device, &mut relay, None);
        assert!(fetches(&second).contains(&&Message::Fetch {
            hash: BlobHash::of(PHOTO),
            kind: BlobKind::Photo,
            offset: cut
        }));
        // The thumbnail, cut too, resumes likewise: only the rest of each comes.
        let summary = second.finished.expect("finished");
        assert_eq!((summary.blobs_down, summary.fetches_refused), (2, 0));
        assert_eq!(
            summary.blob_bytes_down,
            (PHOTO.len() + THUMB.len()) as u64 - 2 * cut
        );
        assert_eq!(device.blob(&BlobHash::of(PHOTO)), Some(PHOTO));
        assert_eq!(device.partial(&BlobHash::of(PHOTO)), None);
    }

    /// A device session at its one `Fetch` of the photo (the download was empty).
    fn fetching(store: &mut MemoryStore) -> ClientSession {
        store.want(BlobHash::of(PHOTO), BlobKind::Photo);
        let mut s = ClientSession::new(device_config());
        s.start(NOW);
        let welcome = Message::Welcome {
            version: 1,
            node: RELAY,
            role: Role::Street,
            name: "street-002".into(),
            scope: GRID.into(),
            now_ms: NOW,
            heads: Vec::new(),
            limits: relay_config().limits,
        };
        s.handle(welcome, store, NOW);
        let down = Message::Down {
            events: Vec::new(),
            cursor: 0,
            more: false,
        };
        let actions = s.handle(down, store, NOW);
        assert_eq!(
            child_sent(&actions),
            vec![&Message::Fetch {
                hash: BlobHash::of(PHOTO),
                kind: BlobKind::Photo,
                offset: 0
            }]
        );
        s
    }

    fn header(size: u64, offset: u64) -> BlobHeader {
        BlobHeader {
            hash: BlobHash::of(PHOTO),
            kind: BlobKind::Photo,
            size,
            offset,
        }
    }

    fn ended_with_bye(actions: &[ClientAction]) -> bool {
        child_sent(actions) == vec![&Message::Bye]
            && matches!(actions.last(), Some(ClientAction::Finished(_)))
    }

    #[test]
    fn the_response_timer_restarts_with_every_piece_of_a_fetch_stream() {
        let mut store = MemoryStore::new();
        let mut s = fetching(&mut store);
        assert_eq!(s.poll_timeout(), Some(NOW + RESPONSE_TIMEOUT_MS));
        let size = PHOTO.len() as u64;
        let mut sink = s.fetch_begin(header(size, 0), NOW + 10).expect("fetched");
        assert_eq!(s.poll_timeout(), Some(NOW + 10 + RESPONSE_TIMEOUT_MS));
        s.fetch_progress(&BlobHash::of(PHOTO), NOW + 20);
        assert_eq!(s.poll_timeout(), Some(NOW + 20 + RESPONSE_TIMEOUT_MS));
        assert!(s
            .fetch_data(&mut sink, &PHOTO[..4], &mut store, NOW + 30)
            .is_none());
        assert_eq!(s.poll_timeout(), Some(NOW + 30 + RESPONSE_TIMEOUT_MS));
        // Another blob's progress is none of this fetch's.
        s.fetch_progress(&BlobHash::of(THUMB), NOW + 40);
        assert_eq!(s.poll_timeout(), Some(NOW + 30 + RESPONSE_TIMEOUT_MS));
        // A parent that goes quiet mid-stream times the session out.
        let actions = s.handle_timeout(NOW + 30 + RESPONSE_TIMEOUT_MS);
        assert_eq!(
            failure(&actions),
            Some(&SessionError::Timeout(RESPONSE_TIMEOUT_MS))
        );
        assert_eq!(
            store.partial(&BlobHash::of(PHOTO)),
            Some(&PHOTO[..4]),
            "kept"
        );
    }

    #[test]
    fn fetched_bytes_that_do_not_hash_right_are_discarded() {
        let mut store = MemoryStore::new();
        let mut s = fetching(&mut store);
        let size = PHOTO.len() as u64;
        let mut sink = s
            .fetch_begin(header(size, 0), NOW)
            .expect("the stream fetched");
        let mut bad = PHOTO.to_vec();
        bad[3] ^= 1;
        assert!(s.fetch_data(&mut sink, &bad, &mut store, NOW).is_none());
        let actions = s.fetch_end(sink, &mut store, NOW);
        assert!(actions
            .iter()
            .any(|a| matches!(a, ClientAction::Progress(Progress::FetchDiscarded { .. }))));
        assert!(ended_with_bye(&actions), "{actions:?}");
        assert_eq!(store.blob(&BlobHash::of(PHOTO)), None);
        assert_eq!(store.partial(&BlobHash::of(PHOTO)), None);
        assert_eq!(s.summary().fetches_refused, 1);
    }

    #[test]
    fn bytes_past_the_size_stop_the_stream_and_are_discarded_at_once() {
        let mut store = MemoryStore::new();
        let mut s = fetching(&mut store);
        let size = PHOTO.len() as u64;
        let mut sink = s
            .fetch_begin(header(size, 0), NOW)
            .expect("the stream fetched");
        assert!(s
            .fetch_data(&mut sink, &PHOTO[..8], &mut store, NOW)
            .is_none());
        assert!(!sink.fits(PHOTO.len()));
        let (code, actions) = s
            .fetch_data(&mut sink, PHOTO, &mut store, NOW)
            .expect("refused");
        assert_eq!(code, ErrorCode::BlobMismatch);
        assert!(ended_with_bye(&actions), "{actions:?}");
        assert_eq!(
            store.partial(&BlobHash::of(PHOTO)),
            None,
            "all of it discarded"
        );
        // The stream's end, reported after, changes nothing.
        assert!(s.fetch_end(sink, &mut store, NOW).is_empty());
    }

    #[test]
    fn a_stream_that_was_not_fetched_or_does_not_match_fails_the_session() {
        let size = PHOTO.len() as u64;
        let other = BlobHeader {
            hash: BlobHash::of(THUMB),
            ..header(size, 0)
        };
        let wrong_kind = BlobHeader {
            kind: BlobKind::Thumb,
            ..header(size, 0)
        };
        let cases = [
            (other, "the relay opened a stream of blob"),
            (header(size, 3), "but a Photo from byte 0 was fetched"),
            (wrong_kind, "but a Photo from byte 0 was fetched"),
            (
                header(MAX_FETCH_BLOB + 1, 0),
                "at most 67108864 are fetched",
            ),
        ];
        for (h, says) in cases {
            let mut store = MemoryStore::new();
            let mut s = fetching(&mut store);
            let actions = s.fetch_begin(h, NOW).expect_err("refused");
            match failure(&actions) {
                Some(SessionError::Protocol(what)) => assert!(what.contains(says), "{what}"),
                other => panic!("{h:?}: {other:?}"),
            }
            assert!(s.is_ended());
            // After the end, a stream is stopped and nothing more happens.
            assert!(s
                .fetch_begin(header(size, 0), NOW)
                .expect_err("ended")
                .is_empty());
        }
        // A second stream for the fetch being received, and a refusal after its stream
        // began, are protocol errors too.
        let mut store = MemoryStore::new();
        let mut s = fetching(&mut store);
        let _sink = s.fetch_begin(header(size, 0), NOW).expect("fetched");
        assert!(s.fetch_begin(header(size, 0), NOW).is_err());
        let mut store = MemoryStore::new();
        let mut s = fetching(&mut store);
        let _sink = s.fetch_begin(header(size, 0), NOW).expect("fetched");
        let refused = Message::BlobRefused {
            hash: BlobHash::of(PHOTO),
            code: ErrorCode::BlobMismatch,
            message: "no".into(),
        };
        let actions = s.handle(refused, &mut store, NOW);
        assert!(matches!(failure(&actions), Some(SessionError::Protocol(_))));
    }
}

#[cfg(test)]
/// Which blobs are safe (PROTOCOL.md §8.12): the child asks after its blobs, records the
/// answer, and a parent answers only the safe subset of its scope.
mod held_tests {
    use super::*;
    use crate::limits::MAX_HELD_QUERY;
    use crate::memory::MemoryStore;
    use crate::server::{ServerConfig, ServerSession};
    use crate::testkit::*;

    const PHOTO: &[u8] = b"the full photo";
    const THUMB: &[u8] = b"its thumbnail";

    fn queries(r: &Run) -> Vec<&Message> {
        r.messages
            .iter()
            .filter(|(up, m)| *up && matches!(m, Message::HeldQuery { .. }))
            .map(|(_, m)| m)
            .collect()
    }

    /// A device that prunes, and so asks.
    fn asking_device() -> ClientConfig {
        ClientConfig {
            held_query: true,
            ..device_config()
        }
    }

    fn sync(child: &mut MemoryStore, parent: &mut MemoryStore, config: ServerConfig) -> Run {
        let mut c = ClientSession::new(asking_device());
        let mut p = ServerSession::new(config, DEVICE);
        let r = run(&mut c, &mut p, child, parent, NOW);
        assert!(r.failed.is_none() && r.finished.is_some(), "{r:?}");
        r
    }

    #[test]
    fn a_photo_is_safe_only_once_the_parent_knows_the_district_holds_it() {
        let added = photo(DEVICE, 1, GRID, PHOTO, THUMB);
        let mut device = device_store(
            std::slice::from_ref(&added),
            &[(BlobKind::Photo, PHOTO), (BlobKind::Thumb, THUMB)],
        );
        let mut street = relay_store();
        let hash = BlobHash::of(PHOTO);
        // The photo goes up, and is asked about in the same session: the street does not
        // know the district holds it, so nothing is safe.
        let first = sync(&mut device, &mut street, relay_config());
        assert_eq!(first.finished.as_ref().unwrap().blobs_up, 2);
        assert_eq!(
            queries(&first),
            vec![&Message::HeldQuery { blobs: vec![hash] }]
        );
        assert!(first
            .messages
            .contains(&(false, Message::Held { blobs: vec![] })));
        assert!(device.safe_blobs(&[hash]).unwrap().is_empty());
        // Asked again in every session until it is safe (the thumbnail never is asked).
        let second = sync(&mut device, &mut street, relay_config());
        assert_eq!(queries(&second).len(), 1);
        // The street's upstream said the district holds it: the next session learns it.
        street.mark_safe(&[hash]).unwrap();
        let third = sync(&mut device, &mut street, relay_config());
        assert!(third
            .messages
            .contains(&(false, Message::Held { blobs: vec![hash] })));
        assert_eq!(third.finished.as_ref().unwrap().blobs_safe, 1);
        assert_eq!(device.safe_blobs(&[hash]).unwrap(), vec![hash]);
        // Then it is never asked about again.
        let fourth = sync(&mut device, &mut street, relay_config());
        assert!(queries(&fourth).is_empty());
    }

    #[test]
    fn at_the_district_every_blob_held_is_safe_at_once() {
        let added = photo(DEVICE, 1, GRID, PHOTO, THUMB);
        let mut child = device_store(
            std::slice::from_ref(&added),
            &[(BlobKind::Photo, PHOTO), (BlobKind::Thumb, THUMB)],
        );
        let mut district = relay_store();
        let config = ServerConfig::new(RELAY, Role::District, "district");
        let r = sync(&mut child, &mut district, config);
        let hash = BlobHash::of(PHOTO);
        assert!(r
            .messages
            .contains(&(false, Message::Held { blobs: vec![hash] })));
        assert_eq!(child.safe_blobs(&[hash]).unwrap(), vec![hash]);
    }

    /// A parent session past its `Welcome`, on `store`, as `role`.
    fn welcomed_parent(store: &mut MemoryStore, role: Role) -> ServerSession {
        let mut s = ServerSession::new(ServerConfig::new(RELAY, role, "relay"), DEVICE);
        let out = s.handle(hello(DEVICE, Role::Device), store, NOW);
        assert!(
            matches!(sent(&out)[..], [Message::Welcome { .. }]),
            "{out:?}"
        );
        s
    }

    #[test]
    fn the_answer_is_the_safe_subset_of_the_childs_scope_each_once() {
        let mut store = relay_store();
        let mine = photo(DEVICE, 1, GRID, b"mine", b"mine thumb");
        let other = photo(OTHER, 1, NEXT_GRID, b"other grid", b"other thumb");
        store.append(&[mine, other]).unwrap();
        for bytes in [&b"mine"[..], b"other grid", b"unsafe"] {
            store.add_blob(BlobKind::Photo, bytes.to_vec());
        }
        let (mine, outside, never) = (
            BlobHash::of(b"mine"),
            BlobHash::of(b"other grid"),
            BlobHash::of(b"never uploaded"),
        );
        store.mark_safe(&[mine, outside, never]).unwrap();
        for role in [Role::Street, Role::District] {
            let mut s = welcomed_parent(&mut store, role);
            let out = s.handle(
                Message::HeldQuery {
                    blobs: vec![outside, mine, never, mine],
                },
                &mut store,
                NOW,
            );
            // Outside the child's grid, or never held here: simply not in the answer.
            assert_eq!(
                sent(&out),
                vec![&Message::Held { blobs: vec![mine] }],
                "{role:?}"
            );
            assert_eq!(ended_with(&out), None);
        }
    }

    #[test]
    fn a_held_query_over_the_limit_ends_the_session_with_too_large() {
        let mut store = relay_store();
        let mut s = welcomed_parent(&mut store, Role::Street);
        let out = s.handle(
            Message::HeldQuery {
                blobs: vec![BlobHash([7; 32]); MAX_HELD_QUERY + 1],
            },
            &mut store,
            NOW,
        );
        assert_eq!(ended_with(&out), Some(ErrorCode::TooLarge));
        // At the limit it is answered.
        let mut s = welcomed_parent(&mut store, Role::Street);
        let out = s.handle(
            Message::HeldQuery {
                blobs: vec![BlobHash([7; 32]); MAX_HELD_QUERY],
            },
            &mut store,
            NOW,
        );
        assert_eq!(sent(&out), vec![&Message::Held { blobs: vec![] }]);
    }

    #[test]
    fn a_held_answer_naming_a_blob_not_asked_about_fails_the_session() {
        let added = photo(DEVICE, 1, GRID, PHOTO, THUMB);
        let mut device = device_store(
            std::slice::from_ref(&added),
            &[(BlobKind::Photo, PHOTO), (BlobKind::Thumb, THUMB)],
        );
        let hash = BlobHash::of(PHOTO);
        device.mark_blob_sent(&RELAY, &hash).unwrap();
        device.mark_blob_sent(&RELAY, &BlobHash::of(THUMB)).unwrap();
        let mut s = ClientSession::new(asking_device());
        s.start(NOW);
        let out = s.handle(
            Message::Welcome {
                version: 1,
                node: RELAY,
                role: Role::Street,
                name: "street-002".into(),
                scope: GRID.into(),
                now_ms: NOW,
                heads: vec![Head {
                    origin: DEVICE,
                    seq: 1,
                }],
                limits: relay_config().limits,
            },
            &mut device,
            NOW,
        );
        assert_eq!(
            child_sent(&out),
            vec![&Message::HeldQuery { blobs: vec![hash] }]
        );
        let out = s.handle(
            Message::Held {
                blobs: vec![BlobHash::of(THUMB)],
            },
            &mut device,
            NOW,
        );
        assert_eq!(
            failure(&out).map(SessionError::code),
            Some(ErrorCode::Unexpected)
        );
        assert!(device
            .safe_blobs(&[BlobHash::of(THUMB)])
            .unwrap()
            .is_empty());
    }
}
