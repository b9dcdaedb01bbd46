//! The audit store of commands: its own SQLite file (WAL), one row per
//! command id, written when the command arrives (before anything is
//! dispatched) and completed with its outcome and the encoded reply. The
//! row doubles as the idempotency record: a repeated id finds it.
//!
//! The API is synchronous: the async worker calls it from `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use packgate_protocol::{
    decode, encode, Command, CommandId, CommandOrigin, CommandOutcome, CommandReply,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

mod retention;
mod schema;

use schema::{enable_incremental_vacuum, COMMANDS_V2, V1_COPY, V1_TO_V2};

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 2;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The write-ahead log is truncated back to this after a checkpoint.
const WAL_SIZE_LIMIT_BYTES: i64 = 4 << 20;

/// The `setting` of an audit row that records a reset of the latched
/// alarm relay rather than a write to a pack.
pub const RELAY_RESET_SETTING: &str = "alarm_relay_reset";

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened or set up.
    #[error("cannot open the audit store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A read-only open of a file that does not exist.
    #[error("audit store {0} does not exist (has the control worker run?)")]
    NotFound(PathBuf),
    /// A read-only open of a file that exists, or may, but cannot be read
    /// (permission denied, say).
    #[error("cannot read the audit store {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's schema version is not one this build reads.
    #[error("audit store {path} has schema version {found}; this build reads {SCHEMA_VERSION}")]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// Any other SQLite error.
    #[error("audit store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store task failed or did not answer in time.
    #[error("audit store task: {0}")]
    Task(String),
    /// A stored reply that does not decode (edited or damaged).
    #[error("stored reply of command {command_id} is damaged: {reason}")]
    Corrupt {
        /// The command.
        command_id: String,
        /// What is wrong.
        reason: String,
    },
}

/// One audited command, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The command's id.
    pub command_id: String,
    /// The target pack.
    pub pack_id: String,
    /// The setting.
    pub setting: String,
    /// The value asked for; NaN when it was not a number or the request
    /// did not decode.
    pub value: f64,
    /// `cloud` or `local`; `unknown` for a request that did not decode.
    pub origin: String,
    /// When it was issued, ms since the epoch.
    pub issued_at_ms: i64,
    /// When it expires, ms since the epoch.
    pub expires_at_ms: i64,
    /// When the control worker received it, ms since the epoch.
    pub received_at_ms: i64,
    /// When it was completed; `None` while in flight.
    pub completed_at_ms: Option<i64>,
    /// `applied`, `rejected`, `failed`, `timed_out`; `None` while in flight.
    pub outcome: Option<String>,
    /// The value read back, when applied.
    pub read_back: Option<f64>,
    /// The reason or error, when not applied.
    pub detail: Option<String>,
    /// The reply sent, when completed.
    pub reply: Option<CommandReply>,
}

/// What [`AuditStore::begin`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The id is new: its row is written ("received").
    New,
    /// The id was seen before: its row, completed or still in flight.
    Seen(Box<AuditRecord>),
}

/// Stable name of an outcome, as stored in the `outcome` column.
pub fn outcome_name(outcome: &CommandOutcome) -> &'static str {
    match outcome {
        CommandOutcome::Applied { .. } => "applied",
        CommandOutcome::Rejected { .. } => "rejected",
        CommandOutcome::Failed { .. } => "failed",
        CommandOutcome::TimedOut => "timed_out",
    }
}

fn origin_name(origin: CommandOrigin) -> &'static str {
    match origin {
        CommandOrigin::Cloud => "cloud",
        CommandOrigin::Local => "local",
    }
}

const COLUMNS: &str = "command_id, pack_id, setting, value, origin, issued_at_ms, \
    expires_at_ms, received_at_ms, completed_at_ms, outcome, read_back, detail, reply";

/// The audit store; owns one connection.
#[derive(Debug)]
pub struct AuditStore {
    conn: Connection,
}

