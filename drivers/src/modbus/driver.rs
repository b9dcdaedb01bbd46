//! [`ModbusPackDriver`]: one pack behind a Modbus unit id on a
//! [`ModbusLink`] its bus owner lends it, read and written through its
//! device [`Profile`].

use futures_util::future::BoxFuture;
use packgate_protocol::{DataQuality, PackId};

use super::link::ModbusLink;
use crate::profile::{Profile, ReadFunction};
use crate::{DeviceException, DriverError, DriverResult, PackDriver, Polled, ValidatedSetting};

/// One pack on a Modbus bus. Several drivers share one link (one serial
/// line or TCP endpoint), held by the bus owner and lent for each call, so
/// the blocks of one poll are read back to back.
#[derive(Debug)]
pub struct ModbusPackDriver {
    pack_id: PackId,
    unit_id: u8,
    profile: Profile,
}

impl ModbusPackDriver {
    /// The pack `pack_id` at unit `unit_id`, read with `profile`.
    pub fn new(pack_id: PackId, unit_id: u8, profile: Profile) -> Self {
        Self {
            pack_id,
            unit_id,
            profile,
        }
    }

    /// The Modbus unit id.
    pub fn unit_id(&self) -> u8 {
        self.unit_id
    }

    /// The device profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Reads every block of the profile, in order, each under the link's
    /// request timeout; the first refusal ends the poll.
    async fn read_blocks(&self, link: &mut ModbusLink) -> DriverResult<Vec<Vec<u16>>> {
        let mut blocks = Vec::with_capacity(self.profile.blocks.len());
        for block in &self.profile.blocks {
            match link
                .read_registers(self.unit_id, block.function, block.start, block.count)
                .await?
            {
                Ok(registers) => blocks.push(registers),
                Err(exception) => return Ok(Err(exception)),
            }
        }
        Ok(Ok(blocks))
    }

    async fn read(&self, link: &mut ModbusLink) -> DriverResult<Polled> {
        let blocks = match self.read_blocks(link).await? {
            Ok(blocks) => blocks,
            Err(exception) => return Ok(Err(exception)),
        };
        let reading = self.profile.decode(&blocks).map_err(|e| {
            DriverError::Protocol(format!("decoding with profile {}: {e}", self.profile.name))
        })?;
        Ok(Ok(Polled {
            reading,
            quality: DataQuality::Fresh,
            serial_number: self.profile.serial_number(&blocks),
        }))
    }

    async fn write(&self, link: &mut ModbusLink, setting: &ValidatedSetting) -> DriverResult<f64> {
        let name = setting.name.0.as_str();
        let Some(spec) = self.profile.setting(name) else {
            return Err(DriverError::UnsupportedSetting(name.to_owned()));
        };
        let values = match spec.encode(setting.value) {
            Ok(values) => values,
            Err(e) => {
                return Ok(Err(DeviceException {
                    code: DeviceException::ILLEGAL_DATA_VALUE,
                    message: e.to_string(),
                }))
            }
        };
        if let Err(exception) = link
            .write_registers(self.unit_id, spec.register, &values)
            .await?
        {
            return Ok(Err(exception));
        }
        let read_back = match link
            .read_registers(
                self.unit_id,
                ReadFunction::Holding,
                spec.read_back_register,
                spec.register_count(),
            )
            .await?
        {
            Ok(registers) => registers,
            Err(exception) => return Ok(Err(exception)),
        };
        spec.decode(&read_back)
            .map(Ok)
            .map_err(|e| DriverError::Protocol(format!("read-back of {name}: {e}")))
    }
}

impl PackDriver for ModbusPackDriver {
    type Link = ModbusLink;

    fn pack_id(&self) -> &PackId {
        &self.pack_id
    }

    fn poll<'a>(&'a mut self, link: &'a mut ModbusLink) -> BoxFuture<'a, DriverResult<Polled>> {
        Box::pin(self.read(link))
    }

    fn apply_setting<'a>(
        &'a mut self,
        link: &'a mut ModbusLink,
        setting: &'a ValidatedSetting,
    ) -> BoxFuture<'a, DriverResult<f64>> {
        Box::pin(self.write(link, setting))
    }
}
