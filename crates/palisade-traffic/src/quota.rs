//! `quota`: how much a client may use per calendar period: requests, body bytes, or both, per
//! hour, day or month in a configured time zone.
//!
//! A request is refused (429 `quota.exceeded`) once a quota of the current period is spent;
//! otherwise it counts one request at once, and its real body bytes (in, out or both) when
//! the exchange ends, so the request that crosses a byte quota completes and the next one is
//! refused. Counters live in memory and in the embedded store (they survive restarts), or in
//! Redis, shared by every instance (`store: redis`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use http::{HeaderName, HeaderValue, StatusCode};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Unit, ZonedDateTime, ZonedDateTimeRound};
use palisade_core::policies::SpecError;
use palisade_core::{
    Completion, Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead,
    ResponseHead, Stage, Verdict,
};
use serde::Deserialize;

use crate::key::{Key, KeySpec};
use crate::redis::{RedisError, Value};
use crate::size::ByteSize;
use crate::state::StateDb;
use crate::store::{int_array, make_room, Env, OnStoreError, SharedStore, StoreKind};
use crate::Clock;

/// Refusal code once a quota is spent.
pub const CODE_EXCEEDED: &str = "quota.exceeded";
/// Refusal code when the shared store is unavailable and the policy fails closed.
pub const CODE_UNAVAILABLE: &str = "quota.unavailable";
/// Most keys kept in memory per policy (the rest are read back from the store when needed).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The calendar period of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// From minute 0 of each hour.
    Hour,
    /// From midnight.
    Day,
    /// From midnight of the first of each month.
    Month,
}

/// Which body bytes a byte quota counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Request bodies.
    In,
    /// Response bodies.
    Out,
    /// Both (default).
    #[default]
    Both,
}

/// Config of the `quota` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// Whose usage: `consumer` (default), `client_ip`, `route`, `header:NAME`, or a list.
    #[serde(default = "consumer_key")]
    pub key: KeySpec,
    /// `hour`, `day` or `month`.
    pub period: Period,
    /// IANA time zone the periods follow, e.g. `Europe/Berlin`. Default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Requests per period.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Body bytes per period: a number or a size such as `10GiB`.
    #[serde(default)]
    pub bytes: Option<ByteSize>,
    /// Which bytes count: `in`, `out` or `both` (default).
    #[serde(default)]
    pub count: Direction,
    /// `local` (default: memory and the embedded store) or `redis` (shared).
    #[serde(default)]
    pub store: StoreKind,
    /// With `store: redis`, while Redis is unreachable: `fail_closed` (default), `fail_open`
    /// or `local_fallback`.
    #[serde(default)]
    pub on_store_error: Option<OnStoreError>,
    /// Send `X-Quota-*` headers on admitted responses. Default true.
    #[serde(default)]
    pub headers: Option<bool>,
    /// Most keys kept in memory. Default 100000.
    #[serde(default)]
    pub max_keys: Option<usize>,
}

fn consumer_key() -> KeySpec {
    KeySpec::One("consumer".into())
}

/// Usage of one key in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// End of the period (Unix seconds); identifies it.
    pub period_end: i64,
    /// Requests counted.
    pub requests: u64,
    /// Bytes counted.
    pub bytes: u64,
}

impl Usage {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.period_end.to_be_bytes());
        v.extend_from_slice(&self.requests.to_be_bytes());
        v.extend_from_slice(&self.bytes.to_be_bytes());
        v
    }
    fn decode(v: &[u8]) -> Option<Usage> {
        let a: [u8; 8] = v.get(0..8)?.try_into().ok()?;
        let b: [u8; 8] = v.get(8..16)?.try_into().ok()?;
        let c: [u8; 8] = v.get(16..24)?.try_into().ok()?;
        Some(Usage {
            period_end: i64::from_be_bytes(a),
            requests: u64::from_be_bytes(b),
            bytes: u64::from_be_bytes(c),
        })
    }
}

