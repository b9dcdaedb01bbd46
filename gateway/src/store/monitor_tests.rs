//! Tests of the monitor store.

use super::*;
use packgate_protocol::{AlarmFlags, BootId, PackId};

fn snapshot(worker: &str, ts: i64) -> MetricsSnapshot {
    MetricsSnapshot {
        worker: worker.to_owned(),
        instance: "h/1".to_owned(),
        timestamp_ms: ts,
        uptime_s: 3,
        version: "0.1.0".to_owned(),
        rss_bytes: 1 << 20,
        cpu_s: 0.5,
        counters: vec![("samples_stored".to_owned(), 9)],
        gauges: vec![("backlog".to_owned(), 4.0)],
        latencies: vec![],
        notes: vec![],
    }
}

fn event(seq: u64, ts: i64, kind: EventKind) -> Event {
    Event {
        pack_id: PackId::new("p1").unwrap(),
        boot_id: BootId(7),
        seq,
        timestamp_ms: ts,
        kind,
    }
}

#[test]
fn batches_are_stored_once_read_back_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.db");
    assert!(matches!(
        MonitorStore::open_read_only(&path),
        Err(MonitorStoreError::NotFound(_))
    ));
    let mut store = MonitorStore::open(&path).unwrap();
    assert!(matches!(
        MonitorStore::open_read_only(&path.join("x.db")),
        Err(MonitorStoreError::Unreadable { .. })
    ));
    let snapshots = [snapshot("data", 100), snapshot("data", 200)];
    let events = [
        event(1, 100, EventKind::PackOnline),
        event(2, 150, EventKind::AlarmRaised(AlarmFlags::OVER_TEMPERATURE)),
    ];
    let outcome = store.insert_batch(&snapshots, &events).unwrap();
    assert_eq!(
        (outcome.snapshots, outcome.events, outcome.duplicates),
        (2, 2, 0)
    );
    let again = store.insert_batch(&snapshots, &events).unwrap();
    assert_eq!((again.snapshots, again.events, again.duplicates), (0, 0, 4));

    let reader = MonitorStore::open_read_only(&path).unwrap();
    let latest = reader.latest_snapshots().unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].timestamp_ms, 200);
    assert_eq!(latest[0].counters, vec![("samples_stored".to_owned(), 9)]);
    assert_eq!(latest[0].gauges, vec![("backlog".to_owned(), 4.0)]);
    let alarms = reader.recent_events(&["alarm_raised"], 10).unwrap();
    assert_eq!(alarms.len(), 1);
    assert!(!alarms[0].detail.is_empty());
    let presence = reader.last_presence("p1").unwrap().unwrap();
    assert_eq!(presence.kind, "pack_online");

    assert_eq!(store.prune_older_than(160, 100).unwrap(), 3);
    assert_eq!(reader.snapshot_count("data").unwrap(), 1);
}

#[test]
fn one_row_the_database_refuses_does_not_hold_back_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = MonitorStore::open(&dir.path().join("monitor.db")).unwrap();
    // A rule of the database (here a trigger) refuses one row.
    store
        .conn
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON snapshots WHEN NEW.timestamp_ms = 200
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .unwrap();
    let snapshots = [
        snapshot("data", 100),
        snapshot("data", 200),
        snapshot("data", 300),
    ];
    let events = [event(1, 100, EventKind::PackOnline)];
    assert!(store
        .insert_batch(&snapshots, &events)
        .unwrap_err()
        .is_row_fault());
    let (outcome, refused) = store.insert_isolating(&snapshots, &events).unwrap();
    assert_eq!(refused, vec![1]);
    assert_eq!((outcome.snapshots, outcome.events), (2, 1));
    assert_eq!(store.snapshot_count("data").unwrap(), 2);
}

#[test]
fn notes_are_stored_and_a_version_1_file_is_read_then_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.db");
    // A file as the first schema wrote it, with one snapshot.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO snapshots (worker, instance, timestamp_ms, uptime_s, version,
                 rss_bytes, cpu_s, counters_json, gauges_json, latencies_json)
             VALUES ('cloud', 'h/1', 100, 1, '0.1.0', 1, 0.1, '{}', '{\"link_up\":0.0}', '[]')",
            [],
        )
        .unwrap();
    }
    let old = MonitorStore::open_read_only(&path).unwrap();
    let latest = old.latest_snapshots().unwrap();
    assert_eq!(latest[0].gauges, vec![("link_up".to_owned(), 0.0)]);
    assert!(latest[0].notes.is_empty());

    let mut store = MonitorStore::open(&path).unwrap();
    let version: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let with_note = MetricsSnapshot {
        notes: vec![("link_error".to_owned(), "certificate unknown".to_owned())],
        ..snapshot("cloud", 200)
    };
    store.insert_batch(&[with_note], &[]).unwrap();
    let latest = MonitorStore::open_read_only(&path)
        .unwrap()
        .latest_snapshots()
        .unwrap();
    assert_eq!(latest[0].timestamp_ms, 200);
    assert_eq!(
        latest[0].notes,
        vec![("link_error".to_owned(), "certificate unknown".to_owned())]
    );
}
