//! Whether a reading that decoded cleanly is believable: a cell outside
//! what any lithium or lead cell reads, a current past what the pack can
//! carry, a pack voltage far from the sum of its cells. Such a reading is
//! a misread map or a failing BMS: the collector marks it `suspect`,
//! never `fresh`. Pure, no I/O.

use packgate_protocol::PackReading;

/// Range of a believable cell voltage, volts.
pub const PLAUSIBLE_CELL_V: (f32, f32) = (0.5, 5.0);
/// How far the pack voltage may be from the sum of its cells, as a
/// fraction of that sum (the cells and the pack terminals are measured by
/// different circuits, through a shunt and the switches).
pub const PACK_VS_CELLS_TOLERANCE: f32 = 0.10;

/// What a driver knows that bounds its readings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PlausibilityLimits {
    /// The largest current the pack can carry, amperes, when the driver or
    /// its profile knows it.
    pub max_current_a: Option<f32>,
    /// Whether the reading lists every series cell (so their sum is the
    /// pack voltage); false where it gives only the highest and lowest
    /// (SunSpec, CAN).
    pub cells_complete: bool,
}

/// Why a reading is not believable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Implausible {
    /// A cell reads outside [`PLAUSIBLE_CELL_V`].
    #[error("cell {cell} reads {voltage_v} V, outside {min} to {max} V", min = PLAUSIBLE_CELL_V.0, max = PLAUSIBLE_CELL_V.1)]
    CellVoltage {
        /// The cell, from 1.
        cell: usize,
        /// Its voltage.
        voltage_v: f32,
    },
    /// The current is past the pack's maximum.
    #[error("current {current_a} A is past the pack's maximum of {max_a} A")]
    Current {
        /// The current read.
        current_a: f32,
        /// The maximum.
        max_a: f32,
    },
    /// The pack voltage is not within [`PACK_VS_CELLS_TOLERANCE`] of the
    /// sum of the cells.
    #[error("pack voltage {pack_v} V is more than 10 % from the sum of its cells, {cells_v} V")]
    PackVsCells {
        /// The pack voltage read.
        pack_v: f32,
        /// The sum of the cells.
        cells_v: f32,
    },
}

/// Checks `reading` against the physics and the driver's `limits`.
pub fn check(reading: &PackReading, limits: &PlausibilityLimits) -> Result<(), Implausible> {
    let cells = &reading.cell_voltages_v.0;
    let (min, max) = PLAUSIBLE_CELL_V;
    if let Some((i, &v)) = cells
        .iter()
        .enumerate()
        .find(|(_, v)| !(min..=max).contains(*v))
    {
        return Err(Implausible::CellVoltage {
            cell: i + 1,
            voltage_v: v,
        });
    }
    if let Some(max_a) = limits.max_current_a {
        if reading.current_a.abs() > max_a {
            return Err(Implausible::Current {
                current_a: reading.current_a,
                max_a,
            });
        }
    }
    if limits.cells_complete && !cells.is_empty() {
        let cells_v: f32 = cells.iter().sum();
        if (reading.pack_voltage_v - cells_v).abs() > PACK_VS_CELLS_TOLERANCE * cells_v {
            return Err(Implausible::PackVsCells {
                pack_v: reading.pack_voltage_v,
                cells_v,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use packgate_protocol::CellVoltages;
    use proptest::prelude::*;

    fn reading(pack_v: f32, cells: &[f32], current_a: f32) -> PackReading {
        PackReading {
            pack_voltage_v: pack_v,
            current_a,
            soc_pct: 50.0,
            cell_voltages_v: CellVoltages(cells.to_vec()),
            ..PackReading::default()
        }
    }

    const ALL: PlausibilityLimits = PlausibilityLimits {
        max_current_a: Some(200.0),
        cells_complete: true,
    };

    #[test]
    fn a_sane_reading_passes_and_each_rule_catches_its_case() {
        let cells = [3.30, 3.31, 3.29, 3.30];
        assert_eq!(check(&reading(13.2, &cells, -50.0), &ALL), Ok(()));
        // A cell of 0.2 V (a map one register off, a broken sense wire).
        assert_eq!(
            check(&reading(9.9, &[3.3, 3.3, 0.2, 3.1], 0.0), &ALL),
            Err(Implausible::CellVoltage {
                cell: 3,
                voltage_v: 0.2
            })
        );
        assert!(matches!(
            check(&reading(13.2, &[3.3, 3.3, 3.3, 5.2], 0.0), &ALL),
            Err(Implausible::CellVoltage { cell: 4, .. })
        ));
        assert!(matches!(
            check(&reading(13.2, &cells, -250.0), &ALL),
            Err(Implausible::Current { .. })
        ));
        // 10 % of 13.2 V is 1.32 V: 14.4 V is within, 14.6 V is not.
        assert_eq!(check(&reading(14.4, &cells, 0.0), &ALL), Ok(()));
        assert!(matches!(
            check(&reading(14.6, &cells, 0.0), &ALL),
            Err(Implausible::PackVsCells { .. })
        ));
        // The misread SunSpec pack: 5.35 V for cells of 3.3 V.
        assert!(check(&reading(5.35, &cells, 0.0), &ALL).is_err());
    }

    #[test]
    fn what_the_driver_does_not_know_is_not_checked() {
        let none = PlausibilityLimits::default();
        // Highest and lowest cell only: their sum is no pack voltage.
        assert_eq!(check(&reading(52.0, &[3.35, 3.20], -900.0), &none), Ok(()));
        // No cells at all.
        assert_eq!(check(&reading(52.0, &[], 10.0), &ALL), Ok(()));
    }

    proptest! {
        #[test]
        fn cells_that_sum_to_the_pack_with_a_sane_current_always_pass(
            cells in prop::collection::vec(2.5f32..3.65, 1..=32),
            current_a in -200.0f32..=200.0,
            skew in -0.05f32..0.05,
        ) {
            let sum: f32 = cells.iter().sum();
            let r = reading(sum * (1.0 + skew), &cells, current_a);
            prop_assert_eq!(check(&r, &ALL), Ok(()));
        }
    }
}
