//! §8.10: live delivery. A `Follow` is answered at once when something follows its cursor,
//! held otherwise, and answered the moment an event of the follower's scope commits (well
//! before the 25 s hold would answer it), not for another scope's event; the hold ends with an
//! empty page; only `Bye` or `Error` may come while one is held. And §1: a community
//! workstation (a relay enrolled for a community's scope) syncs as a relay.

use std::time::Duration;

use super::case;
use super::download::{cursor_now, device_a_event};
use super::upload::{expect_ack, send_batch};
use crate::events::{self, fresh_origin};
use crate::identity::{COMMUNITY_SCOPE, GRID_A};
use crate::wire::{Code, Msg, Role};
use crate::{describe, ensure, expect_error, fail, Case, Check, Ctx};

/// How long a parent may take to push: far below the 25 s hold, so a push is told apart from
/// the hold's answer.
const PUSH_WITHIN: Duration = Duration::from_secs(5);
/// How long a held `Follow` must stay unanswered when nothing of its scope commits.
const HELD_FOR: Duration = Duration::from_millis(500);

pub fn cases() -> Vec<Case> {
    vec![
        case!("follow.at-once", "§8.10", Any, "a Follow with events after its cursor is answered at once, like a Pull", at_once),
        case!("follow.pushed", "§8.10", Any, "a held Follow is answered with device-a's new event within 5 s of its commit, not after the 25 s hold", pushed),
        case!("follow.other-scope", "§8.10", Any, "a grid A event leaves device-b's held Follow unanswered; Bye then ends the session with code 0", other_scope),
        case!("follow.only-bye", "§8.10", Any, "a Pull while a Follow is held ends the session with Unexpected", only_bye),
        case!("follow.hold", "§8.10", Any, "a Follow held 25 s with nothing to send is answered with an empty Down (takes 25 s)", hold),
        case!("community.relay", "§1, §8.9", Any, "a community workstation enrolled for 990000/001/001 is welcomed with that scope, forwards a vouched origin's event of grid A and downloads grid A", community),
    ]
}

/// Sends `Follow { cursor }`, expecting no answer yet.
async fn send_follow(ctl: &mut crate::client::Ctl, cursor: u64) -> Check {
    ctl.send(&Msg::Follow { cursor })
        .await
        .map_err(|e| fail("Follow sent", e))
}

async fn at_once(ctx: &Ctx) -> Check {
    let a2 = &ctx.ids.device_a2;
    let c = cursor_now(ctx, a2).await?;
    let e = device_a_event(ctx).await?;
    let (conn, mut ctl, _) = ctx.device(a2).await?;
    let r = ctl.ask(&Msg::Follow { cursor: c }).await;
    crate::bye(&mut ctl, &conn).await;
    let bytes =
        gridsync_core::codec::encode_event(&e).map_err(|x| fail("an event", x.to_string()))?;
    match r {
        Ok(Msg::Down { events, .. }) if events.contains(&bytes) => Ok(()),
        other => Err(fail(
            "Down holding device-a's new event, at once",
            describe(&other),
        )),
    }
}

async fn pushed(ctx: &Ctx) -> Check {
    let a2 = &ctx.ids.device_a2;
    let c = cursor_now(ctx, a2).await?;
    let (conn, mut ctl, _) = ctx.device(a2).await?;
    send_follow(&mut ctl, c).await?;
    let early = ctl.recv_within(HELD_FOR).await;
    if !matches!(early, Err(crate::client::NoMsg::Silence(_))) {
        crate::bye(&mut ctl, &conn).await;
        return Err(fail(
            "nothing while nothing of grid A commits (the Follow held)",
            describe(&early),
        ));
    }
    let e = device_a_event(ctx).await?;
    let bytes =
        gridsync_core::codec::encode_event(&e).map_err(|x| fail("an event", x.to_string()))?;
    let r = ctl.recv_within(PUSH_WITHIN).await;
    crate::bye(&mut ctl, &conn).await;
    match r {
        Ok(Msg::Down {
            events,
            cursor,
            more: false,
        }) if events.contains(&bytes) && cursor > c => Ok(()),
        other => Err(fail(
            format!("Down holding device-a's new event within {PUSH_WITHIN:?} of its Ack"),
            describe(&other),
        )),
    }
}

