//! The node's own facts: its [`Identity`] and its clock (the `meta` table), its sync cursors
//! (the `cursors` table) and the sequence number its next event gets.
//!
//! The identity is stored as text (`node_role`, `node_scope`) and read back typed: a role this
//! build does not know, a scope that is not one, or a device without a grid is a
//! [`StoreError::CorruptRow`], never a panic.

use gridsync_core::{GridCode, Hlc, NodeId, Scope};
use gridsync_proto::Role;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::sql;
use crate::{begin, exec, one, sql_int, Result, Store, StoreError};

/// The cursor peer name for "whoever is upstream of this node".
pub const UPSTREAM: &str = "upstream";
/// Cursor name: the highest own sequence number the upstream acknowledged.
pub const ACKED_OWN_SEQ: &str = "acked_own_seq";
/// Cursor name: how far this node has downloaded from a parent (the cursor's peer is the
/// parent's node id in hex).
pub const DOWN: &str = "down";

/// The node's own identity as kept in its store.
///
/// `scope` is `None` for a relay created without one (every relay is today: it learns what it
/// serves from its enrollment at its parent, and the store keeps an empty text); a device's is
/// always its grid (four segments), which [`Store::set_identity`] and [`Store::identity`]
/// check.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The Ed25519 secret key seed.
    pub secret: [u8; 32],
    /// The node id (its public key).
    pub node_id: NodeId,
    /// Device, officer or sub-center name: the `author` of the node's events.
    pub name: String,
    /// Device, street or district.
    pub role: Role,
    /// A device's grid, or a relay's scope if it was given one.
    pub scope: Option<Scope>,
}

