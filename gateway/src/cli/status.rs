//! `packgate status`: the health of the gateway at a glance. Each worker
//! alive or missing (from the monitor's snapshots), each pack online or
//! stale with the age of its last sample (from the broker, or from the
//! monitor's events when the broker is unreachable), stream sizes and
//! consumer lags, the cloud link, recent alarms and recent commands.
//!
//! Every broker call has a short timeout; after the first failure the
//! broker is reported unreachable and what the databases know is printed.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use packgate_protocol::names::{self, STREAMS};
use packgate_protocol::{decode, DataQuality, PackId, Sample};

use crate::config::Config;
use crate::telemetry::now_ms;
use crate::workers::monitor::{MonitorStore, StoredSnapshot};

/// Every worker kind, in the order shown.
pub const WORKERS: [&str; 5] = ["collect", "data", "cloud", "control", "monitor"];

/// The control worker's audit database, under `data_dir`.
pub const CONTROL_DATABASE: &str = "control.db";

/// Longest one broker call of `status` may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(2);

/// Rows shown of alarms and of commands.
const RECENT: usize = 10;

/// Why `status` failed (only writing its output can fail; every source of
/// information that is missing is reported in the output instead).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An age in milliseconds, compact: `0.4 s`, `12 s`, `5 m 3 s`, `2 h 10 m`,
/// `3 d 4 h`.
pub fn format_age(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match s {
        0..=9 => format!("{:.1} s", ms as f64 / 1000.0),
        10..=59 => format!("{s} s"),
        60..=3599 => format!("{} m {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} m", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Bytes, compact: `512 B`, `1.5 KiB`, `12.3 MiB`, `2.0 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The counter shown for a worker: its most telling one if present,
/// else its first.
fn key_counter(snapshot: &StoredSnapshot) -> Option<(String, u64)> {
    let preferred: &[&str] = match snapshot.worker.as_str() {
        "collect" => &["samples_published"],
        "data" => &["samples_stored"],
        "cloud" => &["samples_sent", "batches_sent"],
        "control" => &["commands_received", "applied"],
        "monitor" => &["snapshots_stored"],
        _ => &[],
    };
    preferred
        .iter()
        .find_map(|name| snapshot.counters.iter().find(|(n, _)| n == name))
        .or_else(|| snapshot.counters.first())
        .cloned()
}

fn gauge(snapshot: &StoredSnapshot, name: &str) -> Option<f64> {
    snapshot
        .gauges
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
}

/// What the broker said, or that it is unreachable.
#[derive(Debug, Default)]
struct BrokerView {
    reachable: bool,
    reason: Option<String>,
}

/// Runs one broker call under [`BROKER_TIMEOUT`], marking the broker
/// unreachable on the first failure and skipping every later call.
async fn ask<T, E: std::fmt::Display>(
    view: &mut BrokerView,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    if !view.reachable {
        return None;
    }
    match tokio::time::timeout(BROKER_TIMEOUT, call).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            view.reachable = false;
            view.reason = Some(error.to_string());
            None
        }
        Err(_) => {
            view.reachable = false;
            view.reason = Some(format!("no answer within {BROKER_TIMEOUT:?}"));
            None
        }
    }
}

/// Fetches a stream's info; a stream the broker does not have (not
/// created yet) is `None` without marking the broker unreachable.
/// The packs with samples on the broker, from the stream's subjects (at
/// most a thousand).
async fn packs_on_broker(stream: &jetstream::stream::Stream) -> Vec<PackId> {
    let prefix = format!("{}.samples.", names::SUBJECT_ROOT);
    let listing = async {
        let mut subjects = stream.info_with_subjects(format!("{prefix}>")).await.ok()?;
        let mut ids = Vec::new();
        while let Some(Ok((subject, _messages))) = subjects.next().await {
            if let Some(id) = subject
                .strip_prefix(&prefix)
                .and_then(|s| PackId::new(s).ok())
            {
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

async fn get_stream(
    view: &mut BrokerView,
    js: Option<&jetstream::Context>,
    name: &str,
) -> Option<jetstream::stream::Stream> {
    let js = js?;
    if !view.reachable {
        return None;
    }
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
            view.reachable = false;
            view.reason = Some(error.to_string());
            None
        }
        Err(_) => {
            view.reachable = false;
            view.reason = Some(format!("no answer within {BROKER_TIMEOUT:?}"));
            None
        }
    }
}

/// Prints the gateway's status to `out`. `client` is a connection to the
/// local broker, `None` when there is none; without it (or when it does
/// not answer) the databases' view is printed.
pub async fn status(
    config: &Config,
    client: Option<async_nats::Client>,
    out: &mut dyn Write,
) -> Result<(), StatusError> {
    let now = now_ms();
    let interval_ms =
        i64::try_from(config.monitor.snapshot_interval().as_millis()).unwrap_or(i64::MAX / 4);
    let monitor_path = config.monitor.database_path(&config.data_dir);
    let monitor = MonitorStore::open_read_only(&monitor_path);
    let js = client.as_ref().map(|c| {
        jetstream::context::ContextBuilder::new()
            .timeout(BROKER_TIMEOUT)
            .build(c.clone())
    });
    let mut view = BrokerView {
        reachable: js.is_some(),
        reason: js.is_none().then(|| "no broker connection".to_owned()),
    };

    writeln!(
        out,
        "packgate status (data in {})",
        config.data_dir.display()
    )?;
    if let Err(error) = &monitor {
        writeln!(out, "  Monitor database: {error}")?;
    }

    // Workers.
    let snapshots = match &monitor {
        Ok(store) => store.latest_snapshots().unwrap_or_else(|error| {
            let _ = writeln!(out, "  cannot read snapshots: {error}");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    };
    writeln!(
        out,
        "\nWorkers (alive: a snapshot in the last {})",
        format_age(3 * interval_ms)
    )?;
    for worker in WORKERS {
        match snapshots.iter().find(|s| s.worker == worker) {
            Some(s) => {
                let age = now - s.timestamp_ms;
                let state = if age <= 3 * interval_ms {
                    "alive"
                } else {
                    "missing"
                };
                let counter = key_counter(s)
                    .map(|(name, value)| format!("  {name} {value}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  {worker:<8} {state:<8} last seen {} ago  {}  v{}  up {}  rss {}{counter}",
                    format_age(age),
                    s.instance,
                    s.version,
                    format_age(i64::try_from(s.uptime_s).unwrap_or(0).saturating_mul(1000)),
                    format_bytes(s.rss_bytes),
                )?;
            }
            None => writeln!(out, "  {worker:<8} missing  never seen")?,
        }
    }

    // Packs.
    writeln!(out, "\nPacks")?;
    let stale_after_ms = i64::try_from(config.collect.poll_interval_ms.saturating_mul(3))
        .unwrap_or(i64::MAX)
        .max(3_000);
    let samples_stream = get_stream(&mut view, js.as_ref(), names::SAMPLES_STREAM.name).await;
    // The configured packs, and any other the broker has samples of (packs
    // added on the command line, or by another collector).
    let mut packs: Vec<PackId> = config.packs.iter().map(|p| p.id.clone()).collect();
    if let (Some(stream), true) = (&samples_stream, view.reachable) {
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
        let id = pack.as_str();
        let last = match &samples_stream {
            Some(stream) if view.reachable => {
                let subject = names::sample_subject(pack);
                match tokio::time::timeout(
                    BROKER_TIMEOUT,
                    stream.get_last_raw_message_by_subject(&subject),
                )
                .await
                {
                    Ok(Ok(message)) => {
                        Some(decode::<Sample>(&message.payload).map_err(|e| e.to_string()))
                    }
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
            _ => None,
        };
        match last {
            Some(Ok(sample)) => {
                let age = now - sample.timestamp_ms;
                let state = if sample.quality == DataQuality::Stale || age > stale_after_ms {
                    "stale"
                } else {
                    "online"
                };
                writeln!(
                    out,
                    "  {id:<16} {state:<7} last sample {} ago (seq {})",
                    format_age(age),
                    sample.seq
                )?;
            }
            Some(Err(error)) => {
                writeln!(out, "  {id:<16} unknown last sample unreadable: {error}")?
            }
            None if view.reachable => writeln!(out, "  {id:<16} stale   no sample on the broker")?,
            None => {
                let presence = monitor
                    .as_ref()
                    .ok()
                    .and_then(|store| store.last_presence(id).ok().flatten());
                match presence {
                    Some(event) => {
                        let state = if event.kind == "pack_online" {
                            "online"
                        } else {
                            "stale"
                        };
                        writeln!(
                            out,
                            "  {id:<16} {state:<7} since {} ago (last event: {}; sample age unknown)",
                            format_age(now - event.timestamp_ms),
                            event.kind.replace('_', " "),
                        )?;
                    }
                    None => writeln!(out, "  {id:<16} unknown no sample or event known")?,
                }
            }
        }
    }

    // Streams and consumer lags.
    writeln!(out, "\nStreams")?;
    for spec in STREAMS {
        let Some(stream) = get_stream(&mut view, js.as_ref(), spec.name).await else {
            let why = if view.reachable {
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
        let listing =
            async { Ok::<_, String>(stream.consumers().take(64).collect::<Vec<_>>().await) };
        let consumers = ask(&mut view, listing).await.unwrap_or_default();
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

    // The cloud link.
    writeln!(out, "\nCloud link")?;
    match snapshots.iter().find(|s| s.worker == "cloud") {
        Some(s) => {
            let link = match gauge(s, "link_up") {
                Some(v) if v > 0.0 => "up",
                Some(_) => "DOWN",
                None => "unknown",
            };
            let backlog =
                gauge(s, "backlog").map_or_else(|| "unknown".to_owned(), |b| format!("{b:.0}"));
            let lag = gauge(s, "upload_lag_ms")
                .map(|ms| format!(", upload lag {}", format_age(ms as i64)))
                .unwrap_or_default();
            writeln!(
                out,
                "  {link}, backlog {backlog}{lag} (as of {} ago)",
                format_age(now - s.timestamp_ms)
            )?;
        }
        None => writeln!(out, "  unknown (no cloud worker snapshot)")?,
    }

    // Recent alarms.
    writeln!(out, "\nRecent alarms")?;
    let alarms = monitor
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
                    format_age(now - a.timestamp_ms),
                    a.pack_id,
                    a.kind.replace('_', " "),
                    a.detail
                )?;
            }
        }
        Some(Err(error)) => writeln!(out, "  cannot read: {error}")?,
        None => writeln!(out, "  unknown (no monitor database)")?,
    }

    // Recent commands.
    writeln!(out, "\nRecent commands")?;
    match recent_commands(&config.data_dir.join(CONTROL_DATABASE), now) {
        Ok(lines) if lines.is_empty() => writeln!(out, "  none")?,
        Ok(lines) => {
            for line in lines {
                writeln!(out, "  {line}")?;
            }
        }
        Err(reason) => writeln!(out, "  {reason}")?,
    }

    // The broker.
    writeln!(out)?;
    match (&client, view.reachable) {
        (Some(_), true) => writeln!(out, "Broker: reachable")?,
        _ => writeln!(
            out,
            "Broker: unreachable ({}); pack states come from the monitor's events",
            view.reason.as_deref().unwrap_or("no answer")
        )?,
    }
    out.flush()?;
    Ok(())
}

fn value_text(value: &rusqlite::types::Value) -> String {
    use rusqlite::types::Value;
    match value {
        Value::Null => "-".to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => format!("{r}"),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => format!("<{} bytes>", b.len()),
    }
}

/// The newest commands of the control worker's audit, one line each; an
/// explanation instead when the database is absent or unreadable.
fn recent_commands(path: &Path, now: i64) -> Result<Vec<String>, String> {
    use rusqlite::{types::Value, Connection, OpenFlags};
    if !path.exists() {
        return Err(format!("unknown ({} does not exist)", path.display()));
    }
    let read = || -> rusqlite::Result<Vec<String>> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(Duration::from_secs(2))?;
        let mut stmt = conn.prepare(
            "SELECT command_id, pack_id, setting, value, origin, received_at_ms, outcome,
                    read_back, detail
             FROM commands ORDER BY received_at_ms DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([RECENT as i64], |row| {
            let v = |i: usize| row.get::<_, Value>(i);
            let at = match v(5)? {
                Value::Integer(ms) => format!("{} ago", format_age(now - ms)),
                other => value_text(&other),
            };
            let read_back = match v(7)? {
                Value::Null => String::new(),
                other => format!(" read back {}", value_text(&other)),
            };
            let detail = match v(8)? {
                Value::Null => String::new(),
                Value::Text(t) if t.is_empty() => String::new(),
                other => format!(" ({})", value_text(&other)),
            };
            Ok(format!(
                "{at:>10}  {:<16} {} = {} from {}: {}{read_back}{detail}  [{}]",
                value_text(&v(1)?),
                value_text(&v(2)?),
                value_text(&v(3)?),
                value_text(&v(4)?),
                value_text(&v(6)?),
                value_text(&v(0)?),
            ))
        })?;
        rows.collect()
    };
    read().map_err(|error| format!("cannot read {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_are_compact() {
        assert_eq!(format_age(400), "0.4 s");
        assert_eq!(format_age(12_300), "12 s");
        assert_eq!(format_age(303_000), "5 m 3 s");
        assert_eq!(format_age(7_800_000), "2 h 10 m");
        assert_eq!(format_age(-5), "0.0 s");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    }
}
