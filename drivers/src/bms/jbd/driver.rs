//! [`JbdDriver`]: one JBD BMS on a serial line.

use futures_util::future::BoxFuture;
use packgate_protocol::PackId;

use super::codec::{
    decode_basic_info, decode_cell_voltages, decode_hardware_version, expect_reply,
    mos_control_request, read_request, single_frame, BasicInfo, JbdFraming, MosControl,
    REG_BASIC_INFO, REG_CELL_VOLTAGES, REG_HARDWARE_VERSION, REG_MOS_CONTROL,
};
use super::reading::pack_reading;
use crate::bms::frame::FrameError;
use crate::bms::switch::{parse_switch_setting, MosSwitch};
use crate::bms::SerialFrameLink;
use crate::{DeviceException, DriverResult, PackDriver, Polled, ValidatedSetting};

/// Polls that may fail to read the model name before the driver stops
/// asking (it is optional, and a BMS that never answers `0x05` must not
/// cost a timeout every poll).
const MODEL_ATTEMPTS: u8 = 3;

/// What is known of the `0x05` model name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Model {
    /// Not read yet; this many attempts failed.
    Unread(u8),
    /// Read (`None`: the BMS refused it, or every attempt failed).
    Known(Option<String>),
}

/// One JBD BMS (no address: alone on its line). A poll reads `0x03` then
/// `0x04`, and once `0x05` for the model name. It writes the
/// `charge_switch_on` and `discharge_switch_on` settings through the
/// `0xE1` MOS control register.
#[derive(Debug)]
pub struct JbdDriver {
    pack_id: PackId,
    /// The last `0x03` read, for the state of the switch a write leaves
    /// alone.
    last_basic: Option<BasicInfo>,
    /// The charge and discharge states last written to `0xE1`.
    written: Option<MosControl>,
    model: Model,
}

/// Decodes the one frame of an answer to `register` with `decode`.
fn decode_reply<T>(
    frames: &[Vec<u8>],
    register: u8,
    decode: impl FnOnce(&[u8]) -> Result<T, FrameError>,
) -> Result<Result<T, DeviceException>, FrameError> {
    match expect_reply(single_frame(frames)?, register)? {
        Ok(data) => decode(data).map(Ok),
        Err(refused) => Ok(Err(refused)),
    }
}

impl JbdDriver {
    /// The driver of the JBD BMS `pack_id` names.
    pub fn new(pack_id: PackId) -> Self {
        Self {
            pack_id,
            last_basic: None,
            written: None,
            model: Model::Unread(0),
        }
    }

    /// The model name the BMS reported (`0x05`), once read.
    pub fn model(&self) -> Option<&str> {
        match &self.model {
            Model::Known(Some(model)) => Some(model),
            _ => None,
        }
    }

    /// Requests the next poll sends: `0x03`, `0x04`, and `0x05` while the
    /// model name is still to be read.
    pub fn poll_requests(&self) -> usize {
        match self.model {
            Model::Unread(_) => 3,
            Model::Known(_) => 2,
        }
    }

    async fn read_basic(&mut self, link: &mut SerialFrameLink) -> DriverResult<BasicInfo> {
        let basic = link
            .request::<JbdFraming, _>(&read_request(REG_BASIC_INFO), 1, |frames| {
                decode_reply(frames, REG_BASIC_INFO, decode_basic_info)
            })
            .await?;
        if let Ok(basic) = &basic {
            self.last_basic = Some(basic.clone());
        }
        Ok(basic)
    }

    async fn read(&mut self, link: &mut SerialFrameLink) -> DriverResult<Polled> {
        let basic = match self.read_basic(link).await? {
            Ok(basic) => basic,
            Err(refused) => return Ok(Err(refused)),
        };
        let cell_count = basic.cell_count;
        let cells = match link
            .request::<JbdFraming, _>(&read_request(REG_CELL_VOLTAGES), 1, |frames| {
                decode_reply(frames, REG_CELL_VOLTAGES, |data| {
                    decode_cell_voltages(data, cell_count)
                })
            })
            .await?
        {
            Ok(cells) => cells,
            Err(refused) => return Ok(Err(refused)),
        };
        if let Model::Unread(failed) = self.model {
            let answer = link
                .request::<JbdFraming, _>(&read_request(REG_HARDWARE_VERSION), 1, |frames| {
                    decode_reply(frames, REG_HARDWARE_VERSION, decode_hardware_version)
                })
                .await;
            self.model = match answer {
                Ok(Ok(model)) => Model::Known(Some(model)),
                Ok(Err(_)) => Model::Known(None),
                Err(_) if failed + 1 >= MODEL_ATTEMPTS => Model::Known(None),
                Err(_) => Model::Unread(failed + 1),
            };
        }
        Ok(Ok(Polled::fresh(pack_reading(&basic, &cells))))
    }

    /// What the switch a write leaves alone should stay at: as last
    /// written; else closed-if-the-BMS-wants while no software lock is
    /// reported; else as its FET was last read (a MOS held open stays
    /// held open).
    fn other_switch(&self, basic: &BasicInfo) -> MosControl {
        if let Some(written) = self.written {
            return written;
        }
        if !basic.protection.software_mos_lock() {
            return MosControl {
                charge_on: true,
                discharge_on: true,
            };
        }
        MosControl {
            charge_on: basic.charge_mos_on,
            discharge_on: basic.discharge_mos_on,
        }
    }

    async fn write(
        &mut self,
        link: &mut SerialFrameLink,
        setting: &ValidatedSetting,
    ) -> DriverResult<f64> {
        let (switch, on) = match parse_switch_setting(setting)? {
            Ok(write) => write,
            Err(refused) => return Ok(Err(refused)),
        };
        let basic = match self.last_basic.clone() {
            Some(basic) => basic,
            None => match self.read_basic(link).await? {
                Ok(basic) => basic,
                Err(refused) => return Ok(Err(refused)),
            },
        };
        let mut control = self.other_switch(&basic);
        match switch {
            MosSwitch::Charge => control.charge_on = on,
            MosSwitch::Discharge => control.discharge_on = on,
        }
        let acked = link
            .request::<JbdFraming, _>(&mos_control_request(control), 1, |frames| {
                decode_reply(frames, REG_MOS_CONTROL, |_| Ok(()))
            })
            .await?;
        if let Err(refused) = acked {
            return Ok(Err(refused));
        }
        self.written = Some(control);
        Ok(self.read_basic(link).await?.map(|basic| {
            let closed = match switch {
                MosSwitch::Charge => basic.charge_mos_on,
                MosSwitch::Discharge => basic.discharge_mos_on,
            };
            f64::from(u8::from(closed))
        }))
    }
}

impl PackDriver for JbdDriver {
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
        link: &'a mut SerialFrameLink,
        setting: &'a ValidatedSetting,
    ) -> BoxFuture<'a, DriverResult<f64>> {
        Box::pin(self.write(link, setting))
    }
}
