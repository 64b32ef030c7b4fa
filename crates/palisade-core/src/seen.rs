//! "Seen before?" across gateway instances: a store that remembers a key for a time and says
//! whether it was new. Implemented on Redis by `palisade-traffic` (`SET NX EX`), used by
//! policies that refuse replays (`signature` nonces); kept behind a trait so the identity
//! policies need no Redis client of their own.

/// Remembers keys for a while.
#[async_trait::async_trait]
pub trait SeenStore: std::fmt::Debug + Send + Sync {
    /// Remembers `key` for `ttl_secs` (at least 1); `Ok(true)` when it was not there yet,
    /// `Ok(false)` when it was (a replay), `Err` when the store cannot answer.
    async fn first_time(&self, key: &str, ttl_secs: u64) -> Result<bool, String>;
}
