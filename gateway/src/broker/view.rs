//! What `packgate status` and the web page ask the broker, each call under
//! a short timeout; after the first failure the broker is unreachable and
//! no further call is made.

use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use packgate_protocol::names;
use packgate_protocol::{decode, BankId, BankState, PackId, Sample, WireMessage};

/// Longest one broker call of `status` may take.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(2);

/// The broker as `status` (and the web page) sees it: a JetStream
/// context while it answers.
#[derive(Debug)]
pub struct BrokerView {
    js: Option<jetstream::Context>,
    reason: Option<String>,
}

impl BrokerView {
    /// A view of the broker behind `client`; `None`: no connection.
    pub fn new(client: Option<&async_nats::Client>) -> Self {
        let js = client.map(|c| {
            jetstream::context::ContextBuilder::new()
                .timeout(BROKER_TIMEOUT)
                .build(c.clone())
        });
        let reason = js.is_none().then(|| "no broker connection".to_owned());
        Self { js, reason }
    }

    /// Whether the broker has answered every call so far.
    pub fn reachable(&self) -> bool {
        self.js.is_some()
    }

    /// Why the broker is unreachable, if it is.
    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or("no answer")
    }

    fn fail(&mut self, reason: String) {
        self.js = None;
        self.reason = Some(reason);
    }

    /// Runs one broker call under [`BROKER_TIMEOUT`], marking the broker
    /// unreachable on a failure; `None` once it is unreachable.
    pub async fn ask<T, E: std::fmt::Display>(
        &mut self,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Option<T> {
        if !self.reachable() {
            return None;
        }
        match tokio::time::timeout(BROKER_TIMEOUT, call).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.fail(error.to_string());
                None
            }
            Err(_) => {
                self.fail(format!("no answer within {BROKER_TIMEOUT:?}"));
                None
            }
        }
    }

    /// Fetches a stream's info; a stream the broker does not have (not
    /// created yet) is `None` without marking the broker unreachable.
    pub async fn stream(&mut self, name: &str) -> Option<jetstream::stream::Stream> {
        let js = self.js.clone()?;
        match tokio::time::timeout(BROKER_TIMEOUT, js.get_stream(name)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error))
                if matches!(
                    error.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(_)
                ) =>
            {
                None
            }
            Ok(Err(error)) => {
                self.fail(error.to_string());
                None
            }
            Err(_) => {
                self.fail(format!("no answer within {BROKER_TIMEOUT:?}"));
                None
            }
        }
    }
}

/// What the broker says of one durable consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerView {
    /// The broker does not answer.
    Unknown,
    /// Neither it nor its stream exists.
    Missing,
    /// It exists, with this many messages not yet acked (undelivered
    /// and unacked).
    Lag(u64),
}

impl BrokerView {
    /// Fetches a durable consumer's state; a consumer or stream the broker
    /// does not have is [`ConsumerView::Missing`] without marking the
    /// broker unreachable.
    pub async fn consumer(&mut self, spec: &names::ConsumerSpec) -> ConsumerView {
        use jetstream::context::ConsumerInfoErrorKind as Kind;
        let Some(stream) = self.stream(spec.stream).await else {
            return if self.reachable() {
                ConsumerView::Missing
            } else {
                ConsumerView::Unknown
            };
        };
        let info = tokio::time::timeout(BROKER_TIMEOUT, stream.consumer_info(spec.durable)).await;
        match info {
            Ok(Ok(info)) => {
                let unacked = u64::try_from(info.num_ack_pending).unwrap_or(0);
                ConsumerView::Lag(info.num_pending.saturating_add(unacked))
            }
            Ok(Err(error))
                if matches!(
                    error.kind(),
                    Kind::NotFound | Kind::StreamNotFound | Kind::JetStream(_)
                ) =>
            {
                ConsumerView::Missing
            }
            Ok(Err(error)) => {
                self.fail(error.to_string());
                ConsumerView::Unknown
            }
            Err(_) => {
                self.fail(format!("no answer within {BROKER_TIMEOUT:?}"));
                ConsumerView::Unknown
            }
        }
    }
}

/// The packs with samples on the broker, from the stream's subjects (at
/// most a thousand).
pub async fn packs_on_broker(stream: &jetstream::stream::Stream) -> Vec<PackId> {
    let listing = async {
        let mut subjects = stream
            .info_with_subjects(names::ALL_SAMPLES_SUBJECT)
            .await
            .ok()?;
        let mut ids = Vec::new();
        while let Some(Ok((subject, _messages))) = subjects.next().await {
            if let Some(id) = names::pack_of_sample_subject(&subject) {
                ids.push(id);
            }
            if ids.len() >= 1_000 {
                break;
            }
        }
        ids.sort();
        Some(ids)
    };
    tokio::time::timeout(BROKER_TIMEOUT, listing)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The last sample of `pack` on the samples stream: `None` when there is
/// none, an error text when it cannot be read or decoded.
pub async fn last_sample(
    stream: &jetstream::stream::Stream,
    pack: &PackId,
) -> Option<Result<Sample, String>> {
    last_message(stream, &names::sample_subject(pack)).await
}

/// The last state of `bank` on the bank states stream, as
/// [`last_sample`].
pub async fn last_bank_state(
    stream: &jetstream::stream::Stream,
    bank: &BankId,
) -> Option<Result<BankState, String>> {
    last_message(stream, &names::bank_subject(bank)).await
}

/// The last message on `subject` of `stream`, decoded.
async fn last_message<M: WireMessage>(
    stream: &jetstream::stream::Stream,
    subject: &str,
) -> Option<Result<M, String>> {
    match tokio::time::timeout(
        BROKER_TIMEOUT,
        stream.get_last_raw_message_by_subject(subject),
    )
    .await
    {
        Ok(Ok(message)) => Some(decode::<M>(&message.payload).map_err(|e| e.to_string())),
        Ok(Err(error))
            if matches!(
                error.kind(),
                jetstream::stream::LastRawMessageErrorKind::NoMessageFound
            ) =>
        {
            None
        }
        Ok(Err(error)) => Some(Err(error.to_string())),
        Err(_) => Some(Err(format!("no answer within {BROKER_TIMEOUT:?}"))),
    }
}
