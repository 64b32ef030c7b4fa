//! `palisade audit`: a static audit of an API description (OpenAPI 3.0, 3.1 or Swagger 2.0,
//! YAML or JSON). The format is checked first (the `structure` module); the security rules are mapped
//! to the OWASP API Security Top 10 (2023). Each cause is reported once, where it is written,
//! with the operations it affects and its line and column. The report has a security score
//! and a data-validation score (0 to 100, weighed by the share of operations affected) and
//! the points each fix gains, in text, JSON, SARIF 2.1.0 or HTML ([`report`]).

mod checks;
pub mod locate;
pub mod names;
pub mod report;
pub mod rules;
mod schemas;
pub mod spec;
mod structure;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

pub use rules::{Finding, Kind, Rule, Severity, RULES};

/// Text made safe inside HTML elements and double-quoted attributes (both reports' HTML).
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The points a rule costs: at least the first figure, up to the second when every
/// operation is affected, in proportion to the share of operations its findings affect.
fn cost(s: Severity) -> (u32, u32) {
    match s {
        Severity::Low => (1, 4),
        Severity::Medium => (1, 10),
        Severity::High => (3, 25),
        Severity::Critical => (10, 50),
    }
}

/// An entry of the ignore file: a rule (and optionally a pointer prefix) with its reason.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ignore {
    /// The rule id.
    pub rule: String,
    /// Only findings at this pointer or below it; default all of the rule's.
    #[serde(default)]
    pub pointer: Option<String>,
    /// Why it is acceptable (required).
    pub reason: String,
}

/// What one rule found, and what fixing it is worth.
#[derive(Debug, Serialize)]
pub struct RuleResult {
    /// The rule id.
    pub rule: &'static str,
    /// Its findings.
    pub findings: usize,
    /// Operations its findings affect (all, for a finding about the whole description).
    pub operations: usize,
    /// Points it costs its score.
    pub points: u32,
    /// Points its score gains when every finding of the rule is fixed.
    pub gain: u32,
}

/// The audit of one description.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The description's file name, as given.
    pub source: String,
    /// `OpenAPI 3.0`, …
    pub version: &'static str,
    /// Operations audited (webhooks included).
    pub operations: usize,
    /// Whether the description is valid for its format. An invalid one is not scored (its
    /// scores are 0) until its structure findings are fixed.
    pub valid: bool,
    /// Security score from 0 (worst) to 100.
    pub score: u32,
    /// Data-validation score from 0 to 100: how well inputs are defined and bounded.
    pub data_score: u32,
    /// Security points lost per OWASP category.
    pub breakdown: BTreeMap<&'static str, u32>,
    /// Per rule with findings: counts, points and the gain of fixing it.
    pub rules: Vec<RuleResult>,
    /// Findings, by rule and pointer.
    pub findings: Vec<Finding>,
    /// Findings left out by the ignore file.
    pub ignored: usize,
}

/// Reads an ignore file (YAML or JSON list); every entry needs a reason.
pub fn parse_ignores(text: &str) -> Result<Vec<Ignore>, String> {
    let v = palisade_core::yaml::parse(text)
        .map_err(|e| format!("line {}: {}", e.line, e.message))?
        .value;
    if v.is_null() {
        return Ok(Vec::new());
    }
    let list: Vec<Ignore> = serde_json::from_value(v)
        .map_err(|e| format!("an ignore file is a list of {{rule, pointer?, reason}}: {e}"))?;
    for (i, e) in list.iter().enumerate() {
        if e.reason.trim().is_empty() {
            return Err(format!(
                "entry {i} ({}) has no reason: say why the finding is acceptable",
                e.rule
            ));
        }
        if rules::rule(&e.rule).is_none() {
            return Err(format!("entry {i}: no rule `{}`", e.rule));
        }
    }
    Ok(list)
}

/// Audits `text`, named `source` in the report; references to other files are not read.
pub fn audit(source: &str, text: &str, ignores: &[Ignore]) -> Result<Report, String> {
    audit_in(source, text, None, ignores)
}

