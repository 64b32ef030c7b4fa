//! `palisade patch`: from the findings of `palisade scan` to virtual patches, the smallest
//! config change that closes each finding at the gateway, written as a `patches:` section
//! after the user's own config (which is left as it is), in `monitor` mode first; then
//! verified (`--verify`) by running the patched gateway in front of the target, replaying
//! benign traffic through it and re-running the scan; then promoted to `enforce` or rolled
//! back, by hot reload.
//!
//! A finding the gateway cannot close says so, with the code fix.

pub mod deploy;
mod emit;
pub mod init;
pub mod replay;
mod rules;
pub mod verify;

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

pub use rules::plan;

/// The line after which `palisade patch` owns the file: it rewrites everything below it.
pub const MARKER: &str =
    "# ---- palisade patch: everything below this line is written by `palisade patch` ----";

/// A finding of the report, as a patch refers to it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FindingRef {
    /// Check id (`bola.read`).
    pub check: String,
    /// Operation, as the description names it.
    pub operation: Option<String>,
    /// Title.
    pub title: String,
    /// Where it comes from: `scan` (re-tested by the re-scan) or `audit` (the description:
    /// nothing to re-run, so its patch is verified against benign traffic only).
    pub source: &'static str,
}

impl FindingRef {
    /// How a patch names the finding it answers.
    pub fn answers(&self) -> String {
        format!("{}: {}", self.check, self.title)
    }

    /// Whether `other` (a finding of a re-scan) is the same finding.
    pub fn same(&self, other: &FindingRef) -> bool {
        self.check == other.check && self.operation == other.operation
    }
}

/// One entry of the patches section: one policy on a route or one of its operations.
#[derive(Debug, Clone, Serialize)]
pub struct Block {
    /// The findings it answers (indices into [`Plan::findings`]).
    pub findings: Vec<usize>,
    /// Why it closes them.
    pub reason: String,
    /// The refusal code a client sees when it applies.
    pub code: &'static str,
    /// The route.
    pub route: String,
    /// `METHOD /path` as the gateway sees it; none: the whole route.
    pub operation: Option<String>,
    /// The policy, as it is written in the config.
    pub policy: Value,
}

/// A finding no patch closes, and what to do in the code instead.
#[derive(Debug, Clone, Serialize)]
pub struct Manual {
    /// Index into [`Plan::findings`].
    pub finding: usize,
    /// Why the gateway cannot close it, and the code fix.
    pub why: String,
}

/// The patches for a report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Plan {
    /// The findings of the report.
    pub findings: Vec<FindingRef>,
    /// The patches.
    pub blocks: Vec<Block>,
    /// Findings not patched.
    pub manual: Vec<Manual>,
    /// Audit findings about the description itself (documentation, bounds), by rule: no
    /// gateway patch answers them.
    pub audit_left: Vec<(String, usize)>,
}

/// What `plan` needs beside the report.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// The gateway's path of the description's paths (`/api/v2`): the scan target's path by
    /// default.
    pub base_path: Option<String>,
    /// The Host the routes are matched with, when they match hosts.
    pub host: Option<String>,
    /// The administrator's credential (`Header: value`), whose SHA-256 lets it through the
    /// deny of an administrative operation ordinary callers reach.
    pub admin: Option<(String, String)>,
    /// An issuer of the config that verifies the upstream's own tokens (its key, and the
    /// `dangerous_*` options its tokens need): forged-token findings are closed by a `jwt`
    /// policy with it on every secured operation.
    pub jwt_issuer: Option<String>,
    /// An environment variable with a 256-bit key (64 hex digits): forged-token findings,
    /// a guessed secret among them, are closed by sealed sessions (the gateway's own token
    /// in place of the upstream's, `sealed_session`).
    pub session_key_env: Option<String>,
    /// The JSON report of `palisade audit` of the same description.
    pub audit: Option<Value>,
}

/// The field of a login's body that names the user (`email`, `username`, `login` …).
pub(crate) fn user_field(
    spec: &palisade_audit::spec::Spec,
    op: &palisade_audit::spec::Operation,
) -> Option<String> {
    let mut names: Vec<String> = op
        .params
        .iter()
        .filter(|p| p.location == "formData")
        .map(|p| p.name.clone())
        .collect();
    for (schema, _) in &op.request_schemas {
        if let Some(props) = palisade_audit::spec::deref(&spec.doc, schema)
            .get("properties")
            .and_then(Value::as_object)
        {
            names.extend(props.keys().cloned());
        }
    }
    names.into_iter().find(|n| {
        palisade_audit::names::words(n)
            .iter()
            .any(|w| matches!(w.as_str(), "username" | "user" | "email" | "login" | "mail"))
    })
}

/// The path part of a URL, without a trailing `/` (`http://h:1/api/v2/` → `/api/v2`).
pub fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| rest.get(i..).unwrap_or(""));
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.trim_end_matches('/').to_string()
}

/// The findings of a report (`palisade scan --format json`).
pub fn findings_of(report: &Value) -> Result<Vec<FindingRef>, String> {
    let list = report.get("findings").and_then(Value::as_array).ok_or(
        "the report has no `findings` list: give the JSON report of `palisade scan --format json`",
    )?;
    Ok(list
        .iter()
        .map(|f| FindingRef {
            check: f["check"].as_str().unwrap_or("").to_string(),
            operation: f["operation"].as_str().map(str::to_string),
            title: f["title"].as_str().unwrap_or("").to_string(),
            source: "scan",
        })
        .collect())
}

