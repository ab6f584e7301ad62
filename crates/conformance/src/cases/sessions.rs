//! §3, §8.7, §11: sessions one after another on a connection, the end of a session, the
//! parent's idle timeout, and many sessions at once.

use std::time::Duration;

use super::case;
use crate::client::NoMsg;
use crate::wire::{Code, Msg, Role};
use crate::{describe, ensure, expect_error, fail, Case, Check, Ctx};

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "session.bye",
            "§8.7",
            Any,
            "after Bye the parent finishes its half and the connection serves the next session",
            bye
        ),
        case!(
            "session.fin-without-bye",
            "§8.7",
            Any,
            "a control stream finished without Bye gets Error Unexpected",
            fin_without_bye
        ),
        case!(
            "session.child-message-from-parent-set",
            "§8.8",
            Any,
            "a parent's message (Ack) sent by the child gets Error Unexpected",
            wrong_direction
        ),
        case!(
            "session.idle-timeout",
            "§8.7",
            IdleTimeout,
            "a session with no message for the relay's idle timeout ends with Error Timeout",
            idle_timeout
        ),
        case!(
            "session.two-hundred",
            "§11",
            Any,
            "200 sessions at once on 200 connections of one node: each served, or closed with Busy over the per-node limit",
            two_hundred
        ),
        case!(
            "session.revoked-mid-session",
            "§8.2",
            Spawn,
            "a node revoked while its session runs loses it at once (Error or close NotEnrolled within 5 s), and a new session is refused",
            revoked_mid_session
        ),
        case!(
            "session.node-limit",
            "§11",
            Any,
            "one node's connections over the per-node limit are closed with Busy; another node is served",
            node_limit
        ),
    ]
}

async fn bye(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a2;
    let (conn, mut ctl, _) = ctx.device(id).await?;
    ctl.send(&Msg::Bye)
        .await
        .map_err(|e| fail("to send Bye", e))?;
    ctl.finish();
    let r = ctl.recv().await;
    ensure(
        matches!(r, Err(NoMsg::Finished)),
        "the parent to finish its half after Bye",
        describe(&r),
    )?;
    let (mut ctl, _) = ctx.session(&conn, id, Role::Device).await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

async fn fin_without_bye(ctx: &Ctx) -> Check {
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a2).await?;
    ctl.finish();
    let r = ctl.recv().await;
    conn.close(0, "done");
    expect_error(&r, Code::Unexpected, "FIN without Bye")
}

async fn wrong_direction(ctx: &Ctx) -> Check {
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a2).await?;
    let r = ctl
        .ask(&Msg::Ack {
            batch: 1,
            stored: 1,
            duplicates: 0,
        })
        .await;
    conn.close(0, "done");
    expect_error(&r, Code::Unexpected, "a child sending Ack")
}

async fn idle_timeout(ctx: &Ctx) -> Check {
    let Some(idle) = ctx.idle_timeout else {
        return Err(fail("a known idle timeout", "none given"));
    };
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a2).await?;
    let r = ctl.recv_within(idle + Duration::from_secs(15)).await;
    conn.close(0, "done");
    expect_error(
        &r,
        Code::Timeout,
        &format!("{} s without a message", idle.as_secs()),
    )
}

/// How one of many connections of one node fared.
enum Outcome {
    Served,
    /// Closed with `Busy` (§10, code 15): over the relay's per-node limit (§11).
    Busy,
}

