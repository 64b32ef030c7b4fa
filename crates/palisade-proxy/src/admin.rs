//! The admin listener: `/healthz` (the process is alive), `/readyz` (serving, not draining),
//! `/metrics` (Prometheus text). Never served on a public listener.

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

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    const JSON: &str = "application/json";
    match req.uri().path() {
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
                    ups.push((p.cfg.name.clone(), t.base.clone(), p.available(i), t.in_flight.load(Ordering::Relaxed) as u64));
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
        _ => reply(StatusCode::NOT_FOUND, JSON, "{\"status\":404,\"title\":\"Not found\",\"paths\":[\"/healthz\",\"/readyz\",\"/metrics\"]}".into()),
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
                        let res = answer(&shared, &req);
                        async move { Ok::<_, Infallible>(res) }
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
