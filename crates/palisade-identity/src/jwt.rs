//! `jwt`: bearer tokens (RFC 6750) that are JWTs (RFC 7519, RFC 9068), verified against the
//! keys of configured issuers, with their registered claims checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::header::AUTHORIZATION;
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Principal, RequestHead, Stage, Verdict,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::consumers::Directory;
use crate::issuer::Issuer;
use crate::jose::{self, JoseError};
use crate::refusals;
use crate::util::{bearer, now_secs, words};

/// Config of the `jwt` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// Names of the top-level `issuers` whose tokens are accepted.
    pub issuers: Vec<String>,
    /// Claims the token must carry: a value, or a list of values of which the claim must
    /// hold one (a claim that is a list must contain it).
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Forward the Authorization header to the upstream. Default false.
    #[serde(default)]
    pub keep_token: bool,
    /// Longest token accepted, in bytes. Default 16384.
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    /// Remember verified tokens (keyed by their SHA-256, never past `exp`) so a repeated token
    /// skips the signature check. Default true.
    #[serde(default)]
    pub cache: Option<bool>,
    /// Certificate-bound tokens (RFC 8705): the token's `cnf.x5t#S256` must be the SHA-256 of
    /// the connection's client certificate. Default false.
    #[serde(default)]
    pub bind_to_certificate: bool,
}

/// Verified tokens by the SHA-256 of the token, with their `exp`.
type TokenCache = HashMap<[u8; 32], (Principal, i64)>;

/// The runtime `jwt` policy.
#[derive(Debug)]
pub struct Jwt {
    issuers: Vec<Arc<Issuer>>,
    claims: Map<String, Value>,
    keep: bool,
    max: usize,
    dir: Arc<Directory>,
    cache: Option<Mutex<TokenCache>>,
    bind: bool,
}

const CACHE_MAX: usize = 10_000;

