//! The pure state machine behind the outputs.

use std::collections::BTreeMap;

use packgate_protocol::{AlarmFlags, Event, EventKind, PackId};

/// What the status LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedMode {
    /// Steady on: every pack is online and no alarm is raised.
    On,
    /// Blinking: a pack is offline or not seen yet, an alarm is raised, or
    /// the relay is tripped.
    Blink,
}

/// The state of every output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputState {
    /// Whether the alarm relay is tripped (on).
    pub relay_on: bool,
    /// What the LED shows.
    pub led: LedMode,
}

/// Whether a blinking LED is lit `elapsed_ms` after blinking started: on
/// for the first half of each period, off for the second.
pub fn led_is_lit(mode: LedMode, elapsed_ms: u64, blink_period_ms: u64) -> bool {
    match mode {
        LedMode::On => true,
        LedMode::Blink => {
            let period_ms = blink_period_ms.max(2);
            elapsed_ms % period_ms < period_ms / 2
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct PackState {
    /// `None` until the first event about the pack.
    online: Option<bool>,
    alarms: AlarmFlags,
}

/// Turns pack events into output states.
///
/// The relay trips when any pack raises an alarm in the trip mask (or, if
/// so configured, goes offline). Non-latching, it releases when no pack
/// has such an alarm any more; latching, it stays tripped until
/// [`reset`](Self::reset), which releases it only if the condition is gone.
#[derive(Debug, Clone)]
pub struct OutputController {
    trip_mask: AlarmFlags,
    latching: bool,
    trip_on_offline: bool,
    packs: BTreeMap<PackId, PackState>,
    latched: bool,
}

impl OutputController {
    /// A controller for the configured `packs`, none of them seen yet: the
    /// LED blinks until every pack has answered (a pack not seen yet does
    /// not trip the relay; only a `PackOffline` event does, if configured).
    pub fn new(
        trip_mask: AlarmFlags,
        latching: bool,
        trip_on_offline: bool,
        packs: impl IntoIterator<Item = PackId>,
    ) -> Self {
        Self {
            trip_mask,
            latching,
            trip_on_offline,
            packs: packs
                .into_iter()
                .map(|id| (id, PackState::default()))
                .collect(),
            latched: false,
        }
    }

    /// Applies one event and gives the new state. An event about a pack not
    /// in the configuration adds it.
    pub fn apply(&mut self, event: &Event) -> OutputState {
        let pack = self.packs.entry(event.pack_id.clone()).or_default();
        match &event.kind {
            EventKind::AlarmRaised(flags) => {
                pack.alarms = pack.alarms.union(*flags);
                // An alarm is only ever reported by a pack that answers.
                pack.online = Some(true);
            }
            EventKind::AlarmCleared(flags) => pack.alarms = pack.alarms.difference(*flags),
            EventKind::PackOnline | EventKind::PackOnlineIdentified { .. } => {
                pack.online = Some(true)
            }
            // The last known alarms stay: an offline pack is not known to
            // have recovered.
            EventKind::PackOffline { .. } => pack.online = Some(false),
        }
        if self.latching && self.condition() {
            self.latched = true;
        }
        self.state()
    }

    /// The operator's reset of a latched relay: releases it if no tripping
    /// condition remains, else it stays on. Gives the new state.
    pub fn reset(&mut self) -> OutputState {
        self.latched = false;
        if self.latching && self.condition() {
            self.latched = true;
        }
        self.state()
    }

    /// The current state.
    pub fn state(&self) -> OutputState {
        let relay_on = self.latched || self.condition();
        let healthy = !relay_on
            && self
                .packs
                .values()
                .all(|pack| pack.online == Some(true) && pack.alarms.is_empty());
        OutputState {
            relay_on,
            led: if healthy { LedMode::On } else { LedMode::Blink },
        }
    }

    /// Whether a tripping condition is present now.
    fn condition(&self) -> bool {
        self.packs.values().any(|pack| {
            pack.alarms.0 & self.trip_mask.0 != 0
                || (self.trip_on_offline && pack.online == Some(false))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use packgate_protocol::BootId;

    fn event(pack: &str, seq: u64, kind: EventKind) -> Event {
        Event {
            pack_id: PackId::new(pack).unwrap(),
            boot_id: BootId(1),
            seq,
            timestamp_ms: 0,
            kind,
        }
    }

    fn controller(latching: bool, trip_on_offline: bool) -> OutputController {
        OutputController::new(
            AlarmFlags::OVER_TEMPERATURE.union(AlarmFlags::SHORT_CIRCUIT),
            latching,
            trip_on_offline,
            ["a", "b"].map(|p| PackId::new(p).unwrap()),
        )
    }

    #[test]
    fn led_blinks_until_every_pack_is_online_then_stays_on() {
        let mut c = controller(true, false);
        assert_eq!(c.state().led, LedMode::Blink);
        assert_eq!(
            c.apply(&event("a", 1, EventKind::PackOnline)).led,
            LedMode::Blink
        );
        let state = c.apply(&event("b", 1, EventKind::PackOnline));
        assert_eq!(
            state,
            OutputState {
                relay_on: false,
                led: LedMode::On
            }
        );
        let offline = EventKind::PackOffline {
            reason: "timeout".into(),
        };
        assert_eq!(c.apply(&event("b", 2, offline)).led, LedMode::Blink);
        assert!(
            !c.state().relay_on,
            "offline does not trip unless configured"
        );
    }

    #[test]
    fn alarms_outside_the_mask_blink_the_led_but_do_not_trip() {
        let mut c = controller(true, false);
        c.apply(&event("a", 1, EventKind::PackOnline));
        c.apply(&event("b", 1, EventKind::PackOnline));
        let state = c.apply(&event(
            "a",
            2,
            EventKind::AlarmRaised(AlarmFlags::CELL_IMBALANCE),
        ));
        assert_eq!(
            state,
            OutputState {
                relay_on: false,
                led: LedMode::Blink
            }
        );
        let state = c.apply(&event(
            "a",
            3,
            EventKind::AlarmCleared(AlarmFlags::CELL_IMBALANCE),
        ));
        assert_eq!(state.led, LedMode::On);
    }

    #[test]
    fn latching_relay_holds_until_reset_after_the_alarm_clears() {
        let mut c = controller(true, false);
        let raised = EventKind::AlarmRaised(AlarmFlags::OVER_TEMPERATURE);
        assert!(c.apply(&event("a", 1, raised)).relay_on);
        assert!(
            c.reset().relay_on,
            "a reset while the alarm is active does nothing"
        );
        let cleared = EventKind::AlarmCleared(AlarmFlags::OVER_TEMPERATURE);
        assert!(c.apply(&event("a", 2, cleared)).relay_on, "latched");
        assert!(!c.reset().relay_on);
    }

    #[test]
    fn non_latching_relay_follows_the_alarms_of_every_pack() {
        let mut c = controller(false, false);
        let hot = EventKind::AlarmRaised(AlarmFlags::OVER_TEMPERATURE);
        let short = EventKind::AlarmRaised(AlarmFlags::SHORT_CIRCUIT);
        assert!(c.apply(&event("a", 1, hot)).relay_on);
        assert!(c.apply(&event("b", 1, short)).relay_on);
        let cool = EventKind::AlarmCleared(AlarmFlags::OVER_TEMPERATURE);
        assert!(
            c.apply(&event("a", 2, cool)).relay_on,
            "pack b still alarms"
        );
        let cleared = EventKind::AlarmCleared(AlarmFlags::SHORT_CIRCUIT);
        assert!(!c.apply(&event("b", 2, cleared)).relay_on);
    }

    #[test]
    fn offline_trips_when_configured() {
        let mut c = controller(false, true);
        assert!(!c.state().relay_on, "a pack not seen yet is not offline");
        c.apply(&event("a", 1, EventKind::PackOnline));
        assert!(!c.apply(&event("b", 1, EventKind::PackOnline)).relay_on);
        let offline = EventKind::PackOffline {
            reason: "crc".into(),
        };
        assert!(c.apply(&event("a", 2, offline)).relay_on);
        assert!(!c.apply(&event("a", 3, EventKind::PackOnline)).relay_on);
    }

    #[test]
    fn blinking_is_half_on_half_off() {
        assert!(led_is_lit(LedMode::On, 700, 1_000));
        assert!(led_is_lit(LedMode::Blink, 0, 1_000));
        assert!(led_is_lit(LedMode::Blink, 499, 1_000));
        assert!(!led_is_lit(LedMode::Blink, 500, 1_000));
        assert!(led_is_lit(LedMode::Blink, 1_000, 1_000));
    }
}
