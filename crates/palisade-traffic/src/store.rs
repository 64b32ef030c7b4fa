//! What a traffic policy needs from its surroundings when it is built: a clock, the shared
//! store (Redis) when the config names one, and a stable identity for its counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use palisade_core::policies::SpecError;
use palisade_core::{Exchange, Rejection};
use serde::Deserialize;

use crate::redis::{RedisClient, RedisError, Value};
use crate::Clock;

/// Where a policy keeps its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process (quotas: also persisted in the embedded store).
    #[default]
    Local,
    /// In the Redis server of the top-level `redis` section, shared by every instance.
    Redis,
}

/// What a policy with a Redis store does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Admit the request (the limit is not enforced during the outage).
    FailOpen,
    /// Refuse the request with 503.
    FailClosed,
    /// Apply the same limit per instance, in memory, until Redis is back.
    LocalFallback,
}

impl OnStoreError {
    /// Its name in config, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreError::FailOpen => "fail_open",
            OnStoreError::FailClosed => "fail_closed",
            OnStoreError::LocalFallback => "local_fallback",
        }
    }
}

/// The context a traffic policy is built in.
#[derive(Clone)]
pub struct Env {
    /// The clock for local decisions.
    pub clock: Arc<dyn Clock>,
    /// The shared Redis client, when the config has a `redis` section.
    pub redis: Option<Arc<RedisClient>>,
    /// Prefix of every Redis key (`palisade:` by default).
    pub redis_prefix: String,
    /// A stable name for the policy instance, e.g. `demo-writes/0` (route and position):
    /// instances with the same config share Redis keys through it, and metrics carry it.
    pub id: String,
    /// Where local quota counters are persisted (the embedded store); `None`: memory only.
    pub state_dir: Option<std::path::PathBuf>,
    /// The keys that encrypt the embedded store (`runtime.state_key`).
    pub state_keys: Arc<crate::state::crypt::StateKeys>,
    /// Hand local state (buckets, counters) over from the policy with the same id and
    /// settings in the config being replaced, so a reload does not reset limits.
    pub keep_state: bool,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("redis", &self.redis)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// A local-only environment with the monotonic clock.
    pub fn local(id: impl Into<String>) -> Env {
        Env {
            clock: Arc::new(crate::MonotonicClock::new()),
            redis: None,
            redis_prefix: "palisade:".into(),
            id: id.into(),
            state_dir: None,
            state_keys: Arc::default(),
            keep_state: false,
        }
    }

    /// The local state of a policy: with `keep_state`, the one a policy of the same kind, id
    /// and `fingerprint` (its settings) already has, while any holds it; otherwise `make()`.
    pub fn state<T: Send + Sync + 'static>(
        &self,
        kind: &str,
        fingerprint: &str,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        if !self.keep_state {
            return Arc::new(make());
        }
        type Any = dyn std::any::Any + Send + Sync;
        static STATES: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<Any>>>,
        > = std::sync::OnceLock::new();
        let name = format!("{kind}\u{1f}{}\u{1f}{fingerprint}", self.id);
        let mut m = STATES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.retain(|_, w| w.strong_count() > 0);
        if let Some(found) = m
            .get(&name)
            .and_then(std::sync::Weak::upgrade)
            .and_then(|a| a.downcast::<T>().ok())
        {
            return found;
        }
        let fresh = Arc::new(make());
        let any: Arc<Any> = fresh.clone();
        m.insert(name, Arc::downgrade(&any));
        fresh
    }
}

/// A policy's handle on the shared store: the client, its key prefix, what to do while Redis
/// is away, and the outage bookkeeping (one log line per outage and per recovery, a counter
/// per decision made without Redis).
pub(crate) struct SharedStore {
    pub(crate) client: Arc<RedisClient>,
    pub(crate) prefix: String,
    pub(crate) on_error: OnStoreError,
    pub(crate) failures: Arc<AtomicU64>,
    policy: &'static str,
    id: String,
    degraded: std::sync::atomic::AtomicBool,
}

impl SharedStore {
    /// Forgets the entry `suffix` (after the prefix): an operator's reset.
    pub(crate) async fn delete(&self, suffix: &str) -> Result<(), String> {
        let key = format!("{}{suffix}", self.prefix);
        self.client
            .call(&[b"DEL", key.as_bytes()])
            .await
            .map(|_| ())
            .map_err(|e| format!("redis: {e}"))
    }

