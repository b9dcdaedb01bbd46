//! The service manager's watchdog, fed while this process is alive and
//! makes progress on what it can. One rule, judged every half
//! `WatchdogSec=`:
//!
//! - every worker task runs, and the poll loops turn (polls complete,
//!   answered or not, within a few poll periods);
//! - the store commits what reaches it (a store whose commits fail, as on
//!   a full disk, is stuck until it commits again);
//! - while the broker is connected, waiting publishes are acknowledged;
//!   while it is unreachable, polling and holding samples in the bounded
//!   pending queue *is* the progress: a restart would throw that backlog
//!   away and could not bring the broker back.
//!
//! A gateway whose broker takes the connection but none of its samples
//! (a broker whose own disk is full) is restarted, not kept alive; so is
//! one whose poll loop hangs.

use std::time::{Duration, Instant};

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
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
    /// Polls completed, answered or failed.
    pub polls: u64,
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
                    progress.polls = [
                        "polls_ok",
                        "polls_timeout",
                        "polls_transport",
                        "polls_protocol",
                        "polls_exception",
                    ]
                    .into_iter()
                    .map(counter)
                    .sum();
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

/// Why a period is not progress: what `STATUS=` says instead of
/// `WATCHDOG=1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stuck {
    /// A worker task ended.
    WorkerStopped,
    /// No poll completed for longer than the poll deadline.
    PollsStalled,
    /// The store's commits fail and none succeeded since.
    StoreFailing,
    /// The broker is connected, publishes wait and none was acknowledged.
    PublishesUnacknowledged,
}

impl Stuck {
    /// What `systemctl status` shows.
    pub fn reason(self) -> &'static str {
        match self {
            Stuck::WorkerStopped => "a worker stopped",
            Stuck::PollsStalled => "the poll loops are not turning",
            Stuck::StoreFailing => "the store is not committing",
            Stuck::PublishesUnacknowledged => "publishes are not being acknowledged",
        }
    }
}

/// What one period looked like from outside the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// The counters at the end of the period.
    pub progress: Progress,
    /// When the period ended.
    pub at: Instant,
    /// Whether the broker connection is up.
    pub connected: bool,
    /// Whether every worker task still runs.
    pub tasks_running: bool,
}

/// Judges, one watchdog period after another, whether the process makes
/// progress on what it can (the rule in the module docs).
#[derive(Debug, Clone)]
pub struct Judge {
    before: Progress,
    store_failing: bool,
    /// How long the poll loops may go without a completed poll; `None`
    /// when this process polls no pack.
    poll_deadline: Option<Duration>,
    polls_moved_at: Instant,
}

impl Judge {
    /// A judge starting from `start` at `at`; `poll_deadline` as in
    /// [`poll_deadline`].
    pub fn new(start: Progress, at: Instant, poll_deadline: Option<Duration>) -> Self {
        Self {
            before: start,
            store_failing: false,
            poll_deadline,
            polls_moved_at: at,
        }
    }

    /// The verdict on the period that ends as `period` says.
    pub fn judge(&mut self, period: Period) -> Result<(), Stuck> {
        let now = period.progress;
        let before = std::mem::replace(&mut self.before, now);
        if now.stored != before.stored {
            self.store_failing = false;
        } else if now.store_failures != before.store_failures {
            self.store_failing = true;
        }
        if now.polls != before.polls {
            self.polls_moved_at = period.at;
        }
        let polls_stalled = self
            .poll_deadline
            .is_some_and(|deadline| period.at.duration_since(self.polls_moved_at) > deadline);
        if !period.tasks_running {
            Err(Stuck::WorkerStopped)
        } else if polls_stalled {
            Err(Stuck::PollsStalled)
        } else if self.store_failing {
            Err(Stuck::StoreFailing)
        } else if period.connected && now.pending > 0 && now.acked == before.acked {
            Err(Stuck::PublishesUnacknowledged)
        } else {
            Ok(())
        }
    }
}

