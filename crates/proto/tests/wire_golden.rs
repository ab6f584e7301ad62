//! Golden wire vectors: the bytes in `fixtures/wire/` are protocol version 1 on the wire.
//!
//! Each vector is a complete frame (4-byte big-endian length prefix, version byte `0x01`,
//! bincode body) built here from fixed values. It must encode to exactly the bytes of its file,
//! the file must decode back to an equal value, and that value must re-encode to the same
//! bytes. A mismatch fails; it never rewrites a file. After an *intended* change of the wire
//! format, regenerate with
//!
//! ```text
//! GRIDSYNC_BLESS=1 cargo test -p gridsync-proto --test wire_golden
//! ```
//!
//! then run the test again without the variable (the files are compiled in with
//! `include_bytes!`) and review the diff. See `fixtures/wire/README.md` and
//! `proto/PROTOCOL.md`.
//!
//! The second half checks refusals (truncated, wrong version, oversize, trailing bytes,
//! unknown variants: each a clean error) and feeds fixed-seed pseudo-random bytes and
//! mutations of every vector to the decoders, which must never panic: the stand-in for the
//! cargo-fuzz targets `decode_frame` and `decode_blob_header` in `fuzz/`.

use std::path::PathBuf;

#[path = "../../core/tests/bytes/mod.rs"]
mod bytes;
use bytes::XorShift;

use gridsync_core::codec::{self, CodecError, FORMAT_V1, MAX_ENCODED};
use gridsync_core::{
    BlobHash, Category, Event, Hlc, IncidentId, NodeId, Payload, Report, Severity,
};
use gridsync_proto::frame::{self, decode_blob_header, decode_body};
use gridsync_proto::server::ServerConfig;
use gridsync_proto::{
    BlobHeader, BlobInfo, BlobKind, ErrorCode, FrameError, FrameReader, Head, Limits, Message,
    NodeRecord, Role, Want, MAX_FRAME,
};

// ---- the vectors -------------------------------------------------------------------------

/// The child (a device) in every vector.
const CHILD: NodeId = NodeId([0x11; 32]);
/// The parent (a street relay).
const PARENT: NodeId = NodeId([0x22; 32]);
/// A thumbnail and a photo (fixed bytes standing for SHA-256 digests).
const THUMB: BlobHash = BlobHash([0x33; 32]);
const PHOTO: BlobHash = BlobHash([0x44; 32]);
/// A second photo, asked about in `held_query.bin` and not safe in `held.bin`.
const OTHER_PHOTO: BlobHash = BlobHash([0x66; 32]);
/// 2025-11-24T16:00:00Z in Unix ms.
const T0: u64 = 1_764_000_000_000;
const GRID: &str = "110101/002/014/03";

macro_rules! golden {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/wire/", $name)))),+]
    };
}

/// Every file of `fixtures/wire/`, compiled in.
const GOLDEN: &[(&str, &[u8])] = golden!(
    "hello.bin",
    "welcome.bin",
    "error.bin",
    "events.bin",
    "ack.bin",
    "offer.bin",
    "wants.bin",
    "blob_stored.bin",
    "blob_partial.bin",
    "blob_refused.bin",
    "pull.bin",
    "down.bin",
    "bye.bin",
    "blob_header.bin",
    "nodes.bin",
    "follow.bin",
    "fetch.bin",
    "held_query.bin",
    "held.bin",
    "README.md",
);

/// The vectors whose hex dumps the README shows.
const DUMPED: &[&str] = &["hello.bin", "pull.bin", "down.bin"];
const DUMP_END: &str = "<!-- END HEXDUMP -->";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/wire")
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

/// The file each message variant is pinned by. Exhaustive: a new variant does not compile
/// until it has a vector.
fn file_of(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "hello.bin",
        Message::Welcome { .. } => "welcome.bin",
        Message::Error { .. } => "error.bin",
        Message::Events { .. } => "events.bin",
        Message::Ack { .. } => "ack.bin",
        Message::Offer { .. } => "offer.bin",
        Message::Wants { .. } => "wants.bin",
        Message::BlobStored { .. } => "blob_stored.bin",
        Message::BlobPartial { .. } => "blob_partial.bin",
        Message::BlobRefused { .. } => "blob_refused.bin",
        Message::Pull { .. } => "pull.bin",
        Message::Down { .. } => "down.bin",
        Message::Bye => "bye.bin",
        Message::Nodes { .. } => "nodes.bin",
        Message::Follow { .. } => "follow.bin",
        Message::Fetch { .. } => "fetch.bin",
        Message::HeldQuery { .. } => "held_query.bin",
        Message::Held { .. } => "held.bin",
    }
}

