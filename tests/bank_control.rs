//! End to end: a bank's site limits lowered through the validated control
//! path, on a real nats-server with three simulated packs, the collector,
//! the control worker and the bank worker. Lowering the charge current
//! from the site's 100 A to 40 A reaches the next states and the audit;
//! a value above the configuration, an expired command and a repeated id
//! change nothing more; a restarted bank worker keeps the override.

// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use packgate::bank::LimitRules;
use packgate::config::{BankConfig, Config};
use packgate::runtime::{run_workers, Broker, RunReport, WorkerSet};
use packgate::workers::bank::{overrides, BankMetrics};
use packgate::workers::collect::PackSet;
use packgate::workers::control::{send_command, AuditStore};
use packgate::workers::WorkerKind;
use packgate_protocol::{
    decode, BankId, BankState, Command, CommandId, CommandOrigin, CommandOutcome, CommandReply,
    PackId, SettingName, SITE_MAX_CHARGE_A,
};
use support::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn pack(name: &str) -> PackId {
    PackId::new(name).unwrap()
}

/// Three 100 A simulated packs in bank `house`, whose site allows the
/// default 100 A each way; limits rise at once.
fn config(url: &str, dir: &std::path::Path) -> Config {
    let mut config = sim_config(url, dir, 3, 200);
    config.collect.request_timeout_ms = 100;
    config.control.default_deadline_ms = 3_000;
    config.banks.push(BankConfig {
        inverter: None,
        name: BankId::new("house").unwrap(),
        packs: vec![pack("sim-01"), pack("sim-02"), pack("sim-03")],
        pack_max_charge_a: None,
        pack_max_discharge_a: None,
        pack_capacity_ah: None,
        limits: LimitRules {
            ramp_up_a_per_s: 10_000.0,
            stale_after_s: 3.0,
            ..LimitRules::default()
        },
    });
    config.validate("test").unwrap();
    config
}

fn command(id: &str, setting: &str, value: f64) -> Command {
    let now = packgate::telemetry::now_ms();
    Command {
        id: CommandId(id.into()),
        pack_id: pack("house"),
        setting: SettingName(setting.into()),
        value,
        origin: CommandOrigin::Cloud,
        issued_at_ms: now,
        expires_at_ms: now + 30_000,
    }
}

type Running = JoinHandle<Result<(RunReport, Broker), packgate::runtime::RunError>>;

/// Runs `kinds` until `shutdown`.
async fn start(config: &Config, kinds: &[WorkerKind], shutdown: &CancellationToken) -> Running {
    let packs = if kinds.contains(&WorkerKind::Collect) {
        PackSet::from_config(config).unwrap()
    } else {
        PackSet::default()
    };
    let connection = Broker::open(config, "test").await.unwrap();
    let (config, shutdown, workers) = (config.clone(), shutdown.clone(), WorkerSet::of(kinds));
    tokio::spawn(async move {
        run_workers(&config, workers, packs, &connection, shutdown)
            .await
            .map(|report| (report, connection))
    })
}

/// The bank's states as they are published.
struct States(async_nats::Subscriber);

impl States {
    /// The first state within `within` for which `wanted` holds.
    async fn first(
        &mut self,
        within: Duration,
        wanted: impl Fn(&BankState) -> bool,
    ) -> Option<BankState> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.0.next())
                .await
                .ok()??;
            let state = decode::<BankState>(&message.payload).unwrap();
            if wanted(&state) {
                return Some(state);
            }
        }
    }

    /// The next `n` states, each within 3 s.
    async fn next(&mut self, n: usize) -> Vec<BankState> {
        let mut states = Vec::new();
        for _ in 0..n {
            states.push(
                self.first(Duration::from_secs(3), |_| true)
                    .await
                    .expect("a state a second"),
            );
        }
        states
    }
}

async fn send(client: &async_nats::Client, command: &Command) -> CommandReply {
    send_command(client, command, Duration::from_secs(10))
        .await
        .unwrap()
}

