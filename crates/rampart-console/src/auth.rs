//! Logins, sessions, the failed-login limiter and the password-check pool.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use rampart_server::control::Session;
use rampart_server::{Role, ServerContext};

use crate::api::{err, ApiError};

/// The session cookie. `__Host-`: browsers accept it only with `Secure`, `Path=/` and no
/// `Domain`, so no other site or subdomain can plant it.
pub(crate) const COOKIE: &str = "__Host-rampart_session";
/// How long a session lasts (absolute, not sliding).
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins of one user name from one source before each further attempt waits...
const FREE_FAILURES: u32 = 5;
/// ... 1 s after the [`FREE_FAILURES`]th failure, doubling with each one, up to this.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Failed logins allowed per source (any user names) within [`WINDOW`]: one address sprays
/// no more guesses than this across names.
const MAX_FAILURES_SOURCE: u32 = 30;
const WINDOW: Duration = Duration::from_secs(300);
/// A (user, source) pair heard nothing from this long starts over.
const FORGET: Duration = Duration::from_secs(3600);
/// Entries kept before old ones are pruned.
const MAX_TRACKED: usize = 10_000;
/// Password checks (Argon2id, 19 MiB and ~50 ms of one core each) that run at once...
pub(crate) const PASSWORD_CHECKS: usize = 2;
/// ... and that may wait for one; more logins are answered 503 at once.
pub(crate) const PASSWORD_CHECKS_QUEUED: usize = 16;

/// Where a login comes from, as the limits count it: the IPv4 address, or the /64 of an IPv6
/// address (a host is routinely given a whole /64, so per-address limits would mean nothing).
pub(crate) fn source_of(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[derive(Debug)]
struct Pair {
    /// Failed attempts in a row (an attempt counts as failed until its password checked).
    failures: u32,
    /// The next attempt may not start before this.
    next: Instant,
    last: Instant,
}

#[derive(Debug, Default)]
struct LimiterState {
    /// Per (user name, source).
    pairs: HashMap<(String, String), Pair>,
    /// Per source: failures in the window, and when the window began.
    sources: HashMap<String, (u32, Instant)>,
}

/// Failed-login limits: a progressive delay per (user name, source), and a cap per source.
/// There is no lock of a user name for everyone: guesses from one source never keep the user
/// out from another. An attempt is counted before its password is checked (and uncounted if
/// it was right), so parallel guesses cannot all pass the check.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    state: Mutex<LimiterState>,
}

