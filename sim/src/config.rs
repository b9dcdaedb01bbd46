//! The configuration of one simulated pack, as written in the gateway's
//! TOML config, and its validation.

use packgate_protocol::{MAX_CELLS, MAX_TEMPERATURE_SENSORS};
use serde::{Deserialize, Serialize};

use crate::load::LoadProfile;
use crate::rng::splitmix64;

/// Largest current magnitude, amperes, accepted anywhere in the model (load
/// profiles and current limits): far above any real pack, low enough to
/// keep the arithmetic tame.
pub const MAX_CURRENT_A: f64 = 2000.0;

/// Why a [`SimPackConfig`] (or a [`LoadProfile`]) is not usable, naming the
/// offending field as it is spelled in the config file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimConfigError {
    /// A number outside its allowed range (or not finite).
    #[error("{field} = {value} is out of range; expected {expected}")]
    OutOfRange {
        /// Dotted path of the field, such as `load.steps[2].duration_s`.
        field: String,
        /// The rejected value, as text.
        value: String,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// A field that is malformed in some other way.
    #[error("{field}: {reason}")]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl SimConfigError {
    /// The dotted path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            SimConfigError::OutOfRange { field, .. } | SimConfigError::Invalid { field, .. } => {
                field
            }
        }
    }
}

/// Checks that `value` is finite and within `lo..=hi`, naming `field` if not.
pub(crate) fn check_range(
    field: impl Into<String>,
    value: f64,
    lo: f64,
    hi: f64,
    expected: &'static str,
) -> Result<(), SimConfigError> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(SimConfigError::OutOfRange {
            field: field.into(),
            value: value.to_string(),
            expected,
        })
    }
}

/// One simulated LFP pack: its size, starting state, environment, limits,
/// load and seed. Every field has a default, so `[sim]` with nothing in it
/// is a 16-cell 100 Ah pack at 60 % under a random ±50 A load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimPackConfig {
    /// Series cells, 1 to 32.
    pub cells: usize,
    /// Temperature sensors, 1 to 16.
    pub temperature_sensors: usize,
    /// Nominal capacity of the pack (and of each cell), ampere-hours.
    pub capacity_ah: f64,
    /// State of charge at start, percent (0 to 100).
    pub initial_soc_pct: f64,
    /// State of health, percent (above 0, at most 100). The usable capacity
    /// is `capacity_ah * soh_pct / 100`.
    pub soh_pct: f64,
    /// Ambient temperature the pack cools towards, degrees Celsius
    /// (-40 to 45).
    pub ambient_c: f64,
    /// Internal resistance of one cell, milliohms (above 0, at most 100);
    /// each cell gets a seeded spread of ±10 % around it.
    pub cell_resistance_mohm: f64,
    /// Thermal time constant of the pack towards ambient, seconds (1 to
    /// 1 000 000).
    pub thermal_time_constant_s: f64,
    /// Initial charge current limit, amperes (0 to [`MAX_CURRENT_A`]);
    /// writable later as the `charge_current_limit_a` setting.
    pub charge_current_limit_a: f64,
    /// Initial discharge current limit, amperes, as a magnitude (0 to
    /// [`MAX_CURRENT_A`]); writable later as `discharge_current_limit_a`.
    pub discharge_current_limit_a: f64,
    /// The current the load and charger ask of the pack over time.
    pub load: LoadProfile,
    /// Seed of every random choice (cell spread, sensor spread, random-walk
    /// load): the same config and the same steps give the same readings.
    pub seed: u64,
}

impl Default for SimPackConfig {
    fn default() -> Self {
        Self {
            cells: 16,
            temperature_sensors: 4,
            capacity_ah: 100.0,
            initial_soc_pct: 60.0,
            soh_pct: 100.0,
            ambient_c: 25.0,
            cell_resistance_mohm: 0.5,
            thermal_time_constant_s: 3600.0,
            charge_current_limit_a: 100.0,
            discharge_current_limit_a: 100.0,
            load: LoadProfile::default(),
            seed: 0,
        }
    }
}

