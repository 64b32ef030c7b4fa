//! A fleet: instances that share one config through Redis and roll a new one out together.
//!
//! Keys (under `redis.key_prefix` + `fleet:NAME:`), every value sealed under
//! `runtime.state_key` for its purpose (a record cannot be read, forged or moved from one key
//! to another without the key):
//!
//! | key | holds |
//! |---|---|
//! | `config` | the committed config: serial, version, text, who, when |
//! | `candidate` | a config being voted on (at most one at a time, 30 s at most) |
//! | `votes:SERIAL` | each instance's verdict on a candidate: valid here, or its problems |
//! | `instances` | each instance's status: the version it serves, health, when last seen |
//! | `serial` | the counter that orders committed configs |
//!
//! Rolling out (`propose`, from the admin API of any instance): the config is validated
//! here, put up as the candidate, and every live instance validates it against its own
//! files and environment and votes. Only when every one has said it is valid does it become
//! the committed config, which each instance then applies (written over its config file, so
//! a restart serves it at once and rejoins at the same version). One refusal, or an instance
//! that does not answer within 10 s, withdraws it: nothing is half-applied, and the answer
//! names the instance and its problems. A committed config older than one already applied
//! (a record copied back into Redis) is ignored and logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use palisade_config::fleet::Fleet;
use palisade_traffic::redis::{RedisError, Value};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::body::ProxyBody;
use crate::Shared;

/// How often each instance reports and looks for candidates and new configs.
const TICK: Duration = Duration::from_millis(300);
/// An instance not seen for this long is not waited for (and is shown as lost).
const LIVE: Duration = Duration::from_secs(5);
/// How long a candidate waits for every vote.
const VOTING: Duration = Duration::from_secs(10);
/// How long the proposer waits for the instances to serve a committed config.
const ROLLOUT: Duration = Duration::from_secs(10);

/// What this instance knows of the fleet.
#[derive(Debug)]
pub(crate) struct State {
    /// The serial of the newest committed config applied or found serving.
    serial: AtomicU64,
    /// The serial of the candidate voted on last.
    voted: Mutex<Option<u64>>,
    /// Why the committed config could not be applied here (by version).
    error: Mutex<Option<(String, String)>>,
    started_ms: AtomicU64,
    /// The revocation counter last followed (`u64::MAX`: not yet).
    revocations: AtomicU64,
    /// Set at shutdown: no more reports.
    left: std::sync::atomic::AtomicBool,
}

impl Default for State {
    fn default() -> Self {
        State {
            serial: AtomicU64::new(0),
            voted: Mutex::default(),
            error: Mutex::default(),
            started_ms: AtomicU64::new(0),
            revocations: AtomicU64::new(u64::MAX),
            left: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// A revocation shared by the fleet (or its lifting, kept a day so every instance sees it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Revocation {
    until: i64,
    lifted: bool,
    at_ms: u64,
}

/// How long a lifted revocation is remembered in Redis.
const LIFTED_KEPT_MS: u64 = 86_400_000;

/// Tells the fleet that `hash` is revoked until `until` (or, `lifted`, no longer); for a
/// lift, whether the fleet had it.
pub(crate) async fn share_revocation(
    f: &Fleet,
    hash: &[u8; 32],
    until: i64,
    lifted: bool,
) -> Result<bool, RedisError> {
    let field = palisade_core::hex::encode(hash);
    let known = match f
        .redis
        .call(&[
            b"HEXISTS",
            key(f, "revocations").as_bytes(),
            field.as_bytes(),
        ])
        .await?
    {
        Value::Int(n) => n == 1,
        _ => false,
    };
    let r = Revocation {
        until,
        lifted,
        at_ms: now_ms(),
    };
    let Some(v) = seal(f, "revocations", &r) else {
        return Err(RedisError::Protocol);
    };
    hset(f, "revocations", &field, &v).await?;
    f.redis
        .call(&[b"INCR", key(f, "revocations:serial").as_bytes()])
        .await?;
    Ok(known)
}

/// Takes the fleet's revocations and lifts (when they changed since the last look) into
/// this instance's, and forgets the old ones.
async fn follow_revocations(shared: &Arc<Shared>, f: &Fleet) -> Result<(), RedisError> {
    let serial = match get(f, "revocations:serial").await? {
        None => 0,
        Some(b) => String::from_utf8_lossy(&b).parse::<u64>().unwrap_or(0),
    };
    if serial == shared.fleet.revocations.load(Ordering::Relaxed) {
        return Ok(());
    }
    let now = palisade_identity::revoked::now();
    let now_ms = now_ms();
    for (field, v) in hgetall(f, "revocations").await? {
        let (Some(r), Some(hash)) = (
            open::<Revocation>(f, "revocations", &v),
            palisade_core::hex::decode32(&field),
        ) else {
            continue;
        };
        let stale = if r.lifted {
            now_ms.saturating_sub(r.at_ms) > LIFTED_KEPT_MS
        } else {
            r.until <= now
        };
        if stale {
            let _ = f
                .redis
                .call(&[b"HDEL", key(f, "revocations").as_bytes(), field.as_bytes()])
                .await;
        }
        if r.lifted {
            if palisade_identity::revoked::lift(&hash) {
                if let Some(db) = &shared.admin_store {
                    crate::admin::keep::lifted(db, &hash);
                }
            }
        } else if !palisade_identity::revoked::is_revoked(&hash, now) && r.until > now {
            palisade_identity::revoked::revoke(hash, r.until);
            if let Some(db) = &shared.admin_store {
                crate::admin::keep::revoked(db, &hash, r.until);
            }
        }
    }
    shared.fleet.revocations.store(serial, Ordering::Relaxed);
    Ok(())
}

/// A config put up or committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    serial: u64,
    version: String,
    text: String,
    by: String,
    at_ms: u64,
}

/// An instance's verdict on a candidate.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Vote {
    problems: Vec<String>,
}

