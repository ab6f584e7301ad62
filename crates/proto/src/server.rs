//! The parent side of a session (a relay serving a device or a street relay), sans-IO.
//!
//! The driver creates a [`ServerSession`] per accepted control stream, with the peer's node id
//! as its TLS certificate proved it, feeds it every decoded [`Message`] and every blob stream,
//! and carries out the returned [`ServerOutput`]s. Nothing is acknowledged before the store
//! call that made it durable has returned.

use std::collections::HashMap;

use gridsync_core::codec;
use gridsync_core::{BlobHash, NodeId};

use crate::admit::{Admission, AdmitError, Authority, Origins};
use crate::directory::{admit_records, NodeRecord, StoreDirectory};
use crate::limits::MAX_HELD_QUERY;
use crate::message::{
    BlobHeader, BlobInfo, BlobKind, ErrorCode, Head, Limits, Message, Role, Want, FOLLOW_HOLD_MS,
};
use crate::storage::{
    BlobFinish, BlobState, Enrolled, Page, StorageError, StorageErrorKind, SyncStore,
};

/// How often a driver rechecks a running session's enrollment
/// ([`ServerSession::recheck_enrollment`]), in milliseconds: a revocation ends the node's
/// open sessions within this long.
pub const ENROLLMENT_CHECK_MS: u64 = 1_000;

/// Events per download page.
pub const PAGE_EVENTS: usize = 512;
/// About this many bytes of events per download page.
pub const PAGE_BYTES: usize = 1024 * 1024;
/// Longest node name accepted in a `Hello`, in bytes (an event author's limit).
pub const MAX_NAME_BYTES: usize = 128;
/// Most blobs listed in one offer.
pub const MAX_OFFER: usize = 1024;

/// A parent's policy on the blobs it stores: `Ok` to store the bytes of a blob of this kind,
/// `Err(reason)` to refuse them (one line, naming nothing local). Called on the complete bytes
/// after their SHA-256 matched. A plain function, so the config stays `Clone` and `Debug` and
/// this crate free of any image code (the relay passes one built on `gridsync-media`).
pub type BlobCheck = fn(BlobKind, &[u8]) -> Result<(), String>;

/// The parent's own description and limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub node: NodeId,
    pub role: Role,
    pub name: String,
    pub limits: Limits,
    /// Deliberate faults: for the conformance harness's broken-relay tests only; never set in
    /// a real relay.
    #[cfg(feature = "faults")]
    pub faults: crate::Faults,
    /// What a blob must pass, beyond its size and hash, to be stored; `None` stores any bytes
    /// that hash right.
    pub blob_check: Option<BlobCheck>,
    /// How far ahead of this node's clock a received event's timestamp may be.
    pub max_drift_ms: u64,
    /// The migration opt-in: admit unsigned events (written before signatures) whose
    /// timestamp is before this Unix time in ms. `None` (the default): every received event
    /// must carry its origin's valid signature.
    pub accept_unsigned_before: Option<u64>,
}

impl ServerConfig {
    /// The default limits, and no blob check.
    pub fn new(node: NodeId, role: Role, name: impl Into<String>) -> Self {
        Self {
            node,
            role,
            name: name.into(),
            limits: Limits {
                max_frame: crate::MAX_FRAME,
                max_batch_events: 512,
                window: 4,
                max_blob: 64 * 1024 * 1024,
            },
            #[cfg(feature = "faults")]
            faults: crate::Faults::default(),
            blob_check: None,
            max_drift_ms: gridsync_core::hlc::DEFAULT_MAX_DRIFT_MS,
            accept_unsigned_before: None,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOutput {
    /// Send this message on the control stream.
    Send(Message),
    /// New events were committed (other sessions and the upstream link may want to know).
    Committed { stored: u32 },
    /// A blob was committed.
    BlobCommitted { hash: BlobHash, bytes: u64 },
    /// The answer to a child's `Fetch` (PROTOCOL.md §8.11): open a unidirectional stream to
    /// the child, send this header as one frame, then the blob's bytes `header.offset` to
    /// `header.size` as the store reads them ([`SyncStore::read_blob`]), and finish the
    /// stream (reset it if the store cannot give the bytes). Nothing is reported back.
    SendBlob(BlobHeader),
    /// The session is over: finish the control stream (after sending what came before) and
    /// close with this code if it is not [`ErrorCode::Done`].
    End { code: ErrorCode, reason: String },
}

/// Where a session is, carrying what is valid there.
#[derive(Debug)]
enum State {
    /// Nothing heard yet: the child's `Hello` is awaited.
    AwaitHello,
    /// The `Hello` was accepted and answered with `Welcome`.
    Ready(Ready),
    /// Over; what was granted, if the session got that far.
    Ended(Option<Granted>),
}

/// What a `Welcome` granted: the peer as enrolled here, and the version chosen.
#[derive(Debug, Clone)]
struct Granted {
    peer: Enrolled,
    version: u16,
}

/// A session past its `Welcome`.
#[derive(Debug)]
struct Ready {
    granted: Granted,
    /// Blobs this session's offers wanted, by hash: the only blob streams it takes.
    offered: HashMap<BlobHash, BlobInfo>,
    /// A `Follow` held: nothing after its cursor was in the child's scope yet (§8.10).
    following: Option<Held>,
}

/// A held `Follow`: where the child's scope was last looked at, and when the parent answers
/// an empty `Down` if nothing commits before.
#[derive(Debug, Clone, Copy)]
struct Held {
    cursor: u64,
    until_ms: u64,
}

/// Why a message ends the session: the code, and the reason the child is told.
struct Failure {
    code: ErrorCode,
    reason: String,
}

impl Failure {
    fn new(code: ErrorCode, reason: String) -> Self {
        Self { code, reason }
    }
}

impl From<StorageError> for Failure {
    /// A store's refusal keeps its kind; anything else is a storage failure (and logged).
    fn from(e: StorageError) -> Self {
        let code = match e.kind {
            StorageErrorKind::Equivocation => ErrorCode::Equivocation,
            StorageErrorKind::Internal => ErrorCode::Storage,
        };
        if code == ErrorCode::Storage {
            tracing::error!(error = %e, "storage failed during a session");
        }
        Self::new(code, e.message)
    }
}

/// An incoming blob stream being received.
#[derive(Debug)]
pub struct BlobSink {
    header: BlobHeader,
    at: u64,
}

impl BlobSink {
    /// The blob's header.
    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    /// Bytes held so far (offset of the next byte).
    pub fn at(&self) -> u64 {
        self.at
    }

    /// Whether `pending` more bytes (received, not yet given to
    /// [`ServerSession::blob_data`]) stay within the blob's size. The first byte past it
    /// refuses the stream; a driver asks after every read, so the refusal comes with the read
    /// that carries that byte, not at the next flush.
    pub fn fits(&self, pending: usize) -> bool {
        self.at
            .checked_add(pending as u64)
            .is_some_and(|end| end <= self.header.size)
    }
}

/// A blob stream refused at its header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob {hash}: {reason}")]
pub struct BlobStreamError {
    pub hash: BlobHash,
    pub code: ErrorCode,
    pub reason: String,
}

/// Counters of one session, for logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub events_stored: u64,
    pub events_duplicate: u64,
    pub events_down: u64,
    pub blobs_stored: u64,
    pub blob_bytes: u64,
    /// Blobs sent down in answer to `Fetch`, and their bytes (from the fetches' offsets).
    pub blobs_fetched: u64,
    pub fetched_bytes: u64,
}

/// One session with a child.
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    tls_peer: NodeId,
    state: State,
    stats: ServerStats,
}

impl ServerSession {
    /// A session with the peer whose certificate proved node id `tls_peer`.
    pub fn new(config: ServerConfig, tls_peer: NodeId) -> Self {
        Self {
            config,
            tls_peer,
            state: State::AwaitHello,
            stats: ServerStats::default(),
        }
    }

    /// The peer, once its `Hello` was accepted (also after the session ended).
    pub fn peer(&self) -> Option<&Enrolled> {
        match &self.state {
            State::Ready(Ready { granted, .. }) | State::Ended(Some(granted)) => {
                Some(&granted.peer)
            }
            State::AwaitHello | State::Ended(None) => None,
        }
    }

    /// What this session did so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Whether the session is over.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended(_))
    }

