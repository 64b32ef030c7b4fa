//! RFC 9421 request signatures end to end, through the real binary: clients signed by the
//! `http-message-signatures` package from PyPI (an implementation we did not write) with
//! ed25519, ECDSA P-256, RSA-PSS and HMAC keys; every kind of tampering, replays, stale and
//! future signatures, unknown keys and key confusion refused with their codes; a draft-cavage
//! (legacy) client; and a path the gateway rewrites still verified as the client sent it.

use base64::Engine as _;
use palisade_testkit::{free_port, MockUpstream, TempDir};
use serde_json::{json, Value};

use crate::support::{bin, run_python, start_binary, Proc};

fn indent(pem: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    pem.lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

struct Keys {
    ed: rcgen::KeyPair,
    p256: rcgen::KeyPair,
    rsa: rcgen::KeyPair,
    stranger: rcgen::KeyPair,
    secret: Vec<u8>,
}

impl Keys {
    fn new() -> Self {
        let mut secret = vec![0u8; 32];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = u8::try_from(i * 7 % 251).unwrap() ^ 0x5a;
        }
        Keys {
            ed: rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
            p256: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            rsa: rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
            stranger: rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
            secret,
        }
    }

    fn secret_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.secret)
    }
}

/// An Ed25519 key as PKCS#8 v1 PEM: aws-lc-rs writes v2 (with the public key), which the
/// Python `cryptography` package does not read.
fn ed25519_v1_pem(k: &rcgen::KeyPair) -> String {
    let der = k.serialize_der();
    let seed = &der[16..48];
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(seed);
    let b64 = base64::engine::general_purpose::STANDARD.encode(v1);
    format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
}

fn gateway_yaml(port: u16, admin: u16, upstream: &str, k: &Keys, extra: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners:
  - {{name: public, listen: "127.0.0.1:{port}"}}
upstreams:
  app: {{targets: ["{upstream}"]}}
consumers:
  - name: billing
    groups: [payments]
    signature_keys:
      - keyid: client-ed25519
        alg: ed25519
        public_key: |
{ed}      - keyid: client-p256
        alg: ecdsa-p256-sha256
        public_key: |
{p256}      - keyid: client-rsa
        alg: rsa-pss-sha512
        public_key: |
{rsa}  - name: partner
    signature_keys:
      - {{keyid: client-hmac, alg: hmac-sha256, secret: "${{file:partner.secret}}"}}
routes:
  - name: orders
    match: {{path_prefix: /orders}}
    upstream: app
    policies:
      - type: signature
{extra}
"#,
        ed = indent(&k.ed.public_key_pem(), 10),
        p256 = indent(&k.p256.public_key_pem(), 10),
        rsa = indent(&k.rsa.public_key_pem(), 10),
    )
}

async fn start(dir: &TempDir, yaml: &str, k: &Keys, admin: u16) -> Proc {
    // the HMAC secret from a file beside the config, readable by its owner only
    let secret = dir.write("partner.secret", &format!("base64:{}\n", k.secret_b64()));
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = dir.write("palisade.yaml", yaml);
    start_binary(&cfg, admin).await
}

