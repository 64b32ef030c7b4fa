//! `api_key`: a consumer proves who it is with a key from a header (or, where a route allows
//! it, a query parameter). Config holds only hashes of keys.

use std::sync::Arc;

use http::HeaderName;
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, RequestHead, Stage, Verdict,
};
use serde::Deserialize;

use crate::consumers::{Directory, KeyCheck};
use crate::refusals;
use crate::util::now_secs;

/// Config of the `api_key` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyPolicySpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// The header that carries the key. Default `x-api-key`.
    #[serde(default)]
    pub header: Option<String>,
    /// A query parameter that may carry the key instead (keys in URLs end up in logs and
    /// browser histories: `validate` warns).
    #[serde(default)]
    pub query: Option<String>,
    /// Forward the key to the upstream. Default false: it is removed.
    #[serde(default)]
    pub keep_credential: bool,
}

/// The runtime `api_key` policy.
#[derive(Debug)]
pub struct ApiKey {
    header: HeaderName,
    query: Option<String>,
    keep: bool,
    dir: Arc<Directory>,
}

impl ApiKeyPolicySpec {
    /// Builds the policy.
    pub fn build(&self, dir: &Arc<Directory>) -> Result<ApiKey, Vec<SpecError>> {
        let mut errors = Vec::new();
        let header = match HeaderName::try_from(self.header.as_deref().unwrap_or("x-api-key")) {
            Ok(h) => Some(h),
            Err(_) => {
                errors.push(SpecError::new("header", "not a valid header name"));
                None
            }
        };
        if self.query.as_deref().is_some_and(str::is_empty) {
            errors.push(SpecError::new("query", "must not be empty"));
        }
        if !dir.has_keys() {
            errors.push(SpecError::new(
                "type",
                "no consumer has an API key: add `api_keys` to a consumer (`palisade keys new` makes one)",
            ));
        }
        match header {
            Some(header) if errors.is_empty() => Ok(ApiKey {
                header,
                query: self.query.clone(),
                keep: self.keep_credential,
                dir: dir.clone(),
            }),
            _ => Err(errors),
        }
    }
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[async_trait::async_trait]
impl Policy for ApiKey {
    fn kind(&self) -> &'static str {
        "api_key"
    }
    fn stage(&self) -> Stage {
        Stage::Authn
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY
            .with(Phase::RequestHead)
            .with(Phase::Upstream)
    }

    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let mut values = req.headers.get_all(&self.header).iter();
        let presented = match (values.next(), values.next()) {
            (Some(v), None) => Some(v.to_str().unwrap_or("").trim().to_string()),
            (Some(_), Some(_)) => {
                return Ok(Verdict::Reject(refusals::invalid_key(
                    self.header.as_str(),
                    "send exactly one API key",
                )))
            }
            (None, _) => self
                .query
                .as_deref()
                .and_then(|q| query_value(req.uri.query().unwrap_or(""), q))
                .map(str::to_string),
        };
        let Some(key) = presented.filter(|k| !k.is_empty()) else {
            return Ok(Verdict::Reject(refusals::missing_key(self.header.as_str())));
        };
        match self.dir.check_key(&key, now_secs()) {
            KeyCheck::Valid(c, label) => {
                let p = c.principal("api_key");
                if x.set_principal(p).is_err() {
                    return Ok(Verdict::Reject(refusals::forbidden(
                        "the request carries two identities",
                    )));
                }
                if let Some(l) = label {
                    x.annotations.insert("api_key", l.to_string());
                }
                Ok(Verdict::Continue)
            }
            KeyCheck::Expired => Ok(Verdict::Reject(refusals::invalid_key(
                self.header.as_str(),
                "the API key has expired",
            ))),
            KeyCheck::Revoked => Ok(Verdict::Reject(refusals::invalid_key(
                self.header.as_str(),
                "the API key was revoked",
            ))),
            KeyCheck::Unknown => Ok(Verdict::Reject(refusals::invalid_key(
                self.header.as_str(),
                "the API key is not known",
            ))),
        }
    }

    async fn on_upstream(&self, req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        if self.keep {
            return Ok(Verdict::Continue);
        }
        req.headers.remove(&self.header);
        if let (Some(name), Some(pq)) = (&self.query, req.uri.path_and_query()) {
            if let Some(q) = pq.query() {
                let kept: Vec<&str> = q
                    .split('&')
                    .filter(|kv| kv.split('=').next() != Some(name.as_str()))
                    .collect();
                let new_pq = if kept.is_empty() {
                    pq.path().to_string()
                } else {
                    format!("{}?{}", pq.path(), kept.join("&"))
                };
                let mut parts = req.uri.clone().into_parts();
                parts.path_and_query = new_pq.parse().ok();
                if let Ok(u) = http::Uri::from_parts(parts) {
                    req.uri = u;
                }
            }
        }
        Ok(Verdict::Continue)
    }
}