    /// Ends the session from this side (shutdown, timeout): the message to send, then `End`.
    pub fn abort(&mut self, code: ErrorCode, reason: impl Into<String>) -> Vec<ServerOutput> {
        self.fail(code, reason.into())
    }

    /// Moves to `Ended`, keeping what was granted.
    fn end(&mut self) {
        let granted = match std::mem::replace(&mut self.state, State::Ended(None)) {
            State::Ready(Ready { granted, .. }) | State::Ended(Some(granted)) => Some(granted),
            State::AwaitHello | State::Ended(None) => None,
        };
        self.state = State::Ended(granted);
    }

    fn fail(&mut self, code: ErrorCode, reason: String) -> Vec<ServerOutput> {
        if self.is_ended() {
            return Vec::new();
        }
        self.end();
        tracing::info!(peer = %self.tls_peer.short(), code = ?code, %reason, "session ended with an error");
        vec![
            ServerOutput::Send(Message::Error {
                code,
                message: reason.clone(),
            }),
            ServerOutput::End { code, reason },
        ]
    }

    fn storage_failure(&mut self, e: StorageError) -> Vec<ServerOutput> {
        let f = Failure::from(e);
        self.fail(f.code, f.reason)
    }

    /// The control stream's bytes did not make a frame (too long, or malformed).
    pub fn frame_error(&mut self, e: &crate::FrameError) -> Vec<ServerOutput> {
        self.fail(frame_error_code(e), e.to_string())
    }

    /// The child finished its half of the control stream; `rest` is what the frame reader
    /// says about bytes left over. Without a `Bye` first, the session ends with an error.
    pub fn stream_finished(&mut self, rest: Result<(), crate::FrameError>) -> Vec<ServerOutput> {
        match rest {
            Err(e) => self.fail(ErrorCode::Malformed, e.to_string()),
            Ok(()) => self.fail(
                ErrorCode::Unexpected,
                "the control stream ended without Bye".into(),
            ),
        }
    }

    /// No message arrived on the control stream for `idle_secs` seconds.
    pub fn idle(&mut self, idle_secs: u64) -> Vec<ServerOutput> {
        self.fail(
            ErrorCode::Timeout,
            format!("no message on the control stream for {idle_secs} s"),
        )
    }

    /// Checks the peer's enrollment again (the driver calls this every
    /// [`ENROLLMENT_CHECK_MS`] while the session runs): a peer revoked, or enrolled again
    /// with another role or scope, since its `Hello` ends the session with `NotEnrolled` at
    /// once, mid-batch or idle. A storage failure here changes nothing (the next check
    /// tries again).
    pub fn recheck_enrollment(&mut self, store: &dyn SyncStore) -> Vec<ServerOutput> {
        let State::Ready(Ready { granted, .. }) = &self.state else {
            return Vec::new();
        };
        let peer = granted.peer.clone();
        match store.enrolled(&peer.node) {
            Ok(Some(now)) if now == peer => Vec::new(),
            Ok(Some(_)) => self.fail(
                ErrorCode::NotEnrolled,
                format!(
                    "node {}'s enrollment at this relay changed; connect again",
                    peer.node.short()
                ),
            ),
            Ok(None) => {
                tracing::warn!(peer = %peer.node.short(), "enrollment revoked; ending its open session");
                self.fail(
                    ErrorCode::NotEnrolled,
                    format!(
                        "node {}'s enrollment at this relay was revoked",
                        peer.node.short()
                    ),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not recheck an enrollment");
                Vec::new()
            }
        }
    }

    /// Handles one message from the child.
    pub fn handle(
        &mut self,
        msg: Message,
        store: &mut dyn SyncStore,
        now_ms: u64,
    ) -> Vec<ServerOutput> {
        let answer = match (&mut self.state, msg) {
            (State::Ended(_), _) => return Vec::new(),
            (
                State::AwaitHello,
                Message::Hello {
                    versions,
                    node,
                    role,
                    name,
                },
            ) => return self.hello(&versions, node, role, &name, store, now_ms),
            (State::AwaitHello, other) => Err(Failure::new(
                ErrorCode::Unexpected,
                format!("expected Hello first, got {}", other.name()),
            )),
            (
                State::Ready(Ready {
                    following: Some(_), ..
                }),
                other @ (Message::Events { .. }
                | Message::Nodes { .. }
                | Message::Offer { .. }
                | Message::Pull { .. }
                | Message::Follow { .. }
                | Message::Fetch { .. }
                | Message::HeldQuery { .. }),
            ) => Err(Failure::new(
                ErrorCode::Unexpected,
                format!(
                    "{} while a Follow is held (only Bye or Error may come before its Down)",
                    other.name()
                ),
            )),
            (State::Ready(ready), Message::Events { batch, events }) => {
                ready.events(&self.config, &mut self.stats, batch, &events, store, now_ms)
            }
            (State::Ready(ready), Message::Nodes { batch, records }) => {
                ready.nodes(&self.config, batch, records, store)
            }
            (State::Ready(ready), Message::Offer { blobs }) => {
                ready.offer(self.config.limits.max_blob, blobs, store)
            }
            (State::Ready(ready), Message::Pull { cursor }) => {
                ready.pull(&mut self.stats, cursor, store)
            }
            (State::Ready(ready), Message::Follow { cursor }) => {
                ready.follow(&mut self.stats, cursor, store, now_ms)
            }
            (State::Ready(ready), Message::Fetch { hash, kind, offset }) => {
                ready.fetch(&mut self.stats, hash, kind, offset, store)
            }
            (State::Ready(ready), Message::HeldQuery { blobs }) => {
                ready.held(self.config.role, &blobs, store)
            }
            (State::Ready(ready), Message::Bye) => {
                let s = &self.stats;
                if s.events_stored + s.events_down + s.blobs_stored > 0 {
                    tracing::info!(
                        peer = %self.tls_peer.short(),
                        version = ready.granted.version,
                        events_up = s.events_stored,
                        events_down = s.events_down,
                        blobs_up = s.blobs_stored,
                        blob_bytes = s.blob_bytes,
                        "session done"
                    );
                }
                self.end();
                Ok(vec![ServerOutput::End {
                    code: ErrorCode::Done,
                    reason: "done".into(),
                }])
            }
            (State::Ready(_), Message::Error { code, message }) => {
                self.end();
                tracing::info!(peer = %self.tls_peer.short(), ?code, %message, "child ended the session");
                Ok(vec![ServerOutput::End {
                    code,
                    reason: message,
                }])
            }
            (State::Ready(_), other) => Err(Failure::new(
                ErrorCode::Unexpected,
                format!("{} is not a message a child sends", other.name()),
            )),
        };
        answer.unwrap_or_else(|f| self.fail(f.code, f.reason))
    }

    fn hello(
        &mut self,
        versions: &[u16],
        node: NodeId,
        role: Role,
        name: &str,
        store: &mut dyn SyncStore,
        now_ms: u64,
    ) -> Vec<ServerOutput> {
        let Some(version) = crate::VERSIONS
            .iter()
            .copied()
            .filter(|v| versions.contains(v))
            .max()
        else {
            return self.fail(
                ErrorCode::Version,
                format!(
                    "no common protocol version: you speak {versions:?}, this relay {:?}",
                    crate::VERSIONS
                ),
            );
        };
        if name.len() > MAX_NAME_BYTES {
            return self.fail(
                ErrorCode::Malformed,
                format!(
                    "Hello name of {} bytes, over the limit of {MAX_NAME_BYTES}",
                    name.len()
                ),
            );
        }
        if node != self.tls_peer {
            return self.fail(
                ErrorCode::WrongRole,
                format!(
                    "Hello names node {} but the TLS certificate is {}",
                    node.short(),
                    self.tls_peer.short()
                ),
            );
        }
        let enrolled = match store.enrolled(&node) {
            Ok(Some(e)) => e,
            Ok(None) => {
                return self.fail(
                    ErrorCode::NotEnrolled,
                    format!(
                        "node {} is not enrolled at this relay, or its enrollment was revoked (enroll it with `gridsync-relay enroll {} --grid GRID`, or `--relay --scope PREFIX` for a street or community relay)",
                        node.short(),
                        node
                    ),
                )
            }
            Err(e) => return self.storage_failure(e),
        };
        if enrolled.role != role {
            return self.fail(
                ErrorCode::WrongRole,
                format!(
                    "node {} is enrolled as a {} but connected as a {}",
                    node.short(),
                    enrolled.role.as_str(),
                    role.as_str()
                ),
            );
        }
        let heads: Vec<Head> = match store.heads(&enrolled) {
            Ok(h) => h,
            Err(e) => return self.storage_failure(e),
        };
        tracing::debug!(peer = %node.short(), name, role = role.as_str(), scope = %enrolled.scope, "session started");
        let welcome = Message::Welcome {
            version,
            node: self.config.node,
            role: self.config.role,
            name: self.config.name.clone(),
            scope: enrolled.scope.to_string(),
            now_ms,
            heads,
            limits: self.config.limits,
        };
        self.state = State::Ready(Ready {
            granted: Granted {
                peer: enrolled,
                version,
            },
            offered: HashMap::new(),
            following: None,
        });
        vec![ServerOutput::Send(welcome)]
    }
}

impl Ready {
    /// A batch of events: admitted whole and committed, then acknowledged, or the session
    /// ends with the refusal's code.
    fn events(
        &self,
        config: &ServerConfig,
        stats: &mut ServerStats,
        batch: u64,
        bodies: &[Vec<u8>],
        store: &mut dyn SyncStore,
        now_ms: u64,
    ) -> Result<Vec<ServerOutput>, Failure> {
        let peer = &self.granted.peer;
        let origins = if peer.role == Role::Device && !crate::faults::accept_forged_origin(config) {
            Origins::Only(peer.node)
        } else {
            Origins::Any
        };
        let held = StoreDirectory {
            store: &*store,
            me: config.node,
        };
        let admission = Admission {
            from: peer.node,
            scope: &peer.scope,
            origins,
            max_events: config.limits.max_batch_events as usize,
            max_drift_ms: config.max_drift_ms,
            accept_unsigned_before: config.accept_unsigned_before,
            authority: if crate::faults::skip_authorisation(config) {
                Authority::Unchecked
            } else if peer.role == Role::Device {
                Authority::Device
            } else {
                Authority::Relay(&held)
            },
        };
        let batch_events = admission
            .admit(bodies, now_ms)
            .map_err(|e| Failure::new(e.code(), refusal(batch, &e)))?;
        let c = store.commit(&batch_events)?;
        stats.events_stored += u64::from(c.stored);
        stats.events_duplicate += u64::from(c.duplicates);
        let mut out = vec![ServerOutput::Send(Message::Ack {
            batch,
            stored: c.stored,
            duplicates: c.duplicates,
        })];
        if c.stored > 0 {
            out.push(ServerOutput::Committed { stored: c.stored });
        }
        Ok(out)
    }

