//! Palisade's traffic policies.
//!
//! `rate_limit`: GCRA (the generic cell rate algorithm: a smooth rate with a burst), several
//! windows at once, keyed by client address, consumer, route or header values, with memory
//! bounded by evicting idle keys. Time is injected ([`Clock`]) so decisions are testable.
//! Cluster-wide limits (Redis), quotas, concurrency and bandwidth limits come next in this
//! crate.

mod clock;
pub mod concurrency;
mod key;
pub mod rate_limit;

pub use clock::{Clock, FakeClock, MonotonicClock};
pub use key::KeySpec;
