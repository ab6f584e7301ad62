//! Node records (`gridsync_proto::directory`): those this relay issues for its peers, signed
//! with its key as it enrolls or revokes them, and those received from relay children; one
//! row per issuer and node, the record in force. Records are stored as the wire encodes them
//! and sent up in the order stored.

use gridsync_core::codec;
use gridsync_core::NodeId;
use gridsync_proto::{AdmittedRecords, Committed, NodeRecord};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::error::sql;
use crate::{begin, exec, one, sql_int, Result, Store, StoreError};

impl Store {
    /// Every record held, in the order stored.
    pub fn records(&self) -> Result<Vec<NodeRecord>> {
        self.read_records(
            "SELECT pos, record FROM node_records ORDER BY pos",
            [],
            usize::MAX,
        )
        .map(|v| v.into_iter().map(|(_, r)| r).collect())
    }

    /// The record in force from each issuer about `node`.
    pub(crate) fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>> {
        self.read_records(
            "SELECT pos, record FROM node_records WHERE node = ?1 ORDER BY pos",
            [&node.0[..]],
            usize::MAX,
        )
        .map(|v| v.into_iter().map(|(_, r)| r).collect())
    }

    /// Records stored after position `after`, at most `limit`.
    pub(crate) fn records_to_send(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NodeRecord)>> {
        self.read_records(
            "SELECT pos, record FROM node_records WHERE pos > ?1 ORDER BY pos LIMIT ?2",
            params![sql_int(after), sql_int(limit as u64)],
            limit,
        )
    }

    fn read_records(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        limit: usize,
    ) -> Result<Vec<(u64, NodeRecord)>> {
        let mut stmt = self
            .conn
            .prepare_cached(query)
            .map_err(self.err("reading node records"))?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(self.err("reading node records"))?;
        let mut out = Vec::new();
        for row in rows.take(limit) {
            let (pos, bytes) = row.map_err(self.err("reading node records"))?;
            let record: NodeRecord = codec::decode_wire("node record", &bytes)
                .map_err(|e| self.corrupt(format!("node record at {pos}: {e}")))?;
            out.push((self.unsigned(pos, "a node record's position")?, record));
        }
        Ok(out)
    }

    /// Stores admitted records in one transaction: each replaces the one in force from its
    /// issuer about its node only if its serial is higher.
    pub(crate) fn commit_records(&mut self, records: &AdmittedRecords) -> Result<Committed> {
        let path = self.path.clone();
        let tx = begin(&mut self.conn, &path)?;
        let mut c = Committed::default();
        for r in records.records() {
            if put_record(&tx, r).map_err(sql(&path, "storing node records"))? {
                c.stored += 1;
            } else {
                c.duplicates += 1;
            }
        }
        tx.commit().map_err(sql(&path, "commit"))?;
        Ok(c)
    }

    /// The position up to which `parent` acknowledged records.
    pub(crate) fn records_cursor(&self, parent: &NodeId) -> Result<u64> {
        let upto: Option<i64> = one(
            &self.conn,
            "SELECT upto FROM records_sent WHERE parent = ?1",
            [&parent.0[..]],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("reading the records cursor"))?;
        upto.map_or(Ok(0), |v| self.unsigned(v, "a records cursor"))
    }

    /// Records that `parent` acknowledged records up to `upto` (never moving back).
    pub(crate) fn records_acked(&mut self, parent: &NodeId, upto: u64) -> Result<()> {
        exec(
            &self.conn,
            "INSERT INTO records_sent (parent, upto) VALUES (?1, ?2)
             ON CONFLICT (parent) DO UPDATE SET upto = max(upto, excluded.upto)",
            params![&parent.0[..], sql_int(upto)],
        )
        .map(|_| ())
        .map_err(self.err("moving the records cursor"))
    }

