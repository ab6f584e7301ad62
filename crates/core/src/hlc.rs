//! Hybrid logical clocks.
//!
//! A timestamp is a physical time in Unix milliseconds plus a logical counter. It never goes
//! backwards on a node, advances past every timestamp the node has seen, and stays close to
//! physical time. The current time is always passed in: core never reads a clock.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Default bound on how far ahead of the receiver's clock an event's physical time may be.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 10 * 60 * 1000;

/// A hybrid logical clock timestamp. Ordered by `(wall_ms, logical)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hlc {
    /// Physical component: Unix time in milliseconds.
    pub wall_ms: u64,
    /// Logical component: orders events within one millisecond.
    pub logical: u32,
}

impl Hlc {
    /// A timestamp.
    pub const fn new(wall_ms: u64, logical: u32) -> Self {
        Self { wall_ms, logical }
    }

    /// The next timestamp after `self`, without regard to physical time.
    fn successor(self) -> Self {
        match self.logical.checked_add(1) {
            Some(logical) => Self::new(self.wall_ms, logical),
            None => Self::new(self.wall_ms.saturating_add(1), 0),
        }
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.logical)
    }
}

/// A remote timestamp that the receiver refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The remote physical time is too far ahead of ours: the sender's clock is probably wrong,
    /// and accepting it would let that node win every last-writer-wins race.
    #[error("timestamp {remote_ms} ms is {ahead_ms} ms ahead of this clock (limit {max_drift_ms} ms): the sender's clock is wrong")]
    TooFarAhead {
        remote_ms: u64,
        ahead_ms: u64,
        max_drift_ms: u64,
    },
}

/// Refuses `remote` if its physical time is more than `max_drift_ms` ahead of `now_ms`: the
/// bound a receiver puts on a sender's clock, without a clock of its own (see
/// [`Clock::check`]).
pub fn check_ahead(remote: Hlc, now_ms: u64, max_drift_ms: u64) -> Result<(), ClockError> {
    let ahead_ms = remote.wall_ms.saturating_sub(now_ms);
    if ahead_ms > max_drift_ms {
        return Err(ClockError::TooFarAhead {
            remote_ms: remote.wall_ms,
            ahead_ms,
            max_drift_ms,
        });
    }
    Ok(())
}

/// A node's hybrid logical clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    last: Hlc,
    max_drift_ms: u64,
}

impl Clock {
    /// A clock that has issued or seen everything up to `last` (persist [`Clock::last`] and
    /// pass it back here after a restart so timestamps never go backwards).
    pub fn new(last: Hlc) -> Self {
        Self {
            last,
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
        }
    }

    /// Sets the bound used by [`Clock::check`] and [`Clock::observe`].
    pub fn with_max_drift_ms(mut self, max_drift_ms: u64) -> Self {
        self.max_drift_ms = max_drift_ms;
        self
    }

    /// The latest timestamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A timestamp for a local event at physical time `now_ms`: greater than anything issued or
    /// observed before.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        self.last = if now_ms > self.last.wall_ms {
            Hlc::new(now_ms, 0)
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Refuses `remote` if its physical time is more than the drift bound ahead of `now_ms`.
    pub fn check(&self, remote: Hlc, now_ms: u64) -> Result<(), ClockError> {
        check_ahead(remote, now_ms, self.max_drift_ms)
    }

    /// Takes in a timestamp received from another node, after [`Clock::check`]ing it, so that
    /// every later local timestamp is greater.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) -> Result<(), ClockError> {
        self.check(remote, now_ms)?;
        self.last = self.last.max(remote);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_follows_physical_time_and_never_goes_back() {
        let mut c = Clock::new(Hlc::default());
        assert_eq!(c.tick(100), Hlc::new(100, 0));
        assert_eq!(c.tick(100), Hlc::new(100, 1));
        // The wall clock stepped back: the logical counter keeps order.
        assert_eq!(c.tick(90), Hlc::new(100, 2));
        assert_eq!(c.tick(150), Hlc::new(150, 0));
    }

    #[test]
    fn observe_moves_past_remote_time() {
        let mut c = Clock::new(Hlc::new(100, 0));
        c.observe(Hlc::new(200, 5), 150).unwrap();
        assert_eq!(c.tick(150), Hlc::new(200, 6));
    }

    #[test]
    fn a_clock_far_ahead_is_refused_with_the_figures() {
        let mut c = Clock::new(Hlc::default());
        let now = 1_000_000_000;
        let remote = Hlc::new(now + DEFAULT_MAX_DRIFT_MS + 1, 0);
        assert_eq!(
            c.observe(remote, now),
            Err(ClockError::TooFarAhead {
                remote_ms: remote.wall_ms,
                ahead_ms: DEFAULT_MAX_DRIFT_MS + 1,
                max_drift_ms: DEFAULT_MAX_DRIFT_MS
            })
        );
        // Refusal changes nothing.
        assert_eq!(c.last(), Hlc::default());
        assert!(c
            .observe(Hlc::new(now + DEFAULT_MAX_DRIFT_MS, 0), now)
            .is_ok());
    }

    #[test]
    fn logical_overflow_carries_into_wall_time() {
        let mut c = Clock::new(Hlc::new(5, u32::MAX));
        assert_eq!(c.tick(0), Hlc::new(6, 0));
    }
}
