//! The gateway's configuration: one TOML file, every key documented, unknown
//! keys rejected with the line they are on, defaults built in.

mod bank;
mod bms;
mod broker;
mod buses;
mod cloud;
mod collect;
mod control;
mod data;
mod disk;
mod durability;
mod http;
mod inverter;
mod lines;
mod locate;
mod monitor;
mod mqtt;
mod outputs;
mod packs;
mod ranges;
mod secret;
mod tagged;
#[cfg(test)]
mod tests_robust;

use std::path::{Path, PathBuf};

use packgate_protocol::PackId;
use packgate_sim::SimPackConfig;
use serde::{Deserialize, Serialize};

pub use bank::{BankConfig, BankConfigError, PackRating};
pub use bms::{
    BmsProtocol, BmsSerialBusConfig, DalyDriverConfig, JbdDriverConfig, JkDriverConfig,
    PylonAsciiDriverConfig,
};
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
pub use http::{HttpConfig, HttpConfigError, DEFAULT_HTTP_PORT};
pub use inverter::{InverterConfig, InverterLinkKind};
pub use locate::{ConfigSource, CONFIG_ENV, SYSTEM_CONFIG};
pub use monitor::MonitorConfig;
pub use mqtt::{MqttConfig, MqttConfigError};
pub use outputs::{LedConfig, OutputsConfig, OutputsConfigError, PinConfig, RelayConfig};
pub use packs::{
    CanDriverConfig, DriverConfig, ModbusDriverConfig, PackConfig, SimDriverConfig,
    SunSpecDriverConfig,
};
pub use ranges::{
    MAX_PACKS, MAX_STREAM_AGE_S, MAX_STREAM_BYTES, MIN_POLL_INTERVAL_MS, MIN_STREAM_BYTES,
};
pub use secret::{redact_url, Secret};

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
    /// message names the key, line and column. The offending line itself
    /// is not quoted: it may hold a secret (`pasword = "..."`).
    #[error(
        "{origin}: TOML parse error{}{}: {message}",
        .line.map(|(line, column)| format!(" at line {line}, column {column}")).unwrap_or_default(),
        .key.as_ref().map(|key| format!(", key {key}")).unwrap_or_default()
    )]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The 1-based line and column of the error, when the parser knows.
        line: Option<(usize, usize)>,
        /// The key written on that line, when there is one.
        key: Option<String>,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A value is out of its allowed range or contradicts another.
    #[error(
        "{origin}: {}{key}: {reason}",
        .line.map(|line| format!("line {line}: ")).unwrap_or_default()
    )]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// The line of the key (or of its section, when the file leaves
        /// the key to its default); none when not read from a text.
        line: Option<usize>,
        /// The dotted key at fault, as the file spells it
        /// (`packs[1].unit_id`).
        key: String,
        /// Why.
        reason: String,
    },
    /// More simulated packs were asked for than one gateway polls.
    #[error("--sim {asked}: at most {MAX_PACKS} packs, configured and simulated together ({configured} configured)")]
    TooManySimPacks {
        /// Simulated packs asked for.
        asked: usize,
        /// Packs already configured.
        configured: usize,
    },
}

impl ConfigError {
    /// The error with the line of its key in `text`, when it is an
    /// [`ConfigError::Invalid`] whose key `text` gives.
    fn at_line_in(self, text: &str) -> Self {
        match self {
            ConfigError::Invalid {
                origin,
                line: None,
                key,
                reason,
            } => ConfigError::Invalid {
                line: lines::line_of(text, &key),
                origin,
                key,
                reason,
            },
            other => other,
        }
    }
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
    /// The HTTP server: the local web page and the Prometheus metrics.
    pub http: HttpConfig,
    /// The owner's MQTT broker: the packs in Home Assistant.
    pub mqtt: MqttConfig,
    /// The buses (serial lines, TCP endpoints, CAN interfaces) that packs
    /// are reached on.
    pub buses: Vec<BusConfig>,
    /// The packs to poll.
    pub packs: Vec<PackConfig>,
    /// Banks: packs in parallel that an inverter sees as one battery, with
    /// the rules of their charge limits (the bank worker).
    pub banks: Vec<BankConfig>,
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
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            buses: Vec::new(),
            packs: Vec::new(),
            banks: Vec::new(),
        }
    }
}

