//! Desired settings: the cloud holds, per gateway, pack and setting, the
//! value each writable setting should have, and the gateway converges on
//! it.
//!
//! # The bucket
//!
//! A JetStream key-value bucket on the cloud (`cloud.desired_bucket`,
//! default `PACKGATE_DESIRED`, three replicas on a cluster). Key
//! `<gateway_id>.<pack>.<setting>`, such as
//! `site-7.sim-01.charge_current_limit_a`; value a bare number in the
//! setting's unit (`40`) or a JSON object `{"value": 40, "author": "ops",
//! "expires_at_ms": 1767225600000}` (author and expiry optional). Any
//! cloud tool writes it: `nats kv put`, a client library, or
//! `packgate desired set`. Deleting the key stops the gateway from
//! enforcing it (the pack keeps what it has).
//!
//! # The gateway
//!
//! The mirror follows the gateway's own keys through a consumer named
//! `desired-<gateway_id>` (a name the cloud's permissions can give to this
//! gateway alone) and keeps what it saw in `desired-settings.json` of the
//! data directory: after a restart, and while the cloud is away, the
//! reconciler works from that copy.
//!
//! The reconciler sends each desired value as a command to the local
//! control worker (origin `Cloud`, id `desired-r<revision>-<ms>-<pack>.<setting>`),
//! so it is checked against the pack's profile and the site limits and
//! audited like any other command. It does so at start, when a value
//! changes, when a pack comes online or is replaced (its online event),
//! and again every `desired_recheck_s` for what was applied: the write is
//! read back, so a setting changed on the pack behind the gateway's back is
//! corrected then. At most `desired_max_per_s` commands a second. A value
//! the control path rejects (out of bounds, unknown setting or pack) is
//! not tried again until its key changes; one that fails (pack offline, no
//! answer) is tried again with backoff up to 30 s, and at once when the
//! pack comes online.
//!
//! **Conflicts.** A local command (`packgate command`, Home Assistant)
//! that sets another value than the desired one stands until the next
//! recheck, at most `desired_recheck_s` later, when the desired value is
//! written again: the desired value wins after that hold time. Both writes
//! are in the audit store. To keep a local value, change or delete the
//! desired one.
//!
//! Each change of where a setting stands (applied with its read-back,
//! rejected with the reason, retrying with the error, expired) is reported
//! to the cloud stream as JSON on `packgate.<gateway_id>.desired.<pack>.<setting>`
//! (`Nats-Msg-Id` `desired:<pack>.<setting>:r<revision>:<status>`), once the
//! link is up.

mod client;
mod mirror;
mod reconcile;
mod value;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use client::{delete_desired, list_desired, set_desired, DesiredEntry};
pub use value::{parse_key, DesiredValue, DesiredValueError};

use super::link::CloudLink;
use super::CloudMetrics;
use crate::config::CloudConfig;

/// Longest the local copy may take to read at start.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the mirror and the reconciler on `tasks`; nothing when
/// `desired_bucket` is empty.
pub(crate) async fn spawn(
    tasks: &mut JoinSet<()>,
    config: &Arc<CloudConfig>,
    link: &CloudLink,
    local: &async_nats::Client,
    data_dir: Option<PathBuf>,
    metrics: &Arc<CloudMetrics>,
    shutdown: &CancellationToken,
) {
    if config.desired_bucket.is_empty() {
        return;
    }
    let initial = match data_dir.clone() {
        Some(dir) => {
            let load = tokio::task::spawn_blocking(move || mirror::load(&dir));
            match tokio::time::timeout(LOAD_TIMEOUT, load).await {
                Ok(Ok(set)) => set,
                _ => {
                    tracing::warn!("reading the local copy of the desired settings failed or timed out; starting without it");
                    mirror::DesiredSet::new()
                }
            }
        }
        None => mirror::DesiredSet::new(),
    };
    let (sender, receiver) = tokio::sync::watch::channel(initial);
    let mirror = mirror::Mirror {
        config: Arc::clone(config),
        cloud_js: link.js.clone(),
        link: Arc::clone(&link.state),
        data_dir,
        desired: sender,
    };
    tasks.spawn(mirror.run(shutdown.clone()));
    let reconciler = reconcile::Reconciler {
        config: Arc::clone(config),
        local: local.clone(),
        cloud_js: link.js.clone(),
        link: Arc::clone(&link.state),
        metrics: Arc::clone(metrics),
    };
    tasks.spawn(reconciler.run(receiver, shutdown.clone()));
}
