//! What HTTP/1.1 clients see of the gateway's own framing: whole requests are served by the
//! fast path, anything else by hyper from the same connection on; keep-alive, pipelining,
//! `connection: close`, HEAD, bodies of unknown length, and requests that arrive in pieces
//! all come out as one well-framed answer per request, in order.

use std::time::Duration;

use palisade_testkit::{raw_exchange, MockUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{simple, TestGateway};
use crate::upstream_framing::scripted;

/// A response as read off the wire: status line, headers (names lowercased), body.
type Answer = (String, Vec<(String, String)>, Vec<u8>);

/// Splits a byte stream into HTTP/1.1 responses, reading bodies by content-length or
/// chunked framing; `None` while the stream is incomplete or misframed.
fn try_responses(mut raw: &[u8]) -> Option<Vec<Answer>> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        raw = &raw[end + 4..];
        let mut lines = head.split("\r\n");
        let status = lines.next()?.to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if status.contains(" 204 ") || status.contains(" 304 ") || get("x-head").is_some() {
            // no body
        } else if get("transfer-encoding").as_deref() == Some("chunked") {
            loop {
                let eol = raw.windows(2).position(|w| w == b"\r\n")?;
                let size =
                    usize::from_str_radix(std::str::from_utf8(&raw[..eol]).ok()?, 16).ok()?;
                raw = &raw[eol + 2..];
                if raw.len() < size + 2 || raw[size..size + 2] != *b"\r\n" {
                    return None;
                }
                body.extend_from_slice(&raw[..size]);
                raw = &raw[size + 2..];
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = get("content-length") {
            let n: usize = n.parse().ok()?;
            body.extend_from_slice(raw.get(..n)?);
            raw = &raw[n..];
        }
        out.push((status, headers, body));
    }
    Some(out)
}

fn responses(raw: &[u8]) -> Vec<Answer> {
    try_responses(raw).unwrap_or_else(|| panic!("misframed: {}", String::from_utf8_lossy(raw)))
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn pipelined_requests_get_answers_in_order() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let raw = raw_exchange(
        gw.addr(),
        b"GET /one HTTP/1.1\r\nhost: a\r\n\r\n\
          POST /two HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello\
          GET /three HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let rs = responses(&raw);
    assert_eq!(rs.len(), 3, "{}", String::from_utf8_lossy(&raw));
    for ((status, headers, body), path) in rs.iter().zip(["/one", "/two", "/three"]) {
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(String::from_utf8_lossy(body).contains(path), "{path}");
        assert!(header(headers, "date").is_some(), "a date on every answer");
        assert!(header(headers, "x-request-id").is_some());
    }
    assert_eq!(header(&rs[2].1, "connection"), Some("close"));
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(&seen[1].body[..], b"hello");
}

#[tokio::test]
async fn requests_arriving_in_pieces_are_served_on_the_same_connection() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    // a whole request first (fast path), then one whose head and body come in pieces (the
    // connection moves to hyper), then a whole one again
    s.write_all(b"GET /a HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let first = read_answers(&mut s, 1).await;
    s.write_all(b"POST /b HTTP/1.1\r\nhost: a\r\ncont")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"ent-length: 6\r\n\r\nab").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"cdef").await.unwrap();
    let second = read_answers(&mut s, 1).await;
    s.write_all(b"GET /c HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let third = read_answers(&mut s, 1).await;
    for (rs, path) in [(first, "/a"), (second, "/b"), (third, "/c")] {
        assert!(rs[0].0.starts_with("HTTP/1.1 200"), "{}", rs[0].0);
        assert!(String::from_utf8_lossy(&rs[0].2).contains(path));
    }
    assert_eq!(&up.requests()[1].body[..], b"abcdef");
}

async fn read_answers(s: &mut TcpStream, n: usize) -> Vec<Answer> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let k = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(k > 0, "closed early: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..k]);
        // complete when it parses into n answers with nothing left over
        if let Some(rs) = try_responses(&raw).filter(|rs| rs.len() == n) {
            return rs;
        }
    }
}

#[tokio::test]
async fn bodies_of_unknown_length_are_chunked_and_head_gets_no_body() {
    // the upstream answers chunked: the gateway does not know the length either
    let up = scripted(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
        false,
    )
    .await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    let raw = raw_exchange(
        gw.addr(),
        b"GET / HTTP/1.1\r\nhost: a\r\n\r\nGET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let rs = responses(&raw);
    assert_eq!(rs.len(), 2);
    for (_, headers, body) in &rs {
        assert_eq!(header(headers, "transfer-encoding"), Some("chunked"));
        assert_eq!(body, b"abcdef");
    }

    let up = scripted(
        b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\nx-head: 1\r\n\r\n",
        false,
    )
    .await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    let raw = raw_exchange(
        gw.addr(),
        b"HEAD / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let rs = responses(&raw);
    assert_eq!(rs.len(), 1, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(
        header(&rs[0].1, "content-length"),
        Some("1234"),
        "HEAD keeps the length a GET would have had"
    );
}

#[tokio::test]
async fn refusals_on_the_fast_path_are_framed_problems() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: ip_filter, deny: [127.0.0.0/8]}]",
        "",
    ))
    .await;
    let raw = raw_exchange(
        gw.addr(),
        b"GET /x HTTP/1.1\r\nhost: a\r\n\r\nGET /y HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let rs = responses(&raw);
    assert_eq!(rs.len(), 2);
    for (status, headers, body) in &rs {
        assert!(status.starts_with("HTTP/1.1 403"), "{status}");
        assert_eq!(
            header(headers, "content-type"),
            Some("application/problem+json")
        );
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["status"], 403);
    }
    assert!(up.requests().is_empty());
}
