use super::*;

fn load_yaml(text: &str) -> Result<Config, ConfigErrors> {
    load_str(Path::new("test.yaml"), text)
}

const GOOD: &str = r#"
admin:
  listen: 127.0.0.1:9901
listeners:
  - name: public
    listen: 127.0.0.1:8080
upstreams:
  app:
    targets: [http://127.0.0.1:3000, http://127.0.0.1:3001]
    balance: least_requests
    timeouts: {connect: 1s, request: 250ms}
routes:
  - name: users
    match: {path: "/users/{id}", methods: [get, PUT]}
    upstream: app
    public: true
    policies:
      - type: headers
      - type: ip_filter
        mode: monitor
        allow: [10.0.0.0/8]
  - name: api
    match: {path_prefix: /api/}
    upstream: app
    strip_prefix: true
    public: true
  - name: health
    match: {path: /health}
    upstream: app
    public: true
"#;

#[test]
fn builds_a_good_config() {
    let c = load_yaml(GOOD).unwrap();
    assert_eq!(c.admin, Some("127.0.0.1:9901".parse().unwrap()));
    assert_eq!(c.upstreams[0].targets.len(), 2);
    assert_eq!(c.upstreams[0].request_timeout, Duration::from_millis(250));
    // most specific first
    let names: Vec<_> = c.routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["health", "users", "api"]);
    let users = &c.routes[1];
    assert_eq!(users.methods.as_ref().unwrap(), &[Method::GET, Method::PUT]);
    // stage order: network before transform, whatever the file order
    assert_eq!(users.policies[0].policy.kind(), "ip_filter");
    assert_eq!(users.policies[0].mode, Mode::Monitor);
    assert_eq!(c.routes[2].strip_prefix.as_deref(), Some("/api"));
}

#[test]
fn path_matching() {
    let t = PathMatch::Template(vec![
        Segment::Literal("users".into()),
        Segment::Param("id".into()),
    ]);
    assert!(t.matches("/users/42"));
    assert!(!t.matches("/users/"));
    assert!(!t.matches("/users/42/x"));
    assert!(!t.matches("/users"));
    let p = PathMatch::Prefix("/api".into());
    assert!(p.matches("/api"));
    assert!(p.matches("/api/x"));
    assert!(!p.matches("/apix"));
    assert!(PathMatch::Prefix("/".into()).matches("/anything"));
    let h = HostMatch::Wildcard(".example.com".into());
    assert!(h.matches("a.example.com"));
    assert!(h.matches("A.EXAMPLE.com"));
    assert!(!h.matches("example.com"));
}

#[test]
fn reports_every_error_with_line_and_path() {
    let text = r#"listeners:
  - name: public
    listen: nowhere
    colour: blue
upstreams:
  app:
    targets: [ftp://x]
routes:
  - name: r1
    upstream: missing
  - name: r2
    upstream: app
    match: {path: "users"}
    policies:
      - type: ip_filter
        allow: [10.0.0.0/8, banana]
      - type: teleport
bogus: 1
"#;
    let errs = load_yaml(text).unwrap_err().0;
    let got: Vec<(Option<usize>, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
    let expect = [
        (Some(4), "listeners[0].colour"),
        (Some(7), "upstreams.app.targets[0]"),
        (Some(10), "routes[0].upstream"),
        (Some(13), "routes[1].match.path"),
        (Some(16), "routes[1].policies[0].allow[1]"),
        (Some(17), "routes[1].policies[1].type"),
        (Some(18), "bogus"),
    ];
    for e in &expect {
        assert!(
            got.contains(e),
            "missing {e:?} in {got:?}\n{}",
            ConfigErrors(errs.clone())
        );
    }
    // unknown listener field and unknown policy type name what is allowed
    let colour = errs.iter().find(|e| e.path.ends_with("colour")).unwrap();
    assert!(
        colour.message.contains("expected one of"),
        "{}",
        colour.message
    );
    let shown = ConfigErrors(errs.clone()).to_string();
    assert!(
        shown.contains("test.yaml:10: routes[0].upstream: no upstream named `missing`"),
        "{shown}"
    );
}

#[test]
fn syntax_error_names_the_line() {
    let e = load_yaml("listeners:\n  - name: [unclosed\n").unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(e.0[0].line.is_some());
    assert!(e.0[0].message.starts_with("YAML syntax"));
}

#[test]
fn tls_files_are_checked() {
    let text = r#"listeners:
  - name: tls
    listen: 127.0.0.1:8443
    tls:
      certificates: [{cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}]
    hsts: {max_age: 1d, include_subdomains: true}
upstreams:
  app: {targets: ["https://backend:8443"]}
routes:
  - {name: r, upstream: app}
"#;
    let errs = load_yaml(text).unwrap_err().0;
    let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"listeners[0].tls.certificates[0]"),
        "{paths:?}"
    );
    assert!(paths.contains(&"upstreams.app.tls"), "{paths:?}");
}

