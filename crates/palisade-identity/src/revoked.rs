//! Credentials an operator revoked while the gateway runs (the admin API): API keys by their
//! hash, bearer tokens by the hash of the token or by their `jti`. Checked by `api_key` and
//! `jwt` after the config's own checks; a revocation lasts until its `until` (a token's
//! expiry, say) or for ever. Process-wide: every config and reload sees the same set, which
//! the admin API keeps in the (encrypted) state store so that it survives restarts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};

use aws_lc_rs::digest;

/// What a revocation names: the SHA-256 of an API key, of a bearer token, or of
/// `jti:` and a token's id.
pub type Revoked = [u8; 32];

fn set() -> &'static RwLock<HashMap<Revoked, i64>> {
    static S: OnceLock<RwLock<HashMap<Revoked, i64>>> = OnceLock::new();
    S.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Whether anything was ever revoked: the common case costs one load.
static ANY: AtomicBool = AtomicBool::new(false);

/// Now, in the Unix seconds revocations are kept in.
pub fn now() -> i64 {
    crate::util::now_secs()
}

/// The name of a token id in the set.
pub fn jti(id: &str) -> Revoked {
    let d = digest::digest(&digest::SHA256, format!("jti:{id}").as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Revokes `what` until `until` (Unix seconds; `i64::MAX`: for ever).
pub fn revoke(what: Revoked, until: i64) {
    set()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(what, until);
    ANY.store(true, Ordering::Release);
}

/// Lifts a revocation; whether there was one.
pub fn lift(what: &Revoked) -> bool {
    set()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(what)
        .is_some()
}

/// Whether `what` is revoked at `now`.
pub fn is_revoked(what: &Revoked, now: i64) -> bool {
    if !ANY.load(Ordering::Acquire) {
        return false;
    }
    set()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(what)
        .is_some_and(|until| now < *until)
}

/// Every revocation still in force at `now` (past ones are forgotten).
pub fn list(now: i64) -> Vec<(Revoked, i64)> {
    let mut s = set().write().unwrap_or_else(|p| p.into_inner());
    s.retain(|_, until| now < *until);
    let mut v: Vec<(Revoked, i64)> = s.iter().map(|(k, u)| (*k, *u)).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_hold_until_their_end_and_can_be_lifted() {
        let k = crate::consumers::hash_key("pk_revoked_in_a_test");
        assert!(!is_revoked(&k, 100));
        revoke(k, 200);
        assert!(is_revoked(&k, 199) && !is_revoked(&k, 200));
        assert!(list(150).iter().any(|(h, u)| *h == k && *u == 200));
        assert!(lift(&k) && !is_revoked(&k, 150));
        let j = jti("abc");
        assert_ne!(j, jti("abd"));
    }
}
