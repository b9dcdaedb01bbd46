use packgate_protocol::{PackId, SettingName};

use super::*;

fn store() -> (tempfile::TempDir, AuditStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = AuditStore::open(&dir.path().join("control.db")).unwrap();
    (dir, store)
}

fn command(id: &str) -> Command {
    Command {
        id: CommandId(id.into()),
        pack_id: PackId::new("sim-01").unwrap(),
        setting: SettingName("charge_current_limit_a".into()),
        value: 42.5,
        origin: CommandOrigin::Cloud,
        issued_at_ms: 1_000,
        expires_at_ms: 31_000,
    }
}

fn reply(id: &str, outcome: CommandOutcome) -> CommandReply {
    CommandReply {
        command_id: CommandId(id.into()),
        outcome,
    }
}

#[test]
fn a_command_is_received_then_completed() {
    let (_dir, store) = store();
    assert_eq!(store.begin(&command("a"), 1_100).unwrap(), Begin::New);
    let pending = store.lookup(&CommandId("a".into())).unwrap().unwrap();
    assert_eq!(pending.outcome, None);
    assert_eq!(pending.reply, None);
    assert_eq!(pending.received_at_ms, 1_100);
    assert_eq!(pending.origin, "cloud");
    assert_eq!(pending.value, 42.5);

    let applied = reply("a", CommandOutcome::Applied { read_back: 42.5 });
    store.complete(&applied, 1_200).unwrap();
    let done = store.lookup(&CommandId("a".into())).unwrap().unwrap();
    assert_eq!(done.outcome.as_deref(), Some("applied"));
    assert_eq!(done.read_back, Some(42.5));
    assert_eq!(done.completed_at_ms, Some(1_200));
    assert_eq!(done.detail, None);
    assert_eq!(done.reply.as_ref(), Some(&applied));
    assert_eq!(
        store.stored_reply(&CommandId("a".into())).unwrap(),
        Some(applied)
    );
    assert_eq!(store.stored_reply(&CommandId("b".into())).unwrap(), None);
}

#[test]
fn a_repeated_id_is_seen_and_not_written_again() {
    let (_dir, store) = store();
    assert_eq!(store.begin(&command("a"), 1).unwrap(), Begin::New);
    let mut other = command("a");
    other.value = 1.0;
    match store.begin(&other, 2).unwrap() {
        Begin::Seen(record) => {
            assert_eq!(record.value, 42.5, "the first command stays");
            assert_eq!(record.received_at_ms, 1);
        }
        Begin::New => panic!("a repeated id is not new"),
    }
    assert_eq!(store.recent(10).unwrap().len(), 1);
}

#[test]
fn complete_if_pending_keeps_a_finished_row() {
    let (_dir, store) = store();
    store.begin(&command("a"), 1).unwrap();
    let lost = reply(
        "a",
        CommandOutcome::Failed {
            error: "unknown".into(),
        },
    );
    assert!(store.complete_if_pending(&lost, 5).unwrap());
    let timed_out = reply("a", CommandOutcome::TimedOut);
    assert!(!store.complete_if_pending(&timed_out, 6).unwrap());
    assert_eq!(store.stored_reply(&lost.command_id).unwrap(), Some(lost));
    // Completing a row that does not exist is an error.
    assert!(store
        .complete(&reply("zz", CommandOutcome::TimedOut), 1)
        .is_err());
}

#[test]
fn recent_pending_and_retention() {
    let (_dir, store) = store();
    for (n, id) in ["a", "b", "c"].iter().enumerate() {
        store.begin(&command(id), n as i64 * 10).unwrap();
    }
    let rejected = reply(
        "a",
        CommandOutcome::Rejected {
            reason: "no".into(),
        },
    );
    store.complete(&rejected, 1).unwrap();
    let recent: Vec<_> = store
        .recent(2)
        .unwrap()
        .into_iter()
        .map(|r| r.command_id)
        .collect();
    assert_eq!(recent, ["c", "b"]);
    let pending = store.pending_before(15).unwrap();
    assert_eq!(pending, [CommandId("b".into())]);
    let a = store.lookup(&CommandId("a".into())).unwrap().unwrap();
    assert_eq!(a.outcome.as_deref(), Some("rejected"));
    assert_eq!(a.detail.as_deref(), Some("no"));

    // Rows in flight are never pruned.
    assert_eq!(store.prune_older_than(100, 10).unwrap(), 1);
    assert_eq!(store.recent(10).unwrap().len(), 2);
}

#[test]
fn reopening_and_read_only_access() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    assert!(matches!(
        AuditStore::open_read_only(&path),
        Err(AuditError::NotFound(_))
    ));
    let store = AuditStore::open(&path).unwrap();
    assert!(matches!(
        AuditStore::open_read_only(&path.join("x.db")),
        Err(AuditError::Unreadable { .. })
    ));
    store.begin(&command("a"), 1).unwrap();
    drop(store);
    let again = AuditStore::open(&path).unwrap();
    assert_eq!(again.recent(5).unwrap().len(), 1);
    let reader = AuditStore::open_read_only(&path).unwrap();
    assert_eq!(reader.recent(5).unwrap()[0].command_id, "a");
    assert!(reader.begin(&command("b"), 1).is_err());
    let mode: String = again
        .conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    again.conn.pragma_update(None, "user_version", 7).unwrap();
    drop(again);
    assert!(matches!(
        AuditStore::open(&path),
        Err(AuditError::UnsupportedSchema { found: 7, .. })
    ));
}

