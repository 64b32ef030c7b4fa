//! RFC 9421 §2: the signatures a request carries (`Signature-Input`, `Signature`), their
//! covered components, and the signature base they sign.
//!
//! Structured fields are read with the `sfv` crate (RFC 8941/9651). Everything a signature
//! names is resolved from the request as received; a component that is absent, repeated
//! where it must be single, or carries a parameter we do not implement fails the signature
//! rather than being skipped.

use base64::Engine as _;
use http::HeaderMap;
use sfv::{BareItem, Dictionary, FieldType, InnerList, Item, List, ListEntry, Parser};

/// At most this many signatures are considered in one request.
pub const MAX_SIGNATURES: usize = 8;
/// At most this many components in one signature.
pub const MAX_COMPONENTS: usize = 64;

/// The request as a signature sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The method, as sent (case-sensitive).
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The host (and port, when not the default), lower case.
    pub authority: &'a str,
    /// The path as sent.
    pub path: &'a str,
    /// The query without `?`, when the target has one.
    pub query: Option<&'a str>,
    /// The header fields.
    pub headers: &'a HeaderMap,
}

/// A covered component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    /// `@method`
    Method,
    /// `@target-uri`
    TargetUri,
    /// `@authority`
    Authority,
    /// `@scheme`
    Scheme,
    /// `@request-target`
    RequestTarget,
    /// `@path`
    Path,
    /// `@query`
    Query,
    /// `@query-param;name=…` (the name as written, percent-encoded)
    QueryParam(String),
    /// `@status`: only in the gateway's own response signatures.
    Status,
    /// A header field, with the `sf`, `key` and `bs` parameters.
    Field {
        /// Lower-case field name.
        name: String,
        /// Re-serialised as a structured field.
        sf: bool,
        /// One member of a dictionary field.
        key: Option<String>,
        /// Each value wrapped as a byte sequence.
        bs: bool,
    },
}

impl Id {
    /// The derived component of this name (`@method` …), except `@query-param`, which needs
    /// its parameter.
    pub fn derived(name: &str) -> Option<Id> {
        Some(match name {
            "@method" => Id::Method,
            "@target-uri" => Id::TargetUri,
            "@authority" => Id::Authority,
            "@scheme" => Id::Scheme,
            "@request-target" => Id::RequestTarget,
            "@path" => Id::Path,
            "@query" => Id::Query,
            _ => return None,
        })
    }

    /// The field name of a field component.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Id::Field { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// A component as the signature names it.
#[derive(Debug, Clone)]
pub struct Component {
    /// What it is.
    pub id: Id,
    item: Item,
}

/// The parameters of a signature (RFC 9421 §2.3).
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// `created`, Unix seconds.
    pub created: Option<i64>,
    /// `expires`, Unix seconds.
    pub expires: Option<i64>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `alg`.
    pub alg: Option<String>,
    /// `keyid`.
    pub keyid: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
}

/// One signature of the request.
#[derive(Debug, Clone)]
pub struct Signature {
    /// Its label in the two dictionaries.
    pub label: String,
    /// The covered components, in order.
    pub components: Vec<Component>,
    /// Its parameters.
    pub params: Params,
    /// The signature bytes.
    pub value: Vec<u8>,
    inner: InnerList,
}

/// Why the signature headers cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// The values of a field, each trimmed, joined with `, ` (RFC 9421 §2.1); `None` when the
/// request has none.
pub(crate) fn joined(headers: &HeaderMap, name: &str) -> Result<Option<String>, Malformed> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let v = v
            .to_str()
            .map_err(|_| Malformed(format!("the {name} field is not ASCII")))?;
        match &mut out {
            None => out = Some(v.trim().to_string()),
            Some(o) => {
                o.push_str(", ");
                o.push_str(v.trim());
            }
        }
    }
    Ok(out)
}

fn string_param(item: &BareItem, what: &str) -> Result<String, Malformed> {
    item.as_string()
        .map(|s| s.as_str().to_string())
        .ok_or_else(|| Malformed(format!("the `{what}` parameter must be a string")))
}

fn int_param(item: &BareItem, what: &str) -> Result<i64, Malformed> {
    item.as_integer()
        .map(i64::from)
        .ok_or_else(|| Malformed(format!("the `{what}` parameter must be an integer")))
}

