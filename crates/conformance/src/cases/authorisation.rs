//! §8.9: authorisation. Who may write what, learned from node records; revocation across
//! tiers. Every refusal stores nothing of its batch.

use gridsync_core::Event;

use super::case;
use super::upload::{expect_ack, send_batch, street_head};
use crate::events::{self, unvouched_origin};
use crate::identity::{GRID_A, GRID_OUTSIDE, STREET_SCOPE};
use crate::wire::{Code, Msg, NodeRecord, Role};
use crate::{describe, ensure, expect_error, fail, Case, Check, Ctx, Fail};

pub fn cases() -> Vec<Case> {
    vec![
        case!("auth.device-decision", "§8.9", Any, "a device's own operator decision (StatusChanged to closed) gets Error NotAuthorised and nothing of its batch is stored", device_decision),
        case!("auth.unvouched-origin", "§8.9", Any, "a street's event of an origin no node record vouches for gets Error NotAuthorised and is not stored", unvouched),
        case!("auth.record-then-events", "§8.9", Any, "a street's record for a device is acknowledged; the device's report is then accepted, its decision refused with NotAuthorised", record_then_events),
        case!("auth.revoked-later-events", "§8.9", Any, "after a record revoking a device after its event 1, its event 1 stays and its event 2 gets Error NotAuthorised", revoked_later),
        case!("auth.record-unknown-issuer", "§8.9", Any, "a record signed by a key the relay does not trust gets Error NotAuthorised", unknown_issuer),
        case!("auth.record-outside-scope", "§8.9", Any, "a record for a scope outside the street's gets Error OutOfScope", record_outside_scope),
        case!("auth.record-forged", "§8.9", Any, "a record altered after signing gets Error BadSignature", record_forged),
        case!("auth.device-sends-nodes", "§8.9", Any, "Nodes from a device gets Error Unexpected", device_sends_nodes),
    ]
}

/// A record by the street identity.
fn by_street(
    ctx: &Ctx,
    node: [u8; 32],
    role: Role,
    scope: &str,
    serial: u64,
    revoked_after: Option<u64>,
) -> Result<NodeRecord, Fail> {
    NodeRecord::signed(
        &ctx.ids.street.seed,
        node,
        role,
        scope,
        serial,
        revoked_after,
    )
    .map_err(|e| fail("a record that encodes", e.to_string()))
}

/// Sends `records` as one `Nodes` in a new street session and returns the answer.
async fn street_nodes(
    ctx: &Ctx,
    records: Vec<NodeRecord>,
) -> Result<Result<Msg, crate::client::NoMsg>, Fail> {
    let (conn, mut ctl, _) = ctx.street().await?;
    let r = ctl.ask(&Msg::Nodes { batch: 1, records }).await;
    crate::bye(&mut ctl, &conn).await;
    Ok(r)
}

/// In one street session: `records`, acknowledged, then `batch` as `Events`; the answer to it.
async fn vouched_batch(
    ctx: &Ctx,
    records: Vec<NodeRecord>,
    batch: &[Event],
) -> Result<Result<Msg, crate::client::NoMsg>, Fail> {
    let (conn, mut ctl, _) = ctx.street().await?;
    let r = ctl.ask(&Msg::Nodes { batch: 1, records }).await;
    if !matches!(r, Ok(Msg::Ack { batch: 1, .. })) {
        conn.close(0, "done");
        return Err(fail("Ack of the node records", describe(&r)));
    }
    let r = send_batch(&mut ctl, 2, batch).await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(r)
}

async fn head_is(ctx: &Ctx, origin: &[u8; 32], want: u64, what: &str) -> Check {
    let h = street_head(ctx, origin).await?;
    ensure(
        h == want,
        format!("head {want} ({what})"),
        format!("head {h}"),
    )
}

