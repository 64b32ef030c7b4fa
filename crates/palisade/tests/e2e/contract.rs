//! The OpenAPI contract enforced on requests: unknown operations, typed path and query
//! parameters, undocumented parameters, content types, JSON limits, read-only properties and
//! schema violations refused with the field and the rule; valid requests untouched.

use http::Method;
use palisade_testkit::{HttpClient, MockUpstream, Reply};

use crate::support::{assert_problem, TestGateway};

fn config(upstream: &str, spec: &str) -> String {
    format!(
        r#"{admin}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{upstream}"]}}}}
routes:
  - name: api
    match: {{path_prefix: /api}}
    upstream: app
    strip_prefix: true
    public: true
    policies:
      - {{type: contract, spec: "{spec}", base_path: /api}}
"#,
        admin = crate::support::admin_yaml("127.0.0.1:0")
    )
}

async fn call(gw: &TestGateway, m: Method, path: &str, ct: Option<&str>, body: &str) -> Reply {
    let mut h = Vec::new();
    if let Some(c) = ct {
        h.push(("content-type", c));
    }
    HttpClient::h1()
        .send(m, &gw.url(path), &h, body.as_bytes())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_contract_refuses_what_the_description_does_not_allow() {
    let up = MockUpstream::start("app").await;
    let spec =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-openapi.json");
    let gw = TestGateway::start(&config(&up.url(), &spec.display().to_string())).await;
    let json = Some("application/json");

    // valid requests pass, untouched
    assert_eq!(
        call(&gw, Method::GET, "/api/users", None, "").await.status,
        200
    );
    assert_eq!(
        call(&gw, Method::GET, "/api/users/7", None, "")
            .await
            .status,
        200
    );
    let r = call(&gw, Method::POST, "/api/users", json, r#"{"name":"Ada"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.requests().last().unwrap().body.as_ref(),
        br#"{"name":"Ada"}"#
    );
    let valid = up.requests().len();

    // operations the description does not have
    assert_problem(
        &call(&gw, Method::GET, "/api/nope", None, "").await,
        404,
        "contract.unknown_operation",
    );
    let r = call(&gw, Method::DELETE, "/api/users", None, "").await;
    assert_problem(&r, 405, "contract.unknown_operation");
    assert_eq!(r.header("allow").as_deref(), Some("GET, POST"));

    // parameters, content types and bodies
    type Case<'a> = (
        Method,
        &'a str,
        Option<&'a str>,
        &'a str,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/api/users/abc",
            None,
            "",
            400,
            "contract.invalid_request",
            "path.id: must be integer",
        ),
        (
            Method::GET,
            "/api/users/0",
            None,
            "",
            400,
            "contract.invalid_request",
            "path.id: is too small",
        ),
        (
            Method::GET,
            "/api/users?debug=1",
            None,
            "",
            400,
            "contract.invalid_request",
            "query: has a parameter the operation does not document",
        ),
        (
            Method::POST,
            "/api/users",
            Some("text/plain"),
            "name=Ada",
            415,
            "contract.unsupported_media_type",
            "content type",
        ),
        (
            Method::POST,
            "/api/users",
            json,
            r#"{"name":"Ada","role":"admin"}"#,
            400,
            "contract.invalid_request",
            "body.role: is not a known property",
        ),
        (
            Method::POST,
            "/api/users",
            json,
            r#"{"name":5}"#,
            400,
            "contract.invalid_request",
            "body.name: must be string",
        ),
        (
            Method::POST,
            "/api/users",
            json,
            r#"{"name":"Ada""#,
            400,
            "contract.invalid_request",
            "body: is not valid JSON",
        ),
        (
            Method::POST,
            "/api/users",
            json,
            "",
            400,
            "contract.invalid_request",
            "body: is required",
        ),
    ];
    for (m, path, ct, body, status, code, detail) in cases {
        let r = call(&gw, m.clone(), path, ct, body).await;
        assert_problem(&r, status, code);
        assert!(r.text().contains(detail), "{m} {path} {body}: {}", r.text());
    }
    // JSON limits, checked before any value tree is built
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let r = call(&gw, Method::POST, "/api/users", json, &deep).await;
    assert_problem(&r, 400, "contract.invalid_request");
    assert!(
        r.text().contains("nesting is deeper than 32"),
        "{}",
        r.text()
    );
    // attacker data is never echoed
    let r = call(
        &gw,
        Method::POST,
        "/api/users",
        json,
        r#"{"name":"<script>x</script>","role":"admin"}"#,
    )
    .await;
    assert!(!r.text().contains("script"));
    assert_eq!(
        up.requests().len(),
        valid,
        "no refused request reached the upstream"
    );
}

