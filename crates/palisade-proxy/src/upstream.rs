//! Upstream pools: our own keep-alive connection pool over hyper's connection-level client
//! (h1 and h2, TLS with the upstream's own CA and ALPN), target choice (round robin or least
//! requests), active health checks, passive ejection and a retry budget.
//!
//! The pool is deliberately small: an idle stack per target for HTTP/1.1 (a connection goes
//! back on the stack when its response body has been read to the end) and one shared
//! multiplexed sender per target for HTTP/2. It replaces hyper-util's generic client, whose
//! per-request bookkeeping cost more CPU than the rest of the proxy (see BENCHMARKS.md).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use palisade_config::{Balance, Upstream, UpstreamProtocol};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::body::{empty, BodyError, ProxyBody};
use crate::h1client::{self, Conn, Io, RawBody, RawIdle};

/// Most idle HTTP/1.1 connections kept per target.
const MAX_IDLE_PER_TARGET: usize = 1024;

struct Idle {
    tx: http1::SendRequest<ProxyBody>,
    since: Instant,
}

type IdleStack = Arc<Mutex<Vec<Idle>>>;

/// State of one target.
pub struct TargetState {
    /// `scheme://authority` without a trailing slash.
    pub base: String,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    host_header: HeaderValue,
    server_name: Option<ServerName<'static>>,
    /// Requests in flight.
    pub in_flight: AtomicUsize,
    /// Result of active health checks (true when none are configured).
    pub healthy: AtomicBool,
    passive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// Times this target was ejected by passive checks.
    pub ejections: AtomicU64,
    idle: IdleStack,
    /// Idle connections of our own HTTP/1.1 client.
    raw_idle: RawIdle,
    /// Whether requests to this target may use our own HTTP/1.1 client.
    raw: bool,
    h2: Mutex<Option<http2::SendRequest<ProxyBody>>>,
}

impl std::fmt::Debug for TargetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetState")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// An upstream pool.
pub struct Pool {
    /// The config it was built from.
    pub cfg: Upstream,
    tls: Option<tokio_rustls::TlsConnector>,
    /// Targets.
    pub targets: Vec<TargetState>,
    next: AtomicUsize,
    epoch: Instant,
    budget: Mutex<Budget>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("upstream", &self.cfg.name)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
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
    /// The connection (TCP or TLS) could not be made.
    Connect,
    /// The client's body went over the route's cap.
    BodyTooLarge,
    /// The client's body could not be read: malformed chunked encoding, or the client left.
    ClientBody,
    /// The client stopped sending its body for the request timeout (the upstream was
    /// waiting for it).
    ClientBodyTimeout,
    /// Anything else: reset, garbage, protocol error.
    Other(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Timeout => f.write_str("no response head within the request timeout"),
            SendError::Connect => f.write_str("connection failed"),
            SendError::BodyTooLarge => f.write_str("request body over the cap"),
            SendError::ClientBody => f.write_str("the client's request body could not be read"),
            SendError::ClientBodyTimeout => f.write_str("the client's request body stalled"),
            SendError::Other(m) => f.write_str(m),
        }
    }
}

enum Sender {
    H1(http1::SendRequest<ProxyBody>, bool),
    H2(http2::SendRequest<ProxyBody>),
}

