//! The parent's limits over real loopback QUIC: connections in total and per node, a
//! connection with no session, and a flooding node's event rate.

mod common;

use std::net::SocketAddr;

use common::{loopback, node_id};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridsync_core::{GridCode, Hlc, IncidentId, NodeId, Payload, Scope, Writer};
use gridsync_net::server::{self, Shared};
use gridsync_net::{client, NetError, SharedStore};
use gridsync_proto::client::ClientConfig;
use gridsync_proto::limits::NodeLimits;
use gridsync_proto::server::ServerConfig;
use gridsync_proto::{ErrorCode, Role};
use tokio::sync::{watch, Notify};

const SERVER_SEED: [u8; 32] = [0x44; 32];
const CLIENT_SEED: [u8; 32] = [0x55; 32];

#[tokio::test]
async fn a_parent_at_its_limit_refuses_until_a_connection_ends() {
    let in_memory = gridsync_store::Store::in_memory().expect("store");
    let (_shared, addr, server_id, stop, serving) = relay_on(in_memory, &[], |s| Shared {
        max_connections: 1,
        ..s
    })
    .await;

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

const OTHER_SEED: [u8; 32] = [0x66; 32];
const GRID: &str = "110101/002/014/03";

/// A street relay on loopback with these per-node limits, `devices` enrolled for [`GRID`].
async fn relay_with(
    limits: NodeLimits,
    devices: &[NodeId],
) -> (
    Arc<Shared>,
    SocketAddr,
    NodeId,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    relay_on(
        gridsync_store::Store::in_memory().expect("store"),
        devices,
        |s| s.with_node_limits(limits),
    )
    .await
}

/// A street relay on loopback on this store, `devices` enrolled for [`GRID`], its defaults
/// changed by `tweak`.
async fn relay_on(
    mut store: gridsync_store::Store,
    devices: &[NodeId],
    tweak: impl FnOnce(Shared) -> Shared,
) -> (
    Arc<Shared>,
    SocketAddr,
    NodeId,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let server_id = node_id(&SERVER_SEED);
    let endpoint = server::endpoint(&SERVER_SEED, loopback()).expect("server endpoint");
    let addr = endpoint.local_addr().expect("server address");
    let scope: Scope = GRID.parse().expect("scope");
    for d in devices {
        store.enroll(d, Role::Device, &scope, 1).expect("enrolled");
    }
    let store: SharedStore = Arc::new(Mutex::new(store));
    let (stop, shutdown) = watch::channel(false);
    let shared = Arc::new(tweak(Shared::new(
        store,
        ServerConfig::new(server_id, Role::Street, "street-002"),
        Arc::new(Notify::new()),
        shutdown,
    )));
    let serving = tokio::spawn(server::serve(endpoint, shared.clone()));
    (shared, addr, server_id, stop, serving)
}

/// A device's store holding `n` comments of its own.
fn device_store(seed: &[u8; 32], n: usize) -> SharedStore {
    let mut store = gridsync_store::Store::in_memory().expect("store");
    let now = gridsync_net::now_ms();
    let mut w = Writer::signing(seed, "patrol-7", 1, Hlc::default());
    let incident = IncidentId::new_v7(now, [7; 10]);
    let grid: GridCode = GRID.parse().expect("grid");
    let events: Vec<_> = (0..n)
        .map(|i| {
            w.write(
                incident,
                &grid,
                Payload::Commented {
                    text: format!("comment {i}"),
                },
                now,
            )
        })
        .collect();
    store.append(&events, &[], None).expect("appended");
    Arc::new(Mutex::new(store))
}

async fn sync(
    seed: &[u8; 32],
    store: SharedStore,
    addr: SocketAddr,
    parent: NodeId,
) -> Result<client::SyncReport, NetError> {
    let endpoint = client::endpoint(loopback()).expect("client endpoint");
    let conn = client::connect(&endpoint, seed, addr, parent).await?;
    let config = ClientConfig::new(node_id(seed), Role::Device, "patrol", parent);
    let report = client::run_session(
        &conn,
        store,
        config,
        &client::SyncOptions::default(),
        &mut |_| {},
    )
    .await;
    conn.close(ErrorCode::Done.as_u16().into(), b"done");
    endpoint.wait_idle().await;
    report
}

#[tokio::test]
async fn one_node_over_its_connection_limit_is_closed_with_busy_and_others_are_served() {
    let limits = NodeLimits {
        connections: 1,
        ..NodeLimits::default()
    };
    let (_shared, addr, server_id, stop, serving) = relay_with(limits, &[]).await;
    let endpoint = client::endpoint(loopback()).expect("client endpoint");
    let first = client::connect(&endpoint, &CLIENT_SEED, addr, server_id)
        .await
        .expect("served");
    // The same node again: the handshake completes (the parent learns who it is only then),
    // and the parent refuses the connection with `Busy` (this child opens no control stream,
    // so the close comes once the parent's grace for one is over).
    let second = client::connect(&endpoint, &CLIENT_SEED, addr, server_id)
        .await
        .expect("the handshake completes");
    let closed = NetError::from(second.closed().await);
    assert!(closed.is_closed_with(ErrorCode::Busy), "{closed}");
    assert!(
        closed
            .to_string()
            .contains("already holds 1 connections here"),
        "{closed}"
    );
    // Another node is served while the first holds its one connection.
    let other = client::connect(&endpoint, &OTHER_SEED, addr, server_id)
        .await
        .expect("another node is served");
    assert!(other.close_reason().is_none(), "still open");
    assert!(first.close_reason().is_none(), "the first stays open");
    let _ = stop.send(true);
    serving.await.expect("serve ends at shutdown");
}

#[tokio::test]
async fn a_connection_with_no_session_is_closed_after_the_handshake_timeout() {
    let in_memory = gridsync_store::Store::in_memory().expect("store");
    let (_shared, addr, server_id, stop, serving) = relay_on(in_memory, &[], |s| Shared {
        handshake_timeout: Duration::from_millis(300),
        ..s
    })
    .await;
    let client_endpoint = client::endpoint(loopback()).expect("client endpoint");
    let idle = client::connect(&client_endpoint, &CLIENT_SEED, addr, server_id)
        .await
        .expect("served");
    let closed = NetError::from(idle.closed().await);
    assert!(closed.is_closed_with(ErrorCode::Timeout), "{closed}");
    assert_eq!(
        closed.to_string(),
        "connection lost: closed by the peer: no session started within 300 ms (Timeout)"
    );
    let _ = stop.send(true);
    serving.await.expect("serve ends at shutdown");
}

/// A device flooding events is slowed (its batches wait at the parent), while another device
/// syncs at once: each node's rate is its own.
#[tokio::test]
async fn a_flooding_device_is_throttled_while_another_syncs_normally() {
    let flood = node_id(&CLIENT_SEED);
    let calm = node_id(&OTHER_SEED);
    // 10 events/s with a burst of 10: the flood's first batch of 256 waits about 25 s.
    let limits = NodeLimits {
        events_per_sec: 10,
        burst: 10,
        ..NodeLimits::default()
    };
    let (shared, addr, server_id, stop, serving) = relay_with(limits, &[flood, calm]).await;
    let flooding = tokio::spawn(sync(
        &CLIENT_SEED,
        device_store(&CLIENT_SEED, 300),
        addr,
        server_id,
    ));
    // Wait until the parent holds the flood back.
    while shared.limiter.lock().expect("limiter").throttled(&flood) == 0 {
        assert!(
            !flooding.is_finished(),
            "the flood ended before it was throttled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The calm device syncs its few events in full, never waiting.
    let report = sync(&OTHER_SEED, device_store(&OTHER_SEED, 3), addr, server_id)
        .await
        .expect("the calm device syncs");
    assert_eq!(report.summary.events_up, 3);
    let (calm_waits, flood_waits) = {
        let limiter = shared.limiter.lock().expect("limiter");
        (limiter.throttled(&calm), limiter.throttled(&flood))
    };
    assert_eq!(calm_waits, 0);
    assert!(flood_waits >= 1);
    assert!(!flooding.is_finished(), "the flood is still held back");
    // Shutdown does not wait out the throttle.
    flooding.abort();
    let _ = stop.send(true);
    serving.await.expect("serve ends at shutdown");
    let held = shared
        .store
        .lock()
        .expect("store")
        .heads(&gridsync_proto::Enrolled {
            node: flood,
            role: Role::Device,
            scope: GRID.parse().expect("scope"),
        })
        .expect("heads");
    assert!(
        held.is_empty(),
        "nothing of the held batch was committed: {held:?}"
    );
}

/// A revocation ends the node's open session at once, though the session is idle.
#[tokio::test]
async fn revoking_a_node_ends_its_open_session_at_once() {
    let device = node_id(&CLIENT_SEED);
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("street.db");
    let store = gridsync_store::Store::create(&path).expect("a relay store");
    let (_shared, addr, server_id, stop, serving) = relay_on(store, &[device], |s| s).await;
    let endpoint = client::endpoint(loopback()).expect("client endpoint");
    let conn = client::connect(&endpoint, &CLIENT_SEED, addr, server_id)
        .await
        .expect("served");
    let (mut send, mut recv) = conn.open_bi().await.expect("a control stream");
    let hello = gridsync_proto::Message::Hello {
        versions: gridsync_proto::VERSIONS.to_vec(),
        node: device,
        role: Role::Device,
        name: "patrol-7".into(),
    };
    send.write_all(&gridsync_proto::frame::encode(&hello).expect("encode"))
        .await
        .expect("sent");
    let mut reader = gridsync_proto::FrameReader::default();
    assert!(matches!(
        next_message(&mut reader, &mut recv).await,
        Some(gridsync_proto::Message::Welcome { .. })
    ));
    // The session is open and idle; the operator revokes the node (`gridsync-relay revoke`,
    // another process with its own connection to the file).
    assert!(gridsync_store::Store::open(&path)
        .expect("open")
        .revoke(&device, 2)
        .expect("revoked"));
    match next_message(&mut reader, &mut recv).await {
        Some(gridsync_proto::Message::Error { code, message }) => {
            assert_eq!(code, ErrorCode::NotEnrolled);
            assert!(message.contains("was revoked"), "{message}");
        }
        other => panic!("expected Error NotEnrolled, got {other:?}"),
    }
    // The parent finished its half of the session.
    assert!(next_message(&mut reader, &mut recv).await.is_none());
    conn.close(ErrorCode::Done.as_u16().into(), b"done");
    let _ = stop.send(true);
    serving.await.expect("serve ends at shutdown");
}

/// The next message on a control stream, or `None` at its end.
async fn next_message(
    reader: &mut gridsync_proto::FrameReader,
    recv: &mut quinn::RecvStream,
) -> Option<gridsync_proto::Message> {
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(m) = reader.next_message().expect("a frame") {
            return Some(m);
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => reader.push(&buf[..n]),
            _ => return None,
        }
    }
}