#[tokio::test]
async fn an_independent_rfc9421_client_is_verified_and_every_tampering_refused() {
    let up = MockUpstream::start("app").await;
    let k = Keys::new();
    let dir = TempDir::new("signatures");
    let (port, admin) = (free_port(), free_port());
    let yaml = gateway_yaml(port, admin, &up.url(), &k, "");
    let _gw = start(&dir, &yaml, &k, admin).await;

    let plan = json!({
        "base": format!("http://127.0.0.1:{port}"),
        "ed25519_public_pem": k.ed.public_key_pem(),
        "keys": {
            "client-ed25519": {"alg": "ed25519", "pem": ed25519_v1_pem(&k.ed)},
            "client-p256": {"alg": "ecdsa-p256-sha256", "pem": k.p256.serialize_pem()},
            "client-rsa": {"alg": "rsa-pss-sha512", "pem": k.rsa.serialize_pem()},
            "client-hmac": {"alg": "hmac-sha256", "secret_b64": k.secret_b64()},
            "client-unknown": {"alg": "ed25519", "pem": ed25519_v1_pem(&k.stranger)},
        }
    });
    let plan_path = dir.write("plan.json", &plan.to_string());
    let results = run_python("sign_client.py", vec![plan_path.into()]).await;
    let got = |case: &str| -> (u64, String, &Value) {
        let r = results
            .iter()
            .find(|r| r["case"] == case)
            .unwrap_or_else(|| panic!("no result for {case}"));
        (
            r["status"].as_u64().unwrap(),
            r["code"].as_str().unwrap_or("").to_string(),
            r,
        )
    };
    // good traffic, one per algorithm (and the digest the client added was checked)
    for case in [
        "ed25519-post",
        "p256-put",
        "rsa-pss-delete",
        "hmac-get",
        "nonce-get",
    ] {
        let (s, c, r) = got(case);
        assert_eq!(s, 200, "{case}: {c} {r}");
    }
    let expect = [
        ("replay-put", 401_u16, "signature.replayed"),
        ("replay-nonce", 401, "signature.replayed"),
        ("tampered-method", 401, "signature.invalid"),
        ("tampered-path", 401, "signature.invalid"),
        ("tampered-query", 401, "signature.invalid"),
        ("tampered-header", 401, "signature.invalid"),
        ("tampered-body", 400, "signature.digest_mismatch"),
        ("tampered-body-and-digest", 401, "signature.invalid"),
        ("tampered-signature", 401, "signature.invalid"),
        (
            "added-authorization",
            401,
            "signature.insufficient_coverage",
        ),
        (
            "uncovered-content-type",
            401,
            "signature.insufficient_coverage",
        ),
        ("uncovered-method", 401, "signature.insufficient_coverage"),
        ("old", 401, "signature.expired"),
        ("future", 401, "signature.expired"),
        ("unknown-key", 401, "signature.unknown_key"),
        ("key-confusion", 401, "signature.invalid"),
        ("unsigned", 401, "signature.missing"),
        ("no-digest", 400, "signature.digest_required"),
    ];
    for (case, status, code) in expect {
        let (s, c, r) = got(case);
        assert_eq!((s, c.as_str()), (u64::from(status), code), "{case}: {r}");
    }
    // a refusal says what to send
    let (_, _, r) = got("unsigned");
    let accept = r["accept_signature"].as_str().unwrap();
    assert!(
        accept.contains("\"@method\"") && accept.contains("created"),
        "{accept}"
    );
    let (_, _, r) = got("no-digest");
    assert!(r["want_content_digest"]
        .as_str()
        .unwrap()
        .contains("sha-256"));

    // only the good requests reached the upstream, without the signature fields, with the
    // consumer the key belongs to
    let seen = up.requests();
    assert_eq!(
        seen.len(),
        5,
        "{:?}",
        seen.iter()
            .map(|r| (r.method.clone(), r.uri.clone()))
            .collect::<Vec<_>>()
    );
    for r in &seen {
        assert!(r.headers.get("signature").is_none());
        assert!(r.headers.get("signature-input").is_none());
        let consumer = r
            .headers
            .get("x-palisade-consumer")
            .unwrap()
            .to_str()
            .unwrap();
        let want = if r.uri.query() == Some("fields=id") {
            "partner"
        } else {
            "billing"
        };
        assert_eq!(consumer, want, "{}", r.uri);
    }
    // the draft-cavage header is not read where the route does not turn it on
    let r = palisade_testkit::HttpClient::h1()
        .send(
            http::Method::GET,
            &format!("http://127.0.0.1:{port}/orders"),
            &[("signature", r#"keyId="client-hmac",signature="AAAA""#)],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "signature.malformed");
    let post = seen
        .iter()
        .find(|r| r.method == http::Method::POST)
        .unwrap();
    assert_eq!(&post.body[..], br#"{"item": "book", "qty": 2}"#);
    assert!(post.headers.get("content-digest").is_some());
}

/// The draft-cavage scheme (legacy) when a route turns it on, an RFC 9421 signature over a
/// target the gateway rewrites, and the refusal of draft-cavage where it is not on.
#[tokio::test]
async fn legacy_cavage_and_targets_as_sent() {
    use palisade_identity::signature::base::{self, Id, Message};
    use palisade_identity::signature::keys::{Alg, SignKey};

    let up = MockUpstream::start("app").await;
    let k = Keys::new();
    let dir = TempDir::new("signatures-legacy");
    let (port, admin) = (free_port(), free_port());
    let yaml = gateway_yaml(port, admin, &up.url(), &k, "        legacy_cavage: true");
    let _gw = start(&dir, &yaml, &k, admin).await;
    let addr = format!("127.0.0.1:{port}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let hmac = SignKey::secret(&k.secret).unwrap();
    let cavage = |method: &str, target: &str, date: &str| {
        let base = format!(
            "(request-target): {} {target}\nhost: {addr}\ndate: {date}",
            method.to_lowercase()
        );
        let sig =
            base64::engine::general_purpose::STANDARD.encode(hmac.sign(base.as_bytes()).unwrap());
        format!(
            r#"keyId="client-hmac",algorithm="hmac-sha256",headers="(request-target) host date",signature="{sig}""#
        )
    };
    let client = palisade_testkit::HttpClient::h1();
    let url = format!("http://{addr}/orders/9");
    let send = |h: Vec<(&'static str, String)>| {
        let client = &client;
        let url = url.clone();
        async move {
            let hv: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client
                .send(http::Method::GET, &url, &hv, b"")
                .await
                .unwrap()
        }
    };
    let r = send(vec![
        ("date", date.clone()),
        ("signature", cavage("GET", "/orders/9", &date)),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Authorization: Signature … works the same, and is not forwarded
    let r = send(vec![
        ("date", date.clone()),
        (
            "authorization",
            format!("Signature {}", cavage("GET", "/orders/9", &date)),
        ),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let last = up.requests().pop().unwrap();
    assert!(last.headers.get("authorization").is_none());
    assert_eq!(last.headers.get("x-palisade-consumer").unwrap(), "partner");
    // another method's signature, and a stale Date, are refused
    let r = send(vec![
        ("date", date.clone()),
        ("signature", cavage("DELETE", "/orders/9", &date)),
    ])
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "signature.invalid");
    let stale = httpdate::fmt_http_date(
        std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
    );
    let r = send(vec![
        ("date", stale.clone()),
        ("signature", cavage("GET", "/orders/9", &stale)),
    ])
    .await;
    assert_eq!(r.json()["code"], "signature.expired");

    // RFC 9421 over `/orders/%39`: the gateway forwards `/orders/9`, the signature is checked
    // against what the client sent
    let ed = SignKey::private_pem(Alg::Ed25519, &k.ed.serialize_pem()).unwrap();
    let (sig, input) = base::for_signing(
        &[Id::Method, Id::Authority, Id::Path],
        i64::try_from(now).unwrap(),
        "client-ed25519",
        None,
        None,
        None,
    )
    .unwrap();
    let headers = http::HeaderMap::new();
    let m = Message {
        method: "GET",
        scheme: "http",
        authority: &addr,
        path: "/orders/%39",
        query: None,
        headers: &headers,
    };
    let value = base64::engine::general_purpose::STANDARD
        .encode(ed.sign(sig.base(&m).unwrap().as_bytes()).unwrap());
    let raw = format!(
        "GET /orders/%39 HTTP/1.1\r\nhost: {addr}\r\nsignature-input: sig1={input}\r\nsignature: sig1=:{value}:\r\nconnection: close\r\n\r\n"
    );
    let reply = palisade_testkit::raw_exchange(
        addr.parse().unwrap(),
        raw.as_bytes(),
        std::time::Duration::from_secs(2),
    )
    .await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(up.requests().pop().unwrap().uri.path(), "/orders/9");
}

#[tokio::test]
async fn bad_signature_config_and_exposed_secrets_fail_validation_with_their_lines() {
    let k = Keys::new();
    let dir = TempDir::new("signatures-validate");
    let yaml = gateway_yaml(
        free_port(),
        free_port(),
        "http://127.0.0.1:9",
        &k,
        "        components: [\"@path\"]",
    );
    let bad = yaml.replace("alg: rsa-pss-sha512", "alg: ed25519");
    let cfg = dir.write("palisade.yaml", &bad);
    // a secret that is too short, in a file anyone can read
    let secret = dir.write("partner.secret", "too short\n");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = bin().arg("validate").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // each problem with its line: the RSA key given as ed25519, the short secret (from the
    // file, named without its value), and a route that does not require the method signed
    assert!(err.contains("signature_keys[2].public_key"), "{err}");
    assert!(err.contains("is not a key for ed25519"), "{err}");
    assert!(err.contains("signature_keys[0].secret"), "{err}");
    assert!(err.contains("at least 32 bytes"), "{err}");
    assert!(!err.contains("too short"), "the secret leaked: {err}");
    assert!(err.contains("must include @method"), "{err}");
    assert!(err.contains("palisade.yaml:"), "{err}");

    // a good config: no warning once the file is private; a literal secret is refused
    let good = gateway_yaml(free_port(), free_port(), "http://127.0.0.1:9", &k, "");
    dir.write("palisade.yaml", &good);
    dir.write("partner.secret", &format!("base64:{}\n", k.secret_b64()));
    let out = bin().arg("validate").arg(&cfg).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("chmod 600"),
        "still readable by others: {text}"
    );
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = bin().arg("validate").arg(&cfg).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("chmod"), "{text}");
    let literal = good.replace(
        r#"secret: "${file:partner.secret}""#,
        r#"secret: "correct horse battery staple and more""#,
    );
    dir.write("palisade.yaml", &literal);
    let out = bin().arg("validate").arg(&cfg).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("${env:NAME}") && text.contains("dangerous_inline_secret"),
        "{text}"
    );
    assert!(!text.contains("correct horse"), "the secret leaked: {text}");
}

/// Signs a POST of `body` to `authority` the way a client would (HMAC, RFC 9421, with a
/// Content-Digest), returning the headers to send.
fn hmac_signed_post(
    secret: &[u8],
    authority: &str,
    path: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    use palisade_identity::signature::base::{self, Id, Message};
    use palisade_identity::signature::digest;
    use palisade_identity::signature::keys::SignKey;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cd = digest::content_digest(body);
    let mut h = http::HeaderMap::new();
    h.insert("content-digest", http::HeaderValue::from_str(&cd).unwrap());
    let field = |n: &str| Id::Field {
        name: n.into(),
        sf: false,
        key: None,
        bs: false,
    };
    let (sig, input) = base::for_signing(
        &[Id::Method, Id::Authority, Id::Path, field("content-digest")],
        i64::try_from(now).unwrap(),
        "client-hmac",
        None,
        None,
        None,
    )
    .unwrap();
    let m = Message {
        method: "POST",
        scheme: "http",
        authority,
        path,
        query: None,
        headers: &h,
    };
    let key = SignKey::secret(secret).unwrap();
    let value = base64::engine::general_purpose::STANDARD
        .encode(key.sign(sig.base(&m).unwrap().as_bytes()).unwrap());
    vec![
        ("content-digest", cd),
        ("signature-input", format!("sig1={input}")),
        ("signature", format!("sig1=:{value}:")),
    ]
}

async fn post_as(
    port: u16,
    host: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> palisade_testkit::Reply {
    let hv: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain([("host", host)])
        .collect();
    palisade_testkit::HttpClient::h1()
        .send(
            http::Method::POST,
            &format!("http://127.0.0.1:{port}/orders"),
            &hv,
            body,
        )
        .await
        .unwrap()
}

/// `store: redis`: a signed change accepted by one instance is refused as a replay by
/// another; with Redis gone, fail_closed answers 503 rather than forget.
#[tokio::test]
async fn replays_are_refused_across_instances_through_redis() {
    let mut redis = palisade_testkit::RedisServer::start();
    let up = MockUpstream::start("app").await;
    let k = Keys::new();
    let dir = TempDir::new("signatures-cluster");
    let mut gws = Vec::new();
    let mut ports = Vec::new();
    for i in 0..2 {
        let (port, admin) = (free_port(), free_port());
        let yaml = gateway_yaml(
            port,
            admin,
            &up.url(),
            &k,
            "        store: redis\n        components: [\"@method\", \"@authority\", \"@path\", content-digest]",
        )
        .replace("routes:\n", &format!("redis: {{url: \"{}\", timeout: 250ms}}\nroutes:\n", redis.url()));
        let secret = dir.write("partner.secret", &format!("base64:{}\n", k.secret_b64()));
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let cfg = dir.write(&format!("gw{i}.yaml"), &yaml);
        gws.push(start_binary(&cfg, admin).await);
        ports.push(port);
    }
    let body: &[u8] = br#"{"amount": 10}"#;
    // every instance checks the Host it received: sign for the first, send the same bytes
    // (Host included) to both
    let a = format!("127.0.0.1:{}", ports[0]);
    let headers = hmac_signed_post(&k.secret, &a, "/orders", body);
    let r = post_as(ports[0], &a, &headers, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_as(ports[1], &a, &headers, body).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], "signature.replayed");
    assert_eq!(up.requests().len(), 1);
    // Redis away: a fresh signature cannot be checked for replays, so it is refused
    redis.kill();
    let other: &[u8] = br#"{"amount": 11}"#;
    let fresh = hmac_signed_post(&k.secret, &a, "/orders", other);
    let r = post_as(ports[0], &a, &fresh, other).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "signature.unavailable");
    drop(gws);
}

/// `upstreams.<name>.sign_requests`: what the gateway forwards carries its own RFC 9421
/// signature over the request as the upstream receives it (prefix stripped, identity
/// headers, a digest of the body), which the `http-message-signatures` package verifies; a
/// changed copy does not verify.
#[tokio::test]
async fn forwarded_requests_are_signed_for_the_upstream() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("signatures-upstream");
    let out = bin()
        .args(["keys", "signing", "--name", "gw", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let (port, admin) = (free_port(), free_port());
    let api_key = "pk_upstream_signing_test_key";
    let hash = crate::support::api_key_hash(api_key);
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams:
  app:
    targets: ["{}"]
    sign_requests: {{keyid: palisade-gw, key: "${{file:gw.key}}"}}
consumers:
  - {{name: billing, api_keys: [{{hash: "sha256:{hash}"}}]}}
routes:
  - name: orders-api
    match: {{path_prefix: /api}}
    strip_prefix: true
    upstream: app
    policies: [{{type: api_key}}]
"#,
        up.url()
    );
    let cfg = dir.write("palisade.yaml", &yaml);
    let _gw = start_binary(&cfg, admin).await;
    let c = palisade_testkit::HttpClient::h1();
    let body: &[u8] = br#"{"item": "book"}"#;
    for (method, path, body) in [
        (http::Method::POST, "/api/orders?src=web", body),
        (http::Method::GET, "/api/orders/7", &b""[..]),
    ] {
        let r = c
            .send(
                method,
                &format!("http://127.0.0.1:{port}{path}"),
                &[("x-api-key", api_key), ("content-type", "application/json")],
                body,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].uri.path(), "/orders", "the prefix was stripped");
    let mut lines = String::new();
    for (i, r) in seen.iter().enumerate() {
        let mut headers = serde_json::Map::new();
        for (k, v) in &r.headers {
            headers.insert(k.to_string(), v.to_str().unwrap().into());
        }
        let mut b = r.body.to_vec();
        if i == 1 {
            // the second one as an attacker between gateway and upstream would change it
            headers.insert("x-palisade-consumer".into(), "admin".into());
            b.clear();
        }
        let line = json!({
            "method": r.method.as_str(),
            "url": format!("http://upstream.internal{}", r.uri),
            "headers": headers,
            "body_b64": base64::engine::general_purpose::STANDARD.encode(&b),
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    let reqs = dir.write("forwarded.jsonl", &lines);
    let verdicts = run_python(
        "verify_upstream.py",
        vec![
            reqs.into(),
            dir.path().join("gw.pub.pem").into(),
            "orders-api".into(),
        ],
    )
    .await;
    assert_eq!(verdicts[0]["ok"], true, "{}", verdicts[0]);
    let covered = verdicts[0]["covered"].to_string();
    for c in [
        "@method",
        "@path",
        "@query",
        "content-digest",
        "x-palisade-consumer",
    ] {
        assert!(covered.contains(c), "{c} not covered: {covered}");
    }
    assert_eq!(
        verdicts[1]["ok"], false,
        "a changed identity header verified: {}",
        verdicts[1]
    );
}

/// `response_signature`: answers carry the gateway's signature over their status, body
/// digest, request id and content type, which the `http-message-signatures` package
/// verifies; with a changed body they do not verify.
#[tokio::test]
async fn answers_are_signed_for_the_client() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("signatures-response");
    let out = bin()
        .args(["keys", "signing", "--name", "gw", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
routes:
  - name: api
    match: {{path_prefix: /api}}
    upstream: app
    public: true
    policies:
      - {{type: response_signature, keyid: palisade-gw, key: "${{file:gw.key}}"}}
"#,
        up.url()
    );
    let cfg = dir.write("palisade.yaml", &yaml);
    let _gw = start_binary(&cfg, admin).await;
    let verdicts = run_python(
        "verify_response.py",
        vec![
            format!("http://127.0.0.1:{port}").into(),
            dir.path().join("gw.pub.pem").into(),
        ],
    )
    .await;
    assert_eq!(verdicts.len(), 2);
    for v in &verdicts {
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(v["ok"], true, "{v}");
        let covered = v["covered"].to_string();
        for c in ["@status", "content-digest", "x-request-id", "content-type"] {
            assert!(covered.contains(c), "{c} not covered: {v}");
        }
        assert_eq!(v["changed_body_ok"], false, "a changed body verified: {v}");
    }
}
