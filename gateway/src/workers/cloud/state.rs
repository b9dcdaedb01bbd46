//! The cloud link's state: up only while the connection is open *and* the
//! cloud answers (its acks come back), so a server that hangs with its
//! socket open is seen as down. What is wrong is logged once per change,
//! kept for the metrics, and shown by `packgate status`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::fault::CloudLinkFault;
use super::CloudMetrics;

/// How often a burst of rejected credentials is logged again.
const AUTH_LOG_EVERY: Duration = Duration::from_secs(60);

/// A run of rejected connection attempts, logged once and then at most every
/// [`AUTH_LOG_EVERY`].
#[derive(Debug, Default)]
struct AuthBurst {
    attempts: u64,
    last_logged: Option<Instant>,
}

/// What changes together.
#[derive(Debug, Default)]
struct Inner {
    /// The connection is open.
    connected: bool,
    /// The cloud acknowledged the last upload (or the connection is new).
    answering: bool,
    /// What is wrong, as last logged.
    fault: Option<CloudLinkFault>,
    /// Since when the link is down, once it was up.
    down_since: Option<Instant>,
    auth: AuthBurst,
}

/// The link's state, shared by the client's event handler, the uploaders
/// and the control bridge.
#[derive(Debug)]
pub(crate) struct LinkState {
    metrics: Arc<CloudMetrics>,
    urls: String,
    up: watch::Sender<bool>,
    connected: watch::Sender<bool>,
    inner: Mutex<Inner>,
}

