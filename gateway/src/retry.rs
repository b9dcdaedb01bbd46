//! One retry policy for every loop that waits on something outside the
//! process (the broker, a consumer, the cloud): exponential backoff with a
//! cap, interrupted by shutdown.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff: `initial` after the first failure, doubled after
/// each further one, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The same wait `delay` after every failure: a loop that polls
    /// something at a steady pace until it answers.
    pub const fn fixed(delay: Duration) -> Self {
        Self::new(delay, delay)
    }

    /// The wait after failure number `attempt` (0 for the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max)
    }

    /// Failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The wait the next failure would get, without counting one: a pause
    /// that should not lengthen the following ones.
    pub fn current_delay(&self) -> Duration {
        self.delay(self.attempt)
    }

    /// The wait for the current failure; the next one waits longer.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Sleeps for [`next_delay`](Self::next_delay), for a loop that has no
    /// shutdown token of its own (it ends when its channel closes).
    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Sleeps for [`next_delay`](Self::next_delay); `false` when `shutdown`
    /// fired first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = shutdown.cancelled() => false,
        }
    }
}

/// Runs `operation` until it succeeds, logging each failure at WARN with
/// `what` and waiting out `backoff` between tries. `None` when `shutdown`
/// fires first.
pub async fn retry_until_shutdown<T, E, F, Fut>(
    what: &str,
    mut backoff: Backoff,
    shutdown: &CancellationToken,
    mut operation: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        let outcome = tokio::select! {
            outcome = operation() => outcome,
            () = shutdown.cancelled() => return None,
        };
        match outcome {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(%error, attempt = backoff.attempt(), "{what}; retrying");
                if !backoff.wait(shutdown).await {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn doubles_and_caps() {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(60));
        assert_eq!(backoff.delay(0), Duration::from_millis(250));
        assert_eq!(backoff.delay(2), Duration::from_secs(1));
        assert_eq!(backoff.delay(30), Duration::from_secs(60));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn a_success_starts_over() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(), Duration::from_millis(200));
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_fixed_backoff_never_grows() {
        let mut backoff = Backoff::fixed(Duration::from_secs(1));
        let delays: Vec<_> = (0..5).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays, [Duration::from_secs(1); 5]);
        assert_eq!(backoff.attempt(), 5);
    }

    #[test]
    fn the_current_delay_does_not_count_a_failure() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(300));
        assert_eq!(backoff.current_delay(), Duration::from_millis(50));
        assert_eq!(backoff.current_delay(), Duration::from_millis(50));
        backoff.next_delay();
        assert_eq!(backoff.current_delay(), Duration::from_millis(100));
        assert_eq!(backoff.attempt(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_waits_the_growing_delays() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        let mut woke = Vec::new();
        for _ in 0..7 {
            backoff.sleep().await;
            woke.push(started.elapsed().as_secs());
        }
        // 1, 2, 4, 8, 16, then capped at 30.
        assert_eq!(woke, [1, 3, 7, 15, 31, 61, 91]);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_returns_at_shutdown_without_finishing_the_delay() {
        let mut backoff = Backoff::fixed(Duration::from_secs(60));
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stopper.cancel();
        });
        let started = tokio::time::Instant::now();
        assert!(!backoff.wait(&shutdown).await);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_with_growing_waits() {
        let started = tokio::time::Instant::now();
        let mut tries = 0;
        let shutdown = CancellationToken::new();
        let value = retry_until_shutdown(
            "test",
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            &shutdown,
            || {
                tries += 1;
                let result = if tries < 4 { Err("not yet") } else { Ok(tries) };
                async move { result }
            },
        )
        .await;
        assert_eq!(value, Some(4));
        // 100 + 200 + 400 ms of waiting before the fourth try.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_retries() {
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            stopper.cancel();
        });
        let value: Option<()> = retry_until_shutdown(
            "test",
            Backoff::new(Duration::from_millis(100), Duration::from_millis(500)),
            &shutdown,
            || async { Err::<(), _>("never") },
        )
        .await;
        assert_eq!(value, None);
    }
}
