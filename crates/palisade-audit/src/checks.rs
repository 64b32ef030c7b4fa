//! Running the rules over a loaded description: the security schemes, servers and operations
//! here, the schemas in [`crate::schemas`], the format in [`crate::structure`]. Each cause is
//! reported once, at the node where it is written (a shared parameter or schema at its
//! definition), with the operations it affects.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde_json::Value;

use crate::names::words;
use crate::rules::Finding;
use crate::spec::{esc, Operation, Spec};

/// Which way data goes through a schema.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Dir {
    /// Into the API (a request's parameters and body).
    Request,
    /// Out of it (responses, and the webhooks it sends).
    Response,
}

/// A finding being gathered: its message and what it affects.
struct Entry {
    message: String,
    /// Operations named directly.
    uses: BTreeSet<String>,
    /// Definitions it is in: the operations reaching them are added at the end.
    defs: BTreeSet<(String, DirKey)>,
    /// Whether the pointer is a declaration (a property or parameter as named).
    declaration: bool,
    /// Whether it concerns nothing at all (a scheme no operation uses).
    unused: bool,
}

type DirKey = u8;

fn key(d: Dir) -> DirKey {
    match d {
        Dir::Request => 0,
        Dir::Response => 1,
    }
}

/// The findings of one run.
pub(crate) struct Ctx<'a> {
    pub spec: &'a Spec,
    out: BTreeMap<(&'static str, String), Entry>,
}

impl<'a> Ctx<'a> {
    fn entry(&mut self, rule: &'static str, pointer: &str, message: String) -> &mut Entry {
        self.out
            .entry((rule, pointer.to_string()))
            .or_insert_with(|| Entry {
                message,
                uses: BTreeSet::new(),
                defs: BTreeSet::new(),
                declaration: false,
                unused: false,
            })
    }

    /// A finding about the operations `uses` (none: the whole description).
    pub fn add(&mut self, rule: &'static str, pointer: &str, message: String, uses: &[String]) {
        let e = self.entry(rule, pointer, message);
        e.uses.extend(uses.iter().cloned());
    }

    /// A finding about a security scheme, used by `uses` (maybe none: then it costs the least).
    fn add_scheme(&mut self, rule: &'static str, pointer: &str, message: String, uses: &[String]) {
        let e = self.entry(rule, pointer, message);
        e.uses.extend(uses.iter().cloned());
        e.unused = uses.is_empty();
    }

    /// A finding inside the definition `def`, affecting every operation that reaches it in
    /// direction `dir`.
    pub fn add_in(
        &mut self,
        rule: &'static str,
        pointer: &str,
        message: String,
        def: &str,
        dir: Dir,
    ) {
        let e = self.entry(rule, pointer, message);
        e.defs.insert((def.to_string(), key(dir)));
    }

    /// [`Ctx::add_in`] for a finding about a declaration (judged by its name).
    pub fn add_declared(
        &mut self,
        rule: &'static str,
        pointer: &str,
        message: String,
        def: &str,
        dir: Dir,
    ) {
        let e = self.entry(rule, pointer, message);
        e.defs.insert((def.to_string(), key(dir)));
        e.declaration = true;
    }
}

/// The `$ref` targets written anywhere inside `v`.
fn refs_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(r) = x.as_str().and_then(|r| r.strip_prefix('#')) {
                        out.push(r.to_string());
                    }
                } else {
                    refs_in(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs_in(x, out)),
        _ => {}
    }
}

/// The operations (by index in [`Spec::all`]) that reach each node (pointer) in each
/// direction, following `$ref`s: their own schema and parameter nodes and every definition
/// they refer to, transitively.
fn reach(spec: &Spec) -> HashMap<(String, DirKey), Vec<u32>> {
    let mut refs: HashMap<String, Vec<String>> = HashMap::new();
    let mut by_node: HashMap<(String, DirKey), Vec<u32>> = HashMap::new();
    for (i, op) in spec.all().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        for (dir, roots) in roots(op) {
            let mut seen: HashSet<String> = HashSet::new();
            let mut queue: VecDeque<String> = roots.into();
            while let Some(n) = queue.pop_front() {
                if seen.contains(&n) {
                    continue;
                }
                let next = refs.entry(n.clone()).or_insert_with(|| {
                    let mut v = Vec::new();
                    if let Some(x) = spec.doc.pointer(&n) {
                        refs_in(x, &mut v);
                    }
                    v
                });
                queue.extend(next.iter().filter(|r| !seen.contains(*r)).cloned());
                seen.insert(n);
            }
            for n in seen {
                by_node.entry((n, key(dir))).or_default().push(i);
            }
        }
    }
    by_node
}

