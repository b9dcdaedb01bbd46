//! The owner task of one bus: polls its packs in turn on a drift-free
//! schedule, each poll under a timeout, and turns the answers into samples
//! and events. A pack that stops answering delays only its own slot: it is
//! marked stale, declared offline, and polled with backoff until it answers.

use std::sync::Arc;
use std::time::Duration;

use packgate_drivers::{DriverError, PackDriver, ValidatedSetting};
use packgate_protocol::{
    AlarmFlags, BootId, Command, CommandOutcome, DataQuality, Event, EventKind, PackReading, Sample,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::{SharedClock, Stamp};
use super::{Bus, CollectMetrics, Outgoing};
use crate::config::CollectConfig;
use crate::telemetry::now_ms;

/// One pack's place on the bus and what the collector knows of it.
#[derive(Debug)]
struct PackSlot {
    driver: Box<dyn PackDriver>,
    /// Last sample sequence number used.
    seq: u64,
    /// Last event sequence number used.
    event_seq: u64,
    /// `None` until the first poll decides.
    online: Option<bool>,
    /// Consecutive failed polls.
    failures: u32,
    /// When the pack is due again (later than now while backing off).
    next_poll_at: Instant,
    /// Wait before the next poll of an offline pack.
    backoff: Duration,
    /// The last reading it gave, repeated as stale while it is silent.
    last_reading: Option<PackReading>,
    /// Alarm flags of the last reading.
    alarms: AlarmFlags,
}

impl PackSlot {
    fn new(driver: Box<dyn PackDriver>) -> Self {
        Self {
            driver,
            seq: 0,
            event_seq: 0,
            online: None,
            failures: 0,
            next_poll_at: Instant::now(),
            backoff: Duration::ZERO,
            last_reading: None,
            alarms: AlarmFlags::NONE,
        }
    }

    fn event(&mut self, boot_id: BootId, timestamp_ms: i64, kind: EventKind) -> Outgoing {
        self.event_seq += 1;
        Outgoing::Event(Event {
            pack_id: self.driver.pack_id().clone(),
            boot_id,
            seq: self.event_seq,
            timestamp_ms,
            kind,
        })
    }

    /// The next sample, stamped with the poll's wall-clock time and the
    /// clock guard's verdict on it; the sequence number orders it whatever
    /// the wall clock did.
    fn sample(
        &mut self,
        boot_id: BootId,
        stamp: Stamp,
        quality: DataQuality,
        reading: PackReading,
    ) -> Outgoing {
        self.seq += 1;
        Outgoing::Sample(
            Sample {
                pack_id: self.driver.pack_id().clone(),
                boot_id,
                seq: self.seq,
                timestamp_ms: stamp.wall_ms,
                quality,
                reading,
                clock: stamp.clock,
            },
            stamp.at,
        )
    }

    /// Polls once and returns what to publish.
    #[allow(clippy::too_many_arguments)]
    async fn poll(
        &mut self,
        timeout: Duration,
        config: &CollectConfig,
        boot_id: BootId,
        clock: &SharedClock,
        metrics: &CollectMetrics,
        out: &mut Vec<Outgoing>,
    ) {
        let stamp = clock.stamp(metrics);
        let polled_at = stamp.at;
        let result = match tokio::time::timeout(timeout, self.driver.poll()).await {
            Ok(Ok(reading)) => reading
                .validate()
                .map(|()| reading)
                .map_err(|e| DriverError::Protocol(e.to_string())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DriverError::Timeout(timeout)),
        };
        metrics
            .poll_latency
            .record_us(polled_at.elapsed().as_micros() as u64);
        match result {
            Ok(reading) => {
                let quality = self.driver.last_quality();
                self.answered(reading, quality, boot_id, stamp, metrics, out)
            }
            Err(error) => self.failed(error, config, boot_id, stamp, metrics, out),
        }
    }

    fn answered(
        &mut self,
        reading: PackReading,
        quality: DataQuality,
        boot_id: BootId,
        stamp: Stamp,
        metrics: &CollectMetrics,
        out: &mut Vec<Outgoing>,
    ) {
        metrics.polls_ok.inc();
        let pack = self.driver.pack_id().clone();
        if self.online != Some(true) {
            if self.online == Some(false) {
                metrics.packs_offline.add(-1);
                tracing::info!(%pack, after_failures = self.failures, "pack answers again: online");
            }
            self.online = Some(true);
            out.push(self.event(boot_id, stamp.wall_ms, EventKind::PackOnline));
        }
        self.failures = 0;
        self.backoff = Duration::ZERO;
        self.next_poll_at = stamp.at;
        let raised = reading.alarms.difference(self.alarms);
        let cleared = self.alarms.difference(reading.alarms);
        if !raised.is_empty() {
            tracing::warn!(%pack, alarms = ?raised.names(), "alarm raised");
            out.push(self.event(boot_id, stamp.wall_ms, EventKind::AlarmRaised(raised)));
        }
        if !cleared.is_empty() {
            tracing::info!(%pack, alarms = ?cleared.names(), "alarm cleared");
            out.push(self.event(boot_id, stamp.wall_ms, EventKind::AlarmCleared(cleared)));
        }
        self.alarms = reading.alarms;
        self.last_reading = Some(reading.clone());
        if quality == DataQuality::Stale {
            metrics.samples_stale.inc();
        }
        out.push(self.sample(boot_id, stamp, quality, reading));
    }

    fn failed(
        &mut self,
        error: DriverError,
        config: &CollectConfig,
        boot_id: BootId,
        stamp: Stamp,
        metrics: &CollectMetrics,
        out: &mut Vec<Outgoing>,
    ) {
        metrics.poll_failed(error.kind());
        self.failures = self.failures.saturating_add(1);
        let pack = self.driver.pack_id().clone();
        if self.failures == 1 {
            tracing::warn!(%pack, %error, kind = error.kind().as_str(), "poll failed");
        } else {
            tracing::debug!(%pack, %error, failures = self.failures, "poll failed again");
        }
        if self.failures >= config.offline_after_failures {
            if self.online != Some(false) {
                self.online = Some(false);
                metrics.packs_offline.add(1);
                tracing::warn!(%pack, %error, failures = self.failures, "pack offline; polling with backoff");
                out.push(self.event(
                    boot_id,
                    stamp.wall_ms,
                    EventKind::PackOffline {
                        reason: error.to_string(),
                    },
                ));
            }
            let floor = config.poll_interval().max(Duration::from_millis(100));
            let ceiling = Duration::from_millis(config.offline_backoff_max_ms).max(floor);
            self.backoff = (self.backoff * 2).clamp(floor, ceiling);
            self.next_poll_at = stamp.at + self.backoff;
        }
        if let Some(last) = self.last_reading.clone() {
            metrics.samples_stale.inc();
            out.push(self.sample(boot_id, stamp, DataQuality::Stale, last));
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

/// Applies one write to its pack and reads it back, under `timeout`.
async fn apply_write(slots: &mut [PackSlot], write: WriteRequest, timeout: Duration) {
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
            match tokio::time::timeout(timeout, slot.driver.apply_setting(&setting)).await {
                Ok(Ok(read_back)) => {
                    tracing::info!(pack = %command.pack_id, setting = %command.setting.0, value = command.value, read_back, "setting written and read back");
                    CommandOutcome::Applied { read_back }
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

/// The `tick`-th instant of a schedule that starts at `start`.
fn tick_instant(start: Instant, period: Duration, tick: u64) -> Instant {
    let nanos = u64::try_from(period.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_mul(tick);
    start + Duration::from_nanos(nanos)
}

/// Polls the packs of `bus` until `shutdown`, sending samples and events to
/// the publisher.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_bus(
    mut bus: Bus,
    mut writes: mpsc::Receiver<WriteRequest>,
    phase: Duration,
    boot_id: BootId,
    config: CollectConfig,
    clock: SharedClock,
    tx: mpsc::Sender<Outgoing>,
    metrics: Arc<CollectMetrics>,
    shutdown: CancellationToken,
) {
    let period = config.poll_interval();
    let mut slots: Vec<PackSlot> = bus.drivers.drain(..).map(PackSlot::new).collect();
    let start = Instant::now() + phase;
    let mut tick: u64 = 0;
    let mut out = Vec::new();
    tracing::debug!(bus = %bus.name, packs = slots.len(), "bus started");
    tokio::select! {
        () = tokio::time::sleep_until(start) => {}
        () = shutdown.cancelled() => return,
    }
    while !shutdown.is_cancelled() {
        let round_start = Instant::now();
        for index in 0..slots.len() {
            if shutdown.is_cancelled() {
                break;
            }
            // Writes go between polls, never in the middle of one.
            while let Ok(write) = writes.try_recv() {
                apply_write(&mut slots, write, bus.poll_timeout).await;
            }
            let slot = &mut slots[index];
            if slot.next_poll_at > round_start {
                continue;
            }
            slot.poll(
                bus.poll_timeout,
                &config,
                boot_id,
                &clock,
                &metrics,
                &mut out,
            )
            .await;
            for item in out.drain(..) {
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        }
        if period.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tick += 1;
        let mut next = tick_instant(start, period, tick);
        let now = Instant::now();
        if next <= now {
            // The round overran: skip the missed ticks (counted), never
            // poll in a burst to catch up.
            let behind = u64::try_from((now - next).as_nanos() / period.as_nanos())
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            metrics.late_ticks.add(behind);
            tracing::debug!(bus = %bus.name, missed = behind, "poll round overran its period");
            tick = tick.saturating_add(behind);
            next = tick_instant(start, period, tick);
        }
        // Sleep until the next round, serving writes as they come.
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => break,
                Some(write) = writes.recv() => apply_write(&mut slots, write, bus.poll_timeout).await,
                () = shutdown.cancelled() => break,
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
    tracing::debug!(bus = %bus.name, "bus stopped");
}
