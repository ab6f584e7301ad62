//! The cases, by group. Each is an `async fn(&Ctx) -> Check` registered with its id, the
//! spec section it checks, and where it may run.

mod authorisation;
mod blobs;
mod download;
mod durability;
mod follow;
mod frames;
mod handshake;
mod held;
mod sessions;
mod transport;
mod upload;

use crate::Case;

/// Registers a case.
macro_rules! case {
    ($id:literal, $section:literal, $needs:ident, $title:literal, $f:path) => {{
        fn run<'a>(ctx: &'a crate::Ctx) -> crate::CaseFuture<'a> {
            Box::pin($f(ctx))
        }
        crate::Case {
            id: $id,
            section: $section,
            title: $title,
            needs: crate::Needs::$needs,
            run,
        }
    }};
}
pub(crate) use case;

/// Every case, in run order: the transport first, the cases that restart the relay last.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(transport::cases());
    v.extend(handshake::cases());
    v.extend(frames::cases());
    v.extend(upload::cases());
    v.extend(authorisation::cases());
    v.extend(blobs::cases());
    v.extend(held::cases());
    v.extend(download::cases());
    v.extend(follow::cases());
    v.extend(sessions::cases());
    v.extend(durability::cases());
    v
}
