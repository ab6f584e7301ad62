//! gridsync-conformance: a black-box conformance harness for gridsync relays.
//!
//! It speaks the sync protocol as `proto/PROTOCOL.md` writes it, with its own messages
//! ([`wire`]), TLS ([`tls`]) and session steps (the cases), against a relay at an address or
//! one it spawns ([`spawn`]). Each case checks one section of the spec, the hostile path as
//! much as the happy one, and reports what it expected and what came back. It uses only the
//! core event model and codec from the rest of the workspace (and the photo pipeline, to make
//! real photos), never `gridsync-proto`'s sessions, the relay or the store.
//!
//! The library is what the binary runs; tests run it in-process against spawned relays,
//! including deliberately broken ones, to show that each case can fail.

pub mod cases;
pub mod client;
pub mod events;
pub mod identity;
pub mod report;
pub mod spawn;
pub mod tls;
pub mod vectors;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use client::{Closed, Conn, Ctl, NoMsg};
use identity::{Identities, Part};
use serde::Serialize;
use wire::{Code, Key, Msg, Role};

pub use report::{Outcome, Report, Status};

/// How long one case may run before it counts as failed.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(180);

/// What a case found wrong: what the spec wanted, and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub expected: String,
    pub got: String,
}

/// A case's result.
pub type Check = Result<(), Fail>;

/// A failure.
pub fn fail(expected: impl Into<String>, got: impl Into<String>) -> Fail {
    Fail {
        expected: expected.into(),
        got: got.into(),
    }
}

/// Fails unless `cond`.
pub fn ensure(cond: bool, expected: impl Into<String>, got: impl Into<String>) -> Check {
    if cond {
        Ok(())
    } else {
        Err(fail(expected, got))
    }
}

/// Where a case may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Needs {
    /// Against any relay.
    Any,
    /// Only when the harness spawned the relay (it kills or restarts it).
    Spawn,
    /// Only when the relay's control-stream idle timeout is known (`--idle-timeout`).
    IdleTimeout,
}

/// The future a case returns.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Check> + Send + 'a>>;

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// A stable id, `group.name`.
    pub id: &'static str,
    /// The section of PROTOCOL.md (or EVENTS.md) it checks.
    pub section: &'static str,
    /// What it checks, in a line.
    pub title: &'static str,
    pub needs: Needs,
    pub run: for<'a> fn(&'a Ctx) -> CaseFuture<'a>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("section", &self.section)
            .finish_non_exhaustive()
    }
}

/// Every case, in the order they run.
pub fn all_cases() -> Vec<Case> {
    cases::all()
}

/// Whether `id` matches a `--filter` pattern: comma-separated alternatives, each a substring
/// or a glob with `*`.
pub fn matches(pattern: &str, id: &str) -> bool {
    pattern
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|p| {
            if !p.contains('*') {
                return id.contains(p);
            }
            glob(p.as_bytes(), id.as_bytes())
        })
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// An identity ready to connect.
#[derive(Debug, Clone)]
pub struct Id {
    pub name: String,
    pub seed: [u8; 32],
    pub key: Key,
    /// A device's grid or a relay's scope, as enrolled.
    pub scope: Option<String>,
}

impl Id {
    fn from(id: &identity::Identity) -> Result<Self, RunError> {
        Ok(Id {
            name: id.name.clone(),
            seed: id.seed()?,
            key: id.key()?,
            scope: id.scope.clone(),
        })
    }

    /// A throwaway identity nobody enrolled.
    pub fn fresh(name: &str) -> Result<Self, Fail> {
        let seed = identity::random_seed().map_err(|e| fail("randomness", e.to_string()))?;
        Ok(Id {
            name: name.to_owned(),
            seed,
            key: identity::public_key(&seed),
            scope: None,
        })
    }
}

/// The identities of a run, by part.
#[derive(Debug, Clone)]
pub struct Roster {
    pub device_a: Id,
    pub device_a2: Id,
    pub device_b: Id,
    pub street: Id,
    pub stranger: Id,
    pub revoked: Id,
    pub community: Id,
}

