//! `palisade init`: a secure-by-default config written from an API description. A route per
//! path group (the first segment after the base path), authentication inferred from the
//! security schemes, the contract and threat detection on every route, a rate limit on every
//! route and a tighter one on login-like operations, public operations on routes of their
//! own, secure response headers; every policy in monitor mode first, each block explained by
//! a comment.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use palisade_audit::spec::{deref, Operation, Spec, Version};
use serde_json::{json, Value};

use crate::emit;

/// What `init` needs beside the description.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The description's path as the config names it (relative to the config's folder).
    pub spec_path: String,
    /// The upstream's base URL.
    pub upstream: String,
    /// Where the gateway listens.
    pub listen: String,
    /// Where the admin listener listens.
    pub admin: String,
}

fn base_path(spec: &Spec) -> String {
    let raw = match spec.version {
        Version::Swagger2 => spec
            .doc
            .get("basePath")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => match spec.servers.first().map(|(u, _)| u.as_str()) {
            Some(u) if u.starts_with('/') => u.to_string(),
            Some(u) => crate::url_path(u),
            None => String::new(),
        },
    };
    raw.trim_end_matches('/').to_string()
}

/// The authentication of a secured operation: a policy, the issuer it needs (name and
/// settings), and the comment that explains it.
fn authentication(spec: &Spec, op: &Operation) -> (Value, Option<(String, Value)>, String) {
    let scheme = op
        .security
        .iter()
        .find_map(|r| r.keys().next().cloned())
        .and_then(|n| spec.schemes.iter().find(|(s, _, _)| *s == n).cloned());
    let Some((name, s, _)) = scheme else {
        return (
            json!({"type": "require_credentials"}),
            None,
            "the description requires credentials here but names no scheme: requests without an Authorization header are refused; the upstream verifies it".into(),
        );
    };
    let s = deref(&spec.doc, &s).clone();
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
    if ty == "openIdConnect" {
        if let Some(url) = s.get("openIdConnectUrl").and_then(Value::as_str) {
            let issuer = url
                .trim_end_matches("/.well-known/openid-configuration")
                .to_string();
            return (
                json!({"type": "jwt", "issuers": [name.clone()], "keep_token": true}),
                Some((
                    name,
                    json!({"issuer": issuer, "audiences": ["CHANGE-ME"]}),
                )),
                "tokens are verified at the gateway against the identity provider the description names (discovery, JWKS); set the issuer's audiences to this API's (a token for another API must fail)".into(),
            );
        }
    }
    let (policy, what) = match ty {
        "apiKey" if s.get("in").and_then(Value::as_str) == Some("query") => (
            json!({"type": "require_credentials", "query": s.get("name").cloned().unwrap_or(json!("api_key"))}),
            "an API key in the query",
        ),
        "apiKey" => (
            json!({"type": "require_credentials", "header": s.get("name").and_then(Value::as_str).unwrap_or("x-api-key").to_ascii_lowercase()}),
            "an API key header",
        ),
        "basic" => (
            json!({"type": "require_credentials", "scheme": "Basic"}),
            "HTTP Basic credentials",
        ),
        "http"
            if s.get("scheme")
                .and_then(Value::as_str)
                .is_some_and(|x| x.eq_ignore_ascii_case("basic")) =>
        {
            (
                json!({"type": "require_credentials", "scheme": "Basic"}),
                "HTTP Basic credentials",
            )
        }
        _ => (
            json!({"type": "require_credentials", "scheme": "Bearer"}),
            "a bearer token",
        ),
    };
    (
        policy,
        None,
        format!("the description requires {what} (scheme `{name}`): requests without one are refused, and the upstream verifies it; to verify tokens at the gateway, add an issuer and a `jwt` policy (docs/policies/jwt.md)"),
    )
}

