use super::*;
use gridsync_core::codec;
use gridsync_core::{
    command, Category, GridCode, PhotoKind, PhotoMeta, Report, Severity, Status, Writer,
};
use gridsync_core::{BlobHash, Event, Hlc, IncidentId, IncidentState, NodeId};
use rusqlite::params;

const NOW: u64 = 1_764_000_000_000;

/// `events` as a batch received from `from` at time `now_ms`, admitted as a relay admits its
/// district's traffic (any origin, scope "110101").
pub(crate) fn admit(
    from: NodeId,
    events: &[Event],
    now_ms: u64,
) -> Result<gridsync_proto::Admitted, gridsync_proto::AdmitError> {
    let scope: gridsync_core::Scope = "110101".parse().expect("scope");
    gridsync_proto::Admission {
        from,
        scope: &scope,
        origins: gridsync_proto::Origins::Any,
        max_events: usize::MAX,
        max_drift_ms: gridsync_core::hlc::DEFAULT_MAX_DRIFT_MS,
        accept_unsigned_before: None,
        authority: gridsync_proto::Authority::Unchecked,
    }
    .admit_events(events, now_ms)
}

/// The secret key of a test node made by `NodeId::from_secret(&[n; 32])`, if `origin` is one.
pub(crate) fn key_for(origin: &NodeId) -> Option<[u8; 32]> {
    (0..=255u8)
        .map(|n| [n; 32])
        .find(|k| NodeId::from_secret(k) == *origin)
}

/// A writer for `origin` that signs with its key (when it is a test node's, see [`key_for`]).
pub(crate) fn writer(origin: NodeId, author: &str, next_seq: u64, clock: Hlc) -> Writer {
    match key_for(&origin) {
        Some(k) => Writer::signing(&k, author, next_seq, clock),
        None => Writer::new(origin, author, next_seq, clock),
    }
}

/// Signs `e` again with its origin's test key, after a test changed it (an origin that
/// equivocates signs both versions).
pub(crate) fn resign(e: &mut Event) {
    let key = key_for(&e.origin).expect("a test node's event");
    e.sign(&key).expect("the origin's key");
}

/// `events` admitted from `from` at [`NOW`].
pub(crate) fn admitted(from: NodeId, events: &[Event]) -> gridsync_proto::Admitted {
    admit(from, events, NOW).expect("admitted")
}

fn grid() -> GridCode {
    "110101/002/014/03".parse().unwrap()
}

fn report_events(writer: &mut Writer, id: IncidentId, photo: Option<PhotoMeta>) -> Vec<Event> {
    let report = Report {
        category: Category::from_catalogue("garbage").unwrap(),
        description: "bags by the gate".into(),
        location: None,
        observed_at: None,
        severity: Severity::Normal,
    };
    command::plan_report(report, photo.into_iter().collect())
        .unwrap()
        .into_iter()
        .map(|p| writer.write(id, &grid(), p, NOW))
        .collect()
}

fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn create_then_open_and_identity_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let id = Identity {
        secret: [9; 32],
        node_id: NodeId::from_secret(&[9; 32]),
        name: "patrol-7".into(),
        role: gridsync_proto::Role::Device,
        scope: Some("110101/002/014/03".parse().unwrap()),
    };
    Store::create(&path).unwrap().set_identity(&id).unwrap();
    assert!(matches!(
        Store::create(&path),
        Err(StoreError::Exists { .. })
    ));
    let s = Store::open(&path).unwrap();
    assert_eq!(s.identity().unwrap(), id);
    let mode: String = s
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let sync: i64 = s
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!((mode.as_str(), sync), ("wal", 2));
}

#[test]
fn foreign_files_are_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("nope.db");
    assert!(matches!(
        Store::open(&missing),
        Err(StoreError::Missing { .. })
    ));
    assert!(!missing.exists());

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "shopping list\n".repeat(100)).unwrap();
    let before = file_bytes(&text);
    let err = Store::open(&text).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert_eq!(file_bytes(&text), before);

    let other = dir.path().join("other.sqlite");
    {
        let c = Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let before = file_bytes(&other);
    assert!(matches!(
        Store::open(&other),
        Err(StoreError::NotAStore { .. })
    ));
    assert_eq!(file_bytes(&other), before);
}