impl Roster {
    fn from(ids: &Identities) -> Result<Self, RunError> {
        let pick = |i: usize, part: Part| -> Result<Id, RunError> {
            let id = ids
                .identities
                .get(i)
                .ok_or(RunError::Plan(format!("identity {i} is missing")))?;
            if id.part != part {
                return Err(RunError::Plan(format!(
                    "identity {i} ({}) is a {:?}, the plan needs a {part:?} there",
                    id.name, id.part
                )));
            }
            Id::from(id)
        };
        Ok(Roster {
            device_a: pick(0, Part::Device)?,
            device_a2: pick(1, Part::Device)?,
            device_b: pick(2, Part::Device)?,
            street: pick(3, Part::Street)?,
            stranger: pick(4, Part::Stranger)?,
            revoked: pick(5, Part::Revoked)?,
            community: pick(6, Part::Community)?,
        })
    }
}

/// The relay to test.
#[derive(Debug, Clone)]
pub enum Target {
    /// Already running; the identities were enrolled by its operator.
    Addr { addr: SocketAddr, id: Key },
    /// Spawned by the harness from this binary, with these extra environment variables.
    Spawn {
        bin: PathBuf,
        env: Vec<(String, String)>,
        /// Keep the relay's temporary folder (store and logs) after the run.
        keep: bool,
    },
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub identities: Identities,
    pub filter: Option<String>,
    /// The relay's control-stream idle timeout, if known; spawn mode sets it itself.
    pub idle_timeout: Option<Duration>,
}

/// The idle timeout a spawned relay is given (`run --session-idle-secs`): short, so the
/// idle case is quick, but long enough that no busy case (200 sessions at once on two cores)
/// sits idle that long between two messages.
pub const SPAWN_IDLE_SECS: u64 = 5;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("identity plan: {0}")]
    Plan(String),
    #[error(transparent)]
    Spawn(#[from] spawn::SpawnError),
    #[error("cannot open a UDP socket for the client: {0}")]
    Endpoint(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("--filter {0:?} matches no case (`gridsync-conformance list` shows them)")]
    NoCase(String),
}

/// What the street identity has downloaded so far (its cursor and the events by origin).
#[derive(Debug, Default)]
struct Observer {
    cursor: u64,
    events: Vec<gridsync_core::Event>,
}

/// What a case can use: the client endpoint, the target, the identities, the spawned relay.
#[derive(Debug)]
pub struct Ctx {
    pub endpoint: quinn::Endpoint,
    addr: Mutex<SocketAddr>,
    pub target_id: Key,
    pub ids: Roster,
    spawned: Option<Mutex<spawn::Spawned>>,
    pub idle_timeout: Option<Duration>,
    observer: tokio::sync::Mutex<Observer>,
    /// Fresh origins the street identity has sent node records for.
    vouched: Mutex<std::collections::BTreeSet<Key>>,
}

/// The first batch number of the street's node records.
pub const VOUCH_BATCH: u64 = 1_000_000;

/// A parsed `Welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub version: u16,
    pub node: Key,
    pub role: Role,
    pub name: String,
    pub scope: String,
    pub now_ms: u64,
    pub heads: Vec<wire::Head>,
    pub limits: wire::Limits,
}

impl Welcome {
    /// The parent's contiguous head of `origin` (0 when not listed, §8.3).
    pub fn head(&self, origin: &Key) -> u64 {
        self.heads
            .iter()
            .find(|h| &h.origin == origin)
            .map_or(0, |h| h.seq)
    }
}

/// Describes an answer for a report.
pub fn describe(r: &Result<Msg, NoMsg>) -> String {
    match r {
        Ok(m) => m.describe(),
        Err(e) => e.to_string(),
    }
}

impl Ctx {
    /// The relay's current address (it moves only if a spawned relay is restarted).
    pub fn addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the harness spawned the relay.
    pub fn spawned(&self) -> bool {
        self.spawned.is_some()
    }

