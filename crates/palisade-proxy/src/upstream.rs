//! Upstream pools: pooled keep-alive clients (h1/h2, TLS with the upstream's own CA), target
//! choice (round robin or least requests), active health checks, passive ejection and a
//! retry budget.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use palisade_config::{Balance, Upstream, UpstreamProtocol};

use crate::body::{empty, ProxyBody};

type HttpClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// State of one target.
#[derive(Debug)]
pub struct TargetState {
    /// `scheme://authority` without a trailing slash.
    pub base: String,
    /// Requests in flight.
    pub in_flight: AtomicUsize,
    /// Result of active health checks (true when none are configured).
    pub healthy: AtomicBool,
    passive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
}

/// An upstream pool.
#[derive(Debug)]
pub struct Pool {
    /// The config it was built from.
    pub cfg: Upstream,
    client: HttpClient,
    /// Targets.
    pub targets: Vec<TargetState>,
    next: AtomicUsize,
    epoch: Instant,
    budget: Mutex<Budget>,
}

#[derive(Debug)]
struct Budget {
    window_start: Instant,
    requests: u64,
    retries: u64,
}

/// Why sending failed.
#[derive(Debug)]
pub enum SendError {
    /// No response head within the request timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The client's body went over the route's cap.
    BodyTooLarge,
    /// Anything else: reset, garbage, protocol error.
    Other(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Timeout => f.write_str("no response head within the request timeout"),
            SendError::Connect => f.write_str("connection failed"),
            SendError::BodyTooLarge => f.write_str("request body over the cap"),
            SendError::Other(m) => f.write_str(m),
        }
    }
}

