//! The admin API's calls (`/api/v1/…`, JSON; documented in docs/admin-api.md). Reads are open
//! to viewers and operators; changes to operators only. Errors are problem+json with an
//! `admin.*` code.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use palisade_config::admin::AdminRole;
use palisade_config::{HostMatch, PathMatch, Segment};
use serde_json::{json, Value};

use super::auth::Who;
use super::{changes, problem, reply_json};
use crate::body::ProxyBody;
use crate::events::Filter;
use crate::{ModeOverride, Shared};

/// This API's OpenAPI description (`palisade audit` scores it; the e2e suite checks it).
const OPENAPI: &str = include_str!("openapi.json");

/// The largest config an operator may apply.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;
/// The most events one call returns.
const MAX_LIMIT: usize = 1000;

/// A call, parsed: what the dispatcher gives each endpoint.
pub struct Call<'a> {
    pub shared: &'a Arc<Shared>,
    pub who: &'a Who,
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub last_event_id: Option<u64>,
    pub body: Bytes,
}

pub(super) fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((
                palisade_core::uri::decode_form(k)?,
                palisade_core::uri::decode_form(v)?,
            ))
        })
        .collect()
}

fn rfc3339_ms(s: &str) -> Option<u64> {
    let secs = palisade_identity::consumers::parse_instant(s)?;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// Reads the event filters of a query string; a bad value is an error naming it.
pub fn filter_of(q: Option<&str>) -> Result<(Filter, usize), String> {
    let mut f = Filter::default();
    let mut limit = 100;
    for (k, v) in query_pairs(q) {
        match k.as_str() {
            "route" => f.route = Some(v),
            "consumer" => f.consumer = Some(v),
            "client" => {
                f.client = Some(
                    v.parse::<IpAddr>()
                        .map_err(|_| format!("client: `{v}` is not an IP address"))?,
                )
            }
            "code" => f.code = Some(v),
            "mode" if v == "enforce" || v == "monitor" => f.mode = Some(v),
            "mode" => return Err(format!("mode: `{v}`: use enforce or monitor")),
            "after" => {
                f.after = Some(
                    v.parse()
                        .map_err(|_| format!("after: `{v}` is not an event id"))?,
                )
            }
            "from" => {
                f.from_ms = Some(rfc3339_ms(&v).ok_or(format!("from: `{v}` is not RFC 3339"))?)
            }
            "to" => f.to_ms = Some(rfc3339_ms(&v).ok_or(format!("to: `{v}` is not RFC 3339"))?),
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or(format!("limit: between 1 and {MAX_LIMIT}"))?
            }
            other => {
                return Err(format!(
                    "`{other}` is not a filter: route, consumer, client, code, mode, after, from, to, limit"
                ))
            }
        }
    }
    Ok((f, limit))
}

fn path_pattern(p: &PathMatch) -> String {
    match p {
        PathMatch::Any => "/**".into(),
        PathMatch::Exact(s) => s.clone(),
        PathMatch::Prefix(s) => format!("{}/**", s.trim_end_matches('/')),
        PathMatch::Template(segs) => {
            let mut out = String::new();
            for s in segs {
                out.push('/');
                match s {
                    Segment::Literal(l) => out.push_str(l),
                    Segment::Param(n) => {
                        out.push('{');
                        out.push_str(n);
                        out.push('}');
                    }
                }
            }
            if out.is_empty() {
                out.push('/');
            }
            out
        }
    }
}

fn host_pattern(h: &HostMatch) -> String {
    match h {
        HostMatch::Exact(s) => s.clone(),
        HostMatch::Wildcard(s) => format!("*{s}"),
    }
}

fn routes(shared: &Shared) -> Value {
    let rt = shared.runtime.load_full();
    let upstreams = &rt.config.upstreams;
    let out: Vec<Value> = rt
        .config
        .routes
        .iter()
        .enumerate()
        .map(|(ri, r)| {
            let modes = rt.modes.get(ri);
            let policies: Vec<Value> = r
                .policies
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let o = modes.and_then(|m| m.get(i));
                    let effective = crate::effective_mode(o, e.mode);
                    json!({
                        "index": i,
                        "type": e.policy.kind(),
                        "mode": effective.to_string(),
                        "configured_mode": e.mode.to_string(),
                        "overridden": o.is_some_and(|a| a.load(Ordering::Relaxed) != ModeOverride::Config as u8),
                    })
                })
                .collect();
            json!({
                "position": ri,
                "name": &*r.name,
                "host": r.host.as_ref().map(host_pattern),
                "path": path_pattern(&r.path),
                "methods": r.methods.as_ref().map(|ms| ms.iter().map(Method::as_str).collect::<Vec<_>>()),
                "upstream": upstreams.get(r.upstream).map(|u| u.name.clone()),
                "strip_prefix": r.strip_prefix,
                "max_body_bytes": r.max_body_bytes,
                "policies": policies,
            })
        })
        .collect();
    json!({ "routes": out })
}

