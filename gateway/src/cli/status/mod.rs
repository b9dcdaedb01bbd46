//! `packgate status`: the health of the gateway at a glance. Each worker
//! alive, stalled (its consumer missing, or samples waiting while it
//! stores nothing), missing (from the monitor's snapshots and the
//! broker) or disabled by the configuration, each pack online or
//! stale with the age of its last sample (from the broker, or from the
//! monitor's events when the broker is unreachable), each bank's latest
//! state and limits, stream sizes and
//! consumer lags, the cloud link, recent alarms and recent commands (from
//! the control worker's audit).
//!
//! Every broker call has a short timeout; after the first failure the
//! broker is reported unreachable and what the databases know is printed.

mod banks;
mod sections;

use std::io::Write;

use crate::broker::view as broker;
pub use crate::broker::view::{BrokerView, ConsumerView, BROKER_TIMEOUT};
pub use crate::text::{format_age, format_bytes};

use crate::config::{Config, ConfigSource};
use crate::telemetry::now_ms;
use crate::workers::monitor::{MonitorStore, MonitorStoreError, StoredSnapshot};

/// Rows shown of alarms and of commands.
const RECENT: usize = 10;

/// Why `status` failed (only writing its output can fail; every source of
/// information that is missing is reported in the output instead).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What every section reads from: the configuration, the monitor's
/// database, and the broker.
#[derive(Debug)]
struct Sources<'a> {
    config: &'a Config,
    /// The time of the report, ms since the epoch.
    now: i64,
    monitor: Result<MonitorStore, MonitorStoreError>,
    /// The latest snapshot of each worker the monitor has seen.
    snapshots: Vec<StoredSnapshot>,
    broker: BrokerView,
}

/// Prints the gateway's status to `out`, under a header naming `source`,
/// where `config` came from. `client` is a connection to the local broker,
/// `None` when there is none; without it (or when it does not answer) the
/// databases' view is printed.
pub async fn status(
    config: &Config,
    source: &ConfigSource,
    client: Option<async_nats::Client>,
    out: &mut dyn Write,
) -> Result<(), StatusError> {
    let monitor = MonitorStore::open_read_only(&config.monitor.database_path(&config.data_dir));
    writeln!(
        out,
        "packgate status (configuration {source}; data in {})",
        config.data_dir.display()
    )?;
    if let Err(error) = &monitor {
        writeln!(out, "  Monitor database: {error}")?;
    }
    let snapshots = match &monitor {
        Ok(store) => store.latest_snapshots().unwrap_or_else(|error| {
            let _ = writeln!(out, "  cannot read snapshots: {error}");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    };
    let mut sources = Sources {
        config,
        now: now_ms(),
        monitor,
        snapshots,
        broker: BrokerView::new(client.as_ref()),
    };
    sections::workers(&mut sources, out).await?;
    sections::packs(&mut sources, out).await?;
    banks::banks(&mut sources, out).await?;
    sections::streams(&mut sources, out).await?;
    sections::dead_letters(&sources, out)?;
    sections::cloud_link(&sources, out)?;
    sections::alarms(&sources, out)?;
    sections::commands(&sources, out)?;
    writeln!(out)?;
    if client.is_some() && sources.broker.reachable() {
        writeln!(out, "Broker: reachable")?;
    } else {
        writeln!(
            out,
            "Broker: unreachable ({}); pack states come from the monitor's events",
            sources.broker.reason()
        )?;
    }
    out.flush()?;
    Ok(())
}
