//! The owner task of one bus: it holds the bus's link outright, polls its
//! packs in turn on a drift-free schedule, each poll under a timeout, and
//! serves the control worker's writes between polls. A pack that stops
//! answering delays only its own slot: it is marked stale, declared
//! offline, and polled with backoff until it answers.

use std::sync::Arc;
use std::time::Duration;

use packgate_drivers::{PackDriver, ValidatedSetting};
use packgate_protocol::{BootId, Command, CommandOutcome};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::SharedClock;
use super::slot::PackSlot;
use super::state::OfflinePolicy;
use super::{CollectMetrics, Outgoing};
use crate::config::CollectConfig;
use crate::telemetry::events::{LogLimiter, LIMITED_LOG_INTERVAL};
use crate::telemetry::now_ms;

/// What every bus owner of one collector shares.
#[derive(Debug, Clone)]
pub(super) struct BusContext {
    /// This run's boot id.
    pub(super) boot_id: BootId,
    /// Poll period.
    pub(super) period: Duration,
    /// When a failing pack is offline and how it is polled then.
    pub(super) offline: OfflinePolicy,
    /// The clock that stamps the samples.
    pub(super) clock: SharedClock,
    /// To the publisher.
    pub(super) tx: mpsc::Sender<Outgoing>,
    /// The collector's counters.
    pub(super) metrics: Arc<CollectMetrics>,
    /// One WARN per interval for all buses that cannot keep the period
    /// (the lines held back are counted in the next).
    pub(super) late_log: Arc<LogLimiter>,
    /// Fires when polling stops.
    pub(super) shutdown: CancellationToken,
}

impl BusContext {
    /// The context of buses polled as `config` says.
    pub(super) fn new(
        config: &CollectConfig,
        boot_id: BootId,
        clock: SharedClock,
        tx: mpsc::Sender<Outgoing>,
        metrics: Arc<CollectMetrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            boot_id,
            period: config.poll_interval(),
            offline: OfflinePolicy::of(config),
            clock,
            tx,
            metrics,
            late_log: Arc::new(LogLimiter::named(
                "bus cannot keep its poll period",
                LIMITED_LOG_INTERVAL,
            )),
            shutdown,
        }
    }
}

/// A validated setting write for a pack on this bus, from the control
/// worker, with where to send the outcome.
#[derive(Debug)]
pub(super) struct WriteRequest {
    /// The command (validated by the control worker).
    pub(super) command: Command,
    /// Where the outcome goes.
    pub(super) reply: oneshot::Sender<CommandOutcome>,
}

