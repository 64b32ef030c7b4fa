//! `responses`: what answers of an operation may tell a client. It replaces chosen answers
//! by one uniform problem (a login that answers "unknown user" and "wrong password"
//! differently lets an attacker enumerate users), withholds error answers that show stack
//! traces or database errors (or every 5xx body), and removes named fields from JSON answers
//! (a password hash the upstream returns).
//!
//! A replaced answer is a refusal of the gateway with its own code, rendered as every other
//! (problem+json); in `monitor` mode the answer passes unchanged and the replacement is
//! counted and logged as a would-refuse. Removing fields rewrites the body in `enforce` mode;
//! in `monitor` mode it is counted instead.

use std::collections::BTreeSet;

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::SpecError;
use crate::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, ResponseHead, Stage, Verdict,
};

/// Code of an answer replaced by the uniform one.
pub const CODE_UNIFORM: &str = "responses.uniform";
/// Code of an error answer withheld.
pub const CODE_ERROR_HIDDEN: &str = "responses.error_hidden";
/// Code of fields that would be removed (monitor mode).
pub const CODE_FIELDS_REMOVED: &str = "responses.fields_removed";

/// One uniform answer for several statuses.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UniformSpec {
    /// The upstream statuses replaced (e.g. `[400, 401, 404]`).
    pub statuses: Vec<u16>,
    /// The status sent instead. Default: the first of `statuses`.
    #[serde(default)]
    pub status: Option<u16>,
    /// The problem's detail, the same for all of them.
    #[serde(default)]
    pub detail: Option<String>,
}

/// Config of the `responses` policy.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponsesSpec {
    /// `enforce` (default) changes answers; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// Answers replaced by one uniform problem.
    #[serde(default)]
    pub uniform: Option<UniformSpec>,
    /// Withhold every 5xx body (a problem with the same status is sent instead). Default false.
    #[serde(default)]
    pub hide_5xx: bool,
    /// Withhold any answer whose body shows a stack trace or a database error. Default false.
    #[serde(default)]
    pub hide_traces: bool,
    /// Field names removed from JSON answers, at any depth.
    #[serde(default)]
    pub remove_fields: Vec<String>,
}

/// The runtime `responses` policy.
#[derive(Debug, Clone)]
pub struct Responses {
    mode: Mode,
    uniform: Option<(BTreeSet<u16>, StatusCode, Option<String>)>,
    hide_5xx: bool,
    hide_traces: bool,
    remove: BTreeSet<String>,
}

/// The largest answer whose body is read for traces or fields; larger ones pass (they are
/// downloads, not error pages) unless `hide_5xx` applies.
const READ_MAX: usize = 1024 * 1024;

impl ResponsesSpec {
    /// Builds the policy.
    pub fn build(&self) -> Result<Responses, Vec<SpecError>> {
        let mut errors = Vec::new();
        let uniform = self.uniform.as_ref().map(|u| {
            if u.statuses.is_empty() {
                errors.push(SpecError::new(
                    "uniform.statuses",
                    "name at least one status",
                ));
            }
            for (i, s) in u.statuses.iter().enumerate() {
                if !(400..600).contains(s) {
                    errors.push(SpecError::new(
                        format!("uniform.statuses[{i}]"),
                        format!("{s}: only error answers (4xx, 5xx) are made uniform"),
                    ));
                }
            }
            let status = u.status.or(u.statuses.first().copied()).unwrap_or(400);
            let status = match StatusCode::from_u16(status) {
                Ok(s) if s.is_client_error() || s.is_server_error() => s,
                _ => {
                    errors.push(SpecError::new("uniform.status", "a 4xx or 5xx status"));
                    StatusCode::BAD_REQUEST
                }
            };
            if u.detail
                .as_deref()
                .is_some_and(|d| d.chars().any(char::is_control) || d.len() > 200)
            {
                errors.push(SpecError::new(
                    "uniform.detail",
                    "a detail is one line of at most 200 characters",
                ));
            }
            (
                u.statuses.iter().copied().collect(),
                status,
                u.detail.clone(),
            )
        });
        for (i, f) in self.remove_fields.iter().enumerate() {
            if f.is_empty() {
                errors.push(SpecError::new(
                    format!("remove_fields[{i}]"),
                    "an empty name",
                ));
            }
        }
        if uniform.is_none() && !self.hide_5xx && !self.hide_traces && self.remove_fields.is_empty()
        {
            errors.push(SpecError::new(
                "uniform",
                "responses needs one of uniform, hide_5xx, hide_traces, remove_fields",
            ));
        }
        if errors.is_empty() {
            Ok(Responses {
                mode: self.mode,
                uniform,
                hide_5xx: self.hide_5xx,
                hide_traces: self.hide_traces,
                remove: self.remove_fields.iter().cloned().collect(),
            })
        } else {
            Err(errors)
        }
    }
}