/// An instance's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Status {
    instance: String,
    version: String,
    serial: u64,
    healthy: bool,
    seen_ms: u64,
    started_ms: u64,
    #[serde(default)]
    error: Option<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn key(f: &Fleet, name: &str) -> String {
    format!("{}{name}", f.prefix)
}

fn seal<T: Serialize>(f: &Fleet, purpose: &str, v: &T) -> Option<Vec<u8>> {
    let plain = serde_json::to_vec(v).ok()?;
    let k = f.keys.current.as_ref()?;
    k.seal_message(&format!("{}{purpose}", f.prefix), &plain)
        .ok()
}

fn open<T: for<'de> Deserialize<'de>>(f: &Fleet, purpose: &str, sealed: &[u8]) -> Option<T> {
    let plain = f
        .keys
        .open_message(&format!("{}{purpose}", f.prefix), sealed)?;
    serde_json::from_slice(&plain).ok()
}

async fn get(f: &Fleet, name: &str) -> Result<Option<Vec<u8>>, RedisError> {
    match f.redis.call(&[b"GET", key(f, name).as_bytes()]).await? {
        Value::Bulk(b) => Ok(b),
        _ => Err(RedisError::Protocol),
    }
}

async fn hgetall(f: &Fleet, name: &str) -> Result<Vec<(String, Vec<u8>)>, RedisError> {
    match f.redis.call(&[b"HGETALL", key(f, name).as_bytes()]).await? {
        Value::Array(Some(items)) => {
            let mut out = Vec::new();
            let mut it = items.into_iter();
            while let (Some(Value::Bulk(Some(k))), Some(Value::Bulk(Some(v)))) =
                (it.next(), it.next())
            {
                out.push((String::from_utf8_lossy(&k).into_owned(), v));
            }
            Ok(out)
        }
        Value::Array(None) => Ok(Vec::new()),
        _ => Err(RedisError::Protocol),
    }
}

async fn hset(f: &Fleet, name: &str, field: &str, value: &[u8]) -> Result<(), RedisError> {
    f.redis
        .call(&[b"HSET", key(f, name).as_bytes(), field.as_bytes(), value])
        .await
        .map(|_| ())
}

/// The instances' statuses, as reported (stale ones included).
async fn statuses(f: &Fleet) -> Result<Vec<Status>, RedisError> {
    Ok(hgetall(f, "instances")
        .await?
        .into_iter()
        .filter_map(|(_, v)| open::<Status>(f, "instances", &v))
        .collect())
}

fn live(s: &Status, now: u64) -> bool {
    now.saturating_sub(s.seen_ms) < LIVE.as_millis() as u64
}

/// Runs this instance's part: report, vote, follow the committed config.
pub(crate) async fn run(shared: Arc<Shared>) {
    shared.fleet.started_ms.store(now_ms(), Ordering::Relaxed);
    let mut closing = shared.admin_closing.subscribe();
    loop {
        let cfg = shared.runtime.load().config.clone();
        if let Some(f) = &cfg.fleet {
            // a Redis outage only delays the fleet's work: the instance keeps serving
            let _ = step(&shared, f, &cfg).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = closing.changed() => return,
        }
    }
}

