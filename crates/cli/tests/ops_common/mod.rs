//! Helpers of the relay operations tests (`relay_config.rs`, `relay_ops.rs`): running
//! `gridsync-relay` with a clean environment, and a `run` child process whose first line
//! (`listening on ADDR as NODE_ID`) is read with a deadline.

// `libc::kill` (to send SIGTERM) needs `unsafe`; it is the only unsafe call here.
#![allow(unsafe_code)]
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long anything may take to happen (generous: nothing is timed, only awaited).
pub const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// A `gridsync-relay` command with a clean environment, run in `dir`.
pub fn relay_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gridsync-relay"));
    cmd.current_dir(dir)
        .env_remove("GRIDSYNC_RELAY_DB")
        .env_remove("GRIDSYNC_DB")
        .env_remove("GRIDSYNC_LOG");
    cmd
}

pub fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}\n  exit: {}\n  stdout: {}\n  stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `gridsync-relay --db DB ARGS...` and expects success; returns standard output.
pub fn relay_ok(db: &Path, args: &[&str]) -> String {
    let dir = db.parent().expect("a folder");
    let out = relay_in(dir)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run gridsync-relay");
    let what = format!("gridsync-relay --db {} {}", db.display(), args.join(" "));
    assert!(out.status.success(), "{}", describe(&what, &out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

pub fn relay_json(db: &Path, args: &[&str]) -> Value {
    let out = relay_ok(db, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{out}"))
}

/// Runs `gridsync-relay ARGS...` in `dir` and expects a failure with exactly one line on
/// standard error; returns it.
pub fn relay_fails(dir: &Path, args: &[&str]) -> String {
    let out = relay_in(dir)
        .args(args)
        .output()
        .expect("run gridsync-relay");
    let what = format!("gridsync-relay {}", args.join(" "));
    assert!(!out.status.success(), "{}", describe(&what, &out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", describe(&what, &out));
    lines[0].to_owned()
}

/// A `gridsync` (device) command on store `db`, with a clean environment.
pub fn device_ok(db: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gridsync"))
        .current_dir(db.parent().expect("a folder"))
        .env_remove("GRIDSYNC_DB")
        .env_remove("GRIDSYNC_LOG")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run gridsync");
    let what = format!("gridsync --db {} {}", db.display(), args.join(" "));
    assert!(out.status.success(), "{}", describe(&what, &out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

pub fn device_json(db: &Path, args: &[&str]) -> Value {
    let out = device_ok(db, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{out}"))
}

/// Sends SIGTERM to `pid`.
fn sigterm(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: `kill` only sends a signal to a process id; it touches no memory of ours. The
    // id is that of our own child, which has not been waited for yet (so not reused).
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Polls `condition` until it holds, for at most [`DEADLINE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(POLL);
    }
}

/// A running `gridsync-relay ... run ...`, killed if the test fails before it is stopped.
pub struct Relay {
    child: Option<Child>,
    log: PathBuf,
    /// The address it printed.
    pub addr: String,
    /// The node id it printed.
    pub id: String,
    /// The lines it printed after its first.
    lines: Option<std::sync::mpsc::Receiver<std::io::Result<String>>>,
}

impl Relay {
    /// Starts `gridsync-relay ARGS...` in `dir` (the arguments include `run`), its log in
    /// `dir/relay.log`, and reads its first line.
    pub fn spawn(dir: &Path, args: &[&str]) -> Self {
        Self::start(relay_in(dir), dir, args)
    }

    /// [`Relay::spawn`] with one environment variable set.
    pub fn spawn_with_env(dir: &Path, args: &[&str], (k, v): (&str, &str)) -> Self {
        let mut cmd = relay_in(dir);
        cmd.env(k, v);
        Self::start(cmd, dir, args)
    }

    fn start(mut cmd: Command, dir: &Path, args: &[&str]) -> Self {
        let log = dir.join("relay.log");
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("relay log file"))
            .spawn()
            .expect("spawn gridsync-relay run");
        let stdout = child.stdout.take().expect("stdout");
        let mut relay = Self {
            child: Some(child),
            log,
            addr: String::new(),
            id: String::new(),
            lines: None,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match rx.recv_timeout(DEADLINE) {
            Ok(Ok(line)) => line,
            other => panic!(
                "the relay printed no first line ({other:?}); its log:\n{}",
                relay.log_text()
            ),
        };
        let rest = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        let (addr, id) = rest
            .split_once(" as ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
        assert_ne!(addr, "127.0.0.1:0", "the real port is printed: {line}");
        relay.addr = addr.to_owned();
        relay.id = id.to_owned();
        relay.lines = Some(rx);
        relay
    }

    /// The next line the relay printed on standard output (waiting for it).
    pub fn next_line(&self) -> String {
        match self.lines.as_ref().map(|rx| rx.recv_timeout(DEADLINE)) {
            Some(Ok(Ok(line))) => line,
            other => panic!(
                "the relay printed no further line ({other:?}); its log:\n{}",
                self.log_text()
            ),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits; returns the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        sigterm(child.id());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the relay did not exit in time");
            std::thread::sleep(POLL);
        }
    }

    /// `gridsync sync` of the device store `db` with this relay, as JSON.
    pub fn sync(&self, db: &Path) -> Value {
        device_json(
            db,
            &[
                "sync",
                "--relay",
                &self.addr,
                "--relay-id",
                &self.id,
                "--json",
            ],
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("relay log:\n{}", self.log_text());
            }
        }
    }
}

/// A relay store `dir/NAME` made by `init` (a street), with a handheld store `dir/pda.db` for
/// `grid` enrolled at it; returns the handheld's node id.
pub fn street_and_handheld(dir: &Path, name: &str, grid: &str) -> (PathBuf, PathBuf, String) {
    let street = dir.join(name);
    relay_ok(
        &street,
        &["init", "--name", "street-002", "--role", "street"],
    );
    let pda = dir.join("pda.db");
    let id = device_ok(&pda, &["init", "--device-name", "patrol-7", "--grid", grid])
        .trim()
        .to_owned();
    relay_ok(&street, &["enroll", &id, "--grid", grid]);
    (street, pda, id)
}
