//! The publisher's modes: whether it may send to the broker now (and how
//! long it waits after a failure), whether it still takes new messages,
//! and what it does when its queue is full.

use std::time::Duration;

use tokio::time::Instant;

use crate::retry::Backoff;

/// First wait after a failed publish; it doubles up to the configured
/// ceiling and starts again at this after an ack.
pub(super) const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

/// What happens to a new message when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overflow {
    /// The oldest queued message is dropped (counted): the buses never
    /// wait on a broker that is gone.
    DropOldest,
    /// No message is taken from the buses until there is room: polling
    /// as fast as possible is paced by the broker's acks.
    Backpressure,
}

/// Whether new messages are still taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The buses are running: new messages are taken.
    Running,
    /// The buses have stopped: what is queued is published until
    /// `deadline`, the rest given up on.
    Flushing {
        /// When the publisher gives up.
        deadline: Instant,
    },
}

/// The broker as the publisher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Publishes go out.
    Healthy,
    /// Nothing goes out until `until`: the broker was unreachable, or a
    /// publish failed (`after_failure`).
    Paused {
        /// When sending resumes.
        until: Instant,
        /// A publish failed: its recovery is logged at the next ack.
        after_failure: bool,
    },
    /// Publishes go out again after a failure; the next ack ends it.
    Recovering,
}

/// The publisher's sending mode and its retry delay.
#[derive(Debug)]
pub(super) struct Sending {
    state: State,
    retry: Backoff,
}

impl Sending {
    /// Healthy, with retries waiting from 50 ms up to `max_delay`.
    pub(super) fn new(max_delay: Duration) -> Self {
        Self {
            state: State::Healthy,
            retry: Backoff::new(FIRST_RETRY_DELAY, max_delay.max(FIRST_RETRY_DELAY)),
        }
    }

    /// Whether publishes may go out now.
    pub(super) fn may_send(&self) -> bool {
        !matches!(self.state, State::Paused { .. })
    }

    /// When a pause ends, if paused.
    pub(super) fn resume_at(&self) -> Option<Instant> {
        match self.state {
            State::Paused { until, .. } => Some(until),
            _ => None,
        }
    }

    /// Whether the last publish failed and no ack came since.
    fn failing(&self) -> bool {
        matches!(
            self.state,
            State::Recovering
                | State::Paused {
                    after_failure: true,
                    ..
                }
        )
    }

    /// The broker connection is down at `now`: wait one retry delay.
    pub(super) fn disconnected(&mut self, now: Instant) {
        self.state = State::Paused {
            until: now + self.retry.current_delay(),
            after_failure: self.failing(),
        };
    }

    /// A publish (or its ack) failed at `now`: pause, unless paused
    /// already, with a doubling delay. True for the first failure of a
    /// run of them (to be logged).
    pub(super) fn failed(&mut self, now: Instant) -> bool {
        let first = !self.failing();
        self.state = match self.state {
            State::Paused { until, .. } => State::Paused {
                until,
                after_failure: true,
            },
            State::Healthy | State::Recovering => {
                let until = now + self.retry.next_delay();
                State::Paused {
                    until,
                    after_failure: true,
                }
            }
        };
        first
    }

    /// The pause is over.
    pub(super) fn resume(&mut self) {
        if let State::Paused { after_failure, .. } = self.state {
            self.state = if after_failure {
                State::Recovering
            } else {
                State::Healthy
            };
        }
    }

    /// A publish was acknowledged: the delay starts over. True when that
    /// ends a run of failures (to be logged).
    pub(super) fn acked(&mut self) -> bool {
        let recovered = self.failing();
        self.retry.reset();
        self.state = match self.state {
            State::Paused { until, .. } => State::Paused {
                until,
                after_failure: false,
            },
            State::Healthy | State::Recovering => State::Healthy,
        };
        recovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_pause_with_a_doubling_delay_and_an_ack_starts_over() {
        let mut sending = Sending::new(Duration::from_millis(300));
        assert!(sending.may_send());
        let now = Instant::now();
        assert!(sending.failed(now), "the first failure is reported");
        assert_eq!(sending.resume_at(), Some(now + Duration::from_millis(50)));
        assert!(!sending.may_send());
        // An ack failing while paused changes nothing but is not reported.
        assert!(!sending.failed(now));
        assert_eq!(sending.resume_at(), Some(now + Duration::from_millis(50)));
        let mut pauses = Vec::new();
        for _ in 0..4 {
            sending.resume();
            assert!(sending.may_send());
            assert!(!sending.failed(now));
            pauses.push((sending.resume_at().unwrap() - now).as_millis());
        }
        assert_eq!(pauses, [100, 200, 300, 300]);
        sending.resume();
        assert!(sending.acked(), "the recovery is reported");
        assert!(!sending.acked());
        assert!(sending.failed(now));
        assert_eq!(sending.resume_at(), Some(now + Duration::from_millis(50)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_disconnect_pauses_without_doubling_or_reporting() {
        let mut sending = Sending::new(Duration::from_secs(2));
        let now = Instant::now();
        sending.disconnected(now);
        assert_eq!(sending.resume_at(), Some(now + FIRST_RETRY_DELAY));
        sending.resume();
        assert!(sending.may_send());
        assert!(!sending.acked(), "no failure to recover from");
        sending.disconnected(now);
        assert_eq!(sending.resume_at(), Some(now + FIRST_RETRY_DELAY));
    }

    #[tokio::test(start_paused = true)]
    async fn an_ack_while_paused_keeps_the_pause() {
        let mut sending = Sending::new(Duration::from_secs(2));
        let now = Instant::now();
        sending.failed(now);
        assert!(sending.acked());
        assert_eq!(sending.resume_at(), Some(now + FIRST_RETRY_DELAY));
        sending.resume();
        assert!(sending.may_send());
        assert!(sending.failed(now), "a new run of failures");
    }
}
