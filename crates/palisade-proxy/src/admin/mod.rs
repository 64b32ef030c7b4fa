//! The admin listener: `/healthz` (the process is alive), `/readyz` (serving, not draining)
//! and `/metrics` (Prometheus text) for orchestrators and scrapers, open; the admin API
//! (`/api/v1/…`, see [`api`]) and the web console (`/console/`, see [`console`]) for the
//! holders of `admin.tokens`. Never served on a public listener. Every API call, login and
//! logout is written to the security log with who made it.

mod api;
mod auth;
mod changes;
mod console;
mod findings;
pub(crate) mod keep;
pub(crate) mod otlp;
mod stream;

pub(crate) use changes::{install, new_commands};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::Sessions;

use crate::body::{full, ProxyBody};
use crate::Shared;

pub(crate) fn reply(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<ProxyBody> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub(crate) fn reply_json(status: StatusCode, v: Value) -> Response<ProxyBody> {
    reply(status, "application/json", v.to_string())
}

/// An RFC 9457 problem with an `admin.*` code.
pub(crate) fn problem(
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: &str,
) -> Response<ProxyBody> {
    let v = serde_json::json!({
        "type": format!("https://palisade.dev/problems/{code}"),
        "title": title,
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    reply(status, "application/problem+json", v.to_string())
}

fn metrics(shared: &Shared) -> Response<ProxyBody> {
    let rt = shared.runtime.load();
    let mut ups = Vec::new();
    for p in &rt.pools {
        for (i, t) in p.targets.iter().enumerate() {
            ups.push(crate::metrics::TargetView {
                upstream: p.cfg.name.clone(),
                target: t.base.clone(),
                healthy: p.available(i),
                in_flight: t.in_flight.load(Ordering::Relaxed) as u64,
                ejections: t.ejections.load(Ordering::Relaxed),
            });
        }
    }
    let mut text = shared.metrics.render(&ups);
    text.push_str(&format!(
        "# HELP palisade_requests_in_flight Requests being handled now.\n# TYPE palisade_requests_in_flight gauge\npalisade_requests_in_flight {}\n# HELP palisade_access_log_dropped_total Access-log records dropped because the writer fell behind.\n# TYPE palisade_access_log_dropped_total counter\npalisade_access_log_dropped_total {}\n# HELP palisade_events_total Security events recorded.\n# TYPE palisade_events_total counter\npalisade_events_total {}\n# HELP palisade_events_exported_total Security events the OTLP collector took.\n# TYPE palisade_events_exported_total counter\npalisade_events_exported_total {}\n# HELP palisade_events_export_dropped_total Security events not exported (the collector did not take them, or the exporter fell behind).\n# TYPE palisade_events_export_dropped_total counter\npalisade_events_export_dropped_total {}\n",
        shared.in_flight.load(Ordering::Relaxed),
        crate::access_log::DROPPED.load(Ordering::Relaxed),
        shared.events.total.load(Ordering::Relaxed),
        otlp::SENT.load(Ordering::Relaxed),
        otlp::DROPPED.load(Ordering::Relaxed),
    ));
    crate::certs::render(&mut text, &rt.config.certificates);
    {
        use crate::handler::{WS_CLOSED_BY_POLICY, WS_MESSAGES, WS_OPEN, WS_SESSIONS};
        for (name, help, kind, v) in [
            (
                "palisade_websocket_sessions_total",
                "WebSocket sessions opened.",
                "counter",
                &WS_SESSIONS,
            ),
            (
                "palisade_websocket_sessions_open",
                "WebSocket sessions open now.",
                "gauge",
                &WS_OPEN,
            ),
            (
                "palisade_websocket_messages_total",
                "WebSocket messages relayed, both ways.",
                "counter",
                &WS_MESSAGES,
            ),
            (
                "palisade_websocket_closed_by_policy_total",
                "WebSocket sessions closed by a limit or a message check.",
                "counter",
                &WS_CLOSED_BY_POLICY,
            ),
        ] {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
    }
    palisade_core::metrics::render(&mut text);
    reply(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        text,
    )
}

/// Writes an admin call to the security log: who (or nobody), what, and the answer.
fn audit(
    shared: &Shared,
    peer: SocketAddr,
    who: Option<&auth::Who>,
    method: &Method,
    path: &str,
    status: StatusCode,
) {
    let mut m = serde_json::Map::new();
    m.insert("client".into(), peer.ip().to_string().into());
    m.insert("method".into(), method.as_str().into());
    m.insert("path".into(), path.into());
    m.insert("status".into(), status.as_u16().into());
    if let Some(w) = who {
        m.insert("admin".into(), w.name.clone().into());
        m.insert("role".into(), w.role.as_str().into());
    }
    shared.security_log.log("admin", m);
}

fn denied(d: auth::Denied) -> Response<ProxyBody> {
    match d {
        auth::Denied::Unauthenticated(why) => {
            let mut r = problem(
                StatusCode::UNAUTHORIZED,
                "admin.unauthorized",
                "Admin credentials needed",
                why,
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"palisade-admin\""),
            );
            r
        }
        auth::Denied::Csrf(why) => problem(
            StatusCode::FORBIDDEN,
            "admin.csrf",
            "Cross-site request refused",
            why,
        ),
        auth::Denied::Throttled => {
            let mut r = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "admin.throttled",
                "Too many failed logins",
                "wait a minute before trying again",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            r
        }
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, Response<ProxyBody>> {
    match Limited::new(body, api::MAX_CONFIG_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "admin.bad_request",
            "Body too large",
            &format!("at most {} bytes", api::MAX_CONFIG_BYTES),
        )),
    }
}

async fn answer(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" => return reply(StatusCode::OK, "application/json", "{\"status\":\"ok\"}"),
        "/readyz" => {
            return if shared.draining.load(Ordering::Relaxed) {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    "{\"status\":\"draining\"}",
                )
            } else {
                reply(StatusCode::OK, "application/json", "{\"status\":\"ready\"}")
            }
        }
        "/metrics" => return metrics(shared),
        _ => {}
    }
    if path == "/console" || path.starts_with("/console/") || path == "/" {
        return console::answer(shared, peer, req).await;
    }
    // the calls of the first admin listener, kept as names of their /api/v1 successors
    let api_path =
        match path.as_str() {
            "/quotas" => "/api/v1/quotas".to_string(),
            "/inventory" => "/api/v1/inventory".to_string(),
            p if p.starts_with("/api/v1/") => p.to_string(),
            _ => return problem(
                StatusCode::NOT_FOUND,
                "admin.not_found",
                "Not found",
                "the admin listener serves /healthz, /readyz, /metrics, /api/v1/… and /console/",
            ),
        };
    let rt = shared.runtime.load_full();
    let method = req.method().clone();
    let who = match shared
        .sessions
        .authenticate(&rt.config.admin_api, &method, req.headers())
    {
        Ok(w) => w,
        Err(d) => {
            let r = denied(d);
            audit(shared, peer, None, &method, &path, r.status());
            return r;
        }
    };
    let query = req.uri().query().map(str::to_string);
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = if method == Method::POST {
        match read_body(req.into_body()).await {
            Ok(b) => b,
            Err(r) => {
                audit(shared, peer, Some(&who), &method, &path, r.status());
                return r;
            }
        }
    } else {
        Bytes::new()
    };
    let r = api::answer(api::Call {
        shared,
        who: &who,
        method: &method,
        path: &api_path,
        query: query.as_deref(),
        last_event_id,
        body,
    })
    .await;
    audit(shared, peer, Some(&who), &method, &path, r.status());
    r
}

/// Serves the admin listener until shutdown.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((tcp, peer)) = r else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(&shared, peer, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http1_only()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}