#[test]
fn a_newer_schema_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Store::create(&path).unwrap());
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let before = file_bytes(&path);
    match Store::open(&path) {
        Err(StoreError::NewerSchema { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn append_is_idempotent_and_keeps_state_equal_to_replay() {
    let mut s = Store::in_memory().unwrap();
    let me = NodeId::from_secret(&[1; 32]);
    let mut w = writer(me, "patrol-7", 1, Hlc::default());
    let id = IncidentId::new_v7(NOW, [3; 10]);
    let thumb = b"thumb".to_vec();
    let photo = b"photo".to_vec();
    let meta = PhotoMeta {
        hash: BlobHash::of(&photo),
        thumb: BlobHash::of(&thumb),
        kind: PhotoKind::Before,
        width: 1,
        height: 1,
        bytes: 5,
        captured_at: None,
    };
    let events = report_events(&mut w, id, Some(meta));
    let blobs = [
        NewBlob {
            hash: BlobHash::of(&photo),
            kind: BlobKind::Photo,
            bytes: &photo,
        },
        NewBlob {
            hash: BlobHash::of(&thumb),
            kind: BlobKind::Thumb,
            bytes: &thumb,
        },
    ];
    let first = s.append(&events, &blobs, Some(w.clock_last())).unwrap();
    assert_eq!((first.new_events, first.new_blobs), (2, 2));
    let again = s.append(&events, &blobs, None).unwrap();
    assert_eq!(
        (again.new_events, again.duplicate_events, again.new_blobs),
        (0, 2, 0)
    );
    assert_eq!(
        s.counts().unwrap(),
        Counts {
            events: 2,
            incidents: 1,
            blobs: 2
        }
    );

    let state = s.incident(&id).unwrap().unwrap();
    let edit = command::plan_edit(&state, vec![command::Change::Status(Status::Accepted)])
        .unwrap()
        .into_iter()
        .map(|p| w.write(id, &grid(), p, NOW + 5))
        .collect::<Vec<_>>();
    s.append(&edit, &[], Some(w.clock_last())).unwrap();
    let stored = s.incident(&id).unwrap().unwrap();
    assert_eq!(
        stored,
        IncidentState::replay(id, &s.events_of(&id).unwrap())
    );
    assert_eq!(stored.status(), Status::Accepted);
    assert_eq!(s.next_seq(&me).unwrap(), 4);
    assert_eq!(s.clock_last().unwrap(), w.clock_last());
    assert_eq!(
        s.thumb_of(&BlobHash::of(&photo)).unwrap(),
        Some(BlobHash::of(&thumb))
    );
    assert_eq!(s.blob(&BlobHash::of(&photo)).unwrap(), Some(photo));
}

#[test]
fn equivocation_and_bad_blobs_refuse_the_whole_batch() {
    let mut s = Store::in_memory().unwrap();
    let mut w = writer(NodeId::from_secret(&[1; 32]), "a", 1, Hlc::default());
    let id = IncidentId::new_v7(NOW, [3; 10]);
    let events = report_events(&mut w, id, None);
    s.append(&events, &[], None).unwrap();

    let mut w2 = writer(NodeId::from_secret(&[1; 32]), "a", 2, w.clock_last());
    let new_one = report_events(&mut w2, IncidentId::new_v7(NOW, [4; 10]), None);
    let mut forged = events[0].clone();
    forged.author = "someone else".into();
    let err = s
        .append(&[new_one[0].clone(), forged], &[], None)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Equivocation { seq: 1, .. }),
        "{err}"
    );
    assert_eq!(s.counts().unwrap().events, 1, "nothing of the batch stored");

    let bad = NewBlob {
        hash: BlobHash::of(b"x"),
        kind: BlobKind::Photo,
        bytes: b"y",
    };
    assert!(matches!(
        s.append(&new_one, &[bad], None),
        Err(StoreError::BlobMismatch { .. })
    ));
    assert_eq!(s.counts().unwrap().events, 1);
}

#[test]
fn contiguous_progress_waits_for_gaps() {
    let mut s = Store::in_memory().unwrap();
    let origin = NodeId::from_secret(&[2; 32]);
    let mut w = writer(origin, "b", 1, Hlc::default());
    let id = IncidentId::new_v7(NOW, [5; 10]);
    let mut all = report_events(&mut w, id, None);
    for i in 0..2 {
        all.push(w.write(
            id,
            &grid(),
            gridsync_core::Payload::Commented {
                text: format!("c{i}"),
            },
            NOW,
        ));
    }
    s.append(&[all[0].clone(), all[2].clone()], &[], None)
        .unwrap();
    assert_eq!(s.contiguous(&origin).unwrap(), 1);
    s.append(&[all[1].clone()], &[], None).unwrap();
    assert_eq!(s.contiguous(&origin).unwrap(), 3);
    // Out-of-order arrival still folds to the same state as in-order replay.
    assert_eq!(
        s.incident(&id).unwrap().unwrap(),
        IncidentState::replay(id, &all)
    );
}

#[test]
fn cursors_only_move_forward_and_pending_counts_follow_them() {
    let mut s = Store::in_memory().unwrap();
    let me = NodeId::from_secret(&[1; 32]);
    let mut w = writer(me, "a", 1, Hlc::default());
    let events = report_events(&mut w, IncidentId::new_v7(NOW, [1; 10]), None);
    s.append(&events, &[], None).unwrap();
    assert_eq!(s.pending(&me).unwrap().events, 1);
    s.advance_cursor(UPSTREAM, ACKED_OWN_SEQ, 1).unwrap();
    s.advance_cursor(UPSTREAM, ACKED_OWN_SEQ, 0).unwrap();
    assert_eq!(s.cursor(UPSTREAM, ACKED_OWN_SEQ).unwrap(), 1);
    assert_eq!(s.pending(&me).unwrap().events, 0);
}

#[test]
fn the_recorded_clock_never_goes_back() {
    let mut s = Store::in_memory().unwrap();
    let mut late = writer(
        NodeId::from_secret(&[1; 32]),
        "a",
        1,
        Hlc::new(NOW + 60_000, 3),
    );
    s.append(
        &report_events(&mut late, IncidentId::new_v7(NOW, [1; 10]), None),
        &[],
        None,
    )
    .unwrap();
    let high = s.clock_last().unwrap();
    assert!(high > Hlc::new(NOW + 60_000, 3));
    let mut early = writer(NodeId::from_secret(&[2; 32]), "b", 1, Hlc::default());
    let older = report_events(&mut early, IncidentId::new_v7(NOW, [2; 10]), None);
    s.append(&older, &[], Some(Hlc::new(NOW - 1, 0))).unwrap();
    assert_eq!(s.clock_last().unwrap(), high);
    s.append(&[], &[], Some(Hlc::new(high.wall_ms + 1, 0)))
        .unwrap();
    assert_eq!(s.clock_last().unwrap(), Hlc::new(high.wall_ms + 1, 0));
}

/// The paths of a database's `-wal` and `-shm` files.
fn sidecars(db: &Path) -> [PathBuf; 2] {
    let side = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [side("-wal"), side("-shm")]
}

/// Copies `from` with its `-wal` and `-shm` (when present) to `to`, as a crash would leave
/// them; returns which of the copy's `-wal` and `-shm` exist.
fn copy_with_wal(from: &Path, to: &Path) -> [bool; 2] {
    std::fs::copy(from, to).unwrap();
    let mut present = [false; 2];
    for (i, (src, dst)) in sidecars(from).iter().zip(sidecars(to)).enumerate() {
        if src.exists() {
            std::fs::copy(src, &dst).unwrap();
            present[i] = true;
        }
    }
    present
}

/// The database's bytes, its `-wal`'s (None when absent), and whether its `-shm` exists.
type Snapshot = (Vec<u8>, Option<Vec<u8>>, bool);

fn snapshot(db: &Path) -> Snapshot {
    let [wal, shm] = sidecars(db);
    (
        file_bytes(db),
        wal.exists().then(|| file_bytes(&wal)),
        shm.exists(),
    )
}

/// The database and its `-wal` are byte for byte as they were, and no file appeared or
/// vanished. (SQLite may rebuild the `-shm` index in place; it holds none of the data.)
fn assert_unchanged(db: &Path, before: &Snapshot) {
    let after = snapshot(db);
    assert!(after.0 == before.0, "the database file changed");
    assert_eq!(
        (after.1.is_some(), after.2),
        (before.1.is_some(), before.2),
        "(-wal exists, -shm exists) changed"
    );
    assert!(after.1 == before.1, "the -wal file changed");
}

#[test]
fn a_foreign_wal_database_with_a_pending_wal_is_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.sqlite");
    let copy = dir.path().join("crashed.sqlite");
    let c = Connection::open(&live).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c.execute_batch(
        "CREATE TABLE t (x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (randomblob(5000));",
    )
    .unwrap();
    // The other app "crashes" here: its files are copied while its connection is open.
    let [wal, shm] = copy_with_wal(&live, &copy);
    drop(c);
    assert!(wal && shm, "the copy must have a pending -wal and its -shm");
    let before = snapshot(&copy);
    assert!(before.1.as_ref().is_some_and(|w| !w.is_empty()));

    let err = Store::open(&copy).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("was not changed"), "{err}");
    assert_unchanged(&copy, &before);
}

