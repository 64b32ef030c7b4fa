//! Safe resends (issue 20): POST and PATCH under an `Idempotency-Key` run once upstream; a
//! resend gets the first answer again, another body under the same key 422, a concurrent
//! duplicate 409, and with `store: redis` the answers survive a gateway restart, sealed.

use std::time::Duration;

use http::Method;
use palisade_testkit::{Behaviour, HttpClient, MockUpstream, RedisServer, Reply};

use crate::support::{api_key_hash, assert_problem, TestGateway};

const ALICE: &str = "pk_test_alice_idempotency_0123456789";
const BOB: &str = "pk_test_bob_idempotency_0123456789ab";
const STATE_KEY: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

fn config(up: &str, store: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
runtime: {{state_key: "${{file:state.key}}", state_dir: state}}
{store}
consumers:
  - {{name: alice, api_keys: [{{hash: "sha256:{a}"}}]}}
  - {{name: bob, api_keys: [{{hash: "sha256:{b}"}}]}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{up}"]}}}}
routes:
  - name: orders
    match: {{path_prefix: /orders}}
    upstream: app
    policies:
      - {{type: api_key}}
      - {{type: idempotency, required: true{redis}}}
"#,
        a = api_key_hash(ALICE),
        b = api_key_hash(BOB),
        redis = if store.is_empty() {
            ""
        } else {
            ", store: redis"
        },
    )
}

async fn post(gw: &TestGateway, who: &str, key: Option<&str>, body: &str) -> Reply {
    let mut h = vec![("x-api-key", who), ("content-type", "application/json")];
    if let Some(k) = key {
        h.push(("idempotency-key", k));
    }
    HttpClient::h1()
        .send(Method::POST, &gw.url("/orders"), &h, body.as_bytes())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_resend_runs_once_and_gets_the_first_answer() {
    let up = MockUpstream::start("orders").await;
    let gw = TestGateway::start_in(keyed_dir("idem"), &config(&up.url(), "")).await;
    let order = r#"{"item": "book", "qty": 1}"#;

    let r = post(&gw, ALICE, None, order).await;
    assert_problem(&r, 400, "idempotency.key_missing");
    let r = post(&gw, ALICE, Some("\"a1\" x"), order).await;
    assert_problem(&r, 400, "idempotency.key_invalid");

    let first = post(&gw, ALICE, Some("\"8e03978e-40d5-43e8\""), order).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(up.requests().len(), 1);
    let again = post(&gw, ALICE, Some("\"8e03978e-40d5-43e8\""), order).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(
        up.requests().len(),
        1,
        "a resend never reaches the upstream"
    );
    // the same key with another request
    let r = post(
        &gw,
        ALICE,
        Some("\"8e03978e-40d5-43e8\""),
        r#"{"item": "pen"}"#,
    )
    .await;
    assert_problem(&r, 422, "idempotency.key_reused");
    // keys belong to who sent them: bob's same key is his own request
    let r = post(&gw, BOB, Some("\"8e03978e-40d5-43e8\""), order).await;
    assert_eq!(r.status, 200);
    assert!(r.header("idempotent-replayed").is_none());
    assert_eq!(up.requests().len(), 2);

    // concurrent duplicates: exactly one runs, the others wait their turn (409) or replay
    up.set(Behaviour::Slow(Duration::from_millis(400)));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = gw.url("/orders");
        tasks.push(tokio::spawn(async move {
            HttpClient::h1()
                .send(
                    Method::POST,
                    &url,
                    &[
                        ("x-api-key", ALICE),
                        ("content-type", "application/json"),
                        ("idempotency-key", "same-key-8"),
                    ],
                    br#"{"item": "lamp"}"#,
                )
                .await
                .unwrap()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 409 {
            assert_problem(&r, 409, "idempotency.in_progress");
            assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(
        up.requests().len(),
        3,
        "one of the duplicates ran: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{statuses:?}"
    );
    up.set(Behaviour::Ok);
    let r = post(&gw, ALICE, Some("same-key-8"), r#"{"item": "lamp"}"#).await;
    assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));

    // a failure is no answer: the resend runs again
    up.set(Behaviour::Status(503));
    let r = post(&gw, ALICE, Some("k-503"), order).await;
    assert_eq!(r.status, 503);
    up.set(Behaviour::Ok);
    let r = post(&gw, ALICE, Some("k-503"), order).await;
    assert_eq!(r.status, 200);
    assert!(r.header("idempotent-replayed").is_none());
    assert_eq!(up.requests().len(), 5);

    // a client that gives up after its request went upstream: the outcome is unknown, so
    // its resend is held off (409) rather than run a second time
    up.set(Behaviour::Slow(Duration::from_millis(800)));
    let body = r#"{"item": "chair"}"#;
    let raw = format!(
        "POST /orders HTTP/1.1\r\nhost: a\r\nx-api-key: {ALICE}\r\nidempotency-key: gone-1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ =
        palisade_testkit::raw_exchange(gw.addr(), raw.as_bytes(), Duration::from_millis(200)).await;
    assert_eq!(up.requests().len(), 6);
    // past the time the upstream took: the gateway dropped the request with its client
    tokio::time::sleep(Duration::from_millis(1000)).await;
    up.set(Behaviour::Ok);
    let r = post(&gw, ALICE, Some("gone-1"), body).await;
    assert_problem(&r, 409, "idempotency.in_progress");
    assert_eq!(up.requests().len(), 6, "never run twice");
}

/// A folder with the state key, readable by its owner only.
fn keyed_dir(tag: &str) -> palisade_testkit::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = palisade_testkit::TempDir::new(tag);
    let p = dir.write("state.key", STATE_KEY);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

/// With `store: redis` every instance shares the answers, they outlive a restart, and
/// Redis holds them sealed.
#[tokio::test]
async fn answers_kept_in_redis_are_shared_survive_a_restart_and_are_sealed() {
    let redis = RedisServer::start();
    let up = MockUpstream::start("orders").await;
    let yaml = config(&up.url(), &format!("redis: {{url: \"{}\"}}", redis.url()));
    let gw = TestGateway::start_in(keyed_dir("idem-redis"), &yaml).await;
    let order = r#"{"item": "secret-book-title"}"#;
    let first = post(&gw, ALICE, Some("r-1"), order).await;
    assert_eq!(first.status, 200);
    // a second instance of the same config
    let other = TestGateway::start_in(keyed_dir("idem-redis-2"), &yaml).await;
    let r = post(&other, ALICE, Some("r-1"), order).await;
    assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(r.body, first.body);
    drop(other);
    // a restart of the first
    let dir = gw.dir;
    drop(gw.gw);
    let gw = TestGateway::start_in(dir, &yaml).await;
    let r = post(&gw, ALICE, Some("r-1"), order).await;
    assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(up.requests().len(), 1);
    // sealed: neither the body kept nor the request's content in clear
    let keys = redis.command(&["KEYS", "*idem*"]);
    let key = keys
        .lines()
        .find(|l| l.contains("idem"))
        .unwrap_or_else(|| panic!("{keys}"))
        .trim()
        .to_string();
    let raw = redis.command(&["GET", &key]);
    assert!(!raw.contains("orders") && !raw.contains("status"), "{raw}");
}
