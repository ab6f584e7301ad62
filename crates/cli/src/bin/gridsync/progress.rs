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
            SyncProgress::Session(Progress::Welcomed { .. }) => {}
        }
    }

    /// Erases the line before the summary is printed.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
