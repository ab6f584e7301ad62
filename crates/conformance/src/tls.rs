//! TLS for the harness's QUIC clients, written from PROTOCOL.md §2: a self-signed Ed25519
//! certificate whose key is the node id, the server pinned by its key, and the deliberately
//! wrong variants the hostile cases need (another ALPN, no certificate, a non-Ed25519 key,
//! resumption on).

use std::sync::{Arc, Mutex};

use ed25519_dalek::pkcs8::EncodePrivateKey;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::wire::ALPN;

/// `30 2a 30 05 06 03 2b 65 70 03 21 00`: the DER prefix of every Ed25519 SPKI (§2.2).
const ED25519_SPKI: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The server name sent (§2.2: not checked by the server).
pub const SERVER_NAME: &str = "gridsync";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot build a certificate: {0}")]
    Certificate(String),
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// What the client presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    /// The identity's Ed25519 certificate (§2.2).
    Node,
    /// No certificate at all.
    None,
    /// A self-signed ECDSA P-256 certificate: names no node.
    Ecdsa,
}

/// How a harness client connects.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub cert: ClientCert,
    /// ALPN protocols offered (empty: none).
    pub alpn: Vec<Vec<u8>>,
    /// The server key the client insists on; `None` accepts any Ed25519 server.
    pub pin: Option<[u8; 32]>,
    /// Whether the client keeps TLS sessions to resume (§2.2 says the server issues none).
    pub resumption: bool,
}

impl ClientTls {
    /// A conforming client pinned to `pin`.
    pub fn pinned(pin: [u8; 32]) -> Self {
        Self {
            cert: ClientCert::Node,
            alpn: vec![ALPN.to_vec()],
            pin: Some(pin),
            resumption: false,
        }
    }
}

/// What the client's verifier saw of the server.
#[derive(Debug, Default)]
pub struct Observed {
    /// The server certificate's Ed25519 key, if it had one.
    pub server_key: Option<[u8; 32]>,
    /// Whether the certificate's SPKI was something else than Ed25519.
    pub not_ed25519: bool,
}

/// The node certificate of the §2.2 table: Ed25519 key, `CN=gridsync`, DNS `gridsync`,
/// 1975-4096.
pub fn node_certificate(
    secret: &[u8; 32],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let signing = ed25519_dalek::SigningKey::from_bytes(secret);
    let pkcs8 = signing
        .to_pkcs8_der()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let key_der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key_der, &rcgen::PKCS_ED25519)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let cert = self_signed(&key)?;
    Ok((cert, PrivateKeyDer::Pkcs8(key_der)))
}

fn ecdsa_certificate() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let cert = self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert, der))
}

fn self_signed(key: &rcgen::KeyPair) -> Result<CertificateDer<'static>, TlsError> {
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, SERVER_NAME);
    params.distinguished_name = name;
    params.not_before = rcgen::date_time_ymd(1975, 1, 1);
    params.not_after = rcgen::date_time_ymd(4096, 1, 1);
    let cert = params
        .self_signed(key)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    Ok(cert.der().clone())
}

/// The Ed25519 key of a DER certificate, if its SPKI is the Ed25519 one (§2.2).
pub fn ed25519_key(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let parsed = ParsedCertificate::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(ED25519_SPKI.as_slice())?;
    <[u8; 32]>::try_from(key).ok()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A quinn client configuration, and where its verifier records what it saw.
pub fn client_config(
    secret: &[u8; 32],
    options: &ClientTls,
    transport: Arc<quinn::TransportConfig>,
) -> Result<(quinn::ClientConfig, Arc<Mutex<Observed>>), TlsError> {
    let provider = provider();
    let observed = Arc::new(Mutex::new(Observed::default()));
    let verifier = Arc::new(Verifier {
        pin: options.pin,
        algorithms: provider.signature_verification_algorithms,
        observed: observed.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = match options.cert {
        ClientCert::None => builder.with_no_client_auth(),
        ClientCert::Node => {
            let (cert, key) = node_certificate(secret)?;
            builder
                .with_client_auth_cert(vec![cert], key)
                .map_err(|e| TlsError::Config(e.to_string()))?
        }
        ClientCert::Ecdsa => {
            let (cert, key) = ecdsa_certificate()?;
            builder
                .with_client_auth_cert(vec![cert], key)
                .map_err(|e| TlsError::Config(e.to_string()))?
        }
    };
    tls.alpn_protocols = options.alpn.clone();
    if options.resumption {
        tls.enable_early_data = true;
    } else {
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport);
    Ok((config, observed))
}

/// Accepts the server whose Ed25519 key is the pin (any Ed25519 key without a pin), after
/// checking its TLS 1.3 signature; records what it saw.
#[derive(Debug)]
struct Verifier {
    pin: Option<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
    observed: Arc<Mutex<Observed>>,
}

impl Verifier {
    fn observe(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(key) = ed25519_key(end_entity) else {
            self.observe().not_ed25519 = true;
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        };
        self.observe().server_key = Some(key);
        match self.pin {
            Some(pin) if pin != key => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_certificate_carries_the_node_key() {
        let secret = [7u8; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&secret)
            .verifying_key()
            .to_bytes();
        let (cert, _) = node_certificate(&secret).expect("certificate");
        assert_eq!(ed25519_key(&cert), Some(public));
        let (ecdsa, _) = ecdsa_certificate().expect("certificate");
        assert_eq!(ed25519_key(&ecdsa), None);
    }
}
