//! Sidecar mode (issue 19): three services on loopback, each behind the real binary as its
//! sidecar with its own SPIFFE identity from one rcgen CA. The test plays each local service:
//! it calls its sidecar's outbound listener in plain HTTP, and the services' apps are
//! recording upstreams behind the inbound listeners.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use palisade_testkit::{free_port, HttpClient, MockUpstream, Reply, TempDir, TestCa};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

use crate::support::{assert_problem, eventually, start_binary, Proc};

const TD: &str = "spiffe://mesh.test/ns/prod/sa";

fn id(service: &str) -> String {
    format!("{TD}/{service}")
}

struct Sidecar {
    dir: TempDir,
    admin: u16,
    inbound: u16,
    outbound: u16,
    app: MockUpstream,
    _proc: Option<Proc>,
}

impl Sidecar {
    /// Writes this service's SVID (atomically, key before certificate, as spiffe-helper does).
    fn write_svid(&self, (cert, key): &(String, String)) {
        for (name, text) in [("svid.key", key), ("svid.pem", cert)] {
            let tmp = self.dir.write(&format!("{name}.new"), text);
            set_private(&tmp);
            std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The local service calls `dest` through its sidecar.
    async fn call(&self, dest: &str, method: Method, path: &str) -> Reply {
        HttpClient::h1()
            .send(
                method,
                &format!("http://127.0.0.1:{}{path}", self.outbound),
                &[("host", dest)],
                b"",
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn metrics(&self) -> String {
        palisade_testkit::get(&format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .text()
    }

    /// Seconds left of the certificate `used_by`, from the expiry gauge.
    async fn expiry(&self, used_by: &str) -> Option<i64> {
        let m = self.metrics().await;
        let want = format!("palisade_certificate_expiry_seconds{{used_by=\"{used_by}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(want.as_str()))
            .and_then(|v| v.parse().ok())
    }
}

fn set_private(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn config(s: &Sidecar, allow: &str, destinations: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
mesh:
  identity: {{cert: svid.pem, key: svid.key, bundle: bundle.pem}}
  inbound:
    listen: "127.0.0.1:{inbound}"
    service: "{app}"
    allow:
{allow}
  outbound:
    listen: "127.0.0.1:{outbound}"
    destinations:
{destinations}
"#,
        admin = s.admin,
        inbound = s.inbound,
        outbound = s.outbound,
        app = s.app.url(),
    )
}

async fn sidecar(ca: &TestCa, name: &str, serial: u64) -> Sidecar {
    let s = Sidecar {
        dir: TempDir::new(&format!("mesh-{name}")),
        admin: free_port(),
        inbound: free_port(),
        outbound: free_port(),
        app: MockUpstream::start(name).await,
        _proc: None,
    };
    s.dir.write("bundle.pem", ca.pem());
    s.write_svid(&ca.svid(&id(name), serial, false));
    s
}

/// Starts the sidecar's binary on `yaml`.
async fn run(mut s: Sidecar, yaml: &str) -> Sidecar {
    let cfg = s.dir.write("palisade.yaml", yaml);
    s._proc = Some(start_binary(&cfg, s.admin).await);
    s
}

/// Calls `port` directly over TLS as a client presenting `client` (files), checking that the
/// server is `expect`; the reply and the server's leaf certificate. The Host is `payments`,
/// a destination of the orders sidecar's outbound side: a call into the inbound listener must
/// never be routed out again under the sidecar's identity (routes belong to one listener).
async fn direct(
    port: u16,
    bundle: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
    expect: &str,
    method: Method,
    path: &str,
) -> Result<(Reply, CertificateDer<'static>), String> {
    let cfg = palisade_config::tls::client_config(bundle, client, &[expect.to_string()])?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or("no server certificate")?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "payments")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = send.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        },
        leaf,
    ))
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[tokio::test]
async fn three_services_call_each_other_through_their_sidecars() {
    let ca = TestCa::new();
    let frontend = sidecar(&ca, "frontend", 1).await;
    let orders = sidecar(&ca, "orders", 2).await;
    let payments = sidecar(&ca, "payments", 3).await;
    let dest = |name: &str, port: u16, who: &str| {
        format!(
            "      {name}: {{targets: [\"https://127.0.0.1:{port}\"], identities: [\"{}\"]}}\n",
            id(who)
        )
    };
    let frontend_yaml = config(
        &frontend,
        &format!("      - {{services: [\"{TD}/*\"], methods: [GET], paths: [/health]}}"),
        &format!(
            "{}{}{}",
            dest("orders", orders.inbound, "orders"),
            dest("payments", payments.inbound, "payments"),
            // a destination whose address answers with another identity
            dest("imposter", payments.inbound, "orders"),
        ),
    );
    let orders_yaml = config(
        &orders,
        &format!(
            "      - {{services: [\"{}\"], methods: [GET], paths: [/orders, /orders/*]}}\n      - {{services: [\"{}\"], methods: [GET, POST], paths: [/orders/*]}}",
            id("frontend"),
            id("payments")
        ),
        &dest("payments", payments.inbound, "payments"),
    );
    let payments_yaml = config(
        &payments,
        &format!(
            "      - {{services: [\"{}\"], methods: [POST], paths: [/payments]}}",
            id("orders")
        ),
        &dest("orders", orders.inbound, "orders"),
    );
    let frontend = run(frontend, &frontend_yaml).await;
    let orders = run(orders, &orders_yaml).await;
    let payments = run(payments, &payments_yaml).await;

    // an allowed call: the callee's app learns the caller's verified identity
    let r = frontend.call("orders", Method::GET, "/orders").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = orders.app.requests().pop().unwrap();
    assert_eq!(seen.headers["x-palisade-subject"], id("frontend").as_str());
    assert_eq!(seen.headers["x-palisade-auth-method"], "mtls");
    let r = orders.call("payments", Method::POST, "/payments").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = payments.call("orders", Method::POST, "/orders/7").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // operations a caller is not allowed: 403 from the callee's sidecar, the app never sees it
    let before = orders.app.requests().len();
    let r = frontend.call("orders", Method::POST, "/orders/7").await;
    assert_problem(&r, 403, "auth.forbidden");
    assert!(r.text().contains("may not POST /orders/7"), "{}", r.text());
    let r = frontend.call("payments", Method::POST, "/payments").await;
    assert_problem(&r, 403, "auth.forbidden");
    let r = payments.call("orders", Method::GET, "/orders").await;
    assert_problem(&r, 403, "auth.forbidden");
    assert_eq!(orders.app.requests().len(), before);
    assert_eq!(payments.app.requests().len(), 1);

    // HTTP_PROXY=http://127.0.0.1:15001 makes clients send absolute-form requests
    let raw = palisade_testkit::raw_exchange(
        ([127, 0, 0, 1], frontend.outbound).into(),
        b"GET http://orders/orders HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    // the outbound listener is no open proxy: only the declared destinations
    let r = frontend.call("example.com", Method::GET, "/").await;
    assert_eq!(r.status, 404, "{}", r.text());
    // a destination that answers with another identity is never sent the request
    let r = frontend.call("imposter", Method::GET, "/orders").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(payments.app.requests().len(), 1);

    // callers that are not who they must be, straight at the orders sidecar
    let bundle = orders.file("bundle.pem");
    let keep = TempDir::new("mesh-callers");
    let write = |name: &str, (c, k): (String, String)| {
        let cp = keep.write(&format!("{name}.pem"), &c);
        let kp = keep.write(&format!("{name}.key"), &k);
        (cp, kp)
    };
    let expired = write("expired", ca.svid(&id("frontend"), 10, true));
    let foreign_ca = TestCa::new();
    let impostor = write("impostor", foreign_ca.svid(&id("frontend"), 11, false));
    let other_domain = write(
        "other",
        ca.svid("spiffe://elsewhere.test/ns/prod/sa/frontend", 12, false),
    );
    let genuine = write("genuine", ca.svid(&id("frontend"), 13, false));
    let ask = |client: Option<&(PathBuf, PathBuf)>| {
        let bundle = bundle.clone();
        let client = client.cloned();
        let port = orders.inbound;
        async move {
            direct(
                port,
                &bundle,
                client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
                &id("orders"),
                Method::GET,
                "/orders",
            )
            .await
            .map(|(r, _)| r.status.as_u16())
        }
    };
    assert_eq!(ask(Some(&genuine)).await, Ok(200));
    for (what, client) in [
        ("no certificate", None),
        ("an expired certificate", Some(&expired)),
        (
            "a certificate of another CA naming the frontend",
            Some(&impostor),
        ),
    ] {
        assert!(
            ask(client).await.is_err(),
            "a caller with {what} must fail the handshake"
        );
    }
    // verified by the bundle, but of another trust domain: no rule is for it
    assert_eq!(ask(Some(&other_domain)).await, Ok(403));
    assert_eq!(orders.app.requests().len(), before + 2);
    assert_eq!(payments.app.requests().len(), 1, "no call went out again");
}

/// SVIDs are short-lived and renewed by rewriting their files: the sidecars pick up the new
/// ones under load without a failed request, serve them to new connections, and an SVID
/// left to expire is loud in the metrics and fails closed.
#[tokio::test]
async fn svids_rotate_under_load_and_expiry_fails_closed() {
    let ca = TestCa::new();
    let caller = sidecar(&ca, "frontend", 1).await;
    let callee = sidecar(&ca, "orders", 2).await;
    let caller_yaml = config(
        &caller,
        &format!("      - {{services: [\"{TD}/*\"], methods: [GET]}}"),
        &format!(
            "      orders: {{targets: [\"https://127.0.0.1:{}\"], identities: [\"{}\"]}}\n",
            callee.inbound,
            id("orders")
        ),
    );
    let callee_yaml = config(
        &callee,
        &format!(
            "      - {{services: [\"{}\"], methods: [GET]}}",
            id("frontend")
        ),
        &format!(
            "      frontend: {{targets: [\"https://127.0.0.1:{}\"], identities: [\"{}\"]}}\n",
            caller.inbound,
            id("frontend")
        ),
    );
    let caller = Arc::new(run(caller, &caller_yaml).await);
    let callee = Arc::new(run(callee, &callee_yaml).await);
    assert_eq!(caller.call("orders", Method::GET, "/x").await.status, 200);

    let ok = Arc::new(AtomicUsize::new(0));
    let failed: Arc<Mutex<Vec<u16>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (caller, ok, failed, stop) = (caller.clone(), ok.clone(), failed.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = caller.call("orders", Method::GET, "/orders").await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.lock().unwrap().push(r.status.as_u16());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let renewed_callee = ca.svid(&id("orders"), 20, false);
    let renewed_caller = ca.svid(&id("frontend"), 21, false);
    callee.write_svid(&renewed_callee);
    caller.write_svid(&renewed_caller);
    // new connections get the renewed certificate
    let want = der(&renewed_callee.0);
    let genuine = (caller.file("svid.pem"), caller.file("svid.key"));
    eventually("the callee serving its renewed SVID", || {
        let (bundle, want, genuine, port) = (
            callee.file("bundle.pem"),
            want.clone(),
            genuine.clone(),
            callee.inbound,
        );
        async move {
            direct(
                port,
                &bundle,
                Some((genuine.0.as_path(), genuine.1.as_path())),
                &id("orders"),
                Method::GET,
                "/orders",
            )
            .await
            .is_ok_and(|(r, leaf)| r.status == 200 && leaf == want)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    let ok = ok.load(Ordering::Relaxed);
    assert!(failed.is_empty(), "failed during rotation: {failed:?}");
    assert!(ok > 50, "only {ok} calls during the rotation");
    let m = caller.metrics().await;
    assert!(
        m.contains("palisade_config_reloads_total 1"),
        "the caller applied its renewed SVID once: {m}"
    );

    // an SVID left to expire: the gauge says so, and the services refuse it
    assert!(caller.expiry("listener mesh-inbound").await.unwrap() > 3600);
    callee.write_svid(&ca.svid(&id("orders"), 22, true));
    eventually("the expiry gauge going negative", || async {
        callee
            .expiry("listener mesh-inbound")
            .await
            .is_some_and(|s| s < 0)
    })
    .await;
    assert!(callee.expiry("upstream mesh-to-frontend").await.unwrap() < 0);
    let r = direct(
        callee.inbound,
        &callee.file("bundle.pem"),
        Some((genuine.0.as_path(), genuine.1.as_path())),
        &id("orders"),
        Method::GET,
        "/orders",
    )
    .await;
    assert!(r.is_err(), "a peer must refuse the expired SVID");
    let r = callee.call("frontend", Method::GET, "/health").await;
    assert_eq!(r.status, 502, "the caller refuses the expired client SVID");
}

/// Problems in the `mesh` section are reported at its own lines.
#[test]
fn mesh_config_errors_point_at_the_mesh_section() {
    let ca = TestCa::new();
    let dir = TempDir::new("mesh-errors");
    dir.write("bundle.pem", ca.pem());
    let (c, k) = ca.server_cert(&["orders.local"]);
    dir.write("svid.pem", &c);
    let kp = dir.write("svid.key", &k);
    set_private(&kp);
    let yaml = r#"mesh:
  identity: {cert: svid.pem, key: svid.key, bundle: bundle.pem}
  inbound:
    listen: "127.0.0.1:0"
    service: "https://127.0.0.1:8080"
    allow:
      - {services: ["spiffe://mesh.test/*"], methods: [GET], paths: [orders]}
  outbound:
    listen: "0.0.0.0:15001"
    destinations:
      orders: {targets: ["http://127.0.0.1:9000"], identities: []}
"#;
    let path = dir.write("palisade.yaml", yaml);
    let errs = palisade_config::load(&path).unwrap_err().to_string();
    for (line, says) in [
        (2, "not an X.509-SVID"),
        (5, "plain HTTP on loopback"),
        (7, "paths[0]"),
        (9, "not a loopback address"),
        (11, "name the SPIFFE ID"),
        (11, "mutual TLS"),
    ] {
        assert!(
            errs.lines()
                .any(|l| l.contains(&format!(":{line}:")) && l.contains(says)),
            "expected `{says}` at line {line}:\n{errs}"
        );
    }
}