impl Pool {
    /// Builds a pool (no I/O; connections are made on demand).
    pub fn new(cfg: &Upstream) -> Self {
        let tls = cfg.tls.as_deref().map(|c| {
            let mut c = c.clone();
            c.alpn_protocols = match cfg.protocol {
                UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
                UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
                UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            };
            tokio_rustls::TlsConnector::from(Arc::new(c))
        });
        let targets = cfg
            .targets
            .iter()
            .map(|t| {
                let name = cfg
                    .server_name
                    .clone()
                    .unwrap_or_else(|| t.authority.host().trim_matches(['[', ']']).to_string());
                TargetState {
                    base: format!("{}://{}", t.scheme, t.authority),
                    scheme: t.scheme.clone(),
                    authority: t.authority.clone(),
                    host_header: HeaderValue::from_str(t.authority.as_str())
                        .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                    server_name: ServerName::try_from(name).ok(),
                    in_flight: AtomicUsize::new(0),
                    healthy: AtomicBool::new(true),
                    passive_failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                    ejections: AtomicU64::new(0),
                    idle: Arc::new(Mutex::new(Vec::new())),
                    raw_idle: Arc::new(Mutex::new(Vec::new())),
                    // HTTP/1.1 known in advance: plain HTTP unless h2c is asked for, and TLS
                    // when the upstream is pinned to HTTP/1.1 (with `auto`, ALPN decides)
                    raw: match cfg.protocol {
                        UpstreamProtocol::Http1 => true,
                        UpstreamProtocol::Auto => t.scheme != http::uri::Scheme::HTTPS,
                        UpstreamProtocol::Http2 => false,
                    },
                    h2: Mutex::new(None),
                }
            })
            .collect();
        Pool {
            cfg: cfg.clone(),
            tls,
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
            // read the clock only for a target that has been ejected at some point
            let until = t.ejected_until_ms.load(Ordering::Relaxed);
            t.healthy.load(Ordering::Relaxed) && (until == 0 || until <= self.now_ms())
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
        if n == 1 {
            return self.available(0).then_some(0);
        }
        let candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.available(i));
        match self.cfg.balance {
            Balance::RoundRobin => {
                let mut first = None;
                for i in candidates {
                    first.get_or_insert(i);
                    if Some(i) != avoid {
                        return Some(i);
                    }
                }
                first
            }
            Balance::LeastRequests => candidates.min_by_key(|&i| {
                let load = self
                    .targets
                    .get(i)
                    .map_or(usize::MAX, |t| t.in_flight.load(Ordering::Relaxed));
                (Some(i) == avoid, load)
            }),
        }
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
        // failures of requests that were in flight when the target was ejected do not eject
        // it again (nor log it again)
        let until = t.ejected_until_ms.load(Ordering::Relaxed);
        if until != 0 && until > self.now_ms() {
            return;
        }
        let n = t.passive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        // exactly one of the concurrent failures crosses the threshold and ejects
        if n == p.consecutive_failures {
            t.passive_failures.store(0, Ordering::Relaxed);
            t.ejected_until_ms.store(
                self.now_ms() + p.ejection_time.as_millis() as u64,
                Ordering::Relaxed,
            );
            t.ejections.fetch_add(1, Ordering::Relaxed);
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

    /// Opens a new connection to a target (TCP, TLS with ALPN, HTTP handshake).
    async fn connect(&self, t: &TargetState) -> Result<Sender, SendError> {
        let (io, h2) = self.connect_io(t).await?;
        self.handshake(TokioIo::new(io), h2).await
    }

    /// Opens the transport to a target: TCP, and TLS with ALPN for an `https` target.
    /// Returns whether HTTP/2 is to be spoken on it.
    async fn connect_io(&self, t: &TargetState) -> Result<(Io, bool), SendError> {
        let addr = t.authority.as_str();
        let tcp = tokio::time::timeout(self.cfg.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| SendError::Connect)?
            .map_err(|e| {
                tracing::debug!(target = %t.base, error = %e, "connect failed");
                SendError::Connect
            })?;
        let _ = tcp.set_nodelay(true);
        if t.scheme == http::uri::Scheme::HTTPS {
            let (Some(tls), Some(name)) = (&self.tls, t.server_name.clone()) else {
                return Err(SendError::Connect);
            };
            let stream = tokio::time::timeout(self.cfg.connect_timeout, tls.connect(name, tcp))
                .await
                .map_err(|_| SendError::Connect)?
                .map_err(|e| {
                    tracing::warn!(upstream = %self.cfg.name, target = %t.base, error = %tls_reason(&e), "TLS to the upstream failed");
                    SendError::Connect
                })?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok((Io::Tls(Box::new(stream)), h2))
        } else {
            Ok((Io::Tcp(tcp), self.cfg.protocol == UpstreamProtocol::Http2))
        }
    }

    async fn handshake<I>(&self, io: TokioIo<I>, h2: bool) -> Result<Sender, SendError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let name = self.cfg.name.clone();
        if h2 {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
                .handshake(io)
                .await
                .map_err(|e| SendError::Other(format!("HTTP/2 handshake: {e}")))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(upstream = %name, error = %e, "upstream h2 connection ended");
                }
            });
            Ok(Sender::H2(tx))
        } else {
            let (tx, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(|e| SendError::Other(format!("HTTP/1.1 handshake: {e}")))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(upstream = %name, error = %e, "upstream connection ended");
                }
            });
            Ok(Sender::H1(tx, false))
        }
    }

    /// A ready sender: a pooled one when there is one, a new connection otherwise.
    async fn checkout(&self, t: &TargetState) -> Result<Sender, SendError> {
        if let Ok(guard) = t.h2.lock() {
            if let Some(tx) = guard.as_ref().filter(|tx| !tx.is_closed()) {
                return Ok(Sender::H2(tx.clone()));
            }
        }
        loop {
            let popped = t.idle.lock().ok().and_then(|mut v| v.pop());
            let Some(mut idle) = popped else { break };
            if idle.tx.is_closed() || idle.since.elapsed() >= self.cfg.idle_timeout {
                continue;
            }
            if idle.tx.ready().await.is_ok() {
                return Ok(Sender::H1(idle.tx, true));
            }
        }
        // boxed: connecting is rare and its future large; keep it out of every request's state
        let s = Box::pin(self.connect(t)).await?;
        if let Sender::H2(tx) = &s {
            if let Ok(mut g) = t.h2.lock() {
                *g = Some(tx.clone());
            }
        }
        Ok(s)
    }

    /// Sends a request to target `i`; `path_and_query` replaces the URI's. The Host header is
    /// the target's unless the upstream preserves the client's.
    ///
    /// The request timeout is the longest wait for the response head once the request body
    /// stops moving: while `body` (the client's body, streamed) makes progress the wait goes
    /// on, so a large or paced upload is not cut off by it; it is measured from the last byte
    /// (checked every quarter of it). When it runs out while the body waits for the client,
    /// the client stalled (408, `ClientBodyTimeout`), not the upstream (504, `Timeout`).
    pub async fn send(
        &self,
        i: usize,
        req: Request<ProxyBody>,
        path_and_query: http::uri::PathAndQuery,
        body: Option<&crate::body::BodyProgress>,
    ) -> Result<Response<PooledBody>, SendError> {
        let Some(t) = self.targets.get(i) else {
            return Err(SendError::Connect);
        };
        // given back by drop, also when the caller's future is dropped mid-way
        let _in_flight = InFlight::enter(&t.in_flight);
        // pinned where it stands and raced against one timer: the future is large, and
        // boxing it or moving it into a `Timeout` would copy all of it on every request
        let fut = self.send_inner(t, req, path_and_query);
        tokio::pin!(fut);
        let limit = self.cfg.request_timeout;
        let tick = if body.is_some() {
            (limit / 4).max(std::time::Duration::from_millis(10))
        } else {
            limit
        };
        let sleep = tokio::time::sleep(tick);
        tokio::pin!(sleep);
        let mut seen = body.map_or(0, |b| b.bytes.load(Ordering::Relaxed));
        let mut last_move = tokio::time::Instant::now();
        let r = loop {
            tokio::select! {
                biased;
                r = &mut fut => break Some(r),
                _ = &mut sleep => {
                    let now = tokio::time::Instant::now();
                    let Some(b) = body else { break None };
                    let moved = b.bytes.load(Ordering::Relaxed);
                    if moved != seen {
                        seen = moved;
                        last_move = now;
                    }
                    if now.duration_since(last_move) >= limit {
                        let stalled = !b.done.load(Ordering::Relaxed)
                            && b.waiting_on_client.load(Ordering::Relaxed);
                        break stalled.then_some(Err(SendError::ClientBodyTimeout));
                    }
                    sleep.as_mut().reset(now + tick);
                }
            }
        };
        r.unwrap_or(Err(SendError::Timeout))
    }

    async fn send_inner(
        &self,
        t: &TargetState,
        mut req: Request<ProxyBody>,
        pq: http::uri::PathAndQuery,
    ) -> Result<Response<PooledBody>, SendError> {
        if !self.cfg.preserve_host || !req.headers().contains_key(http::header::HOST) {
            req.headers_mut()
                .insert(http::header::HOST, t.host_header.clone());
        }
        let whole = req.body().is_end_stream()
            || req
                .body()
                .size_hint()
                .exact()
                .is_some_and(|n| n <= h1client::MAX_WHOLE_BODY);
        if t.raw && whole {
            return self.send_raw(t, req, &pq).await;
        }
        // One fresh-connection retry when a pooled connection turned out to be closing.
        for _ in 0..2 {
            match self.checkout(t).await? {
                Sender::H2(mut tx) => {
                    let mut parts = http::uri::Parts::default();
                    parts.scheme = Some(t.scheme.clone());
                    parts.authority = Some(t.authority.clone());
                    parts.path_and_query = Some(pq.clone());
                    *req.uri_mut() =
                        Uri::from_parts(parts).map_err(|e| SendError::Other(e.to_string()))?;
                    *req.version_mut() = http::Version::HTTP_2;
                    req.headers_mut().remove(http::header::HOST);
                    return match tx.try_send_request(req).await {
                        Ok(res) => Ok(res.map(|b| {
                            PooledBody::Hyper(HyperBody {
                                inner: b,
                                back: None,
                            })
                        })),
                        Err(e) => Err(classify(e.into_error())),
                    };
                }
                Sender::H1(mut tx, reused) => {
                    *req.uri_mut() = Uri::from(pq.clone());
                    *req.version_mut() = http::Version::HTTP_11;
                    match tx.try_send_request(req).await {
                        Ok(res) => {
                            let back = Some((tx, t.idle.clone()));
                            return Ok(res.map(|b| PooledBody::Hyper(HyperBody { inner: b, back })));
                        }
                        Err(mut e) => match e.take_message() {
                            Some(r) if reused => req = r,
                            _ => return Err(classify(e.into_error())),
                        },
                    }
                }
            }
        }
        Err(SendError::Other("no usable connection".into()))
    }

    /// Sends a request with no body or a small one through our own HTTP/1.1 client (see
    /// [`h1client`]): the body is read whole, then head and body go out in one write.
    async fn send_raw(
        &self,
        t: &TargetState,
        req: Request<ProxyBody>,
        pq: &http::uri::PathAndQuery,
    ) -> Result<Response<PooledBody>, SendError> {
        let (parts, body) = req.into_parts();
        let body = if body.is_end_stream() {
            Bytes::new()
        } else {
            match http_body_util::BodyExt::collect(body).await {
                Ok(c) => c.to_bytes(),
                Err(BodyError::TooLarge(_)) => return Err(SendError::BodyTooLarge),
                Err(_) => return Err(SendError::ClientBody),
            }
        };
        let idempotent = crate::h1wire::idempotent(&parts.method);
        // One fresh-connection retry when a pooled connection turned out to be closing.
        for _ in 0..2 {
            let (mut conn, reused) = match self.pop_raw(t) {
                Some(c) => (c, true),
                None => {
                    let (io, _) = Box::pin(self.connect_io(t)).await?;
                    (Conn::new(io), false)
                }
            };
            match h1client::round_trip(&mut conn, &parts.method, pq.as_str(), &parts.headers, &body)
                .await
            {
                Ok((head, framing)) => {
                    let body = RawBody::new(conn, framing, t.raw_idle.clone(), MAX_IDLE_PER_TARGET);
                    return Ok(head.map(|()| PooledBody::Raw(body)));
                }
                // the upstream closed a kept-alive connection as the request went out: it
                // cannot have answered, so the request goes again on a new connection (for a
                // non-idempotent one, only when it was not even written whole)
                Err(f) if reused && f.nothing_received && (idempotent || f.write_failed) => {}
                Err(f) => {
                    tracing::debug!(target = %t.base, error = %f.error, "upstream HTTP/1.1 exchange failed");
                    return Err(SendError::Other(f.error.to_string()));
                }
            }
        }
        Err(SendError::Other("no usable connection".into()))
    }

    /// Sends an upgrade request (a WebSocket handshake) to target `i` on a connection of its
    /// own, which the upgrade then takes over: the answer and, when it is `101`, the
    /// upstream's side of the upgraded connection. HTTP/1.1 only; bounded by the connect
    /// and request timeouts.
    pub async fn upgrade(
        &self,
        i: usize,
        mut req: Request<ProxyBody>,
        pq: http::uri::PathAndQuery,
    ) -> Result<
        (
            Response<hyper::body::Incoming>,
            Option<hyper::upgrade::Upgraded>,
        ),
        SendError,
    > {
        let Some(t) = self.targets.get(i) else {
            return Err(SendError::Connect);
        };
        let _in_flight = InFlight::enter(&t.in_flight);
        if !self.cfg.preserve_host || !req.headers().contains_key(http::header::HOST) {
            req.headers_mut()
                .insert(http::header::HOST, t.host_header.clone());
        }
        *req.uri_mut() = Uri::from(pq);
        *req.version_mut() = http::Version::HTTP_11;
        let (io, h2) = Box::pin(self.connect_io(t)).await?;
        if h2 {
            return Err(SendError::Other(
                "the upstream chose HTTP/2, where this upgrade does not exist".into(),
            ));
        }
        let (mut tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Other(format!("HTTP/1.1 handshake: {e}")))?;
        let name = self.cfg.name.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(upstream = %name, error = %e, "upstream upgrade connection ended");
            }
        });
        let res = tokio::time::timeout(self.cfg.request_timeout, tx.send_request(req))
            .await
            .map_err(|_| SendError::Timeout)?
            .map_err(classify)?;
        if res.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok((res, None));
        }
        let mut res = res;
        let upgraded = tokio::time::timeout(self.cfg.request_timeout, hyper::upgrade::on(&mut res))
            .await
            .map_err(|_| SendError::Timeout)?
            .map_err(|e| SendError::Other(format!("upgrade: {e}")))?;
        Ok((res, Some(upgraded)))
    }

    /// A pooled connection of our own client that is still usable.
    fn pop_raw(&self, t: &TargetState) -> Option<Box<Conn>> {
        loop {
            let mut conn = t.raw_idle.lock().ok()?.pop()?;
            if conn.since.elapsed() < self.cfg.idle_timeout && conn.is_usable() {
                return Some(conn);
            }
        }
    }

    /// One health probe of target `i`.
    async fn probe(&self, i: usize, path: &str, timeout: Duration) -> bool {
        let Ok(pq) = http::uri::PathAndQuery::try_from(path) else {
            return false;
        };
        let mut req = Request::new(empty());
        req.headers_mut().insert(
            http::header::USER_AGENT,
            HeaderValue::from_static("palisade-health-check"),
        );
        let Some(t) = self.targets.get(i) else {
            return false;
        };
        match tokio::time::timeout(timeout, self.send_inner(t, req, pq)).await {
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

/// An upstream response body: from our own HTTP/1.1 client, or from hyper's (HTTP/2, and
/// HTTP/1.1 requests whose body streams).
pub enum PooledBody {
    /// Read by [`h1client`].
    Raw(RawBody),
    /// Read by hyper.
    Hyper(HyperBody),
}

/// A response body read by hyper; when read to the end, its HTTP/1.1 connection goes back to
/// the pool. Dropped early, the connection is closed (it is mid-message).
pub struct HyperBody {
    inner: Incoming,
    back: Option<(http1::SendRequest<ProxyBody>, IdleStack)>,
}

impl Drop for HyperBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            give_back(self.back.take());
        }
    }
}

