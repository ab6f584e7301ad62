//! What an operator reads about a running relay (`gridsync-relay status`) and the online
//! backup: each child's last contact and backlog (`peer_contact`, schema 9), when the upstream
//! last acknowledged a batch (`upstream_acks`), the storage used, and a consistent copy of the
//! store taken while other connections write.
//!
//! The contact facts are written by the relay at each session's start and end (one small
//! write, never per event), so they survive restarts and a second process reads them.

use std::path::{Path, PathBuf};

use gridsync_core::{NodeId, Scope};
use rusqlite::{params, OptionalExtension};

use crate::read::scope_range;
use crate::{exec, one, sql_int, Result, Store, StoreError};

/// A child's contact with this relay, as recorded at its sessions' starts and ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerContact {
    pub node: NodeId,
    /// When its first session here started, Unix ms.
    pub first_ms: u64,
    /// When a session of it last started or ended, Unix ms.
    pub last_ms: u64,
    /// Sessions it started here (granted ones: its `Hello` was accepted).
    pub sessions: u64,
    /// Events it sent here that were stored (duplicates not counted), over all its sessions.
    pub events_in: u64,
    /// The download position it last reached: the arrival cursor of the last `Down` page this
    /// relay sent it (`None`: it never downloaded).
    pub down_cursor: Option<u64>,
}

/// The bytes a store takes on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageUse {
    /// The database file.
    pub db_bytes: u64,
    /// Its write-ahead log (`-wal`; 0 when absent).
    pub wal_bytes: u64,
    /// Its shared-memory index (`-shm`; 0 when absent).
    pub shm_bytes: u64,
    /// Bytes of the blobs held whole (inside the database file).
    pub blob_bytes: u64,
    /// Bytes of unfinished uploads and fetches held (inside the database file).
    pub partial_bytes: u64,
}

/// Events of a scope that arrived after a cursor and did not come from the node asked about:
/// what that node's next download would bring. Through `events_by_grid (grid, local_seq)`.
const BACKLOG_SQL: &str = "SELECT COUNT(*) FROM events
     WHERE (grid = ?2 OR (grid >= ?3 AND grid < ?4)) AND local_seq > ?1 AND via IS NOT ?5";

impl Store {
    /// Records that a session of `node` started at `now_ms`: one more session, last contact
    /// now (the row is made at its first session).
    pub fn contact_started(&mut self, node: &NodeId, now_ms: u64) -> Result<()> {
        exec(
            &self.conn,
            "INSERT INTO peer_contact (node, first_ms, last_ms, sessions, events_in, down_cursor)
             VALUES (?1, ?2, ?2, 1, 0, NULL)
             ON CONFLICT (node) DO UPDATE SET last_ms = MAX(last_ms, excluded.last_ms),
                 sessions = sessions + 1",
            params![&node.0[..], sql_int(now_ms)],
        )
        .map_err(self.err("recording a peer's contact"))?;
        Ok(())
    }

    /// Records that a session of `node` ended at `now_ms`, having stored `events_in` events it
    /// sent, and (if it downloaded) having reached download position `down_cursor`.
    pub fn contact_ended(
        &mut self,
        node: &NodeId,
        now_ms: u64,
        events_in: u64,
        down_cursor: Option<u64>,
    ) -> Result<()> {
        exec(
            &self.conn,
            "INSERT INTO peer_contact (node, first_ms, last_ms, sessions, events_in, down_cursor)
             VALUES (?1, ?2, ?2, 0, ?3, ?4)
             ON CONFLICT (node) DO UPDATE SET last_ms = MAX(last_ms, excluded.last_ms),
                 events_in = events_in + excluded.events_in,
                 down_cursor = COALESCE(excluded.down_cursor, down_cursor)",
            params![
                &node.0[..],
                sql_int(now_ms),
                sql_int(events_in),
                down_cursor.map(sql_int)
            ],
        )
        .map_err(self.err("recording a peer's contact"))?;
        Ok(())
    }

