//! gridsync-net (being written).