    /// Runs `f` on the spawned relay (cases that need one are only run in spawn mode).
    pub fn with_relay<R>(&self, f: impl FnOnce(&mut spawn::Spawned) -> R) -> Result<R, Fail> {
        let Some(s) = &self.spawned else {
            return Err(fail("a spawned relay", "the relay was not spawned"));
        };
        let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut s);
        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = s.addr;
        Ok(r)
    }

    /// SIGKILL and restart the spawned relay on the same store.
    pub async fn kill_and_restart(&self) -> Check {
        tokio::task::block_in_place(|| self.with_relay(|s| s.restart()))?
            .map_err(|e| fail("the relay restarted", e.to_string()))
    }

    /// Connects as `id` with the standard TLS behaviour.
    pub async fn connect(&self, id: &Id) -> Result<Conn, Fail> {
        self.connect_with(id, &tls::ClientTls::pinned(self.target_id))
            .await
            .map_err(|e| fail("a QUIC connection", e.to_string()))
    }

    /// Connects with any TLS behaviour.
    pub async fn connect_with(&self, id: &Id, options: &tls::ClientTls) -> Result<Conn, Closed> {
        client::connect(&self.endpoint, self.addr(), &id.seed, options).await
    }

    /// The `Hello` of `id` as role `role`.
    pub fn hello(&self, id: &Id, role: Role) -> Msg {
        Msg::Hello {
            versions: vec![1],
            node: id.key,
            role,
            name: format!("conformance-{}", id.name),
        }
    }

    /// Connects, opens a control stream, says `Hello` and expects `Welcome`.
    pub async fn open(&self, id: &Id, role: Role) -> Result<(Conn, Ctl, Welcome), Fail> {
        let conn = self.connect(id).await?;
        let (ctl, w) = self.session(&conn, id, role).await?;
        Ok((conn, ctl, w))
    }

    /// A new session on `conn`.
    pub async fn session(&self, conn: &Conn, id: &Id, role: Role) -> Result<(Ctl, Welcome), Fail> {
        let mut ctl = conn
            .control()
            .await
            .map_err(|e| fail("a control stream", e.to_string()))?;
        let reply = ctl.ask(&self.hello(id, role)).await;
        match reply {
            Ok(Msg::Welcome {
                version,
                node,
                role,
                name,
                scope,
                now_ms,
                heads,
                limits,
            }) => Ok((
                ctl,
                Welcome {
                    version,
                    node,
                    role,
                    name,
                    scope,
                    now_ms,
                    heads,
                    limits,
                },
            )),
            other => Err(fail(
                format!("Welcome for {} ({role:?})", id.name),
                describe(&other),
            )),
        }
    }

    /// A device session of `id`.
    pub async fn device(&self, id: &Id) -> Result<(Conn, Ctl, Welcome), Fail> {
        self.open(id, Role::Device).await
    }

    /// A street-relay session of the street identity, which first vouches (§8.9) for every fresh origin
    /// it has not vouched for yet, so that it may forward their events.
    pub async fn street(&self) -> Result<(Conn, Ctl, Welcome), Fail> {
        let (conn, mut ctl, w) = self.open(&self.ids.street, Role::Street).await?;
        self.vouch_fresh(&mut ctl).await?;
        Ok((conn, ctl, w))
    }

    /// Sends node records, signed by the street identity, for the fresh origins not yet
    /// vouched for: each as a relay for the street's scope (a fresh origin stands for any
    /// node under the street). Batch numbers from [`VOUCH_BATCH`] up, apart from those of the
    /// cases (the parent does not enforce batch numbering, §8.3).
    pub async fn vouch_fresh(&self, ctl: &mut Ctl) -> Result<(), Fail> {
        let todo: Vec<Key> = {
            let done = self.vouched.lock().unwrap_or_else(|p| p.into_inner());
            events::fresh_origins()
                .into_iter()
                .filter(|o| !done.contains(o))
                .collect()
        };
        for (i, chunk) in todo.chunks(256).enumerate() {
            let records = chunk
                .iter()
                .map(|o| {
                    wire::NodeRecord::signed(
                        &self.ids.street.seed,
                        *o,
                        Role::Street,
                        identity::STREET_SCOPE,
                        1,
                        None,
                    )
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail("node records that encode", e.to_string()))?;
            let batch = VOUCH_BATCH + i as u64;
            let r = ctl.ask(&Msg::Nodes { batch, records }).await;
            match r {
                Ok(Msg::Ack { batch: b, .. }) if b == batch => {}
                other => {
                    return Err(fail(
                        "Ack of the street's node records (§8.9)",
                        describe(&other),
                    ))
                }
            }
            let mut done = self.vouched.lock().unwrap_or_else(|p| p.into_inner());
            done.extend(chunk.iter().copied());
        }
        Ok(())
    }

    /// Everything new the street identity can download (scope 990000/001), all pages, and
    /// every event it has downloaded in this run. Uploads the street identity made itself do
    /// not come back (§8.6, via).
    pub async fn observe(&self) -> Result<Vec<gridsync_core::Event>, Fail> {
        self.drain_observer(true).await
    }

    /// Moves the street identity's cursor to the end of what the relay holds now, so that
    /// [`Ctx::observe`] sees only what this run adds.
    pub async fn prime_observer(&self) -> Check {
        self.drain_observer(false).await.map(|_| ())
    }

    async fn drain_observer(&self, record: bool) -> Result<Vec<gridsync_core::Event>, Fail> {
        let mut obs = self.observer.lock().await;
        let (conn, mut ctl, _) = self.street().await?;
        let (events, cursor) = pull_all(&mut ctl, obs.cursor).await?;
        bye(&mut ctl, &conn).await;
        obs.cursor = cursor;
        if record {
            obs.events.extend(events);
        }
        Ok(obs.events.clone())
    }

    /// The events of `origin` the street identity has seen so far in this run.
    pub async fn observed_of(&self, origin: &Key) -> Result<Vec<gridsync_core::Event>, Fail> {
        Ok(self
            .observe()
            .await?
            .into_iter()
            .filter(|e| &e.origin.0 == origin)
            .collect())
    }
}