/// Applies one write to its pack on `link` and reads it back, under
/// `timeout`.
async fn apply_write<D: PackDriver>(
    slots: &mut [PackSlot<D>],
    link: &mut D::Link,
    write: WriteRequest,
    timeout: Duration,
) {
    let command = &write.command;
    let outcome = match slots
        .iter_mut()
        .find(|slot| slot.driver.pack_id() == &command.pack_id)
    {
        None => CommandOutcome::Failed {
            error: format!("pack {} is not on this bus", command.pack_id),
        },
        Some(_) if command.expires_at_ms <= now_ms() => CommandOutcome::Rejected {
            reason: "the command expired before the bus could apply it".into(),
        },
        Some(slot) => {
            let setting = ValidatedSetting {
                name: command.setting.clone(),
                value: command.value,
            };
            match tokio::time::timeout(timeout, slot.driver.apply_setting(link, &setting)).await {
                Ok(Ok(Ok(read_back))) => {
                    tracing::info!(pack = %command.pack_id, setting = %command.setting.0, value = command.value, read_back, "setting written and read back");
                    CommandOutcome::Applied { read_back }
                }
                Ok(Ok(Err(exception))) => {
                    tracing::warn!(pack = %command.pack_id, setting = %command.setting.0, %exception, "setting write refused by the pack");
                    CommandOutcome::Failed {
                        error: exception.to_string(),
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(pack = %command.pack_id, setting = %command.setting.0, %error, "setting write failed");
                    CommandOutcome::Failed {
                        error: error.to_string(),
                    }
                }
                Err(_) => CommandOutcome::TimedOut,
            }
        }
    };
    let _ = write.reply.send(outcome);
}

/// Most start times in one period: many buses are spread over at most
/// this many evenly spaced instants, so they make an even load instead of
/// one burst a period, while the buses of one instant share one wake-up
/// (their polls, their publishes and, downstream, their transaction).
pub(super) const POLL_GROUPS: usize = 10;

/// Buses that start at one instant before another start time is added: a
/// site's tens of buses poll together, once a period, so their requests,
/// answers, publishes and acks each go in a few writes and wake-ups.
pub(super) const BUSES_PER_GROUP: usize = 50;

/// Where in the period the `index`-th of `count` buses starts: in one of
/// `count / BUSES_PER_GROUP` groups (at least one, at most
/// [`POLL_GROUPS`]), evenly spaced, buses dealt to the groups in turn.
pub(super) fn phase(period: Duration, index: usize, count: usize) -> Duration {
    let groups = count.div_ceil(BUSES_PER_GROUP).clamp(1, POLL_GROUPS);
    let group = u32::try_from(index.min(count.max(1) - 1) % groups).unwrap_or(0);
    let groups = u32::try_from(groups).unwrap_or(1);
    (period / groups).saturating_mul(group)
}

/// The `tick`-th instant of a schedule that starts at `start`.
fn tick_instant(start: Instant, period: Duration, tick: u64) -> Instant {
    let nanos = u64::try_from(period.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_mul(tick);
    start + Duration::from_nanos(nanos)
}

/// One bus as its owner task holds it: the link and the packs on it.
#[derive(Debug)]
pub(super) struct BusOwner<D: PackDriver> {
    /// A name for logs.
    pub(super) name: String,
    /// The wire, lent to each pack's driver in turn.
    pub(super) link: D::Link,
    /// The packs, in polling order.
    pub(super) slots: Vec<PackSlot<D>>,
    /// Time one whole poll of one pack may take (all its requests).
    pub(super) poll_timeout: Duration,
}

impl<D: PackDriver> BusOwner<D> {
    /// The owner of `link` and the packs `drivers` reach on it.
    pub(super) fn new(
        name: String,
        link: D::Link,
        drivers: Vec<D>,
        poll_timeout: Duration,
    ) -> Self {
        Self {
            name,
            link,
            slots: drivers.into_iter().map(PackSlot::new).collect(),
            poll_timeout,
        }
    }

    async fn write(&mut self, write: WriteRequest) {
        apply_write(&mut self.slots, &mut self.link, write, self.poll_timeout).await;
    }

    /// Polls every pack that is due once; false when the publisher is gone.
    async fn round(
        &mut self,
        round_start: Instant,
        writes: &mut mpsc::Receiver<WriteRequest>,
        cx: &BusContext,
        out: &mut Vec<Outgoing>,
    ) -> bool {
        for index in 0..self.slots.len() {
            if cx.shutdown.is_cancelled() {
                break;
            }
            // Writes go between polls, never in the middle of one.
            while let Ok(write) = writes.try_recv() {
                self.write(write).await;
            }
            let slot = &mut self.slots[index];
            if !slot.state.is_due(round_start) {
                continue;
            }
            slot.poll(&mut self.link, self.poll_timeout, cx, out).await;
            for item in out.drain(..) {
                if cx.tx.send(item).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    /// Polls the packs until shutdown, the first round at `start`, sending
    /// samples and events to the publisher and serving `writes`.
    pub(super) async fn run(
        mut self,
        mut writes: mpsc::Receiver<WriteRequest>,
        start: Instant,
        cx: BusContext,
    ) {
        let mut tick: u64 = 0;
        let mut out = Vec::new();
        tracing::debug!(bus = %self.name, packs = self.slots.len(), "bus started");
        tokio::select! {
            () = tokio::time::sleep_until(start) => {}
            () = cx.shutdown.cancelled() => return,
        }
        while !cx.shutdown.is_cancelled() {
            if !self.round(Instant::now(), &mut writes, &cx, &mut out).await {
                return;
            }
            if cx.period.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            let next;
            (tick, next) = self.next_tick(start, tick, &cx);
            // Sleep until the next round, serving writes as they come.
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => break,
                    Some(write) = writes.recv() => self.write(write).await,
                    () = cx.shutdown.cancelled() => break,
                }
            }
        }
        // Whatever is still queued is refused, not left hanging.
        writes.close();
        while let Ok(write) = writes.try_recv() {
            let _ = write.reply.send(CommandOutcome::Failed {
                error: "the collector is shutting down".into(),
            });
        }
        tracing::debug!(bus = %self.name, "bus stopped");
    }

    /// The tick after `tick` and its instant. A round that overran skips
    /// the missed ticks: never a burst of polls to catch up. The missed
    /// ticks are counted (`late_ticks`) and a WARN, one per interval for
    /// all buses, names the bus and how late it is.
    fn next_tick(&self, start: Instant, tick: u64, cx: &BusContext) -> (u64, Instant) {
        let tick = tick.saturating_add(1);
        let next = tick_instant(start, cx.period, tick);
        let now = Instant::now();
        if next > now {
            return (tick, next);
        }
        let late = now - next;
        let behind = u64::try_from(late.as_nanos() / cx.period.as_nanos().max(1))
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        cx.metrics.late_ticks.add(behind);
        if let Some(held_back) = cx.late_log.allow() {
            tracing::warn!(
                bus = %self.name,
                late_ms = late.as_millis(),
                missed_ticks = behind,
                period_ms = cx.period.as_millis(),
                packs = self.slots.len(),
                held_back,
                "bus {} cannot keep its poll period: {} ms late, {} poll round(s) skipped \
                 (too many packs on it, slow answers, or an overloaded box)",
                self.name,
                late.as_millis(),
                behind
            );
        }
        let tick = tick.saturating_add(behind);
        (tick, tick_instant(start, cx.period, tick))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;
    use std::sync::Mutex;

    use packgate_drivers::SimDriver;

    use super::super::clock::SystemClock;
    use super::*;

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn phases_spread_buses_over_the_period_without_overflow() {
        let second = Duration::from_secs(1);
        // A site's few buses poll together.
        assert_eq!(phase(second, 0, 4), Duration::ZERO);
        assert_eq!(phase(second, 3, 4), Duration::ZERO);
        assert_eq!(phase(second, 49, 50), Duration::ZERO);
        assert_eq!(phase(second, 5, 0), Duration::ZERO);
        // A 51st adds a second start time, half a period later.
        assert_eq!(phase(second, 1, 51), Duration::from_millis(500));
        let huge = Duration::from_millis(u64::MAX);
        assert!(phase(huge, usize::MAX, usize::MAX) < huge);
    }

    #[test]
    fn many_buses_share_a_few_start_times_spread_over_the_period() {
        let second = Duration::from_secs(1);
        let phases: Vec<Duration> = (0..1000).map(|i| phase(second, i, 1000)).collect();
        let mut distinct = phases.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), POLL_GROUPS);
        assert_eq!(distinct[1], Duration::from_millis(100));
        assert_eq!(distinct[9], Duration::from_millis(900));
        // Dealt in turn: each group holds a hundred buses, neighbours apart.
        assert_eq!(phases[0], phases[10]);
        assert_ne!(phases[0], phases[1]);
        for start in &distinct {
            assert_eq!(phases.iter().filter(|p| *p == start).count(), 100);
        }
        // 120 buses: three start times of 40.
        let phases: Vec<Duration> = (0..120).map(|i| phase(second, i, 120)).collect();
        for start in [0, 333, 666] {
            let at = Duration::from_nanos(333_333_333 * start / 333);
            assert_eq!(phases.iter().filter(|p| **p == at).count(), 40, "{at:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_overrun_is_counted_and_warned_naming_the_bus_and_how_late() {
        let (tx, _rx) = mpsc::channel(8);
        let metrics = Arc::new(CollectMetrics::default());
        let cx = BusContext::new(
            &CollectConfig::default(),
            super::super::new_boot_id(),
            SharedClock::new(Arc::new(SystemClock)),
            tx,
            Arc::clone(&metrics),
            CancellationToken::new(),
        );
        let owner: BusOwner<SimDriver> =
            BusOwner::new("rs485-a".into(), (), Vec::new(), Duration::from_secs(1));
        let sink = Sink::default();
        let writer = sink.clone();
        let _logs = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish(),
        );
        let start = Instant::now();
        let second = Duration::from_secs(1);
        // On time: nothing counted, nothing said.
        assert_eq!(owner.next_tick(start, 0, &cx), (1, start + second));
        assert_eq!(metrics.late_ticks.get(), 0);
        // The first round took 3.5 periods: ticks 1, 2 and 3 are skipped.
        tokio::time::advance(Duration::from_millis(3_500)).await;
        assert_eq!(owner.next_tick(start, 0, &cx), (4, start + second * 4));
        assert_eq!(metrics.late_ticks.get(), 3);
        // Late again: counted, but the WARN waits for its interval.
        tokio::time::advance(Duration::from_millis(3_000)).await;
        assert_eq!(owner.next_tick(start, 4, &cx), (7, start + second * 7));
        assert_eq!(metrics.late_ticks.get(), 5);
        let logged = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logged.lines().count(), 1, "{logged}");
        assert!(logged.contains("WARN"), "{logged}");
        assert!(
            logged.contains(
                "bus rs485-a cannot keep its poll period: 2500 ms late, 3 poll round(s) skipped"
            ),
            "{logged}"
        );
    }
}
