//! `introspection`: opaque bearer tokens, checked with the issuer's RFC 7662 endpoint.
//!
//! Palisade authenticates to the endpoint as a client (HTTP Basic). Answers are cached by the
//! token's SHA-256, never longer than `cache_ttl` nor past the token's `exp`, so a revoked
//! token stops working within `cache_ttl`. `active: false` is a refusal; so is an `exp` in the
//! past, another issuer, or an audience this API does not accept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::AUTHORIZATION;
use palisade_core::duration::Dur;
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Principal, RequestHead, Stage, Verdict,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::consumers::{hash_key, Directory};
use crate::issuer::Issuer;
use crate::refusals;
use crate::util::{bearer, now_secs, words};

/// Config of the `introspection` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionSpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// The top-level issuer whose endpoint checks the tokens (it needs `client_id` and
    /// `client_secret_env`).
    pub issuer: String,
    /// Longest an answer is remembered. Default 30s; `0s` asks every time.
    #[serde(default)]
    pub cache_ttl: Option<Dur>,
    /// Forward the Authorization header to the upstream. Default false.
    #[serde(default)]
    pub keep_token: bool,
}

#[derive(Debug, Clone)]
enum Answer {
    Active(Principal),
    Inactive(&'static str),
}

/// Answers by token hash, with when they stop being trusted.
type AnswerCache = HashMap<[u8; 32], (Answer, i64)>;

/// The runtime `introspection` policy.
#[derive(Debug)]
pub struct Introspect {
    issuer: Arc<Issuer>,
    ttl: i64,
    keep: bool,
    dir: Arc<Directory>,
    cache: Mutex<AnswerCache>,
}

const CACHE_MAX: usize = 10_000;

impl IntrospectionSpec {
    /// Builds the policy against the configured issuers.
    pub fn build(
        &self,
        issuers: &HashMap<String, Arc<Issuer>>,
        dir: &Arc<Directory>,
    ) -> Result<Introspect, Vec<SpecError>> {
        let Some(issuer) = issuers.get(&self.issuer) else {
            return Err(vec![SpecError::new(
                "issuer",
                format!(
                    "no issuer named `{}` in the top-level `issuers`",
                    self.issuer
                ),
            )]);
        };
        if issuer.introspection.is_none() {
            return Err(vec![SpecError::new(
                "issuer",
                format!(
                    "issuer `{}` has no introspection client: set its client_id and client_secret_env",
                    self.issuer
                ),
            )]);
        }
        let ttl = self.cache_ttl.map_or(Duration::from_secs(30), |d| d.0);
        Ok(Introspect {
            issuer: issuer.clone(),
            ttl: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            keep: self.keep_token,
            dir: dir.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }
}

impl Introspect {
    /// Turns an introspection answer into a decision, with how long it may be trusted.
    fn judge(&self, answer: &Value, now: i64) -> (Answer, i64) {
        let until = now.saturating_add(self.ttl);
        let Some(m) = answer.as_object() else {
            return (
                Answer::Inactive("the introspection answer is not an object"),
                until,
            );
        };
        if m.get("active") != Some(&Value::Bool(true)) {
            return (Answer::Inactive("the token is not active"), until);
        }
        let exp = m.get("exp").and_then(Value::as_i64);
        if exp.is_some_and(|e| e <= now) {
            return (Answer::Inactive("the token has expired"), until);
        }
        let iss = &self.issuer;
        if m.get("iss")
            .and_then(Value::as_str)
            .is_some_and(|i| i != iss.issuer)
        {
            return (Answer::Inactive("the token is from another issuer"), until);
        }
        if !iss.audiences.is_empty() && m.contains_key("aud") {
            let aud = match m.get("aud") {
                Some(Value::String(s)) => vec![s.clone()],
                other => words(other),
            };
            if !aud.iter().any(|a| iss.audiences.contains(a)) {
                return (Answer::Inactive("the token is for another audience"), until);
            }
        }
        let Some(subject) = m
            .get(&iss.subject_claim)
            .or_else(|| m.get("client_id"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return (Answer::Inactive("the token names no subject"), until);
        };
        let claims: Map<String, Value> = m.clone();
        let mut groups = words(m.get(&iss.groups_claim));
        let consumer = iss
            .consumer_claim
            .as_ref()
            .and_then(|c| m.get(c))
            .and_then(Value::as_str)
            .and_then(|n| self.dir.consumer(n));
        if let Some(c) = consumer {
            groups.extend(c.groups.iter().cloned());
        }
        let p = Principal {
            subject: subject.to_string(),
            consumer: consumer.map(|c| c.name.clone()),
            method: "introspection",
            issuer: Some(iss.issuer.clone()),
            groups,
            scopes: words(m.get("scope")),
            claims,
        };
        // never trusted past the token's own expiry
        (Answer::Active(p), exp.map_or(until, |e| e.min(until)))
    }

    fn remember(&self, key: [u8; 32], a: Answer, until: i64, now: i64) {
        if self.ttl == 0 || until <= now {
            return;
        }
        let mut m = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= CACHE_MAX {
            m.retain(|_, (_, u)| *u > now);
            if m.len() >= CACHE_MAX {
                m.clear();
            }
        }
        m.insert(key, (a, until));
    }
}

#[async_trait::async_trait]
impl Policy for Introspect {
    fn kind(&self) -> &'static str {
        "introspection"
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
        let token = match bearer(req) {
            Ok(t) => t.map(str::to_string),
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        let Some(token) = token.filter(|t| t.len() <= 16 * 1024) else {
            return Ok(Verdict::Reject(refusals::missing_bearer()));
        };
        let now = now_secs();
        let key = hash_key(&token);
        let cached = {
            let m = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            m.get(&key)
                .filter(|(_, u)| *u > now)
                .map(|(a, _)| a.clone())
        };
        let answer = match cached {
            Some(a) => a,
            None => match self.issuer.introspect(&token).await {
                Ok(v) => {
                    let (a, until) = self.judge(&v, now);
                    self.remember(key, a.clone(), until, now);
                    a
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer.issuer, error = %e, "token introspection failed");
                    return Ok(Verdict::Reject(refusals::unavailable(
                        "the token cannot be checked with its issuer",
                    )));
                }
            },
        };
        match answer {
            Answer::Active(p) => {
                if x.set_principal(p).is_err() {
                    return Ok(Verdict::Reject(refusals::forbidden(
                        "the request carries two identities",
                    )));
                }
                Ok(Verdict::Continue)
            }
            Answer::Inactive(why) => Ok(Verdict::Reject(refusals::invalid_token(why))),
        }
    }

    async fn on_upstream(&self, req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        if !self.keep {
            req.headers.remove(AUTHORIZATION);
        }
        Ok(Verdict::Continue)
    }
}
