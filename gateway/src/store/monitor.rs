//! The monitor's SQLite database, apart from the samples: worker metrics
//! snapshots and pack events, each unique on its natural key so a message
//! redelivered by the broker is stored once. Synchronous: the worker calls
//! it from `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use packgate_protocol::{Event, EventKind, MetricsSnapshot};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use crate::config::Durability;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema version this build writes. Version 1 is read too: it
/// lacks only the snapshots' notes.
const SCHEMA_VERSION: i64 = 2;

const V1: &str = "
CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY,
    worker TEXT NOT NULL,
    instance TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    uptime_s INTEGER NOT NULL,
    version TEXT NOT NULL,
    rss_bytes INTEGER NOT NULL,
    cpu_s REAL NOT NULL,
    counters_json TEXT NOT NULL,
    gauges_json TEXT NOT NULL,
    latencies_json TEXT NOT NULL,
    UNIQUE (worker, instance, timestamp_ms)
);
CREATE INDEX snapshots_worker_time ON snapshots (worker, timestamp_ms);
CREATE INDEX snapshots_time ON snapshots (timestamp_ms);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    pack_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    UNIQUE (pack_id, boot_id, seq)
);
CREATE INDEX events_pack_time ON events (pack_id, timestamp_ms);
CREATE INDEX events_time ON events (timestamp_ms);
";

/// Version 2: the snapshots' notes (short texts by name, such as why the
/// cloud link is down), a JSON object.
const V2: &str = "ALTER TABLE snapshots ADD COLUMN notes_json TEXT NOT NULL DEFAULT '{}';";

/// Why a monitor database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorStoreError {
    /// A read-only open of a file that does not exist.
    #[error("monitor database {0} does not exist (has the monitor worker run?)")]
    NotFound(PathBuf),
    /// A read-only open of a file that exists, or may, but cannot be read
    /// (permission denied, say).
    #[error("cannot read the monitor database {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's schema is not one this build reads.
    #[error(
        "monitor database {path} has schema version {found}; this build reads 1 to {SCHEMA_VERSION}"
    )]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// SQLite failed.
    #[error("monitor database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl MonitorStoreError {
    /// Whether the failure belongs to one row (a constraint such as a
    /// missing value, a value too big), so storing the other rows of its
    /// batch one by one succeeds; never a failure of the file or the disk.
    pub fn is_row_fault(&self) -> bool {
        match self {
            MonitorStoreError::Sqlite(source) => matches!(
                source.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::ConstraintViolation
                        | rusqlite::ErrorCode::TooBig
                        | rusqlite::ErrorCode::TypeMismatch
                )
            ),
            _ => false,
        }
    }
}

/// What one committed batch held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// New snapshot rows.
    pub snapshots: usize,
    /// New event rows.
    pub events: usize,
    /// Rows already stored (redeliveries).
    pub duplicates: usize,
}

/// A stored snapshot, as `packgate status` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSnapshot {
    /// Worker kind.
    pub worker: String,
    /// Instance (host/pid).
    pub instance: String,
    /// When it was taken, ms since the epoch.
    pub timestamp_ms: i64,
    /// Worker uptime, seconds.
    pub uptime_s: u64,
    /// packgate version.
    pub version: String,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Counters by name.
    pub counters: Vec<(String, u64)>,
    /// Gauges by name.
    pub gauges: Vec<(String, f64)>,
    /// Notes by name (none from a version 1 database).
    pub notes: Vec<(String, String)>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The pack.
    pub pack_id: String,
    /// When it happened, ms since the epoch.
    pub timestamp_ms: i64,
    /// [`EventKind::name`].
    pub kind: String,
    /// Alarm names or the offline reason.
    pub detail: String,
}

