//! An API description, read from YAML or JSON (OpenAPI 3.0, 3.1 or Swagger 2.0), with what the
//! rules need in one shape whatever the version: operations with their parameters, request
//! and response schemas, security; security schemes; servers.

use serde_json::{Map, Value};

/// The version family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Swagger 2.0.
    Swagger2,
    /// OpenAPI 3.0.x.
    OpenApi30,
    /// OpenAPI 3.1.x.
    OpenApi31,
}

/// A parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// `path`, `query`, `header`, `cookie` (or `body`/`formData` in Swagger 2.0).
    pub location: String,
    /// Its schema (refs resolved at the top).
    pub schema: Value,
    /// JSON pointer of the parameter where the operation lists it.
    pub pointer: String,
    /// JSON pointer of its definition: a shared parameter's (`/components/parameters/Limit`)
    /// when the operation refers to one, else [`Param::pointer`].
    pub def: String,
    /// JSON pointer of its schema (Swagger 2.0 parameters other than `body` carry their type
    /// inline: the parameter itself).
    pub schema_pointer: String,
}

/// An operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Upper-case method.
    pub method: String,
    /// The path template.
    pub path: String,
    /// JSON pointer of the operation.
    pub pointer: String,
    /// The operation object.
    pub raw: Value,
    /// Parameters (path-level and operation-level).
    pub params: Vec<Param>,
    /// Request body schemas, with their pointers.
    pub request_schemas: Vec<(Value, String)>,
    /// Response codes documented.
    pub responses: Vec<String>,
    /// Response body schemas, with their pointers.
    pub response_schemas: Vec<(Value, String)>,
    /// Response header names (lower case).
    pub response_headers: Vec<String>,
    /// The security requirements in force (operation's or the global ones).
    pub security: Vec<Map<String, Value>>,
    /// For a webhook (OpenAPI 3.1 `webhooks`), its name: a request the API sends, not one
    /// it receives.
    pub webhook: Option<String>,
}

impl Operation {
    /// Whether a credential is required: some security requirement is in force and none of
    /// them is the empty one (`{}`, anonymous access).
    pub fn secured(&self) -> bool {
        !self.security.is_empty() && !self.security.iter().any(Map::is_empty)
    }

