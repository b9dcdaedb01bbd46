//! The sections of `packgate status`, one function each, in the order
//! printed.

use std::io::{self, Write};

use packgate_protocol::names::{self, STREAMS};
use packgate_protocol::{PackId, Sample};

use super::broker::{last_sample, packs_on_broker, ConsumerView};
use super::{Sources, RECENT};
use crate::health::{self, WorkerState};
use crate::store::SampleStore;
use crate::text::{format_age, format_bytes};
use crate::workers::control::{AuditRecord, AuditStore};
use crate::workers::monitor::StoredSnapshot;
use crate::workers::WorkerKind;

fn snapshot_of<'s>(sources: &'s Sources<'_>, kind: WorkerKind) -> Option<&'s StoredSnapshot> {
    sources.snapshots.iter().find(|s| s.worker == kind.name())
}

/// Why a worker that sends snapshots is still not doing its work: one of
/// its consumers is missing on the broker, or (the data worker) samples
/// wait in its consumer while nothing was committed for `stall_ms`.
async fn stall_reasons(
    sources: &mut Sources<'_>,
    kind: WorkerKind,
    s: &StoredSnapshot,
    stall_ms: i64,
) -> Vec<String> {
    let mut reasons = Vec::new();
    for spec in kind.consumers() {
        match sources.broker.consumer(spec).await {
            ConsumerView::Missing => reasons.push(health::missing_consumer(spec)),
            ConsumerView::Lag(lag) if kind == WorkerKind::Data => {
                reasons.extend(health::data_stall(
                    &s.gauges,
                    s.timestamp_ms,
                    s.uptime_s,
                    lag,
                    sources.now,
                    stall_ms,
                ))
            }
            ConsumerView::Lag(_) | ConsumerView::Unknown => {}
        }
    }
    reasons
}

