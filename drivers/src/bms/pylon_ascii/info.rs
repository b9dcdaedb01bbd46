//! The typed INFO of the analog value (`0x42`), alarm (`0x44`) and
//! serial number (`0x93`) replies, and the replies decoded whole.

use super::codec::{decode_reply, CID2_ALARM_INFO, CID2_ANALOG_VALUE, CID2_SERIAL_NUMBER};
use super::layout::PylonAsciiLayout;
use crate::bms::FrameError;
use crate::DeviceException;

/// Characters of the module serial number in a `0x93` reply.
pub const SERIAL_NUMBER_LEN: usize = 16;
/// A cell reading above this, millivolts, is no cell (`0xFFFF` is the
/// usual "not measured"): an error, never a number.
pub const MAX_CELL_MV: u16 = 10_000;
/// Offset of the temperatures: 0.1 K above absolute zero as the document
/// counts it (°C = (raw − 2731) / 10).
pub const KELVIN_OFFSET_DK: i16 = 2731;
/// Temperatures a sensor of a pack can read, °C; outside is an error.
pub const PLAUSIBLE_TEMPERATURE_C: (f32, f32) = (-100.0, 250.0);

/// Reads INFO fields in order; a field past the end is malformed (the
/// frame was whole, so its INFO is simply too short for its counts).
#[derive(Debug)]
pub(super) struct Reader<'a> {
    info: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(info: &'a [u8]) -> Self {
        Self { info, at: 0 }
    }

    pub(super) fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], FrameError> {
        let end = self.at.saturating_add(n);
        let field = self.info.get(self.at..end).ok_or_else(|| {
            FrameError::Malformed(format!(
                "{what} at INFO byte {} past its end ({} bytes)",
                self.at,
                self.info.len()
            ))
        })?;
        self.at = end;
        Ok(field)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, FrameError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(super) fn u16(&mut self, what: &str) -> Result<u16, FrameError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u24(&mut self, what: &str) -> Result<u32, FrameError> {
        let b = self.bytes(3, what)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(super) fn remaining(&self) -> usize {
        self.info.len().saturating_sub(self.at)
    }

    pub(super) fn finish(&self) -> Result<(), FrameError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(FrameError::Malformed(format!(
                "{n} INFO bytes past the last field"
            ))),
        }
    }
}

/// The `0x42` reply: the pack's measurements, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalogValues {
    /// DATAFLAG (unread switch or alarm changes); informative.
    pub data_flag: u8,
    /// The command value echoed: the pack's address.
    pub command_value: u8,
    /// Cell voltages, millivolts, cell 1 first.
    pub cell_voltages_mv: Vec<u16>,
    /// Temperatures, 0.1 K from the document's zero (see
    /// [`KELVIN_OFFSET_DK`]): the BMS board first, then the cell groups.
    pub temperatures_dk: Vec<i16>,
    /// Pack current, 100 mA, positive while charging.
    pub current_100ma: i16,
    /// Pack voltage, millivolts.
    pub pack_voltage_mv: u16,
    /// Remaining capacity, mAh (the 24-bit field where the pack sends
    /// four user-defined items).
    pub remaining_capacity_mah: u32,
    /// Total (full) capacity, mAh, likewise.
    pub total_capacity_mah: u32,
    /// Charge cycles.
    pub cycles: u16,
}

/// The refusal of a `0x42` reply, read as `layout`, with `count`
/// user-defined items where the layout has `expected`: the layout it
/// looks like where another has that count, malformed otherwise.
pub(super) fn user_defined_refusal(
    layout: PylonAsciiLayout,
    count: u8,
    expected: &str,
) -> FrameError {
    let seen = format!("user-defined count {count}");
    match PylonAsciiLayout::by_user_defined_count(count) {
        Some(other) if other != layout => layout.mismatch(other, &seen),
        _ => FrameError::Malformed(format!(
            "{seen}; the {} layout has {expected}",
            layout.vendor()
        )),
    }
}

/// The refusal of a `0x44` reply, read as `layout`, with `tail` INFO
/// bytes after the temperature states that its layout does not have:
/// the layout it looks like where another has that many, `malformed`
/// otherwise.
pub(super) fn alarm_tail_refusal(
    layout: PylonAsciiLayout,
    tail: usize,
    malformed: String,
) -> FrameError {
    match PylonAsciiLayout::by_alarm_tail_len(tail) {
        Some(other) if other != layout => layout.mismatch(
            other,
            &format!("{tail} alarm bytes after the temperature states"),
        ),
        _ => FrameError::Malformed(malformed),
    }
}

/// Refuses a cell above [`MAX_CELL_MV`], naming it.
pub(super) fn check_cells(cell_voltages_mv: &[u16]) -> Result<(), FrameError> {
    match cell_voltages_mv
        .iter()
        .enumerate()
        .find(|(_, mv)| **mv > MAX_CELL_MV)
    {
        Some((i, mv)) => Err(FrameError::Malformed(format!(
            "cell {} reads {mv} mV",
            i + 1
        ))),
        None => Ok(()),
    }
}

