//! The harness's QUIC side: connections, control streams and blob streams, each able to do
//! exactly what a case asks, well-formed or not. No session logic lives here; cases drive it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream};

use crate::tls::{self, ClientTls, Observed};
use crate::wire::{self, BlobHeader, FrameBuf, Msg, WireError, MAX_FRAME};

/// How long a case waits for an answer the spec says must come.
pub const ANSWER: Duration = Duration::from_secs(10);
/// How long a connection attempt may take.
pub const CONNECT: Duration = Duration::from_secs(10);

/// How a connection or stream ended, as the peer said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// QUIC application close with a gridsync error code (§2.3).
    App { code: u64, reason: String },
    /// QUIC transport close (handshake failures: TLS alerts are 0x100 + alert).
    Transport { code: u64, reason: String },
    /// Closed locally, reset, timed out, or anything else.
    Other(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::App { code, reason } => {
                let name = wire::Code::from_number(*code)
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_else(|| "unknown".into());
                write!(f, "application close {code} ({name}) {reason:?}")
            }
            Closed::Transport { code, reason } => {
                write!(f, "transport close 0x{code:x} {reason:?}")
            }
            Closed::Other(s) => write!(f, "{s}"),
        }
    }
}

impl From<&quinn::ConnectionError> for Closed {
    fn from(e: &quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => Closed::App {
                code: c.error_code.into_inner(),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            quinn::ConnectionError::ConnectionClosed(c) => Closed::Transport {
                code: u64::from(c.error_code),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            quinn::ConnectionError::TransportError(t) => Closed::Transport {
                code: u64::from(t.code),
                reason: t.reason.clone(),
            },
            other => Closed::Other(other.to_string()),
        }
    }
}

/// What came back instead of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoMsg {
    /// Nothing within the wait.
    Silence(Duration),
    /// The peer finished its half of the stream.
    Finished,
    /// The peer reset the stream with this code.
    Reset(u64),
    /// The connection closed.
    Closed(Closed),
    /// Bytes that are not a frame.
    Bad(String),
}

impl std::fmt::Display for NoMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoMsg::Silence(d) => write!(f, "nothing within {} ms", d.as_millis()),
            NoMsg::Finished => write!(f, "the stream finished without a message"),
            NoMsg::Reset(c) => write!(f, "the stream was reset with code {c}"),
            NoMsg::Closed(c) => write!(f, "the connection closed: {c}"),
            NoMsg::Bad(s) => write!(f, "undecodable bytes: {s}"),
        }
    }
}

/// The transport parameters of the harness: the reference's keep-alive and idle timeout.
pub fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(30_000).into()));
    Arc::new(t)
}

/// A client endpoint on an ephemeral loopback (or wildcard) port.
pub fn endpoint(target: SocketAddr) -> Result<Endpoint, std::io::Error> {
    let bind: SocketAddr = if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    Endpoint::client(bind)
}

/// One QUIC connection to the relay under test.
#[derive(Debug)]
pub struct Conn {
    pub conn: Connection,
    pub observed: Arc<Mutex<Observed>>,
}

/// Connects with the given TLS behaviour. A refused handshake comes back as its close.
pub async fn connect(
    endpoint: &Endpoint,
    target: SocketAddr,
    secret: &[u8; 32],
    options: &ClientTls,
) -> Result<Conn, Closed> {
    connect_within(endpoint, target, secret, options, CONNECT).await
}

/// [`connect`], giving the handshake up to `wait`.
pub async fn connect_within(
    endpoint: &Endpoint,
    target: SocketAddr,
    secret: &[u8; 32],
    options: &ClientTls,
    wait: Duration,
) -> Result<Conn, Closed> {
    let (config, observed) = tls::client_config(secret, options, transport())
        .map_err(|e| Closed::Other(e.to_string()))?;
    let connecting = endpoint
        .connect_with(config, target, tls::SERVER_NAME)
        .map_err(|e| Closed::Other(format!("cannot start connecting: {e}")))?;
    match tokio::time::timeout(wait, connecting).await {
        Ok(Ok(conn)) => Ok(Conn { conn, observed }),
        Ok(Err(e)) => Err(Closed::from(&e)),
        Err(_) => Err(Closed::Other(format!(
            "no handshake within {} s",
            wait.as_secs()
        ))),
    }
}

