//! A deterministic, in-memory link for sync sessions.
//!
//! [`Sim::run`] connects a [`ClientSession`] and a [`ServerSession`], each over its own store,
//! the way `gridsync-net` does over QUIC, but with no sockets, no threads and no clock:
//!
//! - every control message is encoded with [`frame::encode`] and decoded by a [`FrameReader`]
//!   on the other side (each frame is handed over in two pieces, so reassembly is exercised);
//!   frames arrive in order per direction, and the two directions and the blob streams take
//!   turns ([`Interleave`]);
//! - a [`ClientAction::SendBlob`] becomes a blob stream: the header frame and the first chunk
//!   in one piece (as a first read of a stream gives them), the header read back by a
//!   [`FrameReader`], then the bytes, read from the child's store with
//!   [`SyncStore::read_blob`] and fed in chunks to [`ServerSession::blob_data`]; then
//!   [`ServerSession::blob_end`] and [`ClientSession::blob_sent`];
//! - time is [`Sim::now_ms`], a number advanced by [`Sim::latency_ms`] per delivery; when
//!   nothing is in flight and the child still waits, time jumps to its deadline and
//!   [`ClientSession::handle_timeout`] runs;
//! - [`Fault`]s drop the link, duplicate a frame, stall a direction, cut or corrupt a blob
//!   stream.
//!
//! Everything that happened is returned as an [`Outcome`] for the test to check.

use std::collections::{BTreeMap, VecDeque};

use gridsync_core::command::{self, Change};
use gridsync_core::{
    BlobHash, Category, Event, GridCode, IncidentId, NodeId, Payload, PhotoKind, PhotoMeta, Report,
    Scope, Severity, Writer,
};
use gridsync_proto::client::{
    ClientAction, ClientConfig, ClientSession, Progress, SessionError, Summary,
};
use gridsync_proto::server::{BlobCheck, ServerConfig, ServerOutput, ServerSession, ServerStats};
use gridsync_proto::{frame, BlobHeader, ErrorCode, FrameReader, Limits, Message, Role, SyncStore};
use gridsync_store::{BlobKind, NewBlob, Store};

/// A node of the simulated district: its identity, its store and the limits it announces to
/// children.
#[derive(Debug)]
pub struct Node {
    pub id: NodeId,
    /// The node's Ed25519 secret key seed (`[seed; 32]`); `id` is its public key.
    pub secret: [u8; 32],
    pub name: String,
    pub role: Role,
    pub store: Store,
    /// What this node announces in `Welcome` when it serves a child.
    pub limits: Limits,
    /// The blob check it applies when it serves a child (none, as `ServerConfig::new`; a
    /// relay's is `gridsync_relay::check_blob`).
    pub blob_check: Option<BlobCheck>,
    incidents: u64,
}

impl Node {
    /// A node with an in-memory store and the secret key `[seed; 32]` (its node id is that
    /// key's public key).
    pub fn new(seed: u8, name: &str, role: Role) -> Self {
        let secret = [seed; 32];
        let id = NodeId::from_secret(&secret);
        let mut store = Store::in_memory().expect("in-memory store");
        if role != Role::Device {
            // A relay signs the node records of the children it enrolls with its key.
            store
                .set_identity(&gridsync_store::Identity {
                    secret,
                    node_id: id,
                    name: name.to_owned(),
                    role,
                    scope: None,
                })
                .expect("identity");
        }
        Self {
            id,
            secret,
            name: name.to_owned(),
            role,
            store,
            limits: ServerConfig::new(id, role, name).limits,
            blob_check: None,
            incidents: 0,
        }
    }

    /// How this node connects to `parent` as a child.
    pub fn client_config(&self, parent: &Node) -> ClientConfig {
        ClientConfig::new(self.id, self.role, self.name.clone(), parent.id)
    }

    /// How this node serves its children.
    pub fn server_config(&self) -> ServerConfig {
        let mut c = ServerConfig::new(self.id, self.role, self.name.clone());
        c.limits = self.limits;
        c.blob_check = self.blob_check;
        c
    }

    /// Enrolls `child` here, in its own role, for `scope` (a device: its grid).
    pub fn enroll(&mut self, child: &Node, scope: &str, now_ms: u64) {
        let scope: Scope = scope.parse().expect("scope");
        self.store
            .enroll(&child.id, child.role, &scope, now_ms)
            .expect("enroll");
    }