/// The variant index each message has on the wire (declaration order), as PROTOCOL.md lists.
fn index_of(m: &Message) -> u8 {
    match m {
        Message::Hello { .. } => 0,
        Message::Welcome { .. } => 1,
        Message::Error { .. } => 2,
        Message::Events { .. } => 3,
        Message::Ack { .. } => 4,
        Message::Offer { .. } => 5,
        Message::Wants { .. } => 6,
        Message::BlobStored { .. } => 7,
        Message::BlobPartial { .. } => 8,
        Message::BlobRefused { .. } => 9,
        Message::Pull { .. } => 10,
        Message::Down { .. } => 11,
        Message::Bye => 12,
        Message::Nodes { .. } => 13,
        Message::Follow { .. } => 14,
        Message::Fetch { .. } => 15,
        Message::HeldQuery { .. } => 16,
        Message::Held { .. } => 17,
    }
}

fn incident() -> IncidentId {
    "0192f0c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f"
        .parse()
        .expect("incident id")
}

/// The device's first event: a report without location or observed time.
fn uploaded_event() -> Event {
    Event {
        origin: CHILD,
        seq: 1,
        hlc: Hlc::new(T0, 0),
        incident: incident(),
        grid: GRID.parse().expect("grid code"),
        author: "patrol-7".into(),
        payload: Payload::Reported(Report {
            category: Category::from_catalogue("garbage").expect("category"),
            description: "Bags by the gate".into(),
            location: None,
            observed_at: None,
            severity: Severity::Normal,
        }),
        signature: None,
    }
}

/// The street relay's comment on it, as a download carries it.
fn downloaded_event() -> Event {
    Event {
        origin: PARENT,
        seq: 1,
        hlc: Hlc::new(T0 + 60_000, 0),
        incident: incident(),
        grid: GRID.parse().expect("grid code"),
        author: "street-002".into(),
        payload: Payload::Commented {
            text: "on it".into(),
        },
        signature: None,
    }
}

fn enc(e: &Event) -> Vec<u8> {
    codec::encode_event(e).expect("event encodes")
}

/// The parent's default limits, as `ServerConfig::new` sets them.
fn default_limits() -> Limits {
    ServerConfig::new(PARENT, Role::Street, "street-002").limits
}

/// Every control-stream message, one per variant, in variant order.
fn messages() -> Vec<Message> {
    vec![
        Message::Hello {
            versions: vec![1],
            node: CHILD,
            role: Role::Device,
            name: "patrol-7".into(),
        },
        Message::Welcome {
            version: 1,
            node: PARENT,
            role: Role::Street,
            name: "street-002".into(),
            scope: GRID.into(),
            now_ms: T0 + 1_000,
            heads: vec![Head {
                origin: CHILD,
                seq: 300,
            }],
            limits: default_limits(),
        },
        Message::Error {
            code: ErrorCode::ClockAhead,
            message: "clock ahead".into(),
        },
        Message::Events {
            batch: 1,
            events: vec![enc(&uploaded_event())],
        },
        Message::Ack {
            batch: 1,
            stored: 1,
            duplicates: 0,
        },
        Message::Offer {
            blobs: vec![
                BlobInfo {
                    hash: THUMB,
                    kind: BlobKind::Thumb,
                    size: 18_000,
                },
                BlobInfo {
                    hash: PHOTO,
                    kind: BlobKind::Photo,
                    size: 245_112,
                },
            ],
        },
        Message::Wants {
            wants: vec![
                Want {
                    hash: THUMB,
                    offset: 0,
                },
                Want {
                    hash: PHOTO,
                    offset: 131_072,
                },
            ],
        },
        Message::BlobStored { hash: THUMB },
        Message::BlobPartial {
            hash: PHOTO,
            held: 196_608,
        },
        Message::BlobRefused {
            hash: PHOTO,
            code: ErrorCode::BlobMismatch,
            message: "hash mismatch".into(),
        },
        Message::Pull { cursor: 1_000 },
        Message::Down {
            events: vec![enc(&downloaded_event())],
            cursor: 1_001,
            more: false,
        },
        Message::Bye,
        Message::Nodes {
            batch: 1,
            records: vec![node_record()],
        },
        Message::Follow { cursor: 1_001 },
        Message::Fetch {
            hash: PHOTO,
            kind: BlobKind::Photo,
            offset: 65_536,
        },
        Message::HeldQuery {
            blobs: vec![PHOTO, OTHER_PHOTO],
        },
        Message::Held { blobs: vec![PHOTO] },
    ]
}

