//! Hot reload and graceful shutdown: zero failed requests across 20 reloads under load, a bad
//! config refused while the old one keeps serving, file watching, draining on shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use palisade_testkit::{Behaviour, HttpClient, MockUpstream};

use crate::support::{simple, TestGateway};

fn versioned(upstream: &str, v: usize) -> String {
    simple(
        upstream,
        &format!("[{{type: headers, response: {{set: {{x-config-version: \"{v}\"}}}}}}]"),
        "",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_lose_nothing() {
    let up = MockUpstream::start("a").await;
    let gw = Arc::new(TestGateway::start(&versioned(&up.url(), 0)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), gw.url("/load"));
        clients.push(tokio::spawn(async move {
            let c = HttpClient::h1();
            while !stop.load(Ordering::Relaxed) {
                match c.send(Method::GET, &url, &[], b"").await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for v in 1..=20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        gw.rewrite(&versioned(&up.url(), v)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("reload under load: {ok} requests ok, {failed} failed across 20 reloads");
    assert_eq!(failed, 0);
    assert!(ok > 100, "too little load to prove anything: {ok}");
    let r = palisade_testkit::get(&gw.url("/after")).await;
    assert_eq!(r.header("x-config-version").as_deref(), Some("20"));
    assert!(gw
        .metrics()
        .await
        .contains("palisade_config_reloads_total 20"));
}

#[tokio::test]
async fn a_bad_reload_keeps_the_old_config() {
    let up = MockUpstream::start("a").await;
    let gw = TestGateway::start(&versioned(&up.url(), 1)).await;
    let err = gw.rewrite("listeners: [oops\n").unwrap_err().to_string();
    assert!(err.contains("palisade.yaml:"), "{err}");
    let r = palisade_testkit::get(&gw.url("/")).await;
    assert_eq!(r.header("x-config-version").as_deref(), Some("1"));
    // a change that needs a restart is refused too, with the reason
    let moved = versioned(&up.url(), 2).replace("name: public", "name: renamed");
    let err = gw.rewrite(&moved).unwrap_err().to_string();
    assert!(err.contains("restart"), "{err}");
    assert!(gw
        .metrics()
        .await
        .contains("palisade_config_reload_failures_total 2"));
}

#[tokio::test]
async fn file_changes_are_picked_up() {
    let up = MockUpstream::start("a").await;
    let tg = TestGateway::start(&versioned(&up.url(), 1)).await;
    let url = tg.url("/");
    let path = tg.dir.path().join("palisade.yaml");
    let (gw, _dir) = (Arc::new(tg.gw), tg.dir);
    let _w = gw.spawn_watcher();
    tokio::time::sleep(Duration::from_millis(600)).await;
    std::fs::write(&path, versioned(&up.url(), 7)).unwrap();
    let mut seen = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = palisade_testkit::get(&url).await.header("x-config-version");
        if seen.as_deref() == Some("7") {
            break;
        }
    }
    assert_eq!(seen.as_deref(), Some("7"));
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let up = MockUpstream::start_with("slow", Behaviour::Slow(Duration::from_millis(600))).await;
    let gw = TestGateway::start(&simple(&up.url(), "[]", "")).await;
    let url = gw.url("/slow");
    let admin = gw.gw.admin_addr().unwrap();
    let inflight =
        tokio::spawn(async move { HttpClient::h1().send(Method::GET, &url, &[], b"").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let gw2 = Arc::new(gw);
    let g = gw2.clone();
    let drain = tokio::spawn(async move { g.gw.shutdown(Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // draining: not ready any more, no new connections
    assert_eq!(
        palisade_testkit::get(&format!("http://{admin}/readyz"))
            .await
            .status,
        503
    );
    assert!(
        tokio::net::TcpStream::connect(gw2.addr()).await.is_err() || {
            let out = palisade_testkit::raw_exchange(
                gw2.addr(),
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                Duration::from_millis(300),
            )
            .await;
            out.is_empty()
        }
    );
    let r = inflight.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "the in-flight request was cut");
    assert_eq!(
        drain.await.unwrap(),
        palisade_proxy::Drained {
            connections_cut: 0,
            requests_cut: 0
        }
    );
}

#[tokio::test]
async fn limits_keep_their_state_across_a_reload_unless_they_change() {
    let up = MockUpstream::start("a").await;
    let policy = |n: u32| {
        format!("[{{type: rate_limit, key: \"header:x-tenant\", limits: [{{requests: {n}, per: 1h}}]}}]")
    };
    let gw = TestGateway::start(&simple(&up.url(), &policy(3), "")).await;
    let c = HttpClient::h1();
    let statuses = |n: usize| {
        let (c, url) = (c.clone(), gw.url("/x"));
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let r = c
                    .send(Method::GET, &url, &[("x-tenant", "reload-test")], b"")
                    .await
                    .unwrap();
                out.push(r.status.as_u16());
            }
            out
        }
    };
    assert_eq!(statuses(4).await, [200, 200, 200, 429]);
    // an unrelated change (a new limit elsewhere in the file): the spent limit stays spent
    gw.rewrite(&simple(&up.url(), &policy(3), "limits: {max_headers: 90}"))
        .unwrap();
    assert_eq!(
        statuses(1).await,
        [429],
        "a reload must not hand out a fresh burst"
    );
    // the limit itself changed: it starts afresh
    gw.rewrite(&simple(&up.url(), &policy(4), "")).unwrap();
    assert_eq!(statuses(5).await, [200, 200, 200, 200, 429]);
}

/// A `jwks_file` rotated to a new key under the old `kid` and with the old size: after the
/// file-change reload only the new key is trusted; the same after a reload by signal
/// (`Gateway::reload`, what SIGHUP calls).
#[tokio::test]
async fn a_rotated_key_file_is_trusted_by_content_not_by_kid_or_size() {
    use palisade_testkit::jwt::{jwks, now_secs, SigningKey};
    let up = MockUpstream::start("a").await;
    let dir = palisade_testkit::TempDir::new("rotate");
    let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::es256("k1")).collect();
    let files: Vec<String> = keys.iter().map(|k| jwks(&[k])).collect();
    assert!(files.iter().all(|f| f.len() == files[0].len()), "same size");
    dir.write("jwks.json", &files[0]);
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
issuers:
  idp: {{issuer: "https://idp.test", audiences: [api], jwks_file: jwks.json, algorithms: [ES256]}}
routes:
  - name: api
    match: {{path_prefix: /}}
    upstream: app
    policies: [{{type: jwt, issuers: [idp]}}]
"#,
        up.url()
    );
    let tg = TestGateway::start_in(dir, &yaml).await;
    let url = tg.url("/x");
    let claims = serde_json::json!({"iss": "https://idp.test", "aud": "api", "sub": "ada",
        "exp": now_secs() + 600});
    let tokens: Vec<String> = keys.iter().map(|k| k.token("ES256", &claims)).collect();
    let status = |t: String| {
        let url = url.clone();
        async move {
            HttpClient::h1()
                .send(
                    Method::GET,
                    &url,
                    &[("authorization", &format!("Bearer {t}"))],
                    b"",
                )
                .await
                .unwrap()
                .status
                .as_u16()
        }
    };
    assert_eq!(status(tokens[0].clone()).await, 200);
    assert_eq!(status(tokens[1].clone()).await, 401);

    let jwks_path = tg.dir.path().join("jwks.json");
    let (gw, _dir) = (Arc::new(tg.gw), tg.dir);
    let _w = gw.spawn_watcher();
    tokio::time::sleep(Duration::from_millis(600)).await;
    std::fs::write(&jwks_path, &files[1]).unwrap();
    let mut ok = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if status(tokens[1].clone()).await == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the rotated key was not picked up");
    assert_eq!(
        status(tokens[0].clone()).await,
        401,
        "the old key is still trusted"
    );

    // and by an explicit reload
    std::fs::write(&jwks_path, &files[2]).unwrap();
    gw.reload().unwrap();
    assert_eq!(status(tokens[2].clone()).await, 200);
    assert_eq!(status(tokens[1].clone()).await, 401);
}

/// The access log is written, never watched: writing it does not reload the config.
#[tokio::test]
async fn writing_the_access_log_does_not_reload() {
    let up = MockUpstream::start("a").await;
    let dir = palisade_testkit::TempDir::new("log-watch");
    let log = dir.path().join("access.log");
    let yaml = simple(&up.url(), "[]", "").replace(
        r#"log: {access: "off"}"#,
        &format!(r#"log: {{access: "{}"}}"#, log.display()),
    );
    let tg = TestGateway::start_in(dir, &yaml).await;
    let url = tg.url("/x");
    let (gw, _dir) = (Arc::new(tg.gw), tg.dir);
    let _w = gw.spawn_watcher();
    for _ in 0..10 {
        assert_eq!(palisade_testkit::get(&url).await.status, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(std::fs::metadata(&log).unwrap().len() > 0);
    let m = palisade_testkit::get(&format!("http://{}/metrics", gw.admin_addr().unwrap()))
        .await
        .text();
    assert!(m.contains("palisade_config_reloads_total 0"), "{m}");
}
