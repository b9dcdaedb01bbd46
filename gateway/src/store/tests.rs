//! Tests of the store module.

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
    assert_eq!(pragma(&store, "user_version"), "Integer(4)");
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
                    supported: 4,
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
    // A path through a file: not absent but unreadable, and said so
    // (as permission denied would be).
    let err = SampleStore::open_read_only(&path.join("x.db")).unwrap_err();
    assert!(matches!(err, StoreError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("Not a directory"), "{err}");
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
    assert_eq!(pragma(&writer, "user_version"), "Integer(4)");
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

#[test]
fn sqlite_memory_counts_what_a_connection_caches() {
    let before = sqlite_memory_in_use_bytes();
    let connection = Connection::open_in_memory().unwrap();
    connection
        .execute_batch(
            "CREATE TABLE t (v BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
             INSERT INTO t SELECT zeroblob(1000) FROM n;",
        )
        .unwrap();
    let during = sqlite_memory_in_use_bytes();
    // 5,000 rows of 1 kB live in the in-memory database's pages (other
    // tests' connections come and go meanwhile, by far less than that).
    assert!(during >= before + 4_000_000, "{before} -> {during}");
}
