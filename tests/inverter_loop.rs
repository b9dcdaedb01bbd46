//! The closed loop, end to end: three simulated packs in a bank, the
//! collector, the bank worker with its inverter link on an slcan pty, the
//! control worker, a real nats-server, and on the other end of the line
//! the simulator's inverter, which obeys the limits it hears and drives
//! the packs' currents. It asks for more than the site allows; the packs'
//! currents, as published, stay within the CCL and DCL it heard (within
//! the frames' resolution and one control period); a site CCL lowered
//! through the control path lowers them within about 2 s; an overheating
//! pack carries nothing and the others at most their share.

// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use packgate::bank::LimitRules;
use packgate::cli::sim_loop::{run_obeying, LoopEvent, LoopOptions, SILENCE_AFTER};
use packgate::config::{BankConfig, Config, InverterConfig};
use packgate::runtime::{run_workers, Broker, WorkerSet};
use packgate::workers::collect::PackSet;
use packgate::workers::control::send_command;
use packgate::workers::WorkerKind;
use packgate_protocol::{
    decode, names, BankId, BankState, Command, CommandId, CommandOrigin, CommandOutcome, PackId,
    PackShare, Sample, SettingName, SITE_MAX_CHARGE_A,
};
use packgate_sim::{Faults, LoadProfile, LoadStep, ObeyingInverter};
use support::*;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_serial::SerialPort;
use tokio_util::sync::CancellationToken;

/// What the site allows into the bank: less than the inverter asks.
const SITE_CHARGE_A: f64 = 150.0;
/// What it allows out: less than the inverter asks, as much as the packs.
const SITE_DISCHARGE_A: f64 = 300.0;
/// The inverter asks for this while charging...
const ASK_CHARGE_A: f64 = 250.0;
/// ... and this while discharging.
const ASK_DISCHARGE_A: f64 = 350.0;
/// How long it charges before it discharges, seconds.
const CHARGE_S: f64 = 20.0;
/// Time between two bursts of the link.
const SEND_INTERVAL: Duration = Duration::from_millis(250);
/// How often the collector polls each pack.
const POLL_MS: u64 = 200;
/// One control period of lag: a burst, an inverter step and a poll, with
/// room for a loaded machine.
const LAG: Duration = Duration::from_millis(1_000);
/// The frames carry 0.1 A; a sample's current is an f32.
const RESOLUTION_A: f64 = 0.3;

fn pack(name: &str) -> PackId {
    PackId::new(name).unwrap()
}

fn config(url: &str, dir: &std::path::Path, port: &str) -> Config {
    let mut config = sim_config(url, dir, 3, POLL_MS);
    config.collect.request_timeout_ms = 100;
    config.control.default_deadline_ms = 3_000;
    let mut inverter = InverterConfig::slcan(port);
    inverter.send_interval_ms = SEND_INTERVAL.as_millis() as u64;
    inverter.stop_after_s = 3.0;
    config.banks.push(BankConfig {
        name: BankId::new("house").unwrap(),
        packs: vec![pack("sim-01"), pack("sim-02"), pack("sim-03")],
        pack_max_charge_a: None,
        pack_max_discharge_a: None,
        pack_capacity_ah: None,
        limits: LimitRules {
            site_max_charge_a: SITE_CHARGE_A,
            site_max_discharge_a: SITE_DISCHARGE_A,
            ramp_up_a_per_s: 10_000.0,
            stale_after_s: 3.0,
            ..LimitRules::default()
        },
        inverter: Some(inverter),
    });
    config.validate("test").unwrap();
    config
}

/// What the test saw: each pack's currents as published, the limits the
/// inverter heard, and the bank's states.
#[derive(Default)]
struct Seen {
    /// (when heard, pack, current).
    samples: Vec<(Instant, PackId, f64)>,
    /// (when heard, CCL, DCL), zero for a direction not enabled.
    limits: Vec<(Instant, f64, f64)>,
    states: Vec<BankState>,
}

impl Seen {
    /// The largest CCL and DCL the inverter heard within `LAG` before `at`
    /// (or the last one before that window).
    fn limits_near(&self, at: Instant) -> (f64, f64) {
        let from = at.checked_sub(LAG).unwrap_or(at);
        let before = self
            .limits
            .iter()
            .rfind(|(t, _, _)| *t <= from)
            .map(|&(_, c, d)| (c, d));
        self.limits
            .iter()
            .filter(|(t, _, _)| *t > from && *t <= at)
            .map(|&(_, c, d)| (c, d))
            .chain(before)
            .fold((0.0, 0.0), |(c, d), (c2, d2)| {
                (f64::max(c, c2), f64::max(d, d2))
            })
    }

    /// Each pack's latest current at `at`, and their sum.
    fn currents_at(&self, at: Instant) -> (HashMap<PackId, f64>, f64) {
        let mut latest = HashMap::new();
        for (t, pack, current) in &self.samples {
            if *t <= at {
                latest.insert(pack.clone(), *current);
            }
        }
        let total = latest.values().sum();
        (latest, total)
    }

