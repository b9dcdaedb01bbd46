//! The banks of `packgate status`: each configured bank's latest state,
//! from the broker's bank states stream, or from the sample store when
//! the broker does not answer.

use std::io::{self, Write};

use packgate_protocol::names;

use super::broker::last_bank_state;
use super::Sources;
use crate::cli::banks::bank_block;
use crate::store::SampleStore;

/// Writes `lines` indented under the section.
fn block(out: &mut dyn Write, lines: &[String]) -> io::Result<()> {
    for line in lines {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// Each configured bank: online/total, SoC, V, A, CVL/CCL/DCL with the
/// stage and what limits them, who is out and why; nothing when no bank is
/// configured.
pub(super) async fn banks(sources: &mut Sources<'_>, out: &mut dyn Write) -> io::Result<()> {
    if sources.config.banks.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nBanks")?;
    let stream = sources.broker.stream(names::BANKS_STREAM.name).await;
    let mut store: Option<Result<SampleStore, String>> = None;
    for bank in &sources.config.banks {
        let name = bank.name.as_str();
        let last = match &stream {
            Some(stream) if sources.broker.reachable() => last_bank_state(stream, &bank.name).await,
            _ => None,
        };
        match last {
            Some(Ok(state)) => block(out, &bank_block(&state, sources.now - state.timestamp_ms))?,
            Some(Err(error)) => {
                writeln!(out, "  {name:<16} unknown: last state unreadable: {error}")?
            }
            None if sources.broker.reachable() => writeln!(
                out,
                "  {name:<16} no state on the broker (is the bank worker running?)"
            )?,
            None => {
                let store = store.get_or_insert_with(|| {
                    SampleStore::open_read_only(&sources.config.database_path())
                        .map_err(|e| e.to_string())
                });
                let stored = match store {
                    Ok(store) => store
                        .latest_bank_states(&bank.name, 1)
                        .map_err(|e| e.to_string()),
                    Err(error) => Err(error.clone()),
                };
                match stored.map(|mut rows| rows.pop()) {
                    Ok(Some(row)) => {
                        let mut lines =
                            bank_block(&row.state, sources.now - row.state.timestamp_ms);
                        lines.push(format!(
                            "{:16} (the last stored state: the broker does not answer)",
                            ""
                        ));
                        block(out, &lines)?;
                    }
                    Ok(None) => writeln!(
                        out,
                        "  {name:<16} unknown: the broker does not answer, no state stored"
                    )?,
                    Err(error) => writeln!(
                        out,
                        "  {name:<16} unknown: the broker does not answer; {error}"
                    )?,
                }
            }
        }
    }
    Ok(())
}
