//! End to end: what keeps a flood of commands from filling the box: a rate
//! per origin, and the audit store's largest size.

// Test code: a failed set-up step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use packgate_protocol::{CommandOrigin, CommandOutcome};
use support::control::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_refuses_commands_over_the_rate_of_their_origin() {
    let rig = Rig::start_with(|config| {
        config.control.commands_per_s_per_origin = 1;
        config.control.command_burst_per_origin = 3;
    })
    .await;
    let mut refused = Vec::new();
    for n in 0..10 {
        let sent = command(&format!("flood-{n}"), "nobody", CHARGE, 1.0);
        let reply = rig.send(&sent).await;
        assert_eq!(reply.command_id, sent.id);
        let CommandOutcome::Rejected { reason } = &reply.outcome else {
            panic!("{reply:?}");
        };
        if reason.contains("too many commands") {
            assert!(reason.contains("the cloud"), "{reason}");
            refused.push(sent.id.0);
        } else {
            assert!(reason.contains("unknown pack"), "{reason}");
        }
    }
    // The burst (less the start-up probe), and a token or two refilled.
    assert!(refused.len() >= 6, "{refused:?}");
    assert_eq!(rig.metrics.rate_limited.get(), refused.len() as u64);
    // Refused over the rate: counted, not audited.
    let rows = rig.audit_rows();
    for id in &refused {
        assert!(rows.iter().all(|r| &r.command_id != id), "{id} audited");
    }
    assert_eq!(rows.len(), 1 + 10 - refused.len(), "the probe and the rest");

    // The box has a bucket of its own.
    let mut local = command("local-1", "nobody", CHARGE, 1.0);
    local.origin = CommandOrigin::Local;
    let reply = rig.send(&local).await;
    let CommandOutcome::Rejected { reason } = &reply.outcome else {
        panic!("{reply:?}");
    };
    assert!(reason.contains("unknown pack"), "{reason}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_keeps_the_audit_store_within_its_size() {
    const MAX_BYTES: u64 = 1 << 20;
    let rig = Rig::start_with(|config| {
        config.control.audit_max_bytes = MAX_BYTES;
        config.control.commands_per_s_per_origin = 10_000;
        config.control.command_burst_per_origin = 10_000;
    })
    .await;
    // 6,000 commands with ids of the longest length the protocol takes:
    // a few MB of audit without a bound. Sent 50 at a time.
    let id = |n: usize| {
        let head = format!("{n:04}-");
        let pad = packgate_protocol::limits::MAX_COMMAND_ID_LEN - head.len();
        format!("{head}{}", "x".repeat(pad))
    };
    const COMMANDS: usize = 6_000;
    for chunk in (0..COMMANDS).collect::<Vec<_>>().chunks(50) {
        let commands: Vec<_> = chunk
            .iter()
            .map(|n| command(&id(*n), "nobody", CHARGE, 1.0))
            .collect();
        let replies = futures_util::future::join_all(commands.iter().map(|c| rig.send(c))).await;
        for reply in replies {
            assert!(matches!(reply.outcome, CommandOutcome::Rejected { .. }));
        }
    }
    let last = id(COMMANDS - 1);
    let path = rig.config.data_dir.join(&rig.config.control.database);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size <= MAX_BYTES + 128 * 1024,
        "control.db is {size} bytes, over {MAX_BYTES}"
    );
    assert!(rig.metrics.rows_pruned.get() > 30);
    // The newest rows stay, the oldest went.
    let rows = rig.audit_rows();
    assert!(rows.iter().any(|r| r.command_id == last));
    assert!(!rows.iter().any(|r| r.command_id.starts_with("0000-")));
    rig.stop().await;
}
