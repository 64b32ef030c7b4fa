//! The immutable runtime configuration and the build step that produces it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method};
use ipnet::IpNet;
use palisade_core::policies::ip_filter::parse_net;
use palisade_core::policies::SpecError;
use palisade_core::{Mode, Policy};
use palisade_traffic::redis::{RedisClient, RedisConfig};
use palisade_traffic::Env;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::*;
pub use crate::model::{Balance, UpstreamProtocol};
use crate::tls::{self, CertPaths};
use crate::yaml::{self, Document};
use crate::{ConfigError, ConfigErrors};

/// Default largest request head.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// Default most request headers.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default longest request target.
pub const DEFAULT_MAX_URI_BYTES: usize = 8 * 1024;
/// Default largest request body.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default time to receive a request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default keep-alive idle time.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default most client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default most requests in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
/// Default HTTP/2 concurrent streams.
pub const DEFAULT_H2_STREAMS: u32 = 100;
/// Default drain deadline on shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default upstream request timeout (to the response head).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default pooled-connection idle time.
pub const DEFAULT_UPSTREAM_IDLE: Duration = Duration::from_secs(60);
/// Default longest pause inside an upstream response body.
pub const DEFAULT_BODY_IDLE: Duration = Duration::from_secs(60);

/// Server-wide hardening limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Longest request target.
    pub max_uri_bytes: usize,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Time to receive a request head.
    pub header_read_timeout: Duration,
    /// Keep-alive idle time.
    pub idle_timeout: Duration,
    /// Most client connections.
    pub max_connections: usize,
    /// Most requests in flight.
    pub max_in_flight: usize,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
}

/// The tamper-evident security log.
#[derive(Debug, Clone)]
pub struct SecurityLog {
    /// The file.
    pub path: PathBuf,
    /// The key that signs checkpoints.
    pub key: Option<Arc<palisade_identity::signature::keys::SignKey>>,
    /// A checkpoint after this many records.
    pub every: u64,
    /// A checkpoint when records waited this long.
    pub interval: Duration,
}

impl SecurityLog {
    /// Whether a change from `self` to `other` needs a restart (another file or key).
    pub fn differs(&self, other: &SecurityLog) -> bool {
        self.path != other.path
            || self.every != other.every
            || self.interval != other.interval
            || self.key.is_some() != other.key.is_some()
    }
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
    /// No access log.
    Off,
}

/// A public listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: SocketAddr,
    /// TLS server config, when HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Redirect everything to HTTPS on this port.
    pub redirect_to_https_port: Option<u16>,
    /// Strict-Transport-Security value.
    pub hsts: Option<HeaderValue>,
    /// Serve HTTP/2.
    pub http2: bool,
}

/// A certificate the gateway presents, and how long it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertLife {
    /// Where it is used: `listener NAME` or `upstream NAME`.
    pub used_by: String,
    /// The PEM file.
    pub file: PathBuf,
    /// Valid from (seconds since the epoch).
    pub not_before: i64,
    /// Valid until (seconds since the epoch).
    pub not_after: i64,
}

/// One target of an upstream.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
}

/// Active health check settings.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Probed path.
    pub path: String,
    /// Between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Failures to mark down.
    pub unhealthy_threshold: u32,
    /// Successes to mark up.
    pub healthy_threshold: u32,
}

/// Passive ejection settings.
#[derive(Debug, Clone)]
pub struct Passive {
    /// Consecutive failures that eject.
    pub consecutive_failures: u32,
    /// How long a target stays ejected.
    pub ejection_time: Duration,
}

/// Retry settings.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Extra attempts.
    pub attempts: u32,
    /// Share of requests that may be retried.
    pub budget_ratio: f64,
    /// Retries per second always allowed.
    pub min_per_second: u32,
    /// Retry on 502/503/504 answers too.
    pub on_5xx: bool,
}

/// An upstream pool.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Name.
    pub name: String,
    /// Targets.
    pub targets: Vec<Target>,
    /// Balancing.
    pub balance: Balance,
    /// Protocol.
    pub protocol: UpstreamProtocol,
    /// TLS client config for https targets.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SNI / verified name override.
    pub server_name: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time to the response head.
    pub request_timeout: Duration,
    /// Pool idle time.
    pub idle_timeout: Duration,
    /// Longest pause inside a response body.
    pub body_idle_timeout: Duration,
    /// Active checks.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection.
    pub passive: Option<Passive>,
    /// Retries.
    pub retries: Option<Retry>,
    /// Keep the client's Host.
    pub preserve_host: bool,
    /// Signs forwarded requests.
    pub signer: Option<Arc<palisade_identity::signature::sign::UpstreamSigner>>,
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal this text.
    Literal(String),
    /// Any one non-empty segment, bound to this name.
    Param(String),
}

/// How a route matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Any path.
    Any,
    /// Exactly this path.
    Exact(String),
    /// A template such as `/users/{id}`.
    Template(Vec<Segment>),
    /// This prefix, on whole segments.
    Prefix(String),
}

/// The path without one trailing `/` (but `/` itself): `/users/` is governed by the route
/// of `/users`, since many frameworks (Express, Flask, Spring) serve both alike.
fn without_trailing_slash(path: &str) -> &str {
    if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    }
}

/// `path` after `prefix` on a whole segment, ASCII case ignored.
fn after_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let head = path.get(..prefix.len())?;
    let rest = path.get(prefix.len()..)?;
    (head.eq_ignore_ascii_case(prefix) && (rest.is_empty() || rest.starts_with('/')))
        .then_some(rest)
}

impl PathMatch {
    /// Whether `path` (canonical and decoded, without query) matches. Literals match without
    /// regard to ASCII case and with or without one trailing `/`: an upstream that routes
    /// `/Admin` or `/admin/` to the handler of `/admin` (Express, ASP.NET, Spring by
    /// default) must find that route's policies in front of it, never a laxer route's.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => without_trailing_slash(path).eq_ignore_ascii_case(p),
            PathMatch::Prefix(p) => p == "/" || after_prefix(path, p).is_some(),
            PathMatch::Template(segs) => {
                let mut parts = without_trailing_slash(path).split('/').skip(1);
                for s in segs {
                    match (s, parts.next()) {
                        (Segment::Literal(l), Some(p)) if l.eq_ignore_ascii_case(p) => {}
                        (Segment::Param(_), Some(p)) if !p.is_empty() => {}
                        _ => return false,
                    }
                }
                parts.next().is_none()
            }
        }
    }

    /// The template's parameters in `path` (empty for other matchers or no match).
    pub fn params(&self, path: &str) -> Vec<(String, String)> {
        let PathMatch::Template(segs) = self else {
            return Vec::new();
        };
        segs.iter()
            .zip(without_trailing_slash(path).split('/').skip(1))
            .filter_map(|(s, v)| match s {
                Segment::Param(name) => Some((name.clone(), v.to_string())),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// The rest of `path` after a prefix to strip, on a whole segment, ASCII case ignored.
    pub fn strip<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
        after_prefix(path, prefix)
    }

    /// Orders matchers from most to least specific.
    fn rank(&self) -> (u8, usize) {
        match self {
            PathMatch::Exact(p) => (0, usize::MAX - p.len()),
            PathMatch::Template(s) => (1, usize::MAX - s.len()),
            PathMatch::Prefix(p) => (2, usize::MAX - p.len()),
            PathMatch::Any => (3, 0),
        }
    }
}

/// How a route matches the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Exactly this host (lowercase).
    Exact(String),
    /// Any subdomain of this suffix (`.example.com`).
    Wildcard(String),
}