    /// `GET /users/{id}`, or `webhook newPet POST`.
    pub fn label(&self) -> String {
        match &self.webhook {
            Some(w) => format!("webhook {w} {}", self.method),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

/// A loaded description.
#[derive(Debug)]
pub struct Spec {
    /// Version family.
    pub version: Version,
    /// The whole document.
    pub doc: Value,
    /// Operations in document order (those the API serves).
    pub operations: Vec<Operation>,
    /// The webhooks of OpenAPI 3.1 (requests the API sends), as operations.
    pub webhooks: Vec<Operation>,
    /// Security schemes by name, with their pointers.
    pub schemes: Vec<(String, Value, String)>,
    /// Server URLs, with their pointers.
    pub servers: Vec<(String, String)>,
    /// Parts inlined from other files: (pointer in [`Spec::doc`], `file#pointer` they came
    /// from), so that findings inside them name the file where the node really is.
    pub origins: Vec<(String, String)>,
}

impl Spec {
    /// The operations, then the webhooks.
    pub fn all(&self) -> impl Iterator<Item = &Operation> {
        self.operations.iter().chain(self.webhooks.iter())
    }

    /// `pointer` as found in the file where its node is written: itself in the main file,
    /// or `schemas.yaml#/User/properties/name` for a part inlined from another file.
    pub fn origin_of(&self, pointer: &str) -> String {
        self.origin(pointer, true)
    }

    /// [`Spec::origin_of`] for where a property or parameter is declared: a declaration that
    /// referred to another file is in the file that holds the reference.
    pub fn origin_of_declaration(&self, pointer: &str) -> String {
        self.origin(pointer, false)
    }

    fn origin(&self, pointer: &str, exact: bool) -> String {
        self.origins
            .iter()
            .filter(|(at, _)| {
                (exact && pointer == at)
                    || pointer
                        .strip_prefix(at.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
            .max_by_key(|(at, _)| at.len())
            .map(|(at, from)| format!("{from}{}", pointer.get(at.len()..).unwrap_or("")))
            .unwrap_or_else(|| pointer.to_string())
    }
}

/// Escapes a JSON-pointer token.
pub fn esc(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Unescapes a JSON-pointer token (the inverse of [`esc`]).
pub fn unesc(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

/// Follows local `$ref`s (`#/…`) until a non-reference, at most 32 hops.
pub fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut cur = v;
    for _ in 0..32 {
        match cur.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/") => match doc.pointer(r.trim_start_matches('#')) {
                Some(t) => cur = t,
                None => return cur,
            },
            _ => return cur,
        }
    }
    cur
}

/// [`deref()`], with the JSON pointer of the node reached: `at` itself when `v` is not a
/// reference.
pub fn deref_at<'a>(doc: &'a Value, v: &'a Value, at: &str) -> (&'a Value, String) {
    let mut cur = v;
    let mut ptr = at.to_string();
    for _ in 0..32 {
        match cur.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/") => match doc.pointer(r.trim_start_matches('#')) {
                Some(t) => {
                    cur = t;
                    ptr = r.trim_start_matches('#').to_string();
                }
                None => break,
            },
            _ => break,
        }
    }
    (cur, ptr)
}

/// The operation keys of a path item.
pub(crate) const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Parses and normalizes a description. `text` is YAML or JSON.
pub fn load(text: &str) -> Result<Spec, String> {
    load_from(text, None)
}

fn parse_text(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        palisade_core::yaml::parse(text)
            .map(|d| d.value)
            .map_err(|e| format!("line {}: not valid YAML: {}", e.line, e.message))
    }
}

/// Replaces `$ref`s to other files (`schemas.yaml#/User`, relative to `dir`) by what they
/// point at, with the references inside those files resolved against their own file. Remote
/// (`http:`) references are refused: a description never makes the gateway fetch anything.
fn inline_files(
    v: &mut Value,
    dir: &std::path::Path,
    root: &Value,
    depth: usize,
    at: &str,
    origins: &mut Vec<(String, String)>,
) -> Result<(), String> {
    if depth > 16 {
        return Err("file references nest more than 16 deep (a cycle?)".into());
    }
    if let Some(r) = v.get("$ref").and_then(Value::as_str).map(str::to_string) {
        let (file, pointer) = r.split_once('#').unwrap_or((r.as_str(), ""));
        if file.is_empty() && depth == 0 {
            return Ok(()); // a local reference of the main document: left as it is
        }
        if file.contains("://") {
            return Err(format!(
                "`{r}`: remote references are not followed; copy the file beside the description"
            ));
        }
        // the file that holds the reference (none: the main one), as the reports name it
        let enclosing = origins
            .iter()
            .rev()
            .find(|(p, _)| at.starts_with(p.as_str()))
            .and_then(|(_, f)| f.split('#').next())
            .filter(|f| !f.is_empty())
            .map(str::to_string);
        let (target_root, target_dir, shown) = if file.is_empty() {
            // a reference inside an inlined file: resolve against that file's root
            (
                root.clone(),
                dir.to_path_buf(),
                enclosing.unwrap_or_default(),
            )
        } else {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("`{r}`: cannot read {}: {e}", path.display()))?;
            let parsed = parse_text(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            (
                parsed,
                path.parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default(),
                match enclosing {
                    Some(e) => std::path::Path::new(&e)
                        .parent()
                        .unwrap_or(std::path::Path::new(""))
                        .join(file)
                        .display()
                        .to_string(),
                    None => file.to_string(),
                },
            )
        };
        origins.push((at.to_string(), format!("{shown}#{pointer}")));
        let mut target = if pointer.is_empty() {
            target_root.clone()
        } else {
            target_root
                .pointer(pointer)
                .cloned()
                .ok_or_else(|| format!("`{r}`: nothing at {pointer}"))?
        };
        inline_files(
            &mut target,
            &target_dir,
            &target_root,
            depth + 1,
            at,
            origins,
        )?;
        *v = target;
        return Ok(());
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                inline_files(x, dir, root, depth, &format!("{at}/{}", esc(k)), origins)?;
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                inline_files(x, dir, root, depth, &format!("{at}/{i}"), origins)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether any `$ref` of `v` names another file.
fn refers_to_files(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, x)| {
            if k == "$ref" {
                x.as_str().is_some_and(|r| !r.starts_with('#'))
            } else {
                refers_to_files(x)
            }
        }),
        Value::Array(a) => a.iter().any(refers_to_files),
        _ => false,
    }
}

