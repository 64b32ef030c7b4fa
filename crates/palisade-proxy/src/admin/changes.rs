//! The admin API's changes, for operators only: applying and rolling back a config, turning
//! a policy to monitor or enforce, revoking credentials, resetting a quota. Each is a
//! `kind: config` record of the security log naming who made it.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Response, StatusCode};
use palisade_config::admin::AdminRole;
use serde_json::{json, Value};

use super::api::{config_problem, query_pairs, Call};
use super::auth::Who;
use super::{problem, reply_json};
use crate::body::ProxyBody;
use crate::ModeOverride;

pub(super) fn need_operator(who: &Who) -> Option<Response<ProxyBody>> {
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
pub(super) async fn apply_config(call: &Call<'_>) -> Response<ProxyBody> {
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
    let built = {
        let _one_at_a_time = shared.admin_apply.lock().unwrap_or_else(|p| p.into_inner());
        let built = match validate(shared, text) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let warnings: Vec<Value> = built.warnings.iter().map(config_problem).collect();
        if dry_run {
            return reply_json(
                StatusCode::OK,
                json!({ "valid": true, "applied": false, "warnings": warnings }),
            );
        }
        // in a fleet, every instance validates it before any serves it
        if built.fleet.is_none() {
            return match install(shared, text, built, &call.who.name) {
                Ok(()) => reply_json(
                    StatusCode::OK,
                    json!({ "valid": true, "applied": true, "warnings": warnings }),
                ),
                Err(e) => e.reply(),
            };
        }
        built
    };
    let serving = shared.runtime.load().config.fleet.clone();
    match (serving, built.fleet) {
        (Some(f), Some(_)) => crate::fleet::propose(shared, &f, text, &call.who.name).await,
        _ => problem(
            StatusCode::CONFLICT,
            "admin.not_applied",
            "A fleet is joined by editing the file",
            "this instance serves no `fleet` section: add it to the file on each host and reload",
        ),
    }
}

/// Checks a config text for this instance: no new program to run (see [`new_commands`]),
/// and it builds.
fn validate(
    shared: &crate::Shared,
    text: &str,
) -> Result<palisade_config::Config, Box<Response<ProxyBody>>> {
    let source = shared.runtime.load().config.source.clone();
    // a program to run is added on the host, never through the API: validating the text
    // would already run it (an operator token must not be a shell on the gateway)
    let serving = std::fs::read_to_string(&source).unwrap_or_default();
    let added = new_commands(text, &serving);
    if !added.is_empty() {
        let problems: Vec<Value> = added
            .iter()
            .map(|(path, line)| {
                json!({"line": line, "path": path, "message": "a new ${cmd:…} secret reference: programs are added by editing the file on the host, not through the admin API"})
            })
            .collect();
        return Err(Box::new(invalid_config(
            "the config runs programs the serving one does not; nothing was run or changed",
            problems,
        )));
    }
    palisade_config::load_str(&source, text).map_err(|errs| {
        let problems: Vec<Value> = errs.0.iter().map(config_problem).collect();
        let detail = format!("{} problem(s); nothing was changed", problems.len());
        Box::new(invalid_config(&detail, problems))
    })
}

/// Why a config could not be installed.
#[derive(Debug)]
pub(crate) enum InstallError {
    /// The file could not be written; nothing changed.
    Write(String),
    /// It cannot be applied now (the file was restored).
    Apply(String),
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::Write(e) => write!(f, "{e}; nothing was changed"),
            InstallError::Apply(e) => write!(
                f,
                "{e}; the previous config keeps serving and the file was restored"
            ),
        }
    }
}

impl InstallError {
    fn reply(&self) -> Response<ProxyBody> {
        match self {
            InstallError::Write(_) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "admin.write_failed",
                "The config file could not be written",
                &self.to_string(),
            ),
            InstallError::Apply(_) => problem(
                StatusCode::CONFLICT,
                "admin.not_applied",
                "The config is valid but cannot be applied now",
                &self.to_string(),
            ),
        }
    }
}