/// How long the poll loops of a process polling `packs` packs every
/// `poll_interval` may go without completing a poll before the process
/// counts as hung: three poll periods, the longest poll a bus allows (a
/// poll that times out still completes), and a grace. `None` when it
/// polls nothing.
pub fn poll_deadline(
    packs: usize,
    poll_interval: Duration,
    longest_poll: Duration,
) -> Option<Duration> {
    (packs > 0).then(|| poll_interval.saturating_mul(3) + longest_poll + POLL_STALL_GRACE)
}

/// Slack on top of three poll periods before a quiet poll loop is hung.
const POLL_STALL_GRACE: Duration = Duration::from_secs(10);

/// Until `shutdown`: tells systemd (when it started us with
/// `Type=notify`) that the gateway is ready, then pets its watchdog while
/// the process makes progress on what it can (the rule in the module
/// docs), with a `STATUS=` line whenever that changes. Returns `true` when
/// the embedded broker was lost for good (the run must then fail, so the
/// service manager restarts it).
pub async fn supervise(
    broker: &Broker,
    shutdown: &CancellationToken,
    tasks: &[AbortHandle],
    workers: &[(WorkerKind, WorkerMetrics)],
    poll_deadline: Option<Duration>,
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
    let mut judge = Judge::new(Progress::of(workers), Instant::now(), poll_deadline);
    let mut last_status = Status::Running;
    let broker_lost = loop {
        tokio::select! {
            () = shutdown.cancelled() => break false,
            () = lost.cancelled() => break true,
            _ = ticks.tick() => {
                let Some(notifier) = &notifier else { continue };
                let connected = broker.client.connection_state() == async_nats::connection::State::Connected;
                let verdict = judge.judge(Period {
                    progress: Progress::of(workers),
                    at: Instant::now(),
                    connected,
                    tasks_running: tasks.iter().all(|task| !task.is_finished()),
                });
                let status = match verdict {
                    Err(stuck) => Status::Stuck(stuck),
                    Ok(()) if !connected => Status::HoldingForBroker,
                    Ok(()) => Status::Running,
                };
                if status != last_status {
                    status.log();
                    let _ = notifier.status(status.text());
                }
                last_status = status;
                if verdict.is_ok() {
                    let _ = notifier.watchdog();
                }
            }
        }
    };
    if let Some(notifier) = &notifier {
        let _ = notifier.stopping();
    }
    broker_lost
}

/// What `STATUS=` says, sent when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Progress, the broker connected.
    Running,
    /// Progress while the broker is unreachable: polling and holding.
    HoldingForBroker,
    /// No progress: the watchdog is not fed.
    Stuck(Stuck),
}

