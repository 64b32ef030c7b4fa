//! The admin API through the real binary: who may call what (tokens by role, none, wrong
//! ones), security events with their explanation and filters, the live stream, policy modes
//! turned by an operator, config validate-apply-rollback under load with no failed request,
//! and every call written to the security log without a token in it.

use std::time::Duration;

use http::Method;
use palisade_testkit::{free_port, HttpClient, MockUpstream, Reply, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    admin_yaml, api_key_hash, start_binary, terminate, OPERATOR_TOKEN, VIEWER_TOKEN,
};

const KEY: &str = "pk_admin_test_consumer_key_abcdef";

fn yaml(port: u16, admin: u16, upstream: &str, banner: &str) -> String {
    format!(
        r#"{admin_section}
log:
  access: "off"
  security: {{path: security.log}}
runtime: {{watch: false}}
listeners:
  - {{name: public, listen: "127.0.0.1:{port}"}}
upstreams:
  app: {{targets: ["{upstream}"]}}
consumers:
  - name: partner
    groups: [b2b]
    api_keys: [{{hash: "sha256:{hash}", label: laptop}}]
routes:
  - name: shop
    match: {{path_prefix: /shop}}
    upstream: app
    public: true
    policies:
      - {{type: threat, sensitivity: medium}}
      - {{type: headers, response: {{set: {{x-banner: "{banner}"}}}}}}
  - name: partner
    match: {{path_prefix: /partner}}
    upstream: app
    policies:
      - type: api_key
      - {{type: ip_filter, mode: monitor, deny: [127.0.0.0/8]}}
"#,
        admin_section = admin_yaml(&format!("127.0.0.1:{admin}")),
        hash = api_key_hash(KEY),
    )
}

async fn call(admin: u16, method: Method, path: &str, token: Option<&str>, body: &str) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        h.push(("authorization", a.as_str()));
    }
    HttpClient::h1()
        .send(
            method,
            &format!("http://127.0.0.1:{admin}{path}"),
            &h,
            body.as_bytes(),
        )
        .await
        .unwrap()
}

