//! The rules on schemas: bounds and open objects judged by type where a schema is written
//! (once, however many operations use it), and the rules on a property's name (privileged,
//! secret, URL) judged where the property is declared, with its type, format, enumeration
//! and the object it is in as context.

use std::collections::HashSet;

use serde_json::Value;

use crate::checks::{Ctx, Dir};
use crate::names;
use crate::spec::{esc, Param};

/// A schema reached by the walk.
#[derive(Clone)]
struct Node<'v> {
    /// The schema, references followed.
    s: &'v Value,
    /// Its pointer (the definition's, for a reference).
    ptr: String,
    /// Where it is named: the property or parameter that holds it (the `$ref` itself).
    site: String,
    /// The property's name, if it is one.
    name: Option<&'v str>,
    /// The name of the property whose object holds this one.
    parent: Option<&'v str>,
    /// The definition `ptr` is in, and the one `site` is in.
    def: String,
    site_def: String,
    /// Whether the schema is seen for the first time (its own rules run once).
    first: bool,
}

#[allow(clippy::too_many_arguments)]
fn walk<'v>(
    doc: &'v Value,
    schema: &'v Value,
    site: &str,
    name: Option<&'v str>,
    parent: Option<&'v str>,
    site_def: &str,
    seen: &mut HashSet<String>,
    depth: usize,
    f: &mut dyn FnMut(&Node<'v>),
) {
    if depth > 32 {
        return;
    }
    let (s, ptr, def) = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with("#/") => {
            let (t, p) = crate::spec::deref_at(doc, schema, site);
            (t, p.clone(), p)
        }
        _ => (schema, site.to_string(), site_def.to_string()),
    };
    let first = seen.insert(ptr.clone());
    f(&Node {
        s,
        ptr: ptr.clone(),
        site: site.to_string(),
        name,
        parent,
        def: def.clone(),
        site_def: site_def.to_string(),
        first,
    });
    if !first {
        return;
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let at = format!("{ptr}/properties/{}", esc(k));
            walk(
                doc,
                v,
                &at,
                Some(k.as_str()),
                name,
                &def,
                seen,
                depth + 1,
                f,
            );
        }
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        walk(
            doc,
            items,
            &format!("{ptr}/items"),
            name,
            parent,
            &def,
            seen,
            depth + 1,
            f,
        );
    }
    for k in ["allOf", "oneOf", "anyOf"] {
        if let Some(a) = s.get(k).and_then(Value::as_array) {
            for (i, sub) in a.iter().enumerate() {
                let at = format!("{ptr}/{k}/{i}");
                walk(doc, sub, &at, name, parent, &def, seen, depth + 1, f);
            }
        }
    }
    if let Some(ap) = s.get("additionalProperties").filter(|v| v.is_object()) {
        let at = format!("{ptr}/additionalProperties");
        walk(doc, ap, &at, name, parent, &def, seen, depth + 1, f);
    }
}

pub(crate) fn types(s: &Value) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// How a message names a schema of type `kind`: by its property, its definition, or its
/// place (never an empty name).
fn what(n: &Node<'_>, kind: &str) -> String {
    if let Some(name) = n.name {
        return format!("{kind} `{name}`");
    }
    let tail: Vec<&str> = n.ptr.rsplit('/').take(3).collect();
    match tail.as_slice() {
        ["items", ..] => format!("{kind} of the array items"),
        [x, "schemas" | "definitions", ..] => {
            format!("{kind} `{}`", crate::spec::unesc(x))
        }
        ["schema", ..] => format!("the body ({kind})"),
        _ => format!("a {kind}"),
    }
}

/// Values of a `role`-like enumeration that grant privileges.
const PRIVILEGED_VALUES: [&str; 12] = [
    "admin",
    "administrator",
    "owner",
    "root",
    "superuser",
    "super",
    "staff",
    "moderator",
    "manager",
    "maintainer",
    "sudo",
    "superadmin",
];

/// Words of a resource whose purpose is to grant access to others (a collaboration, a
/// membership, a share link): its `role` or `permissions` are what the call is for, checked
/// by the service against the caller's own rights, not a privilege the caller sets itself.
const GRANTING: [&str; 18] = [
    "collaboration",
    "collaborations",
    "collaborator",
    "collaborators",
    "membership",
    "memberships",
    "member",
    "members",
    "invite",
    "invites",
    "invitation",
    "invitations",
    "share",
    "shared",
    "sharing",
    "link",
    "grant",
    "grants",
];

