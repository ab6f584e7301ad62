//! §8.3 and §9: uploads, acknowledgements, idempotency, and every refusal of a batch.

use gridsync_core::event::{Payload, Verdict};
use gridsync_core::{Event, IncidentId};

use super::case;
use crate::client::NoMsg;
use crate::events::{self, fresh_origin, now_ms};
use crate::identity::{GRID_A, GRID_B, GRID_OUTSIDE};
use crate::wire::{Code, Key, Msg, MAX_EVENT_BYTES};
use crate::{describe, ensure, expect_error, fail, Case, Check, Ctx, Fail};

pub fn cases() -> Vec<Case> {
    vec![
        case!("upload.ack", "§8.3", Any, "a batch of three events is acknowledged (stored 3), the head moves to it, and each event is stored once with its bytes", ack),
        case!("upload.resend", "§9", Any, "the same batch re-sent in a new session is acknowledged as 3 duplicates and nothing is stored twice", resend),
        case!("upload.equivocation", "§8.3", Any, "the same (origin, seq) with other bytes gets Error Equivocation and nothing of its batch is stored", equivocation),
        case!("upload.sequence-gap", "§8.3", Any, "events 2 and 3 without 1 are stored but the head stays 0; once 1 arrives it is 3", sequence_gap),
        case!("upload.forged-origin", "§8.3", Any, "a device's event claiming another origin gets Error OutOfScope and is not stored", forged_origin),
        case!("upload.outside-grid", "§8.3", Any, "a device's own event in another grid gets Error OutOfScope and is not stored", outside_grid),
        case!("upload.relay-any-origin", "§8.3", Any, "a street relay's events of other origins inside its scope are acknowledged", relay_any_origin),
        case!("upload.relay-outside-scope", "§8.3", Any, "a street relay's event outside its scope gets Error OutOfScope and is not stored", relay_outside_scope),
        case!("upload.atomic-batch", "§9", Any, "a batch with one bad event among good ones is refused whole: none of it is stored", atomic_batch),
        case!("upload.clock-ahead", "§8.3", Any, "an event 11 minutes ahead of the relay's clock gets Error ClockAhead and is not stored", clock_ahead),
        case!("upload.clock-within-bound", "§8.3", Any, "an event 9 minutes ahead is accepted", clock_within_bound),
        case!("upload.event-too-large", "§8.3", Any, "an event encoding over 65 536 bytes gets Error TooLarge", event_too_large),
        case!("upload.batch-too-large", "§8.3", Any, "a batch of max_batch_events + 1 events gets Error TooLarge and is not stored", batch_too_large),
        case!("upload.malformed-event", "§8.3", Any, "a batch holding bytes that are not an event gets Error Malformed and is not stored", malformed_event),
        case!("upload.seq-zero", "§8.3", Any, "an event with sequence number 0 gets Error Malformed", seq_zero),
        case!("upload.window", "§8.3", Any, "`window` batches sent back to back are acknowledged in batch order", window),
        case!("upload.event-rules", "EVENTS.md", Any, "events breaking the model's bounds (score 0, a nil incident id, an empty author, a photo 0 px wide) get Error Malformed", event_rules),
        case!("upload.unsigned", "§6.6", Any, "a device's own event without a signature, after a good one, gets Error BadSignature and nothing of the batch is stored", unsigned),
        case!("upload.wrong-key", "§6.6", Any, "a device's own event signed by another key gets Error BadSignature and is not stored", wrong_key),
        case!("upload.tampered", "§6.6", Any, "a device's own event whose description was changed after signing gets Error BadSignature and is not stored", tampered),
    ]
}

/// Sends one batch on `ctl` and returns the answer.
pub async fn send_batch(
    ctl: &mut crate::client::Ctl,
    batch: u64,
    events: &[Event],
) -> Result<Result<Msg, NoMsg>, Fail> {
    let msg = Msg::Events {
        batch,
        events: events::encode_all(events)?,
    };
    Ok(ctl.ask(&msg).await)
}