#[test]
fn tls_with_generated_certificates() {
    let dir = palisade_testkit::TempDir::new("cfg-tls");
    let ca = palisade_testkit::TestCa::new();
    let (cert, key) = ca.write_server_cert(dir.path(), "srv", &["api.example.com"]);
    let text = format!(
        "listeners:\n  - name: tls\n    listen: 127.0.0.1:8443\n    tls:\n      certificates: [{{cert: {}, key: {}}}]\n    hsts: {{max_age: 1d}}\nupstreams:\n  app: {{targets: [\"http://127.0.0.1:1\"]}}\nroutes:\n  - {{name: r, upstream: app, public: true}}\n",
        cert.display(),
        key.display()
    );
    let c = load_yaml(&text).unwrap();
    assert!(c.listeners[0].tls.is_some());
    assert_eq!(c.listeners[0].hsts.as_ref().unwrap(), "max-age=86400");
    assert!(c.watched_files.contains(&cert));
}

#[test]
fn routes_are_denied_by_default_and_identity_settings_are_checked() {
    let text = r#"
listeners: [{name: l, listen: "127.0.0.1:8080"}]
upstreams: {app: {targets: ["http://127.0.0.1:1"]}}
consumers:
  - name: acme
    api_keys: [{hash: "pk_live_plaintext"}]
issuers:
  corp: {issuer: "https://idp.example.com"}
  shared: {issuer: "https://idp.example.com", jwks_uri: "https://idp.example.com/jwks", secret_env: PALISADE_TEST_NO_SUCH_VAR}
routes:
  - name: open
    upstream: app
  - name: both
    upstream: app
    public: true
    policies: [{type: api_key}]
  - name: jwt
    upstream: app
    policies: [{type: jwt, issuers: [nobody]}]
"#;
    let errs = load_yaml(text).unwrap_err().0;
    let got: Vec<(&str, &str)> = errs
        .iter()
        .map(|e| (e.path.as_str(), e.message.split(':').next().unwrap_or("")))
        .collect();
    let has = |path: &str, start: &str| {
        errs.iter()
            .any(|e| e.path == path && e.message.starts_with(start))
    };
    assert!(
        has("consumers[0].api_keys[0].hash", "must be `sha256:`"),
        "{got:?}"
    );
    assert!(
        has("issuers.corp.audiences", "list the audiences"),
        "{got:?}"
    );
    assert!(
        has("issuers.shared.jwks_uri", "use one key source"),
        "{got:?}"
    );
    assert!(
        has("issuers.shared.secret_env", "the environment variable"),
        "{got:?}"
    );
    assert!(
        has(
            "routes[0].policies",
            "the route has no authentication policy"
        ),
        "{got:?}"
    );
    assert!(
        has(
            "routes[1].public",
            "a public route takes no authentication policy"
        ),
        "{got:?}"
    );
    assert!(
        has(
            "routes[2].policies[0].issuers[0]",
            "no issuer named `nobody`"
        ),
        "{got:?}"
    );
    // the plaintext key is never echoed back
    assert!(!errs.iter().any(|e| e.message.contains("pk_live_plaintext")));
}

#[test]
fn weakening_options_are_warned_about() {
    let (_, hash) = palisade_identity::consumers::new_key().unwrap();
    let text = format!(
        r#"
listeners: [{{name: l, listen: "127.0.0.1:8080"}}]
upstreams: {{app: {{targets: ["http://127.0.0.1:1"]}}}}
consumers: [{{name: acme, api_keys: [{{hash: "{hash}"}}]}}]
issuers:
  dev: {{issuer: "http://127.0.0.1:9", dangerous_allow_http: true, dangerous_skip_audience: true}}
routes:
  - name: r
    upstream: app
    policies: [{{type: api_key, query: api_key}}]
"#
    );
    let c = load_yaml(&text).unwrap();
    let paths: Vec<&str> = c.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "issuers.dev.dangerous_allow_http",
            "issuers.dev.dangerous_skip_audience",
            "routes[0].policies[0].query"
        ]
    );
}

