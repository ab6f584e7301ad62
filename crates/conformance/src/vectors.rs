//! `vectors --dir fixtures/wire`: checks an encoder and decoder written from the spec (the
//! harness's own, [`crate::wire`]) against the golden wire vectors, offline. Each file must
//! decode to the value `fixtures/wire/README.md` documents, and that value must encode to
//! exactly the file's bytes.

use std::path::Path;

use gridsync_core::event::{Payload, Report, Severity};
use gridsync_core::{Event, Hlc, NodeId};

use crate::events::category;
use crate::report::{Outcome, Status};
use crate::wire::{
    self, BlobHeader, BlobInfo, BlobKind, Code, Head, Limits, Msg, NodeRecord, Role, Want,
};

const T0: u64 = 1_764_000_000_000;
const GRID: &str = "110101/002/014/03";
const INCIDENT: &str = "0192f0c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f";

/// A vector's documented value.
enum Value {
    Msg(Msg),
    Header(BlobHeader),
}

fn event(origin: u8, author: &str, wall: u64, payload: Payload) -> Result<Vec<u8>, String> {
    let e = Event {
        origin: NodeId([origin; 32]),
        seq: 1,
        hlc: Hlc::new(wall, 0),
        incident: INCIDENT.parse().map_err(|e| format!("{e}"))?,
        grid: GRID.parse().map_err(|e| format!("{e}"))?,
        author: author.into(),
        payload,
        signature: None,
    };
    gridsync_core::codec::encode_event(&e).map_err(|e| e.to_string())
}

/// The values of README.md's table.
fn documented() -> Result<Vec<(&'static str, Value)>, String> {
    let report = Payload::Reported(Report {
        category: category("garbage").map_err(|f| f.got)?,
        description: "Bags by the gate".into(),
        location: None,
        observed_at: None,
        severity: Severity::Normal,
    });
    let comment = Payload::Commented {
        text: "on it".into(),
    };
    let limits = Limits {
        max_frame: 4_194_304,
        max_batch_events: 512,
        window: 4,
        max_blob: 67_108_864,
    };
    Ok(vec![
        (
            "hello.bin",
            Value::Msg(Msg::Hello {
                versions: vec![1],
                node: [0x11; 32],
                role: wire::Role::Device,
                name: "patrol-7".into(),
            }),
        ),
        (
            "welcome.bin",
            Value::Msg(Msg::Welcome {
                version: 1,
                node: [0x22; 32],
                role: wire::Role::Street,
                name: "street-002".into(),
                scope: GRID.into(),
                now_ms: T0 + 1000,
                heads: vec![Head {
                    origin: [0x11; 32],
                    seq: 300,
                }],
                limits,
            }),
        ),
        (
            "error.bin",
            Value::Msg(Msg::Error {
                code: Code::ClockAhead,
                message: "clock ahead".into(),
            }),
        ),
        (
            "events.bin",
            Value::Msg(Msg::Events {
                batch: 1,
                events: vec![event(0x11, "patrol-7", T0, report)?],
            }),
        ),
        (
            "ack.bin",
            Value::Msg(Msg::Ack {
                batch: 1,
                stored: 1,
                duplicates: 0,
            }),
        ),
        (
            "offer.bin",
            Value::Msg(Msg::Offer {
                blobs: vec![
                    BlobInfo {
                        hash: [0x33; 32],
                        kind: BlobKind::Thumb,
                        size: 18_000,
                    },
                    BlobInfo {
                        hash: [0x44; 32],
                        kind: BlobKind::Photo,
                        size: 245_112,
                    },
                ],
            }),
        ),
        (
            "wants.bin",
            Value::Msg(Msg::Wants {
                wants: vec![
                    Want {
                        hash: [0x33; 32],
                        offset: 0,
                    },
                    Want {
                        hash: [0x44; 32],
                        offset: 131_072,
                    },
                ],
            }),
        ),
        (
            "blob_stored.bin",
            Value::Msg(Msg::BlobStored { hash: [0x33; 32] }),
        ),
        (
            "blob_partial.bin",
            Value::Msg(Msg::BlobPartial {
                hash: [0x44; 32],
                held: 196_608,
            }),
        ),
        (
            "blob_refused.bin",
            Value::Msg(Msg::BlobRefused {
                hash: [0x44; 32],
                code: Code::BlobMismatch,
                message: "hash mismatch".into(),
            }),
        ),
        ("pull.bin", Value::Msg(Msg::Pull { cursor: 1000 })),
        (
            "down.bin",
            Value::Msg(Msg::Down {
                events: vec![event(0x22, "street-002", T0 + 60_000, comment)?],
                cursor: 1001,
                more: false,
            }),
        ),
        ("bye.bin", Value::Msg(Msg::Bye)),
        (
            "nodes.bin",
            Value::Msg(Msg::Nodes {
                batch: 1,
                // Signed here from the spec (§8.9): the file's signature must be this one.
                records: vec![NodeRecord::signed(
                    &[0x55; 32],
                    [0x11; 32],
                    Role::Device,
                    "110101/002/014/03",
                    T0,
                    None,
                )
                .map_err(|e| e.to_string())?],
            }),
        ),
        ("follow.bin", Value::Msg(Msg::Follow { cursor: 1001 })),
        (
            "fetch.bin",
            Value::Msg(Msg::Fetch {
                hash: [0x44; 32],
                kind: BlobKind::Photo,
                offset: 65_536,
            }),
        ),
        (
            "held_query.bin",
            Value::Msg(Msg::HeldQuery {
                blobs: vec![[0x44; 32], [0x66; 32]],
            }),
        ),
        (
            "held.bin",
            Value::Msg(Msg::Held {
                blobs: vec![[0x44; 32]],
            }),
        ),
        (
            "blob_header.bin",
            Value::Header(BlobHeader {
                hash: [0x44; 32],
                kind: BlobKind::Photo,
                size: 245_112,
                offset: 131_072,
            }),
        ),
    ])
}

