//! Palisade's data path.
//!
//! [`Gateway::start`] binds the listeners of a [`Config`] and serves them: TLS termination
//! (rustls), HTTP/1.1 and HTTP/2 (hyper), routing, the policy pipeline, pooled upstream
//! connections, the problem+json renderer, the admin API, and hot reload that swaps the
//! whole runtime atomically while in-flight requests finish on the one they started with.

mod access_log;
mod admin;
pub mod body;
mod canon;
mod certs;
pub mod events;
mod fleet;
mod forwarding;
mod h1client;
mod h1server;
mod h1wire;
mod handler;
mod ids;
pub mod metrics;
pub mod render;
pub mod security_log;
mod server;
mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use palisade_config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use access_log::rfc3339_secs;
pub use forwarding::{client_ip, strip_hop_by_hop};

/// Security events the OTLP exporter could not deliver, since the process started.
pub fn admin_export_dropped() -> u64 {
    admin::otlp::DROPPED.load(Ordering::Relaxed)
}

use crate::access_log::AccessLogger;
use crate::metrics::{Metrics, RouteStats};
use crate::upstream::Pool;

/// How often watched files are checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Everything built from one config: swapped whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// The config.
    pub config: Arc<Config>,
    pools: Vec<Arc<Pool>>,
    route_stats: Vec<Arc<RouteStats>>,
    /// The decision counters of each route's policies, by position.
    decision_stats: Vec<Vec<Arc<metrics::DecisionStats>>>,
    unrouted: Arc<RouteStats>,
    health: Vec<JoinHandle<()>>,
    /// Each route's policies' modes as an operator set them through the admin API, by
    /// position; until the next reload, which returns to the config's.
    modes: Vec<Box<[std::sync::atomic::AtomicU8]>>,
}

/// A policy's mode as the admin API may set it, kept in an `AtomicU8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ModeOverride {
    /// As the config says.
    Config = 0,
    /// Enforce.
    Enforce = 1,
    /// Monitor.
    Monitor = 2,
}

/// The mode a policy runs in: the operator's, or else the config's.
pub(crate) fn effective_mode(
    o: Option<&std::sync::atomic::AtomicU8>,
    configured: palisade_core::Mode,
) -> palisade_core::Mode {
    match o.map(|a| a.load(Ordering::Relaxed)) {
        Some(1) => palisade_core::Mode::Enforce,
        Some(2) => palisade_core::Mode::Monitor,
        _ => configured,
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for h in &self.health {
            h.abort();
        }
    }
}

impl Runtime {
    fn build(config: Config, metrics: &Metrics) -> Runtime {
        let pools: Vec<Arc<Pool>> = config
            .upstreams
            .iter()
            .map(|u| Arc::new(Pool::new(u)))
            .collect();
        let health = pools
            .iter()
            .filter_map(|p| p.spawn_health_checks())
            .collect();
        let route_stats = config
            .routes
            .iter()
            .map(|r| metrics.route(&r.name))
            .collect();
        let decision_stats = config
            .routes
            .iter()
            .map(|r| {
                r.policies
                    .iter()
                    .map(|e| metrics.decisions_of(e.policy.kind()))
                    .collect()
            })
            .collect();
        let modes = config
            .routes
            .iter()
            .map(|r| {
                r.policies
                    .iter()
                    .map(|_| std::sync::atomic::AtomicU8::new(ModeOverride::Config as u8))
                    .collect()
            })
            .collect();
        Runtime {
            modes,
            config: Arc::new(config),
            pools,
            route_stats,
            decision_stats,
            unrouted: metrics.route("-"),
            health,
        }
    }
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    runtime: ArcSwap<Runtime>,
    metrics: Arc<Metrics>,
    access_log: AccessLogger,
    security_log: security_log::SecurityLogger,
    /// Refusals and would-refuses, for the admin API and console.
    events: events::Events,
    /// Console sessions.
    sessions: admin::Sessions,
    /// One config apply through the admin API at a time.
    admin_apply: std::sync::Mutex<()>,
    /// The config text that served before the last apply through the admin API.
    admin_previous: std::sync::Mutex<Option<String>>,
    /// Set at shutdown: live event streams end.
    admin_closing: watch::Sender<bool>,
    /// Where the admin API keeps revocations and events (the state store), when it opened.
    admin_store: Option<Arc<palisade_traffic::state::StateDb>>,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    /// Set when the drain deadline has passed: every connection still open is dropped.
    hard_stop: watch::Sender<bool>,
    /// This instance's part in a fleet.
    fleet: fleet::State,
}