#[test]
fn consumer_problems_point_at_their_own_lines_when_an_earlier_one_fails() {
    let errs = load_yaml(
        r#"listeners: [{name: public, listen: "127.0.0.1:0"}]
upstreams: {app: {targets: ["http://127.0.0.1:1"]}}
consumers:
  - name: a
    api_keys: [{hash: "sha256:nothex"}]
  - name: b
    grups: [x]
  - name: a
routes:
  - {name: all, match: {path_prefix: /}, upstream: app, public: true}
"#,
    )
    .unwrap_err();
    let got: Vec<(Option<usize>, String)> =
        errs.0.iter().map(|e| (e.line, e.path.clone())).collect();
    assert_eq!(
        got,
        [
            (Some(5), "consumers[0].api_keys[0].hash".to_string()),
            (Some(7), "consumers[1].grups".to_string()),
            (Some(8), "consumers[2].name".to_string()),
        ]
    );
}

#[test]
fn route_paths_and_hosts_must_be_canonical() {
    let errs = load_yaml(
        r#"listeners: [{name: public, listen: "127.0.0.1:0"}]
upstreams: {app: {targets: ["http://127.0.0.1:1"]}}
routes:
  - {name: a, match: {path: "/a%20b"}, upstream: app, public: true}
  - {name: b, match: {path: "/a//b"}, upstream: app, public: true}
  - {name: c, match: {path_prefix: "/x/../y"}, upstream: app, public: true}
  - {name: d, match: {path: "/users/"}, upstream: app, public: true}
  - {name: e, match: {host: "bücher.example", path_prefix: /}, upstream: app, public: true}
  - {name: f, match: {host: "API.Example.COM.", path: "/users/{id}"}, upstream: app, public: true}
  - {name: g, match: {path_prefix: "/api/"}, upstream: app, public: true}
"#,
    )
    .unwrap_err();
    let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[0].match.path",
            "routes[1].match.path",
            "routes[2].match.path_prefix",
            "routes[3].match.path",
            "routes[4].match.host",
        ]
    );
    assert!(errs.0[4].message.contains("xn--"), "{}", errs.0[4].message);
}

#[test]
fn later_routes_listeners_and_policies_keep_their_lines_after_one_fails() {
    let errs = load_yaml(
        r#"listeners:
  - {name: public, listen: "127.0.0.1:0", bogus: 1}
  - {name: second, listen: "not an address"}
upstreams: {app: {targets: ["http://127.0.0.1:1"]}}
routes:
  - {name: a, match: {path_prefix: /a}, upstream: app, public: true, typo: 1}
  - name: b
    match: {path_prefix: /b}
    upstream: nowhere
    public: true
    policies:
      - {type: ip_filter, allow: [nope]}
      - {type: nosuchpolicy}
      - {type: ip_filter, allow: [also-bad]}
"#,
    )
    .unwrap_err();
    let got: Vec<(Option<usize>, String)> =
        errs.0.iter().map(|e| (e.line, e.path.clone())).collect();
    let has = |line: usize, path: &str| {
        got.iter()
            .any(|(l, p)| *l == Some(line) && p.starts_with(path))
    };
    assert!(has(2, "listeners[0]"), "{got:?}");
    assert!(has(3, "listeners[1]"), "{got:?}");
    assert!(has(6, "routes[0]"), "{got:?}");
    assert!(has(9, "routes[1].upstream"), "{got:?}");
    assert!(has(12, "routes[1].policies[0]"), "{got:?}");
    assert!(has(13, "routes[1].policies[1]"), "{got:?}");
    assert!(has(14, "routes[1].policies[2]"), "{got:?}");
}

#[test]
fn a_uri_limit_the_parser_cannot_honour_is_refused() {
    let cfg = |n: usize| {
        GOOD.replace(
            "admin:\n",
            &format!("limits: {{max_uri_bytes: {n}}}\nadmin:\n"),
        )
    };
    assert!(load_yaml(&cfg(65_534)).is_ok());
    let e = load_yaml(&cfg(65_535)).unwrap_err().to_string();
    assert!(e.contains("limits.max_uri_bytes: at most 65534"), "{e}");
    assert!(e.contains("test.yaml:2:"), "{e}");
}

