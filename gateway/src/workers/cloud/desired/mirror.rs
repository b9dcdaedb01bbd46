//! The local copy of this gateway's desired settings: it follows the
//! cloud's bucket through a consumer of the gateway's own keys, and keeps
//! what it saw in the data directory, so the reconciler has it at the next
//! start even while the cloud is away.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use packgate_protocol::names::cloud::{
    bucket_stream, bucket_subject_prefix, desired_consumer, desired_keys,
};
use packgate_protocol::PackId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::value::{parse_key, DesiredValue};
use crate::config::CloudConfig;
use crate::workers::cloud::state::LinkState;

/// The file of the local copy, in the data directory.
pub(crate) const FILE: &str = "desired-settings.json";

/// Most keys taken in one pull.
const FETCH_MAX: usize = 256;

/// Longest one pull waits for news, so a broken consumer is noticed.
const FETCH_EXPIRES: Duration = Duration::from_secs(5);

/// Wait before following again after a failure.
const RETRY: Duration = Duration::from_secs(2);

/// Wait before looking for a bucket that is not there.
const MISSING_RETRY: Duration = Duration::from_secs(30);

/// Longest a write of the local copy may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One desired setting of this gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Desired {
    /// The pack.
    pub(crate) pack: PackId,
    /// The setting, as commands name it.
    pub(crate) setting: String,
    /// What the cloud wants.
    pub(crate) value: DesiredValue,
    /// The bucket's revision of the key: a new one for every put.
    pub(crate) revision: u64,
}

/// This gateway's desired settings by `<pack>.<setting>`.
pub(crate) type DesiredSet = BTreeMap<String, Desired>;

/// Why following the bucket stopped.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("the bucket's stream {0} does not exist")]
    NoBucket(String),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Other(String),
}

/// The local copy in `dir`, empty when there is none or it cannot be read.
pub(crate) fn load(dir: &Path) -> DesiredSet {
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|error| {
            tracing::warn!(%error, path = %path.display(), "the local copy of the desired settings does not read; starting without it");
            DesiredSet::new()
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => DesiredSet::new(),
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "cannot read the local copy of the desired settings");
            DesiredSet::new()
        }
    }
}

/// Writes the local copy, atomically.
async fn save(dir: &Path, set: &DesiredSet) {
    let (path, text) = (dir.join(FILE), serde_json::to_string_pretty(set));
    let Ok(text) = text else { return };
    let write = tokio::task::spawn_blocking({
        let path = path.clone();
        move || crate::broker::auth::write_private(&path, &text)
    });
    match tokio::time::timeout(SAVE_TIMEOUT, write).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, path = %path.display(), "cannot keep the desired settings locally")
        }
        Ok(Err(_)) | Err(_) => {
            tracing::warn!(path = %path.display(), "keeping the desired settings locally timed out")
        }
    }
}

/// Everything the mirror needs.
#[derive(Debug)]
pub(crate) struct Mirror {
    pub(crate) config: Arc<CloudConfig>,
    pub(crate) cloud_js: jetstream::Context,
    pub(crate) link: Arc<LinkState>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) desired: watch::Sender<DesiredSet>,
}

