//! §8.4, §8.5: offers, wants, blob streams, resumption and every refusal of a blob.

use gridsync_core::{BlobHash, Event};

use super::case;
use super::upload::{expect_ack, send_batch};
use crate::client::{self, Conn, Ctl};
use crate::events::{self, Photo};
use crate::identity::GRID_A;
use crate::wire::{self, BlobHeader, BlobInfo, BlobKind, Code, Key, Msg, Want};
use crate::{describe, ensure, expect_error, fail, Case, Check, Ctx, Fail};

pub fn cases() -> Vec<Case> {
    vec![
        case!("blob.whole", "§8.5", Any, "a photo and its thumbnail named by an event are wanted from 0, stored whole, and not wanted again", whole),
        case!("blob.resume", "§8.5", Any, "a blob stream ended early gets BlobPartial { held }, the next offer resumes at held, and the rest completes it", resume),
        case!("blob.mismatch", "§8.5", Any, "bytes that do not hash to the blob's id get BlobRefused BlobMismatch and are discarded", mismatch),
        case!("blob.past-size", "§8.5", Any, "bytes past the declared size get BlobRefused BlobMismatch and STOP_SENDING 10 at once, without waiting for FIN", past_size),
        case!("blob.over-max", "§8.4", Any, "a blob over max_blob is refused with BlobRefused TooLarge and not wanted", over_max),
        case!("blob.unreferenced", "§8.4", Any, "a blob no event names is refused with BlobRefused OutOfScope and not wanted", unreferenced),
        case!("blob.not-offered", "§8.5", Any, "a blob stream for a blob not offered in the session gets BlobRefused Unexpected and STOP_SENDING 9", not_offered),
        case!("blob.header-mismatch", "§8.5", Any, "a blob header whose size differs from the offer gets BlobRefused Unexpected", header_mismatch),
        case!("blob.header-too-large", "§8.5", Any, "a blob header frame over 1024 bytes gets STOP_SENDING 8", header_too_large),
        case!("blob.header-malformed", "§8.5", Any, "a blob header that does not decode gets STOP_SENDING 7", header_malformed),
        case!("blob.before-session", "§8.5", Any, "a blob stream on a connection with no session gets STOP_SENDING 9", before_session),
        case!("blob.offer-too-large", "§8.4", Any, "an offer of 1025 blobs gets Error TooLarge", offer_too_large),
        case!("blob.not-a-photo", "§8.5", Any, "bytes that hash right but are not a stored JPEG (text with GPS in it) get BlobRefused BlobMismatch and are not stored", not_a_photo),
        case!("blob.fetch-own-scope", "§8.11", Any, "a device fetching a photo of its grid gets a blob stream of the relay's own: the header, then the bytes from its offset, byte for byte, then FIN", fetch_own_scope),
        case!("blob.fetch-out-of-scope-refused", "§8.11", Any, "a device fetching a photo of another grid, or a blob no event names, gets BlobRefused OutOfScope and no stream; the session goes on", fetch_out_of_scope_refused),
    ]
}

fn infos(p: &Photo) -> [BlobInfo; 2] {
    [
        BlobInfo {
            hash: p.thumb_hash.0,
            kind: BlobKind::Thumb,
            size: p.thumb.len() as u64,
        },
        BlobInfo {
            hash: p.hash.0,
            kind: BlobKind::Photo,
            size: p.bytes.len() as u64,
        },
    ]
}

/// device-a reports an incident with `photo` (two events, acknowledged).
async fn named(ctx: &Ctx, photo: &Photo) -> Result<Vec<Event>, Fail> {
    let id = &ctx.ids.device_a;
    let (conn, mut ctl, w) = ctx.device(id).await?;
    let head = w.head(&id.key);
    let report = events::report(id.key, head + 1, GRID_A)?;
    let added = events::photo_added(id.key, head + 2, &report, photo);
    let batch = vec![report, added];
    let r = send_batch(&mut ctl, 1, &batch).await?;
    crate::bye(&mut ctl, &conn).await;
    expect_ack(&r, 1, 2, 0)?;
    Ok(batch)
}

/// A new photo, named by a device-a event the relay holds.
async fn named_photo(ctx: &Ctx) -> Result<Photo, Fail> {
    let p = events::photo(1200, 900)?;
    named(ctx, &p).await?;
    Ok(p)
}