/// Where an operation's data starts, per direction. A webhook's request is data the API
/// sends out.
fn roots(op: &Operation) -> Vec<(Dir, Vec<String>)> {
    let mut req: Vec<String> = Vec::new();
    for p in &op.params {
        req.push(p.def.clone());
        req.push(p.schema_pointer.clone());
    }
    req.extend(op.request_schemas.iter().map(|(_, p)| p.clone()));
    let resp: Vec<String> = op.response_schemas.iter().map(|(_, p)| p.clone()).collect();
    if op.webhook.is_some() {
        vec![(Dir::Response, req)]
    } else {
        vec![(Dir::Request, req), (Dir::Response, resp)]
    }
}

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

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
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

/// Words of a path or operation id that name a flow attackers automate.
const FLOW_WORDS: [&str; 15] = [
    "login",
    "signin",
    "logon",
    "authenticate",
    "register",
    "signup",
    "otp",
    "mfa",
    "2fa",
    "checkout",
    "purchase",
    "payment",
    "transfer",
    "redeem",
    "coupon",
];

/// Whether `op` is a sensitive business flow (API6): a state-changing call of the login,
/// sign-up, password-reset, one-time-code, token, payment or redemption kind, by the words
/// of its path and operationId. `reset`, `forgot` and `recover` count only beside
/// `password` (a time estimate reset is no flow), `token` only as a path segment of its own
/// (`/oauth/token`).
fn sensitive_flow(op: &Operation) -> Option<String> {
    if !matches!(op.method.as_str(), "POST" | "PUT" | "PATCH") || op.webhook.is_some() {
        return None;
    }
    let segments: Vec<&str> = op
        .path
        .split(['/', '#', '.'])
        .filter(|s| !s.starts_with('{'))
        .collect();
    let mut ws: Vec<String> = segments.iter().flat_map(|s| words(s)).collect();
    ws.extend(words(
        op.raw
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or(""),
    ));
    // "sign in", "log in", "sign up" written as two words
    let joined: Vec<String> = ws.windows(2).map(|w| w.concat()).collect();
    if let Some(w) = ws
        .iter()
        .chain(joined.iter())
        .find(|w| FLOW_WORDS.contains(&w.as_str()))
    {
        return Some(w.clone());
    }
    let password = ws
        .iter()
        .any(|w| matches!(w.as_str(), "password" | "passwd" | "pin" | "passcode"));
    if password {
        if let Some(w) = ws
            .iter()
            .find(|w| matches!(w.as_str(), "reset" | "forgot" | "recover" | "recovery"))
        {
            return Some(format!("password {w}"));
        }
    }
    if segments.iter().any(|s| s.eq_ignore_ascii_case("token")) {
        return Some("token".into());
    }
    None
}

/// Whether any response code of `op` is one of `codes` (`4XX`-style ranges count for the
/// codes they cover when `range` is given).
fn documents(op: &Operation, codes: &[&str], range: Option<&str>) -> bool {
    op.responses
        .iter()
        .any(|c| codes.contains(&c.as_str()) || range.is_some_and(|r| c.eq_ignore_ascii_case(r)))
}

/// Pagination words: a `page_token` or `nextCursor` is an opaque position, not a credential.
const PAGING: [&str; 17] = [
    "page",
    "next",
    "prev",
    "previous",
    "continuation",
    "cursor",
    "sync",
    "pagination",
    "start",
    "resume",
    "marker",
    "delta",
    "change",
    "changes",
    "batch",
    "after",
    "before",
];