fn component(item: &Item) -> Result<Component, Malformed> {
    let Some(name) = item.bare_item.as_string().map(|s| s.as_str()) else {
        return Err(Malformed("a covered component must be a string".into()));
    };
    let flag = |k: &str| item.params.get(k).map(|v| v.as_boolean() == Some(true));
    let unknown = |allowed: &[&str]| {
        item.params
            .keys()
            .find(|k| !allowed.contains(&k.as_str()))
            .map(|k| k.as_str().to_string())
    };
    let id = match (Id::derived(name), name) {
        (Some(id), _) => id,
        (None, "@query-param") => {
            if let Some(k) = unknown(&["name"]) {
                return Err(Malformed(format!(
                    "`@query-param` has an unknown parameter `{k}`"
                )));
            }
            let Some(n) = item.params.get("name").and_then(|v| v.as_string()) else {
                return Err(Malformed(
                    "`@query-param` needs a `name` string parameter".into(),
                ));
            };
            Id::QueryParam(n.as_str().to_string())
        }
        (None, "@status") => {
            return Err(Malformed(
                "`@status` belongs to responses, not requests".into(),
            ))
        }
        (None, n) if n.starts_with('@') => {
            return Err(Malformed(format!(
                "`{n}` is not a derived component of RFC 9421"
            )))
        }
        (None, n) => {
            if n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(Malformed(format!(
                    "the field name `{n}` must be lower case and not empty"
                )));
            }
            if let Some(k) = unknown(&["sf", "key", "bs"]) {
                let why = if k == "req" || k == "tr" {
                    format!("the `{k}` parameter is not supported on requests")
                } else {
                    format!("the component `{n}` has an unknown parameter `{k}`")
                };
                return Err(Malformed(why));
            }
            let key = match item.params.get("key") {
                None => None,
                Some(v) => Some(string_param(v, "key")?),
            };
            let sf = flag("sf") == Some(true) || key.is_some();
            let bs = flag("bs") == Some(true);
            if bs && sf {
                return Err(Malformed(format!(
                    "`{n}` cannot be both `bs` and `sf`/`key`"
                )));
            }
            Id::Field {
                name: n.to_string(),
                sf,
                key,
                bs,
            }
        }
    };
    Ok(Component {
        id,
        item: item.clone(),
    })
}

fn params(inner: &InnerList) -> Result<Params, Malformed> {
    let mut p = Params::default();
    for (k, v) in &inner.params {
        match k.as_str() {
            "created" => p.created = Some(int_param(v, "created")?),
            "expires" => p.expires = Some(int_param(v, "expires")?),
            "nonce" => p.nonce = Some(string_param(v, "nonce")?),
            "alg" => p.alg = Some(string_param(v, "alg")?),
            "keyid" => p.keyid = Some(string_param(v, "keyid")?),
            "tag" => p.tag = Some(string_param(v, "tag")?),
            // other parameters are signed (they are part of the base) and otherwise unused
            _ => {}
        }
    }
    Ok(p)
}

/// The signatures of a request: every label of `Signature-Input` with its `Signature`.
/// `Ok(empty)` when the request has neither field.
pub fn signatures(headers: &HeaderMap) -> Result<Vec<Signature>, Malformed> {
    let (input, sigs) = (
        joined(headers, "signature-input")?,
        joined(headers, "signature")?,
    );
    let (input, sigs) = match (input, sigs) {
        (None, None) => return Ok(Vec::new()),
        (Some(i), Some(s)) => (i, s),
        (Some(_), None) => return Err(Malformed("Signature-Input without Signature".into())),
        (None, Some(_)) => return Err(Malformed("Signature without Signature-Input".into())),
    };
    let input: Dictionary = Parser::new(&input)
        .parse()
        .map_err(|_| Malformed("Signature-Input is not a structured-field dictionary".into()))?;
    let sigs: Dictionary = Parser::new(&sigs)
        .parse()
        .map_err(|_| Malformed("Signature is not a structured-field dictionary".into()))?;
    if input.len() > MAX_SIGNATURES {
        return Err(Malformed(format!(
            "at most {MAX_SIGNATURES} signatures are read in one request"
        )));
    }
    let mut out = Vec::new();
    for (label, entry) in &input {
        let ListEntry::InnerList(inner) = entry else {
            return Err(Malformed(format!(
                "Signature-Input `{}` must be a list of components",
                label.as_str()
            )));
        };
        if inner.items.len() > MAX_COMPONENTS {
            return Err(Malformed(format!(
                "a signature covers at most {MAX_COMPONENTS} components"
            )));
        }
        let value = match sigs.get(label) {
            Some(ListEntry::Item(Item {
                bare_item: BareItem::ByteSequence(b),
                ..
            })) => b.clone(),
            Some(_) => {
                return Err(Malformed(format!(
                    "Signature `{}` must be a byte sequence (:base64:)",
                    label.as_str()
                )))
            }
            None => {
                return Err(Malformed(format!(
                    "Signature-Input `{}` has no Signature",
                    label.as_str()
                )))
            }
        };
        let components = inner
            .items
            .iter()
            .map(component)
            .collect::<Result<Vec<_>, _>>()?;
        for (i, c) in components.iter().enumerate() {
            if components
                .get(..i)
                .is_some_and(|before| before.iter().any(|b| b.item == c.item))
            {
                return Err(Malformed("a component is covered twice".into()));
            }
        }
        out.push(Signature {
            label: label.as_str().to_string(),
            components,
            params: params(inner)?,
            value,
            inner: inner.clone(),
        });
    }
    Ok(out)
}