impl HostMatch {
    /// Whether `host` (lowercase, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

/// A policy on a route with its mode.
#[derive(Debug, Clone)]
pub struct PolicyEntry {
    /// The policy.
    pub policy: Arc<dyn Policy>,
    /// Enforce or monitor.
    pub mode: Mode,
}

/// A route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name.
    pub name: Arc<str>,
    /// Only requests of the listener with this name.
    pub listener: Option<Arc<str>>,
    /// Only calls of these services (client certificate identities; exact or prefix `*`).
    pub services: Vec<String>,
    /// Host matcher.
    pub host: Option<HostMatch>,
    /// Path matcher.
    pub path: PathMatch,
    /// Methods; `None` = any.
    pub methods: Option<Vec<Method>>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// Prefix removed before forwarding.
    pub strip_prefix: Option<String>,
    /// Largest body.
    pub max_body_bytes: u64,
    /// Policies, ordered by stage (stable within a stage).
    pub policies: Vec<PolicyEntry>,
}

/// The whole, validated runtime configuration. Immutable; reload builds a new one.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub source: PathBuf,
    /// Admin listener address.
    pub admin: Option<SocketAddr>,
    /// The admin API's credentials and settings.
    pub admin_api: admin::AdminApi,
    /// The consumers.
    pub consumers: Arc<palisade_identity::consumers::Directory>,
    /// The embedded state store's folder (`runtime.state_dir`).
    pub state_dir: PathBuf,
    /// The keys that encrypt it (`runtime.state_key`).
    pub state_keys: Arc<palisade_traffic::state::crypt::StateKeys>,
    /// Worker threads (0 = cores).
    pub workers: usize,
    /// Drain deadline.
    pub drain_timeout: Duration,
    /// Watch files for changes.
    pub watch: bool,
    /// Whether the HTTP/1.1 fast path serves the requests it can.
    pub http1_fast_path: bool,
    /// Access log target.
    pub access_log: AccessLog,
    /// The security log, when configured.
    pub security_log: Option<SecurityLog>,
    /// Limits.
    pub limits: Limits,
    /// Trusted proxy networks.
    pub trusted_proxies: Vec<IpNet>,
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Upstreams.
    pub upstreams: Vec<Upstream>,
    /// Routes, most specific first.
    pub routes: Vec<Route>,
    /// Files whose change triggers a reload (the config and the files it names).
    pub watched_files: Vec<PathBuf>,
    /// The certificates the gateway presents (listeners, client certificates to upstreams),
    /// watched for expiry.
    pub certificates: Vec<CertLife>,
    /// The config's version: the first 16 hex digits of the SHA-256 of its text.
    pub version: String,
    /// The fleet this instance belongs to.
    pub fleet: Option<fleet::Fleet>,
    /// Headers that carry the verified identity upstream (all stripped from clients).
    pub identity_headers: IdentityHeaders,
    /// Things that work but deserve a second look (`validate` prints them, `run` logs them).
    pub warnings: Vec<ConfigError>,
}

/// The identity headers, resolved.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// Subject.
    pub subject: http::HeaderName,
    /// Consumer.
    pub consumer: http::HeaderName,
    /// Groups.
    pub groups: http::HeaderName,
    /// Scopes.
    pub scopes: http::HeaderName,
    /// Method.
    pub method: http::HeaderName,
    /// The client certificate's identity.
    pub client_cert: http::HeaderName,
    /// Claim name → header.
    pub claims: Vec<(String, http::HeaderName)>,
}

impl IdentityHeaders {
    /// Every header name it sets, to be stripped from client requests.
    pub fn names(&self) -> impl Iterator<Item = &http::HeaderName> {
        [
            &self.subject,
            &self.consumer,
            &self.groups,
            &self.scopes,
            &self.method,
        ]
        .into_iter()
        .chain(self.claims.iter().map(|(_, h)| h))
    }
}

struct Ctx<'a> {
    file: PathBuf,
    base: PathBuf,
    doc: &'a Document,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    files: Vec<PathBuf>,
    /// The consumers' directory, when they were read while parsing (a list of them).
    directory: Option<Result<palisade_identity::consumers::Directory, Vec<(String, String)>>>,
    /// For each list read item by item (`routes`, `routes[0].policies` …), the position in
    /// the file of each item read: an item that failed to read is left out of the spec, and
    /// the later ones must still be reported where they are.
    positions: HashMap<String, Vec<usize>>,
    /// Paths of generated items (the `mesh` section's listeners, upstreams, routes) and the
    /// paths of the file they came from: their problems are reported there.
    aliases: Vec<(String, String)>,
    /// The certificates presented, for the expiry watch.
    certificates: Vec<CertLife>,
}

impl Ctx<'_> {
    /// `path` as the user wrote it: a generated item's path becomes that of its origin.
    fn place(&self, path: String) -> String {
        let best = self
            .aliases
            .iter()
            .filter(|(from, _)| {
                path.strip_prefix(from.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
            .max_by_key(|(from, _)| from.len());
        match best {
            Some((from, to)) => format!("{to}{}", path.get(from.len()..).unwrap_or_default()),
            None => path,
        }
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = self.place(path.into());
        let line = self.doc.line_of(&path);
        self.warnings.push(ConfigError {
            file: self.file.clone(),
            line,
            path,
            message: message.into(),
        });
    }

    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = self.place(path.into());
        let line = self.doc.line_of(&path);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            path,
            message: message.into(),
        });
    }

    /// Deserializes a node, consuming it (its strings move into the spec, and its tree is
    /// freed as the file is read, not kept beside the spec).
    fn section<T: DeserializeOwned>(&mut self, path: &str, v: Value) -> Option<T> {
        match deserialize::<T>(v) {
            Ok(t) => Some(t),
            Err((inner, msg)) => {
                let full = join(path, &inner);
                self.err(full, msg);
                None
            }
        }
    }

    /// The position in the file of the `i`-th item read of the list `key`.
    fn at(&self, key: &str, i: usize) -> usize {
        self.positions
            .get(key)
            .and_then(|p| p.get(i))
            .copied()
            .unwrap_or(i)
    }

    /// Warns when a file holding a private key or a secret can be read by other users.
    fn warn_if_exposed(&mut self, path: &str, file: &Path) {
        if palisade_core::secret::readable_by_others(file) {
            self.warn(
                path,
                format!(
                    "{} holds a key or secret and can be read by other users: chmod 600 it",
                    file.display()
                ),
            );
        }
    }

    /// A file the config reads (keys, certificates, specs): resolved against the config's
    /// folder and watched, so a change reloads the config.
    fn file_path(&mut self, p: &str) -> PathBuf {
        let full = self.output_path(p);
        self.files.push(full.clone());
        full
    }

    /// Records a certificate the gateway presents, for the expiry watch; one already expired
    /// is a warning (it keeps serving, so that a late renewal can still be picked up, but
    /// every peer refuses it).
    fn presents(&mut self, at: &str, used_by: String, file: &Path) {
        let Some((not_before, not_after)) = tls::leaf_validity(file) else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if not_after < now {
            self.warn(
                at,
                format!(
                    "{} expired {} s ago: peers refuse it; renew it",
                    file.display(),
                    now - not_after
                ),
            );
        }
        self.certificates.push(CertLife {
            used_by,
            file: file.to_path_buf(),
            not_before,
            not_after,
        });
    }

    /// A file the gateway writes (the access log): resolved, never watched, since every
    /// write would otherwise reload the config.
    fn output_path(&self, p: &str) -> PathBuf {
        let pb = Path::new(p);
        if pb.is_absolute() {
            pb.to_path_buf()
        } else {
            self.base.join(pb)
        }
    }
}

fn join(prefix: &str, inner: &str) -> String {
    match (prefix.is_empty(), inner.is_empty() || inner == ".") {
        (_, true) => prefix.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
        (false, false) => format!("{prefix}.{inner}"),
    }
}

/// Deserializes a node; on failure, the path inside it and the message.
fn deserialize<T: DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        (path, e.into_inner().to_string())
    })
}

