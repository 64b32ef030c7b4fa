//! What a traffic policy needs from its surroundings when it is built: a clock, the shared
//! store (Redis) when the config names one, and a stable identity for its counters.

use std::sync::Arc;

use serde::Deserialize;

use crate::redis::RedisClient;
use crate::Clock;

/// Where a policy keeps its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process (quotas: also persisted in the embedded store).
    #[default]
    Local,
    /// In the Redis server of the top-level `redis` section, shared by every instance.
    Redis,
}

/// What a policy with a Redis store does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
        }
    }
}

/// Logs the first failure of an outage and the recovery, not every failed call.
#[derive(Debug, Default)]
pub(crate) struct OutageLog {
    degraded: std::sync::atomic::AtomicBool,
}

impl OutageLog {
    pub(crate) fn failed(
        &self,
        policy: &str,
        id: &str,
        mode: OnStoreError,
        why: &dyn std::fmt::Display,
    ) {
        if !self
            .degraded
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(policy, id, error = %why, mode = mode.as_str(), "shared store unavailable; applying the configured failure mode");
        }
    }
    pub(crate) fn ok(&self, policy: &str, id: &str) {
        if self
            .degraded
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!(policy, id, "shared store available again");
        }
    }
}