/// Whether the schema at `site` (with its parent property `parent`) belongs to a resource
/// that grants access: by the path of an inline schema, the name of the definition, or the
/// parent property (`shared_link.permissions`).
fn granting(site: &str, parent: Option<&str>) -> bool {
    let mut ws: Vec<String> = parent.map(names::words).unwrap_or_default();
    let mut tokens = site.split('/').skip(1);
    match (tokens.next(), tokens.next()) {
        (Some("paths"), Some(path)) => {
            ws.extend(
                path.replace("~1", "/")
                    .split('/')
                    .filter(|s| !s.starts_with('{'))
                    .flat_map(names::words),
            );
        }
        (Some("components"), Some(_)) => {
            ws.extend(tokens.next().map(names::words).unwrap_or_default());
        }
        (Some("definitions"), Some(name)) => ws.extend(names::words(name)),
        _ => {}
    }
    ws.iter().any(|w| GRANTING.contains(&w.as_str()))
}

/// Whether a client-writable property `name` with schema `s` (in the object named `parent`)
/// carries privileges: its name says so ([`names::is_privileged`]), and the context does not
/// say otherwise: not read-only, not a label of an SELinux context (`seLinuxOptions.role`),
/// not the `role` or `permissions` of a resource that grants access to others ([`granting`]),
/// not an object of `can_…` settings of the resource (`permissions: {can_download}`), and not
/// an enumeration that names no privileged value (`role: [host, attendee]`).
fn privileged(doc: &Value, name: &str, s: &Value, parent: Option<&str>, site: &str) -> bool {
    if !names::is_privileged(name) || s.get("readOnly") == Some(&Value::Bool(true)) {
        return false;
    }
    let w = names::words(name).join("_");
    if matches!(
        w.as_str(),
        "role" | "roles" | "permissions" | "groups" | "scopes"
    ) && granting(site, parent)
    {
        return false;
    }
    // `permissions: {can_download: …}`: what others may do with this resource, set by its
    // owner, not privileges of the caller
    let resolved = crate::spec::deref(doc, s);
    if let Some(props) = resolved.get("properties").and_then(Value::as_object) {
        if !props.is_empty()
            && props.keys().all(|k| {
                names::words(k)
                    .first()
                    .is_some_and(|f| matches!(f.as_str(), "can" | "allow" | "allowed"))
            })
        {
            return false;
        }
    }
    if let Some(p) = parent {
        let w = names::words(p).concat();
        if w.contains("selinux") || w.contains("securitycontext") {
            return false;
        }
    }
    let items = s.get("items").map(|i| crate::spec::deref(doc, i));
    let enumeration = s
        .get("enum")
        .or_else(|| items.and_then(|i| i.get("enum")))
        .and_then(Value::as_array);
    if let Some(values) = enumeration {
        return values.iter().filter_map(Value::as_str).any(|v| {
            names::words(v)
                .iter()
                .any(|w| PRIVILEGED_VALUES.contains(&w.as_str()))
        });
    }
    true
}

/// Whether a property `name` with schema `s`, sent to clients, is a secret itself: its last
/// word is `password`, `passwd` or `secret` (or it is a private key), and it holds a string
/// (not a flag such as `password_set: true`, a date, or an object describing a secret).
fn secret_out(name: &str, s: &Value) -> bool {
    let w = names::words(name);
    let last = w.last().map(String::as_str).unwrap_or("");
    let secret_word = matches!(last, "password" | "passwd" | "secret")
        || (last == "key" && w.iter().rev().nth(1).is_some_and(|p| p == "private"));
    if !secret_word || s.get("writeOnly") == Some(&Value::Bool(true)) {
        return false;
    }
    let t = types(s);
    let stringy = if t.is_empty() {
        s.get("properties").is_none() && s.get("items").is_none() && s.get("allOf").is_none()
    } else {
        t.contains(&"string")
    };
    stringy
        && !matches!(
            s.get("format").and_then(Value::as_str),
            Some("date" | "date-time" | "uri" | "uuid")
        )
}

