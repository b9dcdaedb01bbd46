//! The pure codec: request frames, the reply framing and the typed data
//! of each reply. No I/O.

use crate::bms::{FrameError, FrameStatus, Framing};
use crate::DeviceException;

/// First byte of every frame.
pub const START: u8 = 0xA5;
/// Every frame's length: start, address, data id, length, 8 data bytes,
/// checksum.
pub const FRAME_LEN: usize = 13;
/// The length byte of every frame.
pub const DATA_LEN: u8 = 8;
/// The address a BMS answers from.
pub const BMS_ADDRESS: u8 = 0x01;
/// The host ("upper computer") address on the UART and RS-485 ports.
pub const HOST_ADDRESS_UART: u8 = 0x40;
/// The host address some boards expect instead.
pub const HOST_ADDRESS_ALTERNATE: u8 = 0x80;
/// Pack voltage, current, SoC.
pub const CMD_PACK_STATUS: u8 = 0x90;
/// Highest and lowest cell voltage.
pub const CMD_CELL_EXTREMES: u8 = 0x91;
/// Highest and lowest temperature.
pub const CMD_TEMPERATURE_EXTREMES: u8 = 0x92;
/// Charge state, MOSFETs, remaining capacity.
pub const CMD_SWITCHES: u8 = 0x93;
/// Cell and sensor counts, charger and load, I/O, cycles.
pub const CMD_SYSTEM_STATUS: u8 = 0x94;
/// Cell voltages, three a frame.
pub const CMD_CELL_VOLTAGES: u8 = 0x95;
/// Temperatures, seven a frame.
pub const CMD_TEMPERATURES: u8 = 0x96;
/// Balancing bits.
pub const CMD_BALANCING: u8 = 0x97;
/// Failure (alarm) bits.
pub const CMD_FAILURES: u8 = 0x98;
/// Cell voltages in one `0x95` frame.
pub const CELLS_PER_FRAME: usize = 3;
/// Temperatures in one `0x96` frame.
pub const TEMPERATURES_PER_FRAME: usize = 7;
/// Most cells a Daly BMS reports; a count above is an error.
pub const MAX_CELLS: usize = 48;
/// Most temperature sensors; a count above is an error.
pub const MAX_TEMPERATURE_SENSORS: usize = 16;
/// The current's offset: raw 30000 is 0 A.
pub const CURRENT_OFFSET_DA: i32 = 30_000;
/// The temperatures' offset: raw 40 is 0 °C.
pub const TEMPERATURE_OFFSET_C: i16 = 40;
/// A cell reading above this, millivolts, is no cell: an error.
pub const MAX_CELL_MV: u16 = 10_000;
/// A temperature above this, °C, is no sensor of a pack (raw 0xFF reads
/// 215 °C): an error.
pub const MAX_TEMPERATURE_C: i16 = 150;

/// The low byte of the sum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

/// A read request for `command` from host address `host_address`: eight
/// zero data bytes.
pub fn encode_request(host_address: u8, command: u8) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[..4].copy_from_slice(&[START, host_address, command, DATA_LEN]);
    frame[FRAME_LEN - 1] = checksum(&frame[..FRAME_LEN - 1]);
    frame
}

/// The reply framing: 13 bytes, the length byte 8, the checksum last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DalyFraming;

impl Framing for DalyFraming {
    const START: u8 = START;
    const MAX_LEN: usize = FRAME_LEN;

    fn frame_len(buf: &[u8]) -> FrameStatus {
        match check_frame(buf) {
            Ok(true) => FrameStatus::Complete(FRAME_LEN),
            Ok(false) => FrameStatus::Incomplete,
            Err(e) => FrameStatus::Invalid(e),
        }
    }
}

/// Whether `buf` holds one whole good frame (`false`: not yet whole).
fn check_frame(buf: &[u8]) -> Result<bool, FrameError> {
    if buf.first() != Some(&START) {
        return Err(FrameError::Malformed(
            "frame does not begin with 0xA5".into(),
        ));
    }
    if let Some(len) = buf.get(3).filter(|len| **len != DATA_LEN) {
        return Err(FrameError::Malformed(format!(
            "length byte {len}, every frame has {DATA_LEN}"
        )));
    }
    let Some(frame) = buf.get(..FRAME_LEN) else {
        return Ok(false);
    };
    let computed = checksum(&frame[..FRAME_LEN - 1]);
    let received = frame[FRAME_LEN - 1];
    if computed != received {
        return Err(FrameError::Checksum {
            computed: u32::from(computed),
            received: u32::from(received),
        });
    }
    Ok(true)
}