/// Each worker alive (a snapshot in the last three intervals), stalled
/// (alive, but a consumer of its is missing, or it stores nothing while
/// samples wait), missing, or disabled (the configuration does not run
/// it, and it sends no snapshots), with its instance, version, uptime,
/// memory and key counter.
pub(super) async fn workers(sources: &mut Sources<'_>, out: &mut dyn Write) -> io::Result<()> {
    let window_ms = health::alive_window_ms(sources.config);
    writeln!(
        out,
        "\nWorkers (alive: a snapshot in the last {}; stalled: alive but not working)",
        format_age(window_ms)
    )?;
    for kind in WorkerKind::ALL {
        let worker = kind.name();
        let snapshot = snapshot_of(sources, kind).cloned();
        let last_ms = snapshot.as_ref().map(|s| s.timestamp_ms);
        let reasons = match &snapshot {
            Some(s) if sources.now - s.timestamp_ms <= window_ms => {
                stall_reasons(sources, kind, s, window_ms).await
            }
            _ => Vec::new(),
        };
        let state = health::worker_state(kind, sources.config, last_ms, sources.now, reasons);
        let (s, why) = match (&state, snapshot) {
            (WorkerState::Disabled(why), _) => {
                writeln!(out, "  {worker:<8} disabled ({why})")?;
                continue;
            }
            (_, None) => {
                writeln!(out, "  {worker:<8} missing  never seen")?;
                continue;
            }
            (WorkerState::Stalled(reasons), Some(s)) => {
                (s, format!("  NOT healthy: {}", reasons.join("; ")))
            }
            (_, Some(s)) => (s, String::new()),
        };
        let counter = kind
            .key_counter(&s.counters)
            .map(|(name, value)| format!("  {name} {value}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {worker:<8} {:<8} last seen {} ago  {}  v{}  up {}  rss {}{counter}{why}",
            state.name(),
            format_age(sources.now - s.timestamp_ms),
            s.instance,
            s.version,
            format_age(i64::try_from(s.uptime_s).unwrap_or(0).saturating_mul(1000)),
            format_bytes(s.rss_bytes),
        )?;
    }
    Ok(())
}

/// Each pack, configured or seen on the broker, online or stale.
pub(super) async fn packs(sources: &mut Sources<'_>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "\nPacks")?;
    let samples_stream = sources.broker.stream(names::SAMPLES_STREAM.name).await;
    // The configured packs, and any other the broker has samples of (packs
    // added on the command line, or by another collector).
    let mut packs: Vec<PackId> = sources.config.packs.iter().map(|p| p.id.clone()).collect();
    if let (Some(stream), true) = (&samples_stream, sources.broker.reachable()) {
        for id in packs_on_broker(stream).await {
            if !packs.contains(&id) {
                packs.push(id);
            }
        }
    }
    if packs.is_empty() {
        writeln!(out, "  (no packs configured or seen)")?;
    }
    for pack in &packs {
        let last = match &samples_stream {
            Some(stream) if sources.broker.reachable() => last_sample(stream, pack).await,
            _ => None,
        };
        match last {
            Some(Ok(sample)) => pack_from_sample(sources, pack, &sample, out)?,
            Some(Err(error)) => writeln!(
                out,
                "  {:<16} unknown last sample unreadable: {error}",
                pack.as_str()
            )?,
            None if sources.broker.reachable() => writeln!(
                out,
                "  {:<16} stale   no sample on the broker",
                pack.as_str()
            )?,
            None => pack_from_events(sources, pack, out)?,
        }
    }
    Ok(())
}

/// A pack's line from its last sample on the broker.
fn pack_from_sample(
    sources: &Sources<'_>,
    pack: &PackId,
    sample: &Sample,
    out: &mut dyn Write,
) -> io::Result<()> {
    let age = sources.now - sample.timestamp_ms;
    let state =
        health::pack_state(sample.quality, age, sources.config.collect.poll_interval_ms).name();
    writeln!(
        out,
        "  {:<16} {state:<7} last sample {} ago (seq {})",
        pack.as_str(),
        format_age(age),
        sample.seq
    )
}

/// A pack's line from the monitor's last presence event, when the broker
/// cannot be asked.
fn pack_from_events(sources: &Sources<'_>, pack: &PackId, out: &mut dyn Write) -> io::Result<()> {
    let id = pack.as_str();
    let presence = sources
        .monitor
        .as_ref()
        .ok()
        .and_then(|store| store.last_presence(id).ok().flatten());
    let Some(event) = presence else {
        return writeln!(out, "  {id:<16} unknown no sample or event known");
    };
    let state = if event.kind == "pack_online" {
        "online"
    } else {
        "stale"
    };
    writeln!(
        out,
        "  {id:<16} {state:<7} since {} ago (last event: {}; sample age unknown)",
        format_age(sources.now - event.timestamp_ms),
        event.kind.replace('_', " "),
    )
}

/// Each stream's size and its consumers' lags.
pub(super) async fn streams(sources: &mut Sources<'_>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "\nStreams")?;
    for spec in STREAMS {
        let Some(stream) = sources.broker.stream(spec.name).await else {
            let why = if sources.broker.reachable() {
                "absent (not created yet)"
            } else {
                "unknown (broker unreachable)"
            };
            writeln!(out, "  {:<18} {why}", spec.name)?;
            continue;
        };
        let state = &stream.cached_info().state;
        writeln!(
            out,
            "  {:<18} {} messages, {}",
            spec.name,
            state.messages,
            format_bytes(state.bytes)
        )?;
        let listing = async {
            use futures_util::StreamExt as _;
            Ok::<_, String>(stream.consumers().take(64).collect::<Vec<_>>().await)
        };
        let consumers = sources.broker.ask(listing).await.unwrap_or_default();
        for info in consumers.into_iter().flatten() {
            writeln!(
                out,
                "    {:<26} lag {} (pending {}, unacked {})",
                info.name,
                info.num_pending + info.num_ack_pending as u64,
                info.num_pending,
                info.num_ack_pending
            )?;
        }
    }
    Ok(())
}

/// How many samples could never be stored (kept in the sample database's
/// `dead_letters` table).
pub(super) fn dead_letters(sources: &Sources<'_>, out: &mut dyn Write) -> io::Result<()> {
    let path = sources.config.database_path();
    if matches!(crate::store::unreadable(&path), Some(Ok(()))) {
        // No sample store yet: nothing to say.
        return Ok(());
    }
    let count = SampleStore::open_read_only(&path).and_then(|store| store.dead_letter_count());
    match count {
        Err(error @ crate::store::StoreError::Unreadable { .. }) => {
            writeln!(out, "  dead letters: unknown, {error}")
        }
        Ok(0) => writeln!(out, "  dead letters: none"),
        Ok(n) => writeln!(
            out,
            "  dead letters: {n} samples could never be stored (table dead_letters of {})",
            path.display()
        ),
        Err(error) => writeln!(
            out,
            "  dead letters: cannot read {}: {error}",
            path.display()
        ),
    }
}

/// The cloud link, from the cloud worker's latest snapshot.
pub(super) fn cloud_link(sources: &Sources<'_>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "\nCloud link")?;
    let Some(s) = snapshot_of(sources, WorkerKind::Cloud) else {
        return writeln!(out, "  unknown (no cloud worker snapshot)");
    };
    writeln!(out, "  {}", cloud_link_line(s, sources.now))
}

/// The cloud link's line: up or DOWN (with why, when the worker said),
/// the backlog, the upload lag, and the snapshot's age.
fn cloud_link_line(s: &StoredSnapshot, now: i64) -> String {
    let cloud = health::cloud_link(&s.gauges, &s.notes);
    let link = match (cloud.up, &cloud.why) {
        (Some(true), _) => "up".to_owned(),
        (Some(false), Some(why)) => format!("DOWN ({why})"),
        (Some(false), None) => "DOWN".to_owned(),
        (None, _) => "unknown".to_owned(),
    };
    let backlog = cloud
        .backlog
        .map_or_else(|| "unknown".to_owned(), |b| format!("{b:.0}"));
    let lag = cloud
        .upload_lag_ms
        .map(|ms| format!(", upload lag {}", format_age(ms as i64)))
        .unwrap_or_default();
    format!(
        "{link}, backlog {backlog}{lag} (as of {} ago)",
        format_age(now - s.timestamp_ms)
    )
}

/// The newest alarms raised and cleared, from the monitor's events.
pub(super) fn alarms(sources: &Sources<'_>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "\nRecent alarms")?;
    let alarms = sources
        .monitor
        .as_ref()
        .ok()
        .map(|store| store.recent_events(&["alarm_raised", "alarm_cleared"], RECENT));
    match alarms {
        Some(Ok(alarms)) if alarms.is_empty() => writeln!(out, "  none")?,
        Some(Ok(alarms)) => {
            for a in alarms {
                writeln!(
                    out,
                    "  {:>10} ago  {:<16} {:<14} {}",
                    format_age(sources.now - a.timestamp_ms),
                    a.pack_id,
                    a.kind.replace('_', " "),
                    a.detail
                )?;
            }
        }
        Some(Err(error)) => writeln!(out, "  cannot read: {error}")?,
        None => writeln!(out, "  unknown (no monitor database)")?,
    }
    Ok(())
}

/// The newest commands, from the control worker's audit (the file
/// `control.database` names).
pub(super) fn commands(sources: &Sources<'_>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "\nRecent commands")?;
    let path = sources
        .config
        .data_dir
        .join(&sources.config.control.database);
    let records =
        AuditStore::open_read_only(&path).and_then(|store| store.recent_summaries(RECENT));
    match records {
        Ok(records) if records.is_empty() => writeln!(out, "  none"),
        Ok(records) => records
            .iter()
            .try_for_each(|r| writeln!(out, "  {}", command_line(r, sources.now))),
        Err(crate::workers::control::AuditError::NotFound(_)) => {
            writeln!(out, "  unknown ({} does not exist)", path.display())
        }
        Err(error @ crate::workers::control::AuditError::Unreadable { .. }) => {
            writeln!(out, "  unknown, {error}")
        }
        Err(error) => writeln!(out, "  cannot read {}: {error}", path.display()),
    }
}

/// One audited command: when, which pack and setting, from where, and
/// what became of it.
fn command_line(r: &AuditRecord, now: i64) -> String {
    let at = format!("{} ago", format_age(now - r.received_at_ms));
    let read_back = r
        .read_back
        .map(|v| format!(" read back {v}"))
        .unwrap_or_default();
    let detail = match r.detail.as_deref() {
        None | Some("") => String::new(),
        Some(detail) => format!(" ({detail})"),
    };
    format!(
        "{at:>10}  {:<16} {} = {} from {}: {}{read_back}{detail}  [{}]",
        r.pack_id,
        r.setting,
        r.value,
        r.origin,
        r.outcome.as_deref().unwrap_or("-"),
        r.command_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud_snapshot(link_up: f64, notes: Vec<(String, String)>) -> StoredSnapshot {
        StoredSnapshot {
            worker: "cloud".into(),
            instance: "box/1".into(),
            timestamp_ms: 10_000,
            uptime_s: 60,
            version: "0.1.0".into(),
            rss_bytes: 1,
            counters: vec![],
            gauges: vec![
                ("link_up".into(), link_up),
                ("backlog".into(), 120.0),
                ("upload_lag_ms".into(), 95_000.0),
            ],
            notes,
        }
    }

    #[test]
    fn a_link_down_says_why_next_to_down() {
        let why = vec![(
            health::LINK_ERROR_NOTE.to_owned(),
            "certificate unknown: not signed by a trusted CA".to_owned(),
        )];
        let line = cloud_link_line(&cloud_snapshot(0.0, why), 12_000);
        assert!(
            line.starts_with(
                "DOWN (certificate unknown: not signed by a trusted CA), backlog 120, upload lag "
            ),
            "{line}"
        );
        // An older worker's snapshot has no notes: DOWN alone.
        let line = cloud_link_line(&cloud_snapshot(0.0, vec![]), 12_000);
        assert!(line.starts_with("DOWN, backlog 120"), "{line}");
        let line = cloud_link_line(&cloud_snapshot(1.0, vec![]), 12_000);
        assert!(line.starts_with("up, backlog 120"), "{line}");
    }
}
