//! The Pylontech-style RS-485 ASCII protocol: Pylontech US2000/US3000
//! packs, and the Seplos and Pace packs that copy its framing with reply
//! layouts of their own. The framing and the Pylontech layout are written
//! from Pylontech's "PYLON low voltage Protocol RS485", version 3.3
//! (2018-08-21); the Seplos V2 layout in [`seplos`] from Seplos's "BMS
//! Communication Protocol" V2.0 (2019-10-15); the Pace layout in [`pace`]
//! from Pace's "PACE RS232 Communication Protocal" (PACE-RS232-TY16S,
//! protocol V2.5, 2018-07-05). The documents' framing (LENGTH, LCHKSUM,
//! CHKSUM and their worked examples) is the same in all three.
//!
//! # Layouts
//!
//! A pack's [`PylonAsciiLayout`] is configured, never guessed: a reply is
//! decoded only as its pack's layout says. The layouts differ where a
//! misreading would be silent, so each decoder also refuses the others'
//! marks and names the layout it saw ([`FrameError::Unexpected`](crate::bms::FrameError::Unexpected)):
//!
//! | layout      | VER  | `0x42` user-defined count | `0x44` bytes after the temperature states | addresses |
//! |-------------|------|---------------------------|-------------------------------------------|-----------|
//! | `pylontech` | `20` | 2 or 4                    | 6 or 8                                    | 1 to 254  |
//! | `seplos_v2` | `20` | 10                        | 23                                        | 0 to 15   |
//! | `pace`      | `25` | 3                         | 12                                        | 1 to 15   |
//!
//! A count or length that no layout has is malformed.
//!
//! # Frame
//!
//! Everything between SOI and EOI travels as ASCII hex, two characters a
//! byte, high nibble first.
//!
//! | field  | chars | content                                                 |
//! |--------|-------|---------------------------------------------------------|
//! | SOI    | 1     | `~` (0x7E)                                              |
//! | VER    | 2     | protocol version (`20`; the BMS ignores it)             |
//! | ADR    | 2     | pack address, 1..=254 (a stack starts at 2)             |
//! | CID1   | 2     | `46`: battery data                                      |
//! | CID2   | 2     | the command in a request, the return code RTN in a reply |
//! | LENGTH | 4     | LCHKSUM (top nibble) and LENID (12 bits: INFO's chars)  |
//! | INFO   | LENID | the data                                                |
//! | CHKSUM | 4     | see [`frame_checksum`]                                  |
//! | EOI    | 1     | carriage return (0x0D)                                  |
//!
//! LCHKSUM is the sum of LENID's three nibbles modulo 16, inverted, plus
//! one (0 for LENID 0); CHKSUM the sum of every character's ASCII code
//! after SOI and before CHKSUM, modulo 65536, inverted, plus one. A frame
//! is at most [`MAX_FRAME_LEN`] characters. The document's worked CHKSUM
//! example sums to 0x038F (it prints 0x038E and FC72; FC71 is right) and
//! its example reply of chapter 4 carries E1A2 where its contents sum to
//! E27A: the fixtures in the tests use the computed values.
//!
//! Return codes (RTN): `00` normal, `01` VER error, `02` CHKSUM error,
//! `03` LCHKSUM error, `04` CID2 invalid, `05` command format error, `06`
//! invalid data, `90` ADR error, `91` internal communication error; any
//! but `00` is a [`DeviceException`](crate::DeviceException) with that
//! code. A reply from another ADR is
//! [`FrameError::WrongAddress`](crate::bms::FrameError::WrongAddress).
//!
//! # `0x42` get analog value (request INFO: the address)
//!
//! | field                | type | unit / scale                                      |
//! |----------------------|------|---------------------------------------------------|
//! | DATAFLAG             | u8   | –                                                 |
//! | command value        | u8   | the address asked                                 |
//! | cells M              | u8   | –                                                 |
//! | M × cell voltage     | u16  | mV                                                |
//! | temperatures K       | u8   | –                                                 |
//! | K × temperature      | i16  | 0.1 K, °C = (raw − 2731) / 10; BMS board first    |
//! | current              | i16  | 100 mA, + charging                                |
//! | pack voltage         | u16  | mV                                                |
//! | remaining capacity 1 | u16  | mAh                                               |
//! | user-defined items   | u8   | 2, or 4 when the 24-bit capacities follow         |
//! | total capacity 1     | u16  | mAh                                               |
//! | cycles               | u16  | –                                                 |
//! | remaining capacity 2 | u24  | mAh (only with 4 items; capacity 1 is then FFFF)  |
//! | total capacity 2     | u24  | mAh (likewise)                                    |
//!
//! The document's units: current "actual value = transmission value ×
//! 100" mA (its example: −4000 mA = 0xFFD8), voltages to 3 decimals of a
//! volt, capacities to 3 decimals of an ampere-hour. A user-defined count
//! of 10 (Seplos V2) or 3 (Pace) is refused naming that layout.
//!
//! # `0x44` get alarm info (request INFO: the address)
//!
//! DATAFLAG u8, command value u8, M u8, M × cell state u8, K u8, K ×
//! temperature state u8, charge current state u8, pack voltage state u8,
//! discharge current state u8, then status 1, 2, 3 and (since V2.5) 4 and
//! 5, one byte each. States: `00` normal, `01` below the lower limit,
//! `02` above the upper limit (both "act as protection", in the
//! document's words), `F0` other error.
//!
//! # Mapping into a reading
//!
//! * Cells: mV / 1000. A cell above [`MAX_CELL_MV`] is an error.
//! * Temperatures: the first (the BMS board) is kept apart
//!   ([`AnalogValues::bms_temperature_c`]); the reading carries the others
//!   (the cell groups, and the MOSFET sensor of a US3000B). A temperature
//!   outside [`PLAUSIBLE_TEMPERATURE_C`] is an error.
//! * Current: × 0.1 A, positive while charging as in packgate.
//! * SoC: no field; remaining / total capacity × 100 (the 24-bit pair
//!   with 4 user-defined items). A total of 0, or a remaining capacity
//!   above it, is an error.
//! * SoH: not reported: absent. Balancing: not reported: no cell.
//! * Switches: status 2 bit 1 charge MOSFET, bit 2 discharge MOSFET.
//! * Serial number: `0x93` (command value, 16 ASCII characters), once.
//!
//! Every state and bit, mapped (→ flag) or not:
//!
//! | source                     | meaning                          | flag                     |
//! |----------------------------|----------------------------------|--------------------------|
//! | cell state 01 / 02         | cell under / over voltage        | `CELL_UNDER_VOLTAGE` / `CELL_OVER_VOLTAGE` |
//! | temperature state 01 / 02  | under / over temperature (board included) | `UNDER_TEMPERATURE` / `OVER_TEMPERATURE` |
//! | charge current state 02    | charge over current              | `CHARGE_OVER_CURRENT`    |
//! | charge current state 01    | below its lower limit            | unmapped (no meaning)    |
//! | pack voltage state 01 / 02 | pack under / over voltage        | `PACK_UNDER_VOLTAGE` / `PACK_OVER_VOLTAGE` |
//! | discharge current state 02 | discharge over current           | `DISCHARGE_OVER_CURRENT` |
//! | discharge current state 01 | below its lower limit            | unmapped (no meaning)    |
//! | any state F0               | other error                      | `BMS_FAULT`              |
//! | any undefined state code   | –                                | unmapped                 |
//! | status 1 bit 0             | module over voltage              | `PACK_OVER_VOLTAGE`      |
//! | status 1 bit 1             | cell under voltage               | `CELL_UNDER_VOLTAGE`     |
//! | status 1 bit 2             | charge over current              | `CHARGE_OVER_CURRENT`    |
//! | status 1 bit 3             | undefined in V3.3                | unmapped                 |
//! | status 1 bit 4             | discharge over current           | `DISCHARGE_OVER_CURRENT` |
//! | status 1 bit 5 / 6         | discharge / charge over temperature | `OVER_TEMPERATURE`    |
//! | status 1 bit 7             | module under voltage             | `PACK_UNDER_VOLTAGE`     |
//! | status 2 bits 0-3          | pre / charge / discharge MOSFET, module power | unmapped (switches: bits 1, 2) |
//! | status 3 bits 0-7          | current flowing, heater, fully charged, buzzer | unmapped (states, not alarms) |
//! | status 4 / 5, any bit      | a cell failed (above 4.2 V or below 1 V) | `BMS_FAULT`      |
//!
//! [`frame_checksum`]: codec::frame_checksum
//! [`MAX_FRAME_LEN`]: codec::MAX_FRAME_LEN
//! [`MAX_CELL_MV`]: info::MAX_CELL_MV
//! [`PLAUSIBLE_TEMPERATURE_C`]: info::PLAUSIBLE_TEMPERATURE_C

pub mod codec;
mod driver;
pub mod info;
pub mod layout;
pub mod pace;
mod reading;
pub mod seplos;

pub use codec::PylonAsciiFraming;
pub use driver::PylonAsciiDriver;
pub use info::{AlarmInfo, AnalogValues, LimitState};
pub use layout::{PylonAsciiLayout, UnknownLayout};
pub use reading::{
    pack_reading, STATUS1_CELL_UNDER_VOLTAGE, STATUS1_CHARGE_OVER_CURRENT,
    STATUS1_CHARGE_OVER_TEMPERATURE, STATUS1_DISCHARGE_OVER_CURRENT,
    STATUS1_DISCHARGE_OVER_TEMPERATURE, STATUS1_MAPPING, STATUS1_PACK_OVER_VOLTAGE,
    STATUS1_PACK_UNDER_VOLTAGE, STATUS2_CHARGE_MOSFET, STATUS2_DISCHARGE_MOSFET,
    STATUS2_MODULE_POWER, STATUS2_PRECHARGE_MOSFET,
};

#[cfg(test)]
mod pace_tests;
#[cfg(test)]
mod seplos_tests;
#[cfg(test)]
mod tests;
