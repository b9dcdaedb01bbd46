//! [`PylonAsciiDriver`]: one pack on a Pylontech-style RS-485 line.

use futures_util::future::BoxFuture;
use packgate_protocol::PackId;

use super::codec::{
    alarm_info_request, analog_value_request, serial_number_request, PylonAsciiFraming,
};
use super::info::{decode_alarm_reply, decode_analog_reply, decode_serial_number_reply};
use super::reading::pack_reading;
use crate::bms::SerialFrameLink;
use crate::{DriverError, DriverResult, PackDriver, Polled, ValidatedSetting};

/// Reads one pack at one address of a Pylontech-style line: `0x42`
/// (analog values) then `0x44` (alarm info) every poll, and the serial
/// number (`0x93`) once, after the first poll the pack answered; a pack
/// that does not know `0x93` is polled without one. Writes nothing: the
/// protocol's writes (charge management, turn off) are not safe to expose.
#[derive(Debug)]
pub struct PylonAsciiDriver {
    pack_id: PackId,
    address: u8,
    serial_number: Option<String>,
    serial_number_asked: bool,
}

impl PylonAsciiDriver {
    /// The pack `pack_id` at ADR `address` (1 to 254: 0 and 255 are
    /// reserved; a Pylontech stack starts at 2, group `m` adds `0x10·m`).
    pub fn new(pack_id: PackId, address: u8) -> Self {
        Self {
            pack_id,
            address,
            serial_number: None,
            serial_number_asked: false,
        }
    }

    /// The pack's ADR.
    pub fn address(&self) -> u8 {
        self.address
    }

    async fn read(&mut self, link: &mut SerialFrameLink) -> DriverResult<Polled> {
        let address = self.address;
        if address == 0 || address == 0xFF {
            return Err(DriverError::Protocol(format!(
                "address {address} is reserved"
            )));
        }
        let analog = match link
            .request::<PylonAsciiFraming, _>(&analog_value_request(address), 1, |frames| {
                decode_analog_reply(frames, address)
            })
            .await?
        {
            Ok(analog) => analog,
            Err(refused) => return Ok(Err(refused)),
        };
        let alarm = match link
            .request::<PylonAsciiFraming, _>(&alarm_info_request(address), 1, |frames| {
                decode_alarm_reply(frames, address)
            })
            .await?
        {
            Ok(alarm) => alarm,
            Err(refused) => return Ok(Err(refused)),
        };
        let reading = pack_reading(&analog, &alarm)?;
        if !self.serial_number_asked {
            self.serial_number_asked = true;
            let asked = link
                .request::<PylonAsciiFraming, _>(&serial_number_request(address), 1, |frames| {
                    decode_serial_number_reply(frames, address)
                })
                .await;
            if let Ok(Ok(serial_number)) = asked {
                self.serial_number = Some(serial_number).filter(|s| !s.is_empty());
            }
        }
        Ok(Ok(Polled {
            serial_number: self.serial_number.clone(),
            ..Polled::fresh(reading)
        }))
    }
}

impl PackDriver for PylonAsciiDriver {
    type Link = SerialFrameLink;

    fn pack_id(&self) -> &PackId {
        &self.pack_id
    }

    fn poll<'a>(
        &'a mut self,
        link: &'a mut SerialFrameLink,
    ) -> BoxFuture<'a, DriverResult<Polled>> {
        Box::pin(self.read(link))
    }

    fn apply_setting<'a>(
        &'a mut self,
        _link: &'a mut SerialFrameLink,
        setting: &'a ValidatedSetting,
    ) -> BoxFuture<'a, DriverResult<f64>> {
        let name = setting.name.0.clone();
        Box::pin(async move { Err(DriverError::UnsupportedSetting(name)) })
    }
}