fn give_back(back: Option<(http1::SendRequest<ProxyBody>, IdleStack)>) {
    let Some((tx, stack)) = back else { return };
    if tx.is_closed() {
        return;
    }
    let mut v = stack.lock().unwrap_or_else(|p| p.into_inner());
    if v.len() < MAX_IDLE_PER_TARGET {
        v.push(Idle {
            tx,
            since: Instant::now(),
        });
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            PooledBody::Raw(b) => Pin::new(b).poll_frame(cx),
            PooledBody::Hyper(b) => {
                let r = Pin::new(&mut b.inner).poll_frame(cx);
                if matches!(r, Poll::Ready(None))
                    || (matches!(r, Poll::Ready(Some(Ok(_)))) && b.inner.is_end_stream())
                {
                    give_back(b.back.take());
                }
                r.map_err(BodyError::Stream)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            PooledBody::Raw(b) => b.is_end_stream(),
            PooledBody::Hyper(b) => b.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            PooledBody::Raw(b) => b.size_hint(),
            PooledBody::Hyper(b) => b.inner.size_hint(),
        }
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

fn classify(e: hyper::Error) -> SendError {
    // Our own body error (too large, client abort) travels inside the hyper error chain.
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = src {
        if let Some(b) = s.downcast_ref::<crate::body::BodyError>() {
            return match b {
                crate::body::BodyError::TooLarge(_) => SendError::BodyTooLarge,
                crate::body::BodyError::Stream(_) => SendError::ClientBody,
                crate::body::BodyError::Upstream(e) => SendError::Other(e.to_string()),
                crate::body::BodyError::Idle(d) => SendError::Other(format!("body idle for {d:?}")),
            };
        }
        src = s.source();
    }
    SendError::Other(e.to_string())
}

/// One request counted in a target's in-flight gauge for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a TLS handshake with an upstream failed, in words: rustls prints the reasons of its
/// verifiers (a wrong SPIFFE ID) in debug form.
fn tls_reason(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
            format!("invalid peer certificate: {}", o.0)
        }
        _ => e.to_string(),
    }
}
