//! Finding → patch: which policy closes each class of finding, on which route and operation.
//! docs/patch.md has the same table for people.

use std::collections::BTreeSet;

use http::Method;
use palisade_audit::spec::{deref, Operation, Spec};
use serde_json::{json, Value};

use crate::{findings_of, url_path, Block, FindingRef, Manual, Plan, PlanOptions};

struct Ctx<'a> {
    config: &'a palisade_config::Config,
    spec: Option<&'a Spec>,
    opts: &'a PlanOptions,
    base: String,
    plan: Plan,
}

/// What a finding's input location names: where and which.
enum Input {
    Path(String),
    Query(String),
    Body(String),
}

fn input_of(location: &str) -> Option<Input> {
    let first = location.split(", ").next()?;
    if let Some(n) = first.strip_prefix("path parameter ") {
        return Some(Input::Path(n.into()));
    }
    if let Some(n) = first.strip_prefix("query parameter ") {
        return Some(Input::Query(n.into()));
    }
    if let Some(p) = first.strip_prefix("body field /") {
        return Some(Input::Body(p.replace('/', ".")));
    }
    first
        .strip_prefix("form field ")
        .map(|n| Input::Body(n.into()))
}

/// The last names of a list of locations (`body field /credit, body field /role`).
fn field_names(location: &str) -> Vec<String> {
    location
        .split(", ")
        .filter_map(|l| {
            l.rsplit('/')
                .next()
                .map(|n| n.rsplit(' ').next().unwrap_or(n))
        })
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

impl Ctx<'_> {
    fn gw(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The route that serves `method path` (a description path), by the gateway's own rule.
    fn route(&self, method: &str, path: &str) -> Option<String> {
        let m = Method::from_bytes(method.as_bytes()).ok()?;
        let i = palisade_config::serving(
            &self.config.routes,
            self.opts.host.as_deref(),
            &palisade_config::sample_path(&self.gw(path)),
            &m,
        )?;
        self.config.routes.get(i).map(|r| r.name.to_string())
    }

    /// The routes that serve the description's operations (for patches of a whole API).
    fn api_routes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for o in self.spec.map(|s| s.operations.as_slice()).unwrap_or(&[]) {
            if let Some(r) = self.route(&o.method, &o.path) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        if out.is_empty() {
            out.extend(self.config.routes.first().map(|r| r.name.to_string()));
        }
        out
    }

    fn op(&self, method: &str, path: &str) -> Option<&Operation> {
        self.spec?
            .operations
            .iter()
            .find(|o| o.method == method && o.path == path)
    }

    /// The credential an operation declares: `(header, scheme)` or a query parameter.
    fn credential(&self, op: Option<&Operation>) -> Option<Value> {
        let spec = self.spec?;
        let reqs = op.map(|o| o.security.clone()).unwrap_or_default();
        let name = reqs
            .iter()
            .find_map(|r| r.keys().next().cloned())
            .or_else(|| spec.schemes.first().map(|(n, _, _)| n.clone()))?;
        let (_, scheme, _) = spec.schemes.iter().find(|(n, _, _)| *n == name)?;
        let scheme = deref(&spec.doc, scheme);
        let ty = scheme["type"].as_str().unwrap_or("");
        Some(match ty {
            "apiKey" if scheme["in"] == "query" => json!({"query": scheme["name"]}),
            "apiKey" => {
                json!({"header": scheme["name"].as_str().unwrap_or("authorization").to_ascii_lowercase()})
            }
            "basic" => json!({"scheme": "Basic"}),
            "http"
                if scheme["scheme"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("basic")) =>
            {
                json!({"scheme": "Basic"})
            }
            _ => json!({"scheme": "Bearer"}),
        })
    }

    /// The header that carries an operation's credential (`authorization` by default).
    fn credential_header(&self, op: Option<&Operation>) -> Option<String> {
        match self.credential(op) {
            Some(c) if c.get("query").is_some() => None,
            Some(c) => Some(
                c.get("header")
                    .and_then(Value::as_str)
                    .unwrap_or("authorization")
                    .to_string(),
            ),
            None => Some("authorization".into()),
        }
    }

    /// The fields a request body of `op` may set: its declared properties, less read-only ones.
    fn writable(&self, op: &Operation) -> Vec<String> {
        let Some(spec) = self.spec else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (schema, _) in &op.request_schemas {
            let s = deref(&spec.doc, schema);
            if let Some(props) = s["properties"].as_object() {
                for (k, p) in props {
                    if deref(&spec.doc, p)["readOnly"] != Value::Bool(true) {
                        out.push(k.clone());
                    }
                }
            }
        }
        for p in &op.params {
            if p.location == "formData" {
                out.push(p.name.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The `maxLength` the description gives a body field of `op` (a dotted path).
    fn declared_max_length(&self, op: &Operation, field: &str) -> Option<usize> {
        let spec = self.spec?;
        for (schema, _) in &op.request_schemas {
            let mut at = deref(&spec.doc, schema);
            for seg in field.split('.') {
                at = deref(&spec.doc, at.get("properties")?.get(seg)?);
            }
            if let Some(n) = at.get("maxLength").and_then(Value::as_u64) {
                return usize::try_from(n).ok();
            }
        }
        None
    }

    fn manual(&mut self, finding: usize, why: &str) {
        self.plan.manual.push(Manual {
            finding,
            why: why.into(),
        });
    }

    /// Adds a patch, merged with an equal one (same place and policy) or, for `threat` and
    /// removed fields, with one of the same type on the same operation.
    fn add(
        &mut self,
        finding: usize,
        route: String,
        operation: Option<String>,
        code: &'static str,
        reason: &str,
        policy: Value,
    ) {
        for b in &mut self.plan.blocks {
            if b.route != route || b.operation != operation {
                continue;
            }
            let ty = policy.get("type").and_then(Value::as_str);
            let same_type = b.policy.get("type").and_then(Value::as_str) == ty;
            let merged = if b.policy == policy {
                true
            } else if same_type && ty == Some("threat") {
                union(&mut b.policy, &policy, "classes");
                true
            } else if same_type
                && policy.get("remove_fields").is_some()
                && b.policy.get("remove_fields").is_some()
            {
                union(&mut b.policy, &policy, "remove_fields");
                true
            } else {
                false
            };
            if merged {
                if !b.findings.contains(&finding) {
                    b.findings.push(finding);
                }
                return;
            }
        }
        self.plan.blocks.push(Block {
            findings: vec![finding],
            reason: reason.into(),
            code,
            route,
            operation,
            policy,
        });
    }

    /// A patch on the operation `method path` (a description path).
    fn on_op(
        &mut self,
        finding: usize,
        method: &str,
        path: &str,
        code: &'static str,
        reason: &str,
        policy: Value,
    ) -> bool {
        match self.route(method, path) {
            Some(route) => {
                let op = format!("{method} {}", self.gw(path));
                self.add(finding, route, Some(op), code, reason, policy);
                true
            }
            None => false,
        }
    }

    /// A patch on every route of the API.
    fn on_api(&mut self, finding: usize, code: &'static str, reason: &str, policy: Value) {
        for route in self.api_routes() {
            self.add(finding, route, None, code, reason, policy.clone());
        }
    }
}

/// `into[key]` becomes the sorted union of the string lists `into[key]` and `from[key]`.
fn union(into: &mut Value, from: &Value, key: &str) {
    let mut all: BTreeSet<String> = BTreeSet::new();
    for p in [&*into, from] {
        for c in p.get(key).and_then(Value::as_array).into_iter().flatten() {
            all.extend(c.as_str().map(str::to_string));
        }
    }
    if let Some(m) = into.as_object_mut() {
        m.insert(key.into(), json!(all));
    }
}

fn threat_class(check: &str) -> Option<&'static str> {
    Some(match check {
        "injection.sql" | "injection.sql_boolean" | "injection.sql_time" => "sqli",
        "injection.nosql" => "nosql",
        "injection.command" => "command",
        "injection.template" => "template",
        "injection.path_traversal" => "path_traversal",
        "xss.reflected" => "xss",
        "ssrf" => "ssrf",
        _ => return None,
    })
}

/// The operations (method, path) a pointer of an audit finding concerns: the one it is in
/// (`/paths/~1users/post/…`), or every operation whose request or response schema is the
/// component it is in (`/components/schemas/User/…`).
fn audit_ops(spec: &Spec, pointer: &str, response: bool) -> Vec<(String, String)> {
    let unescape = |s: &str| s.replace("~1", "/").replace("~0", "~");
    let segs: Vec<String> = pointer
        .trim_start_matches('#')
        .split('/')
        .skip(1)
        .map(unescape)
        .collect();
    match segs.as_slice() {
        [p, path, method, ..] if p == "paths" => vec![(method.to_ascii_uppercase(), path.clone())],
        [c, kind, name, ..] if c == "components" || c == "definitions" => {
            let target = if c == "definitions" {
                format!("#/definitions/{kind}")
            } else {
                format!("#/components/{kind}/{name}")
            };
            spec.operations
                .iter()
                .filter(|o| {
                    let schemas = if response {
                        &o.response_schemas
                    } else {
                        &o.request_schemas
                    };
                    schemas.iter().any(|(s, _)| {
                        let s = s.get("items").unwrap_or(s);
                        s.get("$ref").and_then(Value::as_str) == Some(target.as_str())
                    })
                })
                .map(|o| (o.method.clone(), o.path.clone()))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The patches for the audit findings of `audit` (`palisade audit --format json`) that the
/// gateway can answer: a privileged property writable in a request, a secret property in a
/// response, a URL-typed input. The others are about the description itself.
fn audit(cx: &mut Ctx<'_>, audit: &Value) -> Result<(), String> {
    let list = audit
        .pointer("/report/findings")
        .or_else(|| audit.get("findings"))
        .and_then(Value::as_array)
        .ok_or("the audit report has no findings: give the JSON report of `palisade audit --format json`")?;
    let Some(spec) = cx.spec else {
        return Err("--audit needs --spec (the description the audit read)".into());
    };
    let mut left: std::collections::BTreeMap<String, usize> = Default::default();
    for f in list {
        let rule = f
            .get("rule")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let pointer = f.get("pointer").and_then(Value::as_str).unwrap_or("");
        let message = f
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let prop = pointer
            .rsplit('/')
            .next()
            .unwrap_or("")
            .replace("~1", "/")
            .replace("~0", "~");
        let (response, policy, code, reason) = match rule.as_str() {
            "PAL-MASS-002" => (
                false,
                json!({"type": "request_fields", "refuse": [prop]}),
                "fields.refused",
                "the description lets clients write a privileged property: requests that set it are refused",
            ),
            "PAL-MASS-003" => (
                true,
                json!({"type": "responses", "remove_fields": [prop]}),
                "responses.fields_removed",
                "the description returns a secret property: it is removed from the answers",
            ),
            "PAL-SSRF-001" => (
                false,
                json!({"type": "threat", "classes": ["ssrf"]}),
                "threat.detected",
                "an input takes a URL: URLs to loopback, private, link-local and metadata addresses are refused",
            ),
            _ => {
                *left.entry(rule).or_default() += 1;
                continue;
            }
        };
        // the operations the finding affects, as the audit lists them (`GET /users/{id}`);
        // an older report without them: the operations its pointer concerns
        let listed: Vec<(String, String)> = f
            .get("uses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|u| u.split_once(' '))
                    .filter(|(m, _)| m.chars().all(|c| c.is_ascii_uppercase()))
                    .map(|(m, p)| (m.to_string(), p.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut ops = if listed.is_empty() {
            audit_ops(spec, pointer, response)
        } else {
            listed
        };
        let i = cx.plan.findings.len();
        cx.plan.findings.push(FindingRef {
            check: rule.clone(),
            operation: ops.first().map(|(m, p)| format!("{m} {p}")),
            title: format!("{message} ({pointer})"),
            source: "audit",
        });
        if rule == "PAL-MASS-002" {
            // on an operation reserved for administrators, setting a privileged property is
            // its purpose (a role change): refusing it would break the operation
            let before = ops.len();
            ops.retain(|(m, p)| {
                spec.operations
                    .iter()
                    .find(|o| o.method == *m && o.path == *p)
                    .is_none_or(|o| palisade_scan::privileged(o).is_none())
            });
            if ops.is_empty() && before > 0 {
                cx.manual(i, "the operation is reserved for administrators, whose purpose is to set this property: check that only they reach it (a `bfla` finding of the scan gets a patch)");
                continue;
            }
        }
        let mut placed = false;
        for (m, p) in &ops {
            placed |= cx.on_op(i, m, p, code, reason, policy.clone());
        }
        if !placed {
            cx.manual(i, "no operation of the config's routes uses this part of the description: fix the description");
        }
    }
    cx.plan.audit_left = left.into_iter().collect();
    Ok(())
}

/// The patches for the findings of `report` (and of an audit) on the gateway `config` serves.
pub fn plan(
    report: &Value,
    config: &palisade_config::Config,
    spec: Option<&Spec>,
    opts: &PlanOptions,
) -> Result<Plan, String> {
    let findings = findings_of(report)?;
    let base = opts
        .base_path
        .clone()
        .unwrap_or_else(|| url_path(report["target"].as_str().unwrap_or("")));
    let mut cx = Ctx {
        config,
        spec,
        opts,
        base: base.trim_end_matches('/').to_string(),
        plan: Plan {
            findings: findings.clone(),
            ..Plan::default()
        },
    };
    let raw: Vec<Value> = report["findings"].as_array().cloned().unwrap_or_default();
    for (i, f) in findings.iter().enumerate() {
        let r = raw.get(i).cloned().unwrap_or(Value::Null);
        let location = r
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (method, path) = match f.operation.as_deref().and_then(|o| o.split_once(' ')) {
            Some((m, p)) => (m.to_string(), p.to_string()),
            None => (String::new(), String::new()),
        };
        let op = cx.op(&method, &path).cloned();
        let at = At {
            i,
            f,
            raw: &r,
            location: &location,
            method: &method,
            path: &path,
            op: op.as_ref(),
        };
        let placed = patch_one(&mut cx, at);
        if !placed && !cx.plan.manual.iter().any(|m| m.finding == i) {
            let why = if f.operation.is_some() {
                format!(
                    "no route of the config serves {} (is --base-path right?)",
                    f.operation.as_deref().unwrap_or("")
                )
            } else {
                "no patch is known for this finding".to_string()
            };
            cx.manual(i, &why);
        }
    }
    if let Some(a) = &opts.audit {
        audit(&mut cx, a)?;
    }
    Ok(cx.plan)
}

/// A finding of the report with what the patch rules read of it.
#[derive(Clone, Copy)]
struct At<'a> {
    /// Its index in the report.
    i: usize,
    f: &'a FindingRef,
    /// The finding as the report has it (evidence, object).
    raw: &'a Value,
    location: &'a str,
    method: &'a str,
    /// The description's path of its operation.
    path: &'a str,
    op: Option<&'a Operation>,
}

fn patch_one(cx: &mut Ctx<'_>, at: At<'_>) -> bool {
    let At {
        i,
        f,
        raw,
        location,
        method,
        path,
        op,
    } = at;
    let check = f.check.as_str();
    if let Some(class) = threat_class(check) {
        let mut ok = cx.on_op(
            i,
            method,
            path,
            "threat.detected",
            "injection detection on every input of the operation refuses the attack's syntax; the code fix is to keep input out of the interpreter (parameterised queries, no shell, an allow-list of files and hosts)",
            json!({"type": "threat", "classes": [class]}),
        );
        if check == "injection.sql" {
            ok &= cx.on_op(
                i,
                method,
                path,
                "responses.error_hidden",
                "answers that show a database error are withheld, so the error cannot guide an attack",
                json!({"type": "responses", "hide_traces": true}),
            );
        }
        return ok;
    }
    match check {
        "auth.missing" => {
            let cred = cx.credential(op).unwrap_or(json!({"scheme": "Bearer"}));
            let mut policy = json!({"type": "require_credentials"});
            if let (Some(p), Some(c)) = (policy.as_object_mut(), cred.as_object()) {
                p.extend(c.clone());
            }
            cx.on_op(
                i,
                method,
                path,
                "credentials.missing",
                "the description requires a credential here and the upstream does not check for one: requests without it are refused (the upstream still verifies it)",
                policy,
            )
        }
        c if c.starts_with("jwt.") && cx.opts.session_key_env.is_some() => sealed(cx, i, op),
        "jwt.weak_secret" => {
            cx.manual(i, "the signing secret was guessed: rotate it to 32 random bytes or more (every token signed with it can be minted by anyone, and a gateway that verifies with the same secret is fooled alike); or let the gateway hold sessions of its own: `palisade patch --session-key-env NAME` (sealed_session)");
            true
        }
        c if c.starts_with("jwt.") => match cx.opts.jwt_issuer.clone() {
            Some(issuer) => {
                let secured: Vec<(String, String)> = cx
                    .spec
                    .map(|s| {
                        s.operations
                            .iter()
                            .filter(|o| palisade_scan::secured(o))
                            .map(|o| (o.method.clone(), o.path.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut ok = !secured.is_empty();
                for (m, p) in secured {
                    ok &= cx.on_op(
                        i,
                        &m,
                        &p,
                        "auth.invalid_token",
                        "the gateway verifies the upstream's own tokens (signature with its key, algorithm, expiry) before the upstream sees them, so a forged one never reaches it; the code fix is a maintained JWT library with the algorithm pinned",
                        json!({"type": "jwt", "issuers": [issuer], "keep_token": true}),
                    );
                }
                ok
            }
            None => {
                cx.manual(i, "the upstream's tokens can be forged: verify them with a maintained JWT library (algorithm pinned, signature and expiry checked); or let the gateway verify them (an issuer with the upstream's key in the config, then `palisade patch --jwt-issuer NAME`), or hold sessions of its own (`--session-key-env NAME`)");
                true
            }
        },
        "bola.read" | "bola.write" | "bola.delete" => ownership(cx, at),
        "bfla" => {
            let mut policy =
                json!({"type": "deny", "status": 403, "reason": "reserved for administrators"});
            let mut reason = "an operation the description reserves for administrators, reached by ordinary callers: refused".to_string();
            if let Some((h, v)) = &cx.opts.admin {
                let hex = palisade_core::hex::encode(&palisade_core::policies::deny::sha256(
                    v.as_bytes(),
                ));
                if let Some(m) = policy.as_object_mut() {
                    m.insert(
                        "except".into(),
                        json!({"header": h.to_ascii_lowercase(), "sha256": [hex]}),
                    );
                }
                reason
                    .push_str(", except for the administrator's credential (kept as its SHA-256)");
            }
            reason.push_str("; the code fix is a role check in the handler");
            cx.on_op(i, method, path, "route.denied", &reason, policy)
        }
        "mass_assignment" => {
            let Some(op) = op else { return false };
            let sent = field_names(location);
            let allow = cx.writable(op);
            let policy = if !allow.is_empty() && !sent.iter().any(|s| allow.contains(s)) {
                json!({"type": "request_fields", "allow": allow})
            } else {
                json!({"type": "request_fields", "refuse": sent})
            };
            cx.on_op(
                i,
                method,
                path,
                "fields.refused",
                "bodies may set only the fields the description lets clients write; the code fix is an explicit list of writable fields in the handler",
                policy,
            )
        }
        "data.secret" | "data.excess" => {
            let mut names = field_names(location);
            if check == "data.excess" {
                if let Some((_, list)) = f.title.split_once("fields not in the description: ") {
                    names.extend(list.split(", ").map(str::to_string));
                }
            }
            names.retain(|n| !n.is_empty() && !n.chars().all(|c| c.is_ascii_digit()));
            if names.is_empty() {
                cx.manual(i, "the secret is in a text the gateway cannot split into fields: remove it from the answer in the code");
                return true;
            }
            cx.on_op(
                i,
                method,
                path,
                "responses.fields_removed",
                "the fields are removed from the answers before they reach the client; the code fix is a response model that lists what is returned",
                json!({"type": "responses", "remove_fields": names}),
            )
        }
        "auth.user_enumeration" => {
            let status = raw
                .pointer("/evidence/0/status")
                .and_then(Value::as_u64)
                .unwrap_or(401);
            cx.on_op(
                i,
                method,
                path,
                "responses.uniform",
                "every failed login gets the same answer, so it no longer tells which users exist",
                json!({"type": "responses", "uniform": {"statuses": [400, 401, 403, 404], "status": status, "detail": "Invalid credentials."}}),
            )
        }
        "auth.login_unlimited" => {
            let key = match op.and_then(|o| cx.spec.and_then(|s| crate::user_field(s, o))) {
                Some(u) => json!([format!("body:{u}")]),
                None => json!("client_ip"),
            };
            cx.on_op(
                i,
                method,
                path,
                "ratelimit.exceeded",
                "at most 10 login attempts a minute for one user name (and its client when the body names none): a password cannot be guessed by trying",
                json!({"type": "rate_limit", "key": key, "limits": [{"requests": 10, "per": "1m"}]}),
            )
        }
        "ratelimit.none" => {
            let key = match cx.credential_header(op) {
                Some(h) => format!("header:{h}"),
                None => "client_ip".into(),
            };
            cx.on_api(
                i,
                "ratelimit.exceeded",
                "each caller (by its credential, else its address) gets at most 10 requests a second with bursts of 20; tune to the API's real traffic",
                json!({"type": "rate_limit", "key": key, "limits": [{"requests": 10, "per": "1s", "burst": 20}]}),
            );
            true
        }
        "cors.credentials" => {
            cx.on_api(
                i,
                "",
                "answers no longer allow credentialed cross-origin reads (Access-Control-Allow-Credentials is removed); the code fix is an allow-list of origins",
                json!({"type": "headers", "response": {"remove": ["access-control-allow-credentials"], "secure_defaults": false}}),
            );
            true
        }
        "errors.verbose" => {
            cx.on_api(
                i,
                "responses.error_hidden",
                "answers that show a stack trace or a database error are replaced by a problem without them; the code fix is an error handler that logs the trace and answers without it",
                json!({"type": "responses", "hide_traces": true}),
            );
            true
        }
        "disclosure.version" => {
            cx.on_api(
                i,
                "",
                "headers that name the server's software and version are removed",
                json!({"type": "headers", "response": {"remove": ["server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version"], "secure_defaults": false}}),
            );
            true
        }
        "headers.nosniff" => {
            cx.on_api(
                i,
                "",
                "answers carry X-Content-Type-Options: nosniff",
                json!({"type": "headers", "response": {"set": {"x-content-type-options": "nosniff"}, "secure_defaults": false}}),
            );
            true
        }
        "headers.cache" => {
            cx.on_api(
                i,
                "",
                "answers carry Cache-Control: no-store, so no shared cache keeps a user's data",
                json!({"type": "headers", "response": {"set": {"cache-control": "no-store"}, "secure_defaults": false}}),
            );
            true
        }
        "disclosure.debug" => cx.on_op(
            i,
            method,
            path,
            "route.denied",
            "a debug endpoint is not reachable from outside",
            json!({"type": "deny", "status": 404}),
        ),
        "redos" => match input_of(location) {
            Some(Input::Body(field)) => {
                // a bound that fits what the field holds, or the description's own when it
                // is stricter (a looser one is what let the slow input in)
                let fits = if field.to_ascii_lowercase().contains("mail") {
                    254
                } else {
                    1024
                };
                let max = op
                    .and_then(|o| cx.declared_max_length(o, &field))
                    .map_or(fits, |d| d.min(fits));
                cx.on_op(
                    i,
                    method,
                    path,
                    "fields.too_long",
                    "the field is bounded before it reaches the slow regular expression; the code fix is an expression without nested repetition",
                    json!({"type": "request_fields", "max_length": {field: max}}),
                )
            }
            _ => {
                cx.manual(i, "a slow regular expression on an input the gateway does not bound: replace the expression with one without nested repetition, and give the input a maxLength with the contract on");
                true
            }
        },
        "data.other_users" => {
            cx.manual(i, "the answer lists other users' data: filter it by the caller in the code (or deny the operation to ordinary callers)");
            true
        }
        c if c.starts_with("tls.") => {
            cx.manual(i, "terminate TLS at Palisade (listeners[].tls, TLS 1.2 and later with modern suites) and keep the upstream off the network, or fix the upstream's TLS settings");
            true
        }
        _ => false,
    }
}

/// Forged or guessable upstream tokens: the gateway seals the token of every login answer
/// and lets only its own sealed tokens through, opening them for the upstream.
fn sealed(cx: &mut Ctx<'_>, i: usize, op: Option<&Operation>) -> bool {
    let Some(spec) = cx.spec else { return false };
    let Some(key_env) = cx.opts.session_key_env.clone() else {
        return false;
    };
    let logins: Vec<(String, String, String)> = spec
        .operations
        .iter()
        .filter(|o| palisade_scan::is_login(&spec.doc, o))
        .map(|o| {
            let field = o
                .response_schemas
                .iter()
                .filter(|(_, p)| p.contains("/responses/2"))
                .find_map(|(s, _)| {
                    deref(&spec.doc, s)
                        .get("properties")
                        .and_then(Value::as_object)
                        .and_then(|m| {
                            m.keys()
                                .find(|k| {
                                    palisade_audit::names::words(k).iter().any(|w| w == "token")
                                })
                                .cloned()
                        })
                })
                .unwrap_or_else(|| "token".into());
            (o.method.clone(), o.path.clone(), field)
        })
        .collect();
    if logins.is_empty() {
        cx.manual(i, "no login operation in the description hands out the token, so the gateway cannot seal it: fix the code");
        return true;
    }
    let scheme = cx
        .credential(op)
        .and_then(|c| c.get("scheme").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "Bearer".into());
    let reason = "the gateway seals the token of every login answer (AES-256-GCM under its own key, with an expiry) and lets only its own sealed tokens through, opening them for the upstream: a token forged, guessed or stolen from the upstream never reaches it; the code fix is a strong signing key and a maintained JWT library";
    cx.on_api(
        i,
        "session.invalid",
        reason,
        json!({"type": "sealed_session", "key_env": key_env, "scheme": scheme}),
    );
    let mut ok = true;
    for (m, p, field) in logins {
        ok &= cx.on_op(
            i,
            &m,
            &p,
            "session.invalid",
            reason,
            json!({"type": "sealed_session", "key_env": key_env, "issue": {"field": field}}),
        );
    }
    ok
}

/// BOLA: the caller who was shown an object owns it; requests naming it by others are refused.
fn ownership(cx: &mut Ctx<'_>, at: At<'_>) -> bool {
    let At {
        i,
        raw,
        location,
        method,
        path,
        op,
        ..
    } = at;
    let (Some(kind), Some(key)) = (
        raw.pointer("/object/kind").and_then(Value::as_str),
        raw.pointer("/object/key").and_then(Value::as_str),
    ) else {
        cx.manual(
            i,
            "the report does not say which object is at stake: check ownership in the handler",
        );
        return true;
    };
    let Some(input) = input_of(location) else {
        cx.manual(i, "the report does not say where the request names the object: check ownership in the handler");
        return true;
    };
    let Some(header) = cx.credential_header(op) else {
        cx.manual(
            i,
            "callers are known only by a credential in the URL: check ownership in the handler",
        );
        return true;
    };
    let owner = format!("header:{header}");
    let reason = format!(
        "a caller may name only the {kind}s it was shown (its list, what it created); the code fix is an ownership check in the handler"
    );
    let check = |input: &Input| match input {
        Input::Path(n) => json!({"in": "path", "name": n}),
        Input::Query(n) => json!({"in": "query", "name": n}),
        Input::Body(n) => json!({"in": "body", "name": n}),
    };
    let policy =
        |c: Value| json!({"type": "ownership", "resource": kind, "owner": owner, "check": c});
    let mut ok = cx.on_op(
        i,
        method,
        path,
        "ownership.not_owner",
        &reason,
        policy(check(&input)),
    );
    // the other operations on the same object: one class, one fix
    if let (Input::Path(n), Some(spec)) = (&input, cx.spec) {
        let others: Vec<String> = spec
            .operations
            .iter()
            .filter(|o| o.path == path && o.method != method)
            .map(|o| o.method.clone())
            .collect();
        for m in others {
            cx.on_op(
                i,
                &m,
                path,
                "ownership.not_owner",
                &reason,
                policy(check(&Input::Path(n.clone()))),
            );
        }
    }
    // where callers are shown their own objects: lists and creates of the kind
    let learn: Vec<(String, String)> = cx
        .spec
        .map(|s| {
            s.operations
                .iter()
                .filter(|o| {
                    matches!(o.method.as_str(), "GET" | "POST")
                        && !o.path.ends_with('}')
                        && palisade_scan::graph::path_kind(&o.path) == kind
                })
                .map(|o| (o.method.clone(), o.path.clone()))
                .collect()
        })
        .unwrap_or_default();
    if learn.is_empty() {
        cx.manual(i, &format!("no operation of the description lists or creates {kind}s, so the gateway cannot learn who owns one: check ownership in the handler"));
        return true;
    }
    for (m, p) in learn {
        ok &= cx.on_op(
            i,
            &m,
            &p,
            "ownership.not_owner",
            &reason,
            json!({"type": "ownership", "resource": kind, "owner": owner, "learn": key}),
        );
    }
    ok
}
