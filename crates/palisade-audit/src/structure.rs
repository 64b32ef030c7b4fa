//! The format of the description before its security: required fields and their types
//! (OpenAPI 3.0, 3.1, Swagger 2.0), references that resolve, path templates that match their
//! parameters, unique operation ids, security requirements that name defined schemes, and
//! schemas that can hold. Each node is judged where it is written.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::checks::Ctx;
use crate::spec::{esc, Version, METHODS};

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The fields an object of the format may have (beside `x-` extensions), per version.
fn known_fields(version: Version, object: &str) -> &'static [&'static str] {
    match (object, version) {
        ("document", Version::Swagger2) => &[
            "swagger",
            "info",
            "host",
            "basePath",
            "schemes",
            "consumes",
            "produces",
            "paths",
            "definitions",
            "parameters",
            "responses",
            "securityDefinitions",
            "security",
            "tags",
            "externalDocs",
        ],
        ("document", Version::OpenApi30) => &[
            "openapi",
            "info",
            "servers",
            "paths",
            "components",
            "security",
            "tags",
            "externalDocs",
        ],
        ("document", Version::OpenApi31) => &[
            "openapi",
            "info",
            "jsonSchemaDialect",
            "servers",
            "paths",
            "webhooks",
            "components",
            "security",
            "tags",
            "externalDocs",
        ],
        ("path item", Version::Swagger2) => &[
            "$ref",
            "get",
            "put",
            "post",
            "delete",
            "options",
            "head",
            "patch",
            "parameters",
        ],
        ("path item", _) => &[
            "$ref",
            "summary",
            "description",
            "get",
            "put",
            "post",
            "delete",
            "options",
            "head",
            "patch",
            "trace",
            "servers",
            "parameters",
        ],
        ("operation", Version::Swagger2) => &[
            "tags",
            "summary",
            "description",
            "externalDocs",
            "operationId",
            "consumes",
            "produces",
            "parameters",
            "responses",
            "schemes",
            "deprecated",
            "security",
        ],
        ("operation", _) => &[
            "tags",
            "summary",
            "description",
            "externalDocs",
            "operationId",
            "parameters",
            "requestBody",
            "responses",
            "callbacks",
            "deprecated",
            "security",
            "servers",
        ],
        _ => &[],
    }
}

/// Fields of the object at `at` that its format does not define.
fn unknown_fields(cx: &mut Ctx<'_>, obj: &Value, at: &str, object: &str) {
    let known = known_fields(cx.spec.version, object);
    let Some(m) = obj.as_object() else { return };
    for k in m.keys() {
        if !k.starts_with("x-") && !known.contains(&k.as_str()) {
            let hint = known
                .iter()
                .find(|w| close(k, w))
                .map(|w| format!(" (did you mean `{w}`?)"))
                .unwrap_or_default();
            cx.add(
                "PAL-STRUCT-009",
                &format!("{at}/{}", esc(k)),
                format!(
                    "`{k}` is not a field of {a} {object}{hint}",
                    a = if object.starts_with('o') { "an" } else { "a" }
                ),
                &[],
            );
        }
    }
}

/// Whether two field names are one edit apart or differ only in case (a likely misspelling).
fn close(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    // edit distance at most 1 (or one transposition)
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        if a.get(i) == b.get(j) {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        if edits > 1 {
            return false;
        }
        if a.len() > b.len() {
            i += 1;
        } else if b.len() > a.len() {
            j += 1;
        } else if a.get(i + 1) == b.get(j) && a.get(i) == b.get(j + 1) {
            i += 2;
            j += 2;
        } else {
            i += 1;
            j += 1;
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}

fn bad(cx: &mut Ctx<'_>, at: &str, message: String) {
    cx.add("PAL-STRUCT-001", at, message, &[]);
}

/// `field` of the object at `at` must be present (when `required`) and of the kind `want`
/// tells; returns it when it is.
fn field<'v>(
    cx: &mut Ctx<'_>,
    obj: &'v Value,
    at: &str,
    name: &str,
    required: bool,
    want: fn(&Value) -> bool,
    what: &str,
) -> Option<&'v Value> {
    match obj.get(name) {
        None if required => {
            let whose = if at.is_empty() {
                " in the document"
            } else {
                ""
            };
            bad(cx, at, format!("`{name}` is required{whose}"));
            None
        }
        None => None,
        Some(v) if want(v) => Some(v),
        Some(v) => {
            bad(
                cx,
                &format!("{at}/{}", esc(name)),
                format!("`{name}` must be {what}, not {}", kind(v)),
            );
            None
        }
    }
}

