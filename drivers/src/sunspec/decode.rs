//! Models 802 (battery base), 803 (lithium-ion bank, fixed part) and 1
//! (common) decoded into typed values, pure.
//!
//! Offsets count from a model's first point after its header (the JSON
//! definitions in the SunSpec models repository count from the ID
//! register, two more). Every point goes through [`super::points`], so a
//! not-implemented value (or scale factor) is `None`.

use packgate_protocol::{AlarmFlags, BalancingState, CellVoltages, PackReading, Temperatures};

use super::events::events;
use super::points::{int16, scaled, string, sunssf, uint16, uint32};

/// Model 802 body offsets (SunSpec `model_802.json` offset minus 2).
mod m802 {
    pub(super) const LEN: usize = 62;
    pub(super) const SOC: usize = 9;
    pub(super) const SOH: usize = 11;
    pub(super) const N_CYC: usize = 12;
    pub(super) const CHA_ST: usize = 14;
    pub(super) const STATE: usize = 20;
    pub(super) const EVT1: usize = 24;
    pub(super) const V: usize = 32;
    pub(super) const CELL_V_MAX: usize = 35;
    pub(super) const CELL_V_MIN: usize = 38;
    pub(super) const CELL_V_AVG: usize = 41;
    pub(super) const A: usize = 42;
    pub(super) const SOC_SF: usize = 54;
    pub(super) const SOH_SF: usize = 56;
    pub(super) const V_SF: usize = 57;
    pub(super) const CELL_V_SF: usize = 58;
    pub(super) const A_SF: usize = 59;
}

/// Model 803 body offsets of its fixed part (`model_803.json` minus 2).
mod m803 {
    pub(super) const LEN: usize = 26;
    pub(super) const N_STR: usize = 0;
    pub(super) const MOD_TMP_MAX: usize = 2;
    pub(super) const MOD_TMP_MIN: usize = 5;
    pub(super) const MOD_TMP_AVG: usize = 8;
    pub(super) const MOD_TMP_SF: usize = 21;
}

/// Model 1 body offsets (`model_1.json` minus 2); `L` is 65 or 66.
mod m1 {
    pub(super) const LEN: usize = 65;
    pub(super) const SN: usize = 48;
    pub(super) const SN_LEN: usize = 16;
}

/// `ChaSt` value: discharging.
pub const CHA_ST_DISCHARGING: u16 = 3;
/// `ChaSt` value: charging.
pub const CHA_ST_CHARGING: u16 = 4;
/// `State` value: connected (the battery may charge and discharge).
pub const STATE_CONNECTED: u16 = 3;

/// Why the models read cannot make a reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A model is shorter than its fixed points.
    #[error("model {id} has {length} registers; its points need {needed}")]
    ShortModel {
        /// The model ID.
        id: u16,
        /// Registers given.
        length: usize,
        /// Registers its points need.
        needed: usize,
    },
    /// A point packgate needs is not implemented (or its scale factor is
    /// not).
    #[error("SunSpec point {0} is not implemented by the device")]
    Missing(&'static str),
}

/// Model 802's values, each `None` when the device does not implement it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Battery {
    /// `V`, volts.
    pub voltage_v: Option<f64>,
    /// `A`, amperes, with the device's own sign.
    pub current_a: Option<f64>,
    /// `SoC`, percent.
    pub soc_pct: Option<f64>,
    /// `SoH`, percent.
    pub soh_pct: Option<f64>,
    /// `CellVMax`, volts.
    pub cell_v_max: Option<f64>,
    /// `CellVMin`, volts.
    pub cell_v_min: Option<f64>,
    /// `CellVAvg`, volts.
    pub cell_v_avg: Option<f64>,
    /// `NCyc`, charge cycles.
    pub cycles: Option<u32>,
    /// `ChaSt`, the charge status.
    pub charge_status: Option<u16>,
    /// `State`, the battery state.
    pub state: Option<u16>,
    /// `Evt1`, the alarm and warning bits.
    pub evt1: Option<u32>,
}

/// Model 803's fixed part, each `None` when not implemented.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bank {
    /// `NStr`, strings in the bank.
    pub strings: Option<u16>,
    /// `ModTmpMax`, degrees Celsius.
    pub module_temp_max_c: Option<f64>,
    /// `ModTmpMin`, degrees Celsius.
    pub module_temp_min_c: Option<f64>,
    /// `ModTmpAvg`, degrees Celsius.
    pub module_temp_avg_c: Option<f64>,
}

/// What one poll of a SunSpec battery read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SunSpecReading {
    /// Model 802.
    pub battery: Battery,
    /// Model 803, when the device has it.
    pub bank: Option<Bank>,
    /// Model 1's `SN`, when the device has it.
    pub serial_number: Option<String>,
}

fn need(id: u16, regs: &[u16], needed: usize) -> Result<(), DecodeError> {
    if regs.len() < needed {
        return Err(DecodeError::ShortModel {
            id,
            length: regs.len(),
            needed,
        });
    }
    Ok(())
}

