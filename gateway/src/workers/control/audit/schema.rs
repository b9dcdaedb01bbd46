//! The audit store's tables, by schema version, and the conversions from
//! older versions.

use rusqlite::Connection;

/// The table of version 2: `value` is NULL where the command's value was
/// not a number (or the request did not decode).
pub(super) const COMMANDS_V2: &str = "
CREATE TABLE commands (
    command_id TEXT PRIMARY KEY,
    pack_id TEXT NOT NULL,
    setting TEXT NOT NULL,
    value REAL,
    origin TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    completed_at_ms INTEGER,
    outcome TEXT,
    read_back REAL,
    detail TEXT,
    reply BLOB
);
CREATE INDEX commands_received ON commands (received_at_ms);
";

/// Version 1 had `value REAL NOT NULL`; SQLite cannot drop a constraint,
/// so the table is copied.
pub(super) const V1_TO_V2: &str = "
DROP INDEX commands_received;
ALTER TABLE commands RENAME TO commands_v1;
";

/// The copy of version 1's rows into the new table.
pub(super) const V1_COPY: &str = "
INSERT INTO commands SELECT * FROM commands_v1;
DROP TABLE commands_v1;
";

/// Turns on incremental vacuum (so deleted rows give their space back to
/// the file system), converting a file made without it once.
pub(super) fn enable_incremental_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |row| row.get(0))?;
    if mode != INCREMENTAL {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.execute_batch("VACUUM")?;
    }
    Ok(())
}
