//! Load profiles: the current a load (negative) or a charger (positive)
//! asks of the pack over time, before the BMS limits and switches apply.

use serde::{Deserialize, Serialize};

use crate::config::{check_range, SimConfigError, MAX_CURRENT_A};
use crate::rng::Rng;

/// One segment of a scripted load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadStep {
    /// How long the segment lasts, seconds (above 0).
    pub duration_s: f64,
    /// Current asked for during it, amperes: positive charges, negative
    /// discharges.
    pub current_a: f64,
}

/// What current the pack is asked for over time.
///
/// In TOML: `load = { kind = "constant", current_a = -20 }`,
/// `{ kind = "scripted", steps = [{ duration_s = 60, current_a = 10 }], repeat = true }`
/// or `{ kind = "random_walk", max_charge_a = 50, max_discharge_a = 50 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoadProfile {
    /// The same current forever.
    Constant {
        /// Amperes, positive charges.
        current_a: f64,
    },
    /// A fixed sequence of segments; after the last one the load rests at
    /// 0 A unless `repeat` starts the sequence over.
    Scripted {
        /// The segments, in order (at least one).
        steps: Vec<LoadStep>,
        /// Whether to loop the sequence forever.
        #[serde(default)]
        repeat: bool,
    },
    /// A smooth seeded random walk between charging and discharging, which
    /// turns around near empty and full (or when the BMS opens a switch) so
    /// a long run keeps cycling the pack.
    RandomWalk {
        /// Largest charge current, amperes (0 to 2000).
        max_charge_a: f64,
        /// Largest discharge current, as a magnitude, amperes (0 to 2000).
        max_discharge_a: f64,
    },
}

impl Default for LoadProfile {
    fn default() -> Self {
        LoadProfile::RandomWalk {
            max_charge_a: 50.0,
            max_discharge_a: 50.0,
        }
    }
}

impl LoadProfile {
    /// Checks the profile; `field` is its path in the config (`load`), used
    /// to name the offending field.
    pub fn validate(&self, field: &str) -> Result<(), SimConfigError> {
        const CURRENT: &str = "-2000 to 2000";
        match self {
            LoadProfile::Constant { current_a } => check_range(
                format!("{field}.current_a"),
                *current_a,
                -MAX_CURRENT_A,
                MAX_CURRENT_A,
                CURRENT,
            ),
            LoadProfile::Scripted { steps, .. } => {
                if steps.is_empty() {
                    return Err(SimConfigError::Invalid {
                        field: format!("{field}.steps"),
                        reason: "a scripted load needs at least one step",
                    });
                }
                for (i, step) in steps.iter().enumerate() {
                    if step.duration_s <= 0.0 {
                        return Err(SimConfigError::OutOfRange {
                            field: format!("{field}.steps[{i}].duration_s"),
                            value: step.duration_s.to_string(),
                            expected: "above 0, at most 1e9",
                        });
                    }
                    check_range(
                        format!("{field}.steps[{i}].duration_s"),
                        step.duration_s,
                        0.0,
                        1e9,
                        "above 0, at most 1e9",
                    )?;
                    check_range(
                        format!("{field}.steps[{i}].current_a"),
                        step.current_a,
                        -MAX_CURRENT_A,
                        MAX_CURRENT_A,
                        CURRENT,
                    )?;
                }
                Ok(())
            }
            LoadProfile::RandomWalk {
                max_charge_a,
                max_discharge_a,
            } => {
                check_range(
                    format!("{field}.max_charge_a"),
                    *max_charge_a,
                    0.0,
                    MAX_CURRENT_A,
                    "0 to 2000",
                )?;
                check_range(
                    format!("{field}.max_discharge_a"),
                    *max_discharge_a,
                    0.0,
                    MAX_CURRENT_A,
                    "0 to 2000",
                )
            }
        }
    }
}

/// What the load can see of the pack (a charger or an energy manager reads
/// the BMS too).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadContext {
    /// The BMS's state of charge, a fraction.
    pub(crate) soc: f64,
    /// Whether the charge switch is closed.
    pub(crate) charge_enabled: bool,
    /// Whether the discharge switch is closed.
    pub(crate) discharge_enabled: bool,
}

