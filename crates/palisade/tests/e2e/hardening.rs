//! Abuse of the transport: slowloris, oversized heads, targets and bodies, overload, and
//! secrets that must never reach the access log.

use std::time::{Duration, Instant};

use http::Method;
use palisade_testkit::{raw_exchange, Behaviour, HttpClient, MockUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{assert_problem, simple, TestGateway};

#[tokio::test]
async fn slowloris_connection_is_closed() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[]",
        "limits: {header_read_timeout: 1s}",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // trickle one header byte at a time, never finishing the head
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            if n == 0 || buf.starts_with(b"HTTP/1.1 408") {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "a slow head kept the connection open for {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn oversized_target_headers_and_bodies_are_refused() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[]",
        "limits: {max_uri_bytes: 1024, max_headers: 20, max_header_bytes: 8192, max_body_bytes: 1000}",
    ))
    .await;
    let c = HttpClient::h1();
    let long = format!("/{}", "a".repeat(2000));
    let r = c.send(Method::GET, &gw.url(&long), &[], b"").await.unwrap();
    assert_problem(&r, 414, "request.uri_too_long");

    let r = c
        .send(Method::POST, &gw.url("/"), &[], &[b'x'; 1001])
        .await
        .unwrap();
    assert_problem(&r, 413, "request.body_too_large");

    // too many headers: the parser refuses with 431 before any routing
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..40 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let out = raw_exchange(gw.addr(), raw.as_bytes(), Duration::from_millis(500)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // a head larger than the buffer
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let out = raw_exchange(gw.addr(), raw.as_bytes(), Duration::from_millis(500)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // a chunked body that grows past the cap while streaming
    let mut raw = String::from("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..5 {
        raw.push_str(&format!("1f4\r\n{}\r\n", "c".repeat(500)));
    }
    raw.push_str("0\r\n\r\n");
    let out = raw_exchange(gw.addr(), raw.as_bytes(), Duration::from_millis(800)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("request.body_too_large"));
    assert!(up.requests().iter().all(|r| r.body.len() <= 1000));
}

#[tokio::test]
async fn overload_is_shed_with_503() {
    let up = MockUpstream::start_with("slow", Behaviour::Slow(Duration::from_millis(700))).await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "limits: {max_in_flight: 2}")).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = gw.url("/");
        tasks.push(tokio::spawn(async move {
            HttpClient::h1()
                .send(Method::GET, &url, &[], b"")
                .await
                .unwrap()
        }));
    }
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            503 => {
                assert_problem(&r, 503, "overload.shed");
                assert_eq!(r.header("retry-after").as_deref(), Some("1"));
                shed += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(shed, 4);
    // shed requests are counted under their route
    let m = gw.metrics().await;
    assert!(
        m.contains(r#"palisade_requests_total{route="all",status="503"} 4"#),
        "{m}"
    );
    assert!(!m.contains(r#"route="-",status="503""#), "{m}");
}

#[tokio::test]
async fn connection_cap_closes_extra_connections() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "limits: {max_connections: 2}")).await;
    let _a = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let _b = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = raw_exchange(
        gw.addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(out.is_empty(), "a third connection was served");
    let m = gw.metrics().await;
    assert!(m.contains("palisade_connections_refused_total 1"), "{m}");
}

#[tokio::test]
async fn access_log_has_every_field_and_no_secret() {
    let up = MockUpstream::start("a").await;
    let logdir = palisade_testkit::TempDir::new("access-log");
    let log = logdir.path().join("access.log");
    let yaml = simple(&up.url(), "[]", "").replace(
        "log: {access: \"off\"}",
        &format!("log: {{access: \"{}\"}}", log.display()),
    );
    let gw = TestGateway::start(&yaml).await;
    let r = HttpClient::h1()
        .send(
            Method::POST,
            &gw.url("/login?api_key=sk_live_SECRET1"),
            &[
                ("authorization", "Bearer eyJSECRET2"),
                ("cookie", "session=SECRET3"),
                ("x-api-key", "SECRET4"),
            ],
            b"password=SECRET5",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !text.contains("SECRET"),
        "a secret reached the access log: {text}"
    );
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for field in [
        "time",
        "request_id",
        "route",
        "client",
        "method",
        "path",
        "status",
        "bytes_in",
        "bytes_out",
        "upstream",
        "upstream_ms",
        "total_ms",
    ] {
        assert!(line.get(field).is_some(), "missing {field} in {line}");
    }
    assert_eq!(line["path"], "/login");
    assert_eq!(line["bytes_in"], 16);
    assert_eq!(line["status"], 200);
    assert_eq!(line["complete"], true);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "limits: {idle_timeout: 1s}")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // nothing more is sent: the gateway closes the connection after the idle timeout
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("connection kept open")
        .unwrap();
    assert_eq!(n, 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn h2_rapid_reset_flood_closes_the_connection() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = MockUpstream::start_with("slow", Behaviour::Slow(Duration::from_millis(200))).await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    // open streams and cancel them at once (HEADERS then RST_STREAM), far more than allowed
    let mut refused = false;
    for _ in 0..2000 {
        if tx.ready().await.is_err() {
            refused = true;
            break;
        }
        let req = http::Request::builder()
            .uri(gw.url("/flood"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        // let the request go out, then give up on it: the client sends RST_STREAM
        let _ = tokio::time::timeout(Duration::from_millis(1), tx.send_request(req)).await;
    }
    if !refused {
        // the server answers the flood with GOAWAY; the connection then ends
        refused = tokio::time::timeout(Duration::from_secs(3), driver)
            .await
            .is_ok();
    }
    assert!(
        refused,
        "2000 cancelled streams did not close the connection"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reached = up.requests().len();
    assert!(
        reached < 300,
        "{reached} cancelled streams reached the upstream"
    );
    let m = gw.metrics().await;
    assert!(m.contains("palisade_connections_aborted_total 1"), "{m}");
    // the gateway still serves everyone else
    assert_eq!(palisade_testkit::get(&gw.url("/after")).await.status, 200);
}
