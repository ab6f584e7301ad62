//! The children enrolled at a relay (the `peers` table: role, scope, revocation) and what a
//! session needs of them: the enrollment of a node that connects, and its heads.
//!
//! Heads of a scope read `origin_grids` and `origins`, never the log.

use gridsync_core::{GridCode, NodeId, Scope};
use gridsync_proto::{Enrolled, Head, Role};
use rusqlite::{params, OptionalExtension};

use crate::read::scope_range;
use crate::{exec, one, sql_int, Result, Store, StoreError};

/// A peer enrolled at this node, as the relay CLI lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub node: NodeId,
    pub role: Role,
    /// A device's grid (four segments), or a relay's scope.
    pub scope: Scope,
    /// When it was (last) enrolled, Unix ms.
    pub enrolled_ms: u64,
    /// When it was revoked, Unix ms; `None` while enrolled.
    pub revoked_ms: Option<u64>,
}

/// Origins with events in a scope, and how far each is contiguous here.
pub(crate) const SCOPE_HEADS_SQL: &str = "SELECT origin, contiguous FROM origins
     WHERE contiguous > 0 AND origin IN (
         SELECT origin FROM origin_grids WHERE grid = ?1 OR (grid >= ?2 AND grid < ?3))
     ORDER BY origin";

impl Store {
    /// Enrolls `node` as a `role` for `scope` (a device: its grid, four segments). Enrolling a
    /// node again replaces its role, scope and enrollment time and lifts a revocation.
    pub fn enroll(&mut self, node: &NodeId, role: Role, scope: &Scope, now_ms: u64) -> Result<()> {
        if role == Role::Device && scope.as_str().parse::<GridCode>().is_err() {
            return Err(StoreError::Enrollment {
                path: self.path.clone(),
                node: *node,
                why: format!(
                    "a device is enrolled for one grid (four segments, e.g. 110101/002/014/03), not the scope {scope}"
                ),
            });
        }
        let tx = self.immediate()?;
        exec(
            &tx,
            "INSERT INTO peers (node, role, scope, enrolled_ms, revoked_ms)
             VALUES (?1, ?2, ?3, ?4, NULL)
             ON CONFLICT (node) DO UPDATE SET role = excluded.role, scope = excluded.scope,
                 enrolled_ms = excluded.enrolled_ms, revoked_ms = NULL",
            params![&node.0[..], role.as_str(), scope.as_str(), sql_int(now_ms)],
        )
        .map_err(self.err("enrolling a peer"))?;
        // The record the tiers above learn the enrollment from, in the same transaction.
        self.issue_record(&tx, node, now_ms)?;
        tx.commit().map_err(self.err("commit"))
    }

    /// Revokes `node`'s enrollment; returns whether it was enrolled (and not yet revoked).
    /// Revoking again keeps the first revocation time. The revocation's node record (sent up
    /// so that every tier refuses the node's later events) names the highest sequence number
    /// of the node's events held here: those stay valid.
    pub fn revoke(&mut self, node: &NodeId, now_ms: u64) -> Result<bool> {
        let tx = self.immediate()?;
        let revoked = exec(
            &tx,
            "UPDATE peers SET revoked_ms = ?2 WHERE node = ?1 AND revoked_ms IS NULL",
            params![&node.0[..], sql_int(now_ms)],
        )
        .map_err(self.err("revoking a peer"))?
            > 0;
        if revoked {
            self.issue_record(&tx, node, now_ms)?;
        }
        tx.commit().map_err(self.err("commit"))?;
        Ok(revoked)
    }

    /// Every peer ever enrolled here (revoked ones too), in enrollment order.
    pub fn peers(&self) -> Result<Vec<PeerRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT node, role, scope, enrolled_ms, revoked_ms FROM peers
                 ORDER BY enrolled_ms, node",
            )
            .map_err(self.err("listing peers"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .map_err(self.err("listing peers"))?;
        let mut out = Vec::new();
        for row in rows {
            let (node, role, scope, enrolled_ms, revoked_ms) =
                row.map_err(self.err("listing peers"))?;
            let node = NodeId(self.bytes32(node, "a peer's node id")?);
            let (role, scope) = self.peer_role_scope(&role, &scope)?;
            out.push(PeerRow {
                node,
                role,
                scope,
                enrolled_ms: self.unsigned(enrolled_ms, "a peer's enrollment time")?,
                revoked_ms: revoked_ms
                    .map(|v| self.unsigned(v, "a peer's revocation time"))
                    .transpose()?,
            });
        }
        Ok(out)
    }

    pub(crate) fn peer_role_scope(&self, role: &str, scope: &str) -> Result<(Role, Scope)> {
        let role =
            Role::from_name(role).ok_or_else(|| self.corrupt(format!("peer role {role:?}")))?;
        let parsed: Scope = scope
            .parse()
            .map_err(|e| self.corrupt(format!("peer scope: {e}")))?;
        if role == Role::Device && scope.parse::<GridCode>().is_err() {
            return Err(self.corrupt(format!("a device's grid {scope:?} has not four segments")));
        }
        Ok((role, parsed))
    }

    /// `node`'s enrollment here, unless it is revoked or was never enrolled.
    pub(crate) fn enrolled(&self, node: &NodeId) -> Result<Option<Enrolled>> {
        let row: Option<(String, String)> = one(
            &self.conn,
            "SELECT role, scope FROM peers WHERE node = ?1 AND revoked_ms IS NULL",
            [&node.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err("reading a peer"))?;
        let Some((role, scope)) = row else {
            return Ok(None);
        };
        let (role, scope) = self.peer_role_scope(&role, &scope)?;
        Ok(Some(Enrolled {
            node: *node,
            role,
            scope,
        }))
    }

    /// A device's head is its own origin's contiguous sequence; a relay's, those of every
    /// origin with an event in its scope. Heads at 0 are left out (the same as listed at 0).
    pub(crate) fn heads(&self, peer: &Enrolled) -> Result<Vec<Head>> {
        match peer.role {
            Role::Device => {
                let seq = self.contiguous(&peer.node)?;
                Ok((seq > 0)
                    .then_some(Head {
                        origin: peer.node,
                        seq,
                    })
                    .into_iter()
                    .collect())
            }
            Role::Street | Role::District | Role::Community => self.scope_heads(&peer.scope),
        }
    }

    fn scope_heads(&self, scope: &Scope) -> Result<Vec<Head>> {
        let (exact, lo, hi) = scope_range(scope);
        let mut stmt = self
            .conn
            .prepare_cached(SCOPE_HEADS_SQL)
            .map_err(self.err("reading heads"))?;
        let rows = stmt
            .query_map(params![exact, lo, hi], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(self.err("reading heads"))?;
        let mut out = Vec::new();
        for row in rows {
            let (origin, seq) = row.map_err(self.err("reading heads"))?;
            out.push(Head {
                origin: NodeId(self.bytes32(origin, "an origin")?),
                seq: self.unsigned(seq, "an origin's progress")?,
            });
        }
        Ok(out)
    }
}