/// Writes `text` over the config file and applies `built` (what it builds to), atomically:
/// the old config serves until the new one is built, and one that cannot be applied leaves
/// the file and the gateway as they were. A `kind: config` record names `by`.
pub(crate) fn install(
    shared: &crate::Shared,
    text: &str,
    built: palisade_config::Config,
    by: &str,
) -> Result<(), InstallError> {
    let source = shared.runtime.load().config.source.clone();
    let previous = std::fs::read_to_string(&source).ok();
    write_atomically(&source, text)
        .map_err(|e| InstallError::Write(format!("{}: {e}", source.display())))?;
    match shared.apply(built) {
        Ok(()) => {
            shared.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
            let mut m = crate::config_event("applied", &source, None);
            m.insert("by".into(), by.into());
            shared.security_log.log("config", m);
            tracing::info!(file = %source.display(), by, "configuration applied");
            if let Some(p) = previous {
                *shared
                    .admin_previous
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(p);
            }
            Ok(())
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
            Err(InstallError::Apply(e.to_string()))
        }
    }
}

/// Every `${cmd:…}` of a YAML text, as parsed (escapes decoded), with its path.
fn commands(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(t) if t.contains("${cmd:") => out.push((path.to_string(), t.clone())),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                commands(x, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                commands(x, &p, out);
            }
        }
        _ => {}
    }
}

/// The `${cmd:…}` references of `new` that `serving` does not have, with their path and line.
/// A text that does not parse has none here (the full validation reports it).
pub(crate) fn new_commands(new: &str, serving: &str) -> Vec<(String, Option<usize>)> {
    let Ok(doc) = palisade_core::yaml::parse(new) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    commands(&doc.value, "", &mut found);
    let mut known = Vec::new();
    if let Ok(old) = palisade_core::yaml::parse(serving) {
        commands(&old.value, "", &mut known);
    }
    found
        .into_iter()
        .filter(|(_, cmd)| !known.iter().any(|(_, k)| k == cmd))
        .map(|(path, _)| {
            let line = doc.line_of(&path);
            (path, line)
        })
        .collect()
}

/// 422 `admin.invalid_config`, with every problem (path, line, message).
fn invalid_config(detail: &str, problems: Vec<Value>) -> Response<ProxyBody> {
    super::reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        "application/problem+json",
        json!({
            "type": "https://palisade.dev/problems/admin.invalid_config",
            "title": "The config is not valid",
            "status": 422,
            "code": "admin.invalid_config",
            "detail": detail,
            "problems": problems,
        })
        .to_string(),
    )
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
pub(super) async fn rollback(call: &Call<'_>) -> Response<ProxyBody> {
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
    Box::pin(apply_config(&again)).await
}