fn audit(config: &Config, id: &str) -> packgate::workers::control::AuditRecord {
    AuditStore::open_read_only(&config.data_dir.join(&config.control.database))
        .unwrap()
        .lookup(&CommandId(id.into()))
        .unwrap()
        .unwrap_or_else(|| panic!("no audit row for {id}"))
}

fn bank_metrics(report: &RunReport) -> std::sync::Arc<BankMetrics> {
    report
        .workers
        .iter()
        .find(|(kind, _)| *kind == WorkerKind::Bank)
        .and_then(|(_, m)| m.get::<BankMetrics>())
        .expect("the bank worker ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_limit_is_lowered_through_the_control_path_and_kept() {
    let broker = TestBroker::start().await;
    let config = config(&broker.url(), broker.dir.path());
    let client = async_nats::connect(broker.url()).await.unwrap();
    let mut states = States(client.subscribe("packgate.banks.house").await.unwrap());
    let shutdown = CancellationToken::new();
    let gateway = start(
        &config,
        &[WorkerKind::Collect, WorkerKind::Control, WorkerKind::Data],
        &shutdown,
    )
    .await;
    let bank_shutdown = CancellationToken::new();
    let bank = start(&config, &[WorkerKind::Bank], &bank_shutdown).await;

    // The site's 100 A caps the three packs' 300 A.
    let state = states
        .first(Duration::from_secs(10), |s| s.packs_online == 3)
        .await
        .expect("the bank with its three packs");
    let state = states
        .first(Duration::from_secs(3), |s| s.charge_current_a == 100.0)
        .await
        .unwrap_or(state);
    assert_eq!(state.charge_current_a, 100.0, "{state:?}");
    assert!(state.overrides.is_empty());

    lowered_to_40_a_applied_kept_and_audited(&client, &mut states, &config).await;
    refused_commands_change_nothing(&client, &mut states, &config).await;

    // The same id twice: applied once, the same answer twice.
    let thirty = command("c-30", SITE_MAX_CHARGE_A, 30.0);
    let first = send(&client, &thirty).await;
    let again = send(&client, &thirty).await;
    assert_eq!(first.outcome, CommandOutcome::Applied { read_back: 30.0 });
    assert_eq!(again, first);
    states
        .first(Duration::from_secs(2), |s| {
            s.overrides.site_max_charge_a == Some(30.0) && s.charge_current_a <= 30.0
        })
        .await
        .expect("30 A in effect");

    // The bank worker restarts: the override is kept.
    bank_shutdown.cancel();
    let (report, connection) = bank.await.unwrap().unwrap();
    let counts = &bank_metrics(&report).counts;
    assert_eq!(
        counts.limit_commands_applied.get(),
        2,
        "40 A, then 30 A once: the refused and repeated commands never reached the bank"
    );
    assert_eq!(counts.limit_commands_rejected.get(), 0);
    assert_eq!(counts.limit_commands_failed.get(), 0);
    connection.close(&config.data_dir).await;
    let kept = std::fs::read_to_string(overrides::path_in(&config.data_dir)).unwrap();
    assert!(kept.contains("[house]\nsite_max_charge_a = 30.0"), "{kept}");
    // While it is down, a command fails at once and changes nothing.
    let reply = send(&client, &command("c-down", SITE_MAX_CHARGE_A, 10.0)).await;
    assert!(
        matches!(&reply.outcome, CommandOutcome::Failed { error } if error.contains("bank house's worker is not running")),
        "{reply:?}"
    );
    let bank_shutdown = CancellationToken::new();
    let bank = start(&config, &[WorkerKind::Bank], &bank_shutdown).await;
    let restarted = states
        .first(Duration::from_secs(5), |s| s.seq == 1)
        .await
        .expect("the restarted worker's first state");
    assert_eq!(restarted.overrides.site_max_charge_a, Some(30.0));
    // Both currents start at 0 after a restart, then rise to 30 A, no
    // further.
    let state = states
        .first(Duration::from_secs(5), |s| {
            s.packs_online == 3 && s.charge_current_a > 0.0
        })
        .await
        .unwrap();
    assert_eq!(state.charge_current_a, 30.0, "{state:?}");
    assert_eq!(state.overrides.site_max_charge_a, Some(30.0));

    // Back to the configured value: the override is gone.
    let reply = send(&client, &command("c-100", SITE_MAX_CHARGE_A, 100.0)).await;
    assert_eq!(reply.outcome, CommandOutcome::Applied { read_back: 100.0 });
    let state = states
        .first(Duration::from_secs(3), |s| s.charge_current_a == 100.0)
        .await
        .expect("100 A again");
    assert!(state.overrides.is_empty(), "{state:?}");

    bank_shutdown.cancel();
    let (_, connection) = bank.await.unwrap().unwrap();
    connection.close(&config.data_dir).await;
    shutdown.cancel();
    let (_, connection) = gateway.await.unwrap().unwrap();
    connection.close(&config.data_dir).await;
}

/// Lowered to 40 A: applied, read back as the limit in effect, in the
/// next states within a second, and audited against the bank.
async fn lowered_to_40_a_applied_kept_and_audited(
    client: &async_nats::Client,
    states: &mut States,
    config: &Config,
) {
    let sent = std::time::Instant::now();
    let reply = send(client, &command("c-40", SITE_MAX_CHARGE_A, 40.0)).await;
    assert_eq!(reply.outcome, CommandOutcome::Applied { read_back: 40.0 });
    let lowered = states
        .first(Duration::from_secs(2), |s| {
            s.overrides.site_max_charge_a.is_some()
        })
        .await
        .expect("a state with the override");
    eprintln!("override in a state {:?} after the command", sent.elapsed());
    assert_eq!(lowered.overrides.site_max_charge_a, Some(40.0));
    assert!(lowered.charge_current_a <= 40.0, "{lowered:?}");
    assert_eq!(lowered.discharge_current_a, 100.0, "discharge unchanged");
    for state in states.next(3).await {
        assert!(state.charge_current_a <= 40.0, "{state:?}");
        assert_eq!(state.overrides.site_max_charge_a, Some(40.0));
    }
    let row = audit(config, "c-40");
    assert_eq!(
        (row.pack_id.as_str(), row.setting.as_str(), row.value),
        ("house", SITE_MAX_CHARGE_A, 40.0)
    );
    assert_eq!(row.outcome.as_deref(), Some("applied"));
    assert_eq!(row.read_back, Some(40.0));
}

/// Above the configured 100 A, not a bank's setting, not a number or
/// expired: refused, audited, nothing changes.
async fn refused_commands_change_nothing(
    client: &async_nats::Client,
    states: &mut States,
    config: &Config,
) {
    let reply = send(client, &command("c-150", SITE_MAX_CHARGE_A, 150.0)).await;
    let CommandOutcome::Rejected { reason } = &reply.outcome else {
        panic!("{reply:?}");
    };
    assert!(
        reason.contains("outside what bank house allows, 0 to 100 A"),
        "{reason}"
    );
    assert_eq!(audit(config, "c-150").outcome.as_deref(), Some("rejected"));
    // Not a bank's setting, or not a number: refused by name.
    let reply = send(client, &command("c-x", "charge_current_limit_a", 10.0)).await;
    assert!(
        matches!(&reply.outcome, CommandOutcome::Rejected { reason } if reason.contains("settable: site_max_charge_a")),
        "{reply:?}"
    );
    let reply = send(client, &command("c-nan", SITE_MAX_CHARGE_A, f64::NAN)).await;
    assert!(
        matches!(&reply.outcome, CommandOutcome::Rejected { reason } if reason.contains("not a finite number")),
        "{reply:?}"
    );
    // Expired: refused.
    let mut expired = command("c-old", SITE_MAX_CHARGE_A, 20.0);
    expired.expires_at_ms = packgate::telemetry::now_ms() - 1_000;
    let reply = send(client, &expired).await;
    assert!(
        matches!(&reply.outcome, CommandOutcome::Rejected { reason } if reason.contains("expired")),
        "{reply:?}"
    );
    for state in states.next(2).await {
        assert_eq!(state.overrides.site_max_charge_a, Some(40.0), "{state:?}");
        assert!(state.charge_current_a <= 40.0);
    }
}