fn battery(regs: &[u16]) -> Result<Battery, DecodeError> {
    need(802, regs, m802::LEN)?;
    let u = |at| uint16(regs, at).map(f64::from);
    let sf = |at| sunssf(regs, at);
    let cell_sf = sf(m802::CELL_V_SF);
    Ok(Battery {
        voltage_v: scaled(u(m802::V), sf(m802::V_SF)),
        current_a: scaled(int16(regs, m802::A).map(f64::from), sf(m802::A_SF)),
        soc_pct: scaled(u(m802::SOC), sf(m802::SOC_SF)),
        soh_pct: scaled(u(m802::SOH), sf(m802::SOH_SF)),
        cell_v_max: scaled(u(m802::CELL_V_MAX), cell_sf),
        cell_v_min: scaled(u(m802::CELL_V_MIN), cell_sf),
        cell_v_avg: scaled(u(m802::CELL_V_AVG), cell_sf),
        cycles: uint32(regs, m802::N_CYC),
        charge_status: uint16(regs, m802::CHA_ST),
        state: uint16(regs, m802::STATE),
        evt1: uint32(regs, m802::EVT1),
    })
}

fn bank(regs: &[u16]) -> Result<Bank, DecodeError> {
    need(803, regs, m803::LEN)?;
    let sf = sunssf(regs, m803::MOD_TMP_SF);
    let t = |at| scaled(int16(regs, at).map(f64::from), sf);
    Ok(Bank {
        strings: uint16(regs, m803::N_STR),
        module_temp_max_c: t(m803::MOD_TMP_MAX),
        module_temp_min_c: t(m803::MOD_TMP_MIN),
        module_temp_avg_c: t(m803::MOD_TMP_AVG),
    })
}

/// Model 1's `SN` from its body, when implemented; `None` as well for a
/// body shorter than the model.
pub fn serial_number(common_body: &[u16]) -> Option<String> {
    need(1, common_body, m1::LEN).ok()?;
    string(common_body, m1::SN, m1::SN_LEN)
}

/// Decodes the bodies (the registers after each header) of model 802,
/// and of 803 and the common model where the device has them.
pub fn decode(
    battery_body: &[u16],
    bank_body: Option<&[u16]>,
    common_body: Option<&[u16]>,
) -> Result<SunSpecReading, DecodeError> {
    let serial_number = match common_body {
        Some(regs) => {
            need(1, regs, m1::LEN)?;
            string(regs, m1::SN, m1::SN_LEN)
        }
        None => None,
    };
    Ok(SunSpecReading {
        battery: battery(battery_body)?,
        bank: bank_body.map(bank).transpose()?,
        serial_number,
    })
}

/// Present values of `values`, in order, as `f32`.
fn present(values: &[Option<f64>]) -> Vec<f32> {
    values.iter().flatten().map(|&v| v as f32).collect()
}

impl SunSpecReading {
    /// The pack current, amperes, positive while charging: `ChaSt` gives
    /// the direction when it says charging or discharging; otherwise the
    /// device's sign, flipped when `invert_current`.
    pub fn current_a(&self) -> Option<f64> {
        let a = self.battery.current_a?;
        Some(match self.battery.charge_status {
            Some(CHA_ST_CHARGING) => a.abs(),
            Some(CHA_ST_DISCHARGING) => -a.abs(),
            _ => a,
        })
    }

    /// The packgate reading. `V`, `A` and `SoC` are required; `SoH` is
    /// taken where implemented and absent otherwise; cells
    /// are `[CellVMax, CellVMin]` and temperatures 803's
    /// `[ModTmpMax, ModTmpMin]`, each only where implemented.
    pub fn reading(&self, invert_current: bool) -> Result<PackReading, DecodeError> {
        let b = &self.battery;
        let pack_voltage_v = b.voltage_v.ok_or(DecodeError::Missing("V"))?;
        let mut current_a = self.current_a().ok_or(DecodeError::Missing("A"))?;
        if invert_current && !self.direction_known() {
            current_a = -current_a;
        }
        let soc_pct = b.soc_pct.ok_or(DecodeError::Missing("SoC"))?;
        let temperatures = self.bank.map_or_else(Vec::new, |k| {
            present(&[k.module_temp_max_c, k.module_temp_min_c])
        });
        let connected = b.state == Some(STATE_CONNECTED);
        Ok(PackReading {
            pack_voltage_v: pack_voltage_v as f32,
            current_a: current_a as f32,
            soc_pct: soc_pct as f32,
            soh_pct: b.soh_pct.map(|soh| soh as f32),
            cell_voltages_v: CellVoltages(present(&[b.cell_v_max, b.cell_v_min])),
            temperatures_c: Temperatures(temperatures),
            balancing: BalancingState(0),
            alarms: b.evt1.map_or(AlarmFlags::NONE, |e| events(e).alarms),
            charge_enabled: connected,
            discharge_enabled: connected,
        })
    }

    /// Whether `ChaSt` says charging or discharging.
    fn direction_known(&self) -> bool {
        matches!(
            self.battery.charge_status,
            Some(CHA_ST_CHARGING | CHA_ST_DISCHARGING)
        )
    }

    /// The `Evt1` warning bits set (see [`super::events`]).
    pub fn warnings(&self) -> u32 {
        self.battery.evt1.map_or(0, |e| events(e).warnings)
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
