//! What the collector knows of a pack's answers, and every way it changes:
//! unknown until it first answers, online, stale while a few polls fail,
//! offline (polled with a doubling backoff) once too many failed in a row.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::CollectConfig;

/// A pack's state on its bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PackState {
    /// It has not answered yet (`failures` polls failed so far).
    Unknown {
        /// Consecutive failed polls.
        failures: u32,
    },
    /// It answered its last poll.
    Online,
    /// It answered before, but its last polls failed: fewer than the
    /// offline threshold. Its last reading is repeated as stale.
    Stale {
        /// Consecutive failed polls.
        failures: u32,
    },
    /// Too many polls failed in a row: it is polled again only at
    /// `retry_at`, the wait doubling up to the configured ceiling.
    Offline {
        /// Consecutive failed polls.
        failures: u32,
        /// The present wait between polls.
        backoff: Duration,
        /// When it is due again.
        retry_at: Instant,
    },
}

/// What a transition means for events, metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// Nothing to report.
    None,
    /// The pack answered for the first time.
    Online,
    /// An offline pack answers again, after `after_failures` failed polls.
    BackOnline {
        /// Failed polls before this answer.
        after_failures: u32,
    },
    /// The pack has just been declared offline.
    Offline,
}

/// When a failing pack goes offline and how its polls back off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OfflinePolicy {
    /// Consecutive failed polls after which a pack is offline.
    pub(super) after_failures: u32,
    /// First wait between polls of an offline pack.
    pub(super) backoff_floor: Duration,
    /// Longest wait between polls of an offline pack.
    pub(super) backoff_ceiling: Duration,
}

impl OfflinePolicy {
    /// The policy of `config`: the wait starts at one poll period (at
    /// least 100 ms) and doubles up to `offline_backoff_max_ms`.
    pub(super) fn of(config: &CollectConfig) -> Self {
        let floor = config.poll_interval().max(Duration::from_millis(100));
        Self {
            after_failures: config.offline_after_failures,
            backoff_floor: floor,
            backoff_ceiling: Duration::from_millis(config.offline_backoff_max_ms).max(floor),
        }
    }
}

impl PackState {
    /// Consecutive failed polls.
    pub(super) fn failures(&self) -> u32 {
        match *self {
            PackState::Online => 0,
            PackState::Unknown { failures }
            | PackState::Stale { failures }
            | PackState::Offline { failures, .. } => failures,
        }
    }

    /// Whether the pack is to be polled in a round that started at
    /// `round_start` (an offline pack waits for its backoff).
    pub(super) fn is_due(&self, round_start: Instant) -> bool {
        match *self {
            PackState::Offline { retry_at, .. } => retry_at <= round_start,
            _ => true,
        }
    }

    /// The pack answered.
    pub(super) fn answered(&mut self) -> Change {
        let change = match *self {
            PackState::Unknown { .. } => Change::Online,
            PackState::Online | PackState::Stale { .. } => Change::None,
            PackState::Offline { failures, .. } => Change::BackOnline {
                after_failures: failures,
            },
        };
        *self = PackState::Online;
        change
    }

    /// A poll failed at `now`.
    pub(super) fn failed(&mut self, now: Instant, policy: &OfflinePolicy) -> Change {
        let failures = self.failures().saturating_add(1);
        if failures < policy.after_failures {
            *self = match *self {
                PackState::Unknown { .. } => PackState::Unknown { failures },
                _ => PackState::Stale { failures },
            };
            return Change::None;
        }
        let (change, previous) = match *self {
            PackState::Offline { backoff, .. } => (Change::None, backoff),
            _ => (Change::Offline, Duration::ZERO),
        };
        let backoff = previous
            .saturating_mul(2)
            .clamp(policy.backoff_floor, policy.backoff_ceiling);
        *self = PackState::Offline {
            failures,
            backoff,
            // The backoff is bounded by the configuration (a day at most);
            // should it not be, the pack waits a day rather than panic.
            retry_at: now
                .checked_add(backoff)
                .unwrap_or_else(|| now + Duration::from_secs(86_400)),
        };
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OfflinePolicy {
        OfflinePolicy {
            after_failures: 3,
            backoff_floor: Duration::from_secs(1),
            backoff_ceiling: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_first_answer_brings_a_pack_online_once() {
        let mut state = PackState::Unknown { failures: 0 };
        assert_eq!(state.answered(), Change::Online);
        assert_eq!(state, PackState::Online);
        assert_eq!(state.answered(), Change::None);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_make_a_pack_stale_then_offline_with_doubling_backoff() {
        let policy = policy();
        let mut state = PackState::Unknown { failures: 0 };
        state.answered();
        let start = Instant::now();
        assert_eq!(state.failed(start, &policy), Change::None);
        assert_eq!(state, PackState::Stale { failures: 1 });
        assert!(state.is_due(start));
        assert_eq!(state.failed(start, &policy), Change::None);
        assert_eq!(state.failed(start, &policy), Change::Offline);
        assert_eq!(
            state,
            PackState::Offline {
                failures: 3,
                backoff: Duration::from_secs(1),
                retry_at: start + Duration::from_secs(1),
            }
        );
        assert!(!state.is_due(start));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(state.is_due(Instant::now()));
        // Offline stays offline (no second event); the wait doubles up to
        // the ceiling.
        let mut waits = Vec::new();
        for _ in 0..4 {
            assert_eq!(state.failed(Instant::now(), &policy), Change::None);
            if let PackState::Offline { backoff, .. } = state {
                waits.push(backoff.as_secs());
            }
        }
        assert_eq!(waits, [2, 4, 5, 5]);
        assert_eq!(state.failures(), 7);
        assert_eq!(state.answered(), Change::BackOnline { after_failures: 7 });
        assert_eq!(state.failures(), 0);
        assert!(state.is_due(start));
    }

    #[test]
    fn a_stale_pack_that_answers_is_online_without_an_event() {
        let mut state = PackState::Online;
        state.failed(Instant::now(), &policy());
        assert_eq!(state.answered(), Change::None);
        assert_eq!(state, PackState::Online);
    }

    #[test]
    fn a_pack_that_never_answered_goes_offline_and_its_first_answer_is_online() {
        let policy = policy();
        let mut state = PackState::Unknown { failures: 0 };
        let now = Instant::now();
        state.failed(now, &policy);
        assert_eq!(state, PackState::Unknown { failures: 1 });
        state.failed(now, &policy);
        assert_eq!(state.failed(now, &policy), Change::Offline);
        assert_eq!(state.answered(), Change::BackOnline { after_failures: 3 });
    }

    #[test]
    fn one_failure_is_enough_when_configured() {
        let policy = OfflinePolicy {
            after_failures: 1,
            ..policy()
        };
        let mut state = PackState::Online;
        assert_eq!(state.failed(Instant::now(), &policy), Change::Offline);
    }

    #[test]
    fn the_policy_follows_the_collect_config() {
        let config = CollectConfig {
            poll_interval_ms: 50,
            offline_backoff_max_ms: 20,
            offline_after_failures: 4,
            ..CollectConfig::default()
        };
        let policy = OfflinePolicy::of(&config);
        assert_eq!(policy.after_failures, 4);
        assert_eq!(policy.backoff_floor, Duration::from_millis(100));
        assert_eq!(policy.backoff_ceiling, Duration::from_millis(100));
    }
}
