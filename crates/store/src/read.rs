//! Reads of what the log holds: incidents (their materialised state), events, per-origin
//! progress, counts and what is pending upstream, and the paged reads sync sessions make
//! (a parent's download pages, a child's events after a head).
//!
//! Every sync read costs what is new or asked, never the size of the store: a download page is
//! a rowid range scan of `events` after the child's cursor, bounded by [`PAGE_EXAMINE`] rows;
//! `events_after` walks the `(origin, seq)` index.

use std::path::Path;

use gridsync_core::codec;
use gridsync_core::{Event, EventId, IncidentId, IncidentState, NodeId, Scope};
use gridsync_proto::Page;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{corrupt_event, sql};
use crate::meta::{ACKED_OWN_SEQ, UPSTREAM};
use crate::write::decode_or_rebuild;
use crate::{one, sql_int, Result, Store};

/// The most rows of the log one download page examines, so a page over a scope with few
/// events in a large log still answers in bounded time (with `more` set).
pub const PAGE_EXAMINE: usize = 10_000;

/// Sizes of what a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: u64,
    pub incidents: u64,
    pub blobs: u64,
}

/// What is waiting to go upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// This node's own events the upstream has not acknowledged.
    pub events: u64,
    /// Blobs not yet sent upstream.
    pub blobs: u64,
    /// Their total size in bytes.
    pub blob_bytes: u64,
}

// The scope test, in SQL: a grid lies in scope `s` iff it is `s` or lies in [`s/`, `s0`)
// (the three texts `scope_range` makes). Segments are ASCII letters and digits and '0' follows '/' in ASCII,
// so that range holds exactly the texts starting with `s/`: `110101/00` does not match
// `110101/002/014/03`. Unlike LIKE, it has no wildcards to escape and can use an index.

/// `(s, s/, s0)` for the scope test above.
pub(crate) fn scope_range(scope: &Scope) -> (String, String, String) {
    let s = scope.as_str();
    (s.to_owned(), format!("{s}/"), format!("{s}0"))
}

/// One download page: the rows after the cursor in arrival (rowid) order; the body only of
/// those in scope (?2..?4) and not received from the asking child (?5).
pub(crate) const PAGE_SQL: &str = "SELECT local_seq,
         CASE WHEN (grid = ?2 OR (grid >= ?3 AND grid < ?4)) AND via IS NOT ?5 THEN body END
     FROM events WHERE local_seq > ?1 ORDER BY local_seq LIMIT ?6";

/// An origin's events after a sequence number, through the `(origin, seq)` index.
pub(crate) const EVENTS_AFTER_SQL: &str =
    "SELECT body FROM events WHERE origin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";

/// Every stored event of incident `id`, in arrival order.
pub(crate) fn events_of(conn: &Connection, path: &Path, id: &IncidentId) -> Result<Vec<Event>> {
    let mut stmt = conn
        .prepare_cached("SELECT body FROM events WHERE incident = ?1 ORDER BY local_seq")
        .map_err(sql(path, "reading events"))?;
    let rows = stmt
        .query_map([&id.0.as_bytes()[..]], |r| r.get::<_, Vec<u8>>(0))
        .map_err(sql(path, "reading events"))?;
    let mut out = Vec::new();
    for row in rows {
        let body = row.map_err(sql(path, "reading events"))?;
        out.push(codec::decode_event(&body).map_err(corrupt_event(path))?);
    }
    Ok(out)
}

impl Store {
    /// One incident's state.
    pub fn incident(&self, id: &IncidentId) -> Result<Option<IncidentState>> {
        let bytes: Option<Vec<u8>> = one(
            &self.conn,
            "SELECT state FROM incidents WHERE id = ?1",
            [&id.0.as_bytes()[..]],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("reading an incident"))?;
        bytes
            .map(|b| decode_or_rebuild(&self.conn, &self.path, id, &b))
            .transpose()
    }