impl JwtSpec {
    /// Builds the policy against the configured issuers.
    pub fn build(
        &self,
        issuers: &HashMap<String, Arc<Issuer>>,
        dir: &Arc<Directory>,
    ) -> Result<Jwt, Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut found = Vec::new();
        if self.issuers.is_empty() {
            errors.push(SpecError::new(
                "issuers",
                "name at least one issuer from the top-level `issuers`",
            ));
        }
        for (i, name) in self.issuers.iter().enumerate() {
            match issuers.get(name) {
                Some(iss) => found.push(iss.clone()),
                None => {
                    let mut known: Vec<&str> = issuers.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    errors.push(SpecError::new(
                        format!("issuers[{i}]"),
                        format!(
                            "no issuer named `{name}`; defined: {}",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        let max = self
            .max_token_bytes
            .unwrap_or(jose::DEFAULT_MAX_TOKEN_BYTES);
        if max < 256 {
            errors.push(SpecError::new("max_token_bytes", "must be at least 256"));
        }
        if found.iter().filter(|i| i.accept_missing_issuer).count() > 1 {
            errors.push(SpecError::new(
                "issuers",
                "at most one issuer with dangerous_accept_missing_issuer: a token without `iss` must have one issuer to be verified by",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Jwt {
            issuers: found,
            claims: self.claims.clone(),
            keep: self.keep_token,
            max,
            dir: dir.clone(),
            cache: self
                .cache
                .unwrap_or(true)
                .then(|| Mutex::new(HashMap::new())),
            bind: self.bind_to_certificate,
        })
    }
}

fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, &'static str> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or("a time claim is out of range"),
        Some(_) => Err("a time claim (exp, nbf, iat) is not a number"),
    }
}

/// Checks the registered claims of a verified token; `Err` is a reason safe to show.
pub fn check_claims(
    iss: &Issuer,
    claims: &Map<String, Value>,
    now: i64,
) -> Result<(), &'static str> {
    let skew = i64::try_from(iss.skew.as_secs()).unwrap_or(0);
    let missing_accepted = iss.accept_missing_issuer && !claims.contains_key("iss");
    if !missing_accepted && claims.get("iss").and_then(Value::as_str) != Some(iss.issuer.as_str()) {
        return Err("the token is from another issuer");
    }
    match number(claims, "exp")? {
        Some(exp) if exp + skew <= now => return Err("the token has expired"),
        None if iss.require_exp => return Err("the token has no expiry (exp)"),
        _ => {}
    }
    if number(claims, "nbf")?.is_some_and(|nbf| nbf - skew > now) {
        return Err("the token is not valid yet (nbf)");
    }
    if number(claims, "iat")?.is_some_and(|iat| iat - skew > now) {
        return Err("the token was issued in the future (iat)");
    }
    if !iss.audiences.is_empty() {
        let aud = words(claims.get("aud"));
        let aud = if matches!(claims.get("aud"), Some(Value::String(_))) {
            // a single audience is one value, spaces included
            claims
                .get("aud")
                .and_then(Value::as_str)
                .map(|s| vec![s.to_string()])
                .unwrap_or_default()
        } else {
            aud
        };
        if !aud.iter().any(|a| iss.audiences.contains(a)) {
            return Err("the token is for another audience");
        }
    }
    Ok(())
}

fn matches_required(claims: &Map<String, Value>, required: &Map<String, Value>) -> Option<String> {
    for (name, want) in required {
        let have = claims.get(name);
        let wanted: Vec<&Value> = match want {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        let ok = match have {
            Some(Value::Array(items)) => items.iter().any(|i| wanted.contains(&i)),
            Some(v) => wanted.contains(&v),
            None => false,
        };
        if !ok {
            return Some(format!(
                "the token's `{name}` claim does not have a required value"
            ));
        }
    }
    None
}

impl Jwt {
    async fn verify(&self, token: &str) -> Result<Principal, palisade_core::Rejection> {
        let parsed =
            jose::parse(token, self.max).map_err(|e| refusals::invalid_token(&e.to_string()))?;
        // the issuer is chosen by the (not yet verified) `iss`; the token is then verified with
        // that issuer's keys only, and `iss` checked again
        let payload_iss = peek_iss(token).map_err(refusals::invalid_token)?;
        let Some(iss) = self.issuers.iter().find(|i| match &payload_iss {
            Some(p) => p == i.issuer.as_str(),
            None => i.accept_missing_issuer,
        }) else {
            return Err(refusals::invalid_token(
                "the token is not from an accepted issuer",
            ));
        };
        let keys = iss.keys().await.map_err(|e| {
            tracing::warn!(issuer = %iss.issuer, error = %e, "issuer keys unavailable");
            refusals::unavailable("the token issuer's keys cannot be fetched")
        })?;
        let kid = parsed.kid.clone();
        let verified = match parsed.verify(&keys, &iss.algorithms) {
            Err(JoseError::NoKey) if kid.is_some() && iss.refresh_for_unknown_kid().await => {
                // the provider may have rotated its keys: parse again and try the new set
                let keys = iss.keys().await.map_err(|_| {
                    refusals::unavailable("the token issuer's keys cannot be fetched")
                })?;
                jose::parse(token, self.max).and_then(|p| p.verify(&keys, &iss.algorithms))
            }
            r => r,
        }
        .map_err(|e| refusals::invalid_token(&e.to_string()))?;
        let claims: Map<String, Value> = match serde_json::from_slice(&verified.payload) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(refusals::invalid_token(
                    "the token's claims are not a JSON object",
                ))
            }
        };
        check_claims(iss, &claims, now_secs()).map_err(refusals::invalid_token)?;
        if let Some(why) = matches_required(&claims, &self.claims) {
            return Err(refusals::forbidden(&why));
        }
        let subject = claims
            .get(&iss.subject_claim)
            .or_else(|| claims.get("client_id"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refusals::invalid_token("the token names no subject"))?
            .to_string();
        let mut scopes = words(claims.get("scope"));
        scopes.extend(words(claims.get("scp")));
        let mut groups = words(claims.get(&iss.groups_claim));
        let consumer = iss
            .consumer_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_str)
            .and_then(|name| self.dir.consumer(name));
        if let Some(c) = consumer {
            groups.extend(c.groups.iter().cloned());
        }
        Ok(Principal {
            subject,
            consumer: consumer.map(|c| c.name.clone()),
            method: "jwt",
            issuer: Some(iss.issuer.clone()),
            groups,
            scopes,
            claims,
        })
    }
}

/// RFC 8705: the token's `cnf.x5t#S256` must be the SHA-256 of the connection's certificate.
fn check_binding(
    p: &Principal,
    cert: Option<&palisade_core::ClientCert>,
) -> Option<palisade_core::Rejection> {
    use base64::Engine as _;
    let bound = p
        .claims
        .get("cnf")
        .and_then(|c| c.get("x5t#S256"))
        .and_then(Value::as_str);
    let presented = cert.map(|c| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.sha256));
    match (bound, presented) {
        (Some(b), Some(p)) if b == p => None,
        (None, _) => Some(refusals::invalid_token(
            "the token is not bound to a certificate (cnf.x5t#S256)",
        )),
        (Some(_), None) => Some(refusals::invalid_token(
            "the token is bound to a client certificate and the connection has none",
        )),
        _ => Some(refusals::invalid_token(
            "the token is bound to another client certificate",
        )),
    }
}

/// The `iss` of a token's payload, read without verifying (to pick the issuer's keys).
/// The token's (not yet verified) `iss`, or what keeps it from having one.
fn peek_iss(token: &str) -> Result<Option<String>, &'static str> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).ok_or("a JWS has three parts")?;
    if payload.len() > 64 * 1024 {
        return Err("the token is too large");
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| {
            if payload.contains(['+', '/', '=']) {
                "the token's payload is standard base64, not base64url without padding"
            } else {
                "the token's payload is not base64url"
            }
        })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| "the token's claims are not JSON")?;
    match v.get("iss") {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err("the token's `iss` claim is not a string"),
        None => Ok(None),
    }
}

