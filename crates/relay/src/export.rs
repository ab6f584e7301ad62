//! `gridsync-relay export`: the incidents as CSV, GeoJSON or JSON lines.
//!
//! CONTRACT (skeleton; the export helper replaces the bodies; the CLI and the console call
//! [`write`]).

use std::io::Write;

use gridsync_store::{Store, StoreError};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    GeoJson,
    JsonLines,
}

/// Which incidents: reported at or after `since_ms`, and in one of `statuses` (empty: any).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since_ms: Option<u64>,
    pub statuses: Vec<gridsync_core::Status>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the incidents `filter` selects in `format` to `out`; returns how many.
pub fn write(
    _store: &Store,
    _format: Format,
    _filter: &Filter,
    _now_ms: u64,
    _out: &mut dyn Write,
) -> Result<usize, ExportError> {
    Ok(0)
}
