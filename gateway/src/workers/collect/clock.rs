//! Clock sanity: whether the wall clock that stamps a sample is believed.
//!
//! A box without a real-time clock boots in the past (often 1970, or the
//! time the image was built) until NTP syncs, and NTP may then step the
//! clock by hours. The collector keeps stamping samples with the wall clock
//! (that is what an operator reads), but marks them
//! [`ClockQuality::Untrusted`] while the clock reads before
//! [`SANE_EPOCH_MS`], and for [`UNTRUSTED_HOLD`] of monotonic time after a
//! jump is seen. A jump is a wall-clock step between two stamps that the
//! monotonic clock does not account for: more than [`JUMP_TOLERANCE_MS`]
//! plus [`JUMP_TOLERANCE_PER_MILLE`] of the elapsed time, either way. The
//! sequence numbers keep the order of the samples whatever the clock does.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use packgate_protocol::sample::ClockQuality;
use tokio::time::Instant;

use super::CollectMetrics;

/// 2025-01-01T00:00:00Z in milliseconds since the Unix epoch: a wall clock
/// that reads earlier has not been set (no RTC, NTP not synced yet), since
/// no packgate build runs before its own release.
pub const SANE_EPOCH_MS: i64 = 1_735_689_600_000;

/// Fixed part of the tolerance between the wall-clock and the monotonic
/// delta of two stamps; covers a scheduler hiccup between the two reads and
/// NTP slewing (at most 0.5 ms/s).
pub const JUMP_TOLERANCE_MS: i64 = 2_000;

/// Part of the tolerance that grows with the monotonic time elapsed since
/// the previous stamp, in thousandths (10 = 1 %).
pub const JUMP_TOLERANCE_PER_MILLE: i64 = 10;

/// How long, in monotonic time, the clock stays untrusted after a jump.
pub const UNTRUSTED_HOLD: Duration = Duration::from_secs(60);

/// A source of wall-clock time, so tests can make it jump.
pub trait WallClock: fmt::Debug + Send + Sync {
    /// Wall-clock now, milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock ([`crate::telemetry::now_ms`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::telemetry::now_ms()
    }
}

/// The verdict on one stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Judgement {
    /// Whether the stamp is believed.
    pub(super) quality: ClockQuality,
    /// The step seen since the previous stamp (wall-clock delta minus
    /// monotonic delta, ms; negative is backwards), when it was a jump.
    pub(super) jump_ms: Option<i64>,
    /// Whether the clock reads before [`SANE_EPOCH_MS`].
    pub(super) before_epoch: bool,
}

/// Judges the wall clock at each stamp from `(wall_ms, monotonic)` pairs;
/// pure, so tests inject both times.
#[derive(Debug, Default)]
pub(super) struct ClockGuard {
    /// The previous stamp.
    last: Option<(i64, Instant)>,
    /// Untrusted until this monotonic instant, after a jump.
    hold_until: Option<Instant>,
}

impl ClockGuard {
    /// Judges a stamp read at `wall_ms` (wall clock) and `monotonic`.
    pub(super) fn judge(&mut self, wall_ms: i64, monotonic: Instant) -> Judgement {
        let mut jump_ms = None;
        if let Some((last_wall, last_mono)) = self.last {
            let elapsed = i64::try_from(monotonic.saturating_duration_since(last_mono).as_millis())
                .unwrap_or(i64::MAX);
            let step = wall_ms.saturating_sub(last_wall).saturating_sub(elapsed);
            let tolerance = JUMP_TOLERANCE_MS
                .saturating_add(elapsed.saturating_mul(JUMP_TOLERANCE_PER_MILLE) / 1000);
            if step.saturating_abs() > tolerance {
                jump_ms = Some(step);
                self.hold_until = Some(monotonic + UNTRUSTED_HOLD);
            }
        }
        // Keep the newest monotonic instant, so stamps judged slightly out
        // of order (several buses) never count time twice.
        self.last = match self.last {
            Some((_, last_mono)) if last_mono > monotonic => self.last,
            _ => Some((wall_ms, monotonic)),
        };
        let held = self.hold_until.is_some_and(|until| monotonic < until);
        if !held {
            self.hold_until = None;
        }
        let before_epoch = wall_ms < SANE_EPOCH_MS;
        Judgement {
            quality: if held || before_epoch {
                ClockQuality::Untrusted
            } else {
                ClockQuality::Trusted
            },
            jump_ms,
            before_epoch,
        }
    }
}