impl Plan {
    /// The findings answered by `block`, as the `answers` line says them.
    fn answers(&self, b: &Block) -> String {
        b.findings
            .iter()
            .filter_map(|&i| self.findings.get(i))
            .map(FindingRef::answers)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The patch entries as config values, each in `mode`.
    pub fn entries(&self, mode: &str) -> Vec<Value> {
        self.blocks
            .iter()
            .map(|b| {
                let mut m = serde_json::Map::new();
                m.insert("answers".into(), Value::String(self.answers(b)));
                m.insert("reason".into(), Value::String(b.reason.clone()));
                m.insert("route".into(), Value::String(b.route.clone()));
                if let Some(op) = &b.operation {
                    m.insert("operation".into(), Value::String(op.clone()));
                }
                m.insert("mode".into(), Value::String(mode.into()));
                m.insert("policies".into(), Value::Array(vec![b.policy.clone()]));
                Value::Object(m)
            })
            .collect()
    }

    /// The `patches:` section, with a comment before each entry saying what it answers and
    /// what a refused client sees, and the findings left to the code at the end.
    pub fn section(&self, mode: &str, source: &str) -> String {
        let mut out = String::new();
        out.push_str(MARKER);
        out.push('\n');
        emit::comment(
            &mut out,
            &format!(
                "{} patch(es) for the findings of {source}; {} finding(s) need a change of code (listed at the end).\nEach patch starts in `{mode}`; `palisade patch promote` turns them to enforce, `palisade patch rollback` restores the file as it was.",
                self.blocks.len(),
                self.manual.len()
            ),
            0,
        );
        out.push_str(if self.blocks.is_empty() {
            "patches: []\n"
        } else {
            "patches:\n"
        });
        for (b, entry) in self.blocks.iter().zip(self.entries(mode)) {
            out.push('\n');
            emit::comment(
                &mut out,
                &if b.code.is_empty() {
                    format!(
                        "answers {}\nchanges answers only; refuses nothing",
                        self.answers(b)
                    )
                } else {
                    format!("answers {}\nrefuses with `{}`", self.answers(b), b.code)
                },
                2,
            );
            if let Value::Object(m) = entry {
                emit::mapping(&mut out, &m, 4, Some("  - "));
            }
        }
        if !self.audit_left.is_empty() {
            out.push('\n');
            let rules: Vec<String> = self
                .audit_left
                .iter()
                .map(|(r, n)| format!("{r} ×{n}"))
                .collect();
            emit::comment(
                &mut out,
                &format!(
                    "audit findings about the description itself, for its authors: {}",
                    rules.join(", ")
                ),
                0,
            );
        }
        if !self.manual.is_empty() {
            out.push('\n');
            emit::comment(&mut out, "not closed at the gateway; fix the code:", 0);
            for m in &self.manual {
                if let Some(f) = self.findings.get(m.finding) {
                    emit::comment(&mut out, &format!("- {}\n  {}", f.answers(), m.why), 0);
                }
            }
        }
        out
    }
}

/// The user's config with `section` in place of what an earlier `palisade patch` wrote.
pub fn splice(config: &str, section: &str) -> Result<String, String> {
    let own = match config.find(MARKER) {
        Some(i) => config.get(..i).unwrap_or(config),
        None => config,
    };
    if own.lines().any(|l| l.starts_with("patches:")) {
        return Err("the config has a `patches:` section of its own (above the line `palisade patch` writes after): move its entries into the findings, or remove it".into());
    }
    let mut out = own.trim_end().to_string();
    out.push_str("\n\n");
    out.push_str(section);
    Ok(out)
}

/// A readable summary of a plan.
pub fn summary(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} finding(s): {} patch(es), {} not patchable at the gateway",
        plan.findings.len(),
        plan.blocks.len(),
        plan.manual.len()
    );
    for b in &plan.blocks {
        let _ = writeln!(
            out,
            "  patch {} on {}{}: {}",
            b.policy.get("type").and_then(Value::as_str).unwrap_or("?"),
            b.route,
            b.operation
                .as_deref()
                .map(|o| format!(" {o}"))
                .unwrap_or_default(),
            plan.answers(b)
        );
    }
    for m in &plan.manual {
        if let Some(f) = plan.findings.get(m.finding) {
            let _ = writeln!(out, "  not patched: {}: {}", f.answers(), m.why);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_the_users_file_and_replaces_only_what_it_wrote() {
        let own = "routes: []\n# the user's comment\n";
        let once = splice(own, &format!("{MARKER}\npatches:\n  - a\n")).unwrap();
        assert!(once.starts_with(own.trim_end()));
        let twice = splice(&once, &format!("{MARKER}\npatches:\n  - b\n")).unwrap();
        assert!(
            twice.contains("  - b") && !twice.contains("  - a"),
            "{twice}"
        );
        assert_eq!(twice.matches(MARKER).count(), 1);
        let err = splice("patches:\n  - mine\n", MARKER).unwrap_err();
        assert!(err.contains("a `patches:` section of its own"), "{err}");
    }

    #[test]
    fn a_finding_is_the_same_by_check_and_operation_whatever_its_timing() {
        let a = FindingRef {
            check: "injection.sql_time".into(),
            operation: Some("GET /x".into()),
            title: "delays the answer by 2003 ms".into(),
            source: "scan",
        };
        let b = FindingRef {
            title: "delays the answer by 2011 ms".into(),
            ..a.clone()
        };
        let c = FindingRef {
            operation: Some("GET /y".into()),
            ..a.clone()
        };
        assert!(a.same(&b));
        assert!(!a.same(&c));
    }
}
