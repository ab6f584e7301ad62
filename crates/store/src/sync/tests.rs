use crate::blobs::{IN_SCOPE_SQL, MISSING_THUMBS_SQL, PARTIAL_SQL, REFERENCED_SQL, UNSENT_SQL};
use crate::peers::SCOPE_HEADS_SQL;
use crate::read::{EVENTS_AFTER_SQL, PAGE_SQL};
use crate::tests::{admitted, resign, writer};
use crate::{BlobKind, NewBlob, PeerRow, Store, StoreError, PAGE_EXAMINE, SCHEMA_VERSION};
use gridsync_core::{codec, Hlc, IncidentId, Payload, PhotoKind, PhotoMeta};
use gridsync_core::{BlobHash, Event, GridCode, NodeId, Scope};
use gridsync_proto::{
    BlobFinish, BlobInfo, BlobState, Committed, Enrolled, Head, Page, Role, StorageError,
    StorageErrorKind, SyncStore,
};
use rusqlite::StatementStatus;
use rusqlite::{params, Connection};

const NOW: u64 = 1_764_000_000_000;

fn node(n: u8) -> NodeId {
    NodeId::from_secret(&[n; 32])
}

fn grid(s: &str) -> GridCode {
    s.parse().unwrap()
}

fn scope(s: &str) -> Scope {
    s.parse().unwrap()
}

/// `n` comment events of `origin` (seq 1..=n) on one incident in `grid`.
fn comments(origin: NodeId, grid_code: &str, n: usize) -> Vec<Event> {
    let mut w = writer(origin, "w", 1, Hlc::default());
    let id = IncidentId::new_v7(NOW, [origin.0[0]; 10]);
    (0..n)
        .map(|i| {
            w.write(
                id,
                &grid(grid_code),
                Payload::Commented {
                    text: format!("c{i}"),
                },
                NOW,
            )
        })
        .collect()
}

fn photo_meta(photo: &[u8], thumb: &[u8]) -> PhotoMeta {
    PhotoMeta {
        hash: BlobHash::of(photo),
        thumb: BlobHash::of(thumb),
        kind: PhotoKind::Before,
        width: 1,
        height: 1,
        bytes: photo.len() as u64,
        captured_at: None,
    }
}

/// A photo event of `origin` naming `photo` and `thumb` (no blobs stored).
fn photo_event(origin: NodeId, photo: &[u8], thumb: &[u8]) -> Event {
    let mut w = writer(origin, "w", 1, Hlc::default());
    w.write(
        IncidentId::new_v7(NOW, [9; 10]),
        &grid("110101/002/014/03"),
        Payload::PhotoAdded(photo_meta(photo, thumb)),
        NOW,
    )
}

fn via_of(s: &Store, e: &Event) -> Option<Vec<u8>> {
    s.conn
        .query_row(
            "SELECT via FROM events WHERE origin = ?1 AND seq = ?2",
            params![&e.origin.0[..], e.seq as i64],
            |r| r.get(0),
        )
        .unwrap()
}

fn parts(s: &Store, hash: &BlobHash) -> i64 {
    s.conn
        .query_row(
            "SELECT COUNT(*) FROM blob_parts WHERE hash = ?1",
            [&hash.0[..]],
            |r| r.get(0),
        )
        .unwrap()
}

/// A blob check that stores anything that hashes right (as a parent without one does).
fn accept(_: &[u8]) -> std::result::Result<(), String> {
    Ok(())
}

/// Every page from `cursor` on, until `more` is false: the events, and the final cursor.
fn drain(
    s: &Store,
    sc: &Scope,
    except: &NodeId,
    mut cursor: u64,
    max_events: usize,
    max_bytes: usize,
) -> (Vec<Vec<u8>>, u64, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let page = SyncStore::page(s, sc, except, cursor, max_events, max_bytes).unwrap();
        pages += 1;
        assert!(page.events.len() <= max_events.max(1));
        assert!(page.cursor >= cursor, "the cursor never goes back");
        cursor = page.cursor;
        all.extend(page.events);
        if !page.more {
            return (all, cursor, pages);
        }
        assert!(pages < 10_000, "paging does not end");
    }
}

fn encoded(events: &[Event]) -> Vec<Vec<u8>> {
    events
        .iter()
        .map(|e| codec::encode_event(e).unwrap())
        .collect()
}

// ---- schema ---------------------------------------------------------------------------------

#[test]
fn a_fresh_store_has_the_sync_schema() {
    let s = Store::in_memory().unwrap();
    let version: i32 = s
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!((version, SCHEMA_VERSION), (10, 10));
    for table in [
        "origin_grids",
        "peers",
        "blob_parts",
        "blobs_sent",
        "node_records",
        "records_sent",
        "staff",
        "photo_refs",
        "blob_wants",
        "operators",
        "api_keys",
        "peer_contact",
        "upstream_acks",
        "blobs_safe",
        "blobs_pruned",
        "blobs_asking",
    ] {
        let n: i64 = s
            .conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{table}");
    }
}

#[test]
fn a_version_1_store_migrates_and_backfills_origin_grids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let (a, b) = (node(1), node(2));
    let a_events = comments(a, "110101/002/014/03", 2);
    let b_events = comments(b, "110101/003/001/01", 1);
    {
        // A store as the previous build left it: schema 1, events written by its append.
        let mut c = Connection::open(&path).unwrap();
        crate::schema::configure(&c).unwrap();
        crate::schema::migrate_to(&mut c, 0, 1).unwrap();
        for e in a_events.iter().chain(&b_events) {
            c.execute(
                "INSERT INTO events (origin, seq, incident, grid, hlc_wall, hlc_logical, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    &e.origin.0[..],
                    e.seq as i64,
                    &e.incident.0.as_bytes()[..],
                    e.grid.as_str(),
                    e.hlc.wall_ms as i64,
                    e.hlc.logical as i64,
                    codec::encode_event(e).unwrap()
                ],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO origins (origin, contiguous) VALUES (?1, 2), (?2, 1)",
            params![&a.0[..], &b.0[..]],
        )
        .unwrap();
        let v: i32 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
    }

    let s = Store::open(&path).unwrap();
    let version: i32 = s
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let grids: Vec<(Vec<u8>, String)> = s
        .conn
        .prepare("SELECT origin, grid FROM origin_grids ORDER BY origin")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut want = vec![
        (a.0.to_vec(), "110101/002/014/03".to_owned()),
        (b.0.to_vec(), "110101/003/001/01".to_owned()),
    ];
    want.sort();
    assert_eq!(grids, want);
    assert_eq!(via_of(&s, &a_events[0]), None, "old events have no via");
    // The migrated store serves sync: heads from the backfill, pages of the old events.
    let street = Enrolled {
        node: node(9),
        role: Role::Street,
        scope: scope("110101/002"),
    };
    assert_eq!(
        SyncStore::heads(&s, &street).unwrap(),
        vec![Head { origin: a, seq: 2 }]
    );
    let (got, _, _) = drain(&s, &scope("110101"), &a, 0, 100, 1 << 20);
    assert_eq!(got.len(), 3, "old events (via NULL) go to every child");
}

