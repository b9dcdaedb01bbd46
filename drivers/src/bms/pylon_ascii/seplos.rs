//! The Seplos V2 layout, written from Shenzhen Seplos Technology's
//! "BMS Communication Protocol" (MODBUS-ASCII, RS485), version V2.0
//! (2019-10-15, EMU10XX / 11XX series), and checked against the same
//! company's "Seplos 48v 100A BMS RS485 Protocol" (EMU10XX, no version
//! printed), which carries the same tables in another translation.
//!
//! Seplos "V1" packs (the EMU10XX boards) are described by that second
//! document: the same VER `20`, the same `0x42` and `0x44` layouts. No
//! public document of another V1 layout was found; a pack that answers
//! otherwise is refused by the checks below, never misread.
//!
//! # Requests
//!
//! VER `20`, ADR the DIP address (0 to 15), CID1 `46`, CID2 `42`
//! (telemetry) or `44` (telesignalling), INFO one byte: COMMAND GROUP,
//! the pack's address on RS-485 (the document's tables 7 and 10).
//! Return codes as Pylontech's, plus `07` no data, `E1` CID1 invalid,
//! `E2` command execution failure, `E3` device fault, `E4` invalid
//! permissions. The COMMAND GROUP a reply echoes is not checked: a
//! published capture of a pack at ADR 0 asked for group 0 echoes 1; the
//! frame's ADR is checked.
//!
//! # `0x42` telemetry reply (75 bytes with 16 cells)
//!
//! | field                        | type | unit / scale                      |
//! |------------------------------|------|-----------------------------------|
//! | DATA FLAG                    | u8   | –                                 |
//! | COMMAND GROUP                | u8   | –                                 |
//! | cells M                      | u8   | at most 16                        |
//! | M × cell voltage             | u16  | mV                                |
//! | temperatures N               | u8   | 6                                 |
//! | cell temperatures 1-4        | u16  | 0.1 K, °C = (raw − 2731) / 10     |
//! | environment temperature      | u16  | likewise                          |
//! | power (MOSFET) temperature   | u16  | likewise                          |
//! | charge/discharge current     | i16  | 10 mA, + charging                 |
//! | total voltage                | u16  | 10 mV                             |
//! | residual capacity            | u16  | 10 mAh                            |
//! | custom number P              | u8   | 10                                |
//! | battery (full) capacity      | u16  | 10 mAh                            |
//! | SoC                          | u16  | 0.1 % (‰), at most 1000           |
//! | rated capacity               | u16  | 10 mAh                            |
//! | cycles                       | u16  | –                                 |
//! | SoH                          | u16  | 0.1 % (‰), at most 1000           |
//! | port voltage                 | u16  | 10 mV                             |
//! | 4 × reserved                 | u16  | –                                 |
//!
//! The document's table 8 labels the temperatures "0.1 ℃" where its
//! table 9 gives the conversion (0.1 K, minus 2731): the conversion is
//! used, and a published capture (25.1 °C sent as 2982) agrees. The
//! current's sign is not written in the document; the same capture
//! (−6.76 A, `FD5C`, while the pack discharged) gives it: negative while
//! discharging, as in packgate.
//!
//! # `0x44` telesignalling reply (49 bytes with 16 cells)
//!
//! DATA FLAG u8, COMMAND GROUP u8, M u8, M × cell state u8, N u8 (6), N
//! × temperature state u8 (cells 1-4, environment, power), current state
//! u8, total voltage state u8, custom number P u8 (20), then twenty bytes:
//! alarm events 1 to 6, on/off state, equilibrium states 1 and 2, system
//! state, disconnection states 1 and 2, alarm events 7 and 8, six
//! reserved. States: `00` normal, `01` lower limit, `02` upper limit,
//! `F0` other alarm: each sensor's alarm, warning or protection alike,
//! so none raises a flag (the event bits below say which is a
//! protection).
//!
//! Protections and faults raise packgate flags; warnings ("alarm" in the
//! document, next to each "protection") and states do not:
//!
//! | byte / bit                                  | meaning                                  | flag                      |
//! |---------------------------------------------|------------------------------------------|---------------------------|
//! | event 1 bits 0-7                            | voltage, temperature, current sensor, key switch, cell voltage dropout, charge switch, discharge switch, current limit switch fault | `BMS_FAULT` |
//! | event 2 bit 0 / 2 / 4 / 6                   | cell high, cell low, total high, total low voltage alarm | unmapped (warnings) |
//! | event 2 bit 1 / 3                           | cell over / under voltage protection     | `CELL_OVER_VOLTAGE` / `CELL_UNDER_VOLTAGE` |
//! | event 2 bit 5 / 7                           | total over / under voltage protection    | `PACK_OVER_VOLTAGE` / `PACK_UNDER_VOLTAGE` |
//! | event 3 bit 0 / 2 / 4 / 6                   | charge high / low, discharge high / low temperature alarm | unmapped (warnings) |
//! | event 3 bit 1 / 5                           | charge / discharge over temperature protection | `OVER_TEMPERATURE`  |
//! | event 3 bit 3 / 7                           | charge / discharge under temperature protection | `UNDER_TEMPERATURE` |
//! | event 4 bit 0 / 2                           | environment high / low temperature alarm | unmapped (warnings)       |
//! | event 4 bit 1 / 3                           | environment over / under temperature protection | `OVER_TEMPERATURE` / `UNDER_TEMPERATURE` |
//! | event 4 bit 4, bit 5                        | power (MOSFET) temperature: see below    | `OVER_TEMPERATURE` both   |
//! | event 4 bit 6                               | cell low temperature heating             | unmapped (a state)        |
//! | event 4 bit 7                               | reserved                                 | unmapped                  |
//! | event 5 bit 0 / 2                           | charge / discharge over current alarm    | unmapped (warnings)       |
//! | event 5 bit 1 / 3                           | charge / discharge over current protection | `CHARGE_OVER_CURRENT` / `DISCHARGE_OVER_CURRENT` |
//! | event 5 bit 4 / 6                           | transient over current protection / lockout (no direction) | `CHARGE_OVER_CURRENT` and `DISCHARGE_OVER_CURRENT` |
//! | event 5 bit 5 / 7                           | output short circuit protection / lockout | `SHORT_CIRCUIT`          |
//! | event 6 bit 0                               | charge high voltage protection           | `PACK_OVER_VOLTAGE`       |
//! | event 6 bit 1                               | intermittent recharge waiting            | unmapped (a state)        |
//! | event 6 bit 2 / 3                           | residual capacity alarm / protection     | unmapped (no flag for a low SoC; the switches show it) |
//! | event 6 bit 4                               | cell low voltage, charging forbidden     | `CELL_UNDER_VOLTAGE`      |
//! | event 6 bit 5 / 6                           | output reverse polarity protection / output connection fault | `BMS_FAULT` |
//! | event 6 bit 7                               | internal                                 | unmapped                  |
//! | on/off bit 0 / 1                            | discharge / charge switch on             | the switches              |
//! | on/off bits 2, 3, 4-7                       | current limit switch, heating switch, reserved | unmapped            |
//! | equilibrium 1 / 2                           | cells 1-8 / 9-16 balancing (bit 0 first) | the balancing mask        |
//! | system state bits 0-7                       | discharge, charge, floating charge, standby, shutdown, reserved | unmapped (states) |
//! | disconnection 1 / 2                         | cell 1-8 / 9-16 wire disconnected        | `BMS_FAULT`               |
//! | event 7 bits 4 / 5, others                  | automatic / manual charging waiting; internal | unmapped             |
//! | event 8 bit 0                               | EEP storage fault                        | `BMS_FAULT`               |
//! | event 8 bits 1-7                            | RTC error, voltage / current / zero calibration not performed, internal | unmapped (no effect on protection) |
//! | reserved bytes                              | –                                        | unmapped                  |
//!
//! The two documents disagree on event 4 bits 4 and 5: V2.0 reads bit 4
//! "power over temperature protection" and bit 5 "power high temperature
//! alarm", the EMU10XX document bit 4 "component high temperature
//! warning" and bit 5 "component high temperature protection". Either
//! may be the protection, so both raise `OVER_TEMPERATURE`: a warning
//! read as a protection errs on the side of the pack.
//!
//! # Mapping into a reading
//!
//! Cells mV / 1000 (above [`MAX_CELL_MV`](super::info::MAX_CELL_MV) an
//! error); the four cell temperatures are the reading's temperatures,
//! environment and power kept apart ([`SeplosAnalog::environment_temperature_c`],
//! [`SeplosAnalog::power_temperature_c`]); a temperature outside
//! [`PLAUSIBLE_TEMPERATURE_C`](super::info::PLAUSIBLE_TEMPERATURE_C) is
//! an error. Current × 0.01 A, voltage × 0.01 V, SoC and SoH as sent
//! (above 100.0 % an error), balancing from the equilibrium bytes.

