//! Quotas: requests and real body bytes per calendar period, usage on the admin listener and
//! in response headers, counters that survive a restart, and counters shared through Redis.

use std::time::{Duration, Instant};

use http::Method;
use palisade_testkit::{free_port, Behaviour, HttpClient, MockUpstream, RedisServer, TempDir};

use crate::support::{assert_problem, bin, simple, terminate, wait_ready, Proc, TestGateway};

async fn send(gw_url: &str, user: &str, body: &[u8]) -> palisade_testkit::Reply {
    let method = if body.is_empty() {
        Method::GET
    } else {
        Method::POST
    };
    HttpClient::h1()
        .send(method, gw_url, &[("x-user", user)], body)
        .await
        .unwrap()
}

async fn usage(admin: std::net::SocketAddr, key: &str) -> serde_json::Value {
    let r = crate::support::admin_get(admin, &format!("/api/v1/quotas?key={key}")).await;
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).unwrap()
}

/// Waits until the admin listener reports `bytes` for `key` (bytes are counted when the
/// exchange ends, just after the client has its answer).
async fn until_bytes(admin: std::net::SocketAddr, key: &str, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let u = usage(admin, key).await;
        if u["quotas"][0]["keys"][0]["bytes"] == bytes {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached {bytes} bytes: {u}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn requests_and_real_body_bytes_are_counted_and_shown() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: quota, key: \"header:x-user\", period: day, timezone: Europe/Berlin, requests: 5, bytes: 10000, count: in}]",
        "",
    ))
    .await;
    let admin = gw.gw.admin_addr().unwrap();
    let body = vec![b'x'; 4000];
    for (i, spent) in [(1u64, 4000u64), (2, 8000), (3, 12000)] {
        let r = send(&gw.url("/upload"), "alice", &body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-quota-requests-limit").as_deref(), Some("5"));
        assert_eq!(
            r.header("x-quota-requests-remaining"),
            Some((5 - i).to_string())
        );
        assert_eq!(r.header("x-quota-bytes-limit").as_deref(), Some("10000"));
        let reset: i64 = r.header("x-quota-reset").unwrap().parse().unwrap();
        assert!((1..=25 * 3600).contains(&reset), "reset {reset}");
        until_bytes(admin, "alice", spent).await;
    }
    // 12000 of 10000 bytes spent: refused, though requests remain
    let r = send(&gw.url("/upload"), "alice", b"").await;
    assert_problem(&r, 429, "quota.exceeded");
    assert_eq!(r.header("x-quota-bytes-remaining").as_deref(), Some("0"));
    assert_eq!(r.header("x-quota-requests-remaining").as_deref(), Some("2"));
    let retry: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(r.text().contains("the day quota is spent"), "{}", r.text());
    assert_eq!(
        up.requests().len(),
        3,
        "the refused request never reached the upstream"
    );
    // another user has a quota of their own
    assert_eq!(send(&gw.url("/upload"), "bob", b"hi").await.status, 200);

    let u = usage(admin, "alice").await;
    let q = &u["quotas"][0];
    assert_eq!(q["route"], "all");
    assert_eq!(q["period"], "day");
    assert_eq!(q["timezone"], "Europe/Berlin");
    assert_eq!(q["keys"][0]["requests"], 3);
    assert_eq!(q["keys"][0]["bytes"], 12000);
    assert_eq!(q["keys"][0]["bytes_remaining"], 0);
    // without a key: every key of this period
    let all: serde_json::Value = serde_json::from_slice(
        &crate::support::admin_get(admin, "/api/v1/quotas")
            .await
            .body,
    )
    .unwrap();
    let keys: Vec<&str> = all["quotas"][0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["alice", "bob"]);
}

#[tokio::test]
async fn response_bytes_count_toward_an_out_quota() {
    let up = MockUpstream::start_with("app", Behaviour::Large(300_000)).await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: quota, key: \"header:x-user\", period: hour, bytes: 500000, count: out}]",
        "",
    ))
    .await;
    let admin = gw.gw.admin_addr().unwrap();
    assert_eq!(send(&gw.url("/big"), "dl", b"").await.body.len(), 300_000);
    until_bytes(admin, "dl", 300_000).await;
    assert_eq!(send(&gw.url("/big"), "dl", b"").await.status, 200);
    until_bytes(admin, "dl", 600_000).await;
    assert_problem(
        &send(&gw.url("/big"), "dl", b"").await,
        429,
        "quota.exceeded",
    );
}

