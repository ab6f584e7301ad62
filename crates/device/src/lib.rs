//! gridsync-device: what a patrol handheld (PDA) app embeds.
//!
//! A [`Device`] owns the local store. Every user action ([`Device::report`], [`Device::edit`],
//! [`Device::attach_photo`]) is checked, its photos are processed (orientation, metadata
//! stripping, downscale, thumbnail, SHA-256), and then its events and blobs are committed in
//! one transaction: after a crash the action is wholly there or wholly absent. Nothing needs
//! a network.
//!
//! ```
//! use gridsync_device::{Device, FixedEnv, NewReport, PhotoInput};
//! use gridsync_core::{Category, Change, PhotoKind, Severity, Status};
//!
//! # fn main() -> Result<(), gridsync_device::DeviceError> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let path = dir.path().join("pda.db");
//! let grid = "110101/002/014/03".parse()?;
//! let env = FixedEnv::new(1_764_000_000_000, 7);
//! let mut pda = Device::init_with(&path, "patrol-7", grid, env)?;
//!
//! let photo = PhotoInput::from_path(
//!     concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/photos/street-640x427-gps.jpg").as_ref(),
//!     &Default::default(),
//! )?;
//! let id = pda.report(NewReport {
//!     category: Category::from_catalogue("garbage")?,
//!     description: "Bags piled by the east gate".into(),
//!     location: None,
//!     severity: Severity::Normal,
//!     observed_at: None,
//!     photos: vec![photo],
//! })?;
//! pda.edit(id, vec![Change::Severity(Severity::Urgent)], vec![])?;
//! // Decisions (accept, dispatch, verify, close, evaluate) are a platform's to make.
//! assert!(pda.edit(id, vec![Change::Status(Status::Accepted)], vec![]).is_err());
//!
//! let incident = pda.get(id)?.expect("just reported");
//! assert_eq!(incident.view().status, "reported");
//! assert_eq!(incident.view().photos.len(), 1);
//! assert_eq!(pda.pending()?.events, 3); // report, photo, severity: nothing synced yet
//! # Ok(()) }
//! ```

mod env;
pub mod sync;

use std::path::Path;

use ed25519_dalek::SigningKey;
use gridsync_core::command::{self, Change, CommandError};
use gridsync_core::event::CategoryError;
use gridsync_core::ids::GridError;
use gridsync_core::{
    BlobHash, Category, GridCode, IncidentId, IncidentState, Location, LocationSource, Millis,
    NodeId, Payload, PhotoKind, PhotoMeta, Report, Scope, Severity, Writer,
};
use gridsync_media::{Limits, MediaError, ProcessedPhoto};
use gridsync_store::{BlobKind, Identity, NewBlob, Pending, Store, StoreError};

pub use env::{Env, FixedEnv, SystemEnv};
use gridsync_proto::Role;
pub use gridsync_store::Counts;
pub use sync::SyncTarget;

/// Anything a device action can refuse or fail with. Nothing is written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    // The causes are part of the message (one line for the CLI), so they are deliberately not
    // also chained as `source()`, which would print them twice.
    #[error("photo {name}: {error}")]
    Photo { name: String, error: MediaError },
    #[error("photo {path}: {error}")]
    ReadPhoto { path: String, error: std::io::Error },
    #[error("incident {incident}: {error}")]
    Refused {
        incident: IncidentId,
        error: CommandError,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Category(#[from] CategoryError),
    #[error(transparent)]
    Grid(#[from] GridError),
    #[error("no incident {0} in this store")]
    NoSuchIncident(String),
    #[error("incident id part {prefix:?} matches {count} incidents; give more of it")]
    AmbiguousId { prefix: String, count: usize },
    #[error("no photo {0} with a thumbnail is known here")]
    NoThumbnail(BlobHash),
    #[error("blob {0} is not stored here")]
    NoSuchBlob(BlobHash),
    #[error("no incident here names blob {0}; sync first to download this grid's incidents")]
    NotNamed(BlobHash),
    #[error("the relay refused blob {hash}: {message} ({code:?})")]
    FetchRefused {
        hash: BlobHash,
        code: gridsync_proto::ErrorCode,
        message: String,
    },
    #[error(
        "the relay sent {held} of blob {hash}'s {size} bytes; fetch again to resume from there"
    )]
    FetchIncomplete {
        hash: BlobHash,
        held: u64,
        size: u64,
    },
    #[error("blob {hash} as the relay sent it was discarded: {reason}")]
    FetchDiscarded { hash: BlobHash, reason: String },
    #[error("the sync ended without fetching blob {0}")]
    NotFetched(BlobHash),
    #[error("{path}: cannot put the new store in place: {error}")]
    Init { path: String, error: std::io::Error },
    #[error("{path}: cannot lock the store for this action: {error}")]
    Lock { path: String, error: std::io::Error },
    #[error("device name {0:?} must be 1 to 128 bytes")]
    Name(String),
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("sync: {0}")]
    Sync(gridsync_net::NetError),
    #[error("node role {0:?} is none of device, community, street, district")]
    Role(String),
    #[error("this store belongs to a relay, which edits incidents but files no reports")]
    NotADevice,
    /// An operator decision asked of a handheld: every relay would refuse it, so it is
    /// refused before anything is written.
    #[error("incident {incident}: {what} is an operator decision, made at a platform (`gridsync-relay edit`); a handheld reports, comments, adds photos and reports handling (--status in_progress or resolved)")]
    Decision {
        incident: IncidentId,
        what: &'static str,
    },
}

