//! Routes setting writes from the control worker to the task that owns the
//! pack's bus: requests arrive on `packgate.bus.<pack>.write`, go to that
//! bus's bounded queue, and the outcome goes back as the reply. A pack this
//! collector does not own is left to the collector that does.
//!
//! Only the control worker may publish on these subjects, and it has
//! validated each command already; the router checks every request again
//! all the same ([`WriteCheck`]: the subject's pack is the command's, the
//! value is within the profile's bounds and the site limits, the command
//! has not expired), and refuses one that fails with a `Rejected` reply,
//! a counter (`writes_refused`) and a log line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use packgate_protocol::{
    decode, encode, names, Command, CommandId, CommandOutcome, CommandReply, PackId,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::bus::WriteRequest;
use super::CollectMetrics;
use crate::retry::{retry_until_shutdown, Backoff};
use crate::telemetry::events::LogLimiter;
use crate::telemetry::now_ms;
use crate::workers::control::validate::WriteCheck;

/// Refused write requests log one line per interval, with the count.
static REFUSED_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Longest the router waits for a bus to report an outcome; the bus applies
/// each write under its own timeout, so this only bounds a stuck bus.
const OUTCOME_TIMEOUT: Duration = Duration::from_secs(60);

/// Wait between tries to subscribe to the write subjects.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// The pack a write subject names: `packgate.bus.<pack>.write`.
fn pack_of(subject: &str) -> Option<PackId> {
    names::pack_of_bus_write_subject(subject)
}

async fn reply(
    client: &async_nats::Client,
    to: async_nats::Subject,
    id: CommandId,
    outcome: CommandOutcome,
) {
    let payload = Bytes::from(encode(&CommandReply {
        command_id: id,
        outcome,
    }));
    if let Err(error) = client.publish(to, payload).await {
        tracing::warn!(%error, "cannot reply to a write request");
    }
}

/// Counts, logs and answers a refused write request.
async fn refuse(
    client: &async_nats::Client,
    to: async_nats::Subject,
    id: CommandId,
    reason: String,
    metrics: &CollectMetrics,
) {
    metrics.writes_refused.inc();
    if let Some(held_back) = REFUSED_LOG.allow() {
        tracing::warn!(command = %id.0, %reason, held_back, "write request refused by the bus owner");
    }
    let outcome = CommandOutcome::Rejected {
        reason: format!("refused by the bus owner: {reason}"),
    };
    reply(client, to, id, outcome).await;
}

/// Subscribes to every bus-write subject, retrying until `shutdown`;
/// `None` on shutdown.
async fn subscribe(
    client: &async_nats::Client,
    shutdown: &CancellationToken,
) -> Option<async_nats::Subscriber> {
    retry_until_shutdown(
        "cannot subscribe to write requests",
        Backoff::fixed(SUBSCRIBE_RETRY),
        shutdown,
        || client.subscribe(names::BUS_WRITE_SUBJECTS),
    )
    .await
}

/// Serves write requests until `shutdown`, checking each with `check`.
pub(super) async fn run_write_router(
    client: async_nats::Client,
    routes: HashMap<PackId, mpsc::Sender<WriteRequest>>,
    check: WriteCheck,
    metrics: Arc<CollectMetrics>,
    shutdown: CancellationToken,
) {
    let Some(mut requests) = subscribe(&client, &shutdown).await else {
        return;
    };
    loop {
        let message = tokio::select! {
            message = requests.next() => match message {
                Some(message) => message,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        let Some(reply_to) = message.reply.clone() else {
            continue;
        };
        let Some((pack, route)) =
            pack_of(&message.subject).and_then(|pack| routes.get(&pack).map(|route| (pack, route)))
        else {
            continue;
        };
        let mut command = match decode::<Command>(&message.payload) {
            Ok(command) => command,
            Err(error) => {
                let reason = format!("malformed write request: {error}");
                let id = CommandId(String::new());
                refuse(&client, reply_to, id, reason, &metrics).await;
                continue;
            }
        };
        let id = command.id.clone();
        match check.check(&pack, &command, now_ms()) {
            Ok(setting) => {
                command.setting = setting.name;
                command.value = setting.value;
            }
            Err(rejection) => {
                refuse(&client, reply_to, id, rejection.to_string(), &metrics).await;
                continue;
            }
        }
        let (tx, rx) = oneshot::channel();
        if let Err(error) = route.try_send(WriteRequest { command, reply: tx }) {
            let reason = match error {
                mpsc::error::TrySendError::Full(_) => "the bus has too many writes queued",
                mpsc::error::TrySendError::Closed(_) => "the collector is shutting down",
            };
            reply(
                &client,
                reply_to,
                id,
                CommandOutcome::Failed {
                    error: reason.into(),
                },
            )
            .await;
            continue;
        }
        let client = client.clone();
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(OUTCOME_TIMEOUT, rx).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => CommandOutcome::Failed {
                    error: "the bus task stopped".into(),
                },
                Err(_) => CommandOutcome::TimedOut,
            };
            reply(&client, reply_to, id, outcome).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pack_comes_from_the_subject() {
        assert_eq!(
            pack_of("packgate.bus.rack-1.write"),
            Some(PackId::new("rack-1").unwrap())
        );
        assert_eq!(pack_of("packgate.bus.rack-1.read"), None);
        assert_eq!(pack_of("packgate.bus.rack-1.write.x"), None);
        assert_eq!(pack_of("other.bus.rack-1.write"), None);
    }
}
