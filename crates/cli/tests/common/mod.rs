//! Helpers shared by the black-box tests of the `gridsync` binary: a store in its own
//! temporary folder, running the binary against it, and reading its JSON.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The grid every test device patrols.
pub const GRID: &str = "110101/002/014/03";

/// The real `gridsync` binary built by Cargo for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gridsync")
}

/// The path of a sample photo in `fixtures/photos/`.
pub fn fixture(name: &str) -> PathBuf {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/photos"
    ))
    .join(name);
    assert!(path.is_file(), "fixture {} is missing", path.display());
    path
}

/// A `gridsync` command with a clean environment (no inherited `GRIDSYNC_*`), run in `dir`.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir)
        .env_remove("GRIDSYNC_DB")
        .env_remove("GRIDSYNC_LOG");
    cmd
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "gridsync {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks that `out` is a failure reported the way every error must be: a non-zero exit and
/// exactly one line on standard error. Returns that line.
pub fn expect_one_line_failure(args: &[&str], out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure:\n{}",
        describe(args, out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "an error must be exactly one line on stderr, got {} lines:\n{}",
        lines.len(),
        describe(args, out)
    );
    assert!(
        !lines[0].trim().is_empty(),
        "the error line is blank:\n{}",
        describe(args, out)
    );
    lines[0].to_owned()
}

/// A gridsync store path in its own temporary folder (the folder goes when this is dropped).
#[derive(Debug)]
pub struct Gs {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl Gs {
    /// A temporary folder and a store path in it; nothing is created yet.
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("pda.db");
        Self { dir, db }
    }

    /// A fresh store made with `init`; returns it and the node id it printed.
    pub fn init() -> (Self, String) {
        let gs = Self::empty();
        let out = gs.ok(&["init", "--device-name", "patrol-7", "--grid", GRID]);
        let node = out.trim().to_owned();
        assert_hex64(&node, "node id printed by init");
        (gs, node)
    }

    /// Runs `gridsync --db <db> ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_db(&self.db, args)
    }

    /// Runs `gridsync --db <db> ARGS...` against another path.
    pub fn run_with_db(&self, db: &Path, args: &[&str]) -> Output {
        command(self.dir.path())
            .arg("--db")
            .arg(db)
            .args(args)
            .output()
            .expect("run gridsync")
    }

    /// Runs and expects success with nothing on stderr; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "expected success:\n{}",
            describe(args, &out)
        );
        assert!(
            out.stderr.is_empty(),
            "a successful command printed on stderr:\n{}",
            describe(args, &out)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs and expects a one-line failure; returns the stderr line.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        expect_one_line_failure(args, &out)
    }

    /// Runs and parses standard output as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "gridsync {} printed invalid JSON ({e}):\n{out}",
                args.join(" ")
            )
        })
    }

    /// `report ... --json`; returns the new incident id (checked to be a UUIDv7).
    pub fn report(&self, args: &[&str]) -> String {
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        all.push("--json");
        let v = self.json(&all);
        assert_eq!(
            v.as_object().map(serde_json::Map::len),
            Some(1),
            "report --json prints only the id: {v}"
        );
        let id = v["id"]
            .as_str()
            .unwrap_or_else(|| panic!("report --json printed no string id: {v}"))
            .to_owned();
        assert_uuid_v7(&id);
        id
    }

    /// `report --category garbage --description TEXT` with the given photos.
    pub fn report_photos(&self, description: &str, photos: &[&Path]) -> String {
        let photos: Vec<String> = photos.iter().map(|p| p.display().to_string()).collect();
        let mut args = vec!["--category", "garbage", "--description", description];
        for p in &photos {
            args.push("--photo");
            args.push(p);
        }
        self.report(&args)
    }

    /// `show ID --json`.
    pub fn show(&self, id: &str) -> Value {
        self.json(&["show", id, "--json"])
    }

    /// `list --json`, as an array.
    pub fn list(&self) -> Vec<Value> {
        match self.json(&["list", "--json"]) {
            Value::Array(a) => a,
            other => panic!("list --json is not an array: {other}"),
        }
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        self.json(&["status", "--json"])
    }

    /// What the store holds as seen through the CLI: `list --json` and `status --json`.
    pub fn snapshot(&self) -> (Vec<Value>, Value) {
        (self.list(), self.status())
    }

    /// `edit ID ARGS... --json`; returns the incident JSON after the edit.
    pub fn edit(&self, id: &str, args: &[&str]) -> Value {
        let mut all = vec!["edit", id];
        all.extend_from_slice(args);
        all.push("--json");
        self.json(&all)
    }

    /// `blob HASH [--thumb] -o FILE`; returns the bytes written.
    pub fn blob(&self, hash: &str, thumb: bool) -> Vec<u8> {
        let file = self
            .dir
            .path()
            .join(format!("{hash}{}.out", if thumb { ".thumb" } else { "" }));
        let file_arg = file.display().to_string();
        let mut args = vec!["blob", hash];
        if thumb {
            args.push("--thumb");
        }
        args.extend(["-o", &file_arg]);
        let out = self.ok(&args);
        assert!(out.is_empty(), "blob -o printed on stdout: {out}");
        std::fs::read(&file).expect("read the blob written by -o")
    }
}

/// Asserts `s` is 64 lowercase hex digits.
pub fn assert_hex64(s: &str, what: &str) {
    assert_eq!(s.len(), 64, "{what} {s:?} is not 64 hex digits");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{what} {s:?} is not lowercase hex"
    );
}

/// Asserts `s` is a hyphenated UUID of version 7 (RFC 9562 variant).
pub fn assert_uuid_v7(s: &str) {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    assert_eq!(lens, [8, 4, 4, 4, 12], "{s:?} is not a hyphenated UUID");
    assert!(
        groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit())),
        "{s:?} is not hex"
    );
    assert_eq!(&s[14..15], "7", "{s:?} is not a version 7 UUID");
    assert!(
        matches!(&s[19..20], "8" | "9" | "a" | "b" | "A" | "B"),
        "{s:?} does not have the RFC 9562 variant"
    );
}

/// SHA-256 hex of `bytes`, as gridsync names blobs.
pub fn sha256_hex(bytes: &[u8]) -> String {
    gridsync_core::BlobHash::of(bytes).to_hex()
}

/// The field `key` of incident JSON `v` as a string (panics with context otherwise).
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

/// The photos of incident JSON `v`.
pub fn photos(v: &Value) -> &Vec<Value> {
    v["photos"]
        .as_array()
        .unwrap_or_else(|| panic!("photos is not an array in {v}"))
}

/// The `event_count` of incident JSON `v`.
pub fn event_count(v: &Value) -> u64 {
    v["event_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("event_count is not a number in {v}"))
}