/// Leaves the fleet at shutdown: the others stop waiting for this instance's verdicts.
pub(crate) async fn leave(shared: &Shared) {
    shared.fleet.left.store(true, Ordering::Relaxed);
    if let Some(f) = &shared.runtime.load().config.fleet {
        let _ = f
            .redis
            .call(&[
                b"HDEL",
                key(f, "instances").as_bytes(),
                f.instance.as_bytes(),
            ])
            .await;
    }
}

async fn step(
    shared: &Arc<Shared>,
    f: &Fleet,
    cfg: &palisade_config::Config,
) -> Result<(), RedisError> {
    // follow first: a new committed config is served before this instance reports
    if let Some(sealed) = get(f, "config").await? {
        match open::<Record>(f, "config", &sealed) {
            Some(rec) => follow(shared, f, cfg, rec),
            None => tracing::error!(
                fleet = %f.name,
                "the fleet's config in Redis cannot be opened with runtime.state_key: ignored (another key, or not written by Palisade)"
            ),
        }
    }
    let cfg = shared.runtime.load().config.clone();
    let error = shared
        .fleet
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .map(|(_, e)| e);
    let status = Status {
        instance: f.instance.clone(),
        version: cfg.version.clone(),
        serial: shared.fleet.serial.load(Ordering::Relaxed),
        healthy: !shared.draining.load(Ordering::Relaxed),
        seen_ms: now_ms(),
        started_ms: shared.fleet.started_ms.load(Ordering::Relaxed),
        error,
    };
    if shared.fleet.left.load(Ordering::Relaxed) {
        return Ok(());
    }
    if let Some(v) = seal(f, "instances", &status) {
        hset(f, "instances", &f.instance, &v).await?;
    }
    if let Some(sealed) = get(f, "candidate").await? {
        if let Some(rec) = open::<Record>(f, "candidate", &sealed) {
            vote(shared, f, &cfg, &rec).await?;
        }
    }
    follow_revocations(shared, f).await
}

/// Validates a config text as this instance would serve it: its files, its environment.
fn check(f: &Fleet, cfg: &palisade_config::Config, text: &str) -> Vec<String> {
    let serving = std::fs::read_to_string(&cfg.source).unwrap_or_default();
    let added = crate::admin::new_commands(text, &serving);
    if !added.is_empty() {
        return added
            .into_iter()
            .map(|(path, line)| {
                format!(
                    "line {}: {path}: a new ${{cmd:…}} secret reference: programs are added on each host, not through the fleet",
                    line.unwrap_or(0)
                )
            })
            .collect();
    }
    match palisade_config::load_str(&cfg.source, text) {
        Err(errs) => errs.0.iter().map(ToString::to_string).collect(),
        Ok(c) => match c.fleet {
            Some(nf) if nf.name == f.name && nf.prefix == f.prefix => Vec::new(),
            _ => vec![format!(
                "the config takes this instance out of the fleet `{}` (its `fleet` or `redis` section differs)",
                f.name
            )],
        },
    }
}

async fn vote(
    shared: &Arc<Shared>,
    f: &Fleet,
    cfg: &palisade_config::Config,
    rec: &Record,
) -> Result<(), RedisError> {
    {
        let voted = shared.fleet.voted.lock().unwrap_or_else(|p| p.into_inner());
        if *voted == Some(rec.serial) {
            return Ok(());
        }
    }
    let problems = if rec.version == cfg.version {
        Vec::new()
    } else {
        check(f, cfg, &rec.text)
    };
    if !problems.is_empty() {
        tracing::warn!(fleet = %f.name, version = %rec.version, by = %rec.by, "a config put up for the fleet is not valid here:\n{}", problems.join("\n"));
    }
    let Some(v) = seal(f, "votes", &Vote { problems }) else {
        return Ok(());
    };
    let votes = format!("votes:{}", rec.serial);
    hset(f, &votes, &f.instance, &v).await?;
    f.redis
        .call(&[b"PEXPIRE", key(f, &votes).as_bytes(), b"600000"])
        .await?;
    *shared.fleet.voted.lock().unwrap_or_else(|p| p.into_inner()) = Some(rec.serial);
    Ok(())
}

