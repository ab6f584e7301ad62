//! §8.2: Hello and Welcome, versions, identity, enrollment, role.

use super::case;
use crate::events;
use crate::identity::{GRID_A, STREET_SCOPE};
use crate::wire::{Code, Msg, Role, MAX_FRAME, MAX_NAME};
use crate::{describe, ensure, expect_error, fail, Case, Check, Ctx, Id};

pub fn cases() -> Vec<Case> {
    vec![
        case!("hello.welcome", "§8.2", Any, "a device's Hello gets Welcome: version 1, the relay's node id, the enrolled grid, sane limits, at most its own head", welcome),
        case!("hello.welcome-relay", "§8.2", Any, "a street relay's Hello gets Welcome with its enrolled scope", welcome_relay),
        case!("hello.version-out-of-range", "§8.2", Any, "versions [2, 65535] get Error Version", version_out_of_range),
        case!("hello.no-versions", "§8.2", Any, "an empty version list gets Error Version", no_versions),
        case!("hello.highest-common", "§8.2", Any, "versions [9, 1] choose version 1", highest_common),
        case!("hello.node-mismatch", "§8.2", Any, "Hello naming another node than the TLS key gets Error WrongRole", node_mismatch),
        case!("hello.wrong-role", "§8.2", Any, "a device connecting as a street relay gets Error WrongRole", wrong_role),
        case!("hello.unenrolled", "§8.2", Any, "an unenrolled node gets Error NotEnrolled, and events it sends anyway are not stored", unenrolled),
        case!("hello.revoked", "§8.2", Any, "a revoked node gets Error NotEnrolled, and events it sends anyway are not stored", revoked),
        case!("hello.name-limit", "§8.2", Any, "a 128-byte name is accepted, a 129-byte one gets Error Malformed", name_limit),
        case!("hello.not-first", "§8.8", Any, "a Pull before Hello gets Error Unexpected", not_first),
        case!("hello.error-first", "§8.8", Any, "an Error before Hello gets Error Unexpected", error_first),
    ]
}

async fn welcome(ctx: &Ctx) -> Check {
    let (conn, mut ctl, w) = ctx.device(&ctx.ids.device_a).await?;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        w.version == 1,
        "version 1",
        format!("version {}", w.version),
    )?;
    ensure(
        w.node == ctx.target_id,
        format!("node {}", hex::encode(ctx.target_id)),
        hex::encode(w.node),
    )?;
    ensure(
        w.scope == GRID_A,
        format!("scope {GRID_A}"),
        format!("scope {:?}", w.scope),
    )?;
    let l = w.limits;
    ensure(
        l.max_frame >= 65_536
            && l.max_frame <= MAX_FRAME
            && l.max_batch_events >= 1
            && l.window >= 1,
        "limits with 64 KiB <= max_frame <= 4 MiB, max_batch_events >= 1, window >= 1 (§6.5, §11)",
        format!("{l:?}"),
    )?;
    ensure(
        w.heads.len() <= 1
            && w.heads
                .iter()
                .all(|h| h.origin == ctx.ids.device_a.key && h.seq > 0),
        "at most one head, the device's own, never 0 (§8.3)",
        format!("{} heads", w.heads.len()),
    )
}

async fn welcome_relay(ctx: &Ctx) -> Check {
    let (conn, mut ctl, w) = ctx.street().await?;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        w.scope == STREET_SCOPE,
        format!("scope {STREET_SCOPE}"),
        format!("scope {:?}", w.scope),
    )?;
    ensure(
        w.heads.iter().all(|h| h.seq > 0),
        "no head at 0 (origins at 0 are omitted, §8.3)",
        format!("{:?}", w.heads.iter().filter(|h| h.seq == 0).count()),
    )
}

/// Sends `hello` as `id` on a new connection and returns the answer.
async fn hello_reply(
    ctx: &Ctx,
    id: &Id,
    hello: Msg,
) -> Result<Result<Msg, crate::client::NoMsg>, crate::Fail> {
    let conn = ctx.connect(id).await?;
    let mut ctl = conn
        .control()
        .await
        .map_err(|e| fail("a control stream", e.to_string()))?;
    let r = ctl.ask(&hello).await;
    conn.close(0, "done");
    Ok(r)
}

