//! Signatures and nonces already seen, remembered for as long as a signature could still be
//! accepted, so a captured request cannot be sent again inside its window.
//!
//! Bounded: past `capacity` live entries a new one is refused (the caller answers 503), never
//! evicted early (an evicted entry is a replay window reopened). Only entries of verified
//! signatures are stored, so only holders of a key can fill it.

use std::collections::HashMap;
use std::sync::Mutex;

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
