//! A request's bookkeeping ends however the request ends: cancelled by its client at every
//! stage, on the HTTP/1.1 fast path, on hyper's HTTP/1.1 path and on HTTP/2, or cut off by
//! an upstream that stalls mid-body. Afterwards every gauge is back to 0, every slot free.

use std::time::Duration;

use palisade_testkit::{Behaviour, MockUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::TestGateway;

fn config(upstream: &str, stall: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
limits: {{max_in_flight: 200}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams:
  app: {{targets: ["{upstream}"], timeouts: {{request: 30s}}}}
  stall: {{targets: ["{stall}"], timeouts: {{request: 30s, body_idle: 1s}}}}
routes:
  - name: stall
    match: {{path_prefix: /stall}}
    upstream: stall
    public: true
    policies: [{{type: concurrency_limit, key: route, max_in_flight: 4}}]
  - name: body
    match: {{path_prefix: /body}}
    upstream: app
    public: true
    policies:
      - {{type: concurrency_limit, key: route, max_in_flight: 40}}
      - {{type: threat}}
  - name: slow
    match: {{path_prefix: /}}
    upstream: app
    public: true
    policies:
      - {{type: concurrency_limit, key: route, max_in_flight: 100}}
      - {{type: concurrency_limit, key: client_ip, max_in_flight: 100}}
"#
    )
}

/// An upstream that sends a response head and the first bytes of its body, then nothing.
async fn stalling_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nfirst bytes")
                .await;
            held.push(s);
        }
    });
    (url, task)
}

fn gauge(metrics: &str, name: &str) -> Vec<u64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// Sends `head` (and maybe a partial body) and gives up after `after`.
async fn give_up(addr: std::net::SocketAddr, bytes: Vec<u8>, after: Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    tokio::time::sleep(after).await;
    drop(s);
}

