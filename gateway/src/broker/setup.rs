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

/// Whether the broker refused a stream's size: it cannot reserve that
/// much storage.
fn refused_for_storage(error: &jetstream::context::CreateStreamError) -> bool {
    matches!(error.kind(), jetstream::context::CreateStreamErrorKind::JetStream(ref j)
        if j.error_code() == jetstream::ErrorCode::STORAGE_RESOURCES_EXCEEDED
            || j.error_code() == jetstream::ErrorCode::INSUFFICIENT_RESOURCES)
}

/// Why [`create_or_update`] did not get its way.
enum Refused {
    /// The broker has not the storage for this size.
    Storage(jetstream::context::CreateStreamError),
    /// Any other refusal of the create or update.
    Other(jetstream::context::CreateStreamError),
    /// The stream could not be looked up.
    Lookup(BrokerError),
}

impl From<jetstream::context::CreateStreamError> for Refused {
    fn from(error: jetstream::context::CreateStreamError) -> Self {
        if refused_for_storage(&error) {
            Refused::Storage(error)
        } else {
            Refused::Other(error)
        }
    }
}

async fn create_or_update(
    js: &jetstream::Context,
    spec: &StreamSpec,
    want: &stream::Config,
) -> Result<SetupAction, Refused> {
    match js.get_stream(spec.name).await {
        Ok(existing) => {
            if stream_matches(&existing.cached_info().config, want) {
                Ok(SetupAction::Unchanged)
            } else {
                js.update_stream(want).await?;
                tracing::info!(
                    stream = spec.name,
                    max_bytes = want.max_bytes,
                    "stream settings updated"
                );
                Ok(SetupAction::Updated)
            }
        }
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            js.create_stream(want.clone()).await?;
            tracing::info!(
                stream = spec.name,
                max_bytes = want.max_bytes,
                "stream created"
            );
            Ok(SetupAction::Created)
        }
        Err(e) => Err(Refused::Lookup(setup_error(spec.name, e))),
    }
}

/// The smallest size a stream is shrunk to.
pub const MIN_STREAM_BYTES: i64 = 1024 * 1024;

/// The share of the data disk the streams may hold together; the rest is
/// for the SQLite databases, their WAL and the broker's own files.
pub const STREAMS_DISK_SHARE: f64 = 0.5;

/// The stream limits scaled down, all in proportion, so that together
/// they take at most [`STREAMS_DISK_SHARE`] of `disk_bytes` (the free
/// space plus what the store already holds); each stays at least
/// [`MIN_STREAM_BYTES`]. Limits that fit are returned unchanged.
///
/// The scale is rounded down to a coarse step (see [`coarse_scale`]), so
/// that the free space moving a little between two starts, as the
/// databases grow, does not resize the streams at every start: a stream
/// made smaller drops its oldest messages, which may be ones the cloud
/// has not had yet.
pub fn fit_streams_to_disk(limits: &StreamsConfig, disk_bytes: u64) -> StreamsConfig {
    let budget = disk_bytes as f64 * STREAMS_DISK_SHARE;
    let total: f64 = limits
        .named()
        .iter()
        .map(|(_, l)| l.max_bytes.max(0) as f64)
        .sum();
    if total <= budget || total <= 0.0 {
        return limits.clone();
    }
    let scale = coarse_scale(budget / total);
    limits.map(|l| StreamLimits {
        max_bytes: ((l.max_bytes as f64 * scale) as i64).max(MIN_STREAM_BYTES),
        max_age_s: l.max_age_s,
    })
}

/// `scale` (in (0, 1)) rounded down to an eighth of the power of two above
/// it: at most a fifth smaller, and the same for any free space within
/// that step.
fn coarse_scale(scale: f64) -> f64 {
    let mut power = 1.0_f64;
    while power / 2.0 >= scale && power > f64::MIN_POSITIVE {
        power /= 2.0;
    }
    let step = power / 8.0;
    (scale / step).floor() * step
}

