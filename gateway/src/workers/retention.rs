//! Retention in steps: the shared back half of every worker that keeps a
//! SQLite store (data, monitor). Old rows go a bounded number at a time on
//! a blocking thread, so a large backlog of expired rows never holds the
//! store for long.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::telemetry::{now_ms, Counter};

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// A store that can delete its rows older than a cutoff, at most `max_rows`
/// per call.
pub(crate) trait Prune: Send + 'static {
    /// The store's error.
    type Error: std::fmt::Display + Send + 'static;

    /// Deletes at most `max_rows` rows older than `cutoff_ms`; returns how
    /// many went.
    fn prune_older_than(&mut self, cutoff_ms: i64, max_rows: usize) -> Result<usize, Self::Error>;
}

impl Prune for crate::store::SampleStore {
    type Error = crate::store::StoreError;
    fn prune_older_than(&mut self, cutoff_ms: i64, max_rows: usize) -> Result<usize, Self::Error> {
        crate::store::SampleStore::prune_older_than(self, cutoff_ms, max_rows)
    }
}

impl Prune for crate::workers::monitor::MonitorStore {
    type Error = crate::workers::monitor::MonitorStoreError;
    fn prune_older_than(&mut self, cutoff_ms: i64, max_rows: usize) -> Result<usize, Self::Error> {
        crate::workers::monitor::MonitorStore::prune_older_than(self, cutoff_ms, max_rows)
    }
}

/// Deletes the rows older than `retention_days` from `store`, `step_rows`
/// at a time, until none is left, counting them in `pruned`. A failure is
/// logged and left for the next period. Returns `false` when `shutdown`
/// fired on the way.
pub(crate) async fn prune_expired<S: Prune>(
    store: &Arc<Mutex<S>>,
    retention_days: u32,
    step_rows: usize,
    pruned: &Counter,
    what: &'static str,
    shutdown: &CancellationToken,
) -> bool {
    let cutoff_ms = now_ms() - i64::from(retention_days) * DAY_MS;
    loop {
        let store = Arc::clone(store);
        let step = tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .prune_older_than(cutoff_ms, step_rows)
        })
        .await;
        match step {
            Ok(Ok(0)) => return true,
            Ok(Ok(rows)) => pruned.add(rows as u64),
            Ok(Err(error)) => {
                tracing::warn!(%error, store = what, "retention failed; trying again next period");
                return true;
            }
            Err(_) => return true,
        }
        if shutdown.is_cancelled() {
            return false;
        }
    }
}
