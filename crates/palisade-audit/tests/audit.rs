//! The audit on purpose-built descriptions: a vulnerable one that trips every security and
//! data rule, its fixed version that trips none, a broken one that trips every format rule,
//! a Swagger 2.0 one, 3.1 webhooks; one finding per cause; the score's proportions; golden
//! reports (text, JSON, SARIF); the ignore file.
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
    // every rule but the format's (broken.yaml) and the webhooks' (webhooks.yaml, 3.1 only)
    let all: BTreeSet<&str> = RULES
        .iter()
        .map(|r| r.id)
        .filter(|id| !id.starts_with("PAL-STRUCT") && *id != "PAL-CONS-002")
        .collect();
    assert_eq!(rules_found(&r), all);
    assert!(r.valid);
    assert!(r.score < 40, "score {}", r.score);
    let at = |rule: &str| r.pointers_of(rule);
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
    assert_eq!(at("PAL-FLOW-001"), ["/paths/~1password~1reset/post"]);
    assert_eq!(
        at("PAL-CORS-001"),
        ["/paths/~1password~1reset/post/responses/204/headers/Access-Control-Allow-Origin"]
    );
    assert_eq!(
        at("PAL-CONS-001"),
        ["/paths/~1orders/post/callbacks/shipped/{$request.body#~1callback_url}"]
    );
    // one cause, one finding: the flow rule, not also "no 429", on the password reset
    assert!(!at("PAL-RESP-002").contains(&"/paths/~1password~1reset/post"));
    // every finding has its line and column, and no message has an empty name
    for f in &r.findings {
        assert!(f.line.is_some() && f.column.is_some(), "{f:?}");
        assert!(!f.message.contains("``"), "{f:?}");
    }
}

#[test]
fn the_format_is_checked_first_and_an_invalid_description_is_not_scored() {
    let r = audit("broken.yaml", &data("broken.yaml"), &[]).unwrap();
    let structure: BTreeSet<&str> = RULES
        .iter()
        .map(|r| r.id)
        .filter(|id| id.starts_with("PAL-STRUCT"))
        .collect();
    let found: BTreeSet<&str> = rules_found(&r)
        .into_iter()
        .filter(|id| id.starts_with("PAL-STRUCT"))
        .collect();
    assert_eq!(found, structure, "{}", r.text());
    assert!(!r.valid);
    assert_eq!((r.score, r.data_score), (0, 0));
    assert!(r.text().contains("not scored"), "{}", r.text());
    let msg = |rule: &str| -> Vec<String> {
        r.findings
            .iter()
            .filter(|f| f.rule == rule)
            .map(|f| format!("{} {}", f.pointer, f.message))
            .collect()
    };
    let s1 = msg("PAL-STRUCT-001").join("\n");
    for want in [
        "/info `version` is required",
        "/paths/c path `c` must start with `/`",
        "/paths/~1b/post/responses `responses` must be an object, not a list",
        "`name` is required",
    ] {
        assert!(s1.contains(want), "{want} in {s1}");
    }
    assert_eq!(
        msg("PAL-STRUCT-002"),
        ["/paths/~1a~1{id}/get/responses/200/content/application~1json/schema `#/components/schemas/Missing` resolves to nothing"]
    );
    assert_eq!(
        msg("PAL-STRUCT-009"),
        ["/paths/~1b/get/securty `securty` is not a field of an operation (did you mean `security`?)"]
    );
    // a cycle is one finding, at its first member; references into it are not repeated
    let cycle = msg("PAL-STRUCT-003");
    assert_eq!(cycle.len(), 1, "{cycle:?}");
    assert!(
        cycle[0].starts_with("/components/schemas/Loop1 "),
        "{cycle:?}"
    );
    // the cases of the issue: `paths` of the wrong type, or missing, never score 100
    for (text, want) in [
        ("openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: [1, 2]\n", "`paths` must be an object of path items, not a list"),
        ("openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: null\n", "`paths` must be an object of path items, not null"),
        ("openapi: 3.0.3\ninfo: {title: t, version: '1'}\n", "`paths` is required in the document"),
        ("swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {/a: {get: {responses: {'200': {description: ok, schema: {$ref: '#/definitions/Nope'}}}}}}\n", "resolves to nothing"),
        ("swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {}\nsecurityDefinitions: 5\n", "`securityDefinitions` must be an object of security schemes, not a number"),
        ("openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\ncomponents: {schemas: [1]}\n", "`schemas` must be an object, not a list"),
    ] {
        let r = audit("x.yaml", text, &[]).unwrap();
        assert!(!r.valid, "{text}");
        assert_eq!(r.score, 0, "{text}");
        assert!(r.findings.iter().any(|f| f.message.contains(want)), "{want}: {}", r.text());
    }
    // 3.1 may have only webhooks or components
    let r = audit(
        "x.yaml",
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\ncomponents: {}\n",
        &[],
    )
    .unwrap();
    assert!(r.valid, "{}", r.text());
}

