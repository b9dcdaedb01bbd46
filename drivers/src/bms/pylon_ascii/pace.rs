//! The Pace layout, written from Pace's "PACE RS232 Communication
//! Protocal" (PACE-RS232-TY16S, 2018-07-05, protocol V2.5), the
//! document the rack packs built on Pace boards (and their PBmsTools
//! software) follow on RS-232 and RS-485 alike, and checked against the
//! document's worked reply and published captures of PBmsTools.
//!
//! # Requests
//!
//! VER `25`, ADR the DIP address, CID1 `46`, CID2 `42` (pack analog
//! information) or `44` (pack warn information), INFO one byte: COMMAND,
//! the pack's address. The document gives ADR 0 to 15 but COMMAND only
//! `01` to `0F` ("pack N's information"), so packgate reads addresses 1
//! to 15; `FF`, every pack of a master's group, is never sent (its reply
//! carries several packs). Return codes: `00`
//! normal, `02` CHKSUM error, `03` LCHKSUM error, `04` CID2 undefined,
//! `09` operation or write error; `01`, `05`, `06` undefined. The
//! COMMAND value a reply echoes is not checked (the document's own
//! example asks ADR 0 for COMMAND 1); the frame's ADR is.
//!
//! # `0x42` analog reply (INFOFLAG, then one pack)
//!
//! | field                   | type | unit / scale                          |
//! |-------------------------|------|---------------------------------------|
//! | INFOFLAG                | u8   | `00` or `01`                          |
//! | COMMAND value           | u8   | –                                     |
//! | cells M                 | u8   | at most 16                            |
//! | M × cell voltage        | u16  | mV                                    |
//! | temperatures N          | u8   | 6                                     |
//! | cell temperatures 1-4   | u16  | 0.1 K, °C = (raw − 2730) / 10         |
//! | MOSFET temperature      | u16  | likewise                              |
//! | environment temperature | u16  | likewise                              |
//! | pack current            | i16  | 10 mA, + charging, − discharging      |
//! | pack total voltage      | u16  | mV                                    |
//! | remaining capacity      | u16  | 10 mAh                                |
//! | user-defined number P   | u8   | 3                                     |
//! | full capacity           | u16  | 10 mAh                                |
//! | cycles                  | u16  | –                                     |
//! | design capacity         | u16  | 10 mAh                                |
//!
//! The offset is 2730, not Pylontech's and Seplos's 2731: the document's
//! table A.4 (25.5 °C = 2985) and its worked example say so. The example
//! also names the fifth sensor MOSFET and the sixth environment (and
//! prints 2994 for its sixth, `0BBD`, which is 3005: 27.5 °C as it
//! says). Some wall-mount packs send P = 9 with 28 more bytes no
//! document describes: refused, as is any count but 3.
//!
//! # `0x44` warn reply
//!
//! INFOFLAG u8, COMMAND value u8, M u8, M × cell state u8, N u8 (6), N ×
//! temperature state u8, charge current state u8, total voltage state
//! u8, discharge current state u8, protect state 1 u8, protect state 2
//! u8, instruction state u8, control state u8, fault state u8, balance
//! state 1 u8, balance state 2 u8, warn state 1 u8, warn state 2 u8.
//! States: `00` normal, `01` below the lower limit, `02` above the upper
//! limit, `80`-`EF` user defined, `F0` other fault. A reply with one
//! more byte has been captured from a rebadged pack: refused, as is any
//! other length.
//!
//! | byte / bit                       | meaning                                      | flag                      |
//! |----------------------------------|----------------------------------------------|---------------------------|
//! | any state `01` / `02`            | a value past its warn limit                  | unmapped (warnings)       |
//! | any state `F0`                   | other fault                                  | `BMS_FAULT`               |
//! | any state `80`-`EF`, undefined   | user defined                                 | unmapped                  |
//! | protect 1 bit 0 / 1              | cell over / under voltage protect            | `CELL_OVER_VOLTAGE` / `CELL_UNDER_VOLTAGE` |
//! | protect 1 bit 2 / 3              | total over / under voltage protect           | `PACK_OVER_VOLTAGE` / `PACK_UNDER_VOLTAGE` |
//! | protect 1 bit 4 / 5              | charge / discharge current protect           | `CHARGE_OVER_CURRENT` / `DISCHARGE_OVER_CURRENT` |
//! | protect 1 bit 6                  | short circuit                                | `SHORT_CIRCUIT`           |
//! | protect 1 bit 7                  | undefined                                    | unmapped                  |
//! | protect 2 bit 0 / 1 / 4 / 5      | above charge, discharge, MOSFET, environment temperature protect | `OVER_TEMPERATURE` |
//! | protect 2 bit 2 / 3 / 6          | below charge, discharge, environment temperature protect | `UNDER_TEMPERATURE` |
//! | protect 2 bit 7                  | fully charged                                | unmapped (a state)        |
//! | instruction bit 1 / 2            | charge / discharge MOSFET on                 | the switches              |
//! | instruction bit 4                | reverse connection indicated                 | `BMS_FAULT`               |
//! | instruction bits 0, 3, 5, 6, 7   | current limit on, pack indicate, AC in, undefined, heater | unmapped (states) |
//! | control bits 0-7                 | buzzer, current limit gear and function, LED warn settings | unmapped (settings) |
//! | fault bits 0 / 1 / 2 / 4 / 5     | charge MOSFET, discharge MOSFET, NTC, cell, sampling fault | `BMS_FAULT`   |
//! | fault bits 3, 6, 7               | undefined                                    | unmapped                  |
//! | balance state 1 / 2              | cells balancing: see below                   | unmapped                  |
//! | warn 1 bits 0-5, warn 2 bits 0-7 | cell, total voltage, current, temperature, low power warnings | unmapped (warnings) |
//!
//! The sources disagree on the balance bytes: the document gives balance
//! state 1 to cells 1-8 and state 2 to cells 9-16; a published reader
//! takes the two bytes as one big-endian word (state 1 for cells 9-16).
//! Which cell balances cannot be told for sure, so none is reported.
//!
//! # Mapping into a reading
//!
//! Cells mV / 1000, the four cell temperatures (MOSFET and environment
//! kept apart), current × 0.01 A, voltage mV / 1000, SoC remaining over
//! full capacity (a full capacity of 0, or a remaining one above it, is
//! an error). SoH: the pack sends none, so absent: full over design
//! capacity is no health figure it states (a captured pack reports a
//! full capacity above its design capacity).

