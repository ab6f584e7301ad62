//! Creating, opening and closing a store. Opening checks, through a read-only connection,
//! that the file is a gridsync store of a schema this build knows before anything is written
//! to it; then the connection is configured (`schema::configure`: WAL, `synchronous=FULL`)
//! and an older schema migrated.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::error::sql;
use crate::schema::{self, APPLICATION_ID, SCHEMA_VERSION};
use crate::{Result, Store, StoreError};

impl Store {
    /// Creates a new store at `path`; fails if anything exists there.
    pub fn create(path: &Path) -> Result<Self> {
        if path.exists() {
            return Err(StoreError::Exists {
                path: path.to_owned(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql(path, "creating"))?;
        Self::finish_open(conn, path, 0)
    }

    /// Opens an existing store. Checks that it is a gridsync store of a schema this build
    /// knows *before* writing anything, then migrates an older schema.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            });
        }
        // Probe through a read-only connection first: it reads the header as SQLite sees it
        // (through a pending `-wal` too), and closing it never checkpoints or rolls anything
        // back, so a foreign file, or a store of a newer schema, is left exactly as it was.
        // (At most SQLite creates or rebuilds the `-shm` index beside a WAL database; the
        // database and its `-wal` are not written.) Only then is the file opened read-write.
        let version = Self::probe(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql(path, "opening"))?;
        Self::finish_open(conn, path, version)
    }

    /// Reads `application_id` and `user_version` through a read-only connection, which is
    /// dropped before returning; returns the schema version of a gridsync store this build
    /// can open, and refuses anything else.
    fn probe(path: &Path) -> Result<i32> {
        let not_a_store = |why: String| StoreError::NotAStore {
            path: path.to_owned(),
            why,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let probe = Connection::open_with_flags(path, flags).map_err(sql(path, "opening"))?;
        let header = probe.query_row(
            "SELECT application_id, user_version FROM pragma_application_id, pragma_user_version",
            [],
            |r| Ok((r.get::<_, i32>(0)?, r.get::<_, i32>(1)?)),
        );
        drop(probe);
        let (app_id, version) = header.map_err(|e| not_a_store(e.to_string()))?;
        if app_id != APPLICATION_ID {
            return Err(not_a_store(format!(
                "SQLite application id is {app_id:#x}, not gridsync's {APPLICATION_ID:#x}"
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(version)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(sql(&path, "opening"))?;
        Self::finish_open(conn, &path, 0)
    }

    fn finish_open(mut conn: Connection, path: &Path, version: i32) -> Result<Self> {
        schema::configure(&conn).map_err(sql(path, "configuring"))?;
        schema::migrate(&mut conn, version).map_err(sql(path, "migrating the schema"))?;
        let mut store = Self {
            conn,
            path: path.to_owned(),
        };
        store.sign_own_events()?;
        store.issue_peer_records()?;
        store.index_photo_refs()?;
        Ok(store)
    }

    /// Closes the store, checkpointing the WAL into the main file; reports a failure to do so
    /// (dropping a `Store` closes it too, but silently).
    pub fn close(self) -> Result<()> {
        let path = self.path;
        self.conn.close().map_err(|(_, error)| StoreError::Sqlite {
            path,
            context: "closing",
            error,
        })
    }
}