impl LinkState {
    /// A link to `urls` (as logs show them), down until connected.
    pub(crate) fn new(metrics: Arc<CloudMetrics>, urls: String) -> Self {
        Self {
            metrics,
            urls,
            up: watch::channel(false).0,
            connected: watch::channel(false).0,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the state to the watchers and the metrics.
    fn publish(&self, inner: &Inner) {
        let up = inner.connected && inner.answering;
        self.metrics.set_link_up(up);
        self.up.send_replace(up);
        self.connected.send_replace(inner.connected);
    }

    /// True while connected and answering.
    pub(crate) fn up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// True while the connection is open, answering or not.
    pub(crate) fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Whether the connection is open.
    pub(crate) fn is_connected(&self) -> bool {
        self.lock().connected
    }

    /// Whether the cloud acknowledged the last upload.
    pub(crate) fn is_answering(&self) -> bool {
        self.lock().answering
    }

    /// What is wrong with the link, if anything is known.
    pub(crate) fn fault(&self) -> Option<CloudLinkFault> {
        self.lock().fault.clone()
    }

    /// The connection is open (first or again).
    pub(crate) fn on_connected(&self) {
        let mut inner = self.lock();
        inner.connected = true;
        inner.answering = true;
        if inner.auth.attempts > 0 {
            tracing::info!(
                urls = %self.urls,
                rejected = inner.auth.attempts,
                "cloud accepted the credentials"
            );
        }
        inner.auth = AuthBurst::default();
        match (inner.down_since.take(), inner.fault.take()) {
            (Some(since), Some(fault)) => tracing::info!(
                urls = %self.urls,
                "cloud link up after {} s down ({fault})",
                since.elapsed().as_secs()
            ),
            _ => tracing::info!(urls = %self.urls, "cloud link up"),
        }
        self.metrics.set_last_error(None);
        self.publish(&inner);
    }

    /// The connection dropped; the client reconnects.
    pub(crate) fn on_disconnected(&self) {
        let mut inner = self.lock();
        inner.connected = false;
        inner.down_since.get_or_insert_with(Instant::now);
        tracing::warn!(
            urls = %self.urls,
            "cloud link down; reconnecting (uploads wait in the local stream)"
        );
        inner.fault = Some(CloudLinkFault::Disconnected);
        self.metrics
            .set_last_error(Some(CloudLinkFault::Disconnected.to_string()));
        self.publish(&inner);
    }

    /// The client is closed (the worker stops).
    pub(crate) fn on_closed(&self) {
        let mut inner = self.lock();
        inner.connected = false;
        self.publish(&inner);
    }

    /// A connection attempt failed for `fault`: logged when it differs from
    /// the last fault logged. Ignored once the link is up again (a late
    /// diagnosis).
    pub(crate) fn on_fault(&self, fault: CloudLinkFault) {
        let mut inner = self.lock();
        if inner.connected {
            return;
        }
        self.metrics.set_last_error(Some(fault.to_string()));
        if inner.fault.as_ref() == Some(&fault) {
            return;
        }
        let urls = &self.urls;
        if fault.needs_operator() {
            tracing::error!(
                urls = %urls,
                "cloud link down: {fault}. Retrying with backoff; nothing is lost, \
                 the backlog waits in the local stream"
            );
        } else {
            tracing::warn!(
                urls = %urls,
                "cloud link down: {fault}. Retrying with backoff; the backlog waits \
                 in the local stream"
            );
        }
        inner.fault = Some(fault);
    }

    /// The cloud refused the credentials: counted, and an ERROR once per
    /// burst of rejections (again every [`AUTH_LOG_EVERY`]).
    pub(crate) fn on_auth_rejected(&self, detail: String) {
        self.metrics.auth_failures.inc();
        let fault = CloudLinkFault::CredentialsRejected(detail);
        let message = fault.to_string();
        self.metrics.set_last_error(Some(message.clone()));
        let mut inner = self.lock();
        inner.fault = Some(fault);
        let burst = &mut inner.auth;
        burst.attempts += 1;
        let due = burst
            .last_logged
            .is_none_or(|at| at.elapsed() >= AUTH_LOG_EVERY);
        if due {
            burst.last_logged = Some(Instant::now());
            tracing::error!(
                urls = %self.urls,
                attempts = burst.attempts,
                "{message}; check cloud.user/password, token, nkey_seed or creds_file. \
                 Retrying with backoff; nothing is lost, the backlog waits in the local stream"
            );
        }
    }

    /// An upload got no ack within `waited` while connected: the cloud does
    /// not answer, and the link is down until an upload goes through.
    pub(crate) fn on_upload_timeout(&self, waited: Duration) {
        let mut inner = self.lock();
        if !inner.connected || !inner.answering {
            return;
        }
        inner.answering = false;
        inner.down_since.get_or_insert_with(Instant::now);
        let fault = CloudLinkFault::Unresponsive(waited);
        tracing::warn!(
            urls = %self.urls,
            "cloud link down: {fault}; probing with one message at a time (uploads wait \
             in the local stream)"
        );
        self.metrics.set_last_error(Some(fault.to_string()));
        inner.fault = Some(fault);
        self.publish(&inner);
    }

    /// The cloud acknowledged an upload: if it had stopped answering, the
    /// link is up again.
    pub(crate) fn on_upload_acked(&self) {
        let mut inner = self.lock();
        if inner.answering || !inner.connected {
            return;
        }
        inner.answering = true;
        let since = inner.down_since.take();
        inner.fault = None;
        tracing::info!(
            urls = %self.urls,
            "cloud answers again after {} s",
            since.map_or(0, |s| s.elapsed().as_secs())
        );
        self.metrics.set_last_error(None);
        self.publish(&inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_rejections_counts_every_attempt_and_clears_on_connect() {
        let metrics = Arc::new(CloudMetrics::default());
        let state = LinkState::new(Arc::clone(&metrics), "u".into());
        let rx = state.up();
        for _ in 0..3 {
            state.on_auth_rejected("authorization violation".into());
        }
        assert_eq!(metrics.auth_failures.get(), 3);
        assert!(metrics
            .last_error()
            .is_some_and(|e| e.contains("rejected the credentials")));
        state.on_connected();
        assert!(*rx.borrow());
        assert!(metrics.link_up());
        assert_eq!(metrics.last_error(), None);
    }

    #[test]
    fn an_unanswered_upload_takes_the_link_down_until_one_is_acked() {
        let metrics = Arc::new(CloudMetrics::default());
        let state = LinkState::new(Arc::clone(&metrics), "u".into());
        // Not connected: a timeout says nothing about the cloud.
        state.on_upload_timeout(Duration::from_secs(2));
        assert_eq!(state.fault(), None);
        state.on_connected();
        assert!(metrics.link_up());
        state.on_upload_timeout(Duration::from_secs(2));
        assert!(!metrics.link_up());
        assert!(state.is_connected() && !state.is_answering());
        assert!(metrics
            .last_error()
            .is_some_and(|e| e.contains("does not answer (no ack within 2000 ms)")));
        state.on_upload_acked();
        assert!(metrics.link_up());
        assert_eq!(metrics.last_error(), None);
    }

    #[test]
    fn a_fault_is_kept_until_connected_and_a_late_one_is_ignored() {
        let metrics = Arc::new(CloudMetrics::default());
        let state = LinkState::new(Arc::clone(&metrics), "u".into());
        state.on_fault(CloudLinkFault::CertificateUnknown);
        state.on_fault(CloudLinkFault::CertificateUnknown);
        assert_eq!(state.fault(), Some(CloudLinkFault::CertificateUnknown));
        assert!(metrics
            .last_error()
            .is_some_and(|e| e.starts_with("certificate unknown")));
        state.on_connected();
        state.on_fault(CloudLinkFault::Refused);
        assert_eq!(state.fault(), None);
        assert_eq!(metrics.last_error(), None);
    }
}
