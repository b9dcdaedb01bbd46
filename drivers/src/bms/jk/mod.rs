//! JK BMSs of the older B and BD series on their RS-485 / UART ("GPS")
//! port, speaking JK's native "NW" frames: the pure codec ([`codec`]) and
//! the driver ([`JkDriver`]).
//!
//! Written from JK's "Communication protocol between monitoring platform
//! and BMS" V2.5 (2020-12-17, the "JK BMS RS485 communication protocol"
//! with the `0x4E57` frames), checked against its worked example ("RS485
//! Communication example") and against whole frames logged from real
//! packs by open-source readers.
//!
//! # Frames
//!
//! 115200 8N1, big-endian. The host asks, the BMS answers; one BMS per
//! line, asked as terminal 0 (the answer's terminal is not checked).
//!
//! | offset | bytes | field |
//! |-------:|------:|-------|
//! | 0  | 2 | `4E 57` ("NW") |
//! | 2  | 2 | length: the frame without its first two bytes |
//! | 4  | 4 | terminal number |
//! | 8  | 1 | command: `01` activate, `02` write, `03` read, `05` pair, `06` read all |
//! | 9  | 1 | frame source: `00` BMS, `01` Bluetooth, `02` GPS, `03` PC |
//! | 10 | 1 | transport type: `00` request, `01` reply, `02` BMS upload |
//! | 11 | n | information: `00` in a read-all request, id + value in a write, id + value pairs in a read-all reply, the id written in a write's reply |
//! | 11+n | 4 | record number |
//! | 15+n | 1 | `68` |
//! | 16+n | 4 | checksum: high 16 bits 0 (CRC "not enabled"), low 16 bits the sum of every byte from `4E` to `68` |
//!
//! Read all: `4E 57 00 13 00 00 00 00 06 03 00 00 00 00 00 00 68 00 00 01 29`.
//! A read-all reply is one frame; an id of unknown length ends its parse
//! (the values after it cannot be found): what was read before it is kept
//! if every required id (`79 83 84 85 8C`) was found, else the frame is
//! [`FrameError::Malformed`](crate::bms::FrameError::Malformed).
//!
//! # Values read
//!
//! | id | type | unit / scale | field |
//! |----|------|--------------|-------|
//! | `79` | u8 n, then n/3 × (u8 cell no, u16 mV) | mV | cell voltages (required; cell numbers 1, 2, … in order) |
//! | `80` | u16 | °C, 101-140 = -1 to -40 | MOS temperature |
//! | `81` | u16 | as `80` | battery box temperature: sensor 1 |
//! | `82` | u16 | as `80` | battery temperature: sensor 2 |
//! | `83` | u16 | 10 mV | pack voltage (required) |
//! | `84` | u16 | 10 mA | current (required), see below |
//! | `85` | u8  | % | state of charge (required) |
//! | `86` | u8  | 1 | battery temperature sensors |
//! | `87` | u16 | 1 | cycles |
//! | `89` | u32 | Ah | total cycle capacity |
//! | `8A` | u16 | 1 | cell count (must match `79`) |
//! | `8B` | u16 | bits | warnings (below) |
//! | `8C` | u16 | bits | status (required): bit 0 charge MOS on, 1 discharge MOS on, 2 balancer on, 3 battery connected ("1 normal, 0 dropped") |
//! | `8E`-`9C`, `9E`-`A8`, `AD`, `B0`, `BE`, `BF` | u16 | | settings, skipped |
//! | `9D`, `A9`, `AE`, `AF`, `B1`, `B3`, `B8`, `BB`-`BD` | u8 | | settings, skipped |
//! | `AA`, `B6`, `B9` | u32 | | settings, skipped |
//! | `AB` / `AC` | u8 | 0 off, 1 on | charge / discharge MOS switch |
//! | `B2` (10), `B5` (4) | ASCII | | password, date: skipped |
//! | `B4` | ASCII 8 | | device id code |
//! | `B7` | ASCII 15 | | software version |
//! | `BA` | ASCII 24 | | factory id ("manufacturer ID naming") |
//! | `C0` | u8 | | protocol version |
//!
//! **Current.** With `C0` = 1, bit 15 set means charging and the low 15
//! bits are the magnitude in 10 mA. Without `C0` (or `C0` = 0) the older
//! form is `(10000 - raw) × 10 mA`: the document's "(10000 - 11000) ×
//! 0.01 = -10.00 A (discharge), (10000 - 9500) × 0.01 = 5.00 A
//! (charging)" — positive while charging, as packgate counts it. A frame
//! whose parse stopped at an unknown id before `C0` leaves the form
//! unknown and is malformed rather than read either way.
//!
//! Temperatures are whole degrees; the document's "101 is -1 degree" is
//! followed (raw > 140 is malformed). The reading's temperatures are
//! sensors 1 and 2 (as many as `86` counts); the MOS temperature stays in
//! [`ReadAll`]. JK reports no per-cell balancing, so the reading's
//! balancing is empty ([`ReadAll::status`] says whether the balancer
//! runs), and no state of health. The serial number is the factory id
//! (`BA`), else the device id code (`B4`), when printable.
//!
//! # Warnings (`8B`) → [`AlarmFlags`](packgate_protocol::AlarmFlags)
//!
//! The document marks bit 0 "only warning", every other bit "alarm":
//!
//! | bit | condition | mapped to |
//! |----:|-----------|-----------|
//! | 0  | low capacity (warning only) | unmapped |
//! | 1  | MOS over-temperature        | `OVER_TEMPERATURE` |
//! | 2  | charge over-voltage (pack)  | `PACK_OVER_VOLTAGE` |
//! | 3  | discharge under-voltage (pack) | `PACK_UNDER_VOLTAGE` |
//! | 4  | battery over-temperature    | `OVER_TEMPERATURE` |
//! | 5  | charge over-current         | `CHARGE_OVER_CURRENT` |
//! | 6  | discharge over-current      | `DISCHARGE_OVER_CURRENT` |
//! | 7  | cell voltage difference     | `CELL_IMBALANCE` |
//! | 8  | battery box over-temperature | `OVER_TEMPERATURE` |
//! | 9  | battery low temperature     | `UNDER_TEMPERATURE` |
//! | 10 | cell over-voltage           | `CELL_OVER_VOLTAGE` |
//! | 11 | cell under-voltage          | `CELL_UNDER_VOLTAGE` |
//! | 12 | 309_A protection (front-end chip) | `BMS_FAULT` |
//! | 13 | 309_B protection (front-end chip) | `BMS_FAULT` |
//! | 14, 15 | reserved | unmapped |
//!
//! # Switch writes
//!
//! `02` write from the PC with information `AB vv` (charge MOS) or
//! `AC vv` (discharge MOS), `vv` 0 off or 1 on; the BMS answers a `02`
//! reply whose information is the id written. The driver then reads all
//! and returns the `8C` MOS bit as the read-back: what the MOS is doing
//! now. (`AB`/`AC` are the switch settings, but the document's own
//! example reads them 0 while `8C` reports both MOS on, so they are no
//! dependable read-back.) The document asks for at least 100 ms between
//! frames: the driver waits [`MIN_INTER_FRAME_GAP`] between a write and
//! its read-back; polls are far enough apart. A sleeping BMS would need
//! the `01` activation first; this driver does not send it (open-source
//! readers of B / BD packs send the read-all alone).

use std::time::Duration;

pub mod codec;
mod driver;
mod reading;

pub use codec::{CurrentEncoding, JkFraming, JkStatus, JkWarnings, NwFrame, ReadAll};
pub use driver::JkDriver;
pub use reading::pack_reading;

/// Least silence the document asks between two frames on a JK line.
pub const MIN_INTER_FRAME_GAP: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests;
