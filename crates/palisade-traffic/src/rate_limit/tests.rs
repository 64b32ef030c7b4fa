use std::time::Duration;

use super::*;
use crate::FakeClock;

fn limiter(limits: &[(u64, u64, Option<u64>)], clock: &FakeClock) -> RateLimit {
    RateLimitSpec {
        mode: Mode::Enforce,
        key: KeySpec::default(),
        limits: limits
            .iter()
            .map(|(r, secs, b)| LimitSpec {
                requests: *r,
                per: Dur(Duration::from_secs(*secs)),
                burst: *b,
            })
            .collect(),
        store: StoreKind::Local,
        on_store_error: None,
        max_keys: Some(64),
        headers: None,
    }
    .build(&Env {
        clock: Arc::new(clock.clone()),
        ..Env::local("t")
    })
    .unwrap()
}

fn admitted(l: &RateLimit, key: &str, n: usize) -> usize {
    (0..n).filter(|_| l.decide(key).allowed).count()
}

#[test]
fn burst_then_smooth_refill() {
    let c = FakeClock::new();
    let l = limiter(&[(5, 10, None)], &c);
    // the whole burst at once, then nothing
    assert_eq!(admitted(&l, "a", 8), 5);
    let d = l.decide("a");
    assert!(!d.allowed);
    assert_eq!(
        d.retry_after_nanos.div_ceil(1_000_000_000),
        2,
        "one request every 2 s"
    );
    // one request's worth of time refills one request
    c.advance(Duration::from_secs(2));
    assert_eq!(admitted(&l, "a", 3), 1);
    // a full period refills everything
    c.advance(Duration::from_secs(10));
    assert_eq!(admitted(&l, "a", 8), 5);
}

#[test]
fn keys_are_independent() {
    let c = FakeClock::new();
    let l = limiter(&[(2, 1, None)], &c);
    assert_eq!(admitted(&l, "a", 5), 2);
    assert_eq!(admitted(&l, "b", 5), 2);
}

#[test]
fn every_window_must_admit_and_refusals_do_not_count() {
    let c = FakeClock::new();
    // 10 per second, but 15 per minute
    let l = limiter(&[(10, 1, None), (15, 60, None)], &c);
    assert_eq!(admitted(&l, "k", 20), 10);
    c.advance(Duration::from_secs(1));
    // the per-second window refilled; the per-minute one has 5 left
    assert_eq!(admitted(&l, "k", 20), 5);
    c.advance(Duration::from_secs(1));
    assert_eq!(admitted(&l, "k", 20), 0, "the minute window holds");
    // refused requests were not counted against the per-second window
    let d = l.decide("k");
    assert_eq!(d.window, 1);
}

#[test]
fn explicit_burst_and_remaining() {
    let c = FakeClock::new();
    let l = limiter(&[(10, 1, Some(1))], &c);
    let d = l.decide("x");
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(
        !l.decide("x").allowed,
        "burst 1 spaces requests 100 ms apart"
    );
    c.advance(Duration::from_millis(100));
    assert!(l.decide("x").allowed);
    let l = limiter(&[(10, 1, None)], &c);
    assert_eq!(l.decide("y").remaining, 9);
}

#[test]
fn memory_is_bounded() {
    let c = FakeClock::new();
    let l = limiter(&[(1, 1, None)], &c);
    for i in 0..10_000 {
        l.decide(&format!("10.0.{}.{}", i / 256, i % 256));
    }
    assert!(l.keys() <= 64 + SHARDS, "{} keys kept", l.keys());
}

#[test]
fn a_million_distinct_clients_stay_within_max_keys() {
    // every key stays active (the clock does not move): the worst case for eviction
    let c = FakeClock::new();
    let l = RateLimitSpec {
        mode: Mode::Enforce,
        key: KeySpec::default(),
        limits: vec![LimitSpec {
            requests: 10,
            per: Dur(Duration::from_secs(3600)),
            burst: None,
        }],
        max_keys: None,
        headers: None,
        store: StoreKind::Local,
        on_store_error: None,
    }
    .build(&Env {
        clock: Arc::new(c.clone()),
        ..Env::local("t")
    })
    .unwrap();
    let mut most = 0;
    for i in 0u32..1_000_000 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        assert!(l.decide(&ip.to_string()).allowed);
        if i % 50_000 == 0 {
            most = most.max(l.keys());
        }
    }
    most = most.max(l.keys());
    assert!(most <= DEFAULT_MAX_KEYS + SHARDS, "{most} keys kept");
    assert!(
        most > DEFAULT_MAX_KEYS / 2,
        "eviction is not overeager: {most}"
    );
}

#[test]
fn bad_specs_are_reported() {
    let spec = RateLimitSpec {
        mode: Mode::Enforce,
        key: KeySpec::Many(vec![
            "client_ip".into(),
            "cookie".into(),
            "header:bad name".into(),
        ]),
        limits: vec![LimitSpec {
            requests: 0,
            per: Dur(Duration::from_secs(1)),
            burst: None,
        }],
        max_keys: None,
        store: StoreKind::Local,
        on_store_error: None,
        headers: None,
    };
    let errs = spec.build(&Env::local("t")).unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["key[1]", "key[2]", "limits[0].requests"]);
}

#[test]
fn headers_name_the_constrained_window() {
    let c = FakeClock::new();
    let l = limiter(&[(5, 10, None)], &c);
    let d = l.decide("h");
    let (policy, state) = l.header_values(&d).unwrap();
    assert_eq!(policy, "\"5-per-10s\";q=5;w=10");
    assert_eq!(state, "\"5-per-10s\";r=4;t=2");
}

#[test]
fn the_reported_limit_is_the_one_behind_retry_after() {
    let c = FakeClock::new();
    // both refuse after 2 requests; the hourly one makes the client wait far longer
    let l = limiter(&[(2, 1, None), (2, 3600, None)], &c);
    assert_eq!(admitted(&l, "k", 2), 2);
    let d = l.decide("k");
    assert!(!d.allowed);
    assert_eq!(d.window, 1);
    assert_eq!(d.retry_after_nanos.div_ceil(1_000_000_000), 1800);
}
