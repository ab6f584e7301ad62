//! Accounts and sessions: password hashing, what each role may do, the in-memory session
//! store, the CSRF check, the login rate limiter and the `next=` redirect sanitiser.
//!
//! Time is always passed in (a [`Clock`] or a `now_ms` argument), so the tests advance it
//! deterministically.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
pub use gridsync_store::OperatorRole as Role;

/// The clock of sessions and the rate limiter: Unix milliseconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// The shortest password an account may have, in characters.
pub const MIN_PASSWORD_LEN: usize = 8;

/// The longest password taken, in bytes (hashing a megabyte is a denial of service).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Why a password or a random value could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the password is shorter than {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("the password is longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(out)
}

/// A new random token: 32 bytes as hex.
pub fn new_token() -> Result<String, AuthError> {
    Ok(hex::encode(random_bytes::<32>()?))
}

/// A new Open311 API key (32 random bytes as hex; the store keeps only its SHA-256).
pub fn new_api_key() -> Result<String, AuthError> {
    new_token()
}

/// Hashes `password` with Argon2id (the crate's default parameters) and a random salt; the
/// PHC string to store. Refuses passwords shorter than [`MIN_PASSWORD_LEN`].
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::TooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::TooLong);
    }
    hash_unchecked(password)
}

fn hash_unchecked(password: &str) -> Result<String, AuthError> {
    let salt_bytes = random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// A PHC string no password matches, hashed once: checking a login for an account that
/// does not exist costs the same as checking a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_unchecked("no account has this password: it only costs time")
            .unwrap_or_else(|_| String::new())
    })
}

/// Whether `password` matches the PHC string `stored` (`None`: no such account, checked
/// against a dummy hash so that it takes as long). The comparison is the crate's, in
/// constant time; an unreadable stored string never matches.
pub fn verify_password(stored: Option<&str>, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let (phc, real) = match stored {
        Some(s) => (s, true),
        None => (dummy_hash(), false),
    };
    let ok = PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false);
    ok && real
}

/// Whether two secrets are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Something an operator may do to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Take a reported case on (status `accepted`).
    Accept,
    /// Turn a case down (status `rejected`).
    Reject,
    /// Hand it to a department, a force of the grid or a staff member (with a due time).
    Dispatch,
    /// Move it to another level, with a reason.
    Escalate,
    /// Add a comment.
    Comment,
    /// Mark it handled (status `resolved`).
    Resolve,
    /// Confirm the handling (status `verified`).
    Verify,
    /// Close it.
    Close,
    /// Score the handling, with a verdict.
    Evaluate,
    /// Settle a conflict: write one of the concurrent values as a new edit.
    Settle,
}

impl Action {
    /// Every action, in the order the detail page offers them.
    pub const ALL: &'static [Action] = &[
        Action::Accept,
        Action::Reject,
        Action::Dispatch,
        Action::Escalate,
        Action::Comment,
        Action::Resolve,
        Action::Verify,
        Action::Close,
        Action::Evaluate,
        Action::Settle,
    ];

    /// The action's name, in URLs and forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Reject => "reject",
            Action::Dispatch => "dispatch",
            Action::Escalate => "escalate",
            Action::Comment => "comment",
            Action::Resolve => "resolve",
            Action::Verify => "verify",
            Action::Close => "close",
            Action::Evaluate => "evaluate",
            Action::Settle => "settle",
        }
    }

    /// The action of that name.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == name)
    }
}

/// Whether `role` may take `action`: a viewer nothing; a dispatcher accepts, rejects,
/// dispatches, escalates and comments; a supervisor also resolves, verifies, closes,
/// evaluates and settles conflicts; an admin everything.
pub fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Viewer => false,
        Role::Dispatcher => matches!(action, Accept | Reject | Dispatch | Escalate | Comment),
        Role::Supervisor | Role::Admin => true,
    }
}

/// How long a session lives without a request: 8 hours.
pub const SESSION_IDLE_MS: u64 = 8 * 3600 * 1000;

/// A logged-in operator's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The operator's account name.
    pub operator: String,
    /// Their role (re-read from the store on each request).
    pub role: Role,
    /// The per-session CSRF token every POST must carry.
    pub csrf: String,
    last_seen_ms: u64,
}

/// The sessions, in memory (a restart logs everyone out), keyed by their cookie's token.
pub struct Sessions {
    clock: Clock,
    inner: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    /// An empty session store on `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session for `operator`; returns its cookie token.
    pub fn create(&self, operator: &str, role: Role) -> Result<String, AuthError> {
        let token = new_token()?;
        let session = Session {
            operator: operator.to_owned(),
            role,
            csrf: new_token()?,
            last_seen_ms: (self.clock)(),
        };
        let mut map = lock(&self.inner);
        let now = (self.clock)();
        map.retain(|_, s| now.saturating_sub(s.last_seen_ms) < SESSION_IDLE_MS);
        map.insert(token.clone(), session);
        Ok(token)
    }

