//! Mutual TLS end to end, with an rcgen CA: SPIFFE service identities mapped to consumers,
//! expired, revoked (CRL), foreign-CA and missing certificates, and user tokens bound to the
//! device's certificate (RFC 8705).

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use palisade_testkit::jwt::{b64url, jwks, now_secs, SigningKey};
use palisade_testkit::{send_mtls, ClientCertSpec, MockUpstream, Reply, TempDir, TestCa};
use rustls_pki_types::pem::PemObject as _;
use serde_json::json;

use crate::support::TestGateway;

const ORDERS: &str = "spiffe://example.org/ns/prod/sa/orders";

fn request(path: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", "api.local");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn sha256_b64(cert_pem: &str) -> String {
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    b64url(
        &palisade_identity::mtls::parse_client_cert(&der)
            .unwrap()
            .sha256,
    )
}

#[tokio::test]
async fn client_certificates_identify_devices_and_services() {
    let dir = TempDir::new("mtls");
    let server_ca = TestCa::new();
    let (cert, key) = server_ca.write_server_cert(dir.path(), "server", &["api.local"]);
    let client_ca = TestCa::new();
    dir.write("client-ca.pem", client_ca.pem());
    dir.write("crl.pem", &client_ca.crl(&[3]));
    let signer = SigningKey::es256("user-key");
    dir.write("jwks.json", &jwks(&[&signer]));
    let up = MockUpstream::start("app").await;
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners:
  - name: tls
    listen: "127.0.0.1:0"
    tls:
      certificates: [{{cert: {}, key: {}}}]
      client_auth: {{ca: [client-ca.pem], crls: [crl.pem]}}
upstreams: {{app: {{targets: ["{}"]}}}}
consumers:
  - {{name: orders-svc, groups: [services], certificates: ["{ORDERS}"]}}
issuers:
  users: {{issuer: "https://users.local", audiences: [api], jwks_file: jwks.json}}
routes:
  - name: services
    match: {{path_prefix: /svc}}
    upstream: app
    policies:
      - {{type: mtls, allow: ["spiffe://example.org/ns/prod/*"], require_consumer: true}}
  - name: bound
    match: {{path_prefix: /bound}}
    upstream: app
    policies:
      - {{type: mtls}}
      - {{type: jwt, issuers: [users], bind_to_certificate: true}}
"#,
        cert.display(),
        key.display(),
        up.url()
    );
    let gw = TestGateway::start_in(dir, &yaml).await;
    let addr = gw.addr();
    let ca = server_ca.pem();
    let spec = |uri: &'static [&'static str], serial: u64, expired: bool| ClientCertSpec {
        cn: "client",
        uris: uri,
        dns: &[],
        serial,
        expired,
    };
    let orders = client_ca.client_cert(&spec(&[ORDERS], 1, false));
    let dev = client_ca.client_cert(&spec(&["spiffe://example.org/ns/dev/sa/orders"], 2, false));
    let revoked = client_ca.client_cert(&spec(&[ORDERS], 3, false));
    let expired = client_ca.client_cert(&spec(&[ORDERS], 4, true));
    let foreign = TestCa::new().client_cert(&spec(&[ORDERS], 5, false));
    let call = |client: Option<&(String, String)>, path: &str, token: Option<&str>| {
        let client = client.map(|(c, k)| (c.clone(), k.clone()));
        let req = request(path, token);
        async move {
            send_mtls(
                addr,
                "api.local",
                ca,
                client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
                req,
            )
            .await
        }
    };
    let ok = |r: Result<Reply, String>| r.unwrap_or_else(|e| panic!("{e}"));

    // a service of the prod namespace, mapped to its consumer
    let r = ok(call(Some(&orders), "/svc/orders", None).await);
    assert_eq!(r.status, 200, "{}", r.text());
    let h = up.requests().pop().unwrap().headers;
    assert_eq!(h.get("x-palisade-consumer").unwrap(), "orders-svc");
    assert_eq!(h.get("x-palisade-subject").unwrap(), ORDERS);
    assert_eq!(h.get("x-palisade-auth-method").unwrap(), "mtls");
    // another namespace: verified, but not allowed here
    let r = ok(call(Some(&dev), "/svc/orders", None).await);
    assert_eq!(
        (r.status.as_u16(), r.json()["code"].as_str()),
        (403, Some("auth.forbidden"))
    );
    // no certificate: the route says it needs one
    let r = ok(call(None, "/svc/orders", None).await);
    assert_eq!(r.json()["code"], "auth.client_certificate_required");
    assert_eq!(r.status, 403);
    // revoked, expired, or from another CA: the handshake itself fails
    for (name, c) in [
        ("revoked", &revoked),
        ("expired", &expired),
        ("foreign CA", &foreign),
    ] {
        let r = call(Some(c), "/svc/orders", None).await;
        assert!(r.is_err(), "{name}: {r:?}");
    }
    let served = up.requests().len();

    // a user token bound to this device's certificate (RFC 8705 cnf.x5t#S256)
    let claims = |cnf: &str| {
        json!({"iss": "https://users.local", "aud": "api", "sub": "alice", "exp": now_secs() + 60,
               "cnf": {"x5t#S256": cnf}})
    };
    let bound = signer.token("ES256", &claims(&sha256_b64(&orders.0)));
    let r = ok(call(Some(&orders), "/bound/x", Some(&bound)).await);
    assert_eq!(r.status, 200, "{}", r.text());
    let h = up.requests().pop().unwrap().headers;
    assert_eq!(
        h.get("x-palisade-subject").unwrap(),
        "alice",
        "the token names the user"
    );
    // the same token from another device: refused
    let r = ok(call(Some(&dev), "/bound/x", Some(&bound)).await);
    assert_eq!(
        (r.status.as_u16(), r.json()["code"].as_str()),
        (401, Some("auth.invalid_token"))
    );
    // a token bound to nothing
    let unbound = signer.token(
        "ES256",
        &json!({"iss": "https://users.local", "aud": "api", "sub": "alice", "exp": now_secs() + 60}),
    );
    let r = ok(call(Some(&orders), "/bound/x", Some(&unbound)).await);
    assert_eq!(r.status, 401);
    assert_eq!(
        up.requests().len(),
        served + 1,
        "refused requests never reached the upstream"
    );
}

