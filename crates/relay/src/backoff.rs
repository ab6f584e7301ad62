//! The upstream loop's retry policy: how long to wait before the next try ([`Backoff`]), what
//! of a failure is worth a warning rather than a debug line ([`FailureLog`]), and a sleep that
//! gives way to shutdown ([`stopped_during`]).
//!
//! The policy (`proto/PROTOCOL.md` §11, "reconnect backoff"): after a failed connect or a failed
//! session wait `min`, then twice as long after each further failure, up to `max`; a refusal
//! that retrying cannot cure waits `max` at once; only a session that went through starts again
//! from `min` (a successful connect proves nothing: a refusal comes after one).

use std::mem::Discriminant;
use std::time::Duration;

use gridsync_net::server::stopped;
use gridsync_net::NetError;
use gridsync_proto::client::SessionError;
use gridsync_proto::ErrorCode;
use tokio::sync::watch;

/// The wait before the next try, doubling after each failure up to a longest wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits `min` after the first failure, never more than `max` (a `min` above `max` is `max`).
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let min = min.min(max);
        Self {
            min,
            max,
            next: min,
        }
    }

    /// A try failed: the wait before the next one. The wait after it doubles, up to `max`.
    pub(crate) fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// A refusal that retrying cannot cure: wait the longest, and as long after that.
    pub(crate) fn refused_permanently(&mut self) -> Duration {
        self.next = self.max;
        self.failed()
    }

    /// A session went through: the next failure waits `min` again.
    pub(crate) fn succeeded(&mut self) {
        self.next = self.min;
    }
}

/// What a failed session was, for telling a repeated failure from a new one in the log: which
/// [`NetError`] it was and, for a session error, which [`SessionError`] and its [`ErrorCode`].
/// Not its text, which carries details (a message, a byte count) that may differ between two
/// tries failing for the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionFailure {
    error: Discriminant<NetError>,
    session: Option<(Discriminant<SessionError>, ErrorCode)>,
}

impl SessionFailure {
    pub(crate) fn of(error: &NetError) -> Self {
        let session = match error {
            NetError::Session(s) => Some((std::mem::discriminant(s), s.code())),
            _ => None,
        };
        Self {
            error: std::mem::discriminant(error),
            session,
        }
    }

    /// Whether retrying cannot cure it (not enrolled, out of scope, a clock too far ahead...):
    /// the session ended with a code that is not [`ErrorCode::is_transient`].
    pub(crate) fn permanent(&self) -> bool {
        self.session.is_some_and(|(_, code)| !code.is_transient())
    }
}

/// Which failures are news: the first failed connect of an outage, and a failed session unlike
/// the one before. Decides only whether a failure is logged as a warning or at debug level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FailureLog {
    down_reported: bool,
    last_failure: Option<SessionFailure>,
}

impl FailureLog {
    /// A connect failed: whether it is the first since the last successful connect.
    pub(crate) fn unreachable(&mut self) -> bool {
        !std::mem::replace(&mut self.down_reported, true)
    }

    /// A connect went through: the next failed connect is news again.
    pub(crate) fn connected(&mut self) {
        self.down_reported = false;
    }

    /// A session failed: whether it failed unlike the last failed session since one went
    /// through (failed connects in between do not count).
    pub(crate) fn session_failed(&mut self, failure: SessionFailure) -> bool {
        let new = self.last_failure != Some(failure);
        self.last_failure = Some(failure);
        new
    }

    /// A session went through: the next failed session is news, whatever it is.
    pub(crate) fn session_succeeded(&mut self) {
        self.last_failure = None;
    }
}

