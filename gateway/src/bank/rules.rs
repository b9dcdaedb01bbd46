//! The rules a bank's charge limits follow: the chemistry's cell and
//! temperature windows, the site's inverter-facing limits, and the timing
//! of absorption, float and ramps. LFP defaults.

use serde::{Deserialize, Serialize};

/// Cell voltage and temperature windows of one chemistry, with where the
/// derating tapers begin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChemistryLimits {
    /// Highest cell voltage: charge current is zero at and above it, V.
    pub cell_max_v: f64,
    /// Where charge current starts to taper as the highest cell rises, V.
    pub cell_charge_taper_v: f64,
    /// Lowest cell voltage: discharge current is zero at and below it, V.
    pub cell_min_v: f64,
    /// Where discharge current starts to taper as the lowest cell falls, V.
    pub cell_discharge_taper_v: f64,
    /// No charge at or below this temperature (LFP plates lithium when
    /// charged below freezing), °C.
    pub charge_min_c: f64,
    /// Full charge current from this temperature up, °C.
    pub charge_cold_full_c: f64,
    /// Charge current starts to taper above this temperature, °C.
    pub charge_hot_taper_c: f64,
    /// No charge at or above this temperature (the protection limit), °C.
    pub charge_max_c: f64,
    /// No discharge at or below this temperature, °C.
    pub discharge_min_c: f64,
    /// Full discharge current from this temperature up, °C.
    pub discharge_cold_full_c: f64,
    /// Discharge current starts to taper above this temperature, °C.
    pub discharge_hot_taper_c: f64,
    /// No discharge at or above this temperature, °C.
    pub discharge_max_c: f64,
}

impl ChemistryLimits {
    /// Lithium iron phosphate (LiFePO4): 2.5-3.65 V cells, charge between
    /// 0 and 55 °C, discharge between -20 and 60 °C; tapers start 200 mV /
    /// 5-10 °C inside the limits.
    pub const LFP: ChemistryLimits = ChemistryLimits {
        cell_max_v: 3.65,
        cell_charge_taper_v: 3.45,
        cell_min_v: 2.8,
        cell_discharge_taper_v: 3.0,
        charge_min_c: 0.0,
        charge_cold_full_c: 5.0,
        charge_hot_taper_c: 45.0,
        charge_max_c: 55.0,
        discharge_min_c: -20.0,
        discharge_cold_full_c: -10.0,
        discharge_hot_taper_c: 50.0,
        discharge_max_c: 60.0,
    };

    /// Why these windows are not usable: each taper must lie inside its
    /// limit, every value finite.
    pub fn problem(&self) -> Option<String> {
        let ordered = [
            (
                "cell_min_v",
                self.cell_min_v,
                "cell_discharge_taper_v",
                self.cell_discharge_taper_v,
            ),
            (
                "cell_discharge_taper_v",
                self.cell_discharge_taper_v,
                "cell_charge_taper_v",
                self.cell_charge_taper_v,
            ),
            (
                "cell_charge_taper_v",
                self.cell_charge_taper_v,
                "cell_max_v",
                self.cell_max_v,
            ),
            (
                "charge_min_c",
                self.charge_min_c,
                "charge_cold_full_c",
                self.charge_cold_full_c,
            ),
            (
                "charge_cold_full_c",
                self.charge_cold_full_c,
                "charge_hot_taper_c",
                self.charge_hot_taper_c,
            ),
            (
                "charge_hot_taper_c",
                self.charge_hot_taper_c,
                "charge_max_c",
                self.charge_max_c,
            ),
            (
                "discharge_min_c",
                self.discharge_min_c,
                "discharge_cold_full_c",
                self.discharge_cold_full_c,
            ),
            (
                "discharge_cold_full_c",
                self.discharge_cold_full_c,
                "discharge_hot_taper_c",
                self.discharge_hot_taper_c,
            ),
            (
                "discharge_hot_taper_c",
                self.discharge_hot_taper_c,
                "discharge_max_c",
                self.discharge_max_c,
            ),
        ];
        ordered
            .into_iter()
            .find_map(|(low_name, low, high_name, high)| {
                let fine = low.is_finite() && high.is_finite() && low < high;
                (!fine).then(|| format!("{low_name} ({low}) must be below {high_name} ({high})"))
            })
    }
}

impl Default for ChemistryLimits {
    fn default() -> Self {
        Self::LFP
    }
}

