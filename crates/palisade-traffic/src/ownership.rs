//! `ownership`: object-level authorization learned from traffic, for APIs whose owner of an
//! object is only in their data (broken object level authorization, BOLA). Answers of the
//! operations that show a caller its own objects (its list, what it just created) teach the
//! gateway which caller owns which key; a later request by another caller that names one of
//! those keys (in the path, the query or the body) is refused, whatever the upstream would
//! have done. Objects the gateway has never seen pass to the upstream (`unknown: forward`,
//! the default) or are refused (`unknown: refuse`).
//!
//! Policies with the same `resource` share one table, across routes and reloads. Callers are
//! kept as keyed hashes of their identity (the consumer, or a header such as the upstream's
//! own token; HMAC-SHA256 under a key of the state directory), never as the credential
//! itself. The table is bounded in memory and kept in the embedded store of the state
//! directory, so a restart forgets no owner.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use http::StatusCode;
use palisade_core::fields::{self, scalar_text};
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, ResponseHead, Stage,
    Verdict,
};
use serde::Deserialize;
use serde_json::Value;

use crate::state::StateDb;
use crate::store::Env;

/// Refusal code when the caller does not own the object it names.
pub const CODE_NOT_OWNER: &str = "ownership.not_owner";
/// Refusal code when the object is unknown and `unknown: refuse`.
pub const CODE_UNKNOWN: &str = "ownership.unknown_object";

/// Where a request names an object.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum In {
    /// A parameter of the route's path template (`{id}`).
    Path,
    /// A query parameter.
    Query,
    /// A field of the body (JSON dotted path, or a form field).
    Body,
}

/// Where a request names an object.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// `path`, `query` or `body`.
    #[serde(rename = "in")]
    pub location: In,
    /// The parameter or field name.
    pub name: String,
}

/// What to do with an object nobody was seen to own.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// Let the upstream decide (default).
    #[default]
    Forward,
    /// Refuse.
    Refuse,
}

/// Config of the `ownership` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnershipSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// The kind of object (`patients`): policies with the same name share one table.
    pub resource: String,
    /// Who the caller is: `consumer` (default: the authenticated principal) or `header:NAME`
    /// (the value of a header, e.g. the upstream's own token; kept hashed).
    #[serde(default)]
    pub owner: Option<String>,
    /// The field of this operation's 2xx JSON answers that holds the key of an object the
    /// caller owns: in the answer object, in each item of an answer list, or in each item of
    /// a list the answer object holds (`{"results": […]}`).
    #[serde(default)]
    pub learn: Option<String>,
    /// Where this operation's requests name an object.
    #[serde(default)]
    pub check: Option<CheckSpec>,
    /// Objects nobody was seen to own. Default `forward`.
    #[serde(default)]
    pub unknown: Unknown,
    /// Most objects remembered per resource (the oldest are forgotten). Default 1,000,000.
    #[serde(default)]
    pub max_objects: Option<usize>,
    /// `local` (default: this instance, kept in its state directory) or `redis`: one table
    /// for every instance, in the top-level `redis` (owners are also learned locally).
    #[serde(default)]
    pub store: crate::store::StoreKind,
    /// With `store: redis`, while Redis cannot be reached: `fail_closed` (default: 503),
    /// `local_fallback` (this instance's own table) or `fail_open`.
    #[serde(default)]
    pub on_store_error: Option<crate::store::OnStoreError>,
    /// With `store: redis`, how long an object's owners are kept after they were last
    /// learned. Default 30d.
    #[serde(default)]
    pub ttl: Option<palisade_core::duration::Dur>,
}

/// Refusal code while the shared table cannot be read (`fail_closed`).
pub const CODE_UNAVAILABLE: &str = "ownership.unavailable";

/// Answers -1 (nobody owns KEYS[1]), 1 (ARGV[1] owns it) or 0.
const CHECK_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('SISMEMBER', KEYS[1], ARGV[1])
"#;

