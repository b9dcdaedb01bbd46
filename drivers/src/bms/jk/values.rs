//! The id + value pairs of a read-all reply.

use super::*;

/// Length of the value after `id`, for every id of fixed length the
/// document defines; `None` for `79` (its own length byte follows) and
/// for ids it does not define.
pub fn value_len(id: u8) -> Option<usize> {
    Some(match id {
        0x85 | 0x86 | 0x9D | 0xA9 | 0xAB | 0xAC | 0xAE | 0xAF | 0xB1 | 0xB3 | 0xB8 | 0xC0 => 1,
        0xBB..=0xBD => 1,
        0x80..=0x84 | 0x87 | 0x8A..=0x8C | 0x8E..=0x9C | 0x9E..=0xA8 => 2,
        0xAD | 0xB0 | 0xBE | 0xBF => 2,
        0x89 | 0xAA | 0xB5 | 0xB6 | 0xB9 => 4,
        0xB4 => 8,
        0xB2 => 10,
        0xB7 => 15,
        0xBA => 24,
        _ => return None,
    })
}

/// A JK temperature in °C: 0 to 100 as they are, 101 to 140 for -1 to
/// -40; anything above is no temperature.
pub fn temperature_c(raw: u16) -> Option<i16> {
    match raw {
        0..=100 => Some(raw as i16),
        101..=140 => Some(100 - raw as i16),
        _ => None,
    }
}

/// Printable ASCII up to the first NUL, trailing spaces dropped; `None`
/// when empty or not printable.
fn ascii(value: &[u8]) -> Option<String> {
    let text = value.split(|b| *b == 0).next().unwrap_or_default();
    let text = text.trim_ascii_end();
    (!text.is_empty() && text.iter().all(|b| (0x20..0x7F).contains(b)))
        .then(|| text.iter().map(|b| char::from(*b)).collect())
}

fn be16(value: &[u8]) -> u16 {
    u16::from_be_bytes([value[0], value[1]])
}

fn malformed(text: String) -> FrameError {
    FrameError::Malformed(text)
}

/// The cells of a `79` value (after its length byte).
fn cells(list: &[u8]) -> Result<Vec<u16>, FrameError> {
    if list.len() % 3 != 0 || list.len() / 3 > MAX_CELLS {
        return Err(malformed(format!("cell list of {} bytes", list.len())));
    }
    list.chunks_exact(3)
        .enumerate()
        .map(|(i, cell)| {
            let mv = u16::from_be_bytes([cell[1], cell[2]]);
            if usize::from(cell[0]) != i + 1 {
                Err(malformed(format!(
                    "cell number {} at place {}",
                    cell[0],
                    i + 1
                )))
            } else if mv > MAX_CELL_MV {
                Err(malformed(format!("cell {} reads {mv} mV", i + 1)))
            } else {
                Ok(mv)
            }
        })
        .collect()
}

/// Every value found, by id, before the parse ended.
#[derive(Default)]
struct Found<'a> {
    values: Vec<(u8, &'a [u8])>,
    stopped_at: Option<u8>,
}

impl<'a> Found<'a> {
    fn get(&self, id: u8) -> Option<&'a [u8]> {
        self.values.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }

    fn temperature(&self, id: u8) -> Result<Option<i16>, FrameError> {
        self.get(id)
            .map(|v| {
                temperature_c(be16(v))
                    .ok_or_else(|| malformed(format!("id {id:#04x}: temperature raw {}", be16(v))))
            })
            .transpose()
    }
}

/// Splits the information field into ids and values, up to its end or to
/// an id of unknown length. An id twice, or a value past the end, is
/// malformed.
fn split(info: &[u8]) -> Result<Found<'_>, FrameError> {
    let mut found = Found::default();
    let mut at = 0;
    while let Some(&id) = info.get(at) {
        let (start, len) = match id {
            0x79 => match info.get(at + 1) {
                Some(&n) => (at + 2, usize::from(n)),
                None => return Err(malformed("cell list without its length".into())),
            },
            _ => match value_len(id) {
                Some(len) => (at + 1, len),
                None => {
                    found.stopped_at = Some(id);
                    break;
                }
            },
        };
        let Some(value) = info.get(start..start + len) else {
            return Err(malformed(format!("id {id:#04x} runs past the end")));
        };
        if found.get(id).is_some() {
            return Err(malformed(format!("id {id:#04x} twice")));
        }
        found.values.push((id, value));
        at = start + len;
    }
    Ok(found)
}

