//! The SQLite stores: the data worker's store of samples (here) and of the
//! banks' states ([`banks`]), and the monitor's store of metrics snapshots
//! and events ([`monitor`]).
//!
//! One row per [`Sample`](packgate_protocol::Sample), unique on
//! `(pack_id, boot_id, seq)` so a sample redelivered by the broker is never
//! stored twice. The API is synchronous: the async worker calls it from
//! `spawn_blocking`.

mod banks;
mod dead;
pub mod monitor;
mod range;
pub mod render;
mod row;
mod samples;
mod schema;

use std::path::{Path, PathBuf};

use packgate_protocol::PackId;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::config::Durability;
pub use banks::StoredBankState;
pub use dead::{
    DeadLetter, Isolated, MAX_DEAD_LETTER_ERROR_BYTES, MAX_DEAD_LETTER_PAYLOAD_BYTES,
    MAX_DEAD_LETTER_ROWS,
};
pub use range::{PageCursor, SamplePoint};
pub use row::StoredSample;

/// Bytes SQLite holds on the heap across every connection of this process
/// (page caches, statements, schema): the share of the heap that grows
/// with the stores until their caches are full.
pub fn sqlite_memory_in_use_bytes() -> u64 {
    // SAFETY: sqlite3_memory_used reads SQLite's own counter and takes no
    // argument; it is callable from any thread at any time.
    #[allow(unsafe_code)]
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}
pub use samples::InsertOutcome;

