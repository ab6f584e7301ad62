//! §8.6 and §12: scoped download, via, cursors, paging, an up-to-date sync, and two writers
//! converging on one incident with the conflict kept.

use gridsync_core::{Event, IncidentState};

use super::case;
use super::upload::{expect_ack, send_batch, street_batch};
use crate::events::{self, fresh_origin};
use crate::identity::{GRID_A, GRID_B};
use crate::wire::Msg;
use crate::{describe, ensure, fail, pull_all, Case, Check, Ctx, Fail, Id};

pub fn cases() -> Vec<Case> {
    vec![
        case!("down.scope", "§8.6", Any, "a device downloads only its grid: grid A's new event reaches device-a2, not device-b", scope),
        case!("down.via", "§8.6", Any, "a device's own uploads are not sent back to it", via),
        case!("down.cursor", "§8.6", Any, "a Pull from a cursor returns only what arrived after it", cursor),
        case!("down.paging", "§8.6", Any, "700 new events come in pages of at most 512 with more = true until the last, each exactly once", paging),
        case!("down.up-to-date", "§12", Any, "an up-to-date Pull gets Down { events: [], more: false } with the cursor unchanged", up_to_date),
        case!("down.conflict", "§8.6", Any, "two devices edit one field concurrently; both download both edits and fold the same incident, the conflict listed", conflict),
    ]
}

/// Downloads everything new for `id` (a device) from the end of its log as of now: returns a
/// function-like pair (cursor now, then events after it).
pub(crate) async fn cursor_now(ctx: &Ctx, id: &Id) -> Result<u64, Fail> {
    let (conn, mut ctl, _) = ctx.device(id).await?;
    let (_, c) = pull_all(&mut ctl, 0).await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(c)
}

async fn pull_from(ctx: &Ctx, id: &Id, cursor: u64) -> Result<(Vec<Event>, u64), Fail> {
    let (conn, mut ctl, _) = ctx.device(id).await?;
    let r = pull_all(&mut ctl, cursor).await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(r)
}

/// device-a's next own event, acknowledged.
pub(crate) async fn device_a_event(ctx: &Ctx) -> Result<Event, Fail> {
    let id = &ctx.ids.device_a;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    let e = events::report(id.key, w.head(&id.key) + 1, GRID_A)?;
    let r = send_batch(&mut ctl, 1, std::slice::from_ref(&e)).await?;
    crate::bye(&mut ctl, &conn).await;
    expect_ack(&r, 1, 1, 0)?;
    Ok(e)
}

async fn scope(ctx: &Ctx) -> Check {
    let (a2, b) = (&ctx.ids.device_a2, &ctx.ids.device_b);
    let (ca2, cb) = (cursor_now(ctx, a2).await?, cursor_now(ctx, b).await?);
    let e = device_a_event(ctx).await?;
    let other = events::report(fresh_origin(), 1, GRID_B)?;
    expect_ack(
        &street_batch(ctx, std::slice::from_ref(&other)).await?,
        1,
        1,
        0,
    )?;
    let (got_a2, _) = pull_from(ctx, a2, ca2).await?;
    ensure(
        got_a2.contains(&e),
        "device-a2 (grid A) receives device-a's new event",
        format!("{} events, not it", got_a2.len()),
    )?;
    let (got_b, _) = pull_from(ctx, b, cb).await?;
    ensure(
        got_b.contains(&other),
        "device-b (grid B) receives the new grid B event",
        format!("{} events, not it", got_b.len()),
    )?;
    let foreign: Vec<_> = got_b.iter().filter(|x| x.grid.as_str() != GRID_B).collect();
    ensure(
        foreign.is_empty(),
        "device-b receives only grid B events",
        format!(
            "{} events of other grids, e.g. {}",
            foreign.len(),
            foreign
                .first()
                .map_or(String::new(), |x| x.grid.to_string())
        ),
    )
}

async fn via(ctx: &Ctx) -> Check {
    let a = &ctx.ids.device_a;
    let c = cursor_now(ctx, a).await?;
    let e = device_a_event(ctx).await?;
    let (got, _) = pull_from(ctx, a, c).await?;
    ensure(
        !got.iter().any(|x| x.origin == e.origin && x.seq == e.seq),
        "device-a's own upload not sent back to it",
        "it came back",
    )
}

async fn cursor(ctx: &Ctx) -> Check {
    let a2 = &ctx.ids.device_a2;
    let first = device_a_event(ctx).await?;
    let c = cursor_now(ctx, a2).await?;
    let second = device_a_event(ctx).await?;
    let (got, _) = pull_from(ctx, a2, c).await?;
    ensure(
        got.contains(&second),
        "the event that arrived after the cursor",
        format!("{} events, not it", got.len()),
    )?;
    ensure(
        !got.contains(&first),
        "nothing that arrived before the cursor",
        "the earlier event came again",
    )
}