#[test]
fn webhooks_are_audited_as_what_the_api_sends() {
    let r = audit("webhooks.yaml", &data("webhooks.yaml"), &[]).unwrap();
    assert_eq!(r.operations, 2);
    let found: Vec<(&str, &str)> = r
        .findings
        .iter()
        .map(|f| (f.rule, f.pointer.as_str()))
        .collect();
    assert!(
        found.contains(&("PAL-CONS-002", "/webhooks/orderPaid/post")),
        "{found:?}"
    );
    // the signed one is not reported; a secret in a payload the API sends is
    assert!(!found
        .iter()
        .any(|(r, p)| *r == "PAL-CONS-002" && p.contains("orderShipped")));
    assert!(found.contains(&(
        "PAL-MASS-003",
        "/webhooks/orderPaid/post/requestBody/content/application~1json/schema/properties/client_secret"
    )));
    // a webhook payload is not client input: no input bounds, no "requires no credential"
    for rule in [
        "PAL-AUTH-001",
        "PAL-LIMIT-001",
        "PAL-MASS-001",
        "PAL-RATE-001",
    ] {
        assert!(!found.iter().any(|(r, _)| *r == rule), "{rule}: {found:?}");
    }
}

#[test]
fn a_shared_definition_is_reported_once_with_its_uses() {
    let mut paths = String::new();
    for i in 0..5 {
        paths.push_str(&format!(
            "  /items{i}/{{itemId}}:\n    get:\n      parameters: [{{$ref: '#/components/parameters/ItemId'}}, {{$ref: '#/components/parameters/Q'}}]\n      responses:\n        '200': {{description: ok, content: {{application/json: {{schema: {{$ref: '#/components/schemas/Item'}}}}}}}}\n        '401': {{description: no}}\n        '429': {{description: slow}}\n        default: {{description: error}}\n    put:\n      parameters: [{{$ref: '#/components/parameters/ItemId'}}]\n      requestBody: {{$ref: '#/components/requestBodies/NewItem'}}\n      responses: {{'204': {{description: ok}}, '401': {{description: no}}, '429': {{description: slow}}, default: {{description: error}}}}\n"
        ));
    }
    let spec = format!(
        "openapi: 3.0.3\ninfo: {{title: t, version: '1'}}\nservers: [{{url: 'https://api.example.com'}}]\nsecurity: [{{k: []}}]\npaths:\n{paths}components:\n  securitySchemes: {{k: {{type: apiKey, in: header, name: X-Key}}}}\n  parameters:\n    ItemId: {{name: itemId, in: path, required: true, schema: {{type: integer}}}}\n    Q: {{name: q, in: query, schema: {{type: string}}}}\n  requestBodies:\n    NewItem: {{content: {{application/json: {{schema: {{$ref: '#/components/schemas/NewItem'}}}}}}}}\n  schemas:\n    NewItem: {{type: object, additionalProperties: false, properties: {{name: {{type: string}}, tags: {{type: array, maxItems: 5, items: {{$ref: '#/components/schemas/Tag'}}}}}}}}\n    Tag: {{type: string}}\n    Item: {{type: object, properties: {{password: {{type: string}}}}}}\n"
    );
    let r = audit("shared.yaml", &spec, &[]).unwrap();
    let of = |rule: &str| -> Vec<&palisade_audit::Finding> {
        r.findings.iter().filter(|f| f.rule == rule).collect()
    };
    // the shared path parameter: one finding at its definition, used by all ten operations
    let bola = of("PAL-BOLA-001");
    assert_eq!(bola.len(), 1, "{}", r.text());
    assert_eq!(bola[0].pointer, "/components/parameters/ItemId");
    assert_eq!(bola[0].uses.len(), 10);
    // its schema and the query parameter's: at the definitions too
    let limits: BTreeSet<&str> = of("PAL-LIMIT-003")
        .iter()
        .chain(of("PAL-LIMIT-001").iter())
        .map(|f| f.pointer.as_str())
        .collect();
    assert_eq!(
        limits,
        [
            "/components/parameters/ItemId/schema",
            "/components/parameters/Q/schema",
            "/components/schemas/NewItem/properties/name",
            "/components/schemas/Tag",
        ]
        .into_iter()
        .collect(),
        "{}",
        r.text()
    );
    let q = of("PAL-LIMIT-001")
        .into_iter()
        .find(|f| f.pointer.contains("/Q/"))
        .unwrap();
    assert_eq!(q.uses.len(), 5, "{q:?}");
    // a schema reached through a shared request body: once, with the five PUTs
    let tag = of("PAL-LIMIT-001")
        .into_iter()
        .find(|f| f.pointer == "/components/schemas/Tag")
        .unwrap();
    assert_eq!(tag.uses.len(), 5);
    assert!(
        tag.uses.iter().all(|u| u.starts_with("PUT ")),
        "{:?}",
        tag.uses
    );
    let secret = of("PAL-MASS-003");
    assert_eq!(secret.len(), 1);
    assert_eq!(secret[0].uses.len(), 5);
    // no two findings of one rule at one node
    let keys: BTreeSet<(&str, &str)> = r
        .findings
        .iter()
        .map(|f| (f.rule, f.pointer.as_str()))
        .collect();
    assert_eq!(keys.len(), r.findings.len());
}

