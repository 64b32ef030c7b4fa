//! `concurrency_limit`: at most N requests in flight per key (client, consumer, route or
//! header), beside the gateway-wide `max_in_flight`. A slot is taken when the request head
//! passes and held by the exchange: it is given back when the exchange is dropped, however it
//! ends (answered, refused later, or abandoned by the client mid-way). Two `concurrency_limit`
//! policies on one route hold a slot each, independently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{HeaderValue, StatusCode};
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Held, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};
use serde::Deserialize;

use crate::key::{Key, KeySpec};

/// Refusal code when a key has too many requests in flight.
pub const CODE_CONCURRENCY: &str = "ratelimit.concurrency";

/// Config of the `concurrency_limit` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyLimitSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// `client_ip` (default), `consumer`, `route`, `header:NAME`, or a list of them.
    #[serde(default)]
    pub key: KeySpec,
    /// Most requests in flight per key.
    pub max_in_flight: u32,
}

/// The runtime `concurrency_limit` policy.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    key: Key,
    max: u32,
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
}

/// A slot taken for one key; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
    key: String,
}

impl Held for Slot {}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // keys with nothing in flight are forgotten (memory stays bounded by the
                // requests in flight)
                m.remove(&self.key);
            }
        }
    }
}

impl ConcurrencyLimitSpec {
    /// Builds the policy, reporting every problem.
    pub fn build(&self) -> Result<ConcurrencyLimit, Vec<SpecError>> {
        let mut errors = Vec::new();
        let key = Key::parse(&self.key, &mut errors);
        if self.max_in_flight == 0 {
            errors.push(SpecError::new("max_in_flight", "must be at least 1"));
        }
        match key {
            Some(key) if errors.is_empty() => Ok(ConcurrencyLimit {
                key,
                max: self.max_in_flight,
                in_flight: Arc::new(Mutex::new(HashMap::new())),
            }),
            _ => Err(errors),
        }
    }
}

impl ConcurrencyLimit {
    /// Takes a slot for `key`; `None` when all are taken.
    pub fn acquire(&self, key: &str) -> Option<Slot> {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            in_flight: self.in_flight.clone(),
            key: key.to_string(),
        })
    }

    /// Keys with requests in flight.
    pub fn keys(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Policy for ConcurrencyLimit {
    fn kind(&self) -> &'static str {
        "concurrency_limit"
    }
    fn stage(&self) -> Stage {
        Stage::Quota
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestHead)
    }
    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let key = self.key.of(req, x);
        let Some(slot) = self.acquire(&key) else {
            return Ok(Verdict::Reject(
                Rejection::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    CODE_CONCURRENCY,
                    "Too many requests in flight",
                )
                .with_detail(format!("at most {} requests at a time", self.max))
                .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1")),
            ));
        };
        x.hold(Box::new(slot));
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_and_given_back() {
        let c = ConcurrencyLimitSpec {
            mode: Mode::Enforce,
            key: KeySpec::default(),
            max_in_flight: 2,
        }
        .build()
        .unwrap();
        let a1 = c.acquire("a").unwrap();
        let a2 = c.acquire("a").unwrap();
        assert!(c.acquire("a").is_none());
        let b = c.acquire("b").expect("keys are independent");
        drop(a1);
        let a3 = c.acquire("a").expect("a dropped slot is given back");
        drop((a2, a3, b));
        assert_eq!(c.keys(), 0, "idle keys are forgotten");
    }

    #[test]
    fn a_slot_held_by_an_exchange_goes_with_it() {
        let c = ConcurrencyLimitSpec {
            mode: Mode::Enforce,
            key: KeySpec::default(),
            max_in_flight: 1,
        }
        .build()
        .unwrap();
        let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut x = Exchange::new("r".into(), peer, peer.ip(), false);
        x.hold(Box::new(c.acquire("k").unwrap()));
        assert!(c.acquire("k").is_none());
        drop(x);
        assert!(c.acquire("k").is_some());
    }

    #[test]
    fn zero_is_refused() {
        let errs = ConcurrencyLimitSpec {
            mode: Mode::Enforce,
            key: KeySpec::default(),
            max_in_flight: 0,
        }
        .build()
        .unwrap_err();
        assert_eq!(errs[0].field, "max_in_flight");
    }
}