/// Sleeps for `wait` unless shutdown comes first: whether it did.
pub(crate) async fn stopped_during(wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stopped(shutdown) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn waits(backoff: &mut Backoff, n: usize) -> Vec<Duration> {
        (0..n).map(|_| backoff.failed()).collect()
    }

    #[test]
    fn waits_double_from_min_up_to_max() {
        let mut backoff = Backoff::new(MIN, MAX);
        assert_eq!(
            waits(&mut backoff, 10),
            [250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000].map(ms)
        );
    }

    #[test]
    fn a_permanent_refusal_waits_max_at_once_and_after() {
        let mut backoff = Backoff::new(MIN, MAX);
        assert_eq!(backoff.failed(), MIN);
        assert_eq!(backoff.refused_permanently(), MAX);
        assert_eq!(backoff.failed(), MAX);
        assert_eq!(backoff.refused_permanently(), MAX);
        // Even as the very first failure.
        assert_eq!(Backoff::new(MIN, MAX).refused_permanently(), MAX);
    }

    #[test]
    fn success_starts_again_from_min() {
        let mut backoff = Backoff::new(MIN, MAX);
        waits(&mut backoff, 5);
        backoff.succeeded();
        assert_eq!(waits(&mut backoff, 3), [250, 500, 1_000].map(ms));
        backoff.refused_permanently();
        backoff.succeeded();
        assert_eq!(backoff.failed(), MIN);
        // Success before any failure changes nothing.
        let mut fresh = Backoff::new(MIN, MAX);
        fresh.succeeded();
        assert_eq!(fresh, Backoff::new(MIN, MAX));
    }

    #[test]
    fn odd_bounds_stay_within_max() {
        assert_eq!(waits(&mut Backoff::new(ms(40), ms(30)), 2), [ms(30); 2]);
        let mut huge = Backoff::new(Duration::MAX / 2 + ms(1), Duration::MAX);
        assert_eq!(waits(&mut huge, 2)[1], Duration::MAX);
        assert_eq!(
            waits(&mut Backoff::new(ms(7), ms(100)), 6),
            [7, 14, 28, 56, 100, 100].map(ms)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_the_waits_takes_their_sum() {
        let (_tx, mut rx) = watch::channel(false);
        let mut backoff = Backoff::new(MIN, MAX);
        let start = Instant::now();
        let mut total = Duration::ZERO;
        for i in 0..12 {
            let wait = if i == 9 {
                backoff.succeeded();
                backoff.failed()
            } else if i == 5 {
                backoff.refused_permanently()
            } else {
                backoff.failed()
            };
            assert!(!stopped_during(wait, &mut rx).await);
            total += wait;
            assert_eq!(start.elapsed(), total, "after wait {i}");
        }
        // 250 + 500 + 1000 + 2000 + 4000, then 30 s (permanent), 30, 30, 30, reset: 250, 500, 1000.
        assert_eq!(total, ms(7_750 + 4 * 30_000 + 1_750));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_wait_short() {
        let (tx, mut rx) = watch::channel(false);
        let start = Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(ms(1_200)).await;
            let _ = tx.send(true);
            tx
        });
        assert!(stopped_during(MAX, &mut rx).await);
        assert_eq!(start.elapsed(), ms(1_200));
        // Once stopped, a wait ends at once; a dropped sender counts as shutdown too.
        assert!(stopped_during(MAX, &mut rx).await);
        assert_eq!(start.elapsed(), ms(1_200));
        drop(stopper.await);
        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        assert!(stopped_during(MAX, &mut rx).await);
        assert_eq!(start.elapsed(), ms(1_200));
    }

    fn refused(code: ErrorCode, message: &str) -> NetError {
        NetError::Session(SessionError::Refused {
            code,
            message: message.to_owned(),
        })
    }

    #[test]
    fn failures_are_told_apart_by_kind_and_code_not_text() {
        let not_enrolled = SessionFailure::of(&refused(ErrorCode::NotEnrolled, "not enrolled"));
        assert_eq!(
            not_enrolled,
            SessionFailure::of(&refused(
                ErrorCode::NotEnrolled,
                "node 4f2a… is not enrolled"
            ))
        );
        assert_ne!(
            not_enrolled,
            SessionFailure::of(&refused(ErrorCode::OutOfScope, "not enrolled"))
        );
        let aborted = NetError::Session(SessionError::Aborted {
            code: ErrorCode::NotEnrolled,
            message: "not enrolled".to_owned(),
        });
        assert_ne!(not_enrolled, SessionFailure::of(&aborted));
        let lost = SessionFailure::of(&NetError::Connection(quinn::ConnectionError::TimedOut));
        assert_eq!(
            lost,
            SessionFailure::of(&NetError::Connection(quinn::ConnectionError::Reset))
        );
        assert_ne!(lost, SessionFailure::of(&NetError::NoCertificate));
    }

    #[test]
    fn only_non_transient_session_codes_are_permanent() {
        assert!(SessionFailure::of(&refused(ErrorCode::NotEnrolled, "")).permanent());
        assert!(
            SessionFailure::of(&NetError::Session(SessionError::OutOfScope(String::new())))
                .permanent()
        );
        for code in [
            ErrorCode::Storage,
            ErrorCode::Timeout,
            ErrorCode::ShuttingDown,
        ] {
            assert!(
                !SessionFailure::of(&refused(code, "")).permanent(),
                "{code:?}"
            );
        }
        assert!(!SessionFailure::of(&NetError::Session(SessionError::Timeout(5_000))).permanent());
        assert!(
            !SessionFailure::of(&NetError::Connection(quinn::ConnectionError::TimedOut))
                .permanent()
        );
        assert!(!SessionFailure::of(&NetError::NoCertificate).permanent());
    }

    #[test]
    fn an_outage_is_reported_once_until_a_connect_goes_through() {
        let mut log = FailureLog::default();
        assert!(log.unreachable());
        assert!(!log.unreachable());
        assert!(!log.unreachable());
        log.connected();
        assert!(log.unreachable());
        // A session going through does not end an outage report: only a connect does.
        log.session_succeeded();
        assert!(!log.unreachable());
    }

    #[test]
    fn the_same_session_failure_is_news_once_until_a_session_goes_through() {
        let a = SessionFailure::of(&refused(ErrorCode::NotEnrolled, "not enrolled"));
        let b = SessionFailure::of(&refused(ErrorCode::Timeout, "slow"));
        let mut log = FailureLog::default();
        assert!(log.session_failed(a));
        assert!(!log.session_failed(a));
        // Connects, failed or not, do not make it news again.
        log.unreachable();
        log.connected();
        assert!(!log.session_failed(a));
        // Another failure is news, and then the first one is news again.
        assert!(log.session_failed(b));
        assert!(log.session_failed(a));
        log.session_succeeded();
        assert!(log.session_failed(a));
        assert!(!log.session_failed(a));
    }
}