/// [`audit`], with references to other files read relative to `dir`.
pub fn audit_in(
    source: &str,
    text: &str,
    dir: Option<&Path>,
    ignores: &[Ignore],
) -> Result<Report, String> {
    let spec = spec::load_from(text, dir)?;
    let all = checks::run(&spec);
    let before = all.len();
    let mut findings: Vec<Finding> = all
        .into_iter()
        .filter(|f| {
            !ignores.iter().any(|i| {
                i.rule == f.rule
                    && i.pointer
                        .as_deref()
                        .is_none_or(|p| f.pointer.starts_with(p))
            })
        })
        .collect();
    let ignored = before - findings.len();
    locate(&mut findings, text, &spec, dir);
    let total = spec.operations.len() + spec.webhooks.len();
    let valid = !findings
        .iter()
        .any(|f| rules::rule(f.rule).is_some_and(|r| r.kind == Kind::Structure));
    // per rule: findings, affected operations, whole-description findings
    let mut per: BTreeMap<&'static str, (usize, BTreeSet<&str>, bool)> = BTreeMap::new();
    for f in &findings {
        let e = per.entry(f.rule).or_default();
        e.0 += 1;
        e.1.extend(f.uses.iter().map(String::as_str));
        e.2 |= f.whole;
    }
    let mut results = Vec::new();
    for (id, (n, ops, whole)) in per {
        let Some(r) = rules::rule(id) else { continue };
        let affected = if whole { total } else { ops.len().min(total) };
        let (floor, cap) = cost(r.severity);
        let share = if total == 0 {
            1.0
        } else {
            affected as f64 / total as f64
        };
        let points = floor + ((cap - floor) as f64 * share).round() as u32;
        results.push((
            r,
            RuleResult {
                rule: id,
                findings: n,
                operations: affected,
                points,
                gain: 0,
            },
        ));
    }
    let lost = |k: Kind| -> u32 {
        results
            .iter()
            .filter(|(r, _)| r.kind == k)
            .map(|(_, x)| x.points)
            .sum()
    };
    let (sec_lost, data_lost) = (lost(Kind::Security), lost(Kind::Data));
    let score_of = |lost: u32| {
        if valid {
            100u32.saturating_sub(lost)
        } else {
            0
        }
    };
    let (score, data_score) = (score_of(sec_lost), score_of(data_lost));
    let mut breakdown: BTreeMap<&'static str, u32> = BTreeMap::new();
    for (r, x) in &mut results {
        let (was, lost_k) = match r.kind {
            Kind::Security => (score, sec_lost),
            Kind::Data => (data_score, data_lost),
            Kind::Structure => continue,
        };
        x.gain = score_of(lost_k - x.points).saturating_sub(was);
        if r.kind == Kind::Security {
            *breakdown.entry(r.owasp).or_default() += x.points;
        }
    }
    Ok(Report {
        source: source.to_string(),
        version: match spec.version {
            spec::Version::Swagger2 => "Swagger 2.0",
            spec::Version::OpenApi30 => "OpenAPI 3.0",
            spec::Version::OpenApi31 => "OpenAPI 3.1",
        },
        operations: total,
        valid,
        score,
        data_score,
        breakdown,
        rules: results.into_iter().map(|(_, x)| x).collect(),
        findings,
        ignored,
    })
}

/// Fills in the line and column of every finding, from the file that holds its node.
fn locate(findings: &mut [Finding], text: &str, spec: &spec::Spec, dir: Option<&Path>) {
    let mut files: HashMap<String, Option<(locate::Locator, serde_json::Value)>> = HashMap::new();
    // the main file as read is the spec's document unless other files were inlined into it
    let main_is_spec = spec.origins.is_empty() && text.trim_start().starts_with('{');
    let main = if main_is_spec {
        Some((locate::Locator::new(text), serde_json::Value::Null))
    } else {
        locate::Locator::read(text)
    };
    files.insert(String::new(), main);
    for f in findings {
        // a pointer of another file is `file#/pointer`; the main file's start with `/`
        let (file, pointer) = match f
            .pointer
            .split_once('#')
            .filter(|_| !f.pointer.starts_with('/'))
        {
            Some((file, p)) => (file.to_string(), p.to_string()),
            None => (String::new(), f.pointer.clone()),
        };
        let entry = files.entry(file.clone()).or_insert_with(|| {
            let t = std::fs::read_to_string(dir?.join(&file)).ok()?;
            locate::Locator::read(&t)
        });
        if let Some((loc, doc)) = entry {
            let doc = if file.is_empty() && main_is_spec {
                &spec.doc
            } else {
                &*doc
            };
            if let Some((l, c)) = loc.position(doc, &pointer) {
                f.line = Some(l);
                f.column = Some(c);
            }
        }
    }
}
