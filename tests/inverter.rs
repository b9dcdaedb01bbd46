//! End to end over an slcan pty: three simulated packs in a bank with an
//! inverter link, the collector and the bank worker on a real nats-server,
//! and the simulator's inverter on the other end of the line. What it
//! receives decodes to the published states; an over-temperature pack's
//! share leaves the charge current within 2 s; with every pack silent the
//! link sends zeros with both enables off, then falls silent.

// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use packgate::bank::LimitRules;
use packgate::cli::sim_inverter::{receive_frames, Burst};
use packgate::config::{BankConfig, Config, InverterConfig};
use packgate::runtime::{run_workers, RunReport, WorkerSet};
use packgate::workers::bank::BankMetrics;
use packgate::workers::collect::PackSet;
use packgate::workers::WorkerKind;
use packgate_drivers::can::pylontech::PylonFlags;
use packgate_protocol::{decode, BankId, BankState, PackId};
use packgate_sim::Faults;
use support::*;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_serial::SerialPort;
use tokio_util::sync::CancellationToken;

/// How long a pack's latest sample counts in the bank.
const STALE_AFTER_S: f64 = 3.0;
/// How long the link sends without a bank state in which a pack counts.
const STOP_AFTER_S: f64 = 3.0;
/// Time between two bursts.
const SEND_INTERVAL: Duration = Duration::from_millis(250);

fn pack(name: &str) -> PackId {
    PackId::new(name).unwrap()
}

/// Three 100 A simulated packs in bank `house`, its inverter on `port`.
fn config(url: &str, dir: &std::path::Path, port: &str) -> Config {
    let mut config = sim_config(url, dir, 3, 200);
    config.collect.request_timeout_ms = 100;
    let mut inverter = InverterConfig::slcan(port);
    inverter.send_interval_ms = SEND_INTERVAL.as_millis() as u64;
    inverter.stop_after_s = STOP_AFTER_S;
    inverter.name = "house".into();
    config.banks.push(BankConfig {
        name: BankId::new("house").unwrap(),
        packs: vec![pack("sim-01"), pack("sim-02"), pack("sim-03")],
        pack_max_charge_a: None,
        pack_max_discharge_a: None,
        pack_capacity_ah: None,
        limits: LimitRules {
            site_max_charge_a: 1_000.0,
            site_max_discharge_a: 1_000.0,
            ramp_up_a_per_s: 10_000.0,
            stale_after_s: STALE_AFTER_S,
            ..LimitRules::default()
        },
        inverter: Some(inverter),
    });
    config.validate("test").unwrap();
    config
}

/// The simulated inverter's side: the bursts as they complete.
struct Inverter {
    frames: mpsc::Receiver<packgate::cli::sim_inverter::ReceivedFrame>,
    /// When the inverter started listening (its frames' times count from it).
    started: Instant,
    burst: Burst,
    received: u64,
}

impl Inverter {
    /// The next complete burst within `within`, with when its last frame
    /// came (not when the test looked).
    async fn next_burst(&mut self, within: Duration) -> Option<(Burst, Instant)> {
        let deadline = Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.frames.recv())
                .await
                .ok()??;
            self.received += 1;
            if self.burst.take(&frame) {
                let at = self.started + frame.after;
                return Some((std::mem::take(&mut self.burst), at));
            }
        }
    }

    /// The first burst within `within` for which `wanted` holds.
    async fn burst_where(
        &mut self,
        within: Duration,
        wanted: impl Fn(&Burst) -> bool,
    ) -> Option<(Burst, Instant)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (burst, at) = self.next_burst(left).await?;
            if wanted(&burst) {
                return Some((burst, at));
            }
        }
    }
}

