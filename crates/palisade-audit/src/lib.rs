//! `palisade audit`: a static security audit of an API description (OpenAPI 3.0, 3.1 or
//! Swagger 2.0, YAML or JSON). Rules are mapped to the OWASP API Security Top 10 (2023); the
//! report has a score from 0 to 100 with its breakdown, in text, JSON, SARIF 2.1.0 or HTML.

pub mod names;
pub mod rules;
pub mod spec;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

pub use rules::{Finding, Rule, Severity, RULES};

/// Text made safe inside HTML elements and double-quoted attributes (both reports' HTML).
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Points a finding of each severity costs, and the most one rule may cost in all (so that a
/// large description with one repeated finding is not scored like a broken one).
fn cost(s: Severity) -> (u32, u32) {
    match s {
        Severity::Low => (1, 2),
        Severity::Medium => (2, 5),
        Severity::High => (6, 12),
        Severity::Critical => (15, 25),
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

/// The audit of one description.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The description's file name, as given.
    pub source: String,
    /// `OpenAPI 3.0`, …
    pub version: &'static str,
    /// Operations audited.
    pub operations: usize,
    /// Score from 0 (worst) to 100.
    pub score: u32,
    /// Points lost per OWASP category.
    pub breakdown: BTreeMap<&'static str, u32>,
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

/// Audits `text`, named `source` in the report.
pub fn audit(source: &str, text: &str, ignores: &[Ignore]) -> Result<Report, String> {
    let spec = spec::load(text)?;
    let all = rules::run(&spec);
    let before = all.len();
    let findings: Vec<Finding> = all
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
    let mut per_rule: BTreeMap<&str, u32> = BTreeMap::new();
    for f in &findings {
        if let Some(r) = rules::rule(f.rule) {
            *per_rule.entry(r.id).or_default() += cost(r.severity).0;
        }
    }
    let mut breakdown: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut lost = 0;
    for (id, pts) in per_rule {
        if let Some(r) = rules::rule(id) {
            let p = pts.min(cost(r.severity).1);
            *breakdown.entry(r.owasp).or_default() += p;
            lost += p;
        }
    }
    Ok(Report {
        source: source.to_string(),
        version: match spec.version {
            spec::Version::Swagger2 => "Swagger 2.0",
            spec::Version::OpenApi30 => "OpenAPI 3.0",
            spec::Version::OpenApi31 => "OpenAPI 3.1",
        },
        operations: spec.operations.len(),
        score: 100u32.saturating_sub(lost),
        breakdown,
        findings,
        ignored,
    })
}

impl Report {
    /// The most severe finding, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings
            .iter()
            .filter_map(|f| rules::rule(f.rule).map(|r| r.severity))
            .max()
    }

    /// Readable text, most severe first.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {}, {} operations, score {}/100, {} findings{}",
            self.source,
            self.version,
            self.operations,
            self.score,
            self.findings.len(),
            if self.ignored > 0 {
                format!(" ({} ignored)", self.ignored)
            } else {
                String::new()
            }
        );
        if !self.breakdown.is_empty() {
            let _ = writeln!(out, "  points lost, by OWASP category:");
        }
        for (cat, pts) in &self.breakdown {
            let _ = writeln!(out, "  {pts:>4} points  {cat}");
        }
        let mut by_rule: BTreeMap<(std::cmp::Reverse<Severity>, &str), Vec<&Finding>> =
            BTreeMap::new();
        for f in &self.findings {
            if let Some(r) = rules::rule(f.rule) {
                by_rule
                    .entry((std::cmp::Reverse(r.severity), r.id))
                    .or_default()
                    .push(f);
            }
        }
        for ((_, id), fs) in by_rule {
            let Some(r) = rules::rule(id) else { continue };
            let _ = writeln!(
                out,
                "\n[{}] {} {} ({} found)",
                r.severity.name(),
                r.id,
                r.title,
                fs.len()
            );
            let _ = writeln!(out, "  {}", r.owasp);
            let _ = writeln!(out, "  why: {}", r.why);
            let _ = writeln!(out, "  fix: {}", r.fix);
            for f in fs.iter().take(10) {
                let _ = writeln!(out, "  - {} ({})", f.message, f.pointer);
            }
            if fs.len() > 10 {
                let _ = writeln!(out, "  … and {} more", fs.len() - 10);
            }
        }
        out
    }

    /// JSON: the report with the rules it used.
    pub fn json(&self) -> String {
        let used: Vec<&Rule> = RULES
            .iter()
            .filter(|r| self.findings.iter().any(|f| f.rule == r.id))
            .collect();
        let v = json!({"report": self, "rules": used});
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// SARIF 2.1.0, for code-scanning UIs.
    pub fn sarif(&self) -> String {
        let level = |s: Severity| match s {
            Severity::Low => "note",
            Severity::Medium => "warning",
            _ => "error",
        };
        let rules: Vec<Value> = RULES
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "name": r.title,
                    "shortDescription": {"text": r.title},
                    "fullDescription": {"text": r.why},
                    "help": {"text": r.fix},
                    "defaultConfiguration": {"level": level(r.severity)},
                    "properties": {"tags": ["security", r.owasp], "security-severity": match r.severity {
                        Severity::Low => "3.0", Severity::Medium => "5.0", Severity::High => "8.0", Severity::Critical => "9.5" }}
                })
            })
            .collect();
        let results: Vec<Value> = self
            .findings
            .iter()
            .filter_map(|f| {
                let r = rules::rule(f.rule)?;
                let index = RULES.iter().position(|x| x.id == r.id)?;
                Some(json!({
                    "ruleId": r.id,
                    "ruleIndex": index,
                    "level": level(r.severity),
                    "message": {"text": format!("{}: {}", r.title, f.message)},
                    "locations": [{
                        "physicalLocation": {"artifactLocation": {"uri": self.source}},
                        "logicalLocations": [{"fullyQualifiedName": f.pointer, "kind": "member"}]
                    }]
                }))
            })
            .collect();
        let v = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {"name": "palisade audit", "version": env!("CARGO_PKG_VERSION"),
                                     "informationUri": "https://github.com/palisade-gateway/palisade", "rules": rules}},
                "results": results,
                "properties": {"score": self.score}
            }]
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// A self-contained HTML page.
    pub fn html(&self) -> String {
        let esc = html_escape;
        let mut rows = String::new();
        for f in &self.findings {
            if let Some(r) = rules::rule(f.rule) {
                let _ = write!(
                    rows,
                    "<tr class=\"{sev}\"><td>{sev}</td><td>{id}</td><td>{owasp}</td><td>{title}<br><small>{msg}</small></td><td><code>{ptr}</code></td><td>{fix}</td></tr>",
                    sev = r.severity.name(),
                    id = r.id,
                    owasp = esc(r.owasp),
                    title = esc(r.title),
                    msg = esc(&f.message),
                    ptr = esc(&f.pointer),
                    fix = esc(r.fix)
                );
            }
        }
        let mut cats = String::new();
        for (c, p) in &self.breakdown {
            let _ = write!(cats, "<li>{} <b>-{p}</b></li>", esc(c));
        }
        format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Palisade audit: {src}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:4px 6px;vertical-align:top}}\
tr.critical td:first-child,tr.high td:first-child{{background:#f8d7da}}tr.medium td:first-child{{background:#fff3cd}}tr.low td:first-child{{background:#e2e3e5}}.score{{font-size:2em}}</style>\
<h1>Palisade audit: {src}</h1><p>{ver}, {ops} operations</p><p class=\"score\">Score {score}/100</p><ul>{cats}</ul>\
<table><tr><th>severity</th><th>rule</th><th>OWASP</th><th>finding</th><th>where</th><th>fix</th></tr>{rows}</table></html>\n",
            src = esc(&self.source),
            ver = self.version,
            ops = self.operations,
            score = self.score,
        )
    }
}
