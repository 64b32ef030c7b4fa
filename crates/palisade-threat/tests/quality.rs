//! Detection quality, measured: detection rate per corpus of attacks (libinjection's SQLi and
//! XSS collections, gotestwaf's OWASP and community cases, PayloadsAllTheThings' lists) and
//! false-positive rate on benign inputs (libinjection's false positives, gotestwaf's
//! false-pos texts, and JSON request bodies generated from the examples and schemas of eight
//! public API descriptions). The figures are printed; the test fails if one drops below what
//! is recorded here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use palisade_threat::detect::{detect_with, Class, Sensitivity};
use serde_json::Value;

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

fn rate(payloads: &[String], sens: Sensitivity) -> (usize, usize) {
    let hit = payloads
        .iter()
        .filter(|p| detect_with(p, &Class::ALL, sens).is_some())
        .count();
    (hit, payloads.len())
}

#[test]
fn detection_and_false_positive_rates() {
    measure(Sensitivity::Medium);
}

/// High sensitivity is measured too, for the record; only the default is held to figures.
#[test]
fn high_sensitivity_figures() {
    let d = data();
    let mut hit = 0;
    let mut n = 0;
    for (_, payloads) in patt(&d) {
        n += payloads.len();
        hit += payloads
            .iter()
            .filter(|p| detect_with(p, &Class::ALL, Sensitivity::High).is_some())
            .count();
    }
    palisade_testkit::report_figure(&format!(
        "high sensitivity, PayloadsAllTheThings: {hit}/{n} = {:.1} %",
        100.0 * hit as f64 / n as f64
    ));
    let docs = benign_documents(&d);
    let flagged = docs
        .iter()
        .filter(|v| flag_json(v, Sensitivity::High))
        .count();
    palisade_testkit::report_figure(&format!(
        "high sensitivity, benign JSON bodies flagged: {flagged}/{} = {:.2} %",
        docs.len(),
        100.0 * flagged as f64 / docs.len() as f64
    ));
    assert!(hit > 0 && !docs.is_empty());
}

/// The PayloadsAllTheThings lists, by file, without comment lines.
fn patt(d: &Path) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = std::fs::read_dir(d.join("payloadsallthethings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "LICENSE"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, lines(&p))
        })
        .collect();
    out.sort();
    out
}

/// A value for `schema`, as a client would send it: the schema's example where it has one,
/// else its first enum value or default, else one shaped by its format and its property
/// name.
fn sample(doc: &Value, schema: &Value, name: &str, depth: usize) -> Value {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or(schema),
        None => schema,
    };
    if depth > 6 {
        return Value::Null;
    }
    if let Some(e) = schema.get("example") {
        return e.clone();
    }
    if let Some(e) = schema
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return e.clone();
    }
    if let Some(e) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return e.clone();
    }
    if let Some(d) = schema.get("default") {
        return d.clone();
    }
    for k in ["allOf", "oneOf", "anyOf"] {
        if let Some(first) = schema
            .get(k)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return sample(doc, first, name, depth + 1);
        }
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or(
        if schema.get("properties").is_some() {
            "object"
        } else {
            "string"
        },
    );
    match ty {
        "object" => {
            let mut m = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props.iter().take(40) {
                    m.insert(k.clone(), sample(doc, v, k, depth + 1));
                }
            }
            Value::Object(m)
        }
        "array" => {
            let item = schema.get("items").cloned().unwrap_or(Value::Null);
            Value::Array(vec![sample(doc, &item, name, depth + 1)])
        }
        "integer" | "number" => Value::from(42),
        "boolean" => Value::Bool(true),
        _ => {
            let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
            let n = name.to_ascii_lowercase();
            let text = match format {
                "email" => "ada.lovelace@example.com".to_string(),
                "uri" | "url" => "https://example.com/files/report-2026.pdf?version=2".to_string(),
                "date-time" => "2026-11-28T14:03:59Z".to_string(),
                "date" => "2026-11-28".to_string(),
                "uuid" => "3f2b8c1e-9d4a-4b7e-8f1c-2a6d5e9b0c47".to_string(),
                "password" => "C0rrect-Horse;Battery'Staple".to_string(),
                _ if n.contains("url") || n.contains("uri") || n.contains("link") => {
                    "https://example.com/path/to/item?ref=home&utm_source=mail".to_string()
                }
                _ if n.contains("email") => "o'brien+news@example.co.uk".to_string(),
                _ if n.contains("name") => "O'Brien & Sons (Dublin)".to_string(),
                _ if n.contains("path") || n.contains("file") => "reports/2026/q3 summary.pdf".to_string(),
                _ if n.contains("query") || n.contains("search") || n.contains("filter") => {
                    "red shoes -sale OR \"running shoes\"".to_string()
                }
                _ if n.contains("text") || n.contains("description") || n.contains("message") || n.contains("comment") => {
                    "Hi team; the select/union of both lists is attached - see page 2 & call me at 10:30.".to_string()
                }
                _ => format!("{name} value 1"),
            };
            Value::String(text)
        }
    }
}

