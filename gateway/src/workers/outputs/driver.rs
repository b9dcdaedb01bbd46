//! Applies output states to pins.

use std::time::Duration;

use embedded_hal::digital::OutputPin;
use packgate_protocol::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::controller::{led_is_lit, OutputController, OutputState};
use super::OutputsError;

/// One pin with its polarity and the level it was last set to.
#[derive(Debug)]
struct Output<P> {
    name: &'static str,
    pin: P,
    active_low: bool,
    /// The last value set (true: active), `None` before the first.
    active: Option<bool>,
}

impl<P: OutputPin> Output<P> {
    /// Sets the output active or not, touching the pin only on a change.
    fn set(&mut self, active: bool) -> Result<(), OutputsError> {
        if self.active == Some(active) {
            return Ok(());
        }
        let high = active != self.active_low;
        let result = if high {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
        result.map_err(|err| OutputsError::Pin {
            output: self.name,
            reason: format!("{err:?}"),
        })?;
        self.active = Some(active);
        Ok(())
    }
}

/// Drives the alarm relay and the status LED from an [`OutputController`].
///
/// Pins are set at their electrical level: an active-low relay is on when
/// its pin is low. A pin is written only when its level changes.
#[derive(Debug)]
pub struct OutputDriver<R, L> {
    controller: OutputController,
    relay: Option<Output<R>>,
    led: Option<(Output<L>, u64)>,
    state: OutputState,
}

impl<R: OutputPin, L: OutputPin> OutputDriver<R, L> {
    /// A driver of `relay` (pin, active low) and `led` (pin, active low,
    /// blink period in milliseconds), each optional; both are set to the
    /// controller's present state at once (relay released at start-up).
    pub fn new(
        controller: OutputController,
        relay: Option<(R, bool)>,
        led: Option<(L, bool, u64)>,
    ) -> Result<Self, OutputsError> {
        let state = controller.state();
        let mut driver = Self {
            controller,
            relay: relay.map(|(pin, active_low)| Output {
                name: "alarm_relay",
                pin,
                active_low,
                active: None,
            }),
            led: led.map(|(pin, active_low, blink_period_ms)| {
                let output = Output {
                    name: "status_led",
                    pin,
                    active_low,
                    active: None,
                };
                (output, blink_period_ms)
            }),
            state,
        };
        driver.apply(0)?;
        Ok(driver)
    }

    /// Feeds one pack event, `now_ms` after start, and sets the pins.
    pub fn handle(&mut self, event: &Event, now_ms: u64) -> Result<OutputState, OutputsError> {
        self.state = self.controller.apply(event);
        self.apply(now_ms)?;
        Ok(self.state)
    }

    /// The operator's reset of a latched relay, `now_ms` after start.
    pub fn reset(&mut self, now_ms: u64) -> Result<OutputState, OutputsError> {
        self.state = self.controller.reset();
        self.apply(now_ms)?;
        Ok(self.state)
    }

    /// Advances the LED's blinking to `now_ms` after start.
    pub fn tick(&mut self, now_ms: u64) -> Result<(), OutputsError> {
        self.apply(now_ms)
    }

    /// The present state.
    pub fn state(&self) -> OutputState {
        self.state
    }

    /// Releases the relay and turns the LED off (at shutdown).
    pub fn release(&mut self) -> Result<(), OutputsError> {
        if let Some(relay) = &mut self.relay {
            relay.set(false)?;
        }
        if let Some((led, _)) = &mut self.led {
            led.set(false)?;
        }
        Ok(())
    }

    fn apply(&mut self, now_ms: u64) -> Result<(), OutputsError> {
        if let Some(relay) = &mut self.relay {
            relay.set(self.state.relay_on)?;
        }
        if let Some((led, blink_period_ms)) = &mut self.led {
            led.set(led_is_lit(self.state.led, now_ms, *blink_period_ms))?;
        }
        Ok(())
    }

