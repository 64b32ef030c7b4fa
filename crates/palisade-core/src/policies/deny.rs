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
#[derive(Debug, Clone, Deserialize, Default)]
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
}

/// The runtime `deny` policy.
#[derive(Debug, Clone)]
pub struct Deny {
    status: StatusCode,
    reason: Option<String>,
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
        Ok(Deny {
            status,
            reason: self.reason.clone(),
        })
    }
}

impl Deny {
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
        Stage::Network
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestHead)
    }
    async fn on_request_head(&self, _req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
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
}
