//! The `[[banks]]` sections: packs in parallel that an inverter sees as one
//! battery, the rules of their charge limits, and what each pack brings
//! (its current ratings and capacity: from its profile where the profile
//! gives them, else the bank's per-pack defaults).

use std::collections::{HashMap, HashSet};

use packgate_protocol::{BankId, PackId, MAX_BANK_PACKS};
use serde::{Deserialize, Serialize};

use super::inverter::InverterConfig;
use super::packs::{DriverConfig, PackConfig};
use super::ConfigError;
use crate::bank::LimitRules;

/// One bank: packs wired in parallel, seen by the inverter as one battery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConfig {
    /// The bank's name: letters, digits, '-' and '_', at most 32; its
    /// states are published on `packgate.banks.<name>`.
    pub name: BankId,
    /// The packs in parallel, by their `[[packs]]` id; a pack is in one
    /// bank at most.
    pub packs: Vec<PackId>,
    /// Each pack's charge rating where its profile gives none
    /// (`max_charge_a`), A; needed when a pack's profile has none.
    #[serde(default)]
    pub pack_max_charge_a: Option<f64>,
    /// Each pack's discharge rating where its profile gives none
    /// (`max_discharge_a`), A; needed when a pack's profile has none.
    #[serde(default)]
    pub pack_max_discharge_a: Option<f64>,
    /// Each pack's capacity where its profile gives none (`capacity_ah`),
    /// Ah; the bank's SoC weighs the packs by capacity when every counted
    /// pack has one, else equally (the state says which).
    #[serde(default)]
    pub pack_capacity_ah: Option<f64>,
    /// The rules of the charge limits: the chemistry's windows, the site's
    /// limits, the minimum of online packs, the stale age, the ramps.
    #[serde(default)]
    pub limits: LimitRules,
    /// The CAN link to the bank's inverter, if it has one.
    #[serde(default)]
    pub inverter: Option<InverterConfig>,
}

/// What one pack brings to its bank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackRating {
    /// The charge current it is rated for, A.
    pub max_charge_a: f64,
    /// The discharge current it is rated for, A.
    pub max_discharge_a: f64,
    /// Its capacity, Ah, when known.
    pub capacity_ah: Option<f64>,
}

/// A bank that cannot be used: the key at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankConfigError {
    /// The dotted key (`banks[1].packs`).
    pub key: String,
    /// Why.
    pub reason: String,
}

/// Ratings and capacity as the pack's own profile gives them: a simulated
/// pack's from its `[packs.sim]` (its initial current limits, its usable
/// capacity), a Modbus pack's from its device profile's `max_charge_a`,
/// `max_discharge_a` and `capacity_ah`; none for the other drivers.
fn profile_rating(pack: &PackConfig) -> (Option<f64>, Option<f64>, Option<f64>) {
    match &pack.driver {
        DriverConfig::Sim(sim) => {
            let sim = &sim.sim;
            (
                Some(sim.charge_current_limit_a),
                Some(sim.discharge_current_limit_a),
                Some(sim.capacity_ah * sim.soh_pct / 100.0),
            )
        }
        DriverConfig::Modbus(modbus) => match packgate_drivers::profile::resolve(&modbus.profile) {
            Ok(profile) => (
                profile.max_charge_a,
                profile.max_discharge_a,
                profile.capacity_ah,
            ),
            Err(_) => (None, None, None),
        },
        DriverConfig::Can(_)
        | DriverConfig::Sunspec(_)
        | DriverConfig::PylonAscii(_)
        | DriverConfig::Jbd(_)
        | DriverConfig::Daly(_)
        | DriverConfig::Jk(_) => (None, None, None),
    }
}

impl BankConfig {
    /// Each pack of the bank with what it brings, in the bank's order;
    /// `index` is the bank's place in `[[banks]]`, for the keys of errors.
    pub fn ratings(
        &self,
        index: usize,
        packs: &[PackConfig],
    ) -> Result<Vec<(PackId, PackRating)>, BankConfigError> {
        let key = |field: &str| format!("banks[{index}].{field}");
        self.packs
            .iter()
            .map(|id| {
                let pack = packs
                    .iter()
                    .find(|p| &p.id == id)
                    .ok_or_else(|| BankConfigError {
                        key: key("packs"),
                        reason: format!("no pack {id} in [[packs]]"),
                    })?;
                let (charge, discharge, capacity) = profile_rating(pack);
                let missing = |what: &str, field: &str| BankConfigError {
                    key: key(field),
                    reason: format!(
                        "pack {id} has no {what} rating in its profile: set {field} (A, each pack)"
                    ),
                };
                let rating = PackRating {
                    max_charge_a: charge
                        .or(self.pack_max_charge_a)
                        .ok_or_else(|| missing("charge", "pack_max_charge_a"))?,
                    max_discharge_a: discharge
                        .or(self.pack_max_discharge_a)
                        .ok_or_else(|| missing("discharge", "pack_max_discharge_a"))?,
                    capacity_ah: capacity.or(self.pack_capacity_ah),
                };
                Ok((id.clone(), rating))
            })
            .collect()
    }