    /// Node records from a relay child: admitted whole ([`admit_records`]) and committed, then
    /// acknowledged like a batch of events, or the session ends with the refusal's code.
    fn nodes(
        &self,
        config: &ServerConfig,
        batch: u64,
        records: Vec<NodeRecord>,
        store: &mut dyn SyncStore,
    ) -> Result<Vec<ServerOutput>, Failure> {
        let peer = &self.granted.peer;
        if peer.role == Role::Device {
            return Err(Failure::new(
                ErrorCode::Unexpected,
                "Nodes is a relay's message; a device sends none".into(),
            ));
        }
        let held = StoreDirectory {
            store: &*store,
            me: config.node,
        };
        let admitted = admit_records(&held, peer, records)
            .map_err(|e| Failure::new(e.code(), format!("batch {batch}: {e}")))?;
        let c = store.commit_records(&admitted)?;
        Ok(vec![ServerOutput::Send(Message::Ack {
            batch,
            stored: c.stored,
            duplicates: c.duplicates,
        })])
    }

    /// Answers an offer: a `BlobRefused` for each offered blob declined for a reason the
    /// child must hear (over `max_blob`: `TooLarge`; named by no event held here:
    /// `OutOfScope`), then `Wants` with the wanted ones in the offer's order. A blob held whole
    /// is neither refused nor wanted. A hash listed twice is answered once.
    fn offer(
        &mut self,
        max_blob: u64,
        blobs: Vec<BlobInfo>,
        store: &mut dyn SyncStore,
    ) -> Result<Vec<ServerOutput>, Failure> {
        if blobs.len() > MAX_OFFER {
            return Err(Failure::new(
                ErrorCode::TooLarge,
                format!(
                    "offer of {} blobs, over the limit of {MAX_OFFER}",
                    blobs.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(blobs.len());
        let mut out = Vec::new();
        let mut wants = Vec::new();
        for info in blobs {
            if !seen.insert(info.hash) {
                continue;
            }
            let state = store.blob_state(&info.hash)?;
            let refuse = |code, message| {
                ServerOutput::Send(Message::BlobRefused {
                    hash: info.hash,
                    code,
                    message,
                })
            };
            // Held whole comes first: a blob held is never refused, whatever its size.
            let offset = match state {
                BlobState::Held => continue,
                _ if info.size > max_blob => {
                    tracing::info!(hash = %info.hash, size = info.size, max_blob, "offered blob over the size limit; refused");
                    out.push(refuse(
                        ErrorCode::TooLarge,
                        format!(
                            "blob of {} bytes, over this relay's limit of {max_blob}",
                            info.size
                        ),
                    ));
                    continue;
                }
                BlobState::Unreferenced => {
                    tracing::debug!(hash = %info.hash, "offered blob named by no event held here; refused");
                    out.push(refuse(
                        ErrorCode::OutOfScope,
                        "no event held here names this blob; send the event first".into(),
                    ));
                    continue;
                }
                BlobState::Missing => 0,
                BlobState::Partial { offset } => offset.min(info.size),
            };
            self.offered.insert(info.hash, info);
            wants.push(Want {
                hash: info.hash,
                offset,
            });
        }
        out.push(ServerOutput::Send(Message::Wants { wants }));
        Ok(out)
    }

    /// The next page of the peer's scope after `cursor`, leaving out what it sent.
    fn pull(
        &self,
        stats: &mut ServerStats,
        cursor: u64,
        store: &mut dyn SyncStore,
    ) -> Result<Vec<ServerOutput>, Failure> {
        let page = self.page(cursor, store)?;
        Ok(vec![down(stats, page)])
    }

    /// `Follow`: a page at once if anything of the child's scope follows `cursor`; otherwise
    /// the answer is held until something commits ([`ServerSession::wake`]) or
    /// [`FOLLOW_HOLD_MS`] pass.
    fn follow(
        &mut self,
        stats: &mut ServerStats,
        cursor: u64,
        store: &mut dyn SyncStore,
        now_ms: u64,
    ) -> Result<Vec<ServerOutput>, Failure> {
        let page = self.page(cursor, store)?;
        if !page.events.is_empty() || page.more {
            return Ok(vec![down(stats, page)]);
        }
        self.following = Some(Held {
            cursor: page.cursor.max(cursor),
            until_ms: now_ms.saturating_add(FOLLOW_HOLD_MS),
        });
        Ok(Vec::new())
    }

    /// The page after `cursor` as it goes down: unsigned events (held from before
    /// signatures) are never sent, since every child refuses them; the cursor still moves
    /// past them.
    fn page(&self, cursor: u64, store: &mut dyn SyncStore) -> Result<Page, Failure> {
        let peer = &self.granted.peer;
        let mut page = store.page(&peer.scope, &peer.node, cursor, PAGE_EVENTS, PAGE_BYTES)?;
        page.events
            .retain(|body| codec::decode_event(body).is_ok_and(|e| e.signature.is_some()));
        Ok(page)
    }
}

/// A page as the `Down` that carries it.
fn down(stats: &mut ServerStats, page: Page) -> ServerOutput {
    stats.events_down += page.events.len() as u64;
    ServerOutput::Send(Message::Down {
        events: page.events,
        cursor: page.cursor,
        more: page.more,
    })
}

impl Ready {
    /// A child's `Fetch` (§8.11): a blob stream of our own with the bytes from `offset`, or
    /// `BlobRefused` when the blob is named by no photo event of the child's scope
    /// (`OutOfScope`; checked first, so a child learns nothing of what lies outside its
    /// scope), is not held here whole (`BlobMismatch`: it may still be on its way up), is of
    /// another kind, or `offset` lies past its end (`Unexpected`). The session goes on
    /// either way.
    fn fetch(
        &self,
        stats: &mut ServerStats,
        hash: BlobHash,
        kind: BlobKind,
        offset: u64,
        store: &mut dyn SyncStore,
    ) -> Result<Vec<ServerOutput>, Failure> {
        let peer = &self.granted.peer;
        let refuse = |code, message: String| {
            tracing::debug!(peer = %peer.node.short(), %hash, ?code, %message, "fetch refused");
            Ok(vec![ServerOutput::Send(Message::BlobRefused {
                hash,
                code,
                message,
            })])
        };
        if !store.blob_in_scope(&hash, &peer.scope)? {
            return refuse(
                ErrorCode::OutOfScope,
                format!(
                    "no photo event of scope {} held here names this blob",
                    peer.scope
                ),
            );
        }
        let Some(held) = store.held_blob(&hash)? else {
            return refuse(
                ErrorCode::BlobMismatch,
                "this relay does not hold the blob whole (yet); fetch it again later".into(),
            );
        };
        if held.kind != kind {
            return refuse(
                ErrorCode::Unexpected,
                format!(
                    "the blob is a {} here, not a {}",
                    kind_name(held.kind),
                    kind_name(kind)
                ),
            );
        }
        if offset > held.size {
            return refuse(
                ErrorCode::Unexpected,
                format!("offset {offset} is past the blob's {} bytes", held.size),
            );
        }
        stats.blobs_fetched += 1;
        stats.fetched_bytes += held.size - offset;
        Ok(vec![ServerOutput::SendBlob(BlobHeader {
            hash,
            kind,
            size: held.size,
            offset,
        })])
    }
}

impl Ready {
    /// A child's `HeldQuery` (§8.12): the asked blobs that are safe here and that a photo
    /// event of the child's scope names (as `Fetch` checks; a hash outside it is simply left
    /// out), in the query's order, each once. Safe: at the district (`role`), every blob held
    /// whole; elsewhere, one this node's upstream said the district holds. Stateless: nothing
    /// is written. More than [`MAX_HELD_QUERY`] hashes end the session with `TooLarge`.
    fn held(
        &self,
        role: Role,
        blobs: &[BlobHash],
        store: &mut dyn SyncStore,
    ) -> Result<Vec<ServerOutput>, Failure> {
        if blobs.len() > MAX_HELD_QUERY {
            return Err(Failure::new(
                ErrorCode::TooLarge,
                format!(
                    "HeldQuery asks about {} blobs, over the limit of {MAX_HELD_QUERY}",
                    blobs.len()
                ),
            ));
        }
        let scope = &self.granted.peer.scope;
        let mut seen = std::collections::HashSet::new();
        let mut asked = Vec::new();
        for hash in blobs {
            if seen.insert(*hash) && store.blob_in_scope(hash, scope)? {
                asked.push(*hash);
            }
        }
        let safe = if role == Role::District {
            let mut held = Vec::new();
            for hash in asked {
                if store.held_blob(&hash)?.is_some() {
                    held.push(hash);
                }
            }
            held
        } else {
            store.safe_blobs(&asked)?
        };
        tracing::debug!(
            peer = %self.granted.peer.node.short(),
            asked = blobs.len(),
            safe = safe.len(),
            "held query answered"
        );
        Ok(vec![ServerOutput::Send(Message::Held { blobs: safe })])
    }
}

/// A blob kind as messages name it.
fn kind_name(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Photo => "photo",
        BlobKind::Thumb => "thumbnail",
    }
}

impl ServerSession {
    /// When a held `Follow` must be answered (an empty `Down`) if nothing commits before:
    /// the driver calls [`ServerSession::wake`] then, and whenever this node commits events.
    pub fn follow_deadline(&self) -> Option<u64> {
        match &self.state {
            State::Ready(Ready {
                following: Some(h), ..
            }) => Some(h.until_ms),
            _ => None,
        }
    }

    /// Something committed here, or the hold ran out: a held `Follow` is answered with the
    /// page of the child's scope after its cursor if there is one, with an empty page once
    /// the hold ran out, and stays held otherwise (its cursor moved past what was not the
    /// child's). Nothing held, nothing to do.
    pub fn wake(&mut self, store: &mut dyn SyncStore, now_ms: u64) -> Vec<ServerOutput> {
        let State::Ready(ready) = &mut self.state else {
            return Vec::new();
        };
        let Some(held) = ready.following else {
            return Vec::new();
        };
        if crate::faults::no_push(&self.config) && now_ms < held.until_ms {
            return Vec::new();
        }
        let page = match ready.page(held.cursor, store) {
            Ok(p) => p,
            Err(f) => return self.fail(f.code, f.reason),
        };
        if page.events.is_empty() && !page.more && now_ms < held.until_ms {
            ready.following = Some(Held {
                cursor: page.cursor.max(held.cursor),
                ..held
            });
            return Vec::new();
        }
        ready.following = None;
        vec![down(&mut self.stats, page)]
    }

    /// A blob stream's header arrived: checks it against this session's offer and what is
    /// held, and returns the sink to feed the stream's bytes to.
    pub fn blob_begin(
        &mut self,
        header: BlobHeader,
        store: &mut dyn SyncStore,
    ) -> Result<BlobSink, BlobStreamError> {
        let refuse = |code, reason: String| BlobStreamError {
            hash: header.hash,
            code,
            reason,
        };
        let State::Ready(ready) = &self.state else {
            return Err(refuse(
                ErrorCode::Unexpected,
                "blob stream outside a session".into(),
            ));
        };
        let Some(offered) = ready.offered.get(&header.hash) else {
            return Err(refuse(
                ErrorCode::Unexpected,
                "blob was not offered in this session".into(),
            ));
        };
        if offered.size != header.size || offered.kind != header.kind {
            return Err(refuse(
                ErrorCode::Unexpected,
                format!(
                    "header says {} bytes, the offer {}",
                    header.size, offered.size
                ),
            ));
        }
        let held = match store.blob_state(&header.hash) {
            Ok(BlobState::Partial { offset }) => offset,
            Ok(BlobState::Held) => header.size,
            Ok(_) => 0,
            Err(e) => return Err(refuse(ErrorCode::Storage, e.message)),
        };
        if header.offset > held || header.offset > header.size {
            return Err(refuse(
                ErrorCode::Unexpected,
                format!(
                    "stream starts at byte {}, but only {held} are held",
                    header.offset
                ),
            ));
        }
        Ok(BlobSink {
            header,
            at: header.offset,
        })
    }

    /// Bytes of a blob stream: stored durably before returning.
    ///
    /// Bytes that would take the blob past its size are not stored: the child sent more than
    /// it declared, so its earlier bytes are suspect too, and the whole partial upload of the
    /// blob is discarded (the next offer wants it from offset 0, whatever was held before).
    /// The error is `BlobMismatch` (`Storage` if the discard itself failed). A driver checks
    /// [`BlobSink::fits`] on every read and calls this at once when it says no.
    pub fn blob_data(
        &mut self,
        sink: &mut BlobSink,
        bytes: &[u8],
        store: &mut dyn SyncStore,
    ) -> Result<(), BlobStreamError> {
        let h = sink.header;
        let storage = |e: StorageError| BlobStreamError {
            hash: h.hash,
            code: ErrorCode::Storage,
            reason: e.message,
        };
        if !sink.fits(bytes.len()) {
            store.blob_discard(&h.hash).map_err(storage)?;
            tracing::info!(hash = %h.hash, size = h.size, at = sink.at, "blob stream ran past its size; partial upload discarded");
            return Err(BlobStreamError {
                hash: h.hash,
                code: ErrorCode::BlobMismatch,
                reason: format!(
                    "stream runs past the blob's {} bytes; the partial upload is discarded, resend from offset 0",
                    h.size
                ),
            });
        }
        store
            .blob_write(&h.hash, h.kind, h.size, sink.at, bytes)
            .map_err(storage)?;
        sink.at += bytes.len() as u64;
        Ok(())
    }

    /// The blob stream ended cleanly (its bytes so far were all given to `blob_data`): verifies
    /// a complete blob (its hash, then [`ServerConfig::blob_check`]) and commits it, or reports
    /// the bytes held of an incomplete one. A blob that fails either is discarded and refused
    /// with `BlobMismatch`.
    pub fn blob_end(&mut self, sink: BlobSink, store: &mut dyn SyncStore) -> Vec<ServerOutput> {
        let h = sink.header;
        if sink.at < h.size {
            return vec![ServerOutput::Send(Message::BlobPartial {
                hash: h.hash,
                held: sink.at,
            })];
        }
        let policy = self.config.blob_check;
        let check = |bytes: &[u8]| match policy {
            Some(check) => check(h.kind, bytes),
            None => Ok(()),
        };
        match store.blob_finish(&h.hash, &check) {
            Ok(BlobFinish::Stored) => {
                if let State::Ready(ready) = &mut self.state {
                    ready.offered.remove(&h.hash);
                }
                self.stats.blobs_stored += 1;
                self.stats.blob_bytes += h.size;
                vec![
                    ServerOutput::Send(Message::BlobStored { hash: h.hash }),
                    ServerOutput::BlobCommitted {
                        hash: h.hash,
                        bytes: h.size,
                    },
                ]
            }
            Ok(BlobFinish::HashMismatch) => vec![ServerOutput::Send(Message::BlobRefused {
                hash: h.hash,
                code: ErrorCode::BlobMismatch,
                message: format!("the {} bytes received do not hash to {}", h.size, h.hash),
            })],
            Ok(BlobFinish::Rejected(reason)) => {
                tracing::warn!(peer = %self.tls_peer.short(), hash = %h.hash, kind = ?h.kind, %reason, "refused a blob that is not a photo gridsync stores");
                // The offer stays: a later stream of the same hash is checked again (and
                // refused again), as after a hash mismatch.
                vec![ServerOutput::Send(Message::BlobRefused {
                    hash: h.hash,
                    code: ErrorCode::BlobMismatch,
                    message: format!("not a photo gridsync stores: {reason}"),
                })]
            }
            Err(e) => self.storage_failure(e),
        }
    }

    /// A blob stream was refused at its header or failed: the message telling the child.
    pub fn blob_refused(&mut self, error: &BlobStreamError) -> Vec<ServerOutput> {
        vec![ServerOutput::Send(Message::BlobRefused {
            hash: error.hash,
            code: error.code,
            message: error.reason.clone(),
        })]
    }
}

/// The message a batch refused at admission ends the session with (the batch named first).
fn refusal(batch: u64, e: &AdmitError) -> String {
    match e {
        AdmitError::TooMany { count, limit } => {
            format!("batch {batch} has {count} events, over the limit of {limit}")
        }
        AdmitError::TooLarge { .. }
        | AdmitError::Malformed { .. }
        | AdmitError::Rules { .. }
        | AdmitError::Unsigned { .. }
        | AdmitError::BadSignature { .. }
        | AdmitError::NotAuthorised { .. } => {
            format!("batch {batch}, {e}")
        }
        // The cause (a path, SQL) is the operator's, in the log; the peer may retry.
        AdmitError::Directory(cause) => {
            tracing::error!(%cause, "reading the node directory");
            format!("batch {batch}: this relay's storage failed; retry later")
        }
        AdmitError::NotOwn { origin, seq } => format!(
            "batch {batch}: event {}/{seq} is not the device's own; a device sends only its own events",
            origin.short()
        ),
        AdmitError::OutOfScope {
            origin,
            seq,
            grid,
            scope,
        } => format!(
            "batch {batch}: event {}/{seq} is in grid {grid}, outside the enrolled scope {scope}",
            origin.short()
        ),
        // As stores said it before admission moved here (the conformance suite reads it).
        AdmitError::ClockAhead { .. } => e.to_string(),
    }
}

/// The `STOP_SENDING` code for a blob stream on a connection where no session was ever
/// started (there is no control stream to answer on).
pub const BLOB_WITHOUT_SESSION: ErrorCode = ErrorCode::Unexpected;

/// The code a frame error ends a session with, and the `STOP_SENDING` code of a blob stream
/// whose header frame is too long (`TooLarge`) or does not decode (`Malformed`).
pub fn frame_error_code(e: &crate::FrameError) -> ErrorCode {
    match e {
        crate::FrameError::TooLarge { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::Malformed,
    }
}

#[cfg(test)]
/// `Fetch` (§8.11): a blob stream of the parent's own, or `BlobRefused`, in the order of the
/// checks.
mod fetch_tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn a_fetch_is_answered_with_a_blob_stream_or_refused() {
        let (bytes, thumb) = (&b"a photo of the device's grid"[..], &b"thumb"[..]);
        let (other, other_thumb) = (&b"a photo of the next grid"[..], &b"next thumb"[..]);
        let mut store = relay_store();
        store
            .append(&[
                photo(OTHER, 1, GRID, bytes, thumb),
                photo(OTHER, 2, NEXT_GRID, other, other_thumb),
                photo(OTHER, 3, GRID, b"never uploaded", b"nor this"),
            ])
            .unwrap();
        for b in [bytes, other] {
            store.add_blob(BlobKind::Photo, b.to_vec());
        }
        store.add_blob(BlobKind::Thumb, thumb.to_vec());
        let mut s = ServerSession::new(relay_config(), DEVICE);
        s.handle(hello(DEVICE, Role::Device), &mut store, NOW);
        let fetch = |hash, kind, offset| Message::Fetch { hash, kind, offset };
        let size = bytes.len() as u64;
        let cases = [
            (fetch(BlobHash::of(bytes), BlobKind::Photo, 5), None),
            (fetch(BlobHash::of(thumb), BlobKind::Thumb, 0), None),
            (fetch(BlobHash::of(bytes), BlobKind::Photo, size), None),
            (
                fetch(BlobHash::of(other), BlobKind::Photo, 0),
                Some(ErrorCode::OutOfScope),
            ),
            (
                fetch(BlobHash::of(b"unknown"), BlobKind::Photo, 0),
                Some(ErrorCode::OutOfScope),
            ),
            (
                fetch(BlobHash::of(b"never uploaded"), BlobKind::Photo, 0),
                Some(ErrorCode::BlobMismatch),
            ),
            (
                fetch(BlobHash::of(bytes), BlobKind::Thumb, 0),
                Some(ErrorCode::Unexpected),
            ),
            (
                fetch(BlobHash::of(bytes), BlobKind::Photo, size + 1),
                Some(ErrorCode::Unexpected),
            ),
        ];
        for (msg, refused) in cases {
            let Message::Fetch { hash, kind, offset } = msg else {
                unreachable!()
            };
            let out = s.handle(msg, &mut store, NOW);
            match refused {
                None => {
                    let held = store.held_blob(&hash).unwrap().expect("held");
                    assert_eq!(
                        out,
                        vec![ServerOutput::SendBlob(BlobHeader {
                            hash,
                            kind,
                            size: held.size,
                            offset
                        })]
                    );
                }
                Some(code) => match &out[..] {
                    [ServerOutput::Send(Message::BlobRefused {
                        hash: h, code: c, ..
                    })] => {
                        assert_eq!((h, *c), (&hash, code), "{out:?}")
                    }
                    other => panic!("expected a refusal, got {other:?}"),
                },
            }
            assert!(!s.is_ended(), "the session goes on");
        }
        assert_eq!(s.stats().blobs_fetched, 3);
        assert_eq!(
            s.stats().fetched_bytes,
            size - 5 + thumb.len() as u64,
            "from the offsets"
        );
        // The refusal names the scope, nothing of what is held elsewhere.
        let out = s.handle(
            fetch(BlobHash::of(other), BlobKind::Photo, 0),
            &mut store,
            NOW,
        );
        assert!(
            matches!(&out[..], [ServerOutput::Send(Message::BlobRefused { message, .. })]
            if message == "no photo event of scope 110101/002/014/03 held here names this blob")
        );
    }

    #[test]
    fn a_fetch_before_the_hello_ends_the_session() {
        let mut store = relay_store();
        let mut s = ServerSession::new(relay_config(), DEVICE);
        let out = s.handle(
            Message::Fetch {
                hash: BlobHash::of(b"x"),
                kind: BlobKind::Photo,
                offset: 0,
            },
            &mut store,
            NOW,
        );
        assert_eq!(ended_with(&out), Some(ErrorCode::Unexpected));
    }
}

#[cfg(test)]
mod tests {
    use gridsync_core::Event;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::testkit::*;

    fn session() -> ServerSession {
        ServerSession::new(
            ServerConfig::new(NodeId([1; 32]), Role::Street, "street-002"),
            NodeId([2; 32]),
        )
    }

    #[test]
    fn a_revoked_or_re_enrolled_peer_loses_its_open_session_at_the_next_check() {
        for change in ["revoke", "re-enroll"] {
            let mut store = relay_store();
            let mut s = ServerSession::new(relay_config(), DEVICE);
            s.handle(hello(DEVICE, Role::Device), &mut store, NOW);
            assert!(!s.is_ended());
            // Nothing changed: the check says nothing.
            assert!(s.recheck_enrollment(&store).is_empty());
            if change == "revoke" {
                assert!(store.revoke(&DEVICE));
            } else {
                store.enroll(DEVICE, Role::Device, scope(NEXT_GRID));
            }
            let out = s.recheck_enrollment(&store);
            assert_eq!(ended_with(&out), Some(ErrorCode::NotEnrolled), "{change}");
            assert!(s.is_ended());
            // Ended: no more checks, no more words.
            assert!(s.recheck_enrollment(&store).is_empty());
        }
        // Before a Hello there is nothing to check.
        let mut s = ServerSession::new(relay_config(), DEVICE);
        assert!(s.recheck_enrollment(&relay_store()).is_empty());
    }

    #[test]
    fn a_stream_finished_without_bye_ends_the_session() {
        let mut s = session();
        assert_eq!(
            ended_with(&s.stream_finished(Ok(()))),
            Some(ErrorCode::Unexpected)
        );
        assert!(s.is_ended());
        // Once ended, nothing more is said.
        assert!(s.idle(600).is_empty());
    }

    #[test]
    fn a_stream_finished_inside_a_frame_is_malformed() {
        let mut s = session();
        let rest = Err(crate::FrameError::Truncated { have: 3, want: 4 });
        assert_eq!(
            ended_with(&s.stream_finished(rest)),
            Some(ErrorCode::Malformed)
        );
    }

    #[test]
    fn frame_errors_and_silence_end_the_session_with_their_codes() {
        let too_large = crate::FrameError::TooLarge { len: 9, limit: 1 };
        assert_eq!(
            ended_with(&session().frame_error(&too_large)),
            Some(ErrorCode::TooLarge)
        );
        assert_eq!(ended_with(&session().idle(600)), Some(ErrorCode::Timeout));
    }

    /// A session with the device over `store`, past its `Welcome`.
    fn welcomed(config: ServerConfig, store: &mut MemoryStore) -> ServerSession {
        let mut s = ServerSession::new(config, DEVICE);
        let out = s.handle(hello(DEVICE, Role::Device), store, NOW);
        assert!(
            matches!(sent(&out)[..], [Message::Welcome { .. }]),
            "{out:?}"
        );
        s
    }

    fn batch(events: &[Event]) -> Message {
        Message::Events {
            batch: 1,
            events: events.iter().map(body).collect(),
        }
    }

    /// The reason an `End` gave.
    fn end_reason(out: &[ServerOutput]) -> &str {
        out.iter()
            .find_map(|o| match o {
                ServerOutput::End { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .expect("an End")
    }

    #[test]
    fn hello_gets_the_highest_common_version_the_scope_and_the_heads() {
        let mut store = relay_store();
        store
            .append(&[
                comment(DEVICE, 1, GRID, "1"),
                comment(DEVICE, 2, GRID, "2"),
                comment(DEVICE, 4, GRID, "4"),
            ])
            .unwrap();
        let mut s = ServerSession::new(relay_config(), DEVICE);
        assert!(s.peer().is_none());
        let hello = Message::Hello {
            versions: vec![9, 1, 0],
            node: DEVICE,
            role: Role::Device,
            name: "patrol-7".into(),
        };
        let out = s.handle(hello, &mut store, NOW);
        let [Message::Welcome {
            version,
            node,
            scope,
            now_ms,
            heads,
            limits,
            ..
        }] = sent(&out)[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            (*version, *node, scope.as_str(), *now_ms),
            (1, RELAY, GRID, NOW)
        );
        assert_eq!(
            heads,
            &vec![Head {
                origin: DEVICE,
                seq: 2
            }]
        );
        assert_eq!(limits, &relay_config().limits);
        assert_eq!(s.peer().map(|p| p.role), Some(Role::Device));
        // A second Hello is not a message a child sends once welcomed.
        let out = s.handle(hello_again(), &mut store, NOW);
        assert_eq!(ended_with(&out), Some(ErrorCode::Unexpected));
        assert_eq!(end_reason(&out), "Hello is not a message a child sends");
        assert_eq!(s.peer().map(|p| p.node), Some(DEVICE), "kept after the end");
    }

    fn hello_again() -> Message {
        hello(DEVICE, Role::Device)
    }

    #[test]
    fn each_refused_hello_ends_the_session_with_its_code() {
        let too_long = Message::Hello {
            versions: vec![1],
            node: DEVICE,
            role: Role::Device,
            name: "x".repeat(MAX_NAME_BYTES + 1),
        };
        let cases: Vec<(NodeId, Message, ErrorCode, &str)> = vec![
            (
                DEVICE,
                Message::Hello {
                    versions: vec![7, 8],
                    node: DEVICE,
                    role: Role::Device,
                    name: "patrol-7".into(),
                },
                ErrorCode::Version,
                "no common protocol version: you speak [7, 8], this relay [1]",
            ),
            (
                OTHER,
                hello(OTHER, Role::Device),
                ErrorCode::NotEnrolled,
                "node ed4928c6 is not enrolled at this relay",
            ),
            (
                DEVICE,
                hello(DEVICE, Role::Street),
                ErrorCode::WrongRole,
                "node 8139770e is enrolled as a device but connected as a street",
            ),
            (
                OTHER,
                hello(DEVICE, Role::Device),
                ErrorCode::WrongRole,
                "Hello names node 8139770e but the TLS certificate is ed4928c6",
            ),
            (
                DEVICE,
                too_long,
                ErrorCode::Malformed,
                "Hello name of 129 bytes, over the limit of 128",
            ),
            (
                DEVICE,
                Message::Pull { cursor: 0 },
                ErrorCode::Unexpected,
                "expected Hello first, got Pull",
            ),
        ];
        for (tls_peer, msg, code, reason) in cases {
            let mut store = relay_store();
            let mut s = ServerSession::new(relay_config(), tls_peer);
            let out = s.handle(msg, &mut store, NOW);
            assert_eq!(ended_with(&out), Some(code), "{reason}");
            assert!(end_reason(&out).starts_with(reason), "{out:?}");
            assert!(s.is_ended() && s.peer().is_none());
            assert!(s.handle(hello_again(), &mut store, NOW).is_empty());
        }
    }

    #[test]
    fn a_batch_is_committed_then_acknowledged_and_again_as_duplicates() {
        let mut store = relay_store();
        let mut s = welcomed(relay_config(), &mut store);
        let events = [comment(DEVICE, 1, GRID, "a"), comment(DEVICE, 2, GRID, "b")];
        let out = s.handle(batch(&events), &mut store, NOW);
        assert_eq!(
            out,
            vec![
                ServerOutput::Send(Message::Ack {
                    batch: 1,
                    stored: 2,
                    duplicates: 0
                }),
                ServerOutput::Committed { stored: 2 }
            ]
        );
        assert_eq!(store.via(&DEVICE, 2), Some(DEVICE));
        let out = s.handle(batch(&events), &mut store, NOW);
        assert_eq!(
            out,
            vec![ServerOutput::Send(Message::Ack {
                batch: 1,
                stored: 0,
                duplicates: 2
            })]
        );
        assert_eq!(
            (s.stats().events_stored, s.stats().events_duplicate),
            (2, 2)
        );
        assert_eq!(
            s.handle(Message::Bye, &mut store, NOW),
            vec![ServerOutput::End {
                code: ErrorCode::Done,
                reason: "done".into()
            }]
        );
        assert!(s.is_ended());
    }

    #[test]
    fn a_batch_refused_at_admission_ends_the_session_and_stores_nothing() {
        let mut ahead = comment(DEVICE, 1, GRID, "from the future");
        ahead.hlc = gridsync_core::Hlc::new(NOW + 3_600_000, 0);
        ahead.sign(&DEVICE_KEY).expect("sign");
        let mut one_a_batch = relay_config();
        one_a_batch.limits.max_batch_events = 1;
        let cases: Vec<(ServerConfig, Message, ErrorCode, &str)> = vec![
            (
                relay_config(),
                batch(&[comment(DEVICE, 1, GRID, "mine"), close(DEVICE, 2, GRID)]),
                ErrorCode::NotAuthorised,
                "batch 1, event 1: event 8139770e/2 is an operator decision (StatusChanged); only a platform",
            ),
            (
                relay_config(),
                batch(&[comment(DEVICE, 1, GRID, "mine"), comment(OTHER, 1, GRID, "not mine")]),
                ErrorCode::OutOfScope,
                "batch 1: event ed4928c6/1 is not the device's own; a device sends only its own events",
            ),
            (
                relay_config(),
                batch(&[comment(DEVICE, 1, NEXT_GRID, "next door")]),
                ErrorCode::OutOfScope,
                "batch 1: event 8139770e/1 is in grid 110101/002/014/04, outside the enrolled scope 110101/002/014/03",
            ),
            (
                one_a_batch,
                batch(&[comment(DEVICE, 1, GRID, "a"), comment(DEVICE, 2, GRID, "b")]),
                ErrorCode::TooLarge,
                "batch 1 has 2 events, over the limit of 1",
            ),
            (
                relay_config(),
                Message::Events {
                    batch: 1,
                    events: vec![vec![1, 2, 3]],
                },
                ErrorCode::Malformed,
                "batch 1, event 0: ",
            ),
            (
                relay_config(),
                batch(&[ahead]),
                ErrorCode::ClockAhead,
                "event 8139770e/1 refused: timestamp ",
            ),
        ];
        for (config, msg, code, reason) in cases {
            let mut store = relay_store();
            let mut s = welcomed(config, &mut store);
            let out = s.handle(msg, &mut store, NOW);
            assert_eq!(ended_with(&out), Some(code), "{reason}");
            assert!(end_reason(&out).starts_with(reason), "{out:?}");
            assert!(s.is_ended());
            assert_eq!(store.events().count(), 0);
        }
    }

    #[test]
    fn an_equivocating_batch_ends_the_session_with_the_stores_refusal() {
        let mut store = relay_store();
        store.append(&[comment(DEVICE, 1, GRID, "first")]).unwrap();
        let mut s = welcomed(relay_config(), &mut store);
        let out = s.handle(
            batch(&[
                comment(DEVICE, 2, GRID, "new"),
                comment(DEVICE, 1, GRID, "forged"),
            ]),
            &mut store,
            NOW,
        );
        assert_eq!(ended_with(&out), Some(ErrorCode::Equivocation));
        assert_eq!(
            end_reason(&out),
            "event 8139770e/1 is already stored with different content; refusing the batch"
        );
        assert!(store.event(&DEVICE, 2).is_none());
    }

    /// A relay holding a device's photo event for `photo`/`thumb`, welcomed.
    fn with_photo(
        config: ServerConfig,
        photo_bytes: &[u8],
        thumb: &[u8],
    ) -> (ServerSession, MemoryStore) {
        let mut store = relay_store();
        store
            .append(&[photo(DEVICE, 1, GRID, photo_bytes, thumb)])
            .unwrap();
        let s = welcomed(config, &mut store);
        (s, store)
    }

    fn info(kind: BlobKind, bytes: &[u8]) -> BlobInfo {
        BlobInfo {
            hash: BlobHash::of(bytes),
            kind,
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn an_offer_is_answered_once_per_blob_in_its_order() {
        let (big, thumb, partial) = (&[7u8; 64][..], &b"thumb"[..], &b"half sent photo"[..]);
        let mut config = relay_config();
        config.limits.max_blob = 32;
        let mut store = relay_store();
        store
            .append(&[
                photo(DEVICE, 1, GRID, big, thumb),
                photo(DEVICE, 2, GRID, partial, b"held thumb"),
            ])
            .unwrap();
        let held = store.add_blob(BlobKind::Thumb, b"held thumb".to_vec());
        let p = info(BlobKind::Photo, partial);
        store
            .blob_write(&p.hash, p.kind, p.size, 0, &partial[..4])
            .unwrap();
        let mut s = welcomed(config, &mut store);
        let stranger = info(BlobKind::Photo, b"named by nothing");
        let offer = vec![
            info(BlobKind::Thumb, thumb),
            BlobInfo {
                hash: held,
                kind: BlobKind::Thumb,
                size: 10,
            },
            stranger,
            info(BlobKind::Thumb, thumb),
            info(BlobKind::Photo, big),
            p,
        ];
        let out = s.handle(Message::Offer { blobs: offer }, &mut store, NOW);
        let refused = |hash, code, message: &str| Message::BlobRefused {
            hash,
            code,
            message: message.into(),
        };
        assert_eq!(
            sent(&out),
            vec![
                &refused(
                    stranger.hash,
                    ErrorCode::OutOfScope,
                    "no event held here names this blob; send the event first"
                ),
                &refused(
                    BlobHash::of(big),
                    ErrorCode::TooLarge,
                    "blob of 64 bytes, over this relay's limit of 32"
                ),
                &Message::Wants {
                    wants: vec![
                        Want {
                            hash: BlobHash::of(thumb),
                            offset: 0
                        },
                        Want {
                            hash: p.hash,
                            offset: 4
                        }
                    ]
                }
            ]
        );
        assert!(!s.is_ended());
        // An offer over the limit ends the session.
        let flood = vec![info(BlobKind::Thumb, thumb); MAX_OFFER + 1];
        let out = s.handle(Message::Offer { blobs: flood }, &mut store, NOW);
        assert_eq!(ended_with(&out), Some(ErrorCode::TooLarge));
    }

    /// Offers `blob` and returns the session and store, the blob wanted.
    fn offered(config: ServerConfig, blob: &[u8]) -> (ServerSession, MemoryStore, BlobInfo) {
        let (mut s, mut store) = with_photo(config, blob, b"thumb");
        let i = info(BlobKind::Photo, blob);
        let out = s.handle(Message::Offer { blobs: vec![i] }, &mut store, NOW);
        assert!(matches!(&sent(&out)[..], [Message::Wants { wants }] if wants.len() == 1));
        (s, store, i)
    }

    fn header(i: BlobInfo, offset: u64) -> BlobHeader {
        BlobHeader {
            hash: i.hash,
            kind: i.kind,
            size: i.size,
            offset,
        }
    }

    #[test]
    fn a_blob_stream_must_match_an_offer_and_what_is_held() {
        let bytes = b"a photo of the gate";
        let mut store = relay_store();
        let mut before = ServerSession::new(relay_config(), DEVICE);
        let i = info(BlobKind::Photo, bytes);
        let e = before.blob_begin(header(i, 0), &mut store).unwrap_err();
        assert_eq!(
            (e.code, e.reason.as_str()),
            (ErrorCode::Unexpected, "blob stream outside a session")
        );

        let (mut s, mut store, i) = offered(relay_config(), bytes);
        let other = info(BlobKind::Photo, b"never offered");
        let e = s.blob_begin(header(other, 0), &mut store).unwrap_err();
        assert_eq!(e.reason, "blob was not offered in this session");
        let mut bigger = header(i, 0);
        bigger.size += 1;
        let e = s.blob_begin(bigger, &mut store).unwrap_err();
        assert_eq!(e.reason, "header says 20 bytes, the offer 19");
        let e = s.blob_begin(header(i, 5), &mut store).unwrap_err();
        assert_eq!(e.reason, "stream starts at byte 5, but only 0 are held");
        assert_eq!(
            s.blob_refused(&e),
            vec![ServerOutput::Send(Message::BlobRefused {
                hash: i.hash,
                code: ErrorCode::Unexpected,
                message: e.reason.clone()
            })]
        );
        assert!(!s.is_ended(), "a refused stream does not end the session");
    }

    #[test]
    fn a_blob_is_stored_in_parts_across_streams() {
        let bytes = b"a photo of the gate";
        let (mut s, mut store, i) = offered(relay_config(), bytes);
        let mut sink = s.blob_begin(header(i, 0), &mut store).unwrap();
        s.blob_data(&mut sink, &bytes[..7], &mut store).unwrap();
        assert_eq!(
            s.blob_end(sink, &mut store),
            vec![ServerOutput::Send(Message::BlobPartial {
                hash: i.hash,
                held: 7
            })]
        );
        let mut sink = s.blob_begin(header(i, 7), &mut store).unwrap();
        assert!(sink.fits(12) && !sink.fits(13));
        s.blob_data(&mut sink, &bytes[7..], &mut store).unwrap();
        assert_eq!(
            s.blob_end(sink, &mut store),
            vec![
                ServerOutput::Send(Message::BlobStored { hash: i.hash }),
                ServerOutput::BlobCommitted {
                    hash: i.hash,
                    bytes: 19
                }
            ]
        );
        assert_eq!(store.blob(&i.hash), Some(&bytes[..]));
        assert_eq!((s.stats().blobs_stored, s.stats().blob_bytes), (1, 19));
        // Stored: the offer is spent.
        let e = s.blob_begin(header(i, 0), &mut store).unwrap_err();
        assert_eq!(e.reason, "blob was not offered in this session");
    }

    #[test]
    fn a_stream_past_the_blobs_size_discards_the_partial() {
        let bytes = b"a photo of the gate";
        let (mut s, mut store, i) = offered(relay_config(), bytes);
        let mut sink = s.blob_begin(header(i, 0), &mut store).unwrap();
        s.blob_data(&mut sink, &bytes[..10], &mut store).unwrap();
        let e = s.blob_data(&mut sink, &[0; 10], &mut store).unwrap_err();
        assert_eq!(e.code, ErrorCode::BlobMismatch);
        assert_eq!(
            e.reason,
            "stream runs past the blob's 19 bytes; the partial upload is discarded, resend from offset 0"
        );
        assert_eq!(store.blob_state(&i.hash).unwrap(), BlobState::Missing);
    }

    #[test]
    fn bytes_that_do_not_hash_right_or_fail_the_check_are_refused() {
        let bytes = b"a photo of the gate";
        let (mut s, mut store, i) = offered(relay_config(), bytes);
        let mut sink = s.blob_begin(header(i, 0), &mut store).unwrap();
        s.blob_data(&mut sink, &[b'x'; 19], &mut store).unwrap();
        let out = s.blob_end(sink, &mut store);
        assert_eq!(
            out,
            vec![ServerOutput::Send(Message::BlobRefused {
                hash: i.hash,
                code: ErrorCode::BlobMismatch,
                message: format!("the 19 bytes received do not hash to {}", i.hash)
            })]
        );
        assert_eq!(store.blob_state(&i.hash).unwrap(), BlobState::Missing);

        let mut strict = relay_config();
        strict.blob_check = Some(|kind, bytes| {
            assert_eq!(BlobHash::of(bytes), BlobHash::of(b"a photo of the gate"));
            Err(format!("a {kind:?} that is no JPEG"))
        });
        let (mut s, mut store, i) = offered(strict, bytes);
        let mut sink = s.blob_begin(header(i, 0), &mut store).unwrap();
        s.blob_data(&mut sink, bytes, &mut store).unwrap();
        assert_eq!(
            s.blob_end(sink, &mut store),
            vec![ServerOutput::Send(Message::BlobRefused {
                hash: i.hash,
                code: ErrorCode::BlobMismatch,
                message: "not a photo gridsync stores: a Photo that is no JPEG".into()
            })]
        );
        assert_eq!(store.blob(&i.hash), None);
        assert_eq!(s.stats().blobs_stored, 0);
    }

    #[test]
    fn a_pull_pages_the_scope_without_the_childs_own_events() {
        let mut store = relay_store();
        let mut s = welcomed(relay_config(), &mut store);
        let mine = comment(DEVICE, 1, GRID, "mine");
        s.handle(batch(std::slice::from_ref(&mine)), &mut store, NOW);
        let theirs = comment(OTHER, 1, GRID, "theirs");
        store
            .append(&[theirs.clone(), comment(OTHER, 2, NEXT_GRID, "next grid")])
            .unwrap();
        let out = s.handle(Message::Pull { cursor: 0 }, &mut store, NOW);
        assert_eq!(
            sent(&out),
            vec![&Message::Down {
                events: vec![body(&theirs)],
                cursor: 3,
                more: false
            }]
        );
        let out = s.handle(Message::Pull { cursor: 3 }, &mut store, NOW);
        assert_eq!(
            sent(&out),
            vec![&Message::Down {
                events: Vec::new(),
                cursor: 3,
                more: false
            }]
        );
        assert_eq!(s.stats().events_down, 1);
    }

    #[test]
    fn a_follow_is_answered_at_once_held_until_a_commit_in_scope_or_the_hold_ends() {
        let mut store = relay_store();
        let mut s = welcomed(relay_config(), &mut store);
        let theirs = comment(OTHER, 1, GRID, "theirs");
        store.append(std::slice::from_ref(&theirs)).unwrap();
        // Something after the cursor: answered at once, like a Pull.
        let out = s.handle(Message::Follow { cursor: 0 }, &mut store, NOW);
        assert_eq!(
            sent(&out),
            vec![&Message::Down {
                events: vec![body(&theirs)],
                cursor: 1,
                more: false
            }]
        );
        assert_eq!(s.follow_deadline(), None);
        // Nothing after it: held, no answer.
        let out = s.handle(Message::Follow { cursor: 1 }, &mut store, NOW);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(s.follow_deadline(), Some(NOW + FOLLOW_HOLD_MS));
        // Only Bye or Error may come while it is held.
        let mut other = welcomed(relay_config(), &mut store);
        other.handle(Message::Follow { cursor: 1 }, &mut store, NOW);
        let out = other.handle(Message::Pull { cursor: 1 }, &mut store, NOW);
        assert!(
            end_reason(&out).contains("while a Follow is held"),
            "{out:?}"
        );
        // A commit outside the child's grid: still held, the cursor moves past it.
        store
            .append(&[comment(OTHER, 2, NEXT_GRID, "next grid")])
            .unwrap();
        assert!(s.wake(&mut store, NOW + 10).is_empty());
        assert_eq!(s.follow_deadline(), Some(NOW + FOLLOW_HOLD_MS));
        // A commit in its grid: pushed.
        let pushed = comment(OTHER, 3, GRID, "pushed");
        store.append(std::slice::from_ref(&pushed)).unwrap();
        let out = s.wake(&mut store, NOW + 20);
        assert_eq!(
            sent(&out),
            vec![&Message::Down {
                events: vec![body(&pushed)],
                cursor: 3,
                more: false
            }]
        );
        assert_eq!(s.follow_deadline(), None);
        assert!(s.wake(&mut store, NOW + 30).is_empty(), "nothing held");
        // Held again with nothing new: the hold's end answers an empty page.
        s.handle(Message::Follow { cursor: 3 }, &mut store, NOW + 40);
        assert!(s.wake(&mut store, NOW + 40 + FOLLOW_HOLD_MS - 1).is_empty());
        let out = s.wake(&mut store, NOW + 40 + FOLLOW_HOLD_MS);
        assert_eq!(
            sent(&out),
            vec![&Message::Down {
                events: Vec::new(),
                cursor: 3,
                more: false
            }]
        );
        // Bye ends a held Follow normally.
        s.handle(Message::Follow { cursor: 3 }, &mut store, NOW + 50);
        let out = s.handle(Message::Bye, &mut store, NOW + 60);
        assert!(matches!(
            out.last(),
            Some(ServerOutput::End {
                code: ErrorCode::Done,
                ..
            })
        ));
        assert_eq!(s.stats().events_down, 2);
    }

    #[test]
    fn the_childs_error_ends_the_session_and_parent_messages_are_unexpected() {
        let mut store = relay_store();
        let mut s = welcomed(relay_config(), &mut store);
        let out = s.handle(
            Message::Error {
                code: ErrorCode::ShuttingDown,
                message: "bye for now".into(),
            },
            &mut store,
            NOW,
        );
        assert_eq!(
            out,
            vec![ServerOutput::End {
                code: ErrorCode::ShuttingDown,
                reason: "bye for now".into()
            }]
        );
        assert!(s.is_ended());
        let mut s = welcomed(relay_config(), &mut store);
        let out = s.handle(Message::Wants { wants: vec![] }, &mut store, NOW);
        assert_eq!(ended_with(&out), Some(ErrorCode::Unexpected));
        assert_eq!(end_reason(&out), "Wants is not a message a child sends");
    }
}