/// The config text for `spec_text`.
pub fn init(spec_text: &str, o: &InitOptions) -> Result<String, String> {
    let spec = palisade_audit::spec::load(spec_text)?;
    if spec.operations.is_empty() {
        return Err("the description has no operations".into());
    }
    let base = base_path(&spec);
    let title = spec
        .doc
        .pointer("/info/title")
        .and_then(Value::as_str)
        .unwrap_or("the API")
        .to_string();
    let mut contract = json!({"type": "contract", "spec": o.spec_path, "mode": "monitor"});
    if !base.is_empty() {
        // the description's paths are below its base path, where the gateway sees them
        if let Some(m) = contract.as_object_mut() {
            m.insert("base_path".into(), json!(base));
        }
    }
    let threat = json!({"type": "threat", "mode": "monitor"});
    let headers = json!({"type": "headers"});
    let per_client = json!({"type": "rate_limit", "mode": "monitor", "key": "client_ip", "limits": [{"requests": 50, "per": "1s", "burst": 100}]});

    // groups of secured operations by their first segment; public and login operations apart
    let mut groups: BTreeMap<String, Vec<&Operation>> = BTreeMap::new();
    let mut public: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut logins: Vec<&Operation> = Vec::new();
    for op in &spec.operations {
        if palisade_scan::is_login(&spec.doc, op) {
            logins.push(op);
        } else if !palisade_scan::secured(op) {
            public
                .entry(op.path.clone())
                .or_default()
                .push(op.method.clone());
        } else {
            let first = op.path.split('/').find(|s| !s.is_empty()).unwrap_or("");
            groups.entry(first.to_string()).or_default().push(op);
        }
    }
    let mut issuers: BTreeMap<String, Value> = BTreeMap::new();
    let mut routes = String::new();
    let mut route = |comment: &str, entry: Value| {
        routes.push('\n');
        emit::comment(&mut routes, comment, 2);
        if let Value::Object(m) = entry {
            emit::mapping(&mut routes, &m, 4, Some("  - "));
        }
    };
    for (first, ops) in &groups {
        let Some(op) = ops.first() else { continue };
        let (auth, issuer, why) = authentication(&spec, op);
        let authenticates = auth.get("type").and_then(Value::as_str) == Some("jwt");
        if let Some((n, i)) = issuer {
            issuers.insert(n, i);
        }
        let mut auth = auth;
        if let Some(m) = auth.as_object_mut() {
            m.insert("mode".into(), json!("monitor"));
        }
        let prefix = if first.is_empty() || first.starts_with('{') {
            if base.is_empty() {
                "/".to_string()
            } else {
                base.clone()
            }
        } else {
            format!("{base}/{first}")
        };
        let mut r = json!({
            "name": if first.is_empty() || first.starts_with('{') { "api".to_string() } else { first.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-") },
            "match": {"path_prefix": prefix},
            "upstream": "api",
            "policies": [auth, per_client, contract, threat, headers],
        });
        if !authenticates {
            if let Some(m) = r.as_object_mut() {
                m.insert("public".into(), json!(true));
            }
        }
        route(
            &format!(
                "{} operation(s) under {prefix}: {why}.\nEvery request is checked against the description (contract) and for injection (threat), and each client gets at most 50 requests a second; all in monitor mode first.",
                ops.len()
            ),
            r,
        );
    }
    for op in &logins {
        let key = match crate::user_field(&spec, op) {
            Some(u) => json!(["client_ip", format!("body:{u}")]),
            None => json!("client_ip"),
        };
        let name = format!("login{}", op.path.replace(['/', '{', '}'], "-"));
        route(
            &format!("{} {}{}: a login. At most 10 attempts a minute per client and user name (password guessing), plus the contract and threat detection.", op.method, base, op.path),
            json!({
                "name": name.trim_end_matches('-'),
                "match": {"path": format!("{base}{}", op.path), "methods": [op.method]},
                "upstream": "api",
                "public": true,
                "policies": [
                    {"type": "rate_limit", "mode": "monitor", "key": key, "limits": [{"requests": 10, "per": "1m"}]},
                    contract, threat, headers,
                ],
            }),
        );
    }
    for (path, methods) in &public {
        let name = format!("public{}", path.replace(['/', '{', '}'], "-"));
        route(
            &format!("{} {base}{path}: public in the description (no security), so no credential is asked for; the contract, threat detection and a rate limit still apply.", methods.join(", ")),
            json!({
                "name": name.trim_end_matches('-'),
                "match": {"path": format!("{base}{path}"), "methods": methods},
                "upstream": "api",
                "public": true,
                "policies": [per_client, contract, threat, headers],
            }),
        );
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Palisade in front of {title}, written by `palisade init` from {}.",
        o.spec_path
    );
    out.push_str("# Every policy starts in monitor mode: it logs and counts what it would refuse and refuses\n# nothing. Watch `palisade_policy_decisions_total{verdict=\"monitor_deny\"}` on the admin\n# listener, then remove the `mode: monitor` lines (or set `enforce`). `palisade validate` checks\n# every edit; the running gateway reloads the file when it changes.\n\n");
    let top = json!({
        "admin": {"listen": o.admin},
        "listeners": [{"name": "public", "listen": o.listen}],
        "upstreams": {"api": {"targets": [o.upstream]}},
    });
    for (key, comment) in [
        ("admin", "the admin listener (health, readiness, metrics): keep it on loopback"),
        ("listeners", "where clients connect; add `tls:` with a certificate to serve HTTPS (docs/configuration.md)"),
        ("upstreams", "the API behind Palisade"),
    ] {
        emit::comment(&mut out, comment, 0);
        let mut m = serde_json::Map::new();
        m.insert(key.into(), top.get(key).cloned().unwrap_or(Value::Null));
        emit::mapping(&mut out, &m, 0, None);
        out.push('\n');
    }
    if !issuers.is_empty() {
        emit::comment(
            &mut out,
            "identity providers the description names; set each one's audiences to this API's",
            0,
        );
        let mut m = serde_json::Map::new();
        m.insert("issuers".into(), json!(issuers));
        emit::mapping(&mut out, &m, 0, None);
        out.push('\n');
    }
    out.push_str("routes:\n");
    out.push_str(&routes);
    Ok(out)
}
