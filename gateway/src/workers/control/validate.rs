//! Validation of a command before anything is written: the pack exists, the
//! setting is writable in its profile, the value is within the profile's
//! bounds and the site's, and the command is neither expired nor from the
//! far future. Pure: the caller passes the clock.
//!
//! The control worker checks every command here before it dispatches it,
//! and the bus owner of the collect worker checks every write request here
//! again before it writes ([`WriteCheck`]): a request that reached the bus
//! subject some other way is held to the same rules.

use std::collections::{BTreeMap, HashMap};

use packgate_drivers::bms;
use packgate_drivers::profile::{self, Profile, ProfileError};
use packgate_drivers::ValidatedSetting;
use packgate_protocol::{Command, PackId};

use super::bank::{bank_table, settable, BankTable};
use crate::config::{BankConfig, ControlConfig, DriverConfig, PackConfig, SiteLimit};

/// The profile a simulated pack answers to: its settings are the ones the
/// simulator implements.
pub const SIM_PROFILE: &str = "packgate-sim";

/// One writable setting of one pack, with the profile's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingBounds {
    /// The setting's name.
    pub name: String,
    /// Smallest value the profile accepts.
    pub min: f64,
    /// Largest value the profile accepts.
    pub max: f64,
    /// Unit of the value.
    pub unit: String,
}

/// The writable settings of every configured pack; a pack with none (a CAN
/// pack) has an empty list.
pub type PackTable = HashMap<PackId, Vec<SettingBounds>>;

/// The rules a command is checked against, besides the pack table. The
/// default has no site limits and accepts no expiry at all (every command
/// is refused as expiring too far ahead): a policy must come from the
/// configuration to let anything through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Site-wide bounds per setting name.
    pub site_limits: BTreeMap<String, SiteLimit>,
    /// Furthest a command's expiry may be from now, milliseconds.
    pub max_ttl_ms: i64,
    /// Furthest a command's issue time may be ahead of now, milliseconds.
    pub max_skew_ms: i64,
    /// The banks commands may lower the site limits of, by name.
    pub banks: BankTable,
}

impl Policy {
    /// The policy of the `[control]` section.
    pub fn of(control: &ControlConfig) -> Self {
        let ms = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        Self {
            site_limits: control.site_limits.clone(),
            max_ttl_ms: ms(control.max_command_ttl_s.saturating_mul(1000)),
            max_skew_ms: ms(control.max_clock_skew_ms),
            banks: BankTable::new(),
        }
    }

    /// The same policy with `banks` as command targets too.
    pub fn with_banks(mut self, banks: &[BankConfig]) -> Self {
        self.banks = bank_table(banks);
        self
    }
}

/// Why a command is refused; the text names the problem and is sent back
/// to the requester.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// A write request whose subject names one pack and whose command
    /// names another.
    #[error("the request was sent for pack {subject} but the command names pack {command}")]
    WrongPack {
        /// The pack of the subject the request arrived on.
        subject: PackId,
        /// The pack the command names.
        command: PackId,
    },
    /// No configured pack has this id.
    #[error("unknown pack {0}")]
    UnknownPack(PackId),
    /// The pack's profile does not list this setting as writable.
    #[error("setting {setting} is not writable on pack {pack} (writable: {writable})")]
    NotWritable {
        /// The pack.
        pack: PackId,
        /// The setting asked for.
        setting: String,
        /// The settings that are writable, comma-separated, or "none".
        writable: String,
    },
    /// A bank has no such setting.
    #[error("setting {setting} cannot be set on bank {bank} (settable: {settable})", settable = settable())]
    NotABankSetting {
        /// The bank.
        bank: PackId,
        /// The setting asked for.
        setting: String,
    },
    /// Outside what the bank's configuration allows.
    #[error(
        "{setting} = {value} is outside what bank {bank} allows, {min} to {max} {unit}: \
         a command may lower a site's limit, never raise it past its configuration"
    )]
    OutsideBankLimit {
        /// The bank.
        bank: PackId,
        /// The setting.
        setting: String,
        /// The value asked for.
        value: f64,
        /// The smallest allowed.
        min: f64,
        /// The largest allowed: the configured value.
        max: f64,
        /// The unit.
        unit: String,
    },
    /// NaN or infinite.
    #[error("value {0} of {1} is not a finite number")]
    NotFinite(f64, String),
    /// Outside the profile's bounds.
    #[error("{setting} = {value} is outside the profile's bounds {min} to {max} {unit}")]
    OutOfProfileBounds {
        /// The setting.
        setting: String,
        /// The value asked for.
        value: f64,
        /// The profile's minimum.
        min: f64,
        /// The profile's maximum.
        max: f64,
        /// The unit.
        unit: String,
    },
    /// Outside the site limit of the configuration.
    #[error("{setting} = {value} is outside the site limit {min} to {max} {unit}")]
    OutsideSiteLimit {
        /// The setting.
        setting: String,
        /// The value asked for.
        value: f64,
        /// The site's minimum.
        min: f64,
        /// The site's maximum.
        max: f64,
        /// The unit.
        unit: String,
    },
    /// The expiry has passed.
    #[error("command expired {ago_ms} ms ago")]
    Expired {
        /// How long ago it expired.
        ago_ms: i64,
    },
    /// The expiry is further in the future than the configuration allows.
    #[error("command expires in {in_ms} ms, beyond the longest allowed ({max_ms} ms)")]
    ExpiryTooFar {
        /// Time until its expiry.
        in_ms: i64,
        /// The longest allowed.
        max_ms: i64,
    },
    /// Issued in the future beyond the allowed clock skew.
    #[error("command issued {ahead_ms} ms in the future (clock skew allowed: {max_ms} ms)")]
    IssuedInFuture {
        /// How far ahead of our clock.
        ahead_ms: i64,
        /// The skew allowed.
        max_ms: i64,
    },
}

