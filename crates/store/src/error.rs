//! What goes wrong with a store: [`StoreError`], the small constructors the modules build it
//! with, and its peer-safe rendering ([`storage`], [`without_path`]): what a sync session may
//! tell the peer, never this node's path or SQL.

use std::path::{Path, PathBuf};

use gridsync_core::codec::{self, CodecError};
use gridsync_core::{BlobHash, IncidentId, NodeId};
use gridsync_proto::{StorageError, StorageErrorKind};

use crate::{Result, Store};

/// What went wrong with a store. Every variant names the file. Causes are part of the
/// message (one line), and deliberately not chained again as `source()`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: no gridsync store here (create one with `init`)")]
    Missing { path: PathBuf },
    #[error("{path}: a file already exists here; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("{path}: not a gridsync store ({why}); the file was not changed")]
    NotAStore { path: PathBuf, why: String },
    #[error("{path}: store schema version {found} is newer than this build supports ({supported}); upgrade gridsync. The file was not changed")]
    NewerSchema {
        path: PathBuf,
        found: i32,
        supported: i32,
    },
    #[error("{path}: the store has no node identity yet (run `init`)")]
    NoIdentity { path: PathBuf },
    #[error("{path}: cannot store the node identity: {why}")]
    BadIdentity { path: PathBuf, why: String },
    #[error(
        "{path}: event {origin}/{seq} is already stored with different content; refusing the batch"
    )]
    Equivocation {
        path: PathBuf,
        origin: NodeId,
        seq: u64,
    },
    #[error("{path}: blob {hash} does not match its bytes; refusing the batch")]
    BlobMismatch { path: PathBuf, hash: BlobHash },
    #[error("{path}: stored {what} is corrupt: {error}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        error: CodecError,
    },
    #[error("{path}: incident {incident}: its state would be {bytes} bytes, over the {limit} limit", limit = codec::MAX_ENCODED)]
    StateTooLarge {
        path: PathBuf,
        incident: IncidentId,
        bytes: usize,
    },
    #[error("{path}: corrupt row: {what}")]
    CorruptRow { path: PathBuf, what: String },
    #[error("{path}: blob {hash}: {why}")]
    BlobUpload {
        path: PathBuf,
        hash: BlobHash,
        why: String,
    },
    #[error("{path}: cannot enroll {node}: {why}")]
    Enrollment {
        path: PathBuf,
        node: NodeId,
        why: String,
    },
    #[error("{path}: {context}: {error}")]
    Io {
        path: PathBuf,
        context: &'static str,
        error: std::io::Error,
    },
    #[error("{path}: {context}: {error}")]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        error: rusqlite::Error,
    },
}

/// An SQLite failure at `path` while doing `context`.
pub(crate) fn sql<'a>(
    path: &'a Path,
    context: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |error| StoreError::Sqlite {
        path: path.to_owned(),
        context,
        error,
    }
}

/// A stored event at `path` that does not decode.
pub(crate) fn corrupt_event(path: &Path) -> impl FnOnce(CodecError) -> StoreError + '_ {
    move |error| StoreError::Corrupt {
        path: path.to_owned(),
        what: "event",
        error,
    }
}

impl Store {
    pub(crate) fn err(
        &self,
        context: &'static str,
    ) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        sql(&self.path, context)
    }

    pub(crate) fn corrupt(&self, what: String) -> StoreError {
        StoreError::CorruptRow {
            path: self.path.clone(),
            what,
        }
    }

    pub(crate) fn bytes32(&self, v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
        v.try_into()
            .map_err(|v: Vec<u8>| self.corrupt(format!("{what} is {} bytes, not 32", v.len())))
    }

    pub(crate) fn unsigned(&self, v: i64, what: &str) -> Result<u64> {
        u64::try_from(v).map_err(|_| self.corrupt(format!("{what} is negative ({v})")))
    }
}

/// A store error as a session sees it: refusals keep their kind, anything else is internal.
///
/// The message may be sent to the peer (a relay's refusal of a batch, a blob refused): it
/// names the event or blob and the figures, and never this node's database path or SQL. The
/// full error, path included, goes to the local log.
pub(crate) fn storage(e: StoreError) -> StorageError {
    let kind = match e {
        StoreError::Equivocation { .. } => StorageErrorKind::Equivocation,
        _ => StorageErrorKind::Internal,
    };
    if kind == StorageErrorKind::Internal {
        tracing::error!(error = %e, "store failed during a sync session");
    } else {
        tracing::warn!(error = %e, "store refused a batch");
    }
    StorageError {
        kind,
        message: without_path(&e),
    }
}

/// What a store error says without the path it names (or the SQLite error, which can quote
/// SQL): what a peer may be told.
pub(crate) fn without_path(e: &StoreError) -> String {
    match e {
        StoreError::Equivocation { origin, seq, .. } => {
            format!(
                "event {}/{seq} is already stored with different content; refusing the batch",
                origin.short()
            )
        }
        StoreError::BlobMismatch { hash, .. } => {
            format!("blob {hash} does not match its bytes; refusing the batch")
        }
        StoreError::BlobUpload { hash, why, .. } => format!("blob {hash}: {why}"),
        StoreError::Corrupt { what, error, .. } => format!("stored {what} is corrupt: {error}"),
        StoreError::StateTooLarge {
            incident, bytes, ..
        } => format!(
            "incident {incident}: its state would be {bytes} bytes, over the {} limit",
            codec::MAX_ENCODED
        ),
        StoreError::CorruptRow { what, .. } => format!("corrupt row: {what}"),
        StoreError::Enrollment { node, why, .. } => format!("cannot enroll {node}: {why}"),
        StoreError::Sqlite { context, .. } | StoreError::Io { context, .. } => {
            format!("storage failed ({context})")
        }
        StoreError::Missing { .. }
        | StoreError::Exists { .. }
        | StoreError::NotAStore { .. }
        | StoreError::NewerSchema { .. }
        | StoreError::NoIdentity { .. }
        | StoreError::BadIdentity { .. } => "the store is not usable".to_owned(),
    }
}