/// Opens a street session, sends one batch, returns the answer and ends the session.
pub async fn street_batch(ctx: &Ctx, events: &[Event]) -> Result<Result<Msg, NoMsg>, Fail> {
    let (conn, mut ctl, _) = ctx.street().await?;
    let r = send_batch(&mut ctl, 1, events).await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(r)
}

/// The relay's head of `origin` as the street identity's Welcome shows it.
pub async fn street_head(ctx: &Ctx, origin: &Key) -> Result<u64, Fail> {
    let (conn, mut ctl, w) = ctx.street().await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(w.head(origin))
}

/// Expects `Ack { batch, stored, duplicates }`.
pub fn expect_ack(r: &Result<Msg, NoMsg>, batch: u64, stored: u32, duplicates: u32) -> Check {
    match r {
        Ok(Msg::Ack {
            batch: b,
            stored: s,
            duplicates: d,
        }) if *b == batch && *s == stored && *d == duplicates => Ok(()),
        other => Err(fail(
            format!("Ack {{ batch {batch}, stored {stored}, duplicates {duplicates} }}"),
            describe(other),
        )),
    }
}

/// device-a's next three own events, acknowledged; returns them.
async fn device_a_three(ctx: &Ctx) -> Result<Vec<Event>, Fail> {
    let id = &ctx.ids.device_a;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    let head = w.head(&id.key);
    let batch: Vec<_> = (1..=3)
        .map(|i| events::report(id.key, head + i, GRID_A))
        .collect::<Result<_, _>>()?;
    let r = send_batch(&mut ctl, 1, &batch).await?;
    crate::bye(&mut ctl, &conn).await;
    expect_ack(&r, 1, 3, 0)?;
    Ok(batch)
}

async fn ack(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a;
    let sent = device_a_three(ctx).await?;
    let last = sent.last().map_or(0, |e| e.seq);
    let (conn, mut ctl, w) = ctx.device(id).await?;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        w.head(&id.key) == last,
        format!("the device's head at {last} in the next Welcome"),
        format!("head {}", w.head(&id.key)),
    )?;
    let seen = ctx.observed_of(&id.key).await?;
    for e in &sent {
        let copies: Vec<_> = seen.iter().filter(|s| s.seq == e.seq).collect();
        ensure(
            copies.len() == 1 && copies[0] == e,
            format!("event {} stored once, unchanged", e.seq),
            format!("{} copies downloaded", copies.len()),
        )?;
    }
    Ok(())
}

async fn resend(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a;
    let sent = device_a_three(ctx).await?;
    let (conn, mut ctl, _) = ctx.device(id).await?;
    let r = send_batch(&mut ctl, 1, &sent).await?;
    let r2 = send_batch(&mut ctl, 2, &sent).await?;
    crate::bye(&mut ctl, &conn).await;
    expect_ack(&r, 1, 0, 3)?;
    expect_ack(&r2, 2, 0, 3)?;
    let seen = ctx.observed_of(&id.key).await?;
    for e in &sent {
        let n = seen.iter().filter(|s| s.seq == e.seq).count();
        ensure(
            n == 1,
            format!("event {} stored once", e.seq),
            format!("{n} copies"),
        )?;
    }
    Ok(())
}

async fn equivocation(ctx: &Ctx) -> Check {
    let id = &ctx.ids.device_a;
    let sent = device_a_three(ctx).await?;
    let Some(last) = sent.last() else {
        return Err(fail("three events", "none"));
    };
    let mut other = last.clone();
    if let Payload::Reported(r) = &mut other.payload {
        r.description = "the same sequence number, other content".into();
    }
    let next = events::report(id.key, last.seq + 1, GRID_A)?;
    let (conn, mut ctl, _) = ctx.device(id).await?;
    let r = send_batch(&mut ctl, 1, &[next.clone(), other]).await?;
    conn.close(0, "done");
    expect_error(
        &r,
        Code::Equivocation,
        "an id already stored with other content",
    )?;
    let seen = ctx.observed_of(&id.key).await?;
    ensure(
        !seen.iter().any(|e| e.seq == next.seq),
        format!("event {} of the refused batch not stored", next.seq),
        "it was stored",
    )?;
    let kept: Vec<_> = seen.iter().filter(|e| e.seq == last.seq).collect();
    ensure(
        kept.len() == 1 && kept[0] == last,
        format!("event {} still the first content", last.seq),
        format!(
            "{} copies, first equal: {}",
            kept.len(),
            kept.first().is_some_and(|k| *k == last)
        ),
    )
}

