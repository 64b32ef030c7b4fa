//! Palisade's positive security model: the `contract` policy enforces an OpenAPI description
//! (3.0 or 3.1, YAML or JSON) on requests. Operations the description does not have are
//! refused; path and query parameters are checked by their schemas (undocumented query
//! parameters refused unless allowed); the body must have a declared content type, respect
//! JSON limits (checked on the raw bytes) and its JSON Schema, and may not set `readOnly`
//! properties. Refusals name the field and the rule, never the value.

mod coverage;
pub mod soap;
pub mod validate;
pub mod xsd;

use http::{HeaderValue, StatusCode};
use palisade_audit::spec::{self, deref, Operation};
use palisade_core::form;
use palisade_core::policies::SpecError;
use palisade_core::uri;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};
use serde::Deserialize;
use serde_json::Value;

pub use validate::Limits;

/// Refusal code: the description has no such operation.
pub const UNKNOWN_OPERATION: &str = "contract.unknown_operation";
/// Refusal code: a parameter or the body breaks the description.
pub const INVALID_REQUEST: &str = "contract.invalid_request";
/// Refusal code: a content type the operation does not declare.
pub const UNSUPPORTED_MEDIA_TYPE: &str = "contract.unsupported_media_type";

/// Config of the `contract` policy (the description's text is read by the config loader).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractSpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// The OpenAPI file, relative to the config file.
    pub spec: String,
    /// A path prefix removed before matching the description's paths (e.g. `/api`).
    #[serde(default)]
    pub base_path: Option<String>,
    /// Objects without `additionalProperties` accept no unknown property. Default false.
    #[serde(default)]
    pub strict: bool,
    /// Let undocumented query parameters through. Default false (refused).
    #[serde(default)]
    pub allow_unknown_query: bool,
    /// Refuse request headers the operation does not document, beyond the standard HTTP
    /// ones (`Accept`, `Authorization`, `User-Agent` …). Default false: browsers and client
    /// libraries send many headers of their own.
    #[serde(default)]
    pub refuse_unknown_headers: bool,
    /// Deepest JSON nesting. Default 32.
    #[serde(default)]
    pub max_depth: Option<usize>,
    /// Most keys in a JSON object. Default 1000.
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// Most items in a JSON array. Default 10000.
    #[serde(default)]
    pub max_items: Option<usize>,
    /// Longest JSON string in bytes. Default 65536.
    #[serde(default)]
    pub max_string: Option<usize>,
    /// Check responses against the description: undocumented status codes and bodies that
    /// break their schema become 502. Default false.
    #[serde(default)]
    pub validate_responses: bool,
    /// With `validate_responses`: properties the description does not declare (and
    /// `writeOnly` ones) are `strip`ped (default) or make the response `refuse`d.
    #[serde(default)]
    pub undocumented_properties: Option<Undocumented>,
    /// Replace error bodies that carry stack traces or database errors with a generic problem
    /// response. Default true.
    #[serde(default)]
    pub scrub_errors: Option<bool>,
    /// Builds the contract although the description uses schema keywords it does not
    /// enforce, or patterns it cannot compile (each is logged and then not checked).
    /// Default false: `validate` names every such place.
    #[serde(default)]
    pub dangerous_allow_unenforced_schema: bool,
}

/// What happens to response properties the description does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Undocumented {
    /// Removed from the response.
    Strip,
    /// The response is refused (502).
    Refuse,
}

