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
