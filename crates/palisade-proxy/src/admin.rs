//! The admin listener: `/healthz` (the process is alive), `/readyz` (serving, not draining),
//! `/metrics` (Prometheus text), `/quotas[?key=K]` (quota usage). Never served on a public
//! listener.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{full, ProxyBody};
use crate::Shared;

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `key` from a query string, percent-decoded.
fn query_key(q: Option<&str>) -> Option<String> {
    let v = q?.split('&').find_map(|kv| kv.strip_prefix("key="))?;
    palisade_core::uri::decode_form(v)
}

async fn quotas(shared: &Shared, key: Option<&str>) -> String {
    let rt = shared.runtime.load_full();
    let mut out = Vec::new();
    for route in &rt.config.routes {
        for e in &route.policies {
            if let Some(mut v) = e.policy.usage(key).await {
                if let Some(m) = v.as_object_mut() {
                    m.insert("route".into(), (*route.name).into());
                }
                out.push(v);
            }
        }
    }
    serde_json::json!({ "quotas": out }).to_string()
}

async fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    const JSON: &str = "application/json";
    match req.uri().path() {
        "/inventory" => {
            let rt = shared.runtime.load_full();
            let mut out = Vec::new();
            for route in &rt.config.routes {
                for e in &route.policies {
                    if let Some(mut v) = e.policy.inventory() {
                        if let Some(m) = v.as_object_mut() {
                            m.insert("route".into(), (*route.name).into());
                        }
                        out.push(v);
                    }
                }
            }
            reply(StatusCode::OK, JSON, serde_json::json!({ "inventory": out }).to_string())
        }
        "/quotas" => {
            let key = query_key(req.uri().query());
            if req.uri().query().is_some_and(|q| q.contains("key=")) && key.is_none() {
                return reply(StatusCode::BAD_REQUEST, JSON, "{\"status\":400,\"title\":\"key is not valid percent-encoded UTF-8\"}".into());
            }
            reply(StatusCode::OK, JSON, quotas(shared, key.as_deref()).await)
        }
        "/healthz" => reply(StatusCode::OK, JSON, "{\"status\":\"ok\"}".into()),
        "/readyz" => {
            if shared.draining.load(Ordering::Relaxed) {
                reply(StatusCode::SERVICE_UNAVAILABLE, JSON, "{\"status\":\"draining\"}".into())
            } else {
                reply(StatusCode::OK, JSON, "{\"status\":\"ready\"}".into())
            }
        }
        "/metrics" => {
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
                "# HELP palisade_requests_in_flight Requests being handled now.\n# TYPE palisade_requests_in_flight gauge\npalisade_requests_in_flight {}\n# HELP palisade_access_log_dropped_total Access-log records dropped because the writer fell behind.\n# TYPE palisade_access_log_dropped_total counter\npalisade_access_log_dropped_total {}\n",
                shared.in_flight.load(Ordering::Relaxed),
                crate::access_log::DROPPED.load(Ordering::Relaxed)
            ));
            palisade_core::metrics::render(&mut text);
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text)
        }
        _ => reply(StatusCode::NOT_FOUND, JSON, "{\"status\":404,\"title\":\"Not found\",\"paths\":[\"/healthz\",\"/readyz\",\"/metrics\",\"/quotas\",\"/inventory\"]}".into()),
    }
}

/// Serves the admin API until shutdown.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((tcp, _)) = r else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(&shared, &req).await) }
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