type Result<T, E = DeviceError> = std::result::Result<T, E>;

/// A decision's name in [`DeviceError::Decision`].
fn decision_name(p: &gridsync_core::Payload) -> &'static str {
    use gridsync_core::Payload::*;
    match p {
        StatusChanged { .. } => "this status change",
        Assigned { .. } => "an assignment (dispatch)",
        Escalated { .. } => "an escalation",
        Evaluated { .. } => "an evaluation",
        _ => "this change",
    }
}

/// A photo to attach: its bytes and a name for messages (usually the file path).
#[derive(Clone)]
pub struct PhotoInput {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for PhotoInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhotoInput({}, {} bytes)", self.name, self.bytes.len())
    }
}

impl PhotoInput {
    /// Reads a photo file, refusing one over the byte limit. Never reads more than the limit
    /// plus one byte, whatever the file claims (a pipe or a device reports no size).
    pub fn from_path(path: &Path, limits: &Limits) -> Result<Self> {
        use std::io::Read;

        let name = path.display().to_string();
        let io = |error| DeviceError::ReadPhoto {
            path: name.clone(),
            error,
        };
        let too_large = |bytes: u64| DeviceError::Photo {
            name: name.clone(),
            error: MediaError::TooLarge {
                bytes,
                limit: limits.max_bytes,
            },
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let declared = file.metadata().map_err(io)?.len();
        if declared > limits.max_bytes {
            return Err(too_large(declared));
        }
        let mut bytes = Vec::with_capacity(declared as usize);
        file.take(limits.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > limits.max_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(Self { name, bytes })
    }
}

/// A new incident report.
#[derive(Debug, Clone)]
pub struct NewReport {
    pub category: Category,
    pub description: String,
    /// Where; `None` takes the first photo's EXIF GPS position (source `exif`), if any.
    pub location: Option<Location>,
    pub severity: Severity,
    /// When the problem was seen; `None` takes the first photo's EXIF capture time, if any.
    pub observed_at: Option<Millis>,
    /// Photos of the problem (kind `before`).
    pub photos: Vec<PhotoInput>,
}

/// The device side of gridsync over one local store.
#[derive(Debug)]
pub struct Device<E: Env = SystemEnv> {
    store: Store,
    identity: Identity,
    /// A device's grid; `None` on a relay (which edits incidents but files no reports).
    grid: Option<GridCode>,
    env: E,
    limits: Limits,
}

impl Device<SystemEnv> {
    /// Creates a store at `path` with a new node identity for a device in `grid`.
    pub fn init(path: &Path, name: &str, grid: GridCode) -> Result<Self> {
        Self::init_with(path, name, grid, SystemEnv)
    }

    /// Opens an existing device store.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SystemEnv)
    }
}

impl<E: Env> Device<E> {
    /// [`Device::init`] with an explicit clock and random source.
    pub fn init_with(path: &Path, name: &str, grid: GridCode, env: E) -> Result<Self> {
        Self::init_node(path, name, "device", grid.as_str(), env)
    }

