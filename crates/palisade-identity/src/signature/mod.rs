//! `signature`: RFC 9421 HTTP Message Signatures on requests, with RFC 9530 body digests,
//! so that only holders of a consumer's key can send (or change) what the route accepts.
//!
//! - [`base`]: the signatures a request carries and the signature base they sign;
//! - [`keys`]: the algorithms and keys (aws-lc-rs);
//! - [`digest`]: `Content-Digest` / `Repr-Digest` checked against the body;
//! - [`replay`]: nonces and signatures already seen;
//! - [`cavage`]: the older draft-cavage `Signature` header, for clients that cannot move yet.
//!
//! A signature counts when its key is a consumer's, it covers what the route requires, its
//! `created` is inside the window, it verifies, and it was not seen before. The body is then
//! checked against its digest before anything is forwarded (the route's body is buffered
//! under its cap): an upstream never receives a body whose signed digest does not match.

pub mod base;
pub mod cavage;
pub mod digest;
pub mod keys;
pub mod replay;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};
use palisade_core::duration::Dur;
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Principal, Rejection, RequestHead, Stage,
    Verdict,
};
use serde::Deserialize;

use crate::consumers::{Directory, SigKeyCheck};
use crate::util::now_secs;
use base::{BaseError, Id, Message};
use keys::Alg;

/// No signature where the route needs one.
pub const MISSING: &str = "signature.missing";
/// Signature fields that cannot be read.
pub const MALFORMED: &str = "signature.malformed";
/// A signature whose key is not a consumer's (or has expired).
pub const UNKNOWN_KEY: &str = "signature.unknown_key";
/// A signature that does not verify.
pub const INVALID: &str = "signature.invalid";
/// A signature that leaves out a component the route requires.
pub const COVERAGE: &str = "signature.insufficient_coverage";
/// A signature outside its time window.
pub const EXPIRED: &str = "signature.expired";
/// A signature or nonce already seen.
pub const REPLAYED: &str = "signature.replayed";
/// A body whose digest does not match.
pub const DIGEST_MISMATCH: &str = "signature.digest_mismatch";
/// A body without a digest, or with one that cannot be checked.
pub const DIGEST_MISSING: &str = "signature.digest_required";
/// The replay store cannot take more entries.
pub const UNAVAILABLE: &str = "signature.unavailable";

const DEFAULT_COMPONENTS: &[&str] = &[
    "@method",
    "@authority",
    "@path",
    "@query",
    "content-digest",
    "content-type",
    "authorization",
];

/// When a body must carry a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DigestRule {
    /// Every request with a body carries `Content-Digest` (default).
    #[default]
    Required,
    /// A digest is checked when sent; a body without one passes.
    WhenPresent,
}

/// Config of the `signature` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// What every signature must cover. Derived components (`@method`, `@path` …) always;
    /// `@query` when the request has a query; a header field whenever the request carries
    /// it. `@target-uri` covers scheme, authority, path and query. Default: `@method`,
    /// `@authority`, `@path`, `@query`, `content-digest`, `content-type`, `authorization`.
    #[serde(default)]
    pub components: Option<Vec<String>>,
    /// `required` (default): a request with a body must send `Content-Digest`;
    /// `when_present`: only a digest that is sent is checked.
    #[serde(default)]
    pub digest: DigestRule,
    /// How old a signature's `created` may be. Default 5m.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Dur>,
    /// How far clocks may disagree (a `created` in the future, an `expires` just past).
    /// Default 30s.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub clock_skew: Option<Dur>,
    /// Every signature must carry a `nonce` (remembered for the window). Default false:
    /// nonces are remembered when sent, and signatures of unsafe methods always are.
    #[serde(default)]
    pub require_nonce: bool,
    /// Only signatures with this `tag` count (an application's profile).
    #[serde(default)]
    pub tag: Option<String>,
    /// Algorithms accepted. Default: all of RFC 9421's.
    #[serde(default)]
    pub algorithms: Option<Vec<Alg>>,
    /// Also accept the older draft-cavage `Signature` header (legacy; see the docs).
    #[serde(default)]
    pub legacy_cavage: bool,
    /// Forward `Signature` and `Signature-Input` to the upstream. Default false.
    #[serde(default)]
    pub keep_signature: bool,
    /// Live entries of the replay store. Default 1,000,000.
    #[serde(default)]
    pub replay_capacity: Option<usize>,
    /// Where seen signatures and nonces are kept: `local` (default, this instance) or
    /// `redis` (every instance of the cluster refuses what one has seen).
    #[serde(default)]
    pub store: ReplayStore,
    /// With `store: redis`, while Redis cannot answer: `fail_closed` (default, 503) or
    /// `local_fallback` (this instance's own store until Redis is back).
    #[serde(default)]
    pub on_store_error: OnReplayStoreError,
}

