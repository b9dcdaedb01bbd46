//! The connection to the cloud: authentication, TLS, reconnection without
//! end with exponential backoff, and the link state for the uploader and
//! the metrics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{ClientError, ConnectOptions, Event, ServerError};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CloudError, CloudMetrics};
use crate::config::CloudConfig;

/// How often a burst of rejected credentials is logged again.
const AUTH_LOG_EVERY: Duration = Duration::from_secs(60);

/// Delay between connection attempts once the worker has stopped.
const PARKED: Duration = Duration::from_secs(365 * 24 * 3600);

/// Messages one cloud subscription may buffer before the client drops them
/// (the control bridge takes them far faster than they come).
const SUBSCRIPTION_CAPACITY: usize = 1_024;

/// The cloud connection and its state.
#[derive(Debug)]
pub(crate) struct CloudLink {
    /// The core NATS client (control requests).
    pub(crate) client: async_nats::Client,
    /// JetStream on it (uploads), with a bounded ack window.
    pub(crate) js: jetstream::Context,
    /// True while connected.
    pub(crate) up: watch::Receiver<bool>,
}

/// A run of rejected connection attempts, logged once and then at most every
/// [`AUTH_LOG_EVERY`].
#[derive(Debug, Default)]
struct AuthBurst {
    attempts: u64,
    last_logged: Option<Instant>,
}

/// Whether a connection error means the server refused our credentials.
fn is_auth_error(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("authorization violation")
        || text.contains("authentication")
        || text.contains("signing nonce")
        || text.contains("user authentication expired")
}

/// Handles one client event: link state, metrics and the logs an operator
/// needs (an ERROR once per burst of rejected credentials).
fn on_event(
    event: Event,
    metrics: &CloudMetrics,
    up: &watch::Sender<bool>,
    burst: &Mutex<AuthBurst>,
    urls: &str,
) {
    let auth_rejected = |detail: String| {
        metrics.auth_failures.inc();
        let message = format!("cloud rejected the credentials: {detail}");
        metrics.set_last_error(Some(message.clone()));
        let mut burst = burst.lock().unwrap_or_else(|e| e.into_inner());
        burst.attempts += 1;
        let due = burst
            .last_logged
            .is_none_or(|at| at.elapsed() >= AUTH_LOG_EVERY);
        if due {
            burst.last_logged = Some(Instant::now());
            tracing::error!(
                urls,
                attempts = burst.attempts,
                "{message}; check cloud.user/password, token, nkey_seed or creds_file. \
                 Retrying with backoff; nothing is lost, the backlog waits in the local stream"
            );
        }
    };
    match event {
        Event::Connected => {
            metrics.set_link_up(true);
            metrics.set_last_error(None);
            let _ = up.send(true);
            let mut burst = burst.lock().unwrap_or_else(|e| e.into_inner());
            if burst.attempts > 0 {
                tracing::info!(
                    urls,
                    rejected = burst.attempts,
                    "cloud accepted the credentials"
                );
            }
            *burst = AuthBurst::default();
            tracing::info!(urls, "cloud link up");
        }
        Event::Disconnected => {
            metrics.set_link_up(false);
            metrics.set_last_error(Some("disconnected".to_owned()));
            let _ = up.send(false);
            tracing::warn!(
                urls,
                "cloud link down; reconnecting (uploads wait in the local stream)"
            );
        }
        Event::Closed => {
            metrics.set_link_up(false);
            let _ = up.send(false);
        }
        Event::ClientError(ClientError::Other(detail)) if is_auth_error(&detail) => {
            auth_rejected(detail);
        }
        Event::ServerError(ServerError::AuthorizationViolation) => {
            auth_rejected("authorization violation".to_owned());
        }
        Event::ClientError(ClientError::Other(detail)) => {
            metrics.set_last_error(Some(detail.clone()));
            tracing::debug!(urls, error = %detail, "cloud connection attempt failed");
        }
        other => tracing::warn!(urls, event = %other, "cloud link event"),
    }
}