    /// A writer for this node's next events, as `gridsync-device` makes one.
    pub fn writer(&self) -> Writer {
        Writer::signing(
            &self.secret,
            self.name.clone(),
            self.store.next_seq(&self.id).expect("next seq"),
            self.store.clock_last().expect("clock"),
        )
    }

    /// Reports a new incident in `grid` with `photos` at `now_ms`: the report and one
    /// `PhotoAdded` per photo, committed with the photos' blobs in one append.
    pub fn report(
        &mut self,
        grid: &str,
        description: &str,
        photos: &[FakePhoto],
        now_ms: u64,
    ) -> IncidentId {
        self.incidents += 1;
        let mut random = [0u8; 10];
        random[0] = self.secret[0];
        random[2..].copy_from_slice(&self.incidents.to_be_bytes());
        let id = IncidentId::new_v7(now_ms, random);
        let payloads = command::plan_report(
            Report {
                category: Category::from_catalogue("garbage").expect("category"),
                description: description.to_owned(),
                location: None,
                observed_at: None,
                severity: Severity::Normal,
            },
            photos.iter().map(FakePhoto::meta).collect(),
        )
        .expect("plan report");
        let grid: GridCode = grid.parse().expect("grid");
        self.commit(id, &grid, payloads, photos, now_ms);
        id
    }

    /// Applies `changes` to incident `id` as one command (checked by `plan_edit` against this
    /// node's state), adding `photos` too.
    pub fn edit(
        &mut self,
        id: IncidentId,
        changes: Vec<Change>,
        photos: &[FakePhoto],
        now_ms: u64,
    ) {
        let state = self
            .store
            .incident(&id)
            .expect("read incident")
            .expect("incident known here");
        let grid = state.report.as_ref().expect("reported").grid.clone();
        let mut changes = changes;
        changes.extend(photos.iter().map(|p| Change::AddPhoto(p.meta())));
        let payloads = command::plan_edit(&state, changes).expect("plan edit");
        self.commit(id, &grid, payloads, photos, now_ms);
    }

    /// Writes `n` edits of incident `id` (comments, description and severity changes in
    /// turn, each planned against the state the previous ones left) in one append.
    pub fn busy_edits(&mut self, id: IncidentId, n: usize, now_ms: u64) {
        let mut state = self
            .store
            .incident(&id)
            .expect("read incident")
            .expect("incident known here");
        let grid = state.report.as_ref().expect("reported").grid.clone();
        let mut writer = self.writer();
        let severities = [
            Severity::Low,
            Severity::High,
            Severity::Urgent,
            Severity::Normal,
        ];
        let mut events = Vec::with_capacity(n);
        for i in 0..n {
            let change = match i % 3 {
                0 => Change::Comment(format!("note {i} from {}", self.name)),
                1 => Change::Description(format!("description {i} by {}", self.name)),
                _ => {
                    let now = state.severity.value().copied();
                    let mut next = severities[i % severities.len()];
                    if Some(next) == now {
                        next = severities[(i + 1) % severities.len()];
                    }
                    Change::Severity(next)
                }
            };
            for p in command::plan_edit(&state, vec![change]).expect("plan edit") {
                let e = writer.write(id, &grid, p, now_ms + i as u64);
                state.apply(&e);
                events.push(e);
            }
        }
        self.store
            .append(&events, &[], Some(writer.clock_last()))
            .expect("append");
    }

    /// Stamps `payloads` and commits them with `photos`' blobs in one append, as a device
    /// commits one user action.
    pub fn commit(
        &mut self,
        id: IncidentId,
        grid: &GridCode,
        payloads: Vec<Payload>,
        photos: &[FakePhoto],
        now_ms: u64,
    ) -> Vec<Event> {
        let mut writer = self.writer();
        let events: Vec<Event> = payloads
            .into_iter()
            .map(|p| writer.write(id, grid, p, now_ms))
            .collect();
        let blobs: Vec<NewBlob<'_>> = photos.iter().flat_map(FakePhoto::blobs).collect();
        self.store
            .append(&events, &blobs, Some(writer.clock_last()))
            .expect("append");
        events
    }

    /// Every incident here as incident JSON, keyed by id.
    pub fn views(&self) -> serde_json::Value {
        crate::views_of(&self.store)
    }