/// Mean time a random-walk target is held, seconds.
const HOLD_MEAN_S: f64 = 600.0;
/// Time constant of the random walk's approach to its target, seconds.
const SMOOTH_TAU_S: f64 = 30.0;
/// Probability a new random-walk target keeps the direction of the last.
const KEEP_DIRECTION_P: f64 = 0.7;
/// Above this state of charge the walk stops charging.
const TURN_DOWN_SOC: f64 = 0.92;
/// Below this state of charge the walk stops discharging.
const TURN_UP_SOC: f64 = 0.08;

/// A profile being played: where in the script it is, the random walk's
/// state.
#[derive(Debug, Clone)]
pub(crate) struct LoadState {
    profile: LoadProfile,
    rng: Rng,
    /// Scripted: index of the current step and time spent in it.
    step_index: usize,
    step_elapsed_s: f64,
    /// Random walk: present current and where it is heading.
    walk_current_a: f64,
    walk_target_a: f64,
    started: bool,
}

impl LoadState {
    /// Starts playing `profile`, drawing random choices from `rng`.
    pub(crate) fn new(profile: LoadProfile, rng: Rng) -> Self {
        Self {
            profile,
            rng,
            step_index: 0,
            step_elapsed_s: 0.0,
            walk_current_a: 0.0,
            walk_target_a: 0.0,
            started: false,
        }
    }

    /// Switches to another profile from its start, keeping the random
    /// sequence (so a run stays reproducible).
    pub(crate) fn set_profile(&mut self, profile: LoadProfile) {
        let rng = self.rng.clone();
        *self = Self::new(profile, rng);
    }

    /// The current asked for over the next `dt_s` seconds (the average
    /// over the interval for a script), amperes; always finite.
    pub(crate) fn requested_a(&mut self, dt_s: f64, ctx: LoadContext) -> f64 {
        let current = match &self.profile {
            LoadProfile::Constant { current_a } => *current_a,
            LoadProfile::Scripted { .. } => self.scripted(dt_s),
            LoadProfile::RandomWalk {
                max_charge_a,
                max_discharge_a,
            } => {
                let (max_c, max_d) = (*max_charge_a, *max_discharge_a);
                self.random_walk(dt_s, ctx, max_c, max_d)
            }
        };
        if current.is_finite() {
            current.clamp(-MAX_CURRENT_A, MAX_CURRENT_A)
        } else {
            0.0
        }
    }

    fn scripted(&mut self, dt_s: f64) -> f64 {
        let LoadProfile::Scripted { steps, repeat } = &self.profile else {
            return 0.0;
        };
        let valid = |s: &LoadStep| s.duration_s.is_finite() && s.duration_s > 0.0;
        if steps.is_empty() || !steps.iter().all(valid) || dt_s <= 0.0 {
            return 0.0;
        }
        let mut remaining = dt_s;
        let mut charge = 0.0;
        // At most two passes over the script: whole periods are skipped.
        let mut guard = 2 * steps.len() + 2;
        while remaining > 0.0 && guard > 0 {
            guard -= 1;
            let Some(step) = steps.get(self.step_index) else {
                // Script over, not repeating: rest.
                break;
            };
            if self.step_index == 0 && self.step_elapsed_s == 0.0 && *repeat {
                let period: f64 = steps.iter().map(|s| s.duration_s).sum();
                let periods = (remaining / period).floor();
                if periods >= 1.0 {
                    let per_period: f64 = steps.iter().map(|s| s.duration_s * s.current_a).sum();
                    charge += periods * per_period;
                    remaining -= periods * period;
                    if remaining <= 0.0 {
                        break;
                    }
                }
            }
            let left = step.duration_s - self.step_elapsed_s;
            if remaining < left {
                charge += remaining * step.current_a;
                self.step_elapsed_s += remaining;
                remaining = 0.0;
            } else {
                charge += left * step.current_a;
                remaining -= left;
                self.step_elapsed_s = 0.0;
                self.step_index += 1;
                if self.step_index >= steps.len() && *repeat {
                    self.step_index = 0;
                }
            }
        }
        charge / dt_s
    }