use packgate_protocol::{AlarmFlags, BalancingState, PackReading};

use super::codec::{decode_reply, CID2_ALARM_INFO, CID2_ANALOG_VALUE};
use super::info::{
    alarm_tail_refusal, check_cells, temperature_c_with_offset, user_defined_refusal, LimitState,
    Reader,
};
use super::layout::PylonAsciiLayout;
use super::reading::{cell_temperatures_c, cell_voltages_v, check_reply_counts};
use crate::bms::FrameError;
use crate::{DeviceException, DriverError};

/// Pace's temperature offset: 0.1 K above 2730.
pub const PACE_KELVIN_OFFSET_DK: i16 = 2730;
/// The user-defined number P of a Pace analog reply.
pub const PACE_USER_DEFINED_ITEMS: u8 = 3;
/// Temperatures of a Pace pack: four cells, MOSFET, environment.
pub const PACE_TEMPERATURES: usize = 6;
/// Most cells of the layout (its balance bytes cover 16).
pub const PACE_MAX_CELLS: usize = 16;
/// Bytes of a warn reply after the temperature states.
pub const PACE_ALARM_TAIL: usize = 12;

/// Protect state 1: each bit that raises a flag.
pub const PROTECT1_MAPPING: &[(u8, AlarmFlags)] = &[
    (1 << 0, AlarmFlags::CELL_OVER_VOLTAGE),
    (1 << 1, AlarmFlags::CELL_UNDER_VOLTAGE),
    (1 << 2, AlarmFlags::PACK_OVER_VOLTAGE),
    (1 << 3, AlarmFlags::PACK_UNDER_VOLTAGE),
    (1 << 4, AlarmFlags::CHARGE_OVER_CURRENT),
    (1 << 5, AlarmFlags::DISCHARGE_OVER_CURRENT),
    (1 << 6, AlarmFlags::SHORT_CIRCUIT),
];
/// Protect state 2: each bit that raises a flag.
pub const PROTECT2_MAPPING: &[(u8, AlarmFlags)] = &[
    (1 << 0, AlarmFlags::OVER_TEMPERATURE),
    (1 << 1, AlarmFlags::OVER_TEMPERATURE),
    (1 << 2, AlarmFlags::UNDER_TEMPERATURE),
    (1 << 3, AlarmFlags::UNDER_TEMPERATURE),
    (1 << 4, AlarmFlags::OVER_TEMPERATURE),
    (1 << 5, AlarmFlags::OVER_TEMPERATURE),
    (1 << 6, AlarmFlags::UNDER_TEMPERATURE),
];
/// Fault state bits that raise [`AlarmFlags::BMS_FAULT`].
pub const FAULT_BITS: u8 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 4) | (1 << 5);
/// Instruction state bit 1: charge MOSFET on.
pub const INSTRUCTION_CHARGE_MOSFET: u8 = 1 << 1;
/// Instruction state bit 2: discharge MOSFET on.
pub const INSTRUCTION_DISCHARGE_MOSFET: u8 = 1 << 2;
/// Instruction state bit 4: reverse connection indicated.
pub const INSTRUCTION_REVERSE: u8 = 1 << 4;

