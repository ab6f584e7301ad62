//! Admission rules: the bounds every event must keep, whoever wrote it.
//!
//! Decoding ([`crate::codec`]) already checks what the types hold: a grid code, a category
//! code, a location in range, a sequence number in `1..=2^63-1`. [`check_rules`] checks the
//! rest, the bounds local commands ([`crate::command`]) keep, so that an event a node could
//! never write itself is refused when it arrives from a peer instead of being stored,
//! forwarded and shown. Every receiver (a relay taking an upload, a node taking a download
//! page) checks every event with it right after decoding it. The limits are those of
//! [`crate::event::limits`]; `proto/EVENTS.md` ("Bounds") is the normative list.
//!
//! The rules look at one event alone: nothing here depends on a store, the incident's state,
//! the clock or the workflow.

use crate::event::{limits, Event, FieldValue, Payload, PhotoMeta, Report, StaffEntry, Status};
use crate::ids::{EventId, IncidentId};

/// An event that breaks one of the admission rules. The message names the field and the
/// bound, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The incident id is not a UUIDv7 (version 7, RFC 9562 variant): the nil UUID, a v4, ...
    #[error("incident id {0} is not a UUIDv7 (version 7, RFC 9562 variant)")]
    IncidentId(IncidentId),
    /// A text field that must say something is empty or only whitespace.
    #[error("{field} is empty; it must hold 1 to {limit} bytes")]
    Empty { field: &'static str, limit: usize },
    /// A text field over its byte limit.
    #[error("{field} is {len} bytes, over the limit of {limit}")]
    TooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    /// An evaluation score outside 1..=5.
    #[error("score {0} is outside {min}..={max}", min = limits::MIN_SCORE, max = limits::MAX_SCORE)]
    Score(u8),
    /// A photo's width, height or byte size of 0.
    #[error("photo {field} is 0; it must be at least 1")]
    Photo { field: &'static str },
    /// A `pred` or `removes` list longer than [`limits::MAX_REFS`].
    #[error("{field} names {len} events, over the limit of {limit}", limit = limits::MAX_REFS)]
    TooManyRefs { field: &'static str, len: usize },
}

/// Checks `event` against every admission rule (see the module docs); the first rule broken
/// is returned.
pub fn check_rules(event: &Event) -> Result<(), RuleError> {
    check_incident(&event.incident)?;
    check_text("author", &event.author, false, limits::MAX_AUTHOR_BYTES)?;
    check_payload(&event.payload)
}

/// The rules that concern the payload alone (what [`crate::command`] checks its plans with).
pub fn check_payload(payload: &Payload) -> Result<(), RuleError> {
    match payload {
        Payload::Reported(Report { description, .. }) => check_description(description),
        Payload::Edited { value, pred } => {
            if let FieldValue::Description(d) = value {
                check_description(d)?;
            }
            check_refs("pred", pred)
        }
        Payload::PhotoAdded(meta) => check_photo(meta),
        Payload::PhotoRemoved { removes, .. } => check_refs("removes", removes),
        Payload::StatusChanged { pred, .. } => check_refs("pred", pred),
        Payload::Escalated { reason, pred, .. } => {
            check_text("reason", reason, true, limits::MAX_TEXT_BYTES)?;
            check_refs("pred", pred)
        }
        Payload::Assigned { assignee, pred, .. } => {
            check_text("assignee", assignee, false, limits::MAX_TEXT_BYTES)?;
            check_refs("pred", pred)
        }
        Payload::Commented { text } => check_text("comment", text, false, limits::MAX_TEXT_BYTES),
        Payload::Evaluated { score, pred, .. } => {
            if !(limits::MIN_SCORE..=limits::MAX_SCORE).contains(score) {
                return Err(RuleError::Score(*score));
            }
            check_refs("pred", pred)
        }
        Payload::StaffSet(StaffEntry { name, phone, .. }) => {
            check_staff_name(name)?;
            match phone {
                Some(p) => check_text("phone", p, true, limits::MAX_PHONE_BYTES),
                None => Ok(()),
            }
        }
        Payload::StaffRemoved { name } => check_staff_name(name),
    }
}

fn check_staff_name(name: &str) -> Result<(), RuleError> {
    check_text("name", name, false, limits::MAX_STAFF_NAME_BYTES)
}

/// Whether `payload` is an operator decision, which only a platform (a relay identity) may
/// make: a status change other than a handler's report of handling (`in_progress`,
/// `resolved`), an assignment (dispatch), an escalation, an evaluation, and every change of
/// the grid roster (`StaffSet`, `StaffRemoved`: who serves a grid, and which handheld is
/// whose, is the platform's to say). Reports, edits,
/// photos, comments and a handler's progress are what a handheld writes. `proto/PROTOCOL.md`
/// ("Authorisation") is the normative rule; a device's own library refuses to write a
/// decision, and every relay refuses one whose origin is not a relay.
pub fn is_decision(payload: &Payload) -> bool {
    match payload {
        Payload::StatusChanged { status, .. } => {
            !matches!(status, Status::InProgress | Status::Resolved)
        }
        Payload::Assigned { .. }
        | Payload::Escalated { .. }
        | Payload::Evaluated { .. }
        | Payload::StaffSet(_)
        | Payload::StaffRemoved { .. } => true,
        Payload::Reported(_)
        | Payload::Edited { .. }
        | Payload::PhotoAdded(_)
        | Payload::PhotoRemoved { .. }
        | Payload::Commented { .. } => false,
    }
}

fn check_incident(id: &IncidentId) -> Result<(), RuleError> {
    if id.0.get_version_num() != 7 || id.0.get_variant() != uuid::Variant::RFC4122 {
        return Err(RuleError::IncidentId(*id));
    }
    Ok(())
}

fn check_description(text: &str) -> Result<(), RuleError> {
    check_text("description", text, false, limits::MAX_TEXT_BYTES)
}

/// `may_be_empty` false: blank (empty or only whitespace) is refused, as local commands do.
fn check_text(
    field: &'static str,
    text: &str,
    may_be_empty: bool,
    limit: usize,
) -> Result<(), RuleError> {
    if !may_be_empty && text.trim().is_empty() {
        return Err(RuleError::Empty { field, limit });
    }
    if text.len() > limit {
        return Err(RuleError::TooLong {
            field,
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

fn check_photo(meta: &PhotoMeta) -> Result<(), RuleError> {
    for (field, zero) in [
        ("width", meta.width == 0),
        ("height", meta.height == 0),
        ("bytes", meta.bytes == 0),
    ] {
        if zero {
            return Err(RuleError::Photo { field });
        }
    }
    Ok(())
}

fn check_refs(field: &'static str, ids: &[EventId]) -> Result<(), RuleError> {
    if ids.len() > limits::MAX_REFS {
        return Err(RuleError::TooManyRefs {
            field,
            len: ids.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobHash;
    use crate::event::{Category, Force, Level, PhotoKind, Severity, Status, Verdict};
    use crate::hlc::Hlc;
    use crate::ids::NodeId;

    fn event(payload: Payload) -> Event {
        Event {
            origin: NodeId([0xa1; 32]),
            seq: 1,
            hlc: Hlc::new(1_764_000_000_000, 0),
            incident: IncidentId::new_v7(1_764_000_000_000, [7; 10]),
            grid: "110101/002/014/03".parse().expect("grid"),
            author: "patrol-7".into(),
            payload,
            signature: None,
        }
    }

    fn comment(text: &str) -> Event {
        event(Payload::Commented { text: text.into() })
    }

    fn refs(n: usize) -> Vec<EventId> {
        (1..=n as u64)
            .map(|seq| EventId {
                origin: NodeId([0xb2; 32]),
                seq,
            })
            .collect()
    }

    fn photo(width: u32, height: u32, bytes: u64) -> Event {
        event(Payload::PhotoAdded(PhotoMeta {
            hash: BlobHash::of(b"p"),
            thumb: BlobHash::of(b"t"),
            kind: PhotoKind::Before,
            width,
            height,
            bytes,
            captured_at: None,
        }))
    }

    fn report(description: &str) -> Event {
        event(Payload::Reported(Report {
            category: Category::from_catalogue("garbage").expect("category"),
            description: description.into(),
            location: None,
            observed_at: None,
            severity: Severity::Normal,
        }))
    }

    fn staff(name: &str, phone: Option<&str>) -> Event {
        event(Payload::StaffSet(StaffEntry {
            name: name.into(),
            force: Force::Police,
            phone: phone.map(Into::into),
            device: Some(NodeId([0xc3; 32])),
        }))
    }

    type MakeEvent = dyn Fn(&str) -> Event;

    #[test]
    fn roster_names_are_1_to_64_bytes_and_phones_at_most_32() {
        assert_eq!(
            check_rules(&staff("Wang Fang", Some("13800000000"))),
            Ok(())
        );
        let at = "é".repeat(limits::MAX_STAFF_NAME_BYTES / 2);
        assert_eq!(check_rules(&staff(&at, None)), Ok(()));
        let over = format!("{at}x");
        assert_eq!(
            message(&staff(&over, None)),
            "name is 65 bytes, over the limit of 64"
        );
        assert_eq!(
            message(&staff(" ", None)),
            "name is empty; it must hold 1 to 64 bytes"
        );
        let removed = |name: &str| event(Payload::StaffRemoved { name: name.into() });
        assert_eq!(check_rules(&removed(&at)), Ok(()));
        assert!(matches!(
            check_rules(&removed("")),
            Err(RuleError::Empty { field: "name", .. })
        ));
        assert!(matches!(
            check_rules(&removed(&over)),
            Err(RuleError::TooLong { field: "name", .. })
        ));
        let phone = "1".repeat(limits::MAX_PHONE_BYTES);
        assert_eq!(check_rules(&staff("Li", Some(&phone))), Ok(()));
        assert_eq!(check_rules(&staff("Li", Some(""))), Ok(()));
        assert_eq!(
            message(&staff("Li", Some(&format!("{phone}1")))),
            "phone is 33 bytes, over the limit of 32"
        );
        // A roster event's `incident` is a fresh UUIDv7 like any other.
        let mut e = staff("Li", None);
        e.incident = IncidentId(uuid::Uuid::nil());
        assert!(matches!(check_rules(&e), Err(RuleError::IncidentId(_))));
    }

    #[test]
    fn decisions_are_what_a_platform_decides_and_handling_is_not() {
        for s in Status::ALL {
            let p = Payload::StatusChanged {
                status: *s,
                pred: vec![],
            };
            let handling = matches!(s, Status::InProgress | Status::Resolved);
            assert_eq!(is_decision(&p), !handling, "{s}");
        }
        let decisions = [
            Payload::Assigned {
                assignee: "sanitation".into(),
                due: None,
                pred: vec![],
            },
            Payload::Escalated {
                level: Level::Street,
                reason: String::new(),
                pred: vec![],
            },
            Payload::Evaluated {
                score: 4,
                verdict: Verdict::Satisfied,
                pred: vec![],
            },
        ];
        assert!(decisions.iter().all(is_decision));
        // The roster is the platform's to keep.
        assert!(is_decision(&staff("Wang Fang", None).payload));
        assert!(is_decision(&Payload::StaffRemoved {
            name: "Wang Fang".into()
        }));
        let writes = [
            report("bags").payload,
            photo(1, 1, 1).payload,
            Payload::Commented { text: "ok".into() },
            Payload::Edited {
                value: FieldValue::Severity(Severity::Urgent),
                pred: vec![],
            },
            Payload::PhotoRemoved {
                hash: BlobHash::of(b"p"),
                removes: vec![],
            },
        ];
        assert!(!writes.iter().any(is_decision));
    }

    fn message(e: &Event) -> String {
        check_rules(e).expect_err("refused").to_string()
    }

    #[test]
    fn a_well_formed_event_passes() {
        assert_eq!(check_rules(&comment("ok")), Ok(()));
        assert_eq!(check_rules(&report("Bags by the gate")), Ok(()));
    }

    #[test]
    fn the_incident_id_is_a_uuid_v7() {
        let mut e = comment("ok");
        e.incident = IncidentId(uuid::Uuid::nil());
        assert_eq!(check_rules(&e), Err(RuleError::IncidentId(e.incident)));
        assert!(message(&e).contains("00000000-0000-0000-0000-000000000000"));
        // A version 4 UUID.
        e.incident = "0192f0c1-7a2b-4c3d-8e4f-5a6b7c8d9e0f"
            .parse()
            .expect("uuid");
        assert!(matches!(check_rules(&e), Err(RuleError::IncidentId(_))));
        // Version 7 bits with another variant.
        e.incident = "0192f0c1-7a2b-7c3d-ce4f-5a6b7c8d9e0f"
            .parse()
            .expect("uuid");
        assert!(matches!(check_rules(&e), Err(RuleError::IncidentId(_))));
        // The golden vectors' id.
        e.incident = "0192f0c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f"
            .parse()
            .expect("uuid");
        assert_eq!(check_rules(&e), Ok(()));
    }

    #[test]
    fn the_author_is_one_to_128_bytes() {
        let mut e = comment("ok");
        e.author = "x".repeat(limits::MAX_AUTHOR_BYTES);
        assert_eq!(check_rules(&e), Ok(()));
        e.author.push('x');
        assert_eq!(message(&e), "author is 129 bytes, over the limit of 128");
        e.author = String::new();
        assert_eq!(message(&e), "author is empty; it must hold 1 to 128 bytes");
        e.author = " \t".into();
        assert!(matches!(
            check_rules(&e),
            Err(RuleError::Empty {
                field: "author",
                ..
            })
        ));
        e.author = "a".into();
        assert_eq!(check_rules(&e), Ok(()));
    }

    #[test]
    fn texts_keep_the_text_limit() {
        let at = "é".repeat(limits::MAX_TEXT_BYTES / 2);
        let over = format!("{at}x");
        let cases: [(&str, &MakeEvent); 5] = [
            ("description", &|t: &str| report(t)),
            ("description", &|t: &str| {
                event(Payload::Edited {
                    value: FieldValue::Description(t.into()),
                    pred: vec![],
                })
            }),
            ("comment", &|t: &str| comment(t)),
            ("assignee", &|t: &str| {
                event(Payload::Assigned {
                    assignee: t.into(),
                    due: None,
                    pred: vec![],
                })
            }),
            ("reason", &|t: &str| {
                event(Payload::Escalated {
                    level: Level::Street,
                    reason: t.into(),
                    pred: vec![],
                })
            }),
        ];
        for (field, make) in cases {
            assert_eq!(check_rules(&make(&at)), Ok(()), "{field} at the limit");
            assert_eq!(
                check_rules(&make(&over)),
                Err(RuleError::TooLong {
                    field,
                    len: limits::MAX_TEXT_BYTES + 1,
                    limit: limits::MAX_TEXT_BYTES
                }),
                "{field} one byte over"
            );
            let blank = check_rules(&make("  "));
            if field == "reason" {
                assert_eq!(blank, Ok(()), "a reason may be empty");
                assert_eq!(check_rules(&make("")), Ok(()));
            } else {
                assert_eq!(
                    blank,
                    Err(RuleError::Empty {
                        field,
                        limit: limits::MAX_TEXT_BYTES
                    }),
                    "{field} blank"
                );
            }
        }
    }

    #[test]
    fn the_score_is_one_to_five() {
        let eval = |score| {
            event(Payload::Evaluated {
                score,
                verdict: Verdict::Satisfied,
                pred: vec![],
            })
        };
        for score in 1..=5 {
            assert_eq!(check_rules(&eval(score)), Ok(()));
        }
        assert_eq!(message(&eval(0)), "score 0 is outside 1..=5");
        assert_eq!(message(&eval(6)), "score 6 is outside 1..=5");
        assert_eq!(message(&eval(200)), "score 200 is outside 1..=5");
    }

    #[test]
    fn photos_have_a_size() {
        assert_eq!(check_rules(&photo(1, 1, 1)), Ok(()));
        assert_eq!(check_rules(&photo(u32::MAX, u32::MAX, u64::MAX)), Ok(()));
        assert_eq!(
            message(&photo(0, 1, 1)),
            "photo width is 0; it must be at least 1"
        );
        assert_eq!(
            check_rules(&photo(1, 0, 1)),
            Err(RuleError::Photo { field: "height" })
        );
        assert_eq!(
            check_rules(&photo(1, 1, 0)),
            Err(RuleError::Photo { field: "bytes" })
        );
    }

    #[test]
    fn pred_and_removes_name_at_most_1024_events() {
        let with = |n: usize| -> Vec<Event> {
            vec![
                event(Payload::Edited {
                    value: FieldValue::Severity(Severity::High),
                    pred: refs(n),
                }),
                event(Payload::StatusChanged {
                    status: Status::Accepted,
                    pred: refs(n),
                }),
                event(Payload::Escalated {
                    level: Level::Street,
                    reason: String::new(),
                    pred: refs(n),
                }),
                event(Payload::Assigned {
                    assignee: "sanitation".into(),
                    due: None,
                    pred: refs(n),
                }),
                event(Payload::Evaluated {
                    score: 3,
                    verdict: Verdict::Acceptable,
                    pred: refs(n),
                }),
                event(Payload::PhotoRemoved {
                    hash: BlobHash::of(b"p"),
                    removes: refs(n),
                }),
            ]
        };
        for e in with(limits::MAX_REFS) {
            assert_eq!(check_rules(&e), Ok(()), "{:?}", e.payload);
        }
        for e in with(limits::MAX_REFS + 1) {
            let field = if matches!(e.payload, Payload::PhotoRemoved { .. }) {
                "removes"
            } else {
                "pred"
            };
            assert_eq!(
                check_rules(&e),
                Err(RuleError::TooManyRefs {
                    field,
                    len: limits::MAX_REFS + 1
                })
            );
        }
        assert_eq!(
            message(&with(1025)[0]),
            "pred names 1025 events, over the limit of 1024"
        );
        // Order, duplicates and self-references are not the rules' business.
        let mut dup = refs(3);
        dup.extend(refs(3));
        dup.reverse();
        let mut e = event(Payload::StatusChanged {
            status: Status::Accepted,
            pred: dup,
        });
        if let Payload::StatusChanged { pred, .. } = &mut e.payload {
            pred.push(EventId {
                origin: NodeId([0xa1; 32]),
                seq: 1,
            });
        }
        assert_eq!(check_rules(&e), Ok(()));
    }

    /// With every field at its largest, an event stays well inside the 65 536 bytes a sync
    /// parent accepts (`gridsync_proto::MAX_EVENT_BYTES`); EVENTS.md states this figure.
    #[test]
    fn an_event_at_every_bound_encodes_to_at_most_50512_bytes() {
        let text = "x".repeat(limits::MAX_TEXT_BYTES);
        let pred: Vec<EventId> = (0..limits::MAX_REFS)
            .map(|k| EventId {
                origin: NodeId([k as u8; 32]),
                seq: u64::MAX - k as u64,
            })
            .collect();
        let mut largest = 0;
        for payload in [
            Payload::Assigned {
                assignee: text.clone(),
                due: Some(i64::MIN),
                pred: pred.clone(),
            },
            Payload::Escalated {
                level: Level::District,
                reason: text.clone(),
                pred: pred.clone(),
            },
            Payload::Edited {
                value: FieldValue::Description(text.clone()),
                pred: pred.clone(),
            },
            Payload::Evaluated {
                score: 5,
                verdict: Verdict::Unsatisfied,
                pred: pred.clone(),
            },
            Payload::PhotoRemoved {
                hash: BlobHash::of(b"p"),
                removes: pred.clone(),
            },
        ] {
            let mut e = event(payload);
            e.seq = crate::event::MAX_SEQ;
            e.hlc = Hlc::new(u64::MAX, u32::MAX);
            e.grid = "abcdefghijkl/abcdefghijkl/abcdefghijkl/abcdefghijkl"
                .parse()
                .expect("grid");
            e.author = "a".repeat(limits::MAX_AUTHOR_BYTES);
            e.signature = Some(crate::event::Signature {
                r: [0xff; 32],
                s: [0xff; 32],
            });
            assert_eq!(check_rules(&e), Ok(()));
            let bytes = crate::codec::encode_event(&e).expect("encodes").len();
            largest = largest.max(bytes);
        }
        assert_eq!(largest, 50_512);
    }

    #[test]
    fn every_message_is_one_line() {
        let mut nil = comment("ok");
        nil.incident = IncidentId(uuid::Uuid::nil());
        for e in [
            nil,
            comment(""),
            comment(&"x".repeat(limits::MAX_TEXT_BYTES + 1)),
            photo(0, 0, 0),
        ] {
            let m = message(&e);
            assert!(!m.contains('\n'), "{m}");
        }
    }
}
