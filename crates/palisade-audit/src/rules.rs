//! The audit rules. Each has an id, a severity, its OWASP API Security Top 10 (2023) category,
//! why it matters and how to fix it; findings point at the JSON pointer of the node at fault.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::spec::{deref, esc, Operation, Spec};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Low,
    /// Should be fixed.
    Medium,
    /// Fix before going live.
    High,
    /// Exploitable as described.
    Critical,
}

impl Severity {
    /// Parses `low`, `medium`, `high`, `critical`.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A rule's description.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Stable id.
    pub id: &'static str,
    /// Severity of its findings.
    pub severity: Severity,
    /// OWASP API Security Top 10 (2023) category.
    pub owasp: &'static str,
    /// One-line title.
    pub title: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// How to fix it.
    pub fix: &'static str,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The rule.
    pub rule: &'static str,
    /// JSON pointer of the node at fault.
    pub pointer: String,
    /// What exactly was found.
    pub message: String,
}

const API1: &str = "API1:2023 Broken Object Level Authorization";
const API2: &str = "API2:2023 Broken Authentication";
const API3: &str = "API3:2023 Broken Object Property Level Authorization";
const API4: &str = "API4:2023 Unrestricted Resource Consumption";
const API5: &str = "API5:2023 Broken Function Level Authorization";
const API7: &str = "API7:2023 Server Side Request Forgery";
const API8: &str = "API8:2023 Security Misconfiguration";
const API9: &str = "API9:2023 Improper Inventory Management";