impl Shared {
    /// Swaps in a new config. In-flight requests finish on the old one.
    pub(crate) fn apply(&self, new: Config) -> Result<(), ReloadError> {
        let old = self.runtime.load();
        let before: Vec<(&str, SocketAddr)> = old
            .config
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.addr))
            .collect();
        let after: Vec<(&str, SocketAddr)> = new
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.addr))
            .collect();
        if before != after {
            return Err(ReloadError::NeedsRestart(
                "the listeners (names or addresses) changed".into(),
            ));
        }
        if old.config.admin != new.admin {
            return Err(ReloadError::NeedsRestart(
                "the admin address changed".into(),
            ));
        }
        if old.config.access_log != new.access_log {
            return Err(ReloadError::NeedsRestart(
                "the access log target changed".into(),
            ));
        }
        let sec_changed = match (&old.config.security_log, &new.security_log) {
            (Some(a), Some(b)) => a.differs(b),
            (None, None) => false,
            _ => true,
        };
        if sec_changed {
            return Err(ReloadError::NeedsRestart(
                "the security log (file, key or checkpoints) changed".into(),
            ));
        }
        prepare_policies(&new).map_err(ReloadError::Policy)?;
        for w in &new.warnings {
            tracing::warn!("{w}");
        }
        let events = new.admin_api.events;
        let rt = Runtime::build(new, &self.metrics);
        self.runtime.store(Arc::new(rt));
        self.events.set_capacity(events);
        Ok(())
    }

    /// Re-reads the config file and applies it; on failure the old config keeps serving.
    pub(crate) fn reload(&self) -> Result<(), ReloadError> {
        let path = self.runtime.load().config.source.clone();
        let r = palisade_config::load(&path)
            .map_err(ReloadError::from)
            .and_then(|c| self.apply(c));
        match &r {
            Ok(()) => {
                self.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(file = %path.display(), "configuration reloaded");
                self.security_log
                    .log("config", config_event("reloaded", &path, None));
            }
            Err(e) => {
                self.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(file = %path.display(), "reload refused, the previous configuration keeps serving:\n{e}");
                self.security_log.log(
                    "config",
                    config_event("reload_refused", &path, Some(&e.to_string())),
                );
            }
        }
        r
    }
}

/// A config event of the security log: what happened, to which file, and the SHA-256 of its
/// text (what an auditor compares with the file under review).
fn config_event(
    event: &str,
    file: &std::path::Path,
    refused: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    use aws_lc_rs::digest;
    let mut m = serde_json::Map::new();
    m.insert("event".into(), event.into());
    m.insert("file".into(), file.display().to_string().into());
    if let Ok(text) = std::fs::read(file) {
        let d = digest::digest(&digest::SHA256, &text);
        m.insert(
            "sha256".into(),
            palisade_core::hex::encode(d.as_ref()).into(),
        );
    }
    if let Some(why) = refused {
        // the problems as validate prints them: fields, lines and what to do, never values
        m.insert("problems".into(), why.into());
    }
    m
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address could not be bound.
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The access log could not be opened.
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    /// The security log could not be opened.
    #[error("cannot open the security log: {0}")]
    SecurityLog(std::io::Error),
    /// A policy could not get what it needs to serve.
    #[error("{0}")]
    Policy(String),
}

/// Prepares every policy of `config` (see `Policy::prepare`): the first failure, with the
/// route it is on.
fn prepare_policies(config: &Config) -> Result<(), String> {
    for r in &config.routes {
        for (i, e) in r.policies.iter().enumerate() {
            e.policy.prepare().map_err(|m| {
                format!("routes `{}`, policy {i} ({}): {m}", r.name, e.policy.kind())
            })?;
        }
    }
    Ok(())
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open at the drain deadline, then closed.
    pub connections_cut: u64,
    /// Requests still in flight at the drain deadline, then dropped.
    pub requests_cut: u64,
}