fn upstreams(shared: &Shared) -> Value {
    let rt = shared.runtime.load();
    let out: Vec<Value> = rt
        .pools
        .iter()
        .map(|p| {
            let targets: Vec<Value> = p
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    json!({
                        "target": t.base,
                        "healthy": p.available(i),
                        "in_flight": t.in_flight.load(Ordering::Relaxed),
                        "ejections": t.ejections.load(Ordering::Relaxed),
                    })
                })
                .collect();
            json!({ "name": p.cfg.name, "targets": targets })
        })
        .collect();
    json!({ "upstreams": out })
}

/// Totals, refusals by code per minute over the last hour, and the top routes and clients.
fn overview(shared: &Shared) -> Value {
    let (requests, errors) = shared.metrics.totals();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let hour = Filter {
        from_ms: Some(now_ms.saturating_sub(3_600_000)),
        ..Filter::default()
    };
    let events = shared.events.all(&hour);
    let first_minute = now_ms / 60_000 - 59;
    let mut timeline: BTreeMap<&str, [u64; 60]> = BTreeMap::new();
    let mut by_code: BTreeMap<&str, u64> = BTreeMap::new();
    let mut routes: BTreeMap<String, u64> = BTreeMap::new();
    let mut clients: BTreeMap<IpAddr, u64> = BTreeMap::new();
    let (mut refused, mut monitored) = (0u64, 0u64);
    for e in &events {
        let codes: Vec<&str> = match &e.code {
            Some(c) => vec![c.as_str()],
            None => e.monitored.iter().map(String::as_str).collect(),
        };
        if e.code.is_some() {
            refused += 1;
        } else {
            monitored += 1;
        }
        let minute = (e.unix_ms / 60_000).saturating_sub(first_minute);
        for c in codes {
            *by_code.entry(c).or_default() += 1;
            if let Some(slot) = timeline
                .entry(c)
                .or_insert([0; 60])
                .get_mut(usize::try_from(minute).unwrap_or(usize::MAX))
            {
                *slot += 1;
            }
        }
        *routes
            .entry(e.route.as_deref().unwrap_or("(no route)").to_string())
            .or_default() += 1;
        *clients.entry(e.client).or_default() += 1;
    }
    let top = |m: BTreeMap<String, u64>| -> Vec<Value> {
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter()
            .take(10)
            .map(|(k, n)| json!({ "name": k, "count": n }))
            .collect()
    };
    json!({
        "requests_total": requests,
        "errors_total": errors,
        "requests_in_flight": shared.in_flight.load(Ordering::Relaxed),
        "events_total": shared.events.total.load(Ordering::Relaxed),
        "last_hour": {
            "refused": refused,
            "would_refuse": monitored,
            "by_code": by_code.iter().map(|(c, n)| json!({"code": c, "count": n})).collect::<Vec<_>>(),
            "first_minute_ms": first_minute * 60_000,
            "timeline": timeline.iter().map(|(c, t)| json!({"code": c, "per_minute": t.to_vec()})).collect::<Vec<_>>(),
            "top_routes": top(routes),
            "top_clients": top(clients.into_iter().map(|(k, n)| (k.to_string(), n)).collect()),
        }
    })
}

async fn quotas(shared: &Shared, key: Option<&str>) -> Value {
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
    json!({ "quotas": out })
}

fn inventory(shared: &Shared) -> Value {
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
    json!({ "inventory": out })
}

fn config_view(shared: &Shared, who: &Who) -> Value {
    let rt = shared.runtime.load();
    let c = &rt.config;
    let text = std::fs::read_to_string(&c.source).ok();
    let sha256 = text.as_ref().map(|t| {
        palisade_core::hex::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes()).as_ref(),
        )
    });
    let warnings: Vec<Value> = c.warnings.iter().map(config_problem).collect();
    let mut v = json!({
        "file": c.source.display().to_string(),
        "sha256": sha256,
        "listeners": c.listeners.len(),
        "upstreams": c.upstreams.len(),
        "routes": c.routes.len(),
        "warnings": warnings,
        "reloads_ok": shared.metrics.reloads_ok.load(Ordering::Relaxed),
        "reloads_failed": shared.metrics.reloads_failed.load(Ordering::Relaxed),
    });
    // the text names secrets only by reference (${env:…}, ${file:…}); still, only those who
    // may change it read it
    if who.role == AdminRole::Operator {
        if let (Some(m), Some(t)) = (v.as_object_mut(), text) {
            m.insert("text".into(), t.into());
        }
    }
    v
}

