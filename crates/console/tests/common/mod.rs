//! Shared by the console's end-to-end tests: a real relay store with a synced incident (a
//! handheld reports with a photo and syncs to a real relay on 127.0.0.1 port 0), operator
//! accounts, a console started on it, and a small HTTP/1.1 client (plain or TLS) over a real
//! TCP socket.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridsync_console::{ConsoleHandle, ConsoleOptions, TlsFiles};
use gridsync_core::{Category, IncidentId, Scope, Severity};
use gridsync_device::{Device, NewReport, PhotoInput, SyncTarget, SystemEnv};
use gridsync_relay::RelayHandle;
use gridsync_store::{OperatorRole, Store};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The handheld's grid.
pub const GRID: &str = "110101/002/014/03";
/// Every operator's password in the tests.
pub const PASSWORD: &str = "correct horse battery";

/// How long anything is awaited (never a fixed sleep: conditions are polled until then).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A sample photo of the repository's fixtures.
pub fn photo() -> PhotoInput {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/photos/cat-2400x1600-rot8.jpg");
    PhotoInput::from_path(&path, &Default::default())
        .unwrap_or_else(|e| panic!("fixture photo {}: {e}", path.display()))
}

/// A relay store, a handheld enrolled at it, and the relay running.
pub struct World {
    pub dir: tempfile::TempDir,
    pub relay_db: PathBuf,
    pub device_db: PathBuf,
    pub relay: Option<RelayHandle>,
}

impl World {
    /// Makes the relay (`street-2`, a street) and the handheld, enrolls it, starts the relay.
    pub async fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let relay_db = dir.path().join("relay.db");
        let device_db = dir.path().join("device.db");
        Device::init_node(&relay_db, "street-2", "street", "", SystemEnv).expect("init relay");
        let device =
            Device::init(&device_db, "patrol-7", GRID.parse().expect("grid")).expect("init device");
        let scope: Scope = GRID.parse().expect("scope");
        Store::open(&relay_db)
            .expect("open relay")
            .enroll(
                &device.node_id(),
                gridsync_proto::Role::Device,
                &scope,
                now_ms(),
            )
            .expect("enroll");
        let relay = gridsync_relay::start(&relay_db, (Ipv4Addr::LOCALHOST, 0).into(), None)
            .await
            .expect("start relay");
        World {
            dir,
            relay_db,
            device_db,
            relay: Some(relay),
        }
    }

    /// The handheld reports an incident with a photo and syncs it to the relay.
    pub async fn report_and_sync(&self, description: &str) -> IncidentId {
        let mut device = Device::open(&self.device_db).expect("open device");
        let id = device
            .report(NewReport {
                category: Category::from_catalogue("garbage").expect("category"),
                description: description.to_owned(),
                location: None,
                severity: Severity::High,
                observed_at: None,
                photos: vec![photo()],
            })
            .expect("report");
        let relay = self.relay.as_ref().expect("relay running");
        let target = SyncTarget {
            addr: relay.local_addr,
            relay_id: relay.node_id,
        };
        device
            .sync(target, &Default::default(), &mut |_| {})
            .await
            .expect("sync");
        id
    }

    /// Adds an operator account to the relay's store.
    pub fn add_operator(&self, name: &str, role: OperatorRole) {
        let phc = gridsync_console::hash_password(PASSWORD).expect("hash");
        assert!(Store::open(&self.relay_db)
            .expect("open relay")
            .operator_add(name, role, &phc, now_ms())
            .expect("add operator"));
    }

    /// How many events the relay's store holds.
    pub fn event_count(&self) -> u64 {
        Store::open(&self.relay_db)
            .expect("open relay")
            .counts()
            .expect("counts")
            .events
    }

    /// Starts a console on the relay's store on 127.0.0.1 port 0.
    pub async fn console(
        &self,
        tls: Option<TlsFiles>,
        open311: bool,
    ) -> (ConsoleHandle, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let options = ConsoleOptions {
            db: self.relay_db.clone(),
            addr: (Ipv4Addr::LOCALHOST, 0).into(),
            tls,
            open311,
            metrics: Some(Arc::new(|| "gridsync_up 1\n".to_owned())),
            map: Default::default(),
        };
        let handle = gridsync_console::start(options, rx)
            .await
            .expect("start console");
        (handle, tx)
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Polls `condition` until it holds; panics naming `what` after [`DEADLINE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every `Set-Cookie`.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `name=value` of cookie `name` set by this response.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A TLS client configuration trusting `cert_der` only.
pub fn tls_client(cert_der: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert_der.to_vec()))
        .expect("add root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 request (`Connection: close`) to `addr`, over TLS with `tls`.
pub async fn request(
    addr: SocketAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    match tls {
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let stream = connector.connect(name, tcp).await.expect("TLS handshake");
            exchange(stream, addr, method, path, headers, body).await
        }
        None => exchange(tcp, addr, method, path, headers, body).await,
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write request");
    stream.write_all(body).await.expect("write body");
    stream.flush().await.expect("flush");
    let raw = tokio::time::timeout(DEADLINE, read_response(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("{method} {path} to {addr}: no response within the deadline"));
    parse(&raw)
}

/// Reads one response: up to its `Content-Length`, the end of its chunks, or the end of the
/// stream (a peer may keep the connection open despite `Connection: close`; a TLS peer may
/// close without close_notify: what was read counts).
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let body = &raw[split + 4..];
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(n) = length {
                if body.len() >= n {
                    return raw;
                }
            } else if head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n") {
                return raw;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the hidden input `name` in an HTML page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// A client session against a console: its address, TLS and cookies.
pub struct Client {
    pub addr: SocketAddr,
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub cookies: Vec<String>,
}

impl Client {
    pub fn new(addr: SocketAddr, tls: Option<tokio_rustls::TlsConnector>) -> Client {
        Client {
            addr,
            tls,
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.join("; ")
    }

    fn keep_cookies(&mut self, res: &Response) {
        for c in res.set_cookies() {
            let Some(pair) = c.split(';').next() else {
                continue;
            };
            let Some((name, _)) = pair.split_once('=') else {
                continue;
            };
            self.cookies.retain(|k| !k.starts_with(&format!("{name}=")));
            self.cookies.push(pair.to_owned());
        }
    }

    pub async fn get(&mut self, path: &str) -> Response {
        let cookie = self.cookie_header();
        let res = request(
            self.addr,
            self.tls.as_ref(),
            "GET",
            path,
            &[("Cookie", &cookie)],
            b"",
        )
        .await;
        self.keep_cookies(&res);
        res
    }

    pub async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Response {
        let cookie = self.cookie_header();
        let mut headers = vec![
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(extra);
        let res = request(
            self.addr,
            self.tls.as_ref(),
            "POST",
            path,
            &headers,
            &form(fields),
        )
        .await;
        self.keep_cookies(&res);
        res
    }

    /// Opens the login form and posts `name` and `password` from it.
    pub async fn login(&mut self, name: &str, password: &str) -> Response {
        let form_page = self.get("/login").await;
        assert_eq!(form_page.status, 200);
        let csrf = hidden(&form_page.text(), "csrf").expect("login csrf");
        self.post(
            "/login",
            &[
                ("name", name),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/"),
            ],
            &[],
        )
        .await
    }
}

/// The path of a cargo target dir to put screenshots in.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("console-screenshots")
}
