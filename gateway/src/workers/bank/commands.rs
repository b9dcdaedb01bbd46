//! The control worker's commands to a bank's site limits, as the bank
//! worker takes them: each checked again (the subject's bank is the
//! command's, the setting is a bank's, the value within the configuration
//! and, for the charge voltage, within the chemistry's cell window times
//! the packs' cells, the command not expired), kept in the file of
//! overrides before anything changes, then applied and a state computed at
//! once. The reply carries the limit now in effect as its read-back.

use std::time::Duration;

use bytes::Bytes;
use packgate_protocol::{
    decode, encode, names, Command, CommandId, CommandOutcome, CommandReply, ABSORPTION_VOLTAGE_V,
};
use tokio::time::Instant;

use super::overrides::{self, configured_value, Override};
use super::{Bank, BankWorker, Loop};
use crate::telemetry::now_ms;
use crate::workers::control::validate::{validate, PackTable};

/// Longest the file of overrides may take to be written.
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a reply may take to be sent.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

impl BankWorker {
    /// Takes one request on the bank-limits subjects and answers it.
    pub(super) async fn command(&mut self, state: &mut Loop, message: async_nats::Message) {
        let reply = self.take(state, &message.subject, &message.payload).await;
        let counts = &self.metrics.counts;
        match &reply.outcome {
            CommandOutcome::Applied { .. } => counts.limit_commands_applied.inc(),
            CommandOutcome::Failed { .. } => counts.limit_commands_failed.inc(),
            CommandOutcome::Rejected { .. } | CommandOutcome::TimedOut => {
                counts.limit_commands_rejected.inc();
            }
        }
        let Some(to) = message.reply else {
            return;
        };
        let payload = Bytes::from(encode(&reply));
        let sent = tokio::time::timeout(REPLY_TIMEOUT, state.client.publish(to, payload)).await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::warn!(command = %reply.command_id.0, "cannot answer a command to a bank's limits");
        }
    }

    /// Checks, keeps and applies one command; its reply.
    async fn take(&mut self, state: &mut Loop, subject: &str, payload: &[u8]) -> CommandReply {
        let command = match decode::<Command>(payload) {
            Ok(command) => command,
            Err(error) => {
                return answer(
                    &CommandId(String::new()),
                    rejected(format!("malformed command: {error}")),
                )
            }
        };
        let id = command.id.clone();
        let Some(index) = names::bank_of_limits_subject(subject)
            .and_then(|bank| self.banks.iter().position(|b| b.id == bank))
        else {
            return answer(&id, rejected(format!("no such bank here: {subject}")));
        };
        let bank = &self.banks[index];
        if bank.id.as_str() != command.pack_id.as_str() {
            return answer(
                &id,
                rejected(format!(
                    "the request was sent for bank {} but the command names {}",
                    bank.id, command.pack_id
                )),
            );
        }
        if let Err(rejection) = validate(&command, now_ms(), &PackTable::new(), &self.policy) {
            return answer(&id, rejected(rejection.to_string()));
        }
        let setting = command.setting.0.as_str();
        if setting == ABSORPTION_VOLTAGE_V {
            if let Some(reason) = outside_cell_window(bank, state, command.value) {
                return answer(&id, rejected(reason));
            }
        }
        let Some(lowered) = bank.lowered.with(setting, command.value, &bank.configured) else {
            return answer(&id, rejected(format!("{setting} is not a bank's setting")));
        };
        let bank_id = bank.id.clone();
        if let Err(error) = self.keep(index, lowered).await {
            tracing::error!(bank = %bank_id, %error, "cannot keep a lowered site limit: not applied");
            let error =
                format!("the lowered limit could not be kept, so it was not applied: {error}");
            return answer(&id, CommandOutcome::Failed { error });
        }
        let bank = &mut self.banks[index];
        bank.lowered = lowered;
        let effective = lowered.apply(&bank.configured);
        bank.controller.set_rules(effective);
        let read_back = configured_value(&effective, setting).unwrap_or(command.value);
        tracing::info!(
            bank = %bank.id, command = %id.0, setting, value = command.value, in_effect = read_back,
            "bank site limit set"
        );
        // The new limit reaches the stream and the inverter now, not at
        // the next second.
        state.tick(bank, Instant::now());
        answer(&id, CommandOutcome::Applied { read_back })
    }

    /// Writes the file of overrides with bank `index` lowered as
    /// `lowered`; the worker's copy changes only once it is written.
    async fn keep(&mut self, index: usize, lowered: Override) -> Result<(), String> {
        let mut all = self.overrides.clone();
        all.insert(self.banks[index].id.clone(), lowered);
        let path = self.overrides_path.clone();
        let written = {
            let all = all.clone();
            tokio::task::spawn_blocking(move || overrides::save(&path, &all))
        };
        match tokio::time::timeout(SAVE_TIMEOUT, written).await {
            Ok(Ok(Ok(()))) => {
                self.overrides = all;
                Ok(())
            }
            Ok(Ok(Err(error))) => Err(error.to_string()),
            Ok(Err(join)) => Err(join.to_string()),
            Err(_) => Err(format!("no answer from the disk within {SAVE_TIMEOUT:?}")),
        }
    }
}

/// Why a charge voltage of `value` is outside the chemistry's window for
/// the bank's packs (their fewest cells times the lowest and highest cell
/// voltage); `None` when within, or when no pack's cells are known yet.
fn outside_cell_window(bank: &Bank, state: &Loop, value: f64) -> Option<String> {
    let cells = bank
        .packs
        .iter()
        .filter_map(|(id, _)| state.latest.get(id))
        .map(|held| held.sample.reading.cell_voltages_v.0.len())
        .filter(|cells| *cells > 0)
        .min()?;
    let chemistry = &bank.configured.chemistry;
    let (low, high) = (
        cells as f64 * chemistry.cell_min_v,
        cells as f64 * chemistry.cell_max_v,
    );
    (!(low..=high).contains(&value)).then(|| {
        format!(
            "{ABSORPTION_VOLTAGE_V} = {value} is outside the chemistry's window for {cells} cells, \
             {low:.2} to {high:.2} V"
        )
    })
}

fn rejected(reason: String) -> CommandOutcome {
    CommandOutcome::Rejected { reason }
}

fn answer(id: &CommandId, outcome: CommandOutcome) -> CommandReply {
    CommandReply {
        command_id: id.clone(),
        outcome,
    }
}
