//! The site limits commands have lowered, per bank, and the file that
//! keeps them across restarts: `bank-limits.toml` in the data directory,
//! one table per bank with the keys of `[banks.limits]` it lowers,
//! replaced atomically (written beside, synced, renamed, the directory
//! synced) before a command is answered as applied.
//!
//! What applies is the lower of the configuration and the override: a
//! configuration lowered below an override wins, and an override set back
//! to the configured value is removed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use packgate_protocol::{
    BankId, SiteOverrides, ABSORPTION_VOLTAGE_V, SITE_MAX_CHARGE_A, SITE_MAX_DISCHARGE_A,
};
use serde::{Deserialize, Serialize};

use crate::bank::LimitRules;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "bank-limits.toml";

/// One bank's lowered limits; `None` where the configuration applies.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The charge current cap, A.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_max_charge_a: Option<f64>,
    /// The discharge current cap, A.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_max_discharge_a: Option<f64>,
    /// The charge voltage cap, V.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absorption_voltage_v: Option<f64>,
}

/// Every bank's override, by bank.
pub type Overrides = BTreeMap<BankId, Override>;

/// Why the overrides cannot be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a table of bank overrides.
    #[error(
        "{path}: {reason} (fix or remove the file: without it each bank has its configured limits)"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Override {
    /// The slot of `setting`; `None` for a setting a bank does not have.
    fn slot(&mut self, setting: &str) -> Option<&mut Option<f64>> {
        match setting {
            SITE_MAX_CHARGE_A => Some(&mut self.site_max_charge_a),
            SITE_MAX_DISCHARGE_A => Some(&mut self.site_max_discharge_a),
            ABSORPTION_VOLTAGE_V => Some(&mut self.absorption_voltage_v),
            _ => None,
        }
    }

    /// This override with `setting` set to `value` under `configured`: a
    /// value at or above the configured one removes it. `None` for a
    /// setting a bank does not have.
    pub fn with(mut self, setting: &str, value: f64, configured: &LimitRules) -> Option<Self> {
        let most = configured_value(configured, setting)?;
        let slot = self.slot(setting)?;
        *slot = (value < most).then_some(value);
        Some(self)
    }

    /// Whether nothing is lowered.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The rules in effect: `configured` with each lowered limit applied
    /// (the float voltage kept at or below the absorption voltage).
    pub fn apply(&self, configured: &LimitRules) -> LimitRules {
        let lower = |configured: f64, by: Option<f64>| by.map_or(configured, |v| v.min(configured));
        let absorption_voltage_v =
            lower(configured.absorption_voltage_v, self.absorption_voltage_v);
        LimitRules {
            site_max_charge_a: lower(configured.site_max_charge_a, self.site_max_charge_a),
            site_max_discharge_a: lower(configured.site_max_discharge_a, self.site_max_discharge_a),
            absorption_voltage_v,
            float_voltage_v: configured.float_voltage_v.min(absorption_voltage_v),
            ..*configured
        }
    }

    /// What a bank state carries: the limits in effect where lowered.
    pub fn in_state(&self, configured: &LimitRules) -> SiteOverrides {
        let effective = self.apply(configured);
        // A state carries f32, like its other limits.
        #[allow(clippy::cast_possible_truncation)]
        let f = |set: Option<f64>, value: f64| set.map(|_| value as f32);
        SiteOverrides {
            site_max_charge_a: f(self.site_max_charge_a, effective.site_max_charge_a),
            site_max_discharge_a: f(self.site_max_discharge_a, effective.site_max_discharge_a),
            absorption_voltage_v: f(self.absorption_voltage_v, effective.absorption_voltage_v),
        }
    }
}

/// The configured value of a bank `setting`.
pub fn configured_value(rules: &LimitRules, setting: &str) -> Option<f64> {
    match setting {
        SITE_MAX_CHARGE_A => Some(rules.site_max_charge_a),
        SITE_MAX_DISCHARGE_A => Some(rules.site_max_discharge_a),
        ABSORPTION_VOLTAGE_V => Some(rules.absorption_voltage_v),
        _ => None,
    }
}

