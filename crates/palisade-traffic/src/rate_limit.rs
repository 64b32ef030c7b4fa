//! `rate_limit`: refuse a client that goes faster than the configured rate.
//!
//! Each limit is a GCRA: `requests` per `per`, with up to `burst` at once (default:
//! `requests`). Several limits hold together (e.g. 10/s and 1000/h); a request is admitted only
//! when every limit admits it, and only then is it counted. State is one timestamp per key
//! and limit, kept in sharded maps whose size is bounded by `max_keys`: keys whose buckets have
//! refilled are dropped first.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue, StatusCode};
use palisade_core::duration::Dur;
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, ResponseHead, Stage,
    Verdict,
};
use serde::Deserialize;

use crate::key::Key;
pub use crate::key::KeySpec;
use crate::redis::RedisError;
use crate::store::{int_array, make_room, Env, OnStoreError, SharedStore, StoreKind};
use crate::Clock;

/// Refusal code when a limit is exceeded.
pub const CODE_EXCEEDED: &str = "ratelimit.exceeded";
/// Refusal code when the shared store is unavailable and the policy fails closed.
pub const CODE_UNAVAILABLE: &str = "ratelimit.unavailable";

/// GCRA over several windows in one round trip. KEYS[1]: the client's hash; ARGV: the number
/// of windows, then per window its field name, emission interval and tolerance (µs). Time is
/// the server's, so instances with skewed clocks still agree. Returns {allowed, remaining,
/// reset µs, retry-after µs, window index (1-based)}.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local fields = {}
for i = 1, n do fields[i] = ARGV[2 + (i - 1) * 3] end
local stored = redis.call('HMGET', KEYS[1], unpack(fields))
local allowed = 1
local retry = 0
local best_rem, best_reset, best_w = -1, 0, 1
local new = {}
for i = 1, n do
  local interval = tonumber(ARGV[3 + (i - 1) * 3])
  local tol = tonumber(ARGV[4 + (i - 1) * 3])
  local tat = tonumber(stored[i]) or now
  if tat < now then tat = now end
  if tat - now > tol then
    local wait = tat - now - tol
    if allowed == 1 or wait > retry then
      best_rem, best_reset, best_w = 0, tat - now, i
      retry = wait
    end
    allowed = 0
  else
    local nt = tat + interval
    new[i] = nt
    local rem = math.floor((tol + interval - (nt - now)) / interval)
    if best_rem < 0 or rem < best_rem then
      best_rem, best_reset, best_w = rem, nt - now, i
    end
  end
end
if allowed == 1 then
  local ttl = 0
  for i = 1, n do
    redis.call('HSET', KEYS[1], fields[i], string.format('%.0f', new[i]))
    if new[i] - now > ttl then ttl = new[i] - now end
  end
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000) + 1000)
end
return {allowed, best_rem, best_reset, retry, best_w}
"#;
/// Default most keys remembered per policy.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
const SHARDS: usize = 16;

/// One limit.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Requests allowed per period.
    pub requests: u64,
    /// The period: `1s`, `10s`, `1m`, `1h`, `1d`.
    pub per: Dur,
    /// Requests allowed at once; default `requests`.
    #[serde(default)]
    pub burst: Option<u64>,
}

/// Config of the `rate_limit` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// `client_ip` (default), `consumer`, `route`, `header:NAME`, or a list of them.
    #[serde(default)]
    pub key: KeySpec,
    /// The limits, all of which must admit a request.
    pub limits: Vec<LimitSpec>,
    /// Most keys remembered; idle ones are dropped first. Default 100000.
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// Send `RateLimit-Policy` and `RateLimit` headers on admitted responses too. Default true.
    #[serde(default)]
    pub headers: Option<bool>,
    /// `local` (default): per instance. `redis`: shared by every instance through the
    /// top-level `redis` section.
    #[serde(default)]
    pub store: StoreKind,
    /// With `store: redis`, what to do while Redis cannot be reached: `local_fallback`
    /// (default: the same limits per instance), `fail_closed` (503) or `fail_open` (admit).
    #[serde(default)]
    pub on_store_error: Option<OnStoreError>,
}

struct Shared {
    store: SharedStore,
    sha: String,
    /// The script's arguments, the same for every call: the number of windows, then per
    /// window its name, interval and tolerance in µs.
    args: Vec<String>,
}