impl AuditStore {
    /// Opens (creating if needed) the store at `path` for writing. The
    /// parent directory must exist.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let at_open = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(at_open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(at_open)?;
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(at_open)?;
        // Every audit row synced, whatever `durability` says: commands are
        // few, and the record of a write to a pack must survive a power cut
        // that happens after the write.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(at_open)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .map_err(at_open)?;
        // Takes effect when a new file's tables are created; an older file
        // is converted once, below.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(at_open)?;
        // One IMMEDIATE transaction re-reading the version, so two
        // processes opening a new file at once do not both create it.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(at_open)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(at_open)?;
        match version {
            0 => tx.execute_batch(COMMANDS_V2).map_err(at_open)?,
            1 => {
                tx.execute_batch(V1_TO_V2).map_err(at_open)?;
                tx.execute_batch(COMMANDS_V2).map_err(at_open)?;
                tx.execute_batch(V1_COPY).map_err(at_open)?;
            }
            SCHEMA_VERSION => {}
            found => {
                return Err(AuditError::UnsupportedSchema {
                    path: path.to_owned(),
                    found,
                })
            }
        }
        if version != SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(at_open)?;
        }
        tx.commit().map_err(at_open)?;
        enable_incremental_vacuum(&conn).map_err(at_open)?;
        Ok(Self { conn })
    }

    /// Opens an existing store for reading only (`packgate status`).
    pub fn open_read_only(path: &Path) -> Result<Self, AuditError> {
        match crate::store::unreadable(path) {
            None => {}
            Some(Ok(())) => return Err(AuditError::NotFound(path.to_owned())),
            Some(Err(source)) => {
                return Err(AuditError::Unreadable {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        let at_open = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(at_open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(at_open)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(at_open)?;
        // Version 1 differs only in a constraint: readable as it is.
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(AuditError::UnsupportedSchema {
                path: path.to_owned(),
                found: version,
            });
        }
        Ok(Self { conn })
    }

    /// Writes the "received" row of `command` unless its id is already
    /// stored (atomically, so two instances racing on one id cannot both
    /// see it as new).
    pub fn begin(&self, command: &Command, received_at_ms: i64) -> Result<Begin, AuditError> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO commands (command_id, pack_id, setting, value, origin,
                     issued_at_ms, expires_at_ms, received_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (command_id) DO NOTHING",
            )?
            .execute((
                &command.id.0,
                command.pack_id.as_str(),
                &command.setting.0,
                // SQLite has no NaN: it is stored as NULL.
                Some(command.value).filter(|v| !v.is_nan()),
                origin_name(command.origin),
                command.issued_at_ms,
                command.expires_at_ms,
                received_at_ms,
            ))?;
        if inserted == 1 {
            return Ok(Begin::New);
        }
        match self.lookup(&command.id)? {
            Some(record) => Ok(Begin::Seen(Box::new(record))),
            // Deleted by retention between the two statements: try again.
            None => self.begin(command, received_at_ms),
        }
    }

    /// Writes the row of a request that did not decode as a command, under
    /// `key` (its own id where one could be read, else a generated one):
    /// no pack, setting or value, origin `unknown`. False when the key is
    /// already taken.
    pub fn begin_unreadable(
        &self,
        key: &CommandId,
        received_at_ms: i64,
    ) -> Result<bool, AuditError> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO commands (command_id, pack_id, setting, value, origin,
                     issued_at_ms, expires_at_ms, received_at_ms)
                 VALUES (?1, '', '', NULL, 'unknown', 0, 0, ?2)
                 ON CONFLICT (command_id) DO NOTHING",
            )?
            .execute((&key.0, received_at_ms))?;
        Ok(inserted == 1)
    }

    /// Writes the completed row of a reset of the latched alarm relay
    /// (`packgate reset-alarm`), under `key`: setting
    /// [`RELAY_RESET_SETTING`], no pack, `origin` as the requester said.
    pub fn record_relay_reset(
        &self,
        key: &str,
        origin: &str,
        at_ms: i64,
    ) -> Result<(), AuditError> {
        self.conn
            .prepare_cached(
                "INSERT INTO commands (command_id, pack_id, setting, value, origin,
                     issued_at_ms, expires_at_ms, received_at_ms, completed_at_ms, outcome)
                 VALUES (?1, '', ?2, NULL, ?3, ?4, ?4, ?4, ?4, 'applied')",
            )?
            .execute((key, RELAY_RESET_SETTING, origin, at_ms))?;
        Ok(())
    }

    /// Completes a command's row with its reply (and overwrites an earlier
    /// completion: the audit holds what really happened last).
    pub fn complete(&self, reply: &CommandReply, completed_at_ms: i64) -> Result<(), AuditError> {
        if self.complete_where(reply, completed_at_ms, "")? == 0 {
            return Err(AuditError::Corrupt {
                command_id: reply.command_id.0.clone(),
                reason: "no row to complete (deleted while in flight?)".to_owned(),
            });
        }
        Ok(())
    }

    /// Completes a row still in flight with `reply`; a row already
    /// completed is left as it is. Returns whether the row was changed.
    pub fn complete_if_pending(
        &self,
        reply: &CommandReply,
        completed_at_ms: i64,
    ) -> Result<bool, AuditError> {
        Ok(self.complete_where(reply, completed_at_ms, " AND outcome IS NULL")? > 0)
    }

    fn complete_where(
        &self,
        reply: &CommandReply,
        completed_at_ms: i64,
        condition: &str,
    ) -> Result<usize, AuditError> {
        let (read_back, detail) = match &reply.outcome {
            CommandOutcome::Applied { read_back } => (Some(*read_back), None),
            CommandOutcome::Rejected { reason } => (None, Some(reason.as_str())),
            CommandOutcome::Failed { error } => (None, Some(error.as_str())),
            CommandOutcome::TimedOut => (None, None),
        };
        let sql = format!(
            "UPDATE commands SET completed_at_ms = ?2, outcome = ?3, read_back = ?4,
                 detail = ?5, reply = ?6
             WHERE command_id = ?1{condition}"
        );
        Ok(self.conn.prepare_cached(&sql)?.execute((
            &reply.command_id.0,
            completed_at_ms,
            outcome_name(&reply.outcome),
            read_back,
            detail,
            encode(reply),
        ))?)
    }

    /// The row of a command id, if stored.
    pub fn lookup(&self, id: &CommandId) -> Result<Option<AuditRecord>, AuditError> {
        let sql = format!("SELECT {COLUMNS} FROM commands WHERE command_id = ?1");
        let raw = self
            .conn
            .prepare_cached(&sql)?
            .query_row([&id.0], RawRecord::from_row)
            .optional()?;
        raw.map(RawRecord::into_record).transpose()
    }

    /// The stored reply of a completed command, for idempotency.
    pub fn stored_reply(&self, id: &CommandId) -> Result<Option<CommandReply>, AuditError> {
        Ok(self.lookup(id)?.and_then(|record| record.reply))
    }

    /// The `limit` most recently received commands, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        self.recent_raw(limit)?
            .into_iter()
            .map(RawRecord::into_record)
            .collect()
    }

    /// The `limit` most recently received commands, newest first, without
    /// their stored replies (`reply` is `None`): what a listing such as
    /// `packgate status` shows, where one damaged reply must not hide the
    /// other rows.
    pub fn recent_summaries(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        Ok(self
            .recent_raw(limit)?
            .into_iter()
            .map(|raw| raw.record)
            .collect())
    }

    fn recent_raw(&self, limit: usize) -> Result<Vec<RawRecord>, AuditError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM commands ORDER BY received_at_ms DESC, rowid DESC LIMIT ?1"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([limit], RawRecord::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ids of commands received before `received_before_ms` and never
    /// completed (the worker that took them stopped mid-dispatch).
    pub fn pending_before(&self, received_before_ms: i64) -> Result<Vec<CommandId>, AuditError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT command_id FROM commands
             WHERE outcome IS NULL AND received_at_ms < ?1 ORDER BY received_at_ms",
        )?;
        let ids = stmt.query_map([received_before_ms], |row| row.get(0))?;
        let mut out = Vec::new();
        for id in ids {
            out.push(CommandId(id?));
        }
        Ok(out)
    }
}

/// A row as read, before the reply is decoded.
struct RawRecord {
    record: AuditRecord,
    reply: Option<Vec<u8>>,
}

impl RawRecord {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            record: AuditRecord {
                command_id: row.get(0)?,
                pack_id: row.get(1)?,
                setting: row.get(2)?,
                value: row.get::<_, Option<f64>>(3)?.unwrap_or(f64::NAN),
                origin: row.get(4)?,
                issued_at_ms: row.get(5)?,
                expires_at_ms: row.get(6)?,
                received_at_ms: row.get(7)?,
                completed_at_ms: row.get(8)?,
                outcome: row.get(9)?,
                read_back: row.get(10)?,
                detail: row.get(11)?,
                reply: None,
            },
            reply: row.get(12)?,
        })
    }

    fn into_record(self) -> Result<AuditRecord, AuditError> {
        let mut record = self.record;
        if let Some(bytes) = self.reply {
            let reply = decode::<CommandReply>(&bytes).map_err(|e| AuditError::Corrupt {
                command_id: record.command_id.clone(),
                reason: e.to_string(),
            })?;
            record.reply = Some(reply);
        }
        Ok(record)
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
