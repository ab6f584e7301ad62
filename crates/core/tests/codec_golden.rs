//! Golden vectors for the codec: the bytes in `fixtures/codec/` are the wire and storage format.
//!
//! Each vector is built here, deterministically, and must encode to exactly the bytes of its
//! file and decode back to an equal value. A mismatch fails; it never rewrites a file. After an
//! *intended* format change, regenerate with
//!
//! ```text
//! GRIDSYNC_BLESS=1 cargo test -p gridsync-core --test codec_golden
//! ```
//!
//! then run the test again without the variable (the files are compiled in with
//! `include_bytes!`) and review the diff. See `fixtures/codec/README.md`.

use std::path::PathBuf;

use gridsync_core::codec::{self, CodecError, FORMAT_V1, MAX_ENCODED};
use gridsync_core::merge::CommentEntry;
use gridsync_core::{
    BlobHash, Category, Event, EventId, FieldValue, Force, Hlc, IncidentId, IncidentState, Level,
    Location, LocationSource, NodeId, Payload, PhotoKind, PhotoMeta, Report, Severity, Signature,
    StaffEntry, Stamp, Status, Verdict,
};

const NODE_A: NodeId = NodeId([0xA1; 32]);
const NODE_B: NodeId = NodeId([0xB2; 32]);
const T0: u64 = 1_764_000_000_000;

mod bytes;
mod golden;
use golden::GOLDEN;

/// The vector whose hex dump the README shows.
const DUMPED: &str = "event-status-changed.bin";
const DUMP_BEGIN: &str = "<!-- BEGIN HEXDUMP event-status-changed.bin -->\n";
const DUMP_END: &str = "<!-- END HEXDUMP -->";
/// The signed vector, whose signing bytes, key and signature the README shows.
const SIGNED: &str = "event-signed.bin";
const SIGNED_BEGIN: &str = "<!-- BEGIN SIGNED event-signed.bin -->\n";
const SIGNED_END: &str = "<!-- END SIGNED -->";
/// The signer's secret key seed: RFC 8032's first Ed25519 test key (section 7.1, TEST 1),
/// so that its public key can be checked against the RFC.
const SIGNER_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const SIGNER_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/codec")
}

fn blessing() -> bool {
    std::env::var_os("GRIDSYNC_BLESS").is_some_and(|v| v == "1")
}

fn golden(name: &str) -> &'static [u8] {
    GOLDEN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no golden file {name}"))
}

fn incident() -> IncidentId {
    "0192f0c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f"
        .parse()
        .expect("incident id")
}

fn id(origin: NodeId, seq: u64) -> EventId {
    EventId { origin, seq }
}

fn event(origin: NodeId, seq: u64, hlc: Hlc, author: &str, payload: Payload) -> Event {
    Event {
        origin,
        seq,
        hlc,
        incident: incident(),
        grid: "110101/002/014/03".parse().expect("grid code"),
        author: author.to_owned(),
        payload,
        signature: None,
    }
}

fn photo() -> PhotoMeta {
    PhotoMeta {
        hash: BlobHash::of(b"photo-1"),
        thumb: BlobHash::of(b"thumb-1"),
        kind: PhotoKind::Before,
        width: 1200,
        height: 1600,
        bytes: 245_112,
        captured_at: Some(1_763_999_000_000),
    }
}

