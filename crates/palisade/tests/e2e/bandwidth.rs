//! Bandwidth: bodies are paced to the configured bytes per second, not refused.

use std::time::Instant;

use http::Method;
use palisade_testkit::{report_figure, Behaviour, HttpClient, MockUpstream};

use crate::support::{simple, TestGateway};

const MB: usize = 1_000_000;

#[tokio::test]
async fn a_5_mb_download_at_1_mb_per_second_takes_about_5_seconds() {
    let up = MockUpstream::start_with("app", Behaviour::Large(5 * MB)).await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: bandwidth, key: \"header:x-user\", response: {bytes_per_second: 1MB, burst: 64KiB}}]",
        "",
    ))
    .await;
    let c = HttpClient::h1();
    let t = Instant::now();
    let r = c
        .send(Method::GET, &gw.url("/file"), &[("x-user", "alice")], b"")
        .await
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 5 * MB, "the whole body arrives");
    report_figure(&format!(
        "bandwidth: 5 MB at 1 MB/s (burst 64 KiB) took {took:.2} s (ideal 4.93 s)"
    ));
    assert!(
        (4.5..=5.5).contains(&took),
        "took {took:.2} s; 5 MB at 1 MB/s should take about 5 s"
    );
}

#[tokio::test]
async fn uploads_are_paced_and_keys_do_not_slow_each_other() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: bandwidth, key: \"header:x-user\", request: {bytes_per_second: 500KB, burst: 16KiB}}]",
        "",
    ))
    .await;
    let body = vec![b'u'; MB];
    let (url, url2) = (gw.url("/up"), gw.url("/up"));
    let (b1, b2) = (body.clone(), body.clone());
    let t = Instant::now();
    // two users upload 1 MB each at the same time: each gets its own 500 kB/s
    let a = tokio::spawn(async move {
        HttpClient::h1()
            .send(Method::POST, &url, &[("x-user", "carol")], &b1)
            .await
            .unwrap()
    });
    let b = tokio::spawn(async move {
        HttpClient::h1()
            .send(Method::POST, &url2, &[("x-user", "dan")], &b2)
            .await
            .unwrap()
    });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let took = t.elapsed().as_secs_f64();
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.body.len() == MB && r.complete));
    report_figure(&format!(
        "bandwidth: two 1 MB uploads by two users at 500 kB/s each took {took:.2} s (ideal 1.97 s)"
    ));
    assert!(
        (1.75..=2.5).contains(&took),
        "took {took:.2} s: each user has 500 kB/s of their own"
    );
    // the same user twice shares one bucket: twice as long
    let t = Instant::now();
    let (u1, u2) = (gw.url("/up"), gw.url("/up"));
    let (b1, b2) = (body.clone(), body);
    let a = tokio::spawn(async move {
        HttpClient::h1()
            .send(Method::POST, &u1, &[("x-user", "erin")], &b1)
            .await
            .unwrap()
    });
    let b = tokio::spawn(async move {
        HttpClient::h1()
            .send(Method::POST, &u2, &[("x-user", "erin")], &b2)
            .await
            .unwrap()
    });
    let (ra, rb) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!((ra.status.as_u16(), rb.status.as_u16()), (200, 200));
    let took = t.elapsed().as_secs_f64();
    assert!(
        (3.5..5.0).contains(&took),
        "took {took:.2} s: one user's 2 MB at 500 kB/s is about 4 s"
    );
    // (4 s is longer than the upstream request timeout of 2 s: it counts from when the
    // request body stops moving, so paced uploads are not cut off)
}
