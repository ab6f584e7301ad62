//! The one write path: [`Store::write`] stores a [`Batch`] (blobs, events, the clock, a
//! cursor) in one transaction and folds the new events into the materialised incident state,
//! and the roster events among them into the `staff` table (never into an incident).
//! [`Store::append`] (own events), [`Store::append_received`] and [`Store::commit_download`]
//! are its only callers, each with its own [`Batch`] constructor.
//!
//! Also here: the materialised state itself, loaded, saved and, when what is stored cannot be
//! trusted, rebuilt from the events ([`decode_or_rebuild`], the one rebuild path, reads use it
//! too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use gridsync_core::codec::{self, CodecError};
use gridsync_core::{BlobHash, Event, Hlc, IncidentId, IncidentState, NodeId, Payload, Stamp};
use gridsync_proto::Admitted;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::blobs::insert_blob;
use crate::error::{corrupt_event, sql};
use crate::meta::{advance_cursor, raise_clock, DOWN};
use crate::read::events_of;
use crate::{begin, exec, one, BlobKind, Result, Store, StoreError};

/// A blob to store with a batch.
#[derive(Debug, Clone, Copy)]
pub struct NewBlob<'a> {
    pub hash: BlobHash,
    pub kind: BlobKind,
    pub bytes: &'a [u8],
}

/// What one [`Store::append`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    /// Events stored for the first time.
    pub new_events: usize,
    /// Events that were already stored (identical), and so ignored.
    pub duplicate_events: usize,
    /// Blobs stored for the first time.
    pub new_blobs: usize,
    /// Incidents whose state changed.
    pub incidents: Vec<IncidentId>,
    /// Roster events that changed the roster (won for their grid and name).
    pub staff_changed: usize,
}

/// What one [`Store::write`] stores, all or nothing.
#[derive(Debug, Clone)]
pub(crate) struct Batch<'a> {
    pub events: &'a [Event],
    pub blobs: &'a [NewBlob<'a>],
    /// The recorded clock is raised to this (and to the newest stored event).
    pub clock: Option<Hlc>,
    /// The peer the events came from, recorded on each newly stored one.
    pub via: Option<&'a NodeId>,
    /// A cursor advanced in the same transaction.
    pub cursor: Option<Cursor>,
}

/// A sync cursor to move forward (see [`Store::advance_cursor`]).
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    pub peer: String,
    pub name: &'static str,
    pub value: u64,
}

