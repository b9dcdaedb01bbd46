//! The MOS switch settings JBD and JK BMSs take ([`CHARGE_SWITCH_ON`],
//! [`DISCHARGE_SWITCH_ON`]): 1 leaves the MOS to the BMS's protection, 0
//! holds it open whatever the BMS decides.

use super::{CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON};
use crate::{DeviceException, DriverError, ValidatedSetting};

/// Which MOS a switch setting drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MosSwitch {
    /// The charge MOS.
    Charge,
    /// The discharge MOS.
    Discharge,
}

impl MosSwitch {
    /// The setting's name.
    pub fn setting_name(self) -> &'static str {
        match self {
            MosSwitch::Charge => CHARGE_SWITCH_ON,
            MosSwitch::Discharge => DISCHARGE_SWITCH_ON,
        }
    }
}

/// A switch write as a driver takes it: which MOS and whether the BMS may
/// close it. A setting that is no switch is [`DriverError::UnsupportedSetting`];
/// a value other than 0 or 1 is refused as the device would refuse it,
/// with "illegal data value", before anything is written.
pub fn parse_switch_setting(
    setting: &ValidatedSetting,
) -> Result<Result<(MosSwitch, bool), DeviceException>, DriverError> {
    let switch = match setting.name.0.as_str() {
        CHARGE_SWITCH_ON => MosSwitch::Charge,
        DISCHARGE_SWITCH_ON => MosSwitch::Discharge,
        other => return Err(DriverError::UnsupportedSetting(other.to_owned())),
    };
    Ok(if setting.value == 0.0 {
        Ok((switch, false))
    } else if setting.value == 1.0 {
        Ok((switch, true))
    } else {
        Err(DeviceException {
            code: DeviceException::ILLEGAL_DATA_VALUE,
            message: format!(
                "{} takes 0 (held open) or 1 (BMS decides), not {}",
                switch.setting_name(),
                setting.value
            ),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use packgate_protocol::SettingName;

    fn setting(name: &str, value: f64) -> ValidatedSetting {
        ValidatedSetting {
            name: SettingName(name.into()),
            value,
        }
    }

    #[test]
    fn only_the_two_switches_and_only_0_or_1() {
        assert_eq!(
            parse_switch_setting(&setting(CHARGE_SWITCH_ON, 0.0)),
            Ok(Ok((MosSwitch::Charge, false)))
        );
        assert_eq!(
            parse_switch_setting(&setting(DISCHARGE_SWITCH_ON, 1.0)),
            Ok(Ok((MosSwitch::Discharge, true)))
        );
        for bad in [0.5, 2.0, -1.0, f64::NAN, f64::INFINITY] {
            let refused = parse_switch_setting(&setting(CHARGE_SWITCH_ON, bad))
                .unwrap()
                .unwrap_err();
            assert_eq!(refused.code, DeviceException::ILLEGAL_DATA_VALUE);
        }
        assert_eq!(
            parse_switch_setting(&setting("charge_current_limit_a", 1.0)),
            Err(DriverError::UnsupportedSetting(
                "charge_current_limit_a".into()
            ))
        );
    }
}
