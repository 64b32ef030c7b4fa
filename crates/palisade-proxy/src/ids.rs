//! Request ids: a random per-process prefix and a counter, unique without a syscall each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `v` as 16 lowercase hex digits.
fn hex(v: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, slot) in out.iter_mut().enumerate() {
        let nibble = (v >> (4 * (15 - i))) & 0xf;
        *slot = HEX.get(nibble as usize).copied().unwrap_or(b'0');
    }
    out
}

/// A new request id (32 hex characters).
pub fn next() -> String {
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            // Fall back to time and pid: ids stay unique per process, only less unpredictable.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            return hex((t.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32));
        }
        hex(u64::from_le_bytes(b))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&hex(n));
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_and_unique() {
        let (a, b) = (super::next(), super::next());
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_eq!(a[..16], b[..16]);
        let (na, nb) = (
            u64::from_str_radix(&a[16..], 16).unwrap(),
            u64::from_str_radix(&b[16..], 16).unwrap(),
        );
        assert!(nb > na);
    }
}
