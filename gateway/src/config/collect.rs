//! The `[collect]` section: polling and publishing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Polling and publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// Poll period of every pack, milliseconds; 0 polls as fast as the
    /// packs and the broker allow, the broker's acks pacing the polls
    /// (benchmarks only).
    pub poll_interval_ms: u64,
    /// Time a pack has to answer one poll, milliseconds.
    pub request_timeout_ms: u64,
    /// Consecutive failed polls after which a pack is declared offline.
    pub offline_after_failures: u32,
    /// Longest wait between polls of an offline pack, milliseconds; the wait
    /// doubles from one poll period up to this.
    pub offline_backoff_max_ms: u64,
    /// Most publishes awaiting their JetStream ack at once.
    pub inflight_max: usize,
    /// Most samples held while the broker is unreachable; past it the oldest
    /// are dropped and counted (an ERROR: data loss).
    pub pending_max: usize,
    /// Longest wait between publish retries while the broker is down,
    /// milliseconds.
    pub publish_retry_max_ms: u64,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1_000,
            request_timeout_ms: 800,
            offline_after_failures: 3,
            offline_backoff_max_ms: 30_000,
            inflight_max: 1_024,
            pending_max: 100_000,
            publish_retry_max_ms: 2_000,
        }
    }
}

impl CollectConfig {
    /// The poll period.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// The per-poll timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
