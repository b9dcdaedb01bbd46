//! Typed internal events: one call logs a thing that happened and counts
//! it, so a log line never goes without its counter (or the reverse).
//! Per-message errors go through a [`LogLimiter`], so a flood of bad input
//! makes one line per interval with the count, not one line per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Something that happened inside a worker, with the metrics it counts
/// into.
pub trait InternalEvent<M: ?Sized> {
    /// Logs the event and bumps its counter.
    fn emit(self, metrics: &M);
}

/// Lets through one log line per interval; the lines held back in between
/// are counted and reported with the next one.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being the lines held
    /// back since the last one; `None` when this one is held back.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if now.duration_since(at) < self.interval => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

impl Default for LogLimiter {
    /// One line per ten seconds.
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let limiter = LogLimiter::new(Duration::from_millis(200));
        assert_eq!(limiter.allow(), Some(0));
        for _ in 0..1_999 {
            assert_eq!(limiter.allow(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(limiter.allow(), Some(1_999));
        assert_eq!(limiter.allow(), None);
    }
}
