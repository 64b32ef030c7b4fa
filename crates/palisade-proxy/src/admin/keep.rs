//! What the admin API keeps across restarts, in the embedded state store (`runtime.state_dir`,
//! encrypted at rest under `runtime.state_key` like quota counters): the revocations an
//! operator made, one record each, written when made; and the newest security events, written
//! every [`EVERY`] while new ones come and at shutdown. Opened only when the config has admin
//! tokens; when the store cannot be opened the API still works from memory and says so.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use palisade_traffic::state::StateDb;

use crate::events::{Event, Events};

const REVOKED: &str = "admin\u{1f}revoked\u{1f}";
const EVENTS: &str = "admin\u{1f}events";
/// How often new events are written to the store.
pub const EVERY: Duration = Duration::from_secs(10);
/// The most revocations read back.
const MAX_REVOCATIONS: usize = 1_000_000;

/// Opens the store of `config` when it has admin tokens.
pub fn open(config: &palisade_config::Config) -> Option<Arc<StateDb>> {
    if config.admin_api.tokens.is_empty() {
        return None;
    }
    match StateDb::open(&config.state_dir, &config.state_keys) {
        Ok(db) => Some(db),
        Err(e) => {
            tracing::error!(error = %e, "the admin API keeps revocations and events in memory only: the state store cannot be opened");
            None
        }
    }
}

/// Reads back the revocations (into the process-wide set) and the events.
pub fn load(db: &StateDb, events: &Events) {
    let now = palisade_identity::revoked::now();
    for (k, v) in db.scan(REVOKED, MAX_REVOCATIONS) {
        let hash = k
            .strip_prefix(REVOKED)
            .and_then(|h| palisade_identity::consumers::parse_hash(&format!("sha256:{h}")));
        let until = std::str::from_utf8(&v)
            .ok()
            .and_then(|u| u.parse::<i64>().ok());
        match (hash, until) {
            (Some(h), Some(u)) if u > now => palisade_identity::revoked::revoke(h, u),
            _ => db.remove(k),
        }
    }
    if let Some(v) = db.get(EVENTS) {
        match serde_json::from_slice::<Vec<Event>>(&v) {
            Ok(kept) => events.restore(kept),
            Err(e) => {
                tracing::warn!(error = %e, "the kept security events cannot be read; starting without them")
            }
        }
    }
}

/// Writes one revocation.
pub fn revoked(db: &StateDb, hash: &[u8; 32], until: i64) {
    db.put(
        format!("{REVOKED}{}", palisade_core::hex::encode(hash)),
        until.to_string().into_bytes(),
    );
}

/// Removes one revocation.
pub fn lifted(db: &StateDb, hash: &[u8; 32]) {
    db.remove(format!("{REVOKED}{}", palisade_core::hex::encode(hash)));
}

/// Writes the events kept now; returns how many events had been recorded when it did.
pub fn save_events(db: &StateDb, events: &Events) -> u64 {
    let total = events.total.load(Ordering::Relaxed);
    let all = events.all(&crate::events::Filter::default());
    let list: Vec<&Event> = all.iter().map(|e| &**e).collect();
    if let Ok(bytes) = serde_json::to_vec(&list) {
        db.put(EVENTS.to_string(), bytes);
    }
    total
}

/// Writes new events every [`EVERY`] until the process ends.
pub async fn keep_events(db: Arc<StateDb>, shared: Arc<crate::Shared>) {
    let mut saved = shared.events.total.load(Ordering::Relaxed);
    let mut closing = shared.admin_closing.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = closing.changed() => return,
        }
        if shared.events.total.load(Ordering::Relaxed) != saved {
            let (db, sh) = (db.clone(), shared.clone());
            saved = tokio::task::spawn_blocking(move || save_events(&db, &sh.events))
                .await
                .unwrap_or(saved);
        }
    }
}
