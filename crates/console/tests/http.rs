//! The console over a real TCP socket, against a real relay store holding an incident a
//! handheld synced: authentication, cookie flags (plain and TLS), CSRF, the login rate
//! limit, roles, and a dispatch recorded as the relay's signed event naming the operator.

mod common;

use common::{hidden, Client, World, PASSWORD};
use gridsync_console::TlsFiles;
use gridsync_store::{OperatorRole, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_go_to_the_login_or_get_401() {
    let world = World::new().await;
    let (console, stop) = world.console(None, false).await;
    let mut c = Client::new(console.local_addr, None);

    let res = c.get("/incident/x?y=1").await;
    assert_eq!(res.status, 303);
    assert_eq!(
        res.header("location"),
        Some("/login?next=/incident/x%3Fy%3D1")
    );
    let res = c.get("/").await;
    assert_eq!(res.status, 303);
    let res = c.get("/api/incidents").await;
    assert_eq!(res.status, 401);
    assert!(res.text().contains("log in"), "{}", res.text());
    let res = c.get("/api/events").await;
    assert_eq!(res.status, 401);
    // Public: the health check; no metrics without login is what the options say.
    let res = c.get("/healthz").await;
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));
    let res = c.get("/metrics").await;
    assert_eq!((res.status, res.text().as_str()), (200, "gridsync_up 1\n"));
    // Open311 is off: 404.
    assert_eq!(c.get("/open311/v2/services.json").await.status, 404);
    // Security headers on everything.
    let res = c.get("/login").await;
    let csp = res.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("img-src 'self' data:"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(res.header("x-frame-options"), Some("DENY"));
    assert_eq!(res.header("referrer-policy"), Some("same-origin"));
    // The login never redirects off the site.
    world.add_operator("ana", OperatorRole::Viewer);
    let form = c.get("/login?next=https://evil.example/").await.text();
    let csrf = hidden(&form, "csrf").expect("csrf");
    assert_eq!(hidden(&form, "next").as_deref(), Some("/"));
    let res = c
        .post(
            "/login",
            &[
                ("name", "ana"),
                ("password", PASSWORD),
                ("csrf", &csrf),
                ("next", "//evil.example/"),
            ],
            &[],
        )
        .await;
    assert_eq!(res.status, 303);
    assert_eq!(res.header("location"), Some("/"));
    let _ = stop.send(true);
    console.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_an_httponly_strict_cookie_without_secure_on_plain_http() {
    let world = World::new().await;
    world.report_and_sync("garbage by the gate").await;
    world.add_operator("ana", OperatorRole::Dispatcher);
    let (console, stop) = world.console(None, false).await;
    let mut c = Client::new(console.local_addr, None);
    let res = c.login("ana", PASSWORD).await;
    assert_eq!(res.status, 303, "{}", res.text());
    let set = res
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("gridsync_session="))
        .expect("session cookie")
        .to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(!set.contains("Secure"), "{set}");
    let value = set
        .split(';')
        .next()
        .unwrap_or("")
        .trim_start_matches("gridsync_session=");
    assert_eq!(value.len(), 64);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    // Logged in: the list shows the synced incident with its thumbnail.
    let list = c.get("/").await;
    assert_eq!(list.status, 200);
    let html = list.text();
    assert!(html.contains("data-incident="), "{html}");
    assert!(html.contains("?thumb=1"), "{html}");
    assert!(html.contains(r#"data-operator="ana""#));
    let start = html.find("/blob/").expect("thumbnail");
    let end = start + html[start..].find('"').expect("end");
    let thumb = c.get(&html[start..end]).await;
    assert_eq!(
        (thumb.status, thumb.header("content-type")),
        (200, Some("image/jpeg"))
    );
    assert_eq!(&thumb.body[..2], &[0xFF, 0xD8], "a JPEG");
    let json = c.get("/api/incidents").await;
    assert_eq!(json.status, 200);
    let views: serde_json::Value = serde_json::from_slice(&json.body).expect("JSON");
    assert_eq!(views[0]["description"], "garbage by the gate");
    // The wrong password: 401 and no session.
    let mut other = Client::new(console.local_addr, None);
    let res = other.login("ana", "wrong password").await;
    assert_eq!(res.status, 401);
    assert!(res.cookie("gridsync_session").is_none());
    // Logout ends the session.
    let page = c.get("/").await.text();
    let csrf = hidden(&page, "csrf").expect("csrf");
    let res = c.post("/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!(res.status, 303);
    assert_eq!(c.get("/").await.status, 303);
    let _ = stop.send(true);
    console.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_session_cookie_is_secure() {
    let world = World::new().await;
    world.add_operator("ana", OperatorRole::Viewer);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert_path = world.dir.path().join("console.crt");
    let key_path = world.dir.path().join("console.key");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    // A bad file is a clear error naming it.
    let bad = world.dir.path().join("bad.pem");
    std::fs::write(&bad, "not pem").expect("write");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let err = gridsync_console::start(
        gridsync_console::ConsoleOptions {
            db: world.relay_db.clone(),
            addr: (std::net::Ipv4Addr::LOCALHOST, 0).into(),
            tls: Some(TlsFiles {
                cert: bad.clone(),
                key: key_path.clone(),
            }),
            open311: false,
            metrics: None,
            map: Default::default(),
        },
        rx,
    )
    .await
    .expect_err("a bad certificate file");
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );

    let (console, stop) = world
        .console(
            Some(TlsFiles {
                cert: cert_path,
                key: key_path,
            }),
            false,
        )
        .await;
    let tls = common::tls_client(cert.cert.der());
    let mut c = Client::new(console.local_addr, Some(tls));
    let res = c.login("ana", PASSWORD).await;
    assert_eq!(res.status, 303, "{}", res.text());
    let set = res
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("gridsync_session="))
        .expect("session cookie")
        .to_owned();
    assert!(set.contains("Secure"), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(res.header("strict-transport-security").is_some());
    assert_eq!(c.get("/").await.status, 200);
    let _ = stop.send(true);
    console.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_without_the_csrf_token_are_refused_and_write_nothing() {
    let world = World::new().await;
    let id = world.report_and_sync("sewage on the corner").await;
    world.add_operator("dora", OperatorRole::Dispatcher);
    let (console, stop) = world.console(None, false).await;
    let mut c = Client::new(console.local_addr, None);
    assert_eq!(c.login("dora", PASSWORD).await.status, 303);
    let before = world.event_count();
    let path = format!("/incident/{id}/accept");

    let res = c.post(&path, &[], &[]).await;
    assert_eq!(res.status, 403);
    assert!(res.text().contains("CSRF"), "{}", res.text());
    let res = c.post(&path, &[("csrf", "00")], &[]).await;
    assert_eq!(res.status, 403);
    let page = c.get(&format!("/incident/{id}")).await.text();
    let csrf = hidden(&page, "csrf").expect("csrf");
    // The right token from another site's page: refused too.
    let res = c
        .post(
            &path,
            &[("csrf", &csrf)],
            &[("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!(res.status, 403);
    assert!(res.text().contains("another site"), "{}", res.text());
    assert_eq!(world.event_count(), before, "nothing written");
    // With the token (and this console's origin) it is written.
    let origin = format!("http://{}", console.local_addr);
    let res = c
        .post(&path, &[("csrf", &csrf)], &[("Origin", &origin)])
        .await;
    assert_eq!(res.status, 303, "{}", res.text());
    assert_eq!(world.event_count(), before + 1);
    // The same action again is the workflow's refusal, shown in the page: 409, not 500.
    let res = c.post(&path, &[("csrf", &csrf)], &[]).await;
    assert_eq!(res.status, 409);
    assert!(res.text().contains("already accepted"), "{}", res.text());
    // The login form's own CSRF check.
    let mut other = Client::new(console.local_addr, None);
    let res = other
        .post("/login", &[("name", "dora"), ("password", PASSWORD)], &[])
        .await;
    assert_eq!(res.status, 403);
    let _ = stop.send(true);
    console.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_rate_limit_refuses_even_the_right_password() {
    let world = World::new().await;
    world.add_operator("ana", OperatorRole::Viewer);
    let (console, stop) = world.console(None, false).await;
    let mut c = Client::new(console.local_addr, None);
    for _ in 0..gridsync_console::auth::LOGIN_FAILURES {
        assert_eq!(c.login("ana", "not the password").await.status, 401);
    }
    let res = c.login("ana", "not the password").await;
    assert_eq!(res.status, 429);
    let retry: u64 = res
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry > 0 && retry <= 900, "{retry}");
    let res = c.login("ana", PASSWORD).await;
    assert_eq!(
        res.status, 429,
        "the right password is refused while limited"
    );
    assert!(res.cookie("gridsync_session").is_none());
    let _ = stop.send(true);
    console.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_may_not_dispatch_and_a_dispatcher_dispatch_is_signed_and_named() {
    let world = World::new().await;
    let id = world.report_and_sync("bins overflowing").await;
    world.add_operator("vic", OperatorRole::Viewer);
    world.add_operator("dora", OperatorRole::Dispatcher);
    let (console, stop) = world.console(None, false).await;

    let mut viewer = Client::new(console.local_addr, None);
    assert_eq!(viewer.login("vic", PASSWORD).await.status, 303);
    let page = viewer.get(&format!("/incident/{id}")).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        !html.contains("do-dispatch"),
        "no dispatch button for a viewer"
    );
    assert!(
        html.contains("data-signature=\"valid\""),
        "history shows signatures"
    );
    let csrf = hidden(&html, "csrf").expect("csrf (logout form)");
    let before = world.event_count();
    let res = viewer
        .post(
            &format!("/incident/{id}/dispatch"),
            &[("csrf", &csrf), ("department", "sanitation")],
            &[],
        )
        .await;
    assert_eq!(res.status, 403);
    assert!(res.text().contains("viewer"), "{}", res.text());
    assert_eq!(world.event_count(), before, "nothing written");

    let mut dispatcher = Client::new(console.local_addr, None);
    assert_eq!(dispatcher.login("dora", PASSWORD).await.status, 303);
    let html = dispatcher.get(&format!("/incident/{id}")).await.text();
    assert!(html.contains("do-dispatch"));
    let csrf = hidden(&html, "csrf").expect("csrf");
    let res = dispatcher
        .post(&format!("/incident/{id}/accept"), &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(res.status, 303, "{}", res.text());
    let res = dispatcher
        .post(
            &format!("/incident/{id}/dispatch"),
            &[
                ("csrf", &csrf),
                ("department", "sanitation"),
                ("due", "2030-01-02T03:04"),
            ],
            &[],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.text());
    assert_eq!(
        res.header("location"),
        Some(format!("/incident/{id}?done=dispatch").as_str())
    );

    let store = Store::open(&world.relay_db).expect("open");
    let relay = store.identity().expect("identity");
    let state = store.incident(&id).expect("read").expect("incident");
    let view = state.view();
    assert_eq!(view.status, "dispatched");
    assert_eq!(view.assignee.as_deref(), Some("sanitation"));
    assert_eq!(view.due_at.as_deref(), Some("2030-01-02T03:04:00.000Z"));
    let assigned = store
        .events_of(&id)
        .expect("events")
        .into_iter()
        .find(|e| e.payload.kind() == "Assigned")
        .expect("the dispatch event");
    assert_eq!(assigned.author, "street-2/dora");
    assert_eq!(assigned.origin, relay.node_id, "the relay's own event");
    assigned.verify().expect("a valid signature");
    let v = gridsync_relay::verify::verify_incident(&store, &relay.node_id, &id).expect("verify");
    assert!(v.all_valid());
    // The page shows it, with the operator as author.
    let html = dispatcher
        .get(&format!("/incident/{id}?done=dispatch"))
        .await
        .text();
    assert!(html.contains("data-author=\"street-2/dora\""), "{html}");
    assert!(html.contains("Done: dispatch."));
    let _ = stop.send(true);
    console.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open311_needs_an_api_key_and_exports_are_attachments() {
    let world = World::new().await;
    world.report_and_sync("graffiti").await;
    world.add_operator("vic", OperatorRole::Viewer);
    assert!(Store::open(&world.relay_db)
        .expect("open")
        .api_key_add("city", "k-1234", 1)
        .expect("key"));
    let (console, stop) = world.console(None, true).await;
    let mut c = Client::new(console.local_addr, None);
    let res = c.get("/open311/v2/services.json").await;
    assert_eq!(res.status, 200);
    let res = c.get("/open311/v2/requests.json").await;
    assert_eq!(res.status, 401);
    let body: serde_json::Value = serde_json::from_slice(&res.body).expect("JSON");
    assert_eq!(body[0]["code"], 401);
    assert_eq!(
        c.get("/open311/v2/requests.json?api_key=nope").await.status,
        401
    );
    assert_eq!(
        c.get("/open311/v2/requests.json?api_key=k-1234")
            .await
            .status,
        200
    );

    assert_eq!(c.get("/export?format=csv").await.status, 303);
    assert_eq!(c.login("vic", PASSWORD).await.status, 303);
    let res = c.get("/export?format=csv&status=reported").await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("content-disposition"),
        Some("attachment; filename=\"incidents.csv\"")
    );
    assert_eq!(c.get("/export?format=xls").await.status, 422);
    assert_eq!(c.get("/evaluation.csv").await.status, 200);
    for page in ["/screen", "/map", "/evaluation", "/export"] {
        assert_eq!(c.get(page).await.status, 200, "{page}");
    }
    let screen = c.get("/api/screen").await;
    let s: serde_json::Value = serde_json::from_slice(&screen.body).expect("JSON");
    assert_eq!(s["counters"]["open"], 1);
    let _ = stop.send(true);
    console.wait().await;
}