/// Serves the committed config, if it is newer than what serves here.
fn follow(shared: &Arc<Shared>, f: &Fleet, cfg: &palisade_config::Config, rec: Record) {
    let mine = shared.fleet.serial.load(Ordering::Relaxed);
    if rec.version == cfg.version {
        shared.fleet.serial.fetch_max(rec.serial, Ordering::Relaxed);
        return;
    }
    if rec.serial < mine {
        // a record copied back: never roll back to it
        let mut err = shared.fleet.error.lock().unwrap_or_else(|p| p.into_inner());
        if err.as_ref().map(|(v, _)| v.as_str()) != Some(rec.version.as_str()) {
            tracing::error!(fleet = %f.name, serial = rec.serial, serving = mine, "the fleet's config in Redis is older than the one applied here: ignored");
            *err = Some((
                rec.version.clone(),
                format!(
                    "the committed config (serial {}) is older than the one applied here ({mine})",
                    rec.serial
                ),
            ));
        }
        return;
    }
    {
        let err = shared.fleet.error.lock().unwrap_or_else(|p| p.into_inner());
        if err.as_ref().map(|(v, _)| v.as_str()) == Some(rec.version.as_str()) {
            return; // tried already; the next committed config is awaited
        }
    }
    let _one_at_a_time = shared.admin_apply.lock().unwrap_or_else(|p| p.into_inner());
    let problems = check(f, cfg, &rec.text);
    let result = if problems.is_empty() {
        palisade_config::load_str(&cfg.source, &rec.text)
            .map_err(|e| e.to_string())
            .and_then(|built| {
                crate::admin::install(shared, &rec.text, built, &format!("fleet ({})", rec.by))
                    .map_err(|e| e.to_string())
            })
    } else {
        Err(problems.join("\n"))
    };
    match result {
        Ok(()) => {
            shared.fleet.serial.fetch_max(rec.serial, Ordering::Relaxed);
            *shared.fleet.error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            tracing::info!(fleet = %f.name, version = %rec.version, serial = rec.serial, by = %rec.by, "the fleet's config applied");
        }
        Err(e) => {
            tracing::error!(fleet = %f.name, version = %rec.version, "the fleet's config cannot be applied here; the previous one keeps serving:\n{e}");
            *shared.fleet.error.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((rec.version.clone(), e));
        }
    }
}

fn unavailable(e: &RedisError) -> Response<ProxyBody> {
    crate::admin::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "admin.fleet_unavailable",
        "The fleet's store cannot be reached",
        &format!("{e}; nothing was changed"),
    )
}

/// Why a config put up for the fleet was not committed.
#[derive(Debug)]
enum NotCommitted {
    /// Redis could not be reached.
    Unavailable(RedisError),
    /// Another candidate is being voted on.
    Busy,
    /// Instances found it invalid: (instance, problems).
    Refused(Vec<(String, Vec<String>)>),
    /// Live instances that gave no verdict in time.
    Timeout(Vec<String>),
}

impl From<RedisError> for NotCommitted {
    fn from(e: RedisError) -> Self {
        NotCommitted::Unavailable(e)
    }
}

impl std::fmt::Display for NotCommitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotCommitted::Unavailable(e) => write!(f, "{e}"),
            NotCommitted::Busy => f.write_str("another config is being rolled out"),
            NotCommitted::Refused(r) => {
                for (who, problems) in r {
                    writeln!(f, "{who}:")?;
                    for p in problems {
                        writeln!(f, "  {p}")?;
                    }
                }
                Ok(())
            }
            NotCommitted::Timeout(w) => write!(f, "no verdict from {}", w.join(", ")),
        }
    }
}

/// A committed config and how far it got.
struct Rollout {
    serial: u64,
    version: String,
    /// Live instances: (name, version served, error).
    instances: Vec<(String, String, Option<String>)>,
    done: bool,
}