impl Config {
    /// Parses a configuration from TOML text; `origin` names the text in
    /// errors (a path, or "built-in").
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            origin: origin.to_owned(),
            line: error
                .span()
                .map(|span| lines::line_and_column(text, span.start)),
            key: error
                .span()
                .and_then(|span| lines::key_on_line(text, span.start)),
            message: error.message().trim_end().to_owned(),
        })?;
        config
            .validate(origin)
            .map_err(|error| error.at_line_in(text))?;
        Ok(config)
    }

    /// Reads, parses and checks a configuration file, and fits its streams
    /// to the filesystem of its `data_dir` (see
    /// [`Config::fit_streams_to_data_dir`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        let mut config = Self::from_toml_str(&text, &origin)?;
        config
            .fit_streams_to_data_dir(&origin)
            .map_err(|error| error.at_line_in(&text))?;
        Ok(config)
    }

    /// Adds `count` simulated packs named `sim-01`, `sim-02`... each with
    /// its own seed, after the configured ones; refused (nothing added)
    /// past [`MAX_PACKS`] in all.
    pub fn add_sim_packs(&mut self, count: usize) -> Result<(), ConfigError> {
        let configured = self.packs.len();
        if count > MAX_PACKS.saturating_sub(configured) {
            return Err(ConfigError::TooManySimPacks {
                asked: count,
                configured,
            });
        }
        let width = count.to_string().len().max(2);
        for n in 1..=count {
            let id = format!("sim-{n:0width$}");
            if let Ok(id) = PackId::new(id) {
                self.packs.push(PackConfig::sim(
                    id,
                    SimPackConfig::default().with_seed(u64::try_from(n).unwrap_or(u64::MAX)),
                ));
            }
        }
        Ok(())
    }

    /// The database file of the data worker.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(&self.data.database)
    }

    /// Checks ranges and cross-field rules.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            line: None,
            key: key.to_owned(),
            reason,
        };
        ranges::validate(self, &invalid)?;
        self.control
            .validate()
            .map_err(|e| invalid(&e.key, e.reason))?;
        self.cloud
            .validate()
            .map_err(|e| invalid(e.key, e.reason))?;
        self.outputs
            .validate()
            .map_err(|e| invalid(&format!("outputs.{}", e.key), e.reason))?;
        self.mqtt.validate().map_err(|e| invalid(e.key, e.reason))?;
        self.http.validate().map_err(|e| invalid(e.key, e.reason))?;
        packs::validate(&self.buses, &self.packs, &invalid)?;
        bank::validate(&self.banks, &self.packs, &invalid)?;
        Ok(())
    }
}

impl Config {
    /// Checks that the files the configuration names for the workers it
    /// runs can be read and hold what they should (the `[cloud]`
    /// credentials, CA, client certificate and key): at start and by
    /// `check-config`, so that a missing file is a configuration error, not
    /// a link that fails at every attempt. `origin` names the file.
    pub fn check_files(&self, origin: &str) -> Result<(), ConfigError> {
        self.cloud
            .check_files()
            .map_err(|error| ConfigError::Invalid {
                origin: origin.to_owned(),
                line: None,
                key: error.key.to_owned(),
                reason: error.reason,
            })
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
        config.add_sim_packs(3).unwrap();
        let ids: Vec<_> = config.packs.iter().map(|p| p.id.to_string()).collect();
        assert_eq!(ids, ["sim-01", "sim-02", "sim-03"]);
        assert_ne!(config.packs[0].driver, config.packs[1].driver);
        config.validate("x").unwrap();
    }
}
