//! Event signatures: every event is signed by its origin's Ed25519 key.
//!
//! The message an origin signs ([`signing_bytes`]) is the domain tag [`SIGNING_DOMAIN`]
//! (`b"gridsync-event-v1\0"`) followed by the core codec encoding of the event with
//! `signature: None` ([`codec::encode_event`]). The signature is plain Ed25519 (RFC 8032)
//! over those bytes with the secret key whose public key is the event's `origin`; verifying
//! uses the strict rules ([`ed25519_dalek::VerifyingKey::verify_strict`]: no small-order keys,
//! no non-canonical `S`). `proto/EVENTS.md`, "Signatures", is the normative text, and
//! `fixtures/codec/event-signed.bin` the golden vector.
//!
//! Signing and verifying are deterministic and read no random source: Ed25519 signatures are
//! derived from the key and the message, and [`verify_batch`] takes its random coefficients
//! from a transcript of its inputs (ed25519-dalek's `batch` feature), not from the OS.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::codec::{self, CodecError};
use crate::event::{Event, Signature};
use crate::ids::NodeId;

/// The domain tag that starts every signed message, so that a signature over an event can
/// never be taken for one over anything else an identity key signs.
pub const SIGNING_DOMAIN: &[u8] = b"gridsync-event-v1\0";

/// Why an event could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The key is not the origin's: its public key is another node id.
    #[error("the signing key belongs to node {}, not to the event's origin {}", key.short(), origin.short())]
    WrongKey { key: NodeId, origin: NodeId },
    /// The event does not encode, so there are no bytes to sign.
    #[error("cannot sign: {0}")]
    Codec(#[from] CodecError),
}

/// Why an event's signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The event carries no signature.
    #[error("the event is not signed")]
    Missing,
    /// The origin is not a valid Ed25519 public key, so nothing can be signed for it.
    #[error("the origin is not a valid Ed25519 public key")]
    BadKey,
    /// The signature is not the origin's over these bytes: the event was altered, or signed
    /// by another key.
    #[error("the signature does not verify against the origin's key")]
    Invalid,
    /// The event does not encode, so there are no bytes to check.
    #[error("cannot verify: {0}")]
    Codec(CodecError),
}

/// The bytes an origin signs for `event`: [`SIGNING_DOMAIN`], then the codec encoding of the
/// event without its signature. Whatever `event.signature` holds does not change them.
pub fn signing_bytes(event: &Event) -> Result<Vec<u8>, CodecError> {
    let mut out = SIGNING_DOMAIN.to_vec();
    out.extend_from_slice(&content_bytes(event)?);
    Ok(out)
}

/// The codec encoding of `event` with `signature: None`: the event's content, which two
/// copies of one event must share whether or not they are signed.
pub fn content_bytes(event: &Event) -> Result<Vec<u8>, CodecError> {
    if event.signature.is_none() {
        return codec::encode_event(event);
    }
    let unsigned = Event {
        signature: None,
        ..event.clone()
    };
    codec::encode_event(&unsigned)
}

impl NodeId {
    /// The node id (the Ed25519 public key) of an Ed25519 secret key seed.
    pub fn from_secret(secret: &[u8; 32]) -> NodeId {
        NodeId(SigningKey::from_bytes(secret).verifying_key().to_bytes())
    }
}

impl Event {
    /// Signs the event with `secret`, replacing any signature it had; refuses a key that is
    /// not the origin's.
    pub fn sign(&mut self, secret: &[u8; 32]) -> Result<(), SignError> {
        let key = SigningKey::from_bytes(secret);
        let public = NodeId(key.verifying_key().to_bytes());
        if public != self.origin {
            return Err(SignError::WrongKey {
                key: public,
                origin: self.origin,
            });
        }
        let sig = key.sign(&signing_bytes(self)?).to_bytes();
        self.signature = Some(to_signature(&sig));
        Ok(())
    }