fn with_versions(ctx: &Ctx, versions: Vec<u16>) -> Msg {
    let id = &ctx.ids.device_a;
    Msg::Hello {
        versions,
        node: id.key,
        role: Role::Device,
        name: "conformance".into(),
    }
}

async fn version_out_of_range(ctx: &Ctx) -> Check {
    let r = hello_reply(ctx, &ctx.ids.device_a, with_versions(ctx, vec![2, 65535])).await?;
    expect_error(&r, Code::Version, "no common version")
}

async fn no_versions(ctx: &Ctx) -> Check {
    let r = hello_reply(ctx, &ctx.ids.device_a, with_versions(ctx, Vec::new())).await?;
    expect_error(&r, Code::Version, "an empty version list")
}

async fn highest_common(ctx: &Ctx) -> Check {
    let r = hello_reply(ctx, &ctx.ids.device_a, with_versions(ctx, vec![9, 1])).await?;
    match r {
        Ok(Msg::Welcome { version: 1, .. }) => Ok(()),
        other => Err(fail("Welcome { version: 1 }", describe(&other))),
    }
}

async fn node_mismatch(ctx: &Ctx) -> Check {
    let mut hello = ctx.hello(&ctx.ids.device_a, Role::Device);
    if let Msg::Hello { node, .. } = &mut hello {
        *node = ctx.ids.device_b.key;
    }
    let r = hello_reply(ctx, &ctx.ids.device_a, hello).await?;
    expect_error(&r, Code::WrongRole, "Hello.node differs from the TLS key")
}

async fn wrong_role(ctx: &Ctx) -> Check {
    let r = hello_reply(
        ctx,
        &ctx.ids.device_a,
        ctx.hello(&ctx.ids.device_a, Role::Street),
    )
    .await?;
    expect_error(&r, Code::WrongRole, "a device connecting as a street relay")
}

/// `id` is refused with NotEnrolled; it then sends an event anyway, on the same stream and on
/// a second session; neither is stored.
async fn refused_and_nothing_stored(ctx: &Ctx, id: &Id) -> Check {
    ctx.observe().await?;
    let event = events::report(id.key, 1, GRID_A)?;
    let batch = Msg::Events {
        batch: 1,
        events: vec![events::encode(&event)?],
    };
    for _ in 0..2 {
        let conn = ctx.connect(id).await?;
        let mut ctl = conn
            .control()
            .await
            .map_err(|e| fail("a control stream", e.to_string()))?;
        let r = ctl.ask(&ctx.hello(id, Role::Device)).await;
        expect_error(&r, Code::NotEnrolled, "an unenrolled or revoked node")?;
        let _ = ctl.send(&batch).await;
        let _ = ctl.recv_within(std::time::Duration::from_millis(300)).await;
        conn.close(0, "done");
    }
    let seen = ctx.observed_of(&id.key).await?;
    ensure(
        seen.is_empty(),
        "nothing of the refused node stored",
        format!("{} of its events downloadable", seen.len()),
    )
}

async fn unenrolled(ctx: &Ctx) -> Check {
    refused_and_nothing_stored(ctx, &ctx.ids.stranger).await
}

async fn revoked(ctx: &Ctx) -> Check {
    refused_and_nothing_stored(ctx, &ctx.ids.revoked).await
}

async fn name_limit(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a;
    let named = |n: usize| Msg::Hello {
        versions: vec![1],
        node: id.key,
        role: Role::Device,
        name: "n".repeat(n),
    };
    let r = hello_reply(ctx, id, named(MAX_NAME)).await?;
    ensure(
        matches!(r, Ok(Msg::Welcome { .. })),
        "Welcome for a 128-byte name",
        describe(&r),
    )?;
    let r = hello_reply(ctx, id, named(MAX_NAME + 1)).await?;
    expect_error(&r, Code::Malformed, "a 129-byte name")
}

async fn not_first(ctx: &Ctx) -> Check {
    let r = hello_reply(ctx, &ctx.ids.device_a, Msg::Pull { cursor: 0 }).await?;
    expect_error(&r, Code::Unexpected, "Pull as the first message")
}

async fn error_first(ctx: &Ctx) -> Check {
    let r = hello_reply(
        ctx,
        &ctx.ids.device_a,
        Msg::Error {
            code: Code::Storage,
            message: "conformance".into(),
        },
    )
    .await?;
    expect_error(&r, Code::Unexpected, "Error as the first message")
}