    /// Issues, in `tx`, this node's record about its peer `node` as the `peers` table now has
    /// it: enrolled, or revoked after the highest sequence number of `node` held here. Does
    /// nothing for a store without a key (a relay always has one).
    pub(crate) fn issue_record(
        &self,
        tx: &Transaction<'_>,
        node: &NodeId,
        now_ms: u64,
    ) -> Result<()> {
        let secret = match self.identity() {
            Ok(id) => id.secret,
            Err(StoreError::NoIdentity { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let path = &self.path;
        let peer: Option<(String, String, Option<i64>)> = one(
            tx,
            "SELECT role, scope, revoked_ms FROM peers WHERE node = ?1",
            [&node.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql(path, "issuing a node record"))?;
        let Some((role, scope, revoked_ms)) = peer else {
            return Ok(());
        };
        let (role, scope) = self.peer_role_scope(&role, &scope)?;
        let revoked_after = match revoked_ms {
            None => None,
            Some(_) => {
                let max: Option<i64> = one(
                    tx,
                    "SELECT max(seq) FROM events WHERE origin = ?1",
                    [&node.0[..]],
                    |r| r.get(0),
                )
                .map_err(sql(path, "issuing a node record"))?;
                Some(max.map_or(Ok(0), |v| self.unsigned(v, "a sequence number"))?)
            }
        };
        let me = NodeId::from_secret(&secret);
        let last: Option<i64> = one(
            tx,
            "SELECT serial FROM node_records WHERE issuer = ?1 AND node = ?2",
            params![&me.0[..], &node.0[..]],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(path, "issuing a node record"))?;
        let serial = now_ms.max(last.map_or(1, |v| v.max(0) as u64 + 1));
        let record = NodeRecord::issue(&secret, *node, role, scope, serial, revoked_after)
            .map_err(|e| self.corrupt(format!("encoding a node record: {e}")))?;
        put_record(tx, &record).map_err(sql(path, "issuing a node record"))?;
        Ok(())
    }

    /// Gives every peer enrolled before node records its record, once (the marker left by
    /// schema migration 4), as soon as the store knows its key.
    pub(crate) fn issue_peer_records(&mut self) -> Result<usize> {
        if self.meta("issue_peer_records")?.is_none() {
            return Ok(0);
        }
        match self.identity() {
            Ok(_) => {}
            Err(StoreError::NoIdentity { .. }) => return Ok(0),
            Err(e) => return Err(e),
        }
        let peers = self.peers()?;
        let path = self.path.clone();
        let tx = self.immediate()?;
        // Serial 1 (a first record): the store reads no clock.
        for p in &peers {
            self.issue_record(&tx, &p.node, 0)?;
        }
        exec(&tx, "DELETE FROM meta WHERE key = 'issue_peer_records'", [])
            .map_err(sql(&path, "issuing node records"))?;
        tx.commit().map_err(sql(&path, "commit"))?;
        if !peers.is_empty() {
            tracing::info!(
                peers = peers.len(),
                "issued node records for the peers enrolled before them"
            );
        }
        Ok(peers.len())
    }
}

impl Store {
    /// An immediate write transaction over `&self` (so that `&self` methods can read and
    /// write inside it, as [`Store::issue_record`] does).
    pub(crate) fn immediate(&self) -> Result<Transaction<'_>> {
        Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&self.path, "begin"))
    }
}

/// Stores `record` unless one from its issuer about its node with an equal or higher serial
/// is held; whether it did.
fn put_record(tx: &Transaction<'_>, record: &NodeRecord) -> rusqlite::Result<bool> {
    let held: Option<i64> = one(
        tx,
        "SELECT serial FROM node_records WHERE issuer = ?1 AND node = ?2",
        params![&record.issuer.0[..], &record.node.0[..]],
        |r| r.get(0),
    )
    .optional()?;
    if held.is_some_and(|s| s >= sql_int(record.serial)) {
        return Ok(false);
    }
    let bytes = codec::encode_wire("node record", record)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    exec(
        tx,
        "DELETE FROM node_records WHERE issuer = ?1 AND node = ?2",
        params![&record.issuer.0[..], &record.node.0[..]],
    )?;
    exec(
        tx,
        "INSERT INTO node_records (issuer, node, serial, record) VALUES (?1, ?2, ?3, ?4)",
        params![
            &record.issuer.0[..],
            &record.node.0[..],
            sql_int(record.serial),
            bytes
        ],
    )?;
    Ok(true)
}