impl<'a> Batch<'a> {
    /// The node's own events (and their blobs), with the clock they were stamped up to.
    pub fn own(events: &'a [Event], blobs: &'a [NewBlob<'a>], clock: Option<Hlc>) -> Self {
        Self {
            events,
            blobs,
            clock,
            via: None,
            cursor: None,
        }
    }

    /// An admitted batch received from [`Admitted::from`], with `blobs`.
    pub fn received(batch: &'a Admitted, blobs: &'a [NewBlob<'a>]) -> Self {
        Self {
            events: batch.events(),
            blobs,
            clock: None,
            via: Some(batch.from()),
            cursor: None,
        }
    }

    /// An admitted download page from the parent [`Admitted::from`], which moves the
    /// [`DOWN`] cursor for that parent to `cursor`.
    pub fn download(batch: &'a Admitted, cursor: u64) -> Self {
        let parent = batch.from();
        Self {
            cursor: Some(Cursor {
                peer: parent.to_hex(),
                name: DOWN,
                value: cursor,
            }),
            ..Self::received(batch, &[])
        }
    }
}

impl Store {
    /// Stores `blobs` and `events` and folds the events into incident state, all in one
    /// transaction, and raises the recorded clock to `clock` and to the newest stored event.
    /// Idempotent: events already stored (same bytes) and blobs already present are skipped.
    /// An event stored before with *different* bytes, or a blob whose bytes do not hash to its
    /// id, refuses the whole batch.
    ///
    /// `append` is for the node's own events; anything received from a peer goes through
    /// [`Store::append_received`] or the [`SyncStore`](gridsync_proto::SyncStore) commits,
    /// which take only an admitted batch.
    pub fn append(
        &mut self,
        events: &[Event],
        blobs: &[NewBlob<'_>],
        clock: Option<Hlc>,
    ) -> Result<Appended> {
        self.write(Batch::own(events, blobs, clock))
    }

    /// Stores an admitted batch received from the peer [`Admitted::from`] (and `blobs` with
    /// it) like [`Store::append`] with no clock of its own, recording on every newly stored
    /// event that it came from that peer, so downloads to it skip it (it has it already).
    /// Every check of what a peer may send was made by [`gridsync_proto::Admission::admit`],
    /// the only way to build an [`Admitted`]; this store only stores.
    pub fn append_received(&mut self, batch: &Admitted, blobs: &[NewBlob<'_>]) -> Result<Appended> {
        self.write(Batch::received(batch, blobs))
    }

    /// Stores a download page like [`Store::append_received`] (the events are stored with
    /// `via` = the parent, so they are never offered back to it) and moves the parent's
    /// [`DOWN`] cursor to `cursor` in the same transaction.
    pub(crate) fn commit_download(&mut self, batch: &Admitted, cursor: u64) -> Result<Appended> {
        self.write(Batch::download(batch, cursor))
    }

    /// The one write path behind [`Store::append`], [`Store::append_received`] and
    /// [`Store::commit_download`].
    fn write(&mut self, batch: Batch<'_>) -> Result<Appended> {
        let Batch {
            events,
            blobs,
            clock,
            via,
            cursor,
        } = batch;
        let path = self.path.clone();
        let tx = begin(&mut self.conn, &path)?;
        let mut out = Appended::default();
        let via = via.map(|v| &v.0[..]);
        for b in blobs {
            if BlobHash::of(b.bytes) != b.hash {
                return Err(StoreError::BlobMismatch { path, hash: b.hash });
            }
            out.new_blobs += insert_blob(&tx, &path, &b.hash, b.kind, b.bytes)?;
        }
        let mut touched = BTreeSet::new();
        let mut fresh: Vec<&Event> = Vec::new();
        let mut origins = BTreeSet::new();
        let mut origin_grids = BTreeSet::new();
        for e in events {
            let body = codec::encode_event(e).map_err(corrupt_event(&path))?;
            let inserted = exec(&tx,
                    "INSERT OR IGNORE INTO events (origin, seq, incident, grid, hlc_wall, hlc_logical, body, via)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        &e.origin.0[..],
                        e.seq as i64,
                        &e.incident.0.as_bytes()[..],
                        e.grid.as_str(),
                        e.hlc.wall_ms as i64,
                        e.hlc.logical as i64,
                        body,
                        via
                    ],
                )
                .map_err(sql(&path, "storing an event"))?;
            if inserted == 0 {
                let existing: Vec<u8> = one(
                    &tx,
                    "SELECT body FROM events WHERE origin = ?1 AND seq = ?2",
                    params![&e.origin.0[..], e.seq as i64],
                    |r| r.get(0),
                )
                .map_err(sql(&path, "reading an event"))?;
                // Two copies of one event are the same event if their content is: a signed
                // copy of an event held unsigned from before signatures (or the other way
                // round) is a duplicate, and the copy stored first stays.
                if existing != body && !same_content(&existing, e) {
                    return Err(StoreError::Equivocation {
                        path,
                        origin: e.origin,
                        seq: e.seq,
                    });
                }
                out.duplicate_events += 1;
                continue;
            }
            if let gridsync_core::Payload::PhotoAdded(meta) = &e.payload {
                exec(
                    &tx,
                    "INSERT OR IGNORE INTO thumbs (photo, thumb) VALUES (?1, ?2)",
                    params![&meta.hash.0[..], &meta.thumb.0[..]],
                )
                .map_err(sql(&path, "storing a thumbnail link"))?;
                // Visible until the fold below says otherwise.
                index_photo_add(&tx, &path, e, meta, true)?;
            }
            out.new_events += 1;
            if !e.payload.is_roster() {
                touched.insert(e.incident);
            }
            origins.insert(e.origin);
            origin_grids.insert((e.origin, e.grid.as_str()));
            fresh.push(e);
        }
        for origin in &origins {
            advance_contiguous(&tx, &path, origin)?;
        }
        for (origin, grid) in &origin_grids {
            exec(
                &tx,
                "INSERT OR IGNORE INTO origin_grids (origin, grid) VALUES (?1, ?2)",
                params![&origin.0[..], grid],
            )
            .map_err(sql(&path, "storing an origin's grid"))?;
        }
        // Group the new events by incident once (a batch may hold thousands); roster events
        // go to the roster instead, and never make or touch an incident row.
        let mut by_incident: BTreeMap<IncidentId, Vec<&Event>> = BTreeMap::new();
        for e in &fresh {
            if e.payload.is_roster() {
                if fold_staff(&tx, &path, e)? {
                    out.staff_changed += 1;
                }
            } else {
                by_incident.entry(e.incident).or_default().push(e);
            }
        }
        for (id, events) in &by_incident {
            let mut state = load_state(&tx, &path, id)?;
            for e in events {
                state.apply(e);
            }
            save_state(&tx, &path, &state)?;
            let photos_changed = events.iter().any(|e| {
                matches!(
                    e.payload,
                    gridsync_core::Payload::PhotoAdded(_)
                        | gridsync_core::Payload::PhotoRemoved { .. }
                )
            });
            if photos_changed {
                index_photo_visibility(&tx, &path, &state)?;
            }
        }
        let newest = fresh.iter().map(|e| e.hlc).max();
        if let Some(hlc) = clock.max(newest) {
            raise_clock(&tx, hlc).map_err(sql(&path, "storing the clock"))?;
        }
        if let Some(Cursor { peer, name, value }) = cursor {
            advance_cursor(&tx, &peer, name, value).map_err(sql(&path, "storing a cursor"))?;
        }
        tx.commit().map_err(sql(&path, "commit"))?;
        out.incidents = touched.into_iter().collect();
        Ok(out)
    }
}

impl Store {
    /// The one-time migration pass of schema 3: signs, with the node's own key, every own
    /// event stored unsigned (written before signatures), in one transaction. Event ids,
    /// content and arrival order stay; incident states hold no signatures and are untouched.
    /// Runs while the marker the migration left is there and the store has an identity
    /// (a store being created gets it right after); returns how many events it signed.
    pub(crate) fn sign_own_events(&mut self) -> Result<usize> {
        if self.meta("sign_own_events")?.is_none() {
            return Ok(0);
        }
        let identity = match self.identity() {
            Ok(id) => id,
            Err(StoreError::NoIdentity { .. }) => return Ok(0),
            Err(e) => return Err(e),
        };
        if NodeId::from_secret(&identity.secret) != identity.node_id {
            tracing::warn!("the store's node id is not its key's: its own events stay unsigned");
            return Ok(0);
        }
        let path = self.path.clone();
        let tx = begin(&mut self.conn, &path)?;
        let mut signed = 0;
        {
            let mut select = tx
                .prepare("SELECT local_seq, body FROM events WHERE origin = ?1")
                .map_err(sql(&path, "reading own events"))?;
            let rows = select
                .query_map([&identity.node_id.0[..]], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(sql(&path, "reading own events"))?;
            for row in rows {
                let (local_seq, body) = row.map_err(sql(&path, "reading own events"))?;
                let mut e = codec::decode_event(&body).map_err(corrupt_event(&path))?;
                if e.signature.is_some() {
                    continue;
                }
                e.sign(&identity.secret)
                    .map_err(|err| StoreError::CorruptRow {
                        path: path.clone(),
                        what: format!("signing own event {}: {err}", e.seq),
                    })?;
                let body = codec::encode_event(&e).map_err(corrupt_event(&path))?;
                exec(
                    &tx,
                    "UPDATE events SET body = ?1 WHERE local_seq = ?2",
                    params![body, local_seq],
                )
                .map_err(sql(&path, "signing own events"))?;
                signed += 1;
            }
        }
        exec(&tx, "DELETE FROM meta WHERE key = 'sign_own_events'", [])
            .map_err(sql(&path, "signing own events"))?;
        tx.commit().map_err(sql(&path, "commit"))?;
        if signed > 0 {
            tracing::info!(
                events = signed,
                "signed this node's events stored before signatures"
            );
        }
        Ok(signed)
    }
}

/// Records the photo add `e` (naming `meta`) in `photo_refs`, with its visibility; its
/// thumbnail counts as missing unless a blob of its hash is held. A row held already stays.
fn index_photo_add(
    tx: &Transaction<'_>,
    path: &Path,
    e: &Event,
    meta: &gridsync_core::PhotoMeta,
    visible: bool,
) -> Result<()> {
    exec(
        tx,
        "INSERT OR IGNORE INTO photo_refs (origin, seq, incident, grid, photo, thumb, visible, thumb_missing)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NOT EXISTS (SELECT 1 FROM blobs WHERE hash = ?6))",
        params![
            &e.origin.0[..],
            e.seq as i64,
            &e.incident.0.as_bytes()[..],
            e.grid.as_str(),
            &meta.hash.0[..],
            &meta.thumb.0[..],
            visible
        ],
    )
    .map_err(sql(path, "indexing a photo"))?;
    Ok(())
}

/// Brings `photo_refs.visible` of the photo adds of `state` in line with the fold (add-wins:
/// an add is visible unless a removal held names it, whichever arrived first).
fn index_photo_visibility(tx: &Transaction<'_>, path: &Path, state: &IncidentState) -> Result<()> {
    for id in state.photos.keys() {
        let visible = !state.removed_photos.contains(id);
        exec(
            tx,
            "UPDATE photo_refs SET visible = ?3 WHERE origin = ?1 AND seq = ?2 AND visible != ?3",
            params![&id.origin.0[..], id.seq as i64, visible],
        )
        .map_err(sql(path, "indexing a photo"))?;
    }
    Ok(())
}

impl Store {
    /// The one-time pass of schema 7: indexes in `photo_refs` every photo add stored before
    /// it, with its visibility as the incident's state has it (one transaction, the marker
    /// then removed). Returns how many adds it indexed.
    pub(crate) fn index_photo_refs(&mut self) -> Result<usize> {
        if self.meta("index_photo_refs")?.is_none() {
            return Ok(0);
        }
        let path = self.path.clone();
        let tx = begin(&mut self.conn, &path)?;
        let mut indexed = 0;
        {
            let mut select = tx
                .prepare("SELECT id, state FROM incidents")
                .map_err(sql(&path, "reading incidents"))?;
            let rows = select
                .query_map([], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(sql(&path, "reading incidents"))?;
            for row in rows {
                let (id, bytes) = row.map_err(sql(&path, "reading incidents"))?;
                let id = uuid::Uuid::from_slice(&id).map(IncidentId).map_err(|_| {
                    StoreError::CorruptRow {
                        path: path.clone(),
                        what: "an incident id that is not 16 bytes".into(),
                    }
                })?;
                let state = decode_or_rebuild(&tx, &path, &id, &bytes)?;
                for (add, entry) in &state.photos {
                    let event: Option<Vec<u8>> = one(
                        &tx,
                        "SELECT body FROM events WHERE origin = ?1 AND seq = ?2",
                        params![&add.origin.0[..], add.seq as i64],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql(&path, "reading an event"))?;
                    let Some(body) = event else { continue };
                    let e = codec::decode_event(&body).map_err(corrupt_event(&path))?;
                    let visible = !state.removed_photos.contains(add);
                    index_photo_add(&tx, &path, &e, &entry.meta, visible)?;
                    indexed += 1;
                }
            }
        }
        exec(&tx, "DELETE FROM meta WHERE key = 'index_photo_refs'", [])
            .map_err(sql(&path, "indexing photos"))?;
        tx.commit().map_err(sql(&path, "commit"))?;
        if indexed > 0 {
            tracing::info!(
                photos = indexed,
                "indexed the photos stored before blobs down"
            );
        }
        Ok(indexed)
    }
}

/// Whether the stored encoding `existing` is `event` but for its signature.
fn same_content(existing: &[u8], event: &Event) -> bool {
    let Ok(stored) = codec::decode_event(existing) else {
        return false;
    };
    match (
        gridsync_core::sign::content_bytes(&stored),
        gridsync_core::sign::content_bytes(event),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Folds a newly stored roster event into the `staff` table: per (grid, name), the event
/// with the greatest stamp wins (`gridsync_core::roster`). Returns whether it won. The stamps
/// are compared here, not in SQL, so the order is exactly [`Stamp`]'s (an `hlc.wall_ms`
/// above 2^63 - 1, stored as a negative integer, still sorts last).
fn fold_staff(tx: &Transaction<'_>, path: &Path, e: &Event) -> Result<bool> {
    let (name, entry) = match &e.payload {
        Payload::StaffSet(entry) => (&entry.name, Some(entry)),
        Payload::StaffRemoved { name } => (name, None),
        _ => return Ok(false),
    };
    let held = one(
        tx,
        "SELECT hlc_wall, hlc_logical, origin, seq FROM staff WHERE grid = ?1 AND name = ?2",
        params![e.grid.as_str(), name],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )
    .optional()
    .map_err(sql(path, "reading the roster"))?;
    if let Some(row) = held {
        if staff_stamp(path, row)? >= e.stamp() {
            return Ok(false);
        }
    }
    exec(
        tx,
        "INSERT INTO staff (grid, name, force, phone, device, removed, hlc_wall, hlc_logical, origin, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (grid, name) DO UPDATE SET force = excluded.force, phone = excluded.phone,
             device = excluded.device, removed = excluded.removed, hlc_wall = excluded.hlc_wall,
             hlc_logical = excluded.hlc_logical, origin = excluded.origin, seq = excluded.seq",
        params![
            e.grid.as_str(),
            name,
            entry.map(|s| s.force.as_str()),
            entry.and_then(|s| s.phone.as_deref()),
            entry.and_then(|s| s.device.as_ref()).map(|d| &d.0[..]),
            entry.is_none(),
            e.hlc.wall_ms as i64,
            i64::from(e.hlc.logical),
            &e.origin.0[..],
            e.seq as i64,
        ],
    )
    .map_err(sql(path, "storing the roster"))?;
    Ok(true)
}

/// The stamp of a `staff` row, as stored by [`fold_staff`].
pub(crate) fn staff_stamp(
    path: &Path,
    (wall, logical, origin, seq): (i64, i64, Vec<u8>, i64),
) -> Result<Stamp> {
    let corrupt = |what: String| StoreError::CorruptRow {
        path: path.to_owned(),
        what,
    };
    let logical = u32::try_from(logical)
        .map_err(|_| corrupt(format!("a roster stamp's logical {logical}")))?;
    let origin: [u8; 32] = origin
        .try_into()
        .map_err(|o: Vec<u8>| corrupt(format!("a roster origin is {} bytes, not 32", o.len())))?;
    let seq =
        u64::try_from(seq).map_err(|_| corrupt(format!("a roster seq is negative ({seq})")))?;
    Ok(Stamp {
        // Stored as `wall_ms as i64`; the cast back restores it bit for bit.
        hlc: Hlc::new(wall as u64, logical),
        origin: NodeId(origin),
        seq,
    })
}

/// Moves `origin`'s contiguous progress forward over the events now stored.
fn advance_contiguous(tx: &Transaction<'_>, path: &Path, origin: &NodeId) -> Result<()> {
    let mut at: i64 = one(
        tx,
        "SELECT contiguous FROM origins WHERE origin = ?1",
        [&origin.0[..]],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql(path, "reading progress"))?
    .unwrap_or(0);
    let mut next = tx
        .prepare_cached("SELECT 1 FROM events WHERE origin = ?1 AND seq = ?2")
        .map_err(sql(path, "reading progress"))?;
    while next
        .exists(params![&origin.0[..], at + 1])
        .map_err(sql(path, "reading progress"))?
    {
        at += 1;
    }
    exec(
        tx,
        "INSERT INTO origins (origin, contiguous) VALUES (?1, ?2)
         ON CONFLICT (origin) DO UPDATE SET contiguous = excluded.contiguous",
        params![&origin.0[..], at],
    )
    .map_err(sql(path, "storing progress"))?;
    Ok(())
}

/// The stored state of incident `id` as `bytes` decode it; rebuilt from the events stored,
/// which are the truth, when they do not decode (say, written by another build) or decode to
/// another incident's state. Reads and the write path both go through here.
pub(crate) fn decode_or_rebuild(
    conn: &Connection,
    path: &Path,
    id: &IncidentId,
    bytes: &[u8],
) -> Result<IncidentState> {
    match codec::decode_state(bytes) {
        Ok(s) if s.id == *id => return Ok(s),
        Ok(s) => {
            tracing::warn!(incident = %id, found = %s.id, "stored state is another incident's; rebuilding it from events");
        }
        Err(e) => {
            tracing::warn!(incident = %id, error = %e, "rebuilding incident state from events");
        }
    }
    Ok(IncidentState::replay(*id, &events_of(conn, path, id)?))
}

/// The state the write path folds new events into: a new one for an incident not stored yet.
/// (A rebuilt state holds the batch's new events already, as they were inserted first;
/// applying one twice is a no-op.)
fn load_state(tx: &Transaction<'_>, path: &Path, id: &IncidentId) -> Result<IncidentState> {
    let bytes: Option<Vec<u8>> = one(
        tx,
        "SELECT state FROM incidents WHERE id = ?1",
        [&id.0.as_bytes()[..]],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql(path, "reading an incident"))?;
    match bytes {
        None => Ok(IncidentState::new(*id)),
        Some(bytes) => decode_or_rebuild(tx, path, id, &bytes),
    }
}

fn save_state(tx: &Transaction<'_>, path: &Path, state: &IncidentState) -> Result<()> {
    let bytes = codec::encode_state(state).map_err(|error| match error {
        CodecError::TooLarge(bytes) => StoreError::StateTooLarge {
            path: path.to_owned(),
            incident: state.id,
            bytes,
        },
        error => StoreError::Corrupt {
            path: path.to_owned(),
            what: "incident state",
            error,
        },
    })?;
    let created = state
        .report
        .as_ref()
        .map(|r| r.stamp)
        .or(state.first.as_ref().map(|(s, _)| *s))
        .map_or(0, |s| s.hlc.wall_ms as i64);
    let updated = state.last.map_or(0, |s| s.hlc.wall_ms as i64);
    exec(tx,
        "INSERT INTO incidents (id, grid, created_ms, updated_ms, state) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET grid = excluded.grid, created_ms = excluded.created_ms,
             updated_ms = excluded.updated_ms, state = excluded.state",
        params![
            &state.id.0.as_bytes()[..],
            state.grid().map(|g| g.as_str().to_owned()),
            created,
            updated,
            bytes
        ],
    )
    .map_err(sql(path, "storing an incident"))?;
    Ok(())
}