#[test]
fn secrets_come_from_env_or_files_never_from_the_config_text() {
    let dir = std::env::temp_dir().join(format!("palisade-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seal.hex"), format!("{}\n", "ab".repeat(32))).unwrap();
    std::env::set_var("PALISADE_TEST_ISSUER_SECRET", "s".repeat(40));
    let yaml = |issuer_secret: &str, seal_key: &str| {
        format!(
            r#"
listeners: [{{name: public, listen: 127.0.0.1:8080}}]
upstreams: {{app: {{targets: [http://127.0.0.1:3000]}}}}
issuers:
  local:
    issuer: https://issuer.test
    audiences: [api]
    {issuer_secret}
routes:
  - name: api
    match: {{path_prefix: /}}
    upstream: app
    policies:
      - type: jwt
        issuers: [local]
      - type: sealed_session
        {seal_key}
"#
        )
    };
    let path = dir.join("palisade.yaml");
    let ok = yaml(
        r#"secret: "${env:PALISADE_TEST_ISSUER_SECRET}""#,
        r#"key: "${file:seal.hex}""#,
    );
    load_str(&path, &ok).unwrap();
    // a literal, both fields at once, a missing file: each refused on its line, no value shown
    let cases = [
        (
            yaml(r#"secret: "ssssssssssssssssssssssssssssssssssssssss""#, r#"key: "${file:seal.hex}""#),
            "${env:NAME}",
        ),
        (
            yaml(
                "secret: \"${env:PALISADE_TEST_ISSUER_SECRET}\"\n    secret_env: PALISADE_TEST_ISSUER_SECRET",
                r#"key: "${file:seal.hex}""#,
            ),
            "give the secret once",
        ),
        (
            yaml(r#"secret: "${env:PALISADE_TEST_ISSUER_SECRET}""#, r#"key: "${file:missing.hex}""#),
            "cannot read",
        ),
    ];
    for (text, want) in cases {
        let e = load_str(&path, &text).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
        assert!(!e.contains("ssssssss"), "{e}");
        assert!(e.contains("palisade.yaml:"), "{e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn routes_by_listener_and_upstreams_by_spiffe_id() {
    let yaml = r#"
listeners:
  - {name: public, listen: 127.0.0.1:0}
  - {name: internal, listen: 127.0.0.1:0}
upstreams:
  app: {targets: [http://127.0.0.1:3000]}
  peer:
    targets: [https://127.0.0.1:3001]
    tls: {ca: ca.pem, peer_ids: ["spiffe://td/sa/orders", "https://orders", "spiffe://td/*/x*"]}
routes:
  - {name: a, match: {listener: internal}, upstream: app, public: true}
  - {name: b, match: {listener: admin}, upstream: app, public: true}
"#;
    let errs = load_yaml(yaml).unwrap_err().0;
    let says = |path: &str, what: &str| {
        errs.iter()
            .any(|e| e.path == path && e.message.contains(what))
    };
    assert!(
        says(
            "routes[1].match.listener",
            "no listener named `admin`; defined: public, internal"
        ),
        "{errs:?}"
    );
    assert!(
        says("upstreams.peer.tls.peer_ids[1]", "not a SPIFFE ID"),
        "{errs:?}"
    );
    assert!(
        says("upstreams.peer.tls.peer_ids[2]", "not a SPIFFE ID"),
        "{errs:?}"
    );
    assert!(!errs
        .iter()
        .any(|e| e.path == "upstreams.peer.tls.peer_ids[0]"));
    assert!(
        !errs.iter().any(|e| e.path.starts_with("routes[0]")),
        "{errs:?}"
    );
}

#[test]
fn addresses_from_the_environment_and_fleet_needs() {
    let yaml = r#"
fleet: {name: "bad name"}
listeners:
  - {name: public, listen: "${env:PALISADE_TEST_UNSET_ADDRESS}"}
upstreams:
  app: {targets: [http://127.0.0.1:3000]}
routes:
  - {name: a, upstream: app, public: true}
"#;
    let errs = load_yaml(yaml).unwrap_err().0;
    assert!(
        says(
            &errs,
            "listeners[0].listen",
            "PALISADE_TEST_UNSET_ADDRESS is not set"
        ),
        "{errs:?}"
    );
    assert!(says(&errs, "fleet", "add a `redis` section"), "{errs:?}");
    let with_redis = yaml.replace("fleet:", "redis: {url: \"redis://127.0.0.1:1\"}\nfleet:");
    let errs = load_yaml(&with_redis).unwrap_err().0;
    assert!(says(&errs, "fleet", "runtime.state_key"), "{errs:?}");
}

/// Whether one of `errs` is at `path` and says `what`.
fn says(errs: &[ConfigError], path: &str, what: &str) -> bool {
    errs.iter()
        .any(|e| e.path == path && e.message.contains(what))
}