/// Whether `code` names a response: a status, a range such as `4XX`, or `default`.
fn status_key(code: &str) -> bool {
    let b = code.as_bytes();
    code == "default"
        || code.starts_with("x-")
        || (b.len() == 3
            && b.first().is_some_and(|c| (b'1'..=b'5').contains(c))
            && (b.get(1..).is_some_and(|r| r.iter().all(u8::is_ascii_digit))
                || code.get(1..).is_some_and(|r| r.eq_ignore_ascii_case("xx"))))
}

/// Runs the structure rules.
pub(crate) fn check(cx: &mut Ctx<'_>) {
    let spec = cx.spec;
    let doc = &spec.doc;
    let version = spec.version;
    if !doc.is_object() {
        bad(
            cx,
            "",
            format!("the document must be an object, not {}", kind(doc)),
        );
        return;
    }
    unknown_fields(cx, doc, "", "document");
    if let Some(info) = field(cx, doc, "", "info", true, Value::is_object, "an object") {
        field(
            cx,
            info,
            "/info",
            "title",
            true,
            Value::is_string,
            "a string",
        );
        field(
            cx,
            info,
            "/info",
            "version",
            true,
            Value::is_string,
            "a string",
        );
    }
    let paths_required = version != Version::OpenApi31
        || (doc.get("webhooks").is_none() && doc.get("components").is_none());
    if let Some(paths) = field(
        cx,
        doc,
        "",
        "paths",
        paths_required,
        Value::is_object,
        "an object of path items",
    ) {
        for (path, item) in paths.as_object().into_iter().flatten() {
            let at = format!("/paths/{}", esc(path));
            if path.starts_with("x-") {
                continue;
            }
            if !path.starts_with('/') {
                bad(cx, &at, format!("path `{path}` must start with `/`"));
            }
            path_item(cx, item, &at, Some(path));
        }
    }
    if version == Version::OpenApi31 {
        if let Some(h) = field(
            cx,
            doc,
            "",
            "webhooks",
            false,
            Value::is_object,
            "an object of path items",
        ) {
            for (name, item) in h.as_object().into_iter().flatten() {
                path_item(cx, item, &format!("/webhooks/{}", esc(name)), None);
            }
        }
    }
    // the containers of definitions: of the kind the format says, or nothing in them is read
    type Want = fn(&Value) -> bool;
    let (object, list): (Want, Want) = (Value::is_object, Value::is_array);
    let containers: &[(&str, Want, &str)] = match version {
        Version::Swagger2 => &[
            ("definitions", object, "an object of schemas"),
            ("parameters", object, "an object of parameters"),
            ("responses", object, "an object of responses"),
            (
                "securityDefinitions",
                object,
                "an object of security schemes",
            ),
            ("tags", list, "a list"),
            ("schemes", list, "a list"),
        ],
        _ => &[
            ("components", object, "an object"),
            ("servers", list, "a list"),
            ("tags", list, "a list"),
        ],
    };
    for (name, want, what) in containers {
        field(cx, doc, "", name, false, *want, what);
    }
    if let Some(c) = doc.get("components").filter(|c| c.is_object()) {
        for k in [
            "schemas",
            "responses",
            "parameters",
            "examples",
            "requestBodies",
            "headers",
            "securitySchemes",
            "links",
            "callbacks",
            "pathItems",
        ] {
            field(
                cx,
                c,
                "/components",
                k,
                false,
                Value::is_object,
                "an object",
            );
        }
    }
    operation_ids(cx);
    security_names(cx);
    references(cx, doc, &mut String::new());
    schemas_everywhere(cx, doc, &mut String::new());
}

/// A path item and its operations; `template` is the path (none for a webhook).
fn path_item(cx: &mut Ctx<'_>, item: &Value, at: &str, template: Option<&str>) {
    if item.get("$ref").is_some() {
        return;
    }
    let Some(obj) = item.as_object() else {
        bad(
            cx,
            at,
            format!("a path item must be an object, not {}", kind(item)),
        );
        return;
    };
    let shared = parameters(cx, item, at);
    for m in METHODS {
        let Some(op) = obj.get(m) else { continue };
        let op_at = format!("{at}/{m}");
        if !op.is_object() {
            bad(
                cx,
                &op_at,
                format!("operation `{m}` must be an object, not {}", kind(op)),
            );
            continue;
        }
        unknown_fields(cx, op, &op_at, "operation");
        let own = parameters(cx, op, &op_at);
        responses(cx, op, &op_at);
        if let Some(t) = template {
            path_parameters(cx, t, &op_at, &shared, &own);
        }
    }
}

