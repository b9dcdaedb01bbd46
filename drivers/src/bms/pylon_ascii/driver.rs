//! [`PylonAsciiDriver`]: one pack on a Pylontech-style RS-485 line.

use futures_util::future::BoxFuture;
use packgate_protocol::PackId;

use super::codec::{serial_number_request, PylonAsciiFraming};
use super::info::{decode_alarm_reply, decode_analog_reply, decode_serial_number_reply};
use super::layout::PylonAsciiLayout;
use super::pace::{decode_pace_alarm_reply, decode_pace_analog_reply, pace_pack_reading};
use super::reading::pack_reading;
use super::seplos::{decode_seplos_alarm_reply, decode_seplos_analog_reply, seplos_pack_reading};
use crate::bms::SerialFrameLink;
use crate::{DriverError, DriverResult, PackDriver, Polled, ValidatedSetting};

/// One request on `link`, its reply decoded by `decode`; the pack's
/// refusal returns from the poll as it is.
macro_rules! ask {
    ($link:expr, $request:expr, $decode:expr) => {
        match $link
            .request::<PylonAsciiFraming, _>($request, 1, $decode)
            .await?
        {
            Ok(value) => value,
            Err(refused) => return Ok(Err(refused)),
        }
    };
}

/// Reads one pack at one address of a Pylontech-style line in its
/// configured [`PylonAsciiLayout`]: `0x42` (analog values) then `0x44`
/// (alarm info) every poll, and for Pylontech the serial number (`0x93`)
/// once, after the first poll the pack answered; a pack that does not
/// know `0x93` is polled without one. A reply in another layout is
/// refused, naming the layout it looks like. Writes nothing: the
/// protocols' writes (charge management, MOSFET switches, turn off) are
/// not safe to expose.
#[derive(Debug)]
pub struct PylonAsciiDriver {
    pack_id: PackId,
    address: u8,
    layout: PylonAsciiLayout,
    serial_number: Option<String>,
    serial_number_asked: bool,
}

impl PylonAsciiDriver {
    /// The Pylontech pack `pack_id` at ADR `address` (1 to 254: 0 and 255
    /// are reserved; a Pylontech stack starts at 2, group `m` adds
    /// `0x10·m`).
    pub fn new(pack_id: PackId, address: u8) -> Self {
        Self::with_layout(pack_id, address, PylonAsciiLayout::Pylontech)
    }

    /// The pack `pack_id` at ADR `address`, read in `layout` (its
    /// addresses: [`PylonAsciiLayout::addresses`]).
    pub fn with_layout(pack_id: PackId, address: u8, layout: PylonAsciiLayout) -> Self {
        Self {
            pack_id,
            address,
            layout,
            serial_number: None,
            serial_number_asked: false,
        }
    }

    /// The pack's ADR.
    pub fn address(&self) -> u8 {
        self.address
    }

    /// The layout it reads.
    pub fn layout(&self) -> PylonAsciiLayout {
        self.layout
    }

    async fn read(&mut self, link: &mut SerialFrameLink) -> DriverResult<Polled> {
        let (address, layout) = (self.address, self.layout);
        if !layout.addresses().contains(&address) {
            return Err(DriverError::Protocol(format!(
                "address {address} is no {} pack's address ({:?})",
                layout.vendor(),
                layout.addresses()
            )));
        }
        let analog = layout.analog_request(address);
        let alarm = layout.alarm_request(address);
        let reading = match layout {
            PylonAsciiLayout::Pylontech => {
                let a = ask!(link, &analog, |f| decode_analog_reply(f, address));
                let b = ask!(link, &alarm, |f| decode_alarm_reply(f, address));
                pack_reading(&a, &b)?
            }
            PylonAsciiLayout::SeplosV2 => {
                let a = ask!(link, &analog, |f| decode_seplos_analog_reply(f, address));
                let b = ask!(link, &alarm, |f| decode_seplos_alarm_reply(f, address));
                seplos_pack_reading(&a, &b)?
            }
            PylonAsciiLayout::Pace => {
                let a = ask!(link, &analog, |f| decode_pace_analog_reply(f, address));
                let b = ask!(link, &alarm, |f| decode_pace_alarm_reply(f, address));
                pace_pack_reading(&a, &b)?
            }
        };
        if layout == PylonAsciiLayout::Pylontech && !self.serial_number_asked {
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
