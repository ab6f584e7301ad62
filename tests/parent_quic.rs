//! The parent's side of blob streams and of the control-stream timer over real loopback QUIC
//! (127.0.0.1, port 0), driven by a raw child that writes frames and bytes itself: the
//! `STOP_SENDING` codes of refused blob streams, bytes past a blob's size, and a session that
//! goes quiet (PROTOCOL.md §8.5, §8.7, §11). Nothing sleeps for a fixed time: every wait is for
//! a message, a stream's stop or the connection's close, with a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gridsync_core::NodeId;
use gridsync_proto::{
    frame, BlobHeader, BlobInfo, BlobKind, ErrorCode, FrameReader, Message, Role, Want,
};
use gridsync_relay::{RelayHandle, RelayOptions};
use gridsync_scenarios::net::{db, enroll, init_device, init_relay, loopback};
use gridsync_scenarios::sim::{FakePhoto, Node};
use gridsync_store::Store;

const GRID: &str = "110101/002/014/03";
/// How long any single wait may take before the test fails (nothing here is timed).
const DEADLINE: Duration = Duration::from_secs(30);

/// A street relay's store and a device's, the device enrolled there.
struct World {
    _dir: tempfile::TempDir,
    street: PathBuf,
    street_id: NodeId,
    device_id: NodeId,
    device_secret: [u8; 32],
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let street = db(dir.path(), "street");
        let device = db(dir.path(), "wang-li");
        let street_id = init_relay(&street, "street-002", "street");
        let device_id = init_device(&device, "wang-li", GRID);
        enroll(&street, device_id, Role::Device, GRID);
        let device_secret = Store::open(&device)
            .expect("open device store")
            .identity()
            .expect("identity")
            .secret;
        Self {
            _dir: dir,
            street,
            street_id,
            device_id,
            device_secret,
        }
    }

    async fn start(&self, options: RelayOptions) -> RelayHandle {
        gridsync_relay::start_with(&self.street, loopback(), None, options)
            .await
            .expect("start the street relay")
    }

    /// A connection to the relay with the device's identity.
    async fn connect(&self, relay: &RelayHandle) -> quinn::Connection {
        let endpoint = gridsync_net::client::endpoint(loopback()).expect("client endpoint");
        gridsync_net::client::connect(
            &endpoint,
            &self.device_secret,
            relay.local_addr,
            self.street_id,
        )
        .await
        .expect("connect")
    }
}

/// Puts at the relay an event naming `photo` (and its thumbnail), without the blobs.
fn name_at_relay(relay_db: &Path, photo: &FakePhoto) {
    let mut author = Node::new(40, "elsewhere", Role::Device);
    author.report(GRID, "Broken railing", std::slice::from_ref(photo), 1_000);
    Store::open(relay_db)
        .expect("open relay store")
        .append(&author.events(), &[], None)
        .expect("store the events");
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("gave up after {} s waiting for {what}", DEADLINE.as_secs()))
}

/// A control stream, as a raw child sees it.
struct Control {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
}

impl Control {
    async fn open(conn: &quinn::Connection) -> Self {
        let (send, recv) = conn.open_bi().await.expect("open the control stream");
        Self {
            send,
            recv,
            reader: FrameReader::default(),
        }
    }

    async fn send(&mut self, msg: &Message) {
        let bytes = frame::encode(msg).expect("encode");
        self.send.write_all(&bytes).await.expect("write a frame");
    }

    /// The next message, or `None` when the parent finished its half.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.reader.next_message().expect("a good frame") {
                return Some(m);
            }
            let mut buf = [0u8; 4096];
            match within("a message", self.recv.read(&mut buf))
                .await
                .expect("read the control stream")
            {
                Some(n) => self.reader.push(&buf[..n]),
                None => return None,
            }
        }
    }

    async fn expect(&mut self) -> Message {
        self.next().await.expect("a message, not the stream's end")
    }

    /// `Hello` → `Welcome`.
    async fn hello(&mut self, device: NodeId) {
        self.send(&Message::Hello {
            versions: vec![1],
            node: device,
            role: Role::Device,
            name: "raw child".into(),
        })
        .await;
        let welcome = self.expect().await;
        assert!(
            matches!(welcome, Message::Welcome { .. }),
            "expected Welcome, got {welcome:?}"
        );
    }

    /// Offers `info` alone and returns the parent's wants.
    async fn offer(&mut self, info: BlobInfo) -> Vec<Want> {
        self.send(&Message::Offer { blobs: vec![info] }).await;
        match self.expect().await {
            Message::Wants { wants } => wants,
            other => panic!("expected Wants, got {other:?}"),
        }
    }
}

/// Opens a blob stream and writes `bytes` on it (a header frame and what follows).
async fn blob_stream(conn: &quinn::Connection, bytes: &[u8]) -> quinn::SendStream {
    let mut uni = conn.open_uni().await.expect("open a blob stream");
    uni.write_all(bytes).await.expect("write the blob stream");
    uni
}

fn header_frame(header: &BlobHeader) -> Vec<u8> {
    frame::encode_value("blob header", header).expect("encode the header")
}

