//! `idempotency`: safe resends of POST and PATCH with an `Idempotency-Key` (IETF httpapi
//! draft `draft-ietf-httpapi-idempotency-key-header`). A client that did not get an answer
//! sends the same request again under the same key; the upstream runs it once.
//!
//! | request with a key | answer |
//! |---|---|
//! | first time | forwarded; its answer (unless 5xx, or the gateway's own failure) is kept for `ttl` |
//! | again, same body, first answer kept | that answer again, with `Idempotent-Replayed: true`; the upstream is not called |
//! | again while the first is still running | 409 `idempotency.in_progress`, `Retry-After: 1` |
//! | again with another method, path, query or body | 422 `idempotency.key_reused` |
//! | again, but the first answer was larger than `max_response_bytes` | 409 `idempotency.not_replayable` |
//! | a key that is not 1 to 255 visible characters (an sf-string or a bare token) | 400 `idempotency.key_invalid` |
//! | no key, with `required: true` | 400 `idempotency.key_missing` |
//!
//! Keys belong to whoever sent them (`key`: the consumer by default), so one client can
//! neither replay nor block another's. With `store: redis` the answers are shared by every
//! instance and survive restarts, sealed under `runtime.state_key` (required then): Redis
//! never holds a response in clear.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use palisade_core::duration::Dur;
use palisade_core::policies::SpecError;
use palisade_core::{
    Answer, Exchange, Held, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead,
    ResponseHead, Stage, Verdict,
};
use serde::{Deserialize, Serialize};

use crate::key::{Key, KeySpec};
use crate::redis::{RedisError, Value};
use crate::store::{Env, OnStoreError, SharedStore, StoreKind};

/// The header.
pub const HEADER: &str = "idempotency-key";
/// Refusal codes.
pub const KEY_MISSING: &str = "idempotency.key_missing";
/// A malformed key.
pub const KEY_INVALID: &str = "idempotency.key_invalid";
/// The key came with another request.
pub const KEY_REUSED: &str = "idempotency.key_reused";
/// The first request with the key is still running.
pub const IN_PROGRESS: &str = "idempotency.in_progress";
/// The first answer could not be kept.
pub const NOT_REPLAYABLE: &str = "idempotency.not_replayable";
/// Redis down and `on_store_error: fail_closed`.
pub const UNAVAILABLE: &str = "idempotency.unavailable";
/// What the access log notes of a replay.
pub const REPLAYED: &str = "idempotency.replayed";

const PENDING_ANNOTATION: &str = "idempotency";

/// Config of the `idempotency` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySpec {
    /// `enforce` (default) or `monitor` (refusals logged, replays not served).
    #[serde(default)]
    pub mode: Mode,
    /// Methods it applies to. Default POST and PATCH.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Refuse those methods without a key. Default false.
    #[serde(default)]
    pub required: bool,
    /// How long an answer is kept. Default 24h.
    #[serde(default)]
    pub ttl: Option<Dur>,
    /// Whose keys: `consumer` (default: the client address when none is authenticated),
    /// `client_ip`, `service`, `header:NAME`, or a list.
    #[serde(default = "consumer_key")]
    pub key: KeySpec,
    /// Keys kept in memory with `store: local`. Default 10,000.
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// The largest answer kept. Default 1 MiB.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// `local` (default: this instance, memory) or `redis` (every instance, sealed).
    #[serde(default)]
    pub store: StoreKind,
    /// With `store: redis` while Redis cannot answer: `fail_closed` (default, 503),
    /// `local_fallback` or `fail_open` (forwarded unprotected).
    #[serde(default)]
    pub on_store_error: Option<OnStoreError>,
}

fn consumer_key() -> KeySpec {
    KeySpec::One("consumer".into())
}

/// An answer as kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Kept {
    /// SHA-256 of method, path, query and body, hex.
    fp: String,
    /// `None`: still running.
    status: Option<u16>,
    headers: Vec<(String, String)>,
    /// Base64.
    body: String,
    replayable: bool,
}

/// The local store: bounded by count, oldest answers first out.
#[derive(Debug, Default)]
struct Local {
    map: HashMap<String, (Kept, Instant)>,
    order: VecDeque<String>,
}

