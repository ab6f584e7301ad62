//! Admission: the one gate every event received from a peer passes before anything stores it.
//!
//! A parent admits a child's `Events` batch, a child admits a parent's `Down` page, both with
//! [`Admission::admit`]: the batch's size, each event's size, its decoding, the core admission
//! rules ([`gridsync_core::check_rules`]), the origin's signature ([`Event::verify`]), whose
//! events the peer may send, the scope, and the
//! bound on how far ahead of `now_ms` a timestamp may be. What passes is an [`Admitted`]
//! batch, which only this module can build; [`SyncStore`](crate::SyncStore)'s commit methods
//! take nothing else, so a store can never be handed an unchecked event and carries no
//! policy of its own (PostgreSQL or SQLite, it only stores).
//!
//! The checks are all made before anything is written, and a batch is admitted whole or
//! refused whole with the first offender: the structural checks event by event in batch
//! order, then the clock bound over the whole batch.

use gridsync_core::codec::{self, CodecError};
use gridsync_core::{hlc, ClockError, Event, GridCode, NodeId, RuleError, Scope, SignatureError};

use crate::directory::{self, AuthError, Records, Standing};
use crate::message::ErrorCode;
use crate::storage::StorageError;

/// Whose events a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origins {
    /// Only this node's (a device sends only its own events).
    Only(NodeId),
    /// Any origin (a relay forwards its scope's events, a parent sends down anyone's).
    Any,
}

/// What a received batch must satisfy: who sent it and what it may hold.
#[derive(Clone, Copy)]
pub struct Admission<'a> {
    /// The peer the batch came from (recorded with the events, so they are not sent back).
    pub from: NodeId,
    /// Every event's grid must lie inside this scope.
    pub scope: &'a Scope,
    /// Whose events the peer may send.
    pub origins: Origins,
    /// Most events in one batch.
    pub max_events: usize,
    /// How far ahead of the receiver's clock an event's timestamp may be, in milliseconds.
    pub max_drift_ms: u64,
    /// The migration opt-in for events written before signatures: an unsigned event whose
    /// timestamp (`hlc.wall_ms`) is before this Unix time in milliseconds is admitted
    /// unsigned. `None` (the default everywhere): every event must be validly signed.
    /// A signed event is always verified, whatever its time.
    pub accept_unsigned_before: Option<u64>,
    /// Who may write what in the batch (PROTOCOL.md §8.9).
    pub authority: Authority<'a>,
}

/// How a batch's events are authorised ([`crate::directory`]).
#[derive(Clone, Copy)]
pub enum Authority<'a> {
    /// From a device: its own events, and no operator decision
    /// ([`crate::directory::authorise_device`]).
    Device,
    /// From a relay child: each event's origin checked against the node records this
    /// directory holds ([`crate::directory::authorise`]).
    Relay(&'a dyn Records),
    /// Not checked here: what comes down from a parent (a child holds no records of the
    /// tiers above), and a node's local hand-over of events it holds.
    Unchecked,
}

impl std::fmt::Debug for Authority<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authority::Device => f.write_str("Device"),
            Authority::Relay(r) => write!(f, "Relay(directory of {})", r.me().short()),
            Authority::Unchecked => f.write_str("Unchecked"),
        }
    }
}

impl std::fmt::Debug for Admission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("from", &self.from)
            .field("scope", &self.scope)
            .field("origins", &self.origins)
            .field("max_events", &self.max_events)
            .field("max_drift_ms", &self.max_drift_ms)
            .field("accept_unsigned_before", &self.accept_unsigned_before)
            .field("authority", &self.authority)
            .finish()
    }
}

/// A batch of events that passed [`Admission::admit`]; nothing else can make one.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    from: NodeId,
    events: Vec<Event>,
}

impl Admitted {
    /// The peer the batch came from.
    pub fn from(&self) -> &NodeId {
        &self.from
    }