/// [`load`], with `$ref`s to other files resolved relative to `dir`.
pub fn load_from(text: &str, dir: Option<&std::path::Path>) -> Result<Spec, String> {
    let mut doc = parse_text(text)?;
    let mut origins = Vec::new();
    if let Some(dir) = dir.filter(|_| refers_to_files(&doc)) {
        let root = doc.clone();
        inline_files(&mut doc, dir, &root, 0, "", &mut origins)?;
    }
    let version = if doc.get("swagger").and_then(Value::as_str) == Some("2.0") {
        Version::Swagger2
    } else {
        match doc.get("openapi").and_then(Value::as_str) {
            Some(v) if v.starts_with("3.0") => Version::OpenApi30,
            Some(v) if v.starts_with("3.1") => Version::OpenApi31,
            Some(v) => {
                return Err(format!(
                    "OpenAPI {v} is not supported (3.0, 3.1 or Swagger 2.0)"
                ))
            }
            None => {
                return Err(
                    "neither `openapi: 3.x` nor `swagger: \"2.0\"`: not an API description".into(),
                )
            }
        }
    };
    let global_security: Vec<Map<String, Value>> = doc
        .get("security")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_object().cloned()).collect())
        .unwrap_or_default();
    let mut operations = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            let base = format!("/paths/{}", esc(path));
            read_item(
                &doc,
                version,
                &global_security,
                path,
                item,
                &base,
                None,
                &mut operations,
            );
        }
    }
    let mut webhooks = Vec::new();
    if let Some(hooks) = doc.get("webhooks").and_then(Value::as_object) {
        for (name, item) in hooks {
            let base = format!("/webhooks/{}", esc(name));
            read_item(
                &doc,
                version,
                &global_security,
                name,
                item,
                &base,
                Some(name),
                &mut webhooks,
            );
        }
    }
    let (schemes_at, schemes_ptr) = match version {
        Version::Swagger2 => (doc.get("securityDefinitions"), "/securityDefinitions"),
        _ => (
            doc.get("components").and_then(|c| c.get("securitySchemes")),
            "/components/securitySchemes",
        ),
    };
    let schemes = schemes_at
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        deref(&doc, v).clone(),
                        format!("{schemes_ptr}/{}", esc(k)),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let servers = match version {
        Version::Swagger2 => {
            let host = doc.get("host").and_then(Value::as_str).unwrap_or("");
            let base = doc.get("basePath").and_then(Value::as_str).unwrap_or("");
            let schemes: Vec<&str> = doc
                .get("schemes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_else(|| vec!["https"]);
            if host.is_empty() {
                Vec::new()
            } else {
                schemes
                    .iter()
                    .map(|s| (format!("{s}://{host}{base}"), "/schemes".to_string()))
                    .collect()
            }
        }
        _ => doc
            .get("servers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .enumerate()
                    .filter_map(|(i, s)| {
                        s.get("url")
                            .and_then(Value::as_str)
                            .map(|u| (u.to_string(), format!("/servers/{i}/url")))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok(Spec {
        version,
        doc,
        operations,
        webhooks,
        schemes,
        servers,
        origins,
    })
}

/// The operations of one path item (of `paths`, or of `webhooks` when `webhook` names it).
#[allow(clippy::too_many_arguments)]
fn read_item(
    doc: &Value,
    version: Version,
    global_security: &[Map<String, Value>],
    path: &str,
    item: &Value,
    base: &str,
    webhook: Option<&str>,
    operations: &mut Vec<Operation>,
) {
    let (item, base) = deref_at(doc, item, base);
    let shared: Vec<(&Value, String)> = item
        .get("parameters")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, p)| (p, format!("{base}/parameters/{i}")))
                .collect()
        })
        .unwrap_or_default();
    for m in METHODS {
        let Some(op) = item.get(m).filter(|o| o.is_object()) else {
            continue;
        };
        let pointer = format!("{base}/{m}");
        let mut params: Vec<Param> = Vec::new();
        let own: Vec<(&Value, String)> = op
            .get("parameters")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, p)| (p, format!("{pointer}/parameters/{i}")))
                    .collect()
            })
            .unwrap_or_default();
        let mut request_schemas = Vec::new();
        // the operation's own parameters override the path item's of the same name and place
        let mut all: Vec<(&Value, String)> = Vec::new();
        let mut taken: Vec<(Option<&Value>, Option<&Value>)> = Vec::new();
        for (p, ptr) in own.iter().chain(shared.iter()) {
            let (d, _) = deref_at(doc, p, ptr);
            let key = (d.get("name"), d.get("in"));
            if !taken.contains(&key) {
                taken.push(key);
                all.push((p, ptr.clone()));
            }
        }
        for (p, ptr) in all {
            let (p, def) = deref_at(doc, p, &ptr);
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let location = p
                .get("in")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let (schema, schema_pointer) = match version {
                Version::Swagger2 if location == "body" => {
                    if let Some(s) = p.get("schema") {
                        request_schemas.push((s.clone(), format!("{def}/schema")));
                    }
                    continue;
                }
                // Swagger 2.0 parameters carry their type inline
                Version::Swagger2 => (p.clone(), def.clone()),
                _ => (
                    p.get("schema").cloned().unwrap_or(Value::Null),
                    format!("{def}/schema"),
                ),
            };
            let (schema, schema_pointer) = {
                let (s, sp) = deref_at(doc, &schema, &schema_pointer);
                (s.clone(), sp)
            };
            params.push(Param {
                name,
                location,
                schema,
                pointer: ptr,
                def,
                schema_pointer,
            });
        }
        if let Some(rb) = op.get("requestBody") {
            let (rb, rbp) = deref_at(doc, rb, &format!("{pointer}/requestBody"));
            if let Some(content) = rb.get("content").and_then(Value::as_object) {
                for (ct, media) in content {
                    if let Some(s) = media.get("schema") {
                        request_schemas
                            .push((s.clone(), format!("{rbp}/content/{}/schema", esc(ct))));
                    }
                }
            }
        }
        let mut responses = Vec::new();
        let mut response_schemas = Vec::new();
        let mut response_headers = Vec::new();
        if let Some(rs) = op.get("responses").and_then(Value::as_object) {
            for (code, r) in rs {
                responses.push(code.clone());
                let (r, rptr) = deref_at(doc, r, &format!("{pointer}/responses/{}", esc(code)));
                if let Some(h) = r.get("headers").and_then(Value::as_object) {
                    response_headers.extend(h.keys().map(|k| k.to_ascii_lowercase()));
                }
                match version {
                    Version::Swagger2 => {
                        if let Some(s) = r.get("schema") {
                            response_schemas.push((s.clone(), format!("{rptr}/schema")));
                        }
                    }
                    _ => {
                        if let Some(content) = r.get("content").and_then(Value::as_object) {
                            for (ct, media) in content {
                                if let Some(s) = media.get("schema") {
                                    response_schemas.push((
                                        s.clone(),
                                        format!("{rptr}/content/{}/schema", esc(ct)),
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        let security = match op.get("security").and_then(Value::as_array) {
            Some(a) => a.iter().filter_map(|x| x.as_object().cloned()).collect(),
            None => global_security.to_vec(),
        };
        operations.push(Operation {
            method: m.to_ascii_uppercase(),
            path: path.to_string(),
            pointer,
            raw: op.clone(),
            params,
            request_schemas,
            responses,
            response_schemas,
            response_headers,
            security,
            webhook: webhook.map(str::to_string),
        });
    }
}
