//! A token bucket per origin of commands (the cloud, the box, and requests
//! too malformed to name one), so a flood from one cannot fill the audit
//! store or starve the other. A command over the limit is refused with a
//! `rejected` reply and counted (`rate_limited`), never audited row by row:
//! a flood must not grow the audit store.

use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use packgate_protocol::CommandOrigin;

/// Whose bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A command from the cloud link.
    Cloud,
    /// A command from the box (`packgate command`).
    Local,
    /// A request that did not decode, so names no origin.
    Unreadable,
}

impl Source {
    /// The bucket of a command's origin.
    pub(super) fn of(origin: CommandOrigin) -> Self {
        match origin {
            CommandOrigin::Cloud => Self::Cloud,
            CommandOrigin::Local => Self::Local,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Cloud => 0,
            Self::Local => 1,
            Self::Unreadable => 2,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cloud => "the cloud",
            Self::Local => "this box",
            Self::Unreadable => "unreadable requests",
        })
    }
}

/// One bucket: tokens left at an instant.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

/// The buckets of every source.
#[derive(Debug)]
pub(super) struct RateLimiter {
    per_s: f64,
    burst: f64,
    buckets: Mutex<[Bucket; 3]>,
}

impl RateLimiter {
    /// Buckets refilled at `per_s` tokens a second, holding `burst`.
    pub(super) fn new(per_s: u32, burst: u32) -> Self {
        Self {
            per_s: f64::from(per_s),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new([Bucket::default(); 3]),
        }
    }

    /// Average commands a second allowed per source.
    pub(super) fn per_s(&self) -> f64 {
        self.per_s
    }

    /// Takes a token from `source`'s bucket at `now`; false when empty.
    pub(super) fn allow(&self, source: Source, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = &mut buckets[source.index()];
        let tokens = match bucket.at {
            None => self.burst,
            Some(at) => {
                let refill = now.saturating_duration_since(at).as_secs_f64() * self.per_s;
                (bucket.tokens + refill).min(self.burst)
            }
        };
        bucket.at = Some(now);
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            true
        } else {
            bucket.tokens = tokens;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_each_source_apart() {
        let limiter = RateLimiter::new(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.allow(Source::Cloud, start));
        }
        assert!(!limiter.allow(Source::Cloud, start));
        // Another source has its own bucket.
        assert!(limiter.allow(Source::Local, start));
        // Half a second at 2 a second: one more.
        let later = start + Duration::from_millis(500);
        assert!(limiter.allow(Source::Cloud, later));
        assert!(!limiter.allow(Source::Cloud, later));
        // A long pause refills up to the burst, no more.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.allow(Source::Cloud, much_later));
        }
        assert!(!limiter.allow(Source::Cloud, much_later));
        assert_eq!(limiter.per_s(), 2.0);
    }
}