async fn sequence_gap(ctx: &Ctx) -> Check {
    let origin = fresh_origin();
    let two = vec![
        events::report(origin, 2, GRID_A)?,
        events::report(origin, 3, GRID_A)?,
    ];
    let r = street_batch(ctx, &two).await?;
    expect_ack(&r, 1, 2, 0)?;
    let h = street_head(ctx, &origin).await?;
    ensure(
        h == 0,
        "head 0 while event 1 is missing",
        format!("head {h}"),
    )?;
    let r = street_batch(ctx, &[events::report(origin, 1, GRID_A)?]).await?;
    expect_ack(&r, 1, 1, 0)?;
    let h = street_head(ctx, &origin).await?;
    ensure(h == 3, "head 3 once event 1 arrived", format!("head {h}"))
}

/// device-a sends `batch` (built from its head) and must be refused with `code`; then none
/// of the batch's events may be downloadable.
async fn device_refused(
    ctx: &Ctx,
    build: impl Fn(u64) -> Result<Vec<Event>, Fail>,
    code: Code,
    what: &str,
) -> Check {
    device_refused_as(ctx, build, code, what, false).await
}

/// [`device_refused`]; with `as_is`, the events are sent exactly as built (an unsigned one
/// stays unsigned).
async fn device_refused_as(
    ctx: &Ctx,
    build: impl Fn(u64) -> Result<Vec<Event>, Fail>,
    code: Code,
    what: &str,
    as_is: bool,
) -> Check {
    let id = &ctx.ids.device_a;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    let head = w.head(&id.key);
    let batch = build(head)?;
    let r = if as_is {
        let bodies = batch
            .iter()
            .map(events::encode_unsigned)
            .collect::<Result<Vec<_>, _>>()?;
        ctl.ask(&Msg::Events {
            batch: 1,
            events: bodies,
        })
        .await
    } else {
        send_batch(&mut ctl, 1, &batch).await?
    };
    conn.close(0, "done");
    expect_error(&r, code, what)?;
    let seen = ctx.observe().await?;
    let stored = batch
        .iter()
        .filter(|b| seen.iter().any(|s| s.origin == b.origin && s.seq == b.seq))
        .count();
    ensure(
        stored == 0,
        "nothing of the refused batch stored",
        format!("{stored} of its events stored"),
    )?;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        w.head(&id.key) == head,
        format!("the device's head still {head}"),
        format!("head {}", w.head(&id.key)),
    )
}

async fn forged_origin(ctx: &Ctx) -> Check {
    let forged = fresh_origin();
    device_refused(
        ctx,
        |_| Ok(vec![events::report(forged, 1, GRID_A)?]),
        Code::OutOfScope,
        "a device sending another origin's event",
    )
    .await
}

async fn outside_grid(ctx: &Ctx) -> Check {
    let key = ctx.ids.device_a.key;
    device_refused(
        ctx,
        |head| {
            Ok(vec![
                events::report(key, head + 1, GRID_A)?,
                events::report(key, head + 2, GRID_B)?,
            ])
        },
        Code::OutOfScope,
        "a device's event outside its grid",
    )
    .await
}

async fn relay_any_origin(ctx: &Ctx) -> Check {
    let (x, y) = (fresh_origin(), fresh_origin());
    let batch = vec![events::report(x, 1, GRID_A)?, events::report(y, 1, GRID_B)?];
    let r = street_batch(ctx, &batch).await?;
    expect_ack(&r, 1, 2, 0)?;
    for o in [x, y] {
        let h = street_head(ctx, &o).await?;
        ensure(
            h == 1,
            "head 1 for each origin the street sent",
            format!("head {h}"),
        )?;
    }
    Ok(())
}