    /// The recorded contact of every child that ever had a session here, by node id.
    pub fn contacts(&self) -> Result<Vec<PeerContact>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT node, first_ms, last_ms, sessions, events_in, down_cursor
                 FROM peer_contact ORDER BY node",
            )
            .map_err(self.err("reading peer contacts"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })
            .map_err(self.err("reading peer contacts"))?;
        let mut out = Vec::new();
        for row in rows {
            let (node, first, last, sessions, events_in, cursor) =
                row.map_err(self.err("reading peer contacts"))?;
            out.push(PeerContact {
                node: NodeId(self.bytes32(node, "a peer contact's node id")?),
                first_ms: self.unsigned(first, "a peer contact's first time")?,
                last_ms: self.unsigned(last, "a peer contact's last time")?,
                sessions: self.unsigned(sessions, "a peer contact's sessions")?,
                events_in: self.unsigned(events_in, "a peer contact's events")?,
                down_cursor: cursor
                    .map(|c| self.unsigned(c, "a peer contact's download position"))
                    .transpose()?,
            });
        }
        Ok(out)
    }

    /// A child's backlog: the events of its `scope` committed here after download position
    /// `cursor` (0: from the start) that did not come from `node` itself, i.e. what its next
    /// download brings.
    pub fn backlog(&self, node: &NodeId, scope: &Scope, cursor: u64) -> Result<u64> {
        let (exact, lo, hi) = scope_range(scope);
        let n: i64 = one(
            &self.conn,
            BACKLOG_SQL,
            params![sql_int(cursor), exact, lo, hi, &node.0[..]],
            |r| r.get(0),
        )
        .map_err(self.err("counting a peer's backlog"))?;
        self.unsigned(n, "a backlog")
    }

    /// Records that the parent `parent` acknowledged a batch of this node's at `now_ms`.
    pub fn upstream_acked(&mut self, parent: &NodeId, now_ms: u64) -> Result<()> {
        exec(
            &self.conn,
            "INSERT INTO upstream_acks (parent, last_ack_ms) VALUES (?1, ?2)
             ON CONFLICT (parent) DO UPDATE SET
                 last_ack_ms = MAX(last_ack_ms, excluded.last_ack_ms)",
            params![&parent.0[..], sql_int(now_ms)],
        )
        .map_err(self.err("recording an upstream acknowledgement"))?;
        Ok(())
    }

    /// The latest acknowledgement from any parent: which, and when (Unix ms); `None` if no
    /// parent ever acknowledged anything.
    pub fn last_upstream_ack(&self) -> Result<Option<(NodeId, u64)>> {
        let row: Option<(Vec<u8>, i64)> = one(
            &self.conn,
            "SELECT parent, last_ack_ms FROM upstream_acks ORDER BY last_ack_ms DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err("reading upstream acknowledgements"))?;
        row.map(|(p, at)| {
            Ok((
                NodeId(self.bytes32(p, "an upstream acknowledgement's parent")?),
                self.unsigned(at, "an upstream acknowledgement's time")?,
            ))
        })
        .transpose()
    }

    /// The bytes this store takes: its files (the database, `-wal`, `-shm`) and, inside the
    /// database, its blobs and partial blobs.
    pub fn storage_use(&self) -> Result<StorageUse> {
        let size = |suffix: &str| -> Result<u64> {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            match std::fs::metadata(PathBuf::from(p)) {
                Ok(m) => Ok(m.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(StoreError::Io {
                    path: self.path.clone(),
                    context: "reading the store's file size",
                    error: e,
                }),
            }
        };
        let (blobs, parts): (i64, i64) = one(
            &self.conn,
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs),
                    (SELECT COALESCE(SUM(length(data)), 0) FROM blob_parts)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(self.err("summing blob sizes"))?;
        Ok(StorageUse {
            db_bytes: size("")?,
            wal_bytes: size("-wal")?,
            shm_bytes: size("-shm")?,
            blob_bytes: self.unsigned(blobs, "the blobs' size")?,
            partial_bytes: self.unsigned(parts, "the partial blobs' size")?,
        })
    }

    /// Copies the store, consistent as of one instant, to the new file `to`, while other
    /// connections (a running relay) go on writing: SQLite's `VACUUM INTO` a temporary file
    /// beside it (`to` with `.tmp` appended; a leftover one from an interrupted backup is
    /// replaced), synced to disk, then linked into place. Refuses ([`StoreError::Exists`]) if
    /// `to` exists, and never overwrites it, even if it appears meanwhile.
    pub fn backup(&self, to: &Path) -> Result<()> {
        if to.exists() {
            return Err(StoreError::Exists {
                path: to.to_owned(),
            });
        }
        let mut tmp = to.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let io = |context: &'static str, path: &Path| {
            let path = path.to_owned();
            move |error| StoreError::Io {
                path,
                context,
                error,
            }
        };
        match std::fs::remove_file(&tmp) {
            Ok(()) => tracing::info!(path = %tmp.display(), "removed a leftover backup file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing a leftover backup file", &tmp)(e)),
        }
        let text = tmp.to_str().ok_or_else(|| StoreError::Io {
            path: tmp.clone(),
            context: "naming the backup file",
            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not UTF-8"),
        })?;
        self.conn
            .execute("VACUUM INTO ?1", [text])
            .map_err(self.err("copying the store"))?;
        let done = (|| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io("syncing the backup", &tmp))?;
            // A hard link never replaces an existing file: `to` appearing meanwhile is refused.
            std::fs::hard_link(&tmp, to).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    StoreError::Exists {
                        path: to.to_owned(),
                    }
                } else {
                    io("putting the backup in place", to)(e)
                }
            })?;
            if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io("syncing the backup's directory", dir))?;
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&tmp);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Identity;
    use gridsync_proto::Role;

    fn relay(dir: &Path) -> Store {
        let mut s = Store::create(&dir.join("relay.db")).expect("a store");
        s.set_identity(&Identity {
            node_id: NodeId::from_secret(&[5; 32]),
            secret: [5; 32],
            name: "street-002".into(),
            role: Role::Street,
            scope: None,
        })
        .expect("an identity");
        s
    }

    #[test]
    fn contacts_add_up_sessions_and_events_and_keep_the_last_download_position() {
        let dir = tempfile::tempdir().expect("a dir");
        let mut s = relay(dir.path());
        let a = NodeId([1; 32]);
        assert!(s.contacts().expect("contacts").is_empty());
        s.contact_started(&a, 1_000).expect("start");
        s.contact_ended(&a, 1_500, 3, Some(7)).expect("end");
        s.contact_started(&a, 2_000).expect("start");
        // A session that did not download keeps the position reached before.
        s.contact_ended(&a, 2_500, 2, None).expect("end");
        assert_eq!(
            s.contacts().expect("contacts"),
            vec![PeerContact {
                node: a,
                first_ms: 1_000,
                last_ms: 2_500,
                sessions: 2,
                events_in: 5,
                down_cursor: Some(7),
            }]
        );
    }

    #[test]
    fn the_last_upstream_ack_is_the_latest_and_storage_counts_the_files() {
        let dir = tempfile::tempdir().expect("a dir");
        let mut s = relay(dir.path());
        assert_eq!(s.last_upstream_ack().expect("read"), None);
        let p = NodeId([2; 32]);
        s.upstream_acked(&p, 5_000).expect("ack");
        s.upstream_acked(&p, 4_000).expect("an older ack");
        assert_eq!(s.last_upstream_ack().expect("read"), Some((p, 5_000)));
        let used = s.storage_use().expect("storage");
        assert!(used.db_bytes > 0, "{used:?}");
        assert_eq!((used.blob_bytes, used.partial_bytes), (0, 0));
    }

    #[test]
    fn a_backup_opens_as_the_same_store_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("a dir");
        let mut s = relay(dir.path());
        s.contact_started(&NodeId([1; 32]), 1_000).expect("start");
        let to = dir.path().join("backup.db");
        s.backup(&to).expect("a backup");
        let copy = Store::open(&to).expect("the copy opens as a store");
        assert_eq!(copy.identity().expect("identity").name, "street-002");
        assert_eq!(copy.contacts().expect("contacts").len(), 1);
        assert!(matches!(s.backup(&to), Err(StoreError::Exists { .. })));
        assert!(!dir.path().join("backup.db.tmp").exists());
    }
}
