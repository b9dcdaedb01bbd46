//! Commands to a bank: lowering one of its site limits through the same
//! validated path as a pack's setting. The command names the bank where a
//! pack command names the pack, and one of the keys of the bank's
//! `[banks.limits]` it lowers ([`BANK_SETTINGS`]): the value must be a
//! finite number within what the configuration allows (an operator may
//! lower a site, never raise it past its configuration). The control
//! worker checks it here, audits it like any command and hands it to the
//! bank worker, which checks it again before it applies it.

use std::collections::BTreeMap;

use packgate_protocol::{
    BankId, PackId, ABSORPTION_VOLTAGE_V, BANK_SETTINGS, SITE_MAX_CHARGE_A, SITE_MAX_DISCHARGE_A,
};

use crate::bank::LimitRules;
use crate::config::BankConfig;

/// What commands may set on one bank: the range of each of its settings,
/// from its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BankBounds {
    /// The bank.
    pub bank: BankId,
    /// The configured `site_max_charge_a`, A: the most a command may set.
    pub site_max_charge_a: f64,
    /// The configured `site_max_discharge_a`, A.
    pub site_max_discharge_a: f64,
    /// The configured `absorption_voltage_v`, V: the highest charge
    /// voltage a command may set.
    pub absorption_voltage_v: f64,
    /// The lowest charge voltage a command may set, V: the configured
    /// `discharge_voltage_v` (a charge voltage below the voltage the bank
    /// may be discharged to makes no sense).
    pub min_charge_voltage_v: f64,
}

/// One setting's range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Smallest value accepted.
    pub min: f64,
    /// Largest value accepted.
    pub max: f64,
    /// Unit of the value.
    pub unit: &'static str,
}

impl BankBounds {
    /// The bounds a bank's configured rules give.
    pub fn of(bank: BankId, rules: &LimitRules) -> Self {
        Self {
            bank,
            site_max_charge_a: rules.site_max_charge_a,
            site_max_discharge_a: rules.site_max_discharge_a,
            absorption_voltage_v: rules.absorption_voltage_v,
            min_charge_voltage_v: rules.discharge_voltage_v.min(rules.absorption_voltage_v),
        }
    }

    /// The range of `setting`; `None` for a setting a bank does not have.
    pub fn range(&self, setting: &str) -> Option<Range> {
        let amps = |max: f64| Range {
            min: 0.0,
            max,
            unit: "A",
        };
        match setting {
            SITE_MAX_CHARGE_A => Some(amps(self.site_max_charge_a)),
            SITE_MAX_DISCHARGE_A => Some(amps(self.site_max_discharge_a)),
            ABSORPTION_VOLTAGE_V => Some(Range {
                min: self.min_charge_voltage_v,
                max: self.absorption_voltage_v,
                unit: "V",
            }),
            _ => None,
        }
    }
}

/// The configured banks by the id commands name them with.
pub type BankTable = BTreeMap<PackId, BankBounds>;

/// The bank table of the `[[banks]]` sections.
pub fn bank_table(banks: &[BankConfig]) -> BankTable {
    banks
        .iter()
        .filter_map(|bank| {
            // A bank name follows the pack id rules, so this never skips.
            let id = PackId::new(bank.name.as_str()).ok()?;
            Some((id, BankBounds::of(bank.name.clone(), &bank.limits)))
        })
        .collect()
}