/// Puts `text` (validated here already) up for the fleet and commits it when every live
/// instance has found it valid; then waits for the instances to serve it.
async fn put_up(
    shared: &Arc<Shared>,
    f: &Fleet,
    text: &str,
    by: &str,
) -> Result<Rollout, NotCommitted> {
    let serial = match f
        .redis
        .call(&[b"INCR", key(f, "serial").as_bytes()])
        .await?
    {
        Value::Int(n) => n.max(0) as u64,
        _ => return Err(RedisError::Protocol.into()),
    };
    let rec = Record {
        serial,
        version: palisade_config::fleet::version_of(text),
        text: text.to_string(),
        by: by.to_string(),
        at_ms: now_ms(),
    };
    let (Some(as_candidate), Some(as_config)) =
        (seal(f, "candidate", &rec), seal(f, "config", &rec))
    else {
        return Err(RedisError::Protocol.into());
    };
    // one candidate at a time in the whole fleet
    let candidate = key(f, "candidate");
    let put = [
        b"SET",
        candidate.as_bytes(),
        &as_candidate,
        b"NX",
        b"PX",
        b"30000",
    ];
    if !matches!(f.redis.call(&put).await?, Value::Simple(_)) {
        return Err(NotCommitted::Busy);
    }
    let voted = vote_on(f, serial).await;
    if let Err(e) = &voted {
        let _ = f.redis.call(&[b"DEL", candidate.as_bytes()]).await;
        tracing::warn!(fleet = %f.name, version = %rec.version, by, "a config was not committed for the fleet; nothing was changed:\n{e}");
    }
    let verdicts = voted?;
    let committed = f
        .redis
        .call(&[b"SET", key(f, "config").as_bytes(), &as_config])
        .await;
    let _ = f.redis.call(&[b"DEL", candidate.as_bytes()]).await;
    committed?;
    let mut m = crate::config_event("fleet_commit", &shared.runtime.load().config.source, None);
    m.insert("by".into(), by.into());
    m.insert("version".into(), rec.version.clone().into());
    m.insert("serial".into(), serial.into());
    shared.security_log.log("config", m);
    tracing::info!(fleet = %f.name, version = %rec.version, serial, by, "config committed for the fleet after {verdicts} valid verdict(s)");
    // the instances follow within a tick
    let end = Instant::now() + ROLLOUT;
    loop {
        let now = now_ms();
        let instances = statuses(f).await.unwrap_or_default();
        let live: Vec<(String, String, Option<String>)> = instances
            .into_iter()
            .filter(|s| live(s, now))
            .map(|s| (s.instance, s.version, s.error))
            .collect();
        let done = live.iter().all(|(_, v, _)| *v == rec.version);
        if done || Instant::now() > end {
            return Ok(Rollout {
                serial,
                version: rec.version,
                instances: live,
                done,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for every live instance's verdict on the candidate `serial`; the number of valid
/// verdicts when all found it valid.
async fn vote_on(f: &Fleet, serial: u64) -> Result<usize, NotCommitted> {
    let end = Instant::now() + VOTING;
    loop {
        let now = now_ms();
        let instances = statuses(f).await?;
        let votes: Vec<(String, Vote)> = hgetall(f, &format!("votes:{serial}"))
            .await?
            .into_iter()
            .filter_map(|(who, v)| open::<Vote>(f, "votes", &v).map(|v| (who, v)))
            .collect();
        let refused: Vec<(String, Vec<String>)> = votes
            .iter()
            .filter(|(_, v)| !v.problems.is_empty())
            .map(|(w, v)| (w.clone(), v.problems.clone()))
            .collect();
        if !refused.is_empty() {
            return Err(NotCommitted::Refused(refused));
        }
        let waiting: Vec<String> = instances
            .iter()
            .filter(|s| live(s, now) && !votes.iter().any(|(w, _)| *w == s.instance))
            .map(|s| s.instance.clone())
            .collect();
        if waiting.is_empty() && votes.iter().any(|(w, _)| *w == f.instance) {
            return Ok(votes.len());
        }
        if Instant::now() > end {
            return Err(NotCommitted::Timeout(waiting));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The admin API's answer to a config apply in a fleet (see [`put_up`]).
pub(crate) async fn propose(
    shared: &Arc<Shared>,
    f: &Fleet,
    text: &str,
    by: &str,
) -> Response<ProxyBody> {
    match put_up(shared, f, text, by).await {
        Ok(r) => {
            let view: Vec<serde_json::Value> = r
                .instances
                .iter()
                .map(|(i, v, e)| json!({"instance": i, "version": v, "current": *v == r.version, "error": e}))
                .collect();
            crate::admin::reply_json(
                if r.done {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                },
                json!({
                    "valid": true,
                    "applied": r.done,
                    "fleet": {"name": f.name, "serial": r.serial, "version": r.version, "instances": view},
                }),
            )
        }
        Err(NotCommitted::Unavailable(e)) => unavailable(&e),
        Err(NotCommitted::Busy) => crate::admin::problem(
            StatusCode::CONFLICT,
            "admin.fleet_busy",
            "Another config is being rolled out",
            "wait for it to be committed or withdrawn, then apply again",
        ),
        Err(NotCommitted::Refused(refused)) => {
            let problems: Vec<serde_json::Value> = refused
                .iter()
                .map(|(who, p)| json!({ "instance": who, "problems": p }))
                .collect();
            crate::admin::reply(
                StatusCode::CONFLICT,
                "application/problem+json",
                json!({
                    "type": "https://palisade.dev/problems/admin.fleet_refused",
                    "title": "An instance of the fleet refused the config",
                    "status": 409,
                    "code": "admin.fleet_refused",
                    "detail": format!("{} instance(s) found it invalid; no instance changed", problems.len()),
                    "problems": problems,
                })
                .to_string(),
            )
        }
        Err(NotCommitted::Timeout(waiting)) => crate::admin::problem(
            StatusCode::GATEWAY_TIMEOUT,
            "admin.fleet_timeout",
            "Instances of the fleet did not validate the config in time",
            &format!(
                "no verdict from {}; no instance changed",
                waiting.join(", ")
            ),
        ),
    }
}

/// The config file of a fleet's instance changed (an edit, config management, SIGHUP): a new
/// text is put up for the whole fleet, never served here alone; a file that leaves the fleet,
/// or changed certificates and keys under the same text, reload here as usual.
pub(crate) async fn file_changed(shared: &Arc<Shared>) {
    let cfg = shared.runtime.load().config.clone();
    let text = std::fs::read_to_string(&cfg.source).ok();
    let (Some(f), Some(text)) = (&cfg.fleet, text) else {
        let _ = shared.reload();
        return;
    };
    if palisade_config::fleet::version_of(&text) == cfg.version {
        let _ = shared.reload();
        return;
    }
    match palisade_config::load_str(&cfg.source, &text) {
        Ok(new) if new.fleet.is_some() => {
            tracing::info!(fleet = %f.name, file = %cfg.source.display(), "the config file changed: putting it up for the fleet");
            if let Err(e) = put_up(shared, f, &text, &format!("file on {}", f.instance)).await {
                shared
                    .metrics
                    .reloads_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(fleet = %f.name, file = %cfg.source.display(), "the changed config file was not taken by the fleet; the committed config keeps serving:\n{e}");
                *shared.fleet.error.lock().unwrap_or_else(|p| p.into_inner()) = Some((
                    palisade_config::fleet::version_of(&text),
                    format!("the changed config file was not taken by the fleet: {e}"),
                ));
            }
        }
        // invalid (logged and counted by the reload), or leaving the fleet
        _ => {
            let _ = shared.reload();
        }
    }
}

/// `GET /api/v1/fleet`: the instances, the version each serves, their health.
pub(crate) async fn view(shared: &Arc<Shared>) -> Response<ProxyBody> {
    let cfg = shared.runtime.load().config.clone();
    let Some(f) = &cfg.fleet else {
        return crate::admin::problem(
            StatusCode::NOT_FOUND,
            "admin.not_found",
            "No fleet",
            "this instance is not part of a fleet (see the `fleet` section in docs/configuration.md)",
        );
    };
    let committed = match get(f, "config").await {
        Ok(c) => c.and_then(|s| open::<Record>(f, "config", &s)),
        Err(e) => return unavailable(&e),
    };
    let instances = match statuses(f).await {
        Ok(s) => s,
        Err(e) => return unavailable(&e),
    };
    let now = now_ms();
    let want = committed.as_ref().map(|c| c.version.clone());
    let mut list: Vec<serde_json::Value> = instances
        .iter()
        .map(|s| {
            json!({
                "instance": s.instance,
                "version": s.version,
                "serial": s.serial,
                "current": want.as_deref().is_none_or(|w| w == s.version),
                "state": if !live(s, now) { "lost" } else if s.healthy { "serving" } else { "draining" },
                "seen_ms_ago": now.saturating_sub(s.seen_ms),
                "started_ms": s.started_ms,
                "error": s.error,
                "this": s.instance == f.instance,
            })
        })
        .collect();
    list.sort_by(|a, b| a["instance"].as_str().cmp(&b["instance"].as_str()));
    crate::admin::reply_json(
        StatusCode::OK,
        json!({
            "fleet": f.name,
            "instance": f.instance,
            "committed": committed.map(|c| json!({"serial": c.serial, "version": c.version, "by": c.by, "at_ms": c.at_ms})),
            "instances": list,
        }),
    )
}
