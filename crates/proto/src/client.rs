//! The child side of a session (a device syncing with its street relay, or a street relay
//! with its district), sans-IO.
//!
//! The order is fixed: `Hello`/`Welcome`; the child's events, in acknowledged batches; the
//! blobs the parent lacks, thumbnails before photos; then the download of the child's scope.
//! The driver sends what [`ClientAction::Send`] says on the control stream, sends each
//! [`ClientAction::SendBlob`] on a stream of its own (reading the bytes from the store) and
//! calls [`ClientSession::blob_sent`] when that stream is finished.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use gridsync_core::{codec, BlobHash, Event, NodeId, Scope};

use crate::admit::{Admission, AdmitError, Origins};

use crate::message::{BlobHeader, BlobInfo, BlobKind, ErrorCode, Head, Limits, Message, Role};
use crate::storage::{StorageError, SyncStore};

/// How long the child waits for an answer on the control stream before giving up.
pub const RESPONSE_TIMEOUT_MS: u64 = 30_000;
/// Events per upload batch (at most the parent's limit).
pub const BATCH_EVENTS: usize = 256;
/// About this many bytes of events per upload batch.
pub const BATCH_BYTES: usize = 512 * 1024;

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
}

/// Progress for a UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The parent accepted the session.
    Welcomed { parent: String, scope: String },
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitWelcome,
    Uploading,
    Offering,
    Blobs,
    Pulling,
    Ended,
}

/// One session with the parent.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    state: State,
    scope: Option<Scope>,
    limits: Option<Limits>,
    /// Origins still to upload, with the last sequence number sent (or held by the parent).
    queue: VecDeque<(NodeId, u64)>,
    next_batch: u64,
    /// Unacknowledged batches: number → highest own sequence number in it.
    in_flight: BTreeMap<u64, u64>,
    to_upload: u64,
    acked: u64,
    /// The current offer, in order, until the parent answers it.
    offered: Vec<BlobInfo>,
    /// Whether the last offer took as many blobs as an offer may (more may be left).
    offer_was_full: bool,
    /// Blobs of this session the parent refused (answering the offer, or their stream) or
    /// stored only in part: never offered again in this session, so the next offer moves on
    /// to other blobs and the offers end. The next session offers them again.
    declined: BTreeSet<BlobHash>,
    /// Blobs sent and awaiting `BlobStored`/`BlobRefused`/`BlobPartial`.
    awaiting: BTreeMap<BlobHash, BlobInfo>,
    /// Blobs being sent by the driver, with the bytes their streams carry.
    sending: BTreeMap<BlobHash, u64>,
    deadline: Option<u64>,
    /// The cursor of the last `Pull`.
    pull_cursor: u64,
    /// `Down` pages in a row that said "more" without moving the cursor.
    stalled_pages: u32,
    summary: Summary,
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
        // A download has no batch limit and takes any origin.
        AdmitError::TooMany { .. } | AdmitError::NotOwn { .. } => {
            SessionError::Protocol(format!("downloaded page refused: {e}"))
        }
    }
}

/// `Down` pages in a row that may say "more" without moving the cursor.
const MAX_STALLED_PAGES: u32 = 4;
/// Most blobs offered at once.
pub const OFFER_BLOBS: usize = 256;

