//! The HTTP/1.1 fast path and hyper's server must behave alike. The same bytes, generated
//! from a seeded grammar of requests (with and without bodies, odd targets, repeated or
//! missing Host, broken framing, closing refusals), go to two gateways that differ only in
//! `runtime.http1_fast_path`; what the client sees (status, refusal code, whether the
//! connection closes) and what each upstream receives (method, target, Host, body) must be
//! the same.

use std::time::{Duration, Instant};

use palisade_testkit::{MockUpstream, Rng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::TestGateway;

fn request(r: &mut Rng) -> Vec<u8> {
    let long = "/long".repeat(30);
    let method = r.pick(&[
        "GET", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH",
    ]);
    let target = r.pick(&[
        "/a",
        "/a/b?x=1&y=%20",
        "/%61/b",
        "//a//b/",
        "/a/../b",
        "/a%2fb",
        "/a;p=1",
        "/A/B",
        "/big",
        "/a%zz",
        "/caf%C3%A9",
        &long,
    ]);
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    match r.next_u64() % 10 {
        0 => {}
        1 => head.push_str("Host: a.test\r\nHost: b.test\r\n"),
        2 => head.push_str("Host: A.Test.:80\r\n"),
        _ => head.push_str("Host: a.test\r\n"),
    }
    let body = match r.next_u64() % 4 {
        0 => String::new(),
        1 => "x".repeat((r.next_u64() % 40) as usize),
        2 => r#"{"name":"ada"}"#.to_string(),
        _ => "y".repeat(300),
    };
    let mut chunked = false;
    match r.next_u64() % 12 {
        0 if !body.is_empty() => {
            chunked = true;
            head.push_str("Transfer-Encoding: chunked\r\n");
        }
        1 => head.push_str(&format!(
            "Content-Length: {}\r\nContent-Length: {}\r\n",
            body.len(),
            body.len()
        )),
        2 => head.push_str("Content-Length: 1x\r\n"),
        _ if !body.is_empty() => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
        _ => {}
    }
    if r.chance(20) {
        head.push_str("Content-Type: application/json\r\n");
    }
    if r.chance(10) {
        head.push_str(&format!("X-Big: {}\r\n", "h".repeat(9000)));
    }
    for _ in 0..(r.next_u64() % 8) {
        head.push_str(&format!("X-Extra-{}: v\r\n", r.next_u64() % 5));
    }
    // half the time a second request follows on the same connection: whether it is served
    // shows whether the first answer kept the connection open
    let pipelined = r.chance(50);
    head.push_str(if pipelined {
        "\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut bytes = head.into_bytes();
    if chunked {
        bytes.extend_from_slice(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    } else {
        bytes.extend_from_slice(body.as_bytes());
    }
    if pipelined {
        bytes.extend_from_slice(
            b"GET /second HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        );
    }
    bytes
}

/// What the client saw: the status, the refusal code if any, the body of a proxied answer.
async fn client_view(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(5);
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&got).into_owned();
    // every response on the connection: its status, refusal code and (for a proxied one)
    // the path the upstream saw
    let answers: Vec<String> = text
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|resp| {
            let status = resp.split(' ').next().unwrap_or("-");
            let field = |name: &str| {
                resp.split(&format!("\"{name}\":\""))
                    .nth(1)
                    .and_then(|c| c.split('"').next())
                    .unwrap_or("")
                    .to_string()
            };
            format!("{status} {} {}", field("code"), field("path"))
        })
        .collect();
    format!("{} closed={closed}", answers.join(" | "))
}

fn gateway_yaml(upstream: &str, fast: bool) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
runtime: {{http1_fast_path: {fast}}}
limits: {{max_body_bytes: 200, max_uri_bytes: 100, max_header_bytes: 8192, max_headers: 8}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{upstream}"], preserve_host: true}}}}
routes:
  - name: all
    match: {{path_prefix: /}}
    upstream: app
    public: true
"#
    )
}

#[tokio::test]
async fn the_fast_path_and_hypers_path_agree_on_the_same_bytes() {
    let (up_fast, up_hyper) = (
        MockUpstream::start("u").await,
        MockUpstream::start("u").await,
    );
    let fast = TestGateway::start(&gateway_yaml(&up_fast.url(), true)).await;
    let hyper = TestGateway::start(&gateway_yaml(&up_hyper.url(), false)).await;
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let mut differences = Vec::new();
    let cases = 400;
    for i in 0..cases {
        let bytes = request(&mut rng);
        let (a, b) = (
            client_view(fast.addr(), &bytes).await,
            client_view(hyper.addr(), &bytes).await,
        );
        if a != b {
            differences.push(format!(
                "case {i}: fast path `{a}`, hyper `{b}` for\n{}",
                String::from_utf8_lossy(&bytes)
            ));
        }
    }
    let seen = |u: &MockUpstream| -> Vec<String> {
        u.requests()
            .iter()
            .map(|r| {
                let h = |n: &str| {
                    r.headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string()
                };
                format!(
                    "{} {} host={} ct={} body={}",
                    r.method,
                    r.uri,
                    h("host"),
                    h("content-type"),
                    String::from_utf8_lossy(&r.body)
                )
            })
            .collect()
    };
    let (a, b) = (seen(&up_fast), seen(&up_hyper));
    assert!(
        differences.is_empty(),
        "{} of {cases} differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert_eq!(a, b, "the upstreams saw different requests");
    // about a quarter of the generated requests are well-formed enough to be proxied
    assert!(
        a.len() > cases / 6,
        "too few cases were proxied to compare: {}",
        a.len()
    );
}
