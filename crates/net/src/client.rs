//! The child side over QUIC: connects to a pinned parent and runs one [`ClientSession`],
//! sending blobs one after the other on streams of their own (thumbnails first), reading the
//! streams the parent opens in answer to a `Fetch` (PROTOCOL.md §8.11), and reporting
//! progress.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridsync_core::NodeId;
use gridsync_proto::client::{
    BlobFailure, ClientAction, ClientConfig, ClientSession, FetchSink, Progress, SessionError,
    Summary, FETCH_STREAM_REFUSED, RESPONSE_TIMEOUT_MS,
};
use gridsync_proto::{frame, BlobHeader, ErrorCode, FrameReader, Message};
use quinn::{Connection, Endpoint, RecvStream, SendStream};

pub use crate::transport::CONNECT_TIMEOUT;
use crate::transport::{BLOB_CHUNK, BLOB_FLUSH, BLOB_HEADER_LIMIT};
use crate::{now_ms, tls, transport, ConnectError, NetError, SharedStore};

/// What a sync reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncProgress {
    /// Connected and authenticated.
    Connected { addr: SocketAddr },
    /// A step of the session.
    Session(Progress),
    /// Bytes of the blob being sent so far (including its resume offset).
    BlobBytes {
        hash: gridsync_core::BlobHash,
        sent: u64,
        size: u64,
    },
    /// Bytes of a blob being fetched (PROTOCOL.md §8.11) held so far (including what was held
    /// before its offset).
    FetchBytes {
        hash: gridsync_core::BlobHash,
        held: u64,
        size: u64,
    },
}

/// How to run a sync. `Default` is how a sync runs in real use.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Test hook (cargo feature `test-hooks`): cut the first blob stream with more than this
    /// many bytes to send short (finishing it early), wait for the parent's answer about that
    /// blob (so what it kept is known), then end the session as a lost connection would. The
    /// blobs before it (say, the thumbnails, which go first) are sent whole. For resume tests;
    /// `None` in real use.
    #[cfg(feature = "test-hooks")]
    pub interrupt_blobs_after: Option<u64>,
    /// Test hook (cargo feature `test-hooks`): once a blob stream the parent opened for a
    /// fetch (PROTOCOL.md §8.11) has brought at least this many bytes and the blob is not
    /// complete, write them durably and end the session as a lost connection would. For the
    /// fetch resume tests; `None` in real use.
    #[cfg(feature = "test-hooks")]
    pub interrupt_fetch_after: Option<u64>,
}

impl SyncOptions {
    /// Where the test hook cuts blob streams; never without the feature.
    fn interrupt_blobs_after(&self) -> Option<u64> {
        #[cfg(feature = "test-hooks")]
        return self.interrupt_blobs_after;
        #[cfg(not(feature = "test-hooks"))]
        None
    }

    /// Where the test hook cuts fetch streams; never without the feature.
    fn interrupt_fetch_after(&self) -> Option<u64> {
        #[cfg(feature = "test-hooks")]
        return self.interrupt_fetch_after;
        #[cfg(not(feature = "test-hooks"))]
        None
    }
}

/// The result of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub summary: Summary,
    pub elapsed: Duration,
}

/// A client endpoint for this node's identity, bound to an ephemeral local port.
pub fn endpoint(bind: SocketAddr) -> Result<Endpoint, NetError> {
    Endpoint::client(bind).map_err(|error| NetError::Bind { addr: bind, error })
}

/// Connects to the parent at `addr`, accepting it only if it proves node id `parent`.
///
/// A parent at its connection limit refuses before the handshake: [`NetError::Busy`]. One that
/// proves another node id: [`NetError::WrongRelay`].
pub async fn connect(
    endpoint: &Endpoint,
    secret: &[u8; 32],
    addr: SocketAddr,
    parent: NodeId,
) -> Result<Connection, NetError> {
    connect_with(endpoint, secret, addr, parent, transport::config()).await
}

/// [`connect`] for a connection that follows (PROTOCOL.md §8.10): no keep-alives of its own,
/// since a held `Follow` is answered at least every `FOLLOW_HOLD_MS` and that answer keeps
/// the connection and its NAT bindings alive ([`transport::follower_config`]); a metered link
/// pays for nothing else while nothing happens.
pub async fn connect_follower(
    endpoint: &Endpoint,
    secret: &[u8; 32],
    addr: SocketAddr,
    parent: NodeId,
) -> Result<Connection, NetError> {
    connect_with(endpoint, secret, addr, parent, transport::follower_config()).await
}

