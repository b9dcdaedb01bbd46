//! Where each driver's protocol map comes from and what it was checked
//! against, so an installer knows how far to trust a reading before a pack
//! is connected. `packgate profiles list` prints it; the README's protocol
//! table is checked against it.

/// One driver's protocol and its provenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverProvenance {
    /// The `driver` value of a pack.
    pub driver: &'static str,
    /// The protocol, by its common name.
    pub protocol: &'static str,
    /// The bus kind it runs on.
    pub transport: &'static str,
    /// Packs known to speak it.
    pub packs: &'static str,
    /// What a poll reads.
    pub reads: &'static str,
    /// What can be written (through the validated control path).
    pub writes: &'static str,
    /// The document (and version) the map is written from.
    pub source: &'static str,
    /// What it was checked against.
    pub checked_against: &'static str,
}

/// Every driver with a protocol of its own (Modbus packs are read through
/// profiles, which state their own provenance).
pub const DRIVERS: &[DriverProvenance] = &[
    DriverProvenance {
        driver: "can",
        protocol: "Pylontech/SMA-style BMS CAN",
        transport: "slcan, socketcan",
        packs: "Pylontech US/Force, BYD, most LV packs talking to SMA, Victron, Goodwe inverters",
        reads: "voltage, current, SoC, SoH, min/max cell, temperatures, alarms, charge/discharge requests",
        writes: "nothing",
        source: "Pylontech LV CAN protocol (public V1.2) and the SMA Sunny Island CAN frame list",
        checked_against: "candump captures replayed in tests; packgate-sim over slcan",
    },
    DriverProvenance {
        driver: "sunspec",
        protocol: "SunSpec models 1, 802, 803",
        transport: "modbus_rtu, modbus_tcp",
        packs: "SunSpec-certified batteries and their inverters' Modbus gateways",
        reads: "voltage, current, SoC, SoH where implemented, min/max cell, bank temperatures, Evt1 alarms",
        writes: "nothing",
        source: "SunSpec models repository (model_1, model_802, model_803 JSON definitions)",
        checked_against: "an independent device written from the model definitions (packgate-sim --sunspec-layout, four layouts)",
    },
    DriverProvenance {
        driver: "pylon_ascii",
        protocol: "Pylontech-style RS-485 ASCII (~ ... \\r frames)",
        transport: "bms_serial",
        packs: "Pylontech US2000/US3000/US5000/Force; Seplos V1/V2 (layout = \"seplos_v2\"); Pace-board rack packs (layout = \"pace\")",
        reads: "cells, temperatures, current, voltage, SoC (Seplos: as sent; others from the capacities), SoH (Seplos), protection bits, switch states, balancing (Seplos), serial number (Pylontech)",
        writes: "nothing",
        source: "PYLON low voltage Protocol RS485 V3.3 (2018-08-21); Seplos BMS Communication Protocol V2.0 (2019-10-15) and Seplos 48v 100A BMS RS485 Protocol (EMU10XX); PACE RS232 Communication Protocol PACE-RS232-TY16S (protocol V2.5, 2018-07-05)",
        checked_against: "fixtures from the documents (two of Pylontech's example checksums are misprinted), two US2000/US3000 captures, a published Seplos 1101-SP15 capture, Pace's worked example and published PBmsTools captures; the simulator's device for each layout; not checked on hardware here",
    },
    DriverProvenance {
        driver: "jbd",
        protocol: "JBD / Xiaoxiang (0xDD ... 0x77 frames)",
        transport: "bms_serial",
        packs: "JBD, Overkill Solar, Xiaoxiang smart BMS",
        reads: "cells, temperatures, current, voltage, SoC, balancing, protection bits, switch states",
        writes: "charge_switch_on, discharge_switch_on (register 0xE1)",
        source: "JBD BMS communication protocol (UART/RS485, English translation V4)",
        checked_against: "fixtures written from the document; not checked on hardware",
    },
    DriverProvenance {
        driver: "daly",
        protocol: "Daly UART/RS-485 (13-byte 0xA5 frames)",
        transport: "bms_serial",
        packs: "Daly smart BMS (UART and RS-485 boards)",
        reads: "cells, temperatures, current, voltage, SoC, balancing, failure bits, switch states",
        writes: "nothing",
        source: "Daly UART/RS485 protocol as documented by open-source readers (no vendor document to hand) and a 2026 reverse-engineered protocol reference",
        checked_against: "fixtures from those references; not checked on hardware",
    },
    DriverProvenance {
        driver: "jk",
        protocol: "JK native (0x4E57 \"NW\" frames)",
        transport: "bms_serial",
        packs: "JK BMS B/BD series with the RS-485 adapter",
        reads: "cells, temperatures, current, voltage, SoC, warning bits, switch states, serial number",
        writes: "charge_switch_on, discharge_switch_on (0xAB, 0xAC)",
        source: "JK BMS RS485 communication protocol (NW frames, V2.5)",
        checked_against: "fixtures written from the document; not checked on hardware",
    },
];

/// The provenance of `driver`.
pub fn of(driver: &str) -> Option<&'static DriverProvenance> {
    DRIVERS.iter().find(|d| d.driver == driver)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's protocol table says what [`DRIVERS`] says, row by row.
    #[test]
    fn the_readme_table_is_this_table() {
        let readme = include_str!("../../README.md");
        for d in DRIVERS {
            let row = format!(
                "| `{}` | {} | {} | {} | {} | {} |",
                d.driver, d.protocol, d.transport, d.packs, d.reads, d.writes
            );
            assert!(
                readme.lines().any(|l| l == row),
                "README lacks the row {row}"
            );
        }
    }

    #[test]
    fn every_driver_is_listed_once_and_found() {
        for d in DRIVERS {
            assert_eq!(of(d.driver), Some(d));
            assert!(!d.source.is_empty() && !d.checked_against.is_empty());
        }
        assert_eq!(of("victron"), None);
    }
}