/// The issuer of the node record in `nodes.bin`: a real key (the record is signed), from
/// the secret seed 55×32.
const ISSUER_SECRET: [u8; 32] = [0x55; 32];

/// A street relay's record enrolling the device 11×32 for its grid.
fn node_record() -> NodeRecord {
    NodeRecord::issue(
        &ISSUER_SECRET,
        CHILD,
        Role::Device,
        GRID.parse().expect("scope"),
        T0,
        None,
    )
    .expect("record encodes")
}

fn blob_header() -> BlobHeader {
    BlobHeader {
        hash: PHOTO,
        kind: BlobKind::Photo,
        size: 245_112,
        offset: 131_072,
    }
}

/// Compares a frame with its golden file; when blessing, rewrites the file instead.
fn check_golden(name: &str, encoded: &[u8]) {
    bytes::check_golden(
        &fixtures(),
        name,
        golden(name),
        encoded,
        blessing(),
        "If the change is intended, regenerate with GRIDSYNC_BLESS=1 (see \
         fixtures/wire/README.md) and bump the protocol version if old peers cannot read it.",
    );
}

// ---- golden checks -----------------------------------------------------------------------

#[test]
fn every_message_encodes_to_its_golden_frame_and_decodes_back() {
    let all = messages();
    assert_eq!(all.len(), 18, "one vector per Message variant");
    for (i, m) in all.iter().enumerate() {
        assert_eq!(
            usize::from(index_of(m)),
            i,
            "messages() is in variant order"
        );
        let name = file_of(m);
        let encoded = frame::encode(m).expect("encodes");
        // The frame: length prefix, version byte, variant index.
        let len = u32::from_be_bytes(encoded[..4].try_into().expect("4 bytes"));
        assert_eq!(len as usize, encoded.len() - 4, "{name}: length prefix");
        assert_eq!(encoded[4], FORMAT_V1, "{name}: version byte");
        assert_eq!(encoded[5], index_of(m), "{name}: variant index");
        assert_eq!(decode_body(&encoded[4..]).as_ref(), Ok(m), "{name}");
        check_golden(name, &encoded);
        if !blessing() {
            let file = golden(name);
            let mut r = FrameReader::default();
            r.push(file);
            let decoded = r
                .next_message()
                .expect("golden frame decodes")
                .expect("golden frame is complete");
            assert_eq!(&decoded, m, "{name}: decodes to the value");
            assert_eq!(r.next_body(), Ok(None), "{name}: exactly one frame");
            r.finish().expect("nothing left over");
            let again = frame::encode(&decoded).expect("re-encodes");
            assert_eq!(again, file, "{name}: re-encodes to the same bytes");
        }
    }
}

/// The record in `nodes.bin` carries its issuer's valid signature over the bytes
/// PROTOCOL.md specifies, and any change to it breaks the signature.
#[test]
fn the_golden_node_record_is_signed_by_its_issuer() {
    let Message::Nodes { records, .. } = decode_body(&golden("nodes.bin")[4..]).expect("decodes")
    else {
        panic!("nodes.bin is not a Nodes message")
    };
    let r = &records[0];
    assert_eq!(r.issuer, NodeId::from_secret(&ISSUER_SECRET));
    assert_eq!(r.verify(), Ok(()));
    let bytes = r.signing_bytes().expect("bytes");
    assert!(bytes.starts_with(b"gridsync-node-v1\0"));
    let mut changed = r.clone();
    changed.scope = "110101/002".parse().expect("scope");
    assert!(changed.verify().is_err());
}

#[test]
fn blob_header_encodes_to_its_golden_frame_and_decodes_back() {
    let h = blob_header();
    let encoded = frame::encode_value("blob header", &h).expect("encodes");
    assert_eq!(decode_blob_header(&encoded[4..]), Ok(h));
    check_golden("blob_header.bin", &encoded);
    if !blessing() {
        let file = golden("blob_header.bin");
        let mut r = FrameReader::new(1024);
        r.push(file);
        // Blob bytes follow the header on the same stream.
        r.push(b"JPEG bytes");
        let body = r.next_body().expect("frame").expect("complete");
        let decoded = decode_blob_header(&body).expect("golden header decodes");
        assert_eq!(decoded, h);
        assert_eq!(r.take_rest(), b"JPEG bytes");
        let again = frame::encode_value("blob header", &decoded).expect("re-encodes");
        assert_eq!(again, file);
    }
}

#[test]
fn the_events_inside_events_and_down_are_core_codec_events() {
    let all = messages();
    let Message::Events { events, .. } = &all[3] else {
        panic!("Events")
    };
    assert_eq!(codec::decode_event(&events[0]), Ok(uploaded_event()));
    let Message::Down { events, .. } = &all[11] else {
        panic!("Down")
    };
    assert_eq!(codec::decode_event(&events[0]), Ok(downloaded_event()));
}

