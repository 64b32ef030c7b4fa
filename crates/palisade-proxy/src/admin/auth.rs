//! Who is calling the admin API: a bearer token (`Authorization: Bearer …`, compared by its
//! SHA-256 with `admin.tokens`, in constant time) or a console session (an HttpOnly,
//! SameSite=Strict cookie made by a login with such a token). A session's changes need its
//! CSRF token in `X-CSRF-Token` and, when the browser sends one, an `Origin` of the admin
//! listener itself. Sessions end at their lifetime, at logout, and as soon as the token they
//! were made with leaves the config. Logins are throttled per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine as _;
use http::{header, HeaderMap, Method};
use palisade_config::admin::{AdminApi, AdminRole, AdminToken};

/// The session cookie's name.
pub const COOKIE: &str = "palisade_admin";
/// The most sessions kept; the oldest goes first.
const MAX_SESSIONS: usize = 1024;
/// Failed logins allowed per client address in [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Session {
    token: [u8; 32],
    csrf: String,
    created: Instant,
    expires: Instant,
}

/// The console's sessions and the login throttle.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<[u8; 32], Session>,
    failures: HashMap<IpAddr, (u32, Instant)>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Who {
    /// The token holder's name.
    pub name: String,
    /// Its role.
    pub role: AdminRole,
    /// The session's CSRF token, when the caller came with a session cookie.
    pub csrf: Option<String>,
    /// Seconds the session has left.
    pub expires_in: Option<u64>,
}