/// One decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    /// Admitted (and counted).
    pub allowed: bool,
    /// Usage after the decision.
    pub usage: Usage,
    /// Seconds until the period ends.
    pub reset_secs: i64,
}

const QUOTA_LUA: &str = r#"
local r = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
local b = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
local lr, lb = tonumber(ARGV[1]), tonumber(ARGV[2])
if (lr >= 0 and r >= lr) or (lb >= 0 and b >= lb) then
  return {0, r, b}
end
r = redis.call('HINCRBY', KEYS[1], 'r', 1)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {1, r, b}
"#;

const BYTES_LUA: &str = r#"
local b = redis.call('HINCRBY', KEYS[1], 'b', ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return b
"#;

struct Shared {
    store: SharedStore,
    sha: String,
    bytes_sha: String,
}

/// The runtime `quota` policy.
pub struct Quota {
    id: String,
    key: Key,
    period: Period,
    tz: TimeZone,
    tz_name: String,
    requests: Option<u64>,
    bytes: Option<u64>,
    count: Direction,
    headers: bool,
    max_keys: usize,
    clock: Arc<dyn Clock>,
    mem: Arc<Mutex<HashMap<String, Usage>>>,
    state_dir: Option<PathBuf>,
    state_keys: Arc<crate::state::crypt::StateKeys>,
    db: OnceLock<Result<Arc<StateDb>, String>>,
    shared: Option<Shared>,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("id", &self.id)
            .field("period", &self.period)
            .field("tz", &self.tz_name)
            .field("requests", &self.requests)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl QuotaSpec {
    /// Builds the policy, reporting every problem.
    pub fn build(&self, env: &Env) -> Result<Quota, Vec<SpecError>> {
        let mut errors = Vec::new();
        let key = Key::parse(&self.key, &mut errors);
        if self.requests.is_none() && self.bytes.is_none() {
            errors.push(SpecError::new(
                "requests",
                "a quota needs `requests`, `bytes` or both",
            ));
        }
        if self.requests == Some(0) {
            errors.push(SpecError::new("requests", "must be at least 1"));
        }
        if self.bytes == Some(ByteSize(0)) {
            errors.push(SpecError::new("bytes", "must be at least 1"));
        }
        let tz_name = self.timezone.clone().unwrap_or_else(|| "UTC".into());
        let tz = match TimeZone::get(&tz_name) {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.push(SpecError::new(
                    "timezone",
                    format!("`{tz_name}` is not a known IANA time zone, e.g. UTC or Europe/Berlin"),
                ));
                None
            }
        };
        let max_keys = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if max_keys == 0 {
            errors.push(SpecError::new("max_keys", "must be at least 1"));
        }
        let shared = SharedStore::select(
            self.store,
            self.on_store_error,
            OnStoreError::FailClosed,
            env,
            "quota",
            "q",
            &mut errors,
        )
        .map(|store| Shared {
            sha: store.client.register_script(QUOTA_LUA),
            bytes_sha: store.client.register_script(BYTES_LUA),
            store,
        });
        let (Some(key), Some(tz), true) = (key, tz, errors.is_empty()) else {
            return Err(errors);
        };
        Ok(Quota {
            id: env.id.clone(),
            key,
            period: self.period,
            tz,
            tz_name: tz_name.clone(),
            requests: self.requests,
            bytes: self.bytes.map(|b| b.0),
            count: self.count,
            headers: self.headers.unwrap_or(true),
            max_keys,
            clock: env.clock.clone(),
            mem: env.state(
                "quota",
                &format!(
                    "{:?}|{:?}|{tz_name}|{:?}|{:?}|{:?}",
                    self.key, self.period, self.requests, self.bytes, self.count
                ),
                || Mutex::new(HashMap::new()),
            ),
            state_dir: env.state_dir.clone(),
            state_keys: env.state_keys.clone(),
            db: OnceLock::new(),
            shared,
        })
    }
}

/// The end (Unix seconds) of the period that contains `now`, in `tz`.
pub fn period_end(now: i64, period: Period, tz: &TimeZone) -> i64 {
    let compute = || -> Result<ZonedDateTime, jiff::Error> {
        let z = Timestamp::from_second(now)?.to_zoned_datetime(tz.clone());
        match period {
            Period::Hour => z
                .round(
                    ZonedDateTimeRound::new()
                        .smallest(Unit::Hour)
                        .mode(jiff::RoundMode::Trunc),
                )?
                .checked_add(1.hour()),
            Period::Day => z.tomorrow()?.start_of_day(),
            Period::Month => z.first_of_month()?.checked_add(1.month())?.start_of_day(),
        }
    };
    match compute() {
        Ok(z) => z.timestamp().as_second(),
        // out of jiff's range (year 9999): a period that never ends rather than a panic
        Err(_) => i64::MAX,
    }
}

fn db_prefix(id: &str) -> String {
    format!("quota\u{1f}{id}\u{1f}")
}

impl Quota {
    /// Opens the state database (once): the result, kept for the policy's life.
    fn open_db(&self) -> &Result<Arc<StateDb>, String> {
        self.db.get_or_init(|| {
            let Some(dir) = self.state_dir.as_ref() else {
                return Err("no state directory".into());
            };
            let db = StateDb::open(dir, &self.state_keys)?;
            let now = self.clock.wall_secs();
            let purged = db.purge(&db_prefix(&self.id), |v| {
                Usage::decode(v).is_none_or(|u| u.period_end <= now)
            });
            if purged > 0 {
                tracing::debug!(id = %self.id, purged, "quota: old periods removed from the state database");
            }
            Ok(db)
        })
    }

    fn db(&self) -> Option<&Arc<StateDb>> {
        self.open_db().as_ref().ok()
    }

    fn spent(&self, u: &Usage) -> bool {
        self.requests.is_some_and(|l| u.requests >= l) || self.bytes.is_some_and(|l| u.bytes >= l)
    }

    /// The usage of `key` in the current period, from memory or the embedded store.
    fn load<'a>(&self, mem: &'a mut HashMap<String, Usage>, key: &str, end: i64) -> &'a mut Usage {
        if !mem.contains_key(key) {
            // what is in memory is also in the embedded store, so forgetting it is safe; only
            // without one (it could not be opened) does a flood of keys cost counts
            let persisted = self.db().is_some();
            let dropped = make_room(mem, self.max_keys, |u| persisted || u.period_end != end);
            if dropped > 0 && !persisted {
                tracing::warn!(id = %self.id, dropped, "quota: key table full and no state database; forgetting usage");
            }
            let stored = self
                .db()
                .and_then(|db| db.get(&format!("{}{key}", db_prefix(&self.id))))
                .and_then(|v| Usage::decode(&v))
                .unwrap_or_default();
            mem.insert(key.to_string(), stored);
        }
        let u = mem.entry(key.to_string()).or_default();
        if u.period_end != end {
            *u = Usage {
                period_end: end,
                requests: 0,
                bytes: 0,
            };
        }
        u
    }

    fn persist(&self, key: &str, u: &Usage) {
        if let Some(db) = self.db() {
            db.put(format!("{}{key}", db_prefix(&self.id)), u.encode());
        }
    }

    /// Decides locally for `key` now, counting the request when admitted.
    pub fn decide_local(&self, key: &str) -> QuotaDecision {
        let now = self.clock.wall_secs();
        let end = period_end(now, self.period, &self.tz);
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        let u = self.load(&mut mem, key, end);
        let allowed = !self.spent(u);
        if allowed {
            u.requests += 1;
        }
        let usage = *u;
        drop(mem);
        if allowed {
            self.persist(key, &usage);
        }
        QuotaDecision {
            allowed,
            usage,
            reset_secs: end.saturating_sub(now),
        }
    }

    /// Adds body bytes to `key`'s usage of the current period (locally).
    pub fn add_bytes_local(&self, key: &str, n: u64) {
        let end = period_end(self.clock.wall_secs(), self.period, &self.tz);
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        let u = self.load(&mut mem, key, end);
        u.bytes = u.bytes.saturating_add(n);
        let usage = *u;
        drop(mem);
        self.persist(key, &usage);
    }

    /// The usage of `key` in the current period (locally), without counting anything.
    pub fn usage_local(&self, key: &str) -> Usage {
        let end = period_end(self.clock.wall_secs(), self.period, &self.tz);
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        *self.load(&mut mem, key, end)
    }

    async fn decide_shared(&self, sh: &Shared, key: &str) -> Result<QuotaDecision, RedisError> {
        let now = self.clock.wall_secs();
        let end = period_end(now, self.period, &self.tz);
        let rkey = format!("{}{end}:{key}", sh.store.prefix);
        let lr = self
            .requests
            .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let lb = self
            .bytes
            .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let (lr, lb, exp) = (lr.to_string(), lb.to_string(), (end + 60).to_string());
        let v = sh
            .store
            .client
            .eval(
                &sh.sha,
                &[rkey.as_bytes()],
                &[lr.as_bytes(), lb.as_bytes(), exp.as_bytes()],
            )
            .await?;
        let ints = int_array(v)?;
        let [allowed, requests, bytes] = ints[..] else {
            return Err(RedisError::Protocol);
        };
        Ok(QuotaDecision {
            allowed: allowed == 1,
            usage: Usage {
                period_end: end,
                requests,
                bytes,
            },
            reset_secs: end.saturating_sub(now),
        })
    }

    /// Decides through the shared store (Redis). Fails for a local policy.
    pub async fn decide_in_store(&self, key: &str) -> Result<QuotaDecision, RedisError> {
        match &self.shared {
            Some(sh) => self.decide_shared(sh, key).await,
            None => Err(RedisError::Unavailable),
        }
    }

    fn headers_for(&self, d: &QuotaDecision) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        if let Some(l) = self.requests {
            out.push((H_REQ_LIMIT.clone(), HeaderValue::from(l)));
            out.push((
                H_REQ_REMAINING.clone(),
                HeaderValue::from(l.saturating_sub(d.usage.requests)),
            ));
        }
        if let Some(l) = self.bytes {
            out.push((H_BYTES_LIMIT.clone(), HeaderValue::from(l)));
            out.push((
                H_BYTES_REMAINING.clone(),
                HeaderValue::from(l.saturating_sub(d.usage.bytes)),
            ));
        }
        out.push((H_RESET.clone(), HeaderValue::from(d.reset_secs.max(0))));
        out
    }

    fn counted_bytes(&self, done: &Completion) -> u64 {
        match self.count {
            Direction::In => done.bytes_in,
            Direction::Out => done.bytes_out,
            Direction::Both => done.bytes_in.saturating_add(done.bytes_out),
        }
    }
}

