//! `sealed_session`: the gateway's own session token in place of the upstream's. On the
//! login operation (`issue`), the token the upstream returns in its answer is sealed: AES-256-
//! GCM under the gateway's key, with an expiry, so the client holds `pls1.…`, which it cannot
//! read or change. On every other operation the sealed token is opened and the upstream's
//! own token put back in the header before the request leaves; a request that carries a
//! token the gateway did not seal is refused. A token forged with the upstream's weak secret,
//! or signed with `alg: none`, or simply stolen from the upstream's own logs, never reaches it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine as _;
use http::{HeaderName, HeaderValue, StatusCode};
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, ResponseHead, Stage,
    Verdict,
};
use serde::Deserialize;
use serde_json::Value;

/// Refusal code of a token the gateway did not seal, or one past its expiry.
pub const CODE_INVALID: &str = "session.invalid";
/// What a sealed token starts with.
pub const PREFIX: &str = "pls1.";
const AAD: &[u8] = b"palisade-sealed-session-v1";

/// Where the login's answer holds the upstream's token.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueSpec {
    /// The field of the JSON answer (a dotted path), e.g. `token` or `data.access_token`.
    pub field: String,
}

/// Config of the `sealed_session` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealedSessionSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// Environment variable with the 256-bit key, as 64 hex digits. Every instance must have
    /// the same; a new key ends every session.
    #[serde(default)]
    pub key_env: Option<String>,
    /// The key as `${env:NAME}` or `${file:PATH}` (instead of `key_env`).
    #[serde(default)]
    pub key: Option<palisade_core::secret::SecretRef>,
    /// On the login operation: seal the token of its answer. Absent: open sealed tokens of
    /// requests.
    #[serde(default)]
    pub issue: Option<IssueSpec>,
    /// The header that carries the token. Default `authorization`.
    #[serde(default)]
    pub header: Option<String>,
    /// The scheme before the token in the header (`Bearer`, `Token`). Default `Bearer`.
    #[serde(default)]
    pub scheme: Option<String>,
    /// How long a sealed token is good for. Default 12h.
    #[serde(default)]
    pub ttl: Option<palisade_core::duration::Dur>,
}

/// The runtime `sealed_session` policy.
pub struct SealedSession {
    key: LessSafeKey,
    issue: Option<String>,
    header: HeaderName,
    scheme: String,
    ttl: Duration,
    mode: Mode,
}

impl std::fmt::Debug for SealedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSession")
            .field("issue", &self.issue)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SealedSessionSpec {
    /// Builds the policy; the key is read from its environment variable now.
    pub fn build(&self) -> Result<SealedSession, Vec<SpecError>> {
        let mut errors = Vec::new();
        let field = if self.key_env.is_some() {
            "key_env"
        } else {
            "key"
        };
        let key = match palisade_core::secret::SecretRef::either(
            self.key.as_ref(),
            self.key_env.as_deref(),
        ) {
            Ok(Some(src)) => match src.resolve_text() {
                Ok(v) => match palisade_core::hex::decode32(&v) {
                    Some(k) => UnboundKey::new(&AES_256_GCM, &k).ok().map(LessSafeKey::new),
                    None => {
                        errors.push(SpecError::new(
                            field,
                            format!("{src:?} must hold 64 hex digits (a 256-bit key, e.g. from `openssl rand -hex 32`)"),
                        ));
                        None
                    }
                },
                Err(e) => {
                    errors.push(SpecError::new(field, e));
                    None
                }
            },
            Ok(None) => {
                errors.push(SpecError::new(
                    "key",
                    "needs the 256-bit key: key: \"${env:NAME}\" or \"${file:PATH}\" (64 hex digits)",
                ));
                None
            }
            Err(e) => {
                errors.push(SpecError::new("key", e));
                None
            }
        };
        let name = self.header.as_deref().unwrap_or("authorization");
        let header = HeaderName::from_bytes(name.as_bytes()).ok();
        if header.is_none() {
            errors.push(SpecError::new(
                "header",
                format!("`{name}` is not a header name"),
            ));
        }
        if self.issue.as_ref().is_some_and(|i| i.field.is_empty()) {
            errors.push(SpecError::new(
                "issue.field",
                "the answer's field with the token",
            ));
        }
        let ttl = self.ttl.map_or(Duration::from_secs(12 * 3600), |d| d.0);
        if ttl.is_zero() {
            errors.push(SpecError::new("ttl", "must be longer than zero"));
        }
        match (key, header, errors.is_empty()) {
            (Some(key), Some(header), true) => Ok(SealedSession {
                key,
                issue: self.issue.as_ref().map(|i| i.field.clone()),
                header,
                scheme: self.scheme.clone().unwrap_or_else(|| "Bearer".into()),
                ttl,
                mode: self.mode,
            }),
            _ => Err(errors),
        }
    }
}

