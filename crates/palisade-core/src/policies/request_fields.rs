//! `request_fields`: which fields a request body may set (mass assignment). With `allow`,
//! only the listed top-level fields are taken (the positive model: what the description says
//! the operation takes); with `refuse`, the listed fields (dotted paths for JSON) are refused
//! wherever the body sets them. JSON, form-encoded and multipart bodies are read; a body that
//! claims one of these types and does not parse is refused, never passed unread.

use std::collections::BTreeSet;

use http::StatusCode;
use serde::Deserialize;

use super::SpecError;
use crate::fields::{self, BodyFields};
use crate::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};

/// Refusal code when a body sets a field it may not.
pub const CODE_REFUSED: &str = "fields.refused";
/// Refusal code when a field is longer than its `max_length`.
pub const CODE_TOO_LONG: &str = "fields.too_long";
/// Refusal code when the body cannot be read as its type says.
pub const CODE_UNREADABLE: &str = "fields.unreadable";

/// Config of the `request_fields` policy.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestFieldsSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// The only top-level fields a body may set.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Fields a body may not set (dotted paths into JSON: `user.role`).
    #[serde(default)]
    pub refuse: Vec<String>,
    /// The longest value of a field, in characters (dotted paths into JSON).
    #[serde(default)]
    pub max_length: std::collections::BTreeMap<String, usize>,
}

/// The runtime `request_fields` policy.
#[derive(Debug, Clone)]
pub struct RequestFields {
    allow: Option<BTreeSet<String>>,
    refuse: Vec<String>,
    max_length: Vec<(String, usize)>,
}

impl RequestFieldsSpec {
    /// Builds the policy.
    pub fn build(&self) -> Result<RequestFields, Vec<SpecError>> {
        let mut errors = Vec::new();
        if self.allow.is_none() && self.refuse.is_empty() && self.max_length.is_empty() {
            errors.push(SpecError::new(
                "allow",
                "request_fields needs `allow` (the fields the operation takes), `refuse` or `max_length`",
            ));
        }
        for (f, n) in &self.max_length {
            if *n == 0 {
                errors.push(SpecError::new(
                    format!("max_length.{f}"),
                    "a length of at least 1",
                ));
            }
        }
        for (i, f) in self.refuse.iter().enumerate() {
            if f.is_empty() || f.split('.').any(str::is_empty) {
                errors.push(SpecError::new(
                    format!("refuse[{i}]"),
                    "a field is a name or a dotted path (user.role)",
                ));
            }
        }
        if errors.is_empty() {
            Ok(RequestFields {
                allow: self.allow.as_ref().map(|a| a.iter().cloned().collect()),
                refuse: self.refuse.clone(),
                max_length: self
                    .max_length
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
            })
        } else {
            Err(errors)
        }
    }
}

impl RequestFields {
    /// The decision on a body's fields.
    pub fn decide(&self, f: &BodyFields) -> Verdict {
        if let Some(allow) = &self.allow {
            if f.names().iter().any(|n| !allow.contains(*n)) {
                // the name is the client's: not echoed
                return Verdict::Reject(
                    Rejection::new(StatusCode::BAD_REQUEST, CODE_REFUSED, "Field not allowed")
                        .with_detail("the body sets a field this operation does not take"),
                );
            }
        }
        if let Some(name) = self.refuse.iter().find(|n| f.has(n)) {
            return Verdict::Reject(
                Rejection::new(StatusCode::BAD_REQUEST, CODE_REFUSED, "Field not allowed")
                    .with_detail(format!("`{name}` cannot be set by a client")),
            );
        }
        for (name, max) in &self.max_length {
            if f.text(name).is_some_and(|v| v.chars().count() > *max) {
                return Verdict::Reject(
                    Rejection::new(StatusCode::BAD_REQUEST, CODE_TOO_LONG, "Field too long")
                        .with_detail(format!("`{name}` is longer than {max} characters")),
                );
            }
        }
        Verdict::Continue
    }
}

#[async_trait::async_trait]
impl Policy for RequestFields {
    fn kind(&self) -> &'static str {
        "request_fields"
    }
    fn stage(&self) -> Stage {
        Stage::Validate
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestBody)
    }
    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        Ok(match fields::read(req, body, x) {
            Ok(f) => self.decide(&f),
            Err(e) => Verdict::Reject(
                Rejection::new(StatusCode::BAD_REQUEST, CODE_UNREADABLE, "Unreadable body")
                    .with_detail(e.0),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(ct: &str, b: &str) -> BodyFields {
        let (h, ()) = http::Request::builder()
            .header("content-type", ct)
            .body(())
            .unwrap()
            .into_parts();
        let a: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        fields::read(
            &h,
            b.as_bytes(),
            &mut Exchange::new("r".into(), a, a.ip(), false),
        )
        .unwrap()
    }

    #[test]
    fn decision_table() {
        let allow = RequestFieldsSpec {
            allow: Some(vec!["full_name".into(), "email".into()]),
            ..Default::default()
        }
        .build()
        .unwrap();
        let refuse = RequestFieldsSpec {
            refuse: vec!["is_staff".into(), "user.role".into()],
            ..Default::default()
        }
        .build()
        .unwrap();
        let long = RequestFieldsSpec {
            max_length: [("email".to_string(), 10)].into_iter().collect(),
            ..Default::default()
        }
        .build()
        .unwrap();
        let json = "application/json";
        let form = "application/x-www-form-urlencoded";
        // (policy, content type, body, refused)
        let rows: &[(&RequestFields, &str, &str, bool)] = &[
            (&allow, json, r#"{"full_name":"A"}"#, false),
            (&allow, json, r#"{"full_name":"A","is_staff":true}"#, true),
            (&allow, json, r#"{"Full_name":"A"}"#, true),
            (&allow, form, "email=a%40b.c", false),
            (&allow, form, "email=x&is_staff=1", true),
            (&allow, json, "[1,2]", false),
            (&refuse, json, r#"{"is_staff":false}"#, true),
            (&refuse, json, r#"{"user":{"role":"admin"}}"#, true),
            (&refuse, json, r#"{"user":{"name":"x"},"role":"a"}"#, false),
            (&refuse, form, "is_staff=1", true),
            (&refuse, "text/plain", "is_staff=1", false),
            (&long, json, r#"{"email":"a@b.c"}"#, false),
            (&long, json, r#"{"email":"aaaaaaaaaa@b.c"}"#, true),
            (&long, json, r#"{"email":"ééééééééé@"}"#, false),
            (&long, form, "email=aaaaaaaaaaaaaaaa", true),
            (&long, json, r#"{"name":"aaaaaaaaaaaaaaaaaaaaa"}"#, false),
        ];
        for (p, ct, b, refused) in rows {
            let v = p.decide(&body(ct, b));
            assert_eq!(matches!(v, Verdict::Reject(_)), *refused, "{ct} {b}");
        }
        assert!(RequestFieldsSpec::default().build().is_err());
    }
}