#[test]
fn the_score_weighs_the_share_of_operations_affected() {
    let spec = |open: usize| {
        let mut paths = String::new();
        for i in 0..40 {
            let sec = if i < open { "      security: []\n" } else { "" };
            paths.push_str(&format!("  /r{i}:\n    get:\n{sec}      responses: {{'200': {{description: ok}}, '401': {{description: no}}, '429': {{description: slow}}, default: {{description: error}}}}\n"));
        }
        format!("openapi: 3.0.3\ninfo: {{title: t, version: '1'}}\nservers: [{{url: 'https://api.example.com'}}]\nsecurity: [{{k: []}}]\npaths:\n{paths}components:\n  securitySchemes: {{k: {{type: apiKey, in: header, name: X-Key}}}}\n")
    };
    let score = |open: usize| audit("s.yaml", &spec(open), &[]).unwrap();
    let (one, half, all) = (score(1), score(20), score(40));
    assert!(
        one.score > half.score && half.score > all.score,
        "{} {} {}",
        one.score,
        half.score,
        all.score
    );
    assert!(
        one.score - all.score >= 20,
        "one open {} vs all open {}",
        one.score,
        all.score
    );
    // the gain of the fix is what the score would be without the rule's findings
    let auth = all.rules.iter().find(|x| x.rule == "PAL-AUTH-001").unwrap();
    assert_eq!(auth.operations, 40);
    let none = score(0);
    assert_eq!(all.score + auth.gain, none.score);
    assert_eq!(
        none.score - one.score,
        one.rules
            .iter()
            .find(|x| x.rule == "PAL-AUTH-001")
            .unwrap()
            .gain
    );
}

#[test]
fn names_in_reports_cannot_drive_a_terminal() {
    let spec = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    post:\n      requestBody: {content: {application/json: {schema: {type: object, properties: {\"x\\e[31mred\": {type: string}}}}}}\n      responses: {'200': {description: ok}}\n";
    let r = audit("esc.yaml", spec, &[]).unwrap();
    let text = r.text();
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("x\\u{1b}[31mred"), "{text}");
    assert!(!r.html().contains('\u{1b}'));
}

#[test]
fn references_to_other_files_are_followed_and_located_in_their_file() {
    let dir = std::env::temp_dir().join(format!("palisade-audit-ext-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::write(
        dir.join("schemas/user.yaml"),
        "User:\n  type: object\n  additionalProperties: false\n  properties:\n    name:\n      type: string\n    role: {$ref: 'common.yaml#/Role'}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("schemas/common.yaml"),
        "Role: {type: string, maxLength: 10}\n",
    )
    .unwrap();
    let main = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /u:\n    post:\n      requestBody: {content: {application/json: {schema: {$ref: 'schemas/user.yaml#/User'}}}}\n      responses: {'200': {description: ok}}\n";
    // read from a file, the references are followed and findings name the file they are in
    let r = palisade_audit::audit_in("api.yaml", main, Some(&dir), &[]).unwrap();
    let f = r
        .findings
        .iter()
        .find(|f| f.rule == "PAL-LIMIT-001")
        .expect("the string in user.yaml");
    assert_eq!(f.pointer, "schemas/user.yaml#/User/properties/name");
    assert_eq!((f.line, f.column), (Some(5), Some(5)));
    let role = r
        .findings
        .iter()
        .find(|f| f.rule == "PAL-MASS-002")
        .expect("role");
    assert_eq!(role.pointer, "schemas/user.yaml#/User/properties/role");
    // read without its folder, an external reference is a finding, never silently dropped
    let r = audit("api.yaml", main, &[]).unwrap();
    assert!(!r.valid);
    assert!(r
        .findings
        .iter()
        .any(|f| f.rule == "PAL-STRUCT-002" && f.message.contains("another file")));
    let _ = std::fs::remove_dir_all(&dir);
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
    // 2.0 keeps the type of a non-body parameter inline: no pointer into a `/schema` it has not
    let doc: serde_json::Value = serde_json::from_str(&data("swagger2.json")).unwrap();
    for f in &r.findings {
        assert!(doc.pointer(&f.pointer).is_some(), "{f:?} does not resolve");
        assert!(f.line.is_some(), "{f:?}");
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
    golden(
        "vulnerable.sarif",
        &r.sarif(None).replace(version, "VERSION"),
    );
    golden("vulnerable.html", &r.html());
    let b = audit("broken.yaml", &data("broken.yaml"), &[]).unwrap();
    golden("broken.txt", &b.text());
    // SARIF: every result names a rule of the driver by index
    let v: serde_json::Value = serde_json::from_str(&r.sarif(None)).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    for res in v["runs"][0]["results"].as_array().unwrap() {
        let i = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], res["ruleId"]);
    }
    let html = r.html();
    assert!(
        html.starts_with("<!doctype html>")
            && html.contains("Security <b>")
            && html.contains("By operation")
            && !html.contains("<script")
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
