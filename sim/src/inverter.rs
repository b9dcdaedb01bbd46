//! A simulated inverter that obeys its battery's limits: it asks the
//! battery (packs in parallel) for a current over time, following a load
//! profile, and takes what the battery's BMS allows: at most the last
//! charge current limit (CCL) it heard while charging, at most the last
//! discharge current limit (DCL) while discharging, nothing in a
//! direction whose enable is off, and nothing at all once the BMS has
//! been silent for `silence_after` (what a real inverter does when it
//! loses its BMS). The current it takes is split across the packs whose
//! switch of that direction is closed, evenly: packs in parallel share a
//! current, and a pack whose BMS opened its switch carries none of it.
//!
//! Each pack's share becomes its load ([`LoadProfile::Constant`]), so the
//! packs' currents, as polled, follow the inverter.

use std::time::{Duration, Instant};

use crate::config::MAX_CURRENT_A;
use crate::load::{LoadContext, LoadProfile, LoadState};
use crate::pack::SimPack;
use crate::rng::Rng;

/// What the inverter last heard from the battery's BMS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeardLimits {
    /// Charge current limit, A.
    pub charge_current_limit_a: f64,
    /// Discharge current limit, A (a magnitude).
    pub discharge_current_limit_a: f64,
    /// Whether charging is allowed.
    pub charge_enable: bool,
    /// Whether discharging is allowed.
    pub discharge_enable: bool,
}

/// One step of the inverter: what it asked, what it took, and each pack's
/// part (in the order the packs were given).
#[derive(Debug, Clone, PartialEq)]
pub struct InverterStep {
    /// The current the profile asks for, A (positive charges).
    pub requested_a: f64,
    /// The current taken after the limits, A.
    pub allowed_a: f64,
    /// Each pack's part of it, A.
    pub per_pack_a: Vec<f64>,
}

/// The inverter: its profile, its packs and what it heard.
#[derive(Debug)]
pub struct ObeyingInverter {
    load: LoadState,
    packs: Vec<SimPack>,
    heard: Option<(HeardLimits, Instant)>,
    silence_after: Duration,
}

/// A finite magnitude of at most [`MAX_CURRENT_A`] times the packs.
fn bounded(value: f64, most: f64) -> f64 {
    if value.is_finite() {
        value.clamp(0.0, most)
    } else {
        0.0
    }
}

impl ObeyingInverter {
    /// An inverter asking `profile` of `packs`, taking nothing until it
    /// hears limits, and nothing once none came for `silence_after`.
    pub fn new(profile: LoadProfile, packs: Vec<SimPack>, silence_after: Duration) -> Self {
        Self {
            load: LoadState::new(profile, Rng::new(0x1a7e, 2)),
            packs,
            heard: None,
            silence_after,
        }
    }

    /// Takes limits heard at `at`.
    pub fn hear(&mut self, limits: HeardLimits, at: Instant) {
        self.heard = Some((limits, at));
    }

    /// The limits in force at `now`: the last heard, unless too old.
    pub fn limits_at(&self, now: Instant) -> Option<HeardLimits> {
        self.heard
            .filter(|(_, at)| now.saturating_duration_since(*at) <= self.silence_after)
            .map(|(limits, _)| limits)
    }