/// A Pace `0x42` reply, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaceAnalog {
    /// INFOFLAG; informative.
    pub info_flag: u8,
    /// COMMAND value echoed; informative.
    pub command_value: u8,
    /// Cell voltages, millivolts, cell 1 first.
    pub cell_voltages_mv: Vec<u16>,
    /// Temperatures, 0.1 K above 2730: cells 1-4, MOSFET, environment.
    pub temperatures_dk: Vec<i16>,
    /// Pack current, 10 mA, positive while charging.
    pub current_10ma: i16,
    /// Pack total voltage, millivolts.
    pub pack_voltage_mv: u16,
    /// Remaining capacity, 10 mAh.
    pub remaining_capacity_10mah: u16,
    /// Full capacity, 10 mAh.
    pub full_capacity_10mah: u16,
    /// Charge cycles.
    pub cycles: u16,
    /// Design capacity, 10 mAh.
    pub design_capacity_10mah: u16,
}

fn check_counts(cells: usize, sensors: usize) -> Result<(), FrameError> {
    if cells > PACE_MAX_CELLS {
        return Err(FrameError::Malformed(format!(
            "{cells} cells; the Pace layout has at most {PACE_MAX_CELLS}"
        )));
    }
    if sensors != PACE_TEMPERATURES {
        return Err(FrameError::Malformed(format!(
            "{sensors} temperatures; the Pace layout has {PACE_TEMPERATURES}"
        )));
    }
    Ok(())
}