#[test]
fn a_newer_schema_with_a_pending_wal_is_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let copy = dir.path().join("crashed.db");
    drop(Store::create(&live).unwrap());
    let c = Connection::open(&live).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let [wal, shm] = copy_with_wal(&live, &copy);
    drop(c);
    assert!(wal && shm, "the copy must have a pending -wal and its -shm");
    let before = snapshot(&copy);

    match Store::open(&copy) {
        Err(StoreError::NewerSchema { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_unchanged(&copy, &before);
}

#[test]
fn our_own_store_with_a_pending_wal_opens_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let copy = dir.path().join("crashed.db");
    let mut s = Store::create(&live).unwrap();
    s.conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    let mut w = writer(NodeId::from_secret(&[1; 32]), "a", 1, Hlc::default());
    let id = IncidentId::new_v7(NOW, [7; 10]);
    let events = report_events(&mut w, id, None);
    s.append(&events, &[], Some(w.clock_last())).unwrap();
    let [wal, shm] = copy_with_wal(&live, &copy);
    drop(s);
    assert!(wal && shm, "the copy must have a pending -wal and its -shm");

    let opened = Store::open(&copy).unwrap();
    assert_eq!(opened.events_of(&id).unwrap(), events);
    assert!(opened.incident(&id).unwrap().is_some());
    assert_eq!(opened.clock_last().unwrap(), w.clock_last());
}

/// The clock bound is admission's (`gridsync_proto::admit`, where its refusal is tested);
/// what it lets through is stored, and raises the recorded clock.
#[test]
fn an_admitted_batch_from_ahead_within_the_bound_is_stored_and_raises_the_clock() {
    use gridsync_core::hlc::DEFAULT_MAX_DRIFT_MS;
    let mut s = Store::in_memory().unwrap();

    let mut fine = writer(NodeId::from_secret(&[1; 32]), "a", 1, Hlc::new(NOW, 0));
    let ok = report_events(&mut fine, IncidentId::new_v7(NOW, [8; 10]), None);
    let mut ahead = writer(
        NodeId::from_secret(&[2; 32]),
        "b",
        1,
        Hlc::new(NOW + 3_600_000, 0),
    );
    let bad = report_events(&mut ahead, IncidentId::new_v7(NOW, [9; 10]), None);
    match admit(
        NodeId::from_secret(&[7; 32]),
        &[ok[0].clone(), bad[0].clone()],
        NOW,
    ) {
        Err(gridsync_proto::AdmitError::ClockAhead {
            origin, seq, error, ..
        }) => {
            assert_eq!((origin, seq), (NodeId::from_secret(&[2; 32]), 1));
            assert!(matches!(
                error,
                gridsync_core::ClockError::TooFarAhead { max_drift_ms, .. }
                    if max_drift_ms == DEFAULT_MAX_DRIFT_MS
            ));
        }
        other => panic!("expected ClockAhead, got {other:?}"),
    }
    assert_eq!(s.counts().unwrap(), Counts::default(), "nothing stored");
    assert_eq!(s.clock_last().unwrap(), Hlc::default());

    // Nine minutes ahead is within the bound.
    let mut near = writer(
        NodeId::from_secret(&[3; 32]),
        "c",
        1,
        Hlc::new(NOW + 9 * 60_000, 0),
    );
    let near = report_events(&mut near, IncidentId::new_v7(NOW, [10; 10]), None);
    let done = s
        .append_received(&admitted(NodeId::from_secret(&[7; 32]), &near), &[])
        .unwrap();
    assert_eq!(done.new_events, 1);
    assert_eq!(s.clock_last().unwrap(), near[0].hlc);
    assert!(s.clock_last().unwrap().wall_ms > NOW + 9 * 60_000 - 1);
}

#[test]
fn a_cached_state_of_another_incident_is_rebuilt_from_events() {
    let mut s = Store::in_memory().unwrap();
    let mut w = writer(NodeId::from_secret(&[1; 32]), "a", 1, Hlc::default());
    let a = IncidentId::new_v7(NOW, [1; 10]);
    let b = IncidentId::new_v7(NOW, [2; 10]);
    let mut events = report_events(&mut w, a, None);
    events.extend(report_events(&mut w, b, None));
    s.append(&events, &[], None).unwrap();

    // Put b's state in a's row.
    let b_state: Vec<u8> = s
        .conn
        .query_row(
            "SELECT state FROM incidents WHERE id = ?1",
            [&b.0.as_bytes()[..]],
            |r| r.get(0),
        )
        .unwrap();
    s.conn
        .execute(
            "UPDATE incidents SET state = ?1 WHERE id = ?2",
            params![b_state, &a.0.as_bytes()[..]],
        )
        .unwrap();

    // Reads rebuild it.
    let read = s.incident(&a).unwrap().unwrap();
    assert_eq!(read.id, a);
    assert_eq!(read, IncidentState::replay(a, &s.events_of(&a).unwrap()));
    assert!(s.incidents().unwrap().iter().any(|st| st.id == a));

    // The write path rebuilds it too, and stores a's own state again.
    let comment = w.write(
        a,
        &grid(),
        gridsync_core::Payload::Commented { text: "hi".into() },
        NOW,
    );
    s.append(&[comment], &[], None).unwrap();
    let stored: Vec<u8> = s
        .conn
        .query_row(
            "SELECT state FROM incidents WHERE id = ?1",
            [&a.0.as_bytes()[..]],
            |r| r.get(0),
        )
        .unwrap();
    let stored = codec::decode_state(&stored).unwrap();
    assert_eq!(stored.id, a);
    assert_eq!(stored, IncidentState::replay(a, &s.events_of(&a).unwrap()));
}

#[test]
fn an_unreadable_stored_clock_falls_back_to_the_newest_event() {
    let mut s = Store::in_memory().unwrap();
    let mut w = writer(
        NodeId::from_secret(&[1; 32]),
        "a",
        1,
        Hlc::new(NOW + 5_000, 2),
    );
    let events = report_events(&mut w, IncidentId::new_v7(NOW, [1; 10]), None);
    s.append(&events, &[], None).unwrap();
    let newest = events.iter().map(|e| e.hlc).max().unwrap();
    s.conn
        .execute(
            "UPDATE meta SET value = x'0102' WHERE key = 'clock_last'",
            [],
        )
        .unwrap();
    assert_eq!(s.clock_last().unwrap(), newest);

    // With no events and an unreadable value, zero is all there is.
    let empty = Store::in_memory().unwrap();
    empty
        .conn
        .execute(
            "INSERT INTO meta (key, value) VALUES ('clock_last', x'00')",
            [],
        )
        .unwrap();
    assert_eq!(empty.clock_last().unwrap(), Hlc::default());
}

/// Migration of stores written before signatures: a version 2 store's own unsigned events
/// are signed in place by the first open (ids, content and arrival order unchanged), other
/// origins' stay unsigned and readable, and the pass runs once.
#[test]
fn opening_a_version_2_store_signs_its_own_events_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let key = [9; 32];
    let me = NodeId::from_secret(&key);
    let other = NodeId::from_secret(&[4; 32]);
    let id = IncidentId::new_v7(NOW, [3; 10]);
    // Unsigned, as the previous build wrote them.
    let mine = report_events(
        &mut Writer::new(me, "patrol-7", 1, Hlc::default()),
        id,
        None,
    );
    let theirs = report_events(&mut Writer::new(other, "p-8", 1, Hlc::default()), id, None);
    {
        // Schema 2 as the previous build left it; this build's append writes the same rows.
        let mut c = Connection::open(&path).unwrap();
        crate::schema::configure(&c).unwrap();
        crate::schema::migrate_to(&mut c, 0, 2).unwrap();
        let mut s = Store {
            conn: c,
            path: path.clone(),
        };
        s.set_identity(&Identity {
            secret: key,
            node_id: me,
            name: "patrol-7".into(),
            role: gridsync_proto::Role::Device,
            scope: Some("110101/002/014/03".parse().unwrap()),
        })
        .unwrap();
        s.append(&mine, &[], None).unwrap();
        s.append(&theirs, &[], None).unwrap();
    }
    let s = Store::open(&path).unwrap();
    let events = s.events_of(&id).unwrap();
    assert_eq!(events.len(), 2);
    let stored_mine = events.iter().find(|e| e.origin == me).unwrap();
    assert_eq!(stored_mine.verify(), Ok(()), "own event signed on open");
    let mut content = stored_mine.clone();
    content.signature = None;
    assert_eq!(content, mine[0], "only the signature was added");
    let stored_theirs = events.iter().find(|e| e.origin == other).unwrap();
    assert_eq!(
        stored_theirs, &theirs[0],
        "another origin's event stays as it was"
    );
    assert_eq!(
        s.meta("sign_own_events").unwrap(),
        None,
        "the pass ran once"
    );
}

