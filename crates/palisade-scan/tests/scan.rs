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
    let id = |sub: &str, staff: bool| Identity::bearer(&sample::token(flaws, sub, staff));
    Options {
        target: format!("http://{addr}"),
        a: id("alice", false),
        b: Some(id("bob", false)),
        admin: Some(id("root", true)),
        budget: 3000,
        rate: 1000,
        allow_unsafe: true,
        expired: Some(Identity::bearer(&sample::token_at(
            flaws, "alice", false, true,
        ))),
        progress: false,
        ca_pem: None,
        canary: "127.0.0.1:0".into(),
    }
}

/// Options with the canary on a known port (reports name it).
fn fixed_canary(mut o: Options) -> (Options, u16) {
    let port = palisade_testkit::free_port();
    o.canary = format!("127.0.0.1:{port}");
    (o, port)
}

/// What each flaw of the sample shows as.
fn expected(flaw: &str) -> &'static [&'static str] {
    match flaw {
        "unauthenticated" => &["auth.missing"],
        "alg_none" => &["jwt.alg_none"],
        "no_verify" => &[
            "jwt.alg_none",
            "jwt.no_signature",
            "jwt.not_verified",
            "jwt.other_key",
            "jwt.kid_injection",
            "jwt.expired",
        ],
        "kid" => &["jwt.kid_injection"],
        "weak_secret" => &["jwt.weak_secret"],
        "no_expiry" => &["jwt.expired"],
        "key_confusion" => &["jwt.key_confusion"],
        "bola" => &["bola.read"],
        "bola_write" => &["bola.write"],
        "bola_delete" => &["bola.delete"],
        "bola_action" => &["bola.write"],
        "bola_body" => &["bola.read"],
        "bfla" => &["bfla", "data.other_users"],
        "bfla_write" => &["bfla"],
        "mass_assignment" => &["mass_assignment"],
        "excess_data" => &["data.secret", "data.excess"],
        "sqli" => &["injection.sql"],
        "sqli_boolean" => &["injection.sql_boolean"],
        "sqli_time" => &["injection.sql_time"],
        "nosql" => &["injection.nosql"],
        "cmd_injection" => &["injection.command"],
        "template" => &["injection.template"],
        "traversal" => &["injection.path_traversal"],
        "xss" => &["xss.reflected"],
        "redos" => &["redos"],
        "ssrf" => &["ssrf"],
        "debug" => &["data.secret", "data.excess"],
        "user_enum" => &["auth.user_enumeration"],
        "login_unlimited" => &["auth.login_unlimited"],
        "verbose_errors" => &["errors.verbose"],
        "no_rate_limit" => &["ratelimit.none"],
        "cors" => &["cors.credentials"],
        "missing_headers" => &["headers.nosniff", "headers.cache"],
        "server_header" => &["disclosure.version"],
        other => panic!("no expectation for the flaw {other}"),
    }
}