/// Pulls every page from `cursor`; returns the decoded events and the last cursor. Checks
/// the page rules of §8.6 on the way (at most 512 events, a cursor that moves while `more`).
pub async fn pull_all(
    ctl: &mut Ctl,
    mut cursor: u64,
) -> Result<(Vec<gridsync_core::Event>, u64), Fail> {
    let mut out = Vec::new();
    let mut still = 0;
    loop {
        let reply = ctl.ask(&Msg::Pull { cursor }).await;
        let Ok(Msg::Down {
            events,
            cursor: next,
            more,
        }) = reply
        else {
            return Err(fail(
                format!("Down for Pull {{ cursor {cursor} }}"),
                describe(&reply),
            ));
        };
        ensure(
            events.len() <= wire::PAGE_EVENTS,
            "at most 512 events per page (§8.6)",
            format!("{} events", events.len()),
        )?;
        for bytes in &events {
            let e = gridsync_core::codec::decode_event(bytes)
                .map_err(|e| fail("pages of events that decode (§6.6)", e.to_string()))?;
            out.push(e);
        }
        if !more {
            return Ok((out, next));
        }
        if next == cursor {
            still += 1;
            ensure(
                still < 8,
                "a cursor that moves forward while more = true (§8.6)",
                format!("cursor stuck at {cursor} for {still} pages"),
            )?;
        }
        cursor = next;
    }
}

/// Ends a session with `Bye` and closes the connection.
pub async fn bye(ctl: &mut Ctl, conn: &Conn) {
    let _ = ctl.send(&Msg::Bye).await;
    ctl.finish();
    conn.close(0, "done");
}

/// Passes when `reply` ends the session with `code`: an `Error` with that code, or an
/// application close with it (a close can overtake the message, §2.3).
pub fn expect_error(reply: &Result<Msg, NoMsg>, code: Code, what: &str) -> Check {
    match reply {
        Ok(Msg::Error { code: c, .. }) if *c == code => Ok(()),
        Err(NoMsg::Closed(Closed::App { code: c, .. })) if *c == code.number() => Ok(()),
        other => Err(fail(
            format!("Error {{ {code:?} }} ({what})"),
            describe(other),
        )),
    }
}

/// Runs the selected cases, calling `each` as each one finishes.
pub fn run(config: RunConfig, each: &mut dyn FnMut(&Outcome)) -> Result<Report, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(run_async(config, each))
}