/// Whether a parameter named `name` with schema `s` carries a secret: its last word is a
/// credential word (or `card number`), it is not a pagination position, and its type can
/// hold one (a string, or untyped).
pub(crate) fn sensitive_in_url(name: &str, s: &Value) -> bool {
    let w = words(name);
    let Some(last) = w.last().map(String::as_str) else {
        return false;
    };
    let credential =
        matches!(
            last,
            "password" | "passwd" | "secret" | "token" | "cvv" | "ssn"
        ) || (last == "key" && w.len() >= 2 && w.iter().rev().nth(1).is_some_and(|p| p == "api"))
            || last == "apikey"
            || (last == "number" && w.iter().rev().nth(1).is_some_and(|p| p == "card"))
            || last == "cardnumber";
    if !credential {
        return false;
    }
    if last == "token" && w.iter().any(|x| PAGING.contains(&x.as_str())) {
        return false;
    }
    match s.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(a)) => a.iter().any(|t| t == "string"),
        _ => true,
    }
}

/// Runs every rule.
pub fn run(spec: &Spec) -> Vec<Finding> {
    let mut cx = Ctx {
        spec,
        out: BTreeMap::new(),
    };
    schemes(&mut cx);
    servers(&mut cx);
    operations(&mut cx);
    crate::schemas::check(&mut cx);
    crate::structure::check(&mut cx);
    let reach = reach(spec);
    let labels: Vec<String> = spec.all().map(Operation::label).collect();
    cx.out
        .into_iter()
        .map(|((rule, pointer), mut e)| {
            let mut ops: BTreeSet<u32> = BTreeSet::new();
            for d in &e.defs {
                if let Some(found) = reach.get(d) {
                    ops.extend(found.iter().copied());
                }
            }
            e.uses.extend(ops.into_iter().filter_map(|i| {
                labels
                    .get(usize::try_from(i).unwrap_or(usize::MAX))
                    .cloned()
            }));
            let pointer = if e.declaration {
                spec.origin_of_declaration(&pointer)
            } else {
                spec.origin_of(&pointer)
            };
            let whole = e.uses.is_empty() && !e.unused;
            Finding {
                rule,
                pointer,
                message: e.message,
                uses: e.uses.into_iter().collect(),
                line: None,
                column: None,
                whole,
            }
        })
        .collect()
}

fn schemes(cx: &mut Ctx<'_>) {
    let spec = cx.spec;
    for (name, s, ptr) in &spec.schemes {
        let users: Vec<String> = spec
            .operations
            .iter()
            .filter(|o| o.security.iter().any(|r| r.contains_key(name)))
            .map(Operation::label)
            .collect();
        let kind = s.get("type").and_then(Value::as_str).unwrap_or("");
        let scheme = lower(s.get("scheme").and_then(Value::as_str).unwrap_or(""));
        if kind == "basic" || (kind == "http" && scheme == "basic") {
            cx.add_scheme(
                "PAL-AUTH-002",
                ptr,
                format!("scheme `{name}` is HTTP Basic"),
                &users,
            );
        }
        if kind == "apiKey" && s.get("in").and_then(Value::as_str) == Some("query") {
            cx.add_scheme(
                "PAL-AUTH-003",
                ptr,
                format!("scheme `{name}` takes the key from the query"),
                &users,
            );
        }
        if kind == "oauth2" {
            let flows: Vec<(String, String)> = match s.get("flows").and_then(Value::as_object) {
                Some(f) => f
                    .keys()
                    .map(|k| (k.clone(), format!("{ptr}/flows/{}", esc(k))))
                    .collect(),
                None => s
                    .get("flow")
                    .and_then(Value::as_str)
                    .map(|f| vec![(f.to_string(), format!("{ptr}/flow"))])
                    .unwrap_or_default(),
            };
            for (f, at) in flows {
                if matches!(f.as_str(), "implicit" | "password") {
                    cx.add_scheme(
                        "PAL-AUTH-004",
                        &at,
                        format!("scheme `{name}` allows the {f} flow"),
                        &users,
                    );
                }
            }
        }
        if kind == "http" && scheme == "bearer" && s.get("bearerFormat").is_none() {
            cx.add_scheme(
                "PAL-AUTH-005",
                ptr,
                format!("scheme `{name}` does not say what bearer tokens are"),
                &users,
            );
        }
    }
}

fn servers(cx: &mut Ctx<'_>) {
    for (url, ptr) in &cx.spec.servers {
        let u = lower(url);
        if u.starts_with("http://") {
            cx.add("PAL-TLS-001", ptr, format!("`{url}` is plain http"), &[]);
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
                &[],
            );
        }
    }
}

