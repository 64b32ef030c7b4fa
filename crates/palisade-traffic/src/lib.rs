//! Palisade's traffic policies.
//!
//! - `rate_limit`: GCRA (the generic cell rate algorithm: a smooth rate with a burst), several
//!   windows at once, keyed by client address, consumer, route or header values, with memory
//!   bounded by evicting idle keys; local or shared through Redis.
//! - `concurrency_limit`: requests in flight per key.
//! - `bandwidth`: bytes per second per key, by pacing request and response bodies.
//! - `quota`: requests and body bytes per calendar hour, day or month in a time zone,
//!   persisted in the embedded store ([`state`]) or shared through Redis.
//!
//! Time is injected ([`Clock`]) so decisions are testable; the shared store is a small Redis
//! client of our own ([`redis`]).

pub mod bandwidth;
mod clock;
pub mod concurrency;
pub mod idempotency;
mod key;
pub mod ownership;
pub mod quota;
pub mod rate_limit;
pub mod redis;
pub mod size;
pub mod state;
pub mod store;

pub use clock::{Clock, FakeClock, MonotonicClock};
pub use key::KeySpec;
pub use store::{Env, OnStoreError, StoreKind};
