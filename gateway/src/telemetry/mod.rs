//! What the gateway knows about itself: counters, latency histograms,
//! process CPU and memory, and logging set-up.

pub mod events;
pub mod health;
pub mod histogram;
pub mod metrics;
pub mod process;
pub mod snapshot;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use tracing_subscriber::filter::{LevelFilter, Targets};

pub use histogram::{LatencyHistogram, LatencyMark};

/// A monotonic counter, cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, such as a queue depth.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds `delta` (negative to lower it).
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global log subscriber, on stderr; `RUST_LOG` overrides the
/// default level (info) with a list of `target=level` or `level` items
/// (`debug`, `info,packgate::workers::collect=debug`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    // Colour only on a terminal: a file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    // A second installation (tests) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => registry.with(lines).try_init(),
        LogFormat::Json => registry.with(lines.json()).try_init(),
    };
}

/// The levels logged: `rust_log` when it reads as a list of levels, else
/// INFO without the broker client's own lines (it reports through our
/// connection events).
fn log_filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .and_then(|text| text.parse::<Targets>().ok())
        .unwrap_or_else(|| {
            Targets::new()
                .with_default(tracing::Level::INFO)
                .with_target("async_nats", LevelFilter::OFF)
        })
}

/// Wall-clock now, milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::log_filter;

    #[test]
    fn rust_log_sets_the_levels_and_a_bad_one_keeps_the_default() {
        let default = log_filter(None);
        assert!(default.would_enable("packgate::workers::data", &Level::INFO));
        assert!(!default.would_enable("packgate::workers::data", &Level::DEBUG));
        assert!(!default.would_enable("async_nats::connector", &Level::ERROR));
        let debug = log_filter(Some("warn,packgate::workers::collect=debug"));
        assert!(debug.would_enable("packgate::workers::collect::bus", &Level::DEBUG));
        assert!(!debug.would_enable("packgate::workers::data", &Level::INFO));
        assert!(debug.would_enable("async_nats", &Level::WARN));
        let bad = log_filter(Some("packgate=loud"));
        assert!(bad.would_enable("packgate", &Level::INFO));
        assert!(!bad.would_enable("async_nats", &Level::ERROR));
    }
}