/// A signed and an unsigned copy of one event are the same event (a duplicate, not an
/// equivocation), whichever came first, and the first copy stays.
#[test]
fn signed_and_unsigned_copies_of_one_event_are_duplicates() {
    let key = [5; 32];
    let id = IncidentId::new_v7(NOW, [4; 10]);
    let signed = report_events(&mut Writer::signing(&key, "a", 1, Hlc::default()), id, None);
    let mut unsigned = signed.clone();
    unsigned[0].signature = None;
    for (first, second) in [(&unsigned, &signed), (&signed, &unsigned)] {
        let mut s = Store::in_memory().unwrap();
        s.append(first, &[], None).unwrap();
        let out = s.append(second, &[], None).unwrap();
        assert_eq!((out.new_events, out.duplicate_events), (0, 1));
        assert_eq!(&s.events_of(&id).unwrap(), first, "the first copy stays");
        let mut altered = signed.clone();
        altered[0].author = "b".into();
        altered[0].sign(&key).unwrap();
        assert!(matches!(
            s.append(&altered, &[], None),
            Err(StoreError::Equivocation { .. })
        ));
    }
}

// ---- node records ---------------------------------------------------------------------------

fn relay_store(key: [u8; 32]) -> Store {
    let mut s = Store::in_memory().unwrap();
    s.set_identity(&Identity {
        secret: key,
        node_id: NodeId::from_secret(&key),
        name: "street-002".into(),
        role: gridsync_proto::Role::Street,
        scope: None,
    })
    .unwrap();
    s
}

