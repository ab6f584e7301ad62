//! Mutual TLS 1.3 for QUIC, with self-signed certificates pinned by node id.
//!
//! A node's identity is its Ed25519 key pair and its [`NodeId`] *is* the public key, so a node
//! presents a self-signed certificate whose key is the node key ([`certificate`]), and a peer is
//! authenticated by the key in its certificate, not by a CA:
//!
//! - the client pins the node id it expects and refuses any server whose certificate key differs
//!   ([`client_config`]);
//! - the server requires a client certificate and accepts any Ed25519 one; the application then
//!   reads the peer's id with [`peer_node_id`] and decides whether that node is enrolled
//!   ([`server_config`]).
//!
//! In both directions the TLS 1.3 `CertificateVerify` signature proves that the peer holds the
//! private key of the certificate it sent. Nothing else in the certificate is trusted: its own
//! signature, names and validity period are not checked (a device with a wrong clock must still
//! connect; the validity written by [`certificate`] spans 1975 to 4096 anyway).
//!
//! Only TLS 1.3 with the `ring` provider, only Ed25519 keys, only ALPN [`ALPN`]. Session
//! resumption is disabled, so every connection runs the full certificate check above.

use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, OnceLock};

use ed25519_dalek::pkcs8::EncodePrivateKey;
use gridsync_core::NodeId;
use gridsync_proto::ALPN;
use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The name written into our certificates (subject common name and DNS subject alternative
/// name), and the server name clients pass to `connect`. It carries no trust.
pub const CERT_NAME: &str = "gridsync";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): `SEQUENCE(42) { SEQUENCE(5) {
/// OID 1.3.101.112 } BIT STRING(33) 0x00 }`, followed by the 32-byte public key. RFC 8410
/// forbids algorithm parameters, so every valid Ed25519 SPKI is exactly these 12 bytes and the
/// key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What can go wrong building TLS configurations or checking a peer certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The node seed could not be encoded as a PKCS#8 private key.
    #[error("cannot encode the node key as PKCS#8: {0}")]
    Pkcs8(ed25519_dalek::pkcs8::Error),
    /// rcgen refused the key or the certificate parameters.
    #[error("cannot build the node certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration (protocol versions, certificate or key).
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The crypto provider lacks the cipher suite QUIC needs for its initial packets.
    #[error("cannot build the QUIC crypto configuration: {0}")]
    Quic(#[from] NoInitialCipherSuite),
    /// The certificate is not well-formed X.509 DER.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(rustls::Error),
    /// The certificate's key is not an Ed25519 key, so it names no node.
    #[error("certificate key is not Ed25519, so it is not a gridsync node certificate")]
    NotEd25519,
    /// The peer's certificate belongs to another node than the one pinned.
    #[error("peer node id mismatch: expected {expected}, got {got}")]
    NodeIdMismatch {
        /// The pinned node id.
        expected: NodeId,
        /// The node id in the certificate the peer presented.
        got: NodeId,
    },
}

/// Builds this node's self-signed certificate from its Ed25519 seed.
///
/// The certificate's key is the node key, its subject and DNS name are [`CERT_NAME`], it is
/// valid from 1975 to 4096 and its serial number is [`certificate_serial`] of the key, so the
/// same seed always gives the same certificate (Ed25519 signatures are deterministic).
pub fn certificate(
    secret: &[u8; 32],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let signing = ed25519_dalek::SigningKey::from_bytes(secret);
    let pkcs8 = signing.to_pkcs8_der().map_err(TlsError::Pkcs8)?;
    let key_der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key_der, &rcgen::PKCS_ED25519)?;

    let mut params = rcgen::CertificateParams::new(vec![CERT_NAME.to_owned()])?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, CERT_NAME);
    params.distinguished_name = name;
    params.not_before = rcgen::date_time_ymd(1975, 1, 1);
    params.not_after = rcgen::date_time_ymd(4096, 1, 1);
    let public = signing.verifying_key().to_bytes();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&certificate_serial(
        &public,
    )));
    let cert = params.self_signed(&key_pair)?;

    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(key_der)))
}

/// The serial number of a node's certificate: the first 20 bytes of the SHA-256 of its 32-byte
/// Ed25519 public key, with the most significant bit cleared (so the DER INTEGER is positive
/// and at most 20 bytes, as RFC 5280 requires; DER drops any leading zero bytes). This is
/// what rcgen 0.13 derives when no serial is given; it is set explicitly so that it does not
/// depend on the rcgen version. It carries no meaning: peers must not depend on it.
pub fn certificate_serial(public_key: &[u8; 32]) -> [u8; 20] {
    let digest = gridsync_core::BlobHash::of(public_key).0;
    let mut serial = [0u8; 20];
    serial.copy_from_slice(&digest[..20]);
    serial[0] &= 0x7f;
    serial
}