/// `POST /api/v1/routes/{route}/policies/{index}/mode` with `{"mode": "monitor"}`,
/// `"enforce"` or `"config"` (back to the config's).
pub(super) fn set_mode(call: &Call<'_>, route: &str, index: &str) -> Response<ProxyBody> {
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
    // a patch of one operation is a route of its own with its parent's name: `position`
    // (as GET /api/v1/routes gives it) says which
    let named: Vec<usize> = rt
        .config
        .routes
        .iter()
        .enumerate()
        .filter(|(_, r)| *r.name == *route_name)
        .map(|(i, _)| i)
        .collect();
    let position = query_pairs(call.query)
        .into_iter()
        .find(|(k, _)| k == "position")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let chosen = match (position, named.as_slice()) {
        (Some(p), _) if named.contains(&p) => Some(p),
        (Some(_), _) => None,
        (None, [one]) => Some(*one),
        (None, []) => None,
        (None, _) => {
            return problem(
                StatusCode::CONFLICT,
                "admin.ambiguous",
                "Several routes have this name",
                &format!("{} routes are named `{route_name}` (patches of operations): add ?position=N from GET /api/v1/routes", named.len()),
            )
        }
    };
    let found = chosen.and_then(|ri| {
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
    record(
        call,
        "policy_mode",
        &[
            ("route", route_name.clone().into()),
            ("policy", e.policy.kind().into()),
            ("index", index.into()),
            ("mode", effective.to_string().into()),
        ],
    );
    reply_json(
        StatusCode::OK,
        json!({ "route": route_name, "index": index.parse::<usize>().unwrap_or(0), "type": e.policy.kind(), "mode": effective.to_string(), "until": "the next reload" }),
    )
}

/// A config record of the security log: what an operator changed.
fn record(call: &Call<'_>, event: &str, fields: &[(&str, Value)]) {
    let mut m = serde_json::Map::new();
    m.insert("event".into(), event.into());
    for (k, v) in fields {
        m.insert((*k).into(), v.clone());
    }
    m.insert("by".into(), call.who.name.clone().into());
    call.shared.security_log.log("config", m);
}

/// What a revocation names, from a body with one of `api_key`, `api_key_hash`, `token`,
/// `jti`; and its end (`until`, RFC 3339; for ever without).
fn revocation_of(body: &[u8]) -> Result<([u8; 32], i64, &'static str), String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON".to_string())?;
    let text = |k: &str| v.get(k).and_then(Value::as_str);
    let until = match text("until") {
        None => i64::MAX,
        Some(u) => palisade_identity::consumers::parse_instant(u)
            .ok_or(format!("until: `{u}` is not RFC 3339"))?,
    };
    let named = if let Some(k) = text("api_key") {
        (palisade_identity::consumers::hash_key(k), "api_key")
    } else if let Some(h) = text("api_key_hash").or_else(|| text("hash")) {
        (
            palisade_identity::consumers::parse_hash(h)
                .ok_or("the hash must be `sha256:` and 64 hex digits")?,
            "hash",
        )
    } else if let Some(t) = text("token") {
        (palisade_identity::consumers::hash_key(t), "token")
    } else if let Some(j) = text("jti") {
        (palisade_identity::revoked::jti(j), "jti")
    } else {
        return Err("name what to revoke: api_key, api_key_hash, token or jti".into());
    };
    Ok((named.0, until, named.1))
}

fn until_text(until: i64) -> Value {
    if until == i64::MAX {
        Value::Null
    } else {
        crate::access_log::rfc3339_secs(until).into()
    }
}

/// `GET /api/v1/revocations`: what is revoked, by hash (never the credential).
pub(super) fn revocations() -> Response<ProxyBody> {
    let list: Vec<Value> = palisade_identity::revoked::list(palisade_identity::revoked::now())
        .into_iter()
        .map(|(h, u)| json!({"hash": format!("sha256:{}", palisade_core::hex::encode(&h)), "until": until_text(u)}))
        .collect();
    reply_json(StatusCode::OK, json!({ "revocations": list }))
}

/// `POST /api/v1/revocations`: refuses an API key or a bearer token from the next request on,
/// on every route, until `until`; kept across restarts in the state store.
pub(super) async fn revoke(call: &Call<'_>) -> Response<ProxyBody> {
    if let Some(r) = need_operator(call.who) {
        return r;
    }
    let (hash, until, what) = match revocation_of(&call.body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "admin.bad_request",
                "Nothing to revoke",
                &e,
            )
        }
    };
    palisade_identity::revoked::revoke(hash, until);
    let store = call.shared.admin_store.as_ref();
    if let Some(db) = store {
        super::keep::revoked(db, &hash, until);
    }
    let shown = format!("sha256:{}", palisade_core::hex::encode(&hash));
    let fleet = call.shared.runtime.load().config.fleet.clone();
    if let Some(f) = &fleet {
        if let Err(e) = crate::fleet::share_revocation(f, &hash, until, false).await {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "admin.fleet_unavailable",
                "Revoked here only",
                &format!("{e}: the other instances of the fleet were not told; send it again"),
            );
        }
    }
    tracing::warn!(what, hash = %shown, by = %call.who.name, "credential revoked through the admin API");
    record(
        call,
        "revoked",
        &[("what", what.into()), ("hash", shown.clone().into())],
    );
    reply_json(
        StatusCode::OK,
        json!({ "revoked": shown, "what": what, "until": until_text(until), "durable": store.is_some(), "fleet": fleet.is_some() }),
    )
}

