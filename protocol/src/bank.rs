//! A bank's state: packs in parallel seen as one battery, and the charge
//! limits an inverter may use, published once a second by the bank worker.

use serde::{Deserialize, Serialize};

use crate::ids::{BankId, BootId, PackId};
use crate::sample::AlarmFlags;

/// Most packs one bank can hold (a state carries one entry per pack).
pub const MAX_BANK_PACKS: usize = 128;

/// The bank setting that lowers the site's charge current, A: a command
/// naming a bank and this setting caps the charge current limit (CCL).
pub const SITE_MAX_CHARGE_A: &str = "site_max_charge_a";

/// The bank setting that lowers the site's discharge current, A (caps the
/// DCL).
pub const SITE_MAX_DISCHARGE_A: &str = "site_max_discharge_a";

/// The bank setting that lowers the charge voltage, V (caps the CVL in
/// absorption and in float).
pub const ABSORPTION_VOLTAGE_V: &str = "absorption_voltage_v";

/// Every setting a command may set on a bank; each names the key of the
/// bank's `[banks.limits]` it lowers.
pub const BANK_SETTINGS: [&str; 3] = [
    SITE_MAX_CHARGE_A,
    SITE_MAX_DISCHARGE_A,
    ABSORPTION_VOLTAGE_V,
];

/// A site's limits as lowered by commands, below what the configuration
/// allows; `None` where no command lowered it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SiteOverrides {
    /// The charge current cap in effect, A (`site_max_charge_a`).
    pub site_max_charge_a: Option<f32>,
    /// The discharge current cap in effect, A (`site_max_discharge_a`).
    pub site_max_discharge_a: Option<f32>,
    /// The charge voltage cap in effect, V (`absorption_voltage_v`).
    pub absorption_voltage_v: Option<f32>,
}

impl SiteOverrides {
    /// Whether no limit is lowered.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How the bank's state of charge weighs its packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SocWeighting {
    /// By each counted pack's capacity: every capacity is known.
    #[default]
    Capacity,
    /// Equally: the capacity of at least one counted pack is unknown, so
    /// the bank's SoC is the mean of the packs' SoC.
    Equal,
}

impl SocWeighting {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SocWeighting::Capacity => "capacity",
            SocWeighting::Equal => "equal",
        }
    }
}

/// What held a current below the packs' ratings, for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Derating {
    /// Nothing: the ratings (or the site's cap).
    #[default]
    None,
    /// A cell voltage near its limit: the highest cell (charge) or the
    /// lowest (discharge).
    CellVoltage,
    /// A temperature outside the full-current window.
    Temperature,
    /// The state of charge near full (charge) or empty (discharge).
    StateOfCharge,
}

impl Derating {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Derating::None => "none",
            Derating::CellVoltage => "cell_voltage",
            Derating::Temperature => "temperature",
            Derating::StateOfCharge => "state_of_charge",
        }
    }
}

/// The charge stage behind the charge voltage limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ChargeStage {
    /// Bulk and absorption: the absorption voltage.
    #[default]
    Absorption,
    /// Full and balanced for long enough: the float voltage.
    Float,
}

impl ChargeStage {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeStage::Absorption => "absorption",
            ChargeStage::Float => "float",
        }
    }
}

/// Why a bank's currents are both zero for safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankStop {
    /// No pack has a fresh sample younger than the stale age.
    NoFreshData,
    /// Fewer packs count than the bank requires.
    TooFewPacks {
        /// Packs that count.
        counted: u32,
        /// The bank's minimum.
        required: u32,
    },
}

impl BankStop {
    /// What the operator reads.
    pub fn describe(self) -> String {
        match self {
            BankStop::NoFreshData => "no pack has fresh data".to_owned(),
            BankStop::TooFewPacks { counted, required } => {
                format!("{counted} packs online, {required} required")
            }
        }
    }
}

/// A pack's part in one direction (charge or discharge).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum PackShare {
    /// It takes part, and may carry this current.
    Allowed {
        /// The current it may carry (its rating times its derating), A.
        current_a: f32,
        /// What held it below its rating.
        derating: Derating,
    },
    /// It is not counted: its latest sample is stale, suspect, too old, or
    /// there is none.
    NotCounted,
    /// Its BMS opened the switch of this direction.
    SwitchOpen,
    /// It raises these protection alarms of this direction.
    Alarm(AlarmFlags),
}

/// The largest cell, lowest cell or a temperature extreme, and the pack
/// that holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extreme {
    /// The pack.
    pub pack_id: PackId,
    /// The cell or sensor, from 1.
    pub index: u8,
    /// The value: volts for a cell, degrees Celsius for a temperature.
    pub value: f32,
}

/// One pack of the bank as its state saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankPack {
    /// The pack.
    pub pack_id: PackId,
    /// The sequence number of the sample used (0: none received yet).
    pub sample_seq: u64,
    /// Whether it counts: its latest sample is fresh and younger than the
    /// stale age.
    pub counted: bool,
    /// The alarms of its latest sample (whatever its age).
    pub alarms: AlarmFlags,
    /// Its part in the charge current.
    pub charge: PackShare,
    /// Its part in the discharge current.
    pub discharge: PackShare,
}

