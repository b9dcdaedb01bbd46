//! Packs in parallel as one battery: the rules and the pure computation
//! of the bank's charge limits (CVL, CCL, DCL) that an inverter is given.

pub mod curves;
pub mod limits;
pub mod rules;

pub use curves::Derating;
pub use limits::{
    counts, targets, BankLimits, ChargeStage, Excluded, LimitsController, PackView, Share, Stop,
    Targets,
};
pub use rules::{ChemistryLimits, LimitRules};

#[cfg(test)]
#[path = "limits_tests.rs"]
mod limits_tests;