/// Converts one temperature to °C, refusing what no sensor reads.
pub fn temperature_c(raw_dk: i16) -> Result<f32, FrameError> {
    temperature_c_with_offset(raw_dk, KELVIN_OFFSET_DK)
}

/// Converts one temperature sent as 0.1 K above `offset_dk` (2731 for
/// Pylontech and Seplos, 2730 for Pace) to °C, refusing what no sensor
/// reads.
pub fn temperature_c_with_offset(raw_dk: i16, offset_dk: i16) -> Result<f32, FrameError> {
    let c = f32::from(raw_dk.wrapping_sub(offset_dk)) / 10.0;
    let (min, max) = PLAUSIBLE_TEMPERATURE_C;
    if (min..=max).contains(&c) {
        Ok(c)
    } else {
        Err(FrameError::Malformed(format!(
            "temperature reads {c} °C (raw {raw_dk})"
        )))
    }
}

/// Decodes a `0x42` reply's INFO, refusing impossible values: a cell
/// above [`MAX_CELL_MV`], a temperature outside
/// [`PLAUSIBLE_TEMPERATURE_C`], a total capacity of zero or a remaining
/// capacity above it, a user-defined item count other than 2 or 4.
pub fn decode_analog_values(info: &[u8]) -> Result<AnalogValues, FrameError> {
    let mut r = Reader::new(info);
    let data_flag = r.u8("DATAFLAG")?;
    let command_value = r.u8("command value")?;
    let cells = r.u8("cell count")?;
    let cell_voltages_mv = (0..cells)
        .map(|_| r.u16("cell voltage"))
        .collect::<Result<Vec<_>, _>>()?;
    check_cells(&cell_voltages_mv)?;
    let sensors = r.u8("temperature count")?;
    let temperatures_dk = (0..sensors)
        .map(|_| r.u16("temperature").map(|t| t as i16))
        .collect::<Result<Vec<_>, _>>()?;
    for t in &temperatures_dk {
        temperature_c(*t)?;
    }
    let current_100ma = r.u16("current")? as i16;
    let pack_voltage_mv = r.u16("pack voltage")?;
    let remaining_16 = r.u16("remaining capacity")?;
    let user_defined = r.u8("user-defined item count")?;
    let total_16 = r.u16("total capacity")?;
    let cycles = r.u16("cycle count")?;
    let (remaining_capacity_mah, total_capacity_mah) = match user_defined {
        2 => (u32::from(remaining_16), u32::from(total_16)),
        4 => (
            r.u24("remaining capacity (24 bit)")?,
            r.u24("total capacity (24 bit)")?,
        ),
        n => {
            return Err(user_defined_refusal(
                PylonAsciiLayout::Pylontech,
                n,
                "2 or 4",
            ))
        }
    };
    r.finish()?;
    if total_capacity_mah == 0 || remaining_capacity_mah > total_capacity_mah {
        return Err(FrameError::Malformed(format!(
            "remaining capacity {remaining_capacity_mah} mAh of a total of {total_capacity_mah} mAh"
        )));
    }
    Ok(AnalogValues {
        data_flag,
        command_value,
        cell_voltages_mv,
        temperatures_dk,
        current_100ma,
        pack_voltage_mv,
        remaining_capacity_mah,
        total_capacity_mah,
        cycles,
    })
}

/// One value's state in a `0x44` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitState {
    /// `00`: normal.
    Normal,
    /// `01`: below the lower limit (the document: acts as protection).
    BelowLower,
    /// `02`: above the upper limit (acts as protection).
    AboveUpper,
    /// `F0`: another error.
    OtherError,
    /// A code the document does not define.
    Unknown(u8),
}

impl LimitState {
    /// The state of code `code`.
    pub fn from_code(code: u8) -> Self {
        match code {
            0x00 => LimitState::Normal,
            0x01 => LimitState::BelowLower,
            0x02 => LimitState::AboveUpper,
            0xF0 => LimitState::OtherError,
            other => LimitState::Unknown(other),
        }
    }

    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            LimitState::Normal => 0x00,
            LimitState::BelowLower => 0x01,
            LimitState::AboveUpper => 0x02,
            LimitState::OtherError => 0xF0,
            LimitState::Unknown(code) => code,
        }
    }
}

