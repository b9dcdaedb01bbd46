//! What a worker may know of the rest of the gateway besides its own
//! config section: the packs and banks, how often the packs are polled,
//! where the other workers' stores are and which workers run. The
//! supervisor builds it once from the configuration, so no worker holds
//! the whole of it.

use std::path::{Path, PathBuf};

use crate::config::{BankConfig, Config, PackConfig};
use crate::health::HealthRules;

/// The rest of the gateway, as the workers see it.
#[derive(Debug, Clone)]
pub struct GatewayView {
    /// The configured packs: ids, drivers, profiles.
    pub packs: Vec<PackConfig>,
    /// The configured banks.
    pub banks: Vec<BankConfig>,
    /// How often each pack is polled, milliseconds.
    pub poll_interval_ms: u64,
    /// Longest one request to another worker over the broker may take,
    /// milliseconds.
    pub request_timeout_ms: u64,
    /// The workers' stores.
    pub stores: StorePaths,
    /// Which workers the configuration runs, and how their liveness is
    /// judged.
    pub health: HealthRules,
}

/// The workers' databases, as configured: relative to the data directory
/// ([`StorePaths::under`]) or absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePaths {
    /// The data worker's samples.
    pub samples: PathBuf,
    /// The monitor's snapshots and events.
    pub monitor: PathBuf,
    /// The control worker's audit of commands.
    pub control: PathBuf,
}

impl StorePaths {
    /// Each path under `data_dir` (an absolute one stays as it is).
    pub fn under(&self, data_dir: &Path) -> StorePaths {
        StorePaths {
            samples: data_dir.join(&self.samples),
            monitor: data_dir.join(&self.monitor),
            control: data_dir.join(&self.control),
        }
    }
}

impl GatewayView {
    /// The view of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            packs: config.packs.clone(),
            banks: config.banks.clone(),
            poll_interval_ms: config.collect.poll_interval_ms,
            request_timeout_ms: config.broker.request_timeout_ms,
            stores: StorePaths {
                samples: config.data.database.clone(),
                monitor: config.monitor.database.clone(),
                control: config.control.database.clone(),
            },
            health: HealthRules::of(config),
        }
    }

    /// The ids of the configured packs, in configuration order.
    pub fn pack_ids(&self) -> impl Iterator<Item = &packgate_protocol::PackId> {
        self.packs.iter().map(|p| &p.id)
    }
}
