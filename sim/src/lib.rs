//! packgate-sim: a deterministic physical model of LFP battery packs, for
//! tests and for running the gateway on a laptop without hardware.
//!
//! [`PackModel`] is the pure physics (time only moves when told to);
//! [`SimPack`] is a cheap shared handle to one model plus injected
//! [`Faults`], which drivers and device servers poll while a test or the
//! simulator CLI changes the faults. Everything random comes from the
//! config's seed. [`ObeyingInverter`] plays the inverter on such packs: it
//! sets their loads within the limits their bank's BMS link sends.

mod config;
mod faults;
pub mod inverter;
mod load;
mod model;
pub mod ocv;
mod pack;
pub mod protection;
mod rng;
pub mod serve;

pub use config::{SimConfigError, SimPackConfig, MAX_CURRENT_A};
pub use faults::Faults;
pub use inverter::{HeardLimits, InverterStep, ObeyingInverter};
pub use load::{LoadProfile, LoadStep};
pub use model::{
    PackModel, SettingError, BALANCE_CURRENT_A, BALANCE_START_V, BALANCE_THRESHOLD_V,
    CHARGE_CURRENT_LIMIT_A, CHARGE_SWITCH_ON, DISCHARGE_CURRENT_LIMIT_A, DISCHARGE_SWITCH_ON,
    MAX_STEP_S, MAX_SUBSTEPS, MAX_SUBSTEP_S, SETTINGS, SWITCH_SETTINGS,
};
pub use ocv::lfp_ocv_v;
pub use pack::SimPack;
