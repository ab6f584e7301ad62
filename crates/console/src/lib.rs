//! gridsync-console: the platform console, the web app a relay serves to its operators.
//!
//! [`start`] serves it on one address, plain HTTP/1.1 or TLS ([`TlsFiles`]), over its own
//! connections to the relay's SQLite store (the relay runs beside it with its own): a
//! [`gridsync_store::Store`] for reads and a [`gridsync_device::Device`] for decisions, each
//! behind a mutex held only inside `spawn_blocking`. Every decision is the relay's own signed
//! event, its `author` naming the operator (`"{relay name}/{operator}"`).
//!
//! Modules: `auth` (passwords, roles, sessions, CSRF, the login rate limit, the `next=`
//! sanitiser), `app` (the routes and handlers), `pages` (the server-rendered HTML), `html`
//! (escaping), and the page bodies of `map` and `evaluation`. Static assets are embedded in
//! the binary and served under `/assets/`; every response carries a strict
//! Content-Security-Policy (no inline script) and the usual hardening headers.
//!
//! `/metrics` (when [`ConsoleOptions::metrics`] is set) needs no login, so that Prometheus
//! can scrape it: firewall it, or bind the console to an address only the operators and the
//! scraper reach.

pub mod auth;
pub mod evaluation;
pub mod html;
pub mod map;

mod app;
mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use auth::{hash_password, new_api_key, verify_password, Role, MIN_PASSWORD_LEN};

/// The Prometheus text `/metrics` serves (called on each scrape).
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// The console's certificate chain and private key, PEM files read at start.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How the console is served.
#[derive(Clone)]
pub struct ConsoleOptions {
    /// The relay's store.
    pub db: PathBuf,
    /// Where to listen (port 0: any free port, see [`ConsoleHandle::local_addr`]).
    pub addr: SocketAddr,
    /// TLS, or plain HTTP with `None`.
    pub tls: Option<TlsFiles>,
    /// Whether to serve the read-only Open311 GeoReport v2 API under `/open311/v2/`.
    pub open311: bool,
    /// The Prometheus text of `/metrics`; `None`: `/metrics` is 404.
    pub metrics: Option<MetricsFn>,
    /// The map page's tiles and grid boundaries.
    pub map: map::MapConfig,
}

impl std::fmt::Debug for ConsoleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOptions")
            .field("db", &self.db)
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("open311", &self.open311)
            .field("metrics", &self.metrics.is_some())
            .field("map", &self.map)
            .finish()
    }
}

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console: {0}")]
    Device(#[from] gridsync_device::DeviceError),
    #[error("console: {0}")]
    Store(#[from] gridsync_store::StoreError),
    #[error("console: cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("console TLS: {path}: {why}")]
    TlsFile { path: PathBuf, why: String },
    #[error("console TLS: the certificate and key do not make a server configuration: {0}")]
    Tls(String),
    #[error("console: {0}")]
    Auth(#[from] auth::AuthError),
    #[error("console: the task opening the store failed: {0}")]
    Task(String),
}

/// A running console.
#[derive(Debug)]
pub struct ConsoleHandle {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ConsoleHandle {
    /// Waits until the console stopped (after its shutdown signal).
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the console's task ended abnormally");
        }
    }
}

/// Starts the console on `options.addr`; it stops when `shutdown` turns `true` (open
/// connections, live event streams included, are then closed).
pub async fn start(
    options: ConsoleOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<ConsoleHandle, ConsoleError> {
    let tls = match &options.tls {
        Some(files) => Some(tls_acceptor(files)?),
        None => None,
    };
    let listener = TcpListener::bind(options.addr)
        .await
        .map_err(|error| ConsoleError::Listen {
            addr: options.addr,
            error,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|error| ConsoleError::Listen {
            addr: options.addr,
            error,
        })?;
    let state = app::State::open(&options, local_addr, shutdown.clone()).await?;
    let router = app::router(state.clone());
    tracing::info!(%local_addr, tls = tls.is_some(), "console listening");
    let task = tokio::spawn(serve(listener, tls, router, state, shutdown));
    Ok(ConsoleHandle { local_addr, task })
}

impl TlsFiles {
    /// Reads and checks the certificate chain and key, as [`start`] does: a daemon calls it
    /// before starting anything else, so a bad file stops it with one line naming the file.
    pub fn check(&self) -> Result<(), ConsoleError> {
        tls_acceptor(self).map(|_| ())
    }
}

/// Reads the PEM certificate chain and key of `files` into a TLS acceptor (rustls with the
/// `ring` provider, HTTP/1.1 only).
fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ConsoleError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let file_err = |path: &PathBuf, why: String| ConsoleError::TlsFile {
        path: path.clone(),
        why,
    };
    let cert_pem = std::fs::read(&files.cert).map_err(|e| file_err(&files.cert, e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(&files.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(&files.cert, "holds no PEM certificate".into()));
    }
    let key_pem = std::fs::read(&files.key).map_err(|e| file_err(&files.key, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| file_err(&files.key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConsoleError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ConsoleError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The accept loop: one task per connection, all ended at shutdown.
async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    state: Arc<app::State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = app::stopped(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "console: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Reap finished connections so the set stays the size of what is open.
        while connections.try_join_next().is_some() {}
        let router = router.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_connection(s, peer, router).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "console: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "console: TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, peer, router).await,
            }
        });
    }
    connections.shutdown().await;
    state.stop();
    tracing::info!("console stopped");
}

/// Serves HTTP/1.1 on one connection; every request carries the client's address.
async fn serve_connection<S>(stream: S, peer: SocketAddr, router: axum::Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(app::ClientAddr(peer));
            let mut router = router.clone();
            // Router is always ready (its `poll_ready` returns `Ready` at once).
            tower_service::Service::call(&mut router, req)
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30))
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "console: connection ended with an error");
    }
}