/// Adds ARGV[1] to the owners of every KEYS[i] (at most ARGV[3] owners), keeping each
/// ARGV[2] seconds.
const LEARN_LUA: &str = r#"
for i, k in ipairs(KEYS) do
  if redis.call('SCARD', k) < tonumber(ARGV[3]) then redis.call('SADD', k, ARGV[1]) end
  redis.call('EXPIRE', k, ARGV[2])
end
return #KEYS
"#;

/// Sets KEYS[1] to ARGV[1] unless it is set; answers its value.
const KEY_LUA: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"#;

/// The table shared through Redis.
struct Cluster {
    store: crate::store::SharedStore,
    check: String,
    learn: String,
    key_script: String,
    ttl: u64,
    /// The key callers are hashed with, shared by every instance (kept in Redis).
    key: tokio::sync::OnceCell<aws_lc_rs::hmac::Key>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    fn object(&self, key: &str) -> String {
        format!("{}{key}", self.store.prefix)
    }

    async fn caller(&self, id: &str) -> Result<u64, crate::redis::RedisError> {
        let key = self
            .key
            .get_or_try_init(|| async {
                let mut fresh = [0u8; 32];
                let _ = aws_lc_rs::rand::fill(&mut fresh);
                let hex = palisade_core::hex::encode(&fresh);
                let name = format!("{}key", self.store.prefix);
                match self
                    .store
                    .client
                    .eval(&self.key_script, &[name.as_bytes()], &[hex.as_bytes()])
                    .await?
                {
                    crate::redis::Value::Bulk(Some(v)) => {
                        Ok(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &v))
                    }
                    _ => Err(crate::redis::RedisError::Protocol),
                }
            })
            .await?;
        Ok(hash_with(key, id))
    }
}

fn hash_with(key: &aws_lc_rs::hmac::Key, id: &str) -> u64 {
    let tag = aws_lc_rs::hmac::sign(key, id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(tag.as_ref().get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(b)
}

#[derive(Debug, Clone)]
enum Owner {
    Consumer,
    Header(http::HeaderName),
}

/// The owners of each object of one resource.
#[derive(Debug)]
pub struct Table {
    resource: String,
    inner: Mutex<TableInner>,
    /// The key callers are hashed with: from the state database, or random for the process.
    key: OnceLock<aws_lc_rs::hmac::Key>,
    /// The state database (none: memory only), opened once by `open`.
    db: OnceLock<Result<Option<Arc<StateDb>>, String>>,
}

#[derive(Debug, Default)]
struct TableInner {
    owners: HashMap<String, Vec<u64>>,
    order: VecDeque<String>,
}

/// Most owners kept per object (shared objects: the first ones seen).
const MAX_OWNERS: usize = 16;
/// Most keys learned from one answer.
const MAX_LEARNED: usize = 10_000;

fn encode(owners: &[u64]) -> Vec<u8> {
    owners.iter().flat_map(|o| o.to_le_bytes()).collect()
}

fn decode(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_le_bytes))
        .take(MAX_OWNERS)
        .collect()
}

/// Where the key callers are hashed with is kept in the state database.
const KEY_ENTRY: &str = "ownership\u{1f}key";