/// Waits for the parent's `STOP_SENDING` on `uni` and returns its code.
async fn stop_code(uni: &quinn::SendStream) -> u64 {
    within("STOP_SENDING", uni.stopped())
        .await
        .expect("the stream's state")
        .map(u64::from)
        .expect("stopped by the parent, not finished")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_blob_streams_get_their_stop_sending_codes() {
    let w = World::new();
    let relay = w.start(RelayOptions::default()).await;
    let conn = w.connect(&relay).await;
    let header = BlobHeader {
        hash: gridsync_core::BlobHash::of(b"anything"),
        kind: BlobKind::Photo,
        size: 8,
        offset: 0,
    };

    // No session on the connection yet: 9 Unexpected (not quinn's 0 of a dropped stream).
    let uni = blob_stream(&conn, &header_frame(&header)).await;
    assert_eq!(stop_code(&uni).await, 9, "before any session");

    // A header frame over 1024 bytes: 8 TooLarge, at the length prefix.
    let uni = blob_stream(&conn, &2000u32.to_be_bytes()).await;
    assert_eq!(stop_code(&uni).await, 8, "a header over 1024 bytes");
    // Exactly 1024 is within the limit: it does not decode (trailing bytes), 7 Malformed.
    let mut at_limit = header_frame(&header);
    at_limit.resize(4 + 1024, 0);
    at_limit[..4].copy_from_slice(&1024u32.to_be_bytes());
    let uni = blob_stream(&conn, &at_limit).await;
    assert_eq!(
        stop_code(&uni).await,
        7,
        "a 1024-byte header that does not decode"
    );
    // A header that does not decode: 7 Malformed.
    let uni = blob_stream(&conn, &[0, 0, 0, 3, 0x01, 0xff, 0xff]).await;
    assert_eq!(stop_code(&uni).await, 7, "a malformed header");

    // After a session ended: 9 as well.
    let mut control = Control::open(&conn).await;
    control.hello(w.device_id).await;
    control.send(&Message::Bye).await;
    control.send.finish().expect("finish");
    assert_eq!(control.next().await, None, "the parent finishes its half");
    let uni = blob_stream(&conn, &header_frame(&header)).await;
    assert_eq!(stop_code(&uni).await, 9, "after the session ended");

    conn.close(0u32.into(), b"done");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_past_a_blobs_size_are_refused_at_once_and_the_upload_restarts_from_zero() {
    const HELD: u64 = 70_000;
    let w = World::new();
    // A real photo: the relay stores only what the photo pipeline writes (§8.5).
    let photo = FakePhoto::fixture("garbage-12mp-rot6.jpg");
    name_at_relay(&w.street, &photo);
    let relay = w.start(RelayOptions::default()).await;
    let conn = w.connect(&relay).await;
    let mut control = Control::open(&conn).await;
    control.hello(w.device_id).await;
    let hash = photo.hash();
    let size = photo.photo.len() as u64;
    let info = BlobInfo {
        hash,
        kind: BlobKind::Photo,
        size,
    };
    let header = |offset| BlobHeader {
        hash,
        kind: BlobKind::Photo,
        size,
        offset,
    };

    // A first stream ends early: the parent keeps what it got.
    assert_eq!(control.offer(info).await, [Want { hash, offset: 0 }]);
    let mut stream = header_frame(&header(0));
    stream.extend_from_slice(&photo.photo[..HELD as usize]);
    let mut uni = blob_stream(&conn, &stream).await;
    uni.finish().expect("finish");
    assert_eq!(
        control.expect().await,
        Message::BlobPartial { hash, held: HELD }
    );

    // The rest, and 10 bytes too many, without FIN: refused at once, not at a flush (these
    // are fewer than 64 KiB) nor at the stream's end (it has none).
    assert_eq!(control.offer(info).await, [Want { hash, offset: HELD }]);
    let mut stream = header_frame(&header(HELD));
    stream.extend_from_slice(&photo.photo[HELD as usize..]);
    stream.extend_from_slice(&[0xee; 10]);
    let uni = blob_stream(&conn, &stream).await;
    match control.expect().await {
        Message::BlobRefused {
            hash: h,
            code: ErrorCode::BlobMismatch,
            ..
        } => assert_eq!(h, hash),
        other => panic!("expected BlobRefused {{ BlobMismatch }}, got {other:?}"),
    }
    assert_eq!(stop_code(&uni).await, 10);

    // The partial upload is gone: the next offer wants the blob from byte 0, whatever was
    // held before.
    assert_eq!(control.offer(info).await, [Want { hash, offset: 0 }]);
    let mut stream = header_frame(&header(0));
    stream.extend_from_slice(&photo.photo);
    let mut uni = blob_stream(&conn, &stream).await;
    uni.finish().expect("finish");
    assert_eq!(control.expect().await, Message::BlobStored { hash });
    control.send(&Message::Bye).await;
    conn.close(0u32.into(), b"done");
    relay.stop().await;
    assert_eq!(
        Store::open(&w.street)
            .expect("open")
            .blob(&hash)
            .expect("read"),
        Some(photo.photo.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_session_ends_with_timeout_after_the_configured_idle() {
    let w = World::new();
    let relay = w
        .start(RelayOptions {
            session_idle: Duration::from_secs(1),
            ..RelayOptions::default()
        })
        .await;
    let conn = w.connect(&relay).await;
    let mut control = Control::open(&conn).await;
    control.hello(w.device_id).await;
    // Say nothing: the parent gives up on the session, then on the connection.
    match control.expect().await {
        Message::Error {
            code: ErrorCode::Timeout,
            message,
        } => assert!(message.contains("1 s"), "{message}"),
        other => panic!("expected Error {{ Timeout }}, got {other:?}"),
    }
    assert_eq!(control.next().await, None, "the parent finishes its half");
    match within("the connection's close", conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(u64::from(close.error_code), 12, "{close:?}")
        }
        other => panic!("expected the parent's close with 12, got {other:?}"),
    }
    relay.stop().await;
}
