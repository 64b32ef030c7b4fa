//! Valid requests for an operation: every input from the description (examples, defaults,
//! enums, formats) or, where it names an object, from the resource graph, so that the request
//! reaches the code behind it.

use palisade_audit::spec::{deref, Operation};
use serde_json::Value;

use crate::graph::{path_kind, Graph, Who};
use crate::request::{Body, Req};
use crate::schema;

/// Headers a description may list that the scan sets itself.
const OWN_HEADERS: [&str; 6] = [
    "authorization",
    "content-type",
    "accept",
    "content-length",
    "host",
    "cookie",
];

/// A request for `op` as `who` would send it. `target` is an object of the graph the request
/// should be about (B sent A's object); other inputs that name objects are bound to `who`'s
/// own. `bound` tells whether every path parameter came from the graph (or the identity).
pub struct Built {
    /// The request.
    pub req: Req,
    /// Objects of the graph the request names.
    pub objects: Vec<usize>,
    /// Whether every path parameter was filled from something the scan saw.
    pub bound: bool,
}

/// The JSON or form body schema of an operation, and its example when the description has one.
pub fn body_schema(doc: &Value, op: &Operation) -> Option<(bool, Value, Option<Value>)> {
    let Some(rb) = op.raw.get("requestBody") else {
        return swagger2_body(doc, op);
    };
    let rb = deref(doc, rb);
    let content = rb.get("content")?.as_object()?;
    let pick = content
        .iter()
        .find(|(ct, _)| ct.starts_with("application/json") || ct.ends_with("+json"))
        .map(|(_, m)| (true, m))
        .or_else(|| {
            content
                .iter()
                .find(|(ct, _)| ct.starts_with("application/x-www-form-urlencoded"))
                .map(|(_, m)| (false, m))
        })?;
    let (json, media) = pick;
    let example = media.get("example").cloned().or_else(|| {
        media
            .get("examples")
            .and_then(Value::as_object)
            .and_then(|m| m.values().next())
            .map(|e| deref(doc, e))
            .and_then(|e| e.get("value").cloned())
    });
    Some((
        json,
        media.get("schema").cloned().unwrap_or(Value::Null),
        example,
    ))
}

/// A Swagger 2.0 body: the `in: body` parameter's schema, or the `formData` parameters as
/// the properties of a form.
fn swagger2_body(doc: &Value, op: &Operation) -> Option<(bool, Value, Option<Value>)> {
    let params: Vec<&Value> = op
        .raw
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| deref(doc, p))
        .collect();
    if let Some(b) = params
        .iter()
        .find(|p| p.get("in").and_then(Value::as_str) == Some("body"))
    {
        return Some((true, b.get("schema").cloned().unwrap_or(Value::Null), None));
    }
    let form: Vec<&&Value> = params
        .iter()
        .filter(|p| p.get("in").and_then(Value::as_str) == Some("formData"))
        .collect();
    if form.is_empty() {
        return None;
    }
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for p in form {
        let Some(name) = p.get("name").and_then(Value::as_str) else {
            continue;
        };
        props.insert(name.to_string(), (*p).clone());
        if p.get("required") == Some(&Value::Bool(true)) {
            required.push(Value::String(name.to_string()));
        }
    }
    Some((
        false,
        serde_json::json!({"type": "object", "properties": props, "required": required}),
        None,
    ))
}

/// Builds the request.
pub fn build(
    doc: &Value,
    op: &Operation,
    g: &Graph,
    who: Who,
    target: Option<usize>,
    salt: u32,
) -> Built {
    let pk = path_kind(&op.path);
    let mut objects = Vec::new();
    let mut bound = true;
    let mut req = Req {
        method: op.method.clone(),
        template: op.path.clone(),
        path: Vec::new(),
        query: Vec::new(),
        headers: Vec::new(),
        cookies: Vec::new(),
        body: Body::None,
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for p in op.params.iter().filter(|p| p.location != "formData") {
        let required = p.location == "path"
            || op
                .raw
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|x| {
                    x.get("name").and_then(Value::as_str) == Some(&p.name)
                        && x.get("required") == Some(&Value::Bool(true))
                });
        let from_graph = g.bind(&p.name, &pk, who, target);
        let has_example = ["example", "default", "enum"]
            .iter()
            .any(|k| p.schema.get(*k).is_some());
        let value = match (&from_graph, p.location.as_str()) {
            (Some((v, i)), _) => {
                objects.push(*i);
                text(v)
            }
            (None, "path") => {
                bound = false;
                match own_id(g, who, &p.name) {
                    Some(v) => {
                        bound = true;
                        v
                    }
                    None => text(&schema::value(doc, &p.schema, &p.name, salt)),
                }
            }
            (None, _) if required || has_example => {
                text(&schema::value(doc, &p.schema, &p.name, salt))
            }
            _ => continue,
        };
        match p.location.as_str() {
            "path" => req.path.push((p.name.clone(), value)),
            "query" => req.query.push((p.name.clone(), value)),
            "header" if !OWN_HEADERS.contains(&p.name.to_ascii_lowercase().as_str()) => {
                req.headers.push((p.name.to_ascii_lowercase(), value));
            }
            "cookie" => req.cookies.push((p.name.clone(), value)),
            _ => {} // formData: the body, below
        }
    }
    if let Some((json, s, example)) = body_schema(doc, op) {
        let mut v = example.unwrap_or_else(|| schema::value(doc, &s, "", salt));
        // fields that name objects: from the graph
        for ptr in schema::leaves(&v, 64) {
            let name = schema::field_name(&ptr);
            if let Some((x, i)) = g
                .bind(&name, &pk, who, target)
                .filter(|_| is_reference(&name))
            {
                if let Some(slot) = v.pointer_mut(&ptr) {
                    *slot = x;
                    objects.push(i);
                }
            }
        }
        req.body = if json {
            Body::Json(v)
        } else {
            Body::Form(
                v.as_object()
                    .map(|m| m.iter().map(|(k, x)| (k.clone(), text(x))).collect())
                    .unwrap_or_default(),
            )
        };
    }
    Built {
        req,
        objects,
        bound,
    }
}

/// Whether a body field names another object (`orderId`, `invoice_number`), rather than
/// being a property of the object being written.
fn is_reference(name: &str) -> bool {
    let w = palisade_audit::names::words(name);
    w.len() >= 2
        && matches!(
            w.last().map(String::as_str),
            Some("id" | "uuid" | "key" | "number" | "slug" | "code" | "ref")
        )
}

/// A path parameter for the identity's own account (`/users/{username}`), from the values it
/// is known by.
fn own_id(g: &Graph, who: Who, name: &str) -> Option<String> {
    let w = palisade_audit::names::words(name);
    let about_user = w
        .iter()
        .any(|x| x == "user" || x == "username" || x == "login" || x == "account");
    if let Some(me) = g.me(who) {
        if let Some(v) = me.get(name) {
            return Some(match v {
                Value::String(s) => s.clone(),
                o => o.to_string(),
            });
        }
    }
    if about_user {
        g.ids
            .iter()
            .find(|(x, _)| *x == who)
            .map(|(_, v)| v.clone())
    } else {
        None
    }
}