    /// The events, in the batch's order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Why a batch was refused, with the first offender. Nothing of the batch may be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("{count} events, over the limit of {limit}")]
    TooMany { count: usize, limit: usize },
    #[error("event {index}: {bytes} bytes, over the {limit}-byte limit of an event")]
    TooLarge {
        index: usize,
        bytes: usize,
        limit: usize,
    },
    #[error("event {index}: {error}")]
    Malformed { index: usize, error: CodecError },
    #[error("event {index} ({}/{seq}): {error}", origin.short())]
    Rules {
        index: usize,
        origin: NodeId,
        seq: u64,
        error: RuleError,
    },
    #[error("event {index} ({}/{seq}) is not signed", origin.short())]
    Unsigned {
        index: usize,
        origin: NodeId,
        seq: u64,
    },
    #[error("event {index} ({}/{seq}): {error}", origin.short())]
    BadSignature {
        index: usize,
        origin: NodeId,
        seq: u64,
        error: SignatureError,
    },
    #[error("event {}/{seq} is not the sender's own", origin.short())]
    NotOwn { origin: NodeId, seq: u64 },
    #[error("event {index}: {error}")]
    NotAuthorised { index: usize, error: AuthError },
    /// The directory could not be read (the receiver's storage failed).
    #[error("reading the node directory: {0}")]
    Directory(StorageError),
    #[error("event {}/{seq} is in grid {grid}, outside the scope {scope}", origin.short())]
    OutOfScope {
        origin: NodeId,
        seq: u64,
        grid: GridCode,
        scope: Scope,
    },
    #[error("event {}/{seq} refused: {error}", origin.short())]
    ClockAhead {
        origin: NodeId,
        seq: u64,
        error: ClockError,
    },
}

impl AdmitError {
    /// The protocol's code for this refusal, as a parent ends the session with it.
    pub fn code(&self) -> ErrorCode {
        match self {
            AdmitError::TooMany { .. } | AdmitError::TooLarge { .. } => ErrorCode::TooLarge,
            AdmitError::Malformed { .. } | AdmitError::Rules { .. } => ErrorCode::Malformed,
            AdmitError::NotOwn { .. } | AdmitError::OutOfScope { .. } => ErrorCode::OutOfScope,
            AdmitError::ClockAhead { .. } => ErrorCode::ClockAhead,
            AdmitError::Unsigned { .. } | AdmitError::BadSignature { .. } => {
                ErrorCode::BadSignature
            }
            AdmitError::NotAuthorised { .. } => ErrorCode::NotAuthorised,
            AdmitError::Directory(_) => ErrorCode::Storage,
        }
    }
}

