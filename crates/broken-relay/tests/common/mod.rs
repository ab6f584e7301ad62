//! Helpers for the broken relay's black-box tests: the binary run as a child process (port 0,
//! the address read from its first line), devices made and synced through gridsync-device,
//! and a raw QUIC client that sends whatever frames a test wants. Nothing sleeps for a fixed
//! time: every wait has a deadline.

// `libc::kill` (SIGTERM) needs `unsafe`; it is the only unsafe call here.
#![allow(unsafe_code)]
// Each test uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use gridsync_core::{codec, Category, Event, NodeId, Severity};
use gridsync_device::{Device, NewReport, SyncTarget};
use gridsync_net::client::{SyncOptions, SyncReport};
use gridsync_proto::{frame, ErrorCode, FrameReader, Head, Limits, Message, Role, SyncStore};
use gridsync_store::Store;

pub const GRID_A: &str = "110101/002/014/03";
pub const GRID_B: &str = "110101/002/015/01";

/// How long anything may take (generous: nothing is timed, only awaited).
pub const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gridsync-broken-relay")
}

/// `gridsync-broken-relay --db DB` with a clean environment and `GRIDSYNC_BROKEN=mode`.
pub fn command(db: &Path, mode: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_remove("GRIDSYNC_RELAY_DB")
        .env_remove("GRIDSYNC_LOG")
        .env("GRIDSYNC_BROKEN", mode)
        .arg("--db")
        .arg(db);
    cmd
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "gridsync-broken-relay {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command of the binary and expects success; returns standard output.
pub fn ok(db: &Path, args: &[&str]) -> String {
    let out = command(db, "none")
        .args(args)
        .output()
        .expect("run gridsync-broken-relay");
    assert!(out.status.success(), "{}", describe(args, &out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Runs a command with `GRIDSYNC_BROKEN=mode` and expects a one-line failure; returns it.
pub fn fails(db: &Path, mode: &str, args: &[&str]) -> String {
    let out = command(db, mode)
        .args(args)
        .output()
        .expect("run gridsync-broken-relay");
    assert!(!out.status.success(), "{}", describe(args, &out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{}", describe(args, &out));
    stderr.trim().to_owned()
}

/// A street relay's store made by the binary's `init`; returns its path and node id.
pub fn init_street(dir: &Path) -> (PathBuf, NodeId) {
    let db = dir.join("street.db");
    let out = ok(&db, &["init", "--name", "street-002", "--role", "street"]);
    let id = out.trim().parse().expect("init prints a node id");
    assert_eq!(out.lines().count(), 1, "{out:?}");
    (db, id)
}

/// A device store for `grid` (as `gridsync init` makes it), enrolled at the relay `relay_db`
/// by the binary's `enroll`.
pub fn device(dir: &Path, relay_db: &Path, name: &str, grid: &str) -> Device {
    let path = dir.join(format!("{name}.db"));
    let device = Device::init(&path, name, grid.parse().expect("grid")).expect("init device");
    let out = ok(
        relay_db,
        &["enroll", &device.node_id().to_hex(), "--grid", grid],
    );
    assert!(out.starts_with("enrolled device"), "{out}");
    device
}

/// Reports one incident on `device`.
pub fn report(device: &mut Device, description: &str) {
    device
        .report(NewReport {
            category: Category::from_catalogue("garbage").expect("category"),
            description: description.into(),
            location: None,
            severity: Severity::Normal,
            observed_at: None,
            photos: Vec::new(),
        })
        .expect("report");
}

/// The device's own events, as its store holds them.
pub fn own_events(device: &Device) -> Vec<Event> {
    let store = Store::open(device.store().path()).expect("open device store");
    store
        .events_after(&device.node_id(), 0, 10_000)
        .expect("read events")
}

/// The Ed25519 secret of a node's store.
pub fn secret_of(path: &Path) -> [u8; 32] {
    Store::open(path)
        .expect("open store")
        .identity()
        .expect("identity")
        .secret
}

/// The origins and sequence numbers of the events the store at `path` holds.
pub fn held(path: &Path) -> Vec<(NodeId, u64)> {
    let store = Store::open(path).expect("open store");
    let mut out: Vec<(NodeId, u64)> = store
        .incidents()
        .expect("incidents")
        .iter()
        .flat_map(|s| store.events_of(&s.id).expect("events"))
        .map(|e| (e.origin, e.seq))
        .collect();
    out.sort();
    out
}

/// A running `gridsync-broken-relay run`, killed if the test ends before it is stopped.
pub struct Relay {
    child: Option<Child>,
    pub mode: String,
    pub db: PathBuf,
    log: PathBuf,
    pub addr: SocketAddr,
    pub id: NodeId,
}

impl Relay {
    /// Starts `run --listen 127.0.0.1:0` with `GRIDSYNC_BROKEN=mode` and reads its first
    /// line, `listening on ADDR as NODE_ID`.
    pub fn start(db: &Path, mode: &str) -> Self {
        let log = db.with_extension(format!("{mode}.log"));
        let mut child = command(db, mode)
            .args(["run", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn gridsync-broken-relay run");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let mut relay = Self {
            child: Some(child),
            mode: mode.to_owned(),
            db: db.to_owned(),
            log,
            addr: ([127, 0, 0, 1], 0).into(),
            id: NodeId([0; 32]),
        };
        let line = match rx.recv_timeout(DEADLINE) {
            Ok(Some(Ok(line))) => line,
            other => panic!(
                "the {mode} relay printed no first line ({other:?}); its log:\n{}",
                relay.log_text()
            ),
        };
        let (addr, id) = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_once(" as "))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        relay.addr = addr.parse().expect("an address");
        assert_ne!(relay.addr.port(), 0, "the real port is printed: {line}");
        relay.id = id.parse().expect("a node id");
        relay
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn target(&self) -> SyncTarget {
        SyncTarget {
            addr: self.addr,
            relay_id: self.id,
        }
    }

    /// SIGKILL, at once; returns when the process is gone.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    /// SIGTERM; waits for the exit and returns its status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: `kill` only sends a signal to a process id; it touches no memory of ours.
        // The id is our own child's, not yet waited for (so not reused).
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                if !status.success() {
                    eprintln!("{} relay log:\n{}", self.mode, self.log_text());
                }
                return status;
            }
            assert!(Instant::now() < deadline, "the relay did not exit in time");
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("{} relay log:\n{}", self.mode, self.log_text());
            }
        }
    }
}

/// One sync session of `device` with `relay`.
pub async fn try_sync(device: &Device, relay: &Relay) -> Result<SyncReport, String> {
    device
        .sync(relay.target(), &SyncOptions::default(), &mut |_| {})
        .await
        .map_err(|e| e.to_string())
}

/// One sync session that must succeed.
pub async fn sync(device: &Device, relay: &Relay) -> SyncReport {
    try_sync(device, relay)
        .await
        .unwrap_or_else(|e| panic!("{} syncing: {e}\n{}", device.name(), relay.log_text()))
}

/// A child speaking raw frames on one control stream.
pub struct Raw {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
    node: NodeId,
}

impl Raw {
    /// Connects to `relay` as the node of the store at `path` and opens a control stream.
    pub async fn connect(path: &Path, relay: &Relay) -> Self {
        let identity = Store::open(path)
            .expect("open store")
            .identity()
            .expect("identity");
        let endpoint =
            gridsync_net::client::endpoint(([127, 0, 0, 1], 0).into()).expect("client endpoint");
        let conn = gridsync_net::client::connect(&endpoint, &identity.secret, relay.addr, relay.id)
            .await
            .expect("connect");
        let (send, recv) = conn.open_bi().await.expect("open the control stream");
        Self {
            endpoint,
            conn,
            send,
            recv,
            reader: FrameReader::default(),
            node: identity.node_id,
        }
    }

    /// Sends `Hello` as a device; returns the `Welcome`'s heads and limits.
    pub async fn hello(&mut self) -> (Vec<Head>, Limits) {
        self.send(&Message::Hello {
            versions: gridsync_proto::VERSIONS.to_vec(),
            node: self.node,
            role: Role::Device,
            name: "raw".into(),
        })
        .await;
        match self.next().await {
            Message::Welcome { heads, limits, .. } => (heads, limits),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, msg: &Message) {
        let bytes = frame::encode(msg).expect("encodes");
        self.send.write_all(&bytes).await.expect("send a frame");
    }

    /// Sends `bytes` while reading the answer (the relay may stop reading midway: a write
    /// error is then expected, and returned).
    pub async fn send_raw_and_next(&mut self, bytes: &[u8]) -> (Result<(), String>, Message) {
        let Self {
            send, recv, reader, ..
        } = self;
        let write = async { send.write_all(bytes).await.map_err(|e| e.to_string()) };
        let (written, msg) = tokio::join!(write, next_message(recv, reader));
        (written, msg)
    }

    /// Sends `Events` with `events` as batch `batch`; returns the answer.
    pub async fn upload(&mut self, batch: u64, events: &[Event]) -> Message {
        let events = events
            .iter()
            .map(|e| codec::encode_event(e).expect("encodes"))
            .collect();
        self.send(&Message::Events { batch, events }).await;
        self.next().await
    }

    /// The next message from the relay.
    pub async fn next(&mut self) -> Message {
        next_message(&mut self.recv, &mut self.reader).await
    }

    /// The code the relay ends the session with: its `Error` message, or, when the
    /// connection was closed before that arrived, the close code.
    pub async fn ended_with(&mut self) -> Option<ErrorCode> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self
                .reader
                .next_message()
                .expect("a valid frame from the relay")
            {
                Some(Message::Error { code, .. }) => return Some(code),
                Some(other) => panic!("expected the session to end, got {other:?}"),
                None => {}
            }
            let read = tokio::time::timeout(DEADLINE, self.recv.read(&mut buf))
                .await
                .expect("an answer in time");
            match read {
                Ok(Some(n)) => self.reader.push(&buf[..n]),
                Ok(None) => return None,
                Err(quinn::ReadError::ConnectionLost(
                    quinn::ConnectionError::ApplicationClosed(c),
                )) => {
                    return u16::try_from(c.error_code.into_inner())
                        .ok()
                        .and_then(ErrorCode::from_u16)
                }
                Err(e) => panic!("reading the control stream: {e}"),
            }
        }
    }

    /// Ends the session with `Bye`.
    pub async fn bye(mut self) {
        self.send(&Message::Bye).await;
        let _ = self.send.finish();
        // As a device does: close the connection, and let the close reach the relay.
        let _ = tokio::time::timeout(DEADLINE, self.send.stopped()).await;
        self.conn.close(ErrorCode::Done.as_u16().into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

async fn next_message(recv: &mut quinn::RecvStream, reader: &mut FrameReader) -> Message {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(msg) = reader.next_message().expect("a valid frame from the relay") {
            return msg;
        }
        let n = tokio::time::timeout_at(deadline, recv.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read the control stream")
            .expect("the relay closed the control stream without answering");
        reader.push(&buf[..n]);
    }
}

/// The head the relay reports for `node` (0 when not listed).
pub fn head_of(heads: &[Head], node: NodeId) -> u64 {
    heads.iter().find(|h| h.origin == node).map_or(0, |h| h.seq)
}
