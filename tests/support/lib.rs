//! Helpers shared by the cross-crate scenarios in `tests/`.
