//! Upstreams that are dead, slow, resetting or speaking garbage: the client gets a clear
//! 502/503/504 problem, never a hang or a crash; balancing, health checks, passive
//! ejection and retries keep good traffic flowing.

use std::time::Duration;

use http::Method;
use palisade_testkit::{free_port, Behaviour, HttpClient, MockUpstream};

use crate::support::{assert_problem, simple, TestGateway};

#[tokio::test]
async fn dead_upstream_is_502() {
    let gw = TestGateway::start(&simple(
        &format!("http://127.0.0.1:{}", free_port()),
        "[]",
        "",
    ))
    .await;
    let r = palisade_testkit::get(&gw.url("/")).await;
    assert_problem(&r, 502, "upstream.unreachable");
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let up = MockUpstream::start_with("slow", Behaviour::Slow(Duration::from_secs(5))).await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let started = std::time::Instant::now();
    let r = palisade_testkit::get(&gw.url("/")).await;
    assert_problem(&r, 504, "upstream.timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the 2s request timeout was not applied"
    );
}

#[tokio::test]
async fn slow_upstream_is_504_after_a_request_body_too() {
    // the request timeout counts from when the body stops moving: a stalled upstream with a
    // fully sent body still times out
    let up = MockUpstream::start_with("slow", Behaviour::Slow(Duration::from_secs(8))).await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let started = std::time::Instant::now();
    let r = palisade_testkit::HttpClient::h1()
        .send(http::Method::POST, &gw.url("/"), &[], &[b'x'; 100_000])
        .await
        .unwrap();
    assert_problem(&r, 504, "upstream.timeout");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the 2s request timeout was not applied after the body"
    );
}

#[tokio::test]
async fn resetting_and_garbage_upstreams_are_502() {
    for b in [Behaviour::Reset, Behaviour::Garbage] {
        let up = MockUpstream::start_with("bad", b.clone()).await;
        let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
        let r = palisade_testkit::get(&gw.url("/")).await;
        assert_problem(&r, 502, "upstream.bad_response");
        // nothing internal leaks into the refusal
        assert!(
            !r.text().contains("SSH") && !r.text().contains("hyper"),
            "{}",
            r.text()
        );
    }
}

fn pool_yaml(targets: &[String], extra: &str) -> String {
    let t: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams:
  app:
    targets: [{}]
    timeouts: {{connect: 500ms, request: 2s}}
{extra}
routes:
  - {{name: all, match: {{path_prefix: /}}, upstream: app, public: true}}
"#,
        t.join(", ")
    )
}

#[tokio::test]
async fn round_robin_spreads_load() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let gw = TestGateway::start(&pool_yaml(&[a.url(), b.url()], "")).await;
    for _ in 0..10 {
        assert_eq!(palisade_testkit::get(&gw.url("/")).await.status, 200);
    }
    assert_eq!(a.requests().len(), 5);
    assert_eq!(b.requests().len(), 5);
}

#[tokio::test]
async fn least_requests_avoids_the_busy_target() {
    let slow = MockUpstream::start_with("slow", Behaviour::Slow(Duration::from_millis(800))).await;
    let fast = MockUpstream::start("fast").await;
    let gw = TestGateway::start(&pool_yaml(
        &[slow.url(), fast.url()],
        "    balance: least_requests",
    ))
    .await;
    let url = gw.url("/");
    // occupy one slot on the slow target, then send more: they go to the idle one
    let busy = tokio::spawn(async move { palisade_testkit::get(&url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..6 {
        assert_eq!(palisade_testkit::get(&gw.url("/")).await.status, 200);
    }
    busy.await.unwrap();
    assert_eq!(slow.requests().len(), 1, "requests went to the busy target");
    assert_eq!(fast.requests().len(), 6);
}

#[tokio::test]
async fn health_checks_take_a_dead_target_out() {
    let a = MockUpstream::start("a").await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let hc = "    health_check: {path: /health, interval: 100ms, timeout: 200ms, unhealthy_threshold: 1}";
    let gw = TestGateway::start(&pool_yaml(&[dead.clone(), a.url()], hc)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..6 {
        let r = palisade_testkit::get(&gw.url("/")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let m = gw.metrics().await;
    assert!(
        m.contains(&format!(
            "palisade_upstream_healthy{{upstream=\"app\",target=\"{dead}\"}} 0"
        )),
        "{m}"
    );
    // when every target is down, the refusal says so
    a.set(Behaviour::Status(500));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = palisade_testkit::get(&gw.url("/")).await;
    assert_problem(&r, 503, "upstream.no_healthy_target");
}

#[tokio::test]
async fn retries_move_idempotent_requests_to_a_live_target() {
    let a = MockUpstream::start("a").await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = TestGateway::start(&pool_yaml(&[dead, a.url()], "    retries: {attempts: 1}")).await;
    for _ in 0..6 {
        let r = palisade_testkit::get(&gw.url("/")).await;
        assert_eq!(
            r.status,
            200,
            "a GET hit the dead target and was not retried: {}",
            r.text()
        );
    }
    let m = gw.metrics().await;
    assert!(m.contains("palisade_upstream_retries_total 3"), "{m}");
    // a POST with a body is never replayed
    let mut refused = 0;
    for _ in 0..4 {
        let r = HttpClient::h1()
            .send(Method::POST, &gw.url("/"), &[], b"{}")
            .await
            .unwrap();
        if r.status == 502 {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 2,
        "POSTs to the dead target must fail, not be retried"
    );
}

#[tokio::test]
async fn passive_ejection_stops_sending_to_a_failing_target() {
    let bad = MockUpstream::start_with("bad", Behaviour::Status(503)).await;
    let good = MockUpstream::start("good").await;
    let gw = TestGateway::start(&pool_yaml(
        &[bad.url(), good.url()],
        "    passive: {consecutive_failures: 2, ejection_time: 30s}",
    ))
    .await;
    for _ in 0..20 {
        let _ = palisade_testkit::get(&gw.url("/")).await;
    }
    assert_eq!(
        bad.requests().len(),
        2,
        "the failing target was not ejected"
    );
    assert_eq!(good.requests().len(), 18);
}

/// Requests that were in flight when a target was ejected fail too: that is one ejection,
/// logged and counted once, not one per failure.
#[tokio::test]
async fn concurrent_failures_eject_a_target_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // a slow target that answers 503: ten requests are in flight when they fail together
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                let _ = s
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let gw = TestGateway::start(&pool_yaml(
        &[url],
        "    passive: {consecutive_failures: 2, ejection_time: 30s}",
    ))
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let url = gw.url("/");
        tasks.spawn(async move { palisade_testkit::get(&url).await.status.as_u16() });
    }
    while tasks.join_next().await.is_some() {}
    let m = gw.metrics().await;
    let line = m
        .lines()
        .find(|l| l.starts_with("palisade_upstream_ejections_total"))
        .unwrap_or_default()
        .to_string();
    assert!(line.ends_with(" 1"), "{m}");
}