/// Where the replay store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayStore {
    /// In this instance's memory.
    #[default]
    Local,
    /// On the shared Redis of the `redis` section.
    Redis,
}

/// What a Redis-backed replay store does during an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnReplayStoreError {
    /// Refuse with 503 `signature.unavailable`.
    #[default]
    FailClosed,
    /// Remember locally until Redis is back (a replay to another instance meanwhile passes).
    LocalFallback,
}

/// A component the route requires.
#[derive(Debug, Clone)]
struct Required {
    id: Id,
    text: String,
}

/// The runtime `signature` policy.
#[derive(Debug)]
pub struct SignaturePolicy {
    required: Vec<Required>,
    digest: DigestRule,
    max_age: i64,
    skew: i64,
    require_nonce: bool,
    tag: Option<String>,
    algorithms: Option<Vec<Alg>>,
    cavage: bool,
    keep: bool,
    dir: Arc<Directory>,
    replays: replay::Replays,
    accept: HeaderValue,
}

/// A configured duration (or `default` seconds) in whole seconds, for Unix-time windows.
pub(crate) fn secs(d: Option<Dur>, default: u64) -> i64 {
    i64::try_from(d.map_or(Duration::from_secs(default), |d| d.0).as_secs()).unwrap_or(i64::MAX)
}

/// Parses a component as config writes it (`@method`, `content-type`, `@query-param;name=x`
/// is not accepted: require `@query`).
fn required_component(text: &str) -> Result<Id, String> {
    if let Some(id) = Id::derived(text) {
        return Ok(id);
    }
    Ok(match text {
        t if t.starts_with('@') => {
            return Err(format!(
                "`{t}` is not a derived component a route can require (@method, @target-uri, @authority, @scheme, @request-target, @path, @query)"
            ))
        }
        t => {
            if http::HeaderName::from_bytes(t.as_bytes()).is_err() || t.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(format!("`{t}` is not a lower-case header field name"));
            }
            Id::Field {
                name: t.to_string(),
                sf: false,
                key: None,
                bs: false,
            }
        }
    })
}

impl SignatureSpec {
    /// Builds the policy.
    pub fn build(
        &self,
        dir: &Arc<Directory>,
        shared: Option<Arc<dyn palisade_core::seen::SeenStore>>,
    ) -> Result<SignaturePolicy, Vec<SpecError>> {
        let mut errors = Vec::new();
        let texts: Vec<String> = match &self.components {
            Some(c) => c.clone(),
            None => DEFAULT_COMPONENTS.iter().map(|s| s.to_string()).collect(),
        };
        let mut required = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            match required_component(t) {
                Ok(id) => required.push(Required {
                    id,
                    text: t.clone(),
                }),
                Err(e) => errors.push(SpecError::new(format!("components[{i}]"), e)),
            }
        }
        if !required.iter().any(|r| r.id == Id::Method) {
            errors.push(SpecError::new(
                "components",
                "must include @method: a signature that does not cover the method lets a GET's signature send a DELETE",
            ));
        }
        if !dir.has_signature_keys() {
            errors.push(SpecError::new(
                "type",
                "no consumer has a signature key: add `signature_keys` to a consumer",
            ));
        }
        if self.algorithms.as_ref().is_some_and(Vec::is_empty) {
            errors.push(SpecError::new("algorithms", "must not be empty"));
        }
        if self.replay_capacity == Some(0) {
            errors.push(SpecError::new("replay_capacity", "must be at least 1"));
        }
        let max_age = secs(self.max_age, 300);
        if max_age == 0 {
            errors.push(SpecError::new("max_age", "must be at least 1s"));
        }
        let accept = {
            let comps: Vec<String> = required
                .iter()
                .filter(|r| r.id != Id::Query)
                .map(|r| format!("\"{}\"", r.text))
                .collect();
            HeaderValue::from_str(&format!("sig1=({});created", comps.join(" ")))
                .unwrap_or_else(|_| HeaderValue::from_static("sig1=(\"@method\");created"))
        };
        let shared = match (self.store, shared) {
            (ReplayStore::Local, _) => None,
            (ReplayStore::Redis, Some(s)) => Some(s),
            (ReplayStore::Redis, None) => {
                errors.push(SpecError::new(
                    "store",
                    "store: redis needs the top-level `redis` section",
                ));
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SignaturePolicy {
            replays: replay::Replays::new(
                self.replay_capacity.unwrap_or(1_000_000),
                shared,
                self.on_store_error == OnReplayStoreError::LocalFallback,
                "signature",
            ),
            required,
            digest: self.digest,
            max_age,
            skew: secs(self.clock_skew, 30),
            require_nonce: self.require_nonce,
            tag: self.tag.clone(),
            algorithms: self.algorithms.clone(),
            cavage: self.legacy_cavage,
            keep: self.keep_signature,
            dir: dir.clone(),
            accept,
        })
    }
}

