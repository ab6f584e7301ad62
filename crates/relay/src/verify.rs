//! `gridsync-relay verify`: whether every event of an incident held here carries its origin's
//! valid signature, and whose key that is as far as this relay knows: its own, a peer
//! enrolled here, a key a trusted node record vouches for (a handheld of a street below,
//! enrolled by that street), or a key it knows nothing of (an origin above it).
//!
//! A valid signature proves that the holder of the origin's key wrote exactly these bytes,
//! whichever relays carried them (`proto/EVENTS.md`, "Signatures").

use gridsync_core::{Event, IncidentId, NodeId, Scope, SignatureError};
use gridsync_proto::directory::{self, StoreDirectory};
use gridsync_proto::{Role, Standing};
use gridsync_store::{Store, StoreError};

/// What a signature check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Signed by the origin's key over exactly these bytes.
    Valid,
    /// No signature (an event stored before signatures, admitted under the migration policy).
    Missing,
    /// The origin is no Ed25519 key.
    BadKey,
    /// The signature does not verify: altered, or signed by another key.
    Invalid,
}

impl SignatureStatus {
    /// The status's name in the CLI's output.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureStatus::Valid => "valid",
            SignatureStatus::Missing => "unsigned",
            SignatureStatus::BadKey => "bad-key",
            SignatureStatus::Invalid => "invalid",
        }
    }
}

/// Whose key an origin is, as this relay knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// This relay's own key (its operator's decisions).
    ThisRelay,
    /// A peer enrolled here (or enrolled once and revoked).
    Peer {
        role: Role,
        scope: Scope,
        revoked: bool,
    },
    /// Not enrolled here, but vouched for by a node record of a relay this one trusts (a
    /// device or relay enrolled at a tier below, PROTOCOL.md §8.9): its role and scope
    /// there, the relay that enrolled it, and its revocation if any.
    Vouched {
        role: Role,
        scope: Scope,
        by: NodeId,
        revoked_after: Option<u64>,
    },
    /// Not enrolled here, and no record this relay trusts vouches for it (an origin above
    /// this relay, say: the district's decisions at a street).
    NotEnrolledHere,
}

/// One event's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCheck {
    pub origin: NodeId,
    pub seq: u64,
    pub author: String,
    /// The payload's kind (`Reported`, `Edited`, ...).
    pub kind: &'static str,
    pub status: SignatureStatus,
    pub signer: Signer,
}

/// Every event of one incident, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub incident: IncidentId,
    pub events: Vec<EventCheck>,
}

impl Verification {
    /// Whether every signature verifies.
    pub fn all_valid(&self) -> bool {
        self.events
            .iter()
            .all(|e| e.status == SignatureStatus::Valid)
    }

    /// How many do not.
    pub fn failures(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.status != SignatureStatus::Valid)
            .count()
    }
}

/// What the trusted node records say of `e`'s origin: the vouch covering its grid (the first
/// one, if several), or none.
fn vouched(store: &Store, me: &NodeId, e: &Event) -> Result<Signer, StoreError> {
    let directory = StoreDirectory { store, me: *me };
    let standing =
        directory::vouches(&directory, &e.origin).map_err(|err| StoreError::CorruptRow {
            path: store.path().to_owned(),
            what: format!("reading node records: {err}"),
        })?;
    let Standing::Vouched(vouches) = standing else {
        return Ok(Signer::ThisRelay);
    };
    Ok(vouches
        .into_iter()
        .find(|v| v.scope.contains(&e.grid))
        .map_or(Signer::NotEnrolledHere, |v| Signer::Vouched {
            role: v.role,
            scope: v.scope,
            by: v.issuer,
            revoked_after: v.revoked_after,
        }))
}

/// Checks every event the store holds of incident `id` (in the store's order); `me` is this
/// relay's node id. Roster events are about no incident (`gridsync_core::roster`) and are
/// left out, even one whose `incident` is this id: an id that only names a roster event has
/// no events here.
pub fn verify_incident(
    store: &Store,
    me: &NodeId,
    id: &IncidentId,
) -> Result<Verification, StoreError> {
    let peers = store.peers()?;
    let events = store
        .events_of(id)?
        .into_iter()
        .filter(|e| !e.payload.is_roster())
        .map(|e| {
            let status = match e.verify() {
                Ok(()) => SignatureStatus::Valid,
                Err(SignatureError::Missing) => SignatureStatus::Missing,
                Err(SignatureError::BadKey) => SignatureStatus::BadKey,
                Err(SignatureError::Invalid | SignatureError::Codec(_)) => SignatureStatus::Invalid,
            };
            let signer = if e.origin == *me {
                Signer::ThisRelay
            } else {
                match peers.iter().find(|p| p.node == e.origin) {
                    Some(p) => Signer::Peer {
                        role: p.role,
                        scope: p.scope.clone(),
                        revoked: p.revoked_ms.is_some(),
                    },
                    None => vouched(store, me, &e)?,
                }
            };
            Ok(EventCheck {
                origin: e.origin,
                seq: e.seq,
                author: e.author.clone(),
                kind: e.payload.kind(),
                status,
                signer,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Verification {
        incident: *id,
        events,
    })
}
