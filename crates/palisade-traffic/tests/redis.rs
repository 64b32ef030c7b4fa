//! The Redis client and the shared rate limit against a real redis-server: commands, AUTH,
//! TLS, the GCRA script's decisions, and what happens while the server is away.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core::duration::Dur;
use palisade_core::Mode;
use palisade_testkit::{RedisServer, TempDir, TestCa};
use palisade_traffic::rate_limit::{LimitSpec, RateLimitSpec};
use palisade_traffic::redis::{RedisClient, RedisConfig, RedisError, Value};
use palisade_traffic::{Env, KeySpec, OnStoreError, StoreKind};

fn config(port: u16, password: Option<&str>) -> RedisConfig {
    RedisConfig {
        addr: format!("127.0.0.1:{port}"),
        tls: None,
        username: None,
        password: password.map(str::to_string),
        db: 0,
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(1),
    }
}

/// Calls until the background connection is up (it starts on first use).
async fn until_up(c: &RedisClient) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.call(&[b"PING"]).await {
            Ok(v) => return v,
            Err(e) => {
                assert!(Instant::now() < deadline, "never connected: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn commands_pipeline_and_server_errors() {
    let server = RedisServer::start();
    let c = RedisClient::shared(config(server.port(), None));
    assert_eq!(until_up(&c).await, Value::Simple("PONG".into()));
    // many calls at once share the connection and each gets its own answer
    let calls = (0..200).map(|i| {
        let c = c.clone();
        async move {
            let v = i.to_string();
            let k = format!("k{i}");
            c.call(&[b"SET", k.as_bytes(), v.as_bytes()]).await.unwrap();
            c.call(&[b"GET", k.as_bytes()]).await.unwrap()
        }
    });
    let got = futures_join_all(calls).await;
    for (i, v) in got.into_iter().enumerate() {
        assert_eq!(v, Value::Bulk(Some(i.to_string().into_bytes())));
    }
    match c.call(&[b"NOSUCHCOMMAND"]).await {
        Err(RedisError::Server(e)) => assert!(e.starts_with("ERR"), "{e}"),
        other => panic!("{other:?}"),
    }
    // the same configuration gives the same client
    assert!(Arc::ptr_eq(
        &c,
        &RedisClient::shared(config(server.port(), None))
    ));
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    fs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn auth_with_the_right_password_only() {
    let server = RedisServer::start_with(Some("s3cret-pw"), None);
    let good = RedisClient::shared(config(server.port(), Some("s3cret-pw")));
    assert_eq!(until_up(&good).await, Value::Simple("PONG".into()));
    let bad = RedisClient::shared(config(server.port(), Some("wrong")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        assert_eq!(bad.call(&[b"PING"]).await, Err(RedisError::Unavailable));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!bad.is_up());
}

#[tokio::test]
async fn tls_verified_against_the_configured_ca() {
    let dir = TempDir::new("redis-tls");
    let ca = TestCa::new();
    let ca_path = ca.write_ca(dir.path());
    let (cert, key) = ca.write_server_cert(dir.path(), "redis", &["localhost"]);
    let server = RedisServer::start_with(None, Some((cert, key, ca_path.clone())));
    let client_cfg = palisade_config_free_client_config(&ca_path);
    let mut cfg = config(server.port(), None);
    cfg.tls = Some((
        Arc::new(client_cfg),
        rustls_pki_types::ServerName::try_from("localhost").unwrap(),
    ));
    let c = RedisClient::shared(cfg);
    assert_eq!(until_up(&c).await, Value::Simple("PONG".into()));

    // a CA that did not sign the server's certificate: never connects
    let other = TestCa::new();
    let other_dir = TempDir::new("redis-tls-other");
    let other_path = other.write_ca(other_dir.path());
    let mut cfg = config(server.port(), None);
    cfg.tls = Some((
        Arc::new(palisade_config_free_client_config(&other_path)),
        rustls_pki_types::ServerName::try_from("localhost").unwrap(),
    ));
    let c = RedisClient::shared(cfg);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.call(&[b"PING"]).await, Err(RedisError::Unavailable));
}

fn palisade_config_free_client_config(ca: &std::path::Path) -> rustls::ClientConfig {
    let pem = std::fs::read(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let c: rustls_pki_types::CertificateDer<'static> = c.unwrap();
        roots.add(c).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

fn shared_limit(
    client: &Arc<RedisClient>,
    id: &str,
    limits: &[(u64, u64)],
    on_error: OnStoreError,
) -> palisade_traffic::rate_limit::RateLimit {
    RateLimitSpec {
        mode: Mode::Enforce,
        key: KeySpec::default(),
        limits: limits
            .iter()
            .map(|(r, s)| LimitSpec {
                requests: *r,
                per: Dur(Duration::from_secs(*s)),
                burst: None,
            })
            .collect(),
        max_keys: None,
        headers: None,
        store: StoreKind::Redis,
        on_store_error: Some(on_error),
    }
    .build(&Env {
        redis: Some(client.clone()),
        ..Env::local(id)
    })
    .unwrap()
}

#[tokio::test]
async fn shared_decisions_hold_across_instances_and_windows() {
    let server = RedisServer::start();
    let client = RedisClient::shared(config(server.port(), None));
    until_up(&client).await;
    // two policy instances with the same id share their counters, as two gateways would
    let a = shared_limit(
        &client,
        "r/0",
        &[(5, 10), (7, 3600)],
        OnStoreError::FailClosed,
    );
    let b = shared_limit(
        &client,
        "r/0",
        &[(5, 10), (7, 3600)],
        OnStoreError::FailClosed,
    );
    let mut admitted = Vec::new();
    for i in 0..8 {
        let p = if i % 2 == 0 { &a } else { &b };
        admitted.push(p.decide_shared("10.0.0.1").await.unwrap());
    }
    let allowed: Vec<bool> = admitted.iter().map(|d| d.allowed).collect();
    assert_eq!(allowed, [true, true, true, true, true, false, false, false]);
    // the fifth left nothing in the 5-per-10s window; refusals say when to come back (2 s)
    assert_eq!(admitted[4].remaining, 0);
    let retry = admitted[5].retry_after_nanos as f64 / 1e9;
    assert!((1.5..=2.01).contains(&retry), "retry after {retry}");
    // another key is independent
    assert!(a.decide_shared("10.0.0.2").await.unwrap().allowed);
    // another policy id is independent too
    let c = shared_limit(&client, "r/1", &[(5, 10)], OnStoreError::FailClosed);
    assert!(c.decide_shared("10.0.0.1").await.unwrap().allowed);
    // keys expire: the hash has a TTL no longer than the longest window
    let ttl = server.command(&["PTTL", "palisade:rl:r/0:10.0.0.1"]);
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(ttl > 0 && ttl <= 3_600_000 + 1_000, "ttl {ttl}");
}

#[tokio::test]
async fn outage_is_detected_at_once_and_recovered_from_without_restart() {
    let mut server = RedisServer::start();
    let client = RedisClient::shared(config(server.port(), None));
    until_up(&client).await;
    let p = shared_limit(&client, "o/0", &[(1000, 1)], OnStoreError::FailClosed);
    assert!(p.decide_shared("k").await.is_ok());
    server.kill();
    // the first call may still be on the dying connection; after that, failures are immediate
    let _ = p.decide_shared("k").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    for _ in 0..50 {
        assert!(p.decide_shared("k").await.is_err());
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "50 failed calls took {:?}: calls must fail at once, not wait out their timeout (500 ms each)",
        t.elapsed()
    );
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    // the script cache of the new server is empty: the client reloads it (or falls back to EVAL)
    while p.decide_shared("k").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no recovery after redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