pub(super) fn config_problem(e: &palisade_config::ConfigError) -> Value {
    json!({ "line": e.line, "path": e.path, "message": e.message })
}

/// Answers one API call.
pub async fn answer(call: Call<'_>) -> Response<ProxyBody> {
    let shared = call.shared;
    let rest = call.path.strip_prefix("/api/v1").unwrap_or(call.path);
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let get = *call.method == Method::GET;
    let post = *call.method == Method::POST;
    match (segs.as_slice(), get, post) {
        (["whoami"], true, _) => reply_json(
            StatusCode::OK,
            json!({ "name": call.who.name, "role": call.who.role.as_str(), "csrf": call.who.csrf, "expires_in": call.who.expires_in }),
        ),
        (["overview"], true, _) => reply_json(StatusCode::OK, overview(shared)),
        (["routes"], true, _) => reply_json(StatusCode::OK, routes(shared)),
        (["consumers"], true, _) => reply_json(
            StatusCode::OK,
            json!({ "consumers": shared.runtime.load().config.consumers.summary() }),
        ),
        (["upstreams"], true, _) => reply_json(StatusCode::OK, upstreams(shared)),
        (["inventory"], true, _) => reply_json(StatusCode::OK, inventory(shared)),
        (["findings"], true, _) => reply_json(
            StatusCode::OK,
            super::findings::view(&shared.runtime.load().config.admin_api),
        ),
        (["quotas"], true, _) => {
            let pairs = query_pairs(call.query);
            let key = pairs
                .iter()
                .find(|(k, _)| k == "key")
                .map(|(_, v)| v.as_str());
            if call.query.is_some_and(|q| q.contains("key=")) && key.is_none() {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "admin.bad_request",
                    "Bad key",
                    "key is not valid percent-encoded UTF-8",
                );
            }
            reply_json(StatusCode::OK, quotas(shared, key).await)
        }
        (["events"], true, _) => match filter_of(call.query) {
            Ok((f, limit)) => {
                let events = shared.events.query(&f, limit);
                reply_json(
                    StatusCode::OK,
                    json!({ "events": events, "total": shared.events.total.load(Ordering::Relaxed) }),
                )
            }
            Err(e) => problem(
                StatusCode::BAD_REQUEST,
                "admin.bad_request",
                "Bad filter",
                &e,
            ),
        },
        (["events", "export"], true, _) => match filter_of(call.query) {
            // every kept event that passes, oldest first, one JSON object per line
            Ok((f, _)) => {
                let mut out = String::new();
                for e in shared.events.all(&f) {
                    if let Ok(line) = serde_json::to_string(&*e) {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
                super::reply(StatusCode::OK, "application/x-ndjson", out)
            }
            Err(e) => problem(
                StatusCode::BAD_REQUEST,
                "admin.bad_request",
                "Bad filter",
                &e,
            ),
        },
        (["events", "stream"], true, _) => {
            super::stream::events(shared, call.query, call.last_event_id)
        }
        (["events", id], true, _) => {
            match id.parse::<u64>().ok().and_then(|i| shared.events.get(i)) {
                Some(e) => reply_json(StatusCode::OK, json!(e)),
                None => problem(
                    StatusCode::NOT_FOUND,
                    "admin.not_found",
                    "No such event",
                    "it never was, or it left the store (admin.events keeps the newest)",
                ),
            }
        }
        (["openapi.json"], true, _) => super::reply(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(OPENAPI.as_bytes()),
        ),
        (["config"], true, _) => reply_json(StatusCode::OK, config_view(shared, call.who)),
        (["config"], _, true) => changes::apply_config(&call).await,
        (["config", "rollback"], _, true) => changes::rollback(&call).await,
        (["fleet"], true, _) => crate::fleet::view(shared).await,
        (["routes", route, "policies", index, "mode"], _, true) => {
            changes::set_mode(&call, route, index)
        }
        (["revocations"], true, _) => changes::revocations(),
        (["revocations"], _, true) => changes::revoke(&call).await,
        (["revocations", "lift"], _, true) => changes::lift(&call).await,
        (["quotas", "reset"], _, true) => changes::reset_quota(&call).await,
        _ => {
            let mut r = problem(
                StatusCode::NOT_FOUND,
                "admin.not_found",
                "No such call",
                "see docs/admin-api.md (GET /api/v1/openapi.json describes them)",
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
    }
}
