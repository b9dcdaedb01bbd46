//! A worker's health, published periodically to the metrics stream.

use serde::{Deserialize, Serialize};

/// Percentiles of one latency, over the snapshot's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// What is measured, such as `poll_to_commit`.
    pub name: String,
    /// Observations in the window.
    pub count: u64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Largest, milliseconds.
    pub max_ms: f64,
}

/// Counters, gauges and latencies of one worker instance at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Worker kind: `collect`, `data`, `cloud`, `control`, `monitor`.
    pub worker: String,
    /// Instance name (host and pid), to tell two instances apart.
    pub instance: String,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Seconds since the worker started.
    pub uptime_s: u64,
    /// packgate version.
    pub version: String,
    /// Resident memory of the process, bytes.
    pub rss_bytes: u64,
    /// CPU time of the process (user + system), seconds.
    pub cpu_s: f64,
    /// Monotonic counters by name.
    pub counters: Vec<(String, u64)>,
    /// Gauges by name.
    pub gauges: Vec<(String, f64)>,
    /// Latency summaries.
    pub latencies: Vec<LatencySummary>,
}
