//! Security events to an OpenTelemetry collector, as OTLP/HTTP logs (JSON encoding,
//! `POST /v1/logs`): one log record per event, with the HTTP semantic-convention attributes
//! (`http.request.method`, `url.path`, `http.response.status_code`, `client.address`) and
//! Palisade's (`palisade.code`, `palisade.route`, …). The collector is an upstream of the
//! config (`admin.otlp.upstream`), so its TLS, CA, timeouts and health are those of any
//! upstream. Events are batched (at most [`BATCH`], or what came within [`LINGER`]); a batch
//! the collector refuses or cannot take is retried [`ATTEMPTS`] times with a growing pause,
//! then counted as dropped and logged, never blocking the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::events::Event;
use crate::Shared;

/// The most events in one export.
const BATCH: usize = 256;
/// How long a batch waits for more events after its first.
const LINGER: Duration = Duration::from_millis(200);
/// Tries per batch.
const ATTEMPTS: u32 = 4;

/// Events sent, and events dropped (the collector did not take them, or the exporter fell
/// behind the live stream).
pub static SENT: AtomicU64 = AtomicU64::new(0);
/// See [`SENT`].
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

fn attr(key: &str, v: Value) -> Value {
    json!({ "key": key, "value": v })
}

fn text(s: &str) -> Value {
    json!({ "stringValue": s })
}

/// One event as an OTLP log record.
fn record(e: &Event) -> Value {
    let (severity, name) = match e.kind.as_str() {
        "failure" => (17, "ERROR"),
        "refusal" => (13, "WARN"),
        _ => (9, "INFO"),
    };
    let code = e
        .code
        .clone()
        .or_else(|| e.monitored.first().cloned())
        .unwrap_or_default();
    let mut attrs = vec![
        attr("palisade.event.id", json!({ "intValue": e.id.to_string() })),
        attr("palisade.kind", text(&e.kind)),
        attr("palisade.mode", text(&e.mode)),
        attr("palisade.code", text(&code)),
        attr("palisade.request_id", text(&e.request_id)),
        attr("http.request.method", text(&e.method)),
        attr("url.path", text(&e.path)),
        attr(
            "http.response.status_code",
            json!({ "intValue": e.status.to_string() }),
        ),
        attr("client.address", text(&e.client.to_string())),
    ];
    let optional = [
        ("palisade.route", e.route.as_deref()),
        ("palisade.consumer", e.consumer.as_deref()),
        ("palisade.detail", e.detail.as_deref()),
        ("palisade.input.location", e.location.as_deref()),
        ("palisade.input.excerpt", e.excerpt.as_deref()),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            attrs.push(attr(k, text(v)));
        }
    }
    if !e.monitored.is_empty() {
        let values: Vec<Value> = e.monitored.iter().map(|c| text(c)).collect();
        attrs.push(attr(
            "palisade.monitored",
            json!({ "arrayValue": { "values": values } }),
        ));
    }
    let nanos = (u128::from(e.unix_ms) * 1_000_000).to_string();
    json!({
        "timeUnixNano": nanos,
        "observedTimeUnixNano": nanos,
        "severityNumber": severity,
        "severityText": name,
        "eventName": "palisade.security",
        "body": text(&format!("{code}: {}", e.title.as_deref().unwrap_or(""))),
        "attributes": attrs,
    })
}

/// An `ExportLogsServiceRequest` of `events`.
pub fn request(service: &str, events: &[Arc<Event>]) -> Value {
    let records: Vec<Value> = events.iter().map(|e| record(e)).collect();
    json!({"resourceLogs": [{
        "resource": {"attributes": [attr("service.name", text(service))]},
        "scopeLogs": [{
            "scope": {"name": "palisade.security", "version": env!("CARGO_PKG_VERSION")},
            "logRecords": records,
        }],
    }]})
}

/// Sends one batch to the collector of the config now serving; whether it took it (`None`:
/// the config exports nothing).
async fn send(shared: &Shared, batch: &[Arc<Event>]) -> Option<Result<(), String>> {
    let rt = shared.runtime.load_full();
    let o = rt.config.admin_api.otlp.as_ref()?;
    Some(send_to(&rt, o, batch).await)
}

async fn send_to(
    rt: &crate::Runtime,
    o: &palisade_config::admin::Otlp,
    batch: &[Arc<Event>],
) -> Result<(), String> {
    let Some(pool) = rt.pools.iter().find(|p| p.cfg.name == o.upstream) else {
        return Err(format!("no upstream `{}`", o.upstream));
    };
    let Some(ti) = pool.pick(None) else {
        return Err(format!("no healthy target in upstream `{}`", o.upstream));
    };
    let body = request(&o.service_name, batch).to_string();
    let mut req = Request::new(crate::body::full(body));
    *req.method_mut() = Method::POST;
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let res = pool
        .send(ti, req, o.path.clone(), None)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = res.status();
    pool.report(ti, !status.is_server_error());
    let _ = res.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the collector answered {status}"))
    }
}

/// Exports events until the process ends, to the collector of whichever config is serving
/// (none: the events are passed over; a reload may add or remove `admin.otlp`).
pub async fn export(shared: Arc<Shared>) {
    let mut live = shared.events.subscribe();
    let mut closing = shared.admin_closing.subscribe();
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let first = tokio::select! {
            r = live.recv() => r,
            _ = closing.changed() => return,
        };
        let mut batch = match first {
            Ok(e) => vec![e],
            Err(broadcast::error::RecvError::Lagged(n)) => {
                DROPPED.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let until = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(until, live.recv()).await {
                Ok(Ok(e)) => batch.push(e),
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    DROPPED.fetch_add(n, Ordering::Relaxed);
                }
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
        }
        let mut outcome = None;
        for attempt in 0..ATTEMPTS {
            outcome = send(&shared, &batch).await;
            if !matches!(outcome, Some(Err(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        let Some(outcome) = outcome else {
            // this config exports nothing
            continue;
        };
        match outcome {
            Ok(()) => {
                SENT.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(why) => {
                DROPPED.fetch_add(batch.len() as u64, Ordering::Relaxed);
                // at most one warning a minute: a dead collector must not flood the log
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(events = batch.len(), error = %why, "security events not exported to the OTLP collector (counted in palisade_events_export_dropped_total)");
                    last_warning = Some(tokio::time::Instant::now());
                }
            }
        }
    }
}
