//! Deliberate protocol faults a parent session can be told to commit, behind the `faults`
//! cargo feature (off by default): for the conformance harness's broken-relay tests only
//! (`crates/broken-relay`); never set in a real relay.
//!
//! Each fault is checked at exactly one place in the sessions. Without the feature the
//! checks below are constant `false`, and [`crate::server::ServerConfig`] has no `faults`
//! field at all.

use crate::server::ServerConfig;

/// The faults a [`crate::server::ServerSession`] commits on purpose; [`Faults::default`] is
/// none. For the conformance harness's broken-relay tests only; never set in a real relay.
#[cfg(feature = "faults")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Accept, from a device, events whose origin is not the device's own node id (a
    /// correct parent ends the session with `OutOfScope`).
    pub accept_forged_origin: bool,
    /// Skip authorisation (PROTOCOL.md §8.9): take a device's decisions and a relay child's
    /// events whatever the node records say (a correct parent refuses with `NotAuthorised`).
    pub skip_authorisation: bool,
    /// Do not push (PROTOCOL.md §8.10): a held `Follow` is answered only when its hold ends,
    /// whatever commits meanwhile (a correct parent answers at the commit).
    pub no_push: bool,
}

/// Whether a device's events of another origin are accepted (never, without the feature).
#[cfg(feature = "faults")]
pub(crate) fn accept_forged_origin(config: &ServerConfig) -> bool {
    config.faults.accept_forged_origin
}

/// Whether authorisation is skipped (never, without the feature).
#[cfg(feature = "faults")]
pub(crate) fn skip_authorisation(config: &ServerConfig) -> bool {
    config.faults.skip_authorisation
}

/// Whether commits leave a held `Follow` unanswered (never, without the feature).
#[cfg(feature = "faults")]
pub(crate) fn no_push(config: &ServerConfig) -> bool {
    config.faults.no_push
}

/// Whether commits leave a held `Follow` unanswered (never, without the feature).
#[cfg(not(feature = "faults"))]
pub(crate) fn no_push(_config: &ServerConfig) -> bool {
    false
}

/// Whether authorisation is skipped (never, without the feature).
#[cfg(not(feature = "faults"))]
pub(crate) fn skip_authorisation(_config: &ServerConfig) -> bool {
    false
}

/// Whether a device's events of another origin are accepted (never, without the feature).
#[cfg(not(feature = "faults"))]
pub(crate) fn accept_forged_origin(_config: &ServerConfig) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use gridsync_core::{codec, Event, Hlc, IncidentId, NodeId, Payload};

    use super::*;
    use crate::memory::MemoryStore;
    use crate::server::{ServerOutput, ServerSession};
    use crate::testkit::{key_of, relay_store, DEVICE, GRID, OTHER};
    use crate::{ErrorCode, Message, Role};

    const NOW: u64 = 1_790_000_000_000;

    fn event_of(origin: NodeId) -> Vec<u8> {
        let event = Event {
            origin,
            seq: 1,
            hlc: Hlc::new(NOW, 0),
            incident: IncidentId::new_v7(NOW, [7; 10]),
            grid: GRID.parse().expect("grid"),
            author: "patrol-7".into(),
            payload: Payload::Commented {
                text: "a comment".into(),
            },
            signature: None,
        };
        let mut event = event;
        if let Some(key) = key_of(&origin) {
            event.sign(&key).expect("the origin's key");
        }
        codec::encode_event(&event).expect("encodes")
    }

    /// Sends a `Hello` and one batch of `body` as the device; returns what the batch got.
    fn upload(config: ServerConfig, body: Vec<u8>, store: &mut MemoryStore) -> Vec<ServerOutput> {
        let mut s = ServerSession::new(config, DEVICE);
        let hello = Message::Hello {
            versions: crate::VERSIONS.to_vec(),
            node: DEVICE,
            role: Role::Device,
            name: "patrol-7".into(),
        };
        let out = s.handle(hello, store, NOW);
        assert!(
            matches!(
                out.as_slice(),
                [ServerOutput::Send(Message::Welcome { .. })]
            ),
            "{out:?}"
        );
        let batch = Message::Events {
            batch: 1,
            events: vec![body],
        };
        s.handle(batch, store, NOW)
    }

    fn config() -> ServerConfig {
        ServerConfig::new(NodeId([1; 32]), Role::Street, "street-002")
    }

    fn is_ack(out: &[ServerOutput]) -> bool {
        out.iter()
            .any(|o| matches!(o, ServerOutput::Send(Message::Ack { stored: 1, .. })))
    }

    fn refused_out_of_scope(out: &[ServerOutput]) -> bool {
        out.iter().any(|o| {
            matches!(
                o,
                ServerOutput::Send(Message::Error {
                    code: ErrorCode::OutOfScope,
                    ..
                })
            )
        })
    }

    #[test]
    fn a_foreign_origin_from_a_device_is_refused_by_default() {
        let mut store = relay_store();
        let out = upload(config(), event_of(OTHER), &mut store);
        assert!(refused_out_of_scope(&out), "{out:?}");
        assert_eq!(store.events().count(), 0);
        // The device's own event goes through.
        let out = upload(config(), event_of(DEVICE), &mut store);
        assert!(is_ack(&out), "{out:?}");
    }

    #[cfg(feature = "faults")]
    #[test]
    fn no_fault_is_set_by_default() {
        assert_eq!(config().faults, Faults::default());
        assert!(!Faults::default().accept_forged_origin);
    }

    #[cfg(feature = "faults")]
    #[test]
    fn the_forged_origin_fault_acknowledges_a_foreign_origin() {
        let mut store = relay_store();
        let mut faulty = config();
        faulty.faults.accept_forged_origin = true;
        let out = upload(faulty, event_of(OTHER), &mut store);
        assert!(is_ack(&out), "{out:?}");
        assert_eq!(store.events().count(), 1);
        assert_eq!(store.via(&OTHER, 1), Some(DEVICE));
        // The other checks still hold: an event outside the device's grid is refused.
        let mut faulty = config();
        faulty.faults.accept_forged_origin = true;
        let mut outside = codec::decode_event(&event_of(OTHER)).expect("decodes");
        outside.grid = "110101/002/015/01".parse().expect("grid");
        // Signed again by its origin: the scope, not the signature, is what refuses it.
        outside.signature = None;
        outside
            .sign(&key_of(&OTHER).expect("OTHER's key"))
            .expect("signed");
        let body = codec::encode_event(&outside).expect("encodes");
        let out = upload(faulty, body, &mut store);
        assert!(refused_out_of_scope(&out), "{out:?}");
        assert_eq!(store.events().count(), 1);
    }
}
