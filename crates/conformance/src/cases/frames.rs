//! §4, §5, §7: frames and bodies, well-formed and not.

use super::case;
use crate::events;
use crate::identity::GRID_A;
use crate::wire::{self, Code, Msg, Role, MAX_FRAME};
use crate::{describe, ensure, expect_error, fail, Case, Check, Ctx};

pub fn cases() -> Vec<Case> {
    vec![
        case!("frame.over-limit", "§4", Any, "a length prefix of 4 MiB + 1 gets Error TooLarge before its body is sent, and the relay still serves the next client", over_limit),
        case!("frame.http-garbage", "§4", Any, "an HTTP request instead of Hello (a length prefix of 1.2 GB) gets Error TooLarge", http_garbage),
        case!("frame.garbage-body", "§4", Any, "a frame whose body is random bytes gets Error Malformed", garbage_body),
        case!("frame.empty-body", "§4", Any, "a frame with an empty body gets Error Malformed", empty_body),
        case!("frame.bad-version-byte", "§4", Any, "a body whose version byte is 0x02 gets Error Malformed", bad_version_byte),
        case!("frame.trailing-bytes", "§4", Any, "a body with a byte after the value gets Error Malformed", trailing_bytes),
        case!("frame.unknown-message", "§7", Any, "message variant index 13 gets Error Malformed", unknown_message),
        case!("frame.bad-enum-index", "§5.2", Any, "a Hello whose role is variant index 4 (of four roles) gets Error Malformed", bad_tag),
        case!("frame.split-and-packed", "§4", Any, "a Hello written one byte at a time, and two Pulls in one write, are each answered", split_and_packed),
        case!("frame.truncated-disconnect", "§4", Any, "half an Events frame, then the connection is dropped: nothing of the batch is stored", truncated_disconnect),
        case!("frame.fin-inside-frame", "§4", Any, "a control stream that ends inside a frame gets Error Malformed", fin_inside_frame),
    ]
}

/// A device-a2 session past Welcome.
async fn ready(
    ctx: &Ctx,
) -> Result<(crate::client::Conn, crate::client::Ctl, crate::Welcome), crate::Fail> {
    ctx.device(&ctx.ids.device_a2).await
}

async fn over_limit(ctx: &Ctx) -> Check {
    let (conn, mut ctl, _) = ready(ctx).await?;
    ctl.send_raw(&(MAX_FRAME + 1).to_be_bytes())
        .await
        .map_err(|e| fail("to send a length prefix", e))?;
    let r = ctl.recv().await;
    conn.close(0, "done");
    expect_error(
        &r,
        Code::TooLarge,
        "a length prefix over 4 MiB, with no body sent",
    )?;
    // The relay is still serving.
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a).await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

async fn first_bytes(
    ctx: &Ctx,
    bytes: &[u8],
) -> Result<Result<Msg, crate::client::NoMsg>, crate::Fail> {
    let conn = ctx.connect(&ctx.ids.device_a2).await?;
    let mut ctl = conn
        .control()
        .await
        .map_err(|e| fail("a control stream", e.to_string()))?;
    ctl.send_raw(bytes)
        .await
        .map_err(|e| fail("to send bytes", e))?;
    let r = ctl.recv().await;
    conn.close(0, "done");
    Ok(r)
}

async fn after_welcome(
    ctx: &Ctx,
    bytes: &[u8],
) -> Result<Result<Msg, crate::client::NoMsg>, crate::Fail> {
    let (conn, mut ctl, _) = ready(ctx).await?;
    ctl.send_raw(bytes)
        .await
        .map_err(|e| fail("to send bytes", e))?;
    let r = ctl.recv().await;
    conn.close(0, "done");
    Ok(r)
}