    /// The live session of `token`, its idle time reset; an expired one is removed.
    pub fn get(&self, token: &str) -> Option<Session> {
        let now = (self.clock)();
        let mut map = lock(&self.inner);
        let key = map
            .keys()
            .find(|k| constant_time_eq(k.as_bytes(), token.as_bytes()))
            .cloned()?;
        let session = map.get_mut(&key)?;
        if now.saturating_sub(session.last_seen_ms) >= SESSION_IDLE_MS {
            map.remove(&key);
            return None;
        }
        session.last_seen_ms = now;
        Some(session.clone())
    }

    /// Ends the session of `token` (logout).
    pub fn remove(&self, token: &str) {
        lock(&self.inner).remove(token);
    }

    /// Ends every session of `operator` (their account was removed).
    pub fn remove_operator(&self, operator: &str) {
        lock(&self.inner).retain(|_, s| s.operator != operator);
    }
}

/// Why a POST was refused by the CSRF check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("the form carries no CSRF token; reload the page and try again")]
    Missing,
    #[error("the form's CSRF token is not this session's; reload the page and try again")]
    Wrong,
    #[error("the request comes from another site (its Origin header is not this console's)")]
    CrossOrigin,
}

/// Checks a state-changing request: `origin` (the `Origin` header, if any) must be one of
/// `allowed_origins`, and `given` (the form field `csrf` or the `X-CSRF-Token` header) must
/// equal the session's token, compared in constant time.
pub fn check_csrf(
    expected: &str,
    given: Option<&str>,
    origin: Option<&str>,
    allowed_origins: &[String],
) -> Result<(), CsrfError> {
    if let Some(o) = origin {
        if !allowed_origins.iter().any(|a| a == o) {
            return Err(CsrfError::CrossOrigin);
        }
    }
    match given {
        None | Some("") => Err(CsrfError::Missing),
        Some(g) if constant_time_eq(g.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(CsrfError::Wrong),
    }
}

/// The login rate limit: at most `max_failures` failed logins per key (an account name, a
/// client address) within `window_ms`; then refused until the oldest failure leaves the
/// window.
pub struct RateLimiter {
    clock: Clock,
    max_failures: usize,
    window_ms: u64,
    failures: Mutex<HashMap<String, VecDeque<u64>>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("max_failures", &self.max_failures)
            .field("window_ms", &self.window_ms)
            .finish_non_exhaustive()
    }
}

/// The default limit: 5 failures per 15 minutes.
pub const LOGIN_FAILURES: usize = 5;
/// The default window.
pub const LOGIN_WINDOW_MS: u64 = 15 * 60 * 1000;

