//! The embedded store (redb) that keeps quota counters and object owners across restarts on
//! one node.
//!
//! One database file per state directory, opened on first use (never by `palisade validate`)
//! and shared by every policy of the process, across reloads. Writes leave the request path
//! at once: they go to a writer thread that commits them in batches, durably, at least every
//! [`FLUSH_EVERY`]; [`flush_all`] commits what is pending (called on shutdown).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase, TableDefinition};

const USAGE: TableDefinition<&str, &[u8]> = TableDefinition::new("quota_usage");
/// Longest a change waits before it is committed.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

enum Msg {
    Put(String, Vec<u8>),
    Remove(String),
    Flush(mpsc::Sender<()>),
}

/// An open state database.
pub struct StateDb {
    path: PathBuf,
    db: Arc<Database>,
    tx: Mutex<mpsc::Sender<Msg>>,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("path", &self.path).finish()
    }
}

/// Open databases stay open for the life of the process: a reload or a rebuilt policy finds
/// the same one (redb allows one open handle per file).
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<StateDb>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Arc<StateDb>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

impl StateDb {
    /// Opens (or creates) `dir/state.redb`, or returns the one this process already has open.
    pub fn open(dir: &Path) -> Result<Arc<StateDb>, String> {
        let path = dir.join("state.redb");
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = reg.get(&path) {
            return Ok(db.clone());
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
        let db = Database::create(&path).map_err(|e| {
            format!(
                "cannot open {} ({e}); is another Palisade process using this state directory?",
                path.display()
            )
        })?;
        let db = Arc::new(db);
        {
            let w = db.begin_write().map_err(|e| e.to_string())?;
            w.open_table(USAGE).map_err(|e| e.to_string())?;
            w.commit().map_err(|e| e.to_string())?;
        }
        let (tx, rx) = mpsc::channel();
        let writer = db.clone();
        let shown = path.clone();
        std::thread::Builder::new()
            .name("palisade-state".into())
            .spawn(move || write_loop(&writer, &shown, &rx))
            .map_err(|e| format!("cannot start the state writer: {e}"))?;
        let s = Arc::new(StateDb {
            path: path.clone(),
            db,
            tx: Mutex::new(tx),
        });
        reg.insert(path, s.clone());
        Ok(s)
    }

    /// Reads one value.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let r = self.db.begin_read().ok()?;
        let t = r.open_table(USAGE).ok()?;
        let v = t.get(key).ok()??;
        Some(v.value().to_vec())
    }

    /// Keys starting with `prefix`, with their values (at most `limit`).
    pub fn scan(&self, prefix: &str, limit: usize) -> Vec<(String, Vec<u8>)> {
        let Ok(r) = self.db.begin_read() else {
            return Vec::new();
        };
        let Ok(t) = r.open_table(USAGE) else {
            return Vec::new();
        };
        let Ok(range) = t.range(prefix..) else {
            return Vec::new();
        };
        range
            .filter_map(Result::ok)
            .map(|(k, v)| (k.value().to_string(), v.value().to_vec()))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .collect()
    }

    /// Queues a write; it is committed within [`FLUSH_EVERY`].
    pub fn put(&self, key: String, value: Vec<u8>) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.send(Msg::Put(key, value));
    }

    /// Queues a removal; it is committed within [`FLUSH_EVERY`].
    pub fn remove(&self, key: String) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.send(Msg::Remove(key));
    }

    /// Commits everything queued so far, and waits for it.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            if tx.send(Msg::Flush(done)).is_err() {
                return;
            }
        }
        let _ = wait.recv_timeout(Duration::from_secs(10));
    }

    /// Deletes the entries whose value `expired` says are over.
    pub fn purge(&self, prefix: &str, expired: impl Fn(&[u8]) -> bool) -> usize {
        let stale: Vec<String> = self
            .scan(prefix, usize::MAX)
            .into_iter()
            .filter(|(_, v)| expired(v))
            .map(|(k, _)| k)
            .collect();
        if stale.is_empty() {
            return 0;
        }
        let Ok(w) = self.db.begin_write() else {
            return 0;
        };
        let mut n = 0;
        if let Ok(mut t) = w.open_table(USAGE) {
            for k in &stale {
                if t.remove(k.as_str()).is_ok() {
                    n += 1;
                }
            }
        }
        if w.commit().is_err() {
            return 0;
        }
        n
    }
}

/// Commits what every open state database has pending (on shutdown).
pub fn flush_all() {
    let open: Vec<Arc<StateDb>> = registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    for db in open {
        db.flush();
    }
}

fn write_loop(db: &Database, path: &Path, rx: &mpsc::Receiver<Msg>) {
    let mut pending: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    let mut waiting: Vec<mpsc::Sender<()>> = Vec::new();
    let mut failing = false;
    loop {
        let first = match rx.recv() {
            Ok(m) => m,
            Err(_) => return,
        };
        fn handle(
            m: Msg,
            pending: &mut HashMap<String, Option<Vec<u8>>>,
            waiting: &mut Vec<mpsc::Sender<()>>,
        ) {
            match m {
                Msg::Put(k, v) => {
                    pending.insert(k, Some(v));
                }
                Msg::Remove(k) => {
                    pending.insert(k, None);
                }
                Msg::Flush(done) => waiting.push(done),
            }
        }
        handle(first, &mut pending, &mut waiting);
        // gather what arrives during the next FLUSH_EVERY, unless a flush is waited for
        let deadline = std::time::Instant::now() + FLUSH_EVERY;
        while waiting.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(m) => handle(m, &mut pending, &mut waiting),
                Err(_) => break,
            }
        }
        while let Ok(m) = rx.try_recv() {
            handle(m, &mut pending, &mut waiting);
        }
        if !pending.is_empty() {
            match commit(db, &pending) {
                Ok(()) => {
                    if failing {
                        tracing::info!(path = %path.display(), "state database writes work again");
                        failing = false;
                    }
                    pending.clear();
                }
                Err(e) => {
                    // kept in memory and retried with the next batch
                    if !failing {
                        tracing::error!(path = %path.display(), error = %e, "cannot write the state database; retrying");
                        failing = true;
                    }
                }
            }
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
}

fn commit(db: &Database, pending: &HashMap<String, Option<Vec<u8>>>) -> Result<(), String> {
    let w = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut t = w.open_table(USAGE).map_err(|e| e.to_string())?;
        for (k, v) in pending {
            match v {
                Some(v) => {
                    t.insert(k.as_str(), v.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                None => {
                    t.remove(k.as_str()).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    w.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("palisade-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn writes_are_committed_and_read_back() {
        let dir = tmp("reopen");
        {
            let db = StateDb::open(&dir).unwrap_or_else(|e| panic!("{e}"));
            assert!(Arc::ptr_eq(
                &db,
                &StateDb::open(&dir).unwrap_or_else(|e| panic!("{e}"))
            ));
            db.put("q:a".into(), vec![1, 2, 3]);
            db.put("q:b".into(), vec![4]);
            db.put("r:c".into(), vec![5]);
            db.flush();
            assert_eq!(db.get("q:a"), Some(vec![1, 2, 3]));
            assert_eq!(db.scan("q:", 10).len(), 2);
            assert_eq!(db.purge("q:", |v| v == [4]), 1);
            assert_eq!(db.get("q:b"), None);
        }
        // a second handle on the same file is the same database
        let db = StateDb::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.get("q:a"), Some(vec![1, 2, 3]));
        assert_eq!(db.get("r:c"), Some(vec![5]));
        // redb refuses a second handle on the file while this process holds it
        assert!(Database::open(dir.join("state.redb")).is_err());
    }
}
