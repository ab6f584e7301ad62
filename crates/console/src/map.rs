//! The map page: incidents as markers coloured by status over the district's grid boundaries.
//!
//! The console server calls:
//! - [`body`]: the page body (HTML inside the console's layout), no inline script: the map is
//!   drawn by `/assets/map/map.js` with the vendored Leaflet 1.9.4 (`assets/vendor/`, see its
//!   `update.sh`), from the `data-` attributes of the map's `div`;
//! - [`data`]: the incidents as a GeoJSON FeatureCollection, served at `/api/map.geojson`,
//!   which the page fetches again on every `commit` of `/api/events`;
//! - [`ASSETS`]: the map's static files, served under `/assets/`;
//! - [`load_grids`]: reads and checks the district's grid boundary file (an example:
//!   `fixtures/geo/grids.geojson`).
//!
//! With no tile URL the map has no background layer at all (it works with no tile server and
//! no internet): the grid boundaries, labelled, and the markers on a plain background. With no
//! boundaries either, the view fits the markers.

use std::path::Path;

use gridsync_core::{IncidentState, Millis, Status};
use gridsync_store::{Store, StoreError};
use serde_json::{json, Value};

use crate::html::escape;

/// How the map is drawn: a tile URL template (`https://tiles.example/{z}/{x}/{y}.png`; none:
/// no background) and the district's grid boundaries (a GeoJSON FeatureCollection).
#[derive(Debug, Clone, Default)]
pub struct MapConfig {
    /// The tile URL template of an `L.tileLayer` (`{z}`, `{x}`, `{y}`); `None`: no tiles.
    pub tiles: Option<String>,
    /// The grid boundaries, as [`load_grids`] returns them.
    pub grids: Option<serde_json::Value>,
}

/// Why the grid boundary file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The file cannot be read.
    #[error("grid boundaries {path}: cannot read the file: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("grid boundaries {path}: not JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    /// The file is JSON but not a FeatureCollection of labelled polygons.
    #[error("grid boundaries {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The marker colour of each status (the legend and `map.js` use these; `map.css` holds the
/// legend's swatches in the same colours).
pub const STATUS_COLOURS: &[(Status, &str)] = &[
    (Status::Reported, "#e8590c"),
    (Status::Accepted, "#f59f00"),
    (Status::Rejected, "#868e96"),
    (Status::Dispatched, "#1c7ed6"),
    (Status::InProgress, "#7048e8"),
    (Status::Resolved, "#2f9e44"),
    (Status::Verified, "#087f5b"),
    (Status::Closed, "#343a40"),
];

/// The map page's body.
pub fn body(store: &Store, config: &MapConfig) -> Result<String, StoreError> {
    let incidents = store.incidents()?;
    let located = incidents
        .iter()
        .filter(|s| s.location.value().is_some())
        .count();
    let colours: serde_json::Map<String, Value> = STATUS_COLOURS
        .iter()
        .map(|(s, c)| (s.as_str().to_owned(), json!(c)))
        .collect();
    let mut attrs = format!(
        " data-geojson=\"/api/map.geojson\" data-events=\"/api/events\" data-colours=\"{}\"",
        escape(&Value::Object(colours).to_string())
    );
    if let Some(tiles) = config.tiles.as_deref().filter(|t| !t.trim().is_empty()) {
        attrs.push_str(&format!(
            " data-tiles=\"{}\" data-attribution=\"{}\"",
            escape(tiles),
            escape(&attribution(tiles))
        ));
    }
    if let Some(grids) = &config.grids {
        attrs.push_str(&format!(" data-grids=\"{}\"", escape(&grids.to_string())));
    }
    let legend: String = STATUS_COLOURS
        .iter()
        .map(|(s, _)| {
            format!(
                "<li><span class=\"map-swatch map-swatch-{0}\" aria-hidden=\"true\"></span>{0}</li>",
                escape(s.as_str())
            )
        })
        .collect();
    let background = if config.tiles.is_some() {
        "map tiles"
    } else {
        "no background map (no tile server configured)"
    };
    Ok(format!(
        "<link rel=\"stylesheet\" href=\"/assets/vendor/leaflet/leaflet.css\">\n\
<link rel=\"stylesheet\" href=\"/assets/map/map.css\">\n\
<section class=\"map-page\" aria-labelledby=\"map-title\">\n\
<h1 id=\"map-title\">Map</h1>\n\
<p class=\"map-summary\">{located} of {total} incidents have a location; {grids}; {background}. \
The map follows new reports as they arrive.</p>\n\
<div id=\"map\" class=\"map\" role=\"region\" aria-label=\"Map of incidents by status\"{attrs}></div>\n\
<noscript><p>The map needs JavaScript; every incident is also in the <a href=\"/\">incident list</a>.</p></noscript>\n\
<h2 class=\"map-legend-title\" id=\"map-legend\">Status</h2>\n\
<ul class=\"map-legend\" aria-labelledby=\"map-legend\">{legend}</ul>\n\
</section>\n\
<script src=\"/assets/vendor/leaflet/leaflet.js\" defer></script>\n\
<script src=\"/assets/map/map.js\" defer></script>\n",
        total = incidents.len(),
        grids = match grid_count(config) {
            0 => "no grid boundaries loaded".to_owned(),
            1 => "1 grid boundary".to_owned(),
            n => format!("{n} grid boundaries"),
        },
    ))
}