async fn device_decision(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    let head = w.head(&id.key);
    let report = events::report(id.key, head + 1, GRID_A)?;
    let close = events::close(id.key, head + 2, &report);
    let r = send_batch(&mut ctl, 1, &[report, close]).await?;
    conn.close(0, "done");
    expect_error(&r, Code::NotAuthorised, "a device's decision")?;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        w.head(&id.key) == head,
        format!("the device's head still {head}: nothing of the batch stored"),
        format!("head {}", w.head(&id.key)),
    )
}

async fn unvouched(ctx: &Ctx) -> Check {
    let origin = unvouched_origin();
    let (conn, mut ctl, _) = ctx.street().await?;
    let r = send_batch(&mut ctl, 1, &[events::report(origin, 1, GRID_A)?]).await?;
    conn.close(0, "done");
    expect_error(&r, Code::NotAuthorised, "an origin no record vouches for")?;
    head_is(ctx, &origin, 0, "nothing stored").await
}

async fn record_then_events(ctx: &Ctx) -> Check {
    let device = unvouched_origin();
    let record = by_street(ctx, device, Role::Device, GRID_A, 1, None)?;
    let report = events::report(device, 1, GRID_A)?;
    let r = vouched_batch(ctx, vec![record], std::slice::from_ref(&report)).await?;
    expect_ack(&r, 2, 1, 0)?;
    let close = events::close(device, 2, &report);
    let (conn, mut ctl, _) = ctx.street().await?;
    let r = send_batch(&mut ctl, 1, &[close]).await?;
    conn.close(0, "done");
    expect_error(
        &r,
        Code::NotAuthorised,
        "a decision under a device's origin",
    )?;
    head_is(ctx, &device, 1, "the report kept, the decision not stored").await
}

async fn revoked_later(ctx: &Ctx) -> Check {
    let device = unvouched_origin();
    let enrolled = by_street(ctx, device, Role::Device, GRID_A, 1, None)?;
    let first = events::report(device, 1, GRID_A)?;
    let r = vouched_batch(ctx, vec![enrolled], std::slice::from_ref(&first)).await?;
    expect_ack(&r, 2, 1, 0)?;
    let revoked = by_street(ctx, device, Role::Device, GRID_A, 2, Some(1))?;
    let r = vouched_batch(ctx, vec![revoked], &[events::report(device, 2, GRID_A)?]).await?;
    expect_error(&r, Code::NotAuthorised, "a revoked key's later event")?;
    head_is(ctx, &device, 1, "event 1 kept, event 2 refused").await
}

async fn unknown_issuer(ctx: &Ctx) -> Check {
    let (seed, _) = events::unregistered_key();
    let record = NodeRecord::signed(&seed, unvouched_origin(), Role::Device, GRID_A, 1, None)
        .map_err(|e| fail("a record that encodes", e.to_string()))?;
    let r = street_nodes(ctx, vec![record]).await?;
    expect_error(&r, Code::NotAuthorised, "a record by an untrusted issuer")
}

async fn record_outside_scope(ctx: &Ctx) -> Check {
    let record = by_street(ctx, unvouched_origin(), Role::Device, GRID_OUTSIDE, 1, None)?;
    let r = street_nodes(ctx, vec![record]).await?;
    expect_error(&r, Code::OutOfScope, "a record outside the street's scope")
}

async fn record_forged(ctx: &Ctx) -> Check {
    let mut record = by_street(ctx, unvouched_origin(), Role::Street, GRID_A, 1, None)?;
    record.scope = STREET_SCOPE.into();
    let r = street_nodes(ctx, vec![record]).await?;
    expect_error(&r, Code::BadSignature, "a record altered after signing")
}

async fn device_sends_nodes(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a;
    let record = by_street(ctx, unvouched_origin(), Role::Device, GRID_A, 1, None)?;
    let (conn, mut ctl, _) = ctx.device(id).await?;
    let r = ctl
        .ask(&Msg::Nodes {
            batch: 1,
            records: vec![record],
        })
        .await;
    conn.close(0, "done");
    expect_error(&r, Code::Unexpected, "Nodes from a device")
}
