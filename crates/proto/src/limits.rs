//! Per-node resource limits a parent applies, sans-IO: how many connections one node may hold
//! at once, and how fast it may send events. The driver asks before it serves; time is passed
//! in, so the policy is tested without a clock.
//!
//! The event rate is a token bucket per node: `burst` events may come at once, and the bucket
//! refills at `events_per_sec`. A batch that finds the bucket short is not refused: the
//! parent waits [`Limiter::admit_events`]'s answer before it reads on, so the child is slowed
//! by QUIC flow control (its `Ack`s come later) and loses nothing, while every other node's
//! bucket is its own.

use std::collections::HashMap;

use gridsync_core::NodeId;

/// Most hashes one `HeldQuery` may ask about (PROTOCOL.md §8.12): a parent ends a session
/// whose query asks about more with `TooLarge`. 32 KiB of hashes, far within a frame.
pub const MAX_HELD_QUERY: usize = 1024;

/// The limits, per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    /// Connections one node may hold open at once.
    pub connections: usize,
    /// Events per second one node may send, sustained (0: no limit).
    pub events_per_sec: u32,
    /// Events one node may send at once, above the sustained rate.
    pub burst: u32,
}

impl Default for NodeLimits {
    /// Four connections (a relay's upstream link plus a reconnect in progress, or a handheld
    /// and its retry); 2,000 events/s with a burst of 10,000: a handheld back after days
    /// offline uploads its whole backlog at once, a flood of millions is slowed.
    fn default() -> Self {
        Self {
            connections: 4,
            events_per_sec: 2_000,
            burst: 10_000,
        }
    }
}

/// A node over its connection limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node {} already holds {held} connections here, the limit for one node", .node.short())]
pub struct TooManyConnections {
    pub node: NodeId,
    pub held: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens in thousandths of an event (a refill of a few ms is less than one event).
    milli: i128,
    at_ms: u64,
}

/// What a parent knows of each node's use: open connections and its event bucket.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: NodeLimits,
    connections: HashMap<NodeId, usize>,
    buckets: HashMap<NodeId, Bucket>,
    throttled: HashMap<NodeId, u64>,
}

impl Limiter {
    pub fn new(limits: NodeLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The limits applied.
    pub fn limits(&self) -> NodeLimits {
        self.limits
    }

    /// A connection of `node` begins; refused if it holds as many as it may. Each `Ok` must
    /// be matched by one [`Limiter::disconnected`].
    pub fn connected(&mut self, node: NodeId) -> Result<(), TooManyConnections> {
        let held = self.connections.entry(node).or_insert(0);
        if *held >= self.limits.connections {
            return Err(TooManyConnections { node, held: *held });
        }
        *held += 1;
        Ok(())
    }

    /// A connection of `node` ended.
    pub fn disconnected(&mut self, node: &NodeId) {
        if let Some(held) = self.connections.get_mut(node) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.connections.remove(node);
            }
        }
    }

    /// Connections `node` holds.
    pub fn connections_of(&self, node: &NodeId) -> usize {
        self.connections.get(node).copied().unwrap_or(0)
    }

    /// `node` sends `events` events at `now_ms`: how many milliseconds the parent waits before
    /// it handles them (0: at once). The events are taken from the bucket now (it may go
    /// below zero), so a node that keeps sending waits longer each time, at the sustained
    /// rate; a node that pauses refills up to its burst.
    pub fn admit_events(&mut self, node: NodeId, events: usize, now_ms: u64) -> u64 {
        let rate = i128::from(self.limits.events_per_sec);
        if rate == 0 || events == 0 {
            return 0;
        }
        let cap = i128::from(self.limits.burst.max(1)) * 1000;
        let bucket = self.buckets.entry(node).or_insert(Bucket {
            milli: cap,
            at_ms: now_ms,
        });
        let elapsed = i128::from(now_ms.saturating_sub(bucket.at_ms));
        bucket.milli = (bucket.milli + elapsed * rate).min(cap);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        bucket.milli -= events as i128 * 1000;
        if bucket.milli >= 0 {
            return 0;
        }
        *self.throttled.entry(node).or_insert(0) += 1;
        // The deficit, at `rate` thousandths of an event per millisecond, rounded up.
        let deficit = -bucket.milli;
        u64::try_from((deficit + rate - 1) / rate).unwrap_or(u64::MAX)
    }

    /// How many of `node`'s batches had to wait.
    pub fn throttled(&self, node: &NodeId) -> u64 {
        self.throttled.get(node).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId([1; 32]);
    const B: NodeId = NodeId([2; 32]);

    fn limiter(connections: usize, events_per_sec: u32, burst: u32) -> Limiter {
        Limiter::new(NodeLimits {
            connections,
            events_per_sec,
            burst,
        })
    }

    #[test]
    fn connections_are_counted_per_node_and_freed() {
        let mut l = limiter(2, 0, 0);
        assert_eq!(l.connected(A), Ok(()));
        assert_eq!(l.connected(A), Ok(()));
        let e = l.connected(A).expect_err("a third");
        assert_eq!(e, TooManyConnections { node: A, held: 2 });
        assert_eq!(
            e.to_string(),
            "node 01010101 already holds 2 connections here, the limit for one node"
        );
        // Another node is not affected.
        assert_eq!(l.connected(B), Ok(()));
        l.disconnected(&A);
        assert_eq!(l.connections_of(&A), 1);
        assert_eq!(l.connected(A), Ok(()));
        l.disconnected(&A);
        l.disconnected(&A);
        l.disconnected(&A);
        assert_eq!(l.connections_of(&A), 0, "never below zero");
    }

    #[test]
    fn a_burst_passes_then_the_sustained_rate_applies() {
        // 100 events/s, burst 200.
        let mut l = limiter(4, 100, 200);
        assert_eq!(l.admit_events(A, 200, 0), 0, "the burst at once");
        // Ten more need 100 ms at 100/s.
        assert_eq!(l.admit_events(A, 10, 0), 100);
        // Sent again right away: they queue behind the first ten.
        assert_eq!(l.admit_events(A, 10, 0), 200);
        // After the wait the debt is paid: 300 ms later 10 events are covered again.
        assert_eq!(l.admit_events(A, 10, 500), 0);
        // B has its own bucket.
        assert_eq!(l.admit_events(B, 200, 0), 0);
        assert_eq!((l.throttled(&A), l.throttled(&B)), (2, 0));
    }

    #[test]
    fn a_paused_node_refills_only_up_to_its_burst() {
        let mut l = limiter(4, 100, 50);
        assert_eq!(l.admit_events(A, 50, 0), 0);
        // An hour later, still only the burst.
        assert_eq!(l.admit_events(A, 60, 3_600_000), 100);
    }

    #[test]
    fn a_flood_waits_in_proportion_and_no_limit_means_none() {
        let mut l = limiter(4, 1_000, 1_000);
        let mut waited = 0;
        for i in 0..100u64 {
            waited = l.admit_events(A, 512, i);
        }
        // 51,200 events at 1,000/s after a burst of 1,000: about 50 s behind.
        assert!((50_000..50_300).contains(&waited), "{waited}");
        let mut free = limiter(4, 0, 0);
        assert_eq!(free.admit_events(A, 1_000_000, 0), 0);
        // A clock that steps back does not mint tokens.
        let mut l = limiter(4, 100, 100);
        assert_eq!(l.admit_events(A, 100, 10_000), 0);
        assert_eq!(l.admit_events(A, 10, 0), 100);
    }
}