use packgate_protocol::{AlarmFlags, BalancingState, PackReading};

use super::codec::{decode_reply, CID2_ALARM_INFO, CID2_ANALOG_VALUE};
use super::info::{
    alarm_tail_refusal, check_cells, temperature_c_with_offset, user_defined_refusal, LimitState,
    Reader, KELVIN_OFFSET_DK,
};
use super::layout::PylonAsciiLayout;
use super::reading::{cell_temperatures_c, cell_voltages_v, check_reply_counts};
use crate::bms::FrameError;
use crate::{DeviceException, DriverError};

/// The custom number P of a Seplos V2 telemetry reply.
pub const SEPLOS_CUSTOM_ITEMS: u8 = 10;
/// The custom number P of a Seplos V2 telesignalling reply.
pub const SEPLOS_ALARM_BYTES: u8 = 20;
/// Temperatures of a Seplos V2 pack: four cells, environment, power.
pub const SEPLOS_TEMPERATURES: usize = 6;
/// Most cells the layout's bit fields (balancing, disconnection) cover.
pub const SEPLOS_MAX_CELLS: usize = 16;
/// Most SoC or SoH, per mille.
const MAX_PERMILLE: u16 = 1000;

#[path = "seplos_byte.rs"]
pub mod byte;

/// On/off state bit 0: discharge switch on.
pub const ON_OFF_DISCHARGE: u8 = 1 << 0;
/// On/off state bit 1: charge switch on.
pub const ON_OFF_CHARGE: u8 = 1 << 1;