/// Sends an offer; returns the blobs refused before `Wants`, and the wants.
async fn offer(ctl: &mut Ctl, blobs: &[BlobInfo]) -> Result<(Vec<(Key, Code)>, Vec<Want>), Fail> {
    ctl.send(&Msg::Offer {
        blobs: blobs.to_vec(),
    })
    .await
    .map_err(|e| fail("to send an Offer", e))?;
    let mut refused = Vec::new();
    loop {
        match ctl.recv().await {
            Ok(Msg::BlobRefused { hash, code, .. }) => refused.push((hash, code)),
            Ok(Msg::Wants { wants }) => return Ok((refused, wants)),
            other => {
                return Err(fail(
                    "Wants (after any BlobRefused) for an Offer",
                    describe(&other),
                ))
            }
        }
    }
}

/// A device-a session with `info` offered alone; it must be wanted from `offset`.
async fn offered_one(ctx: &Ctx, info: BlobInfo, offset: u64) -> Result<(Conn, Ctl), Fail> {
    offered(
        ctx,
        &[info],
        &[Want {
            hash: info.hash,
            offset,
        }],
    )
    .await
}

/// A device-a session with `blobs` offered; the wants must be exactly `expect`.
async fn offered(ctx: &Ctx, blobs: &[BlobInfo], expect: &[Want]) -> Result<(Conn, Ctl), Fail> {
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a).await?;
    let (refused, wants) = offer(&mut ctl, blobs).await?;
    ensure(refused.is_empty(), "no refusal", format!("{refused:?}"))?;
    ensure(
        wants == expect,
        format!("Wants {}", show_wants(expect)),
        format!("Wants {}", show_wants(&wants)),
    )?;
    Ok((conn, ctl))
}

fn show_wants(w: &[Want]) -> String {
    let items: Vec<_> = w
        .iter()
        .map(|w| format!("{}@{}", &hex::encode(w.hash)[..8], w.offset))
        .collect();
    format!("[{}]", items.join(", "))
}

fn header(info: &BlobInfo, offset: u64) -> BlobHeader {
    BlobHeader {
        hash: info.hash,
        kind: info.kind,
        size: info.size,
        offset,
    }
}

/// The next answer to a blob stream, on the control stream.
async fn blob_answer(ctl: &mut Ctl) -> Result<Msg, Fail> {
    match ctl.recv().await {
        Ok(m @ (Msg::BlobStored { .. } | Msg::BlobPartial { .. } | Msg::BlobRefused { .. })) => {
            Ok(m)
        }
        other => Err(fail("an answer to a blob stream", describe(&other))),
    }
}

/// Expects `BlobRefused { code }`.
fn expect_refused(a: &Msg, code: Code, what: &str) -> Check {
    ensure(
        matches!(a, Msg::BlobRefused { code: c, .. } if *c == code),
        what,
        a.describe(),
    )
}

/// Sends a blob stream without FIN and expects the parent to refuse it with `code`, both as
/// `BlobRefused` on the control stream and as STOP_SENDING with the same number.
async fn refused_and_stopped(
    conn: &Conn,
    ctl: &mut Ctl,
    h: &BlobHeader,
    bytes: &[u8],
    code: Code,
) -> Check {
    let mut stream = client::send_blob(conn, h, bytes, false)
        .await
        .map_err(|e| fail("to send a blob", e))?
        .ok_or_else(|| fail("an open stream", "none"))?;
    let a = blob_answer(ctl).await?;
    expect_refused(&a, code, &format!("BlobRefused {{ {code:?} }} before FIN"))?;
    let stop = client::stopped_within(&mut stream, client::ANSWER).await;
    ensure(
        stop == Some(code.number()),
        format!("STOP_SENDING {}", code.number()),
        format!("{stop:?}"),
    )
}