fn request_rules(cx: &mut Ctx<'_>, n: &Node<'_>, param_root: bool) {
    let s = n.s;
    let t = types(s);
    let prop = n.name.unwrap_or("");
    if n.first {
        let bounded_format = matches!(
            s.get("format").and_then(Value::as_str),
            Some("uuid" | "date" | "date-time" | "byte" | "email" | "ipv4" | "ipv6" | "time")
        );
        if t.contains(&"string")
            && ["maxLength", "enum", "const", "pattern"]
                .iter()
                .all(|k| s.get(k).is_none())
            && !bounded_format
        {
            cx.add_in(
                "PAL-LIMIT-001",
                &n.ptr,
                format!("{} has no maxLength", what(n, "string")),
                &n.def,
                Dir::Request,
            );
        }
        if t.contains(&"array") && s.get("maxItems").is_none() {
            cx.add_in(
                "PAL-LIMIT-002",
                &n.ptr,
                format!("{} has no maxItems", what(n, "array")),
                &n.def,
                Dir::Request,
            );
        }
        if (t.contains(&"integer") || t.contains(&"number"))
            && ["maximum", "exclusiveMaximum", "enum", "const"]
                .iter()
                .all(|k| s.get(k).is_none())
        {
            cx.add_in(
                "PAL-LIMIT-003",
                &n.ptr,
                format!("{} has no maximum", what(n, "number")),
                &n.def,
                Dir::Request,
            );
        }
        if t.contains(&"object")
            && s.get("properties").is_some()
            && s.get("additionalProperties") != Some(&Value::Bool(false))
            && s.get("unevaluatedProperties") != Some(&Value::Bool(false))
        {
            cx.add_in(
                "PAL-MASS-001",
                &n.ptr,
                format!(
                    "{} accepts properties it does not declare",
                    what(n, "object")
                ),
                &n.def,
                Dir::Request,
            );
        }
    }
    // the name rules, where the property is declared
    if n.name.is_some() && !param_root && privileged(&cx.spec.doc, prop, s, n.parent, &n.site) {
        cx.add_declared(
            "PAL-MASS-002",
            &n.site,
            format!("`{prop}` can be set by the client"),
            &n.site_def,
            Dir::Request,
        );
    }
    if t.iter().all(|x| *x == "string")
        && names::takes_url(prop, s)
        && (n.name.is_some() || s.get("format").is_some())
    {
        cx.add_declared(
            "PAL-SSRF-001",
            &n.site,
            format!("{} takes a URL", what(n, "string")),
            &n.site_def,
            Dir::Request,
        );
    }
}

fn response_rules(cx: &mut Ctx<'_>, n: &Node<'_>) {
    if let Some(prop) = n.name {
        if secret_out(prop, n.s) {
            cx.add_declared(
                "PAL-MASS-003",
                &n.site,
                format!("`{prop}` is returned to clients"),
                &n.site_def,
                Dir::Response,
            );
        }
    }
}

/// The schema of a parameter (once per definition).
pub(crate) fn check_param<'a>(cx: &mut Ctx<'a>, p: &'a Param) {
    let doc = &cx.spec.doc;
    let mut seen = HashSet::new();
    let mut nodes: Vec<Node<'a>> = Vec::new();
    let at = p.schema_pointer.as_str();
    walk(
        doc,
        &p.schema,
        at,
        Some(p.name.as_str()),
        None,
        at,
        &mut seen,
        0,
        &mut |n| nodes.push(n.clone()),
    );
    for n in nodes {
        let root = n.site == at;
        request_rules(cx, &n, root);
    }
}

/// The request and response schemas of every operation.
pub(crate) fn check(cx: &mut Ctx<'_>) {
    let spec = cx.spec;
    let doc = &spec.doc;
    let mut seen_in: HashSet<String> = HashSet::new();
    let mut seen_out: HashSet<String> = HashSet::new();
    let mut found: Vec<(Node<'_>, Dir)> = Vec::new();
    for op in spec.all() {
        // a webhook's request is data the API sends; what receivers answer is theirs
        let lists: Vec<(&Vec<(Value, String)>, Dir)> = if op.webhook.is_some() {
            vec![(&op.request_schemas, Dir::Response)]
        } else {
            vec![
                (&op.request_schemas, Dir::Request),
                (&op.response_schemas, Dir::Response),
            ]
        };
        for (list, dir) in lists {
            for (s, ptr) in list {
                let seen = if dir == Dir::Request {
                    &mut seen_in
                } else {
                    &mut seen_out
                };
                walk(doc, s, ptr, None, None, ptr, seen, 0, &mut |n| {
                    found.push((n.clone(), dir))
                });
            }
        }
    }
    for (n, dir) in found {
        match dir {
            Dir::Request => request_rules(cx, &n, false),
            Dir::Response => response_rules(cx, &n),
        }
    }
}
