//! One pack's place on its bus: one poll under a timeout, and what its
//! answer (or silence) becomes: samples, events, counters.

use std::time::Duration;

use packgate_drivers::{
    plausible, BusLink, DeviceException, DriverError, LinkErrorCounts, PackDriver, Polled,
};
use packgate_protocol::{AlarmFlags, BootId, DataQuality, Event, EventKind, PackReading, Sample};

use super::bus::BusContext;
use super::clock::Stamp;
use super::state::{Change, PackState};
use super::Outgoing;

/// Why a poll gave no reading.
#[derive(Debug)]
enum PollFailure {
    /// No answer, or no valid one.
    Link(DriverError),
    /// The pack refused the request.
    Refused(DeviceException),
}

impl std::fmt::Display for PollFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollFailure::Link(error) => error.fmt(f),
            PollFailure::Refused(exception) => exception.fmt(f),
        }
    }
}

impl PollFailure {
    fn kind(&self) -> &'static str {
        match self {
            PollFailure::Link(error) => error.kind().as_str(),
            PollFailure::Refused(_) => "exception",
        }
    }
}

/// One pack on the bus and what the collector knows of it.
#[derive(Debug)]
pub(super) struct PackSlot<D> {
    pub(super) driver: D,
    /// Last sample sequence number used.
    seq: u64,
    /// Last event sequence number used.
    event_seq: u64,
    /// Online, stale, offline...
    pub(super) state: PackState,
    /// The last reading it gave, repeated as stale while it is silent.
    last_reading: Option<PackReading>,
    /// Alarm flags of the last reading.
    alarms: AlarmFlags,
    /// Whether the last reading was suspect (logged once, at the first).
    suspect: bool,
}

impl<D: PackDriver> PackSlot<D> {
    pub(super) fn new(driver: D) -> Self {
        Self {
            driver,
            seq: 0,
            event_seq: 0,
            state: PackState::Unknown { failures: 0 },
            last_reading: None,
            alarms: AlarmFlags::NONE,
            suspect: false,
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

    /// Polls once on `link` and puts what to publish into `out`.
    pub(super) async fn poll(
        &mut self,
        link: &mut D::Link,
        timeout: Duration,
        cx: &BusContext,
        out: &mut Vec<Outgoing>,
    ) {
        let stamp = cx.clock.stamp(&cx.metrics);
        let polled_at = stamp.at;
        let result = match tokio::time::timeout(timeout, self.driver.poll(link)).await {
            Ok(Ok(Ok(polled))) => polled
                .reading
                .validate()
                .map(|()| polled)
                .map_err(|e| PollFailure::Link(DriverError::Protocol(e.to_string()))),
            Ok(Ok(Err(exception))) => Err(PollFailure::Refused(exception)),
            Ok(Err(e)) => Err(PollFailure::Link(e)),
            Err(_) => Err(PollFailure::Link(DriverError::Timeout(timeout))),
        };
        cx.metrics
            .poll_latency
            .record_us(polled_at.elapsed().as_micros() as u64);
        match result {
            Ok(polled) => self.answered(polled, stamp, cx, out),
            Err(failure) => self.failed(failure, stamp, link.error_counts(), cx, out),
        }
    }

    fn answered(&mut self, polled: Polled, stamp: Stamp, cx: &BusContext, out: &mut Vec<Outgoing>) {
        cx.metrics.polls_ok.inc();
        let pack = self.driver.pack_id().clone();
        let Polled {
            reading,
            mut quality,
            serial_number,
        } = polled;
        if quality == DataQuality::Fresh {
            quality = self.judge(&reading);
        }
        match self.state.answered() {
            Change::None | Change::Offline => {}
            change => {
                if let Change::BackOnline { after_failures } = change {
                    cx.metrics.packs_offline.add(-1);
                    tracing::info!(%pack, after_failures, "pack answers again: online");
                }
                let kind = EventKind::pack_online(serial_number);
                out.push(self.event(cx.boot_id, stamp.wall_ms, kind));
            }
        }
        let raised = reading.alarms.difference(self.alarms);
        let cleared = self.alarms.difference(reading.alarms);
        if !raised.is_empty() {
            tracing::warn!(%pack, alarms = ?raised.names(), "alarm raised");
            out.push(self.event(cx.boot_id, stamp.wall_ms, EventKind::AlarmRaised(raised)));
        }
        if !cleared.is_empty() {
            tracing::info!(%pack, alarms = ?cleared.names(), "alarm cleared");
            out.push(self.event(cx.boot_id, stamp.wall_ms, EventKind::AlarmCleared(cleared)));
        }
        self.alarms = reading.alarms;
        match quality {
            DataQuality::Stale => cx.metrics.samples_stale.inc(),
            DataQuality::Suspect => cx.metrics.samples_suspect.inc(),
            DataQuality::Fresh => {}
        }
        // A silent pack repeats its last believable reading, not a
        // suspect one.
        if quality != DataQuality::Suspect {
            self.last_reading = Some(reading.clone());
        }
        out.push(self.sample(cx.boot_id, stamp, quality, reading));
    }

    /// A fresh reading's quality: suspect when it is not believable (see
    /// [`packgate_drivers::plausible`]), logged at the first of a run.
    fn judge(&mut self, reading: &PackReading) -> DataQuality {
        let pack = self.driver.pack_id();
        match plausible::check(reading, &self.driver.plausibility()) {
            Ok(()) => {
                if std::mem::take(&mut self.suspect) {
                    tracing::info!(%pack, "readings believable again");
                }
                DataQuality::Fresh
            }
            Err(why) => {
                if !std::mem::replace(&mut self.suspect, true) {
                    tracing::warn!(%pack, reason = %why, "reading not believable: stored as suspect, never fresh");
                }
                DataQuality::Suspect
            }
        }
    }

    fn failed(
        &mut self,
        failure: PollFailure,
        stamp: Stamp,
        link: Option<LinkErrorCounts>,
        cx: &BusContext,
        out: &mut Vec<Outgoing>,
    ) {
        match &failure {
            PollFailure::Link(error) => cx.metrics.poll_failed(error.kind()),
            PollFailure::Refused(_) => cx.metrics.polls_exception.inc(),
        }
        let pack = self.driver.pack_id().clone();
        let change = self.state.failed(stamp.at, &cx.offline);
        let failures = self.state.failures();
        if failures == 1 {
            tracing::warn!(%pack, error = %failure, kind = failure.kind(), "poll failed");
        } else {
            tracing::debug!(%pack, error = %failure, failures, "poll failed again");
        }
        if change == Change::Offline {
            cx.metrics.packs_offline.add(1);
            tracing::warn!(%pack, error = %failure, failures, ?link, "pack offline; polling with backoff");
            let kind = EventKind::pack_offline(failure.to_string());
            out.push(self.event(cx.boot_id, stamp.wall_ms, kind));
        }
        if let Some(last) = self.last_reading.clone() {
            cx.metrics.samples_stale.inc();
            out.push(self.sample(cx.boot_id, stamp, DataQuality::Stale, last));
        }
    }
}
