//! The directory: which keys the relays of a district vouch for, and what each may write.
//!
//! A relay knows its own children (enrolled in its `peers`), but not the children of the relays
//! below it, so on its own it could not tell a community relay's decision from a handheld's,
//! nor refuse a key another tier revoked. Each relay therefore signs a [`NodeRecord`] for every
//! child it enrolls or revokes, and sends the records of its scope up, ahead of the events
//! they vouch for, in `Nodes` messages (`proto/PROTOCOL.md`, "Authorisation"). A parent takes a
//! record only if its issuer is the sending child or a relay the parent already trusts, and
//! only inside both their scopes ([`admit_records`]); whom it then trusts is computed from the
//! records it holds, back to its own children ([`vouches`]). Every event a relay child sends is
//! then checked against what the chain says of its origin ([`authorise`]):
//!
//! - an origin no chain vouches for is refused;
//! - an event outside every scope its origin is vouched for is refused;
//! - an operator decision ([`gridsync_core::is_decision`]: a change of the grid roster is one)
//!   is refused unless its origin is vouched for as a relay;
//! - a revoked key's event is refused unless its sequence number is at most the highest the
//!   revoking relay held when it revoked it (its earlier events stay valid everywhere);
//! - records issued by a revoked relay vouch for nothing any more.
//!
//! A device's session needs no record: the parent enrolled it. Events coming down from a parent
//! are not checked against the directory (a child has no records of the tiers above it); their
//! signatures and scope are.

use gridsync_core::codec::{self, CodecError};
use gridsync_core::{is_decision, Event, NodeId, Scope, Signature, SignatureError};
use serde::{Deserialize, Serialize};

use crate::message::{ErrorCode, Role};
use crate::storage::{Enrolled, StorageError};

/// The domain tag that starts the message a node record's issuer signs.
pub const RECORD_DOMAIN: &[u8] = b"gridsync-node-v1\0";

/// Most records in one `Nodes` message.
pub const MAX_RECORDS: usize = 256;

/// How many relays deep a chain of records may go (district, street, community, device).
pub const MAX_DEPTH: usize = 4;

/// A relay's signed statement about one of its children: enrolled with this role and scope,
/// or revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The relay that enrolled (or revoked) the node, whose key signs the record.
    pub issuer: NodeId,
    /// The node the record is about.
    pub node: NodeId,
    pub role: Role,
    /// A device's grid (four segments) or a relay's scope.
    pub scope: Scope,
    /// The issuer's counter for this node: of two records by one issuer about one node, the
    /// one with the higher serial is in force.
    pub serial: u64,
    /// `None`: enrolled. `Some(n)`: revoked, and `n` is the highest sequence number of the
    /// node's events the issuer held when it revoked it; those stay valid, later ones do not.
    pub revoked_after: Option<u64>,
    pub signature: Signature,
}

impl NodeRecord {
    /// A record about `node` signed by the issuer whose secret key is `secret`.
    pub fn issue(
        secret: &[u8; 32],
        node: NodeId,
        role: Role,
        scope: Scope,
        serial: u64,
        revoked_after: Option<u64>,
    ) -> Result<Self, CodecError> {
        let mut record = NodeRecord {
            issuer: NodeId::from_secret(secret),
            node,
            role,
            scope,
            serial,
            revoked_after,
            signature: Signature {
                r: [0; 32],
                s: [0; 32],
            },
        };
        record.signature = gridsync_core::sign_message(secret, &record.signing_bytes()?);
        Ok(record)
    }

    /// The message the issuer signs: [`RECORD_DOMAIN`], then the wire encoding of the record's
    /// fields before `signature` (`issuer`, `node`, `role`, `scope`, `serial`,
    /// `revoked_after`).
    pub fn signing_bytes(&self) -> Result<Vec<u8>, CodecError> {
        let fields = (
            &self.issuer,
            &self.node,
            &self.role,
            &self.scope,
            self.serial,
            &self.revoked_after,
        );
        let mut out = RECORD_DOMAIN.to_vec();
        out.extend_from_slice(&codec::encode_wire("node record", &fields)?);
        Ok(out)
    }

    /// Checks the issuer's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        let message = self.signing_bytes().map_err(SignatureError::Codec)?;
        gridsync_core::verify_message(&self.issuer, &message, &self.signature)
    }

    /// What the record says, if its issuer is trusted.
    pub fn vouch(&self) -> Vouch {
        Vouch {
            role: self.role,
            scope: self.scope.clone(),
            revoked_after: self.revoked_after,
            issuer: self.issuer,
        }
    }
}