fn grid_count(config: &MapConfig) -> usize {
    config
        .grids
        .as_ref()
        .and_then(|g| g["features"].as_array())
        .map_or(0, Vec::len)
}

/// The attribution of a tile URL: its host (the tile server's terms apply).
fn attribution(tiles: &str) -> String {
    let host = tiles
        .split_once("://")
        .map_or(tiles, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    format!("Map tiles: {host}")
}

/// One incident with a location as a GeoJSON Feature (`None`: no location).
fn feature(state: &IncidentState, now_ms: u64) -> Option<Value> {
    let l = state.location.value()?;
    Some(json!({
        "type": "Feature",
        "geometry": { "type": "Point", "coordinates": [l.lon(), l.lat()] },
        "properties": {
            "id": state.id.to_string(),
            "status": state.status().as_str(),
            "category": state.category.value().map(|c| c.as_str().to_owned()),
            "severity": state.severity.value().map(|s| s.as_str()),
            "level": state.level().as_str(),
            "grid": state.grid().map(|g| g.as_str().to_owned()),
            "overdue": state.is_overdue(Millis::try_from(now_ms).unwrap_or(Millis::MAX)),
        },
    }))
}

/// The incidents with a location, as GeoJSON (`overdue` at the system clock's time).
pub fn data(store: &Store) -> Result<serde_json::Value, StoreError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    data_at(store, now_ms)
}

/// [`data`] with `overdue` evaluated at `now_ms`.
pub fn data_at(store: &Store, now_ms: u64) -> Result<serde_json::Value, StoreError> {
    let features: Vec<Value> = store
        .incidents()?
        .iter()
        .filter_map(|s| feature(s, now_ms))
        .collect();
    Ok(json!({ "type": "FeatureCollection", "features": features }))
}

/// Reads the district's grid boundaries: a GeoJSON FeatureCollection whose features are
/// `Polygon`s or `MultiPolygon`s, each with a `grid` or a `name` property (its label).
pub fn load_grids(path: &Path) -> Result<serde_json::Value, MapError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| MapError::Read {
        path: shown.clone(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|source| MapError::Json {
        path: shown.clone(),
        source,
    })?;
    let invalid = |reason: String| MapError::Invalid {
        path: shown.clone(),
        reason,
    };
    if value["type"] != "FeatureCollection" {
        return Err(invalid(
            "not a GeoJSON FeatureCollection (its \"type\" must be \"FeatureCollection\")".into(),
        ));
    }
    let features = value["features"]
        .as_array()
        .ok_or_else(|| invalid("\"features\" is not an array".into()))?;
    for (i, f) in features.iter().enumerate() {
        if f["type"] != "Feature" {
            return Err(invalid(format!("feature {i} is not a Feature")));
        }
        let kind = f["geometry"]["type"].as_str().unwrap_or("none");
        if !matches!(kind, "Polygon" | "MultiPolygon") {
            return Err(invalid(format!(
                "feature {i}: its geometry is {kind}, not a Polygon or MultiPolygon"
            )));
        }
        if !f["geometry"]["coordinates"].is_array() {
            return Err(invalid(format!(
                "feature {i}: its geometry has no coordinates"
            )));
        }
        let label = ["grid", "name"].iter().any(|k| {
            f["properties"][*k]
                .as_str()
                .is_some_and(|s| !s.trim().is_empty())
        });
        if !label {
            return Err(invalid(format!(
                "feature {i} has neither a \"grid\" nor a \"name\" property"
            )));
        }
    }
    tracing::info!(path = %shown, grids = features.len(), "grid boundaries loaded");
    Ok(value)
}