    /// Creates a store at `path` with a new node identity of `role` (`device`, `street` or
    /// `district`) and `scope` (a device's grid; a relay's scope, empty until enrolled).
    pub fn init_node(path: &Path, name: &str, role: &str, scope: &str, mut env: E) -> Result<Self> {
        let role = Role::from_name(role).ok_or_else(|| DeviceError::Role(role.to_owned()))?;
        if role == Role::Device {
            scope.parse::<GridCode>()?;
        }
        // A relay is created without a scope (it learns what it serves from its parent).
        let scope = match scope.trim() {
            "" => None,
            s => Some(s.parse::<Scope>()?),
        };
        let name = name.trim();
        if name.is_empty() || name.len() > gridsync_core::event::limits::MAX_AUTHOR_BYTES {
            return Err(DeviceError::Name(name.to_owned()));
        }
        let mut secret = [0u8; 32];
        env.fill_random(&mut secret)?;
        let node_id = NodeId(SigningKey::from_bytes(&secret).verifying_key().to_bytes());
        let identity = Identity {
            secret,
            node_id,
            name: name.to_owned(),
            role,
            scope,
        };
        create_store_atomically(path, &identity, &mut env)?;
        Self::open_with(path, env)
    }

    /// [`Device::open`] with an explicit clock and random source.
    pub fn open_with(path: &Path, env: E) -> Result<Self> {
        let store = Store::open(path)?;
        let identity = store.identity()?;
        // The store checked that a device's identity has a grid.
        let grid = identity.grid();
        Ok(Self {
            store,
            identity,
            grid,
            env,
            limits: Limits::default(),
        })
    }

    /// Replaces the photo pipeline's limits.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The photo pipeline's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// This device's node id (its Ed25519 public key).
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id
    }

    /// The name written as `author` on this device's events.
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// The device's grid (`None` on a relay).
    pub fn grid(&self) -> Option<&GridCode> {
        self.grid.as_ref()
    }

    /// The node's role: `device`, `street` or `district`.
    pub fn role(&self) -> &str {
        self.identity.role.as_str()
    }

    /// The node's identity (including its secret key, for the sync transport).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The underlying store (read access).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The environment (clock and randomness), e.g. to advance a [`FixedEnv`].
    pub fn env_mut(&mut self) -> &mut E {
        &mut self.env
    }

    /// The writer of this node's events: every event it makes is signed with the node's key
    /// (reports, edits, photos, and a relay operator's decisions alike).
    fn writer(&self) -> Result<Writer> {
        Ok(Writer::signing(
            &self.identity.secret,
            self.identity.name.clone(),
            self.store.next_seq(&self.identity.node_id)?,
            self.store.clock_last()?,
        ))
    }

    fn process(&self, photo: &PhotoInput) -> Result<ProcessedPhoto> {
        gridsync_media::process(&photo.bytes, &self.limits).map_err(|error| DeviceError::Photo {
            name: photo.name.clone(),
            error,
        })
    }

    /// Stamps `payloads` and commits them with the photos' blobs in one transaction.
    fn commit(
        &mut self,
        id: IncidentId,
        grid: &GridCode,
        payloads: Vec<Payload>,
        photos: &[ProcessedPhoto],
    ) -> Result<()> {
        let mut writer = self.writer()?;
        let now = self.env.now_ms();
        let events: Vec<_> = payloads
            .into_iter()
            .map(|p| writer.write(id, grid, p, now))
            .collect();
        let mut blobs = Vec::with_capacity(photos.len() * 2);
        for p in photos {
            blobs.push(NewBlob {
                hash: p.photo.hash,
                kind: BlobKind::Photo,
                bytes: &p.photo.bytes,
            });
            blobs.push(NewBlob {
                hash: p.thumb.hash,
                kind: BlobKind::Thumb,
                bytes: &p.thumb.bytes,
            });
        }
        self.store
            .append(&events, &blobs, Some(writer.clock_last()))?;
        tracing::debug!(incident = %id, events = events.len(), blobs = blobs.len(), "committed");
        Ok(())
    }