/// The event vectors, by file name. Together they cover every payload and field kind, small
/// and multi-byte varints, `None` and `Some`, UTF-8 text and a signature.
fn event_vectors() -> Vec<(&'static str, Event)> {
    let a =
        |seq, ms, logical, payload| event(NODE_A, seq, Hlc::new(ms, logical), "patrol-7", payload);
    let b = |seq, ms, logical, payload| {
        event(NODE_B, seq, Hlc::new(ms, logical), "street-center", payload)
    };
    let mut commented = b(
        302,
        T0 + 300_000,
        0,
        Payload::Commented {
            text: "已清理 / cleared".into(),
        },
    );
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    for i in 0..32 {
        r[i] = i as u8;
        s[i] = 0xff - i as u8;
    }
    commented.signature = Some(Signature { r, s });
    vec![
        (
            "event-reported.bin",
            a(
                1,
                T0,
                0,
                Payload::Reported(Report {
                    category: Category::from_catalogue("garbage").expect("category"),
                    description: "Bags piled by the east gate".into(),
                    location: Some(
                        Location::new(39.8927, 116.4284, LocationSource::Exif).expect("location"),
                    ),
                    observed_at: Some(1_763_999_000_000),
                    severity: Severity::High,
                }),
            ),
        ),
        (
            "event-edited-description.bin",
            b(
                300,
                T0 + 123_456,
                7,
                Payload::Edited {
                    value: FieldValue::Description("Bags piled by the east gate, about 20".into()),
                    pred: vec![id(NODE_A, 1)],
                },
            ),
        ),
        (
            "event-edited-category.bin",
            a(
                3,
                T0 + 120_000,
                0,
                Payload::Edited {
                    value: FieldValue::Category(Category::from_catalogue("sewage").expect("c")),
                    pred: vec![id(NODE_A, 1)],
                },
            ),
        ),
        (
            "event-edited-location.bin",
            a(
                4,
                T0 + 130_000,
                1,
                Payload::Edited {
                    value: FieldValue::Location(
                        Location::new(-33.8688, 151.2093, LocationSource::Manual).expect("l"),
                    ),
                    pred: vec![id(NODE_A, 1)],
                },
            ),
        ),
        (
            "event-edited-severity.bin",
            a(
                5,
                T0 + 140_000,
                0,
                Payload::Edited {
                    value: FieldValue::Severity(Severity::Urgent),
                    pred: vec![id(NODE_A, 1), id(NODE_B, 300)],
                },
            ),
        ),
        (
            "event-photo-added.bin",
            a(2, T0, 1, Payload::PhotoAdded(photo())),
        ),
        (
            "event-photo-removed.bin",
            b(
                301,
                T0 + 200_000,
                0,
                Payload::PhotoRemoved {
                    hash: photo().hash,
                    removes: vec![id(NODE_A, 2)],
                },
            ),
        ),
        (
            "event-status-changed.bin",
            a(
                6,
                T0 + 150_000,
                2,
                Payload::StatusChanged {
                    status: Status::Accepted,
                    pred: vec![id(NODE_A, 1)],
                },
            ),
        ),
        (
            "event-escalated.bin",
            a(
                7,
                T0 + 160_000,
                0,
                Payload::Escalated {
                    level: Level::Street,
                    reason: "needs the street office".into(),
                    pred: vec![],
                },
            ),
        ),
        (
            "event-assigned.bin",
            b(
                303,
                T0 + 400_000,
                0,
                Payload::Assigned {
                    assignee: "sanitation".into(),
                    due: Some(1_764_086_400_000),
                    pred: vec![],
                },
            ),
        ),
        ("event-commented.bin", commented),
        (
            "event-evaluated.bin",
            a(
                8,
                T0 + 500_000,
                0,
                Payload::Evaluated {
                    score: 4,
                    verdict: Verdict::Satisfied,
                    pred: vec![],
                },
            ),
        ),
        (
            "event-staff-set.bin",
            roster(
                "0192f0c1-9a00-7c3d-8e4f-5a6b7c8d9e10",
                b(
                    304,
                    T0 + 700_000,
                    0,
                    Payload::StaffSet(StaffEntry {
                        name: "王芳 Wang Fang".into(),
                        force: Force::Police,
                        phone: Some("+86 138 0013 8000".into()),
                        device: Some(NODE_A),
                    }),
                ),
            ),
        ),
        (
            "event-staff-removed.bin",
            roster(
                "0192f0c1-9b00-7c3d-8e4f-5a6b7c8d9e11",
                b(
                    305,
                    T0 + 800_000,
                    1,
                    Payload::StaffRemoved {
                        name: "Li Wei".into(),
                    },
                ),
            ),
        ),
    ]
}

/// A roster event: its `incident` is a fresh UUIDv7 of its own, naming only the event.
fn roster(id: &str, mut e: Event) -> Event {
    e.incident = id.parse().expect("incident id");
    e
}

