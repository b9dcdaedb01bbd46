//! The SQLite stores: the data worker's store of samples (here) and the
//! monitor's store of metrics snapshots and events ([`monitor`]).
//!
//! One row per [`Sample`](packgate_protocol::Sample), unique on
//! `(pack_id, boot_id, seq)` so a sample redelivered by the broker is never
//! stored twice. The API is synchronous: the async worker calls it from
//! `spawn_blocking`.

mod dead;
pub mod monitor;
mod row;
mod samples;
mod schema;

use std::path::{Path, PathBuf};

use packgate_protocol::PackId;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::config::Durability;
pub use dead::{
    DeadLetter, Isolated, MAX_DEAD_LETTER_ERROR_BYTES, MAX_DEAD_LETTER_PAYLOAD_BYTES,
    MAX_DEAD_LETTER_ROWS,
};
pub use row::StoredSample;
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
        if !path.exists() {
            return Err(StoreError::NotFound(path.to_owned()));
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
        let columns = match schema::user_version(&conn).map_err(|e| at_open(path, e))? {
            1 => row::SELECT_COLUMNS_V1,
            _ => row::SELECT_COLUMNS,
        };
        Ok(Self { conn, columns })
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

    /// Retention: deletes at most `max_rows` samples older than `cutoff_ms`
    /// (oldest first), then returns at most [`MAX_VACUUM_PAGES_PER_PRUNE`]
    /// free pages to the file system. Returns the rows deleted; a result
    /// equal to `max_rows` means more may be due.
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
        self.incremental_vacuum()?;
        Ok(deleted)
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
mod tests {
    use super::samples::tests::{sample, store};
    use super::*;

    fn pragma(store: &SampleStore, name: &str) -> String {
        store
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |row| {
                row.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| format!("{v:?}"))
            .unwrap()
    }

    #[test]
    fn open_sets_up_wal_incremental_vacuum_and_schema() {
        let (dir, store) = store();
        assert_eq!(pragma(&store, "journal_mode"), r#"Text("wal")"#);
        assert_eq!(pragma(&store, "auto_vacuum"), "Integer(2)");
        assert_eq!(pragma(&store, "synchronous"), "Integer(1)");
        assert_eq!(pragma(&store, "busy_timeout"), "Integer(5000)");
        assert_eq!(pragma(&store, "user_version"), "Integer(3)");
        drop(store);
        // Reopening an up-to-date file changes nothing.
        let again = SampleStore::open(&dir.path().join("samples.db")).unwrap();
        assert_eq!(again.count().unwrap(), 0);
    }

    #[test]
    fn durability_sets_how_commits_are_synced() {
        let (_dir, store) = store();
        assert_eq!(store.synchronous().unwrap(), 1);
        store.set_durability(Durability::Safe).unwrap();
        assert_eq!(store.synchronous().unwrap(), 2, "FULL: every commit synced");
        store.set_durability(Durability::Fast).unwrap();
        assert_eq!(store.synchronous().unwrap(), 1, "NORMAL");
    }

    #[test]
    fn open_needs_the_parent_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = SampleStore::open(&dir.path().join("missing/samples.db")).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (dir, store) = store();
        store.conn.pragma_update(None, "user_version", 9).unwrap();
        drop(store);
        let path = dir.path().join("samples.db");
        for err in [
            SampleStore::open(&path).unwrap_err(),
            SampleStore::open_read_only(&path).unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    StoreError::UnsupportedSchema {
                        found: 9,
                        supported: 3,
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn read_only_open_reads_and_explains_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.db");
        let err = SampleStore::open_read_only(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert!(!path.exists(), "a read-only open must not create the file");

        std::fs::write(&path, b"").unwrap();
        let err = SampleStore::open_read_only(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotAStore(_)), "{err}");
        std::fs::remove_file(&path).unwrap();

        let mut writer = SampleStore::open(&path).unwrap();
        writer.insert_batch(&[sample("p1", 1, 1, 5)], 6).unwrap();
        let mut reader = SampleStore::open_read_only(&path).unwrap();
        assert_eq!(reader.count().unwrap(), 1);
        let err = reader
            .insert_batch(&[sample("p1", 1, 2, 5)], 6)
            .unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)), "{err}");
        assert!(!err.is_disk_full());
    }

    #[test]
    fn prune_deletes_the_oldest_first_up_to_the_limit() {
        let (_dir, mut store) = store();
        // Inserted out of time order: retention goes by timestamp, not rowid.
        let batch = vec![
            sample("p1", 1, 1, 300),
            sample("p1", 1, 2, 100),
            sample("p2", 1, 1, 200),
            sample("p1", 1, 3, 400),
        ];
        store.insert_batch(&batch, 0).unwrap();
        assert_eq!(store.prune_older_than(350, 2).unwrap(), 2);
        let p1 = PackId::new("p1").unwrap();
        assert_eq!(
            store.keys_in_insert_order(&p1).unwrap(),
            vec![
                (packgate_protocol::BootId(1), 1),
                (packgate_protocol::BootId(1), 3)
            ]
        );
        assert_eq!(store.prune_older_than(350, 10).unwrap(), 1);
        assert_eq!(store.prune_older_than(350, 10).unwrap(), 0);
        assert_eq!(store.count().unwrap(), 1);
    }

    #[test]
    fn prune_returns_free_pages_to_the_file_system_a_bounded_amount_at_a_time() {
        let (_dir, mut store) = store();
        for batch in 0..25u64 {
            let rows: Vec<_> = (1..=1000)
                .map(|i| sample("p1", 1, batch * 1000 + i, 0))
                .collect();
            store.insert_batch(&rows, 0).unwrap();
        }
        let query = |s: &SampleStore, pragma: &str| -> i64 {
            s.conn
                .query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
                .unwrap()
        };
        let before = query(&store, "page_count");
        assert_eq!(store.prune_older_than(1, usize::MAX).unwrap(), 25_000);
        let after = query(&store, "page_count");
        // Pointer-map pages go with the freed pages, so a few more than the bound.
        let limit = i64::from(MAX_VACUUM_PAGES_PER_PRUNE);
        assert!(
            (limit..limit + 16).contains(&(before - after)),
            "{before} -> {after}"
        );
        assert!(
            query(&store, "freelist_count") > 0,
            "the test needs more rows"
        );
        // Later prunes finish the job even when nothing more is due.
        for _ in 0..10 {
            assert_eq!(store.prune_older_than(1, 100).unwrap(), 0);
        }
        assert_eq!(query(&store, "freelist_count"), 0);
    }

    /// A version 1 file as the first release wrote it, with one row.
    fn version_1_file(path: &std::path::Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        let v1 = include_str!("schema.rs")
            .split("const V1: &str = \"")
            .nth(1)
            .and_then(|rest| rest.split("\";").next())
            .unwrap();
        conn.execute_batch(v1).unwrap();
        conn.execute_batch(
            "INSERT INTO samples (pack_id, boot_id, seq, timestamp_ms, stored_at_ms, quality,
                pack_voltage_v, current_a, soc_pct, soh_pct, min_cell_v, max_cell_v,
                max_temperature_c, cell_voltages_v, temperatures_c, balancing_mask,
                alarm_flags, charge_enabled, discharge_enabled)
             VALUES ('p1', '0000000000000001', 1, 5, 6, 'fresh', 52.0, 1.0, 50.0, 99.0,
                3.2, 3.3, 25.0, '[3.2,3.3]', '[25]', 0, 0, 1, 1);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }

    #[test]
    fn a_version_1_file_reads_as_clock_trusted_and_migrates() {
        use packgate_protocol::sample::ClockQuality;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.db");
        version_1_file(&path);
        let p1 = PackId::new("p1").unwrap();
        // Read-only (an older writer still owns it): read as it is.
        let reader = SampleStore::open_read_only(&path).unwrap();
        let rows = reader.latest(&p1, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].sample.clock, ClockQuality::Trusted);
        assert_eq!(pragma(&reader, "user_version"), "Integer(1)");
        drop(reader);
        // The writer migrates it in place, keeping the row.
        let mut writer = SampleStore::open(&path).unwrap();
        assert_eq!(pragma(&writer, "user_version"), "Integer(3)");
        let mut untrusted = sample("p1", 1, 2, 7);
        untrusted.clock = ClockQuality::Untrusted;
        writer.insert_batch(&[untrusted.clone()], 8).unwrap();
        let rows = writer.latest(&p1, 10).unwrap();
        assert_eq!(rows[0].sample, untrusted);
        assert_eq!(rows[1].sample.seq, 1);
        assert_eq!(rows[1].sample.clock, ClockQuality::Trusted);
        let raw: i64 = writer
            .conn
            .query_row("SELECT clock_trusted FROM samples WHERE seq = 2", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(raw, 0);
    }

    #[test]
    fn a_full_disk_is_told_apart() {
        let (_dir, mut store) = store();
        store
            .conn
            .execute_batch("PRAGMA max_page_count = 8")
            .unwrap();
        let batch: Vec<_> = (1..=2000).map(|seq| sample("p1", 1, seq, 0)).collect();
        let err = store.insert_batch(&batch, 0).unwrap_err();
        assert!(err.is_disk_full(), "{err:?}");
        assert!(matches!(err, StoreError::DiskFull(_)));
        // The failed batch was rolled back as a whole.
        assert_eq!(store.count().unwrap(), 0);
    }
}