/// Why a signature base cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseError {
    /// A covered component the request does not have (its identifier).
    Missing(String),
    /// A component that cannot be computed from the request (why).
    Invalid(String),
}

/// Fields whose structured type is a dictionary (for `sf` and `key`).
const DICTIONARIES: &[&str] = &[
    "signature",
    "signature-input",
    "accept-signature",
    "content-digest",
    "repr-digest",
    "want-content-digest",
    "want-repr-digest",
    "priority",
    "cache-status",
    "proxy-status",
    "cdn-cache-control",
    "example-dict",
];

fn serialize_entry(e: ListEntry) -> Option<String> {
    let list: List = vec![e];
    list.serialize()
}

fn field_value(m: &Message<'_>, c: &Component, id: &Id) -> Result<String, BaseError> {
    let Id::Field { name, sf, key, bs } = id else {
        return Err(BaseError::Invalid("not a field".into()));
    };
    let missing = || BaseError::Missing(c.item.serialize());
    let mut values = Vec::new();
    for v in m.headers.get_all(name.as_str()) {
        let v = v
            .to_str()
            .map_err(|_| BaseError::Invalid(format!("the {name} field is not visible ASCII")))?;
        values.push(v.trim());
    }
    if values.is_empty() {
        return Err(missing());
    }
    if *bs {
        let e = base64::engine::general_purpose::STANDARD;
        return Ok(values
            .iter()
            .map(|v| format!(":{}:", e.encode(v.as_bytes())))
            .collect::<Vec<_>>()
            .join(", "));
    }
    let combined = values.join(", ");
    if !*sf {
        return Ok(combined);
    }
    let bad = || BaseError::Invalid(format!("the {name} field is not a valid structured field"));
    if DICTIONARIES.contains(&name.as_str()) || key.is_some() {
        let d: Dictionary = Parser::new(&combined).parse().map_err(|_| bad())?;
        match key {
            None => d.serialize().ok_or_else(bad),
            Some(k) => {
                let member = d
                    .iter()
                    .find(|(dk, _)| dk.as_str() == k)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(missing)?;
                serialize_entry(member).ok_or_else(bad)
            }
        }
    } else {
        let l: List = Parser::new(&combined).parse().map_err(|_| bad())?;
        l.serialize().ok_or_else(bad)
    }
}

/// The form-urlencoded percent-encoding RFC 9421 §2.2.8 asks for a query parameter: every
/// byte but ASCII alphanumerics and `*-._` (space as `%20`).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_param(m: &Message<'_>, c: &Component, name: &str) -> Result<String, BaseError> {
    let bad = || BaseError::Invalid("the query is not valid percent-encoding".into());
    let want = palisade_core::uri::decode_form(name).ok_or_else(bad)?;
    let mut found = None;
    for pair in m.query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = palisade_core::uri::decode_form(k).ok_or_else(bad)?;
        if k != want {
            continue;
        }
        if found.is_some() {
            return Err(BaseError::Invalid(format!(
                "the query parameter `{}` occurs more than once: sign `@query` instead",
                form_encode(&want)
            )));
        }
        found = Some(form_encode(
            &palisade_core::uri::decode_form(v).ok_or_else(bad)?,
        ));
    }
    found.ok_or_else(|| BaseError::Missing(c.item.serialize()))
}

/// The value of one component.
pub fn value(m: &Message<'_>, c: &Component) -> Result<String, BaseError> {
    let path = if m.path.is_empty() { "/" } else { m.path };
    Ok(match &c.id {
        Id::Method => m.method.to_string(),
        Id::TargetUri => match m.query {
            Some(q) => format!("{}://{}{path}?{q}", m.scheme, m.authority),
            None => format!("{}://{}{path}", m.scheme, m.authority),
        },
        Id::Authority => m.authority.to_string(),
        Id::Scheme => m.scheme.to_string(),
        Id::RequestTarget => match m.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        },
        Id::Path => path.to_string(),
        Id::Query => format!("?{}", m.query.unwrap_or("")),
        Id::QueryParam(name) => query_param(m, c, name)?,
        Id::Status => {
            return Err(BaseError::Invalid(
                "@status belongs to responses, not requests".into(),
            ))
        }
        id @ Id::Field { .. } => field_value(m, c, id)?,
    })
}

impl Signature {
    /// The signature base of RFC 9421 §2.5: one line per component, then
    /// `"@signature-params"`.
    pub fn base(&self, m: &Message<'_>) -> Result<String, BaseError> {
        self.render(|c| value(m, c))
    }

