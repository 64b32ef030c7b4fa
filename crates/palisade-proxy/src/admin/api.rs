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
use super::{problem, reply_json};
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

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
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
    let mut timeline: BTreeMap<&'static str, [u64; 60]> = BTreeMap::new();
    let mut by_code: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut routes: BTreeMap<String, u64> = BTreeMap::new();
    let mut clients: BTreeMap<IpAddr, u64> = BTreeMap::new();
    let (mut refused, mut monitored) = (0u64, 0u64);
    for e in &events {
        let codes: Vec<&'static str> = match e.code {
            Some(c) => vec![c],
            None => e.monitored.clone(),
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

fn config_problem(e: &palisade_config::ConfigError) -> Value {
    json!({ "line": e.line, "path": e.path, "message": e.message })
}

fn need_operator(who: &Who) -> Option<Response<ProxyBody>> {
    (who.role != AdminRole::Operator).then(|| {
        problem(
            StatusCode::FORBIDDEN,
            "admin.forbidden",
            "Operators only",
            &format!("{} is a viewer: this call changes the gateway", who.name),
        )
    })
}

/// Validates a config text and, unless it is a dry run, writes it over the config file and
/// applies it, atomically: the old config serves until the new one is built, and a new one
/// that cannot be applied leaves the file and the gateway as they were.
fn apply_config(call: &Call<'_>) -> Response<ProxyBody> {
    if let Some(r) = need_operator(call.who) {
        return r;
    }
    let dry_run = query_pairs(call.query)
        .iter()
        .any(|(k, v)| k == "dry_run" && (v == "true" || v == "1"));
    let Ok(text) = std::str::from_utf8(&call.body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "admin.bad_request",
            "Config is not UTF-8",
            "send the YAML text as the body",
        );
    };
    let shared = call.shared;
    let _one_at_a_time = shared.admin_apply.lock().unwrap_or_else(|p| p.into_inner());
    let source = shared.runtime.load().config.source.clone();
    let built = match palisade_config::load_str(&source, text) {
        Ok(c) => c,
        Err(errs) => {
            let problems: Vec<Value> = errs.0.iter().map(config_problem).collect();
            return super::reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                "application/problem+json",
                json!({
                    "type": "https://palisade.dev/problems/admin.invalid_config",
                    "title": "The config is not valid",
                    "status": 422,
                    "code": "admin.invalid_config",
                    "detail": format!("{} problem(s); nothing was changed", problems.len()),
                    "problems": problems,
                })
                .to_string(),
            );
        }
    };
    let warnings: Vec<Value> = built.warnings.iter().map(config_problem).collect();
    if dry_run {
        return reply_json(
            StatusCode::OK,
            json!({ "valid": true, "applied": false, "warnings": warnings }),
        );
    }
    let previous = std::fs::read_to_string(&source).ok();
    if let Err(e) = write_atomically(&source, text) {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "admin.write_failed",
            "The config file could not be written",
            &format!("{}: {e}; nothing was changed", source.display()),
        );
    }
    match shared.apply(built) {
        Ok(()) => {
            shared.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
            let mut m = crate::config_event("applied", &source, None);
            m.insert("by".into(), call.who.name.clone().into());
            shared.security_log.log("config", m);
            tracing::info!(file = %source.display(), by = %call.who.name, "configuration applied through the admin API");
            if let Some(p) = previous {
                *shared
                    .admin_previous
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(p);
            }
            reply_json(
                StatusCode::OK,
                json!({ "valid": true, "applied": true, "warnings": warnings }),
            )
        }
        Err(e) => {
            // the file goes back to what is serving
            if let Some(p) = previous {
                let _ = write_atomically(&source, &p);
            }
            shared
                .metrics
                .reloads_failed
                .fetch_add(1, Ordering::Relaxed);
            problem(
                StatusCode::CONFLICT,
                "admin.not_applied",
                "The config is valid but cannot be applied now",
                &format!("{e}; the previous config keeps serving and the file was restored"),
            )
        }
    }
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "palisade.yaml".into());
    let tmp = path.with_file_name(format!(".{name}.admin-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Applies the config that served before the last apply.
fn rollback(call: &Call<'_>) -> Response<ProxyBody> {
    if let Some(r) = need_operator(call.who) {
        return r;
    }
    let previous = call
        .shared
        .admin_previous
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let Some(text) = previous else {
        return problem(
            StatusCode::CONFLICT,
            "admin.nothing_to_roll_back",
            "No earlier config",
            "no config was applied through the admin API since the start",
        );
    };
    let again = Call {
        shared: call.shared,
        who: call.who,
        method: call.method,
        path: call.path,
        query: None,
        last_event_id: None,
        body: Bytes::from(text),
    };
    apply_config(&again)
}

/// `POST /api/v1/routes/{route}/policies/{index}/mode` with `{"mode": "monitor"}`,
/// `"enforce"` or `"config"` (back to the config's).
fn set_mode(call: &Call<'_>, route: &str, index: &str) -> Response<ProxyBody> {
    if let Some(r) = need_operator(call.who) {
        return r;
    }
    let wanted = serde_json::from_slice::<Value>(&call.body)
        .ok()
        .and_then(|v| v.get("mode").and_then(Value::as_str).map(str::to_string));
    let o = match wanted.as_deref() {
        Some("monitor") => ModeOverride::Monitor,
        Some("enforce") => ModeOverride::Enforce,
        Some("config") => ModeOverride::Config,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "admin.bad_request",
                "No mode",
                "send {\"mode\": \"monitor\"}, \"enforce\" or \"config\"",
            )
        }
    };
    let rt = call.shared.runtime.load_full();
    let route_name = palisade_core::uri::decode_form(route).unwrap_or_default();
    let found = rt
        .config
        .routes
        .iter()
        .position(|r| *r.name == *route_name)
        .and_then(|ri| {
            let i: usize = index.parse().ok()?;
            let slot = rt.modes.get(ri)?.get(i)?;
            let e = rt.config.routes.get(ri)?.policies.get(i)?;
            Some((slot, e))
        });
    let Some((slot, e)) = found else {
        return problem(
            StatusCode::NOT_FOUND,
            "admin.not_found",
            "No such policy",
            &format!("route `{route_name}` has no policy {index} (GET /api/v1/routes lists them)"),
        );
    };
    slot.store(o as u8, Ordering::Relaxed);
    let effective = crate::effective_mode(Some(slot), e.mode);
    tracing::warn!(route = %route_name, policy = e.policy.kind(), index, mode = %effective, by = %call.who.name, "policy mode changed through the admin API (until the next reload)");
    let mut m = serde_json::Map::new();
    m.insert("event".into(), "policy_mode".into());
    m.insert("route".into(), route_name.clone().into());
    m.insert("policy".into(), e.policy.kind().into());
    m.insert("index".into(), index.into());
    m.insert("mode".into(), effective.to_string().into());
    m.insert("by".into(), call.who.name.clone().into());
    call.shared.security_log.log("config", m);
    reply_json(
        StatusCode::OK,
        json!({ "route": route_name, "index": index.parse::<usize>().unwrap_or(0), "type": e.policy.kind(), "mode": effective.to_string(), "until": "the next reload" }),
    )
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
        (["config"], _, true) => apply_config(&call),
        (["config", "rollback"], _, true) => rollback(&call),
        (["routes", route, "policies", index, "mode"], _, true) => set_mode(&call, route, index),
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
