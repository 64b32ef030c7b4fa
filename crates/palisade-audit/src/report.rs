//! The audit report in text, JSON, SARIF 2.1.0 and HTML. Findings are grouped by rule (the
//! format's problems first, then by severity), each with its place (pointer, line) and the
//! operations it affects; every group says what fixing it gains.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::rules::{self, Finding, Kind, Rule, Severity, RULES};
use crate::{html_escape, Report, RuleResult};

/// Text of a description shown in a report: control characters (terminal escapes, line
/// breaks inside names) written as `\u{..}` instead of sent to the terminal.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A stable fingerprint of a finding (FNV-1a 64 of its rule and pointer): the same finding
/// has the same one in every run, whatever else changed in the file.
pub fn fingerprint(f: &Finding) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in f.rule.bytes().chain([0]).chain(f.pointer.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Where each rule's documentation (how it decides) is.
pub fn help_uri(r: &Rule) -> String {
    format!(
        "https://github.com/palisade-gateway/palisade/blob/main/docs/audit.md#{}",
        r.id.to_ascii_lowercase()
    )
}

/// "GET /a, GET /b and 3 more".
fn uses_text(uses: &[String], max: usize) -> String {
    let shown: Vec<String> = uses.iter().take(max).map(|u| clean(u)).collect();
    let mut s = shown.join(", ");
    if uses.len() > max {
        let _ = write!(s, " and {} more", uses.len() - max);
    }
    s
}

/// The rules with findings, in report order: the format's problems first (they stop the
/// scoring), then the most severe.
fn groups(r: &Report) -> Vec<(&'static Rule, &RuleResult, Vec<&Finding>)> {
    let mut by: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in &r.findings {
        by.entry(f.rule).or_default().push(f);
    }
    let mut out: Vec<(&'static Rule, &RuleResult, Vec<&Finding>)> = r
        .rules
        .iter()
        .filter_map(|x| Some((rules::rule(x.rule)?, x, by.remove(x.rule)?)))
        .collect();
    out.sort_by_key(|(rule, _, _)| {
        (
            rule.kind != Kind::Structure,
            std::cmp::Reverse(rule.severity),
            rule.id,
        )
    });
    out
}

fn place(f: &Finding) -> String {
    match f.line {
        Some(l) => format!("{}, line {l}", clean(&f.pointer)),
        None => clean(&f.pointer),
    }
}

impl Report {
    /// The security points lost per OWASP category, in the Top 10's order (API1 … API10).
    pub fn categories(&self) -> Vec<(&'static str, u32)> {
        let mut v: Vec<(&'static str, u32)> =
            self.breakdown.iter().map(|(k, p)| (*k, *p)).collect();
        v.sort_by_key(|(k, _)| {
            k.trim_start_matches("API")
                .split(':')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(u32::MAX)
        });
        v
    }

    /// The pointers of the findings of `rule`, in report order.
    pub fn pointers_of(&self, rule: &str) -> Vec<&str> {
        self.findings
            .iter()
            .filter(|f| f.rule == rule)
            .map(|f| f.pointer.as_str())
            .collect()
    }

    /// The most severe finding, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings
            .iter()
            .filter_map(|f| rules::rule(f.rule).map(|r| r.severity))
            .max()
    }

    fn structure_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| rules::rule(f.rule).is_some_and(|r| r.kind == Kind::Structure))
            .count()
    }

    /// The scores as one line.
    pub fn scores(&self) -> String {
        if self.valid {
            format!(
                "security score {}/100, data validation {}/100",
                self.score, self.data_score
            )
        } else {
            format!(
                "not scored: not a valid {} description ({} format findings below; fix them first)",
                self.version,
                self.structure_count()
            )
        }
    }

    /// Readable text, the format's problems first, then the most severe.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {}, {} operations, {} findings{}",
            clean(&self.source),
            self.version,
            self.operations,
            self.findings.len(),
            if self.ignored > 0 {
                format!(" ({} ignored)", self.ignored)
            } else {
                String::new()
            }
        );
        let _ = writeln!(out, "  {}", self.scores());
        if self.valid && !self.breakdown.is_empty() {
            let _ = writeln!(out, "  security points lost, by OWASP category:");
            for (cat, pts) in self.categories() {
                let _ = writeln!(out, "  {pts:>4} points  {cat}");
            }
        }
        for (r, x, fs) in groups(self) {
            let gain = if self.valid && x.gain > 0 {
                format!(
                    ", fixing it gains {} point{}",
                    x.gain,
                    if x.gain == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            };
            let reach = if r.kind == Kind::Structure {
                String::new()
            } else {
                format!(", {} of {} operations", x.operations, self.operations)
            };
            let _ = writeln!(
                out,
                "\n[{}] {} {} ({} found{reach}{gain})",
                r.severity.name(),
                r.id,
                r.title,
                fs.len(),
            );
            let _ = writeln!(out, "  {}", r.owasp);
            let _ = writeln!(out, "  why: {}", r.why);
            let _ = writeln!(out, "  fix: {}", r.fix);
            for f in fs.iter().take(10) {
                let uses = if f.uses.len() > 1 {
                    format!("; used by {}", uses_text(&f.uses, 3))
                } else {
                    String::new()
                };
                let _ = writeln!(out, "  - {} ({}{uses})", clean(&f.message), place(f));
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

    /// SARIF 2.1.0, for code-scanning UIs: results with their file, line and column, a
    /// stable fingerprint and the operations affected; at most `max_results` of them (the
    /// most severe first), with a notification saying how many were left out.
    pub fn sarif(&self, max_results: Option<usize>) -> String {
        let rules: Vec<Value> = RULES
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "name": r.title,
                    "shortDescription": {"text": r.title},
                    "fullDescription": {"text": r.why},
                    "help": {
                        "text": format!("{} Fix: {}", r.why, r.fix),
                        "markdown": format!("**Why.** {}\n\n**Fix.** {}\n\n[How the rule decides]({})", r.why, r.fix, help_uri(r)),
                    },
                    "helpUri": help_uri(r),
                    "defaultConfiguration": {"level": r.severity.sarif_level()},
                    "properties": {"tags": ["security", r.owasp], "security-severity": match r.severity {
                        Severity::Low => "3.0", Severity::Medium => "5.0", Severity::High => "8.0", Severity::Critical => "9.5" }}
                })
            })
            .collect();
        let mut ordered: Vec<&Finding> = self.findings.iter().collect();
        ordered.sort_by_key(|f| {
            std::cmp::Reverse(
                rules::rule(f.rule)
                    .map(|r| r.severity)
                    .unwrap_or(Severity::Low),
            )
        });
        let cap = max_results.unwrap_or(usize::MAX);
        let left_out = ordered.len().saturating_sub(cap);
        let dir = std::path::Path::new(&self.source)
            .parent()
            .unwrap_or(std::path::Path::new(""));
        let results: Vec<Value> = ordered
            .into_iter()
            .take(cap)
            .filter_map(|f| {
                let r = rules::rule(f.rule)?;
                let index = RULES.iter().position(|x| x.id == r.id)?;
                let (uri, pointer) = match f
                    .pointer
                    .split_once('#')
                    .filter(|_| !f.pointer.starts_with('/'))
                {
                    Some((file, p)) => (dir.join(file).display().to_string(), p.to_string()),
                    None => (self.source.clone(), f.pointer.clone()),
                };
                let physical = match (f.line, f.column) {
                    (Some(l), Some(c)) => json!({"artifactLocation": {"uri": uri},
                        "region": {"startLine": l, "startColumn": c}}),
                    _ => json!({"artifactLocation": {"uri": uri}}),
                };
                let used = if f.uses.len() > 1 {
                    format!(" (used by {})", uses_text(&f.uses, 5))
                } else {
                    String::new()
                };
                Some(json!({
                    "ruleId": r.id,
                    "ruleIndex": index,
                    "level": r.severity.sarif_level(),
                    "message": {"text": format!("{}: {}{used}", r.title, clean(&f.message))},
                    "locations": [{
                        "physicalLocation": physical,
                        "logicalLocations": [{"fullyQualifiedName": pointer, "kind": "member"}]
                    }],
                    "partialFingerprints": {"palisadeFinding/v1": fingerprint(f)},
                    "properties": {"uses": f.uses}
                }))
            })
            .collect();
        let mut notes = Vec::new();
        if left_out > 0 {
            notes.push(json!({"level": "warning", "message": {"text": format!(
                "{left_out} of {} results left out (--max-results {cap}); the JSON report has them all",
                self.findings.len())}}));
        }
        let v = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {"name": "palisade audit", "version": env!("CARGO_PKG_VERSION"),
                                     "informationUri": "https://github.com/palisade-gateway/palisade", "rules": rules}},
                "invocations": [{"executionSuccessful": true, "toolExecutionNotifications": notes}],
                "results": results,
                "properties": {"score": self.score, "dataValidationScore": self.data_score, "valid": self.valid}
            }]
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// A self-contained HTML page: the scores, counts by severity, the findings grouped by
    /// severity and rule (collapsible, fixes beside them), and a drill-down per operation.
    pub fn html(&self) -> String {
        let esc = |s: &str| html_escape(&clean(s));
        let mut counts: BTreeMap<std::cmp::Reverse<Severity>, (usize, usize)> = BTreeMap::new();
        let gs = groups(self);
        for (r, _, fs) in &gs {
            let e = counts.entry(std::cmp::Reverse(r.severity)).or_default();
            e.0 += 1;
            e.1 += fs.len();
        }
        let mut summary = String::new();
        for (sev, (nr, nf)) in &counts {
            let _ = write!(
                summary,
                "<tr class=\"{s}\"><td>{s}</td><td>{nr}</td><td>{nf}</td></tr>",
                s = sev.0.name()
            );
        }
        let mut body = String::new();
        let mut current: Option<(bool, Severity)> = None;
        for (r, x, fs) in &gs {
            let head = (r.kind == Kind::Structure, r.severity);
            if current != Some(head) {
                let title = if head.0 {
                    "Format (fix first: not scored until fixed)".to_string()
                } else {
                    format!("{} severity", r.severity.name())
                };
                let _ = write!(body, "<h2>{title}</h2>");
                current = Some(head);
            }
            let open = if r.severity >= Severity::High {
                " open"
            } else {
                ""
            };
            let gain = if self.valid && x.gain > 0 {
                format!(" · fixing gains <b>{}</b> points", x.gain)
            } else {
                String::new()
            };
            let _ = write!(
                body,
                "<details class=\"rule {sev}\"{open}><summary><span class=\"sev\">{sev}</span> <b>{id}</b> {title} · {n} found · {ops} of {total} operations{gain}</summary>\
<p class=\"why\"><b>Why.</b> {why} <small>({owasp})</small></p><p class=\"fix\"><b>Fix.</b> {fix}</p><ul>",
                sev = r.severity.name(),
                id = r.id,
                title = esc(r.title),
                n = fs.len(),
                ops = x.operations,
                total = self.operations,
                why = esc(r.why),
                owasp = esc(r.owasp),
                fix = esc(r.fix),
            );
            for f in fs {
                let line = f
                    .line
                    .map(|l| format!(" <small>line {l}</small>"))
                    .unwrap_or_default();
                let uses = if f.uses.is_empty() {
                    String::new()
                } else {
                    format!("<br><small>affects {}</small>", esc(&uses_text(&f.uses, 8)))
                };
                let _ = write!(
                    body,
                    "<li>{msg}<br><code class=\"ptr\">{ptr}</code>{line}{uses}</li>",
                    msg = esc(&f.message),
                    ptr = esc(&f.pointer),
                );
            }
            body.push_str("</ul></details>");
        }
        // per operation: the findings that affect it
        let mut per_op: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in &self.findings {
            if f.whole {
                per_op.entry("(the whole description)").or_default().push(f);
            }
            for u in &f.uses {
                per_op.entry(u.as_str()).or_default().push(f);
            }
        }
        let mut ops = String::new();
        for (op, fs) in &per_op {
            let worst = fs
                .iter()
                .filter_map(|f| rules::rule(f.rule).map(|r| r.severity))
                .max()
                .unwrap_or(Severity::Low);
            let _ = write!(
                ops,
                "<details class=\"op {w}\"><summary><span class=\"sev\">{w}</span> <code>{op}</code> · {n} findings</summary><ul>",
                w = worst.name(),
                op = esc(op),
                n = fs.len()
            );
            for f in fs {
                if let Some(r) = rules::rule(f.rule) {
                    let _ = write!(
                        ops,
                        "<li><b>{id}</b> {msg} <small>({sev})</small></li>",
                        id = r.id,
                        msg = esc(&f.message),
                        sev = r.severity.name()
                    );
                }
            }
            ops.push_str("</ul></details>");
        }
        let mut cats = String::new();
        for (c, p) in self.categories() {
            let _ = write!(cats, "<li>{} <b>−{p}</b></li>", esc(c));
        }
        let scores = if self.valid {
            format!(
                "<p class=\"score\">Security <b>{}</b>/100 · Data validation <b>{}</b>/100</p>",
                self.score, self.data_score
            )
        } else {
            format!("<p class=\"score invalid\">{}</p>", esc(&self.scores()))
        };
        format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>Palisade audit: {src}</title>\
<style>body{{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em;color:#222}}\
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}\
details{{border:1px solid #ddd;border-radius:4px;margin:.4em 0;padding:.3em .6em}}summary{{cursor:pointer}}\
code{{overflow-wrap:anywhere;word-break:break-all}}ul{{padding-left:1.2em}}li{{margin:.3em 0}}\
.sev{{display:inline-block;min-width:5em;padding:0 .4em;border-radius:3px;font-size:.85em;text-align:center}}\
.critical .sev,tr.critical td:first-child{{background:#f5c2c7}}.high .sev,tr.high td:first-child{{background:#f8d7da}}\
.medium .sev,tr.medium td:first-child{{background:#fff3cd}}.low .sev,tr.low td:first-child{{background:#e2e3e5}}\
.score{{font-size:1.5em}}.invalid{{color:#a00}}.why,.fix{{margin:.3em 0;max-width:60em}}</style>\
<h1>Palisade audit: {src}</h1><p>{ver}, {ops_n} operations, {nf} findings</p>{scores}<ul>{cats}</ul>\
<table><tr><th>severity</th><th>rules</th><th>findings</th></tr>{summary}</table>\
<h2 id=\"findings\">Findings</h2>{body}<h2 id=\"operations\">By operation</h2>{ops}</html>\n",
            src = esc(&self.source),
            ver = self.version,
            ops_n = self.operations,
            nf = self.findings.len(),
        )
    }
}