// ---- enrollment -----------------------------------------------------------------------------

#[test]
fn enroll_revoke_and_re_enroll() {
    let mut s = Store::in_memory().unwrap();
    let (dev, street) = (node(1), node(2));
    assert_eq!(SyncStore::enrolled(&s, &dev).unwrap(), None);
    let err = s
        .enroll(&dev, Role::Device, &scope("110101/002"), NOW)
        .unwrap_err();
    assert!(matches!(err, StoreError::Enrollment { .. }), "{err}");
    assert!(err.to_string().contains("four segments"), "{err}");

    s.enroll(&dev, Role::Device, &scope("110101/002/014/03"), NOW)
        .unwrap();
    s.enroll(&street, Role::Street, &scope("110101/002"), NOW + 1)
        .unwrap();
    assert_eq!(
        SyncStore::enrolled(&s, &dev).unwrap(),
        Some(Enrolled {
            node: dev,
            role: Role::Device,
            scope: scope("110101/002/014/03")
        })
    );

    assert!(s.revoke(&dev, NOW + 5).unwrap());
    assert!(!s.revoke(&dev, NOW + 6).unwrap(), "already revoked");
    assert!(!s.revoke(&node(7), NOW).unwrap(), "never enrolled");
    assert_eq!(SyncStore::enrolled(&s, &dev).unwrap(), None);
    assert_eq!(
        s.peers().unwrap(),
        vec![
            PeerRow {
                node: dev,
                role: Role::Device,
                scope: scope("110101/002/014/03"),
                enrolled_ms: NOW,
                revoked_ms: Some(NOW + 5),
            },
            PeerRow {
                node: street,
                role: Role::Street,
                scope: scope("110101/002"),
                enrolled_ms: NOW + 1,
                revoked_ms: None,
            }
        ]
    );

    // Re-enrolling lifts the revocation and replaces role and scope.
    s.enroll(&dev, Role::Device, &scope("110101/002/014/04"), NOW + 10)
        .unwrap();
    let again = SyncStore::enrolled(&s, &dev).unwrap().unwrap();
    assert_eq!(again.scope, scope("110101/002/014/04"));
    let row = s
        .peers()
        .unwrap()
        .into_iter()
        .find(|p| p.node == dev)
        .unwrap();
    assert_eq!((row.enrolled_ms, row.revoked_ms), (NOW + 10, None));
}

// ---- heads ----------------------------------------------------------------------------------

#[test]
fn a_devices_heads_are_its_own_origin_only() {
    let mut s = Store::in_memory().unwrap();
    let (dev, other) = (node(1), node(2));
    let device = Enrolled {
        node: dev,
        role: Role::Device,
        scope: scope("110101/002/014/03"),
    };
    assert_eq!(
        SyncStore::heads(&s, &device).unwrap(),
        vec![],
        "nothing held: no head"
    );
    s.append(&comments(other, "110101/002/014/03", 3), &[], None)
        .unwrap();
    assert_eq!(
        SyncStore::heads(&s, &device).unwrap(),
        vec![],
        "others' events are not its"
    );
    let mine = comments(dev, "110101/002/014/03", 4);
    s.append(
        &[mine[0].clone(), mine[1].clone(), mine[3].clone()],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(
        SyncStore::heads(&s, &device).unwrap(),
        vec![Head {
            origin: dev,
            seq: 2
        }],
        "contiguous, not the highest"
    );
}

#[test]
fn a_relays_heads_cover_its_scope_by_whole_segments() {
    let mut s = Store::in_memory().unwrap();
    let (a, b, c, d, gap) = (node(1), node(2), node(3), node(4), node(5));
    s.append(&comments(a, "110101/002/014/03", 3), &[], None)
        .unwrap();
    s.append(&comments(b, "110101/003/001/01", 1), &[], None)
        .unwrap();
    s.append(&comments(c, "110102/002/014/03", 2), &[], None)
        .unwrap();
    // d has events in and out of the street's scope: its head is its whole progress here.
    let mut d_events = comments(d, "110101/009/001/01", 1);
    let mut w = writer(d, "w", 2, d_events[0].hlc);
    d_events.push(w.write(
        IncidentId::new_v7(NOW, [44; 10]),
        &grid("110101/002/001/01"),
        Payload::Commented { text: "x".into() },
        NOW,
    ));
    s.append(&d_events, &[], None).unwrap();
    // gap holds only seq 2: contiguous 0, so no head.
    s.append(&comments(gap, "110101/002/014/03", 2)[1..], &[], None)
        .unwrap();

    let heads = |sc: &str| {
        SyncStore::heads(
            &s,
            &Enrolled {
                node: node(99),
                role: Role::Street,
                scope: scope(sc),
            },
        )
        .unwrap()
    };
    let h = |origin, seq| Head { origin, seq };
    // Heads come in origin order (node ids are public keys: not in the order of `n`).
    let by_origin = |mut v: Vec<Head>| {
        v.sort_by_key(|h| h.origin);
        v
    };
    assert_eq!(heads("110101/002"), by_origin(vec![h(a, 3), h(d, 2)]));
    assert_eq!(heads("110101"), by_origin(vec![h(a, 3), h(b, 1), h(d, 2)]));
    assert_eq!(
        heads("110101/00"),
        vec![],
        "110101/00 is not a prefix of 110101/002"
    );
    assert_eq!(heads("110101/002/014/03"), vec![h(a, 3)]);
    assert_eq!(heads("110101/002/014/0"), vec![]);
    assert_eq!(heads("1101"), vec![]);
    let district = SyncStore::heads(
        &s,
        &Enrolled {
            node: node(98),
            role: Role::District,
            scope: scope("110102"),
        },
    )
    .unwrap();
    assert_eq!(district, vec![h(c, 2)]);
}

// ---- commit ---------------------------------------------------------------------------------

#[test]
fn commit_is_idempotent_records_via_and_keeps_refusal_kinds() {
    let mut s = Store::in_memory().unwrap();
    let (child, other, me) = (node(1), node(2), node(3));
    let events = comments(child, "110101/002/014/03", 3);
    assert_eq!(
        s.commit(&admitted(child, &events)).unwrap(),
        Committed {
            stored: 3,
            duplicates: 0
        }
    );
    assert_eq!(
        s.commit(&admitted(child, &events)).unwrap(),
        Committed {
            stored: 0,
            duplicates: 3
        }
    );
    // The same events from another peer change nothing, not even where they came from.
    assert_eq!(s.commit(&admitted(other, &events)).unwrap().duplicates, 3);
    for e in &events {
        assert_eq!(via_of(&s, e), Some(child.0.to_vec()));
    }
    let own = comments(me, "110101/002/014/03", 1);
    s.append(&own, &[], None).unwrap();
    assert_eq!(via_of(&s, &own[0]), None, "own events have no via");

    let mut forged = events[0].clone();
    forged.author = "someone else".into();
    resign(&mut forged);
    let err = s.commit(&admitted(child, &[forged])).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Equivocation, "{err}");
    assert!(!err.message.contains(":memory:"), "{err}");

    // A refused batch stores nothing of itself (the clock bound is admission's now:
    // `gridsync_proto::admit` and tests/session_sim.rs test it).
    let fine = comments(node(5), "110101/002/014/03", 1);
    let mut forged = events[1].clone();
    forged.author = "someone else".into();
    resign(&mut forged);
    let err = s
        .commit(&admitted(child, &[fine[0].clone(), forged]))
        .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Equivocation, "{err}");
    assert!(
        !s.has_event(&fine[0].id()).unwrap(),
        "nothing of the batch stored"
    );
}