/// Everything the limits of one bank follow besides the packs' own
/// ratings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitRules {
    /// The chemistry's windows.
    pub chemistry: ChemistryLimits,
    /// Highest charge current the site allows into the bank, A.
    pub site_max_charge_a: f64,
    /// Highest discharge current the site allows out of the bank, A.
    pub site_max_discharge_a: f64,
    /// Charge voltage while absorbing (bulk and absorption), V.
    pub absorption_voltage_v: f64,
    /// Charge voltage once the bank has been full for `absorption_hold_s`,
    /// V; at most `absorption_voltage_v`.
    pub float_voltage_v: f64,
    /// Lowest bank voltage the inverter may discharge to (sent to it as
    /// the discharge voltage limit), V.
    pub discharge_voltage_v: f64,
    /// Packs that must be counted (fresh, no alarm) for any current to
    /// flow; fewer and both limits are zero.
    pub min_online_packs: usize,
    /// A pack whose latest fresh sample is older than this is taken out,
    /// seconds.
    pub stale_after_s: f64,
    /// How fast a limit may rise, A per second; decreases apply at once.
    pub ramp_up_a_per_s: f64,
    /// The bank counts as full at or above this SoC (every counted pack),
    /// %.
    pub full_soc_pct: f64,
    /// ... and with its cells within this spread (highest minus lowest
    /// across the bank), V.
    pub balanced_within_v: f64,
    /// How long the bank stays full and balanced before the charge voltage
    /// drops to float, seconds.
    pub absorption_hold_s: f64,
    /// How much net discharge after reaching float brings absorption back,
    /// Ah.
    pub rebulk_discharge_ah: f64,
    /// Charge current tapers from full at this bank SoC...
    pub charge_soc_taper_pct: f64,
    /// ...down to this fraction of it at 100 % (a small current still
    /// tops up and balances the cells), 0-1.
    pub charge_at_full_fraction: f64,
    /// Discharge current tapers from full at this SoC...
    pub discharge_soc_taper_pct: f64,
    /// ...to zero at this SoC, %.
    pub discharge_soc_stop_pct: f64,
}

impl Default for LimitRules {
    fn default() -> Self {
        Self {
            chemistry: ChemistryLimits::LFP,
            site_max_charge_a: 100.0,
            site_max_discharge_a: 100.0,
            // 16 LFP cells: 3.45 V and 3.375 V a cell.
            absorption_voltage_v: 55.2,
            float_voltage_v: 54.0,
            discharge_voltage_v: 48.0,
            min_online_packs: 1,
            stale_after_s: 10.0,
            ramp_up_a_per_s: 5.0,
            full_soc_pct: 99.0,
            balanced_within_v: 0.03,
            absorption_hold_s: 1800.0,
            rebulk_discharge_ah: 20.0,
            charge_soc_taper_pct: 95.0,
            charge_at_full_fraction: 0.1,
            discharge_soc_taper_pct: 10.0,
            discharge_soc_stop_pct: 5.0,
        }
    }
}

impl LimitRules {
    /// Why these rules are not usable; none when they are.
    pub fn problem(&self) -> Option<String> {
        if let Some(problem) = self.chemistry.problem() {
            return Some(problem);
        }
        let non_negative = [
            ("site_max_charge_a", self.site_max_charge_a),
            ("site_max_discharge_a", self.site_max_discharge_a),
            ("absorption_voltage_v", self.absorption_voltage_v),
            ("float_voltage_v", self.float_voltage_v),
            ("discharge_voltage_v", self.discharge_voltage_v),
            ("stale_after_s", self.stale_after_s),
            ("ramp_up_a_per_s", self.ramp_up_a_per_s),
            ("balanced_within_v", self.balanced_within_v),
            ("absorption_hold_s", self.absorption_hold_s),
            ("rebulk_discharge_ah", self.rebulk_discharge_ah),
        ];
        if let Some((name, value)) = non_negative
            .into_iter()
            .find(|(_, v)| !(v.is_finite() && *v >= 0.0))
        {
            return Some(format!(
                "{name} must be a number of zero or more, not {value}"
            ));
        }
        if self.float_voltage_v > self.absorption_voltage_v {
            return Some(format!(
                "float_voltage_v ({}) must not be above absorption_voltage_v ({})",
                self.float_voltage_v, self.absorption_voltage_v
            ));
        }
        if !(0.0..=1.0).contains(&self.charge_at_full_fraction) {
            return Some("charge_at_full_fraction must be between 0 and 1".to_owned());
        }
        let soc_ordered = self.discharge_soc_stop_pct < self.discharge_soc_taper_pct
            && self.charge_soc_taper_pct < 100.0
            && (0.0..=100.0).contains(&self.discharge_soc_stop_pct)
            && (0.0..=100.0).contains(&self.full_soc_pct)
            && (0.0..100.0).contains(&self.charge_soc_taper_pct);
        if !soc_ordered {
            return Some(
                "SoC thresholds must lie in 0-100 % with discharge_soc_stop_pct below \
                 discharge_soc_taper_pct and charge_soc_taper_pct below 100"
                    .to_owned(),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_usable_and_a_crossed_taper_is_not() {
        assert_eq!(LimitRules::default().problem(), None);
        let mut rules = LimitRules::default();
        rules.chemistry.cell_charge_taper_v = 3.7;
        assert_eq!(
            rules.problem().as_deref(),
            Some("cell_charge_taper_v (3.7) must be below cell_max_v (3.65)")
        );
        let rules = LimitRules {
            float_voltage_v: 56.0,
            ..LimitRules::default()
        };
        assert!(rules.problem().unwrap().contains("float_voltage_v"));
        let rules = LimitRules {
            ramp_up_a_per_s: f64::NAN,
            ..LimitRules::default()
        };
        assert!(rules.problem().unwrap().contains("ramp_up_a_per_s"));
    }
}
