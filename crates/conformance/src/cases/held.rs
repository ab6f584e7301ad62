//! §8.12: `HeldQuery` / `Held`, which blobs are safe (held by the district).

use gridsync_core::BlobHash;

use super::blobs::stored_photo;
use super::case;
use crate::events;
use crate::wire::{self, Code, Msg, Role};
use crate::{describe, ensure, expect_error, Case, Check, Ctx};

pub fn cases() -> Vec<Case> {
    vec![
        case!("held.district", "§8.12", Any, "a photo a device uploaded is in the district's Held answer (held whole there is safe); at another tier the answer holds at most it", district),
        case!("held.unknown", "§8.12", Any, "a hash the relay never got is not in the Held answer, and the session goes on", unknown),
        case!("held.outside-scope", "§8.12", Any, "a photo of another grid, held and safe at the relay, is not in the Held answer to a device of this grid", outside_scope),
        case!("held.too-many", "§8.12", Any, "a HeldQuery of 1025 hashes gets Error TooLarge", too_many),
    ]
}

async fn ask(
    ctl: &mut crate::client::Ctl,
    blobs: Vec<wire::Key>,
) -> Result<Msg, crate::client::NoMsg> {
    ctl.ask(&Msg::HeldQuery { blobs }).await
}

async fn district(ctx: &Ctx) -> Check {
    let p = stored_photo(ctx).await?;
    let (conn, mut ctl, w) = ctx.device(&ctx.ids.device_a).await?;
    let r = ask(&mut ctl, vec![p.hash.0]).await;
    crate::bye(&mut ctl, &conn).await;
    let Ok(Msg::Held { blobs }) = &r else {
        return ensure(false, "Held", describe(&r));
    };
    if w.role == Role::District {
        ensure(
            blobs == &vec![p.hash.0],
            "Held { [the photo] } from the district",
            describe(&r),
        )
    } else {
        ensure(
            blobs.is_empty() || blobs == &vec![p.hash.0],
            "Held { [] } or Held { [the photo] }",
            describe(&r),
        )
    }
}

async fn unknown(ctx: &Ctx) -> Check {
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a).await?;
    let never = BlobHash::of(&events::fresh_origin()).0;
    let r = ask(&mut ctl, vec![never]).await;
    let next = ctl.ask(&Msg::Pull { cursor: u64::MAX }).await;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        matches!(&r, Ok(Msg::Held { blobs }) if blobs.is_empty()),
        "Held { [] } for a hash the relay never got",
        describe(&r),
    )?;
    ensure(
        matches!(next, Ok(Msg::Down { .. })),
        "Down for a Pull after the Held (the session goes on)",
        describe(&next),
    )
}

async fn outside_scope(ctx: &Ctx) -> Check {
    // device-a's photo, of grid A, held whole (safe at a district); device-b is of grid B.
    let p = stored_photo(ctx).await?;
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_b).await?;
    let r = ask(&mut ctl, vec![p.hash.0]).await;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        matches!(&r, Ok(Msg::Held { blobs }) if blobs.is_empty()),
        "Held { [] } for a photo of another grid",
        describe(&r),
    )
}

async fn too_many(ctx: &Ctx) -> Check {
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a).await?;
    let blobs: Vec<_> = (0..=wire::MAX_HELD_QUERY as u32)
        .map(|i| BlobHash::of(&i.to_le_bytes()).0)
        .collect();
    let r = ask(&mut ctl, blobs).await;
    conn.close(0, "done");
    expect_error(&r, Code::TooLarge, "a HeldQuery of 1025 hashes")
}
