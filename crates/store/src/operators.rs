//! The console's operator accounts and Open311 API keys (schema 8): who may log in to this
//! relay's web console, with which role, and which API keys may read its Open311 requests.
//!
//! Accounts are local to this relay: rows of its own store, not events, never synced. The
//! store keeps what the console hands it (an Argon2id PHC string, the SHA-256 of a key) and
//! has no policy of its own on passwords; hashing and checking are the console's.

use std::fmt;
use std::str::FromStr;

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::{exec, Result, Store};

/// An operator's role, from least to most trusted (the console's permissions follow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperatorRole {
    /// Reads everything, decides nothing.
    Viewer,
    /// Accepts, rejects, dispatches, escalates and comments.
    Dispatcher,
    /// Also resolves, verifies, closes, evaluates and settles conflicts.
    Supervisor,
    /// Everything.
    Admin,
}

impl OperatorRole {
    /// Every role, least trusted first.
    pub const ALL: &'static [OperatorRole] = &[
        OperatorRole::Viewer,
        OperatorRole::Dispatcher,
        OperatorRole::Supervisor,
        OperatorRole::Admin,
    ];

    /// The role's name, as stored and as the CLI takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Viewer => "viewer",
            OperatorRole::Dispatcher => "dispatcher",
            OperatorRole::Supervisor => "supervisor",
            OperatorRole::Admin => "admin",
        }
    }
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operator role {0:?} is none of viewer, dispatcher, supervisor, admin")]
pub struct ParseRoleError(pub String);

impl FromStr for OperatorRole {
    type Err = ParseRoleError;

    fn from_str(s: &str) -> std::result::Result<Self, ParseRoleError> {
        OperatorRole::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| ParseRoleError(s.to_owned()))
    }
}

/// An operator account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The login name.
    pub name: String,
    /// What the console lets them do.
    pub role: OperatorRole,
    /// The password's Argon2id PHC string.
    pub password: String,
    /// When the account was added (Unix ms).
    pub created_ms: u64,
    /// When its password last changed (Unix ms).
    pub updated_ms: u64,
}

/// An API key's record (the key itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's name (who it was given to).
    pub name: String,
    /// When it was made (Unix ms).
    pub created_ms: u64,
}

/// The SHA-256 of an API key, as stored.
fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

type OperatorRow = (String, String, String, i64, i64);

impl Store {
    /// Adds operator `name` with `role` and the PHC string `password`; `false` (and nothing
    /// written) if an operator of that name exists.
    pub fn operator_add(
        &mut self,
        name: &str,
        role: OperatorRole,
        password: &str,
        now_ms: u64,
    ) -> Result<bool> {
        let now = crate::sql_int(now_ms);
        let n = exec(
            &self.conn,
            "INSERT INTO operators (name, role, password, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO NOTHING",
            params![name, role.as_str(), password, now],
        )
        .map_err(self.err("adding an operator"))?;
        Ok(n == 1)
    }

    /// Replaces operator `name`'s PHC string; `false` if there is no such operator.
    pub fn operator_set_password(
        &mut self,
        name: &str,
        password: &str,
        now_ms: u64,
    ) -> Result<bool> {
        let n = exec(
            &self.conn,
            "UPDATE operators SET password = ?2, updated_ms = ?3 WHERE name = ?1",
            params![name, password, crate::sql_int(now_ms)],
        )
        .map_err(self.err("changing a password"))?;
        Ok(n == 1)
    }

    /// Removes operator `name`; `false` if there was none.
    pub fn operator_remove(&mut self, name: &str) -> Result<bool> {
        let n = exec(&self.conn, "DELETE FROM operators WHERE name = ?1", [name])
            .map_err(self.err("removing an operator"))?;
        Ok(n == 1)
    }