/// Why a reload was refused; the old config keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config has errors.
    #[error("{0}")]
    Invalid(#[from] palisade_config::ConfigErrors),
    /// The new config changes what cannot change without a restart.
    #[error("{0}; restart Palisade to apply this change")]
    NeedsRestart(String),
    /// A policy of the new config could not get what it needs to serve.
    #[error("{0}")]
    Policy(String),
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    addrs: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    admin_shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(name: &str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .and_then(|s| {
        s.set_reuseaddr(true)?;
        s.bind(addr)?;
        Ok(s)
    })
    .and_then(|s| s.listen(4096));
    sock.map_err(|source| StartError::Bind {
        name: name.to_string(),
        addr,
        source,
    })
}

impl Gateway {
    /// Binds every listener and starts serving.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        prepare_policies(&config).map_err(StartError::Policy)?;
        let metrics = Arc::new(Metrics::default());
        let access_log = AccessLogger::start(&config.access_log).map_err(StartError::AccessLog)?;
        let security_log = security_log::SecurityLogger::start(config.security_log.as_ref())
            .map_err(StartError::SecurityLog)?;
        security_log.log("config", config_event("started", &config.source, None));
        let mut listeners = Vec::new();
        for l in &config.listeners {
            listeners.push((l.name.clone(), bind(&l.name, l.addr).await?));
        }
        let admin_listener = match config.admin {
            Some(a) => Some(bind("admin", a).await?),
            None => None,
        };
        let events = events::Events::new(config.admin_api.events);
        let admin_store = admin::keep::open(&config);
        if let Some(db) = &admin_store {
            admin::keep::load(db, &events);
        }
        let runtime = Runtime::build(config, &metrics);
        let shared = Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            access_log,
            security_log,
            events,
            sessions: admin::Sessions::default(),
            admin_apply: std::sync::Mutex::new(()),
            admin_previous: std::sync::Mutex::new(None),
            admin_closing: watch::channel(false).0,
            admin_store,
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            hard_stop: watch::channel(false).0,
            fleet: fleet::State::default(),
        });
        if let Some(db) = shared.admin_store.clone() {
            tokio::spawn(admin::keep::keep_events(db, shared.clone()));
        }
        tokio::spawn(admin::otlp::export(shared.clone()));
        tokio::spawn(certs::watch(shared.clone()));
        tokio::spawn(fleet::run(shared.clone()));
        let (shutdown, rx) = watch::channel(false);
        let (admin_shutdown, admin_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut addrs = Vec::new();
        for (idx, (name, l)) in listeners.into_iter().enumerate() {
            let local = l.local_addr().map_err(|source| StartError::Bind {
                name: name.clone(),
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            tracing::info!(listener = %name, addr = %local, "listening");
            addrs.push((name.clone(), local));
            tasks.push(tokio::spawn(server::accept_loop(
                l,
                idx,
                Arc::from(name.as_str()),
                shared.clone(),
                rx.clone(),
            )));
        }
        let admin = match admin_listener {
            Some(l) => {
                let local = l.local_addr().ok();
                if let Some(a) = local {
                    tracing::info!(addr = %a, "admin listening (/healthz /readyz /metrics /api/v1 /console/)");
                }
                tasks.push(tokio::spawn(admin::serve(l, shared.clone(), admin_rx)));
                local
            }
            None => None,
        };
        Ok(Gateway {
            shared,
            addrs,
            admin,
            shutdown,
            admin_shutdown,
            tasks,
        })
    }

    /// The bound address of a listener.
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
    }

    /// Bound addresses of all listeners, in config order.
    pub fn addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The config now serving.
    pub fn config(&self) -> Arc<Config> {
        self.shared.runtime.load().config.clone()
    }

    /// Swaps in a new config. In-flight requests finish on the old one.
    pub fn apply(&self, new: Config) -> Result<(), ReloadError> {
        self.shared.apply(new)
    }

    /// Re-reads the config file and applies it; on failure the old config keeps serving.
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.shared.reload()
    }

    /// What a change of the config file (or SIGHUP) does: a reload, or in a fleet, a new
    /// text put up for every instance (see `fleet::file_changed`).
    pub async fn file_changed(&self) {
        fleet::file_changed(&self.shared).await
    }

    /// Watches the config file and the files it names; reloads when one changes.
    pub fn spawn_watcher(self: &Arc<Self>) -> JoinHandle<()> {
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen = snapshot(&gw.config().watched_files);
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let cfg = gw.config();
                if !cfg.watch {
                    continue;
                }
                let now = snapshot(&cfg.watched_files);
                if now != seen {
                    // let an editor finish writing before reading
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    // what is acted on; a change made while acting is seen next time
                    let now = snapshot(&cfg.watched_files);
                    // the file rewritten with the text already serving (an apply through the
                    // admin API or the fleet wrote it) is no change
                    let only_config = now
                        .iter()
                        .filter(|(f, s)| seen.get(*f) != Some(*s))
                        .all(|(f, _)| *f == cfg.source);
                    let same = std::fs::read_to_string(&cfg.source)
                        .is_ok_and(|t| palisade_config::fleet::version_of(&t) == cfg.version);
                    if !(only_config && same) {
                        gw.file_changed().await;
                    }
                    // the files of the config now serving: those acted on keep the stamp
                    // they had (a write during the reload or a fleet's rollout is a change)
                    seen = snapshot(&gw.config().watched_files)
                        .into_iter()
                        .map(|(f, st)| match now.get(&f) {
                            Some(before) => (f, *before),
                            None => (f, st),
                        })
                        .collect();
                }
            }
        })
    }

    /// Stops accepting, lets in-flight requests finish up to `deadline`, then cuts the
    /// connections still open: their requests are logged (status 503,
    /// `shutdown.drain_deadline`) and counted, and the access log is flushed before this
    /// returns.
    pub async fn shutdown(&self, deadline: Duration) -> Drained {
        self.shared.draining.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        let start = Instant::now();
        let open = || self.shared.metrics.connections_open.load(Ordering::Relaxed);
        while open() > 0 && start.elapsed() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = open();
        let requests_cut = self.shared.in_flight.load(Ordering::Relaxed) as u64;
        if left > 0 {
            let _ = self.shared.hard_stop.send(true);
            // the connection tasks drop their requests at their next poll
            let cut = Instant::now();
            while open() > 0 && cut.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        fleet::leave(&self.shared).await;
        let _ = self.admin_shutdown.send(true);
        let _ = self.shared.admin_closing.send(true);
        for t in &self.tasks {
            t.abort();
        }
        // the records of the cut requests are written before the process exits
        let log = self.shared.access_log.clone();
        let sec = self.shared.security_log.clone();
        let _ = tokio::task::spawn_blocking(move || {
            log.flush(Duration::from_secs(2));
            // the last records are signed before the process exits
            sec.flush(Duration::from_secs(2));
        })
        .await;
        // the newest security events are kept for the next start
        if let Some(db) = self.shared.admin_store.clone() {
            let sh = self.shared.clone();
            let _ = tokio::task::spawn_blocking(move || admin::keep::save_events(&db, &sh.events))
                .await;
        }
        // counters that outlive the process (local quotas) are committed before it exits
        let _ = tokio::task::spawn_blocking(palisade_traffic::state::flush_all).await;
        Drained {
            connections_cut: left,
            requests_cut,
        }
    }

    /// The drain deadline configured.
    pub fn drain_timeout(&self) -> Duration {
        self.config().drain_timeout
    }
}

/// What tells a watched file changed: its modification and change times, size and inode (a
/// file replaced by rename has a new inode even with the old size and time).
type Stamp = (SystemTime, i64, i64, u64, u64);

fn snapshot(files: &[PathBuf]) -> BTreeMap<PathBuf, Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok().and_then(|m| {
                let t = m.modified().ok()?;
                Some((t, m.ctime(), m.ctime_nsec(), m.len(), m.ino()))
            });
            (f.clone(), meta)
        })
        .collect()
}