impl ClientSession {
    /// A new session; [`ClientSession::start`] gives the first message.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            state: State::AwaitWelcome,
            scope: None,
            limits: None,
            queue: VecDeque::new(),
            next_batch: 1,
            in_flight: BTreeMap::new(),
            to_upload: 0,
            acked: 0,
            offered: Vec::new(),
            offer_was_full: false,
            declined: BTreeSet::new(),
            awaiting: BTreeMap::new(),
            sending: BTreeMap::new(),
            deadline: None,
            pull_cursor: 0,
            stalled_pages: 0,
            summary: Summary::default(),
        }
    }

    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Whether the session is over.
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The scope the parent granted, once welcomed.
    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// The first message.
    pub fn start(&mut self, now_ms: u64) -> Vec<ClientAction> {
        self.deadline = Some(now_ms + RESPONSE_TIMEOUT_MS);
        vec![ClientAction::Send(Message::Hello {
            versions: crate::VERSIONS.to_vec(),
            node: self.config.node,
            role: self.config.role,
            name: self.config.name.clone(),
        })]
    }

    /// When [`ClientSession::handle_timeout`] must be called, if a reply is awaited.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.state == State::Ended || !self.sending.is_empty() {
            return None;
        }
        self.deadline
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
        self.state = State::Ended;
        self.deadline = None;
        vec![ClientAction::Failed(e)]
    }

    fn fail_with_error(&mut self, e: SessionError) -> Vec<ClientAction> {
        if self.state == State::Ended {
            return Vec::new();
        }
        self.state = State::Ended;
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
        if self.state != State::Ended {
            self.deadline = Some(now_ms + RESPONSE_TIMEOUT_MS);
        }
        out
    }

    fn dispatch(
        &mut self,
        msg: Message,
        store: &mut dyn SyncStore,
        now_ms: u64,
    ) -> Result<Vec<ClientAction>, SessionError> {
        if self.state == State::Ended {
            return Ok(Vec::new());
        }
        if let Message::Error { code, message } = msg {
            self.state = State::Ended;
            return Ok(vec![ClientAction::Failed(SessionError::Refused {
                code,
                message,
            })]);
        }
        match (self.state, msg) {
            (
                State::AwaitWelcome,
                Message::Welcome {
                    version,
                    node,
                    name,
                    scope,
                    heads,
                    limits,
                    ..
                },
            ) => {
                if !crate::VERSIONS.contains(&version) {
                    return Ok(self.protocol(format!(
                        "the relay chose version {version}, which this build does not speak"
                    )));
                }
                if node != self.config.parent {
                    return Ok(self.protocol(format!(
                        "the relay says it is {}, not the pinned {}",
                        node.short(),
                        self.config.parent.short()
                    )));
                }
                let Ok(scope) = scope.parse::<Scope>() else {
                    return Ok(
                        self.protocol(format!("the relay granted a malformed scope {scope:?}"))
                    );
                };
                let mut out = vec![ClientAction::Progress(Progress::Welcomed {
                    parent: name,
                    scope: scope.to_string(),
                })];
                self.scope = Some(scope);
                self.limits = Some(limits);
                self.plan_upload(&heads, store)?;
                self.state = State::Uploading;
                out.extend(self.pump_upload(store)?);
                Ok(out)
            }
            (
                State::Uploading,
                Message::Ack {
                    batch,
                    stored,
                    duplicates,
                },
            ) => {
                let Some(own_max) = self.in_flight.remove(&batch) else {
                    return Ok(
                        self.protocol(format!("Ack for batch {batch}, which is not in flight"))
                    );
                };
                self.summary.events_up += u64::from(stored);
                self.summary.events_dup += u64::from(duplicates);
                self.acked += u64::from(stored) + u64::from(duplicates);
                if own_max > 0 {
                    store.own_acked(&self.config.parent, own_max)?;
                }
                let mut out = vec![ClientAction::Progress(Progress::Events {
                    acked: self.acked,
                    total: self.to_upload.max(self.acked),
                })];
                out.extend(self.pump_upload(store)?);
                Ok(out)
            }
            (
                State::Offering,
                Message::BlobRefused {
                    hash,
                    code,
                    message,
                },
            ) => {
                // The parent declines an offered blob (too large, or named by no event it
                // holds) before its `Wants`: kept here, offered again next session.
                if !self.offered.iter().any(|i| i.hash == hash) {
                    return Ok(self.protocol(format!(
                        "BlobRefused for blob {hash}, which was not offered"
                    )));
                }
                if !self.declined.insert(hash) {
                    return Ok(self.protocol(format!("the relay refused blob {hash} twice")));
                }
                tracing::warn!(%hash, ?code, %message, "the relay declined an offered blob; it stays here and is offered again next time");
                self.summary.blobs_refused += 1;
                Ok(Vec::new())
            }
            (State::Offering, Message::Wants { wants }) => {
                let offered = std::mem::take(&mut self.offered);
                let mut sends = Vec::new();
                for w in &wants {
                    let Some(info) = offered.iter().find(|i| i.hash == w.hash).copied() else {
                        return Ok(self.protocol(format!(
                            "the relay wants blob {}, which was not offered",
                            w.hash
                        )));
                    };
                    if self.declined.contains(&w.hash) {
                        return Ok(self.protocol(format!(
                            "the relay wants blob {}, which it refused",
                            w.hash
                        )));
                    }
                    if w.offset > info.size {
                        return Ok(self.protocol(format!(
                            "the relay wants blob {} from byte {}, past its end",
                            w.hash, w.offset
                        )));
                    }
                    if sends
                        .iter()
                        .any(|(i, _): &(BlobInfo, u64)| i.hash == w.hash)
                    {
                        return Ok(self.protocol(format!("the relay wants blob {} twice", w.hash)));
                    }
                    sends.push((info, w.offset));
                }
                // Offered, neither wanted nor refused: the parent holds them.
                for info in &offered {
                    if !self.declined.contains(&info.hash)
                        && !sends.iter().any(|(i, _)| i.hash == info.hash)
                    {
                        store.mark_blob_sent(&self.config.parent, &info.hash)?;
                    }
                }
                // In the offer's order: thumbnails first.
                sends.sort_by_key(|(i, _)| offered.iter().position(|o| o.hash == i.hash));
                let mut out = Vec::new();
                for (info, offset) in sends {
                    self.awaiting.insert(info.hash, info);
                    self.sending.insert(info.hash, info.size - offset);
                    out.push(ClientAction::Progress(Progress::BlobStarted {
                        hash: info.hash,
                        kind: info.kind,
                        size: info.size,
                        offset,
                    }));
                    out.push(ClientAction::SendBlob(BlobHeader {
                        hash: info.hash,
                        kind: info.kind,
                        size: info.size,
                        offset,
                    }));
                }
                self.state = State::Blobs;
                out.extend(self.after_blobs(store)?);
                Ok(out)
            }
            (State::Blobs, Message::BlobStored { hash }) => {
                let Some(info) = self.take_awaited(&hash) else {
                    return Ok(
                        self.protocol(format!("BlobStored for blob {hash}, which was not sent"))
                    );
                };
                store.mark_blob_sent(&self.config.parent, &hash)?;
                self.summary.blobs_up += 1;
                let mut out = vec![ClientAction::Progress(Progress::BlobStored {
                    hash,
                    kind: info.kind,
                    size: info.size,
                })];
                out.extend(self.after_blobs(store)?);
                Ok(out)
            }
            (
                State::Blobs,
                Message::BlobRefused {
                    hash,
                    code,
                    message,
                },
            ) => {
                if self.take_awaited(&hash).is_none() {
                    return Ok(
                        self.protocol(format!("BlobRefused for blob {hash}, which was not sent"))
                    );
                }
                tracing::warn!(%hash, ?code, %message, "the relay refused a blob; it stays here and is offered again next time");
                self.summary.blobs_refused += 1;
                self.declined.insert(hash);
                self.after_blobs(store)
            }
            (State::Blobs, Message::BlobPartial { hash, held }) => {
                // The stream carried only the bytes from its start up to `held`.
                if let (Some(remaining), Some(info)) =
                    (self.sending.remove(&hash), self.awaiting.get(&hash))
                {
                    let start = info.size - remaining;
                    self.summary.blob_bytes_up += held.saturating_sub(start);
                }
                if self.take_awaited(&hash).is_none() {
                    return Ok(
                        self.protocol(format!("BlobPartial for blob {hash}, which was not sent"))
                    );
                }
                tracing::info!(%hash, held, "the relay holds part of a blob; the rest goes next time");
                self.declined.insert(hash);
                self.after_blobs(store)
            }
            (
                State::Pulling,
                Message::Down {
                    events,
                    cursor,
                    more,
                },
            ) => {
                // The same admission a parent applies to an upload, before anything is stored.
                let Some(scope) = self.scope.as_ref() else {
                    return Ok(self.protocol("Down before Welcome".into()));
                };
                let admission = Admission {
                    from: self.config.parent,
                    scope,
                    origins: Origins::Any,
                    max_events: usize::MAX,
                    max_drift_ms: self.config.max_drift_ms,
                };
                let decoded = match admission.admit(&events, now_ms) {
                    Ok(admitted) => admitted,
                    Err(e) => return Ok(self.fail_with_error(download_refusal(e))),
                };
                // A page that says "more" without moving the cursor would loop forever; one
                // or two (a duplicated page) are harmless.
                if more && cursor <= self.pull_cursor {
                    self.stalled_pages += 1;
                    if self.stalled_pages > MAX_STALLED_PAGES {
                        return Ok(self.protocol(format!(
                            "Down says more after cursor {cursor}, but the cursor does not advance"
                        )));
                    }
                } else {
                    self.stalled_pages = 0;
                }
                // Nothing new and the cursor where it was: no write (and no disk flush) at all.
                if !decoded.is_empty() || cursor > self.pull_cursor {
                    let c = store.commit_download(&decoded, cursor)?;
                    self.summary.events_down += u64::from(c.stored);
                }
                self.pull_cursor = cursor;
                let mut out = vec![ClientAction::Progress(Progress::Downloaded {
                    events: self.summary.events_down,
                })];
                if more {
                    self.summary.round_trips += 1;
                    out.push(ClientAction::Send(Message::Pull { cursor }));
                } else {
                    self.state = State::Ended;
                    self.deadline = None;
                    out.push(ClientAction::Send(Message::Bye));
                    out.push(ClientAction::Finished(self.summary.clone()));
                }
                Ok(out)
            }
            (state, other) => {
                Ok(self.protocol(format!("unexpected {} while {state:?}", other.name())))
            }
        }
    }

    /// The driver finished sending blob `hash`'s stream (or gave up on it).
    pub fn blob_sent(&mut self, hash: &BlobHash, now_ms: u64) {
        if let Some(bytes) = self.sending.remove(hash) {
            self.summary.blob_bytes_up += bytes;
        }
        if self.state != State::Ended {
            self.deadline = Some(now_ms + RESPONSE_TIMEOUT_MS);
        }
    }

    /// Works out, from the parent's heads, which origins to upload from where.
    fn plan_upload(
        &mut self,
        heads: &[Head],
        store: &mut dyn SyncStore,
    ) -> Result<(), SessionError> {
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
            store.own_acked(&self.config.parent, own_head)?;
        }
        let origins = match self.config.role {
            Role::Device => vec![self.config.node],
            Role::Street | Role::District => store.origins()?,
        };
        for origin in origins {
            self.queue.push_back((origin, head_of(&origin)));
        }
        Ok(())
    }

    /// Sends batches while the window has room; moves on to blobs when all are acknowledged.
    fn pump_upload(
        &mut self,
        store: &mut dyn SyncStore,
    ) -> Result<Vec<ClientAction>, SessionError> {
        let limits = self.limits.unwrap_or(Limits {
            max_frame: crate::MAX_FRAME,
            max_batch_events: BATCH_EVENTS as u32,
            window: 1,
            max_blob: 0,
        });
        let max_events = BATCH_EVENTS.min(limits.max_batch_events.max(1) as usize);
        let max_bytes = BATCH_BYTES.min(limits.max_frame as usize / 2);
        let window = limits.window.clamp(1, 64) as usize;
        let mut out = Vec::new();
        while self.in_flight.len() < window {
            let (bodies, own_max) = self.next_batch(store, max_events, max_bytes)?;
            if bodies.is_empty() {
                break;
            }
            let batch = self.next_batch;
            self.next_batch += 1;
            self.to_upload += bodies.len() as u64;
            self.in_flight.insert(batch, own_max);
            self.summary.round_trips += 1;
            out.push(ClientAction::Send(Message::Events {
                batch,
                events: bodies,
            }));
        }
        if self.in_flight.is_empty() && self.queue.is_empty() {
            out.extend(self.start_offer(store)?);
        }
        Ok(out)
    }

    /// The next batch: events of the queued origins past what the parent holds, inside the
    /// granted scope (events outside it are the parent's business, not this one's).
    fn next_batch(
        &mut self,
        store: &mut dyn SyncStore,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Vec<u8>>, u64), SessionError> {
        let mut bodies = Vec::new();
        let mut bytes = 0;
        let mut own_max = 0;
        while let Some((origin, after)) = self.queue.front().copied() {
            if bodies.len() >= max_events || bytes >= max_bytes {
                break;
            }
            let want = max_events - bodies.len();
            let events: Vec<Event> = store.events_after(&origin, after, want)?;
            let exhausted = events.len() < want;
            let mut last = after;
            let mut stopped_early = false;
            for e in events {
                if !self.scope.as_ref().is_some_and(|s| s.contains(&e.grid)) {
                    if self.config.role == Role::Device && origin == self.config.node {
                        return Err(SessionError::OutOfScope(format!(
                            "this device's event {} is in grid {}, but the relay enrolled it for {}; \
                             re-enroll the device for its grid",
                            e.seq,
                            e.grid,
                            self.scope.as_ref().map_or_else(String::new, |s| s.to_string())
                        )));
                    }
                    // Another origin's event outside the parent's scope: not its business.
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
                self.queue.pop_front();
            } else if let Some(front) = self.queue.front_mut() {
                front.1 = last;
            }
        }
        Ok((bodies, own_max))
    }

    /// Offers the next unsent blobs, leaving out those declined in this session (each offer
    /// thus holds blobs not offered before in it, and the offers end).
    fn start_offer(
        &mut self,
        store: &mut dyn SyncStore,
    ) -> Result<Vec<ClientAction>, SessionError> {
        let limit = OFFER_BLOBS + self.declined.len();
        let unsent = store.unsent_blobs(&self.config.parent, limit)?;
        self.offer_was_full = unsent.len() >= limit;
        let blobs: Vec<BlobInfo> = unsent
            .into_iter()
            .filter(|b| !self.declined.contains(&b.hash))
            .take(OFFER_BLOBS)
            .collect();
        if blobs.is_empty() {
            return self.start_pull(store);
        }
        self.offered = blobs.clone();
        self.state = State::Offering;
        self.summary.round_trips += 1;
        Ok(vec![ClientAction::Send(Message::Offer { blobs })])
    }

    fn after_blobs(
        &mut self,
        store: &mut dyn SyncStore,
    ) -> Result<Vec<ClientAction>, SessionError> {
        if !self.awaiting.is_empty() {
            return Ok(Vec::new());
        }
        // More may be left: offer the next ones. Blobs refused or partly stored in this
        // session are left out of it, so this cannot loop; they go first next session.
        if self.offer_was_full {
            return self.start_offer(store);
        }
        self.start_pull(store)
    }

    fn start_pull(&mut self, store: &mut dyn SyncStore) -> Result<Vec<ClientAction>, SessionError> {
        let cursor = store.down_cursor(&self.config.parent)?;
        self.pull_cursor = cursor;
        self.state = State::Pulling;
        self.summary.round_trips += 1;
        Ok(vec![ClientAction::Send(Message::Pull { cursor })])
    }

    /// The parent answered for blob `hash` (possibly before the driver reported its stream
    /// finished: the parent had all its bytes, so they count as sent).
    fn take_awaited(&mut self, hash: &BlobHash) -> Option<BlobInfo> {
        if let Some(bytes) = self.sending.remove(hash) {
            self.summary.blob_bytes_up += bytes;
        }
        self.awaiting.remove(hash)
    }
}

#[cfg(test)]
mod tests {
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
