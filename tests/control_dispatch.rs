//! End to end: commands through a real nats-server to the control worker
//! and on to a pack's bus: a bus that fails or never answers gets a failure
//! or a time-out within the deadline, and the real collector's bus task
//! writes and reads back.

// Test code: a failed set-up step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use packgate::workers::collect::{Collector, PackSet};
use packgate_protocol::CommandOutcome;
use packgate_sim::{SimPack, SimPackConfig};
use support::control::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_fails_or_times_out_an_unanswering_pack_within_the_deadline() {
    let rig = Rig::start().await;
    let live = TestBus::start(&rig.client, &pack("sim-01"), APPLY).await;

    // No bus task at all for sim-02: failed at once.
    let started = Instant::now();
    let reply = rig.send(&command("nobody", "sim-02", CHARGE, 10.0)).await;
    let CommandOutcome::Failed { error } = &reply.outcome else {
        panic!("{reply:?}");
    };
    assert!(error.contains("not running"), "{error}");
    assert!(started.elapsed() < Duration::from_millis(DEADLINE_MS + 1_000));
    assert_eq!(rig.audit("nobody").outcome.as_deref(), Some("failed"));

    // A bus task that takes the request and never answers: timed out within
    // the default deadline, while a command to another pack goes through.
    let silent = TestBus::start(&rig.client, &pack("sim-02"), BusMode::Silent).await;
    let started = Instant::now();
    let stuck = command("stuck", "sim-02", CHARGE, 10.0);
    let stuck = rig.send(&stuck);
    let other = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reply = rig.send(&command("other", "sim-01", CHARGE, 20.0)).await;
        (reply, started.elapsed())
    };
    let (stuck, (other, other_at)) = tokio::join!(stuck, other);
    let elapsed = started.elapsed();
    assert_eq!(stuck.outcome, CommandOutcome::TimedOut);
    assert!(
        elapsed >= Duration::from_millis(DEADLINE_MS - 100),
        "{elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(DEADLINE_MS + 1_000),
        "{elapsed:?}"
    );
    assert!(
        matches!(other.outcome, CommandOutcome::Applied { .. }),
        "{other:?}"
    );
    assert!(
        other_at < Duration::from_millis(DEADLINE_MS),
        "held up: {other_at:?}"
    );
    assert_eq!(live.charge_limit(), 20.0);
    assert_eq!(rig.audit("stuck").outcome.as_deref(), Some("timed_out"));

    // A command about to expire gets only the time it has left.
    let mut short = command("short", "sim-02", CHARGE, 10.0);
    short.expires_at_ms = now_ms() + 400;
    let started = Instant::now();
    assert_eq!(rig.send(&short).await.outcome, CommandOutcome::TimedOut);
    assert!(
        started.elapsed() < Duration::from_millis(400 + 1_000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(silent.requests(), 2);
    assert_eq!(silent.charge_limit(), 100.0);
    assert_eq!(rig.metrics.timed_out.get(), 2);
    assert_eq!(rig.metrics.failed.get(), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_writes_through_the_real_collector() {
    let rig = Rig::start().await;
    let js = async_nats::jetstream::new(rig.client.clone());
    packgate::broker::ensure_streams(&js, &rig.config.streams)
        .await
        .unwrap();
    let packs = PackSet::from_config(&rig.config).unwrap();
    let sims = packs.sims.clone();
    let stop = CancellationToken::new();
    let collector = Collector::start(
        &rig.config.collect,
        packs,
        js,
        rig.client.clone(),
        stop.clone(),
    );
    // The collector's write router subscribes as it starts: retry until
    // a bus answers.
    let mut reply = None;
    for attempt in 0..50 {
        let sent = command(&format!("real-{attempt}"), "sim-02", DISCHARGE, 64.0);
        let got = rig.send(&sent).await;
        match &got.outcome {
            CommandOutcome::Failed { error } if error.contains("not running") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => {
                reply = Some(got);
                break;
            }
        }
    }
    let reply = reply.expect("the collector serves writes");
    assert_eq!(reply.outcome, CommandOutcome::Applied { read_back: 64.0 });
    assert_eq!(sims[&pack("sim-02")].setting(DISCHARGE), Some(64.0));
    let untouched = SimPack::new(&SimPackConfig::default()).setting(DISCHARGE);
    assert_eq!(sims[&pack("sim-01")].setting(DISCHARGE), untouched);
    stop.cancel();
    collector.finish().await;
    rig.stop().await;
}

/// Sends `command` straight to `subject`, as a process that went around
/// the control worker would; the bus owner's reply.
async fn write_request(
    client: &async_nats::Client,
    subject: &str,
    command: &packgate_protocol::Command,
) -> Option<packgate_protocol::CommandReply> {
    let sent = client.request(
        subject.to_owned(),
        packgate_protocol::encode(command).into(),
    );
    match tokio::time::timeout(Duration::from_secs(5), sent).await {
        Ok(Ok(message)) => Some(packgate_protocol::decode(&message.payload).unwrap()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_owner_refuses_writes_that_went_around_the_control_worker() {
    // No control worker: requests go straight to the bus subject, on an
    // open broker (permissions are tested apart).
    let broker = support::TestBroker::start().await;
    let mut config = support::sim_config(&broker.url(), broker.dir.path(), 2, 1000);
    config.control.site_limits.insert(
        CHARGE.into(),
        packgate::config::SiteLimit {
            min: 0.0,
            max: 80.0,
        },
    );
    let client = async_nats::connect(broker.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    packgate::broker::ensure_streams(&js, &config.streams)
        .await
        .unwrap();
    let packs = PackSet::from_config(&config).unwrap();
    let sims = packs.sims.clone();
    let stop = CancellationToken::new();
    let collector = Collector::start(&config.collect, packs, js, client.clone(), stop.clone());
    let subject = packgate_protocol::names::bus_write_subject(&pack("sim-01"));

    // A valid request is written (once the router subscribed).
    let mut applied = None;
    for attempt in 0..50 {
        let valid = command(&format!("valid-{attempt}"), "sim-01", CHARGE, 50.0);
        if let Some(reply) = write_request(&client, &subject, &valid).await {
            applied = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied = applied.expect("the collector serves writes");
    assert_eq!(applied.outcome, CommandOutcome::Applied { read_back: 50.0 });
    let sim_01 = &sims[&pack("sim-01")];
    let sim_02 = &sims[&pack("sim-02")];
    let untouched = SimPack::new(&SimPackConfig::default());
    assert_eq!(sim_01.setting(CHARGE), Some(50.0));

    let mut expired = command("expired", "sim-01", CHARGE, 60.0);
    expired.issued_at_ms -= 120_000;
    expired.expires_at_ms = now_ms() - 1_000;
    let mut far = command("far", "sim-01", CHARGE, 60.0);
    far.expires_at_ms = now_ms() + 2 * 3_600_000;
    let cases = [
        (command("site", "sim-01", CHARGE, 150.0), "site limit"),
        (
            command("profile", "sim-01", DISCHARGE, 2500.0),
            "profile's bounds",
        ),
        (
            command("unwritable", "sim-01", "soc_pct", 5.0),
            "not writable",
        ),
        (expired, "expired"),
        (far, "expires in"),
        // The subject names sim-01, the payload sim-02.
        (
            command("other-pack", "sim-02", CHARGE, 60.0),
            "names pack sim-02",
        ),
    ];
    for (sent, needle) in &cases {
        let reply = write_request(&client, &subject, sent)
            .await
            .expect("a reply");
        assert_eq!(reply.command_id, sent.id);
        let CommandOutcome::Rejected { reason } = &reply.outcome else {
            panic!("{}: not refused: {reply:?}", sent.id.0);
        };
        assert!(reason.contains(needle), "{}: {reason}", sent.id.0);
        assert!(reason.contains("bus owner"), "{reason}");
    }
    assert_eq!(sim_01.setting(CHARGE), Some(50.0));
    assert_eq!(sim_01.setting(DISCHARGE), untouched.setting(DISCHARGE));
    assert_eq!(sim_02.setting(CHARGE), untouched.setting(CHARGE));
    assert_eq!(collector.metrics.writes_refused.get(), cases.len() as u64);
    stop.cancel();
    collector.finish().await;
}
