//! The console in a real headless Chromium, driven through chromedriver's WebDriver HTTP API:
//! log in through the form, see a synced incident with its thumbnail, see a new one appear
//! without a reload, dispatch it through the form, and as a viewer be refused (no button, and
//! a forged POST gets 403). Screenshots of the pages go to
//! `$CARGO_TARGET_DIR/console-screenshots/` (or `target/console-screenshots/`).
//!
//! Needs Debian's `chromium` and `chromium-driver`; with `GRIDSYNC_SKIP_BROWSER=1` the test
//! is skipped (and says so).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{request, World, DEADLINE, PASSWORD};
use gridsync_store::{OperatorRole, Store};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, ended when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn spawn() -> Driver {
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
        let stdout = child.stdout.take().expect("chromedriver stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port.parse::<u16>().ok());
                }
            }
        });
        let port = rx
            .recv_timeout(DEADLINE)
            .ok()
            .flatten()
            .expect("chromedriver printed the port it listens on");
        Driver {
            child,
            addr: (Ipv4Addr::LOCALHOST, port).into(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let res = request(
            self.addr,
            None,
            method,
            path,
            &[("Content-Type", "application/json")],
            &bytes,
        )
        .await;
        let value: Value = serde_json::from_slice(&res.body).unwrap_or_else(|e| {
            panic!("WebDriver {method} {path}: not JSON ({e}): {}", res.text())
        });
        assert!(
            res.status == 200,
            "WebDriver {method} {path}: {} {}",
            res.status,
            value
        );
        value["value"].clone()
    }
}

/// One browser session.
struct Browser<'a> {
    driver: &'a Driver,
    id: String,
    base: String,
}

