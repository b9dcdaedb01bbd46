//! Wiring: the broker connection (or our own nats-server), the workers of
//! this process, and an orderly shutdown.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::broker::connect::jetstream_context;
use crate::broker::{connect, ensure_streams, BrokerError, NatsServer, NatsServerOptions};
use crate::config::Config;
use crate::retry::{retry_until_shutdown, Backoff};
pub use crate::supervisor::{run_workers, RunError, RunReport, WorkerSet};

/// File in the data directory naming the embedded broker's URL while it
/// runs, so `packgate watch` finds it.
pub const BROKER_URL_FILE: &str = "broker-url";

/// A connection to the local broker, and the server if we started it.
#[derive(Debug)]
pub struct Broker {
    /// The NATS client.
    pub client: async_nats::Client,
    /// JetStream on it.
    pub js: jetstream::Context,
    /// The URL connected to.
    pub url: String,
    /// Our own nats-server, when none was configured.
    pub server: Option<NatsServer>,
}

impl Broker {
    /// Connects to the configured broker, or starts a nats-server of our own
    /// with its store in `data_dir/nats` when none is configured.
    pub async fn open(config: &Config, name: &str) -> Result<Self, BrokerError> {
        let (url, server) = match &config.broker.url {
            Some(url) => (url.clone(), None),
            None => {
                let mut options = NatsServerOptions::new(config.data_dir.join("nats"));
                options.executable = config.broker.nats_server_path.clone();
                options.startup_timeout =
                    Duration::from_millis(config.broker.embedded_startup_timeout_ms);
                let server = NatsServer::start(options).await?;
                tracing::info!(url = %server.url(), pid = ?server.pid(), "started embedded nats-server");
                let _ = std::fs::write(config.data_dir.join(BROKER_URL_FILE), server.url());
                (server.url(), Some(server))
            }
        };
        let client = connect(&url, name, &config.broker).await?;
        let url = crate::broker::connect::redact_url(&url);
        let js = jetstream_context(
            client.clone(),
            &config.broker,
            config.collect.inflight_max + 64,
        );
        Ok(Self {
            client,
            js,
            url,
            server,
        })
    }

    /// Creates or updates the streams, retrying while the broker is not
    /// reachable yet, until `shutdown`.
    pub async fn ensure_streams(
        &self,
        config: &Config,
        shutdown: &CancellationToken,
    ) -> Result<(), BrokerError> {
        let ready = retry_until_shutdown(
            &format!("broker {} not ready", self.url),
            Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            shutdown,
            || ensure_streams(&self.js, &config.streams),
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

    /// Flushes the connection and stops our own server, if any.
    pub async fn close(mut self, data_dir: &Path) {
        // Drain closes the connection for every clone of the client, so
        // stopping our own server below is not seen as a lost broker.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.drain()).await;
        drop(self.client);
        if let Some(server) = self.server.as_mut() {
            server.stop().await;
            let _ = std::fs::remove_file(data_dir.join(BROKER_URL_FILE));
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        token.cancel();
    });
}
