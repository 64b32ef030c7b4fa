//! Signatures and nonces already seen, remembered for as long as a signature could still be
//! accepted, so a captured request cannot be sent again inside its window.
//!
//! Bounded: past `capacity` live entries a new one is refused (the caller answers 503), never
//! evicted early (an evicted entry is a replay window reopened). Only entries of verified
//! signatures are stored, so only holders of a key can fill it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;

/// What remembering an entry found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: now remembered.
    Fresh,
    /// Already seen inside its window.
    Replayed,
    /// The cache is full of live entries.
    Full,
}

/// The name of an entry: SHA-256 of the scope's length, the scope and the item (no key id,
/// nonce or signature is kept or sent to a shared store in clear).
pub fn entry_key(scope: &str, item: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&u64::try_from(scope.len()).unwrap_or(u64::MAX).to_be_bytes());
    ctx.update(scope.as_bytes());
    ctx.update(item);
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// The cache.
#[derive(Debug)]
pub struct ReplayCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    until: HashMap<[u8; 32], i64>,
    next_sweep: i64,
}

impl ReplayCache {
    /// A cache of at most `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    /// Remembers `(scope, item)` until `until` (Unix seconds), at `now`.
    pub fn remember(&self, scope: &str, item: &[u8], until: i64, now: i64) -> Seen {
        let key = entry_key(scope, item);
        let Ok(mut g) = self.inner.lock() else {
            return Seen::Full;
        };
        if let Some(&t) = g.until.get(&key) {
            if t >= now {
                return Seen::Replayed;
            }
        }
        if g.until.len() >= self.capacity || now >= g.next_sweep {
            g.until.retain(|_, t| *t >= now);
            g.next_sweep = now + 10;
        }
        if g.until.len() >= self.capacity {
            return Seen::Full;
        }
        g.until.insert(key, until);
        Seen::Fresh
    }
}

/// Why an entry was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Already seen inside its window: a replay.
    Replayed,
    /// It could not be remembered (the store is full, or the shared one cannot be reached
    /// and the policy fails closed): the caller answers 503.
    Unavailable(&'static str),
}

/// Where a policy remembers what it accepted: its own bounded cache and, in cluster mode,
/// the shared store every instance consults (`store: redis`), so a replay to another instance
/// is refused too. Used by `signature` (signatures, nonces) and `ws_security` (nonces).
pub struct Replays {
    local: ReplayCache,
    shared: Option<Arc<dyn palisade_core::seen::SeenStore>>,
    fallback: bool,
    policy: &'static str,
}

impl std::fmt::Debug for Replays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replays")
            .field("shared", &self.shared.is_some())
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl Replays {
    /// A local cache of `capacity`, with `shared` when the cluster has one; `fallback`:
    /// remember locally while the shared store is down (else refuse). `policy` names the
    /// policy in the log.
    pub fn new(
        capacity: usize,
        shared: Option<Arc<dyn palisade_core::seen::SeenStore>>,
        fallback: bool,
        policy: &'static str,
    ) -> Self {
        Replays {
            local: ReplayCache::new(capacity),
            shared,
            fallback,
            policy,
        }
    }

    /// Takes `(scope, item)` until `until` if it was not seen before.
    pub async fn first_time(
        &self,
        scope: &str,
        item: &[u8],
        until: i64,
        now: i64,
    ) -> Result<(), Fault> {
        if let Some(store) = &self.shared {
            let key = palisade_core::hex::encode(&entry_key(scope, item));
            let ttl = u64::try_from(until.saturating_sub(now)).unwrap_or(1).max(1);
            match store.first_time(&key, ttl).await {
                Ok(true) => return Ok(()),
                Ok(false) => return Err(Fault::Replayed),
                Err(e) if self.fallback => {
                    tracing::warn!(policy = self.policy, error = %e, "replay store (redis) unavailable: remembering locally");
                }
                Err(e) => {
                    tracing::error!(policy = self.policy, error = %e, "replay store (redis) unavailable: refusing (on_store_error: fail_closed)");
                    return Err(Fault::Unavailable(
                        "the replay store cannot be reached; retry shortly",
                    ));
                }
            }
        }
        match self.local.remember(scope, item, until, now) {
            Seen::Fresh => Ok(()),
            Seen::Replayed => Err(Fault::Replayed),
            Seen::Full => Err(Fault::Unavailable(
                "the replay store is full; retry shortly",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_the_window_closes_and_refuses_past_capacity() {
        let c = ReplayCache::new(2);
        assert_eq!(c.remember("k", b"n1", 100, 10), Seen::Fresh);
        assert_eq!(c.remember("k", b"n1", 100, 50), Seen::Replayed);
        // another key's nonce of the same text is another entry
        assert_eq!(c.remember("k2", b"n1", 100, 50), Seen::Fresh);
        assert_eq!(c.remember("k", b"n3", 100, 50), Seen::Full);
        // after the window the entries go and the nonce is usable again
        assert_eq!(c.remember("k", b"n1", 300, 101), Seen::Fresh);
    }
}
