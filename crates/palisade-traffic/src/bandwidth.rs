//! `bandwidth`: bytes per second per key for request and response bodies, enforced by pacing
//! the streams (never by refusing them).
//!
//! Each direction is a byte bucket (GCRA on bytes): a chunk of a body may pass once the key's
//! bucket has room for it, else it waits. Every exchange of a key draws on the same bucket, so
//! two parallel downloads of one consumer share its rate. The proxy asks before each chunk (at
//! most 16 KiB), so pacing is smooth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::policies::SpecError;
use palisade_core::{
    BodyDirection, Exchange, Mode, Outcome, Pace, Phase, PhaseSet, Policy, RequestHead, Stage,
    Verdict,
};
use serde::Deserialize;

use crate::key::{Key, KeySpec};
use crate::size::ByteSize;
use crate::store::make_room;
use crate::{Clock, Env};

/// One direction's rate.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Bytes per second, e.g. `1MiB` or `250000`.
    pub bytes_per_second: ByteSize,
    /// Bytes that may pass at once before pacing starts. Default a tenth of a second's worth,
    /// at least 16 KiB.
    #[serde(default)]
    pub burst: Option<ByteSize>,
}

/// Config of the `bandwidth` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSpec {
    /// Pacing has no monitor form: `enforce` only.
    #[serde(default)]
    pub mode: Mode,
    /// Whose bandwidth: `consumer` (default), `client_ip`, `route`, `header:NAME`, or a list.
    #[serde(default = "consumer_key")]
    pub key: KeySpec,
    /// Request bodies (uploads).
    #[serde(default)]
    pub request: Option<RateSpec>,
    /// Response bodies (downloads).
    #[serde(default)]
    pub response: Option<RateSpec>,
    /// Most keys remembered; idle ones are dropped first. Default 100000.
    #[serde(default)]
    pub max_keys: Option<usize>,
}

fn consumer_key() -> KeySpec {
    KeySpec::One("consumer".into())
}

#[derive(Debug)]
struct Bucket {
    /// Nanoseconds per byte, scaled by 2^16 for precision at high rates.
    ns_per_byte_x16: u128,
    tolerance: u64,
    tats: Arc<Mutex<HashMap<String, u64>>>,
    max_keys: usize,
}

impl Bucket {
    fn new(spec: &RateSpec, max_keys: usize, env: &Env, what: &str) -> Bucket {
        let rate = spec.bytes_per_second.0.max(1);
        let burst = spec
            .burst
            .map_or_else(|| (rate / 10).max(16 * 1024), |b| b.0);
        let ns_per_byte_x16 = (1_000_000_000u128 << 16) / u128::from(rate);
        Bucket {
            ns_per_byte_x16,
            tolerance: cost(ns_per_byte_x16, burst),
            tats: env.state(
                "bandwidth",
                &format!("{what}|{rate}|{burst}|{max_keys}"),
                || Mutex::new(HashMap::new()),
            ),
            max_keys,
        }
    }

    /// Reserves `bytes` for `key` at `now`; returns the wait before they may pass.
    fn reserve(&self, key: &str, now: u64, bytes: u64) -> u64 {
        let mut m = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(key) {
            make_room(&mut m, self.max_keys, |tat| *tat <= now);
        }
        let tat = m.entry(key.to_string()).or_insert(0);
        let start = (*tat).max(now);
        let wait = start.saturating_sub(now.saturating_add(self.tolerance));
        *tat = start.saturating_add(cost(self.ns_per_byte_x16, bytes));
        wait
    }

    fn keys(&self) -> usize {
        self.tats.lock().map(|m| m.len()).unwrap_or(0)
    }
}

