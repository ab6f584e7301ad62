//! The files of `fixtures/codec/`, compiled in; shared by the golden and the fuzz tests.

macro_rules! golden {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/codec/", $name)))),+]
    };
}

/// Every vector file, compiled in.
pub const GOLDEN: &[(&str, &[u8])] = golden!(
    "event-reported.bin",
    "event-edited-description.bin",
    "event-edited-category.bin",
    "event-edited-location.bin",
    "event-edited-severity.bin",
    "event-photo-added.bin",
    "event-photo-removed.bin",
    "event-status-changed.bin",
    "event-escalated.bin",
    "event-assigned.bin",
    "event-commented.bin",
    "event-evaluated.bin",
    "event-signed.bin",
    "event-staff-set.bin",
    "event-staff-removed.bin",
    "state-small.bin",
    "README.md",
);
