//! The `protocol` policy on the wire, byte for byte: methods and versions, the Host, forbidden
//! and required headers, content types and charsets, ranges and uploads; each refusal a
//! problem+json with its code (and `Allow` for a method), good requests untouched.

use std::time::Duration;

use palisade_testkit::{raw_exchange, MockUpstream};

use crate::support::{simple, TestGateway};

/// Sends `head` (and `body`) as they are; the status and the whole answer.
async fn send(gw: &TestGateway, head: &str, body: &str) -> (u16, String) {
    let mut req = head.replace('\n', "\r\n");
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.push_str(body);
    let out = raw_exchange(gw.addr(), req.as_bytes(), Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn what_a_route_accepts_at_the_http_level() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: protocol, methods: [GET, POST], content_types: [application/json, multipart/form-data], require_headers: [x-client], max_ranges: 2, multipart: {max_parts: 3}}]",
        "",
    ))
    .await;
    let ok = "Host: api.example.com\nX-Client: web\n";
    let cases: Vec<(String, &str, u16, Option<&str>)> = vec![
        (format!("GET /a HTTP/1.1\n{ok}"), "", 200, None),
        (
            format!("POST /a HTTP/1.1\n{ok}Content-Type: application/json; charset=utf-8\n"),
            "{}",
            200,
            None,
        ),
        (
            format!("DELETE /a HTTP/1.1\n{ok}"),
            "",
            405,
            Some("protocol.method"),
        ),
        (
            format!("GET /a HTTP/1.0\n{ok}"),
            "",
            505,
            Some("protocol.version"),
        ),
        (
            // a missing Host is refused before any policy, by the gateway itself
            "GET /a HTTP/1.1\nX-Client: web\n".to_string(),
            "",
            400,
            Some("request.bad_host"),
        ),
        (
            "GET /a HTTP/1.1\nHost: 127.0.0.1\nX-Client: web\n".to_string(),
            "",
            400,
            Some("protocol.host"),
        ),
        (
            format!("GET /a HTTP/1.1\n{ok}X-HTTP-Method-Override: DELETE\n"),
            "",
            400,
            Some("protocol.header_forbidden"),
        ),
        (
            format!("GET /a HTTP/1.1\n{ok}X-Original-URL: /admin\n"),
            "",
            400,
            Some("protocol.header_forbidden"),
        ),
        (
            "GET /a HTTP/1.1\nHost: api.example.com\n".to_string(),
            "",
            400,
            Some("protocol.header_missing"),
        ),
        (
            format!("POST /a HTTP/1.1\n{ok}Content-Type: text/xml\n"),
            "<a/>",
            415,
            Some("protocol.content_type"),
        ),
        (
            format!("POST /a HTTP/1.1\n{ok}Content-Type: application/json; charset=utf-7\n"),
            "{}",
            415,
            Some("protocol.charset"),
        ),
        (
            format!("GET /a HTTP/1.1\n{ok}Range: bytes=0-9,20-29\n"),
            "",
            200,
            None,
        ),
        (
            format!("GET /a HTTP/1.1\n{ok}Range: bytes=0-1,2-3,4-5\n"),
            "",
            416,
            Some("protocol.range"),
        ),
        (
            format!("GET /a HTTP/1.1\n{ok}Range: bytes=0-99,10-20\n"),
            "",
            416,
            Some("protocol.range"),
        ),
        (
            format!("GET /a HTTP/1.1\n{ok}User-Agent: caf\u{e9}\n"),
            "",
            400,
            Some("protocol.header"),
        ),
    ];
    for (head, body, want, code) in &cases {
        let (status, text) = send(&gw, head, body).await;
        assert_eq!(status, *want, "{head}{body}\n{text}");
        if let Some(code) = code {
            assert!(text.contains("application/problem+json"), "{text}");
            assert!(
                text.contains(&format!("\"code\":\"{code}\"")),
                "{code}: {text}"
            );
        }
        if *want == 405 {
            assert!(
                text.to_ascii_lowercase().contains("allow: get, post"),
                "{text}"
            );
        }
    }
    // uploads: file names and the number of parts
    let part = |name: &str, file: &str| {
        format!("--b\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\ndata\r\n")
    };
    let upload = |parts: &[String]| format!("{}--b--\r\n", parts.concat());
    let head =
        format!("POST /upload HTTP/1.1\n{ok}Content-Type: multipart/form-data; boundary=b\n");
    for (body, want, code) in [
        (upload(&[part("f", "photo.jpg")]), 200, None),
        (
            upload(&[part("f", "shell.php")]),
            400,
            Some("protocol.file_name"),
        ),
        (
            upload(&[part("f", "shell.php.jpg")]),
            400,
            Some("protocol.file_name"),
        ),
        (
            upload(&[part("f", "../../etc/cron.d/x")]),
            400,
            Some("protocol.file_name"),
        ),
        (
            upload(&[
                part("a", "1.png"),
                part("b", "2.png"),
                part("c", "3.png"),
                part("d", "4.png"),
            ]),
            400,
            Some("protocol.multipart"),
        ),
        (
            "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nno end".to_string(),
            400,
            Some("protocol.multipart"),
        ),
    ] {
        let (status, text) = send(&gw, &head, &body).await;
        assert_eq!(status, want, "{body}\n{text}");
        if let Some(code) = code {
            assert!(
                text.contains(&format!("\"code\":\"{code}\"")),
                "{code}: {text}"
            );
        }
    }
}

#[tokio::test]
async fn monitor_mode_and_a_config_mistake() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(&up.url(), "[{type: protocol, mode: monitor}]", "")).await;
    let (status, _) = send(&gw, "TRACE /a HTTP/1.1\nHost: 10.0.0.1\n", "").await;
    assert_eq!(status, 200, "monitor mode counts, refuses nothing");
    let metrics = gw.metrics().await;
    assert!(metrics.contains("protocol"), "{metrics}");
    // a bad field is reported by validate with the policy's field
    let errs = palisade_config::load_str(
        std::path::Path::new("p.yaml"),
        &simple(&up.url(), "[{type: protocol, versions: [HTTP/3]}]", ""),
    )
    .unwrap_err()
    .to_string();
    assert!(errs.contains("policies[0].versions[0]"), "{errs}");
}