/// Enrolling and revoking issue the relay's signed record in the same transaction; a
/// revocation names the highest sequence number held of the node; re-enrolling lifts it with
/// a higher serial; only the record in force is kept and sent.
#[test]
fn enroll_and_revoke_issue_signed_records_in_force_by_serial() {
    use gridsync_proto::{Role, SyncStore};
    let key = [9; 32];
    let me = NodeId::from_secret(&key);
    let device = NodeId::from_secret(&[5; 32]);
    let grid: gridsync_core::Scope = "110101/002/014/03".parse().unwrap();
    let mut s = relay_store(key);
    s.enroll(&device, Role::Device, &grid, NOW).unwrap();
    let id = IncidentId::new_v7(NOW, [6; 10]);
    let events = report_events(&mut writer(device, "p", 1, Hlc::default()), id, None);
    s.append_received(&admit(device, &events, NOW).unwrap(), &[])
        .unwrap();

    let [first] = &s.records_about(&device).unwrap()[..] else {
        panic!("one record")
    };
    assert_eq!(
        (first.issuer, first.node, first.role),
        (me, device, Role::Device)
    );
    assert_eq!(
        (first.scope.clone(), first.revoked_after),
        (grid.clone(), None)
    );
    assert_eq!(first.verify(), Ok(()));

    assert!(s.revoke(&device, NOW + 1).unwrap());
    let [revoked] = &s.records_about(&device).unwrap()[..] else {
        panic!("one record in force")
    };
    assert_eq!(revoked.revoked_after, Some(events.len() as u64));
    assert!(revoked.serial > first.serial);
    assert_eq!(revoked.verify(), Ok(()));
    // Revoking again changes nothing; enrolling again lifts the revocation.
    assert!(!s.revoke(&device, NOW + 2).unwrap());
    assert_eq!(s.records().unwrap().len(), 1);
    s.enroll(&device, Role::Device, &grid, NOW + 3).unwrap();
    let all = s.records_to_send(0, 100).unwrap();
    assert_eq!(all.len(), 1, "only the record in force: {all:?}");
    assert_eq!(all[0].1.revoked_after, None);
    assert!(all[0].1.serial > revoked.serial);

    // A parent's cursor moves forward only.
    s.records_acked(&me, all[0].0).unwrap();
    s.records_acked(&me, 0).unwrap();
    assert_eq!(SyncStore::records_cursor(&s, &me).unwrap(), all[0].0);
    assert!(s.records_to_send(all[0].0, 100).unwrap().is_empty());
}