/// What one trusted record says of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouch {
    pub role: Role,
    pub scope: Scope,
    pub revoked_after: Option<u64>,
    /// Who vouches: the relay that enrolled the node (this relay, for its own children).
    pub issuer: NodeId,
}

impl Vouch {
    /// An enrolled (not revoked) relay whose scope covers `scope`.
    fn may_issue_for(&self, scope: &Scope) -> bool {
        self.role != Role::Device && self.revoked_after.is_none() && covers(&self.scope, scope)
    }
}

/// Whether every grid of `inner` lies inside `outer` (segment-wise).
pub fn covers(outer: &Scope, inner: &Scope) -> bool {
    let (o, i) = (outer.as_str(), inner.as_str());
    i == o || (i.starts_with(o) && i.as_bytes().get(o.len()) == Some(&b'/'))
}

/// Where a node stands at this relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It is this relay: its own events are its own to write.
    Me,
    /// What the trusted records about it say (none: no chain vouches for it).
    Vouched(Vec<Vouch>),
}

/// The records a relay holds, as [`vouches`] reads them. Implemented over a
/// [`SyncStore`](crate::SyncStore) by [`StoreDirectory`].
pub trait Records {
    /// This relay's node id.
    fn me(&self) -> NodeId;
    /// `node` as enrolled at this relay now (not revoked), if it is.
    fn enrolled_here(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError>;
    /// The record in force from each issuer about `node`.
    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError>;
}

/// Where `node` stands: this relay itself, or the vouches of its enrollment here and of the
/// records about it whose issuer is this relay or, recursively, an enrolled relay trusted for
/// the record's scope.
pub fn vouches(records: &dyn Records, node: &NodeId) -> Result<Standing, StorageError> {
    if *node == records.me() {
        return Ok(Standing::Me);
    }
    vouches_at(records, node, MAX_DEPTH).map(Standing::Vouched)
}

fn vouches_at(
    records: &dyn Records,
    node: &NodeId,
    depth: usize,
) -> Result<Vec<Vouch>, StorageError> {
    let mut out = Vec::new();
    if let Some(e) = records.enrolled_here(node)? {
        out.push(Vouch {
            role: e.role,
            scope: e.scope,
            revoked_after: None,
            issuer: records.me(),
        });
    }
    for r in records.records_about(node)? {
        let trusted = r.issuer == records.me()
            || (depth > 1
                && vouches_at(records, &r.issuer, depth - 1)?
                    .iter()
                    .any(|v| v.may_issue_for(&r.scope)));
        if trusted {
            out.push(r.vouch());
        }
    }
    Ok(out)
}

/// Why an event's origin may not write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A device's own event that is an operator decision.
    #[error("event {}/{seq} is an operator decision ({kind}); only a platform (a relay) makes decisions, a handheld reports, comments and reports handling (in_progress, resolved)", origin.short())]
    DecisionByDevice {
        origin: NodeId,
        seq: u64,
        kind: &'static str,
    },
    /// No chain of records vouches for the origin.
    #[error("event {}/{seq}: origin {} is vouched for by no relay this relay trusts (send the `Nodes` records that enroll it first)", origin.short(), origin.short())]
    Unknown { origin: NodeId, seq: u64 },
    /// The origin was revoked, and this event is later than what the revoking relay held.
    #[error("event {}/{seq}: origin {} was revoked after its event {after}; its later events are refused", origin.short(), origin.short())]
    Revoked {
        origin: NodeId,
        seq: u64,
        after: u64,
    },
    /// The origin is vouched for, but not for this event's grid.
    #[error("event {}/{seq} is in grid {grid}, outside every scope its origin is enrolled for", origin.short())]
    NotItsScope {
        origin: NodeId,
        seq: u64,
        grid: gridsync_core::GridCode,
    },
    /// An operator decision whose origin is vouched for only as a device.
    #[error("event {}/{seq} is an operator decision ({kind}), but its origin is enrolled as a device; only a relay makes decisions", origin.short())]
    DecisionByDeviceOrigin {
        origin: NodeId,
        seq: u64,
        kind: &'static str,
    },
}

impl AuthError {
    /// The protocol's code for this refusal.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::NotAuthorised
    }
}

/// Checks a device's own event: it may be anything but an operator decision.
pub fn authorise_device(event: &Event) -> Result<(), AuthError> {
    if is_decision(&event.payload) {
        return Err(AuthError::DecisionByDevice {
            origin: event.origin,
            seq: event.seq,
            kind: event.payload.kind(),
        });
    }
    Ok(())
}

