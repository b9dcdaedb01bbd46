//! Creating the streams and consumers at start, idempotently: a second
//! start with the same configuration changes nothing on the broker.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use packgate_protocol::names::{ConsumerSpec, StreamSpec, STREAMS};

use super::BrokerError;
use crate::config::{StreamLimits, StreamsConfig};

/// What set-up did to one stream or consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupAction {
    /// It did not exist and was created.
    Created,
    /// It existed with other settings and was updated.
    Updated,
    /// It existed as configured.
    Unchanged,
}

fn stream_config(spec: &StreamSpec, limits: &StreamLimits) -> stream::Config {
    stream::Config {
        name: spec.name.to_owned(),
        subjects: spec.subjects.iter().map(|s| (*s).to_owned()).collect(),
        max_bytes: limits.max_bytes,
        max_age: Duration::from_secs(limits.max_age_s),
        duplicate_window: spec.duplicate_window,
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        num_replicas: 1,
        ..Default::default()
    }
}

/// Whether the settings we own match; fields the broker fills in by
/// itself are not compared.
fn stream_matches(have: &stream::Config, want: &stream::Config) -> bool {
    have.subjects == want.subjects
        && have.max_bytes == want.max_bytes
        && have.max_age == want.max_age
        && have.duplicate_window == want.duplicate_window
        && have.storage == want.storage
        && have.retention == want.retention
        && have.discard == want.discard
}

fn setup_error(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Setup {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    spec: &StreamSpec,
    limits: &StreamLimits,
) -> Result<SetupAction, BrokerError> {
    let want = stream_config(spec, limits);
    match js.get_stream(spec.name).await {
        Ok(existing) => {
            if stream_matches(&existing.cached_info().config, &want) {
                Ok(SetupAction::Unchanged)
            } else {
                js.update_stream(&want)
                    .await
                    .map_err(|e| setup_error(spec.name, e))?;
                tracing::info!(stream = spec.name, "stream settings updated");
                Ok(SetupAction::Updated)
            }
        }
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            js.create_stream(want)
                .await
                .map_err(|e| setup_error(spec.name, e))?;
            tracing::info!(stream = spec.name, "stream created");
            Ok(SetupAction::Created)
        }
        Err(e) => Err(setup_error(spec.name, e)),
    }
}

/// Creates or updates every packgate stream; returns what was done to each,
/// in the order of [`STREAMS`].
pub async fn ensure_streams(
    js: &jetstream::Context,
    limits: &StreamsConfig,
) -> Result<Vec<(&'static str, SetupAction)>, BrokerError> {
    let mut actions = Vec::with_capacity(STREAMS.len());
    for spec in STREAMS {
        let limit = match spec.name {
            n if n == packgate_protocol::names::SAMPLES_STREAM.name => &limits.samples,
            n if n == packgate_protocol::names::EVENTS_STREAM.name => &limits.events,
            _ => &limits.metrics,
        };
        actions.push((spec.name, ensure_stream(js, spec, limit).await?));
    }
    Ok(actions)
}

/// Most deliveries of one message to a consumer before the broker gives up
/// on it (and sends a max-deliveries advisory; the stream keeps the
/// message).
///
/// The workers never spend deliveries on a failure they can outlast: a
/// store that is full or busy, or a cloud that is down, keeps its batch in
/// hand with progress acks and retries it, which counts no delivery. A
/// message that can never be stored is terminated at once. So a delivery
/// is spent only when a worker lets a message go unacked: it stopped or
/// crashed holding it, an ack was lost, or it shut down mid-retry. Twenty
/// of those in a row for the same message means the message itself stops
/// the worker (a crash loop on one poison message): giving up then lets
/// every later message through, and the data worker records the sequence
/// it gave up on. Twenty keeps a message through many more restarts than
/// any outage or upgrade makes.
pub const MAX_DELIVERIES: i64 = 20;

fn consumer_config(spec: &ConsumerSpec) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(spec.durable.to_owned()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: MAX_DELIVERIES,
        max_ack_pending: spec.max_ack_pending,
        ..Default::default()
    }
}

/// Creates the durable pull consumer, or updates it if its settings
/// differ, and returns it.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
) -> Result<(consumer::PullConsumer, SetupAction), BrokerError> {
    let stream = js
        .get_stream(spec.stream)
        .await
        .map_err(|e| setup_error(spec.stream, e))?;
    let want = consumer_config(spec);
    let action = match stream.consumer_info(spec.durable).await {
        Ok(info) => {
            let have = &info.config;
            if have.ack_wait == want.ack_wait
                && have.max_ack_pending == want.max_ack_pending
                && have.max_deliver == want.max_deliver
                && have.ack_policy == want.ack_policy
            {
                SetupAction::Unchanged
            } else {
                SetupAction::Updated
            }
        }
        Err(_) => SetupAction::Created,
    };
    let consumer = if action == SetupAction::Unchanged {
        stream
            .get_consumer(spec.durable)
            .await
            .map_err(|e| setup_error(spec.durable, e))?
    } else {
        stream
            .create_consumer(want)
            .await
            .map_err(|e| setup_error(spec.durable, e))?
    };
    Ok((consumer, action))
}