/// Delay before the attempt after `failures` failures in a row.
fn delay(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (failures - FREE_FAILURES).min(20);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

impl Limiter {
    /// Counts an attempt of `user` from `source` as failed, or says how long to wait when it
    /// may not be made now.
    pub fn begin(&self, user: &str, source: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.pairs.len() + st.sources.len() > MAX_TRACKED {
            st.pairs
                .retain(|_, p| now.duration_since(p.last) < FORGET || p.next > now);
            st.sources
                .retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        }
        let src = st.sources.entry(source.to_string()).or_insert((0, now));
        if now.duration_since(src.1) >= WINDOW {
            *src = (0, now);
        }
        if src.0 >= MAX_FAILURES_SOURCE {
            return Err(WINDOW.saturating_sub(now.duration_since(src.1)));
        }
        let key = (user.to_string(), source.to_string());
        if let Some(p) = st.pairs.get(&key) {
            if p.next > now {
                return Err(p.next - now);
            }
        }
        if let Some(src) = st.sources.get_mut(source) {
            src.0 += 1;
        }
        let p = st.pairs.entry(key).or_insert(Pair {
            failures: 0,
            next: now,
            last: now,
        });
        if now.duration_since(p.last) >= FORGET {
            p.failures = 0;
        }
        p.failures += 1;
        p.last = now;
        p.next = now + delay(p.failures);
        Ok(())
    }

    /// The attempt [`begin`](Self::begin) counted had a wrong password: the pair's delay
    /// starts again from now, when the failure is known. Counted from `begin` alone, a
    /// password check slower than the delay (a loaded host, a queue of checks) would use the
    /// delay up before the guesser even got the answer.
    pub fn failed(&self, user: &str, source: &str) {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = st.pairs.get_mut(&(user.to_string(), source.to_string())) {
            p.last = now;
            p.next = p.next.max(now + delay(p.failures));
        }
    }

    /// The attempt [`begin`](Self::begin) counted had the right password: the pair starts
    /// over and the source's count loses it.
    pub fn succeeded(&self, user: &str, source: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.pairs.remove(&(user.to_string(), source.to_string()));
        if let Some(src) = st.sources.get_mut(source) {
            src.0 = src.0.saturating_sub(1);
        }
    }
}

/// The session token of the request's cookie.
pub(crate) fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The request's valid session with at least `min`, or 401/403.
pub(crate) async fn require(
    ctx: &ServerContext,
    headers: &HeaderMap,
    min: Role,
) -> Result<Session, ApiError> {
    let Some(t) = token(headers) else {
        return Err(err(StatusCode::UNAUTHORIZED, "log in first"));
    };
    let ctx = ctx.clone();
    let s = tokio::task::spawn_blocking(move || ctx.control().session(&t))
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "session expired; log in again"))?;
    if s.role < min {
        return Err(err(
            StatusCode::FORBIDDEN,
            format!(
                "user {:?} has role {}; this needs {}",
                s.username,
                s.role.as_str(),
                min.as_str()
            ),
        ));
    }
    Ok(s)
}

/// The `Set-Cookie` value of a new session.
pub(crate) fn set_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_delays_a_user_per_source_and_caps_a_source() {
        let l = Limiter::default();
        for _ in 0..4 {
            assert_eq!(l.begin("ann", "10.0.0.1"), Ok(()));
        }
        // The fifth failure in a row: the next attempt waits (the attempt itself still ran).
        assert_eq!(l.begin("ann", "10.0.0.1"), Ok(()));
        let wait = l.begin("ann", "10.0.0.1").expect_err("delayed");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Not for the same user from elsewhere, nor another user from there.
        assert_eq!(l.begin("ann", "10.0.0.2"), Ok(()));
        assert_eq!(l.begin("bob", "10.0.0.1"), Ok(()));
        // A right password starts the pair over.
        l.succeeded("ann", "10.0.0.2");
        // The delay runs from when a failure is known, not from when its check began.
        let l2 = Limiter::default();
        for _ in 0..5 {
            assert_eq!(l2.begin("dan", "10.0.0.5"), Ok(()));
        }
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            l2.begin("dan", "10.0.0.5"),
            Ok(()),
            "the check outlasted the delay"
        );
        l2.failed("dan", "10.0.0.5");
        let wait = l2
            .begin("dan", "10.0.0.5")
            .expect_err("delayed from the failure");
        assert!(wait > Duration::from_millis(1500), "{wait:?}");
        // One source spraying names is capped.
        for i in 0..MAX_FAILURES_SOURCE {
            let _ = l.begin(&format!("u{i}"), "10.0.0.3");
        }
        assert!(l.begin("carol", "10.0.0.3").is_err());
        assert_eq!(l.begin("carol", "10.0.0.4"), Ok(()));
        assert_eq!(delay(4), Duration::ZERO);
        assert_eq!(delay(5), Duration::from_secs(1));
        assert_eq!(delay(7), Duration::from_secs(4));
        assert_eq!(delay(40), MAX_DELAY);
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_slash_64s() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("address");
        assert_eq!(source_of(ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            format!("a=b; {COOKIE}=rmps_x; c=d")
                .parse()
                .expect("header"),
        );
        assert_eq!(token(&h).as_deref(), Some("rmps_x"));
        assert!(set_cookie("t").contains("HttpOnly; Secure; SameSite=Strict"));
    }
}
