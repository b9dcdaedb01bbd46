//! Wiring: the broker connection (or our own nats-server), the workers of
//! this process, and an orderly shutdown.

use tokio_util::sync::CancellationToken;

pub use crate::broker::local::{credentials_path, Broker, BROKER_URL_FILE, CREDENTIALS_FILE};
pub use crate::supervisor::{run_workers, run_workers_reporting, RunError, RunReport, WorkerSet};

/// Cancels `token` on SIGINT, SIGTERM or SIGHUP (the terminal closed):
/// each stops the gateway cleanly, its own broker with it.
pub fn cancel_on_signals(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (term, hangup) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(hangup)) => (term, hangup),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for SIGTERM and SIGHUP");
                return;
            }
        };
        let (mut term, mut hangup) = (term, hangup);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = hangup.recv() => tracing::info!("SIGHUP: shutting down"),
        }
        token.cancel();
    });
}