/// A small state: every vector folded in, plus one description edit concurrent with B's
/// (so the description register holds two heads and shows a conflict).
fn state_vector() -> IncidentState {
    let mut state = IncidentState::new(incident());
    // The roster vectors are about no incident (and carry another id).
    for (_, e) in event_vectors() {
        assert_eq!(state.apply(&e), !e.payload.is_roster());
    }
    let rival = event(
        NODE_A,
        9,
        Hlc::new(T0 + 100_000, 0),
        "patrol-7",
        Payload::Edited {
            value: FieldValue::Description("Bags by the gate".into()),
            pred: vec![id(NODE_A, 1)],
        },
    );
    assert!(state.apply(&rival));
    state
}

fn signer_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(SIGNER_SEED, &mut seed).expect("hex seed");
    seed
}

/// The signed vector: a comment by the RFC 8032 test key's node, signed with it.
fn signed_vector() -> Event {
    let seed = signer_seed();
    let mut e = event(
        NodeId::from_secret(&seed),
        1,
        Hlc::new(T0 + 600_000, 0),
        "patrol-9",
        Payload::Commented {
            text: "Signed by the RFC 8032 test key".into(),
        },
    );
    e.sign(&seed).expect("the seed is the origin's");
    e
}

/// Compares an encoding with its golden file; when blessing, rewrites the file instead.
fn check_golden(name: &str, encoded: &[u8]) {
    bytes::check_golden(
        &fixtures(),
        name,
        golden(name),
        encoded,
        blessing(),
        "If the format change is intended, regenerate with GRIDSYNC_BLESS=1 (see \
         fixtures/codec/README.md) and bump the version byte if old bytes no longer decode.",
    );
}

#[test]
fn events_encode_to_the_golden_bytes_and_decode_back() {
    let mut vectors = event_vectors();
    vectors.push((SIGNED, signed_vector()));
    for (name, value) in &vectors {
        // The vectors are events every receiver admits.
        assert_eq!(gridsync_core::check_rules(value), Ok(()), "{name}");
        let encoded = codec::encode_event(value).expect("encodes");
        assert_eq!(encoded[0], FORMAT_V1);
        assert_eq!(codec::decode_event(&encoded).as_ref(), Ok(value), "{name}");
        check_golden(name, &encoded);
        if !blessing() {
            assert_eq!(
                codec::decode_event(golden(name)).as_ref(),
                Ok(value),
                "{name}"
            );
        }
    }
}

#[test]
fn state_encodes_to_the_golden_bytes_and_decodes_back() {
    let state = state_vector();
    assert_eq!(
        state.view().conflicts.len(),
        1,
        "the state shows a conflict"
    );
    assert!(state.visible_photos().is_empty(), "the photo was removed");
    let encoded = codec::encode_state(&state).expect("encodes");
    assert_eq!(codec::decode_state(&encoded).as_ref(), Ok(&state));
    check_golden("state-small.bin", &encoded);
    if !blessing() {
        let decoded = codec::decode_state(golden("state-small.bin")).expect("golden decodes");
        assert_eq!(decoded, state);
        assert_eq!(
            serde_json::to_value(decoded.view()).expect("json"),
            serde_json::to_value(state.view()).expect("json")
        );
    }
}

#[test]
fn every_vector_file_is_checked_and_no_other_exists() {
    let mut want: Vec<String> = event_vectors()
        .into_iter()
        .map(|(n, _)| n.to_owned())
        .collect();
    want.push(SIGNED.into());
    want.push("state-small.bin".into());
    want.push("README.md".into());
    want.sort();
    let mut listed: Vec<String> = GOLDEN.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(listed, want, "GOLDEN lists exactly the vectors built here");
    assert_eq!(
        bytes::files_in(&fixtures()),
        want,
        "fixtures/codec holds exactly the vectors"
    );
}

