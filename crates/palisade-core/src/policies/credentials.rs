//! `require_credentials`: refuses a request that carries no credential where the API's
//! description requires one, before it reaches an upstream that checks credentials itself
//! but forgot to on some operation (broken authentication). It checks presence and form only:
//! the upstream still verifies the credential. A gateway that verifies credentials itself
//! uses `api_key`, `jwt`, `introspection` or `mtls` instead.

use http::{HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;

use super::SpecError;
use crate::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};

/// Refusal code when the credential is missing.
pub const CODE_MISSING: &str = "credentials.missing";

/// Config of the `require_credentials` policy.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequireCredentialsSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// The header that carries the credential. Default `authorization`.
    #[serde(default)]
    pub header: Option<String>,
    /// The scheme its value starts with (`Bearer`, `Token`, `Basic`), compared without regard
    /// to case; absent: any non-empty value.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Or a query parameter that carries it (an API key in the URL).
    #[serde(default)]
    pub query: Option<String>,
}

/// The runtime `require_credentials` policy.
#[derive(Debug, Clone)]
pub struct RequireCredentials {
    header: HeaderName,
    scheme: Option<String>,
    query: Option<String>,
    challenge: HeaderValue,
}

impl RequireCredentialsSpec {
    /// Builds the policy.
    pub fn build(&self) -> Result<RequireCredentials, Vec<SpecError>> {
        let mut errors = Vec::new();
        let name = self.header.as_deref().unwrap_or("authorization");
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                errors.push(SpecError::new(
                    "header",
                    format!("`{name}` is not a header name"),
                ));
                None
            }
        };
        let scheme = self.scheme.as_ref().map(|s| s.trim().to_string());
        if scheme.as_deref().is_some_and(|s| {
            s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        }) {
            errors.push(SpecError::new(
                "scheme",
                "a scheme is one word, e.g. Bearer or Token",
            ));
        }
        let challenge = HeaderValue::from_str(scheme.as_deref().unwrap_or("Bearer"))
            .unwrap_or(HeaderValue::from_static("Bearer"));
        match (header, errors.is_empty()) {
            (Some(header), true) => Ok(RequireCredentials {
                header,
                scheme,
                query: self.query.clone(),
                challenge,
            }),
            _ => Err(errors),
        }
    }
}

impl RequireCredentials {
    /// Whether the request carries a credential of the required form.
    pub fn present(&self, req: &RequestHead) -> bool {
        let in_header = req.headers.get_all(&self.header).iter().any(|v| {
            let v = v.to_str().unwrap_or("").trim();
            match &self.scheme {
                None => !v.is_empty(),
                Some(s) => {
                    v.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s))
                        && v[s.len()..].starts_with(' ')
                        && !v[s.len()..].trim().is_empty()
                }
            }
        });
        let in_query = self.query.as_deref().is_some_and(|q| {
            req.uri.query().unwrap_or("").split('&').any(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                crate::uri::decode_form(k).as_deref() == Some(q) && !v.is_empty()
            })
        });
        in_header || in_query
    }
}

#[async_trait::async_trait]
impl Policy for RequireCredentials {
    fn kind(&self) -> &'static str {
        "require_credentials"
    }
    fn stage(&self) -> Stage {
        Stage::Authn
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestHead)
    }
    async fn on_request_head(&self, req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        if self.present(req) {
            return Ok(Verdict::Continue);
        }
        Ok(Verdict::Reject(
            Rejection::new(
                StatusCode::UNAUTHORIZED,
                CODE_MISSING,
                "Credentials required",
            )
            .with_header(http::header::WWW_AUTHENTICATE, self.challenge.clone()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>, uri: &str) -> RequestHead {
        let mut b = http::Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn decision_table() {
        let token = RequireCredentialsSpec {
            scheme: Some("Token".into()),
            ..Default::default()
        }
        .build()
        .unwrap();
        let any = RequireCredentialsSpec::default().build().unwrap();
        let key = RequireCredentialsSpec {
            query: Some("api_key".into()),
            ..Default::default()
        }
        .build()
        .unwrap();
        // (policy, Authorization, URI, present)
        let rows: &[(&RequireCredentials, Option<&str>, &str, bool)] = &[
            (&token, Some("Token abc"), "/", true),
            (&token, Some("token abc"), "/", true),
            (&token, Some("Token "), "/", false),
            (&token, Some("Tokenabc"), "/", false),
            (&token, Some("Bearer abc"), "/", false),
            (&token, None, "/", false),
            (&any, Some("anything"), "/", true),
            (&any, Some("  "), "/", false),
            (&key, None, "/x?api_key=k", true),
            (&key, None, "/x?api_key=", false),
            (&key, None, "/x?api%5Fkey=k", true),
            (&key, None, "/x?other=k", false),
        ];
        for (p, auth, uri, want) in rows {
            assert_eq!(p.present(&req(*auth, uri)), *want, "{auth:?} {uri}");
        }
        assert!(RequireCredentialsSpec {
            scheme: Some("two words".into()),
            ..Default::default()
        }
        .build()
        .is_err());
    }
}