/// Every rule.
pub const RULES: &[Rule] = &[
    Rule { id: "PAL-AUTH-001", severity: Severity::High, owasp: API2, title: "Operation without security",
        why: "Anyone can call it: no credential is required.",
        fix: "Add a security requirement (globally or on the operation); mark truly public operations with an explicit empty requirement only after review." },
    Rule { id: "PAL-AUTH-002", severity: Severity::Medium, owasp: API2, title: "HTTP Basic authentication",
        why: "Basic sends a reusable password with every request and invites brute force.",
        fix: "Use OAuth 2.0 bearer tokens or mTLS; if Basic must stay, only over TLS and with rate limits." },
    Rule { id: "PAL-AUTH-003", severity: Severity::High, owasp: API2, title: "API key in the query string",
        why: "URLs are logged by proxies and servers and kept in browser histories: the key leaks.",
        fix: "Send API keys in a header (`in: header`)." },
    Rule { id: "PAL-AUTH-004", severity: Severity::High, owasp: API2, title: "OAuth implicit or password flow",
        why: "Both are deprecated (OAuth 2.0 Security BCP): tokens in URLs, or user passwords handed to clients.",
        fix: "Use the authorization code flow with PKCE, or client credentials for machines." },
    Rule { id: "PAL-AUTH-005", severity: Severity::Low, owasp: API2, title: "Bearer scheme without bearerFormat",
        why: "Clients and gateways cannot tell what token to expect or validate.",
        fix: "Set `bearerFormat: JWT` (or the format you issue)." },
    Rule { id: "PAL-AUTH-006", severity: Severity::Medium, owasp: API5, title: "Inconsistent security on one resource",
        why: "Some methods of a path are protected and others are not: often an oversight an attacker tries first.",
        fix: "Give every operation of the resource a security requirement, or document why one is public." },
    Rule { id: "PAL-TLS-001", severity: Severity::High, owasp: API8, title: "Server over plain http",
        why: "Credentials and data travel in clear text.",
        fix: "Serve the API over https only." },
    Rule { id: "PAL-INV-001", severity: Severity::Low, owasp: API9, title: "Server on localhost or a private host",
        why: "A description that names development hosts is out of date or exposes internal inventory.",
        fix: "List the production servers; keep development servers out of published descriptions." },
    Rule { id: "PAL-INV-002", severity: Severity::Low, owasp: API9, title: "Deprecated operation still present",
        why: "Deprecated operations are forgotten, unmaintained and often less protected.",
        fix: "Remove the operation, or set a sunset date and monitor its use." },
    Rule { id: "PAL-RESP-001", severity: Severity::Low, owasp: API8, title: "No 401/403 response documented",
        why: "Clients cannot handle refusals correctly, and tests do not check them.",
        fix: "Document 401 (and 403 where authorization applies) on protected operations." },
    Rule { id: "PAL-RESP-002", severity: Severity::Low, owasp: API4, title: "No 429 response documented",
        why: "Without a documented limit, none is likely enforced or handled by clients.",
        fix: "Enforce a rate limit and document 429 with Retry-After." },
    Rule { id: "PAL-RATE-001", severity: Severity::Low, owasp: API4, title: "No rate-limit headers documented",
        why: "Clients cannot pace themselves; abuse is harder to notice.",
        fix: "Document RateLimit / RateLimit-Policy (or X-RateLimit-*) and Retry-After headers." },
    Rule { id: "PAL-LIMIT-001", severity: Severity::Medium, owasp: API4, title: "Unbounded string",
        why: "Inputs of any size reach the service: memory, storage and ReDoS risks.",
        fix: "Set `maxLength` (or an `enum`, or a bounded `format` such as uuid or date)." },
    Rule { id: "PAL-LIMIT-002", severity: Severity::Medium, owasp: API4, title: "Unbounded array",
        why: "A request with millions of items costs the service, not the caller.",
        fix: "Set `maxItems`." },
    Rule { id: "PAL-LIMIT-003", severity: Severity::Low, owasp: API4, title: "Unbounded number",
        why: "Huge or negative values (page sizes, amounts) break assumptions.",
        fix: "Set `minimum` and `maximum`." },
    Rule { id: "PAL-MASS-001", severity: Severity::Medium, owasp: API3, title: "Object open to additional properties",
        why: "Unknown properties pass validation: mass assignment of fields the client must not set.",
        fix: "Set `additionalProperties: false` on request objects." },
    Rule { id: "PAL-MASS-002", severity: Severity::High, owasp: API3, title: "Privileged property writable in a request",
        why: "A client can set role, admin flags, owner or balance by sending the property (mass assignment).",
        fix: "Mark the property `readOnly: true` or remove it from request schemas." },
    Rule { id: "PAL-MASS-003", severity: Severity::High, owasp: API3, title: "Secret property in a response",
        why: "Passwords, secrets and tokens sent back to clients leak (excessive data exposure).",
        fix: "Remove the property from responses or mark it `writeOnly: true` and make sure the service omits it." },
    Rule { id: "PAL-BOLA-001", severity: Severity::Medium, owasp: API1, title: "Identifier without format or pattern",
        why: "Sequential or free-form ids are easy to enumerate: the first step of BOLA.",
        fix: "Use random identifiers (`format: uuid`) or constrain them with a `pattern`, and check ownership server-side." },
    Rule { id: "PAL-DATA-001", severity: Severity::High, owasp: API3, title: "Sensitive data in the URL",
        why: "Passwords, tokens, secrets or card numbers in paths and query strings end up in logs.",
        fix: "Move the value to a header or the request body." },
    Rule { id: "PAL-BFLA-001", severity: Severity::High, owasp: API5, title: "Admin operation without a distinct scope",
        why: "If ordinary callers hold the scopes an admin operation needs, any of them can call it.",
        fix: "Require a scope (or role) that only administrators hold." },
    Rule { id: "PAL-SSRF-001", severity: Severity::Medium, owasp: API7, title: "URL-typed input",
        why: "The server may fetch attacker-chosen URLs: internal services and cloud metadata are reachable.",
        fix: "Validate against an allow-list of hosts, refuse private and link-local addresses, or do not fetch." },
];

/// The description of rule `id`.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

const SENSITIVE: [&str; 10] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "card_number",
    "cardnumber",
    "cvv",
    "ssn",
];
const SECRET_OUT: [&str; 5] = [
    "password",
    "passwd",
    "secret",
    "private_key",
    "client_secret",
];

fn is_sensitive(name: &str) -> bool {
    let n = lower(name).replace('-', "_");
    SENSITIVE
        .iter()
        .any(|s| n == *s || n.ends_with(&format!("_{s}")))
}