/// Server side: presents our certificate and requires one from the client.
///
/// Any client whose certificate holds an Ed25519 key, and whose handshake signature verifies
/// with that key, completes the handshake; the application must then check that
/// [`peer_node_id`] is an enrolled node. ALPN [`ALPN`] only, TLS 1.3 only.
pub fn server_config(
    secret: &[u8; 32],
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let (cert, key) = certificate(secret)?;
    let verifier = Arc::new(AnyNodeClientVerifier {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: every connection presents and proves its certificate.
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;

    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(transport);
    Ok(config)
}

/// Client side: presents our certificate and accepts the server only if its certificate's
/// Ed25519 key is `expected`.
///
/// Against any other server the handshake fails ([`TlsError::NodeIdMismatch`] inside the
/// rustls error; quinn passes it on only as text). [`pinned_client_config`] also says which
/// node the server proved. Pass [`CERT_NAME`] as the server name to `Endpoint::connect`; it is
/// not checked.
pub fn client_config(
    secret: &[u8; 32],
    expected: NodeId,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    pinned_client_config(secret, expected, transport).map(|(config, _)| config)
}

/// [`client_config`], with the [`PinCheck`] its verifier records a mismatch in: after a failed
/// handshake with this configuration, [`PinCheck::mismatch`] says whether the pin was the
/// reason, and names both node ids.
pub fn pinned_client_config(
    secret: &[u8; 32],
    expected: NodeId,
    transport: Arc<quinn::TransportConfig>,
) -> Result<(quinn::ClientConfig, PinCheck), TlsError> {
    let provider = provider();
    let (cert, key) = certificate(secret)?;
    let check = PinCheck::default();
    let verifier = Arc::new(PinnedServerVerifier {
        expected,
        algorithms: provider.signature_verification_algorithms,
        check: check.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: the pinned-key check runs on every connection.
    tls.resumption = rustls::client::Resumption::disabled();

    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport);
    Ok((config, check))
}

/// A server proved another node id than the one pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinMismatch {
    /// The pinned node id.
    pub expected: NodeId,
    /// The node id in the certificate the server presented.
    pub got: NodeId,
}

/// Where a pinned client configuration's verifier records a [`PinMismatch`] (shared by the
/// clones of it). quinn reduces the verifier's error to text in its `ConnectionError`, so
/// the typed facts come from here.
#[derive(Debug, Clone, Default)]
pub struct PinCheck(Arc<OnceLock<PinMismatch>>);

impl PinCheck {
    /// The mismatch the verifier found, if it refused a server for its node id.
    pub fn mismatch(&self) -> Option<PinMismatch> {
        self.0.get().copied()
    }
}

/// The node id of the peer of an established connection, from its certificate's key.
///
/// `None` before the handshake completed or if the peer presented no Ed25519 certificate
/// (which the verifiers above never let through).
pub fn peer_node_id(conn: &quinn::Connection) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_id_of(chain.first()?).ok()
}

/// The node id in a DER certificate: its Ed25519 SubjectPublicKeyInfo key.
///
/// Errors if the bytes are not an X.509 certificate or its key is not Ed25519. Hostile input
/// gives an error, never a panic (the parsing is rustls-webpki's).
pub fn node_id_of(cert: &CertificateDer<'_>) -> Result<NodeId, TlsError> {
    let parsed = ParsedCertificate::try_from(cert).map_err(TlsError::MalformedCertificate)?;
    let spki = parsed.subject_public_key_info();
    let key = spki
        .as_ref()
        .strip_prefix(ED25519_SPKI_PREFIX.as_slice())
        .ok_or(TlsError::NotEd25519)?;
    let key = <[u8; 32]>::try_from(key).map_err(|_| TlsError::NotEd25519)?;
    Ok(NodeId(key))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks a client certificate: any Ed25519 key will do (enrollment is the application's call).
#[derive(Debug)]
struct AnyNodeClientVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyNodeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        peer_id(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Checks a server certificate: its Ed25519 key must be the pinned node id.
#[derive(Debug)]
struct PinnedServerVerifier {
    expected: NodeId,
    algorithms: WebPkiSupportedAlgorithms,
    check: PinCheck,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = peer_id(end_entity)?;
        if got != self.expected {
            // The first mismatch of the connection is the one that failed it.
            let _ = self.check.0.set(PinMismatch {
                expected: self.expected,
                got,
            });
            return Err(certificate_error(TlsError::NodeIdMismatch {
                expected: self.expected,
                got,
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// [`node_id_of`] for the verifiers, with its error as a rustls certificate error.
fn peer_id(end_entity: &CertificateDer<'_>) -> Result<NodeId, rustls::Error> {
    node_id_of(end_entity).map_err(|err| match err {
        // Keep webpki's own error: it already is a certificate error with the right alert.
        TlsError::MalformedCertificate(inner) => inner,
        other => certificate_error(other),
    })
}

/// Wraps our error so that the peer gets a `certificate_unknown` alert and the local error
/// text carries our message.
fn certificate_error(err: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        Readable(err),
    ))))
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// rustls formats `CertificateError::Other` with `Debug`, and quinn turns the rustls error into
/// text; this wrapper's `Debug` is the error's `Display`, so the text reads
/// "... Other(OtherError(peer node id mismatch: expected …, got …))" rather than a struct dump.
struct Readable(TlsError);

impl fmt::Debug for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Readable {}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of_seed(seed: &[u8; 32]) -> NodeId {
        NodeId(
            ed25519_dalek::SigningKey::from_bytes(seed)
                .verifying_key()
                .to_bytes(),
        )
    }

    #[test]
    fn certificate_key_is_the_node_key() {
        let seed = [7u8; 32];
        let (cert, _) = certificate(&seed).unwrap();
        assert_eq!(node_id_of(&cert).unwrap(), id_of_seed(&seed));
    }

    /// The whole certificate of seed `[7; 32]`, byte for byte (PROTOCOL.md §2.2): a change of
    /// rcgen or of our parameters that changes it shows here.
    #[test]
    fn certificate_is_pinned_byte_for_byte() {
        const DER: [&str; 9] = [
            "308201003081b3a00302010202147e812c12f3ab4ce6ac5db69ac352f906cb1b",
            "11ef300506032b657030133111300f06035504030c086772696473796e633020",
            "170d3735303130313030303030305a180f34303936303130313030303030305a",
            "30133111300f06035504030c086772696473796e63302a300506032b65700321",
            "00ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d2",
            "2ca317301530130603551d11040c300a82086772696473796e63300506032b65",
            "70034100543c2812ce3f0f633e2cb3d571a5441d55e567d9ac71b7426949e6d1",
            "1d69661d192a43fe2266949b39a73a7db7f178ffa668ebf93a6bb8ceeb85bb52",
            "05295e09",
        ];
        let seed = [7u8; 32];
        let (cert, _) = certificate(&seed).unwrap();
        let hex: String = cert.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, DER.concat());
        // The serial: INTEGER (02), 20 bytes (14), certificate_serial of the key.
        let serial = certificate_serial(&id_of_seed(&seed).0);
        let mut tlv = vec![0x02, 0x14];
        tlv.extend_from_slice(&serial);
        assert_eq!(&cert.as_ref()[12..34], &tlv[..]);
        assert_eq!(serial[0] & 0x80, 0);
    }

    #[test]
    fn certificate_is_deterministic() {
        let (a, _) = certificate(&[1u8; 32]).unwrap();
        let (b, _) = certificate(&[1u8; 32]).unwrap();
        let (c, _) = certificate(&[2u8; 32]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn garbage_and_truncated_der_is_an_error() {
        let (cert, _) = certificate(&[3u8; 32]).unwrap();
        let bytes = cert.as_ref();
        for len in 0..bytes.len() {
            let truncated = CertificateDer::from(&bytes[..len]);
            assert!(
                matches!(
                    node_id_of(&truncated),
                    Err(TlsError::MalformedCertificate(_))
                ),
                "truncated to {len} bytes"
            );
        }
        for garbage in [
            &[][..],
            &[0x30][..],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
            &[0x30, 0x80, 0x00, 0x00][..],
            &[0xff; 64][..],
            &[0x00; 64][..],
        ] {
            assert!(node_id_of(&CertificateDer::from(garbage)).is_err());
        }
        // Every single-byte corruption either still parses as our key or is refused, never a
        // panic.
        for i in 0..bytes.len() {
            let mut corrupted = bytes.to_vec();
            corrupted[i] ^= 0xa5;
            let _ = node_id_of(&CertificateDer::from(corrupted));
        }
    }

    #[test]
    fn non_ed25519_certificate_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![CERT_NAME.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(matches!(node_id_of(cert.der()), Err(TlsError::NotEd25519)));
    }

    #[test]
    fn mismatch_error_names_both_ids() {
        let expected = id_of_seed(&[1u8; 32]);
        let got = id_of_seed(&[2u8; 32]);
        let text = certificate_error(TlsError::NodeIdMismatch { expected, got }).to_string();
        assert!(text.contains("mismatch"), "{text}");
        assert!(text.contains(&expected.to_hex()), "{text}");
        assert!(text.contains(&got.to_hex()), "{text}");
    }
}
