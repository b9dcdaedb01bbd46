//! Connecting to the local broker, reconnecting forever on our own.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use super::auth::{BrokerCredentials, BrokerUser, CredentialsError};
use super::link_log::LinkWatch;
pub use crate::config::redact_url;
use crate::config::BrokerConfig;

/// Why talking to the broker failed, by operation.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The URL or options are unusable.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The broker URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A stream or consumer could not be created, read or updated.
    #[error("cannot set up {what}: {reason}")]
    Setup {
        /// The stream or consumer.
        what: String,
        /// Why.
        reason: String,
    },
    /// The embedded nats-server could not start.
    #[error(transparent)]
    Server(#[from] super::server::ServerError),
    /// The broker credentials cannot be read or created.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The embedded broker died and could not be started again.
    #[error("the embedded nats-server died and could not be started again")]
    Lost,
    /// Shutdown came before the broker was ready.
    #[error("shut down before the broker was ready")]
    Interrupted,
}

/// Connects to `url` as `name`. The first connection is retried in the
/// background, so a broker that is not up yet is waited for, and every
/// later disconnection is followed by reconnection attempts without end,
/// logged as the [link log](super::link_log) says.
pub async fn connect(
    url: &str,
    name: &str,
    config: &BrokerConfig,
) -> Result<async_nats::Client, BrokerError> {
    connect_as(url, name, config, None).await
}

/// [`connect`] as `user` with its password from `credentials`, and the
/// user's own inbox prefix (the only one its permissions let it read);
/// anonymous when `credentials` is `None`.
pub async fn connect_as(
    url: &str,
    name: &str,
    config: &BrokerConfig,
    credentials: Option<(&BrokerCredentials, BrokerUser)>,
) -> Result<async_nats::Client, BrokerError> {
    let watch = Arc::new(LinkWatch::register(&redact_url(url)));
    let mut options = async_nats::ConnectOptions::new();
    if let Some((credentials, user)) = credentials {
        let password = credentials.password(user).unwrap_or_default();
        options = options
            .user_and_password(user.name().to_owned(), password.to_owned())
            .custom_inbox_prefix(user.inbox_prefix());
    }
    options
        .name(name)
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
        .request_timeout(Some(Duration::from_millis(config.request_timeout_ms)))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            // 0, 100 ms, 200 ms, ... capped at 2 s: a local broker comes
            // back quickly, and the poll loop never waits on this.
            Duration::from_millis((attempts as u64 * 100).min(2_000))
        })
        .event_callback(move |event| {
            // Dropped with the client, which ends its part in the log.
            let watch = Arc::clone(&watch);
            async move { watch.on_event(event) }
        })
        .connect(url)
        .await
        .map_err(|e| BrokerError::Connect {
            url: redact_url(url),
            reason: e.to_string(),
        })
}

/// A JetStream context whose API requests and publish acks time out after
/// `config.request_timeout_ms`, with at most `max_ack_inflight` publishes
/// awaiting their ack (the caller keeps its own window below it).
pub fn jetstream_context(
    client: async_nats::Client,
    config: &BrokerConfig,
    max_ack_inflight: usize,
) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .max_ack_inflight(max_ack_inflight.max(1))
        .build(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redact_url("nats://collect:s3cret@127.0.0.1:4222"),
            "nats://collect:***@127.0.0.1:4222"
        );
        assert_eq!(
            redact_url("nats://tok3n@host:4222"),
            "nats://***:***@host:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