async fn run_async(config: RunConfig, each: &mut dyn FnMut(&Outcome)) -> Result<Report, RunError> {
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|c| config.filter.as_deref().is_none_or(|f| matches(f, c.id)))
        .collect();
    if cases.is_empty() {
        return Err(RunError::NoCase(config.filter.unwrap_or_default()));
    }
    let ids = Roster::from(&config.identities)?;
    let (addr, target_id, spawned, idle, target_text) = match &config.target {
        Target::Addr { addr, id } => (
            *addr,
            *id,
            None,
            config.idle_timeout,
            format!("{addr} ({})", hex::encode(id)),
        ),
        Target::Spawn { bin, env, keep } => {
            let s = tokio::task::block_in_place(|| {
                spawn::Spawned::start(bin, &config.identities, env, Some(SPAWN_IDLE_SECS), *keep)
            })?;
            let text = format!("{} spawned in {}", bin.display(), s.dir().display());
            (
                s.addr,
                s.node_id,
                Some(Mutex::new(s)),
                Some(Duration::from_secs(SPAWN_IDLE_SECS)),
                text,
            )
        }
    };
    let endpoint = client::endpoint(addr).map_err(RunError::Endpoint)?;
    let ctx = Ctx {
        endpoint,
        addr: Mutex::new(addr),
        target_id,
        ids,
        spawned,
        idle_timeout: idle,
        observer: tokio::sync::Mutex::new(Observer::default()),
        vouched: Mutex::new(std::collections::BTreeSet::new()),
    };
    if let Err(f) = ctx.prime_observer().await {
        tracing::warn!(expected = %f.expected, got = %f.got, "the street identity cannot download; cases that check what is stored will fail");
    }
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        let skip = match case.needs {
            Needs::Any => None,
            Needs::Spawn if !ctx.spawned() => Some("needs --spawn-relay (it restarts the relay)"),
            Needs::IdleTimeout if ctx.idle_timeout.is_none() => {
                Some("needs --idle-timeout SECS (the relay's control-stream idle timeout)")
            }
            _ => None,
        };
        let started = Instant::now();
        let (status, expected, got) = if let Some(why) = skip {
            (Status::Skip, String::new(), why.to_owned())
        } else {
            match tokio::time::timeout(CASE_TIMEOUT, (case.run)(&ctx)).await {
                Ok(Ok(())) => (Status::Pass, String::new(), String::new()),
                Ok(Err(f)) => (Status::Fail, f.expected, f.got),
                Err(_) => (
                    Status::Fail,
                    format!("the case to finish within {} s", CASE_TIMEOUT.as_secs()),
                    "it hung".into(),
                ),
            }
        };
        let outcome = Outcome {
            id: case.id.to_owned(),
            section: case.section.to_owned(),
            title: case.title.to_owned(),
            status,
            expected,
            got,
            ms: started.elapsed().as_millis() as u64,
        };
        each(&outcome);
        results.push(outcome);
        // A case that killed the relay without restarting it must not sink the rest.
        if ctx.spawned() {
            let restarted = tokio::task::block_in_place(|| {
                ctx.with_relay(|s| if s.running() { Ok(()) } else { s.restart() })
            });
            if let Ok(Err(e)) = restarted {
                tracing::warn!(error = %e, "could not restart the relay after a case");
            }
        }
    }
    ctx.endpoint.close(0u32.into(), b"done");
    Ok(Report::new(target_text, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_substrings_or_globs() {
        assert!(matches("upload", "upload.ack"));
        assert!(matches("blob.*,upload.ack", "upload.ack"));
        assert!(matches("*.ack", "upload.ack"));
        assert!(!matches("*.ack", "upload.acks"));
        assert!(!matches("down", "upload.ack"));
    }

    #[test]
    fn case_ids_are_unique_and_tied_to_a_section() {
        let cases = all_cases();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        let mut ids: Vec<_> = cases.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), cases.len(), "duplicate case ids");
        for c in &cases {
            assert!(
                c.section.starts_with('§') || c.section.starts_with("EVENTS"),
                "{}",
                c.id
            );
            assert!(c.id.contains('.'), "{}", c.id);
        }
    }
}
