//! [`DalyDriver`]: the one Daly BMS on a UART or RS-485 line.

use futures_util::future::BoxFuture;
use packgate_protocol::PackId;

use super::codec::{
    cell_voltage_frames, decode_balancing, decode_cell_voltages, decode_failures,
    decode_pack_status, decode_switches, decode_system_status, decode_temperatures, encode_request,
    no_refusal, temperature_frames, DalyFraming, CMD_BALANCING, CMD_CELL_VOLTAGES, CMD_FAILURES,
    CMD_PACK_STATUS, CMD_SWITCHES, CMD_SYSTEM_STATUS, CMD_TEMPERATURES,
};
use super::reading::{pack_reading, DalyPoll};
use crate::bms::{FrameError, SerialFrameLink};
use crate::{DriverError, DriverResult, PackDriver, Polled, ValidatedSetting};

/// Reads the Daly BMS on a line: `0x90`, `0x93`, `0x94`, then `0x95` and
/// `0x96` with as many frames as `0x94` announced cells and sensors, then
/// `0x97` and `0x98`. Writes nothing: Daly's MOSFET commands are not
/// exposed.
#[derive(Debug)]
pub struct DalyDriver {
    pack_id: PackId,
    host_address: u8,
}

/// Runs one read exchange of `frames` frames for `command`.
async fn exchange<T>(
    link: &mut SerialFrameLink,
    host_address: u8,
    command: u8,
    frames: usize,
    decode: impl FnOnce(&[Vec<u8>]) -> Result<T, FrameError>,
) -> Result<T, DriverError> {
    let request = encode_request(host_address, command);
    match link
        .request::<DalyFraming, _>(&request, frames, |f| no_refusal(decode(f)))
        .await?
    {
        Ok(value) => Ok(value),
        // Daly has no refusal frame; kept for the link's signature.
        Err(refused) => Err(DriverError::Protocol(refused.to_string())),
    }
}

impl DalyDriver {
    /// The pack `pack_id`, asked from `host_address`
    /// ([`HOST_ADDRESS_UART`](super::codec::HOST_ADDRESS_UART), 0x40, on
    /// most boards; [`HOST_ADDRESS_ALTERNATE`](super::codec::HOST_ADDRESS_ALTERNATE),
    /// 0x80, on some).
    pub fn new(pack_id: PackId, host_address: u8) -> Self {
        Self {
            pack_id,
            host_address,
        }
    }

    /// The host address the requests carry.
    pub fn host_address(&self) -> u8 {
        self.host_address
    }

    async fn read(&mut self, link: &mut SerialFrameLink) -> DriverResult<Polled> {
        let host = self.host_address;
        let status = exchange(link, host, CMD_PACK_STATUS, 1, decode_pack_status).await?;
        let switches = exchange(link, host, CMD_SWITCHES, 1, decode_switches).await?;
        let system = exchange(link, host, CMD_SYSTEM_STATUS, 1, decode_system_status).await?;
        let cells = usize::from(system.cells);
        let cell_voltages_mv = if cells == 0 {
            Vec::new()
        } else {
            exchange(
                link,
                host,
                CMD_CELL_VOLTAGES,
                cell_voltage_frames(cells),
                |f| decode_cell_voltages(f, cells),
            )
            .await?
        };
        let sensors = usize::from(system.temperature_sensors);
        let temperatures_c = if sensors == 0 {
            Vec::new()
        } else {
            exchange(
                link,
                host,
                CMD_TEMPERATURES,
                temperature_frames(sensors),
                |f| decode_temperatures(f, sensors),
            )
            .await?
        };
        let balancing_bits = exchange(link, host, CMD_BALANCING, 1, decode_balancing).await?;
        let failures = exchange(link, host, CMD_FAILURES, 1, decode_failures).await?;
        let reading = pack_reading(&DalyPoll {
            status,
            switches,
            system,
            cell_voltages_mv,
            temperatures_c,
            balancing_bits,
            failures,
        })?;
        Ok(Ok(Polled::fresh(reading)))
    }
}

impl PackDriver for DalyDriver {
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