/// One frame's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DalyFrame {
    /// The sender's address (0x01 from a BMS).
    pub address: u8,
    /// The data id (command).
    pub command: u8,
    /// The data bytes.
    pub data: [u8; 8],
}

/// Splits one whole frame (13 bytes exactly) into its fields, checking
/// the start, length byte and checksum.
pub fn parse_frame(bytes: &[u8]) -> Result<DalyFrame, FrameError> {
    if !check_frame(bytes)? {
        return Err(FrameError::Short {
            got: bytes.len(),
            expected: FRAME_LEN,
        });
    }
    if bytes.len() != FRAME_LEN {
        return Err(FrameError::Malformed(format!(
            "{} bytes, a frame has {FRAME_LEN}",
            bytes.len()
        )));
    }
    let mut data = [0u8; 8];
    data.copy_from_slice(&bytes[4..12]);
    Ok(DalyFrame {
        address: bytes[1],
        command: bytes[2],
        data,
    })
}

/// The data of a BMS's reply to `command`: another sender (our own
/// request echoed, say) is [`FrameError::WrongAddress`], another data id
/// [`FrameError::Unexpected`].
pub fn reply_data(bytes: &[u8], command: u8) -> Result<[u8; 8], FrameError> {
    let frame = parse_frame(bytes)?;
    if frame.address != BMS_ADDRESS {
        return Err(FrameError::WrongAddress {
            expected: BMS_ADDRESS,
            found: frame.address,
        });
    }
    if frame.command != command {
        return Err(FrameError::Unexpected(format!(
            "data id {:#04x}, asked {command:#04x}",
            frame.command
        )));
    }
    Ok(frame.data)
}

/// The data of the only frame of a one-frame reply.
fn single(frames: &[Vec<u8>], command: u8) -> Result<[u8; 8], FrameError> {
    match frames {
        [frame] => reply_data(frame, command),
        _ => Err(FrameError::Malformed(format!(
            "{} frames where one reply belongs",
            frames.len()
        ))),
    }
}

fn be16(data: &[u8; 8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// `0x90`: the pack's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackStatus {
    /// Cumulative (pack) voltage, 0.1 V.
    pub pack_voltage_dv: u16,
    /// Acquired (gathered) voltage, 0.1 V; informative.
    pub acquired_voltage_dv: u16,
    /// Current, 0.1 A, positive while charging (raw − 30000).
    pub current_da: i32,
    /// State of charge, 0.1 %.
    pub soc_permille: u16,
}

/// Decodes a `0x90` reply; a SoC above 100.0 % is an error.
pub fn decode_pack_status(frames: &[Vec<u8>]) -> Result<PackStatus, FrameError> {
    let d = single(frames, CMD_PACK_STATUS)?;
    let soc_permille = be16(&d, 6);
    if soc_permille > 1000 {
        return Err(FrameError::Malformed(format!("SoC reads {soc_permille} ‰")));
    }
    Ok(PackStatus {
        pack_voltage_dv: be16(&d, 0),
        acquired_voltage_dv: be16(&d, 2),
        current_da: i32::from(be16(&d, 4)) - CURRENT_OFFSET_DA,
        soc_permille,
    })
}

/// `0x91`: the highest and lowest cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellExtremes {
    /// Highest cell voltage, mV.
    pub max_cell_mv: u16,
    /// Its cell number, from 1.
    pub max_cell: u8,
    /// Lowest cell voltage, mV.
    pub min_cell_mv: u16,
    /// Its cell number, from 1.
    pub min_cell: u8,
}

/// Decodes a `0x91` reply.
pub fn decode_cell_extremes(frames: &[Vec<u8>]) -> Result<CellExtremes, FrameError> {
    let d = single(frames, CMD_CELL_EXTREMES)?;
    Ok(CellExtremes {
        max_cell_mv: be16(&d, 0),
        max_cell: d[2],
        min_cell_mv: be16(&d, 3),
        min_cell: d[5],
    })
}

/// `0x92`: the highest and lowest temperature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemperatureExtremes {
    /// Highest temperature, °C.
    pub max_c: i16,
    /// Its sensor number, from 1.
    pub max_sensor: u8,
    /// Lowest temperature, °C.
    pub min_c: i16,
    /// Its sensor number, from 1.
    pub min_sensor: u8,
}

