//! Request ids: a random per-process prefix and a counter, unique without a syscall each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static PREFIX: OnceLock<u64> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new request id (32 hex characters).
pub fn next() -> String {
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            // Fall back to time and pid: ids stay unique per process, only less unpredictable.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            return (t.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32);
        }
        u64::from_le_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}