/// Decodes a Pace `0x42` reply's INFO, refusing another layout (by its
/// user-defined number) and impossible values.
pub fn decode_pace_analog(info: &[u8]) -> Result<PaceAnalog, FrameError> {
    let mut r = Reader::new(info);
    let info_flag = r.u8("INFOFLAG")?;
    let command_value = r.u8("COMMAND value")?;
    let cells = r.u8("cell count")?;
    let cell_voltages_mv = (0..cells)
        .map(|_| r.u16("cell voltage"))
        .collect::<Result<Vec<_>, _>>()?;
    let sensors = r.u8("temperature count")?;
    let temperatures_dk = (0..sensors)
        .map(|_| r.u16("temperature").map(|t| t as i16))
        .collect::<Result<Vec<_>, _>>()?;
    let current_10ma = r.u16("pack current")? as i16;
    let pack_voltage_mv = r.u16("pack total voltage")?;
    let remaining_capacity_10mah = r.u16("remaining capacity")?;
    let user_defined = r.u8("user-defined number")?;
    if user_defined != PACE_USER_DEFINED_ITEMS {
        return Err(user_defined_refusal(
            PylonAsciiLayout::Pace,
            user_defined,
            "3",
        ));
    }
    check_counts(cell_voltages_mv.len(), temperatures_dk.len())?;
    check_cells(&cell_voltages_mv)?;
    for t in &temperatures_dk {
        temperature_c_with_offset(*t, PACE_KELVIN_OFFSET_DK)?;
    }
    let full_capacity_10mah = r.u16("full capacity")?;
    let cycles = r.u16("cycles")?;
    let design_capacity_10mah = r.u16("design capacity")?;
    r.finish()?;
    if full_capacity_10mah == 0 || remaining_capacity_10mah > full_capacity_10mah {
        return Err(FrameError::Malformed(format!(
            "remaining capacity {remaining_capacity_10mah} of a full capacity of {full_capacity_10mah} (10 mAh)"
        )));
    }
    Ok(PaceAnalog {
        info_flag,
        command_value,
        cell_voltages_mv,
        temperatures_dk,
        current_10ma,
        pack_voltage_mv,
        remaining_capacity_10mah,
        full_capacity_10mah,
        cycles,
        design_capacity_10mah,
    })
}

impl PaceAnalog {
    /// State of charge, percent: remaining over full capacity (checked
    /// by the decoder: full not zero, remaining not above it).
    pub fn soc_pct(&self) -> f32 {
        if self.full_capacity_10mah == 0 {
            return 0.0;
        }
        (f64::from(self.remaining_capacity_10mah) * 100.0 / f64::from(self.full_capacity_10mah))
            .clamp(0.0, 100.0) as f32
    }

    /// The MOSFET temperature, °C.
    pub fn mosfet_temperature_c(&self) -> Option<f32> {
        self.temperature(PACE_TEMPERATURES - 2)
    }

    /// The environment temperature, °C.
    pub fn environment_temperature_c(&self) -> Option<f32> {
        self.temperature(PACE_TEMPERATURES - 1)
    }

    fn temperature(&self, index: usize) -> Option<f32> {
        self.temperatures_dk
            .get(index)
            .and_then(|t| temperature_c_with_offset(*t, PACE_KELVIN_OFFSET_DK).ok())
    }
}

/// A Pace `0x44` reply, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaceAlarm {
    /// INFOFLAG; informative.
    pub info_flag: u8,
    /// COMMAND value echoed; informative.
    pub command_value: u8,
    /// Each cell's state, cell 1 first.
    pub cell_states: Vec<LimitState>,
    /// Each temperature's state: cells 1-4, MOSFET, environment.
    pub temperature_states: Vec<LimitState>,
    /// Charge current state.
    pub charge_current_state: LimitState,
    /// Total voltage state.
    pub pack_voltage_state: LimitState,
    /// Discharge current state.
    pub discharge_current_state: LimitState,
    /// Protect state 1.
    pub protect1: u8,
    /// Protect state 2.
    pub protect2: u8,
    /// Instruction state (switches, indications).
    pub instruction: u8,
    /// Control state (settings).
    pub control: u8,
    /// Fault state.
    pub fault: u8,
    /// Balance states 1 and 2, as sent (not reported: see the module).
    pub balance: [u8; 2],
    /// Warn states 1 and 2.
    pub warn: [u8; 2],
}

