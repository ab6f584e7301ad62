//! gridsync-device: what a patrol handheld (PDA) app embeds.
//!
//! A [`Device`] owns the local store. Every user action ([`Device::report`], [`Device::edit`],
//! [`Device::attach_photo`]) is checked, its photos are processed (orientation, metadata
//! stripping, downscale, thumbnail, SHA-256), and then its events and blobs are committed in
//! one transaction: after a crash the action is wholly there or wholly absent. Nothing needs
//! a network.
//!
//! The grid roster (who serves each grid, `gridsync_core::roster`) is read here as synced
//! ([`Device::staff`], [`Device::roster`], [`Device::me_as_staff`]); a relay's store writes it
//! ([`Device::staff_add`], [`Device::staff_remove`]), a handheld's refuses to, as it refuses
//! every operator decision.
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
pub mod follow;
pub mod sync;

use std::path::Path;

use ed25519_dalek::SigningKey;
use gridsync_core::command::{self, Change, CommandError};
use gridsync_core::event::CategoryError;
use gridsync_core::ids::GridError;
use gridsync_core::{
    Assignee, BlobHash, Category, GridCode, IncidentId, IncidentState, Location, LocationSource,
    Millis, NodeId, Payload, PhotoKind, PhotoMeta, Report, Scope, Severity, StaffEntry, Writer,
};
use gridsync_media::{Limits, MediaError, ProcessedPhoto};
pub use gridsync_store::StaffMember;
use gridsync_store::{BlobKind, Identity, NewBlob, Pending, Store, StoreError};

pub use env::{Env, FixedEnv, SystemEnv};
pub use follow::{FollowUpdate, Notice, NoticeKind};
use gridsync_proto::Role;
pub use gridsync_store::Counts;
pub use gridsync_store::{PruneReport, Pruned};

