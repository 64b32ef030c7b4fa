//! The embedded store (redb) that keeps quota counters and object owners across restarts on
//! one node.
//!
//! One database file per state directory, opened on first use (never by `palisade validate`)
//! and shared by every policy of the process, across reloads. Writes leave the request path
//! at once: they go to a writer thread that commits them in batches, durably, at least every
//! [`FLUSH_EVERY`]; [`flush_all`] commits what is pending (called on shutdown).
//!
//! With `runtime.state_key` every entry is sealed ([`crypt`]): names and values never reach
//! the file in clear. A new key (the old one in `runtime.state_previous_keys`) re-wraps the
//! store's keys when the config that names it is applied, on start or on reload, while the
//! gateway serves.

pub mod crypt;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const USAGE: TableDefinition<&str, &[u8]> = TableDefinition::new("quota_usage");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

use crypt::{Crypt, Meta, StateKeys};
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
    /// The store's keys when it is encrypted.
    crypt: RwLock<Option<Crypt>>,
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
    /// Opens (or creates) `dir/state.redb` with `keys`, or returns the one this process
    /// already has open (re-wrapped under a new current key if `keys` has one).
    pub fn open(dir: &Path, keys: &StateKeys) -> Result<Arc<StateDb>, String> {
        let path = dir.join("state.redb");
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = reg.get(&path) {
            db.rekey(keys)?;
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
            w.open_table(META).map_err(|e| e.to_string())?;
            w.commit().map_err(|e| e.to_string())?;
        }
        let crypt = open_keys(&db, &path, keys)?;
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
            crypt: RwLock::new(crypt),
        });
        reg.insert(path, s.clone());
        Ok(s)
    }

    /// Applies the keys of a new config to the open store: a new current key re-wraps its
    /// keys and starts a fresh data key, at once and durably.
    fn rekey(&self, keys: &StateKeys) -> Result<(), String> {
        let mut g = self.crypt.write().unwrap_or_else(|p| p.into_inner());
        match (g.as_mut(), &keys.current) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(format!(
                "{} is encrypted: runtime.state_key must stay set",
                self.path.display()
            )),
            (None, Some(_)) => Err(format!(
                "{} is not encrypted yet: restart the gateway with runtime.state_key to encrypt it",
                self.path.display()
            )),
            (Some(c), Some(k)) if c.kek == k.fingerprint() => Ok(()),
            (Some(c), Some(k)) => {
                c.add_data_key(k)?;
                let meta = c.wrap_all(k)?;
                write_meta(&self.db, &meta)?;
                tracing::info!(path = %self.path.display(), key = %k.fingerprint(), "state key rotated: keys re-wrapped, new writes use a new data key");
                Ok(())
            }
        }
    }

    /// Reads one value.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let g = self.crypt.read().unwrap_or_else(|p| p.into_inner());
        let tk = g.as_ref().map(|c| c.table_key(key));
        let r = self.db.begin_read().ok()?;
        let t = r.open_table(USAGE).ok()?;
        let v = t.get(tk.as_deref().unwrap_or(key)).ok()??;
        match (g.as_ref(), tk) {
            (Some(c), Some(tk)) => {
                let (name, value) = c.open_value(&tk, v.value())?;
                (name == key).then_some(value)
            }
            _ => Some(v.value().to_vec()),
        }
    }

    /// The table keys and values under `prefix`, as stored, with their names.
    fn scan_stored(&self, prefix: &str, limit: usize) -> Vec<(String, String, Vec<u8>)> {
        let g = self.crypt.read().unwrap_or_else(|p| p.into_inner());
        let table_prefix = match g.as_ref() {
            Some(c) => match c.table_prefix(prefix) {
                Some(p) => p,
                None => return Vec::new(),
            },
            None => prefix.to_string(),
        };
        let Ok(r) = self.db.begin_read() else {
            return Vec::new();
        };
        let Ok(t) = r.open_table(USAGE) else {
            return Vec::new();
        };
        let Ok(range) = t.range(table_prefix.as_str()..) else {
            return Vec::new();
        };
        range
            .filter_map(Result::ok)
            .map(|(k, v)| (k.value().to_string(), v.value().to_vec()))
            .take_while(|(k, _)| k.starts_with(&table_prefix))
            .filter_map(|(k, v)| match g.as_ref() {
                Some(c) => c.open_value(&k, &v).map(|(name, value)| (k, name, value)),
                None => Some((k.clone(), k, v)),
            })
            .filter(|(_, name, _)| name.starts_with(prefix))
            .take(limit)
            .collect()
    }

    /// Keys starting with `prefix`, with their values (at most `limit`).
    /// With encryption, `prefix` must end a scope (`kind\x1fid\x1f`), as every caller's does.
    pub fn scan(&self, prefix: &str, limit: usize) -> Vec<(String, Vec<u8>)> {
        self.scan_stored(prefix, limit)
            .into_iter()
            .map(|(_, name, value)| (name, value))
            .collect()
    }

    /// Queues a write; it is committed within [`FLUSH_EVERY`].
    pub fn put(&self, key: String, value: Vec<u8>) {
        let msg = {
            let g = self.crypt.read().unwrap_or_else(|p| p.into_inner());
            match g.as_ref() {
                Some(c) => {
                    let tk = c.table_key(&key);
                    match c.seal_value(&tk, &key, &value) {
                        Ok(sealed) => Msg::Put(tk, sealed),
                        Err(e) => {
                            // never written in clear instead
                            tracing::error!(path = %self.path.display(), error = %e, "cannot seal a state entry; not written");
                            return;
                        }
                    }
                }
                None => Msg::Put(key, value),
            }
        };
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.send(msg);
    }

    /// Queues a removal; it is committed within [`FLUSH_EVERY`].
    pub fn remove(&self, key: String) {
        let tk = {
            let g = self.crypt.read().unwrap_or_else(|p| p.into_inner());
            g.as_ref().map_or(key.clone(), |c| c.table_key(&key))
        };
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.send(Msg::Remove(tk));
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
            .scan_stored(prefix, usize::MAX)
            .into_iter()
            .filter(|(_, _, v)| expired(v))
            .map(|(k, _, _)| k)
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

fn read_meta(db: &Database) -> Result<Meta, String> {
    let r = db.begin_read().map_err(|e| e.to_string())?;
    let t = r.open_table(META).map_err(|e| e.to_string())?;
    let mut m = Meta::new();
    for e in t.iter().map_err(|e| e.to_string())? {
        let (k, v) = e.map_err(|e| e.to_string())?;
        m.insert(k.value().to_string(), v.value().to_vec());
    }
    Ok(m)
}

fn write_meta(db: &Database, meta: &Meta) -> Result<(), String> {
    let w = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut t = w.open_table(META).map_err(|e| e.to_string())?;
        for (k, v) in meta {
            t.insert(k.as_str(), v.as_slice())
                .map_err(|e| e.to_string())?;
        }
    }
    w.commit().map_err(|e| e.to_string())
}

