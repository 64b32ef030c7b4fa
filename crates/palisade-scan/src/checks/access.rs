//! Authorization: B and A's objects (BOLA on reads, writes, deletes and sub-resources, whether
//! the key is in the path, the query or the body), ordinary identities and the operations the
//! description reserves for privileged callers (BFLA), and properties a client should not set
//! (mass assignment).

use palisade_audit::names;
use palisade_audit::Severity;
use serde_json::{json, Map, Value};

use super::{has_path_params, secured};
use crate::build::{body_schema, build};
use crate::client::{Exchange, Refused};
use crate::graph::{is_self_path, Who};
use crate::request::{Body, Loc, Req};
use crate::schema::{self, MARK};
use crate::{Finding, Scan, API1, API3, API5};

/// Words that say an operation is for privileged callers.
const PRIVILEGE_WORDS: [&str; 12] = [
    "admin",
    "admins",
    "administrator",
    "administrators",
    "staff",
    "superuser",
    "moderator",
    "moderators",
    "internal",
    "backoffice",
    "privileged",
    "root",
];

/// Why the description reserves an operation for privileged callers, if it does: its scopes,
/// tags, id, summary, description, `x-` extensions or path say so.
pub(crate) fn privileged(op: &palisade_audit::spec::Operation) -> Option<String> {
    let has = |text: &str| {
        text.split(|c: char| !c.is_alphanumeric() && c != '_' && c != '-')
            .flat_map(names::words)
            .any(|w| PRIVILEGE_WORDS.contains(&w.as_str()))
    };
    for req in &op.security {
        for scopes in req.values().filter_map(Value::as_array) {
            if let Some(s) = scopes.iter().filter_map(Value::as_str).find(|s| has(s)) {
                return Some(format!("needs the scope `{s}`"));
            }
        }
    }
    if let Some(t) = op
        .raw
        .get("tags")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().filter_map(Value::as_str).find(|t| has(t)))
    {
        return Some(format!("is tagged `{t}`"));
    }
    for key in ["summary", "description", "operationId"] {
        if let Some(t) = op.raw.get(key).and_then(Value::as_str).filter(|t| has(t)) {
            let short: String = t.chars().take(60).collect();
            return Some(format!("is described as \"{short}\""));
        }
    }
    if let Some(obj) = op.raw.as_object() {
        for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
            if has(&v.to_string()) {
                return Some(format!("has `{k}: {v}`"));
            }
        }
    }
    if op.path.split('/').any(|s| {
        ["admin", "internal", "management", "backoffice"].contains(&s.to_ascii_lowercase().as_str())
    }) {
        return Some("is under an admin path".into());
    }
    None
}

/// The first string field of a body that is not a key: where a write's marker goes.
fn marker_field(req: &Req) -> Option<Loc> {
    req.inputs().into_iter().find_map(|(l, v)| {
        let name = l.name();
        let key = names::words(&name).last().is_some_and(|w| {
            matches!(
                w.as_str(),
                "id" | "uuid"
                    | "key"
                    | "slug"
                    | "code"
                    | "number"
                    | "email"
                    | "username"
                    | "password"
                    | "url"
                    | "uri"
            )
        });
        (matches!(l, Loc::Json(_) | Loc::Form(_))
            && v.is_string()
            && !key
            && !names::is_privileged(&name))
        .then_some(l)
    })
}