impl<'a> Browser<'a> {
    async fn new(driver: &'a Driver, base: &str, profile: &std::path::Path) -> Browser<'a> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1366,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = driver.call("POST", "/session", Some(caps)).await;
        let id = v["sessionId"].as_str().expect("session id").to_owned();
        Browser {
            driver,
            id,
            base: base.to_owned(),
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
            .await
    }

    async fn go(&self, path: &str) {
        self.cmd(
            "POST",
            "/url",
            Some(json!({"url": format!("{}{path}", self.base)})),
        )
        .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        match v[ELEMENT].as_str() {
            Some(id) => id.to_owned(),
            None => panic!("no element {css:?}: {v}"),
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})))
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Polls `script` until it returns `true`.
    async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "gave up waiting until {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A screenshot of the whole page: the window is made as tall as the document first.
    async fn full_screenshot(&self, name: &str) {
        let height = self
            .js("return document.documentElement.scrollHeight;")
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(900, 4000);
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": 1366, "height": height + 120})),
        )
        .await;
        self.screenshot(name).await;
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": 1366, "height": 900})),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64_decode(v.as_str().expect("base64 PNG"));
        assert_eq!(&png[1..4], b"PNG");
        let dir = common::screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn login(&self, name: &str) {
        self.go("/login").await;
        self.type_into("#name", name).await;
        self.type_into("#password", PASSWORD).await;
        self.click("#login").await;
        self.wait_for(
            "logged in",
            &format!("return !!document.querySelector('[data-operator=\"{name}\"]');"),
        )
        .await;
    }

    async fn quit(self) {
        self.driver
            .call("DELETE", &format!("/session/{}", self.id), None)
            .await;
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Whether the browser is here; `None`: skipped as asked.
fn browser_present() -> Option<()> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    if std::env::var("GRIDSYNC_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!(
            "browser test skipped (GRIDSYNC_SKIP_BROWSER=1): {} missing",
            missing.join(", ")
        );
        return None;
    }
    panic!(
        "{} missing: install Debian's `chromium chromium-driver` (apt-get install chromium chromium-driver), or set GRIDSYNC_SKIP_BROWSER=1 to skip this test",
        missing.join(" and ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_work_the_console_in_a_real_browser() {
    if browser_present().is_none() {
        return;
    }
    let world = World::new().await;
    let first = world
        .report_and_sync("garbage piled by the school gate")
        .await;
    world.add_operator("dora", OperatorRole::Dispatcher);
    world.add_operator("vic", OperatorRole::Viewer);
    let (console, stop) = world.console(None, false).await;
    let base = format!("http://{}", console.local_addr);
    let driver = Driver::spawn();

    // The dispatcher logs in through the form and sees the synced incident, thumbnail shown.
    let profile = world.dir.path().join("chromium-dispatcher");
    let b = Browser::new(&driver, &base, &profile).await;
    b.login("dora").await;
    b.wait_for(
        "the synced incident's thumbnail is loaded",
        &format!(
            "var img = document.querySelector('tr[data-incident=\"{first}\"] td.thumb img'); return !!img && img.complete && img.naturalWidth > 0;"
        ),
    )
    .await;
    // Wait until the page's event stream is open, then commit a new incident.
    b.wait_for(
        "the live stream is open",
        "return document.body.classList.contains('live');",
    )
    .await;
    let second = world
        .report_and_sync("sewage overflowing on the corner")
        .await;
    b.wait_for(
        "the new incident appears without a reload",
        &format!("return !!document.querySelector('tr[data-incident=\"{second}\"]');"),
    )
    .await;
    b.wait_for(
        "the new thumbnail is loaded",
        &format!(
            "var img = document.querySelector('tr[data-incident=\"{second}\"] td.thumb img'); return !!img && img.complete && img.naturalWidth > 0;"
        ),
    )
    .await;
    b.screenshot("list").await;

    // Accept, then dispatch it through the forms.
    b.go(&format!("/incident/{second}")).await;
    b.click("#do-accept").await;
    b.wait_for("accepted", "return !!document.getElementById('flash');")
        .await;
    b.type_into("#dispatch-department", "sanitation").await;
    b.click("#do-dispatch").await;
    b.wait_for(
        "dispatched",
        "var f = document.getElementById('flash'); return !!f && f.textContent.indexOf('dispatch') >= 0;",
    )
    .await;
    b.wait_for(
        "the photo is shown full size",
        "var img = document.querySelector('.photos img'); return !!img && img.complete && img.naturalWidth > 0;",
    )
    .await;
    b.full_screenshot("detail").await;
    let store = Store::open(&world.relay_db).expect("open");
    let events = store.events_of(&second).expect("events");
    let dispatch = events
        .iter()
        .find(|e| e.payload.kind() == "Assigned")
        .expect("the dispatch is in the store");
    assert_eq!(dispatch.author, "street-2/dora");
    dispatch.verify().expect("signed by the relay");
    assert_eq!(
        store
            .incident(&second)
            .expect("read")
            .expect("incident")
            .view()
            .status,
        "dispatched"
    );

    b.go("/screen").await;
    b.wait_for(
        "the big screen is filled",
        "var n = document.querySelector('[data-counter=open]'); var img = document.getElementById('newest-photo'); return !!n && n.textContent === '2' && img.complete && img.naturalWidth > 0;",
    )
    .await;
    b.screenshot("screen").await;
    b.go("/map").await;
    b.wait_for("the map page", "return document.readyState === 'complete';")
        .await;
    b.screenshot("map").await;
    b.go("/evaluation").await;
    b.wait_for(
        "the evaluation page",
        "return document.readyState === 'complete';",
    )
    .await;
    b.screenshot("evaluation").await;
    b.quit().await;

    // The viewer sees no dispatch button, and a forged POST is refused with 403.
    let profile = world.dir.path().join("chromium-viewer");
    let v = Browser::new(&driver, &base, &profile).await;
    v.login("vic").await;
    v.go(&format!("/incident/{first}")).await;
    v.wait_for(
        "the detail page",
        "return document.readyState === 'complete';",
    )
    .await;
    assert_eq!(
        v.js("return !!document.getElementById('do-dispatch');")
            .await,
        json!(false)
    );
    let before = world.event_count();
    let status = v
        .js(&format!(
            "var csrf = document.querySelector('meta[name=csrf-token]').content;
             return fetch('/incident/{first}/dispatch', {{method: 'POST', credentials: 'same-origin',
               headers: {{'Content-Type': 'application/x-www-form-urlencoded', 'X-CSRF-Token': csrf}},
               body: 'department=sanitation'}}).then(function (r) {{ return r.status; }});"
        ))
        .await;
    assert_eq!(status, json!(403));
    assert_eq!(world.event_count(), before, "nothing written");
    v.full_screenshot("viewer-detail").await;
    v.quit().await;

    drop(driver);
    let _ = stop.send(true);
    console.wait().await;
}