    /// Holds an exclusive lock on the store file for one user action, so that two processes
    /// acting on the same handheld's store (an app and the CLI, say) take turns: each action
    /// checks the workflow against, and numbers its events after, everything committed
    /// before it. (A `flock`-style lock; SQLite's own locks are separate and unaffected.)
    fn lock_action(&self) -> Result<std::fs::File> {
        let path = self.store.path();
        let io = |error| DeviceError::Lock {
            path: path.display().to_string(),
            error,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
    }

    /// Records a new incident with its photos; returns its id (a UUIDv7 made offline).
    pub fn report(&mut self, report: NewReport) -> Result<IncidentId> {
        let _lock = self.lock_action()?;
        let processed = report
            .photos
            .iter()
            .map(|p| self.process(p))
            .collect::<Result<Vec<_>>>()?;
        let first_exif = processed.first().map(|p| &p.exif);
        let location = match report.location {
            Some(l) => Some(l),
            None => first_exif
                .and_then(|x| x.gps)
                .and_then(|g| Location::new(g.lat, g.lon, LocationSource::Exif).ok()),
        };
        let observed_at = report
            .observed_at
            .or(first_exif.and_then(|x| x.captured_at_ms));
        let metas = processed
            .iter()
            .map(|p| photo_meta(p, PhotoKind::Before))
            .collect();
        let payloads = command::plan_report(
            Report {
                category: report.category,
                description: report.description,
                location,
                observed_at,
                severity: report.severity,
            },
            metas,
        )?;
        let mut random = [0u8; 10];
        self.env.fill_random(&mut random)?;
        let id = IncidentId::new_v7(self.env.now_ms(), random);
        let grid = self.grid.clone().ok_or(DeviceError::NotADevice)?;
        self.commit(id, &grid, payloads, &processed)?;
        Ok(id)
    }

    /// Applies `changes` and attaches `photos` to incident `id`, checked against the workflow,
    /// as one action. A photo with no kind gets
    /// [`workflow::default_photo_kind`](gridsync_core::workflow::default_photo_kind) of the
    /// status this edit leaves the incident in. Returns how many events were written.
    pub fn edit(
        &mut self,
        id: IncidentId,
        mut changes: Vec<Change>,
        photos: Vec<(PhotoInput, Option<PhotoKind>)>,
    ) -> Result<usize> {
        let _lock = self.lock_action()?;
        let state = self
            .store
            .incident(&id)?
            .ok_or_else(|| DeviceError::NoSuchIncident(id.to_string()))?;
        let processed = photos
            .iter()
            .map(|(p, _)| self.process(p))
            .collect::<Result<Vec<_>>>()?;
        let status_after = changes
            .iter()
            .rev()
            .find_map(|c| match c {
                Change::Status(s) => Some(*s),
                _ => None,
            })
            .unwrap_or(state.status());
        let default_kind = gridsync_core::workflow::default_photo_kind(status_after);
        changes.extend(
            processed.iter().zip(&photos).map(|(p, (_, kind))| {
                Change::AddPhoto(photo_meta(p, kind.unwrap_or(default_kind)))
            }),
        );
        let payloads =
            command::plan_edit(&state, changes).map_err(|error| DeviceError::Refused {
                incident: id,
                error,
            })?;
        if self.identity.role == Role::Device {
            if let Some(p) = payloads.iter().find(|p| gridsync_core::is_decision(p)) {
                return Err(DeviceError::Decision {
                    incident: id,
                    what: decision_name(p),
                });
            }
        }
        let n = payloads.len();
        let grid = state
            .grid()
            .or(self.grid.as_ref())
            .cloned()
            .ok_or_else(|| DeviceError::NoSuchIncident(id.to_string()))?;
        self.commit(id, &grid, payloads, &processed)?;
        Ok(n)
    }

    /// Attaches one photo to incident `id`.
    pub fn attach_photo(
        &mut self,
        id: IncidentId,
        photo: PhotoInput,
        kind: PhotoKind,
    ) -> Result<()> {
        self.edit(id, vec![], vec![(photo, Some(kind))]).map(|_| ())
    }

    /// Every incident in the store, oldest report first.
    pub fn list(&self) -> Result<Vec<IncidentState>> {
        Ok(self.store.incidents()?)
    }

    /// One incident.
    pub fn get(&self, id: IncidentId) -> Result<Option<IncidentState>> {
        Ok(self.store.incident(&id)?)
    }

    /// Resolves a full incident id, or a unique prefix or suffix of one of at least 4
    /// characters (ids are UUIDv7: the start is a timestamp shared by ids made close together,
    /// the end is random, so a short suffix is the handy one).
    pub fn resolve(&self, text: &str) -> Result<IncidentId> {
        if let Ok(id) = text.parse::<IncidentId>() {
            return Ok(id);
        }
        let prefix = text.trim().to_ascii_lowercase();
        if prefix.len() < 4 {
            return Err(DeviceError::NoSuchIncident(text.to_owned()));
        }
        let matches: Vec<IncidentId> = self
            .list()?
            .into_iter()
            .map(|s| s.id)
            .filter(|id| {
                let text = id.to_string();
                text.starts_with(&prefix) || text.ends_with(&prefix)
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(DeviceError::NoSuchIncident(text.to_owned())),
            many => Err(DeviceError::AmbiguousId {
                prefix,
                count: many.len(),
            }),
        }
    }

    /// What is waiting to sync: own events not yet acknowledged upstream, blobs not yet sent.
    pub fn pending(&self) -> Result<Pending> {
        Ok(self.store.pending(&self.identity.node_id)?)
    }

    /// Sizes of what the store holds.
    pub fn counts(&self) -> Result<Counts> {
        Ok(self.store.counts()?)
    }

    /// A stored blob's bytes: the photo or thumbnail `hash` names, or with `thumb` the
    /// thumbnail of photo `hash`.
    pub fn blob(&self, hash: &BlobHash, thumb: bool) -> Result<Vec<u8>> {
        let wanted = self.blob_hash(hash, thumb)?;
        self.store
            .blob(&wanted)?
            .ok_or(DeviceError::NoSuchBlob(wanted))
    }

    /// The blob `hash` names: itself, or with `thumb` the thumbnail of photo `hash`.
    fn blob_hash(&self, hash: &BlobHash, thumb: bool) -> Result<BlobHash> {
        match (thumb, self.store.thumb_of(hash)?) {
            (false, _) => Ok(*hash),
            (true, Some(t)) => Ok(t),
            (true, None) => Err(DeviceError::NoThumbnail(*hash)),
        }
    }

    /// Wants the full photo `hash` (a photo of an incident held here) from the relay: every
    /// sync fetches it (PROTOCOL.md §8.11, after the download) until it is held, resuming
    /// from the bytes an interrupted fetch left. Returns whether it was newly wanted (not if
    /// held or wanted already).
    pub fn want_photo(&mut self, hash: &BlobHash) -> Result<bool> {
        self.want_blob(hash, false)
    }

    /// Wants blob `hash`, or with `thumb` the thumbnail of photo `hash`, from the relay (see
    /// [`Device::want_photo`]); it must be named by a photo event held here.
    pub fn want_blob(&mut self, hash: &BlobHash, thumb: bool) -> Result<bool> {
        let wanted = self.blob_hash(hash, thumb)?;
        let kind = self
            .store
            .named_blob_kind(&wanted)?
            .ok_or(DeviceError::NotNamed(wanted))?;
        let now = self.env.now_ms();
        Ok(self.store.want_blob(&wanted, kind, now)?)
    }

    /// Drops the want of blob `hash` (a photo no longer needed here); whether it was wanted.
    pub fn unwant_blob(&mut self, hash: &BlobHash) -> Result<bool> {
        Ok(self.store.unwant_blob(hash)?)
    }
}

/// Makes a store with its identity under a temporary name beside `path`, closes it, and only
/// then links it into place (never over an existing file). A crash at any instant leaves
/// either no store at `path` (and `init` can simply be run again) or a complete one.
fn create_store_atomically(path: &Path, identity: &Identity, env: &mut impl Env) -> Result<()> {
    if path.exists() {
        return Err(StoreError::Exists {
            path: path.to_owned(),
        }
        .into());
    }
    let mut tag = [0u8; 6];
    env.fill_random(&mut tag)?;
    let file_name = path.file_name().map_or_else(
        || "gridsync.db".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = path.with_file_name(format!(
        ".{file_name}.init-{}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let result = (|| -> Result<()> {
        let mut store = Store::create(&tmp)?;
        store.set_identity(identity)?;
        // Closing checkpoints the WAL into the main file, which is all that gets linked.
        store.close()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StoreError::Exists {
                path: path.to_owned(),
            }
            .into()),
            // A file system without hard links (say, a FAT memory card): rename instead.
            Err(_) if !path.exists() => {
                std::fs::rename(&tmp, path).map_err(|error| DeviceError::Init {
                    path: path.display().to_string(),
                    error,
                })
            }
            Err(_) => Err(StoreError::Exists {
                path: path.to_owned(),
            }
            .into()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

fn photo_meta(p: &ProcessedPhoto, kind: PhotoKind) -> PhotoMeta {
    PhotoMeta {
        hash: p.photo.hash,
        thumb: p.thumb.hash,
        kind,
        width: p.photo.width,
        height: p.photo.height,
        bytes: p.photo.bytes.len() as u64,
        captured_at: p.exif.captured_at_ms,
    }
}
