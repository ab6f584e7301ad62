//! The progress line of `gridsync sync`: drawn on standard error, only on a terminal.

use std::io::{IsTerminal, Write};

use gridsync_net::client::SyncProgress;
use gridsync_proto::client::Progress;
use gridsync_proto::BlobKind;

/// A one-line progress display (a no-op when standard error is not a terminal).
#[derive(Debug)]
pub struct Bar {
    enabled: bool,
    drawn: bool,
    blobs_done: u64,
    bytes_done: u64,
}

impl Bar {
    pub fn new(wanted: bool) -> Self {
        Self {
            enabled: wanted && std::io::stderr().is_terminal(),
            drawn: false,
            blobs_done: 0,
            bytes_done: 0,
        }
    }

    fn draw(&mut self, line: &str) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    pub fn update(&mut self, p: &SyncProgress) {
        match p {
            SyncProgress::Connected { addr } => self.draw(&format!("connected to {addr}")),
            SyncProgress::Session(Progress::Events { acked, .. }) => {
                self.draw(&format!("events up: {acked}"))
            }
            SyncProgress::Session(Progress::BlobStored { size, .. }) => {
                self.blobs_done += 1;
                self.bytes_done += size;
            }
            SyncProgress::BlobBytes { hash, sent, size } => {
                let width = 30usize;
                let filled = if *size == 0 {
                    width
                } else {
                    ((*sent as f64 / *size as f64) * width as f64) as usize
                };
                let hex = hash.to_hex();
                self.draw(&format!(
                    "photo {}… [{}{}] {:>4} / {} KiB  ({} done)",
                    &hex[..8],
                    "#".repeat(filled.min(width)),
                    " ".repeat(width - filled.min(width)),
                    sent / 1024,
                    size / 1024,
                    self.blobs_done
                ));
            }
            SyncProgress::Session(Progress::BlobStarted {
                kind, size, offset, ..
            }) => {
                let what = match kind {
                    BlobKind::Thumb => "thumbnail",
                    BlobKind::Photo => "photo",
                };
                if *offset > 0 {
                    self.draw(&format!(
                        "{what}: resuming at {} of {} KiB",
                        offset / 1024,
                        size / 1024
                    ));
                }
            }
            SyncProgress::Session(Progress::Downloaded { events }) => {
                self.draw(&format!("events down: {events}"))
            }
            SyncProgress::FetchBytes { hash, held, size } => {
                let hex = hash.to_hex();
                self.draw(&format!(
                    "fetching {}…: {} / {} KiB",
                    &hex[..8],
                    held / 1024,
                    size / 1024
                ));
            }
            SyncProgress::Session(Progress::FetchStarted { hash, offset, .. }) if *offset > 0 => {
                let hex = hash.to_hex();
                self.draw(&format!(
                    "fetching {}…: resuming at {} KiB",
                    &hex[..8],
                    offset / 1024
                ));
            }
            SyncProgress::Session(
                Progress::Welcomed { .. }
                | Progress::Received { .. }
                | Progress::Following
                | Progress::FetchStarted { .. }
                | Progress::Fetched { .. }
                | Progress::FetchRefused { .. }
                | Progress::FetchPartial { .. }
                | Progress::FetchDiscarded { .. },
            ) => {}
            SyncProgress::Session(Progress::ClockSkew {
                parent_ms,
                local_ms,
            }) => {
                // Always said, terminal or not: the user has to act on it.
                self.clear();
                eprintln!("{}", clock_warning(*parent_ms, *local_ms));
            }
        }
    }

    /// Erases the line before the summary is printed.
    pub fn clear(&mut self) {
        if std::mem::take(&mut self.drawn) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// The warning for a handheld whose clock is far from its relay's.
pub fn clock_warning(parent_ms: u64, local_ms: u64) -> String {
    let off = parent_ms.abs_diff(local_ms) / 1000;
    let (h, m, s) = (off / 3600, off / 60 % 60, off % 60);
    let amount = match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min"),
    };
    let way = if local_ms > parent_ms {
        "ahead of"
    } else {
        "behind"
    };
    let relay_time = chrono::DateTime::from_timestamp_millis(parent_ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{parent_ms} ms"));
    format!(
        "warning: this handheld's clock is {amount} {way} the relay's (the relay says {relay_time}); set the clock: reports stamped more than 10 minutes ahead are refused at every tier"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_warning_says_how_far_and_which_way() {
        let relay = 1_764_590_400_000; // 2025-12-01 12:00:00 UTC
        assert_eq!(
            clock_warning(relay, relay - 303_000),
            "warning: this handheld's clock is 5 min 3 s behind the relay's (the relay says 2025-12-01 12:00:00 UTC); set the clock: reports stamped more than 10 minutes ahead are refused at every tier"
        );
        assert!(clock_warning(relay, relay + 2 * 3_600_000 + 60_000)
            .starts_with("warning: this handheld's clock is 2 h 1 min ahead of the relay's"));
        assert!(clock_warning(relay, relay + 61_000).contains("is 1 min 1 s ahead of"));
    }
}