/// The file of `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the overrides at `path`; none when the file does not exist.
pub fn load(path: &Path) -> Result<Overrides, OverrideError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Overrides::new()),
        Err(source) => {
            return Err(OverrideError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let overrides: Overrides = toml::from_str(&text).map_err(|e| OverrideError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let finite = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v >= 0.0);
    if let Some((bank, _)) = overrides.iter().find(|(_, o)| {
        !(finite(o.site_max_charge_a)
            && finite(o.site_max_discharge_a)
            && finite(o.absorption_voltage_v))
    }) {
        return Err(OverrideError::Invalid {
            path: path.to_owned(),
            reason: format!("bank {bank}: a limit that is not a number of zero or more"),
        });
    }
    Ok(overrides)
}

/// Replaces the file at `path` with `overrides`, atomically: written
/// beside, synced, renamed over it, and the directory synced, so a power
/// cut leaves the old file or the new one.
pub fn save(path: &Path, overrides: &Overrides) -> Result<(), OverrideError> {
    let io = |source| OverrideError::Io {
        path: path.to_owned(),
        source,
    };
    let kept: Overrides = overrides
        .iter()
        .filter(|(_, o)| !o.is_empty())
        .map(|(bank, o)| (bank.clone(), *o))
        .collect();
    let mut text = String::from(
        "# The site limits lowered by commands (packgate command --bank), per bank.\n\
         # Written by the bank worker; a limit here applies while it is below the\n\
         # configuration's.\n",
    );
    text.push_str(&toml::to_string(&kept).map_err(|e| OverrideError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })?);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("toml.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_lowered_limit_applies_below_the_configuration_and_goes_at_it() {
        let rules = LimitRules::default();
        let o = Override::default()
            .with(SITE_MAX_CHARGE_A, 40.0, &rules)
            .unwrap()
            .with(ABSORPTION_VOLTAGE_V, 53.0, &rules)
            .unwrap();
        let effective = o.apply(&rules);
        assert_eq!(effective.site_max_charge_a, 40.0);
        assert_eq!(effective.site_max_discharge_a, 100.0);
        assert_eq!(effective.absorption_voltage_v, 53.0);
        assert_eq!(
            effective.float_voltage_v, 53.0,
            "float never above absorption"
        );
        let state = o.in_state(&rules);
        assert_eq!(state.site_max_charge_a, Some(40.0));
        assert_eq!(state.site_max_discharge_a, None);
        // A configuration lowered below the override wins.
        let lower = LimitRules {
            site_max_charge_a: 30.0,
            ..rules
        };
        assert_eq!(o.apply(&lower).site_max_charge_a, 30.0);
        // Back to the configured value: the override is gone.
        let back = o.with(SITE_MAX_CHARGE_A, 100.0, &rules).unwrap();
        assert_eq!(back.site_max_charge_a, None);
        assert!(o.with("charge_current_limit_a", 1.0, &rules).is_none());
    }

    #[test]
    fn the_file_keeps_them_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert!(load(&path).unwrap().is_empty());
        let house = BankId::new("house").unwrap();
        let mut all = Overrides::new();
        all.insert(
            house.clone(),
            Override {
                site_max_charge_a: Some(40.5),
                ..Override::default()
            },
        );
        all.insert(BankId::new("shed").unwrap(), Override::default());
        save(&path, &all).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("[house]\nsite_max_charge_a = 40.5\n"),
            "{text}"
        );
        let read = load(&path).unwrap();
        assert_eq!(read.len(), 1, "an empty override is not kept");
        assert_eq!(read[&house].site_max_charge_a, Some(40.5));
        std::fs::write(&path, "[house]\nsite_max_charge_a = -1.0\n").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("bank house"));
        std::fs::write(&path, "[house]\ncharge = 1\n").unwrap();
        assert!(matches!(load(&path), Err(OverrideError::Invalid { .. })));
    }
}
