//! Keeping the audit store bounded: by age (rows older than the retention
//! period) and by size (past the largest size allowed, the oldest completed
//! rows go first, whatever their age). Rows still in flight are never
//! deleted.

use super::{AuditError, AuditStore};

impl AuditStore {
    /// Retention: deletes at most `max_rows` completed commands received
    /// before `cutoff_ms`, oldest first. Returns the rows deleted.
    pub fn prune_older_than(&self, cutoff_ms: i64, max_rows: usize) -> Result<usize, AuditError> {
        let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let deleted = self
            .conn
            .prepare_cached(
                "DELETE FROM commands WHERE rowid IN (
                     SELECT rowid FROM commands
                     WHERE received_at_ms < ?1 AND outcome IS NOT NULL
                     ORDER BY received_at_ms LIMIT ?2)",
            )?
            .execute((cutoff_ms, limit))?;
        if deleted > 0 {
            self.give_back_space()?;
        }
        Ok(deleted)
    }

    /// Bytes the rows take in the database file (its pages in use; free
    /// pages are given back to the file system by the pruning).
    pub fn used_bytes(&self) -> Result<u64, AuditError> {
        let pragma = |name: &str| -> Result<u64, AuditError> {
            let value: i64 = self
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
        Ok(pages.saturating_mul(pragma("page_size")?))
    }

    /// Deletes the oldest completed commands until the rows take at most
    /// `max_bytes` (or `max_rows` are deleted), and shrinks the file.
    /// Returns the rows deleted.
    pub fn prune_to_size(&self, max_bytes: u64, max_rows: usize) -> Result<usize, AuditError> {
        let mut deleted = 0;
        while deleted < max_rows {
            let used = self.used_bytes()?;
            if used <= max_bytes {
                break;
            }
            let rows: i64 = self
                .conn
                .prepare_cached("SELECT COUNT(*) FROM commands")?
                .query_row([], |row| row.get(0))?;
            let rows = u64::try_from(rows).unwrap_or(0).max(1);
            // As many rows of the average size as the excess, and one more.
            let per_row = (used / rows).max(1);
            let wanted = ((used - max_bytes) / per_row).saturating_add(1);
            let batch = usize::try_from(wanted)
                .unwrap_or(usize::MAX)
                .min(max_rows - deleted);
            let limit = i64::try_from(batch).unwrap_or(i64::MAX);
            let removed = self
                .conn
                .prepare_cached(
                    "DELETE FROM commands WHERE rowid IN (
                         SELECT rowid FROM commands WHERE outcome IS NOT NULL
                         ORDER BY received_at_ms, rowid LIMIT ?1)",
                )?
                .execute([limit])?;
            if removed == 0 {
                break;
            }
            deleted += removed;
        }
        if deleted > 0 {
            self.give_back_space()?;
        }
        Ok(deleted)
    }

    /// Returns free pages to the file system and folds the write-ahead log
    /// back into the file (truncating it).
    fn give_back_space(&self) -> Result<(), AuditError> {
        // Each step of this pragma frees one page: run it to the end.
        let mut vacuum = self.conn.prepare_cached("PRAGMA incremental_vacuum")?;
        let mut steps = vacuum.query([])?;
        while steps.next()?.is_some() {}
        drop(steps);
        drop(vacuum);
        // Busy readers may keep the log for now; the next time will do.
        let _: (i64, i64, i64) =
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
        Ok(())
    }
}