    /// Every incident, oldest report first.
    pub fn incidents(&self) -> Result<Vec<IncidentState>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, state FROM incidents ORDER BY created_ms, id")
            .map_err(self.err("listing incidents"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(self.err("listing incidents"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, state) = row.map_err(self.err("listing incidents"))?;
            let id = uuid::Uuid::from_slice(&id)
                .map(IncidentId)
                .map_err(|_| self.corrupt("an incident id is not 16 bytes".into()))?;
            out.push(decode_or_rebuild(&self.conn, &self.path, &id, &state)?);
        }
        Ok(out)
    }

    /// Every stored event of one incident, in arrival order.
    pub fn events_of(&self, id: &IncidentId) -> Result<Vec<Event>> {
        events_of(&self.conn, &self.path, id)
    }

    /// Whether event `id` is stored.
    pub fn has_event(&self, id: &EventId) -> Result<bool> {
        one(
            &self.conn,
            "SELECT 1 FROM events WHERE origin = ?1 AND seq = ?2",
            params![&id.origin.0[..], id.seq as i64],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(self.err("reading an event"))
    }

    /// Event `id`, if stored.
    pub fn event(&self, id: &EventId) -> Result<Option<Event>> {
        let body: Option<Vec<u8>> = one(
            &self.conn,
            "SELECT body FROM events WHERE origin = ?1 AND seq = ?2",
            params![&id.origin.0[..], id.seq as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("reading an event"))?;
        body.map(|b| codec::decode_event(&b).map_err(corrupt_event(&self.path)))
            .transpose()
    }

    /// SQLite's `data_version`: it changes when another connection (another process, or
    /// another [`Store`] on the same file) commits, and not for this connection's own commits.
    /// A follower polls it to notice what the app recorded meanwhile.
    pub fn data_version(&self) -> Result<i64> {
        one(&self.conn, "PRAGMA data_version", [], |r| r.get(0))
            .map_err(self.err("reading the data version"))
    }

    /// Per origin, the highest sequence number up to which every event is held.
    pub fn contiguous(&self, origin: &NodeId) -> Result<u64> {
        one(
            &self.conn,
            "SELECT contiguous FROM origins WHERE origin = ?1",
            [&origin.0[..]],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|v| v.unwrap_or(0) as u64)
        .map_err(self.err("reading progress"))
    }

    /// How much the store holds.
    pub fn counts(&self) -> Result<Counts> {
        one(&self.conn,
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM incidents), (SELECT COUNT(*) FROM blobs)",
                [],
                |r| {
                    Ok(Counts {
                        events: r.get::<_, i64>(0)? as u64,
                        incidents: r.get::<_, i64>(1)? as u64,
                        blobs: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .map_err(self.err("counting"))
    }

    /// What is waiting to go upstream: own events past the upstream's acknowledgement, and
    /// blobs not yet sent.
    pub fn pending(&self, own: &NodeId) -> Result<Pending> {
        let acked = self.cursor(UPSTREAM, ACKED_OWN_SEQ)?;
        one(
            &self.conn,
            "SELECT (SELECT COUNT(*) FROM events WHERE origin = ?1 AND seq > ?2),
                        (SELECT COUNT(*) FROM blobs WHERE sent_upstream = 0),
                        (SELECT COALESCE(SUM(size), 0) FROM blobs WHERE sent_upstream = 0)",
            params![&own.0[..], acked as i64],
            |r| {
                Ok(Pending {
                    events: r.get::<_, i64>(0)? as u64,
                    blobs: r.get::<_, i64>(1)? as u64,
                    blob_bytes: r.get::<_, i64>(2)? as u64,
                })
            },
        )
        .map_err(self.err("counting pending"))
    }

    /// A download page for a child of `scope` (`except`: the child, whose own uploads are not
    /// sent back), after arrival sequence `cursor`.
    ///
    /// Examines at most [`PAGE_EXAMINE`] rows. The page holds at least one event when any is
    /// found, and never more than `max_bytes` of bodies unless its one event alone is larger.
    /// `cursor` is the arrival sequence of the last row examined (as given when none was);
    /// `more` is set when the page stopped before the end of the log.
    pub(crate) fn page(
        &self,
        scope: &Scope,
        except: &NodeId,
        cursor: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Page> {
        let (exact, lo, hi) = scope_range(scope);
        let max_events = max_events.max(1);
        let mut stmt = self
            .conn
            .prepare_cached(PAGE_SQL)
            .map_err(self.err("reading a page"))?;
        let mut rows = stmt
            .query(params![
                sql_int(cursor),
                exact,
                lo,
                hi,
                &except.0[..],
                (PAGE_EXAMINE + 1) as i64
            ])
            .map_err(self.err("reading a page"))?;
        let mut page = Page {
            events: Vec::new(),
            cursor,
            more: false,
        };
        let (mut examined, mut bytes) = (0, 0usize);
        while let Some(row) = rows.next().map_err(self.err("reading a page"))? {
            // A row is there: if this page is full, it is for the next one.
            if examined == PAGE_EXAMINE || page.events.len() >= max_events {
                page.more = true;
                break;
            }
            let at: i64 = row.get(0).map_err(self.err("reading a page"))?;
            let body: Option<Vec<u8>> = row.get(1).map_err(self.err("reading a page"))?;
            if let Some(body) = body {
                // Never over `max_bytes`, except one event alone that is larger.
                if !page.events.is_empty() && bytes.saturating_add(body.len()) > max_bytes {
                    page.more = true;
                    break;
                }
                bytes += body.len();
                page.events.push(body);
            }
            examined += 1;
            page.cursor = self.unsigned(at, "an event's arrival sequence")?;
        }
        Ok(page)
    }

    /// Every origin with a stored event.
    pub(crate) fn origins(&self) -> Result<Vec<NodeId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT origin FROM origins ORDER BY origin")
            .map_err(self.err("listing origins"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(self.err("listing origins"))?;
        let mut out = Vec::new();
        for row in rows {
            let origin = row.map_err(self.err("listing origins"))?;
            out.push(NodeId(self.bytes32(origin, "an origin")?));
        }
        Ok(out)
    }

    /// Up to `limit` of `origin`'s events after sequence number `after`, in sequence order.
    pub(crate) fn events_after(
        &self,
        origin: &NodeId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let mut stmt = self
            .conn
            .prepare_cached(EVENTS_AFTER_SQL)
            .map_err(self.err("reading events"))?;
        let rows = stmt
            .query_map(
                params![&origin.0[..], sql_int(after), sql_int(limit as u64)],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .map_err(self.err("reading events"))?;
        let mut out = Vec::new();
        for row in rows {
            let body = row.map_err(self.err("reading events"))?;
            out.push(codec::decode_event(&body).map_err(corrupt_event(&self.path))?);
        }
        Ok(out)
    }
}
