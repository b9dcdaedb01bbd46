//! The `[monitor]` section: the monitor's store and how often every worker
//! reports its metrics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The monitor worker and the metrics snapshots of every worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// The monitor's database file; relative paths are under `data_dir`.
    pub database: PathBuf,
    /// Snapshots and events older than this are deleted, days; 0 keeps
    /// everything.
    pub retention_days: u32,
    /// How often every worker publishes its metrics snapshot, seconds; a
    /// worker with no snapshot in three intervals is shown as missing.
    pub snapshot_interval_s: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("monitor.db"),
            retention_days: 30,
            snapshot_interval_s: 10,
        }
    }
}

impl MonitorConfig {
    /// The database file, under `data_dir` unless absolute.
    pub fn database_path(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(&self.database)
    }

    /// The snapshot period (at least one second).
    pub fn snapshot_interval(&self) -> Duration {
        Duration::from_secs(self.snapshot_interval_s.max(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: MonitorConfig = toml::from_str("").unwrap();
        assert_eq!(config, MonitorConfig::default());
        assert_eq!(config.snapshot_interval(), Duration::from_secs(10));
        assert_eq!(
            config.database_path(Path::new("/d")),
            PathBuf::from("/d/monitor.db")
        );
        let err = toml::from_str::<MonitorConfig>("retention = 3").unwrap_err();
        assert!(err.to_string().contains("retention"), "{err}");
    }
}
