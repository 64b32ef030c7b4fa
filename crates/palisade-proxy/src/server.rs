//! Listeners: accept loops with a connection cap, TLS termination, the hyper server with the
//! hardening limits, idle timeouts, and graceful shutdown of every connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use palisade_config::Limits;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::body::ClientBody;
use crate::h1server;
use crate::handler::{handle, ConnInfo};
use crate::Shared;

/// Which protocols a connection may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.x only (TLS with ALPN `http/1.1` or none; a listener without HTTP/2).
    H1,
    /// HTTP/2 only (TLS with ALPN `h2`).
    H2,
    /// Plain HTTP/1.1, or h2c with prior knowledge.
    Auto,
}

/// Builds the HTTP server with the configured limits.
pub fn http_builder(limits: &Limits, proto: Proto) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(50))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    match proto {
        Proto::Auto => b,
        Proto::H1 => b.http1_only(),
        Proto::H2 => b.http2_only(),
    }
}

struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections until shutdown.
pub async fn accept_loop(
    listener: TcpListener,
    idx: usize,
    name: Arc<str>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (tcp, peer) = match r {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(listener = %name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                shared.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
                let max = shared.runtime.load().config.limits.max_connections;
                if shared.metrics.connections_open.fetch_add(1, Ordering::Relaxed) as usize >= max {
                    shared.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
                    shared.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                    drop(tcp);
                    continue;
                }
                let guard = OpenGuard(shared.clone());
                tokio::spawn(serve_conn(tcp, peer, idx, name.clone(), shared.clone(), shutdown.clone(), guard));
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Per-connection activity, without reading the clock per request: the idle check counts
/// the ticks during which nothing was in flight and no request finished.
struct Activity {
    active: AtomicUsize,
    finished: AtomicU64,
    /// Requests whose client went away before the answer (an HTTP/2 RST_STREAM, a closed
    /// connection): a flood of them is the "rapid reset" attack.
    cancelled: AtomicU64,
    /// Set when the connection must be dropped at once.
    abort: tokio::sync::Notify,
}

/// A connection whose clients cancelled more than this many requests, and more than they let
/// finish, is closed: each cancelled request still costs routing, policies and an upstream
/// request, so an unbounded stream of them amplifies the attacker's work.
const MAX_CANCELLED_PER_CONNECTION: u64 = 100;

/// Counts a request as finished, or as cancelled when dropped before the answer.
struct RequestGuard {
    act: Arc<Activity>,
    done: bool,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.act.active.fetch_sub(1, Ordering::Relaxed);
        if self.done {
            self.act.finished.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let cancelled = self.act.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        if cancelled > MAX_CANCELLED_PER_CONNECTION
            && cancelled > self.act.finished.load(Ordering::Relaxed)
        {
            self.act.abort.notify_one();
        }
    }
}

/// Serves one connection until it ends, or until the drain deadline has passed on shutdown:
/// then the connection and its requests are dropped here (each logged as cut), before the
/// open-connection guard goes.
async fn serve_conn(
    tcp: TcpStream,
    peer: SocketAddr,
    idx: usize,
    name: Arc<str>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _guard: OpenGuard,
) {
    let mut stop = shared.hard_stop.subscribe();
    let conn = serve_conn_inner(tcp, peer, idx, name, shared, shutdown);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        () = &mut conn => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

async fn serve_conn_inner(
    tcp: TcpStream,
    peer: SocketAddr,
    idx: usize,
    name: Arc<str>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let rt = shared.runtime.load_full();
    let Some(listener) = rt.config.listeners.get(idx) else {
        return;
    };
    let limits = rt.config.limits.clone();
    let http2 = listener.http2;
    let fast = rt.config.http1_fast_path;
    let tls = listener.tls.clone();
    drop(rt);
    let info = ConnInfo::new(peer, tls.is_some(), idx, name);
    match tls {
        // boxed: the handshake and a TLS stream are large; a plain connection's task stays
        // small (~0.5 KiB rather than ~10 KiB, which spawning copied several times over)
        Some(cfg) => Box::pin(serve_tls(tcp, cfg, info, &limits, fast, shared, shutdown)).await,
        None => {
            let proto = if http2 { Proto::Auto } else { Proto::H1 };
            serve_h1(tcp, Arc::new(info), shared, shutdown, &limits, proto, fast).await
        }
    }
}

/// Completes the TLS handshake (its client certificate goes into `info`), then serves the
/// connection with the protocol ALPN chose, and only that one: a connection that
/// negotiated `h2` is never read as HTTP/1.1, nor one that negotiated `http/1.1` as h2.
async fn serve_tls(
    tcp: TcpStream,
    cfg: Arc<tokio_rustls::rustls::ServerConfig>,
    mut info: ConnInfo,
    limits: &Limits,
    fast: bool,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let peer = info.peer;
    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            info.client_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| palisade_identity::mtls::parse_client_cert(der))
                .map(Arc::new);
            let info = Arc::new(info);
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                serve_io(
                    TokioIo::new(stream),
                    info,
                    shared,
                    shutdown,
                    limits,
                    Proto::H2,
                )
                .await;
            } else {
                serve_h1(stream, info, shared, shutdown, limits, Proto::H1, fast).await;
            }
            return;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
    shared
        .metrics
        .tls_handshake_failures
        .fetch_add(1, Ordering::Relaxed);
}

/// Serves an HTTP/1 connection (or a plain one that may turn out to be h2c): the fast path
/// first, hyper from the first request the fast path leaves to it.
async fn serve_h1<I>(
    io: I,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    limits: &Limits,
    proto: Proto,
    fast: bool,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if !fast {
        let io = TokioIo::new(io);
        return Box::pin(serve_io(io, info, shared, shutdown, limits, proto)).await;
    }
    match Box::pin(h1server::serve(io, &info, &shared, &shutdown, limits)).await {
        h1server::Exit::Closed => {}
        h1server::Exit::Handover(prefix, io) => {
            let io = TokioIo::new(h1server::Prefixed::new(prefix, io));
            // boxed: hyper's connection is large and rare here; without the box every
            // plain connection's task would carry its room (and copy it when spawned)
            Box::pin(serve_io(io, info, shared, shutdown, limits, proto)).await;
        }
    }
}

async fn serve_io<I>(
    io: TokioIo<I>,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    limits: &Limits,
    proto: Proto,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (peer, shared_metrics) = (info.peer, shared.metrics.clone());
    let activity = Arc::new(Activity {
        active: AtomicUsize::new(0),
        finished: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        abort: tokio::sync::Notify::new(),
    });
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (shared, info, act) = (shared.clone(), info.clone(), act.clone());
        async move {
            act.active.fetch_add(1, Ordering::Relaxed);
            let mut guard = RequestGuard { act, done: false };
            let res = Box::pin(handle(shared, info, req.map(ClientBody::Hyper))).await;
            guard.done = true;
            Ok::<_, Infallible>(res)
        }
    });
    let idle = limits.idle_timeout;
    let watch = (&*activity, &mut shutdown, idle, peer, &shared_metrics);
    match proto {
        // upgrades (a WebSocket handshake a `websocket` policy accepted) only where HTTP/1.1
        // is spoken; hyper-util's upgradeable connection always sniffs the version, so the
        // connections whose version ALPN (or the listener) fixed are served as fixed
        Proto::Auto => {
            let builder = http_builder(limits, proto);
            let conn = builder.serve_connection_with_upgrades(io, svc);
            drive(conn, |c| c.graceful_shutdown(), watch).await;
        }
        Proto::H2 => {
            let builder = http_builder(limits, proto);
            let conn = builder.serve_connection(io, svc);
            drive(conn, |c| c.graceful_shutdown(), watch).await;
        }
        Proto::H1 => {
            let conn = http1_builder(limits)
                .serve_connection(io, svc)
                .with_upgrades();
            drive(conn, |c| c.graceful_shutdown(), watch).await;
        }
    }
}