struct Ctx<'a> {
    spec: &'a Spec,
    out: BTreeSet<Finding>,
}

impl Ctx<'_> {
    fn add(&mut self, rule: &'static str, pointer: &str, message: String) {
        self.out.insert(Finding {
            rule,
            pointer: pointer.to_string(),
            message,
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
}

/// Walks a schema (following local refs, each once), calling `f` on every (resolved) schema
/// with its canonical pointer and, for properties, their name.
fn walk(
    doc: &Value,
    schema: &Value,
    pointer: &str,
    seen: &mut HashSet<String>,
    depth: usize,
    f: &mut dyn FnMut(&Value, &str, Option<&str>),
    name: Option<&str>,
) {
    if depth > 24 {
        return;
    }
    let (s, ptr) = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with("#/") => {
            let target = r.trim_start_matches('#').to_string();
            if !seen.insert(target.clone()) {
                return;
            }
            (deref(doc, schema), target)
        }
        _ => (schema, pointer.to_string()),
    };
    f(s, &ptr, name);
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(
                doc,
                v,
                &format!("{ptr}/properties/{}", esc(k)),
                seen,
                depth + 1,
                f,
                Some(k),
            );
        }
    }
    if let Some(items) = s.get("items") {
        walk(
            doc,
            items,
            &format!("{ptr}/items"),
            seen,
            depth + 1,
            f,
            name,
        );
    }
    for k in ["allOf", "oneOf", "anyOf"] {
        if let Some(a) = s.get(k).and_then(Value::as_array) {
            for (i, sub) in a.iter().enumerate() {
                walk(
                    doc,
                    sub,
                    &format!("{ptr}/{k}/{i}"),
                    seen,
                    depth + 1,
                    f,
                    name,
                );
            }
        }
    }
    if let Some(ap) = s.get("additionalProperties").filter(|v| v.is_object()) {
        walk(
            doc,
            ap,
            &format!("{ptr}/additionalProperties"),
            seen,
            depth + 1,
            f,
            name,
        );
    }
}