fn restart_yaml(port: u16, admin: u16, upstream: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
runtime: {{workers: 1, watch: false, drain_timeout: 5s, state_dir: state}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{upstream}"]}}}}
routes:
  - name: api
    upstream: app
    public: true
    policies: [{{type: quota, key: "header:x-user", period: month, requests: 3}}]
"#
    )
}

#[tokio::test]
async fn counters_survive_a_restart() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("quota-restart");
    let (port, admin) = (free_port(), free_port());
    let f = dir.write("p.yaml", &restart_yaml(port, admin, &up.url()));
    let url = format!("http://127.0.0.1:{port}/x");
    {
        let mut child = Proc(bin().arg("run").arg("--config").arg(&f).spawn().unwrap());
        wait_ready(&mut child, admin).await;
        assert_eq!(send(&url, "dave", b"").await.status, 200);
        assert_eq!(send(&url, "dave", b"").await.status, 200);
        terminate(&mut child, Duration::from_secs(15)).await;
    }
    assert!(dir.path().join("state/state.redb").exists());
    let mut child = Proc(bin().arg("run").arg("--config").arg(&f).spawn().unwrap());
    wait_ready(&mut child, admin).await;
    let r = send(&url, "dave", b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-quota-requests-remaining").as_deref(), Some("0"));
    assert_problem(&send(&url, "dave", b"").await, 429, "quota.exceeded");
}

#[tokio::test]
async fn instances_share_quotas_through_redis() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start("app").await;
    let yaml = simple(
        &up.url(),
        "[{type: quota, key: \"header:x-user\", period: day, requests: 4, bytes: 100000, count: in, store: redis}]",
        &format!("redis: {{url: \"{}\", timeout: 200ms}}", redis.url()),
    );
    let a = TestGateway::start(&yaml).await;
    let b = TestGateway::start(&yaml).await;
    let mut got = Vec::new();
    for i in 0..6 {
        let gw = if i % 2 == 0 { &a } else { &b };
        got.push(send(&gw.url("/x"), "erin", b"12345").await.status.as_u16());
    }
    assert_eq!(
        got,
        [200, 200, 200, 200, 429, 429],
        "4 per day across both instances"
    );
    // bytes are added in Redis too (4 admitted bodies of 5 bytes)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let u = usage(b.gw.admin_addr().unwrap(), "erin").await;
        let k = &u["quotas"][0]["keys"][0];
        if k["bytes"] == 20 {
            assert_eq!(k["requests"], 4);
            assert_eq!(u["quotas"][0]["store"], "redis");
            break;
        }
        assert!(Instant::now() < deadline, "{u}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // quotas fail closed by default while Redis is away
    redis.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_problem(
        &send(&a.url("/x"), "frank", b"").await,
        503,
        "quota.unavailable",
    );
}

/// A second process on the state directory of a running one refuses to start, saying why,
/// instead of serving with counters of its own.
#[tokio::test]
async fn a_second_process_on_the_same_state_directory_refuses_to_start() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("quota-shared-state");
    let (port, admin) = (free_port(), free_port());
    let first = dir.write("a.yaml", &restart_yaml(port, admin, &up.url()));
    let mut child = Proc(
        bin()
            .arg("run")
            .arg("--config")
            .arg(&first)
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut child, admin).await;
    let second = dir.write("b.yaml", &restart_yaml(free_port(), free_port(), &up.url()));
    let out = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || bin().arg("run").arg("--config").arg(&second).output()),
    )
    .await
    .expect("the second process did not exit")
    .unwrap()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("another Palisade process"), "{err}");
    assert!(err.contains("routes `api`"), "{err}");
    // the first goes on serving
    let url = format!("http://127.0.0.1:{port}/x");
    assert_eq!(send(&url, "erin", b"").await.status, 200);
}
