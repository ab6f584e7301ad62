//! The closed loop of grid management, as allowed status transitions.
//!
//! | from          | to                                        |
//! |---------------|-------------------------------------------|
//! | `reported`    | `accepted`, `rejected`                    |
//! | `accepted`    | `dispatched`, `in_progress`, `resolved`, `rejected` |
//! | `rejected`    | `accepted` (reconsidered), `closed`       |
//! | `dispatched`  | `in_progress`, `resolved`, `accepted` (sent back) |
//! | `in_progress` | `resolved`, `accepted` (sent back)        |
//! | `resolved`    | `verified`, `in_progress` (verification failed) |
//! | `verified`    | `closed`                                  |
//! | `closed`      | `accepted` (reopened)                     |
//!
//! `accepted -> in_progress | resolved` is the community closing a case itself, as most cases
//! are closed. Evaluations are allowed once an incident is `resolved`, `verified` or `closed`.
//!
//! These rules bind local commands only. Merge applies whatever status events arrive, so two
//! nodes that each made an allowed move concurrently still converge.

use crate::event::{PhotoKind, Status};

/// The statuses a local command may move an incident in `from` to.
pub fn allowed(from: Status) -> &'static [Status] {
    use Status::*;
    match from {
        Reported => &[Accepted, Rejected],
        Accepted => &[Dispatched, InProgress, Resolved, Rejected],
        Rejected => &[Accepted, Closed],
        Dispatched => &[InProgress, Resolved, Accepted],
        InProgress => &[Resolved, Accepted],
        Resolved => &[Verified, InProgress],
        Verified => &[Closed],
        Closed => &[Accepted],
    }
}

/// Whether an evaluation may be recorded in `status`.
pub fn can_evaluate(status: Status) -> bool {
    matches!(status, Status::Resolved | Status::Verified | Status::Closed)
}

/// The kind a photo attached in `status` gets when the user names none: once handling has
/// started (`in_progress`, `resolved`, `verified`, `closed`) photos show the result (`after`),
/// before that the problem (`before`).
pub fn default_photo_kind(status: Status) -> PhotoKind {
    match status {
        Status::InProgress | Status::Resolved | Status::Verified | Status::Closed => {
            PhotoKind::After
        }
        _ => PhotoKind::Before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_only_after_resolved_and_closed_only_reopens_to_accepted() {
        for s in Status::ALL {
            let may_verify = allowed(*s).contains(&Status::Verified);
            assert_eq!(may_verify, *s == Status::Resolved, "{s}");
        }
        assert_eq!(allowed(Status::Closed), &[Status::Accepted]);
    }

    #[test]
    fn the_whole_loop_is_reachable() {
        let path = [
            Status::Reported,
            Status::Accepted,
            Status::Dispatched,
            Status::InProgress,
            Status::Resolved,
            Status::Verified,
            Status::Closed,
            Status::Accepted,
        ];
        for w in path.windows(2) {
            assert!(allowed(w[0]).contains(&w[1]), "{} -> {}", w[0], w[1]);
        }
    }

    #[test]
    fn photos_show_the_result_once_handling_has_started() {
        use crate::event::PhotoKind;
        assert_eq!(default_photo_kind(Status::Accepted), PhotoKind::Before);
        assert_eq!(default_photo_kind(Status::Dispatched), PhotoKind::Before);
        assert_eq!(default_photo_kind(Status::InProgress), PhotoKind::After);
        assert_eq!(default_photo_kind(Status::Closed), PhotoKind::After);
    }
}
