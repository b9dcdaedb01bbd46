//! The gateway's configuration: one TOML file, every key documented, unknown
//! keys rejected with the line they are on, defaults built in.

mod broker;
mod buses;
mod cloud;
mod collect;
mod control;
mod data;
mod durability;
mod monitor;
mod outputs;
mod packs;
mod tagged;

use std::path::{Path, PathBuf};

use packgate_protocol::PackId;
use packgate_sim::SimPackConfig;
use serde::{Deserialize, Serialize};

pub use broker::{BrokerConfig, StreamLimits, StreamsConfig};
pub use buses::{
    BusConfig, BusLinkConfig, ModbusRtuBusConfig, ModbusTcpBusConfig, SerialParity, SlcanBusConfig,
    SocketcanBusConfig,
};
pub use cloud::{CloudConfig, CloudConfigError};
pub use collect::CollectConfig;
pub use control::{ControlConfig, ControlConfigError, SiteLimit, MIN_AUDIT_BYTES};
pub use data::DataConfig;
pub use durability::Durability;
pub use monitor::MonitorConfig;
pub use outputs::{LedConfig, OutputsConfig, OutputsConfigError, PinConfig, RelayConfig};
pub use packs::{CanDriverConfig, DriverConfig, ModbusDriverConfig, PackConfig, SimDriverConfig};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or holds an unknown key or a wrong type; the
    /// message names the key, line and column.
    #[error("{origin}: {source}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The parser's error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A value is out of its allowed range or contradicts another.
    #[error("{origin}: {key}: {reason}")]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// The dotted key at fault.
        key: String,
        /// Why.
        reason: String,
    },
}

/// The whole configuration of one gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the databases and, with the embedded broker, its store.
    pub data_dir: PathBuf,
    /// What a power cut may cost: `"fast"` (fewest disk writes; the last
    /// commits before the cut can be lost) or `"safe"` (every commit
    /// synced). See "Guarantees" in the README.
    pub durability: Durability,
    /// How to reach the local NATS broker.
    pub broker: BrokerConfig,
    /// Limits of the JetStream streams on this box.
    pub streams: StreamsConfig,
    /// The collect worker: polling and publishing.
    pub collect: CollectConfig,
    /// The data worker: the SQLite store of samples.
    pub data: DataConfig,
    /// The control worker: validated, audited writes to packs.
    pub control: ControlConfig,
    /// The monitor worker and the metrics snapshots of every worker.
    pub monitor: MonitorConfig,
    /// The cloud worker: the uplink and the cloud's control requests.
    pub cloud: CloudConfig,
    /// GPIO outputs: the alarm relay and the status LED.
    pub outputs: OutputsConfig,
    /// The buses (serial lines, TCP endpoints, CAN interfaces) that packs
    /// are reached on.
    pub buses: Vec<BusConfig>,
    /// The packs to poll.
    pub packs: Vec<PackConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/packgate"),
            durability: Durability::default(),
            broker: BrokerConfig::default(),
            streams: StreamsConfig::default(),
            collect: CollectConfig::default(),
            data: DataConfig::default(),
            control: ControlConfig::default(),
            monitor: MonitorConfig::default(),
            cloud: CloudConfig::default(),
            outputs: OutputsConfig::default(),
            buses: Vec::new(),
            packs: Vec::new(),
        }
    }
}

impl Config {
    /// Parses a configuration from TOML text; `origin` names the text in
    /// errors (a path, or "built-in").
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source: Box::new(source),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Adds `count` simulated packs named `sim-01`, `sim-02`... each with
    /// its own seed, after the configured ones.
    pub fn add_sim_packs(&mut self, count: usize) {
        let width = count.to_string().len().max(2);
        for n in 1..=count {
            let id = format!("sim-{n:0width$}");
            if let Ok(id) = PackId::new(id) {
                self.packs.push(PackConfig::sim(
                    id,
                    SimPackConfig::default().with_seed(n as u64),
                ));
            }
        }
    }

    /// The database file of the data worker.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(&self.data.database)
    }

    /// Checks ranges and cross-field rules.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let c = &self.collect;
        if c.poll_interval_ms != 0 && c.poll_interval_ms < 10 {
            return Err(invalid(
                "collect.poll_interval_ms",
                "must be 0 (as fast as possible) or at least 10".into(),
            ));
        }
        if c.request_timeout_ms == 0 {
            return Err(invalid(
                "collect.request_timeout_ms",
                "must be above 0".into(),
            ));
        }
        if c.inflight_max == 0 || c.pending_max < c.inflight_max {
            return Err(invalid(
                "collect.pending_max",
                format!(
                    "must be at least collect.inflight_max ({}), which must be above 0",
                    c.inflight_max
                ),
            ));
        }
        if c.offline_after_failures == 0 {
            return Err(invalid(
                "collect.offline_after_failures",
                "must be at least 1".into(),
            ));
        }
        if self.data.batch_max_samples == 0 {
            return Err(invalid(
                "data.batch_max_samples",
                "must be at least 1".into(),
            ));
        }
        for (name, limits) in [
            ("samples", &self.streams.samples),
            ("events", &self.streams.events),
            ("metrics", &self.streams.metrics),
        ] {
            if limits.max_bytes < 1024 * 1024 {
                return Err(invalid(
                    &format!("streams.{name}.max_bytes"),
                    "must be at least 1 MiB".into(),
                ));
            }
        }
        self.control
            .validate()
            .map_err(|e| invalid("control", e.to_string()))?;
        self.cloud
            .validate()
            .map_err(|e| invalid("cloud", e.to_string()))?;
        self.outputs
            .validate()
            .map_err(|e| invalid(&format!("outputs.{}", e.key), e.reason))?;
        packs::validate(&self.buses, &self.packs, &invalid)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_an_empty_file_gives_them() {
        let config = Config::from_toml_str("", "test").unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn example_config_in_deploy_parses() {
        let text = include_str!("../../../deploy/packgate.example.toml");
        let config = Config::from_toml_str(text, "packgate.example.toml").unwrap();
        assert!(!config.packs.is_empty());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::from_toml_str(
            "[collect]\npoll_interval_ms = 1000\npoll_intervall = 5\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("poll_intervall"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_pack_id_and_duplicates_are_rejected() {
        let err = Config::from_toml_str("[[packs]]\nid = \"a.b\"\ndriver = \"sim\"\n", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.b"), "{err}");
        let twice =
            "[[packs]]\nid = \"a\"\ndriver = \"sim\"\n[[packs]]\nid = \"a\"\ndriver = \"sim\"\n";
        let err = Config::from_toml_str(twice, "x").unwrap_err().to_string();
        assert!(err.contains("packs[1].id"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let err = Config::from_toml_str("[collect]\npoll_interval_ms = 5\n", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("collect.poll_interval_ms"), "{err}");
    }

    #[test]
    fn sim_packs_get_distinct_ids_and_seeds() {
        let mut config = Config::default();
        config.add_sim_packs(3);
        let ids: Vec<_> = config.packs.iter().map(|p| p.id.to_string()).collect();
        assert_eq!(ids, ["sim-01", "sim-02", "sim-03"]);
        assert_ne!(config.packs[0].driver, config.packs[1].driver);
        config.validate("x").unwrap();
    }
}
