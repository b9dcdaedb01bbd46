//! Model 802's `Evt1` bits mapped to packgate's alarm names, pure.
//!
//! Every bit of the SunSpec definition is listed in [`EVT1`]: an alarm
//! mapped to a packgate alarm, a warning (packgate has no warning flags, so
//! warnings are kept apart and never raised as alarms), or unmapped (no
//! packgate name fits). The README's table is this one.

use packgate_protocol::AlarmFlags;

/// What one `Evt1` bit becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMapping {
    /// Raised as this packgate alarm.
    Alarm(AlarmFlags),
    /// A warning: reported apart, not an alarm.
    Warning,
    /// No packgate name fits: not raised.
    Unmapped,
}

use EventMapping::{Alarm, Unmapped, Warning};

/// The `Evt1` bits: bit number, SunSpec name, what packgate makes of it.
pub const EVT1: [(u8, &str, EventMapping); 32] = [
    (0, "COMMUNICATION_ERROR", Alarm(AlarmFlags::BMS_FAULT)),
    (1, "OVER_TEMP_ALARM", Alarm(AlarmFlags::OVER_TEMPERATURE)),
    (2, "OVER_TEMP_WARNING", Warning),
    (3, "UNDER_TEMP_ALARM", Alarm(AlarmFlags::UNDER_TEMPERATURE)),
    (4, "UNDER_TEMP_WARNING", Warning),
    (
        5,
        "OVER_CHARGE_CURRENT_ALARM",
        Alarm(AlarmFlags::CHARGE_OVER_CURRENT),
    ),
    (6, "OVER_CHARGE_CURRENT_WARNING", Warning),
    (
        7,
        "OVER_DISCHARGE_CURRENT_ALARM",
        Alarm(AlarmFlags::DISCHARGE_OVER_CURRENT),
    ),
    (8, "OVER_DISCHARGE_CURRENT_WARNING", Warning),
    (9, "OVER_VOLT_ALARM", Alarm(AlarmFlags::PACK_OVER_VOLTAGE)),
    (10, "OVER_VOLT_WARNING", Warning),
    (
        11,
        "UNDER_VOLT_ALARM",
        Alarm(AlarmFlags::PACK_UNDER_VOLTAGE),
    ),
    (12, "UNDER_VOLT_WARNING", Warning),
    (13, "UNDER_SOC_MIN_ALARM", Unmapped),
    (14, "UNDER_SOC_MIN_WARNING", Warning),
    (15, "OVER_SOC_MAX_ALARM", Unmapped),
    (16, "OVER_SOC_MAX_WARNING", Warning),
    (17, "VOLTAGE_IMBALANCE_WARNING", Warning),
    (18, "TEMPERATURE_IMBALANCE_ALARM", Unmapped),
    (19, "TEMPERATURE_IMBALANCE_WARNING", Warning),
    (20, "CONTACTOR_ERROR", Alarm(AlarmFlags::BMS_FAULT)),
    (21, "FAN_ERROR", Alarm(AlarmFlags::BMS_FAULT)),
    (22, "GROUND_FAULT", Alarm(AlarmFlags::BMS_FAULT)),
    (23, "OPEN_DOOR_ERROR", Unmapped),
    (24, "CURRENT_IMBALANCE_WARNING", Warning),
    (25, "OTHER_ALARM", Alarm(AlarmFlags::BMS_FAULT)),
    (26, "OTHER_WARNING", Warning),
    (27, "RESERVED_1", Unmapped),
    (28, "CONFIGURATION_ALARM", Alarm(AlarmFlags::BMS_FAULT)),
    (29, "CONFIGURATION_WARNING", Warning),
    (30, "(not defined)", Unmapped),
    (31, "(not defined)", Unmapped),
];

/// The alarms and warnings of one `Evt1` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Events {
    /// packgate alarms raised by the mapped alarm bits.
    pub alarms: AlarmFlags,
    /// The warning bits that are set, as they are in `Evt1`.
    pub warnings: u32,
    /// The unmapped bits that are set, as they are in `Evt1`.
    pub unmapped: u32,
}

/// Splits `evt1` into alarms, warnings and unmapped bits.
pub fn events(evt1: u32) -> Events {
    let mut out = Events::default();
    for (bit, _, mapping) in EVT1 {
        let mask = 1u32 << bit;
        if evt1 & mask == 0 {
            continue;
        }
        match mapping {
            Alarm(flag) => out.alarms = out.alarms.union(flag),
            Warning => out.warnings |= mask,
            Unmapped => out.unmapped |= mask,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_is_listed_once_in_order() {
        for (i, (bit, _, _)) in EVT1.iter().enumerate() {
            assert_eq!(usize::from(*bit), i);
        }
    }

    /// The README's Evt1 table says what [`EVT1`] does, bit by bit.
    #[test]
    fn the_readme_table_is_this_table() {
        let readme = include_str!("../../../README.md");
        for (bit, name, mapping) in EVT1.iter().take(30) {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| {bit} | {name} | ")))
                .unwrap_or_else(|| panic!("README has no Evt1 row for bit {bit} {name}"));
            let what = match mapping {
                Alarm(flag) => {
                    let (_, text) = AlarmFlags::ALL.iter().find(|(f, _)| f == flag).unwrap();
                    format!("`{text}`")
                }
                Warning => "warning".to_owned(),
                Unmapped => "unmapped".to_owned(),
            };
            assert!(row.contains(&what), "README row {row:?} should say {what}");
        }
        assert!(readme.contains("| 30, 31 | (not defined) | unmapped |"));
    }

    #[test]
    fn alarms_warnings_and_unmapped_are_apart() {
        let e = events((1 << 1) | (1 << 2) | (1 << 17) | (1 << 13) | (1 << 20));
        assert_eq!(
            e.alarms,
            AlarmFlags::OVER_TEMPERATURE.union(AlarmFlags::BMS_FAULT)
        );
        assert_eq!(e.warnings, (1 << 2) | (1 << 17));
        assert_eq!(e.unmapped, 1 << 13);
        // A voltage imbalance warning is no cell_imbalance alarm.
        assert!(!events(1 << 17).alarms.contains(AlarmFlags::CELL_IMBALANCE));
        assert_eq!(events(0), Events::default());
    }
}