impl SimPackConfig {
    /// The same pack with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same pack with a seed derived from this one's seed and `index`,
    /// so several packs built from one base config (pack 0, 1, 2, ...) each
    /// get their own, reproducible, cell spread and load.
    pub fn for_pack_index(&self, index: u64) -> Self {
        let mut state = self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let seed = splitmix64(&mut state);
        self.clone().with_seed(seed)
    }

    /// Checks every field against its range, naming the first bad one.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        if !(1..=MAX_CELLS).contains(&self.cells) {
            return Err(SimConfigError::OutOfRange {
                field: "cells".into(),
                value: self.cells.to_string(),
                expected: "1 to 32",
            });
        }
        if !(1..=MAX_TEMPERATURE_SENSORS).contains(&self.temperature_sensors) {
            return Err(SimConfigError::OutOfRange {
                field: "temperature_sensors".into(),
                value: self.temperature_sensors.to_string(),
                expected: "1 to 16",
            });
        }
        check_range(
            "capacity_ah",
            self.capacity_ah,
            0.1,
            10_000.0,
            "0.1 to 10000",
        )?;
        check_range(
            "initial_soc_pct",
            self.initial_soc_pct,
            0.0,
            100.0,
            "0 to 100",
        )?;
        if self.soh_pct <= 0.0 {
            return Err(SimConfigError::OutOfRange {
                field: "soh_pct".into(),
                value: self.soh_pct.to_string(),
                expected: "above 0, at most 100",
            });
        }
        check_range("soh_pct", self.soh_pct, 0.0, 100.0, "above 0, at most 100")?;
        check_range("ambient_c", self.ambient_c, -40.0, 45.0, "-40 to 45")?;
        if self.cell_resistance_mohm <= 0.0 {
            return Err(SimConfigError::OutOfRange {
                field: "cell_resistance_mohm".into(),
                value: self.cell_resistance_mohm.to_string(),
                expected: "above 0, at most 100",
            });
        }
        check_range(
            "cell_resistance_mohm",
            self.cell_resistance_mohm,
            0.0,
            100.0,
            "above 0, at most 100",
        )?;
        check_range(
            "thermal_time_constant_s",
            self.thermal_time_constant_s,
            1.0,
            1_000_000.0,
            "1 to 1000000",
        )?;
        check_range(
            "charge_current_limit_a",
            self.charge_current_limit_a,
            0.0,
            MAX_CURRENT_A,
            "0 to 2000",
        )?;
        check_range(
            "discharge_current_limit_a",
            self.discharge_current_limit_a,
            0.0,
            MAX_CURRENT_A,
            "0 to 2000",
        )?;
        self.load.validate("load")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadStep;

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let c = SimPackConfig::default();
        c.validate().unwrap();
        assert_eq!(c.cells, 16);
        assert_eq!(c.temperature_sensors, 4);
        assert_eq!(c.capacity_ah, 100.0);
        assert_eq!(c.initial_soc_pct, 60.0);
        assert_eq!(c.soh_pct, 100.0);
        assert_eq!(c.ambient_c, 25.0);
        assert_eq!(
            c.load,
            LoadProfile::RandomWalk {
                max_charge_a: 50.0,
                max_discharge_a: 50.0
            }
        );
    }

    #[test]
    fn empty_toml_is_the_default() {
        let c: SimPackConfig = toml::from_str("").unwrap();
        assert_eq!(c, SimPackConfig::default());
    }

    #[test]
    fn toml_with_every_load_kind() {
        let c: SimPackConfig = toml::from_str(
            r#"
            cells = 8
            capacity_ah = 50
            seed = 42
            load = { kind = "constant", current_a = -10 }
            "#,
        )
        .unwrap();
        assert_eq!(c.cells, 8);
        assert_eq!(c.capacity_ah, 50.0);
        assert_eq!(c.seed, 42);
        assert_eq!(c.load, LoadProfile::Constant { current_a: -10.0 });
        c.validate().unwrap();

        let c: SimPackConfig = toml::from_str(
            r#"
            [load]
            kind = "scripted"
            repeat = true
            steps = [
              { duration_s = 600, current_a = 20.0 },
              { duration_s = 300, current_a = -40.0 },
            ]
            "#,
        )
        .unwrap();
        assert_eq!(
            c.load,
            LoadProfile::Scripted {
                steps: vec![
                    LoadStep {
                        duration_s: 600.0,
                        current_a: 20.0
                    },
                    LoadStep {
                        duration_s: 300.0,
                        current_a: -40.0
                    },
                ],
                repeat: true,
            }
        );
        c.validate().unwrap();

        let c: SimPackConfig = toml::from_str(
            "load = { kind = \"random_walk\", max_charge_a = 30, max_discharge_a = 80 }",
        )
        .unwrap();
        assert_eq!(
            c.load,
            LoadProfile::RandomWalk {
                max_charge_a: 30.0,
                max_discharge_a: 80.0
            }
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let c = SimPackConfig::default().with_seed(9);
        let text = toml::to_string(&c).unwrap();
        let back: SimPackConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(toml::from_str::<SimPackConfig>("cell = 8").is_err());
        assert!(toml::from_str::<SimPackConfig>(
            "load = { kind = \"constant\", current_a = 1, extra = 2 }"
        )
        .is_err());
        assert!(toml::from_str::<SimPackConfig>("load = { kind = \"sine\" }").is_err());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let bad = |f: fn(&mut SimPackConfig)| {
            let mut c = SimPackConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field().to_owned()
        };
        assert_eq!(bad(|c| c.cells = 0), "cells");
        assert_eq!(bad(|c| c.cells = 33), "cells");
        assert_eq!(bad(|c| c.temperature_sensors = 17), "temperature_sensors");
        assert_eq!(bad(|c| c.capacity_ah = f64::NAN), "capacity_ah");
        assert_eq!(bad(|c| c.initial_soc_pct = 101.0), "initial_soc_pct");
        assert_eq!(bad(|c| c.soh_pct = 0.0), "soh_pct");
        assert_eq!(bad(|c| c.ambient_c = 80.0), "ambient_c");
        assert_eq!(
            bad(|c| c.cell_resistance_mohm = 0.0),
            "cell_resistance_mohm"
        );
        assert_eq!(
            bad(|c| c.thermal_time_constant_s = 0.0),
            "thermal_time_constant_s"
        );
        assert_eq!(
            bad(|c| c.charge_current_limit_a = -1.0),
            "charge_current_limit_a"
        );
        assert_eq!(
            bad(|c| c.discharge_current_limit_a = f64::INFINITY),
            "discharge_current_limit_a"
        );
        assert_eq!(
            bad(|c| c.load = LoadProfile::Scripted {
                steps: vec![],
                repeat: false
            }),
            "load.steps"
        );
        assert_eq!(
            bad(|c| c.load = LoadProfile::Scripted {
                steps: vec![
                    LoadStep {
                        duration_s: 1.0,
                        current_a: 1.0
                    },
                    LoadStep {
                        duration_s: 0.0,
                        current_a: 1.0
                    }
                ],
                repeat: false
            }),
            "load.steps[1].duration_s"
        );
        let err = SimPackConfig {
            cells: 40,
            ..SimPackConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cells = 40 is out of range; expected 1 to 32"
        );
    }

    #[test]
    fn per_pack_seeds_differ_and_are_stable() {
        let base = SimPackConfig::default();
        let a = base.for_pack_index(0);
        let b = base.for_pack_index(1);
        assert_ne!(a.seed, b.seed);
        assert_eq!(a, base.for_pack_index(0));
        assert_eq!(
            SimPackConfig {
                seed: a.seed,
                ..base.clone()
            },
            a
        );
    }
}