/// The message of a refusal goes to the peer: it names the event and the figures, never the
/// database's path (or SQL); the full error, with the path, is only logged.
#[test]
fn refusals_name_the_event_and_the_figures_but_never_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay-secret-dir").join("street.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut s = Store::create(&path).unwrap();
    let dir_text = dir.path().display().to_string();
    let no_path = |err: &StorageError| {
        for leak in [
            dir_text.as_str(),
            "relay-secret-dir",
            "street.db",
            "SELECT",
            "INSERT",
        ] {
            assert!(!err.message.contains(leak), "{leak:?} in {err}");
        }
    };
    let child = node(1);
    let events = comments(child, "110101/002/014/03", 3);
    s.commit(&admitted(child, &events)).unwrap();

    let mut forged = events[1].clone();
    forged.author = "someone else".into();
    resign(&mut forged);
    for err in [
        s.commit(&admitted(child, std::slice::from_ref(&forged)))
            .unwrap_err(),
        SyncStore::commit_download(
            &mut s,
            &admitted(node(50), std::slice::from_ref(&forged)),
            1,
        )
        .unwrap_err(),
    ] {
        assert_eq!(err.kind, StorageErrorKind::Equivocation, "{err}");
        no_path(&err);
        assert_eq!(
            err.message,
            "event 8a88e3dd/2 is already stored with different content; refusing the batch"
        );
    }

    // An internal failure a peer hears of (a blob write refused) names the blob, not the file.
    let hash = BlobHash::of(b"photo");
    let err = SyncStore::blob_write(&mut s, &hash, BlobKind::Photo, 5, 3, b"to").unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Internal);
    no_path(&err);
    assert!(err.message.contains(&hash.to_hex()), "{err}");
}

// ---- page -----------------------------------------------------------------------------------

#[test]
fn page_skips_what_the_child_sent_and_what_is_out_of_scope() {
    let mut s = Store::in_memory().unwrap();
    let (child, sibling, me) = (node(1), node(2), node(3));
    let from_child = comments(child, "110101/002/014/03", 2);
    let from_sibling = comments(sibling, "110101/002/015/01", 2);
    let own = comments(me, "110101/002/001/01", 1);
    let elsewhere = comments(node(4), "110101/003/001/01", 2);
    let near_miss = comments(node(5), "110101/0020/001/01", 1);
    s.commit(&admitted(child, &from_child)).unwrap();
    s.commit(&admitted(sibling, &from_sibling)).unwrap();
    s.append(&own, &[], None).unwrap();
    s.append_received(&admitted(node(99), &elsewhere), &[])
        .unwrap();
    s.append_received(&admitted(node(99), &near_miss), &[])
        .unwrap();

    let (got, cursor, _) = drain(&s, &scope("110101/002"), &child, 0, 100, 1 << 20);
    let mut want = encoded(&from_sibling);
    want.extend(encoded(&own));
    assert_eq!(
        got, want,
        "in arrival order; not the child's, not out of scope"
    );
    assert_eq!(cursor, 8, "the last row examined");

    // The sibling gets the child's events and not its own.
    let (got, _, _) = drain(&s, &scope("110101/002"), &sibling, 0, 100, 1 << 20);
    let mut want = encoded(&from_child);
    want.extend(encoded(&own));
    assert_eq!(got, want);

    // Nothing new: no events, the cursor stays, no more.
    let page = SyncStore::page(&s, &scope("110101/002"), &child, 8, 100, 1 << 20).unwrap();
    assert_eq!(
        page,
        Page {
            events: vec![],
            cursor: 8,
            more: false
        }
    );
}

#[test]
fn paging_gives_every_event_exactly_once() {
    let mut s = Store::in_memory().unwrap();
    let mut want = Vec::new();
    for n in 1..=6u8 {
        let inside = comments(node(n), "110101/002/014/03", 5);
        let outside = comments(node(n + 100), "110101/003/014/03", 3);
        s.append_received(&admitted(node(99), &inside), &[])
            .unwrap();
        s.append_received(&admitted(node(99), &outside), &[])
            .unwrap();
        want.extend(encoded(&inside));
    }
    let sc = scope("110101/002");
    let body = want[0].len();
    for (max_events, max_bytes) in [
        (1, usize::MAX),
        (4, usize::MAX),
        (7, 2 * body + 1),
        (100, 0),
    ] {
        let (got, cursor, pages) = drain(&s, &sc, &node(200), 0, max_events, max_bytes);
        assert_eq!(got, want, "max_events {max_events}, max_bytes {max_bytes}");
        assert_eq!(cursor, 48);
        assert!(pages >= want.len().div_ceil(max_events.min(max_bytes / body).max(1)));
    }
    // A page stays within max_bytes (here two events), and holds one event even when that
    // one alone is over.
    let page = SyncStore::page(&s, &sc, &node(200), 0, 100, 2 * body + 1).unwrap();
    assert_eq!((page.events.len(), page.more), (2, true));
    let page = SyncStore::page(&s, &sc, &node(200), 0, 100, 1).unwrap();
    assert_eq!((page.events.len(), page.cursor, page.more), (1, 1, true));
    // Continuing from the middle gives the rest.
    let (rest, _, _) = drain(&s, &sc, &node(200), 1, 3, usize::MAX);
    assert_eq!(rest, want[1..]);
}