impl SealedSession {
    /// `token` sealed until `expires` (unix seconds).
    pub fn seal(&self, token: &str, expires: u64) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut data = expires.to_be_bytes().to_vec();
        data.extend_from_slice(token.as_bytes());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut data,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Some(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// The upstream's token inside `sealed`, when the gateway sealed it and it has not expired.
    pub fn open(&self, sealed: &str, at: u64) -> Result<String, &'static str> {
        let b64 = sealed
            .strip_prefix(PREFIX)
            .ok_or("the token is not a session of this gateway")?;
        if b64.len() > 16 * 1024 {
            return Err("the token is too large");
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| "the session token is malformed")?;
        if raw.len() < NONCE_LEN + 8 + 16 {
            return Err("the session token is malformed");
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| "the session token is malformed")?;
        let mut data = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut data)
            .map_err(|_| "the session token was not issued by this gateway")?;
        let (exp, token) = plain.split_at(8);
        let exp = u64::from_be_bytes(<[u8; 8]>::try_from(exp).map_err(|_| "malformed")?);
        if exp <= at {
            return Err("the session has expired: log in again");
        }
        String::from_utf8(token.to_vec()).map_err(|_| "the session token is malformed")
    }

    /// The expiry of a session for `token`: the gateway's ttl, or the token's own `exp` when
    /// it is a JWT that expires sooner.
    fn expiry(&self, token: &str, at: u64) -> u64 {
        let own = at + self.ttl.as_secs();
        let jwt_exp = token
            .split('.')
            .nth(1)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v.get("exp").and_then(Value::as_u64));
        jwt_exp.map_or(own, |e| e.min(own))
    }

    fn refusal(&self, why: &str) -> Rejection {
        Rejection::new(StatusCode::UNAUTHORIZED, CODE_INVALID, "Invalid session")
            .with_detail(why.to_string())
            .with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&self.scheme).unwrap_or(HeaderValue::from_static("Bearer")),
            )
    }

    /// The decision on a request's header: unchanged (no token), the upstream's token put
    /// back, or a refusal.
    pub fn on_header(&self, value: Option<&str>, at: u64) -> Result<Option<String>, Rejection> {
        let Some(v) = value else { return Ok(None) };
        let v = v.trim();
        let token = match v.split_once(' ') {
            Some((s, t)) if s.eq_ignore_ascii_case(&self.scheme) => t.trim(),
            _ => return Err(self.refusal("the credential is not a session of this gateway")),
        };
        let inner = self.open(token, at).map_err(|e| self.refusal(e))?;
        Ok(Some(format!("{} {inner}", self.scheme)))
    }
}

fn field_mut<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut at = v;
    for seg in path.split('.') {
        at = at.as_object_mut()?.get_mut(seg)?;
    }
    Some(at)
}