async fn other_scope(ctx: &Ctx) -> Check {
    let b = &ctx.ids.device_b;
    let c = cursor_now(ctx, b).await?;
    let (conn, mut ctl, _) = ctx.device(b).await?;
    send_follow(&mut ctl, c).await?;
    device_a_event(ctx).await?;
    let r = ctl.recv_within(Duration::from_secs(1)).await;
    if !matches!(r, Err(crate::client::NoMsg::Silence(_))) {
        crate::bye(&mut ctl, &conn).await;
        return Err(fail(
            "no answer to device-b's Follow for a grid A event",
            describe(&r),
        ));
    }
    ctl.send(&Msg::Bye).await.map_err(|e| fail("Bye sent", e))?;
    ctl.finish();
    // The parent finishes its half and leaves the connection open (§8.7).
    let end = ctl.recv_within(Duration::from_secs(5)).await;
    let closed = conn.closed_within(Duration::from_millis(300)).await;
    conn.close(0, "done");
    ensure(
        matches!(end, Err(crate::client::NoMsg::Finished)) && closed.is_none(),
        "the control stream finished, the connection left open (a normal end, code 0)",
        format!("{}; connection {closed:?}", describe(&end)),
    )?;
    Ok(())
}

async fn only_bye(ctx: &Ctx) -> Check {
    let a2 = &ctx.ids.device_a2;
    let c = cursor_now(ctx, a2).await?;
    let (conn, mut ctl, _) = ctx.device(a2).await?;
    send_follow(&mut ctl, c).await?;
    let r = ctl.ask(&Msg::Pull { cursor: c }).await;
    conn.close(0, "done");
    expect_error(&r, Code::Unexpected, "a Pull while a Follow is held")
}

async fn hold(ctx: &Ctx) -> Check {
    let b = &ctx.ids.device_b;
    let c = cursor_now(ctx, b).await?;
    let (conn, mut ctl, _) = ctx.device(b).await?;
    send_follow(&mut ctl, c).await?;
    let started = std::time::Instant::now();
    let r = ctl.recv_within(Duration::from_secs(30)).await;
    let waited = started.elapsed();
    crate::bye(&mut ctl, &conn).await;
    match r {
        Ok(Msg::Down {
            events,
            more: false,
            ..
        }) if events.is_empty() => ensure(
            waited >= Duration::from_secs(20),
            "the empty answer after the 25 s hold, not before",
            format!("after {waited:?}"),
        ),
        other => Err(fail(
            "Down { events: [], more: false } after 25 s",
            describe(&other),
        )),
    }
}

async fn community(ctx: &Ctx) -> Check {
    let id = &ctx.ids.community;
    let (conn, mut ctl, w) = ctx.open(id, Role::Community).await?;
    if w.scope != COMMUNITY_SCOPE {
        crate::bye(&mut ctl, &conn).await;
        return Err(fail(
            format!("Welcome.scope {COMMUNITY_SCOPE}"),
            w.scope.clone(),
        ));
    }
    // A node below the community, vouched for by the community's record (§8.9).
    let below = fresh_origin();
    let record = crate::wire::NodeRecord::signed(&id.seed, below, Role::Device, GRID_A, 1, None)
        .map_err(|e| fail("a node record that encodes", e.to_string()))?;
    let r = ctl
        .ask(&Msg::Nodes {
            batch: 1,
            records: vec![record],
        })
        .await;
    expect_ack(&r, 1, 1, 0)?;
    let e = events::report(below, 1, GRID_A)?;
    let r = send_batch(&mut ctl, 2, std::slice::from_ref(&e)).await?;
    expect_ack(&r, 2, 1, 0)?;
    let (got, _) = crate::pull_all(&mut ctl, 0).await?;
    crate::bye(&mut ctl, &conn).await;
    let outside: Vec<_> = got
        .iter()
        .filter(|x| !x.grid.as_str().starts_with(COMMUNITY_SCOPE))
        .collect();
    ensure(
        outside.is_empty(),
        "only events of the community's scope come down",
        format!("{} from outside it", outside.len()),
    )?;
    let seen = ctx.observed_of(&below).await?;
    ensure(
        seen.contains(&e),
        "the community's forwarded event reaches the street's view of the relay",
        format!("{} events of that origin seen", seen.len()),
    )
}
