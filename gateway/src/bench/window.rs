//! The figures of a steady state: CPU, memory and storage writes of the
//! gateway and of its broker between two readings taken after a warm-up,
//! so start-up (opening the stores, connecting, the first polls) does not
//! count.

use std::time::Instant;

use serde::Serialize;

use crate::telemetry::process::{self, ProcessUsage};

/// What the gateway and the broker had used at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// When it was taken.
    pub at: Instant,
    /// This process.
    pub gateway: ProcessUsage,
    /// The broker's process (zero when it is not ours to read).
    pub broker: ProcessUsage,
    /// Bytes this process had written to storage.
    pub gateway_written_bytes: Option<u64>,
    /// Bytes the broker had written to storage.
    pub broker_written_bytes: Option<u64>,
}

impl Reading {
    /// Reads this process and the broker's `broker_pid` now.
    pub fn now(broker_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            gateway: process::usage(None),
            broker: broker_pid
                .map(|pid| process::usage(Some(pid)))
                .unwrap_or_default(),
            gateway_written_bytes: process::storage_written_bytes(None),
            broker_written_bytes: broker_pid
                .and_then(|pid| process::storage_written_bytes(Some(pid))),
        }
    }
}

/// The steady-state figures between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WindowFigures {
    /// Length of the window, seconds.
    pub window_s: f64,
    /// Gateway CPU time over the window, % of one core.
    pub gateway_cpu_pct: f64,
    /// Broker CPU time over the window, % of one core.
    pub broker_cpu_pct: f64,
    /// Gateway resident memory at the end of the window, MiB.
    pub gateway_rss_mib: f64,
    /// Broker resident memory at the end of the window, MiB.
    pub broker_rss_mib: f64,
    /// Bytes the gateway (SQLite) wrote to storage, per hour; `None` where
    /// the kernel does not account it.
    pub gateway_written_bytes_per_hour: Option<f64>,
    /// Bytes the broker (its JetStream file store) wrote, per hour.
    pub broker_written_bytes_per_hour: Option<f64>,
    /// Poll to SQLite commit of the samples stored in the window, median,
    /// ms (0 without a data worker).
    pub latency_ms_p50: f64,
    /// Poll to SQLite commit in the window, 99th percentile, ms.
    pub latency_ms_p99: f64,
    /// Poll to SQLite commit in the window, largest, ms.
    pub latency_ms_max: f64,
}

impl WindowFigures {
    /// Sets the window's poll→commit latency.
    pub fn set_latency(&mut self, latency: &packgate_protocol::LatencySummary) {
        self.latency_ms_p50 = latency.p50_ms;
        self.latency_ms_p99 = latency.p99_ms;
        self.latency_ms_max = latency.max_ms;
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// The figures from `first` to `last`; zero over an empty window.
pub fn between(first: &Reading, last: &Reading) -> WindowFigures {
    let window_s = last.at.saturating_duration_since(first.at).as_secs_f64();
    let per_s = |delta: f64| {
        if window_s > 0.0 {
            delta / window_s
        } else {
            0.0
        }
    };
    let per_hour = |a: Option<u64>, b: Option<u64>| {
        a.zip(b)
            .map(|(a, b)| per_s(b.saturating_sub(a) as f64) * 3600.0)
    };
    WindowFigures {
        window_s,
        gateway_cpu_pct: per_s(last.gateway.cpu_s - first.gateway.cpu_s) * 100.0,
        broker_cpu_pct: per_s(last.broker.cpu_s - first.broker.cpu_s) * 100.0,
        gateway_rss_mib: last.gateway.rss_bytes as f64 / MIB,
        broker_rss_mib: last.broker.rss_bytes as f64 / MIB,
        gateway_written_bytes_per_hour: per_hour(
            first.gateway_written_bytes,
            last.gateway_written_bytes,
        ),
        broker_written_bytes_per_hour: per_hour(
            first.broker_written_bytes,
            last.broker_written_bytes,
        ),
        latency_ms_p50: 0.0,
        latency_ms_p99: 0.0,
        latency_ms_max: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reading(at: Instant, gateway_cpu_s: f64, broker_cpu_s: f64, written: u64) -> Reading {
        Reading {
            at,
            gateway: ProcessUsage {
                cpu_s: gateway_cpu_s,
                rss_bytes: 12 * 1024 * 1024,
                peak_rss_bytes: 13 * 1024 * 1024,
            },
            broker: ProcessUsage {
                cpu_s: broker_cpu_s,
                rss_bytes: 24 * 1024 * 1024,
                peak_rss_bytes: 24 * 1024 * 1024,
            },
            gateway_written_bytes: Some(written),
            broker_written_bytes: None,
        }
    }

    #[test]
    fn cpu_is_a_share_of_one_core_and_writes_a_rate_per_hour() {
        let start = Instant::now();
        let first = reading(start, 10.0, 3.0, 1_000);
        let last = reading(start + Duration::from_secs(60), 10.3, 3.06, 61_000);
        let figures = between(&first, &last);
        assert_eq!(figures.window_s, 60.0);
        assert!((figures.gateway_cpu_pct - 0.5).abs() < 1e-9, "{figures:?}");
        assert!((figures.broker_cpu_pct - 0.1).abs() < 1e-9, "{figures:?}");
        assert_eq!(figures.gateway_rss_mib, 12.0);
        assert_eq!(figures.broker_rss_mib, 24.0);
        assert_eq!(figures.gateway_written_bytes_per_hour, Some(3_600_000.0));
        assert_eq!(figures.broker_written_bytes_per_hour, None);
    }

    #[test]
    fn an_empty_window_has_no_rates() {
        let at = Instant::now();
        let figures = between(&reading(at, 1.0, 1.0, 5), &reading(at, 2.0, 2.0, 9));
        assert_eq!(figures.gateway_cpu_pct, 0.0);
        assert_eq!(figures.gateway_written_bytes_per_hour, Some(0.0));
    }

    #[test]
    fn this_process_can_be_read() {
        let reading = Reading::now(None);
        assert!(reading.gateway.rss_bytes > 0);
        assert_eq!(reading.broker, ProcessUsage::default());
    }
}
