use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic clock in nanoseconds, injectable for tests.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Nanoseconds since an arbitrary, fixed origin.
    fn now_nanos(&self) -> u64;

    /// Wall-clock seconds since the Unix epoch (for calendar periods).
    fn wall_secs(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }

    /// The process's clock: one origin for every config, so state kept across a reload
    /// reads the same on the new clock.
    pub fn process() -> Self {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        MonotonicClock {
            origin: *ORIGIN.get_or_init(Instant::now),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_nanos(&self) -> u64 {
        // starts at one second, so that "never seen" (0) is always in the past
        u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1_000_000_000)
    }
}

/// A clock that moves only when told to. Its wall clock starts at 2026-01-01T00:00:00Z unless
/// set with [`FakeClock::at_wall`].
#[derive(Debug, Clone, Default)]
pub struct FakeClock(Arc<AtomicU64>, Arc<AtomicU64>);

/// 2026-01-01T00:00:00Z.
const FAKE_WALL_ORIGIN: u64 = 1_767_225_600;

impl FakeClock {
    /// A clock at one second.
    pub fn new() -> Self {
        FakeClock(
            Arc::new(AtomicU64::new(1_000_000_000)),
            Arc::new(AtomicU64::new(FAKE_WALL_ORIGIN)),
        )
    }

    /// A clock whose wall time is `secs` since the Unix epoch.
    pub fn at_wall(secs: u64) -> Self {
        let c = Self::new();
        c.1.store(secs, Ordering::SeqCst);
        c
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

impl Clock for FakeClock {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn wall_secs(&self) -> i64 {
        let elapsed = self.now_nanos().saturating_sub(1_000_000_000) / 1_000_000_000;
        i64::try_from(self.1.load(Ordering::SeqCst) + elapsed).unwrap_or(i64::MAX)
    }
}
