//! End to end: commands through a real nats-server to the control worker,
//! which validates, audits and dispatches them to a bus task in the test
//! that writes a real simulated pack through its driver: valid, invalid,
//! repeated and malformed commands.

// Test code: a failed set-up step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use packgate::telemetry::snapshot::MetricsSource;
use packgate::workers::control::AuditStore;
use packgate_protocol::{decode, encode, names, CommandId, CommandOutcome, CommandReply};
use support::control::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_writes_a_valid_command_reads_it_back_and_audits_it() {
    let rig = Rig::start().await;
    let bus = TestBus::start(&rig.client, &pack("sim-01"), APPLY).await;
    assert_eq!(bus.charge_limit(), 100.0);

    let sent = command("set-1", "sim-01", CHARGE, 55.5);
    let before = now_ms();
    let reply = rig.send(&sent).await;
    assert_eq!(reply.command_id, sent.id);
    let CommandOutcome::Applied { read_back } = reply.outcome else {
        panic!("not applied: {reply:?}");
    };
    assert_eq!(read_back, bus.charge_limit());
    assert!((read_back - 55.5).abs() < 1e-9, "{read_back}");
    assert_eq!(bus.requests(), 1);

    // The bus got the command, told not to start it after the deadline.
    let dispatched = bus.seen.lock().unwrap()[0].clone();
    assert_eq!(dispatched.value, 55.5);
    assert_eq!(dispatched.setting, sent.setting);
    assert!(dispatched.expires_at_ms <= now_ms() + DEADLINE_MS as i64);
    assert!(dispatched.expires_at_ms >= before);

    let row = rig.audit("set-1");
    assert_eq!(row.outcome.as_deref(), Some("applied"));
    assert_eq!(row.read_back, Some(read_back));
    assert_eq!(row.pack_id, "sim-01");
    assert_eq!(row.setting, CHARGE);
    assert_eq!(row.value, 55.5);
    assert_eq!(row.origin, "cloud");
    assert_eq!(
        row.expires_at_ms, sent.expires_at_ms,
        "the audit keeps the command as sent"
    );
    assert!(row.received_at_ms >= before);
    assert!(row.completed_at_ms.unwrap() >= row.received_at_ms);
    assert_eq!(row.reply, Some(reply));
    assert_eq!(rig.metrics.applied.get(), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_rejects_bad_commands_audits_them_and_leaves_the_pack_alone() {
    let rig = Rig::start().await;
    let bus = TestBus::start(&rig.client, &pack("sim-01"), APPLY).await;
    let mut expired = command("expired", "sim-01", CHARGE, 10.0);
    expired.issued_at_ms -= 120_000;
    expired.expires_at_ms = now_ms() - 1_000;
    let mut far = command("far", "sim-01", CHARGE, 10.0);
    far.expires_at_ms = now_ms() + 2 * 3_600_000;
    let cases = [
        (
            command("profile", "sim-01", DISCHARGE, 2500.0),
            vec![DISCHARGE, "profile's bounds", "2000"],
        ),
        (
            command("negative", "sim-01", CHARGE, -1.0),
            vec!["profile's bounds"],
        ),
        (
            command("site", "sim-01", CHARGE, 90.0),
            vec!["site limit", "80"],
        ),
        (
            command("unwritable", "sim-01", "soc_pct", 50.0),
            vec!["soc_pct", "not writable", CHARGE, DISCHARGE],
        ),
        (
            command("ghost", "ghost-pack", CHARGE, 10.0),
            vec!["unknown pack", "ghost-pack"],
        ),
        (expired, vec!["expired"]),
        (far, vec!["expires in"]),
    ];
    for (sent, expected) in &cases {
        let reply = rig.send(sent).await;
        assert_eq!(reply.command_id, sent.id);
        let CommandOutcome::Rejected { reason } = &reply.outcome else {
            panic!("{}: not rejected: {reply:?}", sent.id.0);
        };
        for needle in expected {
            assert!(
                reason.contains(needle),
                "{}: {reason:?} lacks {needle:?}",
                sent.id.0
            );
        }
        let row = rig.audit(&sent.id.0);
        assert_eq!(row.outcome.as_deref(), Some("rejected"));
        assert_eq!(row.detail.as_deref(), Some(reason.as_str()));
        assert_eq!(row.reply.as_ref(), Some(&reply));
    }
    assert_eq!(bus.requests(), 0, "a rejected command reached the bus");
    assert_eq!(bus.charge_limit(), 100.0);
    // The probe and the cases.
    assert_eq!(rig.metrics.rejected.get(), 1 + cases.len() as u64);
    assert_eq!(rig.metrics.applied.get(), 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_answers_a_repeated_id_with_the_same_reply_and_writes_once() {
    let rig = Rig::start().await;
    let delay = Duration::from_millis(300);
    let bus = TestBus::start(&rig.client, &pack("sim-01"), BusMode::Apply { delay }).await;

    let first = command("once", "sim-01", CHARGE, 40.0);
    let reply = rig.send(&first).await;
    assert!(
        matches!(reply.outcome, CommandOutcome::Applied { .. }),
        "{reply:?}"
    );
    // Again: the stored reply, nothing written.
    assert_eq!(rig.send(&first).await, reply);
    // With another value: refused, saying what the id did, nothing written.
    let mut again = first.clone();
    again.value = 70.0;
    let refused = rig.send(&again).await;
    assert_eq!(refused.command_id, first.id);
    let CommandOutcome::Rejected { reason } = &refused.outcome else {
        panic!("{refused:?}");
    };
    for needle in [
        "\"once\" was already used",
        "charge_current_limit_a = 40 on pack sim-01",
        "applied, read back 40",
        "= 70",
        "not applied",
    ] {
        assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
    }
    // Audited under a key of its own; the id's row keeps the first.
    let reused: Vec<_> = rig
        .audit_rows()
        .into_iter()
        .filter(|r| r.command_id.starts_with("reused-"))
        .collect();
    assert_eq!(reused.len(), 1);
    assert_eq!(reused[0].value, 70.0);
    assert_eq!(reused[0].detail.as_deref(), Some(reason.as_str()));
    assert_eq!(rig.audit("once").value, 40.0);
    assert_eq!(bus.requests(), 1);
    assert_eq!(bus.charge_limit(), 40.0);

    // Two at once, while the first is still being written: one write, and
    // the second waits for the first's result.
    let twin = command("twin", "sim-01", CHARGE, 30.0);
    let (a, b) = tokio::join!(rig.send(&twin), rig.send(&twin));
    assert_eq!(a, b);
    assert!(
        matches!(a.outcome, CommandOutcome::Applied { read_back } if read_back == 30.0),
        "{a:?}"
    );
    assert_eq!(bus.requests(), 2);
    assert_eq!(rig.metrics.repeats.get(), 3);
    assert_eq!(rig.metrics.applied.get(), 2);

    // A rejected command repeated stays rejected, from the store.
    let bad = command("bad", "sim-01", CHARGE, 95.0);
    let rejected = rig.send(&bad).await;
    assert!(matches!(rejected.outcome, CommandOutcome::Rejected { .. }));
    assert_eq!(rig.send(&bad).await, rejected);
    assert_eq!(bus.requests(), 2);

    // A command left "received" by a worker that stopped mid-dispatch is
    // settled as failed with its outcome unknown, and never written again.
    let lost = command("lost", "sim-01", CHARGE, 10.0);
    let path = rig.config.data_dir.join(&rig.config.control.database);
    AuditStore::open(&path)
        .unwrap()
        .begin(&lost, now_ms() - 60_000)
        .unwrap();
    let settled = rig.send(&lost).await;
    let CommandOutcome::Failed { error } = &settled.outcome else {
        panic!("{settled:?}");
    };
    assert!(error.contains("outcome unknown"), "{error}");
    assert_eq!(rig.audit("lost").outcome.as_deref(), Some("failed"));
    assert_eq!(rig.send(&lost).await, settled);
    assert_eq!(bus.requests(), 2);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_rejects_and_counts_malformed_requests() {
    let rig = Rig::start().await;
    let reply = CommandReply {
        command_id: CommandId("x".into()),
        outcome: CommandOutcome::TimedOut,
    };
    let garbage: [Vec<u8>; 3] = [b"garbage".to_vec(), vec![], encode(&reply)];
    for payload in garbage {
        let message = tokio::time::timeout(
            Duration::from_secs(5),
            rig.client.request(names::CONTROL_SUBJECT, payload.into()),
        )
        .await
        .unwrap()
        .unwrap();
        let answer = decode::<CommandReply>(&message.payload).unwrap();
        let CommandOutcome::Rejected { reason } = answer.outcome else {
            panic!("{answer:?}");
        };
        assert!(reason.contains("malformed command"), "{reason}");
    }
    // Each audited, under a generated key (they carry no id).
    let unreadable: Vec<_> = rig
        .audit_rows()
        .into_iter()
        .filter(|r| r.command_id.starts_with("unreadable-"))
        .collect();
    assert_eq!(unreadable.len(), 3);
    for row in &unreadable {
        assert_eq!(row.outcome.as_deref(), Some("rejected"));
        assert_eq!(row.origin, "unknown");
        assert!(row.detail.as_deref().unwrap().contains("malformed"));
    }
    // A damaged command that still begins with its id: the reply and the
    // audit row carry that id.
    let whole = encode(&command("cut-short", "sim-01", CHARGE, 10.0));
    let message = tokio::time::timeout(
        Duration::from_secs(5),
        rig.client.request(
            names::CONTROL_SUBJECT,
            whole[..whole.len() - 4].to_vec().into(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let answer = decode::<CommandReply>(&message.payload).unwrap();
    assert_eq!(answer.command_id.0, "cut-short");
    assert!(matches!(answer.outcome, CommandOutcome::Rejected { .. }));
    assert_eq!(rig.audit("cut-short").outcome.as_deref(), Some("rejected"));
    assert_eq!(rig.metrics.malformed.get(), 4);
    let counters = rig.metrics.counters();
    assert!(
        counters.contains(&("malformed".to_owned(), 4)),
        "{counters:?}"
    );
    assert!(
        counters.contains(&("commands_received".to_owned(), 5)),
        "{counters:?}"
    );
    // The worker goes on.
    let ok = rig
        .send(&command("after", "nobody-here", CHARGE, 1.0))
        .await;
    assert!(matches!(ok.outcome, CommandOutcome::Rejected { .. }));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_audits_non_finite_values_and_answers_with_their_id() {
    let rig = Rig::start().await;
    let bus = TestBus::start(&rig.client, &pack("sim-01"), APPLY).await;
    for (id, value) in [("nan", f64::NAN), ("inf", f64::INFINITY)] {
        let sent = command(id, "sim-01", CHARGE, value);
        let reply = rig.send(&sent).await;
        assert_eq!(reply.command_id, sent.id);
        let CommandOutcome::Rejected { reason } = &reply.outcome else {
            panic!("{reply:?}");
        };
        assert!(reason.contains("not a finite number"), "{reason}");
        let row = rig.audit(id);
        assert_eq!(row.outcome.as_deref(), Some("rejected"));
        assert_eq!(row.detail.as_deref(), Some(reason.as_str()));
        assert_eq!(row.pack_id, "sim-01");
        assert_eq!(row.reply.as_ref(), Some(&reply));
        // A repeat is answered from the audit.
        assert_eq!(rig.send(&sent).await, reply);
    }
    assert!(rig.audit("nan").value.is_nan());
    assert_eq!(rig.audit("inf").value, f64::INFINITY);
    assert_eq!(bus.requests(), 0);
    assert_eq!(bus.charge_limit(), 100.0);
    rig.stop().await;
}