/// The keys of the embedded store, each a 256-bit key in hex.
fn build_state_keys(
    cx: &mut Ctx<'_>,
    spec: &FileSpec,
) -> palisade_traffic::state::crypt::StateKeys {
    use palisade_traffic::state::crypt::{Kek, StateKeys};
    let mut read = |field: String, s: &palisade_core::secret::SecretRef| -> Option<Kek> {
        match s.resolve_text() {
            Ok(t) => Kek::from_hex(&t).or_else(|| {
                cx.err(
                    field,
                    format!("{s:?} must hold 64 hex digits (a 256-bit key, e.g. from `openssl rand -hex 32`)"),
                );
                None
            }),
            Err(e) => {
                cx.err(field, e);
                None
            }
        }
    };
    let current = spec
        .runtime
        .state_key
        .as_ref()
        .and_then(|s| read("runtime.state_key".into(), s));
    let previous = spec
        .runtime
        .state_previous_keys
        .iter()
        .enumerate()
        .filter_map(|(i, s)| read(format!("runtime.state_previous_keys[{i}]"), s))
        .collect();
    if spec.runtime.state_key.is_none() && !spec.runtime.state_previous_keys.is_empty() {
        cx.err(
            "runtime.state_previous_keys",
            "previous keys only help to open the state under a new runtime.state_key; set it",
        );
    }
    let stateful = spec.routes.iter().any(|r| {
        r.policies
            .iter()
            .any(|p| matches!(p, PolicySpec::Quota(_) | PolicySpec::Ownership(_)))
    });
    if stateful && spec.runtime.state_key.is_none() {
        cx.warn(
            "runtime",
            "no runtime.state_key: quota counters and object owners are stored in clear in the state directory",
        );
    }
    StateKeys { current, previous }
}

/// Makes every `${file:PATH}` secret reference absolute against the config's folder (so the
/// policies that read it need no folder), and lists those files with the node that names
/// them, to warn about the ones other users can read.
fn secret_files(v: &mut Value, at: &str, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    match v {
        Value::String(s) => {
            if let Some(palisade_core::secret::SecretRef::File(p)) =
                palisade_core::secret::SecretRef::parse(s)
            {
                let full = if p.is_absolute() { p } else { base.join(p) };
                *s = format!("${{file:{}}}", full.display());
                out.push((at.to_string(), full));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                secret_files(item, &format!("{at}[{i}]"), base, out);
            }
        }
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                secret_files(item, &join(at, k), base, out);
            }
        }
        _ => {}
    }
}

/// Reads, parses, validates and builds a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    load_str(path, &text)
}

/// Parses, validates and builds config text; `path` names the file in errors and anchors
/// relative file paths.
pub fn load_str(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    // consumers (there may be 100,000) go into the directory one by one as the parser
    // finishes each: never held as one tree, nor as a list of specs beside the directory;
    // their problems are placed on lines once the file is read
    let mut directory = palisade_identity::consumers::DirectoryBuilder::default();
    let mut unread: Vec<(String, String)> = Vec::new();
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut exposed: Vec<(String, PathBuf)> = Vec::new();
    let mut sink = |i: usize, mut v: Value| {
        secret_files(&mut v, &format!("consumers[{i}]"), &base, &mut exposed);
        match deserialize(v) {
            Ok(c) => directory.add(i, c),
            Err((inner, msg)) => unread.push((join(&format!("consumers[{i}]"), &inner), msg)),
        }
    };
    let mut doc = yaml::parse_streaming(text, "consumers", &mut sink).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: Some(e.line),
            path: String::new(),
            message: format!("YAML syntax: {}", e.message),
        }])
    })?;
    // the tree is read once, by value; the document keeps only the lines
    let mut root = std::mem::take(&mut doc.value);
    secret_files(&mut root, "", &base, &mut exposed);
    let mut cx = Ctx {
        file: path.to_path_buf(),
        base,
        doc: &doc,
        errors: Vec::new(),
        warnings: Vec::new(),
        files: vec![path.to_path_buf()],
        directory: None,
        positions: HashMap::new(),
        aliases: Vec::new(),
        certificates: Vec::new(),
    };
    for (at, file) in exposed {
        cx.warn_if_exposed(&at, &file);
        // a secret file that changes reloads the config, as a key file does
        cx.files.push(file);
    }
    if matches!(root.get("consumers"), Some(Value::Array(_))) {
        for (path, msg) in unread {
            cx.err(path, msg);
        }
        cx.directory = Some(directory.finish());
    }
    let mut spec = read_sections(&mut cx, root);
    mesh::expand(&mut cx, &mut spec);
    let cfg = build(&mut cx, spec);
    if cx.errors.is_empty() {
        if let Some(mut cfg) = cfg {
            cfg.source = path.to_path_buf();
            cfg.version = fleet::version_of(text);
            cfg.warnings = std::mem::take(&mut cx.warnings);
            cfg.watched_files = std::mem::take(&mut cx.files);
            cfg.watched_files.sort();
            cfg.watched_files.dedup();
            return Ok(cfg);
        }
    }
    cx.errors.sort_by_key(|e| e.line.unwrap_or(0));
    Err(ConfigErrors(cx.errors))
}

fn read_sections(cx: &mut Ctx<'_>, root: Value) -> FileSpec {
    let mut spec = FileSpec::default();
    let root = match root {
        Value::Object(m) => m,
        Value::Null => {
            cx.err("", "the file is empty; see examples/ for a starting point");
            return spec;
        }
        _ => {
            cx.err(
                "",
                "the top level must be a mapping of sections (listeners, upstreams, routes …)",
            );
            return spec;
        }
    };
    for (k, v) in root {
        let k = k.as_str();
        match k {
            "admin" => spec.admin = cx.section(k, v),
            // a list is read item by item while parsing, into the directory (see load_str)
            "consumers" if v.is_array() => {}
            "consumers" => cx.err(k, "must be a list"),
            "identity_headers" => spec.identity_headers = cx.section(k, v).unwrap_or_default(),
            "issuers" => match v {
                Value::Object(m) => {
                    for (name, i) in m {
                        if let Some(i) = cx.section(&format!("issuers.{name}"), i) {
                            spec.issuers.insert(name, i);
                        }
                    }
                }
                _ => cx.err(k, "must be a mapping from issuer name to its settings"),
            },
            "redis" => spec.redis = cx.section(k, v),
            "mesh" => spec.mesh = cx.section(k, v),
            "fleet" => spec.fleet = cx.section(k, v),
            "runtime" => spec.runtime = cx.section(k, v).unwrap_or_default(),
            "log" => spec.log = cx.section(k, v).unwrap_or_default(),
            "limits" => spec.limits = cx.section(k, v).unwrap_or_default(),
            "trusted_proxies" => spec.trusted_proxies = cx.section(k, v).unwrap_or_default(),
            "listeners" => spec.listeners = items(cx, k, v),
            "routes" => spec.routes = routes(cx, v),
            "patches" => spec.patches = patches::read(cx, v),
            "upstreams" => match v {
                Value::Object(m) => {
                    for (name, u) in m {
                        if let Some(u) = cx.section(&format!("upstreams.{name}"), u) {
                            spec.upstreams.insert(name, u);
                        }
                    }
                }
                _ => cx.err(k, "must be a mapping from upstream name to its settings"),
            },
            other => cx.err(
                other,
                format!(
                    "unknown section `{other}`; expected one of {}",
                    crate::model::TOP_LEVEL_KEYS.join(", ")
                ),
            ),
        }
    }
    spec
}

fn items<T: DeserializeOwned>(cx: &mut Ctx<'_>, key: &str, v: Value) -> Vec<T> {
    match v {
        Value::Array(a) => {
            let mut out = Vec::new();
            let mut at = Vec::new();
            for (i, v) in a.into_iter().enumerate() {
                if let Some(t) = cx.section(&format!("{key}[{i}]"), v) {
                    out.push(t);
                    at.push(i);
                }
            }
            cx.positions.insert(key.to_string(), at);
            out
        }
        _ => {
            cx.err(key, "must be a list");
            Vec::new()
        }
    }
}