/// The README's hex dump is the real file (when blessing, it is rewritten).
#[test]
fn readme_hex_dump_matches_the_vector() {
    let readme = std::str::from_utf8(golden("README.md")).expect("UTF-8 README");
    let dump = bytes::hexdump(&codec::encode_event(&event_vectors()[7].1).expect("encodes"));
    assert_eq!(event_vectors()[7].0, DUMPED);
    let start = readme
        .find(DUMP_BEGIN)
        .expect("README has the hex dump markers")
        + DUMP_BEGIN.len();
    let end = start
        + readme[start..]
            .find(DUMP_END)
            .expect("README has the end marker");
    let block = format!("```text\n{dump}```\n");
    if blessing() {
        if readme[start..end] != block {
            let updated = format!("{}{block}{}", &readme[..start], &readme[end..]);
            std::fs::write(fixtures().join("README.md"), updated).expect("write README");
        }
        return;
    }
    assert_eq!(
        &readme[start..end],
        block,
        "README hex dump of {DUMPED} is stale"
    );
}

/// The README block of the signed vector: what the origin signs, its key and the signature.
fn signed_block() -> String {
    let e = signed_vector();
    let sig = e.signature.expect("signed");
    let message = gridsync_core::signing_bytes(&e).expect("signing bytes");
    format!(
        "secret key seed: {SIGNER_SEED}\npublic key (origin): {}\nsignature r: {}\nsignature s: {}\n\nsigning bytes ({} bytes):\n\n```text\n{}```\n",
        e.origin.to_hex(),
        hex::encode(sig.r),
        hex::encode(sig.s),
        message.len(),
        bytes::hexdump(&message),
    )
}

/// The README's signed-vector block is the real one (when blessing, it is rewritten).
#[test]
fn readme_signature_block_matches_the_vector() {
    let readme = std::str::from_utf8(golden("README.md")).expect("UTF-8 README");
    let start = readme
        .find(SIGNED_BEGIN)
        .expect("README has the signed-vector markers")
        + SIGNED_BEGIN.len();
    let end = start
        + readme[start..]
            .find(SIGNED_END)
            .expect("README has the end marker");
    let block = signed_block();
    if blessing() {
        if readme[start..end] != block {
            let updated = format!("{}{block}{}", &readme[..start], &readme[end..]);
            std::fs::write(fixtures().join("README.md"), updated).expect("write README");
        }
        return;
    }
    assert_eq!(
        &readme[start..end],
        block,
        "README block of {SIGNED} is stale"
    );
}

/// The signed vector verifies, its key is RFC 8032's, its signing bytes are the domain tag
/// and the unsigned encoding, and changing any byte of its content breaks the signature.
#[test]
fn the_signed_vector_verifies_and_any_changed_content_byte_breaks_it() {
    let e = codec::decode_event(golden(SIGNED)).expect("decodes");
    assert_eq!(e.origin.to_hex(), SIGNER_PUBLIC);
    assert_eq!(e.verify(), Ok(()));
    let message = gridsync_core::signing_bytes(&e).expect("signing bytes");
    assert_eq!(&message[..18], b"gridsync-event-v1\0");
    let unsigned_len = message.len() - 18;
    let golden_bytes = golden(SIGNED);
    // The unsigned encoding is the signed one with `00` (None) in place of `01` r s.
    assert_eq!(golden_bytes.len(), unsigned_len + 64);
    assert_eq!(
        &message[18..message.len() - 1],
        &golden_bytes[..unsigned_len - 1]
    );
    assert_eq!(message[message.len() - 1], 0x00);
    assert_eq!(golden_bytes[unsigned_len - 1], 0x01);
    // Every content byte (not the version byte, not the signature): flip it; whatever then
    // still decodes must fail to verify.
    let mut decoded_changes = 0;
    for i in 1..unsigned_len - 1 {
        for flip in [0x01u8, 0x80] {
            let mut bytes = golden_bytes.to_vec();
            bytes[i] ^= flip;
            if let Ok(changed) = codec::decode_event(&bytes) {
                decoded_changes += 1;
                assert!(
                    changed.verify().is_err(),
                    "byte {i} ^ {flip:#04x} still verifies"
                );
            }
        }
    }
    assert!(
        decoded_changes > 50,
        "most flips still decode: {decoded_changes}"
    );
    // And flipping a bit of the signature itself.
    for i in unsigned_len..golden_bytes.len() {
        let mut bytes = golden_bytes.to_vec();
        bytes[i] ^= 0x01;
        let changed = codec::decode_event(&bytes).expect("a signature is any 64 bytes");
        assert!(changed.verify().is_err(), "signature byte {i}");
    }
}

