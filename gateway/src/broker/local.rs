//! The gateway's own connection to the local broker: the configured one,
//! or a nats-server of our own started for it, with what it takes to
//! connect as each worker's user.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use super::connect::{connect_as, jetstream_context, redact_url};
use super::{
    ensure_streams, fit_streams_to_disk, nats_server_version, BrokerCredentials, BrokerError,
    BrokerUser, EmbeddedBroker, NatsServerOptions,
};
use crate::config::{BrokerConfig, Config, Durability, StreamsConfig};
use crate::retry::{retry_until_shutdown, Backoff};

/// File in the data directory naming the embedded broker's URL while it
/// runs, so `packgate watch` finds it.
pub const BROKER_URL_FILE: &str = "broker-url";

/// File in the data directory holding the embedded broker's user
/// passwords (mode 0600), unless `broker.credentials_file` names another.
pub const CREDENTIALS_FILE: &str = "broker-credentials.toml";

/// A connection to the local broker as the setup user, the server if we
/// started it, and what it takes to connect as each worker's user.
#[derive(Debug)]
pub struct Broker {
    /// The NATS client (the setup user when the broker has users).
    pub client: async_nats::Client,
    /// JetStream on it.
    pub js: jetstream::Context,
    /// The URL connected to, password redacted.
    pub url: String,
    /// Our own nats-server, when none was configured.
    pub server: Option<EmbeddedBroker>,
    /// The broker users' passwords; `None` for an open broker.
    pub credentials: Option<BrokerCredentials>,
    connect_url: String,
    config: BrokerConfig,
    max_ack_inflight: usize,
}

/// The credentials file of `config`: the configured one, else the data
/// directory's when the broker is our own.
pub fn credentials_path(config: &Config) -> Option<PathBuf> {
    match (&config.broker.credentials_file, &config.broker.url) {
        (Some(path), _) => Some(path.clone()),
        (None, None) => Some(config.data_dir.join(CREDENTIALS_FILE)),
        (None, Some(_)) => None,
    }
}

/// With `durability = "safe"`, the embedded broker's instruction to sync
/// every message, where its version knows it (nats-server 2.10+); older
/// servers sync every two minutes, said in a WARN.
fn broker_sync_block(config: &Config) -> String {
    if config.durability != Durability::Safe {
        return String::new();
    }
    match nats_server_version(&config.broker.nats_server_path) {
        Some(version) if version >= (2, 10, 0) => "jetstream { sync_interval: always }\n".into(),
        version => {
            tracing::warn!(
                ?version,
                "durability = \"safe\": this nats-server syncs its store every two minutes \
                 (sync_interval needs 2.10); SQLite commits are synced, so only samples not \
                 yet stored can be lost to a power cut"
            );
            String::new()
        }
    }
}

impl Broker {
    /// Connects to the configured broker, or starts a nats-server of our own
    /// with its store in `data_dir/nats` when none is configured.
    pub async fn open(config: &Config, name: &str) -> Result<Self, BrokerError> {
        let credentials = match (credentials_path(config), &config.broker.url) {
            (Some(path), None) => Some(BrokerCredentials::load_or_create(&path)?),
            (Some(path), Some(_)) => Some(BrokerCredentials::load(&path)?),
            (None, _) => None,
        };
        let (url, server) = match &config.broker.url {
            Some(url) => (url.clone(), None),
            None => {
                let mut options = NatsServerOptions::new(config.data_dir.join("nats"));
                options.executable = config.broker.nats_server_path.clone();
                options.startup_timeout =
                    Duration::from_millis(config.broker.embedded_startup_timeout_ms);
                let mut text = credentials
                    .as_ref()
                    .map(|c| c.authorization_block())
                    .unwrap_or_default();
                text.push_str(&broker_sync_block(config));
                options.config_text = Some(text).filter(|t| !t.is_empty());
                options.lock_store = true;
                let server = EmbeddedBroker::start(options).await?;
                tracing::info!(url = %server.url(), pid = ?server.pid(), "started embedded nats-server");
                let _ = std::fs::write(config.data_dir.join(BROKER_URL_FILE), server.url());
                (server.url(), Some(server))
            }
        };
        let setup = credentials.as_ref().map(|c| (c, BrokerUser::Setup));
        let client = connect_as(&url, name, &config.broker, setup).await?;
        let max_ack_inflight = config.collect.inflight_max.saturating_add(64);
        let js = jetstream_context(client.clone(), &config.broker, max_ack_inflight);
        Ok(Self {
            client,
            js,
            url: redact_url(&url),
            server,
            credentials,
            connect_url: url,
            config: config.broker.clone(),
            max_ack_inflight,
        })
    }

