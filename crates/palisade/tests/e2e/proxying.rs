//! What a well-behaved client and upstream see: forwarding, identity headers, hop-by-hop
//! removal, request ids, routing, h1 and h2c, streaming in both directions.

use http::Method;
use palisade_testkit::{Behaviour, HttpClient, MockUpstream};

use crate::support::{assert_problem, simple, TestGateway};

#[tokio::test]
async fn forwards_and_rewrites_proxy_headers() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let c = HttpClient::h1();
    let r = c
        .send(
            Method::POST,
            &gw.url("/orders?x=1"),
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("forwarded", "for=6.6.6.6"),
                ("x-request-id", "client-id-42"),
                ("connection", "x-secret-hop"),
                ("x-secret-hop", "1"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("content-type", "application/json"),
            ],
            br#"{"item":"book"}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id").as_deref(), Some("client-id-42"));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.uri.path_and_query().unwrap().as_str(), "/orders?x=1");
    assert_eq!(s.body.as_ref(), br#"{"item":"book"}"#);
    // a client that is not a trusted proxy cannot forge where it comes from
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        s.headers["forwarded"],
        format!("for=127.0.0.1;proto=http;host=\"{}\"", gw.addr())
    );
    assert_eq!(s.headers["x-forwarded-proto"], "http");
    assert_eq!(s.headers["x-request-id"], "client-id-42");
    // hop-by-hop headers, including those named by Connection, never travel
    assert!(s.headers.get("x-secret-hop").is_none());
    assert!(s.headers.get("proxy-authorization").is_none());
    // Host is the target's unless preserve_host
    assert_eq!(s.headers["host"], up.addr.to_string());
}

#[tokio::test]
async fn trusted_proxies_extend_the_chain() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "trusted_proxies: [127.0.0.0/8]")).await;
    let r = HttpClient::h1()
        .send(
            Method::GET,
            &gw.url("/"),
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
            ],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let s = &up.requests()[0];
    assert_eq!(s.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn generates_request_ids_and_refuses_unsafe_ones() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let c = HttpClient::h1();
    let r = c
        .send(
            Method::GET,
            &gw.url("/"),
            &[("x-request-id", "bad id with spaces")],
            b"",
        )
        .await
        .unwrap();
    let id = r.header("x-request-id").unwrap();
    assert_eq!(id.len(), 32);
    assert_ne!(id, "bad id with spaces");
    assert_eq!(up.requests()[0].headers["x-request-id"], id.as_str());
}

#[tokio::test]
async fn routes_by_host_path_and_method() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let yaml = format!(
        r#"listeners: [{{name: public, listen: "127.0.0.1:0"}}]
log: {{access: "off"}}
upstreams:
  a: {{targets: ["{a}"]}}
  b: {{targets: ["{b}"]}}
routes:
  - {{name: users, match: {{path: "/users/{{id}}", methods: [GET, DELETE]}}, upstream: a, public: true}}
  - {{name: api, match: {{path_prefix: /api}}, upstream: b, strip_prefix: true, public: true}}
  - {{name: vhost, match: {{host: "*.example.com", path_prefix: /}}, upstream: b, public: true}}
"#,
        a = a.url(),
        b = b.url()
    );
    let gw = TestGateway::start(&yaml).await;
    let c = HttpClient::h1();
    let r = c
        .send(Method::GET, &gw.url("/users/7"), &[], b"")
        .await
        .unwrap();
    assert_eq!(r.header("x-upstream").as_deref(), Some("a"));
    let r = c
        .send(Method::POST, &gw.url("/users/7"), &[], b"")
        .await
        .unwrap();
    assert_problem(&r, 405, "route.method_not_allowed");
    assert_eq!(r.header("allow").as_deref(), Some("DELETE, GET"));
    let r = c
        .send(Method::GET, &gw.url("/api/v1/items?q=1"), &[], b"")
        .await
        .unwrap();
    assert_eq!(r.header("x-upstream").as_deref(), Some("b"));
    assert_eq!(
        b.requests()[0].uri.path_and_query().unwrap().as_str(),
        "/v1/items?q=1"
    );
    let r = c
        .send(Method::GET, &gw.url("/apix"), &[], b"")
        .await
        .unwrap();
    assert_problem(&r, 404, "route.not_found");
    let r = c
        .send(
            Method::GET,
            &gw.url("/anything"),
            &[("host", "shop.example.com")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.header("x-upstream").as_deref(), Some("b"));
    let r = c
        .send(Method::GET, &gw.url("/users/../admin"), &[], b"")
        .await
        .unwrap();
    assert_problem(&r, 400, "request.bad_path");
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let r = HttpClient::h2c()
        .send(Method::GET, &gw.url("/h2"), &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(up.requests()[0].uri.path(), "/h2");
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let up = MockUpstream::start_with("big", Behaviour::Large(5 * 1024 * 1024)).await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[]",
        "limits: {max_body_bytes: 8388608}",
    ))
    .await;
    let body = vec![b'z'; 3 * 1024 * 1024];
    let r = HttpClient::h1()
        .send(Method::PUT, &gw.url("/upload"), &[], &body)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 5 * 1024 * 1024);
    assert_eq!(up.requests()[0].body.len(), 3 * 1024 * 1024);
}

#[tokio::test]
async fn admin_endpoints_report_health_and_metrics() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let _ = palisade_testkit::get(&gw.url("/x")).await;
    let admin = gw.gw.admin_addr().unwrap();
    assert_eq!(
        palisade_testkit::get(&format!("http://{admin}/healthz"))
            .await
            .status,
        200
    );
    assert_eq!(
        palisade_testkit::get(&format!("http://{admin}/readyz"))
            .await
            .status,
        200
    );
    let m = gw.metrics().await;
    assert!(
        m.contains("palisade_requests_total{route=\"all\",status=\"200\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("palisade_request_duration_seconds_count{route=\"all\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "palisade_upstream_healthy{{upstream=\"app\",target=\"{}\"}} 1",
            up.url()
        )),
        "{m}"
    );
    // the admin API is not on the public port
    let r = palisade_testkit::get(&gw.url("/metrics")).await;
    assert!(!r.text().contains("palisade_requests_total"));
}

#[tokio::test]
async fn h2_prior_knowledge_to_the_upstream() {
    let up = MockUpstream::start("h2").await;
    let yaml = simple(&up.url(), "[]", "")
        .replace("timeouts: {connect: 1s, request: 2s}", "protocol: http2");
    let gw = TestGateway::start(&yaml).await;
    for i in 0..3 {
        let r = HttpClient::h1()
            .send(Method::POST, &gw.url(&format!("/h2/{i}")), &[], b"payload")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].uri.path(), "/h2/2");
    assert_eq!(seen[2].body.as_ref(), b"payload");
}