/// Every event bit that raises a flag: (byte index, bit, flag). Bits
/// not listed raise none (see the module's table).
pub const EVENT_MAPPING: &[(usize, u8, AlarmFlags)] = &[
    (byte::EVENT1, 0xFF, AlarmFlags::BMS_FAULT),
    (byte::EVENT2, 1 << 1, AlarmFlags::CELL_OVER_VOLTAGE),
    (byte::EVENT2, 1 << 3, AlarmFlags::CELL_UNDER_VOLTAGE),
    (byte::EVENT2, 1 << 5, AlarmFlags::PACK_OVER_VOLTAGE),
    (byte::EVENT2, 1 << 7, AlarmFlags::PACK_UNDER_VOLTAGE),
    (
        byte::EVENT3,
        (1 << 1) | (1 << 5),
        AlarmFlags::OVER_TEMPERATURE,
    ),
    (
        byte::EVENT3,
        (1 << 3) | (1 << 7),
        AlarmFlags::UNDER_TEMPERATURE,
    ),
    (
        byte::EVENT4,
        (1 << 1) | (1 << 4) | (1 << 5),
        AlarmFlags::OVER_TEMPERATURE,
    ),
    (byte::EVENT4, 1 << 3, AlarmFlags::UNDER_TEMPERATURE),
    (
        byte::EVENT5,
        (1 << 1) | (1 << 4) | (1 << 6),
        AlarmFlags::CHARGE_OVER_CURRENT,
    ),
    (
        byte::EVENT5,
        (1 << 3) | (1 << 4) | (1 << 6),
        AlarmFlags::DISCHARGE_OVER_CURRENT,
    ),
    (byte::EVENT5, (1 << 5) | (1 << 7), AlarmFlags::SHORT_CIRCUIT),
    (byte::EVENT6, 1 << 0, AlarmFlags::PACK_OVER_VOLTAGE),
    (byte::EVENT6, 1 << 4, AlarmFlags::CELL_UNDER_VOLTAGE),
    (byte::EVENT6, (1 << 5) | (1 << 6), AlarmFlags::BMS_FAULT),
    (byte::DISCONNECTION1, 0xFF, AlarmFlags::BMS_FAULT),
    (byte::DISCONNECTION2, 0xFF, AlarmFlags::BMS_FAULT),
    (byte::EVENT8, 1 << 0, AlarmFlags::BMS_FAULT),
];