/// Decodes a `0x92` reply.
pub fn decode_temperature_extremes(frames: &[Vec<u8>]) -> Result<TemperatureExtremes, FrameError> {
    let d = single(frames, CMD_TEMPERATURE_EXTREMES)?;
    Ok(TemperatureExtremes {
        max_c: i16::from(d[0]) - TEMPERATURE_OFFSET_C,
        max_sensor: d[1],
        min_c: i16::from(d[2]) - TEMPERATURE_OFFSET_C,
        min_sensor: d[3],
    })
}

/// What the pack is doing (`0x93` byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChargeState {
    /// 0: stationary.
    Idle,
    /// 1: charging.
    Charging,
    /// 2: discharging.
    Discharging,
    /// A code the document does not define.
    Unknown(u8),
}

/// `0x93`: charge state, switches, remaining capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    /// Charging, discharging or idle, as the BMS sees it.
    pub state: ChargeState,
    /// Whether the charge MOSFET is on.
    pub charge_mosfet_on: bool,
    /// Whether the discharge MOSFET is on.
    pub discharge_mosfet_on: bool,
    /// The BMS's life counter (0-255, wraps).
    pub bms_life_cycles: u8,
    /// Remaining capacity, mAh.
    pub remaining_capacity_mah: u32,
}

fn switch(byte: u8, what: &str) -> Result<bool, FrameError> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(FrameError::Malformed(format!("{what} state {other}"))),
    }
}

/// Decodes a `0x93` reply; a MOSFET state other than 0 or 1 is an error.
pub fn decode_switches(frames: &[Vec<u8>]) -> Result<Switches, FrameError> {
    let d = single(frames, CMD_SWITCHES)?;
    Ok(Switches {
        state: match d[0] {
            0 => ChargeState::Idle,
            1 => ChargeState::Charging,
            2 => ChargeState::Discharging,
            other => ChargeState::Unknown(other),
        },
        charge_mosfet_on: switch(d[1], "charge MOSFET")?,
        discharge_mosfet_on: switch(d[2], "discharge MOSFET")?,
        bms_life_cycles: d[3],
        remaining_capacity_mah: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
    })
}

/// `0x94`: counts and states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemStatus {
    /// Series cells.
    pub cells: u8,
    /// Temperature sensors.
    pub temperature_sensors: u8,
    /// Whether a charger is connected.
    pub charger_connected: bool,
    /// Whether a load is connected.
    pub load_connected: bool,
    /// DI1-DI4 (bits 0-3) and DO1-DO4 (bits 4-7).
    pub io_bits: u8,
    /// Charge / discharge cycles.
    pub cycles: u16,
}

/// Decodes a `0x94` reply; more than [`MAX_CELLS`] cells or
/// [`MAX_TEMPERATURE_SENSORS`] sensors is an error.
pub fn decode_system_status(frames: &[Vec<u8>]) -> Result<SystemStatus, FrameError> {
    let d = single(frames, CMD_SYSTEM_STATUS)?;
    if usize::from(d[0]) > MAX_CELLS || usize::from(d[1]) > MAX_TEMPERATURE_SENSORS {
        return Err(FrameError::Malformed(format!(
            "{} cells and {} sensors (at most {MAX_CELLS} and {MAX_TEMPERATURE_SENSORS})",
            d[0], d[1]
        )));
    }
    Ok(SystemStatus {
        cells: d[0],
        temperature_sensors: d[1],
        charger_connected: d[2] != 0,
        load_connected: d[3] != 0,
        io_bits: d[4],
        cycles: be16(&d, 5),
    })
}

/// Frames a `0x95` reply has for `cells` cells.
pub fn cell_voltage_frames(cells: usize) -> usize {
    cells.div_ceil(CELLS_PER_FRAME)
}

/// Frames a `0x96` reply has for `sensors` sensors.
pub fn temperature_frames(sensors: usize) -> usize {
    sensors.div_ceil(TEMPERATURES_PER_FRAME)
}

