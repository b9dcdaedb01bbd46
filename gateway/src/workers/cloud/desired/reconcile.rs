//! The reconciler: brings each pack's settings to what the cloud desires,
//! through the local control worker (bounds, site limits, audit), and
//! reports each outcome to the cloud.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use futures_util::StreamExt;
use packgate_protocol::names::{self, cloud::desired_report_subject};
use packgate_protocol::{
    decode, Command, CommandId, CommandOrigin, CommandOutcome, Event, EventKind, SettingName,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::mirror::{Desired, DesiredSet};
use crate::config::CloudConfig;
use crate::telemetry::now_ms;
use crate::workers::cloud::state::LinkState;
use crate::workers::cloud::uploader::RateLimit;
use crate::workers::cloud::CloudMetrics;
use crate::workers::control::send_command;

/// How long a command of the reconciler may take to be applied.
const COMMAND_TTL: Duration = Duration::from_secs(10);

/// First wait after a failed attempt; it doubles per failure.
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// Longest wait between two attempts at a failing setting.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Longest the loop sleeps with nothing due.
const IDLE: Duration = Duration::from_secs(60);

/// Where a desired setting stands.
#[derive(Debug, Clone, PartialEq)]
enum Status {
    /// Not tried yet (new, or a new revision).
    Pending,
    /// Applied and read back.
    Applied { read_back: f64 },
    /// Refused by the control path: not tried again until it changes.
    Rejected { reason: String },
    /// Failed (pack offline, bus busy, ...): tried again with backoff.
    Retrying { reason: String },
    /// Past its expiry: left as it is.
    Expired,
}

impl Status {
    fn name(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Applied { .. } => "applied",
            Status::Rejected { .. } => "rejected",
            Status::Retrying { .. } => "retrying",
            Status::Expired => "expired",
        }
    }
}

/// One desired setting and what became of it.
#[derive(Debug)]
struct KeyState {
    desired: Desired,
    status: Status,
    failures: u32,
    due: Option<Instant>,
    reported: bool,
}

/// What the gateway tells the cloud about a desired setting, as JSON on
/// `packgate.<gateway_id>.desired.<pack>.<setting>`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    gateway_id: &'a str,
    pack: &'a str,
    setting: &'a str,
    revision: u64,
    value: f64,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_back: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    at_ms: i64,
}

/// Everything the reconciler needs.
#[derive(Debug)]
pub(crate) struct Reconciler {
    pub(crate) config: Arc<CloudConfig>,
    pub(crate) local: async_nats::Client,
    pub(crate) cloud_js: jetstream::Context,
    pub(crate) link: Arc<LinkState>,
    pub(crate) metrics: Arc<CloudMetrics>,
}

impl Reconciler {
    /// Runs until `shutdown`: at start, on every change of `desired`, when
    /// a pack comes (back) online, when a failed attempt is due again, and
    /// every `desired_recheck_s` for what was applied (a pack changed
    /// behind the gateway's back is corrected).
    pub(crate) async fn run(
        self,
        mut desired: watch::Receiver<DesiredSet>,
        shutdown: CancellationToken,
    ) {
        let mut events = match tokio::time::timeout(
            self.config.request_timeout(),
            self.local.subscribe(names::ALL_EVENTS_SUBJECT),
        )
        .await
        {
            Ok(Ok(subscriber)) => Some(subscriber),
            _ => {
                tracing::warn!(
                    "desired settings: cannot follow the packs' online events; relying on retries"
                );
                None
            }
        };
        let rate = RateLimit::new(self.config.desired_max_per_s);
        let mut states: BTreeMap<String, KeyState> = BTreeMap::new();
        sync(&mut states, &desired.borrow_and_update());
        self.metrics.desired_settings.set(states.len() as i64);
        loop {
            let now = Instant::now();
            let next = states
                .values()
                .filter_map(|s| s.due)
                .min()
                .unwrap_or(now + IDLE)
                .max(now);
            let unreported = states.values().any(|s| !s.reported);
            let wake = if unreported && self.link.is_connected() {
                next.min(now + Duration::from_secs(1))
            } else {
                next
            };
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    sync(&mut states, &desired.borrow_and_update());
                    self.metrics.desired_settings.set(states.len() as i64);
                }
                message = async { events.as_mut()?.next().await }, if events.is_some() => {
                    match message {
                        Some(message) => on_event(&mut states, &message.payload),
                        None => events = None,
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
                () = shutdown.cancelled() => return,
            }
            let due: Vec<String> = states
                .iter()
                .filter(|(_, s)| s.due.is_some_and(|at| at <= Instant::now()))
                .map(|(k, _)| k.clone())
                .collect();
            for key in due {
                if shutdown.is_cancelled() {
                    return;
                }
                if let Some(state) = states.get_mut(&key) {
                    rate.take(1).await;
                    self.apply(&key, state).await;
                }
            }
            if self.link.is_connected() {
                for state in states.values_mut().filter(|s| !s.reported) {
                    state.reported = self.report(state).await;
                    if !state.reported {
                        break;
                    }
                }
            }
        }
    }