/// Removes the named fields from `v` at any depth; how many were removed.
fn remove_fields(v: &mut Value, names: &BTreeSet<String>, depth: usize) -> usize {
    if depth > crate::json::MAX_DEPTH {
        return 0;
    }
    match v {
        Value::Object(m) => {
            let before = m.len();
            m.retain(|k, _| !names.contains(k));
            let mut n = before - m.len();
            for x in m.values_mut() {
                n += remove_fields(x, names, depth + 1);
            }
            n
        }
        Value::Array(a) => a
            .iter_mut()
            .map(|x| remove_fields(x, names, depth + 1))
            .sum(),
        _ => 0,
    }
}

fn is_json(res: &ResponseHead) -> bool {
    res.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        })
}

impl Responses {
    /// The decision on a response head: a uniform answer, or a withheld 5xx.
    pub fn on_head(&self, status: StatusCode) -> Option<Rejection> {
        if let Some((statuses, to, detail)) = &self.uniform {
            if statuses.contains(&status.as_u16()) {
                let r = Rejection::new(*to, CODE_UNIFORM, "Request failed");
                return Some(match detail {
                    Some(d) => r.with_detail(d.clone()),
                    None => r,
                });
            }
        }
        if self.hide_5xx && status.is_server_error() {
            return Some(Rejection::new(status, CODE_ERROR_HIDDEN, "Upstream error"));
        }
        None
    }