fn cost(ns_per_byte_x16: u128, bytes: u64) -> u64 {
    u64::try_from((ns_per_byte_x16 * u128::from(bytes)) >> 16).unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct Inner {
    request: Option<Bucket>,
    response: Option<Bucket>,
    clock: Arc<dyn Clock>,
}

/// The runtime `bandwidth` policy.
#[derive(Debug)]
pub struct Bandwidth {
    key: Key,
    inner: Arc<Inner>,
}

impl BandwidthSpec {
    /// Builds the policy, reporting every problem.
    pub fn build(&self, env: &Env) -> Result<Bandwidth, Vec<SpecError>> {
        let mut errors = Vec::new();
        let key = Key::parse(&self.key, &mut errors);
        if self.mode == Mode::Monitor {
            errors.push(SpecError::new(
                "mode",
                "bandwidth paces bodies and refuses nothing, so it has no monitor mode",
            ));
        }
        if self.request.is_none() && self.response.is_none() {
            errors.push(SpecError::new(
                "response",
                "set `request`, `response` or both, e.g. response: {bytes_per_second: 1MiB}",
            ));
        }
        for (name, r) in [("request", &self.request), ("response", &self.response)] {
            if let Some(r) = r {
                if r.bytes_per_second.0 == 0 {
                    errors.push(SpecError::new(
                        format!("{name}.bytes_per_second"),
                        "must be at least 1",
                    ));
                }
            }
        }
        let max_keys = self.max_keys.unwrap_or(crate::rate_limit::DEFAULT_MAX_KEYS);
        if max_keys == 0 {
            errors.push(SpecError::new("max_keys", "must be at least 1"));
        }
        match key {
            Some(key) if errors.is_empty() => Ok(Bandwidth {
                key,
                inner: Arc::new(Inner {
                    request: self
                        .request
                        .as_ref()
                        .map(|r| Bucket::new(r, max_keys, env, &format!("request|{:?}", self.key))),
                    response: self.response.as_ref().map(|r| {
                        Bucket::new(r, max_keys, env, &format!("response|{:?}", self.key))
                    }),
                    clock: env.clock.clone(),
                }),
            }),
            _ => Err(errors),
        }
    }
}

impl Bandwidth {
    /// The pacer of one key's bodies.
    pub fn pacer(&self, key: String) -> Arc<dyn Pace> {
        Arc::new(KeyPacer {
            inner: self.inner.clone(),
            key,
        })
    }

    /// Keys remembered now (both directions).
    pub fn keys(&self) -> usize {
        self.inner.request.as_ref().map_or(0, Bucket::keys)
            + self.inner.response.as_ref().map_or(0, Bucket::keys)
    }
}

#[derive(Debug)]
struct KeyPacer {
    inner: Arc<Inner>,
    key: String,
}

impl Pace for KeyPacer {
    fn reserve(&self, dir: BodyDirection, bytes: u64) -> Duration {
        let bucket = match dir {
            BodyDirection::Request => &self.inner.request,
            BodyDirection::Response => &self.inner.response,
        };
        match bucket {
            Some(b) => {
                Duration::from_nanos(b.reserve(&self.key, self.inner.clock.now_nanos(), bytes))
            }
            None => Duration::ZERO,
        }
    }
}

#[async_trait::async_trait]
impl Policy for Bandwidth {
    fn kind(&self) -> &'static str {
        "bandwidth"
    }
    fn stage(&self) -> Stage {
        Stage::Quota
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestHead)
    }
    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let key = self.key.of(req, x);
        x.pacers.push(self.pacer(key));
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeClock;

    fn policy(clock: &FakeClock, rate: u64, burst: u64) -> Bandwidth {
        BandwidthSpec {
            mode: Mode::Enforce,
            key: KeySpec::default(),
            request: None,
            response: Some(RateSpec {
                bytes_per_second: ByteSize(rate),
                burst: Some(ByteSize(burst)),
            }),
            max_keys: Some(2),
        }
        .build(&Env {
            clock: Arc::new(clock.clone()),
            ..Env::local("b/0")
        })
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn chunks_wait_for_the_rate_after_the_burst() {
        let clock = FakeClock::new();
        let b = policy(&clock, 1_000_000, 100_000);
        let p = b.pacer("alice".into());
        let ms = |d: Duration| d.as_millis();
        // 100 kB of burst pass at once, then each 100 kB waits 100 ms more
        assert_eq!(ms(p.reserve(BodyDirection::Response, 100_000)), 0);
        assert_eq!(ms(p.reserve(BodyDirection::Response, 100_000)), 0);
        assert_eq!(ms(p.reserve(BodyDirection::Response, 100_000)), 100);
        assert_eq!(ms(p.reserve(BodyDirection::Response, 100_000)), 200);
        // a second download of the same key shares the bucket
        let p2 = b.pacer("alice".into());
        assert_eq!(ms(p2.reserve(BodyDirection::Response, 100_000)), 300);
        // another key has its own
        assert_eq!(
            ms(b.pacer("bob".into())
                .reserve(BodyDirection::Response, 100_000)),
            0
        );
        // time passes: the bucket refills
        clock.advance(Duration::from_secs(10));
        assert_eq!(ms(p.reserve(BodyDirection::Response, 100_000)), 0);
        // requests are not paced by a response-only policy
        assert_eq!(
            p.reserve(BodyDirection::Request, 10_000_000),
            Duration::ZERO
        );
    }

    #[test]
    fn idle_keys_are_forgotten_past_max_keys() {
        let clock = FakeClock::new();
        let b = policy(&clock, 1_000, 10);
        for k in ["a", "b", "c", "d"] {
            b.pacer(k.into()).reserve(BodyDirection::Response, 5);
            clock.advance(Duration::from_secs(1));
        }
        assert!(b.keys() <= 2, "{} keys", b.keys());
    }

    #[test]
    fn mistakes_are_reported() {
        let errs = BandwidthSpec {
            mode: Mode::Monitor,
            key: KeySpec::default(),
            request: Some(RateSpec {
                bytes_per_second: ByteSize(0),
                burst: None,
            }),
            response: None,
            max_keys: None,
        }
        .build(&Env::local("x"))
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["mode", "request.bytes_per_second"]);
    }
}
