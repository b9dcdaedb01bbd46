//! The gateway's configuration: one TOML file, every key documented, unknown
//! keys rejected with the line they are on, defaults built in.

mod buses;
mod packs;
mod tagged;

use std::path::{Path, PathBuf};
use std::time::Duration;

use packgate_protocol::PackId;
use packgate_sim::SimPackConfig;
use serde::{Deserialize, Serialize};

pub use buses::{
    BusConfig, BusLinkConfig, ModbusRtuBusConfig, ModbusTcpBusConfig, SerialParity, SlcanBusConfig,
    SocketcanBusConfig,
};
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
    /// How to reach the local NATS broker.
    pub broker: BrokerConfig,
    /// Limits of the JetStream streams on this box.
    pub streams: StreamsConfig,
    /// The collect worker: polling and publishing.
    pub collect: CollectConfig,
    /// The data worker: the SQLite store of samples.
    pub data: DataConfig,
    /// The control worker: validated, audited writes to packs.
    pub control: crate::workers::control::ControlConfig,
    /// The monitor worker and the metrics snapshots of every worker.
    pub monitor: crate::workers::monitor::MonitorConfig,
    /// The cloud worker: the uplink and the cloud's control requests.
    pub cloud: crate::workers::cloud::CloudConfig,
    /// GPIO outputs: the alarm relay and the status LED.
    pub outputs: crate::outputs::OutputsConfig,
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
            broker: BrokerConfig::default(),
            streams: StreamsConfig::default(),
            collect: CollectConfig::default(),
            data: DataConfig::default(),
            control: crate::workers::control::ControlConfig::default(),
            monitor: crate::workers::monitor::MonitorConfig::default(),
            cloud: crate::workers::cloud::CloudConfig::default(),
            outputs: crate::outputs::OutputsConfig::default(),
            buses: Vec::new(),
            packs: Vec::new(),
        }
    }
}

/// How to reach the local NATS broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// URL of a running nats-server, such as `nats://127.0.0.1:4222`. When
    /// absent, packgate starts its own nats-server child process on a free
    /// loopback port with its store under `data_dir/nats`.
    pub url: Option<String>,
    /// The nats-server executable for the embedded broker: a name looked up
    /// on PATH, or a path.
    pub nats_server_path: PathBuf,
    /// Time allowed for one connection attempt, milliseconds.
    pub connect_timeout_ms: u64,
    /// Time allowed for a JetStream API request or a publish ack,
    /// milliseconds.
    pub request_timeout_ms: u64,
    /// Time the embedded nats-server may take to start listening,
    /// milliseconds.
    pub embedded_startup_timeout_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            url: None,
            nats_server_path: PathBuf::from("nats-server"),
            connect_timeout_ms: 2_000,
            request_timeout_ms: 5_000,
            embedded_startup_timeout_ms: 10_000,
        }
    }
}

/// Storage limits of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamLimits {
    /// Largest size on disk, bytes; past it the oldest messages are
    /// discarded (counted by the broker).
    pub max_bytes: i64,
    /// Oldest message kept, seconds.
    pub max_age_s: u64,
}

impl StreamLimits {
    fn of(spec: &packgate_protocol::names::StreamSpec) -> Self {
        Self {
            max_bytes: spec.max_bytes,
            max_age_s: spec.max_age.as_secs(),
        }
    }
}

/// Limits of the JetStream streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// The samples stream.
    pub samples: StreamLimits,
    /// The events stream.
    pub events: StreamLimits,
    /// The metrics stream.
    pub metrics: StreamLimits,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        use packgate_protocol::names::{EVENTS_STREAM, METRICS_STREAM, SAMPLES_STREAM};
        Self {
            samples: StreamLimits::of(&SAMPLES_STREAM),
            events: StreamLimits::of(&EVENTS_STREAM),
            metrics: StreamLimits::of(&METRICS_STREAM),
        }
    }
}

/// Polling and publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// Poll period of every pack, milliseconds; 0 polls as fast as the
    /// packs and the broker allow, the broker's acks pacing the polls
    /// (benchmarks only).
    pub poll_interval_ms: u64,
    /// Time a pack has to answer one poll, milliseconds.
    pub request_timeout_ms: u64,
    /// Consecutive failed polls after which a pack is declared offline.
    pub offline_after_failures: u32,
    /// Longest wait between polls of an offline pack, milliseconds; the wait
    /// doubles from one poll period up to this.
    pub offline_backoff_max_ms: u64,
    /// Most publishes awaiting their JetStream ack at once.
    pub inflight_max: usize,
    /// Most samples held while the broker is unreachable; past it the oldest
    /// are dropped and counted (an ERROR: data loss).
    pub pending_max: usize,
    /// Longest wait between publish retries while the broker is down,
    /// milliseconds.
    pub publish_retry_max_ms: u64,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1_000,
            request_timeout_ms: 800,
            offline_after_failures: 3,
            offline_backoff_max_ms: 30_000,
            inflight_max: 1_024,
            pending_max: 100_000,
            publish_retry_max_ms: 2_000,
        }
    }
}

impl CollectConfig {
    /// The poll period.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// The per-poll timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// The SQLite store of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The database file; relative paths are under `data_dir`.
    pub database: PathBuf,
    /// Most samples committed in one transaction.
    pub batch_max_samples: usize,
    /// Longest a received sample waits for its batch to fill before the
    /// batch is committed anyway, milliseconds.
    pub batch_linger_ms: u64,
    /// Samples older than this are deleted, days; 0 keeps everything.
    pub retention_days: u32,
    /// How often retention runs, seconds.
    pub retention_interval_s: u64,
    /// At shutdown of `packgate run`, how long the data worker may go on
    /// storing what the collector flushed last, milliseconds (what it does
    /// not store stays in the stream for the next start).
    pub shutdown_drain_ms: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("samples.db"),
            batch_max_samples: 1_000,
            batch_linger_ms: 10,
            retention_days: 90,
            retention_interval_s: 600,
            shutdown_drain_ms: 2_000,
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
        self.outputs.validate().map_err(|e| match e {
            crate::outputs::OutputsError::Config { key, reason } => {
                invalid(&format!("outputs.{key}"), reason)
            }
            other => invalid("outputs", other.to_string()),
        })?;
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