/// Benign JSON documents: one per schema under `components/schemas` (or `definitions`) and
/// one per JSON request body of each operation, of every description in `tests/data/specs`.
fn benign_documents(d: &Path) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(d.join("specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let doc: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let schemas = doc
            .pointer("/components/schemas")
            .or_else(|| doc.get("definitions"))
            .and_then(Value::as_object);
        for (name, schema) in schemas.into_iter().flatten() {
            docs.push(sample(&doc, schema, name, 0));
        }
        for (_, item) in doc
            .get("paths")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            for (_, op) in item.as_object().into_iter().flatten() {
                let Some(content) = op
                    .pointer("/requestBody/content")
                    .and_then(Value::as_object)
                else {
                    continue;
                };
                for (media, m) in content {
                    if media.contains("json") || media.contains("form") {
                        if let Some(s) = m.get("schema") {
                            docs.push(sample(&doc, s, "body", 0));
                        }
                        if let Some(e) = m.get("example") {
                            docs.push(e.clone());
                        }
                    }
                }
            }
        }
    }
    docs
}

/// Whether any key or string leaf of `v` is flagged, as the `threat` policy walks a body.
fn flag_json(v: &Value, sens: Sensitivity) -> bool {
    match v {
        Value::String(s) => detect_with(s, &Class::ALL, sens).is_some(),
        Value::Array(a) => a.iter().any(|x| flag_json(x, sens)),
        Value::Object(m) => m
            .iter()
            .any(|(k, x)| detect_with(k, &Class::ALL, sens).is_some() || flag_json(x, sens)),
        _ => false,
    }
}