impl Local {
    fn get(&mut self, k: &str, now: Instant) -> Option<Kept> {
        match self.map.get(k) {
            Some((v, until)) if *until > now => Some(v.clone()),
            Some(_) => {
                self.map.remove(k);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, k: &str, v: Kept, until: Instant, max: usize) {
        if self.map.insert(k.to_string(), (v, until)).is_none() {
            self.order.push_back(k.to_string());
        }
        // over the bound: the oldest finished answers go (never one still running)
        let mut scanned = 0;
        while self.map.len() > max && scanned < self.order.len() {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            match self.map.get(&old) {
                Some((v, _)) if v.status.is_none() && old != k => {
                    self.order.push_back(old);
                    scanned += 1;
                }
                Some(_) if old == k => self.order.push_back(old),
                Some(_) => {
                    self.map.remove(&old);
                }
                None => {}
            }
        }
    }
}

/// The runtime `idempotency` policy.
#[derive(Debug)]
pub struct Idempotency {
    methods: Vec<Method>,
    required: bool,
    ttl: Duration,
    key: Key,
    max_keys: usize,
    max_response: usize,
    local: Arc<Mutex<Local>>,
    shared: Option<Arc<Shared>>,
    /// Whether each pending request (by store key) went to the upstream.
    sent: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
}

struct Shared {
    store: SharedStore,
    keys: Arc<crate::state::crypt::StateKeys>,
    release: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.store.prefix)
            .finish_non_exhaustive()
    }
}

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

impl IdempotencySpec {
    /// Builds the policy.
    pub fn build(&self, env: &Env) -> Result<Idempotency, Vec<SpecError>> {
        let mut errors = Vec::new();
        let methods = match &self.methods {
            None => vec![Method::POST, Method::PATCH],
            Some(ms) => ms
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| {
                            errors.push(SpecError::new(
                                format!("methods[{i}]"),
                                "not an HTTP method",
                            ))
                        })
                        .ok()
                })
                .collect(),
        };
        let ttl = self.ttl.map_or(Duration::from_secs(86_400), |d| d.0);
        if ttl.is_zero() || ttl > Duration::from_secs(30 * 86_400) {
            errors.push(SpecError::new("ttl", "from 1s to 30d"));
        }
        let key = Key::parse(&self.key, &mut errors);
        if key.as_ref().is_some_and(Key::needs_body) {
            errors.push(SpecError::new(
                "key",
                "body fields cannot name whose key it is",
            ));
        }
        let shared = SharedStore::select(
            self.store,
            self.on_store_error,
            OnStoreError::FailClosed,
            env,
            "idempotency",
            "idem",
            &mut errors,
        );
        if shared.is_some() && env.state_keys.current.is_none() {
            errors.push(SpecError::new(
                "store",
                "answers kept in Redis are sealed under runtime.state_key: set it",
            ));
        }
        let Some(key) = key else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let release = env
            .redis
            .as_ref()
            .map(|c| c.register_script(RELEASE))
            .unwrap_or_default();
        Ok(Idempotency {
            methods,
            required: self.required,
            ttl,
            key,
            max_keys: self.max_keys.unwrap_or(10_000).max(1),
            max_response: self.max_response_bytes.unwrap_or(1024 * 1024),
            local: Arc::default(),
            sent: Arc::default(),
            shared: shared.map(|store| {
                Arc::new(Shared {
                    store,
                    keys: env.state_keys.clone(),
                    release,
                })
            }),
        })
    }
}

/// A key as the draft writes it (an sf-string), or a bare token as many clients send it.
fn parse_key(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?.trim();
    let inner = match s.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => s,
    };
    let ok = (1..=255).contains(&inner.len())
        && inner
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    ok.then(|| inner.to_string())
}

fn refuse(status: StatusCode, code: &'static str, title: &'static str, detail: &str) -> Verdict {
    Verdict::Reject(Rejection::new(status, code, title).with_detail(detail.to_string()))
}

fn hex_sha256(parts: &[&[u8]]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p);
        ctx.update(b"\x1f");
    }
    palisade_core::hex::encode(ctx.finish().as_ref())
}

/// What the store says of a key at the start of a request.
enum Found {
    /// Nobody had it: this request holds it now.
    New,
    Kept(Kept),
}

