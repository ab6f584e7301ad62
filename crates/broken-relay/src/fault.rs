//! Which fault this run commits: the environment variable `GRIDSYNC_BROKEN`.

use anyhow::{bail, Result};

/// The environment variable naming the fault.
pub const VAR: &str = "GRIDSYNC_BROKEN";

/// The one deliberate fault of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault: exactly the real relay.
    None,
    /// A batch is acknowledged before it is committed (it is committed at the next store
    /// call, so only a crash right after the `Ack` shows it).
    AckBeforeCommit,
    /// A device's events of another origin are accepted.
    ForgedOrigin,
    /// The control stream takes frames of any length.
    NoFrameLimit,
    /// A download page holds the whole district, not just the child's scope, and a child may
    /// fetch the district's photos (PROTOCOL.md §8.11).
    LeakScope,
    /// Events are taken whoever may write them (no authorisation, PROTOCOL.md §8.9).
    NoAuthorisation,
    /// A held `Follow` is answered only when its hold ends (no push, PROTOCOL.md §8.10).
    NoPush,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::None,
        Fault::AckBeforeCommit,
        Fault::ForgedOrigin,
        Fault::NoFrameLimit,
        Fault::LeakScope,
        Fault::NoAuthorisation,
        Fault::NoPush,
    ];

    /// The name `GRIDSYNC_BROKEN` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::AckBeforeCommit => "ack-before-commit",
            Fault::ForgedOrigin => "forged-origin",
            Fault::NoFrameLimit => "no-frame-limit",
            Fault::LeakScope => "leak-scope",
            Fault::NoAuthorisation => "no-authorisation",
            Fault::NoPush => "no-push",
        }
    }

    /// The fault named `value` (empty: none).
    pub fn parse(value: &str) -> Result<Self> {
        if value.is_empty() {
            return Ok(Fault::None);
        }
        match Self::ALL.into_iter().find(|f| f.name() == value) {
            Some(f) => Ok(f),
            None => {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                bail!(
                    "{VAR}={value:?} names no fault; expected one of {}",
                    names.join(", ")
                )
            }
        }
    }

    /// The fault `GRIDSYNC_BROKEN` names (unset: none).
    pub fn from_env() -> Result<Self> {
        match std::env::var(VAR) {
            Ok(v) => Self::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(Fault::None),
            Err(std::env::VarError::NotUnicode(_)) => bail!("{VAR} is not valid UTF-8"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_others_are_refused() {
        for f in Fault::ALL {
            assert_eq!(Fault::parse(f.name()).expect("parses"), f);
        }
        assert_eq!(Fault::parse("").expect("parses"), Fault::None);
        let e = Fault::parse("ack_before_commit").expect_err("refused");
        assert!(e.to_string().contains("ack-before-commit"), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
    }
}
