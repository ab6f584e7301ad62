//! The parent's cap on concurrent connections, over real loopback QUIC.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use gridsync_core::NodeId;
use gridsync_net::server::{self, Shared};
use gridsync_net::{client, NetError, SharedStore};
use gridsync_proto::server::ServerConfig;
use gridsync_proto::{ErrorCode, Role};
use tokio::sync::{watch, Notify};

const SERVER_SEED: [u8; 32] = [0x44; 32];
const CLIENT_SEED: [u8; 32] = [0x55; 32];

fn node_id(seed: &[u8; 32]) -> NodeId {
    NodeId(
        ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes(),
    )
}

fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

#[tokio::test]
async fn a_parent_at_its_limit_refuses_until_a_connection_ends() {
    let server_id = node_id(&SERVER_SEED);
    let endpoint = server::endpoint(&SERVER_SEED, loopback()).expect("server endpoint");
    let addr = endpoint.local_addr().expect("server address");
    let store: SharedStore = Arc::new(Mutex::new(
        gridsync_store::Store::in_memory().expect("store"),
    ));
    let (stop, shutdown) = watch::channel(false);
    let shared = Arc::new(Shared {
        store,
        config: ServerConfig::new(server_id, Role::Street, "street-002"),
        changed: Arc::new(Notify::new()),
        shutdown,
        control_idle: server::CONTROL_IDLE,
        max_connections: 1,
    });
    let serving = tokio::spawn(server::serve(endpoint, shared));

    // The first connection takes the one slot.
    let first_endpoint = client::endpoint(loopback()).expect("client endpoint");
    let first = client::connect(&first_endpoint, &CLIENT_SEED, addr, server_id)
        .await
        .expect("the first connection is served");

    // A second one is refused before its handshake.
    let other = client::endpoint(loopback()).expect("client endpoint");
    let err = client::connect(&other, &CLIENT_SEED, addr, server_id)
        .await
        .expect_err("the second connection is refused");
    assert!(
        matches!(err, NetError::Busy { addr: a } if a == addr),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("the relay at {addr} is at its connection limit; try again later")
    );

    // Once the first is closed (and gone on this side, so the close went out), the slot is
    // free again. Freeing it on the parent's side may trail the close by a moment: a child
    // retries on `Busy`, as this one does.
    first.close(ErrorCode::Done.as_u16().into(), b"done");
    first_endpoint.wait_idle().await;
    let mut refusals = 0;
    let third = loop {
        match client::connect(&other, &CLIENT_SEED, addr, server_id).await {
            Ok(conn) => break conn,
            Err(NetError::Busy { .. }) if refusals < 1000 => refusals += 1,
            Err(e) => panic!("after the first closed: {e}"),
        }
    };
    assert_eq!(gridsync_net::tls::peer_node_id(&third), Some(server_id));

    let _ = stop.send(true);
    serving.await.expect("serve ends at shutdown");
    let closed = NetError::from(third.closed().await);
    assert!(closed.is_closed_with(ErrorCode::ShuttingDown), "{closed}");
}
