//! gridsync-console: the platform console, the web app a relay serves to its operators.
//!
//! Skeleton: see issue 11. `map` and `evaluation` render page bodies from data; the server,
//! accounts, sessions and the other pages live beside them.

pub mod evaluation;
pub mod html;
pub mod map;
