//! The scan's report: readable text, JSON, SARIF 2.1.0 and a self-contained HTML page.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use palisade_audit::Severity;
use serde_json::{json, Value};

use crate::Report;

impl Report {
    /// The most severe finding.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Readable text.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}: {} requests, {} findings\n",
            self.target,
            self.requests,
            self.findings.len()
        );
        for c in &self.cleanup {
            let _ = writeln!(out, "cleanup: {c}");
        }
        if self.throttled > 0 {
            let _ = writeln!(
                out,
                "throttled: {} answers were 429 after a wait and a retry; checks that met them may have missed a flaw (lower --rate)",
                self.throttled
            );
        }
        for f in &self.findings {
            let _ = writeln!(
                out,
                "\n[{}] {} {}\n  {}",
                f.severity.name(),
                f.check,
                f.title,
                f.owasp
            );
            if let Some(l) = &f.location {
                let _ = writeln!(out, "  at {l}");
            }
            for e in &f.evidence {
                let _ = writeln!(out, "  > {}", e.request.replace('\n', "\n    "));
                let _ = writeln!(out, "  < {} {}", e.status, e.excerpt.replace('\n', " "));
            }
        }
        for s in &self.skipped {
            let _ = writeln!(out, "\nnot run: {s}");
        }
        out
    }

    /// JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A self-contained HTML page.
    pub fn html(&self) -> String {
        let esc = palisade_audit::html_escape;
        let mut rows = String::new();
        for f in &self.findings {
            let ev: Vec<String> = f
                .evidence
                .iter()
                .map(|e| {
                    format!(
                        "<pre>{}\n&lt; {} {}</pre>",
                        esc(&e.request),
                        e.status,
                        esc(&e.excerpt)
                    )
                })
                .collect();
            let _ = write!(
                rows,
                "<tr class=\"{sev}\"><td>{sev}</td><td>{check}</td><td>{owasp}</td><td>{title}</td><td>{ev}</td></tr>",
                sev = f.severity.name(),
                check = f.check,
                owasp = esc(f.owasp),
                title = esc(&f.title),
                ev = ev.join("")
            );
        }
        format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Palisade scan: {t}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:4px 6px;vertical-align:top}}\
pre{{margin:0 0 4px;white-space:pre-wrap;font-size:12px}}tr.critical td:first-child,tr.high td:first-child{{background:#f8d7da}}tr.medium td:first-child{{background:#fff3cd}}</style>\
<h1>Palisade scan: {t}</h1><p>{n} requests, {f} findings</p>\
<table><tr><th>severity</th><th>check</th><th>OWASP</th><th>finding</th><th>evidence</th></tr>{rows}</table></html>\n",
            t = esc(&self.target),
            n = self.requests,
            f = self.findings.len()
        )
    }

    /// SARIF 2.1.0.
    pub fn sarif(&self) -> String {
        let checks: BTreeSet<&str> = self.findings.iter().map(|f| f.check).collect();
        let rules: Vec<Value> = checks.iter().map(|c| json!({"id": c, "name": c})).collect();
        let results: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                json!({
                    "ruleId": f.check,
                    "ruleIndex": checks.iter().position(|c| *c == f.check),
                    "level": f.severity.sarif_level(),
                    "message": {"text": format!("{} ({})", f.title, f.owasp)},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": self.target}}}],
                    "properties": {"evidence": f.evidence}
                })
            })
            .collect();
        serde_json::to_string_pretty(&json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "palisade scan", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
                      "results": results}]
        }))
        .unwrap_or_default()
    }
}