    /// Every sample's bank total within the limits heard: the checked
    /// samples' count.
    fn assert_within_limits(&self) -> usize {
        let mut checked = 0;
        for (at, _, _) in &self.samples {
            let (latest, total) = self.currents_at(*at);
            if latest.len() < 3 {
                continue;
            }
            let (ccl, dcl) = self.limits_near(*at);
            assert!(
                total <= ccl + RESOLUTION_A && total >= -dcl - RESOLUTION_A,
                "the packs carry {total:.1} A ({latest:?}) with CCL {ccl} A and DCL {dcl} A heard"
            );
            checked += 1;
        }
        checked
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packs_follow_the_limits_the_inverter_hears() {
    let broker = TestBroker::start().await;
    let (line, adapter_end) = tokio_serial::SerialStream::pair().unwrap();
    let port = adapter_end.name().unwrap();
    let config = config(&broker.url(), broker.dir.path(), &port);
    let packs = PackSet::from_config(&config).unwrap();
    let sims: Vec<_> = ["sim-01", "sim-02", "sim-03"]
        .iter()
        .map(|id| packs.sims[&pack(id)].clone())
        .collect();

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let client = async_nats::connect(broker.url()).await.unwrap();
    record_samples_and_states(&client, &seen).await;
    let inverter_shutdown = CancellationToken::new();
    let inverter = start_obeying_inverter(line, &sims, &seen, &inverter_shutdown);
    let shutdown = CancellationToken::new();
    let gateway = start_workers(&config, packs, &shutdown).await;
    let started = Instant::now();

    charging_shares_the_site_ccl(&seen).await;
    a_lowered_site_ccl_is_followed_within_2_s(&client, &seen, started).await;

    // Discharging: the inverter asks 350 A, the site allows 300 A, the
    // three packs' 100 A each.
    assert!(
        eventually(
            Duration::from_secs_f64(CHARGE_S + 5.0),
            total_near(&seen, -SITE_DISCHARGE_A)
        )
        .await,
        "the packs never carried the DCL: {:?}",
        seen.lock().unwrap().currents_at(Instant::now())
    );

    an_overheating_pack_carries_nothing(&sims[2], &seen).await;

    shutdown.cancel();
    let (_, connection) = gateway.await.unwrap().unwrap();
    connection.close(&config.data_dir).await;
    inverter_shutdown.cancel();
    inverter.await.unwrap().unwrap();
    drop(adapter_end);
}

/// Records every sample's current and every state of the bank published
/// on the broker into `seen`.
async fn record_samples_and_states(client: &async_nats::Client, seen: &Arc<Mutex<Seen>>) {
    let mut messages = client.subscribe("packgate.>").await.unwrap();
    let seen = Arc::clone(seen);
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let now = Instant::now();
            if names::pack_of_sample_subject(&message.subject).is_some() {
                let sample = decode::<Sample>(&message.payload).unwrap();
                let current = f64::from(sample.reading.current_a);
                seen.lock()
                    .unwrap()
                    .samples
                    .push((now, sample.pack_id, current));
            } else if message.subject.as_str() == "packgate.banks.house" {
                let state = decode::<BankState>(&message.payload).unwrap();
                seen.lock().unwrap().states.push(state);
            }
        }
    });
}

/// The inverter on `line`: charges, then discharges, asking more than
/// allowed, driving `sims`; the limits it hears recorded into `seen`.
fn start_obeying_inverter(
    line: tokio_serial::SerialStream,
    sims: &[packgate_sim::SimPack],
    seen: &Arc<Mutex<Seen>>,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let profile = LoadProfile::Scripted {
        steps: vec![
            LoadStep {
                duration_s: CHARGE_S,
                current_a: ASK_CHARGE_A,
            },
            LoadStep {
                duration_s: 1_000.0,
                current_a: -ASK_DISCHARGE_A,
            },
        ],
        repeat: false,
    };
    let (events, mut heard) = mpsc::channel(1024);
    let inverter = tokio::spawn(run_obeying(
        line,
        ObeyingInverter::new(profile, sims.to_vec(), SILENCE_AFTER),
        LoopOptions::default(),
        events,
        shutdown.clone(),
    ));
    let seen = Arc::clone(seen);
    tokio::spawn(async move {
        while let Some(event) = heard.recv().await {
            if let LoopEvent::Heard { at, limits, .. } = event {
                let on = |enabled: bool, a: f64| if enabled { a } else { 0.0 };
                seen.lock().unwrap().limits.push((
                    at,
                    on(limits.charge_enable, limits.charge_current_limit_a),
                    on(limits.discharge_enable, limits.discharge_current_limit_a),
                ));
            }
        }
    });
    inverter
}