impl Conn {
    /// Opens a control stream (a client-initiated bidirectional stream, §3).
    pub async fn control(&self) -> Result<Ctl, Closed> {
        let (send, recv) = self.conn.open_bi().await.map_err(|e| Closed::from(&e))?;
        Ok(Ctl {
            send,
            recv,
            buf: FrameBuf::new(MAX_FRAME),
        })
    }

    /// Opens a blob stream (unidirectional, §8.5).
    pub async fn blob_stream(&self) -> Result<SendStream, Closed> {
        self.conn.open_uni().await.map_err(|e| Closed::from(&e))
    }

    /// Waits for the connection to close, at most `wait`.
    pub async fn closed_within(&self, wait: Duration) -> Option<Closed> {
        tokio::time::timeout(wait, self.conn.closed())
            .await
            .ok()
            .map(|e| Closed::from(&e))
    }

    /// Closes the connection with a code.
    pub fn close(&self, code: u32, reason: &str) {
        self.conn.close(code.into(), reason.as_bytes());
    }
}

/// One control stream.
#[derive(Debug)]
pub struct Ctl {
    pub send: SendStream,
    pub recv: RecvStream,
    buf: FrameBuf,
}

impl Ctl {
    /// Sends one message as a frame.
    pub async fn send(&mut self, msg: &Msg) -> Result<(), String> {
        let bytes = wire::frame(msg.name(), msg).map_err(|e| e.to_string())?;
        self.send_raw(&bytes).await
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.send
            .write_all(bytes)
            .await
            .map_err(|e| format!("cannot write on the control stream: {e}"))
    }

    /// Finishes our half.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }

    /// The next message, waiting at most `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Msg, NoMsg> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.buf.next_body() {
                Ok(Some(body)) => {
                    return wire::decode_msg(&body).map_err(|e| NoMsg::Bad(e.to_string()))
                }
                Ok(None) => {}
                Err(e @ WireError::TooLarge { .. }) => return Err(NoMsg::Bad(e.to_string())),
                Err(e) => return Err(NoMsg::Bad(e.to_string())),
            }
            let read = tokio::time::timeout_at(deadline, self.recv.read(&mut chunk)).await;
            match read {
                Err(_) => return Err(NoMsg::Silence(wait)),
                Ok(Ok(Some(n))) => self.buf.push(&chunk[..n]),
                Ok(Ok(None)) => {
                    if self.buf.pending() > 0 {
                        return Err(NoMsg::Bad(format!(
                            "the stream ended inside a frame ({} bytes)",
                            self.buf.pending()
                        )));
                    }
                    return Err(NoMsg::Finished);
                }
                Ok(Err(quinn::ReadError::Reset(code))) => {
                    return Err(NoMsg::Reset(code.into_inner()))
                }
                Ok(Err(quinn::ReadError::ConnectionLost(e))) => {
                    return Err(NoMsg::Closed(Closed::from(&e)))
                }
                Ok(Err(e)) => return Err(NoMsg::Closed(Closed::Other(e.to_string()))),
            }
        }
    }

    /// The next message, waiting [`ANSWER`].
    pub async fn recv(&mut self) -> Result<Msg, NoMsg> {
        self.recv_within(ANSWER).await
    }

    /// Sends `msg` and returns the answer.
    pub async fn ask(&mut self, msg: &Msg) -> Result<Msg, NoMsg> {
        self.send(msg)
            .await
            .map_err(|e| NoMsg::Closed(Closed::Other(e)))?;
        self.recv().await
    }
}

