//! What the gateway's own HTTP/1.1 upstream client makes of every way an upstream may frame
//! (or misframe) its answers: chunked with trailers, read to the close, interim 100, both
//! framings at once, conflicting lengths, and kept-alive connections the upstream closes
//! between requests. A scripted upstream on a raw socket says exactly the bytes under test
//! and records the requests it received.

use std::sync::{Arc, Mutex};

use http::Method;
use palisade_testkit::HttpClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{assert_problem, simple, TestGateway};

/// An upstream that answers every request with `reply` and then, when `close` is set,
/// closes the connection without saying so.
pub(crate) struct Scripted {
    pub(crate) url: String,
    /// Raw request heads received, in order, and the number of connections accepted.
    seen: Arc<Mutex<(Vec<String>, usize)>>,
}

pub(crate) async fn scripted(reply: &'static [u8], close: bool) -> Scripted {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new((Vec::new(), 0)));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            log.lock().unwrap().1 += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // one request: its head, then its content-length body
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    log.lock().unwrap().0.push(head);
                    if s.write_all(reply).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Scripted { url, seen }
}

#[tokio::test]
async fn chunked_answers_with_trailers_arrive_whole() {
    let up = scripted(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-checksum: 1\r\n\r\n",
        false,
    )
    .await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    for _ in 0..3 {
        let r = palisade_testkit::get(&gw.url("/c")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello, world");
    }
    // the connection was kept and reused for all three
    assert_eq!(up.seen.lock().unwrap().1, 1);
}

#[tokio::test]
async fn answers_delimited_by_the_close_arrive_whole() {
    let up = scripted(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end",
        true,
    )
    .await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    for _ in 0..3 {
        let r = palisade_testkit::get(&gw.url("/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "until the end");
    }
    assert_eq!(
        up.seen.lock().unwrap().1,
        3,
        "such a connection is never reused"
    );
}

#[tokio::test]
async fn kept_alive_connections_the_upstream_closes_are_replaced() {
    // the upstream promises nothing about closing, then closes after each answer: the next
    // request finds its pooled connection dead and must go out on a new one, not fail
    let up = scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    let c = HttpClient::h1();
    for i in 0..20 {
        let (m, body): (Method, &[u8]) = if i % 2 == 0 {
            (Method::GET, b"")
        } else {
            (Method::POST, b"{\"n\":1}")
        };
        let r = c.send(m, &gw.url("/"), &[], body).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, "ok"),
            "request {i}"
        );
    }
    // every request reached the upstream exactly once
    assert_eq!(up.seen.lock().unwrap().0.len(), 20);
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let up = scripted(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone",
        false,
    )
    .await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    let r = HttpClient::h1()
        .send(Method::POST, &gw.url("/"), &[], b"{}")
        .await
        .unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (201, "done"));
}

#[tokio::test]
async fn both_framings_read_as_chunked_and_the_connection_is_dropped() {
    // RFC 9112 6.3: transfer-encoding wins over content-length, and such a connection is
    // closed after the message, so the bytes a content-length reader would have left over
    // can never become the next response
    let up = scripted(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
          4\r\nfull\r\n0\r\n\r\n",
        false,
    )
    .await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    for _ in 0..2 {
        let r = palisade_testkit::get(&gw.url("/")).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "full"));
        assert!(r.header("content-length").is_none_or(|v| v == "4"));
    }
    assert_eq!(up.seen.lock().unwrap().1, 2);
}

#[tokio::test]
async fn conflicting_lengths_and_truncated_bodies_are_bad_responses() {
    let up = scripted(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 5\r\n\r\nhello",
        false,
    )
    .await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    let r = palisade_testkit::get(&gw.url("/")).await;
    assert_problem(&r, 502, "upstream.bad_response");

    // a head promising more than the upstream sends before closing: the client never gets
    // a short body presented as whole
    let up = scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", true).await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    let r = HttpClient::h1()
        .send(Method::GET, &gw.url("/"), &[], b"")
        .await;
    assert!(r.is_err(), "a truncated body must not look complete: {r:?}");
}

#[tokio::test]
async fn the_upstream_sees_one_framing_chosen_by_the_gateway() {
    let up = scripted(b"HTTP/1.1 204 No Content\r\n\r\n", false).await;
    let gw = TestGateway::start(&simple(&up.url, "[]", "")).await;
    let c = HttpClient::h1();
    let r = c
        .send(Method::POST, &gw.url("/a?x=1"), &[("x-test", "1")], b"abc")
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = c.send(Method::GET, &gw.url("/b"), &[], b"").await.unwrap();
    assert_eq!(r.status, 204);
    let seen = up.seen.lock().unwrap().0.clone();
    assert!(
        seen[0].starts_with("POST /a?x=1 HTTP/1.1\r\n"),
        "{}",
        seen[0]
    );
    assert_eq!(
        seen[0].matches("content-length: 3\r\n").count(),
        1,
        "{}",
        seen[0]
    );
    assert!(!seen[0].contains("transfer-encoding"), "{}", seen[0]);
    assert!(seen[0].contains("x-test: 1\r\n"));
    assert!(seen[1].starts_with("GET /b HTTP/1.1\r\n"));
    assert!(!seen[1].contains("content-length"), "{}", seen[1]);
}