/// The keys of a store being opened: unwrapped (and re-wrapped when a previous key opened
/// them), created for a new store, or `None` for a store kept in clear. A store that was in
/// clear is encrypted in one transaction when a key is first given.
fn open_keys(db: &Database, path: &Path, keys: &StateKeys) -> Result<Option<Crypt>, String> {
    let meta = read_meta(db)?;
    let encrypted = !meta.is_empty();
    let Some(current) = &keys.current else {
        if encrypted {
            return Err(format!(
                "{} is encrypted: set runtime.state_key to the key it was written with (it is not re-created)",
                path.display()
            ));
        }
        return Ok(None);
    };
    if encrypted {
        let mut all = vec![current];
        all.extend(keys.previous.iter());
        let (mut c, which) = Crypt::unwrap(&meta, &all).map_err(|e| {
            format!(
                "cannot open {}: {e}; give the key it was written with in runtime.state_key (or, while rotating, in runtime.state_previous_keys); the store is not re-created",
                path.display()
            )
        })?;
        if which > 0 {
            c.add_data_key(current)?;
            write_meta(db, &c.wrap_all(current)?)?;
            tracing::info!(path = %path.display(), key = %current.fingerprint(), "state key rotated: keys re-wrapped, new writes use a new data key");
        }
        return Ok(Some(c));
    }
    // a new store, or one kept in clear until now: sealed in one transaction
    let (c, new_meta) = Crypt::create(current)?;
    let w = db.begin_write().map_err(|e| e.to_string())?;
    let mut moved = 0usize;
    {
        let mut t = w.open_table(USAGE).map_err(|e| e.to_string())?;
        let plain: Vec<(String, Vec<u8>)> = t
            .iter()
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .map(|(k, v)| (k.value().to_string(), v.value().to_vec()))
            .collect();
        for (k, v) in plain {
            let tk = c.table_key(&k);
            let sealed = c.seal_value(&tk, &k, &v)?;
            t.remove(k.as_str()).map_err(|e| e.to_string())?;
            t.insert(tk.as_str(), sealed.as_slice())
                .map_err(|e| e.to_string())?;
            moved += 1;
        }
        let mut m = w.open_table(META).map_err(|e| e.to_string())?;
        for (k, v) in &new_meta {
            m.insert(k.as_str(), v.as_slice())
                .map_err(|e| e.to_string())?;
        }
    }
    w.commit().map_err(|e| e.to_string())?;
    if moved > 0 {
        tracing::info!(path = %path.display(), entries = moved, "state database encrypted");
    }
    Ok(Some(c))
}

