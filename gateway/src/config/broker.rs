//! The `[broker]` and `[streams]` sections: how to reach the local NATS
//! broker and the limits of the JetStream streams on this box.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How to reach the local NATS broker. A password or token in its URL
/// shows as `***` in `Debug`, logs and `check-config`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// URL of a running nats-server, such as `nats://127.0.0.1:4222`. When
    /// absent, packgate starts its own nats-server child process on a free
    /// loopback port with its store under `data_dir/nats`. A password or
    /// token in it is never printed.
    #[serde(serialize_with = "super::secret::serialize_url")]
    pub url: Option<String>,
    /// The nats-server executable for the embedded broker: a name looked up
    /// on PATH, or a path.
    pub nats_server_path: PathBuf,
    /// The file with the passwords of packgate's broker users (see
    /// `packgate broker-users`). Default: with the embedded broker,
    /// `broker-credentials.toml` in `data_dir`, created at first start;
    /// with `url`, none (an open development broker). On the box:
    /// `/etc/packgate/broker-credentials.toml`.
    pub credentials_file: Option<PathBuf>,
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
            credentials_file: None,
            nats_server_path: PathBuf::from("nats-server"),
            connect_timeout_ms: 2_000,
            request_timeout_ms: 5_000,
            embedded_startup_timeout_ms: 10_000,
        }
    }
}

/// What serialisation shows: no password.
impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        super::secret::debug_as_serialised("BrokerConfig", self, f)
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
    /// The bank states stream.
    pub banks: StreamLimits,
}

impl StreamsConfig {
    /// Each stream's limits with its name in the configuration
    /// (`streams.<name>`), in the order of the file.
    pub fn named(&self) -> [(&'static str, &StreamLimits); 4] {
        [
            ("samples", &self.samples),
            ("events", &self.events),
            ("metrics", &self.metrics),
            ("banks", &self.banks),
        ]
    }

    /// The limits of the stream `spec` names.
    pub fn of(&self, spec: &packgate_protocol::names::StreamSpec) -> &StreamLimits {
        use packgate_protocol::names::{BANKS_STREAM, EVENTS_STREAM, SAMPLES_STREAM};
        match spec.name {
            n if n == SAMPLES_STREAM.name => &self.samples,
            n if n == EVENTS_STREAM.name => &self.events,
            n if n == BANKS_STREAM.name => &self.banks,
            _ => &self.metrics,
        }
    }

    /// Every stream's limits changed by `f`.
    pub fn map(&self, f: impl Fn(&StreamLimits) -> StreamLimits) -> Self {
        Self {
            samples: f(&self.samples),
            events: f(&self.events),
            metrics: f(&self.metrics),
            banks: f(&self.banks),
        }
    }
}

impl Default for StreamsConfig {
    fn default() -> Self {
        use packgate_protocol::names::{
            BANKS_STREAM, EVENTS_STREAM, METRICS_STREAM, SAMPLES_STREAM,
        };
        Self {
            samples: StreamLimits::of(&SAMPLES_STREAM),
            events: StreamLimits::of(&EVENTS_STREAM),
            metrics: StreamLimits::of(&METRICS_STREAM),
            banks: StreamLimits::of(&BANKS_STREAM),
        }
    }
}