/// The store setting behind [`Device::set_prune_photos`].
const PRUNE_PHOTOS: &str = "prune-photos";
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
    /// The full photo was pruned here once the district held it (PROTOCOL.md §8.12).
    #[error("photo {0} was pruned after the district confirmed it; fetch it again with --fetch")]
    Pruned(BlobHash),
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
    /// A roster change asked of a handheld: the roster is a platform's to keep (every relay
    /// would refuse the event), so it is refused before anything is written.
    #[error("the grid roster is kept at a platform (`gridsync-relay staff`); a handheld only reads it (`gridsync staff`)")]
    RosterAtPlatform,
    /// No active member of that name on the grid's roster as this store holds it.
    #[error("{name:?} is not an active member of the roster of grid {grid} (see `gridsync-relay staff list --grid {grid}`)")]
    NoSuchStaff { grid: GridCode, name: String },
    /// A roster change for a grid no node enrolled here serves: the parent would refuse the
    /// event as outside this relay's scope, and with it every upload after it.
    #[error("no handheld or relay enrolled here serves grid {0}: enroll the grid's handheld (or the relay serving it) first, so the roster stays within this relay's scope")]
    NotServedHere(GridCode),
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
        StaffSet(_) | StaffRemoved { .. } => "a change of the grid roster",
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
    fn writer(&self, author: Option<&str>) -> Result<Writer> {
        Ok(Writer::signing(
            &self.identity.secret,
            author.unwrap_or(&self.identity.name).to_owned(),
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
        author: Option<&str>,
    ) -> Result<()> {
        let mut writer = self.writer(author)?;
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
        self.commit(id, &grid, payloads, &processed, None)?;
        Ok(id)
    }

    /// Applies `changes` and attaches `photos` to incident `id`, checked against the workflow,
    /// as one action. A photo with no kind gets
    /// [`workflow::default_photo_kind`](gridsync_core::workflow::default_photo_kind) of the
    /// status this edit leaves the incident in. Returns how many events were written.
    pub fn edit(
        &mut self,
        id: IncidentId,
        changes: Vec<Change>,
        photos: Vec<(PhotoInput, Option<PhotoKind>)>,
    ) -> Result<usize> {
        self.edit_by(None, id, changes, photos)
    }

    /// [`Device::edit`] with `author` written on the events instead of the node's name: a
    /// relay's console names the operator who decided (`"{relay name}/{operator}"`). The
    /// events are this node's own, signed by its key, like every other.
    pub fn edit_as(
        &mut self,
        author: &str,
        id: IncidentId,
        changes: Vec<Change>,
        photos: Vec<(PhotoInput, Option<PhotoKind>)>,
    ) -> Result<usize> {
        if author.is_empty() || author.len() > gridsync_core::event::limits::MAX_AUTHOR_BYTES {
            return Err(DeviceError::Name(author.to_owned()));
        }
        self.edit_by(Some(author), id, changes, photos)
    }

    fn edit_by(
        &mut self,
        author: Option<&str>,
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
        // A case handed to a roster member names one of its grid's active members here.
        for p in &payloads {
            if let Payload::Assigned { assignee, .. } = p {
                if let ("staff", name) = Assignee::classify(assignee) {
                    if self.store.staff_member(&grid, name)?.is_none() {
                        return Err(DeviceError::NoSuchStaff {
                            grid,
                            name: name.to_owned(),
                        });
                    }
                }
            }
        }
        self.commit(id, &grid, payloads, &processed, author)?;
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

    /// Adds a member to `grid`'s roster, or changes the member of that name (a relay's
    /// command: a handheld's store refuses it, as every relay would refuse the event). The
    /// name is trimmed and a blank phone is none ([`command::plan_staff_set`]); the event
    /// goes to the grid's handhelds and up at the next syncs. The grid must be one a node
    /// enrolled here serves ([`DeviceError::NotServedHere`]). Returns the member as stored.
    pub fn staff_add(&mut self, grid: &GridCode, entry: StaffEntry) -> Result<StaffMember> {
        let _lock = self.lock_action()?;
        self.check_roster_grid(grid)?;
        let payload = command::plan_staff_set(entry)?;
        let name = match &payload {
            Payload::StaffSet(e) => e.name.clone(),
            _ => return Err(DeviceError::RosterAtPlatform),
        };
        self.commit_roster(grid, payload)?;
        self.store
            .staff_member(grid, &name)?
            .ok_or(DeviceError::NoSuchStaff {
                grid: grid.clone(),
                name,
            })
    }

    /// Takes member `name` off `grid`'s roster (a relay's command, as
    /// [`Device::staff_add`]); refused when the roster held here has no active member of that
    /// name.
    pub fn staff_remove(&mut self, grid: &GridCode, name: &str) -> Result<()> {
        let _lock = self.lock_action()?;
        self.check_roster_grid(grid)?;
        let payload = command::plan_staff_remove(name)?;
        let Payload::StaffRemoved { name } = &payload else {
            return Err(DeviceError::RosterAtPlatform);
        };
        if self.store.staff_member(grid, name)?.is_none() {
            return Err(DeviceError::NoSuchStaff {
                grid: grid.clone(),
                name: name.clone(),
            });
        }
        self.commit_roster(grid, payload)
    }

    /// Every active member of every grid's roster held here (a handheld holds its grid's),
    /// by grid, force and name.
    pub fn roster(&self) -> Result<Vec<StaffMember>> {
        Ok(self.store.staff(None)?)
    }

    /// The active members of `grid`'s roster held here, by force and name.
    pub fn staff(&self, grid: &GridCode) -> Result<Vec<StaffMember>> {
        Ok(self.store.staff(Some(grid))?)
    }

    /// The roster member whose handheld is this node, if the roster held here names it.
    pub fn me_as_staff(&self) -> Result<Option<StaffMember>> {
        Ok(self.store.staff_of_device(&self.identity.node_id)?)
    }

    /// A roster change is a relay's, for a grid some node enrolled here serves.
    fn check_roster_grid(&self, grid: &GridCode) -> Result<()> {
        if self.identity.role == Role::Device {
            return Err(DeviceError::RosterAtPlatform);
        }
        let served = self
            .store
            .peers()?
            .iter()
            .any(|p| p.revoked_ms.is_none() && p.scope.contains(grid));
        if !served {
            return Err(DeviceError::NotServedHere(grid.clone()));
        }
        Ok(())
    }

    /// Writes one roster event for `grid`, with a fresh UUIDv7 as its `incident`.
    fn commit_roster(&mut self, grid: &GridCode, payload: Payload) -> Result<()> {
        let mut random = [0u8; 10];
        self.env.fill_random(&mut random)?;
        let id = IncidentId::new_v7(self.env.now_ms(), random);
        self.commit(id, grid, vec![payload], &[], None)
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
        if let Some(bytes) = self.store.blob(&wanted)? {
            return Ok(bytes);
        }
        if self.store.pruned(&wanted)?.is_some() {
            return Err(DeviceError::Pruned(wanted));
        }
        Err(DeviceError::NoSuchBlob(wanted))
    }

    /// Whether this handheld prunes its full photos once the district holds them (the
    /// persistent setting `prune-photos`; off, keep everything, by default).
    pub fn prunes_photos(&self) -> Result<bool> {
        Ok(self.store.setting(PRUNE_PHOTOS)?.unwrap_or(false))
    }

    /// Turns pruning on or off (persistent, in the store). With it on, every sync ends with
    /// [`Device::prune_photos`].
    pub fn set_prune_photos(&mut self, on: bool) -> Result<()> {
        let _lock = self.lock_action()?;
        Ok(self.store.set_setting(PRUNE_PHOTOS, on)?)
    }

    /// Deletes the bytes of this handheld's own full photos that the district holds (as the
    /// relay said, PROTOCOL.md §8.12), whose thumbnail is held here and that the user does
    /// not want, in one transaction; thumbnails, events and other nodes' photos stay, and a
    /// photo fetched back after pruning is kept. Whatever the setting; idempotent.
    pub fn prune_photos(&mut self) -> Result<PruneReport> {
        let _lock = self.lock_action()?;
        let now = self.env.now_ms();
        Ok(self.store.prune_photos(&self.identity.node_id, now)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use gridsync_core::{Change, Force, Status};

    const NOW: u64 = 1_764_000_000_000;
    const G: &str = "110101/002/014/03";

    fn grid(text: &str) -> GridCode {
        text.parse().expect("grid")
    }

    fn member(name: &str, force: Force, device: Option<NodeId>) -> StaffEntry {
        StaffEntry {
            name: name.into(),
            force,
            phone: Some(" 13800000000 ".into()),
            device,
        }
    }

    /// A street relay with a handheld of grid G enrolled, and that handheld.
    fn street_and_handheld(dir: &Path) -> (Device<FixedEnv>, Device<FixedEnv>) {
        let pda = Device::init_with(
            &dir.join("pda.db"),
            "patrol-7",
            grid(G),
            FixedEnv::new(NOW, 1),
        )
        .expect("init pda");
        let street_db = dir.join("street.db");
        let street = Device::init_node(
            &street_db,
            "street-002",
            "street",
            "",
            FixedEnv::new(NOW, 2),
        )
        .expect("init street");
        Store::open(&street_db)
            .expect("open")
            .enroll(&pda.node_id(), Role::Device, &Scope::from(&grid(G)), NOW)
            .expect("enroll");
        (street, pda)
    }

    #[test]
    fn a_relay_keeps_the_roster_and_a_handheld_only_reads_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut street, mut pda) = street_and_handheld(dir.path());
        let added = street
            .staff_add(
                &grid(G),
                member(" Wang Fang ", Force::Police, Some(pda.node_id())),
            )
            .expect("add");
        assert_eq!(added.name, "Wang Fang");
        assert_eq!(added.phone.as_deref(), Some("13800000000"));
        street
            .staff_add(&grid(G), member("Li Wei", Force::Firefighter, None))
            .expect("add");
        let names: Vec<String> = street
            .staff(&grid(G))
            .expect("staff")
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            ["Wang Fang", "Li Wei"],
            "by force: police, firefighter"
        );
        assert_eq!(street.roster().expect("roster").len(), 2);
        // The roster events are the relay's own, waiting to go up; no incident came of them.
        assert_eq!(street.pending().expect("pending").events, 2);
        assert!(street.list().expect("list").is_empty());

        street.staff_remove(&grid(G), "Li Wei").expect("remove");
        assert!(matches!(
            street.staff_remove(&grid(G), "Li Wei"),
            Err(DeviceError::NoSuchStaff { .. })
        ));
        assert_eq!(street.staff(&grid(G)).expect("staff").len(), 1);

        // A grid nobody enrolled here serves: refused, nothing written.
        let other = grid("110101/003/001/01");
        let refused = street
            .staff_add(&other, member("Sun Li", Force::Manager, None))
            .expect_err("not served here");
        assert!(
            matches!(refused, DeviceError::NotServedHere(_)),
            "{refused}"
        );
        assert_eq!(street.pending().expect("pending").events, 3);

        // A handheld refuses to write the roster, as every relay would refuse it.
        for refused in [
            pda.staff_add(&grid(G), member("Zhao Lei", Force::Assistant, None))
                .expect_err("refused"),
            pda.staff_remove(&grid(G), "Wang Fang")
                .expect_err("refused"),
        ] {
            assert!(
                matches!(refused, DeviceError::RosterAtPlatform),
                "{refused}"
            );
            assert!(!refused.to_string().contains('\n'));
        }
        assert_eq!(pda.pending().expect("pending").events, 0);
        assert!(pda.me_as_staff().expect("read").is_none(), "not synced yet");
    }

    #[test]
    fn a_case_goes_to_a_force_or_to_an_active_member_of_its_grid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut street, mut pda) = street_and_handheld(dir.path());
        let id = pda
            .report(NewReport {
                category: Category::from_catalogue("fire-hazard").expect("category"),
                description: "Boxes blocking the fire exit".into(),
                location: None,
                severity: Severity::High,
                observed_at: None,
                photos: vec![],
            })
            .expect("report");
        // Hand the report to the street as a sync would (its store takes them as given).
        let events = pda.store().events_of(&id).expect("events");
        Store::open(street.store().path())
            .expect("open")
            .append(&events, &[], None)
            .expect("hand over");
        street
            .edit(id, vec![Change::Status(Status::Accepted)], vec![])
            .expect("accept");
        let dispatch = |assignee: &str| {
            vec![
                Change::Status(Status::Dispatched),
                Change::Assign {
                    assignee: assignee.into(),
                    due: None,
                },
            ]
        };
        let refused = street
            .edit(id, dispatch("staff:Wang Fang"), vec![])
            .expect_err("no such member yet");
        assert!(
            matches!(&refused, DeviceError::NoSuchStaff { name, .. } if name == "Wang Fang"),
            "{refused}"
        );
        street
            .staff_add(
                &grid(G),
                member("Wang Fang", Force::Firefighter, Some(pda.node_id())),
            )
            .expect("add");
        street
            .edit(id, dispatch("staff:Wang Fang"), vec![])
            .expect("dispatched to the member");
        let view = street.get(id).expect("get").expect("incident").view();
        assert_eq!(view.assignee.as_deref(), Some("staff:Wang Fang"));
        assert_eq!(view.assignee_kind, Some("staff"));
        street
            .edit(
                id,
                vec![Change::Assign {
                    assignee: "force:firefighter".into(),
                    due: None,
                }],
                vec![],
            )
            .expect("to the force");
        let view = street.get(id).expect("get").expect("incident").view();
        assert_eq!(
            (view.assignee_kind, view.assignee_name.as_deref()),
            (Some("force"), Some("firefighter"))
        );
        // The handheld learns who it is once the roster reaches it.
        let roster: Vec<_> = <Store as gridsync_proto::SyncStore>::events_after(
            street.store(),
            &street.node_id(),
            0,
            100,
        )
        .expect("events")
        .into_iter()
        .filter(|e| e.payload.is_roster())
        .collect();
        assert_eq!(roster.len(), 1);
        Store::open(pda.store().path())
            .expect("open")
            .append(&roster, &[], None)
            .expect("hand over");
        let pda = Device::open_with(pda.store().path(), FixedEnv::new(NOW, 3)).expect("reopen");
        let me = pda.me_as_staff().expect("read").expect("on the roster");
        assert_eq!(
            (me.name.as_str(), me.force),
            ("Wang Fang", Force::Firefighter)
        );
        assert_eq!(pda.staff(&grid(G)).expect("staff"), vec![me]);
    }
}
