//! Small helpers the identity policies share.

use http::header::AUTHORIZATION;
use palisade_core::{Rejection, RequestHead};
use serde_json::Value;

use crate::refusals;

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A claim holding words: a space-separated string (`scope`) or a list (`scp`, `groups`).
pub(crate) fn words(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The bearer token of the request: `Ok(None)` without one (or with another scheme), a
/// refusal for several Authorization headers or one that is not text.
pub(crate) fn bearer(req: &RequestHead) -> Result<Option<&str>, Rejection> {
    let mut values = req.headers.get_all(AUTHORIZATION).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return if req.headers.contains_key(AUTHORIZATION) {
            Err(refusals::invalid_token("send one Authorization header"))
        } else {
            Ok(None)
        };
    };
    let v = v
        .to_str()
        .map_err(|_| refusals::invalid_token("the Authorization header is not text"))?;
    let Some((scheme, token)) = v.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    Ok(Some(token.trim()).filter(|t| !t.is_empty()))
}
