//! The Daly smart BMS protocol on its UART and RS-485 ports, written from
//! Daly's "UART/485 Communications Protocol" V1.2 (DL-BMS), with the bit
//! layout of `0x98` checked against the reverse-engineered reference of a
//! 2026 board (the "DALY smart BMS UART protocol reference").
//!
//! # Frame
//!
//! Every frame, both ways, is 13 bytes:
//!
//! | byte | content                                                           |
//! |------|-------------------------------------------------------------------|
//! | 0    | `A5`                                                              |
//! | 1    | address: the host's (`40` on UART/RS-485, `80` on some boards) in a request, `01` from the BMS |
//! | 2    | data id (command)                                                 |
//! | 3    | data length, always `08`                                          |
//! | 4-11 | data (zeros in a read request)                                    |
//! | 12   | checksum: the low byte of the sum of bytes 0-11                   |
//!
//! A reply from another address than `01` (our own request echoed, a
//! second talker) is
//! [`FrameError::WrongAddress`](crate::bms::FrameError::WrongAddress);
//! Daly has no refusal frame and no address on the line: one BMS a line.
//!
//! # Data read (offsets into the 8 data bytes, big-endian)
//!
//! | id   | offset | type | content, unit / scale                                   |
//! |------|--------|------|---------------------------------------------------------|
//! | `90` | 0      | u16  | cumulative (pack) voltage, 0.1 V                        |
//! | `90` | 2      | u16  | acquired voltage, 0.1 V (not used)                      |
//! | `90` | 4      | u16  | current, 0.1 A, offset 30000 (+ charging)               |
//! | `90` | 6      | u16  | SoC, 0.1 %                                              |
//! | `91` | 0/2/3/5 | u16/u8/u16/u8 | highest cell mV and its number, lowest likewise (decoded, not polled) |
//! | `92` | 0/1/2/3 | u8×4 | highest temperature (offset 40) and its sensor, lowest likewise (decoded, not polled) |
//! | `93` | 0      | u8   | state: 0 idle, 1 charging, 2 discharging                |
//! | `93` | 1 / 2  | u8   | charge / discharge MOSFET: 1 on, 0 off                  |
//! | `93` | 3      | u8   | BMS life counter                                        |
//! | `93` | 4      | u32  | remaining capacity, mAh                                 |
//! | `94` | 0 / 1  | u8   | cells (≤ 48) / temperature sensors (≤ 16)               |
//! | `94` | 2 / 3  | u8   | charger / load connected                                |
//! | `94` | 4      | u8   | DI1-4 (bits 0-3), DO1-4 (bits 4-7)                      |
//! | `94` | 5      | u16  | cycles                                                  |
//! | `95` | 0      | u8   | frame number from 1; one frame per 3 cells              |
//! | `95` | 1/3/5  | u16  | three cell voltages, mV (byte 7 reserved)               |
//! | `96` | 0      | u8   | frame number from 1; one frame per 7 sensors            |
//! | `96` | 1-7    | u8   | seven temperatures, °C + 40                             |
//! | `97` | 0-7    | bits | balancing: bit 0 of byte 0 is cell 1                    |
//! | `98` | 0-6    | bits | failures (below); byte 7 the fault code                 |
//!
//! Frames of `95` and `96` may come in any order; a frame number out of
//! range, repeated or missing is an error, never a shifted list. A cell
//! above [`MAX_CELL_MV`] or a temperature above [`MAX_TEMPERATURE_C`] is
//! an error.
//!
//! # Mapping into a reading
//!
//! * Pack voltage ×0.1 V; current (raw − 30000) × 0.1 A, positive while
//!   charging: the document gives only the offset; boards read above
//!   30000 while charging (the reference measured it, and its threshold
//!   frames are noted to be the inverse), which some drivers invert. The
//!   `93` state is kept apart as a cross-check, not used for the sign.
//! * SoC ×0.1 %. No SoH: absent. Cells mV / 1000; temperatures as sent.
//! * Switches: `93` charge and discharge MOSFET.
//! * Balancing: `97`, bits past the last cell dropped. (The reference
//!   board sent a cell number in byte 5 instead; the document and this
//!   decoder read a bitmask.)
//!
//! `98` bits (index = byte × 8 + bit); each pair is level 1 (warning,
//! never a flag) then level 2 (protection):
//!
//! | index  | meaning                                   | flag                     |
//! |--------|-------------------------------------------|--------------------------|
//! | 0 / 1  | cell voltage high, L1 / L2                | – / `CELL_OVER_VOLTAGE`  |
//! | 2 / 3  | cell voltage low                          | – / `CELL_UNDER_VOLTAGE` |
//! | 4 / 5  | pack voltage high                         | – / `PACK_OVER_VOLTAGE`  |
//! | 6 / 7  | pack voltage low                          | – / `PACK_UNDER_VOLTAGE` |
//! | 8 / 9  | charge temperature high                   | – / `OVER_TEMPERATURE`   |
//! | 10 / 11 | charge temperature low                   | – / `UNDER_TEMPERATURE`  |
//! | 12 / 13 | discharge temperature high               | – / `OVER_TEMPERATURE`   |
//! | 14 / 15 | discharge temperature low                | – / `UNDER_TEMPERATURE`  |
//! | 16 / 17 | charge over current                      | – / `CHARGE_OVER_CURRENT` |
//! | 18 / 19 | discharge over current                   | – / `DISCHARGE_OVER_CURRENT` |
//! | 20 / 21 | SoC high                                 | – / – (no SoC flag)      |
//! | 22 / 23 | SoC low                                  | – / – (no SoC flag)      |
//! | 24 / 25 | cell voltage difference                  | – / `CELL_IMBALANCE`     |
//! | 26 / 27 | temperature difference                   | – / – (no such flag)     |
//! | 28-31  | reserved                                  | –                        |
//! | 32 / 33 | charge / discharge MOSFET over temperature | `OVER_TEMPERATURE`     |
//! | 34 / 35 | charge / discharge MOSFET sensor failure | `BMS_FAULT`              |
//! | 36 / 37 | charge / discharge MOSFET stuck closed   | `BMS_FAULT`              |
//! | 38 / 39 | charge / discharge MOSFET open circuit   | `BMS_FAULT`              |
//! | 40-45  | AFE, voltage sensor, temperature sensor, EEPROM, RTC, precharge failure | `BMS_FAULT` |
//! | 46     | communication with the vehicle / host     | – (our own link)         |
//! | 47     | internal communication failure            | `BMS_FAULT`              |
//! | 48 / 49 | current / total voltage module failure   | `BMS_FAULT`              |
//! | 50     | short circuit protection                  | `SHORT_CIRCUIT`          |
//! | 51     | low voltage, charging forbidden           | – (a state, level 1)     |
//! | 52-55  | reserved (52: a switch opened by command on some boards) | –         |
//!
//! [`MAX_CELL_MV`]: codec::MAX_CELL_MV
//! [`MAX_TEMPERATURE_C`]: codec::MAX_TEMPERATURE_C

pub mod codec;
mod driver;
mod reading;

pub use codec::{DalyFraming, HOST_ADDRESS_ALTERNATE, HOST_ADDRESS_UART};
pub use driver::DalyDriver;
pub use reading::{pack_reading, DalyPoll, FAILURE_MAPPING};

#[cfg(test)]
mod tests;