impl RateLimiter {
    /// A limiter of `max_failures` per `window_ms` on `clock`.
    pub fn new(clock: Clock, max_failures: usize, window_ms: u64) -> Self {
        Self {
            clock,
            max_failures: max_failures.max(1),
            window_ms,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` if any of `keys` is limited now.
    pub fn check(&self, keys: &[String]) -> Result<(), u64> {
        let now = (self.clock)();
        let mut map = lock(&self.failures);
        let mut wait = 0u64;
        for k in keys {
            if let Some(q) = map.get_mut(k) {
                while q
                    .front()
                    .is_some_and(|t| now.saturating_sub(*t) >= self.window_ms)
                {
                    q.pop_front();
                }
                if q.len() >= self.max_failures {
                    let oldest = q.front().copied().unwrap_or(now);
                    let ms = (oldest + self.window_ms).saturating_sub(now);
                    wait = wait.max(ms.div_ceil(1000).max(1));
                }
            }
        }
        if wait > 0 {
            Err(wait)
        } else {
            Ok(())
        }
    }

    /// Records a failed login for each of `keys`.
    pub fn fail(&self, keys: &[String]) {
        let now = (self.clock)();
        let mut map = lock(&self.failures);
        if map.len() > 100_000 {
            // Bounded memory under a flood of names: forget the expired ones.
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.saturating_sub(*t) < self.window_ms)
            });
        }
        for k in keys {
            let q = map.entry(k.clone()).or_default();
            q.push_back(now);
            while q.len() > self.max_failures {
                q.pop_front();
            }
        }
    }

    /// Forgets the failures of `key` (a successful login of that account).
    pub fn clear(&self, key: &str) {
        lock(&self.failures).remove(key);
    }
}

/// The local path a login goes on to: `next` if it is a path on this site (starting with one
/// `/`, no `//`, no backslash, no control characters), else `/`. Never an absolute URL, so
/// the login form is no open redirect.
pub fn sanitize_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control())
                && n.len() <= 2048 =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn manual_clock(start: u64) -> (Clock, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(start));
        let n = now.clone();
        (Arc::new(move || n.load(Ordering::SeqCst)), now)
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let phc = hash_password("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password(Some(&phc), "correct horse"));
        assert!(!verify_password(Some(&phc), "correct horsE"));
        assert!(!verify_password(None, "correct horse"));
        assert!(!verify_password(Some("not a phc string"), "correct horse"));
        // A fresh salt each time.
        assert_ne!(phc, hash_password("correct horse").expect("hash"));
        assert!(matches!(hash_password("short"), Err(AuthError::TooShort)));
    }

    #[test]
    fn roles_allow_their_actions_only() {
        for a in Action::ALL {
            assert!(!allows(Role::Viewer, *a));
            assert!(allows(Role::Admin, *a));
            assert!(allows(Role::Supervisor, *a));
        }
        assert!(allows(Role::Dispatcher, Action::Dispatch));
        assert!(allows(Role::Dispatcher, Action::Comment));
        assert!(!allows(Role::Dispatcher, Action::Close));
        assert!(!allows(Role::Dispatcher, Action::Settle));
        assert_eq!(Action::from_name("dispatch"), Some(Action::Dispatch));
        assert_eq!(Action::from_name("delete"), None);
    }

    #[test]
    fn sessions_expire_after_eight_idle_hours() {
        let (clock, now) = manual_clock(1_000);
        let sessions = Sessions::new(clock);
        let token = sessions.create("ana", Role::Viewer).expect("create");
        assert_eq!(token.len(), 64);
        let s = sessions.get(&token).expect("live");
        assert_eq!((s.operator.as_str(), s.role), ("ana", Role::Viewer));
        assert_eq!(s.csrf.len(), 64);
        now.fetch_add(SESSION_IDLE_MS - 1, Ordering::SeqCst);
        assert!(
            sessions.get(&token).is_some(),
            "a request resets the idle time"
        );
        now.fetch_add(SESSION_IDLE_MS, Ordering::SeqCst);
        assert!(sessions.get(&token).is_none(), "expired");
        assert!(sessions.get(&token).is_none(), "and removed");
        let t2 = sessions.create("bob", Role::Admin).expect("create");
        assert!(sessions.get("0000").is_none());
        sessions.remove(&t2);
        assert!(sessions.get(&t2).is_none());
    }

    #[test]
    fn csrf_needs_the_session_token_and_this_origin() {
        let allowed = vec!["http://127.0.0.1:8080".to_owned()];
        assert_eq!(check_csrf("abc", Some("abc"), None, &allowed), Ok(()));
        assert_eq!(
            check_csrf("abc", Some("abc"), Some("http://127.0.0.1:8080"), &allowed),
            Ok(())
        );
        assert_eq!(
            check_csrf("abc", None, None, &allowed),
            Err(CsrfError::Missing)
        );
        assert_eq!(
            check_csrf("abc", Some(""), None, &allowed),
            Err(CsrfError::Missing)
        );
        assert_eq!(
            check_csrf("abc", Some("abd"), None, &allowed),
            Err(CsrfError::Wrong)
        );
        assert_eq!(
            check_csrf("abc", Some("ab"), None, &allowed),
            Err(CsrfError::Wrong)
        );
        assert_eq!(
            check_csrf("abc", Some("abc"), Some("https://evil.example"), &allowed),
            Err(CsrfError::CrossOrigin)
        );
    }

    #[test]
    fn rate_limit_refuses_after_five_failures_until_the_window_passes() {
        let (clock, now) = manual_clock(0);
        let limiter = RateLimiter::new(clock, LOGIN_FAILURES, LOGIN_WINDOW_MS);
        let keys = vec!["name:ana".to_owned(), "ip:127.0.0.1".to_owned()];
        for _ in 0..LOGIN_FAILURES {
            assert_eq!(limiter.check(&keys), Ok(()));
            limiter.fail(&keys);
            now.fetch_add(1_000, Ordering::SeqCst);
        }
        // The first failure was at 0, it is now 5 s: 895 s to go.
        assert_eq!(limiter.check(&keys), Err(895));
        assert!(limiter.check(&["name:bob".to_owned()]).is_ok());
        assert!(limiter.check(&["ip:127.0.0.1".to_owned()]).is_err());
        now.store(LOGIN_WINDOW_MS, Ordering::SeqCst);
        // The first failure left the window: one more attempt is allowed.
        assert_eq!(limiter.check(&keys), Ok(()));
        limiter.fail(&keys);
        assert!(limiter.check(&keys).is_err());
        limiter.clear("name:ana");
        assert!(limiter.check(&["name:ana".to_owned()]).is_ok());
    }

    #[test]
    fn next_is_a_local_path_only() {
        assert_eq!(sanitize_next(Some("/incident/x?y=1")), "/incident/x?y=1");
        assert_eq!(sanitize_next(Some("/")), "/");
        assert_eq!(sanitize_next(None), "/");
        assert_eq!(sanitize_next(Some("https://evil.example/")), "/");
        assert_eq!(sanitize_next(Some("//evil.example/")), "/");
        assert_eq!(sanitize_next(Some("/\\evil.example")), "/");
        assert_eq!(sanitize_next(Some("evil")), "/");
        assert_eq!(sanitize_next(Some("/a\nb")), "/");
    }
}