    /// Checks the bank alone: its packs, its defaults, its rules.
    fn check(&self, index: usize) -> Result<(), BankConfigError> {
        let error = |field: &str, reason: String| BankConfigError {
            key: format!("banks[{index}].{field}"),
            reason,
        };
        if self.packs.is_empty() {
            return Err(error("packs", "a bank holds at least one pack".into()));
        }
        if self.packs.len() > MAX_BANK_PACKS {
            return Err(error(
                "packs",
                format!(
                    "{} packs; a bank holds at most {MAX_BANK_PACKS}",
                    self.packs.len()
                ),
            ));
        }
        for (field, value, most) in [
            ("pack_max_charge_a", self.pack_max_charge_a, 100_000.0),
            ("pack_max_discharge_a", self.pack_max_discharge_a, 100_000.0),
            ("pack_capacity_ah", self.pack_capacity_ah, 1.0e6),
        ] {
            if let Some(value) = value {
                if !(value.is_finite() && value > 0.0 && value <= most) {
                    return Err(error(
                        field,
                        format!("{value} is out of range: above 0, at most {most}"),
                    ));
                }
            }
        }
        if let Some(problem) = self.limits.problem() {
            return Err(error(&rules_key(&problem), problem));
        }
        if let Some((field, reason)) = self.inverter.as_ref().and_then(InverterConfig::problem) {
            return Err(error(&format!("inverter.{field}"), reason));
        }
        if self.limits.min_online_packs > self.packs.len() {
            return Err(error(
                "limits.min_online_packs",
                format!(
                    "{} packs must be online, but the bank holds {}: no current would ever flow",
                    self.limits.min_online_packs,
                    self.packs.len()
                ),
            ));
        }
        Ok(())
    }
}

/// The key under `limits` that `problem` (from [`LimitRules::problem`])
/// names first: `limits.chemistry.<field>`, `limits.<field>`, or `limits`.
fn rules_key(problem: &str) -> String {
    let first = problem.split_whitespace().next().unwrap_or_default();
    let fields = |value: Result<toml::Table, toml::ser::Error>| -> Vec<String> {
        value
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    };
    let rules = LimitRules::default();
    if fields(toml::Table::try_from(rules.chemistry))
        .iter()
        .any(|f| f == first)
    {
        format!("limits.chemistry.{first}")
    } else if fields(toml::Table::try_from(rules))
        .iter()
        .any(|f| f == first)
    {
        format!("limits.{first}")
    } else {
        "limits".to_owned()
    }
}

/// Checks every bank: unique names, packs that exist and are in one bank
/// only, usable rules, and a rating for every pack.
pub(super) fn validate(
    banks: &[BankConfig],
    packs: &[PackConfig],
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let known: HashSet<&PackId> = packs.iter().map(|p| &p.id).collect();
    let mut names = HashSet::new();
    let mut owner: HashMap<&PackId, &BankId> = HashMap::new();
    for (index, bank) in banks.iter().enumerate() {
        let at = |field: &str| format!("banks[{index}].{field}");
        if !names.insert(&bank.name) {
            return Err(invalid(
                &at("name"),
                format!("bank name {} is used twice", bank.name),
            ));
        }
        bank.check(index).map_err(|e| invalid(&e.key, e.reason))?;
        // A command names its target by id: a bank and a pack of one name
        // would make it ambiguous.
        if known.iter().any(|pack| pack.as_str() == bank.name.as_str()) {
            return Err(invalid(
                &at("name"),
                format!(
                    "bank name {} is also a pack's id: commands name a pack or a bank by it, \
                     so the two must differ",
                    bank.name
                ),
            ));
        }
        for pack in &bank.packs {
            if !known.contains(pack) {
                return Err(invalid(
                    &at("packs"),
                    format!("no pack {pack} in [[packs]]"),
                ));
            }
            if let Some(other) = owner.insert(pack, &bank.name) {
                let reason = if other == &bank.name {
                    format!("pack {pack} is listed twice")
                } else {
                    format!("pack {pack} is already in bank {other}: a pack is in one bank at most")
                };
                return Err(invalid(&at("packs"), reason));
            }
        }
        bank.ratings(index, packs)
            .map_err(|e| invalid(&e.key, e.reason))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "bank_tests.rs"]
mod tests;