static H_REQ_LIMIT: HeaderName = HeaderName::from_static("x-quota-requests-limit");
static H_REQ_REMAINING: HeaderName = HeaderName::from_static("x-quota-requests-remaining");
static H_BYTES_LIMIT: HeaderName = HeaderName::from_static("x-quota-bytes-limit");
static H_BYTES_REMAINING: HeaderName = HeaderName::from_static("x-quota-bytes-remaining");
static H_RESET: HeaderName = HeaderName::from_static("x-quota-reset");
const ANN_KEY: &str = "quota-key";
const ANN_HEADERS: &str = "quota-headers";
const ANN_LOCAL: &str = "quota-local";

fn period_name(p: Period) -> &'static str {
    match p {
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Month => "month",
    }
}

fn rfc3339(secs: i64) -> String {
    Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

#[async_trait::async_trait]
impl Policy for Quota {
    /// A local quota with a state directory opens its database before serving: a second
    /// process on the same directory cannot (redb locks the file), and must not go on with
    /// counters of its own that no restart keeps and no other instance sees.
    fn prepare(&self) -> Result<(), String> {
        if self.shared.is_some() || self.state_dir.is_none() {
            return Ok(());
        }
        self.open_db().as_ref().map(|_| ()).map_err(|e| {
            format!("quota: {e}; give each process its own runtime.state_dir, or share the counters with store: redis")
        })
    }
    fn kind(&self) -> &'static str {
        "quota"
    }
    fn stage(&self) -> Stage {
        Stage::Quota
    }
    fn phases(&self) -> PhaseSet {
        let p = PhaseSet::EMPTY.with(Phase::RequestHead);
        let p = if self.bytes.is_some() {
            p.with(Phase::Log)
        } else {
            p
        };
        if self.headers {
            p.with(Phase::ResponseHead)
        } else {
            p
        }
    }

    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let key = self.key.of(req, x);
        let mut local = self.shared.is_none();
        let d = match &self.shared {
            None => self.decide_local(&key),
            Some(sh) => match self.decide_shared(sh, &key).await {
                Ok(d) => {
                    sh.store.ok();
                    d
                }
                Err(e) => {
                    sh.store.failed(&e, x);
                    match sh.store.on_error {
                        OnStoreError::LocalFallback => {
                            local = true;
                            self.decide_local(&key)
                        }
                        OnStoreError::FailOpen => return Ok(Verdict::Continue),
                        OnStoreError::FailClosed => {
                            return Ok(Verdict::Reject(
                                sh.store.unavailable(CODE_UNAVAILABLE, "Quota unavailable"),
                            ));
                        }
                    }
                }
            },
        };
        let headers = self.headers_for(&d);
        if !d.allowed {
            let mut r = Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                CODE_EXCEEDED,
                "Quota exceeded",
            )
            .with_detail(format!(
                "the {} quota is spent; it renews in {} s",
                period_name(self.period),
                d.reset_secs
            ))
            .with_header(
                http::header::RETRY_AFTER,
                HeaderValue::from(d.reset_secs.max(1)),
            );
            for (k, v) in headers {
                r = r.with_header(k, v);
            }
            return Ok(Verdict::Reject(r));
        }
        if self.bytes.is_some() {
            x.annotations.insert(ANN_KEY, key);
            if local {
                x.annotations.insert(ANN_LOCAL, String::new());
            }
        }
        if self.headers {
            let text = headers
                .iter()
                .map(|(k, v)| format!("{}={}", k.as_str(), v.to_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("\n");
            x.annotations.insert(ANN_HEADERS, text);
        }
        Ok(Verdict::Continue)
    }

    async fn on_response_head(&self, res: &mut ResponseHead, x: &mut Exchange) -> Outcome {
        if let Some(text) = x.annotations.get(ANN_HEADERS) {
            for line in text.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_str(v)) {
                        res.headers.insert(k, v);
                    }
                }
            }
        }
        Ok(Verdict::Continue)
    }

    fn on_log(&self, x: &Exchange, done: &Completion) {
        let Some(key) = x.annotations.get(ANN_KEY) else {
            return;
        };
        let n = self.counted_bytes(done);
        if n == 0 {
            return;
        }
        match &self.shared {
            Some(sh) if !x.annotations.contains_key(ANN_LOCAL) => {
                let end = period_end(self.clock.wall_secs(), self.period, &self.tz);
                let rkey = format!("{}{end}:{key}", sh.store.prefix);
                let (client, sha) = (sh.store.client.clone(), sh.bytes_sha.clone());
                let failures = sh.store.failures.clone();
                let id = self.id.clone();
                let Ok(handle) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                handle.spawn(async move {
                    let (n, exp) = (n.to_string(), (end + 60).to_string());
                    if let Err(e) = client
                        .eval(&sha, &[rkey.as_bytes()], &[n.as_bytes(), exp.as_bytes()])
                        .await
                    {
                        failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(id = %id, error = %e, "quota: bytes not recorded in redis");
                    }
                });
            }
            _ => self.add_bytes_local(key, n),
        }
    }

    async fn reset(&self, key: &str) -> Option<Result<(), String>> {
        let end = period_end(self.clock.wall_secs(), self.period, &self.tz);
        if let Some(sh) = &self.shared {
            return Some(sh.store.delete(&format!("{end}:{key}")).await);
        }
        let zero = Usage {
            period_end: end,
            requests: 0,
            bytes: 0,
        };
        self.mem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), zero);
        self.persist(key, &zero);
        Some(Ok(()))
    }

    /// Lists at most [`USAGE_LIST_MAX`] keys, the first by name; `more_keys` says when there
    /// are others.
    async fn usage(&self, key: Option<&str>) -> Option<serde_json::Value> {
        let now = self.clock.wall_secs();
        let end = period_end(now, self.period, &self.tz);
        let row = |k: &str, u: Usage| {
            serde_json::json!({
                "key": k,
                "requests": u.requests,
                "bytes": u.bytes,
                "requests_remaining": self.requests.map(|l| l.saturating_sub(u.requests)),
                "bytes_remaining": self.bytes.map(|l| l.saturating_sub(u.bytes)),
            })
        };
        let mut more = false;
        let keys: Vec<serde_json::Value> = match (key, &self.shared) {
            (Some(k), Some(sh)) => {
                let rkey = format!("{}{end}:{k}", sh.store.prefix);
                match sh
                    .store
                    .client
                    .call(&[b"HMGET", rkey.as_bytes(), b"r", b"b"])
                    .await
                {
                    Ok(Value::Array(Some(v))) => {
                        let num = |i: usize| match v.get(i) {
                            Some(Value::Bulk(Some(b))) => {
                                String::from_utf8_lossy(b).parse::<u64>().unwrap_or(0)
                            }
                            _ => 0,
                        };
                        vec![row(
                            k,
                            Usage {
                                period_end: end,
                                requests: num(0),
                                bytes: num(1),
                            },
                        )]
                    }
                    _ => vec![serde_json::json!({"key": k, "error": "redis unavailable"})],
                }
            }
            (Some(k), None) => vec![row(k, self.usage_local(k))],
            (None, Some(_)) => Vec::new(),
            (None, None) => {
                let mut rows: HashMap<String, Usage> = HashMap::new();
                if let Some(db) = self.db() {
                    let prefix = db_prefix(&self.id);
                    for (k, v) in db.scan(&prefix, USAGE_LIST_MAX + 1) {
                        if let (Some(u), Some(k)) = (Usage::decode(&v), k.strip_prefix(&prefix)) {
                            if u.period_end == end {
                                rows.insert(k.to_string(), u);
                            }
                        }
                    }
                }
                let mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
                for (k, u) in mem.iter().filter(|(_, u)| u.period_end == end) {
                    rows.insert(k.clone(), *u);
                }
                drop(mem);
                let mut v: Vec<_> = rows.into_iter().collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                more = v.len() > USAGE_LIST_MAX;
                v.into_iter()
                    .take(USAGE_LIST_MAX)
                    .map(|(k, u)| row(&k, u))
                    .collect()
            }
        };
        Some(serde_json::json!({
            "policy": "quota",
            "id": self.id,
            "period": period_name(self.period),
            "timezone": self.tz_name,
            "period_end": rfc3339(end),
            "limits": {"requests": self.requests, "bytes": self.bytes},
            "store": if self.shared.is_some() { "redis" } else { "local" },
            "keys": keys,
            "more_keys": more,
        }))
    }
}

/// The most keys `GET /quotas` lists per policy.
pub const USAGE_LIST_MAX: usize = 1000;

#[cfg(test)]
mod tests;
