//! Transport tuning: the QUIC transport parameters both sides use ([`config`]) and the
//! timeouts, sizes and limits of the drivers in [`crate::client`] and [`crate::server`].
//!
//! None of these values is part of the protocol (`proto/PROTOCOL.md` §2.1, §11): a peer may
//! use any. Each one says why it is what it is.

use std::sync::Arc;
use std::time::Duration;

/// Interval between QUIC keep-alive packets of a syncing child, so that NAT bindings and the
/// idle timer stay fresh while a session waits (a parent answering a large upload). A parent
/// sends none ([`server_config`]), nor does a follower ([`follower_config`]).
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// A connection with no packet from the peer for this long is closed. Six keep-alives: a few
/// lost packets on a mobile link do not end a session, a peer that is gone is noticed soon.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(IDLE_TIMEOUT_MS as u64);

const IDLE_TIMEOUT_MS: u32 = 30_000;

/// Unacknowledged bytes a node keeps in flight on a connection. Enough for a mobile link's
/// bandwidth-delay product; small enough that a blob's progress follows what the peer received
/// (not what was queued) and a control message is never stuck behind megabytes of photo.
pub const SEND_WINDOW: u64 = 512 * 1024;

/// How long a child's connect (the QUIC and TLS handshakes) may take before it gives up: a
/// relay that does not answer in this long is as good as unreachable to a user waiting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Bytes a child reads from its store and writes to a blob stream at a time: large enough to
/// keep the send window full, small enough that progress moves and the store lock is short.
pub const BLOB_CHUNK: usize = 64 * 1024;

/// Blob bytes a parent receives are made durable in pieces of this size, so an interrupted
/// upload loses at most this much (and a resume re-sends at most this much).
pub const BLOB_FLUSH: usize = 64 * 1024;

/// How long a session may go without a message on its control stream, by default
/// ([`crate::server::Shared::control_idle`]). Long, because a photo upload on a slow link
/// keeps the control stream quiet while it lasts.
pub const CONTROL_IDLE: Duration = Duration::from_secs(600);

/// The frame limit for a blob stream's header: a header is a hash, a kind and two numbers,
/// far below this; anything longer is not a header.
pub const BLOB_HEADER_LIMIT: u32 = 1024;

/// How long a parent gives a child to close after it was sent an error, before closing the
/// connection itself (the child should read the error first, and say it to its user); also
/// how long a new session waits for the previous one on the same connection to end.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long a parent gives a handshake to complete, and a connection to start a session (and
/// the next one after a session ended): a peer that holds a connection without syncing costs
/// a slot. A relay's following upstream session holds its connection busy; its photo
/// connection, idle after its sessions, is closed by this and opened again when needed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections a parent serves at once, by default ([`crate::server::Shared::max_connections`]).
/// Each costs memory (buffers, a session) and a share of the store lock; one more is refused
/// with QUIC `CONNECTION_REFUSED` before any handshake, and the child retries with backoff.
/// Far above a street relay's few hundred devices.
pub const MAX_CONNECTIONS: usize = 1024;

/// The transport configuration of both sides: keep-alive every [`KEEP_ALIVE`], idle timeout
/// [`IDLE_TIMEOUT`], no path-MTU probing, a send window of [`SEND_WINDOW`], BBR congestion
/// control; quinn's defaults otherwise.
pub fn config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(IDLE_TIMEOUT_MS).into()));
    // No path-MTU probing: a handheld opens a connection per sync on a metered mobile link,
    // and probing cost about 10 KB per connection (measured by the `sync` benchmark) to save
    // a few percent of header bytes on photos. QUIC's 1200-byte minimum works on every path.
    transport.mtu_discovery_config(None);
    transport.send_window(SEND_WINDOW);
    // Random loss on mobile links starves loss-based controllers; on a lossy link BBR gave
    // 10x the throughput of the default (measured).
    transport.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    transport
}

/// A parent's transport: [`config`] without keep-alives. The child keeps a connection alive
/// (every [`KEEP_ALIVE`] while a session runs; a follower by the `Follow` its parent answers
/// at least every `FOLLOW_HOLD_MS`), so a parent pinging each of its idle followers would only
/// add bytes to every metered link it serves.
pub fn server_config() -> quinn::TransportConfig {
    let mut transport = config();
    transport.keep_alive_interval(None);
    transport
}

/// A follower's transport: [`config`] without keep-alives: a held `Follow` is answered at
/// least every `FOLLOW_HOLD_MS` (25 s, under the 30 s idle timeout), and that exchange is the
/// only traffic of an idle follower.
pub fn follower_config() -> quinn::TransportConfig {
    let mut transport = config();
    transport.keep_alive_interval(None);
    transport
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        assert_eq!(IDLE_TIMEOUT, Duration::from_secs(30));
        assert!(KEEP_ALIVE < IDLE_TIMEOUT);
        // A held Follow's answer comes before the idle timeout, with room for a lost packet.
        assert!(
            Duration::from_millis(gridsync_proto::FOLLOW_HOLD_MS) + Duration::from_secs(3)
                < IDLE_TIMEOUT
        );
        assert!(BLOB_CHUNK as u64 <= SEND_WINDOW);
        // TransportConfig has no getters; building it must not panic.
        let _ = config();
    }
}
