//! The web console in a real headless Chromium (Debian's chromium and chromedriver), in
//! front of the real binary: login, the overview filled by traffic, an attack in the live
//! stream within a second, filters, the explanation of a refusal, an attack payload shown as
//! text and never run, an operator's change through the page, logout; the console's own
//! defences (CSP, framing, CSRF, cross-site login) from a plain HTTP client. Screenshots go
//! to target/test-artifacts.

use std::time::Duration;

use http::Method;
use palisade_testkit::{free_port, HttpClient, MockUpstream, Reply, TempDir};
use serde_json::json;

use crate::support::{admin_yaml, start_binary, terminate, OPERATOR_TOKEN};
use crate::webdriver::Driver;

fn yaml(port: u16, admin: u16, upstream: &str) -> String {
    format!(
        r#"{admin_section}
  reports: [audit.json]
patches:
  - answers: "PAL-AUTH-001 Operation without security"
    reason: the health check is public; only the monitoring network may call it
    route: shop
    operation: GET /shop/health
    policies: [{{type: ip_filter, allow: [10.0.0.0/8]}}]
log: {{access: "off"}}
runtime: {{watch: false}}
listeners:
  - {{name: public, listen: "127.0.0.1:{port}"}}
upstreams:
  app: {{targets: ["{upstream}"]}}
routes:
  - name: shop
    match: {{path_prefix: /shop}}
    upstream: app
    public: true
    policies:
      - {{type: threat, sensitivity: medium}}
  - name: reports
    match: {{path_prefix: /reports}}
    upstream: app
    public: true
    policies:
      - {{type: ip_filter, mode: monitor, deny: [127.0.0.0/8]}}
"#,
        admin_section = admin_yaml(&format!("127.0.0.1:{admin}")),
    )
}

async fn send(port: u16, path: &str) -> Reply {
    HttpClient::h1()
        .send(
            Method::GET,
            &format!("http://127.0.0.1:{port}{path}"),
            &[],
            b"",
        )
        .await
        .unwrap()
}

async fn post(admin: u16, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    HttpClient::h1()
        .send(
            Method::POST,
            &format!("http://127.0.0.1:{admin}{path}"),
            headers,
            body.as_bytes(),
        )
        .await
        .unwrap()
}

/// The XSS payload sent through the gateway; if the console ever ran it, the page's title
/// would change and an `img` would appear in the event views.
const PAYLOAD: &str = "%22%3E%3Cimg%20src%3Dx%20onerror%3D%22document.title%3D%27pwned%27%22%3E";

