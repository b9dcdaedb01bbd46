//! The control bridge: requests from the cloud on
//! `packgate.<gateway_id>.control` are passed to the local control worker
//! by request-reply, with the command's remaining time as the deadline, and
//! its reply goes back to the cloud requester unchanged.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Message, Request, RequestErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use packgate_protocol::{
    decode, encode, names, Command, CommandId, CommandOrigin, CommandOutcome, CommandReply,
};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{control_subject, CloudMetrics};
use crate::config::CloudConfig;
use crate::retry::Backoff;
use crate::telemetry::now_ms;

/// Wait between tries to subscribe to the cloud's control subject.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// Requests handled at once; past it the bridge stops taking more off the
/// subscription (whose buffer is bounded) until one finishes.
const MAX_IN_FLIGHT: usize = 32;

/// Longest a command may wait on the local control worker, whatever its
/// expiry says.
const MAX_FORWARD: Duration = Duration::from_secs(300);

/// Time given to the control worker for a command that has already
/// expired, so it can audit and reject it.
const EXPIRED_FORWARD: Duration = Duration::from_millis(500);

/// How long in-flight requests may finish after a shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves control requests from the cloud until `shutdown`. The
/// subscription is made at once (the client sends it on every connection);
/// that requests are served is logged once the cloud has it, on the first
/// connection, not before.
pub(crate) async fn run_bridge(
    config: Arc<CloudConfig>,
    cloud: Client,
    mut connected: watch::Receiver<bool>,
    local: Client,
    metrics: Arc<CloudMetrics>,
    shutdown: CancellationToken,
) {
    let subject = control_subject(&config.gateway_id);
    let mut retry = Backoff::fixed(SUBSCRIBE_RETRY);
    let mut requests = loop {
        match tokio::time::timeout(config.request_timeout(), cloud.subscribe(subject.clone())).await
        {
            Ok(Ok(subscriber)) => break subscriber,
            Ok(Err(error)) => tracing::warn!(%error, %subject, "cannot subscribe; retrying"),
            Err(_) => tracing::warn!(%subject, "subscribing timed out; retrying"),
        }
        if !retry.wait(&shutdown).await {
            return;
        }
    };
    let mut announced = false;
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    loop {
        let request = tokio::select! {
            request = requests.next() => request,
            up = async { connected.wait_for(|up| *up).await.is_ok() }, if !announced => {
                announced = true;
                if up {
                    // The subscription goes out with the connection.
                    let _ = tokio::time::timeout(config.request_timeout(), cloud.flush()).await;
                    tracing::info!(%subject, "serving control requests from the cloud");
                }
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        let Some(request) = request else { break };
        metrics.control_requests.inc();
        let permit = tokio::select! {
            permit = Arc::clone(&limit).acquire_owned() => permit,
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let (cloud, local, config) = (cloud.clone(), local.clone(), Arc::clone(&config));
        tasks.spawn(async move {
            handle(request, &cloud, &local, &config).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(config.request_timeout(), requests.unsubscribe()).await;
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
}

/// Answers one request from the cloud.
async fn handle(request: Message, cloud: &Client, local: &Client, config: &CloudConfig) {
    let Some(reply_to) = request.reply.clone() else {
        crate::warn_limited!("control request without a reply subject: ignored", subject = %request.subject);
        return;
    };
    let reply = forward(request.payload, local).await;
    match tokio::time::timeout(config.request_timeout(), cloud.publish(reply_to, reply)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot send a control reply to the cloud"),
        Err(_) => tracing::warn!("sending a control reply to the cloud timed out"),
    }
}

fn reply(command_id: CommandId, outcome: CommandOutcome) -> Bytes {
    Bytes::from(encode(&CommandReply {
        command_id,
        outcome,
    }))
}

/// Malformed requests log one line per interval, with the count.
static MALFORMED_LOG: crate::telemetry::events::LogLimiter =
    crate::telemetry::events::LogLimiter::named(
        "malformed control request from the cloud",
        crate::telemetry::events::LIMITED_LOG_INTERVAL,
    );

/// Passes an encoded command to the local control worker and returns the
/// encoded reply for the cloud: the worker's own, unchanged, or one made
/// here when the command is malformed or the worker does not answer.
pub(crate) async fn forward(payload: Bytes, local: &Client) -> Bytes {
    let mut command = match decode::<Command>(&payload) {
        Ok(command) => command,
        Err(error) => {
            if let Some(held_back) = MALFORMED_LOG.allow() {
                tracing::warn!(%error, kind = error.kind_name(), held_back, "malformed control request from the cloud");
            }
            return reply(
                CommandId(String::new()),
                CommandOutcome::Rejected {
                    reason: format!("malformed command: {error}"),
                },
            );
        }
    };
    // Whatever it says, a command that came through the cloud is the
    // cloud's: it cannot pass itself off as typed on the box.
    let payload = if command.origin == CommandOrigin::Cloud {
        payload
    } else {
        command.origin = CommandOrigin::Cloud;
        Bytes::from(encode(&command))
    };
    let remaining_ms = command.expires_at_ms.saturating_sub(now_ms());
    let wait = u64::try_from(remaining_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map_or(EXPIRED_FORWARD, |ms| {
            Duration::from_millis(ms).min(MAX_FORWARD)
        });
    let request = Request::new().payload(payload).timeout(Some(wait));
    let answer = tokio::time::timeout(
        wait + Duration::from_millis(100),
        local.send_request(names::CONTROL_SUBJECT, request),
    )
    .await;
    let id = command.id;
    match answer {
        Ok(Ok(message)) => message.payload,
        Ok(Err(error)) if error.kind() == RequestErrorKind::NoResponders => {
            tracing::warn!(command = %id.0, "control request from the cloud: no control worker is running");
            reply(
                id,
                CommandOutcome::Failed {
                    error: "no control worker is running on the gateway".to_owned(),
                },
            )
        }
        Ok(Err(error)) if error.kind() == RequestErrorKind::TimedOut => {
            reply(id, CommandOutcome::TimedOut)
        }
        Err(_) => reply(id, CommandOutcome::TimedOut),
        Ok(Err(error)) => reply(
            id,
            CommandOutcome::Failed {
                error: format!("cannot reach the control worker: {error}"),
            },
        ),
    }
}