/// Builds the connection options from the configuration: identity, TLS,
/// timeouts and reconnection.
async fn options(
    config: &CloudConfig,
    metrics: Arc<CloudMetrics>,
    up: watch::Sender<bool>,
    shutdown: CancellationToken,
) -> Result<ConnectOptions, CloudError> {
    let mut options = ConnectOptions::new();
    if let Some(path) = &config.creds_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| CloudError::Credentials {
                    path: path.clone(),
                    source,
                })?;
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(seed) = &config.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls_client_cert_file, &config.tls_client_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if config.require_tls {
        options = options.require_tls(true);
    }
    let max = config.retry_backoff_max();
    let urls = shown_urls(&config.urls);
    let burst = Arc::new(Mutex::new(AuthBurst::default()));
    Ok(options
        .name(packgate_protocol::names::cloud::connection_name(
            &config.gateway_id,
        ))
        .connection_timeout(config.request_timeout())
        .request_timeout(Some(config.request_timeout()))
        .ping_interval(Duration::from_secs(20))
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempts| {
            let attempt = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
            if shutdown.is_cancelled() {
                // The client's connector cannot be stopped from outside
                // while it reconnects; after our shutdown it only sleeps.
                PARKED
            } else if attempts <= 1 {
                Duration::ZERO
            } else {
                super::cloud_backoff(max).delay(attempt)
            }
        })
        .event_callback(move |event| {
            let metrics = Arc::clone(&metrics);
            let up = up.clone();
            let burst = Arc::clone(&burst);
            let urls = urls.clone();
            async move { on_event(event, &metrics, &up, &burst, &urls) }
        }))
}

/// The URLs as logs and errors show them: a password or token in one
/// replaced by `***`.
fn shown_urls(urls: &[String]) -> String {
    urls.iter()
        .map(|url| crate::broker::connect::redact_url(url))
        .collect::<Vec<_>>()
        .join(",")
}

/// Opens the cloud connection. It returns at once: the first connection is
/// made in the background and retried without end, like every later one.
pub(crate) async fn open(
    config: &CloudConfig,
    metrics: Arc<CloudMetrics>,
    shutdown: CancellationToken,
) -> Result<CloudLink, CloudError> {
    let (up_tx, up) = watch::channel(false);
    let options = options(config, metrics, up_tx, shutdown).await?;
    let client = options
        .connect(config.urls.clone())
        .await
        .map_err(|e| CloudError::Connect {
            urls: shown_urls(&config.urls),
            reason: e.to_string(),
        })?;
    let js = jetstream::context::ContextBuilder::new()
        .timeout(config.request_timeout())
        .max_ack_inflight(config.batch_max_samples + 16)
        .backpressure_on_inflight(true)
        .build(client.clone());
    Ok(CloudLink { client, js, up })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_hide_passwords_and_tokens() {
        let urls = [
            "tls://site-7:pw-1e2f@cloud-a:4222".to_owned(),
            "tls://tok-3c4d@cloud-b:4222".to_owned(),
            "tls://cloud-c:4222".to_owned(),
        ];
        assert_eq!(
            shown_urls(&urls),
            "tls://site-7:***@cloud-a:4222,tls://***:***@cloud-b:4222,tls://cloud-c:4222"
        );
    }

    #[test]
    fn auth_errors_are_recognised() {
        assert!(is_auth_error("authorization violation"));
        assert!(is_auth_error("nats: Authorization Violation"));
        assert!(is_auth_error("failed signing nonce"));
        assert!(!is_auth_error("IO error"));
        assert!(!is_auth_error("timed out"));
    }

    #[test]
    fn a_burst_of_rejections_counts_every_attempt_and_clears_on_connect() {
        let metrics = CloudMetrics::default();
        let (tx, rx) = watch::channel(false);
        let burst = Mutex::new(AuthBurst::default());
        for _ in 0..3 {
            on_event(
                Event::ClientError(ClientError::Other("authorization violation".into())),
                &metrics,
                &tx,
                &burst,
                "u",
            );
        }
        assert_eq!(metrics.auth_failures.get(), 3);
        assert!(metrics
            .last_error()
            .is_some_and(|e| e.contains("rejected the credentials")));
        on_event(Event::Connected, &metrics, &tx, &burst, "u");
        assert!(*rx.borrow());
        assert!(metrics.link_up());
        assert_eq!(metrics.last_error(), None);
    }
}