/// Whether `burst` is `state` within the frames' resolution.
fn matches(burst: &Burst, state: &BankState) -> bool {
    let near = |got: Option<f32>, want: f32, step: f32| {
        got.is_some_and(|g| (g - want).abs() <= step / 2.0 + 1e-3)
    };
    near(burst.charge_voltage_limit_v, state.charge_voltage_v, 0.1)
        && near(burst.charge_current_limit_a, state.charge_current_a, 0.1)
        && near(
            burst.discharge_current_limit_a,
            state.discharge_current_a,
            0.1,
        )
        && near(
            burst.discharge_voltage_limit_v,
            state.discharge_voltage_v,
            0.1,
        )
        && burst.soc_pct == Some(state.soc_pct.round() as u16)
        && burst.soh_pct == Some(state.soh_pct.map_or(100.0, f32::round) as u16)
        && near(burst.voltage_v, state.voltage_v, 0.01)
        && near(burst.current_a, state.current_a, 0.1)
        && near(
            burst.temperature_c,
            state.max_temperature.as_ref().map_or(0.0, |t| t.value),
            0.1,
        )
        && burst.module_count == Some(state.packs_online as u8)
        && burst.charge_enable == Some(state.charge_current_a > 0.0)
        && burst.discharge_enable == Some(state.discharge_current_a > 0.0)
        && burst.name.as_deref() == Some("house")
}

/// The bank's states as published, with when they were heard.
type HeardStates = Arc<Mutex<Vec<(BankState, Instant)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inverter_hears_the_bank_through_overheating_and_silence() {
    let broker = TestBroker::start().await;
    // The inverter holds one end of the line; the link opens the other by
    // its path, as it would a USB adapter.
    let (line, adapter_end) = tokio_serial::SerialStream::pair().unwrap();
    let port = adapter_end.name().unwrap();
    let config = config(&broker.url(), broker.dir.path(), &port);
    let (sender, frames) = mpsc::channel(256);
    let inverter_shutdown = CancellationToken::new();
    let started = Instant::now();
    let reader = tokio::spawn(receive_frames(line, sender, inverter_shutdown.clone()));
    let mut inverter = Inverter {
        frames,
        started,
        burst: Burst::default(),
        received: 0,
    };
    let client = async_nats::connect(broker.url()).await.unwrap();
    let states = record_states(&client).await;

    let packs = PackSet::from_config(&config).unwrap();
    let sims = packs.sims.clone();
    let connection = packgate::runtime::Broker::open(&config, "test")
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let gateway = {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        let workers = WorkerSet::of(&[WorkerKind::Collect, WorkerKind::Bank]);
        tokio::spawn(async move {
            run_workers(&config, workers, packs, &connection, shutdown)
                .await
                .map(|report| (report, connection))
        })
    };

    every_burst_is_a_published_state(&mut inverter, &states).await;
    let hot = &sims[&pack("sim-03")];
    an_overheating_packs_share_leaves_within_2_s(&mut inverter, hot).await;
    for sim in sims.values() {
        sim.set_faults(Faults {
            unresponsive: true,
            ..Faults::default()
        });
    }
    silent_packs_send_zeros_then_silence(&mut inverter).await;

    shutdown.cancel();
    let (report, connection): (RunReport, packgate::runtime::Broker) =
        gateway.await.unwrap().unwrap();
    check_link_counts(&report, inverter.received);
    inverter_shutdown.cancel();
    assert_eq!(
        reader.await.unwrap().unwrap(),
        0,
        "no frame failed to decode"
    );
    drop(adapter_end);
    connection.close(&config.data_dir).await;
}

/// Records the bank's states as published, with when they were heard.
async fn record_states(client: &async_nats::Client) -> HeardStates {
    let mut subscription = client.subscribe("packgate.banks.house").await.unwrap();
    let states: HeardStates = Arc::default();
    let heard = Arc::clone(&states);
    tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            let state = decode::<BankState>(&message.payload).unwrap();
            heard.lock().unwrap().push((state, Instant::now()));
        }
    });
    states
}

/// Healthy: every burst is a published state, within resolution. The
/// limits start at 0 and ramp up to the three packs' 300 A.
async fn every_burst_is_a_published_state(inverter: &mut Inverter, states: &HeardStates) {
    let (first, _) = inverter
        .burst_where(Duration::from_secs(8), |b| {
            b.module_count == Some(3) && b.charge_current_limit_a == Some(300.0)
        })
        .await
        .expect("a burst with every pack's share");
    assert_eq!(
        (first.charge_enable, first.discharge_enable),
        (Some(true), Some(true))
    );
    let mut checked = 0;
    let mut matched_seqs = Vec::new();
    while checked < 12 {
        let (burst, at) = inverter
            .next_burst(Duration::from_secs(2))
            .await
            .expect("a burst each interval");
        // The state reaches the link when it is computed, and the test
        // over the broker a moment later: look a little on both sides.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let states = states.lock().unwrap();
        let near: Vec<&BankState> = states
            .iter()
            .filter(|(_, t)| {
                t.saturating_duration_since(at) < Duration::from_millis(300)
                    && at.saturating_duration_since(*t) < Duration::from_millis(2_000)
            })
            .map(|(s, _)| s)
            .collect();
        let state = near
            .iter()
            .find(|s| matches(&burst, s))
            .unwrap_or_else(|| panic!("burst {burst:?} is none of the states {near:#?}"));
        matched_seqs.push(state.seq);
        checked += 1;
    }
    matched_seqs.dedup();
    assert!(
        matched_seqs.len() >= 2,
        "the bursts follow the states: {matched_seqs:?}"
    );
    assert!(
        matched_seqs.windows(2).all(|w| w[1] > w[0]),
        "{matched_seqs:?}"
    );
}