fn refuse(status: StatusCode, code: &'static str, title: &'static str, why: String) -> Rejection {
    Rejection::new(status, code, title).with_detail(why)
}

/// 401 for a signature that leaves out what the route requires.
fn uncovered_refusal(why: String) -> Rejection {
    refuse(
        StatusCode::UNAUTHORIZED,
        COVERAGE,
        "Signature does not cover the request",
        why,
    )
}

/// Why one signature did not count, most telling first.
#[derive(Debug)]
struct Failure {
    rank: u8,
    rejection: Rejection,
}

impl SignaturePolicy {
    fn missing(&self, why: &str) -> Rejection {
        Rejection::new(StatusCode::UNAUTHORIZED, MISSING, "Signature required")
            .with_detail(why.to_string())
            .with_header(
                http::HeaderName::from_static("accept-signature"),
                self.accept.clone(),
            )
    }

    /// The components this request must have covered that `sig` leaves out.
    fn uncovered(&self, req: &RequestHead, covers: impl Fn(&Id) -> bool) -> Vec<&str> {
        self.required
            .iter()
            .filter(|r| match &r.id {
                Id::Query => req.uri.query().is_some(),
                Id::Field { name, .. } => req.headers.contains_key(name.as_str()),
                _ => true,
            })
            .filter(|r| !covers(&r.id))
            .map(|r| r.text.as_str())
            .collect()
    }