    /// Runs the outputs until `cancel`: applies `events` and `resets` as
    /// they come, blinks the LED (in steps of a quarter blink period), and
    /// releases every output at the end. A pin that fails is logged and
    /// retried on the next change; it never stops the gateway.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut resets: mpsc::Receiver<()>,
        cancel: CancellationToken,
    ) {
        let start = tokio::time::Instant::now();
        let step_ms = self.led.as_ref().map_or(1_000, |(_, p)| (p / 4).max(25));
        let mut ticks = tokio::time::interval(Duration::from_millis(step_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let elapsed_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        loop {
            let result = tokio::select! {
                () = cancel.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => self.handle(&event, elapsed_ms()).map(drop),
                    None => break,
                },
                Some(()) = resets.recv() => {
                    let result = self.reset(elapsed_ms()).map(drop);
                    tracing::info!(relay_on = self.state.relay_on, "alarm relay reset");
                    result
                }
                _ = ticks.tick() => self.tick(elapsed_ms()),
            };
            if let Err(err) = result {
                tracing::error!(error = %err, "GPIO output");
            }
        }
        if let Err(err) = self.release() {
            tracing::error!(error = %err, "releasing the GPIO outputs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::outputs::fake::RecordingPin;
    use crate::workers::outputs::LedMode;
    use packgate_protocol::{AlarmFlags, BootId, EventKind, PackId};

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            pack_id: PackId::new("rack1-pack1").unwrap(),
            boot_id: BootId(7),
            seq,
            timestamp_ms: 0,
            kind,
        }
    }

    fn driver(
        latching: bool,
        relay_active_low: bool,
    ) -> (
        OutputDriver<RecordingPin, RecordingPin>,
        RecordingPin,
        RecordingPin,
    ) {
        let controller = OutputController::new(
            AlarmFlags::OVER_TEMPERATURE,
            latching,
            false,
            [PackId::new("rack1-pack1").unwrap()],
        );
        let (relay, led) = (RecordingPin::new(), RecordingPin::new());
        let driver = OutputDriver::new(
            controller,
            Some((relay.clone(), relay_active_low)),
            Some((led.clone(), false, 1_000)),
        )
        .unwrap();
        (driver, relay, led)
    }

    const HOT: EventKind = EventKind::AlarmRaised(AlarmFlags::OVER_TEMPERATURE);
    const COOL: EventKind = EventKind::AlarmCleared(AlarmFlags::OVER_TEMPERATURE);

    #[test]
    fn latching_relay_trips_on_over_temperature_and_resets_only_by_reset() {
        let (mut d, relay, _led) = driver(true, false);
        assert_eq!(relay.levels(), [false], "released at start");
        d.handle(&event(1, EventKind::PackOnline), 0).unwrap();
        assert!(d.handle(&event(2, HOT), 10).unwrap().relay_on);
        assert_eq!(relay.levels(), [false, true]);
        assert!(d.handle(&event(3, COOL), 20).unwrap().relay_on);
        assert_eq!(relay.levels(), [false, true], "latched after the clear");
        assert!(!d.reset(30).unwrap().relay_on);
        assert_eq!(relay.levels(), [false, true, false]);
    }

    #[test]
    fn non_latching_relay_releases_on_alarm_cleared() {
        let (mut d, relay, _led) = driver(false, false);
        d.handle(&event(1, HOT), 0).unwrap();
        d.handle(&event(2, COOL), 10).unwrap();
        assert_eq!(relay.levels(), [false, true, false]);
    }

    #[test]
    fn active_low_relay_is_driven_low_when_tripped() {
        let (mut d, relay, _led) = driver(false, true);
        d.handle(&event(1, HOT), 0).unwrap();
        d.handle(&event(2, COOL), 10).unwrap();
        assert_eq!(relay.levels(), [true, false, true]);
        d.release().unwrap();
        assert_eq!(relay.levels(), [true, false, true], "released is high");
    }

    #[test]
    fn led_blinks_until_online_then_is_steady_and_blinks_on_alarm() {
        let (mut d, _relay, led) = driver(false, false);
        assert_eq!(d.state().led, LedMode::Blink);
        d.tick(250).unwrap();
        d.tick(500).unwrap();
        d.tick(750).unwrap();
        d.tick(1_000).unwrap();
        assert_eq!(led.levels(), [true, false, true]);
        d.handle(&event(1, EventKind::PackOnline), 1_500).unwrap();
        d.tick(1_750).unwrap();
        assert_eq!(led.levels(), [true, false, true], "steady on");
        d.handle(&event(2, HOT), 2_600).unwrap();
        assert_eq!(led.levels(), [true, false, true, false]);
        d.release().unwrap();
        assert_eq!(led.levels(), [true, false, true, false]);
    }

    #[tokio::test(start_paused = true)]
    async fn run_applies_events_and_resets_and_releases_at_the_end() {
        let (d, relay, _led) = driver(true, false);
        let (event_tx, event_rx) = mpsc::channel(8);
        let (reset_tx, reset_rx) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(d.run(event_rx, reset_rx, cancel.clone()));
        event_tx.send(event(1, HOT)).await.unwrap();
        event_tx.send(event(2, COOL)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(relay.levels(), [false, true]);
        reset_tx.send(()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(relay.levels(), [false, true, false]);
        event_tx.send(event(3, HOT)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(relay.levels(), [false, true, false, true, false]);
    }
}
