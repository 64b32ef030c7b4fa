//! The refusals of the identity policies, with the `WWW-Authenticate` challenges RFC 6750 and
//! RFC 9110 ask for. Details explain what failed, never echo the credential.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, StatusCode};
use palisade_core::Rejection;

/// No credential where the route needs one.
pub const MISSING: &str = "auth.missing_credential";
/// A bearer token that does not verify or whose claims do not hold.
pub const INVALID_TOKEN: &str = "auth.invalid_token";
/// An API key that is unknown or expired.
pub const INVALID_KEY: &str = "auth.invalid_api_key";
/// Authenticated, but not allowed.
pub const FORBIDDEN: &str = "auth.forbidden";
/// A token without a scope the route needs.
pub const INSUFFICIENT_SCOPE: &str = "auth.insufficient_scope";
/// Keys or the introspection endpoint cannot be reached: we cannot decide.
pub const UNAVAILABLE: &str = "auth.unavailable";

fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

fn challenge(v: String) -> HeaderValue {
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"palisade\""))
}

/// 401 for a missing bearer token.
pub fn missing_bearer() -> Rejection {
    Rejection::new(StatusCode::UNAUTHORIZED, MISSING, "Authentication required")
        .with_detail("send a bearer token in the Authorization header")
        .with_header(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"palisade\""),
        )
}

/// 401 for a token that does not verify; `why` is ours, safe to show.
pub fn invalid_token(why: &str) -> Rejection {
    Rejection::new(StatusCode::UNAUTHORIZED, INVALID_TOKEN, "Invalid token")
        .with_detail(why.to_string())
        .with_header(
            WWW_AUTHENTICATE,
            challenge(format!(
                "Bearer realm=\"palisade\", error=\"invalid_token\", error_description=\"{}\"",
                quoted(why)
            )),
        )
}

/// 401 for a missing API key, naming where it is expected.
pub fn missing_key(header: &str) -> Rejection {
    Rejection::new(StatusCode::UNAUTHORIZED, MISSING, "Authentication required")
        .with_detail(format!("send an API key in the {header} header"))
        .with_header(
            WWW_AUTHENTICATE,
            challenge(format!(
                "ApiKey realm=\"palisade\", header=\"{}\"",
                quoted(header)
            )),
        )
}

/// 401 for an unknown or expired API key.
pub fn invalid_key(header: &str, why: &str) -> Rejection {
    Rejection::new(StatusCode::UNAUTHORIZED, INVALID_KEY, "Invalid API key")
        .with_detail(why.to_string())
        .with_header(
            WWW_AUTHENTICATE,
            challenge(format!(
                "ApiKey realm=\"palisade\", header=\"{}\"",
                quoted(header)
            )),
        )
}

/// 403: authenticated, not allowed.
pub fn forbidden(why: &str) -> Rejection {
    Rejection::new(StatusCode::FORBIDDEN, FORBIDDEN, "Forbidden").with_detail(why.to_string())
}

/// 403 with the bearer challenge naming the scopes needed.
pub fn insufficient_scope(scopes: &[String]) -> Rejection {
    let list = scopes.join(" ");
    Rejection::new(
        StatusCode::FORBIDDEN,
        INSUFFICIENT_SCOPE,
        "Insufficient scope",
    )
    .with_detail(format!(
        "the token lacks a scope this operation needs: {list}"
    ))
    .with_header(
        WWW_AUTHENTICATE,
        challenge(format!(
            "Bearer realm=\"palisade\", error=\"insufficient_scope\", scope=\"{}\"",
            quoted(&list)
        )),
    )
}

/// 503: the keys or the introspection endpoint cannot be reached.
pub fn unavailable(what: &str) -> Rejection {
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        UNAVAILABLE,
        "Authentication unavailable",
    )
    .with_detail(format!("{what}; retry shortly"))
    .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("5"))
}
