//! What identifies a client for a traffic policy: the client address, the consumer, the
//! route, header values, or a combination.

use http::HeaderName;
use palisade_core::policies::SpecError;
use palisade_core::{Exchange, RequestHead};
use serde::Deserialize;

/// The key as written in config: one part or a list of parts joined.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum KeySpec {
    /// One part.
    One(String),
    /// Several parts, combined.
    Many(Vec<String>),
}

impl Default for KeySpec {
    fn default() -> Self {
        KeySpec::One("client_ip".into())
    }
}

#[derive(Debug, Clone)]
enum Part {
    ClientIp,
    Consumer,
    /// The calling service: the identity of the client certificate the listener verified.
    Service,
    Route,
    Header(HeaderName),
    Claim(String),
    Body(String),
}

/// A compiled key.
#[derive(Debug, Clone)]
pub struct Key {
    parts: Vec<Part>,
}

impl Key {
    /// Compiles a key, adding problems to `errors` (fields `key` or `key[i]`).
    pub fn parse(spec: &KeySpec, errors: &mut Vec<SpecError>) -> Option<Key> {
        let raw = match spec {
            KeySpec::One(s) => vec![s.clone()],
            KeySpec::Many(v) => v.clone(),
        };
        let before = errors.len();
        let mut parts = Vec::new();
        for (i, p) in raw.iter().enumerate() {
            let field = if matches!(spec, KeySpec::One(_)) {
                "key".to_string()
            } else {
                format!("key[{i}]")
            };
            match p.as_str() {
                "client_ip" => parts.push(Part::ClientIp),
                "consumer" => parts.push(Part::Consumer),
                "service" => parts.push(Part::Service),
                "route" => parts.push(Part::Route),
                other if other.starts_with("body:") => {
                    let f = other.trim_start_matches("body:").trim();
                    if f.is_empty() || f.split('.').any(str::is_empty) {
                        errors.push(SpecError::new(field, "`body:` needs a field, e.g. body:username or body:user.email"));
                    } else {
                        parts.push(Part::Body(f.to_string()));
                    }
                }
                other if other.starts_with("claim:") => {
                    let c = other.trim_start_matches("claim:").trim();
                    if c.is_empty() {
                        errors.push(SpecError::new(field, "`claim:` needs a claim name, e.g. claim:tenant"));
                    } else {
                        parts.push(Part::Claim(c.to_string()));
                    }
                }
                other => match other
                    .strip_prefix("header:")
                    .map(|h| HeaderName::from_bytes(h.trim().as_bytes()))
                {
                    Some(Ok(h)) => parts.push(Part::Header(h)),
                    Some(Err(_)) => errors.push(SpecError::new(
                        field,
                        format!("`{other}`: not a valid header name"),
                    )),
                    None => errors.push(SpecError::new(
                        field,
                        format!(
                            "`{other}` is not a key; use client_ip, consumer, service, route, header:NAME or claim:NAME"
                        ),
                    )),
                },
            }
        }
        if parts.is_empty() && errors.len() == before {
            errors.push(SpecError::new("key", "the key needs at least one part"));
        }
        (errors.len() == before).then_some(Key { parts })
    }

    /// Whether a part of the key is in the request body (the key is then known only once the
    /// body has arrived).
    pub fn needs_body(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Body(_)))
    }

    /// The key of a request. Header values may be credentials: the key is kept in memory
    /// only, never logged.
    pub fn of(&self, req: &RequestHead, x: &Exchange) -> String {
        self.of_body(req, x, None)
    }

    /// The key of a request whose body fields are at hand (for `body:` parts; without them,
    /// or without the field, the client address stands in).
    pub fn of_body(
        &self,
        req: &RequestHead,
        x: &Exchange,
        body: Option<&palisade_core::fields::BodyFields>,
    ) -> String {
        let mut key = String::new();
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                key.push('\u{1f}');
            }
            match p {
                Part::ClientIp => key.push_str(&x.client_ip.to_string()),
                Part::Consumer => match x.principal() {
                    Some(p) => {
                        key.push_str("c:");
                        key.push_str(p.consumer.as_deref().unwrap_or(&p.subject));
                    }
                    // no authenticated consumer: each client address is its own anonymous one
                    None => {
                        key.push_str("ip:");
                        key.push_str(&x.client_ip.to_string());
                    }
                },
                // the calling service (its SPIFFE ID, else DNS name, else CN); without a
                // verified certificate each client address is its own anonymous caller
                Part::Service => match x.client_cert.as_deref().and_then(|c| c.identity()) {
                    Some(id) => {
                        key.push_str("svc:");
                        key.push_str(id);
                    }
                    None => {
                        key.push_str("ip:");
                        key.push_str(&x.client_ip.to_string());
                    }
                },
                Part::Route => key.push_str(&x.route),
                Part::Header(h) => {
                    for v in req.headers.get_all(h) {
                        key.push_str(&String::from_utf8_lossy(v.as_bytes()));
                    }
                }
                // a claim of the verified token; without one, the client address stands in
                Part::Claim(c) => match x.principal().and_then(|p| p.claim_text(c)) {
                    Some(v) => {
                        key.push_str("claim:");
                        key.push_str(&v);
                    }
                    None => {
                        key.push_str("ip:");
                        key.push_str(&x.client_ip.to_string());
                    }
                },
                Part::Body(f) => match body.and_then(|b| b.text(f)) {
                    Some(v) => {
                        key.push_str("body:");
                        key.push_str(&v);
                    }
                    None => {
                        key.push_str("ip:");
                        key.push_str(&x.client_ip.to_string());
                    }
                },
            }
        }
        key
    }
}