async fn connect_with(
    endpoint: &Endpoint,
    secret: &[u8; 32],
    addr: SocketAddr,
    parent: NodeId,
    transport: quinn::TransportConfig,
) -> Result<Connection, NetError> {
    let (config, pin) = tls::pinned_client_config(secret, parent, Arc::new(transport))?;
    let connecting = endpoint
        .connect_with(config, addr, tls::CERT_NAME)
        .map_err(|e| NetError::Connect {
            addr,
            error: ConnectError::Start(e),
        })?;
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            // quinn keeps only the text of the verifier's error; the verifier kept the facts.
            if let Some(m) = pin.mismatch() {
                return Err(NetError::WrongRelay {
                    addr,
                    expected: m.expected,
                    got: m.got,
                });
            }
            match e {
                quinn::ConnectionError::ConnectionClosed(close)
                    if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
                {
                    Err(NetError::Busy { addr })
                }
                e => Err(NetError::Connect {
                    addr,
                    error: ConnectError::Handshake(e),
                }),
            }
        }
        Err(_) => Err(NetError::Connect {
            addr,
            error: ConnectError::Timeout(CONNECT_TIMEOUT),
        }),
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one session on `conn`. The connection stays open (a relay runs the next session on
/// it); on failure it is closed with the code and reason the session chose.
///
/// The error is the session's ([`NetError::Session`]), or, when the connection or a stream
/// broke under it, that breakage itself (e.g. [`NetError::Closed`], with the peer's code).
pub async fn run_session(
    conn: &Connection,
    store: SharedStore,
    config: ClientConfig,
    options: &SyncOptions,
    progress: &mut (dyn FnMut(SyncProgress) + Send),
) -> Result<SyncReport, NetError> {
    run_session_until(
        conn,
        store,
        config,
        options,
        progress,
        std::future::pending(),
    )
    .await
}

/// [`run_session`] for a session that may follow (`ClientConfig::follow`, PROTOCOL.md
/// §8.10): once `stop` resolves, a held `Follow` is given up with `Bye` (a session not yet
/// caught up ends at the end of its download instead), and the session finishes. Without
/// `follow`, `stop` changes nothing.
pub async fn run_session_until(
    conn: &Connection,
    store: SharedStore,
    config: ClientConfig,
    options: &SyncOptions,
    progress: &mut (dyn FnMut(SyncProgress) + Send),
    stop: impl std::future::Future<Output = ()>,
) -> Result<SyncReport, NetError> {
    let mut stop = std::pin::pin!(stop);
    let mut stopped = false;
    let started = Instant::now();
    // The session's clock: the wall time at its start, advanced by a monotonic clock, so a
    // handheld whose clock is corrected mid-sync (as networks do on connect) neither hangs
    // on a timer an hour away nor times out at once.
    let wall_at_start = now_ms();
    let clock = move || wall_at_start + started.elapsed().as_millis() as u64;
    let (mut send, mut recv) = conn.open_bi().await.map_err(NetError::from)?;
    let mut session = ClientSession::new(config);
    let mut reader = FrameReader::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut blob_queue: VecDeque<BlobHeader> = Default::default();
    // The blob stream being sent, and its task.
    let mut blob_task: Option<(BlobHeader, AbortOnDrop<Result<bool, BlobError>>)> = None;
    let (bytes_tx, mut bytes_rx) = tokio::sync::mpsc::unbounded_channel::<(BlobHeader, u64)>();
    // The blob the test hook cut short, once it has.
    let mut cut_short: Option<gridsync_core::BlobHash> = None;
    // What the connection's breakage was, when the session failed because of it: that is what
    // the caller is told (the session's failure only says how to close).
    let mut broken: Option<NetError> = None;
    // The blob stream the parent opened for a fetch, if one is being read.
    let mut fetch = FetchIn::default();
    let mut actions: VecDeque<ClientAction> = session.start(clock()).into();
    loop {
        // Carry out what the session said.
        while let Some(action) = actions.pop_front() {
            match action {
                ClientAction::Send(msg) => {
                    let bytes = frame::encode(&msg).map_err(NetError::Encode)?;
                    // A parent that stops reading must not hold the handheld forever.
                    let wait = Duration::from_millis(RESPONSE_TIMEOUT_MS);
                    match tokio::time::timeout(wait, send.write_all(&bytes)).await {
                        Ok(r) => r.map_err(NetError::from)?,
                        // What was still to do is moot: the session fails.
                        Err(_) => actions = session.write_stalled(clock()).into(),
                    }
                }
                ClientAction::SendBlob(h) => blob_queue.push_back(h),
                ClientAction::Progress(p) => progress(SyncProgress::Session(p)),
                ClientAction::Finished(summary) => {
                    let _ = send.finish();
                    return Ok(SyncReport {
                        summary,
                        elapsed: started.elapsed(),
                    });
                }
                ClientAction::Failed(e) => {
                    let _ = send.finish();
                    drop(blob_task.take());
                    conn.close(e.code().as_u16().into(), e.close_reason().as_bytes());
                    return Err(broken.take().unwrap_or(NetError::Session(e)));
                }
            }
        }
        if blob_task.is_none() && cut_short.is_none() {
            if let Some(h) = blob_queue.pop_front() {
                let conn = conn.clone();
                let store = store.clone();
                let tx = bytes_tx.clone();
                let stop_at = options.interrupt_blobs_after();
                // Known before the stream is sent: the parent's answer about a blob the hook
                // cuts can arrive before the sender task is seen to end.
                if stop_at.is_some_and(|n| h.offset.saturating_add(n) < h.size) {
                    cut_short = Some(h.hash);
                }
                let task =
                    tokio::spawn(async move { send_blob(&conn, &store, h, stop_at, &tx).await });
                blob_task = Some((h, AbortOnDrop(task)));
            }
        }
        let deadline = session.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => {
                    tokio::time::sleep(Duration::from_millis(d.saturating_sub(clock()))).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = recv.read(&mut buf) => {
                match read {
                    Ok(Some(n)) => {
                        reader.push(&buf[..n]);
                        loop {
                            match reader.next_message() {
                                Ok(Some(msg)) => {
                                    let answers_cut = cut_short.is_some_and(|h| answers_blob(&msg, &h));
                                    let now = clock();
                                    actions.extend(crate::blocking(|| {
                                        let mut guard = lock(&store);
                                        session.handle(msg, &mut *guard, now)
                                    }));
                                    if answers_cut {
                                        // The test hook's "lost connection", now that the
                                        // parent said what it kept of the cut blob.
                                        let e = SessionError::Aborted { code: ErrorCode::Done, message: "interrupted by the test hook".into() };
                                        conn.close(0u32.into(), b"interrupted");
                                        return Err(NetError::Session(e));
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    actions.extend(session.frame_error(&e));
                                    break;
                                }
                            }
                        }
                    }
                    Ok(None) => actions.extend(session.stream_ended()),
                    Err(e) => return Err(NetError::from(e)),
                }
            }
            Some((h, sent)) = bytes_rx.recv() => {
                progress(SyncProgress::BlobBytes { hash: h.hash, sent, size: h.size });
            }
            done = async { match blob_task.as_mut() { Some((_, t)) => (&mut t.0).await, None => std::future::pending().await } } => {
                let Some((h, _)) = blob_task.take() else { continue };
                match done {
                    Ok(Ok(cut)) => {
                        session.blob_sent(&h.hash, clock());
                        if cut {
                            cut_short = Some(h.hash);
                        }
                    }
                    Ok(Err(BlobError::Local(failure))) => {
                        tracing::info!(hash = %h.hash, ?failure, "blob stream failed");
                        actions.extend(session.blob_failed(&h.hash, failure));
                    }
                    Ok(Err(BlobError::Transport(e))) => {
                        tracing::info!(hash = %h.hash, error = %e, "blob stream failed");
                        actions.extend(session.blob_failed(&h.hash, BlobFailure::Transport));
                        broken = Some(e);
                    }
                    Err(e) => {
                        tracing::info!(hash = %h.hash, error = %e, "blob sender failed");
                        actions.extend(session.blob_failed(&h.hash, BlobFailure::Transport));
                        broken = Some(NetError::BlobSender(e));
                    }
                }
            }
            // The parent opens a stream only to answer a `Fetch` (§8.11); the session checks
            // it. One at a time: the next is accepted once this one is done.
            uni = conn.accept_uni(), if fetch.stream.is_none() && !fetch.closed => {
                match uni {
                    Ok(recv) => fetch.stream = Some(Incoming::Header { recv, reader: FrameReader::new(BLOB_HEADER_LIMIT) }),
                    // The connection is gone: the control stream reports it, as before fetches.
                    Err(_) => fetch.closed = true,
                }
            }
            read = fetch.read(), if fetch.stream.is_some() => {
                let stop_at = options.interrupt_fetch_after();
                match fetch.handle(read, &mut session, &store, clock(), stop_at, progress) {
                    Ok(out) => actions.extend(out),
                    Err(Interrupted) => {
                        // The test hook's "lost connection", with the bytes so far kept.
                        conn.close(0u32.into(), b"interrupted");
                        let e = SessionError::Aborted { code: ErrorCode::Done, message: "fetch interrupted by the test hook".into() };
                        return Err(NetError::Session(e));
                    }
                }
            }
            _ = sleep => {
                actions.extend(session.handle_timeout(clock()));
            }
            () = &mut stop, if !stopped => {
                stopped = true;
                actions.extend(session.stop_following());
            }
        }
    }
}

/// A blob stream the parent opened in answer to a `Fetch` (§8.11), being read: its header
/// frame first, then its bytes, written durably every [`BLOB_FLUSH`] bytes and when the
/// stream ends or breaks (as a parent writes an upload's).
enum Incoming {
    Header {
        recv: RecvStream,
        reader: FrameReader,
    },
    Body {
        recv: RecvStream,
        sink: FetchSink,
        pending: Vec<u8>,
    },
}

/// The fetch stream being read, if any, and its read buffer.
struct FetchIn {
    stream: Option<Incoming>,
    buf: Vec<u8>,
    /// The connection accepts no more streams (it is closing).
    closed: bool,
}

impl Default for FetchIn {
    fn default() -> Self {
        Self {
            stream: None,
            buf: vec![0u8; 64 * 1024],
            closed: false,
        }
    }
}

/// The test hook ended the session mid-fetch.
struct Interrupted;

impl FetchIn {
    /// The next read of the stream (cancel-safe: `RecvStream::read` loses nothing).
    async fn read(&mut self) -> Result<Option<usize>, quinn::ReadError> {
        match self.stream.as_mut() {
            Some(Incoming::Header { recv, .. } | Incoming::Body { recv, .. }) => {
                recv.read(&mut self.buf).await
            }
            None => std::future::pending().await,
        }
    }

    /// Hands one read of the stream to the session; the actions to carry out.
    fn handle(
        &mut self,
        read: Result<Option<usize>, quinn::ReadError>,
        session: &mut ClientSession,
        store: &SharedStore,
        now: u64,
        stop_at: Option<u64>,
        progress: &mut (dyn FnMut(SyncProgress) + Send),
    ) -> Result<Vec<ClientAction>, Interrupted> {
        let read = read.map(|n| n.map(|n| &self.buf[..n]));
        match self.stream.take() {
            None => Ok(Vec::new()),
            Some(Incoming::Header {
                mut recv,
                mut reader,
            }) => {
                match read {
                    Ok(Some(bytes)) => reader.push(bytes),
                    // Ended or broke before a whole header: there is no blob to name.
                    Ok(None) | Err(_) => return Ok(Vec::new()),
                }
                let body = reader
                    .next_body()
                    .and_then(|b| b.map(|b| frame::decode_blob_header(&b)).transpose());
                let header = match body {
                    Ok(Some(h)) => h,
                    Ok(None) => {
                        self.stream = Some(Incoming::Header { recv, reader });
                        return Ok(Vec::new());
                    }
                    Err(e) => {
                        let code = gridsync_proto::server::frame_error_code(&e);
                        let _ = recv.stop(code.as_u16().into());
                        return Ok(session.frame_error(&e));
                    }
                };
                match session.fetch_begin(header, now) {
                    Err(actions) => {
                        tracing::info!(hash = %header.hash, "refused a blob stream the relay opened");
                        let _ = recv.stop(FETCH_STREAM_REFUSED.as_u16().into());
                        Ok(actions)
                    }
                    // What came with the header is checked as any read is.
                    Ok(sink) => self.body(
                        recv,
                        sink,
                        reader.take_rest(),
                        None,
                        session,
                        store,
                        now,
                        stop_at,
                        progress,
                    ),
                }
            }
            Some(Incoming::Body {
                recv,
                sink,
                mut pending,
            }) => {
                let ended = match read {
                    Ok(Some(bytes)) => {
                        pending.extend_from_slice(bytes);
                        session.fetch_progress(&sink.header().hash, now);
                        None
                    }
                    Ok(None) => Some(Ok(())),
                    Err(e) => Some(Err(e)),
                };
                self.body(
                    recv, sink, pending, ended, session, store, now, stop_at, progress,
                )
            }
        }
    }

    /// The body after a read: written when [`BLOB_FLUSH`] bytes are pending, a byte runs
    /// past the size, or the stream ended (`ended`: cleanly, or broken); the stream kept
    /// otherwise.
    #[allow(clippy::too_many_arguments)]
    fn body(
        &mut self,
        mut recv: RecvStream,
        mut sink: FetchSink,
        mut pending: Vec<u8>,
        ended: Option<Result<(), quinn::ReadError>>,
        session: &mut ClientSession,
        store: &SharedStore,
        now: u64,
        stop_at: Option<u64>,
        progress: &mut (dyn FnMut(SyncProgress) + Send),
    ) -> Result<Vec<ClientAction>, Interrupted> {
        let h = *sink.header();
        let received = (sink.at() - h.offset).saturating_add(pending.len() as u64);
        // The test hook cuts a blob that this read does not complete (nor overrun).
        let cut = stop_at.is_some_and(|n| received >= n)
            && sink.fits(pending.len())
            && sink.at() + (pending.len() as u64) < h.size;
        if ended.is_some() || cut || pending.len() >= BLOB_FLUSH || !sink.fits(pending.len()) {
            if !pending.is_empty() {
                let stopped = crate::blocking(|| {
                    let mut guard = lock(store);
                    session.fetch_data(&mut sink, &pending, &mut *guard, now)
                });
                if let Some((code, actions)) = stopped {
                    let _ = recv.stop(code.as_u16().into());
                    return Ok(actions);
                }
                pending.clear();
                progress(SyncProgress::FetchBytes {
                    hash: h.hash,
                    held: sink.at(),
                    size: h.size,
                });
            }
            if cut {
                return Err(Interrupted);
            }
            if let Some(how) = ended {
                if let Err(e) = how {
                    tracing::info!(hash = %h.hash, held = sink.at(), error = %e, "fetch stream broke; keeping the bytes received");
                }
                return Ok(crate::blocking(|| {
                    let mut guard = lock(store);
                    session.fetch_end(sink, &mut *guard, now)
                }));
            }
        }
        self.stream = Some(Incoming::Body {
            recv,
            sink,
            pending,
        });
        Ok(Vec::new())
    }
}

/// A task that is aborted when its handle is dropped: a session that ends, fails or is
/// cancelled (a relay's `select!`) leaves no blob sender behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether `msg` is the parent's answer about blob `hash` (held, partly held, or refused).
fn answers_blob(msg: &Message, hash: &gridsync_core::BlobHash) -> bool {
    matches!(msg,
        Message::BlobStored { hash: h }
        | Message::BlobPartial { hash: h, .. }
        | Message::BlobRefused { hash: h, .. } if h == hash)
}

/// Why a blob stream could not be sent: the local store could not give its bytes, or the
/// stream or connection broke.
#[derive(Debug)]
enum BlobError {
    Local(BlobFailure),
    Transport(NetError),
}

/// Sends one blob stream; returns whether `stop_at` cut it short.
async fn send_blob(
    conn: &Connection,
    store: &SharedStore,
    h: BlobHeader,
    stop_at: Option<u64>,
    progress: &tokio::sync::mpsc::UnboundedSender<(BlobHeader, u64)>,
) -> Result<bool, BlobError> {
    let net = |e: NetError| BlobError::Transport(e);
    let mut stream: SendStream = conn.open_uni().await.map_err(|e| net(e.into()))?;
    let header = frame::encode_value("blob header", &h).map_err(|e| net(NetError::Encode(e)))?;
    // The parent stops a stream it refuses (and says why on the control stream, where the
    // session hears it): that is the end of this stream, not a failure of the session.
    let write_err = |e: quinn::WriteError| match e {
        quinn::WriteError::Stopped(_) => None,
        other => Some(net(other.into())),
    };
    if let Err(e) = stream.write_all(&header).await {
        return write_err(e).map_or(Ok(false), Err);
    }
    let mut at = h.offset;
    let end = match stop_at {
        Some(n) => (h.offset + n).min(h.size),
        None => h.size,
    };
    while at < end {
        let len = BLOB_CHUNK.min((end - at) as usize);
        let chunk = crate::blocking(|| lock(store).read_blob(&h.hash, at, len))
            .map_err(|e| BlobError::Local(BlobFailure::LocalStore(e)))?
            .ok_or(BlobError::Local(BlobFailure::Missing))?;
        if chunk.is_empty() {
            return Err(BlobError::Local(BlobFailure::Short { size: h.size }));
        }
        if let Err(e) = stream.write_all(&chunk).await {
            return write_err(e).map_or(Ok(false), Err);
        }
        at += chunk.len() as u64;
        let _ = progress.send((h, at));
    }
    stream.finish().map_err(|e| net(NetError::Finish(e)))?;
    // `finish` returns once the bytes are queued; on a slow link they may take minutes to
    // arrive. The parent's answer is only awaited (under the response timeout) once every
    // byte is acknowledged, or the parent stopped the stream.
    stream.stopped().await.map_err(|e| net(e.into()))?;
    Ok(end < h.size)
}
