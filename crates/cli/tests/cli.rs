//! Black-box tests of the `gridsync` device command line: each test runs the real binary
//! against its own store in its own temporary folder.

mod common;

use std::path::Path;

use common::{
    assert_hex64, assert_uuid_v7, command, event_count, expect_one_line_failure, fixture, photos,
    sha256_hex, str_of, Gs, GRID,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers for this file
// ---------------------------------------------------------------------------------------------

const BIG: &str = "garbage-12mp-rot6.jpg";
const CAT: &str = "cat-2400x1600-rot8.jpg";
const STREET: &str = "street-640x427-gps.jpg";
const PNG: &str = "plain-512.png";
/// The Artist tag of the street photo (a person's name must not leave the device).
const STREET_ARTIST: &[u8] = b"grid assistant 0427";
/// Make and Model of the 12 MP photo.
const BIG_MAKE_MODEL: [&[u8]; 2] = [b"PatrolPDA", b"PDA-1"];

fn assert_rfc3339_utc(v: &Value, key: &str, ctx: &Value) {
    let s = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {ctx}"));
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{key} {s:?} is not RFC 3339 ({e}) in {ctx}"));
    assert_eq!(t.offset().local_minus_utc(), 0, "{key} {s:?} is not UTC");
    assert!(
        s.ends_with('Z'),
        "{key} {s:?} should be written in UTC with Z"
    );
}

fn is_str_or_null(v: &Value) -> bool {
    v.is_string() || v.is_null()
}

/// Checks that every contract key of the incident JSON is there with the right JSON type.
fn assert_incident_shape(v: &Value) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("incident JSON is not an object: {v}"));
    for key in [
        "id",
        "grid",
        "reporter",
        "category",
        "description",
        "status",
        "level",
        "assignee",
        "score",
        "location",
        "photos",
        "comments",
        "conflicts",
        "created_at",
        "updated_at",
        "event_count",
    ] {
        assert!(obj.contains_key(key), "incident JSON lacks {key:?}: {v}");
    }
    assert_uuid_v7(str_of(v, "id"));
    assert_eq!(str_of(v, "grid"), GRID, "grid in {v}");
    for key in ["reporter", "category", "description", "status", "level"] {
        assert!(v[key].is_string(), "{key} is not a string in {v}");
    }
    assert!(is_str_or_null(&v["assignee"]), "assignee type in {v}");
    assert!(
        v["score"].is_null() || v["score"].is_u64(),
        "score is neither a number nor null in {v}"
    );
    match &v["location"] {
        Value::Null => {}
        Value::Object(l) => {
            assert!(l["lat"].is_f64(), "location.lat is not a number in {v}");
            assert!(l["lon"].is_f64(), "location.lon is not a number in {v}");
            assert!(
                matches!(
                    l["source"].as_str(),
                    Some("exif" | "manual" | "gps" | "map")
                ),
                "location.source is not a known source in {v}"
            );
        }
        other => panic!("location is {other}, not an object or null"),
    }
    for p in photos(v) {
        assert_hex64(str_of(p, "hash"), "photo hash");
        assert_hex64(str_of(p, "thumb"), "photo thumb");
        assert!(
            matches!(p["kind"].as_str(), Some("before" | "after")),
            "photo kind in {p}"
        );
        for key in ["width", "height", "bytes"] {
            assert!(p[key].as_u64().is_some_and(|n| n > 0), "photo {key} in {p}");
        }
        assert!(is_str_or_null(&p["captured_at"]), "captured_at in {p}");
    }
    let comments = v["comments"]
        .as_array()
        .unwrap_or_else(|| panic!("comments is not an array in {v}"));
    for c in comments {
        assert!(c["author"].is_string(), "comment author in {c}");
        assert!(c["text"].is_string(), "comment text in {c}");
        assert_rfc3339_utc(c, "at", v);
    }
    assert!(
        v["conflicts"].is_array(),
        "conflicts is not an array in {v}"
    );
    assert_rfc3339_utc(v, "created_at", v);
    assert_rfc3339_utc(v, "updated_at", v);
    assert!(event_count(v) >= 1, "event_count in {v}");
}