/// Inserts `n` rows straight into the log (bodies are not events: only pages read them, and
/// pages do not decode), origin `origin`, seq 1..=n, all in `grid`.
fn bulk_rows(s: &Store, origin: NodeId, grid: &str, n: i64) {
    s.conn
        .execute(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?3)
             INSERT INTO events (origin, seq, incident, grid, hlc_wall, hlc_logical, body)
             SELECT ?1, i, x'00', ?2, 0, 0, x'0102' FROM k",
            params![&origin.0[..], grid, n],
        )
        .unwrap();
}

#[test]
fn a_page_examines_a_bounded_number_of_rows() {
    let mut s = Store::in_memory().unwrap();
    bulk_rows(&s, node(1), "110101/003/001/01", PAGE_EXAMINE as i64 + 5);
    let wanted = comments(node(2), "110101/002/014/03", 2);
    s.append_received(&admitted(node(99), &wanted), &[])
        .unwrap();
    let sc = scope("110101/002");

    let first = SyncStore::page(&s, &sc, &node(9), 0, 100, 1 << 20).unwrap();
    assert_eq!(
        first,
        Page {
            events: vec![],
            cursor: PAGE_EXAMINE as u64,
            more: true
        },
        "nothing in scope among the first rows: an empty page that moves on"
    );
    let second = SyncStore::page(&s, &sc, &node(9), first.cursor, 100, 1 << 20).unwrap();
    assert_eq!(second.events, encoded(&wanted));
    assert_eq!(
        (second.cursor, second.more),
        (PAGE_EXAMINE as u64 + 7, false)
    );
}

#[test]
fn a_page_at_a_million_events_reads_only_what_is_new() {
    let mut s = Store::in_memory().unwrap();
    bulk_rows(&s, node(1), "110101/002/001/01", 1_000_000);
    let new = comments(node(2), "110101/002/014/03", 3);
    s.append_received(&admitted(node(99), &new), &[]).unwrap();

    let page =
        SyncStore::page(&s, &scope("110101/002"), &node(9), 1_000_000, 100, 1 << 20).unwrap();
    assert_eq!(page.events, encoded(&new));
    assert_eq!((page.cursor, page.more), (1_000_003, false));

    // The same statement, measured: no full-scan step, and a handful of VM steps.
    let mut stmt = s.conn.prepare(PAGE_SQL).unwrap();
    let n = stmt
        .query_map(
            params![
                1_000_000i64,
                "110101/002",
                "110101/002/",
                "110101/0020",
                &node(9).0[..],
                (PAGE_EXAMINE + 1) as i64
            ],
            |_| Ok(()),
        )
        .unwrap()
        .count();
    assert_eq!(n, 3);
    assert_eq!(stmt.get_status(StatementStatus::FullscanStep), 0);
    let steps = stmt.get_status(StatementStatus::VmStep);
    assert!(steps < 200, "{steps} VM steps for 3 new rows");
}

/// The query plan's lines.
fn plan(s: &Store, sql: &str) -> String {
    let mut stmt = s
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap();
    let n = stmt.parameter_count();
    let rows = stmt
        .query_map(
            rusqlite::params_from_iter(vec![rusqlite::types::Null; n]),
            |r| r.get::<_, String>(3),
        )
        .unwrap();
    rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
}

#[test]
fn sync_queries_use_indexes_not_scans() {
    let s = Store::in_memory().unwrap();
    let checks = [
        (
            PAGE_SQL,
            "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)",
        ),
        (
            EVENTS_AFTER_SQL,
            "SEARCH events USING INDEX sqlite_autoindex_events_1 (origin=? AND seq>?)",
        ),
        (SCOPE_HEADS_SQL, "USING COVERING INDEX origin_grids_by_grid"),
        (
            SCOPE_HEADS_SQL,
            "SEARCH origins USING INDEX sqlite_autoindex_origins_1 (origin=?)",
        ),
        (UNSENT_SQL, "SEARCH b USING INDEX blobs_unsent (kind=?)"),
        (
            PARTIAL_SQL,
            "SEARCH blob_parts USING INDEX sqlite_autoindex_blob_parts_1 (hash=?)",
        ),
        (
            REFERENCED_SQL,
            "USING COVERING INDEX thumbs_by_thumb (thumb=?)",
        ),
        (IN_SCOPE_SQL, "USING INDEX photo_refs_by_photo (photo=?)"),
        (IN_SCOPE_SQL, "USING INDEX photo_refs_by_thumb (thumb=?)"),
        (MISSING_THUMBS_SQL, "USING INDEX photo_refs_missing_thumbs"),
        (
            crate::prune::UNSAFE_SENT_SQL,
            "SEARCH blobs_asking USING PRIMARY KEY (parent=? AND hash>?)",
        ),
        (
            crate::prune::ASK_SQL,
            "SEARCH blobs_safe USING PRIMARY KEY (hash=?)",
        ),
    ];
    for (sql, want) in checks {
        let p = plan(&s, sql);
        assert!(p.contains(want), "{sql}\nplan:\n{p}\nwanted: {want}");
        assert!(
            !p.lines()
                .any(|l| l.contains("SCAN") && l != "SCAN CONSTANT ROW"),
            "{sql}\nplan:\n{p}"
        );
    }
}

// ---- blobs ----------------------------------------------------------------------------------

#[test]
fn blob_states_follow_events_and_uploads() {
    let mut s = Store::in_memory().unwrap();
    let (photo, thumb) = (b"photo bytes".to_vec(), b"thumb".to_vec());
    let (ph, th) = (BlobHash::of(&photo), BlobHash::of(&thumb));
    assert_eq!(
        SyncStore::blob_state(&s, &ph).unwrap(),
        BlobState::Unreferenced
    );
    s.commit(&admitted(node(1), &[photo_event(node(1), &photo, &thumb)]))
        .unwrap();
    assert_eq!(SyncStore::blob_state(&s, &ph).unwrap(), BlobState::Missing);
    assert_eq!(
        SyncStore::blob_state(&s, &th).unwrap(),
        BlobState::Missing,
        "thumbnails too"
    );
    assert_eq!(
        SyncStore::blob_state(&s, &BlobHash::of(b"other")).unwrap(),
        BlobState::Unreferenced
    );
    SyncStore::blob_write(&mut s, &th, BlobKind::Thumb, 5, 0, b"thu").unwrap();
    assert_eq!(
        SyncStore::blob_state(&s, &th).unwrap(),
        BlobState::Partial { offset: 3 }
    );
    SyncStore::blob_write(&mut s, &th, BlobKind::Thumb, 5, 3, b"mb").unwrap();
    assert_eq!(
        SyncStore::blob_finish(&mut s, &th, &accept).unwrap(),
        BlobFinish::Stored
    );
    assert_eq!(SyncStore::blob_state(&s, &th).unwrap(), BlobState::Held);
    assert_eq!(s.blob(&th).unwrap(), Some(thumb));
}