/// Opens a connection as `id`, runs Hello / Pull / Bye on it: served, or closed with `Busy`.
async fn one_session(
    endpoint: quinn::Endpoint,
    addr: std::net::SocketAddr,
    id: crate::Id,
    target: [u8; 32],
    hello: Msg,
) -> Result<Outcome, String> {
    let options = crate::tls::ClientTls::pinned(target);
    // Many handshakes at once: the case is that all are answered, not how fast, so each
    // gets a minute.
    let conn =
        crate::client::connect_within(&endpoint, addr, &id.seed, &options, Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
    let patient = Duration::from_secs(60);
    let run = async {
        let mut ctl = conn.control().await.map_err(|e| e.to_string())?;
        ctl.send(&hello).await?;
        let w = ctl.recv_within(patient).await;
        if !matches!(w, Ok(Msg::Welcome { .. })) {
            return Err(format!("no Welcome: {}", describe(&w)));
        }
        ctl.send(&Msg::Pull { cursor: u64::MAX }).await?;
        let d = ctl.recv_within(patient).await;
        if !matches!(d, Ok(Msg::Down { .. })) {
            return Err(format!("no Down: {}", describe(&d)));
        }
        crate::bye(&mut ctl, &conn).await;
        Ok::<(), String>(())
    };
    match run.await {
        Ok(()) => Ok(Outcome::Served),
        // However the session broke, a close with `Busy` is the relay's per-node limit.
        Err(e) => match conn.closed_within(Duration::from_secs(10)).await {
            Some(crate::client::Closed::App { code, .. }) if code == Code::Busy.number() => {
                Ok(Outcome::Busy)
            }
            _ => Err(e),
        },
    }
}

/// `n` sessions of `id` at once: how many were served and how many refused with `Busy`.
async fn many_sessions(ctx: &Ctx, id: &crate::Id, n: usize) -> (usize, usize, Vec<String>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        tasks.spawn(one_session(
            ctx.endpoint.clone(),
            ctx.addr(),
            id.clone(),
            ctx.target_id,
            ctx.hello(id, Role::Device),
        ));
    }
    let (mut served, mut busy, mut failures) = (0, 0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(Outcome::Served)) => served += 1,
            Ok(Ok(Outcome::Busy)) => busy += 1,
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(e.to_string()),
        }
    }
    (served, busy, failures)
}

async fn two_hundred(ctx: &Ctx) -> Check {
    let (served, busy, failures) = many_sessions(ctx, &ctx.ids.device_a2, 200).await;
    ensure(
        failures.is_empty() && served >= 1,
        "each of 200 sessions at once served, or refused with Busy over the per-node limit",
        format!(
            "{served} served, {busy} Busy, {} failed, e.g. {}",
            failures.len(),
            failures.first().cloned().unwrap_or_default()
        ),
    )
}

/// §11: one node's connections beyond the parent's per-node limit are closed with `Busy`,
/// and another node is served while that node holds its share.
async fn node_limit(ctx: &Ctx) -> Check {
    let (flood, other) = tokio::join!(
        many_sessions(ctx, &ctx.ids.device_a2, 64),
        many_sessions(ctx, &ctx.ids.device_b, 1)
    );
    let (served, busy, failures) = flood;
    ensure(
        failures.is_empty() && served >= 1 && busy >= 1,
        "of 64 connections of one node at once, some served and the rest closed with Busy",
        format!(
            "{served} served, {busy} Busy, {} failed, e.g. {}",
            failures.len(),
            failures.first().cloned().unwrap_or_default()
        ),
    )?;
    let (served, busy, failures) = other;
    ensure(
        served == 1,
        "another node served meanwhile",
        format!("{served} served, {busy} Busy, {failures:?}"),
    )
}

/// Enrolls a fresh device through the relay's command line, opens a session and uploads one
/// event, revokes the device the same way while the session runs, and expects the session to
/// end with `NotEnrolled` (PROTOCOL.md §8.2: revocation takes effect at once) and the next
/// session to be refused.
async fn revoked_mid_session(ctx: &Ctx) -> Check {
    let grid = crate::identity::GRID_A;
    let mut id = crate::Id::fresh("revoked-mid-session")?;
    id.scope = Some(grid.to_owned());
    crate::events::register(&id.seed);
    let hex: String = id.key.iter().map(|b| format!("{b:02x}")).collect();
    let operator = |args: Vec<&str>| {
        let r = tokio::task::block_in_place(|| ctx.with_relay(|s| s.cli(&args)))?;
        r.map_err(|e| fail("the relay's command line to succeed", e.to_string()))
    };
    operator(vec!["enroll", &hex, "--grid", grid])?;
    let (conn, mut ctl, _) = ctx.device(&id).await?;
    let first = crate::events::report(id.key, 1, grid)?;
    let r = super::upload::send_batch(&mut ctl, 1, &[first]).await?;
    super::upload::expect_ack(&r, 1, 1, 0)?;
    operator(vec!["revoke", &hex])?;
    // Nothing is sent: the parent must end the session by itself.
    let r = ctl.recv_within(Duration::from_secs(5)).await;
    conn.close(0, "done");
    expect_error(
        &r,
        Code::NotEnrolled,
        "the session of a node revoked while it runs",
    )?;
    let conn = ctx.connect(&id).await?;
    let mut ctl = conn
        .control()
        .await
        .map_err(|e| fail("a control stream", e.to_string()))?;
    let r = ctl.ask(&ctx.hello(&id, Role::Device)).await;
    conn.close(0, "done");
    expect_error(&r, Code::NotEnrolled, "a new session of the revoked node")
}