/// Routes are read field group by field group, so that one bad policy does not hide the
/// problems of the rest of the route.
fn routes(cx: &mut Ctx<'_>, v: Value) -> Vec<RouteSpec> {
    let Value::Array(a) = v else {
        cx.err("routes", "must be a list");
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = Vec::new();
    for (i, mut r) in a.into_iter().enumerate() {
        let p = format!("routes[{i}]");
        let policies = match r.as_object_mut().and_then(|m| m.remove("policies")) {
            None => Vec::new(),
            Some(v) => items(cx, &format!("{p}.policies"), v),
        };
        if let Some(mut route) = cx.section::<RouteSpec>(&p, r) {
            route.policies = policies;
            out.push(route);
            at.push(i);
        }
    }
    cx.positions.insert("routes".into(), at);
    out
}

/// An address, written `IP:port` or `${env:NAME}` (from the environment: the instances of a
/// fleet share one config and each gets its addresses from its own environment).
fn addr(cx: &mut Ctx<'_>, path: &str, s: &str) -> Option<SocketAddr> {
    let from_env;
    let s = match palisade_core::secret::SecretRef::parse(s) {
        Some(palisade_core::secret::SecretRef::Env(name)) => match std::env::var(&name) {
            Ok(v) => {
                from_env = v;
                from_env.trim()
            }
            Err(_) => {
                cx.err(
                    path,
                    format!("the environment variable {name} is not set (it gives this address)"),
                );
                return None;
            }
        },
        _ => s,
    };
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.err(path, format!("`{s}` is not an address; write host:port with an IP, e.g. 127.0.0.1:8080 or [::]:8443"));
            None
        }
    }
}

/// The largest `limits.max_uri_bytes` that can be honoured (hyper's HTTP/1.1 parser limit).
const MAX_URI_BYTES_CEILING: usize = 65_534;

fn positive<T: PartialOrd + Default + Copy>(
    cx: &mut Ctx<'_>,
    path: &str,
    v: Option<T>,
    default: T,
) -> T {
    match v {
        Some(v) if v <= T::default() => {
            cx.err(path, "must be greater than zero");
            default
        }
        Some(v) => v,
        None => default,
    }
}

fn build(cx: &mut Ctx<'_>, spec: FileSpec) -> Option<Config> {
    let admin = spec
        .admin
        .as_ref()
        .and_then(|a| addr(cx, "admin.listen", &a.listen));
    let admin_api = admin::build(cx, spec.admin.as_ref(), &spec.patches);
    let l = &spec.limits;
    let limits = Limits {
        max_header_bytes: positive(
            cx,
            "limits.max_header_bytes",
            l.max_header_bytes,
            DEFAULT_MAX_HEADER_BYTES,
        ),
        max_headers: positive(cx, "limits.max_headers", l.max_headers, DEFAULT_MAX_HEADERS),
        max_uri_bytes: match l.max_uri_bytes {
            // HTTP/1.1 request targets longer than this are refused by the parser itself,
            // before the gateway's own answer: a larger limit would be a promise not kept
            Some(n) if n > MAX_URI_BYTES_CEILING => {
                cx.err(
                    "limits.max_uri_bytes",
                    format!(
                        "at most {MAX_URI_BYTES_CEILING}: the HTTP/1.1 parser refuses longer request targets itself; carry large inputs in the body"
                    ),
                );
                DEFAULT_MAX_URI_BYTES
            }
            v => positive(cx, "limits.max_uri_bytes", v, DEFAULT_MAX_URI_BYTES),
        },
        max_body_bytes: l.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        header_read_timeout: l
            .header_read_timeout
            .map_or(DEFAULT_HEADER_READ_TIMEOUT, |d| d.0),
        idle_timeout: l.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0),
        max_connections: positive(
            cx,
            "limits.max_connections",
            l.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        ),
        max_in_flight: positive(
            cx,
            "limits.max_in_flight",
            l.max_in_flight,
            DEFAULT_MAX_IN_FLIGHT,
        ),
        h2_max_concurrent_streams: positive(
            cx,
            "limits.h2_max_concurrent_streams",
            l.h2_max_concurrent_streams,
            DEFAULT_H2_STREAMS,
        ),
    };
    if limits.max_header_bytes < 8192 {
        cx.err(
            "limits.max_header_bytes",
            "must be at least 8192 (the HTTP/1 parser's smallest buffer)",
        );
    }
    if limits.header_read_timeout.is_zero() {
        cx.err(
            "limits.header_read_timeout",
            "must be greater than zero: without it a slow client holds a connection forever",
        );
    }

    let mut trusted_proxies = Vec::new();
    for (i, s) in spec.trusted_proxies.iter().enumerate() {
        match parse_net(s) {
            Some(n) => trusted_proxies.push(n.trunc()),
            None => cx.err(
                format!("trusted_proxies[{i}]"),
                format!("`{s}` is not an IP address or CIDR"),
            ),
        }
    }

    let security_log = spec.log.security.as_ref().map(|s| {
        if s.checkpoint_every == Some(0) {
            cx.err("log.security.checkpoint_every", "must be at least 1");
        }
        let key = match &s.signing_key {
            None => {
                cx.warn(
                    "log.security",
                    "no signing_key: the records are hash-chained but not signed, so the newest ones can be cut or edited unnoticed",
                );
                None
            }
            Some(k) => match k.resolve_text().and_then(|pem| {
                palisade_identity::signature::keys::SignKey::private_pem(
                    palisade_identity::signature::keys::Alg::Ed25519,
                    &pem,
                )
            }) {
                Ok(k) => Some(Arc::new(k)),
                Err(e) => {
                    cx.err("log.security.signing_key", e);
                    None
                }
            },
        };
        SecurityLog {
            path: cx.output_path(&s.path),
            key,
            every: s.checkpoint_every.unwrap_or(100).max(1),
            interval: s.checkpoint_interval.map_or(Duration::from_secs(10), |d| d.0),
        }
    });
    let access_log = match spec.log.access.as_deref() {
        None | Some("stdout") => AccessLog::Stdout,
        Some("stderr") => AccessLog::Stderr,
        Some("off") => AccessLog::Off,
        Some(p) => AccessLog::File(cx.output_path(p)),
    };

    let listeners = build_listeners(cx, &spec.listeners);
    let (upstreams, upstream_index) = build_upstreams(cx, &spec.upstreams);
    if let Some(o) = &admin_api.otlp {
        if !upstream_index.contains_key(&o.upstream) {
            let known: Vec<&String> = upstream_index.keys().collect();
            cx.err(
                "admin.otlp.upstream",
                format!(
                    "no upstream named `{}`: declare the collector under upstreams (defined: {known:?})",
                    o.upstream
                ),
            );
        }
    }
    let redis = spec.redis.as_ref().and_then(|r| build_redis(cx, r));
    let state_keys = build_state_keys(cx, &spec);
    let env = Env {
        clock: Arc::new(palisade_traffic::MonotonicClock::process()),
        redis: redis.as_ref().map(|(c, _)| c.clone()),
        redis_prefix: redis
            .as_ref()
            .map_or_else(|| "palisade:".to_string(), |(_, p)| p.clone()),
        id: String::new(),
        state_dir: Some(match &spec.runtime.state_dir {
            Some(d) if Path::new(d).is_absolute() => PathBuf::from(d),
            Some(d) => cx.base.join(d),
            None => cx.base.join("palisade-state"),
        }),
        state_keys: Arc::new(state_keys),
        keep_state: true,
    };
    let fleet = fleet::build(cx, spec.fleet.as_ref(), redis.as_ref(), &env, &listeners);
    let (ids, identity_headers) = build_identity(cx, &spec);
    let listener_names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    let mut routes = build_routes(
        cx,
        &spec.routes,
        &Known {
            upstreams: &upstream_index,
            listeners: &listener_names,
        },
        &limits,
        &env,
        &ids,
    );
    patches::apply(cx, &spec.patches, &mut routes, &env, &ids);

    if let Some(a) = admin {
        if a.port() != 0 && listeners.iter().any(|l| l.addr == a) {
            cx.err(
                "admin.listen",
                "the admin listener must not share an address with a public listener",
            );
        }
    }
    Some(Config {
        source: PathBuf::new(),
        admin,
        admin_api,
        consumers: ids.dir.clone(),
        state_dir: env.state_dir.clone().unwrap_or_default(),
        state_keys: env.state_keys.clone(),
        workers: spec.runtime.workers,
        drain_timeout: spec
            .runtime
            .drain_timeout
            .map_or(DEFAULT_DRAIN_TIMEOUT, |d| d.0),
        watch: spec.runtime.watch.unwrap_or(true),
        // the environment wins, so a whole test suite or an A/B run can turn it off
        http1_fast_path: match std::env::var("PALISADE_HTTP1_FAST_PATH").as_deref() {
            Ok("off" | "false" | "0") => false,
            Ok("on" | "true" | "1") => true,
            _ => spec.runtime.http1_fast_path.unwrap_or(true),
        },
        access_log,
        security_log,
        limits,
        trusted_proxies,
        listeners,
        upstreams,
        routes,
        watched_files: Vec::new(),
        certificates: std::mem::take(&mut cx.certificates),
        version: String::new(),
        fleet,
        identity_headers,
        warnings: Vec::new(),
    })
}

