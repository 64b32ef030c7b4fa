//! Request smuggling: the 159 cases of aws/http-desync-guardian, sent raw. Severe cases must be
//! refused with 400 and a closed connection; no case may let the upstream see a request the
//! gateway did not answer as a request of its own (a different request boundary).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use palisade_testkit::{raw_exchange, MockUpstream};
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{simple, TestGateway};

struct Case {
    id: usize,
    file: String,
    name: String,
    tier: String,
    bytes: Vec<u8>,
}

fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        _ => String::new(),
    }
}

fn cases() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/http-desync-guardian");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap();
        let Some(list) = docs.first().and_then(|d| d.as_vec()) else {
            continue;
        };
        for c in list {
            let id = out.len();
            let method = scalar(&c["method"]);
            let uri = scalar(&c["uri"]);
            let version = scalar(&c["version"]);
            let mut raw = if version.is_empty() {
                format!("{method} {uri}\r\n")
            } else {
                format!("{method} {uri} {version}\r\n")
            }
            .into_bytes();
            if let Some(hs) = c["headers"].as_vec() {
                for h in hs {
                    raw.extend_from_slice(scalar(&h["name"]).as_bytes());
                    raw.extend_from_slice(b": ");
                    raw.extend_from_slice(scalar(&h["value"]).as_bytes());
                    raw.extend_from_slice(b"\r\n");
                }
            }
            raw.extend_from_slice(format!("X-Desync-Case: {id}\r\n\r\n").as_bytes());
            // a second request right behind the first: whoever reads the boundary differently
            // sees it as body, or as a request of its own
            raw.extend_from_slice(
                format!("GET /smuggled-{id} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            );
            out.push(Case {
                id,
                file: f.file_name().unwrap().to_string_lossy().into_owned(),
                name: scalar(&c["name"]),
                tier: scalar(&c["expected"]["tier"]),
                bytes: raw,
            });
        }
    }
    out
}

