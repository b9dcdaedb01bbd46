//! End to end: commands through a real nats-server to the control worker,
//! which validates, audits and dispatches them to a bus task in the test
//! that writes a real simulated pack through its driver.

// Test code: a failed set-up step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use packgate::config::Config;
use packgate::workers::collect::{Collector, PackSet};
use packgate::workers::control::{
    run_control, send_command, AuditStore, ControlError, ControlMetrics, SiteLimit,
};
use packgate_drivers::{PackDriver, SimDriver, ValidatedSetting};
use packgate_protocol::{
    decode, encode, names, Command, CommandId, CommandOrigin, CommandOutcome, CommandReply, PackId,
    SettingName,
};
use packgate_sim::{SimPack, SimPackConfig};
use support::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CHARGE: &str = "charge_current_limit_a";
const DISCHARGE: &str = "discharge_current_limit_a";
const DEADLINE_MS: u64 = 1_500;

fn now_ms() -> i64 {
    packgate::telemetry::now_ms()
}

/// How the stand-in bus task answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BusMode {
    /// Writes the pack through its driver after `delay`, replies with the
    /// read-back value.
    Apply { delay: Duration },
    /// Takes the request and never answers.
    Silent,
}

const APPLY: BusMode = BusMode::Apply {
    delay: Duration::ZERO,
};

/// The task that owns one pack's bus, standing in for the collector's.
struct TestBus {
    pack: SimPack,
    /// The write requests received, as dispatched.
    seen: Arc<Mutex<Vec<Command>>>,
    _task: JoinHandle<()>,
}

impl TestBus {
    async fn start(client: &async_nats::Client, pack_id: &PackId, mode: BusMode) -> Self {
        let pack = SimPack::new(&SimPackConfig::default());
        let mut driver = SimDriver::new(pack_id.clone(), pack.clone());
        let mut sub = client
            .subscribe(names::bus_write_subject(pack_id))
            .await
            .unwrap();
        client.flush().await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, client) = (Arc::clone(&seen), client.clone());
        let task = tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                let command = decode::<Command>(&message.payload).unwrap();
                log.lock().unwrap().push(command.clone());
                let BusMode::Apply { delay } = mode else {
                    continue;
                };
                tokio::time::sleep(delay).await;
                let setting = ValidatedSetting {
                    name: command.setting.clone(),
                    value: command.value,
                };
                let outcome = match driver.apply_setting(&mut (), &setting).await {
                    Ok(Ok(read_back)) => CommandOutcome::Applied { read_back },
                    Ok(Err(exception)) => CommandOutcome::Failed {
                        error: exception.to_string(),
                    },
                    Err(error) => CommandOutcome::Failed {
                        error: error.to_string(),
                    },
                };
                let reply = CommandReply {
                    command_id: command.id,
                    outcome,
                };
                client
                    .publish(message.reply.unwrap(), encode(&reply).into())
                    .await
                    .unwrap();
            }
        });
        Self {
            pack,
            seen,
            _task: task,
        }
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn charge_limit(&self) -> f64 {
        self.pack.setting(CHARGE).unwrap()
    }
}

/// A broker, a client and a control worker for packs `sim-01` and `sim-02`,
/// with the charge current capped at 80 A by the site.
struct Rig {
    broker: TestBroker,
    client: async_nats::Client,
    config: Config,
    metrics: Arc<ControlMetrics>,
    shutdown: CancellationToken,
    worker: JoinHandle<Result<(), ControlError>>,
}

impl Rig {
    async fn start() -> Self {
        let broker = TestBroker::start().await;
        let mut config = sim_config(&broker.url(), broker.dir.path(), 2, 1000);
        config.control.default_deadline_ms = DEADLINE_MS;
        config.control.site_limits.insert(
            CHARGE.into(),
            SiteLimit {
                min: 0.0,
                max: 80.0,
            },
        );
        let client = async_nats::connect(broker.url()).await.unwrap();
        let metrics = Arc::new(ControlMetrics::default());
        let shutdown = CancellationToken::new();
        let worker = {
            let (config, client) = (config.clone(), client.clone());
            let (metrics, shutdown) = (Arc::clone(&metrics), shutdown.clone());
            tokio::spawn(async move { run_control(&config, client, metrics, shutdown).await })
        };
        let rig = Self {
            broker,
            client,
            config,
            metrics,
            shutdown,
            worker,
        };
        rig.wait_until_serving().await;
        rig
    }

    /// Sends probes (each with a new id, to an unknown pack) until one is
    /// answered: exactly one probe reaches the worker, counted as received
    /// and rejected.
    async fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for attempt in 0.. {
            assert!(Instant::now() < deadline, "the control worker never served");
            let probe = command(&format!("probe-{attempt}"), "nobody", CHARGE, 1.0);
            if send_command(&self.client, &probe, Duration::from_secs(2))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn send(&self, command: &Command) -> CommandReply {
        send_command(&self.client, command, Duration::from_secs(10))
            .await
            .unwrap()
    }

    fn audit(&self, id: &str) -> packgate::workers::control::AuditRecord {
        let path = self.config.data_dir.join(&self.config.control.database);
        AuditStore::open_read_only(&path)
            .unwrap()
            .lookup(&CommandId(id.into()))
            .unwrap()
            .unwrap_or_else(|| panic!("no audit row for {id}"))
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.worker)
            .await
            .expect("the worker stops promptly");
        result.unwrap().unwrap();
        drop(self.broker);
    }
}

fn pack(id: &str) -> PackId {
    PackId::new(id).unwrap()
}

fn command(id: &str, pack_id: &str, setting: &str, value: f64) -> Command {
    let now = now_ms();
    Command {
        id: CommandId(id.into()),
        pack_id: pack(pack_id),
        setting: SettingName(setting.into()),
        value,
        origin: CommandOrigin::Cloud,
        issued_at_ms: now,
        expires_at_ms: now + 60_000,
    }
}

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
    // Again, even with another value: the stored reply, nothing written.
    let mut again = first.clone();
    again.value = 70.0;
    assert_eq!(rig.send(&again).await, reply);
    assert_eq!(rig.send(&first).await, reply);
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
    assert_eq!(rig.metrics.malformed.get(), 3);
    let counters = rig.metrics.counters();
    assert!(
        counters.contains(&("malformed".to_owned(), 3)),
        "{counters:?}"
    );
    assert!(
        counters.contains(&("commands_received".to_owned(), 4)),
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