/// The profile a pack's writes are checked against: the modbus pack's
/// own, the simulator's for a sim pack, none for the other drivers.
fn profile_name(pack: &PackConfig) -> Option<&str> {
    match &pack.driver {
        DriverConfig::Sim(_) => Some(SIM_PROFILE),
        DriverConfig::Modbus(modbus) => Some(modbus.profile.as_str()),
        _ => None,
    }
}

/// The writable settings of a pack read without a profile: the charge and
/// discharge switches of a JBD or JK BMS (0 holds the switch open, 1
/// leaves it to the BMS); none for the others, whose protocols have no
/// write packgate trusts.
fn driver_settings(pack: &PackConfig) -> Vec<SettingBounds> {
    match &pack.driver {
        DriverConfig::Jbd(_) | DriverConfig::Jk(_) => bms::SWITCH_SETTINGS
            .iter()
            .map(|name| SettingBounds {
                name: (*name).to_owned(),
                min: 0.0,
                max: 1.0,
                unit: String::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The writable settings of one configured pack, from its profile or its
/// driver.
pub fn pack_settings(pack: &PackConfig) -> Result<Vec<SettingBounds>, ProfileError> {
    match profile_name(pack) {
        None => Ok(driver_settings(pack)),
        Some(name) => Ok(bounds_of(&profile::resolve(name)?)),
    }
}

/// Builds the pack table from the configured packs: a modbus pack's
/// profile settings, the simulator's for a sim pack, a JBD or JK pack's
/// switches, none for the others.
pub fn pack_table(packs: &[PackConfig]) -> Result<PackTable, ProfileError> {
    let mut profiles: HashMap<&str, Vec<SettingBounds>> = HashMap::new();
    let mut table = PackTable::with_capacity(packs.len());
    for pack in packs {
        let settings = match profile_name(pack) {
            None => driver_settings(pack),
            Some(name) => match profiles.get(name) {
                Some(settings) => settings.clone(),
                None => {
                    let settings = bounds_of(&profile::resolve(name)?);
                    profiles.insert(name, settings.clone());
                    settings
                }
            },
        };
        table.insert(pack.id.clone(), settings);
    }
    Ok(table)
}

/// The writable settings of a profile.
pub fn bounds_of(profile: &Profile) -> Vec<SettingBounds> {
    profile
        .settings
        .iter()
        .map(|s| SettingBounds {
            name: s.name.clone(),
            min: s.min,
            max: s.max,
            unit: s.unit.clone(),
        })
        .collect()
}

/// Checks `command` at `now_ms`; the setting to write, or why not.
pub fn validate(
    command: &Command,
    now_ms: i64,
    packs: &PackTable,
    policy: &Policy,
) -> Result<ValidatedSetting, Rejection> {
    if policy.banks.contains_key(&command.pack_id) {
        return validate_bank(command, now_ms, policy);
    }
    let settings = packs
        .get(&command.pack_id)
        .ok_or_else(|| Rejection::UnknownPack(command.pack_id.clone()))?;
    let name = command.setting.0.as_str();
    let bounds = settings.iter().find(|s| s.name == name).ok_or_else(|| {
        let writable: Vec<&str> = settings.iter().map(|s| s.name.as_str()).collect();
        Rejection::NotWritable {
            pack: command.pack_id.clone(),
            setting: name.to_owned(),
            writable: if writable.is_empty() {
                "none".to_owned()
            } else {
                writable.join(", ")
            },
        }
    })?;
    let value = command.value;
    if !value.is_finite() {
        return Err(Rejection::NotFinite(value, name.to_owned()));
    }
    if value < bounds.min || value > bounds.max {
        return Err(Rejection::OutOfProfileBounds {
            setting: name.to_owned(),
            value,
            min: bounds.min,
            max: bounds.max,
            unit: bounds.unit.clone(),
        });
    }
    if let Some(limit) = policy.site_limits.get(name) {
        if value < limit.min || value > limit.max {
            return Err(Rejection::OutsideSiteLimit {
                setting: name.to_owned(),
                value,
                min: limit.min,
                max: limit.max,
                unit: bounds.unit.clone(),
            });
        }
    }
    check_time(command, now_ms, policy)?;
    Ok(ValidatedSetting {
        name: command.setting.clone(),
        value,
    })
}

/// Checks a command to a bank at `now_ms`: a setting the bank has, a
/// finite value within what its configuration allows, and the time rules.
fn validate_bank(
    command: &Command,
    now_ms: i64,
    policy: &Policy,
) -> Result<ValidatedSetting, Rejection> {
    let bank = &command.pack_id;
    let name = command.setting.0.as_str();
    let range = policy
        .banks
        .get(bank)
        .and_then(|bounds| bounds.range(name))
        .ok_or_else(|| Rejection::NotABankSetting {
            bank: bank.clone(),
            setting: name.to_owned(),
        })?;
    let value = command.value;
    if !value.is_finite() {
        return Err(Rejection::NotFinite(value, name.to_owned()));
    }
    if value < range.min || value > range.max {
        return Err(Rejection::OutsideBankLimit {
            bank: bank.clone(),
            setting: name.to_owned(),
            value,
            min: range.min,
            max: range.max,
            unit: range.unit.to_owned(),
        });
    }
    check_time(command, now_ms, policy)?;
    Ok(ValidatedSetting {
        name: command.setting.clone(),
        value,
    })
}

/// The time rules: not expired, not expiring too far ahead, not issued
/// too far in the future.
fn check_time(command: &Command, now_ms: i64, policy: &Policy) -> Result<(), Rejection> {
    if command.expires_at_ms <= now_ms {
        return Err(Rejection::Expired {
            ago_ms: now_ms.saturating_sub(command.expires_at_ms),
        });
    }
    let expires_in = command.expires_at_ms.saturating_sub(now_ms);
    if expires_in > policy.max_ttl_ms {
        return Err(Rejection::ExpiryTooFar {
            in_ms: expires_in,
            max_ms: policy.max_ttl_ms,
        });
    }
    let ahead = command.issued_at_ms.saturating_sub(now_ms);
    if ahead > policy.max_skew_ms {
        return Err(Rejection::IssuedInFuture {
            ahead_ms: ahead,
            max_ms: policy.max_skew_ms,
        });
    }
    Ok(())
}

/// What a bus owner checks a write request against before it writes: the
/// same rules as the control worker (profile bounds, site limits, expiry),
/// and that the request's subject and its command name the same pack. The
/// default knows no pack, so it refuses every write.
#[derive(Debug, Clone, Default)]
pub struct WriteCheck {
    table: PackTable,
    policy: Policy,
}

impl WriteCheck {
    /// The check of a pack table and a policy.
    pub fn new(table: PackTable, policy: Policy) -> Self {
        Self { table, policy }
    }

    /// Checks a write request for `subject_pack` carrying `command`, at
    /// `now_ms`; the setting to write, or why not.
    pub fn check(
        &self,
        subject_pack: &PackId,
        command: &Command,
        now_ms: i64,
    ) -> Result<ValidatedSetting, Rejection> {
        if &command.pack_id != subject_pack {
            return Err(Rejection::WrongPack {
                subject: subject_pack.clone(),
                command: command.pack_id.clone(),
            });
        }
        validate(command, now_ms, &self.table, &self.policy)
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
