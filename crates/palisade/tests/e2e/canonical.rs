//! One canonical path and host, checked against upstreams that read them differently.
//!
//! The real binary stands in front of apps on Go's `net/http`, Python's WSGI server and
//! Express (tests/upstreams): each decodes, cleans or matches paths and hosts its own way
//! and says which of its handlers ran. A corpus of encodings of protected paths and hosts is
//! sent byte for byte; no protected handler may run without credentials, while the same
//! resources, encoded differently but equivalently, still work with them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use palisade_testkit::{free_port, raw_exchange, TempDir};

use crate::support::{bin, wait_ready, Proc};

/// The quickstart's demo key and its hash.
const KEY: &str = "pk_demo_quickstart_key_not_for_production";
const KEY_HASH: &str = "sha256:1aa1c68de84e28c0a1b214fa902b4d7c3c8d00308a053caba5db8bfd9bb0b16f";

fn upstreams_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstreams")
}

/// The Go upstream, built once per test run.
fn go_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-upstream");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("upstream");
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(upstreams_dir().join("go"))
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `go` ({e}); scripts/test installs it (apt-get install golang-go)"
                )
            });
        assert!(status.success(), "go build of tests/upstreams/go failed");
        out
    })
}

#[derive(Clone, Copy, Debug)]
enum Stack {
    Go,
    Python,
    Node,
}

impl Stack {
    fn start(self, port: u16) -> Proc {
        let dir = upstreams_dir();
        let mut cmd = match self {
            Stack::Go => Command::new(go_binary()),
            Stack::Python => {
                let mut c = Command::new("python3");
                c.arg(dir.join("python/app.py"));
                c
            }
            Stack::Node => {
                assert!(
                    dir.join("node/node_modules/express").exists(),
                    "Express is missing: scripts/test runs `npm ci --prefix {}`",
                    dir.join("node").display()
                );
                let mut c = Command::new("node");
                c.arg(dir.join("node/app.js"));
                c
            }
        };
        let child = cmd
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {self:?} upstream: {e}"));
        Proc(child)
    }
}

async fn wait_port(port: u16, who: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{who} did not listen on {port} within 10 s");
}

fn gateway_yaml(port: u16, admin: u16, upstream: u16) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
runtime: {{workers: 1, watch: false}}
log: {{access: "off"}}
consumers:
  - name: partner
    api_keys: [{{hash: "{KEY_HASH}", label: test}}]
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams:
  app: {{targets: ["http://127.0.0.1:{upstream}"], preserve_host: true}}
routes:
  - name: secure
    match: {{path_prefix: /secure}}
    upstream: app
    policies: [{{type: api_key}}]
  - name: debug
    match: {{path: /_debug}}
    upstream: app
    public: true
    policies: [{{type: ip_filter, allow: [10.0.0.0/8]}}]
  - name: item-debug
    match: {{path: /items/_debug}}
    upstream: app
    public: true
    policies: [{{type: ip_filter, allow: [10.0.0.0/8]}}]
  - name: items
    match: {{path: "/items/{{id}}"}}
    upstream: app
    public: true
  - name: internal
    match: {{host: internal.test, path_prefix: /}}
    upstream: app
    policies: [{{type: api_key}}]
  - name: public
    match: {{path_prefix: /}}
    upstream: app
    public: true
"#
    )
}