fn header_name(
    cx: &mut Ctx<'_>,
    path: &str,
    v: Option<&str>,
    default: &'static str,
) -> http::HeaderName {
    match v {
        None => http::HeaderName::from_static(default),
        Some(n) => match http::HeaderName::try_from(n) {
            Ok(h) => h,
            Err(_) => {
                cx.err(path, format!("`{n}` is not a header name"));
                http::HeaderName::from_static(default)
            }
        },
    }
}

fn build_identity(cx: &mut Ctx<'_>, spec: &FileSpec) -> (IdentityEnv, IdentityHeaders) {
    // no `consumers` list: no consumers
    let built = cx
        .directory
        .take()
        .unwrap_or_else(|| Ok(Default::default()));
    let dir = match built {
        Ok(d) => d,
        Err(errs) => {
            for (p, m) in errs {
                cx.err(format!("consumers{p}"), m);
            }
            palisade_identity::consumers::Directory::default()
        }
    };
    let mut issuers = HashMap::new();
    for (name, i) in &spec.issuers {
        let p = format!("issuers.{name}");
        let mut files = palisade_identity::issuer::IssuerFiles::default();
        if let Some(f) = &i.jwks_file {
            let path = cx.file_path(f);
            match std::fs::read(&path) {
                Ok(b) => files.jwks = Some(b),
                Err(e) => cx.err(
                    format!("{p}.jwks_file"),
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        if let Some(f) = &i.ca {
            let path = cx.file_path(f);
            match tls::load_certs(&path) {
                Ok(c) => files.ca = Some(c),
                Err(e) => cx.err(format!("{p}.ca"), e),
            }
        }
        match i.build(files) {
            Ok(iss) => {
                issuers.insert(name.clone(), iss);
            }
            Err(errs) => {
                for (f, m) in errs {
                    cx.err(format!("{p}.{f}"), m);
                }
            }
        }
        if i.dangerous_allow_http {
            cx.warn(
                format!("{p}.dangerous_allow_http"),
                "keys fetched over plain http can be swapped in transit; use https outside tests",
            );
        }
        if i.dangerous_skip_audience {
            cx.warn(
                format!("{p}.dangerous_skip_audience"),
                "tokens meant for other APIs of this issuer are accepted here",
            );
        }
        if i.dangerous_accept_missing_issuer {
            cx.warn(
                format!("{p}.dangerous_accept_missing_issuer"),
                "tokens without `iss` are taken as this issuer's: any other system holding its key can mint them",
            );
        }
        if i.dangerous_short_secret {
            cx.warn(
                format!("{p}.dangerous_short_secret"),
                "a short HMAC secret can be guessed offline from one token: rotate it to 32 random bytes or more",
            );
        }
    }
    let h = &spec.identity_headers;
    let headers = IdentityHeaders {
        subject: header_name(
            cx,
            "identity_headers.subject",
            h.subject.as_deref(),
            "x-palisade-subject",
        ),
        consumer: header_name(
            cx,
            "identity_headers.consumer",
            h.consumer.as_deref(),
            "x-palisade-consumer",
        ),
        groups: header_name(
            cx,
            "identity_headers.groups",
            h.groups.as_deref(),
            "x-palisade-groups",
        ),
        scopes: header_name(
            cx,
            "identity_headers.scopes",
            h.scopes.as_deref(),
            "x-palisade-scopes",
        ),
        method: header_name(
            cx,
            "identity_headers.method",
            h.method.as_deref(),
            "x-palisade-auth-method",
        ),
        client_cert: header_name(
            cx,
            "identity_headers.client_cert",
            h.client_cert.as_deref(),
            "x-palisade-client-cert",
        ),
        claims: h
            .claims
            .iter()
            .map(|(c, n)| {
                (
                    c.clone(),
                    header_name(
                        cx,
                        &format!("identity_headers.claims.{c}"),
                        Some(n),
                        "x-palisade-claim",
                    ),
                )
            })
            .collect(),
    };
    (
        IdentityEnv {
            dir: Arc::new(dir),
            issuers,
        },
        headers,
    )
}

/// What identity policies are built with.
struct IdentityEnv {
    dir: Arc<palisade_identity::consumers::Directory>,
    issuers: HashMap<String, Arc<palisade_identity::issuer::Issuer>>,
}

fn build_listeners(cx: &mut Ctx<'_>, specs: &[ListenerSpec]) -> Vec<Listener> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    // none read, and none written (those written with errors are reported already)
    if specs.is_empty() && !cx.doc.contains("listeners[0]") {
        cx.err(
            "listeners",
            "at least one listener is needed, e.g. `- {name: public, listen: 0.0.0.0:8080}`",
        );
    }
    for (i, l) in specs.iter().enumerate() {
        let p = format!("listeners[{}]", cx.at("listeners", i));
        if !names.insert(l.name.clone()) {
            cx.err(
                format!("{p}.name"),
                format!("listener name `{}` is used twice", l.name),
            );
        }
        let Some(a) = addr(cx, &format!("{p}.listen"), &l.listen) else {
            continue;
        };
        if a.port() != 0 && !addrs.insert(a) {
            cx.err(
                format!("{p}.listen"),
                format!("{a} is used by another listener"),
            );
        }
        let http2 = l.http2.unwrap_or(true);
        let tls = match &l.tls {
            None => None,
            Some(t) => {
                let tls13_only = match t.min_version.as_deref() {
                    None | Some("1.2") => false,
                    Some("1.3") => true,
                    Some(v) => {
                        cx.err(
                            format!("{p}.tls.min_version"),
                            format!("`{v}` is not supported; use \"1.2\" or \"1.3\""),
                        );
                        false
                    }
                };
                if t.certificates.is_empty() {
                    cx.err(
                        format!("{p}.tls.certificates"),
                        "at least one certificate is needed",
                    );
                    None
                } else {
                    let paths: Vec<(PathBuf, PathBuf)> = t
                        .certificates
                        .iter()
                        .map(|c| (cx.file_path(&c.cert), cx.file_path(&c.key)))
                        .collect();
                    for (i, (c, k)) in paths.iter().enumerate() {
                        cx.warn_if_exposed(&format!("{p}.tls.certificates[{i}].key"), k);
                        cx.presents(
                            &format!("{p}.tls.certificates[{i}].cert"),
                            format!("listener {}", l.name),
                            c,
                        );
                    }
                    let cp: Vec<CertPaths<'_>> = paths
                        .iter()
                        .map(|(c, k)| CertPaths { cert: c, key: k })
                        .collect();
                    let client_auth = t.client_auth.as_ref().map(|c| tls::ClientAuthPaths {
                        ca: c.ca.iter().map(|f| cx.file_path(f)).collect(),
                        crls: c.crls.iter().map(|f| cx.file_path(f)).collect(),
                        required: c.required,
                    });
                    if t.client_auth.as_ref().is_some_and(|c| c.ca.is_empty()) {
                        cx.err(format!("{p}.tls.client_auth.ca"), "at least one CA file");
                    }
                    match tls::server_config(&cp, tls13_only, http2, client_auth.as_ref()) {
                        Ok(c) => Some(Arc::new(c)),
                        Err(errs) => {
                            for (j, e) in errs {
                                if j == usize::MAX {
                                    cx.err(format!("{p}.tls.client_auth"), e);
                                } else {
                                    cx.err(format!("{p}.tls.certificates[{j}]"), e);
                                }
                            }
                            None
                        }
                    }
                }
            }
        };
        if l.redirect_to_https_port.is_some() && l.tls.is_some() {
            cx.err(
                format!("{p}.redirect_to_https_port"),
                "only a plain-HTTP listener can redirect to HTTPS",
            );
        }
        let hsts = l.hsts.as_ref().and_then(|h| {
            if l.tls.is_none() {
                cx.err(
                    format!("{p}.hsts"),
                    "HSTS is only sent over HTTPS; add `tls` or remove `hsts`",
                );
                return None;
            }
            let mut v = format!(
                "max-age={}",
                h.max_age.map_or(365 * 86400, |d| d.0.as_secs())
            );
            if h.include_subdomains {
                v.push_str("; includeSubDomains");
            }
            if h.preload {
                v.push_str("; preload");
            }
            HeaderValue::from_str(&v).ok()
        });
        out.push(Listener {
            name: l.name.clone(),
            addr: a,
            tls,
            redirect_to_https_port: l.redirect_to_https_port,
            hsts,
            http2,
        });
    }
    out
}

fn build_upstreams(
    cx: &mut Ctx<'_>,
    specs: &BTreeMap<String, UpstreamSpec>,
) -> (Vec<Upstream>, BTreeMap<String, usize>) {
    let mut out = Vec::new();
    let mut index = BTreeMap::new();
    for (name, u) in specs {
        let p = format!("upstreams.{name}");
        let mut targets = Vec::new();
        if u.targets.is_empty() {
            cx.err(
                format!("{p}.targets"),
                "at least one target is needed, e.g. http://127.0.0.1:3000",
            );
        }
        for (i, t) in u.targets.iter().enumerate() {
            let tp = format!("{p}.targets[{i}]");
            match t.parse::<http::Uri>() {
                Ok(uri) => {
                    let scheme = uri.scheme().cloned();
                    let auth = uri.authority().cloned();
                    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
                    match (scheme, auth) {
                        (Some(s), Some(a)) if path_ok && (s == http::uri::Scheme::HTTP || s == http::uri::Scheme::HTTPS) => {
                            if a.as_str().contains('@') {
                                cx.err(&tp, "credentials in a target URL are not allowed");
                            } else {
                                targets.push(Target { scheme: s, authority: a });
                            }
                        }
                        _ => cx.err(&tp, format!("`{t}` must be a base URL such as http://10.0.0.5:8080 or https://api.internal (no path)")),
                    }
                }
                Err(_) => cx.err(
                    &tp,
                    format!("`{t}` is not a URL; write e.g. http://10.0.0.5:8080"),
                ),
            }
        }
        let any_https = targets.iter().any(|t| t.scheme == http::uri::Scheme::HTTPS);
        let tls = match (&u.tls, any_https) {
            (None, true) => {
                cx.err(format!("{p}.tls"), "https targets need `tls.ca`: the PEM bundle of CAs that sign the upstream's certificate");
                None
            }
            (Some(_), false) => {
                cx.err(format!("{p}.tls"), "`tls` is set but no target is https://");
                None
            }
            (None, false) => None,
            (Some(t), true) => {
                let ca = t.ca.as_deref().map(|c| cx.file_path(c));
                for (j, id) in t.peer_ids.iter().enumerate() {
                    if !id.starts_with("spiffe://") || id.trim_end_matches('*').contains('*') {
                        cx.err(
                            format!("{p}.tls.peer_ids[{j}]"),
                            format!("`{id}` is not a SPIFFE ID (spiffe://trust-domain/path) or a prefix of one ending in `*`"),
                        );
                    }
                }
                let client = match (&t.client_cert, &t.client_key) {
                    (Some(c), Some(k)) => {
                        let c = cx.file_path(c);
                        cx.presents(
                            &format!("{p}.tls.client_cert"),
                            format!("upstream {name}"),
                            &c,
                        );
                        Some((c, cx.file_path(k)))
                    }
                    (None, None) => None,
                    _ => {
                        cx.err(
                            format!("{p}.tls"),
                            "`client_cert` and `client_key` go together",
                        );
                        None
                    }
                };
                match ca {
                    None => {
                        cx.err(
                            format!("{p}.tls.ca"),
                            "a CA bundle is required to verify the upstream",
                        );
                        None
                    }
                    Some(ca) => match tls::client_config(
                        &ca,
                        client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
                        &t.peer_ids,
                    ) {
                        Ok(c) => Some(Arc::new(c)),
                        Err(e) => {
                            cx.err(format!("{p}.tls"), e);
                            None
                        }
                    },
                }
            }
        };
        let hc = u.health_check.as_ref().map(|h| {
            if !h.path.starts_with('/') {
                cx.err(format!("{p}.health_check.path"), "must start with /");
            }
            HealthCheck {
                path: h.path.clone(),
                interval: h.interval.map_or(Duration::from_secs(5), |d| d.0),
                timeout: h.timeout.map_or(Duration::from_secs(2), |d| d.0),
                unhealthy_threshold: h.unhealthy_threshold.unwrap_or(2).max(1),
                healthy_threshold: h.healthy_threshold.unwrap_or(2).max(1),
            }
        });
        let passive = u.passive.as_ref().map(|ps| Passive {
            consecutive_failures: ps.consecutive_failures.unwrap_or(5).max(1),
            ejection_time: ps.ejection_time.map_or(Duration::from_secs(30), |d| d.0),
        });
        let signer = u.sign_requests.as_ref().and_then(|sp| match sp.build() {
            Ok(s) => Some(Arc::new(s)),
            Err((field, msg)) => {
                cx.err(format!("{p}.sign_requests.{field}"), msg);
                None
            }
        });
        let retries = u.retries.as_ref().map(|r| {
            let ratio = r.budget_ratio.unwrap_or(0.2);
            if !(0.0..=1.0).contains(&ratio) {
                cx.err(
                    format!("{p}.retries.budget_ratio"),
                    "must be between 0 and 1",
                );
            }
            Retry {
                attempts: r.attempts.unwrap_or(1),
                budget_ratio: ratio,
                min_per_second: r.min_per_second.unwrap_or(10),
                on_5xx: r.on_5xx.unwrap_or(true),
            }
        });
        let server_name = u.tls.as_ref().and_then(|t| t.server_name.clone());
        if let Some(sn) = &server_name {
            if rustls_pki_types::ServerName::try_from(sn.as_str()).is_err() {
                cx.err(
                    format!("{p}.tls.server_name"),
                    format!("`{sn}` is not a DNS name or IP address"),
                );
            }
        }
        index.insert(name.clone(), out.len());
        out.push(Upstream {
            name: name.clone(),
            targets,
            balance: u.balance,
            protocol: u.protocol,
            tls,
            server_name,
            connect_timeout: u.timeouts.connect.map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0),
            request_timeout: u.timeouts.request.map_or(DEFAULT_REQUEST_TIMEOUT, |d| d.0),
            idle_timeout: u.timeouts.idle.map_or(DEFAULT_UPSTREAM_IDLE, |d| d.0),
            body_idle_timeout: u.timeouts.body_idle.map_or(DEFAULT_BODY_IDLE, |d| d.0),
            health_check: hc,
            passive,
            retries,
            preserve_host: u.preserve_host,
            signer,
        });
    }
    (out, index)
}

/// Route paths are matched against the decoded canonical request path
/// (`palisade_core::uri`), so they must be written in that form themselves.
fn check_route_path(cx: &mut Ctx<'_>, p: &str, path: &str, prefix: bool) {
    // template braces are not part of the canonical form's alphabet; check around them
    let path = if prefix && path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let plain = path.replace(['{', '}'], "");
    let canonical =
        palisade_core::uri::canonical_path(&plain).is_ok_and(|c| c.forward == plain.as_str());
    let trailing = path.len() > 1 && path.ends_with('/');
    if !canonical || path.contains('%') || trailing {
        cx.err(
            p,
            format!(
                "`{path}` is not a canonical path: requests are routed on their decoded path, \
                 so write it without %-escapes, `;`, backslashes, empty or dot segments and \
                 trailing `/` (a route covers its path with and without one)"
            ),
        );
    }
}

fn parse_path(cx: &mut Ctx<'_>, p: &str, path: &str) -> PathMatch {
    if !path.starts_with('/') {
        cx.err(p, format!("`{path}` must start with /"));
        return PathMatch::Any;
    }
    if !path.contains('{') {
        return PathMatch::Exact(path.to_string());
    }
    let mut segs = Vec::new();
    let mut seen = HashSet::new();
    for s in path.split('/').skip(1) {
        if let Some(name) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                cx.err(
                    p,
                    format!("`{{{name}}}` is not a valid parameter name (letters, digits, _)"),
                );
            } else if !seen.insert(name.to_string()) {
                cx.err(p, format!("parameter `{name}` appears twice"));
            }
            segs.push(Segment::Param(name.to_string()));
        } else if s.contains(['{', '}']) {
            cx.err(
                p,
                format!("segment `{s}`: a parameter must take a whole segment, like /users/{{id}}"),
            );
        } else {
            segs.push(Segment::Literal(s.to_string()));
        }
    }
    PathMatch::Template(segs)
}

