//! Mutual TLS over real loopback QUIC: pinning, peer ids, a stream echo.

mod common;

use std::net::SocketAddr;

use common::{loopback, node_id};
use std::sync::Arc;

use gridsync_core::NodeId;
use gridsync_net::tls::{self, CERT_NAME};
use quinn::Endpoint;

const SERVER_SEED: [u8; 32] = [0x11; 32];
const CLIENT_A_SEED: [u8; 32] = [0x22; 32];
const CLIENT_B_SEED: [u8; 32] = [0x33; 32];

fn transport() -> Arc<quinn::TransportConfig> {
    Arc::new(gridsync_net::transport::config())
}

fn server(seed: &[u8; 32]) -> (Endpoint, SocketAddr) {
    let config = tls::server_config(seed, transport()).expect("server config");
    let endpoint = Endpoint::server(config, loopback()).expect("bind server");
    let addr = endpoint.local_addr().expect("server address");
    (endpoint, addr)
}

async fn connect(
    seed: &[u8; 32],
    pinned: NodeId,
    server: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let client = Endpoint::client(loopback()).expect("bind client");
    let config = tls::client_config(seed, pinned, transport()).expect("client config");
    client
        .connect_with(config, server, CERT_NAME)
        .expect("start connecting")
        .await
}

#[tokio::test]
async fn pinned_client_connects_and_both_sides_see_each_other() {
    let (server, addr) = server(&SERVER_SEED);

    let accept = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let seen = tls::peer_node_id(&conn);
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let request = recv.read_to_end(1024).await.unwrap();
        send.write_all(&request).await.unwrap();
        send.finish().unwrap();
        // Keep the connection until the client has read the echo and closed.
        conn.closed().await;
        seen
    });

    let conn = connect(&CLIENT_A_SEED, node_id(&SERVER_SEED), addr)
        .await
        .unwrap();
    assert_eq!(tls::peer_node_id(&conn), Some(node_id(&SERVER_SEED)));
    assert_eq!(
        conn.handshake_data()
            .unwrap()
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .unwrap()
            .protocol
            .as_deref(),
        Some(gridsync_proto::ALPN)
    );

    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"hello relay").await.unwrap();
    send.finish().unwrap();
    let echo = recv.read_to_end(1024).await.unwrap();
    assert_eq!(echo, b"hello relay");
    conn.close(0u32.into(), b"done");

    assert_eq!(accept.await.unwrap(), Some(node_id(&CLIENT_A_SEED)));
}

#[tokio::test]
async fn wrong_pin_fails_with_a_mismatch_error() {
    let (server, addr) = server(&SERVER_SEED);
    let accept = tokio::spawn(async move { server.accept().await.unwrap().await });

    let wrong = node_id(&CLIENT_B_SEED);
    let err = connect(&CLIENT_A_SEED, wrong, addr).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("node id mismatch"), "{text}");
    assert!(text.contains(&wrong.to_hex()), "{text}");
    assert!(text.contains(&node_id(&SERVER_SEED).to_hex()), "{text}");

    // The server never gets a connection either.
    assert!(accept.await.unwrap().is_err());
}

#[tokio::test]
async fn server_sees_each_clients_node_id() {
    let (server, addr) = server(&SERVER_SEED);
    let server_id = node_id(&SERVER_SEED);

    for seed in [CLIENT_A_SEED, CLIENT_B_SEED] {
        // quinn only completes a handshake the server accepted, so run both sides together.
        let (client, conn) = tokio::join!(connect(&seed, server_id, addr), async {
            server.accept().await.unwrap().await
        });
        let (client, conn) = (client.unwrap(), conn.unwrap());
        assert_eq!(tls::peer_node_id(&conn), Some(node_id(&seed)));
        assert_eq!(tls::peer_node_id(&client), Some(server_id));
        client.close(0u32.into(), b"done");
    }
}

/// A stranger's client: trusts any server and presents no certificate, or a non-Ed25519 one.
fn stranger_config(
    cert: Option<(
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnyServer(provider)));
    let mut tls = match cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![gridsync_proto::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC config");
    quinn::ClientConfig::new(Arc::new(quic))
}

#[derive(Debug)]
struct TrustAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for TrustAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn server_refuses_clients_without_an_ed25519_certificate() {
    let (server, addr) = server(&SERVER_SEED);
    let ecdsa = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = rcgen::CertificateParams::new(vec![CERT_NAME.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        (cert.der().clone(), key.into())
    };

    // The server asks for Ed25519 signatures only, so rustls withholds the ECDSA certificate
    // and both cases end in "peer sent no certificates"; the verifier's own "not Ed25519" check
    // is covered by `node_id_of`'s unit tests.
    for (what, cert) in [
        ("no certificate", None),
        ("an ECDSA certificate", Some(ecdsa)),
    ] {
        let client = Endpoint::client(loopback()).unwrap();
        let connecting = client
            .connect_with(stranger_config(cert), addr, CERT_NAME)
            .unwrap();
        let (client_side, server_side) = tokio::join!(
            async {
                // In TLS 1.3 the server judges the client's certificate after the client's
                // Finished, when the client already counts the handshake as complete: the
                // connect usually succeeds, and the refusal arrives as the connection's close,
                // which the client's first stream operation runs into.
                match connecting.await {
                    Ok(conn) => {
                        println!("{what}: the connect succeeded");
                        let first_use = async {
                            let (mut send, mut recv) = conn.open_bi().await?;
                            send.write_all(b"hello").await?;
                            send.finish()?;
                            recv.read_to_end(1024).await?;
                            Ok::<(), Box<dyn std::error::Error>>(())
                        };
                        assert!(first_use.await.is_err(), "{what}: the stream must fail");
                        conn.closed().await
                    }
                    Err(err) => {
                        println!("{what}: the connect failed");
                        err
                    }
                }
            },
            async { server.accept().await.unwrap().await }
        );
        let server_err = server_side.expect_err(what).to_string();
        assert!(
            server_err.contains("cryptographic handshake failed"),
            "{what}: {server_err}"
        );
        // A transport close (not an application one) with the TLS alert certificate_required
        // (116) as QUIC crypto error 0x0100 + 116 = 0x0174.
        match &client_side {
            quinn::ConnectionError::ConnectionClosed(close) => {
                assert_eq!(
                    close.error_code,
                    quinn::TransportErrorCode::crypto(116),
                    "{what}: {client_side}"
                );
                assert_eq!(u64::from(close.error_code), 0x0174, "{what}");
            }
            other => panic!("{what}: expected a transport close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn connect_names_both_ids_of_a_relay_that_is_not_the_pinned_one() {
    let (server, addr) = server(&SERVER_SEED);
    let accept = tokio::spawn(async move { server.accept().await.unwrap().await });

    let wrong = node_id(&CLIENT_B_SEED);
    let proved = node_id(&SERVER_SEED);
    let endpoint = gridsync_net::client::endpoint(loopback()).expect("client endpoint");
    let err = gridsync_net::client::connect(&endpoint, &CLIENT_A_SEED, addr, wrong)
        .await
        .expect_err("the pin does not match");
    match &err {
        gridsync_net::NetError::WrongRelay {
            addr: a,
            expected,
            got,
        } => {
            assert_eq!(*a, addr);
            assert_eq!(*expected, wrong);
            assert_eq!(*got, proved);
        }
        other => panic!("expected WrongRelay, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "the relay at {addr} is not the one pinned (node id mismatch): it proved node id {}, expected {} (check --relay-id)",
            proved.to_hex(),
            wrong.to_hex()
        )
    );
    assert!(accept.await.unwrap().is_err());
}