/// sim-03 (`hot`) overheats: the inverter's charge current is the other
/// two packs' within 2 s, and it hears the protection.
async fn an_overheating_packs_share_leaves_within_2_s(
    inverter: &mut Inverter,
    hot: &packgate_sim::SimPack,
) {
    hot.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    hot.advance(600.0);
    let injected = Instant::now();
    let (burst, at) = inverter
        .burst_where(Duration::from_secs(5), |b| {
            b.charge_current_limit_a.is_some_and(|a| a < 300.0)
        })
        .await
        .expect("the over-temperature reaches the inverter");
    assert!(
        at.duration_since(injected) <= Duration::from_secs(2),
        "CCL dropped after {:?}",
        at.duration_since(injected)
    );
    eprintln!(
        "CCL 300 A -> {:?} A heard {:?} after the fault",
        burst.charge_current_limit_a,
        at.duration_since(injected)
    );
    assert_eq!(burst.charge_current_limit_a, Some(200.0), "{burst:?}");
    assert_eq!(burst.discharge_current_limit_a, Some(200.0));
    assert!(burst.temperature_c.is_some_and(|t| t > 55.0), "{burst:?}");
    assert!(
        burst
            .protection
            .is_some_and(|p| p & PylonFlags::OVER_TEMPERATURE != 0),
        "{burst:?}"
    );
}

/// Every pack silent: zeros with both enables off, then nothing.
async fn silent_packs_send_zeros_then_silence(inverter: &mut Inverter) {
    let zero = |b: &Burst| {
        b.charge_current_limit_a == Some(0.0)
            && b.discharge_current_limit_a == Some(0.0)
            && b.charge_enable == Some(false)
            && b.discharge_enable == Some(false)
            && b.module_count == Some(0)
    };
    let within = Duration::from_secs_f64(STALE_AFTER_S) + Duration::from_secs(3);
    let (burst, first_zero) = inverter
        .burst_where(within, zero)
        .await
        .expect("the link sends zeros");
    assert_eq!(burst.soc_pct, Some(0), "{burst:?}");
    let mut last = first_zero;
    let quiet = Duration::from_secs(2);
    let limit = Duration::from_secs_f64(STOP_AFTER_S) + SEND_INTERVAL;
    while let Some((burst, at)) = inverter.next_burst(limit + quiet).await {
        assert!(
            zero(&burst),
            "after the first zero burst only zeros: {burst:?}"
        );
        last = at;
    }
    let sent_for = last.duration_since(first_zero);
    eprintln!("zeros heard for {sent_for:?}, then silence");
    assert!(
        sent_for <= limit + Duration::from_millis(500),
        "zeros sent for {sent_for:?}, the link should fall silent within {limit:?}"
    );
    // ... and it stays silent.
    assert!(
        inverter.next_burst(quiet).await.is_none(),
        "the link is silent"
    );
}

/// The bank worker's link counted one connection, one silence, no failed
/// send, and every frame the inverter `received`.
fn check_link_counts(report: &RunReport, received: u64) {
    let metrics = report
        .workers
        .iter()
        .find(|(kind, _)| *kind == WorkerKind::Bank)
        .and_then(|(_, m)| m.get::<BankMetrics>())
        .expect("the bank worker ran");
    let counts = &metrics.counts;
    assert_eq!(counts.inverter_connects.get(), 1);
    assert_eq!(counts.inverter_send_failures.get(), 0);
    assert_eq!(counts.inverter_silences.get(), 1);
    assert_eq!(
        counts.inverter_frames_sent.get(),
        received,
        "every frame sent was received and decoded"
    );
}