    /// Every event held here, sorted by `(origin, seq)`.
    pub fn events(&self) -> Vec<Event> {
        let mut all: Vec<Event> = self
            .store
            .incidents()
            .expect("incidents")
            .iter()
            .flat_map(|s| self.store.events_of(&s.id).expect("events"))
            .collect();
        all.sort_by_key(|e| (e.origin, e.seq));
        all
    }
}

/// A photo and thumbnail for a test. Made-up bytes ([`FakePhoto::new`]) do where the
/// parent has no blob check (the store only hashes them); a parent with one needs the
/// pipeline's output ([`FakePhoto::processed`]).
#[derive(Debug, Clone)]
pub struct FakePhoto {
    pub photo: Vec<u8>,
    pub thumb: Vec<u8>,
    /// The width and height the `PhotoAdded` event declares.
    pub size: (u32, u32),
}

impl FakePhoto {
    /// Deterministic pseudo-random bytes of the given sizes, declared as 1600x1200.
    pub fn new(seed: u64, photo_len: usize, thumb_len: usize) -> Self {
        let mut rng = Rng::new(seed);
        let mut bytes = |n: usize| (0..n).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>();
        let photo = bytes(photo_len);
        let thumb = bytes(thumb_len);
        Self {
            photo,
            thumb,
            size: (1600, 1200),
        }
    }

    /// A real photo: `input` (a JPEG or PNG) through the device's photo pipeline, as a
    /// handheld stores it.
    pub fn processed(input: &[u8]) -> Self {
        let out = gridsync_media::process(input, &gridsync_media::Limits::default())
            .expect("the pipeline accepts the photo");
        Self {
            size: (out.photo.width, out.photo.height),
            photo: out.photo.bytes,
            thumb: out.thumb.bytes,
        }
    }

    /// A sample photo from `fixtures/photos/`, through the pipeline.
    pub fn fixture(name: &str) -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/photos")
            .join(name);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("fixture photo {}: {e}", path.display()));
        Self::processed(&bytes)
    }

    pub fn hash(&self) -> BlobHash {
        BlobHash::of(&self.photo)
    }

    pub fn thumb_hash(&self) -> BlobHash {
        BlobHash::of(&self.thumb)
    }

    /// The `PhotoAdded` metadata naming both blobs.
    pub fn meta(&self) -> PhotoMeta {
        PhotoMeta {
            hash: self.hash(),
            thumb: self.thumb_hash(),
            kind: PhotoKind::Before,
            width: self.size.0,
            height: self.size.1,
            bytes: self.photo.len() as u64,
            captured_at: None,
        }
    }

    /// The photo and its thumbnail, to store with the event naming them.
    pub fn blobs(&self) -> [NewBlob<'_>; 2] {
        [
            NewBlob {
                hash: self.hash(),
                kind: BlobKind::Photo,
                bytes: &self.photo,
            },
            NewBlob {
                hash: self.thumb_hash(),
                kind: BlobKind::Thumb,
                bytes: &self.thumb,
            },
        ]
    }
}

/// xorshift64*: deterministic bytes and choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A direction on the control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    /// Child to parent.
    Up,
    /// Parent to child.
    Down,
}

/// The `nth` frame (from 1) taken off the link in direction `dir`, counting only messages
/// named `name` if one is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMatch {
    pub dir: Dir,
    pub name: Option<&'static str>,
    pub nth: usize,
}

impl FrameMatch {
    /// The `nth` `name` message in direction `dir`.
    pub fn named(dir: Dir, name: &'static str, nth: usize) -> Self {
        Self {
            dir,
            name: Some(name),
            nth,
        }
    }

    /// The `nth` frame of any kind in direction `dir`.
    pub fn any(dir: Dir, nth: usize) -> Self {
        Self {
            dir,
            name: None,
            nth,
        }
    }
}

/// Which blob stream a blob fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobMatch {
    /// The stream of this blob.
    Hash(BlobHash),
    /// The `n`th stream of the session (from 1).
    Nth(usize),
}