fn measure(sens: Sensitivity) {
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
    for (file, payloads) in patt(&d) {
        let min = PATT
            .iter()
            .find(|(f, _)| *f == file)
            .map_or_else(|| panic!("{file}: no recorded figure"), |(_, m)| *m);
        corpora.push((format!("PayloadsAllTheThings {file}"), payloads, min));
    }
    let mut all = (0, 0);
    let mut by_source: Vec<(&str, usize, usize)> = Vec::new();
    for (name, payloads, min) in &corpora {
        let (hit, n) = rate(payloads, sens);
        all = (all.0 + hit, all.1 + n);
        let source = name.split(' ').next().unwrap_or("");
        match by_source.iter_mut().find(|(s, _, _)| *s == source) {
            Some(e) => {
                e.1 += hit;
                e.2 += n;
            }
            None => by_source.push((source, hit, n)),
        }
        let pct = 100.0 * hit as f64 / n as f64;
        palisade_testkit::report_figure(&format!("detection {name}: {hit}/{n} = {pct:.1} %"));
        assert!(pct >= *min, "{name}: {pct:.1} % < recorded {min} %");
    }
    for (source, hit, n) in &by_source {
        palisade_testkit::report_figure(&format!(
            "detection {source} (all lists): {hit}/{n} = {:.1} %",
            100.0 * *hit as f64 / *n as f64
        ));
    }
    let pct = 100.0 * all.0 as f64 / all.1 as f64;
    palisade_testkit::report_figure(&format!(
        "detection overall ({sens:?} sensitivity): {}/{} = {pct:.1} %",
        all.0, all.1
    ));
    assert!(
        pct >= MIN_OVERALL,
        "overall {pct:.1} % < recorded {MIN_OVERALL} %"
    );

    let mut benign = lines(&d.join("libinjection/false_positives.txt"));
    benign.extend(gotestwaf(&d.join("gotestwaf/false-pos/texts.yml")));
    let flagged: Vec<&String> = benign
        .iter()
        .filter(|b| detect_with(b, &Class::ALL, sens).is_some())
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

    let docs = benign_documents(&d);
    let flagged: Vec<&Value> = docs.iter().filter(|v| flag_json(v, sens)).collect();
    let leaves = docs.iter().map(count_leaves).sum::<usize>();
    let fp_json = 100.0 * flagged.len() as f64 / docs.len() as f64;
    palisade_testkit::report_figure(&format!(
        "false positives, JSON bodies generated from 8 API descriptions: {}/{} bodies ({leaves} keys and strings) = {fp_json:.2} %",
        flagged.len(),
        docs.len()
    ));
    for v in flagged.iter().take(5) {
        let text = v.to_string();
        println!(
            "  flagged: {}",
            text.get(..200.min(text.len())).unwrap_or(&text)
        );
    }
    assert!(
        docs.len() > 500,
        "only {} benign documents generated",
        docs.len()
    );
    assert!(
        fp_json <= MAX_FALSE_POSITIVES_JSON,
        "false positives on JSON {fp_json:.2} % > recorded {MAX_FALSE_POSITIVES_JSON} %"
    );
}

fn count_leaves(v: &Value) -> usize {
    match v {
        Value::String(_) => 1,
        Value::Array(a) => a.iter().map(count_leaves).sum(),
        Value::Object(m) => m.len() + m.values().map(count_leaves).sum::<usize>(),
        _ => 0,
    }
}