/// Creates or updates every packgate stream; returns what was done to each,
/// in the order of [`STREAMS`]. When the broker cannot reserve the storage
/// asked for, every stream is halved (never below [`MIN_STREAM_BYTES`])
/// and set up again, with a WARN: smaller streams keep the pipeline
/// running, a refused one would stop it.
pub async fn ensure_streams(
    js: &jetstream::Context,
    limits: &StreamsConfig,
) -> Result<Vec<(&'static str, SetupAction)>, BrokerError> {
    let mut limits = settled_limits(js, limits).await;
    // Streams created by a pass that was then refused for storage: the
    // next pass finds them at the old size and updates them, but to the
    // caller they are new.
    let mut created: Vec<&'static str> = Vec::new();
    loop {
        match ensure_streams_once(js, &limits, &mut created).await {
            Ok(mut actions) => {
                for (name, action) in &mut actions {
                    if created.contains(name) {
                        *action = SetupAction::Created;
                    }
                }
                return Ok(actions);
            }
            Err((name, Refused::Storage(error))) => {
                let smaller = halved(&limits);
                if smaller == limits {
                    return Err(setup_error(name, error));
                }
                tracing::warn!(
                    stream = name,
                    %error,
                    samples_bytes = smaller.samples.max_bytes,
                    events_bytes = smaller.events.max_bytes,
                    metrics_bytes = smaller.metrics.max_bytes,
                    banks_bytes = smaller.banks.max_bytes,
                    "the broker cannot reserve the streams' storage; halving them"
                );
                limits = smaller;
            }
            Err((name, Refused::Other(error))) => return Err(setup_error(name, error)),
            Err((_, Refused::Lookup(error))) => return Err(error),
        }
    }
}

/// The limits to set up: `configured`, or the halved limits an earlier
/// start settled on because the broker could not reserve `configured`'s
/// storage. Keeping those makes a second start change nothing, where
/// trying the configured sizes again could grow the first streams and
/// shrink them back when a later one is refused; a changed configuration
/// (or a stream set up by hand) tries the configured sizes afresh.
async fn settled_limits(js: &jetstream::Context, configured: &StreamsConfig) -> StreamsConfig {
    let mut have = Vec::with_capacity(STREAMS.len());
    for spec in STREAMS {
        match js.get_stream(spec.name).await {
            Ok(stream) => have.push(stream.cached_info().config.max_bytes),
            // Missing or not readable: the set-up pass creates it or says why.
            Err(_) => return configured.clone(),
        }
    }
    let mut level = configured.clone();
    let mut halvings = 0_u32;
    loop {
        let next = halved(&level);
        if next == level {
            return configured.clone();
        }
        level = next;
        halvings += 1;
        let same = STREAMS
            .iter()
            .zip(&have)
            .all(|(spec, bytes)| level.of(spec).max_bytes == *bytes);
        if same {
            tracing::warn!(
                halvings,
                samples_bytes = level.samples.max_bytes,
                events_bytes = level.events.max_bytes,
                metrics_bytes = level.metrics.max_bytes,
                banks_bytes = level.banks.max_bytes,
                "the streams stay at the size an earlier start halved them to: \
                 the broker could not reserve the configured storage"
            );
            return level;
        }
    }
}