#[async_trait::async_trait]
impl Policy for SealedSession {
    fn kind(&self) -> &'static str {
        "sealed_session"
    }
    fn stage(&self) -> Stage {
        Stage::Authn
    }
    fn phases(&self) -> PhaseSet {
        if self.issue.is_some() {
            PhaseSet::EMPTY.with(Phase::ResponseBody)
        } else {
            PhaseSet::EMPTY.with(Phase::RequestHead)
        }
    }
    async fn on_request_head(&self, req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        if self.issue.is_some() {
            return Ok(Verdict::Continue);
        }
        let value = req
            .headers
            .get(&self.header)
            .map(|v| v.to_str().unwrap_or("\u{0}").to_string());
        match self.on_header(value.as_deref(), now()) {
            Ok(None) => Ok(Verdict::Continue),
            // a sealed token is opened in either mode (what it holds is what the upstream
            // expects); in monitor mode a refusal is only counted
            Ok(Some(inner)) => {
                match HeaderValue::from_str(&inner) {
                    Ok(h) => {
                        req.headers.insert(self.header.clone(), h);
                    }
                    Err(_) => {
                        return Ok(Verdict::Reject(
                            self.refusal("the session token is malformed"),
                        ))
                    }
                }
                Ok(Verdict::Continue)
            }
            Err(r) => Ok(Verdict::Reject(r)),
        }
    }
    async fn on_response_body(
        &self,
        res: &mut ResponseHead,
        body: &mut bytes::Bytes,
        _x: &mut Exchange,
    ) -> Outcome {
        let Some(field) = &self.issue else {
            return Ok(Verdict::Continue);
        };
        if !res.status.is_success() || self.mode == Mode::Monitor {
            return Ok(Verdict::Continue);
        }
        let Ok(mut v) = palisade_core::json::parse(body) else {
            return Ok(Verdict::Continue);
        };
        let at = now();
        let Some(slot) = field_mut(&mut v, field) else {
            return Ok(Verdict::Continue);
        };
        let Some(token) = slot.as_str().map(str::to_string) else {
            return Ok(Verdict::Continue);
        };
        let Some(sealed) = self.seal(&token, self.expiry(&token, at)) else {
            return Err(palisade_core::PolicyError::Internal {
                policy: "sealed_session",
                message: "cannot seal a session".into(),
            });
        };
        *slot = Value::String(sealed);
        match serde_json::to_vec(&v) {
            Ok(b) => *body = bytes::Bytes::from(b),
            Err(_) => {
                return Err(palisade_core::PolicyError::Internal {
                    policy: "sealed_session",
                    message: "cannot write the answer".into(),
                })
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(var: &str, issue: Option<&str>) -> SealedSession {
        std::env::set_var(
            var,
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        );
        SealedSessionSpec {
            mode: Mode::Enforce,
            key_env: Some(var.into()),
            key: None,
            issue: issue.map(|f| IssueSpec { field: f.into() }),
            header: None,
            scheme: Some("Token".into()),
            ttl: None,
        }
        .build()
        .unwrap()
    }

    /// (header value, time) → the upstream's header, or refused.
    type Row = (Option<String>, u64, Result<Option<&'static str>, ()>);

    #[test]
    fn decision_table() {
        let p = policy("PALISADE_TEST_SEAL_1", None);
        let sealed = p.seal("tok-alice", 2_000).unwrap();
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let rows: Vec<Row> = vec![
            (None, 1_000, Ok(None)),
            (
                Some(format!("Token {sealed}")),
                1_000,
                Ok(Some("Token tok-alice")),
            ),
            (
                Some(format!("token {sealed}")),
                1_000,
                Ok(Some("Token tok-alice")),
            ),
            (Some(format!("Token {sealed}")), 2_000, Err(())),
            (Some("Token tok-alice".into()), 1_000, Err(())),
            (Some(format!("Bearer {sealed}")), 1_000, Err(())),
            (Some(format!("Token {tampered}")), 1_000, Err(())),
            (Some("Token pls1.AAAA".into()), 1_000, Err(())),
        ];
        for (h, at, want) in rows {
            let got = p.on_header(h.as_deref(), at);
            match (&got, &want) {
                (Ok(a), Ok(b)) => assert_eq!(a.as_deref(), *b, "{h:?}"),
                (Err(r), Err(())) => assert_eq!(r.code, CODE_INVALID, "{h:?}"),
                _ => panic!("{h:?} at {at}: {got:?}"),
            }
        }
        // another key cannot open it
        std::env::set_var("PALISADE_TEST_SEAL_2", "ff".repeat(32));
        let other = SealedSessionSpec {
            mode: Mode::Enforce,
            key_env: Some("PALISADE_TEST_SEAL_2".into()),
            key: None,
            issue: None,
            header: None,
            scheme: Some("Token".into()),
            ttl: None,
        }
        .build()
        .unwrap();
        assert!(other.open(&sealed, 1_000).is_err());
    }

    #[test]
    fn a_session_ends_with_the_token_it_holds() {
        let p = policy("PALISADE_TEST_SEAL_3", Some("token"));
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwt = format!(
            "{}.{}.sig",
            url.encode(br#"{"alg":"HS256"}"#),
            url.encode(br#"{"sub":"a","exp":1500}"#)
        );
        assert_eq!(p.expiry(&jwt, 1_000), 1_500);
        assert_eq!(p.expiry("opaque", 1_000), 1_000 + 12 * 3600);
    }

    #[test]
    fn a_key_that_is_not_256_bits_is_refused() {
        std::env::set_var("PALISADE_TEST_SEAL_4", "abcd");
        let e = SealedSessionSpec {
            mode: Mode::Enforce,
            key_env: Some("PALISADE_TEST_SEAL_4".into()),
            key: None,
            issue: None,
            header: None,
            scheme: None,
            ttl: None,
        }
        .build()
        .unwrap_err();
        assert_eq!(e[0].field, "key_env");
    }
}