#[test]
fn blob_discard_drops_a_partial_upload_and_keeps_a_held_blob() {
    let mut s = Store::in_memory().unwrap();
    let (photo, thumb) = (b"photo bytes".to_vec(), b"thumb".to_vec());
    let (ph, th) = (BlobHash::of(&photo), BlobHash::of(&thumb));
    s.commit(&admitted(node(1), &[photo_event(node(1), &photo, &thumb)]))
        .unwrap();
    SyncStore::blob_write(&mut s, &ph, BlobKind::Photo, 11, 0, b"photo").unwrap();
    assert_eq!(
        SyncStore::blob_state(&s, &ph).unwrap(),
        BlobState::Partial { offset: 5 }
    );
    SyncStore::blob_discard(&mut s, &ph).unwrap();
    assert_eq!(SyncStore::blob_state(&s, &ph).unwrap(), BlobState::Missing);
    // Nothing to discard: a no-op.
    SyncStore::blob_discard(&mut s, &ph).unwrap();
    // A blob held whole stays.
    SyncStore::blob_write(&mut s, &th, BlobKind::Thumb, 5, 0, &thumb).unwrap();
    assert_eq!(
        SyncStore::blob_finish(&mut s, &th, &accept).unwrap(),
        BlobFinish::Stored
    );
    SyncStore::blob_discard(&mut s, &th).unwrap();
    assert_eq!(s.blob(&th).unwrap(), Some(thumb));
}

#[test]
fn an_interrupted_upload_resumes_and_finish_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let hash = BlobHash::of(&photo);
    let size = photo.len() as u64;
    {
        let mut s = Store::create(&path).unwrap();
        SyncStore::blob_write(&mut s, &hash, BlobKind::Photo, size, 0, &photo[..100_000]).unwrap();
        // The connection drops here, mid-upload.
    }
    let mut s = Store::open(&path).unwrap();
    assert_eq!(
        SyncStore::blob_state(&s, &hash).unwrap(),
        BlobState::Partial { offset: 100_000 }
    );
    // Ahead of what is held: refused, naming the offsets.
    let err = SyncStore::blob_write(
        &mut s,
        &hash,
        BlobKind::Photo,
        size,
        150_000,
        &photo[150_000..200_000],
    )
    .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Internal);
    assert!(
        err.message.contains("150000") && err.message.contains("100000"),
        "{err}"
    );
    // Overlapping what is held: only the new part is stored.
    SyncStore::blob_write(
        &mut s,
        &hash,
        BlobKind::Photo,
        size,
        60_000,
        &photo[60_000..160_000],
    )
    .unwrap();
    assert_eq!(
        SyncStore::blob_state(&s, &hash).unwrap(),
        BlobState::Partial { offset: 160_000 }
    );
    // Past the size: refused.
    let err = SyncStore::blob_write(
        &mut s,
        &hash,
        BlobKind::Photo,
        size,
        160_000,
        &vec![0; 150_000],
    )
    .unwrap_err();
    assert!(err.message.contains("do not fit"), "{err}");
    SyncStore::blob_write(
        &mut s,
        &hash,
        BlobKind::Photo,
        size,
        160_000,
        &photo[160_000..],
    )
    .unwrap();
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &accept).unwrap(),
        BlobFinish::Stored
    );
    assert_eq!(s.blob(&hash).unwrap(), Some(photo.clone()));
    assert_eq!(parts(&s, &hash), 0, "the chunks are gone");
    // Done: more writes and finishes change nothing.
    SyncStore::blob_write(&mut s, &hash, BlobKind::Photo, size, 0, &photo[..10]).unwrap();
    assert_eq!(parts(&s, &hash), 0);
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &accept).unwrap(),
        BlobFinish::Stored
    );
    assert_eq!(SyncStore::blob_state(&s, &hash).unwrap(), BlobState::Held);

    // Reading it back in ranges.
    assert_eq!(
        SyncStore::read_blob(&s, &hash, 1_000, 64).unwrap(),
        Some(photo[1_000..1_064].to_vec())
    );
    assert_eq!(
        SyncStore::read_blob(&s, &hash, size - 10, 64).unwrap(),
        Some(photo[photo.len() - 10..].to_vec()),
        "fewer at its end"
    );
    assert_eq!(
        SyncStore::read_blob(&s, &hash, size + 5, 64).unwrap(),
        Some(vec![])
    );
    assert_eq!(
        SyncStore::read_blob(&s, &BlobHash::of(b"x"), 0, 64).unwrap(),
        None
    );
}

#[test]
fn resending_a_held_range_is_a_no_op() {
    let mut s = Store::in_memory().unwrap();
    let bytes = b"0123456789".to_vec();
    let hash = BlobHash::of(&bytes);
    SyncStore::blob_write(&mut s, &hash, BlobKind::Thumb, 10, 0, &bytes[..6]).unwrap();
    SyncStore::blob_write(&mut s, &hash, BlobKind::Thumb, 10, 0, &bytes[..6]).unwrap();
    SyncStore::blob_write(&mut s, &hash, BlobKind::Thumb, 10, 2, &bytes[2..4]).unwrap();
    SyncStore::blob_write(&mut s, &hash, BlobKind::Thumb, 10, 6, &[]).unwrap();
    assert_eq!(parts(&s, &hash), 1);
    assert_eq!(
        SyncStore::blob_state(&s, &hash).unwrap(),
        BlobState::Partial { offset: 6 }
    );
    SyncStore::blob_write(&mut s, &hash, BlobKind::Thumb, 10, 6, &bytes[6..]).unwrap();
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &accept).unwrap(),
        BlobFinish::Stored
    );
    assert_eq!(s.blob(&hash).unwrap(), Some(bytes));
}

