use std::time::Duration;

use super::*;
use crate::FakeClock;

fn secs(s: &str) -> i64 {
    s.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .as_second()
}

fn spec(period: Period, requests: Option<u64>, bytes: Option<u64>) -> QuotaSpec {
    QuotaSpec {
        mode: Mode::Enforce,
        key: KeySpec::default(),
        period,
        timezone: None,
        requests,
        bytes: bytes.map(ByteSize),
        count: Direction::Both,
        store: StoreKind::Local,
        on_store_error: None,
        headers: None,
        max_keys: None,
    }
}

fn env(clock: &FakeClock) -> Env {
    Env {
        clock: Arc::new(clock.clone()),
        ..Env::local("r/0")
    }
}

#[test]
fn periods_follow_the_calendar_of_the_time_zone() {
    let utc = TimeZone::UTC;
    let berlin = TimeZone::get("Europe/Berlin").unwrap_or_else(|e| panic!("{e}"));
    let kolkata = TimeZone::get("Asia/Kolkata").unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        (
            "2026-11-28T12:34:56Z",
            Period::Hour,
            &utc,
            "2026-11-28T13:00:00Z",
        ),
        (
            "2026-11-28T12:34:56Z",
            Period::Day,
            &utc,
            "2026-11-29T00:00:00Z",
        ),
        (
            "2026-11-28T12:34:56Z",
            Period::Month,
            &utc,
            "2026-12-01T00:00:00Z",
        ),
        (
            "2026-12-31T23:59:59Z",
            Period::Month,
            &utc,
            "2027-01-01T00:00:00Z",
        ),
        (
            "2028-02-28T10:00:00Z",
            Period::Month,
            &utc,
            "2028-03-01T00:00:00Z",
        ),
        // Berlin is UTC+1 in winter: its day ends at 23:00 UTC
        (
            "2026-11-28T12:00:00Z",
            Period::Day,
            &berlin,
            "2026-11-28T23:00:00Z",
        ),
        (
            "2026-11-28T23:30:00Z",
            Period::Day,
            &berlin,
            "2026-11-29T23:00:00Z",
        ),
        // the day clocks go forward (29 March 2026) has 23 hours
        (
            "2026-03-29T12:00:00Z",
            Period::Day,
            &berlin,
            "2026-03-29T22:00:00Z",
        ),
        (
            "2026-03-31T12:00:00Z",
            Period::Month,
            &berlin,
            "2026-03-31T22:00:00Z",
        ),
        // hours of a half-hour zone start at :30 UTC
        (
            "2026-11-28T12:10:00Z",
            Period::Hour,
            &kolkata,
            "2026-11-28T12:30:00Z",
        ),
    ];
    for (now, period, tz, want) in cases {
        assert_eq!(
            period_end(secs(now), period, tz),
            secs(want),
            "{now} {period:?} in {tz:?}"
        );
    }
}

#[test]
fn a_request_quota_is_spent_then_renewed_with_the_period() {
    let clock = FakeClock::at_wall(secs("2026-11-28T23:59:50Z") as u64);
    let q = spec(Period::Day, Some(3), None)
        .build(&env(&clock))
        .unwrap();
    let got: Vec<bool> = (0..5).map(|_| q.decide_local("alice").allowed).collect();
    assert_eq!(got, [true, true, true, false, false]);
    let refused = q.decide_local("alice");
    assert_eq!(refused.usage.requests, 3, "refusals are not counted");
    assert_eq!(refused.reset_secs, 10);
    assert!(q.decide_local("bob").allowed, "keys are independent");
    clock.advance(Duration::from_secs(10));
    let d = q.decide_local("alice");
    assert!(d.allowed, "a new day");
    assert_eq!(d.usage.requests, 1);
    assert_eq!(d.reset_secs, 86_400);
}

#[test]
fn a_byte_quota_refuses_once_the_bytes_are_spent() {
    let clock = FakeClock::new();
    let q = spec(Period::Hour, None, Some(1000))
        .build(&env(&clock))
        .unwrap();
    assert!(q.decide_local("k").allowed);
    q.add_bytes_local("k", 600);
    assert!(q.decide_local("k").allowed, "600 of 1000 spent");
    q.add_bytes_local("k", 600);
    let d = q.decide_local("k");
    assert!(!d.allowed, "1200 of 1000 spent");
    assert_eq!(d.usage.bytes, 1200);
    let h = q.headers_for(&d);
    let get = |n: &str| {
        h.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.to_str().unwrap_or("").to_string())
    };
    assert_eq!(get("x-quota-bytes-limit").as_deref(), Some("1000"));
    assert_eq!(get("x-quota-bytes-remaining").as_deref(), Some("0"));
    assert!(get("x-quota-requests-limit").is_none());
}

#[test]
fn counters_survive_a_new_instance_through_the_state_directory() {
    let dir = std::env::temp_dir().join(format!("palisade-quota-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let clock = FakeClock::new();
    let e = Env {
        state_dir: Some(dir.clone()),
        ..env(&clock)
    };
    {
        let q = spec(Period::Month, Some(5), Some(10_000))
            .build(&e)
            .unwrap();
        for _ in 0..4 {
            assert!(q.decide_local("carol").allowed);
        }
        q.add_bytes_local("carol", 1234);
        crate::state::flush_all();
    }
    let q = spec(Period::Month, Some(5), Some(10_000))
        .build(&e)
        .unwrap();
    let u = q.usage_local("carol");
    assert_eq!((u.requests, u.bytes), (4, 1234));
    assert!(q.decide_local("carol").allowed);
    assert!(!q.decide_local("carol").allowed, "the fifth was the last");
    drop(q);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_mistakes_are_reported() {
    let mut s = spec(Period::Day, None, None);
    s.timezone = Some("Mars/Olympus".into());
    s.on_store_error = Some(OnStoreError::FailOpen);
    let errs = s.build(&Env::local("x")).unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["requests", "timezone", "on_store_error"]);
}

#[tokio::test]
async fn the_usage_list_is_bounded_and_says_when_keys_are_left_out() {
    let dir = std::env::temp_dir().join(format!("palisade-quota-list-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let clock = FakeClock::new();
    let e = Env {
        state_dir: Some(dir.clone()),
        ..env(&clock)
    };
    let q = spec(Period::Month, Some(5), None).build(&e).unwrap();
    // keys both committed to the store and only in memory, more than the list holds
    for i in 0..1500 {
        assert!(q.decide_local(&format!("k{i:05}")).allowed);
        if i == 700 {
            crate::state::flush_all();
        }
    }
    let v = q.usage(None).await.unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), USAGE_LIST_MAX);
    assert_eq!(v["more_keys"], true);
    assert_eq!(keys[0]["key"], "k00000", "the first keys by name");
    assert_eq!(keys[USAGE_LIST_MAX - 1]["key"], "k00999");
    let q2 = spec(Period::Month, Some(5), None)
        .build(&Env::local("other/0"))
        .unwrap();
    assert!(q2.decide_local("only").allowed);
    assert_eq!(q2.usage(None).await.unwrap()["more_keys"], false);
    drop(q);
    let _ = std::fs::remove_dir_all(&dir);
}