/// Received records are kept by issuer and node, the higher serial winning whatever the
/// order, and count as duplicates otherwise.
#[test]
fn received_records_keep_the_highest_serial_whatever_the_order() {
    use gridsync_proto::directory::{admit_records, Records, StoreDirectory};
    use gridsync_proto::{Enrolled, NodeRecord, Role};
    let district_key = [1; 32];
    let street_key = [2; 32];
    let street = NodeId::from_secret(&street_key);
    let device = NodeId::from_secret(&[3; 32]);
    let mut s = relay_store(district_key);
    let scope: gridsync_core::Scope = "110101/002".parse().unwrap();
    s.enroll(&street, Role::Street, &scope, NOW).unwrap();
    let record = |serial, revoked_after| {
        NodeRecord::issue(
            &street_key,
            device,
            Role::Device,
            "110101/002/014/03".parse().unwrap(),
            serial,
            revoked_after,
        )
        .unwrap()
    };
    let sender = Enrolled {
        node: street,
        role: Role::Street,
        scope,
    };
    let me = NodeId::from_secret(&district_key);
    for (records, stored, duplicates) in [
        (vec![record(2, Some(4))], 1, 0),
        (vec![record(1, None)], 0, 1),
        (vec![record(2, Some(4))], 0, 1),
        (vec![record(3, None), record(5, Some(9))], 2, 0),
    ] {
        let held = StoreDirectory { store: &s, me };
        let admitted = admit_records(&held, &sender, records).unwrap();
        let c = s.commit_records(&admitted).unwrap();
        assert_eq!((c.stored, c.duplicates), (stored, duplicates));
    }
    let held = StoreDirectory { store: &s, me };
    let about = held.records_about(&device).unwrap();
    assert_eq!(about.len(), 1);
    assert_eq!((about[0].serial, about[0].revoked_after), (5, Some(9)));
}

