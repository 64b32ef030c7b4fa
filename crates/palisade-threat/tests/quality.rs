//! Detection quality, measured: detection rate per corpus of attacks (libinjection's SQLi and
//! XSS collections, gotestwaf's OWASP and community cases) and false-positive rate on benign
//! texts (libinjection's false positives, gotestwaf's false-pos texts). The figures are
//! printed; the test fails if one drops below what is recorded here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use palisade_threat::detect::{detect, Class};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn lines(p: &Path) -> Vec<String> {
    String::from_utf8_lossy(&std::fs::read(p).unwrap())
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The `payload` list of a gotestwaf test case. Their YAML uses escapes a strict parser
/// refuses, so list items are read line by line (double-quoted: `\\`, `\"`, `\n`, `\t`
/// unescaped; single-quoted: `''`).
fn gotestwaf(p: &Path) -> Vec<String> {
    let text = String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('-') {
            inside = line.starts_with("payload:");
            continue;
        }
        let Some(item) = line.trim_start().strip_prefix("- ") else {
            continue;
        };
        if !inside {
            continue;
        }
        let v = if let Some(q) = item.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            let mut s = String::new();
            let mut chars = q.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some('r') => s.push('\r'),
                        Some(o) => s.push(o),
                        None => {}
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else if let Some(q) = item.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
            q.replace("''", "'")
        } else {
            item.to_string()
        };
        out.push(v);
    }
    assert!(!out.is_empty(), "{}: no payloads read", p.display());
    out
}

fn rate(payloads: &[String]) -> (usize, usize) {
    let hit = payloads
        .iter()
        .filter(|p| detect(p, &Class::ALL).is_some())
        .count();
    (hit, payloads.len())
}

#[test]
fn detection_and_false_positive_rates() {
    let d = data();
    let mut corpora: Vec<(String, Vec<String>, f64)> = Vec::new();
    // (name, payloads, recorded minimum rate in %)
    let mut sqli = Vec::new();
    let mut xss = Vec::new();
    for e in std::fs::read_dir(d.join("libinjection")).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        if n.starts_with("sqli-") {
            sqli.extend(lines(&p));
        } else if n.starts_with("xss-") {
            xss.extend(lines(&p));
        }
    }
    corpora.push(("libinjection sqli".into(), sqli, MIN_LIBINJECTION_SQLI));
    corpora.push(("libinjection xss".into(), xss, MIN_LIBINJECTION_XSS));
    for (file, min) in GOTESTWAF {
        corpora.push((
            format!("gotestwaf {file}"),
            gotestwaf(&d.join("gotestwaf").join(file)),
            *min,
        ));
    }
    let mut all = (0, 0);
    for (name, payloads, min) in &corpora {
        let (hit, n) = rate(payloads);
        all = (all.0 + hit, all.1 + n);
        let pct = 100.0 * hit as f64 / n as f64;
        palisade_testkit::report_figure(&format!("detection {name}: {hit}/{n} = {pct:.1} %"));
        assert!(pct >= *min, "{name}: {pct:.1} % < recorded {min} %");
    }
    let pct = 100.0 * all.0 as f64 / all.1 as f64;
    palisade_testkit::report_figure(&format!(
        "detection overall: {}/{} = {pct:.1} %",
        all.0, all.1
    ));

    let mut benign = lines(&d.join("libinjection/false_positives.txt"));
    benign.extend(gotestwaf(&d.join("gotestwaf/false-pos/texts.yml")));
    let flagged: Vec<&String> = benign
        .iter()
        .filter(|b| detect(b, &Class::ALL).is_some())
        .collect();
    let fp = 100.0 * flagged.len() as f64 / benign.len() as f64;
    palisade_testkit::report_figure(&format!(
        "false positives (libinjection false_positives + gotestwaf false-pos): {}/{} = {fp:.2} %",
        flagged.len(),
        benign.len()
    ));
    assert!(
        fp <= MAX_FALSE_POSITIVES,
        "false positives {fp:.2} % > recorded {MAX_FALSE_POSITIVES} %"
    );
}

// Recorded figures (BENCHMARKS.md has the latest measurement): the test fails below them.
const MIN_LIBINJECTION_SQLI: f64 = 96.9;
const MIN_LIBINJECTION_XSS: f64 = 94.6;
const GOTESTWAF: &[(&str, f64)] = &[
    ("owasp/sql-injection.yml", 100.0),
    ("owasp/xss-scripting.yml", 92.8),
    ("owasp/shell-injection.yml", 50.0),
    ("owasp/rce.yml", 100.0),
    ("owasp/rce-urlparam.yml", 33.3),
    ("owasp/path-traversal.yml", 50.0),
    ("owasp/nosql-injection.yml", 100.0),
    ("owasp/ldap-injection.yml", 66.6),
    ("owasp/sst-injection.yml", 100.0),
    ("community/community-sqli.yml", 100.0),
    ("community/community-xss.yml", 92.3),
    ("community/community-rce.yml", 100.0),
    ("community/community-lfi.yml", 50.0),
];
const MAX_FALSE_POSITIVES: f64 = 0.65;
