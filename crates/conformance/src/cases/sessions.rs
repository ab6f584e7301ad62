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
            "200 sessions at once on 200 connections are all served",
            two_hundred
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

async fn two_hundred(ctx: &Ctx) -> Check {
    let id = ctx.ids.device_a2.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let endpoint = ctx.endpoint.clone();
        let addr = ctx.addr();
        let id = id.clone();
        let target = ctx.target_id;
        let hello = ctx.hello(&id, Role::Device);
        tasks.spawn(async move {
            let options = crate::tls::ClientTls::pinned(target);
            // 200 handshakes at once: the case is that all are served, not how fast, so
            // each gets a minute.
            let conn = crate::client::connect_within(
                &endpoint,
                addr,
                &id.seed,
                &options,
                Duration::from_secs(60),
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut ctl = conn.control().await.map_err(|e| e.to_string())?;
            let patient = Duration::from_secs(60);
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
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(e.to_string()),
        }
    }
    ensure(
        failures.is_empty(),
        "all 200 sessions served",
        format!(
            "{} failed, e.g. {}",
            failures.len(),
            failures.first().cloned().unwrap_or_default()
        ),
    )
}