/// Something that goes wrong on the link during one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection is lost right after the frame is delivered and handled (whatever the
    /// receiver answers is lost too).
    DropAfter(FrameMatch),
    /// The connection is lost just before the frame would arrive.
    DropBefore(FrameMatch),
    /// The frame arrives twice in a row.
    Duplicate(FrameMatch),
    /// After `after` frames in direction `dir`, nothing more arrives that way (the peer
    /// goes silent; the connection stays up).
    Stall { dir: Dir, after: usize },
    /// The blob stream breaks after `after` bytes (counted from its offset): the parent
    /// keeps what arrived, `blob_end` is never called, and the connection is lost.
    CutBlob { blob: BlobMatch, after: u64 },
    /// The byte at position `at` of the blob (from its start) is flipped in flight.
    CorruptBlob { blob: BlobMatch, at: u64 },
}

/// How the control directions and blob streams take turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interleave {
    /// Up, down, blobs, up, ... skipping what has nothing to deliver.
    RoundRobin,
    /// A seeded random choice among what has something to deliver.
    Seeded(u64),
}

/// Whether a frame was put on the link or taken off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Sent,
    Delivered,
}

/// One control frame sent or delivered.
#[derive(Debug, Clone)]
pub struct Step {
    pub at_ms: u64,
    pub dir: Dir,
    pub kind: StepKind,
    pub msg: Message,
    /// The frame's bytes, length prefix included.
    pub frame: Vec<u8>,
}

/// One blob stream as the parent saw it.
#[derive(Debug, Clone)]
pub struct BlobStream {
    pub header: BlobHeader,
    /// Bytes handed to `blob_data` (and accepted).
    pub fed: u64,
    /// Whether `blob_end` was called.
    pub ended: bool,
    /// Set when `blob_begin` or `blob_data` refused the stream.
    pub refused: Option<ErrorCode>,
}

/// How a session ended, as the child saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `ClientAction::Finished`.
    Finished,
    /// `ClientAction::Failed`.
    Failed(SessionError),
    /// The connection was lost (a [`Fault`]): neither side finished.
    Dropped,
    /// Nothing in flight, and the child neither ended nor waits for anything.
    Stalled,
}

/// Everything that happened in one session.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub end: End,
    /// The child's summary when the session ended (also when it failed).
    pub summary: Summary,
    /// The parent's counters.
    pub stats: ServerStats,
    /// Control frames, sent and delivered, in order.
    pub steps: Vec<Step>,
    /// Blob streams, in the order they ran.
    pub blobs: Vec<BlobStream>,
    pub progress: Vec<Progress>,
    /// The parent's `ServerOutput::End`, if it ended.
    pub server_end: Option<(ErrorCode, String)>,
    /// Events the parent reported committed (`ServerOutput::Committed`).
    pub committed: u64,
    /// When time jumped to the child's deadline and `handle_timeout` ran.
    pub timed_out_at: Option<u64>,
    /// Events in `Events` frames a [`Fault::Duplicate`] delivered a second time.
    pub duplicated_events: u64,
}

impl Outcome {
    pub fn finished(&self) -> bool {
        self.end == End::Finished
    }

    /// The messages sent in direction `dir`, in order.
    pub fn sent(&self, dir: Dir) -> Vec<&Message> {
        self.messages(dir, StepKind::Sent)
    }

    /// The messages delivered in direction `dir`, in order.
    pub fn delivered(&self, dir: Dir) -> Vec<&Message> {
        self.messages(dir, StepKind::Delivered)
    }

    fn messages(&self, dir: Dir, kind: StepKind) -> Vec<&Message> {
        self.steps
            .iter()
            .filter(|s| s.dir == dir && s.kind == kind)
            .map(|s| &s.msg)
            .collect()
    }

    /// The names of the messages sent in direction `dir`.
    pub fn sent_names(&self, dir: Dir) -> Vec<&'static str> {
        self.sent(dir).iter().map(|m| m.name()).collect()
    }

    /// The bytes of the control frames delivered in direction `dir`.
    pub fn frame_bytes(&self, dir: Dir) -> usize {
        self.steps
            .iter()
            .filter(|s| s.dir == dir && s.kind == StepKind::Delivered)
            .map(|s| s.frame.len())
            .sum()
    }

    /// The position in [`Outcome::steps`] of the first step matching.
    pub fn position(&self, f: impl Fn(&Step) -> bool) -> Option<usize> {
        self.steps.iter().position(f)
    }
}

/// The result of a scripted child's session: what the parent answered.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub replies: Vec<Message>,
    pub server_end: Option<(ErrorCode, String)>,
    pub committed: u64,
}