/// A Seplos V2 `0x42` reply, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeplosAnalog {
    /// DATA FLAG; informative.
    pub data_flag: u8,
    /// COMMAND GROUP echoed; informative.
    pub command_group: u8,
    /// Cell voltages, millivolts, cell 1 first.
    pub cell_voltages_mv: Vec<u16>,
    /// Temperatures, 0.1 K (minus 2731 for 0.1 °C): cells 1-4,
    /// environment, power.
    pub temperatures_dk: Vec<i16>,
    /// Current, 10 mA, positive while charging.
    pub current_10ma: i16,
    /// Total voltage, 10 mV.
    pub pack_voltage_10mv: u16,
    /// Residual capacity, 10 mAh.
    pub remaining_capacity_10mah: u16,
    /// Battery (full) capacity, 10 mAh.
    pub full_capacity_10mah: u16,
    /// State of charge, per mille.
    pub soc_permille: u16,
    /// Rated capacity, 10 mAh.
    pub rated_capacity_10mah: u16,
    /// Charge cycles.
    pub cycles: u16,
    /// State of health, per mille.
    pub soh_permille: u16,
    /// Port voltage, 10 mV.
    pub port_voltage_10mv: u16,
    /// The four reserved words.
    pub reserved: [u16; 4],
}

/// Refuses more than [`SEPLOS_MAX_CELLS`] cells, or another number of
/// temperatures than [`SEPLOS_TEMPERATURES`].
fn check_counts(cells: usize, sensors: usize, vendor: &str) -> Result<(), FrameError> {
    if cells > SEPLOS_MAX_CELLS {
        return Err(FrameError::Malformed(format!(
            "{cells} cells; the {vendor} layout has at most {SEPLOS_MAX_CELLS}"
        )));
    }
    if sensors != SEPLOS_TEMPERATURES {
        return Err(FrameError::Malformed(format!(
            "{sensors} temperatures; the {vendor} layout has {SEPLOS_TEMPERATURES}"
        )));
    }
    Ok(())
}

