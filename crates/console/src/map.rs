//! The map page: incidents as markers coloured by status over the district's grid boundaries.
//!
//! CONTRACT (skeleton; the map helper replaces the bodies, the console server calls them):
//! - [`body`]: the page body (HTML inside the console's layout), no inline script;
//! - [`data`]: the incidents as a GeoJSON FeatureCollection, served at `/api/map.geojson`;
//! - [`ASSETS`]: the map's static files, served under `/assets/`.

use gridsync_store::{Store, StoreError};

/// How the map is drawn: a tile URL template (`https://tiles.example/{z}/{x}/{y}.png`; none:
/// no background) and the district's grid boundaries (a GeoJSON FeatureCollection).
#[derive(Debug, Clone, Default)]
pub struct MapConfig {
    pub tiles: Option<String>,
    pub grids: Option<serde_json::Value>,
}

/// The map page's body.
pub fn body(_store: &Store, _config: &MapConfig) -> Result<String, StoreError> {
    Ok(String::new())
}

/// The incidents with a location, as GeoJSON.
pub fn data(_store: &Store) -> Result<serde_json::Value, StoreError> {
    Ok(serde_json::json!({ "type": "FeatureCollection", "features": [] }))
}

/// `(path under /assets/, content type, bytes)`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[];