fn checks(r: &palisade_scan::Report) -> BTreeSet<&'static str> {
    r.findings.iter().map(|f| f.check).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_flaw_alone_is_found_and_nothing_else() {
    // three scans at a time: each waits on the network more than it computes
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(3));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, flaws) in sample::Flaws::each() {
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let addr = sample::start(flaws).await;
            let started = std::time::Instant::now();
            let r = scan(&spec(), &options(&flaws, addr)).await.unwrap();
            eprintln!(
                "{name}: {} requests, {} ms",
                r.requests,
                started.elapsed().as_millis()
            );
            let got: BTreeSet<&str> = checks(&r);
            let want: BTreeSet<&str> = expected(name).iter().copied().collect();
            assert!(r.requests <= 3000);
            (got != want).then(|| format!("{name}: want {want:?}, got {got:?}\n{}", r.text()))
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        failures.extend(r.unwrap());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn every_planted_flaw_is_found() {
    let flaws = sample::Flaws::all();
    let addr = sample::start(flaws).await;
    let (o, canary_port) = fixed_canary(options(&flaws, addr));
    let r = scan(&spec(), &o).await.unwrap();
    let found = checks(&r);
    // with the error-based SQL flaw on, the boolean one is the same input: reported once
    let want: BTreeSet<&str> = sample::Flaws::each()
        .iter()
        .flat_map(|(n, _)| expected(n).iter().copied())
        .filter(|c| *c != "injection.sql_boolean" && *c != "jwt.key_confusion")
        .collect();
    assert_eq!(found, want, "{}", r.text());
    assert!(
        r.findings
            .iter()
            .all(|f| !f.evidence.is_empty() || f.check.starts_with("tls.")),
        "every finding has evidence"
    );
    assert!(r.requests <= 3000);
    // the secret is not printed whole, nor are tokens
    let text = r.text();
    assert!(
        !text.contains(flaws.secret()),
        "the guessed secret is masked"
    );
    assert!(!text.contains(&sample::token(&flaws, "alice", false)));
    // forged tokens can be told apart in the evidence
    let forged: BTreeSet<String> = r
        .findings
        .iter()
        .filter(|f| f.check.starts_with("jwt."))
        .filter_map(|f| f.evidence.first().map(|e| e.request.clone()))
        .collect();
    assert!(forged.len() >= 5, "{forged:?}");
    // the reports, with what changes between runs (port, timings) normalised
    let port = addr.port().to_string();
    let norm = |t: String| {
        let mut t = t
            .replace(&port, "PORT")
            .replace(&canary_port.to_string(), "CANARY")
            .replace(env!("CARGO_PKG_VERSION"), "VERSION");
        // tokens carry their expiry: their digests change from run to run
        let mut from = 0;
        while let Some(i) = t[from..].find("(sha256 ").map(|i| i + from) {
            t.replace_range(i + 8..i + 8 + 12, "H");
            from = i + 8;
        }
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
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    // what the scan created, it deleted
    assert!(
        r.cleanup.iter().all(|c| c.contains("deleted")),
        "{:?}",
        r.cleanup
    );
    assert!(r.requests > 300, "a real scan: {} requests", r.requests);
}

#[tokio::test]
async fn an_rs256_api_that_verifies_its_tokens_gives_no_finding() {
    let flaws = sample::Flaws {
        rs256: true,
        ..sample::Flaws::default()
    };
    let addr = sample::start(flaws).await;
    let r = scan(&spec(), &options(&flaws, addr)).await.unwrap();
    assert!(r.findings.is_empty(), "{}", r.text());
    assert!(
        r.skipped.is_empty(),
        "the JWKS was found and tried: {:?}",
        r.skipped
    );
}

#[tokio::test]
async fn an_identity_the_target_refuses_stops_the_scan() {
    let flaws = sample::Flaws::default();
    let addr = sample::start(flaws).await;
    let mut o = options(&flaws, addr);
    o.a = Identity::bearer("garbage");
    match scan(&spec(), &o).await {
        Err(palisade_scan::ScanError::Identity(m)) => {
            assert!(m.contains("identity A (--auth-a) is not accepted"), "{m}");
            assert!(m.contains("GET /me answers 401"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let mut o = options(&flaws, addr);
    o.b = Some(o.a.clone());
    assert!(matches!(
        scan(&spec(), &o).await,
        Err(palisade_scan::ScanError::Identity(_))
    ));
    let mut o = options(&flaws, addr);
    o.rate = 0;
    assert!(matches!(
        scan(&spec(), &o).await,
        Err(palisade_scan::ScanError::Usage(_))
    ));
}

#[tokio::test]
async fn unsafe_methods_need_permission_and_the_budget_is_kept() {
    let flaws = sample::Flaws::all();
    let addr = sample::start(flaws).await;
    let mut o = options(&flaws, addr);
    o.allow_unsafe = false;
    let r = scan(&spec(), &o).await.unwrap();
    assert!(
        !r.findings
            .iter()
            .any(|f| f.evidence.iter().any(|e| !e.request.starts_with("GET "))),
        "only GETs without --allow-unsafe:\n{}",
        r.text()
    );
    let mut o = options(&flaws, addr);
    o.allow_unsafe = false;
    o.budget = 40;
    let r = scan(&spec(), &o).await.unwrap();
    assert_eq!(
        r.requests, 40,
        "the count is the requests sent, within the budget"
    );
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

/// Serves the sample (every flaw on, or none with `SAMPLE_FLAWS=none`) on `SAMPLE_PORT` for
/// `SAMPLE_SECONDS`, for running other scanners against it (docs/scan.md has the table):
/// `SAMPLE_PORT=18800 cargo test -p palisade-scan --test scan serve_sample -- --ignored`.
#[tokio::test]
#[ignore = "a server for other tools, not a test"]
async fn serve_sample() {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let flaws = if var("SAMPLE_FLAWS", "all") == "none" {
        sample::Flaws::default()
    } else {
        sample::Flaws::all()
    };
    let port: u16 = var("SAMPLE_PORT", "18800").parse().unwrap();
    let addr = sample::start_on(flaws, port).await;
    for (who, sub, staff) in [
        ("A", "alice", false),
        ("B", "bob", false),
        ("admin", "root", true),
    ] {
        println!("{who}: Bearer {}", sample::token(&flaws, sub, staff));
    }
    println!("listening on {addr}");
    let secs: u64 = var("SAMPLE_SECONDS", "300").parse().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
}