#[test]
fn the_welcome_vector_carries_the_default_limits() {
    assert_eq!(
        default_limits(),
        Limits {
            max_frame: 4 * 1024 * 1024,
            max_batch_events: 512,
            window: 4,
            max_blob: 64 * 1024 * 1024,
        }
    );
    assert_eq!(MAX_FRAME, 4_194_304);
    assert_eq!(MAX_FRAME as usize, MAX_ENCODED);
}

#[test]
fn all_vectors_in_one_stream_survive_any_split() {
    if blessing() {
        return;
    }
    let files: Vec<&[u8]> = messages().iter().map(|m| golden(file_of(m))).collect();
    let stream = files.concat();
    let want = messages();
    for cut in (0..=stream.len()).step_by(7) {
        let mut r = FrameReader::default();
        let mut got = Vec::new();
        for piece in [&stream[..cut], &stream[cut..]] {
            r.push(piece);
            while let Some(m) = r.next_message().expect("decodes") {
                got.push(m);
            }
        }
        assert_eq!(got, want, "cut at {cut}");
        r.finish().expect("nothing left over");
    }
}

#[test]
fn every_vector_file_is_checked_and_no_other_exists() {
    let mut want: Vec<String> = messages().iter().map(|m| file_of(m).to_owned()).collect();
    want.push("blob_header.bin".into());
    want.push("README.md".into());
    want.sort();
    let mut listed: Vec<String> = GOLDEN.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(listed, want, "GOLDEN lists exactly the vectors built here");
    assert_eq!(
        bytes::files_in(&fixtures()),
        want,
        "fixtures/wire holds exactly the vectors"
    );
}

/// The README's hex dumps are the real files (when blessing, they are rewritten).
#[test]
fn readme_hex_dumps_match_the_vectors() {
    let mut readme = std::str::from_utf8(golden("README.md"))
        .expect("UTF-8 README")
        .to_owned();
    let original = readme.clone();
    for name in DUMPED {
        let m = messages()
            .into_iter()
            .find(|m| file_of(m) == *name)
            .expect("a dumped vector");
        let block = format!(
            "```text\n{}```\n",
            bytes::hexdump(&frame::encode(&m).expect("encodes"))
        );
        let begin = format!("<!-- BEGIN HEXDUMP {name} -->\n");
        let start = readme
            .find(&begin)
            .unwrap_or_else(|| panic!("README has the hex dump markers of {name}"))
            + begin.len();
        let end = start
            + readme[start..]
                .find(DUMP_END)
                .expect("README has the end marker");
        if blessing() {
            readme = format!("{}{block}{}", &readme[..start], &readme[end..]);
        } else {
            assert_eq!(
                &readme[start..end],
                block,
                "README hex dump of {name} is stale"
            );
        }
    }
    if blessing() && readme != original {
        std::fs::write(fixtures().join("README.md"), readme).expect("write README");
    }
}

// ---- the layout PROTOCOL.md documents, written out by hand -------------------------------

/// A frame around `body`: 4-byte big-endian length, then the body.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// A second implementation of the encoding of three messages, independent of bincode.
#[test]
fn hello_pull_and_down_match_the_documented_layout() {
    // Hello: variant 0; versions = [1]; node; role Device = 0; name.
    let mut body = vec![0x01, 0x00]; // version byte, variant index 0 = Hello
    body.extend([0x01, 0x01]); // versions: 1 element, u16 1
    body.extend([0x11; 32]); // node: 32 raw bytes, no length
    body.push(0x00); // role: variant 0 = Device
    body.push(0x08); // name: length 8
    body.extend(b"patrol-7");
    assert_eq!(body.len(), 46);
    assert_eq!(
        frame::encode(&messages()[0]).expect("encodes"),
        framed(&body)
    );

    // Pull: variant 10; cursor 1000 = marker 251 + u16 LE 0x03e8.
    let pull = framed(&[0x01, 0x0a, 0xfb, 0xe8, 0x03]);
    assert_eq!(pull, [0, 0, 0, 5, 0x01, 0x0a, 0xfb, 0xe8, 0x03]);
    assert_eq!(frame::encode(&messages()[10]).expect("encodes"), pull);

    // Down: variant 11; events = [one event]; cursor 1001; more = false.
    let event = enc(&downloaded_event());
    let mut want_event = vec![0x01]; // the event's own version byte
    want_event.extend([0x22; 32]); // origin
    want_event.push(0x01); // seq 1
    want_event.push(0xfd); // hlc.wall_ms: marker 253 + u64 LE
    want_event.extend((T0 + 60_000).to_le_bytes());
    want_event.push(0x00); // hlc.logical 0
    want_event.push(0x10); // incident: 16-byte byte string
    want_event.extend(incident().0.as_bytes());
    want_event.push(0x11); // grid: length 17
    want_event.extend(GRID.as_bytes());
    want_event.push(0x0a); // author: length 10
    want_event.extend(b"street-002");
    want_event.push(0x07); // payload: variant 7 = Commented
    want_event.push(0x05); // text: length 5
    want_event.extend(b"on it");
    want_event.push(0x00); // signature: None
    assert_eq!(event, want_event);
    let mut body = vec![0x01, 0x0b]; // version byte, variant index 11 = Down
    body.push(0x01); // events: 1 element
    body.push(event.len() as u8); // that element: a byte string of event.len() (< 251) bytes
    body.extend(&event);
    body.extend([0xfb, 0xe9, 0x03]); // cursor 1001
    body.push(0x00); // more: false
    assert_eq!(
        frame::encode(&messages()[11]).expect("encodes"),
        framed(&body)
    );

    // Bye: variant 12, no fields.
    assert_eq!(
        frame::encode(&Message::Bye).expect("encodes"),
        [0, 0, 0, 2, 0x01, 0x0c]
    );
}