#[test]
fn a_corrupted_upload_is_discarded_by_finish() {
    let mut s = Store::in_memory().unwrap();
    let photo = vec![7u8; 1000];
    let hash = BlobHash::of(&photo);
    s.commit(&admitted(node(1), &[photo_event(node(1), &photo, b"t")]))
        .unwrap();
    let mut bad = photo.clone();
    bad[700] ^= 1;
    SyncStore::blob_write(&mut s, &hash, BlobKind::Photo, 1000, 0, &bad[..500]).unwrap();
    SyncStore::blob_write(&mut s, &hash, BlobKind::Photo, 1000, 500, &bad[500..]).unwrap();
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &accept).unwrap(),
        BlobFinish::HashMismatch
    );
    assert_eq!(parts(&s, &hash), 0, "the partial is gone");
    assert_eq!(s.blob(&hash).unwrap(), None);
    assert_eq!(
        SyncStore::blob_state(&s, &hash).unwrap(),
        BlobState::Missing,
        "wanted again"
    );

    // A short upload fails too, and so does finishing with nothing uploaded.
    SyncStore::blob_write(&mut s, &hash, BlobKind::Photo, 1000, 0, &photo[..999]).unwrap();
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &accept).unwrap(),
        BlobFinish::HashMismatch
    );
    assert_eq!(parts(&s, &hash), 0);
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &accept).unwrap(),
        BlobFinish::HashMismatch
    );
}

#[test]
fn a_blob_the_check_refuses_is_discarded_and_nothing_is_stored() {
    let mut s = Store::in_memory().unwrap();
    let photo = b"GPS 39.8927N 116.4284E, not a photo".to_vec();
    let hash = BlobHash::of(&photo);
    s.commit(&admitted(node(1), &[photo_event(node(1), &photo, b"t")]))
        .unwrap();
    SyncStore::blob_write(
        &mut s,
        &hash,
        BlobKind::Photo,
        photo.len() as u64,
        0,
        &photo[..10],
    )
    .unwrap();
    SyncStore::blob_write(
        &mut s,
        &hash,
        BlobKind::Photo,
        photo.len() as u64,
        10,
        &photo[10..],
    )
    .unwrap();
    let seen = std::cell::RefCell::new(Vec::new());
    let refuse = |bytes: &[u8]| {
        seen.borrow_mut().push(bytes.to_vec());
        Err("not a JPEG image".to_owned())
    };
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &refuse).unwrap(),
        BlobFinish::Rejected("not a JPEG image".into())
    );
    assert_eq!(
        *seen.borrow(),
        vec![photo.clone()],
        "the check saw the whole blob, once"
    );
    assert_eq!(parts(&s, &hash), 0, "the partial is gone");
    assert_eq!(s.blob(&hash).unwrap(), None, "nothing stored");
    assert_eq!(
        SyncStore::blob_state(&s, &hash).unwrap(),
        BlobState::Missing,
        "still wanted: an honest upload of the same hash would be checked again"
    );
    // With nothing left, a second finish has nothing to check.
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &refuse).unwrap(),
        BlobFinish::HashMismatch
    );
    assert_eq!(seen.borrow().len(), 1);

    // Bytes that do not hash right never reach the check.
    let mut bad = photo.clone();
    bad[3] ^= 1;
    SyncStore::blob_write(&mut s, &hash, BlobKind::Photo, bad.len() as u64, 0, &bad).unwrap();
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &refuse).unwrap(),
        BlobFinish::HashMismatch
    );
    assert_eq!(seen.borrow().len(), 1);

    // The same bytes with a check that passes them are stored.
    SyncStore::blob_write(
        &mut s,
        &hash,
        BlobKind::Photo,
        photo.len() as u64,
        0,
        &photo,
    )
    .unwrap();
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &accept).unwrap(),
        BlobFinish::Stored
    );
    assert_eq!(s.blob(&hash).unwrap(), Some(photo));
    // Held: a later finish is `Stored` without asking the check again.
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &refuse).unwrap(),
        BlobFinish::Stored
    );
    assert_eq!(seen.borrow().len(), 1);
}

#[test]
fn a_partial_of_another_size_is_discarded() {
    let mut s = Store::in_memory().unwrap();
    let bytes = b"0123456789".to_vec();
    let hash = BlobHash::of(&bytes);
    SyncStore::blob_write(&mut s, &hash, BlobKind::Thumb, 99, 0, &bytes[..4]).unwrap();
    // The true size: the bogus partial could never finish, so the upload restarts.
    let err =
        SyncStore::blob_write(&mut s, &hash, BlobKind::Thumb, 10, 4, &bytes[4..]).unwrap_err();
    assert!(err.message.contains("resume at offset 0"), "{err}");
    assert_eq!(parts(&s, &hash), 0);
    SyncStore::blob_write(&mut s, &hash, BlobKind::Thumb, 10, 0, &bytes).unwrap();
    assert_eq!(
        SyncStore::blob_finish(&mut s, &hash, &accept).unwrap(),
        BlobFinish::Stored
    );
}

fn blob<'a>(bytes: &'a [u8], kind: BlobKind) -> NewBlob<'a> {
    NewBlob {
        hash: BlobHash::of(bytes),
        kind,
        bytes,
    }
}

#[test]
fn unsent_blobs_come_thumbnails_first_and_leave_once_marked() {
    let mut s = Store::in_memory().unwrap();
    let me = node(1);
    let (p1, t1, p2, t2) = (&b"photo-1"[..], &b"t-1"[..], &b"photo-22"[..], &b"t-22"[..]);
    for (bytes, kind) in [
        (p1, BlobKind::Photo),
        (t1, BlobKind::Thumb),
        (p2, BlobKind::Photo),
        (t2, BlobKind::Thumb),
    ] {
        s.append(&[], &[blob(bytes, kind)], None).unwrap();
    }
    let info = |bytes: &[u8], kind| BlobInfo {
        hash: BlobHash::of(bytes),
        kind,
        size: bytes.len() as u64,
    };
    let (parent, other) = (node(50), node(51));
    assert_eq!(
        SyncStore::unsent_blobs(&s, &parent, 10).unwrap(),
        vec![
            info(t1, BlobKind::Thumb),
            info(t2, BlobKind::Thumb),
            info(p1, BlobKind::Photo),
            info(p2, BlobKind::Photo)
        ]
    );
    assert_eq!(
        SyncStore::unsent_blobs(&s, &parent, 3).unwrap(),
        vec![
            info(t1, BlobKind::Thumb),
            info(t2, BlobKind::Thumb),
            info(p1, BlobKind::Photo)
        ]
    );
    assert_eq!(SyncStore::unsent_blobs(&s, &parent, 0).unwrap(), vec![]);

    SyncStore::mark_blob_sent(&mut s, &parent, &BlobHash::of(t1)).unwrap();
    SyncStore::mark_blob_sent(&mut s, &parent, &BlobHash::of(p2)).unwrap();
    SyncStore::mark_blob_sent(&mut s, &parent, &BlobHash::of(p2)).unwrap();
    assert_eq!(
        SyncStore::unsent_blobs(&s, &parent, 10).unwrap(),
        vec![info(t2, BlobKind::Thumb), info(p1, BlobKind::Photo)]
    );
    let pending = s.pending(&me).unwrap();
    assert_eq!(
        (pending.blobs, pending.blob_bytes),
        (2, (t2.len() + p1.len()) as u64)
    );

    // Another parent holds none of them yet.
    assert_eq!(SyncStore::unsent_blobs(&s, &other, 10).unwrap().len(), 4);
    SyncStore::mark_blob_sent(&mut s, &other, &BlobHash::of(t2)).unwrap();
    assert_eq!(
        SyncStore::unsent_blobs(&s, &other, 10).unwrap(),
        vec![
            info(t1, BlobKind::Thumb),
            info(p1, BlobKind::Photo),
            info(p2, BlobKind::Photo)
        ]
    );
    // Pending now counts against the new parent; the first one's record is kept.
    assert_eq!(s.pending(&me).unwrap().blobs, 3);
    assert_eq!(
        SyncStore::unsent_blobs(&s, &parent, 10).unwrap(),
        vec![info(t2, BlobKind::Thumb), info(p1, BlobKind::Photo)]
    );
}

