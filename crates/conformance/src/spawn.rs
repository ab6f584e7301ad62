//! Spawn mode: the harness starts a relay binary with the reference relay's command line
//! (`--db DB init|enroll|revoke|run`) in a temporary folder, enrolls the identities through
//! it, and can kill (SIGKILL), stop (SIGTERM) and restart it on the same store and address.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::identity::{Identities, Part};

/// How long a spawned relay may take to say it listens.
const START: Duration = Duration::from_secs(30);

/// Why a relay could not be spawned or driven.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot run {bin}: {error}")]
    Exec { bin: PathBuf, error: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` printed {out:?}, not a node id")]
    NoNodeId { command: String, out: String },
    #[error("the relay did not say where it listens within {} s (its log: {log})", START.as_secs())]
    NoListen { log: PathBuf },
    #[error("the relay's first line {line:?} is not `listening on ADDR as NODE_ID`")]
    BadListen { line: String },
    #[error("cannot make a temporary folder: {0}")]
    Temp(std::io::Error),
}

/// A relay process the harness owns.
#[derive(Debug)]
pub struct Spawned {
    bin: PathBuf,
    dir: tempfile::TempDir,
    db: PathBuf,
    env: Vec<(String, String)>,
    idle_secs: Option<u64>,
    child: Option<Child>,
    pub addr: SocketAddr,
    pub node_id: [u8; 32],
    starts: u32,
}

impl Spawned {
    /// Makes a store with `init`, enrolls (and revokes) the identities as their plan says,
    /// and starts `run` on 127.0.0.1, any port.
    pub fn start(
        bin: &Path,
        ids: &Identities,
        env: &[(String, String)],
        idle_secs: Option<u64>,
        keep: bool,
    ) -> Result<Self, SpawnError> {
        let mut dir = tempfile::Builder::new()
            .prefix("gridsync-conformance-")
            .tempdir()
            .map_err(SpawnError::Temp)?;
        if keep {
            dir.disable_cleanup(true);
        }
        let db = dir.path().join("relay.db");
        let mut s = Spawned {
            bin: bin.to_owned(),
            db,
            dir,
            env: env.to_vec(),
            idle_secs,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            node_id: [0; 32],
            starts: 0,
        };
        let out = s.cli(&["init", "--name", "conformance-relay", "--role", "district"])?;
        let line = out.lines().next().unwrap_or("").trim().to_owned();
        let id = hex::decode(&line)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| SpawnError::NoNodeId {
                command: "init".into(),
                out: out.clone(),
            })?;
        s.node_id = id;
        for id in &ids.identities {
            let scope = id.scope.clone().unwrap_or_default();
            match id.part {
                Part::Device => {
                    s.cli(&["enroll", &id.node_id, "--grid", &scope])?;
                }
                Part::Street | Part::Community => {
                    s.cli(&["enroll", &id.node_id, "--relay", "--scope", &scope])?;
                }
                Part::Revoked => {
                    s.cli(&["enroll", &id.node_id, "--grid", &scope])?;
                    s.cli(&["revoke", &id.node_id])?;
                }
                Part::Stranger => {}
            }
        }
        s.run()?;
        Ok(s)
    }

    /// The folder holding the store and the relay's logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--db").arg(&self.db);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs the relay's command line on its store (`--db DB ARGS`), as its operator would
    /// while it runs; the command's standard output.
    pub fn cli(&self, args: &[&str]) -> Result<String, SpawnError> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| SpawnError::Exec {
                bin: self.bin.clone(),
                error,
            })?;
        if !out.status.success() {
            return Err(SpawnError::Failed {
                command: args.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `run` (on the previous address after the first start).
    fn run(&mut self) -> Result<(), SpawnError> {
        self.starts += 1;
        let log = self.dir.path().join(format!("relay-{}.log", self.starts));
        let stderr = std::fs::File::create(&log).map_err(SpawnError::Temp)?;
        let mut c = self.command();
        c.arg("run").arg("--listen").arg(self.addr.to_string());
        if let Some(secs) = self.idle_secs {
            c.arg("--session-idle-secs").arg(secs.to_string());
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|error| SpawnError::Exec {
                bin: self.bin.clone(),
                error,
            })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(SpawnError::NoListen { log });
        };
        // Read the first line on a thread, so a relay that never prints cannot hang us.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the relay never blocks on a full pipe.
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let line = match rx.recv_timeout(START) {
            Ok(l) if !l.is_empty() => l,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SpawnError::NoListen { log });
            }
        };
        let addr = parse_listening(&line)?;
        self.addr = addr;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as a power cut would (nothing gets to flush).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits for the process to exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // kill(1) rather than an unsafe libc call: the workspace denies unsafe code.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().ok()
    }

    /// Starts the relay again on the same store and address.
    pub fn restart(&mut self) -> Result<(), SpawnError> {
        self.kill();
        self.run()
    }

    /// Whether the relay process is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

fn parse_listening(line: &str) -> Result<SocketAddr, SpawnError> {
    let bad = || SpawnError::BadListen {
        line: line.trim().to_owned(),
    };
    let rest = line.trim().strip_prefix("listening on ").ok_or_else(bad)?;
    let addr = rest.split_whitespace().next().ok_or_else(bad)?;
    addr.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_address() {
        let id = "ab".repeat(32);
        let a = parse_listening(&format!("listening on 127.0.0.1:4433 as {id}\n")).expect("parses");
        assert_eq!(a, SocketAddr::from(([127, 0, 0, 1], 4433)));
        assert!(parse_listening("ready").is_err());
    }
}