fn types(s: &Value) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn check_schema(
    cx: &mut Ctx<'_>,
    schema: &Value,
    pointer: &str,
    dir: Dir,
    seen: &mut HashSet<String>,
) {
    let doc = &cx.spec.doc;
    let mut found: Vec<(&'static str, String, String)> = Vec::new();
    walk(
        doc,
        schema,
        pointer,
        seen,
        0,
        &mut |s, ptr, name| {
            let t = types(s);
            let prop = name.unwrap_or("");
            if dir == Dir::Request {
                let bounded_format = matches!(
                    s.get("format").and_then(Value::as_str),
                    Some(
                        "uuid" | "date" | "date-time" | "byte" | "email" | "ipv4" | "ipv6" | "time"
                    )
                );
                if t.contains(&"string")
                    && s.get("maxLength").is_none()
                    && s.get("enum").is_none()
                    && s.get("const").is_none()
                    && s.get("pattern").is_none()
                    && !bounded_format
                {
                    found.push((
                        "PAL-LIMIT-001",
                        ptr.to_string(),
                        format!("string `{prop}` has no maxLength"),
                    ));
                }
                if t.contains(&"array") && s.get("maxItems").is_none() {
                    found.push((
                        "PAL-LIMIT-002",
                        ptr.to_string(),
                        format!("array `{prop}` has no maxItems"),
                    ));
                }
                if (t.contains(&"integer") || t.contains(&"number"))
                    && (s.get("maximum").is_none() && s.get("exclusiveMaximum").is_none())
                    && s.get("enum").is_none()
                {
                    found.push((
                        "PAL-LIMIT-003",
                        ptr.to_string(),
                        format!("number `{prop}` has no maximum"),
                    ));
                }
                if t.contains(&"object")
                    && s.get("properties").is_some()
                    && s.get("additionalProperties") != Some(&Value::Bool(false))
                    && s.get("unevaluatedProperties") != Some(&Value::Bool(false))
                {
                    found.push((
                        "PAL-MASS-001",
                        ptr.to_string(),
                        "object accepts properties it does not declare".into(),
                    ));
                }
                if crate::names::is_privileged(prop)
                    && s.get("readOnly") != Some(&Value::Bool(true))
                {
                    found.push((
                        "PAL-MASS-002",
                        ptr.to_string(),
                        format!("`{prop}` can be set by the client"),
                    ));
                }
                if t.contains(&"string") && crate::names::takes_url(prop, s) {
                    found.push((
                        "PAL-SSRF-001",
                        ptr.to_string(),
                        format!("`{prop}` takes a URL"),
                    ));
                }
            } else {
                let n = lower(prop).replace('-', "_");
                if !prop.is_empty()
                    && SECRET_OUT
                        .iter()
                        .any(|x| n == *x || n.ends_with(&format!("_{x}")))
                    && s.get("writeOnly") != Some(&Value::Bool(true))
                {
                    found.push((
                        "PAL-MASS-003",
                        ptr.to_string(),
                        format!("`{prop}` is returned to clients"),
                    ));
                }
            }
        },
        None,
    );
    for (r, p, m) in found {
        cx.add(r, &p, m);
    }
}

fn secured(op: &Operation) -> bool {
    !op.security.is_empty() && !op.security.iter().any(Map::is_empty)
}

use serde_json::Map;

fn scopes(op: &Operation) -> BTreeSet<String> {
    op.security
        .iter()
        .flat_map(|req| req.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn is_admin(op: &Operation) -> bool {
    let p = lower(&op.path);
    let id = lower(
        op.raw
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let tags: Vec<String> = op
        .raw
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(lower).collect())
        .unwrap_or_default();
    p.split('/')
        .any(|s| s == "admin" || s == "internal" || s == "management")
        || id.starts_with("admin")
        || tags.iter().any(|t| t == "admin")
}

/// Runs every rule.
pub fn run(spec: &Spec) -> Vec<Finding> {
    let mut cx = Ctx {
        spec,
        out: BTreeSet::new(),
    };
    for (name, s, ptr) in &spec.schemes {
        let kind = s.get("type").and_then(Value::as_str).unwrap_or("");
        let scheme = lower(s.get("scheme").and_then(Value::as_str).unwrap_or(""));
        if kind == "basic" || (kind == "http" && scheme == "basic") {
            cx.add(
                "PAL-AUTH-002",
                ptr,
                format!("scheme `{name}` is HTTP Basic"),
            );
        }
        if kind == "apiKey" && s.get("in").and_then(Value::as_str) == Some("query") {
            cx.add(
                "PAL-AUTH-003",
                ptr,
                format!("scheme `{name}` takes the key from the query"),
            );
        }
        if kind == "oauth2" {
            let flows: Vec<String> = match s.get("flows").and_then(Value::as_object) {
                Some(f) => f.keys().cloned().collect(),
                None => s
                    .get("flow")
                    .and_then(Value::as_str)
                    .map(|f| vec![f.to_string()])
                    .unwrap_or_default(),
            };
            for f in flows
                .iter()
                .filter(|f| matches!(f.as_str(), "implicit" | "password"))
            {
                cx.add(
                    "PAL-AUTH-004",
                    ptr,
                    format!("scheme `{name}` allows the {f} flow"),
                );
            }
        }
        if kind == "http" && scheme == "bearer" && s.get("bearerFormat").is_none() {
            cx.add(
                "PAL-AUTH-005",
                ptr,
                format!("scheme `{name}` does not say what bearer tokens are"),
            );
        }
    }
    for (url, ptr) in &spec.servers {
        let u = lower(url);
        if u.starts_with("http://") {
            cx.add("PAL-TLS-001", ptr, format!("`{url}` is plain http"));
        }
        let host = u
            .split("://")
            .nth(1)
            .unwrap_or(&u)
            .split(['/', ':'])
            .next()
            .unwrap_or("");
        if host == "localhost"
            || host.starts_with("127.")
            || host.starts_with("10.")
            || host.starts_with("192.168.")
            || host.ends_with(".local")
            || host.ends_with(".internal")
        {
            cx.add(
                "PAL-INV-001",
                ptr,
                format!("`{url}` is not a public server"),
            );
        }
    }
    let mut rate_headers = false;
    let mut seen_schemas = HashSet::new();
    let mut by_path: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    let ordinary_scopes: BTreeSet<String> = spec
        .operations
        .iter()
        .filter(|o| !is_admin(o))
        .flat_map(scopes)
        .collect();
    for op in &spec.operations {
        by_path.entry(op.path.as_str()).or_default().push(op);
        let label = format!("{} {}", op.method, op.path);
        if !secured(op) {
            cx.add(
                "PAL-AUTH-001",
                &op.pointer,
                format!("{label} requires no credential"),
            );
        } else if !op
            .responses
            .iter()
            .any(|c| c == "401" || c == "403" || c == "4XX" || c == "4xx")
        {
            cx.add(
                "PAL-RESP-001",
                &op.pointer,
                format!("{label} documents no 401 or 403"),
            );
        }
        if !op
            .responses
            .iter()
            .any(|c| c == "429" || c == "4XX" || c == "4xx")
        {
            cx.add(
                "PAL-RESP-002",
                &op.pointer,
                format!("{label} documents no 429"),
            );
        }
        if op.raw.get("deprecated") == Some(&Value::Bool(true)) {
            cx.add("PAL-INV-002", &op.pointer, format!("{label} is deprecated"));
        }
        if op
            .response_headers
            .iter()
            .any(|h| h.contains("ratelimit") || h == "retry-after")
        {
            rate_headers = true;
        }
        if is_admin(op) && secured(op) {
            let s = scopes(op);
            if s.is_empty() || s.is_subset(&ordinary_scopes) {
                cx.add(
                    "PAL-BFLA-001",
                    &op.pointer,
                    format!("{label} needs no scope that ordinary operations lack"),
                );
            }
        }
        for p in &op.params {
            let n = lower(&p.name);
            if (p.location == "path" || p.location == "query") && is_sensitive(&p.name) {
                cx.add(
                    "PAL-DATA-001",
                    &p.pointer,
                    format!("`{}` travels in the {}", p.name, p.location),
                );
            }
            let id_like =
                n == "id" || n.ends_with("_id") || n.ends_with("id") && p.name.ends_with("Id");
            if p.location == "path"
                && id_like
                && p.schema.get("format").is_none()
                && p.schema.get("pattern").is_none()
                && p.schema.get("enum").is_none()
            {
                cx.add(
                    "PAL-BOLA-001",
                    &p.pointer,
                    format!("`{}` in {label} is an unconstrained identifier", p.name),
                );
            }
        }
        for (s, ptr) in &op.request_schemas {
            check_schema(&mut cx, s, ptr, Dir::Request, &mut seen_schemas);
        }
        for p in &op.params {
            let mut seen = HashSet::new();
            check_schema(
                &mut cx,
                &p.schema,
                &format!("{}/schema", p.pointer),
                Dir::Request,
                &mut seen,
            );
        }
    }
    let mut seen_out = HashSet::new();
    for op in &spec.operations {
        for (s, ptr) in &op.response_schemas {
            check_schema(&mut cx, s, ptr, Dir::Response, &mut seen_out);
        }
    }
    if !rate_headers && !spec.operations.is_empty() {
        cx.add(
            "PAL-RATE-001",
            "/paths",
            "no response documents a rate-limit header".into(),
        );
    }
    for (path, ops) in by_path {
        let secured_n = ops.iter().filter(|o| secured(o)).count();
        if secured_n > 0 && secured_n < ops.len() {
            let open: Vec<&str> = ops
                .iter()
                .filter(|o| !secured(o))
                .map(|o| o.method.as_str())
                .collect();
            cx.add(
                "PAL-AUTH-006",
                &format!("/paths/{}", esc(path)),
                format!(
                    "{path}: {} unprotected while other methods are protected",
                    open.join(", ")
                ),
            );
        }
    }
    cx.out.into_iter().collect()
}