/// Checks an event a relay child sent against where its origin stands (see the module docs).
pub fn authorise(event: &Event, standing: &Standing) -> Result<(), AuthError> {
    let vouches = match standing {
        Standing::Me => return Ok(()),
        Standing::Vouched(v) => v,
    };
    let (origin, seq) = (event.origin, event.seq);
    if vouches.is_empty() {
        return Err(AuthError::Unknown { origin, seq });
    }
    let in_scope: Vec<&Vouch> = vouches
        .iter()
        .filter(|v| v.scope.contains(&event.grid))
        .collect();
    if in_scope.is_empty() {
        return Err(AuthError::NotItsScope {
            origin,
            seq,
            grid: event.grid.clone(),
        });
    }
    let current: Vec<&&Vouch> = in_scope
        .iter()
        .filter(|v| v.revoked_after.is_none_or(|after| seq <= after))
        .collect();
    if current.is_empty() {
        let after = in_scope
            .iter()
            .filter_map(|v| v.revoked_after)
            .max()
            .unwrap_or(0);
        return Err(AuthError::Revoked { origin, seq, after });
    }
    if is_decision(&event.payload) && current.iter().all(|v| v.role == Role::Device) {
        return Err(AuthError::DecisionByDeviceOrigin {
            origin,
            seq,
            kind: event.payload.kind(),
        });
    }
    Ok(())
}

/// Why a `Nodes` message was refused, with the first offending record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{count} records, over the limit of {MAX_RECORDS}")]
    TooMany { count: usize },
    #[error("record {index} (about {}): {error}", node.short())]
    BadSignature {
        index: usize,
        node: NodeId,
        error: SignatureError,
    },
    #[error("record {index} is about this relay itself")]
    AboutMe { index: usize },
    #[error("record {index} (about {}) enrolls a device for {scope}, which is not one grid", node.short())]
    DeviceScope {
        index: usize,
        node: NodeId,
        scope: Scope,
    },
    #[error("record {index} (about {}) is for {scope}, outside the sender's scope {sender}", node.short())]
    OutOfScope {
        index: usize,
        node: NodeId,
        scope: Scope,
        sender: Scope,
    },
    #[error("record {index} (about {}): its issuer {} is not a relay this relay trusts for {scope}", node.short(), issuer.short())]
    Issuer {
        index: usize,
        node: NodeId,
        issuer: NodeId,
        scope: Scope,
    },
}

impl RecordError {
    /// The protocol's code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            RecordError::TooMany { .. } => ErrorCode::TooLarge,
            RecordError::BadSignature { .. } => ErrorCode::BadSignature,
            RecordError::DeviceScope { .. } => ErrorCode::Malformed,
            RecordError::OutOfScope { .. } => ErrorCode::OutOfScope,
            RecordError::AboutMe { .. } | RecordError::Issuer { .. } => ErrorCode::NotAuthorised,
        }
    }
}

/// A `Nodes` message's records that passed [`admit_records`]; nothing else can make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedRecords {
    records: Vec<NodeRecord>,
}

impl AdmittedRecords {
    /// The records, in the message's order.
    pub fn records(&self) -> &[NodeRecord] {
        &self.records
    }
}

/// Checks the records a relay child `sender` sent, in order, each against the records held
/// here and those before it in the message: the issuer's signature; a record about another
/// node than this one; a device's scope one grid; the scope inside the sender's; and the
/// issuer either the sender or a relay trusted here for the record's scope. All pass or the
/// first offender is returned.
pub fn admit_records(
    held: &dyn Records,
    sender: &Enrolled,
    records: Vec<NodeRecord>,
) -> Result<AdmittedRecords, RecordError> {
    if records.len() > MAX_RECORDS {
        return Err(RecordError::TooMany {
            count: records.len(),
        });
    }
    for (index, r) in records.iter().enumerate() {
        let node = r.node;
        r.verify()
            .map_err(|error| RecordError::BadSignature { index, node, error })?;
        if node == held.me() {
            return Err(RecordError::AboutMe { index });
        }
        if r.role == Role::Device && r.scope.as_str().parse::<gridsync_core::GridCode>().is_err() {
            return Err(RecordError::DeviceScope {
                index,
                node,
                scope: r.scope.clone(),
            });
        }
        if !covers(&sender.scope, &r.scope) {
            return Err(RecordError::OutOfScope {
                index,
                node,
                scope: r.scope.clone(),
                sender: sender.scope.clone(),
            });
        }
        let trusted = r.issuer == sender.node || {
            let earlier = WithEarlier {
                held,
                earlier: &records[..index],
            };
            vouches_at(&earlier, &r.issuer, MAX_DEPTH)
                .map_err(|_| RecordError::Issuer {
                    index,
                    node,
                    issuer: r.issuer,
                    scope: r.scope.clone(),
                })?
                .iter()
                .any(|v| v.may_issue_for(&r.scope))
        };
        if !trusted {
            return Err(RecordError::Issuer {
                index,
                node,
                issuer: r.issuer,
                scope: r.scope.clone(),
            });
        }
    }
    Ok(AdmittedRecords { records })
}