/// HTTP/1.1 alone, with the limits [`http_builder`] sets for it.
fn http1_builder(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    b
}

/// Serves a connection to its end: closes it gracefully at shutdown, when it has been idle
/// for `idle`, and drops it when its client cancels most of its requests.
async fn drive<C, E>(
    conn: C,
    graceful: fn(std::pin::Pin<&mut C>),
    (activity, shutdown, idle, peer, shared_metrics): (
        &Activity,
        &mut watch::Receiver<bool>,
        Duration,
        SocketAddr,
        &Arc<crate::metrics::Metrics>,
    ),
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    const IDLE_TICKS: u32 = 4;
    let mut tick = tokio::time::interval((idle / IDLE_TICKS).max(Duration::from_millis(100)));
    tick.tick().await; // the first tick is immediate
    let mut quiet_ticks = 0u32;
    let mut last_finished = 0u64;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = *shutdown.borrow();
    if closing {
        graceful(conn.as_mut());
    }
    loop {
        tokio::select! {
                        biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = activity.abort.notified() => {
                shared_metrics.connections_aborted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer, cancelled = activity.cancelled.load(Ordering::Relaxed), "closing a connection whose client cancels most of its requests (rapid reset)");
                return;
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                graceful(conn.as_mut());
            }
            _ = tick.tick(), if !closing => {
                let finished = activity.finished.load(Ordering::Relaxed);
                if activity.active.load(Ordering::Relaxed) == 0 && finished == last_finished {
                    quiet_ticks += 1;
                } else {
                    quiet_ticks = 0;
                }
                last_finished = finished;
                if quiet_ticks >= IDLE_TICKS {
                    closing = true;
                    graceful(conn.as_mut());
                }
            }
        }
    }
}
