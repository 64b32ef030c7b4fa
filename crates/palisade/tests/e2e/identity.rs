//! Identity end to end: API keys (hashes in config, rotation, expiry), JWTs from an issuer
//! found by OpenID Connect discovery (ES256 and RS256, rotation picked up without a restart,
//! a flood of unknown `kid`s that cannot hammer the provider), authorization rules with
//! object-level checks, and identity headers: forged ones never reach the upstream, nor do
//! refused requests.

use http::Method;
use palisade_testkit::jwt::{jwks, now_secs, SigningKey};
use palisade_testkit::{DocServer, HttpClient, MockUpstream, Reply};
use serde_json::json;

use crate::support::{assert_problem, TestGateway};

async fn send(url: &str, method: Method, headers: &[(&str, &str)]) -> Reply {
    HttpClient::h1()
        .send(method, url, headers, b"")
        .await
        .unwrap()
}

fn api_key_config(upstream: &str, live: &str, old: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{upstream}"]}}}}
consumers:
  - name: acme
    groups: [partners]
    metadata: {{tier: gold}}
    api_keys:
      - {{hash: "{live}", label: current}}
      - {{hash: "{old}", label: retired, expires: "2020-01-01T00:00:00Z"}}
  - name: globex
    api_keys: []
identity_headers:
  claims: {{tier: x-tier}}
routes:
  - name: partners
    upstream: app
    policies:
      - {{type: api_key}}
      - {{type: authorize, rules: [{{groups_any: [partners]}}]}}
"#
    )
}