impl Table {
    /// An empty table of `resource`, not yet opened.
    pub fn new(resource: &str) -> Table {
        Table {
            resource: resource.to_string(),
            inner: Mutex::new(TableInner::default()),
            key: OnceLock::new(),
            db: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn prefix(&self) -> String {
        format!("ownership\u{1f}{}\u{1f}", self.resource)
    }

    fn db(&self) -> Option<&Arc<StateDb>> {
        self.db
            .get()
            .and_then(|r| r.as_ref().ok())
            .and_then(Option::as_ref)
    }

    /// Opens the state database of `dir` (none: memory only) once, and loads its key and at
    /// most `max` owners. An error stops the start (the policy does not serve without them).
    pub fn open(
        &self,
        dir: Option<&Path>,
        keys: &crate::state::crypt::StateKeys,
        max: usize,
    ) -> Result<(), String> {
        if let (Some(dir), Some(Ok(Some(_)))) = (dir, self.db.get()) {
            // already open: the config's keys are applied to the store (rotation on reload)
            StateDb::open(dir, keys)?;
        }
        let r = self.db.get_or_init(|| {
            let Some(dir) = dir else { return Ok(None) };
            let db = StateDb::open(dir, keys)?;
            let key = match db.get(KEY_ENTRY) {
                Some(k) if k.len() == 32 => k,
                _ => {
                    let mut k = vec![0u8; 32];
                    aws_lc_rs::rand::fill(&mut k)
                        .map_err(|_| "no randomness for the ownership key".to_string())?;
                    db.put(KEY_ENTRY.into(), k.clone());
                    db.flush();
                    k
                }
            };
            let _ = self.key.set(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &key,
            ));
            let mut t = self.lock();
            for (k, v) in db.scan(&self.prefix(), max) {
                let Some(obj) = k.strip_prefix(&self.prefix()) else {
                    continue;
                };
                t.owners.insert(obj.to_string(), decode(&v));
                t.order.push_back(obj.to_string());
            }
            drop(t);
            Ok(Some(db))
        });
        r.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// The keyed hash a caller is kept as.
    pub fn caller(&self, id: &str) -> u64 {
        let key = self.key.get_or_init(|| {
            let mut k = [0u8; 32];
            // without randomness the key is still unknown outside this process's memory
            let _ = aws_lc_rs::rand::fill(&mut k);
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &k)
        });
        hash_with(key, id)
    }

    /// Records `who` as an owner of `key`.
    pub fn learn(&self, key: &str, who: u64, max: usize) {
        let mut t = self.lock();
        if let Some(o) = t.owners.get_mut(key) {
            if !o.contains(&who) && o.len() < MAX_OWNERS {
                o.push(who);
                let enc = encode(o);
                drop(t);
                if let Some(db) = self.db() {
                    db.put(format!("{}{key}", self.prefix()), enc);
                }
            }
            return;
        }
        let mut evicted = Vec::new();
        while t.owners.len() >= max.max(1) {
            match t.order.pop_front() {
                Some(old) => {
                    t.owners.remove(&old);
                    evicted.push(old);
                }
                None => break,
            }
        }
        t.owners.insert(key.to_string(), vec![who]);
        t.order.push_back(key.to_string());
        drop(t);
        if let Some(db) = self.db() {
            for old in evicted {
                db.remove(format!("{}{old}", self.prefix()));
            }
            db.put(format!("{}{key}", self.prefix()), encode(&[who]));
        }
    }

    /// The owners of `key`, when it is known.
    pub fn owners(&self, key: &str) -> Option<Vec<u64>> {
        self.lock().owners.get(key).cloned()
    }

    /// Objects known.
    pub fn len(&self) -> usize {
        self.lock().owners.len()
    }

    /// Whether no object is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The table of a resource in a state directory, shared by the policies that name it and
/// kept across reloads.
pub fn table(dir: Option<&Path>, resource: &str) -> Arc<Table> {
    type Tables = HashMap<(Option<PathBuf>, String), Arc<Table>>;
    static TABLES: LazyLock<Mutex<Tables>> = LazyLock::new(Default::default);
    let mut m = TABLES.lock().unwrap_or_else(|p| p.into_inner());
    m.entry((dir.map(Path::to_path_buf), resource.to_string()))
        .or_insert_with(|| Arc::new(Table::new(resource)))
        .clone()
}

/// The runtime `ownership` policy.
#[derive(Debug)]
pub struct Ownership {
    resource: String,
    owner: Owner,
    learn: Option<String>,
    check: Option<CheckSpec>,
    unknown: Unknown,
    max: usize,
    state_dir: Option<PathBuf>,
    state_keys: Arc<crate::state::crypt::StateKeys>,
    table: Arc<Table>,
    cluster: Option<Cluster>,
}

/// The annotation that marks an exchange this policy refused (or would have): its answer
/// teaches nothing.
const REFUSED: &str = "ownership_refused";
/// The annotation that keeps the caller's hashes (local and shared) from the request to its
/// answer.
const CALLER: &str = "ownership_caller";

impl OwnershipSpec {
    /// Builds the policy; its table is kept in `env`'s state directory.
    pub fn build(&self, env: &Env) -> Result<Ownership, Vec<SpecError>> {
        let mut errors = Vec::new();
        if self.resource.trim().is_empty() {
            errors.push(SpecError::new(
                "resource",
                "name the kind of object, e.g. patients",
            ));
        }
        let owner = match self.owner.as_deref().unwrap_or("consumer") {
            "consumer" => Some(Owner::Consumer),
            o => match o
                .strip_prefix("header:")
                .map(|h| http::HeaderName::from_bytes(h.trim().as_bytes()))
            {
                Some(Ok(h)) => Some(Owner::Header(h)),
                _ => {
                    errors.push(SpecError::new(
                        "owner",
                        format!("`{o}`: use consumer or header:NAME"),
                    ));
                    None
                }
            },
        };
        if self.learn.is_none() && self.check.is_none() {
            errors.push(SpecError::new(
                "learn",
                "ownership needs `learn` (where answers show a caller's objects) or `check` (where requests name one)",
            ));
        }
        if self.learn.as_deref().is_some_and(str::is_empty) {
            errors.push(SpecError::new("learn", "a field name"));
        }
        if self.check.as_ref().is_some_and(|c| c.name.is_empty()) {
            errors.push(SpecError::new("check.name", "a parameter or field name"));
        }
        let cluster = crate::store::SharedStore::select(
            self.store,
            self.on_store_error,
            crate::store::OnStoreError::FailClosed,
            &Env {
                id: self.resource.clone(),
                ..env.clone()
            },
            "ownership",
            "own",
            &mut errors,
        )
        .map(|store| Cluster {
            check: store.client.register_script(CHECK_LUA),
            learn: store.client.register_script(LEARN_LUA),
            key_script: store.client.register_script(KEY_LUA),
            store,
            ttl: self.ttl.map_or(30 * 86_400, |d| d.0.as_secs().max(1)),
            key: tokio::sync::OnceCell::new(),
        });
        match (owner, errors.is_empty()) {
            (Some(owner), true) => Ok(Ownership {
                resource: self.resource.clone(),
                owner,
                learn: self.learn.clone(),
                check: self.check.clone(),
                unknown: self.unknown,
                max: self.max_objects.unwrap_or(1_000_000),
                state_dir: env.state_dir.clone(),
                state_keys: env.state_keys.clone(),
                table: table(env.state_dir.as_deref(), &self.resource),
                cluster,
            }),
            _ => Err(errors),
        }
    }
}

/// The keys an answer shows under `field`.
fn keys_in(v: &Value, field: &str) -> Vec<String> {
    let item = |x: &Value| x.get(field).and_then(scalar_text);
    let mut out = Vec::new();
    match v {
        Value::Array(a) => out.extend(a.iter().filter_map(item)),
        Value::Object(m) => match item(v) {
            Some(k) => out.push(k),
            None => {
                for x in m.values() {
                    if let Value::Array(a) = x {
                        out.extend(a.iter().filter_map(item));
                    }
                }
            }
        },
        _ => {}
    }
    out.truncate(MAX_LEARNED);
    out
}

impl Ownership {
    /// Who the caller is, as the text its hashes are made of.
    fn caller_id(&self, req: &RequestHead, x: &Exchange) -> Option<String> {
        let id = match &self.owner {
            Owner::Consumer => x
                .principal()
                .map(|p| format!("c:{}", p.consumer.as_deref().unwrap_or(&p.subject)))?,
            Owner::Header(h) => {
                let v = req.headers.get(h)?.to_str().ok()?.trim();
                if v.is_empty() {
                    return None;
                }
                format!("h:{v}")
            }
        };
        Some(id)
    }

    /// The decision for a request naming `key` by the caller `id`: from the shared table
    /// when there is one (its failure mode while Redis is away), else from the local one.
    async fn judge_key(&self, key: Option<&str>, id: Option<&str>, x: &mut Exchange) -> Verdict {
        let local = |p: &Self| p.decide(key, id.map(|i| p.table.caller(i)));
        let (Some(c), Some(k)) = (&self.cluster, key) else {
            return local(self);
        };
        let asked = async {
            let Some(id) = id else {
                // no caller: an owned object is refused, an unknown one forwarded
                let v = c
                    .store
                    .client
                    .eval(&c.check, &[c.object(k).as_bytes()], &[b"-"])
                    .await?;
                return Ok::<i64, crate::redis::RedisError>(match v {
                    crate::redis::Value::Int(n) => n.min(0),
                    _ => return Err(crate::redis::RedisError::Protocol),
                });
            };
            let h = c.caller(id).await?.to_string();
            match c
                .store
                .client
                .eval(&c.check, &[c.object(k).as_bytes()], &[h.as_bytes()])
                .await?
            {
                crate::redis::Value::Int(n) => Ok(n),
                _ => Err(crate::redis::RedisError::Protocol),
            }
        }
        .await;
        match asked {
            Ok(n) => {
                c.store.ok();
                match n {
                    1 => Verdict::Continue,
                    -1 if self.unknown == Unknown::Forward => Verdict::Continue,
                    -1 => self.refusal(CODE_UNKNOWN),
                    _ => self.refusal(CODE_NOT_OWNER),
                }
            }
            Err(e) => {
                c.store.failed(&e, x);
                match c.store.on_error {
                    crate::store::OnStoreError::LocalFallback => local(self),
                    crate::store::OnStoreError::FailOpen => Verdict::Continue,
                    crate::store::OnStoreError::FailClosed => Verdict::Reject(
                        c.store
                            .unavailable(CODE_UNAVAILABLE, "Ownership unavailable"),
                    ),
                }
            }
        }
    }

    fn refusal(&self, code: &'static str) -> Verdict {
        Verdict::Reject(
            Rejection::new(StatusCode::NOT_FOUND, code, "Not found")
                .with_detail(format!("no {} of yours has this key", self.resource)),
        )
    }

    /// The decision for a request naming `key` (none: it names no object) by `caller`.
    pub fn decide(&self, key: Option<&str>, caller: Option<u64>) -> Verdict {
        let Some(key) = key else {
            return Verdict::Continue;
        };
        match self.table.owners(key) {
            None if self.unknown == Unknown::Forward => Verdict::Continue,
            None => self.refusal(CODE_UNKNOWN),
            Some(o) if caller.is_some_and(|c| o.contains(&c)) => Verdict::Continue,
            Some(_) => self.refusal(CODE_NOT_OWNER),
        }
    }

    fn judged(&self, v: Verdict, x: &mut Exchange) -> Outcome {
        if matches!(v, Verdict::Reject(_)) {
            x.annotations.insert(REFUSED, self.resource.clone());
        }
        Ok(v)
    }

    /// The keys of the objects `body` shows (the `learn` field).
    fn shown(&self, body: &[u8]) -> Vec<String> {
        let Some(field) = &self.learn else {
            return Vec::new();
        };
        match palisade_core::json::parse(body) {
            Ok(v) => keys_in(&v, field),
            Err(_) => Vec::new(),
        }
    }

    /// Records the caller (by its local hash) as owner of the objects `body` shows.
    pub fn learn_from(&self, body: &[u8], caller: u64) -> usize {
        let keys = self.shown(body);
        for k in &keys {
            self.table.learn(k, caller, self.max);
        }
        keys.len()
    }

    fn query_value(req: &RequestHead, name: &str) -> Option<String> {
        req.uri.query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (palisade_core::uri::decode_form(k).as_deref() == Some(name))
                .then(|| palisade_core::uri::decode_form(v))
                .flatten()
        })
    }
}

