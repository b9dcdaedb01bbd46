//! Feeding the outputs from the broker: pack events from
//! `packgate.events.>`, and resets of a latched alarm relay from
//! [`RESET_SUBJECT`].

use embedded_hal::digital::OutputPin;
use futures_util::StreamExt;
use packgate_protocol::{decode, names, Event};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::OutputDriver;

/// Publish anything here to reset a latched alarm relay
/// (`packgate reset-alarm`).
pub const RESET_SUBJECT: &str = names::OUTPUTS_RESET_SUBJECT;

/// Drives `driver` from the pack events on the broker until `cancel`.
/// Events come live (core NATS): outputs show the present, not history.
pub async fn run_outputs<R, L>(
    driver: OutputDriver<R, L>,
    client: async_nats::Client,
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
                    let _ = reset_tx.try_send(());
                    if let Some(reply) = message.reply {
                        let _ = client.publish(reply, "ok".into()).await;
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