    /// Picks the store of a policy: `None` for a local one; problems go to `errors`.
    /// `tag` names the policy's keys (`rl`, `q`).
    pub(crate) fn select(
        kind: StoreKind,
        on_error: Option<OnStoreError>,
        default: OnStoreError,
        env: &Env,
        policy: &'static str,
        tag: &str,
        errors: &mut Vec<SpecError>,
    ) -> Option<SharedStore> {
        match (kind, &env.redis) {
            (StoreKind::Local, _) => {
                if on_error.is_some() {
                    errors.push(SpecError::new(
                        "on_store_error",
                        "only applies with `store: redis`",
                    ));
                }
                None
            }
            (StoreKind::Redis, None) => {
                errors.push(SpecError::new(
                    "store",
                    "`store: redis` needs a top-level `redis` section (url, …)",
                ));
                None
            }
            (StoreKind::Redis, Some(client)) => {
                let on_error = on_error.unwrap_or(default);
                Some(SharedStore {
                    client: client.clone(),
                    prefix: format!("{}{tag}:{}:", env.redis_prefix, env.id),
                    on_error,
                    failures: palisade_core::metrics::counter(
                        "palisade_store_failures_total",
                        "Decisions made without the shared store (Redis), by policy and failure mode.",
                        &[("policy", policy), ("id", &env.id), ("mode", on_error.as_str())],
                    ),
                    policy,
                    id: env.id.clone(),
                    degraded: std::sync::atomic::AtomicBool::new(false),
                })
            }
        }
    }

    /// Notes a successful call (logs the recovery after an outage).
    pub(crate) fn ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(policy = self.policy, id = %self.id, "shared store available again");
        }
    }

    /// Notes a failed call: counted, logged once per outage, marked on the exchange.
    pub(crate) fn failed(&self, why: &RedisError, x: &mut Exchange) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(policy = self.policy, id = %self.id, error = %why, mode = self.on_error.as_str(), "shared store unavailable; applying the configured failure mode");
        }
        x.annotations
            .insert("store-error", self.on_error.as_str().to_string());
    }

    /// The 503 of `fail_closed`.
    pub(crate) fn unavailable(&self, code: &'static str, title: &'static str) -> Rejection {
        Rejection::new(StatusCode::SERVICE_UNAVAILABLE, code, title)
            .with_detail(format!(
                "the request cannot be checked against its {} now; retry shortly",
                self.policy.replace('_', " ")
            ))
            .with_header(http::header::RETRY_AFTER, HeaderValue::from(1u32))
    }
}

/// The integers of a script's array answer.
pub(crate) fn int_array(v: Value) -> Result<Vec<u64>, RedisError> {
    let Value::Array(Some(items)) = v else {
        return Err(RedisError::Protocol);
    };
    items
        .iter()
        .map(|i| match i {
            Value::Int(n) => u64::try_from(*n).map_err(|_| RedisError::Protocol),
            _ => Err(RedisError::Protocol),
        })
        .collect()
}

/// Makes room for a new key in a full map: drops the entries `idle` says can be forgotten
/// without changing any decision, and when that is not enough (a flood of active keys), an
/// eighth of the map at random, so that the next insertions are cheap again: amortised O(1)
/// per new key, whatever the number of distinct clients. Returns how many active entries
/// were dropped.
pub(crate) fn make_room<V>(
    m: &mut std::collections::HashMap<String, V>,
    max: usize,
    idle: impl Fn(&V) -> bool,
) -> usize {
    if m.len() < max {
        return 0;
    }
    m.retain(|_, v| !idle(v));
    if m.len() < max {
        return 0;
    }
    let n = m.len() / 8 + 1;
    let victims: Vec<String> = m.keys().take(n).cloned().collect();
    for k in &victims {
        m.remove(k);
    }
    victims.len()
}

/// "Seen before?" on the shared Redis: `SET prefix+seen:key 1 NX EX ttl`, so every instance
/// refuses what one of them has seen (replayed nonces and signatures).
#[derive(Debug)]
pub struct RedisSeen {
    client: Arc<RedisClient>,
    prefix: String,
}

impl RedisSeen {
    /// On `client`, with the config's key prefix.
    pub fn new(client: Arc<RedisClient>, prefix: &str) -> Self {
        RedisSeen {
            client,
            prefix: format!("{prefix}seen:"),
        }
    }
}

#[async_trait::async_trait]
impl palisade_core::seen::SeenStore for RedisSeen {
    async fn first_time(&self, key: &str, ttl_secs: u64) -> Result<bool, String> {
        let k = format!("{}{key}", self.prefix);
        let ttl = ttl_secs.max(1).to_string();
        match self
            .client
            .call(&[b"SET", k.as_bytes(), b"1", b"NX", b"EX", ttl.as_bytes()])
            .await
        {
            Ok(crate::redis::Value::Simple(_)) => Ok(true),
            Ok(crate::redis::Value::Bulk(None)) => Ok(false),
            Ok(other) => Err(format!("unexpected answer from Redis: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}
