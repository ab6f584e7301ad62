//! Shared helpers for gridsync's benchmark binaries.
//!
//! * `photo`: the photo pipeline ([`gridsync_media::process`]) against ImageMagick's
//!   `convert`, wall time and peak memory, one child process per run.
//! * `append`: the latency of one user action through [`gridsync_store::Store::append`]
//!   against a bare SQLite commit with the same durability settings.
//!
//! These are benchmarks, not tests: they print figures and ratios against a baseline measured
//! in the same run (the machines are noisy), and never fail on timing. Only the arithmetic
//! here is unit-tested.

use std::fmt;
use std::path::{Path, PathBuf};

/// The nearest-rank `p`-th percentile (0..=100) of `sorted` (ascending): the smallest value
/// such that at least `p`% of the values are less than or equal to it. `None` when empty.
///
/// Nearest-rank never interpolates, so a reported p99 is always a latency that was actually
/// observed.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // Multiply before dividing so that whole-number ranks stay exact (99 * 200 / 100 = 198).
    let rank = (p.clamp(0.0, 100.0) * n as f64 / 100.0).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// The median of `values` (any order): the middle value, or the mean of the two middle values
/// for an even count. `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let sorted = sorted(values);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Distribution of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Summarises `values` (any order). `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        let s = sorted(values);
        Some(Self {
            n: s.len(),
            min: *s.first()?,
            p50: percentile(&s, 50.0)?,
            p99: percentile(&s, 99.0)?,
            max: *s.last()?,
            mean: s.iter().sum::<f64>() / s.len() as f64,
        })
    }
}

/// `PASS` when `ratio <= goal`, else `MISS`.
pub fn verdict(ratio: f64, goal: f64) -> &'static str {
    if ratio <= goal {
        "PASS"
    } else {
        "MISS"
    }
}

/// Command-line arguments: `--name value` / `--name=value` options and positionals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    options: Vec<(String, String)>,
    /// Arguments that are not options, in order.
    pub positional: Vec<String>,
}

/// A command line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

impl Args {
    /// Parses `args` (without the program name). `known` lists the options that take a value;
    /// any other `--x` is an error.
    pub fn parse(args: impl IntoIterator<Item = String>, known: &[&str]) -> Result<Self, ArgError> {
        let mut out = Self::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if !arg.starts_with("--") || arg == "--" {
                if arg != "--" {
                    out.positional.push(arg);
                }
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            if !known.contains(&name.as_str()) {
                return Err(ArgError(format!(
                    "unknown option {name}; known options: {}",
                    known.join(", ")
                )));
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| ArgError(format!("{name} needs a value")))?,
            };
            out.options.push((name, value));
        }
        Ok(out)
    }

    /// The last value given for option `name`, parsed; `default` when absent.
    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ArgError> {
        match self.options.iter().rev().find(|(n, _)| n == name) {
            None => Ok(default),
            Some((_, v)) => v
                .parse()
                .map_err(|_| ArgError(format!("{name}: cannot use {v:?}"))),
        }
    }
}

/// The workspace root (where `fixtures/` lives), from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A directory on the same filesystem as the build output, for scratch files: the cargo
/// target directory the running binary was built into (`<target>/release/<bin>` gives
/// `<target>`), falling back to the workspace's `target/`.
pub fn scratch_parent() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The mount holding `path`, as `(mount point, filesystem type, source)`, from
/// `/proc/self/mounts` (Linux). `None` when that cannot be read.
pub fn filesystem_of(path: &Path) -> Option<(String, String, String)> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let source = f.next()?;
            let point = f.next()?.replace("\\040", " ");
            let fstype = f.next()?;
            Some((point, fstype.to_owned(), source.to_owned()))
        })
        .filter(|(point, _, _)| path.starts_with(point))
        // The longest (most specific) mount point wins; among equals the last mounted one.
        .fold(
            None,
            |best: Option<(String, String, String)>, m| match &best {
                Some(b) if b.0.len() > m.0.len() => best,
                _ => Some(m),
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_to(n: u32) -> Vec<f64> {
        (1..=n).map(f64::from).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v = one_to(100);
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        // 10 values: p99 needs rank ceil(9.9) = 10, the maximum; p50 is rank 5.
        let v = one_to(10);
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&v, 91.0), Some(10.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn median_of_odd_even_and_unsorted() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn summary_sorts_its_input() {
        let mut v = one_to(200);
        v.reverse();
        let s = Summary::of(&v).expect("non-empty");
        assert_eq!(s.n, 200);
        assert_eq!((s.min, s.max), (1.0, 200.0));
        assert_eq!(s.p50, 100.0);
        assert_eq!(s.p99, 198.0);
        assert!((s.mean - 100.5).abs() < 1e-9);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(0.5, 0.5), "PASS");
        assert_eq!(verdict(0.51, 0.5), "MISS");
    }

    #[test]
    fn args() {
        let a = Args::parse(
            ["--runs", "7", "a.jpg", "--n=3"].map(String::from),
            &["--runs", "--n"],
        )
        .expect("parses");
        assert_eq!(a.get("--runs", 5u32), Ok(7));
        assert_eq!(a.get("--n", 0usize), Ok(3));
        assert_eq!(a.get("--other", 9u8), Ok(9));
        assert_eq!(a.positional, vec!["a.jpg".to_owned()]);
        assert!(Args::parse(["--bogus".to_owned()], &["--runs"]).is_err());
        assert!(Args::parse(["--runs".to_owned()], &["--runs"]).is_err());
        let bad = Args::parse(["--runs", "x"].map(String::from), &["--runs"]).expect("parses");
        assert!(bad.get("--runs", 5u32).is_err());
    }
}
