//! Events and photos the cases send: real ones in the core model (EVENTS.md), encoded by the
//! core codec, and their hostile variants.

use gridsync_core::event::{Category, FieldValue, Payload, PhotoKind, PhotoMeta, Report, Severity};
use gridsync_core::{codec, BlobHash, Event, EventId, GridCode, Hlc, IncidentId, NodeId};

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{fail, Fail};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The harness only needs distinct ids; a failing RNG falls back to the clock.
    if getrandom::getrandom(&mut b).is_err() {
        let t = now_ms().to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % 8] ^ (i as u8);
        }
    }
    b
}

/// The secret keys the harness holds, by node id: its identities' (registered as they are
/// read, [`register`]) and the fresh origins it makes. Events of these origins are signed as
/// they are encoded ([`encode`]), so every event the harness sends carries its origin's
/// signature (§6.6) unless a case sends it unsigned on purpose ([`encode_unsigned`]).
static KEYS: Mutex<BTreeMap<[u8; 32], [u8; 32]>> = Mutex::new(BTreeMap::new());

/// Remembers `seed` as the secret key of its node id (returned).
pub fn register(seed: &[u8; 32]) -> [u8; 32] {
    let id = crate::identity::public_key(seed);
    if let Ok(mut keys) = KEYS.lock() {
        keys.insert(id, *seed);
    }
    id
}

fn key_of(origin: &[u8; 32]) -> Option<[u8; 32]> {
    KEYS.lock().ok().and_then(|k| k.get(origin).copied())
}

/// A fresh origin: the node id of a new key pair nobody holds events of (the harness keeps
/// the secret, so its events are signed).
pub fn fresh_origin() -> [u8; 32] {
    let id = register(&random());
    if let Ok(mut fresh) = FRESH.lock() {
        fresh.push(id);
    }
    id
}

/// Every fresh origin made so far, in the order made (the street identity vouches for them
/// with node records before it forwards their events, §8.9).
static FRESH: Mutex<Vec<[u8; 32]>> = Mutex::new(Vec::new());

/// The fresh origins made so far.
pub fn fresh_origins() -> Vec<[u8; 32]> {
    FRESH.lock().map(|f| f.clone()).unwrap_or_default()
}

/// A fresh key pair the harness does not register: (secret, node id). Events encoded for
/// its node id stay unsigned unless signed by hand.
pub fn unregistered_key() -> ([u8; 32], [u8; 32]) {
    let seed = random();
    (seed, crate::identity::public_key(&seed))
}

/// A new incident id (UUIDv7).
pub fn incident() -> IncidentId {
    IncidentId::new_v7(now_ms(), random())
}

/// A grid code from a text known to be valid.
pub fn grid(text: &str) -> Result<GridCode, Fail> {
    text.parse()
        .map_err(|e| fail(format!("a valid grid code {text}"), format!("{e}")))
}

/// A `Reported` event of `origin`'s `seq` about a new incident in `grid`.
pub fn report(origin: [u8; 32], seq: u64, grid_code: &str) -> Result<Event, Fail> {
    report_at(origin, seq, grid_code, now_ms())
}

/// The same, at a chosen wall-clock time.
pub fn report_at(origin: [u8; 32], seq: u64, grid_code: &str, wall_ms: u64) -> Result<Event, Fail> {
    Ok(sign_if_held(Event {
        origin: NodeId(origin),
        seq,
        hlc: Hlc::new(wall_ms, 0),
        incident: incident(),
        grid: grid(grid_code)?,
        author: "conformance".into(),
        payload: Payload::Reported(Report {
            category: category("garbage")?,
            description: format!("conformance report {seq}"),
            location: None,
            observed_at: None,
            severity: Severity::Normal,
        }),
        signature: None,
    }))
}

/// A category code known to be valid.
pub fn category(code: &str) -> Result<Category, Fail> {
    Category::try_from(code.to_owned()).map_err(|e| fail("a valid category", e.to_string()))
}

/// An edit of the description of `about`'s incident that replaces `pred`.
pub fn edit_description(
    origin: [u8; 32],
    seq: u64,
    about: &Event,
    text: &str,
    pred: Vec<EventId>,
) -> Event {
    follow_up(
        origin,
        seq,
        about,
        Payload::Edited {
            value: FieldValue::Description(text.to_owned()),
            pred,
        },
    )
}