/// A relay store from before node records gets a record for each of its peers the first time
/// this build opens it, once.
#[test]
fn peers_enrolled_before_records_get_theirs_on_the_first_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("street.db");
    let key = [9; 32];
    let (device, relay) = (NodeId::from_secret(&[5; 32]), NodeId::from_secret(&[6; 32]));
    {
        let mut c = Connection::open(&path).unwrap();
        crate::schema::configure(&c).unwrap();
        crate::schema::migrate_to(&mut c, 0, 3).unwrap();
        c.execute_batch("DELETE FROM meta WHERE key = 'sign_own_events'")
            .unwrap();
        let mut s = Store {
            conn: c,
            path: path.clone(),
        };
        s.set_identity(&Identity {
            secret: key,
            node_id: NodeId::from_secret(&key),
            name: "street-002".into(),
            role: gridsync_proto::Role::Street,
            scope: None,
        })
        .unwrap();
        for (node, role, scope, revoked) in [
            (device, "device", "110101/002/014/03", None),
            (relay, "street", "110101/002/015", Some(NOW)),
        ] {
            s.conn
                .execute(
                    "INSERT INTO peers (node, role, scope, enrolled_ms, revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![&node.0[..], role, scope, NOW as i64, revoked.map(|v: u64| v as i64)],
                )
                .unwrap();
        }
    }
    let s = Store::open(&path).unwrap();
    let records = s.records().unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.verify().is_ok() && r.serial == 1));
    let of = |n: NodeId| records.iter().find(|r| r.node == n).unwrap().revoked_after;
    assert_eq!((of(device), of(relay)), (None, Some(0)));
    assert_eq!(s.meta("issue_peer_records").unwrap(), None, "once");
    drop(s);
    assert_eq!(Store::open(&path).unwrap().records().unwrap().len(), 2);
}

/// A report by `origin` with one photo (`photo`, `thumb` bytes), as events and blobs.
fn photo_report(
    w: &mut Writer,
    n: u8,
    photo: &[u8],
    thumb: &[u8],
) -> (Vec<Event>, BlobHash, BlobHash) {
    let id = IncidentId::new_v7(NOW, [n; 10]);
    let meta = PhotoMeta {
        hash: BlobHash::of(photo),
        thumb: BlobHash::of(thumb),
        kind: PhotoKind::Before,
        width: 1,
        height: 1,
        bytes: photo.len() as u64,
        captured_at: None,
    };
    (
        report_events(w, id, Some(meta)),
        BlobHash::of(photo),
        BlobHash::of(thumb),
    )
}

fn blobs_of<'a>(photo: &'a [u8], thumb: &'a [u8]) -> [NewBlob<'a>; 2] {
    [
        NewBlob {
            hash: BlobHash::of(photo),
            kind: BlobKind::Photo,
            bytes: photo,
        },
        NewBlob {
            hash: BlobHash::of(thumb),
            kind: BlobKind::Thumb,
            bytes: thumb,
        },
    ]
}