impl Scan<'_> {
    /// A GET that reads objects of this kind back, as `who`, for object `idx`.
    async fn read_back(
        &mut self,
        kind: &str,
        idx: usize,
        who: Who,
    ) -> Result<Option<Exchange>, Refused> {
        let reader = (0..self.spec.operations.len()).find(|&i| {
            let op = self.op(i);
            op.method == "GET"
                && self.graph.kind_of(&op.path) == kind
                && (has_path_params(&op) || is_self_path(&op.path))
        });
        let Some(r) = reader else { return Ok(None) };
        let op = self.op(r);
        let b = build(&self.spec.doc, &op, &self.graph, who, Some(idx), 0);
        if !b.objects.contains(&idx) && !is_self_path(&op.path) {
            return Ok(None);
        }
        Ok(Some(self.send_as(&b.req, who).await?))
    }

    pub(crate) async fn bola(&mut self) -> Result<(), Refused> {
        if self.opts.b.is_none() {
            self.skipped
                .push("BOLA: needs a second identity (--auth-b)".into());
            return Ok(());
        }
        let owned = self.graph.owned(Who::A);
        // reads are tried on objects the API had (they have data linked to them) before the
        // scan's own; writes and deletes on the scan's own first
        let (made, found): (Vec<usize>, Vec<usize>) = owned
            .iter()
            .partition(|&&i| self.graph.obj(i).is_some_and(|o| o.created_by.is_some()));
        // deletes last: the other checks still have the objects
        let mut order: Vec<usize> = (0..self.spec.operations.len()).collect();
        order.sort_by_key(|&i| {
            self.spec
                .operations
                .get(i)
                .is_some_and(|o| o.method == "DELETE")
        });
        for i in order.clone() {
            let op = self.op(i);
            let write = op.method != "GET";
            let owned: Vec<usize> = if write {
                made.iter().chain(&found).copied().collect()
            } else {
                found.iter().chain(&made).copied().collect()
            };
            if !secured(&op)
                || (write && !self.opts.allow_unsafe)
                || super::auth::is_login(&self.spec.doc, &op)
            {
                continue;
            }
            let mut tried = 0;
            for &idx in &owned {
                let Some(obj) = self.graph.obj(idx).cloned() else {
                    continue;
                };
                let created = obj.created_by == Some(Who::A);
                if tried >= 2 || (op.method == "DELETE" && !created) {
                    continue;
                }
                let salt = self.next_salt();
                let ba = build(&self.spec.doc, &op, &self.graph, Who::A, Some(idx), salt);
                if !ba.objects.contains(&idx) {
                    continue;
                }
                tried += 1;
                let kind = obj.kind.clone();
                let keyed = key_of(&obj.fields);
                let key = keyed.as_ref().map(|(_, k)| k.clone());
                let operation = ba.req.operation();
                // where the request names the object, and how objects of the kind are keyed
                let named = |f: Finding| -> Finding {
                    let f = match key.as_deref().and_then(|k| key_input(&ba.req, k)) {
                        Some(l) => f.input(l.describe()),
                        None => f,
                    };
                    match &keyed {
                        Some((field, _)) => f.object(&kind, field),
                        None => f,
                    }
                };
                if !write {
                    let ra = self.send_as(&ba.req, Who::A).await?;
                    if !ra.ok() {
                        continue;
                    }
                    let rb = self.send_as(&ba.req, Who::B).await?;
                    let shows = rb.ok()
                        && has_data(&ra.body)
                        && (rb.body == ra.body
                            || key.as_deref().is_some_and(|k| holds(&rb.body, k)));
                    if shows {
                        self.find(named(
                            Finding::new(
                                "bola.read",
                                Severity::High,
                                API1,
                                format!("{operation}: identity B reads identity A's {kind}"),
                            )
                            .at(operation)
                            .shown(vec![ra, rb]),
                        ));
                        break;
                    }
                    continue;
                }
                // B writes to A's object: with B's own valid body, and a marker to read back
                let bb = build(&self.spec.doc, &op, &self.graph, Who::B, Some(idx), salt);
                let marker = format!("{MARK}-bola-{salt}");
                let req = match marker_field(&bb.req) {
                    Some(l) => bb.req.with(&l, json!(marker)),
                    None => bb.req.clone(),
                };
                let rb = self.send_as(&req, Who::B).await?;
                if !rb.ok() {
                    continue;
                }
                // a lookup by a key in the body or query (`POST /invoices/lookup`): B reads it
                let key_in_path = key
                    .as_deref()
                    .is_some_and(|k| ba.req.path.iter().any(|(_, v)| v == k));
                if op.method == "POST"
                    && !key_in_path
                    && key.as_deref().is_some_and(|k| holds(&rb.body, k))
                {
                    self.find(named(
                        Finding::new(
                            "bola.read",
                            Severity::High,
                            API1,
                            format!("{operation}: identity B reads identity A's {kind} by its key"),
                        )
                        .at(operation)
                        .shown(vec![rb]),
                    ));
                    break;
                }
                let back = self.read_back(&kind, idx, Who::A).await?;
                if !created && matches!(op.method.as_str(), "PUT" | "PATCH") {
                    // an object the API had: A puts it back as it was
                    self.restore(&ba.req).await?;
                }
                let (confirmed, what) = match (&back, op.method.as_str()) {
                    (Some(r), "DELETE") => (matches!(r.status, 404 | 410), "deletes"),
                    (Some(r), "PUT" | "PATCH") => (r.body.contains(&marker), "changes"),
                    (Some(r), _) if r.body.contains(&marker) => (true, "changes"),
                    // an action on the object (a refund, a cancel): accepted is the flaw
                    _ => (
                        true,
                        if op.method == "DELETE" {
                            "deletes"
                        } else {
                            "acts on"
                        },
                    ),
                };
                if op.method == "DELETE" && confirmed {
                    self.graph.mark_deleted(idx);
                    self.cleanup
                        .push(format!("B deleted A's {kind} in the BOLA check"));
                }
                if confirmed {
                    let check = if op.method == "DELETE" {
                        "bola.delete"
                    } else {
                        "bola.write"
                    };
                    let mut ev = vec![rb];
                    ev.extend(back);
                    self.find(named(
                        Finding::new(
                            check,
                            Severity::Critical,
                            API1,
                            format!("{operation}: identity B {what} identity A's {kind}"),
                        )
                        .at(operation)
                        .shown(ev),
                    ));
                    break;
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn bfla(&mut self) -> Result<(), Refused> {
        for i in 0..self.spec.operations.len() {
            let op = self.op(i);
            let write = op.method != "GET";
            if !secured(&op) || (write && !self.opts.allow_unsafe) || op.method == "DELETE" {
                continue;
            }
            let Some(reason) = privileged(&op) else {
                continue;
            };
            let salt = self.next_salt();
            let ba = build(&self.spec.doc, &op, &self.graph, Who::A, None, salt);
            if !ba.bound && !write {
                continue;
            }
            // a privileged write on A's own account: A raising its own rights
            let req = if write {
                self.elevated(&op, &ba.req)
            } else {
                ba.req.clone()
            };
            let ra = self.send_as(&req, Who::A).await?;
            if !ra.ok() {
                continue;
            }
            let mut ev = vec![ra];
            if self.opts.admin.is_some() && !write {
                ev.push(self.send_as(&req, Who::Admin).await?);
            }
            let operation = req.operation();
            self.find(
                Finding::new("bfla", Severity::High, API5, format!("{operation}: an ordinary identity (A) is let in, though the operation {reason}"))
                    .at(operation)
                    .shown(ev),
            );
            if write {
                // put A's rights back as they were, as the administrator where there is one
                let mut undo = ba.req.clone();
                let me = self.graph.me(Who::A).cloned().unwrap_or_default();
                for (l, _) in ba.req.inputs() {
                    if let Some(v) = me.get(&l.name()) {
                        undo = undo.with(&l, v.clone());
                    }
                }
                let by = if self.opts.admin.is_some() {
                    Who::Admin
                } else {
                    Who::A
                };
                let r = self.send_as(&undo, by).await?;
                self.cleanup.push(format!(
                    "{}: A's rights put back by {} ({})",
                    undo.operation(),
                    by.name(),
                    r.status
                ));
            }
        }
        Ok(())
    }

    /// The request with its privileged fields set to the values that would raise the caller.
    fn elevated(&self, op: &palisade_audit::spec::Operation, req: &Req) -> Req {
        let props = body_schema(&self.spec.doc, op)
            .map(|(_, s, _)| schema::properties(&self.spec.doc, &s))
            .unwrap_or_default();
        let mut r = req.clone();
        for (l, v) in req.inputs() {
            let name = l.name();
            if !names::is_privileged(&name) {
                continue;
            }
            // within the declared values: the most privileged-sounding one
            let allowed: Vec<Value> = props
                .iter()
                .find(|(n, _, _)| *n == name)
                .and_then(|(_, s, _)| s.get("enum").and_then(Value::as_array).cloned())
                .unwrap_or_default();
            let high = allowed.iter().find(|x| {
                x.as_str().is_some_and(|s| {
                    names::words(s).iter().any(|w| {
                        PRIVILEGE_WORDS.contains(&w.as_str()) || w == "owner" || w == "manager"
                    })
                })
            });
            let value = match (high, allowed.last()) {
                (Some(h), _) => h.clone(),
                (None, Some(last)) => last.clone(),
                (None, None) => raise(&name, Some(&v)),
            };
            r = r.with(&l, value);
        }
        r
    }

    pub(crate) async fn mass_assignment(&mut self) -> Result<(), Refused> {
        for i in 0..self.spec.operations.len() {
            let op = self.op(i);
            if !matches!(op.method.as_str(), "POST" | "PUT" | "PATCH")
                || super::auth::is_login(&self.spec.doc, &op)
                || privileged(&op).is_some()
            {
                continue;
            }
            let Some((true, req_schema, _)) = body_schema(&self.spec.doc, &op) else {
                continue;
            };
            let kind = self.graph.kind_of(&op.path);
            let target = if op.method == "POST" {
                None
            } else {
                self.graph
                    .owned(Who::A)
                    .into_iter()
                    .find(|&x| self.graph.obj(x).is_some_and(|o| o.kind == kind))
            };
            if op.method != "POST" && target.is_none() {
                continue;
            }
            let salt = self.next_salt();
            let b = build(&self.spec.doc, &op, &self.graph, Who::A, target, salt);
            if !b.bound
                || target.is_some_and(|t| !b.objects.contains(&t) && !is_self_path(&op.path))
            {
                continue;
            }
            let writable: Vec<String> = schema::properties(&self.spec.doc, &req_schema)
                .into_iter()
                .filter(|(_, s, _)| !schema::read_only(s))
                .map(|(n, _, _)| n)
                .collect();
            let before: Map<String, Value> = target
                .and_then(|t| self.graph.obj(t))
                .map(|o| o.fields.clone())
                .unwrap_or_default();
            let cands = self.mass_candidates(i, &kind, &writable);
            if cands.is_empty() {
                continue;
            }
            let mut req = b.req.clone();
            let mut sent = Vec::new();
            for (name, known) in &cands {
                let v = raise(name, before.get(name).or(known.as_ref()));
                if before.get(name) == Some(&v) {
                    continue;
                }
                req = req.with(
                    &Loc::Json(format!("/{}", palisade_audit::spec::esc(name))),
                    v.clone(),
                );
                sent.push((name.clone(), v));
            }
            let w = self.send_as(&req, Who::A).await?;
            if !w.ok() {
                continue;
            }
            let created = if op.method == "POST" {
                self.learn(i, Who::A, &w, true)
            } else {
                None
            };
            let mut ev = vec![w.clone()];
            let mut answers = vec![w];
            if let Some(idx) = created.or(target) {
                if let Some(r) = self.read_back(&kind, idx, Who::A).await? {
                    ev.push(r.clone());
                    answers.push(r);
                }
            }
            let kept: Vec<String> = sent
                .iter()
                .filter(|(n, v)| answers.iter().any(|a| shows_value(&a.body, n, v)))
                .map(|(n, _)| n.clone())
                .collect();
            if !kept.is_empty() {
                let operation = req.operation();
                self.find(
                    Finding::new(
                        "mass_assignment",
                        Severity::High,
                        API3,
                        format!(
                            "{operation}: properties the client should not set are kept: {}",
                            kept.join(", ")
                        ),
                    )
                    .at(operation)
                    .input(
                        kept.iter()
                            .map(|k| format!("body field /{k}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                    .shown(ev),
                );
                // put back what can be put back
                if target.is_some() {
                    let mut undo = b.req.clone();
                    for (n, _) in &sent {
                        if let Some(v) = before.get(n) {
                            undo = undo.with(
                                &Loc::Json(format!("/{}", palisade_audit::spec::esc(n))),
                                v.clone(),
                            );
                        }
                    }
                    self.restore(&undo).await?;
                }
            }
        }
        Ok(())
    }

    /// Properties to try on a write: what answers show of this kind but the request does not
    /// take (read-only or undeclared), and the usual privileged names.
    fn mass_candidates(
        &self,
        op: usize,
        kind: &str,
        writable: &[String],
    ) -> Vec<(String, Option<Value>)> {
        let mut out: Vec<(String, Option<Value>)> = Vec::new();
        let o = self.op(op);
        let mut shown: Vec<(String, Option<Value>)> = Vec::new();
        for (s, p) in &o.response_schemas {
            if p.contains("/responses/2") {
                for (n, v, _) in schema::properties(&self.spec.doc, s) {
                    shown.push((n, v.get("example").cloned()));
                }
            }
        }
        for obj in self.graph.objs.iter().filter(|x| x.kind == kind) {
            for (k, v) in &obj.fields {
                shown.push((k.clone(), Some(v.clone())));
            }
        }
        for (n, v) in shown {
            let w = names::words(&n);
            let key_or_time = w.last().is_some_and(|l| {
                matches!(
                    l.as_str(),
                    "id" | "uuid"
                        | "at"
                        | "date"
                        | "time"
                        | "on"
                        | "hash"
                        | "password"
                        | "count"
                        | "url"
                )
            });
            if writable.contains(&n) || key_or_time || out.iter().any(|(x, _)| *x == n) {
                continue;
            }
            if names::is_privileged(&n)
                || v.as_ref().is_some_and(|x| x.is_boolean() || x.is_number())
            {
                out.push((n, v));
            }
        }
        if !out.iter().any(|(n, _)| names::is_privileged(n)) {
            for n in ["role", "isAdmin", "is_admin"] {
                if !writable.iter().any(|w| w == n) {
                    out.push((n.to_string(), None));
                }
            }
        }
        out.truncate(8);
        out
    }
}

/// A value that would raise the caller, of the type the field has.
fn raise(name: &str, current: Option<&Value>) -> Value {
    match current {
        Some(Value::Bool(_)) => json!(true),
        Some(Value::Number(n)) => json!(n.as_f64().unwrap_or(0.0) as i64 + 1_000_000),
        Some(Value::Array(_)) => json!(["admin"]),
        _ => {
            let w = names::words(name);
            if w.first().is_some_and(|f| f == "is" || f == "has")
                || w.iter()
                    .any(|x| x == "verified" || x == "admin" || x == "staff" || x == "superuser")
            {
                json!(true)
            } else if w.iter().any(|x| x == "balance" || x == "credit") {
                json!(1_000_000)
            } else if w
                .iter()
                .any(|x| x == "roles" || x == "permissions" || x == "scopes" || x == "groups")
            {
                json!(["admin"])
            } else {
                json!("admin")
            }
        }
    }
}

/// Whether a JSON answer shows `name` with the value `v` (at any depth).
fn shows_value(body: &str, name: &str, v: &Value) -> bool {
    let Ok(doc) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    fn walk(x: &Value, name: &str, v: &Value, depth: usize) -> bool {
        if depth > 8 {
            return false;
        }
        match x {
            Value::Object(m) => {
                m.get(name).is_some_and(|y| y == v)
                    || m.values().any(|y| walk(y, name, v, depth + 1))
            }
            Value::Array(a) => a.iter().any(|y| walk(y, name, v, depth + 1)),
            _ => false,
        }
    }
    walk(&doc, name, v, 0)
}

/// Whether an answer has something in it (not `[]`, `{}`, `null` or nothing).
fn has_data(body: &str) -> bool {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(a)) => !a.is_empty(),
        Ok(Value::Object(m)) => !m.is_empty(),
        Ok(Value::Null) => false,
        Ok(_) => true,
        Err(_) => !body.trim().is_empty(),
    }
}

/// Whether a JSON answer holds `key` as one of its values (a number or a string), not just
/// somewhere in its text.
fn holds(body: &str, key: &str) -> bool {
    fn walk(v: &Value, key: &str, depth: usize) -> bool {
        match v {
            Value::String(s) => s == key,
            Value::Number(n) => n.to_string() == key,
            Value::Array(a) if depth < 8 => a.iter().any(|x| walk(x, key, depth + 1)),
            Value::Object(m) if depth < 8 => m.values().any(|x| walk(x, key, depth + 1)),
            _ => false,
        }
    }
    serde_json::from_str::<Value>(body).is_ok_and(|v| walk(&v, key, 0))
}

/// An object's key as text, to look for in answers.
/// The field that keys an object, and its value as text.
fn key_of(fields: &Map<String, Value>) -> Option<(String, String)> {
    ["id", "pk", "uuid", "slug", "username", "number", "code"]
        .iter()
        .find_map(|k| fields.get_key_value(*k))
        .or_else(|| {
            fields.iter().find(|(k, _)| {
                names::words(k)
                    .last()
                    .is_some_and(|w| w == "id" || w == "number")
            })
        })
        .map(|(k, v)| {
            (
                k.clone(),
                match v {
                    Value::String(s) => s.clone(),
                    o => o.to_string(),
                },
            )
        })
}

/// The input of `req` that carries `key` (a path or query parameter, a body field).
fn key_input(req: &Req, key: &str) -> Option<Loc> {
    if let Some((n, _)) = req.path.iter().find(|(_, v)| v == key) {
        return Some(Loc::Path(n.clone()));
    }
    if let Some((n, _)) = req.query.iter().find(|(_, v)| v == key) {
        return Some(Loc::Query(n.clone()));
    }
    match &req.body {
        Body::Json(Value::Object(m)) => m
            .iter()
            .find(|(_, v)| match v {
                Value::String(s) => s == key,
                o => serde_json::to_string(o).is_ok_and(|t| t == key),
            })
            .map(|(k, _)| Loc::Json(format!("/{k}"))),
        Body::Form(f) => f
            .iter()
            .find(|(_, v)| v == key)
            .map(|(k, _)| Loc::Form(k.clone())),
        _ => None,
    }
}