/// A gateway with one mTLS listener (clients of its own CA) and one route `route` with
/// `policies`: the gateway, the CAs of its server and of its clients, and the upstream.
async fn service_gateway(
    route: &str,
    policies: &str,
) -> (TestGateway, TestCa, TestCa, MockUpstream) {
    let dir = TempDir::new("mtls-services");
    let server_ca = TestCa::new();
    let (cert, key) = server_ca.write_server_cert(dir.path(), "server", &["api.local"]);
    let client_ca = TestCa::new();
    dir.write("client-ca.pem", client_ca.pem());
    let up = MockUpstream::start("app").await;
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners:
  - name: tls
    listen: "127.0.0.1:0"
    tls:
      certificates: [{{cert: {}, key: {}}}]
      client_auth: {{ca: [client-ca.pem]}}
upstreams: {{app: {{targets: ["{}"]}}}}
routes:
  - name: services
    match: {{path_prefix: {route}}}
    upstream: app
    policies:
{policies}
"#,
        cert.display(),
        key.display(),
        up.url()
    );
    (
        TestGateway::start_in(dir, &yaml).await,
        server_ca,
        client_ca,
        up,
    )
}

/// A client certificate of `ca` for the service `uri` (a SPIFFE ID).
fn service_cert(ca: &TestCa, uri: &'static str) -> (String, String) {
    ca.client_cert(&ClientCertSpec {
        cn: "svc",
        uris: &[uri],
        dns: &[],
        serial: 11,
        expired: false,
    })
}

/// Sends `method path` over mTLS as the service holding `cert`.
async fn call_as(
    gw: &TestGateway,
    server_ca: &TestCa,
    cert: &(String, String),
    method: Method,
    path: &str,
) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "api.local")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send_mtls(
        gw.addr(),
        "api.local",
        server_ca.pem(),
        Some((&cert.0, &cert.1)),
        req,
    )
    .await
    .unwrap()
}