    /// Checks the time window of a signature created at `created` (expiring at `expires`).
    fn window(
        &self,
        created: Option<i64>,
        expires: Option<i64>,
        now: i64,
    ) -> Result<i64, Rejection> {
        let expired =
            |why: String| refuse(StatusCode::UNAUTHORIZED, EXPIRED, "Signature expired", why);
        let Some(created) = created else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                COVERAGE,
                "Signature does not cover the request",
                "the signature must carry a `created` parameter".into(),
            ));
        };
        if created > now.saturating_add(self.skew) {
            return Err(expired("the signature's `created` is in the future".into()));
        }
        if now.saturating_sub(created) > self.max_age {
            return Err(expired(format!(
                "the signature was created more than {}s ago",
                self.max_age
            )));
        }
        if let Some(e) = expires {
            if now > e.saturating_add(self.skew) {
                return Err(expired("the signature's `expires` has passed".into()));
            }
        }
        // remembered until no copy of it could be accepted any more
        let mut until = created
            .saturating_add(self.max_age)
            .saturating_add(self.skew);
        if let Some(e) = expires {
            until = until.min(e.saturating_add(self.skew));
        }
        Ok(until)
    }

    async fn remember(
        &self,
        scope: &str,
        item: &[u8],
        until: i64,
        now: i64,
    ) -> Result<(), Rejection> {
        self.replays
            .first_time(scope, item, until, now)
            .await
            .map_err(|f| match f {
                replay::Fault::Replayed => refuse(
                    StatusCode::UNAUTHORIZED,
                    REPLAYED,
                    "Signature already used",
                    "this signature (or its nonce) was already used: sign the request again".into(),
                ),
                replay::Fault::Unavailable(why) => refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    "Signature check unavailable",
                    why.into(),
                ),
            })
    }

    fn key_for(
        &self,
        keyid: Option<&str>,
        now: i64,
    ) -> Result<(&crate::consumers::Consumer, &keys::VerifyKey), Failure> {
        let fail = |why: &str| Failure {
            rank: 1,
            rejection: refuse(
                StatusCode::UNAUTHORIZED,
                UNKNOWN_KEY,
                "Unknown signature key",
                why.into(),
            ),
        };
        let Some(keyid) = keyid else {
            return Err(fail("the signature has no `keyid`"));
        };
        match self.dir.signature_key(keyid, now) {
            SigKeyCheck::Valid(c, k) => {
                if self
                    .algorithms
                    .as_ref()
                    .is_some_and(|a| !a.contains(&k.alg()))
                {
                    return Err(fail("the key's algorithm is not accepted on this route"));
                }
                Ok((c, k))
            }
            SigKeyCheck::Expired => Err(fail("the signature key has expired")),
            SigKeyCheck::Unknown => Err(fail("the signature's `keyid` is not a known key")),
        }
    }

    /// One RFC 9421 signature: its principal and replay entry, or why it does not count.
    fn check(
        &self,
        req: &RequestHead,
        m: &Message<'_>,
        sig: &base::Signature,
        now: i64,
    ) -> Result<(Principal, String, i64), Failure> {
        // (the caller records which digest fields this signature covers)
        let (consumer, key) = self.key_for(sig.params.keyid.as_deref(), now)?;
        let invalid = |rank: u8, why: String| Failure {
            rank,
            rejection: refuse(StatusCode::UNAUTHORIZED, INVALID, "Invalid signature", why),
        };
        if let Some(a) = &sig.params.alg {
            if Alg::from_name(a) != Some(key.alg()) {
                return Err(invalid(
                    2,
                    format!("the `alg` parameter does not match the key ({})", key.alg()),
                ));
            }
        }
        let missing = self.uncovered(req, |id| sig.covers(id));
        if !missing.is_empty() {
            return Err(Failure {
                rank: 3,
                rejection: uncovered_refusal(format!(
                    "the signature must cover {}",
                    missing.join(", ")
                ))
                .with_header(
                    http::HeaderName::from_static("accept-signature"),
                    self.accept.clone(),
                ),
            });
        }
        if self.require_nonce && sig.params.nonce.is_none() {
            return Err(Failure {
                rank: 3,
                rejection: uncovered_refusal("the signature must carry a `nonce`".into()),
            });
        }
        let until = self
            .window(sig.params.created, sig.params.expires, now)
            .map_err(|r| Failure {
                rank: 4,
                rejection: r,
            })?;
        let base = sig.base(m).map_err(|e| match e {
            BaseError::Missing(c) => {
                invalid(5, format!("the signed component {c} is not in the request"))
            }
            BaseError::Invalid(why) => invalid(5, why),
        })?;
        if !key.verify(base.as_bytes(), &sig.value) {
            return Err(invalid(
                6,
                "the signature does not match the request".into(),
            ));
        }
        let keyid = sig.params.keyid.clone().unwrap_or_default();
        Ok((consumer.principal("signature"), keyid, until))
    }
}