fn build_redis(cx: &mut Ctx<'_>, r: &RedisSpec) -> Option<(Arc<RedisClient>, String)> {
    let before = cx.errors.len();
    let (tls, rest) = if let Some(rest) = r.url.strip_prefix("rediss://") {
        (true, rest)
    } else if let Some(rest) = r.url.strip_prefix("redis://") {
        (false, rest)
    } else {
        cx.err(
            "redis.url",
            "must start with redis:// (or rediss:// for TLS), e.g. redis://127.0.0.1:6379",
        );
        return None;
    };
    if rest.contains('@') {
        cx.err(
            "redis.url",
            "must not carry credentials; use `username` and `password_env` or `password_file`",
        );
        return None;
    }
    let (hostport, db) = match rest.split_once('/') {
        None | Some((_, "")) => (rest, 0),
        Some((h, d)) => match d.parse::<u32>() {
            Ok(n) => (h, n),
            Err(_) => {
                cx.err("redis.url", format!("`/{d}` is not a database number"));
                (h, 0)
            }
        },
    };
    if hostport.is_empty() {
        cx.err("redis.url", "names no host");
        return None;
    }
    let (host, port_text) = match hostport.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => {
                cx.err("redis.url", "an IPv6 address needs its closing ]");
                return None;
            }
        },
        None => match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    let port = match port_text.map(str::parse::<u16>) {
        None => 6379,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            cx.err("redis.url", "the port is not a number from 1 to 65535");
            6379
        }
    };
    use palisade_core::secret::SecretRef;
    let given = usize::from(r.password_env.is_some())
        + usize::from(r.password_file.is_some())
        + usize::from(r.password.is_some());
    let (field, src) = match (&r.password_env, &r.password_file, &r.password) {
        (Some(v), _, _) => ("redis.password_env", Some(SecretRef::Env(v.clone()))),
        (None, Some(f), _) => (
            "redis.password_file",
            Some(SecretRef::File(cx.file_path(f))),
        ),
        (None, None, Some(s)) => ("redis.password", Some(s.clone())),
        (None, None, None) => ("redis.password", None),
    };
    if given > 1 {
        cx.err(
            field,
            "give the password once: `password`, `password_env` or `password_file`",
        );
    }
    let password = match src.map(|s| s.resolve_text()) {
        Some(Ok(v)) => Some(v.to_string()),
        Some(Err(e)) => {
            cx.err(field, e);
            None
        }
        None => None,
    };
    if r.username.is_some() && password.is_none() && cx.errors.len() == before {
        cx.err(
            "redis.username",
            "a user needs a password: set `password_env` or `password_file`",
        );
    }
    let tls = if tls {
        let Some(ca) = &r.ca else {
            cx.err(
                "redis.ca",
                "rediss:// needs `ca`, the PEM bundle that signs the server's certificate",
            );
            return None;
        };
        let ca = cx.file_path(ca);
        let client = match (&r.client_cert, &r.client_key) {
            (Some(c), Some(k)) => Some((cx.file_path(c), cx.file_path(k))),
            (None, None) => None,
            _ => {
                cx.err(
                    "redis.client_cert",
                    "`client_cert` and `client_key` go together",
                );
                None
            }
        };
        let name = match rustls_pki_types::ServerName::try_from(host.to_string()) {
            Ok(n) => n,
            Err(_) => {
                cx.err("redis.url", format!("`{host}` is not a valid server name"));
                return None;
            }
        };
        match crate::tls::client_config(
            &ca,
            client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            &[],
        ) {
            Ok(c) => Some((Arc::new(c), name)),
            Err(e) => {
                cx.err("redis.ca", e);
                return None;
            }
        }
    } else {
        if r.ca.is_some() || r.client_cert.is_some() {
            cx.err("redis.ca", "TLS settings need a rediss:// url");
        }
        None
    };
    let timeout = r.timeout.map_or(Duration::from_millis(100), |d| d.0);
    if timeout.is_zero() {
        cx.err("redis.timeout", "must be greater than zero");
    }
    if cx.errors.len() != before {
        return None;
    }
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let client = RedisClient::shared(RedisConfig {
        addr,
        tls,
        username: r.username.clone(),
        password,
        db,
        timeout,
        connect_timeout: r.connect_timeout.map_or(Duration::from_secs(2), |d| d.0),
    });
    Some((
        client,
        r.key_prefix.clone().unwrap_or_else(|| "palisade:".into()),
    ))
}