/// The body of a Swagger 2.0 operation as media types and their schemas: an `in: body`
/// parameter under each type the operation (or the document) `consumes`, default JSON; or
/// its `formData` parameters as the object a form body spells, under the form types it
/// consumes (default urlencoded). Whether a body is required.
fn swagger2_body(doc: &Value, o: &Operation) -> (Vec<(String, Value)>, bool) {
    let consumes: Vec<String> = o
        .raw
        .get("consumes")
        .or_else(|| doc.get("consumes"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|m| m.split(';').next().unwrap_or(m).trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let raw_params = |loc: &str| -> Vec<Value> {
        o.raw
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| deref(doc, p).clone())
            .filter(|p| p.get("in").and_then(Value::as_str) == Some(loc))
            .collect()
    };
    if let Some(body) = raw_params("body").first() {
        let schema = body.get("schema").cloned().unwrap_or(Value::Null);
        let types = if consumes.is_empty() {
            vec!["application/json".to_string()]
        } else {
            consumes
        };
        let required = body.get("required") == Some(&Value::Bool(true));
        return (
            types.into_iter().map(|t| (t, schema.clone())).collect(),
            required,
        );
    }
    // formData parameters (path-level ones are in the operation's list as the loader reads it)
    let form: Vec<&palisade_audit::spec::Param> = o
        .params
        .iter()
        .filter(|p| p.location == "formData")
        .collect();
    if form.is_empty() {
        return (Vec::new(), false);
    }
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for p in &form {
        let mut sch = p.schema.clone();
        if let Some(m) = sch.as_object_mut() {
            for k in [
                "name",
                "in",
                "required",
                "description",
                "allowEmptyValue",
                "collectionFormat",
            ] {
                m.remove(k);
            }
            if m.get("type").and_then(Value::as_str) == Some("file") {
                m.insert("type".into(), Value::String("string".into()));
            }
        }
        props.insert(p.name.clone(), sch);
        if raw_params("formData").iter().any(|r| {
            r.get("name").and_then(Value::as_str) == Some(&p.name)
                && r.get("required") == Some(&Value::Bool(true))
        }) {
            required.push(Value::String(p.name.clone()));
        }
    }
    let schema = serde_json::json!({"type": "object", "properties": props, "required": required});
    let mut types: Vec<String> = consumes
        .into_iter()
        .filter(|t| t == "application/x-www-form-urlencoded" || t == "multipart/form-data")
        .collect();
    if types.is_empty() {
        types.push("application/x-www-form-urlencoded".into());
    }
    let any_required = !required.is_empty();
    (
        types.into_iter().map(|t| (t, schema.clone())).collect(),
        any_required,
    )
}

/// Refusal code: the upstream's answer breaks the description.
pub const INVALID_RESPONSE: &str = "contract.invalid_response";
/// Annotation code when an error body was replaced.
pub const ERROR_SCRUBBED: &str = "contract.error_scrubbed";

#[derive(Debug)]
struct Op {
    method: String,
    segments: Vec<Option<String>>, // None: a parameter
    literal: usize,
    op: Operation,
    body_required: bool,
    media: Vec<(String, Value)>, // content type, schema
    /// Whether the description marks it `deprecated` (a call to it is a zombie call).
    deprecated: bool,
    /// Calls matched to it, and the first and last (Unix seconds), for the inventory.
    calls: std::sync::atomic::AtomicU64,
    first_seen: std::sync::atomic::AtomicU64,
    last_seen: std::sync::atomic::AtomicU64,
}

/// One undocumented operation seen.
#[derive(Debug, Clone, serde::Serialize)]
struct Seen {
    count: u64,
    first_seen: u64,
    last_seen: u64,
}

const INVENTORY_MAX: usize = 10_000;

/// The runtime `contract` policy.
#[derive(Debug)]
pub struct Contract {
    inventory: std::sync::Mutex<std::collections::BTreeMap<(String, String), Seen>>,
    doc: Value,
    ops: Vec<Op>,
    base: String,
    strict: bool,
    allow_unknown_query: bool,
    refuse_unknown_headers: bool,
    /// Headers the description's API-key security schemes name (documented by them).
    key_headers: Vec<String>,
    limits: Limits,
    validate_responses: bool,
    undocumented: Undocumented,
    scrub_errors: bool,
}

impl ContractSpec {
    /// Builds the policy from the description's text; `$ref`s to other files are resolved
    /// relative to `dir`.
    pub fn build(
        &self,
        text: &str,
        dir: Option<&std::path::Path>,
    ) -> Result<Contract, Vec<SpecError>> {
        if self
            .max_depth
            .is_some_and(|d| d == 0 || d > palisade_core::json::MAX_DEPTH)
        {
            return Err(vec![SpecError::new(
                "max_depth",
                format!(
                    "must be from 1 to {}, the bound of every JSON reader of the gateway",
                    palisade_core::json::MAX_DEPTH
                ),
            )]);
        }
        let s = spec::load_from(text, dir).map_err(|e| vec![SpecError::new("spec", e)])?;
        let unenforced = coverage::unenforced(&s.doc);
        if !unenforced.is_empty() {
            if !self.dangerous_allow_unenforced_schema {
                const SHOWN: usize = 20;
                let mut errs: Vec<SpecError> = unenforced
                    .iter()
                    .take(SHOWN)
                    .map(|p| SpecError::new("spec", format!("{p}; fix the description or set dangerous_allow_unenforced_schema: true")))
                    .collect();
                if unenforced.len() > SHOWN {
                    errs.push(SpecError::new(
                        "spec",
                        format!(
                            "… and {} more places the contract cannot enforce",
                            unenforced.len() - SHOWN
                        ),
                    ));
                }
                return Err(errs);
            }
            for p in &unenforced {
                tracing::warn!(spec = %self.spec, "contract: not enforced (dangerous_allow_unenforced_schema): {p}");
            }
        }
        if s.operations.is_empty() {
            return Err(vec![SpecError::new(
                "spec",
                "the description has no operations",
            )]);
        }
        let mut ops = Vec::new();
        for o in &s.operations {
            let segments: Vec<Option<String>> = o
                .path
                .split('/')
                .skip(1)
                .map(|seg| (!(seg.starts_with('{') && seg.ends_with('}'))).then(|| seg.to_string()))
                .collect();
            let literal = segments.iter().filter(|x| x.is_some()).count();
            let rb = o.raw.get("requestBody").map(|r| deref(&s.doc, r));
            let (media, body_required) = if s.version == spec::Version::Swagger2 {
                swagger2_body(&s.doc, o)
            } else {
                (
                    rb.and_then(|r| r.get("content"))
                        .and_then(Value::as_object)
                        .map(|c| {
                            c.iter()
                                .map(|(k, v)| {
                                    (
                                        k.to_ascii_lowercase(),
                                        v.get("schema").cloned().unwrap_or(Value::Null),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    rb.and_then(|r| r.get("required")) == Some(&Value::Bool(true)),
                )
            };
            ops.push(Op {
                method: o.method.clone(),
                segments,
                literal,
                deprecated: o.raw.get("deprecated") == Some(&Value::Bool(true)),
                op: o.clone(),
                body_required,
                media,
                calls: Default::default(),
                first_seen: Default::default(),
                last_seen: Default::default(),
            });
        }
        // more literal segments first: /users/me before /users/{id}
        ops.sort_by_key(|o| std::cmp::Reverse(o.literal));
        let key_headers: Vec<String> = s
            .doc
            .pointer("/components/securitySchemes")
            .or_else(|| s.doc.get("securityDefinitions"))
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|s| {
                s.get("type").and_then(Value::as_str) == Some("apiKey")
                    && s.get("in").and_then(Value::as_str) == Some("header")
            })
            .filter_map(|s| s.get("name").and_then(Value::as_str))
            .map(str::to_ascii_lowercase)
            .collect();
        let d = Limits::default();
        Ok(Contract {
            inventory: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            doc: s.doc,
            ops,
            base: self
                .base_path
                .clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
            strict: self.strict,
            allow_unknown_query: self.allow_unknown_query,
            refuse_unknown_headers: self.refuse_unknown_headers,
            key_headers,
            limits: Limits {
                max_depth: self.max_depth.unwrap_or(d.max_depth),
                max_keys: self.max_keys.unwrap_or(d.max_keys),
                max_items: self.max_items.unwrap_or(d.max_items),
                max_string: self.max_string.unwrap_or(d.max_string),
            },
            validate_responses: self.validate_responses,
            undocumented: self.undocumented_properties.unwrap_or(Undocumented::Strip),
            scrub_errors: self.scrub_errors.unwrap_or(true),
        })
    }
}

/// The refusal of an answer that breaks the description: an upstream bug operators must see,
/// so it is logged with what failed (never a value).
fn bad_response(detail: &str, x: &Exchange) -> Rejection {
    tracing::warn!(code = INVALID_RESPONSE, detail, request_id = %x.request_id, route = %x.route, "the upstream's answer breaks the API description");
    refused_response(detail)
}

fn refused_response(detail: &str) -> Rejection {
    Rejection::new(
        StatusCode::BAD_GATEWAY,
        INVALID_RESPONSE,
        "Upstream response does not match the API contract",
    )
    .with_detail(detail.to_string())
}

/// Removes properties a schema does not declare (and `writeOnly` ones) from a response value.
/// Trees come from `palisade_core::json::parse` (bounded depth); schemas that refer to
/// themselves are followed at most as deep.
fn strip(doc: &Value, schema: &Value, v: &mut Value, removed: &mut usize, depth: usize) {
    if depth > palisade_core::json::MAX_DEPTH {
        return;
    }
    let s = deref(doc, schema);
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(subs) = s.get(key).and_then(Value::as_array) {
            // keep what any alternative declares: strip only against the merged properties
            let mut merged = serde_json::Map::new();
            for sub in subs {
                if let Some(p) = deref(doc, sub).get("properties").and_then(Value::as_object) {
                    merged.extend(p.clone());
                }
            }
            if let Some(p) = s.get("properties").and_then(Value::as_object) {
                merged.extend(p.clone());
            }
            let combined = serde_json::json!({"type": "object", "properties": merged});
            strip(doc, &combined, v, removed, depth + 1);
            return;
        }
    }
    match v {
        Value::Object(m) => {
            let Some(props) = s.get("properties").and_then(Value::as_object) else {
                return;
            };
            let open = matches!(
                s.get("additionalProperties"),
                Some(Value::Bool(true)) | Some(Value::Object(_))
            );
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                match props.get(&k) {
                    Some(ps) if deref(doc, ps).get("writeOnly") == Some(&Value::Bool(true)) => {
                        m.remove(&k);
                        *removed += 1;
                    }
                    Some(ps) => {
                        if let Some(child) = m.get_mut(&k) {
                            strip(doc, ps, child, removed, depth + 1);
                        }
                    }
                    None if !open => {
                        m.remove(&k);
                        *removed += 1;
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for it in items.iter_mut() {
                    strip(doc, is, it, removed, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn invalid(detail: String) -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        INVALID_REQUEST,
        "Request does not match the API contract",
    )
    .with_detail(detail)
}

/// A parameter's text as the JSON value its schema expects (an integer schema gets a number).
fn typed(schema: &Value, raw: &str) -> Value {
    let t = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    match t {
        "integer" => raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(raw.into())),
        "number" => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(raw.into())),
        "boolean" => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(raw.into()),
        },
        _ => Value::String(raw.into()),
    }
}

/// A form's fields as the JSON object its schema describes: each value typed by its
/// property's schema (an array property collects every occurrence; a multipart part sent as
/// JSON is parsed). A name given twice for a property that is not an array is refused: the
/// gateway and the application could otherwise read different values (parameter pollution).
fn form_object(
    doc: &Value,
    schema: &Value,
    fields: Vec<(String, String, bool)>,
) -> Result<Value, String> {
    let props = deref(doc, schema).get("properties");
    let mut out = serde_json::Map::new();
    for (name, text, json) in fields {
        let prop = props.and_then(|p| p.get(&name)).map(|p| deref(doc, p));
        let is_array = prop.and_then(|p| p.get("type")) == Some(&Value::from("array"));
        let item_schema = if is_array {
            prop.and_then(|p| p.get("items")).map(|i| deref(doc, i))
        } else {
            prop
        };
        let value = match item_schema {
            _ if json => serde_json::from_str(&text)
                .map_err(|_| format!("body.{name}: is not valid JSON"))?,
            Some(s) => typed(s, &text),
            None => Value::String(text),
        };
        match out.get_mut(&name) {
            Some(Value::Array(a)) if is_array => a.push(value),
            Some(_) => return Err(format!("body.{name}: appears more than once")),
            None if is_array => {
                out.insert(name, Value::Array(vec![value]));
            }
            None => {
                out.insert(name, value);
            }
        }
    }
    Ok(Value::Object(out))
}

const ANN: &str = "contract-op";
/// Annotation for the `threat` policy: input locations the contract proved to be typed
/// (numbers, booleans, enums, UUIDs, dates …), one per line: `q:NAME`, `s:INDEX`, `b:PATH`.
pub const TYPED: &str = "typed";

/// Whether values of `schema` are checked by type, leaving nothing to inject.
fn is_typed(doc: &Value, schema: &Value) -> bool {
    let s = deref(doc, schema);
    let t = s.get("type").and_then(Value::as_str).unwrap_or("");
    matches!(t, "integer" | "number" | "boolean")
        || s.get("enum").is_some()
        || s.get("const").is_some()
        || matches!(
            s.get("format").and_then(Value::as_str),
            Some("uuid" | "date" | "date-time" | "ipv4" | "ipv6" | "int32" | "int64")
        )
}

/// The dotted paths of a body's values whose schema is typed.
fn typed_paths(
    doc: &Value,
    schema: &Value,
    v: &Value,
    path: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > 32 {
        return;
    }
    let s = deref(doc, schema);
    if is_typed(doc, s) && v.is_string() {
        out.push(format!("b:{path}"));
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, x) in m {
                    if let Some(ps) = props.get(k) {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        typed_paths(doc, ps, x, &p, out, depth + 1);
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(is) = s.get("items") {
                for (i, x) in a.iter().enumerate() {
                    let p = if path.is_empty() {
                        i.to_string()
                    } else {
                        format!("{path}.{i}")
                    };
                    typed_paths(doc, is, x, &p, out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// A path with its identifier-like segments (numbers, UUIDs, long hex) replaced by `{id}`.
pub fn templated(path: &str) -> String {
    let id_like = |s: &str| {
        !s.is_empty()
            && (s.bytes().all(|b| b.is_ascii_digit())
                || (s.len() >= 16 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')))
    };
    let segs: Vec<&str> = path
        .split('/')
        .map(|s| if id_like(s) { "{id}" } else { s })
        .collect();
    segs.join("/")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Contract {
    fn record(&self, method: &str, path: &str) {
        let key = (method.to_string(), templated(path));
        let now = now_secs();
        let mut inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
        if !inv.contains_key(&key) && inv.len() >= INVENTORY_MAX {
            return;
        }
        let e = inv.entry(key).or_insert(Seen {
            count: 0,
            first_seen: now,
            last_seen: now,
        });
        e.count += 1;
        e.last_seen = now;
    }
}

impl Contract {
    fn find(&self, method: &str, path: &str) -> Result<usize, Vec<String>> {
        let rel = path.strip_prefix(self.base.as_str()).unwrap_or(path);
        let rel = if rel.is_empty() { "/" } else { rel };
        let parts: Vec<&str> = rel.split('/').skip(1).collect();
        let mut allowed = Vec::new();
        for (i, o) in self.ops.iter().enumerate() {
            let fits = o.segments.len() == parts.len()
                && o.segments.iter().zip(&parts).all(|(s, p)| match s {
                    // literals compare with the decoded segment (`%3A` is `:`)
                    Some(lit) => {
                        lit == p || (p.contains('%') && uri::decode(p).as_deref() == Some(lit))
                    }
                    None => !p.is_empty(),
                });
            if fits {
                if o.method == method {
                    return Ok(i);
                }
                allowed.push(o.method.clone());
            }
        }
        Err(allowed)
    }

    fn check_params(&self, o: &Op, req: &RequestHead) -> Result<(), String> {
        let rel = req
            .uri
            .path()
            .strip_prefix(self.base.as_str())
            .unwrap_or(req.uri.path());
        let parts: Vec<&str> = rel.split('/').skip(1).collect();
        let tmpl: Vec<&str> = o.op.path.split('/').skip(1).collect();
        let mode = validate::Mode {
            strict: self.strict,
            request: true,
        };
        let query: Vec<(String, String)> = req
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .map(|(k, v)| match (uri::decode_form(k), uri::decode_form(v)) {
                (Some(k), Some(v)) => Ok((k, v)),
                // a broken escape is refused, never read as an empty value
                _ => Err(format!(
                    "query: `{}` is not valid percent-encoded UTF-8",
                    k.chars().take(64).collect::<String>()
                )),
            })
            .collect::<Result<_, _>>()?;
        let cookies: Vec<(String, String)> = req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for p in &o.op.params {
            let raw = deref(
                &self.doc,
                self.doc.pointer(&p.pointer).unwrap_or(&Value::Null),
            );
            let required = raw.get("required") == Some(&Value::Bool(true));
            let style = raw.get("style").and_then(Value::as_str).unwrap_or("");
            let schema = deref(&self.doc, &p.schema);
            let is_array = schema.get("type").and_then(Value::as_str) == Some("array");
            let at = format!("{}.{}", p.location, p.name);
            // each value of a parameter, validated as its schema says; an array collects
            // every occurrence and comma-separated items
            let check = |values: &[String]| -> Result<(), String> {
                if values.is_empty() {
                    return if required {
                        Err(format!("{at}: is required"))
                    } else {
                        Ok(())
                    };
                }
                if is_array {
                    let items: Vec<Value> = values
                        .iter()
                        .flat_map(|v| v.split(','))
                        .map(|v| typed(schema.get("items").unwrap_or(&Value::Null), v.trim()))
                        .collect();
                    return validate::validate(&self.doc, schema, &Value::Array(items), &at, mode);
                }
                values.iter().try_for_each(|v| {
                    validate::validate(&self.doc, schema, &typed(schema, v), &at, mode)
                })
            };
            match p.location.as_str() {
                "path" => {
                    let at_index = tmpl.iter().position(|t| *t == format!("{{{}}}", p.name));
                    let value = at_index
                        .and_then(|i| parts.get(i))
                        .and_then(|v| uri::decode(v));
                    let Some(value) = value else {
                        return Err(format!(
                            "path.{}: is not valid percent-encoded UTF-8",
                            p.name
                        ));
                    };
                    validate::validate(&self.doc, schema, &typed(schema, &value), &at, mode)?;
                }
                "query" if style == "deepObject" => {
                    // `filter[color]=red&filter[size]=2` is the object {color, size}
                    let prefix = format!("{}[", p.name);
                    let mut obj = serde_json::Map::new();
                    for (k, v) in &query {
                        if let Some(prop) =
                            k.strip_prefix(&prefix).and_then(|r| r.strip_suffix(']'))
                        {
                            let ps = schema
                                .get("properties")
                                .and_then(|x| x.get(prop))
                                .map(|x| deref(&self.doc, x))
                                .unwrap_or(&Value::Null);
                            obj.insert(prop.to_string(), typed(ps, v));
                        }
                    }
                    if obj.is_empty() {
                        if required {
                            return Err(format!("{at}: is required"));
                        }
                    } else {
                        validate::validate(&self.doc, schema, &Value::Object(obj), &at, mode)?;
                    }
                }
                "query" => {
                    let values: Vec<String> = query
                        .iter()
                        .filter(|(k, _)| *k == p.name)
                        .map(|(_, v)| v.clone())
                        .collect();
                    check(&values)?;
                }
                "header" => {
                    let values: Vec<String> = req
                        .headers
                        .get_all(p.name.as_str())
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .map(|v| v.trim().to_string())
                        .collect();
                    check(&values)?;
                }
                "cookie" => {
                    let values: Vec<String> = cookies
                        .iter()
                        .filter(|(k, _)| *k == p.name)
                        .map(|(_, v)| uri::decode(v).unwrap_or_else(|| v.clone()))
                        .collect();
                    check(&values)?;
                }
                _ => {}
            }
        }
        if !self.allow_unknown_query {
            for (name, _) in &query {
                let documented = o.op.params.iter().any(|p| {
                    p.location == "query"
                        && (p.name == *name
                            || name
                                .strip_prefix(p.name.as_str())
                                .is_some_and(|r| r.starts_with('[') && r.ends_with(']')))
                });
                if !documented {
                    return Err("query: has a parameter the operation does not document".into());
                }
            }
        }
        if self.refuse_unknown_headers {
            for name in req.headers.keys() {
                let n = name.as_str();
                let documented =
                    o.op.params
                        .iter()
                        .any(|p| p.location == "header" && p.name.eq_ignore_ascii_case(n));
                if !documented && !standard_header(n) && !self.key_headers.iter().any(|k| k == n) {
                    return Err("header: has a header the operation does not document".into());
                }
            }
        }
        Ok(())
    }
}

/// Headers any HTTP client or intermediary may send, whatever the API documents.
fn standard_header(n: &str) -> bool {
    const STANDARD: [&str; 34] = [
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "authorization",
        "cache-control",
        "connection",
        "content-encoding",
        "content-language",
        "content-length",
        "content-type",
        "cookie",
        "date",
        "dnt",
        "expect",
        "forwarded",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "origin",
        "pragma",
        "range",
        "referer",
        "te",
        "traceparent",
        "tracestate",
        "upgrade",
        "user-agent",
        "via",
        "x-request-id",
        "x-real-ip",
    ];
    STANDARD.contains(&n)
        || n.starts_with("sec-")
        || n.starts_with("x-forwarded-")
        || n.starts_with("x-palisade-")
        || n.starts_with("access-control-request-")
}

#[async_trait::async_trait]
impl Policy for Contract {
    fn kind(&self) -> &'static str {
        "contract"
    }
    fn stage(&self) -> Stage {
        Stage::Validate
    }
    fn phases(&self) -> PhaseSet {
        let p = PhaseSet::EMPTY
            .with(Phase::RequestHead)
            .with(Phase::RequestBody);
        if self.validate_responses || self.scrub_errors {
            p.with(Phase::ResponseBody)
        } else {
            p
        }
    }

    async fn on_response_body(
        &self,
        res: &mut palisade_core::ResponseHead,
        body: &mut bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        let status = res.status.as_u16();
        if self.scrub_errors && status >= 400 {
            let text = String::from_utf8_lossy(body);
            if palisade_core::leaks::stack_trace(&text)
                || palisade_core::leaks::database_error(&text)
            {
                let problem = serde_json::json!({
                    "type": format!("https://palisade.dev/problems/{ERROR_SCRUBBED}"),
                    "title": "Upstream error",
                    "status": status,
                    "code": ERROR_SCRUBBED,
                    "detail": "the upstream's error details were withheld",
                    "request_id": x.request_id,
                });
                *body = bytes::Bytes::from(problem.to_string());
                res.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                x.annotations.insert("contract", ERROR_SCRUBBED.to_string());
                return Ok(Verdict::Continue);
            }
        }
        if !self.validate_responses {
            return Ok(Verdict::Continue);
        }
        let Some(o) = x
            .annotations
            .get(ANN)
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.ops.get(i))
        else {
            return Ok(Verdict::Continue);
        };
        let responses = o.op.raw.get("responses").and_then(Value::as_object);
        let code = status.to_string();
        let range = format!("{}XX", status / 100);
        let documented = responses.and_then(|r| {
            r.get(&code)
                .or_else(|| r.get(&range))
                .or_else(|| r.get(&range.to_ascii_lowercase()))
                .or_else(|| r.get("default"))
        });
        let Some(documented) = documented.map(|d| deref(&self.doc, d)) else {
            return Ok(Verdict::Reject(bad_response(
                "the upstream answered with a status the description does not document",
                x,
            )));
        };
        let ct = res
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !(ct == "application/json" || ct.ends_with("+json")) || body.is_empty() {
            return Ok(Verdict::Continue);
        }
        let Some(schema) = documented
            .get("content")
            .and_then(Value::as_object)
            .and_then(|c| c.get(&ct).or_else(|| c.get("application/json")))
            .and_then(|m| m.get("schema"))
        else {
            return Ok(Verdict::Continue);
        };
        let mut v = match palisade_core::json::parse(body) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Verdict::Reject(bad_response(
                    &format!("the upstream's body {e}"),
                    x,
                )))
            }
        };
        let mut removed = 0;
        strip(&self.doc, schema, &mut v, &mut removed, 0);
        if removed > 0 && self.undocumented == Undocumented::Refuse {
            return Ok(Verdict::Reject(bad_response(
                "the upstream's body has properties the description does not declare",
                x,
            )));
        }
        let mode = validate::Mode {
            strict: false,
            request: false,
        };
        if let Err(why) = validate::validate(&self.doc, schema, &v, "response", mode) {
            // the operators' log names the field that failed; the client is told less
            tracing::warn!(code = INVALID_RESPONSE, field = %why, request_id = %x.request_id, route = %x.route, "the upstream's answer breaks the API description");
            return Ok(Verdict::Reject(refused_response(
                "the upstream's body does not match the description",
            )));
        }
        if removed > 0 {
            *body = bytes::Bytes::from(v.to_string());
            x.annotations
                .insert("contract-stripped", removed.to_string());
        }
        Ok(Verdict::Continue)
    }

    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let found = self.find(req.method.as_str(), req.uri.path());
        if found.is_err() {
            self.record(req.method.as_str(), req.uri.path());
        }
        let i = match found {
            Ok(i) => {
                if let Some(o) = self.ops.get(i) {
                    use std::sync::atomic::Ordering::Relaxed;
                    let now = now_secs();
                    if o.calls.fetch_add(1, Relaxed) == 0 {
                        o.first_seen.store(now, Relaxed);
                    }
                    o.last_seen.store(now, Relaxed);
                }
                i
            }
            Err(allowed) if allowed.is_empty() => {
                return Ok(Verdict::Reject(
                    Rejection::new(
                        StatusCode::NOT_FOUND,
                        UNKNOWN_OPERATION,
                        "No such operation",
                    )
                    .with_detail("the API description has no operation at this path"),
                ))
            }
            Err(mut allowed) => {
                allowed.sort();
                allowed.dedup();
                let allow = allowed.join(", ");
                let mut r = Rejection::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    UNKNOWN_OPERATION,
                    "No such operation",
                )
                .with_detail(format!("the API description allows {allow} here"));
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    r = r.with_header(http::header::ALLOW, v);
                }
                return Ok(Verdict::Reject(r));
            }
        };
        let Some(o) = self.ops.get(i) else {
            return Ok(Verdict::Continue);
        };
        if let Err(e) = self.check_params(o, req) {
            return Ok(Verdict::Reject(invalid(e)));
        }
        let mut typed = Vec::new();
        let offset = self.base.split('/').filter(|x| !x.is_empty()).count();
        let tmpl: Vec<&str> = o.op.path.split('/').filter(|x| !x.is_empty()).collect();
        for p in
            o.op.params
                .iter()
                .filter(|p| is_typed(&self.doc, &p.schema))
        {
            match p.location.as_str() {
                "query" => typed.push(format!("q:{}", p.name)),
                "path" => {
                    if let Some(i) = tmpl.iter().position(|t| *t == format!("{{{}}}", p.name)) {
                        typed.push(format!("s:{}", i + offset));
                    }
                }
                _ => {}
            }
        }
        if !typed.is_empty() {
            x.annotations.insert(TYPED, typed.join("\n"));
        }
        let has_body = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v != "0")
            || req.headers.contains_key(http::header::TRANSFER_ENCODING);
        if has_body {
            let ct = req
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase())
                .unwrap_or_default();
            let declared = o.media.iter().any(|(m, _)| {
                *m == ct || m == "*/*" || m.strip_suffix("/*").is_some_and(|p| ct.starts_with(p))
            });
            if !declared {
                return Ok(Verdict::Reject(
                    Rejection::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        UNSUPPORTED_MEDIA_TYPE,
                        "Unsupported content type",
                    )
                    .with_detail("the operation does not accept this content type"),
                ));
            }
            x.annotations.insert("contract-ct", ct);
        }
        x.annotations.insert(ANN, i.to_string());
        Ok(Verdict::Continue)
    }

    fn inventory(&self) -> Option<Value> {
        let inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
        let ops: Vec<Value> = inv
            .iter()
            .map(|((m, p), s)| {
                serde_json::json!({"method": m, "path": p, "count": s.count,
                                   "first_seen": s.first_seen, "last_seen": s.last_seen})
            })
            .collect();
        use std::sync::atomic::Ordering::Relaxed;
        let seen = |o: &Op| {
            let calls = o.calls.load(Relaxed);
            serde_json::json!({"method": o.method, "path": o.op.path, "count": calls,
                               "first_seen": (calls > 0).then(|| o.first_seen.load(Relaxed)),
                               "last_seen": (calls > 0).then(|| o.last_seen.load(Relaxed)),
                               "deprecated": o.deprecated})
        };
        // documented: every operation of the description, with its calls; zombie: deprecated
        // ones still called; unused: documented ones never called since the start
        let documented: Vec<Value> = self.ops.iter().map(seen).collect();
        let zombie: Vec<Value> = self
            .ops
            .iter()
            .filter(|o| o.deprecated && o.calls.load(Relaxed) > 0)
            .map(seen)
            .collect();
        let unused: Vec<Value> = self
            .ops
            .iter()
            .filter(|o| o.calls.load(Relaxed) == 0)
            .map(|o| serde_json::json!({"method": o.method, "path": o.op.path}))
            .collect();
        Some(
            serde_json::json!({"policy": "contract", "undocumented": ops,
                                "documented": documented, "zombie": zombie, "unused": unused}),
        )
    }

    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        let Some(o) = x
            .annotations
            .get(ANN)
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.ops.get(i))
        else {
            return Ok(Verdict::Continue);
        };
        if body.is_empty() {
            if o.body_required {
                return Ok(Verdict::Reject(invalid("body: is required".into())));
            }
            return Ok(Verdict::Continue);
        }
        let ct = x
            .annotations
            .get("contract-ct")
            .cloned()
            .unwrap_or_default();
        let json = ct == "application/json" || ct.ends_with("+json");
        let schema_for = |media: &str| {
            o.media
                .iter()
                .find(|(m, _)| *m == media)
                .or_else(|| o.media.iter().find(|(m, _)| m == "*/*"))
                .map(|(_, s)| s)
        };
        if ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data" {
            let fields = if ct == "multipart/form-data" {
                let raw = req
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let Some(b) = form::boundary(raw) else {
                    return Ok(Verdict::Reject(invalid(format!(
                        "body: {}",
                        form::FormError::NoBoundary
                    ))));
                };
                form::multipart(body, &b).map(|parts| {
                    parts
                        .into_iter()
                        .map(|p| {
                            let json = p
                                .content_type
                                .as_deref()
                                .is_some_and(|t| t.contains("json"));
                            (p.name, String::from_utf8_lossy(p.data).into_owned(), json)
                        })
                        .collect::<Vec<_>>()
                })
            } else {
                form::urlencoded(body).map(|f| f.into_iter().map(|(k, v)| (k, v, false)).collect())
            };
            let fields = match fields {
                Ok(f) => f,
                Err(e) => return Ok(Verdict::Reject(invalid(format!("body: {e}")))),
            };
            let Some(s) = schema_for(&ct) else {
                return Ok(Verdict::Continue);
            };
            let v = match form_object(&self.doc, s, fields) {
                Ok(v) => v,
                Err(e) => return Ok(Verdict::Reject(invalid(e))),
            };
            let mode = validate::Mode {
                strict: self.strict,
                request: true,
            };
            if let Err(e) = validate::validate(&self.doc, s, &v, "body", mode) {
                return Ok(Verdict::Reject(invalid(e)));
            }
            return Ok(Verdict::Continue);
        }
        if !json {
            return Ok(Verdict::Continue);
        }
        if let Err(e) = validate::check_limits(body, &self.limits) {
            return Ok(Verdict::Reject(invalid(format!("body: {e}"))));
        }
        let v: std::sync::Arc<Value> = match palisade_core::json::parse(body) {
            Ok(v) => std::sync::Arc::new(v),
            Err(e) => return Ok(Verdict::Reject(invalid(format!("body: {e}")))),
        };
        x.json_body = Some(v.clone());
        let schema = o
            .media
            .iter()
            .find(|(m, _)| *m == ct)
            .or_else(|| o.media.iter().find(|(m, _)| m.ends_with("json")))
            .map(|(_, s)| s);
        if let Some(s) = schema {
            let mode = validate::Mode {
                strict: self.strict,
                request: true,
            };
            if let Err(e) = validate::validate(&self.doc, s, &v, "body", mode) {
                return Ok(Verdict::Reject(invalid(e)));
            }
            let mut typed = Vec::new();
            typed_paths(&self.doc, s, &v, "", &mut typed, 0);
            if !typed.is_empty() {
                let mut all = x.annotations.remove(TYPED).unwrap_or_default();
                for t in typed {
                    if !all.is_empty() {
                        all.push('\n');
                    }
                    all.push_str(&t);
                }
                x.annotations.insert(TYPED, all);
            }
        }
        Ok(Verdict::Continue)
    }
}