#[tokio::test]
async fn api_keys_authenticate_consumers_and_never_leak_upstream() {
    let up = MockUpstream::start("app").await;
    let (live_key, live_hash) = palisade_identity::consumers::new_key().unwrap();
    let (old_key, old_hash) = palisade_identity::consumers::new_key().unwrap();
    let gw = TestGateway::start(&api_key_config(&up.url(), &live_hash, &old_hash)).await;
    let url = gw.url("/orders");

    let r = send(&url, Method::GET, &[]).await;
    assert_problem(&r, 401, "auth.missing_credential");
    assert!(r.header("www-authenticate").unwrap().starts_with("ApiKey"));
    assert_problem(
        &send(&url, Method::GET, &[("x-api-key", "pk_guessed")]).await,
        401,
        "auth.invalid_api_key",
    );
    let r = send(&url, Method::GET, &[("x-api-key", &old_key)]).await;
    assert_problem(&r, 401, "auth.invalid_api_key");
    assert!(r.text().contains("expired"));
    assert!(!r.text().contains(&old_key), "the key is never echoed");
    assert_eq!(
        up.requests().len(),
        0,
        "refused requests never reach the upstream"
    );

    // a valid key, and forged identity headers from the client
    let r = send(
        &url,
        Method::GET,
        &[
            ("x-api-key", &live_key),
            ("x-palisade-consumer", "root"),
            ("x-palisade-groups", "admin"),
            ("x-palisade-anything", "forged"),
            ("x-tier", "platinum"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(h.get("x-palisade-consumer").unwrap(), "acme");
    assert_eq!(h.get("x-palisade-subject").unwrap(), "acme");
    assert_eq!(h.get("x-palisade-groups").unwrap(), "partners");
    assert_eq!(h.get("x-palisade-auth-method").unwrap(), "api_key");
    assert_eq!(
        h.get("x-tier").unwrap(),
        "gold",
        "a configured claim header, from metadata"
    );
    assert!(h.get("x-palisade-anything").is_none());
    assert!(h.get("x-api-key").is_none(), "the credential is removed");
}

pub(crate) struct Idp {
    pub(crate) docs: DocServer,
}

impl Idp {
    pub(crate) async fn start() -> Idp {
        let docs = DocServer::start().await;
        docs.set(
            "/.well-known/openid-configuration",
            &json!({"issuer": docs.url(), "jwks_uri": format!("{}/jwks", docs.url())}).to_string(),
        );
        Idp { docs }
    }
    pub(crate) fn publish(&self, keys: &[&SigningKey]) {
        self.docs.set("/jwks", &jwks(keys));
    }
    pub(crate) fn claims(&self, sub: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({"iss": self.docs.url(), "aud": "orders", "sub": sub,
                           "iat": now_secs(), "exp": now_secs() + 300});
        if let (Some(m), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        c
    }
}

fn jwt_config(upstream: &str, issuer: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{upstream}"]}}}}
issuers:
  idp: {{issuer: "{issuer}", audiences: [orders], dangerous_allow_http: true, min_refresh_interval: 2s}}
routes:
  - name: users
    match: {{path: "/users/{{id}}"}}
    upstream: app
    policies:
      - {{type: jwt, issuers: [idp]}}
      - type: authorize
        rules:
          - {{methods: [GET], scopes_any: [users:read], owner: {{param: id, unless_groups: [admin]}}}}
          - {{methods: [DELETE], groups_any: [admin]}}
  - name: orders
    match: {{path_prefix: /orders}}
    upstream: app
    policies:
      - {{type: jwt, issuers: [idp], cache: false}}
"#
    )
}

#[tokio::test]
async fn jwts_from_a_discovered_issuer_with_rotation_and_object_level_rules() {
    let idp = Idp::start().await;
    let es = SigningKey::es256("es-1");
    let rs = SigningKey::rsa("rs-1");
    idp.publish(&[&es, &rs]);
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&jwt_config(&up.url(), &idp.docs.url())).await;
    let orders = gw.url("/orders/7");
    let bearer = |t: &str| format!("Bearer {t}");

    // both algorithms, with the identity forwarded and the token removed
    for (k, alg) in [(&es, "ES256"), (&rs, "RS256")] {
        let t = k.token(alg, &idp.claims("alice", json!({"scope": "orders:read"})));
        let r = send(&orders, Method::GET, &[("authorization", &bearer(&t))]).await;
        assert_eq!(r.status, 200, "{alg}: {}", r.text());
        let last = up.requests().pop().unwrap();
        assert_eq!(last.headers.get("x-palisade-subject").unwrap(), "alice");
        assert_eq!(
            last.headers.get("x-palisade-scopes").unwrap(),
            "orders:read"
        );
        assert!(last.headers.get("authorization").is_none());
    }
    assert_eq!(
        idp.docs.hits("/.well-known/openid-configuration"),
        1,
        "discovery once"
    );

    // refusals, with the RFC 6750 challenge
    let seen_before = up.requests().len();
    let expired = es.token(
        "ES256",
        &idp.claims("alice", json!({"exp": now_secs() - 3600})),
    );
    let wrong_aud = es.token("ES256", &idp.claims("alice", json!({"aud": "billing"})));
    let other_iss = es.token(
        "ES256",
        &idp.claims("alice", json!({"iss": "https://evil.example"})),
    );
    let no_exp = {
        let mut c = idp.claims("alice", json!({}));
        c.as_object_mut().unwrap().remove("exp");
        es.token("ES256", &c)
    };
    let unsigned = format!(
        "{}.{}.",
        palisade_testkit::jwt::b64url(br#"{"alg":"none"}"#),
        palisade_testkit::jwt::b64url(idp.claims("root", json!({})).to_string().as_bytes())
    );
    let huge = "a".repeat(100 * 1024);
    for (name, t) in [
        ("expired", expired),
        ("wrong audience", wrong_aud),
        ("other issuer", other_iss),
        ("no exp", no_exp),
        ("alg none", unsigned),
        ("garbage", "not.a.token".to_string()),
        ("20 KB, over max_token_bytes", "a".repeat(20 * 1024)),
    ] {
        let r = send(&orders, Method::GET, &[("authorization", &bearer(&t))]).await;
        assert_problem(&r, 401, "auth.invalid_token");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
    }
    assert_problem(
        &send(&orders, Method::GET, &[]).await,
        401,
        "auth.missing_credential",
    );
    // 100 KB: over the request-head limit, refused before any policy runs
    let r = send(&orders, Method::GET, &[("authorization", &bearer(&huge))]).await;
    assert_eq!(r.status, 431);
    assert_eq!(
        up.requests().len(),
        seen_before,
        "no refused request reached the upstream"
    );

    // object level: alice reads her own user, not bob's; an admin reads anyone's
    let alice = es.token(
        "ES256",
        &idp.claims("alice", json!({"scope": "users:read"})),
    );
    let admin = es.token(
        "ES256",
        &idp.claims("root", json!({"scope": "users:read", "groups": ["admin"]})),
    );
    let noscope = es.token("ES256", &idp.claims("alice", json!({})));
    let get = |path: &str, t: &str| {
        let (u, h) = (gw.url(path), bearer(t));
        async move { send(&u, Method::GET, &[("authorization", &h)]).await }
    };
    assert_eq!(get("/users/alice", &alice).await.status, 200);
    assert_problem(&get("/users/bob", &alice).await, 403, "auth.forbidden");
    assert_eq!(get("/users/bob", &admin).await.status, 200);
    let r = get("/users/alice", &noscope).await;
    assert_problem(&r, 403, "auth.insufficient_scope");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    // function level: only admins delete
    let del = |t: &str| {
        let (u, h) = (gw.url("/users/alice"), bearer(t));
        async move { send(&u, Method::DELETE, &[("authorization", &h)]).await }
    };
    assert_problem(&del(&alice).await, 403, "auth.forbidden");
    assert_eq!(del(&admin).await.status, 200);

    // the provider rotates its keys: a token with the new kid works without a restart (once
    // min_refresh_interval has passed since the last fetch)
    let es2 = SigningKey::es256("es-2");
    idp.publish(&[&es2]);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let t = es2.token("ES256", &idp.claims("carol", json!({})));
    let r = send(&orders, Method::GET, &[("authorization", &bearer(&t))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let fetches = idp.docs.hits("/jwks");
    // a flood of random kids: refused, and the provider is asked at most once per
    // min_refresh_interval (2 s), not once per token
    let flood = std::time::Instant::now();
    for i in 0..50 {
        let k = SigningKey::es256(&format!("random-{i}"));
        let t = k.token("ES256", &idp.claims("mallory", json!({})));
        assert_problem(
            &send(&orders, Method::GET, &[("authorization", &bearer(&t))]).await,
            401,
            "auth.invalid_token",
        );
    }
    let allowed = (flood.elapsed().as_secs() / 2) as usize + 1;
    let extra = idp.docs.hits("/jwks") - fetches;
    assert!(
        extra <= allowed,
        "50 unknown kids caused {extra} fetches (at most {allowed})"
    );
}

#[tokio::test]
async fn an_unreachable_issuer_fails_closed_with_503() {
    let up = MockUpstream::start("app").await;
    // nothing listens on port 9 (discard): discovery fails
    let gw = TestGateway::start(&jwt_config(&up.url(), "http://127.0.0.1:9")).await;
    let k = SigningKey::es256("k");
    let t = k.token(
        "ES256",
        &json!({"iss": "http://127.0.0.1:9", "aud": "orders", "sub": "a", "exp": now_secs() + 60}),
    );
    let r = send(
        &gw.url("/orders/1"),
        Method::GET,
        &[("authorization", &format!("Bearer {t}"))],
    )
    .await;
    assert_problem(&r, 503, "auth.unavailable");
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn rate_limits_can_be_keyed_by_a_token_claim() {
    let idp = Idp::start().await;
    let k = SigningKey::es256("k1");
    idp.publish(&[&k]);
    let up = MockUpstream::start("app").await;
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
issuers:
  idp: {{issuer: "{}", audiences: [orders], dangerous_allow_http: true}}
routes:
  - name: tenants
    upstream: app
    policies:
      - {{type: jwt, issuers: [idp]}}
      - {{type: rate_limit, key: "claim:tenant", limits: [{{requests: 2, per: 1h}}]}}
"#,
        up.url(),
        idp.docs.url()
    );
    let gw = TestGateway::start(&yaml).await;
    let call = |sub: &str, tenant: &str| {
        let t = k.token("ES256", &idp.claims(sub, json!({"tenant": tenant})));
        let url = gw.url("/x");
        async move {
            send(
                &url,
                Method::GET,
                &[("authorization", &format!("Bearer {t}"))],
            )
            .await
            .status
            .as_u16()
        }
    };
    // two users of tenant acme share one limit; another tenant has its own
    assert_eq!(call("alice", "acme").await, 200);
    assert_eq!(call("bob", "acme").await, 200);
    assert_eq!(call("carol", "acme").await, 429);
    assert_eq!(call("dave", "globex").await, 200);
}

/// Apps that issue their own HS256 tokens without `iss` (and with a short secret) can be
/// verified by the gateway only under loud `dangerous_*` options; forged, expired, `none`
/// and other-issuer tokens are still refused.
#[tokio::test]
async fn app_issued_tokens_without_iss_verify_only_under_dangerous_options() {
    let up = MockUpstream::start("app").await;
    std::env::set_var("PALISADE_TEST_APP_SECRET", "482913");
    let config = |flags: &str| {
        format!(
            r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
issuers:
  app: {{issuer: app, secret_env: PALISADE_TEST_APP_SECRET, algorithms: [HS256], dangerous_skip_audience: true{flags}}}
routes:
  - name: api
    match: {{path_prefix: /}}
    upstream: app
    policies: [{{type: jwt, issuers: [app], keep_token: true}}]
"#,
            up.url()
        )
    };
    // a secret of six digits is refused unless said to be accepted
    let dir = palisade_testkit::TempDir::new("app-jwt");
    let p = dir.write("palisade.yaml", &config(""));
    let errs = palisade_config::load(&p).unwrap_err().to_string();
    assert!(errs.contains("dangerous_short_secret"), "{errs}");
    let gw = TestGateway::start(&config(
        ", dangerous_short_secret: true, dangerous_accept_missing_issuer: true",
    ))
    .await;
    let key = SigningKey::hmac("k", b"482913");
    let other = SigningKey::hmac("k", b"another-secret");
    let now = now_secs();
    // as such apps sign: no `kid`
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    let good = key.token_with_header(&hs, &json!({"sub": "alice", "exp": now + 600}));
    let url = gw.url("/orders");
    let bearer = |t: &str| format!("Bearer {t}");
    let r = send(&url, Method::GET, &[("authorization", &bearer(&good))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.requests()
            .last()
            .unwrap()
            .headers
            .get("authorization")
            .unwrap(),
        &bearer(&good),
        "keep_token: the upstream gets its own token"
    );
    let forged = [
        other.token("HS256", &json!({"sub": "alice", "exp": now + 600})),
        key.token("HS256", &json!({"sub": "alice", "exp": now - 600})),
        key.token(
            "HS256",
            &json!({"sub": "alice", "exp": now + 600, "iss": "elsewhere"}),
        ),
        format!(
            "{}.{}.",
            palisade_testkit::jwt::b64url(br#"{"alg":"none","typ":"JWT"}"#),
            palisade_testkit::jwt::b64url(
                json!({"sub": "alice", "exp": now + 600})
                    .to_string()
                    .as_bytes()
            )
        ),
    ];
    for t in &forged {
        let r = send(&url, Method::GET, &[("authorization", &bearer(t))]).await;
        assert_problem(&r, 401, "auth.invalid_token");
    }
    let warnings: Vec<String> = gw
        .gw
        .config()
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("dangerous_accept_missing_issuer"))
            && warnings
                .iter()
                .any(|w| w.contains("dangerous_short_secret")),
        "{warnings:?}"
    );
}