    /// A connection of its own for `user`, named `name`; the setup
    /// connection itself when the broker has no users.
    pub async fn connect_as(
        &self,
        user: BrokerUser,
        name: &str,
    ) -> Result<(async_nats::Client, jetstream::Context), BrokerError> {
        let Some(credentials) = &self.credentials else {
            return Ok((self.client.clone(), self.js.clone()));
        };
        let client = connect_as(
            &self.connect_url,
            name,
            &self.config,
            Some((credentials, user)),
        )
        .await?;
        let js = jetstream_context(client.clone(), &self.config, self.max_ack_inflight);
        Ok((client, js))
    }

    /// The configured stream limits, shrunk (with a WARN) to fit our own
    /// broker's disk; an external broker's disk is not ours to see (its
    /// refusals shrink the streams instead, see [`ensure_streams`]).
    fn streams_that_fit(&self, configured: &StreamsConfig) -> StreamsConfig {
        let Some(server) = &self.server else {
            return configured.clone();
        };
        let store = server.store_dir();
        let free = match crate::platform::disk_space(&store) {
            Ok(space) => space.available_bytes,
            Err(error) => {
                tracing::warn!(%error, store = %store.display(), "cannot read the free space of the broker's store");
                return configured.clone();
            }
        };
        let disk = free.saturating_add(crate::platform::bytes_under(&store));
        let fit = fit_streams_to_disk(configured, disk);
        for ((name, want), (_, got)) in configured.named().into_iter().zip(fit.named()) {
            if want.max_bytes != got.max_bytes {
                tracing::warn!(
                    stream = name,
                    configured_bytes = want.max_bytes,
                    max_bytes = got.max_bytes,
                    disk_bytes = disk,
                    "streams.{name}.max_bytes does not fit the data disk; the stream is smaller"
                );
            }
        }
        fit
    }

    /// Creates or updates the streams, retrying while the broker is not
    /// reachable yet, until `shutdown`.
    pub async fn ensure_streams(
        &self,
        config: &Config,
        shutdown: &CancellationToken,
    ) -> Result<(), BrokerError> {
        let limits = self.streams_that_fit(&config.streams);
        let ready = retry_until_shutdown(
            &format!("broker {} not ready", self.url),
            Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            shutdown,
            || ensure_streams(&self.js, &limits),
        )
        .await;
        match ready {
            Some(actions) => {
                for (stream, action) in actions {
                    tracing::debug!(stream, ?action, "stream ready");
                }
                Ok(())
            }
            None => Err(BrokerError::Interrupted),
        }
    }

    /// Fires when our own broker died for good (never, for an external
    /// one: its service manager restarts it and the client reconnects).
    pub fn lost(&self) -> CancellationToken {
        self.server
            .as_ref()
            .map_or_else(CancellationToken::new, EmbeddedBroker::lost)
    }

    /// Flushes the connection and stops our own server, if any; the last
    /// counts of log lines held back are written first.
    pub async fn close(mut self, data_dir: &Path) {
        crate::telemetry::events::report_held_back_now();
        // Drain closes the connection for every clone of the client, so
        // stopping our own server below is not seen as a lost broker.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.drain()).await;
        drop(self.client);
        if let Some(server) = self.server.take() {
            server.stop().await;
            let _ = std::fs::remove_file(data_dir.join(BROKER_URL_FILE));
        }
    }
}
