//! Palisade's injection detection. [`detect`] classifies one input value; the `threat` policy
//! applies it to every input location of a request: path segments, query parameters (names
//! and values), cookies and free-form headers, JSON string leaves and keys, form and multipart
//! fields, and any other textual body.
//! A refusal names the class and the kind of location, never the value.

pub mod detect;
pub mod headers;
pub mod pii;
pub mod xml;
pub mod xml_protection;

use http::StatusCode;
use palisade_core::form;
use palisade_core::json::{self, JsonError, Node, Step};
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};
use serde::Deserialize;
use serde_json::Value;

pub use detect::{Class, Sensitivity};

/// Refusal code.
pub const DETECTED: &str = "threat.detected";
/// Refusal code for a body too deep to inspect whole (never passed uninspected).
pub const UNINSPECTABLE: &str = "threat.uninspectable";
/// The annotation a `contract` policy leaves with the input locations it proved typed.
const TYPED: &str = "typed";

/// Config of the `threat` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThreatSpec {
    /// `enforce` (default) or `monitor` (log and count what would be refused).
    #[serde(default)]
    pub mode: Mode,
    /// Classes to detect; default all: sqli, xss, command, path_traversal, ssrf, nosql, ldap,
    /// template.
    #[serde(default)]
    pub classes: Option<Vec<Class>>,
    /// Inspect request bodies (JSON and form). Default true.
    #[serde(default)]
    pub inspect_body: Option<bool>,
    /// Query parameters and JSON fields (by name) not inspected, e.g. a rich-text field.
    #[serde(default)]
    pub skip_fields: Vec<String>,
    /// More headers not inspected (structured standard headers never are).
    #[serde(default)]
    pub skip_headers: Vec<String>,
    /// `low`, `medium` (default) or `high`: how eagerly a value is judged an attack.
    #[serde(default)]
    pub sensitivity: Sensitivity,
}

/// The runtime `threat` policy.
#[derive(Debug)]
pub struct Threat {
    classes: Vec<Class>,
    body: bool,
    skip_fields: Vec<String>,
    skip_headers: Vec<String>,
    sensitivity: Sensitivity,
}

impl ThreatSpec {
    /// Builds the policy.
    pub fn build(&self) -> Result<Threat, Vec<SpecError>> {
        let classes = self.classes.clone().unwrap_or_else(|| Class::ALL.to_vec());
        if classes.is_empty() {
            return Err(vec![SpecError::new(
                "classes",
                "at least one class, or leave it out for all",
            )]);
        }
        Ok(Threat {
            classes,
            body: self.inspect_body.unwrap_or(true),
            skip_fields: self.skip_fields.clone(),
            skip_headers: self
                .skip_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            sensitivity: self.sensitivity,
        })
    }
}

fn refuse(x: &mut Exchange, (c, input): Hit, location: &str) -> Verdict {
    x.note_evidence(location, &input);
    Verdict::Reject(
        Rejection::new(StatusCode::FORBIDDEN, DETECTED, "Attack detected")
            .with_detail(format!("{} detected in {location}", c.name())),
    )
}

fn uninspectable(location: &str) -> Verdict {
    Verdict::Reject(
        Rejection::new(
            StatusCode::BAD_REQUEST,
            UNINSPECTABLE,
            "Request body cannot be inspected",
        )
        .with_detail(format!(
            "{location} is JSON nested deeper than {} levels",
            json::MAX_DEPTH
        )),
    )
}

/// The `name=value` pairs of a query string, as they are written (the detector decodes).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
}

