//! Wiring: the broker connection (or our own nats-server), the workers of
//! this process, and an orderly shutdown.

use tokio_util::sync::CancellationToken;

pub use crate::broker::local::{credentials_path, Broker, BROKER_URL_FILE, CREDENTIALS_FILE};
pub use crate::supervisor::{run_workers, RunError, RunReport, WorkerSet};

/// Polls per second up to which the workers run on one thread: at a
/// site's tens of packs at 1 Hz a second thread only adds hand-offs
/// between threads (most of the cost there); well beyond it, one thread
/// saturates its core and the poll-to-store latency grows.
pub const ONE_THREAD_POLLS_PER_S: f64 = 250.0;

/// Most threads the async runtime is given, however many cores the box has.
pub const MAX_RUNTIME_THREADS: usize = 4;

/// Threads the async runtime runs on for `packs` polled every
/// `poll_interval_ms` (0: as fast as they answer) on a box of `cores`:
/// one up to [`ONE_THREAD_POLLS_PER_S`], else one per core up to
/// [`MAX_RUNTIME_THREADS`].
pub fn runtime_threads(packs: usize, poll_interval_ms: u64, cores: usize) -> usize {
    let polls_per_s = if poll_interval_ms == 0 {
        f64::INFINITY
    } else {
        packs as f64 * 1000.0 / poll_interval_ms as f64
    };
    if packs == 0 || polls_per_s <= ONE_THREAD_POLLS_PER_S {
        1
    } else {
        cores.clamp(1, MAX_RUNTIME_THREADS)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_at_one_hertz_runs_on_one_thread_and_a_large_or_unpaced_one_on_every_core() {
        assert_eq!(runtime_threads(0, 0, 2), 1);
        assert_eq!(runtime_threads(50, 1000, 2), 1);
        assert_eq!(runtime_threads(250, 1000, 2), 1);
        assert_eq!(runtime_threads(251, 1000, 2), 2);
        assert_eq!(runtime_threads(1000, 1000, 2), 2);
        // 50 packs every 100 ms is 500 polls a second.
        assert_eq!(runtime_threads(50, 100, 2), 2);
        // As fast as they answer.
        assert_eq!(runtime_threads(4, 0, 2), 2);
        assert_eq!(runtime_threads(1000, 1000, 64), MAX_RUNTIME_THREADS);
        assert_eq!(runtime_threads(1000, 1000, 1), 1);
    }
}