/// A street batch refused with `code`, of which nothing may be stored (every event is its
/// origin's seq 1, so a stored one shows as a head).
async fn street_refused(ctx: &Ctx, batch: &[Event], code: Code, what: &str) -> Check {
    let r = street_batch(ctx, batch).await?;
    expect_error(&r, code, what)?;
    for e in batch {
        let h = street_head(ctx, &e.origin.0).await?;
        ensure(
            h == 0,
            "nothing of the refused batch stored",
            format!("origin {} has head {h}", e.origin.short()),
        )?;
    }
    Ok(())
}

async fn relay_outside_scope(ctx: &Ctx) -> Check {
    let batch = vec![events::report(fresh_origin(), 1, GRID_OUTSIDE)?];
    street_refused(
        ctx,
        &batch,
        Code::OutOfScope,
        "an event outside the street's scope",
    )
    .await
}

async fn atomic_batch(ctx: &Ctx) -> Check {
    let batch = vec![
        events::report(fresh_origin(), 1, GRID_A)?,
        events::report(fresh_origin(), 1, GRID_B)?,
        events::report(fresh_origin(), 1, GRID_OUTSIDE)?,
    ];
    street_refused(ctx, &batch, Code::OutOfScope, "one event outside the scope").await
}

async fn clock_ahead(ctx: &Ctx) -> Check {
    let ahead = now_ms() + 11 * 60 * 1000;
    let batch = vec![
        events::report(fresh_origin(), 1, GRID_A)?,
        events::report_at(fresh_origin(), 1, GRID_A, ahead)?,
    ];
    street_refused(ctx, &batch, Code::ClockAhead, "an event 11 minutes ahead").await
}

async fn clock_within_bound(ctx: &Ctx) -> Check {
    let ahead = now_ms() + 9 * 60 * 1000;
    let r = street_batch(ctx, &[events::report_at(fresh_origin(), 1, GRID_A, ahead)?]).await?;
    expect_ack(&r, 1, 1, 0)
}

async fn event_too_large(ctx: &Ctx) -> Check {
    let mut big = events::report(fresh_origin(), 1, GRID_A)?;
    if let Payload::Reported(r) = &mut big.payload {
        r.description = "x".repeat(MAX_EVENT_BYTES);
    }
    let n = events::encode(&big)?.len();
    ensure(
        n > MAX_EVENT_BYTES,
        "a test event over 64 KiB",
        format!("{n} bytes"),
    )?;
    street_refused(ctx, &[big], Code::TooLarge, "an event over 65 536 bytes").await
}

async fn batch_too_large(ctx: &Ctx) -> Check {
    let (conn, mut ctl, w) = ctx.street().await?;
    let n = w.limits.max_batch_events as usize + 1;
    let origin = fresh_origin();
    let batch: Vec<_> = (1..=n as u64)
        .map(|s| events::report(origin, s, GRID_A))
        .collect::<Result<_, _>>()?;
    let r = send_batch(&mut ctl, 1, &batch).await?;
    conn.close(0, "done");
    expect_error(&r, Code::TooLarge, "a batch over max_batch_events")?;
    let h = street_head(ctx, &origin).await?;
    ensure(
        h == 0,
        "nothing of the refused batch stored",
        format!("head {h}"),
    )
}

async fn malformed_event(ctx: &Ctx) -> Check {
    let good = events::report(fresh_origin(), 1, GRID_A)?;
    let (conn, mut ctl, _) = ctx.street().await?;
    let msg = Msg::Events {
        batch: 1,
        events: vec![events::encode(&good)?, vec![0x01, 0xde, 0xad, 0xbe, 0xef]],
    };
    let r = ctl.ask(&msg).await;
    conn.close(0, "done");
    expect_error(&r, Code::Malformed, "bytes that are not an event")?;
    let h = street_head(ctx, &good.origin.0).await?;
    ensure(
        h == 0,
        "nothing of the refused batch stored",
        format!("head {h}"),
    )
}

