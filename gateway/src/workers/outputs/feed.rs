//! Feeding the outputs from the broker: pack events from
//! `packgate.events.>`, and resets of a latched alarm relay from
//! [`RESET_SUBJECT`], each audited before it takes effect.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use embedded_hal::digital::OutputPin;
use futures_util::StreamExt;
use packgate_protocol::{decode, names, Event};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::OutputDriver;

/// Publish anything here to reset a latched alarm relay
/// (`packgate reset-alarm`).
pub const RESET_SUBJECT: &str = names::OUTPUTS_RESET_SUBJECT;

/// Longest requester name kept in the audit, bytes.
const MAX_ORIGIN_BYTES: usize = 64;

/// Writes the audit row of one relay reset into the control audit at
/// `audit`; the reset takes effect only once this succeeded.
async fn audit_reset(audit: &Path, payload: &[u8]) -> Result<(), String> {
    static RESETS: AtomicU64 = AtomicU64::new(0);
    let mut origin: String = String::from_utf8_lossy(payload)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    while origin.len() > MAX_ORIGIN_BYTES {
        origin.pop();
    }
    if origin.is_empty() {
        origin.push_str("unknown");
    }
    let at_ms = crate::telemetry::now_ms();
    let key = format!(
        "relay-reset-{at_ms}-{}",
        RESETS.fetch_add(1, Ordering::Relaxed)
    );
    let path = audit.to_owned();
    tokio::task::spawn_blocking(move || {
        crate::workers::control::AuditStore::open(&path)
            .and_then(|store| store.record_relay_reset(&key, &origin, at_ms))
            .map_err(|error| error.to_string())
    })
    .await
    .map_err(|error| error.to_string())?
}

/// Drives `driver` from the pack events on the broker until `cancel`.
/// Events come live (core NATS): outputs show the present, not history.
/// Every reset is first written to the control audit database `audit`; a
/// reset that cannot be audited is refused.
pub async fn run_outputs<R, L>(
    driver: OutputDriver<R, L>,
    client: async_nats::Client,
    audit: PathBuf,
    cancel: CancellationToken,
) -> Result<(), async_nats::SubscribeError>
where
    R: OutputPin + Send + 'static,
    L: OutputPin + Send + 'static,
{
    let mut events = client.subscribe(names::ALL_EVENTS_SUBJECT).await?;
    let mut resets = client.subscribe(RESET_SUBJECT).await?;
    let (event_tx, event_rx) = mpsc::channel(256);
    let (reset_tx, reset_rx) = mpsc::channel(4);
    let driving = tokio::spawn(driver.run(event_rx, reset_rx, cancel.clone()));
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            message = events.next() => match message {
                Some(message) => match decode::<Event>(&message.payload) {
                    Ok(event) => {
                        if event_tx.send(event).await.is_err() {
                            break;
                        }
                    }
                    Err(error) => tracing::debug!(%error, "outputs: undecodable event"),
                },
                None => break,
            },
            message = resets.next() => match message {
                Some(message) => {
                    let answer = match audit_reset(&audit, &message.payload).await {
                        Ok(()) => {
                            let _ = reset_tx.try_send(());
                            tracing::info!("alarm relay reset (audited)");
                            "ok".to_owned()
                        }
                        Err(error) => {
                            tracing::error!(%error, "alarm relay reset refused: it cannot be audited");
                            format!("refused: the reset cannot be audited: {error}")
                        }
                    };
                    if let Some(reply) = message.reply {
                        let _ = client.publish(reply, answer.into()).await;
                    }
                }
                None => break,
            },
        }
    }
    drop(event_tx);
    let _ = driving.await;
    Ok(())
}
