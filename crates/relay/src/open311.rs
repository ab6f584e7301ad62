//! Open311 GeoReport v2, read-only: the incidents in the standard shape other city systems
//! read (<https://wiki.open311.org/GeoReport_v2>).
//!
//! CONTRACT (skeleton; the Open311 helper replaces the bodies, the console serves them under
//! `/open311/v2/`): pure functions of the store's incidents, no reporter identity ever.

use gridsync_store::{Store, StoreError};

/// The query parameters of `requests.json` (the standard's names).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RequestsQuery {
    pub service_request_id: Option<String>,
    pub service_code: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub status: Option<String>,
}

/// Why a request cannot be answered: the standard's error body is `[{"code", "description"}]`.
#[derive(Debug, thiserror::Error)]
pub enum Open311Error {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `services.json`.
pub fn services() -> serde_json::Value {
    serde_json::json!([])
}

/// `requests.json`; `media_base` is the URL prefix photos are served under.
pub fn requests(
    _store: &Store,
    _query: &RequestsQuery,
    _now_ms: u64,
    _media_base: &str,
) -> Result<serde_json::Value, Open311Error> {
    Ok(serde_json::json!([]))
}

/// `requests/{id}.json` (`None`: no such request).
pub fn request(
    _store: &Store,
    _id: &str,
    _media_base: &str,
) -> Result<Option<serde_json::Value>, Open311Error> {
    Ok(None)
}