/// The records held here, with those earlier in a message in force over them.
struct WithEarlier<'a> {
    held: &'a dyn Records,
    earlier: &'a [NodeRecord],
}

impl Records for WithEarlier<'_> {
    fn me(&self) -> NodeId {
        self.held.me()
    }

    fn enrolled_here(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
        self.held.enrolled_here(node)
    }

    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError> {
        let mut out = self.held.records_about(node)?;
        for r in self.earlier.iter().filter(|r| r.node == *node) {
            match out.iter_mut().find(|o| o.issuer == r.issuer) {
                Some(o) if o.serial < r.serial => *o = r.clone(),
                Some(_) => {}
                None => out.push(r.clone()),
            }
        }
        Ok(out)
    }
}

/// [`Records`] over a store, for the relay `me`.
pub struct StoreDirectory<'a> {
    pub store: &'a dyn crate::SyncStore,
    pub me: NodeId,
}

impl std::fmt::Debug for StoreDirectory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreDirectory")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Records for StoreDirectory<'_> {
    fn me(&self) -> NodeId {
        self.me
    }

    fn enrolled_here(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
        self.store.enrolled(node)
    }

    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError> {
        self.store.records_about(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridsync_core::{Category, IncidentId, Payload, Report, Severity, Status, Writer};
    use std::collections::HashMap;

    const NOW: u64 = 1_764_000_000_000;
    const GRID: &str = "110101/002/014/03";

    fn scope(s: &str) -> Scope {
        s.parse().expect("scope")
    }

    struct Held {
        me: NodeId,
        records: HashMap<NodeId, Vec<NodeRecord>>,
    }

    impl Held {
        fn new(me: NodeId) -> Self {
            Self {
                me,
                records: HashMap::new(),
            }
        }
        fn add(&mut self, r: NodeRecord) {
            let list = self.records.entry(r.node).or_default();
            list.retain(|o| o.issuer != r.issuer);
            list.push(r);
        }
    }

    impl Records for Held {
        fn me(&self) -> NodeId {
            self.me
        }
        fn enrolled_here(&self, _: &NodeId) -> Result<Option<Enrolled>, StorageError> {
            Ok(None)
        }
        fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError> {
            Ok(self.records.get(node).cloned().unwrap_or_default())
        }
    }

    fn issue(by: u8, node: NodeId, role: Role, s: &str, revoked_after: Option<u64>) -> NodeRecord {
        NodeRecord::issue(&[by; 32], node, role, scope(s), 1, revoked_after).expect("issue")
    }

    fn id(n: u8) -> NodeId {
        NodeId::from_secret(&[n; 32])
    }

    fn event(origin: u8, seq: u64, payload: Payload) -> Event {
        Writer::signing(&[origin; 32], "x", seq, gridsync_core::Hlc::default()).write(
            IncidentId::new_v7(NOW, [1; 10]),
            &GRID.parse().expect("grid"),
            payload,
            NOW,
        )
    }

    fn report() -> Payload {
        Payload::Reported(Report {
            category: Category::from_catalogue("garbage").expect("category"),
            description: "bags".into(),
            location: None,
            observed_at: None,
            severity: Severity::Normal,
        })
    }

    fn close() -> Payload {
        Payload::StatusChanged {
            status: Status::Closed,
            pred: vec![],
        }
    }

    /// District 1 enrolled street 2; street 2 enrolled community 3 and device 5; community 3
    /// enrolled device 4.
    fn district() -> Held {
        let mut h = Held::new(id(1));
        h.add(issue(1, id(2), Role::Street, "110101/002", None));
        h.add(issue(2, id(3), Role::Street, "110101/002/014", None));
        h.add(issue(2, id(5), Role::Device, GRID, None));
        h.add(issue(3, id(4), Role::Device, GRID, None));
        h
    }

    fn standing(h: &Held, n: u8) -> Standing {
        vouches(h, &id(n)).expect("vouches")
    }

    #[test]
    fn a_chain_of_records_vouches_back_to_this_relays_own_children() {
        let h = district();
        assert_eq!(standing(&h, 1), Standing::Me);
        for n in [2, 3, 4, 5] {
            let Standing::Vouched(v) = standing(&h, n) else {
                panic!("not me")
            };
            assert_eq!(v.len(), 1, "node {n}");
        }
        // A record whose issuer nobody vouches for is held but vouches for nothing.
        let mut h = district();
        h.add(issue(9, id(6), Role::Device, GRID, None));
        assert_eq!(standing(&h, 6), Standing::Vouched(vec![]));
        // A relay vouches only inside its own scope.
        h.add(issue(3, id(7), Role::Device, "110101/002/015/01", None));
        assert_eq!(standing(&h, 7), Standing::Vouched(vec![]));
    }

    #[test]
    fn reports_from_any_vouched_origin_decisions_only_from_relays() {
        let h = district();
        for n in [3, 4, 5] {
            let e = event(n, 1, report());
            assert_eq!(authorise(&e, &standing(&h, n)), Ok(()), "node {n}");
        }
        let e = event(3, 2, close());
        assert_eq!(authorise(&e, &standing(&h, 3)), Ok(()));
        let e = event(4, 2, close());
        assert!(matches!(
            authorise(&e, &standing(&h, 4)),
            Err(AuthError::DecisionByDeviceOrigin { .. })
        ));
        assert!(matches!(
            authorise_device(&e),
            Err(AuthError::DecisionByDevice { .. })
        ));
        let e = event(8, 1, report());
        assert!(matches!(
            authorise(&e, &standing(&h, 8)),
            Err(AuthError::Unknown { .. })
        ));
        assert_eq!(authorise(&event(1, 1, close()), &standing(&h, 1)), Ok(()));
    }

    #[test]
    fn a_revoked_key_keeps_its_earlier_events_and_loses_later_ones_and_its_records() {
        let mut h = district();
        h.add(NodeRecord::issue(&[3; 32], id(4), Role::Device, scope(GRID), 2, Some(7)).unwrap());
        assert_eq!(authorise(&event(4, 7, report()), &standing(&h, 4)), Ok(()));
        assert_eq!(
            authorise(&event(4, 8, report()), &standing(&h, 4)),
            Err(AuthError::Revoked {
                origin: id(4),
                seq: 8,
                after: 7
            })
        );
        // Revoking the community cuts off what it vouched for.
        h.add(
            NodeRecord::issue(
                &[2; 32],
                id(3),
                Role::Street,
                scope("110101/002/014"),
                2,
                Some(0),
            )
            .unwrap(),
        );
        assert_eq!(standing(&h, 4), Standing::Vouched(vec![]));
        assert!(matches!(
            authorise(&event(3, 1, close()), &standing(&h, 3)),
            Err(AuthError::Revoked { .. })
        ));
    }

    #[test]
    fn records_are_admitted_only_from_trusted_issuers_inside_the_senders_scope() {
        let mut h = Held::new(id(1));
        h.add(issue(1, id(2), Role::Street, "110101/002", None));
        let street = Enrolled {
            node: id(2),
            role: Role::Street,
            scope: scope("110101/002"),
        };
        // The street's own record, then one by the community it just vouched for.
        let ok = vec![
            issue(2, id(3), Role::Street, "110101/002/014", None),
            issue(3, id(4), Role::Device, GRID, None),
        ];
        assert_eq!(
            admit_records(&h, &street, ok.clone()).map(|a| a.records().len()),
            Ok(2)
        );
        // In the other order the community is not yet trusted.
        let reversed: Vec<_> = ok.into_iter().rev().collect();
        assert!(matches!(
            admit_records(&h, &street, reversed),
            Err(RecordError::Issuer { index: 0, .. })
        ));
        let outside = vec![issue(2, id(3), Role::Street, "110101/003", None)];
        assert!(matches!(
            admit_records(&h, &street, outside),
            Err(RecordError::OutOfScope { .. })
        ));
        let mut forged = issue(2, id(3), Role::Street, "110101/002/014", None);
        forged.scope = scope("110101/002");
        assert!(matches!(
            admit_records(&h, &street, vec![forged]),
            Err(RecordError::BadSignature { .. })
        ));
        let about_me = vec![issue(2, id(1), Role::Street, "110101/002", None)];
        assert_eq!(
            admit_records(&h, &street, about_me),
            Err(RecordError::AboutMe { index: 0 })
        );
        let device_prefix = vec![issue(2, id(6), Role::Device, "110101/002", None)];
        assert!(matches!(
            admit_records(&h, &street, device_prefix),
            Err(RecordError::DeviceScope { .. })
        ));
        let errs = [
            RecordError::TooMany { count: 300 }.code(),
            RecordError::AboutMe { index: 0 }.code(),
        ];
        assert_eq!(errs, [ErrorCode::TooLarge, ErrorCode::NotAuthorised]);
    }
}