    fn random_walk(&mut self, dt_s: f64, ctx: LoadContext, max_c: f64, max_d: f64) -> f64 {
        let max_c = if max_c.is_finite() {
            max_c.max(0.0)
        } else {
            0.0
        };
        let max_d = if max_d.is_finite() {
            max_d.max(0.0)
        } else {
            0.0
        };
        let can_charge = ctx.charge_enabled && ctx.soc < TURN_DOWN_SOC && max_c > 0.0;
        let can_discharge = ctx.discharge_enabled && ctx.soc > TURN_UP_SOC && max_d > 0.0;
        let target = self.walk_target_a;
        let blocked = (target > 0.0 && !can_charge) || (target < 0.0 && !can_discharge);
        let expired = self.rng.chance(1.0 - (-dt_s / HOLD_MEAN_S).exp());
        if !self.started || blocked || expired {
            self.started = true;
            let was_charging = target > 0.0;
            let keep = self.rng.chance(KEEP_DIRECTION_P);
            let magnitude = self.rng.uniform(0.1, 1.0);
            let charge = match (can_charge, can_discharge) {
                (true, true) => was_charging == keep,
                (true, false) => true,
                (false, true) => false,
                (false, false) => {
                    self.walk_target_a = 0.0;
                    return self.approach(dt_s);
                }
            };
            self.walk_target_a = if charge {
                magnitude * max_c
            } else {
                -magnitude * max_d
            };
        }
        self.approach(dt_s)
    }

    fn approach(&mut self, dt_s: f64) -> f64 {
        let k = 1.0 - (-dt_s / SMOOTH_TAU_S).exp();
        self.walk_current_a += (self.walk_target_a - self.walk_current_a) * k;
        self.walk_current_a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FREE: LoadContext = LoadContext {
        soc: 0.5,
        charge_enabled: true,
        discharge_enabled: true,
    };

    fn script(repeat: bool) -> LoadState {
        LoadState::new(
            LoadProfile::Scripted {
                steps: vec![
                    LoadStep {
                        duration_s: 10.0,
                        current_a: 5.0,
                    },
                    LoadStep {
                        duration_s: 20.0,
                        current_a: -10.0,
                    },
                ],
                repeat,
            },
            Rng::new(1, 1),
        )
    }

    #[test]
    fn scripted_plays_steps_then_rests_or_repeats() {
        let mut s = script(false);
        assert_eq!(s.requested_a(5.0, FREE), 5.0);
        // Straddles the boundary: 5 s at 5 A and 5 s at -10 A.
        assert_eq!(s.requested_a(10.0, FREE), -2.5);
        assert_eq!(s.requested_a(15.0, FREE), -10.0);
        assert_eq!(s.requested_a(1.0, FREE), 0.0);

        let mut r = script(true);
        assert_eq!(r.requested_a(30.0, FREE), (50.0 - 200.0) / 30.0);
        assert_eq!(r.requested_a(1.0, FREE), 5.0);
        // Many periods at once: averages out and keeps the phase.
        let avg = r.requested_a(3000.0, FREE);
        assert!((avg - (-5.0)).abs() < 1e-9, "{avg}");
        assert_eq!(r.requested_a(1.0, FREE), 5.0);
    }

    #[test]
    fn random_walk_is_smooth_bounded_and_turns_around() {
        let mut w = LoadState::new(LoadProfile::default(), Rng::new(3, 1));
        let mut last = 0.0;
        for _ in 0..20_000 {
            let i = w.requested_a(1.0, FREE);
            assert!((-50.0..=50.0).contains(&i));
            // At most the whole span times one second's share of the 30 s lag.
            let max_jump = 100.0 * (1.0 - (-1.0f64 / 30.0).exp()) + 1e-9;
            assert!((i - last).abs() <= max_jump, "jump {last} -> {i}");
            last = i;
        }
        let full = LoadContext { soc: 0.99, ..FREE };
        for _ in 0..300 {
            w.requested_a(1.0, full);
        }
        assert!(w.requested_a(1.0, full) < 0.0);
        let empty = LoadContext { soc: 0.01, ..FREE };
        for _ in 0..300 {
            w.requested_a(1.0, empty);
        }
        assert!(w.requested_a(1.0, empty) > 0.0);
    }

    #[test]
    fn validate_checks_currents() {
        assert!(LoadProfile::Constant { current_a: 3000.0 }
            .validate("load")
            .is_err());
        let err = LoadProfile::RandomWalk {
            max_charge_a: -1.0,
            max_discharge_a: 1.0,
        }
        .validate("load")
        .unwrap_err();
        assert_eq!(err.field(), "load.max_charge_a");
    }
}