fn unsafe_method(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

#[async_trait::async_trait]
impl Policy for SignaturePolicy {
    fn kind(&self) -> &'static str {
        "signature"
    }
    fn stage(&self) -> Stage {
        Stage::Authn
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY
            .with(Phase::RequestHead)
            .with(Phase::RequestBody)
            .with(Phase::Upstream)
    }

    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let now = now_secs();
        // draft-cavage has a Signature field and no Signature-Input
        let legacy = self.cavage
            && !req.headers.contains_key("signature-input")
            && cavage::present(&req.headers);
        let sigs = match base::signatures(&req.headers) {
            _ if legacy => Vec::new(),
            Ok(s) => s,
            Err(base::Malformed(why)) => {
                return Ok(Verdict::Reject(refuse(
                    StatusCode::BAD_REQUEST,
                    MALFORMED,
                    "Malformed signature",
                    why,
                )))
            }
        };
        let target = x.target_as_sent.clone();
        let (path, query) = match target.as_deref() {
            Some(t) => match t.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (t, None),
            },
            None => (req.uri.path(), req.uri.query()),
        };
        let authority = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let m = Message {
            method: req.method.as_str(),
            scheme: if x.tls { "https" } else { "http" },
            authority,
            path,
            query,
            headers: &req.headers,
        };
        let mut signed: Vec<&'static str> = Vec::new();
        let outcome = if sigs.is_empty() {
            if legacy {
                cavage::check(self, req, &m, now, &mut signed).await
            } else {
                return Ok(Verdict::Reject(self.missing(
                    "sign the request (RFC 9421 Signature-Input and Signature fields)",
                )));
            }
        } else {
            let mut best: Option<Failure> = None;
            let mut ok = None;
            for sig in sigs
                .iter()
                .filter(|s| self.tag.is_none() || s.params.tag == self.tag)
            {
                match self.check(req, &m, sig, now) {
                    Ok((p, keyid, until)) => {
                        ok = Some((p, keyid, until, sig));
                        break;
                    }
                    Err(f) => {
                        if best.as_ref().is_none_or(|b| f.rank > b.rank) {
                            best = Some(f);
                        }
                    }
                }
            }
            match (ok, best) {
                (Some((p, keyid, until, sig)), _) => {
                    signed = digest::FIELDS
                        .iter()
                        .filter(|f| {
                            sig.covers(&Id::Field {
                                name: (*f).to_string(),
                                sf: false,
                                key: None,
                                bs: false,
                            })
                        })
                        .copied()
                        .collect();
                    let mut r = Ok(());
                    if let Some(n) = &sig.params.nonce {
                        r = self.remember(&keyid, n.as_bytes(), until, now).await;
                    }
                    if r.is_ok() && unsafe_method(&req.method) {
                        r = self.remember(&keyid, &sig.value, until, now).await;
                    }
                    r.map(|()| (p, keyid))
                }
                (None, Some(f)) => Err(f.rejection),
                (None, None) => Err(self.missing(&format!(
                    "no signature with the tag `{}`",
                    self.tag.as_deref().unwrap_or("")
                ))),
            }
        };
        let (p, keyid) = match outcome {
            Ok(v) => v,
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        if x.set_principal(p).is_err() {
            return Ok(Verdict::Reject(crate::refusals::forbidden(
                "the request carries two identities",
            )));
        }
        x.annotations.insert("signature_key", keyid);
        // which digest fields the signature vouches for, for the body check
        x.annotations.insert("signed_digest", signed.join(","));
        Ok(Verdict::Continue)
    }

    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        let signed = x
            .annotations
            .get("signed_digest")
            .map_or("", String::as_str);
        let vouched = signed
            .split(',')
            .any(|f| !f.is_empty() && req.headers.contains_key(f));
        let need = !body.is_empty() && self.digest == DigestRule::Required;
        Ok(match digest::check(&req.headers, body) {
            digest::Check::Valid if vouched || !need => Verdict::Continue,
            digest::Check::Absent if !need => Verdict::Continue,
            digest::Check::Valid | digest::Check::Absent => Verdict::Reject(want_digest(
                "a request with a body must send Content-Digest (RFC 9530), covered by the signature".into(),
            )),
            digest::Check::Unusable(why) => Verdict::Reject(want_digest(why)),
            digest::Check::Mismatch(which) => Verdict::Reject(refuse(
                StatusCode::BAD_REQUEST,
                DIGEST_MISMATCH,
                "Digest does not match the body",
                format!("the {which} digest is not the body's"),
            )),
        })
    }

    async fn on_upstream(&self, req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        if !self.keep {
            req.headers.remove("signature");
            req.headers.remove("signature-input");
            if self.cavage {
                cavage::strip(&mut req.headers);
            }
        }
        Ok(Verdict::Continue)
    }
}

fn want_digest(why: String) -> Rejection {
    refuse(
        StatusCode::BAD_REQUEST,
        DIGEST_MISSING,
        "Digest required",
        why,
    )
    .with_header(
        http::HeaderName::from_static("want-content-digest"),
        HeaderValue::from_static(digest::WANT),
    )
}
