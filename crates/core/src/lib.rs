//! gridsync-core: the pure heart of gridsync.
//!
//! An append-only log of photo-backed incident reports ([`event`]), hybrid logical clocks
//! ([`hlc`]), the CRDT merge that folds events into incident state whatever order they arrive
//! in ([`merge`]), the workflow rules local commands obey ([`workflow`], [`command`]), the
//! bounds every received event must keep ([`rules`]), the grid roster kept as events in the
//! same log ([`roster`]), the origin's signature on every event ([`sign`]), the incident JSON
//! contract ([`view`]) and the one codec for every encoded byte ([`codec`]).
//!
//! **Invariant:** this crate performs no I/O. It reads no clock, no random source, no file and
//! no socket: time and randomness are passed in.
//!
//! ```
//! use gridsync_core::{command, Category, IncidentId, IncidentState, NodeId, Report, Severity, Writer};
//!
//! let grid = "110101/002/014/03".parse().unwrap();
//! let mut writer = Writer::signing(&[1; 32], "patrol-7", 1, Default::default());
//! let id = IncidentId::new_v7(1_764_000_000_000, [0; 10]);
//! let report = Report {
//!     category: Category::from_catalogue("garbage").unwrap(),
//!     description: "Bags piled by the east gate".into(),
//!     location: None,
//!     observed_at: None,
//!     severity: Severity::Normal,
//! };
//! let mut state = IncidentState::new(id);
//! for payload in command::plan_report(report, vec![]).unwrap() {
//!     let event = writer.write(id, &grid, payload, 1_764_000_000_000);
//!     assert!(event.verify().is_ok());
//!     state.apply(&event);
//! }
//! assert_eq!(state.view().status, "reported");
//! ```

pub mod blob;
pub mod codec;
pub mod command;
pub mod event;
pub mod hlc;
pub mod ids;
pub mod merge;
pub mod roster;
pub mod rules;
pub mod sign;
pub mod view;
pub mod workflow;

pub use blob::BlobHash;
pub use command::{Change, CommandError, Writer};
pub use event::{
    Category, Event, FieldValue, Force, Level, Location, LocationSource, Millis, Payload,
    PhotoKind, PhotoMeta, Report, Severity, Signature, StaffEntry, Stamp, Status, Verdict,
};
pub use hlc::{Clock, ClockError, Hlc};
pub use ids::{EventId, GridCode, IncidentId, NodeId, Scope};
pub use merge::IncidentState;
pub use roster::{Assignee, AssigneeError, Roster};
pub use rules::{check_rules, is_decision, RuleError};
pub use sign::{
    sign_message, signing_bytes, verify_batch, verify_message, BatchError, SignError,
    SignatureError,
};
pub use view::IncidentView;