/// Per-service limits: `key: service` counts each calling service (its SPIFFE ID from the
/// verified certificate) on its own, so one service using up its rate leaves another's whole.
#[tokio::test]
async fn rate_limits_keyed_by_the_calling_service() {
    let (gw, server_ca, client_ca, _up) = service_gateway(
        "/",
        r#"      - {type: mtls, allow: ["spiffe://example.org/*"]}
      - {type: rate_limit, key: service, limits: [{requests: 2, per: 1m}]}"#,
    )
    .await;
    let a = service_cert(&client_ca, "spiffe://example.org/ns/prod/sa/billing");
    let b = service_cert(&client_ca, "spiffe://example.org/ns/prod/sa/search");
    let call = |c| {
        let (gw, ca) = (&gw, &server_ca);
        async move { call_as(gw, ca, c, Method::GET, "/x").await.status.as_u16() }
    };
    assert_eq!(
        [call(&a).await, call(&a).await, call(&a).await],
        [200, 200, 429]
    );
    // another service still has its own rate
    assert_eq!([call(&b).await, call(&b).await], [200, 200]);
    assert_eq!(call(&b).await, 429);
}

/// Service-to-service authorization: `authorize` rules by the calling service's SPIFFE ID
/// and method, deny by default: the billing service may read and create, the search service
/// only read, any other service nothing.
#[tokio::test]
async fn operations_are_allowed_per_calling_service() {
    let (gw, server_ca, client_ca, up) = service_gateway(
        "/orders",
        r#"      - {type: mtls, allow: ["spiffe://example.org/*"]}
      - type: authorize
        rules:
          - {methods: [GET], services: ["spiffe://example.org/ns/prod/sa/*"]}
          - {methods: [POST], services: ["spiffe://example.org/ns/prod/sa/billing"]}"#,
    )
    .await;
    let billing = service_cert(&client_ca, "spiffe://example.org/ns/prod/sa/billing");
    let search = service_cert(&client_ca, "spiffe://example.org/ns/prod/sa/search");
    let stranger = service_cert(&client_ca, "spiffe://example.org/ns/dev/sa/search");
    let call = |c, m| call_as(&gw, &server_ca, c, m, "/orders");
    assert_eq!(call(&billing, Method::GET).await.status, 200);
    assert_eq!(call(&billing, Method::POST).await.status, 200);
    assert_eq!(call(&search, Method::GET).await.status, 200);
    let r = call(&search, Method::POST).await;
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains("calling service may not POST"),
        "{}",
        r.text()
    );
    assert_eq!(call(&stranger, Method::GET).await.status, 403);
    assert_eq!(
        call(&billing, Method::DELETE).await.status,
        403,
        "deny by default"
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 3, "only the allowed calls reach the service");
}

/// Per-service policy: a route for named calling services (`match.services`) beats the route
/// for any caller on the same path, so one service runs under other policies: here billing
/// gets a tight rate limit on top of the injection detection every caller gets.
#[tokio::test]
async fn routes_for_one_calling_service_carry_their_own_policies() {
    let (gw, server_ca, client_ca, up) = service_gateway(
        "/",
        r#"      - {type: mtls, allow: ["spiffe://example.org/*"]}
      - {type: threat}
  - name: billing
    match: {path_prefix: /, services: ["spiffe://example.org/ns/prod/sa/billing"]}
    upstream: app
    policies:
      - {type: mtls}
      - {type: threat}
      - {type: rate_limit, key: service, limits: [{requests: 2, per: 1m}]}"#,
    )
    .await;
    let billing = service_cert(&client_ca, "spiffe://example.org/ns/prod/sa/billing");
    let search = service_cert(&client_ca, "spiffe://example.org/ns/prod/sa/search");
    let call = |c, path: &'static str| {
        let (gw, ca) = (&gw, &server_ca);
        async move { call_as(gw, ca, c, Method::GET, path).await.status.as_u16() }
    };
    let sqli = "/x?q=1%27%20OR%20%271%27%3D%271";
    assert_eq!(
        [call(&search, "/x").await, call(&search, "/x").await],
        [200, 200]
    );
    assert_eq!(call(&search, sqli).await, 403);
    // billing's own route: detection as for everyone, and its rate (the refused call counts)
    assert_eq!(call(&billing, sqli).await, 403);
    assert_eq!(
        [call(&billing, "/x").await, call(&billing, "/x").await],
        [200, 429]
    );
    assert_eq!(up.requests().len(), 3);
}
