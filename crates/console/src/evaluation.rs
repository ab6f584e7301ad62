//! The evaluation page: the statistics of `gridsync-relay stats` as tables and charts.
//!
//! CONTRACT (skeleton; the evaluation helper replaces the bodies, the console server calls
//! them): [`body`] renders the page body, [`download`] the same figures as a file.

use gridsync_store::{Store, StoreError};

/// The page's query string: `since` and `until` as RFC 3339 times (empty: no bound).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct EvalQuery {
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
}

/// The evaluation page's body at `now_ms`.
pub fn body(_store: &Store, _now_ms: u64, _query: &EvalQuery) -> Result<String, StoreError> {
    Ok(String::new())
}

/// A download of the figures: `(content type, file name, bytes)`; `format` is `csv` or `json`.
pub fn download(
    _store: &Store,
    _now_ms: u64,
    _query: &EvalQuery,
    _format: &str,
) -> Result<(&'static str, String, Vec<u8>), StoreError> {
    Ok(("text/csv", "evaluation.csv".to_owned(), Vec::new()))
}

/// `(path under /assets/, content type, bytes)`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[];
