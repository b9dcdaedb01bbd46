//! [`JkDriver`]: one JK BMS on a serial line.

use futures_util::future::BoxFuture;
use packgate_protocol::PackId;

use super::codec::{
    decode_read_all, decode_write_ack, read_all_request, single_frame, switch_id,
    switch_write_request, JkFraming, ReadAll,
};
use super::reading::pack_reading;
use super::MIN_INTER_FRAME_GAP;
use crate::bms::switch::{parse_switch_setting, MosSwitch};
use crate::bms::SerialFrameLink;
use crate::{DriverResult, PackDriver, Polled, ValidatedSetting};

/// The terminal number asked: one BMS per line.
const TERMINAL: u32 = 0;

/// One JK BMS of the B / BD series (alone on its line, asked as terminal
/// 0). A poll is one read-all. It writes the `charge_switch_on` and
/// `discharge_switch_on` settings through the `AB` / `AC` MOS switches and
/// reads back the `8C` MOS bit.
#[derive(Debug)]
pub struct JkDriver {
    pack_id: PackId,
    /// The last read-all, for its settings and identity.
    last: Option<ReadAll>,
}

impl JkDriver {
    /// The driver of the JK BMS `pack_id` names.
    pub fn new(pack_id: PackId) -> Self {
        Self {
            pack_id,
            last: None,
        }
    }

    /// Requests one poll sends: one read-all.
    pub fn poll_requests(&self) -> usize {
        1
    }

    /// The values of the last read-all (settings, identity, MOS
    /// temperature), once one was read.
    pub fn last_read(&self) -> Option<&ReadAll> {
        self.last.as_ref()
    }

    async fn read_all(&mut self, link: &mut SerialFrameLink) -> DriverResult<ReadAll> {
        let values = link
            .request::<JkFraming, _>(&read_all_request(TERMINAL), 1, |frames| {
                decode_read_all(single_frame(frames)?).map(Ok)
            })
            .await?;
        if let Ok(values) = &values {
            self.last = Some(values.clone());
        }
        Ok(values)
    }

    async fn read(&mut self, link: &mut SerialFrameLink) -> DriverResult<Polled> {
        Ok(self.read_all(link).await?.map(|values| {
            let mut polled = Polled::fresh(pack_reading(&values));
            polled.serial_number = values.serial_number().map(str::to_owned);
            polled
        }))
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
        let id = switch_id(switch);
        let acked = link
            .request::<JkFraming, _>(&switch_write_request(TERMINAL, switch, on), 1, |frames| {
                decode_write_ack(single_frame(frames)?, id).map(Ok)
            })
            .await?;
        if let Err(refused) = acked {
            return Ok(Err(refused));
        }
        // The document asks 100 ms between frames; the line's own gap may
        // be shorter, and the read-back follows the write at once.
        tokio::time::sleep(MIN_INTER_FRAME_GAP).await;
        Ok(self.read_all(link).await?.map(|values| {
            let closed = match switch {
                MosSwitch::Charge => values.status.charge_mos_on(),
                MosSwitch::Discharge => values.status.discharge_mos_on(),
            };
            f64::from(u8::from(closed))
        }))
    }
}

impl PackDriver for JkDriver {
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
