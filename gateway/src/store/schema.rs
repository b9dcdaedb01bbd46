//! The sample store's connection settings and schema, versioned with
//! `PRAGMA user_version` so a newer build can migrate an older file in place.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// The schema version this build writes; files with another (higher or
/// negative) one are refused rather than misread.
pub(super) const SCHEMA_VERSION: i64 = 4;

/// How long a statement waits for another connection's lock before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `n` takes a file from version `n` to `n + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [V1, V2, V3, V4];

/// Version 1: one row per sample, flat columns so dashboards (Grafana's
/// SQLite plugin, the sqlite3 shell) can read it without packgate.
const V1: &str = "
CREATE TABLE samples (
    id INTEGER PRIMARY KEY,
    pack_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    quality TEXT NOT NULL,
    pack_voltage_v REAL,
    current_a REAL,
    soc_pct REAL,
    soh_pct REAL,
    min_cell_v REAL,
    max_cell_v REAL,
    max_temperature_c REAL,
    cell_voltages_v TEXT,
    temperatures_c TEXT,
    balancing_mask INTEGER,
    alarm_flags INTEGER,
    charge_enabled INTEGER,
    discharge_enabled INTEGER,
    UNIQUE (pack_id, boot_id, seq)
);
CREATE INDEX samples_pack_time ON samples (pack_id, timestamp_ms);
CREATE INDEX samples_time ON samples (timestamp_ms);
";

/// Version 2: whether the wall clock that stamped the sample was trusted
/// (1) or not (0); rows stored before it existed were not judged, so they
/// read as trusted.
const V2: &str = "
ALTER TABLE samples ADD COLUMN clock_trusted INTEGER NOT NULL DEFAULT 1;
";

/// Version 3: messages of the samples stream that can never be stored
/// (they do not decode, or their values cannot be stored), or that the
/// broker gave up delivering, kept for inspection: one row per stream
/// message, the payload cut to
/// [`MAX_DEAD_LETTER_PAYLOAD_BYTES`](super::MAX_DEAD_LETTER_PAYLOAD_BYTES)
/// (NULL when only the stream sequence is known); only the newest
/// [`MAX_DEAD_LETTER_ROWS`](super::MAX_DEAD_LETTER_ROWS) are kept.
const V3: &str = "
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    stream_seq INTEGER NOT NULL,
    subject TEXT NOT NULL,
    payload BLOB,
    payload_len INTEGER,
    error_kind TEXT NOT NULL,
    error TEXT NOT NULL,
    dead_at_ms INTEGER NOT NULL,
    UNIQUE (stream, stream_seq)
);
";

/// Version 4: the banks' states, one row per state, unique on `(bank_id,
/// boot_id, seq)`: flat columns for dashboards (the extremes with the pack
/// that holds them, the limits and what limits them), and the whole
/// encoded message in `state` (each pack's part) for packgate to read
/// back.
const V4: &str = "
CREATE TABLE bank_states (
    id INTEGER PRIMARY KEY,
    bank_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    packs_total INTEGER NOT NULL,
    packs_online INTEGER NOT NULL,
    voltage_v REAL,
    current_a REAL,
    soc_pct REAL,
    soc_weighting TEXT,
    soh_pct REAL,
    min_cell_v REAL,
    min_cell_pack TEXT,
    max_cell_v REAL,
    max_cell_pack TEXT,
    min_temperature_c REAL,
    max_temperature_c REAL,
    max_temperature_pack TEXT,
    alarm_flags INTEGER,
    charge_voltage_v REAL,
    charge_current_a REAL,
    discharge_current_a REAL,
    discharge_voltage_v REAL,
    stage TEXT,
    charge_derating TEXT,
    discharge_derating TEXT,
    stop TEXT,
    state BLOB NOT NULL,
    UNIQUE (bank_id, boot_id, seq)
);
CREATE INDEX bank_states_bank_time ON bank_states (bank_id, timestamp_ms);
CREATE INDEX bank_states_time ON bank_states (timestamp_ms);
";

/// Reads the file's schema version.
pub(super) fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Applies the writer's settings: incremental auto-vacuum (only effective
/// before the first table exists, so only on a new file), WAL so readers
/// never block the writer, `synchronous=NORMAL` (durable at checkpoints,
/// never corrupt), and the busy timeout.
pub(super) fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
    if user_version(conn)? == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    let _mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`], one migration per
/// transaction. The transaction is IMMEDIATE and re-reads the version, so
/// two processes opening a new file at once do not both create it.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = user_version(&tx)?;
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(StoreError::UnsupportedSchema {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let Some(step) = usize::try_from(version)
            .ok()
            .and_then(|index| MIGRATIONS.get(index))
        else {
            return Ok(());
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

/// Checks that a file opened for reading holds a schema this build reads.
pub(super) fn check_readable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    match user_version(conn)? {
        0 => Err(StoreError::NotAStore(path.to_owned())),
        found if !(1..=SCHEMA_VERSION).contains(&found) => Err(StoreError::UnsupportedSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}