async fn paging(ctx: &Ctx) -> Check {
    let a2 = &ctx.ids.device_a2;
    let c = cursor_now(ctx, a2).await?;
    let origin = fresh_origin();
    let all: Vec<_> = (1..=700)
        .map(|s| events::report(origin, s, GRID_A))
        .collect::<Result<_, _>>()?;
    let (conn, mut ctl, w) = ctx.street().await?;
    let per = (w.limits.max_batch_events as usize).clamp(1, 256);
    for (i, chunk) in all.chunks(per).enumerate() {
        let r = send_batch(&mut ctl, i as u64 + 1, chunk).await?;
        expect_ack(&r, i as u64 + 1, chunk.len() as u32, 0)?;
    }
    crate::bye(&mut ctl, &conn).await;
    // Page by page, checking the page rules.
    let (conn, mut ctl, _) = ctx.device(a2).await?;
    let mut cursor = c;
    let mut pages = Vec::new();
    let mut got: Vec<Event> = Vec::new();
    loop {
        let r = ctl.ask(&Msg::Pull { cursor }).await;
        let Ok(Msg::Down {
            events,
            cursor: next,
            more,
        }) = r
        else {
            return Err(fail("Down", describe(&r)));
        };
        ensure(
            events.len() <= 512,
            "at most 512 events a page",
            format!("{}", events.len()),
        )?;
        pages.push((events.len(), more));
        for b in &events {
            got.push(
                gridsync_core::codec::decode_event(b)
                    .map_err(|e| fail("events that decode", e.to_string()))?,
            );
        }
        cursor = next;
        if !more {
            break;
        }
        ensure(
            pages.len() < 64,
            "the download to end",
            format!("{} pages", pages.len()),
        )?;
    }
    crate::bye(&mut ctl, &conn).await;
    ensure(
        pages.len() >= 2 && pages[..pages.len() - 1].iter().all(|p| p.1),
        "at least two pages, more = true on all but the last",
        format!("{pages:?}"),
    )?;
    for e in &all {
        let n = got
            .iter()
            .filter(|g| g.origin == e.origin && g.seq == e.seq)
            .count();
        ensure(
            n == 1,
            format!("event {} exactly once", e.seq),
            format!("{n} times"),
        )?;
    }
    Ok(())
}

async fn up_to_date(ctx: &Ctx) -> Check {
    let a2 = &ctx.ids.device_a2;
    let c = cursor_now(ctx, a2).await?;
    let (conn, mut ctl, _) = ctx.device(a2).await?;
    let r = ctl.ask(&Msg::Pull { cursor: c }).await;
    crate::bye(&mut ctl, &conn).await;
    match r {
        Ok(Msg::Down {
            events,
            cursor,
            more: false,
        }) if events.is_empty() && cursor == c => Ok(()),
        other => Err(fail(
            format!("Down {{ events: [], cursor {c}, more: false }}"),
            describe(&other),
        )),
    }
}

async fn conflict(ctx: &Ctx) -> Check {
    let (a, a2) = (&ctx.ids.device_a, &ctx.ids.device_a2);
    let ca = cursor_now(ctx, a).await?;
    let ca2 = cursor_now(ctx, a2).await?;
    let report = device_a_event(ctx).await?;
    // Both devices replace the report's description, neither seeing the other's edit.
    let (conn, mut ctl, w) = ctx.device(a).await?;
    let mine = events::edit_description(
        a.key,
        w.head(&a.key) + 1,
        &report,
        "edited on device-a",
        vec![report.id()],
    );
    expect_ack(
        &send_batch(&mut ctl, 1, std::slice::from_ref(&mine)).await?,
        1,
        1,
        0,
    )?;
    crate::bye(&mut ctl, &conn).await;
    let (conn, mut ctl, w) = ctx.device(a2).await?;
    let theirs = events::edit_description(
        a2.key,
        w.head(&a2.key) + 1,
        &report,
        "edited on device-a2",
        vec![report.id()],
    );
    expect_ack(
        &send_batch(&mut ctl, 1, std::slice::from_ref(&theirs)).await?,
        1,
        1,
        0,
    )?;
    crate::bye(&mut ctl, &conn).await;
    let (got_a, _) = pull_from(ctx, a, ca).await?;
    let (got_a2, _) = pull_from(ctx, a2, ca2).await?;
    let fold = |own: &[&Event], got: &[Event]| {
        let mut s = IncidentState::new(report.incident);
        for e in own.iter().copied().chain(got.iter()) {
            if e.incident == report.incident {
                s.apply(e);
            }
        }
        s.view()
    };
    let va = fold(&[&report, &mine], &got_a);
    let va2 = fold(&[&theirs], &got_a2);
    let ja = serde_json::to_value(&va).map_err(|e| fail("incident JSON", e.to_string()))?;
    let ja2 = serde_json::to_value(&va2).map_err(|e| fail("incident JSON", e.to_string()))?;
    ensure(
        ja == ja2,
        "both devices fold the same incident",
        format!("device-a: {ja}; device-a2: {ja2}"),
    )?;
    let ids = |v: &serde_json::Value| v["event_count"].as_u64().unwrap_or(0);
    ensure(
        ids(&ja) == 3,
        "3 events (the report, both edits)",
        format!("{}", ids(&ja)),
    )?;
    let conflicts = ja["conflicts"].as_array().map_or(0, Vec::len);
    ensure(
        conflicts == 1,
        "one conflict listed (the losing description)",
        format!("{conflicts}: {}", ja["conflicts"]),
    )?;
    Ok(())
}