#[tokio::test]
async fn desync_guardian_corpus() {
    let cases = cases();
    assert_eq!(cases.len(), 159, "the corpus changed");
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let addr = gw.addr();
    let mut tasks = Vec::new();
    for c in &cases {
        let bytes = c.bytes.clone();
        tasks.push(tokio::spawn(async move {
            raw_exchange(addr, &bytes, Duration::from_millis(1500)).await
        }));
    }
    let mut outputs = Vec::new();
    for t in tasks {
        outputs.push(t.await.unwrap());
    }
    // a request whose body stream the gateway aborted (the client never sent all of it) is
    // not a request the upstream can act on
    let seen: Vec<_> = up.requests().into_iter().filter(|r| r.complete).collect();
    let mut summary: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (c, out) in cases.iter().zip(&outputs) {
        let text = String::from_utf8_lossy(out);
        let responses = text.matches("HTTP/1.1 ").filter(|_| true).count();
        let status: Option<u16> = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok());
        let at_upstream = seen
            .iter()
            .filter(|r| {
                r.headers
                    .get("x-desync-case")
                    .is_some_and(|v| v == c.id.to_string().as_str())
            })
            .count();
        let smuggled = seen
            .iter()
            .filter(|r| r.uri.path() == format!("/smuggled-{}", c.id))
            .count();
        let refused = status.is_some_and(|s| s == 400) || (status.is_none() && at_upstream == 0);
        let e = summary.entry(c.tier.clone()).or_default();
        if refused {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
        let label = format!(
            "{} #{} {:?} ({}) -> {:?}",
            c.file,
            c.id,
            c.name,
            c.tier,
            text.get(..text.len().min(40))
        );
        if c.tier == "Severe" {
            if status != Some(400) && status.is_some() {
                failures.push(format!("{label}: answered {status:?}, expected 400"));
            }
            if at_upstream + smuggled > 0 {
                failures.push(format!("{label}: reached the upstream"));
            }
        }
        if at_upstream > 1 {
            failures.push(format!(
                "{label}: the upstream saw the request {at_upstream} times"
            ));
        }
        // every request the upstream saw on this connection was answered to the client as a
        // request of its own: the gateway and the upstream agree on the boundaries
        if at_upstream + smuggled > responses {
            failures.push(format!(
                "{label}: upstream saw {} requests, client got {responses} responses",
                at_upstream + smuggled
            ));
        }
    }
    for r in &seen {
        let cl = r.headers.get_all("content-length").iter().count();
        let te = r.headers.get_all("transfer-encoding").iter().count();
        assert!(
            cl <= 1 && !(cl == 1 && te > 0),
            "ambiguous framing reached the upstream: {:?}",
            r.headers
        );
    }
    for (tier, (refused, forwarded)) in &summary {
        println!("desync {tier:<11} refused {refused:>3}  forwarded {forwarded:>3}");
    }
    assert!(
        failures.is_empty(),
        "{} desync failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn classic_smuggling_shapes_are_refused_with_400() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let cases: &[(&str, &str)] = &[
        ("TE obfuscated", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("TE list", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("two TE headers", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
        ("two CL headers", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
        ("CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nab"),
        ("CL sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab"),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n"),
        ("space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ("bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("invalid header name", "GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n"),
        ("control character in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"),
        ("TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ];
    let mut failures = Vec::new();
    for (name, raw) in cases {
        let out = raw_exchange(gw.addr(), raw.as_bytes(), Duration::from_millis(500)).await;
        let text = String::from_utf8_lossy(&out);
        if !text.starts_with("HTTP/1.1 400") && !text.starts_with("HTTP/1.0 400") {
            failures.push(format!(
                "{name}: {}",
                text.lines().next().unwrap_or("<closed without answer>")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "not refused with 400:\n{}",
        failures.join("\n")
    );
    let complete: Vec<_> = up.requests().into_iter().filter(|r| r.complete).collect();
    assert!(
        complete.is_empty(),
        "a smuggling attempt reached the upstream: {:?}",
        complete[0].uri
    );
}

/// Content-Length together with Transfer-Encoding: the HTTP/1 parser drops Content-Length,
/// reads the chunked body, and closes the connection after the answer (RFC 9112 §6.3), before
/// Palisade sees the request. What must hold: the upstream gets one unambiguous message, the
/// bytes behind it are never read as a request, and the client connection is closed.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_normalised_and_closed() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let cases: &[(&str, &str, &str)] = &[
        ("CL.TE", "POST /clte HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled-clte HTTP/1.1\r\nHost: x\r\n\r\n", ""),
        ("TE.CL", "POST /tecl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\nGET /smuggled-tecl HTTP/1.1\r\nHost: x\r\n\r\n", "SMUGGLED"),
    ];
    for (name, raw, body) in cases {
        let out = raw_exchange(gw.addr(), raw.as_bytes(), Duration::from_millis(800)).await;
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        assert_eq!(
            text.matches("http/1.1 ").count(),
            1,
            "{name}: one answer only, got {text}"
        );
        assert!(
            text.contains("connection: close"),
            "{name}: the connection must close: {text}"
        );
        let path = format!("/{}", name.replace('.', "").to_ascii_lowercase());
        let seen: Vec<_> = up
            .requests()
            .into_iter()
            .filter(|r| r.uri.path() == path)
            .collect();
        assert_eq!(seen.len(), 1, "{name}");
        assert_eq!(seen[0].body.as_ref(), body.as_bytes(), "{name}");
        assert!(
            seen[0].headers.get("content-length").is_none()
                || seen[0].headers.get("transfer-encoding").is_none()
        );
    }
    assert!(
        up.requests()
            .iter()
            .all(|r| !r.uri.path().starts_with("/smuggled")),
        "a smuggled request reached the upstream"
    );
}

/// What docs/errors.md says of Content-Length and chunk sizes, as the gateway does it.
#[tokio::test]
async fn content_length_and_chunk_size_refusals_are_as_documented() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let cases: [(&[u8], &str, &str); 4] = [
        // the same value twice is one length, forwarded once
        (b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab", "HTTP/1.1 200", ""),
        // different values: the parser's bare 400
        (b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 400", ""),
        (b"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\nab", "HTTP/1.1 400", ""),
        // a malformed chunk size
        (b"POST /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", "HTTP/1.1 400", "request.bad_body"),
    ];
    for (bytes, status, code) in cases {
        let out = raw_exchange(gw.addr(), bytes, Duration::from_millis(500)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with(status), "{text}");
        assert!(text.contains(code), "{text}");
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri.path(), "/a");
    assert_eq!(seen[0].headers.get_all("content-length").iter().count(), 1);
    assert_eq!(seen[0].body.as_ref(), b"ab");
}