    /// Checks that the event is signed by its origin's key over its [`signing_bytes`].
    pub fn verify(&self) -> Result<(), SignatureError> {
        let sig = self.signature.as_ref().ok_or(SignatureError::Missing)?;
        let key = VerifyingKey::from_bytes(&self.origin.0).map_err(|_| SignatureError::BadKey)?;
        let message = signing_bytes(self).map_err(SignatureError::Codec)?;
        key.verify_strict(&message, &from_signature(sig))
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Signs `message` with `secret`: plain Ed25519 (RFC 8032). For records other than events
/// that an identity key signs (`gridsync_proto`'s node records); each such record starts its
/// message with a domain tag of its own, as [`SIGNING_DOMAIN`] does for events.
pub fn sign_message(secret: &[u8; 32], message: &[u8]) -> Signature {
    to_signature(&SigningKey::from_bytes(secret).sign(message).to_bytes())
}

/// Checks that `signature` is `key`'s over `message`, with the same strict rules as
/// [`Event::verify`].
pub fn verify_message(
    key: &NodeId,
    message: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::BadKey)?;
    key.verify_strict(message, &from_signature(signature))
        .map_err(|_| SignatureError::Invalid)
}

fn to_signature(bytes: &[u8; 64]) -> Signature {
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&bytes[..32]);
    s.copy_from_slice(&bytes[32..]);
    Signature { r, s }
}

fn from_signature(sig: &Signature) -> ed25519_dalek::Signature {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&sig.r);
    bytes[32..].copy_from_slice(&sig.s);
    ed25519_dalek::Signature::from_bytes(&bytes)
}

/// One event of a batch whose signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {index}: {error}")]
pub struct BatchError {
    /// Its position in the batch.
    pub index: usize,
    pub error: SignatureError,
}

