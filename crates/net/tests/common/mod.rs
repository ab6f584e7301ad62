//! Helpers shared by the loopback tests of `gridsync-net`.

use std::net::{Ipv4Addr, SocketAddr};

use gridsync_core::NodeId;

/// The node id (the public key) of the Ed25519 identity with this seed.
pub fn node_id(seed: &[u8; 32]) -> NodeId {
    NodeId(
        ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes(),
    )
}

/// 127.0.0.1, any free port.
pub fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}