/// The settings a bank has, for the operator.
pub fn settable() -> String {
    BANK_SETTINGS.join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn each_setting_ranges_up_to_the_configuration() {
        let rules = LimitRules {
            site_max_charge_a: 100.0,
            site_max_discharge_a: 80.0,
            ..LimitRules::default()
        };
        let bounds = BankBounds::of(BankId::new("house").unwrap(), &rules);
        let charge = bounds.range(SITE_MAX_CHARGE_A).unwrap();
        assert_eq!((charge.min, charge.max, charge.unit), (0.0, 100.0, "A"));
        assert_eq!(bounds.range(SITE_MAX_DISCHARGE_A).unwrap().max, 80.0);
        let volts = bounds.range(ABSORPTION_VOLTAGE_V).unwrap();
        assert_eq!((volts.min, volts.max, volts.unit), (48.0, 55.2, "V"));
        assert!(bounds.range("charge_current_limit_a").is_none());
        assert_eq!(
            settable(),
            "site_max_charge_a, site_max_discharge_a, absorption_voltage_v"
        );
    }

    #[test]
    fn a_command_to_a_bank_is_checked_against_its_configuration() {
        use packgate_protocol::{Command, CommandId, CommandOrigin, SettingName};

        use super::super::validate::{validate, PackTable, Policy, Rejection};

        const NOW: i64 = 1_700_000_000_000;
        let bank = BankConfig {
            name: BankId::new("house").unwrap(),
            packs: vec![PackId::new("p1").unwrap()],
            pack_max_charge_a: None,
            pack_max_discharge_a: None,
            pack_capacity_ah: None,
            limits: LimitRules::default(),
            inverter: None,
        };
        let policy = Policy {
            max_ttl_ms: 60_000,
            max_skew_ms: 5_000,
            ..Policy::default()
        }
        .with_banks(&[bank]);
        let check = |setting: &str, value: f64, expires_at_ms: i64| {
            let command = Command {
                id: CommandId("c".into()),
                pack_id: PackId::new("house").unwrap(),
                setting: SettingName(setting.into()),
                value,
                origin: CommandOrigin::Cloud,
                issued_at_ms: NOW,
                expires_at_ms,
            };
            validate(&command, NOW, &PackTable::new(), &policy)
        };
        let later = NOW + 10_000;
        assert_eq!(check(SITE_MAX_CHARGE_A, 40.0, later).unwrap().value, 40.0);
        check(SITE_MAX_CHARGE_A, 0.0, later).unwrap();
        check(SITE_MAX_CHARGE_A, 100.0, later).unwrap();
        check(ABSORPTION_VOLTAGE_V, 53.0, later).unwrap();
        let err = check(SITE_MAX_CHARGE_A, 100.5, later).unwrap_err();
        assert!(matches!(err, Rejection::OutsideBankLimit { max, .. } if max == 100.0));
        assert!(
            err.to_string()
                .contains("outside what bank house allows, 0 to 100 A"),
            "{err}"
        );
        assert!(matches!(
            check(SITE_MAX_DISCHARGE_A, -1.0, later).unwrap_err(),
            Rejection::OutsideBankLimit { .. }
        ));
        assert!(matches!(
            check(ABSORPTION_VOLTAGE_V, 56.0, later).unwrap_err(),
            Rejection::OutsideBankLimit { .. }
        ));
        assert!(matches!(
            check(SITE_MAX_CHARGE_A, f64::NAN, later).unwrap_err(),
            Rejection::NotFinite(..)
        ));
        let err = check("charge_current_limit_a", 1.0, later).unwrap_err();
        assert!(
            err.to_string().contains("settable: site_max_charge_a"),
            "{err}"
        );
        assert!(matches!(
            check(SITE_MAX_CHARGE_A, 40.0, NOW).unwrap_err(),
            Rejection::Expired { .. }
        ));
        // A pack of the same policy is still a pack: unknown here.
        let mut command = Command {
            id: CommandId("c".into()),
            pack_id: PackId::new("p1").unwrap(),
            setting: SettingName(SITE_MAX_CHARGE_A.into()),
            value: 1.0,
            origin: CommandOrigin::Cloud,
            issued_at_ms: NOW,
            expires_at_ms: later,
        };
        assert!(matches!(
            validate(&command, NOW, &PackTable::new(), &policy).unwrap_err(),
            Rejection::UnknownPack(_)
        ));
        command.pack_id = PackId::new("house").unwrap();
        assert!(validate(&command, NOW, &PackTable::new(), &Policy::default()).is_err());
    }
}