/// The rules PROTOCOL.md gives for bincode 2.0.1 `config::standard()`, checked against the
/// real thing (through the same codec the messages use).
#[test]
fn bincode_rules_are_as_documented() {
    fn body<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let bytes = codec::encode_wire("sample", v).expect("encodes");
        assert_eq!(bytes[0], FORMAT_V1);
        bytes[1..].to_vec()
    }
    fn back<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
        let mut bytes = vec![FORMAT_V1];
        bytes.extend(b);
        codec::decode_wire("sample", &bytes)
    }
    // Unsigned varints, whatever the declared width.
    assert_eq!(body(&0u64), [0]);
    assert_eq!(body(&250u64), [250]);
    assert_eq!(body(&251u64), [251, 251, 0]);
    assert_eq!(body(&1000u16), [251, 0xe8, 0x03]);
    assert_eq!(body(&65_535u32), [251, 0xff, 0xff]);
    assert_eq!(body(&65_536u32), [252, 0, 0, 1, 0]);
    assert_eq!(body(&4_194_304u32), [252, 0, 0, 0x40, 0]);
    assert_eq!(body(&u64::from(u32::MAX)), [252, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(body(&(1u64 << 32)), [253, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(body(&T0), {
        let mut v = vec![253];
        v.extend(T0.to_le_bytes());
        v
    });
    assert_eq!(
        body(&u64::MAX),
        [253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    );
    // u8 is one raw byte, never a varint.
    assert_eq!(body(&255u8), [255]);
    // Decoders accept a wider form than needed ...
    assert_eq!(back::<u64>(&[251, 5, 0]), Ok(5));
    assert_eq!(back::<u64>(&[253, 5, 0, 0, 0, 0, 0, 0, 0]), Ok(5));
    // ... but not a marker wider than the type, nor 254 (u128) for u64, nor 255.
    assert!(back::<u16>(&[252, 1, 0, 0, 0]).is_err());
    assert!(back::<u32>(&[253, 1, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(back::<u64>(&[254, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(back::<u64>(&[255]).is_err());
    // Signed: zigzag, then varint.
    assert_eq!(body(&0i64), [0]);
    assert_eq!(body(&-1i64), [1]);
    assert_eq!(body(&1i64), [2]);
    assert_eq!(body(&-126i64), [251, 251, 0]);
    // bool: one byte 0 or 1; anything else is refused.
    assert_eq!(body(&false), [0]);
    assert_eq!(body(&true), [1]);
    assert!(back::<bool>(&[2]).is_err());
    // f64: 8 bytes IEEE-754 little-endian.
    assert_eq!(body(&1.5f64), 1.5f64.to_le_bytes());
    // Option: 0 = None, 1 + value = Some; other tags are refused.
    assert_eq!(body(&None::<u64>), [0]);
    assert_eq!(body(&Some(300u64)), [1, 251, 0x2c, 0x01]);
    assert!(back::<Option<u64>>(&[2, 0]).is_err());
    // Fixed arrays: raw bytes, no length. Newtype structs: the inner value.
    assert_eq!(body(&[7u8; 32]), [7u8; 32]);
    assert_eq!(body(&NodeId([9; 32])), [9u8; 32]);
    assert_eq!(body(&BlobHash([9; 32])), [9u8; 32]);
    // Sequences and strings: varint count / byte length, then the items / UTF-8.
    assert_eq!(body(&Vec::<u16>::new()), [0]);
    assert_eq!(body(&vec![1u16, 300]), [2, 1, 251, 0x2c, 0x01]);
    assert_eq!(body(&vec![0xabu8; 3]), [3, 0xab, 0xab, 0xab]);
    assert_eq!(body(&"é".to_owned()), [2, 0xc3, 0xa9]);
    assert!(back::<String>(&[1, 0xff]).is_err(), "invalid UTF-8");
    let long = vec![0u8; 300];
    assert_eq!(&body(&long)[..3], [251, 0x2c, 0x01]);
    // Structs: fields in order, no names. Unit variants: the index alone.
    assert_eq!(
        body(&Head {
            origin: NodeId([1; 32]),
            seq: 2
        }),
        {
            let mut v = vec![1u8; 32];
            v.push(2);
            v
        }
    );
    assert_eq!(body(&Role::Device), [0]);
    assert_eq!(body(&Role::Street), [1]);
    assert_eq!(body(&Role::District), [2]);
    assert_eq!(body(&Role::Community), [3]);
    assert_eq!(body(&BlobKind::Photo), [0]);
    assert_eq!(body(&BlobKind::Thumb), [1]);
    assert!(back::<Role>(&[4]).is_err());
    assert!(back::<BlobKind>(&[2]).is_err());
    // A variant index is a u32 varint: 251 + u16 is read as index 251 (unknown here).
    assert!(back::<Role>(&[251, 0, 0]).is_ok(), "index 0 in a wide form");
    assert!(back::<Role>(&[251, 251, 0]).is_err());
    // Types with `try_from = "String"` are strings on the wire, checked on decode.
    let scope: gridsync_core::Scope = "110101/002".parse().expect("scope");
    assert_eq!(body(&scope), body(&"110101/002".to_owned()));
    assert!(back::<gridsync_core::Scope>(&body(&"110101//002".to_owned())).is_err());
    // A UUID: a 16-byte byte string.
    assert_eq!(body(&incident())[0], 16);
}

#[test]
fn error_codes_are_their_variant_indices() {
    for n in 0u16..=16 {
        let code = ErrorCode::from_u16(n).expect("a code");
        assert_eq!(code.as_u16(), n);
        let bytes = codec::encode_wire("code", &code).expect("encodes");
        assert_eq!(bytes, [FORMAT_V1, n as u8], "{code:?} is variant {n}");
    }
    assert_eq!(ErrorCode::from_u16(17), None);
    let transient: Vec<u16> = (0u16..=16)
        .filter_map(ErrorCode::from_u16)
        .filter(|c| c.is_transient())
        .map(ErrorCode::as_u16)
        .collect();
    assert_eq!(transient, [11, 12, 13, 15]);
}

// ---- refusals: every one an error, never a panic -----------------------------------------

fn malformed(r: Result<Message, FrameError>) -> CodecError {
    match r {
        Err(FrameError::Malformed(e)) => e,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn a_truncated_frame_waits_for_more_and_is_an_error_at_the_end_of_the_stream() {
    for m in messages() {
        let frame = frame::encode(&m).expect("encodes");
        for len in 1..frame.len() {
            let mut r = FrameReader::default();
            r.push(&frame[..len]);
            assert_eq!(r.next_body(), Ok(None), "{} cut to {len}", m.name());
            assert!(
                matches!(r.finish(), Err(FrameError::Truncated { have, want }) if have == len && (len < 4 || want == frame.len())),
                "{} cut to {len}",
                m.name()
            );
        }
        // A complete length prefix over a body that is cut short does not decode either.
        let body = &frame[4..];
        for len in 0..body.len() {
            assert!(
                decode_body(&body[..len]).is_err(),
                "{} body cut to {len}",
                m.name()
            );
        }
    }
    assert_eq!(malformed(decode_body(&[])), CodecError::Empty);
}

#[test]
fn a_wrong_version_byte_is_refused() {
    for m in messages() {
        let mut body = frame::encode(&m).expect("encodes")[4..].to_vec();
        for v in [0x00, 0x02, 0x7f, 0xff] {
            body[0] = v;
            assert_eq!(malformed(decode_body(&body)), CodecError::Version(v));
        }
    }
    let mut header =
        frame::encode_value("blob header", &blob_header()).expect("encodes")[4..].to_vec();
    header[0] = 0x02;
    assert_eq!(
        decode_blob_header(&header),
        Err(FrameError::Malformed(CodecError::Version(2)))
    );
}

#[test]
fn an_oversize_length_prefix_is_refused_before_the_body_arrives() {
    for len in [MAX_FRAME + 1, 0x7fff_ffff, u32::MAX] {
        let mut r = FrameReader::default();
        r.push(&len.to_be_bytes());
        assert_eq!(
            r.next_body(),
            Err(FrameError::TooLarge {
                len: u64::from(len),
                limit: MAX_FRAME
            })
        );
    }
    // Exactly the limit is allowed: the reader waits for the body.
    let mut r = FrameReader::default();
    r.push(&MAX_FRAME.to_be_bytes());
    assert_eq!(r.next_body(), Ok(None));
    // A smaller limit (the blob header's 1024 bytes) is enforced the same way; a limit over
    // MAX_FRAME is lowered to it.
    let mut r = FrameReader::new(1024);
    r.push(&1025u32.to_be_bytes());
    assert!(matches!(
        r.next_body(),
        Err(FrameError::TooLarge {
            len: 1025,
            limit: 1024
        })
    ));
    let mut r = FrameReader::new(u32::MAX);
    r.push(&(MAX_FRAME + 1).to_be_bytes());
    assert!(matches!(r.next_body(), Err(FrameError::TooLarge { .. })));
    // The encoder refuses a message over the limit instead of sending it.
    let huge = Message::Events {
        batch: 1,
        events: vec![vec![0u8; MAX_FRAME as usize]],
    };
    assert!(matches!(
        frame::encode(&huge),
        Err(FrameError::Encode { .. })
    ));
}

#[test]
fn trailing_bytes_inside_a_frame_are_refused() {
    for m in messages() {
        let body = frame::encode(&m).expect("encodes")[4..].to_vec();
        for extra in [&[0u8][..], &[0x0c][..], &body[1..]] {
            let mut longer = body.clone();
            longer.extend(extra);
            assert_eq!(
                malformed(decode_body(&longer)),
                CodecError::Trailing(extra.len(), "message"),
                "{}",
                m.name()
            );
        }
    }
    let mut header =
        frame::encode_value("blob header", &blob_header()).expect("encodes")[4..].to_vec();
    header.push(0);
    assert_eq!(
        decode_blob_header(&header),
        Err(FrameError::Malformed(CodecError::Trailing(
            1,
            "blob header"
        )))
    );
}

#[test]
fn unknown_variant_indices_are_refused() {
    // Message variants 14.. (in every varint width).
    for index in [
        &[14u8][..],
        &[250],
        &[251, 14, 0],
        &[252, 0, 0, 0, 1],
        &[255],
    ] {
        let mut body = vec![FORMAT_V1];
        body.extend(index);
        malformed(decode_body(&body));
    }
    // An unknown error code inside Error: the whole message is malformed.
    let mut error = frame::encode(&messages()[2]).expect("encodes")[4..].to_vec();
    assert_eq!(error[2], ErrorCode::ClockAhead.as_u16() as u8);
    error[2] = 17;
    malformed(decode_body(&error));
    // An unknown role in Hello (variant, versions, node, then the role byte).
    let mut hello = frame::encode(&messages()[0]).expect("encodes")[4..].to_vec();
    assert_eq!(hello[2 + 2 + 32], 0);
    hello[2 + 2 + 32] = 4;
    malformed(decode_body(&hello));
    // An unknown blob kind in a header (version, hash, then the kind byte).
    let mut header =
        frame::encode_value("blob header", &blob_header()).expect("encodes")[4..].to_vec();
    assert_eq!(header[1 + 32], 0);
    header[1 + 32] = 2;
    assert!(matches!(
        decode_blob_header(&header),
        Err(FrameError::Malformed(_))
    ));
    // `more` must be 0 or 1.
    let mut down = frame::encode(&messages()[11]).expect("encodes")[4..].to_vec();
    let last = down.len() - 1;
    down[last] = 2;
    malformed(decode_body(&down));
}

#[test]
fn a_lying_length_inside_a_frame_is_refused_without_allocating_it() {
    // Events { batch 1, events: 2^40 elements }.
    let body = [FORMAT_V1, 3, 1, 253, 0, 0, 0, 0, 0, 1, 0, 0];
    malformed(decode_body(&body));
    // Hello with a name claiming u32::MAX bytes.
    let mut hello = vec![FORMAT_V1, 0, 1, 1];
    hello.extend([0x11; 32]);
    hello.extend([0, 252, 0xff, 0xff, 0xff, 0xff]);
    malformed(decode_body(&hello));
}

#[test]
fn a_message_is_not_a_blob_header_and_a_blob_header_is_not_a_message() {
    if !blessing() {
        assert!(decode_body(&golden("blob_header.bin")[4..]).is_err());
    }
    for m in messages() {
        let body = frame::encode(&m).expect("encodes")[4..].to_vec();
        assert!(decode_blob_header(&body).is_err(), "{}", m.name());
    }
}

// ---- never a panic: fixed-seed random bytes and mutated vectors --------------------------

/// Bytes a varint-based format is touchy about.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x02, 0x0c, 0x0d, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];

/// The frames every mutation starts from (built, so blessing from empty files works too).
fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = messages()
        .iter()
        .map(|m| frame::encode(m).expect("encodes"))
        .collect();
    out.push(frame::encode_value("blob header", &blob_header()).expect("encodes"));
    out
}

/// One random edit of `bytes` (see [`bytes::mutate`]); this format's own edit rewrites the
/// length prefix to fit a mutated body, so that the body gets decoded.
fn mutate(bytes: &mut Vec<u8>, rng: &mut XorShift, seeds: &[Vec<u8>]) {
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    bytes::mutate(bytes, rng, &seeds, |bytes, _| {
        let len = bytes.len();
        if len <= 4 {
            return false;
        }
        let body_len = (len - 4) as u32;
        bytes[..4].copy_from_slice(&body_len.to_be_bytes());
        true
    });
}

/// Feeds `bytes` to a `FrameReader` in random pieces and decodes every frame as a message,
/// and each body (and the bytes as a bare body) as a blob header. Whatever decodes must
/// re-encode to bytes that decode to the same value. Returns how many values decoded.
fn exercise(bytes: &[u8], rng: &mut XorShift) -> usize {
    let mut decoded = 0;
    let check_message = |m: Message| {
        let again = frame::encode(&m).expect("a decoded message re-encodes");
        assert_eq!(decode_body(&again[4..]).as_ref(), Ok(&m));
        if let Message::Events { events, .. } | Message::Down { events, .. } = &m {
            for e in events {
                let _ = codec::decode_event(e);
            }
        }
        1
    };
    let mut r = FrameReader::new(if rng.below(2) == 0 { MAX_FRAME } else { 1024 });
    let mut rest = bytes;
    'feed: while !rest.is_empty() {
        let n = 1 + rng.below(rest.len());
        r.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match r.next_body() {
                Ok(Some(body)) => {
                    if let Ok(m) = decode_body(&body) {
                        decoded += check_message(m);
                    }
                    if let Ok(h) = decode_blob_header(&body) {
                        let again = frame::encode_value("blob header", &h).expect("re-encodes");
                        assert_eq!(decode_blob_header(&again[4..]), Ok(h));
                        decoded += 1;
                    }
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    let _ = r.finish();
    let _ = r.take_rest();
    if let Ok(m) = decode_body(bytes) {
        decoded += check_message(m);
    }
    if let Ok(h) = decode_blob_header(bytes) {
        assert_eq!(
            decode_blob_header(&frame::encode_value("blob header", &h).expect("re-encodes")[4..]),
            Ok(h)
        );
        decoded += 1;
    }
    decoded
}

#[test]
fn random_bytes_never_panic_the_decoders() {
    let mut rng = XorShift::new(0x6772_6964_7779_7265, INTERESTING); // "gridwyre"
    for i in 0..10_000 {
        let len = rng.below(if i % 10 == 0 { 2_000 } else { 120 });
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        // Often a plausible frame start: a small length prefix, then the version byte.
        if bytes.len() > 5 && rng.below(2) == 0 {
            let body_len = (bytes.len() - 4) as u32;
            bytes[..4].copy_from_slice(&body_len.to_be_bytes());
            bytes[4] = FORMAT_V1;
        } else if !bytes.is_empty() && rng.below(3) == 0 {
            bytes[0] = FORMAT_V1;
        }
        exercise(&bytes, &mut rng);
    }
}

#[test]
fn mutated_golden_vectors_never_panic_the_decoders() {
    let seeds = seeds();
    if !blessing() {
        // The seeds are the golden files.
        for (seed, m) in seeds.iter().zip(messages()) {
            assert_eq!(seed.as_slice(), golden(file_of(&m)));
        }
    }
    let mut rng = XorShift::new(0x5eed_c0de_0bad_f00d, INTERESTING);
    let (mut decoded, mut total) = (0, 0);
    for i in 0..14_000 {
        let mut bytes = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut bytes, &mut rng, &seeds);
        }
        decoded += exercise(&bytes, &mut rng);
        total += 1;
    }
    // Not every mutation is fatal: some still decode and get re-encoded.
    assert!(
        decoded > 500,
        "only {decoded} values decoded from {total} mutants"
    );
}