fn check_one(dir: &Path, file: &str, value: &Value) -> Result<(), (String, String)> {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).map_err(|e| {
        (
            "a readable file".to_owned(),
            format!("{}: {e}", path.display()),
        )
    })?;
    let Some(body) = bytes.get(4..) else {
        return Err(("a frame".into(), format!("{} bytes", bytes.len())));
    };
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if len != body.len() {
        return Err((
            format!("a length prefix of {}", body.len()),
            format!("{len}"),
        ));
    }
    let encoded = match value {
        Value::Msg(m) => {
            let decoded =
                wire::decode_msg(body).map_err(|e| ("a message".to_owned(), e.to_string()))?;
            if &decoded != m {
                return Err((format!("{m:?}"), format!("{decoded:?}")));
            }
            wire::frame(m.name(), m)
        }
        Value::Header(h) => {
            let decoded = wire::decode_blob_header(body)
                .map_err(|e| ("a blob header".to_owned(), e.to_string()))?;
            if &decoded != h {
                return Err((format!("{h:?}"), format!("{decoded:?}")));
            }
            wire::frame("BlobHeader", h)
        }
    }
    .map_err(|e| ("an encodable value".to_owned(), e.to_string()))?;
    if encoded != bytes {
        let at = encoded
            .iter()
            .zip(&bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(encoded.len().min(bytes.len()));
        return Err((
            "the documented value to encode to the file's bytes".into(),
            format!(
                "first difference at byte {at} ({} bytes encoded, {} in the file)",
                encoded.len(),
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// Checks every documented vector in `dir`; one outcome per file, and one for files in the
/// folder that the table does not list.
pub fn check(dir: &Path) -> Result<Vec<Outcome>, String> {
    let values = documented()?;
    let mut out = Vec::new();
    for (file, value) in &values {
        let (status, expected, got) = match check_one(dir, file, value) {
            Ok(()) => (Status::Pass, String::new(), String::new()),
            Err((e, g)) => (Status::Fail, e, g),
        };
        out.push(Outcome {
            id: format!("vector.{}", file.trim_end_matches(".bin")),
            section: "§14 items 6-7".into(),
            title: format!("{file} decodes to its documented value and re-encodes to its bytes"),
            status,
            expected,
            got,
            ms: 0,
        });
    }
    let listed: Vec<&str> = values.iter().map(|(f, _)| *f).collect();
    let mut extra: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bin") && !listed.contains(&n.as_str()))
        .collect();
    extra.sort();
    out.push(Outcome {
        id: "vector.no-unlisted".into(),
        section: "§14 items 6-7".into(),
        title: "every vector in the folder is one the spec documents".into(),
        status: if extra.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        },
        expected: "no undocumented .bin files".into(),
        got: extra.join(", "),
        ms: 0,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_repository_vectors_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/wire");
        let out = super::check(&dir).expect("check runs");
        let bad: Vec<_> = out
            .iter()
            .filter(|o| o.status != crate::Status::Pass)
            .map(|o| o.line())
            .collect();
        assert!(bad.is_empty(), "{bad:#?}");
        assert_eq!(out.len(), 20);
    }

    #[test]
    fn a_changed_byte_fails_its_vector() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/wire");
        let dir = tempfile::tempdir().expect("tempdir");
        for e in std::fs::read_dir(&src).expect("dir") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), dir.path().join(e.file_name())).expect("copy");
        }
        let pull = dir.path().join("pull.bin");
        let mut bytes = std::fs::read(&pull).expect("read");
        // fb e8 03 (1000) becomes fb e9 03 (1001): still decodes, to another value.
        bytes[7] = 0xe9;
        std::fs::write(&pull, bytes).expect("write");
        std::fs::write(dir.path().join("extra.bin"), b"").expect("write");
        let out = super::check(dir.path()).expect("check runs");
        let failed: Vec<_> = out
            .iter()
            .filter(|o| o.status == crate::Status::Fail)
            .map(|o| o.id.as_str())
            .collect();
        assert_eq!(failed, ["vector.pull", "vector.no-unlisted"]);
    }
}
