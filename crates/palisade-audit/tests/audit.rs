//! The audit on purpose-built descriptions: a vulnerable one that trips every rule, its fixed
//! version that trips none, a Swagger 2.0 one; golden reports (text, JSON, SARIF); the ignore
//! file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use palisade_audit::{audit, parse_ignores, RULES};

fn data(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rules_found(r: &palisade_audit::Report) -> BTreeSet<&'static str> {
    r.findings.iter().map(|f| f.rule).collect()
}

#[test]
fn the_vulnerable_sample_trips_every_rule() {
    let r = audit("vulnerable.yaml", &data("vulnerable.yaml"), &[]).unwrap();
    let all: BTreeSet<&str> = RULES.iter().map(|r| r.id).collect();
    assert_eq!(rules_found(&r), all);
    assert!(r.score < 40, "score {}", r.score);
    let at = |rule: &str| -> Vec<&str> {
        r.findings
            .iter()
            .filter(|f| f.rule == rule)
            .map(|f| f.pointer.as_str())
            .collect()
    };
    assert_eq!(
        at("PAL-AUTH-001"),
        ["/paths/~1health/get", "/paths/~1orders~1{orderId}/delete"]
    );
    assert_eq!(at("PAL-AUTH-006"), ["/paths/~1orders~1{orderId}"]);
    assert_eq!(at("PAL-DATA-001"), ["/paths/~1login/get/parameters/0"]);
    assert_eq!(
        at("PAL-MASS-002"),
        ["/components/schemas/NewOrder/properties/role"]
    );
    assert_eq!(
        at("PAL-MASS-003"),
        ["/components/schemas/Order/properties/password"]
    );
    assert_eq!(
        at("PAL-SSRF-001"),
        ["/components/schemas/NewOrder/properties/callback_url"]
    );
    assert_eq!(at("PAL-BFLA-001"), ["/paths/~1admin~1users/get"]);
    assert_eq!(at("PAL-TLS-001"), ["/servers/0/url"]);
    assert_eq!(at("PAL-INV-001"), ["/servers/1/url"]);
}

#[test]
fn the_fixed_sample_is_clean() {
    let r = audit("fixed.yaml", &data("fixed.yaml"), &[]).unwrap();
    assert_eq!(r.findings, vec![], "{}", r.text());
    assert_eq!(r.score, 100);
    assert_eq!(r.version, "OpenAPI 3.1");
    assert_eq!(r.worst(), None);
}

#[test]
fn swagger_2_is_read_too() {
    let r = audit("swagger2.json", &data("swagger2.json"), &[]).unwrap();
    assert_eq!(r.version, "Swagger 2.0");
    let found = rules_found(&r);
    for id in [
        "PAL-AUTH-002",
        "PAL-AUTH-003",
        "PAL-AUTH-004",
        "PAL-TLS-001",
        "PAL-BOLA-001",
        "PAL-MASS-002",
        "PAL-MASS-003",
    ] {
        assert!(found.contains(id), "{id} in {found:?}");
    }
}

#[test]
fn not_a_description_is_an_error() {
    for text in ["{\"hello\": 1}", "openapi: 4.0.0\n", "[1, 2"] {
        assert!(audit("x", text, &[]).is_err(), "{text}");
    }
}

#[test]
fn the_ignore_file_needs_reasons() {
    let ig = parse_ignores("- {rule: PAL-AUTH-001, pointer: /paths/~1health, reason: the health check is public on purpose}\n").unwrap();
    let r = audit("vulnerable.yaml", &data("vulnerable.yaml"), &ig).unwrap();
    assert_eq!(r.ignored, 1);
    assert!(!r
        .findings
        .iter()
        .any(|f| f.rule == "PAL-AUTH-001" && f.pointer == "/paths/~1health/get"));
    // other rules at the same place are still reported
    assert!(r
        .findings
        .iter()
        .any(|f| f.rule == "PAL-RESP-002" && f.pointer == "/paths/~1health/get"));
    assert!(parse_ignores("- {rule: PAL-AUTH-001, reason: \"  \"}\n")
        .unwrap_err()
        .contains("no reason"));
    assert!(parse_ignores("- {rule: PAL-NOPE-1, reason: x}\n")
        .unwrap_err()
        .contains("no rule"));
}

fn golden(name: &str, got: &str) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&p, got).unwrap();
    }
    let want = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to write it, then review it)",
            p.display()
        )
    });
    assert_eq!(
        got, want,
        "{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)"
    );
}

#[test]
fn reports_match_their_golden_files() {
    let r = audit("vulnerable.yaml", &data("vulnerable.yaml"), &[]).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    golden("vulnerable.txt", &r.text());
    golden("vulnerable.json", &r.json());
    golden("vulnerable.sarif", &r.sarif().replace(version, "VERSION"));
    // SARIF: every result names a rule of the driver by index
    let v: serde_json::Value = serde_json::from_str(&r.sarif()).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    for res in v["runs"][0]["results"].as_array().unwrap() {
        let i = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], res["ruleId"]);
    }
    let html = r.html();
    assert!(
        html.starts_with("<!doctype html>") && html.contains("Score ") && !html.contains("<script")
    );
}

#[test]
fn url_and_privileged_fields_are_found_by_their_words_whatever_the_case_style() {
    let spec = r#"openapi: 3.0.3
info: {title: t, version: "1"}
servers: [{url: "https://api.example.com"}]
security: [{k: []}]
paths:
  /me:
    put:
      requestBody:
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              properties:
                image_url: {type: string, maxLength: 200}
                avatarUri: {type: string, maxLength: 200}
                callback: {type: string, maxLength: 200}
                isAdmin: {type: boolean}
                display_name: {type: string, maxLength: 50}
                urgency: {type: string, maxLength: 10}
      responses: {"204": {description: ok}, "401": {description: no}, "429": {description: slow}}
components:
  securitySchemes: {k: {type: apiKey, in: header, name: X-Key}}
"#;
    let r = audit("names.yaml", spec, &[]).unwrap();
    let at = |rule: &str| -> BTreeSet<String> {
        r.findings
            .iter()
            .filter(|f| f.rule == rule)
            .map(|f| f.pointer.rsplit('/').next().unwrap_or("").to_string())
            .collect()
    };
    let urls: BTreeSet<String> = ["image_url", "avatarUri", "callback"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(at("PAL-SSRF-001"), urls, "{}", r.text());
    assert_eq!(
        at("PAL-MASS-002"),
        ["isAdmin".to_string()].into_iter().collect(),
        "{}",
        r.text()
    );
}