/// The `parameters` of a path item or operation: (name, in, required, pointer) of each.
fn parameters(cx: &mut Ctx<'_>, obj: &Value, at: &str) -> Vec<(String, String, bool, String)> {
    let spec = cx.spec;
    let mut out = Vec::new();
    let Some(list) = field(cx, obj, at, "parameters", false, Value::is_array, "a list") else {
        return out;
    };
    let places: &[&str] = match spec.version {
        Version::Swagger2 => &["query", "header", "path", "formData", "body"],
        _ => &["query", "header", "path", "cookie"],
    };
    for (i, p) in list.as_array().into_iter().flatten().enumerate() {
        let pat = format!("{at}/parameters/{i}");
        let (p, def) = crate::spec::deref_at(&spec.doc, p, &pat);
        if p.get("$ref").is_some() {
            continue; // reported by the reference rules
        }
        if !p.is_object() {
            bad(
                cx,
                &def,
                format!("a parameter must be an object, not {}", kind(p)),
            );
            continue;
        }
        let name = field(cx, p, &def, "name", true, Value::is_string, "a string");
        let place = field(cx, p, &def, "in", true, Value::is_string, "a string");
        if let (Some(n), Some(w)) = (name.and_then(Value::as_str), place.and_then(Value::as_str)) {
            if !places.contains(&w) {
                bad(
                    cx,
                    &format!("{def}/in"),
                    format!(
                        "`in: {w}` is not a parameter location (use {})",
                        places.join(", ")
                    ),
                );
            }
            let required = p.get("required") == Some(&Value::Bool(true));
            out.push((n.to_string(), w.to_string(), required, def.clone()));
        }
    }
    out
}

/// `{name}`s of the path template against the path parameters declared.
fn path_parameters(
    cx: &mut Ctx<'_>,
    template: &str,
    op_at: &str,
    shared: &[(String, String, bool, String)],
    own: &[(String, String, bool, String)],
) {
    let vars: BTreeSet<&str> = template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(v, _)| v))
        .collect();
    let declared: BTreeMap<&str, (bool, &str)> = shared
        .iter()
        .chain(own.iter())
        .filter(|(_, w, _, _)| w == "path")
        .map(|(n, _, r, p)| (n.as_str(), (*r, p.as_str())))
        .collect();
    for v in &vars {
        if !declared.contains_key(v) {
            cx.add(
                "PAL-STRUCT-004",
                op_at,
                format!("`{{{v}}}` of `{template}` has no `in: path` parameter"),
                &[],
            );
        }
    }
    for (n, (required, p)) in &declared {
        if !vars.contains(n) {
            cx.add(
                "PAL-STRUCT-004",
                p,
                format!("path parameter `{n}` is not in `{template}`"),
                &[],
            );
        } else if !required {
            cx.add(
                "PAL-STRUCT-004",
                p,
                format!("path parameter `{n}` must be `required: true`"),
                &[],
            );
        }
    }
}

fn responses(cx: &mut Ctx<'_>, op: &Value, at: &str) {
    let required = cx.spec.version != Version::OpenApi31;
    let Some(rs) = field(
        cx,
        op,
        at,
        "responses",
        required,
        Value::is_object,
        "an object",
    ) else {
        return;
    };
    let rs = rs.as_object();
    if rs.is_some_and(|m| m.is_empty()) && required {
        bad(
            cx,
            &format!("{at}/responses"),
            "`responses` must document at least one response".into(),
        );
    }
    for (code, r) in rs.into_iter().flatten() {
        let rat = format!("{at}/responses/{}", esc(code));
        if !status_key(code) {
            cx.add(
                "PAL-STRUCT-008",
                &rat,
                format!("`{code}` is not a status, a range or `default`"),
                &[],
            );
        }
        if !r.is_object() {
            bad(
                cx,
                &rat,
                format!("a response must be an object, not {}", kind(r)),
            );
        }
    }
}

fn operation_ids(cx: &mut Ctx<'_>) {
    let spec = cx.spec;
    let mut first: BTreeMap<&str, String> = BTreeMap::new();
    for op in spec.all() {
        if let Some(id) = op.raw.get("operationId").and_then(Value::as_str) {
            match first.get(id) {
                Some(other) => cx.add(
                    "PAL-STRUCT-005",
                    &format!("{}/operationId", op.pointer),
                    format!("`{id}` is also the id of {other}"),
                    &[op.label()],
                ),
                None => {
                    first.insert(id, op.label());
                }
            }
        }
    }
}

