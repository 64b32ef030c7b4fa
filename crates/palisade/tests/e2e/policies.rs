//! The policy pipeline end to end: ip_filter refuses before the upstream sees anything,
//! monitor mode lets traffic through but counts it, headers rewrites both directions.

use http::Method;
use palisade_testkit::{HttpClient, MockUpstream};

use crate::support::{assert_problem, simple, TestGateway};

#[tokio::test]
async fn ip_filter_refuses_and_upstream_never_sees_it() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: ip_filter, allow: [10.0.0.0/8]}]",
        "",
    ))
    .await;
    let r = palisade_testkit::get(&gw.url("/secret")).await;
    assert_problem(&r, 403, "network.ip_denied");
    assert!(
        up.requests().is_empty(),
        "a refused request reached the upstream"
    );
    let m = gw.metrics().await;
    assert!(m.contains("palisade_policy_decisions_total{kind=\"ip_filter\",verdict=\"deny\",code=\"network.ip_denied\"} 1"), "{m}");
}

#[tokio::test]
async fn ip_filter_uses_the_client_behind_a_trusted_proxy() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: ip_filter, deny: [203.0.113.0/24]}]",
        "trusted_proxies: [127.0.0.1]",
    ))
    .await;
    let c = HttpClient::h1();
    let r = c
        .send(
            Method::GET,
            &gw.url("/"),
            &[("x-forwarded-for", "203.0.113.5")],
            b"",
        )
        .await
        .unwrap();
    assert_problem(&r, 403, "network.ip_denied");
    let r = c
        .send(
            Method::GET,
            &gw.url("/"),
            &[("x-forwarded-for", "198.51.100.1")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // a spoofed left-most entry does not help the attacker
    let r = c
        .send(
            Method::GET,
            &gw.url("/"),
            &[("x-forwarded-for", "198.51.100.1, 203.0.113.5")],
            b"",
        )
        .await
        .unwrap();
    assert_problem(&r, 403, "network.ip_denied");
}

#[tokio::test]
async fn monitor_mode_passes_and_counts() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: ip_filter, mode: monitor, allow: [10.0.0.0/8]}]",
        "",
    ))
    .await;
    let r = palisade_testkit::get(&gw.url("/watched")).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().len(), 1);
    let m = gw.metrics().await;
    assert!(m.contains("palisade_policy_decisions_total{kind=\"ip_filter\",verdict=\"monitor_deny\",code=\"network.ip_denied\"} 1"), "{m}");
}

#[tokio::test]
async fn headers_policy_rewrites_both_directions() {
    let up = MockUpstream::start("a").await;
    let policies = r#"
      - type: headers
        request: {set: {x-env: prod}, remove: [x-debug]}
        response: {set: {x-served-by: palisade}}"#;
    let gw = TestGateway::start(&simple(&up.url(), policies, "")).await;
    let r = HttpClient::h1()
        .send(
            Method::GET,
            &gw.url("/"),
            &[("x-env", "dev"), ("x-debug", "1")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-served-by").as_deref(), Some("palisade"));
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(
        r.header("server").is_none(),
        "the upstream's Server header leaks"
    );
    let s = &up.requests()[0];
    assert_eq!(s.headers["x-env"], "prod");
    assert!(s.headers.get("x-debug").is_none());
}

#[tokio::test]
async fn rate_limit_refuses_with_429_and_rate_limit_headers() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: rate_limit, key: client_ip, limits: [{requests: 3, per: 10s}]}]",
        "trusted_proxies: [127.0.0.1]",
    ))
    .await;
    let c = HttpClient::h1();
    let alice = [("x-forwarded-for", "198.51.100.7")];
    for i in 0..3 {
        let r = c
            .send(Method::GET, &gw.url("/"), &alice, b"")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("ratelimit-policy").as_deref(),
            Some("\"3-per-10s\";q=3;w=10")
        );
        assert!(
            r.header("ratelimit")
                .unwrap()
                .contains(&format!(";r={};", 2 - i)),
            "{:?}",
            r.header("ratelimit")
        );
    }
    let r = c
        .send(Method::GET, &gw.url("/"), &alice, b"")
        .await
        .unwrap();
    assert_problem(&r, 429, "ratelimit.exceeded");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=4).contains(&retry), "retry-after {retry}");
    assert!(r.header("ratelimit").unwrap().contains(";r=0;"));
    assert_eq!(
        up.requests().len(),
        3,
        "a refused request reached the upstream"
    );
    // another client has its own budget
    let bob = [("x-forwarded-for", "198.51.100.8")];
    assert_eq!(
        c.send(Method::GET, &gw.url("/"), &bob, b"")
            .await
            .unwrap()
            .status,
        200
    );
    let m = gw.metrics().await;
    assert!(m.contains("palisade_policy_decisions_total{kind=\"rate_limit\",verdict=\"deny\",code=\"ratelimit.exceeded\"} 1"), "{m}");
}

#[tokio::test]
async fn concurrency_limit_caps_requests_in_flight_per_client() {
    let up = MockUpstream::start_with(
        "slow",
        palisade_testkit::Behaviour::Slow(std::time::Duration::from_millis(500)),
    )
    .await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: concurrency_limit, max_in_flight: 2}]",
        "",
    ))
    .await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let url = gw.url("/slow");
        tasks.push(tokio::spawn(async move {
            HttpClient::h1()
                .send(Method::GET, &url, &[], b"")
                .await
                .unwrap()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 429 {
            assert_problem(&r, 429, "ratelimit.concurrency");
        }
        codes.push(r.status.as_u16());
    }
    codes.sort_unstable();
    assert_eq!(codes, [200, 200, 429, 429, 429]);
    // the slots were given back: the next requests pass
    up.set(palisade_testkit::Behaviour::Ok);
    for _ in 0..3 {
        assert_eq!(palisade_testkit::get(&gw.url("/again")).await.status, 200);
    }
}

/// A policy's decision on a request is counted once, however many hooks it has (`headers`
/// runs on the way up and on the way back), and label values are escaped.
#[tokio::test]
async fn decisions_are_counted_once_per_policy_and_request() {
    let up = MockUpstream::start("a").await;
    let yaml = simple(
        &up.url(),
        "[{type: headers, response: {set: {x-a: \"1\"}}}, {type: ip_filter, allow: [127.0.0.0/8]}]",
        "",
    )
    .replace(
        "  - name: all\n",
        "  - name: \"all \\\"quoted\\\" \\\\ route\"\n",
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..3 {
        assert_eq!(palisade_testkit::get(&gw.url("/x")).await.status, 200);
    }
    let m = gw.metrics().await;
    assert!(
        m.contains(
            "palisade_policy_decisions_total{kind=\"headers\",verdict=\"allow\",code=\"\"} 3"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "palisade_policy_decisions_total{kind=\"ip_filter\",verdict=\"allow\",code=\"\"} 3"
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"palisade_requests_total{route="all \"quoted\" \\ route",status="200"} 3"#),
        "{m}"
    );
}