/// The marker bytes of a JPEG's segments up to and including the start of scan.
fn jpeg_header_markers(bytes: &[u8]) -> (Vec<u8>, usize) {
    assert!(
        bytes.starts_with(&[0xFF, 0xD8]),
        "not a JPEG (no SOI marker)"
    );
    let mut markers = Vec::new();
    let mut i = 2;
    loop {
        assert!(i + 1 < bytes.len(), "JPEG ends inside its header");
        assert_eq!(bytes[i], 0xFF, "JPEG segment at byte {i} has no marker");
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        markers.push(marker);
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        assert!(i + 3 < bytes.len(), "JPEG ends inside a segment length");
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        i += 2 + len;
        if marker == 0xDA {
            return (markers, i);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Asserts `bytes` is a JPEG of `width`x`height` that carries no metadata: no APP1 segment
/// (EXIF/XMP), no `Exif` tag, no `GPS` in its header, none of `forbidden`.
fn assert_clean_jpeg(bytes: &[u8], what: &str, (width, height): (u32, u32), forbidden: &[&[u8]]) {
    let (markers, header_end) = jpeg_header_markers(bytes);
    assert!(
        !markers.contains(&0xE1),
        "{what}: has an APP1 (EXIF/XMP) segment; markers {markers:x?}"
    );
    assert!(!contains(bytes, b"Exif"), "{what}: contains \"Exif\"");
    assert!(
        !contains(&bytes[..header_end], b"GPS"),
        "{what}: contains \"GPS\" in its header"
    );
    assert!(
        bytes.ends_with(&[0xFF, 0xD9]),
        "{what}: does not end with EOI (trailing data?)"
    );
    for f in forbidden {
        assert!(
            !contains(bytes, f),
            "{what}: contains {:?}",
            String::from_utf8_lossy(f)
        );
    }
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("{what}: does not decode as JPEG: {e}"));
    assert_eq!(
        (img.width(), img.height()),
        (width, height),
        "{what}: decoded size"
    );
    let (format, w, h) = gridsync_media::probe(bytes, &gridsync_media::Limits::default())
        .unwrap_or_else(|e| panic!("{what}: gridsync_media::probe refuses it: {e}"));
    assert_eq!(format, gridsync_media::SourceFormat::Jpeg, "{what}: format");
    assert_eq!((w, h), (width, height), "{what}: probed size");
}

/// Fetches the photo and thumbnail of photo JSON `p` with `blob -o` / `blob --thumb -o` and
/// checks them: hashes, byte count, size, no metadata. Returns the thumbnail's size.
fn check_photo_blobs(gs: &Gs, p: &Value, forbidden: &[&[u8]]) -> (u32, u32) {
    let hash = str_of(p, "hash");
    let size = (
        u32::try_from(p["width"].as_u64().expect("width")).expect("width fits"),
        u32::try_from(p["height"].as_u64().expect("height")).expect("height fits"),
    );
    let photo = gs.blob(hash, false);
    assert_eq!(sha256_hex(&photo), hash, "SHA-256 of blob {hash}");
    assert_eq!(
        photo.len() as u64,
        p["bytes"].as_u64().expect("bytes"),
        "photo bytes field vs blob length"
    );
    assert_clean_jpeg(&photo, &format!("photo {hash}"), size, forbidden);

    let thumb = gs.blob(hash, true);
    assert_eq!(
        sha256_hex(&thumb),
        str_of(p, "thumb"),
        "SHA-256 of the thumbnail of {hash}"
    );
    let img = image::load_from_memory_with_format(&thumb, image::ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("thumbnail of {hash} does not decode as JPEG: {e}"));
    let tsize = (img.width(), img.height());
    assert_clean_jpeg(&thumb, &format!("thumbnail of {hash}"), tsize, forbidden);
    // The thumbnail may also be fetched by its own hash.
    assert_eq!(
        gs.blob(str_of(p, "thumb"), false),
        thumb,
        "blob <thumb hash> vs blob --thumb"
    );
    tsize
}

fn only_photo(v: &Value) -> &Value {
    let ps = photos(v);
    assert_eq!(ps.len(), 1, "expected exactly one photo in {v}");
    &ps[0]
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------------------------
// init, id, --db / GRIDSYNC_DB
// ---------------------------------------------------------------------------------------------

#[test]
fn init_prints_node_id_and_id_prints_it_again() {
    let (gs, node) = Gs::init();
    assert_eq!(gs.ok(&["id"]).trim(), node, "id after init");
    assert_eq!(
        gs.json(&["id", "--json"]),
        json!({ "node_id": node }),
        "id --json"
    );
    assert_eq!(gs.status()["node_id"], json!(node), "status --json node_id");

    let other = Gs::empty();
    let v = other.json(&[
        "init",
        "--device-name",
        "patrol-8",
        "--grid",
        GRID,
        "--json",
    ]);
    let obj = v.as_object().expect("init --json prints an object");
    assert_eq!(obj.len(), 1, "init --json prints only node_id: {v}");
    let node2 = str_of(&v, "node_id").to_owned();
    assert_hex64(&node2, "init --json node_id");
    assert_ne!(node2, node, "two inits made the same node id");
    assert_eq!(other.ok(&["id"]).trim(), node2, "id after init --json");
    assert_eq!(other.status()["name"], json!("patrol-8"), "device name");
    assert_eq!(other.status()["grid"], json!(GRID), "device grid");
}

#[test]
fn init_on_an_existing_store_fails_and_leaves_it_unchanged() {
    let (gs, node) = Gs::init();
    gs.report(&["--category", "garbage", "--description", "before re-init"]);
    let before = std::fs::read(&gs.db).expect("read store");
    let snap = gs.snapshot();

    let line = gs.fail(&["init", "--device-name", "intruder", "--grid", GRID]);
    assert!(
        line.contains("pda.db"),
        "message should name the store: {line}"
    );

    assert_eq!(
        std::fs::read(&gs.db).expect("read store"),
        before,
        "store bytes changed"
    );
    assert_eq!(gs.ok(&["id"]).trim(), node, "node id changed");
    assert_eq!(gs.snapshot(), snap, "store content changed");
}

#[test]
fn db_path_comes_from_gridsync_db_too() {
    let gs = Gs::empty();
    let with_env = |args: &[&str]| {
        command(gs.dir.path())
            .env("GRIDSYNC_DB", &gs.db)
            .args(args)
            .output()
            .expect("run gridsync")
    };
    let out = with_env(&["init", "--device-name", "patrol-7", "--grid", GRID]);
    assert!(out.status.success(), "init via GRIDSYNC_DB failed: {out:?}");
    assert!(
        gs.db.is_file(),
        "init via GRIDSYNC_DB did not create the store"
    );
    let node = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert_hex64(&node, "node id");

    let out = with_env(&["id"]);
    assert!(out.status.success(), "id via GRIDSYNC_DB failed: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node);
    // The same store through --db.
    assert_eq!(gs.ok(&["id"]).trim(), node, "id via --db");

    // --db wins over the environment.
    let elsewhere = gs.dir.path().join("elsewhere.db");
    let args = ["--db", elsewhere.to_str().expect("utf-8 path"), "id"];
    let out = with_env(&args);
    let line = expect_one_line_failure(&args, &out);
    assert!(
        line.contains("elsewhere.db"),
        "--db should override GRIDSYNC_DB: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// report with each fixture photo
// ---------------------------------------------------------------------------------------------

#[test]
fn report_12mp_rot6_is_upright_scaled_stripped_and_located_from_exif() {
    let (gs, _) = Gs::init();
    let id = gs.report(&[
        "--category",
        "garbage",
        "--description",
        "Bags piled by the east gate",
        "--photo",
        &path_str(&fixture(BIG)),
    ]);
    let v = gs.show(&id);
    assert_incident_shape(&v);
    assert_eq!(str_of(&v, "id"), id);
    assert_eq!(str_of(&v, "reporter"), "patrol-7");
    assert_eq!(str_of(&v, "category"), "garbage");
    assert_eq!(str_of(&v, "description"), "Bags piled by the east gate");
    assert_eq!(str_of(&v, "status"), "reported");
    assert_eq!(str_of(&v, "level"), "grid");
    assert_eq!(v["assignee"], Value::Null);
    assert_eq!(v["score"], Value::Null);
    assert_eq!(v["comments"], json!([]));
    assert_eq!(v["conflicts"], json!([]));
    // One report event plus one photo event.
    assert_eq!(event_count(&v), 2, "event_count in {v}");

    let loc = &v["location"];
    assert_eq!(loc["source"], json!("exif"), "location from EXIF GPS: {v}");
    let lat = loc["lat"].as_f64().expect("lat");
    let lon = loc["lon"].as_f64().expect("lon");
    assert!((lat - 39.8927).abs() < 1e-4, "EXIF latitude {lat}");
    assert!((lon - 116.4284).abs() < 1e-4, "EXIF longitude {lon}");

    let p = only_photo(&v);
    assert_eq!(p["kind"], json!("before"));
    assert_eq!(
        (p["width"].as_u64(), p["height"].as_u64()),
        (Some(1200), Some(1600)),
        "upright portrait, longest side 1600: {p}"
    );
    assert_eq!(p["captured_at"], json!("2026-03-02T11:00:00.000Z"));
    let mut forbidden: Vec<&[u8]> = BIG_MAKE_MODEL.to_vec();
    forbidden.push(b"2026:03:02");
    let thumb = check_photo_blobs(&gs, p, &forbidden);
    assert_eq!(thumb, (240, 320), "thumbnail size");

    // show by a unique prefix gives the same incident.
    assert_eq!(gs.show(&id[..8]), v, "show by prefix");
}

#[test]
fn report_with_lat_lon_uses_the_manual_location() {
    let (gs, _) = Gs::init();
    let id = gs.report(&[
        "--category",
        "garbage",
        "--description",
        "manual position",
        "--lat",
        "31.2304",
        "--lon",
        "121.4737",
        "--photo",
        &path_str(&fixture(BIG)),
    ]);
    let v = gs.show(&id);
    assert_incident_shape(&v);
    assert_eq!(
        v["location"],
        json!({ "lat": 31.2304, "lon": 121.4737, "source": "manual" })
    );
    let p = only_photo(&v);
    assert_eq!(
        (p["width"].as_u64(), p["height"].as_u64()),
        (Some(1200), Some(1600))
    );

    // Negative coordinates, no photo.
    let id = gs.report(&[
        "--category",
        "sewage",
        "--description",
        "south-west",
        "--lat",
        "-33.5",
        "--lon",
        "-70.25",
    ]);
    let v = gs.show(&id);
    assert_incident_shape(&v);
    assert_eq!(
        v["location"],
        json!({ "lat": -33.5, "lon": -70.25, "source": "manual" })
    );
    assert_eq!(v["photos"], json!([]));
    assert_eq!(event_count(&v), 1);
}

#[test]
fn report_cat_rot8_is_upright_portrait() {
    let (gs, _) = Gs::init();
    let id = gs.report_photos("cat", &[&fixture(CAT)]);
    let v = gs.show(&id);
    assert_incident_shape(&v);
    assert_eq!(v["location"]["source"], json!("exif"), "cat has GPS: {v}");
    let p = only_photo(&v);
    // 2400x1600 stored, rotated 270 CW -> 1600x2400 upright -> longest side 1600.
    assert_eq!(
        (p["width"].as_u64(), p["height"].as_u64()),
        (Some(1067), Some(1600)),
        "upright portrait: {p}"
    );
    let thumb = check_photo_blobs(&gs, p, &[]);
    assert_eq!(thumb.1, 320, "thumbnail longest side: {thumb:?}");
    assert!(
        (213..=214).contains(&thumb.0),
        "thumbnail keeps the portrait aspect: {thumb:?}"
    );
}

#[test]
fn report_street_photo_is_not_upscaled_and_loses_artist_and_gps() {
    let (gs, _) = Gs::init();
    let id = gs.report_photos("street", &[&fixture(STREET)]);
    let v = gs.show(&id);
    assert_incident_shape(&v);
    assert_eq!(
        v["location"]["source"],
        json!("exif"),
        "street has GPS: {v}"
    );
    let p = only_photo(&v);
    assert_eq!(
        (p["width"].as_u64(), p["height"].as_u64()),
        (Some(640), Some(427)),
        "never upscaled: {p}"
    );
    let original = std::fs::read(fixture(STREET)).expect("read fixture");
    assert!(
        contains(&original, STREET_ARTIST),
        "the fixture should carry the Artist tag this test looks for"
    );
    let thumb = check_photo_blobs(&gs, p, &[STREET_ARTIST]);
    assert_eq!(thumb.0, 320, "thumbnail longest side: {thumb:?}");
    assert!(
        (213..=214).contains(&thumb.1),
        "thumbnail aspect: {thumb:?}"
    );
}

#[test]
fn report_png_is_accepted_and_stored_as_jpeg() {
    let (gs, _) = Gs::init();
    let id = gs.report_photos("png", &[&fixture(PNG)]);
    let v = gs.show(&id);
    assert_incident_shape(&v);
    assert_eq!(v["location"], Value::Null, "a PNG has no GPS: {v}");
    let p = only_photo(&v);
    assert_eq!(
        (p["width"].as_u64(), p["height"].as_u64()),
        (Some(512), Some(512))
    );
    assert_eq!(p["captured_at"], Value::Null);
    let thumb = check_photo_blobs(&gs, p, &[]);
    assert_eq!(thumb, (320, 320), "thumbnail size");
}

#[test]
fn report_with_several_photos_keeps_them_all() {
    let (gs, _) = Gs::init();
    let id = gs.report_photos("three", &[&fixture(STREET), &fixture(PNG), &fixture(CAT)]);
    let v = gs.show(&id);
    assert_incident_shape(&v);
    assert_eq!(event_count(&v), 4, "report + three photos: {v}");
    let mut sizes: Vec<(u64, u64)> = photos(&v)
        .iter()
        .map(|p| {
            (
                p["width"].as_u64().expect("w"),
                p["height"].as_u64().expect("h"),
            )
        })
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [(512, 512), (640, 427), (1067, 1600)]);
    // The location comes from the first photo given (the street one).
    let lat = v["location"]["lat"].as_f64().expect("lat");
    let cat = gs.show(&gs.report_photos("cat", &[&fixture(CAT)]));
    let street = gs.show(&gs.report_photos("street", &[&fixture(STREET)]));
    assert_eq!(json!(lat), street["location"]["lat"], "first photo's GPS");
    assert_ne!(cat["location"]["lat"], street["location"]["lat"]);
    let list = gs.list();
    assert_eq!(list.len(), 3, "list --json: {list:?}");
    for v in &list {
        assert_incident_shape(v);
    }
    let status = gs.status();
    assert_eq!(status["incidents"], json!(3));
    assert_eq!(status["events"], json!(4 + 2 + 2));
    // Photos are stored once however often they are reported: 3 photos + 3 thumbnails.
    assert_eq!(status["blobs"], json!(6));
}

// ---------------------------------------------------------------------------------------------
// Hostile files
// ---------------------------------------------------------------------------------------------

#[test]
fn hostile_photos_are_refused_naming_the_file_and_change_nothing() {
    let (gs, _) = Gs::init();
    let id = gs.report_photos("good one", &[&fixture(STREET)]);
    let before = gs.snapshot();
    assert_eq!(before.1["incidents"], json!(1));

    let missing = gs.dir.path().join("no-such-photo.jpg");
    for name in [
        "truncated.jpg",
        "not-an-image.jpg",
        "bomb-40000x40000.png",
        "no-such-photo.jpg",
    ] {
        let path = if name == "no-such-photo.jpg" {
            missing.clone()
        } else {
            fixture(name)
        };
        let path = path_str(&path);
        let good = path_str(&fixture(PNG));
        let attempts: [Vec<&str>; 3] = [
            vec![
                "report",
                "--category",
                "garbage",
                "--description",
                "x",
                "--photo",
                &path,
            ],
            // A good photo before the bad one: still all or nothing.
            vec![
                "report",
                "--category",
                "garbage",
                "--description",
                "x",
                "--photo",
                &good,
                "--photo",
                &path,
            ],
            vec!["edit", &id, "--comment", "with photo", "--photo", &path],
        ];
        for args in &attempts {
            let line = gs.fail(args);
            assert!(
                line.contains(name),
                "the message should name {name}: {line}"
            );
            assert_eq!(
                gs.snapshot(),
                before,
                "store changed after refused `{}`",
                args.join(" ")
            );
        }
    }
    assert_eq!(gs.status()["incidents"], json!(1), "incident count");
}

// ---------------------------------------------------------------------------------------------
// The closed loop
// ---------------------------------------------------------------------------------------------

/// The closed loop itself runs between a handheld and its platform (`relay_cli.rs`,
/// `the_closed_loop_runs_between_the_handheld_and_its_platform`). On the handheld, every
/// operator decision is refused in one line that says where it is made, and nothing is
/// written; what a handheld does write (photos, comments, edits) still works.
#[test]
fn a_handheld_refuses_operator_decisions_in_one_line() {
    let (gs, _) = Gs::init();
    let id = gs.report_photos("Overflowing bin", &[&fixture(STREET)]);
    let before = gs.snapshot();
    for args in [
        vec!["edit", &id, "--status", "accepted"],
        vec!["edit", &id, "--status", "rejected"],
        vec!["edit", &id, "--assignee", "sanitation"],
        vec!["edit", &id, "--force", "police"],
        vec!["edit", &id, "--staff", "Wang Fang"],
        vec!["edit", &id, "--level", "street"],
    ] {
        let line = gs.fail(&args);
        assert!(
            line.contains("operator decision") && line.contains("gridsync-relay edit"),
            "`{}`: {line}",
            args.join(" ")
        );
        assert!(line.contains(&id), "names the incident: {line}");
        assert_eq!(
            gs.snapshot(),
            before,
            "`{}` wrote something",
            args.join(" ")
        );
    }
    let cat = path_str(&fixture(CAT));
    let v = gs.edit(
        &id,
        &[
            "--comment",
            "Still there at noon",
            "--photo",
            &cat,
            "--severity",
            "urgent",
        ],
    );
    assert_eq!(str_of(&v, "status"), "reported");
    assert_eq!(
        event_count(&v),
        5,
        "report, photo, comment, photo, severity: {v}"
    );
    assert_eq!(photos(&v).len(), 2);
}

#[test]
fn photo_kind_defaults_to_before_until_handling_starts_and_can_be_given() {
    let (gs, _) = Gs::init();
    let id = gs.report(&["--category", "garbage", "--description", "kinds"]);
    let street = path_str(&fixture(STREET));
    let png = path_str(&fixture(PNG));
    let v = gs.edit(&id, &["--photo", &street]);
    assert_eq!(photos(&v)[0]["kind"], json!("before"), "reported: {v}");
    let v = gs.edit(&id, &["--photo", &png, "--kind", "after"]);
    let kind_of_png = photos(&v)
        .iter()
        .find(|p| p["width"] == json!(512))
        .map(|p| p["kind"].clone());
    assert_eq!(kind_of_png, Some(json!("after")), "--kind after: {v}");
    assert_eq!(event_count(&v), 3);
    // The edit that resolves an incident takes an "after" photo by default: the handheld
    // resolves only once its platform accepted the case, in `relay_cli.rs`'s closed loop.
}

#[test]
fn refusals_name_the_incident_and_bare_gridsync_says_what_is_missing() {
    let (gs, _) = Gs::init();
    let id = gs.report(&["--category", "garbage", "--description", "where"]);
    let line = gs.fail(&["edit", &id, "--score", "9"]);
    assert!(line.contains(&id) && line.contains("score 9"), "{line}");

    let out = command(gs.dir.path()).output().expect("run gridsync");
    let line = expect_one_line_failure(&[], &out);
    assert!(line.contains("no command given"), "{line}");
}

#[test]
fn incidents_resolve_by_a_unique_suffix() {
    let (gs, _) = Gs::init();
    let id = gs.report(&["--category", "garbage", "--description", "suffix"]);
    let v = gs.show(&id[id.len() - 6..]);
    assert_eq!(v["id"], json!(id));
}

#[test]
fn thumb_of_an_unknown_photo_is_an_error_not_the_photo() {
    let (gs, _) = Gs::init();
    let id = gs.report(&["--category", "garbage", "--description", "thumbs"]);
    let street = path_str(&fixture(STREET));
    let v = gs.edit(&id, &["--photo", &street]);
    let thumb = str_of(&photos(&v)[0], "thumb").to_owned();
    let out_file = gs.dir.path().join("t.jpg");
    let out_path = path_str(&out_file);
    let line = gs.fail(&["blob", &thumb, "--thumb", "-o", &out_path]);
    assert!(line.contains("thumbnail"), "{line}");
    assert!(!out_file.exists());
}

#[test]
fn an_endless_photo_stream_is_cut_at_the_byte_limit() {
    let (gs, _) = Gs::init();
    let before = gs.status();
    let line = gs.fail(&[
        "report",
        "--category",
        "garbage",
        "--description",
        "zeros",
        "--photo",
        "/dev/zero",
    ]);
    assert!(
        line.contains("/dev/zero") && line.contains("over the limit"),
        "{line}"
    );
    assert_eq!(gs.status(), before);
}

#[test]
fn invalid_transitions_are_refused_naming_the_allowed_statuses() {
    let (gs, _) = Gs::init();
    let id = gs.report(&["--category", "garbage", "--description", "skip ahead"]);
    let before = gs.show(&id);

    let line = gs.fail(&["edit", &id, "--status", "verified"]);
    assert!(
        line.contains("accepted") && line.contains("rejected"),
        "reported -> verified should list accepted, rejected: {line}"
    );
    assert!(
        line.contains("verified"),
        "names the refused status: {line}"
    );

    // A refused change in a batch refuses the whole batch.
    let line = gs.fail(&["edit", &id, "--comment", "hello", "--status", "closed"]);
    assert!(line.contains("accepted"), "{line}");

    let after = gs.show(&id);
    assert_eq!(after, before, "a refused edit changed the incident");
    assert_eq!(event_count(&after), 1);
}

#[test]
fn unknown_category_is_refused_listing_the_catalogue() {
    let (gs, _) = Gs::init();
    let id = gs.report(&["--category", "garbage", "--description", "x"]);
    let before = gs.snapshot();
    for args in [
        vec!["report", "--category", "unicorns", "--description", "x"],
        vec!["edit", &id, "--category", "unicorns"],
    ] {
        let line = gs.fail(&args);
        assert!(line.contains("unicorns"), "names the bad category: {line}");
        for known in ["garbage", "sewage", "illegal-parking", "other"] {
            assert!(
                line.contains(known),
                "lists the catalogue ({known}): {line}"
            );
        }
        assert_eq!(gs.snapshot(), before, "refused {args:?} changed the store");
    }
    // The catalogue printed by `categories` is what the message lists.
    let cats = gs.ok(&["categories"]);
    assert!(cats.lines().count() >= 10, "categories:\n{cats}");
    let v = gs.edit(&id, &["--category", "sewage"]);
    assert_eq!(v["category"], json!("sewage"));
}

#[test]
fn malformed_grid_on_init_is_refused_in_one_line() {
    let gs = Gs::empty();
    let line = gs.fail(&["init", "--device-name", "patrol-7", "--grid", "11/22"]);
    assert!(line.contains("11/22"), "names the bad grid: {line}");
    assert!(
        !gs.db.exists(),
        "a refused init created {}",
        gs.db.display()
    );
}

#[test]
fn unknown_incident_ids_are_refused() {
    let (gs, _) = Gs::init();
    let id = gs.report(&["--category", "garbage", "--description", "x"]);
    let before = gs.snapshot();
    // A well-formed UUIDv7 that is not in the store.
    let mut unknown = id.clone();
    let last = if unknown.ends_with('0') { "1" } else { "0" };
    unknown.replace_range(35..36, last);
    for args in [
        vec!["show", unknown.as_str()],
        vec!["show", unknown.as_str(), "--json"],
        vec!["edit", unknown.as_str(), "--comment", "x"],
        vec!["show", "ffffffff"],
        vec!["edit", "nope", "--status", "accepted"],
    ] {
        let line = gs.fail(&args);
        assert!(line.contains(args[1]), "names the id {}: {line}", args[1]);
        assert_eq!(gs.snapshot(), before, "refused {args:?} changed the store");
    }
}

// ---------------------------------------------------------------------------------------------
// blob
// ---------------------------------------------------------------------------------------------

#[test]
fn blob_writes_to_stdout_when_piped_and_refuses_unknown_hashes() {
    let (gs, _) = Gs::init();
    let id = gs.report_photos("blob", &[&fixture(STREET)]);
    let v = gs.show(&id);
    let hash = str_of(only_photo(&v), "hash");
    let out = gs.run(&["blob", hash]);
    assert!(out.status.success(), "blob to a pipe: {out:?}");
    assert_eq!(sha256_hex(&out.stdout), hash, "blob to stdout");
    assert_eq!(out.stdout, gs.blob(hash, false), "stdout vs -o");

    let unknown = "0".repeat(64);
    let line = gs.fail(&["blob", &unknown, "-o", "x.jpg"]);
    assert!(line.contains(&unknown), "names the hash: {line}");
    assert!(
        !gs.dir.path().join("x.jpg").exists(),
        "a refused blob wrote its output file"
    );
}

// ---------------------------------------------------------------------------------------------
// Things that are not a gridsync store
// ---------------------------------------------------------------------------------------------

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Runs every store-opening command against `path` and checks each fails in one line naming
/// it, leaving the file byte-identical and no side files behind.
fn assert_refused_untouched(gs: &Gs, path: &Path) {
    let bytes = std::fs::read(path).expect("read file");
    let listing = dir_listing(gs.dir.path());
    let name = path.file_name().expect("file name").to_string_lossy();
    let photo = path_str(&fixture(STREET));
    let commands: [&[&str]; 7] = [
        &["list", "--json"],
        &["list"],
        &["id"],
        &["status", "--json"],
        &[
            "report",
            "--category",
            "garbage",
            "--description",
            "x",
            "--photo",
            &photo,
        ],
        &["show", "01a217b5-70d6-7e8f-9c02-d859315a3a79"],
        &["init", "--device-name", "patrol-7", "--grid", GRID],
    ];
    for args in commands {
        let out = gs.run_with_db(path, args);
        let line = expect_one_line_failure(args, &out);
        assert!(
            line.contains(name.as_ref()),
            "`{}` should name {name}: {line}",
            args.join(" ")
        );
        assert_eq!(
            std::fs::read(path).expect("read file"),
            bytes,
            "`{}` changed {name}",
            args.join(" ")
        );
        assert_eq!(
            dir_listing(gs.dir.path()),
            listing,
            "`{}` left files behind",
            args.join(" ")
        );
    }
}

#[test]
fn a_text_file_is_not_a_store_and_is_left_alone() {
    let gs = Gs::empty();
    let path = gs.dir.path().join("notes.txt");
    std::fs::write(&path, "shopping list:\n- bin bags\n- gloves\n").expect("write");
    let args = ["list", "--json"];
    let line = expect_one_line_failure(&args, &gs.run_with_db(&path, &args));
    assert!(
        line.contains("not a gridsync store"),
        "says what is wrong: {line}"
    );
    assert_refused_untouched(&gs, &path);
}

#[test]
fn a_foreign_sqlite_file_is_not_a_store_and_is_left_alone() {
    let gs = Gs::empty();
    let path = gs.dir.path().join("other-app.sqlite");
    let conn = rusqlite::Connection::open(&path).expect("create the SQLite file");
    conn.execute_batch(
        "create table notes (id integer primary key, text text);
         insert into notes (text) values ('hello');",
    )
    .expect("fill the SQLite file");
    conn.close()
        .map_err(|(_, e)| e)
        .expect("close the SQLite file");
    let head = std::fs::read(&path).expect("read");
    assert!(head.starts_with(b"SQLite format 3\0"), "not an SQLite file");

    let args = ["status"];
    let line = expect_one_line_failure(&args, &gs.run_with_db(&path, &args));
    assert!(
        line.contains("not a gridsync store"),
        "says what is wrong: {line}"
    );
    assert_refused_untouched(&gs, &path);
}

#[test]
fn a_missing_store_says_to_run_init() {
    let gs = Gs::empty();
    for args in [
        vec!["list", "--json"],
        vec!["id"],
        vec!["status"],
        vec!["report", "--category", "garbage", "--description", "x"],
    ] {
        let line = gs.fail(&args);
        assert!(line.contains("pda.db"), "names the path: {line}");
        assert!(line.contains("init"), "says to run init: {line}");
        assert!(!gs.db.exists(), "`{}` created the store", args.join(" "));
    }
    // After init, the empty store lists nothing.
    let (gs, _) = Gs::init();
    assert_eq!(gs.list(), Vec::<Value>::new());
    let status = gs.status();
    assert_eq!(status["incidents"], json!(0));
    assert_eq!(status["events"], json!(0));
}

#[test]
fn init_leaves_only_the_store_behind() {
    let (gs, _) = Gs::init();
    let names = dir_listing(gs.dir.path());
    assert!(
        names.iter().all(|n| !n.contains(".init-")),
        "init left a temporary file: {names:?}"
    );
    assert!(gs.db.exists(), "{names:?}");
}

#[test]
fn concurrent_edits_on_one_store_take_turns() {
    let (gs, _) = Gs::init();
    let id = gs.report(&["--category", "garbage", "--description", "race"]);
    let big = path_str(&fixture(BIG));
    let run = |args: &[&str]| {
        command(gs.dir.path())
            .arg("--db")
            .arg(&gs.db)
            .args(args)
            .output()
            .expect("run gridsync")
    };
    // One slow edit (it processes a 12 MP photo between reading the incident and committing)
    // while quick edits of the same field follow one another. Whatever the interleaving, each
    // edit must build on everything committed before it: the handheld never ends in conflict
    // with itself, and no edit is lost.
    let done = std::sync::atomic::AtomicBool::new(false);
    let (slow, quick_ok) = std::thread::scope(|s| {
        let slow = s.spawn(|| {
            let out = run(&[
                "edit",
                &id,
                "--description",
                "slow wording",
                "--photo",
                &big,
            ]);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            out
        });
        let mut quick_ok = 0u64;
        for i in 0..40 {
            if done.load(std::sync::atomic::Ordering::SeqCst) && i > 0 {
                break;
            }
            let text = format!("quick wording {i}");
            if run(&["edit", &id, "--description", &text]).status.success() {
                quick_ok += 1;
            }
        }
        (slow.join().expect("slow edit thread"), quick_ok)
    });
    assert!(slow.status.success(), "the slow edit commits: {slow:?}");
    let v = gs.show(&id);
    assert_eq!(v["conflicts"], json!([]), "{v}");
    // The report, the slow edit's description and photo, one event per quick edit.
    assert_eq!(event_count(&v), 1 + 2 + quick_ok, "{v}");
}

// ---------------------------------------------------------------------------------------------
// Handheld storage: config prune-photos, prune
// ---------------------------------------------------------------------------------------------

#[test]
fn prune_photos_is_off_by_default_persists_and_prune_frees_only_safe_photos() {
    let (gs, _) = Gs::init();
    assert_eq!(
        gs.json(&["config", "--json"]),
        json!({ "prune_photos": false })
    );
    assert_eq!(gs.ok(&["config"]).trim(), "prune-photos  off");
    assert_eq!(
        gs.json(&["config", "prune-photos", "on", "--json"]),
        json!({ "prune_photos": true })
    );
    assert_eq!(
        gs.json(&["config", "--json"]),
        json!({ "prune_photos": true })
    );
    let line = gs.fail(&["config", "prune-photos", "maybe"]);
    assert!(line.contains("maybe"), "names the bad value: {line}");

    let id = gs.report_photos("prune", &[&fixture(STREET)]);
    let v = gs.show(&id);
    let hash = str_of(only_photo(&v), "hash").to_owned();
    let thumb = str_of(only_photo(&v), "thumb").to_owned();
    let photo = gs.blob(&hash, false);
    // Nothing is known safe (no district said so): nothing is pruned.
    assert_eq!(
        gs.json(&["prune", "--json"]),
        json!({ "pruned": 0, "bytes_freed": 0 })
    );
    assert_eq!(gs.blob(&hash, false), photo);

    // As a sync records the relay's `Held` answer (PROTOCOL.md §8.12).
    let conn = rusqlite::Connection::open(&gs.db).expect("open the store");
    conn.execute(
        "INSERT INTO blobs_safe (hash) VALUES (?1)",
        [hex::decode(&hash).expect("hex")],
    )
    .expect("mark safe");
    drop(conn);
    assert_eq!(
        gs.json(&["prune", "--json"]),
        json!({ "pruned": 1, "bytes_freed": photo.len() })
    );
    assert_eq!(
        gs.json(&["prune", "--json"]),
        json!({ "pruned": 0, "bytes_freed": 0 }),
        "idempotent"
    );
    let line = gs.fail(&["blob", &hash, "-o", "x.jpg"]);
    assert!(
        line.contains("pruned after the district confirmed it; fetch it again with --fetch"),
        "{line}"
    );
    assert!(!gs.dir.path().join("x.jpg").exists());
    assert_eq!(
        sha256_hex(&gs.blob(&thumb, false)),
        thumb,
        "the thumbnail stays"
    );
    assert_eq!(sha256_hex(&gs.blob(&hash, true)), thumb);
    gs.ok(&["config", "prune-photos", "off"]);
    assert_eq!(
        gs.json(&["config", "--json"]),
        json!({ "prune_photos": false })
    );
}