// ---- child side -----------------------------------------------------------------------------

#[test]
fn origins_and_events_after() {
    let mut s = Store::in_memory().unwrap();
    let (a, gap) = (node(1), node(2));
    let events = comments(a, "110101/002/014/03", 5);
    s.append(
        &[events[3].clone(), events[0].clone(), events[1].clone()],
        &[],
        None,
    )
    .unwrap();
    s.append(&comments(gap, "110101/002/014/03", 3)[2..], &[], None)
        .unwrap();
    assert_eq!(s.contiguous(&gap).unwrap(), 0);
    assert_eq!(
        SyncStore::origins(&s,).unwrap(),
        {
            let mut v = vec![a, gap];
            v.sort();
            v
        },
        "an origin with a gap too"
    );
    assert_eq!(
        SyncStore::events_after(&s, &a, 0, 10).unwrap(),
        vec![events[0].clone(), events[1].clone(), events[3].clone()],
        "in sequence order"
    );
    assert_eq!(
        SyncStore::events_after(&s, &a, 1, 1).unwrap(),
        vec![events[1].clone()]
    );
    assert_eq!(SyncStore::events_after(&s, &a, 4, 10).unwrap(), vec![]);
    assert_eq!(
        SyncStore::events_after(&s, &node(3), 0, 10).unwrap(),
        vec![]
    );
}

#[test]
fn commit_download_stores_and_moves_the_cursor_together() {
    let mut s = Store::in_memory().unwrap();
    let parent = node(50);
    assert_eq!(SyncStore::down_cursor(&s, &parent).unwrap(), 0);
    let batch = comments(node(2), "110101/002/014/03", 2);
    assert_eq!(
        SyncStore::commit_download(&mut s, &admitted(parent, &batch), 17).unwrap(),
        Committed {
            stored: 2,
            duplicates: 0
        }
    );
    assert_eq!(SyncStore::down_cursor(&s, &parent).unwrap(), 17);
    assert_eq!(via_of(&s, &batch[0]), Some(parent.0.to_vec()));
    assert_eq!(
        SyncStore::down_cursor(&s, &node(51)).unwrap(),
        0,
        "per parent"
    );

    // A refused batch moves nothing.
    let fine = comments(node(4), "110101/002/014/03", 1);
    let mut forged = batch[0].clone();
    forged.author = "x".into();
    resign(&mut forged);
    let err = SyncStore::commit_download(&mut s, &admitted(parent, &[fine[0].clone(), forged]), 40)
        .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Equivocation);
    assert_eq!(SyncStore::down_cursor(&s, &parent).unwrap(), 17);
    assert!(!s.has_event(&fine[0].id()).unwrap());

    // An empty page still moves the cursor; it never goes back.
    SyncStore::commit_download(&mut s, &admitted(parent, &[]), 30).unwrap();
    assert_eq!(SyncStore::down_cursor(&s, &parent).unwrap(), 30);
    SyncStore::commit_download(&mut s, &admitted(parent, &batch), 5).unwrap();
    assert_eq!(SyncStore::down_cursor(&s, &parent).unwrap(), 30);
}

#[test]
fn own_acked_clears_pending_events() {
    let mut s = Store::in_memory().unwrap();
    let me = node(1);
    s.append(&comments(me, "110101/002/014/03", 3), &[], None)
        .unwrap();
    assert_eq!(s.pending(&me).unwrap().events, 3);
    SyncStore::own_acked(&mut s, &node(50), 2).unwrap();
    assert_eq!(s.pending(&me).unwrap().events, 1);
    SyncStore::own_acked(&mut s, &node(50), 1).unwrap();
    assert_eq!(s.pending(&me).unwrap().events, 1, "never back");
}

// ---- blobs down (PROTOCOL.md §8.11) ---------------------------------------------------------

/// A photo add of `origin`, sequence number `seq`, on incident `incident` in `grid_code`.
fn photo_add(
    origin: NodeId,
    seq: u64,
    incident: u8,
    grid_code: &str,
    photo: &[u8],
    thumb: &[u8],
) -> Event {
    writer(origin, "w", seq, Hlc::default()).write(
        IncidentId::new_v7(NOW, [incident; 10]),
        &grid(grid_code),
        Payload::PhotoAdded(photo_meta(photo, thumb)),
        NOW,
    )
}

#[test]
fn a_blob_is_in_a_scope_when_a_photo_event_of_that_scope_names_it() {
    let mut s = Store::in_memory().unwrap();
    let a = node(1);
    let added = photo_add(a, 1, 1, "110101/002/014/03", b"photo", b"thumb");
    s.append_received(&admitted(a, std::slice::from_ref(&added)), &[])
        .unwrap();
    for (hash, sc, yes) in [
        (BlobHash::of(b"photo"), "110101/002/014/03", true),
        (BlobHash::of(b"thumb"), "110101/002/014/03", true),
        (BlobHash::of(b"photo"), "110101/002", true),
        (BlobHash::of(b"photo"), "110101/002/014/04", false),
        (BlobHash::of(b"photo"), "110101/00", false),
        (BlobHash::of(b"other"), "110101", false),
    ] {
        assert_eq!(
            SyncStore::blob_in_scope(&s, &hash, &scope(sc)).unwrap(),
            yes,
            "{sc}"
        );
    }
    assert_eq!(
        SyncStore::held_blob(&s, &BlobHash::of(b"photo")).unwrap(),
        None
    );
    s.append(&[], &[blob(b"photo", BlobKind::Photo)], None)
        .unwrap();
    assert_eq!(
        SyncStore::held_blob(&s, &BlobHash::of(b"photo")).unwrap(),
        Some(BlobInfo {
            hash: BlobHash::of(b"photo"),
            kind: BlobKind::Photo,
            size: 5
        })
    );
    assert_eq!(
        s.named_blob_kind(&BlobHash::of(b"photo")).unwrap(),
        Some(BlobKind::Photo)
    );
    assert_eq!(
        s.named_blob_kind(&BlobHash::of(b"thumb")).unwrap(),
        Some(BlobKind::Thumb)
    );
    assert_eq!(s.named_blob_kind(&BlobHash::of(b"other")).unwrap(), None);
}

