//! The web console: a login page and a single page served from assets embedded in the
//! binary (no CDN, no framework), under a strict Content-Security-Policy: scripts and styles
//! only from the console itself, no inline script, no framing. Everything shown comes from
//! the admin API and is written into the page as text, never as markup, so an attack payload
//! in an event stays a string.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::auth::{Denied, COOKIE};
use super::{audit, denied, reply};
use crate::body::ProxyBody;
use crate::Shared;

const APP_HTML: &str = include_str!("console/index.html");
const LOGIN_HTML: &str = include_str!("console/login.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn hardened(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // same-origin, not no-referrer: under the latter browsers send `Origin: null` on the
    // console's own form posts, which the CSRF check refuses
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// The login page with one of our own messages (never the caller's input).
fn login_page(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let html = LOGIN_HTML.replace("{{message}}", message);
    hardened(reply(status, "text/html; charset=utf-8", html))
}

fn redirect(to: &'static str) -> Response<ProxyBody> {
    let mut r = reply(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    hardened(r)
}

fn session_cookie(value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .ok()
}

/// The `token` field of a login form.
fn token_field(body: &[u8]) -> Option<String> {
    palisade_core::form::urlencoded(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

pub async fn answer(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let api = shared.runtime.load().config.admin_api.clone();
    match (method.clone(), path.as_str()) {
        (Method::GET, "/" | "/console") => redirect("/console/"),
        (Method::GET, "/console/app.js") => hardened(reply(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            Bytes::from_static(APP_JS.as_bytes()),
        )),
        (Method::GET, "/console/app.css") => hardened(reply(
            StatusCode::OK,
            "text/css; charset=utf-8",
            Bytes::from_static(APP_CSS.as_bytes()),
        )),
        (Method::GET, "/console/") => {
            match shared.sessions.authenticate(&api, &method, req.headers()) {
                Ok(_) => hardened(reply(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    Bytes::from_static(APP_HTML.as_bytes()),
                )),
                Err(Denied::Unauthenticated(why)) if api.tokens.is_empty() => {
                    login_page(StatusCode::OK, why)
                }
                Err(_) => login_page(StatusCode::OK, ""),
            }
        }
        (Method::POST, "/console/login") => {
            // a login form posted from another site is refused like any cross-site change
            let cross = !super::auth::same_origin(req.headers());
            if cross {
                audit(shared, peer, None, &method, &path, StatusCode::FORBIDDEN);
                return hardened(denied(Denied::Csrf("the login comes from another origin")));
            }
            let body = match Limited::new(req.into_body(), 8192).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return login_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
                }
            };
            let token = token_field(&body).unwrap_or_default();
            match shared.sessions.login(&api, peer.ip(), &token) {
                Ok((sid, who)) => {
                    audit(
                        shared,
                        peer,
                        Some(&who),
                        &method,
                        &path,
                        StatusCode::SEE_OTHER,
                    );
                    let mut r = redirect("/console/");
                    if let Some(c) = session_cookie(&sid, api.session_ttl.as_secs()) {
                        r.headers_mut().insert(header::SET_COOKIE, c);
                    }
                    r
                }
                Err(Denied::Throttled) => {
                    audit(
                        shared,
                        peer,
                        None,
                        &method,
                        &path,
                        StatusCode::TOO_MANY_REQUESTS,
                    );
                    let mut r = login_page(
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too many failed logins from this address: wait a minute.",
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                    r
                }
                Err(_) => {
                    audit(shared, peer, None, &method, &path, StatusCode::UNAUTHORIZED);
                    login_page(StatusCode::UNAUTHORIZED, "That token is not valid.")
                }
            }
        }
        (Method::POST, "/console/logout") => {
            match shared.sessions.authenticate(&api, &method, req.headers()) {
                Ok(who) => {
                    shared.sessions.logout(req.headers());
                    audit(
                        shared,
                        peer,
                        Some(&who),
                        &method,
                        &path,
                        StatusCode::NO_CONTENT,
                    );
                    let mut r = reply(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", "");
                    if let Some(c) = session_cookie("", 0) {
                        r.headers_mut().insert(header::SET_COOKIE, c);
                    }
                    hardened(r)
                }
                Err(d) => {
                    audit(shared, peer, None, &method, &path, StatusCode::FORBIDDEN);
                    hardened(denied(d))
                }
            }
        }
        _ => hardened(super::problem(
            StatusCode::NOT_FOUND,
            "admin.not_found",
            "Not found",
            "the console is at /console/",
        )),
    }
}