fn security_names(cx: &mut Ctx<'_>) {
    let spec = cx.spec;
    let defined: BTreeSet<&str> = spec.schemes.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut lists: Vec<(&Value, String, Vec<String>)> = Vec::new();
    if let Some(g) = spec.doc.get("security") {
        let all: Vec<String> = spec
            .all()
            .filter(|o| o.raw.get("security").is_none())
            .map(|o| o.label())
            .collect();
        lists.push((g, "/security".into(), all));
    }
    for op in spec.all() {
        if let Some(s) = op.raw.get("security") {
            lists.push((s, format!("{}/security", op.pointer), vec![op.label()]));
        }
    }
    for (list, at, uses) in lists {
        let Some(a) = list.as_array() else {
            bad(
                cx,
                &at,
                format!("`security` must be a list, not {}", kind(list)),
            );
            continue;
        };
        for (i, req) in a.iter().enumerate() {
            let Some(req) = req.as_object() else {
                bad(
                    cx,
                    &format!("{at}/{i}"),
                    "a security requirement must be an object".into(),
                );
                continue;
            };
            for name in req.keys() {
                if !defined.contains(name.as_str()) {
                    cx.add(
                        "PAL-STRUCT-006",
                        &format!("{at}/{i}/{}", esc(name)),
                        format!("`{name}` is not a defined security scheme"),
                        &uses,
                    );
                }
            }
        }
    }
}