/// The layout the README documents, written out by hand for one vector: a second
/// implementation of the format, independent of bincode.
#[test]
fn status_changed_vector_matches_the_documented_layout() {
    let mut want = vec![0x01]; // version
    want.extend([0xA1; 32]); // origin: 32 raw bytes
    want.push(6); // seq: varint < 251 is one byte
    want.push(253); // hlc.wall_ms: varint marker 253 = u64 follows, little-endian
    want.extend((T0 + 150_000).to_le_bytes());
    want.push(2); // hlc.logical
    want.push(16); // incident: UUID as a 16-byte byte string
    want.extend(incident().0.as_bytes());
    want.push(17); // grid: string = varint length + UTF-8
    want.extend(b"110101/002/014/03");
    want.push(8); // author
    want.extend(b"patrol-7");
    want.push(4); // payload: enum variant index 4 = StatusChanged
    want.push(1); // status: variant index 1 = Accepted
    want.push(1); // pred: sequence length 1
    want.extend([0xA1; 32]); // pred[0].origin
    want.push(1); // pred[0].seq
    want.push(0); // signature: None
    assert_eq!(bytes::hexdump(golden(DUMPED)), bytes::hexdump(&want));

    // Multi-byte varints: seq 300 = marker 251 + u16 LE; logical 7.
    let (_, edited) = &event_vectors()[1];
    let bytes = codec::encode_event(edited).expect("encodes");
    assert_eq!(&bytes[33..36], &[251, 0x2c, 0x01]);
    assert_eq!(bytes[36], 253);
    assert_eq!(&bytes[37..45], &(T0 + 123_456).to_le_bytes());
    assert_eq!(bytes[45], 7);
}

// ---- refusals: every one an `Err`, never a panic ----

fn valid() -> Vec<u8> {
    golden("event-reported.bin").to_vec()
}

