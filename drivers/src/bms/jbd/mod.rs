//! JBD ("Jiabaida", sold as Overkill Solar and Xiaoxiang) BMSs on their
//! UART / RS-485 port: the pure codec ([`codec`]) and the driver
//! ([`JbdDriver`]).
//!
//! Written from the vendor's "Jiabaida Software Board General Protocol
//! V4" (its English translation, also published by Overkill Solar as
//! "JBD communication protocol"), checked against the examples in that document and
//! in the vendor's V13 revision, against the public JBD register map
//! kept by the bms-tools project (for bit 12 of the protection word and
//! the `0xE1` MOS control register) and against the frames open-source
//! readers log from real packs.
//!
//! # Frames
//!
//! 9600 8N1, big-endian. The host asks, the BMS answers; one BMS per
//! line (no address).
//!
//! | frame   | bytes                                                             |
//! |---------|-------------------------------------------------------------------|
//! | request | `DD`, `A5` read / `5A` write, register, length n, n data, checksum u16, `77` |
//! | reply   | `DD`, register, status (`00` ok, else error), length n, n data, checksum u16, `77` |
//!
//! The request checksum is `0x10000 - (register + n + data)`, the reply's
//! `0x10000 - (status + n + data)`, both kept to 16 bits and sent high
//! byte first: `DD A5 03 00 FF FD 77` reads the basic information. A
//! reply with a non-zero status is the BMS refusing the request
//! ([`DeviceException`](crate::DeviceException), code = the status).
//!
//! # `0x03` basic information
//!
//! | offset | type | unit / scale | field |
//! |-------:|------|--------------|-------|
//! | 0  | u16 | 10 mV  | pack voltage |
//! | 2  | i16 | 10 mA  | current, positive while charging |
//! | 4  | u16 | 10 mAh | remaining capacity |
//! | 6  | u16 | 10 mAh | nominal capacity |
//! | 8  | u16 | 1      | cycles |
//! | 10 | u16 | bits   | production date: year - 2000 in 15..9, month 8..5, day 4..0 |
//! | 12 | u16 | bits   | balancing, cells 1-16 (bit 0 = cell 1) |
//! | 14 | u16 | bits   | balancing, cells 17-32 |
//! | 16 | u16 | bits   | protection status (below) |
//! | 18 | u8  | BCD    | software version (`0x10` = 1.0) |
//! | 19 | u8  | %      | relative state of charge |
//! | 20 | u8  | bits   | FET status: bit 0 charge on, bit 1 discharge on |
//! | 21 | u8  | 1      | cell count |
//! | 22 | u8  | 1      | NTC count N |
//! | 23 | N × u16 | 0.1 K | NTC temperatures, °C = (raw - 2731) / 10 |
//!
//! Newer firmware appends bytes after the NTCs: they are ignored. A reply
//! shorter than its own counts need is
//! [`FrameError::Malformed`](crate::bms::FrameError::Malformed).
//!
//! # `0x04` cell voltages, `0x05` hardware version
//!
//! `0x04`: u16 mV per cell, cell 1 first; the length must be twice the
//! cell count of `0x03`. `0x05`: the model name in ASCII (up to 31
//! characters; a leading length byte, as some firmware sends, is dropped).
//!
//! # `0xE1` MOS control (write)
//!
//! Data `00 XX`: XX bit 0 set holds the charge MOS open, bit 1 the
//! discharge MOS (`00` both released to the BMS, `03` both held open).
//! The BMS answers `DD E1 00 00 00 00 77`. The V4 document sends it
//! without entering factory mode (register `0x00`, `56 78`), and so does
//! this driver. The FET status bits of `0x03` then say what each MOS is
//! doing; the protection status sets bit 12 while software holds one open.
//! JBD's later "Software Board Universal Protocol" moved MOS control to
//! `0xFB` ("V1: modified 0xE1 command to 0xFB"); a board speaking only
//! that refuses `0xE1` with a non-zero status, which the driver reports as
//! the device's exception. A sleeping board ignores the first request
//! (the document: "it needs to be sent again"): that poll times out.
//!
//! # Protection bits → [`AlarmFlags`](packgate_protocol::AlarmFlags)
//!
//! Every bit is a protection that has tripped (the BMS has opened a
//! MOS), none a warning:
//!
//! | bit | condition | mapped to |
//! |----:|-----------|-----------|
//! | 0  | cell over-voltage       | `CELL_OVER_VOLTAGE` |
//! | 1  | cell under-voltage      | `CELL_UNDER_VOLTAGE` |
//! | 2  | pack over-voltage       | `PACK_OVER_VOLTAGE` |
//! | 3  | pack under-voltage      | `PACK_UNDER_VOLTAGE` |
//! | 4  | charge over-temperature | `OVER_TEMPERATURE` |
//! | 5  | charge under-temperature | `UNDER_TEMPERATURE` |
//! | 6  | discharge over-temperature | `OVER_TEMPERATURE` |
//! | 7  | discharge under-temperature | `UNDER_TEMPERATURE` |
//! | 8  | charge over-current     | `CHARGE_OVER_CURRENT` |
//! | 9  | discharge over-current  | `DISCHARGE_OVER_CURRENT` |
//! | 10 | short circuit           | `SHORT_CIRCUIT` |
//! | 11 | front-end IC error      | `BMS_FAULT` |
//! | 12 | software MOS lock (an `0xE1` write holds a MOS open) | unmapped: a command, not an alarm; `charge_enabled` / `discharge_enabled` show it |
//! | 13 | charge timeout (newer firmware only) | unmapped |
//! | 14, 15 | reserved | unmapped |
//!
//! The protocol reports no state of health and no serial number.

pub mod codec;
mod driver;
mod reading;

pub use codec::{BasicInfo, CellVoltagesMv, JbdFraming, JbdProtection, MosControl, ProductionDate};
pub use driver::JbdDriver;
pub use reading::pack_reading;

#[cfg(test)]
mod tests;
