//! The `[control]` section of the configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Site-wide bounds of one setting, applied on top of the profile's (the
/// installer's limits: the cabling, the inverter, the fuse).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteLimit {
    /// Smallest value accepted, in the setting's unit.
    pub min: f64,
    /// Largest value accepted, in the setting's unit.
    pub max: f64,
}

/// The control worker: validation, audit and dispatch of commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// The audit database file; relative paths are under `data_dir`.
    pub database: PathBuf,
    /// Longest a dispatch to a pack's bus may take, milliseconds; a command
    /// closer to its expiry gets only the time it has left.
    pub default_deadline_ms: u64,
    /// Commands whose expiry is further than this in the future are
    /// refused, seconds.
    pub max_command_ttl_s: u64,
    /// How far in the future a command's `issued_at_ms` may be (the
    /// sender's clock running ahead of ours), milliseconds.
    pub max_clock_skew_ms: u64,
    /// Site-wide bounds per setting name, applied on top of each profile's
    /// own, such as `charge_current_limit_a = { min = 0, max = 80 }`.
    pub site_limits: BTreeMap<String, SiteLimit>,
    /// Audit rows older than this are deleted, days; 0 keeps everything.
    pub audit_retention_days: u32,
    /// Largest the audit database may grow, bytes: past it the oldest
    /// completed rows are deleted (whatever their age) and the file shrinks
    /// back. Its write-ahead log comes on top (a few MB at most).
    pub audit_max_bytes: u64,
    /// Commands each origin (the cloud, the box) may send per second on
    /// average; more are refused with a `rejected` reply, counted
    /// (`rate_limited`) and not audited one by one.
    pub commands_per_s_per_origin: u32,
    /// Commands each origin may send at once before the rate applies.
    pub command_burst_per_origin: u32,
    /// Most commands handled at once; more wait for a free slot, so one
    /// slow pack does not hold up commands to the others.
    pub max_in_flight: usize,
}

/// Smallest `audit_max_bytes` accepted: room for many thousand commands.
pub const MIN_AUDIT_BYTES: u64 = 1 << 20;

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("control.db"),
            default_deadline_ms: 5_000,
            max_command_ttl_s: 3_600,
            max_clock_skew_ms: 5_000,
            site_limits: BTreeMap::new(),
            audit_retention_days: 365,
            audit_max_bytes: 64 << 20,
            commands_per_s_per_origin: 10,
            command_burst_per_origin: 50,
            max_in_flight: 16,
        }
    }
}

/// A `[control]` value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ControlConfigError {
    /// The dotted key at fault, such as `control.default_deadline_ms`.
    pub key: String,
    /// Why.
    pub reason: String,
}

impl ControlConfig {
    /// The default dispatch deadline.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_millis(self.default_deadline_ms)
    }

    /// Checks ranges; the key in the error is dotted from the file's root
    /// (`control.…`).
    pub fn validate(&self) -> Result<(), ControlConfigError> {
        let invalid = |key: &str, reason: &str| ControlConfigError {
            key: format!("control.{key}"),
            reason: reason.to_owned(),
        };
        if self.database.as_os_str().is_empty() {
            return Err(invalid("database", "must name a file"));
        }
        if self.default_deadline_ms == 0 {
            return Err(invalid("default_deadline_ms", "must be above 0"));
        }
        if self.max_command_ttl_s == 0 {
            return Err(invalid("max_command_ttl_s", "must be above 0"));
        }
        if self.audit_max_bytes < MIN_AUDIT_BYTES {
            return Err(invalid(
                "audit_max_bytes",
                &format!("must be at least {MIN_AUDIT_BYTES} (1 MiB)"),
            ));
        }
        if self.commands_per_s_per_origin == 0 {
            return Err(invalid("commands_per_s_per_origin", "must be at least 1"));
        }
        if self.command_burst_per_origin == 0 {
            return Err(invalid("command_burst_per_origin", "must be at least 1"));
        }
        if self.max_in_flight == 0 {
            return Err(invalid("max_in_flight", "must be at least 1"));
        }
        for (name, limit) in &self.site_limits {
            if !limit.min.is_finite() || !limit.max.is_finite() || limit.min > limit.max {
                return Err(invalid(
                    &format!("site_limits.{name}"),
                    "min and max must be finite numbers with min <= max",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_an_empty_section_gives_them() {
        let config: ControlConfig = toml::from_str("").unwrap();
        assert_eq!(config, ControlConfig::default());
        config.validate().unwrap();
    }

    #[test]
    fn site_limits_parse_and_unknown_keys_are_refused() {
        let text = "default_deadline_ms = 2000\n\
                    [site_limits]\n\
                    charge_current_limit_a = { min = 0, max = 80 }\n";
        let config: ControlConfig = toml::from_str(text).unwrap();
        assert_eq!(config.default_deadline(), Duration::from_secs(2));
        assert_eq!(
            config.site_limits["charge_current_limit_a"],
            SiteLimit {
                min: 0.0,
                max: 80.0
            }
        );
        let err = toml::from_str::<ControlConfig>("deadline_ms = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("deadline_ms"), "{err}");
        let err =
            toml::from_str::<ControlConfig>("[site_limits]\nx = { min = 0, max = 1, step = 2 }\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("step"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let mut config = ControlConfig {
            default_deadline_ms: 0,
            ..ControlConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().key,
            "control.default_deadline_ms"
        );
        config.default_deadline_ms = 1;
        config.audit_max_bytes = MIN_AUDIT_BYTES - 1;
        assert_eq!(
            config.validate().unwrap_err().key,
            "control.audit_max_bytes"
        );
        config.audit_max_bytes = MIN_AUDIT_BYTES;
        config.commands_per_s_per_origin = 0;
        assert_eq!(
            config.validate().unwrap_err().key,
            "control.commands_per_s_per_origin"
        );
        config.commands_per_s_per_origin = 1;
        config
            .site_limits
            .insert("x".into(), SiteLimit { min: 2.0, max: 1.0 });
        assert_eq!(config.validate().unwrap_err().key, "control.site_limits.x");
    }
}