/// Every `$ref`: it must resolve, and not only to other references.
/// `at` is the node's pointer, grown and cut back in place as the walk goes down and up.
fn references(cx: &mut Ctx<'_>, v: &Value, at: &mut String) {
    let len = at.len();
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref") {
                reference(cx, r, at);
            }
            for (k, x) in m {
                if k != "$ref"
                    && !(k == "example" || k == "examples" || k.starts_with("x-"))
                    && (x.is_object() || x.is_array())
                {
                    at.push('/');
                    push_token(at, k);
                    references(cx, x, at);
                    at.truncate(len);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                if x.is_object() || x.is_array() {
                    use std::fmt::Write as _;
                    let _ = write!(at, "/{i}");
                    references(cx, x, at);
                    at.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// Appends a JSON-pointer token, escaped.
fn push_token(at: &mut String, k: &str) {
    if k.contains(['~', '/']) {
        at.push_str(&esc(k));
    } else {
        at.push_str(k);
    }
}

fn reference(cx: &mut Ctx<'_>, r: &Value, at: &str) {
    let doc = &cx.spec.doc;
    let Some(r) = r.as_str() else {
        bad(
            cx,
            &format!("{at}/$ref"),
            format!("`$ref` must be a string, not {}", kind(r)),
        );
        return;
    };
    let Some(local) = r.strip_prefix('#') else {
        cx.add(
            "PAL-STRUCT-002",
            at,
            format!("`{r}` is in another file, which is not read here: audit the file from disk (`palisade audit FILE`) so that its references are followed"),
            &[],
        );
        return;
    };
    let mut chain: Vec<&str> = vec![];
    let mut cur = local;
    loop {
        let Some(t) = doc.pointer(cur) else {
            let m = if cur == local {
                format!("`{r}` resolves to nothing")
            } else {
                format!("`{r}` leads to `#{cur}`, which resolves to nothing")
            };
            cx.add("PAL-STRUCT-002", at, m, &[]);
            return;
        };
        match t
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|x| x.strip_prefix('#'))
        {
            Some(next) => {
                chain.push(cur);
                if chain.contains(&next) || chain.len() > 32 {
                    // one cycle, one finding: at its first member, and not at the references
                    // that merely lead into it
                    let in_cycle = chain.contains(&at);
                    if in_cycle && chain.iter().min() == Some(&at) {
                        cx.add(
                            "PAL-STRUCT-003",
                            at,
                            format!(
                                "`{r}` only leads to other references, in a cycle ({})",
                                chain.join(" → ")
                            ),
                            &[],
                        );
                    }
                    return;
                }
                cur = next;
            }
            None => return,
        }
    }
}

/// Finds the schemas written anywhere (under `schema` keys, and the named definitions);
/// `at` grows and is cut back in place.
fn schemas_everywhere(cx: &mut Ctx<'_>, v: &Value, at: &mut String) {
    let len = at.len();
    match v {
        Value::Object(m) => {
            let named = at == "/components/schemas" || at == "/definitions";
            for (k, x) in m {
                if k.starts_with("x-")
                    || k == "example"
                    || k == "examples"
                    || !(x.is_object() || x.is_array())
                {
                    continue;
                }
                at.push('/');
                push_token(at, k);
                if (named || k == "schema") && x.is_object() {
                    schema_tree(cx, x, at, 0);
                } else {
                    schemas_everywhere(cx, x, at);
                }
                at.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                use std::fmt::Write as _;
                let _ = write!(at, "/{i}");
                schemas_everywhere(cx, x, at);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

/// A schema and the schemas inside it.
fn schema_tree(cx: &mut Ctx<'_>, s: &Value, at: &str, depth: usize) {
    if depth > 64 {
        return;
    }
    schema(cx, s, at);
    for k in ["properties", "patternProperties"] {
        if let Some(p) = s.get(k).and_then(Value::as_object) {
            for (name, x) in p {
                schema_tree(cx, x, &format!("{at}/{k}/{}", esc(name)), depth + 1);
            }
        }
    }
    for k in ["items", "additionalProperties", "not"] {
        if let Some(x) = s.get(k).filter(|x| x.is_object()) {
            schema_tree(cx, x, &format!("{at}/{k}"), depth + 1);
        }
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(a) = s.get(k).and_then(Value::as_array) {
            for (i, x) in a.iter().enumerate() {
                schema_tree(cx, x, &format!("{at}/{k}/{i}"), depth + 1);
            }
        }
    }
}

const TYPES: [&str; 7] = [
    "string", "number", "integer", "boolean", "array", "object", "null",
];

/// One schema as written (references are judged by [`reference`]).
fn schema(cx: &mut Ctx<'_>, s: &Value, at: &str) {
    if s.get("$ref").is_some() {
        return;
    }
    let version = cx.spec.version;
    let mut problems: Vec<String> = Vec::new();
    let types: Vec<&str> = match s.get("type") {
        None => Vec::new(),
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) if version == Version::OpenApi31 => {
            a.iter().filter_map(Value::as_str).collect()
        }
        Some(other) => {
            problems.push(format!("`type` must be a string, not {}", kind(other)));
            Vec::new()
        }
    };
    for t in &types {
        let known = TYPES.contains(t) && (*t != "null" || version == Version::OpenApi31)
            || (*t == "file" && version == Version::Swagger2);
        if !known {
            problems.push(format!("`type: {t}` is not a type"));
        }
    }
    if types.contains(&"array") && s.get("items").is_none() && version != Version::OpenApi31 {
        problems.push("an array without `items`".into());
    }
    if let Some(items) = s.get("items").filter(|i| !i.is_object()) {
        problems.push(format!(
            "`items` must be a schema (an object), not {}",
            kind(items)
        ));
    }
    if let (Some(req), Some(props)) = (
        s.get("required"),
        s.get("properties").and_then(Value::as_object),
    ) {
        // a member of a composition may require what a sibling declares
        let composed = ["allOf", "anyOf", "oneOf"]
            .iter()
            .any(|k| s.get(k).is_some())
            || at.contains("/allOf/")
            || at.contains("/anyOf/")
            || at.contains("/oneOf/");
        if let Some(req) = req.as_array() {
            for n in req.iter().filter_map(Value::as_str) {
                if !props.contains_key(n)
                    && !composed
                    && s.get("additionalProperties")
                        .is_none_or(|a| a == &Value::Bool(false))
                {
                    problems.push(format!("`{n}` is required but not a property"));
                }
            }
        }
    }
    for (lo, hi) in [
        ("minLength", "maxLength"),
        ("minimum", "maximum"),
        ("minItems", "maxItems"),
        ("minProperties", "maxProperties"),
    ] {
        if let (Some(a), Some(b)) = (
            s.get(lo).and_then(Value::as_f64),
            s.get(hi).and_then(Value::as_f64),
        ) {
            if a > b {
                problems.push(format!("`{lo}` {a} is above `{hi}` {b}: no value fits"));
            }
        }
    }
    match s.get("enum") {
        Some(Value::Array(a)) if a.is_empty() => {
            problems.push("`enum` is empty: no value fits".into())
        }
        Some(Value::Array(_)) | None => {}
        Some(other) => problems.push(format!("`enum` must be a list, not {}", kind(other))),
    }
    if !problems.is_empty() {
        cx.add("PAL-STRUCT-007", at, problems.join("; "), &[]);
    }
}
