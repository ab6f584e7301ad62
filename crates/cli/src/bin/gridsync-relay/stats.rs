//! `gridsync-relay stats`: loads every incident and its events from the store, hands them to
//! [`gridsync_relay::stats::compute`] and prints the result, as JSON or as a table.

use std::io::Write as _;

use anyhow::Result;
use gridsync_device::Device;
use gridsync_relay::stats::{self, GroupBy, Window};

use crate::shared::print_json;
use crate::shared::stats::table;

/// Prints the statistics of the incidents held in `node`'s store reported in `window`.
pub fn run(node: &Device, window: Window, by: Option<GroupBy>, json: bool) -> Result<()> {
    let store = node.store();
    let incidents = store
        .incidents()?
        .into_iter()
        .map(|state| {
            let events = store.events_of(&state.id)?;
            Ok((state, events))
        })
        .collect::<Result<Vec<_>>>()?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let stats = stats::compute(&incidents, now_ms, window, by);
    if json {
        print_json(&stats)?;
    } else {
        say_raw!("{}", table(&stats));
    }
    Ok(())
}
