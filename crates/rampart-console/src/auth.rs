//! Logins, sessions and the failed-login limiter.

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
/// Failed logins allowed per user name within [`WINDOW`]...
const MAX_FAILURES_USER: u32 = 5;
/// ... and per client address (higher: several people may share one address).
const MAX_FAILURES_ADDRESS: u32 = 20;
const WINDOW: Duration = Duration::from_secs(300);
/// Entries kept before old ones are pruned.
const MAX_TRACKED: usize = 10_000;

/// Counts failed logins per key (`ip:...`, `user:...`) within a window.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Limiter {
    /// How long until `keys` may try again, when one of them is over the limit.
    pub fn blocked(&self, keys: &[String]) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| map.get(k).map(|v| (k, v)))
            .filter(|(k, (n, since))| {
                let max = if k.starts_with("user:") {
                    MAX_FAILURES_USER
                } else {
                    MAX_FAILURES_ADDRESS
                };
                *n >= max && since.elapsed() < WINDOW
            })
            .map(|(_, v)| v)
            .map(|(_, since)| WINDOW.saturating_sub(since.elapsed()))
            .max()
    }

    pub fn failed(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_TRACKED {
            map.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        for k in keys {
            let e = map.entry(k.clone()).or_insert((0, Instant::now()));
            if e.1.elapsed() >= WINDOW {
                *e = (0, Instant::now());
            }
            e.0 += 1;
        }
    }

    pub fn succeeded(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            map.remove(k);
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
    fn limiter_blocks_a_user_after_5_failures_an_address_after_20() {
        let l = Limiter::default();
        let keys = vec!["ip:1".to_string(), "user:ann".to_string()];
        for _ in 0..4 {
            l.failed(&keys);
        }
        assert_eq!(l.blocked(&keys), None);
        l.failed(&keys);
        assert!(l.blocked(&keys).is_some());
        assert!(
            l.blocked(&["user:ann".to_string()]).is_some(),
            "the user name is blocked from any address"
        );
        assert_eq!(
            l.blocked(&["ip:1".to_string(), "user:bob".to_string()]),
            None
        );
        for i in 0..15 {
            l.failed(&["ip:1".to_string(), format!("user:u{i}")]);
        }
        assert!(
            l.blocked(&["ip:1".to_string(), "user:bob".to_string()])
                .is_some(),
            "20 failures from one address block it for every name"
        );
        assert_eq!(l.blocked(&["ip:2".to_string()]), None);
        l.succeeded(&keys);
        assert_eq!(l.blocked(&keys), None);
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