/// Gives the key back when the exchange ends without an answer worth keeping, unless the
/// request went to the upstream and its outcome is unknown (its client left): then the key
/// stays taken until the hold runs out, rather than let a resend run it twice.
#[derive(Debug)]
struct Pending {
    key: String,
    fp: String,
    local: Arc<Mutex<Local>>,
    /// The Redis store and the exact marker written there.
    shared: Option<(Arc<Shared>, Vec<u8>)>,
    sent: Arc<AtomicBool>,
    table: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
}

impl Held for Pending {}

impl Drop for Pending {
    fn drop(&mut self) {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        if self.sent.load(Ordering::Relaxed) {
            return;
        }
        match self.shared.take() {
            None => {
                let mut l = self.local.lock().unwrap_or_else(|p| p.into_inner());
                if l.map
                    .get(&self.key)
                    .is_some_and(|(v, _)| v.status.is_none() && v.fp == self.fp)
                {
                    l.map.remove(&self.key);
                }
            }
            Some((s, marker)) => {
                let key = format!("{}{}", s.store.prefix, self.key);
                if let Ok(h) = tokio::runtime::Handle::try_current() {
                    h.spawn(async move {
                        let _ = s
                            .store
                            .client
                            .eval(&s.release, &[key.as_bytes()], &[&marker])
                            .await;
                    });
                }
            }
        }
    }
}

impl Shared {
    fn purpose(&self) -> String {
        format!("{}kept", self.store.prefix)
    }

    fn seal(&self, v: &Kept) -> Option<Vec<u8>> {
        let plain = serde_json::to_vec(v).ok()?;
        self.keys
            .current
            .as_ref()?
            .seal_message(&self.purpose(), &plain)
            .ok()
    }

    fn open(&self, sealed: &[u8]) -> Option<Kept> {
        let plain = self.keys.open_message(&self.purpose(), sealed)?;
        serde_json::from_slice(&plain).ok()
    }

    /// Takes the key for this request, or reads what it holds.
    async fn begin(&self, key: &str, marker: &[u8], hold: Duration) -> Result<Found, RedisError> {
        let k = format!("{}{key}", self.store.prefix);
        let ms = hold.as_millis().to_string();
        match self
            .store
            .client
            .call(&[b"SET", k.as_bytes(), marker, b"NX", b"PX", ms.as_bytes()])
            .await?
        {
            Value::Simple(_) => return Ok(Found::New),
            Value::Bulk(None) => {}
            _ => return Err(RedisError::Protocol),
        }
        match self.store.client.call(&[b"GET", k.as_bytes()]).await? {
            Value::Bulk(Some(v)) => self.open(&v).map(Found::Kept).ok_or(RedisError::Protocol),
            // it expired in between: take it again
            Value::Bulk(None) => Box::pin(self.begin(key, marker, hold)).await,
            _ => Err(RedisError::Protocol),
        }
    }
}

impl Idempotency {
    /// This request holds `key` until it is answered (see [`Pending`]).
    fn pending(
        &self,
        x: &mut Exchange,
        key: String,
        fp: String,
        shared: Option<(Arc<Shared>, Vec<u8>)>,
    ) {
        let sent = Arc::new(AtomicBool::new(false));
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), sent.clone());
        x.annotations.insert(PENDING_ANNOTATION, key.clone());
        x.hold(Box::new(Pending {
            key,
            fp,
            local: self.local.clone(),
            shared,
            sent,
            table: self.sent.clone(),
        }));
    }

    /// The store key of this request's idempotency key (hashed: keys may be guessable).
    fn store_key(&self, req: &RequestHead, x: &Exchange, idem: &str) -> String {
        hex_sha256(&[
            x.route.as_bytes(),
            self.key.of(req, x).as_bytes(),
            idem.as_bytes(),
        ])
    }

    fn answer(&self, kept: Kept, fp: &str) -> Verdict {
        if kept.fp != fp {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                KEY_REUSED,
                "Idempotency key reused",
                "this key came with another request (method, path, query or body); use a new key for a new request",
            );
        }
        let Some(status) = kept.status else {
            return Verdict::Reject(
                Rejection::new(StatusCode::CONFLICT, IN_PROGRESS, "Request in progress")
                    .with_detail(
                        "the first request with this key has not been answered yet; retry shortly"
                            .to_string(),
                    )
                    .with_header(http::header::RETRY_AFTER, HeaderValue::from(1u32)),
            );
        };
        if !kept.replayable {
            return refuse(
                StatusCode::CONFLICT,
                NOT_REPLAYABLE,
                "Answer not kept",
                "the first request with this key was answered, but its answer was too large to keep; it was not run again",
            );
        }
        let mut headers: Vec<(HeaderName, HeaderValue)> = kept
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        headers.push((
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        ));
        let body = base64::engine::general_purpose::STANDARD
            .decode(kept.body.as_bytes())
            .unwrap_or_default();
        Verdict::Answer(Box::new(Answer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            headers,
            body: Bytes::from(body),
            note: REPLAYED,
        }))
    }
}