impl Identity {
    /// A device's grid (`None` for a relay).
    pub fn grid(&self) -> Option<GridCode> {
        if self.role != Role::Device {
            return None;
        }
        self.scope.as_ref().and_then(|s| s.as_str().parse().ok())
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Whether `scope` suits `role`: a device's must be a grid; a relay's may be any scope, or none.
fn check_scope(role: Role, scope: Option<&Scope>) -> std::result::Result<(), String> {
    match (role, scope) {
        (Role::Device, None) => Err("a device has no grid".to_owned()),
        (Role::Device, Some(s)) if s.as_str().parse::<GridCode>().is_err() => {
            Err(format!("a device's grid {s:?} has not four segments"))
        }
        _ => Ok(()),
    }
}

impl Store {
    /// Records the node's identity. Fails if one is already there, or if a device's scope is
    /// not a grid.
    pub fn set_identity(&mut self, id: &Identity) -> Result<()> {
        check_scope(id.role, id.scope.as_ref()).map_err(|why| StoreError::BadIdentity {
            path: self.path.clone(),
            why,
        })?;
        let tx = begin(&mut self.conn, &self.path)?;
        let rows: [(&str, &[u8]); 5] = [
            ("node_secret", &id.secret),
            ("node_id", &id.node_id.0),
            ("node_name", id.name.as_bytes()),
            ("node_role", id.role.as_str().as_bytes()),
            (
                "node_scope",
                id.scope.as_ref().map_or("", Scope::as_str).as_bytes(),
            ),
        ];
        for (k, v) in rows {
            exec(
                &tx,
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(sql(&self.path, "storing the identity"))?;
        }
        tx.commit().map_err(sql(&self.path, "commit"))
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        one(
            &self.conn,
            "SELECT value FROM meta WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("reading meta"))
    }

    /// The node's identity.
    pub fn identity(&self) -> Result<Identity> {
        let missing = || StoreError::NoIdentity {
            path: self.path.clone(),
        };
        let text = |key: &str| -> Result<String> {
            let v = self.meta(key)?.ok_or_else(missing)?;
            String::from_utf8(v).map_err(|_| missing())
        };
        let bytes32 = |key: &str| -> Result<[u8; 32]> {
            let v = self.meta(key)?.ok_or_else(missing)?;
            v.try_into().map_err(|_| missing())
        };
        let role = text("node_role")?;
        let role = Role::from_name(&role).ok_or_else(|| {
            self.corrupt(format!(
                "node role {role:?} is not device, street or district"
            ))
        })?;
        let scope = text("node_scope")?;
        let scope = match scope.as_str() {
            "" => None,
            s => Some(
                s.parse::<Scope>()
                    .map_err(|e| self.corrupt(format!("node scope: {e}")))?,
            ),
        };
        check_scope(role, scope.as_ref())
            .map_err(|why| self.corrupt(format!("node scope: {why}")))?;
        Ok(Identity {
            secret: bytes32("node_secret")?,
            node_id: NodeId(bytes32("node_id")?),
            name: text("node_name")?,
            role,
            scope,
        })
    }

    /// The latest HLC timestamp this node issued or stored (never goes backwards). Kept in
    /// `meta` and raised by every [`Store::append`], so reading it costs the same whatever the
    /// log holds.
    ///
    /// A stored value that does not decode is not trusted as zero (the clock would go back):
    /// the newest stored event's timestamp is used instead.
    pub fn clock_last(&self) -> Result<Hlc> {
        let Some(v) = self.meta("clock_last")? else {
            return Ok(Hlc::default());
        };
        if let Some(hlc) = decode_hlc(&v) {
            return Ok(hlc);
        }
        tracing::warn!(
            bytes = v.len(),
            "stored clock is unreadable; using the newest stored event's"
        );
        let newest: Option<(i64, i64)> = one(
            &self.conn,
            "SELECT hlc_wall, hlc_logical FROM events ORDER BY hlc_wall DESC, hlc_logical DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err("reading the clock"))?;
        Ok(newest.map_or_else(Hlc::default, |(wall, logical)| {
            Hlc::new(wall as u64, logical as u32)
        }))
    }

    /// The sequence number `origin`'s next event gets.
    pub fn next_seq(&self, origin: &NodeId) -> Result<u64> {
        let max: Option<i64> = one(
            &self.conn,
            "SELECT MAX(seq) FROM events WHERE origin = ?1",
            [&origin.0[..]],
            |r| r.get(0),
        )
        .map_err(self.err("reading the sequence"))?;
        Ok(max.unwrap_or(0) as u64 + 1)
    }

    /// A sync cursor (0 when never set).
    pub fn cursor(&self, peer: &str, name: &str) -> Result<u64> {
        one(
            &self.conn,
            "SELECT value FROM cursors WHERE peer = ?1 AND name = ?2",
            [peer, name],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|v| v.unwrap_or(0) as u64)
        .map_err(self.err("reading a cursor"))
    }

    /// Moves a sync cursor forward (never back: re-applying an old value is a no-op).
    pub fn advance_cursor(&mut self, peer: &str, name: &str, value: u64) -> Result<()> {
        advance_cursor(&self.conn, peer, name, value).map_err(self.err("storing a cursor"))
    }

    /// How far this node has downloaded from `parent` (the [`DOWN`] cursor).
    pub(crate) fn down_cursor(&self, parent: &NodeId) -> Result<u64> {
        self.cursor(&parent.to_hex(), DOWN)
    }

    /// One upstream: the acknowledgement is kept under [`UPSTREAM`], whichever the parent.
    pub(crate) fn own_acked(&mut self, _parent: &NodeId, seq: u64) -> Result<()> {
        // Most sessions acknowledge nothing new: read first, so they write (and flush) nothing.
        if self.cursor(UPSTREAM, ACKED_OWN_SEQ)? >= seq {
            return Ok(());
        }
        self.advance_cursor(UPSTREAM, ACKED_OWN_SEQ, seq)
    }
}

/// Moves a sync cursor forward, never back.
pub(crate) fn advance_cursor(
    conn: &Connection,
    peer: &str,
    name: &str,
    value: u64,
) -> rusqlite::Result<()> {
    exec(
        conn,
        "INSERT INTO cursors (peer, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer, name) DO UPDATE SET value = MAX(value, excluded.value)",
        params![peer, name, sql_int(value)],
    )
    .map(|_| ())
}

/// Raises the recorded clock to `hlc` (never lowers it).
pub(crate) fn raise_clock(conn: &Connection, hlc: Hlc) -> rusqlite::Result<()> {
    // Big-endian bytes compare like the timestamps, so SQLite's MAX keeps the later.
    exec(
        conn,
        "INSERT INTO meta (key, value) VALUES ('clock_last', ?1)
         ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
        [encode_hlc(hlc)],
    )
    .map(|_| ())
}

fn encode_hlc(hlc: Hlc) -> Vec<u8> {
    let mut v = hlc.wall_ms.to_be_bytes().to_vec();
    v.extend_from_slice(&hlc.logical.to_be_bytes());
    v
}

fn decode_hlc(v: &[u8]) -> Option<Hlc> {
    let wall: [u8; 8] = v.get(..8)?.try_into().ok()?;
    let logical: [u8; 4] = v.get(8..12)?.try_into().ok()?;
    Some(Hlc::new(
        u64::from_be_bytes(wall),
        u32::from_be_bytes(logical),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: Role, scope: &str) -> Identity {
        Identity {
            secret: [1; 32],
            node_id: NodeId([2; 32]),
            name: "n".into(),
            role,
            scope: (!scope.is_empty()).then(|| scope.parse().unwrap()),
        }
    }

    fn set_meta(s: &Store, key: &str, value: &str) {
        s.conn
            .execute(
                "UPDATE meta SET value = ?2 WHERE key = ?1",
                params![key, value.as_bytes()],
            )
            .unwrap();
    }

    #[test]
    fn a_relay_without_a_scope_and_a_device_with_its_grid_round_trip() {
        for id in [
            identity(Role::Street, ""),
            identity(Role::District, "110101"),
            identity(Role::Device, "110101/002/014/03"),
        ] {
            let mut s = Store::in_memory().unwrap();
            s.set_identity(&id).unwrap();
            assert_eq!(s.identity().unwrap(), id);
        }
        let device = identity(Role::Device, "110101/002/014/03");
        assert_eq!(device.grid().unwrap().as_str(), "110101/002/014/03");
        assert_eq!(identity(Role::Street, "110101/002").grid(), None);
    }

    #[test]
    fn a_device_without_a_grid_is_not_stored() {
        for scope in ["", "110101/002"] {
            let mut s = Store::in_memory().unwrap();
            let err = s.set_identity(&identity(Role::Device, scope)).unwrap_err();
            assert!(matches!(err, StoreError::BadIdentity { .. }), "{err}");
            assert!(matches!(s.identity(), Err(StoreError::NoIdentity { .. })));
        }
    }

    #[test]
    fn an_unknown_role_or_a_bad_scope_read_back_is_a_corrupt_row() {
        let cases = [
            ("node_role", "mayor", "node role \"mayor\""),
            ("node_scope", "110101//x", "node scope"),
            ("node_scope", "110101/002", "four segments"),
            ("node_scope", "", "a device has no grid"),
        ];
        for (key, value, want) in cases {
            let mut s = Store::in_memory().unwrap();
            s.set_identity(&identity(Role::Device, "110101/002/014/03"))
                .unwrap();
            set_meta(&s, key, value);
            match s.identity() {
                Err(e @ StoreError::CorruptRow { .. }) => {
                    assert!(e.to_string().contains(want), "{e}");
                    assert_eq!(e.to_string().lines().count(), 1, "{e}");
                }
                other => panic!("{key}={value:?}: expected CorruptRow, got {other:?}"),
            }
        }
    }
}