    /// Every operator, by name.
    pub fn operators(&self) -> Result<Vec<Operator>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, role, password, created_ms, updated_ms FROM operators ORDER BY name",
            )
            .map_err(self.err("listing operators"))?;
        let rows = stmt
            .query_map([], operator_row)
            .map_err(self.err("listing operators"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err("listing operators"))?;
        rows.into_iter().map(|r| self.operator_of(r)).collect()
    }

    /// Operator `name`, if there is one.
    pub fn operator(&self, name: &str) -> Result<Option<Operator>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT name, role, password, created_ms, updated_ms FROM operators WHERE name = ?1",
            )
            .and_then(|mut s| s.query_row([name], operator_row).optional())
            .map_err(self.err("reading an operator"))?;
        row.map(|r| self.operator_of(r)).transpose()
    }

    fn operator_of(
        &self,
        (name, role, password, created, updated): OperatorRow,
    ) -> Result<Operator> {
        let role = role
            .parse()
            .map_err(|e: ParseRoleError| self.corrupt(format!("operator {name:?}: {e}")))?;
        Ok(Operator {
            name,
            role,
            password,
            created_ms: created.max(0) as u64,
            updated_ms: updated.max(0) as u64,
        })
    }

    /// Records API key `name` for `key` (only its SHA-256 is kept); `false` (and nothing
    /// written) if a key of that name exists.
    pub fn api_key_add(&mut self, name: &str, key: &str, now_ms: u64) -> Result<bool> {
        let n = exec(
            &self.conn,
            "INSERT INTO api_keys (name, key_hash, created_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
            params![name, key_hash(key), crate::sql_int(now_ms)],
        )
        .map_err(self.err("adding an API key"))?;
        Ok(n == 1)
    }

    /// Removes API key `name`; `false` if there was none.
    pub fn api_key_remove(&mut self, name: &str) -> Result<bool> {
        let n = exec(&self.conn, "DELETE FROM api_keys WHERE name = ?1", [name])
            .map_err(self.err("removing an API key"))?;
        Ok(n == 1)
    }

    /// Every API key's record, by name.
    pub fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, created_ms FROM api_keys ORDER BY name")
            .map_err(self.err("listing API keys"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ApiKey {
                    name: r.get(0)?,
                    created_ms: r.get::<_, i64>(1)?.max(0) as u64,
                })
            })
            .map_err(self.err("listing API keys"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err("listing API keys"))?;
        Ok(rows)
    }

    /// The name of the API key `key` is, if any. The lookup is by the key's SHA-256, so the
    /// time it takes tells nothing of how close a wrong key came.
    pub fn api_key_check(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT name FROM api_keys WHERE key_hash = ?1")
            .and_then(|mut s| s.query_row([key_hash(key)], |r| r.get(0)).optional())
            .map_err(self.err("checking an API key"))
    }
}

fn operator_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OperatorRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_added_changed_listed_and_removed() {
        let mut s = Store::in_memory().expect("store");
        assert!(s
            .operator_add("ana", OperatorRole::Dispatcher, "$argon2id$x", 10)
            .expect("add"));
        assert!(!s
            .operator_add("ana", OperatorRole::Admin, "$argon2id$y", 11)
            .expect("add again"));
        let ana = s.operator("ana").expect("read").expect("ana");
        assert_eq!(ana.role, OperatorRole::Dispatcher);
        assert_eq!(ana.password, "$argon2id$x");
        assert!(s
            .operator_set_password("ana", "$argon2id$z", 20)
            .expect("passwd"));
        assert!(!s
            .operator_set_password("bob", "$argon2id$z", 20)
            .expect("passwd"));
        let ana = s.operator("ana").expect("read").expect("ana");
        assert_eq!(
            (ana.password.as_str(), ana.created_ms, ana.updated_ms),
            ("$argon2id$z", 10, 20)
        );
        assert_eq!(s.operators().expect("list").len(), 1);
        assert!(s.operator_remove("ana").expect("remove"));
        assert!(!s.operator_remove("ana").expect("remove again"));
        assert!(s.operator("ana").expect("read").is_none());
    }

    #[test]
    fn api_keys_are_checked_by_hash() {
        let mut s = Store::in_memory().expect("store");
        assert!(s.api_key_add("city", "k-123", 5).expect("add"));
        assert!(!s.api_key_add("city", "k-456", 6).expect("add again"));
        assert_eq!(
            s.api_key_check("k-123").expect("check").as_deref(),
            Some("city")
        );
        assert_eq!(s.api_key_check("k-124").expect("check"), None);
        assert_eq!(s.api_keys().expect("list")[0].name, "city");
        assert!(s.api_key_remove("city").expect("remove"));
        assert_eq!(s.api_key_check("k-123").expect("check"), None);
    }

    #[test]
    fn roles_parse_and_order() {
        assert_eq!(
            "supervisor".parse::<OperatorRole>(),
            Ok(OperatorRole::Supervisor)
        );
        assert!("root".parse::<OperatorRole>().is_err());
        assert!(OperatorRole::Viewer < OperatorRole::Admin);
    }
}