impl Mirror {
    /// Follows the bucket until `shutdown`, again after every failure.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut told_missing = false;
        loop {
            let mut up = self.link.up();
            tokio::select! {
                up = up.wait_for(|up| *up) => if up.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            let wait = match self.follow(&shutdown).await {
                Ok(()) => return,
                Err(FollowError::NoBucket(stream)) => {
                    if !told_missing {
                        tracing::info!(%stream, "no desired-settings bucket in the cloud: nothing to follow yet (looked for again every {} s)", MISSING_RETRY.as_secs());
                        told_missing = true;
                    }
                    MISSING_RETRY
                }
                Err(error) => {
                    tracing::debug!(%error, "following the desired settings stopped; again shortly");
                    RETRY
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass: a fresh consumer of this gateway's keys, the latest value
    /// of each (the snapshot that replaces the local copy), then every
    /// change as it comes.
    async fn follow(&self, shutdown: &CancellationToken) -> Result<(), FollowError> {
        let timeout = self.config.request_timeout();
        let prefix = bucket_subject_prefix(&self.config.desired_bucket);
        let reader = self.open_reader(&prefix).await?;
        let mut snapshot = (reader.cached_info().num_pending > 0).then(DesiredSet::new);
        if snapshot.is_none() {
            self.replace(DesiredSet::new()).await;
        }
        loop {
            let request = reader
                .fetch()
                .max_messages(FETCH_MAX)
                .expires(FETCH_EXPIRES)
                .messages();
            let mut messages = tokio::select! {
                messages = tokio::time::timeout(timeout, request) => messages
                    .map_err(|_| FollowError::TimedOut(timeout))?
                    .map_err(|e| FollowError::Other(e.to_string()))?,
                () = shutdown.cancelled() => return Ok(()),
            };
            let mut changed = false;
            loop {
                let next = tokio::select! {
                    next = tokio::time::timeout(FETCH_EXPIRES + timeout, messages.next()) => next,
                    () = shutdown.cancelled() => return Ok(()),
                };
                let message = match next {
                    Ok(Some(Ok(message))) => message,
                    Ok(Some(Err(error))) => return Err(FollowError::Other(error.to_string())),
                    Ok(None) => break,
                    Err(_) => return Err(FollowError::TimedOut(FETCH_EXPIRES + timeout)),
                };
                changed |= self.take(&message, &prefix, &mut snapshot).await;
            }
            if changed {
                self.persist().await;
            }
        }
    }

    /// A fresh consumer of this gateway's keys under `prefix`, each key's
    /// latest value first (a consumer of an earlier run is deleted).
    async fn open_reader(&self, prefix: &str) -> Result<consumer::PullConsumer, FollowError> {
        let timeout = self.config.request_timeout();
        let stream_name = bucket_stream(&self.config.desired_bucket);
        let stream = self
            .cloud_js
            .get_stream_no_info(&stream_name)
            .await
            .map_err(|e| FollowError::Other(e.to_string()))?;
        let name = desired_consumer(&self.config.gateway_id);
        // A consumer of an earlier run may have other settings.
        let _ = tokio::time::timeout(timeout, stream.delete_consumer(&name)).await;
        let wanted = consumer::pull::Config {
            name: Some(name),
            filter_subject: format!("{prefix}{}", desired_keys(&self.config.gateway_id)),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(300),
            ..Default::default()
        };
        tokio::time::timeout(timeout, stream.create_consumer(wanted))
            .await
            .map_err(|_| FollowError::TimedOut(timeout))?
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("stream not found") || text.contains("10059") {
                    FollowError::NoBucket(stream_name.clone())
                } else {
                    FollowError::Other(text)
                }
            })
    }

    /// Applies one message of the bucket: into the `snapshot` while it is
    /// being read (which replaces the local copy once complete), else
    /// straight into the followed set. Whether the followed set changed.
    async fn take(
        &self,
        message: &jetstream::Message,
        prefix: &str,
        snapshot: &mut Option<DesiredSet>,
    ) -> bool {
        let Ok(info) = message.info() else {
            return false;
        };
        let (revision, pending) = (info.stream_sequence, info.pending);
        let key = message.subject.as_str().strip_prefix(prefix).unwrap_or("");
        let entry = self.entry(message, key, revision);
        let mut changed = false;
        if let Some(set) = snapshot.as_mut() {
            apply(set, key, &self.config.gateway_id, entry);
        } else {
            let gateway_id = self.config.gateway_id.clone();
            self.desired
                .send_modify(|set| apply(set, key, &gateway_id, entry));
            changed = true;
        }
        if pending == 0 {
            if let Some(set) = snapshot.take() {
                self.replace(set).await;
            }
        }
        changed
    }

    /// The desired setting a message of the bucket says, or `None` for a
    /// deleted key or one that does not read (logged).
    fn entry(&self, message: &jetstream::Message, key: &str, revision: u64) -> Option<Desired> {
        let deleted = message
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
        if deleted {
            return None;
        }
        let (pack, setting) = parse_key(&self.config.gateway_id, key)?;
        match DesiredValue::parse(&message.payload) {
            Ok(value) => Some(Desired {
                pack,
                setting,
                value,
                revision,
            }),
            Err(error) => {
                tracing::warn!(%key, revision, %error, "a desired setting that does not read: ignored");
                None
            }
        }
    }

    async fn replace(&self, set: DesiredSet) {
        tracing::info!(keys = set.len(), "desired settings followed from the cloud");
        self.desired.send_replace(set);
        self.persist().await;
    }

    async fn persist(&self) {
        if let Some(dir) = &self.data_dir {
            let set = self.desired.borrow().clone();
            save(dir, &set).await;
        }
    }
}

/// Puts (or, for `None`, removes) the setting of `key` in `set`.
fn apply(set: &mut DesiredSet, key: &str, gateway_id: &str, entry: Option<Desired>) {
    let Some(short) = key
        .strip_prefix(gateway_id)
        .and_then(|k| k.strip_prefix('.'))
    else {
        return;
    };
    match entry {
        Some(desired) => {
            set.insert(short.to_owned(), desired);
        }
        None => {
            set.remove(short);
        }
    }
}