/// Sends a blob stream: the header frame, then `bytes`, then FIN (unless `fin` is false, when
/// the stream is left open and returned, also when the parent stopped it before all was
/// written).
pub async fn send_blob(
    conn: &Conn,
    header: &BlobHeader,
    bytes: &[u8],
    fin: bool,
) -> Result<Option<SendStream>, String> {
    let mut s = conn.blob_stream().await.map_err(|e| e.to_string())?;
    let head = wire::frame("BlobHeader", header).map_err(|e| e.to_string())?;
    for (what, part) in [("header", &head[..]), ("bytes", bytes)] {
        match s.write_all(part).await {
            Ok(()) => {}
            // The parent refused the stream (STOP_SENDING) before we finished writing: its
            // answer comes on the control stream, which is what the case checks, and an open
            // stream still reports the STOP_SENDING code.
            Err(quinn::WriteError::Stopped(_)) => return Ok((!fin).then_some(s)),
            Err(e) => return Err(format!("cannot write the blob {what}: {e}")),
        }
    }
    if fin {
        let _ = s.finish();
        Ok(None)
    } else {
        Ok(Some(s))
    }
}

/// A blob stream the relay opened (§8.11), read whole: its header and the bytes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub header: BlobHeader,
    pub bytes: Vec<u8>,
}

/// Accepts the next stream the relay opens on `conn` and reads it to its end, at most `wait`
/// in all: the header frame (limit 1024 bytes), then the bytes until FIN, at most the header's
/// `size - offset` and one more (so a stream running past its size shows as such).
pub async fn receive_blob(conn: &Conn, wait: Duration) -> Result<Received, String> {
    let read = async {
        let mut recv = conn
            .conn
            .accept_uni()
            .await
            .map_err(|e| format!("no stream from the relay: {}", Closed::from(&e)))?;
        let mut buf = FrameBuf::new(wire::MAX_BLOB_HEADER);
        let mut chunk = vec![0u8; 64 * 1024];
        let header = loop {
            match buf.next_body() {
                Ok(Some(body)) => {
                    break wire::decode_blob_header(&body)
                        .map_err(|e| format!("a header that does not decode: {e}"))?
                }
                Ok(None) => {}
                Err(e) => return Err(format!("a bad header frame: {e}")),
            }
            match recv.read(&mut chunk).await {
                Ok(Some(n)) => buf.push(&chunk[..n]),
                Ok(None) => return Err("the stream ended before its header".into()),
                Err(e) => return Err(format!("the stream broke before its header: {e}")),
            }
        };
        let mut bytes = buf.take_rest();
        let most = header.size.saturating_sub(header.offset).saturating_add(1);
        while (bytes.len() as u64) < most {
            match recv.read(&mut chunk).await {
                Ok(Some(n)) => bytes.extend_from_slice(&chunk[..n]),
                Ok(None) => break,
                Err(e) => return Err(format!("the stream broke after {} bytes: {e}", bytes.len())),
            }
        }
        Ok(Received { header, bytes })
    };
    tokio::time::timeout(wait, read)
        .await
        .unwrap_or_else(|_| Err(format!("no whole stream within {} s", wait.as_secs())))
}

/// Whether the relay opens no stream on `conn` within `wait`.
pub async fn no_stream_within(conn: &Conn, wait: Duration) -> bool {
    tokio::time::timeout(wait, conn.conn.accept_uni())
        .await
        .is_err()
}

/// Waits until the peer stops a send stream (STOP_SENDING), returning its code, or `None`
/// if the stream was acknowledged whole or the wait ran out.
pub async fn stopped_within(stream: &mut SendStream, wait: Duration) -> Option<u64> {
    match tokio::time::timeout(wait, stream.stopped()).await {
        Ok(Ok(Some(code))) => Some(code.into_inner()),
        _ => None,
    }
}