#[derive(Debug, Clone)]
struct Window {
    /// Emission interval T: the time one request "costs".
    interval: u64,
    /// Burst tolerance τ = T × (burst − 1).
    tolerance: u64,
    /// `"10-per-1s"`, the policy's name in the headers.
    name: String,
    quota: u64,
    window_secs: u64,
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Admitted.
    pub allowed: bool,
    /// Requests left in the most constrained limit.
    pub remaining: u64,
    /// Nanoseconds until that limit is fully available again.
    pub reset_nanos: u64,
    /// Nanoseconds until a refused request could be admitted.
    pub retry_after_nanos: u64,
    /// Index of the most constrained limit.
    pub window: usize,
}

/// Per-key theoretical arrival times, one per limit, in sharded maps.
type Shards = Vec<Mutex<HashMap<String, Vec<u64>>>>;

/// The runtime `rate_limit` policy.
pub struct RateLimit {
    key: Key,
    windows: Vec<Window>,
    shards: Arc<Shards>,
    max_per_shard: usize,
    headers: bool,
    clock: Arc<dyn Clock>,
    shared: Option<Shared>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("windows", &self.windows)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn secs_label(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl RateLimitSpec {
    /// Builds the policy, reporting every problem.
    pub fn build(&self, env: &Env) -> Result<RateLimit, Vec<SpecError>> {
        let mut errors = Vec::new();
        let shared = SharedStore::select(
            self.store,
            self.on_store_error,
            OnStoreError::LocalFallback,
            env,
            "rate_limit",
            "rl",
            &mut errors,
        )
        .map(|store| Shared {
            sha: store.client.register_script(GCRA_LUA),
            store,
            args: Vec::new(),
        });
        let key = Key::parse(&self.key, &mut errors);
        if self.limits.is_empty() {
            errors.push(SpecError::new(
                "limits",
                "at least one limit is needed, e.g. {requests: 10, per: 1s}",
            ));
        }
        let mut windows = Vec::new();
        for (i, l) in self.limits.iter().enumerate() {
            let per = u64::try_from(l.per.0.as_nanos()).unwrap_or(u64::MAX);
            let burst = l.burst.unwrap_or(l.requests);
            if l.requests == 0 {
                errors.push(SpecError::new(
                    format!("limits[{i}].requests"),
                    "must be at least 1",
                ));
                continue;
            }
            if per < 1_000_000 {
                errors.push(SpecError::new(
                    format!("limits[{i}].per"),
                    "must be at least 1ms",
                ));
                continue;
            }
            if burst == 0 {
                errors.push(SpecError::new(
                    format!("limits[{i}].burst"),
                    "must be at least 1",
                ));
                continue;
            }
            let interval = (per / l.requests).max(1);
            let window_secs = l.per.0.as_secs().max(1);
            windows.push(Window {
                interval,
                tolerance: interval.saturating_mul(burst - 1),
                name: format!("{}-per-{}", l.requests, secs_label(window_secs)),
                quota: l.requests,
                window_secs,
            });
        }
        let max_keys = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if max_keys == 0 {
            errors.push(SpecError::new("max_keys", "must be at least 1"));
        }
        let Some(key) = key.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        let mut shared = shared;
        if let Some(sh) = shared.as_mut() {
            sh.args.push(windows.len().to_string());
            for w in &windows {
                sh.args.push(w.name.clone());
                sh.args.push((w.interval / 1_000).max(1).to_string());
                sh.args.push((w.tolerance / 1_000).to_string());
            }
        }
        // the same settings keep their buckets across a reload
        let fingerprint = format!(
            "{:?}|{:?}|{max_keys}",
            self.key,
            windows
                .iter()
                .map(|w| (w.interval, w.tolerance))
                .collect::<Vec<_>>()
        );
        Ok(RateLimit {
            key,
            windows,
            shards: env.state("rate_limit", &fingerprint, || {
                (0..SHARDS)
                    .map(|_| Mutex::new(HashMap::new()))
                    .collect::<Vec<_>>()
            }),
            max_per_shard: max_keys.div_ceil(SHARDS).max(1),
            headers: self.headers.unwrap_or(true),
            clock: env.clock.clone(),
            shared,
        })
    }
}

impl RateLimit {
    /// Decides for one key at the clock's time, counting the request when admitted.
    pub fn decide(&self, key: &str) -> Decision {
        let now = self.clock.now_nanos();
        let Some(shard) = self.shard_of(key) else {
            return Decision {
                allowed: true,
                remaining: 0,
                reset_nanos: 0,
                retry_after_nanos: 0,
                window: 0,
            };
        };
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(key) {
            // keys whose buckets are full again can be forgotten: that changes nothing
            let dropped = make_room(&mut map, self.max_per_shard, |tats| {
                tats.iter().all(|&t| t <= now)
            });
            if dropped > 0 {
                tracing::debug!(
                    dropped,
                    "rate_limit: key table full, forgetting active keys"
                );
            }
        }
        let tats = map
            .entry(key.to_string())
            .or_insert_with(|| vec![0; self.windows.len()]);
        let mut allowed = true;
        let mut retry_after = 0;
        let mut best = (u64::MAX, 0u64, 0usize); // (remaining, reset, window)
        let mut next = Vec::with_capacity(self.windows.len());
        for (i, (w, &stored)) in self.windows.iter().zip(tats.iter()).enumerate() {
            let tat = stored.max(now);
            if tat - now > w.tolerance {
                // the refused limit that makes the client wait longest is the one to report,
                // so that the headers agree with Retry-After
                let wait = tat - now - w.tolerance;
                if allowed || wait > retry_after {
                    best = (0, tat - now, i);
                    retry_after = wait;
                }
                allowed = false;
                next.push(stored);
                continue;
            }
            let new_tat = tat + w.interval;
            let remaining = (w.tolerance + w.interval - (new_tat - now)) / w.interval;
            if remaining < best.0 {
                best = (remaining, new_tat - now, i);
            }
            next.push(new_tat);
        }
        if allowed {
            *tats = next;
        }
        Decision {
            allowed,
            remaining: best.0,
            reset_nanos: best.1,
            retry_after_nanos: retry_after,
            window: best.2,
        }
    }

    /// Decides through the shared store (one script call, the server's time), counting the
    /// request when admitted. Fails for a local policy or when Redis does not answer.
    pub async fn decide_shared(&self, key: &str) -> Result<Decision, RedisError> {
        match &self.shared {
            Some(sh) => self.decide_in(sh, key).await,
            None => Err(RedisError::Unavailable),
        }
    }

    async fn decide_in(&self, sh: &Shared, key: &str) -> Result<Decision, RedisError> {
        let rkey = format!("{}{key}", sh.store.prefix);
        let args: Vec<&[u8]> = sh.args.iter().map(String::as_bytes).collect();
        let v = sh
            .store
            .client
            .eval(&sh.sha, &[rkey.as_bytes()], &args)
            .await?;
        let ints = int_array(v)?;
        let [allowed, remaining, reset, retry, window] = ints[..] else {
            return Err(RedisError::Protocol);
        };
        Ok(Decision {
            allowed: allowed == 1,
            remaining,
            reset_nanos: reset.saturating_mul(1_000),
            retry_after_nanos: retry.saturating_mul(1_000),
            window: usize::try_from(window.saturating_sub(1)).unwrap_or(0),
        })
    }

    fn shard_of(&self, key: &str) -> Option<&Mutex<HashMap<String, Vec<u64>>>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        self.shards.get((h.finish() as usize) % SHARDS)
    }

    /// What each limit leaves `tats` at `now`: requests left and nanoseconds to full.
    fn left(&self, tats: &[u64], now: u64) -> Vec<serde_json::Value> {
        self.windows
            .iter()
            .zip(tats)
            .map(|(w, &tat)| {
                let used = tat.max(now) - now;
                let remaining = (w.tolerance + w.interval).saturating_sub(used) / w.interval;
                serde_json::json!({"limit": w.name, "remaining": remaining.min(w.quota),
                                   "full_in_ms": used / 1_000_000})
            })
            .collect()
    }

    /// Keys remembered now.
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    fn header_values(&self, d: &Decision) -> Option<(HeaderValue, HeaderValue)> {
        let w = self.windows.get(d.window)?;
        let reset = d.reset_nanos.div_ceil(1_000_000_000);
        let policy =
            HeaderValue::from_str(&format!("\"{}\";q={};w={}", w.name, w.quota, w.window_secs))
                .ok()?;
        let state =
            HeaderValue::from_str(&format!("\"{}\";r={};t={}", w.name, d.remaining, reset)).ok()?;
        Some((policy, state))
    }
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const ANNOTATION_POLICY: &str = "ratelimit-policy";
const ANNOTATION_STATE: &str = "ratelimit";

impl RateLimit {
    /// The decision for a request with this key.
    async fn judge(&self, key: &str, x: &mut Exchange) -> Outcome {
        let d = match &self.shared {
            None => self.decide(key),
            Some(sh) => match self.decide_in(sh, key).await {
                Ok(d) => {
                    sh.store.ok();
                    d
                }
                Err(e) => {
                    sh.store.failed(&e, x);
                    match sh.store.on_error {
                        OnStoreError::LocalFallback => self.decide(key),
                        OnStoreError::FailOpen => return Ok(Verdict::Continue),
                        OnStoreError::FailClosed => {
                            return Ok(Verdict::Reject(
                                sh.store
                                    .unavailable(CODE_UNAVAILABLE, "Rate limit unavailable"),
                            ))
                        }
                    }
                }
            },
        };
        let headers = self.header_values(&d);
        if d.allowed {
            if let (true, Some((policy, state))) = (self.headers, headers) {
                x.annotations.insert(
                    ANNOTATION_POLICY,
                    policy.to_str().unwrap_or_default().to_string(),
                );
                x.annotations.insert(
                    ANNOTATION_STATE,
                    state.to_str().unwrap_or_default().to_string(),
                );
            }
            return Ok(Verdict::Continue);
        }
        let retry = d.retry_after_nanos.div_ceil(1_000_000_000).max(1);
        let mut r = Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            CODE_EXCEEDED,
            "Too many requests",
        )
        .with_detail(format!("retry in {retry} s"))
        .with_header(http::header::RETRY_AFTER, HeaderValue::from(retry));
        if let Some((policy, state)) = headers {
            r = r
                .with_header(RATELIMIT_POLICY.clone(), policy)
                .with_header(RATELIMIT.clone(), state);
        }
        Ok(Verdict::Reject(r))
    }
}

#[async_trait::async_trait]
impl Policy for RateLimit {
    fn kind(&self) -> &'static str {
        "rate_limit"
    }
    fn stage(&self) -> Stage {
        Stage::Quota
    }
    fn phases(&self) -> PhaseSet {
        let p = if self.key.needs_body() {
            PhaseSet::EMPTY.with(Phase::RequestBody)
        } else {
            PhaseSet::EMPTY.with(Phase::RequestHead)
        };
        if self.headers {
            p.with(Phase::ResponseHead)
        } else {
            p
        }
    }
    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let key = self.key.of(req, x);
        self.judge(&key, x).await
    }

    /// Each key's requests left per limit (local limits; a shared limit's state is Redis's).
    async fn usage(&self, key: Option<&str>) -> Option<serde_json::Value> {
        if self.shared.is_some() {
            return Some(serde_json::json!({"policy": "rate_limit", "store": "redis", "keys": []}));
        }
        let now = self.clock.now_nanos();
        let mut keys = Vec::new();
        match key {
            Some(k) => {
                let tats = self
                    .shard_of(k)
                    .and_then(|s| s.lock().ok()?.get(k).cloned())
                    .unwrap_or_else(|| vec![0; self.windows.len()]);
                keys.push(serde_json::json!({"key": k, "limits": self.left(&tats, now)}));
            }
            None => {
                // the keys a limit holds back now (a full bucket says nothing)
                for shard in self.shards.iter() {
                    let m = shard.lock().unwrap_or_else(|p| p.into_inner());
                    for (k, tats) in m.iter().filter(|(_, t)| t.iter().any(|&t| t > now)) {
                        if keys.len() >= 1000 {
                            break;
                        }
                        keys.push(serde_json::json!({"key": k, "limits": self.left(tats, now)}));
                    }
                }
            }
        }
        Some(serde_json::json!({"policy": "rate_limit", "store": "local", "keys": keys}))
    }

    async fn reset(&self, key: &str) -> Option<Result<(), String>> {
        if let Some(sh) = &self.shared {
            return Some(sh.store.delete(key).await);
        }
        if let Some(s) = self.shard_of(key) {
            s.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        }
        Some(Ok(()))
    }
    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        // a body that cannot be read keys by the client address, as one without the field
        let fields = palisade_core::fields::read(req, body, x).ok();
        let key = self.key.of_body(req, x, fields.as_ref());
        self.judge(&key, x).await
    }
    async fn on_response_head(&self, res: &mut ResponseHead, x: &mut Exchange) -> Outcome {
        for (ann, name) in [
            (ANNOTATION_POLICY, &RATELIMIT_POLICY),
            (ANNOTATION_STATE, &RATELIMIT),
        ] {
            if let Some(v) = x
                .annotations
                .get(ann)
                .and_then(|v| HeaderValue::from_str(v).ok())
            {
                res.headers.insert(name.clone(), v);
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests;