/// The gateway's collect, bank and control workers until `shutdown`.
async fn start_workers(
    config: &Config,
    packs: PackSet,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<
    Result<(packgate::runtime::RunReport, Broker), packgate::runtime::RunError>,
> {
    let connection = Broker::open(config, "test").await.unwrap();
    let (config, shutdown) = (config.clone(), shutdown.clone());
    let workers = WorkerSet::of(&[WorkerKind::Collect, WorkerKind::Bank, WorkerKind::Control]);
    tokio::spawn(async move {
        run_workers(&config, workers, packs, &connection, shutdown)
            .await
            .map(|report| (report, connection))
    })
}

/// Whether the three packs' latest currents add up to `want`, within 1 A.
fn total_near(seen: &Arc<Mutex<Seen>>, want: f64) -> impl Fn() -> bool {
    let seen = Arc::clone(seen);
    move || {
        let seen = seen.lock().unwrap();
        let (latest, total) = seen.currents_at(Instant::now());
        latest.len() == 3 && (total - want).abs() <= 1.0
    }
}

/// Charging: the inverter hears the site's 150 A and the packs carry it
/// between them, 50 A each.
async fn charging_shares_the_site_ccl(seen: &Arc<Mutex<Seen>>) {
    assert!(
        eventually(Duration::from_secs(10), total_near(seen, SITE_CHARGE_A)).await,
        "the packs never carried the site's CCL: {:?}",
        seen.lock().unwrap().currents_at(Instant::now())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = seen.lock().unwrap();
    let (latest, _) = seen.currents_at(Instant::now());
    for (pack, current) in &latest {
        assert!((current - 50.0).abs() <= 0.5, "{pack}: {current} A");
    }
    assert!(seen.assert_within_limits() > 10);
}

/// The site's CCL lowered to 60 A through the control path: the packs
/// follow within about 2 s, while the inverter still charges.
async fn a_lowered_site_ccl_is_followed_within_2_s(
    client: &async_nats::Client,
    seen: &Arc<Mutex<Seen>>,
    started: Instant,
) {
    let now = packgate::telemetry::now_ms();
    let lower = Command {
        id: CommandId("loop-60".into()),
        pack_id: pack("house"),
        setting: SettingName(SITE_MAX_CHARGE_A.into()),
        value: 60.0,
        origin: CommandOrigin::Local,
        issued_at_ms: now,
        expires_at_ms: now + 30_000,
    };
    let sent = Instant::now();
    let reply = send_command(client, &lower, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply.outcome, CommandOutcome::Applied { read_back: 60.0 });
    assert!(
        eventually(Duration::from_secs(5), total_near(seen, 60.0)).await,
        "the packs never came down to 60 A"
    );
    let followed = sent.elapsed();
    eprintln!("site CCL 150 -> 60 A: the packs follow after {followed:?}");
    assert!(
        followed <= Duration::from_millis(2_500),
        "the packs followed after {followed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs_f64(CHARGE_S - 1.0),
        "the machine is too slow for the charging phase: {:?}",
        started.elapsed()
    );
}

/// sim-03 (`hot_sim`) overheats: its BMS opens its switches and it
/// carries nothing; the others carry at most their share.
async fn an_overheating_pack_carries_nothing(
    hot_sim: &packgate_sim::SimPack,
    seen: &Arc<Mutex<Seen>>,
) {
    hot_sim.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    hot_sim.advance(600.0);
    let hot = pack("sim-03");
    let out = {
        let seen = Arc::clone(seen);
        let hot = hot.clone();
        move || {
            let seen = seen.lock().unwrap();
            let state_out = seen.states.last().is_some_and(|s| {
                s.pack(&hot)
                    .is_some_and(|p| !matches!(p.discharge, PackShare::Allowed { .. }))
            });
            let (latest, _) = seen.currents_at(Instant::now());
            state_out && latest.get(&hot).is_some_and(|a| *a == 0.0)
        }
    };
    assert!(
        eventually(Duration::from_secs(5), out).await,
        "the hot pack never left"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = seen.lock().unwrap();
    let state = seen.states.last().unwrap();
    assert_eq!(state.discharge_current_a, 200.0, "{state:?}");
    let (latest, total) = seen.currents_at(Instant::now());
    assert_eq!(latest[&hot], 0.0);
    for id in ["sim-01", "sim-02"] {
        let share = match state.pack(&pack(id)).unwrap().discharge {
            PackShare::Allowed { current_a, .. } => f64::from(current_a),
            other => panic!("{id}: {other:?}"),
        };
        let current = latest[&pack(id)];
        assert!(
            -current <= share + RESOLUTION_A,
            "{id} carries {current} A, its share is {share} A"
        );
    }
    assert!((total + 200.0).abs() <= 1.0, "{latest:?}");
    let checked = seen.assert_within_limits();
    eprintln!(
        "{checked} samples within the limits heard, {} bursts heard",
        seen.limits.len()
    );
}
