//! The scanner against the sample API: every planted flaw is found with its evidence, and the
//! fixed variant gives no finding.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod sample;

use std::collections::BTreeSet;

use palisade_scan::{scan, Identity, Options};

fn spec() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sample-api.yaml"
    ))
    .unwrap()
}

fn options(flaws: &sample::Flaws, addr: std::net::SocketAddr) -> Options {
    let id = |sub: &str, admin: bool| Identity {
        authorization: format!("Bearer {}", sample::token(flaws, sub, admin)),
    };
    Options {
        target: format!("http://{addr}"),
        a: id("alice", false),
        b: Some(id("bob", false)),
        admin: Some(id("root", true)),
        budget: 400,
        rate: 200,
        allow_unsafe: true,
        expired: None,
        progress: false,
        ca_pem: None,
    }
}

#[tokio::test]
async fn every_planted_flaw_is_found() {
    let flaws = sample::Flaws::all();
    let addr = sample::start(flaws).await;
    let r = scan(&spec(), &options(&flaws, addr)).await.unwrap();
    let found: BTreeSet<&str> = r.findings.iter().map(|f| f.check).collect();
    let want: BTreeSet<&str> = [
        "auth.missing",
        "jwt.alg_none",
        "jwt.no_signature",
        "jwt.not_verified",
        "jwt.weak_secret",
        "bola.read",
        "bfla",
        "mass_assignment",
        "injection.sql",
        "ratelimit.none",
        "cors.credentials",
        "data.excess",
        "headers.nosniff",
        "headers.cache",
        "jwt.other_key",
        "jwt.expired",
        "bola.write",
        "auth.user_enumeration",
        "injection.sql_boolean",
        "injection.nosql",
        "injection.command",
        "injection.sql_time",
        "redos",
    ]
    .into_iter()
    .collect();
    assert_eq!(found, want, "{}", r.text());
    assert!(
        r.findings.iter().all(|f| !f.evidence.is_empty()),
        "every finding has evidence"
    );
    assert!(r.requests <= 400);
    // the secret is not printed whole, nor are tokens
    let text = r.text();
    assert!(
        !text.contains(flaws.secret()),
        "the guessed secret is masked"
    );
    assert!(!text.contains(&sample::token(&flaws, "alice", false)));
    // the reports, with what changes between runs (port, timings) normalised
    let port = addr.port().to_string();
    let norm = |t: String| {
        let t = t
            .replace(&port, "PORT")
            .replace(env!("CARGO_PKG_VERSION"), "VERSION");
        let mut out = String::new();
        let mut digits = String::new();
        let mut chars = t.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            if !digits.is_empty() {
                let rest: String = chars.clone().take(2).collect();
                out.push_str(if c == ' ' && rest == "ms" {
                    "N"
                } else {
                    &digits
                });
                digits.clear();
            }
            out.push(c);
        }
        out.push_str(&digits);
        out
    };
    fn zero_millis(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "millis" {
                        *x = 0.into();
                    } else {
                        zero_millis(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(zero_millis),
            _ => {}
        }
    }
    let stable = |text: String| {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        zero_millis(&mut v);
        norm(serde_json::to_string_pretty(&v).unwrap())
    };
    golden("sample.txt", &norm(r.text()));
    golden("sample.json", &stable(r.json()));
    golden("sample.sarif", &stable(r.sarif()));
    assert!(r.html().contains("<h1>Palisade scan"));
    // with the SQL flaw fixed, the verbose error handler is what shows
    let only_verbose = sample::Flaws {
        sqli: false,
        ..sample::Flaws::all()
    };
    let addr = sample::start(only_verbose).await;
    let r = scan(&spec(), &options(&only_verbose, addr)).await.unwrap();
    assert!(
        r.findings.iter().any(|f| f.check == "errors.verbose"),
        "{}",
        r.text()
    );
    assert!(!r.findings.iter().any(|f| f.check == "injection.sql"));
}

fn golden(name: &str, got: &str) {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&p, got).unwrap();
    }
    let want = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_GOLDEN=1 writes it; review it)",
            p.display()
        )
    });
    assert_eq!(
        got, want,
        "{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)"
    );
}

#[tokio::test]
async fn the_fixed_variant_gives_no_finding() {
    let flaws = sample::Flaws::default();
    let addr = sample::start(flaws).await;
    let r = scan(&spec(), &options(&flaws, addr)).await.unwrap();
    assert!(r.findings.is_empty(), "{}", r.text());
    // the secret is strong: no expired token can be minted, and none was given
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert!(r.skipped[0].contains("expired"), "{:?}", r.skipped);
}

#[tokio::test]
async fn unsafe_methods_need_permission_and_the_budget_is_kept() {
    let flaws = sample::Flaws::all();
    let addr = sample::start(flaws).await;
    let mut o = options(&flaws, addr);
    o.allow_unsafe = false;
    o.budget = 12;
    let r = scan(&spec(), &o).await.unwrap();
    assert!(r.requests <= 13, "{} requests", r.requests);
    assert!(!r.findings.iter().any(|f| f.check == "mass_assignment"));
    assert!(
        r.skipped.iter().any(|s| s.contains("budget")),
        "{:?}",
        r.skipped
    );
}

#[tokio::test]
async fn an_https_target_with_modern_tls_gives_no_finding() {
    let ca = palisade_testkit::TestCa::new();
    let (cert, key) = ca.server_cert(&["localhost"]);
    let flaws = sample::Flaws::default();
    let addr = sample::start_tls(flaws, &cert, &key).await;
    let mut o = options(&flaws, addr);
    o.target = format!("https://localhost:{}", addr.port());
    o.ca_pem = Some(ca.pem().to_string());
    let r = scan(&spec(), &o).await.unwrap();
    assert!(r.findings.is_empty(), "{}", r.text());
    assert!(
        r.requests > 20,
        "the scan ran over TLS: {} requests",
        r.requests
    );
}

/// `openssl s_server` with TLS 1.0 and RSA key exchange allowed: a legacy server to probe.
struct OpensslServer(std::process::Child);

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn legacy_protocols_and_weak_suites_are_detected() {
    let dir = palisade_testkit::TempDir::new("scan-tls");
    // an RSA certificate: the legacy suites need RSA
    let (cert, key) = (dir.path().join("legacy.pem"), dir.path().join("legacy.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (scripts/test installs it)");
    assert!(made.success());
    let ca = palisade_testkit::TestCa::new();
    let port = palisade_testkit::free_port();
    let child = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-www",
            "-min_protocol",
            "TLSv1",
        ])
        .args(["-cipher", "AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0"])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl (scripts/test installs it)");
    let _server = OpensslServer(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "openssl s_server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let v = palisade_scan::tls::legacy_versions("127.0.0.1", port)
        .await
        .unwrap();
    assert_eq!(v, ["TLS 1.0", "TLS 1.1"]);
    let w = palisade_scan::tls::weak_suite("127.0.0.1", port)
        .await
        .unwrap();
    assert_eq!(w, Some("AES128-SHA (RSA key exchange)"));

    // a modern server (rustls) refuses both
    let (c2, k2) = ca.server_cert(&["localhost"]);
    let modern = sample::start_tls(sample::Flaws::default(), &c2, &k2).await;
    assert!(
        palisade_scan::tls::legacy_versions("127.0.0.1", modern.port())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        palisade_scan::tls::weak_suite("127.0.0.1", modern.port())
            .await
            .unwrap(),
        None
    );
}