#[tokio::test]
async fn the_console_shows_attacks_live_explains_them_and_never_runs_their_payloads() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("console");
    let (port, admin) = (free_port(), free_port());
    // a real audit report of the shop's description: one finding is patched, one is not
    let spec = dir.write(
        "openapi.json",
        r#"{"openapi": "3.0.3", "info": {"title": "shop", "version": "1"},
            "paths": {"/health": {"get": {"responses": {"200": {"description": "ok"}}}},
                      "/items": {"get": {"responses": {"200": {"description": "ok"}}}}}}"#,
    );
    let report = crate::support::bin()
        .args(["audit", "--format", "json", "-o"])
        .arg(dir.path().join("audit.json"))
        .arg(&spec)
        .output()
        .unwrap();
    assert!(report.status.code().is_some(), "audit ran");
    let cfg = dir.write("palisade.yaml", &yaml(port, admin, &up.url()));
    let mut gw = start_binary(&cfg, admin).await;
    let console = format!("http://127.0.0.1:{admin}/console/");

    // the console's own headers: no framing, scripts only from itself
    let page = HttpClient::h1()
        .send(Method::GET, &console, &[], b"")
        .await
        .unwrap();
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(page.text().contains("id=\"login\""), "the login page");

    let driver = Driver::start().await;
    let b = driver.session().await;
    b.goto(&console).await;
    b.type_into("#token", "pk_wrong_token").await;
    b.click("#login-submit").await;
    b.wait_for(
        "the refused login",
        "const m = document.getElementById('login-message'); return m && m.textContent.includes('not valid')",
        Duration::from_secs(5),
    )
    .await;
    b.type_into("#token", OPERATOR_TOKEN).await;
    b.click("#login-submit").await;
    b.wait_for(
        "logged in",
        "return document.getElementById('who') && document.getElementById('who').textContent.includes('ops (operator)')",
        Duration::from_secs(5),
    )
    .await;
    // what the browser logged up to here (the refused login) is read and set aside
    let _ = b.console_log().await;
    let paint = b
        .exec(
            "const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null;",
            json!([]),
        )
        .await;
    if let Some(ms) = paint.as_f64() {
        palisade_testkit::report_figure(&format!(
            "console first contentful paint on loopback: {ms:.0} ms"
        ));
    }

    // traffic: good requests, attacks and a would-refuse fill the overview
    for _ in 0..5 {
        assert_eq!(send(port, "/shop/items").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(
            send(port, "/shop/items?q=%3Cscript%3Ealert(1)%3C/script%3E")
                .await
                .status,
            403
        );
    }
    assert_eq!(send(port, "/reports/2026").await.status, 200);
    b.exec(
        "location.hash = '#events'; location.hash = '#overview';",
        json!([]),
    )
    .await;
    b.wait_for(
        "the overview counts the refusals",
        "const c = document.querySelector('#card-refused .value'); return c && Number(c.textContent) >= 3",
        Duration::from_secs(5),
    )
    .await;
    assert!(b.text("#card-monitor .value").await.parse::<u64>().unwrap() >= 1);
    assert!(b.text("#by-code").await.contains("threat.detected"));
    assert!(b.text("#top-routes").await.contains("shop"));
    assert!(b.text("#top-clients").await.contains("127.0.0.1"));
    let bars = b
        .exec(
            "return document.querySelectorAll('#timeline-svg rect').length",
            json!([]),
        )
        .await;
    assert!(
        bars.as_u64().unwrap() >= 1,
        "the timeline draws the refusals"
    );
    b.screenshot("console-overview").await;

    // the live stream: an attack appears within a second, as text
    b.click("a[data-view=events]").await;
    b.wait_for(
        "the stream is live",
        "return document.getElementById('live-state').textContent === 'live'",
        Duration::from_secs(5),
    )
    .await;
    let before = b
        .exec(
            "return document.querySelectorAll('#event-rows tr').length",
            json!([]),
        )
        .await
        .as_u64()
        .unwrap();
    let attack = send(port, &format!("/shop/live-attack?q={PAYLOAD}")).await;
    assert_eq!(attack.status, 403);
    let took = b
        .wait_for(
            "the attack in the live stream",
            "return [...document.querySelectorAll('#event-rows td.mono')].some(td => td.textContent === 'GET /shop/live-attack')",
            Duration::from_secs(1),
        )
        .await;
    palisade_testkit::report_figure(&format!(
        "console: refusal to row in the live stream: {} ms",
        took.as_millis()
    ));
    let after = b
        .exec(
            "return document.querySelectorAll('#event-rows tr').length",
            json!([]),
        )
        .await
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 1);
    // its explanation, with the payload shown and not run
    b.click("#event-rows tr:first-child").await;
    let why = b.text("#event-why").await;
    assert!(
        why.contains("threat.detected") && why.contains("403"),
        "{why}"
    );
    let fields = b.text("#event-fields").await;
    assert!(
        fields.contains(&attack.header("x-request-id").unwrap()),
        "{fields}"
    );
    assert!(fields.contains("a query parameter"), "{fields}");
    assert!(
        fields.contains("<img src=x onerror="),
        "the excerpt shows the payload as text: {fields}"
    );
    let ran = b
        .exec(
            "return document.title === 'pwned' || document.querySelectorAll('main img').length > 0",
            json!([]),
        )
        .await;
    assert_eq!(ran, false, "the payload ran in the console");
    b.screenshot("console-event-detail").await;

    // filters: only the would-refuse of the monitored route
    b.type_into("#filters input[name=code]", "network.").await;
    b.click("#apply-filters").await;
    b.wait_for(
        "the filtered list",
        "const cells = [...document.querySelectorAll('#event-rows td.code')]; return cells.length > 0 && cells.every(td => td.textContent.startsWith('network.'))",
        Duration::from_secs(5),
    )
    .await;

    // an operator's change through the page (with the session's CSRF token)
    b.click("a[data-view=routes]").await;
    b.wait_for(
        "the routes",
        "return document.querySelector('button.mode[data-route=shop]') !== null",
        Duration::from_secs(5),
    )
    .await;
    // the route that serves /shop/items (the patch of GET /shop/health is a route of its own
    // with the same name)
    let routes = crate::support::admin_get(
        std::net::SocketAddr::from(([127, 0, 0, 1], admin)),
        "/api/v1/routes",
    )
    .await
    .json();
    let position = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "shop" && r["path"] == "/shop/**")
        .map(|r| r["position"].as_u64().unwrap())
        .unwrap();
    b.click(&format!(
        "button.mode[data-route=shop][data-position='{position}'][data-index='0']"
    ))
    .await;
    b.wait_for(
        "the policy in monitor mode",
        "return document.getElementById('routes-body').textContent.includes('monitor (set here until reload)')",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        send(port, "/shop/items?q=%3Cscript%3Ealert(1)%3C/script%3E")
            .await
            .status,
        200
    );

    // findings and the patches that answer them
    b.click("a[data-view=findings]").await;
    b.wait_for(
        "the findings",
        "return document.querySelector('table.findings') !== null",
        Duration::from_secs(5),
    )
    .await;
    let rows = b
        .exec(
            "return [...document.querySelectorAll('table.findings tbody tr')].map(tr => [...tr.children].map(td => td.textContent))",
            json!([]),
        )
        .await;
    let rows: Vec<Vec<String>> = serde_json::from_value(rows).unwrap();
    let health = rows
        .iter()
        .find(|r| r[1] == "PAL-AUTH-001" && r[2] == "GET /health")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert!(
        health[4].starts_with("#0 shop GET /shop/health"),
        "{health:?}"
    );
    let items = rows
        .iter()
        .find(|r| r[1] == "PAL-AUTH-001" && r[2] == "GET /items")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(items[4], "not patched");
    b.screenshot("console-findings").await;

    // the config, with its text for an operator
    b.click("a[data-view=config]").await;
    b.wait_for(
        "the config text",
        "return document.getElementById('config-text').value.includes('name: shop')",
        Duration::from_secs(5),
    )
    .await;
    b.screenshot("console-config").await;

    let logged: Vec<serde_json::Value> = b
        .console_log()
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .collect();
    assert!(logged.is_empty(), "the console logged errors: {logged:?}");

    // logout ends the session: the API refuses the cookie it held
    b.click("#logout").await;
    b.wait_for(
        "the login page",
        "return document.getElementById('login') !== null",
        Duration::from_secs(5),
    )
    .await;
    let status = b
        .exec_async("const done = arguments[arguments.length - 1]; fetch('/api/v1/whoami').then(r => done(r.status));")
        .await;
    assert_eq!(status, 401);
    b.quit().await;

    // CSRF: a session's change without its token, and a login from another site, refused
    let login = post(
        admin,
        "/console/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={OPERATOR_TOKEN}"),
    )
    .await;
    assert_eq!(login.status, 303);
    let set = login.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let change = post(
        admin,
        "/api/v1/routes/shop/policies/0/mode",
        &[
            ("cookie", cookie.as_str()),
            ("content-type", "application/json"),
        ],
        r#"{"mode":"enforce"}"#,
    )
    .await;
    assert_eq!(change.status, 403);
    assert_eq!(change.json()["code"], "admin.csrf");
    let cross = post(
        admin,
        "/console/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "http://evil.example"),
        ],
        &format!("token={OPERATOR_TOKEN}"),
    )
    .await;
    assert_eq!(cross.status, 403);
    assert!(cross.header("set-cookie").is_none());
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());
}
