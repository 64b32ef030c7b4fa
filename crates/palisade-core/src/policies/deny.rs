//! `deny`: refuses every request that reaches it, with a status and a code of its own. Put on
//! a route (or a patch of one operation) that must not be reachable: an administrative
//! operation ordinary callers reach (BFLA), a debug endpoint. Routes match the one canonical
//! path of a request, so no encoded, doubled-slash or case variant of the path gets past it.

use http::StatusCode;
use serde::Deserialize;

use super::SpecError;
use crate::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};

/// Refusal code of `deny`.
pub const CODE_DENIED: &str = "route.denied";

/// Config of the `deny` policy.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DenySpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// The status of the refusal: 403 (default), 404 (hides that the operation exists) or
    /// 405, 410.
    #[serde(default)]
    pub status: Option<u16>,
    /// Why, shown to the client as the problem's detail (never secret).
    #[serde(default)]
    pub reason: Option<String>,
    /// Callers let through: those whose header carries one of these values, given as the
    /// SHA-256 (hex) of the whole value (the administrator's own upstream token, say), so
    /// the config holds no credential.
    #[serde(default)]
    pub except: Option<ExceptSpec>,
}

/// Callers a `deny` lets through, by a credential header's hashed value.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptSpec {
    /// The header, e.g. `authorization`.
    pub header: String,
    /// SHA-256 of the header's whole value, in hex (`printf %s 'Token …' | sha256sum`).
    pub sha256: Vec<String>,
}

/// The runtime `deny` policy.
#[derive(Debug, Clone)]
pub struct Deny {
    status: StatusCode,
    reason: Option<String>,
    except: Option<(http::HeaderName, Vec<[u8; 32]>)>,
}

/// SHA-256 of `b`.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl DenySpec {
    /// Builds the policy.
    pub fn build(&self) -> Result<Deny, Vec<SpecError>> {
        let status = match self.status.unwrap_or(403) {
            s @ (403 | 404 | 405 | 410) => StatusCode::from_u16(s).unwrap_or(StatusCode::FORBIDDEN),
            other => {
                return Err(vec![SpecError::new(
                    "status",
                    format!("{other} is not a refusal `deny` sends; use 403, 404, 405 or 410"),
                )])
            }
        };
        if let Some(r) = &self.reason {
            if r.chars().any(char::is_control) || r.len() > 200 {
                return Err(vec![SpecError::new(
                    "reason",
                    "a reason is one line of at most 200 characters",
                )]);
            }
        }
        let except = match &self.except {
            None => None,
            Some(e) => {
                let Ok(h) = http::HeaderName::from_bytes(e.header.as_bytes()) else {
                    return Err(vec![SpecError::new(
                        "except.header",
                        format!("`{}` is not a header name", e.header),
                    )]);
                };
                let mut hashes = Vec::new();
                for (i, x) in e.sha256.iter().enumerate() {
                    match crate::hex::decode32(x) {
                        Some(d) => hashes.push(d),
                        None => {
                            return Err(vec![SpecError::new(
                                format!("except.sha256[{i}]"),
                                "64 hex digits: the SHA-256 of the header's whole value",
                            )])
                        }
                    }
                }
                if hashes.is_empty() {
                    return Err(vec![SpecError::new(
                        "except.sha256",
                        "name at least one value",
                    )]);
                }
                Some((h, hashes))
            }
        };
        Ok(Deny {
            status,
            reason: self.reason.clone(),
            except,
        })
    }
}

impl Deny {
    /// Whether the request is one of the callers let through.
    pub fn excepted(&self, req: &RequestHead) -> bool {
        let Some((h, hashes)) = &self.except else {
            return false;
        };
        req.headers.get_all(h).iter().any(|v| {
            let d = sha256(v.as_bytes());
            // compared in constant time: the hashes are not secret, the values behind them are
            hashes
                .iter()
                .any(|x| aws_lc_rs::constant_time::verify_slices_are_equal(x, &d).is_ok())
        })
    }

    fn refusal(&self) -> Rejection {
        let r = Rejection::new(self.status, CODE_DENIED, "The operation is not available");
        match &self.reason {
            Some(d) => r.with_detail(d.clone()),
            None => r,
        }
    }
}

#[async_trait::async_trait]
impl Policy for Deny {
    fn kind(&self) -> &'static str {
        "deny"
    }
    fn stage(&self) -> Stage {
        // a deny with excepted callers is an authorization decision: it looks at the
        // credential as the authenticators left it (a sealed session opened, say)
        if self.except.is_some() {
            Stage::Authz
        } else {
            Stage::Network
        }
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestHead)
    }
    async fn on_request_head(&self, req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        if self.excepted(req) {
            return Ok(Verdict::Continue);
        }
        Ok(Verdict::Reject(self.refusal()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (status, reason) → the status sent, or the field at fault.
    type Row = (Option<u16>, Option<&'static str>, Result<u16, &'static str>);

    #[test]
    fn decision_table() {
        let rows: &[Row] = &[
            (None, None, Ok(403)),
            (Some(404), Some("admin only"), Ok(404)),
            (Some(410), None, Ok(410)),
            (Some(200), None, Err("status")),
            (Some(500), None, Err("status")),
            (None, Some("two\nlines"), Err("reason")),
        ];
        for (status, reason, want) in rows {
            let spec = DenySpec {
                mode: Mode::Enforce,
                status: *status,
                reason: reason.map(str::to_string),
                except: None,
            };
            match (spec.build(), want) {
                (Ok(d), Ok(s)) => {
                    let r = d.refusal();
                    assert_eq!(r.status.as_u16(), *s);
                    assert_eq!(r.code, CODE_DENIED);
                    assert_eq!(r.detail.as_deref(), *reason);
                }
                (Err(e), Err(f)) => assert_eq!(e[0].field, *f),
                (got, want) => panic!("{status:?} {reason:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn callers_with_an_excepted_credential_pass() {
        let hex = crate::hex::encode(&sha256(b"Token admin-1"));
        let d = DenySpec {
            except: Some(ExceptSpec {
                header: "authorization".into(),
                sha256: vec![hex],
            }),
            ..Default::default()
        }
        .build()
        .unwrap();
        let req = |v: Option<&str>| {
            let mut b = http::Request::builder();
            if let Some(v) = v {
                b = b.header("authorization", v);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(d.excepted(&req(Some("Token admin-1"))));
        assert!(!d.excepted(&req(Some("Token admin-2"))));
        assert!(!d.excepted(&req(Some("token admin-1"))));
        assert!(!d.excepted(&req(None)));
        let bad = DenySpec {
            except: Some(ExceptSpec {
                header: "authorization".into(),
                sha256: vec!["abc".into()],
            }),
            ..Default::default()
        };
        assert_eq!(bad.build().unwrap_err()[0].field, "except.sha256[0]");
    }
}
