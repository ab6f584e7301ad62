//! Results: one line per case, `N passed, M failed` last, and the same as a JSON report.

use serde::Serialize;

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub id: String,
    pub section: String,
    pub title: String,
    pub status: Status,
    /// For a failure: what the spec wanted.
    pub expected: String,
    /// For a failure: what came back; for a skip: why it did not run.
    pub got: String,
    pub ms: u64,
}

impl Outcome {
    /// The case's line in the text output.
    pub fn line(&self) -> String {
        match self.status {
            Status::Pass => format!("pass  {:<34} {}", self.id, self.section),
            Status::Skip => format!("skip  {:<34} {}  ({})", self.id, self.section, self.got),
            Status::Fail => format!(
                "FAIL  {:<34} {}  expected {}; got {}",
                self.id,
                self.section,
                one_line(&self.expected),
                one_line(&self.got)
            ),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub target: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cases: Vec<Outcome>,
}

impl Report {
    pub fn new(target: String, cases: Vec<Outcome>) -> Self {
        let count = |s| cases.iter().filter(|c| c.status == s).count();
        Report {
            target,
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            skipped: count(Status::Skip),
            cases,
        }
    }

    /// The last line of the text output.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }

    /// The ids of the failed cases.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.cases
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.id.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_was_expected_and_what_came_back() {
        let o = Outcome {
            id: "upload.ack".into(),
            section: "§8.3".into(),
            title: "t".into(),
            status: Status::Fail,
            expected: "Ack {\n batch 1 }".into(),
            got: "nothing within 10000 ms".into(),
            ms: 3,
        };
        assert!(o.line().starts_with("FAIL  upload.ack"));
        assert!(o
            .line()
            .contains("expected Ack { batch 1 }; got nothing within 10000 ms"));
        let r = Report::new("t".into(), vec![o]);
        assert_eq!(r.summary(), "0 passed, 1 failed");
        assert_eq!(r.failed_ids(), ["upload.ack"]);
    }
}