    /// Moves the profile on by `dt_s` seconds at `now` and sets each
    /// pack's load to its part of the current allowed.
    pub fn step(&mut self, dt_s: f64, now: Instant) -> InverterStep {
        let readings: Vec<_> = self.packs.iter().map(SimPack::reading).collect();
        let n = readings.len().max(1) as f64;
        let ctx = LoadContext {
            soc: readings.iter().map(|r| f64::from(r.soc_pct)).sum::<f64>() / n / 100.0,
            charge_enabled: readings.iter().any(|r| r.charge_enabled),
            discharge_enabled: readings.iter().any(|r| r.discharge_enabled),
        };
        let requested_a = self.load.requested_a(dt_s.max(0.0), ctx);
        let most = MAX_CURRENT_A * n;
        let allowed_a = match self.limits_at(now) {
            None => 0.0,
            Some(l) if requested_a > 0.0 && l.charge_enable => {
                requested_a.min(bounded(l.charge_current_limit_a, most))
            }
            Some(l) if requested_a < 0.0 && l.discharge_enable => {
                requested_a.max(-bounded(l.discharge_current_limit_a, most))
            }
            Some(_) => 0.0,
        };
        let conducting: Vec<bool> = readings
            .iter()
            .map(|r| {
                if allowed_a > 0.0 {
                    r.charge_enabled
                } else {
                    r.discharge_enabled
                }
            })
            .collect();
        let sharing = conducting.iter().filter(|c| **c).count();
        let part = if sharing == 0 {
            0.0
        } else {
            allowed_a / sharing as f64
        };
        let per_pack_a: Vec<f64> = conducting
            .iter()
            .map(|c| if *c { part } else { 0.0 })
            .collect();
        for (pack, current_a) in self.packs.iter().zip(&per_pack_a) {
            pack.set_load(LoadProfile::Constant {
                current_a: *current_a,
            });
        }
        InverterStep {
            requested_a,
            allowed_a,
            per_pack_a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimPackConfig;
    use crate::faults::Faults;
    use crate::load::LoadStep;

    fn packs(n: u64) -> Vec<SimPack> {
        (1..=n)
            .map(|seed| SimPack::new(&SimPackConfig::default().with_seed(seed)))
            .collect()
    }

    fn limits(ccl: f64, dcl: f64) -> HeardLimits {
        HeardLimits {
            charge_current_limit_a: ccl,
            discharge_current_limit_a: dcl,
            charge_enable: ccl > 0.0,
            discharge_enable: dcl > 0.0,
        }
    }

    #[test]
    fn it_takes_at_most_the_limits_split_across_the_packs() {
        let packs = packs(3);
        let profile = LoadProfile::Scripted {
            steps: vec![
                LoadStep {
                    duration_s: 10.0,
                    current_a: 250.0,
                },
                LoadStep {
                    duration_s: 10.0,
                    current_a: -250.0,
                },
            ],
            repeat: true,
        };
        let mut inverter = ObeyingInverter::new(profile, packs.clone(), Duration::from_secs(3));
        let t0 = Instant::now();
        // Nothing heard yet: nothing taken.
        let step = inverter.step(1.0, t0);
        assert_eq!((step.requested_a, step.allowed_a), (250.0, 0.0));
        inverter.hear(limits(150.0, 90.0), t0);
        let step = inverter.step(1.0, t0);
        assert_eq!(step.allowed_a, 150.0);
        assert_eq!(step.per_pack_a, [50.0, 50.0, 50.0]);
        let current = packs[0].advance(1.0).current_a;
        assert!((current - 50.0).abs() < 1e-3, "{current}");
        for _ in 0..8 {
            inverter.step(1.0, t0);
        }
        let step = inverter.step(1.0, t0);
        assert_eq!((step.requested_a, step.allowed_a), (-250.0, -90.0));
        // Charging not enabled: nothing in that direction.
        inverter.hear(
            HeardLimits {
                charge_enable: false,
                ..limits(150.0, 90.0)
            },
            t0,
        );
        for _ in 0..10 {
            inverter.step(1.0, t0);
        }
        let step = inverter.step(1.0, t0);
        assert_eq!((step.requested_a, step.allowed_a), (250.0, 0.0));
        // Silent BMS: nothing at all.
        inverter.hear(limits(150.0, 90.0), t0);
        let step = inverter.step(1.0, t0 + Duration::from_secs(4));
        assert_eq!(step.allowed_a, 0.0);
        assert!(inverter.limits_at(t0 + Duration::from_secs(4)).is_none());
    }

    #[test]
    fn a_pack_with_its_switch_open_carries_nothing_and_the_others_share() {
        let packs = packs(3);
        packs[2].set_faults(Faults {
            over_temperature: true,
            ..Faults::default()
        });
        packs[2].advance(600.0);
        assert!(!packs[2].reading().charge_enabled);
        let mut inverter = ObeyingInverter::new(
            LoadProfile::Constant { current_a: 300.0 },
            packs.clone(),
            Duration::from_secs(3),
        );
        let now = Instant::now();
        inverter.hear(limits(200.0, 200.0), now);
        let step = inverter.step(1.0, now);
        assert_eq!(step.per_pack_a, [100.0, 100.0, 0.0]);
        // Not finite limits are nothing.
        inverter.hear(limits(f64::NAN, 200.0), now);
        assert_eq!(inverter.step(1.0, now).allowed_a, 0.0);
    }
}