/// A sample's time: the wall clock, its verdict, and the monotonic instant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub(super) wall_ms: i64,
    /// Whether the wall clock is believed.
    pub(super) clock: ClockQuality,
    /// Monotonic instant of the stamp.
    pub(super) at: Instant,
}

#[derive(Debug, Default)]
struct SharedState {
    guard: ClockGuard,
    /// Whether the clock read before the epoch at the previous stamp (to
    /// log the change once, not every poll).
    before_epoch: bool,
}

/// One wall clock and one guard shared by every bus of a collector, so a
/// jump is counted and logged once, not once per bus.
#[derive(Debug, Clone)]
pub(super) struct SharedClock {
    wall: Arc<dyn WallClock>,
    state: Arc<Mutex<SharedState>>,
}

impl SharedClock {
    /// A guard over `wall`.
    pub(super) fn new(wall: Arc<dyn WallClock>) -> Self {
        Self {
            wall,
            state: Arc::new(Mutex::new(SharedState::default())),
        }
    }

    /// Reads both clocks now and judges the wall clock; a jump is counted
    /// in `clock_jumps` and logged once.
    pub(super) fn stamp(&self, metrics: &CollectMetrics) -> Stamp {
        // Both clocks are read under the lock, so the buses' stamps are
        // judged in the order they were read.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let at = Instant::now();
        let wall_ms = self.wall.now_ms();
        let judgement = state.guard.judge(wall_ms, at);
        if let Some(step_ms) = judgement.jump_ms {
            metrics.clock_jumps.inc();
            tracing::warn!(
                step_ms,
                hold_s = UNTRUSTED_HOLD.as_secs(),
                "wall clock jumped; samples are marked clock-untrusted for the hold period"
            );
        }
        if judgement.before_epoch != state.before_epoch {
            state.before_epoch = judgement.before_epoch;
            if judgement.before_epoch {
                tracing::warn!(
                    wall_ms,
                    "wall clock reads before 2025 (not set yet?); samples are marked clock-untrusted"
                );
            } else {
                tracing::info!(wall_ms, "wall clock reads a sane time again");
            }
        }
        Stamp {
            wall_ms,
            clock: judgement.quality,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-01T00:00:00Z.
    const NOW: i64 = 1_772_323_200_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_sane_epoch_is_2025() {
        assert_eq!(
            crate::text::iso8601_utc_ms(SANE_EPOCH_MS),
            "2025-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn normal_running_stays_trusted() {
        let mut guard = ClockGuard::default();
        let t0 = Instant::now();
        // A second per poll for an hour, the wall clock slewing 0.5 ms/s
        // and the reads a few ms apart.
        for i in 0..3600u64 {
            let wall = NOW + i as i64 * 1000 + (i as i64) / 2 + (i % 7) as i64;
            let j = guard.judge(wall, t0 + ms(i * 1000));
            assert_eq!(j.quality, ClockQuality::Trusted, "poll {i}");
            assert_eq!(j.jump_ms, None);
        }
        // A long pause (a pack offline, polled with backoff) is fine too.
        let j = guard.judge(NOW + 3_700_000, t0 + ms(3_700_000));
        assert_eq!(j.quality, ClockQuality::Trusted);
    }

    #[test]
    fn before_the_epoch_is_untrusted_until_a_sane_time() {
        let mut guard = ClockGuard::default();
        let t0 = Instant::now();
        for i in 0..5u64 {
            let j = guard.judge(1000 * i as i64, t0 + ms(1000 * i));
            assert_eq!(j.quality, ClockQuality::Untrusted);
            assert!(j.before_epoch);
            assert_eq!(j.jump_ms, None, "1970 running steadily is no jump");
        }
        // NTP syncs: a jump forward, held untrusted, then trusted.
        let j = guard.judge(NOW, t0 + ms(5000));
        assert!(j.jump_ms.is_some_and(|step| step > 0));
        assert!(!j.before_epoch);
        assert_eq!(j.quality, ClockQuality::Untrusted);
        let j = guard.judge(NOW + 61_000, t0 + ms(66_000));
        assert_eq!(j.quality, ClockQuality::Trusted);
        assert_eq!(
            guard.judge(SANE_EPOCH_MS - 1, t0 + ms(66_000)).quality,
            ClockQuality::Untrusted
        );
    }

    #[test]
    fn a_backward_jump_is_untrusted_for_the_hold_period() {
        let mut guard = ClockGuard::default();
        let t0 = Instant::now();
        assert_eq!(guard.judge(NOW, t0).quality, ClockQuality::Trusted);
        let j = guard.judge(NOW + 1000 - 3_600_000, t0 + ms(1000));
        assert_eq!(j.jump_ms, Some(-3_600_000));
        assert_eq!(j.quality, ClockQuality::Untrusted);
        // Steady again, but still within the hold.
        for s in 2..60u64 {
            let wall = NOW - 3_600_000 + s as i64 * 1000;
            let j = guard.judge(wall, t0 + ms(s * 1000));
            assert_eq!(j.quality, ClockQuality::Untrusted, "{s} s");
            assert_eq!(j.jump_ms, None);
        }
        // The hold ends 60 s after the jump.
        let j = guard.judge(NOW - 3_600_000 + 61_000, t0 + ms(61_000));
        assert_eq!(j.quality, ClockQuality::Trusted);
    }

    #[test]
    fn a_small_backward_step_beyond_the_tolerance_is_a_jump() {
        let mut guard = ClockGuard::default();
        let t0 = Instant::now();
        guard.judge(NOW, t0);
        // 2.5 s back over 1 s: beyond 2 s + 1 %.
        let j = guard.judge(NOW - 1500, t0 + ms(1000));
        assert_eq!(j.jump_ms, Some(-2500));
        // 1.9 s back is within it.
        let mut guard = ClockGuard::default();
        guard.judge(NOW, t0);
        let j = guard.judge(NOW - 900, t0 + ms(1000));
        assert_eq!(j.jump_ms, None);
        assert_eq!(j.quality, ClockQuality::Trusted);
    }

    #[test]
    fn a_forward_jump_beyond_the_tolerance_is_untrusted() {
        let mut guard = ClockGuard::default();
        let t0 = Instant::now();
        guard.judge(NOW, t0);
        // Within 2 s + 1 % of 100 s = 3 s: no jump.
        let j = guard.judge(NOW + 102_900, t0 + ms(100_000));
        assert_eq!(j.jump_ms, None);
        assert_eq!(j.quality, ClockQuality::Trusted);
        // 3.5 s more than 100 s elapsed: a jump.
        let j = guard.judge(NOW + 102_900 + 103_500, t0 + ms(200_000));
        assert_eq!(j.jump_ms, Some(3_500));
        assert_eq!(j.quality, ClockQuality::Untrusted);
        // A second jump during the hold restarts it.
        let j = guard.judge(NOW + 500_000, t0 + ms(230_000));
        assert!(j.jump_ms.is_some());
        let j = guard.judge(NOW + 500_000 + 40_000, t0 + ms(270_000));
        assert_eq!(
            j.quality,
            ClockQuality::Untrusted,
            "held 60 s from the second jump"
        );
        let j = guard.judge(NOW + 500_000 + 61_000, t0 + ms(291_000));
        assert_eq!(j.quality, ClockQuality::Trusted);
    }

    #[test]
    fn shared_clock_counts_a_jump_once() {
        #[derive(Debug)]
        struct Fixed(std::sync::atomic::AtomicI64);
        impl WallClock for Fixed {
            fn now_ms(&self) -> i64 {
                self.0.load(std::sync::atomic::Ordering::Relaxed)
            }
        }
        let wall = Arc::new(Fixed(std::sync::atomic::AtomicI64::new(NOW)));
        let shared = SharedClock::new(wall.clone());
        let metrics = CollectMetrics::default();
        assert_eq!(shared.stamp(&metrics).clock, ClockQuality::Trusted);
        wall.0
            .store(NOW - 3_600_000, std::sync::atomic::Ordering::Relaxed);
        let other = shared.clone();
        assert_eq!(other.stamp(&metrics).clock, ClockQuality::Untrusted);
        assert_eq!(shared.stamp(&metrics).clock, ClockQuality::Untrusted);
        assert_eq!(metrics.clock_jumps.get(), 1);
    }
}