#[tokio::test]
async fn monitor_mode_lets_undocumented_operations_through_and_lists_them() {
    let up = MockUpstream::start("app").await;
    // the demo description, with one operation deprecated (its calls are zombie calls)
    let demo =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-openapi.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo).unwrap()).unwrap();
    doc["paths"]["/users/{id}"]["get"]["deprecated"] = serde_json::Value::Bool(true);
    let dir = palisade_testkit::TempDir::new("inventory");
    let spec = dir.write("openapi.json", &doc.to_string());
    let yaml = config(&up.url(), &spec.display().to_string())
        .replace("{type: contract,", "{type: contract, mode: monitor,");
    let gw = TestGateway::start(&yaml).await;
    for p in [
        "/api/users/12/secrets",
        "/api/users/345/secrets",
        "/api/internal/debug",
        "/api/users/7",
        "/api/users/8",
        "/api/health",
    ] {
        assert_eq!(call(&gw, Method::GET, p, None, "").await.status, 200, "{p}");
    }
    let a = gw.gw.admin_addr().unwrap();
    let r = crate::support::admin_get(a, "/api/v1/inventory").await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let ops = &v["inventory"][0]["undocumented"];
    assert_eq!(v["inventory"][0]["route"], "api");
    let seen: Vec<(String, String, u64)> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["method"].as_str().unwrap().to_string(),
                o["path"].as_str().unwrap().to_string(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("GET".to_string(), "/api/internal/debug".to_string(), 1),
            ("GET".to_string(), "/api/users/{id}/secrets".to_string(), 2)
        ]
    );
    // documented operations with their calls, the deprecated one still called, the unused
    let inv = &v["inventory"][0];
    let calls = |m: &str, p: &str| {
        inv["documented"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["method"] == m && o["path"] == p)
            .map(|o| o["count"].as_u64().unwrap())
    };
    assert_eq!(calls("GET", "/users/{id}"), Some(2), "{inv}");
    assert_eq!(calls("GET", "/health"), Some(1));
    assert_eq!(calls("POST", "/users"), Some(0));
    assert_eq!(inv["zombie"][0]["path"], "/users/{id}", "{inv}");
    assert_eq!(inv["zombie"].as_array().unwrap().len(), 1);
    let unused: Vec<String> = inv["unused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["method"].as_str().unwrap(),
                o["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(unused, ["GET /users", "POST /users"]);
    let m = gw.metrics().await;
    assert!(m.contains("palisade_policy_decisions_total{kind=\"contract\",verdict=\"monitor_deny\",code=\"contract.unknown_operation\"} 3"), "{m}");
}

#[tokio::test]
async fn responses_are_checked_stripped_and_scrubbed() {
    let up = palisade_testkit::DocServer::start().await;
    up.set(
        "/users/1",
        r#"{"id":1,"name":"Ada","role":"admin","password":"hunter2","internal_notes":"vip"}"#,
    );
    up.set("/users/2", r#"{"id":"two","name":"Bob","role":"user"}"#);
    up.set(
        "/users",
        r#"{"users":[{"id":1,"name":"Ada","role":"admin","ssn":"123-45-6789"}]}"#,
    );
    up.set_status("/health", 418, r#"{"teapot":true}"#);
    up.set_status(
        "/users/3",
        404,
        "Traceback (most recent call last):\n  File \"app.py\", line 3\nKeyError: 3",
    );
    let spec =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-openapi.json");
    let yaml = config(&up.url(), &spec.display().to_string()).replace(
        "{type: contract,",
        "{type: contract, validate_responses: true,",
    );
    let gw = TestGateway::start(&yaml).await;

    // undeclared properties are stripped, nested ones too
    let r = call(&gw, Method::GET, "/api/users/1", None, "").await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"id": 1, "name": "Ada", "role": "admin"})
    );
    let r = call(&gw, Method::GET, "/api/users", None, "").await;
    assert!(!r.text().contains("ssn"), "{}", r.text());
    // a body that breaks its schema, and an undocumented status: 502
    assert_problem(
        &call(&gw, Method::GET, "/api/users/2", None, "").await,
        502,
        "contract.invalid_response",
    );
    assert_problem(
        &call(&gw, Method::GET, "/api/health", None, "").await,
        502,
        "contract.invalid_response",
    );
    // a stack trace in an error body is replaced (the status stays)
    let r = call(&gw, Method::GET, "/api/users/3", None, "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "contract.error_scrubbed");
    assert!(!r.text().contains("Traceback") && !r.text().contains("app.py"));

    // refuse instead of strip
    let gw2 = TestGateway::start(&yaml.replace(
        "validate_responses: true,",
        "validate_responses: true, undocumented_properties: refuse,",
    ))
    .await;
    assert_problem(
        &call(&gw2, Method::GET, "/api/users/1", None, "").await,
        502,
        "contract.invalid_response",
    );
}

#[tokio::test]
async fn descriptions_split_over_files_are_followed_and_remote_references_refused() {
    let up = MockUpstream::start("app").await;
    let dir = palisade_testkit::TempDir::new("contract-refs");
    dir.write(
        "api.yaml",
        r##"openapi: 3.0.3
info: {title: split, version: "1"}
paths:
  /things:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "schemas/thing.yaml#/Thing"}
      responses: {"200": {description: ok}}
"##,
    );
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    dir.write(
        "schemas/thing.yaml",
        r##"Thing:
  type: object
  additionalProperties: false
  required: [name]
  properties:
    name: {$ref: "#/Name"}
Name: {type: string, maxLength: 5}
"##,
    );
    let yaml = config(&up.url(), "api.yaml");
    let gw = TestGateway::start_in(dir, &yaml).await;
    let json = Some("application/json");
    assert_eq!(
        call(&gw, Method::POST, "/api/things", json, r#"{"name":"ok"}"#)
            .await
            .status,
        200
    );
    let r = call(
        &gw,
        Method::POST,
        "/api/things",
        json,
        r#"{"name":"far too long"}"#,
    )
    .await;
    assert_problem(&r, 400, "contract.invalid_request");
    assert!(r.text().contains("body.name: is too long"), "{}", r.text());

    // a remote reference is a config error, never a fetch
    let dir = palisade_testkit::TempDir::new("contract-remote");
    dir.write(
        "api.yaml",
        "openapi: 3.0.3\ninfo: {title: r, version: \"1\"}\npaths:\n  /x:\n    post:\n      requestBody: {content: {application/json: {schema: {$ref: \"https://evil.example/s.yaml#/S\"}}}}\n      responses: {\"200\": {description: ok}}\n",
    );
    let path = dir.write("p.yaml", &config(&up.url(), "api.yaml"));
    let err = palisade_config::load(&path).unwrap_err().to_string();
    assert!(err.contains("remote references are not followed"), "{err}");
}

#[tokio::test]
async fn form_and_multipart_bodies_are_validated_against_their_schemas() {
    let up = MockUpstream::start("app").await;
    let dir = palisade_testkit::TempDir::new("contract-forms");
    dir.write(
        "api.yaml",
        r##"openapi: 3.1.0
info: {title: forms, version: "1"}
paths:
  /login:
    post:
      requestBody:
        required: true
        content:
          application/x-www-form-urlencoded:
            schema:
              type: object
              additionalProperties: false
              required: [user, password]
              properties:
                user: {type: string, maxLength: 32}
                password: {type: string, maxLength: 64}
                remember: {type: boolean}
      responses: {"200": {description: ok}}
  /photos:
    post:
      requestBody:
        content:
          multipart/form-data:
            schema:
              type: object
              additionalProperties: false
              required: [file]
              properties:
                file: {type: string, format: binary}
                tags: {type: array, maxItems: 3, items: {type: string}}
                meta:
                  type: object
                  additionalProperties: false
                  properties: {width: {type: integer}}
      responses: {"200": {description: ok}}
"##,
    );
    let gw = TestGateway::start_in(dir, &config(&up.url(), "api.yaml")).await;
    let form = Some("application/x-www-form-urlencoded");
    let mp = Some("multipart/form-data; boundary=b0undary");
    let parts = |ps: &[(&str, Option<&str>, &str)]| {
        let mut s = String::new();
        for (name, ct, data) in ps {
            s.push_str(&format!(
                "--b0undary\r\nContent-Disposition: form-data; name=\"{name}\""
            ));
            if *name == "file" {
                s.push_str("; filename=\"cat.png\"");
            }
            if let Some(t) = ct {
                s.push_str(&format!("\r\nContent-Type: {t}"));
            }
            s.push_str(&format!("\r\n\r\n{data}\r\n"));
        }
        s + "--b0undary--\r\n"
    };

    let good = [
        (
            Method::POST,
            "/api/login",
            form,
            "user=ada&password=s3cret%21&remember=true".to_string(),
        ),
        (
            Method::POST,
            "/api/photos",
            mp,
            parts(&[
                ("file", Some("image/png"), "\u{89}PNG..."),
                ("tags", None, "cat"),
                ("tags", None, "cute"),
                ("meta", Some("application/json"), r#"{"width":640}"#),
            ]),
        ),
    ];
    for (m, path, ct, body) in good {
        let r = call(&gw, m, path, ct, &body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(
            up.requests().last().unwrap().body,
            body.as_bytes(),
            "untouched"
        );
    }
    let passed = up.requests().len();

    let bad = [
        (
            "/api/login",
            form,
            "user=ada".to_string(),
            "body: `password` is required",
        ),
        (
            "/api/login",
            form,
            "user=ada&password=x&remember=maybe".to_string(),
            "body.remember: must be boolean",
        ),
        (
            "/api/login",
            form,
            "user=ada&password=x&role=admin".to_string(),
            "body.role",
        ),
        (
            "/api/login",
            form,
            "user=ada&user=root&password=x".to_string(),
            "body.user: appears more than once",
        ),
        (
            "/api/login",
            form,
            "user=%zz&password=x".to_string(),
            "body: has a field that is not valid percent-encoded UTF-8",
        ),
        (
            "/api/photos",
            mp,
            parts(&[("tags", None, "a")]),
            "body: `file` is required",
        ),
        (
            "/api/photos",
            mp,
            parts(&[
                ("file", None, "x"),
                ("tags", None, "1"),
                ("tags", None, "2"),
                ("tags", None, "3"),
                ("tags", None, "4"),
            ]),
            "body.tags",
        ),
        (
            "/api/photos",
            mp,
            parts(&[
                ("file", None, "x"),
                ("meta", Some("application/json"), r#"{"width":"wide"}"#),
            ]),
            "body.meta.width: must be integer",
        ),
        (
            "/api/photos",
            mp,
            "--b0undary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nunterminated"
                .to_string(),
            "body: is not well-formed multipart/form-data",
        ),
        (
            "/api/photos",
            Some("multipart/form-data"),
            parts(&[("file", None, "x")]),
            "body: multipart without a valid boundary",
        ),
    ];
    for (path, ct, body, detail) in bad {
        let r = call(&gw, Method::POST, path, ct, &body).await;
        assert_problem(&r, 400, "contract.invalid_request");
        assert!(r.text().contains(detail), "{body:?}: {}", r.text());
    }
    assert_eq!(
        up.requests().len(),
        passed,
        "no invalid form reached the upstream"
    );
}

#[tokio::test]
async fn header_cookie_and_deep_object_parameters_are_checked_and_unknown_headers_refused() {
    let up = MockUpstream::start("app").await;
    let dir = palisade_testkit::TempDir::new("contract-params");
    dir.write(
        "api.yaml",
        r##"openapi: 3.0.3
info: {title: params, version: "1"}
components:
  securitySchemes:
    key: {type: apiKey, in: header, name: X-Api-Key}
paths:
  /items:
    get:
      parameters:
        - {name: X-Tenant, in: header, required: true, schema: {type: integer, minimum: 1}}
        - {name: session, in: cookie, schema: {type: string, pattern: "^[a-f0-9]{8}$"}}
        - name: filter
          in: query
          style: deepObject
          schema:
            type: object
            additionalProperties: false
            properties:
              color: {type: string, enum: [red, blue]}
              size: {type: integer}
        - {name: tags, in: query, schema: {type: array, maxItems: 2, items: {type: string}}}
      responses: {"200": {description: ok}}
"##,
    );
    let yaml = config(&up.url(), "api.yaml").replace(
        "base_path: /api}",
        "base_path: /api, refuse_unknown_headers: true}",
    );
    let gw = TestGateway::start_in(dir, &yaml).await;
    let get = |path: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let url = gw.url(path);
        async move {
            HttpClient::h1()
                .send(Method::GET, &url, &headers, b"")
                .await
                .unwrap()
        }
    };
    let base = vec![
        ("x-tenant", "7"),
        ("cookie", "session=deadbeef; theme=dark"),
        ("x-api-key", "k"),
        ("user-agent", "test/1"),
    ];
    let ok = get(
        "/api/items?filter[color]=red&filter[size]=2&tags=a&tags=b",
        base.clone(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());

    let with = |extra: (&'static str, &'static str)| {
        let mut h: Vec<_> = base
            .iter()
            .filter(|(k, _)| *k != extra.0)
            .cloned()
            .collect();
        h.push(extra);
        h
    };
    let cases = [
        (
            "/api/items",
            base.iter()
                .filter(|(k, _)| *k != "x-tenant")
                .cloned()
                .collect(),
            "header.X-Tenant: is required",
        ),
        (
            "/api/items",
            with(("x-tenant", "abc")),
            "header.X-Tenant: must be integer",
        ),
        ("/api/items", with(("x-tenant", "0")), "header.X-Tenant"),
        (
            "/api/items",
            with(("cookie", "session=NOT-HEX")),
            "cookie.session",
        ),
        (
            "/api/items?filter[color]=green",
            base.clone(),
            "query.filter.color",
        ),
        (
            "/api/items?filter[size]=big",
            base.clone(),
            "query.filter.size: must be integer",
        ),
        (
            "/api/items?filter[shape]=round",
            base.clone(),
            "query.filter",
        ),
        (
            "/api/items?tags=a&tags=b&tags=c",
            base.clone(),
            "query.tags",
        ),
        (
            "/api/items",
            with(("x-debug", "1")),
            "header: has a header the operation does not document",
        ),
    ];
    for (path, headers, detail) in cases {
        let r = get(path, headers).await;
        assert_problem(&r, 400, "contract.invalid_request");
        assert!(r.text().contains(detail), "{path} {detail}: {}", r.text());
    }
}

/// Nothing of the description is dropped silently: a pattern the engine cannot compile and
/// a keyword the validator does not implement make `validate` name their place; a Unicode
/// pattern is enforced; `oneOf` is exclusive; `multipleOf` and `uniqueItems` hold.
#[tokio::test]
async fn every_schema_rule_is_enforced_or_named_by_validate() {
    let dir = palisade_testkit::TempDir::new("contract-coverage");
    let spec = |extra: &str| {
        format!(
            r#"{{"openapi": "3.0.3", "info": {{"title": "t", "version": "1"}},
  "paths": {{"/people": {{"post": {{
    "requestBody": {{"required": true, "content": {{"application/json": {{"schema": {{
      "type": "object", "required": ["name"],
      "properties": {{
        "name": {{"type": "string", "pattern": "^\\p{{L}}+$"}},
        "step": {{"type": "number", "multipleOf": 5}},
        "tags": {{"type": "array", "uniqueItems": true}},
        "id": {{"oneOf": [{{"type": "integer"}}, {{"type": "number"}}]}}{extra}
      }}}}}}}}}},
    "responses": {{"200": {{"description": "ok"}}}}}}}}}}}}"#
        )
    };
    let yaml = |up: &str| {
        format!(
            r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{up}"]}}}}
routes:
  - name: api
    match: {{path_prefix: /}}
    upstream: app
    public: true
    policies: [{{type: contract, spec: openapi.json}}]
"#
        )
    };
    dir.write(
        "openapi.json",
        &spec(r#", "code": {"type": "string", "pattern": "^(?!admin).*$", "unevaluatedProperties": false}"#),
    );
    let cfg = dir.write("palisade.yaml", &yaml("http://127.0.0.1:9"));
    let out = crate::support::bin()
        .arg("validate")
        .arg(&cfg)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("properties/code/pattern: the pattern cannot be enforced: look-around"),
        "{text}"
    );
    assert!(
        text.contains(
            "properties/code/unevaluatedProperties: `unevaluatedProperties` is not enforced"
        ),
        "{text}"
    );

    let up = MockUpstream::start("app").await;
    dir.write("openapi.json", &spec(""));
    let gw = TestGateway::start_in(dir, &yaml(&up.url())).await;
    let json = Some("application/json");
    let cases = [
        (r#"{"name": "Zoë"}"#, 200),
        (r#"{"name": "Zoë2"}"#, 400),
        (r#"{"name": "a", "step": 15}"#, 200),
        (r#"{"name": "a", "step": 12}"#, 400),
        (r#"{"name": "a", "tags": [1, 1]}"#, 400),
        (r#"{"name": "a", "id": 2.5}"#, 200),
        (r#"{"name": "a", "id": 2}"#, 400),
    ];
    for (body, status) in cases {
        let r = call(&gw, Method::POST, "/people", json, body).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.text());
    }
}