/// Closes this process's handle on `dir`'s store (tests: a store reopened as by a restart).
#[cfg(test)]
fn forget(dir: &Path) {
    let db = registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&dir.join("state.redb"));
    if let Some(db) = db {
        db.flush();
        drop(db);
    }
    // the writer thread ends when its queue closes, and drops the file with it
    std::thread::sleep(Duration::from_millis(200));
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
            let db = StateDb::open(&dir, &StateKeys::default()).unwrap_or_else(|e| panic!("{e}"));
            assert!(Arc::ptr_eq(
                &db,
                &StateDb::open(&dir, &StateKeys::default()).unwrap_or_else(|e| panic!("{e}"))
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
        let db = StateDb::open(&dir, &StateKeys::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.get("q:a"), Some(vec![1, 2, 3]));
        assert_eq!(db.get("r:c"), Some(vec![5]));
        // redb refuses a second handle on the file while this process holds it
        assert!(Database::open(dir.join("state.redb")).is_err());
    }

    fn kek(b: u8) -> crypt::Kek {
        crypt::Kek::from_hex(&format!("{b:02x}").repeat(32)).unwrap_or_else(|| unreachable!())
    }

    fn keys(current: Option<u8>, previous: &[u8]) -> StateKeys {
        StateKeys {
            current: current.map(kek),
            previous: previous.iter().map(|b| kek(*b)).collect(),
        }
    }

    const NAME: &str = "quota\u{1f}orders/0\u{1f}alice@example.com";

    fn raw(dir: &Path) -> String {
        String::from_utf8_lossy(&std::fs::read(dir.join("state.redb")).unwrap_or_default())
            .to_string()
    }

    #[test]
    fn an_encrypted_store_shows_nothing_raw_and_opens_only_with_its_keys() {
        let dir = tmp("sealed");
        let db = StateDb::open(&dir, &keys(Some(1), &[])).unwrap_or_else(|e| panic!("{e}"));
        db.put(NAME.into(), b"counter-value-7".to_vec());
        db.put("quota\u{1f}orders/0\u{1f}10.1.2.3".into(), vec![9]);
        db.flush();
        assert_eq!(db.get(NAME), Some(b"counter-value-7".to_vec()));
        assert_eq!(db.scan("quota\u{1f}orders/0\u{1f}", 10).len(), 2);
        drop(db);
        forget(&dir);
        let text = raw(&dir);
        // (the table is named quota_usage; no entry shows)
        for secret in ["alice", "10.1.2.3", "counter-value", "orders/0"] {
            assert!(!text.contains(secret), "{secret} is in the file");
        }
        // no key, a wrong key: refused with a clear error, nothing re-created
        let e = StateDb::open(&dir, &StateKeys::default()).unwrap_err();
        assert!(e.contains("is encrypted"), "{e}");
        let e = StateDb::open(&dir, &keys(Some(2), &[])).unwrap_err();
        assert!(e.contains("not re-created"), "{e}");
        // rotation: the new key with the old one as previous; then the new key alone
        let db = StateDb::open(&dir, &keys(Some(2), &[1])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.get(NAME), Some(b"counter-value-7".to_vec()));
        db.put("quota\u{1f}orders/0\u{1f}bob".into(), vec![3]);
        db.flush();
        drop(db);
        forget(&dir);
        assert!(StateDb::open(&dir, &keys(Some(1), &[])).is_err());
        let db = StateDb::open(&dir, &keys(Some(2), &[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.get(NAME), Some(b"counter-value-7".to_vec()));
        assert_eq!(db.get("quota\u{1f}orders/0\u{1f}bob"), Some(vec![3]));
        // live rotation (a reload with a new key) keeps every entry readable
        let db2 = StateDb::open(&dir, &keys(Some(3), &[])).unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&db, &db2));
        assert_eq!(db.get(NAME), Some(b"counter-value-7".to_vec()));
        drop((db, db2));
        forget(&dir);
        assert!(StateDb::open(&dir, &keys(Some(2), &[])).is_err());
        let db = StateDb::open(&dir, &keys(Some(3), &[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.scan("quota\u{1f}orders/0\u{1f}", 10).len(), 3);
        drop(db);
        forget(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_store_in_clear_is_encrypted_when_a_key_is_first_given() {
        let dir = tmp("migrate");
        let db = StateDb::open(&dir, &StateKeys::default()).unwrap_or_else(|e| panic!("{e}"));
        db.put(NAME.into(), b"counter-value-7".to_vec());
        db.flush();
        drop(db);
        forget(&dir);
        assert!(raw(&dir).contains("alice"));
        let db = StateDb::open(&dir, &keys(Some(1), &[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.get(NAME), Some(b"counter-value-7".to_vec()));
        // an encrypted store cannot be reloaded without its key
        assert!(StateDb::open(&dir, &StateKeys::default()).is_err());
        drop(db);
        forget(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
