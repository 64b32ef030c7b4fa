//! Cluster mode: limits shared through a real redis-server by several gateway processes, and
//! what each failure mode does while Redis is away and after it comes back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use palisade_testkit::{free_port, HttpClient, MockUpstream, RedisServer, TempDir};

use crate::support::{assert_problem, bin, simple, wait_ready, Proc, TestGateway};

const RATE: u64 = 200;
const BURST: u64 = 20;
const SECONDS: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_limit_within_one_percent() {
    let redis = RedisServer::start();
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("cluster");
    let mut procs = Vec::new();
    let mut ports = Vec::new();
    for i in 0..3 {
        let (port, admin) = (free_port(), free_port());
        let yaml = format!(
            r#"admin: {{listen: "127.0.0.1:{admin}"}}
runtime: {{workers: 1, watch: false}}
log: {{access: "off"}}
redis: {{url: "{}", timeout: 250ms}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
routes:
  - name: api
    upstream: app
    public: true
    policies:
      - {{type: rate_limit, key: route, store: redis, on_store_error: fail_closed,
          limits: [{{requests: {RATE}, per: 1s, burst: {BURST}}}]}}
"#,
            redis.url(),
            up.url()
        );
        let f = dir.write(&format!("gw{i}.yaml"), &yaml);
        let mut child = Proc(bin().arg("run").arg("--config").arg(&f).spawn().unwrap());
        wait_ready(&mut child, admin).await;
        procs.push(child);
        ports.push(port);
    }

    let admitted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for port in &ports {
        for _ in 0..3 {
            let (a, r, o) = (admitted.clone(), refused.clone(), other.clone());
            let url = format!("http://127.0.0.1:{port}/items");
            tasks.push(tokio::spawn(async move {
                let c = HttpClient::h1();
                while Instant::now() < end {
                    match c.send(Method::GET, &url, &[], b"").await {
                        Ok(res) if res.status == 200 => a.fetch_add(1, Ordering::Relaxed),
                        Ok(res) if res.status == 429 => r.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("unexpected: {:?}", other.map(|r| (r.status, r.text())));
                            o.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let admitted = admitted.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    let ideal = BURST + RATE * SECONDS;
    let error = (admitted as f64 - ideal as f64) / ideal as f64 * 100.0;
    palisade_testkit::report_figure(&format!(
        "cluster accuracy: 3 instances, {RATE}/s burst {BURST} for {SECONDS} s: admitted {admitted}, ideal {ideal}, error {error:+.2} % ({refused} refused with 429)"
    ));
    assert_eq!(
        other.load(Ordering::Relaxed),
        0,
        "every answer is 200 or 429"
    );
    assert!(
        refused > admitted,
        "the clients must offer more than the limit for the test to mean anything"
    );
    assert!(error.abs() <= 1.0, "admitted {admitted}, ideal {ideal}");
    assert_eq!(
        up.requests().len() as u64,
        admitted,
        "the upstream saw only what was admitted"
    );
    drop(procs);
}

fn modes_config(upstream: &str, redis_url: &str) -> String {
    let route = |name: &str, mode: &str| {
        format!(
            r#"  - name: {name}
    match: {{path: /{name}}}
    upstream: app
    public: true
    policies:
      - {{type: rate_limit, key: route, store: redis, on_store_error: {mode},
          limits: [{{requests: 3, per: 1h}}]}}
"#
        )
    };
    format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
redis: {{url: "{redis_url}", timeout: 200ms, connect_timeout: 500ms}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{upstream}"]}}}}
routes:
{}{}{}"#,
        route("open", "fail_open"),
        route("closed", "fail_closed"),
        route("fallback", "local_fallback")
    )
}

async fn statuses(gw: &TestGateway, path: &str, n: usize) -> Vec<u16> {
    let c = HttpClient::h1();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            c.send(Method::GET, &gw.url(path), &[], b"")
                .await
                .unwrap()
                .status
                .as_u16(),
        );
    }
    out
}

#[tokio::test]
async fn each_failure_mode_does_what_it_says_and_redis_recovery_needs_no_restart() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&modes_config(&up.url(), &redis.url())).await;
    // the connection starts on first use; wait until decisions go through redis
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis
        .command(&["EXISTS", "palisade:rl:closed/0:closed"])
        .contains(":1")
    {
        let _ = statuses(&gw, "/closed", 1).await;
        assert!(Instant::now() < deadline, "redis never used");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // with redis: 3 per hour, shared (the limit of /closed was partly spent above)
    for path in ["/open", "/fallback"] {
        assert_eq!(statuses(&gw, path, 4).await, [200, 200, 200, 429], "{path}");
    }
    assert_eq!(*statuses(&gw, "/closed", 4).await.last().unwrap(), 429);

    redis.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // fail_open: the limit is not enforced while redis is away
    assert!(statuses(&gw, "/open", 6).await.iter().all(|s| *s == 200));
    // fail_closed: refused with 503 and a clear code
    let r = HttpClient::h1()
        .send(Method::GET, &gw.url("/closed"), &[], b"")
        .await
        .unwrap();
    assert_problem(&r, 503, "ratelimit.unavailable");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    // local_fallback: the same limit, per instance (this one's local state is fresh)
    assert_eq!(statuses(&gw, "/fallback", 4).await, [200, 200, 200, 429]);
    let m = gw.metrics().await;
    for (id, mode) in [
        ("open/0", "fail_open"),
        ("closed/0", "fail_closed"),
        ("fallback/0", "local_fallback"),
    ] {
        let series = format!("{{policy=\"rate_limit\",id=\"{id}\",mode=\"{mode}\"}}");
        let line = m
            .lines()
            .find(|l| l.starts_with("palisade_store_failures_total") && l.contains(&series))
            .unwrap_or_else(|| panic!("no failure series for {mode}:\n{m}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1, "{line}");
    }

    // redis comes back empty: decisions go through it again, without a restart
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = statuses(&gw, "/closed", 1).await;
        if s == [200] {
            break;
        }
        assert_eq!(s, [503]);
        assert!(
            Instant::now() < deadline,
            "no recovery after redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(statuses(&gw, "/closed", 3).await, [200, 200, 429]);
    assert!(redis
        .command(&["EXISTS", "palisade:rl:closed/0:closed"])
        .contains(":1"));
}

#[tokio::test]
async fn redis_section_errors_are_reported_by_validate() {
    let up = "http://127.0.0.1:9";
    let cases = [
        (
            r#"redis: {url: "redis://user:pw@127.0.0.1:6379"}"#,
            "redis.url: must not carry credentials",
        ),
        (
            r#"redis: {url: "http://127.0.0.1"}"#,
            "redis.url: must start with redis://",
        ),
        (
            r#"redis: {url: "redis://127.0.0.1", password_env: PALISADE_TEST_UNSET_VAR}"#,
            "redis.password_env: the environment variable `PALISADE_TEST_UNSET_VAR` is not set",
        ),
        (
            r#"redis: {url: "rediss://127.0.0.1"}"#,
            "redis.ca: rediss:// needs `ca`",
        ),
    ];
    for (extra, want) in cases {
        let dir = TempDir::new("redis-validate");
        let f = dir.write("p.yaml", &simple(up, "[]", extra));
        let err = palisade_config::load(&f).unwrap_err().to_string();
        assert!(err.contains(want), "{extra}\n{err}");
        assert!(!err.contains("pw@"), "a credential was echoed: {err}");
    }
    let dir = TempDir::new("redis-validate");
    let f = dir.write(
        "p.yaml",
        &simple(
            up,
            "[{type: rate_limit, store: redis, limits: [{requests: 1, per: 1s}]}]",
            "",
        ),
    );
    let err = palisade_config::load(&f).unwrap_err().to_string();
    assert!(
        err.contains("policies[0].store: `store: redis` needs a top-level `redis` section"),
        "{err}"
    );
}

#[tokio::test]
async fn redis_over_tls_with_a_password() {
    let dir = TempDir::new("redis-tls-gw");
    let ca = palisade_testkit::TestCa::new();
    let ca_path = ca.write_ca(dir.path());
    let (cert, key) = ca.write_server_cert(dir.path(), "redis", &["localhost"]);
    let redis =
        RedisServer::start_with(Some("tls-and-auth-pw"), Some((cert, key, ca_path.clone())));
    dir.write("redis-password", "tls-and-auth-pw\n");
    let up = MockUpstream::start("app").await;
    let yaml = simple(
        &up.url(),
        "[{type: rate_limit, key: route, store: redis, on_store_error: fail_closed, limits: [{requests: 2, per: 1h}]}]",
        &format!(
            "redis: {{url: \"rediss://localhost:{}\", ca: {}, password_file: redis-password, timeout: 500ms}}",
            redis.port(),
            ca_path.display()
        ),
    );
    let gw = TestGateway::start_in(dir, &yaml).await;
    // fail_closed: a 200 can only come from a decision Redis made
    assert_eq!(statuses(&gw, "/x", 3).await, [200, 200, 429]);
    let m = gw.metrics().await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("palisade_store_failures_total")
                && l.contains("policy=\"rate_limit\",id=\"all/0\"")
                && !l.ends_with(" 0")),
        "{m}"
    );
}

/// `ownership` with `store: redis`: what one instance learns (A was shown its patient),
/// another enforces (B is refused it); while Redis is away, `fail_closed` answers 503.
#[tokio::test]
async fn object_owners_learned_on_one_instance_are_enforced_on_another() {
    let mut redis = RedisServer::start();
    let (_app, api) = crate::scan::start("bola").await;
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
redis: {{url: "{}", timeout: 250ms}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{clinic: {{targets: ["http://127.0.0.1:{api}"]}}}}
routes:
  - name: clinic
    match: {{path_prefix: /api/v2}}
    upstream: clinic
    public: true
patches:
  - answers: "bola.read: GET /patients/{{pk}}"
    route: clinic
    operation: GET /api/v2/patients
    mode: enforce
    policies: [{{type: ownership, resource: patient, owner: "header:authorization", learn: pk, store: redis}}]
  - answers: "bola.read: GET /patients/{{pk}}"
    route: clinic
    operation: "GET /api/v2/patients/{{pk}}"
    mode: enforce
    policies: [{{type: ownership, resource: patient, owner: "header:authorization", check: {{in: path, name: pk}}, store: redis}}]
"#,
        redis.url()
    );
    let one = TestGateway::start(&yaml).await;
    let two = TestGateway::start(&yaml).await;
    let get = |url: String, auth: &'static str| async move {
        HttpClient::h1()
            .send(Method::GET, &url, &[("authorization", auth)], b"")
            .await
            .unwrap()
    };
    let (alice, bob) = ("Token tok-alice-0b1c", "Token tok-bob-77e2");
    // without the patch's knowledge, the flawed API lets B read A's patient
    let r = get(two.url("/api/v2/patients/11"), bob).await;
    assert_eq!(r.status, 200, "unknown objects go to the upstream");
    assert_eq!(get(one.url("/api/v2/patients"), alice).await.status, 200);
    let r = get(two.url("/api/v2/patients/11"), bob).await;
    assert_problem(&r, 404, "ownership.not_owner");
    assert_eq!(get(two.url("/api/v2/patients/11"), alice).await.status, 200);
    redis.kill();
    let r = get(two.url("/api/v2/patients/12"), bob).await;
    assert_problem(&r, 503, "ownership.unavailable");
}