/// Status and body of a raw HTTP/1.1 exchange.
async fn exchange(port: u16, head: &str) -> (u16, String) {
    let addr = ([127, 0, 0, 1], port).into();
    let raw = raw_exchange(addr, head.as_bytes(), Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn get(target: &str, hosts: &[&str], key: bool) -> String {
    let mut h = format!("GET {target} HTTP/1.1\r\n");
    for host in hosts {
        h.push_str(&format!("Host: {host}\r\n"));
    }
    if key {
        h.push_str(&format!("x-api-key: {KEY}\r\n"));
    }
    h.push_str("Connection: close\r\n\r\n");
    h
}

/// Encodings of `/secure/x` (the key-protected prefix).
const SECURE: &[&str] = &[
    "/%73ecure/x",
    "/%73%65%63%75%72%65/x",
    "/secur%65/x",
    "/SECURE/x",
    "/Secure/x",
    "/%53ECURE/x",
    "/secure%2fx",
    "/secure%2Fx",
    "/%2fsecure/x",
    "/%2Fsecure%2Fx",
    "//secure/x",
    "///secure/x",
    "/./secure/x",
    "/.%2fsecure/x",
    "/public/../secure/x",
    "/public/%2e%2e/secure/x",
    "/public/%2E%2E%2Fsecure/x",
    "/public/.%2e/secure/x",
    "/public/%252e%252e/secure/x",
    "/%2573ecure/x",
    "/public/..;/secure/x",
    "/secure;jsessionid=1/x",
    "/secure%3bx/x",
    "/public%2f..%2fsecure/x",
    "/secure%00/x",
    "/secure%09/x",
    "/secure%5cx",
    "/public/..%5csecure/x",
    "/secure",
    "/secure/",
    "/secure?x=1",
    "/%c0%afsecure/x",
];

/// Encodings of `/_debug` and `/items/_debug` (refused by ip_filter).
const DEBUG: &[&str] = &[
    "/_debug",
    "/%5Fdebug",
    "/%5fdebug",
    "/_%64ebug",
    "/%5F%64%65%62%75%67",
    "//_debug",
    "/_debug/",
    "/_debug//",
    "/_DEBUG",
    "/_Debug/",
    "/items/_debug",
    "/items/%5Fdebug",
    "/items/%5f%64ebug",
    "/items/_debug/",
    "/items//_debug",
    "/ITEMS/_DEBUG",
    "//items/_debug",
];

/// Host spellings of `internal.test` (key-protected), sent with a path the public route
/// would take.
const HOSTS: &[&[&str]] = &[
    &["internal.test"],
    &["INTERNAL.TEST"],
    &["internal.test."],
    &["Internal.Test.:80"],
    &["internal.test:80"],
    &["public.test", "internal.test"],
    &["internal.test", "public.test"],
    &[],
];

async fn corpus_against(stack: Stack) {
    let up_port = free_port();
    let _up = stack.start(up_port);
    wait_port(up_port, &format!("the {stack:?} upstream")).await;
    let dir = TempDir::new("canonical");
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write("palisade.yaml", &gateway_yaml(port, admin, up_port));
    let mut gw = Proc(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut gw, admin).await;

    // controls: the upstream does run its handlers, so the checks below can fail
    let (s, b) = exchange(port, &get("/secure/x", &["app.test"], true)).await;
    assert_eq!((s, b.as_str()), (200, "PROTECTED /secure/x"), "{stack:?}");
    let (s, b) = exchange(port, &get("/x", &["internal.test"], true)).await;
    assert_eq!((s, b.as_str()), (200, "INTERNAL"), "{stack:?}");
    let (s, b) = exchange(port, &get("/items/7", &["app.test"], false)).await;
    assert_eq!((s, b.as_str()), (200, "PUBLIC /items/7"), "{stack:?}");
    // good traffic in unusual but equivalent spellings still works, with credentials
    for target in ["/%73ecure/x", "//secure//x", "/secure/x/"] {
        let (s, b) = exchange(port, &get(target, &["app.test"], true)).await;
        assert_eq!(s, 200, "{stack:?} {target}: {b}");
        assert!(b.starts_with("PROTECTED"), "{stack:?} {target}: {b}");
    }
    let (s, b) = exchange(port, &get("/x", &["Internal.Test."], true)).await;
    assert_eq!((s, b.as_str()), (200, "INTERNAL"), "{stack:?}");

    // every case: what it is, the raw request, the handler that must not run, and the
    // refusals that count as the gateway's own
    let mut cases: Vec<(String, String, &str, [u16; 2])> = Vec::new();
    for target in SECURE {
        cases.push((
            target.to_string(),
            get(target, &["app.test"], false),
            "PROTECTED",
            [400, 401],
        ));
    }
    for target in DEBUG {
        cases.push((
            target.to_string(),
            get(target, &["app.test"], false),
            "DEBUG",
            [400, 403],
        ));
    }
    for hosts in HOSTS {
        cases.push((
            format!("Host {hosts:?}"),
            get("/x", hosts, false),
            "INTERNAL",
            [400, 401],
        ));
    }
    // absolute-form targets name the host too
    for (target, host) in [
        ("http://internal.test./x", "internal.test."),
        ("http://INTERNAL.test/x", "internal.test"),
        ("http://internal.test/x", "public.test"),
        ("http://public.test/x", "internal.test"),
    ] {
        cases.push((
            format!("{target} Host {host}"),
            get(target, &[host], false),
            "INTERNAL",
            [400, 401],
        ));
    }
    let mut failures = Vec::new();
    let mut passed = Vec::new();
    for (name, head, handler, refusals) in &cases {
        let (s, b) = exchange(port, head).await;
        if b.contains(handler) {
            failures.push(format!("{name} -> {s} {b}"));
        }
        if !refusals.contains(&s) {
            passed.push(format!("{name} -> {s} {b}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{stack:?}: protected handlers ran without credentials:\n{}",
        failures.join("\n")
    );
    // every case is refused by the gateway itself (nothing just happened to miss)
    assert!(
        passed.is_empty(),
        "{stack:?}: not refused by the gateway:\n{}",
        passed.join("\n")
    );
}

#[tokio::test]
async fn encodings_do_not_pass_a_go_net_http_upstream() {
    corpus_against(Stack::Go).await;
}

#[tokio::test]
async fn encodings_do_not_pass_a_python_wsgi_upstream() {
    corpus_against(Stack::Python).await;
}

#[tokio::test]
async fn encodings_do_not_pass_an_express_upstream() {
    corpus_against(Stack::Node).await;
}

/// The contract sees the canonical path: `%5Fdebug` is the literal `_debug` operation (whose
/// required parameter is then missing), not a value of the `{name}` template.
#[tokio::test]
async fn the_contract_matches_the_canonical_path() {
    let up = palisade_testkit::MockUpstream::start("app").await;
    let dir = TempDir::new("canonical-contract");
    let spec = dir.write(
        "openapi.json",
        r#"{"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
  "paths": {
    "/items/{name}": {"get": {"parameters": [{"name": "name", "in": "path", "required": true,
        "schema": {"type": "string"}}], "responses": {"200": {"description": "ok"}}}},
    "/items/_debug": {"get": {"parameters": [{"name": "token", "in": "query", "required": true,
        "schema": {"type": "string"}}], "responses": {"200": {"description": "ok"}}}}
  }}"#,
    );
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
routes:
  - name: api
    match: {{path_prefix: /}}
    upstream: app
    public: true
    policies: [{{type: contract, spec: "{}"}}]
"#,
        up.url(),
        spec.display()
    );
    let gw = crate::support::TestGateway::start_in(dir, &yaml).await;
    let addr = gw.addr().port();
    for target in [
        "/items/_debug",
        "/items/%5Fdebug",
        "/items/%5f%64ebug",
        "//items/_debug",
    ] {
        let (s, b) = exchange(addr, &get(target, &["app.test"], false)).await;
        assert_eq!(s, 400, "{target}: {b}");
        assert!(b.contains("contract.invalid_request"), "{target}: {b}");
    }
    let (s, _) = exchange(addr, &get("/items/%5Fdebug?token=t", &["app.test"], false)).await;
    assert_eq!(s, 200);
    let (s, _) = exchange(addr, &get("/items/widget", &["app.test"], false)).await;
    assert_eq!(s, 200);
    // what was checked is what went upstream
    let paths: Vec<String> = up.requests().iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(paths, ["/items/_debug?token=t", "/items/widget"]);
}

/// HTTP/2: `:authority` is canonicalised like Host, and a `host` field that differs from it
/// makes the request malformed.
#[tokio::test]
async fn http2_authority_is_canonical_and_must_agree_with_host() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = palisade_testkit::MockUpstream::start("app").await;
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
consumers:
  - name: partner
    api_keys: [{{hash: "{KEY_HASH}", label: test}}]
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
routes:
  - name: internal
    match: {{host: internal.test, path_prefix: /}}
    upstream: app
    policies: [{{type: api_key}}]
  - name: public
    match: {{path_prefix: /}}
    upstream: app
    public: true
"#,
        up.url()
    );
    let gw = crate::support::TestGateway::start(&yaml).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut send = async |uri: &str, host: Option<&str>| {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        tx.ready().await.unwrap();
        let res = tx
            .send_request(b.body(Empty::<bytes::Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    for authority in ["internal.test", "internal.test.", "INTERNAL.test.:443"] {
        let (s, b) = send(&format!("https://{authority}/x"), None).await;
        assert_eq!(s, 401, "{authority}: {b}");
    }
    let (s, b) = send("https://internal.test/x", Some("public.test")).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("request.bad_host"), "{b}");
    let (s, b) = send("https://public.test/x", Some("internal.test")).await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = send("https://public.test/x", None).await;
    assert_eq!(s, 200);
    assert_eq!(up.requests().len(), 1);
}

/// A `deny` patch of an operation (what `palisade patch` writes for an administrative or
/// debug endpoint) is a route of its own on the canonical path: the same encodings of
/// `/_debug` and `/items/_debug` reach no handler, while the parent route still serves.
#[tokio::test]
async fn a_deny_patch_holds_against_the_same_encodings() {
    let up_port = free_port();
    let _up = Stack::Python.start(up_port);
    wait_port(up_port, "the Python upstream").await;
    let dir = TempDir::new("canonical-patch");
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
runtime: {{workers: 1, watch: false}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams:
  app: {{targets: ["http://127.0.0.1:{up_port}"]}}
routes:
  - name: items
    match: {{path: "/items/{{id}}"}}
    upstream: app
    public: true
  - name: public
    match: {{path_prefix: /}}
    upstream: app
    public: true
patches:
  - answers: "disclosure.debug: GET /_debug answers without credentials"
    route: public
    operation: GET /_debug
    mode: enforce
    policies: [{{type: deny, status: 403}}]
  - answers: "disclosure.debug: GET /items/_debug answers without credentials"
    route: items
    operation: GET /items/_debug
    mode: enforce
    policies: [{{type: deny, status: 403}}]
"#
    );
    let cfg = dir.write("palisade.yaml", &yaml);
    let mut gw = Proc(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut gw, admin).await;
    // controls: the parents still serve
    let (s, b) = exchange(port, &get("/items/7", &["app.test"], false)).await;
    assert_eq!((s, b.as_str()), (200, "PUBLIC /items/7"));
    let (s, b) = exchange(port, &get("/other", &["app.test"], false)).await;
    assert_eq!((s, b.as_str()), (200, "PUBLIC /other"));
    let mut failures = Vec::new();
    for target in DEBUG {
        let (s, b) = exchange(port, &get(target, &["app.test"], false)).await;
        if b.contains("DEBUG") || ![400, 403].contains(&s) {
            failures.push(format!("{target} -> {s} {b}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (s, b) = exchange(port, &get("/%5Fdebug", &["app.test"], false)).await;
    assert_eq!(s, 403);
    assert!(b.contains("route.denied"), "{b}");
}