/// Why a caller was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No credential, or one that is not (or no longer) valid.
    Unauthenticated(&'static str),
    /// A session's change without its CSRF token, or from another origin.
    Csrf(&'static str),
    /// Too many failed logins from this address.
    Throttled,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn random_token() -> Option<String> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn same(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The configured token a presented one is, comparing every entry (constant time each).
fn token_of<'a>(api: &'a AdminApi, presented: &str) -> Option<&'a AdminToken> {
    let h = sha256(presented.as_bytes());
    let mut found = None;
    for t in &api.tokens {
        if same(&t.hash, &h) {
            found = Some(t);
        }
    }
    found
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Whether an `Origin` names the admin listener the request came to (`Host`).
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // no Origin: not a cross-site browser request (browsers send it on every POST)
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    bare.is_some() && bare == host
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who is calling, or why not.
    pub fn authenticate(
        &self,
        api: &AdminApi,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Who, Denied> {
        if api.tokens.is_empty() {
            return Err(Denied::Unauthenticated(
                "no admin tokens are configured: add admin.tokens (palisade keys new --admin operator)",
            ));
        }
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or(Denied::Unauthenticated(
                    "use Authorization: Bearer and an admin token",
                ))?;
            let t = token_of(api, token)
                .ok_or(Denied::Unauthenticated("the admin token is not valid"))?;
            return Ok(Who {
                name: t.name.clone(),
                role: t.role,
                csrf: None,
                expires_in: None,
            });
        }
        let Some(sid) = cookie(headers, COOKIE) else {
            return Err(Denied::Unauthenticated(
                "log in to the console, or send Authorization: Bearer and an admin token",
            ));
        };
        let id = sha256(sid.as_bytes());
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(s) = inner.by_id.get(&id).cloned() else {
            return Err(Denied::Unauthenticated(
                "the session is not known (log in again)",
            ));
        };
        if now >= s.expires {
            inner.by_id.remove(&id);
            return Err(Denied::Unauthenticated(
                "the session expired (log in again)",
            ));
        }
        // a token removed from the config ends its sessions at once
        let Some(t) = api.tokens.iter().find(|t| same(&t.hash, &s.token)) else {
            inner.by_id.remove(&id);
            return Err(Denied::Unauthenticated(
                "the token of this session was revoked (log in again)",
            ));
        };
        drop(inner);
        if !matches!(*method, Method::GET | Method::HEAD) {
            let sent = headers
                .get("x-csrf-token")
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !same(sent, s.csrf.as_bytes()) {
                return Err(Denied::Csrf(
                    "a change made with a session needs its X-CSRF-Token",
                ));
            }
            if !same_origin(headers) {
                return Err(Denied::Csrf("the request comes from another origin"));
            }
        }
        Ok(Who {
            name: t.name.clone(),
            role: t.role,
            csrf: Some(s.csrf),
            expires_in: Some(s.expires.saturating_duration_since(now).as_secs()),
        })
    }

    /// Checks a login's token; on success a new session and its cookie value.
    pub fn login(
        &self,
        api: &AdminApi,
        client: IpAddr,
        token: &str,
    ) -> Result<(String, Who), Denied> {
        let now = Instant::now();
        {
            let mut inner = self.lock();
            inner
                .failures
                .retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if inner
                .failures
                .get(&client)
                .is_some_and(|(n, _)| *n >= MAX_FAILURES)
            {
                return Err(Denied::Throttled);
            }
        }
        let Some(t) = token_of(api, token.trim()) else {
            let mut inner = self.lock();
            let e = inner.failures.entry(client).or_insert((0, now));
            e.0 += 1;
            return Err(Denied::Unauthenticated("the admin token is not valid"));
        };
        let (Some(sid), Some(csrf)) = (random_token(), random_token()) else {
            return Err(Denied::Unauthenticated(
                "no randomness available for a session",
            ));
        };
        let mut inner = self.lock();
        if inner.by_id.len() >= MAX_SESSIONS {
            inner.by_id.retain(|_, s| s.expires > now);
            if inner.by_id.len() >= MAX_SESSIONS {
                let oldest = inner
                    .by_id
                    .iter()
                    .min_by_key(|(_, s)| s.created)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    inner.by_id.remove(&k);
                }
            }
        }
        inner.by_id.insert(
            sha256(sid.as_bytes()),
            Session {
                token: t.hash,
                csrf: csrf.clone(),
                created: now,
                expires: now + api.session_ttl,
            },
        );
        Ok((
            sid,
            Who {
                name: t.name.clone(),
                role: t.role,
                csrf: Some(csrf),
                expires_in: Some(api.session_ttl.as_secs()),
            },
        ))
    }

    /// Ends the session of this request's cookie.
    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(sid) = cookie(headers, COOKIE) {
            self.lock().by_id.remove(&sha256(sid.as_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn api(token: &str, role: AdminRole) -> AdminApi {
        AdminApi {
            tokens: vec![AdminToken {
                name: "ada".into(),
                role,
                hash: sha256(token.as_bytes()),
            }],
            ..AdminApi::default()
        }
    }

    #[test]
    fn bearer_tokens_sessions_csrf_and_revocation() {
        let s = Sessions::default();
        let a = api("t0ken", AdminRole::Operator);
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ken"),
        );
        assert!(s.authenticate(&a, &Method::POST, &h).is_ok());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(matches!(
            s.authenticate(&a, &Method::GET, &h),
            Err(Denied::Unauthenticated(_))
        ));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let (sid, who) = s.login(&a, ip, "t0ken").expect("login");
        let csrf = who.csrf.expect("csrf");
        let mut c = HeaderMap::new();
        c.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={sid}")).expect("cookie"),
        );
        assert!(s.authenticate(&a, &Method::GET, &c).is_ok());
        assert!(matches!(
            s.authenticate(&a, &Method::POST, &c),
            Err(Denied::Csrf(_))
        ));
        c.insert("x-csrf-token", HeaderValue::from_str(&csrf).expect("csrf"));
        c.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9901"));
        c.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(matches!(
            s.authenticate(&a, &Method::POST, &c),
            Err(Denied::Csrf(_))
        ));
        c.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9901"),
        );
        assert!(s.authenticate(&a, &Method::POST, &c).is_ok());
        // the token leaves the config: its session ends
        let other = api("another", AdminRole::Operator);
        assert!(s.authenticate(&other, &Method::GET, &c).is_err());
        assert!(s.authenticate(&a, &Method::GET, &c).is_err());
    }

    #[test]
    fn a_session_ends_at_its_lifetime() {
        let s = Sessions::default();
        let mut a = api("t0ken", AdminRole::Viewer);
        a.session_ttl = Duration::ZERO;
        let (sid, _) = s.login(&a, [127, 0, 0, 1].into(), "t0ken").expect("login");
        let mut c = HeaderMap::new();
        c.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={sid}")).expect("cookie"),
        );
        assert_eq!(
            s.authenticate(&a, &Method::GET, &c).err(),
            Some(Denied::Unauthenticated(
                "the session expired (log in again)"
            ))
        );
        // and it is gone, not only refused
        assert!(matches!(
            s.authenticate(&a, &Method::GET, &c),
            Err(Denied::Unauthenticated(
                "the session is not known (log in again)"
            ))
        ));
    }

    #[test]
    fn failed_logins_are_throttled_per_address() {
        let s = Sessions::default();
        let a = api("t0ken", AdminRole::Viewer);
        let ip: IpAddr = [10, 0, 0, 9].into();
        for _ in 0..MAX_FAILURES {
            assert!(matches!(
                s.login(&a, ip, "guess"),
                Err(Denied::Unauthenticated(_))
            ));
        }
        assert_eq!(s.login(&a, ip, "t0ken").err(), Some(Denied::Throttled));
        assert!(s.login(&a, [10, 0, 0, 10].into(), "t0ken").is_ok());
    }
}
