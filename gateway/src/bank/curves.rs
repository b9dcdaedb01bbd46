//! Derating curves: the fraction (0-1) of a pack's rated current allowed
//! at a reading. Each is a linear taper between a point where the full
//! current is allowed and one where none is; each is monotone in its
//! input, and a reading that is not a number allows nothing.

use super::rules::{ChemistryLimits, LimitRules};

/// 1 at or below `full`, 0 at or above `zero`, linear between (`full` <
/// `zero`): a limit approached from below.
pub fn taper_down(value: f64, full: f64, zero: f64) -> f64 {
    if value.is_nan() {
        return 0.0;
    }
    if value <= full {
        1.0
    } else if value >= zero {
        0.0
    } else {
        (zero - value) / (zero - full)
    }
}

/// 1 at or above `full`, 0 at or below `zero`, linear between (`zero` <
/// `full`): a limit approached from above.
pub fn taper_up(value: f64, zero: f64, full: f64) -> f64 {
    if value.is_nan() {
        return 0.0;
    }
    if value >= full {
        1.0
    } else if value <= zero {
        0.0
    } else {
        (value - zero) / (full - zero)
    }
}

/// What limited a pack's or the bank's current, for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Derating {
    /// Nothing: the rated current.
    None,
    /// The highest cell nearing its maximum (charge) or the lowest its
    /// minimum (discharge).
    CellVoltage,
    /// A temperature outside the full-current window.
    Temperature,
    /// The state of charge near full (charge) or empty (discharge).
    StateOfCharge,
}

/// The smallest of `factors`, with what it was.
fn smallest(factors: [(f64, Derating); 3]) -> (f64, Derating) {
    factors
        .into_iter()
        .fold((1.0, Derating::None), |(best, why), (factor, reason)| {
            if factor < best {
                (factor, reason)
            } else {
                (best, why)
            }
        })
}

/// The fraction of its charge rating a pack may take, and why: its
/// highest cell, its coldest and hottest sensors, and its SoC.
pub fn charge_factor(
    rules: &LimitRules,
    max_cell_v: f64,
    min_temperature_c: f64,
    max_temperature_c: f64,
    soc_pct: f64,
) -> (f64, Derating) {
    let c: &ChemistryLimits = &rules.chemistry;
    let cell = taper_down(max_cell_v, c.cell_charge_taper_v, c.cell_max_v);
    let temperature = taper_up(min_temperature_c, c.charge_min_c, c.charge_cold_full_c).min(
        taper_down(max_temperature_c, c.charge_hot_taper_c, c.charge_max_c),
    );
    let soc = if soc_pct.is_nan() {
        0.0
    } else {
        let floor = rules.charge_at_full_fraction;
        floor + (1.0 - floor) * taper_down(soc_pct, rules.charge_soc_taper_pct, 100.0)
    };
    smallest([
        (cell, Derating::CellVoltage),
        (temperature, Derating::Temperature),
        (soc, Derating::StateOfCharge),
    ])
}

/// The fraction of its discharge rating a pack may give, and why: its
/// lowest cell, its coldest and hottest sensors, and its SoC.
pub fn discharge_factor(
    rules: &LimitRules,
    min_cell_v: f64,
    min_temperature_c: f64,
    max_temperature_c: f64,
    soc_pct: f64,
) -> (f64, Derating) {
    let c = &rules.chemistry;
    let cell = taper_up(min_cell_v, c.cell_min_v, c.cell_discharge_taper_v);
    let temperature = taper_up(
        min_temperature_c,
        c.discharge_min_c,
        c.discharge_cold_full_c,
    )
    .min(taper_down(
        max_temperature_c,
        c.discharge_hot_taper_c,
        c.discharge_max_c,
    ));
    let soc = taper_up(
        soc_pct,
        rules.discharge_soc_stop_pct,
        rules.discharge_soc_taper_pct,
    );
    smallest([
        (cell, Derating::CellVoltage),
        (temperature, Derating::Temperature),
        (soc, Derating::StateOfCharge),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tapers_run_from_full_to_zero_between_their_points() {
        assert_eq!(taper_down(3.40, 3.45, 3.65), 1.0);
        assert!((taper_down(3.55, 3.45, 3.65) - 0.5).abs() < 1e-9);
        assert_eq!(taper_down(3.65, 3.45, 3.65), 0.0);
        assert_eq!(taper_down(f64::NAN, 3.45, 3.65), 0.0);
        assert_eq!(taper_up(-1.0, 0.0, 5.0), 0.0);
        assert!((taper_up(2.5, 0.0, 5.0) - 0.5).abs() < 1e-9);
        assert_eq!(taper_up(25.0, 0.0, 5.0), 1.0);
    }

    #[test]
    fn lfp_charge_stops_below_freezing_and_at_the_hot_limit() {
        let rules = LimitRules::default();
        assert_eq!(
            charge_factor(&rules, 3.3, -2.0, 10.0, 50.0),
            (0.0, Derating::Temperature)
        );
        assert_eq!(
            charge_factor(&rules, 3.3, 20.0, 55.0, 50.0),
            (0.0, Derating::Temperature)
        );
        assert_eq!(
            charge_factor(&rules, 3.3, 20.0, 25.0, 50.0),
            (1.0, Derating::None)
        );
        // Discharge still allowed on a cold morning.
        assert_eq!(
            discharge_factor(&rules, 3.3, -2.0, 10.0, 50.0),
            (1.0, Derating::None)
        );
    }

    #[test]
    fn a_full_bank_still_takes_a_small_current() {
        let rules = LimitRules::default();
        let (factor, why) = charge_factor(&rules, 3.40, 20.0, 25.0, 100.0);
        assert!((factor - 0.1).abs() < 1e-9);
        assert_eq!(why, Derating::StateOfCharge);
        // The highest cell at its limit stops it all the same.
        assert_eq!(charge_factor(&rules, 3.65, 20.0, 25.0, 100.0).0, 0.0);
    }
}