impl Admission<'_> {
    /// Checks `bodies` (events as the core codec encodes them) against this admission at
    /// time `now_ms`; the events, decoded, if all pass.
    pub fn admit(&self, bodies: &[Vec<u8>], now_ms: u64) -> Result<Admitted, AdmitError> {
        if bodies.len() > self.max_events {
            return Err(AdmitError::TooMany {
                count: bodies.len(),
                limit: self.max_events,
            });
        }
        let mut events = Vec::with_capacity(bodies.len());
        let mut standings = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            if body.len() > crate::MAX_EVENT_BYTES {
                return Err(AdmitError::TooLarge {
                    index,
                    bytes: body.len(),
                    limit: crate::MAX_EVENT_BYTES,
                });
            }
            let event = codec::decode_event(body)
                .map_err(|error| AdmitError::Malformed { index, error })?;
            gridsync_core::check_rules(&event).map_err(|error| AdmitError::Rules {
                index,
                origin: event.origin,
                seq: event.seq,
                error,
            })?;
            self.check_signature(index, &event)?;
            if let Origins::Only(own) = self.origins {
                if event.origin != own {
                    return Err(AdmitError::NotOwn {
                        origin: event.origin,
                        seq: event.seq,
                    });
                }
            }
            if !self.scope.contains(&event.grid) {
                return Err(AdmitError::OutOfScope {
                    origin: event.origin,
                    seq: event.seq,
                    grid: event.grid.clone(),
                    scope: self.scope.clone(),
                });
            }
            self.authorise(index, &event, &mut standings)?;
            events.push(event);
        }
        // A node with a wrong clock must not win every last-writer-wins race, nor drag the
        // receiver's clock forward.
        for e in &events {
            hlc::check_ahead(e.hlc, now_ms, self.max_drift_ms).map_err(|error| {
                AdmitError::ClockAhead {
                    origin: e.origin,
                    seq: e.seq,
                    error,
                }
            })?;
        }
        Ok(Admitted {
            from: self.from,
            events,
        })
    }

    /// The origin's signature: valid, or (only under the migration opt-in) absent on an
    /// event from before the cutoff. Verified one event at a time
    /// ([`gridsync_core::sign::verify_batch`] explains why not as a batch).
    fn check_signature(&self, index: usize, event: &Event) -> Result<(), AdmitError> {
        match event.verify() {
            Ok(()) => Ok(()),
            Err(SignatureError::Missing) => match self.accept_unsigned_before {
                Some(cutoff) if event.hlc.wall_ms < cutoff => Ok(()),
                _ => Err(AdmitError::Unsigned {
                    index,
                    origin: event.origin,
                    seq: event.seq,
                }),
            },
            Err(error) => Err(AdmitError::BadSignature {
                index,
                origin: event.origin,
                seq: event.seq,
                error,
            }),
        }
    }

    /// Who may write `event`: a device sends no operator decision; a relay child's events
    /// must be vouched for by the directory ([`Admission::authority`]). `standings` caches each origin's standing for
    /// the batch (a batch holds few origins).
    fn authorise(
        &self,
        index: usize,
        event: &Event,
        standings: &mut Vec<(NodeId, Standing)>,
    ) -> Result<(), AdmitError> {
        let refused = |error| AdmitError::NotAuthorised { index, error };
        let records = match self.authority {
            Authority::Device => return directory::authorise_device(event).map_err(refused),
            Authority::Relay(records) => records,
            Authority::Unchecked => return Ok(()),
        };
        let at = match standings.iter().position(|(o, _)| *o == event.origin) {
            Some(at) => at,
            None => {
                let standing =
                    directory::vouches(records, &event.origin).map_err(AdmitError::Directory)?;
                standings.push((event.origin, standing));
                standings.len() - 1
            }
        };
        directory::authorise(event, &standings[at].1).map_err(refused)
    }

    /// [`Admission::admit`] for events at hand already decoded (read from another store, a
    /// hand-over without the network): each is encoded as on the wire and checked the same
    /// way, its size included.
    pub fn admit_events(&self, events: &[Event], now_ms: u64) -> Result<Admitted, AdmitError> {
        let mut bodies = Vec::with_capacity(events.len());
        for (index, e) in events.iter().enumerate() {
            bodies.push(
                codec::encode_event(e).map_err(|error| AdmitError::Malformed { index, error })?,
            );
        }
        self.admit(&bodies, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use gridsync_core::{Hlc, IncidentId, Payload, Writer};

    use super::*;

    const NOW: u64 = 1_790_000_000_000;
    const GRID: &str = "110101/002/014/03";
    const DEVICE_KEY: [u8; 32] = [2; 32];
    const OTHER_KEY: [u8; 32] = [3; 32];

    fn device() -> NodeId {
        NodeId::from_secret(&DEVICE_KEY)
    }

    fn other() -> NodeId {
        NodeId::from_secret(&OTHER_KEY)
    }

    fn comment(key: [u8; 32], seq_clock: Hlc, grid: &str) -> Event {
        Writer::signing(&key, "patrol-7", 1, seq_clock).write(
            IncidentId::new_v7(NOW, [7; 10]),
            &grid.parse().expect("grid"),
            Payload::Commented {
                text: "bags by the gate".into(),
            },
            NOW,
        )
    }

    fn body(e: &Event) -> Vec<u8> {
        codec::encode_event(e).expect("encode")
    }

    fn device_upload(scope: &Scope) -> Admission<'_> {
        Admission {
            from: device(),
            scope,
            origins: Origins::Only(device()),
            max_events: 2,
            max_drift_ms: hlc::DEFAULT_MAX_DRIFT_MS,
            accept_unsigned_before: None,
            authority: crate::admit::Authority::Unchecked,
        }
    }

    #[test]
    fn a_good_batch_is_admitted_whole_and_names_its_sender() {
        let scope: Scope = GRID.parse().unwrap();
        let e = comment(DEVICE_KEY, Hlc::new(NOW, 0), GRID);
        let admitted = device_upload(&scope)
            .admit(&[body(&e)], NOW)
            .expect("admitted");
        assert_eq!(admitted.from(), &device());
        assert_eq!(admitted.events(), std::slice::from_ref(&e));
        assert_eq!(admitted.len(), 1);
        let empty = device_upload(&scope).admit(&[], NOW).expect("empty");
        assert!(empty.is_empty());
    }

    #[test]
    fn each_rule_refuses_with_its_code_and_the_first_offender() {
        let scope: Scope = GRID.parse().unwrap();
        let good = body(&comment(DEVICE_KEY, Hlc::new(NOW, 0), GRID));
        let cases: Vec<(Vec<Vec<u8>>, ErrorCode, String)> = vec![
            (
                vec![good.clone(), good.clone(), good.clone()],
                ErrorCode::TooLarge,
                "3 events, over the limit of 2".to_owned(),
            ),
            (
                vec![good.clone(), vec![0; crate::MAX_EVENT_BYTES + 1]],
                ErrorCode::TooLarge,
                "event 1: 65537 bytes, over the 65536-byte limit of an event".to_owned(),
            ),
            (
                vec![good.clone(), vec![1, 2, 3]],
                ErrorCode::Malformed,
                "event 1: ".to_owned(),
            ),
            (
                vec![body(&comment(OTHER_KEY, Hlc::new(NOW, 0), GRID))],
                ErrorCode::OutOfScope,
                format!("event {}/1 is not the sender's own", other().short()),
            ),
            (
                vec![body(&comment(
                    DEVICE_KEY,
                    Hlc::new(NOW, 0),
                    "110101/002/015/01",
                ))],
                ErrorCode::OutOfScope,
                format!(
                    "event {}/1 is in grid 110101/002/015/01, outside the scope 110101/002/014/03",
                    device().short()
                ),
            ),
            (
                vec![body(&comment(
                    DEVICE_KEY,
                    Hlc::new(NOW + 3_600_000, 0),
                    GRID,
                ))],
                ErrorCode::ClockAhead,
                format!("event {}/1 refused: timestamp ", device().short()),
            ),
        ];
        for (bodies, code, message) in cases {
            let e = device_upload(&scope)
                .admit(&bodies, NOW)
                .expect_err(&message);
            assert_eq!(e.code(), code, "{e}");
            assert!(e.to_string().starts_with(&message), "{e} / {message}");
        }
    }

    #[test]
    fn a_structural_fault_is_reported_before_a_clock_ahead_earlier_in_the_batch() {
        let scope: Scope = GRID.parse().unwrap();
        let ahead = body(&comment(DEVICE_KEY, Hlc::new(NOW + 3_600_000, 0), GRID));
        let e = device_upload(&scope)
            .admit(&[ahead, vec![9]], NOW)
            .expect_err("refused");
        assert_eq!(e.code(), ErrorCode::Malformed, "{e}");
    }

    #[test]
    fn the_drift_bound_is_inclusive_and_any_origin_is_taken_when_allowed() {
        let scope: Scope = "110101/002".parse().unwrap();
        let at_limit = comment(
            OTHER_KEY,
            Hlc::new(NOW + hlc::DEFAULT_MAX_DRIFT_MS, 0),
            GRID,
        );
        let relay = Admission {
            from: NodeId::from_secret(&[9; 32]),
            scope: &scope,
            origins: Origins::Any,
            max_events: usize::MAX,
            max_drift_ms: hlc::DEFAULT_MAX_DRIFT_MS,
            accept_unsigned_before: None,
            authority: crate::admit::Authority::Unchecked,
        };
        assert!(relay.admit(&[body(&at_limit)], NOW).is_ok());
        let past = comment(
            OTHER_KEY,
            Hlc::new(NOW + hlc::DEFAULT_MAX_DRIFT_MS + 1, 0),
            GRID,
        );
        let e = relay.admit(&[body(&past)], NOW).expect_err("one ms past");
        assert!(matches!(e, AdmitError::ClockAhead { seq: 1, .. }), "{e:?}");
    }

    /// An unsigned event, one signed by another key, one altered after signing, and one whose
    /// origin is no Ed25519 key are each refused with `BadSignature`, with their index, after
    /// the rules and before the origin and scope checks.
    #[test]
    fn signatures_are_verified_and_each_fault_is_typed() {
        let scope: Scope = GRID.parse().unwrap();
        let good = comment(DEVICE_KEY, Hlc::new(NOW, 0), GRID);
        let mut unsigned = good.clone();
        unsigned.signature = None;
        let mut other_key = good.clone();
        other_key.signature = comment(OTHER_KEY, Hlc::new(NOW, 0), GRID).signature;
        let mut altered = good.clone();
        altered.payload = Payload::Commented {
            text: "bags by the gate, moved".into(),
        };
        let mut bad_key = good.clone();
        // y = 2 is on no point of edwards25519.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        bad_key.origin = NodeId(not_a_point);
        let cases = [
            (&unsigned, "is not signed"),
            (&other_key, "the signature does not verify"),
            (&altered, "the signature does not verify"),
            (&bad_key, "the origin is not a valid Ed25519 public key"),
        ];
        for (event, message) in cases {
            let e = device_upload(&scope)
                .admit(&[body(&good), body(event)], NOW)
                .expect_err(message);
            assert_eq!(e.code(), ErrorCode::BadSignature, "{e}");
            assert!(e.to_string().starts_with("event 1 ("), "{e}");
            assert!(e.to_string().contains(message), "{e} / {message}");
        }
        // Before the origin check: an altered foreign event is a bad signature, not NotOwn.
        let mut foreign = comment(OTHER_KEY, Hlc::new(NOW, 0), GRID);
        foreign.author = "someone".into();
        let e = device_upload(&scope)
            .admit(&[body(&foreign)], NOW)
            .expect_err("altered");
        assert_eq!(e.code(), ErrorCode::BadSignature, "{e}");
    }

    /// The migration opt-in admits unsigned events from before its cutoff only; a signed event
    /// is verified whatever the cutoff.
    #[test]
    fn unsigned_events_pass_only_under_the_opt_in_and_before_its_cutoff() {
        let scope: Scope = GRID.parse().unwrap();
        let mut old = comment(DEVICE_KEY, Hlc::new(NOW, 0), GRID);
        old.hlc = Hlc::new(NOW - 1_000, 0);
        old.signature = None;
        let mut admission = device_upload(&scope);
        admission.accept_unsigned_before = Some(NOW - 1_000);
        let e = admission
            .admit(&[body(&old)], NOW)
            .expect_err("at the cutoff");
        assert!(matches!(e, AdmitError::Unsigned { index: 0, .. }), "{e:?}");
        admission.accept_unsigned_before = Some(NOW - 999);
        assert!(admission.admit(&[body(&old)], NOW).is_ok());
        let mut altered = comment(DEVICE_KEY, Hlc::new(NOW - 1_000, 0), GRID);
        altered.author = "x".into();
        let e = admission
            .admit(&[body(&altered)], NOW)
            .expect_err("altered");
        assert!(matches!(e, AdmitError::BadSignature { .. }), "{e:?}");
    }
}