async fn whole(ctx: &Ctx) -> Check {
    let p = named_photo(ctx).await?;
    let blobs = infos(&p);
    let from0: Vec<_> = blobs
        .iter()
        .map(|b| Want {
            hash: b.hash,
            offset: 0,
        })
        .collect();
    let (conn, mut ctl) = offered(ctx, &blobs, &from0).await?;
    for (info, bytes) in blobs.iter().zip([&p.thumb, &p.bytes]) {
        client::send_blob(&conn, &header(info, 0), bytes, true)
            .await
            .map_err(|e| fail("to send a blob stream", e))?;
    }
    let mut stored = Vec::new();
    for _ in 0..2 {
        match blob_answer(&mut ctl).await? {
            Msg::BlobStored { hash } => stored.push(hash),
            other => return Err(fail("BlobStored", other.describe())),
        }
    }
    stored.sort_unstable();
    let mut want: Vec<_> = blobs.iter().map(|b| b.hash).collect();
    want.sort_unstable();
    ensure(
        stored == want,
        "BlobStored for the thumbnail and the photo",
        format!("{} stored", stored.len()),
    )?;
    crate::bye(&mut ctl, &conn).await;
    let (conn, mut ctl) = offered(ctx, &blobs, &[]).await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

async fn resume(ctx: &Ctx) -> Check {
    let p = named_photo(ctx).await?;
    let info = infos(&p)[1];
    let cut = (p.bytes.len() / 2).max(1);
    let (conn, mut ctl) = offered_one(ctx, info, 0).await?;
    client::send_blob(&conn, &header(&info, 0), &p.bytes[..cut], true)
        .await
        .map_err(|e| fail("to send half a blob", e))?;
    let held = match blob_answer(&mut ctl).await? {
        Msg::BlobPartial { held, .. } => held,
        other => {
            return Err(fail(
                format!("BlobPartial {{ held {cut} }}"),
                other.describe(),
            ))
        }
    };
    ensure(
        held == cut as u64,
        format!("BlobPartial {{ held {cut} }}"),
        format!("held {held}"),
    )?;
    crate::bye(&mut ctl, &conn).await;
    let (conn, mut ctl) = offered_one(ctx, info, held).await?;
    client::send_blob(&conn, &header(&info, held), &p.bytes[cut..], true)
        .await
        .map_err(|e| fail("to send the rest", e))?;
    let a = blob_answer(&mut ctl).await?;
    ensure(
        matches!(a, Msg::BlobStored { .. }),
        "BlobStored after the resumed stream",
        a.describe(),
    )?;
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

async fn mismatch(ctx: &Ctx) -> Check {
    let p = named_photo(ctx).await?;
    let info = infos(&p)[1];
    let mut bad = p.bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    let (conn, mut ctl) = offered_one(ctx, info, 0).await?;
    client::send_blob(&conn, &header(&info, 0), &bad, true)
        .await
        .map_err(|e| fail("to send a blob", e))?;
    let a = blob_answer(&mut ctl).await?;
    expect_refused(&a, Code::BlobMismatch, "BlobRefused { BlobMismatch }")?;
    crate::bye(&mut ctl, &conn).await;
    // Discarded: wanted from 0 again.
    let (conn, mut ctl) = offered_one(ctx, info, 0).await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

async fn past_size(ctx: &Ctx) -> Check {
    let p = named_photo(ctx).await?;
    let info = infos(&p)[0];
    let mut long = p.thumb.clone();
    long.extend_from_slice(&[0u8; 10]);
    let (conn, mut ctl) = offered_one(ctx, info, 0).await?;
    // No FIN: the relay must notice the extra bytes themselves.
    refused_and_stopped(
        &conn,
        &mut ctl,
        &header(&info, 0),
        &long,
        Code::BlobMismatch,
    )
    .await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

async fn declined(ctx: &Ctx, info: BlobInfo, code: Code, what: &str) -> Check {
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a).await?;
    let (refused, wants) = offer(&mut ctl, &[info]).await?;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        wants.is_empty(),
        format!("{what}: not wanted"),
        format!("Wants {}", show_wants(&wants)),
    )?;
    ensure(
        refused == [(info.hash, code)],
        format!("BlobRefused {{ {code:?} }} before Wants ({what})"),
        format!("{refused:?}"),
    )
}

async fn over_max(ctx: &Ctx) -> Check {
    let (conn, mut ctl, w) = ctx.device(&ctx.ids.device_a).await?;
    crate::bye(&mut ctl, &conn).await;
    let p = events::photo(64, 48)?;
    let huge = BlobInfo {
        hash: p.hash.0,
        kind: BlobKind::Photo,
        size: w.limits.max_blob + 1,
    };
    named(ctx, &p).await?;
    declined(ctx, huge, Code::TooLarge, "a blob over max_blob").await
}

async fn unreferenced(ctx: &Ctx) -> Check {
    let info = BlobInfo {
        hash: BlobHash::of(&events::fresh_origin()).0,
        kind: BlobKind::Photo,
        size: 1000,
    };
    declined(ctx, info, Code::OutOfScope, "a blob no event names").await
}

async fn not_offered(ctx: &Ctx) -> Check {
    let p = named_photo(ctx).await?;
    let info = infos(&p)[0];
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a).await?;
    refused_and_stopped(
        &conn,
        &mut ctl,
        &header(&info, 0),
        &p.thumb,
        Code::Unexpected,
    )
    .await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

async fn header_mismatch(ctx: &Ctx) -> Check {
    let p = named_photo(ctx).await?;
    let info = infos(&p)[0];
    let (conn, mut ctl) = offered_one(ctx, info, 0).await?;
    let mut h = header(&info, 0);
    h.size += 1;
    client::send_blob(&conn, &h, &p.thumb, true)
        .await
        .map_err(|e| fail("to send a blob", e))?;
    let a = blob_answer(&mut ctl).await?;
    expect_refused(&a, Code::Unexpected, "BlobRefused { Unexpected }")?;
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

/// Sends `bytes` as the start of a blob stream on a device-a session (or, without a
/// session, on a bare connection) and returns the STOP_SENDING code.
async fn raw_blob_stream(ctx: &Ctx, bytes: &[u8], with_session: bool) -> Result<Option<u64>, Fail> {
    let (conn, ctl) = if with_session {
        let (conn, ctl, _) = ctx.device(&ctx.ids.device_a).await?;
        (conn, Some(ctl))
    } else {
        (ctx.connect(&ctx.ids.device_a).await?, None)
    };
    let mut s = conn
        .blob_stream()
        .await
        .map_err(|e| fail("a blob stream", e.to_string()))?;
    s.write_all(bytes)
        .await
        .map_err(|e| fail("to write on the blob stream", e.to_string()))?;
    let stop = client::stopped_within(&mut s, client::ANSWER).await;
    if let Some(mut ctl) = ctl {
        crate::bye(&mut ctl, &conn).await;
    } else {
        conn.close(0, "done");
    }
    Ok(stop)
}

async fn header_too_large(ctx: &Ctx) -> Check {
    let mut bytes = wire::frame_of(&vec![0x01; wire::MAX_BLOB_HEADER as usize + 1]);
    bytes.truncate(64);
    let stop = raw_blob_stream(ctx, &bytes, true).await?;
    ensure(
        stop == Some(8),
        "STOP_SENDING 8 (TooLarge) for a 1025-byte header",
        format!("{stop:?}"),
    )
}

async fn header_malformed(ctx: &Ctx) -> Check {
    let bytes = wire::frame_of(&[0x01, 0xde, 0xad]);
    let stop = raw_blob_stream(ctx, &bytes, true).await?;
    ensure(
        stop == Some(7),
        "STOP_SENDING 7 (Malformed)",
        format!("{stop:?}"),
    )
}

async fn before_session(ctx: &Ctx) -> Check {
    let h = BlobHeader {
        hash: BlobHash::of(b"before any session").0,
        kind: BlobKind::Photo,
        size: 18,
        offset: 0,
    };
    let mut bytes = wire::frame("BlobHeader", &h).map_err(|e| fail("a frame", e.to_string()))?;
    bytes.extend_from_slice(b"before any session");
    let stop = raw_blob_stream(ctx, &bytes, false).await?;
    ensure(
        stop == Some(9),
        "STOP_SENDING 9 (Unexpected)",
        format!("{stop:?}"),
    )
}

async fn offer_too_large(ctx: &Ctx) -> Check {
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a).await?;
    let blobs: Vec<_> = (0..=wire::MAX_OFFER as u32)
        .map(|i| BlobInfo {
            hash: BlobHash::of(&i.to_le_bytes()).0,
            kind: BlobKind::Photo,
            size: 1,
        })
        .collect();
    let r = ctl.ask(&Msg::Offer { blobs }).await;
    conn.close(0, "done");
    expect_error(&r, Code::TooLarge, "an offer of 1025 blobs")
}

async fn not_a_photo(ctx: &Ctx) -> Check {
    let text = format!(
        "GPS 31.2304 N 121.4737 E; not a photo at all {}\n",
        hex::encode(events::fresh_origin())
    )
    .repeat(40)
    .into_bytes();
    let fake = Photo {
        hash: BlobHash::of(&text),
        width: 1200,
        height: 900,
        bytes: text,
        thumb: Vec::new(),
        thumb_hash: BlobHash::of(b"no thumbnail"),
    };
    named(ctx, &fake).await?;
    let info = infos(&fake)[1];
    let (conn, mut ctl) = offered_one(ctx, info, 0).await?;
    client::send_blob(&conn, &header(&info, 0), &fake.bytes, true)
        .await
        .map_err(|e| fail("to send a blob", e))?;
    let a = blob_answer(&mut ctl).await?;
    crate::bye(&mut ctl, &conn).await;
    expect_refused(
        &a,
        Code::BlobMismatch,
        "BlobRefused { BlobMismatch } for bytes that are not a stored JPEG",
    )?;
    let (conn, mut ctl) = offered_one(ctx, info, 0).await?;
    crate::bye(&mut ctl, &conn).await;
    Ok(())
}

/// A photo of GRID_A held whole by the relay: device-a names it and uploads it.
pub(super) async fn stored_photo(ctx: &Ctx) -> Result<Photo, Fail> {
    let p = named_photo(ctx).await?;
    let info = infos(&p)[1];
    let (conn, mut ctl) = offered_one(ctx, info, 0).await?;
    client::send_blob(&conn, &header(&info, 0), &p.bytes, true)
        .await
        .map_err(|e| fail("to send a blob stream", e))?;
    let a = blob_answer(&mut ctl).await?;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        matches!(a, Msg::BlobStored { .. }),
        "BlobStored for the photo to fetch",
        a.describe(),
    )?;
    Ok(p)
}

async fn fetch_own_scope(ctx: &Ctx) -> Check {
    let p = stored_photo(ctx).await?;
    let size = p.bytes.len() as u64;
    // device-a2, of the same grid: from 0, then resuming from the middle.
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_a2).await?;
    for offset in [0, size / 2] {
        ctl.send(&Msg::Fetch {
            hash: p.hash.0,
            kind: BlobKind::Photo,
            offset,
        })
        .await
        .map_err(|e| fail("to send a Fetch", e))?;
        let got = client::receive_blob(&conn, client::ANSWER)
            .await
            .map_err(|e| fail(format!("a blob stream for Fetch {{ offset {offset} }}"), e))?;
        let want = BlobHeader {
            hash: p.hash.0,
            kind: BlobKind::Photo,
            size,
            offset,
        };
        ensure(
            got.header == want,
            format!("the header {want:?}"),
            format!("{:?}", got.header),
        )?;
        ensure(
            got.bytes == p.bytes[offset as usize..],
            format!("bytes {offset}..{size} of the photo, then FIN"),
            format!(
                "{} bytes, equal: {}",
                got.bytes.len(),
                got.bytes == p.bytes[offset as usize..]
            ),
        )?;
    }
    // The session goes on: a Pull is answered.
    let r = ctl.ask(&Msg::Pull { cursor: u64::MAX }).await;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        matches!(r, Ok(Msg::Down { .. })),
        "Down for a Pull after the fetches",
        describe(&r),
    )
}