#[test]
fn blobs_to_fetch_are_the_wants_then_the_missing_thumbnails_of_visible_photos() {
    let mut s = Store::in_memory().unwrap();
    let a = node(1);
    let g = "110101/002/014/03";
    let first = photo_add(a, 1, 1, g, b"p1", b"t1");
    let second = photo_add(a, 2, 1, g, b"p2", b"t2");
    let elsewhere = photo_add(a, 3, 2, "110101/002/014/04", b"p3", b"t3");
    let held = photo_add(a, 4, 1, g, b"p4", b"t4");
    s.append_received(&admitted(a, &[first.clone(), second, elsewhere, held]), &[])
        .unwrap();
    s.append(&[], &[blob(b"t4", BlobKind::Thumb)], None)
        .unwrap();
    let fetch = |s: &Store, limit| SyncStore::blobs_to_fetch(s, &scope(g), limit).unwrap();
    let thumb = |b: &[u8]| (BlobHash::of(b), BlobKind::Thumb);
    assert_eq!(fetch(&s, 10), vec![thumb(b"t1"), thumb(b"t2")]);
    assert_eq!(fetch(&s, 1), vec![thumb(b"t1")]);

    // The user wants a full photo and a thumbnail already listed: wants first, each once.
    assert!(s
        .want_blob(&BlobHash::of(b"p2"), BlobKind::Photo, NOW)
        .unwrap());
    assert!(s
        .want_blob(&BlobHash::of(b"t2"), BlobKind::Thumb, NOW + 1)
        .unwrap());
    assert!(
        !s.want_blob(&BlobHash::of(b"p2"), BlobKind::Photo, NOW)
            .unwrap(),
        "once"
    );
    assert!(
        !s.want_blob(&BlobHash::of(b"t4"), BlobKind::Thumb, NOW)
            .unwrap(),
        "held"
    );
    assert_eq!(
        fetch(&s, 10),
        vec![
            (BlobHash::of(b"p2"), BlobKind::Photo),
            thumb(b"t2"),
            thumb(b"t1")
        ]
    );

    // The first photo is removed: its thumbnail is no longer fetched.
    let removal = writer(a, "w", 5, Hlc::default()).write(
        first.incident,
        &grid(g),
        Payload::PhotoRemoved {
            hash: BlobHash::of(b"p1"),
            removes: vec![first.id()],
        },
        NOW,
    );
    s.append_received(&admitted(a, &[removal]), &[]).unwrap();
    assert_eq!(
        fetch(&s, 10),
        vec![(BlobHash::of(b"p2"), BlobKind::Photo), thumb(b"t2")]
    );

    // Stored, however it came (a fetch's finish here): neither wanted nor missing any more.
    for (bytes, kind) in [(&b"p2"[..], BlobKind::Photo), (&b"t2"[..], BlobKind::Thumb)] {
        let h = BlobHash::of(bytes);
        SyncStore::blob_write(&mut s, &h, kind, bytes.len() as u64, 0, bytes).unwrap();
        assert_eq!(
            SyncStore::blob_finish(&mut s, &h, &accept).unwrap(),
            BlobFinish::Stored
        );
    }
    assert!(fetch(&s, 10).is_empty());
    assert!(!s.is_wanted(&BlobHash::of(b"p2")).unwrap());
    assert!(s
        .want_blob(&BlobHash::of(b"p3"), BlobKind::Photo, NOW)
        .unwrap());
    assert!(s.unwant_blob(&BlobHash::of(b"p3")).unwrap());
    assert!(fetch(&s, 10).is_empty());
}

#[test]
fn a_removal_before_its_add_hides_the_add() {
    let mut s = Store::in_memory().unwrap();
    let a = node(1);
    let g = "110101/002/014/03";
    let add = photo_add(a, 1, 1, g, b"p", b"t");
    let removal = writer(a, "w", 2, Hlc::default()).write(
        add.incident,
        &grid(g),
        Payload::PhotoRemoved {
            hash: BlobHash::of(b"p"),
            removes: vec![add.id()],
        },
        NOW,
    );
    s.append_received(&admitted(a, &[removal]), &[]).unwrap();
    s.append_received(&admitted(a, &[add]), &[]).unwrap();
    assert!(SyncStore::blobs_to_fetch(&s, &scope(g), 10)
        .unwrap()
        .is_empty());
    // Still in scope: the child may hold the event, removed or not.
    assert!(SyncStore::blob_in_scope(&s, &BlobHash::of(b"p"), &scope(g)).unwrap());
}

#[test]
fn photos_stored_before_schema_7_are_indexed_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v5.db");
    let a = node(1);
    let g = "110101/002/014/03";
    {
        let mut s = Store::create(&path).unwrap();
        let add = photo_add(a, 1, 1, g, b"p", b"t");
        let gone = photo_add(a, 2, 1, g, b"q", b"u");
        let removal = writer(a, "w", 3, Hlc::default()).write(
            add.incident,
            &grid(g),
            Payload::PhotoRemoved {
                hash: BlobHash::of(b"q"),
                removes: vec![gone.id()],
            },
            NOW,
        );
        s.append_received(&admitted(a, &[add, gone, removal]), &[])
            .unwrap();
        // As the previous build left it: no index rows, and the migration's marker.
        s.conn.execute("DELETE FROM photo_refs", []).unwrap();
        s.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('index_photo_refs', x'01')",
                [],
            )
            .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert!(s.meta("index_photo_refs").unwrap().is_none(), "done once");
    assert!(SyncStore::blob_in_scope(&s, &BlobHash::of(b"q"), &scope(g)).unwrap());
    assert_eq!(
        SyncStore::blobs_to_fetch(&s, &scope(g), 10).unwrap(),
        vec![(BlobHash::of(b"t"), BlobKind::Thumb)]
    );
}