/// The current from `84`, by the form `C0` says, positive while charging.
fn current(found: &Found<'_>, raw: u16) -> Result<(i32, CurrentEncoding), FrameError> {
    let version = found.get(0xC0).map(|v| v[0]);
    match (version, found.stopped_at) {
        (Some(1), _) => {
            let magnitude = i32::from(raw & 0x7FFF);
            let sign = if raw & 0x8000 != 0 { 1 } else { -1 };
            Ok((sign * magnitude, CurrentEncoding::SignMagnitude))
        }
        (Some(0), _) | (None, None) => Ok((10_000 - i32::from(raw), CurrentEncoding::Offset)),
        (Some(v), _) => Err(malformed(format!("protocol version {v:#04x}"))),
        (None, Some(id)) => Err(malformed(format!(
            "current form unknown: the parse stopped at id {id:#04x} before 0xC0"
        ))),
    }
}

/// Decodes the information field of a read-all reply.
pub fn decode_read_all_info(info: &[u8]) -> Result<ReadAll, FrameError> {
    let found = split(info)?;
    let missing: Vec<String> = REQUIRED_IDS
        .iter()
        .filter(|id| found.get(**id).is_none())
        .map(|id| format!("{id:#04x}"))
        .collect();
    if !missing.is_empty() {
        return Err(malformed(format!("no {}", missing.join(", "))));
    }
    let required = |id| found.get(id).unwrap_or_default();
    let cell_voltages_mv = cells(required(0x79))?;
    let cell_count = found.get(0x8A).map(be16);
    if let Some(count) = cell_count.filter(|c| usize::from(*c) != cell_voltages_mv.len()) {
        return Err(malformed(format!(
            "{count} cells counted, {} listed",
            cell_voltages_mv.len()
        )));
    }
    let soc_pct = required(0x85)[0];
    if soc_pct > 100 {
        return Err(malformed(format!("state of charge {soc_pct} %")));
    }
    let (current_10ma, current_encoding) = current(&found, be16(required(0x84)))?;
    let switch = |id| found.get(id).map(|v: &[u8]| v[0] != 0);
    Ok(ReadAll {
        cell_voltages_mv,
        mos_temperature_c: found.temperature(0x80)?,
        sensor_1_temperature_c: found.temperature(0x81)?,
        sensor_2_temperature_c: found.temperature(0x82)?,
        pack_voltage_10mv: be16(required(0x83)),
        current_10ma,
        current_encoding,
        soc_pct,
        temperature_sensor_count: found.get(0x86).map(|v| v[0]),
        cycles: found.get(0x87).map(be16),
        cycle_capacity_ah: found
            .get(0x89)
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
        cell_count,
        warnings: JkWarnings(found.get(0x8B).map_or(0, be16)),
        status: JkStatus(be16(required(0x8C))),
        charge_switch_on: switch(ID_CHARGE_SWITCH),
        discharge_switch_on: switch(ID_DISCHARGE_SWITCH),
        device_id: found.get(0xB4).and_then(ascii),
        software_version: found.get(0xB7).and_then(ascii),
        factory_id: found.get(0xBA).and_then(ascii),
        protocol_version: found.get(0xC0).map(|v| v[0]),
        stopped_at: found.stopped_at,
    })
}

/// Decodes a whole read-all reply frame (a reply, or the same data
/// uploaded unasked).
pub fn decode_read_all(frame: &[u8]) -> Result<ReadAll, FrameError> {
    let frame = parse_frame(frame)?;
    if frame.command != CMD_READ_ALL
        || !(frame.transport == TRANSPORT_REPLY || frame.transport == TRANSPORT_UPLOAD)
    {
        return Err(FrameError::Unexpected(format!(
            "command {:#04x} transport {:#04x}, awaited a read-all reply",
            frame.command, frame.transport
        )));
    }
    decode_read_all_info(frame.info)
}