// Recorded figures (BENCHMARKS.md has the latest measurement): the test fails below them.
const MIN_LIBINJECTION_SQLI: f64 = 98.8;
const MIN_LIBINJECTION_XSS: f64 = 99.3;
const GOTESTWAF: &[(&str, f64)] = &[
    ("owasp/sql-injection.yml", 100.0),
    ("owasp/xss-scripting.yml", 96.4),
    ("owasp/shell-injection.yml", 50.0),
    ("owasp/rce.yml", 100.0),
    ("owasp/rce-urlparam.yml", 33.3),
    ("owasp/path-traversal.yml", 100.0),
    ("owasp/nosql-injection.yml", 100.0),
    ("owasp/ldap-injection.yml", 66.6),
    ("owasp/sst-injection.yml", 100.0),
    ("community/community-sqli.yml", 100.0),
    ("community/community-xss.yml", 92.3),
    ("community/community-rce.yml", 100.0),
    ("community/community-lfi.yml", 100.0),
];
const MAX_FALSE_POSITIVES: f64 = 0.0;
const MAX_FALSE_POSITIVES_JSON: f64 = 0.0;
const MIN_OVERALL: f64 = 99.0;
const PATT: &[(&str, f64)] = &[
    ("command-injection--command-execution-unix.txt", 98.7),
    ("command-injection--command_exec.txt", 91.5),
    ("directory-traversal--deep_traversal.txt", 100.0),
    ("directory-traversal--directory_traversal.txt", 100.0),
    ("directory-traversal--dotdotpwn.txt", 100.0),
    (
        "directory-traversal--traversals-8-deep-exotic-encoding.txt",
        100.0,
    ),
    ("file-inclusion--BSD-files.txt", 100.0),
    ("file-inclusion--JHADDIX_LFI.txt", 97.3),
    ("file-inclusion--LFI-FD-check.txt", 100.0),
    ("file-inclusion--LFI-WindowsFileCheck.txt", 100.0),
    ("file-inclusion--Linux-files.txt", 100.0),
    ("file-inclusion--List_Of_File_To_Include.txt", 99.8),
    (
        "file-inclusion--List_Of_File_To_Include_NullByteAdded.txt",
        100.0,
    ),
    ("file-inclusion--Mac-files.txt", 87.5),
    ("file-inclusion--Traversal.txt", 99.9),
    ("file-inclusion--Windows-files.txt", 100.0),
    (
        "file-inclusion--dot-slash-PathTraversal_and_LFI_pairing.txt",
        100.0,
    ),
    ("file-inclusion--simple-check.txt", 100.0),
    ("ldap-injection--LDAP_FUZZ.txt", 32.6),
    ("ldap-injection--LDAP_FUZZ_SMALL.txt", 40.0),
    ("nosql-injection--MongoDB.txt", 65.0),
    ("nosql-injection--NoSQL.txt", 69.2),
    ("server-side-template-injection--ssti.fuzz", 91.4),
    ("sql-injection--Auth_Bypass.txt", 78.2),
    ("sql-injection--Auth_Bypass2.txt", 87.6),
    ("sql-injection--FUZZDB_MSSQL-WHERE_Time.txt", 100.0),
    ("sql-injection--FUZZDB_MSSQL.txt", 87.5),
    ("sql-injection--FUZZDB_MSSQL_Enumeration.txt", 54.5),
    ("sql-injection--FUZZDB_MYSQL.txt", 83.3),
    ("sql-injection--FUZZDB_MySQL-WHERE_Time.txt", 100.0),
    ("sql-injection--FUZZDB_MySQL_ReadLocalFiles.txt", 100.0),
    ("sql-injection--FUZZDB_Oracle.txt", 96.2),
    ("sql-injection--FUZZDB_Postgres_Enumeration.txt", 21.0),
    ("sql-injection--Generic_ErrorBased.txt", 100.0),
    ("sql-injection--Generic_Fuzz.txt", 33.3),
    ("sql-injection--Generic_TimeBased.txt", 99.0),
    ("sql-injection--Generic_UnionSelect.txt", 100.0),
    ("sql-injection--SQL-Injection", 45.4),
    ("sql-injection--SQLi_Polyglots.txt", 100.0),
    ("sql-injection--payloads-sql-blind-MSSQL-INSERT", 98.1),
    ("sql-injection--payloads-sql-blind-MSSQL-WHERE", 100.0),
    ("sql-injection--payloads-sql-blind-MySQL-INSERT", 100.0),
    ("sql-injection--payloads-sql-blind-MySQL-ORDER_BY", 100.0),
    ("sql-injection--payloads-sql-blind-MySQL-WHERE", 100.0),
    ("xss-injection--BRUTELOGIC-XSS-JS.txt", 11.7),
    ("xss-injection--BRUTELOGIC-XSS-STRINGS.txt", 96.3),
    ("xss-injection--IntrudersXSS.txt", 97.7),
    ("xss-injection--JHADDIX_XSS.txt", 100.0),
    ("xss-injection--RSNAKE_XSS.txt", 94.5),
    ("xss-injection--XSSDetection.txt", 91.5),
    ("xss-injection--XSS_Polyglots.txt", 100.0),
    ("xss-injection--jsonp_endpoint.txt", 100.0),
    ("xss-injection--xss_alert.txt", 98.5),
    ("xss-injection--xss_alert_identifiable.txt", 98.5),
    ("xss-injection--xss_payloads_quick.txt", 92.3),
    ("xss-injection--xss_swf_fuzz.txt", 90.9),
];