/// Decodes a Seplos V2 `0x42` reply's INFO, refusing another layout
/// (by its custom number) and impossible values.
pub fn decode_seplos_analog(info: &[u8]) -> Result<SeplosAnalog, FrameError> {
    let layout = PylonAsciiLayout::SeplosV2;
    let mut r = Reader::new(info);
    let data_flag = r.u8("DATA FLAG")?;
    let command_group = r.u8("COMMAND GROUP")?;
    let cells = r.u8("cell count")?;
    let cell_voltages_mv = (0..cells)
        .map(|_| r.u16("cell voltage"))
        .collect::<Result<Vec<_>, _>>()?;
    let sensors = r.u8("temperature count")?;
    let temperatures_dk = (0..sensors)
        .map(|_| r.u16("temperature").map(|t| t as i16))
        .collect::<Result<Vec<_>, _>>()?;
    let current_10ma = r.u16("current")? as i16;
    let pack_voltage_10mv = r.u16("total voltage")?;
    let remaining_capacity_10mah = r.u16("residual capacity")?;
    let custom = r.u8("custom number")?;
    if custom != SEPLOS_CUSTOM_ITEMS {
        return Err(user_defined_refusal(layout, custom, "10"));
    }
    check_counts(
        cell_voltages_mv.len(),
        temperatures_dk.len(),
        layout.vendor(),
    )?;
    check_cells(&cell_voltages_mv)?;
    for t in &temperatures_dk {
        temperature_c_with_offset(*t, KELVIN_OFFSET_DK)?;
    }
    let full_capacity_10mah = r.u16("battery capacity")?;
    let soc_permille = r.u16("SoC")?;
    let rated_capacity_10mah = r.u16("rated capacity")?;
    let cycles = r.u16("cycles")?;
    let soh_permille = r.u16("SoH")?;
    let port_voltage_10mv = r.u16("port voltage")?;
    let mut reserved = [0u16; 4];
    for word in &mut reserved {
        *word = r.u16("reserved")?;
    }
    r.finish()?;
    for (what, value) in [("SoC", soc_permille), ("SoH", soh_permille)] {
        if value > MAX_PERMILLE {
            return Err(FrameError::Malformed(format!("{what} reads {value} ‰")));
        }
    }
    Ok(SeplosAnalog {
        data_flag,
        command_group,
        cell_voltages_mv,
        temperatures_dk,
        current_10ma,
        pack_voltage_10mv,
        remaining_capacity_10mah,
        full_capacity_10mah,
        soc_permille,
        rated_capacity_10mah,
        cycles,
        soh_permille,
        port_voltage_10mv,
        reserved,
    })
}

impl SeplosAnalog {
    /// The environment temperature, °C.
    pub fn environment_temperature_c(&self) -> Option<f32> {
        self.temperature(SEPLOS_TEMPERATURES - 2)
    }

    /// The power (MOSFET) temperature, °C.
    pub fn power_temperature_c(&self) -> Option<f32> {
        self.temperature(SEPLOS_TEMPERATURES - 1)
    }

    fn temperature(&self, index: usize) -> Option<f32> {
        self.temperatures_dk
            .get(index)
            .and_then(|t| temperature_c_with_offset(*t, KELVIN_OFFSET_DK).ok())
    }
}

/// A Seplos V2 `0x44` reply, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeplosAlarm {
    /// DATA FLAG; informative.
    pub data_flag: u8,
    /// COMMAND GROUP echoed; informative.
    pub command_group: u8,
    /// Each cell's state, cell 1 first.
    pub cell_states: Vec<LimitState>,
    /// Each temperature's state: cells 1-4, environment, power.
    pub temperature_states: Vec<LimitState>,
    /// The charge/discharge current's state.
    pub current_state: LimitState,
    /// The total voltage's state.
    pub pack_voltage_state: LimitState,
    /// The twenty bit-alarm bytes, indexed by [`byte`].
    pub bytes: [u8; SEPLOS_ALARM_BYTES as usize],
}

/// Decodes a Seplos V2 `0x44` reply's INFO.
pub fn decode_seplos_alarm(info: &[u8]) -> Result<SeplosAlarm, FrameError> {
    let layout = PylonAsciiLayout::SeplosV2;
    let mut r = Reader::new(info);
    let data_flag = r.u8("DATA FLAG")?;
    let command_group = r.u8("COMMAND GROUP")?;
    let cells = r.u8("cell count")?;
    let cell_states: Vec<_> = r
        .bytes(usize::from(cells), "cell states")?
        .iter()
        .map(|c| LimitState::from_code(*c))
        .collect();
    let sensors = r.u8("temperature count")?;
    let temperature_states: Vec<_> = r
        .bytes(usize::from(sensors), "temperature states")?
        .iter()
        .map(|c| LimitState::from_code(*c))
        .collect();
    let tail = r.remaining();
    let expected = 3 + usize::from(SEPLOS_ALARM_BYTES);
    if tail != expected {
        return Err(alarm_tail_refusal(
            layout,
            tail,
            format!(
                "{tail} bytes after the temperature states; the Seplos V2 layout has {expected}"
            ),
        ));
    }
    check_counts(cell_states.len(), temperature_states.len(), layout.vendor())?;
    let current_state = LimitState::from_code(r.u8("current state")?);
    let pack_voltage_state = LimitState::from_code(r.u8("total voltage state")?);
    let custom = r.u8("custom alarm count")?;
    if custom != SEPLOS_ALARM_BYTES {
        return Err(FrameError::Malformed(format!(
            "{custom} custom alarms; the Seplos V2 layout has {SEPLOS_ALARM_BYTES}"
        )));
    }
    let mut bytes = [0u8; SEPLOS_ALARM_BYTES as usize];
    bytes.copy_from_slice(r.bytes(usize::from(SEPLOS_ALARM_BYTES), "alarm bytes")?);
    r.finish()?;
    Ok(SeplosAlarm {
        data_flag,
        command_group,
        cell_states,
        temperature_states,
        current_state,
        pack_voltage_state,
        bytes,
    })
}