/// `POST /api/v1/revocations/lift`: the same body; the credential works again.
pub(super) async fn lift(call: &Call<'_>) -> Response<ProxyBody> {
    if let Some(r) = need_operator(call.who) {
        return r;
    }
    let hash = match revocation_of(&call.body) {
        Ok((h, _, _)) => h,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "admin.bad_request",
                "Nothing to lift",
                &e,
            )
        }
    };
    let fleet = call.shared.runtime.load().config.fleet.clone();
    let shared_with_fleet = match &fleet {
        None => false,
        Some(f) => match crate::fleet::share_revocation(f, &hash, 0, true).await {
            Ok(known) => known,
            Err(e) => {
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "admin.fleet_unavailable",
                    "The fleet's store cannot be reached",
                    &format!("{e}; nothing was lifted"),
                )
            }
        },
    };
    if !palisade_identity::revoked::lift(&hash) && !shared_with_fleet {
        return problem(
            StatusCode::NOT_FOUND,
            "admin.not_found",
            "Not revoked",
            "no revocation names this credential",
        );
    }
    if let Some(db) = &call.shared.admin_store {
        super::keep::lifted(db, &hash);
    }
    let shown = format!("sha256:{}", palisade_core::hex::encode(&hash));
    record(call, "revocation_lifted", &[("hash", shown.clone().into())]);
    reply_json(StatusCode::OK, json!({ "lifted": shown }))
}

/// `POST /api/v1/quotas/reset` with `{"key": K}` (and optionally `"route"`): every quota of
/// the key starts the period again from zero.
pub(super) async fn reset_quota(call: &Call<'_>) -> Response<ProxyBody> {
    if let Some(r) = need_operator(call.who) {
        return r;
    }
    let v: Value = serde_json::from_slice(&call.body).unwrap_or(Value::Null);
    let Some(key) = v
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "admin.bad_request",
            "No key",
            "send {\"key\": \"…\"} and optionally \"route\"",
        );
    };
    let only = v.get("route").and_then(Value::as_str);
    let rt = call.shared.runtime.load_full();
    let mut done = Vec::new();
    for route in rt
        .config
        .routes
        .iter()
        .filter(|r| only.is_none_or(|o| *r.name == *o))
    {
        for (i, e) in route.policies.iter().enumerate() {
            if let Some(r) = e.policy.reset(key).await {
                done.push(
                    json!({"route": &*route.name, "index": i, "type": e.policy.kind(),
                                 "reset": r.is_ok(), "error": r.err()}),
                );
            }
        }
    }
    if done.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "admin.not_found",
            "No quota",
            "no quota policy on the routes named",
        );
    }
    // the key may be a credential (a quota keyed by a header): only its hash is logged
    let key_hash = palisade_core::hex::encode(&palisade_identity::consumers::hash_key(key));
    record(call, "quota_reset", &[("key_sha256", key_hash.into())]);
    let failed = done.iter().any(|d| d["reset"] == false);
    reply_json(
        if failed {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        },
        json!({ "key": key, "policies": done }),
    )
}

#[cfg(test)]
mod tests {
    use super::new_commands;

    #[test]
    fn programs_the_serving_config_does_not_run_are_found_also_when_escaped() {
        let serving = "consumers:\n  - {name: a, ws_users: [{username: u, password: \"${cmd:vault read x}\"}]}\n";
        assert!(new_commands(serving, serving).is_empty());
        let added =
            "consumers:\n  - {name: a, ws_users: [{username: u, password: \"${cmd:sh -c id}\"}]}\n";
        let found = new_commands(added, serving);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, Some(2));
        // a YAML escape is decoded before the check, as the config reader decodes it
        let escaped = "x: \"\\x24{cmd:touch /tmp/pwned}\"\n";
        assert_eq!(new_commands(escaped, serving).len(), 1);
    }
}
