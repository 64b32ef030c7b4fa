//! `concurrency_limit`: at most N requests in flight per key (client, consumer, route or
//! header), beside the gateway-wide `max_in_flight`. A slot is taken when the request head
//! passes and given back when the exchange is over (answered, refused later, or abandoned by
//! the client).

use std::collections::HashMap;
use std::sync::Mutex;

use http::{HeaderValue, StatusCode};
use palisade_core::policies::SpecError;
use palisade_core::{
    Completion, Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage,
    Verdict,
};
use serde::Deserialize;

use crate::key::{Key, KeySpec};

/// Refusal code when a key has too many requests in flight.
pub const CODE_CONCURRENCY: &str = "ratelimit.concurrency";
const ANNOTATION: &str = "concurrency-key";

/// Config of the `concurrency_limit` policy.
#[derive(Debug, Clone, Deserialize)]
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
    in_flight: Mutex<HashMap<String, u32>>,
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
                in_flight: Mutex::new(HashMap::new()),
            }),
            _ => Err(errors),
        }
    }
}

impl ConcurrencyLimit {
    /// Takes a slot for `key`; false when all are taken.
    pub fn acquire(&self, key: &str) -> bool {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives a slot back; keys with nothing in flight are forgotten (memory stays bounded by
    /// the requests in flight).
    pub fn release(&self, key: &str) {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(key);
            }
        }
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
        PhaseSet::EMPTY.with(Phase::RequestHead).with(Phase::Log)
    }
    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let key = self.key.of(req, x);
        if !self.acquire(&key) {
            return Ok(Verdict::Reject(
                Rejection::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    CODE_CONCURRENCY,
                    "Too many requests in flight",
                )
                .with_detail(format!("at most {} requests at a time", self.max))
                .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1")),
            ));
        }
        x.annotations.insert(ANNOTATION, key);
        Ok(Verdict::Continue)
    }
    fn on_log(&self, x: &Exchange, _done: &Completion) {
        if let Some(key) = x.annotations.get(ANNOTATION) {
            self.release(key);
        }
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
        assert!(c.acquire("a"));
        assert!(c.acquire("a"));
        assert!(!c.acquire("a"));
        assert!(c.acquire("b"), "keys are independent");
        c.release("a");
        assert!(c.acquire("a"));
        c.release("a");
        c.release("a");
        c.release("b");
        assert_eq!(c.keys(), 0, "idle keys are forgotten");
        c.release("never-seen");
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
