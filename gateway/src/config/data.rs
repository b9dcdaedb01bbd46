//! The `[data]` section: the SQLite store of samples.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The SQLite store of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The database file; relative paths are under `data_dir`.
    pub database: PathBuf,
    /// Most samples committed in one transaction.
    pub batch_max_samples: usize,
    /// Longest a received sample waits for its batch to fill before the
    /// batch is committed anyway, milliseconds: at a few packs one
    /// transaction (and one disk write) covers many samples.
    pub batch_linger_ms: u64,
    /// A batch is committed as soon as it holds this many samples, those
    /// already waiting for it counted, without lingering: bounds the
    /// latency when many packs are polled.
    pub batch_min_samples: usize,
    /// Samples older than this are deleted, days; 0 keeps everything.
    pub retention_days: u32,
    /// How often retention runs, seconds.
    pub retention_interval_s: u64,
    /// At shutdown of `packgate run`, how long the data worker may go on
    /// storing what the collector flushed last, milliseconds (what it does
    /// not store stays in the stream for the next start).
    pub shutdown_drain_ms: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("samples.db"),
            batch_max_samples: 1_000,
            batch_linger_ms: 600,
            batch_min_samples: 64,
            retention_days: 90,
            retention_interval_s: 600,
            shutdown_drain_ms: 2_000,
        }
    }
}
