//! Against a real OpenID Connect provider (panva/oidc-provider, installed by scripts/test with
//! `npm ci` in crates/palisade/tests/oidc): discovery, JWKS, client-credentials JWT access
//! tokens in RS256 and ES256, a key rotation at the provider picked up without restarting
//! Palisade, opaque tokens checked by introspection, and revocation taking effect within the
//! cache TTL.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::Method;
use palisade_testkit::{free_port, HttpClient, MockUpstream, Reply};

use crate::support::{assert_problem, TestGateway};

struct Provider {
    port: u16,
    child: Option<Child>,
}

impl Provider {
    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
    }

    async fn start(generation: u32) -> Provider {
        let mut p = Provider {
            port: free_port(),
            child: None,
        };
        p.spawn(generation).await;
        p
    }

    async fn spawn(&mut self, generation: u32) {
        assert!(
            Self::dir().join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run `npm ci` in crates/palisade/tests/oidc (scripts/test does)"
        );
        let child = Command::new("node")
            .arg("provider.mjs")
            .arg(self.port.to_string())
            .arg(generation.to_string())
            .current_dir(Self::dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = HttpClient::h1()
                .send(
                    Method::GET,
                    &format!("{}/.well-known/openid-configuration", self.issuer()),
                    &[],
                    b"",
                )
                .await;
            if r.is_ok_and(|r| r.status == 200) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the OpenID provider exited at start ({status}): run `node provider.mjs {}` in crates/palisade/tests/oidc to see why", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "the OpenID provider did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn form(&self, path: &str, user: &str, secret: &str, body: &str) -> Reply {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
        HttpClient::h1()
            .send(
                Method::POST,
                &format!("{}{path}", self.issuer()),
                &[
                    ("authorization", &format!("Basic {basic}")),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                body.as_bytes(),
            )
            .await
            .unwrap()
    }

    /// A client-credentials access token for `resource` (JWT or opaque).
    async fn token(&self, resource: &str) -> String {
        let r = self
            .form(
                "/token",
                "app",
                "app-secret",
                &format!("grant_type=client_credentials&scope=orders:read&resource={resource}"),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    async fn revoke(&self, token: &str) {
        let r = self
            .form(
                "/token/revocation",
                "app",
                "app-secret",
                &format!("token={token}"),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(upstream: &str, issuer: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{upstream}"]}}}}
issuers:
  op:
    issuer: "{issuer}"
    audiences: [orders]
    algorithms: [RS256, ES256]
    dangerous_allow_http: true
    min_refresh_interval: 1s
    client_id: palisade
    client_secret_env: PALISADE_E2E_INTROSPECTION_SECRET
routes:
  - name: jwt
    match: {{path_prefix: /jwt}}
    upstream: app
    policies:
      - {{type: jwt, issuers: [op], cache: false}}
      - {{type: authorize, rules: [{{scopes_any: [orders:read]}}]}}
  - name: opaque
    match: {{path_prefix: /opaque}}
    upstream: app
    policies:
      - {{type: introspection, issuer: op, cache_ttl: 1s}}
"#
    )
}

async fn call(gw: &TestGateway, path: &str, token: &str) -> Reply {
    HttpClient::h1()
        .send(
            Method::GET,
            &gw.url(path),
            &[("authorization", &format!("Bearer {token}"))],
            b"",
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_real_openid_provider() {
    // the one variable this suite sets; nothing else reads it
    std::env::set_var(
        "PALISADE_E2E_INTROSPECTION_SECRET",
        "palisade-introspection-secret",
    );
    let mut op = Provider::start(1).await;
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&config(&up.url(), &op.issuer())).await;

    // JWT access tokens in both algorithms, verified with keys found by discovery
    for resource in ["urn:orders:rs256", "urn:orders:es256"] {
        let t = op.token(resource).await;
        let r = call(&gw, "/jwt/orders", &t).await;
        assert_eq!(r.status, 200, "{resource}: {}", r.text());
        let seen = up.requests().pop().unwrap();
        assert_eq!(seen.headers.get("x-palisade-subject").unwrap(), "app");
        assert_eq!(seen.headers.get("x-palisade-auth-method").unwrap(), "jwt");
    }
    // an opaque token is not a JWT
    let opaque = op.token("urn:orders:opaque").await;
    assert_problem(
        &call(&gw, "/jwt/orders", &opaque).await,
        401,
        "auth.invalid_token",
    );
    // … but introspection accepts it
    let r = call(&gw, "/opaque/orders", &opaque).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.requests()
            .pop()
            .unwrap()
            .headers
            .get("x-palisade-auth-method")
            .unwrap(),
        "introspection"
    );
    // revoked: refused once the cached answer (1 s) has expired
    op.revoke(&opaque).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = call(&gw, "/opaque/orders", &opaque).await;
    assert_problem(&r, 401, "auth.invalid_token");
    assert!(r.text().contains("not active"), "{}", r.text());
    assert_problem(
        &call(&gw, "/opaque/orders", "made-up-token").await,
        401,
        "auth.invalid_token",
    );

    // the provider rotates its keys (a restart with new ones): new tokens verify, without
    // restarting Palisade
    let old = op.token("urn:orders:es256").await;
    op.stop();
    op.spawn(2).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // min_refresh_interval
    let fresh = op.token("urn:orders:es256").await;
    let r = call(&gw, "/jwt/orders", &fresh).await;
    assert_eq!(r.status, 200, "after rotation: {}", r.text());
    // the old key is gone from the provider's set: its tokens no longer verify
    assert_problem(
        &call(&gw, "/jwt/orders", &old).await,
        401,
        "auth.invalid_token",
    );
}