    /// The base with each component's value from `value_of`.
    fn render(
        &self,
        value_of: impl Fn(&Component) -> Result<String, BaseError>,
    ) -> Result<String, BaseError> {
        let mut out = String::new();
        for c in &self.components {
            let v = value_of(c)?;
            if v.contains(['\n', '\r']) {
                return Err(BaseError::Invalid(
                    "a component value holds a line break".into(),
                ));
            }
            out.push_str(&c.item.serialize());
            out.push_str(": ");
            out.push_str(&v);
            out.push('\n');
        }
        out.push_str("\"@signature-params\": ");
        out.push_str(
            &serialize_entry(ListEntry::InnerList(self.inner.clone()))
                .ok_or_else(|| BaseError::Invalid("the parameters cannot be serialised".into()))?,
        );
        Ok(out)
    }

    /// The signature base of a response with `status` (the gateway's response signatures):
    /// `m` carries the response's fields.
    pub fn response_base(&self, m: &Message<'_>, status: u16) -> Result<String, BaseError> {
        self.render(|c| match c.id {
            Id::Status => Ok(status.to_string()),
            Id::Field { .. } => value(m, c),
            _ => Err(BaseError::Invalid(
                "a response signature covers @status and fields only".into(),
            )),
        })
    }

    /// Whether the signature covers `id`, directly or through a component that contains it
    /// (`@target-uri` holds scheme, authority, path and query; `@request-target` path and
    /// query).
    pub fn covers(&self, id: &Id) -> bool {
        self.components.iter().any(|c| {
            c.id == *id
                || match (&c.id, id) {
                    (
                        Id::TargetUri,
                        Id::Scheme | Id::Authority | Id::Path | Id::Query | Id::RequestTarget,
                    ) => true,
                    (Id::RequestTarget, Id::Path | Id::Query) => true,
                    // the plain field covers its structured readings too
                    (
                        Id::Field {
                            name: a,
                            bs: false,
                            sf: false,
                            key: None,
                        },
                        Id::Field { name: b, .. },
                    ) => a == b,
                    _ => false,
                }
        })
    }
}

/// Builds the `Signature-Input` member and base for signing `components` with `params`.
pub fn for_signing(
    components: &[Id],
    created: i64,
    keyid: &str,
    alg: Option<&str>,
    nonce: Option<&str>,
    tag: Option<&str>,
) -> Result<(Signature, String), String> {
    let mut items = Vec::new();
    for id in components {
        let text = match id {
            Id::Method => "@method".to_string(),
            Id::TargetUri => "@target-uri".into(),
            Id::Authority => "@authority".into(),
            Id::Scheme => "@scheme".into(),
            Id::RequestTarget => "@request-target".into(),
            Id::Path => "@path".into(),
            Id::Query => "@query".into(),
            Id::Status => "@status".into(),
            Id::QueryParam(_) | Id::Field { sf: true, .. } | Id::Field { bs: true, .. } => {
                return Err("only plain components can be signed by the gateway".into())
            }
            Id::Field { name, .. } => name.clone(),
        };
        let s = sfv::String::from_string(text)
            .map_err(|(_, t)| format!("`{t}` is not a valid component"))?;
        items.push(Item::new(s));
    }
    let mut inner = InnerList::new(items);
    let key = |k: &str| sfv::Key::from_string(k.to_string()).map_err(|_| "bad key".to_string());
    let string = |v: &str| {
        sfv::String::from_string(v.to_string())
            .map_err(|(_, v)| format!("`{v}` is not a valid string"))
    };
    inner.params.insert(
        key("created")?,
        BareItem::Integer(
            sfv::Integer::try_from(created).map_err(|_| "`created` is out of range".to_string())?,
        ),
    );
    inner
        .params
        .insert(key("keyid")?, BareItem::String(string(keyid)?));
    if let Some(a) = alg {
        inner
            .params
            .insert(key("alg")?, BareItem::String(string(a)?));
    }
    if let Some(n) = nonce {
        inner
            .params
            .insert(key("nonce")?, BareItem::String(string(n)?));
    }
    if let Some(t) = tag {
        inner
            .params
            .insert(key("tag")?, BareItem::String(string(t)?));
    }
    let sig = Signature {
        label: String::new(),
        components: inner
            .items
            .iter()
            .zip(components)
            .map(|(item, id)| Component {
                id: id.clone(),
                item: item.clone(),
            })
            .collect(),
        params: params(&inner).map_err(|e| e.0)?,
        value: Vec::new(),
        inner,
    };
    let text = serialize_entry(ListEntry::InnerList(sig.inner.clone()))
        .ok_or_else(|| "the parameters cannot be serialised".to_string())?;
    Ok((sig, text))
}