fn build_policy(
    cx: &mut Ctx<'_>,
    p: &str,
    spec: &PolicySpec,
    env: &Env,
    ids: &IdentityEnv,
) -> Option<PolicyEntry> {
    if let PolicySpec::ApiKey(s) = spec {
        if s.query.is_some() {
            cx.warn(
                format!("{p}.query"),
                "API keys in URLs end up in access logs, browser histories and Referer headers; prefer the header",
            );
        }
    }
    let built: Result<(Arc<dyn Policy>, Mode), Vec<SpecError>> = match spec {
        PolicySpec::IpFilter(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Headers(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::ConcurrencyLimit(s) => {
            s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode))
        }
        PolicySpec::ApiKey(s) => s
            .build(&ids.dir)
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Jwt(s) => s
            .build(&ids.issuers, &ids.dir)
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Authorize(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Threat(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Pii(s) => {
            let doc = match &s.spec {
                None => Ok(None),
                Some(f) => {
                    let path = cx.file_path(f);
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))
                        .and_then(|t| {
                            palisade_audit::spec::load_from(&t, path.parent())
                                .map(|sp| Some(sp.doc))
                        })
                }
            };
            match doc {
                Ok(d) => s
                    .build_with(d.as_ref())
                    .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
                Err(e) => Err(vec![SpecError::new("spec", e)]),
            }
        }
        PolicySpec::Contract(s) => {
            let path = cx.file_path(&s.spec);
            match std::fs::read_to_string(&path) {
                Ok(text) => s
                    .build(&text, path.parent())
                    .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
                Err(e) => Err(vec![SpecError::new(
                    "spec",
                    format!("cannot read {}: {e}", path.display()),
                )]),
            }
        }
        PolicySpec::Mtls(s) => s
            .build(&ids.dir)
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Introspection(s) => s
            .build(&ids.issuers, &ids.dir)
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Bandwidth(s) => s
            .build(env)
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Quota(s) => s
            .build(env)
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::RateLimit(s) => s
            .build(env)
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Deny(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Idempotency(s) => s
            .build(env)
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Websocket(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Protocol(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::RequireCredentials(s) => {
            s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode))
        }
        PolicySpec::RequestFields(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Responses(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::SealedSession(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::WsSecurity(s) => {
            // the signers' CA is read here, relative to the config, and watched
            let ca = s.x509.as_ref().map(|x| cx.file_path(&x.ca));
            let idp = s.saml.as_ref().map(|x| cx.file_path(&x.certificate));
            let pem = ca.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
            let idp_pem = idp.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
            cx.files.extend(ca.into_iter().chain(idp));
            s.build(
                &ids.dir,
                env.redis.as_ref().map(|c| {
                    Arc::new(palisade_traffic::store::RedisSeen::new(
                        c.clone(),
                        &env.redis_prefix,
                    )) as Arc<dyn palisade_core::seen::SeenStore>
                }),
                pem.as_deref(),
                idp_pem.as_deref(),
            )
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode))
        }
        PolicySpec::SoapContract(s) => {
            let path = cx.file_path(&s.wsdl);
            match std::fs::read_to_string(&path) {
                Ok(text) => s
                    .build(&text)
                    .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
                Err(e) => Err(vec![SpecError::new(
                    "wsdl",
                    format!("cannot read {}: {e}", path.display()),
                )]),
            }
        }
        PolicySpec::XmlProtection(s) => s.build().map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::ResponseSignature(s) => s
            .build()
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, Mode::Enforce)),
        PolicySpec::Signature(s) => s
            .build(
                &ids.dir,
                env.redis.as_ref().map(|c| {
                    Arc::new(palisade_traffic::store::RedisSeen::new(
                        c.clone(),
                        &env.redis_prefix,
                    )) as Arc<dyn palisade_core::seen::SeenStore>
                }),
            )
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
        PolicySpec::Ownership(s) => s
            .build(env)
            .map(|b| (Arc::new(b) as Arc<dyn Policy>, s.mode)),
    };
    match built {
        Ok((policy, mode)) => Some(PolicyEntry { policy, mode }),
        Err(errs) => {
            for e in errs {
                cx.err(join(p, &e.field), e.message);
            }
            None
        }
    }
}