/// A User-Agent without the locale tokens of its comments (`(Linux; U; Android 4.0.3; id;
/// …)`, `(X11; sh; rv:1.9)`, `(Windows; ps-AF)`): a language tag there is part of the
/// product comment's grammar, and `id`, `sh` or `ps` are also command names. Everything
/// else of the value is scanned as it is.
fn without_locales(ua: &str) -> String {
    let mut out = String::with_capacity(ua.len());
    let mut rest = ua;
    while let Some(open) = rest.find('(') {
        let Some(close) = rest.get(open..).and_then(|r| r.find(')')).map(|c| open + c) else {
            break;
        };
        out.push_str(rest.get(..=open).unwrap_or(""));
        let comment = rest.get(open + 1..close).unwrap_or("");
        let kept: Vec<&str> = comment
            .split(';')
            .filter(|t| !is_language_tag(t.trim()))
            .collect();
        out.push_str(&kept.join(";"));
        out.push(')');
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// `id`, `sh`, `en-US`, `ps-AF`, `cat-ES`, `zh_CN`: a language (2 or 3 letters) and an
/// optional region (2 to 4 letters or 3 digits).
fn is_language_tag(t: &str) -> bool {
    let (lang, region) = match t.split_once(['-', '_']) {
        Some((l, r)) => (l, Some(r)),
        None => (t, None),
    };
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && region.is_none_or(|r| {
            (2..=4).contains(&r.len()) && r.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

/// A body part that could not be inspected whole: refused, never passed.
struct TooDeep(&'static str);

/// What an inspection found: the class and the input it was found in.
type Hit = (Class, String);

/// What the inspection of a body found, and where.
type Found = Result<Option<(Hit, &'static str)>, TooDeep>;

impl Threat {
    /// Inspects a request body the way the application will read it: JSON leaves and keys,
    /// form and multipart fields (names, file names and text contents). What the gateway
    /// cannot parse as its content type says is scanned whole rather than let through, and a
    /// body under an unknown or text type is read as JSON when it is JSON, so an odd
    /// Content-Type cannot bypass inspection. Binary media (images, archives …) are not read.
    fn inspect_body(&self, content_type: &str, body: &[u8], typed: &[String]) -> Found {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let json = media == "application/json" || media.ends_with("+json");
        if json {
            return match json::parse(body) {
                Ok(v) => self.json_found(&v, typed, "the JSON body"),
                Err(JsonError::TooDeep) => Err(TooDeep("the JSON body")),
                Err(JsonError::Syntax) => Ok(self.raw(body).map(|c| (c, "the body"))),
            };
        }
        if media == "application/x-www-form-urlencoded" {
            let Ok(fields) = form::urlencoded(body) else {
                return Ok(self.raw(body).map(|c| (c, "the body")));
            };
            return Ok(fields
                .iter()
                .filter(|(k, _)| !self.skip_fields.contains(k))
                .find_map(|(k, v)| self.check(k).or_else(|| self.check(v)))
                .map(|c| (c, "a form field")));
        }
        if media == "application/xml" || media == "text/xml" || media.ends_with("+xml") {
            // what the application reads: element texts and attribute values, not the markup
            let text = String::from_utf8_lossy(body);
            return Ok(match xml::values(&text) {
                Some(values) => values
                    .iter()
                    .find_map(|v| self.check(v))
                    .map(|c| (c, "the XML body")),
                None => self.raw(body).map(|c| (c, "the body")),
            });
        }
        if media == "multipart/form-data" {
            let Some(parts) =
                form::boundary(content_type).and_then(|b| form::multipart(body, &b).ok())
            else {
                return Ok(self.raw(body).map(|c| (c, "the body")));
            };
            for p in parts.iter().filter(|p| !self.skip_fields.contains(&p.name)) {
                let named = self
                    .check(&p.name)
                    .or_else(|| p.filename.as_deref().and_then(|f| self.check(f)));
                if let Some(c) = named {
                    return Ok(Some((c, "a multipart field")));
                }
                // the part's own headers, standard ones by their grammar as for the request's
                for (k, v) in &p.headers {
                    let found = if headers::STRUCTURED.contains(&k.as_str()) {
                        match headers::to_inspect(k, v) {
                            Some(parts) => parts.iter().find_map(|x| self.check(x)),
                            None => self.check(v),
                        }
                    } else {
                        self.check(v)
                    };
                    if let Some(c) = found {
                        return Ok(Some((c, "a multipart part header")));
                    }
                }
                if !p.is_text() {
                    continue;
                }
                let found = match json::parse(p.data) {
                    Ok(v @ (Value::Object(_) | Value::Array(_))) => {
                        self.json_found(&v, &[], "a multipart field")?
                    }
                    Err(JsonError::TooDeep) => return Err(TooDeep("a multipart field")),
                    _ => self.raw(p.data).map(|c| (c, "a multipart field")),
                };
                if found.is_some() {
                    return Ok(found);
                }
            }
            return Ok(None);
        }
        let binary = ["image/", "audio/", "video/", "font/", "model/"]
            .iter()
            .any(|p| media.starts_with(p))
            || [
                "application/octet-stream",
                "application/pdf",
                "application/zip",
                "application/gzip",
                "application/grpc",
                "application/protobuf",
                "application/x-protobuf",
            ]
            .contains(&media.as_str());
        if binary {
            return Ok(None);
        }
        match json::parse(body) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => self.json_found(&v, &[], "the body"),
            Err(JsonError::TooDeep) => Err(TooDeep("the body")),
            _ => Ok(self.raw(body).map(|c| (c, "the body"))),
        }
    }

    fn json_found(&self, v: &Value, typed: &[String], location: &'static str) -> Found {
        match self.walk_json(v, typed) {
            Ok(c) => Ok(c.map(|c| (c, location))),
            Err(_) => Err(TooDeep(location)),
        }
    }

    /// Scans a body or part as one text.
    fn raw(&self, data: &[u8]) -> Option<Hit> {
        self.check(&String::from_utf8_lossy(data))
    }

    fn check(&self, v: &str) -> Option<Hit> {
        detect::detect_with(v, &self.classes, self.sensitivity).map(|c| (c, v.to_string()))
    }

    /// A `Referer` or `Origin`: the address of the page the browser was on, never fetched by
    /// the server (so no SSRF, even when it is an intranet or development address), read as
    /// a URL: its path and each query parameter on their own, as the query of a request is
    /// (`&id=7` separates parameters, it runs nothing).
    fn check_page_address(&self, v: &str) -> Option<Hit> {
        let classes: Vec<Class> = self
            .classes
            .iter()
            .copied()
            .filter(|c| *c != Class::Ssrf)
            .collect();
        let check = |s: &str| {
            detect::detect_with(s, &classes, self.sensitivity).map(|c| (c, s.to_string()))
        };
        let (before, fragment) = v.split_once('#').unwrap_or((v, ""));
        let (address, query) = before.split_once('?').unwrap_or((before, ""));
        check(address)
            .or_else(|| query_pairs(query).find_map(|(k, v)| check(k).or_else(|| check(v))))
            .or_else(|| check(fragment))
    }

    /// Every key and string leaf of a JSON tree, by the core walker (bounded depth).
    fn walk_json(&self, v: &Value, typed: &[String]) -> Result<Option<Hit>, JsonError> {
        json::walk(v, &mut |path, node| match node {
            Node::Str(s) => {
                if typed.iter().any(|t| t.strip_prefix("b:") == Some(path)) {
                    return Step::Go;
                }
                self.check(s).map_or(Step::Go, Step::Stop)
            }
            Node::Key(k) => {
                if self.skip_fields.iter().any(|f| f == k) {
                    return Step::Skip;
                }
                // an operator as a key is how NoSQL injection travels in JSON
                let operator = k.starts_with('$') && detect::MONGO_OPERATORS.contains(&k);
                if operator && self.classes.contains(&Class::Nosql) {
                    return Step::Stop((Class::Nosql, k.to_string()));
                }
                self.check(k).map_or(Step::Go, Step::Stop)
            }
        })
    }
}

/// A WebSocket client's text messages, read as the application will: a JSON message by its
/// keys and string leaves, anything else as one text. A message too deep to walk is
/// refused rather than passed unread.
impl palisade_core::policies::websocket::MessageCheck for Threat {
    fn check_message(&self, text: &str) -> Option<(String, String)> {
        let found = match json::parse(text.as_bytes()) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => match self.walk_json(&v, &[]) {
                Ok(hit) => hit,
                Err(_) => {
                    return Some((
                        format!(
                            "a message nested deeper than {} levels cannot be inspected",
                            json::MAX_DEPTH
                        ),
                        String::new(),
                    ))
                }
            },
            Err(JsonError::TooDeep) => {
                return Some((
                    format!(
                        "a message nested deeper than {} levels cannot be inspected",
                        json::MAX_DEPTH
                    ),
                    String::new(),
                ))
            }
            _ => self.check(text),
        };
        found.map(|(c, input)| (format!("{} detected in a message", c.name()), input))
    }
}

#[async_trait::async_trait]
impl Policy for Threat {
    fn message_check(&self) -> Option<&dyn palisade_core::policies::websocket::MessageCheck> {
        Some(self)
    }
    fn kind(&self) -> &'static str {
        "threat"
    }
    fn stage(&self) -> Stage {
        Stage::Threat
    }
    fn phases(&self) -> PhaseSet {
        let p = PhaseSet::EMPTY.with(Phase::RequestHead);
        if self.body {
            p.with(Phase::RequestBody)
        } else {
            p
        }
    }

    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        // what a `contract` policy proved to be typed (numbers, enums, UUIDs, dates) is not
        // scanned: nothing can be injected through it
        let typed: Vec<String> = x
            .annotations
            .get(TYPED)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        let is_typed = |k: &str| typed.iter().any(|t| t == k);
        for (i, seg) in req
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            if is_typed(&format!("s:{i}")) {
                continue;
            }
            if let Some(c) = self.check(seg) {
                return Ok(refuse(x, c, "the path"));
            }
        }
        for (k, v) in query_pairs(req.uri.query().unwrap_or("")) {
            if self.skip_fields.iter().any(|f| f == k) {
                continue;
            }
            if let Some(c) = self.check(k) {
                return Ok(refuse(x, c, "a query parameter"));
            }
            if is_typed(&format!("q:{k}")) {
                continue;
            }
            if let Some(c) = self.check(v) {
                return Ok(refuse(x, c, "a query parameter"));
            }
        }
        for (name, value) in &req.headers {
            let n = name.as_str();
            if n.starts_with("sec-")
                || n.starts_with("x-forwarded-")
                || self.skip_headers.iter().any(|h| h == n)
            {
                continue;
            }
            let text = String::from_utf8_lossy(value.as_bytes());
            if n == "cookie" {
                for pair in text.split(';') {
                    let (k, v) = pair.split_once('=').unwrap_or(("", pair));
                    if let Some(c) = self.check(k.trim()).or_else(|| self.check(v.trim())) {
                        return Ok(refuse(x, c, "a cookie"));
                    }
                }
                continue;
            }
            // standard headers by their grammar: what fits is tokens, and only its quoted
            // strings are read; what does not fit is read whole
            if headers::STRUCTURED.contains(&n) {
                let found = match headers::to_inspect(n, &text) {
                    Some(parts) => parts.iter().find_map(|p| self.check(p)),
                    None => self.check(&text),
                };
                if let Some(c) = found {
                    return Ok(refuse(x, c, "a header"));
                }
                continue;
            }
            let found = match n {
                "referer" | "origin" => self.check_page_address(&text),
                "user-agent" => self.check(&without_locales(&text)),
                _ => self.check(&text),
            };
            if let Some(c) = found {
                return Ok(refuse(x, c, "a header"));
            }
        }
        Ok(Verdict::Continue)
    }

    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        if body.is_empty() {
            return Ok(Verdict::Continue);
        }
        let ct = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let typed: Vec<String> = x
            .annotations
            .get(TYPED)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        // the body a `contract` policy already parsed as JSON is walked, not parsed again
        let found = match x.json_body.clone() {
            Some(v) => self.json_found(&v, &typed, "the JSON body"),
            None => self.inspect_body(ct, body, &typed),
        };
        Ok(match found {
            Ok(Some((hit, location))) => refuse(x, hit, location),
            Ok(None) => Verdict::Continue,
            Err(TooDeep(location)) => uninspectable(location),
        })
    }
}