/// Verifies every event's signature in one Ed25519 batch verification (ed25519-dalek's
/// `verify_batch`, deterministic: its coefficients come from a transcript of the inputs);
/// `Ok` only if the batch equation holds; otherwise the first offender in batch order, found
/// by checking one by one.
///
/// The batch equation accepts every signature [`Event::verify`] accepts, but it is not
/// exactly the same rule: a signature made with a small-order (torsion) component, which no
/// RFC 8032 signer produces and only the key's holder could make, may pass a batch and fail
/// the single check, depending on the batch. Admission therefore verifies one by one
/// (`gridsync_proto::Admission`), so that whether an event is validly signed never depends
/// on what it arrived with; this function exists for callers that only need "all good or
/// not" fast, and for the cost measurement in `gridsync-bench`.
pub fn verify_batch(events: &[Event]) -> Result<(), BatchError> {
    let one_by_one = || {
        for (index, e) in events.iter().enumerate() {
            e.verify().map_err(|error| BatchError { index, error })?;
        }
        Ok(())
    };
    let mut messages = Vec::with_capacity(events.len());
    let mut signatures = Vec::with_capacity(events.len());
    let mut keys = Vec::with_capacity(events.len());
    for e in events {
        let (Some(sig), Ok(key), Ok(message)) = (
            e.signature.as_ref(),
            VerifyingKey::from_bytes(&e.origin.0),
            signing_bytes(e),
        ) else {
            // Unsigned, a bad key or no bytes: name the first offender in batch order.
            return one_by_one();
        };
        if key.is_weak() {
            return one_by_one();
        }
        messages.push(message);
        signatures.push(from_signature(sig));
        keys.push(key);
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    if ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok() {
        return Ok(());
    }
    one_by_one()?;
    // The batch equation refused what every single check accepts: it cannot for signatures
    // the single check accepts (but the answer must never be a silent pass).
    Err(BatchError {
        index: 0,
        error: SignatureError::Invalid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Writer;
    use crate::event::Payload;
    use crate::hlc::Hlc;
    use crate::ids::IncidentId;

    const NOW: u64 = 1_764_000_000_000;

    fn comment(secret: &[u8; 32], seq: u64, text: &str) -> Event {
        Writer::signing(secret, "patrol-7", seq, Hlc::default()).write(
            IncidentId::new_v7(NOW, [1; 10]),
            &"110101/002/014/03".parse().expect("grid"),
            Payload::Commented { text: text.into() },
            NOW,
        )
    }

    #[test]
    fn a_signed_event_verifies_and_any_change_breaks_it() {
        let e = comment(&[7; 32], 1, "bags");
        assert!(e.signature.is_some());
        assert_eq!(e.verify(), Ok(()));
        let mut t = e.clone();
        t.payload = Payload::Commented {
            text: "bogs".into(),
        };
        assert_eq!(t.verify(), Err(SignatureError::Invalid));
        let mut t = e.clone();
        t.seq = 2;
        assert_eq!(t.verify(), Err(SignatureError::Invalid));
        let mut t = e.clone();
        t.signature = None;
        assert_eq!(t.verify(), Err(SignatureError::Missing));
        // The same content under another origin: that origin never signed it.
        let mut t = e.clone();
        t.origin = NodeId::from_secret(&[8; 32]);
        assert_eq!(t.verify(), Err(SignatureError::Invalid));
    }

    #[test]
    fn a_signed_message_verifies_only_under_its_key_and_bytes() {
        let sig = sign_message(&[7; 32], b"tag\0record");
        let key = NodeId::from_secret(&[7; 32]);
        assert_eq!(verify_message(&key, b"tag\0record", &sig), Ok(()));
        assert_eq!(
            verify_message(&key, b"tag\0recorD", &sig),
            Err(SignatureError::Invalid)
        );
        let other = NodeId::from_secret(&[8; 32]);
        assert_eq!(
            verify_message(&other, b"tag\0record", &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn signing_refuses_another_nodes_key_and_bad_origins_are_typed() {
        let mut e = comment(&[7; 32], 1, "bags");
        let err = e.sign(&[8; 32]).expect_err("not the origin's key");
        assert!(matches!(err, SignError::WrongKey { .. }), "{err}");
        // Not a curve point (y = 2 has no x on edwards25519).
        let mut bad = [0u8; 32];
        bad[0] = 2;
        e.origin = NodeId(bad);
        assert_eq!(e.verify(), Err(SignatureError::BadKey));
    }

    #[test]
    fn signing_bytes_ignore_the_signature_and_start_with_the_domain() {
        let e = comment(&[7; 32], 1, "bags");
        let mut unsigned = e.clone();
        unsigned.signature = None;
        let bytes = signing_bytes(&e).expect("bytes");
        assert_eq!(bytes, signing_bytes(&unsigned).expect("bytes"));
        assert!(bytes.starts_with(SIGNING_DOMAIN));
        assert_eq!(
            &bytes[SIGNING_DOMAIN.len()..],
            codec::encode_event(&unsigned).expect("encode")
        );
        // Deterministic: signing again gives the same signature.
        let mut again = unsigned.clone();
        again.sign(&[7; 32]).expect("sign");
        assert_eq!(again, e);
    }

    #[test]
    fn batch_verification_agrees_with_one_by_one() {
        let mut events: Vec<Event> = (1..=40)
            .map(|n| comment(&[n as u8; 32], n, &format!("c{n}")))
            .collect();
        assert_eq!(verify_batch(&events), Ok(()));
        assert_eq!(verify_batch(&[]), Ok(()));
        events[17].payload = Payload::Commented { text: "x".into() };
        events[30].signature = None;
        assert_eq!(
            verify_batch(&events),
            Err(BatchError {
                index: 17,
                error: SignatureError::Invalid
            })
        );
        events[17] = comment(&[18; 32], 18, "c18");
        assert_eq!(
            verify_batch(&events),
            Err(BatchError {
                index: 30,
                error: SignatureError::Missing
            })
        );
    }
}