async fn seq_zero(ctx: &Ctx) -> Check {
    let zero = events::report(fresh_origin(), 0, GRID_A)?;
    let r = street_batch(ctx, &[zero]).await?;
    expect_error(&r, Code::Malformed, "sequence number 0")
}

async fn window(ctx: &Ctx) -> Check {
    let origin = fresh_origin();
    let (conn, mut ctl, w) = ctx.street().await?;
    let n = w.limits.window.clamp(1, 16) as u64;
    for b in 1..=n {
        let msg = Msg::Events {
            batch: b,
            events: vec![events::encode(&events::report(origin, b, GRID_A)?)?],
        };
        ctl.send(&msg)
            .await
            .map_err(|e| fail("to send a batch", e))?;
    }
    for b in 1..=n {
        let r = ctl.recv().await;
        expect_ack(&r, b, 1, 0)?;
    }
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

async fn event_rules(ctx: &Ctx) -> Check {
    let base = || events::report(fresh_origin(), 1, GRID_A);
    let mut score = base()?;
    score.payload = Payload::Evaluated {
        score: 0,
        verdict: Verdict::Unsatisfied,
        pred: Vec::new(),
    };
    let mut nil = base()?;
    nil.incident = IncidentId(uuid::Uuid::nil());
    let mut author = base()?;
    author.author = String::new();
    let report = base()?;
    let photo = events::Photo {
        bytes: vec![0xff; 10],
        hash: gridsync_core::BlobHash::of(b"photo"),
        width: 0,
        height: 10,
        thumb: Vec::new(),
        thumb_hash: gridsync_core::BlobHash::of(b"thumb"),
    };
    let zero_wide = events::photo_added(report.origin.0, 2, &report, &photo);
    let cases: [(&str, Vec<Event>); 4] = [
        ("score 0", vec![score]),
        ("a nil incident id", vec![nil]),
        ("an empty author", vec![author]),
        ("a photo 0 px wide", vec![report, zero_wide]),
    ];
    for (what, batch) in cases {
        street_refused(ctx, &batch, Code::Malformed, what).await?;
    }
    Ok(())
}

// ---- signatures (§6.6) ----------------------------------------------------------------------

async fn unsigned(ctx: &Ctx) -> Check {
    let key = ctx.ids.device_a.key;
    device_refused_as(
        ctx,
        |head| {
            Ok(vec![events::report(key, head + 1, GRID_A)?, {
                let mut e = events::report(key, head + 2, GRID_A)?;
                e.signature = None;
                e
            }])
        },
        Code::BadSignature,
        "a device's unsigned event",
        true,
    )
    .await
}

async fn wrong_key(ctx: &Ctx) -> Check {
    let key = ctx.ids.device_a.key;
    device_refused_as(
        ctx,
        |head| {
            let mut e = events::report(key, head + 1, GRID_A)?;
            // The same content signed by a key that is not the origin's.
            let (seed, other) = events::unregistered_key();
            let mut by_other = e.clone();
            by_other.origin = gridsync_core::NodeId(other);
            by_other
                .sign(&seed)
                .map_err(|err| fail("a signable event", err.to_string()))?;
            e.signature = by_other.signature;
            Ok(vec![e])
        },
        Code::BadSignature,
        "a device's event signed by another key",
        true,
    )
    .await
}

async fn tampered(ctx: &Ctx) -> Check {
    let key = ctx.ids.device_a.key;
    device_refused_as(
        ctx,
        |head| {
            let mut e = events::report(key, head + 1, GRID_A)?;
            if let Payload::Reported(r) = &mut e.payload {
                r.description.push_str(", and more");
            }
            Ok(vec![e])
        },
        Code::BadSignature,
        "a device's event changed after it was signed",
        true,
    )
    .await
}