async fn ensure_streams_once(
    js: &jetstream::Context,
    limits: &StreamsConfig,
    created: &mut Vec<&'static str>,
) -> Result<Vec<(&'static str, SetupAction)>, (&'static str, Refused)> {
    let mut actions = Vec::with_capacity(STREAMS.len());
    for spec in STREAMS {
        let limit = limits.of(spec);
        let action = create_or_update(js, spec, &stream_config(spec, limit))
            .await
            .map_err(|refused| (spec.name, refused))?;
        if action == SetupAction::Created {
            created.push(spec.name);
        }
        actions.push((spec.name, action));
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

/// Every stream at half its size, at least [`MIN_STREAM_BYTES`].
fn halved(limits: &StreamsConfig) -> StreamsConfig {
    limits.map(|l| StreamLimits {
        max_bytes: (l.max_bytes / 2).max(MIN_STREAM_BYTES.min(l.max_bytes)),
        max_age_s: l.max_age_s,
    })
}

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

/// Whether a consumer's settings are those `want` asks for.
fn same_settings(have: &consumer::Config, want: &consumer::pull::Config) -> bool {
    have.ack_wait == want.ack_wait
        && have.max_ack_pending == want.max_ack_pending
        && have.max_deliver == want.max_deliver
        && have.ack_policy == want.ack_policy
}

/// Whether `spec`'s consumer is on the broker with its settings, in one
/// request (its info): the cheap check of a watch that runs for the life
/// of the process. `false` when it is not, or the broker did not say;
/// [`ensure_consumer`] then tells which and sets it up.
pub async fn consumer_in_place(js: &jetstream::Context, spec: &ConsumerSpec) -> bool {
    let Ok(stream) = js.get_stream_no_info(spec.stream).await else {
        return false;
    };
    stream
        .consumer_info(spec.durable)
        .await
        .is_ok_and(|info| same_settings(&info.config, &consumer_config(spec)))
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
        Ok(info) if same_settings(&info.config, &want) => SetupAction::Unchanged,
        Ok(_) => SetupAction::Updated,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The bank states stream as large as the metrics stream.
    fn limits(samples: i64, events: i64, metrics: i64) -> StreamsConfig {
        let one = |max_bytes| StreamLimits {
            max_bytes,
            max_age_s: 3600,
        };
        StreamsConfig {
            samples: one(samples),
            events: one(events),
            metrics: one(metrics),
            banks: one(metrics),
        }
    }

    const MIB: i64 = 1024 * 1024;

    #[test]
    fn limits_that_fit_are_kept() {
        let want = limits(100 * MIB, 10 * MIB, 10 * MIB);
        assert_eq!(fit_streams_to_disk(&want, 260 * MIB as u64), want);
        assert_eq!(fit_streams_to_disk(&want, 10_000 * MIB as u64), want);
    }

    #[test]
    fn limits_too_large_for_the_disk_shrink_in_proportion() {
        let want = limits(2048 * MIB, 256 * MIB, 256 * MIB);
        let disk = 256 * MIB as u64;
        let fit = fit_streams_to_disk(&want, disk);
        let total: i64 = fit.named().iter().map(|(_, l)| l.max_bytes).sum();
        assert!(total as f64 <= disk as f64 * STREAMS_DISK_SHARE, "{fit:?}");
        assert!(
            total as f64 >= disk as f64 * STREAMS_DISK_SHARE * 0.8,
            "{fit:?}"
        );
        assert_eq!(fit.samples.max_bytes / fit.events.max_bytes, 8);
        assert_eq!(fit.samples.max_age_s, 3600);
    }

    #[test]
    fn a_little_more_or_less_free_space_keeps_the_same_limits() {
        let want = limits(2048 * MIB, 256 * MIB, 256 * MIB);
        let disk = 1000 * MIB as u64;
        let fit = fit_streams_to_disk(&want, disk);
        assert_ne!(fit, want);
        for other in [disk - 5 * MIB as u64, disk + 5 * MIB as u64] {
            assert_eq!(fit_streams_to_disk(&want, other), fit, "{other}");
        }
    }

    #[test]
    fn the_coarse_scale_is_at_most_a_fifth_smaller_and_never_larger() {
        for i in 1..10_000 {
            let scale = f64::from(i) / 10_000.0;
            let coarse = coarse_scale(scale);
            assert!(coarse <= scale, "{scale} -> {coarse}");
            assert!(coarse >= scale * 0.8 - 1e-12, "{scale} -> {coarse}");
        }
        assert_eq!(coarse_scale(0.75), 0.75);
        assert_eq!(coarse_scale(0.3), 0.25);
    }

    #[test]
    fn halving_stops_at_the_minimum() {
        let mut l = limits(8 * MIB, 3 * MIB, MIB);
        l = halved(&l);
        assert_eq!(l, limits(4 * MIB, MIB + MIB / 2, MIB));
        l = halved(&halved(&halved(&l)));
        assert_eq!(l, limits(MIB, MIB, MIB));
        assert_eq!(halved(&l), l);
    }

    #[test]
    fn a_tiny_disk_still_leaves_each_stream_its_minimum() {
        let fit = fit_streams_to_disk(&limits(2048 * MIB, 256 * MIB, 256 * MIB), 2 * MIB as u64);
        for l in [fit.samples, fit.events, fit.metrics, fit.banks] {
            assert_eq!(l.max_bytes, MIN_STREAM_BYTES);
        }
    }
}