/// `(path under /assets/, content type, bytes)`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "vendor/leaflet/leaflet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/leaflet/leaflet.js"),
    ),
    (
        "vendor/leaflet/leaflet.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/leaflet/leaflet.css"),
    ),
    (
        "vendor/leaflet/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/leaflet/LICENSE"),
    ),
    (
        "vendor/leaflet/images/layers.png",
        "image/png",
        include_bytes!("../assets/vendor/leaflet/images/layers.png"),
    ),
    (
        "vendor/leaflet/images/layers-2x.png",
        "image/png",
        include_bytes!("../assets/vendor/leaflet/images/layers-2x.png"),
    ),
    (
        "vendor/leaflet/images/marker-icon.png",
        "image/png",
        include_bytes!("../assets/vendor/leaflet/images/marker-icon.png"),
    ),
    (
        "vendor/leaflet/images/marker-icon-2x.png",
        "image/png",
        include_bytes!("../assets/vendor/leaflet/images/marker-icon-2x.png"),
    ),
    (
        "vendor/leaflet/images/marker-shadow.png",
        "image/png",
        include_bytes!("../assets/vendor/leaflet/images/marker-shadow.png"),
    ),
    (
        "map/map.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/map/map.js"),
    ),
    (
        "map/map.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/map/map.css"),
    ),
];

#[cfg(test)]
mod tests {
    use gridsync_core::{
        Category, Event, Hlc, IncidentId, Location, LocationSource, NodeId, Payload, Report,
        Severity,
    };

    use super::*;

    const T0: u64 = 1_772_409_600_000;
    const MIN: u64 = 60_000;

    fn event(id: IncidentId, seq: u64, minute: u64, payload: Payload) -> Event {
        Event {
            origin: NodeId([0xd1; 32]),
            seq,
            hlc: Hlc::new(T0 + minute * MIN, 0),
            incident: id,
            grid: "110101/002/014/03".parse().expect("grid"),
            author: "wang-li".into(),
            payload,
            signature: None,
        }
    }

    fn report(id: IncidentId, seq: u64, at: Option<(f64, f64)>) -> Event {
        event(
            id,
            seq,
            seq,
            Payload::Reported(Report {
                category: Category::from_catalogue("garbage").expect("category"),
                description: "<script>alert(1)</script>".into(),
                location: at.map(|(lat, lon)| {
                    Location::new(lat, lon, LocationSource::Exif).expect("location")
                }),
                observed_at: None,
                severity: Severity::Urgent,
            }),
        )
    }

    fn store() -> (Store, IncidentId) {
        let a = IncidentId::new_v7(T0, [1; 10]);
        let b = IncidentId::new_v7(T0, [2; 10]);
        let events = vec![
            report(a, 1, Some((39.8927, 116.4284))),
            event(
                a,
                2,
                5,
                Payload::Assigned {
                    assignee: "sanitation".into(),
                    due: Some((T0 + 10 * MIN) as Millis),
                    pred: vec![],
                },
            ),
            event(
                a,
                3,
                6,
                Payload::StatusChanged {
                    status: Status::Dispatched,
                    pred: vec![],
                },
            ),
            report(b, 4, None),
        ];
        let mut store = Store::in_memory().expect("store");
        store.append(&events, &[], None).expect("append");
        (store, a)
    }