/// The names a route may refer to.
struct Known<'a> {
    upstreams: &'a BTreeMap<String, usize>,
    listeners: &'a [&'a str],
}

fn build_routes(
    cx: &mut Ctx<'_>,
    specs: &[RouteSpec],
    known: &Known<'_>,
    limits: &Limits,
    env: &Env,
    ids: &IdentityEnv,
) -> Vec<Route> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in specs.iter().enumerate() {
        let p = format!("routes[{}]", cx.at("routes", i));
        if !names.insert(r.name.clone()) {
            cx.err(
                format!("{p}.name"),
                format!("route name `{}` is used twice", r.name),
            );
        }
        let upstream = match known.upstreams.get(&r.upstream) {
            Some(u) => *u,
            None => {
                let known: Vec<&str> = known.upstreams.keys().map(String::as_str).collect();
                cx.err(
                    format!("{p}.upstream"),
                    format!(
                        "no upstream named `{}`; defined: {}",
                        r.upstream,
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                0
            }
        };
        let m = &r.matcher;
        if let Some(l) = &m.listener {
            if !known.listeners.contains(&l.as_str()) {
                cx.err(
                    format!("{p}.match.listener"),
                    format!(
                        "no listener named `{l}`; defined: {}",
                        known.listeners.join(", ")
                    ),
                );
            }
        }
        for (j, a) in m.services.iter().enumerate() {
            if a.is_empty() || a.trim_end_matches('*').contains('*') {
                cx.err(
                    format!("{p}.match.services[{j}]"),
                    "an identity, or a prefix ending in a single `*`",
                );
            }
        }
        let path = match (&m.path, &m.path_prefix) {
            (Some(_), Some(_)) => {
                cx.err(
                    format!("{p}.match"),
                    "use either `path` or `path_prefix`, not both",
                );
                PathMatch::Any
            }
            (Some(path), None) => {
                check_route_path(cx, &format!("{p}.match.path"), path, false);
                parse_path(cx, &format!("{p}.match.path"), path)
            }
            (None, Some(prefix)) => {
                if !prefix.starts_with('/') {
                    cx.err(format!("{p}.match.path_prefix"), "must start with /");
                } else {
                    check_route_path(cx, &format!("{p}.match.path_prefix"), prefix, true);
                }
                let trimmed = if prefix.len() > 1 {
                    prefix.trim_end_matches('/')
                } else {
                    prefix
                };
                PathMatch::Prefix(trimmed.to_string())
            }
            (None, None) => PathMatch::Any,
        };
        let host = m.host.as_ref().map(|h| {
            let (wild, name) = match h.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, h.as_str()),
            };
            // the same canonical form as a request's host: lower case, no trailing dot
            let name = match palisade_core::uri::Authority::parse(name) {
                Ok(a) if a.port.is_none() => a.host,
                _ => {
                    let hint = if name.is_ascii() {
                        "a host name without port, e.g. api.example.com or *.example.com"
                    } else {
                        "a host name in its ASCII (xn--, punycode) form"
                    };
                    cx.err(format!("{p}.match.host"), format!("`{h}` is not {hint}"));
                    name.to_ascii_lowercase()
                }
            };
            if wild {
                HostMatch::Wildcard(format!(".{name}"))
            } else {
                HostMatch::Exact(name)
            }
        });
        let methods = if m.methods.is_empty() {
            None
        } else {
            let mut v = Vec::new();
            for (j, s) in m.methods.iter().enumerate() {
                match Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
                    Ok(mm) => v.push(mm),
                    Err(_) => cx.err(
                        format!("{p}.match.methods[{j}]"),
                        format!("`{s}` is not an HTTP method"),
                    ),
                }
            }
            Some(v)
        };
        let strip_prefix = if r.strip_prefix {
            match &path {
                PathMatch::Prefix(pre) => Some(pre.clone()),
                _ => {
                    cx.err(format!("{p}.strip_prefix"), "needs `match.path_prefix`");
                    None
                }
            }
        } else {
            None
        };
        let max_body_bytes = match r.max_body_bytes {
            Some(b) if b > limits.max_body_bytes => {
                cx.err(
                    format!("{p}.max_body_bytes"),
                    format!(
                        "cannot exceed limits.max_body_bytes ({})",
                        limits.max_body_bytes
                    ),
                );
                b
            }
            Some(b) => b,
            None => limits.max_body_bytes,
        };
        let mut policies: Vec<PolicyEntry> = r
            .policies
            .iter()
            .enumerate()
            .filter_map(|(j, s)| {
                let env = Env {
                    id: format!("{}/{j}", r.name),
                    ..env.clone()
                };
                build_policy(
                    cx,
                    &format!("{p}.policies[{}]", cx.at(&format!("{p}.policies"), j)),
                    s,
                    &env,
                    ids,
                )
            })
            .collect();
        policies.sort_by_key(|e| e.policy.stage());
        // deny by default: every route authenticates, or says it is public
        let authenticates = r.policies.iter().any(|p| {
            matches!(
                p,
                PolicySpec::ApiKey(_)
                    | PolicySpec::Jwt(_)
                    | PolicySpec::Introspection(_)
                    | PolicySpec::Mtls(_)
                    | PolicySpec::Signature(_)
                    | PolicySpec::WsSecurity(_)
            )
        });
        if !authenticates && !r.public {
            cx.err(
                format!("{p}.policies"),
                "the route has no authentication policy: add one (api_key, jwt, introspection, mtls, signature, ws_security), or mark the route `public: true` if anyone may call it",
            );
        }
        if authenticates && r.public {
            cx.err(
                format!("{p}.public"),
                "a public route takes no authentication policy; remove one or the other",
            );
        }
        out.push(Route {
            name: Arc::from(r.name.as_str()),
            listener: m.listener.as_deref().map(Arc::from),
            services: m.services.clone(),
            host,
            path,
            methods,
            upstream,
            strip_prefix,
            max_body_bytes,
            policies,
        });
    }
    // Most specific first: a host beats no host, then exact > template > longest prefix,
    // then a route for named services beats one for any caller on the same path.
    out.sort_by_key(|r| (r.host.is_none(), r.path.rank(), r.services.is_empty()));
    out
}

pub mod admin;
pub mod fleet;
pub mod mesh;
mod patches;
pub use patches::{sample_path, serving};
#[cfg(test)]
mod tests;