#[async_trait::async_trait]
impl Policy for Ownership {
    fn kind(&self) -> &'static str {
        "ownership"
    }
    fn stage(&self) -> Stage {
        Stage::Authz
    }
    fn prepare(&self) -> Result<(), String> {
        self.table
            .open(self.state_dir.as_deref(), &self.state_keys, self.max)
            .map_err(|e| format!("ownership `{}`: {e}", self.resource))
    }
    fn phases(&self) -> PhaseSet {
        let mut p = PhaseSet::EMPTY;
        match self.check.as_ref().map(|c| c.location) {
            Some(In::Body) => p = p.with(Phase::RequestBody),
            Some(_) => p = p.with(Phase::RequestHead),
            None => {}
        }
        if self.learn.is_some() {
            // the caller is read from the request head, the answer from the body
            p = p.with(Phase::RequestHead).with(Phase::ResponseBody);
        }
        p
    }
    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let caller = self.caller_id(req, x);
        if self.learn.is_some() {
            if let Some(id) = &caller {
                // the caller's hashes, kept for the answer (never the credential itself)
                let cluster = match &self.cluster {
                    Some(c) => c.caller(id).await.ok().map(|h| h.to_string()),
                    None => None,
                };
                x.annotations.insert(
                    CALLER,
                    format!("{}:{}", self.table.caller(id), cluster.unwrap_or_default()),
                );
            }
        }
        let key = match &self.check {
            Some(CheckSpec {
                location: In::Path,
                name,
            }) => x
                .path_params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
            Some(CheckSpec {
                location: In::Query,
                name,
            }) => Self::query_value(req, name),
            _ => return Ok(Verdict::Continue),
        };
        let v = self.judge_key(key.as_deref(), caller.as_deref(), x).await;
        self.judged(v, x)
    }
    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        let Some(CheckSpec { name, .. }) = &self.check else {
            return Ok(Verdict::Continue);
        };
        let key = match fields::read(req, body, x) {
            Ok(f) => f.text(name),
            Err(e) => {
                return Ok(Verdict::Reject(
                    Rejection::new(StatusCode::BAD_REQUEST, CODE_NOT_OWNER, "Unreadable body")
                        .with_detail(e.0),
                ))
            }
        };
        let caller = self.caller_id(req, x);
        let v = self.judge_key(key.as_deref(), caller.as_deref(), x).await;
        self.judged(v, x)
    }
    async fn on_response_body(
        &self,
        res: &mut ResponseHead,
        body: &mut bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        // a refused request (or one that would have been, in monitor mode) teaches nothing
        if !res.status.is_success() || x.annotations.contains_key(REFUSED) {
            return Ok(Verdict::Continue);
        }
        let Some(hashes) = x.annotations.remove(CALLER) else {
            return Ok(Verdict::Continue);
        };
        let (local, cluster) = hashes.split_once(':').unwrap_or((&hashes, ""));
        let Ok(local) = local.parse::<u64>() else {
            return Ok(Verdict::Continue);
        };
        let keys = self.shown(body);
        for k in &keys {
            self.table.learn(k, local, self.max);
        }
        if let (Some(c), false) = (&self.cluster, keys.is_empty()) {
            let learned = async {
                if cluster.is_empty() {
                    return Err(crate::redis::RedisError::Unavailable);
                }
                let h = cluster;
                let names: Vec<String> = keys.iter().map(|k| c.object(k)).collect();
                let refs: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
                let ttl = c.ttl.to_string();
                c.store
                    .client
                    .eval(&c.learn, &refs, &[h.as_bytes(), ttl.as_bytes(), b"16"])
                    .await
            }
            .await;
            match learned {
                Ok(_) => c.store.ok(),
                // the owners are still learned here; the other instances miss them
                Err(e) => c.store.failed(&e, x),
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(resource: &str, learn: Option<&str>, unknown: Unknown) -> Ownership {
        let p = OwnershipSpec {
            mode: Mode::Enforce,
            resource: resource.into(),
            owner: Some("header:authorization".into()),
            learn: learn.map(str::to_string),
            check: Some(CheckSpec {
                location: In::Path,
                name: "pk".into(),
            }),
            unknown,
            max_objects: Some(3),
            store: Default::default(),
            on_store_error: None,
            ttl: None,
        }
        .build(&Env::local("test"))
        .unwrap();
        p.prepare().unwrap();
        p
    }

    fn caller_hash(id: &str, p: &Ownership) -> u64 {
        p.table.caller(id)
    }

    #[test]
    fn decision_table() {
        let p = policy("test-table", Some("pk"), Unknown::Forward);
        let (a, b) = (caller_hash("h:Token a", &p), caller_hash("h:Token b", &p));
        assert_eq!(p.learn_from(br#"[{"pk":11},{"pk":12,"x":1}]"#, a), 2);
        assert_eq!(p.learn_from(br#"{"pk":"b-1"}"#, b), 1);
        // (key, caller, allowed)
        let rows: &[(Option<&str>, Option<u64>, bool)] = &[
            (Some("11"), Some(a), true),
            (Some("11"), Some(b), false),
            (Some("11"), None, false),
            (Some("b-1"), Some(b), true),
            (Some("b-1"), Some(a), false),
            (Some("999"), Some(b), true),
            (None, Some(b), true),
        ];
        for (key, caller, allowed) in rows {
            let v = p.decide(*key, *caller);
            assert_eq!(
                matches!(v, Verdict::Continue),
                *allowed,
                "{key:?} {caller:?}"
            );
        }
        // bounded: the oldest keys are forgotten first (max_objects 3)
        assert_eq!(p.learn_from(br#"{"results":[{"pk":13}]}"#, a), 1);
        assert_eq!(p.table.len(), 3, "11 made room for 13");
        assert!(p.table.owners("11").is_none());
        let strict = policy("test-strict", None, Unknown::Refuse);
        match strict.decide(Some("1"), Some(a)) {
            Verdict::Reject(r) => assert_eq!(r.code, CODE_UNKNOWN),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn shared_objects_have_several_owners_and_tables_are_shared_by_name() {
        let p = policy("test-shared", Some("id"), Unknown::Forward);
        let q = policy("test-shared", None, Unknown::Forward);
        let (a, b) = (caller_hash("h:a", &p), caller_hash("h:b", &p));
        assert_eq!(a, caller_hash("h:a", &q), "one table, one key");
        p.learn_from(br#"[{"id":1}]"#, a);
        p.learn_from(br#"[{"id":1}]"#, b);
        assert!(matches!(q.decide(Some("1"), Some(b)), Verdict::Continue));
        assert!(matches!(
            q.decide(Some("1"), Some(caller_hash("h:c", &p))),
            Verdict::Reject(_)
        ));
    }

    #[test]
    fn bad_specs_name_their_field() {
        let base = OwnershipSpec {
            mode: Mode::Enforce,
            resource: "x".into(),
            owner: None,
            learn: None,
            check: None,
            unknown: Unknown::Forward,
            max_objects: None,
            store: Default::default(),
            on_store_error: None,
            ttl: None,
        };
        let env = Env::local("test");
        assert_eq!(base.build(&env).unwrap_err()[0].field, "learn");
        let bad_owner = OwnershipSpec {
            owner: Some("cookie:x".into()),
            learn: Some("id".into()),
            ..base
        };
        assert_eq!(bad_owner.build(&env).unwrap_err()[0].field, "owner");
    }

    #[test]
    fn owners_and_the_callers_key_outlive_a_restart() {
        let dir = std::env::temp_dir().join(format!("palisade-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let before = Table::new("pets");
        before.open(Some(&dir), &Default::default(), 10).unwrap();
        let a = before.caller("h:Token a");
        before.learn("11", a, 2);
        before.learn("12", a, 2);
        before.learn("13", a, 2);
        before.learn("13", before.caller("h:Token b"), 2);
        crate::state::flush_all();
        // a new process: a fresh table on the same directory
        let after = Table::new("pets");
        after.open(Some(&dir), &Default::default(), 10).unwrap();
        assert_eq!(after.caller("h:Token a"), a, "the key is the directory's");
        assert_eq!(
            after.owners("11"),
            None,
            "forgotten in memory, removed on disk"
        );
        assert_eq!(after.owners("12"), Some(vec![a]));
        assert_eq!(after.owners("13"), Some(vec![a, after.caller("h:Token b")]));
        let other = Table::new("cats");
        other.open(Some(&dir), &Default::default(), 10).unwrap();
        assert!(other.is_empty(), "each resource its own");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