impl Pool {
    /// Builds a pool (no I/O; connections are made on demand).
    pub fn new(cfg: &Upstream) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = cfg.tls.as_deref().cloned().unwrap_or_else(|| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            })
            .unwrap_or_else(|_| {
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            })
        });
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let b = match cfg
            .server_name
            .as_deref()
            .and_then(|n| rustls_pki_types_name(n))
        {
            Some(name) => b.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => b,
        };
        let connector = match cfg.protocol {
            UpstreamProtocol::Http1 => b.enable_http1().wrap_connector(http),
            UpstreamProtocol::Http2 => b.enable_http2().wrap_connector(http),
            UpstreamProtocol::Auto => b.enable_all_versions().wrap_connector(http),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(cfg.idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_max_idle_per_host(1024)
            .http2_only(cfg.protocol == UpstreamProtocol::Http2)
            .http2_keep_alive_interval(Some(Duration::from_secs(30)))
            .http2_keep_alive_timeout(Duration::from_secs(10));
        let client = builder.build(connector);
        let targets = cfg
            .targets
            .iter()
            .map(|t| TargetState {
                base: format!("{}://{}", t.scheme, t.authority),
                in_flight: AtomicUsize::new(0),
                healthy: AtomicBool::new(true),
                passive_failures: AtomicU32::new(0),
                ejected_until_ms: AtomicU64::new(0),
            })
            .collect();
        Pool {
            cfg: cfg.clone(),
            client,
            targets,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            budget: Mutex::new(Budget {
                window_start: Instant::now(),
                requests: 0,
                retries: 0,
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether a target takes traffic now.
    pub fn available(&self, i: usize) -> bool {
        self.targets.get(i).is_some_and(|t| {
            t.healthy.load(Ordering::Relaxed)
                && t.ejected_until_ms.load(Ordering::Relaxed) <= self.now_ms()
        })
    }

    /// Picks a target, avoiding `avoid` when another is available.
    pub fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        // A retry looks from where the rotation stands without moving it, so one dead target
        // costs each rotation one retry, not every request.
        let start = if avoid.is_some() {
            self.next.load(Ordering::Relaxed)
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        let candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.available(i));
        let chosen = match self.cfg.balance {
            Balance::RoundRobin => {
                let mut first = None;
                let mut other = None;
                for i in candidates {
                    first.get_or_insert(i);
                    if Some(i) != avoid {
                        other = Some(i);
                        break;
                    }
                }
                other.or(first)
            }
            Balance::LeastRequests => candidates.min_by_key(|&i| {
                let load = self
                    .targets
                    .get(i)
                    .map_or(usize::MAX, |t| t.in_flight.load(Ordering::Relaxed));
                (Some(i) == avoid, load)
            }),
        };
        chosen
    }

    /// Records the outcome of a request for passive ejection.
    pub fn report(&self, i: usize, ok: bool) {
        let (Some(p), Some(t)) = (&self.cfg.passive, self.targets.get(i)) else {
            return;
        };
        if ok {
            t.passive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let n = t.passive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= p.consecutive_failures {
            t.passive_failures.store(0, Ordering::Relaxed);
            t.ejected_until_ms.store(
                self.now_ms() + p.ejection_time.as_millis() as u64,
                Ordering::Relaxed,
            );
            tracing::warn!(upstream = %self.cfg.name, target = %t.base, failures = n, ejection_secs = p.ejection_time.as_secs(), "target ejected after consecutive failures");
        }
    }

    /// Counts a request against the retry budget window.
    pub fn note_request(&self) {
        if self.cfg.retries.is_none() {
            return;
        }
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        roll(&mut b);
        b.requests += 1;
    }

    /// Takes a retry from the budget if one is left.
    pub fn take_retry(&self) -> bool {
        let Some(r) = &self.cfg.retries else {
            return false;
        };
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        roll(&mut b);
        let allowed = (b.requests as f64 * r.budget_ratio)
            .max(f64::from(r.min_per_second) * WINDOW.as_secs_f64());
        if (b.retries as f64) < allowed {
            b.retries += 1;
            true
        } else {
            false
        }
    }

    /// Sends a request to target `i`; `path_and_query` replaces the URI's.
    pub async fn send(
        &self,
        i: usize,
        mut req: Request<ProxyBody>,
        path_and_query: &str,
    ) -> Result<Response<hyper::body::Incoming>, SendError> {
        let Some(t) = self.targets.get(i) else {
            return Err(SendError::Connect);
        };
        let uri: Uri = format!("{}{}", t.base, path_and_query)
            .parse()
            .map_err(|_| SendError::Other("bad target uri".into()))?;
        *req.uri_mut() = uri;
        if self.cfg.protocol == UpstreamProtocol::Http2 {
            *req.version_mut() = http::Version::HTTP_2;
        } else {
            *req.version_mut() = http::Version::HTTP_11;
        }
        t.in_flight.fetch_add(1, Ordering::Relaxed);
        let r = tokio::time::timeout(self.cfg.request_timeout, self.client.request(req)).await;
        t.in_flight.fetch_sub(1, Ordering::Relaxed);
        match r {
            Err(_) => Err(SendError::Timeout),
            Ok(Ok(res)) => Ok(res),
            Ok(Err(e)) => Err(classify(e)),
        }
    }

    /// One health probe of target `i`.
    async fn probe(&self, i: usize, path: &str, timeout: Duration) -> bool {
        let Some(t) = self.targets.get(i) else {
            return false;
        };
        let Ok(uri) = format!("{}{}", t.base, path).parse::<Uri>() else {
            return false;
        };
        let mut req = Request::new(empty());
        *req.uri_mut() = uri;
        req.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("palisade-health-check"),
        );
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Ok(Ok(res)) => res.status().is_success() || res.status().is_redirection(),
            _ => false,
        }
    }

    /// Runs active health checks until the returned task is aborted.
    pub fn spawn_health_checks(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let hc = self.cfg.health_check.clone()?;
        let pool = Arc::clone(self);
        Some(tokio::spawn(async move {
            let n = pool.targets.len();
            let mut ok_streak = vec![0u32; n];
            let mut fail_streak = vec![0u32; n];
            loop {
                for i in 0..n {
                    let up = pool.probe(i, &hc.path, hc.timeout).await;
                    let (Some(ok), Some(fail), Some(t)) = (
                        ok_streak.get_mut(i),
                        fail_streak.get_mut(i),
                        pool.targets.get(i),
                    ) else {
                        continue;
                    };
                    if up {
                        *ok += 1;
                        *fail = 0;
                        if *ok >= hc.healthy_threshold && !t.healthy.swap(true, Ordering::Relaxed) {
                            tracing::info!(upstream = %pool.cfg.name, target = %t.base, "target healthy again");
                        }
                    } else {
                        *fail += 1;
                        *ok = 0;
                        if *fail >= hc.unhealthy_threshold
                            && t.healthy.swap(false, Ordering::Relaxed)
                        {
                            tracing::warn!(upstream = %pool.cfg.name, target = %t.base, path = %hc.path, "target failed health checks, taken out of rotation");
                        }
                    }
                }
                tokio::time::sleep(hc.interval).await;
            }
        }))
    }
}

const WINDOW: Duration = Duration::from_secs(10);

fn roll(b: &mut Budget) {
    if b.window_start.elapsed() >= WINDOW {
        b.window_start = Instant::now();
        b.requests = 0;
        b.retries = 0;
    }
}

fn rustls_pki_types_name(n: &str) -> Option<rustls::pki_types::ServerName<'static>> {
    rustls::pki_types::ServerName::try_from(n.to_string()).ok()
}

fn classify(e: hyper_util::client::legacy::Error) -> SendError {
    if e.is_connect() {
        return SendError::Connect;
    }
    // Our own body error (too large, client abort) travels inside the hyper error chain.
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = src {
        if let Some(b) = s.downcast_ref::<crate::body::BodyError>() {
            return match b {
                crate::body::BodyError::TooLarge(_) => SendError::BodyTooLarge,
                crate::body::BodyError::Stream(_) => {
                    SendError::Other("the client's body stream failed".into())
                }
            };
        }
        src = s.source();
    }
    SendError::Other(e.to_string())
}
