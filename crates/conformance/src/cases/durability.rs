//! §9 in spawn mode: what was acknowledged survives SIGKILL; a restart mid-upload loses
//! nothing; a graceful shutdown ends sessions with ShuttingDown.

use super::case;
use super::upload::{expect_ack, send_batch, street_head};
use crate::client::{self, Closed, NoMsg};
use crate::events::{self, fresh_origin};
use crate::identity::GRID_A;
use crate::wire::{BlobHeader, BlobKind, Code, Msg, Want};
use crate::{describe, ensure, fail, Case, Check, Ctx};

pub fn cases() -> Vec<Case> {
    vec![
        case!("durable.ack-then-kill", "§9", Spawn, "a batch acknowledged and the relay killed (SIGKILL) at once: after a restart the batch is there", ack_then_kill),
        case!("durable.kill-mid-upload", "§9", Spawn, "the relay killed while a photo is half sent: acknowledged events survive and the photo completes after a resume", kill_mid_upload),
        case!("durable.graceful-shutdown", "§8.7", Spawn, "SIGTERM during a session ends it with Error ShuttingDown (or close 13), and the relay exits 0", graceful_shutdown),
    ]
}

async fn ack_then_kill(ctx: &Ctx) -> Check {
    let origin = fresh_origin();
    let batch: Vec<_> = (1..=5)
        .map(|s| events::report(origin, s, GRID_A))
        .collect::<Result<_, _>>()?;
    let (_conn, mut ctl, _) = ctx.street().await?;
    let r = send_batch(&mut ctl, 1, &batch).await?;
    expect_ack(&r, 1, 5, 0)?;
    ctx.kill_and_restart().await?;
    let h = street_head(ctx, &origin).await?;
    ensure(
        h == 5,
        "head 5 after SIGKILL right after the Ack and a restart",
        format!("head {h}"),
    )
}

async fn kill_mid_upload(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a;
    let p = events::photo(1200, 900)?;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    let head = w.head(&id.key);
    let report = events::report(id.key, head + 1, GRID_A)?;
    let added = events::photo_added(id.key, head + 2, &report, &p);
    expect_ack(&send_batch(&mut ctl, 1, &[report, added]).await?, 1, 2, 0)?;
    let info = crate::wire::BlobInfo {
        hash: p.hash.0,
        kind: BlobKind::Photo,
        size: p.bytes.len() as u64,
    };
    ctl.send(&Msg::Offer { blobs: vec![info] })
        .await
        .map_err(|e| fail("to send an Offer", e))?;
    let r = ctl.recv().await;
    ensure(
        matches!(&r, Ok(Msg::Wants { wants }) if wants == &[Want { hash: info.hash, offset: 0 }]),
        "Wants the photo from 0",
        describe(&r),
    )?;
    let cut = p.bytes.len() * 2 / 3;
    let header = BlobHeader {
        hash: info.hash,
        kind: info.kind,
        size: info.size,
        offset: 0,
    };
    let _open = client::send_blob(&conn, &header, &p.bytes[..cut], false)
        .await
        .map_err(|e| fail("to send part of the photo", e))?;
    ctx.kill_and_restart().await?;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    ensure(
        w.head(&id.key) == head + 2,
        format!("the acknowledged events kept (head {})", head + 2),
        format!("head {}", w.head(&id.key)),
    )?;
    ctl.send(&Msg::Offer { blobs: vec![info] })
        .await
        .map_err(|e| fail("to send an Offer", e))?;
    let r = ctl.recv().await;
    let offset = match &r {
        Ok(Msg::Wants { wants })
            if wants.len() == 1 && wants[0].hash == info.hash && wants[0].offset <= cut as u64 =>
        {
            wants[0].offset
        }
        _ => {
            return Err(fail(
                format!("Wants the photo from an offset <= {cut}"),
                describe(&r),
            ))
        }
    };
    let header = BlobHeader { offset, ..header };
    client::send_blob(&conn, &header, &p.bytes[offset as usize..], true)
        .await
        .map_err(|e| fail("to send the rest of the photo", e))?;
    let a = ctl.recv().await;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        matches!(a, Ok(Msg::BlobStored { .. })),
        format!("BlobStored after resuming at {offset}"),
        describe(&a),
    )
}

async fn graceful_shutdown(ctx: &Ctx) -> Check {
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a2).await?;
    let status = tokio::task::block_in_place(|| ctx.with_relay(|s| s.terminate()))?;
    let r = ctl.recv().await;
    let code_ok = match &r {
        Ok(Msg::Error {
            code: Code::ShuttingDown,
            ..
        }) => true,
        Err(NoMsg::Closed(Closed::App { code, .. })) => *code == Code::ShuttingDown.number(),
        _ => false,
    };
    conn.close(0, "done");
    ensure(
        code_ok,
        "Error { ShuttingDown } or application close 13",
        describe(&r),
    )?;
    ensure(
        status.is_some_and(|s| s.success()),
        "the relay to exit 0 after SIGTERM",
        format!("{status:?}"),
    )
}
