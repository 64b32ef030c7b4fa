//! The `admin` section: the admin listener, who may use its API and console (tokens stored
//! as hashes, each with a role), how long a console session lasts, and how many security
//! events are kept for it.

use std::path::PathBuf;
use std::time::Duration;

use super::Ctx;
use crate::model::AdminSpec;

/// What an admin credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdminRole {
    /// Reads: routes, consumers, events, inventory, quotas, health, the config's summary.
    Viewer,
    /// Reads and changes: applies a config, turns a policy to monitor or enforce, resets a
    /// quota.
    Operator,
}

impl AdminRole {
    /// As the config and the API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Viewer => "viewer",
            AdminRole::Operator => "operator",
        }
    }
}

/// One admin credential: its holder, role and the SHA-256 of the token (never the token).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// Who holds it.
    pub name: String,
    /// What it may do.
    pub role: AdminRole,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The admin API's settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminApi {
    /// Credentials; none means the API and console refuse every call.
    pub tokens: Vec<AdminToken>,
    /// A console session's lifetime after its login.
    pub session_ttl: Duration,
    /// Security events kept in memory (the newest).
    pub events: usize,
    /// Scan and audit reports (JSON) to show.
    pub reports: Vec<PathBuf>,
    /// The config's patches, as written.
    pub patches: Vec<PatchInfo>,
    /// Where security events are exported as OTLP logs.
    pub otlp: Option<Otlp>,
}

/// The OTLP export of security events, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Otlp {
    /// The collector's upstream (its name in the config).
    pub upstream: String,
    /// The logs endpoint's path.
    pub path: http::uri::PathAndQuery,
    /// `service.name`.
    pub service_name: String,
}

/// A patch of the config, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PatchInfo {
    /// The finding it answers (its check and title).
    pub answers: String,
    /// Why it closes it.
    pub reason: Option<String>,
    /// The route it patches.
    pub route: String,
    /// The operation, or the whole route.
    pub operation: Option<String>,
    /// `monitor` or `enforce`.
    pub mode: String,
}

/// Default lifetime of a console session.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(3600);
/// Default number of events kept.
pub const DEFAULT_EVENTS: usize = 10_000;
/// The most events that may be kept (each is about half a kilobyte).
const MAX_EVENTS: usize = 1_000_000;

impl Default for AdminApi {
    fn default() -> Self {
        AdminApi {
            tokens: Vec::new(),
            session_ttl: DEFAULT_SESSION_TTL,
            events: DEFAULT_EVENTS,
            reports: Vec::new(),
            patches: Vec::new(),
            otlp: None,
        }
    }
}

pub(super) fn build(
    cx: &mut Ctx<'_>,
    spec: Option<&AdminSpec>,
    patches: &[crate::model::PatchSpec],
) -> AdminApi {
    let patches = patches
        .iter()
        .map(|p| PatchInfo {
            answers: p.answers.clone(),
            reason: p.reason.clone(),
            route: p.route.clone(),
            operation: p.operation.clone(),
            mode: p.mode.unwrap_or(palisade_core::Mode::Monitor).to_string(),
        })
        .collect();
    let Some(spec) = spec else {
        return AdminApi {
            patches,
            ..AdminApi::default()
        };
    };
    let reports = spec
        .reports
        .iter()
        .map(|r| {
            let p = PathBuf::from(r);
            if p.is_absolute() {
                p
            } else {
                cx.base.join(p)
            }
        })
        .collect();
    let mut tokens: Vec<AdminToken> = Vec::new();
    for (i, t) in spec.tokens.iter().enumerate() {
        let path = format!("admin.tokens[{i}]");
        let role = match t.role.as_str() {
            "viewer" => AdminRole::Viewer,
            "operator" => AdminRole::Operator,
            other => {
                cx.err(
                    format!("{path}.role"),
                    format!("`{other}`: use viewer or operator"),
                );
                continue;
            }
        };
        if t.name.trim().is_empty() || t.name.len() > 64 {
            cx.err(format!("{path}.name"), "a name of 1 to 64 characters");
            continue;
        }
        let Some(hash) = palisade_identity::consumers::parse_hash(&t.hash) else {
            cx.err(
                format!("{path}.hash"),
                "must be `sha256:` and 64 hex digits, as `palisade keys new --admin` prints it (never the token itself)",
            );
            continue;
        };
        if tokens.iter().any(|o| o.hash == hash) {
            cx.err(format!("{path}.hash"), "the same token is listed twice");
            continue;
        }
        if tokens.iter().any(|o| o.name == t.name) {
            cx.err(
                format!("{path}.name"),
                format!("`{}` is listed twice: one name per holder", t.name),
            );
            continue;
        }
        tokens.push(AdminToken {
            name: t.name.clone(),
            role,
            hash,
        });
    }
    if spec.tokens.is_empty() {
        cx.warn(
            "admin",
            "no admin.tokens: the admin API and console refuse every call (health, readiness and metrics still answer)",
        );
    }
    let session_ttl = spec.session_ttl.map_or(DEFAULT_SESSION_TTL, |d| d.0);
    if session_ttl < Duration::from_secs(60) || session_ttl > Duration::from_secs(7 * 86_400) {
        cx.err("admin.session_ttl", "between 1m and 7d");
    }
    let events = spec.events.unwrap_or(DEFAULT_EVENTS);
    if events == 0 || events > MAX_EVENTS {
        cx.err("admin.events", format!("between 1 and {MAX_EVENTS}"));
    }
    let otlp = spec.otlp.as_ref().and_then(|o| {
        let path = o.path.clone().unwrap_or_else(|| "/v1/logs".into());
        match path.parse::<http::uri::PathAndQuery>() {
            Ok(p) if path.starts_with('/') => Some(Otlp {
                upstream: o.upstream.clone(),
                path: p,
                service_name: o.service_name.clone().unwrap_or_else(|| "palisade".into()),
            }),
            _ => {
                cx.err(
                    "admin.otlp.path",
                    format!("`{path}` is not a path (e.g. /v1/logs)"),
                );
                None
            }
        }
    });
    AdminApi {
        tokens,
        session_ttl,
        events: events.clamp(1, MAX_EVENTS),
        reports,
        patches,
        otlp,
    }
}
