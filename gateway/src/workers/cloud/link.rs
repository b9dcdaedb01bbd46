//! The connection to the cloud: authentication, TLS, reconnection without
//! end with exponential backoff, and the events that drive the link's
//! state. A failed attempt is diagnosed on a connection of its own, since
//! the client's events give only the kind of error ("IO error"), not its
//! cause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{ClientError, ConnectOptions, Event, ServerError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fault::CloudLinkFault;
use super::state::LinkState;
use super::{CloudError, CloudMetrics};
use crate::config::CloudConfig;

/// Delay between connection attempts once the worker has stopped.
const PARKED: Duration = Duration::from_secs(365 * 24 * 3600);

/// Messages one cloud subscription may buffer before the client drops them
/// (the control bridge takes them far faster than they come).
const SUBSCRIPTION_CAPACITY: usize = 1_024;

/// Least time between two diagnoses of failed connection attempts.
const DIAGNOSE_EVERY: Duration = Duration::from_secs(5);

/// The cloud connection and its state.
#[derive(Debug)]
pub(crate) struct CloudLink {
    /// The core NATS client (control requests).
    pub(crate) client: async_nats::Client,
    /// JetStream on it (uploads), with a bounded ack window.
    pub(crate) js: jetstream::Context,
    /// Up, connected, and what is wrong.
    pub(crate) state: Arc<LinkState>,
}

/// Whether a connection error means the server refused our credentials.
fn is_auth_error(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("authorization violation")
        || text.contains("authentication")
        || text.contains("signing nonce")
        || text.contains("user authentication expired")
}

/// Finds out why connection attempts fail: one attempt of its own with the
/// same identity and TLS settings, whose error carries its causes. At most
/// one at a time, and one per [`DIAGNOSE_EVERY`].
struct Diagnosis {
    options: ConnectOptions,
    urls: Vec<String>,
    timeout: Duration,
    running: AtomicBool,
    last: Mutex<Option<Instant>>,
}

impl Diagnosis {
    /// Starts a diagnosis in the background unless one is running or ran
    /// too recently; its finding goes to `state`.
    fn start(self: &Arc<Self>, state: &Arc<LinkState>) {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < DIAGNOSE_EVERY)
                || self.running.swap(true, Ordering::AcqRel)
            {
                return;
            }
            *last = Some(Instant::now());
        }
        let (this, state) = (Arc::clone(self), Arc::clone(state));
        tokio::spawn(async move {
            let found = this.run().await;
            this.running.store(false, Ordering::Release);
            match found {
                // Rejected credentials are reported from the client's own
                // events, with their count.
                Some(CloudLinkFault::CredentialsRejected(_)) | None => {}
                Some(fault) => state.on_fault(fault),
            }
        });
    }

    /// One connection attempt; its fault, or `None` when it connects.
    async fn run(&self) -> Option<CloudLinkFault> {
        let per_url = u32::try_from(self.urls.len()).unwrap_or(u32::MAX);
        let attempt = self.options.clone().connect(self.urls.clone());
        match tokio::time::timeout(self.timeout * per_url.saturating_add(1), attempt).await {
            Ok(Ok(client)) => {
                drop(client);
                None
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "cloud connection diagnosed");
                Some(CloudLinkFault::classify(&error))
            }
            Err(_) => Some(CloudLinkFault::Timeout),
        }
    }
}

/// Handles one client event: the link's state, and what to find out.
fn on_event(event: Event, state: &Arc<LinkState>, diagnosis: &Arc<Diagnosis>) {
    match event {
        Event::Connected => state.on_connected(),
        Event::Disconnected => state.on_disconnected(),
        Event::Closed => state.on_closed(),
        Event::ClientError(ClientError::Other(detail)) if is_auth_error(&detail) => {
            state.on_auth_rejected(detail);
        }
        Event::ServerError(ServerError::AuthorizationViolation) => {
            state.on_auth_rejected("authorization violation".to_owned());
        }
        Event::ClientError(ClientError::Other(detail)) => {
            tracing::debug!(error = %detail, "cloud connection attempt failed");
            diagnosis.start(state);
        }
        other => tracing::warn!(event = %other, "cloud link event"),
    }
}

/// The connection options of the configuration's identity and TLS, with
/// its timeouts.
pub(crate) async fn identity(config: &CloudConfig) -> Result<ConnectOptions, CloudError> {
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
    Ok(options
        .name(packgate_protocol::names::cloud::connection_name(
            &config.gateway_id,
        ))
        // Replies (publish acks, API answers) come to `_INBOX.<gateway_id>.>`,
        // so a cloud may let each gateway read its own inbox and no other.
        .custom_inbox_prefix(packgate_protocol::names::cloud::inbox_prefix(
            &config.gateway_id,
        ))
        .connection_timeout(config.request_timeout())
        .request_timeout(Some(config.request_timeout())))
}

/// The URLs as logs and errors show them: a password or token in one
/// replaced by `***`.
pub(crate) fn shown_urls(urls: &[String]) -> String {
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
    let identity = identity(config).await?;
    let state = Arc::new(LinkState::new(metrics, shown_urls(&config.urls)));
    let diagnosis = Arc::new(Diagnosis {
        options: identity.clone(),
        urls: config.urls.clone(),
        timeout: config.request_timeout(),
        running: AtomicBool::new(false),
        last: Mutex::new(None),
    });
    let max = config.retry_backoff_max();
    let events = Arc::clone(&state);
    let options = identity
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
            let (state, diagnosis) = (Arc::clone(&events), Arc::clone(&diagnosis));
            async move { on_event(event, &state, &diagnosis) }
        });
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
    Ok(CloudLink { client, js, state })
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
}