/// A decision (`StatusChanged` to `closed`) by `origin` about `about`'s incident.
pub fn close(origin: [u8; 32], seq: u64, about: &Event) -> Event {
    follow_up(
        origin,
        seq,
        about,
        Payload::StatusChanged {
            status: gridsync_core::Status::Closed,
            pred: vec![],
        },
    )
}

/// A key the harness holds (its events are signed) but that no record vouches for: not a
/// fresh origin, so the street never sends a record about it by itself.
pub fn unvouched_origin() -> [u8; 32] {
    register(&random())
}

/// An event of `origin` about `about`'s incident, written now.
fn follow_up(origin: [u8; 32], seq: u64, about: &Event, payload: Payload) -> Event {
    sign_if_held(Event {
        origin: NodeId(origin),
        seq,
        hlc: Hlc::new(now_ms(), 0),
        incident: about.incident,
        grid: about.grid.clone(),
        author: "conformance".into(),
        payload,
        signature: None,
    })
}

/// A `PhotoAdded` naming `photo` on `about`'s incident.
pub fn photo_added(origin: [u8; 32], seq: u64, about: &Event, photo: &Photo) -> Event {
    follow_up(
        origin,
        seq,
        about,
        Payload::PhotoAdded(PhotoMeta {
            hash: photo.hash,
            thumb: photo.thumb_hash,
            kind: PhotoKind::Before,
            width: photo.width,
            height: photo.height,
            bytes: photo.bytes.len() as u64,
            captured_at: None,
        }),
    )
}

/// `e`, signed by its origin when the harness holds the origin's key (as built: the events
/// the constructors here return are signed, like a real node's).
pub fn sign_if_held(mut e: Event) -> Event {
    if let Some(key) = key_of(&e.origin.0) {
        // The key is the origin's; only an event over the codec limit fails to sign.
        let _ = e.sign(&key);
    }
    e
}

/// The core codec encoding of an event (§6.6), signed again by its origin when the harness
/// holds the origin's key and the event's signature does not verify (a case changed it after
/// it was built: the hostile variant is about something else). [`encode_unsigned`] sends an
/// event exactly as it is.
pub fn encode(e: &Event) -> Result<Vec<u8>, Fail> {
    match key_of(&e.origin.0) {
        Some(key) if e.verify().is_err() => {
            let mut signed = e.clone();
            signed
                .sign(&key)
                .map_err(|err| fail("a signable event", err.to_string()))?;
            encode_unsigned(&signed)
        }
        _ => encode_unsigned(e),
    }
}

/// The core codec encoding of an event exactly as it is (no signature added).
pub fn encode_unsigned(e: &Event) -> Result<Vec<u8>, Fail> {
    codec::encode_event(e).map_err(|err| fail("an encodable event", err.to_string()))
}

/// Encodes several events.
pub fn encode_all(es: &[Event]) -> Result<Vec<Vec<u8>>, Fail> {
    es.iter().map(encode).collect()
}

/// A photo and its thumbnail as a device stores them: made by the photo pipeline from a
/// picture no one has made before, so its blobs are new to any relay.
#[derive(Debug, Clone)]
pub struct Photo {
    pub bytes: Vec<u8>,
    pub hash: BlobHash,
    pub width: u32,
    pub height: u32,
    pub thumb: Vec<u8>,
    pub thumb_hash: BlobHash,
}

/// A new photo of `width` x `height` pixels (noise over a gradient: it compresses badly, so
/// a 1200 x 900 photo is several hundred KiB, enough for resumed uploads).
pub fn photo(width: u32, height: u32) -> Result<Photo, Fail> {
    let seed: [u8; 16] = random();
    let mut state = u64::from_le_bytes([
        seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
    ]) | 1;
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = state.to_le_bytes();
        image::Rgb([
            (n[0] / 2).wrapping_add((x * 127 / width.max(1)) as u8),
            (n[1] / 2).wrapping_add((y * 127 / height.max(1)) as u8),
            (n[2] / 2).wrapping_add(seed[8]),
        ])
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| fail("a PNG of the test picture", e.to_string()))?;
    let processed = gridsync_media::process(&png, &gridsync_media::Limits::default())
        .map_err(|e| fail("a photo from the photo pipeline", e.to_string()))?;
    Ok(Photo {
        hash: processed.photo.hash,
        width: processed.photo.width,
        height: processed.photo.height,
        bytes: processed.photo.bytes,
        thumb_hash: processed.thumb.hash,
        thumb: processed.thumb.bytes,
    })
}
