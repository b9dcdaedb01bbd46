//! Dispatch of a validated command to the bus owner of its pack, under its
//! deadline, and the answer to a repeated id.

use std::time::Duration;

use async_nats::RequestErrorKind;
use packgate_drivers::ValidatedSetting;
use packgate_protocol::{decode, encode, names, Command, CommandOutcome, CommandReply};
use tokio::time::Instant;

use super::audit::AuditRecord;
use super::handler::{interrupted, ms, Handler, GRACE};
use crate::telemetry::now_ms;

/// How often a repeat of a command still in flight looks for its result.
const REPEAT_POLL: Duration = Duration::from_millis(50);

impl Handler {
    /// Sends the validated command to the bus owner of its pack and waits
    /// for the outcome, within the deadline.
    pub(super) async fn dispatch(
        &self,
        command: &Command,
        setting: ValidatedSetting,
    ) -> CommandOutcome {
        let now = now_ms();
        let left = command.expires_at_ms.saturating_sub(now);
        let deadline = self
            .deadline
            .min(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
        if deadline.is_zero() {
            return CommandOutcome::Rejected {
                reason: "command expired before it could be dispatched".to_owned(),
            };
        }
        // The bus must not start the write after our deadline: by then the
        // requester has been told it timed out.
        let dispatched = Command {
            setting: setting.name,
            value: setting.value,
            expires_at_ms: command.expires_at_ms.min(now.saturating_add(ms(deadline))),
            ..command.clone()
        };
        // A bank's limits are the bank worker's; a pack's settings its
        // bus owner's.
        let (subject, owner) = if let Some(bank) = self.policy.banks.get(&command.pack_id) {
            (
                names::bank_limits_subject(&bank.bank),
                format!("bank {}'s worker", bank.bank),
            )
        } else {
            (
                names::bus_write_subject(&command.pack_id),
                format!("pack {}'s bus", command.pack_id),
            )
        };
        let request = async_nats::Request::new()
            .payload(encode(&dispatched).into())
            .timeout(Some(deadline));
        let started = Instant::now();
        let sent = tokio::time::timeout(deadline, self.client.send_request(subject, request)).await;
        self.metrics
            .dispatch_latency
            .record_us(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        let outcome = match sent {
            Err(_) => CommandOutcome::TimedOut,
            Ok(Err(error)) => match error.kind() {
                RequestErrorKind::TimedOut => CommandOutcome::TimedOut,
                RequestErrorKind::NoResponders => CommandOutcome::Failed {
                    error: format!("{owner} is not running"),
                },
                _ => CommandOutcome::Failed {
                    error: format!("cannot reach {owner}: {error}"),
                },
            },
            Ok(Ok(message)) => match decode::<CommandReply>(&message.payload) {
                Ok(answer) if answer.command_id == command.id => answer.outcome,
                Ok(answer) => CommandOutcome::Failed {
                    error: format!(
                        "the bus answered for another command ({:?})",
                        answer.command_id.0
                    ),
                },
                Err(error) => CommandOutcome::Failed {
                    error: format!("malformed reply from {owner}: {error}"),
                },
            },
        };
        match &outcome {
            CommandOutcome::Applied { read_back } => {
                tracing::info!(command = %command.id.0, pack = %command.pack_id, setting = %command.setting.0, value = command.value, read_back, "command applied");
            }
            other => {
                tracing::warn!(command = %command.id.0, pack = %command.pack_id, outcome = ?other, "command not applied");
            }
        }
        outcome
    }

    /// The reply to a repeated id carrying the same command: the stored
    /// one, once the first command has completed (here or in another
    /// instance); a first command that never completes is settled as
    /// interrupted.
    pub(super) async fn repeat(&self, command: &Command, record: AuditRecord) -> CommandReply {
        if let Some(stored) = record.reply {
            return stored;
        }
        let give_up_at = record
            .received_at_ms
            .saturating_add(ms(self.deadline + GRACE));
        while now_ms() < give_up_at {
            tokio::time::sleep(REPEAT_POLL).await;
            let id = command.id.clone();
            if let Ok(Some(stored)) = self.audit(move |store| store.stored_reply(&id)).await {
                return stored;
            }
        }
        let lost = interrupted(&command.id);
        let settle = lost.clone();
        let id = command.id.clone();
        let stored = self
            .audit(move |store| {
                store.complete_if_pending(&settle, now_ms())?;
                store.stored_reply(&id)
            })
            .await;
        match stored {
            Ok(Some(stored)) => stored,
            Ok(None) | Err(_) => lost,
        }
    }
}