    /// One attempt at one setting, through the control worker.
    async fn apply(&self, key: &str, state: &mut KeyState) {
        let now = now_ms();
        let desired = &state.desired;
        if desired.value.expired(now) {
            state.due = None;
            self.set_status(key, state, Status::Expired);
            return;
        }
        let mut id = format!("desired-r{}-{now}-{key}", desired.revision);
        id.truncate(128);
        let command = Command {
            id: CommandId(id),
            pack_id: desired.pack.clone(),
            setting: SettingName(desired.setting.clone()),
            value: desired.value.value,
            origin: CommandOrigin::Cloud,
            issued_at_ms: now,
            expires_at_ms: now
                .saturating_add(i64::try_from(COMMAND_TTL.as_millis()).unwrap_or(i64::MAX)),
        };
        let outcome =
            send_command(&self.local, &command, COMMAND_TTL + Duration::from_secs(2)).await;
        let status = match outcome {
            Ok(reply) => match reply.outcome {
                CommandOutcome::Applied { read_back } => Status::Applied { read_back },
                // Refused for the rate, not for the value: try again.
                CommandOutcome::Rejected { reason } if reason.contains("too many commands") => {
                    Status::Retrying { reason }
                }
                CommandOutcome::Rejected { reason } => Status::Rejected { reason },
                CommandOutcome::Failed { error } => Status::Retrying { reason: error },
                CommandOutcome::TimedOut => Status::Retrying {
                    reason: "the pack did not answer in time".to_owned(),
                },
            },
            Err(error) => Status::Retrying {
                reason: error.to_string(),
            },
        };
        match &status {
            Status::Applied { .. } => {
                self.metrics.desired_applied.inc();
                state.failures = 0;
                state.due = Some(Instant::now() + self.config.desired_recheck());
            }
            Status::Rejected { reason } => {
                self.metrics.desired_rejected.inc();
                if !matches!(state.status, Status::Rejected { .. }) {
                    tracing::warn!(%key, revision = state.desired.revision, value = state.desired.value.value, %reason, "desired setting rejected: not tried again until it changes");
                }
                state.due = None;
            }
            Status::Retrying { reason } => {
                self.metrics.desired_retries.inc();
                if state.failures == 0 {
                    tracing::info!(%key, %reason, "desired setting not applied yet; retrying");
                }
                state.failures = state.failures.saturating_add(1);
                let wait = crate::retry::Backoff::new(RETRY_FIRST, RETRY_MAX)
                    .delay(state.failures.saturating_sub(1));
                state.due = Some(Instant::now() + wait);
            }
            Status::Pending | Status::Expired => {}
        }
        self.set_status(key, state, status);
    }

    fn set_status(&self, key: &str, state: &mut KeyState, status: Status) {
        if std::mem::discriminant(&status) != std::mem::discriminant(&state.status) {
            if let Status::Applied { read_back } = status {
                tracing::info!(%key, revision = state.desired.revision, read_back, "desired setting applied");
            }
            state.reported = false;
        }
        state.status = status;
    }

    /// Publishes where `state` stands to the cloud stream; whether the
    /// cloud took it.
    async fn report(&self, state: &KeyState) -> bool {
        let desired = &state.desired;
        let (read_back, reason) = match &state.status {
            Status::Applied { read_back } => (Some(*read_back), None),
            Status::Rejected { reason } | Status::Retrying { reason } => {
                (None, Some(reason.as_str()))
            }
            Status::Pending | Status::Expired => (None, None),
        };
        let report = Report {
            gateway_id: &self.config.gateway_id,
            pack: desired.pack.as_str(),
            setting: &desired.setting,
            revision: desired.revision,
            value: desired.value.value,
            status: state.status.name(),
            read_back,
            reason,
            at_ms: now_ms(),
        };
        let Ok(payload) = serde_json::to_vec(&report) else {
            return true;
        };
        let subject = desired_report_subject(
            &self.config.gateway_id,
            desired.pack.as_str(),
            &desired.setting,
        );
        let publish = PublishMessage::build()
            .payload(payload.into())
            .expected_stream(&self.config.stream_name)
            .message_id(format!(
                "desired:{}.{}:r{}:{}",
                desired.pack,
                desired.setting,
                desired.revision,
                state.status.name()
            ));
        let timeout = self.config.request_timeout();
        let sent = tokio::time::timeout(timeout, async {
            self.cloud_js.send_publish(subject, publish).await?.await?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
        .await;
        matches!(sent, Ok(Ok(())))
    }
}

/// Brings the states in line with the desired set: new keys and new
/// revisions are due now, removed keys are forgotten.
fn sync(states: &mut BTreeMap<String, KeyState>, desired: &DesiredSet) {
    states.retain(|key, _| desired.contains_key(key));
    for (key, wanted) in desired {
        let fresh = states
            .get(key)
            .is_none_or(|s| s.desired.revision != wanted.revision || s.desired != *wanted);
        if fresh {
            states.insert(
                key.clone(),
                KeyState {
                    desired: wanted.clone(),
                    status: Status::Pending,
                    failures: 0,
                    due: Some(Instant::now()),
                    reported: false,
                },
            );
        }
    }
}

/// A pack that comes (back) online, or is replaced, gets its desired
/// settings now, except those it refused.
fn on_event(states: &mut BTreeMap<String, KeyState>, payload: &[u8]) {
    let Ok(event) = decode::<Event>(payload) else {
        return;
    };
    if !matches!(
        event.kind,
        EventKind::PackOnline | EventKind::PackOnlineIdentified { .. }
    ) {
        return;
    }
    for state in states.values_mut() {
        if state.desired.pack == event.pack_id
            && !matches!(state.status, Status::Rejected { .. } | Status::Expired)
        {
            state.due = Some(Instant::now());
            state.failures = 0;
        }
    }
}