#[test]
fn only_own_safe_unwanted_photos_with_their_thumbnail_are_pruned_once() {
    let mut s = Store::in_memory().unwrap();
    let me = NodeId::from_secret(&[1; 32]);
    let mate = NodeId::from_secret(&[2; 32]);
    let parent = NodeId([9; 32]);
    let mut w = writer(me, "patrol-7", 1, Hlc::default());
    let mut all = Vec::new();
    for (n, photo, thumb) in [
        (1u8, &b"safe photo"[..], &b"safe thumb"[..]),
        (3, b"unsafe photo", b"unsafe thumb"),
    ] {
        let (events, p, t) = photo_report(&mut w, n, photo, thumb);
        s.append(&events, &blobs_of(photo, thumb), Some(w.clock_last()))
            .unwrap();
        all.push((p, t, photo.to_vec()));
    }
    // A grid-mate's photo, received with its blobs, safe too: never pruned here.
    let mut mw = writer(mate, "zhao-min", 1, Hlc::default());
    let (mate_events, mate_photo, _) = photo_report(&mut mw, 4, b"mate photo", b"mate thumb");
    s.append_received(
        &admitted(parent, &mate_events),
        &blobs_of(b"mate photo", b"mate thumb"),
    )
    .unwrap();
    let [(safe, safe_thumb, safe_bytes), (unsafe_photo, ..)] = &all[..] else {
        unreachable!()
    };
    // Nothing is safe yet: nothing is pruned.
    assert_eq!(s.prune_photos(&me, NOW).unwrap(), PruneReport::default());
    s.mark_safe(&[*safe, mate_photo, *safe_thumb]).unwrap();
    let report = s.prune_photos(&me, NOW + 1).unwrap();
    assert_eq!(
        report,
        PruneReport {
            pruned: 1,
            bytes_freed: safe_bytes.len() as u64
        }
    );
    assert_eq!(s.blob(safe).unwrap(), None);
    assert_eq!(
        s.pruned(safe).unwrap(),
        Some(Pruned {
            kind: BlobKind::Photo,
            size: safe_bytes.len() as u64,
            pruned_ms: NOW + 1
        })
    );
    for kept in [safe_thumb, unsafe_photo, &mate_photo] {
        assert!(s.blob(kept).unwrap().is_some(), "{kept} stays");
        assert_eq!(s.pruned(kept).unwrap(), None);
    }
    // A pruned photo is missing (so it can be fetched), and a second prune does nothing.
    assert_eq!(
        s.blob_state(safe).unwrap(),
        gridsync_proto::BlobState::Missing
    );
    assert_eq!(s.prune_photos(&me, NOW + 2).unwrap().pruned, 0);
    // Fetched back: held again, no longer reported pruned, and never pruned again.
    s.append(&[], &[blobs_of(safe_bytes, b"safe thumb")[0]], None)
        .unwrap();
    assert_eq!(s.blob(safe).unwrap().as_deref(), Some(&safe_bytes[..]));
    assert_eq!(s.pruned(safe).unwrap(), None);
    assert_eq!(s.prune_photos(&me, NOW + 3).unwrap().pruned, 0);
    assert!(s.blob(safe).unwrap().is_some());
}

#[test]
fn only_photos_sent_and_not_known_safe_are_asked_about_in_hash_order() {
    let mut s = Store::in_memory().unwrap();
    let me = NodeId::from_secret(&[1; 32]);
    let parent = NodeId([9; 32]);
    let mut w = writer(me, "patrol-7", 1, Hlc::default());
    let mut photos = Vec::new();
    for n in 0..3u8 {
        let photo = vec![b'p', n];
        let thumb = vec![b't', n];
        let (events, p, t) = photo_report(&mut w, n + 1, &photo, &thumb);
        s.append(&events, &blobs_of(&photo, &thumb), Some(w.clock_last()))
            .unwrap();
        s.mark_blob_sent(&parent, &p).unwrap();
        s.mark_blob_sent(&parent, &t).unwrap();
        photos.push(p);
    }
    photos.sort();
    // Thumbnails are never asked about; other parents have nothing to ask.
    assert_eq!(s.unsafe_sent(&parent, None, 10).unwrap(), photos);
    assert!(s
        .unsafe_sent(&NodeId([8; 32]), None, 10)
        .unwrap()
        .is_empty());
    assert_eq!(s.unsafe_sent(&parent, None, 2).unwrap(), photos[..2]);
    assert_eq!(
        s.unsafe_sent(&parent, Some(&photos[1]), 10).unwrap(),
        photos[2..]
    );
    s.mark_safe(&photos[..1]).unwrap();
    s.mark_safe(&photos[..1]).unwrap();
    assert_eq!(s.unsafe_sent(&parent, None, 10).unwrap(), photos[1..]);
    assert_eq!(s.safe_blobs(&photos).unwrap(), photos[..1]);
    // Sent again once safe: not asked about again.
    s.mark_blob_sent(&parent, &photos[0]).unwrap();
    assert_eq!(s.unsafe_sent(&parent, None, 10).unwrap(), photos[1..]);
}

#[test]
fn settings_persist_and_default_to_unset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut s = Store::create(&path).unwrap();
    assert_eq!(s.setting("prune-photos").unwrap(), None);
    s.set_setting("prune-photos", true).unwrap();
    drop(s);
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.setting("prune-photos").unwrap(), Some(true));
    s.set_setting("prune-photos", false).unwrap();
    assert_eq!(s.setting("prune-photos").unwrap(), Some(false));
}