fn malformed(r: Result<Event, CodecError>) -> String {
    match r {
        Err(CodecError::Malformed { what, detail }) => {
            assert_eq!(what, "event");
            detail
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// Replaces the one occurrence of `from` in `bytes` by `to`.
fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "exactly one occurrence of {from:02x?}");
    let mut out = bytes[..at[0]].to_vec();
    out.extend(to);
    out.extend(&bytes[at[0] + from.len()..]);
    out
}

#[test]
fn empty_input_is_refused() {
    assert_eq!(codec::decode_event(&[]), Err(CodecError::Empty));
    assert_eq!(codec::decode_state(&[]), Err(CodecError::Empty));
    // A version byte and nothing else.
    assert!(matches!(
        codec::decode_event(&[FORMAT_V1]),
        Err(CodecError::Malformed { .. })
    ));
    assert!(matches!(
        codec::decode_state(&[FORMAT_V1]),
        Err(CodecError::Malformed { .. })
    ));
}

#[test]
fn a_wrong_version_byte_is_refused() {
    for version in [0x00, 0x02, 0x7f, 0xff] {
        let mut bytes = valid();
        bytes[0] = version;
        assert_eq!(
            codec::decode_event(&bytes),
            Err(CodecError::Version(version))
        );
        let mut state = golden("state-small.bin").to_vec();
        state[0] = version;
        assert_eq!(
            codec::decode_state(&state),
            Err(CodecError::Version(version))
        );
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let whole = valid();
    for extra in [&[0u8][..], &[1, 2, 3][..], &whole[..]] {
        let mut bytes = valid();
        bytes.extend(extra);
        assert_eq!(
            codec::decode_event(&bytes),
            Err(CodecError::Trailing(extra.len(), "event"))
        );
        let mut state = golden("state-small.bin").to_vec();
        state.extend(extra);
        assert_eq!(
            codec::decode_state(&state),
            Err(CodecError::Trailing(extra.len(), "incident state"))
        );
    }
}

#[test]
fn every_truncation_is_refused() {
    for (name, bytes) in GOLDEN.iter().filter(|(n, _)| n.ends_with(".bin")) {
        for len in 1..bytes.len() {
            let cut = &bytes[..len];
            assert!(codec::decode_event(cut).is_err(), "{name} cut to {len}");
            assert!(codec::decode_state(cut).is_err(), "{name} cut to {len}");
        }
    }
}

#[test]
fn an_event_is_not_a_state_and_a_state_is_not_an_event() {
    for (name, bytes) in GOLDEN.iter().filter(|(n, _)| n.starts_with("event-")) {
        assert!(codec::decode_state(bytes).is_err(), "{name}");
    }
    assert!(codec::decode_event(golden("state-small.bin")).is_err());
}

#[test]
fn an_invalid_grid_code_inside_valid_bytes_is_refused() {
    // Same length, so every other byte stays valid.
    for bad in [
        &b"110101/002/014/0 "[..],
        b"110101/002/014-03",
        b"110101//02/014/03",
    ] {
        let bytes = patch(&valid(), b"110101/002/014/03", bad);
        let detail = malformed(codec::decode_event(&bytes));
        assert!(detail.contains("110101"), "{detail}");
    }
    // Three segments (length byte adjusted too).
    let bytes = patch(&valid(), b"\x11110101/002/014/03", b"\x0e110101/002/014");
    malformed(codec::decode_event(&bytes));
}

#[test]
fn a_sequence_number_outside_1_to_2_pow_63_minus_1_is_refused() {
    let event = codec::decode_event(&valid()).expect("valid");
    for bad in [0, gridsync_core::event::MAX_SEQ + 1, u64::MAX] {
        let bytes = codec::encode_event(&gridsync_core::Event {
            seq: bad,
            ..event.clone()
        })
        .expect("the encoder does not judge");
        let detail = malformed(codec::decode_event(&bytes));
        assert!(detail.contains("sequence number"), "{detail}");
    }
    let edge = gridsync_core::event::MAX_SEQ;
    let bytes = codec::encode_event(&gridsync_core::Event { seq: edge, ..event }).expect("encodes");
    assert_eq!(
        codec::decode_event(&bytes).expect("the edge decodes").seq,
        edge
    );
}

#[test]
fn an_invalid_category_inside_valid_bytes_is_refused() {
    let bytes = patch(&valid(), b"\x07garbage", b"\x07Garbage");
    malformed(codec::decode_event(&bytes));
    let bytes = patch(&valid(), b"\x07garbage", b"\x00");
    malformed(codec::decode_event(&bytes));
}

#[test]
fn a_nan_or_out_of_range_position_is_refused() {
    let lat = 39.8927f64.to_le_bytes();
    let lon = 116.4284f64.to_le_bytes();
    for bad_lat in [f64::NAN, f64::INFINITY, -f64::INFINITY, 90.5, -91.0] {
        let bytes = patch(&valid(), &lat, &bad_lat.to_le_bytes());
        let detail = malformed(codec::decode_event(&bytes));
        assert!(detail.contains("latitude"), "{detail}");
    }
    for bad_lon in [f64::NAN, 180.0001] {
        let bytes = patch(&valid(), &lon, &bad_lon.to_le_bytes());
        malformed(codec::decode_event(&bytes));
    }
    // The edge of the range is a position.
    let bytes = patch(&valid(), &lat, &(-90.0f64).to_le_bytes());
    let e = codec::decode_event(&bytes).expect("-90 is a latitude");
    let Payload::Reported(r) = e.payload else {
        panic!("not a report")
    };
    assert_eq!(r.location.map(|l| l.lat()), Some(-90.0));
}

#[test]
fn an_over_limit_length_prefix_is_refused() {
    let author = b"\x08patrol-7";
    // Lengths far past the input and past the limit, in every varint width; none may allocate
    // its claimed size or panic.
    let huge: [&[u8]; 5] = [
        &[251, 0xff, 0xff],                                     // u16: 65535
        &[252, 0x01, 0x00, 0x40, 0x00],                         // u32: just over 4 MiB
        &[253, 0, 0, 0, 0, 0, 1, 0, 0],                         // u64: 2^40
        &[253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // u64::MAX
        &[254, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], // u128
    ];
    for len in huge {
        let mut to = len.to_vec();
        to.extend(b"patrol-7");
        let bytes = patch(&valid(), author, &to);
        malformed(codec::decode_event(&bytes));
    }
    // A sequence (pred) claiming 2^40 elements.
    let edited = golden("event-edited-severity.bin");
    // ... pred length, A:1 (32 + 1 bytes), B:300 (32 + 3 bytes), signature tag.
    let pred_len_at = edited.len() - 1 - 35 - 33 - 1;
    assert_eq!(edited[pred_len_at], 2, "pred length byte");
    let mut bytes = edited[..pred_len_at].to_vec();
    bytes.extend([253, 0, 0, 0, 0, 0, 1, 0, 0]);
    bytes.extend(&edited[pred_len_at + 1..]);
    malformed(codec::decode_event(&bytes));
    // The reserved varint marker 255.
    let bytes = patch(&valid(), author, b"\xffpatrol-7");
    malformed(codec::decode_event(&bytes));
}

#[test]
fn input_over_the_size_limit_is_refused() {
    let mut bytes = valid();
    bytes.resize(MAX_ENCODED + 1, 0);
    assert_eq!(
        codec::decode_event(&bytes),
        Err(CodecError::TooLarge(MAX_ENCODED + 1))
    );
    assert_eq!(
        codec::decode_state(&bytes),
        Err(CodecError::TooLarge(MAX_ENCODED + 1))
    );
    // Encoding refuses what decoding would refuse.
    let mut e = event_vectors().remove(0).1;
    e.author = "x".repeat(MAX_ENCODED);
    assert!(codec::encode_event(&e).is_err());
}

/// Whatever the encoder accepts, the decoder reads back (checked without `Debug`-printing
/// megabytes on failure).
#[test]
fn an_event_of_exactly_the_limit_round_trips_and_one_byte_more_is_refused() {
    let mut e = event_vectors().remove(0).1;
    e.author = String::new();
    let base = codec::encode_event(&e).expect("encodes").len();
    // The author's length prefix grows from 1 byte to 5 (marker 252 + u32).
    e.author = "x".repeat(MAX_ENCODED - base - 4);
    let bytes = codec::encode_event(&e).expect("exactly the limit encodes");
    assert_eq!(bytes.len(), MAX_ENCODED);
    match codec::decode_event(&bytes) {
        Ok(back) => assert!(back == e, "decoded event differs"),
        Err(err) => panic!("an encoding of exactly the limit does not decode: {err}"),
    }
    e.author.push('x');
    assert_eq!(
        codec::encode_event(&e).map(|b| b.len()),
        Err(CodecError::TooLarge(MAX_ENCODED + 1))
    );
}

/// A state cache just under the limit made of many small entries (where bincode's internal
/// accounting of decoded sizes runs well ahead of the input's size) still decodes.
#[test]
fn a_state_just_under_the_limit_round_trips() {
    // Empty comments: each one an event id and a comment entry (what `apply` would add),
    // inserted directly to keep this quick in a debug build.
    let state_of = |n: u64| {
        let mut s = IncidentState::new(incident());
        for seq in 1_000..1_000 + n {
            let stamp = Stamp {
                hlc: Hlc::new(T0 + seq, 0),
                origin: NODE_A,
                seq,
            };
            s.events.insert(stamp.id());
            s.comments.insert(
                stamp,
                CommentEntry {
                    author: String::new(),
                    text: String::new(),
                },
            );
        }
        s
    };
    let size = |s: &IncidentState| codec::encode_state(s).expect("encodes").len();
    let (s1, s2) = (size(&state_of(1_000)), size(&state_of(2_000)));
    let per_event = (s2 - s1) / 1_000;
    let n = 1_000 + (MAX_ENCODED - 4_096 - s1) / per_event;
    let state = state_of(n as u64);
    let bytes = codec::encode_state(&state).expect("just under the limit encodes");
    assert!(bytes.len() <= MAX_ENCODED && bytes.len() > MAX_ENCODED - 64 * 1024);
    match codec::decode_state(&bytes) {
        Ok(back) => assert!(back == state, "decoded state differs"),
        Err(err) => panic!(
            "a {}-byte state encoded but does not decode: {err}",
            bytes.len()
        ),
    }
}