/// The simulated clock and link settings. Sessions run one after another on the same clock.
#[derive(Debug, Clone)]
pub struct Sim {
    pub now_ms: u64,
    /// Time added per delivery step.
    pub latency_ms: u64,
    /// Bytes per blob chunk read and fed.
    pub chunk: usize,
    pub interleave: Interleave,
    /// A session taking more steps than this is a bug (a loop); the run panics.
    pub max_steps: usize,
}

impl Sim {
    /// A link with 5 ms per delivery and 64 KiB blob chunks, starting at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            now_ms,
            latency_ms: 5,
            chunk: 64 * 1024,
            interleave: Interleave::RoundRobin,
            max_steps: 100_000,
        }
    }

    /// Lets `ms` of simulated time pass.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    /// One session of `child` with `parent`, the TLS peer being the child's own id.
    pub fn sync(&mut self, child: &mut Node, parent: &mut Node, faults: &[Fault]) -> Outcome {
        let client = child.client_config(parent);
        let server = parent.server_config();
        self.run(
            &mut child.store,
            client,
            &mut parent.store,
            server,
            child.id,
            faults,
        )
    }

    /// One session: `client` over `child_store` with `server` over `parent_store`, the
    /// parent's TLS layer having proved the peer is `tls_peer`.
    pub fn run(
        &mut self,
        child_store: &mut dyn SyncStore,
        client: ClientConfig,
        parent_store: &mut dyn SyncStore,
        server: ServerConfig,
        tls_peer: NodeId,
        faults: &[Fault],
    ) -> Outcome {
        let max_frame = server.limits.max_frame;
        let mut run = Run {
            sim: self,
            child: ClientSession::new(client),
            parent: ServerSession::new(server, tls_peer),
            child_store,
            parent_store,
            faults,
            up: VecDeque::new(),
            down: VecDeque::new(),
            blob_queue: VecDeque::new(),
            up_reader: FrameReader::new(max_frame),
            down_reader: FrameReader::default(),
            taken: BTreeMap::new(),
            streams: 0,
            dropped: false,
            turn: 0,
            rng: None,
            end: None,
            out: Outcome {
                end: End::Stalled,
                summary: Summary::default(),
                stats: ServerStats::default(),
                steps: Vec::new(),
                blobs: Vec::new(),
                progress: Vec::new(),
                server_end: None,
                committed: 0,
                timed_out_at: None,
                duplicated_events: 0,
            },
        };
        if let Interleave::Seeded(seed) = run.sim.interleave {
            run.rng = Some(Rng::new(seed));
        }
        run.go()
    }

    /// A scripted child: sends `frames` (whole frames, as another session put them on the
    /// wire) one by one to a fresh parent session and collects what it answers.
    pub fn scripted(
        &mut self,
        parent: &mut Node,
        tls_peer: NodeId,
        frames: &[Vec<u8>],
    ) -> Scripted {
        let server = parent.server_config();
        let mut reader = FrameReader::new(server.limits.max_frame);
        let mut back = FrameReader::default();
        let mut session = ServerSession::new(server, tls_peer);
        let mut out = Scripted {
            replies: Vec::new(),
            server_end: None,
            committed: 0,
        };
        for f in frames {
            self.now_ms += self.latency_ms;
            let msg = deliver(&mut reader, f).expect("scripted frame decodes");
            for o in session.handle(msg, &mut parent.store, self.now_ms) {
                match o {
                    ServerOutput::Send(m) => {
                        let frame = frame::encode(&m).expect("encode reply");
                        out.replies
                            .push(deliver(&mut back, &frame).expect("reply decodes"));
                    }
                    ServerOutput::Committed { stored } => out.committed += u64::from(stored),
                    // A scripted child reads no fetch stream.
                    ServerOutput::BlobCommitted { .. } | ServerOutput::SendBlob(_) => {}
                    ServerOutput::End { code, reason } => out.server_end = Some((code, reason)),
                }
            }
        }
        out
    }
}

/// Hands `frame` to `reader` in two pieces and returns the one message it holds.
fn deliver(reader: &mut FrameReader, frame: &[u8]) -> Result<Message, frame::FrameError> {
    let half = frame.len() / 2;
    reader.push(&frame[..half]);
    assert!(
        reader.next_message()?.is_none(),
        "half a frame decoded as a message"
    );
    reader.push(&frame[half..]);
    Ok(reader
        .next_message()?
        .expect("a whole frame decodes as one message"))
}

