//! [`ModbusPackDriver`]: one pack behind a Modbus unit id on a
//! [`ModbusLink`] its bus owner lends it, read and written through its
//! device [`Profile`], or read as a SunSpec battery.

use futures_util::future::BoxFuture;
use packgate_protocol::{DataQuality, PackId};

use super::link::ModbusLink;
use super::sunspec::{SunSpecOptions, SunSpecReader, SUNSPEC_POLL_REQUESTS};
use crate::plausible::PlausibilityLimits;
use crate::profile::{Profile, ReadFunction};
use crate::{DeviceException, DriverError, DriverResult, PackDriver, Polled, ValidatedSetting};

/// One pack on a Modbus bus. Several drivers share one link (one serial
/// line or TCP endpoint), held by the bus owner and lent for each call, so
/// the blocks of one poll are read back to back.
#[derive(Debug)]
pub struct ModbusPackDriver {
    pack_id: PackId,
    unit_id: u8,
    reader: Reader,
}

/// How the pack's registers are found.
#[derive(Debug)]
enum Reader {
    /// At the fixed places of a device profile.
    Profile(Box<Profile>),
    /// Where the SunSpec model chain puts them.
    SunSpec(SunSpecReader),
}

impl ModbusPackDriver {
    /// The pack `pack_id` at unit `unit_id`, read with `profile`.
    pub fn new(pack_id: PackId, unit_id: u8, profile: Profile) -> Self {
        Self {
            pack_id,
            unit_id,
            reader: Reader::Profile(Box::new(profile)),
        }
    }

    /// The SunSpec battery `pack_id` at unit `unit_id`, found and read as
    /// `options` say. It has no writable settings.
    pub fn sunspec(pack_id: PackId, unit_id: u8, options: SunSpecOptions) -> Self {
        Self {
            pack_id,
            unit_id,
            reader: Reader::SunSpec(SunSpecReader::new(options)),
        }
    }

    /// The Modbus unit id.
    pub fn unit_id(&self) -> u8 {
        self.unit_id
    }

    /// The device profile; `None` for a SunSpec battery.
    pub fn profile(&self) -> Option<&Profile> {
        match &self.reader {
            Reader::Profile(profile) => Some(profile),
            Reader::SunSpec(_) => None,
        }
    }

    /// The SunSpec options; `None` for a profile-read pack.
    pub fn sunspec_options(&self) -> Option<&SunSpecOptions> {
        match &self.reader {
            Reader::Profile(_) => None,
            Reader::SunSpec(reader) => Some(reader.options()),
        }
    }

    /// Requests one poll may take at most (the bus's poll timeout allows
    /// this many request timeouts).
    pub fn poll_requests(&self) -> usize {
        match &self.reader {
            Reader::Profile(profile) => profile.blocks.len(),
            Reader::SunSpec(_) => SUNSPEC_POLL_REQUESTS,
        }
    }

    /// Reads every block of the profile, in order, each under the link's
    /// request timeout; the first refusal ends the poll.
    async fn read_blocks(
        profile: &Profile,
        unit_id: u8,
        link: &mut ModbusLink,
    ) -> DriverResult<Vec<Vec<u16>>> {
        let mut blocks = Vec::with_capacity(profile.blocks.len());
        for block in &profile.blocks {
            match link
                .read_registers(unit_id, block.function, block.start, block.count)
                .await?
            {
                Ok(registers) => blocks.push(registers),
                Err(exception) => return Ok(Err(exception)),
            }
        }
        Ok(Ok(blocks))
    }

    async fn read(&mut self, link: &mut ModbusLink) -> DriverResult<Polled> {
        let unit_id = self.unit_id;
        let profile = match &mut self.reader {
            Reader::Profile(profile) => &**profile,
            Reader::SunSpec(reader) => return reader.poll(link, unit_id).await,
        };
        let blocks = match Self::read_blocks(profile, unit_id, link).await? {
            Ok(blocks) => blocks,
            Err(exception) => return Ok(Err(exception)),
        };
        let reading = profile.decode(&blocks).map_err(|e| {
            DriverError::Protocol(format!("decoding with profile {}: {e}", profile.name))
        })?;
        Ok(Ok(Polled {
            reading,
            quality: DataQuality::Fresh,
            serial_number: profile.serial_number(&blocks),
        }))
    }

    async fn write(&self, link: &mut ModbusLink, setting: &ValidatedSetting) -> DriverResult<f64> {
        let name = setting.name.0.as_str();
        let Some(spec) = self.profile().and_then(|p| p.setting(name)) else {
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

    fn plausibility(&self) -> PlausibilityLimits {
        match self.profile() {
            Some(profile) => PlausibilityLimits {
                max_current_a: profile.max_current_a,
                cells_complete: profile.cells_complete,
            },
            // SunSpec gives the highest and lowest cell only.
            None => PlausibilityLimits::default(),
        }
    }
}