#[test]
fn summaries_list_rows_whose_reply_is_damaged() {
    let (dir, store) = store();
    store.begin(&command("a"), 1_100).unwrap();
    store.begin(&command("b"), 1_200).unwrap();
    store
        .complete(&reply("a", CommandOutcome::TimedOut), 1_300)
        .unwrap();
    store
        .conn
        .execute(
            "UPDATE commands SET reply = x'ff' WHERE command_id = 'a'",
            [],
        )
        .unwrap();
    assert!(matches!(store.recent(10), Err(AuditError::Corrupt { .. })));
    let reader = AuditStore::open_read_only(&dir.path().join("control.db")).unwrap();
    let rows = reader.recent_summaries(10).unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.command_id.as_str()).collect();
    assert_eq!(ids, ["b", "a"]);
    assert_eq!(rows[1].outcome.as_deref(), Some("timed_out"));
    assert_eq!(rows[1].reply, None);
    assert_eq!(reader.recent_summaries(1).unwrap().len(), 1);
}

#[test]
fn non_finite_values_and_unreadable_requests_have_rows() {
    let (_dir, store) = store();
    let mut nan = command("nan");
    nan.value = f64::NAN;
    let mut inf = command("inf");
    inf.value = f64::INFINITY;
    assert_eq!(store.begin(&nan, 1).unwrap(), Begin::New);
    assert_eq!(store.begin(&inf, 1).unwrap(), Begin::New);
    assert!(store.lookup(&nan.id).unwrap().unwrap().value.is_nan());
    assert_eq!(store.lookup(&inf.id).unwrap().unwrap().value, f64::INFINITY);

    let key = CommandId("unreadable-1".into());
    assert!(store.begin_unreadable(&key, 5).unwrap());
    assert!(
        !store.begin_unreadable(&key, 6).unwrap(),
        "the key is taken"
    );
    assert!(!store.begin_unreadable(&nan.id, 6).unwrap());
    let refused = reply(
        "unreadable-1",
        CommandOutcome::Rejected {
            reason: "malformed".into(),
        },
    );
    store.complete(&refused, 7).unwrap();
    let row = store.lookup(&key).unwrap().unwrap();
    assert_eq!(row.origin, "unknown");
    assert_eq!(row.pack_id, "");
    assert!(row.value.is_nan());
    assert_eq!(row.reply, Some(refused));
}

#[test]
fn a_version_1_store_is_converted_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE commands (
                command_id TEXT PRIMARY KEY, pack_id TEXT NOT NULL,
                setting TEXT NOT NULL, value REAL NOT NULL, origin TEXT NOT NULL,
                issued_at_ms INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL,
                received_at_ms INTEGER NOT NULL, completed_at_ms INTEGER,
                outcome TEXT, read_back REAL, detail TEXT, reply BLOB);
             CREATE INDEX commands_received ON commands (received_at_ms);
             INSERT INTO commands VALUES
                ('old', 'sim-01', 'x', 4.5, 'local', 1, 2, 3, 4, 'timed_out', NULL, NULL, NULL);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    // Readable as it is, then converted by the writer.
    let reader = AuditStore::open_read_only(&path).unwrap();
    assert_eq!(reader.recent(5).unwrap()[0].value, 4.5);
    drop(reader);
    let store = AuditStore::open(&path).unwrap();
    assert_eq!(store.recent(5).unwrap()[0].command_id, "old");
    let mut nan = command("nan");
    nan.value = f64::NAN;
    assert_eq!(store.begin(&nan, 10).unwrap(), Begin::New);
    let version: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let vacuum: i64 = store
        .conn
        .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
        .unwrap();
    assert_eq!(vacuum, 2, "incremental");
}

#[test]
fn the_store_is_kept_within_its_size_oldest_rows_first() {
    let (dir, store) = store();
    let path = dir.path().join("control.db");
    // 400 commands with 10 kB ids: about 8 MB with their replies.
    for n in 0..400_i64 {
        let id = format!("{n:05}-{}", "x".repeat(10_000));
        store.begin(&command(&id), n).unwrap();
        store
            .complete(&reply(&id, CommandOutcome::TimedOut), n)
            .unwrap();
    }
    // One still in flight, the oldest of all: never deleted.
    store.begin(&command("in-flight"), -1).unwrap();
    assert!(store.used_bytes().unwrap() > 4 << 20);
    let max = 1 << 20;
    let deleted = store.prune_to_size(max, 100_000).unwrap();
    assert!(deleted > 300, "{deleted}");
    assert!(store.used_bytes().unwrap() <= max);
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert!(on_disk <= max + 64 * 1024, "the file is {on_disk} bytes");
    let left = store.recent_summaries(1_000).unwrap();
    assert!(left.iter().any(|r| r.command_id == "in-flight"));
    // The newest stay, the oldest went.
    assert!(left.iter().any(|r| r.command_id.starts_with("00399-")));
    assert!(!left.iter().any(|r| r.command_id.starts_with("00000-")));
    assert_eq!(left.len(), 400 + 1 - deleted);
    // Within the size already: nothing more.
    assert_eq!(store.prune_to_size(max, 100_000).unwrap(), 0);
}