async fn http_garbage(ctx: &Ctx) -> Check {
    let r = first_bytes(ctx, b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n").await?;
    expect_error(&r, Code::TooLarge, "a length prefix of 0x47455420 bytes")
}

async fn garbage_body(ctx: &Ctx) -> Check {
    // Version byte, then a variant index marker that is never valid (255) and junk.
    let body = [0x01, 0xff, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef];
    let r = after_welcome(ctx, &wire::frame_of(&body)).await?;
    expect_error(&r, Code::Malformed, "a body of garbage")
}

async fn empty_body(ctx: &Ctx) -> Check {
    let r = after_welcome(ctx, &wire::frame_of(&[])).await?;
    expect_error(&r, Code::Malformed, "an empty body")
}

async fn bad_version_byte(ctx: &Ctx) -> Check {
    let mut body =
        wire::body("Pull", &Msg::Pull { cursor: 0 }).map_err(|e| fail("a body", e.to_string()))?;
    body[0] = 0x02;
    let r = after_welcome(ctx, &wire::frame_of(&body)).await?;
    expect_error(&r, Code::Malformed, "version byte 0x02")
}

async fn trailing_bytes(ctx: &Ctx) -> Check {
    let mut body =
        wire::body("Pull", &Msg::Pull { cursor: 0 }).map_err(|e| fail("a body", e.to_string()))?;
    body.push(0);
    let r = after_welcome(ctx, &wire::frame_of(&body)).await?;
    expect_error(&r, Code::Malformed, "a trailing byte")
}

async fn unknown_message(ctx: &Ctx) -> Check {
    let r = after_welcome(ctx, &wire::frame_of(&[0x01, 13])).await?;
    expect_error(&r, Code::Malformed, "variant index 13")
}

async fn bad_tag(ctx: &Ctx) -> Check {
    // A Hello whose role is variant 4 (there are four roles).
    let mut body = wire::body("Hello", &ctx.hello(&ctx.ids.device_a2, Role::Device))
        .map_err(|e| fail("a body", e.to_string()))?;
    // version byte, variant 0, versions [1] (2 bytes), node (32 bytes), then the role.
    let role_at = 1 + 1 + 2 + 32;
    body[role_at] = 4;
    let r = first_bytes(ctx, &wire::frame_of(&body)).await?;
    expect_error(&r, Code::Malformed, "role variant index 4")
}

async fn split_and_packed(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a2;
    let conn = ctx.connect(id).await?;
    let mut ctl = conn
        .control()
        .await
        .map_err(|e| fail("a control stream", e.to_string()))?;
    let hello = wire::frame("Hello", &ctx.hello(id, Role::Device))
        .map_err(|e| fail("a frame", e.to_string()))?;
    for b in &hello {
        ctl.send_raw(std::slice::from_ref(b))
            .await
            .map_err(|e| fail("to send a byte", e))?;
    }
    let r = ctl.recv().await;
    ensure(
        matches!(r, Ok(Msg::Welcome { .. })),
        "Welcome to a Hello sent byte by byte",
        describe(&r),
    )?;
    let mut two = wire::frame("Pull", &Msg::Pull { cursor: u64::MAX })
        .map_err(|e| fail("a frame", e.to_string()))?;
    two.extend(
        wire::frame("Pull", &Msg::Pull { cursor: u64::MAX })
            .map_err(|e| fail("a frame", e.to_string()))?,
    );
    ctl.send_raw(&two).await.map_err(|e| fail("to send", e))?;
    for i in 1..=2 {
        let r = ctl.recv().await;
        ensure(
            matches!(r, Ok(Msg::Down { .. })),
            format!("Down {i} of 2 for two Pulls packed in one write"),
            describe(&r),
        )?;
    }
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

async fn truncated_disconnect(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    let head = w.head(&id.key);
    let batch: Vec<_> = (1..=3)
        .map(|i| events::report(id.key, head + i, GRID_A))
        .collect::<Result<_, _>>()?;
    let frame = wire::frame(
        "Events",
        &Msg::Events {
            batch: 1,
            events: events::encode_all(&batch)?,
        },
    )
    .map_err(|e| fail("a frame", e.to_string()))?;
    ctl.send_raw(&frame[..frame.len() / 2])
        .await
        .map_err(|e| fail("to send half a frame", e))?;
    conn.close(9, "conformance: dropping the connection mid-frame");
    let (conn, mut ctl, w) = ctx.device(id).await?;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        w.head(&id.key) == head,
        format!("the device's head still {head}"),
        format!("head {}", w.head(&id.key)),
    )?;
    let seen = ctx.observed_of(&id.key).await?;
    let leaked = seen.iter().filter(|e| e.seq > head).count();
    ensure(
        leaked == 0,
        "none of the truncated batch's events stored",
        format!("{leaked} stored"),
    )
}

async fn fin_inside_frame(ctx: &Ctx) -> Check {
    let (conn, mut ctl, _) = ready(ctx).await?;
    let frame = wire::frame("Pull", &Msg::Pull { cursor: 0 })
        .map_err(|e| fail("a frame", e.to_string()))?;
    ctl.send_raw(&frame[..3])
        .await
        .map_err(|e| fail("to send", e))?;
    ctl.finish();
    let r = ctl.recv().await;
    conn.close(0, "done");
    expect_error(&r, Code::Malformed, "FIN inside a frame")
}