/// A response header documented as `Access-Control-Allow-Origin: *` (by enum, default or
/// example), with its pointer, and whether credentials are allowed beside it.
fn cors_wildcards(spec: &Spec, op: &Operation) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let Some(rs) = op.raw.get("responses").and_then(Value::as_object) else {
        return out;
    };
    for (code, r) in rs {
        let (r, rptr) = crate::spec::deref_at(
            &spec.doc,
            r,
            &format!("{}/responses/{}", op.pointer, esc(code)),
        );
        let Some(h) = r.get("headers").and_then(Value::as_object) else {
            continue;
        };
        let creds = h.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("access-control-allow-credentials")
                && header_values(spec, v).iter().any(|x| x == "true")
        });
        for (k, v) in h {
            if k.eq_ignore_ascii_case("access-control-allow-origin")
                && header_values(spec, v).iter().any(|x| x == "*")
            {
                out.push((format!("{rptr}/headers/{}", esc(k)), creds));
            }
        }
    }
    out
}

/// The values a documented header is said to take (enum, default, example, const).
fn header_values(spec: &Spec, h: &Value) -> Vec<String> {
    let h = crate::spec::deref(&spec.doc, h);
    let s = h
        .get("schema")
        .map(|s| crate::spec::deref(&spec.doc, s))
        .unwrap_or(h);
    let mut out = Vec::new();
    for src in [h, s] {
        for k in ["default", "example", "const"] {
            if let Some(v) = src.get(k) {
                out.push(
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
        if let Some(a) = src.get("enum").and_then(Value::as_array) {
            out.extend(a.iter().map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            }));
        }
    }
    out
}

fn operations(cx: &mut Ctx<'_>) {
    let spec = cx.spec;
    let mut rate_headers = false;
    let mut by_path: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    let ordinary_scopes: BTreeSet<String> = spec
        .operations
        .iter()
        .filter(|o| !is_admin(o))
        .flat_map(scopes)
        .collect();
    let mut param_defs_done: HashSet<String> = HashSet::new();
    for op in spec.all() {
        let label = op.label();
        let me = std::slice::from_ref(&label);
        if op
            .response_headers
            .iter()
            .any(|h| h.contains("ratelimit") || h == "retry-after")
        {
            rate_headers = true;
        }
        if op.raw.get("deprecated") == Some(&Value::Bool(true)) {
            cx.add(
                "PAL-INV-002",
                &op.pointer,
                format!("{label} is deprecated"),
                me,
            );
        }
        if op.webhook.is_some() {
            webhook(cx, op, &label);
            continue;
        }
        by_path.entry(op.path.as_str()).or_default().push(op);
        if !op.secured() {
            cx.add(
                "PAL-AUTH-001",
                &op.pointer,
                format!("{label} requires no credential"),
                me,
            );
        } else if !documents(op, &["401", "403"], Some("4XX")) {
            cx.add(
                "PAL-RESP-001",
                &op.pointer,
                format!("{label} documents no 401 or 403"),
                me,
            );
        }
        let limited = documents(op, &["429"], Some("4XX"));
        match sensitive_flow(op) {
            Some(w) if !limited => cx.add(
                "PAL-FLOW-001",
                &op.pointer,
                format!("{label} is a `{w}` flow and documents no limit (429)"),
                me,
            ),
            // one cause, one finding: the flow rule says it for sensitive flows
            None if !limited => cx.add(
                "PAL-RESP-002",
                &op.pointer,
                format!("{label} documents no 429"),
                me,
            ),
            _ => {}
        }
        let takes_input = !op.params.is_empty() || !op.request_schemas.is_empty();
        // an operation whose only inputs are path parameters refuses a bad one with 404
        let only_path =
            op.request_schemas.is_empty() && op.params.iter().all(|p| p.location == "path");
        let refusals: &[&str] = if only_path {
            &["400", "404", "422", "default"]
        } else {
            &["400", "422", "default"]
        };
        if takes_input && !documents(op, refusals, Some("4XX")) {
            cx.add(
                "PAL-RESP-003",
                &op.pointer,
                format!("{label} documents no 400 or 422"),
                me,
            );
        }
        if !documents(op, &["500", "default"], Some("5XX")) {
            cx.add(
                "PAL-RESP-004",
                &op.pointer,
                format!("{label} documents no 500 or default"),
                me,
            );
        }
        for (at, creds) in cors_wildcards(spec, op) {
            let m = if creds {
                "any origin may read the answers, with credentials"
            } else {
                "any origin may read the answers"
            };
            cx.add("PAL-CORS-001", &at, m.to_string(), me);
        }
        if is_admin(op) && op.secured() {
            let s = scopes(op);
            if s.is_empty() || s.is_subset(&ordinary_scopes) {
                cx.add(
                    "PAL-BFLA-001",
                    &op.pointer,
                    format!("{label} needs no scope that ordinary operations lack"),
                    me,
                );
            }
        }
        callbacks(cx, op, &label);
        for p in &op.params {
            // a shared parameter is judged once, at its definition; its uses are gathered
            let first = param_defs_done.insert(p.def.clone());
            if (p.location == "path" || p.location == "query")
                && sensitive_in_url(&p.name, &p.schema)
            {
                cx.add(
                    "PAL-DATA-001",
                    &p.def,
                    format!("`{}` travels in the {}", p.name, p.location),
                    me,
                );
            }
            let n = lower(&p.name);
            let id_like =
                n == "id" || n.ends_with("_id") || n.ends_with("id") && p.name.ends_with("Id");
            // integers are sequential ids: enumerable unless a format or pattern says otherwise
            let constrained = ["format", "pattern", "enum", "const"]
                .iter()
                .any(|k| p.schema.get(k).is_some());
            if p.location == "path" && id_like && !constrained {
                cx.add(
                    "PAL-BOLA-001",
                    &p.def,
                    format!("`{}` is an unconstrained identifier", p.name),
                    me,
                );
            }
            if first {
                // the uses of its schema's findings come from the reach of each operation
                crate::schemas::check_param(cx, p);
            }
        }
    }
    if !rate_headers && spec.all().any(|o| o.webhook.is_none()) {
        cx.add(
            "PAL-RATE-001",
            "/paths",
            "no response documents a rate-limit header".into(),
            &[],
        );
    }
    for (path, ops) in by_path {
        let secured_n = ops.iter().filter(|o| o.secured()).count();
        if secured_n > 0 && secured_n < ops.len() {
            let open: Vec<String> = ops
                .iter()
                .filter(|o| !o.secured())
                .map(|o| o.label())
                .collect();
            let methods: Vec<&str> = ops
                .iter()
                .filter(|o| !o.secured())
                .map(|o| o.method.as_str())
                .collect();
            let at = ops
                .first()
                .and_then(|o| o.pointer.rsplit_once('/'))
                .map(|(base, _)| base.to_string())
                .unwrap_or_else(|| format!("/paths/{}", esc(path)));
            cx.add(
                "PAL-AUTH-006",
                &at,
                format!(
                    "{path}: {} unprotected while other methods are protected",
                    methods.join(", ")
                ),
                &open,
            );
        }
    }
}

/// Callbacks whose URL comes from the caller's request (`{$request.body#/callbackUrl}`).
fn callbacks(cx: &mut Ctx<'_>, op: &Operation, label: &str) {
    let Some(cbs) = op.raw.get("callbacks").and_then(Value::as_object) else {
        return;
    };
    for (name, cb) in cbs {
        let (cb, at) = crate::spec::deref_at(
            &cx.spec.doc,
            cb,
            &format!("{}/callbacks/{}", op.pointer, esc(name)),
        );
        let Some(m) = cb.as_object() else { continue };
        for expr in m.keys() {
            if expr.contains("$request.") {
                cx.add(
                    "PAL-CONS-001",
                    &format!("{at}/{}", esc(expr)),
                    format!("callback `{name}` is sent to `{expr}`, an address from the request"),
                    &[label.to_string()],
                );
            }
        }
    }
}

/// A webhook: what the API sends must be verifiable by its receiver.
fn webhook(cx: &mut Ctx<'_>, op: &Operation, label: &str) {
    let signed = op.secured()
        || op.params.iter().any(|p| {
            p.location == "header"
                && words(&p.name)
                    .iter()
                    .any(|w| matches!(w.as_str(), "signature" | "hmac" | "sig"))
        });
    if !signed {
        cx.add(
            "PAL-CONS-002",
            &op.pointer,
            format!("{label} documents no signature or credential its receivers can check"),
            &[label.to_string()],
        );
    }
}