/// The payloads (data bytes after the frame number) of a multi-frame
/// reply, in frame-number order. The frames may come in any order; a
/// frame number out of range, repeated or missing is an error, never a
/// shifted list.
fn series(frames: &[Vec<u8>], command: u8, expected: usize) -> Result<Vec<[u8; 7]>, FrameError> {
    if frames.len() != expected {
        return Err(FrameError::Malformed(format!(
            "{} frames, {expected} expected",
            frames.len()
        )));
    }
    let mut slots: Vec<Option<[u8; 7]>> = vec![None; expected];
    for frame in frames {
        let data = reply_data(frame, command)?;
        let number = usize::from(data[0]);
        let slot = number
            .checked_sub(1)
            .and_then(|i| slots.get_mut(i))
            .ok_or_else(|| FrameError::Malformed(format!("frame number {number} of {expected}")))?;
        if slot.is_some() {
            return Err(FrameError::Malformed(format!(
                "frame number {number} twice"
            )));
        }
        let mut payload = [0u8; 7];
        payload.copy_from_slice(&data[1..]);
        *slot = Some(payload);
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            slot.ok_or_else(|| FrameError::Malformed(format!("frame number {} missing", i + 1)))
        })
        .collect()
}

/// Decodes a `0x95` reply for `cells` cells (at most [`MAX_CELLS`]):
/// millivolts, cell 1 first; a cell above [`MAX_CELL_MV`] is an error.
pub fn decode_cell_voltages(frames: &[Vec<u8>], cells: usize) -> Result<Vec<u16>, FrameError> {
    if cells > MAX_CELLS {
        return Err(FrameError::Malformed(format!("{cells} cells")));
    }
    let payloads = series(frames, CMD_CELL_VOLTAGES, cell_voltage_frames(cells))?;
    let voltages: Vec<u16> = payloads
        .iter()
        .flat_map(|p| {
            (0..CELLS_PER_FRAME).map(move |i| u16::from_be_bytes([p[2 * i], p[2 * i + 1]]))
        })
        .take(cells)
        .collect();
    match voltages.iter().position(|mv| *mv > MAX_CELL_MV) {
        Some(i) => Err(FrameError::Malformed(format!(
            "cell {} reads {} mV",
            i + 1,
            voltages[i]
        ))),
        None => Ok(voltages),
    }
}

/// Decodes a `0x96` reply for `sensors` sensors (at most
/// [`MAX_TEMPERATURE_SENSORS`]): °C, sensor 1 first; above
/// [`MAX_TEMPERATURE_C`] is an error.
pub fn decode_temperatures(frames: &[Vec<u8>], sensors: usize) -> Result<Vec<i16>, FrameError> {
    if sensors > MAX_TEMPERATURE_SENSORS {
        return Err(FrameError::Malformed(format!("{sensors} sensors")));
    }
    let payloads = series(frames, CMD_TEMPERATURES, temperature_frames(sensors))?;
    let temperatures: Vec<i16> = payloads
        .iter()
        .flat_map(|p| p.iter().map(|raw| i16::from(*raw) - TEMPERATURE_OFFSET_C))
        .take(sensors)
        .collect();
    match temperatures.iter().position(|c| *c > MAX_TEMPERATURE_C) {
        Some(i) => Err(FrameError::Malformed(format!(
            "sensor {} reads {} °C",
            i + 1,
            temperatures[i]
        ))),
        None => Ok(temperatures),
    }
}

/// Decodes a `0x97` reply: bit `n` is cell `n + 1` (bit 0 of byte 0 is
/// cell 1).
pub fn decode_balancing(frames: &[Vec<u8>]) -> Result<u64, FrameError> {
    Ok(u64::from_le_bytes(single(frames, CMD_BALANCING)?))
}

/// `0x98`: the failure bits and the fault code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failures {
    /// Bytes 0-6; bit `n` of the whole is bit `n % 8` of byte `n / 8`
    /// (see the module's table).
    pub bits: [u8; 7],
    /// Byte 7: the fault code (0: none).
    pub fault_code: u8,
}

impl Failures {
    /// Whether failure bit `index` (byte × 8 + bit) is set.
    pub fn is_set(&self, index: usize) -> bool {
        self.bits
            .get(index / 8)
            .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
    }
}

/// Decodes a `0x98` reply.
pub fn decode_failures(frames: &[Vec<u8>]) -> Result<Failures, FrameError> {
    let d = single(frames, CMD_FAILURES)?;
    let mut bits = [0u8; 7];
    bits.copy_from_slice(&d[..7]);
    Ok(Failures {
        bits,
        fault_code: d[7],
    })
}

/// A decoder's result as the serial link takes it: Daly has no refusal
/// frame, so the inner result is always `Ok`.
pub fn no_refusal<T>(
    decoded: Result<T, FrameError>,
) -> Result<Result<T, DeviceException>, FrameError> {
    decoded.map(Ok)
}