impl Status {
    fn text(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::HoldingForBroker => {
                "broker unreachable; polling and holding samples until it returns"
            }
            Status::Stuck(stuck) => stuck.reason(),
        }
    }

    fn log(self) {
        match self {
            Status::Running => tracing::info!("the pipeline moves; feeding the watchdog"),
            Status::HoldingForBroker => tracing::info!(
                "the broker is unreachable; feeding the watchdog while polling and holding samples"
            ),
            Status::Stuck(stuck) => {
                tracing::warn!(reason = stuck.reason(), "not feeding the watchdog")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(13);

    fn at(pending: i64, acked: u64, stored: u64, store_failures: u64) -> Progress {
        Progress {
            pending,
            acked,
            stored,
            store_failures,
            polls: 0,
        }
    }

    /// Periods one second apart, polls advancing by one each, connected
    /// and running unless changed.
    struct Clock {
        start: Instant,
        seconds: u64,
    }

    impl Clock {
        fn new() -> (Self, Judge, Progress) {
            let start = Instant::now();
            let first = at(0, 10, 10, 0);
            let judge = Judge::new(first, start, Some(DEADLINE));
            (Self { start, seconds: 0 }, judge, first)
        }

        fn period(&mut self, progress: Progress) -> Period {
            self.seconds += 1;
            Period {
                progress: Progress {
                    polls: self.seconds,
                    ..progress
                },
                at: self.start + Duration::from_secs(self.seconds),
                connected: true,
                tasks_running: true,
            }
        }
    }

    #[test]
    fn moving_or_idle_is_healthy() {
        let (mut clock, mut judge, _) = Clock::new();
        assert_eq!(judge.judge(clock.period(at(3, 20, 20, 0))), Ok(()));
        // Nothing to publish and nothing failing: idle, not stuck.
        assert_eq!(judge.judge(clock.period(at(0, 20, 20, 0))), Ok(()));
        // A failed commit and a good one in the same period.
        assert_eq!(judge.judge(clock.period(at(0, 30, 30, 1))), Ok(()));
    }

    #[test]
    fn unacknowledged_publishes_on_a_connected_broker_are_stuck() {
        let (mut clock, mut judge, _) = Clock::new();
        assert_eq!(judge.judge(clock.period(at(5, 15, 15, 0))), Ok(()));
        assert_eq!(
            judge.judge(clock.period(at(7, 15, 15, 0))),
            Err(Stuck::PublishesUnacknowledged)
        );
        assert_eq!(judge.judge(clock.period(at(0, 22, 22, 0))), Ok(()));
    }

    #[test]
    fn holding_samples_while_the_broker_is_unreachable_is_progress() {
        let (mut clock, mut judge, _) = Clock::new();
        // A whole minute of outage: the queue grows, nothing is acked or
        // stored, the poll loops turn.
        for second in 1..=60 {
            let period = Period {
                connected: false,
                ..clock.period(at(second, 10, 10, 0))
            };
            assert_eq!(judge.judge(period), Ok(()), "second {second}");
        }
        // Back: the backlog drains.
        assert_eq!(judge.judge(clock.period(at(10, 60, 60, 0))), Ok(()));
    }

    #[test]
    fn a_hung_poll_loop_is_stuck_whether_or_not_the_broker_is_up() {
        for connected in [true, false] {
            let (mut clock, mut judge, _) = Clock::new();
            let mut verdicts = Vec::new();
            for _ in 0..20 {
                let period = Period {
                    connected,
                    // The polls counter frozen at zero.
                    progress: at(0, 10, 10, 0),
                    ..clock.period(at(0, 10, 10, 0))
                };
                verdicts.push(judge.judge(period));
            }
            // Fed until the deadline (13 s), not after.
            let fed = verdicts.iter().filter(|v| v.is_ok()).count();
            assert_eq!(fed, 13, "connected {connected}: {verdicts:?}");
            assert!(verdicts[13..]
                .iter()
                .all(|v| *v == Err(Stuck::PollsStalled)));
            // A poll completes again: fed.
            assert_eq!(judge.judge(clock.period(at(0, 10, 10, 0))), Ok(()));
        }
    }

    #[test]
    fn a_process_without_packs_has_no_poll_deadline() {
        let second = Duration::from_secs(1);
        assert_eq!(poll_deadline(0, second, second), None);
        assert_eq!(
            poll_deadline(2, second, second),
            Some(Duration::from_secs(14))
        );
        let start = Instant::now();
        let mut judge = Judge::new(Progress::default(), start, None);
        let period = Period {
            progress: Progress::default(),
            at: start + Duration::from_secs(3600),
            connected: false,
            tasks_running: true,
        };
        assert_eq!(judge.judge(period), Ok(()));
    }

    #[test]
    fn a_failing_store_stays_stuck_until_it_commits_again_even_during_an_outage() {
        let (mut clock, mut judge, _) = Clock::new();
        assert_eq!(
            judge.judge(clock.period(at(0, 20, 10, 1))),
            Err(Stuck::StoreFailing)
        );
        // A quiet period (the batch waits for its retry) is still stuck,
        // and so is one with the broker gone.
        assert_eq!(
            judge.judge(clock.period(at(0, 30, 10, 1))),
            Err(Stuck::StoreFailing)
        );
        let outage = Period {
            connected: false,
            ..clock.period(at(4, 30, 10, 2))
        };
        assert_eq!(judge.judge(outage), Err(Stuck::StoreFailing));
        assert_eq!(judge.judge(clock.period(at(0, 50, 40, 2))), Ok(()));
        assert_eq!(judge.judge(clock.period(at(0, 60, 40, 2))), Ok(()));
    }

    #[test]
    fn a_stopped_worker_is_stuck() {
        let (mut clock, mut judge, _) = Clock::new();
        let period = Period {
            tasks_running: false,
            ..clock.period(at(0, 20, 20, 0))
        };
        assert_eq!(judge.judge(period), Err(Stuck::WorkerStopped));
    }
}
