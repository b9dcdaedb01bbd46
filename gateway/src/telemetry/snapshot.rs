//! Metrics snapshots: every worker publishes its counters, gauges and
//! latency summaries, with the process's RSS and CPU, to the metrics stream
//! every few seconds, once at start and once at shutdown.
//!
//! Publishing is best effort: the broker may be down, and a worker never
//! stops or slows down because its health report could not be sent. A
//! failed publish is counted (`snapshot_publish_failures`, in the next
//! snapshot that gets through) and logged at debug.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use packgate_protocol::{encode, names, LatencySummary, MetricsSnapshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::telemetry::now_ms;

/// Longest a snapshot publish (send and ack) may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Counter added to every snapshot: publishes of earlier snapshots that
/// failed.
pub const PUBLISH_FAILURES_COUNTER: &str = "snapshot_publish_failures";

/// Something that reports a worker's metrics.
pub trait MetricsSource: Send + Sync {
    /// Monotonic counters by name.
    fn counters(&self) -> Vec<(String, u64)>;
    /// Gauges by name.
    fn gauges(&self) -> Vec<(String, f64)> {
        vec![]
    }
    /// Latency summaries.
    fn latencies(&self) -> Vec<LatencySummary> {
        vec![]
    }
    /// Short texts by name, for what a number cannot say (such as why a
    /// link is down).
    fn notes(&self) -> Vec<(String, String)> {
        vec![]
    }
}

/// This host's name: `/etc/hostname`, else the kernel's, else `localhost`.
pub fn hostname() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(gethostname)
            .unwrap_or_else(|| "localhost".to_owned())
    })
    .clone()
}

fn gethostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes and gethostname
    // writes at most that many; the result is NUL-terminated or truncated,
    // and only the bytes before the first NUL are read.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// This process's instance name, `host/pid`: tells two instances of one
/// worker apart. It holds no `:`, so it fits in a de-duplication id.
pub fn instance_name() -> String {
    format!("{}/{}", hostname().replace(':', "_"), std::process::id())
}

/// The de-duplication id of a snapshot: `worker:instance:timestamp`.
pub fn snapshot_msg_id(snapshot: &MetricsSnapshot) -> String {
    format!(
        "{}:{}:{}",
        snapshot.worker, snapshot.instance, snapshot.timestamp_ms
    )
}

/// Takes a snapshot of `source` now.
pub fn take_snapshot(
    worker: &str,
    instance: &str,
    started: Instant,
    source: &dyn MetricsSource,
) -> MetricsSnapshot {
    let usage = crate::telemetry::process::usage(None);
    MetricsSnapshot {
        worker: worker.to_owned(),
        instance: instance.to_owned(),
        timestamp_ms: now_ms(),
        uptime_s: started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        rss_bytes: usage.rss_bytes,
        cpu_s: usage.cpu_s,
        counters: source.counters(),
        gauges: source.gauges(),
        latencies: source.latencies(),
        notes: source.notes(),
    }
}

/// Publishes `snapshot` with an ack and its de-duplication id, under
/// [`PUBLISH_TIMEOUT`].
pub async fn publish_snapshot(
    js: &jetstream::Context,
    snapshot: &MetricsSnapshot,
) -> Result<(), String> {
    let message = PublishMessage::build()
        .payload(encode(snapshot).into())
        .message_id(snapshot_msg_id(snapshot));
    let subject = names::metrics_subject(&snapshot.worker);
    let publish = async {
        let ack = js
            .send_publish(subject, message)
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map(|_| ()).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
        Ok(result) => result,
        Err(_) => Err(format!("no ack within {PUBLISH_TIMEOUT:?}")),
    }
}

/// Publishes a snapshot of `source` for `worker` now, every `interval`
/// and once more when `shutdown` fires, then ends.
pub fn spawn_metrics_publisher(
    js: jetstream::Context,
    worker: &'static str,
    interval: Duration,
    source: Arc<dyn MetricsSource>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let started = Instant::now();
    let instance = instance_name();
    let interval = interval.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let failures = AtomicU64::new(0);
        let send = |last: bool| {
            let mut snapshot = take_snapshot(worker, &instance, started, source.as_ref());
            snapshot.counters.push((
                PUBLISH_FAILURES_COUNTER.to_owned(),
                failures.load(Ordering::Relaxed),
            ));
            let js = &js;
            let failures = &failures;
            async move {
                if let Err(error) = publish_snapshot(js, &snapshot).await {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(worker, %error, last, "metrics snapshot not published");
                }
            }
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => send(false).await,
                () = shutdown.cancelled() => break,
            }
        }
        send(true).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::worker_metrics! {
        /// A worker's metrics, for the tests.
        struct Metrics {
            counters {
                /// Stored.
                samples_stored,
            }
            gauges {
                /// Offline.
                packs_offline,
            }
            latencies {
                /// Commit.
                poll_to_commit: "poll_to_commit",
                /// Ack.
                poll_to_ack: "poll_to_ack",
            }
        }
    }

    #[test]
    fn snapshots_carry_the_sources_metrics() {
        let metrics = Metrics::default();
        metrics.samples_stored.add(7);
        metrics.packs_offline.set(2);
        metrics.poll_to_commit.record_us(1_500);
        let snapshot = take_snapshot("data", "h/1", Instant::now(), &metrics);
        assert_eq!(snapshot.worker, "data");
        assert!(snapshot.rss_bytes > 0);
        assert!(snapshot
            .counters
            .contains(&("samples_stored".to_owned(), 7)));
        assert!(snapshot.gauges.contains(&("packs_offline".to_owned(), 2.0)));
        assert_eq!(snapshot.latencies.len(), 2);
        assert_eq!(snapshot.latencies[0].count, 1);
        assert_eq!(
            snapshot_msg_id(&snapshot),
            format!("data:h/1:{}", snapshot.timestamp_ms)
        );
    }

    #[test]
    fn the_instance_names_host_and_pid() {
        let instance = instance_name();
        assert!(instance.ends_with(&format!("/{}", std::process::id())));
        assert!(!instance.contains(':'));
        assert!(!hostname().is_empty());
    }
}