/// A frame on the link, and its message's name for the fault rules (the link is omniscient).
#[derive(Debug)]
struct InFlight {
    bytes: Vec<u8>,
    name: &'static str,
    events: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Up,
    Down,
    Blob,
}

struct Run<'a> {
    sim: &'a mut Sim,
    child: ClientSession,
    parent: ServerSession,
    child_store: &'a mut dyn SyncStore,
    parent_store: &'a mut dyn SyncStore,
    faults: &'a [Fault],
    up: VecDeque<InFlight>,
    down: VecDeque<InFlight>,
    blob_queue: VecDeque<BlobHeader>,
    up_reader: FrameReader,
    down_reader: FrameReader,
    /// Frames taken off the link: per direction, per message name (and `""` for all).
    taken: BTreeMap<(Dir, &'static str), usize>,
    streams: usize,
    dropped: bool,
    turn: usize,
    rng: Option<Rng>,
    end: Option<End>,
    out: Outcome,
}

impl Run<'_> {
    fn go(mut self) -> Outcome {
        let actions = self.child.start(self.sim.now_ms);
        self.on_child(actions);
        let mut steps = 0;
        loop {
            if self.dropped {
                // A session that had already ended keeps its end.
                self.end.get_or_insert(End::Dropped);
                break;
            }
            steps += 1;
            assert!(
                steps <= self.sim.max_steps,
                "session still running after {steps} steps"
            );
            if self.child.is_ended() {
                // The driver stops sending blobs once the session is over.
                self.blob_queue.clear();
            }
            let lanes = self.ready_lanes();
            if lanes.is_empty() {
                if self.child.is_ended() {
                    break;
                }
                match self.child.poll_timeout() {
                    Some(deadline) => {
                        self.sim.now_ms = self.sim.now_ms.max(deadline);
                        self.out.timed_out_at = Some(self.sim.now_ms);
                        let actions = self.child.handle_timeout(self.sim.now_ms);
                        if actions.is_empty() {
                            self.end = Some(End::Stalled);
                            break;
                        }
                        self.on_child(actions);
                        continue;
                    }
                    None => {
                        self.end = Some(End::Stalled);
                        break;
                    }
                }
            }
            let lane = match &mut self.rng {
                Some(rng) => lanes[rng.below(lanes.len() as u64) as usize],
                None => {
                    let order = [Lane::Up, Lane::Down, Lane::Blob];
                    let pick = (0..3)
                        .map(|i| order[(self.turn + i) % 3])
                        .find(|l| lanes.contains(l))
                        .expect("a ready lane");
                    self.turn = (order.iter().position(|l| *l == pick).expect("lane") + 1) % 3;
                    pick
                }
            };
            self.sim.now_ms += self.sim.latency_ms;
            match lane {
                Lane::Up => self.deliver_control(Dir::Up),
                Lane::Down => self.deliver_control(Dir::Down),
                Lane::Blob => {
                    let h = self.blob_queue.pop_front().expect("a blob stream");
                    self.stream_blob(h);
                }
            }
        }
        let mut out = self.out;
        out.end = self.end.unwrap_or(End::Stalled);
        out.summary = self.child.summary().clone();
        out.stats = self.parent.stats().clone();
        out
    }

    fn stalled(&self, dir: Dir) -> bool {
        let taken = self.taken.get(&(dir, "")).copied().unwrap_or(0);
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::Stall { dir: d, after } if *d == dir && taken >= *after))
    }

    fn ready_lanes(&self) -> Vec<Lane> {
        let mut lanes = Vec::new();
        if !self.up.is_empty() && !self.stalled(Dir::Up) {
            lanes.push(Lane::Up);
        }
        if !self.down.is_empty() && !self.stalled(Dir::Down) {
            lanes.push(Lane::Down);
        }
        if !self.blob_queue.is_empty() {
            lanes.push(Lane::Blob);
        }
        lanes
    }

    fn matches(&self, m: &FrameMatch, dir: Dir, name: &'static str) -> bool {
        m.dir == dir
            && match m.name {
                None => self.taken.get(&(dir, "")).copied() == Some(m.nth),
                Some(n) => n == name && self.taken.get(&(dir, name)).copied() == Some(m.nth),
            }
    }

    fn deliver_control(&mut self, dir: Dir) {
        let frame = match dir {
            Dir::Up => self.up.pop_front(),
            Dir::Down => self.down.pop_front(),
        }
        .expect("a frame in flight");
        *self.taken.entry((dir, "")).or_default() += 1;
        *self.taken.entry((dir, frame.name)).or_default() += 1;
        let hit = |run: &Self, pick: fn(&Fault) -> Option<&FrameMatch>| {
            run.faults
                .iter()
                .filter_map(pick)
                .any(|m| run.matches(m, dir, frame.name))
        };
        if hit(self, |f| match f {
            Fault::DropBefore(m) => Some(m),
            _ => None,
        }) {
            self.dropped = true;
            return;
        }
        let times = if hit(self, |f| match f {
            Fault::Duplicate(m) => Some(m),
            _ => None,
        }) {
            if frame.name == "Events" && dir == Dir::Up {
                self.out.duplicated_events += frame.events as u64;
            }
            2
        } else {
            1
        };
        for _ in 0..times {
            let now = self.sim.now_ms;
            let reader = match dir {
                Dir::Up => &mut self.up_reader,
                Dir::Down => &mut self.down_reader,
            };
            match deliver(reader, &frame.bytes) {
                Ok(msg) => {
                    self.out.steps.push(Step {
                        at_ms: now,
                        dir,
                        kind: StepKind::Delivered,
                        msg: msg.clone(),
                        frame: frame.bytes.clone(),
                    });
                    match dir {
                        Dir::Up => {
                            let outs = self.parent.handle(msg, self.parent_store, now);
                            self.on_parent(outs);
                        }
                        Dir::Down => {
                            let actions = self.child.handle(msg, self.child_store, now);
                            self.on_child(actions);
                        }
                    }
                }
                // What the QUIC driver does with a frame that does not decode.
                Err(e) => {
                    let code = match e {
                        frame::FrameError::TooLarge { .. } => ErrorCode::TooLarge,
                        _ => ErrorCode::Malformed,
                    };
                    match dir {
                        Dir::Up => {
                            let outs = self.parent.abort(code, e.to_string());
                            self.on_parent(outs);
                        }
                        Dir::Down => {
                            let actions = self.child.abort(code, e.to_string());
                            self.on_child(actions);
                        }
                    }
                }
            }
        }
        if hit(self, |f| match f {
            Fault::DropAfter(m) => Some(m),
            _ => None,
        }) {
            self.dropped = true;
        }
    }

    fn blob_fault(
        &self,
        h: &BlobHeader,
        pick: fn(&Fault) -> Option<(BlobMatch, u64)>,
    ) -> Option<u64> {
        self.faults.iter().filter_map(pick).find_map(|(m, n)| {
            let hit = match m {
                BlobMatch::Hash(hash) => hash == h.hash,
                BlobMatch::Nth(k) => k == self.streams,
            };
            hit.then_some(n)
        })
    }

    fn read_chunk(&self, h: &BlobHeader, at: u64, end: u64) -> Vec<u8> {
        let len = self.sim.chunk.min((end - at) as usize);
        if len == 0 {
            return Vec::new();
        }
        let bytes = self
            .child_store
            .read_blob(&h.hash, at, len)
            .expect("read blob")
            .expect("the child holds the blob it sends");
        assert_eq!(
            bytes.len(),
            len,
            "blob {} is shorter than its header says",
            h.hash
        );
        bytes
    }

    /// One blob stream, start to end (or to its break).
    fn stream_blob(&mut self, h: BlobHeader) {
        self.streams += 1;
        let cut = self.blob_fault(&h, |f| match f {
            Fault::CutBlob { blob, after } => Some((*blob, *after)),
            _ => None,
        });
        let corrupt = self.blob_fault(&h, |f| match f {
            Fault::CorruptBlob { blob, at } => Some((*blob, *at)),
            _ => None,
        });
        let end = cut.map_or(h.size, |n| h.offset.saturating_add(n).min(h.size));
        let mut rec = BlobStream {
            header: h,
            fed: 0,
            ended: false,
            refused: None,
        };
        // The first read of the stream: the header frame and the first bytes together.
        let mut at = h.offset;
        let first = self.read_chunk(&h, at, end);
        at += first.len() as u64;
        let mut reader = FrameReader::default();
        reader.push(&frame::encode_value("blob header", &h).expect("encode blob header"));
        reader.push(&first);
        let body = reader
            .next_body()
            .expect("blob header frame")
            .expect("a whole header frame");
        let header = frame::decode_blob_header(&body).expect("blob header decodes");
        assert_eq!(header, h);
        let mut pending = reader.take_rest();
        let mut pending_at = h.offset;
        let now = self.sim.now_ms;
        let mut sink = match self.parent.blob_begin(header, self.parent_store) {
            Ok(sink) => sink,
            Err(e) => {
                rec.refused = Some(e.code);
                self.out.blobs.push(rec);
                let outs = self.parent.blob_refused(&e);
                self.on_parent(outs);
                self.child.blob_sent(&h.hash, now);
                return;
            }
        };
        loop {
            if !pending.is_empty() {
                if let Some(pos) = corrupt {
                    if (pending_at..pending_at + pending.len() as u64).contains(&pos) {
                        pending[(pos - pending_at) as usize] ^= 0x5a;
                    }
                }
                if let Err(e) = self
                    .parent
                    .blob_data(&mut sink, &pending, self.parent_store)
                {
                    rec.refused = Some(e.code);
                    self.out.blobs.push(rec);
                    let outs = self.parent.blob_refused(&e);
                    self.on_parent(outs);
                    self.child.blob_sent(&h.hash, now);
                    return;
                }
                rec.fed += pending.len() as u64;
                pending_at += pending.len() as u64;
            }
            if at >= end {
                break;
            }
            pending = self.read_chunk(&h, at, end);
            at += pending.len() as u64;
        }
        if end < h.size {
            // The stream broke: no clean end, and the connection is gone with it.
            self.out.blobs.push(rec);
            self.dropped = true;
            return;
        }
        rec.ended = true;
        self.out.blobs.push(rec);
        let outs = self.parent.blob_end(sink, self.parent_store);
        self.on_parent(outs);
        self.child.blob_sent(&h.hash, self.sim.now_ms);
    }

    fn send(&mut self, dir: Dir, msg: Message) {
        let bytes = frame::encode(&msg).expect("encode message");
        let events = match &msg {
            Message::Events { events, .. } => events.len(),
            _ => 0,
        };
        let f = InFlight {
            bytes: bytes.clone(),
            name: msg.name(),
            events,
        };
        self.out.steps.push(Step {
            at_ms: self.sim.now_ms,
            dir,
            kind: StepKind::Sent,
            msg,
            frame: bytes,
        });
        match dir {
            Dir::Up => self.up.push_back(f),
            Dir::Down => self.down.push_back(f),
        }
    }

    fn on_child(&mut self, actions: Vec<ClientAction>) {
        for a in actions {
            match a {
                ClientAction::Send(m) => self.send(Dir::Up, m),
                ClientAction::SendBlob(h) => self.blob_queue.push_back(h),
                ClientAction::Progress(p) => self.out.progress.push(p),
                ClientAction::Finished(_) => self.end = Some(End::Finished),
                ClientAction::Failed(e) => self.end = Some(End::Failed(e)),
            }
        }
    }

    fn on_parent(&mut self, outs: Vec<ServerOutput>) {
        for o in outs {
            match o {
                ServerOutput::Send(m) => self.send(Dir::Down, m),
                ServerOutput::Committed { stored } => self.out.committed += u64::from(stored),
                ServerOutput::BlobCommitted { .. } => {}
                ServerOutput::SendBlob(h) => self.stream_fetch(h),
                ServerOutput::End { code, reason } => self.out.server_end = Some((code, reason)),
            }
        }
    }

    /// A blob stream the parent opens in answer to a `Fetch` (PROTOCOL.md §8.11), delivered
    /// to the child whole, at once.
    fn stream_fetch(&mut self, h: BlobHeader) {
        let now = self.sim.now_ms;
        let actions = match self.child.fetch_begin(h, now) {
            Err(actions) => actions,
            Ok(mut sink) => {
                let len = usize::try_from(h.size - h.offset).expect("blob size");
                let bytes = self
                    .parent_store
                    .read_blob(&h.hash, h.offset, len)
                    .expect("read blob")
                    .expect("the parent holds the blob it sends");
                match self
                    .child
                    .fetch_data(&mut sink, &bytes, self.child_store, now)
                {
                    Some((_, actions)) => actions,
                    None => self.child.fetch_end(sink, self.child_store, now),
                }
            }
        };
        self.on_child(actions);
    }
}