impl SeplosAlarm {
    /// The active protections and faults as packgate flags.
    pub fn alarm_flags(&self) -> AlarmFlags {
        EVENT_MAPPING
            .iter()
            .filter(|(at, bits, _)| self.bytes[*at] & bits != 0)
            .fold(AlarmFlags::NONE, |acc, (_, _, flag)| acc.union(*flag))
    }

    /// Whether the charge switch is on.
    pub fn charge_switch_on(&self) -> bool {
        self.bytes[byte::ON_OFF] & ON_OFF_CHARGE != 0
    }

    /// Whether the discharge switch is on.
    pub fn discharge_switch_on(&self) -> bool {
        self.bytes[byte::ON_OFF] & ON_OFF_DISCHARGE != 0
    }

    /// The cells being balanced, of the first `cells`.
    pub fn balancing(&self, cells: usize) -> BalancingState {
        let mask = u32::from(u16::from_le_bytes([
            self.bytes[byte::EQUILIBRIUM1],
            self.bytes[byte::EQUILIBRIUM2],
        ]));
        let cells_mask = if cells >= 32 {
            u32::MAX
        } else {
            (1u32 << cells) - 1
        };
        BalancingState(mask & cells_mask)
    }
}

/// The `0x42` reply of the Seplos pack at `address`, decoded.
pub fn decode_seplos_analog_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<SeplosAnalog, DeviceException>, FrameError> {
    decode_reply(frames, address, CID2_ANALOG_VALUE, decode_seplos_analog)
}

/// The `0x44` reply of the Seplos pack at `address`, decoded.
pub fn decode_seplos_alarm_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<SeplosAlarm, DeviceException>, FrameError> {
    decode_reply(frames, address, CID2_ALARM_INFO, decode_seplos_alarm)
}

/// One poll's reading from a Seplos pack's `0x42` and `0x44` replies,
/// which must agree on the cell and temperature counts.
pub fn seplos_pack_reading(
    analog: &SeplosAnalog,
    alarm: &SeplosAlarm,
) -> Result<PackReading, DriverError> {
    let cells = analog.cell_voltages_mv.len();
    check_reply_counts(
        ("telemetry", "telesignalling"),
        (cells, analog.temperatures_dk.len()),
        (alarm.cell_states.len(), alarm.temperature_states.len()),
    )?;
    let temperatures_c = cell_temperatures_c(&analog.temperatures_dk, KELVIN_OFFSET_DK)?;
    Ok(PackReading {
        pack_voltage_v: f32::from(analog.pack_voltage_10mv) / 100.0,
        current_a: f32::from(analog.current_10ma) / 100.0,
        soc_pct: f32::from(analog.soc_permille) / 10.0,
        soh_pct: Some(f32::from(analog.soh_permille) / 10.0),
        cell_voltages_v: cell_voltages_v(&analog.cell_voltages_mv),
        temperatures_c,
        balancing: alarm.balancing(cells),
        alarms: alarm.alarm_flags(),
        charge_enabled: alarm.charge_switch_on(),
        discharge_enabled: alarm.discharge_switch_on(),
    })
}
