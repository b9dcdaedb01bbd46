//! The service manager's watchdog, fed only while the pipeline makes
//! progress: publishes are being acknowledged and the store is committing
//! (or there is provably nothing to do). A gateway whose broker connection
//! is up but whose samples go nowhere is restarted, not kept alive.

use std::time::Duration;

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::runtime::Broker;
use crate::telemetry::snapshot::MetricsSource;
use crate::workers::{WorkerKind, WorkerMetrics};

/// What the pipeline has done so far, read off the workers' metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Samples and events waiting to be published now.
    pub pending: i64,
    /// Publishes acknowledged by the broker, new or duplicate.
    pub acked: u64,
    /// Samples committed to the store, new or duplicate.
    pub stored: u64,
    /// Commits that failed.
    pub store_failures: u64,
}

impl Progress {
    /// The progress counters of `workers`.
    pub fn of(workers: &[(WorkerKind, WorkerMetrics)]) -> Self {
        let mut progress = Progress::default();
        for (kind, metrics) in workers {
            let source = metrics.source();
            let counter = |name: &str| counter(source.as_ref(), name);
            match kind {
                WorkerKind::Collect => {
                    progress.acked = counter("samples_published")
                        + counter("samples_duplicate")
                        + counter("events_published");
                    // Waiting to be sent or sent and not yet acknowledged.
                    progress.pending = source
                        .gauges()
                        .iter()
                        .filter(|(n, _)| n == "pending" || n == "inflight")
                        .map(|(_, v)| *v as i64)
                        .sum();
                }
                WorkerKind::Data => {
                    progress.stored = counter("samples_stored") + counter("samples_duplicate");
                    progress.store_failures = counter("store_failures");
                }
                _ => {}
            }
        }
        progress
    }
}

fn counter(source: &dyn MetricsSource, name: &str) -> u64 {
    source
        .counters()
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| *v)
}

/// Judges, one watchdog period after another, whether the pipeline
/// moves: publishes waiting while none is acknowledged, or a store whose
/// last attempts failed and that has committed nothing since, is stuck.
#[derive(Debug, Clone)]
pub struct Judge {
    before: Progress,
    store_failing: bool,
}

impl Judge {
    /// A judge starting from `start`.
    pub fn new(start: Progress) -> Self {
        Self {
            before: start,
            store_failing: false,
        }
    }

    /// The verdict on the period that ends at `now`: `Err` says what is
    /// stuck.
    pub fn judge(&mut self, now: Progress) -> Result<(), &'static str> {
        let before = std::mem::replace(&mut self.before, now);
        if now.stored != before.stored {
            self.store_failing = false;
        } else if now.store_failures != before.store_failures {
            self.store_failing = true;
        }
        if now.pending > 0 && now.acked == before.acked {
            Err("publishes are not being acknowledged")
        } else if self.store_failing {
            Err("the store is not committing")
        } else {
            Ok(())
        }
    }
}

/// Until `shutdown`: tells systemd (when it started us with
/// `Type=notify`) that the gateway is ready, then pets its watchdog while
/// the broker is connected, every worker task runs and the pipeline makes
/// progress. Returns `true` when the embedded broker was lost for good
/// (the run must then fail, so the service manager restarts it).
pub async fn supervise(
    broker: &Broker,
    shutdown: &CancellationToken,
    tasks: &[AbortHandle],
    workers: &[(WorkerKind, WorkerMetrics)],
) -> bool {
    let notifier = match crate::sd_notify::Notifier::from_env() {
        Ok(notifier) => notifier,
        Err(error) => {
            tracing::warn!(%error, "cannot talk to systemd's notify socket");
            None
        }
    };
    if let Some(notifier) = &notifier {
        if let Err(error) = notifier.ready() {
            tracing::warn!(%error, "cannot notify systemd");
        }
    }
    let every = crate::sd_notify::watchdog_interval().unwrap_or(Duration::from_secs(3600));
    // The first judgement one full period after the start, not at once:
    // progress needs time to show.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let lost = broker.lost();
    let mut judge = Judge::new(Progress::of(workers));
    let mut last_verdict: Result<(), &'static str> = Ok(());
    let broker_lost = loop {
        tokio::select! {
            () = shutdown.cancelled() => break false,
            () = lost.cancelled() => break true,
            _ = ticks.tick() => {
                let Some(notifier) = &notifier else { continue };
                let now = Progress::of(workers);
                let connected = broker.client.connection_state() == async_nats::connection::State::Connected;
                let running = tasks.iter().all(|task| !task.is_finished());
                let verdict = match (connected, running) {
                    (false, _) => Err("broker unreachable"),
                    (_, false) => Err("a worker stopped"),
                    _ => judge.judge(now),
                };
                if verdict != last_verdict {
                    match verdict {
                        Ok(()) => tracing::info!("the pipeline moves again; feeding the watchdog"),
                        Err(reason) => tracing::warn!(reason, "not feeding the watchdog"),
                    }
                }
                last_verdict = verdict;
                match verdict {
                    Ok(()) => { let _ = notifier.watchdog(); }
                    Err(reason) => { let _ = notifier.status(reason); }
                }
            }
        }
    };
    if let Some(notifier) = &notifier {
        let _ = notifier.stopping();
    }
    broker_lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pending: i64, acked: u64, stored: u64, store_failures: u64) -> Progress {
        Progress {
            pending,
            acked,
            stored,
            store_failures,
        }
    }

    #[test]
    fn moving_or_idle_is_healthy() {
        let mut judge = Judge::new(at(0, 10, 10, 0));
        assert_eq!(judge.judge(at(3, 20, 20, 0)), Ok(()));
        // Nothing to publish and nothing failing: idle, not stuck.
        assert_eq!(judge.judge(at(0, 20, 20, 0)), Ok(()));
        // A failed commit and a good one in the same period.
        assert_eq!(judge.judge(at(0, 30, 30, 1)), Ok(()));
    }

    #[test]
    fn unacknowledged_publishes_are_stuck() {
        let mut judge = Judge::new(at(5, 10, 10, 0));
        assert!(judge.judge(at(7, 10, 10, 0)).is_err());
        assert_eq!(judge.judge(at(0, 17, 17, 0)), Ok(()));
    }

    #[test]
    fn a_failing_store_stays_stuck_until_it_commits_again() {
        let mut judge = Judge::new(at(0, 10, 10, 0));
        assert!(judge.judge(at(0, 20, 10, 1)).is_err());
        // A quiet period (the batch waits for its retry) is still stuck.
        assert!(judge.judge(at(0, 30, 10, 1)).is_err());
        assert!(judge.judge(at(0, 40, 10, 2)).is_err());
        assert_eq!(judge.judge(at(0, 50, 40, 2)), Ok(()));
        assert_eq!(judge.judge(at(0, 60, 40, 2)), Ok(()));
    }
}