#[tokio::test]
async fn cancelled_requests_give_back_every_slot_on_every_path() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = MockUpstream::start_with("app", Behaviour::Slow(Duration::from_secs(30))).await;
    let (stall, _stall_task) = stalling_upstream().await;
    let gw = TestGateway::start(&config(&up.url(), &stall)).await;
    let addr = gw.addr();
    let wait = Duration::from_millis(150);
    let rounds = 8;
    let per_round = 40;
    for _ in 0..rounds {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..per_round {
            let bytes = match i % 4 {
                // the fast path, waiting for the upstream's head
                0 => b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
                // hyper's path (chunked), waiting for the upstream's head
                1 => b"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                    .to_vec(),
                // hyper's path, while the gateway reads the body for the threat policy
                2 => b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nonly part of it"
                    .to_vec(),
                // the fast path, during a response body the upstream never finishes
                _ => b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            };
            tasks.spawn(give_up(addr, bytes, wait));
        }
        // HTTP/2: streams reset by the client (RST_STREAM)
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut tx, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        let driver = tokio::spawn(conn);
        for _ in 0..20 {
            tx.ready().await.unwrap();
            let req = http::Request::builder()
                .uri(gw.url("/slow"))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let fut = tx.send_request(req);
            tasks.spawn(async move {
                let _ = tokio::time::timeout(wait, fut).await;
            });
        }
        while tasks.join_next().await.is_some() {}
        drop(tx);
        driver.abort();
    }
    // the cancelled requests end (the stalled bodies after their 1 s idle limit)
    let mut m = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        m = gw.metrics().await;
        let busy = gauge(&m, "palisade_requests_in_flight")
            .into_iter()
            .chain(gauge(&m, "palisade_upstream_in_flight"))
            .any(|v| v != 0);
        if !busy {
            break;
        }
    }
    assert_eq!(gauge(&m, "palisade_requests_in_flight"), [0], "{m}");
    let targets = gauge(&m, "palisade_upstream_in_flight");
    assert!(
        !targets.is_empty() && targets.iter().all(|&v| v == 0),
        "{m}"
    );
    let cancelled = gauge(&m, "palisade_requests_cancelled_total");
    // those that waited for the upstream's head (a body read cut short is a 400 bad_body)
    let expected = (rounds * (per_round / 2 + 20)) as u64;
    assert!(
        cancelled.first().is_some_and(|&c| c >= expected),
        "at least {expected} cancelled: {m}"
    );

    // every slot is free: as many requests as the limits allow at once all pass
    up.set(Behaviour::Slow(Duration::from_millis(300)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let url = gw.url(&format!("/slow/{i}"));
        tasks.spawn(async move { palisade_testkit::get(&url).await.status.as_u16() });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap());
    }
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let r = palisade_testkit::HttpClient::h1()
        .send(
            http::Method::POST,
            &gw.url("/body"),
            &[("content-type", "text/plain")],
            b"fine",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // the stalled responses were cut off and gave their slots back too
    let head = palisade_testkit::raw_exchange(
        addr,
        b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_millis(200),
    )
    .await;
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

/// An upstream that sends its head and then stalls: the client gets the head and the bytes
/// that came, the request ends after `timeouts.body_idle`, and the log says why.
#[tokio::test]
async fn a_stalled_upstream_body_is_cut_off_and_logged_as_such() {
    let (stall, _task) = stalling_upstream().await;
    let dir = palisade_testkit::TempDir::new("stall");
    let log = dir.path().join("access.log");
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "{}"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams:
  stall: {{targets: ["{stall}"], timeouts: {{body_idle: 500ms}}}}
routes:
  - name: stall
    match: {{path_prefix: /}}
    upstream: stall
    public: true
"#,
        log.display()
    );
    let gw = TestGateway::start_in(dir, &yaml).await;
    let started = std::time::Instant::now();
    let raw = palisade_testkit::raw_exchange(
        gw.addr(),
        b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    // the head and what the upstream sent arrived, then the connection closed
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("first bytes"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let mut line = String::new();
    for _ in 0..50 {
        line = std::fs::read_to_string(&log).unwrap_or_default();
        if !line.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(line.contains(r#""code":"upstream.body_timeout""#), "{line}");
    assert!(line.contains(r#""complete":false"#), "{line}");
}

/// Server-sent events reach the client as the upstream sends them: the upstream sends the
/// next event only once the client has seen the previous one, so a gateway that held the
/// stream back would stall it.
#[tokio::test]
async fn streamed_responses_are_not_held_back() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::channel::<()>(8);
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        for i in 0..3 {
            let ev = format!("data: {i}\n\n");
            s.write_all(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes())
                .await
                .unwrap();
            // the next event only after the client saw this one
            if tokio::time::timeout(Duration::from_secs(5), seen_rx.recv())
                .await
                .is_err()
            {
                return;
            }
        }
        s.write_all(b"0\r\n\r\n").await.unwrap();
    });
    let gw = TestGateway::start(&crate::support::simple(&url, "[]", "")).await;
    let mut c = TcpStream::connect(gw.addr()).await.unwrap();
    c.write_all(b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for i in 0..3 {
        let want = format!("data: {i}\n\n");
        while !String::from_utf8_lossy(&got).contains(&want) {
            let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("event {i} was held back"))
                .unwrap();
            assert!(n > 0, "closed before event {i}");
            got.extend_from_slice(&buf[..n]);
        }
        seen_tx.send(()).await.unwrap();
    }
}

/// A refusal that closes the connection does so on the fast path and on hyper's path: the
/// request pipelined behind it is never served.
#[tokio::test]
async fn closing_refusals_close_on_every_path() {
    let up = MockUpstream::start("app").await;
    let yaml = crate::support::simple(
        &up.url(),
        "[]",
        "limits: {max_body_bytes: 10, max_uri_bytes: 64}",
    );
    let gw = TestGateway::start(&yaml).await;
    let next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    let long = format!("/{}", "a".repeat(100));
    let cases = [
        // fast path: a whole request with a declared body over the cap
        ("413 fast", format!("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n{}", "b".repeat(20)), 413),
        // hyper's path: chunked, over the cap while streaming
        ("413 hyper", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n14\r\nbbbbbbbbbbbbbbbbbbbb\r\n0\r\n\r\n".to_string(), 413),
        ("414 fast", format!("GET {long} HTTP/1.1\r\nHost: a\r\n\r\n"), 414),
        ("414 hyper", format!("POST {long} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 414),
    ];
    for (name, req, status) in cases {
        let mut c = TcpStream::connect(gw.addr()).await.unwrap();
        c.write_all(format!("{req}{next}").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        let closed = loop {
            let mut buf = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: {text}"
        );
        assert!(closed, "{name}: the connection stayed open");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{name}: {text}");
    }
    assert!(up.requests().is_empty());
}

/// A client that stops sending its body gets 408 `request.body_timeout` once the body has
/// not moved for `timeouts.request` (the client's fault, not the upstream's 504), whether the
/// body streams to the upstream or is read whole for a policy; the connection closes.
#[tokio::test]
async fn a_stalled_request_body_is_a_408() {
    let up = MockUpstream::start("app").await;
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{}"], timeouts: {{request: 1s}}}}}}
routes:
  - {{name: inspected, match: {{path_prefix: /inspected}}, upstream: app, public: true, policies: [{{type: threat}}]}}
  - {{name: streamed, match: {{path_prefix: /}}, upstream: app, public: true}}
"#,
        up.url()
    );
    let gw = TestGateway::start(&yaml).await;
    for path in ["/streamed", "/inspected"] {
        let mut c = TcpStream::connect(gw.addr()).await.unwrap();
        c.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => panic!("{path}: no answer and no close"),
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains("request.body_timeout"), "{path}: {text}");
    }
}

/// Two `concurrency_limit` policies on one route hold a slot each and give back their own:
/// when they shared one annotation, the first policy's slot was never given back and its
/// key was locked out after one request.
#[tokio::test]
async fn two_concurrency_limits_on_a_route_are_independent() {
    let up = MockUpstream::start_with("app", Behaviour::Slow(Duration::from_millis(200))).await;
    let gw = TestGateway::start(&crate::support::simple(
        &up.url(),
        "[{type: concurrency_limit, key: route, max_in_flight: 1}, {type: concurrency_limit, key: \"header:x-user\", max_in_flight: 1}]",
        "",
    ))
    .await;
    let call = |user: &'static str| {
        let url = gw.url("/x");
        async move {
            palisade_testkit::HttpClient::h1()
                .send(http::Method::GET, &url, &[("x-user", user)], b"")
                .await
                .unwrap()
                .status
                .as_u16()
        }
    };
    for user in ["ada", "ada", "bob", "ada"] {
        assert_eq!(call(user).await, 200, "{user}");
    }
    // at once: the route's single slot is taken by one of them
    let (a, b) = tokio::join!(call("ada"), call("bob"));
    let mut both = [a, b];
    both.sort_unstable();
    assert_eq!(both, [200, 429]);
    assert_eq!(call("bob").await, 200);
}
