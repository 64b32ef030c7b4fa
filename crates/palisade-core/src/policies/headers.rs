//! `headers`: add, set and remove request and response headers, and send secure default
//! response headers (on by default) while hiding headers that reveal the upstream's software.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::SpecError;
use crate::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, RequestHead, ResponseHead, Stage, Verdict,
};

/// Config of the `headers` policy.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadersSpec {
    /// Accepted for uniformity; this policy never refuses, so the mode changes nothing.
    #[serde(default)]
    pub mode: Mode,
    /// Changes to the request sent upstream.
    #[serde(default)]
    pub request: HeaderOpsSpec,
    /// Changes to the response sent to the client.
    #[serde(default)]
    pub response: ResponseHeaderOpsSpec,
}

/// Header changes on the request.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderOpsSpec {
    /// Headers set, replacing any value already present.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers appended beside values already present.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Header changes on the response.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseHeaderOpsSpec {
    /// Headers set, replacing any value already present.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers appended beside values already present.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers removed.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Send secure defaults (nosniff, frame denial, no-referrer, a restrictive CSP) unless the
    /// upstream set them, and remove `Server` and `X-Powered-By`. Default true.
    #[serde(default = "default_true")]
    pub secure_defaults: bool,
}

impl Default for ResponseHeaderOpsSpec {
    fn default() -> Self {
        Self {
            set: BTreeMap::new(),
            add: BTreeMap::new(),
            remove: Vec::new(),
            secure_defaults: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// The secure response headers sent by default, when the upstream did not set them.
pub const SECURE_DEFAULTS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("cross-origin-resource-policy", "same-origin"),
];

/// Response headers that reveal the upstream's software, removed with the secure defaults.
pub const REVEALING: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
];

#[derive(Debug, Clone, Default)]
struct Ops {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl Ops {
    fn apply(&self, h: &mut HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        for (n, v) in &self.set {
            h.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            h.append(n.clone(), v.clone());
        }
    }
}

/// The runtime `headers` policy.
#[derive(Debug, Clone)]
pub struct Headers {
    request: Ops,
    response: Ops,
    secure_defaults: bool,
}

/// Headers a config may not touch: they frame the message, and changing them would let a
/// config create a request-smuggling vector.
const FRAMING: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "te",
    "upgrade",
];

fn build_ops(
    set: &BTreeMap<String, String>,
    add: &BTreeMap<String, String>,
    remove: &[String],
    prefix: &str,
    errors: &mut Vec<SpecError>,
) -> Ops {
    let mut ops = Ops::default();
    let name = |n: &str, field: String, errors: &mut Vec<SpecError>| -> Option<HeaderName> {
        match HeaderName::from_bytes(n.as_bytes()) {
            Ok(h) if FRAMING.contains(&h.as_str()) => {
                errors.push(SpecError::new(
                    field,
                    format!("`{n}` frames the message and cannot be changed by a policy"),
                ));
                None
            }
            Ok(h) => Some(h),
            Err(_) => {
                errors.push(SpecError::new(
                    field,
                    format!("`{n}` is not a valid header name (letters, digits and -)"),
                ));
                None
            }
        }
    };
    for (list, out, kind) in [(set, &mut ops.set, "set"), (add, &mut ops.add, "add")] {
        for (k, v) in list {
            let field = format!("{prefix}.{kind}.{k}");
            let Some(n) = name(k, field.clone(), errors) else {
                continue;
            };
            match HeaderValue::from_str(v) {
                Ok(v) => out.push((n, v)),
                Err(_) => errors.push(SpecError::new(field, "the value has characters a header cannot carry (control characters or newlines)")),
            }
        }
    }
    for (i, k) in remove.iter().enumerate() {
        if let Some(n) = name(k, format!("{prefix}.remove[{i}]"), errors) {
            ops.remove.push(n);
        }
    }
    ops
}

impl HeadersSpec {
    /// Builds the policy, reporting every malformed header name or value.
    pub fn build(&self) -> Result<Headers, Vec<SpecError>> {
        let mut errors = Vec::new();
        let request = build_ops(
            &self.request.set,
            &self.request.add,
            &self.request.remove,
            "request",
            &mut errors,
        );
        let r = &self.response;
        let response = build_ops(&r.set, &r.add, &r.remove, "response", &mut errors);
        if errors.is_empty() {
            Ok(Headers {
                request,
                response,
                secure_defaults: r.secure_defaults,
            })
        } else {
            Err(errors)
        }
    }
}

impl Headers {
    /// Applies the response changes (also used on refusals the gateway renders itself).
    pub fn apply_response(&self, h: &mut HeaderMap) {
        if self.secure_defaults {
            for n in REVEALING {
                h.remove(*n);
            }
            for (n, v) in SECURE_DEFAULTS {
                if !h.contains_key(*n) {
                    h.insert(HeaderName::from_static(n), HeaderValue::from_static(v));
                }
            }
        }
        self.response.apply(h);
    }
}

#[async_trait::async_trait]
impl Policy for Headers {
    fn kind(&self) -> &'static str {
        "headers"
    }
    fn stage(&self) -> Stage {
        Stage::Transform
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY
            .with(Phase::Upstream)
            .with(Phase::ResponseHead)
    }
    async fn on_upstream(&self, req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        self.request.apply(&mut req.headers);
        Ok(Verdict::Continue)
    }
    async fn on_response_head(&self, res: &mut ResponseHead, _x: &mut Exchange) -> Outcome {
        self.apply_response(&mut res.headers);
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_defaults_fill_gaps_and_hide_server() {
        let h = HeadersSpec::default().build().unwrap();
        let mut map = HeaderMap::new();
        map.insert("server", HeaderValue::from_static("Apache/2.4.1"));
        map.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        h.apply_response(&mut map);
        assert!(map.get("server").is_none());
        assert_eq!(map["x-content-type-options"], "nosniff");
        // the upstream's own choice is kept
        assert_eq!(map["x-frame-options"], "SAMEORIGIN");
    }

    #[test]
    fn set_add_remove() {
        let mut spec = HeadersSpec::default();
        spec.request.set.insert("x-env".into(), "prod".into());
        spec.request.add.insert("x-tag".into(), "b".into());
        spec.request.remove.push("x-debug".into());
        spec.response.secure_defaults = false;
        let h = spec.build().unwrap();
        let mut map = HeaderMap::new();
        map.insert("x-env", HeaderValue::from_static("dev"));
        map.insert("x-tag", HeaderValue::from_static("a"));
        map.insert("x-debug", HeaderValue::from_static("1"));
        h.request.apply(&mut map);
        assert_eq!(map["x-env"], "prod");
        assert_eq!(map.get_all("x-tag").iter().count(), 2);
        assert!(map.get("x-debug").is_none());
    }

    #[test]
    fn refuses_bad_and_framing_headers() {
        let mut spec = HeadersSpec::default();
        spec.request.set.insert("bad name".into(), "x".into());
        spec.request.set.insert("content-length".into(), "0".into());
        spec.response
            .add
            .insert("x-ok".into(), "line\nbreak".into());
        let errs = spec.build().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "request.set.bad name",
                "request.set.content-length",
                "response.add.x-ok"
            ]
        );
    }
}