#[async_trait::async_trait]
impl Policy for Jwt {
    fn kind(&self) -> &'static str {
        "jwt"
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
            Ok(Some(t)) => t.to_string(),
            Ok(None) => return Ok(Verdict::Reject(refusals::missing_bearer())),
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        let now = now_secs();
        let key = crate::consumers::hash_key(&token);
        if crate::revoked::is_revoked(&key, now) {
            return Ok(Verdict::Reject(refusals::invalid_token(
                "the token was revoked",
            )));
        }
        let cached = self.cache.as_ref().and_then(|c| {
            let m = c.lock().unwrap_or_else(|p| p.into_inner());
            m.get(&key)
                .filter(|(_, exp)| *exp > now)
                .map(|(p, _)| p.clone())
        });
        let principal = match cached {
            Some(p) => p,
            None => match self.verify(&token).await {
                Ok(p) => {
                    if let (Some(c), Some(exp)) =
                        (&self.cache, p.claims.get("exp").and_then(Value::as_i64))
                    {
                        let mut m = c.lock().unwrap_or_else(|p| p.into_inner());
                        if m.len() >= CACHE_MAX {
                            m.retain(|_, (_, e)| *e > now);
                            if m.len() >= CACHE_MAX {
                                m.clear();
                            }
                        }
                        m.insert(key, (p.clone(), exp));
                    }
                    p
                }
                Err(r) => return Ok(Verdict::Reject(r)),
            },
        };
        if let Some(id) = principal.claims.get("jti").and_then(Value::as_str) {
            if crate::revoked::is_revoked(&crate::revoked::jti(id), now) {
                return Ok(Verdict::Reject(refusals::invalid_token(
                    "the token was revoked",
                )));
            }
        }
        if self.bind {
            if let Some(r) = check_binding(&principal, x.client_cert.as_deref()) {
                return Ok(Verdict::Reject(r));
            }
        }
        if x.set_principal(principal).is_err() {
            return Ok(Verdict::Reject(refusals::forbidden(
                "the request carries two identities",
            )));
        }
        Ok(Verdict::Continue)
    }

    async fn on_upstream(&self, req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        if !self.keep {
            req.headers.remove(AUTHORIZATION);
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::{IssuerFiles, IssuerSpec};

    #[test]
    fn a_token_without_a_readable_issuer_says_why() {
        use base64::Engine as _;
        let std = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // claims whose standard base64 has `+`, `/` and padding
        let claims = br#"{"iss":"https://idp.test","sub":">>>???"}"#;
        let header = url.encode(br#"{"alg":"ES256"}"#);
        let token = |payload: String| format!("{header}.{payload}.c2ln");
        assert_eq!(
            peek_iss(&token(url.encode(claims))),
            Ok(Some("https://idp.test".into()))
        );
        assert_eq!(
            peek_iss(&token(std.encode(claims))),
            Err("the token's payload is standard base64, not base64url without padding")
        );
        assert_eq!(
            peek_iss(&token(url.encode(br#"{"sub":"a"}"#))),
            Ok(None),
            "no issuer: only an issuer with dangerous_accept_missing_issuer takes it"
        );
        assert_eq!(
            peek_iss(&token(url.encode(b"not json"))),
            Err("the token's claims are not JSON")
        );
    }

    fn issuer() -> Arc<Issuer> {
        let spec: IssuerSpec = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.test", "audiences": ["orders", "billing"],
            "jwks_file": "unused", "clock_skew": 30
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let jwks = palisade_testkit::jwt::jwks(&[&palisade_testkit::jwt::SigningKey::es256("k")]);
        spec.build(IssuerFiles {
            jwks: Some(jwks.into_bytes()),
            ca: None,
        })
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn claims(v: serde_json::Value) -> Map<String, Value> {
        let mut base = serde_json::json!({"iss": "https://idp.test", "aud": "orders", "exp": 1000});
        if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
            for (k, x) in o {
                if x.is_null() {
                    b.remove(k);
                } else {
                    b.insert(k.clone(), x.clone());
                }
            }
        }
        base.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn registered_claims_decision_table() {
        let iss = issuer();
        let now = 990;
        let cases: Vec<(&str, serde_json::Value, Option<&str>)> = vec![
            ("valid", serde_json::json!({}), None),
            ("expired within skew", serde_json::json!({"exp": 970}), None),
            (
                "expired past skew",
                serde_json::json!({"exp": 960}),
                Some("the token has expired"),
            ),
            (
                "no exp",
                serde_json::json!({"exp": null}),
                Some("the token has no expiry (exp)"),
            ),
            (
                "exp not a number",
                serde_json::json!({"exp": "soon"}),
                Some("a time claim (exp, nbf, iat) is not a number"),
            ),
            ("nbf within skew", serde_json::json!({"nbf": 1010}), None),
            (
                "nbf in the future",
                serde_json::json!({"nbf": 1100}),
                Some("the token is not valid yet (nbf)"),
            ),
            (
                "iat in the future",
                serde_json::json!({"iat": 1100}),
                Some("the token was issued in the future (iat)"),
            ),
            (
                "other issuer",
                serde_json::json!({"iss": "https://evil.test"}),
                Some("the token is from another issuer"),
            ),
            (
                "no issuer",
                serde_json::json!({"iss": null}),
                Some("the token is from another issuer"),
            ),
            (
                "other audience",
                serde_json::json!({"aud": "shop"}),
                Some("the token is for another audience"),
            ),
            (
                "audience list",
                serde_json::json!({"aud": ["shop", "billing"]}),
                None,
            ),
            (
                "no audience",
                serde_json::json!({"aud": null}),
                Some("the token is for another audience"),
            ),
            (
                "audience with a space is one value",
                serde_json::json!({"aud": "shop orders"}),
                Some("the token is for another audience"),
            ),
        ];
        for (name, extra, want) in cases {
            assert_eq!(
                check_claims(&iss, &claims(extra), now).err(),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn required_claims_match_values_and_lists() {
        let req = serde_json::json!({"tenant": "acme", "roles": ["admin", "ops"]});
        let req = req.as_object().cloned().unwrap_or_default();
        let ok = claims(serde_json::json!({"tenant": "acme", "roles": ["viewer", "ops"]}));
        assert_eq!(matches_required(&ok, &req), None);
        let wrong = claims(serde_json::json!({"tenant": "globex", "roles": "ops"}));
        assert!(matches_required(&wrong, &req).is_some());
        let missing = claims(serde_json::json!({"roles": "admin"}));
        assert!(matches_required(&missing, &req).is_some());
    }
}