/// Most free pages one [`SampleStore::prune_older_than`] hands back to the
/// file system (4 MiB at the default 4 KiB page), so retention never stalls
/// the writer for long; the rest goes on the next prune.
pub const MAX_VACUUM_PAGES_PER_PRUNE: u32 = 1024;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or set up.
    #[error("cannot open the sample store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A read-only open of a file that does not exist.
    #[error("sample store {0} does not exist (has the data worker run?)")]
    NotFound(PathBuf),
    /// A read-only open of a file that exists, or may, but cannot be read
    /// (permission denied, say).
    #[error("cannot read the sample store {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file exists but holds no packgate schema.
    #[error("{0} is not a packgate sample store (schema version 0)")]
    NotAStore(PathBuf),
    /// The file's schema version is not one this build reads.
    #[error("sample store {path} has schema version {found}; this build reads 1 to {supported}")]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The disk (or the file's page limit) is full: `SQLITE_FULL`, or an
    /// I/O error whose cause was no room (`EFBIG` past the file-size limit,
    /// `ENOSPC`, `EDQUOT`). The caller keeps the batch unacked and retries
    /// later; it succeeds once space returns.
    #[error("sample store is full: {0}")]
    DiskFull(#[source] rusqlite::Error),
    /// Any other SQLite error.
    #[error("sample store: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// A sample that cannot be stored faithfully (invalid values or a
    /// sequence number beyond SQLite's integer range); nothing of its batch
    /// was stored.
    #[error("sample {msg_id} cannot be stored: {reason}")]
    InvalidSample {
        /// The sample's `pack:boot:seq`.
        msg_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A bank state that cannot be stored faithfully (it breaks the wire
    /// rules); nothing of its batch was stored.
    #[error("bank state {msg_id} cannot be stored: {reason}")]
    InvalidBankState {
        /// The state's `bank:boot:b<seq>`.
        msg_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The blocking task that ran the store operation failed.
    #[error("sample store task failed: {0}")]
    Task(String),
    /// A stored row that does not read back into a sample (edited or
    /// damaged by another tool).
    #[error("stored row {row_id} has a bad {column}: {reason}")]
    Corrupt {
        /// The row's `id`.
        row_id: i64,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// Whether the failure is for want of room: the disk, the file-size
    /// limit or the file's page limit.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull(_) => true,
            StoreError::Open { source, .. } => is_full(source),
            _ => false,
        }
    }
}

fn is_full(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(ErrorCode::DiskFull)
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        if is_full(&error) {
            StoreError::DiskFull(error)
        } else {
            StoreError::Sqlite(error)
        }
    }
}

/// Why `path`, a database to open read-only, cannot be read: `None` when
/// it can, `Some(Ok(()))` when it does not exist, and `Some(Err(why))`
/// otherwise (permission denied on the file or on a directory above it, a
/// path through a file...). `Path::exists` would call every one of these
/// "does not exist".
pub(crate) fn unreadable(path: &Path) -> Option<Result<(), std::io::Error>> {
    match std::fs::File::open(path) {
        Ok(_) => None,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(Ok(())),
        Err(error) => Some(Err(error)),
    }
}

/// Wraps a setup failure with the path, keeping the schema errors as they are.
fn at_open(path: &Path, error: StoreError) -> StoreError {
    match error {
        StoreError::Sqlite(source) => StoreError::Open {
            path: path.to_owned(),
            source,
        },
        other => other,
    }
}

/// The SQLite store of samples; owns one connection.
#[derive(Debug)]
pub struct SampleStore {
    conn: Connection,
    /// What to select for [`row::read_row`]: older files lack columns.
    columns: &'static str,
    /// Whether the file has the `bank_states` table (schema 4 on).
    has_banks: bool,
}

impl SampleStore {
    /// Opens (creating if needed) the store at `path` for writing and
    /// migrates its schema. The parent directory must exist.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        schema::configure_writer(&conn).map_err(|e| at_open(path, e))?;
        schema::migrate(&mut conn, path).map_err(|e| at_open(path, e))?;
        Ok(Self {
            conn,
            columns: row::SELECT_COLUMNS,
            has_banks: true,
        })
    }

    /// Sets how hard commits are synced to the disk (`synchronous`);
    /// `fast` is what [`SampleStore::open`] starts with.
    pub fn set_durability(&self, durability: Durability) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "synchronous", durability.sqlite_synchronous())?;
        Ok(())
    }

    /// The `synchronous` setting in force: 1 NORMAL, 2 FULL.
    pub fn synchronous(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))?)
    }

    /// Opens an existing store for reading only (`packgate query`), with a
    /// clear error when the file is missing or is not a sample store.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        match unreadable(path) {
            None => {}
            Some(Ok(())) => return Err(StoreError::NotFound(path.to_owned())),
            Some(Err(source)) => {
                return Err(StoreError::Unreadable {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(schema::BUSY_TIMEOUT)
            .map_err(StoreError::from)
            .and_then(|()| schema::check_readable(&conn, path))
            .map_err(|e| at_open(path, e))?;
        // A file the (older) writer has not migrated yet still reads.
        let version = schema::user_version(&conn).map_err(|e| at_open(path, e))?;
        let columns = match version {
            1 => row::SELECT_COLUMNS_V1,
            _ => row::SELECT_COLUMNS,
        };
        Ok(Self {
            conn,
            columns,
            has_banks: version >= 4,
        })
    }

    /// Tells an I/O error caused by a lack of room apart from other I/O
    /// errors. SQLite reports a short write as `SQLITE_FULL`, but a write
    /// refused outright as `SQLITE_IOERR_*` whatever the reason, so the
    /// connection's last OS error decides: `EFBIG` (past `RLIMIT_FSIZE`,
    /// with SIGXFSZ ignored), `ENOSPC` or `EDQUOT` is a full disk.
    fn classify(&self, error: StoreError) -> StoreError {
        match error {
            StoreError::Sqlite(source)
                if source.sqlite_error_code() == Some(ErrorCode::SystemIoFailure)
                    && matches!(
                        self.last_os_errno(),
                        libc::EFBIG | libc::ENOSPC | libc::EDQUOT
                    ) =>
            {
                StoreError::DiskFull(source)
            }
            other => other,
        }
    }

    /// The errno of the last failed OS call SQLite made on this connection
    /// (`sqlite3_system_errno`), 0 if none.
    fn last_os_errno(&self) -> i32 {
        #[allow(unsafe_code)]
        // SAFETY: `handle` is the live database handle this `Connection`
        // owns; `sqlite3_system_errno` only reads a field of it, and the
        // connection is not shared with another thread (`&self`, and the
        // store is used from one thread at a time behind a mutex).
        unsafe {
            rusqlite::ffi::sqlite3_system_errno(self.conn.handle())
        }
    }

    /// Retention: deletes at most `max_rows` samples and at most `max_rows`
    /// bank states older than `cutoff_ms` (oldest first), then returns at
    /// most [`MAX_VACUUM_PAGES_PER_PRUNE`] free pages to the file system.
    /// Returns the rows deleted; none means nothing more is due.
    pub fn prune_older_than(
        &mut self,
        cutoff_ms: i64,
        max_rows: usize,
    ) -> Result<usize, StoreError> {
        let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let deleted = self
            .conn
            .prepare_cached(
                "DELETE FROM samples WHERE id IN (
                     SELECT id FROM samples WHERE timestamp_ms < ?1
                     ORDER BY timestamp_ms, id LIMIT ?2)",
            )?
            .execute((cutoff_ms, limit))?;
        let states = self.prune_bank_states(cutoff_ms, limit)?;
        self.incremental_vacuum()?;
        Ok(deleted + states)
    }

    /// Frees up to [`MAX_VACUUM_PAGES_PER_PRUNE`] pages, if any are free
    /// (including those left over by an earlier bounded run). The pragma
    /// yields one row per page freed and only frees while stepped, so every
    /// row is read.
    fn incremental_vacuum(&self) -> Result<(), StoreError> {
        let free_pages: i64 = self
            .conn
            .prepare_cached("PRAGMA freelist_count")?
            .query_row([], |row| row.get(0))?;
        if free_pages == 0 {
            return Ok(());
        }
        let sql = format!("PRAGMA incremental_vacuum({MAX_VACUUM_PAGES_PER_PRUNE})");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    }

    /// Every pack with at least one stored sample, sorted by id.
    pub fn pack_ids(&self) -> Result<Vec<PackId>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT pack_id, MIN(id) FROM samples GROUP BY pack_id ORDER BY pack_id",
        )?;
        let mut rows = stmt.query([])?;
        let mut ids = Vec::new();
        while let Some(row) = rows.next()? {
            let raw: String = row.get(0)?;
            let id = PackId::new(raw).map_err(|e| StoreError::Corrupt {
                row_id: row.get(1).unwrap_or(0),
                column: "pack_id",
                reason: e.to_string(),
            })?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Number of stored samples.
    pub fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM samples")?
            .query_row([], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests;