    /// The decision on a whole body: a withheld trace, or the body without the removed
    /// fields (`Ok(Some(new body))`, `Ok(None)` when it is unchanged).
    pub fn on_body(
        &self,
        res: &ResponseHead,
        body: &[u8],
    ) -> Result<Option<(Vec<u8>, usize)>, Rejection> {
        if body.len() > READ_MAX {
            return Ok(None);
        }
        if self.hide_traces {
            let text = String::from_utf8_lossy(body);
            if crate::leaks::stack_trace(&text) || crate::leaks::database_error(&text) {
                let status = if res.status.is_client_error() || res.status.is_server_error() {
                    res.status
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return Err(Rejection::new(status, CODE_ERROR_HIDDEN, "Upstream error")
                    .with_detail("the answer showed internals and was withheld"));
            }
        }
        if self.remove.is_empty() || !is_json(res) {
            return Ok(None);
        }
        let Ok(mut v) = crate::json::parse(body) else {
            return Ok(None);
        };
        let n = remove_fields(&mut v, &self.remove, 0);
        if n == 0 {
            return Ok(None);
        }
        Ok(serde_json::to_vec(&v).ok().map(|b| (b, n)))
    }
}

#[async_trait::async_trait]
impl Policy for Responses {
    fn kind(&self) -> &'static str {
        "responses"
    }
    fn stage(&self) -> Stage {
        Stage::Transform
    }
    fn phases(&self) -> PhaseSet {
        let p = PhaseSet::EMPTY.with(Phase::ResponseHead);
        if self.hide_traces || !self.remove.is_empty() {
            p.with(Phase::ResponseBody)
        } else {
            p
        }
    }
    async fn on_response_head(&self, res: &mut ResponseHead, _x: &mut Exchange) -> Outcome {
        Ok(match self.on_head(res.status) {
            Some(r) => Verdict::Reject(r),
            None => Verdict::Continue,
        })
    }
    async fn on_response_body(
        &self,
        res: &mut ResponseHead,
        body: &mut bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        match self.on_body(res, body) {
            Err(r) => Ok(Verdict::Reject(r)),
            Ok(None) => Ok(Verdict::Continue),
            Ok(Some((_, n))) if self.mode == Mode::Monitor => Ok(Verdict::Reject(
                Rejection::new(res.status, CODE_FIELDS_REMOVED, "Fields removed")
                    .with_detail(format!("{n} field(s) would be removed")),
            )),
            Ok(Some((b, n))) => {
                *body = bytes::Bytes::from(b);
                x.annotations.insert("responses_removed", n.to_string());
                Ok(Verdict::Continue)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, ct: &str) -> ResponseHead {
        http::Response::builder()
            .status(status)
            .header("content-type", ct)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn decision_table_of_heads() {
        let p = ResponsesSpec {
            uniform: Some(UniformSpec {
                statuses: vec![400, 404],
                status: Some(401),
                detail: Some("Invalid credentials.".into()),
            }),
            hide_5xx: true,
            ..Default::default()
        }
        .build()
        .unwrap();
        // (upstream status, Some((sent status, code)) or passed)
        let rows: &[(u16, Option<(u16, &str)>)] = &[
            (200, None),
            (201, None),
            (400, Some((401, CODE_UNIFORM))),
            (404, Some((401, CODE_UNIFORM))),
            (401, None),
            (429, None),
            (500, Some((500, CODE_ERROR_HIDDEN))),
            (503, Some((503, CODE_ERROR_HIDDEN))),
        ];
        for (status, want) in rows {
            let got = p
                .on_head(StatusCode::from_u16(*status).unwrap())
                .map(|r| (r.status.as_u16(), r.code));
            assert_eq!(got, *want, "{status}");
        }
    }

    #[test]
    fn decision_table_of_bodies() {
        let p = ResponsesSpec {
            hide_traces: true,
            remove_fields: vec!["password".into(), "ssn".into()],
            ..Default::default()
        }
        .build()
        .unwrap();
        let json = "application/json";
        // (status, content type, body, withheld, body after)
        let rows: &[(u16, &str, &str, bool, Option<&str>)] = &[
            (200, json, r#"{"pk":1}"#, false, None),
            (
                200,
                json,
                r#"{"pk":1,"password":"x"}"#,
                false,
                Some(r#"{"pk":1}"#),
            ),
            (
                200,
                json,
                r#"[{"u":{"ssn":"1","n":2}},{"password":null}]"#,
                false,
                Some(r#"[{"u":{"n":2}},{}]"#),
            ),
            (200, "text/plain", "password=x", false, None),
            (
                500,
                json,
                r#"{"detail":"Traceback (most recent call last):"}"#,
                true,
                None,
            ),
            (
                200,
                json,
                r#"{"e":"sqlite3.OperationalError: near"}"#,
                true,
                None,
            ),
            (400, json, r#"{"detail":"bad request"}"#, false, None),
        ];
        for (status, ct, body, withheld, after) in rows {
            match p.on_body(&head(*status, ct), body.as_bytes()) {
                Err(r) => {
                    assert!(*withheld, "{body}");
                    assert_eq!(r.code, CODE_ERROR_HIDDEN);
                    let want = if *status >= 400 { *status } else { 502 };
                    assert_eq!(r.status.as_u16(), want);
                }
                Ok(b) => {
                    assert!(!withheld, "{body}");
                    assert_eq!(
                        b.map(|(b, _)| String::from_utf8(b).unwrap()).as_deref(),
                        *after,
                        "{body}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_specs_name_their_field() {
        let cases: &[(ResponsesSpec, &str)] = &[
            (ResponsesSpec::default(), "uniform"),
            (
                ResponsesSpec {
                    uniform: Some(UniformSpec {
                        statuses: vec![200],
                        status: None,
                        detail: None,
                    }),
                    ..Default::default()
                },
                "uniform.statuses[0]",
            ),
        ];
        for (s, field) in cases {
            let e = s.build().unwrap_err();
            assert_eq!(e[0].field, *field);
        }
    }
}