async fn get(admin: u16, path: &str, token: &str) -> serde_json::Value {
    let r = call(admin, Method::GET, path, Some(token), "").await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

fn problem(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(r.json()["code"], code, "{}", r.text());
}

async fn public(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    HttpClient::h1()
        .send(
            Method::GET,
            &format!("http://127.0.0.1:{port}{path}"),
            headers,
            b"",
        )
        .await
        .unwrap()
}

/// The events of `query` once `done` holds of them (at most a second of polling).
async fn until_events(
    admin: u16,
    query: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> serde_json::Value {
    let path = format!("/api/v1/events{query}");
    let mut v = get(admin, &path, VIEWER_TOKEN).await;
    for _ in 0..50 {
        if done(v["events"].as_array().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        v = get(admin, &path, VIEWER_TOKEN).await;
    }
    v
}

#[tokio::test]
async fn the_admin_api_authenticates_by_role_explains_refusals_and_audits_every_call() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("admin-api");
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write("palisade.yaml", &yaml(port, admin, &up.url(), "one"));
    let mut gw = start_binary(&cfg, admin).await;

    // health stays open to orchestrators; everything else needs a token
    assert_eq!(
        call(admin, Method::GET, "/healthz", None, "").await.status,
        200
    );
    let r = call(admin, Method::GET, "/api/v1/events", None, "").await;
    problem(&r, 401, "admin.unauthorized");
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    problem(
        &call(
            admin,
            Method::GET,
            "/api/v1/events",
            Some("pk_not_a_token"),
            "",
        )
        .await,
        401,
        "admin.unauthorized",
    );
    // the first admin listener's paths now need a token too
    problem(
        &call(admin, Method::GET, "/inventory", None, "").await,
        401,
        "admin.unauthorized",
    );
    let who = get(admin, "/api/v1/whoami", VIEWER_TOKEN).await;
    assert_eq!(
        (who["name"].as_str(), who["role"].as_str()),
        (Some("watcher"), Some("viewer"))
    );

    // an attack, refused: its event explains it, with the input's place and an excerpt
    let attack = public(port, "/shop/items?q=1%27%20OR%20%271%27%3D%271", &[]).await;
    assert_eq!(attack.status, 403);
    let rid = attack.header("x-request-id").unwrap();
    // a would-refuse (monitor mode), with a key that must never reach an event or the log
    let watched = public(port, "/partner/orders", &[("x-api-key", KEY)]).await;
    assert_eq!(watched.status, 200);

    // an event is recorded when its answer is finished: at once for a refusal, after the
    // last byte for a request that went through
    let events = until_events(admin, "", |l| l.len() >= 2).await;
    let list = events["events"].as_array().unwrap();
    let e = list
        .iter()
        .find(|e| e["request_id"] == rid.as_str())
        .unwrap_or_else(|| panic!("no event for {rid}: {events}"));
    assert_eq!(e["code"], "threat.detected");
    assert_eq!(e["kind"], "refusal");
    assert_eq!(e["mode"], "enforce");
    assert_eq!(e["route"], "shop");
    assert_eq!(e["status"], 403);
    assert_eq!(e["path"], "/shop/items");
    assert_eq!(e["location"], "a query parameter");
    assert!(e["excerpt"].as_str().unwrap().contains("OR '1'='1"), "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("sqli detected"),
        "{e}"
    );
    let m = list
        .iter()
        .find(|e| e["mode"] == "monitor")
        .unwrap_or_else(|| panic!("no would-refuse: {events}"));
    assert_eq!(m["kind"], "would_refuse");
    assert_eq!(m["consumer"], "partner");
    assert_eq!(m["monitored"], serde_json::json!(["network.ip_denied"]));
    assert_eq!(m["title"], "Client address not allowed", "{m}");
    let one = get(admin, &format!("/api/v1/events/{}", e["id"]), VIEWER_TOKEN).await;
    assert_eq!(one["request_id"], rid.as_str());

    // filters
    let n = |v: serde_json::Value| v["events"].as_array().unwrap().len();
    assert_eq!(
        n(get(admin, "/api/v1/events?code=threat.", VIEWER_TOKEN).await),
        1
    );
    assert_eq!(
        n(get(admin, "/api/v1/events?mode=monitor", VIEWER_TOKEN).await),
        1
    );
    assert_eq!(
        n(get(admin, "/api/v1/events?route=partner", VIEWER_TOKEN).await),
        1
    );
    assert_eq!(
        n(get(admin, "/api/v1/events?client=10.9.9.9", VIEWER_TOKEN).await),
        0
    );
    assert_eq!(
        n(get(admin, "/api/v1/events?consumer=partner", VIEWER_TOKEN).await),
        1
    );
    let after = e["id"].as_u64().unwrap().max(m["id"].as_u64().unwrap());
    assert_eq!(
        n(get(
            admin,
            &format!("/api/v1/events?after={after}"),
            VIEWER_TOKEN
        )
        .await),
        0
    );
    problem(
        &call(
            admin,
            Method::GET,
            "/api/v1/events?client=nope",
            Some(VIEWER_TOKEN),
            "",
        )
        .await,
        400,
        "admin.bad_request",
    );
    problem(
        &call(
            admin,
            Method::GET,
            "/api/v1/events?colour=red",
            Some(VIEWER_TOKEN),
            "",
        )
        .await,
        400,
        "admin.bad_request",
    );

    // what the gateway runs, and who may use it, without a secret
    let routes = get(admin, "/api/v1/routes", VIEWER_TOKEN).await;
    let by_name = |rs: &serde_json::Value, n: &str| {
        rs["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap()
    };
    let partner = by_name(&routes, "partner");
    assert_eq!(partner["name"], "partner");
    assert_eq!(partner["path"], "/partner/**");
    // ordered by stage, as they run: the network check before the key
    assert_eq!(partner["policies"][0]["type"], "ip_filter");
    assert_eq!(partner["policies"][0]["mode"], "monitor");
    assert_eq!(partner["policies"][1]["type"], "api_key");
    assert_eq!(by_name(&routes, "shop")["policies"][0]["type"], "threat");
    let consumers = call(
        admin,
        Method::GET,
        "/api/v1/consumers",
        Some(VIEWER_TOKEN),
        "",
    )
    .await;
    let c = &consumers.json()["consumers"][0];
    assert_eq!(c["name"], "partner");
    assert_eq!(c["api_keys"][0]["label"], "laptop");
    assert!(
        !consumers.text().contains(&api_key_hash(KEY)),
        "{}",
        consumers.text()
    );
    let ups = get(admin, "/api/v1/upstreams", VIEWER_TOKEN).await;
    assert_eq!(ups["upstreams"][0]["name"], "app");
    let overview = get(admin, "/api/v1/overview", VIEWER_TOKEN).await;
    assert!(
        overview["requests_total"].as_u64().unwrap() >= 2,
        "{overview}"
    );
    assert_eq!(overview["last_hour"]["refused"], 1, "{overview}");
    assert_eq!(overview["last_hour"]["would_refuse"], 1, "{overview}");
    assert_eq!(
        overview["last_hour"]["top_routes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // the config's text only for operators
    assert!(get(admin, "/api/v1/config", VIEWER_TOKEN)
        .await
        .get("text")
        .is_none());
    let cfg_view = get(admin, "/api/v1/config", OPERATOR_TOKEN).await;
    assert!(cfg_view["text"].as_str().unwrap().contains("name: shop"));

    // a viewer cannot change anything; an operator turns threat detection to monitor
    let mode = "/api/v1/routes/shop/policies/0/mode";
    problem(
        &call(
            admin,
            Method::POST,
            mode,
            Some(VIEWER_TOKEN),
            r#"{"mode":"monitor"}"#,
        )
        .await,
        403,
        "admin.forbidden",
    );
    let r = call(
        admin,
        Method::POST,
        mode,
        Some(OPERATOR_TOKEN),
        r#"{"mode":"monitor"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["mode"], "monitor");
    let again = public(port, "/shop/items?q=1%27%20OR%20%271%27%3D%271", &[]).await;
    assert_eq!(again.status, 200, "monitor mode lets it through");
    let routes = get(admin, "/api/v1/routes", VIEWER_TOKEN).await;
    assert_eq!(by_name(&routes, "shop")["policies"][0]["overridden"], true);
    let last = until_events(admin, "?route=shop&limit=1", |l| {
        l.first().is_some_and(|e| e["kind"] == "would_refuse")
    })
    .await;
    assert_eq!(last["events"][0]["kind"], "would_refuse", "{last}");
    let r = call(
        admin,
        Method::POST,
        mode,
        Some(OPERATOR_TOKEN),
        r#"{"mode":"enforce"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        public(port, "/shop/items?q=1%27%20OR%20%271%27%3D%271", &[])
            .await
            .status,
        403
    );
    problem(
        &call(
            admin,
            Method::POST,
            "/api/v1/routes/shop/policies/9/mode",
            Some(OPERATOR_TOKEN),
            r#"{"mode":"monitor"}"#,
        )
        .await,
        404,
        "admin.not_found",
    );
    problem(
        &call(
            admin,
            Method::POST,
            mode,
            Some(OPERATOR_TOKEN),
            r#"{"mode":"off"}"#,
        )
        .await,
        400,
        "admin.bad_request",
    );

    // the API's own description, scored by the audit
    let spec = call(
        admin,
        Method::GET,
        "/api/v1/openapi.json",
        Some(VIEWER_TOKEN),
        "",
    )
    .await;
    assert_eq!(spec.status, 200);
    let spec_file = dir.write("admin-openapi.json", &spec.text());
    let audit = crate::support::bin()
        .args(["audit", "--min-score", "90"])
        .arg(&spec_file)
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    assert!(String::from_utf8_lossy(&audit.stdout).contains("21 operations"));

    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());
    let log = std::fs::read_to_string(dir.path().join("security.log")).unwrap();
    let admin_records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "admin")
        .collect();
    assert!(admin_records
        .iter()
        .any(|r| r["admin"] == "watcher" && r["path"] == "/api/v1/events" && r["status"] == 200));
    assert!(admin_records
        .iter()
        .any(|r| r["admin"] == "ops" && r["method"] == "POST" && r["path"] == mode));
    assert!(admin_records
        .iter()
        .any(|r| r.get("admin").is_none() && r["status"] == 401));
    assert!(
        log.contains("\"event\":\"policy_mode\""),
        "mode changes are config events"
    );
    for secret in [OPERATOR_TOKEN, VIEWER_TOKEN, KEY, "pk_not_a_token"] {
        assert!(!log.contains(secret), "{secret} reached the security log");
    }
}

/// Reads from an SSE connection until `needle` arrives or `within` passes; what was read.
async fn read_until(s: &mut tokio::net::TcpStream, needle: &str, within: Duration) -> String {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(buf.get(..n).unwrap_or(&[])),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// An SSE connection and what was read of it so far (the head, maybe the first events).
async fn open_stream(
    admin: u16,
    query: &str,
    last_id: Option<u64>,
) -> (tokio::net::TcpStream, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", admin))
        .await
        .unwrap();
    let resume = last_id.map_or(String::new(), |i| format!("Last-Event-ID: {i}\r\n"));
    s.write_all(
        format!(
            "GET /api/v1/events/stream{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {VIEWER_TOKEN}\r\nAccept: text/event-stream\r\n{resume}\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_until(&mut s, "palisade security events", Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    (s, head)
}

#[tokio::test]
async fn events_stream_live_with_filters_and_resume_where_a_client_left_off() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("admin-sse");
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write("palisade.yaml", &yaml(port, admin, &up.url(), "one"));
    let mut gw = start_binary(&cfg, admin).await;

    let (mut all, _) = open_stream(admin, "", None).await;
    let (mut threats, _) = open_stream(admin, "?code=threat.detected", None).await;
    // a would-refuse first: the filtered stream must not carry it
    assert_eq!(
        public(port, "/partner/x", &[("x-api-key", KEY)])
            .await
            .status,
        200
    );
    let attack = public(port, "/shop/?q=%3Cscript%3Ealert(1)%3C/script%3E", &[]).await;
    assert_eq!(attack.status, 403);
    let rid = attack.header("x-request-id").unwrap();
    // pushed as it happens: within a second of the refusal
    let got = read_until(&mut all, &rid, Duration::from_secs(1)).await;
    assert!(got.contains("event: security"), "{got}");
    assert!(got.contains("network.ip_denied"), "{got}");
    let filtered = read_until(&mut threats, &rid, Duration::from_secs(1)).await;
    assert!(
        filtered.contains(&rid) && !filtered.contains("network.ip_denied"),
        "{filtered}"
    );

    // a client that reconnects with Last-Event-ID gets what it missed, then the live ones
    let first_id: u64 = got
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    drop(all);
    let (mut resumed, head) = open_stream(admin, "", Some(first_id)).await;
    let missed = if head.contains(&rid) {
        head
    } else {
        head + &read_until(&mut resumed, &rid, Duration::from_secs(2)).await
    };
    assert!(
        missed.contains(&rid) && !missed.contains(&format!("id: {first_id}\n")),
        "{missed}"
    );
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());
}

fn rewrite_banner(text: &str, banner: &str) -> String {
    text.lines()
        .map(|l| {
            if l.contains("x-banner") {
                format!("      - {{type: headers, response: {{set: {{x-banner: \"{banner}\"}}}}}}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_config_is_validated_applied_and_rolled_back_under_load_without_a_failed_request() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("admin-apply");
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write("palisade.yaml", &yaml(port, admin, &up.url(), "one"));
    let mut gw = start_binary(&cfg, admin).await;
    let original = std::fs::read_to_string(&cfg).unwrap();

    // steady load through every change below
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let client = HttpClient::h1();
            let (mut ok, mut failed, mut banners) =
                (0u64, Vec::new(), std::collections::BTreeSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client
                    .send(
                        Method::GET,
                        &format!("http://127.0.0.1:{port}/shop/list"),
                        &[],
                        b"",
                    )
                    .await
                {
                    Ok(r) if r.status == 200 => {
                        ok += 1;
                        banners.insert(r.header("x-banner").unwrap_or_default());
                    }
                    Ok(r) => failed.push(r.status.to_string()),
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed, banners)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // a viewer may not apply
    problem(
        &call(
            admin,
            Method::POST,
            "/api/v1/config",
            Some(VIEWER_TOKEN),
            &original,
        )
        .await,
        403,
        "admin.forbidden",
    );
    // an invalid config: every problem with its line; nothing changes
    let broken = original.replace(
        "upstream: app\n    public: true",
        "upstream: nowhere\n    public: true",
    );
    let r = call(
        admin,
        Method::POST,
        "/api/v1/config",
        Some(OPERATOR_TOKEN),
        &broken,
    )
    .await;
    problem(&r, 422, "admin.invalid_config");
    let p = &r.json()["problems"][0];
    assert!(
        p["line"].as_u64().is_some() && p["message"].as_str().unwrap().contains("nowhere"),
        "{p}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), original);
    // an operator token is not a shell on the host: a new ${cmd:} is refused before anything runs
    let marker = dir.path().join("pwned");
    let shell = original.replace(
        "consumers:\n",
        &format!(
            "consumers:\n  - {{name: sneaky, ws_users: [{{username: s, password: \"${{cmd:touch {}}}\"}}]}}\n",
            marker.display()
        ),
    );
    for q in ["?dry_run=true", ""] {
        let r = call(
            admin,
            Method::POST,
            &format!("/api/v1/config{q}"),
            Some(OPERATOR_TOKEN),
            &shell,
        )
        .await;
        problem(&r, 422, "admin.invalid_config");
        assert!(
            r.text().contains("editing the file on the host"),
            "{}",
            r.text()
        );
    }
    assert!(!marker.exists(), "the program ran");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), original);
    // a dry run validates only
    let two = rewrite_banner(&original, "two");
    let r = call(
        admin,
        Method::POST,
        "/api/v1/config?dry_run=true",
        Some(OPERATOR_TOKEN),
        &two,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["applied"].as_bool()),
        (200, Some(false)),
        "{}",
        r.text()
    );
    assert_eq!(
        public(port, "/shop/a", &[])
            .await
            .header("x-banner")
            .as_deref(),
        Some("one")
    );
    // applied: the file and the gateway change together
    let r = call(
        admin,
        Method::POST,
        "/api/v1/config",
        Some(OPERATOR_TOKEN),
        &two,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["applied"].as_bool()),
        (200, Some(true)),
        "{}",
        r.text()
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), two);
    assert_eq!(
        public(port, "/shop/a", &[])
            .await
            .header("x-banner")
            .as_deref(),
        Some("two")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // a valid config that cannot be applied without a restart: refused, the file restored
    let moved = two.replace(
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", free_port()),
    );
    let r = call(
        admin,
        Method::POST,
        "/api/v1/config",
        Some(OPERATOR_TOKEN),
        &moved,
    )
    .await;
    problem(&r, 409, "admin.not_applied");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), two);
    // rolled back to what served before the apply
    let r = call(
        admin,
        Method::POST,
        "/api/v1/config/rollback",
        Some(OPERATOR_TOKEN),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), original);
    assert_eq!(
        public(port, "/shop/a", &[])
            .await
            .header("x-banner")
            .as_deref(),
        Some("one")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed, mut banners) = (0, Vec::new(), std::collections::BTreeSet::new());
    for t in load {
        let (o, f, b) = t.await.unwrap();
        ok += o;
        failed.extend(f);
        banners.extend(b);
    }
    assert!(failed.is_empty(), "failed under load: {failed:?}");
    assert!(ok > 100, "only {ok} requests were sent");
    assert!(
        banners.contains("one") && banners.contains("two"),
        "{banners:?}"
    );
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());
    let log = std::fs::read_to_string(dir.path().join("security.log")).unwrap();
    assert!(
        log.contains("\"event\":\"applied\"") && log.contains("\"by\":\"ops\""),
        "{log}"
    );
}

fn kept_yaml(port: u16, admin: u16, upstream: &str) -> String {
    format!(
        r#"{admin_section}
log: {{access: "off"}}
runtime: {{watch: false, state_dir: state, state_key: "${{file:state.hex}}"}}
listeners:
  - {{name: public, listen: "127.0.0.1:{port}"}}
upstreams:
  app: {{targets: ["{upstream}"]}}
consumers:
  - name: partner
    api_keys: [{{hash: "sha256:{hash}", label: laptop}}]
routes:
  - name: partner
    match: {{path_prefix: /partner}}
    upstream: app
    policies:
      - type: api_key
      - {{type: quota, period: day, requests: 2}}
      - {{type: rate_limit, key: consumer, limits: [{{requests: 100, per: 1h}}]}}
"#,
        admin_section = admin_yaml(&format!("127.0.0.1:{admin}")),
        hash = api_key_hash(KEY),
    )
}

#[tokio::test]
async fn revocations_quota_resets_and_events_are_kept_sealed_across_a_restart() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("admin-kept");
    let key_file = dir.write("state.hex", &format!("{}\n", "5a".repeat(32)));
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write("palisade.yaml", &kept_yaml(port, admin, &up.url()));
    let mut gw = start_binary(&cfg, admin).await;
    let keyed = [("x-api-key", KEY)];

    // a spent quota, reset by an operator
    for want in [200, 200, 429] {
        assert_eq!(public(port, "/partner/a", &keyed).await.status, want);
    }
    // the key as the quota and the rate limit keep it (and GET /api/v1/quotas shows it)
    let usage = get(admin, "/api/v1/quotas", VIEWER_TOKEN).await;
    let of = |kind: &str| {
        usage["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["policy"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} in {usage}"))
    };
    assert_eq!(of("quota")["keys"][0]["key"], "c:partner", "{usage}");
    let rl = of("rate_limit");
    assert_eq!(rl["keys"][0]["key"], "c:partner", "{usage}");
    // two counted of 100 per hour: the quota, before it, refused the third
    assert_eq!(rl["keys"][0]["limits"][0]["remaining"], 98, "{usage}");
    let reset = r#"{"key": "c:partner"}"#;
    problem(
        &call(
            admin,
            Method::POST,
            "/api/v1/quotas/reset",
            Some(VIEWER_TOKEN),
            reset,
        )
        .await,
        403,
        "admin.forbidden",
    );
    let r = call(
        admin,
        Method::POST,
        "/api/v1/quotas/reset",
        Some(OPERATOR_TOKEN),
        reset,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let kinds: Vec<String> = r.json()["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["quota", "rate_limit"]);
    let usage = get(admin, "/api/v1/quotas?key=c:partner", VIEWER_TOKEN).await;
    let rl = usage["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["policy"] == "rate_limit")
        .cloned()
        .unwrap();
    assert_eq!(rl["keys"][0]["limits"][0]["remaining"], 100, "{usage}");
    assert_eq!(public(port, "/partner/a", &keyed).await.status, 200);

    // a revoked key is refused on the next request
    let body = format!(r#"{{"api_key": "{KEY}"}}"#);
    let r = call(
        admin,
        Method::POST,
        "/api/v1/revocations",
        Some(OPERATOR_TOKEN),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["durable"], true);
    let hash = format!("sha256:{}", api_key_hash(KEY));
    assert_eq!(r.json()["revoked"], hash.as_str());
    let refused = public(port, "/partner/a", &keyed).await;
    problem(&refused, 401, "auth.invalid_api_key");
    assert!(refused.json()["detail"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    let rid = refused.header("x-request-id").unwrap();
    let listed = get(admin, "/api/v1/revocations", VIEWER_TOKEN).await;
    assert_eq!(listed["revocations"][0]["hash"], hash.as_str());
    assert!(!listed.to_string().contains(KEY));
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());

    // sealed: neither the revoked key's hash nor an event's path is in the file in clear
    let raw = std::fs::read(dir.path().join("state/state.redb")).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains(&api_key_hash(KEY)) && !raw.contains("/partner/a"));

    // after a restart: still revoked, and the events before it are still there
    let mut gw = start_binary(&cfg, admin).await;
    problem(
        &public(port, "/partner/a", &keyed).await,
        401,
        "auth.invalid_api_key",
    );
    let events = get(admin, "/api/v1/events?route=partner", VIEWER_TOKEN).await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["request_id"] == rid.as_str()),
        "{events}"
    );
    let r = call(
        admin,
        Method::POST,
        "/api/v1/revocations/lift",
        Some(OPERATOR_TOKEN),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(public(port, "/partner/a", &keyed).await.status, 200);
    problem(
        &call(
            admin,
            Method::POST,
            "/api/v1/revocations/lift",
            Some(OPERATOR_TOKEN),
            &body,
        )
        .await,
        404,
        "admin.not_found",
    );
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());
}

#[tokio::test]
async fn a_revoked_bearer_token_or_token_id_is_refused_even_when_cached() {
    use palisade_testkit::jwt::SigningKey;
    let idp = crate::identity::Idp::start().await;
    let key = SigningKey::es256("es-revoke");
    idp.publish(&[&key]);
    let up = MockUpstream::start("app").await;
    let gw = crate::support::TestGateway::start(&format!(
        r#"{admin_section}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{up}"]}}}}
issuers:
  idp: {{issuer: "{iss}", audiences: [orders], dangerous_allow_http: true}}
routes:
  - name: orders
    match: {{path_prefix: /orders}}
    upstream: app
    policies: [{{type: jwt, issuers: [idp]}}]
"#,
        admin_section = admin_yaml("127.0.0.1:0"),
        up = up.url(),
        iss = idp.docs.url(),
    ))
    .await;
    let admin = gw.gw.admin_addr().unwrap().port();
    let token = |jti: &str| {
        key.token(
            "ES256",
            &idp.claims("bob", serde_json::json!({ "jti": jti })),
        )
    };
    let send = |t: String| {
        let url = gw.url("/orders/1");
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
        }
    };
    let (first, second) = (token("revoke-me-1"), token("keep-me-2"));
    // verified once, so later requests come from the cache
    assert_eq!(send(first.clone()).await.status, 200);
    assert_eq!(send(second.clone()).await.status, 200);

    let r = call(
        admin,
        Method::POST,
        "/api/v1/revocations",
        Some(OPERATOR_TOKEN),
        r#"{"jti": "revoke-me-1"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let refused = send(first.clone()).await;
    problem(&refused, 401, "auth.invalid_token");
    assert!(refused
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    assert_eq!(
        send(second.clone()).await.status,
        200,
        "another token id still works"
    );

    // by the token itself
    let body = serde_json::json!({ "token": second }).to_string();
    let r = call(
        admin,
        Method::POST,
        "/api/v1/revocations",
        Some(OPERATOR_TOKEN),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    problem(&send(second).await, 401, "auth.invalid_token");
    let other = token("keep-me-3");
    assert_eq!(send(other).await.status, 200);
}

/// The OTLP receiver of tests/python, on `port`; its stdout lines as they come.
fn otlp_receiver(
    port: u16,
) -> (
    crate::support::Proc,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let (proc, first, rx) = crate::support::python_server("otlp_receiver.py", &[port.to_string()]);
    assert_eq!(first["listening"], port);
    (proc, rx)
}

#[tokio::test]
async fn events_go_to_an_otlp_collector_as_logs_and_export_as_json_lines() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("admin-otlp");
    let (port, admin, collector) = (free_port(), free_port(), free_port());
    let (_receiver, records) = otlp_receiver(collector);
    let cfg = yaml(port, admin, &up.url(), "one")
        .replace(
            "\nlog:",
            "\n  otlp: {upstream: collector, service_name: edge-gw}\nlog:",
        )
        .replace(
            "upstreams:\n",
            &format!("upstreams:\n  collector: {{targets: [\"http://127.0.0.1:{collector}\"]}}\n"),
        );
    let cfg = dir.write("palisade.yaml", &cfg);
    let mut gw = start_binary(&cfg, admin).await;

    let attack = public(port, "/shop/q?text=%3Cscript%3Ealert(1)%3C/script%3E", &[]).await;
    assert_eq!(attack.status, 403);
    let rid = attack.header("x-request-id").unwrap();
    let watched = public(port, "/partner/o", &[("x-api-key", KEY)]).await;
    assert_eq!(watched.status, 200);

    // both reach the collector, read by the OpenTelemetry project's own definitions
    let got: Vec<serde_json::Value> = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        while got.len() < 2 {
            match records.recv_timeout(Duration::from_secs(10)) {
                Ok(v) => got.push(v),
                Err(_) => break,
            }
        }
        got
    })
    .await
    .unwrap();
    assert!(got.iter().all(|r| r.get("error").is_none()), "{got:?}");
    let refusal = got
        .iter()
        .find(|r| r["attributes"]["palisade.request_id"] == rid.as_str())
        .unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(refusal["service"], "edge-gw");
    assert_eq!(refusal["scope"], "palisade.security");
    assert_eq!(refusal["severity_text"], "WARN");
    assert_eq!(refusal["severity"], 13);
    assert!(refusal["time_unix_nano"].as_u64().unwrap() > 1_700_000_000_000_000_000);
    let a = &refusal["attributes"];
    assert_eq!(a["palisade.code"], "threat.detected");
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["url.path"], "/shop/q");
    assert_eq!(a["http.response.status_code"], 403);
    assert_eq!(a["client.address"], "127.0.0.1");
    assert_eq!(a["palisade.route"], "shop");
    assert_eq!(a["palisade.input.excerpt"], "<script>alert(1)</script>");
    let monitored = got
        .iter()
        .find(|r| r["attributes"]["palisade.kind"] == "would_refuse")
        .unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(monitored["severity_text"], "INFO");
    assert_eq!(
        monitored["attributes"]["palisade.monitored"],
        serde_json::json!(["network.ip_denied"])
    );
    assert!(!serde_json::to_string(&got).unwrap().contains(KEY));
    // counted once the collector's answer is back (the receiver prints before it answers)
    let mut m = String::new();
    for _ in 0..100 {
        m = call(admin, Method::GET, "/metrics", None, "").await.text();
        if m.contains("palisade_events_exported_total 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(m.contains("palisade_events_exported_total 2"), "{m}");

    // the same events as JSON lines, oldest first
    let r = call(
        admin,
        Method::GET,
        "/api/v1/events/export",
        Some(VIEWER_TOKEN),
        "",
    )
    .await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["id"].as_u64() < lines[1]["id"].as_u64());
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());
}

#[tokio::test]
async fn a_dead_collector_costs_the_request_path_nothing_and_the_loss_is_counted() {
    let up = MockUpstream::start("app").await;
    let dead = free_port();
    let gw = crate::support::TestGateway::start(&format!(
        r#"{admin_section}
  otlp: {{upstream: collector}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams:
  app: {{targets: ["{up}"]}}
  collector: {{targets: ["http://127.0.0.1:{dead}"], timeouts: {{connect: 200ms, request: 500ms}}}}
routes:
  - name: shop
    match: {{path_prefix: /}}
    upstream: app
    public: true
    policies: [{{type: threat}}]
"#,
        admin_section = admin_yaml("127.0.0.1:0"),
        up = up.url(),
    ))
    .await;
    let before = palisade_proxy::admin_export_dropped();
    for _ in 0..3 {
        let r = HttpClient::h1()
            .send(Method::GET, &gw.url("/?q=%3Cscript%3E"), &[], b"")
            .await
            .unwrap();
        assert_eq!(r.status, 403);
    }
    // four tries with growing pauses (0.2 + 0.4 + 0.8 + 1.6 s), then counted as dropped
    let mut dropped = 0;
    for _ in 0..100 {
        dropped = palisade_proxy::admin_export_dropped() - before;
        if dropped >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dropped >= 3, "dropped {dropped}");
    assert!(gw
        .metrics()
        .await
        .contains("palisade_events_export_dropped_total"));
}