/// The monitor database; owns one connection.
#[derive(Debug)]
pub struct MonitorStore {
    conn: Connection,
    /// The file's schema version.
    version: i64,
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn json_object<V: serde::Serialize>(pairs: &[(String, V)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn json_pairs<V: serde::de::DeserializeOwned>(text: &str) -> Vec<(String, V)> {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
        .map(|map| {
            map.into_iter()
                .filter_map(|(k, v)| serde_json::from_value(v).ok().map(|v| (k, v)))
                .collect()
        })
        .unwrap_or_default()
}

/// The kind name and the operator's detail of an event.
pub fn event_detail(kind: &EventKind) -> String {
    match kind {
        EventKind::AlarmRaised(flags) | EventKind::AlarmCleared(flags) => flags.names().join(","),
        EventKind::PackOnline => String::new(),
        EventKind::PackOnlineIdentified { serial_number } => serial_number.clone(),
        EventKind::PackOffline { reason } => reason.clone(),
    }
}

impl MonitorStore {
    /// Opens (creating if needed) the database at `path` for writing.
    pub fn open(path: &Path) -> Result<Self, MonitorStoreError> {
        let mut conn = Connection::open(path)?;
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        match version {
            0 => tx.execute_batch(V1)?,
            1 | SCHEMA_VERSION => {}
            found => {
                return Err(MonitorStoreError::UnsupportedSchema {
                    path: path.to_owned(),
                    found,
                })
            }
        }
        if version < SCHEMA_VERSION {
            tx.execute_batch(V2)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()?;
        Ok(Self {
            conn,
            version: SCHEMA_VERSION,
        })
    }

    /// Sets how hard commits are synced to the disk (`synchronous`).
    pub fn set_durability(&self, durability: Durability) -> Result<(), MonitorStoreError> {
        self.conn
            .pragma_update(None, "synchronous", durability.sqlite_synchronous())?;
        Ok(())
    }

    /// Opens an existing database for reading only (`packgate status`).
    pub fn open_read_only(path: &Path) -> Result<Self, MonitorStoreError> {
        match super::unreadable(path) {
            None => {}
            Some(Ok(())) => return Err(MonitorStoreError::NotFound(path.to_owned())),
            Some(Err(source)) => {
                return Err(MonitorStoreError::Unreadable {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if !(1..=SCHEMA_VERSION).contains(&found) {
            return Err(MonitorStoreError::UnsupportedSchema {
                path: path.to_owned(),
                found,
            });
        }
        Ok(Self {
            conn,
            version: found,
        })
    }

    /// Stores snapshots and events in one transaction; rows already stored
    /// are counted as duplicates, not errors.
    pub fn insert_batch(
        &mut self,
        snapshots: &[MetricsSnapshot],
        events: &[Event],
    ) -> Result<BatchOutcome, MonitorStoreError> {
        let tx = self.conn.transaction()?;
        let mut outcome = BatchOutcome::default();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO snapshots (worker, instance, timestamp_ms, uptime_s,
                     version, rss_bytes, cpu_s, counters_json, gauges_json, latencies_json,
                     notes_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for s in snapshots {
                let latencies = serde_json::to_string(&s.latencies).unwrap_or_default();
                let n = insert.execute(params![
                    s.worker,
                    s.instance,
                    s.timestamp_ms,
                    clamp_i64(s.uptime_s),
                    s.version,
                    clamp_i64(s.rss_bytes),
                    s.cpu_s,
                    json_object(&s.counters),
                    json_object(&s.gauges),
                    latencies,
                    json_object(&s.notes),
                ])?;
                outcome.snapshots += n;
                outcome.duplicates += 1 - n;
            }
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (pack_id, boot_id, seq, timestamp_ms, kind, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for e in events {
                let n = insert.execute(params![
                    e.pack_id.as_str(),
                    e.boot_id.to_string(),
                    clamp_i64(e.seq),
                    e.timestamp_ms,
                    e.kind.name(),
                    event_detail(&e.kind),
                ])?;
                outcome.events += n;
                outcome.duplicates += 1 - n;
            }
        }
        tx.commit()?;
        Ok(outcome)
    }

    /// Stores a batch like [`MonitorStore::insert_batch`]; when it fails for
    /// a reason that belongs to one row ([`MonitorStoreError::is_row_fault`]),
    /// stores the rows one by one, so the good ones are committed. Returns
    /// what was stored and the rows refused, snapshots numbered first
    /// (`0..snapshots.len()`), then events.
    pub fn insert_isolating(
        &mut self,
        snapshots: &[MetricsSnapshot],
        events: &[Event],
    ) -> Result<(BatchOutcome, Vec<usize>), MonitorStoreError> {
        match self.insert_batch(snapshots, events) {
            Ok(outcome) => return Ok((outcome, Vec::new())),
            Err(error) if error.is_row_fault() => {}
            Err(error) => return Err(error),
        }
        let mut total = BatchOutcome::default();
        let mut refused = Vec::new();
        let rows = snapshots
            .iter()
            .map(|s| (Some(s), None))
            .chain(events.iter().map(|e| (None, Some(e))));
        for (index, (snapshot, event)) in rows.enumerate() {
            let one = self.insert_batch(
                snapshot.map(std::slice::from_ref).unwrap_or_default(),
                event.map(std::slice::from_ref).unwrap_or_default(),
            );
            match one {
                Ok(outcome) => {
                    total.snapshots += outcome.snapshots;
                    total.events += outcome.events;
                    total.duplicates += outcome.duplicates;
                }
                Err(error) if error.is_row_fault() => refused.push(index),
                Err(error) => return Err(error),
            }
        }
        Ok((total, refused))
    }

    /// Retention: deletes at most `max_rows` snapshots and `max_rows`
    /// events older than `cutoff_ms`; returns the rows deleted.
    pub fn prune_older_than(
        &mut self,
        cutoff_ms: i64,
        max_rows: usize,
    ) -> Result<usize, MonitorStoreError> {
        let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for table in ["snapshots", "events"] {
            deleted += self
                .conn
                .prepare_cached(&format!(
                    "DELETE FROM {table} WHERE id IN (
                         SELECT id FROM {table} WHERE timestamp_ms < ?1
                         ORDER BY timestamp_ms LIMIT ?2)"
                ))?
                .execute((cutoff_ms, limit))?;
        }
        Ok(deleted)
    }

    /// The newest snapshot of each worker kind (of whichever instance),
    /// sorted by worker.
    pub fn latest_snapshots(&self) -> Result<Vec<StoredSnapshot>, MonitorStoreError> {
        // A version 1 file, read by `status` before the monitor upgraded
        // it, has no notes.
        let notes = if self.version >= 2 {
            "s.notes_json"
        } else {
            "'{}'"
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT s.worker, s.instance, s.timestamp_ms, s.uptime_s, s.version, s.rss_bytes,
                    s.counters_json, s.gauges_json, {notes}
             FROM snapshots s
             JOIN (SELECT worker, MAX(timestamp_ms) AS ts FROM snapshots GROUP BY worker) m
               ON s.worker = m.worker AND s.timestamp_ms = m.ts
             GROUP BY s.worker ORDER BY s.worker"
        ))?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredSnapshot {
                worker: row.get(0)?,
                instance: row.get(1)?,
                timestamp_ms: row.get(2)?,
                uptime_s: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                version: row.get(4)?,
                rss_bytes: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
                counters: json_pairs(&row.get::<_, String>(6)?),
                gauges: json_pairs(&row.get::<_, String>(7)?),
                notes: json_pairs(&row.get::<_, String>(8)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of snapshots stored for `worker`.
    pub fn snapshot_count(&self, worker: &str) -> Result<u64, MonitorStoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM snapshots WHERE worker = ?1")?
            .query_row([worker], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The newest `limit` events whose kind is one of `kinds`, newest first.
    pub fn recent_events(
        &self,
        kinds: &[&str],
        limit: usize,
    ) -> Result<Vec<StoredEvent>, MonitorStoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT pack_id, timestamp_ms, kind, detail FROM events
             WHERE kind IN (SELECT value FROM json_each(?1))
             ORDER BY timestamp_ms DESC, id DESC LIMIT ?2",
        )?;
        let kinds = serde_json::to_string(kinds).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![kinds, limit], |row| {
            Ok(StoredEvent {
                pack_id: row.get(0)?,
                timestamp_ms: row.get(1)?,
                kind: row.get(2)?,
                detail: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest online/offline event of `pack`, if any.
    pub fn last_presence(&self, pack: &str) -> Result<Option<StoredEvent>, MonitorStoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT pack_id, timestamp_ms, kind, detail FROM events
             WHERE pack_id = ?1 AND kind IN ('pack_online', 'pack_offline')
             ORDER BY timestamp_ms DESC, id DESC LIMIT 1",
        )?;
        let mut rows = stmt.query_map([pack], |row| {
            Ok(StoredEvent {
                pack_id: row.get(0)?,
                timestamp_ms: row.get(1)?,
                kind: row.get(2)?,
                detail: row.get(3)?,
            })
        })?;
        Ok(rows.next().transpose()?)
    }
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
