//! `gridsync_proto::directory`: node records as a `Nodes` message carries them, decoded and
//! admitted from a street relay child (`admit_records`), then what the directory makes of an
//! event (`vouches`, `authorise`). Never panics; an admitted record verifies, lies inside
//! the sender's scope and is not about the parent; a refusal is one line with a code.

#![no_main]

use gridsync_core::{codec, Event, NodeId, Scope};
use gridsync_proto::directory::{admit_records, authorise, vouches, NodeRecord, Records};
use gridsync_proto::{Enrolled, Role, StorageError};
use libfuzzer_sys::fuzz_target;

/// The parent: node 1; its street child: the key of seed 55×32 (the issuer of the golden
/// `nodes.bin` record), enrolled for 110101/002; what
/// the message admitted (if anything) is what it holds.
struct Held {
    street: Enrolled,
    records: Vec<NodeRecord>,
}

impl Records for Held {
    fn me(&self) -> NodeId {
        NodeId([1; 32])
    }
    fn enrolled_here(&self, node: &NodeId) -> Result<Option<Enrolled>, StorageError> {
        Ok((*node == self.street.node).then(|| self.street.clone()))
    }
    fn records_about(&self, node: &NodeId) -> Result<Vec<NodeRecord>, StorageError> {
        Ok(self
            .records
            .iter()
            .filter(|r| r.node == *node)
            .cloned()
            .collect())
    }
}

fuzz_target!(|data: &[u8]| {
    // A u16 LE length, that many bytes of records, then an event.
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let cut = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (records_bytes, event_bytes) = rest.split_at(cut);
    let Ok(records) = codec::decode_wire::<Vec<NodeRecord>>("node records", records_bytes) else {
        return;
    };
    let scope: Scope = "110101/002".parse().expect("scope");
    let mut held = Held {
        street: Enrolled {
            node: NodeId::from_secret(&[0x55; 32]),
            role: Role::Street,
            scope: scope.clone(),
        },
        records: Vec::new(),
    };
    match admit_records(&held, &held.street, records) {
        Ok(admitted) => {
            for r in admitted.records() {
                assert_eq!(r.verify(), Ok(()));
                assert_ne!(r.node, held.me());
                let again = codec::encode_wire("node record", r).expect("re-encodes");
                assert_eq!(
                    codec::decode_wire::<NodeRecord>("node record", &again).as_ref(),
                    Ok(r)
                );
            }
            held.records = admitted.records().to_vec();
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
            let _ = e.code();
        }
    }
    if let Ok(event) = codec::decode_event(event_bytes) {
        let event: Event = event;
        let standing = vouches(&held, &event.origin).expect("no storage to fail");
        if let Err(e) = authorise(&event, &standing) {
            assert!(!e.to_string().contains('\n'));
        }
    }
});