async fn fetch_out_of_scope_refused(ctx: &Ctx) -> Check {
    let p = stored_photo(ctx).await?;
    // device-b, of another grid of the street, and a blob nobody names.
    let (conn, mut ctl, _) = ctx.device(&ctx.ids.device_b).await?;
    for (hash, what) in [
        (p.hash.0, "a photo of another grid"),
        (
            BlobHash::of(&events::fresh_origin()).0,
            "a blob no event names",
        ),
    ] {
        let r = ctl
            .ask(&Msg::Fetch {
                hash,
                kind: BlobKind::Photo,
                offset: 0,
            })
            .await;
        ensure(
            matches!(&r, Ok(Msg::BlobRefused { hash: h, code: Code::OutOfScope, .. }) if *h == hash),
            format!("BlobRefused {{ OutOfScope }} for {what}"),
            describe(&r),
        )?;
    }
    let quiet = client::no_stream_within(&conn, std::time::Duration::from_millis(500)).await;
    let r = ctl.ask(&Msg::Pull { cursor: u64::MAX }).await;
    crate::bye(&mut ctl, &conn).await;
    ensure(
        quiet,
        "no blob stream from the relay",
        "a stream was opened",
    )?;
    ensure(
        matches!(r, Ok(Msg::Down { .. })),
        "Down for a Pull after the refusals (the session goes on)",
        describe(&r),
    )
}