    #[test]
    fn data_has_the_located_incidents_only() {
        let (store, a) = store();
        let v = data_at(&store, T0 + 60 * MIN).expect("data");
        assert_eq!(v["type"], "FeatureCollection");
        let features = v["features"].as_array().expect("features");
        assert_eq!(features.len(), 1);
        let f = &features[0];
        assert_eq!(f["geometry"]["coordinates"], json!([116.4284, 39.8927]));
        assert_eq!(
            f["properties"],
            json!({
                "id": a.to_string(), "status": "dispatched", "category": "garbage",
                "severity": "urgent", "level": "grid", "grid": "110101/002/014/03",
                "overdue": true,
            })
        );
        let early = data_at(&store, T0 + 7 * MIN).expect("data");
        assert_eq!(early["features"][0]["properties"]["overdue"], false);
    }

    #[test]
    fn body_has_no_inline_script_and_escapes_the_config() {
        let (store, _) = store();
        let config = MapConfig {
            tiles: Some("https://tiles.example/{z}/{x}/{y}.png?a=1&b=\"2\"".into()),
            grids: Some(json!({"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": {"name": "</div><script>x()</script>"},
                 "geometry": {"type": "Polygon", "coordinates": []}}]})),
        };
        let html = body(&store, &config).expect("body");
        assert!(html.contains("1 of 2 incidents have a location"));
        assert!(html.contains("1 grid boundary"));
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("</div><script>"));
        assert!(!html.contains(" on"), "no inline handlers");
        assert!(html.contains("&amp;b=&quot;2&quot;"));
        assert!(html.contains("data-attribution=\"Map tiles: tiles.example\""));
        assert!(html.contains("<script src=\"/assets/map/map.js\" defer></script>"));
        for (status, _) in STATUS_COLOURS {
            assert!(html.contains(&format!("map-swatch-{status}")));
        }
        let plain = body(&store, &MapConfig::default()).expect("body");
        assert!(!plain.contains("data-tiles"));
        assert!(!plain.contains("data-grids"));
        assert!(plain.contains("no background map"));
    }

    #[test]
    fn every_status_has_a_colour_and_a_swatch() {
        let css = std::str::from_utf8(
            ASSETS
                .iter()
                .find(|(p, ..)| *p == "map/map.css")
                .expect("css")
                .2,
        )
        .expect("utf-8");
        for status in Status::ALL {
            let (_, colour) = STATUS_COLOURS
                .iter()
                .find(|(s, _)| s == status)
                .expect("colour");
            assert!(
                css.contains(&format!(".map-swatch-{status} {{ background: {colour}; }}")),
                "{status}"
            );
        }
        for (path, _, bytes) in ASSETS {
            assert!(!bytes.is_empty(), "{path}");
        }
    }

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/geo/grids.geojson")
    }

    #[test]
    fn the_example_grid_file_loads() {
        let v = load_grids(&fixture()).expect("grids");
        let features = v["features"].as_array().expect("features");
        assert_eq!(features.len(), 5);
        assert_eq!(features[0]["properties"]["grid"], "110101/002/014/03");
    }

    #[test]
    fn bad_grid_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let cases = [
            ("not-json.geojson", "{ not json", "not JSON"),
            (
                "point.geojson",
                r#"{"type": "Feature", "geometry": null, "properties": {}}"#,
                "not a GeoJSON FeatureCollection",
            ),
            (
                "unlabelled.geojson",
                r#"{"type": "FeatureCollection", "features": [{"type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": []}, "properties": {}}]}"#,
                "feature 0 has neither",
            ),
            (
                "points.geojson",
                r#"{"type": "FeatureCollection", "features": [{"type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [1, 2]},
                    "properties": {"grid": "g"}}]}"#,
                "geometry is Point",
            ),
        ];
        for (name, text, what) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            let e = load_grids(&path).expect_err(name).to_string();
            assert!(e.contains(name), "{e}");
            assert!(e.contains(what), "{e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let missing = dir.path().join("missing.geojson");
        let e = load_grids(&missing).expect_err("missing");
        assert!(matches!(e, MapError::Read { .. }));
        assert!(e.to_string().contains("missing.geojson"));
    }
}
