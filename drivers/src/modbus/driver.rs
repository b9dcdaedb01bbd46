//! [`ModbusPackDriver`]: one pack behind a Modbus unit id on a shared
//! [`ModbusLink`], read and written through its device [`Profile`].

use std::sync::Arc;

use futures_util::future::BoxFuture;
use packgate_protocol::{PackId, PackReading};
use tokio::sync::Mutex;

use super::link::ModbusLink;
use crate::profile::{Profile, ReadFunction};
use crate::{DriverError, PackDriver, ValidatedSetting};

/// Modbus's "illegal data value": reported, without a request, for a value
/// the profile cannot encode, as the device itself would.
const ILLEGAL_DATA_VALUE: u8 = 0x03;

/// One pack on a Modbus bus. Several drivers share one link (one serial
/// line or TCP endpoint); a poll holds the link for all its blocks, so the
/// blocks of one poll are read back to back.
#[derive(Debug)]
pub struct ModbusPackDriver {
    pack_id: PackId,
    unit_id: u8,
    profile: Profile,
    link: Arc<Mutex<ModbusLink>>,
}

impl ModbusPackDriver {
    /// The pack `pack_id` at unit `unit_id` on `link`, read with `profile`.
    pub fn new(
        pack_id: PackId,
        unit_id: u8,
        profile: Profile,
        link: Arc<Mutex<ModbusLink>>,
    ) -> Self {
        Self {
            pack_id,
            unit_id,
            profile,
            link,
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

    /// The link, shared with the other packs on the bus.
    pub fn link(&self) -> &Arc<Mutex<ModbusLink>> {
        &self.link
    }

    /// Reads every block of the profile, in order, each under the link's
    /// request timeout.
    async fn read_blocks(&self) -> Result<Vec<Vec<u16>>, DriverError> {
        let mut link = self.link.lock().await;
        let mut blocks = Vec::with_capacity(self.profile.blocks.len());
        for block in &self.profile.blocks {
            let registers = link
                .read_registers(self.unit_id, block.function, block.start, block.count)
                .await?;
            blocks.push(registers);
        }
        Ok(blocks)
    }

    /// The pack's serial number, if the profile maps one and the pack
    /// answers.
    pub async fn read_serial_number(&mut self) -> Option<String> {
        let blocks = self.read_blocks().await.ok()?;
        self.profile.serial_number(&blocks)
    }

    async fn read(&self) -> Result<PackReading, DriverError> {
        let blocks = self.read_blocks().await?;
        self.profile.decode(&blocks).map_err(|e| {
            DriverError::Protocol(format!("decoding with profile {}: {e}", self.profile.name))
        })
    }

    async fn write(&self, setting: &ValidatedSetting) -> Result<f64, DriverError> {
        let name = setting.name.0.as_str();
        let Some(spec) = self.profile.setting(name) else {
            return Err(DriverError::UnsupportedSetting(name.to_owned()));
        };
        let values = spec
            .encode(setting.value)
            .map_err(|e| DriverError::Exception {
                code: ILLEGAL_DATA_VALUE,
                message: e.to_string(),
            })?;
        let mut link = self.link.lock().await;
        link.write_registers(self.unit_id, spec.register, &values)
            .await?;
        let read_back = link
            .read_registers(
                self.unit_id,
                ReadFunction::Holding,
                spec.read_back_register,
                spec.register_count(),
            )
            .await?;
        spec.decode(&read_back)
            .map_err(|e| DriverError::Protocol(format!("read-back of {name}: {e}")))
    }
}

impl PackDriver for ModbusPackDriver {
    fn pack_id(&self) -> &PackId {
        &self.pack_id
    }

    fn poll(&mut self) -> BoxFuture<'_, Result<PackReading, DriverError>> {
        Box::pin(self.read())
    }

    fn apply_setting<'a>(
        &'a mut self,
        setting: &'a ValidatedSetting,
    ) -> BoxFuture<'a, Result<f64, DriverError>> {
        Box::pin(self.write(setting))
    }
}