/// Decodes a Pace `0x44` reply's INFO.
pub fn decode_pace_alarm(info: &[u8]) -> Result<PaceAlarm, FrameError> {
    let mut r = Reader::new(info);
    let info_flag = r.u8("INFOFLAG")?;
    let command_value = r.u8("COMMAND value")?;
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
    if tail != PACE_ALARM_TAIL {
        return Err(alarm_tail_refusal(
            PylonAsciiLayout::Pace,
            tail,
            format!(
                "{tail} bytes after the temperature states; the Pace layout has {PACE_ALARM_TAIL}"
            ),
        ));
    }
    check_counts(cell_states.len(), temperature_states.len())?;
    let b = r.bytes(PACE_ALARM_TAIL, "warn states")?;
    Ok(PaceAlarm {
        info_flag,
        command_value,
        cell_states,
        temperature_states,
        charge_current_state: LimitState::from_code(b[0]),
        pack_voltage_state: LimitState::from_code(b[1]),
        discharge_current_state: LimitState::from_code(b[2]),
        protect1: b[3],
        protect2: b[4],
        instruction: b[5],
        control: b[6],
        fault: b[7],
        balance: [b[8], b[9]],
        warn: [b[10], b[11]],
    })
}

impl PaceAlarm {
    /// The active protections and faults as packgate flags.
    pub fn alarm_flags(&self) -> AlarmFlags {
        let bits = |byte: u8, mapping: &[(u8, AlarmFlags)]| {
            mapping
                .iter()
                .filter(|(bit, _)| byte & bit != 0)
                .fold(AlarmFlags::NONE, |acc, (_, flag)| acc.union(*flag))
        };
        let other_fault = self
            .cell_states
            .iter()
            .chain(&self.temperature_states)
            .chain([
                &self.charge_current_state,
                &self.pack_voltage_state,
                &self.discharge_current_state,
            ])
            .any(|s| *s == LimitState::OtherError);
        let faulted = other_fault
            || self.fault & FAULT_BITS != 0
            || self.instruction & INSTRUCTION_REVERSE != 0;
        let fault = if faulted {
            AlarmFlags::BMS_FAULT
        } else {
            AlarmFlags::NONE
        };
        bits(self.protect1, PROTECT1_MAPPING)
            .union(bits(self.protect2, PROTECT2_MAPPING))
            .union(fault)
    }

    /// Whether the charge MOSFET is on.
    pub fn charge_mosfet_on(&self) -> bool {
        self.instruction & INSTRUCTION_CHARGE_MOSFET != 0
    }

    /// Whether the discharge MOSFET is on.
    pub fn discharge_mosfet_on(&self) -> bool {
        self.instruction & INSTRUCTION_DISCHARGE_MOSFET != 0
    }
}

/// The `0x42` reply of the Pace pack at `address`, decoded.
pub fn decode_pace_analog_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<PaceAnalog, DeviceException>, FrameError> {
    decode_reply(frames, address, CID2_ANALOG_VALUE, decode_pace_analog)
}

/// The `0x44` reply of the Pace pack at `address`, decoded.
pub fn decode_pace_alarm_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<PaceAlarm, DeviceException>, FrameError> {
    decode_reply(frames, address, CID2_ALARM_INFO, decode_pace_alarm)
}

/// One poll's reading from a Pace pack's `0x42` and `0x44` replies,
/// which must agree on the cell and temperature counts.
pub fn pace_pack_reading(
    analog: &PaceAnalog,
    alarm: &PaceAlarm,
) -> Result<PackReading, DriverError> {
    let cells = analog.cell_voltages_mv.len();
    check_reply_counts(
        ("analog information", "warn information"),
        (cells, analog.temperatures_dk.len()),
        (alarm.cell_states.len(), alarm.temperature_states.len()),
    )?;
    let temperatures_c = cell_temperatures_c(&analog.temperatures_dk, PACE_KELVIN_OFFSET_DK)?;
    Ok(PackReading {
        pack_voltage_v: f32::from(analog.pack_voltage_mv) / 1000.0,
        current_a: f32::from(analog.current_10ma) / 100.0,
        soc_pct: analog.soc_pct(),
        soh_pct: None,
        cell_voltages_v: cell_voltages_v(&analog.cell_voltages_mv),
        temperatures_c,
        balancing: BalancingState(0),
        alarms: alarm.alarm_flags(),
        charge_enabled: alarm.charge_mosfet_on(),
        discharge_enabled: alarm.discharge_mosfet_on(),
    })
}
