//! The open-circuit voltage of one LFP (LiFePO4) cell as a function of its
//! state of charge: steep at both ends, a long flat plateau in between,
//! which is what makes LFP packs diverge only near empty and full.

/// `(state of charge as a fraction, open-circuit volts)`, strictly
/// increasing in both columns.
const TABLE: &[(f64, f64)] = &[
    (0.00, 2.50),
    (0.01, 2.80),
    (0.02, 2.95),
    (0.05, 3.10),
    (0.10, 3.20),
    (0.20, 3.25),
    (0.30, 3.27),
    (0.40, 3.285),
    (0.50, 3.29),
    (0.60, 3.30),
    (0.70, 3.31),
    (0.80, 3.325),
    (0.90, 3.34),
    (0.95, 3.35),
    (0.97, 3.38),
    (0.99, 3.45),
    (1.00, 3.60),
];

/// Slope, volts per unit of state of charge, used past either end of the
/// table: an over-charged or over-discharged cell's voltage runs away fast,
/// which is what trips the BMS's cell protection.
const RUNAWAY_V_PER_SOC: f64 = 10.0;

/// Lowest voltage the curve returns, however deep the over-discharge.
const FLOOR_V: f64 = 1.0;

/// Open-circuit voltage, volts, of one LFP cell at `soc` (a fraction, 1.0 is
/// full). Piecewise linear over the table; beyond 0 and 1 it extrapolates
/// steeply (over-discharged / over-charged cell) and never drops below
/// 1 V. Monotonic non-decreasing everywhere; NaN gives NaN.
pub fn lfp_ocv_v(soc: f64) -> f64 {
    let (first_soc, first_v) = TABLE[0];
    let (last_soc, last_v) = TABLE[TABLE.len() - 1];
    if soc <= first_soc {
        return (first_v - (first_soc - soc) * RUNAWAY_V_PER_SOC).max(FLOOR_V);
    }
    if soc >= last_soc {
        return last_v + (soc - last_soc) * RUNAWAY_V_PER_SOC;
    }
    for pair in TABLE.windows(2) {
        let (s0, v0) = pair[0];
        let (s1, v1) = pair[1];
        if soc <= s1 {
            return v0 + (v1 - v0) * (soc - s0) / (s1 - s0);
        }
    }
    // NaN falls through every comparison above.
    soc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table_is_strictly_increasing() {
        for pair in TABLE.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{pair:?}");
            assert!(pair[0].1 < pair[1].1, "{pair:?}");
        }
    }

    #[test]
    fn shape_is_lfp() {
        assert!((lfp_ocv_v(0.0) - 2.5).abs() < 1e-9);
        assert!((lfp_ocv_v(0.10) - 3.2).abs() < 1e-9);
        for soc in [0.2, 0.4, 0.5, 0.7, 0.9] {
            let v = lfp_ocv_v(soc);
            assert!((3.25..=3.35).contains(&v), "{soc} -> {v}");
        }
        let full = lfp_ocv_v(1.0);
        assert!((3.45..=3.6).contains(&full), "{full}");
        assert!(lfp_ocv_v(1.01) > 3.65);
        assert!(lfp_ocv_v(-0.01) < 2.5);
        assert_eq!(lfp_ocv_v(-100.0), FLOOR_V);
        assert!(lfp_ocv_v(f64::NAN).is_nan());
    }

    proptest! {
        #[test]
        fn monotonic(a in -0.2f64..1.2, b in -0.2f64..1.2) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(lfp_ocv_v(lo) <= lfp_ocv_v(hi), "{lo} {hi}");
        }

        #[test]
        fn continuous(soc in -0.1f64..1.1) {
            let step = 1e-7;
            let jump = (lfp_ocv_v(soc + step) - lfp_ocv_v(soc)).abs();
            prop_assert!(jump < 1e-4, "{soc}: {jump}");
        }
    }
}