/// The `0x44` reply: each value's state and the status bytes, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmInfo {
    /// DATAFLAG; informative.
    pub data_flag: u8,
    /// The command value echoed: the pack's address.
    pub command_value: u8,
    /// Each cell's voltage state, cell 1 first.
    pub cell_states: Vec<LimitState>,
    /// Each temperature's state, the BMS board first.
    pub temperature_states: Vec<LimitState>,
    /// Charge current state.
    pub charge_current_state: LimitState,
    /// Pack voltage state.
    pub pack_voltage_state: LimitState,
    /// Discharge current state.
    pub discharge_current_state: LimitState,
    /// Status 1: protections (see the module's table).
    pub status1: u8,
    /// Status 2: switches (MOSFETs).
    pub status2: u8,
    /// Status 3: current flowing, heater, full, buzzer.
    pub status3: u8,
    /// Status 4 (cells 1-8 failed) and 5 (cells 9-16), bit 0 of status
    /// 4 being cell 1; `None` from packs older than protocol V2.5, which
    /// send three status bytes.
    pub cell_failure_bits: Option<u16>,
}

/// Decodes a `0x44` reply's INFO: three or five status bytes after the
/// states, nothing else.
pub fn decode_alarm_info(info: &[u8]) -> Result<AlarmInfo, FrameError> {
    let mut r = Reader::new(info);
    let data_flag = r.u8("DATAFLAG")?;
    let command_value = r.u8("command value")?;
    let cells = r.u8("cell count")?;
    let cell_states = r
        .bytes(usize::from(cells), "cell states")?
        .iter()
        .map(|c| LimitState::from_code(*c))
        .collect();
    let sensors = r.u8("temperature count")?;
    let temperature_states = r
        .bytes(usize::from(sensors), "temperature states")?
        .iter()
        .map(|c| LimitState::from_code(*c))
        .collect();
    let charge_current_state = LimitState::from_code(r.u8("charge current state")?);
    let pack_voltage_state = LimitState::from_code(r.u8("pack voltage state")?);
    let discharge_current_state = LimitState::from_code(r.u8("discharge current state")?);
    let status = r.bytes(r.remaining(), "status")?;
    let (status1, status2, status3, cell_failure_bits) = match *status {
        [s1, s2, s3] => (s1, s2, s3, None),
        [s1, s2, s3, s4, s5] => (s1, s2, s3, Some(u16::from_le_bytes([s4, s5]))),
        _ => {
            return Err(alarm_tail_refusal(
                PylonAsciiLayout::Pylontech,
                status.len() + 3,
                format!("{} status bytes; the layout has 3 or 5", status.len()),
            ))
        }
    };
    Ok(AlarmInfo {
        data_flag,
        command_value,
        cell_states,
        temperature_states,
        charge_current_state,
        pack_voltage_state,
        discharge_current_state,
        status1,
        status2,
        status3,
        cell_failure_bits,
    })
}

/// Decodes a `0x93` reply's INFO: the command value, then 16 ASCII
/// characters, NUL or space padded. Anything but printable ASCII is
/// malformed.
pub fn decode_serial_number(info: &[u8]) -> Result<String, FrameError> {
    let mut r = Reader::new(info);
    r.u8("command value")?;
    let chars = r.bytes(SERIAL_NUMBER_LEN, "serial number")?;
    r.finish()?;
    let end = chars
        .iter()
        .rposition(|c| *c != 0 && *c != b' ')
        .map_or(0, |i| i + 1);
    let text = &chars[..end];
    if text.iter().any(|c| !(0x20..0x7F).contains(c)) {
        return Err(FrameError::Malformed(
            "serial number is not printable ASCII".into(),
        ));
    }
    Ok(text.iter().map(|c| char::from(*c)).collect())
}

/// The command value a reply echoes must be the address asked.
fn check_command_value(found: u8, address: u8) -> Result<(), FrameError> {
    if found == address {
        Ok(())
    } else {
        Err(FrameError::Unexpected(format!(
            "reply for command value {found:#04x}, asked {address:#04x}"
        )))
    }
}

/// The `0x42` reply of the pack at `address`, decoded (see
/// [`reply_info`](super::codec::reply_info) and [`decode_analog_values`]).
pub fn decode_analog_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<AnalogValues, DeviceException>, FrameError> {
    decode_reply(frames, address, CID2_ANALOG_VALUE, |info| {
        let values = decode_analog_values(info)?;
        check_command_value(values.command_value, address)?;
        Ok(values)
    })
}

/// The `0x44` reply of the pack at `address`, decoded.
pub fn decode_alarm_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<AlarmInfo, DeviceException>, FrameError> {
    decode_reply(frames, address, CID2_ALARM_INFO, |info| {
        let alarm = decode_alarm_info(info)?;
        check_command_value(alarm.command_value, address)?;
        Ok(alarm)
    })
}

/// The `0x93` reply of the pack at `address`, decoded.
pub fn decode_serial_number_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<String, DeviceException>, FrameError> {
    decode_reply(frames, address, CID2_SERIAL_NUMBER, |info| {
        let serial_number = decode_serial_number(info)?;
        check_command_value(info.first().copied().unwrap_or(0), address)?;
        Ok(serial_number)
    })
}