/// How long a request may hold its key before another may take it (a crashed instance must
/// not lock a key for the whole `ttl`).
const HOLD: Duration = Duration::from_secs(300);

#[async_trait::async_trait]
impl Policy for Idempotency {
    fn kind(&self) -> &'static str {
        "idempotency"
    }
    fn stage(&self) -> Stage {
        Stage::Quota
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY
            .with(Phase::RequestBody)
            .with(Phase::Upstream)
            .with(Phase::ResponseBody)
            .with(Phase::Log)
    }

    /// A request that never reached a target (no connection, no healthy target) gives its
    /// key back; a timeout leaves the outcome unknown and the key taken.
    fn on_log(&self, x: &Exchange, done: &palisade_core::Completion) {
        if !matches!(
            done.code,
            Some("upstream.unreachable" | "upstream.no_healthy_target")
        ) {
            return;
        }
        if let Some(key) = x.annotations.get(PENDING_ANNOTATION) {
            if let Some(f) = self.sent.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
                f.store(false, Ordering::Relaxed);
            }
        }
    }

    async fn on_request_body(&self, req: &RequestHead, body: &Bytes, x: &mut Exchange) -> Outcome {
        if !self.methods.contains(&req.method) {
            return Ok(Verdict::Continue);
        }
        let values: Vec<&HeaderValue> = req.headers.get_all(HEADER).iter().collect();
        let idem = match values.as_slice() {
            [] if self.required => {
                return Ok(refuse(
                    StatusCode::BAD_REQUEST,
                    KEY_MISSING,
                    "Idempotency key required",
                    "send an Idempotency-Key header (a new unique value, e.g. a UUID, per request; the same one when you resend it)",
                ))
            }
            [] => return Ok(Verdict::Continue),
            [v] => match parse_key(v) {
                Some(k) => k,
                None => {
                    return Ok(refuse(
                        StatusCode::BAD_REQUEST,
                        KEY_INVALID,
                        "Bad idempotency key",
                        "Idempotency-Key is one value of 1 to 255 visible characters, e.g. \"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
                    ))
                }
            },
            _ => {
                return Ok(refuse(
                    StatusCode::BAD_REQUEST,
                    KEY_INVALID,
                    "Bad idempotency key",
                    "send one Idempotency-Key",
                ))
            }
        };
        let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let fp = hex_sha256(&[req.method.as_str().as_bytes(), target.as_bytes(), body]);
        let key = self.store_key(req, x, &idem);
        let running = Kept {
            fp: fp.clone(),
            status: None,
            headers: Vec::new(),
            body: String::new(),
            replayable: false,
        };
        if let Some(s) = &self.shared {
            let Some(marker) = s.seal(&running) else {
                return Err(palisade_core::PolicyError::Internal {
                    policy: "idempotency",
                    message: "cannot seal an idempotency record".into(),
                });
            };
            match s.begin(&key, &marker, HOLD.min(self.ttl)).await {
                Ok(Found::New) => {
                    s.store.ok();
                    self.pending(x, key, fp, Some((s.clone(), marker)));
                    return Ok(Verdict::Continue);
                }
                Ok(Found::Kept(k)) => {
                    s.store.ok();
                    return Ok(self.answer(k, &fp));
                }
                Err(e) => {
                    s.store.failed(&e, x);
                    match s.store.on_error {
                        OnStoreError::FailOpen => return Ok(Verdict::Continue),
                        OnStoreError::FailClosed => {
                            return Ok(Verdict::Reject(
                                s.store
                                    .unavailable(UNAVAILABLE, "Idempotency store unavailable"),
                            ))
                        }
                        OnStoreError::LocalFallback => {}
                    }
                }
            }
        }
        let now = Instant::now();
        let mut l = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = l.get(&key, now) {
            return Ok(self.answer(k, &fp));
        }
        l.put(&key, running, now + HOLD.min(self.ttl), self.max_keys);
        drop(l);
        self.pending(x, key, fp, None);
        Ok(Verdict::Continue)
    }

    async fn on_upstream(&self, _req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        if let Some(key) = x.annotations.get(PENDING_ANNOTATION) {
            if let Some(f) = self.sent.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
                f.store(true, Ordering::Relaxed);
            }
        }
        Ok(Verdict::Continue)
    }

    async fn on_response_body(
        &self,
        res: &mut ResponseHead,
        body: &mut Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        let Some(key) = x.annotations.remove(PENDING_ANNOTATION) else {
            return Ok(Verdict::Continue);
        };
        // a failure is not an answer: the key is given back (by the hold) for a retry
        if res.status.is_server_error() {
            if let Some(f) = self
                .sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
            {
                f.store(false, Ordering::Relaxed);
            }
            return Ok(Verdict::Continue);
        }
        let replayable = body.len() <= self.max_response;
        let skip = [
            "date",
            "content-length",
            "x-request-id",
            "idempotent-replayed",
        ];
        let kept = Kept {
            fp: String::new(),
            status: Some(res.status.as_u16()),
            headers: if replayable {
                res.headers
                    .iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                    .collect()
            } else {
                Vec::new()
            },
            body: if replayable {
                base64::engine::general_purpose::STANDARD.encode(body)
            } else {
                String::new()
            },
            replayable,
        };
        let now = Instant::now();
        // the fingerprint is the running marker's
        let fp = self
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key, now)
            .map(|k| k.fp);
        if let Some(s) = &self.shared {
            let k = format!("{}{key}", s.store.prefix);
            let current = match s.store.client.call(&[b"GET", k.as_bytes()]).await {
                Ok(Value::Bulk(Some(v))) => s.open(&v),
                _ => None,
            };
            if let Some(running) = current.filter(|c| c.status.is_none()) {
                let done = Kept {
                    fp: running.fp,
                    ..kept
                };
                if let Some(v) = s.seal(&done) {
                    let ms = self.ttl.as_millis().to_string();
                    if s.store
                        .client
                        .call(&[b"SET", k.as_bytes(), &v, b"PX", ms.as_bytes()])
                        .await
                        .is_err()
                    {
                        tracing::warn!("an answer could not be kept in Redis for its idempotency key; a resend will run again");
                    }
                }
                return Ok(Verdict::Continue);
            }
        }
        if let Some(fp) = fp {
            let mut l = self.local.lock().unwrap_or_else(|p| p.into_inner());
            l.put(&key, Kept { fp, ..kept }, now + self.ttl, self.max_keys);
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_as_the_draft_writes_them() {
        let k = |s: &str| parse_key(&HeaderValue::from_str(s).unwrap());
        assert_eq!(k("\"8e03978e-40d5\"").as_deref(), Some("8e03978e-40d5"));
        assert_eq!(k("abc-123").as_deref(), Some("abc-123"));
        assert_eq!(k("\"\""), None);
        assert_eq!(k("\"a b\""), None);
        assert_eq!(k(&"x".repeat(256)), None);
        assert_eq!(k("\"unterminated"), None);
    }

    #[test]
    fn the_local_store_is_bounded_and_keeps_running_requests() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let running = |fp: &str| Kept {
            fp: fp.into(),
            status: None,
            headers: Vec::new(),
            body: String::new(),
            replayable: false,
        };
        let done = |fp: &str| Kept {
            status: Some(201),
            ..running(fp)
        };
        let mut l = Local::default();
        l.put("a", running("1"), later, 2);
        l.put("b", done("2"), later, 2);
        l.put("c", done("3"), later, 2);
        // the oldest finished one went, the running one stayed
        assert!(l.get("a", now).is_some());
        assert!(l.get("b", now).is_none());
        assert!(l.get("c", now).is_some());
        // expired entries are gone on read
        assert!(l.get("c", later + Duration::from_secs(1)).is_none());
    }
}
