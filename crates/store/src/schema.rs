//! Connection set-up and numbered migrations.
//!
//! A gridsync store is an SQLite file whose header carries [`APPLICATION_ID`] and whose
//! `user_version` is the schema version. Migration `n` takes the schema from version `n - 1`
//! to `n`; each runs in one transaction together with the version bump.

use rusqlite::Connection;

/// `PRAGMA application_id` of a gridsync store: ASCII "GSYN".
pub const APPLICATION_ID: i32 = 0x4753_594E;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Migration `i` takes the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the event log, materialised incidents, content-addressed blobs, sync cursors.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) STRICT;

    -- The append-only log. `local_seq` is this node's arrival order (download cursors);
    -- (origin, seq) is the event's identity, so re-inserting an event is a no-op.
    CREATE TABLE events (
        local_seq   INTEGER PRIMARY KEY AUTOINCREMENT,
        origin      BLOB    NOT NULL,
        seq         INTEGER NOT NULL CHECK (seq >= 1),
        incident    BLOB    NOT NULL,
        grid        TEXT    NOT NULL,
        hlc_wall    INTEGER NOT NULL,
        hlc_logical INTEGER NOT NULL,
        body        BLOB    NOT NULL,
        UNIQUE (origin, seq)
    ) STRICT;
    CREATE INDEX events_by_incident ON events (incident);
    CREATE INDEX events_by_grid ON events (grid, local_seq);

    -- Per origin, the highest sequence number up to which every event is held.
    CREATE TABLE origins (
        origin     BLOB PRIMARY KEY,
        contiguous INTEGER NOT NULL
    ) STRICT;

    -- Incident state folded from the events, updated in the same transaction as they are.
    CREATE TABLE incidents (
        id         BLOB PRIMARY KEY,
        grid       TEXT,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        state      BLOB NOT NULL
    ) STRICT;
    CREATE INDEX incidents_by_grid ON incidents (grid);

    -- Photos and thumbnails, addressed by the SHA-256 of their bytes.
    CREATE TABLE blobs (
        hash          BLOB PRIMARY KEY,
        kind          TEXT    NOT NULL CHECK (kind IN ('photo', 'thumb')),
        size          INTEGER NOT NULL,
        data          BLOB    NOT NULL,
        sent_upstream INTEGER NOT NULL DEFAULT 0
    ) STRICT;

    -- Which thumbnail belongs to which photo (from the photo events; derived, like incidents).
    CREATE TABLE thumbs (
        photo BLOB PRIMARY KEY,
        thumb BLOB NOT NULL
    ) STRICT;

    -- Sync progress per peer (used by the sync protocol).
    CREATE TABLE cursors (
        peer  TEXT    NOT NULL,
        name  TEXT    NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (peer, name)
    ) STRICT;
    "#,
    // 2: sync: where each event came from, which origins have events in which grid, enrolled
    // peers, resumable blob uploads, and which blobs each parent holds.
    r#"
    -- The node an event was received from (NULL for the node's own events and for events
    -- stored before this migration): a download never sends an event back where it came from.
    ALTER TABLE events ADD COLUMN via BLOB;

    -- Every (origin, grid) with at least one stored event, kept by the write path in the same
    -- transaction as the events, so a relay's heads for a scope never scan the log.
    CREATE TABLE origin_grids (
        origin BLOB NOT NULL,
        grid   TEXT NOT NULL,
        PRIMARY KEY (origin, grid)
    ) STRICT, WITHOUT ROWID;
    INSERT OR IGNORE INTO origin_grids (origin, grid) SELECT DISTINCT origin, grid FROM events;
    CREATE INDEX origin_grids_by_grid ON origin_grids (grid);

    -- Children enrolled at this relay: a device for one grid, a relay for a scope.
    CREATE TABLE peers (
        node        BLOB PRIMARY KEY,
        role        TEXT    NOT NULL CHECK (role IN ('device', 'street', 'district')),
        scope       TEXT    NOT NULL,
        enrolled_ms INTEGER NOT NULL,
        revoked_ms  INTEGER
    ) STRICT;

    -- Chunks of unfinished blob uploads, contiguous from offset 0: an interrupted upload
    -- resumes after the last chunk. Moved into `blobs` once whole and verified.
    CREATE TABLE blob_parts (
        hash   BLOB    NOT NULL,
        offset INTEGER NOT NULL,
        kind   TEXT    NOT NULL CHECK (kind IN ('photo', 'thumb')),
        size   INTEGER NOT NULL,
        data   BLOB    NOT NULL,
        PRIMARY KEY (hash, offset)
    ) STRICT;

    -- Which blobs a parent holds (sent, or held already). `blobs.sent_upstream` mirrors it for
    -- the parent named in meta `upstream_parent`, and the partial index below makes "what is
    -- left to send" cost what is left, not what is held.
    CREATE TABLE blobs_sent (
        parent BLOB NOT NULL,
        hash   BLOB NOT NULL,
        PRIMARY KEY (parent, hash)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX blobs_unsent ON blobs (kind) WHERE sent_upstream = 0;

    -- "Is this blob named by a stored event?" looks thumbnails up too.
    CREATE INDEX thumbs_by_thumb ON thumbs (thumb);
    "#,
    // 3: signed events. The node's own events stored before signatures are signed in place
    // by the next open that knows the node's key (`Store::sign_own_events`, which removes
    // this marker): their ids and content do not change, only the signature is added.
    r#"
    INSERT OR REPLACE INTO meta (key, value) VALUES ('sign_own_events', x'01');
    "#,
    // 4: node records (`gridsync_proto::directory`). One row per (issuer, node): the record
    // in force; a newer one replaces it and gets a new position, so it is sent up again.
    // The peers enrolled before this are given their records by the next open that knows
    // the node's key (`Store::issue_peer_records`, which removes the marker).
    r#"
    CREATE TABLE node_records (
        pos    INTEGER PRIMARY KEY AUTOINCREMENT,
        issuer BLOB    NOT NULL,
        node   BLOB    NOT NULL,
        serial INTEGER NOT NULL,
        record BLOB    NOT NULL,
        UNIQUE (issuer, node)
    ) STRICT;
    CREATE INDEX node_records_by_node ON node_records (node);

    -- Per parent: the position up to which it acknowledged node records.
    CREATE TABLE records_sent (
        parent BLOB PRIMARY KEY,
        upto   INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;

    INSERT OR REPLACE INTO meta (key, value) VALUES ('issue_peer_records', x'01');
    "#,
    // 5: community workstations, a relay role between handhelds and their street. SQLite
    // cannot change a CHECK in place, so `peers` is rebuilt with the same rows.
    r#"
    CREATE TABLE peers_v5 (
        node        BLOB PRIMARY KEY,
        role        TEXT    NOT NULL
                    CHECK (role IN ('device', 'street', 'district', 'community')),
        scope       TEXT    NOT NULL,
        enrolled_ms INTEGER NOT NULL,
        revoked_ms  INTEGER
    ) STRICT;
    INSERT INTO peers_v5 (node, role, scope, enrolled_ms, revoked_ms)
        SELECT node, role, scope, enrolled_ms, revoked_ms FROM peers;
    DROP TABLE peers;
    ALTER TABLE peers_v5 RENAME TO peers;
    "#,
    // 6: the grid roster (`gridsync_core::roster`), folded from the roster events by the write
    // path in the same transaction as they are stored, as `incidents` is from the others: per
    // (grid, name), the winning event (the greatest stamp: hlc, origin, seq) and what it says.
    // `removed` = 1 once a `StaffRemoved` won (force, phone and device are then NULL). No store
    // of an earlier schema holds a roster event (no earlier build decodes one), so there is
    // nothing to backfill.
    r#"
    CREATE TABLE staff (
        grid        TEXT    NOT NULL,
        name        TEXT    NOT NULL,
        force       TEXT,
        phone       TEXT,
        device      BLOB,
        removed     INTEGER NOT NULL CHECK (removed IN (0, 1)),
        hlc_wall    INTEGER NOT NULL,
        hlc_logical INTEGER NOT NULL,
        origin      BLOB    NOT NULL,
        seq         INTEGER NOT NULL,
        PRIMARY KEY (grid, name),
        CHECK (removed = 1 OR force IS NOT NULL)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX staff_by_device ON staff (device) WHERE removed = 0;
    "#,
    // 7: blobs down (PROTOCOL.md §8.11). `photo_refs`: one row per photo add held (by its
    // event id), with that event's grid, the photo and its thumbnail, whether the add is
    // visible (no removal held names it: kept by the write path from the folded incident
    // state) and whether the thumbnail is missing here (kept by every blob insert). Through
    // its indexes a parent answers "may this child fetch this blob" and a child lists the
    // thumbnails of its scope it lacks, each costing what it asks about. `blob_wants`: blobs
    // this node's user asked for (deleted once held). The photo adds stored before this
    // migration are indexed by the next open (`Store::index_photo_refs`, which removes the
    // marker).
    r#"
    CREATE TABLE photo_refs (
        origin        BLOB    NOT NULL,
        seq           INTEGER NOT NULL,
        incident      BLOB    NOT NULL,
        grid          TEXT    NOT NULL,
        photo         BLOB    NOT NULL,
        thumb         BLOB    NOT NULL,
        visible       INTEGER NOT NULL CHECK (visible IN (0, 1)),
        thumb_missing INTEGER NOT NULL CHECK (thumb_missing IN (0, 1)),
        PRIMARY KEY (origin, seq)
    ) STRICT;
    CREATE INDEX photo_refs_by_photo ON photo_refs (photo);
    CREATE INDEX photo_refs_by_thumb ON photo_refs (thumb);
    CREATE INDEX photo_refs_missing_thumbs ON photo_refs (grid)
        WHERE visible = 1 AND thumb_missing = 1;

    CREATE TABLE blob_wants (
        hash      BLOB    PRIMARY KEY,
        kind      TEXT    NOT NULL CHECK (kind IN ('photo', 'thumb')),
        wanted_ms INTEGER NOT NULL
    ) STRICT;

    INSERT OR REPLACE INTO meta (key, value) VALUES ('index_photo_refs', x'01');
    "#,
    // 8: the console's operator accounts and Open311 API keys (`operators.rs`). Local to
    // this relay: not events, never synced. `password` is an Argon2id PHC string;
    // `key_hash` the SHA-256 of an API key (the key itself is shown once and not kept).
    r#"
    CREATE TABLE operators (
        name       TEXT    PRIMARY KEY,
        role       TEXT    NOT NULL CHECK (role IN ('viewer', 'dispatcher', 'supervisor', 'admin')),
        password   TEXT    NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE api_keys (
        name       TEXT    PRIMARY KEY,
        key_hash   BLOB    NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL
    ) STRICT;
    "#,
    // 9: operations (`ops.rs`, behind `gridsync-relay status`). `peer_contact`: per child,
    // its last contact (written at each session's start and end, one row, never per event),
    // its sessions, the events it sent here, and the download position it last reached (the
    // cursor of the last `Down` page sent to it; NULL until one was). `upstream_acks`: when
    // each parent last acknowledged a batch of this node's (events or a blob).
    r#"
    CREATE TABLE peer_contact (
        node        BLOB    PRIMARY KEY,
        first_ms    INTEGER NOT NULL,
        last_ms     INTEGER NOT NULL,
        sessions    INTEGER NOT NULL,
        events_in   INTEGER NOT NULL,
        down_cursor INTEGER
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE upstream_acks (
        parent      BLOB    PRIMARY KEY,
        last_ack_ms INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    "#,
    // 10: handheld storage (PROTOCOL.md §8.12). `blobs_safe`: blobs this node's upstream
    // said the district holds (a `Held` answer); at the district itself every blob held is
    // safe and nothing is recorded. `blobs_pruned`: full photos whose bytes this device
    // deleted once they were safe (`Store::prune_photos`), so `gridsync blob` can say why
    // they are gone; the row stays when the photo is fetched back (`restored` = 1), and a
    // restored photo is never pruned again.
    r#"
    CREATE TABLE blobs_safe (
        hash BLOB PRIMARY KEY
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE blobs_pruned (
        hash      BLOB    PRIMARY KEY,
        kind      TEXT    NOT NULL CHECK (kind IN ('photo', 'thumb')),
        size      INTEGER NOT NULL,
        pruned_ms INTEGER NOT NULL,
        restored  INTEGER NOT NULL DEFAULT 0 CHECK (restored IN (0, 1))
    ) STRICT, WITHOUT ROWID;

    -- Per parent, the photos it holds that are not known safe yet: what a `HeldQuery` asks
    -- about, so a query costs what is still unconfirmed, not everything ever sent. Kept by
    -- `mark_blob_sent` (a photo added) and `mark_safe` (removed); the photos sent before
    -- this migration are asked about once.
    CREATE TABLE blobs_asking (
        parent BLOB NOT NULL,
        hash   BLOB NOT NULL,
        PRIMARY KEY (parent, hash)
    ) STRICT, WITHOUT ROWID;
    INSERT OR IGNORE INTO blobs_asking (parent, hash)
        SELECT s.parent, s.hash FROM blobs_sent AS s JOIN blobs AS b ON b.hash = s.hash
        WHERE b.kind = 'photo';
    "#,
];

/// Every pragma a connection needs, in one place. WAL with `synchronous=FULL`: a commit is
/// on disk before it returns, so nothing is acknowledged before it is durable.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Runs the migrations from `from` up to [`SCHEMA_VERSION`], each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection, from: i32) -> rusqlite::Result<()> {
    migrate_to(conn, from, SCHEMA_VERSION)
}

/// Runs the migrations from `from` up to `to` (tests build old stores with it).
pub(crate) fn migrate_to(conn: &mut Connection, from: i32, to: i32) -> rusqlite::Result<()> {
    let (from, to) = (from.max(0) as usize, to.max(0) as usize);
    for (i, sql) in MIGRATIONS.iter().enumerate().take(to).skip(from) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", i as i32 + 1)?;
        tx.commit()?;
        tracing::debug!(version = i + 1, "migrated store schema");
    }
    Ok(())
}