/// One bank at one second: the packs' totals and the limits for the
/// inverter.
///
/// Totals and extremes are over the counted packs only; `(bank_id,
/// boot_id, seq)` is unique and is the de-duplication id on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankState {
    /// The bank.
    pub bank_id: BankId,
    /// The bank worker run that computed it.
    pub boot_id: BootId,
    /// Per-bank sequence number within the run, from 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Packs configured in the bank.
    pub packs_total: u32,
    /// Packs that count (fresh and young enough).
    pub packs_online: u32,
    /// Mean voltage of the counted packs (in parallel, one voltage), V;
    /// 0 with none.
    pub voltage_v: f32,
    /// Sum of the counted packs' currents, A: positive while charging.
    pub current_a: f32,
    /// State of charge of the counted packs, weighted as
    /// `soc_weighting` says, %; 0 with none.
    pub soc_pct: f32,
    /// How `soc_pct` weighs the packs.
    pub soc_weighting: SocWeighting,
    /// State of health, weighted like the SoC, over the counted packs
    /// that report one, %; `None` when none does.
    pub soh_pct: Option<f32>,
    /// The lowest cell of the counted packs.
    pub min_cell: Option<Extreme>,
    /// The highest cell of the counted packs.
    pub max_cell: Option<Extreme>,
    /// The coldest sensor of the counted packs.
    pub min_temperature: Option<Extreme>,
    /// The hottest sensor of the counted packs.
    pub max_temperature: Option<Extreme>,
    /// Every alarm raised by a pack whose latest sample is younger than the
    /// stale age (each pack's own in `packs`).
    pub alarms: AlarmFlags,
    /// Charge voltage limit (CVL), V.
    pub charge_voltage_v: f32,
    /// Charge current limit (CCL), A.
    pub charge_current_a: f32,
    /// Discharge current limit (DCL), A.
    pub discharge_current_a: f32,
    /// Discharge voltage limit, V.
    pub discharge_voltage_v: f32,
    /// The charge stage behind the CVL.
    pub stage: ChargeStage,
    /// What held the charge current below the ratings.
    pub charge_derating: Derating,
    /// What held the discharge current below the ratings.
    pub discharge_derating: Derating,
    /// Set when both currents are zero for safety.
    pub stop: Option<BankStop>,
    /// Each configured pack, in the configured order.
    pub packs: Vec<BankPack>,
    /// The site limits lowered by commands (since schema version 4; none
    /// in older states).
    pub overrides: SiteOverrides,
}

/// A bank state as schema versions 1 to 3 wrote it: today's fields in the
/// same order, without the overrides.
#[derive(Deserialize)]
struct BankStateV3 {
    bank_id: BankId,
    boot_id: BootId,
    seq: u64,
    timestamp_ms: i64,
    packs_total: u32,
    packs_online: u32,
    voltage_v: f32,
    current_a: f32,
    soc_pct: f32,
    soc_weighting: SocWeighting,
    soh_pct: Option<f32>,
    min_cell: Option<Extreme>,
    max_cell: Option<Extreme>,
    min_temperature: Option<Extreme>,
    max_temperature: Option<Extreme>,
    alarms: AlarmFlags,
    charge_voltage_v: f32,
    charge_current_a: f32,
    discharge_current_a: f32,
    discharge_voltage_v: f32,
    stage: ChargeStage,
    charge_derating: Derating,
    discharge_derating: Derating,
    stop: Option<BankStop>,
    packs: Vec<BankPack>,
}

/// Decodes a bank state payload of versions 1 to 3 into today's
/// [`BankState`], with no overrides.
pub(crate) fn take_state_v3(payload: &[u8]) -> postcard::Result<(BankState, &[u8])> {
    let (old, rest): (BankStateV3, &[u8]) = postcard::take_from_bytes(payload)?;
    let state = BankState {
        bank_id: old.bank_id,
        boot_id: old.boot_id,
        seq: old.seq,
        timestamp_ms: old.timestamp_ms,
        packs_total: old.packs_total,
        packs_online: old.packs_online,
        voltage_v: old.voltage_v,
        current_a: old.current_a,
        soc_pct: old.soc_pct,
        soc_weighting: old.soc_weighting,
        soh_pct: old.soh_pct,
        min_cell: old.min_cell,
        max_cell: old.max_cell,
        min_temperature: old.min_temperature,
        max_temperature: old.max_temperature,
        alarms: old.alarms,
        charge_voltage_v: old.charge_voltage_v,
        charge_current_a: old.charge_current_a,
        discharge_current_a: old.discharge_current_a,
        discharge_voltage_v: old.discharge_voltage_v,
        stage: old.stage,
        charge_derating: old.charge_derating,
        discharge_derating: old.discharge_derating,
        stop: old.stop,
        packs: old.packs,
        overrides: SiteOverrides::default(),
    };
    Ok((state, rest))
}

impl BankState {
    /// The de-duplication id: `bank:boot:b<seq>`.
    pub fn msg_id(&self) -> String {
        format!("{}:{}:b{}", self.bank_id, self.boot_id, self.seq)
    }

    /// The pack entry of `pack`, if it is in the bank.
    pub fn pack(&self, pack: &PackId) -> Option<&BankPack> {
        self.packs.iter().find(|p| &p.pack_id == pack)
    }
}

#[cfg(test)]
#[path = "bank_tests.rs"]
mod tests;
