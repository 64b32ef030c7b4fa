//! HTTPS termination with rcgen certificates: h1 and h2 by ALPN, SNI picks the certificate,
//! HSTS, HTTP→HTTPS redirect, upstream TLS with its own CA, certificate reload.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use palisade_testkit::{HttpClient, MockUpstream, TempDir, TestCa};

use crate::support::TestGateway;

fn tls_yaml(upstream: &str, certs: &[(&std::path::Path, &std::path::Path)]) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|(c, k)| format!("{{cert: \"{}\", key: \"{}\"}}", c.display(), k.display()))
        .collect();
    format!(
        r#"log: {{access: "off"}}
listeners:
  - name: https
    listen: "127.0.0.1:0"
    tls: {{certificates: [{}]}}
    hsts: {{max_age: 1d, include_subdomains: true}}
  - name: http
    listen: "127.0.0.1:0"
    redirect_to_https_port: 8443
upstreams:
  app: {{targets: ["{upstream}"]}}
routes:
  - {{name: all, match: {{path_prefix: /}}, upstream: app, public: true}}
"#,
        list.join(", ")
    )
}

fn get(path: &str, host: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn https_h1_h2_sni_hsts_and_redirect() {
    let up = MockUpstream::start("a").await;
    let dir = TempDir::new("tls");
    let ca = TestCa::new();
    let (c1, k1) = ca.write_server_cert(dir.path(), "api", &["api.example.com"]);
    let (c2, k2) = ca.write_server_cert(dir.path(), "admin", &["admin.example.com"]);
    let gw = TestGateway::start_in(dir, &tls_yaml(&up.url(), &[(&c1, &k1), (&c2, &k2)])).await;
    let https = gw.gw.addr("https").unwrap();

    // HTTP/1.1 over TLS, verified against our CA for api.example.com
    let (r, alpn, peer) = HttpClient::send_tls(
        https,
        "api.example.com",
        ca.pem(),
        false,
        get("/a", "api.example.com"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(peer.len(), 1, "the leaf certificate is presented");
    assert_eq!(
        r.header("strict-transport-security").as_deref(),
        Some("max-age=86400; includeSubDomains")
    );
    assert_eq!(up.requests()[0].headers["x-forwarded-proto"], "https");

    // h2 by ALPN, second certificate chosen by SNI (verification would fail with the first)
    let (r, alpn, _) = HttpClient::send_tls(
        https,
        "admin.example.com",
        ca.pem(),
        true,
        get("https://admin.example.com/b", "admin.example.com"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(r.version, http::Version::HTTP_2);

    // a name no certificate covers gets the default certificate, which the client rejects
    let err = HttpClient::send_tls(
        https,
        "other.example.org",
        ca.pem(),
        false,
        get("/", "other.example.org"),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("certificate") || err.contains("NotValidForName"),
        "{err}"
    );

    // the plain listener redirects to https
    let http = gw.gw.addr("http").unwrap();
    let r = HttpClient::h1()
        .send(
            http::Method::GET,
            &format!("http://{http}/login?next=%2F"),
            &[("host", "api.example.com")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://api.example.com:8443/login?next=%2F")
    );
}

#[tokio::test]
async fn certificate_files_are_reloaded() {
    let up = MockUpstream::start("a").await;
    let dir = TempDir::new("tls-reload");
    let ca = TestCa::new();
    let (c, k) = ca.write_server_cert(dir.path(), "srv", &["old.example.com"]);
    let gw = TestGateway::start_in(dir, &tls_yaml(&up.url(), &[(&c, &k)])).await;
    let https = gw.gw.addr("https").unwrap();
    assert!(HttpClient::send_tls(
        https,
        "new.example.com",
        ca.pem(),
        false,
        get("/", "new.example.com")
    )
    .await
    .is_err());
    // rotate the certificate in place, then reload
    let (cert, key) = ca.server_cert(&["new.example.com"]);
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    gw.gw.reload().unwrap();
    let (r, _, _) = HttpClient::send_tls(
        https,
        "new.example.com",
        ca.pem(),
        false,
        get("/", "new.example.com"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn upstream_over_tls_with_its_own_ca() {
    // An HTTPS upstream: a second gateway terminating TLS in front of a mock.
    let mock = MockUpstream::start("inner").await;
    let dir = TempDir::new("tls-up");
    let ca = TestCa::new();
    let (c, k) = ca.write_server_cert(dir.path(), "inner", &["inner.internal"]);
    let inner = TestGateway::start_in(dir, &tls_yaml(&mock.url(), &[(&c, &k)])).await;
    let inner_addr = inner.gw.addr("https").unwrap();

    let dir = TempDir::new("tls-outer");
    let ca_path = ca.write_ca(dir.path());
    let yaml = format!(
        r#"log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams:
  secure:
    targets: ["https://{inner_addr}"]
    protocol: auto
    tls: {{ca: "{}", server_name: inner.internal}}
routes:
  - {{name: all, match: {{path_prefix: /}}, upstream: secure, public: true}}
"#,
        ca_path.display()
    );
    let outer = TestGateway::start_in(dir, &yaml).await;
    let r = palisade_testkit::get(&outer.url("/through-tls")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream").as_deref(), Some("inner"));
    assert_eq!(mock.requests()[0].uri.path(), "/through-tls");

    // pinned to HTTP/1.1, the gateway's own client speaks over the same TLS, and keeps the
    // connection for the next requests
    let dir = TempDir::new("tls-outer-h1");
    let ca_path = ca.write_ca(dir.path());
    let h1 = yaml.replace("protocol: auto", "protocol: http1").replace(
        &ca.write_ca(outer.dir.path()).display().to_string(),
        &ca_path.display().to_string(),
    );
    let outer_h1 = TestGateway::start_in(dir, &h1).await;
    for i in 0..3 {
        let r = HttpClient::h1()
            .send(
                http::Method::POST,
                &outer_h1.url(&format!("/h1/{i}")),
                &[("content-type", "application/json")],
                b"{\"n\":1}",
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-upstream").as_deref(), Some("inner"));
    }
    let seen = mock.requests();
    assert_eq!(seen.len(), 4);
    assert_eq!(&seen[3].body[..], b"{\"n\":1}");

    // the wrong server name fails verification: 502, never a silent downgrade
    let dir = TempDir::new("tls-wrong");
    let ca_path = ca.write_ca(dir.path());
    let wrong = yaml.replace("inner.internal", "evil.internal").replace(
        &ca.write_ca(outer.dir.path()).display().to_string(),
        &ca_path.display().to_string(),
    );
    let bad = TestGateway::start_in(dir, &wrong).await;
    let r = palisade_testkit::get(&bad.url("/x")).await;
    assert_eq!(r.status, 502, "{}", r.text());
}

#[tokio::test]
async fn upstream_mutual_tls_with_a_client_certificate() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert(&["backend.internal"]);
    let up = MockUpstream::start_tls("mtls", &cert, &key, Some(ca.pem())).await;
    let dir = TempDir::new("mtls");
    let ca_path = ca.write_ca(dir.path());
    let (client_cert, client_key) =
        ca.write_server_cert(dir.path(), "gateway-client", &["gateway.internal"]);
    let yaml = |with_client: bool| {
        let client = if with_client {
            format!(
                ", client_cert: \"{}\", client_key: \"{}\"",
                client_cert.display(),
                client_key.display()
            )
        } else {
            String::new()
        };
        format!(
            r#"log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams:
  backend:
    targets: ["https://{}"]
    tls: {{ca: "{}", server_name: backend.internal{client}}}
routes:
  - {{name: all, upstream: backend, public: true}}
"#,
            up.addr,
            ca_path.display()
        )
    };
    let gw = TestGateway::start_in(dir, &yaml(true)).await;
    let r = palisade_testkit::get(&gw.url("/mtls")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0].uri.path(), "/mtls");

    // without the client certificate the upstream refuses the handshake: 502, nothing sent
    let dir = TempDir::new("mtls-none");
    let without = yaml(false).replace(
        &ca_path.display().to_string(),
        &ca.write_ca(dir.path()).display().to_string(),
    );
    let gw2 = TestGateway::start_in(dir, &without).await;
    let r = palisade_testkit::get(&gw2.url("/no-cert")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(up.requests().len(), 1);
}

/// The protocol ALPN chose is the only one served: HTTP/1.1 bytes on a connection that
/// negotiated `h2`, and the HTTP/2 preface on one that negotiated `http/1.1`, get no answer
/// in the other protocol and never reach the upstream.
#[tokio::test]
async fn only_the_protocol_alpn_chose_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = MockUpstream::start("a").await;
    let dir = TempDir::new("alpn");
    let ca = TestCa::new();
    let (c, k) = ca.write_server_cert(dir.path(), "api", &["api.example.com"]);
    let gw = TestGateway::start_in(dir, &tls_yaml(&up.url(), &[(&c, &k)])).await;
    let https = gw.gw.addr("https").unwrap();
    let h1 = b"GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n".as_slice();
    // an h2 client preface followed by an empty SETTINGS frame
    let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".as_slice();
    for (alpn, bytes, other) in [
        (&b"h2"[..], h1, "HTTP/1.1 200"),
        (&b"http/1.1"[..], h2, "\x00\x00"),
    ] {
        let mut s = palisade_testkit::tls_connect(https, "api.example.com", ca.pem(), &[alpn])
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(alpn));
        s.write_all(bytes).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        if alpn == b"h2" {
            assert!(
                !text.contains(other),
                "h2 connection answered HTTP/1.1: {text}"
            );
        } else {
            // HTTP/1.1 may refuse the preface with a 400, never speak h2 back
            assert!(
                got.is_empty() || text.starts_with("HTTP/1.1 400"),
                "{text:?}"
            );
        }
    }
    assert!(up.requests().is_empty());
}
